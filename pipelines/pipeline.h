/* A pipeline run: every source read on its own thread into a bounded queue, the streams of
 * one shared model stepped by worker threads, results post-processed and written to every
 * sink. */
#ifndef CIN_PIPELINE_H
#define CIN_PIPELINE_H

#include <stdatomic.h>

#include "cin.h"
#include "config.h"

/* One source's figures: over the whole run in pipe_stats, since the last report in
 * pipe_status. Latencies: `step` is the model's time for a frame, `e2e` the time from the
 * frame's decoding to its result, queueing included. */
typedef struct pipe_stream_stats {
    char id[PIPE_MAX_ID];       /* the source's id */
    int64_t frames_in;          /* frames the source gave */
    int64_t frames;             /* frames fed to the model */
    int64_t outputs;            /* results written */
    int64_t drops;              /* frames dropped from a full queue (overload keep-newest) */
    int64_t reconnects;         /* live source reopened after its end, an error or a timeout */
    int queue, queue_cap;       /* frames waiting now, and at most */
    double fps_in, fps_out;     /* frames read and results written per second */
    double step_p50_ms, step_p99_ms, step_max_ms;
    double e2e_p50_ms, e2e_p99_ms, e2e_max_ms;
    int failed;                 /* the stream ended on an error */
    int ended;                  /* its source ended and every frame read was stepped */
} pipe_stream_stats;

typedef struct pipe_stats {
    int64_t frames;         /* frames fed to the model, all streams */
    int64_t outputs;        /* outputs written */
    int64_t drops;          /* frames dropped from full queues */
    int64_t damaged;        /* packets or frames the decoder skipped */
    int64_t reconnects;     /* live sources reopened after their end, an error or a timeout */
    int64_t skipped;        /* feature or skeleton records skipped: malformed, or late */
    int64_t masked;         /* set to 0 as NaN, infinite or missing: feature values, or
                               skeleton joints (all of a joint's values at once) */
    const char *masked_what;    /* what masked counts, for the summary */
    int64_t unnormalised;   /* skeleton persons left uncentred or unscaled */
    double seconds;         /* wall time from the first source opened to the last result */
    double p50_ms, p90_ms, p99_ms, max_ms;  /* model latency per frame, all streams */
    double e2e_p99_ms;      /* decoding to result, all streams */
    int delay;              /* frames before the model's first continual output */
    int stopped;            /* 1 if *stop ended the run before its sources did */
    int workers;            /* threads that stepped the streams */
    char layout[32];        /* weights layout found */
    int n_streams;
    pipe_stream_stats stream[PIPE_MAX_SOURCES];
} pipe_stats;

/* A periodic report while the run goes on. */
typedef struct pipe_status {
    double seconds;             /* since the run started */
    int n_streams;
    const pipe_stream_stats *stream;    /* figures since the previous report */
} pipe_status;

typedef void (*pipe_status_fn)(void *user, const pipe_status *s);

typedef struct pipe_run_opts {
    cin_log_fn log;                     /* NULL: silent; called from several threads */
    void *log_user;
    int log_level;
    const atomic_int *stop;             /* when set to 1 (by a signal handler), the sources
                                           stop, the frames already read are stepped and the
                                           run ends; at 2 or more, the frames still queued are
                                           left; NULL: never */
    pipe_status_fn status;              /* called every status_every seconds, from the thread
                                           that called pipe_run; NULL: never */
    void *status_user;
    double status_every;
} pipe_run_opts;

/* Runs the pipeline to the end of its sources or until *o->stop. Sinks are closed (and so
 * complete) whether or not the run succeeds; a stopped run is a success. A source that fails
 * ends its own stream only; the run then returns its error once the others are done. o may
 * be NULL. */
int pipe_run(const pipe_config *c, const pipe_run_opts *o, pipe_stats *stats, cin_err *err);

#endif
