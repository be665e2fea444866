/* Structured pruning adapters fused into a smaller checkpoint (see derive.h): the per-layer
 * arithmetic (fuse, norm masks), then X3D's channel couplings. Within a bottleneck, conv_a's
 * output mask also slices its norm, the depthwise conv_b and its norm, the squeeze-excitation's
 * channels (not its reduced width) and conv_c's inputs. A stage's output mask is shared by all
 * its blocks' conv_c and its shortcut (the residuals add them channel by channel) and slices
 * the inputs of the next stage's first block, or of the head. */
#include "derive.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "derive_impl.h"

static int64_t taps_of(int ndim, const int64_t *shape)
{
    int64_t t = 1;
    for (int d = 2; d < ndim; d++)
        t *= shape[d];
    return t;
}

/* Offset of the centre tap within one [taps...] kernel: index k / 2 in every dimension, which
 * is the library's kernel_size[0] // 2 for the cubic odd kernels it accepts. */
static int64_t centre_of(int ndim, const int64_t *shape)
{
    int64_t off = 0;
    for (int d = 2; d < ndim; d++)
        off = off * shape[d] + shape[d] / 2;
    return off;
}

static int check_adapter(const char *name, const derive_adapter *a, int64_t out, int64_t in,
                         int n_out, int n_in, cin_err *err)
{
    if (a->rows || a->cols) {
        if (!a->rows || !a->cols)
            return cin_err_set(err, CIN_E_NOTFOUND, "tensor '%s': SPLoRA needs both "
                               "adapter.rows and adapter.cols, found one", name);
        if (a->rows_in != in && a->rows_in != n_in)
            return cin_err_set(err, CIN_E_SHAPE, "tensor '%s': adapter.rows has %d inputs, "
                               "expected %lld (or %d kept)", name, a->rows_in, (long long)in,
                               n_in);
        if (a->cols_out != out && a->cols_out != n_out)
            return cin_err_set(err, CIN_E_SHAPE, "tensor '%s': adapter.cols has %d outputs, "
                               "expected %lld (or %d kept)", name, a->cols_out,
                               (long long)out, n_out);
    }
    if (a->para && !((a->para_out == out && a->para_in == in) ||
                     (a->para_out == n_out && a->para_in == n_in)))
        return cin_err_set(err, CIN_E_SHAPE, "tensor '%s': SPPaRA adapter is [%d, %d], "
                           "expected [%lld, %lld] (or [%d, %d] kept)", name, a->para_out,
                           a->para_in, (long long)out, (long long)in, n_out, n_in);
    return 0;
}

/* The adapter's value at kept output i and kept input j (full tensors are indexed through
 * the keep lists, pre-sliced ones directly). */
static double adapter_at(const derive_adapter *a, int64_t out, int64_t in, int64_t io,
                         int64_t ii, int i, int j)
{
    double v = 0.0;
    if (a->rows) {
        int64_t o = a->cols_out == out ? io : i, k = a->rows_in == in ? ii : j;
        for (int r = 0; r < a->rank; r++)
            v += (double)a->cols[o * a->rank + r] * a->rows[r * a->rows_in + k];
    }
    if (a->para) {
        int full = a->para_out == out && a->para_in == in;
        v += a->para[(full ? io : i) * a->para_in + (full ? ii : j)];
    }
    return v;
}

int derive_fuse(const char *name, const float *w0, int ndim, const int64_t *shape,
                const int *keep_out, int n_out, const int *keep_in, int n_in,
                const derive_adapter *a, float *dst, cin_err *err)
{
    if (ndim < 2)
        return cin_err_set(err, CIN_E_SHAPE, "tensor '%s': %d dimensions, expected a weight "
                           "of 2 to 5", name, ndim);
    int64_t out = shape[0], in = shape[1], taps = taps_of(ndim, shape);
    int64_t centre = centre_of(ndim, shape);
    n_out = keep_out ? n_out : (int)out;
    n_in = keep_in ? n_in : (int)in;
    int rc = a ? check_adapter(name, a, out, in, n_out, n_in, err) : 0;
    if (rc)
        return rc;
    for (int i = 0; i < n_out; i++) {
        int64_t io = keep_out ? keep_out[i] : i;
        for (int j = 0; j < n_in; j++) {
            int64_t ii = keep_in ? keep_in[j] : j;
            const float *src = w0 + (io * in + ii) * taps;
            float *d = dst + ((int64_t)i * n_in + j) * taps;
            memcpy(d, src, sizeof(float) * (size_t)taps);
            if (a)
                d[centre] = (float)(src[centre] + adapter_at(a, out, in, io, ii, i, j));
        }
    }
    return 0;
}

/* Halves round to even (rint in the default rounding mode), as Python's round() does in the
 * reference scripts: 5 filters at ratio 0.5 keep 2. */
int derive_keep_count(int n, double ratio)
{
    int k = (int)rint(n * (1.0 - ratio));
    return k < 1 ? 1 : k > n ? n : k;
}

/* score[o] += the L1 or L2 norm of filter o of w [out, per]. */
void derive_add_norms(const float *w, int out, int64_t per, derive_norm norm,
                             double *score)
{
    for (int o = 0; o < out; o++) {
        double s = 0.0;
        for (int64_t k = 0; k < per; k++) {
            double v = w[o * per + k];
            s += norm == DERIVE_L1 ? fabs(v) : v * v;
        }
        score[o] += norm == DERIVE_L1 ? s : sqrt(s);
    }
}

/* mask01 = 1 for the `keep` largest scores, by selection: each round takes the best not yet
 * kept, the lower index on ties. */
void derive_mask_from_scores(const double *score, int out, int keep, float *mask01)
{
    for (int o = 0; o < out; o++)
        mask01[o] = 0.0f;
    for (int n = 0; n < keep; n++) {
        int best = -1;
        for (int o = 0; o < out; o++)
            if (mask01[o] == 0.0f && (best < 0 || score[o] > score[best]))
                best = o;
        mask01[best] = 1.0f;
    }
}

void derive_norm_mask(const float *w, int out, int64_t per, derive_norm norm, int keep,
                      float *mask01)
{
    double *score = calloc((size_t)(out ? out : 1), sizeof *score);
    if (!score)
        return;
    derive_add_norms(w, out, per, norm, score);
    derive_mask_from_scores(score, out, keep, mask01);
    free(score);
}

/* ---- X3D ---- */

/* Which channels of a tensor's dimension survive: all, the block's inner mask, its stage's
 * output mask, the mask of the block's input (the previous stage's for block 0), or the
 * previous stage's. */
typedef enum chan { CH_ALL, CH_INNER, CH_STAGE, CH_BLOCK_IN, CH_PREV } chan;

typedef struct role_rule {
    const char *rest; /* the name after the block's prefix; a trailing '.' matches any leaf */
    chan out, in;
} role_rule;

static const role_rule pv_rules[] = {
    {"branch2.conv_a.weight", CH_INNER, CH_BLOCK_IN}, {"branch2.norm_a.", CH_INNER, CH_ALL},
    {"branch2.conv_b.weight", CH_INNER, CH_ALL}, {"branch2.norm_b.0.", CH_INNER, CH_ALL},
    {"branch2.norm_b.1.block.0.weight", CH_ALL, CH_INNER},
    {"branch2.norm_b.1.block.2.", CH_INNER, CH_ALL}, {"branch2.conv_c.weight", CH_STAGE, CH_INNER},
    {"branch2.norm_c.", CH_STAGE, CH_ALL}, {"branch1_conv.weight", CH_STAGE, CH_PREV},
    {"branch1_norm.", CH_STAGE, CH_ALL}, {NULL, CH_ALL, CH_ALL}};
static const role_rule sf_rules[] = {
    {"branch2.a.weight", CH_INNER, CH_BLOCK_IN}, {"branch2.a_bn.", CH_INNER, CH_ALL},
    {"branch2.b.weight", CH_INNER, CH_ALL}, {"branch2.b_bn.", CH_INNER, CH_ALL},
    {"branch2.se.fc1.weight", CH_ALL, CH_INNER}, {"branch2.se.fc2.", CH_INNER, CH_ALL},
    {"branch2.c.weight", CH_STAGE, CH_INNER}, {"branch2.c_bn.", CH_STAGE, CH_ALL},
    {"branch1.weight", CH_STAGE, CH_PREV}, {"branch1_bn.", CH_STAGE, CH_ALL},
    {NULL, CH_ALL, CH_ALL}};

static const char *conv_a_leaf(const dctx *c)
{
    return c->slowfast ? "a" : "conv_a";
}

static int rule_matches(const char *rest, const char *rule)
{
    size_t n = strlen(rule);
    return rule[n - 1] == '.' ? strncmp(rest, rule, n) == 0 : strcmp(rest, rule) == 0;
}

static chmask chan_mask(const dctx *c, const block *b, chan ch)
{
    chmask all = {NULL, 0};
    int prev = b->stage - 1;
    switch (ch) {
    case CH_INNER:
        return (chmask){b->keep, b->n_keep};
    case CH_STAGE:
        return c->stages[b->stage].m;
    case CH_BLOCK_IN:
        return c->stages[b->index ? b->stage : prev].m;
    case CH_PREV:
        return c->stages[prev].m;
    default:
        return all;
    }
}

/* The kept outputs and inputs of tensor name (keep NULL: all): the bottleneck and shortcut
 * couplings, and the head's first convolution reading stage 4. */
static void slices_of(const dctx *c, const char *name, chmask *out, chmask *in)
{
    *out = *in = (chmask){NULL, 0};
    if (strcmp(name, c->slowfast ? "head.conv_5.weight" : "blocks.5.pool.pre_conv.weight") == 0) {
        *in = c->stages[4].m;
        return;
    }
    for (int i = 0; i < c->n_blocks; i++) {
        const block *b = &c->blocks[i];
        if (strncmp(b->prefix, name, (size_t)b->base_len) != 0)
            continue;
        for (const role_rule *k = c->slowfast ? sf_rules : pv_rules; k->rest; k++) {
            if (!rule_matches(name + b->base_len, k->rest))
                continue;
            *out = chan_mask(c, b, k->out);
            *in = chan_mask(c, b, k->in);
            return;
        }
    }
}

/* Stage and block index of a block prefix, in either layout. */
static int parse_block(const dctx *c, block *b)
{
    int s = 0, k = -1, ok;
    if (c->slowfast)
        ok = sscanf(b->prefix, "s%d.pathway0_res%d.", &s, &k) == 2 && s-- >= 2;
    else
        ok = sscanf(b->prefix, "blocks.%d.res_blocks.%d.", &s, &k) == 2;
    if (!ok || s < 1 || s > 4 || k < 0)
        return cin_err_set(c->err, CIN_E_FORMAT, "%s: tensor '%sweight': not in a stage 1 to 4 "
                           "of X3D", c->o->source, b->prefix);
    b->stage = s;
    b->index = k;
    return 0;
}

/* A stage's width: its conv_c's output channels. */
static int stage_width(dctx *c, const block *b)
{
    char name[192];
    st_info info;
    snprintf(name, sizeof name, "%s%s.weight", b->prefix, c->slowfast ? "c" : "conv_c");
    int rc = st_find(c->src, name, &info, c->err);
    if (rc)
        return rc;
    c->stages[b->stage].width = (int)info.shape[0];
    return 0;
}

static int find_blocks(dctx *c)
{
    char leaf[32];
    snprintf(leaf, sizeof leaf, "branch2.%s.weight", conv_a_leaf(c));
    int n = st_count(c->src);
    c->blocks = calloc((size_t)n + 1, sizeof *c->blocks);
    if (!c->blocks)
        return cin_err_set(c->err, CIN_E_NOMEM, "%s: out of memory", c->o->source);
    for (int i = 0; i < n; i++) {
        st_info info;
        st_info_at(c->src, i, &info);
        size_t len = strlen(info.name), ll = strlen(leaf);
        if (len < ll || strcmp(info.name + len - ll, leaf) || len - ll + 8 >= 96)
            continue;
        block *b = &c->blocks[c->n_blocks++];
        memcpy(b->prefix, info.name, len - ll + 8);
        b->base_len = (int)(len - ll);
        b->inner = (int)info.shape[0];
        int rc = parse_block(c, b);
        rc = rc ? rc : stage_width(c, b);
        if (rc)
            return rc;
    }
    if (c->n_blocks == 0)
        return cin_err_set(c->err, CIN_E_NOTFOUND, "%s: no bottleneck found: no tensor named "
                           "'*.%s', nor the tensors of an ST-GCN or a transformer encoder "
                           "(docs/derive.md)", c->o->source, leaf);
    return 0;
}

/* Reads a whole F32 tensor of f into a new array. */
int derive_read_all(st_file *f, const char *name, st_info *info, float **out, cin_err *err)
{
    int rc = st_find(f, name, info, err);
    if (rc)
        return rc;
    *out = malloc(info->nbytes ? info->nbytes : 1);
    if (!*out)
        return cin_err_set(err, CIN_E_NOMEM, "%s: tensor '%s': out of memory", st_path(f),
                           name);
    rc = st_read_f32(f, name, -1, NULL, *out, err);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Index of the adapters' tensor `name`, or -1. */
static int adapter_index(const dctx *c, const char *name)
{
    for (int i = 0; c->adapters && i < st_count(c->adapters); i++) {
        st_info info;
        st_info_at(c->adapters, i, &info);
        if (strcmp(info.name, name) == 0)
            return i;
    }
    return -1;
}

void derive_bufs_free(derive_bufs *b)
{
    free(b->rows);
    free(b->cols);
    free(b->para);
}

/* Reads <layer>.adapter.rows [1, r, in] and .cols [1, out, r] if present. */
static int load_splora(dctx *c, const char *layer, derive_adapter *a, derive_bufs *b,
                       int *found)
{
    char rn[192], cn[192];
    snprintf(rn, sizeof rn, "%s.adapter.rows", layer);
    snprintf(cn, sizeof cn, "%s.adapter.cols", layer);
    int ir = adapter_index(c, rn), ic = adapter_index(c, cn);
    st_info ri, ci;
    if (ir >= 0 && derive_read_all(c->adapters, rn, &ri, &b->rows, c->err))
        return c->err ? c->err->code : CIN_E_IO;
    if (ic >= 0 && derive_read_all(c->adapters, cn, &ci, &b->cols, c->err))
        return c->err ? c->err->code : CIN_E_IO;
    if (ir >= 0 && (ri.ndim != 3 || ri.shape[0] != 1))
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': expected [1, rank, in]",
                           c->o->adapters, rn);
    if (ic >= 0 && (ci.ndim != 3 || ci.shape[0] != 1))
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': expected [1, out, rank]",
                           c->o->adapters, cn);
    if (ir >= 0 && ic >= 0 && ri.shape[1] != ci.shape[2])
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s' has rank %lld but '%s' has "
                           "rank %lld", c->o->adapters, rn, (long long)ri.shape[1], cn,
                           (long long)ci.shape[2]);
    if (ir >= 0) {
        a->rows = b->rows, a->rank = (int)ri.shape[1], a->rows_in = (int)ri.shape[2];
        c->adapter_used[ir] = 1, *found = 1;
    }
    if (ic >= 0) {
        a->cols = b->cols, a->cols_out = (int)ci.shape[1];
        c->adapter_used[ic] = 1, *found = 1;
    }
    return 0;
}

/* The adapter of <layer> (SPLoRA, SPPaRA or both); *found = 0 when it has none. */
int derive_load_adapter(dctx *c, const char *layer, derive_adapter *a, derive_bufs *b,
                        int *found)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    *found = 0;
    if (!c->adapters)
        return 0;
    int rc = load_splora(c, layer, a, b, found);
    if (rc)
        return rc;
    char pn[192];
    snprintf(pn, sizeof pn, "%s.adapter", layer);
    int ip = adapter_index(c, pn);
    st_info pi;
    if (ip < 0)
        return 0;
    if (derive_read_all(c->adapters, pn, &pi, &b->para, c->err))
        return c->err ? c->err->code : CIN_E_IO;
    if (pi.ndim != 2)
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': %d dimensions, expected "
                           "[out, in/groups]", c->o->adapters, pn, pi.ndim);
    a->para = b->para, a->para_out = (int)pi.shape[0], a->para_in = (int)pi.shape[1];
    c->adapter_used[ip] = 1, *found = 1;
    return 0;
}

/* conv_a's weight of block b with its adapter fused, unsliced: what the norms rank. */
static int adapted_conv_a(dctx *c, const block *b, float **w, int64_t *per)
{
    char name[256], layer[192];
    snprintf(layer, sizeof layer, "%s%s", b->prefix, conv_a_leaf(c));
    snprintf(name, sizeof name, "%s.weight", layer);
    st_info info;
    float *w0;
    int rc = derive_read_all(c->src, name, &info, &w0, c->err);
    if (rc)
        return rc;
    derive_adapter a;
    derive_bufs bufs;
    int found;
    rc = derive_load_adapter(c, layer, &a, &bufs, &found);
    *per = (int64_t)(info.nbytes / sizeof(float)) / info.shape[0];
    *w = malloc(info.nbytes);
    if (!rc && !*w)
        rc = cin_err_set(c->err, CIN_E_NOMEM, "%s: out of memory", c->o->source);
    if (!rc)
        rc = derive_fuse(name, w0, info.ndim, info.shape, NULL, 0, NULL, 0,
                         found ? &a : NULL, *w, c->err);
    derive_bufs_free(&bufs);
    free(w0);
    if (rc) {
        free(*w);
        *w = NULL;
    }
    return rc;
}

static int set_keep(dctx *c, block *b, const float *mask01)
{
    b->keep = malloc(sizeof(int) * (size_t)b->inner);
    if (!b->keep)
        return cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    b->n_keep = 0;
    for (int i = 0; i < b->inner; i++)
        if (mask01[i] != 0.0f)
            b->keep[b->n_keep++] = i;
    return 0;
}

static int compute_masks(dctx *c)
{
    for (int i = 0; i < c->n_blocks; i++) {
        block *b = &c->blocks[i];
        float *w, *mask = malloc(sizeof(float) * (size_t)b->inner);
        int64_t per;
        int rc = mask ? adapted_conv_a(c, b, &w, &per) : CIN_E_NOMEM;
        if (rc) {
            free(mask);
            return rc == CIN_E_NOMEM && !mask ? cin_err_set(c->err, rc, "out of memory") : rc;
        }
        derive_norm_mask(w, b->inner, per, c->o->norm, derive_keep_count(b->inner,
                         c->o->ratio), mask);
        rc = set_keep(c, b, mask);
        free(w);
        free(mask);
        if (rc)
            return rc;
    }
    return 0;
}

/* Adds the filter norms of source weight `name`, fused with its adapter and its inputs sliced
 * by `in`, to score. */
int derive_layer_norms(dctx *c, const char *name, chmask in, double *score)
{
    st_info info;
    float *w0 = NULL, *w = NULL;
    int rc = derive_read_all(c->src, name, &info, &w0, c->err), found = 0;
    derive_adapter a;
    derive_bufs bufs = {0};
    char layer[192];
    snprintf(layer, sizeof layer, "%.*s", (int)strlen(name) - 7, name);
    rc = rc ? rc : derive_load_adapter(c, layer, &a, &bufs, &found);
    int64_t per = 0;
    if (!rc && info.ndim >= 2 && info.shape[0] > 0 && info.shape[1] > 0) {
        int64_t taps = (int64_t)(info.nbytes / sizeof(float)) / info.shape[0] / info.shape[1];
        per = taps * (in.keep ? in.n : info.shape[1]);
        w = malloc(sizeof(float) * (size_t)(info.shape[0] * per + 1));
        rc = w ? 0 : cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    }
    if (!rc && w)
        rc = derive_fuse(name, w0, info.ndim, info.shape, NULL, 0, in.keep, in.n,
                         found ? &a : NULL, w, c->err);
    if (!rc && w)
        derive_add_norms(w, (int)info.shape[0], per, c->o->norm, score);
    derive_bufs_free(&bufs);
    free(w0);
    free(w);
    return rc;
}

static int set_stage_keep(dctx *c, int s, const float *mask01)
{
    stage_mask *st = &c->stages[s];
    st->m.keep = malloc(sizeof(int) * (size_t)st->width);
    if (!st->m.keep)
        return cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    for (int k = 0; k < st->width; k++)
        if (mask01[k] != 0.0f)
            st->m.keep[st->m.n++] = k;
    c->stage_pruned = 1;
    return 0;
}

/* Stage s's output mask: the filters of all its conv_c (on the inner channels they keep) and
 * its shortcut ranked by their summed norms, as the residuals tie them. */
static int compute_stage_mask(dctx *c, int s)
{
    int w = c->stages[s].width, rc = 0;
    double *score = calloc((size_t)w + 1, sizeof *score);
    float *mask = malloc(sizeof(float) * ((size_t)w + 1));
    if (!score || !mask)
        rc = cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < c->n_blocks; i++) {
        const block *b = &c->blocks[i];
        char name[256];
        if (b->stage != s)
            continue;
        snprintf(name, sizeof name, "%s%s.weight", b->prefix, c->slowfast ? "c" : "conv_c");
        rc = derive_layer_norms(c, name, (chmask){b->keep, b->n_keep}, score);
        snprintf(name, sizeof name, "%.*s%s.weight", b->base_len, b->prefix,
                 c->slowfast ? "branch1" : "branch1_conv");
        if (!rc && b->index == 0)
            rc = derive_layer_norms(c, name, (chmask){NULL, 0}, score);
    }
    if (!rc) {
        derive_mask_from_scores(score, w, derive_keep_count(w, c->o->stage_ratio), mask);
        rc = set_stage_keep(c, s, mask);
    }
    free(score);
    free(mask);
    return rc;
}

static int compute_stage_masks(dctx *c)
{
    int rc = 0;
    for (int s = 1; s <= 4 && !rc; s++)
        rc = compute_stage_mask(c, s);
    return rc;
}

/* The block whose mask is called name, or NULL. */
static block *mask_block(dctx *c, const char *name)
{
    char want[192];
    for (int i = 0; i < c->n_blocks; i++) {
        snprintf(want, sizeof want, "%s%s.out_mask", c->blocks[i].prefix, conv_a_leaf(c));
        if (strcmp(want, name) == 0)
            return &c->blocks[i];
    }
    return NULL;
}

int derive_check_mask(dctx *c, const char *name, const float *m, int n)
{
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (m[i] != 0.0f && m[i] != 1.0f)
            return cin_err_set(c->err, CIN_E_FORMAT, "%s: tensor '%s': element %d is %g, "
                               "expected 0 or 1", c->o->masks, name, i, m[i]);
        kept += m[i] == 1.0f;
    }
    if (!kept)
        return cin_err_set(c->err, CIN_E_FORMAT, "%s: tensor '%s': keeps no channel, expected "
                           "at least one 1", c->o->masks, name);
    return 0;
}

/* The names of a block's stage-output masks: its conv_c's and, for block 0, its shortcut's. */
static void stage_mask_names(const dctx *c, const block *b, char conv_c[192], char sc[192])
{
    snprintf(conv_c, 192, "%s%s.out_mask", b->prefix, c->slowfast ? "c" : "conv_c");
    snprintf(sc, 192, "%.*s%s.out_mask", b->base_len, b->prefix,
             c->slowfast ? "branch1" : "branch1_conv");
}

static block *stage_mask_block(dctx *c, const char *name)
{
    char a[192], b[192];
    for (int i = 0; i < c->n_blocks; i++) {
        stage_mask_names(c, &c->blocks[i], a, b);
        if (strcmp(a, name) == 0 || (c->blocks[i].index == 0 && strcmp(b, name) == 0))
            return &c->blocks[i];
    }
    return NULL;
}

/* A stage's output mask; every mask given for one stage must be the same, since the
 * residual connections add their channels one to one. */
static int read_stage_mask(dctx *c, const block *b, const st_info *info, const float *m)
{
    stage_mask *s = &c->stages[b->stage];
    if (!s->m.keep) {
        snprintf(s->given_by, sizeof s->given_by, "%s", info->name);
        return set_stage_keep(c, b->stage, m);
    }
    int n = 0, same = 1;
    for (int k = 0; k < s->width && same; k++)
        if (m[k] != 0.0f)
            same = n < s->m.n && s->m.keep[n++] == k;
    if (same && n == s->m.n)
        return 0;
    return cin_err_set(c->err, CIN_E_FORMAT, "%s: tensors '%s' and '%s' disagree, expected the "
                       "same mask: stage %d's blocks and shortcut are added channel by channel",
                       c->o->masks, s->given_by, info->name, b->stage);
}

static int read_one_stage_mask(dctx *c, const block *b, st_info *info)
{
    int w = c->stages[b->stage].width;
    if (info->ndim != 1 || info->shape[0] != w)
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': %lld elements in %d "
                           "dimensions, expected [%d] (the output width of stage %d)",
                           c->o->masks, info->name, info->ndim ? (long long)info->shape[0] : 1LL,
                           info->ndim, w, b->stage);
    float *m;
    int rc = derive_read_all(c->masks, info->name, info, &m, c->err);
    rc = rc ? rc : derive_check_mask(c, info->name, m, w);
    rc = rc ? rc : read_stage_mask(c, b, info, m);
    free(m);
    return rc;
}

static int read_one_mask(dctx *c, int i)
{
    st_info info;
    st_info_at(c->masks, i, &info);
    block *b = mask_block(c, info.name), *sb = b ? NULL : stage_mask_block(c, info.name);
    if (sb)
        return read_one_stage_mask(c, sb, &info);
    if (!b)
        return cin_err_set(c->err, CIN_E_UNSUPPORTED, "%s: tensor '%s': not a mask cin can "
                           "apply; expected <block>.branch2.%s.out_mask (a block's inner "
                           "width), <block>.branch2.%s.out_mask or the first block's "
                           "%s.out_mask (a stage's output)", c->o->masks, info.name,
                           conv_a_leaf(c), c->slowfast ? "c" : "conv_c",
                           c->slowfast ? "branch1" : "branch1_conv");
    if (info.ndim != 1 || info.shape[0] != b->inner)
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': %lld elements in %d "
                           "dimensions, expected [%d] (the inner width of %s)", c->o->masks,
                           info.name, info.ndim ? (long long)info.shape[0] : 1LL, info.ndim,
                           b->inner, c->o->source);
    float *m;
    int rc = derive_read_all(c->masks, info.name, &info, &m, c->err);
    rc = rc ? rc : derive_check_mask(c, info.name, m, b->inner);
    rc = rc ? rc : set_keep(c, b, m);
    free(m);
    return rc;
}

static int read_masks(dctx *c)
{
    int rc = st_open(c->o->masks, &c->masks, c->err);
    for (int i = 0; !rc && i < st_count(c->masks); i++)
        rc = read_one_mask(c, i);
    return rc;
}

static int push_out(dctx *c, const char *name, int ndim, const int64_t *shape, float *data)
{
    st_out *o = &c->outs[c->n_outs++];
    o->name = strdup(name);
    o->ndim = ndim;
    memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
    o->data = data;
    if (!o->name)
        return cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    return 0;
}

/* A source tensor replaced by the adapters' tensor of the same name (a fine-tuned bias). */
static int replacement(dctx *c, const st_info *src, float *data)
{
    int i = adapter_index(c, src->name);
    if (i < 0)
        return 0;
    st_info info;
    st_info_at(c->adapters, i, &info);
    int same = info.ndim == src->ndim;
    for (int d = 0; same && d < info.ndim; d++)
        same = info.shape[d] == src->shape[d];
    if (!same)
        return cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': shape differs from the "
                           "source's in %s", c->o->adapters, src->name, c->o->source);
    c->adapter_used[i] = 1;
    return st_read_f32(c->adapters, src->name, -1, NULL, data, c->err);
}

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* The layers whose adapters fuse into source tensor `info`, one per equal block of its rows:
 * c->parts' for a packed weight, else the weight itself less ".weight" or "_weight"; 0 for a
 * tensor that takes none (a bias, a norm, an embedding). */
static int adapter_layers(const dctx *c, const st_info *info, char layers[][DERIVE_LAYER])
{
    size_t len = strlen(info->name);
    int is_weight = info->ndim >= 2 && len > 7 && strcmp(info->name + len - 6, "weight") == 0 &&
                    (info->name[len - 7] == '.' || info->name[len - 7] == '_');
    if (!is_weight)
        return 0;
    int n = c->parts ? c->parts(info->name, layers) : 0;
    if (n > 0)
        return n;
    snprintf(layers[0], DERIVE_LAYER, "%.*s", (int)(len - 7), info->name);
    return 1;
}

/* Fuses block `part` of a weight of `parts` row blocks with the adapter of `layer`, if any. */
static int fuse_block(dctx *c, const st_info *info, const char *layer, int part, int parts,
                      const float *w0, chmask o, chmask i, float *dst)
{
    int64_t shape[ST_MAX_DIMS];
    memcpy(shape, info->shape, sizeof shape);
    shape[0] /= parts;
    int64_t per = taps_of(info->ndim, info->shape);
    int64_t n_in = i.keep ? i.n : shape[1];
    derive_adapter a;
    derive_bufs bufs = {0};
    int found = 0;
    int rc = layer ? derive_load_adapter(c, layer, &a, &bufs, &found) : 0;
    c->stats.adapted += found;
    rc = rc ? rc : derive_fuse(info->name, w0 + part * shape[0] * shape[1] * per, info->ndim,
                               shape, o.keep, o.n, i.keep, i.n, found ? &a : NULL,
                               dst + part * shape[0] * n_in * per, c->err);
    if (rc && parts > 1)
        cin_err_wrap(c->err, rc, "%s: adapter of %s (rows %lld to %lld of the packed weight)",
                     c->o->adapters, layer, (long long)(part * shape[0]),
                     (long long)((part + 1) * shape[0] - 1));
    derive_bufs_free(&bufs);
    return rc;
}

/* Fuses w0's adapters, if any, and slices it into dst. */
static int fuse_tensor(dctx *c, const st_info *info, const float *w0, chmask o, chmask i,
                       float *dst)
{
    char layers[DERIVE_MAX_PARTS][DERIVE_LAYER];
    int parts = adapter_layers(c, info, layers);
    if (info->ndim < 2) {
        for (int64_t k = 0; k < numel_of(info->ndim, info->shape); k++)
            if (!o.keep || k < o.n)
                dst[k] = w0[o.keep ? o.keep[k] : k];
        return 0;
    }
    if (parts > 1 && (o.keep || info->shape[0] % parts))
        return cin_err_set(c->err, CIN_E_UNSUPPORTED, "%s: tensor '%s': %lld rows packing %d "
                           "layers, which cin-derive fuses but does not prune",
                           c->o->source, info->name, (long long)info->shape[0], parts);
    int rc = 0;
    for (int p = 0; !rc && p < (parts > 1 ? parts : 1); p++)
        rc = fuse_block(c, info, parts ? layers[p] : NULL, p, parts > 1 ? parts : 1, w0, o, i,
                        dst);
    return rc;
}

/* Slices (and fuses) one source tensor into the output list. */
static int derive_tensor(dctx *c, const st_info *info)
{
    chmask o, i;
    c->slices(c, info->name, &o, &i);
    int64_t shape[ST_MAX_DIMS];
    memcpy(shape, info->shape, sizeof shape);
    if (o.keep)
        shape[0] = o.n;
    if (i.keep && info->ndim >= 2)
        shape[1] = i.n;
    float *w0, *dst = malloc(sizeof(float) * (size_t)(numel_of(info->ndim, shape) + 1));
    st_info full;
    int rc = dst ? derive_read_all(c->src, info->name, &full, &w0, c->err)
                 : cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    if (rc) {
        free(dst);
        return rc;
    }
    rc = replacement(c, info, w0);
    rc = rc ? rc : fuse_tensor(c, info, w0, o, i, dst);
    free(w0);
    c->stats.params_before += numel_of(info->ndim, info->shape);
    c->stats.params_after += numel_of(info->ndim, shape);
    rc = rc ? rc : push_out(c, info->name, info->ndim, shape, dst);
    if (rc && (c->n_outs == 0 || c->outs[c->n_outs - 1].data != dst))
        free(dst);
    return rc;
}

int derive_tensors(dctx *c)
{
    int n = st_count(c->src);
    c->outs = calloc((size_t)n + 1, sizeof *c->outs);
    if (!c->outs)
        return cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        st_info info;
        st_info_at(c->src, i, &info);
        if (strstr(info.name, "num_batches_tracked"))
            continue;
        int rc = derive_tensor(c, &info);
        if (rc)
            return rc;
    }
    for (int i = 0; c->adapters && i < st_count(c->adapters); i++) {
        st_info info;
        st_info_at(c->adapters, i, &info);
        if (!c->adapter_used[i])
            return cin_err_set(c->err, CIN_E_UNSUPPORTED, "%s: tensor '%s': neither an adapter "
                               "(<layer>.adapter.rows/.cols, <layer>.adapter) of a layer of %s "
                               "nor one of its tensors", c->o->adapters, info.name,
                               c->o->source);
    }
    return 0;
}

/* Mask i of the file written: the inner masks, then (when stages are pruned) every block's
 * conv_c mask and the shortcuts'. */
static float *mask_values(const dctx *c, int i, char name[192], int *n)
{
    const block *b = &c->blocks[i % c->n_blocks];
    char other[192];
    chmask m = {b->keep, b->n_keep};
    *n = b->inner;
    if (i < c->n_blocks) {
        snprintf(name, 192, "%s%s.out_mask", b->prefix, conv_a_leaf(c));
    } else {
        m = c->stages[b->stage].m;
        *n = c->stages[b->stage].width;
        if (i < 2 * c->n_blocks)
            stage_mask_names(c, b, name, other);
        else
            stage_mask_names(c, b, other, name);
    }
    float *v = calloc((size_t)*n, sizeof *v);
    for (int k = 0; v && k < (m.keep ? m.n : *n); k++)
        v[m.keep ? m.keep[k] : k] = 1.0f;
    return v;
}

static int write_masks(dctx *c)
{
    int total = c->stage_pruned ? 3 * c->n_blocks : c->n_blocks, n = 0, rc = 0;
    st_out *t = calloc((size_t)total, sizeof *t);
    char (*names)[192] = calloc((size_t)total, sizeof *names);
    if (!t || !names)
        rc = cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < total; i++) {
        if (i >= 2 * c->n_blocks && c->blocks[i % c->n_blocks].index != 0)
            continue;
        int len;
        float *v = mask_values(c, i, names[n], &len);
        if (!v)
            rc = cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
        t[n] = (st_out){.name = names[n], .ndim = 1, .shape = {len}, .data = v};
        n += v != NULL;
    }
    const char *meta[] = {"cin.derive.masks", c->stage_pruned ? "x3d-stages" : "x3d-inner",
                          NULL};
    rc = rc ? rc : st_write(c->o->write_masks, t, n, meta, c->err);
    for (int i = 0; t && i < n; i++)
        free((float *)t[i].data);
    free(t);
    free(names);
    return rc;
}

int derive_open(dctx *c)
{
    const derive_opts *o = c->o;
    if (!o->masks && !(o->ratio >= 0.0 && o->ratio < 1.0))
        return cin_err_set(c->err, CIN_E_INVAL, "derive: ratio %g, expected 0 <= ratio < 1",
                           o->ratio);
    if (!(o->stage_ratio >= 0.0 && o->stage_ratio < 1.0))
        return cin_err_set(c->err, CIN_E_INVAL, "derive: stage ratio %g, expected 0 <= ratio "
                           "< 1", o->stage_ratio);
    int rc = st_open(o->source, &c->src, c->err);
    if (rc)
        return rc;
    if (o->adapters && (rc = st_open(o->adapters, &c->adapters, c->err)) == 0) {
        c->adapter_used = calloc((size_t)st_count(c->adapters) + 1, 1);
        rc = c->adapter_used ? 0 : cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    }
    return rc;
}

static int open_inputs(dctx *c)
{
    int rc = derive_open(c);
    if (rc)
        return rc;
    c->slowfast = st_find(c->src, "s1.pathway0_stem.conv_xy.weight", NULL, NULL) == 0;
    return find_blocks(c);
}

static void summarise(dctx *c)
{
    c->stats.unit = "bottlenecks";
    c->stats.blocks = c->n_blocks;
    for (int i = 0; i < c->n_blocks; i++) {
        c->stats.inner_before += c->blocks[i].inner;
        c->stats.inner_after += c->blocks[i].n_keep;
    }
}

void derive_close(dctx *c)
{
    for (int i = 0; i < c->n_outs; i++) {
        free((char *)c->outs[i].name);
        free((float *)c->outs[i].data);
    }
    free(c->outs);
    free(c->adapter_used);
    st_close(c->src);
    st_close(c->adapters);
    st_close(c->masks);
}

static void dctx_free(dctx *c)
{
    for (int i = 0; i < c->n_blocks; i++)
        free(c->blocks[i].keep);
    for (int s = 0; s < 5; s++)
        free(c->stages[s].m.keep);
    free(c->blocks);
    derive_close(c);
}

int derive_write(dctx *c, const char *kind)
{
    const char *meta[] = {"format", "pt", "cin.derive", kind, NULL};
    return st_write(c->o->out, c->outs, c->n_outs, meta, c->err);
}

int derive_chmask_of(dctx *c, const float *mask01, int n, chmask *m)
{
    m->keep = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    m->n = 0;
    if (!m->keep)
        return cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (mask01[i] != 0.0f)
            m->keep[m->n++] = i;
    return 0;
}

/* Blocks the masks file did not name keep every channel. */
static int keep_unnamed(dctx *c)
{
    for (int i = 0; i < c->n_blocks; i++) {
        block *b = &c->blocks[i];
        if (b->keep)
            continue;
        float *all = malloc(sizeof(float) * (size_t)b->inner);
        for (int k = 0; all && k < b->inner; k++)
            all[k] = 1.0f;
        int rc = all ? set_keep(c, b, all) : cin_err_set(c->err, CIN_E_NOMEM, "out of memory");
        free(all);
        if (rc)
            return rc;
    }
    return 0;
}

int derive_x3d(const derive_opts *o, derive_stats *s, cin_err *err)
{
    cin_err_clear(err);
    dctx c = {.o = o, .err = err, .slices = slices_of};
    int rc = open_inputs(&c);
    if (!rc)
        rc = o->masks ? read_masks(&c) : compute_masks(&c);
    rc = rc ? rc : keep_unnamed(&c);
    if (!rc && !o->masks && o->stage_ratio > 0.0)
        rc = compute_stage_masks(&c);
    rc = rc ? rc : derive_tensors(&c);
    rc = rc ? rc : derive_write(&c, c.stage_pruned ? "x3d-stages" : "x3d-inner");
    rc = rc || !o->write_masks ? rc : write_masks(&c);
    summarise(&c);
    if (s)
        *s = c.stats;
    dctx_free(&c);
    return rc;
}

/* 1 if a and b name the same file: the same inode when both exist, else the same path. */
static int derive_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b)
        return 0;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* The outputs must not overwrite an input or each other. */
static int derive_check_paths(const derive_opts *o, cin_err *err)
{
    const struct {
        const char *path, *what;
    } in[] = {{o->source, "the source"}, {o->masks, "the masks"},
              {o->adapters, "the adapters"}, {o->write_masks, "the masks to write"}};
    const char *out[2] = {o->out, o->write_masks};
    const char *what[2] = {"the output", "the masks output"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; out[k] && i < 3 + !k; i++)     /* write_masks is in[3] */
            if (derive_same_file(out[k], in[i].path))
                return cin_err_set(err, CIN_E_INVAL, "%s: %s is also %s; it would be "
                                   "overwritten", out[k], what[k], in[i].what);
    return 0;
}

int derive_model(const derive_opts *o, derive_stats *s, cin_err *err)
{
    st_file *f;
    int rc = derive_check_paths(o, err);
    if (rc)
        return rc;
    rc = st_open(o->source, &f, err);
    if (rc)
        return rc;
    int stgcn = st_find(f, "st_gcn_networks.0.gcn.conv.weight", NULL, NULL) == 0 ||
                st_find(f, "layers.layer1.tcn.t_conv.weight", NULL, NULL) == 0;
    int tfm = st_find(f, "layers.0.linear1.weight", NULL, NULL) == 0;
    st_close(f);
    if (stgcn)
        return derive_stgcn(o, s, err);
    return tfm ? derive_transformer(o, s, err) : derive_x3d(o, s, err);
}
