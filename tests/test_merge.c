/* Tests for graphs/merge and cin-merge: the merge after each of 4 sequential models against
 * goldens of tests/ref/opcm.py (checked against fusion_bench's own OPCM, continual task
 * arithmetic and weight average), the diag-kept variant, refused models, a merge resumed from
 * its file, and peak resident memory that does not grow with the number of models. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "merge.h"
#include "safetensors.h"
#include "util.h"

#define MGT_DIR "golden/merge/"
#define MGT_MODELS 4
#define MGT_TOL 1e-4

/* ---- helpers ---- */

static const char *mgt_ft(int k)
{
    static char path[64];
    snprintf(path, sizeof path, MGT_DIR "ft_%d.safetensors", k);
    return path;
}

/* Max relative error of every tensor of the model at path against golden "<k>/<name>". */
static double mgt_err_vs_golden(const char *path, const st_file *golden, int k)
{
    st_file *f;
    cin_err err = {0};
    double worst = 0.0;
    CU_ASSERT_FATAL(st_open(path, &f, &err) == 0);
    for (int i = 0; i < st_count(f); i++) {
        st_info info;
        char name[256];
        st_info_at(f, i, &info);
        snprintf(name, sizeof name, "%d/%s", k, info.name);
        size_t n = info.nbytes / sizeof(float);
        float *a = malloc(info.nbytes + 4), *b = malloc(info.nbytes + 4);
        CU_ASSERT_FATAL(st_read_f32(f, info.name, -1, NULL, a, &err) == 0);
        CU_ASSERT_FATAL(st_read_f32(golden, name, info.ndim, info.shape, b, &err) == 0);
        double e = tu_rel_err(a, b, n);
        if (!(e <= worst))
            worst = e;
        free(a);
        free(b);
    }
    st_close(f);
    return worst;
}

/* Merges ft_1 .. ft_4 with o; after each, the written model matches golden/merge/<case>. */
static void mgt_check_case(const merge_opts *o, const char *golden_case)
{
    char gpath[128];
    st_file *golden;
    merge_state *m;
    cin_err err = {0};
    snprintf(gpath, sizeof gpath, MGT_DIR "%s.safetensors", golden_case);
    CU_ASSERT_FATAL(st_open(gpath, &golden, &err) == 0);
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", o, &m, &err) == 0);
    for (int k = 1; k <= MGT_MODELS; k++) {
        const char *out = tu_tmp_path("merged.safetensors");
        CU_ASSERT_FATAL(merge_add(m, mgt_ft(k), &err) == 0);
        CU_ASSERT_EQUAL(merge_count(m), k);
        CU_ASSERT_FATAL(merge_write(m, out, &err) == 0);
        double e = mgt_err_vs_golden(out, golden, k);
        if (!(e <= MGT_TOL))
            fprintf(stderr, "\n  %s after %d models: rel err %.3g\n", golden_case, k, e);
        CU_ASSERT(e <= MGT_TOL);
    }
    merge_free(m);
    st_close(golden);
}

/* 1 when msg contains every non-NULL needle; prints msg otherwise. */
static int mgt_has(const char *msg, const char *a, const char *b, const char *c)
{
    const char *needles[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (needles[i] && !strstr(msg, needles[i])) {
            fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", msg, needles[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- golden merges ---- */

static void test_opcm_matches_fusion_bench_after_each_of_4_merges(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    mgt_check_case(&o, "opcm");
}

static void test_opcm_alpha_0_8_keeps_a_larger_block_out(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    o.alpha = 0.8;
    mgt_check_case(&o, "opcm_alpha08");
}

static void test_opcm_project_conv_projects_conv_weight_as_out_by_rest(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    o.project_conv = 1;
    mgt_check_case(&o, "opcm_conv");
}

/* fusion_bench sums the 2-D weight of a module that is not nn.Linear (an nn.Embedding). */
static void test_opcm_sum_only_sums_matching_2d_tensors(void)
{
    static const char *const patterns[] = {"head.*"};
    merge_opts o = merge_opts_default(MERGE_OPCM);
    o.sum_only = patterns;
    o.n_sum_only = 1;
    mgt_check_case(&o, "opcm_sum_only_head");
}

/* Without buffers, BatchNorm statistics are merged, projected and rescaled like parameters. */
static void test_opcm_without_buffers_merges_running_statistics(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    o.n_buffers = 0;
    mgt_check_case(&o, "opcm_no_buffers");
}

/* The 6 floats of bn.running_var in the model at path. */
static void mgt_read_var(const char *path, float *v)
{
    st_file *f;
    cin_err err = {0};
    int64_t shape[1] = {6};
    CU_ASSERT_FATAL(st_open(path, &f, &err) == 0);
    CU_ASSERT_FATAL(st_read_f32(f, "bn.running_var", 1, shape, v, &err) == 0);
    st_close(f);
}

/* fusion_bench merges named_parameters() only: buffers stay the first model's (OPCM, average)
 * or the base's (task arithmetic), bit for bit. */
static void test_buffers_keep_the_first_models_or_the_bases_values(void)
{
    static const merge_method methods[] = {MERGE_OPCM, MERGE_AVERAGE, MERGE_TASK_ARITHMETIC};
    const char *out = tu_tmp_path("buffers.safetensors");
    float want[6], got[6];
    for (int i = 0; i < 3; i++) {
        merge_opts o = merge_opts_default(methods[i]);
        merge_state *m;
        cin_err err = {0};
        CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
        for (int k = 1; k <= MGT_MODELS; k++)
            CU_ASSERT_FATAL(merge_add(m, mgt_ft(k), &err) == 0);
        CU_ASSERT_FATAL(merge_write(m, out, &err) == 0);
        merge_free(m);
        mgt_read_var(out, got);
        mgt_read_var(i < 2 ? mgt_ft(1) : MGT_DIR "base.safetensors", want);
        CU_ASSERT(memcmp(got, want, sizeof want) == 0);
    }
}

static void test_opcm_diag_kept_variant_matches_its_golden(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    o.variant = MERGE_OPCM_DIAG_KEPT;
    mgt_check_case(&o, "opcm_diag_kept");
}

static void test_task_arithmetic_matches_after_each_of_4_merges(void)
{
    merge_opts o = merge_opts_default(MERGE_TASK_ARITHMETIC);
    mgt_check_case(&o, "task_arithmetic");
}

static void test_average_matches_after_each_of_4_merges(void)
{
    merge_opts o = merge_opts_default(MERGE_AVERAGE);
    mgt_check_case(&o, "average");
}

/* The two variants differ as soon as there is a previous merge to project against. */
static void test_diag_kept_differs_from_fusion_bench_from_the_second_model(void)
{
    merge_opts a = merge_opts_default(MERGE_OPCM), b = a;
    b.variant = MERGE_OPCM_DIAG_KEPT;
    const char *pa = tu_tmp_path("fb.safetensors"), *pb = tu_tmp_path("dk.safetensors");
    merge_state *ma, *mb;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &a, &ma, &err) == 0);
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &b, &mb, &err) == 0);
    for (int k = 1; k <= 2; k++) {
        CU_ASSERT_FATAL(merge_add(ma, mgt_ft(k), &err) == 0);
        CU_ASSERT_FATAL(merge_add(mb, mgt_ft(k), &err) == 0);
    }
    CU_ASSERT_FATAL(merge_write(ma, pa, &err) == 0);
    CU_ASSERT_FATAL(merge_write(mb, pb, &err) == 0);

    st_file *fa, *fb;
    CU_ASSERT_FATAL(st_open(pa, &fa, &err) == 0 && st_open(pb, &fb, &err) == 0);
    int64_t shape[2] = {12, 8};
    float x[96], y[96];
    CU_ASSERT_FATAL(st_read_f32(fa, "blocks.0.fc1.weight", 2, shape, x, &err) == 0);
    CU_ASSERT_FATAL(st_read_f32(fb, "blocks.0.fc1.weight", 2, shape, y, &err) == 0);
    CU_ASSERT(tu_rel_err(x, y, 96) > 1e-6);
    st_close(fa);
    st_close(fb);
    merge_free(ma);
    merge_free(mb);
}

/* ---- refused models ---- */

/* Writes the base's tensors to path, with tensor `drop` left out, `reshape` given shape
 * [1, numel] and an extra tensor `extra` (each NULL for none). */
static void mgt_write_variant(const char *path, const char *drop, const char *reshape,
                              const char *extra)
{
    st_file *b;
    cin_err err = {0};
    CU_ASSERT_FATAL(st_open(MGT_DIR "base.safetensors", &b, &err) == 0);
    int n = st_count(b), k = 0;
    st_out outs[32];
    float *data[32];
    static const float one = 1.0f;
    for (int i = 0; i < n; i++) {
        st_info info;
        st_info_at(b, i, &info);
        data[i] = malloc(info.nbytes);
        CU_ASSERT_FATAL(st_read_f32(b, info.name, -1, NULL, data[i], &err) == 0);
        if (drop && strcmp(info.name, drop) == 0)
            continue;
        st_out o = {info.name, info.ndim, {0}, data[i]};
        memcpy(o.shape, info.shape, sizeof o.shape);
        if (reshape && strcmp(info.name, reshape) == 0) {
            o.ndim = 2;
            o.shape[0] = 1;
            o.shape[1] = (int64_t)(info.nbytes / sizeof(float));
        }
        outs[k++] = o;
    }
    if (extra)
        outs[k++] = (st_out){extra, 1, {1}, &one};
    CU_ASSERT_FATAL(st_write(path, outs, k, NULL, &err) == 0);
    for (int i = 0; i < n; i++)
        free(data[i]);
    st_close(b);
}

/* merge_add on path fails with code and a message naming path and tensor; the merge is left
 * as it was, so the next good model still merges. */
static void mgt_expect_refused(const char *path, int code, const char *tensor, const char *what)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_FATAL(merge_add(m, mgt_ft(1), &err) == 0);
    CU_ASSERT_EQUAL(merge_add(m, path, &err), code);
    CU_ASSERT(mgt_has(err.msg, path, tensor, what));
    CU_ASSERT_EQUAL(merge_count(m), 1);
    CU_ASSERT_EQUAL(merge_add(m, mgt_ft(2), &err), 0);
    merge_free(m);
}

static void test_model_missing_a_tensor_is_refused_naming_it(void)
{
    const char *p = tu_tmp_path("missing.safetensors");
    mgt_write_variant(p, "head.bias", NULL, NULL);
    mgt_expect_refused(p, CIN_E_NOTFOUND, "'head.bias'", "missing");
}

static void test_model_with_a_wrong_shape_is_refused_naming_both_shapes(void)
{
    const char *p = tu_tmp_path("shape.safetensors");
    mgt_write_variant(p, NULL, "blocks.0.fc2.weight", NULL);
    mgt_expect_refused(p, CIN_E_SHAPE, "'blocks.0.fc2.weight'", "[1, 72], the base [6, 12]");
}

static void test_model_with_an_extra_tensor_is_refused_naming_it(void)
{
    const char *p = tu_tmp_path("extra.safetensors");
    mgt_write_variant(p, NULL, NULL, "adapter.scale");
    mgt_expect_refused(p, CIN_E_NOTFOUND, "'adapter.scale'", "not in the base");
}

static void test_non_f32_model_is_refused_naming_the_dtype(void)
{
    const char *p = tu_tmp_path("f16.safetensors");
    const char hdr[] = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    unsigned char buf[128] = {0};
    uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    CU_ASSERT_FATAL(tu_write_file(p, buf, 8 + n + 4) == 0);

    merge_opts o = merge_opts_default(MERGE_AVERAGE);
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_EQUAL(merge_create(p, &o, &m, &err), CIN_E_FORMAT);
    CU_ASSERT(mgt_has(err.msg, p, "'w'", "F16, expected F32"));
}

/* ft_k with element 0 of tensor `name` set to v. */
static void mgt_write_with_value(const char *path, int k, const char *name, float v)
{
    st_file *f;
    cin_err err = {0};
    CU_ASSERT_FATAL(st_open(mgt_ft(k), &f, &err) == 0);
    int n = st_count(f);
    st_out outs[32];
    for (int i = 0; i < n && i < 32; i++) {
        st_info info;
        st_info_at(f, i, &info);
        float *d = malloc(info.nbytes);
        CU_ASSERT_FATAL(st_read_f32(f, info.name, -1, NULL, d, &err) == 0);
        if (strcmp(info.name, name) == 0)
            d[0] = v;
        outs[i] = (st_out){info.name, info.ndim, {0}, d};
        memcpy(outs[i].shape, info.shape, sizeof outs[i].shape);
    }
    CU_ASSERT_FATAL(st_write(path, outs, n, NULL, &err) == 0);
    for (int i = 0; i < n; i++)
        free((float *)outs[i].data);
    st_close(f);
}

/* An infinity or a NaN in a model is refused before it reaches the SVD (LAPACK's does not
 * return on one), naming the tensor and the element, and leaves the merge as it was. */
static void test_non_finite_values_are_refused_naming_the_tensor(void)
{
    const char *inf = tu_tmp_path("ft_inf.safetensors"), *nan = tu_tmp_path("ft_nan.safetensors");
    mgt_write_with_value(inf, 2, "head.weight", INFINITY);
    mgt_write_with_value(nan, 2, "norm.bias", NAN);
    merge_opts o = merge_opts_default(MERGE_OPCM);
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_EQUAL_FATAL(merge_add(m, mgt_ft(1), &err), 0);
    CU_ASSERT_EQUAL(merge_add(m, inf, &err), CIN_E_FORMAT);
    CU_ASSERT(mgt_has(err.msg, inf, "'head.weight': element 0 is inf", "finite"));
    CU_ASSERT_EQUAL(merge_add(m, nan, &err), CIN_E_FORMAT);
    CU_ASSERT(mgt_has(err.msg, "'norm.bias': element 0 is nan", NULL, NULL));
    CU_ASSERT_EQUAL(merge_count(m), 1);
    CU_ASSERT_EQUAL(merge_add(m, mgt_ft(2), &err), 0); /* the merge goes on unharmed */
    const char *out = tu_tmp_path("after_inf.safetensors");
    CU_ASSERT_FATAL(merge_write(m, out, &err) == 0);
    st_file *golden;
    CU_ASSERT_FATAL(st_open(MGT_DIR "opcm.safetensors", &golden, &err) == 0);
    CU_ASSERT(mgt_err_vs_golden(out, golden, 2) <= MGT_TOL);
    st_close(golden);
    merge_free(m);
}

/* Finite weights near float32's limit whose average overflows: refused, not written as inf. */
static void test_a_merge_that_overflows_is_refused(void)
{
    const char *big = tu_tmp_path("ft_big.safetensors");
    mgt_write_with_value(big, 1, "head.bias", 3e38f);
    merge_opts o = merge_opts_default(MERGE_AVERAGE);
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_EQUAL_FATAL(merge_add(m, big, &err), 0);
    CU_ASSERT_EQUAL(merge_add(m, big, &err), CIN_E_INVAL);
    CU_ASSERT(mgt_has(err.msg, big, "overflowed float32", "'head.bias'"));
    CU_ASSERT_EQUAL(merge_write(m, tu_tmp_path("overflow.safetensors"), &err), CIN_E_INVAL);
    merge_free(m);
}

static void test_bad_options_and_early_write_are_refused(void)
{
    merge_opts o = merge_opts_default(MERGE_OPCM);
    merge_state *m;
    merge_method meth;
    cin_err err = {0};
    o.alpha = 1.0;
    CU_ASSERT_EQUAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err), CIN_E_INVAL);
    CU_ASSERT(mgt_has(err.msg, "alpha 1", NULL, NULL));
    CU_ASSERT_EQUAL(merge_method_parse("ties", &meth, &err), CIN_E_INVAL);
    CU_ASSERT(mgt_has(err.msg, "'ties'", "task-arithmetic", NULL));
    o.alpha = 0.5;
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_EQUAL(merge_write(m, tu_tmp_path("early.safetensors"), &err), CIN_E_INVAL);
    merge_free(m);
}

/* ---- resuming ---- */

/* 1 when the files at a and b hold the same bytes. */
static int mgt_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *da = tu_read_file(a, &na), *db = tu_read_file(b, &nb);
    int same = da && db && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

/* Merges ft_first .. ft_last into m, then writes the merge to out. */
static void mgt_merge_range(merge_state *m, int first, int last, const char *out)
{
    cin_err err = {0};
    for (int k = first; k <= last; k++)
        CU_ASSERT_FATAL(merge_add(m, mgt_ft(k), &err) == 0);
    CU_ASSERT_FATAL(merge_write(m, out, &err) == 0);
}

/* Models 1-2 in one state, 3-4 in another resumed from the first's file, give the bytes of
 * models 1-4 in one state: the file holds the merge and OPCM's norm sum and lambda_t exactly. */
static void mgt_check_resume(const merge_opts *o)
{
    const char *whole = tu_tmp_path("whole.safetensors"), *half = tu_tmp_path("half.safetensors");
    const char *resumed = tu_tmp_path("resumed.safetensors");
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", o, &m, &err) == 0);
    mgt_merge_range(m, 1, MGT_MODELS, whole);
    merge_free(m);
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", o, &m, &err) == 0);
    mgt_merge_range(m, 1, 2, half);
    merge_free(m);

    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", o, &m, &err) == 0);
    CU_ASSERT_EQUAL_FATAL(merge_resume(m, half, &err), 0);
    CU_ASSERT_EQUAL(merge_count(m), 2);
    mgt_merge_range(m, 3, MGT_MODELS, resumed);
    CU_ASSERT_EQUAL(merge_count(m), MGT_MODELS);
    merge_free(m);
    if (!mgt_same_file(whole, resumed))
        fprintf(stderr, "\n  %s: the resumed merge differs\n", merge_method_name(o->method));
    CU_ASSERT(mgt_same_file(whole, resumed));
}

static void test_a_resumed_merge_equals_an_uninterrupted_one(void)
{
    static const char *const patterns[] = {"head.*"};
    merge_opts o = merge_opts_default(MERGE_OPCM);
    mgt_check_resume(&o);
    o.alpha = 0.8;
    o.project_conv = 1;
    o.sum_only = patterns;
    o.n_sum_only = 1;
    mgt_check_resume(&o);
    o = merge_opts_default(MERGE_TASK_ARITHMETIC);
    mgt_check_resume(&o);
    o = merge_opts_default(MERGE_AVERAGE);
    mgt_check_resume(&o);
}

/* Other options, another method, a file that is no merge: refused naming the key, and the
 * state still merges as a fresh one. */
static void test_resuming_with_other_options_is_refused_naming_the_key(void)
{
    const char *half = tu_tmp_path("half_opcm.safetensors");
    merge_opts o = merge_opts_default(MERGE_OPCM);
    merge_state *m;
    cin_err err = {0};
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    mgt_merge_range(m, 1, 2, half);
    merge_free(m);

    o.alpha = 0.8;
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_EQUAL(merge_resume(m, half, &err), CIN_E_INVAL);
    CU_ASSERT(mgt_has(err.msg, half, "'cin.merge.alpha' is '0.5'", "has '0.8'"));
    CU_ASSERT_EQUAL(merge_resume(m, mgt_ft(1), &err), CIN_E_FORMAT);
    CU_ASSERT(mgt_has(err.msg, "ft_1.safetensors", "no metadata 'cin.merge.method'", NULL));
    CU_ASSERT_EQUAL(merge_count(m), 0);
    CU_ASSERT_EQUAL(merge_add(m, mgt_ft(1), &err), 0);
    CU_ASSERT_EQUAL(merge_count(m), 1);
    CU_ASSERT_EQUAL(merge_resume(m, half, &err), CIN_E_INVAL); /* only before a first model */
    merge_free(m);

    o = merge_opts_default(MERGE_AVERAGE);
    CU_ASSERT_FATAL(merge_create(MGT_DIR "base.safetensors", &o, &m, &err) == 0);
    CU_ASSERT_EQUAL(merge_resume(m, half, &err), CIN_E_INVAL);
    CU_ASSERT(mgt_has(err.msg, "'cin.merge.method' is 'opcm'", "has 'average'", NULL));
    merge_free(m);
}

/* ---- cin-merge ---- */

static const char *mgt_bin(void)
{
    const char *bin = getenv("CIN_MERGE"); /* set by `make test` to this build's binary */
    return bin ? bin : "../build/cin-merge";
}

/* Runs cmd (stderr folded into stdout); its exit status, the lines it printed in *lines and
 * whether one of them contained both a and b in *named. */
static int mgt_run(const char *cmd, int *lines, int *named, const char *a, const char *b)
{
    char line[1024];
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    *lines = *named = 0;
    while (fgets(line, sizeof line, p)) {
        ++*lines;
        *named |= strstr(line, a) && strstr(line, b);
    }
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cin_merge_writes_the_merge_after_each_model(void)
{
    const char *dir = tu_tmp_path("cli");
    char cmd[1024], out[512];
    int lines, named;
    snprintf(cmd, sizeof cmd, "%s --method opcm --alpha 0.5 --base " MGT_DIR "base.safetensors"
             " --out-dir %s " MGT_DIR "ft_1.safetensors " MGT_DIR "ft_2.safetensors "
             MGT_DIR "ft_3.safetensors " MGT_DIR "ft_4.safetensors 2>&1", mgt_bin(), dir);
    CU_ASSERT_EQUAL(mgt_run(cmd, &lines, &named, "4 models", "lambda_t"), 0);
    CU_ASSERT_EQUAL(lines, MGT_MODELS);
    CU_ASSERT(named);

    st_file *golden;
    cin_err err = {0};
    CU_ASSERT_FATAL(st_open(MGT_DIR "opcm.safetensors", &golden, &err) == 0);
    for (int k = 1; k <= MGT_MODELS; k++) {
        snprintf(out, sizeof out, "%s/merged_%d.safetensors", dir, k);
        CU_ASSERT(mgt_err_vs_golden(out, golden, k) <= MGT_TOL);
    }
    st_close(golden);
}

/* --resume numbers the merges on from the file's count. */
static void test_cin_merge_resume_goes_on_numbering_from_the_merge(void)
{
    const char *dir = tu_tmp_path("cli_resume");
    char cmd[1024], out[512];
    int lines, named;
    snprintf(cmd, sizeof cmd, "%s --quiet --base " MGT_DIR "base.safetensors --out-dir %s "
             MGT_DIR "ft_1.safetensors " MGT_DIR "ft_2.safetensors 2>&1", mgt_bin(), dir);
    CU_ASSERT_EQUAL(mgt_run(cmd, &lines, &named, "", ""), 0);
    snprintf(cmd, sizeof cmd, "%s --base " MGT_DIR "base.safetensors --out-dir %s --resume "
             "%s/merged_2.safetensors " MGT_DIR "ft_3.safetensors " MGT_DIR "ft_4.safetensors"
             " 2>&1", mgt_bin(), dir, dir);
    CU_ASSERT_EQUAL(mgt_run(cmd, &lines, &named, "4 models", "merged_4"), 0);
    CU_ASSERT_EQUAL(lines, 2);
    CU_ASSERT(named);

    st_file *golden;
    cin_err err = {0};
    CU_ASSERT_FATAL(st_open(MGT_DIR "opcm.safetensors", &golden, &err) == 0);
    snprintf(out, sizeof out, "%s/merged_4.safetensors", dir);
    CU_ASSERT(mgt_err_vs_golden(out, golden, MGT_MODELS) <= MGT_TOL);
    st_close(golden);
}

static void test_cin_merge_refuses_a_bad_model_with_one_line_and_status_1(void)
{
    const char *bad = tu_tmp_path("cli_missing.safetensors");
    char cmd[1024];
    int lines, named;
    mgt_write_variant(bad, "norm.bias", NULL, NULL);
    snprintf(cmd, sizeof cmd, "%s --quiet --base " MGT_DIR "base.safetensors --out-dir %s "
             MGT_DIR "ft_1.safetensors %s 2>&1", mgt_bin(), tu_tmp_path("cli_bad"), bad);
    CU_ASSERT_EQUAL(mgt_run(cmd, &lines, &named, bad, "'norm.bias'"), 1);
    CU_ASSERT_EQUAL(lines, 1);
    CU_ASSERT(named);
    snprintf(cmd, sizeof cmd, "%s --method ties --base b --out-dir d m 2>&1", mgt_bin());
    CU_ASSERT_EQUAL(mgt_run(cmd, &lines, &named, "'ties'", "expected"), 2);
    CU_ASSERT(named);
}

/* ---- memory bound of cin-merge ---- */

#define MGT_MEM_MODELS 8

static uint64_t mgt_rng = 0x2545f4914f6cdd1dull;

static float mgt_rand(void)
{
    mgt_rng ^= mgt_rng << 13;
    mgt_rng ^= mgt_rng >> 7;
    mgt_rng ^= mgt_rng << 17;
    return (float)((double)(mgt_rng >> 11) / 9007199254740992.0 - 0.5);
}

/* A model of about 4.6 MB: two Linear weights, a Conv3d weight, two biases; the base when
 * base is NULL, else base + scale * noise. buf holds the tensors (allocated on first use). */
static void mgt_write_big(const char *path, float *const *base, float scale, float **buf)
{
    static const st_out shapes[] = {
        {"fc1.weight", 2, {768, 512}, NULL}, {"fc1.bias", 1, {768}, NULL},
        {"fc2.weight", 2, {256, 1536}, NULL}, {"fc2.bias", 1, {256}, NULL},
        {"conv.weight", 5, {64, 32, 3, 3, 3}, NULL},
    };
    st_out outs[5];
    cin_err err = {0};
    for (int i = 0; i < 5; i++) {
        size_t n = 1;
        outs[i] = shapes[i];
        for (int d = 0; d < outs[i].ndim; d++)
            n *= (size_t)outs[i].shape[d];
        if (!buf[i])
            buf[i] = malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            buf[i][j] = base ? base[i][j] + scale * mgt_rand() : mgt_rand();
        outs[i].data = buf[i];
    }
    CU_ASSERT_FATAL(st_write(path, outs, 5, NULL, &err) == 0);
}

/* In a sanitizer build, AddressSanitizer keeps freed blocks in a quarantine of up to 256 MB,
 * which a run over more models fills further and which counts as resident: the child runs
 * without it (other builds ignore the variable). */
static int mgt_no_quarantine(void)
{
    const char *old = getenv("ASAN_OPTIONS");
    char opts[512];
    int n = snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", old ? old : "",
                     old && *old ? ":" : "");
    if (n < 0 || (size_t)n >= sizeof opts)
        return -1;
    return setenv("ASAN_OPTIONS", opts, 1);
}

/* Peak resident memory (MB) of `cin-merge --method opcm` over the first n of the models, as
 * its last summary line reports it; -1 on failure. (The child's getrusage figure would carry
 * this test process's own peak across fork and exec.) */
static double mgt_peak_rss(const char *bin, const char *base, char paths[][64], int n)
{
    char *argv[8 + MGT_MEM_MODELS + 1];
    const char *log = tu_tmp_path(n == 2 ? "mem2.log" : "mem8.log");
    int a = 0;
    argv[a++] = (char *)bin;
    argv[a++] = "--base";
    argv[a++] = (char *)base;
    argv[a++] = "--out-dir";
    argv[a++] = (char *)tu_tmp_path(n == 2 ? "mem2" : "mem8");
    for (int i = 0; i < n; i++)
        argv[a++] = paths[i];
    argv[a] = NULL;
    pid_t pid = tu_fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || mgt_no_quarantine() < 0)
            _exit(126);
        execv(bin, argv);
        _exit(127);
    }
    int status = pid < 0 ? -1 : tu_reap(pid, 120);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    size_t len;
    char *text = (char *)tu_read_file(log, &len);
    const char *at = text, *last = NULL;
    while (at && (at = strstr(at, "peak memory ")) != NULL)
        last = at++;
    double mb = -1;
    if (!last || sscanf(last, "peak memory %lf MB", &mb) != 1)
        mb = -1;
    free(text);
    return mb;
}

static void test_cin_merge_peak_memory_is_flat_from_2_to_8_models(void)
{
    const char *bin = mgt_bin();
    char base[64], paths[MGT_MEM_MODELS][64];
    float *b[5] = {0}, *t[5] = {0};
    snprintf(base, sizeof base, "%s", tu_tmp_path("big_base.safetensors"));
    mgt_write_big(base, NULL, 0.0f, b);
    for (int i = 0; i < MGT_MEM_MODELS; i++) {
        char name[32];
        snprintf(name, sizeof name, "big_ft_%d.safetensors", i + 1);
        snprintf(paths[i], sizeof paths[i], "%s", tu_tmp_path(name));
        mgt_write_big(paths[i], b, 0.02f, t);
    }
    for (int i = 0; i < 5; i++) {
        free(b[i]);
        free(t[i]);
    }

    double rss2 = mgt_peak_rss(bin, base, paths, 2);
    double rss8 = mgt_peak_rss(bin, base, paths, MGT_MEM_MODELS);
    fprintf(stderr, "\n  cin-merge peak memory: 2 models %.1f MB, 8 models %.1f MB\n", rss2,
            rss8);
    CU_ASSERT_FATAL(rss2 > 0 && rss8 > 0);
    /* Holding every model would add 6 x 4.6 MB = 27 MB; allow 20 % + 1 MB. */
    CU_ASSERT(rss8 < rss2 * 1.2 + 1.0);
}

int test_merge_register(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
#define MGT_T(fn) {#fn, fn}
        MGT_T(test_opcm_matches_fusion_bench_after_each_of_4_merges),
        MGT_T(test_opcm_alpha_0_8_keeps_a_larger_block_out),
        MGT_T(test_opcm_project_conv_projects_conv_weight_as_out_by_rest),
        MGT_T(test_opcm_sum_only_sums_matching_2d_tensors),
        MGT_T(test_opcm_without_buffers_merges_running_statistics),
        MGT_T(test_buffers_keep_the_first_models_or_the_bases_values),
        MGT_T(test_opcm_diag_kept_variant_matches_its_golden),
        MGT_T(test_task_arithmetic_matches_after_each_of_4_merges),
        MGT_T(test_average_matches_after_each_of_4_merges),
        MGT_T(test_diag_kept_differs_from_fusion_bench_from_the_second_model),
        MGT_T(test_model_missing_a_tensor_is_refused_naming_it),
        MGT_T(test_model_with_a_wrong_shape_is_refused_naming_both_shapes),
        MGT_T(test_model_with_an_extra_tensor_is_refused_naming_it),
        MGT_T(test_non_f32_model_is_refused_naming_the_dtype),
        MGT_T(test_non_finite_values_are_refused_naming_the_tensor),
        MGT_T(test_a_merge_that_overflows_is_refused),
        MGT_T(test_bad_options_and_early_write_are_refused),
        MGT_T(test_a_resumed_merge_equals_an_uninterrupted_one),
        MGT_T(test_resuming_with_other_options_is_refused_naming_the_key),
        MGT_T(test_cin_merge_writes_the_merge_after_each_model),
        MGT_T(test_cin_merge_resume_goes_on_numbering_from_the_merge),
        MGT_T(test_cin_merge_refuses_a_bad_model_with_one_line_and_status_1),
        MGT_T(test_cin_merge_peak_memory_is_flat_from_2_to_8_models),
#undef MGT_T
    };
    CU_pSuite suite = CU_add_suite("merge", NULL, NULL);
    if (!suite)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
