/* hash_long_avx2.c: the AVX2 build of XXH3-128 for hash_long.c, which calls it only on a CPU
 * that has AVX2. Compiled with -mavx2 (Makefile); nothing else may go in this file. */
#include "hash.h"

XXH128_hash_t tally_hash_long_avx2(const void *p, size_t n, XXH64_hash_t seed);

XXH128_hash_t tally_hash_long_avx2(const void *p, size_t n, XXH64_hash_t seed)
{
    return XXH3_128bits_withSeed(p, n, seed);
}
