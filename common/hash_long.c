/* hash_long.c: XXH3-128 of long inputs, with the widest vector unit the CPU has (hash.h).
 *
 * XXH3 picks its vector code when it is compiled: this project builds for baseline x86-64, so the
 * inlined XXH3 uses SSE2. The state sum rehashes every changed member image at every batch
 * (hundreds of bytes to kilobytes each), where AVX2 doubles the speed. So the long-input path is
 * compiled twice, here (baseline) and in hash_long_avx2.c (-mavx2), and the first call picks one
 * by asking the CPU. XXH3's result does not depend on the vector unit: only the speed does.
 */
#include "hash.h"

XXH128_hash_t tally_hash_long_avx2(const void *p, size_t n, XXH64_hash_t seed);

static XXH128_hash_t hash_long_base(const void *p, size_t n, XXH64_hash_t seed)
{
    return XXH3_128bits_withSeed(p, n, seed);
}

static XXH128_hash_t hash_long_first(const void *p, size_t n, XXH64_hash_t seed);

static XXH128_hash_t (*hash_long_impl)(const void *, size_t, XXH64_hash_t) = hash_long_first;

static XXH128_hash_t hash_long_first(const void *p, size_t n, XXH64_hash_t seed)
{
#if defined(__x86_64__) && defined(TALLY_HAVE_AVX2_TU)
    __builtin_cpu_init();
    hash_long_impl = __builtin_cpu_supports("avx2") ? tally_hash_long_avx2 : hash_long_base;
#else
    hash_long_impl = hash_long_base;
#endif
    return hash_long_impl(p, n, seed);
}

XXH128_hash_t tally_hash_long(const void *p, size_t n, XXH64_hash_t seed)
{
    return hash_long_impl(p, n, seed);
}
