/* histogram.h: a log-bucketed latency histogram (HDR-like), fixed size, no allocation.
 *
 * Values (nanoseconds here, any uint64 in general) below 64 have a bucket each; above, every
 * power of two is split into HIST_SUB equal buckets, so a bucket's width is at most 1/32 of its
 * lower bound: a percentile read from it is within 3.2% of the exact value, over the whole
 * range of uint64 (no value is clamped or lost). There is no HdrHistogram C library in Debian
 * (apt-cache search: Java and Go ports only), and this is forty lines.
 *
 * Percentiles are nearest-rank (the same definition as bench_percentile in workload.h) and are
 * reported as the highest value of the bucket the rank falls in, clamped to the exact maximum:
 * never below the exact percentile. Not thread-safe: one histogram per thread, merged at the end.
 */
#ifndef TALLY_BENCH_HISTOGRAM_H
#define TALLY_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 5u
#define HIST_SUB      (1u << HIST_SUB_BITS)
/* Exact buckets 0..63, then (shift + 1) * 32 + sub for shift 1..58: 1,920 in all. */
#define HIST_BUCKETS  (60u * HIST_SUB)

struct hist {
    uint64_t count, sum, min, max;
    uint64_t bucket[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);

/* The bucket of a value, and the highest value a bucket holds. */
uint32_t hist_index(uint64_t v);
uint64_t hist_upper(uint32_t index);

/* Nearest-rank percentile p (0 < p <= 1); 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double p);

#endif
