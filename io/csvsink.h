/* The CSV result sink: one row per model output, for spreadsheets and pandas. The header names
 * the columns; rows are batched and written whole through io_uring (urfile.h), like the
 * JSON-lines sink.
 *
 *     csv_sink *s;
 *     if (csv_sink_open("results.csv", 3, 1, 0.25, &s, &err) != 0)   // "-": stdout
 *         return err.code;
 *     // source,frame,pts,wall,latency_ms,index_1,label_1,score_1,index_2,label_2,...
 *     csv_sink_write(s, &result, &err);                              // see result.h
 *     // cam1,41,4.1,1764820800.125,3.200,0,abseiling,0.13,...
 *     csv_sink_tick(s, now_seconds, &err);
 *     csv_sink_close(s, &err);
 *
 * Fields follow RFC 4180: a label or source id holding a comma, a double quote, a line break
 * or a leading or trailing space is quoted, its quotes doubled. Scores print in the fewest
 * digits that read back as the same float; a number that is not finite is an empty field
 * (pandas reads NaN).
 * A sink is not thread-safe: one thread writes to it at a time.
 */
#ifndef CIN_IO_CSVSINK_H
#define CIN_IO_CSVSINK_H

#include <stdint.h>

#include "error.h"
#include "result.h"

typedef struct csv_sink csv_sink;

/* Creates (truncates) path ("-": stdout) and writes the header for k classes a row, with
 * label columns when with_labels; flush_every as for urfile_open. Errors: CIN_E_INVAL (k < 1),
 * CIN_E_IO, CIN_E_NOMEM; *out is NULL on error. */
int csv_sink_open(const char *path, int k, int with_labels, double flush_every, csv_sink **out,
                  cin_err *err);

/* Appends one row for r, whose k must be the sink's; r->labels must be given exactly when the
 * sink has label columns, and hold every r->idx[i]. CIN_E_INVAL (nothing written) for another
 * k, a negative index or a missing label. */
int csv_sink_write(csv_sink *s, const sink_result *r, cin_err *err);

/* Writes rows that have waited flush_every seconds; now is monotonic seconds. */
int csv_sink_tick(csv_sink *s, double now, cin_err *err);

/* Flushes, closes (stdout stays open) and frees s; the first error. NULL is allowed. */
int csv_sink_close(csv_sink *s, cin_err *err);

#endif
