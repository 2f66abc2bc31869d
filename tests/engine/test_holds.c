/* test_holds.c: two-phase redemption. HOLD reserves points (soonest-expiring lots first) until a
 * timeout; CAPTURE spends all or part (the rest is released); RELEASE gives them back; a hold
 * nobody resolves is released by time, in the first batch at or after its timeout, stamped with
 * the timeout. Held points of a lot that expired meanwhile expire as soon as they are released
 * (docs/LEDGER.md, "Expiry policies", and the HOLD, CAPTURE and RELEASE rows). */
#include "../support.h"

#include <string.h>

/* Program 1 (no expiry, holds time out after 15 minutes by default), member 1 with 100 points
 * in one lot; returns that lot's id. */
static uint64_t setup_points(struct fx *f)
{
    fx_program(f, t("2026-03-01"), 1, NULL, 1);
    uint64_t seq = fx_ok(f, t("2026-03-01"), post_accrue(100, 1, 1, 100, 0));
    return fx_entry(f, seq, NULL, 0, NULL).lot_id;
}

static void test_hold_moves_points_from_available_to_held(void **state)
{
    struct fx *f = *state;
    uint64_t lot = setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));

    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, h, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_HOLD, 1, 1, 60);
    assert_int_equal(en.time_a, ts + 10 * MINUTE_MS);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 60);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 40);
    assert_int_equal(a.held, 60);
    assert_int_equal(a.holds_active, 1);
    assert_int_equal(a.redeemed, 0);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 1);
    assert_int_equal(l.remaining, 40);
    assert_int_equal(l.held, 60);

    struct engine_hold_info hi = fx_hold(f, 200);
    assert_int_equal(hi.seq, h);
    assert_int_equal(hi.program, 1);
    assert_int_equal(hi.status, TALLY_HOLD_ACTIVE);
    assert_int_equal(hi.member, 1);
    assert_int_equal(hi.amount, 60);
    assert_int_equal(hi.captured, 0);
    assert_int_equal(hi.timeout_at, ts + 10 * MINUTE_MS);
    assert_int_equal(hi.resolved_seq, 0);
    assert_int_equal(fx_totals(f, 1).outstanding, 100);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);

    /* Held points are not available twice. */
    assert_code(fx_code(f, ts, post_redeem(201, 1, 1, 41)), TALLY_INSUFFICIENT_POINTS);
    assert_code(fx_code(f, ts, post_hold(202, 1, 1, 41, 0)), TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), h);
    fx_verify(f);
}

static void test_hold_without_timeout_uses_program_default(void **state)
{
    struct fx *f = *state;
    setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 10, 0));
    assert_int_equal(fx_entry(f, h, NULL, 0, NULL).time_a, ts + 15 * MINUTE_MS);
    assert_int_equal(fx_hold(f, 200).timeout_at, ts + 15 * MINUTE_MS);
}

static void test_hold_takes_soonest_expiring_lots_first(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 100;
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t l1 =
        fx_entry(f, fx_ok(f, t("2026-03-02"), post_accrue(101, 1, 1, 100, 0)), NULL, 0, NULL)
            .lot_id;
    uint64_t l2 =
        fx_entry(f, fx_ok(f, t("2026-03-05"), post_accrue(102, 1, 1, 100, 0)), NULL, 0, NULL)
            .lot_id;
    fx_ok(f, t("2026-03-06"), post_accrue(103, 1, 1, 100, 0));
    uint64_t h = fx_ok(f, t("2026-03-07"), post_hold(200, 1, 1, 150, HOUR_MS));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    fx_entry(f, h, refs, 4, &n);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l1, 100);
    assert_ref(&refs[1], l2, 50);
    fx_verify(f);
}

static void test_capture_of_whole_hold_spends_held_points(void **state)
{
    struct fx *f = *state;
    uint64_t lot = setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));
    uint64_t at = ts + MINUTE_MS;
    uint64_t cseq = fx_ok(f, at, post_capture(201, 1, 1, 200, 0));

    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, cseq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_CAPTURE, 1, SYS_REDEMPTION, 60);
    assert_int_equal(en.ref_seq, h);
    assert_int_equal(en.timestamp, at);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 60);
    assert_int_equal(fx_entries(f), cseq); /* nothing left to release */
    assert_int_equal(fx_posting(f, 201).entry_count, 1);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 40);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.redeemed, 60);
    assert_int_equal(a.holds_active, 0);
    struct engine_hold_info hi = fx_hold(f, 200);
    assert_int_equal(hi.status, TALLY_HOLD_CAPTURED);
    assert_int_equal(hi.captured, 60);
    assert_int_equal(hi.resolved_seq, cseq);
    assert_int_equal(fx_account(f, 1, SYS_REDEMPTION).available, 60);

    /* A captured hold has no timeout any more. */
    fx_tick(f, ts + HOUR_MS);
    assert_int_equal(fx_entries(f), cseq);
    assert_int_equal(fx_account(f, 1, 1).available, 40);
    fx_verify(f);
}

static void test_partial_capture_releases_the_rest(void **state)
{
    struct fx *f = *state;
    uint64_t lot = setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));
    uint64_t cseq = fx_ok(f, ts + MINUTE_MS, post_capture(201, 1, 1, 200, 25));

    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry cap = fx_entry(f, cseq, &ref, 1, &n);
    assert_entry_kind(&cap, TALLY_KIND_CAPTURE, 1, SYS_REDEMPTION, 25);
    assert_int_equal(cap.ref_seq, h);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 25);
    struct tally_entry rel = fx_entry(f, cseq + 1, &ref, 1, &n);
    assert_entry_kind(&rel, TALLY_KIND_RELEASE, 1, 1, 35);
    assert_int_equal(rel.ref_seq, h);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 35);
    assert_int_equal(fx_entries(f), cseq + 1);
    assert_int_equal(fx_posting(f, 201).entry_count, 2);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 75);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.redeemed, 25);
    assert_int_equal(a.holds_active, 0);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 1);
    assert_int_equal(l.remaining, 75);
    assert_int_equal(l.held, 0);
    struct engine_hold_info hi = fx_hold(f, 200);
    assert_int_equal(hi.status, TALLY_HOLD_CAPTURED);
    assert_int_equal(hi.captured, 25);
    assert_int_equal(hi.resolved_seq, cseq);
    fx_verify(f);
}

static void test_release_gives_held_points_back(void **state)
{
    struct fx *f = *state;
    uint64_t lot = setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));
    uint64_t rseq = fx_ok(f, ts + MINUTE_MS, post_release(201, 1, 1, 200));

    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, rseq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_RELEASE, 1, 1, 60);
    assert_int_equal(en.ref_seq, h);
    assert_int_equal(en.flags & TALLY_ENTRY_AUTO, 0);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 60);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.holds_active, 0);
    assert_int_equal(a.redeemed, 0);
    struct engine_hold_info hi = fx_hold(f, 200);
    assert_int_equal(hi.status, TALLY_HOLD_RELEASED);
    assert_int_equal(hi.captured, 0);
    assert_int_equal(hi.resolved_seq, rseq);
    fx_tick(f, ts + HOUR_MS);
    assert_int_equal(fx_entries(f), rseq);
    fx_verify(f);
}

static void test_hold_times_out_on_tick_stamped_with_its_timeout(void **state)
{
    struct fx *f = *state;
    uint64_t lot = setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));

    fx_tick(f, ts + 10 * MINUTE_MS - 1);
    assert_int_equal(fx_entries(f), h);
    assert_int_equal(fx_hold(f, 200).status, TALLY_HOLD_ACTIVE);

    fx_tick(f, ts + HOUR_MS);
    assert_int_equal(fx_entries(f), h + 1);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, h + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_RELEASE, 1, 1, 60);
    assert_int_equal(en.timestamp, ts + 10 * MINUTE_MS);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_true(id_is_zero(en.posting_id));
    assert_int_equal(en.ref_seq, h);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 60);

    struct engine_hold_info hi = fx_hold(f, 200);
    assert_int_equal(hi.status, TALLY_HOLD_TIMED_OUT);
    assert_int_equal(hi.resolved_seq, h + 1);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.holds_active, 0);
    fx_verify(f);
}

static void test_resolved_hold_gives_hold_not_active(void **state)
{
    struct fx *f = *state;
    setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    fx_ok(f, ts, post_hold(200, 1, 1, 10, 10 * MINUTE_MS));
    fx_ok(f, ts, post_hold(300, 1, 1, 10, 10 * MINUTE_MS));
    fx_ok(f, ts, post_hold(400, 1, 1, 10, 5 * MINUTE_MS));
    fx_ok(f, ts, post_capture(201, 1, 1, 200, 0));
    fx_ok(f, ts, post_release(301, 1, 1, 300));
    fx_tick(f, ts + 6 * MINUTE_MS); /* 400 times out */
    assert_int_equal(fx_hold(f, 400).status, TALLY_HOLD_TIMED_OUT);
    uint64_t before = fx_entries(f);

    uint64_t at = ts + 7 * MINUTE_MS;
    assert_code(fx_code(f, at, post_capture(202, 1, 1, 200, 0)), TALLY_HOLD_NOT_ACTIVE);
    assert_code(fx_code(f, at, post_release(203, 1, 1, 200)), TALLY_HOLD_NOT_ACTIVE);
    assert_code(fx_code(f, at, post_capture(302, 1, 1, 300, 0)), TALLY_HOLD_NOT_ACTIVE);
    assert_code(fx_code(f, at, post_release(303, 1, 1, 300)), TALLY_HOLD_NOT_ACTIVE);
    assert_code(fx_code(f, at, post_capture(402, 1, 1, 400, 1)), TALLY_HOLD_NOT_ACTIVE);
    assert_code(fx_code(f, at, post_release(403, 1, 1, 400)), TALLY_HOLD_NOT_ACTIVE);
    assert_int_equal(fx_entries(f), before);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 90);
    assert_int_equal(a.redeemed, 10);
    fx_verify(f);
}

static void test_capture_above_held_amount_gives_exceeds_hold(void **state)
{
    struct fx *f = *state;
    setup_points(f);
    uint64_t ts = t("2026-03-10T12:00Z");
    uint64_t h = fx_ok(f, ts, post_hold(200, 1, 1, 60, 10 * MINUTE_MS));
    assert_code(fx_code(f, ts, post_capture(201, 1, 1, 200, 61)), TALLY_EXCEEDS_HOLD);
    assert_int_equal(fx_entries(f), h);
    assert_int_equal(fx_hold(f, 200).status, TALLY_HOLD_ACTIVE);
    assert_int_equal(fx_account(f, 1, 1).held, 60);
    /* The exact amount is fine. */
    fx_ok(f, ts, post_capture(202, 1, 1, 200, 60));
    assert_int_equal(fx_account(f, 1, 1).redeemed, 60);
}

/* Program 1 whose lots all expire at 2026-04-01T00:00Z; member 1 accrues 100 on 2026-03-20 and
 * holds 60 of them at 23:00 the night before, with a 2-hour timeout (posting id 200). */
static uint64_t setup_hold_over_expiry(struct fx *f, uint64_t *lot)
{
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2026-04-01");
    fx_program(f, t("2026-03-01"), 1, &c, 1);
    uint64_t seq = fx_ok(f, t("2026-03-20"), post_accrue(100, 1, 1, 100, 0));
    *lot = fx_entry(f, seq, NULL, 0, NULL).lot_id;
    return fx_ok(f, t("2026-03-31T23:00Z"), post_hold(200, 1, 1, 60, 2 * HOUR_MS));
}

static void assert_expire(struct fx *f, uint64_t seq, uint64_t ts, uint64_t lot, uint64_t amount)
{
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, amount);
    assert_int_equal(en.timestamp, ts);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, amount);
}

static void test_held_points_of_expired_lot_expire_when_released(void **state)
{
    struct fx *f = *state;
    uint64_t lot;
    uint64_t h = setup_hold_over_expiry(f, &lot);

    /* At expiry only the 40 points not held go. */
    fx_tick(f, t("2026-04-01T00:30Z"));
    assert_int_equal(fx_entries(f), h + 1);
    assert_expire(f, h + 1, t("2026-04-01"), lot, 40);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.held, 60);
    assert_int_equal(a.expired, 40);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 1);
    assert_int_equal(l.remaining, 0);
    assert_int_equal(l.held, 60);

    /* Released after expiry: back to the lot, and expired at once. */
    uint64_t at = t("2026-04-01T00:40Z");
    uint64_t rseq = fx_ok(f, at, post_release(201, 1, 1, 200));
    assert_int_equal(rseq, h + 2);
    struct tally_entry rel = fx_entry(f, rseq, NULL, 0, NULL);
    assert_entry_kind(&rel, TALLY_KIND_RELEASE, 1, 1, 60);
    assert_int_equal(rel.timestamp, at);
    assert_expire(f, rseq + 1, at, lot, 60);
    assert_int_equal(fx_entries(f), rseq + 1);

    a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.expired, 100);
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 0);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 100);
    assert_int_equal(fx_hold(f, 200).status, TALLY_HOLD_RELEASED);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_held_points_of_expired_lot_expire_when_hold_times_out(void **state)
{
    struct fx *f = *state;
    uint64_t lot;
    uint64_t h = setup_hold_over_expiry(f, &lot);

    /* One tick past both: expiry at 00:00, timeout at 01:00, then the released points expire. */
    fx_tick(f, t("2026-04-01T02:00Z"));
    assert_int_equal(fx_entries(f), h + 3);
    assert_expire(f, h + 1, t("2026-04-01"), lot, 40);
    struct tally_entry rel = fx_entry(f, h + 2, NULL, 0, NULL);
    assert_entry_kind(&rel, TALLY_KIND_RELEASE, 1, 1, 60);
    assert_int_equal(rel.timestamp, t("2026-04-01T01:00Z"));
    assert_true((rel.flags & TALLY_ENTRY_AUTO) != 0);
    assert_int_equal(rel.ref_seq, h);
    assert_expire(f, h + 3, t("2026-04-01T01:00Z"), lot, 60);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.expired, 100);
    assert_int_equal(fx_hold(f, 200).status, TALLY_HOLD_TIMED_OUT);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 0);
    fx_verify(f);
}

static void test_partial_capture_of_hold_on_expired_lot_expires_the_rest(void **state)
{
    struct fx *f = *state;
    uint64_t lot;
    uint64_t h = setup_hold_over_expiry(f, &lot);
    fx_tick(f, t("2026-04-01T00:30Z"));
    uint64_t at = t("2026-04-01T00:45Z");
    uint64_t cseq = fx_ok(f, at, post_capture(201, 1, 1, 200, 20));
    assert_int_equal(cseq, h + 2);
    struct tally_entry cap = fx_entry(f, cseq, NULL, 0, NULL);
    assert_entry_kind(&cap, TALLY_KIND_CAPTURE, 1, SYS_REDEMPTION, 20);
    struct tally_entry rel = fx_entry(f, cseq + 1, NULL, 0, NULL);
    assert_entry_kind(&rel, TALLY_KIND_RELEASE, 1, 1, 40);
    assert_expire(f, cseq + 2, at, lot, 40);
    assert_int_equal(fx_entries(f), cseq + 2);
    assert_int_equal(fx_posting(f, 201).entry_count, 3);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.redeemed, 20);
    assert_int_equal(a.expired, 80);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_hold_moves_points_from_available_to_held),
        FX_TEST(test_hold_without_timeout_uses_program_default),
        FX_TEST(test_hold_takes_soonest_expiring_lots_first),
        FX_TEST(test_capture_of_whole_hold_spends_held_points),
        FX_TEST(test_partial_capture_releases_the_rest),
        FX_TEST(test_release_gives_held_points_back),
        FX_TEST(test_hold_times_out_on_tick_stamped_with_its_timeout),
        FX_TEST(test_resolved_hold_gives_hold_not_active),
        FX_TEST(test_capture_above_held_amount_gives_exceeds_hold),
        FX_TEST(test_held_points_of_expired_lot_expire_when_released),
        FX_TEST(test_held_points_of_expired_lot_expire_when_hold_times_out),
        FX_TEST(test_partial_capture_of_hold_on_expired_lot_expires_the_rest),
    };
    return cmocka_run_group_tests_name("holds", tests, NULL, NULL);
}
