/* Helpers shared by the test suites: golden files, tolerances, temporary files. */
#ifndef CIN_TEST_UTIL_H
#define CIN_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

/* max |a - b| / max(1, max |b|): the relative error every golden test bounds by 1e-4. */
double tu_rel_err(const float *a, const float *b, size_t n);

/* A fresh path under a per-run temporary directory; the returned string lives until exit. */
const char *tu_tmp_path(const char *name);

/* The whole file at path (malloc'd, NUL-terminated one byte past the end), its size in *len;
 * NULL if it cannot be read. */
unsigned char *tu_read_file(const char *path, size_t *len);

/* Writes len bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);

/* fork(), with the child remembered until tu_reap, so that tu_kill_children can end it if
 * the run is cut short. */
int tu_fork(void);

/* Waits up to secs for child pid; if it is still running then, kills it (and its process
 * group, if it leads one) so that no test outlives its bound. Returns its wait status, or -1
 * when it had to be killed. */
int tu_reap(int pid, double secs);

/* Kills every child tu_fork made and tu_reap has not reaped, with their process groups; only
 * async-signal-safe calls, for the runner's time limit. */
void tu_kill_children(void);

/* Copies the video stream of `in` to `out` (container from its name) without decoding: the
 * first max_packets packets (<= 0: all), those from packet gap_after on (< 0: none) moved
 * gap_secs later. Returns 0 on success. */
int tu_remux_video(const char *in, const char *out, int max_packets, int gap_after,
                   double gap_secs);

/* The skeleton goldens' input: frames x [3][25][2] (values, NTU joints, persons) drawn in
 * [-1, 1] from the seeded generator under "input", as tests/ref/stgcn.py draws it, laid out as
 * model frames [frames][3][1][2 * 25] (persons side by side). *sum gets the sum of the values
 * drawn, which the goldens record. malloc'd; NULL if out of memory. */
float *tu_skeleton_input(int frames, uint64_t seed, double *sum);

#define TU_SKEL_MAX 400     /* tensors of a skeleton model checkpoint, at most */

/* The reference's tensors of a skeleton model checkpoint, as tests/ref/stgcn.py builds them:
 * one per line "name 3x25x25" of the golden list file `names` (golden/stgcn_names_stgcn.txt,
 * golden/agcn_names_coskel.txt, ...), each drawn from the seeded generator under its name,
 * the adjacency entries (A, *gcn.A) holding the NTU spatial graph. Fills t (names and data
 * malloc'd; free with tu_skel_free) and returns their count, or -1 if the list is missing. */
int tu_skel_tensors(const char *names, uint64_t seed, st_out t[TU_SKEL_MAX]);
void tu_skel_free(st_out *t, int n);

#endif
