/* The ST-GCN graph: a batch norm over every input value (data_bn), ten blocks of a spatial
 * graph convolution and a 9-tap temporal convolution with a shortcut (64, 64, 64, 64, 128*,
 * 128, 128, 256*, 256, 256 channels, * stride 2), then the mean over joints and persons, a
 * temporal window mean and the classifier. The two layouts differ inside a block:
 *   st-gcn:               relu(tcn(relu(bn(gcn(x)))) + res(x)), tcn = conv 9x1 + bn
 *   continual-skeletons:  relu(tcn(relu(bn(gcn(x)) + gres(x))) + res(x)), gres a 1x1 conv + bn
 *                         where the channels change
 * Without temporal padding (CoST-GCN*) the shortcut is centre-cropped by 4 frames, as
 * continual-skeletons' residual_shrink does. AGCN (continual-skeletons' a_gcn, a_gcn_mod) is
 * the same network in continual-skeletons' layout with an adaptive graph convolution: the
 * graph is B_k = gcn.A + gcn.graph_attn (a sum, not ST-GCN's product) plus C_k from the
 * embeddings gcn.a_conv.k and gcn.b_conv.k (ops/agcn.h); AGCN* takes a_gcn_mod's form of it,
 * which only scales each joint (rowsum_graph). */
#include "stgcn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "adjacency.h"
#include "affine.h"
#include "agcn.h"
#include "conv3d.h"
#include "gcn.h"
#include "linear.h"
#include "pool.h"

typedef struct block_spec {
    int cout, stride, shortcut;
} block_spec;

static const block_spec blocks[] = {
    {64, 1, 0}, {64, 1, 1}, {64, 1, 1}, {64, 1, 1}, {128, 2, 1},
    {128, 1, 1}, {128, 1, 1}, {256, 2, 1}, {256, 1, 1}, {256, 1, 1},
};

enum { N_BLOCKS = 10, TCN_KERNEL = 9, TCN_HALF = TCN_KERNEL / 2 };

/* How a block's graph convolution finds its graph: ST-GCN's fixed one, 2s-AGCN's adaptive one
 * (AGCN, CoAGCN), or a_gcn_mod's row sums of it (AGCN*, CoAGCN*). */
typedef enum { GRAPH_FIXED, GRAPH_ADAPTIVE, GRAPH_ROWSUM } graph_kind;

/* continual-skeletons' coff_embedding: the embeddings have cout / 4 channels. */
enum { EMBED_DIVISOR = 4 };

static const float bn_eps = 1e-5f;

/* The builder's state; once anything fails, `failed` is set and later steps do nothing. */
typedef struct sk_ctx {
    wsrc *w;
    stgcn_layout layout;
    cin_err *err;
    int failed;
    char prefix[48];        /* the block's name prefix; empty outside blocks */
    int block;
    cin_dims dims;          /* the frame entering the next node */
    int nominal_c;          /* the block input's width in the unpruned network */
    int joints, persons, k;
    int pad, strided;       /* temporal padding of the 9-tap convolutions; 0: stride 1 only */
    graph_kind graph_kind;
    const float *graph;     /* [k][V][V] built from the settings */
} sk_ctx;

const char *stgcn_layout_name(stgcn_layout l)
{
    return l == STGCN_COSKEL ? "continual-skeletons" : "st-gcn";
}

static cin_node *made(sk_ctx *x, int rc, cin_node **n)
{
    if (rc) {
        x->failed = 1;
        return NULL;
    }
    x->dims = (*n)->out;
    return *n;
}

/* Reads tensor `name` with the given shape; NULL on failure. */
static float *get_named(sk_ctx *x, const char *name, int ndim, const int64_t *shape)
{
    if (x->failed)
        return NULL;
    float *v;
    x->failed = wsrc_get(x->w, name, ndim, shape, &v, x->err) != 0;
    return x->failed ? NULL : v;
}

/* Reads <prefix><leaf>. */
static float *get(sk_ctx *x, const char *leaf, int ndim, const int64_t *shape)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s", x->prefix, leaf);
    return get_named(x, name, ndim, shape);
}

static void free_all(float **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
}

/* <norm>.weight, .bias, .running_mean, .running_var of `c` channels into bn[4]. */
static void get_bn(sk_ctx *x, const char *norm, int c, float *bn[4])
{
    static const char *leaf[4] = {"weight", "bias", "running_mean", "running_var"};
    int64_t shape[1] = {c};
    char name[64];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", norm, leaf[i]);
        bn[i] = get(x, name, 1, shape);
    }
}

/* A kt x 1 Conv2d over time (stride st, padding pt) with its batch norm folded in. */
static cin_node *conv(sk_ctx *x, const char *name, const char *norm, int cout, int kt, int st,
                      int pt)
{
    char leaf[64];
    int64_t shape[4] = {cout, x->dims.c, kt, 1}, bshape[1] = {cout};
    snprintf(leaf, sizeof leaf, "%s.weight", name);
    float *w = get(x, leaf, 4, shape), *bn[4];
    snprintf(leaf, sizeof leaf, "%s.bias", name);
    float *b = get(x, leaf, 1, bshape);
    get_bn(x, norm, cout, bn);
    cin_node *n = NULL;
    if (!x->failed) {
        conv3d_params p = {.cin = x->dims.c, .cout = cout, .groups = 1, .kt = kt, .kh = 1,
                           .kw = 1, .st = st, .sh = 1, .sw = 1, .pt = pt, .h = 1,
                           .w = x->dims.w, .weight = w, .bias = b,
                           .bn = {bn[0], bn[1], bn[2], bn[3], bn_eps}};
        n = made(x, conv3d_create(&p, &n, x->err), &n);
    }
    free(w);
    free(b);
    free_all(bn, 4);
    return n;
}

static cin_node *relu(sk_ctx *x)
{
    cin_node *n = NULL;
    return x->failed ? NULL : made(x, act_create(ACT_RELU, x->dims, &n, x->err), &n);
}

static cin_node *crop(sk_ctx *x, int s)
{
    cin_node *n = NULL;
    return x->failed ? NULL : made(x, cin_crop_create(x->dims, s, &n, x->err), &n);
}

/* a[i] *= mask[i] over k * V * V entries. */
static void mask_graph(float *a, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] *= mask[i];
}

static cin_node *graph_conv(sk_ctx *x, gcn_params *p, float **owned, int n_owned)
{
    cin_node *n = NULL;
    if (!x->failed) {
        p->cin = x->dims.c;
        p->k = x->k;
        p->joints = x->joints;
        p->persons = x->persons;
        n = made(x, gcn_create(p, &n, x->err), &n);
    }
    free_all(owned, n_owned);
    return n;
}

/* The checkpoint's own adjacency `name` when it has one (st-gcn's buffer A, continual-skeletons'
 * gcn.A, which is 2s-AGCN's graph rather than ST-GCN's), else the one built from the
 * settings. Owned by the caller. */
static float *adjacency(sk_ctx *x, const char *name)
{
    int k = x->k, nv = x->joints, ndim;
    int64_t shape[3] = {k, nv, nv}, found[8];
    float *a = NULL;
    if (wsrc_shape(x->w, name, &ndim, found, NULL) == 0) {
        a = get_named(x, name, 3, shape);
    } else if (!x->failed) {
        a = malloc(sizeof(float) * k * nv * nv);
        x->failed = !a;
        if (a)
            memcpy(a, x->graph, sizeof(float) * k * nv * nv);
        else
            cin_err_set(x->err, CIN_E_NOMEM, "st-gcn: out of memory");
    }
    return a;
}

/* st-gcn: a 1x1 conv to k * cout channels, aggregated over A_k * edge_importance.N, then the
 * temporal block's leading batch norm and ReLU. */
static cin_node *gcn_original(sk_ctx *x, int cout)
{
    int k = x->k, nv = x->joints;
    int64_t wshape[4] = {(int64_t)k * cout, x->dims.c, 1, 1}, bshape[1] = {(int64_t)k * cout};
    int64_t ashape[3] = {k, nv, nv};
    char name[48];
    snprintf(name, sizeof name, "edge_importance.%d", x->block);
    float *v[7];
    v[0] = get(x, "gcn.conv.weight", 4, wshape);
    v[1] = get(x, "gcn.conv.bias", 1, bshape);
    v[2] = get_named(x, name, 3, ashape);
    get_bn(x, "tcn.0", cout, v + 3);
    float *a = adjacency(x, "A");
    if (!x->failed)
        mask_graph(v[2], a, (size_t)k * nv * nv);
    free(a);
    gcn_params p = {.cout = cout, .weight = v[0], .pre_bias = v[1], .adj = v[2],
                    .bn = {v[3], v[4], v[5], v[6], bn_eps}, .relu = 1};
    return graph_conv(x, &p, v, 7);
}

/* a[i] += b[i] over k * V * V entries. */
static void add_graph(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] += b[i];
}

/* continual-skeletons' graph: gcn.A times the learned gcn.graph_attn (ST-GCN), or plus it
 * (AGCN). */
static float *coskel_graph(sk_ctx *x)
{
    int k = x->k, nv = x->joints;
    int64_t shape[3] = {k, nv, nv};
    char name[64];
    snprintf(name, sizeof name, "%sgcn.A", x->prefix);
    float *a = adjacency(x, name);
    float *mask = get(x, "gcn.graph_attn", 3, shape);
    if (!x->failed && x->graph_kind == GRAPH_FIXED)
        mask_graph(a, mask, (size_t)k * nv * nv);
    else if (!x->failed)
        add_graph(a, mask, (size_t)k * nv * nv);
    free(mask);
    return a;
}

/* Two arrays of n and m floats; sets failed when out of memory. */
static void alloc_pair(sk_ctx *x, size_t n, size_t m, float **a, float **b)
{
    *a = malloc(sizeof(float) * n);
    *b = calloc(m, sizeof(float));
    if (!x->failed && (!*a || !*b))
        x->failed = cin_err_set(x->err, CIN_E_NOMEM, "st-gcn: out of memory") != 0;
}

/* g_conv.0..k-1: the weights stacked [k][cout][cin] into v[0], the biases summed into v[1]. */
static void get_g_conv(sk_ctx *x, int cout, float *v[2])
{
    int k = x->k, cin = x->dims.c;
    int64_t wshape[4] = {cout, cin, 1, 1}, bshape[1] = {cout};
    alloc_pair(x, (size_t)k * cout * cin, (size_t)cout, &v[0], &v[1]);
    for (int i = 0; i < k && !x->failed; i++) {
        char leaf[48];
        snprintf(leaf, sizeof leaf, "gcn.g_conv.%d.weight", i);
        float *w = get(x, leaf, 4, wshape);
        snprintf(leaf, sizeof leaf, "gcn.g_conv.%d.bias", i);
        float *b = get(x, leaf, 1, bshape);
        for (int j = 0; !x->failed && j < cout; j++)
            v[1][j] += b[j];
        if (!x->failed)
            memcpy(v[0] + (size_t)i * cout * cin, w, sizeof(float) * cout * cin);
        free(w);
        free(b);
    }
}

/* <conv>.0..k-1 (1x1 to `inter` channels, with bias) stacked into v[0] [k][inter][cin] and
 * v[1] [k][inter]. */
static void get_embedding(sk_ctx *x, const char *conv, int inter, float *v[2])
{
    int k = x->k, cin = x->dims.c;
    int64_t wshape[4] = {inter, cin, 1, 1}, bshape[1] = {inter};
    alloc_pair(x, (size_t)k * inter * cin, (size_t)k * inter, &v[0], &v[1]);
    for (int i = 0; i < k && !x->failed; i++) {
        char leaf[48];
        snprintf(leaf, sizeof leaf, "gcn.%s.%d.weight", conv, i);
        float *w = get(x, leaf, 4, wshape);
        snprintf(leaf, sizeof leaf, "gcn.%s.%d.bias", conv, i);
        float *b = get(x, leaf, 1, bshape);
        if (!x->failed) {
            memcpy(v[0] + (size_t)i * inter * cin, w, sizeof(float) * inter * cin);
            memcpy(v[1] + (size_t)i * inter, b, sizeof(float) * inter);
        }
        free(w);
        free(b);
    }
}

/* a_gcn_mod.py's aggregation, einsum("nctv,nvwt->nctv", x, C + B), sums C + B over the target
 * joint w: joint v is scaled by sum_w (C + B)[v][w] = 1 + sum_w B[v][w], since its softmax is
 * over w too. b [k][V][V] becomes that diagonal, and the embeddings have no effect. */
static void rowsum_graph(float *b, int k, int nv)
{
    for (int i = 0; i < k * nv; i++) {
        float *row = b + (size_t)i * nv, sum = 1.0f;
        for (int w = 0; w < nv; w++)
            sum += row[w];
        memset(row, 0, sizeof(float) * nv);
        row[i % nv] = sum;
    }
}

static cin_node *adaptive_conv(sk_ctx *x, int cout, float **v, int n_owned)
{
    cin_node *n = NULL;
    if (!x->failed) {
        agcn_params p = {.cin = x->dims.c, .cout = cout, .k = x->k,
                         .inter = cout / EMBED_DIVISOR, .joints = x->joints,
                         .persons = x->persons, .weight = v[0], .bias = v[1], .adj = v[2],
                         .bn = {v[3], v[4], v[5], v[6], bn_eps}, .theta_w = v[7],
                         .theta_b = v[8], .phi_w = v[9], .phi_b = v[10]};
        n = made(x, agcn_create(&p, &n, x->err), &n);
    }
    free_all(v, n_owned);
    return n;
}

/* continual-skeletons: g_conv.0..2 (1x1, with bias) after the aggregation, then gcn.bn; for
 * AGCN the embeddings gcn.a_conv.0..2 and gcn.b_conv.0..2 too. */
static cin_node *gcn_coskel(sk_ctx *x, int cout)
{
    float *v[11] = {0};
    get_g_conv(x, cout, v);
    v[2] = coskel_graph(x);
    get_bn(x, "gcn.bn", cout, v + 3);
    if (x->graph_kind != GRAPH_FIXED) {
        get_embedding(x, "a_conv", cout / EMBED_DIVISOR, v + 7);
        get_embedding(x, "b_conv", cout / EMBED_DIVISOR, v + 9);
    }
    if (x->graph_kind == GRAPH_ADAPTIVE)
        return adaptive_conv(x, cout, v, 11);
    if (x->graph_kind == GRAPH_ROWSUM && !x->failed)
        rowsum_graph(v[2], x->k, x->joints);
    gcn_params p = {.cout = cout, .weight = v[0], .post_bias = v[1], .adj = v[2],
                    .bn = {v[3], v[4], v[5], v[6], bn_eps}};
    return graph_conv(x, &p, v, 11);
}

static cin_node *seq_of(sk_ctx *x, cin_node_list *l)
{
    cin_node *n = NULL;
    return made(x, cin_node_list_seq(l, &n, x->err), &n);
}

/* relu(main + shortcut), a NULL shortcut being the identity. Takes both. */
static cin_node *sum_relu(sk_ctx *x, cin_node *main, cin_node *shortcut)
{
    cin_node *b[2] = {main, shortcut}, *sum = NULL;
    if (x->failed) {
        cin_node_free(main);
        cin_node_free(shortcut);
        return NULL;
    }
    cin_node_list l = {0};
    cin_node_list_push(&l, made(x, cin_parallel_create(b, 2, CIN_REDUCE_SUM, &sum, x->err),
                                &sum));
    cin_node_list_push(&l, relu(x));
    return seq_of(x, &l);
}

static int block_stride(const sk_ctx *x, const block_spec *b)
{
    return x->strided ? b->stride : 1;
}

/* A block's widths: the nominal ones, or those of a derived checkpoint. Which residuals are
 * convolutions follows the unpruned network, whatever widths pruning left. */
typedef struct widths {
    int inner, out;         /* the graph convolution's output, the block's output */
    int conv_res, gcn_res;  /* a 1x1 conv shortcut; continual-skeletons' conv gcn_residual */
} widths;

/* The block's shortcut on its input frame `in`: the identity (NULL) or a strided 1x1 conv,
 * centre-cropped when the temporal convolution is not padded to keep the clip's length. */
static cin_node *shortcut(sk_ctx *x, const block_spec *b, const widths *wd, cin_dims in)
{
    int orig = x->layout == STGCN_ORIGINAL, stride = block_stride(x, b);
    x->dims = in;
    cin_node *c = NULL;
    if (wd->conv_res)
        c = conv(x, orig ? "residual.0" : "residual.t_conv", orig ? "residual.1" : "residual.bn",
                 wd->out, 1, stride, 0);
    if (x->pad == TCN_HALF || x->failed)
        return c;
    cin_node_list l = {0};
    if (c)
        cin_node_list_push(&l, c);
    cin_node_list_push(&l, crop(x, TCN_HALF - x->pad));
    return seq_of(x, &l);
}

/* continual-skeletons' graph convolution unit: relu(bn(gcn(x)) + gres(x)). */
static cin_node *gcn_unit_coskel(sk_ctx *x, const widths *wd)
{
    cin_dims in = x->dims;
    cin_node *g = gcn_coskel(x, wd->inner), *gres = NULL;
    x->dims = in;
    if (wd->gcn_res)
        gres = conv(x, "gcn.gcn_residual.0", "gcn.gcn_residual.1", wd->inner, 1, 1, 0);
    return sum_relu(x, g, gres);
}

/* The graph convolution and the temporal convolution. */
static cin_node *main_branch(sk_ctx *x, const block_spec *b, const widths *wd)
{
    int orig = x->layout == STGCN_ORIGINAL;
    cin_node_list l = {0};
    cin_node_list_push(&l, orig ? gcn_original(x, wd->inner) : gcn_unit_coskel(x, wd));
    cin_node_list_push(&l, conv(x, orig ? "tcn.2" : "tcn.t_conv", orig ? "tcn.3" : "tcn.bn",
                                wd->out, TCN_KERNEL, block_stride(x, b), x->pad));
    return seq_of(x, &l);
}

/* Output channels `per` times a width of 1 to nominal (want > 0: exactly want, as a tie
 * with the block's input demands) of tensor <prefix><leaf>; 0 after a failure. */
static int derived_width(sk_ctx *x, const char *leaf, int per, int nominal, int want)
{
    char name[128];
    int ndim;
    int64_t shape[8];
    snprintf(name, sizeof name, "%s%s", x->prefix, leaf);
    if (x->failed || wsrc_shape(x->w, name, &ndim, shape, x->err) != 0) {
        x->failed = 1;
        return 0;
    }
    int64_t c = ndim >= 2 && shape[0] % per == 0 ? shape[0] / per : 0;
    if (c >= 1 && c <= nominal && (!want || c == want))
        return (int)c;
    x->failed = 1;
    if (want)
        cin_err_set(x->err, CIN_E_SHAPE, "%s: tensor '%s': %lld output channels, expected "
                    "%d x %d (the block's input width, tied by an identity residual)",
                    wsrc_name(x->w), name, ndim ? (long long)shape[0] : 0LL, per, want);
    else
        cin_err_set(x->err, CIN_E_SHAPE, "%s: tensor '%s': %lld output channels in %d "
                    "dimensions, expected %d x (1 to %d) (a derived width)", wsrc_name(x->w),
                    name, ndim ? (long long)shape[0] : 0LL, ndim, per, nominal);
    return 0;
}

/* The block's widths; a checkpoint written by cin-derive (metadata cin.derive = "stgcn") has
 * its own, and every other tensor is still read with the shape they imply. */
static widths block_widths(sk_ctx *x, const block_spec *b)
{
    int orig = x->layout == STGCN_ORIGINAL, in = x->dims.c;
    widths wd = {b->cout, b->cout, x->nominal_c != b->cout || block_stride(x, b) != 1,
                 !orig && x->nominal_c != b->cout};
    wd.conv_res &= b->shortcut;
    const char *how = wsrc_meta(x->w, "cin.derive");
    if (!how || strcmp(how, "stgcn") != 0)
        return wd;
    wd.inner = derived_width(x, orig ? "gcn.conv.weight" : "gcn.g_conv.0.weight",
                             orig ? x->k : 1, b->cout, orig || wd.gcn_res ? 0 : in);
    wd.out = derived_width(x, orig ? "tcn.2.weight" : "tcn.t_conv.weight", 1, b->cout,
                           !b->shortcut || wd.conv_res ? 0 : in);
    return wd;
}

static cin_node *block(sk_ctx *x, int i)
{
    const block_spec *b = &blocks[i];
    snprintf(x->prefix, sizeof x->prefix,
             x->layout == STGCN_ORIGINAL ? "st_gcn_networks.%d." : "layers.layer%d.",
             x->layout == STGCN_ORIGINAL ? i : i + 1);
    x->block = i;
    cin_dims in = x->dims;
    widths wd = block_widths(x, b);
    x->nominal_c = b->cout;
    cin_node *main = main_branch(x, b, &wd);
    if (!b->shortcut) {
        cin_node_list l = {0};
        cin_node_list_push(&l, main);
        cin_node_list_push(&l, relu(x));
        return seq_of(x, &l);
    }
    cin_dims out = x->dims;
    cin_node *sc = shortcut(x, b, &wd, in);
    x->dims = out;
    return sum_relu(x, main, sc);
}

/* data_bn normalises value c of joint v of person m, at [c][m * V + v] in a frame, as its
 * channel v * C + c (st-gcn: persons share it) or m * V * C + v * C + c (continual-skeletons:
 * each person has its own). */
static cin_node *data_bn(sk_ctx *x)
{
    int nc = x->dims.c, nv = x->joints, np = x->persons, shared = x->layout == STGCN_ORIGINAL;
    size_t n = (size_t)nc * nv * np;
    float *bn[4], *scale = malloc(sizeof(float) * n), *shift = malloc(sizeof(float) * n);
    get_bn(x, "data_bn", (int)(shared ? n / np : n), bn);
    bn_params norm = {bn[0], bn[1], bn[2], bn[3], bn_eps};
    cin_node *node = NULL;
    if (!x->failed && (!scale || !shift))
        x->failed = cin_err_set(x->err, CIN_E_NOMEM, "st-gcn: out of memory") != 0;
    for (int m = 0; !x->failed && m < np; m++)
        for (int v = 0; v < nv; v++)
            for (int c = 0; c < nc; c++) {
                size_t ch = ((size_t)(shared ? 0 : m) * nv + v) * nc + c;
                size_t at = (size_t)c * nv * np + m * nv + v;
                double fold, add;
                bn_fold(&norm, (int)ch, &fold, &add);
                scale[at] = (float)fold;
                shift[at] = (float)add;
            }
    if (!x->failed)
        node = made(x, affine_create(x->dims, scale, shift, &node, x->err), &node);
    free(scale);
    free(shift);
    free_all(bn, 4);
    return node;
}

static cin_node *classifier(sk_ctx *x, int classes)
{
    int orig = x->layout == STGCN_ORIGINAL;
    int64_t wshape[4] = {classes, x->dims.c, 1, 1}, bshape[1] = {classes};
    x->prefix[0] = '\0';
    float *w = get(x, orig ? "fcn.weight" : "fc.weight", orig ? 4 : 2, wshape);
    float *b = get(x, orig ? "fcn.bias" : "fc.bias", 1, bshape);
    cin_node *n = NULL;
    if (!x->failed)
        n = made(x, linear_create(x->dims.c, classes, w, b, &n, x->err), &n);
    free(w);
    free(b);
    return n;
}

static cin_node *backbone(sk_ctx *x)
{
    cin_node_list l = {0};
    cin_node_list_push(&l, data_bn(x));
    for (int i = 0; i < N_BLOCKS; i++)
        cin_node_list_push(&l, block(x, i));
    cin_node *pool = NULL;
    if (!x->failed)
        pool = made(x, pool_spatial_create(x->dims, &pool, x->err), &pool);
    cin_node_list_push(&l, pool);
    return seq_of(x, &l);
}

/* continual-skeletons' head pooling: a window of all the backbone's output positions over a
 * clip, padded by those that the clip's last frame cannot complete, so that a prediction
 * comes when a clip's worth of frames has been seen (CoModelBase.pool_size, pool_padding).
 * A clip shorter than the backbone's delay completes none; the first step output then comes
 * with the first position, as if one were complete. */
static int head_window(const cin_node *bb, int clip_frames, int *window, int *pad,
                       cin_err *err)
{
    int positions = cin_node_clip_frames(bb, clip_frames);
    int reach = clip_frames - bb->rf + bb->pad;
    if (positions < 1)
        return cin_err_set(err, CIN_E_CONFIG, "skeleton.clip_frames: %d is shorter than the "
                           "network's receptive field of %d frames (%d padded); expected at "
                           "least %d", clip_frames, bb->rf, bb->pad, bb->rf - 2 * bb->pad);
    int complete = reach < 0 ? 1 : reach / bb->stride + 1;
    *window = positions;
    *pad = positions > complete ? positions - complete : 0;
    return 0;
}

static cin_node *head(sk_ctx *x, cin_node *bb, int clip_frames, int classes)
{
    int window = 1, pad = 0;
    cin_node_list l = {0};
    cin_node_list_push(&l, bb);
    if (!x->failed && head_window(bb, clip_frames, &window, &pad, x->err))
        x->failed = 1;
    cin_node *n = NULL;
    if (!x->failed)
        n = made(x, pool_temporal_create(x->dims, window, pad, &n, x->err), &n);
    cin_node_list_push(&l, n);
    cin_node_list_push(&l, classifier(x, classes));
    n = NULL;
    if (!x->failed)
        n = made(x, pool_clip_mean_create(x->dims, &n, x->err), &n);
    cin_node_list_push(&l, n);
    return seq_of(x, &l);
}

int stgcn_detect_layout(const wsrc *w, stgcn_layout *out, cin_err *err)
{
    if (wsrc_has(w, "st_gcn_networks.0.gcn.conv.weight")) {
        *out = STGCN_ORIGINAL;
        return 0;
    }
    if (wsrc_has(w, "layers.layer1.gcn.g_conv.0.weight")) {
        *out = STGCN_COSKEL;
        return 0;
    }
    return cin_err_set(err, CIN_E_NOTFOUND, "%s: not an ST-GCN checkpoint: found neither "
                       "'st_gcn_networks.0.gcn.conv.weight' (st-gcn) nor "
                       "'layers.layer1.gcn.g_conv.0.weight' (continual-skeletons)",
                       wsrc_name(w));
}

static int stgcn_tensor(const char *name)
{
    static const char *prefix[] = {"data_bn.", "st_gcn_networks.", "edge_importance.", "fcn.",
                                   "layers.", "fc."};
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (strncmp(name, prefix[i], strlen(prefix[i])) == 0)
            return 1;
    return strcmp(name, "A") == 0;
}

/* Classes: the option, else the checkpoint's classifier rows, else NTU RGB+D 60's. */
static int class_count(int option, const wsrc *w, stgcn_layout layout)
{
    int ndim;
    int64_t shape[8];
    const char *name = layout == STGCN_ORIGINAL ? "fcn.weight" : "fc.weight";
    if (option > 0)
        return option;
    if (wsrc_shape(w, name, &ndim, shape, NULL) == 0 && shape[0] > 0 && shape[0] < (1 << 24))
        return (int)shape[0];
    return 60;
}

/* The variants: name, padded and strided (else no padding, stride 1), graph. */
static const struct {
    const char *name;
    int strided;
    graph_kind graph;
} variants[] = {
    {"st-gcn", 1, GRAPH_FIXED},
    {"st-gcn*", 0, GRAPH_FIXED},
    {"agcn", 1, GRAPH_ADAPTIVE},
    {"agcn*", 0, GRAPH_ROWSUM},
};

static int variant_index(const char *name)
{
    for (int i = 0; i < (int)(sizeof variants / sizeof variants[0]); i++)
        if (name && strcmp(name, variants[i].name) == 0)
            return i;
    return -1;
}

stgcn_layout stgcn_default_layout(const cin_skeleton_opts *o)
{
    int i = variant_index(o ? o->variant : NULL);
    return i >= 0 && variants[i].graph != GRAPH_FIXED ? STGCN_COSKEL : STGCN_ORIGINAL;
}

/* The settings with their defaults filled in. */
typedef struct sk_settings {
    const char *variant, *graph, *strategy;
    int channels, persons, clip_frames;
} sk_settings;

static int settings(const cin_skeleton_opts *o, sk_settings *s, cin_err *err)
{
    static const cin_skeleton_opts none = {0};
    o = o ? o : &none;
    *s = (sk_settings){o->variant ? o->variant : "st-gcn", o->graph ? o->graph : "ntu-rgb+d",
                       o->strategy ? o->strategy : "spatial", o->channels ? o->channels : 3,
                       o->persons ? o->persons : 2, o->clip_frames ? o->clip_frames : 300};
    if (variant_index(s->variant) < 0)
        return cin_err_set(err, CIN_E_CONFIG, "st-gcn: variant '%s', expected st-gcn, "
                           "st-gcn*, agcn or agcn*", s->variant);
    if (s->channels < 1 || s->channels > 16 || s->persons < 1 || s->persons > 16)
        return cin_err_set(err, CIN_E_CONFIG, "st-gcn: %d channels and %d persons, expected "
                           "1 to 16 of each", s->channels, s->persons);
    if (s->clip_frames < 1 || s->clip_frames > 1000000)
        return cin_err_set(err, CIN_E_CONFIG, "st-gcn: clip_frames %d, expected 1 to 1000000",
                           s->clip_frames);
    return 0;
}

static int make_graph(const sk_settings *s, stgcn_layout layout, sk_ctx *x, float **a,
                      cin_err *err)
{
    adj_strategy strategy;
    int rc = adj_parse_strategy(s->strategy, &strategy, err);
    if (rc)
        return rc;
    x->joints = adj_joints(s->graph);
    x->k = adj_partitions(strategy);
    if (layout == STGCN_COSKEL && x->k != 3)
        return cin_err_set(err, CIN_E_CONFIG, "st-gcn: continual-skeletons checkpoints use "
                           "the spatial strategy (3 partitions), not '%s'", s->strategy);
    if (layout == STGCN_ORIGINAL && x->graph_kind != GRAPH_FIXED)
        return cin_err_set(err, CIN_E_CONFIG, "st-gcn: variant '%s' takes checkpoints in "
                           "continual-skeletons' layout (layers.layerN.gcn.a_conv...), not "
                           "st-gcn's", s->variant);
    *a = malloc(sizeof(float) * 3 * 31 * 31);
    if (!*a)
        return cin_err_set(err, CIN_E_NOMEM, "st-gcn: out of memory");
    return adj_build(s->graph, strategy, *a, err);
}

static int check_all_used(const wsrc *w, cin_node **root, cin_err *err)
{
    int n;
    const char *name = wsrc_unused(w, stgcn_tensor, &n);
    if (!name)
        return 0;
    cin_node_free(*root);
    *root = NULL;
    return cin_err_set(err, CIN_E_SHAPE, "%s: tensor '%s' and %d more are not part of "
                       "st-gcn: is the checkpoint for another model?", wsrc_name(w), name,
                       n - 1);
}

int stgcn_build(const cin_skeleton_opts *o, int num_classes, wsrc *w, stgcn_layout layout,
                cin_node **root, stgcn_shape *shape, cin_err *err)
{
    *root = NULL;
    sk_settings s;
    float *graph = NULL;
    sk_ctx x = {.w = w, .layout = layout, .err = err};
    int rc = settings(o, &s, err);
    int v = variant_index(s.variant);
    x.graph_kind = rc ? GRAPH_FIXED : variants[v].graph;
    rc = rc ? rc : make_graph(&s, layout, &x, &graph, err);
    if (rc) {
        free(graph);
        return rc;
    }
    cin_err_clear(err);
    x.graph = graph;
    x.persons = s.persons;
    x.dims = (cin_dims){s.channels, 1, s.persons * x.joints};
    x.nominal_c = s.channels;
    x.strided = variants[v].strided;
    x.pad = x.strided ? TCN_HALF : 0;
    *root = head(&x, backbone(&x), s.clip_frames, class_count(num_classes, w, layout));
    free(graph);
    *shape = (stgcn_shape){s.clip_frames, x.joints, s.persons};
    if (!*root)
        return err && err->code ? err->code : CIN_E_NOMEM;
    return check_all_used(w, root, err);
}
