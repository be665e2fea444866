/* Internal error reporting: a status code plus a detailed message naming the file, field or
 * tensor and what was expected. Every module fills a caller-provided cin_err; the public API
 * copies it into the handle that failed (see cin.h for the codes). */
#ifndef CIN_ERROR_H
#define CIN_ERROR_H

#include "cin.h"

/* cin_err itself is public (cin.h): {code, msg}. */

/* Records code and a printf-style message in err (if err is not NULL); returns code. */
int cin_err_set(cin_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts a printf-style context before err's message ("<context>: <message>") and sets its code
 * to code; returns code. The message may be the one err already holds. */
int cin_err_wrap(cin_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a second failure's message after err's ("<message>; also <more>"), keeping err's code,
 * so that one report names every part that failed. */
void cin_err_also(cin_err *err, const cin_err *more);

void cin_err_clear(cin_err *err);

#endif
