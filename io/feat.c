/* Feature-vector source (see feat.h). Lines come from lines.h (files, stdin, FIFOs, sockets);
 * each is parsed with strtof (CSV) or jansson (JSON lines, through pyjson.h so Python's NaN and
 * Infinity tokens read as null). */
#include "feat.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "pyjson.h"

/* Shown of a field that is not a number. */
#define FEAT_QUOTE_MAX 32

struct feat_src {
    lines_src *lines;
    int dim;
    feat_format format;
    locale_t numeric;           /* "C": CSV numbers read the same whatever the process locale */
    int64_t next_frame;         /* given to a record without a frame index */
    int64_t masked;
    pyjson_buf fixed;           /* a JSON line with NaN/Infinity rewritten as null */
};

/* ---- opening ---------------------------------------------------------------------------- */

static int feat_check_opts(const feat_opts *o, cin_err *err)
{
    if (!o || !o->uri || !o->uri[0])
        return cin_err_set(err, CIN_E_INVAL, "features: no uri given");
    /* The shortest row, "0,0,...", takes two bytes a number: more cannot fit in a line. */
    if (o->dim < 1 || o->dim > FEAT_MAX_LINE / 2)
        return cin_err_set(err, CIN_E_INVAL, "%s: dim %d is not in 1..%d", o->uri, o->dim,
                           FEAT_MAX_LINE / 2);
    if (o->format != FEAT_JSONL && o->format != FEAT_CSV)
        return cin_err_set(err, CIN_E_INVAL, "%s: unknown format %d", o->uri, (int)o->format);
    return 0;
}

int feat_open(const feat_opts *o, feat_src **out, cin_err *err)
{
    *out = NULL;
    int rc = feat_check_opts(o, err);
    if (rc)
        return rc;
    feat_src *s = calloc(1, sizeof *s);
    if (!s)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    s->dim = o->dim;
    s->format = o->format;
    s->numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!s->numeric)
        rc = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    lines_opts lo = {.uri = o->uri, .max_line = FEAT_MAX_LINE, .warn = o->warn, .stop = o->stop,
                     .warn_user = o->warn_user, .open_timeout = o->open_timeout,
                     .read_timeout = o->read_timeout};
    if (!rc)
        rc = lines_open(&lo, &s->lines, err);
    if (rc) {
        feat_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void feat_close(feat_src *s)
{
    if (!s)
        return;
    lines_close(s->lines);
    if (s->numeric)
        freelocale(s->numeric);
    pyjson_buf_free(&s->fixed);
    free(s);
}

int64_t feat_skipped(const feat_src *s)
{
    return lines_skipped(s->lines);
}

int64_t feat_masked(const feat_src *s)
{
    return s->masked;
}

/* ---- records ---------------------------------------------------------------------------- */

/* x, or 0 counted in *masked when it is NaN or infinite. */
static float feat_finite(float x, int64_t *masked)
{
    if (isfinite(x))
        return x;
    (*masked)++;
    return 0.0f;
}

/* A frame index, when the record gives one, replaces the counted one in *frame. */
static int feat_json_frame(feat_src *s, const json_t *v, int64_t *frame)
{
    if (!v)
        return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) == LLONG_MAX)
        return lines_skip(s->lines, "\"frame\" is not an integer from 0 to %lld",
                          LLONG_MAX - 1);
    *frame = (int64_t)json_integer_value(v);
    return 1;
}

static int feat_json_values(feat_src *s, const json_t *arr, float *vec, int64_t *masked)
{
    if (!arr)
        return lines_skip(s->lines, "no \"features\" array");
    if (!json_is_array(arr))
        return lines_skip(s->lines, "\"features\" is %s, not an array", pyjson_type(arr));
    size_t n = json_array_size(arr);
    if (n != (size_t)s->dim)
        return lines_skip(s->lines, "expected %d numbers, got %zu", s->dim, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_number(v) && !json_is_null(v))
            return lines_skip(s->lines, "features[%zu] is %s, not a number", i, pyjson_type(v));
        /* Annex F: a double beyond the float range becomes an infinity, then is masked. */
        vec[i] = feat_finite(json_is_null(v) ? NAN : (float)json_number_value(v), masked);
    }
    return 1;
}

static int feat_parse_json(feat_src *s, const char *line, size_t len, float *vec,
                           int64_t *frame, int64_t *masked)
{
    json_error_t jerr;
    json_t *root = pyjson_load(line, len, &s->fixed, &jerr);
    if (!root)
        return lines_skip(s->lines, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    int ok = 1;
    const json_t *arr = root;
    if (json_is_object(root)) {
        ok = feat_json_frame(s, json_object_get(root, "frame"), frame);
        arr = json_object_get(root, "features");
    }
    if (ok)
        ok = feat_json_values(s, arr, vec, masked);
    json_decref(root);
    return ok;
}

static int feat_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* One CSV number at *p with blanks around it; *p is left on the byte after them. strtof takes
 * nan, inf and hexadecimal floats too. */
static int feat_csv_float(const char **p, float *x)
{
    char *end;
    *x = strtof(*p, &end);
    if (end == *p)
        return 0;
    while (feat_is_blank(*end))
        end++;
    *p = end;
    return 1;
}

static int feat_csv_frame(feat_src *s, const char **p, int64_t *frame)
{
    char *end;
    errno = 0;
    long long v = strtoll(*p, &end, 10);
    int ok = end != *p && errno == 0 && v >= 0 && v < LLONG_MAX;
    while (ok && feat_is_blank(*end))
        end++;
    if (!ok || *end != ',')
        return lines_skip(s->lines, "frame field is not an integer from 0 to %lld",
                          LLONG_MAX - 1);
    *frame = v;
    *p = end + 1;
    return 1;
}

static int feat_csv_bad_field(feat_src *s, const char *field, int col)
{
    while (feat_is_blank(*field))
        field++;
    int n = (int)strcspn(field, ",");
    return lines_skip(s->lines, "field %d (\"%.*s%s\") is not a number", col,
                      n > FEAT_QUOTE_MAX ? FEAT_QUOTE_MAX : n, field,
                      n > FEAT_QUOTE_MAX ? "..." : "");
}

static size_t feat_csv_fields(const char *line, size_t len)
{
    size_t n = 1;
    for (const char *c = line; (c = memchr(c, ',', len - (size_t)(c - line))); c++)
        n++;
    return n;
}

/* A first line whose first field is not a number is a header. */
static int feat_csv_is_header(const feat_src *s, const char *line)
{
    float x;
    if (lines_number(s->lines) != 1)
        return 0;
    return !(feat_csv_float(&line, &x) && (*line == ',' || !*line));
}

/* dim numbers, or a frame index and dim numbers. The last field must end at len, so a NUL
 * byte inside the line makes it malformed. */
static int feat_parse_csv(feat_src *s, const char *line, size_t len, float *vec,
                          int64_t *frame, int64_t *masked)
{
    if (feat_csv_is_header(s, line))
        return 0;
    size_t fields = feat_csv_fields(line, len);
    if (fields != (size_t)s->dim && fields != (size_t)s->dim + 1)
        return lines_skip(s->lines, "expected %d numbers (%d fields with a frame), got %zu "
                          "fields", s->dim, s->dim + 1, fields);
    const char *p = line;
    if (fields > (size_t)s->dim && !feat_csv_frame(s, &p, frame))
        return 0;
    for (int i = 0; i < s->dim; i++) {
        const char *field = p;
        float x;
        char delim = i + 1 < s->dim ? ',' : '\0';
        if (!feat_csv_float(&p, &x) || *p != delim || (!delim && p != line + len))
            return feat_csv_bad_field(s, field, (int)(fields - (size_t)s->dim) + i + 1);
        vec[i] = feat_finite(x, masked);
        p++;
    }
    return 1;
}

static int feat_parse_line(feat_src *s, char *line, size_t len, float *vec, int64_t *frame)
{
    if (lines_is_blank(line, len))
        return lines_skip(s->lines, "empty line");
    int64_t masked = 0;
    int ok;
    if (s->format == FEAT_CSV) {
        locale_t prev = uselocale(s->numeric);
        ok = feat_parse_csv(s, line, len, vec, frame, &masked);
        uselocale(prev);
    } else
        ok = feat_parse_json(s, line, len, vec, frame, &masked);
    if (ok)
        s->masked += masked;
    return ok;
}

int feat_read(feat_src *s, float *vec, int64_t *frame, cin_err *err)
{
    for (;;) {
        char *line;
        size_t len;
        int rc = lines_next(s->lines, &line, &len, err);
        if (rc <= 0)
            return rc;
        int64_t f = s->next_frame;
        if (feat_parse_line(s, line, len, vec, &f)) {
            *frame = f;
            s->next_frame = f + 1;
            return 1;
        }
    }
}
