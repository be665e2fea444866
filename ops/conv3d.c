/* Continual 3D convolution (after co.Conv3d in continual-inference).
 *
 * Each input frame is convolved with every temporal tap of the kernel at once: y[tap] is the
 * frame's contribution to the output whose window holds it at position `tap`. A stream keeps
 * kt - 1 running partial sums of the outputs still open; the tap kt - 1 closes an output, which
 * is emitted. Clip mode reuses the same per-frame contributions, so both modes share one
 * kernel. Input frame t (0-based) reaches output j through tap t + pt - j * st. */
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

static size_t taps_floats(const conv3d *c)
{
    return cin_align((size_t)c->p.kt * out_frame(c) * sizeof(float)) / sizeof(float);
}

/* ---- per-frame kernels ---- */

/* Copies a channel plane into the middle of a zero border of (ph, pw), so the depthwise
 * kernels below need no bounds checks. xp is (h + 2ph) x (w + 2pw). */
static void dw_pad(const conv3d_params *p, const float *x, float *xp)
{
    int wp = p->w + 2 * p->pw;
    memset(xp, 0, sizeof(float) * (size_t)wp * p->ph);
    for (int iy = 0; iy < p->h; iy++) {
        float *row = xp + (size_t)(iy + p->ph) * wp;
        memset(row, 0, sizeof(float) * p->pw);
        memcpy(row + p->pw, x + (size_t)iy * p->w, sizeof(float) * p->w);
        memset(row + p->pw + p->w, 0, sizeof(float) * p->pw);
    }
    memset(xp + (size_t)(p->h + p->ph) * wp, 0, sizeof(float) * (size_t)wp * p->ph);
}

/* 3x3 depthwise on a padded plane: every output written once, nine taps in registers. */
CIN_KERNEL static void dw_3x3(const float *restrict xp, int wp, const float *restrict k,
                              float *restrict y, int ho, int wo, int sh, int sw)
{
    for (int oy = 0; oy < ho; oy++) {
        const float *r0 = xp + (size_t)oy * sh * wp, *r1 = r0 + wp, *r2 = r1 + wp;
        float *yr = y + (size_t)oy * wo;
        if (sw == 1) {
            for (int ox = 0; ox < wo; ox++)
                yr[ox] = k[0] * r0[ox] + k[1] * r0[ox + 1] + k[2] * r0[ox + 2] +
                         k[3] * r1[ox] + k[4] * r1[ox + 1] + k[5] * r1[ox + 2] +
                         k[6] * r2[ox] + k[7] * r2[ox + 1] + k[8] * r2[ox + 2];
            continue;
        }
        for (int ox = 0; ox < wo; ox++) {
            int i = ox * sw;
            yr[ox] = k[0] * r0[i] + k[1] * r0[i + 1] + k[2] * r0[i + 2] + k[3] * r1[i] +
                     k[4] * r1[i + 1] + k[5] * r1[i + 2] + k[6] * r2[i] + k[7] * r2[i + 1] +
                     k[8] * r2[i + 2];
        }
    }
}

/* Any other depthwise kernel size, on a padded plane. */
static void dw_any(const conv3d_params *p, const float *xp, const float *k, float *y, int ho,
                   int wo)
{
    int wp = p->w + 2 * p->pw;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            float sum = 0.0f;
            for (int dy = 0; dy < p->kh; dy++)
                for (int dx = 0; dx < p->kw; dx++)
                    sum += k[dy * p->kw + dx] *
                           xp[(size_t)(oy * p->sh + dy) * wp + ox * p->sw + dx];
            y[(size_t)oy * wo + ox] = sum;
        }
}

/* Depthwise taps; `pad` holds one padded plane. */
static void dw_taps(const conv3d *c, const float *x, float *y, float *pad, const int *use)
{
    const conv3d_params *p = &c->p;
    size_t plane_in = (size_t)p->h * p->w, kk = (size_t)p->kh * p->kw;
    int wp = p->w + 2 * p->pw;
    for (int ch = 0; ch < p->cout; ch++) {
        dw_pad(p, x + ch * plane_in, pad);
        for (int tap = 0; tap < p->kt; tap++) {
            if (!use[tap])
                continue;
            const float *k = c->w + ((size_t)tap * p->cout + ch) * kk;
            float *yo = y + ((size_t)tap * p->cout + ch) * out_plane(c);
            if (p->kh == 3 && p->kw == 3)
                dw_3x3(pad, wp, k, yo, c->ho, c->wo, p->sh, p->sw);
            else
                dw_any(p, pad, k, yo, c->ho, c->wo);
        }
    }
}

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

static void gemm_taps(const conv3d *c, const float *x, float *y, float *col, const int *use)
{
    const conv3d_params *p = &c->p;
    int cin_g = p->cin / p->groups, cout_g = p->cout / p->groups;
    int k = cin_g * p->kh * p->kw, n = (int)out_plane(c);
    for (int g = 0; g < p->groups; g++) {
        const float *xg = x + (size_t)g * cin_g * p->h * p->w;
        const float *b = xg;
        if (!is_plain_pointwise(p)) {
            im2col(c, xg, cin_g, col);
            b = col;
        }
        for (int tap = 0; tap < p->kt; tap++) {
            if (!use[tap])
                continue;
            const float *a = c->w + ((size_t)tap * p->cout + (size_t)g * cout_g) * k;
            float *yo = y + ((size_t)tap * p->cout + (size_t)g * cout_g) * n;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, n, k, 1.0f, a, k, b,
                        n, 0.0f, yo, n);
        }
    }
}

/* y[tap] = this frame's contribution through each tap marked in `use`. */
static void frame_taps(const conv3d *c, const float *x, float *y, float *col, const int *use)
{
    if (c->depthwise)
        dw_taps(c, x, y, col, use);
    else
        gemm_taps(c, x, y, col, use);
}

/* The output index tap `tap` of input frame t feeds, or -1 if it feeds none (stride gap or
 * before the first output). */
static int64_t tap_target(const conv3d_params *p, int64_t t, int tap)
{
    int64_t num = t + p->pt - tap;
    if (num < 0 || num % p->st)
        return -1;
    return num / p->st;
}

CIN_KERNEL static void add(float *acc, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

/* ---- continual mode ---- */

static float *partial_sums(void *state)
{
    return (float *)((char *)state + cin_align(sizeof(conv3d_state)));
}

CIN_KERNEL static void emit(const conv3d *c, const float *taps_last, const float *partial, float *out)
{
    size_t plane = out_plane(c);
    for (int ch = 0; ch < c->p.cout; ch++) {
        float b = c->b[ch];
        const float *y = taps_last + ch * plane;
        const float *s = partial ? partial + ch * plane : NULL;
        float *o = out + ch * plane;
        for (size_t i = 0; i < plane; i++)
            o[i] = b + y[i] + (s ? s[i] : 0.0f);
    }
}

static int conv3d_step(const cin_node *n, void *state, const float *in, float *out,
                       float *scratch)
{
    const conv3d *c = (const conv3d *)n;
    const conv3d_params *p = &c->p;
    conv3d_state *s = state;
    int64_t t = s->t++;
    int use[64], any = 0;
    for (int tap = 0; tap < p->kt; tap++)
        any |= use[tap] = tap_target(p, t, tap) >= 0;
    if (!any)
        return 0;

    float *y = scratch, *col = scratch + taps_floats(c);
    frame_taps(c, in, y, col, use);

    size_t fsz = out_frame(c);
    float *ring = partial_sums(state);
    int slots = p->kt - 1;
    int64_t done = tap_target(p, t, p->kt - 1);
    if (done >= 0) {
        float *slot = slots ? ring + (size_t)(done % slots) * fsz : NULL;
        emit(c, y + (size_t)(p->kt - 1) * fsz, slot, out);
        if (slot)
            memset(slot, 0, fsz * sizeof(float));
    }
    for (int tap = 0; tap < slots; tap++) {
        int64_t j = tap_target(p, t, tap);
        if (j >= 0)
            add(ring + (size_t)(j % slots) * fsz, y + (size_t)tap * fsz, fsz);
    }
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
    float *y = scratch, *col = scratch + taps_floats(c);
    for (int j = 0; j < t_out; j++)
        for (int ch = 0; ch < p->cout; ch++)
            for (size_t i = 0; i < out_plane(c); i++)
                out[j * fsz + ch * out_plane(c) + i] = c->b[ch];
    for (int t = 0; t < t_in; t++) {
        int use[64], any = 0;
        for (int tap = 0; tap < p->kt; tap++) {
            int64_t j = tap_target(p, t, tap);
            any |= use[tap] = j >= 0 && j < t_out;
        }
        if (!any)
            continue;
        frame_taps(c, in + t * isz, y, col, use);
        for (int tap = 0; tap < p->kt; tap++)
            if (use[tap])
                add(out + tap_target(p, t, tap) * fsz, y + tap * fsz, fsz);
    }
}

static size_t conv3d_clip_scratch(const cin_node *n, int t_in)
{
    (void)t_in;
    const conv3d *c = (const conv3d *)n;
    return taps_floats(c) + c->col;
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
        double scale = 1.0, shift = 0.0, b = p->bias ? p->bias[co] : 0.0;
        if (p->bn_gamma) {
            scale = p->bn_gamma[co] / sqrt((double)p->bn_var[co] + p->bn_eps);
            shift = p->bn_beta[co] - p->bn_mean[co] * scale;
        }
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
        c->col = cin_align((size_t)(p->h + 2 * p->ph) * (p->w + 2 * p->pw) * sizeof(float)) /
                 sizeof(float);
    else if (!is_plain_pointwise(p))
        c->col = cin_align((size_t)(p->cin / p->groups) * p->kh * p->kw * out_plane(c) *
                           sizeof(float)) / sizeof(float);
    b->step_scratch = taps_floats(c) + c->col;
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
    c->p.bn_gamma = c->p.bn_beta = c->p.bn_mean = c->p.bn_var = NULL;
    pack_weights(c, p);
    set_geometry(c);
    *out = &c->base;
    return 0;
}
