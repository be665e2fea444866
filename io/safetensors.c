/* safetensors reader and writer (see safetensors.h). The reader maps the file and validates the
 * whole header once at open, so lookups and reads afterwards only copy bytes and a loaded model
 * can share one handle between all its streams. The writer builds the header with jansson and
 * replaces the target file atomically. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/safetensors.c copies little-endian tensor data as is and needs a little-endian host"
#endif

/* The reference implementation refuses larger headers too. */
#define ST_MAX_HEADER 100000000ull
#define ST_META_KEY "__metadata__"

typedef struct st_tensor {
    char *name;
    const char *dtype;          /* points into st_dtypes */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    size_t begin, end;          /* byte range in the data block, end - begin == nbytes */
} st_tensor;

struct st_file {
    char *path;
    unsigned char *map;
    size_t map_len;
    const unsigned char *data;  /* map + 8 + header length; may be unaligned */
    size_t data_len;
    int n;
    st_tensor *tensors;         /* header order */
    st_tensor **by_name;        /* sorted by name for st_find */
    int nmeta;
    char **meta;                /* 2 * nmeta strings: key, value, key, value, ... */
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1},
};

#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

/* ---- helpers shared by reader and writer ---- */

/* "[2, 3]"; ndim <= ST_MAX_DIMS always fits in 256 bytes. */
static const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

/* numel * esize, or 0 with *overflow set when it does not fit in size_t. A zero dimension
 * makes the product 0 whatever the other dimensions are. */
static size_t st_byte_size(int ndim, const int64_t *shape, size_t esize, int *overflow)
{
    size_t total = esize;
    *overflow = 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return 0;
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > SIZE_MAX / total) {
            *overflow = 1;
            return 0;
        }
        total *= (size_t)shape[i];
    }
    return total;
}

static const char *st_json_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

/* ---- reader ---- */

static int st_map_fd(st_file *f, int fd, cin_err *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot stat: %s", f->path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cin_err_set(err, CIN_E_IO, "%s: not a regular file", f->path);
    if (sb.st_size < 8)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: file is %lld bytes, shorter than the 8-byte header length",
                           f->path, (long long)sb.st_size);
    if ((unsigned long long)sb.st_size != (size_t)sb.st_size)
        return cin_err_set(err, CIN_E_IO, "%s: file too large to map", f->path);

    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return cin_err_set(err, CIN_E_IO, "%s: cannot map: %s", f->path, strerror(errno));
    f->map = p;
    f->map_len = (size_t)sb.st_size;
    return 0;
}

static int st_map(st_file *f, cin_err *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", f->path, strerror(errno));
    int rc = st_map_fd(f, fd, err);
    close(fd);
    return rc;
}

static int st_parse_dtype(const st_file *f, st_tensor *t, const json_t *v, cin_err *err)
{
    if (!v)
        return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s': missing \"dtype\"", f->path,
                           t->name);
    if (!json_is_string(v))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': \"dtype\" is a JSON %s, expected a string",
                           f->path, t->name, st_json_type(v));
    for (size_t i = 0; i < ST_NDTYPES; i++) {
        if (strcmp(json_string_value(v), st_dtypes[i].name) == 0) {
            t->dtype = st_dtypes[i].name;
            return 0;
        }
    }
    return cin_err_set(err, CIN_E_FORMAT,
                       "%s: tensor '%s': unknown dtype '%s', expected one of "
                       "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL",
                       f->path, t->name, json_string_value(v));
}

/* A non-negative JSON integer, or an error naming field and index. */
static int st_get_count(const st_file *f, const st_tensor *t, const char *field, size_t i,
                        const json_t *v, int64_t *out, cin_err *err)
{
    if (!json_is_integer(v))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': %s[%zu] is a JSON %s, expected a non-negative "
                           "integer", f->path, t->name, field, i, st_json_type(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': %s[%zu] is %lld, expected a non-negative integer",
                           f->path, t->name, field, i, (long long)x);
    *out = (int64_t)x;
    return 0;
}

/* A JSON array for field, or an error. */
static int st_get_array(const st_file *f, const st_tensor *t, const char *field,
                        const json_t *v, cin_err *err)
{
    if (!v)
        return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s': missing \"%s\"", f->path,
                           t->name, field);
    if (!json_is_array(v))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': \"%s\" is a JSON %s, expected an array", f->path,
                           t->name, field, st_json_type(v));
    return 0;
}

static int st_parse_shape(const st_file *f, st_tensor *t, const json_t *v, cin_err *err)
{
    int rc = st_get_array(f, t, "shape", v, err);
    if (rc)
        return rc;
    size_t n = json_array_size(v);
    if (n > ST_MAX_DIMS)
        return cin_err_set(err, CIN_E_UNSUPPORTED,
                           "%s: tensor '%s': %zu dimensions, at most %d supported", f->path,
                           t->name, n, ST_MAX_DIMS);
    for (size_t i = 0; i < n; i++) {
        rc = st_get_count(f, t, "shape", i, json_array_get(v, i), &t->shape[i], err);
        if (rc)
            return rc;
    }
    t->ndim = (int)n;
    return 0;
}

static int st_parse_offsets(const st_file *f, st_tensor *t, const json_t *v, cin_err *err)
{
    int64_t be[2];
    int rc = st_get_array(f, t, "data_offsets", v, err);
    if (rc)
        return rc;
    if (json_array_size(v) != 2)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': \"data_offsets\" has %zu elements, expected 2 "
                           "[begin, end]", f->path, t->name, json_array_size(v));
    for (size_t i = 0; i < 2; i++) {
        rc = st_get_count(f, t, "data_offsets", i, json_array_get(v, i), &be[i], err);
        if (rc)
            return rc;
    }
    if (be[0] > be[1])
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': data_offsets [%lld, %lld]: begin is after end",
                           f->path, t->name, (long long)be[0], (long long)be[1]);
    if ((uint64_t)be[1] > f->data_len)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': data_offsets end %lld is past the end of the "
                           "data block (%zu bytes)", f->path, t->name, (long long)be[1],
                           f->data_len);
    t->begin = (size_t)be[0];
    t->end = (size_t)be[1];
    return 0;
}

static size_t st_dtype_size(const char *dtype)
{
    for (size_t i = 0; i < ST_NDTYPES; i++)
        if (strcmp(dtype, st_dtypes[i].name) == 0)
            return st_dtypes[i].size;
    return 0;
}

/* The byte range must hold exactly numel elements of the dtype. */
static int st_check_size(const st_file *f, st_tensor *t, cin_err *err)
{
    char s[256];
    int overflow;
    t->nbytes = st_byte_size(t->ndim, t->shape, st_dtype_size(t->dtype), &overflow);
    if (overflow)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': shape %s of %s is too large (byte size overflows)",
                           f->path, t->name, st_shape_str(s, sizeof s, t->ndim, t->shape),
                           t->dtype);
    if (t->end - t->begin != t->nbytes)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': data_offsets [%zu, %zu] hold %zu bytes, "
                           "expected %zu for shape %s of %s", f->path, t->name, t->begin,
                           t->end, t->end - t->begin, t->nbytes,
                           st_shape_str(s, sizeof s, t->ndim, t->shape), t->dtype);
    return 0;
}

static int st_parse_tensor(st_file *f, const char *name, const json_t *v, cin_err *err)
{
    st_tensor *t = &f->tensors[f->n];
    if (!json_is_object(v))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: tensor '%s': entry is a JSON %s, expected an object", f->path,
                           name, st_json_type(v));
    t->name = strdup(name);
    if (!t->name)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", f->path);
    f->n++;

    int rc = st_parse_dtype(f, t, json_object_get(v, "dtype"), err);
    if (!rc)
        rc = st_parse_shape(f, t, json_object_get(v, "shape"), err);
    if (!rc)
        rc = st_parse_offsets(f, t, json_object_get(v, "data_offsets"), err);
    if (!rc)
        rc = st_check_size(f, t, err);
    return rc;
}

/* __metadata__ is an object of string values, as in the reference implementation. */
static int st_parse_meta(st_file *f, json_t *v, cin_err *err)
{
    if (!json_is_object(v))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: \"" ST_META_KEY "\" is a JSON %s, expected an object of strings",
                           f->path, st_json_type(v));
    size_t n = json_object_size(v);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", f->path);
    f->nmeta = (int)n;

    const char *key;
    json_t *val;
    int i = 0;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val))
            return cin_err_set(err, CIN_E_FORMAT,
                               "%s: \"" ST_META_KEY "\" key '%s' is a JSON %s, expected a string",
                               f->path, key, st_json_type(val));
        f->meta[i] = strdup(key);
        f->meta[i + 1] = strdup(json_string_value(val));
        if (!f->meta[i] || !f->meta[i + 1])
            return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", f->path);
        i += 2;
    }
    return 0;
}

static int st_parse_root(st_file *f, json_t *root, cin_err *err)
{
    if (!json_is_object(root))
        return cin_err_set(err, CIN_E_FORMAT, "%s: header is a JSON %s, expected an object",
                           f->path, st_json_type(root));
    size_t n = json_object_size(root) - (json_object_get(root, ST_META_KEY) != NULL);
    if (n > INT_MAX)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: %zu tensors, too many", f->path, n);
    f->tensors = calloc(n + 1, sizeof *f->tensors);
    f->by_name = calloc(n + 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", f->path);

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        int rc = strcmp(key, ST_META_KEY) == 0 ? st_parse_meta(f, val, err)
                                               : st_parse_tensor(f, key, val, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int st_parse_header(st_file *f, cin_err *err)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | f->map[i];
    if (n > ST_MAX_HEADER)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: header length %llu is absurd (at most %llu bytes accepted)",
                           f->path, (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->map_len - 8)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: header length %llu is past the end of the file "
                           "(%zu bytes follow the length field)",
                           f->path, (unsigned long long)n, f->map_len - 8);
    f->data = f->map + 8 + n;
    f->data_len = f->map_len - 8 - (size_t)n;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: header is not valid JSON: %s (line %d, column %d)", f->path,
                           jerr.text, jerr.line, jerr.column);
    int rc = st_parse_root(f, root, err);
    json_decref(root);
    return rc;
}

static int st_cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int st_cmp_name(const void *a, const void *b)
{
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorts by_name by offset, checks that no two non-empty ranges overlap, then sorts it by name
 * for st_find. */
static int st_index(st_file *f, cin_err *err)
{
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, st_cmp_begin);

    const st_tensor *far = NULL; /* the non-empty tensor reaching furthest so far */
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = f->by_name[i];
        if (t->begin == t->end)
            continue;
        if (far && t->begin < far->end)
            return cin_err_set(err, CIN_E_FORMAT,
                               "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
                               f->path, far->name, far->begin, far->end, t->name, t->begin,
                               t->end);
        if (!far || t->end > far->end)
            far = t;
    }
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, st_cmp_name);
    return 0;
}

int st_open(const char *path, st_file **out, cin_err *err)
{
    if (!out)
        return cin_err_set(err, CIN_E_INVAL, "st_open: out is NULL");
    *out = NULL;
    if (!path)
        return cin_err_set(err, CIN_E_INVAL, "st_open: path is NULL");
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    }

    int rc = st_map(f, err);
    if (!rc)
        rc = st_parse_header(f, err);
    if (!rc)
        rc = st_index(f, err);
    if (rc) {
        st_close(f);
        return rc;
    }
    cin_err_clear(err);
    *out = f;
    return 0;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    for (int i = 0; i < 2 * f->nmeta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

int st_count(const st_file *f)
{
    return f ? f->n : 0;
}

static void st_fill_info(const st_tensor *t, st_info *out)
{
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof t->shape);
    out->nbytes = t->nbytes;
}

int st_info_at(const st_file *f, int i, st_info *out)
{
    if (!f || !out || i < 0 || i >= f->n)
        return CIN_E_INVAL;
    st_fill_info(&f->tensors[i], out);
    return 0;
}

static int st_cmp_key(const void *key, const void *elem)
{
    return strcmp(key, (*(st_tensor *const *)elem)->name);
}

static const st_tensor *st_lookup(const st_file *f, const char *name)
{
    st_tensor *const *hit = bsearch(name, f->by_name, (size_t)f->n, sizeof *f->by_name,
                                    st_cmp_key);
    return hit ? *hit : NULL;
}

int st_find(const st_file *f, const char *name, st_info *out, cin_err *err)
{
    if (!f || !name)
        return cin_err_set(err, CIN_E_INVAL, "st_find: file or name is NULL");
    const st_tensor *t = st_lookup(f, name);
    if (!t)
        return cin_err_set(err, CIN_E_NOTFOUND, "%s: no tensor '%s'", f->path, name);
    if (out)
        st_fill_info(t, out);
    return 0;
}

static int st_same_shape(const st_tensor *t, int ndim, const int64_t *shape)
{
    if (ndim != t->ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] != t->shape[i])
            return 0;
    return 1;
}

int st_read_f32(const st_file *f, const char *name, int ndim, const int64_t *shape, float *dst,
                cin_err *err)
{
    char want[256], have[256];
    if (!f || !name || !dst || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return cin_err_set(err, CIN_E_INVAL, "st_read_f32: invalid argument (tensor '%s')",
                           name ? name : "(null)");
    const st_tensor *t = st_lookup(f, name);
    if (!t)
        return cin_err_set(err, CIN_E_NOTFOUND, "%s: no tensor '%s'", f->path, name);
    if (strcmp(t->dtype, "F32") != 0)
        return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s': dtype %s, expected F32",
                           f->path, name, t->dtype);
    if (ndim >= 0 && !st_same_shape(t, ndim, shape))
        return cin_err_set(err, CIN_E_SHAPE, "%s: tensor '%s': shape %s, expected %s", f->path,
                           name, st_shape_str(have, sizeof have, t->ndim, t->shape),
                           st_shape_str(want, sizeof want, ndim, shape));
    if (t->nbytes)
        memcpy(dst, f->data + t->begin, t->nbytes);
    return 0;
}

const char *st_meta(const st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (f->meta[2 * i] && strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

const char *st_path(const st_file *f)
{
    return f ? f->path : NULL;
}

/* ---- writer ---- */

static int st_utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

static int st_add_meta(const char *path, json_t *root, const char *const *meta, cin_err *err)
{
    if (!meta || !meta[0])
        return 0;
    json_t *obj = json_object();
    if (!obj || json_object_set_new(root, ST_META_KEY, obj) != 0)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    for (; meta[0]; meta += 2) {
        if (!meta[1] || !st_utf8_ok(meta[0]) || !st_utf8_ok(meta[1]))
            return cin_err_set(err, CIN_E_INVAL,
                               "%s: metadata '%s': value missing or not valid UTF-8", path,
                               meta[0]);
        if (json_object_get(obj, meta[0]))
            return cin_err_set(err, CIN_E_INVAL, "%s: metadata key '%s' given twice", path,
                               meta[0]);
        if (json_object_set_new(obj, meta[0], json_string(meta[1])) != 0)
            return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    }
    return 0;
}

/* Checks one st_out and returns its byte size in *nbytes. */
static int st_check_out(const char *path, const json_t *root, const st_out *t, size_t *nbytes,
                        cin_err *err)
{
    if (!t->name || !st_utf8_ok(t->name) || strcmp(t->name, ST_META_KEY) == 0)
        return cin_err_set(err, CIN_E_INVAL,
                           "%s: tensor name '%s' is missing, not valid UTF-8 or reserved", path,
                           t->name ? t->name : "(null)");
    if (json_object_get(root, t->name))
        return cin_err_set(err, CIN_E_INVAL, "%s: tensor '%s' given twice", path, t->name);
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return cin_err_set(err, CIN_E_INVAL, "%s: tensor '%s': ndim %d, expected 0..%d",
                           path, t->name, t->ndim, ST_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return cin_err_set(err, CIN_E_INVAL, "%s: tensor '%s': shape[%d] is %lld", path,
                               t->name, i, (long long)t->shape[i]);
    int overflow;
    *nbytes = st_byte_size(t->ndim, t->shape, sizeof(float), &overflow);
    if (overflow)
        return cin_err_set(err, CIN_E_INVAL, "%s: tensor '%s': byte size overflows", path,
                           t->name);
    if (*nbytes && !t->data)
        return cin_err_set(err, CIN_E_INVAL, "%s: tensor '%s': data is NULL", path, t->name);
    return 0;
}

static json_t *st_shape_json(int ndim, const int64_t *shape)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < ndim; i++) {
        if (json_array_append_new(arr, json_integer(shape[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* Adds {"dtype": "F32", "shape": [...], "data_offsets": [*offset, *offset + nbytes]}. */
static int st_add_tensor(const char *path, json_t *root, const st_out *t, size_t *offset,
                         cin_err *err)
{
    size_t nbytes = 0;
    int rc = st_check_out(path, root, t, &nbytes, err);
    if (rc)
        return rc;
    if (nbytes > (size_t)INT64_MAX - *offset)
        return cin_err_set(err, CIN_E_INVAL, "%s: total data size overflows", path);

    json_t *shape = st_shape_json(t->ndim, t->shape);
    json_t *entry = NULL;
    if (shape)
        entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                          "data_offsets", (json_int_t)*offset, (json_int_t)(*offset + nbytes));
    if (!entry || json_object_set_new(root, t->name, entry) != 0)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    *offset += nbytes;
    return 0;
}

/* The compact JSON header, with __metadata__ first as the reference writer puts it. */
static int st_build_header(const char *path, const st_out *ts, int n, const char *const *meta,
                           char **out, cin_err *err)
{
    json_t *root = json_object();
    if (!root)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    size_t offset = 0;
    int rc = st_add_meta(path, root, meta, err);
    for (int i = 0; !rc && i < n; i++)
        rc = st_add_tensor(path, root, &ts[i], &offset, err);
    if (!rc && !(*out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        rc = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    json_decref(root);
    return rc;
}

/* 0 or an errno value. */
static int st_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Length, header padded with spaces to a multiple of 8, then each tensor's data in order. */
static int st_write_body(int fd, const char *hdr, const st_out *ts, int n)
{
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int rc = st_write_all(fd, len8, 8);
    if (!rc)
        rc = st_write_all(fd, hdr, hlen);
    if (!rc)
        rc = st_write_all(fd, "        ", padded - hlen);
    for (int i = 0; !rc && i < n; i++) {
        int overflow;
        size_t nbytes = st_byte_size(ts[i].ndim, ts[i].shape, sizeof(float), &overflow);
        if (nbytes)
            rc = st_write_all(fd, ts[i].data, nbytes);
    }
    return rc;
}

/* Creates "<path>.tmp<pid>.<n>" exclusively, with the usual 0666 & ~umask permissions. */
static int st_create_temp(const char *path, char *tmp, size_t cap)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (long attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, cap, "%s.tmp%ld.%ld", path, (long)getpid(), now.tv_nsec + attempt);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Makes the rename durable; a failure here leaves a correct file, so it is not reported. */
static void st_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static int st_replace(const char *path, const char *hdr, const st_out *ts, int n, cin_err *err)
{
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    int fd = st_create_temp(path, tmp, cap);
    if (fd < 0) {
        int rc = cin_err_set(err, CIN_E_IO, "%s: cannot create temporary file: %s", path,
                             strerror(errno));
        free(tmp);
        return rc;
    }

    const char *step = "write";
    int e = st_write_body(fd, hdr, ts, n);
    if (!e && fsync(fd) != 0)
        e = errno, step = "fsync";
    if (close(fd) != 0 && !e)
        e = errno, step = "close";
    if (!e && rename(tmp, path) != 0)
        e = errno, step = "rename";
    if (e)
        unlink(tmp);
    else
        st_sync_dir(path);
    free(tmp);
    if (e)
        return cin_err_set(err, CIN_E_IO, "%s: cannot %s: %s", path, step, strerror(e));
    return 0;
}

int st_write(const char *path, const st_out *tensors, int n, const char *const *meta,
             cin_err *err)
{
    if (!path || n < 0 || (n > 0 && !tensors))
        return cin_err_set(err, CIN_E_INVAL, "st_write: invalid argument (%s)",
                           path ? path : "path is NULL");
    char *hdr = NULL;
    int rc = st_build_header(path, tensors, n, meta, &hdr, err);
    if (!rc)
        rc = st_replace(path, hdr, tensors, n, err);
    free(hdr);
    if (!rc)
        cin_err_clear(err);
    return rc;
}
