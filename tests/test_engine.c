/* The engine's own behaviour: geometry composition, delay alignment where branches meet,
 * warm-up, and streams that share a model but not state. */
#include <CUnit/CUnit.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cin.h"
#include "conv3d.h"
#include "node.h"
#include "seeded.h"
#include "util.h"

static cin_node *conv(int c, int kt, int pt, int st, int h, const char *seed_name)
{
    size_t nw = (size_t)c * c * kt * 9;
    float *w = malloc(sizeof(float) * nw);
    cin_seeded_fill(w, nw, 5, seed_name, -0.3, 0.3);
    conv3d_params p = {.cin = c, .cout = c, .groups = 1, .kt = kt, .kh = 3, .kw = 3,
                       .st = st, .sh = 1, .sw = 1, .pt = pt, .ph = 1, .pw = 1, .h = h, .w = h,
                       .weight = w};
    cin_node *n = NULL;
    conv3d_create(&p, &n, NULL);
    free(w);
    return n;
}

static void test_sequence_composes_receptive_field_delay_and_stride(void)
{
    cin_node *kids[3] = {conv(2, 3, 1, 1, 5, "a"), conv(2, 5, 0, 2, 5, "b"),
                         conv(2, 3, 1, 2, 5, "c")};
    cin_node *s;
    CU_ASSERT_EQUAL_FATAL(cin_seq_create(kids, 3, &s, NULL), 0);
    /* rf: 3, then + (5 - 1) * 1, then + (3 - 1) * 2 = 11; delays 1 + 4 * 1 + 1 * 2 = 7 */
    CU_ASSERT_EQUAL(s->rf, 11);
    CU_ASSERT_EQUAL(cin_node_delay(s), 7);
    CU_ASSERT_EQUAL(s->stride, 4);
    cin_node_free(s);
}

/* Steps a node over t frames; returns the outputs, one frame each, and how many. */
static int step_all(const cin_node *n, const float *in, int t, float *out)
{
    void *state = calloc(1, n->state_bytes + 1);
    float *scratch = calloc(n->step_scratch + 1, sizeof(float));
    size_t isz = cin_dims_size(n->in), osz = cin_dims_size(n->out);
    int j = 0;
    for (int i = 0; i < t; i++)
        j += n->ops->step(n, state, in + i * isz, out + j * osz, scratch);
    free(state);
    free(scratch);
    return j;
}

static void test_residual_aligns_identity_with_branch_delay(void)
{
    enum { T = 12, C = 2, H = 5 };
    cin_node *branch[2] = {NULL, conv(C, 3, 1, 1, H, "r")};
    cin_node *res;
    CU_ASSERT_EQUAL_FATAL(cin_parallel_create(branch, 2, CIN_REDUCE_SUM, &res, NULL), 0);
    CU_ASSERT_EQUAL(cin_node_delay(res), 1);
    size_t fsz = C * H * H;
    float in[T * C * H * H], clip[T * C * H * H], steps[T * C * H * H];
    cin_seeded_fill(in, T * fsz, 3, "input", -1, 1);
    float *scratch = calloc(cin_node_clip_scratch(res, T) + 1, sizeof(float));
    res->ops->forward(res, in, T, clip, scratch);
    int n = step_all(res, in, T, steps);
    CU_ASSERT_EQUAL(n, T - 1);
    CU_ASSERT(tu_rel_err(steps, clip, (size_t)n * fsz) <= 1e-5);
    free(scratch);
    cin_node_free(res);
}

static void test_branches_with_different_strides_are_refused(void)
{
    cin_node *branch[2] = {conv(2, 3, 1, 1, 5, "x"), conv(2, 3, 1, 2, 5, "y")};
    cin_node *res;
    cin_err err = {0};
    CU_ASSERT_EQUAL(cin_parallel_create(branch, 2, CIN_REDUCE_SUM, &res, &err),
                    CIN_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "stride"));
}

/* A branch that is its own input's conv (k3, p1), to combine with the identity. */
static void check_reduce(cin_reduce reduce, int expect_c)
{
    enum { T = 8, C = 2, H = 4 };
    cin_node *branch[2] = {NULL, conv(C, 3, 1, 1, H, "m")};
    cin_node *n;
    CU_ASSERT_EQUAL_FATAL(cin_parallel_create(branch, 2, reduce, &n, NULL), 0);
    CU_ASSERT_EQUAL(n->out.c, expect_c);
    size_t isz = C * H * H, osz = cin_dims_size(n->out);
    float in[T * C * H * H], clip[T * 2 * C * H * H], steps[T * 2 * C * H * H];
    float conv_out[T * C * H * H];
    cin_seeded_fill(in, T * isz, 4, "input", -1, 1);
    float *scratch = calloc(cin_node_clip_scratch(n, T) + 1, sizeof(float));
    n->ops->forward(n, in, T, clip, scratch);
    cin_node *alone = conv(C, 3, 1, 1, H, "m");
    float *s2 = calloc(cin_node_clip_scratch(alone, T) + 1, sizeof(float));
    alone->ops->forward(alone, in, T, conv_out, s2);
    /* clip: identity and conv combined position by position */
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (size_t i = 0; i < isz; i++) {
            float x = in[t * isz + i], y = conv_out[t * isz + i];
            float want = reduce == CIN_REDUCE_SUM ? x + y : reduce == CIN_REDUCE_MUL ? x * y : x;
            float got = clip[t * osz + i];
            worst = fabs(got - want) > worst ? fabs(got - want) : worst;
            if (reduce == CIN_REDUCE_CONCAT)
                worst = fmax(worst, fabs(clip[t * osz + isz + i] - y));
        }
    CU_ASSERT(worst <= 1e-5);
    /* steps: the same, one frame late (the identity waits for the conv's delay) */
    int k = step_all(n, in, T, steps);
    CU_ASSERT_EQUAL(k, T - 1);
    CU_ASSERT(tu_rel_err(steps, clip, (size_t)k * osz) <= 1e-5);
    free(scratch);
    free(s2);
    cin_node_free(alone);
    cin_node_free(n);
}

static void test_parallel_branches_reduce_by_sum_product_and_concatenation(void)
{
    check_reduce(CIN_REDUCE_SUM, 2);
    check_reduce(CIN_REDUCE_MUL, 2);
    check_reduce(CIN_REDUCE_CONCAT, 4);
}

static void test_delay_line_returns_frames_d_steps_late(void)
{
    cin_node *d;
    CU_ASSERT_EQUAL_FATAL(cin_delay_create((cin_dims){1, 1, 2}, 3, &d, NULL), 0);
    CU_ASSERT_EQUAL(cin_node_delay(d), 3);
    float in[2 * 10], out[2 * 10];
    for (int i = 0; i < 20; i++)
        in[i] = (float)i;
    CU_ASSERT_EQUAL(step_all(d, in, 10, out), 7);
    CU_ASSERT(memcmp(out, in, sizeof(float) * 14) == 0);
    cin_node_free(d);
}

/* Crop 2: a clip of 10 frames keeps frames 2..7; stepping gives frame t - 2 from step 4 on,
 * which is when a 5-tap unpadded convolution gives the output centred on that frame. */
static void test_centre_crop_keeps_the_middle_of_a_clip_and_steps_to_match(void)
{
    cin_node *c;
    CU_ASSERT_EQUAL_FATAL(cin_crop_create((cin_dims){1, 1, 2}, 2, &c, NULL), 0);
    CU_ASSERT_EQUAL(cin_node_delay(c), 4);
    CU_ASSERT_EQUAL(c->rf, 5);
    float in[2 * 10], out[2 * 10];
    for (int i = 0; i < 20; i++)
        in[i] = (float)i;
    CU_ASSERT_EQUAL(cin_node_clip_frames(c, 10), 6);
    c->ops->forward(c, in, 10, out, NULL);
    CU_ASSERT(memcmp(out, in + 2 * 2, sizeof(float) * 12) == 0);
    memset(out, 0, sizeof out);
    CU_ASSERT_EQUAL(step_all(c, in, 10, out), 6);
    CU_ASSERT(memcmp(out, in + 2 * 2, sizeof(float) * 12) == 0);
    cin_node_free(c);
}

static cin_model *small_model(void)
{
    cin_model *m = NULL;
    cin_model_opts o = {.arch = "x3d", .size = "xs", .crop = 64, .seed = 3};
    cin_model_load(&o, &m, NULL);
    return m;
}

static void test_warm_up_steps_give_no_output_and_leave_it_untouched(void)
{
    cin_model *m = small_model();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    size_t fsz = (size_t)i.in_channels * i.in_height * i.in_width;
    float *frame = malloc(sizeof(float) * fsz), *out = malloc(sizeof(float) * i.out_size);
    cin_seeded_fill(frame, fsz, 1, "input", -1, 1);
    for (int k = 0; k < i.out_size; k++)
        out[k] = 12345.0f;
    int first = -1;
    for (int t = 0; t <= i.delay && first < 0; t++) {
        int r = cin_stream_step(s, frame, out);
        if (r == 1)
            first = t;
        else
            CU_ASSERT(out[0] == 12345.0f && out[i.out_size - 1] == 12345.0f);
    }
    CU_ASSERT_EQUAL(first, i.delay);
    CU_ASSERT(isfinite(out[0]) && out[0] != 12345.0f);
    free(frame);
    free(out);
    cin_stream_free(s);
    cin_model_free(m);
}

/* Runs `steps` frames of seed `seed` through s; returns the last output in out. */
static int feed(cin_stream *s, size_t fsz, int t, uint64_t seed, float *frame, float *out)
{
    char name[32];
    snprintf(name, sizeof name, "frame%d", t);
    cin_seeded_fill(frame, fsz, seed, name, -1, 1);
    return cin_stream_step(s, frame, out);
}

static void test_interleaved_streams_equal_streams_run_alone(void)
{
    cin_model *m = small_model();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    size_t fsz = (size_t)i.in_channels * i.in_height * i.in_width, osz = i.out_size;
    int T = i.delay + 4;
    float *frame = malloc(sizeof(float) * fsz);
    float *alone = malloc(sizeof(float) * osz * 2), *mixed = malloc(sizeof(float) * osz * 2);
    cin_stream *a, *b;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &a, NULL), 0);
    for (int t = 0; t < T; t++)
        feed(a, fsz, t, 1, frame, alone);
    cin_stream_reset(a);
    for (int t = 0; t < T; t++)
        feed(a, fsz, t, 2, frame, alone + osz);
    cin_stream_reset(a);
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &b, NULL), 0);
    for (int t = 0; t < T; t++) {
        feed(a, fsz, t, 1, frame, mixed);
        feed(b, fsz, t, 2, frame, mixed + osz);
    }
    CU_ASSERT_EQUAL(memcmp(alone, mixed, sizeof(float) * osz * 2), 0);
    CU_ASSERT(memcmp(alone, alone + osz, sizeof(float) * osz) != 0);
    free(frame);
    free(alone);
    free(mixed);
    cin_stream_free(a);
    cin_stream_free(b);
    cin_model_free(m);
}

/* The heap in use before and after many steps: a step must not allocate (or leak). */
static void test_steps_do_not_allocate(void)
{
    cin_model *m = small_model();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_model_info i;
    cin_model_get_info(m, &i);
    size_t fsz = (size_t)i.in_channels * i.in_height * i.in_width;
    float *frame = malloc(sizeof(float) * fsz), *out = malloc(sizeof(float) * i.out_size);
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    for (int t = 0; t < 3; t++)
        feed(s, fsz, t, 1, frame, out); /* lets BLAS set itself up */
    struct mallinfo2 before = mallinfo2();
    int outputs = 0;
    for (int t = 3; t < i.delay + 10; t++)
        outputs += feed(s, fsz, t, 1, frame, out);
    struct mallinfo2 after = mallinfo2();
    CU_ASSERT_EQUAL(outputs, 10);
    CU_ASSERT_EQUAL(after.uordblks, before.uordblks);
    CU_ASSERT_EQUAL(after.hblkhd, before.hblkhd);
    free(frame);
    free(out);
    cin_stream_free(s);
    cin_model_free(m);
}

static void test_short_clip_is_refused_with_a_message(void)
{
    cin_model *m = small_model();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    cin_stream *s;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    float frame[3 * 64 * 64] = {0}, out[400];
    CU_ASSERT_EQUAL(cin_stream_forward(s, frame, 1, out), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(cin_stream_last_error(s), "1 frames"));
    cin_stream_free(s);
    cin_model_free(m);
}

static void test_unknown_arch_and_size_name_the_setting(void)
{
    cin_model *m;
    cin_err err = {0};
    cin_model_opts o = {.arch = "resnet"};
    CU_ASSERT_EQUAL(cin_model_load(&o, &m, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "resnet"));
    o = (cin_model_opts){.arch = "x3d", .size = "xxl"};
    CU_ASSERT_EQUAL(cin_model_load(&o, &m, &err), CIN_E_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "xxl"));
    CU_ASSERT_PTR_NULL(m);
}

int test_engine_register(void)
{
    CU_pSuite s = CU_add_suite("engine", NULL, NULL);
    if (!s)
        return -1;
    int ok =
        CU_add_test(s, "sequence composes receptive field, delay and stride",
                    test_sequence_composes_receptive_field_delay_and_stride) &&
        CU_add_test(s, "residual aligns the identity with the branch delay",
                    test_residual_aligns_identity_with_branch_delay) &&
        CU_add_test(s, "parallel branches reduce by sum, product and concatenation",
                    test_parallel_branches_reduce_by_sum_product_and_concatenation) &&
        CU_add_test(s, "centre crop keeps the middle of a clip and steps to match",
                    test_centre_crop_keeps_the_middle_of_a_clip_and_steps_to_match) &&
        CU_add_test(s, "delay line returns frames d steps late",
                    test_delay_line_returns_frames_d_steps_late) &&
        CU_add_test(s, "branches with different strides are refused",
                    test_branches_with_different_strides_are_refused) &&
        CU_add_test(s, "warm-up steps give no output and leave it untouched",
                    test_warm_up_steps_give_no_output_and_leave_it_untouched) &&
        CU_add_test(s, "interleaved streams equal streams run alone",
                    test_interleaved_streams_equal_streams_run_alone) &&
        CU_add_test(s, "steps do not allocate", test_steps_do_not_allocate) &&
        CU_add_test(s, "short clip is refused with a message",
                    test_short_clip_is_refused_with_a_message) &&
        CU_add_test(s, "unknown arch and size name the setting",
                    test_unknown_arch_and_size_name_the_setting);
    return ok ? 0 : -1;
}
