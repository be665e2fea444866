/* X3D and CoX3D against the PyTorch reference (tests/ref/x3d.py): tensor names and shapes in
 * both checkpoint layouts, clip mode for every size, continual mode step by step, and loading
 * real safetensors files in each layout, whole, damaged or wrong. Weights and inputs are drawn
 * from the seeded generator on both sides; only outputs are stored. Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cin.h"
#include "safetensors.h"
#include "seeded.h"
#include "util.h"
#include "x3d.h"

#define TOL 1e-4

/* ---- names and shapes ---- */

typedef struct name_list {
    char (*name)[128];
    char (*shape)[64];
    int n, cap;
} name_list;

static void collect(void *user, const char *name, int ndim, const int64_t *shape)
{
    name_list *l = user;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->name = realloc(l->name, sizeof *l->name * l->cap);
        l->shape = realloc(l->shape, sizeof *l->shape * l->cap);
    }
    snprintf(l->name[l->n], sizeof l->name[0], "%s", name);
    char *s = l->shape[l->n];
    s[0] = '\0';
    for (int d = 0; d < ndim; d++)
        snprintf(s + strlen(s), 64 - strlen(s), d ? ",%lld" : "%lld", (long long)shape[d]);
    l->n++;
}

static void free_names(name_list *l)
{
    free(l->name);
    free(l->shape);
}

/* The tensors the builder reads, in a layout; the weights are seeded (names are all it needs). */
static int builder_names(const char *size, x3d_layout layout, name_list *l)
{
    memset(l, 0, sizeof *l);
    wsrc *w = wsrc_seeded(1);
    x3d_opts o = {.size = size, .crop = 64};
    cin_node *root = NULL;
    int clip;
    int rc = x3d_build(&o, w, layout, collect, l, &root, &clip, NULL);
    cin_node_free(root);
    wsrc_close(w);
    return rc;
}

/* golden/x3d_names_<size>.txt: "pytorchvideo_name slowfast_name shape", one line per tensor
 * of the reference model. */
typedef struct name_map {
    char pv[1024][128], sf[1024][128], shape[1024][64];
    int n;
} name_map;

static name_map *read_map(const char *size)
{
    char path[64];
    snprintf(path, sizeof path, "golden/x3d_names_%s.txt", size);
    FILE *f = fopen(path, "r");
    name_map *m = calloc(1, sizeof *m);
    while (f && m->n < 1024 &&
           fscanf(f, "%127s %127s %63s", m->pv[m->n], m->sf[m->n], m->shape[m->n]) == 3)
        m->n++;
    if (f)
        fclose(f);
    return m;
}

/* The pytorchvideo name of a tensor named in `layout`, or NULL. */
static const char *pv_name(const name_map *m, x3d_layout layout, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(layout == X3D_SLOWFAST ? m->sf[i] : m->pv[i], name) == 0)
            return m->pv[i];
    return NULL;
}

/* SlowFast normalises the first block's strided shortcut, pytorchvideo does not. */
static int slowfast_only(const char *name)
{
    return strncmp(name, "s2.pathway0_res0.branch1_bn.", 28) == 0;
}

/* Every tensor the builder reads in `layout` is in the golden with the same shape, and every
 * golden tensor is read. */
static void check_layout(const char *size, x3d_layout layout, const name_map *m)
{
    name_list l;
    CU_ASSERT_EQUAL_FATAL(builder_names(size, layout, &l), 0);
    int matched = 0, extra = 0;
    for (int i = 0; i < l.n; i++) {
        const char *pv = pv_name(m, layout, l.name[i]);
        int k = 0;
        while (pv && strcmp(m->pv[k], pv))
            k++;
        if (pv && strcmp(m->shape[k], l.shape[i]) == 0)
            matched++;
        else if (layout == X3D_SLOWFAST && !pv && slowfast_only(l.name[i]))
            extra++;
        else
            fprintf(stderr, "\n  x3d-%s: '%s' %s not in the golden\n", size, l.name[i],
                    l.shape[i]);
    }
    CU_ASSERT_EQUAL(matched, m->n);
    CU_ASSERT_EQUAL(extra, layout == X3D_SLOWFAST ? 4 : 0);
    CU_ASSERT_EQUAL(matched + extra, l.n);
    free_names(&l);
}

static void check_names(const char *size)
{
    name_map *m = read_map(size);
    CU_ASSERT_FATAL(m->n > 400);
    check_layout(size, X3D_PYTORCHVIDEO, m);
    check_layout(size, X3D_SLOWFAST, m);
    free(m);
}

static void test_names_and_shapes_match_both_layouts(void)
{
    check_names("xs");
    check_names("s");
    check_names("m");
    check_names("l");
}

/* ---- numerics ---- */

typedef struct golden {
    st_file *f;
    int frames, crop, window;
    uint64_t wseed, iseed;
} golden;

static int golden_open(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    if (st_open(path, &g->f, NULL))
        return -1;
    const char *v[5] = {st_meta(g->f, "frames"), st_meta(g->f, "crop"),
                        st_meta(g->f, "pool_window"), st_meta(g->f, "weight_seed"),
                        st_meta(g->f, "input_seed")};
    for (int i = 0; i < 5; i++)
        if (!v[i])
            return -1;
    g->frames = atoi(v[0]);
    g->crop = atoi(v[1]);
    g->window = atoi(v[2]);
    g->wseed = strtoull(v[3], NULL, 10);
    g->iseed = strtoull(v[4], NULL, 10);
    return 0;
}

static float *golden_tensor(const golden *g, const char *name, size_t *n)
{
    st_info info;
    if (st_find(g->f, name, &info, NULL))
        return NULL;
    float *v = malloc(info.nbytes);
    *n = info.nbytes / sizeof(float);
    if (v && st_read_f32(g->f, name, -1, NULL, v, NULL)) {
        free(v);
        return NULL;
    }
    return v;
}

/* The golden's input clip [frames][3][crop][crop]; its sum guards against a generator drift. */
static float *golden_input(const golden *g)
{
    size_t n = (size_t)g->frames * 3 * g->crop * g->crop;
    float *x = malloc(sizeof(float) * n);
    int64_t shape[4] = {g->frames, 3, g->crop, g->crop};
    double lo = -1.0, hi = 1.0, sum = 0.0;
    (void)shape;
    cin_seeded_fill(x, n, g->iseed, "input", lo, hi);
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    const char *want = st_meta(g->f, "input_sum");
    CU_ASSERT(want && sum - atof(want) < 1e-3 && atof(want) - sum < 1e-3);
    return x;
}

static cin_model *load(const char *size, const golden *g, const char *weights, int se_window,
                       cin_err *err)
{
    cin_model *m = NULL;
    cin_model_opts o = {.arch = "x3d", .size = size, .crop = g->crop, .pool_window = g->window,
                        .se_window = se_window, .seed = g->wseed, .weights = weights};
    cin_model_load(&o, &m, err);
    return m;
}

static double clip_error(cin_model *m, const golden *g)
{
    size_t n;
    float *expect = golden_tensor(g, "clip_logits", &n), *x = golden_input(g);
    cin_model_info i;
    cin_model_get_info(m, &i);
    float *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s = NULL;
    double e = 1.0;
    if (expect && (size_t)i.out_size == n && cin_stream_create(m, &s, NULL) == 0 &&
        cin_stream_forward(s, x, g->frames, out) == 0)
        e = tu_rel_err(out, expect, n);
    cin_stream_free(s);
    free(expect);
    free(x);
    free(out);
    return e;
}

static void check_clip(const char *size)
{
    char path[64];
    snprintf(path, sizeof path, "golden/x3d_%s_clip.safetensors", size);
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open(path, &g), 0);
    cin_model *m = load(size, &g, NULL, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    double e = clip_error(m, &g);
    if (e > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", path, e);
    CU_ASSERT(e <= TOL);
    cin_model_free(m);
    st_close(g.f);
}

static void test_clip_mode_equals_pytorchvideo_for_every_size(void)
{
    check_clip("xs");
    check_clip("s");
    check_clip("m");
    check_clip("l");
}

/* Steps the golden's frames; outputs from step `delay` on must equal step_logits row by row. */
static void check_steps(const char *path, int se_window)
{
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open(path, &g), 0);
    const char *size = st_meta(g.f, "size");
    cin_model *m = load(size, &g, NULL, se_window, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    const char *delay = st_meta(g.f, "delay");
    CU_ASSERT(delay && atoi(delay) == i.delay);
    size_t n, fsz = (size_t)3 * g.crop * g.crop;
    float *expect = golden_tensor(&g, "step_logits", &n), *x = golden_input(&g);
    float *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    int j = 0;
    double worst = 0.0;
    for (int t = 0; t < g.frames; t++) {
        int r = cin_stream_step(s, x + t * fsz, out);
        CU_ASSERT_EQUAL(r, t >= i.delay);
        if (r != 1 || (size_t)(j + 1) * i.out_size > n)
            continue;
        double e = tu_rel_err(out, expect + (size_t)j++ * i.out_size, i.out_size);
        worst = e > worst ? e : worst;
    }
    if (worst > TOL)
        fprintf(stderr, "\n  %s: rel err %.3g\n", path, worst);
    CU_ASSERT(worst <= TOL);
    CU_ASSERT_EQUAL((size_t)j * i.out_size, n);
    CU_ASSERT(j >= 8);
    free(expect);
    free(x);
    free(out);
    cin_stream_free(s);
    cin_model_free(m);
    st_close(g.f);
}

static void test_continual_mode_equals_cox3d_step_by_step(void)
{
    check_steps("golden/cox3d_s_steps.safetensors", 1);
    check_steps("golden/cox3d_xs_steps.safetensors", 1);
}

/* ---- checkpoints on disk ---- */

typedef struct ckpt {
    st_out *t;
    float **data;
    int n;
} ckpt;

/* The values of one checkpoint tensor: seeded by its pytorchvideo name, as the reference draws
 * them; SlowFast's extra shortcut norm is the identity. */
static void fill_tensor(const name_map *m, x3d_layout layout, const st_out *o, uint64_t seed,
                        float *v, size_t numel)
{
    const char *pv = pv_name(m, layout, o->name);
    double lo, hi;
    if (pv) {
        cin_seeded_range(pv, o->ndim, o->shape, &lo, &hi);
        cin_seeded_fill(v, numel, seed, pv, lo, hi);
        return;
    }
    int one = strstr(o->name, ".weight") != NULL, var = strstr(o->name, "running_var") != NULL;
    for (size_t i = 0; i < numel; i++)
        v[i] = one ? 1.0f : var ? 1.0f - 1e-5f : 0.0f;
}

/* How to spoil a checkpoint: skip one tensor, give one a wrong shape, put a NaN in one. */
typedef struct damage {
    const char *drop, *reshape, *nan;
} damage;

/* Writes seeded weights of `size` under one layout's names, damaged as `d` says. */
static int write_size(const char *path, const char *size, x3d_layout layout, uint64_t seed,
                      damage d)
{
    name_list l;
    name_map *m = read_map(size);
    if (builder_names(size, layout, &l))
        return -1;
    st_out *t = calloc((size_t)l.n, sizeof *t);
    int k = 0;
    for (int i = 0; i < l.n; i++) {
        if (d.drop && strcmp(l.name[i], d.drop) == 0)
            continue;
        st_out *o = &t[k++];
        o->name = l.name[i];
        size_t numel = 1;
        for (char *s = l.shape[i]; *s; s = *s ? s + 1 : s) {
            o->shape[o->ndim] = strtoll(s, &s, 10);
            numel *= (size_t)o->shape[o->ndim++];
        }
        float *v = malloc(sizeof(float) * numel);
        fill_tensor(m, layout, o, seed, v, numel);
        o->data = v;
        if (d.reshape && strcmp(l.name[i], d.reshape) == 0)
            o->shape[0] = 1, o->ndim = 1;
        if (d.nan && strcmp(l.name[i], d.nan) == 0)
            v[numel / 2] = NAN;
    }
    const char *meta[] = {"format", "pt", NULL};
    int rc = st_write(path, t, k, meta, NULL);
    for (int i = 0; i < k; i++)
        free((float *)t[i].data);
    free(t);
    free(m);
    free_names(&l);
    return rc;
}

static int write_checkpoint(const char *path, x3d_layout layout, uint64_t seed, const char *drop,
                            const char *reshape)
{
    return write_size(path, "xs", layout, seed, (damage){drop, reshape, NULL});
}

static void check_file(x3d_layout layout, const char *expect_layout)
{
    golden g;
    CU_ASSERT_EQUAL_FATAL(golden_open("golden/x3d_xs_clip.safetensors", &g), 0);
    const char *path = tu_tmp_path(layout == X3D_SLOWFAST ? "sf.safetensors" : "pv.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, layout, g.wseed, NULL, NULL), 0);
    cin_err err = {0};
    cin_model *m = load("xs", &g, path, 0, &err);
    if (!m)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    CU_ASSERT_STRING_EQUAL(i.layout, expect_layout);
    CU_ASSERT(clip_error(m, &g) <= TOL);
    cin_model_free(m);
    st_close(g.f);
}

static void test_checkpoints_load_in_both_layouts(void)
{
    check_file(X3D_PYTORCHVIDEO, "pytorchvideo");
    check_file(X3D_SLOWFAST, "slowfast");
}

/* Loading `path` fails with `code` and a message holding both `a` and `b`. */
static void expect_failure(const char *path, int code, const char *a, const char *b)
{
    cin_err err = {0};
    cin_model *m = NULL;
    cin_model_opts o = {.arch = "x3d", .size = "xs", .weights = path};
    int rc = cin_model_load(&o, &m, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, a));
    CU_ASSERT(!b || strstr(err.msg, b));
    if (rc != code || !strstr(err.msg, a) || (b && !strstr(err.msg, b)))
        fprintf(stderr, "\n  got %d: %s\n", rc, err.msg);
    cin_model_free(m);
}

static void test_missing_or_misshapen_tensor_is_named(void)
{
    const char *miss = tu_tmp_path("missing.safetensors");
    const char *name = "blocks.2.res_blocks.1.branch2.conv_b.weight";
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(miss, X3D_PYTORCHVIDEO, 1, name, NULL), 0);
    expect_failure(miss, CIN_E_NOTFOUND, "missing.safetensors", name);

    const char *bad = tu_tmp_path("shape.safetensors");
    name = "s3.pathway0_res0.branch2.a_bn.running_var";
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(bad, X3D_SLOWFAST, 1, NULL, name), 0);
    expect_failure(bad, CIN_E_SHAPE, "shape.safetensors", name);

    const char *other = tu_tmp_path("other.safetensors");
    name = "blocks.0.conv.conv_t.weight";
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(other, X3D_PYTORCHVIDEO, 1, name, NULL), 0);
    expect_failure(other, CIN_E_NOTFOUND, "other.safetensors", "not an X3D checkpoint");
    expect_failure("no/such/file.safetensors", CIN_E_IO, "no/such/file.safetensors", NULL);
}

static void test_checkpoint_of_another_size_or_with_nan_is_refused(void)
{
    const char *large = tu_tmp_path("large.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_size(large, "l", X3D_PYTORCHVIDEO, 1, (damage){0}), 0);
    expect_failure(large, CIN_E_SHAPE, "large.safetensors", "not part of x3d-xs");

    const char *nan = tu_tmp_path("nan.safetensors");
    const char *name = "blocks.3.res_blocks.2.branch2.conv_c.weight";
    CU_ASSERT_EQUAL_FATAL(write_size(nan, "xs", X3D_PYTORCHVIDEO, 1, (damage){.nan = name}), 0);
    expect_failure(nan, CIN_E_FORMAT, "nan.safetensors", name);
}

static void test_truncated_checkpoint_fails_cleanly(void)
{
    const char *path = tu_tmp_path("whole.safetensors");
    CU_ASSERT_EQUAL_FATAL(write_checkpoint(path, X3D_PYTORCHVIDEO, 1, NULL, NULL), 0);
    size_t len;
    unsigned char *bytes = tu_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    long size = (long)len;
    const char *cut = tu_tmp_path("cut.safetensors");
    long points[] = {0, 4, 8, 100, size / 3, size - 1};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(tu_write_file(cut, bytes, (size_t)points[i]), 0);
        expect_failure(cut, CIN_E_FORMAT, "cut.safetensors", NULL);
    }
    free(bytes);
}

int test_x3d_register(void)
{
    CU_pSuite s = CU_add_suite("x3d", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "names and shapes match both layouts",
                         test_names_and_shapes_match_both_layouts) &&
             CU_add_test(s, "clip mode equals pytorchvideo for every size",
                         test_clip_mode_equals_pytorchvideo_for_every_size) &&
             CU_add_test(s, "continual mode equals CoX3D step by step",
                         test_continual_mode_equals_cox3d_step_by_step) &&
             CU_add_test(s, "checkpoints load in both layouts",
                         test_checkpoints_load_in_both_layouts) &&
             CU_add_test(s, "missing or misshapen tensor is named",
                         test_missing_or_misshapen_tensor_is_named) &&
             CU_add_test(s, "checkpoint of another size or with NaN is refused",
                         test_checkpoint_of_another_size_or_with_nan_is_refused) &&
             CU_add_test(s, "truncated checkpoint fails cleanly",
                         test_truncated_checkpoint_fails_cleanly);
    return ok ? 0 : -1;
}
