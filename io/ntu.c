/* NTU RGB+D .skeleton reader (see ntu.h). The file is read whole, then taken line by line:
 * a line is split into tokens at spaces and tabs, and each token must be one number read to
 * its end, so no number can run past its line (strtod alone skips newlines). The parser keeps
 * the line, frame, body and joint it is at, which every message names. */
#include "ntu.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTU_BODY_FIELDS 10
#define NTU_JOINT_FIELDS 12
/* Longest number read; the dataset's longest is a body ID of 17 digits. */
#define NTU_TOKEN_MAX 63
/* Bytes of a line or token quoted in a message, and room for the quoted text. */
#define NTU_QUOTE_MAX 32
#define NTU_FOUND_CAP (NTU_QUOTE_MAX * 4 + 64)
/* The first read of a file; the buffer doubles from there. */
#define NTU_READ_CHUNK (64 << 10)

typedef struct ntu_tok {
    const char *s;
    size_t n;
} ntu_tok;

typedef struct ntu_parser {
    const char *path;
    const char *buf;
    size_t len, pos;                    /* the file; pos: start of the next line */
    long line;                          /* the line last taken, from 1 */
    const char *s;                      /* that line, without its line end */
    size_t n;
    ntu_tok tok[NTU_JOINT_FIELDS + 1];  /* its tokens; one more than a line may have */
    int ntok;
    int frame, body, joint;             /* where the parser is, from 0; -1: outside one */
    locale_t c_locale;
    cin_err *err;
} ntu_parser;

/* ---- messages --------------------------------------------------------------------------- */

/* s[0 .. n) in quotes, bytes outside printable ASCII as \xNN, cut after NTU_QUOTE_MAX. */
static const char *ntu_quote(char *buf, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    buf[k++] = '"';
    for (size_t i = 0; i < n && i < NTU_QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            buf[k++] = (char)ch;
        else
            k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", ch);
    }
    snprintf(buf + k, cap - k, "%s\"", n > NTU_QUOTE_MAX ? "..." : "");
    return buf;
}

/* " of joint 3 of body 1 in frame 2" (counted from 1), as far as the parser is inside. */
static const char *ntu_where(const ntu_parser *p, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (p->joint >= 0)
        snprintf(buf, cap, " of joint %d of body %d in frame %d", p->joint + 1, p->body + 1,
                 p->frame + 1);
    else if (p->body >= 0)
        snprintf(buf, cap, " of body %d in frame %d", p->body + 1, p->frame + 1);
    else if (p->frame >= 0)
        snprintf(buf, cap, " of frame %d", p->frame + 1);
    return buf;
}

/* Fails at the line last taken: "<path>:<line>: expected <what><where><detail>, found ...". */
static int ntu_fail(const ntu_parser *p, const char *what, const char *detail, const char *found)
{
    char where[96];
    return cin_err_set(p->err, CIN_E_FORMAT, "%s:%ld: expected %s%s%s, found %s", p->path,
                       p->line, what, ntu_where(p, where, sizeof where), detail, found);
}

/* The whole line last taken, quoted. */
static const char *ntu_found_line(const ntu_parser *p, char *buf, size_t cap)
{
    return ntu_quote(buf, cap, p->s, p->n);
}

/* ---- lines and tokens ------------------------------------------------------------------- */

static int ntu_is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Splits the line into p->tok, stopping at one token more than any line may have. */
static void ntu_split(ntu_parser *p)
{
    size_t i = 0;
    p->ntok = 0;
    while (p->ntok <= NTU_JOINT_FIELDS) {
        while (i < p->n && ntu_is_blank(p->s[i]))
            i++;
        if (i == p->n)
            return;
        size_t start = i;
        while (i < p->n && !ntu_is_blank(p->s[i]))
            i++;
        p->tok[p->ntok++] = (ntu_tok){p->s + start, i - start};
    }
}

/* Takes the next line ("\n" or "\r\n" ended, or the last one unended) and splits it.
 * Returns 1, or 0 at the end of the file. */
static int ntu_next_line(ntu_parser *p)
{
    if (p->pos >= p->len)
        return 0;
    const char *s = p->buf + p->pos;
    const char *nl = memchr(s, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - s) : p->len - p->pos;
    p->pos += n + (nl != NULL);
    if (n > 0 && s[n - 1] == '\r')
        n--;
    p->line++;
    p->s = s;
    p->n = n;
    ntu_split(p);
    return 1;
}

/* Takes the next line, which must hold `what`: not the end of the file, not blank. */
static int ntu_take(ntu_parser *p, const char *what, const char *detail)
{
    if (!ntu_next_line(p)) {
        p->line++;
        return ntu_fail(p, what, detail, "the end of the file");
    }
    if (p->ntok == 0)
        return ntu_fail(p, what, detail, "an empty line");
    return 0;
}

/* Token k as a C string in tmp[NTU_TOKEN_MAX + 1]; 0 if too long or starting with a space
 * that strtod and strtol would skip (a vertical tab, a lone carriage return). */
static int ntu_tok_str(const ntu_parser *p, int k, char *tmp)
{
    const ntu_tok *t = &p->tok[k];
    if (t->n > NTU_TOKEN_MAX || isspace((unsigned char)t->s[0]))
        return 0;
    memcpy(tmp, t->s, t->n);
    tmp[t->n] = '\0';
    return 1;
}

/* Token k as a number read whole by strtod in the C locale (an overflow reads as infinite). */
static int ntu_tok_double(const ntu_parser *p, int k, double *v)
{
    char tmp[NTU_TOKEN_MAX + 1], *end;
    if (!ntu_tok_str(p, k, tmp))
        return 0;
    *v = strtod_l(tmp, &end, p->c_locale);
    return end == tmp + p->tok[k].n;
}

/* Token k as a decimal integer read whole, in the range of long. */
static int ntu_tok_long(const ntu_parser *p, int k, long *v)
{
    char tmp[NTU_TOKEN_MAX + 1], *end;
    if (!ntu_tok_str(p, k, tmp))
        return 0;
    errno = 0;
    *v = strtol(tmp, &end, 10);
    return end == tmp + p->tok[k].n && errno == 0;
}

/* ---- the records ------------------------------------------------------------------------ */

/* Takes a line of exactly n numbers into v[0 .. n). */
static int ntu_read_numbers(ntu_parser *p, const char *what, int n, double *v)
{
    char found[NTU_FOUND_CAP + 32], tok[NTU_FOUND_CAP];
    int rc = ntu_take(p, what, "");
    if (rc)
        return rc;
    if (p->ntok != n) {
        snprintf(found, sizeof found, "%s%d fields", p->ntok > n ? "more than " : "",
                 p->ntok > n ? n : p->ntok);
        return ntu_fail(p, what, "", found);
    }
    for (int k = 0; k < n; k++) {
        if (ntu_tok_double(p, k, &v[k]))
            continue;
        ntu_quote(tok, sizeof tok, p->tok[k].s, p->tok[k].n);
        snprintf(found, sizeof found, "%s in field %d", tok, k + 1);
        return ntu_fail(p, what, "", found);
    }
    return 0;
}

/* Takes a line holding one integer, from lo to hi. */
static int ntu_read_count(ntu_parser *p, const char *what, long lo, long hi, long *out)
{
    char range[64], found[NTU_FOUND_CAP];
    if (lo == hi)
        snprintf(range, sizeof range, " (%ld)", lo);
    else
        snprintf(range, sizeof range, " (an integer from %ld to %ld)", lo, hi);
    int rc = ntu_take(p, what, range);
    if (rc)
        return rc;
    long v;
    if (p->ntok != 1 || !ntu_tok_long(p, 0, &v) || v < lo || v > hi)
        return ntu_fail(p, what, range, ntu_found_line(p, found, sizeof found));
    *out = v;
    return 0;
}

/* The first line. A frame takes 2 bytes at least ("0\n", the last one "0"), so no more
 * frames than that can follow are believed, whatever the count says. */
static int ntu_read_frame_count(ntu_parser *p, int *t)
{
    long v = 0;
    int rc = ntu_read_count(p, "the frame count", 0, INT_MAX, &v);
    if (rc)
        return rc;
    size_t fit = (p->len - p->pos + 1) / 2;
    if ((unsigned long)v > fit) {
        char detail[96], found[NTU_FOUND_CAP];
        snprintf(detail, sizeof detail, " (at most %zu: %zu bytes follow, a frame takes 2)",
                 fit, p->len - p->pos);
        return ntu_fail(p, "the frame count", detail, ntu_found_line(p, found, sizeof found));
    }
    *t = (int)v;
    return 0;
}

/* x, y, z of the joint the parser is at, into its person's place in frame f; a joint with a
 * coordinate that is not a finite float stays 0 and is counted. */
static void ntu_store(const ntu_parser *p, skel_seq *out, const double *v, ntu_counts *c)
{
    for (int k = 0; k < NTU_CHANNELS; k++)
        if (!isfinite(v[k]) || fabs(v[k]) > FLT_MAX) {
            c->masked_joints++;
            return;
        }
    size_t m = (size_t)out->m;
    float *frame = out->data + (size_t)p->frame * NTU_CHANNELS * NTU_JOINTS * m;
    for (int k = 0; k < NTU_CHANNELS; k++)
        frame[((size_t)k * NTU_JOINTS + (size_t)p->joint) * m + (size_t)p->body] = (float)v[k];
}

/* One body: its info line, the joint count, then a line per joint. Bodies beyond out->m
 * are checked the same way and not stored. */
static int ntu_read_body(ntu_parser *p, skel_seq *out, ntu_counts *c)
{
    double v[NTU_JOINT_FIELDS];
    long joints;
    int rc = ntu_read_numbers(p, "the 10 numbers of the body info", NTU_BODY_FIELDS, v);
    if (!rc)
        rc = ntu_read_count(p, "the joint count", NTU_JOINTS, NTU_JOINTS, &joints);
    for (p->joint = 0; !rc && p->joint < NTU_JOINTS; p->joint++) {
        rc = ntu_read_numbers(p, "the 12 numbers", NTU_JOINT_FIELDS, v);
        if (!rc && p->body < out->m)
            ntu_store(p, out, v, c);
    }
    p->joint = -1;
    return rc;
}

static int ntu_read_frame(ntu_parser *p, skel_seq *out, ntu_counts *c)
{
    long bodies;
    int rc = ntu_read_count(p, "the body count", 0, NTU_MAX_BODIES, &bodies);
    if (rc)
        return rc;
    c->bodies += bodies;
    c->empty_frames += bodies == 0;
    c->dropped_bodies += bodies > out->m ? bodies - out->m : 0;
    if (bodies > c->max_bodies)
        c->max_bodies = (int)bodies;
    for (p->body = 0; !rc && p->body < bodies; p->body++)
        rc = ntu_read_body(p, out, c);
    p->body = -1;
    return rc;
}

/* After the last frame only white space may follow. */
static int ntu_check_end(ntu_parser *p, int t)
{
    char detail[48], found[NTU_FOUND_CAP];
    while (ntu_next_line(p)) {
        if (p->ntok == 0)
            continue;
        snprintf(detail, sizeof detail, " after %d frame%s", t, t == 1 ? "" : "s");
        return ntu_fail(p, "the end of the file", detail, ntu_found_line(p, found, sizeof found));
    }
    return 0;
}

static int ntu_alloc(const ntu_parser *p, skel_seq *out, int t, int m)
{
    size_t per_frame = (size_t)NTU_CHANNELS * NTU_JOINTS * (size_t)m;
    if ((size_t)t > SIZE_MAX / sizeof(float) / per_frame)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: %d frames do not fit in memory", p->path,
                           t);
    *out = (skel_seq){.t = t, .c = NTU_CHANNELS, .v = NTU_JOINTS, .m = m};
    out->data = calloc(t ? (size_t)t * per_frame : 1, sizeof(float));
    if (!out->data)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %d frames", p->path, t);
    return 0;
}

static int ntu_parse(ntu_parser *p, int m, skel_seq *out, ntu_counts *c)
{
    int t = 0;
    int rc = ntu_read_frame_count(p, &t);
    if (!rc)
        rc = ntu_alloc(p, out, t, m);
    for (p->frame = 0; !rc && p->frame < t; p->frame++)
        rc = ntu_read_frame(p, out, c);
    p->frame = -1;
    return rc ? rc : ntu_check_end(p, t);
}

/* ---- the file --------------------------------------------------------------------------- */

/* Makes room for more of the file, up to one byte over the largest size allowed. */
static int ntu_grow(const char *path, char **buf, size_t *cap, cin_err *err)
{
    if (*cap > (size_t)NTU_MAX_FILE_BYTES)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: larger than %ld bytes, the most read "
                           "from a skeleton file", path, NTU_MAX_FILE_BYTES);
    size_t next = *cap ? *cap * 2 : NTU_READ_CHUNK;
    if (next > (size_t)NTU_MAX_FILE_BYTES + 1)
        next = (size_t)NTU_MAX_FILE_BYTES + 1;
    char *b = realloc(*buf, next);
    if (!b)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory reading the file", path);
    *buf = b;
    *cap = next;
    return 0;
}

/* The whole file into *buf (malloc'd) and *len. Reads until the end, so pipes work too. */
static int ntu_load(const char *path, char **buf, size_t *len, cin_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = 0, cap = 0;
    int rc = 0;
    *buf = NULL;
    for (;;) {
        if (n == cap && (rc = ntu_grow(path, buf, &cap, err)) != 0)
            break;
        n += fread(*buf + n, 1, cap - n, f);
        if (n < cap)
            break;
    }
    if (!rc && ferror(f))
        rc = cin_err_set(err, CIN_E_IO, "%s: cannot read: %s", path, strerror(errno));
    fclose(f);
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    *len = n;
    return rc;
}

int ntu_read_with_counts(const char *path, int max_persons, skel_seq *out, ntu_counts *counts,
                         cin_err *err)
{
    if (counts)
        *counts = (ntu_counts){0};
    if (!out)
        return cin_err_set(err, CIN_E_INVAL, "ntu: no output sequence given");
    *out = (skel_seq){0};
    if (!path)
        return cin_err_set(err, CIN_E_INVAL, "ntu: no path given");
    if (max_persons < 1 || max_persons > NTU_MAX_PERSONS)
        return cin_err_set(err, CIN_E_INVAL, "%s: max_persons is %d, not in 1..%d", path,
                           max_persons, NTU_MAX_PERSONS);

    ntu_parser p = {.path = path, .err = err, .frame = -1, .body = -1, .joint = -1};
    char *buf = NULL;
    int rc = ntu_load(path, &buf, &p.len, err);
    if (rc)
        return rc;
    p.buf = buf;

    ntu_counts c = {0};
    p.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!p.c_locale)
        rc = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory for the C locale", path);
    else
        rc = ntu_parse(&p, max_persons, out, &c);
    if (p.c_locale)
        freelocale(p.c_locale);
    free(buf);

    if (rc) {
        skel_seq_free(out);
        return rc;
    }
    out->masked = c.masked_joints + c.dropped_bodies * NTU_JOINTS;
    if (counts)
        *counts = c;
    return 0;
}

int ntu_read(const char *path, int max_persons, skel_seq *out, cin_err *err)
{
    return ntu_read_with_counts(path, max_persons, out, NULL, err);
}
