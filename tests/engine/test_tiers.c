/* test_tiers.c: qualifying value and the tier ladder (docs/LEDGER.md, "Tiers"). Upgrades happen
 * on the accrual that crosses a threshold; in DOWN_STEP and DOWN_EARNED modes the tier is
 * re-evaluated at the end of its validity, by time, on the window ending just before; UP_ONLY
 * never falls. The worked example of the document is test_down_step_worked_example. */
#include "../support.h"

#include <string.h>

/* ROLLING 12, thresholds 1000/5000 (tiers 0..2), validity 12 months, no expiry. */
static void tier_program(struct fx *f, uint32_t program, uint8_t mode)
{
    struct tally_program_config c;
    config_default(&c);
    c.tier_mode = mode;
    fx_program(f, t("2026-01-01"), program, &c, 2);
}

static void assert_tier_change(struct fx *f, uint64_t seq, uint64_t member, uint32_t from,
                               uint32_t to, uint32_t reason, uint64_t valid_until,
                               uint64_t window_qv, uint64_t ts)
{
    struct tally_entry en = fx_entry(f, seq, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_TIER_CHANGE, member, member, 0);
    assert_int_equal(en.tier_from, from);
    assert_int_equal(en.tier_to, to);
    assert_int_equal(en.code, reason);
    assert_int_equal(en.time_a, valid_until);
    assert_int_equal(en.value, window_qv);
    assert_int_equal(en.time_b, 1); /* rule version */
    assert_int_equal(en.timestamp, ts);
}

static void assert_tier(struct fx *f, uint32_t program, uint64_t member, uint32_t tier,
                        uint64_t valid_until)
{
    struct tally_account a = fx_account(f, program, member);
    assert_int_equal(a.tier, tier);
    assert_int_equal(a.tier_valid_until, valid_until);
}

static void test_accrual_below_threshold_adds_qv_to_its_month_only(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    uint64_t ts = t("2026-03-15");
    uint64_t seq = fx_ok(f, ts, post_accrue(100, 1, 1, 70, 700));
    assert_int_equal(fx_entries(f), seq);
    assert_int_equal(fx_entry(f, seq, NULL, 0, NULL).value, 700);
    struct tally_account a = fx_account(f, 1, 1);
    uint32_t month = calendar_month_of(ts, 0);
    assert_int_equal(a.qv_lifetime, 700);
    assert_int_equal(a.qv_month, month);
    assert_int_equal(a.qv[month % TALLY_QV_MONTHS], 700);
    assert_int_equal(a.tier, 0);
    assert_int_equal(a.tier_valid_until, UINT64_MAX);
}

static void test_accrual_crossing_threshold_upgrades_until_end_of_validity(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    uint64_t ts = t("2026-03-15T10:00Z");
    struct tally_result r = fx_apply1(f, ts, post_accrue(100, 1, 1, 600, 6000));
    assert_code(r.code, TALLY_OK);
    assert_int_equal(fx_entry(f, r.seq, NULL, 0, NULL).kind, TALLY_KIND_ACCRUE);
    /* The rest of March 2026 plus 12 months. */
    assert_tier_change(f, r.seq + 1, 1, 0, 2, TALLY_TIER_UPGRADE, t("2027-04-01"), 6000, ts);
    assert_int_equal(fx_entries(f), r.seq + 1);
    assert_int_equal(fx_posting(f, 100).entry_count, 2);
    assert_tier(f, 1, 1, 2, t("2027-04-01"));
    fx_verify(f);
}

static void test_down_step_worked_example(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    assert_tier(f, 1, 1, 2, t("2027-04-01"));
    /* 2000 of QV inside the window April 2026 .. March 2027; no change when earned. */
    uint64_t seq = fx_ok(f, t("2026-06-10"), post_accrue(101, 1, 1, 200, 2000));
    assert_int_equal(fx_entries(f), seq);

    fx_tick(f, t("2027-03-31T23:59Z"));
    assert_int_equal(fx_entries(f), seq);
    fx_tick(f, t("2027-04-05"));
    assert_int_equal(fx_entries(f), seq + 1);
    assert_tier_change(f, seq + 1, 1, 2, 1, TALLY_TIER_DOWNGRADE, t("2028-04-01"), 2000,
                       t("2027-04-01"));
    struct tally_entry en = fx_entry(f, seq + 1, NULL, 0, NULL);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_true(id_is_zero(en.posting_id));
    assert_tier(f, 1, 1, 1, t("2028-04-01"));
    fx_verify(f);
}

static void test_up_only_member_keeps_tier_forever(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_UP_ONLY);
    uint64_t ts = t("2026-03-15");
    uint64_t seq = fx_ok(f, ts, post_accrue(100, 1, 1, 600, 6000));
    assert_tier_change(f, seq + 1, 1, 0, 2, TALLY_TIER_UPGRADE, UINT64_MAX, 6000, ts);
    seq = fx_ok(f, t("2026-06-10"), post_accrue(101, 1, 1, 200, 2000));
    fx_tick(f, t("2027-04-05"));
    fx_tick(f, t("2029-01-01"));
    assert_int_equal(fx_entries(f), seq);
    assert_tier(f, 1, 1, 2, UINT64_MAX);
    fx_verify(f);
}

static void test_down_earned_falls_to_earned_tier(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_EARNED);
    uint64_t seq = fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    fx_tick(f, t("2027-04-05"));
    assert_int_equal(fx_entries(f), seq + 2);
    /* Tier 0 never expires. */
    assert_tier_change(f, seq + 2, 1, 2, 0, TALLY_TIER_DOWNGRADE, UINT64_MAX, 0, t("2027-04-01"));
    assert_tier(f, 1, 1, 0, UINT64_MAX);
    fx_tick(f, t("2028-05-01"));
    assert_int_equal(fx_entries(f), seq + 2);
    fx_verify(f);
}

static void test_down_earned_worked_example_falls_to_tier_one(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_EARNED);
    fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    uint64_t seq = fx_ok(f, t("2026-06-10"), post_accrue(101, 1, 1, 200, 2000));
    fx_tick(f, t("2027-04-05"));
    assert_tier_change(f, seq + 1, 1, 2, 1, TALLY_TIER_DOWNGRADE, t("2028-04-01"), 2000,
                       t("2027-04-01"));
}

static void test_down_step_falls_one_step_per_validity(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    uint64_t seq = fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    fx_tick(f, t("2027-04-05"));
    assert_tier_change(f, seq + 2, 1, 2, 1, TALLY_TIER_DOWNGRADE, t("2028-04-01"), 0,
                       t("2027-04-01"));
    fx_tick(f, t("2028-04-02"));
    assert_int_equal(fx_entries(f), seq + 3);
    assert_tier_change(f, seq + 3, 1, 1, 0, TALLY_TIER_DOWNGRADE, UINT64_MAX, 0, t("2028-04-01"));
    assert_tier(f, 1, 1, 0, UINT64_MAX);
    fx_verify(f);
}

static void test_evaluation_renews_tier_still_earned(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    uint64_t seq = fx_ok(f, t("2027-02-10"), post_accrue(101, 1, 1, 500, 5000));
    assert_int_equal(fx_entries(f), seq);
    fx_tick(f, t("2027-04-05"));
    assert_int_equal(fx_entries(f), seq + 1);
    assert_tier_change(f, seq + 1, 1, 2, 2, TALLY_TIER_RENEW, t("2028-04-01"), 5000,
                       t("2027-04-01"));
    assert_tier(f, 1, 1, 2, t("2028-04-01"));
    fx_verify(f);
}

static void test_second_upgrade_starts_new_validity(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    uint64_t seq = fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 150, 1500));
    assert_tier_change(f, seq + 1, 1, 0, 1, TALLY_TIER_UPGRADE, t("2027-04-01"), 1500,
                       t("2026-03-15"));
    seq = fx_ok(f, t("2026-05-20"), post_accrue(101, 1, 1, 400, 4000));
    assert_tier_change(f, seq + 1, 1, 1, 2, TALLY_TIER_UPGRADE, t("2027-06-01"), 5500,
                       t("2026-05-20"));
    /* The first validity's end is no longer an evaluation. */
    fx_tick(f, t("2027-04-05"));
    assert_int_equal(fx_entries(f), seq + 1);
    fx_tick(f, t("2027-06-02"));
    assert_int_equal(fx_entries(f), seq + 2);
    assert_tier_change(f, seq + 2, 1, 2, 1, TALLY_TIER_DOWNGRADE, t("2028-06-01"), 0,
                       t("2027-06-01"));
    fx_verify(f);
}

static void test_rolling_window_counts_only_its_months(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.window_months = 3;
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    c.window_months = 4;
    fx_program(f, t("2026-01-01"), 2, &c, 1);
    for (uint32_t p = 1; p <= 2; p++)
        fx_ok(f, t("2026-01-20"), post_accrue(fx_id(f), p, 1, 60, 600));
    for (uint32_t p = 1; p <= 2; p++)
        fx_ok(f, t("2026-04-20"), post_accrue(fx_id(f), p, 1, 60, 600));
    /* 3 months: February .. April holds 600. 4 months: January .. April holds 1200. */
    assert_tier(f, 1, 1, 0, UINT64_MAX);
    assert_tier(f, 2, 1, 1, UINT64_MAX);
}

static void test_calendar_window_counts_only_this_year(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.window = TALLY_WINDOW_CALENDAR;
    c.window_months = 0;
    c.tier_mode = TALLY_TIER_DOWN_EARNED;
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    fx_ok(f, t("2026-12-10"), post_accrue(100, 1, 1, 50, 500));
    uint64_t seq = fx_ok(f, t("2027-01-10"), post_accrue(101, 1, 1, 60, 600));
    assert_int_equal(fx_entries(f), seq); /* 2027 so far: 600 */
    assert_tier(f, 1, 1, 0, UINT64_MAX);
    seq = fx_ok(f, t("2027-02-10"), post_accrue(102, 1, 1, 40, 400));
    assert_tier_change(f, seq + 1, 1, 0, 1, TALLY_TIER_UPGRADE, t("2028-03-01"), 1000,
                       t("2027-02-10"));
    /* Evaluated on 2028 up to February: nothing earned. */
    fx_tick(f, t("2028-03-05"));
    assert_int_equal(fx_entries(f), seq + 2);
    assert_tier_change(f, seq + 2, 1, 1, 0, TALLY_TIER_DOWNGRADE, UINT64_MAX, 0, t("2028-03-01"));
    fx_verify(f);
}

static void test_pending_accrual_counts_toward_tier_at_once(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_UP_ONLY);
    uint64_t ts = t("2026-03-15");
    uint64_t seq = fx_ok(f, ts, post_accrue_pending(100, 1, 1, 120, 1200, 7 * DAY_MS));
    assert_tier_change(f, seq + 1, 1, 0, 1, TALLY_TIER_UPGRADE, UINT64_MAX, 1200, ts);
    assert_tier(f, 1, 1, 1, UINT64_MAX);
}

static void test_reversal_lowers_qv_but_tier_waits_for_evaluation(void **state)
{
    struct fx *f = *state;
    tier_program(f, 1, TALLY_TIER_DOWN_STEP);
    fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 600, 6000));
    uint64_t rev = fx_ok(f, t("2026-03-20"), post_reverse(101, 1, 1, 100, 0));
    assert_int_equal(fx_entry(f, rev, NULL, 0, NULL).value, 6000);
    assert_int_equal(fx_entries(f), rev);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.qv_lifetime, 0);
    assert_int_equal(a.tier, 2);
    assert_int_equal(a.tier_valid_until, t("2027-04-01"));
    fx_tick(f, t("2027-04-05"));
    assert_tier_change(f, rev + 1, 1, 2, 1, TALLY_TIER_DOWNGRADE, t("2028-04-01"), 0,
                       t("2027-04-01"));
    fx_verify(f);
}

static void test_qv_month_follows_program_time_zone(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.window_months = 1;
    fx_program(f, t("2026-01-01"), 1, &c, 1); /* UTC */
    c.tz_offset_min = 480;
    fx_program(f, t("2026-01-01"), 2, &c, 1); /* UTC+8 */
    /* 23:00 and 01:00 in UTC+8: March 31 and April 1 there, both March 31 in UTC. */
    for (uint32_t p = 1; p <= 2; p++)
        fx_ok(f, t("2026-03-31T15:00Z"), post_accrue(fx_id(f), p, 1, 60, 600));
    for (uint32_t p = 1; p <= 2; p++)
        fx_ok(f, t("2026-03-31T17:00Z"), post_accrue(fx_id(f), p, 1, 60, 600));
    assert_tier(f, 1, 1, 1, UINT64_MAX);
    assert_tier(f, 2, 1, 0, UINT64_MAX);
    struct tally_account a = fx_account(f, 2, 1);
    assert_int_equal(a.qv[calendar_month_of(t("2026-03-15"), 0) % TALLY_QV_MONTHS], 600);
    assert_int_equal(a.qv[calendar_month_of(t("2026-04-15"), 0) % TALLY_QV_MONTHS], 600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_accrual_below_threshold_adds_qv_to_its_month_only),
        FX_TEST(test_accrual_crossing_threshold_upgrades_until_end_of_validity),
        FX_TEST(test_down_step_worked_example),
        FX_TEST(test_up_only_member_keeps_tier_forever),
        FX_TEST(test_down_earned_falls_to_earned_tier),
        FX_TEST(test_down_earned_worked_example_falls_to_tier_one),
        FX_TEST(test_down_step_falls_one_step_per_validity),
        FX_TEST(test_evaluation_renews_tier_still_earned),
        FX_TEST(test_second_upgrade_starts_new_validity),
        FX_TEST(test_rolling_window_counts_only_its_months),
        FX_TEST(test_calendar_window_counts_only_this_year),
        FX_TEST(test_pending_accrual_counts_toward_tier_at_once),
        FX_TEST(test_reversal_lowers_qv_but_tier_waits_for_evaluation),
        FX_TEST(test_qv_month_follows_program_time_zone),
    };
    return cmocka_run_group_tests_name("tiers", tests, NULL, NULL);
}
