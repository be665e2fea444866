/* Elementwise affine map over a frame. */
#include "affine.h"

#include <stdlib.h>
#include <string.h>

typedef struct affine {
    cin_node base;
    float *scale, *shift;
} affine;

static void apply(const affine *a, const float *in, float *out)
{
    size_t n = cin_dims_size(a->base.in);
    for (size_t i = 0; i < n; i++)
        out[i] = a->scale[i] * in[i] + a->shift[i];
}

static int affine_step(const cin_node *n, void *state, const float *in, float *out,
                       float *scratch)
{
    (void)state;
    (void)scratch;
    apply((const affine *)n, in, out);
    return 1;
}

static void affine_forward(const cin_node *n, const float *in, int t_in, float *out,
                           float *scratch)
{
    (void)scratch;
    size_t sz = cin_dims_size(n->in);
    for (int t = 0; t < t_in; t++)
        apply((const affine *)n, in + t * sz, out + t * sz);
}

static void affine_destroy(cin_node *n)
{
    affine *a = (affine *)n;
    free(a->scale);
    free(a->shift);
    free(a);
}

static const cin_node_ops affine_ops = {
    .kind = "affine",
    .step = affine_step,
    .forward = affine_forward,
    .destroy = affine_destroy,
};

int affine_create(cin_dims dims, const float *scale, const float *shift, cin_node **out,
                  cin_err *err)
{
    *out = NULL;
    size_t n = cin_dims_size(dims);
    if (n == 0)
        return cin_err_set(err, CIN_E_INVAL, "affine: empty frame");
    affine *a = calloc(1, sizeof *a);
    if (a) {
        a->scale = malloc(sizeof(float) * n);
        a->shift = malloc(sizeof(float) * n);
    }
    if (!a || !a->scale || !a->shift) {
        if (a)
            affine_destroy(&a->base);
        return cin_err_set(err, CIN_E_NOMEM, "affine: out of memory");
    }
    memcpy(a->scale, scale, sizeof(float) * n);
    memcpy(a->shift, shift, sizeof(float) * n);
    a->base.ops = &affine_ops;
    a->base.in = a->base.out = dims;
    a->base.rf = a->base.stride = 1;
    a->base.param_bytes = 2 * sizeof(float) * n;
    *out = &a->base;
    return 0;
}
