/* cin: continual inference for video and sensor models. Public API (work in progress). */
#ifndef CIN_H
#define CIN_H

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: every call returns 0 or one of these negative values. */
enum {
    CIN_OK = 0,
    CIN_E_NOMEM = -1,       /* an allocation failed */
    CIN_E_INVAL = -2,       /* an argument is out of range or NULL */
    CIN_E_IO = -3,          /* a file could not be opened, read or written */
    CIN_E_FORMAT = -4,      /* a file is truncated, malformed or inconsistent */
    CIN_E_SHAPE = -5,       /* a tensor or array does not have the expected shape */
    CIN_E_NOTFOUND = -6,    /* a named tensor, key or file is missing */
    CIN_E_UNSUPPORTED = -7, /* valid input that cin does not handle */
    CIN_E_CONFIG = -8,      /* a pipeline or model setting is missing or wrong */
    CIN_E_DECODE = -9,      /* the media could not be demuxed or decoded */
};

/* Name of a status code. Thread-safe; the string is static. */
const char *cin_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
