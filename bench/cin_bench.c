/* cin-bench: per-frame latency of a model in continual mode, against the regular model over
 * clips, on synthetic frames. Reads the model section of a pipeline YAML file; with --compare,
 * times a derived checkpoint of the same model alongside, step for step. */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cin.h"
#include "config.h"

typedef struct bench_opts {
    const char *path, *compare;
    int steps, warmup, clips, json;
} bench_opts;

/* One model under test: its stream, synthetic frames and the latencies measured. */
typedef struct bench_run {
    const char *label;
    cin_model *m;
    cin_stream *s;
    cin_model_info i;
    size_t fsz;
    float *frames, *out;
    double *lat_step, *lat_clip, *lat_out;
} bench_run;

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

/* Step i of the run: the first delay + warmup are untimed, so that every timed step is past
 * the model's delay and gives an output (one in s with a temporal stride s). */
static int step_once(bench_run *r, const bench_opts *o, int i)
{
    int warmup = r->i.delay + o->warmup, nframes = r->i.clip_frames;
    if (i >= warmup + o->steps)
        return 0;
    double t0 = now_ms();
    int rc = cin_stream_step(r->s, r->frames + (size_t)(i % nframes) * r->fsz, r->out);
    double ms = now_ms() - t0;
    if (i >= warmup)
        r->lat_step[i - warmup] = ms;
    return rc < 0 ? rc : 0;
}

/* Clip i; the first call (i == 0) sizes the clip buffers and is not timed. */
static int clip_once(bench_run *r, int i)
{
    double t0 = now_ms();
    int rc = cin_stream_forward(r->s, r->frames, r->i.clip_frames, r->out);
    double ms = now_ms() - t0;
    if (i > 0)
        r->lat_clip[i - 1] = ms;
    return rc < 0 ? rc : 0;
}

/* Steps, then clips, of every run, alternating which goes first so that the machine's noise
 * falls on all alike. */
static int time_runs(bench_run *r, int n, const bench_opts *o)
{
    int total = 0, rc = 0;
    for (int k = 0; k < n; k++)
        total = r[k].i.delay + o->warmup + o->steps > total ? r[k].i.delay + o->warmup + o->steps
                                                              : total;
    for (int i = 0; !rc && i < total; i++)
        for (int k = 0; !rc && k < n; k++)
            rc = step_once(&r[(k + i) % n], o, i);
    for (int i = 0; !rc && i < o->clips + 1; i++)
        for (int k = 0; !rc && k < n; k++)
            rc = clip_once(&r[(k + i) % n], i);
    return rc;
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

/* A run's percentiles: per step, per output (the `stride` steps of one), per clip. */
typedef struct bench_pcts {
    pct st, out, cl;
} bench_pcts;

static bench_pcts summarise(bench_run *r, const bench_opts *o)
{
    int n = per_output(r->lat_step, o->steps, r->i.stride, r->lat_out);
    return (bench_pcts){percentiles(r->lat_step, o->steps), percentiles(r->lat_out, n),
                        percentiles(r->lat_clip, o->clips)};
}

static void report_text(const pipe_config *c, const bench_run *r, bench_pcts p,
                        const bench_opts *o)
{
    const cin_model_info *i = &r->i;
    pct st = p.st, out = p.out, cl = p.cl;
    printf("cin-bench: %s%s%s%s%s, input %dx%dx%d, weights %s\n", r->label ? r->label : "",
           r->label ? ": " : "", c->model.arch, c->model.size ? "-" : "",
           c->model.size ? c->model.size : "", i->in_channels, i->in_height, i->in_width,
           i->layout);
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

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

/* derived / source of the figures a derivation changes. */
typedef struct bench_ratios {
    double macs_step, macs_clip, step_p50, step_p99, clip_p50, weights, state;
} bench_ratios;

static bench_ratios ratios(const bench_run *r, const bench_pcts *p)
{
    const cin_model_info *a = &r[0].i, *b = &r[1].i;
    return (bench_ratios){ratio((double)b->macs_step, (double)a->macs_step),
                          ratio((double)b->macs_clip, (double)a->macs_clip),
                          ratio(p[1].st.p50, p[0].st.p50), ratio(p[1].st.p99, p[0].st.p99),
                          ratio(p[1].cl.p50, p[0].cl.p50),
                          ratio((double)b->weight_bytes, (double)a->weight_bytes),
                          ratio((double)b->state_bytes, (double)a->state_bytes)};
}

static void report_ratios_text(bench_ratios q)
{
    printf("cin-bench: derived / source (steps alternated in one run)\n");
    printf("  multiply-adds per step %.3f, per clip %.3f\n", q.macs_step, q.macs_clip);
    printf("  continual step p50 %.3f, p99 %.3f; clip p50 %.3f\n", q.step_p50, q.step_p99,
           q.clip_p50);
    printf("  weights bytes %.3f, state bytes per stream %.3f\n", q.weights, q.state);
}

static json_t *pct_json(pct p)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "p50", p.p50, "p90", p.p90, "p99", p.p99, "max",
                     p.max);
}

static json_t *run_json(const pipe_config *c, const bench_run *r, bench_pcts p,
                        const bench_opts *o)
{
    const cin_model_info *i = &r->i;
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", c->model.arch, c->model.size ? "-" : "",
             c->model.size ? c->model.size : "");
    return json_pack(
        "{s:s, s:[i,i,i], s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:i, s:i, s:I, s:I, "
        "s:i, s:o, s:f}",
        "model", name, "input", i->in_channels, i->in_height, i->in_width, "weights",
        i->layout, "steps", o->steps, "warmup", o->warmup, "clips", o->clips, "clip_frames",
        i->clip_frames, "step_ms", pct_json(p.st), "clip_ms", pct_json(p.cl), "macs_step",
        (json_int_t)i->macs_step, "macs_clip", (json_int_t)i->macs_clip, "delay", i->delay,
        "receptive_field", i->receptive_field, "weight_bytes", (json_int_t)i->weight_bytes,
        "stream_bytes", (json_int_t)i->state_bytes, "stride", i->stride, "output_ms",
        pct_json(p.out), "outputs_per_s", p.out.mean > 0 ? 1e3 / p.out.mean : 0.0);
}

static json_t *ratios_json(bench_ratios q)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "macs_step", q.macs_step,
                     "macs_clip", q.macs_clip, "step_p50", q.step_p50, "step_p99", q.step_p99,
                     "clip_p50", q.clip_p50, "weight_bytes", q.weights, "stream_bytes",
                     q.state);
}

/* One object, or with --compare {"source": ..., "derived": ..., "ratio": ...}. */
static void report_json(const pipe_config *c, const bench_run *r, const bench_pcts *p, int n,
                        const bench_opts *o)
{
    json_t *j = run_json(c, &r[0], p[0], o);
    if (n == 2) {
        json_t *d = run_json(c, &r[1], p[1], o);
        json_object_set_new(d, "path", json_string(o->compare));
        j = json_pack("{s:o, s:o, s:o}", "source", j, "derived", d, "ratio",
                      ratios_json(ratios(r, p)));
    }
    char *text = j ? json_dumps(j, JSON_REAL_PRECISION(6)) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(j);
}

static void report(const pipe_config *c, const bench_run *r, const bench_pcts *p, int n,
                   const bench_opts *o)
{
    if (o->json) {
        report_json(c, r, p, n, o);
        return;
    }
    for (int k = 0; k < n; k++)
        report_text(c, &r[k], p[k], o);
    if (n == 2)
        report_ratios_text(ratios(r, p));
}

static int run_open(const cin_model_opts *mo, const bench_opts *o, bench_run *r)
{
    cin_err err = {0};
    if (cin_model_load(mo, &r->m, &err) || cin_stream_create(r->m, &r->s, &err)) {
        fprintf(stderr, "cin-bench: %s%s%s\n", r->label ? r->label : "", r->label ? ": " : "",
                err.msg);
        return 1;
    }
    cin_model_get_info(r->m, &r->i);
    r->fsz = (size_t)r->i.in_channels * r->i.in_height * r->i.in_width;
    r->frames = malloc(sizeof(float) * r->fsz * r->i.clip_frames);
    r->out = malloc(sizeof(float) * r->i.out_size);
    r->lat_step = malloc(sizeof(double) * o->steps);
    r->lat_clip = malloc(sizeof(double) * o->clips);
    r->lat_out = malloc(sizeof(double) * o->steps);
    if (!r->frames || !r->out || !r->lat_step || !r->lat_clip || !r->lat_out) {
        fprintf(stderr, "cin-bench: out of memory\n");
        return 1;
    }
    synth(r->frames, r->fsz * r->i.clip_frames, 1);
    return 0;
}

static void run_close(bench_run *r)
{
    free(r->frames);
    free(r->out);
    free(r->lat_step);
    free(r->lat_clip);
    free(r->lat_out);
    cin_stream_free(r->s);
    cin_model_free(r->m);
}

/* The pipeline's first model and, with --compare, the same model with the derived weights. */
static int run(const pipe_config *c, const bench_opts *o)
{
    cin_model_opts mo[2];
    bench_run r[2] = {{.label = o->compare ? "source" : NULL}, {.label = "derived"}};
    int n = o->compare ? 2 : 1, rc = 0;
    pipe_model_opts(c, &c->model, 0, &mo[0]);
    mo[1] = mo[0];
    mo[1].weights = o->compare;
    for (int k = 0; k < n && !rc; k++)
        rc = run_open(&mo[k], o, &r[k]);
    if (!rc && time_runs(r, n, o)) {
        for (int k = 0; k < n; k++)
            if (cin_stream_last_error(r[k].s)[0])
                fprintf(stderr, "cin-bench: %s\n", cin_stream_last_error(r[k].s));
        rc = 1;
    }
    bench_pcts p[2];
    for (int k = 0; k < n && !rc; k++)
        p[k] = summarise(&r[k], o);
    if (!rc)
        report(c, r, p, n, o);
    for (int k = 0; k < n; k++)
        run_close(&r[k]);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cin-bench [--json] [--steps N] [--warmup N] [--clips N]\n"
               "                 [--compare DERIVED.safetensors] model.yaml\n"
               "model.yaml: a pipeline file; its model and preprocess.crop are used "
               "(docs/bench.md)\n"
               "--compare: also time the model with these weights (cin-derive's), steps "
               "alternated\n");
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
        } else if (strcmp(a, "--compare") == 0 && v) {
            o->compare = v;
            i++;
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
