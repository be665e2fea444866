/* Suite "config": pipeline YAML to pipe_config, its defaults, and one-line errors that name the
 * file, the line:column and the dotted field. */
#include <CUnit/CUnit.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

static const char example_yaml[] =
    "source: {uri: clips/walk.avi}\n"
    "preprocess: {fps: 6, resize: 182, crop: 160, mean: [0.45, 0.45, 0.45],"
    " std: [0.225, 0.225, 0.225]}\n"
    "model: {arch: x3d, size: s, weights: x3d_s.safetensors, mode: continual,"
    " pool_window: 13}\n"
    "postprocess: {softmax: true, topk: 5, labels: kinetics400.txt}\n"
    "sinks: [{type: jsonl, path: results.jsonl}, {type: npy, path: logits.npy}]\n";

static const char minimal_yaml[] =
    "source:\n"
    "  uri: walk.avi\n"
    "model:\n"
    "  arch: x3d\n"
    "  size: xs\n";

/* Writes text to a fresh temporary pipe.yaml and loads it; the path is in *path. */
static int load_text(const char *text, const char **path, pipe_config **cfg, cin_err *err)
{
    *path = tu_tmp_path("pipe.yaml");
    CU_ASSERT_FATAL(tu_write_file(*path, text, strlen(text)) == 0);
    cin_err_clear(err);
    return pipe_config_load(*path, cfg, err);
}

/* "<dir of yaml>/<rel>" */
static const char *beside(const char *yaml_path, const char *rel)
{
    static char buf[512];
    const char *slash = strrchr(yaml_path, '/');
    snprintf(buf, sizeof buf, "%.*s%s", (int)(slash - yaml_path + 1), yaml_path, rel);
    return buf;
}

/* Loading text fails with code, and the message names the file and contains each fragment. */
static void expect_error(const char *text, int code, const char *field, const char *fragment)
{
    const char *path;
    pipe_config *cfg = (pipe_config *)1;
    cin_err err;
    int rc = load_text(text, &path, &cfg, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    CU_ASSERT_PTR_NULL(strchr(err.msg, '\n'));
    if (field)
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, field));
    if (fragment)
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, fragment));
    if ((field && !strstr(err.msg, field)) || (fragment && !strstr(err.msg, fragment)))
        fprintf(stderr, "\n  unexpected message: %s\n", err.msg);
    pipe_config_free(rc == 0 ? cfg : NULL);
}

static void test_example_parses_to_expected_struct(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text(example_yaml, &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->path, path);
    CU_ASSERT_EQUAL(c->sources[0].type, PIPE_SOURCE_VIDEO);
    CU_ASSERT_STRING_EQUAL(c->sources[0].uri, beside(path, "clips/walk.avi"));
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.fps, 6.0, 1e-12);
    CU_ASSERT_EQUAL(c->preprocess.resize, 182);
    CU_ASSERT_EQUAL(c->preprocess.crop, 160);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_DOUBLE_EQUAL(c->preprocess.mean[i], 0.45, 1e-7);
        CU_ASSERT_DOUBLE_EQUAL(c->preprocess.std[i], 0.225, 1e-7);
    }
    CU_ASSERT_STRING_EQUAL(c->model.arch, "x3d");
    CU_ASSERT_STRING_EQUAL(c->model.size, "s");
    CU_ASSERT_STRING_EQUAL(c->model.weights, beside(path, "x3d_s.safetensors"));
    CU_ASSERT_EQUAL(c->model.seed, 0);
    CU_ASSERT_EQUAL(c->model.mode, PIPE_MODE_CONTINUAL);
    CU_ASSERT_EQUAL(c->model.pool_window, 13);
    CU_ASSERT_EQUAL(c->model.se_window, 1);
    CU_ASSERT_EQUAL(c->model.num_classes, 0); /* from the checkpoint, else 400 */
    CU_ASSERT_EQUAL(c->postprocess.softmax, 1);
    CU_ASSERT_EQUAL(c->postprocess.topk, 5);
    CU_ASSERT_STRING_EQUAL(c->postprocess.labels, beside(path, "kinetics400.txt"));
    CU_ASSERT_EQUAL_FATAL(c->n_sinks, 2);
    CU_ASSERT_EQUAL(c->sinks[0].type, PIPE_SINK_JSONL);
    CU_ASSERT_STRING_EQUAL(c->sinks[0].path, beside(path, "results.jsonl"));
    CU_ASSERT_EQUAL(c->sinks[1].type, PIPE_SINK_NPY);
    CU_ASSERT_STRING_EQUAL(c->sinks[1].path, beside(path, "logits.npy"));
    pipe_config_free(c);
}

static void test_absent_keys_take_defaults(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text(minimal_yaml, &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->sources[0].type, PIPE_SOURCE_VIDEO);
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.fps, 0.0, 0.0);
    CU_ASSERT_EQUAL(c->preprocess.resize, 0); /* crop * 8 / 7 */
    CU_ASSERT_EQUAL(c->preprocess.crop, 0);   /* the model's size's */
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.mean[2], 0.45, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.std[0], 0.225, 1e-7);
    CU_ASSERT_STRING_EQUAL(c->model.size, "xs");
    CU_ASSERT_PTR_NULL(c->model.weights);
    CU_ASSERT_EQUAL(c->model.seed, 0);
    CU_ASSERT_EQUAL(c->model.mode, PIPE_MODE_CONTINUAL);
    CU_ASSERT_EQUAL(c->model.pool_window, 0);
    CU_ASSERT_EQUAL(c->model.se_window, 1);
    CU_ASSERT_EQUAL(c->model.num_classes, 0); /* from the checkpoint, else 400 */
    CU_ASSERT_EQUAL(c->postprocess.softmax, 1);
    CU_ASSERT_EQUAL(c->postprocess.topk, 5);
    CU_ASSERT_PTR_NULL(c->postprocess.labels);
    CU_ASSERT_EQUAL_FATAL(c->n_sinks, 1);
    CU_ASSERT_EQUAL(c->sinks[0].type, PIPE_SINK_JSONL);
    CU_ASSERT_STRING_EQUAL(c->sinks[0].path, "-");
    CU_ASSERT_DOUBLE_EQUAL(c->sinks[0].flush, PIPE_DEFAULT_FLUSH, 0.0);
    CU_ASSERT_STRING_EQUAL(c->sources[0].id, "0");
    pipe_config_free(c);
}

static void test_null_values_mean_absent(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    const char *text = "source: {uri: a.avi}\npreprocess:\nmodel: {arch: x3d, size: m,"
                       " weights: ~, seed: null}\npostprocess: {}\nsinks:\n";
    CU_ASSERT_FATAL(load_text(text, &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->preprocess.resize, 0);
    CU_ASSERT_PTR_NULL(c->model.weights);
    CU_ASSERT_EQUAL(c->n_sinks, 1);
    pipe_config_free(c);
}

static void test_every_setting_is_read(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    const char *text =
        "source: {type: npy, path: /data/frames.npy}\n"
        "preprocess: {fps: 2.5, resize: 256, crop: 224, mean: [0, -1e-1, .5], std: [1, 2, 3]}\n"
        "model: {arch: x3d, size: l, seed: 18446744073709551615, mode: clip, pool_window: 4,\n"
        "        se_window: 3, num_classes: 3}\n"
        "postprocess: {softmax: False, topk: 3}\n"
        "sinks:\n"
        "  - {type: jsonl, path: '-', flush: 0}\n"
        "  - {type: npy, path: out/logits.npy}\n"
        "  - {type: csv, path: out/top.csv, flush: 2.5}\n";
    CU_ASSERT_FATAL(load_text(text, &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->sources[0].type, PIPE_SOURCE_NPY);
    CU_ASSERT_STRING_EQUAL(c->sources[0].uri, "/data/frames.npy");
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.fps, 2.5, 1e-12);
    CU_ASSERT_EQUAL(c->preprocess.crop, 224);
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.mean[1], -0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.mean[2], 0.5, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(c->preprocess.std[2], 3.0, 1e-7);
    CU_ASSERT_EQUAL(c->model.seed, UINT64_MAX);
    CU_ASSERT_EQUAL(c->model.mode, PIPE_MODE_CLIP);
    CU_ASSERT_EQUAL(c->model.se_window, 3);
    CU_ASSERT_EQUAL(c->postprocess.softmax, 0);
    CU_ASSERT_EQUAL(c->postprocess.topk, 3);
    CU_ASSERT_STRING_EQUAL(c->sinks[0].path, "-");
    CU_ASSERT_DOUBLE_EQUAL(c->sinks[0].flush, 0.0, 0.0);
    CU_ASSERT_STRING_EQUAL(c->sinks[1].path, beside(path, "out/logits.npy"));
    CU_ASSERT_EQUAL(c->sinks[2].type, PIPE_SINK_CSV);
    CU_ASSERT_DOUBLE_EQUAL(c->sinks[2].flush, 2.5, 0.0);
    pipe_config_free(c);
}

static void test_npy_source_is_inferred_from_path(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    const char *text = "source: {path: frames.npy}\nmodel: {arch: x3d, size: s}\n";
    CU_ASSERT_FATAL(load_text(text, &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->sources[0].type, PIPE_SOURCE_NPY);
    CU_ASSERT_STRING_EQUAL(c->sources[0].uri, beside(path, "frames.npy"));
    pipe_config_free(c);
}

static void test_uri_with_scheme_is_not_resolved(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    const char *text = "source: {uri: 'rtsp://cam.local:554/live'}\n"
                       "model: {arch: x3d, size: s, weights: /abs/w.safetensors}\n";
    CU_ASSERT_FATAL(load_text(text, &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->sources[0].uri, "rtsp://cam.local:554/live");
    CU_ASSERT_STRING_EQUAL(c->model.weights, "/abs/w.safetensors");
    pipe_config_free(c);
}

static void test_default_topk_fits_few_classes(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    const char *text = "source: {uri: a.avi}\nmodel: {arch: x3d, size: s, num_classes: 2}\n";
    CU_ASSERT_FATAL(load_text(text, &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->postprocess.topk, 2);
    pipe_config_free(c);
}

static void test_bad_choice_names_position_and_choices(void)
{
    expect_error("source: {uri: a.avi}\npreprocess: {fps: 6}\nmodel: {arch: x3d, size: q}\n",
                 CIN_E_CONFIG, ":3:26: model.size: expected one of xs, s, m, l, got 'q'", NULL);
}

static void test_missing_arch_is_reported(void)
{
    expect_error("source: {uri: a.avi}\nmodel: {size: s}\n", CIN_E_CONFIG,
                 "pipe.yaml: model.arch: missing (required)", NULL);
}

static void test_missing_section_is_reported(void)
{
    expect_error("source: {uri: a.avi}\n", CIN_E_CONFIG, "pipe.yaml: model: missing", NULL);
    expect_error("model: {arch: x3d, size: s}\n", CIN_E_CONFIG, "source:", "missing");
    expect_error("source: {}\nmodel: {arch: x3d, size: s}\n", CIN_E_CONFIG,
                 "source.uri: missing", NULL);
    expect_error("source: {uri: a}\nmodel: {arch: x3d}\n", CIN_E_CONFIG,
                 "model.size: missing (required for arch x3d)", NULL);
}

static void test_non_numeric_fps_is_reported(void)
{
    expect_error("source: {uri: a.avi}\npreprocess: {fps: fast}\n", CIN_E_CONFIG,
                 ":2:19: preprocess.fps: expected a non-negative number, got 'fast'", NULL);
}

static void test_unknown_key_lists_known_keys(void)
{
    expect_error("source: {uri: a.avi}\nmodel:\n  arch: x3d\n  colour: red\n", CIN_E_CONFIG,
                 ":4:3: model.colour: unknown key (known: arch, size, weights, seed, mode,",
                 NULL);
    expect_error("source: {uri: a.avi}\nmodle: {}\n", CIN_E_CONFIG,
                 ":2:1: modle: unknown key (known: source, sources, workers, preprocess", NULL);
    expect_error("source: {uri: a}\nmodel: {arch: x3d, size: s}\nsinks: [{type: npy, p: x}]\n",
                 CIN_E_CONFIG, "sinks[0].p: unknown key", NULL);
}

static void test_duplicate_key_is_reported(void)
{
    expect_error("source: {uri: a.avi}\nmodel: {arch: x3d, size: s, size: m}\n", CIN_E_CONFIG,
                 ":2:29: model.size: duplicate key (first at 2:20)", NULL);
}

static void test_top_level_must_be_a_mapping(void)
{
    expect_error("- source\n- model\n", CIN_E_CONFIG, ":1:1: ", "expected a mapping");
    expect_error("just text\n", CIN_E_CONFIG, NULL, "got 'just text'");
}

static void test_empty_file_is_reported(void)
{
    expect_error("", CIN_E_CONFIG, NULL, "empty file");
    expect_error("# only a comment\n\n", CIN_E_CONFIG, NULL, "empty file");
}

static void test_yaml_syntax_error_has_position(void)
{
    expect_error("source: {uri: a.avi\nmodel: [x3d\n", CIN_E_CONFIG, "invalid YAML", NULL);
    expect_error("source:\n  uri: a\n bad: 1\n", CIN_E_CONFIG, ":3:", "invalid YAML");
    expect_error("source: *nowhere\n", CIN_E_CONFIG, "invalid YAML", NULL);
}

static void test_second_document_is_rejected(void)
{
    expect_error("source: {uri: a}\nmodel: {arch: x3d, size: s}\n---\nsource: {}\n",
                 CIN_E_CONFIG, ":4:1: ", "found a second");
}

static void test_unreadable_file_is_io_error(void)
{
    pipe_config *c = (pipe_config *)1;
    cin_err err;
    int rc = pipe_config_load("no/such/pipe.yaml", &c, &err);
    CU_ASSERT_EQUAL(rc, CIN_E_IO);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no/such/pipe.yaml"));
}

/* One row per rule: YAML after the common prefix, and what the message must hold. */
static const struct {
    const char *tail;
    const char *field;
    const char *fragment;
} bad_values[] = {
    {"preprocess: {fps: -1}", "preprocess.fps", "got '-1'"},
    {"preprocess: {fps: .inf}", "preprocess.fps", "got '.inf'"},
    {"preprocess: {resize: 0}", "preprocess.resize", "expected an integer in 1..16384"},
    {"preprocess: {resize: 16385}", "preprocess.resize", "got '16385'"},
    {"preprocess: {crop: 12.5}", "preprocess.crop", "got '12.5'"},
    {"preprocess: {crop: 200, resize: 182}", "preprocess.crop",
     "at most preprocess.resize (182)"},
    {"preprocess: {crop: 16}", "preprocess.crop", "expected an integer in 32..4096"},
    {"preprocess: {mean: [0.4, 0.4]}", "preprocess.mean", "3 numbers, got 2"},
    {"preprocess: {mean: 0.4}", "preprocess.mean", "got '0.4'"},
    {"preprocess: {std: [1, 0, 1]}", "preprocess.std[1]", "positive number, got '0'"},
    {"preprocess: {std: [1, 1, 1e-60]}", "preprocess.std[2]", "float range"},
    {"preprocess: [1]", "preprocess", "expected a mapping, got a list"},
    {"preprocess: {scale_bone: [3, 3]}", "preprocess.scale_bone",
     "2 different joint indices, got [3, 3]"},
    {"preprocess: {scale_bone: [3]}", "preprocess.scale_bone", "2 different joint indices"},
    {"preprocess: {centre_joint: x}", "preprocess.centre_joint", "got 'x'"},
    {"postprocess: {softmax: yes}", "postprocess.softmax", "true or false, got 'yes'"},
    {"postprocess: {topk: 100001}", "postprocess.topk", "in 1..100000, got '100001'"},
    {"postprocess: {topk: 0}", "postprocess.topk", "got '0'"},
    {"postprocess: {labels: ''}", "postprocess.labels", "expected a path"},
    {"sinks: []", "sinks", "1 to 8 sinks, got 0"},
    {"sinks: {type: jsonl}", "sinks", "a list of sinks"},
    {"sinks: [{type: npy, path: '-'}]", "sinks[0].path", "npy cannot go to stdout"},
    {"sinks: [{type: jsonl, path: a}, {type: tsv, path: b}]", "sinks[1].type", "got 'tsv'"},
    {"sinks: [{type: npy, path: a, flush: 1}]", "sinks[0].flush", "only for jsonl and csv"},
    {"sinks: [{type: npy, path: a, replace: 1}]", "sinks[0].replace", "true or false"},
    {"sinks: [{type: csv, path: a, flush: -1}]", "sinks[0].flush", "non-negative"},
    {"sinks: [{type: jsonl, path: a, flush: 7200}]", "sinks[0].flush", "at most 3600"},
    {"sinks: [{path: a}]", "sinks[0].type", "missing"},
    {"sinks: [{type: jsonl}]", "sinks[0].path", "missing"},
    {"sinks: [a, b, c, d, e, f, g, h, i]", "sinks", "got 9"},
    {"sinks: [jsonl]", "sinks[0]", "a mapping with type and path, got 'jsonl'"},
};

static void test_bad_values_name_field_and_expectation(void)
{
    char text[512];
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        snprintf(text, sizeof text, "source: {uri: a}\nmodel: {arch: x3d, size: s}\n%s\n",
                 bad_values[i].tail);
        expect_error(text, CIN_E_CONFIG, bad_values[i].field, bad_values[i].fragment);
    }
}

static const struct {
    const char *model;
    const char *field;
    const char *fragment;
} bad_models[] = {
    {"{arch: resnet, size: s}", "model.arch", "one of x3d, transformer, stgcn, got 'resnet'"},
    {"{arch: transformer, pool_window: 7, transformer: {input_dim: 4, d_model: 8, nhead: 2, "
     "window: 4}}", "model.pool_window", "only for arch x3d"},
    {"{arch: transformer, transformer: {input_dim: 4, d_model: 9, nhead: 2, window: 4}}",
     "model.transformer.nhead", "a divisor of d_model (9)"},
    {"{arch: x3d, size: s, head: {arch: transformer, mode: clip, transformer: {input_dim: 4, "
     "d_model: 8, nhead: 2, window: 4}}}", "model.head.mode", "a head steps with the model"},
    {"{arch: transformer}", "model.transformer", "missing"},
    {"{arch: x3d, size: s, transformer: {d_model: 8}}", "model.transformer",
     "only for arch transformer"},
    {"{arch: transformer, transformer: {input_dim: 4, d_model: 8, nhead: 2}}",
     "model.transformer.window", "missing"},
    {"{arch: transformer, transformer: {input_dim: 4, d_model: 8, nhead: 2, window: 4, "
     "layers: 3}}", "model.transformer.layers", "1..2"},
    {"{arch: transformer, transformer: {input_dim: 4, d_model: 8, nhead: 2, window: 4, "
     "pos: rotary}}", "model.transformer.pos", "got 'rotary'"},
    {"{arch: [x3d], size: s}", "model.arch", "got a list"},
    {"{arch: x3d, size: s, seed: -1}", "model.seed", "non-negative integer"},
    {"{arch: x3d, size: s, seed: 18446744073709551616}", "model.seed", "below 2^64"},
    {"{arch: x3d, size: s, mode: batch}", "model.mode", "one of continual, clip"},
    {"{arch: x3d, size: s, pool_window: 0}", "model.pool_window", "1..1024, got '0'"},
    {"{arch: x3d, size: s, se_window: two}", "model.se_window", "got 'two'"},
    {"{arch: x3d, size: s, num_classes: 99999999999}", "model.num_classes", "1..100000"},
    {"{arch: x3d, size: s, se_window: 1025}", "model.se_window", "1..1024"},
    {"{arch: x3d, size: s, weights: \"a\\0b\"}", "model.weights", "NUL character"},
    {"{arch: x3d, size: \"s\\nq\"}", "model.size", "got 's?q'"},
    {"{arch: stgcn, skeleton: {variant: agcn2}}", "model.skeleton.variant",
     "one of st-gcn, st-gcn*, agcn, agcn*, got 'agcn2'"},
};

/* An AGCN variant without a layout leaves the layout to the model (continual-skeletons'). */
static void test_skeleton_variant_agcn_leaves_the_layout_unset(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text("source: {type: skeleton, uri: a.npy}\nmodel: {arch: stgcn, "
                              "skeleton: {variant: \"agcn*\"}}\n", &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->model.skeleton.variant, "agcn*");
    CU_ASSERT_PTR_NULL(c->model.skeleton.layout);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text("source: {type: skeleton, uri: a.npy}\nmodel: {arch: stgcn, "
                              "skeleton: {variant: agcn, layout: continual-skeletons}}\n",
                              &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->model.skeleton.layout, "continual-skeletons");
    pipe_config_free(c);
}

static void test_bad_model_settings_name_field(void)
{
    char text[512];
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        snprintf(text, sizeof text, "source: {uri: a}\nmodel: %s\n", bad_models[i].model);
        expect_error(text, CIN_E_CONFIG, bad_models[i].field, bad_models[i].fragment);
    }
}

static void test_source_keys_must_match_type(void)
{
    expect_error("source: {type: video, path: a.npy}\nmodel: {arch: x3d, size: s}\n",
                 CIN_E_CONFIG, "source.path", "only for type npy");
    expect_error("source: {type: npy, uri: a.avi}\nmodel: {arch: x3d, size: s}\n",
                 CIN_E_CONFIG, "source.uri", "only for types video, features and skeleton");
    expect_error("source: {type: video, uri: a.avi, format: csv}\nmodel: {arch: x3d, size: s}\n",
                 CIN_E_CONFIG, "source.format", "only for types features and skeleton");
    expect_error("source: {type: features, uri: -, format: xml}\nmodel: {arch: x3d, size: s}\n",
                 CIN_E_CONFIG, "source.format", "one of jsonl, csv");
    expect_error("source: {type: npy}\nmodel: {arch: x3d, size: s}\n", CIN_E_CONFIG,
                 "source.path: missing", NULL);
    expect_error("source: {type: file, uri: a}\nmodel: {arch: x3d, size: s}\n", CIN_E_CONFIG,
                 "source.type", "one of video, npy, features");
}

/* Network uris and devices get timeouts and reconnection by default; files get neither. */
static void test_live_sources_take_timeouts_and_reconnect_by_default(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text("source: {uri: 'rtsp://cam/1'}\nmodel: {arch: x3d, size: xs}\n",
                              &path, &c, &err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].open_timeout, PIPE_DEFAULT_OPEN_TIMEOUT, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].read_timeout, PIPE_DEFAULT_READ_TIMEOUT, 0.0);
    CU_ASSERT_PTR_NULL(c->sources[0].rtsp_transport);
    CU_ASSERT(c->sources[0].reconnect.on && c->sources[0].reconnect.attempts == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].reconnect.initial, PIPE_DEFAULT_RECONNECT_INITIAL, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].reconnect.max, PIPE_DEFAULT_RECONNECT_MAX, 0.0);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text(minimal_yaml, &path, &c, &err) == 0);
    CU_ASSERT(c->sources[0].open_timeout == 0 && c->sources[0].read_timeout == 0);
    CU_ASSERT(!c->sources[0].reconnect.on);
    pipe_config_free(c);
}

/* File sinks replace their files whole at the end when every source ends by itself, and are
 * written in place, to be followed, when one is live; `replace` says otherwise. */
static void test_sinks_replace_their_files_unless_a_source_is_live(void)
{
    static const struct {
        const char *source, *sink;
        int replace;
    } cases[] = {
        {"source: {uri: clip.mp4}", "{type: jsonl, path: r.jsonl}", 1},
        {"source: {uri: 'rtsp://cam/1'}", "{type: jsonl, path: r.jsonl}", 0},
        {"sources: [{uri: clip.mp4}, {uri: /dev/video0}]", "{type: csv, path: r.csv}", 0},
        {"source: {type: skeleton, uri: '-', format: jsonl}", "{type: npy, path: r.npy}", 0},
        {"source: {type: skeleton, uri: rows.jsonl, format: jsonl}",
         "{type: npy, path: r.npy}", 1},
        {"source: {uri: 'rtsp://cam/1'}", "{type: jsonl, path: r.jsonl, replace: true}", 1},
        {"source: {uri: clip.mp4}", "{type: jsonl, path: r.jsonl, replace: false}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        const char *path;
        pipe_config *c;
        cin_err err;
        snprintf(text, sizeof text, "%s\nmodel: {arch: %s}\nsinks: [%s]\n", cases[i].source,
                 strstr(cases[i].source, "skeleton") ? "stgcn" : "x3d, size: xs", cases[i].sink);
        int rc = load_text(text, &path, &c, &err);
        if (rc)
            fprintf(stderr, "\n  case %zu: %s\n", i, err.msg);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(c->sinks[0].replace, cases[i].replace);
        pipe_config_free(c);
    }
}

static void test_every_live_setting_is_read(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text("source: {uri: /dev/video2, open_timeout: 3, read_timeout: 0.5,\n"
                              "  size: [640, 480], rate: 15, pixel_format: mjpeg,\n"
                              "  reconnect: {initial: 0.1, max: 2, attempts: 7}}\n"
                              "model: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].open_timeout, 3, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].read_timeout, 0.5, 0.0);
    CU_ASSERT(c->sources[0].width == 640 && c->sources[0].height == 480);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].rate, 15, 0.0);
    CU_ASSERT_STRING_EQUAL(c->sources[0].pixel_format, "mjpeg");
    CU_ASSERT(c->sources[0].reconnect.on && c->sources[0].reconnect.attempts == 7);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].reconnect.initial, 0.1, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].reconnect.max, 2, 0.0);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text("source: {uri: 'rtsp://cam/1', rtsp_transport: udp, reconnect: "
                              "false}\nmodel: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->sources[0].rtsp_transport, "udp");
    CU_ASSERT(!c->sources[0].reconnect.on);
    pipe_config_free(c);
}

/* Rows from a socket connect within the live default and wait for rows without limit, unless
 * told; rows from a file take no timeout at all. */
static void test_row_sockets_take_timeouts_and_row_files_do_not(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text("source: {type: features, uri: 'tcp://127.0.0.1:5000', "
                              "read_timeout: 2}\nmodel: {arch: x3d, size: xs}\n",
                              &path, &c, &err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].open_timeout, PIPE_DEFAULT_OPEN_TIMEOUT, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].read_timeout, 2, 0.0);
    CU_ASSERT(!c->sources[0].reconnect.on);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text("source: {type: skeleton, uri: 'unix:/tmp/t.sock', open_timeout: "
                              "3}\nmodel: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].open_timeout, 3, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].read_timeout, PIPE_DEFAULT_ROWS_READ_TIMEOUT, 0.0);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text("source: {type: features, uri: 'udp://0.0.0.0:5000'}\n"
                              "model: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(c->sources[0].read_timeout, PIPE_DEFAULT_ROWS_READ_TIMEOUT, 0.0);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text("source: {type: features, uri: feats.jsonl}\n"
                              "model: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT(c->sources[0].open_timeout == 0 && c->sources[0].read_timeout == 0);
    pipe_config_free(c);
    expect_error("source: {type: features, uri: feats.jsonl, read_timeout: 2}\n"
                 "model: {arch: x3d, size: xs}\n", CIN_E_CONFIG, "source.read_timeout",
                 "features or skeleton sources on a socket (tcp://, udp://, unix:) (the source is "
                 "'");
    expect_error("source: {type: skeleton, uri: rows.csv, open_timeout: 2}\n"
                 "model: {arch: x3d, size: xs}\n", CIN_E_CONFIG, "source.open_timeout",
                 "only for video sources and features or skeleton sources on a socket");
}

static void test_live_keys_are_refused_where_they_do_not_apply(void)
{
    static const struct {
        const char *source, *field, *fragment;
    } bad[] = {
        {"{uri: a.mp4, rtsp_transport: tcp}", "source.rtsp_transport", "with an rtsp:// uri"},
        {"{uri: 'rtsp://c/1', rtsp_transport: http}", "source.rtsp_transport", "one of tcp, udp"},
        {"{uri: 'rtsp://c/1', size: [640, 480]}", "source.size", "V4L2 device (/dev/video*)"},
        {"{uri: a.mp4, pixel_format: yuyv422}", "source.pixel_format", "V4L2 device"},
        {"{uri: /dev/video0, size: [640]}", "source.size", "a list [width, height]"},
        {"{uri: /dev/video0, size: [0, 480]}", "source.size", "integers in 1..16384"},
        {"{uri: /dev/video0, rate: -3}", "source.rate", "a non-negative number"},
        {"{uri: a.mp4, reconnect: true}", "source.reconnect", "a file ends at its end"},
        {"{type: npy, path: a.npy, read_timeout: 1}", "source.read_timeout", "only for video"},
        {"{uri: 'udp://h:1', read_timeout: -1}", "source.read_timeout", "non-negative number"},
        {"{uri: 'udp://h:1', reconnect: {initial: 0}}", "source.reconnect.initial", "positive"},
        {"{uri: 'udp://h:1', reconnect: {initial: 4, max: 2}}", "source.reconnect.max",
         "at least initial (4), got 2"},
        {"{uri: 'udp://h:1', reconnect: {tries: 2}}", "source.reconnect.tries", "unknown key"},
        {"{uri: 'udp://h:1', reconnect: sometimes}", "source.reconnect", "true or false"},
    };
    char text[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "source: %s\nmodel: {arch: x3d, size: xs}\n", bad[i].source);
        expect_error(text, CIN_E_CONFIG, bad[i].field, bad[i].fragment);
    }
}

/* Loads text; a success must be a complete config, a failure must carry a message. */
static void load_survives(const char *text, size_t len)
{
    const char *path = tu_tmp_path("fuzz.yaml");
    pipe_config *c = NULL;
    cin_err err;
    CU_ASSERT_FATAL(tu_write_file(path, text, len) == 0);
    cin_err_clear(&err);
    int rc = pipe_config_load(path, &c, &err);
    if (rc == 0) {
        CU_ASSERT_PTR_NOT_NULL(c);
        CU_ASSERT(c && c->sources[0].uri && c->model.arch && c->n_sinks >= 1);
    } else {
        CU_ASSERT_PTR_NULL(c);
        CU_ASSERT(rc == CIN_E_CONFIG && err.msg[0] != '\0');
    }
    pipe_config_free(c);
}

static void test_truncation_at_every_byte_never_crashes(void)
{
    size_t len = strlen(example_yaml);
    for (size_t n = 0; n <= len; n++)
        load_survives(example_yaml, n);
}

/* xorshift64: the fuzz is the same on every run. */
static uint64_t fuzz_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_random_mutations_never_crash(void)
{
    static const char specials[] = "{}[]:,-'\"&*!|>#%@`\n\t \\\x00\xff\xc3";
    char buf[sizeof example_yaml + 8];
    uint64_t seed = 0x5eed2024c0ffeeULL;
    for (int iter = 0; iter < 1000; iter++) {
        size_t len = strlen(example_yaml);
        memcpy(buf, example_yaml, len);
        int edits = 1 + (int)(fuzz_next(&seed) % 4);
        for (int e = 0; e < edits; e++) {
            uint64_t r = fuzz_next(&seed);
            size_t at = (size_t)(r % len);
            char byte = (r >> 32) & 1 ? (char)(r >> 40)
                                      : specials[(r >> 40) % (sizeof specials - 1)];
            buf[at] = byte;
        }
        load_survives(buf, len);
    }
}

/* source.id names the source in every result; it must be a non-empty string. */
static void test_source_id_is_read_and_must_not_be_empty(void)
{
    const char *path;
    pipe_config *c;
    cin_err err = {0};
    CU_ASSERT_FATAL(load_text("source: {uri: a.mp4, id: door-cam}\nmodel: {arch: x3d, size: s}\n",
                              &path, &c, &err) == 0);
    CU_ASSERT_STRING_EQUAL(c->sources[0].id, "door-cam");
    pipe_config_free(c);
    CU_ASSERT_EQUAL(load_text("source: {uri: a.mp4, id: ''}\nmodel: {arch: x3d, size: s}\n",
                              &path, &c, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "source.id: expected a non-empty string"));
    char text[256];
    snprintf(text, sizeof text, "source: {uri: a.mp4, id: %064d}\nmodel: {arch: x3d}\n", 7);
    expect_error(text, CIN_E_CONFIG, "source.id", "expected at most 63 bytes, got 64");
    expect_error("source: {uri: a.mp4, id: \"cam\\n2\"}\nmodel: {arch: x3d}\n", CIN_E_CONFIG,
                 "source.id", "expected no control characters");
}

/* Every pipeline shipped in pipelines/examples/ and bench/ loads (tests run in tests/). */
static void test_shipped_pipelines_load(void)
{
    glob_t g;
    CU_ASSERT_EQUAL_FATAL(glob("../pipelines/examples/*.yaml", 0, NULL, &g), 0);
    CU_ASSERT_EQUAL_FATAL(glob("../bench/*.yaml", GLOB_APPEND, NULL, &g), 0);
    CU_ASSERT(g.gl_pathc >= 12);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        pipe_config *c;
        cin_err err = {0};
        int rc = pipe_config_load(g.gl_pathv[i], &c, &err);
        if (rc)
            fprintf(stderr, "\n  %s\n", err.msg);
        CU_ASSERT_EQUAL(rc, 0);
        if (!rc)
            pipe_config_free(c);
    }
    globfree(&g);
}

/* sources: a list; ids default to the position, overload to keep-newest for live sources
 * and block for files, and every key reads as it does under source. */
static void test_sources_list_is_read_with_per_source_defaults(void)
{
    const char *path;
    pipe_config *c;
    cin_err err;
    CU_ASSERT_FATAL(load_text("sources:\n"
                              "  - {uri: 'rtsp://cam/1'}\n"
                              "  - {uri: walk.avi, id: door, queue: 2, realtime: true}\n"
                              "  - {uri: 'rtsp://cam/3', overload: block, queue: 100}\n"
                              "workers: 3\n"
                              "model: {arch: x3d, size: xs}\n", &path, &c, &err) == 0);
    CU_ASSERT_EQUAL(c->n_sources, 3);
    CU_ASSERT_EQUAL(c->workers, 3);
    CU_ASSERT_STRING_EQUAL(c->sources[0].id, "0");
    CU_ASSERT_STRING_EQUAL(c->sources[1].id, "door");
    CU_ASSERT_STRING_EQUAL(c->sources[2].id, "2");
    CU_ASSERT_EQUAL(c->sources[0].overload, PIPE_OVERLOAD_KEEP_NEWEST);
    CU_ASSERT_EQUAL(c->sources[0].queue, PIPE_DEFAULT_QUEUE);
    CU_ASSERT(c->sources[0].reconnect.on && !c->sources[1].reconnect.on);
    /* a file read in real time stands in for a camera, so it keeps the newest frames too */
    CU_ASSERT(c->sources[1].realtime && c->sources[1].queue == 2);
    CU_ASSERT_EQUAL(c->sources[1].overload, PIPE_OVERLOAD_KEEP_NEWEST);
    CU_ASSERT_STRING_EQUAL(c->sources[1].uri, beside(path, "walk.avi"));
    CU_ASSERT(c->sources[2].overload == PIPE_OVERLOAD_BLOCK && c->sources[2].queue == 100);
    pipe_config_free(c);
    CU_ASSERT_FATAL(load_text(minimal_yaml, &path, &c, &err) == 0);
    CU_ASSERT(c->n_sources == 1 && c->workers == 0);
    CU_ASSERT_EQUAL(c->sources[0].overload, PIPE_OVERLOAD_BLOCK);
    CU_ASSERT(!c->sources[0].realtime);
    pipe_config_free(c);
}

static void test_bad_sources_are_refused_naming_the_item(void)
{
    const char *model = "model: {arch: x3d, size: xs}\n";
    char text[512];
    struct {
        const char *sources, *field, *fragment;
    } cases[] = {
        {"sources: [{uri: a.mp4}, {uri: b.mp4, id: '0'}]", "sources[1].id",
         "'0' is also sources[0].id"},
        {"sources: [{uri: a.mp4}, {path: b.npy, overload: drop}]", "sources[1].overload",
         "keep-newest, block"},
        {"sources: [{uri: a.mp4}, {uri: b.mp4, queue: 0}]", "sources[1].queue", "1..1024"},
        {"sources: [{uri: a.mp4}, {uri: 'rtsp://c/1', realtime: true}]", "sources[1].realtime",
         "read from a file"},
        {"sources: [{uri: a.mp4}, {uri: b.mp4, reconnect: true}]", "sources[1].reconnect",
         "only for live video sources"},
        {"sources: [{uri: a.mp4}, {id: x}]", "sources[1].uri", "missing"},
        {"sources: [{uri: a.mp4}, {uri: b.mp4, frmat: csv}]", "sources[1].frmat",
         "unknown key"},
        {"sources: [{uri: a.mp4}, [b.mp4]]", "sources[1]", "a mapping"},
        {"sources: []", "sources", "expected 1 to 64 sources, got 0"},
        {"sources: {uri: a.mp4}", "sources", "a list of sources"},
        {"source: {uri: a.mp4}\nsources: [{uri: b.mp4}]", "sources", "given with source"},
        {"sources: [{uri: a.mp4}]\nworkers: 0", "workers", "1..64"},
        {"sources: [{uri: a.mp4}, {uri: b.mp4}]\nsinks: [{type: npy, path: o.npy}]",
         "sinks[0]", "an npy sink holds the rows of one source; with 2 sources"},
        {"sources: [{uri: a.mp4}, {uri: b.mp4, labels: l.txt}]\n"
         "sinks: [{type: jsonl, path: o.jsonl}, {type: csv, path: o.csv}]",
         "sources[1].labels", "sources[0] has none; sinks[1] (csv) needs labels"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "%s\n%s", cases[i].sources, model);
        expect_error(text, CIN_E_CONFIG, cases[i].field, cases[i].fragment);
    }
    expect_error(model, CIN_E_CONFIG, "source", "missing");
}

int test_config_register(void)
{
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"example_parses_to_expected_struct", test_example_parses_to_expected_struct},
        {"shipped_pipelines_load", test_shipped_pipelines_load},
        {"sources_list_is_read_with_per_source_defaults",
         test_sources_list_is_read_with_per_source_defaults},
        {"bad_sources_are_refused_naming_the_item", test_bad_sources_are_refused_naming_the_item},
        {"source_id_is_read_and_must_not_be_empty", test_source_id_is_read_and_must_not_be_empty},
        {"absent_keys_take_defaults", test_absent_keys_take_defaults},
        {"null_values_mean_absent", test_null_values_mean_absent},
        {"every_setting_is_read", test_every_setting_is_read},
        {"npy_source_is_inferred_from_path", test_npy_source_is_inferred_from_path},
        {"uri_with_scheme_is_not_resolved", test_uri_with_scheme_is_not_resolved},
        {"default_topk_fits_few_classes", test_default_topk_fits_few_classes},
        {"bad_choice_names_position_and_choices", test_bad_choice_names_position_and_choices},
        {"missing_arch_is_reported", test_missing_arch_is_reported},
        {"missing_section_is_reported", test_missing_section_is_reported},
        {"non_numeric_fps_is_reported", test_non_numeric_fps_is_reported},
        {"unknown_key_lists_known_keys", test_unknown_key_lists_known_keys},
        {"duplicate_key_is_reported", test_duplicate_key_is_reported},
        {"top_level_must_be_a_mapping", test_top_level_must_be_a_mapping},
        {"empty_file_is_reported", test_empty_file_is_reported},
        {"yaml_syntax_error_has_position", test_yaml_syntax_error_has_position},
        {"second_document_is_rejected", test_second_document_is_rejected},
        {"unreadable_file_is_io_error", test_unreadable_file_is_io_error},
        {"bad_values_name_field_and_expectation", test_bad_values_name_field_and_expectation},
        {"bad_model_settings_name_field", test_bad_model_settings_name_field},
        {"live_sources_take_timeouts_and_reconnect_by_default",
         test_live_sources_take_timeouts_and_reconnect_by_default},
        {"row_sockets_take_timeouts_and_row_files_do_not",
         test_row_sockets_take_timeouts_and_row_files_do_not},
        {"every_live_setting_is_read", test_every_live_setting_is_read},
        {"sinks_replace_their_files_unless_a_source_is_live",
         test_sinks_replace_their_files_unless_a_source_is_live},
        {"live_keys_are_refused_where_they_do_not_apply",
         test_live_keys_are_refused_where_they_do_not_apply},
        {"skeleton_variant_agcn_leaves_the_layout_unset",
         test_skeleton_variant_agcn_leaves_the_layout_unset},
        {"source_keys_must_match_type", test_source_keys_must_match_type},
        {"truncation_at_every_byte_never_crashes", test_truncation_at_every_byte_never_crashes},
        {"random_mutations_never_crash", test_random_mutations_never_crash},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
