/* Post-processing: softmax and top-k over one frame's class scores, and the label file that
 * names the classes. The label file is read whole once; the labels point into that text. */
#include "post.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct post_labels {
    int n;
    char *text;                 /* the file, each line ending replaced by '\0' */
    const char **names;         /* [n] pointers into text */
};

/* 100000 labels of a few dozen bytes: anything larger is not a label file (or is /dev/zero). */
#define POST_MAX_LABEL_BYTES (16u << 20)

/* The whole file as a NUL-terminated buffer (*len excludes the terminator). */
static int post_read(const char *path, char **text, size_t *len, cin_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(f);
        return cin_err_set(err, CIN_E_IO, "%s: not a regular file", path);
    }
    size_t cap = 0, n = 0, got = 1;
    char *buf = NULL;
    while (got > 0) {
        if (n > POST_MAX_LABEL_BYTES) {
            free(buf);
            fclose(f);
            return cin_err_set(err, CIN_E_FORMAT, "%s: larger than %u bytes, expected one "
                               "label per line", path, POST_MAX_LABEL_BYTES);
        }
        if (cap - n < 2) {
            char *grown = realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!grown) {
                free(buf);
                fclose(f);
                return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
            }
            buf = grown;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    }
    int failed = ferror(f), e = errno;
    fclose(f);
    if (failed) {
        free(buf);
        return cin_err_set(err, CIN_E_IO, "%s: cannot read: %s", path, strerror(e));
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* Length of the UTF-8 sequence at s (n bytes left), or 0 if it is not well formed:
 * overlong forms, surrogates and code points past U+10FFFF are rejected. */
static size_t post_utf8_char(const unsigned char *s, size_t n)
{
    static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = s[0] < 0x80 ? 1 : s[0] < 0xC0 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3
               : s[0] < 0xF8 ? 4 : 0;
    if (len <= 1 || len > n)
        return len > n ? 0 : len;
    unsigned cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int post_utf8_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0, step; i < n; i += step)
        if (!(step = post_utf8_char(u + i, n - i)))
            return 0;
    return 1;
}

/* Checks line `no` (1-based, len bytes at s, its '\n' already removed) and strips a '\r'. */
static int post_check_line(const char *path, int no, char *s, size_t len, cin_err *err)
{
    if (len > 0 && s[len - 1] == '\r')
        s[--len] = '\0';
    if (len == 0)
        return cin_err_set(err, CIN_E_FORMAT, "%s:%d: blank line (one label per line)", path,
                           no);
    if (memchr(s, '\0', len))
        return cin_err_set(err, CIN_E_FORMAT, "%s:%d: label contains a NUL byte", path, no);
    if (!post_utf8_ok(s, len))
        return cin_err_set(err, CIN_E_FORMAT, "%s:%d: label is not valid UTF-8", path, no);
    return 0;
}

/* Splits l->text (len bytes) into l->names. */
static int post_split(const char *path, post_labels *l, size_t len, cin_err *err)
{
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += l->text[i] == '\n';
    lines += len > 0 && l->text[len - 1] != '\n';
    if (lines == 0)
        return cin_err_set(err, CIN_E_FORMAT, "%s: no labels (the file is empty)", path);
    if (lines > INT_MAX)
        return cin_err_set(err, CIN_E_FORMAT, "%s: more than %d labels", path, INT_MAX);
    l->names = malloc(lines * sizeof *l->names);
    if (!l->names)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);

    char *s = l->text, *end = l->text + len;
    for (l->n = 0; l->n < (int)lines; l->n++) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        s[n] = '\0';
        int rc = post_check_line(path, l->n + 1, s, n, err);
        if (rc)
            return rc;
        l->names[l->n] = s;
        s += n + 1;
    }
    return 0;
}

int post_labels_load(const char *path, int num_classes, post_labels **out, cin_err *err)
{
    size_t len = 0;
    *out = NULL;
    post_labels *l = calloc(1, sizeof *l);
    if (!l)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    int rc = post_read(path, &l->text, &len, err);
    if (!rc)
        rc = post_split(path, l, len, err);
    if (!rc && num_classes > 0 && l->n != num_classes)
        rc = cin_err_set(err, CIN_E_CONFIG, "%s: expected %d labels (one per class), got %d",
                         path, num_classes, l->n);
    if (rc) {
        post_labels_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int post_labels_count(const post_labels *l)
{
    return l ? l->n : 0;
}

const char *post_label(const post_labels *l, int i)
{
    return (l && i >= 0 && i < l->n) ? l->names[i] : NULL;
}

const char *const *post_labels_array(const post_labels *l)
{
    return l ? l->names : NULL;
}

void post_labels_free(post_labels *l)
{
    if (!l)
        return;
    free(l->names);
    free(l->text);
    free(l);
}

void post_softmax(float *x, int n)
{
    if (n <= 0)
        return;
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

/* a ranks above b: larger, and any number above NaN. */
static int post_above(float a, float b)
{
    return a > b || (isnan(b) && !isnan(a));
}

void post_topk(const float *x, int n, int k, int *idx, float *val)
{
    int m = 0;                  /* slots filled, kept sorted */
    if (k <= 0)
        return;
    for (int i = 0; i < n; i++) {
        if (m == k && !post_above(x[i], val[k - 1]))
            continue;
        int p = m < k ? m++ : k - 1;
        for (; p > 0 && post_above(x[i], val[p - 1]); p--) {
            idx[p] = idx[p - 1];
            val[p] = val[p - 1];
        }
        idx[p] = i;
        val[p] = x[i];
    }
    for (; m < k; m++) {
        idx[m] = -1;
        val[m] = -INFINITY;
    }
}
