/* Transformer encoders for cin-derive (see derive.h, docs/derive.md), under
 * torch.nn.TransformerEncoderLayer's names (layers.N.*): each layer's feed-forward width, the
 * outputs of linear1 and the inputs of linear2, is pruned by one mask; nothing else is. The
 * attention projections take adapters under structured-pruning-adapters' names
 * (SPLoRAMultiheadAttention: self_attn.{q,k,v}_proj.adapter..., fused into the thirds of the
 * packed self_attn.in_proj_weight, and self_attn.out_proj.adapter...), fused unpruned: the
 * residuals and layer norms tie d_model across the whole stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive_impl.h"

enum { TF_MAX_LAYERS = 16, TF_NAME = 96 };

typedef struct tf_ctx {
    dctx c;
    int n_layers;
    int ff[TF_MAX_LAYERS];
    chmask m[TF_MAX_LAYERS];   /* keep NULL until decided */
} tf_ctx;

/* The layer of `name` = layers.<l>.<leaf>, or -1. */
static int layer_of(const char *name, const char *leaf)
{
    int l, n = 0;
    if (sscanf(name, "layers.%d.%n", &l, &n) != 1 || n == 0 || l < 0 || l >= TF_MAX_LAYERS)
        return -1;
    return strcmp(name + n, leaf) == 0 ? l : -1;
}

static void tf_slices(const dctx *c, const char *name, chmask *out, chmask *in)
{
    const tf_ctx *t = c->model;
    int l;
    *out = *in = (chmask){NULL, 0};
    if ((l = layer_of(name, "linear1.weight")) >= 0 || (l = layer_of(name, "linear1.bias")) >= 0)
        *out = l < t->n_layers ? t->m[l] : *out;
    else if ((l = layer_of(name, "linear2.weight")) >= 0)
        *in = l < t->n_layers ? t->m[l] : *in;
}

/* in_proj_weight [3 d_model, d_model] packs the query, key and value projections, which the
 * library adapts as three Linear layers of their own. */
static int tf_parts(const char *name, char layers[][DERIVE_LAYER])
{
    int l = layer_of(name, "self_attn.in_proj_weight");
    if (l < 0)
        return 0;
    const char *proj[3] = {"q_proj", "k_proj", "v_proj"};
    for (int p = 0; p < 3; p++)
        snprintf(layers[p], DERIVE_LAYER, "layers.%d.self_attn.%s", l, proj[p]);
    return 3;
}

static int find_layers(tf_ctx *t)
{
    for (int l = 0; l < TF_MAX_LAYERS; l++) {
        char name[TF_NAME];
        st_info info;
        snprintf(name, sizeof name, "layers.%d.linear1.weight", l);
        if (st_find(t->c.src, name, &info, NULL) != 0)
            break;
        if (info.ndim != 2)
            return cin_err_set(t->c.err, CIN_E_SHAPE, "%s: tensor '%s': %d dimensions, "
                               "expected [dim_feedforward, d_model]", t->c.o->source, name,
                               info.ndim);
        t->ff[t->n_layers++] = (int)info.shape[0];
    }
    if (!t->n_layers)
        return cin_err_set(t->c.err, CIN_E_NOTFOUND, "%s: no encoder layer found: no tensor "
                           "named 'layers.0.linear1.weight'", t->c.o->source);
    return 0;
}

static int compute_masks(tf_ctx *t)
{
    int rc = 0;
    for (int l = 0; !rc && t->c.o->ratio > 0.0 && l < t->n_layers; l++) {
        char name[TF_NAME];
        snprintf(name, sizeof name, "layers.%d.linear1.weight", l);
        double *score = calloc((size_t)t->ff[l] + 1, sizeof *score);
        float *mask = malloc(sizeof(float) * ((size_t)t->ff[l] + 1));
        rc = score && mask ? derive_layer_norms(&t->c, name, (chmask){NULL, 0}, score)
                           : cin_err_set(t->c.err, CIN_E_NOMEM, "out of memory");
        if (!rc) {
            derive_mask_from_scores(score, t->ff[l], derive_keep_count(t->ff[l],
                                    t->c.o->ratio), mask);
            rc = derive_chmask_of(&t->c, mask, t->ff[l], &t->m[l]);
        }
        free(score);
        free(mask);
    }
    return rc;
}

static int read_one_mask(tf_ctx *t, int i)
{
    st_info info;
    st_info_at(t->c.masks, i, &info);
    int l = layer_of(info.name, "linear1.out_mask");
    if (l < 0 || l >= t->n_layers)
        return cin_err_set(t->c.err, CIN_E_UNSUPPORTED, "%s: tensor '%s': not a mask cin can "
                           "apply to %s; expected layers.<0..%d>.linear1.out_mask (a layer's "
                           "feed-forward width)", t->c.o->masks, info.name, t->c.o->source,
                           t->n_layers - 1);
    if (info.ndim != 1 || info.shape[0] != t->ff[l])
        return cin_err_set(t->c.err, CIN_E_SHAPE, "%s: tensor '%s': %lld elements in %d "
                           "dimensions, expected [%d] (layer %d's dim_feedforward)",
                           t->c.o->masks, info.name, info.ndim ? (long long)info.shape[0] : 1LL,
                           info.ndim, t->ff[l], l);
    float *m;
    int rc = derive_read_all(t->c.masks, info.name, &info, &m, t->c.err);
    rc = rc ? rc : derive_check_mask(&t->c, info.name, m, t->ff[l]);
    rc = rc ? rc : derive_chmask_of(&t->c, m, t->ff[l], &t->m[l]);
    free(m);
    return rc;
}

static int read_masks(tf_ctx *t)
{
    int rc = st_open(t->c.o->masks, &t->c.masks, t->c.err);
    for (int i = 0; !rc && i < st_count(t->c.masks); i++)
        rc = read_one_mask(t, i);
    return rc;
}

/* layers.<l>.linear1.out_mask of every layer. */
static int write_masks(tf_ctx *t)
{
    st_out o[TF_MAX_LAYERS];
    char names[TF_MAX_LAYERS][TF_NAME];
    int rc = 0, n = 0;
    for (int l = 0; !rc && l < t->n_layers; l++) {
        float *v = calloc((size_t)t->ff[l], sizeof *v);
        rc = v ? 0 : cin_err_set(t->c.err, CIN_E_NOMEM, "out of memory");
        for (int k = 0; v && k < (t->m[l].keep ? t->m[l].n : t->ff[l]); k++)
            v[t->m[l].keep ? t->m[l].keep[k] : k] = 1.0f;
        snprintf(names[l], sizeof names[l], "layers.%d.linear1.out_mask", l);
        o[l] = (st_out){.name = names[l], .ndim = 1, .shape = {t->ff[l]}, .data = v};
        n += v != NULL;
    }
    const char *meta[] = {"cin.derive.masks", "transformer", NULL};
    rc = rc ? rc : st_write(t->c.o->write_masks, o, n, meta, t->c.err);
    for (int l = 0; l < n; l++)
        free((float *)o[l].data);
    return rc;
}

int derive_transformer(const derive_opts *o, derive_stats *s, cin_err *err)
{
    cin_err_clear(err);
    tf_ctx t = {.c = {.o = o, .err = err, .slices = tf_slices, .parts = tf_parts}};
    t.c.model = &t;
    int rc = derive_open(&t.c);
    if (!rc && o->stage_ratio > 0.0)
        rc = cin_err_set(err, CIN_E_INVAL, "%s: a stage ratio for a transformer, whose d_model "
                         "the residuals tie across every layer; expected --ratio alone",
                         o->source);
    rc = rc ? rc : find_layers(&t);
    if (!rc)
        rc = o->masks ? read_masks(&t) : compute_masks(&t);
    rc = rc ? rc : derive_tensors(&t.c);
    rc = rc ? rc : derive_write(&t.c, "transformer");
    rc = rc || !o->write_masks ? rc : write_masks(&t);
    t.c.stats.unit = "encoder layers";
    t.c.stats.blocks = t.n_layers;
    for (int l = 0; l < t.n_layers; l++) {
        t.c.stats.inner_before += t.ff[l];
        t.c.stats.inner_after += t.m[l].keep ? t.m[l].n : t.ff[l];
        free(t.m[l].keep);
    }
    if (s)
        *s = t.c.stats;
    derive_close(&t.c);
    return rc;
}
