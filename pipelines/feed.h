/* One source of a pipeline: the video, npy array, feature rows or skeleton rows a pipe_source
 * names, read as frames preprocessed for the model. A live video source that ends or fails
 * is reopened with backoff (source.reconnect), and the first frame after the gap says so, so
 * that the streams start again. A file may be read at the pace of its timestamps
 * (source.realtime). A feed is read by one thread at a time; distinct feeds are independent.
 *
 *     feed_opts o = {.cfg = cfg, .src = &cfg->sources[0], .model = &info, .log = &lg,
 *                    .stop = &stop};
 *     feed *f;
 *     if (feed_open(&o, &f, &err) == 0) {
 *         feed_frame fr;
 *         while ((rc = feed_read(f, frame, &fr, &err)) == 1)
 *             ...;                // 0: the end, or stopped; < 0: err names the source
 *         feed_close(f);
 *     }
 */
#ifndef CIN_FEED_H
#define CIN_FEED_H

#include <stdatomic.h>

#include "cin.h"
#include "config.h"
#include "model.h"

typedef struct feed feed;

typedef struct feed_opts {
    const pipe_config *cfg;
    const pipe_source *src;
    const cin_model_info *model;    /* the first stage's: the frames it takes */
    const cin_logger *log;
    const atomic_int *stop;         /* non-zero: a wait for input or a reconnection gives up */
} feed_opts;

typedef struct feed_frame {
    int64_t index;      /* the frame's index in the source, counted on across reconnections */
    double pts;         /* seconds */
    int reset;          /* 1 for the first frame after a reconnection */
    double due_ms;      /* source.realtime: when the frame was due (feed_now_ms), even if the
                           reader fell behind; else 0 */
} feed_frame;

/* What a feed counted, for the summary. */
typedef struct feed_counts {
    int64_t damaged;        /* packets or frames the decoder skipped */
    int64_t reconnects;
    int64_t skipped;        /* feature or skeleton records skipped: malformed, or late */
    int64_t masked;         /* values or joints set to 0 */
    const char *masked_what;
    int64_t unnormalised;   /* skeleton persons left uncentred or unscaled */
} feed_counts;

/* Opens the source; errors name the pipeline file and the source's key. */
int feed_open(const feed_opts *o, feed **out, cin_err *err);

/* Reads the next frame into frame (the model's frame size): 1 with a frame, 0 at the end or
 * when stopped, < 0 on an error (a live source: once reconnecting gave up). */
int feed_read(feed *f, float *frame, feed_frame *out, cin_err *err);

void feed_get_counts(const feed *f, feed_counts *out);

/* 1 when the feed ended because of a stop request. */
int feed_stopped(const feed *f);

void feed_close(feed *f);

/* The monotonic clock the feeds keep time with, in ms. */
double feed_now_ms(void);

#endif
