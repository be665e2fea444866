/* Reading and writing safetensors checkpoints: the weights every model is loaded from.
 * A file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype,
 * shape and byte range, then the data block the ranges point into.
 *
 *     st_file *f;
 *     cin_err err;
 *     if (st_open("x3d_s.safetensors", &f, &err) != 0) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return err.code;
 *     }
 *     int64_t shape[2] = {400, 2048};
 *     float *w = malloc(400 * 2048 * sizeof *w);
 *     int rc = st_read_f32(f, "head.proj.weight", 2, shape, w, &err);
 *     st_close(f);
 *
 * Every call returns 0 or a negative CIN_E_*; the functions taking a cin_err fill it with a
 * message naming the file, the tensor and the expected and found values.
 */
#ifndef CIN_IO_SAFETENSORS_H
#define CIN_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define ST_MAX_DIMS 8

/* An open checkpoint. Immutable once st_open returns, so any number of threads may call the
 * const functions below on one handle at the same time. */
typedef struct st_file st_file;

typedef struct st_info {
    const char *name;   /* owned by the st_file, valid until st_close */
    const char *dtype;  /* "F32", "BF16", ...: a static string */
    int ndim;           /* 0 .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;      /* numel * dtype size */
} st_info;

/* Maps the file at path read-only and validates the whole header up front: header length,
 * JSON syntax, every entry's dtype, shape and data_offsets, sizes and overlaps. Nothing is
 * checked lazily later. On success *out owns the mapping; free it with st_close.
 * The mapping is shared with the file: truncating the file on disk while it is open is not
 * supported (the kernel then raises SIGBUS on access).
 * Errors: CIN_E_IO (cannot open or map, with strerror), CIN_E_FORMAT (malformed header),
 * CIN_E_UNSUPPORTED (a tensor with more than ST_MAX_DIMS dimensions), CIN_E_NOMEM. */
int st_open(const char *path, st_file **out, cin_err *err);

/* Unmaps and frees f; every st_info and string obtained from f becomes invalid. NULL is a no-op.
 * The caller must make sure no other thread still uses f. */
void st_close(st_file *f);

/* Number of tensors, not counting the __metadata__ entry. */
int st_count(const st_file *f);

/* The i-th tensor in header order, 0 <= i < st_count(f); CIN_E_INVAL when i is out of range. */
int st_info_at(const st_file *f, int i, st_info *out);

/* Looks a tensor up by name (O(log n)); CIN_E_NOTFOUND names the file and the tensor.
 * out may be NULL to test for presence only. */
int st_find(const st_file *f, const char *name, st_info *out, cin_err *err);

/* Copies F32 tensor `name` into dst, which must hold nbytes. When ndim >= 0 the tensor's shape
 * must be exactly shape[0 .. ndim), else CIN_E_SHAPE; ndim < 0 skips the check (shape unused).
 * Errors: CIN_E_NOTFOUND, CIN_E_SHAPE, CIN_E_FORMAT (dtype is not F32), CIN_E_INVAL. */
int st_read_f32(const st_file *f, const char *name, int ndim, const int64_t *shape, float *dst,
                cin_err *err);

/* The __metadata__ value for key, or NULL. The string is owned by f. */
const char *st_meta(const st_file *f, const char *key);

/* The path f was opened with (a copy owned by f). */
const char *st_path(const st_file *f);

/* One tensor to write: name, shape[0 .. ndim) and numel floats in row-major order. */
typedef struct st_out {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;  /* may be NULL when numel == 0 */
} st_out;

/* Writes n F32 tensors, in the given order, and optional metadata
 * (meta = {"key", "value", ..., NULL}, or NULL for none) to path. The header is padded with
 * spaces to a multiple of 8 bytes, as the reference writer does, so the data block and every
 * F32 tensor in it are 4-byte aligned. The file is written to a temporary file in the same
 * directory, fsynced and renamed over path, so readers see either the old or the new file.
 * Errors: CIN_E_INVAL (bad shape, duplicate or reserved name, duplicate metadata key),
 * CIN_E_IO (with strerror), CIN_E_NOMEM. Thread-safe for distinct paths. */
int st_write(const char *path, const st_out *tensors, int n, const char *const *meta,
             cin_err *err);

#endif
