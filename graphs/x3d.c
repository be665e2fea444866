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

/* The builder's state. Once anything fails, `failed` is set, x->err keeps the first message
 * and every later step returns NULL without reading or reporting anything. */
typedef struct x3d_ctx {
    wsrc *w;
    x3d_layout layout;
    x3d_visit_fn visit;
    void *visit_user;
    cin_err *err;
    int failed;
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

/* Records the outcome of creating *n: on success the frame moves on to its output. (A pointer,
 * because the call that creates *n is an argument of this one.) */
static cin_node *made(x3d_ctx *x, int rc, cin_node **n)
{
    if (rc) {
        x->failed = 1;
        return NULL;
    }
    x->dims = (*n)->out;
    return *n;
}

/* Reads tensor <prefix><name>.<leaf> with the given shape; NULL on failure. */
static float *get(x3d_ctx *x, tname n, const char *leaf, int ndim, const int64_t *shape)
{
    if (x->failed)
        return NULL;
    int sf = x->layout == X3D_SLOWFAST;
    char name[192];
    snprintf(name, sizeof name, "%s%s.%s", x->prefix[sf], sf ? n.sf : n.pv, leaf);
    if (x->visit)
        x->visit(x->visit_user, name, ndim, shape);
    float *v;
    x->failed = wsrc_get(x->w, name, ndim, shape, &v, x->err) != 0;
    return x->failed ? NULL : v;
}

static conv3d_params kernel(int cout, int groups, int kt, int ks, int stride)
{
    return (conv3d_params){.cout = cout, .groups = groups, .kt = kt, .kh = ks, .kw = ks,
                           .st = 1, .sh = stride, .sw = stride, .pt = kt / 2, .ph = ks / 2,
                           .pw = ks / 2};
}

/* A convolution on the current frame, with the batch norm `norm` folded in (NULL: none). */
static cin_node *conv(x3d_ctx *x, tname weight, const tname *norm, conv3d_params p)
{
    static const char *bn_leaf[4] = {"weight", "bias", "running_mean", "running_var"};
    if (x->failed)
        return NULL;    /* the widths may be 0 once a derived width was refused */
    p.cin = x->dims.c;
    p.h = x->dims.h;
    p.w = x->dims.w;
    int64_t shape[5] = {p.cout, p.cin / p.groups, p.kt, p.kh, p.kw}, bn_shape[1] = {p.cout};
    float *w = get(x, weight, "weight", 5, shape), *bn[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; norm && i < 4; i++)
        bn[i] = get(x, *norm, bn_leaf[i], 1, bn_shape);
    cin_node *n = NULL;
    if (!x->failed) {
        p.weight = w;
        p.bn = (bn_params){bn[0], bn[1], bn[2], bn[3], (float)bn_eps};
        n = made(x, conv3d_create(&p, &n, x->err), &n);
    }
    free(w);
    for (int i = 0; i < 4; i++)
        free(bn[i]);
    return n;
}

static cin_node *act(x3d_ctx *x, act_kind kind)
{
    cin_node *n = NULL;
    return x->failed ? NULL : made(x, act_create(kind, x->dims, &n, x->err), &n);
}

/* Spatial 1x3x3 convolution (stride 2), then the depthwise temporal 5x1x1 one and its norm.
 * pytorchvideo names them the other way round: conv_t is the spatial one. */
static void stem(x3d_ctx *x, int width, cin_node_list *l)
{
    static const tname spatial = {"blocks.0.conv.conv_t", "s1.pathway0_stem.conv_xy"};
    static const tname temporal = {"blocks.0.conv.conv_xy", "s1.pathway0_stem.conv"};
    static const tname norm = {"blocks.0.norm", "s1.pathway0_stem.bn"};
    cin_node_list_push(l, conv(x, spatial, NULL, kernel(width, 1, 1, 3, 2)));
    cin_node_list_push(l, conv(x, temporal, &norm, kernel(width, width, 5, 1, 1)));
    cin_node_list_push(l, act(x, ACT_RELU));
}

/* The reduced width follows the block's nominal inner width: a derived checkpoint prunes the
 * channels around it, not it. */
static cin_node *squeeze_excite(x3d_ctx *x, int window, int nominal)
{
    static const tname fc1 = {"branch2.norm_b.1.block.0", "branch2.se.fc1"};
    static const tname fc2 = {"branch2.norm_b.1.block.2", "branch2.se.fc2"};
    int c = x->dims.c, r = round_width(nominal, 0.0625);
    int64_t s1[5] = {r, c, 1, 1, 1}, s2[5] = {c, r, 1, 1, 1}, b1[1] = {r}, b2[1] = {c};
    float *w1 = get(x, fc1, "weight", 5, s1), *bias1 = get(x, fc1, "bias", 1, b1);
    float *w2 = get(x, fc2, "weight", 5, s2), *bias2 = get(x, fc2, "bias", 1, b2);
    se_params p = {.dims = x->dims, .reduced = r, .window = window, .fc1_w = w1,
                   .fc1_b = bias1, .fc2_w = w2, .fc2_b = bias2};
    cin_node *n = NULL;
    if (!x->failed)
        n = made(x, se_create(&p, &n, x->err), &n);
    free(w1);
    free(bias1);
    free(w2);
    free(bias2);
    return n;
}

typedef struct block_spec {
    int inner, nominal_inner, out, stride, se, se_window;
    int shortcut_norm; /* pytorchvideo: the nominal width changes (SlowFast: always) */
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
    cin_node_list_push(&l, conv(x, a, &a_bn, kernel(b->inner, 1, 1, 1, 1)));
    cin_node_list_push(&l, act(x, ACT_RELU));
    cin_node_list_push(&l, conv(x, conv_b, &b_bn, kernel(b->inner, b->inner, 3, 3, b->stride)));
    if (b->se)
        cin_node_list_push(&l, squeeze_excite(x, b->se_window, b->nominal_inner));
    cin_node_list_push(&l, act(x, ACT_SWISH));
    cin_node_list_push(&l, conv(x, c, &c_bn, kernel(b->out, 1, 1, 1, 1)));
    cin_node *n;
    return cin_node_list_seq(&l, &n, x->err) ? NULL : n;
}

/* The shortcut's strided 1x1x1 convolution. SlowFast always normalises it; pytorchvideo only
 * when it also changes the width, so its first block (24 -> 24 channels) has no branch1_norm. */
static cin_node *shortcut(x3d_ctx *x, const block_spec *b)
{
    static const tname b1 = {"branch1_conv", "branch1"};
    static const tname b1_bn = {"branch1_norm", "branch1_bn"};
    return conv(x, b1, b->shortcut_norm ? &b1_bn : NULL, kernel(b->out, 1, 1, 1, b->stride));
}

/* Residual block: relu(bottleneck(x) + shortcut(x)); the graph aligns the identity's delay. */
static cin_node *res_block(x3d_ctx *x, const block_spec *b)
{
    cin_dims in = x->dims;
    cin_node *branches[2] = {NULL, NULL};
    if (in.c != b->out || b->stride != 1) {
        branches[0] = shortcut(x, b);
        x->dims = in; /* the bottleneck starts from the block's input too */
    }
    branches[1] = bottleneck(x, b);
    cin_node *sum = NULL;
    if (x->failed || !branches[1]) {
        x->failed = 1;
        cin_node_free(branches[0]);
        cin_node_free(branches[1]);
    } else {
        sum = made(x, cin_parallel_create(branches, 2, CIN_REDUCE_SUM, &sum, x->err), &sum);
    }
    cin_node_list l = {0};
    cin_node_list_push(&l, sum);
    cin_node_list_push(&l, act(x, ACT_RELU));
    cin_node *n;
    return cin_node_list_seq(&l, &n, x->err) ? NULL : n;
}

static void set_block_prefix(x3d_ctx *x, int stage, int block)
{
    snprintf(x->prefix[X3D_PYTORCHVIDEO], sizeof x->prefix[0], "blocks.%d.res_blocks.%d.",
             stage, block);
    snprintf(x->prefix[X3D_SLOWFAST], sizeof x->prefix[0], "s%d.pathway0_res%d.", stage + 1,
             block);
}

/* The output channels of a derived layer: between 1 and the nominal width, or (want > 0)
 * exactly want; 0 after a failure. */
static int derived_width(x3d_ctx *x, const char *leaf, int nominal, int want)
{
    int sf = x->layout == X3D_SLOWFAST, ndim;
    char name[192];
    int64_t shape[8];
    snprintf(name, sizeof name, "%s%s.weight", x->prefix[sf], leaf);
    if (wsrc_shape(x->w, name, &ndim, shape, x->err) != 0) {
        x->failed = 1;
        return 0;
    }
    int bad = ndim != 5 || shape[0] < 1 || shape[0] > nominal || (want && shape[0] != want);
    if (!bad)
        return (int)shape[0];
    x->failed = 1;
    if (want)
        cin_err_set(x->err, CIN_E_SHAPE, "%s: tensor '%s': %lld output channels, expected %d "
                    "(the stage's width, which its residuals share)", wsrc_name(x->w), name,
                    ndim ? (long long)shape[0] : 0LL, want);
    else
        cin_err_set(x->err, CIN_E_SHAPE, "%s: tensor '%s': %lld output channels in %d "
                    "dimensions, expected 1 to %d in 5 (a derived width)", wsrc_name(x->w),
                    name, ndim ? (long long)shape[0] : 0LL, ndim, nominal);
    return 0;
}

/* A checkpoint written by cin-derive (metadata cin.derive = "x3d-inner", or "x3d-stages" when
 * the stage outputs are pruned too) takes its widths from conv_a's and conv_c's weights. Every
 * other tensor is still read with the shape those widths imply, so a wrong one is refused. */
static void derived_widths(x3d_ctx *x, block_spec *b, int first)
{
    const char *how = wsrc_meta(x->w, "cin.derive");
    int stages = how && strcmp(how, "x3d-stages") == 0;
    if (x->failed || !how || (!stages && strcmp(how, "x3d-inner") != 0))
        return;
    int sf = x->layout == X3D_SLOWFAST;
    b->inner = derived_width(x, sf ? "branch2.a" : "branch2.conv_a", b->inner, 0);
    if (stages && !x->failed)
        b->out = derived_width(x, sf ? "branch2.c" : "branch2.conv_c", b->out,
                               first ? 0 : x->dims.c);
}

static void stages(x3d_ctx *x, double depth_factor, int se_window, cin_node_list *l)
{
    static const int base_depth[4] = {1, 2, 5, 3};
    for (int s = 0; s < 4; s++) {
        int out = 24 << s;
        int depth = (int)ceil(depth_factor * base_depth[s]);
        for (int i = 0; i < depth && !x->failed; i++) {
            block_spec b = {.inner = (int)(2.25 * out), .out = out, .stride = i ? 1 : 2,
                            .se = (i + 1) % 2, .se_window = se_window};
            b.nominal_inner = b.inner;
            b.shortcut_norm = x->layout == X3D_SLOWFAST || (s ? out / 2 : 24) != out;
            set_block_prefix(x, s + 1, i);
            derived_widths(x, &b, i == 0);
            cin_node_list_push(l, res_block(x, &b));
        }
    }
    x->prefix[0][0] = x->prefix[1][0] = '\0';
}

static cin_node *projection(x3d_ctx *x, int classes)
{
    static const tname proj = {"blocks.5.proj", "head.projection"};
    int64_t ws[2] = {classes, x->dims.c}, bs[1] = {classes};
    float *w = get(x, proj, "weight", 2, ws), *b = get(x, proj, "bias", 1, bs);
    cin_node *n = NULL;
    if (!x->failed)
        n = made(x, linear_create(x->dims.c, classes, w, b, &n, x->err), &n);
    free(w);
    free(b);
    return n;
}

static cin_node *pool(x3d_ctx *x, int (*create)(cin_dims, cin_node **, cin_err *))
{
    cin_node *n = NULL;
    return x->failed ? NULL : made(x, create(x->dims, &n, x->err), &n);
}

static cin_node *temporal_pool(x3d_ctx *x, int window)
{
    cin_node *n = NULL;
    return x->failed ? NULL : made(x, pool_temporal_create(x->dims, window, 0, &n, x->err), &n);
}

/* Head: 1x1x1 conv + BN + ReLU, average over the frame and a window of `window` frames,
 * 1x1x1 conv (2048, no norm) + ReLU, linear to classes; a clip's positions are averaged. */
static void head(x3d_ctx *x, int window, int classes, int features, cin_node_list *l)
{
    static const tname pre = {"blocks.5.pool.pre_conv", "head.conv_5"};
    static const tname pre_bn = {"blocks.5.pool.pre_norm", "head.conv_5_bn"};
    static const tname post = {"blocks.5.pool.post_conv", "head.lin_5"};
    /* 2.25 x stage 4's nominal width, which a derived checkpoint does not prune */
    cin_node_list_push(l, conv(x, pre, &pre_bn, kernel((int)(2.25 * 192), 1, 1, 1, 1)));
    cin_node_list_push(l, act(x, ACT_RELU));
    cin_node_list_push(l, pool(x, pool_spatial_create));
    cin_node_list_push(l, temporal_pool(x, window));
    cin_node_list_push(l, conv(x, post, NULL, kernel(2048, 1, 1, 1, 1)));
    cin_node_list_push(l, act(x, ACT_RELU));
    if (!features)
        cin_node_list_push(l, projection(x, classes));
    cin_node_list_push(l, pool(x, pool_clip_mean_create));
}

/* Names of X3D's own tensors in either layout (not, say, an optimiser's). */
static int x3d_tensor(const char *name)
{
    return strncmp(name, "blocks.", 7) == 0 || strncmp(name, "head.", 5) == 0 ||
           (name[0] == 's' && name[1] >= '1' && name[1] <= '5' && name[2] == '.');
}

/* The same without the classifier, which a backbone giving features does not read. */
static int x3d_backbone_tensor(const char *name)
{
    return x3d_tensor(name) && strncmp(name, "blocks.5.proj.", 14) != 0 &&
           strncmp(name, "head.projection.", 16) != 0;
}

/* A checkpoint with model tensors the graph did not read is for another size: refuse it
 * rather than run with part of it. */
static int check_all_used(const wsrc *w, const char *size, int features, cin_node **root,
                          cin_err *err)
{
    int n;
    const char *name = wsrc_unused(w, features ? x3d_backbone_tensor : x3d_tensor, &n);
    if (!name)
        return 0;
    cin_node_free(*root);
    *root = NULL;
    return cin_err_set(err, CIN_E_SHAPE, "%s: tensor '%s' and %d more are not part of "
                       "x3d-%s: is the checkpoint for another size?", wsrc_name(w), name,
                       n - 1, size);
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

int x3d_build(const x3d_opts *o, wsrc *w, x3d_layout layout, x3d_visit_fn visit,
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
    stem(&x, 24, &l);
    stages(&x, size->depth_factor, se_window, &l);
    head(&x, window, class_count(o, w, layout), o->features, &l);
    *clip_frames = window;
    int rc = cin_node_list_seq(&l, root, err);
    return rc ? rc : check_all_used(w, size->name, o->features, root, err);
}
