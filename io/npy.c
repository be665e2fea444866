/* NumPy .npy float32 reader and writers (see npy.h). The header is a Python dict literal, read
 * here by a small strict parser rather than evaluated. Files are written as version 1.0 with
 * the header padded to a multiple of 64 bytes like numpy's own writer; the streaming writer pads
 * for the widest row count, so rewriting the count never moves the data. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/npy.c reads and writes '<f4' data as is and needs a little-endian host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy refuses headers over 10000 bytes unless told otherwise; allow more, but not gigabytes. */
#define NPY_MAX_HEADER (1u << 20)
/* Room for the preamble and the dict of any shape cin writes (8 dims of 19 digits). */
#define NPY_HDR_CAP 512

enum { NPY_KEY_DESCR = 1, NPY_KEY_FORTRAN = 2, NPY_KEY_SHAPE = 4 };

typedef struct npy_header {
    char descr[64];
    int fortran;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
} npy_header;

/* Cursor over the header dict text, which is not NUL-terminated. */
typedef struct npy_parser {
    const char *s;
    size_t len, pos;
    const char *path;
    cin_err *err;
} npy_parser;

struct npy_writer {
    FILE *fp;
    char *path;
    int ndim;                     /* row_ndim + 1 */
    int64_t shape[NPY_MAX_DIMS];  /* shape[0] counts the rows appended so far */
    size_t row_floats;
    size_t header_total;          /* fixed at open, fits a row count up to INT64_MAX */
    int failed;                   /* a write failed: the file can no longer be trusted */
};

/* ---- shapes ---- */

/* Python tuple syntax: "()", "(3,)", "(2, 3)". */
static const char *npy_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, ndim == 1 ? ",)" : ")");
    return buf;
}

/* Number of floats, or sets *overflow when the byte size would not fit in size_t. */
static size_t npy_numel(int ndim, const int64_t *shape, int *overflow)
{
    size_t n = 1;
    *overflow = 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return 0;
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > SIZE_MAX / sizeof(float) / n) {
            *overflow = 1;
            return 0;
        }
        n *= (size_t)shape[i];
    }
    return n;
}

/* ---- header parser ---- */

__attribute__((format(printf, 2, 3)))
static int npy_fail(npy_parser *p, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cin_err_set(p->err, CIN_E_FORMAT, "%s: header: %s at byte %zu of the dict", p->path,
                       what, p->pos);
}

/* The next non-blank character, or -1 at the end. */
static int npy_peek(npy_parser *p)
{
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
        p->pos++;
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int npy_expect(npy_parser *p, char c)
{
    if (npy_peek(p) != c)
        return npy_fail(p, "expected '%c'", c);
    p->pos++;
    return 0;
}

static int npy_match(npy_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (npy_peek(p) < 0 || p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return 0;
    p->pos += n;
    return 1;
}

/* A quoted string without escapes: all that keys and dtype names need. */
static int npy_parse_str(npy_parser *p, char *buf, size_t cap)
{
    int q = npy_peek(p);
    if (q != '\'' && q != '"')
        return npy_fail(p, "expected a quoted string");
    size_t start = ++p->pos;
    for (; p->pos < p->len && p->s[p->pos] != q; p->pos++)
        if (p->s[p->pos] == '\\' || (unsigned char)p->s[p->pos] < 0x20)
            return npy_fail(p, "escape or control character in a string");
    if (p->pos >= p->len)
        return npy_fail(p, "unterminated string");
    size_t n = p->pos - start;
    if (n >= cap)
        return npy_fail(p, "string longer than %zu bytes", cap - 1);
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    p->pos++;
    return 0;
}

static int npy_parse_bool(npy_parser *p, int *out)
{
    if (npy_match(p, "True"))
        *out = 1;
    else if (npy_match(p, "False"))
        *out = 0;
    else
        return npy_fail(p, "expected True or False");
    return 0;
}

/* A non-negative integer; Python 2 wrote longs with an 'L' suffix, which is accepted. */
static int npy_parse_dim(npy_parser *p, int64_t *out)
{
    int c = npy_peek(p);
    if (c == '-')
        return npy_fail(p, "negative dimension in shape");
    if (c < '0' || c > '9')
        return npy_fail(p, "expected a non-negative integer in shape");
    int64_t v = 0;
    for (; p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; p->pos++) {
        int d = p->s[p->pos] - '0';
        if (v > (INT64_MAX - d) / 10)
            return npy_fail(p, "dimension does not fit in 64 bits");
        v = v * 10 + d;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'L' || p->s[p->pos] == 'l'))
        p->pos++;
    *out = v;
    return 0;
}

/* A tuple of dimensions; "(3)" is an int in Python, not a tuple, and is refused. */
static int npy_parse_shape(npy_parser *p, npy_header *h)
{
    int n = 0, trailing = 0, rc = npy_expect(p, '(');
    while (!rc && npy_peek(p) != ')') {
        if (n == NPY_MAX_DIMS)
            return cin_err_set(p->err, CIN_E_UNSUPPORTED,
                               "%s: shape has more than %d dimensions", p->path, NPY_MAX_DIMS);
        rc = npy_parse_dim(p, &h->shape[n++]);
        trailing = !rc && npy_peek(p) == ',';
        if (trailing)
            p->pos++;
        else if (!rc && npy_peek(p) != ')')
            rc = npy_fail(p, "expected ',' or ')' in shape");
    }
    if (rc)
        return rc;
    p->pos++;
    if (n == 1 && !trailing)
        return npy_fail(p, "shape (%lld) is not a tuple (a 1-tuple needs a trailing comma)",
                        (long long)h->shape[0]);
    h->ndim = n;
    return 0;
}

static int npy_parse_entry(npy_parser *p, npy_header *h, unsigned *seen)
{
    char key[64];
    unsigned bit;
    int rc = npy_parse_str(p, key, sizeof key);
    if (!rc)
        rc = npy_expect(p, ':');
    if (rc)
        return rc;
    if (strcmp(key, "descr") == 0) {
        bit = NPY_KEY_DESCR;
        rc = npy_parse_str(p, h->descr, sizeof h->descr);
    } else if (strcmp(key, "fortran_order") == 0) {
        bit = NPY_KEY_FORTRAN;
        rc = npy_parse_bool(p, &h->fortran);
    } else if (strcmp(key, "shape") == 0) {
        bit = NPY_KEY_SHAPE;
        rc = npy_parse_shape(p, h);
    } else {
        return npy_fail(p, "unknown key '%s'", key);
    }
    if (!rc && (*seen & bit))
        return npy_fail(p, "key '%s' given twice", key);
    *seen |= bit;
    return rc;
}

/* { entry (, entry)* [,] } followed by blanks only; all three keys, in any order. */
static int npy_parse_dict(npy_parser *p, npy_header *h)
{
    unsigned seen = 0;
    int rc = npy_expect(p, '{');
    while (!rc && npy_peek(p) != '}') {
        rc = npy_parse_entry(p, h, &seen);
        if (!rc && npy_peek(p) == ',')
            p->pos++;
        else if (!rc && npy_peek(p) != '}')
            rc = npy_fail(p, "expected ',' or '}'");
    }
    if (rc)
        return rc;
    p->pos++;
    if (npy_peek(p) != -1)
        return npy_fail(p, "unexpected text after the closing '}'");
    const char *missing = !(seen & NPY_KEY_DESCR)     ? "descr"
                          : !(seen & NPY_KEY_FORTRAN) ? "fortran_order"
                          : !(seen & NPY_KEY_SHAPE)   ? "shape"
                                                      : NULL;
    if (missing)
        return cin_err_set(p->err, CIN_E_FORMAT, "%s: header: missing key '%s'", p->path,
                           missing);
    return 0;
}

static int npy_check_header(const char *path, const npy_header *h, cin_err *err)
{
    if (strcmp(h->descr, "<f4") != 0)
        return cin_err_set(err, CIN_E_FORMAT, "%s: dtype '%s', expected '<f4' (float32)", path,
                           h->descr);
    if (h->fortran)
        return cin_err_set(err, CIN_E_UNSUPPORTED,
                           "%s: fortran_order is True, only C order (False) is supported", path);
    return 0;
}

/* ---- reader ---- */

/* Reads magic, version and header length; leaves fp at the start of the dict. */
static int npy_read_preamble(FILE *fp, const char *path, long long fsize, size_t *hstart,
                             size_t *hlen, cin_err *err)
{
    unsigned char pre[12];
    if (fsize < 10)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: file is %lld bytes, too short for the 10-byte .npy preamble",
                           path, fsize);
    if (fread(pre, 1, 10, fp) != 10)
        return cin_err_set(err, CIN_E_IO, "%s: cannot read: %s", path, strerror(errno));
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return cin_err_set(err, CIN_E_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    if (pre[6] < 1 || pre[6] > 3 || pre[7] != 0)
        return cin_err_set(err, CIN_E_UNSUPPORTED,
                           "%s: .npy version %d.%d, expected 1.0, 2.0 or 3.0", path, pre[6],
                           pre[7]);

    *hstart = pre[6] == 1 ? 10 : 12;
    if (fsize < (long long)*hstart || (*hstart == 12 && fread(pre + 10, 1, 2, fp) != 2))
        return cin_err_set(err, CIN_E_FORMAT, "%s: file is %lld bytes, preamble truncated",
                           path, fsize);
    *hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (*hstart == 12)
        *hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    if (*hlen > NPY_MAX_HEADER)
        return cin_err_set(err, CIN_E_FORMAT, "%s: header length %zu is absurd (limit %u)",
                           path, *hlen, NPY_MAX_HEADER);
    if ((long long)(*hstart + *hlen) > fsize)
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: header length %zu is past the end of the file (%lld bytes)",
                           path, *hlen, fsize);
    return 0;
}

static int npy_read_header(FILE *fp, const char *path, size_t hlen, npy_header *h,
                           cin_err *err)
{
    char *text = malloc(hlen + 1);
    if (!text)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    int rc = 0;
    if (fread(text, 1, hlen, fp) != hlen)
        rc = cin_err_set(err, CIN_E_IO, "%s: cannot read header: %s", path, strerror(errno));
    npy_parser p = {.s = text, .len = hlen, .path = path, .err = err};
    if (!rc)
        rc = npy_parse_dict(&p, h);
    free(text);
    return rc ? rc : npy_check_header(path, h, err);
}

/* Reads exactly the bytes the shape needs, which must be all that is left of the file. */
static int npy_read_data(FILE *fp, const char *path, const npy_header *h, long long left,
                         float **data, cin_err *err)
{
    char s[256];
    int overflow;
    size_t n = npy_numel(h->ndim, h->shape, &overflow);
    if (overflow)
        return cin_err_set(err, CIN_E_FORMAT, "%s: shape %s is too large (size overflows)",
                           path, npy_shape_str(s, sizeof s, h->ndim, h->shape));
    if ((unsigned long long)left != n * sizeof(float))
        return cin_err_set(err, CIN_E_FORMAT,
                           "%s: data is %lld bytes, expected %zu for shape %s of float32 (%s)",
                           path, left, n * sizeof(float),
                           npy_shape_str(s, sizeof s, h->ndim, h->shape),
                           (size_t)left < n * sizeof(float) ? "truncated" : "trailing bytes");

    *data = malloc(n ? n * sizeof(float) : sizeof(float));
    if (!*data)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory for %zu floats", path, n);
    if (fread(*data, sizeof(float), n, fp) != n)
        return cin_err_set(err, CIN_E_IO, "%s: cannot read data: %s", path,
                           ferror(fp) ? strerror(errno) : "file shrank while reading");
    return 0;
}

static int npy_read_fp(FILE *fp, const char *path, npy_header *h, float **data, cin_err *err)
{
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cin_err_set(err, CIN_E_IO, "%s: not a regular file", path);

    size_t hstart = 0, hlen = 0;
    long long fsize = (long long)sb.st_size;
    int rc = npy_read_preamble(fp, path, fsize, &hstart, &hlen, err);
    if (!rc)
        rc = npy_read_header(fp, path, hlen, h, err);
    if (!rc)
        rc = npy_read_data(fp, path, h, fsize - (long long)(hstart + hlen), data, err);
    return rc;
}

int npy_read_f32(const char *path, int *ndim, int64_t shape[NPY_MAX_DIMS], float **data,
                 cin_err *err)
{
    if (data)
        *data = NULL;
    if (!path || !ndim || !shape || !data)
        return cin_err_set(err, CIN_E_INVAL, "npy_read_f32: NULL argument");
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));

    npy_header h = {.ndim = 0};
    int rc = npy_read_fp(fp, path, &h, data, err);
    fclose(fp);
    if (rc) {
        free(*data);
        *data = NULL;
        return rc;
    }
    *ndim = h.ndim;
    memcpy(shape, h.shape, (size_t)h.ndim * sizeof *shape);
    cin_err_clear(err);
    return 0;
}

/* ---- writers ---- */

/* Header bytes for this shape: preamble, dict, '\n', rounded up to NPY_ALIGN. */
static size_t npy_header_total(int ndim, const int64_t *shape)
{
    char s[256], dict[NPY_HDR_CAP];
    size_t n = (size_t)snprintf(dict, sizeof dict,
                                "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                                npy_shape_str(s, sizeof s, ndim, shape));
    return (10 + n + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
}

/* Fills buf[0 .. total) with a version 1.0 header, the dict padded with spaces to total. */
static void npy_build_header(char *buf, int ndim, const int64_t *shape, size_t total)
{
    char s[256];
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    int n = snprintf(buf + 10, NPY_HDR_CAP - 10,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                     npy_shape_str(s, sizeof s, ndim, shape));
    memset(buf + 10 + n, ' ', total - 11 - (size_t)n);
    buf[total - 1] = '\n';
}

static int npy_check_shape(const char *path, int ndim, int max_ndim, const int64_t *shape,
                           size_t *nfloats, cin_err *err)
{
    if (ndim < 0 || ndim > max_ndim || (ndim > 0 && !shape))
        return cin_err_set(err, CIN_E_INVAL, "%s: ndim %d, expected 0..%d with a shape", path,
                           ndim, max_ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return cin_err_set(err, CIN_E_INVAL, "%s: shape[%d] is %lld, expected >= 0", path,
                               i, (long long)shape[i]);
    int overflow;
    *nfloats = npy_numel(ndim, shape, &overflow);
    if (overflow)
        return cin_err_set(err, CIN_E_INVAL, "%s: shape is too large (size overflows)", path);
    return 0;
}

int npy_write_f32(const char *path, int ndim, const int64_t *shape, const float *data,
                  cin_err *err)
{
    size_t n = 0;
    if (!path)
        return cin_err_set(err, CIN_E_INVAL, "npy_write_f32: path is NULL");
    int rc = npy_check_shape(path, ndim, NPY_MAX_DIMS, shape, &n, err);
    if (rc)
        return rc;
    if (n && !data)
        return cin_err_set(err, CIN_E_INVAL, "%s: data is NULL", path);

    char hdr[NPY_HDR_CAP];
    size_t total = npy_header_total(ndim, shape);
    npy_build_header(hdr, ndim, shape, total);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return cin_err_set(err, CIN_E_IO, "%s: cannot create: %s", path, strerror(errno));
    int e = 0;
    errno = 0;
    if (fwrite(hdr, 1, total, fp) != total || fwrite(data, sizeof(float), n, fp) != n)
        e = errno ? errno : EIO;
    if (fclose(fp) != 0 && !e)
        e = errno ? errno : EIO;
    if (e)
        return cin_err_set(err, CIN_E_IO, "%s: cannot write: %s", path, strerror(e));
    cin_err_clear(err);
    return 0;
}

static int npy_writer_fail(npy_writer *w, const char *step, cin_err *err)
{
    int e = errno ? errno : EIO;
    w->failed = 1;
    return cin_err_set(err, CIN_E_IO, "%s: cannot %s: %s", w->path, step, strerror(e));
}

static int npy_writer_init(npy_writer *w, const char *path, int row_ndim,
                           const int64_t *row_shape, cin_err *err)
{
    int rc = npy_check_shape(path, row_ndim, NPY_MAX_DIMS - 1, row_shape, &w->row_floats, err);
    if (rc)
        return rc;
    w->path = strdup(path);
    if (!w->path)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    w->ndim = row_ndim + 1;
    if (row_ndim > 0)
        memcpy(w->shape + 1, row_shape, (size_t)row_ndim * sizeof *row_shape);
    w->shape[0] = INT64_MAX;
    w->header_total = npy_header_total(w->ndim, w->shape);
    w->shape[0] = 0;

    w->fp = fopen(path, "wb");
    if (!w->fp)
        return cin_err_set(err, CIN_E_IO, "%s: cannot create: %s", path, strerror(errno));
    return npy_writer_flush(w, err);
}

int npy_writer_open(const char *path, int row_ndim, const int64_t *row_shape, npy_writer **out,
                    cin_err *err)
{
    if (!path || !out)
        return cin_err_set(err, CIN_E_INVAL, "npy_writer_open: NULL argument");
    *out = NULL;
    npy_writer *w = calloc(1, sizeof *w);
    if (!w)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    int rc = npy_writer_init(w, path, row_ndim, row_shape, err);
    if (rc) {
        if (w->fp)
            fclose(w->fp);
        free(w->path);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int npy_writer_append(npy_writer *w, const float *row, cin_err *err)
{
    if (!w || (!row && w->row_floats))
        return cin_err_set(err, CIN_E_INVAL, "npy_writer_append: NULL argument");
    if (w->failed)
        return cin_err_set(err, CIN_E_IO, "%s: an earlier write failed", w->path);
    if (w->shape[0] == INT64_MAX)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: too many rows", w->path);
    if (fwrite(row, sizeof(float), w->row_floats, w->fp) != w->row_floats)
        return npy_writer_fail(w, "write row", err);
    w->shape[0]++;
    return 0;
}

int npy_writer_flush(npy_writer *w, cin_err *err)
{
    if (!w)
        return cin_err_set(err, CIN_E_INVAL, "npy_writer_flush: NULL writer");
    if (w->failed)
        return cin_err_set(err, CIN_E_IO, "%s: an earlier write failed", w->path);

    char hdr[NPY_HDR_CAP];
    npy_build_header(hdr, w->ndim, w->shape, w->header_total);
    if (fflush(w->fp) != 0)
        return npy_writer_fail(w, "flush rows", err);
    if (fseek(w->fp, 0, SEEK_SET) != 0 ||
        fwrite(hdr, 1, w->header_total, w->fp) != w->header_total || fflush(w->fp) != 0)
        return npy_writer_fail(w, "rewrite header", err);
    if (fseek(w->fp, 0, SEEK_END) != 0)
        return npy_writer_fail(w, "seek to the end", err);
    return 0;
}

/* After a failed write (a full disk), the closed file is made a valid array of the rows that
 * reached it whole: cut back to them, and the header rewritten with their count in the bytes
 * it already has, so no new space is needed. 0 when done. */
static int npy_writer_salvage(const npy_writer *w)
{
    int fd = open(w->path, O_RDWR | O_CLOEXEC), ok = 0;
    struct stat st;
    size_t row_bytes = w->row_floats * sizeof(float);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size >= w->header_total) {
        int64_t shape[NPY_MAX_DIMS];
        memcpy(shape, w->shape, sizeof shape);
        int64_t on_disk = row_bytes ? (int64_t)(((size_t)st.st_size - w->header_total) /
                                                row_bytes)
                                    : shape[0];
        shape[0] = on_disk < shape[0] ? on_disk : shape[0];
        char hdr[NPY_HDR_CAP];
        npy_build_header(hdr, w->ndim, shape, w->header_total);
        ok = ftruncate(fd, (off_t)(w->header_total + (size_t)shape[0] * row_bytes)) == 0 &&
             pwrite(fd, hdr, w->header_total, 0) == (ssize_t)w->header_total;
    }
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

int npy_writer_close(npy_writer *w, cin_err *err)
{
    if (!w)
        return 0;
    int rc = npy_writer_flush(w, err);
    if (fclose(w->fp) != 0 && !rc)
        rc = cin_err_set(err, CIN_E_IO, "%s: cannot close: %s", w->path, strerror(errno));
    if (w->failed && npy_writer_salvage(w) != 0 && !rc)
        rc = cin_err_set(err, CIN_E_IO, "%s: cannot cut back to whole rows", w->path);
    free(w->path);
    free(w);
    return rc;
}
