/* Error codes, their names, and the detailed-message helpers used by every module. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cin_strerror(int code)
{
    switch (code) {
    case CIN_OK: return "success";
    case CIN_E_NOMEM: return "out of memory";
    case CIN_E_INVAL: return "invalid argument";
    case CIN_E_IO: return "input/output error";
    case CIN_E_FORMAT: return "malformed or inconsistent file";
    case CIN_E_SHAPE: return "tensor shape does not fit";
    case CIN_E_NOTFOUND: return "not found";
    case CIN_E_UNSUPPORTED: return "not supported";
    case CIN_E_CONFIG: return "invalid configuration";
    case CIN_E_DECODE: return "media decode error";
    default: return "unknown error";
    }
}

int cin_err_set(cin_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

int cin_err_wrap(cin_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    char context[sizeof err->msg], detail[sizeof err->msg];
    snprintf(detail, sizeof detail, "%s", err->msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    return cin_err_set(err, code, "%s: %s", context, detail);
}

void cin_err_also(cin_err *err, const cin_err *more)
{
    if (!err || !more || !more->msg[0])
        return;
    const char *parts[2] = {"; also ", more->msg};
    size_t len = strlen(err->msg), cap = sizeof err->msg - 1;
    for (int k = 0; k < 2; k++)
        for (const char *p = parts[k]; *p && len < cap; p++)
            err->msg[len++] = *p;
    err->msg[len] = '\0';
}

void cin_err_clear(cin_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
