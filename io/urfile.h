/* An append-only output file written through io_uring (liburing), for the result sinks: the
 * inference thread appends whole records into a buffer and never waits for the disk while the
 * other buffer is being written; writes stay in order, one in flight at a time.
 *
 *     urfile *f;
 *     if (urfile_open("results.jsonl", 0.2, &f, &err) != 0)   // "-": stdout
 *         return err.code;
 *     for each result:
 *         urfile_append(f, line, len, &err);   // copies; submits a full buffer
 *         urfile_tick(f, now_seconds);         // submits a buffer older than 0.2 s
 *     urfile_close(f, &err);                   // waits for every byte, then closes
 *
 * Two buffers of URFILE_BUFFER bytes are allocated at open; appending copies into the one being
 * filled. When it is full (or the flush interval has passed) it is submitted and the other one
 * is filled; append waits only when that one is still being written, i.e. when the disk or the
 * pipe is slower than the results. A record is never split across writes unless it is longer
 * than a buffer, so bytes written are whole records.
 *
 * Errors are sticky: after a failed write (disk full, a closed pipe: EPIPE, as cin-run ignores
 * SIGPIPE) every call returns CIN_E_IO with the first failure's reason. A regular file is then
 * cut back to the end of the last record the kernel took whole (each urfile_append is one
 * record), so what was written before the disk filled stays. urfile_acked() says how many
 * bytes were written in whole buffers.
 *
 * A urfile is not thread-safe: one thread appends to it at a time. Files are independent.
 */
#ifndef CIN_IO_URFILE_H
#define CIN_IO_URFILE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define URFILE_BUFFER (256 << 10)

typedef struct urfile urfile;

/* Creates (truncates) path, or writes to stdout for "-". flush_every (seconds, >= 0) is the
 * longest a record may wait in a buffer when urfile_tick is called; 0 submits each append at
 * once when no write is in flight, else with the next append or tick.
 * Errors: CIN_E_IO (cannot open, no io_uring), CIN_E_NOMEM, CIN_E_INVAL. */
int urfile_open(const char *path, double flush_every, urfile **out, cin_err *err);

/* Appends n bytes (copied). Returns 0 or CIN_E_IO. */
int urfile_append(urfile *f, const void *data, size_t n, cin_err *err);

/* Reaps finished writes without waiting, and submits the buffer being filled when it has
 * waited flush_every seconds since it was last submitted. now is a monotonic time in seconds.
 * Returns 0 or CIN_E_IO. */
int urfile_tick(urfile *f, double now, cin_err *err);

/* Submits what is buffered and waits until every byte is written. Returns 0 or CIN_E_IO. */
int urfile_flush(urfile *f, cin_err *err);

/* Bytes the kernel has acknowledged so far. */
int64_t urfile_acked(const urfile *f);

/* Flushes, closes the file (stdout is flushed, not closed) and frees f, also when the flush
 * fails. Returns the first error. NULL is allowed. */
int urfile_close(urfile *f, cin_err *err);

#endif
