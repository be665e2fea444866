/* Continual transformer encoders against torch.nn.TransformerEncoderLayer goldens
 * (tests/ref/transformer.py): every window's output, stepped with both first-layer forms and
 * in clip mode, within 1e-4 relative; and the retroactive form over a long stream. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cin.h"
#include "safetensors.h"
#include "seeded.h"
#include "util.h"

#define TOL 1e-4

typedef struct tcase {
    st_file *f;
    cin_transformer_opts o;
    int classes, steps;
    uint64_t wseed, iseed;
    float *input, *logits;     /* [steps][input_dim], [steps - window + 1][classes] */
} tcase;

static int meta(const tcase *c, const char *key)
{
    const char *v = st_meta(c->f, key);
    return v ? atoi(v) : -1;
}

static int open_case(const char *path, tcase *c)
{
    memset(c, 0, sizeof *c);
    if (st_open(path, &c->f, NULL))
        return -1;
    static char act[16], pos[16];
    snprintf(act, sizeof act, "%s", st_meta(c->f, "activation"));
    snprintf(pos, sizeof pos, "%s", st_meta(c->f, "pos"));
    c->o = (cin_transformer_opts){.input_dim = meta(c, "input_dim"), .d_model = meta(c, "d_model"),
                                  .nhead = meta(c, "nhead"),
                                  .dim_feedforward = meta(c, "dim_feedforward"),
                                  .layers = meta(c, "num_layers"), .window = meta(c, "window"),
                                  .norm_first = meta(c, "norm_first"), .activation = act,
                                  .pos = pos, .class_token = meta(c, "class_token")};
    c->classes = meta(c, "num_classes");
    c->steps = meta(c, "steps");
    c->wseed = (uint64_t)meta(c, "weight_seed");
    c->iseed = (uint64_t)meta(c, "input_seed");
    size_t n = (size_t)c->steps * c->o.input_dim;
    c->input = malloc(sizeof(float) * n);
    cin_seeded_fill(c->input, n, c->iseed, "input", -1.0, 1.0);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += c->input[i];
    const char *want = st_meta(c->f, "input_sum");
    CU_ASSERT(want && fabs(sum - atof(want)) < 1e-3);
    st_info info;
    if (st_find(c->f, "logits", &info, NULL))
        return -1;
    c->logits = malloc(info.nbytes);
    return st_read_f32(c->f, "logits", -1, NULL, c->logits, NULL);
}

static void close_case(tcase *c)
{
    free(c->input);
    free(c->logits);
    st_close(c->f);
}

static cin_model *load(const tcase *c, const char *first)
{
    cin_transformer_opts o = c->o;
    o.first_layer = first;
    cin_model_opts mo = {.arch = "transformer", .seed = c->wseed, .num_classes = c->classes,
                         .transformer = &o};
    cin_model *m = NULL;
    cin_err err = {0};
    if (cin_model_load(&mo, &m, &err))
        fprintf(stderr, "\n  %s\n", err.msg);
    return m;
}

/* Steps every frame; output k (from step window - 1 on) must equal golden row k. */
static double steps_error(const tcase *c, cin_model *m)
{
    cin_stream *s;
    if (cin_stream_create(m, &s, NULL))
        return 1.0;
    float *out = malloc(sizeof(float) * c->classes);
    double worst = 0.0;
    int k = 0;
    for (int t = 0; t < c->steps; t++) {
        int r = cin_stream_step(s, c->input + (size_t)t * c->o.input_dim, out);
        CU_ASSERT_EQUAL(r, t >= c->o.window - 1);
        if (r != 1)
            continue;
        double e = tu_rel_err(out, c->logits + (size_t)k++ * c->classes, c->classes);
        worst = e > worst ? e : worst;
    }
    CU_ASSERT_EQUAL(k, c->steps - c->o.window + 1);
    free(out);
    cin_stream_free(s);
    return worst;
}

/* Clip mode over the windows that start at multiples of the window (where the recycled
 * positions of a clip and of the stream agree). */
static double clip_error(const tcase *c, cin_model *m)
{
    cin_stream *s;
    if (cin_stream_create(m, &s, NULL))
        return 1.0;
    float *out = malloc(sizeof(float) * c->classes);
    double worst = 0.0;
    int n = c->o.window;
    for (int j = 0; j + n <= c->steps; j += n) {
        if (cin_stream_forward(s, c->input + (size_t)j * c->o.input_dim, n, out))
            return 1.0;
        double e = tu_rel_err(out, c->logits + (size_t)j * c->classes, c->classes);
        worst = e > worst ? e : worst;
    }
    free(out);
    cin_stream_free(s);
    return worst;
}

static int run_goldens(void)
{
    DIR *d = opendir("golden");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *e;
    int cases = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "transformer_", 12) || !strstr(e->d_name, ".safetensors"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "golden/%s", e->d_name);
        tcase c;
        CU_ASSERT_EQUAL_FATAL(open_case(path, &c), 0);
        const char *forms[2] = {"retroactive", "regular"};
        for (int f = 0; f < (c.o.layers == 2 ? 2 : 1); f++) {
            cin_model *m = load(&c, forms[f]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            double es = steps_error(&c, m), ec = f ? 0.0 : clip_error(&c, m);
            if (es > TOL || ec > TOL)
                fprintf(stderr, "\n  %s (%s): steps %.3g, clip %.3g\n", path, forms[f], es, ec);
            CU_ASSERT(es <= TOL && ec <= TOL);
            cin_model_free(m);
        }
        close_case(&c);
        cases++;
    }
    closedir(d);
    return cases;
}

static void test_every_window_equals_the_regular_encoder(void)
{
    CU_ASSERT(run_goldens() >= 6);
}

static void test_deeper_stacks_are_refused(void)
{
    cin_transformer_opts o = {.input_dim = 8, .d_model = 8, .nhead = 2, .dim_feedforward = 8,
                              .layers = 3, .window = 4};
    cin_model_opts mo = {.arch = "transformer", .transformer = &o};
    cin_model *m;
    cin_err err = {0};
    CU_ASSERT_EQUAL(cin_model_load(&mo, &m, &err), CIN_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layers 3"));
}

/* 100,000 steps of the retroactive form on large attention logits; at checkpoints, the
 * output must equal a fresh computation of the same window (clip mode). */
static void test_retroactive_form_does_not_drift_over_long_streams(void)
{
    enum { STEPS = 100000, D_IN = 16, N = 16 };
    cin_transformer_opts o = {.input_dim = D_IN, .d_model = 32, .nhead = 4,
                              .dim_feedforward = 64, .layers = 2, .window = N,
                              .class_token = 1, .first_layer = "retroactive"};
    cin_model_opts mo = {.arch = "transformer", .seed = 3, .num_classes = 8, .transformer = &o};
    cin_model *m;
    CU_ASSERT_EQUAL_FATAL(cin_model_load(&mo, &m, NULL), 0);
    cin_stream *s, *fresh;
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &s, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cin_stream_create(m, &fresh, NULL), 0);
    float *ring = malloc(sizeof(float) * D_IN * N), *window = malloc(sizeof(float) * D_IN * N);
    float out[8], want[8];
    double worst = 0.0;
    uint32_t x = 12345;
    for (int t = 0; t < STEPS; t++) {
        float *frame = ring + (size_t)(t % N) * D_IN;
        for (int i = 0; i < D_IN; i++) {
            x = x * 1664525u + 1013904223u;
            frame[i] = 40.0f * ((float)(x >> 8) / 8388608.0f - 1.0f); /* logits in the 100s */
        }
        int r = cin_stream_step(s, frame, out);
        if (r != 1 || (t + 1) % 10000)
            continue;
        for (int k = 0; k < N; k++) /* the window in time order */
            memcpy(window + (size_t)k * D_IN, ring + (size_t)((t + 1 + k) % N) * D_IN,
                   sizeof(float) * D_IN);
        CU_ASSERT_EQUAL_FATAL(cin_stream_forward(fresh, window, N, want), 0);
        double e = tu_rel_err(out, want, 8);
        worst = e > worst ? e : worst;
    }
    printf("\n  retroactive drift after %d steps: %.3g relative\n", STEPS, worst);
    CU_ASSERT(worst <= TOL);
    free(ring);
    free(window);
    cin_stream_free(s);
    cin_stream_free(fresh);
    cin_model_free(m);
}

int test_transformer_register(void)
{
    CU_pSuite s = CU_add_suite("transformer", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "every window equals the regular encoder",
                         test_every_window_equals_the_regular_encoder) &&
             CU_add_test(s, "deeper stacks are refused", test_deeper_stacks_are_refused) &&
             CU_add_test(s, "retroactive form does not drift over long streams",
                         test_retroactive_form_does_not_drift_over_long_streams);
    return ok ? 0 : -1;
}
