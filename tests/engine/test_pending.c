/* test_pending.c: pending accruals (the return window): points wait in the pending bucket,
 * cannot be spent, activate by themselves at their time (driven by batch timestamps, stamped
 * with the due time), earlier by ACTIVATE, or go back by CANCEL (docs/LEDGER.md, "Lots", and
 * the ACCRUE, ACTIVATE and CANCEL rows). */
#include "../support.h"

#include <string.h>

#define WINDOW_MS (7 * DAY_MS)

/* Program 1 (no expiry, tiers at 1000/5000 QV) with member 1, and a pending accrual of 100
 * points and 500 QV made at 2026-03-15T10:00Z with a 7-day window (posting id 100). */
static uint64_t setup_pending(struct fx *f, uint64_t *ts)
{
    fx_program(f, t("2026-03-01"), 1, NULL, 2);
    *ts = t("2026-03-15T10:00Z");
    return fx_ok(f, *ts, post_accrue_pending(100, 1, 1, 100, 500, WINDOW_MS));
}

static void test_pending_accrual_keeps_points_in_pending_bucket(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);

    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_ACCRUE, SYS_ISSUANCE, 1, 100);
    assert_true((en.flags & TALLY_ENTRY_PENDING) != 0);
    assert_int_equal(en.time_b, ts + WINDOW_MS);
    assert_int_equal(en.time_a, UINT64_MAX);
    assert_int_equal(en.value, 500);
    assert_int_equal(n, 1);
    assert_ref(&ref, en.lot_id, 100);
    assert_int_equal(ref.earned_at, ts);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.pending, 100);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.earned, 100);
    assert_int_equal(a.qv_lifetime, 500);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 1);
    assert_int_equal(lot.lot_id, en.lot_id);
    assert_int_equal(lot.activate_at, ts + WINDOW_MS);
    assert_int_equal(lot.remaining, 100);
    assert_int_equal(fx_totals(f, 1).outstanding, 100);
    assert_int_equal(fx_program_sum(f, 1, 2), 0);

    /* Pending points cannot be spent, held or given away. */
    uint64_t later = ts + HOUR_MS;
    assert_code(fx_code(f, later, post_redeem(101, 1, 1, 1)), TALLY_INSUFFICIENT_POINTS);
    assert_code(fx_code(f, later, post_hold(102, 1, 1, 1, 0)), TALLY_INSUFFICIENT_POINTS);
    assert_code(fx_code(f, later, post_transfer(103, 1, 1, 2, 1)), TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), seq);
    fx_verify(f);
}

static void test_pending_activates_on_tick_stamped_with_activation_time(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    uint64_t lot = fx_entry(f, seq, NULL, 0, NULL).lot_id;

    fx_tick(f, ts + WINDOW_MS - 1);
    assert_int_equal(fx_entries(f), seq);
    assert_int_equal(fx_account(f, 1, 1).pending, 100);

    fx_tick(f, ts + WINDOW_MS + 3 * HOUR_MS);
    assert_int_equal(fx_entries(f), seq + 1);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_ACTIVATE, 1, 1, 100);
    assert_int_equal(en.timestamp, ts + WINDOW_MS);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_true(id_is_zero(en.posting_id));
    assert_int_equal(en.ref_seq, seq);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 100);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.pending, 0);
    assert_int_equal(a.available, 100);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 1);
    assert_int_equal(l.activate_at, 0);
    assert_int_equal(l.remaining, 100);

    /* Nothing more is due. */
    fx_tick(f, ts + 30 * DAY_MS);
    assert_int_equal(fx_entries(f), seq + 1);
    fx_verify(f);
}

static void test_pending_activates_in_batch_at_exactly_its_time(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    fx_tick(f, ts + WINDOW_MS);
    assert_int_equal(fx_entries(f), seq + 1);
    assert_int_equal(fx_entry(f, seq + 1, NULL, 0, NULL).kind, TALLY_KIND_ACTIVATE);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
}

static void test_activation_due_by_batch_time_comes_before_its_postings(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    uint64_t at = ts + 8 * DAY_MS;
    struct tally_result r = fx_apply1(f, at, post_redeem(101, 1, 1, 100));
    assert_code(r.code, TALLY_OK);
    assert_int_equal(r.seq, seq + 2);
    struct tally_entry act = fx_entry(f, seq + 1, NULL, 0, NULL);
    assert_int_equal(act.kind, TALLY_KIND_ACTIVATE);
    assert_int_equal(act.timestamp, ts + WINDOW_MS);
    struct tally_entry red = fx_entry(f, seq + 2, NULL, 0, NULL);
    assert_entry_kind(&red, TALLY_KIND_REDEEM, 1, SYS_REDEMPTION, 100);
    assert_int_equal(red.timestamp, at);
    assert_int_equal(fx_account(f, 1, 1).available, 0);
    fx_verify(f);
}

static void test_activate_posting_makes_pending_points_available_early(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    uint64_t lot = fx_entry(f, seq, NULL, 0, NULL).lot_id;

    uint64_t at = ts + DAY_MS;
    uint64_t aseq = fx_ok(f, at, post_activate(101, 1, 1, 100));
    assert_int_equal(aseq, seq + 1);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, aseq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_ACTIVATE, 1, 1, 100);
    assert_int_equal(en.timestamp, at);
    assert_int_equal(en.flags & TALLY_ENTRY_AUTO, 0);
    assert_int_equal(en.ref_seq, seq);
    uint8_t id[16];
    id_make(id, 101);
    assert_memory_equal(en.posting_id, id, 16);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 100);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.pending, 0);

    /* The activation timer is gone with the pending state. */
    fx_tick(f, ts + 10 * DAY_MS);
    assert_int_equal(fx_entries(f), aseq);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
    fx_verify(f);
}

static void test_cancel_returns_pending_points_and_their_qv(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    uint64_t at = ts + 2 * DAY_MS;
    uint64_t cseq = fx_ok(f, at, post_cancel(101, 1, 1, 100));
    struct tally_entry en = fx_entry(f, cseq, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_CANCEL, 1, SYS_ISSUANCE, 100);
    assert_int_equal(en.ref_seq, seq);
    assert_int_equal(en.timestamp, at);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.pending, 0);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.earned, 0);
    assert_int_equal(a.qv_lifetime, 0);
    assert_int_equal(a.qv[calendar_month_of(ts, 0) % TALLY_QV_MONTHS], 0);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);
    assert_int_equal(fx_account(f, 1, SYS_ISSUANCE).available, 0);
    assert_int_equal(fx_totals(f, 1).issued, 0);

    /* A cancelled accrual never activates. */
    fx_tick(f, ts + 10 * DAY_MS);
    assert_int_equal(fx_entries(f), cseq);
    assert_int_equal(fx_account(f, 1, 1).available, 0);
    fx_verify(f);
}

static void test_activate_or_cancel_of_non_pending_accrual_gives_not_pending(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    setup_pending(f, &ts);
    uint64_t at = ts + HOUR_MS;
    fx_ok(f, at, post_accrue(200, 1, 1, 50, 0)); /* never pending */
    fx_ok(f, at, post_accrue_pending(300, 1, 1, 30, 0, WINDOW_MS));
    uint64_t before = fx_entries(f);

    assert_code(fx_code(f, at, post_activate(201, 1, 1, 200)), TALLY_NOT_PENDING);
    assert_code(fx_code(f, at, post_cancel(202, 1, 1, 200)), TALLY_NOT_PENDING);
    assert_int_equal(fx_entries(f), before);

    /* Activated: neither again nor cancel. */
    fx_ok(f, at, post_activate(101, 1, 1, 100));
    assert_code(fx_code(f, at, post_activate(102, 1, 1, 100)), TALLY_NOT_PENDING);
    assert_code(fx_code(f, at, post_cancel(103, 1, 1, 100)), TALLY_NOT_PENDING);

    /* Cancelled: neither activate nor cancel again. */
    fx_ok(f, at, post_cancel(301, 1, 1, 300));
    assert_code(fx_code(f, at, post_activate(302, 1, 1, 300)), TALLY_NOT_PENDING);
    assert_code(fx_code(f, at, post_cancel(303, 1, 1, 300)), TALLY_NOT_PENDING);

    /* Activated by time. */
    fx_ok(f, at, post_accrue_pending(400, 1, 1, 20, 0, HOUR_MS));
    fx_tick(f, at + 2 * HOUR_MS);
    assert_code(fx_code(f, at + 2 * HOUR_MS, post_activate(401, 1, 1, 400)), TALLY_NOT_PENDING);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 170);
    assert_int_equal(a.pending, 0);
    assert_int_equal(a.earned, 170);
    fx_verify(f);
}

static void test_reverse_of_pending_accrual_gives_ref_pending(void **state)
{
    struct fx *f = *state;
    uint64_t ts;
    uint64_t seq = setup_pending(f, &ts);
    assert_code(fx_code(f, ts + HOUR_MS, post_reverse(101, 1, 1, 100, 0)), TALLY_REF_PENDING);
    assert_code(fx_code(f, ts + HOUR_MS, post_reverse(102, 1, 1, 100, 10)), TALLY_REF_PENDING);
    assert_int_equal(fx_entries(f), seq);
    assert_int_equal(fx_account(f, 1, 1).pending, 100);
    /* Once active it can be reversed. */
    fx_ok(f, ts + HOUR_MS, post_activate(103, 1, 1, 100));
    fx_ok(f, ts + HOUR_MS, post_reverse(104, 1, 1, 100, 10));
    assert_int_equal(fx_account(f, 1, 1).available, 90);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_pending_accrual_keeps_points_in_pending_bucket),
        FX_TEST(test_pending_activates_on_tick_stamped_with_activation_time),
        FX_TEST(test_pending_activates_in_batch_at_exactly_its_time),
        FX_TEST(test_activation_due_by_batch_time_comes_before_its_postings),
        FX_TEST(test_activate_posting_makes_pending_points_available_early),
        FX_TEST(test_cancel_returns_pending_points_and_their_qv),
        FX_TEST(test_activate_or_cancel_of_non_pending_accrual_gives_not_pending),
        FX_TEST(test_reverse_of_pending_accrual_gives_ref_pending),
    };
    return cmocka_run_group_tests_name("pending", tests, NULL, NULL);
}
