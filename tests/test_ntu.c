/* Suite "ntu": the NTU RGB+D .skeleton reader (io/ntu.h). Valid files are written by the test
 * with coordinates that print exactly ((f * 1000 + b * 100 + j * 3 + c) / 8), so values are
 * checked for equality; then the synthetic sample in media/, and hostile input: every
 * truncation, huge, negative and non-numeric counts, short lines, junk, random bytes. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ntu.h"
#include "util.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A growing string. */
typedef struct text {
    char *s;
    size_t n, cap;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            abort();
        if (t->s && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        t->cap = (t->cap + (size_t)k + 1) * 2;
        t->s = realloc(t->s, t->cap);
        if (!t->s)
            abort();
    }
}

/* The coordinate written for channel c of joint j of body b in frame f. */
static float coord(int f, int b, int j, int c)
{
    return (float)(f * 1000 + b * 100 + j * 3 + c) / 8.0f;
}

/* One body record: info line, "25", 25 joint lines. Line ends are eol. */
static void add_body(text *t, int f, int b, const char *eol)
{
    add(t, "7205759403793110%d 0 1 1 1 2 0 0.02764709 -0.05745083 2%s", b, eol);
    add(t, "25%s", eol);
    for (int j = 0; j < 25; j++)
        add(t, "%.3f %.3f %.3f 277.419 191.8218 1036.233 519.1677 -0.2059419 0.05349901 "
            "0.9692109 -0.1239193 2%s", coord(f, b, j, 0), coord(f, b, j, 1), coord(f, b, j, 2),
            eol);
}

/* A whole file of t frames with bodies[f] bodies each. */
static text file_text(int t, const int *bodies, const char *eol)
{
    text s = {0};
    add(&s, "%d%s", t, eol);
    for (int f = 0; f < t; f++) {
        add(&s, "%d%s", bodies[f], eol);
        for (int b = 0; b < bodies[f]; b++)
            add_body(&s, f, b, eol);
    }
    return s;
}

static int read_bytes(const char *path, const void *data, size_t n, int m, skel_seq *q,
                      ntu_counts *c, cin_err *err)
{
    if (tu_write_file(path, data, n) != 0)
        abort();
    cin_err_clear(err);
    return ntu_read_with_counts(path, m, q, c, err);
}

static int read_str(const char *path, const char *s, int m, skel_seq *q, cin_err *err)
{
    return read_bytes(path, s, strlen(s), m, q, NULL, err);
}

/* Value of channel c, joint j, person p in frame f: [t][c][v][m]. */
static float at(const skel_seq *q, int f, int c, int j, int p)
{
    return q->data[((f * q->c + c) * q->v + j) * q->m + p];
}

/* Every value of person p in frame f is that of body b (b < 0: zero). */
static int person_is(const skel_seq *q, int f, int p, int b)
{
    for (int j = 0; j < 25; j++)
        for (int c = 0; c < 3; c++)
            if (at(q, f, c, j, p) != (b < 0 ? 0.0f : coord(f, b, j, c)))
                return 0;
    return 1;
}

/* A failed read: code, the path in the message, and the sequence left empty. */
static void check_fails(int rc, int code, const skel_seq *q, const cin_err *err,
                        const char *path)
{
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(err->code, code);
    CU_ASSERT_PTR_NOT_NULL(strstr(err->msg, path));
    CU_ASSERT_PTR_NULL(q->data);
    CU_ASSERT_EQUAL(q->t, 0);
}

/* Reads s and expects CIN_E_FORMAT with a message holding "<path>:<line>:" and `needle`. */
static void check_format_error(const char *s, int line, const char *needle)
{
    const char *path = tu_tmp_path("bad.skeleton");
    skel_seq q;
    cin_err err;
    int rc = read_str(path, s, 2, &q, &err);
    check_fails(rc, CIN_E_FORMAT, &q, &err, path);
    char where[300];
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, where));
    if (needle)
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, needle));
    if (!strstr(err.msg, where) || (needle && !strstr(err.msg, needle)))
        fprintf(stderr, "\n  want \"%s...%s\", got: %s\n", where, needle ? needle : "", err.msg);
}

/* xorshift64: the same bytes on every run. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A read of hostile bytes either fails as malformed, naming the file, or gives a consistent
 * sequence of finite values. */
static void check_survives(const char *path, const void *data, size_t n)
{
    skel_seq q;
    cin_err err;
    int rc = read_bytes(path, data, n, 2, &q, NULL, &err);
    CU_ASSERT(rc == 0 || rc == CIN_E_FORMAT);
    if (rc != 0) {
        check_fails(rc, CIN_E_FORMAT, &q, &err, path);
        return;
    }
    CU_ASSERT(q.c == 3 && q.v == 25 && q.m == 2 && q.t >= 0 && q.data != NULL);
    size_t len = (size_t)q.t * 3 * 25 * 2, bad = 0;
    for (size_t i = 0; i < len; i++)
        bad += !isfinite(q.data[i]);
    CU_ASSERT_EQUAL(bad, 0);
    skel_seq_free(&q);
}

/* ---- valid files ------------------------------------------------------------------------ */

static void test_frames_and_persons_are_read_in_file_order(void)
{
    const int bodies[] = {1, 2, 2};
    text s = file_text(3, bodies, "\n");
    skel_seq q;
    ntu_counts c;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("order.skeleton"), s.s, s.n, 2, &q, &c, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(q.t == 3 && q.c == 3 && q.v == 25 && q.m == 2);
    CU_ASSERT(person_is(&q, 0, 0, 0) && person_is(&q, 0, 1, -1));
    for (int f = 1; f < 3; f++)
        CU_ASSERT(person_is(&q, f, 0, 0) && person_is(&q, f, 1, 1));
    /* one value by hand: frame 2, body 1, joint 24, z = (2000 + 100 + 72 + 2) / 8 */
    CU_ASSERT_DOUBLE_EQUAL(at(&q, 2, 2, 24, 1), 271.75, 1e-6);
    CU_ASSERT_EQUAL(q.masked, 0);
    CU_ASSERT(c.bodies == 5 && c.dropped_bodies == 0 && c.masked_joints == 0 &&
              c.empty_frames == 0 && c.max_bodies == 2);
    skel_seq_free(&q);
    free(s.s);
}

static void test_missing_persons_are_zero(void)
{
    const int bodies[] = {2, 1};
    text s = file_text(2, bodies, "\n");
    skel_seq q;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("missing.skeleton"), s.s, s.n, 4, &q, NULL, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(q.m, 4);
    CU_ASSERT(person_is(&q, 0, 0, 0) && person_is(&q, 0, 1, 1));
    CU_ASSERT(person_is(&q, 0, 2, -1) && person_is(&q, 0, 3, -1));
    CU_ASSERT(person_is(&q, 1, 0, 0) && person_is(&q, 1, 1, -1) && person_is(&q, 1, 3, -1));
    CU_ASSERT_EQUAL(q.masked, 0);
    skel_seq_free(&q);
    free(s.s);
}

static void test_frame_with_zero_bodies_is_all_zero(void)
{
    const int bodies[] = {1, 0, 1};
    text s = file_text(3, bodies, "\n");
    skel_seq q;
    ntu_counts c;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("zero.skeleton"), s.s, s.n, 2, &q, &c, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(q.t, 3);
    CU_ASSERT(person_is(&q, 1, 0, -1) && person_is(&q, 1, 1, -1));
    CU_ASSERT(person_is(&q, 0, 0, 0) && person_is(&q, 2, 0, 0));
    CU_ASSERT(c.empty_frames == 1 && c.bodies == 2);
    skel_seq_free(&q);
    free(s.s);

    /* no frame at all, and only empty frames */
    rc = read_str(tu_tmp_path("none.skeleton"), "0\n", 1, &q, &err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(q.t == 0 && q.data != NULL && q.masked == 0);
    skel_seq_free(&q);
    rc = read_str(tu_tmp_path("empty_frames.skeleton"), "3\n0\n0\n0", 1, &q, &err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(q.t == 3 && person_is(&q, 2, 0, -1));
    skel_seq_free(&q);
}

static void test_bodies_beyond_max_persons_are_dropped_and_counted(void)
{
    const int bodies[] = {3, 1};
    text s = file_text(2, bodies, "\n");
    skel_seq q;
    ntu_counts c;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("three.skeleton"), s.s, s.n, 2, &q, &c, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(person_is(&q, 0, 0, 0) && person_is(&q, 0, 1, 1));
    CU_ASSERT(person_is(&q, 1, 0, 0) && person_is(&q, 1, 1, -1));
    CU_ASSERT(c.bodies == 4 && c.dropped_bodies == 1 && c.max_bodies == 3);
    CU_ASSERT_EQUAL(q.masked, 25);
    skel_seq_free(&q);

    /* with room for all three, nothing is dropped */
    rc = read_bytes(tu_tmp_path("three.skeleton"), s.s, s.n, 3, &q, &c, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(person_is(&q, 0, 2, 2) && c.dropped_bodies == 0 && q.masked == 0);
    skel_seq_free(&q);
    free(s.s);
}

/* Replaces the first occurrence of from in t by to. */
static void replace(text *t, const char *from, const char *to)
{
    char *p = strstr(t->s, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    text r = {0};
    add(&r, "%.*s%s%s", (int)(p - t->s), t->s, to, p + strlen(from));
    free(t->s);
    *t = r;
}

static void test_nonfinite_coordinates_are_masked_and_counted(void)
{
    const int bodies[] = {2};
    text s = file_text(1, bodies, "\n");
    /* frame 0 body 0 joint 3 x = 9/8; body 1 joint 7 z = (100 + 21 + 2)/8; joint 8 y */
    replace(&s, "\n1.125 1.250 1.375 ", "\nnan 1.250 1.375 ");
    replace(&s, "\n15.125 15.250 15.375 ", "\n15.125 15.250 -inf ");
    replace(&s, "\n15.500 15.625 15.750 ", "\n15.500 1e999 15.750 ");
    /* a NaN outside x, y, z is no coordinate and is not masked */
    replace(&s, " 0.05349901 ", " NaN ");
    skel_seq q;
    ntu_counts c;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("nan.skeleton"), s.s, s.n, 2, &q, &c, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c.masked_joints, 3);
    CU_ASSERT_EQUAL(q.masked, 3);
    for (int ch = 0; ch < 3; ch++) {
        CU_ASSERT_EQUAL(at(&q, 0, ch, 3, 0), 0.0f);
        CU_ASSERT_EQUAL(at(&q, 0, ch, 7, 1), 0.0f);
        CU_ASSERT_EQUAL(at(&q, 0, ch, 8, 1), 0.0f);
    }
    CU_ASSERT_EQUAL(at(&q, 0, 0, 2, 0), coord(0, 0, 2, 0));
    CU_ASSERT_EQUAL(at(&q, 0, 2, 9, 1), coord(0, 1, 9, 2));
    size_t bad = 0;
    for (int i = 0; i < 3 * 25 * 2; i++)
        bad += !isfinite(q.data[i]);
    CU_ASSERT_EQUAL(bad, 0);
    skel_seq_free(&q);
    free(s.s);
}

static void test_crlf_tabs_exponents_and_no_final_newline_are_read(void)
{
    const int bodies[] = {1, 1};
    text s = file_text(2, bodies, "\r\n");
    replace(&s, "\r\n0.000 0.125 0.250 ", "\r\n0\t1.25E-01\t+2.5e-1 ");
    s.s[s.n -= 2] = '\0';
    skel_seq q;
    cin_err err;
    int rc = read_bytes(tu_tmp_path("crlf.skeleton"), s.s, s.n, 1, &q, NULL, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(q.t == 2 && person_is(&q, 0, 0, 0) && person_is(&q, 1, 0, 0));
    skel_seq_free(&q);
    free(s.s);

    /* white space after the last frame is not junk */
    rc = read_str(tu_tmp_path("tail.skeleton"), "1\n0\n\n  \r\n\t\n", 1, &q, &err);
    CU_ASSERT_EQUAL(rc, 0);
    skel_seq_free(&q);
}

static void test_sample_file_is_read(void)
{
    const char *path = "media/ntu_sample.skeleton";
    skel_seq q;
    ntu_counts c;
    cin_err err;
    int rc = ntu_read_with_counts(path, 2, &q, &c, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(q.t == 6 && q.c == 3 && q.v == 25 && q.m == 2 && q.masked == 0);
    CU_ASSERT(c.bodies == 6 && c.empty_frames == 1 && c.max_bodies == 2);
    /* the first joint line of the file: SpineBase of body 1 in frame 1 */
    CU_ASSERT_DOUBLE_EQUAL(at(&q, 0, 0, 0, 0), 0.2212166, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(at(&q, 0, 1, 0, 0), 0.1730296, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(at(&q, 0, 2, 0, 0), 3.787706, 1e-6);
    /* frame 3 has the second person, frame 5 nobody; people stand 3 to 4 m away */
    int near = 0, far = 0;
    for (int j = 0; j < 25; j++) {
        near += at(&q, 2, 2, j, 1) > 3.0f && at(&q, 2, 2, j, 1) < 3.5f;
        far += at(&q, 2, 2, j, 0) > 3.5f && at(&q, 2, 2, j, 0) < 4.0f;
    }
    CU_ASSERT(near == 25 && far == 25);
    CU_ASSERT(person_is(&q, 4, 0, -1) && person_is(&q, 4, 1, -1));
    CU_ASSERT(person_is(&q, 5, 1, -1) && !person_is(&q, 5, 0, -1));
    /* the right hand (joint 11) rises from frame 1 to frame 6, well above the spine base */
    CU_ASSERT(at(&q, 5, 1, 11, 0) - at(&q, 0, 1, 11, 0) > 0.3f);
    skel_seq_free(&q);
}

/* ---- hostile input ---------------------------------------------------------------------- */

static void test_every_truncation_fails_with_the_path(void)
{
    const int bodies[] = {1, 2};
    text s = file_text(2, bodies, "\n");
    const char *path = tu_tmp_path("cut.skeleton");
    int wrong = 0;
    for (size_t len = 0; len < s.n; len++) {
        skel_seq q;
        cin_err err;
        int rc = read_bytes(path, s.s, len, 2, &q, NULL, &err);
        /* only the cut of the final newline leaves a whole file */
        int ok = len + 1 == s.n ? rc == 0
                                : rc == CIN_E_FORMAT && strstr(err.msg, path) && !q.data;
        if (!ok && wrong++ < 3)
            fprintf(stderr, "\n  %zu of %zu bytes: %d %s\n", len, s.n, rc, err.msg);
        skel_seq_free(&q);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    free(s.s);
}

static void test_huge_counts_are_rejected_before_allocating(void)
{
    check_format_error("2000000000\n0\n0\n", 1, "at most 2");
    check_format_error("99999999999999999999999\n0\n", 1, "the frame count");
    check_format_error("2147483648\n0\n", 1, "the frame count");
    check_format_error("1\n2000000000\n", 2, "the body count of frame 1");
    check_format_error("1\n65\n", 2, "from 0 to 64");
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n99999999999\n", 4, "(25)");
}

static void test_negative_counts_are_rejected(void)
{
    check_format_error("-1\n", 1, "found \"-1\"");
    check_format_error("2\n0\n-1\n", 3, "the body count of frame 2");
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n-25\n", 4, "the joint count of body 1");
}

static void test_non_numeric_fields_are_rejected(void)
{
    check_format_error("abc\n", 1, "found \"abc\"");
    check_format_error("1.0\n0\n", 1, "the frame count");
    check_format_error("2 frames\n0\n0\n", 1, "found \"2 frames\"");
    check_format_error("1\nx\n", 2, "the body count");
    check_format_error("1\n1\n1 0 1 1 1 2 0 zz 0.1 2\n25\n", 3, "\"zz\" in field 8");
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n25.0\n", 4, "the joint count");

    const int bodies[] = {1};
    text s = file_text(1, bodies, "\n");
    replace(&s, "\n0.000 0.125 0.250 ", "\n0.000 0.125abc 0.250 ");
    check_format_error(s.s, 5, "the 12 numbers of joint 1 of body 1 in frame 1, found "
                       "\"0.125abc\" in field 2");
    free(s.s);
    s = file_text(1, bodies, "\n");
    replace(&s, " 2\n", " 2x\n");
    check_format_error(s.s, 3, "\"2x\" in field 10");
    free(s.s);
}

static void test_joint_count_other_than_25_is_rejected(void)
{
    const int bodies[] = {1};
    text s = file_text(1, bodies, "\n");
    replace(&s, "\n25\n", "\n24\n");
    check_format_error(s.s, 4, "the joint count of body 1 in frame 1 (25), found \"24\"");
    free(s.s);
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n26\n", 4, "found \"26\"");
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n0\n", 4, "found \"0\"");
}

static void test_lines_with_too_few_or_too_many_numbers_are_rejected(void)
{
    const int bodies[] = {1};
    text s = file_text(1, bodies, "\n");
    replace(&s, " -0.1239193 2\n", " 2\n");
    check_format_error(s.s, 5, "the 12 numbers of joint 1 of body 1 in frame 1, found 11 fields");
    free(s.s);
    s = file_text(1, bodies, "\n");
    replace(&s, " -0.1239193 2\n", " -0.1239193 2 7\n");
    check_format_error(s.s, 5, "found more than 12 fields");
    free(s.s);
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 2\n25\n", 3, "the 10 numbers of the body info");
    check_format_error("1\n1\n\n", 3, "found an empty line");
    check_format_error("2\n0\n\n0\n", 3, "the body count of frame 2");
}

static void test_truncated_empty_and_trailing_junk_are_rejected(void)
{
    check_format_error("", 1, "the frame count (an integer from 0 to 2147483647), found the "
                       "end of the file");
    check_format_error("\n", 1, "an empty line");
    check_format_error("3\n0\n0\n", 1, "at most 2");
    check_format_error("3\n0\n0\n\n\n", 4, "the body count of frame 3");
    check_format_error("1\n1\n1 0 1 1 1 2 0 0.1 0.1 2\n", 4, "found the end of the file");
    check_format_error("1\n0\n0\n", 3, "the end of the file after 1 frame, found \"0\"");
    check_format_error("1\n0\n\nSKELETON\n", 4, "found \"SKELETON\"");
}

static void test_binary_file_is_rejected(void)
{
    static const unsigned char bin[] = {'1', '\n', 0x00, 0x7f, 'E', 'L', 'F', 0x02, 0xff, '\n'};
    const char *path = tu_tmp_path("bin.skeleton");
    skel_seq q;
    cin_err err;
    int rc = read_bytes(path, bin, sizeof bin, 2, &q, NULL, &err);
    check_fails(rc, CIN_E_FORMAT, &q, &err, path);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "\\x00\\x7fELF\\x02\\xff"));
    static const unsigned char nul[] = {'1', 0x00, '\n', '0', '\n'};
    rc = read_bytes(path, nul, sizeof nul, 2, &q, NULL, &err);
    check_fails(rc, CIN_E_FORMAT, &q, &err, path);
}

static void test_random_bytes_never_crash(void)
{
    static const char alphabet[] = "0123456789012345 \n\n\n.-+eEnaif\r\t";
    const char *path = tu_tmp_path("random.skeleton");
    uint64_t rng = 0x9e3779b97f4a7c15u;
    unsigned char buf[1500];
    for (int i = 0; i < 300; i++) {
        size_t n = next_rand(&rng) % sizeof buf;
        int text_like = i % 2;
        for (size_t k = 0; k < n; k++) {
            uint64_t r = next_rand(&rng);
            buf[k] = text_like ? (unsigned char)alphabet[r % (sizeof alphabet - 1)]
                               : (unsigned char)r;
        }
        if (text_like && n > 2) {
            buf[0] = (unsigned char)('1' + i % 3);
            buf[1] = '\n';
        }
        check_survives(path, buf, n);
    }
}

static void test_random_mutations_of_a_valid_file_never_crash(void)
{
    static const char alphabet[] = "0123456789 \n.-eEnNaiIf\r\t\0x";
    const int bodies[] = {2, 1};
    text s = file_text(2, bodies, "\n");
    const char *path = tu_tmp_path("mutated.skeleton");
    uint64_t rng = 12345;
    char *m = malloc(s.n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    for (int i = 0; i < 300; i++) {
        memcpy(m, s.s, s.n);
        for (int e = 1 + (int)(next_rand(&rng) % 4); e > 0; e--) {
            size_t at_k = next_rand(&rng) % s.n;
            uint64_t r = next_rand(&rng);
            m[at_k] = i % 3 ? alphabet[r % (sizeof alphabet - 1)] : (char)r;
        }
        size_t n = i % 5 ? s.n : next_rand(&rng) % s.n;
        check_survives(path, m, n);
    }
    free(m);
    free(s.s);
}

static void test_missing_file_and_directory_are_io_errors(void)
{
    skel_seq q;
    cin_err err;
    const char *path = tu_tmp_path("no-such.skeleton");
    int rc = ntu_read(path, 2, &q, &err);
    check_fails(rc, CIN_E_IO, &q, &err, path);
    path = tu_tmp_path("");
    rc = ntu_read(path, 2, &q, &err);
    check_fails(rc, CIN_E_IO, &q, &err, path);
}

static void test_bad_arguments_are_invalid(void)
{
    skel_seq q = {.t = 5};
    cin_err err;
    const char *path = tu_tmp_path("args.skeleton");
    CU_ASSERT_EQUAL(read_str(path, "0\n", 0, &q, &err), CIN_E_INVAL);
    CU_ASSERT(q.t == 0 && q.data == NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "max_persons is 0"));
    CU_ASSERT_EQUAL(ntu_read(path, NTU_MAX_PERSONS + 1, &q, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(ntu_read(path, NTU_MAX_PERSONS, &q, &err), 0);
    skel_seq_free(&q);
    CU_ASSERT_EQUAL(ntu_read(NULL, 2, &q, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(ntu_read(path, 2, NULL, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(ntu_read(path, 2, NULL, NULL), CIN_E_INVAL);
}

/* ---- registration ----------------------------------------------------------------------- */

typedef struct named_test {
    const char *name;
    CU_TestFunc fn;
} named_test;

#define TEST(name) {#name, test_##name}

int test_ntu_register(void)
{
    static const named_test tests[] = {
        TEST(frames_and_persons_are_read_in_file_order),
        TEST(missing_persons_are_zero),
        TEST(frame_with_zero_bodies_is_all_zero),
        TEST(bodies_beyond_max_persons_are_dropped_and_counted),
        TEST(nonfinite_coordinates_are_masked_and_counted),
        TEST(crlf_tabs_exponents_and_no_final_newline_are_read),
        TEST(sample_file_is_read),
        TEST(every_truncation_fails_with_the_path),
        TEST(huge_counts_are_rejected_before_allocating),
        TEST(negative_counts_are_rejected),
        TEST(non_numeric_fields_are_rejected),
        TEST(joint_count_other_than_25_is_rejected),
        TEST(lines_with_too_few_or_too_many_numbers_are_rejected),
        TEST(truncated_empty_and_trailing_junk_are_rejected),
        TEST(binary_file_is_rejected),
        TEST(random_bytes_never_crash),
        TEST(random_mutations_of_a_valid_file_never_crash),
        TEST(missing_file_and_directory_are_io_errors),
        TEST(bad_arguments_are_invalid),
    };
    CU_pSuite s = CU_add_suite("ntu", NULL, NULL);
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
