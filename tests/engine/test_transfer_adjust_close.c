/* test_transfer_adjust_close.c: TRANSFER moves lots between members keeping their expiry and
 * earn time; ADJUST corrects in either direction against the adjustment account; CLOSE forfeits
 * a member's points to breakage and refuses while holds or a debt remain (docs/LEDGER.md, the
 * TRANSFER, ADJUST and CLOSE rows, and "Debt"). */
#include "../support.h"

#include <string.h>

static uint64_t lot_of(struct fx *f, uint64_t accrual_seq)
{
    return fx_entry(f, accrual_seq, NULL, 0, NULL).lot_id;
}

static void test_transfer_moves_lots_keeping_expiry_and_earn_time(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 365;
    fx_program(f, t("2026-01-01"), 1, &c, 2);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-01-10"), post_accrue(101, 1, 1, 100, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-02-10"), post_accrue(102, 1, 1, 100, 0)));

    uint64_t ts = t("2026-03-01");
    uint64_t seq = fx_ok(f, ts, post_transfer(300, 1, 1, 2, 150));
    struct tally_lot_ref refs[8];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, refs, 8, &n);
    assert_entry_kind(&en, TALLY_KIND_TRANSFER, 1, 2, 150);
    assert_int_equal(en.timestamp, ts);
    uint64_t first = en.lot_id;
    assert_true(first > l2);
    /* Two source refs, then the two lots created for the receiver. */
    assert_int_equal(n, 4);
    assert_ref(&refs[0], l1, 100);
    assert_ref(&refs[1], l2, 50);
    assert_ref(&refs[2], first, 100);
    assert_int_equal(refs[2].expires_at, t("2027-01-11"));
    assert_int_equal(refs[2].earned_at, t("2026-01-10"));
    assert_ref(&refs[3], first + 1, 50);
    assert_int_equal(refs[3].expires_at, t("2027-02-11"));
    assert_int_equal(refs[3].earned_at, t("2026-02-10"));

    struct tally_account from = fx_account(f, 1, 1);
    assert_int_equal(from.available, 50);
    assert_int_equal(from.transferred_out, 150);
    assert_int_equal(from.earned, 200);
    struct tally_account to = fx_account(f, 1, 2);
    assert_int_equal(to.available, 150);
    assert_int_equal(to.transferred_in, 150);
    assert_int_equal(to.earned, 0);
    assert_int_equal(to.last_seq, seq);

    struct tally_lot lots[4];
    assert_int_equal(fx_lots(f, 1, 2, lots, 4), 2);
    assert_int_equal(lots[0].lot_id, first);
    assert_int_equal(lots[0].remaining, 100);
    assert_int_equal(lots[0].expires_at, t("2027-01-11"));
    assert_int_equal(lots[0].earned_at, t("2026-01-10"));
    assert_int_equal(lots[0].origin_seq, seq);
    assert_int_equal(lots[1].lot_id, first + 1);
    assert_int_equal(lots[1].remaining, 50);
    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 1);
    assert_int_equal(lots[0].lot_id, l2);
    assert_int_equal(lots[0].remaining, 50);

    /* The transferred points expire with the lots they came from. */
    fx_tick(f, t("2027-01-12"));
    to = fx_account(f, 1, 2);
    assert_int_equal(to.available, 50);
    assert_int_equal(to.expired, 100);
    assert_int_equal(fx_program_sum(f, 1, 2), 0);
    fx_verify(f);
}

static void test_transfer_checks_both_accounts_and_points(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 3);
    uint64_t ts = t("2026-01-02");
    fx_ok(f, ts, post_accrue(100, 1, 1, 100, 0));
    fx_ok(f, ts, post_close(101, 1, 3));
    uint64_t before = fx_entries(f);
    assert_code(fx_code(f, ts, post_transfer(10, 1, 1, 2, 101)), TALLY_INSUFFICIENT_POINTS);
    assert_code(fx_code(f, ts, post_transfer(11, 1, 1, 4, 10)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_transfer(12, 1, 4, 1, 10)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_transfer(13, 1, 1, 3, 10)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, ts, post_transfer(14, 1, 3, 1, 10)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, ts, post_transfer(15, 2, 1, 2, 10)), TALLY_PROGRAM_NOT_FOUND);
    assert_int_equal(fx_entries(f), before);
    fx_ok(f, ts, post_transfer(16, 1, 1, 2, 100));
    assert_int_equal(fx_account(f, 1, 1).available, 0);
    assert_int_equal(fx_account(f, 1, 2).available, 100);
    fx_verify(f);
}

static void test_positive_adjust_creates_lot_expiring_from_adjustment_time(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 30;
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t ts = t("2026-03-15T08:00Z");
    uint64_t seq = fx_ok(f, ts, post_adjust(100, 1, 1, 40, false, 501));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_ADJUST, SYS_ADJUSTMENT, 1, 40);
    assert_int_equal(en.code, 501);
    assert_int_equal(en.flags & TALLY_ENTRY_NEGATIVE, 0);
    assert_int_equal(en.time_a, t("2026-04-15"));
    assert_int_not_equal(en.lot_id, 0);
    assert_int_equal(n, 1);
    assert_ref(&ref, en.lot_id, 40);
    assert_int_equal(ref.expires_at, t("2026-04-15"));
    assert_int_equal(ref.earned_at, ts);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 40);
    assert_int_equal(a.adjusted, 40);
    assert_int_equal(a.earned, 0);
    assert_int_equal(fx_account(f, 1, SYS_ADJUSTMENT).available, -40);
    assert_int_equal(fx_totals(f, 1).adjusted, 40);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 1);
    assert_int_equal(lot.remaining, 40);
    assert_int_equal(lot.expires_at, t("2026-04-15"));
    fx_verify(f);
}

static void test_negative_adjust_takes_points_from_lots(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 1);
    uint64_t lot = lot_of(f, fx_ok(f, t("2026-03-02"), post_adjust(100, 1, 1, 40, false, 501)));
    uint64_t seq = fx_ok(f, t("2026-03-03"), post_adjust(101, 1, 1, 30, true, 502));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_ADJUST, 1, SYS_ADJUSTMENT, 30);
    assert_true((en.flags & TALLY_ENTRY_NEGATIVE) != 0);
    assert_int_equal(en.code, 502);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 30);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 10);
    assert_int_equal(a.adjusted, 10);
    assert_int_equal(fx_account(f, 1, SYS_ADJUSTMENT).available, -10);
    assert_int_equal(fx_totals(f, 1).adjusted, 10);

    assert_code(fx_code(f, t("2026-03-04"), post_adjust(102, 1, 1, 11, true, 502)),
                TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_account(f, 1, 1).available, 10);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_close_forfeits_available_and_pending_points_to_breakage(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 2);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-03-02"), post_accrue(100, 1, 1, 100, 0)));
    uint64_t l2 =
        lot_of(f, fx_ok(f, t("2026-03-02"), post_accrue_pending(101, 1, 1, 50, 0, 7 * DAY_MS)));
    uint64_t ts = t("2026-03-03");
    uint64_t seq = fx_ok(f, ts, post_close(102, 1, 1));

    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_CLOSE, 1, SYS_BREAKAGE, 150);
    assert_int_equal(n, 2);
    uint64_t from_l1 = 0;
    uint64_t from_l2 = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (refs[i].lot_id == l1)
            from_l1 += refs[i].amount;
        else if (refs[i].lot_id == l2)
            from_l2 += refs[i].amount;
        else
            fail_msg("CLOSE names lot %llu", (unsigned long long)refs[i].lot_id);
    }
    assert_int_equal(from_l1, 100);
    assert_int_equal(from_l2, 50);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.status, TALLY_ACCOUNT_STATUS_CLOSED);
    assert_int_equal(a.closed_at, ts);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.pending, 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.expired, 150);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 150);
    assert_int_equal(fx_totals(f, 1).expired, 150);
    assert_int_equal(fx_totals(f, 1).outstanding, 0);

    /* A closed account takes no more postings, and its pending lot never activates. */
    uint64_t later = t("2026-03-04");
    assert_code(fx_code(f, later, post_accrue(103, 1, 1, 10, 0)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, later, post_redeem(104, 1, 1, 1)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, later, post_adjust(105, 1, 1, 1, false, 1)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, later, post_close(106, 1, 1)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, later, post_hold(107, 1, 1, 1, 0)), TALLY_ACCOUNT_CLOSED);
    assert_code(fx_code(f, later, post_activate(108, 1, 1, 101)), TALLY_ACCOUNT_CLOSED);
    fx_tick(f, t("2026-03-20"));
    a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.pending, 0);
    assert_int_equal(fx_program_sum(f, 1, 2), 0);
    fx_verify(f);
}

static void test_close_of_empty_account_forfeits_nothing(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 1);
    uint64_t seq = fx_ok(f, t("2026-03-02"), post_close(100, 1, 1));
    struct tally_entry en = fx_entry(f, seq, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_CLOSE, 1, SYS_BREAKAGE, 0);
    assert_int_equal(fx_account(f, 1, 1).status, TALLY_ACCOUNT_STATUS_CLOSED);
    fx_verify(f);
}

static void test_close_with_active_hold_gives_account_has_holds(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 1);
    uint64_t ts = t("2026-03-02");
    fx_ok(f, ts, post_accrue(100, 1, 1, 100, 0));
    fx_ok(f, ts, post_hold(101, 1, 1, 30, HOUR_MS));
    uint64_t before = fx_entries(f);
    assert_code(fx_code(f, ts, post_close(102, 1, 1)), TALLY_ACCOUNT_HAS_HOLDS);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_account(f, 1, 1).status, TALLY_ACCOUNT_STATUS_OPEN);
    fx_ok(f, ts, post_release(103, 1, 1, 101));
    uint64_t seq = fx_ok(f, ts, post_close(104, 1, 1));
    assert_int_equal(fx_entry(f, seq, NULL, 0, NULL).amount, 100);
    fx_verify(f);
}

static void test_close_while_in_debt_gives_insufficient_points(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t ts = t("2026-03-02");
    uint64_t seq = fx_ok(f, ts, post_adjust(100, 1, 1, 10, true, 7));
    uint32_t n = 99;
    struct tally_lot_ref ref;
    fx_entry(f, seq, &ref, 1, &n);
    assert_int_equal(n, 0); /* no lot had points */
    assert_int_equal(fx_account(f, 1, 1).available, -10);
    assert_code(fx_code(f, ts, post_close(101, 1, 1)), TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_account(f, 1, 1).status, TALLY_ACCOUNT_STATUS_OPEN);
    /* Paying the debt makes it closable. */
    fx_ok(f, ts, post_adjust(102, 1, 1, 10, false, 7));
    assert_int_equal(fx_account(f, 1, 1).available, 0);
    seq = fx_ok(f, ts, post_close(103, 1, 1));
    assert_int_equal(fx_entry(f, seq, NULL, 0, NULL).amount, 0);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_transfer_moves_lots_keeping_expiry_and_earn_time),
        FX_TEST(test_transfer_checks_both_accounts_and_points),
        FX_TEST(test_positive_adjust_creates_lot_expiring_from_adjustment_time),
        FX_TEST(test_negative_adjust_takes_points_from_lots),
        FX_TEST(test_close_forfeits_available_and_pending_points_to_breakage),
        FX_TEST(test_close_of_empty_account_forfeits_nothing),
        FX_TEST(test_close_with_active_hold_gives_account_has_holds),
        FX_TEST(test_close_while_in_debt_gives_insufficient_points),
    };
    return cmocka_run_group_tests_name("transfer_adjust_close", tests, NULL, NULL);
}
