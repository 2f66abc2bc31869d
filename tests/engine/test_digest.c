/* test_digest.c: determinism (BRIEF law 6). Two engines fed the same batches in two directories
 * hold the same entries and the same state digest; one different posting gives a different
 * digest; the digest survives a restart. */
#include "../support.h"

#include <string.h>

/* A few weeks of a small program: every kind of posting, a chain, failures, ticks. `twist`
 * changes the amount of one accrual in the middle. */
static void run_scenario(struct fx *f, uint64_t twist)
{
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 10;
    c.tier_mode = TALLY_TIER_DOWN_STEP;
    c.validity_months = 1;
    fx_program(f, t("2026-03-01"), 1, &c, 3);
    struct tally_posting b1[] = {
        post_accrue(100, 1, 1, 500, 1200),       post_accrue_pending(101, 1, 2, 80, 100, DAY_MS),
        post_hold(102, 1, 1, 50, HOUR_MS),       post_redeem(103, 1, 3, 10), /* fails */
        linked(post_transfer(104, 1, 1, 3, 40)), post_redeem(105, 1, 3, 30),
    };
    struct tally_result r[8];
    fx_apply(f, t("2026-03-02"), b1, 6, r);
    fx_tick(f, t("2026-03-03"));
    struct tally_posting b2[] = {
        post_accrue(106, 1, 2, 70 + twist, 0),
        post_capture(107, 1, 1, 102, 0), /* timed out already */
        post_reverse(108, 1, 3, 105, 10),
        post_adjust(109, 1, 2, 15, true, 4),
        post_close(110, 1, 3),
    };
    fx_apply(f, t("2026-03-04"), b2, 5, r);
    fx_tick(f, t("2026-05-05"));
}

static void test_same_batches_give_same_digest_in_two_directories(void **state)
{
    (void)state;
    static struct fx a;
    static struct fx b;
    fx_init(&a, NULL);
    fx_init(&b, NULL);
    assert_string_not_equal(a.dir, b.dir);
    run_scenario(&a, 0);
    run_scenario(&b, 0);
    struct engine_status sa;
    struct engine_status sb;
    engine_status(a.e, &sa);
    engine_status(b.e, &sb);
    assert_true(sa.entries > 15);
    assert_same_status(&sa, &sb);
    /* Entry by entry, byte for byte. */
    for (uint64_t s = 1; s <= sa.entries; s++) {
        struct tally_lot_ref ra[8];
        struct tally_lot_ref rb[8];
        uint32_t na = 0;
        uint32_t nb = 0;
        struct tally_entry ea = fx_entry(&a, s, ra, 8, &na);
        struct tally_entry eb = fx_entry(&b, s, rb, 8, &nb);
        assert_memory_equal(&ea, &eb, sizeof(ea));
        assert_int_equal(na, nb);
        if (ea.kind != TALLY_KIND_PROGRAM && na > 0 && na <= 8)
            assert_memory_equal(ra, rb, na * sizeof(ra[0]));
    }
    fx_verify(&a);
    fx_deinit(&a);
    fx_deinit(&b);
}

static void test_one_different_posting_gives_different_digest(void **state)
{
    (void)state;
    static struct fx a;
    static struct fx b;
    fx_init(&a, NULL);
    fx_init(&b, NULL);
    run_scenario(&a, 0);
    run_scenario(&b, 1);
    struct engine_status sa;
    struct engine_status sb;
    engine_status(a.e, &sa);
    engine_status(b.e, &sb);
    assert_int_equal(sa.applied_index, sb.applied_index);
    assert_memory_not_equal(sa.digest, sb.digest, sizeof(sa.digest));
    assert_int_not_equal(sa.chain_head, sb.chain_head);
    fx_deinit(&a);
    fx_deinit(&b);
}

static void test_digest_survives_reopen(void **state)
{
    struct fx *f = *state;
    run_scenario(f, 0);
    struct engine_status before;
    engine_status(f->e, &before);
    fx_reopen(f);
    struct engine_status after;
    engine_status(f->e, &after);
    assert_same_status(&before, &after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_OWN_TEST(test_same_batches_give_same_digest_in_two_directories),
        FX_OWN_TEST(test_one_different_posting_gives_different_digest),
        FX_TEST(test_digest_survives_reopen),
    };
    return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
