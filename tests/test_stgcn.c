/* ST-GCN and CoST-GCN against the PyTorch reference (tests/ref/stgcn.py): the skeleton graphs,
 * clip mode in both checkpoint layouts and both variants, continual mode step by step with the
 * step of every output, and loading real safetensors files in each layout, whole or damaged.
 * Weights and inputs are drawn from the seeded generator on both sides; the built graph stands
 * in for a checkpoint's own. Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adjacency.h"
#include "cin.h"
#include "safetensors.h"
#include "util.h"

#define TOL 1e-4

static const char *const layouts[] = {"ntu-rgb+d", "openpose", "coco", "cmu31"};
static const char *const strategies[] = {"uniform", "distance", "spatial"};

static float *read_tensor(st_file *f, const char *name, size_t *n)
{
    st_info info;
    if (st_find(f, name, &info, NULL))
        return NULL;
    float *v = malloc(info.nbytes + 1);
    if (n)
        *n = info.nbytes / sizeof(float);
    if (v && st_read_f32(f, name, -1, NULL, v, NULL)) {
        free(v);
        return NULL;
    }
    return v;
}

static void test_graphs_equal_the_original_st_gcn_construction(void)
{
    st_file *f;
    CU_ASSERT_EQUAL_FATAL(st_open("golden/stgcn_graphs.safetensors", &f, NULL), 0);
    for (int l = 0; l < 4; l++)
        for (int s = 0; s < 3; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s/%s", layouts[l], strategies[s]);
            size_t n;
            float *want = read_tensor(f, name, &n), got[3 * 31 * 31];
            adj_strategy st;
            CU_ASSERT_EQUAL_FATAL(adj_parse_strategy(strategies[s], &st, NULL), 0);
            int nv = adj_joints(layouts[l]);
            CU_ASSERT_EQUAL(n, (size_t)adj_partitions(st) * nv * nv);
            CU_ASSERT_EQUAL(adj_build(layouts[l], st, got, NULL), 0);
            double e = want && n <= sizeof got / sizeof got[0] ? tu_rel_err(got, want, n) : 1;
            if (e > 1e-6)
                fprintf(stderr, "\n  %s: rel err %.3g\n", name, e);
            CU_ASSERT(e <= 1e-6);
            free(want);
        }
    st_close(f);
    cin_err err;
    CU_ASSERT_EQUAL(adj_build("kinect", ADJ_SPATIAL, NULL, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "ntu-rgb+d, openpose, coco, cmu31"));
}

/* ---- numerics ---- */

typedef struct golden {
    st_file *f;
    int frames, clip_frames;
    char layout[32], variant[16];
    uint64_t wseed, iseed;
} golden;

static int meta_int(const golden *g, const char *key)
{
    const char *v = st_meta(g->f, key);
    return v ? atoi(v) : -1;
}

static int golden_open(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    if (st_open(path, &g->f, NULL))
        return -1;
    const char *layout = st_meta(g->f, "layout"), *variant = st_meta(g->f, "variant");
    if (!layout || !variant)
        return -1;
    snprintf(g->layout, sizeof g->layout, "%s",
             strcmp(layout, "coskel") == 0 ? "continual-skeletons" : "st-gcn");
    snprintf(g->variant, sizeof g->variant, "%s",
             strcmp(variant, "stgcn_star") == 0 ? "st-gcn*" : "st-gcn");
    g->frames = meta_int(g, "frames");
    g->clip_frames = meta_int(g, "clip_frames") > 0 ? meta_int(g, "clip_frames") : g->frames;
    g->wseed = (uint64_t)meta_int(g, "weight_seed");
    g->iseed = (uint64_t)meta_int(g, "input_seed");
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

static cin_model *load(const golden *g, const char *weights, cin_err *err)
{
    cin_skeleton_opts so = {.variant = g->variant, .layout = g->layout,
                            .clip_frames = g->clip_frames};
    cin_model_opts o = {.arch = "stgcn", .skeleton = &so, .seed = g->wseed, .weights = weights};
    cin_model *m = NULL;
    cin_model_load(&o, &m, err);
    return m;
}

static double clip_error(cin_model *m, const golden *g)
{
    size_t n;
    float *want = read_tensor(g->f, "logits", &n), *x = golden_frames(g);
    cin_model_info i;
    cin_model_get_info(m, &i);
    float *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s = NULL;
    double e = 1.0;
    if (want && (size_t)i.out_size == n && cin_stream_create(m, &s, NULL) == 0 &&
        cin_stream_forward(s, x, g->frames, out) == 0)
        e = tu_rel_err(out, want, n);
    cin_stream_free(s);
    free(want);
    free(x);
    free(out);
    return e;
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
    double e = clip_error(m, &g);
    if (e > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", path, e);
    CU_ASSERT(e <= TOL);
    cin_model_free(m);
    st_close(g.f);
}

static void test_clip_mode_equals_st_gcn_in_both_layouts_and_variants(void)
{
    check_clip("golden/stgcn_clip_stgcn.safetensors", NULL);
    check_clip("golden/stgcn_clip_coskel.safetensors", NULL);
    check_clip("golden/stgcn_star_clip_coskel.safetensors", NULL);
}

/* Every output must come at the golden's step (first_step + j * stride), not only with its
 * values: the newest frame of a window moves the logits too little for 1e-4 to notice. */
static void check_steps(const char *path)
{
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open(path, &g), 0);
    cin_model *m = load(&g, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    int first = meta_int(&g, "first_step"), stride = meta_int(&g, "stride");
    CU_ASSERT_EQUAL(i.delay, first);
    CU_ASSERT_EQUAL(i.stride, stride);
    size_t n, fsz = (size_t)i.in_channels * i.in_width;
    float *want = read_tensor(g.f, "logits", &n), *x = golden_frames(&g);
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
    CU_ASSERT(j >= 8);
    free(want);
    free(x);
    free(out);
    cin_stream_free(s);
    cin_model_free(m);
    st_close(g.f);
}

static void test_continual_mode_equals_cost_gcn_step_by_step(void)
{
    check_steps("golden/cost_gcn_steps_coskel.safetensors");
    check_steps("golden/cost_gcn_star_steps_coskel.safetensors");
    check_steps("golden/cost_gcn_steps_stgcn.safetensors");
}

/* ---- checkpoints on disk ---- */

/* How to spoil a checkpoint: skip one tensor, give one a wrong shape, put a NaN in one, add a
 * tensor of another model. */
typedef struct damage {
    const char *drop, *reshape, *nan;
    int foreign;
} damage;

/* Writes the reference's tensors of one layout to path, damaged as d says. */
static int write_checkpoint(const char *path, const char *layout, uint64_t seed, damage d)
{
    static st_out all[TU_SKEL_MAX], t[TU_SKEL_MAX + 1];
    char names[64];
    snprintf(names, sizeof names, "golden/stgcn_names_%s.txt", layout);
    int n = tu_skel_tensors(names, seed, all), k = 0;
    for (int i = 0; i < n; i++) {
        if (d.drop && strcmp(all[i].name, d.drop) == 0)
            continue;
        st_out *o = &t[k++];
        *o = all[i];
        size_t numel = 1;
        for (int j = 0; j < o->ndim; j++)
            numel *= (size_t)o->shape[j];
        if (d.nan && strcmp(o->name, d.nan) == 0)
            ((float *)o->data)[numel / 2] = NAN;
        if (d.reshape && strcmp(o->name, d.reshape) == 0)
            o->shape[0] = 1, o->ndim = 1;
    }
    static const float extra[4] = {0};
    if (d.foreign)
        t[k++] = (st_out){.name = "layers.layer11.tcn.bn.bias", .ndim = 1, .shape = {4},
                          .data = extra};
    int rc = n > 100 ? st_write(path, t, k, NULL, NULL) : -1;
    tu_skel_free(all, n);
    return rc;
}

static void test_checkpoints_in_both_layouts_load_and_match(void)
{
    const char *coskel = tu_tmp_path("coskel.safetensors");
    const char *orig = tu_tmp_path("stgcn.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(coskel, "coskel", 1, (damage){0}), 0);
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(orig, "stgcn", 1, (damage){0}), 0);
    check_clip("golden/stgcn_clip_coskel.safetensors", coskel);
    check_clip("golden/stgcn_star_clip_coskel.safetensors", coskel);
    check_clip("golden/stgcn_clip_stgcn.safetensors", orig);
    cin_model_opts o = {.arch = "stgcn", .weights = orig};
    cin_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(cin_model_load(&o, &m, NULL), 0);
    cin_model_info i;
    cin_model_get_info(m, &i);
    CU_ASSERT_STRING_EQUAL(i.layout, "st-gcn");
    CU_ASSERT_EQUAL(i.out_size, 60);
    CU_ASSERT_EQUAL(i.in_width, 50);
    cin_model_free(m);
}

/* Loading a spoiled checkpoint fails with `code` and a message holding `tensor`. */
static void expect_refused(const char *layout, damage d, int code, const char *tensor,
                           const char *fragment)
{
    const char *path = tu_tmp_path("spoiled.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, layout, 1, d), 0);
    cin_model_opts o = {.arch = "stgcn", .weights = path};
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

static void test_spoiled_checkpoints_are_refused_naming_the_tensor(void)
{
    expect_refused("stgcn", (damage){.drop = "st_gcn_networks.4.residual.1.running_var"},
                   CIN_E_NOTFOUND, "st_gcn_networks.4.residual.1.running_var", "safetensors");
    expect_refused("coskel", (damage){.reshape = "layers.layer8.tcn.t_conv.weight"},
                   CIN_E_SHAPE, "layers.layer8.tcn.t_conv.weight", "256");
    expect_refused("coskel", (damage){.nan = "layers.layer3.gcn.graph_attn"}, CIN_E_FORMAT,
                   "layers.layer3.gcn.graph_attn", "is nan");
    expect_refused("coskel", (damage){.foreign = 1}, CIN_E_SHAPE,
                   "layers.layer11.tcn.bn.bias", "not part of st-gcn");
    expect_refused("stgcn", (damage){.drop = "st_gcn_networks.0.gcn.conv.weight"},
                   CIN_E_NOTFOUND, "st_gcn_networks.0.gcn.conv.weight", "continual-skeletons");
}

static void test_bad_skeleton_settings_name_the_setting(void)
{
    static const struct {
        cin_skeleton_opts so;
        const char *fragment;
    } bad[] = {
        {{.variant = "st-gcn++"}, "variant 'st-gcn++', expected st-gcn, st-gcn*, agcn or agcn*"},
        {{.graph = "kinect"}, "graph layout 'kinect'"},
        {{.strategy = "hops"}, "strategy 'hops'"},
        {{.persons = 40}, "40 persons"},
        {{.variant = "st-gcn*", .clip_frames = 80}, "clip_frames: 80 is shorter"},
        {{.layout = "continual-skeletons", .strategy = "uniform"}, "spatial strategy"},
        {{.layout = "mmskeleton"}, "layout 'mmskeleton'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cin_model_opts o = {.arch = "stgcn", .skeleton = &bad[i].so};
        cin_model *m = NULL;
        cin_err err = {0};
        CU_ASSERT(cin_model_load(&o, &m, &err) < 0);
        CU_ASSERT_PTR_NULL(m);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].fragment));
        if (!strstr(err.msg, bad[i].fragment))
            fprintf(stderr, "\n  unexpected message: %s\n", err.msg);
    }
}

int test_stgcn_register(void)
{
    CU_pSuite s = CU_add_suite("stgcn", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "graphs equal the original ST-GCN construction",
                         test_graphs_equal_the_original_st_gcn_construction) &&
             CU_add_test(s, "clip mode equals ST-GCN in both layouts and variants",
                         test_clip_mode_equals_st_gcn_in_both_layouts_and_variants) &&
             CU_add_test(s, "continual mode equals CoST-GCN step by step",
                         test_continual_mode_equals_cost_gcn_step_by_step) &&
             CU_add_test(s, "checkpoints in both layouts load and match",
                         test_checkpoints_in_both_layouts_load_and_match) &&
             CU_add_test(s, "spoiled checkpoints are refused naming the tensor",
                         test_spoiled_checkpoints_are_refused_naming_the_tensor) &&
             CU_add_test(s, "bad skeleton settings name the setting",
                         test_bad_skeleton_settings_name_the_setting);
    return ok ? 0 : -1;
}
