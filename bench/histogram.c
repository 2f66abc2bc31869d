/* histogram.c: the log-bucketed histogram of histogram.h. */
#include "histogram.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (uint32_t)v;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t shift = msb - HIST_SUB_BITS;
    uint32_t index = (shift + 1) * HIST_SUB + (uint32_t)(v >> shift) - HIST_SUB;
    assert(index < HIST_BUCKETS);
    return index;
}

uint64_t hist_upper(uint32_t index)
{
    assert(index < HIST_BUCKETS);
    if (index < 2 * HIST_SUB)
        return index;
    uint32_t shift = index / HIST_SUB - 1, sub = index % HIST_SUB;
    uint64_t lower = (uint64_t)(HIST_SUB + sub) << shift;
    return lower + ((UINT64_C(1) << shift) - 1);
}

void hist_record(struct hist *h, uint64_t v)
{
    h->bucket[hist_index(v)]++;
    h->count++;
    h->sum += v;
    h->min = v < h->min ? v : h->min;
    h->max = v > h->max ? v : h->max;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
    into->count += from->count;
    into->sum += from->sum;
    into->min = from->min < into->min ? from->min : into->min;
    into->max = from->max > into->max ? from->max : into->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p * (double)h->count);
    rank = rank < 1 ? 1 : rank > h->count ? h->count : rank;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
