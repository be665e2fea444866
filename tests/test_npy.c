/* Tests for io/npy: one-shot and streaming round trips, headers as numpy writes them (versions
 * 1.0 to 3.0, any key order and spacing), every error with its code and message, truncation at
 * every byte and a seeded fuzz loop that must never crash. */
#include <CUnit/Basic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "npy.h"
#include "util.h"

#define NPYT_FUZZ_ROUNDS 2000
#define NPYT_FUZZ_SEED 0x9e3779b97f4a7c15ull

/* ---- helpers ---- */

/* 1 when msg contains every non-NULL needle; prints msg otherwise, to show what was said. */
static int npyt_has(const char *msg, const char *a, const char *b, const char *c)
{
    const char *needles[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (needles[i] && !strstr(msg, needles[i])) {
            fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", msg, needles[i]);
            return 0;
        }
    }
    return 1;
}

/* Writes magic, version major.0, the dict exactly as given, then len data bytes. */
static void npyt_make(const char *path, int major, const char *dict, const void *data,
                      size_t len)
{
    size_t dlen = strlen(dict), pre = major == 1 ? 10 : 12;
    unsigned char *buf = malloc(pre + dlen + len + 1);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 8; i < pre; i++)
        buf[i] = (unsigned char)(dlen >> (8 * (i - 8)));
    memcpy(buf + pre, dict, dlen);
    if (len)
        memcpy(buf + pre + dlen, data, len);
    CU_ASSERT_FATAL(tu_write_file(path, buf, pre + dlen + len) == 0);
    free(buf);
}

static unsigned char *npyt_slurp(const char *path, size_t *len)
{
    unsigned char *buf = tu_read_file(path, len);
    CU_ASSERT_FATAL(buf != NULL);
    return buf;
}

static void npyt_fill(float *x, size_t n, float base)
{
    static const float special[] = {-0.0f, 1e-45f, 3.4e38f, 1.0f / 0.0f};
    for (size_t i = 0; i < n; i++)
        x[i] = i < 4 ? special[i] : base - 0.25f * (float)i;
    if (n > 4)
        x[4] = 0.0f / 0.0f;
}

/* Reads path expecting success with this shape and these exact float bits. */
static void npyt_expect(const char *path, int ndim, const int64_t *shape, const float *want)
{
    cin_err err = {0};
    int got_ndim = -1;
    int64_t got_shape[NPY_MAX_DIMS];
    float *x = NULL;
    int rc = npy_read_f32(path, &got_ndim, got_shape, &x, &err);
    if (rc)
        fprintf(stderr, "\n  npy_read_f32: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(x);
    CU_ASSERT_EQUAL(got_ndim, ndim);
    size_t n = 1;
    for (int i = 0; i < ndim && i < got_ndim; i++) {
        CU_ASSERT_EQUAL(got_shape[i], shape[i]);
        n *= (size_t)shape[i];
    }
    CU_ASSERT(n == 0 || memcmp(x, want, n * sizeof(float)) == 0);
    free(x);
}

/* Reads path expecting failure with code and a message naming the file and the needles. */
static void npyt_fails(const char *path, int code, const char *a, const char *b)
{
    cin_err err = {0};
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    float *x = (float *)&err;
    CU_ASSERT_EQUAL(npy_read_f32(path, &ndim, shape, &x, &err), code);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT(npyt_has(err.msg, path, a, b));
}

/* ---- one-shot round trips ---- */

static void test_round_trip_of_every_rank_is_exact(void)
{
    static const struct {
        int ndim;
        int64_t shape[NPY_MAX_DIMS];
    } cases[] = {
        {0, {0}}, {1, {5}}, {2, {3, 4}}, {3, {2, 0, 3}}, {8, {1, 2, 1, 2, 1, 2, 1, 2}},
    };
    float x[16];
    npyt_fill(x, 16, 7.0f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "rank%zu.npy", i);
        const char *path = tu_tmp_path(name);
        cin_err err = {0};
        CU_ASSERT_EQUAL_FATAL(npy_write_f32(path, cases[i].ndim, cases[i].shape, x, &err), 0);
        npyt_expect(path, cases[i].ndim, cases[i].shape, x);
    }
}

static void test_written_header_is_v1_padded_to_64_and_ends_in_newline(void)
{
    const char *path = tu_tmp_path("layout.npy");
    int64_t shape[2] = {3, 4};
    float x[12] = {0};
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(path, 2, shape, x, &err), 0);
    size_t len;
    unsigned char *buf = npyt_slurp(path, &len);
    size_t hlen = buf[8] | (size_t)buf[9] << 8;
    CU_ASSERT(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
    CU_ASSERT_EQUAL((10 + hlen) % 64, 0);
    CU_ASSERT_EQUAL(buf[10 + hlen - 1], '\n');
    CU_ASSERT_EQUAL(len, 10 + hlen + sizeof x);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    CU_ASSERT(memcmp(buf + 10, dict, strlen(dict)) == 0);
    free(buf);
}

/* ---- headers as other writers produce them ---- */

static void test_reads_numpy_headers_of_versions_1_2_and_3(void)
{
    static const struct {
        int major;
        const char *dict;
    } cases[] = {
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
            "                                                     \n"},
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n"},
        {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n"},
        {1, "{\"shape\":(2,3),\"descr\":\"<f4\",\"fortran_order\":False}"},
        {1, " {\n 'fortran_order' :False ,\t'shape' : ( 2 , 3 , ) ,'descr':'<f4' }\r\n"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n"},
    };
    float x[6];
    int64_t shape[2] = {2, 3};
    npyt_fill(x, 6, -1.0f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "foreign%zu.npy", i);
        const char *path = tu_tmp_path(name);
        npyt_make(path, cases[i].major, cases[i].dict, x, sizeof x);
        npyt_expect(path, 2, shape, x);
    }
}

static void test_reads_scalar_and_one_tuple_shapes(void)
{
    const char *path = tu_tmp_path("scalar.npy");
    float v = 2.5f, w[3] = {1, 2, 3};
    int64_t three[1] = {3};
    npyt_make(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", &v, 4);
    npyt_expect(path, 0, NULL, &v);
    npyt_make(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", w, 12);
    npyt_expect(path, 1, three, w);
}

/* ---- errors ---- */

static const struct npyt_bad {
    const char *dict;
    size_t data_len;
    int code;
    const char *a, *b;
} npyt_bad_headers[] = {
    {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, CIN_E_FORMAT,
     "dtype '>f4', expected '<f4' (float32)", NULL},
    {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, CIN_E_FORMAT,
     "dtype '<f8', expected '<f4' (float32)", NULL},
    {"{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2, CIN_E_FORMAT,
     "dtype '|u1'", NULL},
    {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, CIN_E_FORMAT,
     "header", "expected a quoted string"},
    {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, CIN_E_UNSUPPORTED,
     "fortran_order is True", NULL},
    {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, CIN_E_FORMAT,
     "expected True or False", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, CIN_E_FORMAT,
     "negative dimension", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, CIN_E_FORMAT,
     "shape (2) is not a tuple", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, CIN_E_FORMAT,
     "expected '('", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }", 8, CIN_E_FORMAT,
     "expected a non-negative integer in shape", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 24, CIN_E_FORMAT,
     "expected ',' or ')' in shape", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
     CIN_E_UNSUPPORTED, "more than 8 dimensions", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0,
     CIN_E_FORMAT, "does not fit in 64 bits", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }", 0,
     CIN_E_FORMAT, "shape (4611686018427387904, 8) is too large", NULL},
    {"{'descr': '<f4', 'fortran_order': False, }", 0, CIN_E_FORMAT, "missing key 'shape'",
     NULL},
    {"{'fortran_order': False, 'shape': (1,), }", 4, CIN_E_FORMAT, "missing key 'descr'",
     NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", 4, CIN_E_FORMAT,
     "unknown key 'extra'", NULL},
    {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
     CIN_E_FORMAT, "key 'descr' given twice", NULL},
    {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, CIN_E_FORMAT,
     "expected ',' or '}' at byte 17", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, CIN_E_FORMAT,
     "expected ',' or '}'", NULL},
    {"{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}", 4, CIN_E_FORMAT,
     "expected ':'", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4, CIN_E_FORMAT,
     "unexpected text after the closing '}'", NULL},
    {"{'descr': '<f4\\x00', 'fortran_order': False, 'shape': (1,)}", 4, CIN_E_FORMAT,
     "escape or control character", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, CIN_E_FORMAT,
     "data is 20 bytes, expected 24 for shape (2, 3) of float32 (truncated)", NULL},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, CIN_E_FORMAT,
     "data is 28 bytes, expected 24", "trailing bytes"},
};

static void test_read_rejects_each_bad_header_with_file_and_field(void)
{
    unsigned char zeros[64] = {0};
    for (size_t i = 0; i < sizeof npyt_bad_headers / sizeof npyt_bad_headers[0]; i++) {
        const struct npyt_bad *c = &npyt_bad_headers[i];
        char name[32];
        snprintf(name, sizeof name, "bad%zu.npy", i);
        const char *path = tu_tmp_path(name);
        npyt_make(path, 1, c->dict, zeros, c->data_len);
        npyt_fails(path, c->code, c->a, c->b);
    }
}

static void test_read_rejects_bad_preambles(void)
{
    const char *path = tu_tmp_path("pre.npy");
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUM", 4) == 0);
    npyt_fails(path, CIN_E_FORMAT, "file is 4 bytes", "10-byte .npy preamble");
    CU_ASSERT_FATAL(tu_write_file(path, "PK\x03\x04 not npy at all", 20) == 0);
    npyt_fails(path, CIN_E_FORMAT, "not a .npy file", NULL);
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUMPY\x04\x00\x10\x00{}", 12) == 0);
    npyt_fails(path, CIN_E_UNSUPPORTED, ".npy version 4.0, expected 1.0, 2.0 or 3.0", NULL);
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUMPY\x01\x01\x10\x00{}", 12) == 0);
    npyt_fails(path, CIN_E_UNSUPPORTED, ".npy version 1.1", NULL);
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUMPY\x01\x00\x00\x01{}", 12) == 0);
    npyt_fails(path, CIN_E_FORMAT, "header length 256 is past the end of the file (12 bytes)",
               NULL);
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUMPY\x02\x00\x00\x00\x00\x10{}", 14) == 0);
    npyt_fails(path, CIN_E_FORMAT, "header length 268435456 is absurd", NULL);
    CU_ASSERT_FATAL(tu_write_file(path, "\x93NUMPY\x02\x00\x00\x00", 10) == 0);
    npyt_fails(path, CIN_E_FORMAT, "preamble truncated", NULL);
}

static void test_read_missing_file_is_an_io_error(void)
{
    npyt_fails(tu_tmp_path("absent.npy"), CIN_E_IO, "cannot open", "No such file or directory");
}

static void test_write_rejects_bad_arguments(void)
{
    const char *path = tu_tmp_path("badw.npy");
    int64_t deep[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg[2] = {2, -1}, two[1] = {2};
    float x[2] = {0};
    cin_err err = {0};
    CU_ASSERT_EQUAL(npy_write_f32(path, 9, deep, x, &err), CIN_E_INVAL);
    CU_ASSERT(npyt_has(err.msg, path, "ndim 9, expected 0..8", NULL));
    CU_ASSERT_EQUAL(npy_write_f32(path, 2, neg, x, &err), CIN_E_INVAL);
    CU_ASSERT(npyt_has(err.msg, path, "shape[1] is -1", NULL));
    CU_ASSERT_EQUAL(npy_write_f32(path, 1, two, NULL, &err), CIN_E_INVAL);
    CU_ASSERT(npyt_has(err.msg, path, "data is NULL", NULL));
    const char *nodir = tu_tmp_path("no/such/dir/x.npy");
    CU_ASSERT_EQUAL(npy_write_f32(nodir, 1, two, x, &err), CIN_E_IO);
    CU_ASSERT(npyt_has(err.msg, nodir, "No such file or directory", NULL));
}

/* ---- streaming writer ---- */

static void test_stream_writer_file_is_valid_after_each_flush_and_close(void)
{
    const char *path = tu_tmp_path("stream.npy");
    int64_t row_shape[2] = {2, 3}, shape[3] = {0, 2, 3};
    float rows[7 * 6];
    npyt_fill(rows, 7 * 6, 3.0f);
    npy_writer *w = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(npy_writer_open(path, 2, row_shape, &w, &err), 0);
    npyt_expect(path, 3, shape, rows);
    size_t len0;
    free(npyt_slurp(path, &len0));
    CU_ASSERT_EQUAL(len0 % 64, 0);

    int done = 0;
    for (int batch = 1; batch <= 3; batch++) {
        for (int k = 0; k < batch; k++, done++)
            CU_ASSERT_EQUAL(npy_writer_append(w, rows + 6 * done, &err), 0);
        CU_ASSERT_EQUAL(npy_writer_flush(w, &err), 0);
        shape[0] = done;
        npyt_expect(path, 3, shape, rows);
        size_t len;
        free(npyt_slurp(path, &len));
        CU_ASSERT_EQUAL(len, len0 + (size_t)done * 6 * sizeof(float));
    }
    CU_ASSERT_EQUAL(npy_writer_append(w, rows + 6 * done++, &err), 0);
    CU_ASSERT_EQUAL(npy_writer_close(w, &err), 0);
    shape[0] = done;
    npyt_expect(path, 3, shape, rows);
}

static void test_stream_writer_of_scalars_makes_a_vector(void)
{
    const char *path = tu_tmp_path("vector.npy");
    float v[4] = {1.5f, -2.5f, 0.0f, 8.0f};
    int64_t shape[1] = {4};
    npy_writer *w = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(npy_writer_open(path, 0, NULL, &w, &err), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(npy_writer_append(w, &v[i], &err), 0);
    CU_ASSERT_EQUAL(npy_writer_close(w, &err), 0);
    npyt_expect(path, 1, shape, v);
    CU_ASSERT_EQUAL(npy_writer_close(NULL, &err), 0);
}

static void test_stream_writer_rejects_bad_arguments(void)
{
    const char *nodir = tu_tmp_path("no/such/dir/s.npy");
    const char *path = tu_tmp_path("sbad.npy");
    int64_t rs[8] = {1, 1, 1, 1, 1, 1, 1, 1}, neg[1] = {-3};
    npy_writer *w = (npy_writer *)&rs;
    cin_err err = {0};
    CU_ASSERT_EQUAL(npy_writer_open(nodir, 1, rs, &w, &err), CIN_E_IO);
    CU_ASSERT_PTR_NULL(w);
    CU_ASSERT(npyt_has(err.msg, nodir, "cannot create", "No such file or directory"));
    CU_ASSERT_EQUAL(npy_writer_open(path, 8, rs, &w, &err), CIN_E_INVAL);
    CU_ASSERT(npyt_has(err.msg, path, "ndim 8, expected 0..7", NULL));
    CU_ASSERT_EQUAL(npy_writer_open(path, 1, neg, &w, &err), CIN_E_INVAL);
    CU_ASSERT(npyt_has(err.msg, path, "shape[0] is -3", NULL));
}

/* ---- robustness ---- */

static void test_truncation_at_every_byte_is_refused(void)
{
    const char *path = tu_tmp_path("whole.npy");
    const char *cut = tu_tmp_path("cut.npy");
    int64_t shape[2] = {3, 5};
    float x[15];
    cin_err err = {0};
    npyt_fill(x, 15, 0.5f);
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(path, 2, shape, x, &err), 0);
    size_t len;
    unsigned char *buf = npyt_slurp(path, &len);
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        CU_ASSERT_FATAL(tu_write_file(cut, buf, n) == 0);
        int ndim;
        int64_t got[NPY_MAX_DIMS];
        float *data = NULL;
        int rc = npy_read_f32(cut, &ndim, got, &data, &err);
        refused += rc < 0 && err.msg[0] != '\0' && data == NULL;
        free(data);
    }
    CU_ASSERT_EQUAL(refused, (int)len);
    free(buf);
}

static uint64_t npyt_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* One random edit of buf[0 .. *len), biased towards the header. */
static void npyt_mutate(unsigned char *buf, size_t *len, size_t cap, size_t hdr_end,
                        uint64_t *rs)
{
    uint64_t r = npyt_rand(rs);
    size_t span = (r & 3) ? (hdr_end < *len ? hdr_end : *len) : *len;
    size_t at = span ? (size_t)(npyt_rand(rs) % span) : 0;
    int op = (int)((r >> 8) % 5);
    if (op == 0 && *len) {
        buf[at] = (unsigned char)npyt_rand(rs);
    } else if (op == 1 && *len && buf[at] >= '0' && buf[at] <= '9') {
        buf[at] = (unsigned char)('0' + npyt_rand(rs) % 10);
    } else if (op == 2) {
        *len = (size_t)(npyt_rand(rs) % (*len + 1));
    } else if (op == 3) {
        for (int k = (int)(npyt_rand(rs) % 8) + 1; k > 0 && *len < cap; k--)
            buf[(*len)++] = (unsigned char)npyt_rand(rs);
    } else if (op == 4 && *len > at + 1) {
        memmove(buf + at, buf + at + 1, *len - at - 1);
        (*len)--;
    }
}

static void test_fuzzed_files_read_consistently_or_fail_cleanly(void)
{
    const char *path = tu_tmp_path("fuzz-src.npy");
    const char *fz = tu_tmp_path("fuzz.npy");
    int64_t shape[2] = {4, 3};
    float x[12];
    cin_err err = {0};
    npyt_fill(x, 12, 1.0f);
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(path, 2, shape, x, &err), 0);
    size_t len0;
    unsigned char *orig = npyt_slurp(path, &len0);
    size_t cap = len0 + 64;
    unsigned char *buf = malloc(cap);
    uint64_t rs = NPYT_FUZZ_SEED;
    int read = 0, refused = 0, bad = 0;

    for (int round = 0; round < NPYT_FUZZ_ROUNDS; round++) {
        size_t len = len0;
        memcpy(buf, orig, len0);
        for (int k = (int)(npyt_rand(&rs) % 3); k >= 0; k--)
            npyt_mutate(buf, &len, cap, len0 - sizeof x, &rs);
        CU_ASSERT_FATAL(tu_write_file(fz, buf, len) == 0);
        int ndim;
        int64_t got[NPY_MAX_DIMS];
        float *data = NULL;
        int rc = npy_read_f32(fz, &ndim, got, &data, &err);
        if (rc == 0) {
            size_t n = 1;
            for (int i = 0; i < ndim; i++)
                n *= (size_t)got[i];
            read++;
            bad += !(data && ndim >= 0 && ndim <= NPY_MAX_DIMS && n * sizeof(float) < len);
        } else {
            refused++;
            bad += !(rc < 0 && err.code == rc && err.msg[0] && data == NULL);
        }
        free(data);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(read > 0 && refused > 0);
    free(buf);
    free(orig);
}

/* In a child whose files may not pass 10 KiB (as a disk that fills), rows of 100 floats
 * with no flush: the writer fails, and its file is cut back to the 25 whole rows that fit
 * (10240 bytes less the 128 of the header) under a header that counts them. */
static void test_stream_writer_on_a_filled_disk_keeps_the_rows_that_fit(void)
{
    const char *path = tu_tmp_path("fsize.npy");
    pid_t pid = tu_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {10240, 10240};
        int64_t row_shape[1] = {100};
        float row[100];
        npy_writer *w;
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0 || npy_writer_open(path, 1, row_shape, &w, NULL))
            _exit(2);
        int failed = 0;
        for (int i = 0; i < 60 && !failed; i++) {
            for (int j = 0; j < 100; j++)
                row[j] = (float)(i * 100 + j);
            failed = npy_writer_append(w, row, NULL) != 0;
        }
        _exit(npy_writer_close(w, NULL) == CIN_E_IO ? 0 : 1);
    }
    int status = tu_reap(pid, 10);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int ndim;
    int64_t shape[8];
    float *x = NULL;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(path, &ndim, shape, &x, NULL), 0);
    CU_ASSERT(ndim == 2 && shape[0] == 25 && shape[1] == 100);
    CU_ASSERT_DOUBLE_EQUAL(x[24 * 100 + 99], 2499.0, 0.0);
    free(x);
}

int test_npy_register(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
#define NPYT_T(fn) {#fn, fn}
        NPYT_T(test_round_trip_of_every_rank_is_exact),
        NPYT_T(test_written_header_is_v1_padded_to_64_and_ends_in_newline),
        NPYT_T(test_reads_numpy_headers_of_versions_1_2_and_3),
        NPYT_T(test_reads_scalar_and_one_tuple_shapes),
        NPYT_T(test_read_rejects_each_bad_header_with_file_and_field),
        NPYT_T(test_read_rejects_bad_preambles),
        NPYT_T(test_read_missing_file_is_an_io_error),
        NPYT_T(test_write_rejects_bad_arguments),
        NPYT_T(test_stream_writer_file_is_valid_after_each_flush_and_close),
        NPYT_T(test_stream_writer_of_scalars_makes_a_vector),
        NPYT_T(test_stream_writer_rejects_bad_arguments),
        NPYT_T(test_stream_writer_on_a_filled_disk_keeps_the_rows_that_fit),
        NPYT_T(test_truncation_at_every_byte_is_refused),
        NPYT_T(test_fuzzed_files_read_consistently_or_fail_cleanly),
#undef NPYT_T
    };
    CU_pSuite suite = CU_add_suite("npy", NULL, NULL);
    if (!suite)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
