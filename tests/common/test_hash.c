/* test_hash.c: the dispatched long-input XXH3-128 (common/hash_long.c, AVX2 where the CPU has
 * it) gives exactly the baseline XXH3-128 for every length and seed: the state digest must not
 * depend on which CPU computed it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"

static void test_long_hash_equals_the_baseline(void **state)
{
    (void)state;
    static uint8_t buf[70016];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    const size_t lens[] = {0, 1, 16, 17, 128, 129, 240, 241, 255, 256, 257, 1023, 1024, 1025,
                           4096, 65776, 70000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (uint64_t seed = 0; seed < 3; seed++) {
            /* buf + seed: unaligned starts too */
            XXH128_hash_t want = XXH3_128bits_withSeed(buf + seed, lens[i], seed * 0x1234567ull);
            XXH128_hash_t got = tally_hash128(buf + seed, lens[i], seed * 0x1234567ull);
            assert_true(XXH128_isEqual(want, got));
            got = tally_hash_long(buf + seed, lens[i], seed * 0x1234567ull);
            assert_true(XXH128_isEqual(want, got));
        }
    }
    /* A known value: XXH3-128 of the 16 bytes 00..0f, seed 0 (xxhsum -H2 gives
     * 72950631827607e2842812cc870dcae2; docs/PROTOCOL.md, vector ledger_reply). */
    uint8_t b16[16];
    for (int i = 0; i < 16; i++)
        b16[i] = (uint8_t)i;
    XXH128_hash_t h = tally_hash128(b16, 16, 0);
    assert_int_equal(h.high64, 0x72950631827607e2ull);
    assert_int_equal(h.low64, 0x842812cc870dcae2ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_hash_equals_the_baseline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
