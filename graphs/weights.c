/* Weight sources: safetensors checkpoints or seeded tensors (see weights.h). */
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "seeded.h"

struct wsrc {
    st_file *file;      /* NULL for seeded weights */
    uint64_t seed;
    char name[64];
    char **asked;       /* names read so far, for wsrc_unused */
    int n_asked, cap_asked;
};

int wsrc_open_file(const char *path, wsrc **out, cin_err *err)
{
    *out = NULL;
    wsrc *w = calloc(1, sizeof *w);
    if (!w)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    int rc = st_open(path, &w->file, err);
    if (rc) {
        free(w);
        return rc;
    }
    snprintf(w->name, sizeof w->name, "%s", path);
    *out = w;
    return 0;
}

wsrc *wsrc_seeded(uint64_t seed)
{
    wsrc *w = calloc(1, sizeof *w);
    if (w) {
        w->seed = seed;
        snprintf(w->name, sizeof w->name, "seed %llu", (unsigned long long)seed);
    }
    return w;
}

void wsrc_close(wsrc *w)
{
    if (!w)
        return;
    st_close(w->file);
    for (int i = 0; i < w->n_asked; i++)
        free(w->asked[i]);
    free(w->asked);
    free(w);
}

const char *wsrc_name(const wsrc *w)
{
    return w->file ? st_path(w->file) : w->name;
}

const char *wsrc_meta(const wsrc *w, const char *key)
{
    return w->file ? st_meta(w->file, key) : NULL;
}

int wsrc_has(const wsrc *w, const char *name)
{
    st_info info;
    return !w->file || st_find(w->file, name, &info, NULL) == 0;
}

int wsrc_shape(const wsrc *w, const char *name, int *ndim, int64_t shape[8], cin_err *err)
{
    st_info info;
    if (!w->file)
        return cin_err_set(err, CIN_E_NOTFOUND, "%s: tensor '%s': no shape for seeded weights",
                           w->name, name);
    int rc = st_find(w->file, name, &info, err);
    if (rc)
        return rc;
    *ndim = info.ndim;
    for (int d = 0; d < info.ndim; d++)
        shape[d] = info.shape[d];
    return 0;
}

static int seeded_get(const wsrc *w, const char *name, int ndim, const int64_t *shape,
                      float *dst, size_t n, cin_err *err)
{
    double lo, hi;
    if (cin_seeded_range(name, ndim, shape, &lo, &hi))
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: tensor '%s': no rule to draw it",
                           w->name, name);
    cin_seeded_fill(dst, n, w->seed, name, lo, hi);
    return 0;
}

static int remember(wsrc *w, const char *name)
{
    if (w->n_asked == w->cap_asked) {
        int cap = w->cap_asked ? 2 * w->cap_asked : 256;
        char **grown = realloc(w->asked, sizeof *grown * cap);
        if (!grown)
            return -1;
        w->asked = grown;
        w->cap_asked = cap;
    }
    w->asked[w->n_asked] = strdup(name);
    return w->asked[w->n_asked++] ? 0 : -1;
}

/* A NaN or infinite weight poisons every output after it: refuse it at load. */
static int check_finite(const wsrc *w, const char *name, const float *v, size_t n,
                        cin_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s': element %zu is %g, "
                               "expected a finite number", wsrc_name(w), name, i, v[i]);
    return 0;
}

int wsrc_get(wsrc *w, const char *name, int ndim, const int64_t *shape, float **out,
             cin_err *err)
{
    *out = NULL;
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    float *dst = malloc(sizeof(float) * (n ? n : 1));
    if (!dst || (w->file && remember(w, name))) {
        free(dst);
        return cin_err_set(err, CIN_E_NOMEM, "%s: tensor '%s': out of memory (%zu floats)",
                           wsrc_name(w), name, n);
    }
    int rc = w->file ? st_read_f32(w->file, name, ndim, shape, dst, err)
                     : seeded_get(w, name, ndim, shape, dst, n, err);
    rc = rc ? rc : check_finite(w, name, dst, n, err);
    if (rc) {
        free(dst);
        return rc;
    }
    *out = dst;
    return 0;
}

static int was_asked(const wsrc *w, const char *name)
{
    for (int i = 0; i < w->n_asked; i++)
        if (strcmp(w->asked[i], name) == 0)
            return 1;
    return 0;
}

const char *wsrc_unused(const wsrc *w, int (*belongs)(const char *name), int *count)
{
    const char *first = NULL;
    *count = 0;
    for (int i = 0; w->file && i < st_count(w->file); i++) {
        st_info info;
        if (st_info_at(w->file, i, &info) || !belongs(info.name) || was_asked(w, info.name))
            continue;
        first = first ? first : info.name;
        (*count)++;
    }
    return first;
}
