/* ST-GCN's channel couplings for cin-derive (see derive.h, docs/derive.md), under yysijie/st-gcn
 * names (st_gcn_networks.N) or continual-skeletons' (layers.layerN). Each block has an inner
 * width, the graph convolution's output that the temporal convolution reads, and an output
 * width. Masks live in slots; channels that are added one to one share a slot: a block whose
 * residual is the identity has its input's slot as its output's, and in continual-skeletons'
 * layout a graph convolution whose own residual is the identity has its input's slot as its
 * inner one. yysijie's gcn.conv writes K * C channels, channel k * C + c being partition k of
 * channel c, so one inner mask of C selects K rows each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive_impl.h"

enum { SG_MAX_BLOCKS = 16, SG_MAX_SLOTS = 2 * SG_MAX_BLOCKS + 1, SG_NAME = 192 };

/* What a dimension of a block's tensor is: not pruned, the block's input, inner or output. */
typedef enum sg_role { R_ALL, R_IN, R_INNER, R_OUT } sg_role;

/* phase 0: never pruned (the input joints' channels); 1: an inner width (--ratio); 2: a block
 * output (--stage-ratio). */
typedef struct sg_slot {
    int width, phase;
    chmask m;                 /* keep NULL until decided */
    char given_by[SG_NAME];   /* the mask tensor that set it */
} sg_slot;

typedef struct sg_block {
    char prefix[48];
    int in, inner, out;       /* slot ids */
    int cin, cout;
    int conv_res, gcn_res;    /* a 1x1 conv residual; continual-skeletons' conv gcn_residual */
    chmask inner_k;           /* yysijie: the inner mask over the K partitions' rows */
} sg_block;

typedef struct sg_ctx {
    dctx c;
    int coskel, k, n_blocks, n_slots;
    sg_block b[SG_MAX_BLOCKS];
    sg_slot s[SG_MAX_SLOTS];
} sg_ctx;

typedef struct sg_rule {
    const char *rest;         /* after the block's prefix; a trailing '.' matches any leaf */
    sg_role out, in;
    int partitioned;          /* the outputs are K partitions of the inner width */
} sg_rule;

static const sg_rule yy_rules[] = {
    {"gcn.conv.", R_INNER, R_IN, 1}, {"tcn.0.", R_INNER, R_ALL, 0}, {"tcn.2.", R_OUT, R_INNER, 0},
    {"tcn.3.", R_OUT, R_ALL, 0}, {"residual.0.", R_OUT, R_IN, 0}, {"residual.1.", R_OUT, R_ALL, 0},
    {NULL, R_ALL, R_ALL, 0}};
static const sg_rule cs_rules[] = {
    {"gcn.g_conv.", R_INNER, R_IN, 0}, {"gcn.gcn_residual.0.", R_INNER, R_IN, 0},
    {"gcn.gcn_residual.1.", R_INNER, R_ALL, 0}, {"gcn.bn.", R_INNER, R_ALL, 0},
    {"tcn.t_conv.", R_OUT, R_INNER, 0}, {"tcn.bn.", R_OUT, R_ALL, 0},
    {"residual.t_conv.", R_OUT, R_IN, 0}, {"residual.bn.", R_OUT, R_ALL, 0},
    {NULL, R_ALL, R_ALL, 0}};

static int has(const sg_ctx *g, const char *prefix, const char *leaf, st_info *info)
{
    char name[SG_NAME];
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    return st_find(g->c.src, name, info, NULL) == 0;
}

static const char *gcn_leaf(const sg_ctx *g)
{
    return g->coskel ? "gcn.g_conv.0.weight" : "gcn.conv.weight";
}

static const char *tcn_leaf(const sg_ctx *g)
{
    return g->coskel ? "tcn.t_conv.weight" : "tcn.2.weight";
}

static int new_slot(sg_ctx *g, int width, int phase)
{
    g->s[g->n_slots] = (sg_slot){.width = width, .phase = phase};
    return g->n_slots++;
}

/* A tie that the source's widths break: an identity residual between different widths. */
static int tie(sg_ctx *g, const sg_block *b, const char *what)
{
    return cin_err_set(g->c.err, CIN_E_FORMAT, "%s: block %s has %d input and %d output "
                       "channels but %s is the identity", g->c.o->source, b->prefix, b->cin,
                       b->cout, what);
}

/* The block's widths, residuals and slots, from its tensors' shapes. */
static int read_block(sg_ctx *g, sg_block *b, int i)
{
    st_info gi, ti;
    if (!has(g, b->prefix, tcn_leaf(g), &ti) || !has(g, b->prefix, gcn_leaf(g), &gi))
        return cin_err_set(g->c.err, CIN_E_NOTFOUND, "%s: tensor '%s%s' not found (block %d "
                           "has '%s%s')", g->c.o->source, b->prefix, tcn_leaf(g), i,
                           b->prefix, gcn_leaf(g));
    b->cout = (int)ti.shape[0];
    b->cin = (int)gi.shape[1];
    int k = g->coskel ? 0 : (int)(gi.shape[0] / (b->cout > 0 ? b->cout : 1));
    while (g->coskel && k < 8) {
        char leaf[48];
        snprintf(leaf, sizeof leaf, "gcn.g_conv.%d.weight", k);
        if (!has(g, b->prefix, leaf, NULL))
            break;
        k++;
    }
    if (k < 1 || (!g->coskel && gi.shape[0] != (int64_t)k * b->cout) || (i && k != g->k))
        return cin_err_set(g->c.err, CIN_E_SHAPE, "%s: tensor '%s%s': %lld output channels, "
                           "expected K partitions of %d", g->c.o->source, b->prefix,
                           gcn_leaf(g), (long long)gi.shape[0], b->cout);
    g->k = k;
    b->conv_res = has(g, b->prefix, g->coskel ? "residual.t_conv.weight" : "residual.0.weight",
                      NULL);
    b->gcn_res = g->coskel && has(g, b->prefix, "gcn.gcn_residual.0.weight", NULL);
    b->in = i ? g->b[i - 1].out : new_slot(g, b->cin, 0);
    if (i && b->cin != g->s[b->in].width)
        return cin_err_set(g->c.err, CIN_E_SHAPE, "%s: tensor '%s%s': %d input channels, "
                           "expected %d (the previous block's output)", g->c.o->source,
                           b->prefix, gcn_leaf(g), b->cin, g->s[b->in].width);
    if (g->coskel && !b->gcn_res && b->cin != b->cout)
        return tie(g, b, "its graph convolution's residual");
    if (i && !b->conv_res && b->cin != b->cout)
        return tie(g, b, "its residual");
    b->inner = g->coskel && !b->gcn_res ? b->in : new_slot(g, b->cout, 1);
    b->out = i && !b->conv_res ? b->in : new_slot(g, b->cout, 2);
    return 0;
}

static int find_blocks(sg_ctx *g)
{
    if (g->coskel && st_find(g->c.src, "layers.layer1.gcn.a_conv.0.weight", NULL, NULL) == 0)
        return cin_err_set(g->c.err, CIN_E_UNSUPPORTED, "%s: tensor "
                           "'layers.layer1.gcn.a_conv.0.weight': an AGCN checkpoint; cin-derive "
                           "derives X3D, ST-GCN and transformers", g->c.o->source);
    for (int i = 0; i < SG_MAX_BLOCKS; i++) {
        sg_block *b = &g->b[i];
        snprintf(b->prefix, sizeof b->prefix, g->coskel ? "layers.layer%d." :
                 "st_gcn_networks.%d.", g->coskel ? i + 1 : i);
        if (!has(g, b->prefix, gcn_leaf(g), NULL))
            break;
        int rc = read_block(g, b, i);
        if (rc)
            return rc;
        g->n_blocks++;
    }
    if (!g->n_blocks)
        return cin_err_set(g->c.err, CIN_E_NOTFOUND, "%s: no ST-GCN block found: no tensor "
                           "named '%s%s'", g->c.o->source, g->coskel ? "layers.layer1." :
                           "st_gcn_networks.0.", gcn_leaf(g));
    return 0;
}

static int rule_matches(const char *rest, const char *rule)
{
    size_t n = strlen(rule);
    return rule[n - 1] == '.' ? strncmp(rest, rule, n) == 0 : strcmp(rest, rule) == 0;
}

/* The block and rule of source tensor name; the classifier gets R_IN of a block past the
 * last (whose input is the last block's output). 0 when nothing of it is pruned. */
static int find_rule(const sg_ctx *g, const char *name, int *bi, sg_rule *r)
{
    if (strcmp(name, g->coskel ? "fc.weight" : "fcn.weight") == 0) {
        *bi = g->n_blocks;
        *r = (sg_rule){name, R_ALL, R_IN, 0};
        return 1;
    }
    for (int i = 0; i < g->n_blocks; i++) {
        size_t n = strlen(g->b[i].prefix);
        if (strncmp(name, g->b[i].prefix, n) != 0)
            continue;
        for (const sg_rule *k = g->coskel ? cs_rules : yy_rules; k->rest; k++)
            if (rule_matches(name + n, k->rest)) {
                *bi = i;
                *r = *k;
                return 1;
            }
    }
    return 0;
}

/* The slot of a role of block bi (bi == n_blocks: the classifier's input), or -1. */
static int slot_of(const sg_ctx *g, int bi, sg_role role)
{
    if (bi == g->n_blocks)
        return role == R_IN ? g->b[bi - 1].out : -1;
    const sg_block *b = &g->b[bi];
    return role == R_IN ? b->in : role == R_INNER ? b->inner : role == R_OUT ? b->out : -1;
}

static chmask mask_of(const sg_ctx *g, int slot)
{
    return slot < 0 ? (chmask){NULL, 0} : g->s[slot].m;
}

static void sg_slices(const dctx *c, const char *name, chmask *out, chmask *in)
{
    const sg_ctx *g = c->model;
    int bi;
    sg_rule r;
    *out = *in = (chmask){NULL, 0};
    if (!find_rule(g, name, &bi, &r))
        return;
    *out = r.partitioned ? g->b[bi].inner_k : mask_of(g, slot_of(g, bi, r.out));
    *in = mask_of(g, slot_of(g, bi, r.in));
}

/* ---- computed masks ---- */

/* Adds to score [width] the filter norms of every source weight that writes the channels of
 * slot s, their inputs sliced by an inner mask already chosen; row k * C + c of yysijie's
 * gcn.conv counts for channel c. */
static int slot_scores(sg_ctx *g, int s, double *score)
{
    int rc = 0;
    for (int t = 0; !rc && t < st_count(g->c.src); t++) {
        st_info info;
        st_info_at(g->c.src, t, &info);
        int bi;
        sg_rule r;
        if (info.ndim < 2 || !find_rule(g, info.name, &bi, &r) || slot_of(g, bi, r.out) != s)
            continue;
        int in = slot_of(g, bi, r.in), rows = (int)info.shape[0];
        chmask m = in >= 0 && g->s[in].phase == 1 ? g->s[in].m : (chmask){NULL, 0};
        double *row = calloc((size_t)rows + 1, sizeof *row);
        rc = row ? derive_layer_norms(&g->c, info.name, m, row)
                 : cin_err_set(g->c.err, CIN_E_NOMEM, "out of memory");
        for (int o = 0; !rc && o < rows; o++)
            score[o % g->s[s].width] += row[o];
        free(row);
    }
    return rc;
}

static int compute_slot(sg_ctx *g, int s, double ratio)
{
    int w = g->s[s].width, rc;
    double *score = calloc((size_t)w + 1, sizeof *score);
    float *mask = malloc(sizeof(float) * ((size_t)w + 1));
    rc = score && mask ? slot_scores(g, s, score)
                       : cin_err_set(g->c.err, CIN_E_NOMEM, "out of memory");
    if (!rc) {
        derive_mask_from_scores(score, w, derive_keep_count(w, ratio), mask);
        rc = derive_chmask_of(&g->c, mask, w, &g->s[s].m);
    }
    free(score);
    free(mask);
    return rc;
}

/* Inner widths first (at --ratio), then block outputs (at --stage-ratio, when given). */
static int compute_masks(sg_ctx *g)
{
    int rc = 0;
    for (int phase = 1; phase <= 2; phase++) {
        double ratio = phase == 1 ? g->c.o->ratio : g->c.o->stage_ratio;
        for (int s = 0; !rc && ratio > 0.0 && s < g->n_slots; s++)
            if (g->s[s].phase == phase)
                rc = compute_slot(g, s, ratio);
    }
    return rc;
}

/* ---- given masks ---- */

/* Mask name j of block bi and its slot; -1: none at j (a residual the block lacks), -2: past
 * the last. */
static int mask_name(const sg_ctx *g, int bi, int j, char name[SG_NAME])
{
    const sg_block *b = &g->b[bi];
    static const char *const yy[] = {"gcn.conv", "tcn.2", "residual.0"};
    static const char *const cs[] = {"gcn.gcn_residual.0", "tcn.t_conv", "residual.t_conv"};
    int gk = g->coskel ? g->k : 0;
    if (j < gk) {
        snprintf(name, SG_NAME, "%sgcn.g_conv.%d.out_mask", b->prefix, j);
        return b->inner;
    }
    j -= gk;
    if (j > 2)
        return -2;
    snprintf(name, SG_NAME, "%s%s.out_mask", b->prefix, g->coskel ? cs[j] : yy[j]);
    if ((j == 0 && g->coskel && !b->gcn_res) || (j == 2 && !b->conv_res))
        return -1;
    return j == 0 ? b->inner : b->out;
}

/* The slot of mask `name`, or -1; *bi gets its block. */
static int mask_slot(const sg_ctx *g, const char *name, int *bi)
{
    char want[SG_NAME];
    for (int i = 0; i < g->n_blocks; i++)
        for (int j = 0, s; (s = mask_name(g, i, j, want)) != -2; j++)
            if (s >= 0 && strcmp(want, name) == 0) {
                *bi = i;
                return s;
            }
    return -1;
}

static int unknown_mask(sg_ctx *g, const char *name)
{
    return cin_err_set(g->c.err, CIN_E_UNSUPPORTED, "%s: tensor '%s': not a mask cin can apply "
                       "to %s; expected <block>.%s.out_mask (a block's inner width) or "
                       "<block>.%s.out_mask (its output), <block> as '%s'", g->c.o->masks,
                       name, g->c.o->source, g->coskel ? "gcn.g_conv.<k>" : "gcn.conv",
                       g->coskel ? "tcn.t_conv" : "tcn.2", g->b[0].prefix);
}

/* yysijie's gcn.conv mask may also be [K * C], the same [C] for every partition. */
static int fold_partitions(sg_ctx *g, const char *name, float *m, int64_t n, int width)
{
    for (int64_t i = width; i < n; i++)
        if (m[i] != m[i % width])
            return cin_err_set(g->c.err, CIN_E_FORMAT, "%s: tensor '%s': partition %lld keeps "
                               "other channels than partition 0, expected the same mask for "
                               "each of the %d (element %lld)", g->c.o->masks, name,
                               (long long)(i / width), g->k, (long long)i);
    return 0;
}

/* Sets slot s, or checks that it equals what another mask gave it. */
static int set_slot(sg_ctx *g, int s, const char *name, const float *m)
{
    sg_slot *slot = &g->s[s];
    if (!slot->m.keep) {
        snprintf(slot->given_by, sizeof slot->given_by, "%s", name);
        return derive_chmask_of(&g->c, m, slot->width, &slot->m);
    }
    int n = 0, same = 1;
    for (int k = 0; k < slot->width && same; k++)
        if (m[k] != 0.0f)
            same = n < slot->m.n && slot->m.keep[n++] == k;
    if (same && n == slot->m.n)
        return 0;
    return cin_err_set(g->c.err, CIN_E_FORMAT, "%s: tensors '%s' and '%s' disagree, expected "
                       "the same mask: their channels are added one to one (an identity "
                       "residual, or the sum over the graph's partitions)", g->c.o->masks,
                       slot->given_by, name);
}

static int read_one_mask(sg_ctx *g, int t)
{
    st_info info;
    st_info_at(g->c.masks, t, &info);
    int bi, s = mask_slot(g, info.name, &bi);
    if (s < 0)
        return unknown_mask(g, info.name);
    int w = g->s[s].width;
    int partitioned = !g->coskel && s == g->b[bi].inner && strstr(info.name, ".gcn.conv.");
    int64_t n = info.ndim == 1 ? info.shape[0] : -1;
    if (n != w && !(partitioned && n == (int64_t)g->k * w))
        return cin_err_set(g->c.err, CIN_E_SHAPE, "%s: tensor '%s': %lld elements in %d "
                           "dimensions, expected [%d]%s", g->c.o->masks, info.name,
                           info.ndim ? (long long)info.shape[0] : 1LL, info.ndim, w,
                           partitioned ? " or [K * that] (one per partition)" : "");
    float *m;
    int rc = derive_read_all(g->c.masks, info.name, &info, &m, g->c.err);
    rc = rc ? rc : fold_partitions(g, info.name, m, n, w);
    rc = rc ? rc : derive_check_mask(&g->c, info.name, m, w);
    rc = rc ? rc : set_slot(g, s, info.name, m);
    free(m);
    return rc;
}

static int read_masks(sg_ctx *g)
{
    int rc = st_open(g->c.o->masks, &g->c.masks, g->c.err);
    for (int t = 0; !rc && t < st_count(g->c.masks); t++)
        rc = read_one_mask(g, t);
    return rc;
}

/* Undecided slots keep every channel; then the partitioned inner masks. */
static int complete_masks(sg_ctx *g)
{
    for (int s = 0; s < g->n_slots; s++) {
        sg_slot *slot = &g->s[s];
        slot->m.keep = slot->m.keep ? slot->m.keep : malloc(sizeof(int) * (size_t)slot->width);
        if (!slot->m.keep)
            return cin_err_set(g->c.err, CIN_E_NOMEM, "out of memory");
        for (int k = 0; !slot->m.n && k < slot->width; k++)
            slot->m.keep[k] = k;
        slot->m.n = slot->m.n ? slot->m.n : slot->width;
    }
    for (int i = 0; i < g->n_blocks; i++) {
        sg_block *b = &g->b[i];
        chmask m = g->s[b->inner].m;
        b->inner_k = (chmask){malloc(sizeof(int) * (size_t)(g->k * m.n)), g->k * m.n};
        if (!b->inner_k.keep)
            return cin_err_set(g->c.err, CIN_E_NOMEM, "out of memory");
        for (int k = 0; k < g->k; k++)
            for (int j = 0; j < m.n; j++)
                b->inner_k.keep[k * m.n + j] = k * b->cout + m.keep[j];
    }
    return 0;
}

/* ---- output ---- */

/* Every mask name of every block with its slot's values; yysijie's gcn.conv mask is written
 * [K * C], as the library's out_features_mask of that layer needs it. */
static int write_masks(sg_ctx *g)
{
    st_out t[SG_MAX_BLOCKS * 12];
    char names[SG_MAX_BLOCKS * 12][SG_NAME];
    int n = 0, rc = 0;
    for (int i = 0; i < g->n_blocks && !rc; i++)
        for (int j = 0, s; !rc && (s = mask_name(g, i, j, names[n])) != -2; j++) {
            if (s < 0 || n == SG_MAX_BLOCKS * 12)
                continue;
            int w = g->s[s].width, reps = !g->coskel && j == 0 ? g->k : 1;
            float *v = calloc((size_t)w * reps, sizeof *v);
            rc = v ? 0 : cin_err_set(g->c.err, CIN_E_NOMEM, "out of memory");
            for (int k = 0; v && k < g->s[s].m.n * reps; k++)
                v[(k / g->s[s].m.n) * w + g->s[s].m.keep[k % g->s[s].m.n]] = 1.0f;
            t[n] = (st_out){.name = names[n], .ndim = 1, .shape = {(int64_t)w * reps},
                            .data = v};
            n += v != NULL;
        }
    const char *meta[] = {"cin.derive.masks", "stgcn", NULL};
    rc = rc ? rc : st_write(g->c.o->write_masks, t, n, meta, g->c.err);
    for (int i = 0; i < n; i++)
        free((float *)t[i].data);
    return rc;
}

static void summarise(sg_ctx *g)
{
    derive_stats *st = &g->c.stats;
    st->blocks = g->n_blocks;
    st->unit = "ST-GCN blocks";
    for (int i = 0; i < g->n_blocks; i++) {
        const sg_block *b = &g->b[i];
        st->inner_before += b->cout;
        st->inner_after += g->s[b->inner].m.keep ? g->s[b->inner].m.n : b->cout;
        st->out_before += b->cout;
        st->out_after += g->s[b->out].m.keep ? g->s[b->out].m.n : b->cout;
    }
}

static void sg_free(sg_ctx *g)
{
    for (int s = 0; s < g->n_slots; s++)
        free(g->s[s].m.keep);
    for (int i = 0; i < g->n_blocks; i++)
        free(g->b[i].inner_k.keep);
    derive_close(&g->c);
}

int derive_stgcn(const derive_opts *o, derive_stats *s, cin_err *err)
{
    cin_err_clear(err);
    sg_ctx *g = calloc(1, sizeof *g);
    if (!g)
        return cin_err_set(err, CIN_E_NOMEM, "derive: out of memory");
    g->c = (dctx){.o = o, .err = err, .slices = sg_slices, .model = g};
    int rc = derive_open(&g->c);
    g->coskel = !rc && st_find(g->c.src, "layers.layer1.tcn.t_conv.weight", NULL, NULL) == 0;
    rc = rc ? rc : find_blocks(g);
    if (!rc)
        rc = o->masks ? read_masks(g) : compute_masks(g);
    rc = rc ? rc : complete_masks(g);
    rc = rc ? rc : derive_tensors(&g->c);
    rc = rc ? rc : derive_write(&g->c, "stgcn");
    rc = rc || !o->write_masks ? rc : write_masks(g);
    summarise(g);
    if (s)
        *s = g->c.stats;
    sg_free(g);
    free(g);
    return rc;
}
