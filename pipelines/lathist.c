/* Latency histograms: bucket i holds values in [1e-3 * 1.01^(i-1), 1e-3 * 1.01^i) ms, bucket 0
 * everything below 1 microsecond. A quantile reports its bucket's geometric centre, clamped to
 * the observed range; the lowest and highest ranks are the observed minimum and maximum. */
#include "lathist.h"

#include <math.h>
#include <string.h>

#define LH_LOW_MS 1e-3
#define LH_RATIO 1.01

void lh_reset(lathist *h)
{
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
}

static int lh_index(double ms)
{
    if (!(ms >= LH_LOW_MS))
        return 0;
    double i = floor(log(ms / LH_LOW_MS) / log(LH_RATIO)) + 1;
    return i >= LH_BUCKETS ? LH_BUCKETS - 1 : (int)i;
}

void lh_add(lathist *h, double ms)
{
    h->bucket[lh_index(ms)]++;
    h->count++;
    h->min = ms < h->min ? ms : h->min;
    h->max = ms > h->max ? ms : h->max;
}

void lh_merge(lathist *dst, const lathist *src)
{
    for (int i = 0; i < LH_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->min = src->min < dst->min ? src->min : dst->min;
    dst->max = src->max > dst->max ? src->max : dst->max;
}

double lh_quantile(const lathist *h, double q)
{
    if (h->count == 0)
        return 0.0;
    int64_t rank = (int64_t)floor((double)(h->count - 1) * q), seen = 0;
    if (rank <= 0 || rank >= h->count - 1)
        return rank <= 0 ? h->min : h->max;
    int i = 0;
    while (i < LH_BUCKETS - 1 && (seen += h->bucket[i]) <= rank)
        i++;
    double v = i == 0 ? LH_LOW_MS : LH_LOW_MS * pow(LH_RATIO, i - 0.5);
    return v < h->min ? h->min : v > h->max ? h->max : v;
}
