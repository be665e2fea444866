/* Transformer encoder layers over a sliding window, in both modes (see transformer.h).
 *
 * A window holds `rows` tokens: the last n frames' tokens in a ring (slot t mod n for frame t)
 * and, when there is one, the class token in row n. Attention does not depend on the order of
 * its keys, so the ring is never rotated. Layer l maps token x to
 *   post-norm: y = LN1(x + O(att(x))),  z = LN2(y + F(y))
 *   pre-norm:  y = x + O(att(LN1(x))),  z = y + F(LN2(y))
 * with O the output projection and F the feed-forward block, as torch computes them.
 *
 * The retroactive first layer keeps, for every query row and head, the running softmax sums
 * over the keys of the window in double precision with their own maximum: a step removes the
 * oldest key and adds the newest. Where a removal cancels most of a row's mass the row is
 * summed afresh, and the class token's row (the only one that outlives a window) is summed
 * afresh every n steps, so no error accumulates over long streams. */
#include "transformer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct tfm_layer {
    int ff;                 /* the feed-forward width (a derived model prunes it per layer) */
    float *in_w, *in_b, *out_w, *out_b, *l1_w, *l1_b, *l2_w, *l2_b, *n1_w, *n1_b, *n2_w, *n2_b;
} tfm_layer;

typedef struct tfm {
    cin_node base;
    int d, h, dh, ff, n, rows, layers, norm_first, has_cls;   /* ff: the widest layer's */
    act_kind act;
    float eps;
    tfm_first_form first;
    tfm_layer L[TFM_MAX_LAYERS];
    float *cls;             /* [d], the class token */
    float *cls_qkv;         /* [3d], its first-layer projections */
    float *mem;             /* every array above */
    size_t st_x, st_qkv, st_acc;   /* byte offsets in the stream state */
} tfm;

typedef struct tfm_state {
    int64_t t;
} tfm_state;

/* Scratch of one window's computation, carved from the caller's floats: row-major arrays of
 * `rows` rows (hid: of max(ff, d) columns). */
typedef struct work {
    float *a, *t, *y, *n2, *hid, *ln, *scores, *z, *qkv2, *old_kv;
} work;

static size_t acc_stride(const tfm *m)
{
    return (size_t)m->dh + 2; /* max, denominator, numerator[dh] */
}

/* ---- kernels ---- */

static void layer_norm(const float *x, const float *g, const float *b, int d, float eps,
                       float *y)
{
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < d; i++)
        mean += x[i];
    mean /= d;
    for (int i = 0; i < d; i++)
        var += (x[i] - mean) * (x[i] - mean);
    float inv = (float)(1.0 / sqrt(var / d + eps));
    for (int i = 0; i < d; i++)
        y[i] = (float)(x[i] - mean) * inv * g[i] + b[i];
}

/* y[rows][out] = x[rows][in] W^T + b, with W [out][in] as torch stores it. */
static void affine_rows(const float *w, const float *b, int rows, int out, int in,
                        const float *x, float *y)
{
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * out, b, sizeof(float) * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in,
                1.0f, y, out);
}

static void norm_rows(const tfm *m, const float *g, const float *b, const float *x, int rows,
                      float *y)
{
    for (int r = 0; r < rows; r++)
        layer_norm(x + (size_t)r * m->d, g, b, m->d, m->eps, y + (size_t)r * m->d);
}

/* qkv[rows][3d] = in_proj of each row of x, after the first norm in a pre-norm layer. */
static void rows_qkv(const tfm *m, const tfm_layer *L, const float *x, int rows, float *qkv,
                     float *ln)
{
    const float *in = x;
    if (m->norm_first) {
        norm_rows(m, L->n1_w, L->n1_b, x, rows, ln);
        in = ln;
    }
    affine_rows(L->in_w, L->in_b, rows, 3 * m->d, m->d, in, qkv);
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* out[d] = softmax(q k^T / sqrt(dh)) v per head, over `rows` rows of qkv[row][3d] that `use`
 * marks (NULL: all). scores holds `rows` floats. */
static void attend(const tfm *m, const float *q, const float *qkv, int rows, const int *use,
                   float *scores, float *out)
{
    float scale = 1.0f / sqrtf((float)m->dh);
    size_t stride = 3 * (size_t)m->d;
    for (int h = 0; h < m->h; h++) {
        const float *qh = q + h * m->dh;
        float most = -INFINITY, sum = 0.0f;
        for (int j = 0; j < rows; j++) {
            scores[j] = use && !use[j] ? -INFINITY
                                       : scale * dot(qh, qkv + j * stride + m->d + h * m->dh,
                                                     m->dh);
            most = fmaxf(most, scores[j]);
        }
        float *o = out + h * m->dh;
        memset(o, 0, sizeof(float) * m->dh);
        for (int j = 0; j < rows; j++) {
            float p = use && !use[j] ? 0.0f : expf(scores[j] - most);
            sum += p;
            const float *v = qkv + j * stride + 2 * m->d + h * m->dh;
            for (int i = 0; i < m->dh; i++)
                o[i] += p * v[i];
        }
        for (int i = 0; i < m->dh; i++)
            o[i] /= sum;
    }
}

/* z = the layer's output for tokens x given their attention results a ([rows][d] each). */
static void finish_rows(const tfm *m, const tfm_layer *L, const float *x, const float *a,
                        int rows, float *z, work *w)
{
    size_t n = (size_t)rows * m->d;
    affine_rows(L->out_w, L->out_b, rows, m->d, m->d, a, w->t);
    for (size_t i = 0; i < n; i++)
        w->t[i] += x[i];
    const float *y = w->t, *ffn_in = w->t;
    if (!m->norm_first) {
        norm_rows(m, L->n1_w, L->n1_b, w->t, rows, w->y);
        y = ffn_in = w->y;
    } else {
        norm_rows(m, L->n2_w, L->n2_b, w->t, rows, w->n2);
        ffn_in = w->n2;
    }
    affine_rows(L->l1_w, L->l1_b, rows, L->ff, m->d, ffn_in, w->hid);
    act_apply(m->act, (cin_dims){L->ff * rows, 1, 1}, w->hid, w->hid);
    affine_rows(L->l2_w, L->l2_b, rows, m->d, L->ff, w->hid, z);
    for (size_t i = 0; i < n; i++)
        z[i] += y[i];
    if (!m->norm_first)
        norm_rows(m, L->n2_w, L->n2_b, z, rows, z);
}

/* ---- the last, single-output layer ---- */

/* Output token of the last layer over rows of x (layer input) and their qkv: the class
 * token's (row n) if any, else row `newest`. */
static void single_output(const tfm *m, const tfm_layer *L, const float *x, const float *qkv,
                          int newest, float *out, work *w)
{
    int q = m->has_cls ? m->n : newest;
    attend(m, qkv + (size_t)q * 3 * m->d, qkv, m->rows, NULL, w->scores, w->a);
    finish_rows(m, L, x + (size_t)q * m->d, w->a, 1, out, w);
}

/* Second layer of a two-layer stack over the first layer's outputs z [rows][d]. */
static void second_layer(const tfm *m, const float *z, int newest, float *out, work *w)
{
    rows_qkv(m, &m->L[1], z, m->rows, w->qkv2, w->ln);
    single_output(m, &m->L[1], z, w->qkv2, newest, out, w);
}

/* First layer, every row: attention afresh over the window (the regular form). */
static void first_layer_all(const tfm *m, const float *x, const float *qkv, float *z, work *w)
{
    for (int r = 0; r < m->rows; r++)
        attend(m, qkv + (size_t)r * 3 * m->d, qkv, m->rows, NULL, w->scores,
               w->a + (size_t)r * m->d);
    finish_rows(m, &m->L[0], x, w->a, m->rows, z, w);
}

/* ---- retroactive first layer: running softmax sums per (row, head) ---- */

static void acc_add(double *acc, double s, const float *v, int dh)
{
    if (acc[1] == 0.0) {
        acc[0] = s;
        acc[1] = 1.0;
        for (int i = 0; i < dh; i++)
            acc[2 + i] = v[i];
        return;
    }
    if (s > acc[0]) {
        double r = exp(acc[0] - s);
        acc[0] = s;
        acc[1] = acc[1] * r + 1.0;
        for (int i = 0; i < dh; i++)
            acc[2 + i] = acc[2 + i] * r + v[i];
        return;
    }
    double e = exp(s - acc[0]);
    acc[1] += e;
    for (int i = 0; i < dh; i++)
        acc[2 + i] += e * v[i];
}

/* Removes a key; returns -1 when that leaves too little of the mass to trust the difference. */
static int acc_remove(double *acc, double s, const float *v, int dh)
{
    double e = exp(s - acc[0]), left = acc[1] - e;
    if (!(left > 1e-6 * acc[1]))
        return -1;
    acc[1] = left;
    for (int i = 0; i < dh; i++)
        acc[2 + i] -= e * v[i];
    return 0;
}

static double score(const tfm *m, const float *q, const float *k, int h)
{
    return dot(q + h * m->dh, k + h * m->dh, m->dh) / sqrt((double)m->dh);
}

/* Row r's sums over every key that `use` marks. */
static void acc_init(const tfm *m, double *acc, const float *qkv, const int *use, int r)
{
    size_t stride = 3 * (size_t)m->d;
    const float *q = qkv + r * stride;
    for (int h = 0; h < m->h; h++) {
        double *a = acc + ((size_t)r * m->h + h) * acc_stride(m);
        a[1] = 0.0;
        for (int j = 0; j < m->rows; j++)
            if (use[j])
                acc_add(a, score(m, q, qkv + j * stride + m->d, h),
                        qkv + j * stride + 2 * m->d + h * m->dh, m->dh);
    }
}

/* Row r: drop key `old` (NULL: none) and add the key in row `slot`; afresh if the drop fails. */
static void acc_slide(const tfm *m, double *acc, const float *qkv, const int *use, int r,
                      const float *old, int slot)
{
    size_t stride = 3 * (size_t)m->d;
    const float *q = qkv + r * stride, *k = qkv + slot * stride + m->d;
    for (int h = 0; h < m->h; h++) {
        double *a = acc + ((size_t)r * m->h + h) * acc_stride(m);
        if (old && acc_remove(a, score(m, q, old, h), old + m->d + h * m->dh, m->dh)) {
            acc_init(m, acc, qkv, use, r);
            return;
        }
        acc_add(a, score(m, q, k, h), k + m->d + h * m->dh, m->dh);
    }
}

/* First-layer outputs of every row from the running sums. */
static void first_layer_from_sums(const tfm *m, const double *acc, const float *x, float *z,
                                  work *w)
{
    for (int r = 0; r < m->rows; r++)
        for (int h = 0; h < m->h; h++) {
            const double *a = acc + ((size_t)r * m->h + h) * acc_stride(m);
            for (int i = 0; i < m->dh; i++)
                w->a[(size_t)r * m->d + h * m->dh + i] = (float)(a[2 + i] / a[1]);
        }
    finish_rows(m, &m->L[0], x, w->a, m->rows, z, w);
}

/* ---- continual mode ---- */

static void state_arrays(const tfm *m, void *state, float **x, float **qkv, double **acc)
{
    *x = (float *)((char *)state + m->st_x);
    *qkv = (float *)((char *)state + m->st_qkv);
    *acc = (double *)((char *)state + m->st_acc);
}

static void carve(const tfm *m, float *s, work *w)
{
    size_t rd = (size_t)m->rows * m->d, wide = (size_t)m->rows * (m->ff > m->d ? m->ff : m->d);
    w->a = s;
    w->t = w->a + rd;
    w->y = w->t + rd;
    w->n2 = w->y + rd;
    w->ln = w->n2 + rd;
    w->z = w->ln + rd;
    w->hid = w->z + rd;
    w->qkv2 = w->hid + wide;
    w->old_kv = w->qkv2 + 3 * rd;
    w->scores = w->old_kv + 3 * (size_t)m->d;
}

static size_t work_floats(const tfm *m)
{
    size_t rd = (size_t)m->rows * m->d, wide = (size_t)m->rows * (m->ff > m->d ? m->ff : m->d);
    return 9 * rd + wide + 3 * (size_t)m->d + m->rows;
}

/* Rows holding a token after frame t: the ring slots filled so far and the class token. */
static void rows_in_use(const tfm *m, int64_t t, int *use)
{
    for (int r = 0; r < m->n; r++)
        use[r] = r <= t;
    if (m->has_cls)
        use[m->n] = 1;
}

static void retro_update(const tfm *m, double *acc, const float *qkv, const int *use, int slot,
                         int64_t t, const float *old)
{
    for (int r = 0; r < m->rows; r++) {
        if (!use[r] || r == slot)
            continue;
        if (r == m->n && t % m->n == 0) /* the class row outlives windows: refresh it */
            acc_init(m, acc, qkv, use, r);
        else
            acc_slide(m, acc, qkv, use, r, old, slot);
    }
    acc_init(m, acc, qkv, use, slot);
}

static int tfm_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    const tfm *m = (const tfm *)n;
    tfm_state *s = state;
    float *x, *qkv;
    double *acc;
    state_arrays(m, state, &x, &qkv, &acc);
    work w;
    carve(m, scratch, &w);
    int64_t t = s->t++;
    int slot = (int)(t % m->n), use[m->rows];
    size_t row3 = 3 * (size_t)m->d;
    if (t == 0 && m->has_cls) {
        memcpy(x + (size_t)m->n * m->d, m->cls, sizeof(float) * m->d);
        memcpy(qkv + m->n * row3, m->cls_qkv, sizeof(float) * row3);
    }
    const float *old = NULL;
    if (t >= m->n) {
        memcpy(w.old_kv, qkv + slot * row3, sizeof(float) * row3);
        old = w.old_kv + m->d; /* its key; the value follows */
    }
    memcpy(x + (size_t)slot * m->d, in, sizeof(float) * m->d);
    rows_qkv(m, &m->L[0], in, 1, qkv + slot * row3, w.ln);
    rows_in_use(m, t, use);

    int retro = m->layers == 2 && m->first == TFM_FIRST_RETROACTIVE;
    if (retro)
        retro_update(m, acc, qkv, use, slot, t, old);
    if (t < m->n - 1)
        return 0;
    if (m->layers == 1) {
        single_output(m, &m->L[0], x, qkv, slot, out, &w);
        return 1;
    }
    if (retro)
        first_layer_from_sums(m, acc, x, w.z, &w);
    else
        first_layer_all(m, x, qkv, w.z, &w);
    second_layer(m, w.z, slot, out, &w);
    return 1;
}

/* ---- clip mode: every window of the clip afresh ---- */

static void tfm_forward(const cin_node *n, const float *in, int t_in, float *out, float *scratch)
{
    const tfm *m = (const tfm *)n;
    size_t row3 = 3 * (size_t)m->d;
    float *x = scratch, *qkv = x + (size_t)m->rows * m->d;
    work w;
    carve(m, qkv + (size_t)m->rows * row3, &w);
    if (m->has_cls) {
        memcpy(x + (size_t)m->n * m->d, m->cls, sizeof(float) * m->d);
        memcpy(qkv + m->n * row3, m->cls_qkv, sizeof(float) * row3);
    }
    for (int j = 0; j + m->n <= t_in; j++) {
        memcpy(x, in + (size_t)j * m->d, sizeof(float) * m->d * m->n);
        rows_qkv(m, &m->L[0], x, m->n, qkv, w.ln);
        float *o = out + (size_t)j * m->d;
        if (m->layers == 1) {
            single_output(m, &m->L[0], x, qkv, m->n - 1, o, &w);
            continue;
        }
        first_layer_all(m, x, qkv, w.z, &w);
        second_layer(m, w.z, m->n - 1, o, &w);
    }
}

static size_t tfm_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    const tfm *m = (const tfm *)n;
    return (size_t)m->rows * 4 * m->d + work_floats(m);
}

/* ---- multiply-adds ---- */

static int64_t layer_tail_macs(const tfm *m, int l)
{
    return (int64_t)m->d * m->d + 2 * (int64_t)m->d * m->L[l].ff; /* output projection + FFN */
}

static int64_t tfm_macs_step(const cin_node *n)
{
    const tfm *m = (const tfm *)n;
    int64_t d = m->d, rows = m->rows, qkv = 3 * d * d, att = 2 * rows * d;
    int64_t first = qkv + att + layer_tail_macs(m, 0);
    if (m->layers == 1)
        return first;
    /* retroactive: each row drops one key and adds one (4d), the new row sums all keys */
    int64_t l0 = m->first == TFM_FIRST_RETROACTIVE ? qkv + rows * 4 * d + att : qkv + rows * att;
    return l0 + rows * layer_tail_macs(m, 0) + rows * qkv + att + layer_tail_macs(m, 1);
}

static int64_t tfm_macs_clip(const cin_node *n, int t_in)
{
    const tfm *m = (const tfm *)n;
    int64_t d = m->d, rows = m->rows, qkv = 3 * d * d, att = 2 * rows * d;
    int64_t window = rows * qkv + att + layer_tail_macs(m, m->layers - 1);
    if (m->layers == 2)
        window += rows * (att + layer_tail_macs(m, 0)) + rows * qkv;
    int windows = t_in - m->n + 1;
    return windows > 0 ? window * windows : 0;
}

static void tfm_destroy(cin_node *n)
{
    tfm *m = (tfm *)n;
    free(m->mem);
    free(m);
}

static const cin_node_ops tfm_ops = {
    .kind = "transformer",
    .step = tfm_step,
    .forward = tfm_forward,
    .clip_scratch = tfm_clip_scratch,
    .macs_step = tfm_macs_step,
    .macs_clip = tfm_macs_clip,
    .destroy = tfm_destroy,
};

/* ---- building ---- */

static int check(const tfm_params *p, cin_err *err)
{
    if (p->n_layers < 1 || p->n_layers > TFM_MAX_LAYERS)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "transformer: %d layers; continual stacks "
                           "have 1 or 2 (a deeper stack would not equal the regular encoder)",
                           p->n_layers);
    if (p->d_model < 1 || p->nhead < 1 || p->d_model % p->nhead || p->dim_ff < 1)
        return cin_err_set(err, CIN_E_CONFIG, "transformer: d_model %d, nhead %d, "
                           "dim_feedforward %d: expected d_model divisible by nhead",
                           p->d_model, p->nhead, p->dim_ff);
    for (int l = 0; l < p->n_layers; l++)
        if (p->layer[l].dim_ff < 0)
            return cin_err_set(err, CIN_E_CONFIG, "transformer: layer %d: dim_ff %d, expected "
                               ">= 1 (0: dim_feedforward)", l, p->layer[l].dim_ff);
    if (p->window < 1 || p->window > 4096)
        return cin_err_set(err, CIN_E_CONFIG, "transformer: window %d, expected 1..4096",
                           p->window);
    if (p->activation != ACT_RELU && p->activation != ACT_GELU)
        return cin_err_set(err, CIN_E_CONFIG, "transformer: activation must be relu or gelu");
    return 0;
}

static float *take(float **cursor, const float *src, size_t n)
{
    float *dst = *cursor;
    memcpy(dst, src, sizeof(float) * n);
    *cursor += n;
    return dst;
}

static void copy_layer(tfm_layer *L, const tfm_layer_weights *w, int d, int ff, float **c)
{
    L->ff = ff;
    L->in_w = take(c, w->in_proj_w, 3 * (size_t)d * d);
    L->in_b = take(c, w->in_proj_b, 3 * (size_t)d);
    L->out_w = take(c, w->out_proj_w, (size_t)d * d);
    L->out_b = take(c, w->out_proj_b, d);
    L->l1_w = take(c, w->linear1_w, (size_t)ff * d);
    L->l1_b = take(c, w->linear1_b, ff);
    L->l2_w = take(c, w->linear2_w, (size_t)d * ff);
    L->l2_b = take(c, w->linear2_b, d);
    L->n1_w = take(c, w->norm1_w, d);
    L->n1_b = take(c, w->norm1_b, d);
    L->n2_w = take(c, w->norm2_w, d);
    L->n2_b = take(c, w->norm2_b, d);
}

static int layer_ff(const tfm_params *p, int l)
{
    return p->layer[l].dim_ff > 0 ? p->layer[l].dim_ff : p->dim_ff;
}

static size_t layer_floats(int d, int ff)
{
    return 4 * (size_t)d * d + 3 * (size_t)d + 2 * (size_t)ff * d + ff + 6 * (size_t)d;
}

static void layout_state(tfm *m)
{
    size_t x = cin_align(sizeof(tfm_state));
    size_t qkv = x + cin_align(sizeof(float) * m->rows * m->d);
    size_t acc = qkv + cin_align(sizeof(float) * m->rows * 3 * m->d);
    int retro = m->layers == 2 && m->first == TFM_FIRST_RETROACTIVE;
    m->st_x = x;
    m->st_qkv = qkv;
    m->st_acc = acc;
    m->base.state_bytes =
        acc + (retro ? cin_align(sizeof(double) * m->rows * m->h * acc_stride(m)) : 0);
}

int tfm_create(const tfm_params *p, cin_node **out, cin_err *err)
{
    *out = NULL;
    int rc = check(p, err);
    if (rc)
        return rc;
    int d = p->d_model;
    /* layers, class token, its projections, a norm's scratch while computing them */
    size_t floats = 5 * (size_t)d;
    int ff = 0;
    for (int l = 0; l < p->n_layers; l++) {
        floats += layer_floats(d, layer_ff(p, l));
        ff = layer_ff(p, l) > ff ? layer_ff(p, l) : ff;
    }
    tfm *m = calloc(1, sizeof *m);
    float *mem = m ? malloc(sizeof(float) * floats) : NULL;
    if (!mem) {
        free(m);
        return cin_err_set(err, CIN_E_NOMEM, "transformer: out of memory");
    }
    *m = (tfm){.d = d, .h = p->nhead, .dh = d / p->nhead, .ff = ff, .n = p->window,
               .rows = p->window + (p->cls_token != NULL), .layers = p->n_layers,
               .norm_first = p->norm_first, .has_cls = p->cls_token != NULL,
               .act = p->activation, .eps = p->eps, .first = p->first, .mem = mem};
    float *c = mem;
    for (int l = 0; l < p->n_layers; l++)
        copy_layer(&m->L[l], &p->layer[l], d, layer_ff(p, l), &c);
    if (m->has_cls) {
        m->cls = take(&c, p->cls_token, d);
        m->cls_qkv = c;
        rows_qkv(m, &m->L[0], m->cls, 1, m->cls_qkv, c + 3 * d);
    }
    m->base.ops = &tfm_ops;
    m->base.in = m->base.out = (cin_dims){d, 1, 1};
    m->base.rf = p->window;
    m->base.stride = 1;
    m->base.step_scratch = work_floats(m);
    m->base.param_bytes = sizeof(float) * floats;
    layout_state(m);
    *out = &m->base;
    return 0;
}

/* ---- positional encoding ---- */

typedef struct posenc {
    cin_node base;
    int window;
    float *table;   /* [window][d] */
} posenc;

static int posenc_step(const cin_node *n, void *state, const float *in, float *out,
                       float *scratch)
{
    (void)scratch;
    const posenc *p = (const posenc *)n;
    tfm_state *s = state;
    const float *row = p->table + (size_t)(s->t++ % p->window) * n->in.c;
    for (int i = 0; i < n->in.c; i++)
        out[i] = in[i] + row[i];
    return 1;
}

static void posenc_forward(const cin_node *n, const float *in, int t_in, float *out,
                           float *scratch)
{
    (void)scratch;
    const posenc *p = (const posenc *)n;
    int d = n->in.c;
    for (int t = 0; t < t_in; t++)
        for (int i = 0; i < d; i++)
            out[(size_t)t * d + i] = in[(size_t)t * d + i] +
                                     p->table[(size_t)(t % p->window) * d + i];
}

static void posenc_destroy(cin_node *n)
{
    free(((posenc *)n)->table);
    free(n);
}

static const cin_node_ops posenc_ops = {
    .kind = "positional encoding",
    .step = posenc_step,
    .forward = posenc_forward,
    .destroy = posenc_destroy,
};

int tfm_posenc_create(int d, int window, const float *table, cin_node **out, cin_err *err)
{
    *out = NULL;
    posenc *p = calloc(1, sizeof *p);
    float *copy = p ? malloc(sizeof(float) * d * window) : NULL;
    if (!copy) {
        free(p);
        return cin_err_set(err, CIN_E_NOMEM, "positional encoding: out of memory");
    }
    memcpy(copy, table, sizeof(float) * d * window);
    p->table = copy;
    p->window = window;
    p->base.ops = &posenc_ops;
    p->base.in = p->base.out = (cin_dims){d, 1, 1};
    p->base.rf = 1;
    p->base.stride = 1;
    p->base.state_bytes = cin_align(sizeof(tfm_state));
    p->base.param_bytes = sizeof(float) * d * window;
    *out = &p->base;
    return 0;
}

void tfm_sinusoid(int d, int window, float *table)
{
    for (int p = 0; p < window; p++)
        for (int i = 0; i < d; i++) {
            double freq = pow(10000.0, -(double)(i / 2 * 2) / d);
            table[(size_t)p * d + i] = (float)(i % 2 ? cos(p * freq) : sin(p * freq));
        }
}
