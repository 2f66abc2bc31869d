/* test_idempotency.c: a posting id takes effect at most once, forever (BRIEF law 4;
 * docs/LEDGER.md, "Idempotency"). Same id and same bytes: EXISTS with the original outcome;
 * same id and different bytes: ID_EXISTS_DIFFERENT; a state-dependent failure stays failed even
 * after the state changes; validation failures are not recorded and can be corrected. */
#include "../support.h"

#include <string.h>

static void test_same_id_same_body_returns_exists_with_original_outcome(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p = post_accrue(100, 1, 1, 100, 0);
    uint64_t seq = fx_ok(f, t("2026-01-02"), p);
    uint64_t before = fx_entries(f);

    struct tally_result r = fx_apply1(f, t("2026-01-05"), p);
    assert_code(r.code, TALLY_EXISTS);
    assert_code(r.detail, TALLY_OK);
    assert_int_equal(r.seq, seq);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_account(f, 1, 1).available, 100);

    struct engine_posting_info pi = fx_posting(f, 100);
    assert_code(pi.code, TALLY_OK);
    assert_int_equal(pi.seq, seq);
    assert_int_equal(pi.timestamp, t("2026-01-02")); /* the original batch's time */

    /* Still so after a restart. */
    fx_reopen(f);
    r = fx_apply1(f, t("2026-01-06"), p);
    assert_code(r.code, TALLY_EXISTS);
    assert_int_equal(r.seq, seq);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
    fx_verify(f);
}

static void test_same_id_twice_in_one_batch_applies_once(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p[2] = {post_accrue(100, 1, 1, 50, 0), post_accrue(100, 1, 1, 50, 0)};
    struct tally_result r[2];
    fx_apply(f, t("2026-01-02"), p, 2, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_EXISTS);
    assert_code(r[1].detail, TALLY_OK);
    assert_int_equal(r[1].seq, r[0].seq);
    assert_int_equal(fx_entries(f), r[0].seq);
    assert_int_equal(fx_account(f, 1, 1).available, 50);
    fx_verify(f);
}

static void test_same_id_different_body_gives_id_exists_different(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p = post_accrue(100, 1, 1, 100, 0);
    uint64_t seq = fx_ok(f, t("2026-01-02"), p);
    uint64_t before = fx_entries(f);

    struct tally_posting other = p;
    other.amount = 101;
    struct tally_result r = fx_apply1(f, t("2026-01-03"), other);
    assert_code(r.code, TALLY_ID_EXISTS_DIFFERENT);
    assert_int_equal(r.detail, 0);
    assert_int_equal(r.seq, 0);
    other = p;
    other.user_data[31] = 1; /* one byte anywhere counts */
    assert_code(fx_code(f, t("2026-01-03"), other), TALLY_ID_EXISTS_DIFFERENT);
    assert_code(fx_code(f, t("2026-01-03"), post_redeem(100, 1, 1, 10)), TALLY_ID_EXISTS_DIFFERENT);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_account(f, 1, 1).available, 100);

    /* Nothing was recorded over the original. */
    struct engine_posting_info pi = fx_posting(f, 100);
    assert_code(pi.code, TALLY_OK);
    assert_int_equal(pi.seq, seq);
    assert_int_equal(pi.kind, TALLY_KIND_ACCRUE);
    r = fx_apply1(f, t("2026-01-04"), p);
    assert_code(r.code, TALLY_EXISTS);
    assert_code(r.detail, TALLY_OK);
}

static void test_state_dependent_failure_stays_failed_after_state_changes(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(100, 1, 1, 100, 0));
    struct tally_posting redeem = post_redeem(101, 1, 1, 150);
    assert_code(fx_code(f, t("2026-01-02"), redeem), TALLY_INSUFFICIENT_POINTS);
    struct tally_posting accrue5 = post_accrue(102, 1, 5, 10, 0);
    assert_code(fx_code(f, t("2026-01-02"), accrue5), TALLY_ACCOUNT_NOT_FOUND);

    /* The state changes so that both would now succeed... */
    fx_ok(f, t("2026-01-03"), post_accrue(103, 1, 1, 100, 0));
    fx_ok(f, t("2026-01-03"), post_open(104, 1, 5));
    uint64_t before = fx_entries(f);

    /* ... but an id that failed stays failed. */
    struct tally_result r = fx_apply1(f, t("2026-01-04"), redeem);
    assert_code(r.code, TALLY_EXISTS);
    assert_code(r.detail, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(r.seq, 0);
    r = fx_apply1(f, t("2026-01-04"), accrue5);
    assert_code(r.code, TALLY_EXISTS);
    assert_code(r.detail, TALLY_ACCOUNT_NOT_FOUND);
    assert_int_equal(fx_entries(f), before);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 200);
    assert_int_equal(a.redeemed, 0);
    assert_int_equal(fx_account(f, 1, 5).available, 0);
    /* And a different body under it is still a different body. */
    redeem.amount = 10;
    assert_code(fx_code(f, t("2026-01-04"), redeem), TALLY_ID_EXISTS_DIFFERENT);
}

static void test_validation_failure_is_not_recorded_and_can_be_corrected(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p = post_accrue(100, 1, 1, 100, 0);
    p.reserved = 7;
    struct tally_result r = fx_apply1(f, t("2026-01-02"), p);
    assert_code(r.code, TALLY_RESERVED_NONZERO);
    assert_int_equal(r.seq, 0);
    uint8_t id[16];
    id_make(id, 100);
    struct engine_posting_info pi;
    assert_int_equal(engine_posting(f->e, id, &pi), TALLY_ENOT_FOUND);
    /* The same bytes get the same answer, not EXISTS. */
    assert_code(fx_code(f, t("2026-01-02"), p), TALLY_RESERVED_NONZERO);
    p.reserved = 0;
    fx_ok(f, t("2026-01-02"), p);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
}

static void test_retry_of_multi_entry_posting_reports_its_first_entry(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p = post_accrue(100, 1, 1, 600, 6000); /* ACCRUE + TIER_CHANGE */
    uint64_t seq = fx_ok(f, t("2026-01-02"), p);
    assert_int_equal(fx_posting(f, 100).entry_count, 2);
    struct tally_result r = fx_apply1(f, t("2026-01-03"), p);
    assert_code(r.code, TALLY_EXISTS);
    assert_int_equal(r.seq, seq);
    assert_int_equal(fx_account(f, 1, 1).qv_lifetime, 6000);
}

static void test_retry_of_program_posting_returns_exists(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    struct tally_posting p = post_program(1, 9, &c);
    uint64_t seq = fx_ok(f, t("2026-01-01"), p);
    struct tally_result r = fx_apply1(f, t("2026-01-02"), p);
    assert_code(r.code, TALLY_EXISTS);
    assert_code(r.detail, TALLY_OK);
    assert_int_equal(r.seq, seq);
    assert_int_equal(fx_entries(f), seq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_same_id_same_body_returns_exists_with_original_outcome),
        FX_TEST(test_same_id_twice_in_one_batch_applies_once),
        FX_TEST(test_same_id_different_body_gives_id_exists_different),
        FX_TEST(test_state_dependent_failure_stays_failed_after_state_changes),
        FX_TEST(test_validation_failure_is_not_recorded_and_can_be_corrected),
        FX_TEST(test_retry_of_multi_entry_posting_reports_its_first_entry),
        FX_TEST(test_retry_of_program_posting_returns_exists),
    };
    return cmocka_run_group_tests_name("idempotency", tests, NULL, NULL);
}
