/* The JSON-lines result sink: one JSON object per model output, one output per line, so a
 * consumer can follow the file as it grows (tail -f | jq). Lines are batched and written
 * through io_uring (urfile.h) whole, never split, so the file holds only complete lines; a
 * line waits at most flush_every seconds when jsonl_tick is called.
 *
 *     jsonl_sink *s;
 *     if (jsonl_open("results.jsonl", 0.25, &s, &err) != 0)  // "-" writes to stdout
 *         return err.code;
 *     jsonl_write(s, &result, &err);                          // see result.h
 *     jsonl_tick(s, now_seconds, &err);                       // once a frame
 *     // {"source":"cam1","frame":41,"pts":4.1,"wall":1764820800.125,
 *     //  "topk":[{"label":"abseiling","index":0,"score":0.13},...],"latency_ms":3.2}
 *     jsonl_close(s, &err);
 *
 * A sink is not thread-safe: one thread writes to it at a time.
 */
#ifndef CIN_JSONL_H
#define CIN_JSONL_H

#include <stdint.h>

#include "error.h"
#include "result.h"

typedef struct jsonl_sink jsonl_sink;

/* Creates (truncates) the file at path, or uses stdout for "-"; see urfile_open for
 * flush_every. Returns 0 or CIN_E_IO / CIN_E_NOMEM; *out is NULL on error. */
int jsonl_open(const char *path, double flush_every, jsonl_sink **out, cin_err *err);

/* Appends one line for r: {"source", "frame", "pts", "wall", "topk": [{"label", "index",
 * "score"}, ...], "latency_ms"}. r->labels, when not NULL, adds "label" to each entry (it must
 * hold every r->idx[i]; each label and the source id must be UTF-8, else CIN_E_INVAL and
 * nothing is written). Scores print with the fewest digits that read back as the same float;
 * a non-finite number prints as null. Returns 0, CIN_E_INVAL, CIN_E_IO or CIN_E_NOMEM. */
int jsonl_write(jsonl_sink *s, const sink_result *r, cin_err *err);

/* Writes lines that have waited flush_every seconds (urfile_tick); now is monotonic seconds.
 * Returns 0 or CIN_E_IO. */
int jsonl_tick(jsonl_sink *s, double now, cin_err *err);

/* Flushes, closes the file (stdout is flushed, not closed) and frees s, also when the flush
 * or close fails (then CIN_E_IO). NULL is allowed. */
int jsonl_close(jsonl_sink *s, cin_err *err);

#endif
