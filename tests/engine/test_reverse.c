/* test_reverse.c: REVERSE undoes all or part of an accrual, redemption or capture, in proportion
 * (docs/LEDGER.md, "Reversals in proportion", "Debt", and the REVERSE rows): restored points go
 * back to the lots of the original lineage (re-created if gone), QV leaves in proportion with
 * floor arithmetic that sums exactly, and points restored into an expired lot expire at once. */
#include "../support.h"

#include <string.h>

static uint64_t lot_of(struct fx *f, uint64_t accrual_seq)
{
    return fx_entry(f, accrual_seq, NULL, 0, NULL).lot_id;
}

static void config_days(struct tally_program_config *c, uint32_t days)
{
    config_default(c);
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = days;
}

/* A program whose ladder has tier 0 only, so QV never changes a tier. */
static void config_no_tiers(struct tally_program_config *c)
{
    config_default(c);
    c->tier_count = 1;
    c->thresholds[0] = 0;
    c->thresholds[1] = 0;
}

static void test_partial_reversal_of_redemption_restores_lots_in_proportion(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_days(&c, 365);
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    /* The example of docs/LEDGER.md: REDEEM 300 took 100 from "lot 7" and 200 from "lot 9". */
    uint64_t l7 = lot_of(f, fx_ok(f, t("2026-01-10"), post_accrue(101, 1, 1, 100, 0)));
    uint64_t l9 = lot_of(f, fx_ok(f, t("2026-02-10"), post_accrue(102, 1, 1, 200, 0)));
    uint64_t red = fx_ok(f, t("2026-03-01"), post_redeem(300, 1, 1, 300));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    fx_entry(f, red, refs, 4, &n);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l7, 100);
    assert_ref(&refs[1], l9, 200);
    struct tally_lot lots[4];
    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 0);

    /* REVERSE 150 restores 50 to lot 7 and 100 to lot 9, re-creating both. */
    uint64_t ts = t("2026-03-05");
    uint64_t rev = fx_ok(f, ts, post_reverse(301, 1, 1, 300, 150));
    struct tally_entry en = fx_entry(f, rev, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, SYS_REDEMPTION, 1, 150);
    assert_int_equal(en.ref_seq, red);
    assert_int_equal(en.timestamp, ts);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l7, 50);
    assert_int_equal(refs[0].expires_at, t("2027-01-11"));
    assert_int_equal(refs[0].earned_at, t("2026-01-10"));
    assert_ref(&refs[1], l9, 100);
    assert_int_equal(refs[1].expires_at, t("2027-02-11"));
    assert_int_equal(refs[1].earned_at, t("2026-02-10"));

    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 2);
    assert_int_equal(lots[0].lot_id, l7);
    assert_int_equal(lots[0].remaining, 50);
    assert_int_equal(lots[0].expires_at, t("2027-01-11"));
    assert_int_equal(lots[0].earned_at, t("2026-01-10"));
    assert_int_equal(lots[0].origin_seq, rev);
    assert_int_equal(lots[1].lot_id, l9);
    assert_int_equal(lots[1].remaining, 100);
    assert_int_equal(lots[1].origin_seq, rev);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 150);
    assert_int_equal(a.redeemed, 150);
    assert_int_equal(fx_account(f, 1, SYS_REDEMPTION).available, 150);

    /* REVERSE 0 (the rest) then restores 50 and 100. */
    uint64_t rev2 = fx_ok(f, t("2026-03-06"), post_reverse(302, 1, 1, 300, 0));
    en = fx_entry(f, rev2, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, SYS_REDEMPTION, 1, 150);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l7, 50);
    assert_ref(&refs[1], l9, 100);
    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 2);
    assert_int_equal(lots[0].remaining, 100);
    assert_int_equal(lots[1].remaining, 200);
    a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 300);
    assert_int_equal(a.redeemed, 0);

    /* Nothing is left to reverse. */
    assert_code(fx_code(f, t("2026-03-07"), post_reverse(303, 1, 1, 300, 1)),
                TALLY_EXCEEDS_ORIGINAL);
    assert_int_equal(fx_entries(f), rev2);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_reversal_remainder_goes_to_lots_in_lineage_order(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 3, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-01-03"), post_accrue(102, 1, 1, 7, 0)));
    fx_ok(f, t("2026-01-04"), post_redeem(300, 1, 1, 10));

    /* R = 5 of 3+7: floor(15/10) = 1 and floor(35/10) = 3; the remaining point goes to the first
     * lot of the lineage with room: 2 and 3. */
    uint64_t rev = fx_ok(f, t("2026-01-05"), post_reverse(301, 1, 1, 300, 5));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    fx_entry(f, rev, refs, 4, &n);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l1, 2);
    assert_ref(&refs[1], l2, 3);

    /* The rest, 5 of (3-2)+(7-3): exactly 1 and 4. */
    rev = fx_ok(f, t("2026-01-06"), post_reverse(302, 1, 1, 300, 0));
    struct tally_entry en = fx_entry(f, rev, refs, 4, &n);
    assert_int_equal(en.amount, 5);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l1, 1);
    assert_ref(&refs[1], l2, 4);
    struct tally_lot lots[2];
    assert_int_equal(fx_lots(f, 1, 1, lots, 2), 2);
    assert_int_equal(lots[0].lot_id, l1);
    assert_int_equal(lots[0].remaining, 3);
    assert_int_equal(lots[1].lot_id, l2);
    assert_int_equal(lots[1].remaining, 7);
    fx_verify(f);
}

static void test_one_point_reversals_fill_lots_in_lineage_order(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 1, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-01-03"), post_accrue(102, 1, 1, 2, 0)));
    fx_ok(f, t("2026-01-04"), post_redeem(300, 1, 1, 3));
    struct tally_lot lots[2];

    /* 1 of 1+2: floor(1/3) = floor(2/3) = 0, the remainder to the first lot. */
    fx_ok(f, t("2026-01-05"), post_reverse(301, 1, 1, 300, 1));
    assert_int_equal(fx_lots(f, 1, 1, lots, 2), 1);
    assert_int_equal(lots[0].lot_id, l1);
    assert_int_equal(lots[0].remaining, 1);

    /* 1 of 0+2: floor(2/2) = 1 to the second lot. */
    fx_ok(f, t("2026-01-06"), post_reverse(302, 1, 1, 300, 1));
    assert_int_equal(fx_lots(f, 1, 1, lots, 2), 2);
    assert_int_equal(lots[0].remaining, 1);
    assert_int_equal(lots[1].lot_id, l2);
    assert_int_equal(lots[1].remaining, 1);

    uint64_t rev = fx_ok(f, t("2026-01-07"), post_reverse(303, 1, 1, 300, 0));
    assert_int_equal(fx_entry(f, rev, NULL, 0, NULL).amount, 1);
    assert_int_equal(fx_lots(f, 1, 1, lots, 2), 2);
    assert_int_equal(lots[0].remaining, 1);
    assert_int_equal(lots[1].remaining, 2);
    assert_int_equal(fx_account(f, 1, 1).available, 3);
    fx_verify(f);
}

static void test_reversal_of_capture_restores_its_lots(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    uint64_t lot = lot_of(f, fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0)));
    fx_ok(f, t("2026-01-03"), post_hold(200, 1, 1, 60, HOUR_MS));
    uint64_t cap = fx_ok(f, t("2026-01-03"), post_capture(201, 1, 1, 200, 0));

    assert_code(fx_code(f, t("2026-01-04"), post_reverse(202, 1, 1, 200, 0)), TALLY_REF_WRONG_KIND);
    uint64_t rev = fx_ok(f, t("2026-01-04"), post_reverse(203, 1, 1, 201, 0));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rev, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, SYS_REDEMPTION, 1, 60);
    assert_int_equal(en.ref_seq, cap);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 60);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.redeemed, 0);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 1);
    assert_int_equal(l.remaining, 100);
    fx_verify(f);
}

static void test_reversal_of_accrual_takes_original_lot_then_soonest_expiring(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_days(&c, 365);
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    uint64_t acc = fx_ok(f, t("2026-01-10"), post_accrue(101, 1, 1, 100, 0));
    uint64_t l1 = lot_of(f, acc);
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-02-10"), post_accrue(102, 1, 1, 50, 0)));
    uint64_t l3 = lot_of(f, fx_ok(f, t("2026-03-10"), post_accrue(103, 1, 1, 80, 0)));
    fx_ok(f, t("2026-03-11"), post_redeem(104, 1, 1, 70)); /* lot 1 keeps 30 */

    uint64_t rev = fx_ok(f, t("2026-03-12"), post_reverse(105, 1, 1, 101, 0));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rev, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, 1, SYS_ISSUANCE, 100);
    assert_int_equal(en.ref_seq, acc);
    assert_int_equal(n, 3);
    assert_ref(&refs[0], l1, 30);
    assert_ref(&refs[1], l2, 50);
    assert_ref(&refs[2], l3, 20);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 60);
    assert_int_equal(a.earned, 130);
    assert_int_equal(a.redeemed, 70);
    assert_int_equal(fx_account(f, 1, SYS_ISSUANCE).available, -130);
    struct tally_lot lots[4];
    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 1);
    assert_int_equal(lots[0].lot_id, l3);
    assert_int_equal(lots[0].remaining, 60);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_reversal_of_accrual_removes_qv_in_proportion(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_no_tiers(&c);
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t ts = t("2026-03-15");
    uint32_t slot = calendar_month_of(ts, 0) % TALLY_QV_MONTHS;
    fx_ok(f, ts, post_accrue(101, 1, 1, 300, 1000));
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.qv_lifetime, 1000);
    assert_int_equal(a.qv[slot], 1000);

    /* floor(1000*100/300) - 0 = 333 */
    uint64_t rev = fx_ok(f, t("2026-04-02"), post_reverse(102, 1, 1, 101, 100));
    struct tally_entry en = fx_entry(f, rev, NULL, 0, NULL);
    assert_int_equal(en.amount, 100);
    assert_int_equal(en.value, 333);
    a = fx_account(f, 1, 1);
    assert_int_equal(a.qv_lifetime, 667);
    assert_int_equal(a.qv[slot], 667); /* taken from the month of the accrual */

    /* floor(1000*200/300) - 333 = 333 */
    rev = fx_ok(f, t("2026-04-03"), post_reverse(103, 1, 1, 101, 100));
    assert_int_equal(fx_entry(f, rev, NULL, 0, NULL).value, 333);
    assert_int_equal(fx_account(f, 1, 1).qv_lifetime, 334);

    /* The rest: 1000 - 666 = 334, so the three sum to exactly 1000. */
    rev = fx_ok(f, t("2026-04-04"), post_reverse(104, 1, 1, 101, 0));
    en = fx_entry(f, rev, NULL, 0, NULL);
    assert_int_equal(en.amount, 100);
    assert_int_equal(en.value, 334);
    a = fx_account(f, 1, 1);
    assert_int_equal(a.qv_lifetime, 0);
    assert_int_equal(a.qv[slot], 0);
    assert_int_equal(a.earned, 0);
    assert_int_equal(a.available, 0);
    assert_code(fx_code(f, t("2026-04-05"), post_reverse(105, 1, 1, 101, 1)),
                TALLY_EXCEEDS_ORIGINAL);
    fx_verify(f);
}

static void test_reversal_beyond_original_gives_exceeds_original(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 500, 0));
    fx_ok(f, t("2026-01-02"), post_redeem(102, 1, 1, 100));
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_reverse(103, 1, 1, 102, 101)), TALLY_EXCEEDS_ORIGINAL);
    fx_ok(f, ts, post_reverse(104, 1, 1, 102, 60));
    assert_code(fx_code(f, ts, post_reverse(105, 1, 1, 102, 41)), TALLY_EXCEEDS_ORIGINAL);
    fx_ok(f, ts, post_reverse(106, 1, 1, 102, 40));
    assert_code(fx_code(f, ts, post_reverse(107, 1, 1, 101, 501)), TALLY_EXCEEDS_ORIGINAL);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 500);
    assert_int_equal(a.redeemed, 0);
    fx_verify(f);
}

static void test_reversal_of_spent_accrual_gives_insufficient_points(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0));
    fx_ok(f, t("2026-01-02"), post_redeem(102, 1, 1, 80));
    uint64_t before = fx_entries(f);
    assert_code(fx_code(f, t("2026-01-03"), post_reverse(103, 1, 1, 101, 0)),
                TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), before);
    fx_ok(f, t("2026-01-03"), post_reverse(104, 1, 1, 101, 20));
    assert_code(fx_code(f, t("2026-01-03"), post_reverse(105, 1, 1, 101, 0)),
                TALLY_INSUFFICIENT_POINTS);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.earned, 80);
    fx_verify(f);
}

static void test_reversal_of_spent_accrual_with_allow_negative_leaves_debt(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0)));
    fx_ok(f, t("2026-01-02"), post_redeem(102, 1, 1, 80));

    uint64_t rev = fx_ok(f, t("2026-01-03"), post_reverse(103, 1, 1, 101, 0));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rev, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, 1, SYS_ISSUANCE, 100);
    assert_int_equal(n, 1); /* only 20 points were still in a lot */
    assert_ref(&ref, l1, 20);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, -80);
    assert_int_equal(a.earned, 0);
    assert_int_equal(fx_totals(f, 1).outstanding, -80);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);

    /* Later credits pay the debt first: 50 lands nowhere, then 70 of 100 lands in the lot. */
    uint64_t acc = fx_ok(f, t("2026-01-04"), post_accrue(104, 1, 1, 50, 0));
    en = fx_entry(f, acc, &ref, 1, &n);
    assert_int_equal(en.amount, 50);
    assert_int_equal(n, 1);
    assert_int_equal(ref.amount, 0);
    a = fx_account(f, 1, 1);
    assert_int_equal(a.available, -30);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);

    acc = fx_ok(f, t("2026-01-05"), post_accrue(105, 1, 1, 100, 0));
    en = fx_entry(f, acc, &ref, 1, &n);
    assert_int_equal(n, 1);
    assert_ref(&ref, en.lot_id, 70);
    assert_int_equal(fx_account(f, 1, 1).available, 70);
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 1);
    assert_int_equal(lot.remaining, 70);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static uint64_t refs_sum(struct fx *f, uint64_t seq, uint64_t *amount)
{
    struct tally_lot_ref refs[8];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, refs, 8, &n);
    assert_true(n <= 8);
    *amount = en.amount;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += refs[i].amount;
    return sum;
}

static void test_reversal_of_redemption_while_in_debt_pays_the_debt_first(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0));
    fx_ok(f, t("2026-01-02"), post_accrue(102, 1, 1, 100, 0));
    fx_ok(f, t("2026-01-03"), post_redeem(103, 1, 1, 150));
    fx_ok(f, t("2026-01-04"), post_adjust(104, 1, 1, 60, true, 1)); /* 50 in lots: debt 10 */
    assert_int_equal(fx_account(f, 1, 1).available, -10);

    /* 30 restored: 10 pay the debt, 20 land in the redemption's lots. */
    uint64_t amount = 0;
    uint64_t landed =
        refs_sum(f, fx_ok(f, t("2026-01-05"), post_reverse(105, 1, 1, 103, 30)), &amount);
    assert_int_equal(amount, 30);
    assert_int_equal(landed, 20);
    assert_int_equal(fx_account(f, 1, 1).available, 20);
    assert_int_equal(fx_account(f, 1, 1).redeemed, 120);
    fx_verify(f);

    /* The rest: 120, all of it landing. */
    landed = refs_sum(f, fx_ok(f, t("2026-01-06"), post_reverse(106, 1, 1, 103, 0)), &amount);
    assert_int_equal(amount, 120);
    assert_int_equal(landed, 120);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 140);
    assert_int_equal(a.redeemed, 0);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_reversal_into_expired_lot_while_in_debt_pays_debt_then_expires(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2026-04-01");
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t lot = lot_of(f, fx_ok(f, t("2026-03-01"), post_accrue(101, 1, 1, 100, 0)));
    fx_ok(f, t("2026-03-10"), post_redeem(102, 1, 1, 100));
    fx_tick(f, t("2026-04-02"));
    fx_ok(f, t("2026-04-03"), post_adjust(103, 1, 1, 10, true, 1)); /* a debt of 10 */

    /* 100 restored: 10 pay the debt, 90 land in the expired lot and expire at once. */
    uint64_t rev = fx_ok(f, t("2026-04-04"), post_reverse(104, 1, 1, 102, 0));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rev, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, SYS_REDEMPTION, 1, 100);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 90);
    en = fx_entry(f, rev + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 90);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 90);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.expired, 90);
    assert_int_equal(a.redeemed, 0);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_debt_cannot_be_created_while_points_are_held(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0));
    fx_ok(f, t("2026-01-02"), post_hold(102, 1, 1, 50, HOUR_MS));
    uint64_t ts = t("2026-01-02T00:10Z");
    assert_code(fx_code(f, ts, post_reverse(103, 1, 1, 101, 0)), TALLY_INSUFFICIENT_POINTS);
    assert_code(fx_code(f, ts, post_adjust(104, 1, 1, 60, true, 9)), TALLY_INSUFFICIENT_POINTS);
    fx_ok(f, ts, post_reverse(105, 1, 1, 101, 50));
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.held, 50);
    fx_verify(f);
}

static void test_points_restored_into_expired_lot_expire_at_once(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2026-04-01");
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t lot = lot_of(f, fx_ok(f, t("2026-03-01"), post_accrue(101, 1, 1, 100, 0)));
    fx_ok(f, t("2026-03-10"), post_redeem(300, 1, 1, 99));
    fx_tick(f, t("2026-04-02"));
    uint64_t before = fx_entries(f);
    assert_int_equal(fx_entry(f, before, NULL, 0, NULL).kind, TALLY_KIND_EXPIRE);
    assert_int_equal(fx_account(f, 1, 1).expired, 1);

    uint64_t ts = t("2026-04-03");
    uint64_t rev = fx_ok(f, ts, post_reverse(301, 1, 1, 300, 0));
    assert_int_equal(rev, before + 1);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rev, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_REVERSE, SYS_REDEMPTION, 1, 99);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 99);
    en = fx_entry(f, rev + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 99);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_int_equal(en.timestamp, ts);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 99);
    assert_int_equal(fx_entries(f), rev + 1);
    assert_int_equal(fx_posting(f, 301).entry_count, 2);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.redeemed, 0);
    assert_int_equal(a.expired, 100);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 0);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_partial_reversal_of_redemption_restores_lots_in_proportion),
        FX_TEST(test_reversal_remainder_goes_to_lots_in_lineage_order),
        FX_TEST(test_one_point_reversals_fill_lots_in_lineage_order),
        FX_TEST(test_reversal_of_capture_restores_its_lots),
        FX_TEST(test_reversal_of_accrual_takes_original_lot_then_soonest_expiring),
        FX_TEST(test_reversal_of_accrual_removes_qv_in_proportion),
        FX_TEST(test_reversal_beyond_original_gives_exceeds_original),
        FX_TEST(test_reversal_of_spent_accrual_gives_insufficient_points),
        FX_TEST(test_reversal_of_spent_accrual_with_allow_negative_leaves_debt),
        FX_TEST(test_reversal_of_redemption_while_in_debt_pays_the_debt_first),
        FX_TEST(test_reversal_into_expired_lot_while_in_debt_pays_debt_then_expires),
        FX_TEST(test_debt_cannot_be_created_while_points_are_held),
        FX_TEST(test_points_restored_into_expired_lot_expire_at_once),
    };
    return cmocka_run_group_tests_name("reverse", tests, NULL, NULL);
}
