/* Suite "sksrc": the pipeline's skeleton source (pipelines/sksrc.h) over every format, checked
 * for its layout of persons, its masking and its refusals; and skeleton pipelines end to end,
 * whose results must equal the model stepped by hand on the same frames. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bvh.h"
#include "config.h"
#include "npy.h"
#include "ntu.h"
#include "pipeline.h"
#include "seeded.h"
#include "sksrc.h"
#include "util.h"

/* The layout a skeleton model takes: value c, person m, joint v at [c][m * V + v]. */
#define AT(c, m, v, nm, nv) (((size_t)(c) * (nm) + (m)) * (nv) + (v))

static sksrc_opts opts_for(const char *uri, pipe_format f, int c, int v, int m)
{
    return (sksrc_opts){.uri = uri, .format = f, .channels = c, .joints = v, .persons = m,
                        .centre_joint = -1, .scale_bone = {-1, -1}};
}

/* npy [t][c][v][m] of seeded values in [-1, 1]. */
static float *write_seq(const char *path, int t, int c, int v, int m)
{
    size_t n = (size_t)t * c * v * m;
    float *x = malloc(sizeof(float) * n);
    cin_seeded_fill(x, n, 3, "skeleton", -1, 1);
    int64_t shape[4] = {t, c, v, m};
    CU_ASSERT_EQUAL(npy_write_f32(path, 4, shape, x, NULL), 0);
    return x;
}

static void test_npy_persons_are_laid_out_side_by_side_and_padded(void)
{
    enum { T = 3, C = 3, V = 5, M = 1, MODEL_M = 2 };
    const char *path = tu_tmp_path("sk_one.npy");
    float *x = write_seq(path, T, C, V, M);
    sksrc_opts o = opts_for(path, PIPE_FORMAT_NPY, C, V, MODEL_M);
    sksrc *s;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(sksrc_open(&o, &s, &err), 0);
    float frame[C * V * MODEL_M];
    int64_t index;
    double pts;
    int bad = 0;
    for (int t = 0; t < T; t++) {
        CU_ASSERT_EQUAL_FATAL(sksrc_read(s, frame, &index, &pts, &err), 1);
        CU_ASSERT_EQUAL(index, t);
        CU_ASSERT_DOUBLE_EQUAL(pts, t / 30.0, 1e-12);
        for (int c = 0; c < C; c++)
            for (int v = 0; v < V; v++) {
                bad += frame[AT(c, 0, v, MODEL_M, V)] != x[((size_t)(t * C + c) * V + v) * M];
                bad += frame[AT(c, 1, v, MODEL_M, V)] != 0.0f;
            }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(sksrc_read(s, frame, &index, &pts, &err), 0);
    sksrc_close(s);
    free(x);
}

static void test_npy_joints_with_non_finite_values_are_masked_and_counted(void)
{
    enum { T = 2, C = 2, V = 3, M = 1 };
    const char *path = tu_tmp_path("sk_nan.npy");
    /* frame 1: joint 0 has a NaN x, joint 1 an infinite y: both lose every channel */
    float x[T * C * V * M] = {1, 2, 3, 4, 5, 6, NAN, 8, 9, 10, -INFINITY, 12};
    int64_t shape[4] = {T, C, V, M};
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(path, 4, shape, x, NULL), 0);
    sksrc_opts o = opts_for(path, PIPE_FORMAT_NPY, C, V, M);
    sksrc *s;
    CU_ASSERT_EQUAL_FATAL(sksrc_open(&o, &s, NULL), 0);
    float frame[C * V * M];
    int64_t index;
    double pts;
    CU_ASSERT_EQUAL(sksrc_read(s, frame, &index, &pts, NULL), 1);
    CU_ASSERT_EQUAL(sksrc_read(s, frame, &index, &pts, NULL), 1);
    const float want[C * V * M] = {0, 0, 9, 0, 0, 12};
    CU_ASSERT_EQUAL(memcmp(frame, want, sizeof want), 0);
    CU_ASSERT_EQUAL(sksrc_masked(s), 2);
    sksrc_close(s);
}

/* The NTU sample: frames 0..5 with 1, 1, 2, 1, 0, 1 bodies, as ntu_read gives them. */
static void test_ntu_file_gives_its_bodies_as_persons(void)
{
    enum { C = 3, V = 25, M = 2 };
    const char *path = "media/ntu_sample.skeleton";
    skel_seq seq;
    CU_ASSERT_EQUAL_FATAL(ntu_read(path, M, &seq, NULL), 0);
    sksrc_opts o = opts_for(path, PIPE_FORMAT_NTU, C, V, M);
    sksrc *s;
    CU_ASSERT_EQUAL_FATAL(sksrc_open(&o, &s, NULL), 0);
    float frame[C * M * V];
    int64_t index;
    double pts;
    int t = 0, bad = 0, second[6] = {0}, any[6] = {0};
    while (sksrc_read(s, frame, &index, &pts, NULL) == 1) {
        for (int c = 0; c < C; c++)
            for (int v = 0; v < V; v++)
                for (int m = 0; m < M; m++) {
                    float want = seq.data[((size_t)(t * C + c) * V + v) * M + m];
                    float got = frame[AT(c, m, v, M, V)];
                    bad += got != want;
                    second[t] |= m == 1 && got != 0.0f;
                    any[t] |= got != 0.0f;
                }
        t++;
    }
    CU_ASSERT_EQUAL(t, 6);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(second[2] && !second[0] && !second[3]);
    CU_ASSERT(any[0] && any[3] && !any[4] && any[5]);
    sksrc_close(s);
    skel_seq_free(&seq);
}

static void expect_refused(const sksrc_opts *o, int code, const char *needle)
{
    sksrc *s = (sksrc *)1;
    cin_err err = {0};
    CU_ASSERT_EQUAL(sksrc_open(o, &s, &err), code);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, o->uri));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, needle));
    if (!strstr(err.msg, needle))
        fprintf(stderr, "\n  message: %s\n", err.msg);
}

static void test_npy_of_another_shape_is_refused_naming_the_file(void)
{
    const char *three = tu_tmp_path("sk_3d.npy");
    float x[24] = {0};
    int64_t shape3[3] = {2, 3, 4};
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(three, 3, shape3, x, NULL), 0);
    sksrc_opts o = opts_for(three, PIPE_FORMAT_NPY, 3, 4, 1);
    expect_refused(&o, CIN_E_SHAPE, "found [2, 3, 4]");
    const char *swapped = tu_tmp_path("sk_mmaction.npy");
    free(write_seq(swapped, 2, 120, 25, 3));    /* [persons, frames, joints, values] */
    o = opts_for(swapped, PIPE_FORMAT_NPY, 3, 25, 2);
    expect_refused(&o, CIN_E_SHAPE, "[frames, values, joints, persons] (values and persons "
                   "under 64), found [2, 120, 25, 3]");

    const char *path = tu_tmp_path("sk_shape.npy");
    free(write_seq(path, 2, 3, 5, 3));
    o = opts_for(path, PIPE_FORMAT_NPY, 3, 5, 2);
    expect_refused(&o, CIN_E_SHAPE, "at most 2 persons");
    o = opts_for(path, PIPE_FORMAT_NPY, 2, 5, 3);
    expect_refused(&o, CIN_E_SHAPE, "2 values");
    o = opts_for(path, PIPE_FORMAT_NPY, 3, 25, 3);
    expect_refused(&o, CIN_E_SHAPE, "25 joints");
}

static void test_files_of_another_skeleton_are_refused_naming_them(void)
{
    sksrc_opts o = opts_for("media/assimp-testmodels__cmu_01_01.bvh", PIPE_FORMAT_BVH, 3, 25,
                            2);
    expect_refused(&o, CIN_E_SHAPE, "31 joints");
    o = opts_for("media/ntu_sample.skeleton", PIPE_FORMAT_NTU, 2, 25, 2);
    expect_refused(&o, CIN_E_SHAPE, "3 values");
    size_t len;
    unsigned char *bvh = tu_read_file("media/assimp-testmodels__cmu_01_01.bvh", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bvh);
    const char *cut = tu_tmp_path("cut.bvh");
    CU_ASSERT_EQUAL(tu_write_file(cut, bvh, len / 2), 0);
    free(bvh);
    o = opts_for(cut, PIPE_FORMAT_BVH, 3, 31, 1);
    expect_refused(&o, CIN_E_FORMAT, "cut.bvh:");
}

static void test_live_rows_need_two_or_three_coordinates(void)
{
    sksrc_opts o = opts_for("-", PIPE_FORMAT_JSONL, 5, 25, 1);
    expect_refused(&o, CIN_E_SHAPE, "x, y[, z]");
}

/* Rows of frames 0 and 1 reach a UDP source, then nothing: both frames come (the one held back
 * before the error too), then the read fails naming the uri and read_timeout. */
static void test_silent_udp_rows_end_with_a_read_timeout(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sa_len = sizeof sa;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                    getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0);
    close(fd);      /* a free port for the source to bind */
    char uri[64];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", ntohs(sa.sin_port));
    sksrc_opts o = opts_for(uri, PIPE_FORMAT_CSV, 2, 1, 1);
    o.read_timeout = 0.5;
    sksrc *s = NULL;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(sksrc_open(&o, &s, &err), 0);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    static const char *const rows[] = {"0,0,0,0.5,0.25", "1,0,0,1.5,1.25"};
    for (int i = 0; i < 2; i++)
        CU_ASSERT(sendto(fd, rows[i], strlen(rows[i]), 0, (struct sockaddr *)&sa,
                         sizeof sa) == (ssize_t)strlen(rows[i]));
    float frame[2];
    int64_t index;
    double pts;
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(sksrc_read(s, frame, &index, &pts, &err), 1);
        CU_ASSERT(index == i && frame[0] == 0.5f + i && frame[1] == 0.25f + i);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL(sksrc_read(s, frame, &index, &pts, &err), CIN_E_IO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    char want[128];
    snprintf(want, sizeof want, "%s: timed out: no data for 0.5 s (read timeout)", uri);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
    CU_ASSERT(took <= 0.5 + 1.5);     /* the wait began before frame 1 was returned */
    sksrc_close(s);
    close(fd);
}

/* ---- pipelines ----------------------------------------------------------------------------- */

static int run_yaml(const char *path, pipe_stats *st, cin_err *err)
{
    pipe_config *c;
    int rc = pipe_config_load(path, &c, err);
    if (rc)
        return rc;
    rc = pipe_run(c, NULL, st, err);
    pipe_config_free(c);
    return rc;
}

/* The skeleton model the pipelines below run: CoST-GCN*, seed 4, 60 classes, 100-frame
 * clips, on graph g with `persons` persons. */
typedef struct sk_model {
    const char *graph;
    int joints, persons;
} sk_model;

static const sk_model NTU2 = {"ntu-rgb+d", 25, 2}, CMU1 = {"cmu31", 31, 1};

/* Steps that model by hand over frames [t][3][v][m] (m <= persons) and compares its logits
 * with the rows a pipeline wrote; returns the outputs matched, the worst error in *worst. */
static int compare_with_model(const sk_model *g, const float *x, int t, int m, const float *rows,
                              double *worst)
{
    enum { K = 60, C = 3 };
    int nv = g->joints, np = g->persons;
    cin_skeleton_opts so = {.variant = "st-gcn*", .graph = g->graph, .persons = np,
                            .clip_frames = 100};
    cin_model_opts o = {.arch = "stgcn", .seed = 4, .num_classes = K, .skeleton = &so};
    cin_model *model;
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_model_load(&o, &model, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(model, &s, NULL), 0);
    float *frame = malloc(sizeof(float) * C * np * nv), logits[K];
    int matched = 0;
    for (int i = 0; i < t; i++) {
        memset(frame, 0, sizeof(float) * C * np * nv);
        for (int c = 0; c < C; c++)
            for (int v = 0; v < nv; v++)
                for (int p = 0; p < m; p++)
                    frame[AT(c, p, v, np, nv)] = x[((size_t)(i * C + c) * nv + v) * m + p];
        int have = cin_stream_step(s, frame, logits) == 1;
        CU_ASSERT_EQUAL(have, !isnan(rows[(size_t)i * K]));
        if (have && !isnan(rows[(size_t)i * K])) {
            *worst = fmax(*worst, tu_rel_err(rows + (size_t)i * K, logits, K));
            matched++;
        }
    }
    free(frame);
    cin_stream_free(s);
    cin_model_free(model);
    return matched;
}

/* Runs a pipeline of that model over `uri` into an npy sink; returns its rows. */
static float *run_skeleton_pipeline(const sk_model *g, const char *uri, const char *pre,
                                    pipe_stats *st)
{
    char text[1024];
    snprintf(text, sizeof text,
             "source: {type: skeleton, uri: %s}\n"
             "preprocess: {%s}\n"
             "model: {arch: stgcn, seed: 4, num_classes: 60,\n"
             "        skeleton: {variant: \"st-gcn*\", graph: %s, persons: %d,\n"
             "                   clip_frames: 100}}\n"
             "postprocess: {softmax: false, topk: 1}\n"
             "sinks: [{type: npy, path: sk_out.npy}]\n", uri, pre, g->graph, g->persons);
    const char *yaml = tu_tmp_path("sk_run.yaml");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(yaml, text, strlen(text)), 0);
    cin_err err = {0};
    int rc = run_yaml(yaml, st, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    int ndim;
    int64_t shape[8];
    float *rows = NULL;
    CU_ASSERT_EQUAL(npy_read_f32(tu_tmp_path("sk_out.npy"), &ndim, shape, &rows, NULL), 0);
    CU_ASSERT(ndim == 2 && shape[0] == st->frames && shape[1] == 60);
    return rows;
}

static void test_npy_skeletons_through_cin_run_equal_the_model_stepped(void)
{
    enum { T = 120, M = 1, DELAY = 99 };
    float *x = write_seq(tu_tmp_path("sk_run.npy"), T, 3, 25, M);
    pipe_stats st;
    float *rows = run_skeleton_pipeline(&NTU2, tu_tmp_path("sk_run.npy"), "", &st);
    CU_ASSERT_EQUAL(st.frames, T);
    /* CoST-GCN*: 10 blocks of temporal kernel 9, 80 frames, then a head window of the
     * 100 - 80 = 20 positions of a clip: delay 80 + 19 */
    CU_ASSERT_EQUAL(st.delay, DELAY);
    CU_ASSERT_EQUAL(st.outputs, T - DELAY);
    double worst = 0.0;
    CU_ASSERT_EQUAL(compare_with_model(&NTU2, x, T, M, rows, &worst), T - DELAY);
    CU_ASSERT(worst == 0.0);
    free(rows);
    free(x);
}

static void test_ntu_file_through_cin_run_equals_the_model_stepped(void)
{
    enum { T = 120, DELAY = 99 };
    const char *uri = "media/ntu_wave.skeleton";
    char abs[600];
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(uri, abs));
    pipe_stats st;
    float *rows = run_skeleton_pipeline(&NTU2, abs, "", &st);
    CU_ASSERT_EQUAL(st.frames, T);
    CU_ASSERT_EQUAL(st.outputs, T - DELAY);
    skel_seq seq;
    CU_ASSERT_EQUAL_FATAL(ntu_read(uri, 2, &seq, NULL), 0);
    double worst = 0.0;
    CU_ASSERT_EQUAL(compare_with_model(&NTU2, seq.data, T, 2, rows, &worst), T - DELAY);
    CU_ASSERT(worst == 0.0);
    free(rows);
    skel_seq_free(&seq);
}

/* The real CMU capture, 2752 frames at 120 Hz resampled to 10 fps (230 frames), centred on
 * the hips: the rows equal the model stepped over bvh_read_ex's positions, centred by hand. */
static void test_real_bvh_capture_through_cin_run_equals_the_model_stepped(void)
{
    enum { T = 230, V = 31, DELAY = 99 };
    const char *uri = "media/assimp-testmodels__cmu_01_01.bvh";
    char abs[600];
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(uri, abs));
    pipe_stats st;
    float *rows = run_skeleton_pipeline(&CMU1, abs, "fps: 10, centre_joint: 0", &st);
    CU_ASSERT_EQUAL(st.frames, T);
    CU_ASSERT_EQUAL(st.outputs, T - DELAY);
    CU_ASSERT_EQUAL(st.masked, 0);
    skel_seq seq;
    CU_ASSERT_EQUAL_FATAL(bvh_read_ex(uri, 10.0, &seq, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(seq.t, T);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < 3; c++) {
            float *p = seq.data + (size_t)(t * 3 + c) * V;
            for (int v = V - 1; v >= 0; v--)
                p[v] -= p[0];
        }
    double worst = 0.0;
    CU_ASSERT_EQUAL(compare_with_model(&CMU1, seq.data, T, 1, rows, &worst), T - DELAY);
    CU_ASSERT(worst <= 1e-5);
    free(rows);
    skel_seq_free(&seq);
}

/* Joints named by preprocess must exist in the model's skeleton: one line naming the key. */
static void test_normalisation_joints_outside_the_skeleton_name_the_key(void)
{
    char abs[600], text[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath("media/ntu_sample.skeleton", abs));
    const char *pre[] = {"centre_joint: 25", "scale_bone: [0, 30]"};
    const char *want[] = {"preprocess.centre_joint: joint 25, but the model's skeleton has "
                          "25 joints (0..24)",
                          "preprocess.scale_bone: joint 30, but the model's skeleton has 25 "
                          "joints (0..24)"};
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof text, "source: {type: skeleton, uri: %s}\npreprocess: {%s}\n"
                 "model: {arch: stgcn}\n", abs, pre[i]);
        const char *yaml = tu_tmp_path("norm.yaml");
        CU_ASSERT_EQUAL_FATAL(tu_write_file(yaml, text, strlen(text)), 0);
        pipe_stats st;
        cin_err err = {0};
        CU_ASSERT_EQUAL(run_yaml(yaml, &st, &err), CIN_E_CONFIG);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want[i]));
        if (!strstr(err.msg, want[i]))
            fprintf(stderr, "\n  message: %s\n", err.msg);
    }
}

int test_sksrc_register(void)
{
    CU_pSuite s = CU_add_suite("sksrc", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "npy persons are laid out side by side and padded",
                         test_npy_persons_are_laid_out_side_by_side_and_padded) &&
             CU_add_test(s, "npy joints with non-finite values are masked and counted",
                         test_npy_joints_with_non_finite_values_are_masked_and_counted) &&
             CU_add_test(s, "npy of another shape is refused naming the file",
                         test_npy_of_another_shape_is_refused_naming_the_file) &&
             CU_add_test(s, "ntu file gives its bodies as persons",
                         test_ntu_file_gives_its_bodies_as_persons) &&
             CU_add_test(s, "files of another skeleton are refused naming them",
                         test_files_of_another_skeleton_are_refused_naming_them) &&
             CU_add_test(s, "live rows need two or three coordinates",
                         test_live_rows_need_two_or_three_coordinates) &&
             CU_add_test(s, "silent udp rows end with a read timeout",
                         test_silent_udp_rows_end_with_a_read_timeout) &&
             CU_add_test(s, "npy skeletons through cin-run equal the model stepped",
                         test_npy_skeletons_through_cin_run_equal_the_model_stepped) &&
             CU_add_test(s, "ntu file through cin-run equals the model stepped",
                         test_ntu_file_through_cin_run_equals_the_model_stepped) &&
             CU_add_test(s, "normalisation joints outside the skeleton name the key",
                         test_normalisation_joints_outside_the_skeleton_name_the_key) &&
             CU_add_test(s, "real bvh capture through cin-run equals the model stepped",
                         test_real_bvh_capture_through_cin_run_equals_the_model_stepped);
    return ok ? 0 : -1;
}
