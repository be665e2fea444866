/* Suite "csvsink": the CSV result sink (io/csvsink.h): its header, rows in shortest form,
 * RFC 4180 quoting of labels, empty fields for non-finite numbers, and rows refused whole. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csvsink.h"
#include "util.h"

/* Appends a row of source "cam1" at wall time 1764820800.125. */
static int write_row(csv_sink *s, int64_t frame, double pts, const int *idx, const float *score,
                     int k, const char *const *names, double ms, cin_err *err)
{
    sink_result r = {.source = "cam1", .frame = frame, .pts = pts, .wall = 1764820800.125,
                     .latency_ms = ms, .k = k, .idx = idx, .score = score, .labels = names};
    return csv_sink_write(s, &r, err);
}

/* The whole file at path equals want. */
static void expect_file(const char *path, const char *want)
{
    size_t len;
    char *got = (char *)tu_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
}

static void test_rows_follow_the_header_in_shortest_form(void)
{
    const char *path = tu_tmp_path("plain.csv");
    csv_sink *s;
    CU_ASSERT_EQUAL_FATAL(csv_sink_open(path, 2, 0, 0.0, &s, NULL), 0);
    int idx[2] = {7, 0};
    float score[2] = {0.13f, 1e-7f};
    CU_ASSERT_EQUAL(write_row(s, 41, 4.1, idx, score, 2, NULL, 3.25, NULL), 0);
    idx[0] = 3;
    score[0] = NAN;
    CU_ASSERT_EQUAL(write_row(s, 42, INFINITY, idx, score, 2, NULL, 0.5, NULL), 0);
    CU_ASSERT_EQUAL(csv_sink_close(s, NULL), 0);
    expect_file(path, "source,frame,pts,wall,latency_ms,index_1,score_1,index_2,score_2\n"
                      "cam1,41,4.1,1764820800.125,3.250,7,0.13,0,1e-07\n"
                      "cam1,42,,1764820800.125,0.500,3,,0,1e-07\n");
}

static void test_labels_are_quoted_where_rfc_4180_needs_it(void)
{
    const char *path = tu_tmp_path("labels.csv");
    const char *labels[5] = {"plain", "a, b", "say \"hi\"", "two\nlines", " padded"};
    csv_sink *s;
    CU_ASSERT_EQUAL_FATAL(csv_sink_open(path, 5, 1, 0.0, &s, NULL), 0);
    int idx[5] = {0, 1, 2, 3, 4};
    float score[5] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.0f};
    CU_ASSERT_EQUAL(write_row(s, 0, 0.0, idx, score, 5, labels, 1.0, NULL), 0);
    CU_ASSERT_EQUAL(csv_sink_close(s, NULL), 0);
    expect_file(path, "source,frame,pts,wall,latency_ms,index_1,label_1,score_1,index_2,label_2,"
                      "score_2,"
                      "index_3,label_3,score_3,index_4,label_4,score_4,index_5,label_5,"
                      "score_5\n"
                      "cam1,0,0,1764820800.125,1.000,0,plain,0.5,1,\"a, b\",0.25,2,"
                      "\"say \"\"hi\"\"\",0.125,3,\"two\nlines\",0.0625,4,\" padded\",0\n");
}

static void test_a_bad_row_is_refused_and_nothing_written(void)
{
    const char *path = tu_tmp_path("bad.csv");
    const char *labels[2] = {"zero", NULL};
    csv_sink *s;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(csv_sink_open(path, 1, 1, 0.0, &s, NULL), 0);
    int idx[1] = {-1};
    float score[1] = {1.0f};
    CU_ASSERT_EQUAL(write_row(s, 0, 0.0, idx, score, 1, labels, 1.0, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "negative index -1"));
    idx[0] = 1;
    CU_ASSERT_EQUAL(write_row(s, 0, 0.0, idx, score, 1, labels, 1.0, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no label for class 1"));
    CU_ASSERT_EQUAL(write_row(s, 0, 0.0, idx, score, 1, NULL, 1.0, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "labels missing"));
    CU_ASSERT_EQUAL(write_row(s, 0, 0.0, idx, score, 2, labels, 1.0, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "a row of 2 classes, but the header has 1"));
    CU_ASSERT_EQUAL(csv_sink_close(s, NULL), 0);
    expect_file(path, "source,frame,pts,wall,latency_ms,index_1,label_1,score_1\n");
    CU_ASSERT_EQUAL(csv_sink_open(path, 0, 0, 0.0, &s, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(csv_sink_open(tu_tmp_path("no/dir.csv"), 1, 0, 0.0, &s, &err), CIN_E_IO);
    CU_ASSERT_PTR_NULL(s);
}

int test_csvsink_register(void)
{
    CU_pSuite s = CU_add_suite("csvsink", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "rows follow the header in shortest form",
                         test_rows_follow_the_header_in_shortest_form) &&
             CU_add_test(s, "labels are quoted where RFC 4180 needs it",
                         test_labels_are_quoted_where_rfc_4180_needs_it) &&
             CU_add_test(s, "a bad row is refused and nothing written",
                         test_a_bad_row_is_refused_and_nothing_written);
    return ok ? 0 : -1;
}
