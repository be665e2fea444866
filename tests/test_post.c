/* Suite "post": softmax, top-k and the label file. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <string.h>

#include "post.h"
#include "util.h"

static void test_softmax_matches_reference_and_sums_to_one(void)
{
    float x[4] = {1.0f, 2.0f, 3.0f, -1.0f};
    double ref[4], sum = 0.0, total = 0.0;
    for (int i = 0; i < 4; i++)
        sum += exp((double)x[i]);
    for (int i = 0; i < 4; i++)
        ref[i] = exp((double)x[i]) / sum;
    post_softmax(x, 4);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_DOUBLE_EQUAL(x[i], ref[i], 1e-6);
        total += x[i];
    }
    CU_ASSERT_DOUBLE_EQUAL(total, 1.0, 1e-6);
}

static void test_softmax_is_stable_for_large_logits(void)
{
    float big[3] = {1000.0f, 1001.0f, 1002.0f}, small[3] = {0.0f, 1.0f, 2.0f};
    post_softmax(big, 3);
    post_softmax(small, 3);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT(isfinite(big[i]));
        CU_ASSERT_DOUBLE_EQUAL(big[i], small[i], 1e-6);
    }
}

static void test_softmax_of_nothing_is_a_no_op(void)
{
    float x[1] = {5.0f};
    post_softmax(x, 0);
    CU_ASSERT_EQUAL(x[0], 5.0f);
}

static void test_topk_is_descending(void)
{
    float x[6] = {0.1f, 0.7f, 0.05f, 0.9f, 0.3f, 0.2f};
    int idx[3];
    float val[3];
    post_topk(x, 6, 3, idx, val);
    CU_ASSERT_EQUAL(idx[0], 3);
    CU_ASSERT_EQUAL(idx[1], 1);
    CU_ASSERT_EQUAL(idx[2], 4);
    CU_ASSERT_EQUAL(val[0], 0.9f);
    CU_ASSERT_EQUAL(val[2], 0.3f);
}

static void test_topk_breaks_ties_by_lower_index(void)
{
    float x[6] = {0.5f, 0.2f, 0.5f, 0.8f, 0.5f, 0.2f};
    int idx[4];
    float val[4];
    post_topk(x, 6, 4, idx, val);
    CU_ASSERT_EQUAL(idx[0], 3);
    CU_ASSERT_EQUAL(idx[1], 0);
    CU_ASSERT_EQUAL(idx[2], 2);
    CU_ASSERT_EQUAL(idx[3], 4);
}

static void test_topk_ranks_nan_last(void)
{
    float x[4] = {NAN, 0.1f, NAN, -3.0f};
    int idx[3];
    float val[3];
    post_topk(x, 4, 3, idx, val);
    CU_ASSERT_EQUAL(idx[0], 1);
    CU_ASSERT_EQUAL(idx[1], 3);
    CU_ASSERT_EQUAL(idx[2], 0);
    CU_ASSERT(isnan(val[2]));
}

static void test_topk_pads_when_k_exceeds_n(void)
{
    float x[2] = {1.0f, 2.0f};
    int idx[4];
    float val[4];
    post_topk(x, 2, 4, idx, val);
    CU_ASSERT_EQUAL(idx[0], 1);
    CU_ASSERT_EQUAL(idx[1], 0);
    CU_ASSERT_EQUAL(idx[2], -1);
    CU_ASSERT_EQUAL(idx[3], -1);
    CU_ASSERT(isinf(val[3]) && val[3] < 0);
}

static int load_labels(const char *text, size_t len, int n, post_labels **l, cin_err *err)
{
    const char *path = tu_tmp_path("labels.txt");
    CU_ASSERT_FATAL(tu_write_file(path, text, len) == 0);
    cin_err_clear(err);
    return post_labels_load(path, n, l, err);
}

static void test_labels_are_one_per_line(void)
{
    post_labels *l;
    cin_err err;
    const char text[] = "abseiling\r\nair drumming\ncaf\xc3\xa9 \"quoted\"";
    CU_ASSERT_FATAL(load_labels(text, sizeof text - 1, 3, &l, &err) == 0);
    CU_ASSERT_EQUAL(post_labels_count(l), 3);
    CU_ASSERT_STRING_EQUAL(post_label(l, 0), "abseiling");
    CU_ASSERT_STRING_EQUAL(post_label(l, 1), "air drumming");
    CU_ASSERT_STRING_EQUAL(post_label(l, 2), "caf\xc3\xa9 \"quoted\"");
    CU_ASSERT_STRING_EQUAL(post_labels_array(l)[1], "air drumming");
    CU_ASSERT_PTR_NULL(post_label(l, 3));
    CU_ASSERT_PTR_NULL(post_label(l, -1));
    post_labels_free(l);
}

static void test_labels_count_is_free_when_num_classes_is_zero(void)
{
    post_labels *l;
    cin_err err;
    CU_ASSERT_FATAL(load_labels("a\nb\n", 4, 0, &l, &err) == 0);
    CU_ASSERT_EQUAL(post_labels_count(l), 2);
    post_labels_free(l);
}

static void test_labels_reject_blank_line(void)
{
    post_labels *l = (post_labels *)1;
    cin_err err;
    CU_ASSERT_EQUAL(load_labels("a\n\nb\n", 5, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "labels.txt:2: blank line"));
    CU_ASSERT_EQUAL(load_labels("a\nb\n\n", 5, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "labels.txt:3:"));
    CU_ASSERT_EQUAL(load_labels("", 0, 0, &l, &err), CIN_E_FORMAT);
}

static void test_labels_count_must_equal_num_classes(void)
{
    post_labels *l;
    cin_err err;
    CU_ASSERT_EQUAL(load_labels("a\nb\n", 4, 3, &l, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expected 3 labels"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "got 2"));
}

static void test_labels_reject_invalid_utf8_and_nul(void)
{
    post_labels *l;
    cin_err err;
    CU_ASSERT_EQUAL(load_labels("ok\nbad\xc3(\n", 9, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ":2: label is not valid UTF-8"));
    CU_ASSERT_EQUAL(load_labels("\xed\xa0\x80\n", 4, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_EQUAL(load_labels("a\0b\n", 4, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "NUL"));
}

static void test_missing_label_file_is_io_error(void)
{
    post_labels *l;
    cin_err err;
    CU_ASSERT_EQUAL(post_labels_load("no/such/labels.txt", 0, &l, &err), CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no/such/labels.txt"));
}

static void test_device_or_huge_label_file_is_refused(void)
{
    post_labels *l = NULL;
    cin_err err;
    CU_ASSERT_EQUAL(post_labels_load("/dev/zero", 0, &l, &err), CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not a regular file"));
    const char *path = tu_tmp_path("huge_labels.txt");
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < (17 << 20) / 16; i++)
        fputs("label number xx\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(post_labels_load(path, 0, &l, &err), CIN_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "huge_labels.txt"));
    CU_ASSERT_PTR_NULL(l);
}

static void test_null_labels_give_null(void)
{
    CU_ASSERT_PTR_NULL(post_label(NULL, 0));
    CU_ASSERT_PTR_NULL(post_labels_array(NULL));
    CU_ASSERT_EQUAL(post_labels_count(NULL), 0);
    post_labels_free(NULL);
}

int test_post_register(void)
{
    CU_pSuite s = CU_add_suite("post", NULL, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"softmax_matches_reference_and_sums_to_one",
         test_softmax_matches_reference_and_sums_to_one},
        {"softmax_is_stable_for_large_logits", test_softmax_is_stable_for_large_logits},
        {"softmax_of_nothing_is_a_no_op", test_softmax_of_nothing_is_a_no_op},
        {"topk_is_descending", test_topk_is_descending},
        {"topk_breaks_ties_by_lower_index", test_topk_breaks_ties_by_lower_index},
        {"topk_ranks_nan_last", test_topk_ranks_nan_last},
        {"topk_pads_when_k_exceeds_n", test_topk_pads_when_k_exceeds_n},
        {"labels_are_one_per_line", test_labels_are_one_per_line},
        {"labels_count_is_free_when_num_classes_is_zero",
         test_labels_count_is_free_when_num_classes_is_zero},
        {"labels_reject_blank_line", test_labels_reject_blank_line},
        {"labels_count_must_equal_num_classes", test_labels_count_must_equal_num_classes},
        {"labels_reject_invalid_utf8_and_nul", test_labels_reject_invalid_utf8_and_nul},
        {"missing_label_file_is_io_error", test_missing_label_file_is_io_error},
        {"device_or_huge_label_file_is_refused", test_device_or_huge_label_file_is_refused},
        {"null_labels_give_null", test_null_labels_give_null},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
