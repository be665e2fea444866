/* cin-bench: per-frame latency of a model in continual mode, against the regular model over
 * clips, on synthetic frames. Reads the model section of a pipeline YAML file. */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cin.h"
#include "config.h"

typedef struct bench_opts {
    const char *path;
    int steps, warmup, clips, json;
} bench_opts;

typedef struct pct {
    double p50, p90, p99, max, mean;
} pct;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static double mean(const double *v, int n);

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static pct percentiles(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (pct){v[(n - 1) * 50 / 100], v[(n - 1) * 90 / 100], v[(n - 1) * 99 / 100], v[n - 1],
                 mean(v, n)};
}

/* Deterministic frames in [-1, 1): the values do not matter for timing, only that they are
 * not all zero. */
static void synth(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
}

/* Times steps once the stream is past its delay; with a temporal stride s, one step in s
 * gives an output. */
static int time_steps(cin_stream *s, const float *frames, size_t fsz, int nframes, int delay,
                      const bench_opts *o, float *out, double *lat)
{
    int warmup = delay + o->warmup;
    for (int i = 0; i < warmup + o->steps; i++) {
        double t0 = now_ms();
        int rc = cin_stream_step(s, frames + (size_t)(i % nframes) * fsz, out);
        double ms = now_ms() - t0;
        if (rc < 0)
            return rc;
        if (i >= warmup)
            lat[i - warmup] = ms;
    }
    return 0;
}

static int time_clips(cin_stream *s, const float *frames, int clip, const bench_opts *o,
                      float *out, double *lat)
{
    for (int i = 0; i < o->clips + 1; i++) {
        double t0 = now_ms();
        int rc = cin_stream_forward(s, frames, clip, out);
        double ms = now_ms() - t0;
        if (rc < 0)
            return rc;
        if (i > 0) /* the first call sizes the clip buffers */
            lat[i - 1] = ms;
    }
    return 0;
}

/* The time of each group of `stride` consecutive steps, what one output costs, into out;
 * returns the number of groups (at least 1). */
static int per_output(const double *lat, int steps, int stride, double *out)
{
    int n = steps / stride;
    for (int j = 0; j < n; j++) {
        out[j] = 0;
        for (int k = 0; k < stride; k++)
            out[j] += lat[j * stride + k];
    }
    if (n == 0)
        out[n++] = lat[0] * stride;
    return n;
}

static double mean(const double *v, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    return n ? sum / n : 0;
}

static void report_text(const pipe_config *c, const cin_model_info *i, pct st, pct out,
                        pct cl, const bench_opts *o)
{
    printf("cin-bench: %s%s%s, input %dx%dx%d, weights %s\n", c->model.arch,
           c->model.size ? "-" : "", c->model.size ? c->model.size : "", i->in_channels,
           i->in_height, i->in_width, i->layout);
    printf("  continual step (ms):  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (%d steps after "
           "the delay + %d)\n", st.p50, st.p90, st.p99, st.max, o->steps, o->warmup);
    if (i->stride > 1)
        printf("  continual output (ms): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (the %d steps "
               "of one output)\n", out.p50, out.p90, out.p99, out.max, i->stride);
    printf("  continual outputs per second: %.1f\n", out.mean > 0 ? 1e3 / out.mean : 0.0);
    printf("  clip of %d frames (ms): p50 %.1f  p90 %.1f  max %.1f  (%d clips)\n",
           i->clip_frames, cl.p50, cl.p90, cl.max, o->clips);
    printf("  multiply-adds: %.3f G per step, %.3f G per clip (%.1fx)\n", i->macs_step / 1e9,
           i->macs_clip / 1e9, (double)i->macs_clip / (double)i->macs_step);
    printf("  latency per new frame: clip / step = %.1fx\n", cl.p50 / st.p50);
    printf("  delay %d frames, receptive field %d frames\n", i->delay, i->receptive_field);
    printf("  memory: weights %.1f MB shared, %.1f MB per stream\n", i->weight_bytes / 1e6,
           i->state_bytes / 1e6);
}

static json_t *pct_json(pct p)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "p50", p.p50, "p90", p.p90, "p99", p.p99, "max",
                     p.max);
}

static void report_json(const pipe_config *c, const cin_model_info *i, pct st, pct out,
                        pct cl, const bench_opts *o)
{
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", c->model.arch, c->model.size ? "-" : "",
             c->model.size ? c->model.size : "");
    json_t *j = json_pack(
        "{s:s, s:[i,i,i], s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:i, s:i, s:I, s:I, "
        "s:i, s:o, s:f}",
        "model", name, "input", i->in_channels, i->in_height, i->in_width, "weights",
        i->layout, "steps", o->steps, "warmup", o->warmup, "clips", o->clips, "clip_frames",
        i->clip_frames, "step_ms", pct_json(st), "clip_ms", pct_json(cl), "macs_step",
        (json_int_t)i->macs_step, "macs_clip", (json_int_t)i->macs_clip, "delay", i->delay,
        "receptive_field", i->receptive_field, "weight_bytes", (json_int_t)i->weight_bytes,
        "stream_bytes", (json_int_t)i->state_bytes, "stride", i->stride, "output_ms",
        pct_json(out), "outputs_per_s", out.mean > 0 ? 1e3 / out.mean : 0.0);
    char *text = j ? json_dumps(j, JSON_REAL_PRECISION(6)) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(j);
}

static int run(const pipe_config *c, const bench_opts *o)
{
    cin_err err = {0};
    cin_model *m = NULL;
    cin_stream *s = NULL;
    cin_model_opts mo;
    pipe_model_opts(c, &c->model, 0, &mo); /* the first model of the pipeline */
    if (cin_model_load(&mo, &m, &err) || cin_stream_create(m, &s, &err)) {
        fprintf(stderr, "cin-bench: %s\n", err.msg);
        cin_model_free(m);
        return 1;
    }
    cin_model_info i;
    cin_model_get_info(m, &i);
    size_t fsz = (size_t)i.in_channels * i.in_height * i.in_width;
    float *frames = malloc(sizeof(float) * fsz * i.clip_frames);
    float *out = malloc(sizeof(float) * i.out_size);
    double *lat_step = malloc(sizeof(double) * o->steps);
    double *lat_clip = malloc(sizeof(double) * o->clips);
    double *lat_out = malloc(sizeof(double) * o->steps);
    int rc = !frames || !out || !lat_step || !lat_clip || !lat_out;
    if (!rc) {
        synth(frames, fsz * i.clip_frames, 1);
        rc = time_steps(s, frames, fsz, i.clip_frames, i.delay, o, out, lat_step) ||
             time_clips(s, frames, i.clip_frames, o, out, lat_clip);
    }
    if (rc) {
        fprintf(stderr, "cin-bench: %s\n", cin_stream_last_error(s));
    } else {
        pct outs = percentiles(lat_out, per_output(lat_step, o->steps, i.stride, lat_out));
        pct st = percentiles(lat_step, o->steps), cl = percentiles(lat_clip, o->clips);
        (o->json ? report_json : report_text)(c, &i, st, outs, cl, o);
    }
    free(frames);
    free(out);
    free(lat_step);
    free(lat_clip);
    free(lat_out);
    cin_stream_free(s);
    cin_model_free(m);
    return rc ? 1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cin-bench [--json] [--steps N] [--warmup N] [--clips N] model.yaml\n"
               "model.yaml: a pipeline file; its model and preprocess.crop are used "
               "(docs/bench.md)\n");
}

/* A positive (or, with zero_ok, non-negative) integer option value, or -1. */
static int count(const char *opt, const char *v, int zero_ok)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || n < !zero_ok || n > 1000000) {
        fprintf(stderr, "cin-bench: %s: expected an integer in %d..1000000, got '%s'\n", opt,
                !zero_ok, v ? v : "");
        return -1;
    }
    return (int)n;
}

/* 0 to run, 1 after --help, -1 on a bad command line (already reported). */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.steps = 200, .warmup = 50, .clips = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *target = strcmp(a, "--steps") == 0    ? &o->steps
                      : strcmp(a, "--warmup") == 0 ? &o->warmup
                      : strcmp(a, "--clips") == 0  ? &o->clips
                                                   : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (target) {
            if ((*target = count(a, v, target == &o->warmup)) < 0)
                return -1;
            i++;
        } else if (a[0] != '-' && !o->path) {
            o->path = a;
        } else {
            fprintf(stderr, "cin-bench: unexpected argument '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    if (!o->path)
        usage(stderr);
    return o->path ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int parsed = parse_args(argc, argv, &o);
    if (parsed)
        return parsed > 0 ? 0 : 2;
    /* a stream is stepped by one thread; BLAS threads on per-frame GEMMs cost more than they
     * save (docs/bench.md) */
    openblas_set_num_threads(1);
    cin_err err = {0};
    pipe_config *c;
    if (pipe_config_load(o.path, &c, &err)) {
        fprintf(stderr, "cin-bench: %s\n", err.msg);
        return 1;
    }
    int rc = run(c, &o);
    pipe_config_free(c);
    return rc;
}
