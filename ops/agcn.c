/* Adaptive graph convolution. Per person and subset, the graph G_k = C_k + B_k is built first
 * (from one frame when stepping, from every frame of the clip in clip mode), then each frame
 * is aggregated as in ops/gcn.c: x_m G_k for every k, then one product with the stacked W_k,
 * the batch norm folded into W and the bias. The embedding product is summed frame by frame
 * into G_k, so a clip needs no more scratch than a frame. */
#include "agcn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct agcn {
    cin_node base;
    int k, inter, joints, persons;
    float *adj;     /* [k][V][V]: B_k */
    float *w;       /* [cout][k * cin]: row c holds W_0[c] .. W_{k-1}[c], batch norm folded */
    float *bias;    /* [cout], batch norm folded */
    float *emb_w;   /* [k][2 * inter][cin]: theta rows, then phi rows */
    float *emb_b;   /* [k][2 * inter] */
} agcn;

/* Scratch, in floats: agg [k][cin][M * V], emb [2 * inter][V], graphs [M][k][V][V]. */
static size_t agcn_scratch(const agcn *g)
{
    size_t nv = g->joints, mv = g->base.in.w;
    return (size_t)g->k * g->base.in.c * mv + 2 * (size_t)g->inter * nv +
           (size_t)g->persons * g->k * nv * nv;
}

/* theta and phi of person m, subset k, from one frame x [cin][M * V] into emb. */
static void embed(const agcn *g, const float *x, int m, int k, float *emb)
{
    int cin = g->base.in.c, nv = g->joints, rows = 2 * g->inter;
    const float *b = g->emb_b + (size_t)k * rows;
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++)
            emb[(size_t)r * nv + v] = b[r];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, nv, cin, 1.0f,
                g->emb_w + (size_t)k * rows * cin, cin, x + m * nv, g->base.in.w, 1.0f, emb,
                nv);
}

/* s[v][w] += sum_i theta[i][v] phi[i][w] for every person and subset of one frame. */
static void accumulate(const agcn *g, const float *x, float *graphs, float *emb)
{
    int nv = g->joints, ne = g->inter;
    for (int m = 0; m < g->persons; m++)
        for (int k = 0; k < g->k; k++) {
            embed(g, x, m, k, emb);
            float *s = graphs + ((size_t)m * g->k + k) * nv * nv;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nv, nv, ne, 1.0f, emb, nv,
                        emb + (size_t)ne * nv, nv, 1.0f, s, nv);
        }
}

/* s becomes softmax over v of scale * s[v][w], for each w, plus b. */
static void finish(float *s, const float *b, int nv, float scale)
{
    for (int w = 0; w < nv; w++) {
        float top = -INFINITY, sum = 0.0f;
        for (int v = 0; v < nv; v++)
            top = fmaxf(top, scale * s[v * nv + w]);
        for (int v = 0; v < nv; v++) {
            float e = expf(scale * s[v * nv + w] - top);
            s[v * nv + w] = e;
            sum += e;
        }
        for (int v = 0; v < nv; v++)
            s[v * nv + w] = s[v * nv + w] / sum + b[v * nv + w];
    }
}

/* G_k of every person from `frames` frames x [frames][cin][M * V]. */
static void build_graphs(const agcn *g, const float *x, int frames, float *graphs, float *emb)
{
    size_t nv = g->joints, isz = cin_dims_size(g->base.in), n = g->persons * g->k;
    memset(graphs, 0, sizeof(float) * n * nv * nv);
    for (int t = 0; t < frames; t++)
        accumulate(g, x + t * isz, graphs, emb);
    float scale = 1.0f / ((float)g->inter * (float)frames);
    for (size_t i = 0; i < n; i++)
        finish(graphs + i * nv * nv, g->adj + (i % g->k) * nv * nv, (int)nv, scale);
}

/* y[cout][M * V] from one frame x[cin][M * V] over the graphs. */
static void aggregate(const agcn *g, const float *x, const float *graphs, float *y, float *agg)
{
    int cin = g->base.in.c, cout = g->base.out.c, nv = g->joints, mv = g->base.in.w;
    for (int m = 0; m < g->persons; m++)
        for (int k = 0; k < g->k; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cin, nv, nv, 1.0f,
                        x + m * nv, mv, graphs + ((size_t)m * g->k + k) * nv * nv, nv, 0.0f,
                        agg + (size_t)k * cin * mv + m * nv, mv);
    for (int c = 0; c < cout; c++)
        for (int i = 0; i < mv; i++)
            y[(size_t)c * mv + i] = g->bias[c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, mv, g->k * cin, 1.0f, g->w,
                g->k * cin, agg, mv, 1.0f, y, mv);
}

static void run(const agcn *g, const float *x, int frames, float *y, float *scratch)
{
    size_t isz = cin_dims_size(g->base.in), osz = cin_dims_size(g->base.out);
    float *agg = scratch, *emb = agg + (size_t)g->k * isz;
    float *graphs = emb + 2 * (size_t)g->inter * g->joints;
    build_graphs(g, x, frames, graphs, emb);
    for (int t = 0; t < frames; t++)
        aggregate(g, x + t * isz, graphs, y + t * osz, agg);
}

static int agcn_step(const cin_node *n, void *state, const float *in, float *out,
                     float *scratch)
{
    (void)state;
    run((const agcn *)n, in, 1, out, scratch);
    return 1;
}

static void agcn_forward(const cin_node *n, const float *in, int t_in, float *out,
                         float *scratch)
{
    run((const agcn *)n, in, t_in, out, scratch);
}

static size_t agcn_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    return n->step_scratch;
}

static int64_t agcn_macs_step(const cin_node *n)
{
    const agcn *g = (const agcn *)n;
    int64_t cin = n->in.c, cout = n->out.c, nv = g->joints, ne = g->inter;
    return g->persons * g->k * (2 * ne * cin * nv + ne * nv * nv + cin * nv * nv +
                                cout * cin * nv);
}

static int64_t agcn_macs_clip(const cin_node *n, int t_in)
{
    return agcn_macs_step(n) * t_in;
}

static void agcn_destroy(cin_node *n)
{
    agcn *g = (agcn *)n;
    free(g->adj);
    free(g->w);
    free(g->bias);
    free(g->emb_w);
    free(g->emb_b);
    free(g);
}

static const cin_node_ops agcn_ops = {
    .kind = "agcn",
    .step = agcn_step,
    .forward = agcn_forward,
    .clip_scratch = agcn_clip_scratch,
    .macs_step = agcn_macs_step,
    .macs_clip = agcn_macs_clip,
    .destroy = agcn_destroy,
};

static void pack_embedding(const agcn_params *p, agcn *g)
{
    size_t block = (size_t)p->inter * p->cin;
    for (int k = 0; k < p->k; k++) {
        float *w = g->emb_w + 2 * k * block, *b = g->emb_b + 2 * (size_t)k * p->inter;
        memcpy(w, p->theta_w + k * block, sizeof(float) * block);
        memcpy(w + block, p->phi_w + k * block, sizeof(float) * block);
        for (int i = 0; i < p->inter; i++) {
            b[i] = p->theta_b ? p->theta_b[k * p->inter + i] : 0.0f;
            b[p->inter + i] = p->phi_b ? p->phi_b[k * p->inter + i] : 0.0f;
        }
    }
}

static void pack(const agcn_params *p, agcn *g)
{
    int kc = p->k * p->cin;
    memcpy(g->adj, p->adj, sizeof(float) * p->k * p->joints * p->joints);
    for (int c = 0; c < p->cout; c++) {
        double fold, add;
        bn_fold(&p->bn, c, &fold, &add);
        float scale = (float)fold, shift = (float)add;
        for (int k = 0; k < p->k; k++)
            for (int i = 0; i < p->cin; i++)
                g->w[(size_t)c * kc + k * p->cin + i] =
                    scale * p->weight[((size_t)k * p->cout + c) * p->cin + i];
        g->bias[c] = scale * (p->bias ? p->bias[c] : 0.0f) + shift;
    }
    pack_embedding(p, g);
}

static int check(const agcn_params *p, cin_err *err)
{
    if (p->cin < 1 || p->cout < 1 || p->k < 1 || p->inter < 1 || p->joints < 1 ||
        p->persons < 1)
        return cin_err_set(err, CIN_E_INVAL, "agcn: %d -> %d channels, %d subsets, %d "
                           "embedding channels, %d joints, %d persons: each must be >= 1",
                           p->cin, p->cout, p->k, p->inter, p->joints, p->persons);
    if (!p->weight || !p->adj || !p->theta_w || !p->phi_w)
        return cin_err_set(err, CIN_E_INVAL, "agcn: no weight, graph or embedding weights");
    return 0;
}

static agcn *alloc(const agcn_params *p)
{
    agcn *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->adj = malloc(sizeof(float) * p->k * p->joints * p->joints);
    g->w = malloc(sizeof(float) * p->cout * p->k * p->cin);
    g->bias = malloc(sizeof(float) * p->cout);
    g->emb_w = malloc(sizeof(float) * 2 * p->k * p->inter * p->cin);
    g->emb_b = malloc(sizeof(float) * 2 * p->k * p->inter);
    if (g->adj && g->w && g->bias && g->emb_w && g->emb_b)
        return g;
    agcn_destroy(&g->base);
    return NULL;
}

int agcn_create(const agcn_params *p, cin_node **out, cin_err *err)
{
    *out = NULL;
    int rc = check(p, err);
    if (rc)
        return rc;
    agcn *g = alloc(p);
    if (!g)
        return cin_err_set(err, CIN_E_NOMEM, "agcn: out of memory");
    pack(p, g);
    int mv = p->persons * p->joints;
    g->k = p->k;
    g->inter = p->inter;
    g->joints = p->joints;
    g->persons = p->persons;
    g->base.ops = &agcn_ops;
    g->base.in = (cin_dims){p->cin, 1, mv};
    g->base.out = (cin_dims){p->cout, 1, mv};
    g->base.rf = g->base.stride = 1;
    g->base.step_scratch = agcn_scratch(g);
    g->base.param_bytes = sizeof(float) * ((size_t)p->k * p->joints * p->joints +
                                           (size_t)p->cout * (p->k * p->cin + 1) +
                                           2 * (size_t)p->k * p->inter * (p->cin + 1));
    *out = &g->base;
    return 0;
}
