/* The transformer model: input_proj (Linear), positional encoding (none, learned
 * `pos_embedding` or sinusoidal, recycled over the window), `layers.N` encoder layers, an
 * optional `cls_token`, and `head` (Linear). */
#include "cotransformer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linear.h"
#include "transformer.h"

typedef struct tctx {
    wsrc *w;
    cin_err *err;
    int failed;
    float *owned[64];   /* tensors read, freed after the graph has copied them */
    int n_owned;
} tctx;

static const float *get(tctx *c, const char *name, int ndim, int64_t d0, int64_t d1)
{
    if (c->failed || c->n_owned == 64)
        return NULL;
    int64_t shape[2] = {d0, d1};
    float *v;
    if (wsrc_get(c->w, name, ndim, shape, &v, c->err)) {
        c->failed = 1;
        return NULL;
    }
    return c->owned[c->n_owned++] = v;
}

/* Layer l's feed-forward width: dim_feedforward, or in a checkpoint written by cin-derive
 * (metadata cin.derive = "transformer") linear1's output rows, 1 to dim_feedforward; linear2
 * is then read with that width, so a wrong one is still refused. */
static int layer_ff(tctx *c, int l, int nominal)
{
    const char *how = wsrc_meta(c->w, "cin.derive");
    if (c->failed || !how || strcmp(how, "transformer") != 0)
        return nominal;
    char name[64];
    int ndim;
    int64_t shape[8];
    snprintf(name, sizeof name, "layers.%d.linear1.weight", l);
    c->failed = wsrc_shape(c->w, name, &ndim, shape, c->err) != 0;
    if (!c->failed && ndim == 2 && shape[0] >= 1 && shape[0] <= nominal)
        return (int)shape[0];
    if (!c->failed)
        cin_err_set(c->err, CIN_E_SHAPE, "%s: tensor '%s': %lld rows in %d dimensions, "
                    "expected 1 to %d in 2 (a derived feed-forward width)", wsrc_name(c->w),
                    name, ndim ? (long long)shape[0] : 0LL, ndim, nominal);
    c->failed = 1;
    return nominal;
}

static void release(tctx *c)
{
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
}

static void read_layer(tctx *c, int l, int d, int ff, tfm_layer_weights *w)
{
    char n[96];
    ff = layer_ff(c, l, ff);
    w->dim_ff = ff;
#define T(field, leaf, nd, a, b) \
    (snprintf(n, sizeof n, "layers.%d.%s", l, leaf), w->field = get(c, n, nd, a, b))
    T(in_proj_w, "self_attn.in_proj_weight", 2, 3 * d, d);
    T(in_proj_b, "self_attn.in_proj_bias", 1, 3 * d, 0);
    T(out_proj_w, "self_attn.out_proj.weight", 2, d, d);
    T(out_proj_b, "self_attn.out_proj.bias", 1, d, 0);
    T(linear1_w, "linear1.weight", 2, ff, d);
    T(linear1_b, "linear1.bias", 1, ff, 0);
    T(linear2_w, "linear2.weight", 2, d, ff);
    T(linear2_b, "linear2.bias", 1, d, 0);
    T(norm1_w, "norm1.weight", 1, d, 0);
    T(norm1_b, "norm1.bias", 1, d, 0);
    T(norm2_w, "norm2.weight", 1, d, 0);
    T(norm2_b, "norm2.bias", 1, d, 0);
#undef T
}

static int choice(const char *v, const char *const *names, const char *field, cin_err *err)
{
    for (int i = 0; names[i]; i++)
        if ((!v && i == 0) || (v && strcmp(v, names[i]) == 0))
            return i;
    cin_err_set(err, CIN_E_CONFIG, "transformer: %s '%s', expected one of %s, %s%s%s", field, v,
                names[0], names[1], names[2] ? ", " : "", names[2] ? names[2] : "");
    return -1;
}

static cin_node *linear_layer(tctx *c, const char *prefix, int in, int out)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    const float *w = get(c, wn, 2, out, in), *b = get(c, bn, 1, out, 0);
    cin_node *n = NULL;
    if (!c->failed && linear_create(in, out, w, b, &n, c->err))
        c->failed = 1;
    return n;
}

static cin_node *positions(tctx *c, int kind, int d, int window)
{
    if (kind == 0 || c->failed)
        return NULL;
    float *table = NULL;
    const float *learned = kind == 1 ? get(c, "pos_embedding", 2, window, d) : NULL;
    if (kind == 2 && (table = malloc(sizeof(float) * d * window)))
        tfm_sinusoid(d, window, table);
    cin_node *n = NULL;
    const float *src = kind == 1 ? learned : table;
    if (!src || tfm_posenc_create(d, window, src, &n, c->err))
        c->failed = 1;
    free(table);
    return n;
}

static cin_node *encoder(tctx *c, const cin_transformer_opts *o, int first)
{
    static const char *const acts[] = {"relu", "gelu", NULL};
    int act = choice(o->activation, acts, "activation", c->err);
    tfm_params p = {.d_model = o->d_model, .nhead = o->nhead, .dim_ff = o->dim_feedforward,
                    .window = o->window, .n_layers = o->layers, .norm_first = o->norm_first,
                    .activation = act == 1 ? ACT_GELU : ACT_RELU, .eps = 1e-5f,
                    .first = first ? TFM_FIRST_REGULAR : TFM_FIRST_RETROACTIVE};
    c->failed |= act < 0;
    for (int l = 0; l < o->layers && l < TFM_MAX_LAYERS; l++)
        read_layer(c, l, o->d_model, o->dim_feedforward, &p.layer[l]);
    if (o->class_token)
        p.cls_token = get(c, "cls_token", 1, o->d_model, 0);
    cin_node *n = NULL;
    if (!c->failed && tfm_create(&p, &n, c->err))
        c->failed = 1;
    return n;
}

int cotransformer_build(const cin_transformer_opts *o, int num_classes, wsrc *w,
                        cin_node **root, cin_err *err)
{
    static const char *const pos_kinds[] = {"none", "learned", "sinusoidal", NULL};
    static const char *const firsts[] = {"retroactive", "regular", NULL};
    *root = NULL;
    if (!o || o->input_dim < 1 || o->d_model < 1 || o->nhead < 1 || o->window < 1 ||
        o->dim_feedforward < 1)
        return cin_err_set(err, CIN_E_CONFIG, "transformer: input_dim, d_model, nhead, "
                           "dim_feedforward and window must be given (>= 1)");
    if (o->layers < 1 || o->layers > TFM_MAX_LAYERS)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "transformer: layers %d; continual stacks "
                           "have 1 or 2 (a deeper one would not equal the regular encoder)",
                           o->layers);
    int pos = choice(o->pos, pos_kinds, "pos", err);
    int first = choice(o->first_layer, firsts, "first_layer", err);
    if (pos < 0 || first < 0)
        return CIN_E_CONFIG;

    cin_err_clear(err);
    tctx c = {.w = w, .err = err};
    cin_node_list l = {0};
    cin_node_list_push(&l, linear_layer(&c, "input_proj", o->input_dim, o->d_model));
    if (pos)
        cin_node_list_push(&l, positions(&c, pos, o->d_model, o->window));
    cin_node_list_push(&l, encoder(&c, o, first));
    cin_node_list_push(&l, linear_layer(&c, "head", o->d_model, num_classes));
    release(&c);
    return cin_node_list_seq(&l, root, err);
}
