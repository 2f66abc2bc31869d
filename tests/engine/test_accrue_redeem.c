/* test_accrue_redeem.c: ACCRUE creates a lot whose expiry comes from the program's policy;
 * REDEEM consumes lots soonest-expiring first (ties: lowest lot id) and records its lineage;
 * the limits INSUFFICIENT_POINTS, LOTS_LIMIT and OVERFLOW (docs/LEDGER.md, "Lots", "Expiry
 * policies" and the ACCRUE and REDEEM rows). */
#include "../support.h"

#include <stdlib.h>
#include <string.h>

static void config_days(struct tally_program_config *c, uint32_t days)
{
    config_default(c);
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = days;
}

static uint64_t lot_of(struct fx *f, uint64_t accrual_seq)
{
    struct tally_entry en = fx_entry(f, accrual_seq, NULL, 0, NULL);
    assert_int_not_equal(en.lot_id, 0);
    return en.lot_id;
}

static void test_accrue_creates_lot_expiring_by_policy(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_days(&c, 365);
    fx_program(f, t("2026-03-01"), 1, &c, 1);

    uint64_t ts = t("2026-03-15T10:30Z");
    struct tally_posting p = post_accrue(100, 1, 1, 100, 0);
    p.code = 77;
    memcpy(p.user_data, "order-1", 7);
    uint64_t seq = fx_ok(f, ts, p);

    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_ACCRUE, SYS_ISSUANCE, 1, 100);
    assert_int_equal(en.timestamp, ts);
    assert_int_equal(en.program, 1);
    assert_int_equal(en.value, 0);
    assert_int_equal(en.flags & (TALLY_ENTRY_PENDING | TALLY_ENTRY_AUTO), 0);
    assert_int_equal(en.code, 77);
    assert_memory_equal(en.user_data, p.user_data, 32);
    assert_memory_equal(en.posting_id, p.id, 16);
    /* DAYS 365: valid through 2027-03-15, so it expires at the start of 2027-03-16. */
    uint64_t expires = t("2027-03-16");
    assert_int_equal(en.time_a, expires);
    assert_int_equal(en.time_b, 0);
    assert_int_not_equal(en.lot_id, 0);
    assert_int_equal(n, 1);
    assert_ref(&refs[0], en.lot_id, 100);
    assert_int_equal(refs[0].expires_at, expires);
    assert_int_equal(refs[0].earned_at, ts);

    struct tally_lot lots[2];
    assert_int_equal(fx_lots(f, 1, 1, lots, 2), 1);
    assert_int_equal(lots[0].lot_id, en.lot_id);
    assert_int_equal(lots[0].expires_at, expires);
    assert_int_equal(lots[0].earned_at, ts);
    assert_int_equal(lots[0].origin_seq, seq);
    assert_int_equal(lots[0].amount, 100);
    assert_int_equal(lots[0].remaining, 100);
    assert_int_equal(lots[0].held, 0);
    assert_int_equal(lots[0].activate_at, 0);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.earned, 100);
    assert_int_equal(a.lots_open, 1);
    assert_int_equal(a.last_seq, seq);
    assert_int_equal(fx_account(f, 1, SYS_ISSUANCE).available, -100);
    assert_int_equal(fx_totals(f, 1).issued, 100);
    assert_int_equal(fx_totals(f, 1).outstanding, 100);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

struct expiry_case {
    uint8_t policy;
    uint32_t n;
    int32_t tz_min;
    const char *fixed;
    const char *earned;
    const char *expires; /* NULL: never */
};

static void test_expiry_policies_compute_expiry_in_program_civil_time(void **state)
{
    struct fx *f = *state;
    /* In time order: a batch's effective time never goes back. */
    static const struct expiry_case cases[] = {
        {TALLY_EXPIRY_NONE, 0, 0, NULL, "2026-05-10T12:00Z", NULL},
        {TALLY_EXPIRY_FIXED, 0, 0, "2026-12-31", "2026-05-10T12:00Z", "2026-12-31"},
        {TALLY_EXPIRY_DAYS, 30, 0, NULL, "2026-05-10T12:00Z", "2026-06-10"},
        {TALLY_EXPIRY_MONTH, 0, 0, NULL, "2026-05-10T12:00Z", "2026-06-01"},
        {TALLY_EXPIRY_MONTH, 2, 0, NULL, "2026-05-10T12:00Z", "2026-08-01"},
        {TALLY_EXPIRY_QUARTER, 0, 0, NULL, "2026-05-10T12:00Z", "2026-07-01"},
        {TALLY_EXPIRY_QUARTER, 1, 0, NULL, "2026-05-10T12:00Z", "2026-10-01"},
        {TALLY_EXPIRY_YEAR, 0, 0, NULL, "2026-05-10T12:00Z", "2027-01-01"},
        /* The example of docs/LEDGER.md. */
        {TALLY_EXPIRY_YEAR, 1, 0, NULL, "2026-05-10T12:00Z", "2028-01-01"},
        /* UTC-5: 02:00Z is 21:00 local on the 10th; valid through local 11th. */
        {TALLY_EXPIRY_DAYS, 1, -300, NULL, "2026-05-11T02:00Z", "2026-05-12T05:00Z"},
        /* UTC+8: 20:00Z on May 31 is already June 1 locally; local July 1 is 16:00Z. */
        {TALLY_EXPIRY_MONTH, 0, 480, NULL, "2026-05-31T20:00Z", "2026-06-30T16:00Z"},
        /* UTC-1: 00:30Z on July 1 is still Q2 locally: expires at local July 1 00:00. */
        {TALLY_EXPIRY_QUARTER, 0, -60, NULL, "2026-07-01T00:30Z", "2026-07-01T01:00Z"},
        /* UTC+1: 23:30Z on Dec 31 is already 2027 locally: expires at local 2028-01-01. */
        {TALLY_EXPIRY_YEAR, 0, 60, NULL, "2026-12-31T23:30Z", "2027-12-31T23:00Z"},
    };
    for (uint32_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct expiry_case *k = &cases[i];
        struct tally_program_config c;
        config_default(&c);
        c.expiry = k->policy;
        c.expiry_n = k->n;
        c.tz_offset_min = k->tz_min;
        c.expiry_fixed_at = k->fixed != NULL ? t(k->fixed) : 0;
        uint32_t program = 100 + i;
        uint64_t at = t(k->earned);
        fx_program(f, at, program, &c, 1);
        uint64_t seq = fx_ok(f, at, post_accrue(fx_id(f), program, 1, 10, 0));

        uint64_t want = k->expires != NULL ? t(k->expires) : UINT64_MAX;
        struct tally_lot_ref ref;
        uint32_t n = 0;
        struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
        if (en.time_a != want)
            fail_msg("case %u: expiry %llu, expected %llu", i, (unsigned long long)en.time_a,
                     (unsigned long long)want);
        assert_int_equal(n, 1);
        assert_int_equal(ref.expires_at, want);
        assert_int_equal(ref.earned_at, at);
        struct tally_lot lot;
        assert_int_equal(fx_lots(f, program, 1, &lot, 1), 1);
        assert_int_equal(lot.expires_at, want);
    }
    fx_verify(f);
}

static void test_redeem_consumes_soonest_expiring_lot(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_days(&c, 365);
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-01-10"), post_accrue(101, 1, 1, 100, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-02-10"), post_accrue(102, 1, 1, 200, 0)));
    uint64_t l3 = lot_of(f, fx_ok(f, t("2026-03-10"), post_accrue(103, 1, 1, 300, 0)));

    uint64_t ts = t("2026-04-01");
    uint64_t seq = fx_ok(f, ts, post_redeem(104, 1, 1, 250));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_REDEEM, 1, SYS_REDEMPTION, 250);
    assert_int_equal(en.timestamp, ts);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l1, 100);
    assert_int_equal(refs[0].expires_at, t("2027-01-11"));
    assert_int_equal(refs[0].earned_at, t("2026-01-10"));
    assert_ref(&refs[1], l2, 150);
    assert_int_equal(refs[1].expires_at, t("2027-02-11"));

    /* The emptied lot is gone; the rest, soonest-expiring first. */
    struct tally_lot lots[4];
    assert_int_equal(fx_lots(f, 1, 1, lots, 4), 2);
    assert_int_equal(lots[0].lot_id, l2);
    assert_int_equal(lots[0].remaining, 50);
    assert_int_equal(lots[1].lot_id, l3);
    assert_int_equal(lots[1].remaining, 300);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 350);
    assert_int_equal(a.redeemed, 250);
    assert_int_equal(a.earned, 600);
    assert_int_equal(a.lots_open, 2);
    assert_int_equal(fx_account(f, 1, SYS_REDEMPTION).available, 250);
    assert_int_equal(fx_totals(f, 1).redeemed, 250);
    assert_int_equal(fx_totals(f, 1).outstanding, 350);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_redeem_prefers_sooner_expiry_over_lower_lot_id(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_days(&c, 365);
    fx_program(f, t("2026-01-01"), 1, &c, 2);
    fx_ok(f, t("2026-01-10"), post_accrue(101, 1, 1, 200, 0));
    uint64_t own = lot_of(f, fx_ok(f, t("2026-03-01"), post_accrue(102, 1, 2, 100, 0)));
    /* The transferred lot is newer (higher id) but keeps the January expiry. */
    uint64_t tseq = fx_ok(f, t("2026-03-05"), post_transfer(103, 1, 1, 2, 50));
    uint64_t moved = fx_entry(f, tseq, NULL, 0, NULL).lot_id;
    assert_true(moved > own);

    uint64_t seq = fx_ok(f, t("2026-03-06"), post_redeem(104, 1, 2, 70));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    fx_entry(f, seq, refs, 4, &n);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], moved, 50);
    assert_int_equal(refs[0].expires_at, t("2027-01-11"));
    assert_int_equal(refs[0].earned_at, t("2026-01-10"));
    assert_ref(&refs[1], own, 20);
    assert_int_equal(refs[1].expires_at, t("2027-03-02"));
    assert_int_equal(fx_account(f, 1, 2).available, 80);
    fx_verify(f);
}

static void test_redeem_on_equal_expiry_takes_lowest_lot_id_first(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2027-01-01");
    fx_program(f, t("2026-01-01"), 1, &c, 1);
    struct tally_posting p[3] = {
        post_accrue(101, 1, 1, 100, 0),
        post_accrue(102, 1, 1, 100, 0),
        post_accrue(103, 1, 1, 100, 0),
    };
    struct tally_result r[3];
    fx_apply(f, t("2026-02-01"), p, 3, r);
    uint64_t lot[3];
    for (int i = 0; i < 3; i++) {
        assert_code(r[i].code, TALLY_OK);
        lot[i] = lot_of(f, r[i].seq);
    }
    /* Lot ids come from a counter in entry order. */
    assert_true(lot[0] < lot[1]);
    assert_true(lot[1] < lot[2]);

    uint64_t seq = fx_ok(f, t("2026-02-02"), post_redeem(104, 1, 1, 150));
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    fx_entry(f, seq, refs, 4, &n);
    assert_int_equal(n, 2);
    assert_ref(&refs[0], lot[0], 100);
    assert_ref(&refs[1], lot[1], 50);
    fx_verify(f);
}

static void test_redeem_beyond_available_gives_insufficient_points(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(101, 1, 1, 100, 0));
    uint64_t before = fx_entries(f);
    struct tally_result r = fx_apply1(f, t("2026-01-03"), post_redeem(102, 1, 1, 101));
    assert_code(r.code, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(r.seq, 0);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
    struct engine_posting_info pi = fx_posting(f, 102);
    assert_code(pi.code, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(pi.seq, 0);
    assert_int_equal(pi.entry_count, 0);

    fx_ok(f, t("2026-01-03"), post_redeem(103, 1, 1, 100));
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.redeemed, 100);
    assert_int_equal(a.lots_open, 0);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);
    fx_verify(f);
}

static void test_member_lot_limit_refuses_one_more_lot_and_redeem_spans_all(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 2);
    uint32_t count = TALLY_LINEAGE_MAX;
    struct tally_posting *p = calloc(count, sizeof(*p));
    struct tally_result *r = calloc(count, sizeof(*r));
    assert_non_null(p);
    assert_non_null(r);
    for (uint32_t i = 0; i < count; i++)
        p[i] = post_accrue(1000 + i, 1, 1, 1, 0);
    fx_apply(f, t("2026-01-02"), p, count, r);
    for (uint32_t i = 0; i < count; i++)
        assert_code(r[i].code, TALLY_OK);
    uint64_t first_lot = lot_of(f, r[0].seq);
    uint64_t before = fx_entries(f);

    /* A member holds at most TALLY_LINEAGE_MAX open lots: one more is refused, whether it would
     * come from an accrual, a positive adjustment or a transfer, and nothing is written. */
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_accrue(2, 1, 1, 5, 0)), TALLY_LOTS_LIMIT);
    assert_code(fx_code(f, ts, post_adjust(3, 1, 1, 5, false, 7)), TALLY_LOTS_LIMIT);
    fx_ok(f, ts, post_accrue(4, 1, 2, 5, 0));
    assert_int_equal(fx_entries(f), before + 1);
    assert_code(fx_code(f, ts, post_transfer(5, 1, 2, 1, 5)), TALLY_LOTS_LIMIT);
    assert_int_equal(fx_entries(f), before + 1);
    assert_int_equal(fx_account(f, 1, 1).available, count);

    /* One redemption can take every lot: its lineage is exactly at the limit. */
    uint64_t seq = fx_ok(f, ts, post_redeem(6, 1, 1, count));
    struct tally_lot_ref *refs = calloc(TEST_REFS_MAX, sizeof(*refs));
    assert_non_null(refs);
    uint32_t n = 0;
    fx_entry(f, seq, refs, TEST_REFS_MAX, &n);
    assert_int_equal(n, TALLY_LINEAGE_MAX);
    assert_ref(&refs[0], first_lot, 1);
    for (uint32_t i = 1; i < n; i++) {
        assert_int_equal(refs[i].amount, 1);
        assert_true(refs[i].lot_id > refs[i - 1].lot_id);
    }
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);
    /* With the lots spent, the member takes new ones again. */
    fx_ok(f, ts, post_accrue(7, 1, 1, 5, 0));
    free(refs);
    free(r);
    free(p);
    fx_verify(f);
}

static void test_accrue_beyond_int64_balance_gives_overflow(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    /* 1023 x 2^53 = 2^63 - 2^53 still fits an int64 balance; the 1024th would make 2^63. */
    uint32_t count = 1100;
    struct tally_posting *p = calloc(count, sizeof(*p));
    struct tally_result *r = calloc(count, sizeof(*r));
    assert_non_null(p);
    assert_non_null(r);
    for (uint32_t i = 0; i < count; i++)
        p[i] = post_accrue(1000 + i, 1, 1, TALLY_AMOUNT_MAX, 0);
    fx_apply(f, t("2026-01-02"), p, count, r);
    for (uint32_t i = 0; i < 1023; i++)
        assert_code(r[i].code, TALLY_OK);
    for (uint32_t i = 1023; i < count; i++) {
        assert_code(r[i].code, TALLY_OVERFLOW);
        assert_int_equal(r[i].seq, 0);
    }
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 1023 * (int64_t)TALLY_AMOUNT_MAX);
    assert_int_equal(fx_account(f, 1, SYS_ISSUANCE).available, -1023 * (int64_t)TALLY_AMOUNT_MAX);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    assert_code(fx_posting(f, 1000 + 1023).code, TALLY_OVERFLOW);
    free(r);
    free(p);
    fx_verify(f);
}

static void test_accrue_of_lot_already_past_fixed_expiry_expires_at_once(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2026-01-01");
    fx_program(f, t("2025-12-01"), 1, &c, 1);
    uint64_t ts = t("2026-03-01");
    uint64_t seq = fx_ok(f, ts, post_accrue(101, 1, 1, 100, 0));

    struct tally_entry acc = fx_entry(f, seq, NULL, 0, NULL);
    assert_entry_kind(&acc, TALLY_KIND_ACCRUE, SYS_ISSUANCE, 1, 100);
    assert_int_equal(acc.time_a, t("2026-01-01"));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry ex = fx_entry(f, seq + 1, &ref, 1, &n);
    assert_entry_kind(&ex, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 100);
    assert_true((ex.flags & TALLY_ENTRY_AUTO) != 0);
    assert_int_equal(ex.timestamp, ts); /* not before the accrual it follows */
    assert_int_equal(n, 1);
    assert_ref(&ref, acc.lot_id, 100);
    assert_int_equal(fx_entries(f), seq + 1);
    assert_int_equal(fx_posting(f, 101).entry_count, 2);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.earned, 100);
    assert_int_equal(a.expired, 100);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 0);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 100);
    assert_int_equal(fx_totals(f, 1).expired, 100);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_accrue_creates_lot_expiring_by_policy),
        FX_TEST(test_expiry_policies_compute_expiry_in_program_civil_time),
        FX_TEST(test_redeem_consumes_soonest_expiring_lot),
        FX_TEST(test_redeem_prefers_sooner_expiry_over_lower_lot_id),
        FX_TEST(test_redeem_on_equal_expiry_takes_lowest_lot_id_first),
        FX_TEST(test_redeem_beyond_available_gives_insufficient_points),
        FX_TEST(test_member_lot_limit_refuses_one_more_lot_and_redeem_spans_all),
        FX_TEST(test_accrue_beyond_int64_balance_gives_overflow),
        FX_TEST(test_accrue_of_lot_already_past_fixed_expiry_expires_at_once),
    };
    return cmocka_run_group_tests_name("accrue_redeem", tests, NULL, NULL);
}
