/* cin-derive against the PyTorch reference (tests/ref/derive.py): SPLoRA and SPPaRA fused
 * weights of a Linear and a Conv3d, L1/L2 masks, a derived X3D-XS stepped over 40 frames
 * against the pruned reference model, and bad masks or adapters refused by name.
 * Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "cin.h"
#include "config.h"
#include "derive.h"
#include "npy.h"
#include "pipeline.h"
#include "safetensors.h"
#include "seeded.h"
#include "util.h"
#include "weights.h"
#include "x3d.h"

#define TOL 1e-4
#define DG "golden/derive/"

/* A golden tensor, malloc'd, and its shape. */
static float *dg_get(st_file *f, const char *name, st_info *info)
{
    CU_ASSERT_FATAL(st_find(f, name, info, NULL) == 0);
    float *v = malloc(info->nbytes + 1);
    CU_ASSERT_FATAL(st_read_f32(f, name, -1, NULL, v, NULL) == 0);
    return v;
}

/* The kept indices of a 0/1 mask; returns their count. */
static int dg_keep(const float *m, int n, int *keep)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (m[i] != 0.0f)
            keep[k++] = i;
    return k;
}

/* The library's masked named_parameters: rows[:, :, m_in], cols[:, m_out, :]. */
static void dg_slice_lora(const float *rows, const float *cols, int rank, int in,
                          const int *ki, int ni, const int *ko, int no, float *sr, float *sc)
{
    for (int r = 0; r < rank; r++)
        for (int j = 0; j < ni; j++)
            sr[r * ni + j] = rows[r * in + ki[j]];
    for (int i = 0; i < no; i++)
        for (int r = 0; r < rank; r++)
            sc[i * rank + r] = cols[ko[i] * rank + r];
}

static void check_fuse(st_file *g, const char *layer)
{
    char n[128];
    st_info wi, ri, ci, pi, mi;
    snprintf(n, sizeof n, "%s.weight", layer);
    float *w = dg_get(g, n, &wi);
    snprintf(n, sizeof n, "%s.adapter.rows", layer);
    float *rows = dg_get(g, n, &ri);
    snprintf(n, sizeof n, "%s.adapter.cols", layer);
    float *cols = dg_get(g, n, &ci);
    snprintf(n, sizeof n, "%s.para", layer);
    float *para = dg_get(g, n, &pi);
    int out = (int)wi.shape[0], in = (int)wi.shape[1], rank = (int)ri.shape[1];
    int ko[64], ki[64];
    snprintf(n, sizeof n, "%s.m_out", layer);
    float *m = dg_get(g, n, &mi);
    int no = dg_keep(m, out, ko);
    free(m);
    snprintf(n, sizeof n, "%s.m_in", layer);
    m = dg_get(g, n, &mi);
    int ni = dg_keep(m, in, ki);
    free(m);

    st_info fi;
    snprintf(n, sizeof n, "%s.splora_fused", layer);
    float *want = dg_get(g, n, &fi), *got = malloc(fi.nbytes);
    derive_adapter a = {.rows = rows, .cols = cols, .rank = rank, .rows_in = in, .cols_out = out};
    CU_ASSERT_EQUAL(derive_fuse(layer, w, wi.ndim, wi.shape, ko, no, ki, ni, &a, got, NULL), 0);
    CU_ASSERT(tu_rel_err(got, want, fi.nbytes / 4) <= TOL);

    float sr[64], sc[64];
    dg_slice_lora(rows, cols, rank, in, ki, ni, ko, no, sr, sc);
    derive_adapter s = {.rows = sr, .cols = sc, .rank = rank, .rows_in = ni, .cols_out = no};
    CU_ASSERT_EQUAL(derive_fuse(layer, w, wi.ndim, wi.shape, ko, no, ki, ni, &s, got, NULL), 0);
    CU_ASSERT(tu_rel_err(got, want, fi.nbytes / 4) <= TOL);
    free(want);

    snprintf(n, sizeof n, "%s.sppara_fused", layer);
    want = dg_get(g, n, &fi);
    derive_adapter p = {.para = para, .para_out = out, .para_in = in};
    CU_ASSERT_EQUAL(derive_fuse(layer, w, wi.ndim, wi.shape, ko, no, ki, ni, &p, got, NULL), 0);
    CU_ASSERT(tu_rel_err(got, want, fi.nbytes / 4) <= TOL);
    free(want);
    free(got);
    free(w);
    free(rows);
    free(cols);
    free(para);
}

static void test_splora_and_sppara_fuse_as_the_reference_for_linear_and_conv3d(void)
{
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_fuse.safetensors", &g, NULL) == 0);
    check_fuse(g, "linear");
    check_fuse(g, "conv");
    st_close(g);
}

static void check_mask(st_file *g, const char *layer, const char *norm, derive_norm kind)
{
    char n[128];
    st_info wi, mi;
    snprintf(n, sizeof n, "%s.weight", layer);
    float *w = dg_get(g, n, &wi);
    snprintf(n, sizeof n, "%s.mask_%s", layer, norm);
    float *want = dg_get(g, n, &mi), got[64];
    int out = (int)wi.shape[0];
    int64_t per = (int64_t)(wi.nbytes / 4) / out;
    derive_norm_mask(w, out, per, kind, derive_keep_count(out, 0.5), got);
    CU_ASSERT_EQUAL(memcmp(got, want, sizeof(float) * (size_t)out), 0);
    free(w);
    free(want);
}

static void test_l1_and_l2_masks_equal_the_reference(void)
{
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_fuse.safetensors", &g, NULL) == 0);
    check_mask(g, "linear", "l1", DERIVE_L1);
    check_mask(g, "linear", "l2", DERIVE_L2);
    check_mask(g, "conv", "l1", DERIVE_L1);
    check_mask(g, "conv", "l2", DERIVE_L2);
    st_close(g);
    CU_ASSERT_EQUAL(derive_keep_count(54, 0.5), 27);
    CU_ASSERT_EQUAL(derive_keep_count(3, 0.99), 1);
    CU_ASSERT_EQUAL(derive_keep_count(5, 0.5), 2); /* round(2.5) in the reference */
    CU_ASSERT_EQUAL(derive_keep_count(7, 0.5), 4); /* round(3.5) */
}

/* ---- a derived X3D-XS ---- */

typedef struct dg_ckpt {
    st_out t[1024];
    int n;
} dg_ckpt;

static void dg_collect(void *user, const char *name, int ndim, const int64_t *shape)
{
    dg_ckpt *c = user;
    if (c->n >= 1024)
        return;
    st_out *o = &c->t[c->n++];
    o->name = strdup(name);
    o->ndim = ndim;
    memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

/* The pytorchvideo name of SlowFast tensor sf from golden/x3d_names_xs.txt, or NULL. */
static const char *dg_pv_name(const char *sf, char pv[128])
{
    char s[128], shape[64];
    FILE *f = fopen("golden/x3d_names_xs.txt", "r");
    int found = 0;
    while (f && !found && fscanf(f, "%127s %127s %63s", pv, s, shape) == 3)
        found = strcmp(s, sf) == 0;
    if (f)
        fclose(f);
    return found ? pv : NULL;
}

/* Seeded values by the pytorchvideo name, as the reference draws them; SlowFast's extra
 * shortcut norm is the identity. */
static float *dg_fill(const st_out *o, x3d_layout layout, uint64_t seed)
{
    size_t numel = 1;
    for (int d = 0; d < o->ndim; d++)
        numel *= (size_t)o->shape[d];
    float *v = malloc(sizeof(float) * numel);
    char buf[128];
    const char *pv = layout == X3D_SLOWFAST ? dg_pv_name(o->name, buf) : o->name;
    double lo, hi;
    if (pv) {
        cin_seeded_range(pv, o->ndim, o->shape, &lo, &hi);
        cin_seeded_fill(v, numel, seed, pv, lo, hi);
        return v;
    }
    int one = strstr(o->name, ".weight") != NULL, var = strstr(o->name, "running_var") != NULL;
    for (size_t i = 0; i < numel; i++)
        v[i] = one ? 1.0f : var ? 1.0f - 1e-5f : 0.0f;
    return v;
}

/* Seeded X3D-XS weights under one layout's names. */
static int dg_write_layout(const char *path, x3d_layout layout, uint64_t seed)
{
    static dg_ckpt c;
    c.n = 0;
    wsrc *w = wsrc_seeded(seed);
    x3d_opts o = {.size = "xs", .crop = 96, .pool_window = 4};
    cin_node *root = NULL;
    int clip;
    int rc = x3d_build(&o, w, layout, dg_collect, &c, &root, &clip, NULL);
    cin_node_free(root);
    wsrc_close(w);
    for (int i = 0; !rc && i < c.n; i++)
        c.t[i].data = dg_fill(&c.t[i], layout, seed);
    const char *meta[] = {"format", "pt", NULL};
    rc = rc ? rc : st_write(path, c.t, c.n, meta, NULL);
    for (int i = 0; i < c.n; i++) {
        free((char *)c.t[i].name);
        free((float *)c.t[i].data);
        c.t[i].data = NULL;
    }
    return rc;
}

static const char *dg_source(void)
{
    static const char *path;
    if (!path) {
        path = tu_tmp_path("x3d_xs_seeded.safetensors");
        CU_ASSERT_FATAL(dg_write_layout(path, X3D_PYTORCHVIDEO, 1) == 0);
    }
    return path;
}

static cin_model *dg_load(const char *weights, cin_err *err)
{
    cin_model *m = NULL;
    cin_model_opts o = {.arch = "x3d", .size = "xs", .crop = 96, .pool_window = 4,
                        .se_window = 1, .weights = weights};
    cin_model_load(&o, &m, err);
    return m;
}

/* Worst relative error of the stepped outputs against step_logits. */
static double dg_steps_error(cin_model *m, st_file *g)
{
    int frames = atoi(st_meta(g, "frames")), crop = atoi(st_meta(g, "crop"));
    cin_model_info i;
    cin_model_get_info(m, &i);
    CU_ASSERT_EQUAL(i.delay, atoi(st_meta(g, "delay")));
    st_info info;
    float *want = dg_get(g, "step_logits", &info);
    size_t fsz = (size_t)3 * crop * crop, n = info.nbytes / 4;
    float *x = malloc(sizeof(float) * fsz * frames), *out = malloc(sizeof(float) * i.out_size);
    cin_seeded_fill(x, fsz * frames, strtoull(st_meta(g, "input_seed"), NULL, 10), "input",
                    -1.0, 1.0);
    cin_stream *s;
    CU_ASSERT_FATAL(cin_stream_create(m, &s, NULL) == 0);
    double worst = 0.0;
    size_t j = 0;
    for (int t = 0; t < frames; t++) {
        if (cin_stream_step(s, x + t * fsz, out) != 1 || (j + 1) * i.out_size > n)
            continue;
        double e = tu_rel_err(out, want + j++ * i.out_size, i.out_size);
        worst = e > worst ? e : worst;
    }
    CU_ASSERT_EQUAL(j * i.out_size, n);
    cin_stream_free(s);
    free(x);
    free(out);
    free(want);
    return j ? worst : 1.0;
}

/* Each mask of golden a equals the one of the same name in b. */
static void dg_masks_equal(const char *a, const char *b)
{
    st_file *g, *mine;
    CU_ASSERT_FATAL(st_open(a, &g, NULL) == 0);
    CU_ASSERT_FATAL(st_open(b, &mine, NULL) == 0);
    CU_ASSERT_EQUAL(st_count(mine), st_count(g));
    for (int i = 0; i < st_count(g); i++) {
        st_info gi, mi;
        st_info_at(g, i, &gi);
        float *x = dg_get(g, gi.name, &gi), *y = dg_get(mine, gi.name, &mi);
        CU_ASSERT(gi.nbytes == mi.nbytes && memcmp(x, y, gi.nbytes) == 0);
        free(x);
        free(y);
    }
    st_close(mine);
    st_close(g);
}

static void test_derived_x3d_xs_steps_equal_the_pruned_reference(void)
{
    const char *out = tu_tmp_path("derived_xs.safetensors");
    const char *masks = tu_tmp_path("derived_xs_masks.safetensors");
    derive_opts o = {.source = dg_source(), .adapters = DG "derive_x3d_xs_adapters.safetensors",
                     .out = out, .write_masks = masks, .ratio = 0.5, .norm = DERIVE_L1};
    derive_stats s;
    cin_err err = {0};
    int rc = derive_x3d(&o, &s, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.blocks, 26);
    CU_ASSERT_EQUAL(s.inner_after * 2, s.inner_before);
    CU_ASSERT(s.params_after < s.params_before);

    dg_masks_equal(DG "derive_x3d_xs_masks.safetensors", masks);

    cin_model *src = dg_load(dg_source(), NULL), *m = dg_load(out, &err);
    if (!m)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info si, di;
    cin_model_get_info(src, &si);
    cin_model_get_info(m, &di);
    CU_ASSERT(di.state_bytes < si.state_bytes);
    CU_ASSERT(di.macs_step < si.macs_step);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_x3d_xs_steps.safetensors", &g, NULL) == 0);
    double e = dg_steps_error(m, g);
    if (e > TOL)
        fprintf(stderr, "\n  derived x3d-xs: rel err %.3g\n", e);
    CU_ASSERT(e <= TOL);
    st_close(g);
    cin_model_free(m);
    cin_model_free(src);
}

static void test_derived_x3d_xs_with_stage_outputs_pruned_equals_the_reference(void)
{
    const char *out = tu_tmp_path("derived_stages.safetensors");
    const char *masks = tu_tmp_path("derived_stages_masks.safetensors");
    derive_opts o = {.source = dg_source(), .masks = DG "derive_x3d_xs_stage_masks.safetensors",
                     .adapters = DG "derive_x3d_xs_adapters.safetensors", .out = out,
                     .write_masks = masks};
    cin_err err = {0};
    int rc = derive_x3d(&o, NULL, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    dg_masks_equal(DG "derive_x3d_xs_stage_masks.safetensors", masks);
    cin_model *inner = dg_load(tu_tmp_path("derived_xs.safetensors"), NULL);
    cin_model *m = dg_load(out, &err);
    if (!m)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inner);
    cin_model_info ii, di;
    cin_model_get_info(inner, &ii);
    cin_model_get_info(m, &di);
    CU_ASSERT(di.state_bytes < ii.state_bytes);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_x3d_xs_stage_steps.safetensors", &g, NULL) == 0);
    double e = dg_steps_error(m, g);
    if (e > TOL)
        fprintf(stderr, "\n  derived x3d-xs, stages pruned: rel err %.3g\n", e);
    CU_ASSERT(e <= TOL);
    st_close(g);
    cin_model_free(m);
    cin_model_free(inner);
}

static void test_computed_stage_masks_equal_the_reference(void)
{
    const char *out = tu_tmp_path("computed_stages.safetensors");
    const char *masks = tu_tmp_path("computed_stages_masks.safetensors");
    derive_opts o = {.source = dg_source(), .adapters = DG "derive_x3d_xs_adapters.safetensors",
                     .out = out, .write_masks = masks, .ratio = 0.5, .stage_ratio = 0.5,
                     .norm = DERIVE_L1};
    CU_ASSERT_EQUAL_FATAL(derive_x3d(&o, NULL, NULL), 0);
    dg_masks_equal(DG "derive_x3d_xs_stage_masks.safetensors", masks);
    cin_model *m = dg_load(out, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_x3d_xs_stage_steps.safetensors", &g, NULL) == 0);
    CU_ASSERT(dg_steps_error(m, g) <= TOL);
    st_close(g);
    cin_model_free(m);
}

/* The two layouts derive to the same model: equal outputs step by step. */
static void test_slowfast_names_derive_as_pytorchvideo_names(void)
{
    const char *sf = tu_tmp_path("x3d_xs_sf.safetensors");
    CU_ASSERT_FATAL(dg_write_layout(sf, X3D_SLOWFAST, 1) == 0);
    const char *out[2] = {tu_tmp_path("pv_l2.safetensors"), tu_tmp_path("sf_l2.safetensors")};
    const char *src[2] = {dg_source(), sf};
    cin_model *m[2];
    cin_stream *s[2];
    for (int k = 0; k < 2; k++) {
        derive_opts o = {.source = src[k], .out = out[k], .ratio = 0.5, .norm = DERIVE_L2};
        CU_ASSERT_FATAL(derive_x3d(&o, NULL, NULL) == 0);
        m[k] = dg_load(out[k], NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m[k]);
        CU_ASSERT_FATAL(cin_stream_create(m[k], &s[k], NULL) == 0);
    }
    cin_model_info i;
    cin_model_get_info(m[0], &i);
    size_t fsz = (size_t)3 * 96 * 96;
    float *x = malloc(sizeof(float) * fsz), *y[2] = {malloc(sizeof(float) * i.out_size),
                                                    malloc(sizeof(float) * i.out_size)};
    double worst = 0.0;
    for (int t = 0; t < i.delay + 4; t++) {
        cin_seeded_fill(x, fsz, 3 + (uint64_t)t, "input", -1.0, 1.0);
        int r0 = cin_stream_step(s[0], x, y[0]), r1 = cin_stream_step(s[1], x, y[1]);
        CU_ASSERT_EQUAL(r0, r1);
        double e = r0 == 1 ? tu_rel_err(y[1], y[0], i.out_size) : 0.0;
        worst = e > worst ? e : worst;
    }
    CU_ASSERT(worst <= 1e-6);
    for (int k = 0; k < 2; k++) {
        cin_stream_free(s[k]);
        cin_model_free(m[k]);
        free(y[k]);
    }
    free(x);
}

/* ---- cin-derive and bad input ---- */

static const char *dg_bin(void)
{
    const char *bin = getenv("CIN_DERIVE"); /* set by `make test` to this build's binary */
    return bin ? bin : "../build/cin-derive";
}

/* Runs cin-derive with args; its exit status, and whether a line held both a and b. */
static int dg_run(const char *args, int *named, const char *a, const char *b)
{
    char cmd[2048], line[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", dg_bin(), args);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    *named = 0;
    while (fgets(line, sizeof line, p))
        *named |= strstr(line, a) && (!b || strstr(line, b));
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cin_derive_with_given_masks_gives_the_reference_model(void)
{
    const char *out = tu_tmp_path("cli_derived.safetensors");
    char args[1024];
    int named;
    snprintf(args, sizeof args, "--source %s --masks " DG "derive_x3d_xs_masks.safetensors "
             "--adapters " DG "derive_x3d_xs_adapters.safetensors --out %s", dg_source(), out);
    CU_ASSERT_EQUAL(dg_run(args, &named, "inner channels 6102 -> 3051", NULL), 0);
    CU_ASSERT(named);
    cin_model *m = dg_load(out, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_x3d_xs_steps.safetensors", &g, NULL) == 0);
    CU_ASSERT(dg_steps_error(m, g) <= TOL);
    st_close(g);
    cin_model_free(m);
}

/* cin-bench --compare times the source X3D-XS and its 50 %-pruned derivative in one run: both
 * reports, and ratios that are the derived figures over the source's. */
static void test_cin_bench_compare_reports_both_models_and_their_ratios(void)
{
    const char *out = tu_tmp_path("bench_derived.safetensors");
    const char *yaml = tu_tmp_path("bench_xs.yaml"), *bench = getenv("CIN_BENCH");
    char args[1024], text[PATH_MAX + 512], cmd[2048];
    int named;
    snprintf(args, sizeof args, "--source %s --ratio 0.5 --out %s", dg_source(), out);
    CU_ASSERT_EQUAL_FATAL(dg_run(args, &named, "inner channels", NULL), 0);
    char clip[PATH_MAX];
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath("media/imageio__realshort.mp4", clip));
    snprintf(text, sizeof text, "source: {uri: %s}\n" /* required, not read by cin-bench */
             "model: {arch: x3d, size: xs, weights: %s}\npreprocess: {crop: 64}\n", clip,
             dg_source());
    CU_ASSERT_FATAL(tu_write_file(yaml, text, strlen(text)) == 0);
    snprintf(cmd, sizeof cmd, "%s --json --steps 4 --warmup 0 --clips 1 --compare %s %s",
             bench ? bench : "../build/cin-bench", out, yaml);

    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    json_t *j = json_loadf(p, JSON_DISABLE_EOF_CHECK, NULL);
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    json_t *src = json_object_get(j, "source"), *der = json_object_get(j, "derived");
    json_t *ratio = json_object_get(j, "ratio");
    double ms = json_number_value(json_object_get(src, "macs_step"));
    double md = json_number_value(json_object_get(der, "macs_step"));
    double ss = json_number_value(json_object_get(src, "stream_bytes"));
    double sd = json_number_value(json_object_get(der, "stream_bytes"));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(der, "path")), out);
    CU_ASSERT(ms > 0 && md > 0.3 * ms && md < 0.8 * ms); /* inner widths halved */
    CU_ASSERT(sd > 0 && sd < ss);
    /* JSON_REAL_PRECISION(6): ratios carry 6 significant digits */
    CU_ASSERT_DOUBLE_EQUAL(json_number_value(json_object_get(ratio, "macs_step")), md / ms,
                           1e-5);
    CU_ASSERT_DOUBLE_EQUAL(json_number_value(json_object_get(ratio, "stream_bytes")), sd / ss,
                           1e-5);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(der, "steps")), 4);
    json_decref(j);
}

static void dg_write_one(const char *path, const char *name, int ndim, const int64_t *shape,
                         const float *v)
{
    st_out t = {.name = name, .ndim = ndim, .data = v};
    memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
    CU_ASSERT_FATAL(st_write(path, &t, 1, NULL, NULL) == 0);
}

/* derive_x3d fails with code and a message holding a and b. */
static void dg_expect(const char *masks, const char *adapters, int code, const char *a,
                      const char *b)
{
    derive_opts o = {.source = dg_source(), .masks = masks, .adapters = adapters,
                     .out = tu_tmp_path("bad_out.safetensors"), .ratio = 0.5};
    cin_err err = {0};
    int rc = derive_x3d(&o, NULL, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT(strstr(err.msg, a) && (!b || strstr(err.msg, b)));
    if (rc != code || !strstr(err.msg, a) || (b && !strstr(err.msg, b)))
        fprintf(stderr, "\n  got %d: %s\n", rc, err.msg);
}

static void test_bad_masks_and_adapters_are_refused_naming_the_tensor(void)
{
    const char *layer = "blocks.2.res_blocks.1.branch2.conv_a";
    char name[128];
    float v[512];
    for (int i = 0; i < 512; i++)
        v[i] = (float)(i % 2);
    const char *p = tu_tmp_path("bad_mask.safetensors");
    snprintf(name, sizeof name, "%s.out_mask", layer);
    dg_write_one(p, name, 1, (int64_t[]){107}, v);
    dg_expect(p, NULL, CIN_E_SHAPE, name, "expected [108]");
    v[3] = 0.5f;
    dg_write_one(p, name, 1, (int64_t[]){108}, v);
    dg_expect(p, NULL, CIN_E_FORMAT, name, "expected 0 or 1");
    dg_write_one(p, "blocks.2.res_blocks.1.branch2.conv_b.out_mask", 1, (int64_t[]){108}, v);
    dg_expect(p, NULL, CIN_E_UNSUPPORTED, "conv_b.out_mask", "inner width");

    const char *ad = tu_tmp_path("bad_adapters.safetensors");
    st_out t[2] = {{.name = "blocks.2.res_blocks.1.branch2.conv_a.adapter.rows", .ndim = 3,
                    .shape = {1, 2, 48}, .data = v},
                   {.name = "blocks.2.res_blocks.1.branch2.conv_a.adapter.cols", .ndim = 3,
                    .shape = {1, 108, 3}, .data = v}};
    CU_ASSERT_FATAL(st_write(ad, t, 2, NULL, NULL) == 0);
    dg_expect(NULL, ad, CIN_E_SHAPE, "adapter.rows' has rank 2", "adapter.cols' has rank 3");
    CU_ASSERT_FATAL(st_write(ad, t, 1, NULL, NULL) == 0);
    dg_expect(NULL, ad, CIN_E_NOTFOUND, "conv_a.weight", "needs both");
    t[1].name = "blocks.2.res_blocks.1.branch2.conv_q.adapter.cols";
    CU_ASSERT_FATAL(st_write(ad, t + 1, 1, NULL, NULL) == 0);
    dg_expect(NULL, ad, CIN_E_UNSUPPORTED, "conv_q.adapter.cols", NULL);
}

static void test_masks_disagreeing_across_a_residual_are_refused_naming_both(void)
{
    const char *a = "blocks.2.res_blocks.0.branch2.conv_c.out_mask";
    const char *b = "blocks.2.res_blocks.1.branch2.conv_c.out_mask";
    float v[2][48];
    for (int i = 0; i < 48; i++)
        v[0][i] = v[1][i] = (float)(i % 2);
    v[1][0] = 1.0f;
    st_out t[2] = {{.name = a, .ndim = 1, .shape = {48}, .data = v[0]},
                   {.name = b, .ndim = 1, .shape = {48}, .data = v[1]}};
    const char *p = tu_tmp_path("residual_masks.safetensors");
    CU_ASSERT_FATAL(st_write(p, t, 2, NULL, NULL) == 0);
    dg_expect(p, NULL, CIN_E_FORMAT, a, b);
    t[1].name = "blocks.2.res_blocks.0.branch1_conv.out_mask";
    t[1].shape[0] = 47;
    CU_ASSERT_FATAL(st_write(p, t, 2, NULL, NULL) == 0);
    dg_expect(p, NULL, CIN_E_SHAPE, "branch1_conv.out_mask", "output width of stage 2");
}

/* The outputs may overwrite neither an input nor each other; nothing is written then. */
static void test_outputs_that_would_overwrite_an_input_are_refused(void)
{
    const char *masks = tu_tmp_path("overwrite_masks.safetensors");
    derive_opts ok = {.source = dg_source(), .out = tu_tmp_path("overwrite_ok.safetensors"),
                      .write_masks = masks, .ratio = 0.5};
    CU_ASSERT_EQUAL_FATAL(derive_model(&ok, NULL, NULL), 0);
    size_t before, after;
    unsigned char *a = tu_read_file(dg_source(), &before);
    struct {
        derive_opts o;
        const char *fragment;
    } cases[] = {
        {{.source = dg_source(), .out = dg_source(), .ratio = 0.5},
         "the output is also the source"},
        {{.source = dg_source(), .out = masks, .masks = masks}, "the output is also the masks"},
        {{.source = dg_source(), .out = masks, .write_masks = masks, .ratio = 0.5},
         "the output is also the masks to write"},
        {{.source = dg_source(), .out = tu_tmp_path("o.safetensors"), .write_masks = dg_source(),
          .ratio = 0.5}, "the masks output is also the source"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cin_err err = {0};
        CU_ASSERT_EQUAL(derive_model(&cases[i].o, NULL, &err), CIN_E_INVAL);
        CU_ASSERT(strstr(err.msg, cases[i].fragment) != NULL);
    }
    unsigned char *b = tu_read_file(dg_source(), &after);
    CU_ASSERT(a && b && before == after && memcmp(a, b, before) == 0);
    free(a);
    free(b);
}

/* A derived checkpoint whose inner width exceeds the size's is not X3D-XS. */
static void test_derived_checkpoint_with_a_wrong_width_is_refused(void)
{
    const char *out = tu_tmp_path("derived_ok.safetensors");
    derive_opts o = {.source = dg_source(), .out = out, .ratio = 0.25};
    CU_ASSERT_FATAL(derive_x3d(&o, NULL, NULL) == 0);
    cin_model *m = dg_load(out, NULL);
    CU_ASSERT_PTR_NOT_NULL(m);
    cin_model_free(m);
    /* loaded as a deeper size, its blocks run out: refused by name, not a crash */
    cin_model_opts big = {.arch = "x3d", .size = "l", .crop = 96, .weights = out};
    cin_err err = {0};
    CU_ASSERT_EQUAL(cin_model_load(&big, &m, &err), CIN_E_NOTFOUND);
    CU_ASSERT(strstr(err.msg, "no tensor 'blocks.1.res_blocks.3.") != NULL);
    /* the same file without the metadata is an X3D-XS of the wrong shapes */
    st_file *f;
    CU_ASSERT_FATAL(st_open(out, &f, NULL) == 0);
    int n = st_count(f);
    st_out *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        st_info info;
        st_info_at(f, i, &info);
        t[i].name = info.name;
        t[i].ndim = info.ndim;
        memcpy(t[i].shape, info.shape, sizeof info.shape);
        t[i].data = dg_get(f, info.name, &info);
    }
    const char *plain = tu_tmp_path("derived_plain.safetensors");
    CU_ASSERT_FATAL(st_write(plain, t, n, NULL, NULL) == 0);
    m = dg_load(plain, &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(strstr(err.msg, "conv_a.weight") != NULL);
    cin_model_free(m);
    for (int i = 0; i < n; i++)
        free((float *)t[i].data);
    free(t);
    st_close(f);
}

/* ---- derived ST-GCNs ---- */

/* The reference's seeded ST-GCN of one layout (tests/util.h), written to path. */
static int dg_write_stgcn(const char *path, const char *layout)
{
    static st_out t[TU_SKEL_MAX];
    char names[64];
    snprintf(names, sizeof names, "golden/stgcn_names_%s.txt", layout);
    int n = tu_skel_tensors(names, 1, t);
    int rc = n > 100 ? st_write(path, t, n, NULL, NULL) : -1;
    tu_skel_free(t, n);
    return rc;
}

static const char *dg_stgcn_source(int coskel)
{
    static const char *path[2];
    if (!path[coskel]) {
        path[coskel] = tu_tmp_path(coskel ? "coskel_seeded.safetensors"
                                          : "stgcn_seeded.safetensors");
        CU_ASSERT_FATAL(dg_write_stgcn(path[coskel], coskel ? "coskel" : "stgcn") == 0);
    }
    return path[coskel];
}

static cin_model *dg_load_stgcn(const char *weights, const char *variant, int clip_frames,
                                cin_err *err)
{
    cin_skeleton_opts so = {.variant = variant, .clip_frames = clip_frames};
    cin_model_opts o = {.arch = "stgcn", .skeleton = &so, .weights = weights};
    cin_model *m = NULL;
    cin_model_load(&o, &m, err);
    return m;
}

/* Worst relative error of the clip over the golden's first clip_frames frames and, with
 * steps, of every stepped output (each at its step) against clip_logits and step_logits. */
static double dg_stgcn_error(cin_model *m, st_file *g, int steps)
{
    int frames = atoi(st_meta(g, "frames")), clip = atoi(st_meta(g, "clip_frames"));
    double sum, worst;
    float *x = tu_skeleton_input(frames, 2, &sum);
    CU_ASSERT(fabs(sum - atof(st_meta(g, "input_sum"))) < 1e-3);
    cin_model_info i;
    cin_model_get_info(m, &i);
    st_info ci, si;
    float *want = dg_get(g, "clip_logits", &ci), *out = malloc(sizeof(float) * i.out_size);
    size_t fsz = (size_t)i.in_channels * i.in_width;
    cin_stream *s;
    CU_ASSERT_FATAL(cin_stream_create(m, &s, NULL) == 0);
    CU_ASSERT_FATAL(cin_stream_forward(s, x, clip, out) == 0);
    worst = tu_rel_err(out, want, ci.nbytes / 4);
    free(want);
    want = steps ? dg_get(g, "step_logits", &si) : NULL;
    int first = steps ? atoi(st_meta(g, "first_step")) : 0, j = 0;
    CU_ASSERT(!steps || i.delay == first);
    cin_stream_reset(s);
    for (int t = 0; steps && t < frames; t++) {
        int r = cin_stream_step(s, x + t * fsz, out);
        CU_ASSERT_EQUAL(r, t >= first);
        if (r != 1 || (size_t)(j + 1) * i.out_size > si.nbytes / 4)
            continue;
        double e = tu_rel_err(out, want + (size_t)j++ * i.out_size, i.out_size);
        worst = e > worst ? e : worst;
    }
    CU_ASSERT(!steps || (size_t)j * i.out_size * 4 == si.nbytes);
    cin_stream_free(s);
    free(want);
    free(out);
    free(x);
    return worst;
}

/* Derives the golden `name`'s model from the seeded source by ratio 0.5 (inner and outputs)
 * with its adapters, checks the masks and the outputs, and that it is smaller. */
static void dg_check_stgcn(const char *name, int coskel, const char *variant, int steps)
{
    char path[3][160];
    snprintf(path[0], sizeof path[0], DG "%s_adapters.safetensors", name);
    snprintf(path[1], sizeof path[1], DG "%s_masks.safetensors", name);
    snprintf(path[2], sizeof path[2], DG "%s_logits.safetensors", name);
    const char *out = tu_tmp_path("derived_stgcn.safetensors");
    const char *masks = tu_tmp_path("derived_stgcn_masks.safetensors");
    derive_opts o = {.source = dg_stgcn_source(coskel), .adapters = path[0], .out = out,
                     .write_masks = masks, .ratio = 0.5, .stage_ratio = 0.5};
    derive_stats ds;
    cin_err err = {0};
    int rc = derive_model(&o, &ds, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(ds.blocks, 10);
    CU_ASSERT(ds.params_after < ds.params_before);
    dg_masks_equal(path[1], masks);
    st_file *g;
    CU_ASSERT_FATAL(st_open(path[2], &g, NULL) == 0);
    int clip = atoi(st_meta(g, "clip_frames"));
    cin_model *src = dg_load_stgcn(o.source, variant, clip, NULL);
    cin_model *m = dg_load_stgcn(out, variant, clip, &err);
    if (!m)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info si, di;
    cin_model_get_info(src, &si);
    cin_model_get_info(m, &di);
    CU_ASSERT(di.state_bytes < si.state_bytes);
    CU_ASSERT(di.macs_step < si.macs_step);
    CU_ASSERT(di.macs_clip < si.macs_clip);
    double e = dg_stgcn_error(m, g, steps);
    if (e > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", name, e);
    CU_ASSERT(e <= TOL);
    st_close(g);
    cin_model_free(m);
    cin_model_free(src);
}

static void test_derived_cost_gcn_star_steps_and_clip_equal_the_pruned_reference(void)
{
    dg_check_stgcn("derive_cost_gcn_star", 0, "st-gcn*", 1);
}

static void test_derived_continual_skeletons_st_gcn_clip_equals_the_pruned_reference(void)
{
    dg_check_stgcn("derive_stgcn_coskel", 1, "st-gcn", 0);
}

static void test_cin_derive_with_given_st_gcn_masks_gives_the_reference_model(void)
{
    const char *out = tu_tmp_path("cli_stgcn.safetensors");
    char args[1024];
    int named;
    snprintf(args, sizeof args, "--source %s --masks " DG "derive_cost_gcn_star_masks.safetensors"
             " --adapters " DG "derive_cost_gcn_star_adapters.safetensors --out %s",
             dg_stgcn_source(0), out);
    CU_ASSERT_EQUAL(dg_run(args, &named, "10 ST-GCN blocks", "11 adapted layers"), 0);
    CU_ASSERT(named);
    cin_model *m = dg_load_stgcn(out, "st-gcn*", 100, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_cost_gcn_star_logits.safetensors", &g, NULL) == 0);
    CU_ASSERT(dg_stgcn_error(m, g, 1) <= TOL);
    st_close(g);
    cin_model_free(m);
}

/* derive_model on an ST-GCN source fails with code and a message holding a and b. */
static void dg_expect_stgcn(int coskel, const st_out *masks, int n, int code, const char *a,
                            const char *b)
{
    const char *p = tu_tmp_path("bad_stgcn_masks.safetensors");
    CU_ASSERT_FATAL(st_write(p, masks, n, NULL, NULL) == 0);
    derive_opts o = {.source = dg_stgcn_source(coskel), .masks = p,
                     .out = tu_tmp_path("bad_stgcn.safetensors")};
    cin_err err = {0};
    int rc = derive_model(&o, NULL, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT(strstr(err.msg, a) && (!b || strstr(err.msg, b)));
    if (rc != code || !strstr(err.msg, a) || (b && !strstr(err.msg, b)))
        fprintf(stderr, "\n  got %d: %s\n", rc, err.msg);
}

static void test_bad_st_gcn_masks_are_refused_naming_the_tensor(void)
{
    float v[768];
    for (int i = 0; i < 768; i++)
        v[i] = (float)(i % 3 != 0);
    const char *gc = "st_gcn_networks.3.gcn.conv.out_mask";
    st_out t[2] = {{.name = gc, .ndim = 1, .shape = {63}, .data = v}};
    dg_expect_stgcn(0, t, 1, CIN_E_SHAPE, gc, "expected [64] or [K * that]");
    t[0].shape[0] = 192; /* K * C, whose partitions must agree: 64 % 3 != 0 shifts them */
    dg_expect_stgcn(0, t, 1, CIN_E_FORMAT, gc, "partition 1 keeps other channels");
    t[0].name = "st_gcn_networks.3.tcn.0.out_mask";
    t[0].shape[0] = 64;
    dg_expect_stgcn(0, t, 1, CIN_E_UNSUPPORTED, "st_gcn_networks.3.tcn.0.out_mask",
                    "not a mask cin can apply");
    /* blocks 4-6 are joined by identity residuals */
    t[0] = (st_out){.name = "st_gcn_networks.4.residual.0.out_mask", .ndim = 1, .shape = {128},
                    .data = v};
    t[1] = (st_out){.name = "st_gcn_networks.6.tcn.2.out_mask", .ndim = 1, .shape = {128},
                    .data = v + 1};
    dg_expect_stgcn(0, t, 2, CIN_E_FORMAT, "st_gcn_networks.4.residual.0.out_mask'",
                    "st_gcn_networks.6.tcn.2.out_mask' disagree");
    /* continual-skeletons: block 2's graph convolution adds its input, block 1's output */
    t[0] = (st_out){.name = "layers.layer1.tcn.t_conv.out_mask", .ndim = 1, .shape = {64},
                    .data = v};
    t[1] = (st_out){.name = "layers.layer2.gcn.g_conv.1.out_mask", .ndim = 1, .shape = {64},
                    .data = v + 2};
    dg_expect_stgcn(1, t, 2, CIN_E_FORMAT, "layers.layer1.tcn.t_conv.out_mask",
                    "layers.layer2.gcn.g_conv.1.out_mask");
}

static void test_bad_st_gcn_adapters_are_refused_naming_the_tensor(void)
{
    float v[4096] = {0};
    const char *p = tu_tmp_path("bad_stgcn_adapters.safetensors");
    st_out t = {.name = "st_gcn_networks.2.gcn.conv.adapter.rows", .ndim = 3,
                .shape = {1, 2, 64}, .data = v};
    derive_opts o = {.source = dg_stgcn_source(0), .adapters = p, .ratio = 0.5,
                     .out = tu_tmp_path("bad_stgcn.safetensors")};
    cin_err err = {0};
    CU_ASSERT_FATAL(st_write(p, &t, 1, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(derive_model(&o, NULL, &err), CIN_E_NOTFOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "st_gcn_networks.2.gcn.conv.weight"));
    t.name = "st_gcn_networks.2.gcn.kconv.adapter";
    t.ndim = 2;
    CU_ASSERT_FATAL(st_write(p, &t, 1, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(derive_model(&o, NULL, &err), CIN_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "st_gcn_networks.2.gcn.kconv.adapter"));
}

/* The derived file without its mark is a full-width ST-GCN of the wrong shapes. */
static void test_derived_st_gcn_without_its_mark_is_refused(void)
{
    const char *out = tu_tmp_path("derived_stgcn_marked.safetensors");
    derive_opts o = {.source = dg_stgcn_source(0), .out = out, .ratio = 0.25};
    CU_ASSERT_FATAL(derive_model(&o, NULL, NULL) == 0);
    st_file *f;
    CU_ASSERT_FATAL(st_open(out, &f, NULL) == 0);
    int n = st_count(f);
    st_out *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        st_info info;
        st_info_at(f, i, &info);
        t[i] = (st_out){.name = info.name, .ndim = info.ndim};
        memcpy(t[i].shape, info.shape, sizeof info.shape);
        t[i].data = dg_get(f, info.name, &info);
    }
    const char *plain = tu_tmp_path("derived_stgcn_plain.safetensors");
    CU_ASSERT_FATAL(st_write(plain, t, n, NULL, NULL) == 0);
    cin_err err = {0};
    cin_model *m = dg_load_stgcn(plain, "st-gcn*", 100, &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "st_gcn_networks.0.gcn.conv.weight"));
    m = dg_load_stgcn(out, "st-gcn*", 100, NULL);
    CU_ASSERT_PTR_NOT_NULL(m);
    cin_model_free(m);
    for (int i = 0; i < n; i++)
        free((float *)t[i].data);
    free(t);
    st_close(f);
}

/* ---- a derived transformer ---- */

/* Seeded weights of derive_tfm.py's encoder (input 16, d_model 32, 4 heads, ff 64, 2 layers,
 * window 8, learned positions, 5 classes) under torch's names. */
static const char *dg_tfm_source(void)
{
    static const char *path;
    static const struct {
        const char *leaf;
        int ndim;
        int64_t d0, d1;
    } layer[] = {{"self_attn.in_proj_weight", 2, 96, 32}, {"self_attn.in_proj_bias", 1, 96, 0},
                 {"self_attn.out_proj.weight", 2, 32, 32}, {"self_attn.out_proj.bias", 1, 32, 0},
                 {"linear1.weight", 2, 64, 32}, {"linear1.bias", 1, 64, 0},
                 {"linear2.weight", 2, 32, 64}, {"linear2.bias", 1, 32, 0},
                 {"norm1.weight", 1, 32, 0}, {"norm1.bias", 1, 32, 0},
                 {"norm2.weight", 1, 32, 0}, {"norm2.bias", 1, 32, 0}};
    if (path)
        return path;
    static char names[32][64];
    st_out t[32] = {{.name = "input_proj.weight", .ndim = 2, .shape = {32, 16}},
                    {.name = "input_proj.bias", .ndim = 1, .shape = {32}},
                    {.name = "pos_embedding", .ndim = 2, .shape = {8, 32}}};
    int n = 3;
    for (int l = 0; l < 2; l++)
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++, n++) {
            snprintf(names[n], sizeof names[n], "layers.%d.%s", l, layer[k].leaf);
            t[n] = (st_out){.name = names[n], .ndim = layer[k].ndim,
                            .shape = {layer[k].d0, layer[k].d1}};
        }
    t[n++] = (st_out){.name = "head.weight", .ndim = 2, .shape = {5, 32}};
    t[n++] = (st_out){.name = "head.bias", .ndim = 1, .shape = {5}};
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        float *v = malloc(sizeof(float) * numel);
        double lo, hi;
        cin_seeded_range(t[i].name, t[i].ndim, t[i].shape, &lo, &hi);
        cin_seeded_fill(v, numel, 1, t[i].name, lo, hi);
        t[i].data = v;
    }
    path = tu_tmp_path("tfm_seeded.safetensors");
    CU_ASSERT_FATAL(st_write(path, t, n, NULL, NULL) == 0);
    for (int i = 0; i < n; i++)
        free((float *)t[i].data);
    return path;
}

static cin_model *dg_load_tfm(const char *weights, const char *first, cin_err *err)
{
    cin_transformer_opts to = {.input_dim = 16, .d_model = 32, .nhead = 4,
                               .dim_feedforward = 64, .layers = 2, .window = 8,
                               .pos = "learned", .first_layer = first};
    cin_model_opts o = {.arch = "transformer", .transformer = &to, .num_classes = 5,
                        .weights = weights};
    cin_model *m = NULL;
    cin_model_load(&o, &m, err);
    return m;
}

/* Worst relative error of every stepped output, each at its step, against the golden. */
static double dg_tfm_error(cin_model *m, st_file *g)
{
    int steps = atoi(st_meta(g, "steps")), first = atoi(st_meta(g, "first_step")), j = 0;
    st_info li;
    float *want = dg_get(g, "logits", &li), x[16 * 24], out[5];
    cin_seeded_fill(x, 16 * 24, 2, "input", -1.0, 1.0);
    cin_stream *s;
    CU_ASSERT_FATAL(cin_stream_create(m, &s, NULL) == 0);
    double worst = 0.0;
    for (int t = 0; t < steps; t++) {
        int r = cin_stream_step(s, x + t * 16, out);
        CU_ASSERT_EQUAL(r, t >= first);
        if (r != 1 || (size_t)(j + 1) * 5 * 4 > li.nbytes)
            continue;
        double e = tu_rel_err(out, want + (size_t)j++ * 5, 5);
        worst = e > worst ? e : worst;
    }
    CU_ASSERT_EQUAL((size_t)j * 5 * 4, li.nbytes);
    cin_stream_free(s);
    free(want);
    return worst;
}

static void test_derived_transformer_equals_the_pruned_reference_in_both_forms(void)
{
    const char *out = tu_tmp_path("derived_tfm.safetensors");
    const char *masks = tu_tmp_path("derived_tfm_masks.safetensors");
    derive_opts o = {.source = dg_tfm_source(), .adapters = DG "derive_tfm_adapters.safetensors",
                     .out = out, .write_masks = masks, .ratio = 0.5};
    derive_stats ds;
    cin_err err = {0};
    int rc = derive_model(&o, &ds, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(ds.blocks, 2);
    CU_ASSERT_EQUAL(ds.inner_after * 2, ds.inner_before);
    /* q_proj and v_proj of layer 0, k_proj and out_proj of layer 1, linear1, linear2 */
    CU_ASSERT_EQUAL(ds.adapted, 6);
    dg_masks_equal(DG "derive_tfm_masks.safetensors", masks);
    st_file *g;
    CU_ASSERT_FATAL(st_open(DG "derive_tfm_logits.safetensors", &g, NULL) == 0);
    const char *forms[2] = {"regular", "retroactive"};
    for (int k = 0; k < 2; k++) {
        cin_model *src = dg_load_tfm(o.source, forms[k], NULL);
        cin_model *m = dg_load_tfm(out, forms[k], &err);
        if (!m)
            fprintf(stderr, "\n  %s\n", err.msg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(src);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        cin_model_info si, di;
        cin_model_get_info(src, &si);
        cin_model_get_info(m, &di);
        CU_ASSERT(di.macs_step < si.macs_step);
        CU_ASSERT(di.weight_bytes < si.weight_bytes);
        double e = dg_tfm_error(m, g);
        if (e > TOL)
            fprintf(stderr, "\n  derived transformer (%s): rel err %.3g\n", forms[k], e);
        CU_ASSERT(e <= TOL);
        cin_model_free(m);
        cin_model_free(src);
    }
    st_close(g);
}

static void test_bad_transformer_masks_and_a_wrong_width_are_refused_by_name(void)
{
    float v[64];
    for (int i = 0; i < 64; i++)
        v[i] = (float)(i % 2);
    const char *p = tu_tmp_path("bad_tfm_masks.safetensors");
    st_out t = {.name = "layers.1.linear1.out_mask", .ndim = 1, .shape = {63}, .data = v};
    derive_opts o = {.source = dg_tfm_source(), .masks = p,
                     .out = tu_tmp_path("bad_tfm.safetensors")};
    cin_err err = {0};
    CU_ASSERT_FATAL(st_write(p, &t, 1, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(derive_model(&o, NULL, &err), CIN_E_SHAPE);
    CU_ASSERT(strstr(err.msg, "layers.1.linear1.out_mask") && strstr(err.msg, "expected [64]"));
    t.name = "layers.1.self_attn.out_proj.out_mask";
    t.shape[0] = 32;
    CU_ASSERT_FATAL(st_write(p, &t, 1, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(derive_model(&o, NULL, &err), CIN_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layers.1.self_attn.out_proj.out_mask"));
    /* half a SPLoRA pair on the key projection is named by the adapter, not the packed weight */
    const char *ad = tu_tmp_path("bad_tfm_adapters.safetensors");
    st_out cols = {.name = "layers.0.self_attn.k_proj.adapter.cols", .ndim = 3,
                   .shape = {1, 32, 2}, .data = v};
    CU_ASSERT_FATAL(st_write(ad, &cols, 1, NULL, NULL) == 0);
    derive_opts oa = {.source = dg_tfm_source(), .adapters = ad, .ratio = 0.5,
                      .out = tu_tmp_path("bad_tfm.safetensors")};
    CU_ASSERT_EQUAL(derive_model(&oa, NULL, &err), CIN_E_NOTFOUND);
    CU_ASSERT(strstr(err.msg, ad) && strstr(err.msg, "layers.0.self_attn.k_proj") &&
              strstr(err.msg, "rows 32 to 63") && strstr(err.msg, "needs both"));
    /* a derived file loads as the source's size; a feed-forward wider than that does not */
    o = (derive_opts){.source = dg_tfm_source(), .ratio = 0.25,
                      .out = tu_tmp_path("tfm_ok.safetensors")};
    CU_ASSERT_FATAL(derive_model(&o, NULL, NULL) == 0);
    cin_transformer_opts to = {.input_dim = 16, .d_model = 32, .nhead = 4, .dim_feedforward = 40,
                               .layers = 2, .window = 8, .pos = "learned"};
    cin_model_opts mo = {.arch = "transformer", .transformer = &to, .num_classes = 5,
                         .weights = o.out};
    cin_model *m = NULL;
    CU_ASSERT_EQUAL(cin_model_load(&mo, &m, &err), CIN_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layers.0.linear1.weight"));
    cin_model_free(m);
}

/* The results of source id in a JSON-lines file: frame index and the top-1 score (the raw
 * logit: no softmax), in file order; the count. */
static int dg_results(const char *path, const char *id, int64_t *frame, double *score, int cap)
{
    FILE *f = fopen(path, "r");
    char line[2048], want[96];
    int n = 0;
    snprintf(want, sizeof want, "{\"source\": \"%s\", ", id);
    while (f && fgets(line, sizeof line, f) && n < cap) {
        long long fr;
        const char *top = strstr(line, "\"score\": ");
        if (strncmp(line, want, strlen(want)) || !top ||
            sscanf(line + strlen(want), "\"frame\": %lld", &fr) != 1)
            continue;
        frame[n] = fr;
        score[n++] = strtod(top + 9, NULL);
    }
    if (f)
        fclose(f);
    return n;
}

/* Several tasks from one source on one device: the source model and two derived task models,
 * one stream each in one pipeline. Each stream's results are those of its own weights stepped
 * alone. */
static void test_derived_models_run_one_stream_per_task_in_one_pipeline(void)
{
    const char *task[2] = {tu_tmp_path("task_a.safetensors"), tu_tmp_path("task_b.safetensors")};
    derive_opts a = {.source = dg_source(), .out = task[0], .ratio = 0.5, .norm = DERIVE_L1};
    derive_opts b = {.source = dg_source(), .out = task[1], .ratio = 0.25, .stage_ratio = 0.5,
                     .norm = DERIVE_L2};
    CU_ASSERT_EQUAL_FATAL(derive_x3d(&a, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(derive_x3d(&b, NULL, NULL), 0);
    enum { T = 40, FS = 3 * 96 * 96 };
    float *x = malloc(sizeof(float) * FS * T), logits[400];
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    cin_seeded_fill(x, (size_t)FS * T, 5, "input", -1.0, 1.0);
    int64_t shape[4] = {T, 3, 96, 96};
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(tu_tmp_path("tasks.npy"), 4, shape, x, NULL), 0);
    char text[2048];
    snprintf(text, sizeof text,
             "sources:\n  - {path: tasks.npy, id: base}\n"
             "  - {path: tasks.npy, id: a, weights: '%s'}\n"
             "  - {path: tasks.npy, id: b, weights: '%s'}\n"
             "preprocess: {crop: 96, resize: 96}\n"
             "model: {arch: x3d, size: xs, pool_window: 4, weights: '%s'}\n"
             "postprocess: {softmax: false, topk: 1}\n"
             "sinks: [{type: jsonl, path: tasks.jsonl}]\n", task[0], task[1], dg_source());
    const char *yaml = tu_tmp_path("tasks.yaml");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(yaml, text, strlen(text)), 0);
    pipe_config *c;
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(pipe_config_load(yaml, &c, &err), 0);
    int rc = pipe_run(c, NULL, &st, &err);
    pipe_config_free(c);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const char *ids[3] = {"base", "a", "b"}, *weights[3] = {dg_source(), task[0], task[1]};
    for (int k = 0; k < 3; k++) {
        int64_t frame[T];
        double score[T];
        int n = dg_results(tu_tmp_path("tasks.jsonl"), ids[k], frame, score, T);
        cin_model *m = dg_load(weights[k], &err);
        cin_stream *s = NULL;
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, &err), 0);
        int got = 0;
        double worst = 0;
        for (int t = 0; t < T; t++) {
            if (cin_stream_step(s, x + (size_t)t * FS, logits) != 1)
                continue;
            float best = logits[0];
            for (int j = 1; j < 400; j++)
                best = logits[j] > best ? logits[j] : best;
            CU_ASSERT_FATAL(got < n);
            CU_ASSERT_EQUAL(frame[got], t);
            double e = fabs(score[got++] - best) / fmax(fabs(best), 1e-6);
            worst = e > worst ? e : worst;
        }
        CU_ASSERT(got > 0 && got == n);
        CU_ASSERT(worst <= 1e-6);
        cin_stream_free(s);
        cin_model_free(m);
    }
    free(x);
}

int test_derive_register(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
#define DG_T(fn) {#fn, fn}
        DG_T(test_splora_and_sppara_fuse_as_the_reference_for_linear_and_conv3d),
        DG_T(test_l1_and_l2_masks_equal_the_reference),
        DG_T(test_derived_x3d_xs_steps_equal_the_pruned_reference),
        DG_T(test_derived_x3d_xs_with_stage_outputs_pruned_equals_the_reference),
        DG_T(test_computed_stage_masks_equal_the_reference),
        DG_T(test_slowfast_names_derive_as_pytorchvideo_names),
        DG_T(test_cin_derive_with_given_masks_gives_the_reference_model),
        DG_T(test_cin_bench_compare_reports_both_models_and_their_ratios),
        DG_T(test_bad_masks_and_adapters_are_refused_naming_the_tensor),
        DG_T(test_masks_disagreeing_across_a_residual_are_refused_naming_both),
        DG_T(test_derived_checkpoint_with_a_wrong_width_is_refused),
        DG_T(test_outputs_that_would_overwrite_an_input_are_refused),
        DG_T(test_derived_cost_gcn_star_steps_and_clip_equal_the_pruned_reference),
        DG_T(test_derived_continual_skeletons_st_gcn_clip_equals_the_pruned_reference),
        DG_T(test_cin_derive_with_given_st_gcn_masks_gives_the_reference_model),
        DG_T(test_bad_st_gcn_masks_are_refused_naming_the_tensor),
        DG_T(test_bad_st_gcn_adapters_are_refused_naming_the_tensor),
        DG_T(test_derived_st_gcn_without_its_mark_is_refused),
        DG_T(test_derived_transformer_equals_the_pruned_reference_in_both_forms),
        DG_T(test_bad_transformer_masks_and_a_wrong_width_are_refused_by_name),
        DG_T(test_derived_models_run_one_stream_per_task_in_one_pipeline),
#undef DG_T
    };
    CU_pSuite s = CU_add_suite("derive", NULL, NULL);
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
