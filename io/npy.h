/* NumPy .npy arrays of float32: test inputs and goldens are read from them, and the sinks write
 * per-frame outputs to them. The streaming writer appends rows (one per frame) and keeps the file
 * a valid .npy of the rows written so far after every flush.
 *
 *     npy_writer *w;
 *     cin_err err;
 *     int64_t row[1] = {400};
 *     if (npy_writer_open("logits.npy", 1, row, &w, &err) != 0)
 *         return err.code;
 *     for each frame:
 *         npy_writer_append(w, logits, &err);     (400 floats)
 *     npy_writer_close(w, &err);                  (logits.npy holds [frames, 400])
 *
 *     int ndim; int64_t shape[NPY_MAX_DIMS]; float *x;
 *     if (npy_read_f32("clip.npy", &ndim, shape, &x, &err) == 0) { ...; free(x); }
 *
 * Every call returns 0 or a negative CIN_E_*; err receives a message naming the file and the
 * field with the expected and found values.
 */
#ifndef CIN_IO_NPY_H
#define CIN_IO_NPY_H

#include <stdint.h>

#include "error.h"

#define NPY_MAX_DIMS 8

/* Reads a C-order little-endian float32 array ('<f4') from a .npy file of version 1.0, 2.0 or
 * 3.0. On success *ndim (0 .. NPY_MAX_DIMS), shape[0 .. *ndim) and *data are set; *data is
 * malloc'd (never NULL, even for an empty array) and the caller frees it. On error *data is
 * NULL. Errors: CIN_E_IO (cannot open or read), CIN_E_FORMAT (bad magic, malformed header,
 * dtype other than '<f4', data size not matching the shape), CIN_E_UNSUPPORTED (another format
 * version, fortran_order True, more than NPY_MAX_DIMS dimensions), CIN_E_NOMEM.
 * Thread-safe. */
int npy_read_f32(const char *path, int *ndim, int64_t shape[NPY_MAX_DIMS], float **data,
                 cin_err *err);

/* Writes shape[0 .. ndim) floats as a version 1.0 '<f4' C-order array, replacing path.
 * The write is not atomic: a failure can leave a partial file. Errors: CIN_E_INVAL, CIN_E_IO.
 * Thread-safe for distinct paths. */
int npy_write_f32(const char *path, int ndim, const int64_t *shape, const float *data,
                  cin_err *err);

/* A file being written row by row: an array [rows, row_shape...] whose row count is known only
 * at the end. Header space for any row count is reserved at open, so the data never moves.
 * One writer must not be used by two threads at once. */
typedef struct npy_writer npy_writer;

/* Creates (or truncates) path for rows of shape row_shape[0 .. row_ndim), 0 <= row_ndim < 8;
 * row_shape may be NULL when row_ndim is 0. The file is a valid empty array right away.
 * Errors: CIN_E_INVAL, CIN_E_IO, CIN_E_NOMEM. */
int npy_writer_open(const char *path, int row_ndim, const int64_t *row_shape, npy_writer **out,
                    cin_err *err);

/* Appends one row of prod(row_shape) floats. After a write error every later call fails. */
int npy_writer_append(npy_writer *w, const float *row, cin_err *err);

/* Flushes buffered rows and rewrites the header with the current row count, so the file on disk
 * is a complete .npy of the rows appended so far (no fsync: durable against a crash of this
 * process, not of the machine). */
int npy_writer_flush(npy_writer *w, cin_err *err);

/* Flushes, closes and frees w; w is freed even when an error is returned. NULL is a no-op. */
int npy_writer_close(npy_writer *w, cin_err *err);

#endif
