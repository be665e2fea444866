/* Tests for io/safetensors: round trips through st_write, every validation error at open and
 * read with its code and message, truncation at every byte, and a seeded fuzz loop over mutated
 * copies of a valid file that must never crash. */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

#define STT_FUZZ_ROUNDS 2000
#define STT_FUZZ_SEED 0x5eed5afe7e9503ull

/* ---- helpers ---- */

/* 1 when msg contains every non-NULL needle; prints msg otherwise, to show what was said. */
static int stt_has(const char *msg, const char *a, const char *b, const char *c)
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

/* Writes the 8-byte little-endian length of header, the header, then len data bytes. */
static void stt_make(const char *path, const char *header, const void *data, size_t len)
{
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (len)
        memcpy(buf + 8 + hlen, data, len);
    CU_ASSERT_FATAL(tu_write_file(path, buf, 8 + hlen + len) == 0);
    free(buf);
}

static unsigned char *stt_slurp(const char *path, size_t *len)
{
    unsigned char *buf = tu_read_file(path, len);
    CU_ASSERT_FATAL(buf != NULL);
    return buf;
}

/* Values whose bits must survive exactly: signed zero, infinities, NaN, denormals. */
static void stt_fill(float *x, size_t n, float base)
{
    static const float special[] = {-0.0f, 1e-45f, -3.4e38f, 1.0f / 0.0f, -1.0f / 0.0f};
    for (size_t i = 0; i < n; i++)
        x[i] = i < 5 ? special[i] : base + 0.37f * (float)i;
    if (n > 5)
        x[5] = 0.0f / 0.0f;
}

/* The round-trip checkpoint: a 5-D weight, a vector, a scalar, an empty tensor, a last one. */
typedef struct stt_model {
    float w[2 * 3 * 1 * 1 * 2], b[3], s[1], last[7];
    st_out out[5];
} stt_model;

static const char *const stt_meta_kv[] = {"format", "pt", "model", "x3d_s", NULL};

static void stt_model_init(stt_model *m)
{
    stt_fill(m->w, 12, 1.5f);
    stt_fill(m->b, 3, -2.0f);
    stt_fill(m->s, 1, 0.0f);
    m->s[0] = 42.25f;
    stt_fill(m->last, 7, 9.0f);
    st_out out[5] = {
        {"conv.weight", 5, {2, 3, 1, 1, 2}, m->w},
        {"conv.bias", 1, {3}, m->b},
        {"scale", 0, {0}, m->s},
        {"empty", 2, {0, 4}, NULL},
        {"head.last", 1, {7}, m->last},
    };
    memcpy(m->out, out, sizeof out);
}

static void stt_write_model(const char *path, stt_model *m)
{
    cin_err err = {0};
    stt_model_init(m);
    int rc = st_write(path, m->out, 5, stt_meta_kv, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static st_file *stt_open_ok(const char *path)
{
    cin_err err = {0};
    st_file *f = NULL;
    int rc = st_open(path, &f, &err);
    if (rc)
        fprintf(stderr, "\n  st_open: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return f;
}

/* Opens path expecting failure with code, a message naming the file and the needles. */
static void stt_open_fails(const char *path, int code, const char *a, const char *b)
{
    cin_err err = {0};
    st_file *f = (st_file *)&err;
    int rc = st_open(path, &f, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT(stt_has(err.msg, path, a, b));
    st_close(rc == 0 ? f : NULL);
}

/* ---- round trips ---- */

static void test_round_trip_preserves_values_shapes_and_metadata(void)
{
    const char *path = tu_tmp_path("round.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);

    CU_ASSERT_EQUAL(st_count(f), 5);
    CU_ASSERT_STRING_EQUAL(st_path(f), path);
    CU_ASSERT_STRING_EQUAL(st_meta(f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(st_meta(f, "model"), "x3d_s");
    CU_ASSERT_PTR_NULL(st_meta(f, "absent"));

    for (int i = 0; i < 5; i++) {
        const st_out *o = &m.out[i];
        st_info info;
        CU_ASSERT_EQUAL_FATAL(st_info_at(f, i, &info), 0);
        CU_ASSERT_STRING_EQUAL(info.name, o->name);
        CU_ASSERT_STRING_EQUAL(info.dtype, "F32");
        CU_ASSERT_EQUAL(info.ndim, o->ndim);
        CU_ASSERT(memcmp(info.shape, o->shape, (size_t)o->ndim * sizeof(int64_t)) == 0);

        float got[12] = {0};
        cin_err err = {0};
        CU_ASSERT_EQUAL(st_read_f32(f, o->name, o->ndim, o->shape, got, &err), 0);
        CU_ASSERT(info.nbytes == 0 || memcmp(got, o->data, info.nbytes) == 0);
    }
    st_close(f);
}

static void test_info_at_rejects_out_of_range_index(void)
{
    const char *path = tu_tmp_path("range.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);
    st_info info;
    CU_ASSERT_EQUAL(st_info_at(f, -1, &info), CIN_E_INVAL);
    CU_ASSERT_EQUAL(st_info_at(f, 5, &info), CIN_E_INVAL);
    CU_ASSERT_EQUAL(st_find(f, "scale", NULL, NULL), 0);
    st_close(f);
    st_close(NULL);
}

static void test_read_without_shape_check_when_ndim_negative(void)
{
    const char *path = tu_tmp_path("noshape.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);
    float got[7];
    cin_err err = {0};
    CU_ASSERT_EQUAL(st_read_f32(f, "head.last", -1, NULL, got, &err), 0);
    CU_ASSERT(memcmp(got, m.last, sizeof got) == 0);
    st_close(f);
}

static void test_write_pads_header_to_8_bytes_with_metadata_first(void)
{
    const char *path = tu_tmp_path("padded.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    size_t len;
    unsigned char *buf = stt_slurp(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    CU_ASSERT_EQUAL(n % 8, 0);
    CU_ASSERT(8 + n + (12 + 3 + 1 + 7) * sizeof(float) == len);
    CU_ASSERT(memcmp(buf + 8, "{\"__metadata__\":", 16) == 0);
    CU_ASSERT(buf[8 + n - 1] == ' ' || buf[8 + n - 1] == '}');
    free(buf);
}

static void test_unaligned_data_block_reads_exactly(void)
{
    const char *path = tu_tmp_path("unaligned.safetensors");
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]}} ";
    unsigned char data[13];
    float want[3] = {1.25f, -7.5f, 3e-20f}, got[3];
    data[0] = 0xAB;
    memcpy(data + 1, want, sizeof want);
    stt_make(path, hdr, data, sizeof data);
    CU_ASSERT((8 + strlen(hdr) + 1) % 2 != 0); /* the floats start at an odd offset */

    st_file *f = stt_open_ok(path);
    cin_err err = {0};
    int64_t shape[1] = {3};
    CU_ASSERT_EQUAL(st_read_f32(f, "x", 1, shape, got, &err), 0);
    CU_ASSERT(memcmp(got, want, sizeof want) == 0);
    st_close(f);
}

static void test_gaps_and_trailing_bytes_in_data_block_are_accepted(void)
{
    const char *path = tu_tmp_path("gaps.safetensors");
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                      "\"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[4,4]}}";
    unsigned char data[20] = {0};
    float one = 1.0f, got = 0.0f;
    memcpy(data + 8, &one, 4);
    stt_make(path, hdr, data, sizeof data);
    st_file *f = stt_open_ok(path);
    cin_err err = {0};
    CU_ASSERT_EQUAL(st_count(f), 3);
    CU_ASSERT_EQUAL(st_read_f32(f, "a", -1, NULL, &got, &err), 0);
    CU_ASSERT_EQUAL(got, 1.0f);
    st_close(f);
}

/* ---- atomic writer ---- */

/* Counts the entries of path's directory whose name starts with path's file name + ".tmp". */
static int stt_temp_leftovers(const char *path)
{
    char dir[256], prefix[256];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    snprintf(prefix, sizeof prefix, "%s.tmp", slash + 1);
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static void test_write_replaces_existing_file_and_leaves_no_temp(void)
{
    const char *path = tu_tmp_path("replace.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *old = stt_open_ok(path);

    float v[2] = {5.0f, 6.0f}, got[2];
    st_out one = {"new", 1, {2}, v};
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(st_write(path, &one, 1, NULL, &err), 0);
    CU_ASSERT_EQUAL(stt_temp_leftovers(path), 0);

    /* The handle opened before still sees the old file; a new one sees the new file. */
    CU_ASSERT_EQUAL(st_read_f32(old, "head.last", 1, m.out[4].shape, m.last, &err), 0);
    st_close(old);
    st_file *f = stt_open_ok(path);
    CU_ASSERT_EQUAL(st_count(f), 1);
    CU_ASSERT_PTR_NULL(st_meta(f, "format"));
    CU_ASSERT_EQUAL(st_read_f32(f, "new", 1, one.shape, got, &err), 0);
    CU_ASSERT(memcmp(got, v, sizeof v) == 0);
    st_close(f);
}

/* A rejected write leaves the existing file untouched. */
static void stt_write_fails(const char *path, const st_out *ts, int n, const char *const *meta,
                            int code, const char *a)
{
    cin_err err = {0};
    CU_ASSERT_EQUAL(st_write(path, ts, n, meta, &err), code);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT(stt_has(err.msg, path, a, NULL));
    CU_ASSERT_EQUAL(stt_temp_leftovers(path), 0);
    st_file *f = stt_open_ok(path);
    CU_ASSERT_EQUAL(st_count(f), 5);
    st_close(f);
}

static void test_write_rejects_bad_tensors_and_keeps_old_file(void)
{
    const char *path = tu_tmp_path("reject.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    float v[4] = {0};
    st_out dup[2] = {{"a", 1, {4}, v}, {"a", 1, {4}, v}};
    st_out reserved = {"__metadata__", 1, {4}, v};
    st_out deep = {"deep", 9, {1}, v};
    st_out neg = {"neg", 2, {2, -2}, v};
    st_out nodata = {"nodata", 1, {4}, NULL};
    st_out huge = {"huge", 3, {1ll << 40, 1ll << 40, 1ll << 40}, v};
    const char *const half_meta[] = {"key", NULL};
    const char *const dup_meta[] = {"k", "1", "k", "2", NULL};

    stt_write_fails(path, dup, 2, NULL, CIN_E_INVAL, "'a' given twice");
    stt_write_fails(path, &reserved, 1, NULL, CIN_E_INVAL, "reserved");
    stt_write_fails(path, &deep, 1, NULL, CIN_E_INVAL, "ndim 9, expected 0..8");
    stt_write_fails(path, &neg, 1, NULL, CIN_E_INVAL, "shape[1] is -2");
    stt_write_fails(path, &nodata, 1, NULL, CIN_E_INVAL, "'nodata': data is NULL");
    stt_write_fails(path, &huge, 1, NULL, CIN_E_INVAL, "'huge': byte size overflows");
    stt_write_fails(path, dup, 1, half_meta, CIN_E_INVAL, "metadata 'key'");
    stt_write_fails(path, dup, 1, dup_meta, CIN_E_INVAL, "metadata key 'k' given twice");
}

static void test_write_into_missing_directory_is_an_io_error(void)
{
    const char *path = tu_tmp_path("no/such/dir/x.safetensors");
    float v = 1.0f;
    st_out one = {"v", 0, {0}, &v};
    cin_err err = {0};
    CU_ASSERT_EQUAL(st_write(path, &one, 1, NULL, &err), CIN_E_IO);
    CU_ASSERT(stt_has(err.msg, path, "No such file or directory", NULL));
}

/* ---- errors at open ---- */

static void test_open_missing_file_is_an_io_error(void)
{
    stt_open_fails(tu_tmp_path("absent.safetensors"), CIN_E_IO, "cannot open",
                   "No such file or directory");
}

static void test_open_directory_is_an_io_error(void)
{
    char dir[256];
    const char *p = tu_tmp_path("x");
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(p, '/') - p), p);
    stt_open_fails(dir, CIN_E_IO, "not a regular file", NULL);
}

static void test_open_file_shorter_than_length_field(void)
{
    const char *path = tu_tmp_path("short.safetensors");
    CU_ASSERT_FATAL(tu_write_file(path, "\x10\0\0\0\0", 5) == 0);
    stt_open_fails(path, CIN_E_FORMAT, "file is 5 bytes", "8-byte header length");
}

static void test_open_header_length_past_end_of_file(void)
{
    const char *path = tu_tmp_path("past.safetensors");
    unsigned char buf[20] = {0xe8, 0x03}; /* N = 1000, 12 bytes follow */
    memcpy(buf + 8, "{}          ", 12);
    CU_ASSERT_FATAL(tu_write_file(path, buf, sizeof buf) == 0);
    stt_open_fails(path, CIN_E_FORMAT, "header length 1000 is past the end",
                   "12 bytes follow");
}

static void test_open_absurd_header_length(void)
{
    const char *path = tu_tmp_path("absurd.safetensors");
    unsigned char buf[16] = {0, 0, 0, 0, 0, 1, 0, 0}; /* N = 2^40 */
    CU_ASSERT_FATAL(tu_write_file(path, buf, sizeof buf) == 0);
    stt_open_fails(path, CIN_E_FORMAT, "header length 1099511627776 is absurd", NULL);
}

/* Headers that must each be refused, with the words the message must contain. */
static const struct stt_bad {
    const char *header;
    size_t data_len;
    int code;
    const char *a, *b;
} stt_bad_headers[] = {
    {"{\"a\": ", 0, CIN_E_FORMAT, "not valid JSON", "line 1, column"},
    {"[1, 2]", 0, CIN_E_FORMAT, "header is a JSON array, expected an object", NULL},
    {"{\"w\": 5}", 0, CIN_E_FORMAT, "tensor 'w'", "entry is a JSON integer, expected an object"},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT, "tensor 'w'",
     "missing \"dtype\""},
    {"{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT, "tensor 'w'",
     "\"dtype\" is a JSON integer, expected a string"},
    {"{\"w\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "unknown dtype 'F7'"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT, "tensor 'w'",
     "missing \"shape\""},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "\"shape\" is a JSON integer, expected an array"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "shape[0] is -1, expected a non-negative integer"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "shape[1] is a JSON real number"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "shape[0] is a JSON string"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, CIN_E_FORMAT, "tensor 'w'",
     "missing \"data_offsets\""},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "\"data_offsets\" has 1 elements, expected 2"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "data_offsets[0] is -4"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, CIN_E_FORMAT,
     "tensor 'w'", "data_offsets [8, 4]: begin is after end"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, CIN_E_FORMAT,
     "tensor 'w'", "end 16 is past the end of the data block (8 bytes)"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, CIN_E_FORMAT,
     "tensor 'w'", "hold 12 bytes, expected 16 for shape [2, 2] of F32"},
    {"{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "tensor 'w'", "hold 4 bytes, expected 6 for shape [3] of BF16"},
    {"{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}", 0,
     CIN_E_FORMAT, "tensor 'w'", "too large (byte size overflows)"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, CIN_E_FORMAT,
     "tensors 'a' [0, 8] and 'b' [4, 12] overlap", NULL},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
     "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]},"
     "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}", 16, CIN_E_FORMAT,
     "'a' [0, 16] and 'b' [2, 6] overlap", NULL},
    {"{\"__metadata__\":3}", 0, CIN_E_FORMAT, "\"__metadata__\" is a JSON integer",
     "expected an object of strings"},
    {"{\"__metadata__\":{\"k\":1}}", 0, CIN_E_FORMAT, "\"__metadata__\" key 'k'",
     "expected a string"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     CIN_E_UNSUPPORTED, "tensor 'w'", "9 dimensions, at most 8 supported"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CIN_E_FORMAT,
     "not valid JSON", "duplicate object key"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
     CIN_E_FORMAT, "not valid JSON", "too big"},
};

static void test_open_rejects_each_malformed_header(void)
{
    unsigned char zeros[32] = {0};
    size_t n = sizeof stt_bad_headers / sizeof stt_bad_headers[0];
    for (size_t i = 0; i < n; i++) {
        const struct stt_bad *c = &stt_bad_headers[i];
        char name[64];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *path = tu_tmp_path(name);
        stt_make(path, c->header, zeros, c->data_len);
        stt_open_fails(path, c->code, c->a, c->b);
    }
}

/* ---- errors at lookup and read ---- */

static void test_find_missing_tensor_names_file_and_tensor(void)
{
    const char *path = tu_tmp_path("find.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);
    cin_err err = {0};
    st_info info;
    float x[4];
    CU_ASSERT_EQUAL(st_find(f, "conv.bias", &info, &err), 0);
    CU_ASSERT_EQUAL(info.nbytes, 12);
    CU_ASSERT_EQUAL(st_find(f, "conv.bais", &info, &err), CIN_E_NOTFOUND);
    CU_ASSERT_EQUAL(err.code, CIN_E_NOTFOUND);
    CU_ASSERT(stt_has(err.msg, path, "no tensor 'conv.bais'", NULL));
    CU_ASSERT_EQUAL(st_read_f32(f, "nope", -1, NULL, x, &err), CIN_E_NOTFOUND);
    CU_ASSERT(stt_has(err.msg, path, "'nope'", NULL));
    st_close(f);
}

static void test_read_with_wrong_shape_names_found_and_expected(void)
{
    const char *path = tu_tmp_path("shape.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);
    cin_err err = {0};
    float x[16];
    int64_t want[2] = {3, 1};
    int64_t w5[5] = {2, 3, 1, 2, 1};
    CU_ASSERT_EQUAL(st_read_f32(f, "conv.bias", 2, want, x, &err), CIN_E_SHAPE);
    CU_ASSERT_EQUAL(err.code, CIN_E_SHAPE);
    CU_ASSERT(stt_has(err.msg, path, "tensor 'conv.bias': shape [3], expected [3, 1]", NULL));
    CU_ASSERT_EQUAL(st_read_f32(f, "conv.weight", 5, w5, x, &err), CIN_E_SHAPE);
    CU_ASSERT(stt_has(err.msg, "shape [2, 3, 1, 1, 2], expected [2, 3, 1, 2, 1]", NULL, NULL));
    CU_ASSERT_EQUAL(st_read_f32(f, "scale", 1, want, x, &err), CIN_E_SHAPE);
    CU_ASSERT(stt_has(err.msg, "'scale': shape [], expected [3]", NULL, NULL));
    st_close(f);
}

static void test_read_of_non_f32_dtype_names_the_dtype(void)
{
    const char *path = tu_tmp_path("bf16.safetensors");
    const char *hdr = "{\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    stt_make(path, hdr, "\x80\x3f\x00\x40", 4);
    st_file *f = stt_open_ok(path);
    cin_err err = {0};
    st_info info;
    float x[2];
    CU_ASSERT_EQUAL(st_find(f, "h", &info, &err), 0);
    CU_ASSERT_STRING_EQUAL(info.dtype, "BF16");
    CU_ASSERT_EQUAL(info.nbytes, 4);
    CU_ASSERT_EQUAL(st_read_f32(f, "h", 1, info.shape, x, &err), CIN_E_FORMAT);
    CU_ASSERT_EQUAL(err.code, CIN_E_FORMAT);
    CU_ASSERT(stt_has(err.msg, path, "tensor 'h'", "dtype BF16, expected F32"));
    st_close(f);
}

/* ---- robustness ---- */

static void test_truncation_at_every_byte_is_refused(void)
{
    const char *path = tu_tmp_path("whole.safetensors");
    const char *cut = tu_tmp_path("cut.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    size_t len;
    unsigned char *buf = stt_slurp(path, &len);
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        CU_ASSERT_FATAL(tu_write_file(cut, buf, n) == 0);
        cin_err err = {0};
        st_file *f = NULL;
        int rc = st_open(cut, &f, &err);
        refused += rc < 0 && err.msg[0] != '\0' && f == NULL;
        st_close(f);
    }
    CU_ASSERT_EQUAL(refused, (int)len);
    free(buf);
}

static uint64_t stt_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* One random edit of buf[0 .. *len): biased towards the header, where the parser lives. */
static void stt_mutate(unsigned char *buf, size_t *len, size_t cap, size_t hdr_end, uint64_t *rs)
{
    uint64_t r = stt_rand(rs);
    size_t span = (r & 3) ? (hdr_end < *len ? hdr_end : *len) : *len;
    size_t at = span ? (size_t)(stt_rand(rs) % span) : 0;
    int op = (int)((r >> 8) % 7);
    if (op == 0 && *len) {
        buf[at] = (unsigned char)stt_rand(rs);
    } else if (op == 1 && *len) {
        buf[at] ^= (unsigned char)(1u << (stt_rand(rs) % 8));
    } else if (op == 2) {
        *len = (size_t)(stt_rand(rs) % (*len + 1));
    } else if (op == 3) {
        for (int k = (int)(stt_rand(rs) % 16) + 1; k > 0 && *len < cap; k--)
            buf[(*len)++] = (unsigned char)stt_rand(rs);
    } else if (op == 4 && *len && buf[at] >= '0' && buf[at] <= '9') {
        buf[at] = (unsigned char)('0' + stt_rand(rs) % 10);
    } else if (op == 5 && *len > at + 1) {
        memmove(buf + at, buf + at + 1, *len - at - 1);
        (*len)--;
    } else if (op == 6 && *len >= 8) {
        buf[stt_rand(rs) % 2] += (unsigned char)(stt_rand(rs) % 7 + 253); /* length +-3 */
    }
}

/* Everything an opened file claims must hold up: lookups agree and F32 reads succeed. */
static int stt_consistent(const st_file *f, size_t file_len)
{
    int ok = 1;
    for (int i = 0; i < st_count(f); i++) {
        st_info a, b;
        cin_err err = {0};
        ok &= st_info_at(f, i, &a) == 0 && a.nbytes <= file_len;
        ok &= st_find(f, a.name, &b, &err) == 0 && b.name == a.name && b.nbytes == a.nbytes;
        float *x = malloc(a.nbytes + 4);
        int rc = st_read_f32(f, a.name, a.ndim, a.shape, x, &err);
        ok &= strcmp(a.dtype, "F32") == 0 ? rc == 0 : rc == CIN_E_FORMAT;
        free(x);
    }
    return ok;
}

static void test_fuzzed_files_open_consistently_or_fail_cleanly(void)
{
    const char *path = tu_tmp_path("fuzz-src.safetensors");
    const char *fz = tu_tmp_path("fuzz.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    size_t len0;
    unsigned char *orig = stt_slurp(path, &len0);
    size_t cap = len0 + 256, hdr_end = len0 - (12 + 3 + 1 + 7) * sizeof(float);
    unsigned char *buf = malloc(cap);
    uint64_t rs = STT_FUZZ_SEED;
    int opened = 0, refused = 0, bad = 0;

    for (int round = 0; round < STT_FUZZ_ROUNDS; round++) {
        size_t len = len0;
        memcpy(buf, orig, len0);
        for (int k = (int)(stt_rand(&rs) % 3); k >= 0; k--)
            stt_mutate(buf, &len, cap, hdr_end, &rs);
        CU_ASSERT_FATAL(tu_write_file(fz, buf, len) == 0);
        cin_err err = {0};
        st_file *f = NULL;
        int rc = st_open(fz, &f, &err);
        if (rc == 0) {
            opened++;
            bad += !stt_consistent(f, len);
        } else {
            refused++;
            bad += !(rc < 0 && err.code == rc && err.msg[0] && f == NULL);
        }
        st_close(f);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(opened > 0 && refused > 0);
    free(buf);
    free(orig);
}

/* ---- sharing ---- */

typedef struct stt_reader {
    const st_file *f;
    const stt_model *m;
    int ok;
} stt_reader;

static void *stt_read_many(void *arg)
{
    stt_reader *r = arg;
    float x[12];
    r->ok = 1;
    for (int k = 0; k < 200; k++) {
        cin_err err = {0};
        const st_out *o = &r->m->out[k % 5];
        r->ok &= st_read_f32(r->f, o->name, o->ndim, o->shape, x, &err) == 0;
        r->ok &= o->data == NULL || memcmp(x, o->data, sizeof(float)) == 0;
    }
    return NULL;
}

static void test_one_handle_serves_concurrent_readers(void)
{
    const char *path = tu_tmp_path("shared.safetensors");
    stt_model m;
    stt_write_model(path, &m);
    st_file *f = stt_open_ok(path);
    pthread_t th[4];
    stt_reader r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (stt_reader){f, &m, 0};
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, stt_read_many, &r[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT(r[i].ok);
    }
    st_close(f);
}

int test_safetensors_register(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
#define STT_T(fn) {#fn, fn}
        STT_T(test_round_trip_preserves_values_shapes_and_metadata),
        STT_T(test_info_at_rejects_out_of_range_index),
        STT_T(test_read_without_shape_check_when_ndim_negative),
        STT_T(test_write_pads_header_to_8_bytes_with_metadata_first),
        STT_T(test_unaligned_data_block_reads_exactly),
        STT_T(test_gaps_and_trailing_bytes_in_data_block_are_accepted),
        STT_T(test_write_replaces_existing_file_and_leaves_no_temp),
        STT_T(test_write_rejects_bad_tensors_and_keeps_old_file),
        STT_T(test_write_into_missing_directory_is_an_io_error),
        STT_T(test_open_missing_file_is_an_io_error),
        STT_T(test_open_directory_is_an_io_error),
        STT_T(test_open_file_shorter_than_length_field),
        STT_T(test_open_header_length_past_end_of_file),
        STT_T(test_open_absurd_header_length),
        STT_T(test_open_rejects_each_malformed_header),
        STT_T(test_find_missing_tensor_names_file_and_tensor),
        STT_T(test_read_with_wrong_shape_names_found_and_expected),
        STT_T(test_read_of_non_f32_dtype_names_the_dtype),
        STT_T(test_truncation_at_every_byte_is_refused),
        STT_T(test_fuzzed_files_open_consistently_or_fail_cleanly),
        STT_T(test_one_handle_serves_concurrent_readers),
#undef STT_T
    };
    CU_pSuite suite = CU_add_suite("safetensors", NULL, NULL);
    if (!suite)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
