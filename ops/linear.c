/* Fully connected layer per frame (the X3D projection to classes), on OpenBLAS's sgemv. */
#include "linear.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

typedef struct linear {
    cin_node base;
    float *w;   /* [cout][cin] */
    float *b;   /* [cout] */
} linear;

static void apply(const linear *l, const float *in, float *out)
{
    int cin = l->base.in.c, cout = l->base.out.c;
    memcpy(out, l->b, sizeof(float) * cout);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, cout, cin, 1.0f, l->w, cin, in, 1, 1.0f, out, 1);
}

static int linear_step(const cin_node *n, void *state, const float *in, float *out,
                       float *scratch)
{
    (void)state;
    (void)scratch;
    apply((const linear *)n, in, out);
    return 1;
}

static void linear_forward(const cin_node *n, const float *in, int t_in, float *out,
                           float *scratch)
{
    (void)scratch;
    for (int t = 0; t < t_in; t++)
        apply((const linear *)n, in + (size_t)t * n->in.c, out + (size_t)t * n->out.c);
}

static int64_t linear_macs_step(const cin_node *n)
{
    return (int64_t)n->in.c * n->out.c;
}

static int64_t linear_macs_clip(const cin_node *n, int t_in)
{
    return linear_macs_step(n) * t_in;
}

static void linear_destroy(cin_node *n)
{
    linear *l = (linear *)n;
    free(l->w);
    free(l->b);
    free(l);
}

static const cin_node_ops linear_ops = {
    .kind = "linear",
    .step = linear_step,
    .forward = linear_forward,
    .macs_step = linear_macs_step,
    .macs_clip = linear_macs_clip,
    .destroy = linear_destroy,
};

int linear_create(int cin, int cout, const float *weight, const float *bias, cin_node **out,
                  cin_err *err)
{
    *out = NULL;
    if (cin < 1 || cout < 1)
        return cin_err_set(err, CIN_E_INVAL, "linear: %d -> %d features", cin, cout);
    linear *l = calloc(1, sizeof *l);
    if (l) {
        l->w = malloc(sizeof(float) * cin * cout);
        l->b = calloc((size_t)cout, sizeof(float));
    }
    if (!l || !l->w || !l->b) {
        if (l)
            linear_destroy(&l->base);
        return cin_err_set(err, CIN_E_NOMEM, "linear: out of memory");
    }
    memcpy(l->w, weight, sizeof(float) * cin * cout);
    if (bias)
        memcpy(l->b, bias, sizeof(float) * cout);
    l->base.ops = &linear_ops;
    l->base.in = (cin_dims){cin, 1, 1};
    l->base.out = (cin_dims){cout, 1, 1};
    l->base.rf = 1;
    l->base.stride = 1;
    l->base.param_bytes = sizeof(float) * ((size_t)cin * cout + cout);
    *out = &l->base;
    return 0;
}
