/* Average pooling over space, over a sliding temporal window (co.AvgPool3d with a temporal
 * kernel: the window of frames is kept per stream), and over a whole clip. */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

typedef enum { POOL_SPATIAL, POOL_TEMPORAL, POOL_CLIP_MEAN } pool_kind;

typedef struct pool {
    cin_node base;
    pool_kind kind;
    int window;
} pool;

typedef struct pool_state {
    int64_t t;
} pool_state;

static void spatial_mean(cin_dims d, const float *in, float *out)
{
    size_t plane = (size_t)d.h * d.w;
    for (int c = 0; c < d.c; c++) {
        float sum = 0.0f;
        for (size_t i = 0; i < plane; i++)
            sum += in[c * plane + i];
        out[c] = sum / (float)plane;
    }
}

/* out = mean of n frames of sz floats starting at `frames`. */
static void frames_mean(const float *frames, int n, size_t sz, float *out)
{
    memcpy(out, frames, sz * sizeof(float));
    for (int k = 1; k < n; k++)
        for (size_t i = 0; i < sz; i++)
            out[i] += frames[k * sz + i];
    for (size_t i = 0; i < sz; i++)
        out[i] /= (float)n;
}

static int pool_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    (void)scratch;
    const pool *p = (const pool *)n;
    size_t sz = cin_dims_size(n->in);
    if (p->kind == POOL_SPATIAL) {
        spatial_mean(n->in, in, out);
        return 1;
    }
    if (p->kind == POOL_CLIP_MEAN) {
        memcpy(out, in, sz * sizeof(float));
        return 1;
    }
    pool_state *s = state;
    float *ring = (float *)((char *)state + cin_align(sizeof *s));
    memcpy(ring + (size_t)(s->t % p->window) * sz, in, sz * sizeof(float));
    if (++s->t < p->window - n->pad)
        return 0;
    frames_mean(ring, p->window, sz, out);
    return 1;
}

static void pool_forward(const cin_node *n, const float *in, int t_in, float *out,
                         float *scratch)
{
    (void)scratch;
    const pool *p = (const pool *)n;
    size_t sz = cin_dims_size(n->in);
    if (p->kind == POOL_SPATIAL) {
        for (int t = 0; t < t_in; t++)
            spatial_mean(n->in, in + t * sz, out + t * n->out.c);
        return;
    }
    if (p->kind == POOL_CLIP_MEAN) {
        frames_mean(in, t_in, sz, out);
        return;
    }
    for (int t = 0; t + p->window <= t_in; t++)
        frames_mean(in + t * sz, p->window, sz, out + t * sz);
}

static int pool_clip_frames(const cin_node *n, int t_in)
{
    const pool *p = (const pool *)n;
    if (p->kind == POOL_CLIP_MEAN)
        return t_in > 0;
    if (p->kind == POOL_SPATIAL)
        return t_in;
    return t_in >= p->window ? t_in - p->window + 1 : 0;
}

static void pool_destroy(cin_node *n)
{
    free(n);
}

static const cin_node_ops pool_ops = {
    .kind = "pool",
    .step = pool_step,
    .forward = pool_forward,
    .clip_frames = pool_clip_frames,
    .destroy = pool_destroy,
};

static int pool_new(pool_kind kind, cin_dims dims, int window, int pad, cin_node **out,
                    cin_err *err)
{
    *out = NULL;
    if (window < 1 || pad < 0 || pad >= window)
        return cin_err_set(err, CIN_E_INVAL, "pool: window %d and padding %d, expected "
                           "window >= 1 and 0 <= padding < window", window, pad);
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return cin_err_set(err, CIN_E_NOMEM, "pool: out of memory");
    p->kind = kind;
    p->window = window;
    p->base.ops = &pool_ops;
    p->base.in = p->base.out = dims;
    p->base.rf = window;
    p->base.pad = pad;
    p->base.stride = 1;
    if (kind == POOL_SPATIAL)
        p->base.out = (cin_dims){dims.c, 1, 1};
    if (kind == POOL_TEMPORAL)
        p->base.state_bytes = cin_align(sizeof(pool_state)) +
                              cin_align((size_t)window * cin_dims_size(dims) * sizeof(float));
    *out = &p->base;
    return 0;
}

int pool_spatial_create(cin_dims dims, cin_node **out, cin_err *err)
{
    return pool_new(POOL_SPATIAL, dims, 1, 0, out, err);
}

int pool_temporal_create(cin_dims dims, int window, int pad, cin_node **out, cin_err *err)
{
    return pool_new(POOL_TEMPORAL, dims, window, pad, out, err);
}

int pool_clip_mean_create(cin_dims dims, cin_node **out, cin_err *err)
{
    return pool_new(POOL_CLIP_MEAN, dims, 1, 0, out, err);
}
