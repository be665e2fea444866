/* Every operator against PyTorch goldens (tests/ref/make_goldens.py), in both modes: clip
 * mode over the whole input, and continual mode frame by frame, whose outputs must equal the
 * clip's first outputs once the operator's delay has passed. Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "conv3d.h"
#include "gcn.h"
#include "linear.h"
#include "pool.h"
#include "safetensors.h"
#include "se.h"
#include "util.h"

#define TOL 1e-4

typedef struct golden {
    st_file *f;
    float *input, *clip;
    int t, c, h, w;          /* input [t][c][h][w] */
    int64_t clip_shape[4];
} golden;

static float *read_all(st_file *f, const char *name, st_info *info)
{
    if (st_find(f, name, info, NULL))
        return NULL;
    float *v = malloc(info->nbytes ? info->nbytes : 1);
    if (v && st_read_f32(f, name, -1, NULL, v, NULL)) {
        free(v);
        return NULL;
    }
    return v;
}

static float *tensor(const golden *g, const char *name)
{
    st_info info;
    return read_all(g->f, name, &info);
}

static int meta_int(const golden *g, const char *key, int fallback)
{
    const char *v = st_meta(g->f, key);
    return v ? atoi(v) : fallback;
}

static int golden_open(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    cin_err err;
    if (st_open(path, &g->f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    st_info in, out;
    g->input = read_all(g->f, "input", &in);
    g->clip = read_all(g->f, "clip", &out);
    if (!g->input || !g->clip || (in.ndim != 4 && in.ndim != 2) || out.ndim < 1)
        return -1;
    /* [t][c][h][w] frames, or [t][c] vectors for the linear layer */
    g->t = (int)in.shape[0];
    g->c = (int)in.shape[1];
    g->h = in.ndim == 4 ? (int)in.shape[2] : 1;
    g->w = in.ndim == 4 ? (int)in.shape[3] : 1;
    for (int d = 0; d < 4; d++)
        g->clip_shape[d] = d < out.ndim ? out.shape[d] : 1;
    return 0;
}

static void golden_close(golden *g)
{
    free(g->input);
    free(g->clip);
    st_close(g->f);
}

/* Clip mode equals the golden; stepping gives the clip's outputs 0, 1, ... after the delay. */
static void check_node(const char *name, const cin_node *n, const golden *g, int steps_match)
{
    int t_out = cin_node_clip_frames(n, g->t);
    size_t osz = cin_dims_size(n->out), isz = cin_dims_size(n->in);
    CU_ASSERT_EQUAL_FATAL(t_out, (int)g->clip_shape[0]);
    CU_ASSERT_EQUAL_FATAL(osz * t_out, (size_t)(g->clip_shape[0] * g->clip_shape[1] *
                                               g->clip_shape[2] * g->clip_shape[3]));
    float *out = calloc(osz * t_out + 1, sizeof(float));
    float *scratch = calloc(cin_node_clip_scratch(n, g->t) + n->step_scratch + 1, sizeof(float));
    void *state = calloc(1, n->state_bytes + 1);
    n->ops->forward(n, g->input, g->t, out, scratch);
    double e = tu_rel_err(out, g->clip, osz * t_out);
    if (e > TOL)
        fprintf(stderr, "\n  %s clip: rel err %.3g\n", name, e);
    CU_ASSERT(e <= TOL);
    if (steps_match) {
        int j = 0;
        double worst = 0;
        for (int t = 0; t < g->t; t++) {
            if (!n->ops->step(n, state, g->input + t * isz, out, scratch))
                continue;
            CU_ASSERT_EQUAL(t, j * n->stride + cin_node_delay(n));
            double ej = j < t_out ? tu_rel_err(out, g->clip + j * osz, osz) : 1.0;
            worst = ej > worst ? ej : worst;
            j++;
        }
        if (worst > TOL)
            fprintf(stderr, "\n  %s steps: rel err %.3g\n", name, worst);
        CU_ASSERT(worst <= TOL);
        int expect = g->t - cin_node_delay(n) > 0
                         ? (g->t - 1 - cin_node_delay(n)) / n->stride + 1 : 0;
        CU_ASSERT_EQUAL(j, expect);
    }
    free(out);
    free(scratch);
    free(state);
}

static cin_node *build_conv(const golden *g)
{
    st_info wi;
    float *w = read_all(g->f, "weight", &wi);
    float *b = tensor(g, "bias");
    float *gamma = tensor(g, "bn.weight"), *beta = tensor(g, "bn.bias");
    float *mean = tensor(g, "bn.running_mean"), *var = tensor(g, "bn.running_var");
    const char *eps = st_meta(g->f, "eps");
    conv3d_params p = {
        .cin = g->c, .cout = (int)wi.shape[0], .groups = meta_int(g, "groups", 1),
        .kt = meta_int(g, "kt", 1), .kh = meta_int(g, "kh", 1), .kw = meta_int(g, "kw", 1),
        .st = meta_int(g, "st", 1), .sh = meta_int(g, "sh", 1), .sw = meta_int(g, "sw", 1),
        .pt = meta_int(g, "pt", 0), .ph = meta_int(g, "ph", 0), .pw = meta_int(g, "pw", 0),
        .h = g->h, .w = g->w, .weight = w, .bias = b,
        .bn = {gamma, beta, mean, var, eps ? (float)atof(eps) : 1e-5f}};
    cin_node *n = NULL;
    cin_err err;
    if (w && conv3d_create(&p, &n, &err))
        fprintf(stderr, "%s\n", err.msg);
    free(w);
    free(b);
    free(gamma);
    free(beta);
    free(mean);
    free(var);
    return n;
}

static cin_node *build_act(const golden *g, const char *op)
{
    static const struct {
        const char *name;
        act_kind kind;
    } kinds[] = {{"relu", ACT_RELU}, {"swish", ACT_SWISH}, {"sigmoid", ACT_SIGMOID},
                 {"softmax", ACT_SOFTMAX}};
    cin_node *n = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(op, kinds[i].name) == 0)
            act_create(kinds[i].kind, (cin_dims){g->c, g->h, g->w}, &n, NULL);
    return n;
}

static cin_node *build_se(const golden *g, int window)
{
    st_info info;
    float *w1 = read_all(g->f, "fc1.weight", &info);
    se_params p = {.dims = {g->c, g->h, g->w}, .reduced = w1 ? (int)info.shape[0] : 0,
                   .fc1_w = w1, .fc1_b = tensor(g, "fc1.bias"),
                   .fc2_w = tensor(g, "fc2.weight"), .fc2_b = tensor(g, "fc2.bias"),
                   .window = window};
    cin_node *n = NULL;
    if (p.fc1_w && p.fc1_b && p.fc2_w && p.fc2_b)
        se_create(&p, &n, NULL);
    free(w1);
    free((float *)p.fc1_b);
    free((float *)p.fc2_w);
    free((float *)p.fc2_b);
    return n;
}

static cin_node *build_linear(const golden *g)
{
    st_info info;
    float *w = read_all(g->f, "weight", &info), *b = tensor(g, "bias");
    cin_node *n = NULL;
    if (w)
        linear_create((int)info.shape[1], (int)info.shape[0], w, b, &n, NULL);
    free(w);
    free(b);
    return n;
}

static cin_node *build_gcn(const golden *g)
{
    st_info wi;
    float *w = read_all(g->f, "weight", &wi), *bn[4];
    static const char *bn_names[4] = {"bn.weight", "bn.bias", "bn.running_mean",
                                      "bn.running_var"};
    for (int i = 0; i < 4; i++)
        bn[i] = tensor(g, bn_names[i]);
    gcn_params p = {.cin = g->c, .cout = w ? (int)wi.shape[1] : 0, .k = meta_int(g, "k", 1),
                    .joints = meta_int(g, "joints", 1), .persons = meta_int(g, "persons", 1),
                    .weight = w, .adj = tensor(g, "adj"), .pre_bias = tensor(g, "pre_bias"),
                    .post_bias = tensor(g, "post_bias"), 
                    .bn = {bn[0], bn[1], bn[2], bn[3], 1e-5f},
                    .relu = meta_int(g, "relu", 0)};
    cin_node *n = NULL;
    if (w && p.adj)
        gcn_create(&p, &n, NULL);
    free(w);
    free((float *)p.adj);
    free((float *)p.pre_bias);
    free((float *)p.post_bias);
    for (int i = 0; i < 4; i++)
        free(bn[i]);
    return n;
}

/* Squeeze-excitation steps differ from its clip by design; they have goldens of their own. */
static void check_se_steps(const char *name, const golden *g, const char *tensor_name,
                           int window)
{
    cin_node *n = build_se(g, window);
    float *expect = tensor(g, tensor_name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(expect);
    size_t sz = cin_dims_size(n->in);
    float *out = calloc(sz, sizeof(float)), *scratch = calloc(n->step_scratch + 1, sizeof(float));
    void *state = calloc(1, n->state_bytes + 1);
    int j = 0;
    double worst = 0;
    for (int t = 0; t < g->t; t++) {
        if (!n->ops->step(n, state, g->input + t * sz, out, scratch))
            continue;
        double e = tu_rel_err(out, expect + j * sz, sz);
        worst = e > worst ? e : worst;
        j++;
    }
    if (worst > TOL)
        fprintf(stderr, "\n  %s %s: rel err %.3g\n", name, tensor_name, worst);
    CU_ASSERT(worst <= TOL);
    CU_ASSERT_EQUAL(j, g->t - window + 1);
    free(out);
    free(scratch);
    free(state);
    free(expect);
    cin_node_free(n);
}

static cin_node *build(const golden *g, const char *op)
{
    if (strcmp(op, "conv3d") == 0 || strcmp(op, "conv3d_bn") == 0)
        return build_conv(g);
    if (strcmp(op, "squeeze_excitation") == 0)
        return build_se(g, 1);
    if (strcmp(op, "linear") == 0)
        return build_linear(g);
    if (strcmp(op, "gcn") == 0)
        return build_gcn(g);
    if (strcmp(op, "avg_pool3d") == 0) {
        cin_node *n = NULL;
        pool_temporal_create((cin_dims){g->c, g->h, g->w}, meta_int(g, "kt", 1), 0, &n,
                             NULL);
        return n;
    }
    if (strcmp(op, "global_spatial_avg_pool") == 0) {
        cin_node *n = NULL;
        pool_spatial_create((cin_dims){g->c, g->h, g->w}, &n, NULL);
        return n;
    }
    return build_act(g, op);
}

static int run_case(const char *path, const char *want_op)
{
    golden g;
    if (golden_open(path, &g)) {
        CU_FAIL("golden file unreadable");
        golden_close(&g);
        return 0;
    }
    const char *op = st_meta(g.f, "op");
    int ran = 0;
    if (op && strncmp(op, want_op, strlen(want_op)) == 0) {
        cin_node *n = build(&g, op);
        CU_ASSERT_PTR_NOT_NULL(n);
        if (n) {
            /* squeeze-excitation's clip pools the whole clip: steps are checked separately */
            check_node(path, n, &g, strcmp(op, "squeeze_excitation") != 0);
            cin_node_free(n);
            ran = 1;
        }
        if (strcmp(op, "squeeze_excitation") == 0) {
            check_se_steps(path, &g, "steps_w1", 1);
            check_se_steps(path, &g, "steps_w3", 3);
        }
    }
    golden_close(&g);
    return ran;
}

/* Runs every golden whose op starts with `op` in golden/ops/; returns how many there were. */
static int run_all(const char *op)
{
    DIR *d = opendir("golden/ops");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".safetensors"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "golden/ops/%s", e->d_name);
        n += run_case(path, op);
    }
    closedir(d);
    return n;
}

static void test_conv3d_matches_pytorch_in_both_modes(void)
{
    CU_ASSERT(run_all("conv3d") >= 12);
}

static void test_activations_match_pytorch(void)
{
    CU_ASSERT(run_all("relu") + run_all("swish") + run_all("sigmoid") + run_all("softmax") >= 4);
}

static void test_squeeze_excitation_clip_and_windows_match(void)
{
    CU_ASSERT(run_all("squeeze_excitation") >= 1);
}

static void test_pools_and_linear_match_pytorch(void)
{
    CU_ASSERT(run_all("avg_pool3d") >= 1);
    CU_ASSERT(run_all("global_spatial_avg_pool") >= 1);
    CU_ASSERT(run_all("linear") >= 1);
}

static void test_graph_convolution_matches_pytorch_in_both_modes(void)
{
    CU_ASSERT(run_all("gcn") >= 2);
}

/* Window 3, padding 1 over frames 1, 2, 3, ...: the first output comes at step 1 and counts
 * the frame before the stream as 0; a clip gives only full windows. */
static void test_padded_temporal_pool_emits_zero_padded_windows_early(void)
{
    cin_node *n = NULL;
    CU_ASSERT_EQUAL_FATAL(pool_temporal_create((cin_dims){1, 1, 1}, 3, 1, &n, NULL), 0);
    CU_ASSERT_EQUAL(cin_node_delay(n), 1);
    void *state = calloc(1, n->state_bytes);
    float out = 0.0f, x[5] = {1, 2, 3, 4, 5}, clip[3];
    const float want[5] = {0, 1.0f, 2.0f, 3.0f, 4.0f};   /* (0+1+2)/3, (1+2+3)/3, ... */
    for (int t = 0; t < 5; t++) {
        int r = n->ops->step(n, state, &x[t], &out, NULL);
        CU_ASSERT_EQUAL(r, t >= 1);
        if (r)
            CU_ASSERT_DOUBLE_EQUAL(out, want[t], 1e-6);
    }
    CU_ASSERT_EQUAL(cin_node_clip_frames(n, 5), 3);
    n->ops->forward(n, x, 5, clip, NULL);
    CU_ASSERT_DOUBLE_EQUAL(clip[0], 2.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(clip[2], 4.0, 1e-6);
    cin_node *bad = NULL;
    CU_ASSERT_NOT_EQUAL(pool_temporal_create((cin_dims){1, 1, 1}, 3, 3, &bad, NULL), 0);
    CU_ASSERT_PTR_NULL(bad);
    free(state);
    cin_node_free(n);
}

int test_ops_register(void)
{
    CU_pSuite s = CU_add_suite("ops", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "conv3d matches PyTorch in both modes",
                         test_conv3d_matches_pytorch_in_both_modes) &&
             CU_add_test(s, "activations match PyTorch", test_activations_match_pytorch) &&
             CU_add_test(s, "squeeze-excitation clip and windows match",
                         test_squeeze_excitation_clip_and_windows_match) &&
             CU_add_test(s, "pools and linear match PyTorch",
                         test_pools_and_linear_match_pytorch) &&
             CU_add_test(s, "graph convolution matches PyTorch in both modes",
                         test_graph_convolution_matches_pytorch_in_both_modes) &&
             CU_add_test(s, "padded temporal pool emits zero-padded windows early",
                         test_padded_temporal_pool_emits_zero_padded_windows_early);
    return ok ? 0 : -1;
}
