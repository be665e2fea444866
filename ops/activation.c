/* ReLU, GELU, Swish (x * sigmoid(x), as in X3D), sigmoid and the channel softmax. */
#include "activation.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>

typedef struct act {
    cin_node base;
    act_kind kind;
} act;

/* Clamped so that exp never overflows: this file is built with -ffast-math, which assumes
 * finite values. sigmoid(+-88) is 1 and 0 to float precision anyway. */
static inline float sigmoid(float x)
{
    x = fminf(fmaxf(x, -88.0f), 88.0f);
    return 1.0f / (1.0f + expf(-x));
}

/* Softmax over channels at each position, max-subtracted so large logits do not overflow. */
static void softmax_channels(cin_dims d, const float *in, float *out)
{
    size_t plane = (size_t)d.h * d.w;
    for (size_t i = 0; i < plane; i++) {
        float most = in[i];
        for (int c = 1; c < d.c; c++)
            most = fmaxf(most, in[c * plane + i]);
        float sum = 0.0f;
        for (int c = 0; c < d.c; c++)
            sum += out[c * plane + i] = expf(in[c * plane + i] - most);
        for (int c = 0; c < d.c; c++)
            out[c * plane + i] /= sum;
    }
}

CIN_KERNEL void act_apply(act_kind kind, cin_dims dims, const float *in, float *out)
{
    size_t n = cin_dims_size(dims);
    switch (kind) {
    case ACT_RELU:
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case ACT_SWISH:
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * sigmoid(in[i]);
        break;
    case ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            out[i] = sigmoid(in[i]);
        break;
    case ACT_SOFTMAX:
        softmax_channels(dims, in, out);
        break;
    case ACT_GELU:
        for (size_t i = 0; i < n; i++)
            out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * 0.70710678118654752f));
        break;
    }
}

static int act_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    (void)state;
    (void)scratch;
    act_apply(((const act *)n)->kind, n->in, in, out);
    return 1;
}

static void act_forward(const cin_node *n, const float *in, int t_in, float *out,
                        float *scratch)
{
    (void)scratch;
    size_t sz = cin_dims_size(n->in);
    for (int t = 0; t < t_in; t++)
        act_apply(((const act *)n)->kind, n->in, in + t * sz, out + t * sz);
}

static void act_destroy(cin_node *n)
{
    free(n);
}

static const cin_node_ops act_ops = {
    .kind = "activation",
    .step = act_step,
    .forward = act_forward,
    .destroy = act_destroy,
};

int act_create(act_kind kind, cin_dims dims, cin_node **out, cin_err *err)
{
    *out = NULL;
    act *a = calloc(1, sizeof *a);
    if (!a)
        return cin_err_set(err, CIN_E_NOMEM, "activation: out of memory");
    a->kind = kind;
    a->base.ops = &act_ops;
    a->base.in = a->base.out = dims;
    a->base.rf = 1;
    a->base.stride = 1;
    *out = &a->base;
    return 0;
}
