/* hash.h: xxHash, header-only (XXH_INLINE_ALL), the one checksum and fingerprint of tally.
 *
 * Debian's libxxhash is used as a header: the inlined XXH3 is several times faster than the
 * packaged shared library's on small inputs. XXH3 catches corruption and divergence; it is not a
 * defence against someone who can rewrite the data (see BRIEF §3).
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* XXH3-128 with a seed, for inputs of a few hundred bytes and more: the same value as
 * XXH3_128bits_withSeed, computed with AVX2 where the CPU has it (hash_long.c). */
XXH128_hash_t tally_hash_long(const void *p, size_t n, XXH64_hash_t seed);

/* XXH3-128 with a seed, whatever the length: short inputs inline, long ones as above. */
static inline XXH128_hash_t tally_hash128(const void *p, size_t n, XXH64_hash_t seed)
{
    return n > 240 ? tally_hash_long(p, n, seed) : XXH3_128bits_withSeed(p, n, seed);
}

#endif
