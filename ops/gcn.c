/* Graph convolution. Aggregating before the channel mixing costs k * cin * V^2 + k * cin * cout
 * * V per person against k * cout * (cin * V + V^2) the other way round, never more, and far
 * less in the first block (3 channels in, 64 out); W_k (x A_k) = (W_k x) A_k makes them equal.
 * Bias and batch norm fold into W and one bias map b[cout][V], since a bias added before
 * aggregation reaches joint w scaled by the column sum of A_k:
 *     y_m = [W_0 .. W_{k-1}] [x_m A_0; ..; x_m A_{k-1}] + b.                                 */
#include "gcn.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

typedef struct gcn {
    cin_node base;
    int k, joints, persons, relu;
    float *adj;     /* [k][V][V] */
    float *w;       /* [cout][k * cin]: row c holds W_0[c] .. W_{k-1}[c] */
    float *bias;    /* [cout][V] */
} gcn;

/* y[cout][M * V] from x[cin][M * V]; agg holds k * cin * M * V floats. */
static void apply(const gcn *g, const float *x, float *y, float *agg)
{
    int cin = g->base.in.c, cout = g->base.out.c, nv = g->joints, mv = g->base.in.w;
    for (int m = 0; m < g->persons; m++)
        for (int k = 0; k < g->k; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cin, nv, nv, 1.0f,
                        x + m * nv, mv, g->adj + (size_t)k * nv * nv, nv, 0.0f,
                        agg + (size_t)k * cin * mv + m * nv, mv);
    for (int c = 0; c < cout; c++)
        for (int m = 0; m < g->persons; m++)
            memcpy(y + (size_t)c * mv + m * nv, g->bias + (size_t)c * nv, sizeof(float) * nv);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, mv, g->k * cin, 1.0f, g->w,
                g->k * cin, agg, mv, 1.0f, y, mv);
    if (g->relu)
        for (size_t i = 0; i < (size_t)cout * mv; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

static int gcn_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    (void)state;
    apply((const gcn *)n, in, out, scratch);
    return 1;
}

static void gcn_forward(const cin_node *n, const float *in, int t_in, float *out,
                        float *scratch)
{
    size_t isz = cin_dims_size(n->in), osz = cin_dims_size(n->out);
    for (int t = 0; t < t_in; t++)
        apply((const gcn *)n, in + t * isz, out + t * osz, scratch);
}

static size_t gcn_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    return n->step_scratch;
}

static int64_t gcn_macs_step(const cin_node *n)
{
    const gcn *g = (const gcn *)n;
    int64_t cin = n->in.c, cout = n->out.c, nv = g->joints;
    return g->persons * g->k * (cin * nv * nv + cout * cin * nv);
}

static int64_t gcn_macs_clip(const cin_node *n, int t_in)
{
    return gcn_macs_step(n) * t_in;
}

static void gcn_destroy(cin_node *n)
{
    gcn *g = (gcn *)n;
    free(g->adj);
    free(g->w);
    free(g->bias);
    free(g);
}

static const cin_node_ops gcn_ops = {
    .kind = "gcn",
    .step = gcn_step,
    .forward = gcn_forward,
    .clip_scratch = gcn_clip_scratch,
    .macs_step = gcn_macs_step,
    .macs_clip = gcn_macs_clip,
    .destroy = gcn_destroy,
};

/* Bias of output channel c at joint w, before the batch norm. */
static float raw_bias(const gcn_params *p, int c, int w)
{
    int nv = p->joints;
    float b = p->post_bias ? p->post_bias[c] : 0.0f;
    for (int k = 0; p->pre_bias && k < p->k; k++) {
        float column = 0.0f;
        for (int v = 0; v < nv; v++)
            column += p->adj[((size_t)k * nv + v) * nv + w];
        b += p->pre_bias[k * p->cout + c] * column;
    }
    return b;
}

static void pack(const gcn_params *p, gcn *g)
{
    int nv = p->joints, kc = p->k * p->cin;
    memcpy(g->adj, p->adj, sizeof(float) * p->k * nv * nv);
    for (int c = 0; c < p->cout; c++) {
        double fold, add;
        bn_fold(&p->bn, c, &fold, &add);
        float scale = (float)fold, shift = (float)add;
        for (int k = 0; k < p->k; k++)
            for (int i = 0; i < p->cin; i++)
                g->w[(size_t)c * kc + k * p->cin + i] =
                    scale * p->weight[((size_t)k * p->cout + c) * p->cin + i];
        for (int w = 0; w < nv; w++)
            g->bias[(size_t)c * nv + w] = scale * raw_bias(p, c, w) + shift;
    }
}

static int check(const gcn_params *p, cin_err *err)
{
    if (p->cin < 1 || p->cout < 1 || p->k < 1 || p->joints < 1 || p->persons < 1)
        return cin_err_set(err, CIN_E_INVAL, "gcn: %d -> %d channels, %d partitions, %d joints, "
                           "%d persons: each must be >= 1", p->cin, p->cout, p->k, p->joints,
                           p->persons);
    if (!p->weight || !p->adj)
        return cin_err_set(err, CIN_E_INVAL, "gcn: no weight or adjacency");
    return 0;
}

int gcn_create(const gcn_params *p, cin_node **out, cin_err *err)
{
    *out = NULL;
    int rc = check(p, err);
    if (rc)
        return rc;
    int mv = p->persons * p->joints;
    gcn *g = calloc(1, sizeof *g);
    if (g) {
        g->adj = malloc(sizeof(float) * p->k * p->joints * p->joints);
        g->w = malloc(sizeof(float) * p->cout * p->k * p->cin);
        g->bias = malloc(sizeof(float) * p->cout * p->joints);
    }
    if (!g || !g->adj || !g->w || !g->bias) {
        if (g)
            gcn_destroy(&g->base);
        return cin_err_set(err, CIN_E_NOMEM, "gcn: out of memory");
    }
    pack(p, g);
    g->k = p->k;
    g->joints = p->joints;
    g->persons = p->persons;
    g->relu = p->relu;
    g->base.ops = &gcn_ops;
    g->base.in = (cin_dims){p->cin, 1, mv};
    g->base.out = (cin_dims){p->cout, 1, mv};
    g->base.rf = g->base.stride = 1;
    g->base.step_scratch = (size_t)p->k * p->cin * mv;
    g->base.param_bytes = sizeof(float) * ((size_t)p->k * p->joints * p->joints +
                                           (size_t)p->cout * p->k * p->cin +
                                           (size_t)p->cout * p->joints);
    *out = &g->base;
    return 0;
}
