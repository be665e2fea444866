/* cin-run: runs the pipeline a YAML file describes and prints a one-line summary on stderr. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cin.h"
#include "config.h"
#include "pipeline.h"
#include "sinks.h"
#include "video.h"

static const char *level_names[] = {"error", "warn", "info", "debug"};

/* Counts SIGINT/SIGTERM: the first stops the sources, the frames read are stepped, the sinks
 * are flushed and closed; the second leaves the frames still queued and closes the sinks at
 * once (complete all the same). A signal handler can only reach static data, so this counter
 * is the process's only global state. A lock-free atomic may be changed from a handler (C11
 * 7.14.1.1) and read by every thread. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop counter must be lock-free");
static atomic_int stop_requested;

/* After the second signal the default action is back, so a third ends the process at once;
 * its unfinished results then stay where they were written ("<path>.part-<pid>" for a sink
 * that replaces its file), not lost. */
static void request_stop(int sig)
{
    if (atomic_fetch_add(&stop_requested, 1) == 0)
        return;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(sig == SIGINT ? SIGTERM : SIGINT, &dfl, NULL);
    sigaction(sig, &dfl, NULL);
}

/* SIGINT or SIGTERM asks for a clean stop: the frames in hand are finished, a source waiting
 * for input (an idle stdin, socket or camera) gives up its wait, and the sinks are closed
 * complete; a second one (or `timeout -s INT`, which signals the process and its group) makes
 * the stop prompt. No SA_RESTART, so a wait is interrupted. A reader that closes a stdout
 * sink (`cin-run p.yaml | head`) makes the write fail with EPIPE, a sink error like any
 * other, so the other sinks are still closed complete. */
static void catch_stop_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG), as a full disk */
    struct sigaction sa = {.sa_handler = request_stop};
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cin-run [--log-level error|warn|info|debug] [--status SECONDS] "
               "[--quiet]\n               [--stats-json FILE] pipeline.yaml\n"
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

/* One stream's figures; a status line (during the run) also says when its source ended. */
static void stream_line(const char *when, const pipe_stream_stats *s, int status)
{
    fprintf(stderr, "cin-run: %s%s: in %.1f fps, out %.1f fps, step p50 %.2f ms p99 %.2f ms, "
            "end to end p99 %.2f ms, queue %d/%d, %lld drop%s, %lld reconnect%s%s%s\n", when,
            s->id, s->fps_in, s->fps_out, s->step_p50_ms, s->step_p99_ms, s->e2e_p99_ms,
            s->queue, s->queue_cap, (long long)s->drops, s->drops == 1 ? "" : "s",
            (long long)s->reconnects, s->reconnects == 1 ? "" : "s",
            s->failed ? ", failed" : "", status && s->ended && !s->failed ? ", ended" : "");
}

/* The one-line summary and a line per stream (its rates, end-to-end latency, drops and
 * reconnects); a run that failed says nothing of why it had no output, as its error line has. */
static void summary(const pipe_stats *s, int failed)
{
    double fps = s->seconds > 0 ? (double)s->frames / s->seconds : 0.0;
    fprintf(stderr, "cin-run: %lld frames, %lld output%s, %.1f fps, latency p50 %.2f ms "
            "p99 %.2f ms", (long long)s->frames, (long long)s->outputs,
            s->outputs == 1 ? "" : "s", fps, s->p50_ms, s->p99_ms);
    if (s->n_streams > 1)
        fprintf(stderr, ", %d streams on %d worker%s", s->n_streams, s->workers,
                s->workers == 1 ? "" : "s");
    if (s->drops)
        fprintf(stderr, ", %lld frames dropped (overload)", (long long)s->drops);
    if (s->damaged)
        fprintf(stderr, ", %lld damaged packets skipped", (long long)s->damaged);
    if (s->reconnects)
        fprintf(stderr, ", %lld reconnect%s", (long long)s->reconnects,
                s->reconnects == 1 ? "" : "s");
    if (s->skipped || s->masked)
        fprintf(stderr, ", %lld records skipped (malformed or late), %lld %s",
                (long long)s->skipped, (long long)s->masked,
                s->masked_what ? s->masked_what : "values set to 0");
    if (s->unnormalised)
        fprintf(stderr, ", %lld persons not normalised (root or bone missing)",
                (long long)s->unnormalised);
    fputc('\n', stderr);
    for (int i = 0; i < s->n_streams; i++)
        stream_line("stream ", &s->stream[i], 0);
    if (s->stopped)
        fprintf(stderr, "cin-run: stopped by signal; results so far are complete\n");
    int64_t longest = 0;
    for (int i = 0; i < s->n_streams; i++)
        longest = s->stream[i].frames > longest ? s->stream[i].frames : longest;
    if (s->outputs == 0 && !s->stopped && !failed)
        fprintf(stderr, "cin-run: warning: no output: the %s after %lld frames, the model's "
                "first output needs %d\n", s->n_streams > 1 ? "longest stream ended" :
                "source ended", (long long)longest, s->delay + 1);
}

typedef struct cli {
    int level, quiet;
    double status_every;        /* seconds between status lines */
    const char *path, *stats_json;
} cli;

/* One line per stream on stderr every --status seconds (not with --quiet). */
static void status_line(void *user, const pipe_status *s)
{
    char when[32];
    (void)user;
    snprintf(when, sizeof when, "%.1f s: ", s->seconds);
    for (int i = 0; i < s->n_streams; i++)
        stream_line(when, &s->stream[i], 1);
}

static json_t *latency_json(double p50, double p99, double max)
{
    return json_pack("{s:f, s:f, s:f}", "p50", p50, "p99", p99, "max", max);
}

static json_t *stream_json(const pipe_stream_stats *s)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:o, s:i, s:b}", "id",
                     s->id, "frames_in", (json_int_t)s->frames_in, "frames",
                     (json_int_t)s->frames, "outputs", (json_int_t)s->outputs, "drops",
                     (json_int_t)s->drops, "reconnects", (json_int_t)s->reconnects, "fps_in",
                     s->fps_in, "fps_out", s->fps_out, "step_ms",
                     latency_json(s->step_p50_ms, s->step_p99_ms, s->step_max_ms), "e2e_ms",
                     latency_json(s->e2e_p50_ms, s->e2e_p99_ms, s->e2e_max_ms), "queue",
                     s->queue_cap, "failed", s->failed);
}

/* --stats-json FILE: the summary's figures as one JSON object (written with jansson). */
static int write_stats(const char *file, const pipe_stats *s, int rc)
{
    json_t *streams = json_array();
    for (int i = 0; streams && i < s->n_streams; i++)
        json_array_append_new(streams, stream_json(&s->stream[i]));
    json_t *j = json_pack("{s:I, s:I, s:f, s:{s:f, s:f, s:f, s:f}, s:f, s:I, s:I, s:I, s:I, "
                          "s:I, s:I, s:i, s:i, s:b, s:b, s:o}", "frames", (json_int_t)s->frames,
                          "outputs", (json_int_t)s->outputs, "seconds", s->seconds,
                          "latency_ms", "p50", s->p50_ms, "p90", s->p90_ms, "p99", s->p99_ms,
                          "max", s->max_ms, "e2e_p99_ms", s->e2e_p99_ms, "drops",
                          (json_int_t)s->drops, "damaged", (json_int_t)s->damaged,
                          "reconnects", (json_int_t)s->reconnects, "skipped",
                          (json_int_t)s->skipped, "masked", (json_int_t)s->masked,
                          "unnormalised", (json_int_t)s->unnormalised, "delay", s->delay,
                          "workers", s->workers, "stopped", s->stopped, "ok", rc == 0,
                          "streams", streams);
    errno = 0;
    int bad = !j || json_dump_file(j, file, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0;
    json_decref(j);
    if (bad)
        fprintf(stderr, "cin-run: --stats-json: cannot write '%s': %s\n", file,
                errno ? strerror(errno) : "out of memory");
    return bad;
}

/* Refuses a --stats-json path that could not be written at the end of the run: a directory,
 * or a file in a directory that is missing or not writable. */
static int stats_path_ok(const char *file)
{
    struct stat st;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    int is_dir = stat(file, &st) == 0 && S_ISDIR(st.st_mode);
    if (!is_dir && access(dirname(dir), W_OK) == 0)
        return 1;
    fprintf(stderr, "cin-run: --stats-json: cannot write '%s': %s\n", file,
            is_dir ? "is a directory" : strerror(errno));
    return 0;
}

/* 0 to run, 1 after --help, 2 on a bad command line (already reported). */
static int parse_args(int argc, char **argv, cli *c)
{
    *c = (cli){.level = CIN_LOG_WARN, .status_every = 10.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--quiet") == 0) {
            c->quiet = 1;
        } else if (strcmp(a, "--log-level") == 0 && v && (c->level = parse_level(v)) >= 0) {
            i++;
        } else if (strcmp(a, "--status") == 0 && v &&
                   (c->status_every = strtod(v, &end)) > 0 && !*end) {
            i++;
        } else if (strcmp(a, "--stats-json") == 0 && v) {
            c->stats_json = argv[++i];
        } else if (a[0] != '-' && !c->path) {
            c->path = a;
        } else {
            fprintf(stderr, "cin-run: bad argument: %s%s%s%s\n", a, v ? " " : "", v ? v : "",
                    strcmp(a, "--status") == 0 ? " (expected a positive number of seconds)"
                    : strcmp(a, "--log-level") == 0 ? " (expected error, warn, info or debug)"
                                                    : "");
            usage(stderr);
            return 2;
        }
    }
    if (!c->path)
        usage(stderr);
    return c->path ? 0 : 2;
}

int main(int argc, char **argv)
{
    cli a;
    int parsed = parse_args(argc, argv, &a);
    if (parsed)
        return parsed == 1 ? 0 : 2;
    if (a.stats_json && !stats_path_ok(a.stats_json))
        return 2;
    /* One stream per thread; BLAS threads on per-frame GEMMs cost more than they save. */
    openblas_set_num_threads(1);
    /* cin reports decode failures itself; libav's own lines only from --log-level info */
    video_set_log_level(a.level);
    cin_err err = {0};
    pipe_config *cfg;
    if (pipe_config_load(a.path, &cfg, &err)) {
        fprintf(stderr, "cin-run: %s\n", err.msg);
        return 1;
    }
    pipe_stats stats;
    pipe_run_opts ro = {.log = log_stderr, .log_level = a.level, .stop = &stop_requested,
                        .status = a.quiet ? NULL : status_line, .status_every = a.status_every};
    catch_stop_signals();
    int rc = pipe_run(cfg, &ro, &stats, &err);
    if (rc)
        fprintf(stderr, "cin-run: %s\n", err.msg);
    /* what was done before a failure, and what the source held */
    if (!rc || stats.frames > 0 || stats.skipped > 0)
        summary(&stats, rc != 0);
    if (!rc && a.level >= CIN_LOG_WARN)
        note_seeded(cfg);
    int bad_stats = a.stats_json ? write_stats(a.stats_json, &stats, rc) : 0;
    pipe_config_free(cfg);
    return rc || bad_stats ? 1 : 0;
}
