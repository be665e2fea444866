/* The sinks of a pipeline: JSON lines and CSV (written through io_uring, io/urfile.h) and npy.
 * File sinks write to "<path>.part-<pid>" and are renamed over <path> when closed, so a run
 * that fails before its first frame leaves an existing results file as it was. Not locked:
 * the pipeline serialises the calls, one result at a time, so each stream's results are in
 * its frame order.
 *
 *     sinks *s;
 *     sinks_spec sp = {.out_size = classes, .topk = 5, .labelled = 1};
 *     if (sinks_open(cfg, &sp, &s, &err) == 0) {
 *         sinks_write(s, &res, logits, &err);   // per frame; logits NULL: no output
 *         sinks_tick(s, now_s, &err);           // now and then: submit what waited long
 *         sinks_close(s, 1, &err);              // complete files in place
 *     }
 */
#ifndef CIN_SINKS_H
#define CIN_SINKS_H

#include "config.h"
#include "result.h"

typedef struct sinks sinks;


/* What the results hold. */
typedef struct sinks_spec {
    int out_size;       /* classes: the length of an npy row */
    int topk;           /* classes listed per result: CSV columns */
    int labelled;       /* results carry label names: CSV label columns */
} sinks_spec;

/* Opens every sink of c. Errors name the sink's key and path; sinks opened before the
 * failing one are closed and removed. */
int sinks_open(const pipe_config *c, const sinks_spec *sp, sinks **out, cin_err *err);

/* One input frame: a row to npy sinks (row, or NaN when row is NULL: the frame gave no
 * output); and, when row is not NULL, a line to JSON-lines and CSV sinks. */
int sinks_write(sinks *s, const sink_result *res, const float *row, cin_err *err);

/* Hands the text sinks the time (seconds) so that results waiting in a write buffer longer
 * than the sink's flush interval are submitted; never waits for the disk. */
int sinks_tick(sinks *s, double now, cin_err *err);

/* Closes and frees every sink. The files of sinks that replace theirs (pipe_sink.replace)
 * are renamed over the paths they name when keep, and removed otherwise; sinks written in
 * place stay as written. A sink whose writes failed is kept too: a text sink was cut back to
 * its whole records and an npy sink holds the rows of its last flush, so results already
 * written are not lost. Returns the first error (err may be NULL). NULL is allowed. */
int sinks_close(sinks *s, int keep, cin_err *err);

#endif
