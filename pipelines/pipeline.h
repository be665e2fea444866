/* A pipeline run: frames from a source (video through libav*, or a preprocessed npy array),
 * through a model in continual or clip mode, post-processed, written to every sink. */
#ifndef CIN_PIPELINE_H
#define CIN_PIPELINE_H

#include <signal.h>

#include "cin.h"
#include "config.h"

typedef struct pipe_stats {
    int64_t frames;         /* frames fed to the model */
    int64_t outputs;        /* outputs written */
    int64_t damaged;        /* packets or frames the decoder skipped */
    int64_t reconnects;     /* live source reopened after its end, an error or a timeout */
    int64_t skipped;        /* feature or skeleton records skipped: malformed, or late */
    int64_t masked;         /* set to 0 as NaN, infinite or missing: feature values, or
                               skeleton joints (all of a joint's values at once) */
    const char *masked_what;    /* what masked counts, for the summary */
    int64_t unnormalised;   /* skeleton persons left uncentred or unscaled */
    double seconds;         /* wall time of the frame loop */
    double p50_ms, p90_ms, p99_ms, max_ms;  /* per-frame model latency */
    int delay;              /* frames before the model's first continual output */
    int stopped;            /* 1 if *stop ended the run before its source did */
    char layout[32];        /* weights layout found */
} pipe_stats;

/* A periodic report while the run goes on: figures since the previous report. */
typedef struct pipe_status {
    double seconds;             /* since the run started */
    double fps_in, fps_out;     /* frames read and results written per second */
    double p50_ms, p99_ms;      /* model latency per frame */
    int64_t frames, outputs;    /* totals so far */
    int64_t reconnects;         /* total so far */
} pipe_status;

typedef void (*pipe_status_fn)(void *user, const pipe_status *s);

typedef struct pipe_run_opts {
    cin_log_fn log;                     /* NULL: silent */
    void *log_user;
    int log_level;
    const volatile sig_atomic_t *stop;  /* when set non-zero (by a signal handler), the run
                                           ends after the frame in hand; NULL: never */
    pipe_status_fn status;              /* called every status_every seconds; NULL: never */
    void *status_user;
    double status_every;
} pipe_run_opts;

/* Runs the pipeline to the end of its source or until *o->stop. Sinks are closed (and so
 * complete) whether or not the run succeeds; a stopped run is a success. o may be NULL. */
int pipe_run(const pipe_config *c, const pipe_run_opts *o, pipe_stats *stats, cin_err *err);

#endif
