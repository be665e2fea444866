/* cin-run end to end: pipelines from YAML to sinks, on npy frames and real video, and the one
 * clear error (naming the file and the field) that each kind of bad input must give. */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "npy.h"
#include "pipeline.h"
#include "seeded.h"
#include "util.h"
#include "video.h"

/* A pipeline file in the temporary directory; returns its path. */
static const char *write_yaml(const char *name, const char *text)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_EQUAL(tu_write_file(path, text, strlen(text)), 0);
    return path;
}

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

/* Frames [t][3][64][64] for x3d-xs at crop 64. */
static void write_frames(const char *path, int t, int size)
{
    size_t n = (size_t)t * 3 * size * size;
    float *x = malloc(sizeof(float) * n);
    cin_seeded_fill(x, n, 9, "frames", -1, 1);
    int64_t shape[4] = {t, 3, size, size};
    CU_ASSERT_EQUAL(npy_write_f32(path, 4, shape, x, NULL), 0);
    free(x);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c, last = '\n';
    while (f && (c = fgetc(f)) != EOF) {
        n += c == '\n';
        last = c;
    }
    if (f)
        fclose(f);
    return last == '\n' ? n : -1; /* -1: a truncated last line */
}

/* Lines of a JSON-lines file that parse; -1 when the file cannot be read. */
static int count_json_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int parsed = 0;
    while (f && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        parsed += j != NULL;
        json_decref(j);
    }
    if (f)
        fclose(f);
    return f ? parsed : -1;
}

static void test_npy_frames_give_one_row_per_frame_and_a_line_per_output(void)
{
    write_frames(tu_tmp_path("frames.npy"), 40, 64);
    const char *yaml = write_yaml("npy.yaml",
        "source: {type: npy, path: frames.npy}\n"
        "preprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs, seed: 1}\n"
        "postprocess: {softmax: true, topk: 3}\n"
        "sinks: [{type: jsonl, path: out.jsonl}, {type: npy, path: out.npy}]\n");
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(yaml, &st, &err), 0);
    /* x3d-xs: delay 2 (stem) + 26 blocks + 3 (pool window 4) = 31 */
    CU_ASSERT_EQUAL(st.frames, 40);
    CU_ASSERT_EQUAL(st.outputs, 40 - 31);
    CU_ASSERT_EQUAL(count_lines(tu_tmp_path("out.jsonl")), 9);
    int ndim;
    int64_t shape[8];
    float *rows;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("out.npy"), &ndim, shape, &rows, NULL), 0);
    CU_ASSERT(ndim == 2 && shape[0] == 40 && shape[1] == 400);
    CU_ASSERT(isnan(rows[30 * 400]) && !isnan(rows[31 * 400]) && !isnan(rows[39 * 400 + 399]));
    free(rows);
}

/* A backbone's features fed to a head in one pipeline equal the two models run one after the
 * other through the library. */
static void test_backbone_features_feed_a_transformer_head(void)
{
    enum { T = 40, CROP = 64 };
    write_frames(tu_tmp_path("chain.npy"), T, CROP);
    const char *yaml = write_yaml("chain.yaml",
        "source: {path: chain.npy}\n"
        "preprocess: {crop: 64, resize: 64}\n"
        "model:\n"
        "  arch: x3d\n"
        "  size: xs\n"
        "  head: {arch: transformer, num_classes: 7, seed: 5,\n"
        "         transformer: {input_dim: 2048, d_model: 32, nhead: 4, window: 4}}\n"
        "postprocess: {softmax: false, topk: 1}\n"
        "sinks: [{type: npy, path: chain_out.npy}]\n");
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(yaml, &st, &err), 0);
    CU_ASSERT_EQUAL(st.delay, 31 + 3);
    CU_ASSERT_EQUAL(st.outputs, T - 34);

    cin_transformer_opts to = {.input_dim = 2048, .d_model = 32, .nhead = 4,
                               .dim_feedforward = 128, .layers = 1, .window = 4};
    cin_model_opts xo = {.arch = "x3d", .size = "xs", .crop = CROP, .features = 1};
    cin_model_opts ho = {.arch = "transformer", .seed = 5, .num_classes = 7, .transformer = &to};
    cin_model *x, *h;
    cin_stream *xs, *hs;
    CU_ASSERT_EQUAL_FATAL(cin_model_load(&xo, &x, NULL) || cin_model_load(&ho, &h, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(x, &xs, NULL) || cin_stream_create(h, &hs, NULL), 0);
    int ndim;
    int64_t shape[8];
    float *frames, *rows, feat[2048], logits[7];
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("chain.npy"), &ndim, shape, &frames, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("chain_out.npy"), &ndim, shape, &rows, NULL),
                          0);
    double worst = 0.0;
    int matched = 0;
    for (int t = 0; t < T; t++) {
        int have = cin_stream_step(xs, frames + (size_t)t * 3 * CROP * CROP, feat) == 1 &&
                   cin_stream_step(hs, feat, logits) == 1;
        CU_ASSERT_EQUAL(have, !isnan(rows[t * 7]));
        if (have) {
            worst = fmax(worst, tu_rel_err(rows + t * 7, logits, 7));
            matched++;
        }
    }
    CU_ASSERT_EQUAL(matched, T - 34);
    CU_ASSERT(worst == 0.0);
    free(frames);
    free(rows);
    cin_stream_free(xs);
    cin_stream_free(hs);
    cin_model_free(x);
    cin_model_free(h);
}

/* Feature vectors as JSON lines: malformed lines are skipped and counted, NaN masked, and the
 * results equal the same vectors from an npy file. */
static void test_feature_lines_feed_a_transformer_like_an_npy_array(void)
{
    enum { T = 12, D = 8 };
    float x[T * D];
    cin_seeded_fill(x, T * D, 4, "features", -1, 1);
    int64_t shape[2] = {T, D};
    CU_ASSERT_EQUAL_FATAL(npy_write_f32(tu_tmp_path("feats.npy"), 2, shape, x, NULL), 0);
    FILE *f = fopen(tu_tmp_path("feats.jsonl"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int t = 0; t < T; t++) {
        fprintf(f, "{\"frame\": %d, \"features\": [", t);
        for (int i = 0; i < D; i++)
            fprintf(f, "%s%.9g", i ? ", " : "", x[t * D + i]);
        fprintf(f, "]}\n%s", t == 5 ? "{\"features\": [1, 2]}\n" : "");
    }
    fclose(f);
    const char *model =
        "model: {arch: transformer, seed: 2, num_classes: 4,\n"
        "        transformer: {input_dim: 8, d_model: 16, nhead: 2, window: 4}}\n"
        "postprocess: {softmax: false, topk: 1}\n";
    char text[1024];
    snprintf(text, sizeof text, "source: {type: features, uri: feats.jsonl}\n%s"
             "sinks: [{type: npy, path: from_lines.npy}]\n", model);
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(write_yaml("lines.yaml", text), &st, &err), 0);
    CU_ASSERT_EQUAL(st.frames, T);
    CU_ASSERT_EQUAL(st.outputs, T - 3);
    CU_ASSERT_EQUAL(st.skipped, 1);
    snprintf(text, sizeof text, "source: {path: feats.npy}\n%s"
             "sinks: [{type: npy, path: from_npy.npy}]\n", model);
    CU_ASSERT_EQUAL_FATAL(run_yaml(write_yaml("arr.yaml", text), &st, &err), 0);
    int nd;
    int64_t sh[8];
    float *a, *b;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("from_lines.npy"), &nd, sh, &a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("from_npy.npy"), &nd, sh, &b, NULL), 0);
    CU_ASSERT(tu_rel_err(a + 3 * 4, b + 3 * 4, (T - 3) * 4) <= 1e-6);
    free(a);
    free(b);
}

static void test_clip_mode_outputs_once_a_clip_has_arrived(void)
{
    write_frames(tu_tmp_path("frames6.npy"), 6, 64);
    const char *yaml = write_yaml("clip.yaml",
        "source: {path: frames6.npy}\n"
        "preprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs, mode: clip}\n"
        "sinks: [{type: jsonl, path: clip.jsonl}]\n");
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(yaml, &st, &err), 0);
    CU_ASSERT_EQUAL(st.outputs, 6 - 4 + 1);
    CU_ASSERT_EQUAL(count_lines(tu_tmp_path("clip.jsonl")), 3);
}

static void test_real_video_runs_through_the_model(void)
{
    const char *yaml = write_yaml("video.yaml",
        "source: {uri: MEDIA/imageio__realshort.mp4}\n"
        "preprocess: {resize: 72, crop: 64}\n"
        "model: {arch: x3d, size: xs, pool_window: 2}\n"
        "sinks: [{type: jsonl, path: video.jsonl}]\n");
    char fixed[1024], cwd[512];
    FILE *f = fopen(yaml, "r");
    size_t n = fread(fixed, 1, sizeof fixed - 1, f);
    fclose(f);
    fixed[n] = '\0';
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    char text[2048], *at = strstr(fixed, "MEDIA");
    snprintf(text, sizeof text, "%.*s%s/media%s", (int)(at - fixed), fixed, cwd, at + 5);
    yaml = write_yaml("video.yaml", text);
    pipe_stats st;
    cin_err err = {0};
    int rc = run_yaml(yaml, &st, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* 36 frames; delay 2 + 26 + 1 = 29 */
    CU_ASSERT_EQUAL(st.frames, 36);
    CU_ASSERT_EQUAL(st.outputs, 36 - 29);
    CU_ASSERT_EQUAL(count_lines(tu_tmp_path("video.jsonl")), 7);
}

/* Running the pipeline fails with `code` and a message holding `a` and `b`. */
static void expect_error(const char *name, const char *text, int code, const char *a,
                         const char *b)
{
    const char *yaml = write_yaml(name, text);
    pipe_stats st;
    cin_err err = {0};
    int rc = run_yaml(yaml, &st, &err);
    int ok = rc == code && strstr(err.msg, a) && (!b || strstr(err.msg, b)) &&
             !strchr(err.msg, '\n');
    if (!ok)
        fprintf(stderr, "\n  %s: got %d '%s'\n", name, rc, err.msg);
    CU_ASSERT(ok);
}

static void test_bad_inputs_give_one_clear_error(void)
{
    write_frames(tu_tmp_path("small.npy"), 5, 32);
    expect_error("shape.yaml",
                 "source: {path: small.npy}\npreprocess: {crop: 64, resize: 64}\n"
                 "model: {arch: x3d, size: xs}\n",
                 CIN_E_SHAPE, "shape.yaml: source.path: ",
                 "small.npy: array of shape [5, 3, 32, 32], expected [frames, 3, 64, 64]");
    expect_error("noweights.yaml",
                 "source: {path: small.npy}\nmodel: {arch: x3d, size: xs, weights: none.st}\n",
                 CIN_E_IO, "none.st", NULL);
    CU_ASSERT_EQUAL(tu_write_file(tu_tmp_path("junk.mp4"), "this is not a video", 19), 0);
    expect_error("junk.yaml", "source: {uri: junk.mp4}\nmodel: {arch: x3d, size: xs}\n",
                 CIN_E_DECODE, "junk.yaml: source.uri: ", "junk.mp4");
    expect_error("missing.yaml", "source: {uri: gone.mp4}\nmodel: {arch: x3d, size: xs}\n",
                 CIN_E_IO, "gone.mp4", NULL);
    expect_error("key.yaml", "source: {uri: a.mp4}\nmodel: {arch: x3d, size: xs, colour: 1}\n",
                 CIN_E_CONFIG, "key.yaml", "model.colour");
    expect_error("sinkdir.yaml",
                 "source: {path: small.npy}\npreprocess: {crop: 32, resize: 32}\n"
                 "model: {arch: x3d, size: xs}\nsinks: [{type: jsonl, path: no/dir/x.jsonl}]\n",
                 CIN_E_IO, "sinks[0].path: cannot write",
                 "No such file or directory");
}

static void test_failed_run_leaves_earlier_results_intact(void)
{
    write_frames(tu_tmp_path("keep.npy"), 3, 64);
    const char *keep = tu_tmp_path("keep.jsonl");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(keep, "precious\n", 9), 0);
    expect_error("later.yaml",
                 "source: {path: keep.npy}\npreprocess: {crop: 64, resize: 64}\n"
                 "model: {arch: x3d, size: xs}\n"
                 "sinks: [{type: jsonl, path: keep.jsonl}, {type: npy, path: no/dir/x.npy}]\n",
                 CIN_E_IO, "sinks[1].path", "no/dir/x.npy");
    size_t len;
    unsigned char *text = tu_read_file(keep, &len);
    CU_ASSERT(text && len == 9 && memcmp(text, "precious\n", 9) == 0);
    free(text);
}

/* A sink path that is a symbolic link (or a FIFO, a device) is written through, not
 * replaced by a regular file. */
static void test_sink_through_a_symbolic_link_keeps_the_link(void)
{
    write_frames(tu_tmp_path("link_in.npy"), 33, 64);
    const char *target = tu_tmp_path("target.jsonl"), *link = tu_tmp_path("link.jsonl");
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);
    const char *yaml = write_yaml("link.yaml",
        "source: {path: link_in.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\nsinks: [{type: jsonl, path: link.jsonl}]\n");
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(yaml, &st, &err), 0);
    struct stat ls;
    CU_ASSERT(lstat(link, &ls) == 0 && S_ISLNK(ls.st_mode));
    CU_ASSERT_EQUAL(count_lines(target), 2);
}

static void test_a_source_without_one_valid_record_is_an_error(void)
{
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tu_tmp_path("csv_as.jsonl"), "1,2,3,4\n1,2,3,4\n", 16),
                          0);
    expect_error("nothing.yaml",
                 "source: {type: features, uri: csv_as.jsonl}\n"
                 "model: {arch: transformer, num_classes: 3,\n"
                 "        transformer: {input_dim: 4, d_model: 8, nhead: 2, window: 2}}\n",
                 CIN_E_FORMAT, "csv_as.jsonl", "no valid record, 2 malformed lines");
}

static void test_sinks_that_overwrite_inputs_or_each_other_are_refused(void)
{
    write_frames(tu_tmp_path("in.npy"), 3, 64);
    expect_error("same.yaml",
                 "source: {path: in.npy}\nmodel: {arch: x3d, size: xs}\n"
                 "sinks: [{type: jsonl, path: a.out}, {type: npy, path: a.out}]\n",
                 CIN_E_CONFIG, "sinks[1].path", "also sinks[0]");
    expect_error("self.yaml",
                 "source: {path: in.npy}\nmodel: {arch: x3d, size: xs}\n"
                 "sinks: [{type: npy, path: in.npy}]\n",
                 CIN_E_CONFIG, "sinks[0].path", "source");
    expect_error("yaml.yaml",
                 "source: {path: in.npy}\nmodel: {arch: x3d, size: xs}\n"
                 "sinks: [{type: jsonl, path: yaml.yaml}]\n",
                 CIN_E_CONFIG, "sinks[0].path", "pipeline file");
}

/* SIGINT during a run: cin-run stops after the frame in hand, exits 0, and leaves complete
 * sink files: every JSON line parses, the npy holds one row per frame it reports. */
static void test_sigint_leaves_complete_sinks_and_exits_zero(void)
{
    char cwd[512], text[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    snprintf(text, sizeof text,
             "source: {uri: %s/media/mecavideo__balle-jbart.mp4}\n"
             "model: {arch: x3d, size: s}\n"
             "sinks: [{type: jsonl, path: sig.jsonl}, {type: npy, path: sig.npy}]\n", cwd);
    const char *yaml = write_yaml("sig.yaml", text), *bin = getenv("CIN_RUN");
    pid_t pid = tu_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(bin ? bin : "../build/cin-run", "cin-run", yaml, (char *)NULL);
        _exit(127);
    }
    /* stop it once it has written a result (the clip takes seconds more to finish) */
    char part[600];
    snprintf(part, sizeof part, "%s.part-%ld", tu_tmp_path("sig.jsonl"), (long)pid);
    struct stat ps;
    for (int i = 0; i < 1200 && !(stat(part, &ps) == 0 && ps.st_size > 0); i++)
        usleep(50 * 1000);
    kill(pid, SIGINT);
    int status = tu_reap(pid, 60);
    CU_ASSERT_FATAL(status != -1);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int lines = count_lines(tu_tmp_path("sig.jsonl")), ndim;
    CU_ASSERT(lines > 0);
    CU_ASSERT_EQUAL(count_json_lines(tu_tmp_path("sig.jsonl")), lines);
    int64_t shape[8];
    float *rows;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("sig.npy"), &ndim, shape, &rows, NULL), 0);
    CU_ASSERT(ndim == 2 && shape[0] >= lines + 40 && shape[0] <= 255);
    free(rows);
}

/* A second signal, while the frames already queued are still being stepped, leaves them: the
 * run ends with exit status 0 and complete sinks that replace the earlier results, and the
 * summary counts more frames read than stepped. (`timeout -s INT` signals twice.) */
static void test_second_sigint_leaves_the_queue_and_closes_sinks_complete(void)
{
    char cwd[512], text[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    snprintf(text, sizeof text,
             "source: {uri: %s/media/mecavideo__balle-jbart.mp4, queue: 64}\n"
             "model: {arch: x3d, size: l}\n"
             "sinks: [{type: jsonl, path: sig2.jsonl}, {type: npy, path: sig2.npy}]\n", cwd);
    const char *yaml = write_yaml("sig2.yaml", text), *bin = getenv("CIN_RUN");
    const char *old = tu_tmp_path("sig2.jsonl"), *stats = tu_tmp_path("sig2.json");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(old, "{\"earlier\": 1}\n", 15), 0);
    pid_t pid = tu_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(bin ? bin : "../build/cin-run", "cin-run", "--stats-json", stats, yaml,
              (char *)NULL);
        _exit(127);
    }
    char part[600];
    snprintf(part, sizeof part, "%s.part-%ld", old, (long)pid);
    struct stat ps;
    for (int i = 0; i < 1200 && !(stat(part, &ps) == 0 && ps.st_size > 0); i++)
        usleep(50 * 1000);
    kill(pid, SIGINT);      /* the reader stops; up to 64 queued frames of X3D-L remain */
    usleep(200 * 1000);
    kill(pid, SIGINT);
    int status = tu_reap(pid, 60);
    CU_ASSERT_FATAL(status != -1);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(stat(part, &ps) != 0);

    int lines = count_lines(old);
    CU_ASSERT(lines > 0);
    CU_ASSERT_EQUAL(count_json_lines(old), lines); /* the run's lines, not the earlier one */
    size_t len;
    char *body = (char *)tu_read_file(stats, &len);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    json_t *stream = json_array_get(json_object_get(j, "streams"), 0);
    json_int_t in = json_integer_value(json_object_get(stream, "frames_in"));
    json_int_t stepped = json_integer_value(json_object_get(stream, "frames"));
    CU_ASSERT(json_is_true(json_object_get(j, "stopped")));
    CU_ASSERT(stepped > 0 && in > stepped);
    int ndim;
    int64_t shape[8];
    float *rows;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("sig2.npy"), &ndim, shape, &rows, NULL), 0);
    CU_ASSERT(ndim == 2 && shape[0] == stepped);
    free(rows);
    json_decref(j);
}

/* A live source with nothing to read (a pipe whose writer stays quiet) gives up its wait on
 * SIGTERM: cin-run stops cleanly, with exit status 0, instead of waiting for input. */
static void test_sigterm_stops_a_source_waiting_for_input(void)
{
    const char *yaml = write_yaml("idle.yaml",
        "source: {type: skeleton, uri: \"-\", format: jsonl}\n"
        "model: {arch: stgcn, skeleton: {variant: \"st-gcn*\", persons: 1, clip_frames: 100}}\n"
        "sinks: [{type: npy, path: idle.npy}]\n");
    const char *bin = getenv("CIN_RUN");
    int quiet[2];
    CU_ASSERT_EQUAL_FATAL(pipe(quiet), 0);
    pid_t pid = tu_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        dup2(quiet[0], STDIN_FILENO);
        close(quiet[1]);
        freopen("/dev/null", "w", stderr);
        execl(bin ? bin : "../build/cin-run", "cin-run", "--quiet", yaml, (char *)NULL);
        _exit(127);
    }
    close(quiet[0]);
    usleep(500 * 1000);             /* let it open the model and wait on its stdin */
    kill(pid, SIGTERM);
    int status = tu_reap(pid, 5);
    close(quiet[1]);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* --stats-json writes the summary's figures; --status 0.001 --quiet prints no status line. */
static void test_stats_json_holds_the_summary(void)
{
    write_frames(tu_tmp_path("stats.npy"), 35, 64);
    const char *yaml = write_yaml("stats.yaml",
        "source: {path: stats.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\nsinks: [{type: npy, path: stats_out.npy}]\n");
    const char *bin = getenv("CIN_RUN"), *json = tu_tmp_path("stats.json");
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "%s --quiet --status 0.001 --stats-json %s %s 2>&1",
             bin ? bin : "../build/cin-run", json, yaml);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int status_lines = 0;
    while (fgets(line, sizeof line, p))
        status_lines += strstr(line, " s: ") != NULL;
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_EQUAL(status_lines, 0);
    json_t *j = json_load_file(json, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "frames")), 35);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "outputs")), 35 - 31);
    CU_ASSERT(json_is_true(json_object_get(j, "ok")));
    CU_ASSERT(json_real_value(json_object_get(json_object_get(j, "latency_ms"), "p99")) > 0);
    json_decref(j);
}

/* cin-run's stderr (stdout dropped) for args, and its exit status in *status. */
static char *run_stderr(const char *args, int *status)
{
    const char *bin = getenv("CIN_RUN"), *log = tu_tmp_path("stderr.log");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", bin ? bin : "../build/cin-run", args,
             log);
    int st = system(cmd);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    size_t len;
    return (char *)tu_read_file(log, &len);
}

/* The summary has a line for the stream's own figures; the note that seeded weights mean
 * nothing is a warning, so --log-level error silences it; a bad level is refused. */
static void test_log_level_and_the_summary_lines(void)
{
    write_frames(tu_tmp_path("level.npy"), 33, 64);
    const char *yaml = write_yaml("level.yaml",
        "source: {path: level.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\nsinks: [{type: npy, path: level_out.npy}]\n");
    char args[700];
    int status;
    snprintf(args, sizeof args, "--quiet %s", yaml);
    char *out = run_stderr(args, &status);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT(out && strstr(out, "note: model weights drawn from seed"));
    CU_ASSERT(out && strstr(out, "cin-run: 33 frames, 2 outputs"));
    CU_ASSERT(out && strstr(out, "cin-run: stream 0: in ") && strstr(out, "end to end p99"));
    free(out);
    snprintf(args, sizeof args, "--quiet --log-level error %s", yaml);
    out = run_stderr(args, &status);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT(out && !strstr(out, "note:") && strstr(out, "cin-run: 33 frames"));
    free(out);
    snprintf(args, sizeof args, "--log-level loud %s", yaml);
    out = run_stderr(args, &status);
    CU_ASSERT_EQUAL(status, 2);
    CU_ASSERT(out && strstr(out, "bad argument: --log-level loud (expected error, warn"));
    free(out);
}

/* A CSV sink gets one row per output, the same classes as the JSON-lines sink beside it. */
static void test_csv_and_jsonl_sinks_carry_the_same_results(void)
{
    write_frames(tu_tmp_path("csv.npy"), 36, 64);
    const char *yaml = write_yaml("csv.yaml",
        "source: {path: csv.npy, id: lab-2}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\npostprocess: {topk: 2}\n"
        "sinks: [{type: jsonl, path: csv.jsonl, flush: 10}, {type: csv, path: out.csv}]\n");
    pipe_stats st;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(run_yaml(yaml, &st, &err), 0);
    CU_ASSERT_EQUAL(st.outputs, 36 - 31);
    size_t jlen, clen;
    char *jtext = (char *)tu_read_file(tu_tmp_path("csv.jsonl"), &jlen);
    char *ctext = (char *)tu_read_file(tu_tmp_path("out.csv"), &clen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(jtext);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctext);
    char *csave, *jsave;
    char *row = strtok_r(ctext, "\n", &csave);
    CU_ASSERT(row && !strcmp(row, "source,frame,pts,wall,latency_ms,index_1,score_1,index_2,"
                                  "score_2"));
    int rows = 0, same = 0;
    for (char *line = strtok_r(jtext, "\n", &jsave); line; line = strtok_r(NULL, "\n", &jsave)) {
        row = strtok_r(NULL, "\n", &csave);
        json_t *j = json_loads(line, 0, NULL);
        json_t *top = json_array_get(json_object_get(j, "topk"), 0);
        long long frame, index;
        rows += row != NULL;
        char source[16];
        if (row && sscanf(row, "%15[^,],%lld,%*[^,],%*[^,],%*[^,],%lld,", source, &frame,
                          &index) == 3)
            same += !strcmp(source, "lab-2") &&
                    !strcmp(source, json_string_value(json_object_get(j, "source"))) &&
                    frame == json_integer_value(json_object_get(j, "frame")) &&
                    index == json_integer_value(json_object_get(top, "index"));
        json_decref(j);
    }
    CU_ASSERT_EQUAL(rows, 5);
    CU_ASSERT_EQUAL(same, 5);
    CU_ASSERT_PTR_NULL(strtok_r(NULL, "\n", &csave));
    free(jtext);
    free(ctext);
}

/* A reader that closes cin-run's stdout (`| head -n 1`) fails the stdout sink with EPIPE:
 * exit status 1 rather than death by SIGPIPE, and the npy sink is complete for the frames
 * read, with no .part file left. */
static void test_closed_stdout_fails_the_sink_and_keeps_the_others(void)
{
    write_frames(tu_tmp_path("epipe.npy"), 80, 64);
    const char *yaml = write_yaml("epipe.yaml",
        "source: {path: epipe.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\n"
        "sinks: [{type: jsonl, path: \"-\"}, {type: npy, path: epipe_out.npy}]\n");
    const char *bin = getenv("CIN_RUN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash -c '\"%s\" --quiet %s 2>/dev/null | head -n 1 >/dev/null; "
             "exit ${PIPESTATUS[0]}'", bin ? bin : "../build/cin-run", yaml);
    int status = system(cmd);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    int ndim;
    int64_t shape[8];
    float *rows;
    CU_ASSERT_EQUAL_FATAL(npy_read_f32(tu_tmp_path("epipe_out.npy"), &ndim, shape, &rows, NULL),
                          0);
    /* the first output is at frame 31; the sink fails on a later line */
    CU_ASSERT(ndim == 2 && shape[0] >= 32 && shape[0] <= 80);
    free(rows);
    char pattern[600];
    snprintf(pattern, sizeof pattern, "ls %s.part-* >/dev/null 2>&1", tu_tmp_path("epipe_out.npy"));
    CU_ASSERT_NOT_EQUAL(system(pattern), 0);
}

/* cin-run --quiet yaml with its files limited to kib KiB, as a disk that fills; its exit
 * status, and its stderr (malloc'd, never NULL on return) in *msg. */
static int run_with_file_limit(const char *yaml, int kib, const char *log, char **msg)
{
    const char *bin = getenv("CIN_RUN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash -c 'ulimit -f %d; exec \"%s\" --quiet %s 2>%s'", kib,
             bin ? bin : "../build/cin-run", yaml, log);
    int status = system(cmd);
    size_t len;
    *msg = (char *)tu_read_file(log, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(*msg);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A sink that fills its disk (a 40 KiB file-size limit, the same EFBIG/ENOSPC path) fails the
 * run naming the sink, and keeps the results it wrote whole; the other sink is complete. */
static void test_a_full_disk_keeps_the_results_written_whole(void)
{
    write_frames(tu_tmp_path("full.npy"), 220, 64);
    const char *yaml = write_yaml("full.yaml",
        "source: {type: npy, path: full.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\n"
        "sinks: [{type: jsonl, path: full.jsonl, flush: 0}, {type: csv, path: full.csv}]\n");
    char *msg;
    CU_ASSERT_EQUAL(run_with_file_limit(yaml, 40, tu_tmp_path("full.log"), &msg), 1);
    int named = strstr(msg, "sinks[0] (") && strstr(msg, "full.jsonl): ") &&
                strstr(msg, "File too large");
    if (!named)
        fprintf(stderr, "\n  cin-run said: %s\n", msg);
    CU_ASSERT(named);
    /* the run halts at the failure; the summary says how many results were handed out */
    const char *at = strstr(msg, " frames, ");
    int outputs = -1;
    CU_ASSERT(at && sscanf(at, " frames, %d outputs", &outputs) == 1);
    free(msg);

    /* 189 outputs of some 280 bytes would need 52 KB: the limit cuts the file short */
    int lines = count_lines(tu_tmp_path("full.jsonl"));
    CU_ASSERT(lines >= 100 && lines < outputs);
    CU_ASSERT_EQUAL(count_json_lines(tu_tmp_path("full.jsonl")), lines);
    CU_ASSERT_EQUAL(count_lines(tu_tmp_path("full.csv")), 1 + outputs);
    char pattern[600];
    snprintf(pattern, sizeof pattern, "ls %s.part-* >/dev/null 2>&1", tu_tmp_path("full.jsonl"));
    CU_ASSERT_NOT_EQUAL(system(pattern), 0);
}

/* Both text sinks hold their results until the end (flush 5 s) and both overflow a 10 KiB
 * limit as they close: the error names both, and each keeps the lines that fit whole. */
static void test_every_sink_that_fails_is_named_and_keeps_its_whole_lines(void)
{
    write_frames(tu_tmp_path("full2.npy"), 140, 64);
    const char *yaml = write_yaml("full2.yaml",
        "source: {type: npy, path: full2.npy}\npreprocess: {crop: 64, resize: 64}\n"
        "model: {arch: x3d, size: xs}\n"
        "sinks: [{type: jsonl, path: f2.jsonl, flush: 5}, {type: csv, path: f2.csv, "
        "flush: 5}]\n");
    char *msg;
    CU_ASSERT_EQUAL(run_with_file_limit(yaml, 10, tu_tmp_path("full2.log"), &msg), 1);
    int named = strstr(msg, "sinks[0] (") && strstr(msg, "; also ") &&
                strstr(msg, "sinks[1] (");
    if (!named)
        fprintf(stderr, "\n  cin-run said: %s\n", msg);
    CU_ASSERT(named);
    free(msg);
    /* 109 results of about 280 (JSON) and 110 (CSV) bytes: 10 KiB holds some 36 and 90 */
    int lines = count_lines(tu_tmp_path("f2.jsonl")), rows = count_lines(tu_tmp_path("f2.csv"));
    CU_ASSERT(lines > 20 && lines < 109);
    CU_ASSERT_EQUAL(count_json_lines(tu_tmp_path("f2.jsonl")), lines);
    CU_ASSERT(rows > 50 && rows < 110);
}

/* An unwritable --stats-json path is refused before the run, not after it. */
static void test_unwritable_stats_json_is_refused_up_front(void)
{
    const char *yaml = write_yaml("early.yaml", "source: {path: none.npy}\n"
                                                "model: {arch: x3d, size: xs}\n");
    const char *bin = getenv("CIN_RUN");
    char cmd[1024], line[1024];
    snprintf(cmd, sizeof cmd, "%s --stats-json %s/no/dir/s.json %s 2>&1",
             bin ? bin : "../build/cin-run", tu_tmp_path("."), yaml);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int lines = 0, named = 0;
    while (fgets(line, sizeof line, p)) {
        lines++;
        named |= strstr(line, "--stats-json") && strstr(line, "No such file or directory");
    }
    int status = pclose(p);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CU_ASSERT_EQUAL(lines, 1);
    CU_ASSERT(named); /* and not the missing none.npy: the run did not start */
}

/* cin-run itself: exit status 1 and one line on stderr naming the file and the field. */
static void test_cin_run_exits_non_zero_with_one_line(void)
{
    const char *yaml =
        write_yaml("cli.yaml", "source: {uri: a.mp4}\nmodel: {arch: x3d, size: q}\n");
    char cmd[1024], line[1024];
    const char *bin = getenv("CIN_RUN"); /* set by `make test` to this build's binary */
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin ? bin : "../build/cin-run", yaml);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int lines = 0, named = 0;
    while (fgets(line, sizeof line, p)) {
        lines++;
        named |= strstr(line, "cli.yaml") && strstr(line, "model.size");
    }
    int status = pclose(p);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CU_ASSERT_EQUAL(lines, 1);
    CU_ASSERT(named);
}

int test_pipeline_register(void)
{
    CU_pSuite s = CU_add_suite("pipeline", NULL, NULL);
    if (!s)
        return -1;
    video_set_log_level(CIN_LOG_ERROR - 1); /* the tests check cin's own messages */
    int ok = CU_add_test(s, "npy frames give one row per frame and a line per output",
                         test_npy_frames_give_one_row_per_frame_and_a_line_per_output) &&
             CU_add_test(s, "backbone features feed a transformer head",
                         test_backbone_features_feed_a_transformer_head) &&
             CU_add_test(s, "feature lines feed a transformer like an npy array",
                         test_feature_lines_feed_a_transformer_like_an_npy_array) &&
             CU_add_test(s, "clip mode outputs once a clip has arrived",
                         test_clip_mode_outputs_once_a_clip_has_arrived) &&
             CU_add_test(s, "real video runs through the model",
                         test_real_video_runs_through_the_model) &&
             CU_add_test(s, "bad inputs give one clear error",
                         test_bad_inputs_give_one_clear_error) &&
             CU_add_test(s, "failed run leaves earlier results intact",
                         test_failed_run_leaves_earlier_results_intact) &&
             CU_add_test(s, "sink through a symbolic link keeps the link",
                         test_sink_through_a_symbolic_link_keeps_the_link) &&
             CU_add_test(s, "a source without one valid record is an error",
                         test_a_source_without_one_valid_record_is_an_error) &&
             CU_add_test(s, "sinks that overwrite inputs or each other are refused",
                         test_sinks_that_overwrite_inputs_or_each_other_are_refused) &&
             CU_add_test(s, "SIGINT leaves complete sinks and exits zero",
                         test_sigint_leaves_complete_sinks_and_exits_zero) &&
             CU_add_test(s, "a second SIGINT leaves the queue and closes sinks complete",
                         test_second_sigint_leaves_the_queue_and_closes_sinks_complete) &&
             CU_add_test(s, "SIGTERM stops a source waiting for input",
                         test_sigterm_stops_a_source_waiting_for_input) &&
             CU_add_test(s, "stats json holds the summary", test_stats_json_holds_the_summary) &&
             CU_add_test(s, "log level and the summary lines",
                         test_log_level_and_the_summary_lines) &&
             CU_add_test(s, "csv and jsonl sinks carry the same results",
                         test_csv_and_jsonl_sinks_carry_the_same_results) &&
             CU_add_test(s, "unwritable stats json is refused up front",
                         test_unwritable_stats_json_is_refused_up_front) &&
             CU_add_test(s, "closed stdout fails the sink and keeps the others",
                         test_closed_stdout_fails_the_sink_and_keeps_the_others) &&
             CU_add_test(s, "a full disk keeps the results written whole",
                         test_a_full_disk_keeps_the_results_written_whole) &&
             CU_add_test(s, "every sink that fails is named and keeps its whole lines",
                         test_every_sink_that_fails_is_named_and_keeps_its_whole_lines) &&
             CU_add_test(s, "cin-run exits non-zero with one line",
                         test_cin_run_exits_non_zero_with_one_line);
    return ok ? 0 : -1;
}
