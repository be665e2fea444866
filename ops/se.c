/* Squeeze-and-excitation in both modes (see se.h). The window holds the frames still to be
 * scaled and their channel means. */
#include "se.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct se {
    cin_node base;
    int c, r, window;
    float *w1, *b1, *w2, *b2;
} se;

typedef struct se_state {
    int64_t t;
} se_state;

/* gate[c] = sigmoid(fc2(relu(fc1(mean)))); hidden holds `r` floats. */
static void excite(const se *s, const float *mean, float *hidden, float *gate)
{
    memcpy(hidden, s->b1, sizeof(float) * s->r);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, s->r, s->c, 1.0f, s->w1, s->c, mean, 1, 1.0f,
                hidden, 1);
    for (int i = 0; i < s->r; i++)
        hidden[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    memcpy(gate, s->b2, sizeof(float) * s->c);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, s->c, s->r, 1.0f, s->w2, s->r, hidden, 1, 1.0f,
                gate, 1);
    for (int i = 0; i < s->c; i++)
        gate[i] = 1.0f / (1.0f + expf(-gate[i]));
}

static void scale_frame(const se *s, const float *in, const float *gate, float *out)
{
    size_t plane = (size_t)s->base.in.h * s->base.in.w;
    for (int c = 0; c < s->c; c++)
        for (size_t i = 0; i < plane; i++)
            out[c * plane + i] = in[c * plane + i] * gate[c];
}

/* Adds the per-channel means of `frames` frames to acc (c floats). */
static void add_means(const se *s, const float *in, int frames, float *acc)
{
    size_t plane = (size_t)s->base.in.h * s->base.in.w;
    for (int t = 0; t < frames; t++)
        for (int c = 0; c < s->c; c++) {
            const float *x = in + ((size_t)t * s->c + c) * plane;
            float sum = 0.0f;
            for (size_t i = 0; i < plane; i++)
                sum += x[i];
            acc[c] += sum / (float)plane;
        }
}

static int se_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    const se *s = (const se *)n;
    size_t sz = cin_dims_size(n->in);
    float *mean = scratch, *hidden = scratch + s->c, *gate = hidden + s->r;
    memset(mean, 0, sizeof(float) * s->c);
    if (s->window == 1) {
        add_means(s, in, 1, mean);
        excite(s, mean, hidden, gate);
        scale_frame(s, in, gate, out);
        return 1;
    }
    se_state *st = state;
    float *ring = (float *)((char *)state + cin_align(sizeof *st));
    memcpy(ring + (size_t)(st->t % s->window) * sz, in, sz * sizeof(float));
    if (++st->t < s->window)
        return 0;
    add_means(s, ring, s->window, mean);
    for (int c = 0; c < s->c; c++)
        mean[c] /= (float)s->window;
    excite(s, mean, hidden, gate);
    scale_frame(s, ring + (size_t)(st->t % s->window) * sz, gate, out);
    return 1;
}

static void se_forward(const cin_node *n, const float *in, int t_in, float *out,
                       float *scratch)
{
    const se *s = (const se *)n;
    size_t sz = cin_dims_size(n->in);
    float *mean = scratch, *hidden = scratch + s->c, *gate = hidden + s->r;
    memset(mean, 0, sizeof(float) * s->c);
    add_means(s, in, t_in, mean);
    for (int c = 0; c < s->c; c++)
        mean[c] /= (float)t_in;
    excite(s, mean, hidden, gate);
    for (int t = 0; t < t_in; t++)
        scale_frame(s, in + t * sz, gate, out + t * sz);
}

static size_t se_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    return n->step_scratch;
}

static int se_clip_frames(const cin_node *n, int t_in)
{
    (void)n;
    return t_in;
}

static int64_t se_macs_step(const cin_node *n)
{
    const se *s = (const se *)n;
    return 2 * (int64_t)s->c * s->r;
}

static int64_t se_macs_clip(const cin_node *n, int t_in)
{
    (void)t_in;
    return se_macs_step(n);
}

static void se_destroy(cin_node *n)
{
    se *s = (se *)n;
    free(s->w1);
    free(s);
}

static const cin_node_ops se_ops = {
    .kind = "squeeze-excitation",
    .step = se_step,
    .forward = se_forward,
    .clip_scratch = se_clip_scratch,
    .clip_frames = se_clip_frames,
    .macs_step = se_macs_step,
    .macs_clip = se_macs_clip,
    .destroy = se_destroy,
};

int se_create(const se_params *p, cin_node **out, cin_err *err)
{
    *out = NULL;
    int c = p->dims.c, r = p->reduced;
    if (c < 1 || r < 1 || p->window < 1)
        return cin_err_set(err, CIN_E_INVAL, "squeeze-excitation: %d channels, %d reduced, "
                           "window %d", c, r, p->window);
    se *s = calloc(1, sizeof *s);
    size_t nparam = 2 * (size_t)c * r + r + c;
    float *mem = s ? malloc(sizeof(float) * nparam) : NULL;
    if (!mem) {
        free(s);
        return cin_err_set(err, CIN_E_NOMEM, "squeeze-excitation: out of memory");
    }
    s->c = c;
    s->r = r;
    s->window = p->window;
    s->w1 = mem;
    s->b1 = s->w1 + (size_t)c * r;
    s->w2 = s->b1 + r;
    s->b2 = s->w2 + (size_t)c * r;
    memcpy(s->w1, p->fc1_w, sizeof(float) * c * r);
    memcpy(s->b1, p->fc1_b, sizeof(float) * r);
    memcpy(s->w2, p->fc2_w, sizeof(float) * c * r);
    memcpy(s->b2, p->fc2_b, sizeof(float) * c);
    s->base.ops = &se_ops;
    s->base.in = s->base.out = p->dims;
    s->base.rf = p->window;
    s->base.stride = 1;
    if (p->window > 1)
        s->base.state_bytes = cin_align(sizeof(se_state)) +
                              cin_align((size_t)p->window * cin_dims_size(p->dims) * sizeof(float));
    s->base.step_scratch = 2 * (size_t)c + r;
    s->base.param_bytes = sizeof(float) * nparam;
    *out = &s->base;
    return 0;
}
