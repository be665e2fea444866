/* Tests for engine/seeded: the C generator must give bit for bit the tensors that
 * tests/ref/seeded.py gives, since the PyTorch goldens are computed on those (golden file
 * golden/seeded.safetensors, written by tests/ref/make_goldens.py), and its range rules must
 * match the ones recorded there. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "seeded.h"

#define SDT_GOLDEN "golden/seeded.safetensors"

/* The range a golden tensor was drawn in: the "input" convention, or cin_seeded_range. */
static int sdt_range(const st_info *info, double *lo, double *hi)
{
    if (strcmp(info->name, "input") == 0) {
        *lo = -1.0;
        *hi = 1.0;
        return 0;
    }
    return cin_seeded_range(info->name, info->ndim, info->shape, lo, hi);
}

/* Checks the "range.<name>" metadata ("lo,hi" as Python's repr) against lo and hi exactly. */
static void sdt_check_range_meta(const st_file *f, const char *name, double lo, double hi)
{
    char key[128];
    snprintf(key, sizeof key, "range.%s", name);
    const char *v = st_meta(f, key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    char *end;
    double mlo = strtod(v, &end);
    CU_ASSERT_FATAL(*end == ',');
    double mhi = strtod(end + 1, NULL);
    if (mlo != lo || mhi != hi)
        fprintf(stderr, "\n  %s: range [%.17g, %.17g], golden says %s\n", name, lo, hi, v);
    CU_ASSERT(mlo == lo && mhi == hi);
}

static size_t sdt_numel(const st_info *info)
{
    size_t n = 1;
    for (int d = 0; d < info->ndim; d++)
        n *= (size_t)info->shape[d];
    return n;
}

static void test_fill_equals_python_generator_bit_for_bit(void)
{
    st_file *f;
    cin_err err;
    int rc = st_open(SDT_GOLDEN, &f, &err);
    if (rc != 0)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    const char *seed_text = st_meta(f, "seed");
    CU_ASSERT_PTR_NOT_NULL_FATAL(seed_text);
    uint64_t seed = strtoull(seed_text, NULL, 10);
    CU_ASSERT(st_count(f) >= 4);

    for (int i = 0; i < st_count(f); i++) {
        st_info info;
        CU_ASSERT_FATAL(st_info_at(f, i, &info) == 0);
        double lo, hi;
        CU_ASSERT_FATAL(sdt_range(&info, &lo, &hi) == 0);
        sdt_check_range_meta(f, info.name, lo, hi);

        size_t n = sdt_numel(&info);
        float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
        CU_ASSERT_FATAL(want && got);
        CU_ASSERT_FATAL(st_read_f32(f, info.name, info.ndim, info.shape, want, &err) == 0);
        cin_seeded_fill(got, n, seed, info.name, lo, hi);
        if (memcmp(got, want, n * sizeof *got) != 0)
            fprintf(stderr, "\n  %s: C and Python values differ\n", info.name);
        CU_ASSERT(memcmp(got, want, n * sizeof *got) == 0);
        free(want);
        free(got);
    }
    st_close(f);
}

static void test_range_follows_name_suffix_and_shape(void)
{
    double lo, hi;
    int64_t conv[5] = {24, 1, 3, 3, 3}, linear[2] = {400, 2048}, vec[1] = {24};

    /* seeded.h: +-sqrt(3 / fan_in), fan_in = prod(shape[1:]) */
    CU_ASSERT(cin_seeded_range("b.conv_b.weight", 5, conv, &lo, &hi) == 0);
    CU_ASSERT(hi == sqrt(3.0 / 27.0) && lo == -hi);
    CU_ASSERT(cin_seeded_range("proj.weight", 2, linear, &lo, &hi) == 0);
    CU_ASSERT(hi == sqrt(3.0 / 2048.0) && lo == -hi);
    CU_ASSERT(cin_seeded_range("norm.weight", 1, vec, &lo, &hi) == 0);
    CU_ASSERT(lo == 0.5 && hi == 1.5);
    CU_ASSERT(cin_seeded_range("norm.running_var", 1, vec, &lo, &hi) == 0);
    CU_ASSERT(lo == 0.5 && hi == 1.5);
    CU_ASSERT(cin_seeded_range("norm.running_mean", 1, vec, &lo, &hi) == 0);
    CU_ASSERT(lo == -0.2 && hi == 0.2);
    CU_ASSERT(cin_seeded_range("proj.bias", 1, vec, &lo, &hi) == 0);
    CU_ASSERT(lo == -0.2 && hi == 0.2);
    /* class tokens and learned positions: [-0.5, 0.5] whatever their shape */
    int64_t table[2] = {16, 64};
    CU_ASSERT(cin_seeded_range("cls_token", 1, vec, &lo, &hi) == 0);
    CU_ASSERT(lo == -0.5 && hi == 0.5);
    CU_ASSERT(cin_seeded_range("pos_embedding", 2, table, &lo, &hi) == 0);
    CU_ASSERT(lo == -0.5 && hi == 0.5);
    CU_ASSERT(cin_seeded_range("norm.num_batches_tracked", 0, vec, &lo, &hi) == -1);
    CU_ASSERT(cin_seeded_range("input", 4, conv, &lo, &hi) == -1);
}

static void test_element_depends_on_index_not_on_length(void)
{
    float a[16], b[5];
    cin_seeded_fill(a, 16, 3, "x.weight", -1.0, 1.0);
    cin_seeded_fill(b, 5, 3, "x.weight", -1.0, 1.0);
    CU_ASSERT(memcmp(a, b, sizeof b) == 0);
    for (int i = 0; i < 16; i++)
        CU_ASSERT(a[i] >= -1.0f && a[i] < 1.0f);
}

static void test_name_and_seed_change_the_values(void)
{
    float a[8], b[8], c[8];
    cin_seeded_fill(a, 8, 3, "x.weight", 0.0, 1.0);
    cin_seeded_fill(b, 8, 4, "x.weight", 0.0, 1.0);
    cin_seeded_fill(c, 8, 3, "y.weight", 0.0, 1.0);
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);
    CU_ASSERT(memcmp(a, c, sizeof a) != 0);
}

int test_seeded_register(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
#define SDT_T(fn) {#fn, fn}
        SDT_T(test_fill_equals_python_generator_bit_for_bit),
        SDT_T(test_range_follows_name_suffix_and_shape),
        SDT_T(test_element_depends_on_index_not_on_length),
        SDT_T(test_name_and_seed_change_the_values),
#undef SDT_T
    };
    CU_pSuite suite = CU_add_suite("seeded", NULL, NULL);
    if (!suite)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
