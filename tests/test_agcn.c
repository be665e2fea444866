/* The adaptive graph convolution and AGCN / CoAGCN(*) against the PyTorch reference
 * (tests/ref/agcn.py, continual-skeletons' names): the operator in clip mode (one graph per
 * clip) and stepping (one graph per frame), AGCN and AGCN* over a clip, CoAGCN and CoAGCN*
 * step by step with the step of every output, and AGCN checkpoints on disk, whole or with a
 * tensor missing or misshapen. Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agcn.h"
#include "cin.h"
#include "safetensors.h"
#include "util.h"

#define TOL 1e-4

static float *read_tensor(st_file *f, const char *name, st_info *info)
{
    st_info local;
    info = info ? info : &local;
    if (st_find(f, name, info, NULL))
        return NULL;
    float *v = malloc(info->nbytes + 1);
    if (v && st_read_f32(f, name, -1, NULL, v, NULL)) {
        free(v);
        return NULL;
    }
    return v;
}

static int meta_int(st_file *f, const char *key)
{
    const char *v = st_meta(f, key);
    return v ? atoi(v) : -1;
}

/* ---- the operator ---- */

/* <conv>.0..k-1.<leaf> stacked into one array of k * each floats; NULL if any is missing. */
static float *stacked(st_file *f, const char *conv, const char *leaf, int k, size_t each)
{
    float *all = malloc(sizeof(float) * k * each);
    for (int i = 0; all && i < k; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%d.%s", conv, i, leaf);
        float *v = read_tensor(f, name, NULL);
        if (!v) {
            free(all);
            return NULL;
        }
        memcpy(all + i * each, v, sizeof(float) * each);
        free(v);
    }
    return all;
}

/* The operator from a golden's continual-skeletons tensors; *bufs gets what to free. */
static cin_node *build_op(st_file *f, int cin, float *bufs[12])
{
    int k = meta_int(f, "k"), ne = meta_int(f, "inter"), nv = meta_int(f, "joints");
    st_info wi;
    float *w0 = read_tensor(f, "g_conv.0.weight", &wi);
    int cout = w0 ? (int)wi.shape[0] : 0;
    free(w0);
    bufs[0] = stacked(f, "g_conv", "weight", k, (size_t)cout * cin);
    bufs[1] = stacked(f, "g_conv", "bias", k, (size_t)cout);
    for (int c = 0; bufs[1] && c < cout; c++)
        bufs[1][c] += bufs[1][cout + c] + bufs[1][2 * cout + c];
    bufs[2] = stacked(f, "a_conv", "weight", k, (size_t)ne * cin);
    bufs[3] = stacked(f, "a_conv", "bias", k, (size_t)ne);
    bufs[4] = stacked(f, "b_conv", "weight", k, (size_t)ne * cin);
    bufs[5] = stacked(f, "b_conv", "bias", k, (size_t)ne);
    bufs[6] = read_tensor(f, "A", NULL);
    bufs[7] = read_tensor(f, "graph_attn", NULL);
    static const char *bn[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    for (int i = 0; i < 4; i++)
        bufs[8 + i] = read_tensor(f, bn[i], NULL);
    for (int i = 0; i < 12; i++)
        if (!bufs[i])
            return NULL;
    for (int i = 0; i < k * nv * nv; i++)
        bufs[6][i] += bufs[7][i];
    agcn_params p = {.cin = cin, .cout = cout, .k = k, .inter = ne, .joints = nv,
                     .persons = meta_int(f, "persons"), .weight = bufs[0], .bias = bufs[1],
                     .theta_w = bufs[2], .theta_b = bufs[3], .phi_w = bufs[4],
                     .phi_b = bufs[5], .adj = bufs[6], 
                     .bn = {bufs[8], bufs[9], bufs[10], bufs[11], 1e-5f}};
    cin_node *n = NULL;
    agcn_create(&p, &n, NULL);
    return n;
}

/* Clip mode equals "clip" (the graph from every frame); steps equal "steps" (per frame). */
static void check_op(const char *path)
{
    st_file *f;
    CU_ASSERT_EQUAL_FATAL(st_open(path, &f, NULL), 0);
    st_info xi;
    float *x = read_tensor(f, "input", &xi), *clip = read_tensor(f, "clip", NULL);
    float *steps = read_tensor(f, "steps", NULL), *bufs[12] = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    int t = (int)xi.shape[0];
    cin_node *n = build_op(f, (int)xi.shape[1], bufs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    size_t isz = cin_dims_size(n->in), osz = cin_dims_size(n->out);
    float *out = calloc(osz * t, sizeof(float));
    float *scratch = calloc(cin_node_clip_scratch(n, t) + n->step_scratch + 1, sizeof(float));
    n->ops->forward(n, x, t, out, scratch);
    double e = tu_rel_err(out, clip, osz * t), worst = 0.0;
    for (int i = 0; i < t; i++) {
        CU_ASSERT_EQUAL(n->ops->step(n, NULL, x + i * isz, out + i * osz, scratch), 1);
        double ei = tu_rel_err(out + i * osz, steps + i * osz, osz);
        worst = ei > worst ? ei : worst;
    }
    if (e > TOL || worst > TOL)
        fprintf(stderr, "\n  %s: clip rel err %.3g, steps %.3g\n", path, e, worst);
    CU_ASSERT(e <= TOL);
    CU_ASSERT(worst <= TOL);
    /* the clip's graph is not a frame's: the two modes must really differ */
    CU_ASSERT(tu_rel_err(clip, steps, osz * t) > 1e-3);
    for (int i = 0; i < 12; i++)
        free(bufs[i]);
    free(x);
    free(clip);
    free(steps);
    free(out);
    free(scratch);
    cin_node_free(n);
    st_close(f);
}

static void test_adaptive_graph_convolution_matches_pytorch_in_both_modes(void)
{
    check_op("golden/ops/agcn_c4_c8_m2.safetensors");
    check_op("golden/ops/agcn_c6_c16_m1.safetensors");
}

static void test_adaptive_graph_convolution_refuses_bad_shapes(void)
{
    float w[8] = {0};
    agcn_params p = {.cin = 2, .cout = 4, .k = 1, .inter = 0, .joints = 2, .persons = 1,
                     .weight = w, .theta_w = w, .phi_w = w, .adj = w};
    cin_node *n = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL(agcn_create(&p, &n, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NULL(n);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0 embedding channels"));
    p.inter = 1;
    p.phi_w = NULL;
    CU_ASSERT_EQUAL(agcn_create(&p, &n, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "embedding weights"));
}

/* ---- the models ---- */

typedef struct golden {
    st_file *f;
    int frames, clip_frames;
    const char *variant;    /* cin's name of the golden's variant */
    uint64_t wseed, iseed;
} golden;

static int golden_open(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    if (st_open(path, &g->f, NULL))
        return -1;
    const char *variant = st_meta(g->f, "variant");
    if (!variant)
        return -1;
    /* coagcn is AGCN's weights stepped: in cin, the agcn variant in continual mode */
    g->variant = strcmp(variant, "agcn_star") == 0 ? "agcn*" : "agcn";
    g->frames = meta_int(g->f, "frames");
    g->clip_frames = meta_int(g->f, "clip_frames") > 0 ? meta_int(g->f, "clip_frames")
                                                       : g->frames;
    g->wseed = (uint64_t)meta_int(g->f, "weight_seed");
    g->iseed = (uint64_t)meta_int(g->f, "input_seed");
    return 0;
}

/* The golden's input [T][C][V][M] as model frames [T][C][1][M * V]. */
static float *golden_frames(const golden *g)
{
    double sum;
    float *x = tu_skeleton_input(g->frames, g->iseed, &sum);
    const char *want = st_meta(g->f, "input_sum");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT(want && fabs(sum - atof(want)) < 1e-3);
    return x;
}

/* No layout is set: the variant must pick continual-skeletons' for seeded weights. */
static cin_model *load(const golden *g, const char *weights, cin_err *err)
{
    cin_skeleton_opts so = {.variant = g->variant, .clip_frames = g->clip_frames};
    cin_model_opts o = {.arch = "stgcn", .skeleton = &so, .seed = g->wseed, .weights = weights};
    cin_model *m = NULL;
    cin_model_load(&o, &m, err);
    return m;
}

static void check_clip(const char *path, const char *weights)
{
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open(path, &g), 0);
    cin_err err = {0};
    cin_model *m = load(&g, weights, &err);
    if (!m)
        fprintf(stderr, "\n  %s: %s\n", path, err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    st_info li;
    float *want = read_tensor(g.f, "logits", &li), *x = golden_frames(&g);
    cin_model_info i;
    cin_model_get_info(m, &i);
    float *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s = NULL;
    double e = 1.0;
    if (want && (size_t)i.out_size * sizeof(float) == li.nbytes &&
        cin_stream_create(m, &s, NULL) == 0 && cin_stream_forward(s, x, g.frames, out) == 0)
        e = tu_rel_err(out, want, (size_t)i.out_size);
    if (e > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", path, e);
    CU_ASSERT(e <= TOL);
    CU_ASSERT_STRING_EQUAL(i.layout, weights ? "continual-skeletons" : "seeded");
    cin_stream_free(s);
    free(want);
    free(x);
    free(out);
    cin_model_free(m);
    st_close(g.f);
}

static void test_clip_mode_equals_agcn_and_agcn_star(void)
{
    check_clip("golden/agcn_clip_coskel.safetensors", NULL);
    check_clip("golden/agcn_star_clip_coskel.safetensors", NULL);
}

/* Every output must come at the golden's step (first_step + j * stride), with its values. */
static void check_steps(const char *path, int min_outputs)
{
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open(path, &g), 0);
    cin_model *m = load(&g, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    int first = meta_int(g.f, "first_step"), stride = meta_int(g.f, "stride");
    CU_ASSERT_EQUAL(i.delay, first);
    CU_ASSERT_EQUAL(i.stride, stride);
    st_info li;
    size_t fsz = (size_t)i.in_channels * i.in_width;
    float *want = read_tensor(g.f, "logits", &li), *x = golden_frames(&g);
    size_t n = want ? li.nbytes / sizeof(float) : 0;
    float *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    int j = 0;
    double worst = 0.0;
    for (int t = 0; t < g.frames; t++) {
        int r = cin_stream_step(s, x + t * fsz, out);
        CU_ASSERT_EQUAL(r, t >= first && (t - first) % stride == 0);
        if (r != 1 || (size_t)(j + 1) * i.out_size > n)
            continue;
        double e = tu_rel_err(out, want + (size_t)j++ * i.out_size, i.out_size);
        worst = e > worst ? e : worst;
    }
    if (worst > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", path, worst);
    CU_ASSERT(worst <= TOL);
    CU_ASSERT_EQUAL((size_t)j * i.out_size, n);
    CU_ASSERT(j >= min_outputs);
    free(want);
    free(x);
    free(out);
    cin_stream_free(s);
    cin_model_free(m);
    st_close(g.f);
}

static void test_continual_mode_equals_coagcn_star_step_by_step(void)
{
    check_steps("golden/coagcn_star_steps_coskel.safetensors", 29);
}

static void test_continual_mode_equals_coagcn_with_a_graph_per_frame(void)
{
    check_steps("golden/coagcn_steps_coskel.safetensors", 8);
}

/* ---- checkpoints on disk ---- */

/* How to spoil a checkpoint: skip one tensor, or give one a wrong shape. */
typedef struct damage {
    const char *drop, *reshape;
} damage;

/* Writes the reference's AGCN tensors (golden/agcn_names_coskel.txt) to path. */
static int write_checkpoint(const char *path, uint64_t seed, damage d)
{
    static st_out all[TU_SKEL_MAX], t[TU_SKEL_MAX];
    int n = tu_skel_tensors("golden/agcn_names_coskel.txt", seed, all), k = 0;
    for (int i = 0; i < n; i++) {
        if (d.drop && strcmp(all[i].name, d.drop) == 0)
            continue;
        t[k] = all[i];
        if (d.reshape && strcmp(t[k].name, d.reshape) == 0)
            t[k].shape[0] = 1, t[k].ndim = 1;
        k++;
    }
    int rc = n > 200 ? st_write(path, t, k, NULL, NULL) : -1;
    tu_skel_free(all, n);
    return rc;
}

static void test_agcn_checkpoints_load_and_match(void)
{
    const char *path = tu_tmp_path("agcn.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, 1, (damage){0}), 0);
    check_clip("golden/agcn_clip_coskel.safetensors", path);
    check_clip("golden/agcn_star_clip_coskel.safetensors", path);
}

/* Loading `path` as `variant` fails with `code` and a message holding both fragments. */
static void expect_refused(const char *path, const char *variant, int code, const char *tensor,
                           const char *fragment)
{
    cin_skeleton_opts so = {.variant = variant};
    cin_model_opts o = {.arch = "stgcn", .skeleton = &so, .weights = path};
    cin_model *m = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL(cin_model_load(&o, &m, &err), code);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, tensor));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, fragment));
    if (!strstr(err.msg, tensor) || !strstr(err.msg, fragment))
        fprintf(stderr, "\n  unexpected message: %s\n", err.msg);
    cin_model_free(m);
}

static void test_spoiled_agcn_checkpoints_are_refused_naming_the_tensor(void)
{
    const char *path = tu_tmp_path("agcn_spoiled.safetensors");
    const char *drop = "layers.layer3.gcn.a_conv.1.weight";
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, 1, (damage){.drop = drop}), 0);
    expect_refused(path, "agcn", CIN_E_NOTFOUND, drop, "safetensors");
    expect_refused(path, "agcn*", CIN_E_NOTFOUND, drop, "safetensors");
    const char *bad = "layers.layer6.gcn.b_conv.2.weight";
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, 1, (damage){.reshape = bad}), 0);
    expect_refused(path, "agcn", CIN_E_SHAPE, bad, "expected");
    expect_refused(path, "agcn*", CIN_E_SHAPE, bad, "32");
    /* an AGCN checkpoint is no ST-GCN one */
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, 1, (damage){0}), 0);
    expect_refused(path, "st-gcn", CIN_E_SHAPE, "a_conv", "not part of st-gcn");
}

static void test_agcn_takes_only_continual_skeletons_layout(void)
{
    cin_skeleton_opts so = {.variant = "agcn", .layout = "st-gcn"};
    cin_model_opts o = {.arch = "stgcn", .skeleton = &so};
    cin_model *m = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL(cin_model_load(&o, &m, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "continual-skeletons' layout"));
}

int test_agcn_register(void)
{
    CU_pSuite s = CU_add_suite("agcn", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "adaptive graph convolution matches PyTorch in both modes",
                         test_adaptive_graph_convolution_matches_pytorch_in_both_modes) &&
             CU_add_test(s, "adaptive graph convolution refuses bad shapes",
                         test_adaptive_graph_convolution_refuses_bad_shapes) &&
             CU_add_test(s, "clip mode equals AGCN and AGCN*",
                         test_clip_mode_equals_agcn_and_agcn_star) &&
             CU_add_test(s, "continual mode equals CoAGCN* step by step",
                         test_continual_mode_equals_coagcn_star_step_by_step) &&
             CU_add_test(s, "continual mode equals CoAGCN with a graph per frame",
                         test_continual_mode_equals_coagcn_with_a_graph_per_frame) &&
             CU_add_test(s, "AGCN checkpoints load and match",
                         test_agcn_checkpoints_load_and_match) &&
             CU_add_test(s, "spoiled AGCN checkpoints are refused naming the tensor",
                         test_spoiled_agcn_checkpoints_are_refused_naming_the_tensor) &&
             CU_add_test(s, "AGCN takes only continual-skeletons' layout",
                         test_agcn_takes_only_continual_skeletons_layout);
    return ok ? 0 : -1;
}
