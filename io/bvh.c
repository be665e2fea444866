/* BVH motion capture reader (see bvh.h). The file is read whole; a recursive parser, its depth
 * bounded by BVH_MAX_DEPTH, fills a joint table in file order from the HIERARCHY tokens, the
 * MOTION lines go to one [frames][channels] array of doubles, and forward kinematics runs in
 * double precision for the source frames the output needs, two at a time. */
#include "bvh.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define BVH_PI 3.14159265358979323846
#define BVH_MAX_CHANNELS 6
/* Slack when counting output frames (see bvh.h). */
#define BVH_ROUND_SLACK 1e-9
/* Bytes of a token shown in an error message. */
#define BVH_SHOW 24

/* A channel code is its axis (0 x, 1 y, 2 z), plus BVH_ROT for a rotation. */
enum { BVH_ROT = 4 };

static const char *const bvh_channel_names[] = {
    "Xposition", "Yposition", "Zposition", NULL, "Xrotation", "Yrotation", "Zrotation",
};

typedef struct bvh_joint {
    char *name;
    int parent;                         /* -1 for a root */
    double offset[3];
    int nch;
    unsigned char ch[BVH_MAX_CHANNELS]; /* channel codes in CHANNELS order */
    int first;                          /* its first channel's index on a motion line */
} bvh_joint;

/* A run of non-blank bytes of the file; len is 0 at the end of the file (or of a line). */
typedef struct bvh_tok {
    const char *s;
    size_t len;
    int line;
} bvh_tok;

typedef struct bvh_parser {
    const char *path;
    cin_err *err;
    char *buf;                  /* the file, NUL-terminated one byte past len */
    size_t len, pos;
    int line;                   /* the line of buf[pos], from 1 */
    bvh_joint *joints;
    int nj, cap;
    int nch;                    /* numbers on a motion line */
    int frames;
    double frame_time;
    double *values;             /* [frames][nch] */
} bvh_parser;

/* One source frame in world space. */
typedef struct bvh_pose {
    int frame;                  /* the source frame held, -1 for none */
    double *pos;                /* [joints][3] */
    double *rot;                /* [joints][3][3], row-major */
    unsigned char *bad;         /* [joints]: 1 where the joint is unknown (masked) */
} bvh_pose;

/* ---- errors ---- */

__attribute__((format(printf, 3, 4)))
static int bvh_fail(const bvh_parser *p, int line, const char *fmt, ...)
{
    char what[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cin_err_set(p->err, CIN_E_FORMAT, "%s:%d: %s", p->path, line, what);
}

/* "'token'" with bytes outside printable ASCII escaped and long ones cut, or
 * "the end of the file" / "the end of the line". */
static const char *bvh_desc(const bvh_tok *t, const char *none, char buf[128])
{
    if (!t->len)
        return none;
    size_t k = 0;
    buf[k++] = '\'';
    for (size_t i = 0; i < t->len && i < BVH_SHOW; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[k++] = (char)c;
        else
            k += (size_t)snprintf(buf + k, 5, "\\x%02x", c);
    }
    if (t->len > BVH_SHOW)
        k += (size_t)snprintf(buf + k, 4, "...");
    buf[k++] = '\'';
    buf[k] = '\0';
    return buf;
}

#define BVH_FOUND(t, buf) bvh_desc(t, "the end of the file", buf)

/* ---- tokens ---- */

static int bvh_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The token at pos, which is already past any blank. */
static bvh_tok bvh_take(bvh_parser *p)
{
    bvh_tok t = {p->buf + p->pos, 0, p->line};
    while (p->pos < p->len && !bvh_is_blank(p->buf[p->pos]) && p->buf[p->pos] != '\n') {
        p->pos++;
        t.len++;
    }
    return t;
}

/* The next token, across lines. */
static bvh_tok bvh_next(bvh_parser *p)
{
    for (; p->pos < p->len; p->pos++) {
        char c = p->buf[p->pos];
        if (c == '\n')
            p->line++;
        else if (!bvh_is_blank(c))
            break;
    }
    return bvh_take(p);
}

/* The next token on this line; len 0 at the end of the line, whose '\n' is not taken. */
static bvh_tok bvh_next_on_line(bvh_parser *p)
{
    while (p->pos < p->len && bvh_is_blank(p->buf[p->pos]))
        p->pos++;
    return bvh_take(p);
}

static int bvh_is(const bvh_tok *t, const char *word)
{
    size_t n = strlen(word);
    return t->len == n && memcmp(t->s, word, n) == 0;
}

/* The next token must be word; ctx ("" or " closing ...") says where. */
static int bvh_expect(bvh_parser *p, const char *word, const char *ctx)
{
    char b[128];
    bvh_tok t = bvh_next(p);
    if (bvh_is(&t, word))
        return 0;
    return bvh_fail(p, t.line, "expected '%s'%s, found %s", word, ctx, BVH_FOUND(&t, b));
}

/* ---- numbers ---- */

static size_t bvh_digits(const char *s, size_t i, size_t n)
{
    size_t j = i;
    while (j < n && s[j] >= '0' && s[j] <= '9')
        j++;
    return j - i;
}

/* [sign] (digits [. digits] | . digits) [(e | E) [sign] digits], and nothing else. */
static int bvh_is_decimal(const char *s, size_t n)
{
    size_t i = n && (s[0] == '+' || s[0] == '-');
    size_t d = bvh_digits(s, i, n);
    i += d;
    if (i < n && s[i] == '.') {
        size_t f = bvh_digits(s, i + 1, n);
        i += 1 + f;
        d += f;
    }
    if (!d)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1 + (i + 1 < n && (s[i + 1] == '+' || s[i + 1] == '-'));
        size_t e = bvh_digits(s, j, n);
        if (!e)
            return 0;
        i = j + e;
    }
    return i == n;
}

static int bvh_is_word_ci(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* A number token into *out (NaN and infinities included); -1 if it is not one. */
static int bvh_number(const bvh_tok *t, double *out)
{
    size_t i = t->len && (t->s[0] == '+' || t->s[0] == '-');
    const char *w = t->s + i;
    size_t n = t->len - i;
    if (bvh_is_word_ci(w, n, "nan")) {
        *out = NAN;
        return 0;
    }
    if (bvh_is_word_ci(w, n, "inf") || bvh_is_word_ci(w, n, "infinity")) {
        *out = i && t->s[0] == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    if (!bvh_is_decimal(t->s, t->len))
        return -1;
    /* The byte after the token is a blank, '\n' or the final NUL, so strtod stops there; an
     * overflow gives +-HUGE_VAL, an infinity. */
    *out = strtod(t->s, NULL);
    return 0;
}

/* ---- hierarchy ---- */

static int bvh_name_ok(const bvh_tok *t)
{
    if (!t->len || bvh_is(t, "{") || bvh_is(t, "}"))
        return 0;
    for (size_t i = 0; i < t->len; i++)
        if ((unsigned char)t->s[i] <= 0x20 || t->s[i] == 0x7f)
            return 0;
    return 1;
}

static int bvh_add_joint(bvh_parser *p, const bvh_tok *name, int parent, int *index)
{
    if (p->nj == BVH_MAX_JOINTS)
        return bvh_fail(p, name->line, "expected at most %d joints, found more",
                        BVH_MAX_JOINTS);
    if (p->nj == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        bvh_joint *j = realloc(p->joints, sizeof *j * (size_t)cap);
        if (!j)
            return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %d joints",
                               p->path, cap);
        p->joints = j;
        p->cap = cap;
    }
    char *s = malloc(name->len + 1);
    if (!s)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for a joint name", p->path);
    memcpy(s, name->s, name->len);
    s[name->len] = '\0';
    p->joints[p->nj] = (bvh_joint){.name = s, .parent = parent};
    *index = p->nj++;
    return 0;
}

/* OFFSET x y z, each finite. */
static int bvh_parse_offset(bvh_parser *p, double off[3], const char *ctx)
{
    char b[128];
    int rc = bvh_expect(p, "OFFSET", ctx);
    for (int i = 0; !rc && i < 3; i++) {
        bvh_tok t = bvh_next(p);
        if (bvh_number(&t, &off[i]) != 0 || !isfinite(off[i]))
            rc = bvh_fail(p, t.line, "expected a finite number for OFFSET %c, found %s",
                          "xyz"[i], BVH_FOUND(&t, b));
    }
    return rc;
}

static int bvh_channel_code(const bvh_tok *t)
{
    for (int c = 0; c < (int)(sizeof bvh_channel_names / sizeof bvh_channel_names[0]); c++)
        if (bvh_channel_names[c] && bvh_is(t, bvh_channel_names[c]))
            return c;
    return -1;
}

/* After CHANNELS: a count 0..6, then that many distinct channel names. */
static int bvh_parse_channels(bvh_parser *p, bvh_joint *j)
{
    char b[128];
    bvh_tok t = bvh_next(p);
    if (t.len != 1 || t.s[0] < '0' || t.s[0] > '0' + BVH_MAX_CHANNELS)
        return bvh_fail(p, t.line, "expected a channel count 0..%d after CHANNELS, found %s",
                        BVH_MAX_CHANNELS, BVH_FOUND(&t, b));
    j->nch = t.s[0] - '0';
    unsigned seen = 0;
    for (int i = 0; i < j->nch; i++) {
        t = bvh_next(p);
        int c = bvh_channel_code(&t);
        if (c < 0)
            return bvh_fail(p, t.line, "expected a channel name (Xposition, Yposition, "
                            "Zposition, Xrotation, Yrotation or Zrotation), found %s",
                            BVH_FOUND(&t, b));
        if (seen & 1u << c)
            return bvh_fail(p, t.line, "expected each channel at most once, found %s twice",
                            bvh_channel_names[c]);
        seen |= 1u << c;
        j->ch[i] = (unsigned char)c;
    }
    j->first = p->nch;
    p->nch += j->nch;
    return 0;
}

/* After "End": Site { OFFSET x y z }. */
static int bvh_parse_end_site(bvh_parser *p, int line, int depth)
{
    double off[3];
    if (depth > BVH_MAX_DEPTH)
        return bvh_fail(p, line, "expected blocks nested at most %d deep, found deeper",
                        BVH_MAX_DEPTH);
    int rc = bvh_expect(p, "Site", " after End");
    if (!rc)
        rc = bvh_expect(p, "{", " after End Site");
    if (!rc)
        rc = bvh_parse_offset(p, off, " in End Site");
    if (!rc)
        rc = bvh_expect(p, "}", " closing End Site (End Sites hold only an OFFSET)");
    return rc;
}

static int bvh_parse_joint(bvh_parser *p, int parent, int line, int depth);

/* The JOINT and End Site blocks of joint idx, from token t up to its closing brace. */
static int bvh_parse_children(bvh_parser *p, int idx, int line, int depth, bvh_tok t)
{
    char b[128];
    for (int rc = 0; !rc; t = bvh_next(p)) {
        if (bvh_is(&t, "}"))
            return 0;
        if (bvh_is(&t, "JOINT"))
            rc = bvh_parse_joint(p, idx, t.line, depth + 1);
        else if (bvh_is(&t, "End"))
            rc = bvh_parse_end_site(p, t.line, depth + 1);
        else
            return bvh_fail(p, t.line, "expected JOINT, End Site or '}' closing joint '%s' "
                            "of line %d, found %s", p->joints[idx].name, line,
                            BVH_FOUND(&t, b));
        if (rc)
            return rc;
    }
    return 0;
}

/* After ROOT or JOINT (at line): name { OFFSET x y z [CHANNELS ...] children } */
static int bvh_parse_joint(bvh_parser *p, int parent, int line, int depth)
{
    char b[128];
    int idx = 0, rc;
    if (depth > BVH_MAX_DEPTH)
        return bvh_fail(p, line, "expected blocks nested at most %d deep, found deeper",
                        BVH_MAX_DEPTH);
    bvh_tok t = bvh_next(p);
    if (!bvh_name_ok(&t))
        return bvh_fail(p, t.line, "expected a joint name, found %s", BVH_FOUND(&t, b));
    rc = bvh_add_joint(p, &t, parent, &idx);
    if (!rc)
        rc = bvh_expect(p, "{", " after the joint name");
    if (!rc)
        rc = bvh_parse_offset(p, p->joints[idx].offset, " as a joint's first entry");
    if (rc)
        return rc;
    t = bvh_next(p);
    if (bvh_is(&t, "CHANNELS")) {
        if ((rc = bvh_parse_channels(p, &p->joints[idx])) != 0)
            return rc;
        t = bvh_next(p);
    }
    return bvh_parse_children(p, idx, line, depth, t);
}

/* HIERARCHY, one or more ROOT blocks, then MOTION. */
static int bvh_parse_hierarchy(bvh_parser *p)
{
    char b[128];
    int rc = bvh_expect(p, "HIERARCHY", " at the start of a BVH file");
    while (!rc) {
        bvh_tok t = bvh_next(p);
        if (bvh_is(&t, "ROOT"))
            rc = bvh_parse_joint(p, -1, t.line, 1);
        else if (p->nj && bvh_is(&t, "MOTION"))
            break;
        else
            rc = bvh_fail(p, t.line, "expected %s, found %s",
                          p->nj ? "ROOT or MOTION" : "ROOT", BVH_FOUND(&t, b));
    }
    if (!rc && p->nch == 0)
        rc = cin_err_set(p->err, CIN_E_UNSUPPORTED,
                         "%s:%d: the hierarchy has no channels, so there is no motion to read",
                         p->path, p->line);
    return rc;
}

/* ---- motion ---- */

/* "Frames: n", 1 <= n <= INT_MAX, into *n; its line into *line. */
static int bvh_parse_frame_count(bvh_parser *p, long long *n, int *line)
{
    char b[128];
    int rc = bvh_expect(p, "Frames:", " after MOTION");
    if (rc)
        return rc;
    bvh_tok t = bvh_next(p);
    size_t i = 0;
    for (*n = 0; i < t.len && t.s[i] >= '0' && t.s[i] <= '9' && *n <= INT_MAX; i++)
        *n = *n * 10 + (t.s[i] - '0');
    *line = t.line;
    if (!t.len || i != t.len || *n < 1 || *n > INT_MAX)
        return bvh_fail(p, t.line, "expected a frame count 1..%d after Frames:, found %s",
                        INT_MAX, BVH_FOUND(&t, b));
    return 0;
}

/* "Frame Time: s", s finite and > 0, alone on the rest of its line. */
static int bvh_parse_frame_time(bvh_parser *p)
{
    char b[128];
    int rc = bvh_expect(p, "Frame", " after the frame count");
    if (!rc)
        rc = bvh_expect(p, "Time:", " after Frame");
    if (rc)
        return rc;
    bvh_tok t = bvh_next(p);
    if (bvh_number(&t, &p->frame_time) != 0 || !isfinite(p->frame_time) || p->frame_time <= 0)
        return bvh_fail(p, t.line, "expected a frame time in seconds > 0, found %s",
                        BVH_FOUND(&t, b));
    t = bvh_next_on_line(p);
    if (t.len)
        return bvh_fail(p, t.line, "expected the end of the line after the frame time, "
                        "found %s", BVH_FOUND(&t, b));
    if (p->pos < p->len) {
        p->pos++;
        p->line++;
    }
    return 0;
}

/* A frame line of nch numbers takes 2 * nch bytes with its '\n', the last one a byte less:
 * n frames fit in what is left only if n * 2 * nch - 1 <= left. */
static int bvh_check_frames(bvh_parser *p, long long n, int line)
{
    size_t left = p->len - p->pos;
    size_t most = (left + 1) / (2 * (size_t)p->nch);
    if ((unsigned long long)n > most)
        return bvh_fail(p, line, "expected at most %zu frames of %d numbers in the %zu bytes "
                        "after Frame Time, found Frames: %lld", most, p->nch, left, n);
    p->frames = (int)n;
    p->values = malloc(sizeof(double) * (size_t)n * (size_t)p->nch);
    if (!p->values)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %lld frames", p->path,
                           n);
    return 0;
}

/* Frame f (from 0): exactly nch numbers, then the end of its line. */
static int bvh_parse_frame(bvh_parser *p, int f)
{
    char b[128];
    double *row = p->values + (size_t)f * (size_t)p->nch;
    int line = p->line;
    if (p->pos >= p->len)
        return bvh_fail(p, line, "expected frame %d of %d (Frames:), found the end of the file",
                        f + 1, p->frames);
    for (int i = 0; i < p->nch; i++) {
        bvh_tok t = bvh_next_on_line(p);
        if (!t.len)
            return bvh_fail(p, line, "expected %d numbers on the line of frame %d, found %d",
                            p->nch, f + 1, i);
        if (bvh_number(&t, &row[i]) != 0)
            return bvh_fail(p, line, "expected a number (%d of %d on the line of frame %d), "
                            "found %s", i + 1, p->nch, f + 1, BVH_FOUND(&t, b));
    }
    bvh_tok t = bvh_next_on_line(p);
    if (t.len)
        return bvh_fail(p, line, "expected %d numbers on the line of frame %d, found more: %s",
                        p->nch, f + 1, BVH_FOUND(&t, b));
    if (p->pos < p->len) {
        p->pos++;
        p->line++;
    }
    return 0;
}

static int bvh_parse_motion(bvh_parser *p)
{
    char b[128];
    long long n;
    int line;
    int rc = bvh_parse_frame_count(p, &n, &line);
    if (!rc)
        rc = bvh_parse_frame_time(p);
    if (!rc)
        rc = bvh_check_frames(p, n, line);
    for (int f = 0; !rc && f < p->frames; f++)
        rc = bvh_parse_frame(p, f);
    if (rc)
        return rc;
    bvh_tok t = bvh_next(p);
    if (t.len)
        return bvh_fail(p, t.line, "expected the end of the file after %d frames (Frames:), "
                        "found %s", p->frames, BVH_FOUND(&t, b));
    return 0;
}

/* ---- forward kinematics ---- */

/* m = m * R(axis, deg), m row-major 3x3; R rotates counter-clockwise about the axis, so with
 * i, k the next two axes in cyclic order, R[i][i] = R[k][k] = cos, R[k][i] = sin = -R[i][k]. */
static void bvh_rotate(double m[9], int axis, double deg)
{
    double a = deg * (BVH_PI / 180.0), c = cos(a), s = sin(a);
    int i = (axis + 1) % 3, k = (axis + 2) % 3;
    for (int r = 0; r < 3; r++) {
        double u = m[r * 3 + i], w = m[r * 3 + k];
        m[r * 3 + i] = u * c + w * s;
        m[r * 3 + k] = w * c - u * s;
    }
}

/* The local translation t and rotation r of joint j from its channel values v; 0 if one of
 * them is not finite. */
static int bvh_local(const bvh_joint *j, const double *v, double t[3], double r[9])
{
    static const double eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    memcpy(t, j->offset, sizeof j->offset);
    memcpy(r, eye, sizeof eye);
    for (int i = 0; i < j->nch; i++) {
        double x = v[j->first + i];
        if (!isfinite(x))
            return 0;
        if (j->ch[i] & BVH_ROT)
            bvh_rotate(r, j->ch[i] & 3, x);
        else
            t[j->ch[i]] += x;
    }
    return 1;
}

/* World rotation wr = pr * r and position wp = pr * t + pp. */
static void bvh_compose(const double pr[9], const double pp[3], const double t[3],
                        const double r[9], double wr[9], double wp[3])
{
    for (int a = 0; a < 3; a++) {
        wp[a] = pp[a];
        for (int b = 0; b < 3; b++) {
            wp[a] += pr[a * 3 + b] * t[b];
            wr[a * 3 + b] = 0;
            for (int c = 0; c < 3; c++)
                wr[a * 3 + b] += pr[a * 3 + c] * r[c * 3 + b];
        }
    }
}

static int bvh_fits_float(const double x[3])
{
    return fabs(x[0]) <= FLT_MAX && fabs(x[1]) <= FLT_MAX && fabs(x[2]) <= FLT_MAX;
}

/* Source frame f into q; parents come before their children in joint order. */
static void bvh_pose_compute(const bvh_parser *p, int f, bvh_pose *q)
{
    static const double eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, zero[3] = {0, 0, 0};
    const double *v = p->values + (size_t)f * (size_t)p->nch;
    for (int j = 0; j < p->nj; j++) {
        const bvh_joint *jt = &p->joints[j];
        int par = jt->parent;
        double t[3], r[9];
        double *wr = q->rot + (size_t)j * 9, *wp = q->pos + (size_t)j * 3;
        q->bad[j] = !bvh_local(jt, v, t, r) || (par >= 0 && q->bad[par]);
        if (q->bad[j])
            continue;
        bvh_compose(par < 0 ? eye : q->rot + (size_t)par * 9,
                    par < 0 ? zero : q->pos + (size_t)par * 3, t, r, wr, wp);
        q->bad[j] = !bvh_fits_float(wp);
    }
    q->frame = f;
}

/* Source frame f from the two held, computing it over the lower-numbered one if needed: the
 * output asks for frames in non-decreasing order, so a frame still needed is never evicted. */
static const bvh_pose *bvh_pose_at(const bvh_parser *p, bvh_pose q[2], int f)
{
    if (q[0].frame == f)
        return &q[0];
    if (q[1].frame == f)
        return &q[1];
    bvh_pose *slot = q[0].frame < q[1].frame ? &q[0] : &q[1];
    bvh_pose_compute(p, f, slot);
    return slot;
}

/* ---- output ---- */

/* Output frame dst [3][joints] = a + w * (b - a); a joint unknown in a, or in b when w > 0,
 * is zero and counted. */
static void bvh_emit(const bvh_pose *a, const bvh_pose *b, double w, int nj, float *dst,
                     int64_t *masked)
{
    for (int j = 0; j < nj; j++) {
        int bad = a->bad[j] || (w > 0 && b->bad[j]);
        *masked += bad;
        for (int c = 0; c < 3; c++) {
            double x = a->pos[j * 3 + c];
            if (w > 0)
                x += w * (b->pos[j * 3 + c] - x);
            dst[c * nj + j] = bad ? 0.0f : (float)x;
        }
    }
}

/* Output frames for fps (see bvh.h), within BVH_MAX_VALUES. */
static int bvh_out_frames(const bvh_parser *p, double fps, int *t)
{
    *t = p->frames;
    if (fps > 0) {
        double x = (p->frames - 1) * p->frame_time * fps + BVH_ROUND_SLACK;
        if (!(x < (double)BVH_MAX_VALUES))
            return cin_err_set(p->err, CIN_E_UNSUPPORTED, "%s: %d frames %g s apart "
                               "resampled to %g fps give more than %lld frames", p->path,
                               p->frames, p->frame_time, fps, BVH_MAX_VALUES);
        *t = (int)floor(x) + 1;
    }
    if ((long long)*t * 3 * p->nj > BVH_MAX_VALUES)
        return cin_err_set(p->err, CIN_E_UNSUPPORTED, "%s: %d frames of %d joints give more "
                           "than the %lld values a skeleton sequence may hold", p->path, *t,
                           p->nj, BVH_MAX_VALUES);
    return 0;
}

static void bvh_fill(const bvh_parser *p, double fps, bvh_pose q[2], skel_seq *out)
{
    size_t frame_len = (size_t)3 * (size_t)p->nj;
    for (int k = 0; k < out->t; k++) {
        int i0 = k;
        double w = 0;
        if (fps > 0) {
            double s = (double)k / fps / p->frame_time;
            i0 = (int)floor(s);
            w = s - i0;
            if (i0 >= p->frames - 1) {
                i0 = p->frames - 1;
                w = 0;
            }
        }
        const bvh_pose *a = bvh_pose_at(p, q, i0);
        const bvh_pose *b = w > 0 ? bvh_pose_at(p, q, i0 + 1) : a;
        bvh_emit(a, b, w, p->nj, out->data + (size_t)k * frame_len, &out->masked);
    }
}

static int bvh_build(const bvh_parser *p, double fps, skel_seq *out)
{
    int t, rc = bvh_out_frames(p, fps, &t);
    if (rc)
        return rc;
    size_t nj = (size_t)p->nj;
    bvh_pose q[2] = {{.frame = -1}, {.frame = -1}};
    double *pool = malloc(sizeof(double) * nj * 24);
    unsigned char *bad = malloc(nj * 2);
    out->data = malloc(sizeof(float) * (size_t)t * 3 * nj);
    if (!pool || !bad || !out->data) {
        rc = cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %d frames of %d joints",
                         p->path, t, p->nj);
    } else {
        for (int i = 0; i < 2; i++)
            q[i] = (bvh_pose){-1, pool + nj * 12 * i, pool + nj * (12 * i + 3), bad + nj * i};
        *out = (skel_seq){.t = t, .c = 3, .v = p->nj, .m = 1, .data = out->data};
        bvh_fill(p, fps, q, out);
    }
    free(pool);
    free(bad);
    return rc;
}

/* Moves the joint names into info. */
static int bvh_take_info(bvh_parser *p, bvh_info *info)
{
    char **names = malloc(sizeof *names * (size_t)p->nj);
    if (!names)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %d joint names",
                           p->path, p->nj);
    for (int j = 0; j < p->nj; j++) {
        names[j] = p->joints[j].name;
        p->joints[j].name = NULL;
    }
    *info = (bvh_info){.joints = p->nj, .frame_time = p->frame_time, .frames = p->frames,
                       .names = names};
    return 0;
}

/* ---- file ---- */

static int bvh_slurp(bvh_parser *p, FILE *fp, size_t n)
{
    p->buf = malloc(n + 1);
    if (!p->buf)
        return cin_err_set(p->err, CIN_E_NOMEM, "%s: out of memory for %zu bytes", p->path, n);
    size_t got = fread(p->buf, 1, n, fp);
    if (got != n)
        return cin_err_set(p->err, CIN_E_IO, "%s: cannot read: %s", p->path,
                           ferror(fp) ? strerror(errno) : "the file shrank while reading");
    p->buf[n] = '\0';
    p->len = n;
    if (n >= 3 && memcmp(p->buf, "\xef\xbb\xbf", 3) == 0)
        p->pos = 3;
    return 0;
}

static int bvh_load(bvh_parser *p)
{
    FILE *fp = fopen(p->path, "rb");
    if (!fp)
        return cin_err_set(p->err, CIN_E_IO, "%s: cannot open: %s", p->path, strerror(errno));
    struct stat sb;
    int rc;
    if (fstat(fileno(fp), &sb) != 0)
        rc = cin_err_set(p->err, CIN_E_IO, "%s: cannot stat: %s", p->path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        rc = cin_err_set(p->err, CIN_E_IO, "%s: not a regular file", p->path);
    else if ((long long)sb.st_size > BVH_MAX_FILE)
        rc = cin_err_set(p->err, CIN_E_UNSUPPORTED, "%s: %lld bytes, more than the %lld a "
                         "BVH file may have", p->path, (long long)sb.st_size, BVH_MAX_FILE);
    else
        rc = bvh_slurp(p, fp, (size_t)sb.st_size);
    fclose(fp);
    return rc;
}

static void bvh_parser_free(bvh_parser *p)
{
    for (int j = 0; j < p->nj; j++)
        free(p->joints[j].name);
    free(p->joints);
    free(p->values);
    free(p->buf);
}

int bvh_read_ex(const char *path, double fps, skel_seq *out, bvh_info *info, cin_err *err)
{
    if (out)
        *out = (skel_seq){0};
    if (info)
        *info = (bvh_info){0};
    if (!path || !out)
        return cin_err_set(err, CIN_E_INVAL, "bvh_read_ex: NULL %s", path ? "out" : "path");
    if (!isfinite(fps))
        return cin_err_set(err, CIN_E_INVAL, "%s: fps %g, expected a finite rate (<= 0 keeps "
                           "every frame)", path, fps);

    bvh_parser p = {.path = path, .err = err, .line = 1};
    int rc = bvh_load(&p);
    if (!rc)
        rc = bvh_parse_hierarchy(&p);
    if (!rc)
        rc = bvh_parse_motion(&p);
    if (!rc)
        rc = bvh_build(&p, fps, out);
    if (!rc && info)
        rc = bvh_take_info(&p, info);
    bvh_parser_free(&p);
    if (rc) {
        skel_seq_free(out);
        return rc;
    }
    cin_err_clear(err);
    return 0;
}

void bvh_info_free(bvh_info *info)
{
    if (!info)
        return;
    for (int j = 0; info->names && j < info->joints; j++)
        free(info->names[j]);
    free(info->names);
    *info = (bvh_info){0};
}
