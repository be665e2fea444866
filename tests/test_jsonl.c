/* Suite "jsonl": the JSON-lines sink, read back with jansson. */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "util.h"

static const char *const labels[4] = {
    "abseiling",
    "say \"cheese\" \\ now",
    "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x8e\xac",
    "tab\there\nnewline",
};

/* A result of source "cam1" at wall time 1764820800.125. */
static sink_result result(int64_t frame, double pts, const int *idx, const float *score, int k,
                          const char *const *names, double ms)
{
    return (sink_result){.source = "cam1", .frame = frame, .pts = pts, .wall = 1764820800.125,
                         .latency_ms = ms, .k = k, .idx = idx, .score = score,
                         .labels = names};
}

static int write_one(jsonl_sink *s, int64_t frame, double pts, const int *idx,
                     const float *score, int k, const char *const *names, double ms,
                     cin_err *err)
{
    sink_result r = result(frame, pts, idx, score, k, names, ms);
    return jsonl_write(s, &r, err);
}

/* The file's lines, parsed; returns how many (at most max). */
static int read_back(const char *path, json_t **lines, int max, char *raw, size_t raw_cap)
{
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t n = fread(raw, 1, raw_cap - 1, f);
    fclose(f);
    raw[n] = '\0';
    CU_ASSERT(n == 0 || raw[n - 1] == '\n');
    int count = 0;
    for (char *s = raw, *nl; count < max && (nl = strchr(s, '\n')); s = nl + 1) {
        json_error_t jerr;
        lines[count] = json_loadb(s, (size_t)(nl - s), 0, &jerr);
        CU_ASSERT_PTR_NOT_NULL(lines[count]);
        count++;
    }
    return count;
}

static void check_entry(json_t *topk, int i, int index, double score, const char *label)
{
    json_t *e = json_array_get(topk, (size_t)i);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "index")), index);
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(e, "score")), score, 1e-7);
    const char *got = json_string_value(json_object_get(e, "label"));
    CU_ASSERT((label == NULL && got == NULL) || (label && got && !strcmp(label, got)));
}

static void test_three_records_read_back_with_escaped_labels(void)
{
    const char *path = tu_tmp_path("three.jsonl");
    jsonl_sink *s;
    cin_err err;
    int idx[3][2] = {{0, 1}, {2, 3}, {1, 2}};
    float score[3][2] = {{0.13f, 0.05f}, {0.7f, 0.2f}, {0.5f, 0.5f}};
    CU_ASSERT_FATAL(jsonl_open(path, 0.0, &s, &err) == 0);
    for (int r = 0; r < 3; r++)
        CU_ASSERT(write_one(s, 40 + r, (40 + r) / 10.0, idx[r], score[r], 2, labels,
                              3.2 + r, &err) == 0);
    CU_ASSERT_FATAL(jsonl_close(s, &err) == 0);

    json_t *lines[4];
    char raw[4096];
    CU_ASSERT_EQUAL_FATAL(read_back(path, lines, 4, raw, sizeof raw), 3);
    for (int r = 0; r < 3; r++) {
        json_t *o = lines[r];
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "frame")), 40 + r);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "source")), "cam1");
        CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(o, "wall")), 1764820800.125,
                               1e-6);
        CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(o, "pts")), (40 + r) / 10.0,
                               1e-12);
        CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(o, "latency_ms")), 3.2 + r,
                               1e-12);
        json_t *topk = json_object_get(o, "topk");
        CU_ASSERT_EQUAL(json_array_size(topk), 2);
        for (int i = 0; i < 2; i++)
            check_entry(topk, i, idx[r][i], score[r][i], labels[idx[r][i]]);
        json_decref(o);
    }
}

static void test_labels_are_omitted_when_null(void)
{
    const char *path = tu_tmp_path("nolabels.jsonl");
    jsonl_sink *s;
    cin_err err;
    int idx[1] = {7};
    float score[1] = {1.5f};
    CU_ASSERT_FATAL(jsonl_open(path, 0.0, &s, &err) == 0);
    CU_ASSERT(write_one(s, 0, 0.0, idx, score, 1, NULL, 0.5, &err) == 0);
    CU_ASSERT_FATAL(jsonl_close(s, &err) == 0);

    json_t *line;
    char raw[1024];
    CU_ASSERT_EQUAL_FATAL(read_back(path, &line, 1, raw, sizeof raw), 1);
    check_entry(json_object_get(line, "topk"), 0, 7, 1.5, NULL);
    json_decref(line);
}

static void test_numbers_print_in_shortest_form(void)
{
    const char *path = tu_tmp_path("short.jsonl");
    jsonl_sink *s;
    cin_err err;
    int idx[1] = {0};
    float score[1] = {0.13f};
    CU_ASSERT_FATAL(jsonl_open(path, 0.0, &s, &err) == 0);
    CU_ASSERT(write_one(s, 41, 4.1, idx, score, 1, labels, 3.2, &err) == 0);
    CU_ASSERT_FATAL(jsonl_close(s, &err) == 0);

    json_t *line;
    char raw[1024];
    CU_ASSERT_EQUAL_FATAL(read_back(path, &line, 1, raw, sizeof raw), 1);
    json_decref(line);
    CU_ASSERT_STRING_EQUAL(raw, "{\"source\": \"cam1\", \"frame\": 41, \"pts\": 4.1, "
                                "\"wall\": 1764820800.125, \"topk\": [{\"label\": "
                                "\"abseiling\", \"index\": 0, \"score\": 0.13}], "
                                "\"latency_ms\": 3.2}\n");
}

static void test_non_finite_numbers_print_as_null(void)
{
    const char *path = tu_tmp_path("nan.jsonl");
    jsonl_sink *s;
    cin_err err;
    int idx[1] = {0};
    float score[1] = {NAN};
    CU_ASSERT_FATAL(jsonl_open(path, 0.0, &s, &err) == 0);
    CU_ASSERT(write_one(s, 1, INFINITY, idx, score, 1, NULL, 1.0, &err) == 0);
    CU_ASSERT_FATAL(jsonl_close(s, &err) == 0);

    json_t *line;
    char raw[1024];
    CU_ASSERT_EQUAL_FATAL(read_back(path, &line, 1, raw, sizeof raw), 1);
    CU_ASSERT(json_is_null(json_object_get(line, "pts")));
    json_t *e = json_array_get(json_object_get(line, "topk"), 0);
    CU_ASSERT(json_is_null(json_object_get(e, "score")));
    json_decref(line);
}

static void test_bad_label_or_index_writes_nothing(void)
{
    const char *path = tu_tmp_path("bad.jsonl");
    const char *const bad_labels[2] = {"fine", "bad \xc3("};
    jsonl_sink *s;
    cin_err err;
    int idx[2] = {0, 1}, neg[1] = {-1};
    float score[2] = {0.6f, 0.4f};
    CU_ASSERT_FATAL(jsonl_open(path, 0.0, &s, &err) == 0);
    CU_ASSERT_EQUAL(write_one(s, 0, 0.0, idx, score, 2, bad_labels, 1.0, &err),
                    CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not valid UTF-8"));
    CU_ASSERT_EQUAL(write_one(s, 0, 0.0, neg, score, 1, NULL, 1.0, &err), CIN_E_INVAL);
    CU_ASSERT_FATAL(jsonl_close(s, &err) == 0);

    json_t *line;
    char raw[1024];
    CU_ASSERT_EQUAL(read_back(path, &line, 1, raw, sizeof raw), 0);
}

static void test_open_in_missing_directory_is_io_error(void)
{
    jsonl_sink *s = (jsonl_sink *)1;
    cin_err err;
    CU_ASSERT_EQUAL(jsonl_open("no/such/dir/out.jsonl", 0.0, &s, &err), CIN_E_IO);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no/such/dir/out.jsonl"));
}

static void test_stdout_sink_leaves_stdout_open(void)
{
    jsonl_sink *s;
    cin_err err;
    CU_ASSERT_FATAL(jsonl_open("-", 0.0, &s, &err) == 0);
    CU_ASSERT(jsonl_close(s, &err) == 0);
    CU_ASSERT(fflush(stdout) == 0);
    CU_ASSERT(jsonl_close(NULL, &err) == 0);
}

int test_jsonl_register(void)
{
    CU_pSuite s = CU_add_suite("jsonl", NULL, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"three_records_read_back_with_escaped_labels",
         test_three_records_read_back_with_escaped_labels},
        {"labels_are_omitted_when_null", test_labels_are_omitted_when_null},
        {"numbers_print_in_shortest_form", test_numbers_print_in_shortest_form},
        {"non_finite_numbers_print_as_null", test_non_finite_numbers_print_as_null},
        {"bad_label_or_index_writes_nothing", test_bad_label_or_index_writes_nothing},
        {"open_in_missing_directory_is_io_error", test_open_in_missing_directory_is_io_error},
        {"stdout_sink_leaves_stdout_open", test_stdout_sink_leaves_stdout_open},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
