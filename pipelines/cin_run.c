/* cin-run: runs the pipeline a YAML file describes and prints a one-line summary on stderr. */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cin.h"
#include "config.h"
#include "pipeline.h"
#include "video.h"

static const char *level_names[] = {"error", "warn", "info", "debug"};

/* Set by SIGINT/SIGTERM: the run ends after the frame in hand, sinks are flushed and closed.
 * A signal handler can only reach a static flag; it is the one piece of global state. */
static volatile sig_atomic_t stop_requested;

static void request_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* The first SIGINT or SIGTERM asks for a clean stop; a second one (the handler resets
 * itself) ends the process at once, e.g. when a source blocks on an idle stdin. */
static void catch_stop_signals(void)
{
    struct sigaction sa = {.sa_handler = request_stop, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cin-run [--log-level error|warn|info|debug] pipeline.yaml\n"
               "Runs the pipeline (source, preprocess, model, postprocess, sinks) that the YAML\n"
               "file describes; see docs/pipeline.md.\n");
}

static void log_stderr(void *user, int level, const char *component, const char *msg)
{
    (void)user;
    fprintf(stderr, "cin-run: %s: %s: %s\n", level_names[level], component, msg);
}

static int parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static void note_seeded(const pipe_config *c)
{
    if (c->model.weights)
        return;
    fprintf(stderr, "cin-run: note: model weights drawn from seed %llu: the classes mean nothing "
            "until model.weights points at a trained checkpoint (README.md)\n",
            (unsigned long long)c->model.seed);
}

static void summary(const pipe_stats *s)
{
    double fps = s->seconds > 0 ? (double)s->frames / s->seconds : 0.0;
    fprintf(stderr, "cin-run: %lld frames, %lld outputs, %.1f fps, latency p50 %.2f ms "
            "p99 %.2f ms", (long long)s->frames, (long long)s->outputs, fps, s->p50_ms,
            s->p99_ms);
    if (s->damaged)
        fprintf(stderr, ", %lld damaged packets skipped", (long long)s->damaged);
    if (s->skipped || s->masked)
        fprintf(stderr, ", %lld malformed records skipped, %lld non-finite values set to 0",
                (long long)s->skipped, (long long)s->masked);
    fputc('\n', stderr);
    if (s->stopped)
        fprintf(stderr, "cin-run: stopped by signal; results so far are complete\n");
    if (s->frames > 0 && s->outputs == 0 && !s->stopped)
        fprintf(stderr, "cin-run: warning: no output: the source ended after %lld frames, the "
                "model's first output needs %d\n", (long long)s->frames, s->delay + 1);
}

int main(int argc, char **argv)
{
    int level = CIN_LOG_WARN;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            if ((level = parse_level(argv[++i])) < 0) {
                fprintf(stderr, "cin-run: --log-level: '%s', expected error, warn, info or "
                        "debug\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    /* One stream per thread; BLAS threads on per-frame GEMMs cost more than they save. */
    openblas_set_num_threads(1);
    /* cin reports decode failures itself; libav's own lines only from --log-level warn up */
    video_set_log_level(level);
    cin_err err = {0};
    pipe_config *cfg;
    if (pipe_config_load(path, &cfg, &err)) {
        fprintf(stderr, "cin-run: %s\n", err.msg);
        return 1;
    }
    pipe_stats stats;
    pipe_run_opts ro = {.log = log_stderr, .log_level = level, .stop = &stop_requested};
    catch_stop_signals();
    int rc = pipe_run(cfg, &ro, &stats, &err);
    if (rc)
        fprintf(stderr, "cin-run: %s\n", err.msg);
    /* what was done before a failure, and what the source held */
    if (stats.frames > 0 || stats.skipped > 0)
        summary(&stats);
    if (!rc)
        note_seeded(cfg);
    pipe_config_free(cfg);
    return rc ? 1 : 0;
}
