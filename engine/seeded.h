/* Deterministic tensors from a seed and a name. The same values are produced by
 * tests/ref/seeded.py, so C tests and PyTorch references share weights and inputs without
 * committing them, and `make run` has a model before a real checkpoint is converted.
 *
 * Element i of tensor `name` under `seed`:
 *   key = seed XOR fnv1a64(name)
 *   z   = splitmix64_finalize(key + (i + 1) * 0x9E3779B97F4A7C15)   (all mod 2^64)
 *   u   = (z >> 40) * 2^-24                                         (in [0, 1))
 *   v   = (float)(lo + (hi - lo) * u)                               (computed in double)
 */
#ifndef CIN_SEEDED_H
#define CIN_SEEDED_H

#include <stddef.h>
#include <stdint.h>

void cin_seeded_fill(float *dst, size_t n, uint64_t seed, const char *name, double lo,
                     double hi);

/* The range a checkpoint tensor is drawn from, by its name and shape:
 *   weight with ndim >= 2: +-sqrt(3 / fan_in), fan_in = prod(shape[1:]) (unit variance gain:
 *     deep models stay well conditioned in float32, so goldens can hold to 1e-4)
 *   weight with ndim == 1 (a norm's scale), running_var, edge_importance.N, *graph_attn (ST-GCN's
 *     learned edge masks): [0.5, 1.5]
 *   bias, running_mean: [-0.2, 0.2]
 *   *_token, *_embedding (class tokens, learned positions): [-0.5, 0.5]
 * Returns 0, or -1 for a name it has no rule for. */
int cin_seeded_range(const char *name, int ndim, const int64_t *shape, double *lo, double *hi);

#endif
