/* CSV sink (see csvsink.h): each row is built in a buffer that grows to the longest row seen
 * and appended whole to an io_uring file. */
#include "csvsink.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "urfile.h"

struct csv_sink {
    urfile *f;
    char *name;             /* the path, or "stdout", for messages */
    int k, with_labels;
    char *row;              /* the row being built: [0, len) of cap bytes */
    size_t len, cap;
    int nomem;              /* a growth of row failed */
};

static void csv_put(csv_sink *s, const char *text, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = 2 * (s->len + n + 1);
        char *grown = realloc(s->row, cap);
        if (!grown) {
            s->nomem = 1;
            return;
        }
        s->row = grown;
        s->cap = cap;
    }
    memcpy(s->row + s->len, text, n);
    s->len += n;
}

static void csv_printf(csv_sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void csv_printf(csv_sink *s, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    csv_put(s, buf, n > 0 ? (size_t)n : 0);
}

/* A field, quoted when RFC 4180 needs it (or a reader would trim its spaces). */
static void csv_text(csv_sink *s, const char *text)
{
    size_t n = strlen(text);
    int quote = strpbrk(text, ",\"\r\n") != NULL ||
                (n > 0 && (text[0] == ' ' || text[n - 1] == ' '));
    if (!quote) {
        csv_put(s, text, n);
        return;
    }
    csv_put(s, "\"", 1);
    for (const char *q; (q = strchr(text, '"')) != NULL; text = q + 1) {
        csv_put(s, text, (size_t)(q - text) + 1);
        csv_put(s, "\"", 1);
    }
    csv_put(s, text, strlen(text));
    csv_put(s, "\"", 1);
}

static void csv_number(csv_sink *s, double v, const char *fmt)
{
    if (isfinite(v))
        csv_printf(s, fmt, v);
}

/* Ends the row and appends it to the file. */
static int csv_emit(csv_sink *s, cin_err *err)
{
    csv_put(s, "\n", 1);
    int nomem = s->nomem;
    size_t n = s->len;
    s->len = 0;
    s->nomem = 0;
    if (nomem)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory for a row", s->name);
    return urfile_append(s->f, s->row, n, err);
}

static int csv_header(csv_sink *s, cin_err *err)
{
    csv_printf(s, "source,frame,pts,wall,latency_ms");
    for (int i = 1; i <= s->k; i++) {
        csv_printf(s, ",index_%d", i);
        if (s->with_labels)
            csv_printf(s, ",label_%d", i);
        csv_printf(s, ",score_%d", i);
    }
    return csv_emit(s, err);
}

int csv_sink_open(const char *path, int k, int with_labels, double flush_every, csv_sink **out,
                  cin_err *err)
{
    *out = NULL;
    if (k < 1)
        return cin_err_set(err, CIN_E_INVAL, "%s: a CSV row needs k >= 1 classes", path);
    csv_sink *s = calloc(1, sizeof *s);
    if (s)
        s->name = strdup(strcmp(path, "-") ? path : "stdout");
    if (!s || !s->name) {
        free(s);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    }
    s->k = k;
    s->with_labels = with_labels;
    int rc = urfile_open(path, flush_every, &s->f, err);
    rc = rc ? rc : csv_header(s, err);
    if (rc) {
        urfile_close(s->f, NULL);
        free(s->row);
        free(s->name);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int csv_check(const csv_sink *s, const sink_result *r, cin_err *err)
{
    const int *idx = r->idx;
    const char *const *labels = r->labels;
    if (r->k != s->k)
        return cin_err_set(err, CIN_E_INVAL, "%s: a row of %d classes, but the header has %d",
                           s->name, r->k, s->k);
    if (!labels != !s->with_labels)
        return cin_err_set(err, CIN_E_INVAL, "%s: labels %s, but the header has %s",
                           s->name, labels ? "given" : "missing",
                           s->with_labels ? "label columns" : "none");
    for (int i = 0; i < s->k; i++) {
        if (idx[i] < 0)
            return cin_err_set(err, CIN_E_INVAL, "%s: class %d of the row: negative index %d",
                               s->name, i + 1, idx[i]);
        if (labels && !labels[idx[i]])
            return cin_err_set(err, CIN_E_INVAL, "%s: class %d of the row: no label for "
                               "class %d", s->name, i + 1, idx[i]);
    }
    return 0;
}

int csv_sink_write(csv_sink *s, const sink_result *r, cin_err *err)
{
    int rc = csv_check(s, r, err);
    if (rc)
        return rc;
    char num[FMT_FLOAT_MAX];
    csv_text(s, r->source ? r->source : "");
    csv_printf(s, ",%lld,", (long long)r->frame);
    csv_number(s, r->pts, "%.15g");
    csv_put(s, ",", 1);
    csv_number(s, r->wall, "%.3f");
    csv_put(s, ",", 1);
    csv_number(s, r->latency_ms, "%.3f");
    for (int i = 0; i < s->k; i++) {
        csv_printf(s, ",%d,", r->idx[i]);
        if (r->labels) {
            csv_text(s, r->labels[r->idx[i]]);
            csv_put(s, ",", 1);
        }
        if (isfinite(r->score[i]))
            csv_printf(s, "%s", fmt_float_shortest(r->score[i], num));
    }
    return csv_emit(s, err);
}

int csv_sink_tick(csv_sink *s, double now, cin_err *err)
{
    return urfile_tick(s->f, now, err);
}

int csv_sink_close(csv_sink *s, cin_err *err)
{
    if (!s)
        return 0;
    int rc = urfile_close(s->f, err);
    free(s->row);
    free(s->name);
    free(s);
    return rc;
}
