/* Weight sources: safetensors checkpoints or seeded tensors (see weights.h). */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"
#include "seeded.h"

struct wsrc {
    st_file *file;      /* NULL for seeded weights */
    uint64_t seed;
    char name[64];
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
    free(w);
}

const char *wsrc_name(const wsrc *w)
{
    return w->file ? st_path(w->file) : w->name;
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

int wsrc_get(const wsrc *w, const char *name, int ndim, const int64_t *shape, float **out,
             cin_err *err)
{
    *out = NULL;
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    float *dst = malloc(sizeof(float) * (n ? n : 1));
    if (!dst)
        return cin_err_set(err, CIN_E_NOMEM, "%s: tensor '%s': out of memory", wsrc_name(w),
                           name);
    int rc = w->file ? st_read_f32(w->file, name, ndim, shape, dst, err)
                     : seeded_get(w, name, ndim, shape, dst, n, err);
    if (rc) {
        free(dst);
        return rc;
    }
    *out = dst;
    return 0;
}
