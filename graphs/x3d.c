/* The X3D graph: a stem (spatial 1x3x3 convolution, depthwise 5x1x1 temporal convolution),
 * four stages of bottleneck blocks (1x1x1, depthwise 3x3x3 with squeeze-excitation on every
 * other block and Swish, 1x1x1, plus the shortcut), and the head (1x1x1, pooling, 1x1x1,
 * linear). Batch norms are folded into the convolutions before them. Sizes follow
 * pytorchvideo's create_x3d: width factor 2, bottleneck factor 2.25, depths [1, 2, 5, 3] times
 * the depth factor, rounded up. */
#include "x3d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "conv3d.h"
#include "linear.h"
#include "pool.h"
#include "se.h"

typedef struct x3d_size {
    const char *name;
    int clip_frames, crop;
    double depth_factor;
} x3d_size;

static const x3d_size sizes[] = {
    {"xs", 4, 160, 2.2},
    {"s", 13, 160, 2.2},
    {"m", 16, 224, 2.2},
    {"l", 16, 312, 5.0},
};

/* A tensor's base name in each layout. */
typedef struct tname {
    const char *pv, *sf;
} tname;

typedef struct x3d_ctx {
    const wsrc *w;
    x3d_layout layout;
    x3d_visit_fn visit;
    void *visit_user;
    cin_err *err;
    char prefix[2][64];     /* block prefix per layout; empty outside blocks */
    cin_dims dims;          /* the frame entering the next node */
} x3d_ctx;

static const double bn_eps = 1e-5;

/* pytorchvideo's round_width: scale, round to a multiple of 8, never below 90 %. */
static int round_width(int width, double mult)
{
    double w = width * mult;
    int out = (int)(w + 4) / 8 * 8;
    out = out < 8 ? 8 : out;
    return out < 0.9 * w ? out + 8 : out;
}

static void full_name(const x3d_ctx *x, tname n, const char *leaf, char *buf, size_t len)
{
    int sf = x->layout == X3D_SLOWFAST;
    snprintf(buf, len, "%s%s.%s", x->prefix[sf], sf ? n.sf : n.pv, leaf);
}

/* Reads tensor n.leaf with the given shape; NULL on failure (x->err says why). */
static float *get(x3d_ctx *x, tname n, const char *leaf, int ndim, const int64_t *shape)
{
    char name[192];
    full_name(x, n, leaf, name, sizeof name);
    if (x->visit)
        x->visit(x->visit_user, name, ndim, shape);
    float *v;
    return wsrc_get(x->w, name, ndim, shape, &v, x->err) ? NULL : v;
}

typedef struct bn_tensors {
    float *v[4];  /* weight, bias, running_mean, running_var */
} bn_tensors;

static int get_bn(x3d_ctx *x, tname n, int c, bn_tensors *bn)
{
    static const char *leaf[4] = {"weight", "bias", "running_mean", "running_var"};
    int64_t shape[1] = {c};
    int ok = 1;
    for (int i = 0; i < 4; i++)
        bn->v[i] = ok ? get(x, n, leaf[i], 1, shape) : NULL;
    for (int i = 0; i < 4; i++)
        ok &= bn->v[i] != NULL;
    return ok ? 0 : -1;
}

static void free_bn(bn_tensors *bn)
{
    for (int i = 0; i < 4; i++)
        free(bn->v[i]);
}

/* A convolution and its batch norm, folded; advances x->dims. */
static cin_node *conv_bn(x3d_ctx *x, tname conv, tname norm, conv3d_params p)
{
    p.cin = x->dims.c;
    p.h = x->dims.h;
    p.w = x->dims.w;
    int64_t shape[5] = {p.cout, p.cin / p.groups, p.kt, p.kh, p.kw};
    float *weight = get(x, conv, "weight", 5, shape);
    bn_tensors bn = {{NULL}};
    cin_node *node = NULL;
    if (weight && get_bn(x, norm, p.cout, &bn) == 0) {
        p.weight = weight;
        p.bn_gamma = bn.v[0];
        p.bn_beta = bn.v[1];
        p.bn_mean = bn.v[2];
        p.bn_var = bn.v[3];
        p.bn_eps = (float)bn_eps;
        if (conv3d_create(&p, &node, x->err) == 0)
            x->dims = node->out;
    }
    free(weight);
    free_bn(&bn);
    return node;
}

static cin_node *act(x3d_ctx *x, act_kind kind)
{
    cin_node *n;
    return act_create(kind, x->dims, &n, x->err) ? NULL : n;
}

static conv3d_params kernel(int cout, int groups, int kt, int ks, int stride)
{
    return (conv3d_params){.cout = cout, .groups = groups, .kt = kt, .kh = ks, .kw = ks,
                           .st = 1, .sh = stride, .sw = stride, .pt = kt / 2, .ph = ks / 2,
                           .pw = ks / 2};
}

static cin_node *stem(x3d_ctx *x, int width)
{
    cin_node_list l = {0};
    static const tname spatial = {"blocks.0.conv.conv_t", "s1.pathway0_stem.conv_xy"};
    static const tname temporal = {"blocks.0.conv.conv_xy", "s1.pathway0_stem.conv"};
    static const tname norm = {"blocks.0.norm", "s1.pathway0_stem.bn"};
    cin_node *n = NULL;

    conv3d_params p = kernel(width, 1, 1, 3, 2);
    int64_t shape[5] = {width, x->dims.c, 1, 3, 3};
    float *weight = get(x, spatial, "weight", 5, shape);
    if (weight) {
        p.cin = x->dims.c;
        p.h = x->dims.h;
        p.w = x->dims.w;
        p.weight = weight;
        if (conv3d_create(&p, &n, x->err) == 0)
            x->dims = n->out;
        free(weight);
    }
    cin_node_list_push(&l, n);
    if (!l.failed)
        cin_node_list_push(&l, conv_bn(x, temporal, norm, kernel(width, width, 5, 1, 1)));
    if (!l.failed)
        cin_node_list_push(&l, act(x, ACT_RELU));
    return cin_node_list_seq(&l, &n, x->err) ? NULL : n;
}

static cin_node *squeeze_excite(x3d_ctx *x, int window)
{
    static const tname fc1 = {"branch2.norm_b.1.block.0", "branch2.se.fc1"};
    static const tname fc2 = {"branch2.norm_b.1.block.2", "branch2.se.fc2"};
    int c = x->dims.c, r = round_width(c, 0.0625);
    int64_t s1[5] = {r, c, 1, 1, 1}, s2[5] = {c, r, 1, 1, 1}, b1[1] = {r}, b2[1] = {c};
    se_params p = {.dims = x->dims, .reduced = r, .window = window};
    p.fc1_w = get(x, fc1, "weight", 5, s1);
    p.fc1_b = p.fc1_w ? get(x, fc1, "bias", 1, b1) : NULL;
    p.fc2_w = p.fc1_b ? get(x, fc2, "weight", 5, s2) : NULL;
    p.fc2_b = p.fc2_w ? get(x, fc2, "bias", 1, b2) : NULL;
    cin_node *n = NULL;
    if (p.fc2_b)
        se_create(&p, &n, x->err);
    free((float *)p.fc1_w);
    free((float *)p.fc1_b);
    free((float *)p.fc2_w);
    free((float *)p.fc2_b);
    return n;
}

typedef struct block_spec {
    int inner, out, stride, se, se_window;
} block_spec;

static cin_node *bottleneck(x3d_ctx *x, const block_spec *b)
{
    static const tname a = {"branch2.conv_a", "branch2.a"};
    static const tname a_bn = {"branch2.norm_a", "branch2.a_bn"};
    static const tname conv_b = {"branch2.conv_b", "branch2.b"};
    /* pytorchvideo's norm_b is Sequential(norm, squeeze-excitation or Identity) */
    static const tname b_bn = {"branch2.norm_b.0", "branch2.b_bn"};
    static const tname c = {"branch2.conv_c", "branch2.c"};
    static const tname c_bn = {"branch2.norm_c", "branch2.c_bn"};
    cin_node_list l = {0};
    cin_node *n;
    cin_node_list_push(&l, conv_bn(x, a, a_bn, kernel(b->inner, 1, 1, 1, 1)));
    if (!l.failed)
        cin_node_list_push(&l, act(x, ACT_RELU));
    if (!l.failed)
        cin_node_list_push(&l, conv_bn(x, conv_b, b_bn,
                                       kernel(b->inner, b->inner, 3, 3, b->stride)));
    if (!l.failed && b->se)
        cin_node_list_push(&l, squeeze_excite(x, b->se_window));
    if (!l.failed)
        cin_node_list_push(&l, act(x, ACT_SWISH));
    if (!l.failed)
        cin_node_list_push(&l, conv_bn(x, c, c_bn, kernel(b->out, 1, 1, 1, 1)));
    return cin_node_list_seq(&l, &n, x->err) ? NULL : n;
}

/* The shortcut's strided 1x1x1 convolution. SlowFast always normalises it; pytorchvideo only
 * when it also changes the width, so its first block (24 -> 24 channels) has no branch1_norm. */
static cin_node *shortcut(x3d_ctx *x, const block_spec *b)
{
    static const tname b1 = {"branch1_conv", "branch1"};
    static const tname b1_bn = {"branch1_norm", "branch1_bn"};
    if (x->layout == X3D_SLOWFAST || x->dims.c != b->out)
        return conv_bn(x, b1, b1_bn, kernel(b->out, 1, 1, 1, b->stride));
    conv3d_params p = kernel(b->out, 1, 1, 1, b->stride);
    p.cin = x->dims.c;
    p.h = x->dims.h;
    p.w = x->dims.w;
    int64_t shape[5] = {b->out, p.cin, 1, 1, 1};
    float *weight = get(x, b1, "weight", 5, shape);
    cin_node *n = NULL;
    p.weight = weight;
    if (weight)
        conv3d_create(&p, &n, x->err);
    free(weight);
    return n;
}

/* Residual block: relu(branch2(x) + shortcut(x)); the graph aligns the identity's delay. */
static cin_node *res_block(x3d_ctx *x, const block_spec *b)
{
    cin_dims in = x->dims;
    cin_node *branches[2] = {NULL, NULL};
    if (in.c != b->out || b->stride != 1) {
        branches[0] = shortcut(x, b);
        if (!branches[0])
            return NULL;
        x->dims = in; /* the bottleneck starts from the block's input too */
    }
    branches[1] = bottleneck(x, b);
    if (!branches[1]) {
        cin_node_free(branches[0]);
        return NULL;
    }
    cin_node_list l = {0};
    cin_node *n;
    if (cin_parallel_create(branches, 2, CIN_REDUCE_SUM, &n, x->err) == 0)
        cin_node_list_push(&l, n);
    else
        l.failed = 1;
    if (!l.failed)
        cin_node_list_push(&l, act(x, ACT_RELU));
    return cin_node_list_seq(&l, &n, x->err) ? NULL : n;
}

static void set_block_prefix(x3d_ctx *x, int stage, int block)
{
    snprintf(x->prefix[X3D_PYTORCHVIDEO], sizeof x->prefix[0], "blocks.%d.res_blocks.%d.",
             stage, block);
    snprintf(x->prefix[X3D_SLOWFAST], sizeof x->prefix[0], "s%d.pathway0_res%d.", stage + 1,
             block);
}

static void stages(x3d_ctx *x, double depth_factor, int se_window, cin_node_list *l)
{
    static const int base_depth[4] = {1, 2, 5, 3};
    for (int s = 0; s < 4 && !l->failed; s++) {
        int out = round_width(24, s == 0 ? 1.0 : (double)(1 << s));
        int depth = (int)ceil(depth_factor * base_depth[s]);
        for (int i = 0; i < depth && !l->failed; i++) {
            block_spec b = {.inner = (int)(2.25 * out), .out = out, .stride = i ? 1 : 2,
                            .se = (i + 1) % 2, .se_window = se_window};
            set_block_prefix(x, s + 1, i);
            cin_node_list_push(l, res_block(x, &b));
        }
    }
    x->prefix[0][0] = x->prefix[1][0] = '\0';
}

static cin_node *projection(x3d_ctx *x, int classes)
{
    static const tname proj = {"blocks.5.proj", "head.projection"};
    int64_t ws[2] = {classes, x->dims.c}, bs[1] = {classes};
    float *w = get(x, proj, "weight", 2, ws);
    float *b = w ? get(x, proj, "bias", 1, bs) : NULL;
    cin_node *n = NULL;
    if (b && linear_create(x->dims.c, classes, w, b, &n, x->err) == 0)
        x->dims = n->out;
    free(w);
    free(b);
    return n;
}

/* Head: 1x1x1 conv + BN + ReLU, average over the frame and a window of `window` frames,
 * 1x1x1 conv (2048, no norm) + ReLU, linear to classes; a clip's positions are averaged. */
static void head(x3d_ctx *x, int window, int classes, cin_node_list *l)
{
    static const tname pre = {"blocks.5.pool.pre_conv", "head.conv_5"};
    static const tname pre_bn = {"blocks.5.pool.pre_norm", "head.conv_5_bn"};
    static const tname post = {"blocks.5.pool.post_conv", "head.lin_5"};
    cin_node *n = NULL;
    cin_node_list_push(l, conv_bn(x, pre, pre_bn, kernel((int)(2.25 * x->dims.c), 1, 1, 1, 1)));
    if (!l->failed)
        cin_node_list_push(l, act(x, ACT_RELU));
    if (!l->failed && pool_spatial_create(x->dims, &n, x->err) == 0)
        x->dims = n->out;
    cin_node_list_push(l, l->failed ? NULL : n);
    n = NULL;
    if (!l->failed)
        pool_temporal_create(x->dims, window, &n, x->err);
    cin_node_list_push(l, l->failed ? NULL : n);

    if (!l->failed) {
        conv3d_params p = kernel(2048, 1, 1, 1, 1);
        p.cin = x->dims.c;
        p.h = p.w = 1;
        int64_t shape[5] = {2048, x->dims.c, 1, 1, 1};
        float *w = get(x, post, "weight", 5, shape);
        p.weight = w;
        n = NULL;
        if (w && conv3d_create(&p, &n, x->err) == 0)
            x->dims = n->out;
        free(w);
        cin_node_list_push(l, n);
    }
    if (!l->failed)
        cin_node_list_push(l, act(x, ACT_RELU));
    if (!l->failed)
        cin_node_list_push(l, projection(x, classes));
    n = NULL;
    if (!l->failed)
        pool_clip_mean_create(x->dims, &n, x->err);
    cin_node_list_push(l, l->failed ? NULL : n);
}

int x3d_detect_layout(const wsrc *w, x3d_layout *out, cin_err *err)
{
    if (wsrc_has(w, "blocks.0.conv.conv_t.weight")) {
        *out = X3D_PYTORCHVIDEO;
        return 0;
    }
    if (wsrc_has(w, "s1.pathway0_stem.conv_xy.weight")) {
        *out = X3D_SLOWFAST;
        return 0;
    }
    return cin_err_set(err, CIN_E_NOTFOUND,
                       "%s: not an X3D checkpoint: found neither 'blocks.0.conv.conv_t.weight' "
                       "(pytorchvideo) nor 's1.pathway0_stem.conv_xy.weight' (SlowFast/co3d)",
                       wsrc_name(w));
}

static const x3d_size *find_size(const char *name)
{
    for (size_t i = 0; name && i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(sizes[i].name, name) == 0)
            return &sizes[i];
    return NULL;
}

/* Classes: the option, else the checkpoint's projection rows, else Kinetics-400's. */
static int class_count(const x3d_opts *o, const wsrc *w, x3d_layout layout)
{
    if (o->num_classes > 0)
        return o->num_classes;
    int ndim;
    int64_t shape[8];
    const char *name = layout == X3D_SLOWFAST ? "head.projection.weight" : "blocks.5.proj.weight";
    if (wsrc_shape(w, name, &ndim, shape, NULL) == 0 && ndim == 2 && shape[0] > 0)
        return (int)shape[0];
    return 400;
}

int x3d_build(const x3d_opts *o, const wsrc *w, x3d_layout layout, x3d_visit_fn visit,
              void *visit_user, cin_node **root, int *clip_frames, cin_err *err)
{
    *root = NULL;
    const x3d_size *size = find_size(o->size);
    if (!size)
        return cin_err_set(err, CIN_E_CONFIG, "x3d: size '%s', expected one of xs, s, m, l",
                           o->size ? o->size : "(none)");
    int crop = o->crop > 0 ? o->crop : size->crop;
    int window = o->pool_window > 0 ? o->pool_window : size->clip_frames;
    int se_window = o->se_window > 0 ? o->se_window : 1;
    if (crop < 32 || crop > 4096)
        return cin_err_set(err, CIN_E_CONFIG, "x3d: crop %d, expected 32 to 4096", crop);

    cin_err_clear(err);
    x3d_ctx x = {.w = w, .layout = layout, .visit = visit, .visit_user = visit_user,
                 .err = err, .dims = {3, crop, crop}};
    cin_node_list l = {0};
    cin_node_list_push(&l, stem(&x, 24));
    if (!l.failed)
        stages(&x, size->depth_factor, se_window, &l);
    if (!l.failed)
        head(&x, window, class_count(o, w, layout), &l);
    *clip_frames = window;
    return cin_node_list_seq(&l, root, err);
}
