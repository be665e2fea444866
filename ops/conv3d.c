/* Continual 3D convolution (after co.Conv3d in continual-inference).
 *
 * Input frame t (0-based) reaches output j through temporal tap t + pt - j * st. Each frame is
 * convolved with each of its taps and the result added straight into the output it feeds: in
 * clip mode, the clip's output frames (which start as the bias); when stepping, one of the
 * kt - 1 running partial sums a stream keeps for the outputs still open. The tap kt - 1 closes
 * an output, which is then emitted and its partial sum cleared. Both modes share the kernels:
 * a direct depthwise kernel and, for everything else, im2col + OpenBLAS sgemm with beta = 1. */
#include "conv3d.h"
#include "simd.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv3d {
    cin_node base;
    conv3d_params p;        /* geometry; its pointers are not kept */
    int ho, wo;
    int depthwise;
    float *w;               /* [kt][cout][cin/groups * kh * kw] */
    float *b;               /* [cout] */
    size_t col;             /* floats of the im2col buffer (0 when the input is used as is) */
} conv3d;

typedef struct conv3d_state {
    int64_t t;              /* frames seen */
} conv3d_state;

static size_t out_plane(const conv3d *c)
{
    return (size_t)c->ho * c->wo;
}

static size_t out_frame(const conv3d *c)
{
    return (size_t)c->p.cout * out_plane(c);
}

/* ---- depthwise: y[c] += k[c] (*) x[c], one plane per channel ---- */

/* One output of a depthwise plane, with the zero padding checked: for the border. */
static float dw_at(const conv3d_params *p, const float *x, const float *k, int oy, int ox)
{
    float sum = 0.0f;
    for (int dy = 0; dy < p->kh; dy++) {
        int iy = oy * p->sh - p->ph + dy;
        if (iy < 0 || iy >= p->h)
            continue;
        for (int dx = 0; dx < p->kw; dx++) {
            int ix = ox * p->sw - p->pw + dx;
            if (ix >= 0 && ix < p->w)
                sum += k[dy * p->kw + dx] * x[(size_t)iy * p->w + ix];
        }
    }
    return sum;
}

/* First and one-past-last output index whose window lies inside [0, n) on one axis. */
static void inner_range(int n, int k, int s, int pad, int out, int *lo, int *hi)
{
    *lo = (pad + s - 1) / s;
    *hi = (n - k + pad) / s + 1;
    *lo = *lo < out ? *lo : out;
    *hi = *hi < *lo ? *lo : *hi > out ? out : *hi;
}

/* 3x3 row, columns [lo, hi) whose window lies inside the row: nine taps in registers, every
 * output read and written once. r0..r2 are the three input rows (a zero row where the window
 * hangs over the top or bottom). */
CIN_KERNEL static void dw_3x3_row(const float *restrict r0, const float *restrict r1,
                                  const float *restrict r2, const float *restrict k,
                                  float *restrict y, int lo, int hi, int s)
{
    if (s == 1) {
        for (int ox = lo; ox < hi; ox++) {
            int i = ox - 1;
            y[ox] += k[0] * r0[i] + k[1] * r0[i + 1] + k[2] * r0[i + 2] + k[3] * r1[i] +
                     k[4] * r1[i + 1] + k[5] * r1[i + 2] + k[6] * r2[i] + k[7] * r2[i + 1] +
                     k[8] * r2[i + 2];
        }
        return;
    }
    for (int ox = lo; ox < hi; ox++) {
        int i = ox * s - 1;
        y[ox] += k[0] * r0[i] + k[1] * r0[i + 1] + k[2] * r0[i + 2] + k[3] * r1[i] +
                 k[4] * r1[i + 1] + k[5] * r1[i + 2] + k[6] * r2[i] + k[7] * r2[i + 1] +
                 k[8] * r2[i + 2];
    }
}

/* One 3x3 output at a left or right edge, where some of its columns are padding. */
static float dw_3x3_edge(const float *const r[3], const float *k, int w, int ix0)
{
    float sum = 0.0f;
    for (int dy = 0; dy < 3; dy++)
        for (int dx = 0; dx < 3; dx++)
            if (ix0 + dx >= 0 && ix0 + dx < w)
                sum += k[dy * 3 + dx] * r[dy][ix0 + dx];
    return sum;
}

static int is_3x3_same(const conv3d_params *p)
{
    return p->kh == 3 && p->kw == 3 && p->ph == 1 && p->pw == 1 && p->sh == p->sw;
}

/* A 3x3, padding 1 depthwise plane; `zero` holds w zeros for rows in the padding. */
static void dw_3x3_plane(const conv3d *c, const float *x, const float *k, float *y,
                         const float *zero)
{
    const conv3d_params *p = &c->p;
    int lo, hi;
    inner_range(p->w, 3, p->sw, 1, c->wo, &lo, &hi);
    for (int oy = 0; oy < c->ho; oy++) {
        const float *r[3];
        for (int dy = 0; dy < 3; dy++) {
            int iy = oy * p->sh - 1 + dy;
            r[dy] = iy >= 0 && iy < p->h ? x + (size_t)iy * p->w : zero;
        }
        float *yr = y + (size_t)oy * c->wo;
        for (int ox = 0; ox < lo; ox++)
            yr[ox] += dw_3x3_edge(r, k, p->w, ox * p->sw - 1);
        dw_3x3_row(r[0], r[1], r[2], k, yr, lo, hi, p->sw);
        for (int ox = hi; ox < c->wo; ox++)
            yr[ox] += dw_3x3_edge(r, k, p->w, ox * p->sw - 1);
    }
}

/* Any other depthwise kernel, with every tap's padding checked. */
static void dw_plane(const conv3d *c, const float *x, const float *k, float *y)
{
    for (int oy = 0; oy < c->ho; oy++)
        for (int ox = 0; ox < c->wo; ox++)
            y[(size_t)oy * c->wo + ox] += dw_at(&c->p, x, k, oy, ox);
}

/* A depthwise 1x1 kernel (the stem's temporal convolution) is a per-channel scale. */
CIN_KERNEL static void dw_scale(const float *restrict x, float k, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += k * x[i];
}

/* `zero` is scratch for w floats. */
static void dw_accumulate(const conv3d *c, const float *x, int tap, float *dst, float *zero)
{
    const conv3d_params *p = &c->p;
    size_t plane_in = (size_t)p->h * p->w, kk = (size_t)p->kh * p->kw;
    int pointwise = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && !p->ph && !p->pw;
    int fast = is_3x3_same(p);
    if (fast)
        memset(zero, 0, sizeof(float) * p->w);
    for (int ch = 0; ch < p->cout; ch++) {
        const float *k = c->w + ((size_t)tap * p->cout + ch) * kk;
        const float *xc = x + ch * plane_in;
        float *yc = dst + ch * out_plane(c);
        if (pointwise)
            dw_scale(xc, k[0], yc, plane_in);
        else if (fast)
            dw_3x3_plane(c, xc, k, yc, zero);
        else
            dw_plane(c, xc, k, yc);
    }
}

/* ---- dense and grouped: im2col + sgemm ---- */

/* col[(ci * kh + dy) * kw + dx][oy * wo + ox] = x[ci][oy*sh - ph + dy][ox*sw - pw + dx] or 0. */
static void im2col(const conv3d *c, const float *x, int cin, float *col)
{
    const conv3d_params *p = &c->p;
    for (int ci = 0; ci < cin; ci++)
        for (int dy = 0; dy < p->kh; dy++)
            for (int dx = 0; dx < p->kw; dx++) {
                float *row = col + (((size_t)ci * p->kh + dy) * p->kw + dx) * out_plane(c);
                for (int oy = 0; oy < c->ho; oy++) {
                    int iy = oy * p->sh - p->ph + dy;
                    for (int ox = 0; ox < c->wo; ox++) {
                        int ix = ox * p->sw - p->pw + dx;
                        int in = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w;
                        row[oy * c->wo + ox] =
                            in ? x[((size_t)ci * p->h + iy) * p->w + ix] : 0.0f;
                    }
                }
            }
}

static int is_plain_pointwise(const conv3d_params *p)
{
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0;
}

/* The GEMM operand of one group of a frame: the input itself for a plain 1x1x1 kernel,
 * otherwise its im2col in `col` (one group's worth at a time, so groups reuse it). */
static const float *gemm_operand(const conv3d *c, const float *x, int g, float *col)
{
    const conv3d_params *p = &c->p;
    int cin_g = p->cin / p->groups;
    const float *xg = x + (size_t)g * cin_g * p->h * p->w;
    if (is_plain_pointwise(p))
        return xg;
    im2col(c, xg, cin_g, col);
    return col;
}

/* dst[g's channels] += W[tap, g] x col: one group of one tap. */
static void gemm_accumulate(const conv3d *c, const float *b, int g, int tap, float *dst)
{
    const conv3d_params *p = &c->p;
    int cin_g = p->cin / p->groups, cout_g = p->cout / p->groups;
    int k = cin_g * p->kh * p->kw, n = (int)out_plane(c);
    const float *a = c->w + ((size_t)tap * p->cout + (size_t)g * cout_g) * k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, n, k, 1.0f, a, k, b, n, 1.0f,
                dst + (size_t)g * cout_g * n, n);
}

/* ---- both modes ---- */

/* The output index tap `tap` of input frame t feeds, or -1 if it feeds none (stride gap or
 * before the first output). */
static int64_t tap_target(const conv3d_params *p, int64_t t, int tap)
{
    int64_t num = t + p->pt - tap;
    if (num < 0 || num % p->st)
        return -1;
    return num / p->st;
}

/* For each tap of frame x with dst[tap] != NULL: dst[tap] += its contribution. */
static void accumulate_frame(const conv3d *c, const float *x, float *const *dst, float *col)
{
    const conv3d_params *p = &c->p;
    if (c->depthwise) {
        for (int tap = 0; tap < p->kt; tap++)
            if (dst[tap])
                dw_accumulate(c, x, tap, dst[tap], col);
        return;
    }
    for (int g = 0; g < p->groups; g++) {
        const float *b = gemm_operand(c, x, g, col);
        for (int tap = 0; tap < p->kt; tap++)
            if (dst[tap])
                gemm_accumulate(c, b, g, tap, dst[tap]);
    }
}

CIN_KERNEL static void fill_bias(const conv3d *c, float *out)
{
    size_t plane = out_plane(c);
    for (int ch = 0; ch < c->p.cout; ch++)
        for (size_t i = 0; i < plane; i++)
            out[ch * plane + i] = c->b[ch];
}

/* out = partial + bias; partial = 0, ready for the output kt - 1 slots later. */
CIN_KERNEL static void emit(const conv3d *c, float *restrict partial, float *restrict out)
{
    size_t plane = out_plane(c);
    for (int ch = 0; ch < c->p.cout; ch++)
        for (size_t i = 0; i < plane; i++) {
            out[ch * plane + i] = partial[ch * plane + i] + c->b[ch];
            partial[ch * plane + i] = 0.0f;
        }
}

/* ---- continual mode ---- */

static float *partial_sums(void *state)
{
    return (float *)((char *)state + cin_align(sizeof(conv3d_state)));
}

static int conv3d_step(const cin_node *n, void *state, const float *in, float *out,
                       float *scratch)
{
    const conv3d *c = (const conv3d *)n;
    const conv3d_params *p = &c->p;
    conv3d_state *s = state;
    int64_t t = s->t++;
    int slots = p->kt - 1;
    size_t fsz = out_frame(c);
    float *ring = partial_sums(state), *dst[64] = {NULL};
    int64_t done = tap_target(p, t, p->kt - 1);

    /* the closing tap first: its output is emitted and its slot freed for reuse below */
    if (done >= 0) {
        float *slot = slots ? ring + (size_t)(done % slots) * fsz : out;
        if (!slots)
            fill_bias(c, out);
        dst[p->kt - 1] = slot;
        accumulate_frame(c, in, dst, scratch);
        if (slots)
            emit(c, slot, out);
        dst[p->kt - 1] = NULL;
    }
    int any = 0;
    for (int tap = 0; tap < slots; tap++) {
        int64_t j = tap_target(p, t, tap);
        dst[tap] = j >= 0 ? ring + (size_t)(j % slots) * fsz : NULL;
        any |= j >= 0;
    }
    if (any)
        accumulate_frame(c, in, dst, scratch);
    return done >= 0;
}

/* ---- clip mode ---- */

static void conv3d_forward(const cin_node *n, const float *in, int t_in, float *out,
                           float *scratch)
{
    const conv3d *c = (const conv3d *)n;
    const conv3d_params *p = &c->p;
    int t_out = cin_node_clip_frames(n, t_in);
    size_t fsz = out_frame(c), isz = cin_dims_size(n->in);
    for (int j = 0; j < t_out; j++)
        fill_bias(c, out + j * fsz);
    for (int t = 0; t < t_in; t++) {
        float *dst[64];
        int any = 0;
        for (int tap = 0; tap < p->kt; tap++) {
            int64_t j = tap_target(p, t, tap);
            dst[tap] = j >= 0 && j < t_out ? out + j * fsz : NULL;
            any |= dst[tap] != NULL;
        }
        if (any)
            accumulate_frame(c, in + t * isz, dst, scratch);
    }
}

static size_t conv3d_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    return ((const conv3d *)n)->col;
}

static int64_t macs_per_tap(const conv3d *c)
{
    return (int64_t)c->p.cout * (c->p.cin / c->p.groups) * c->p.kh * c->p.kw *
           (int64_t)out_plane(c);
}

static int64_t conv3d_macs_step(const cin_node *n)
{
    const conv3d *c = (const conv3d *)n;
    return macs_per_tap(c) * c->p.kt / c->p.st;
}

static int64_t conv3d_macs_clip(const cin_node *n, int t_in)
{
    const conv3d *c = (const conv3d *)n;
    return macs_per_tap(c) * c->p.kt * cin_node_clip_frames(n, t_in);
}

static void conv3d_destroy(cin_node *n)
{
    conv3d *c = (conv3d *)n;
    free(c->w);
    free(c->b);
    free(c);
}

static const cin_node_ops conv3d_ops = {
    .kind = "conv3d",
    .step = conv3d_step,
    .forward = conv3d_forward,
    .clip_scratch = conv3d_clip_scratch,
    .macs_step = conv3d_macs_step,
    .macs_clip = conv3d_macs_clip,
    .destroy = conv3d_destroy,
};

/* ---- building ---- */

static int check_params(const conv3d_params *p, cin_err *err)
{
    if (p->cin < 1 || p->cout < 1 || p->groups < 1 || p->cin % p->groups ||
        p->cout % p->groups)
        return cin_err_set(err, CIN_E_SHAPE, "conv3d: channels %d -> %d not divisible by %d "
                           "groups", p->cin, p->cout, p->groups);
    if (p->kt < 1 || p->kh < 1 || p->kw < 1 || p->kt > 64 || p->st < 1 || p->sh < 1 ||
        p->sw < 1)
        return cin_err_set(err, CIN_E_INVAL, "conv3d: kernel (%d, %d, %d) or stride (%d, %d, %d) "
                           "out of range", p->kt, p->kh, p->kw, p->st, p->sh, p->sw);
    if (p->pt < 0 || p->pt > p->kt - 1 || p->ph < 0 || p->pw < 0)
        return cin_err_set(err, CIN_E_INVAL, "conv3d: padding (%d, %d, %d) out of range for "
                           "kernel (%d, %d, %d)", p->pt, p->ph, p->pw, p->kt, p->kh, p->kw);
    if (p->h + 2 * p->ph < p->kh || p->w + 2 * p->pw < p->kw)
        return cin_err_set(err, CIN_E_SHAPE, "conv3d: %dx%d frame smaller than the %dx%d kernel",
                           p->h, p->w, p->kh, p->kw);
    return 0;
}

/* Repacks [cout][cin_g][kt][kh][kw] into [kt][cout][cin_g*kh*kw], folding the batch norm's
 * per-channel scale into the weights and its shift into the bias. */
static void pack_weights(conv3d *c, const conv3d_params *p)
{
    size_t kk = (size_t)p->kh * p->kw, cin_g = p->cin / p->groups;
    for (int co = 0; co < p->cout; co++) {
        double scale, shift, b = p->bias ? p->bias[co] : 0.0;
        bn_fold(&p->bn, co, &scale, &shift);
        c->b[co] = (float)(b * scale + shift);
        for (size_t ci = 0; ci < cin_g; ci++)
            for (int tap = 0; tap < p->kt; tap++)
                for (size_t i = 0; i < kk; i++) {
                    float v = p->weight[((co * cin_g + ci) * p->kt + tap) * kk + i];
                    c->w[((size_t)tap * p->cout + co) * cin_g * kk + ci * kk + i] =
                        (float)(v * scale);
                }
    }
}

static void set_geometry(conv3d *c)
{
    const conv3d_params *p = &c->p;
    cin_node *b = &c->base;
    c->ho = (p->h + 2 * p->ph - p->kh) / p->sh + 1;
    c->wo = (p->w + 2 * p->pw - p->kw) / p->sw + 1;
    c->depthwise = p->groups == p->cin && p->groups == p->cout;
    b->ops = &conv3d_ops;
    b->in = (cin_dims){p->cin, p->h, p->w};
    b->out = (cin_dims){p->cout, c->ho, c->wo};
    b->rf = p->kt;
    b->pad = p->pt;
    b->stride = p->st;
    if (p->kt > 1)
        b->state_bytes = cin_align(sizeof(conv3d_state)) +
                         cin_align((size_t)(p->kt - 1) * out_frame(c) * sizeof(float));
    else
        b->state_bytes = cin_align(sizeof(conv3d_state));
    if (c->depthwise)
        c->col = cin_align(sizeof(float) * (size_t)p->w) / sizeof(float); /* a zero row */
    else if (!is_plain_pointwise(p))
        c->col = cin_align((size_t)(p->cin / p->groups) * p->kh * p->kw * out_plane(c) *
                           sizeof(float)) / sizeof(float);
    b->step_scratch = c->col;
    b->param_bytes = ((size_t)p->kt * p->cout * (p->cin / p->groups) * p->kh * p->kw +
                      p->cout) * sizeof(float);
}

int conv3d_create(const conv3d_params *p, cin_node **out, cin_err *err)
{
    *out = NULL;
    int rc = check_params(p, err);
    if (rc)
        return rc;
    conv3d *c = calloc(1, sizeof *c);
    size_t nw = (size_t)p->kt * p->cout * (p->cin / p->groups) * p->kh * p->kw;
    if (c) {
        c->w = malloc(nw * sizeof(float));
        c->b = malloc((size_t)p->cout * sizeof(float));
    }
    if (!c || !c->w || !c->b) {
        if (c)
            conv3d_destroy(&c->base);
        return cin_err_set(err, CIN_E_NOMEM, "conv3d: out of memory");
    }
    c->p = *p;
    c->p.weight = c->p.bias = NULL;
    c->p.bn = (bn_params){0};
    pack_weights(c, p);
    set_geometry(c);
    *out = &c->base;
    return 0;
}
