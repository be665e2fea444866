/* Latency histograms for runs that last weeks: fixed memory, log-spaced buckets 1 % wide from
 * 1 microsecond to 1000 seconds, so a percentile is within 1 % of the exact one (the observed
 * minimum and maximum are exact). Not thread-safe; the pipeline updates them under its lock. */
#ifndef CIN_LATHIST_H
#define CIN_LATHIST_H

#include <stdint.h>

#define LH_BUCKETS 2084     /* ceil(log(1e9) / log(1.01)) + 1: 1e-3 ms to 1e6 ms */

typedef struct lathist {
    int64_t count;
    double min, max;        /* ms; min > max while empty */
    uint32_t bucket[LH_BUCKETS];
} lathist;

/* Empties h. */
void lh_reset(lathist *h);

/* Adds one latency of ms milliseconds; values outside the range go to the end buckets. */
void lh_add(lathist *h, double ms);

/* Adds every value of src to dst. */
void lh_merge(lathist *dst, const lathist *src);

/* The q-quantile (q in [0, 1]) in ms: the value of rank floor((count - 1) q) in sorted order,
 * to within 1 %; 0 for an empty histogram. */
double lh_quantile(const lathist *h, double q);

#endif
