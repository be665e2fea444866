/* Helpers shared by the test suites: golden files, tolerances, temporary files. */
#ifndef CIN_TEST_UTIL_H
#define CIN_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* max |a - b| / max(1, max |b|): the relative error every golden test bounds by 1e-4. */
double tu_rel_err(const float *a, const float *b, size_t n);

/* A fresh path under a per-run temporary directory; the returned string lives until exit. */
const char *tu_tmp_path(const char *name);

/* The whole file at path (malloc'd, NUL-terminated one byte past the end), its size in *len;
 * NULL if it cannot be read. */
unsigned char *tu_read_file(const char *path, size_t *len);

/* Writes len bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);

/* The skeleton goldens' input: frames x [3][25][2] (values, NTU joints, persons) drawn in
 * [-1, 1] from the seeded generator under "input", as tests/ref/stgcn.py draws it, laid out as
 * model frames [frames][3][1][2 * 25] (persons side by side). *sum gets the sum of the values
 * drawn, which the goldens record. malloc'd; NULL if out of memory. */
float *tu_skeleton_input(int frames, uint64_t seed, double *sum);

#endif
