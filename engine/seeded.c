/* Deterministic tensors from a seed and a name (see seeded.h for the exact recipe). */
#include "seeded.h"

#include <math.h>
#include <string.h>

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t splitmix64_finalize(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cin_seeded_fill(float *dst, size_t n, uint64_t seed, const char *name, double lo,
                     double hi)
{
    uint64_t key = seed ^ fnv1a64(name);
    for (size_t i = 0; i < n; i++) {
        uint64_t z = splitmix64_finalize(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);
        double u = (double)(z >> 40) * (1.0 / 16777216.0);
        dst[i] = (float)(lo + (hi - lo) * u);
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int cin_seeded_range(const char *name, int ndim, const int64_t *shape, double *lo, double *hi)
{
    if (strstr(name, "edge_importance.") || ends_with(name, "graph_attn") ||
        ends_with(name, "running_var") || (ends_with(name, "weight") && ndim == 1)) {
        *lo = 0.5;
        *hi = 1.5;
        return 0;
    }
    if (ends_with(name, "_token") || ends_with(name, "_embedding")) {
        *lo = -0.5;
        *hi = 0.5;
        return 0;
    }
    if (ends_with(name, "bias") || ends_with(name, "running_mean")) {
        *lo = -0.2;
        *hi = 0.2;
        return 0;
    }
    if (ends_with(name, "weight") && ndim >= 2) {
        double fan_in = 1.0;
        for (int d = 1; d < ndim; d++)
            fan_in *= (double)shape[d];
        *hi = sqrt(3.0 / fan_in);
        *lo = -*hi;
        return 0;
    }
    return -1;
}
