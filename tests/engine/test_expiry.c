/* test_expiry.c: a lot expires at its expiry time. The EXPIRE timer of (program, member,
 * expires_at) fires in the first batch whose timestamp reaches it, and one EXPIRE entry, stamped
 * expires_at, moves the remaining points of every lot of that member due by then to breakage
 * (docs/LEDGER.md, "Expiry policies"; held points are in test_holds.c, restored points in
 * test_reverse.c). */
#include "../support.h"

#include <string.h>

static uint64_t lot_of(struct fx *f, uint64_t accrual_seq)
{
    return fx_entry(f, accrual_seq, NULL, 0, NULL).lot_id;
}

static void program_with(struct fx *f, uint8_t policy, uint32_t n, uint64_t members)
{
    struct tally_program_config c;
    config_default(&c);
    c.expiry = policy;
    c.expiry_n = n;
    fx_program(f, t("2026-03-01"), 1, &c, members);
}

static void test_lot_expires_at_its_expiry_time(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_DAYS, 30, 1);
    uint64_t lot = lot_of(f, fx_ok(f, t("2026-03-15T10:00Z"), post_accrue(100, 1, 1, 100, 0)));
    fx_ok(f, t("2026-03-20"), post_redeem(101, 1, 1, 30));
    uint64_t expires = t("2026-04-15"); /* valid through 2026-04-14 */
    uint64_t before = fx_entries(f);

    fx_tick(f, expires - 1);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_account(f, 1, 1).available, 70);

    fx_tick(f, expires);
    assert_int_equal(fx_entries(f), before + 1);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, before + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 70);
    assert_int_equal(en.timestamp, expires);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_true(id_is_zero(en.posting_id));
    assert_int_equal(n, 1);
    assert_ref(&ref, lot, 70);
    assert_int_equal(ref.expires_at, expires);

    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.expired, 70);
    assert_int_equal(a.redeemed, 30);
    assert_int_equal(a.lots_open, 0);
    struct tally_lot l;
    assert_int_equal(fx_lots(f, 1, 1, &l, 1), 0);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 70);
    assert_int_equal(fx_totals(f, 1).expired, 70);
    assert_int_equal(fx_program_sum(f, 1, 1), 0);
    fx_verify(f);
}

static void test_lot_expires_on_late_tick_stamped_with_expiry_time(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_MONTH, 0, 1);
    fx_ok(f, t("2026-03-15"), post_accrue(100, 1, 1, 100, 0));
    uint64_t before = fx_entries(f);
    fx_tick(f, t("2026-06-20"));
    assert_int_equal(fx_entries(f), before + 1);
    struct tally_entry en = fx_entry(f, before + 1, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 100);
    assert_int_equal(en.timestamp, t("2026-04-01"));
}

static void test_one_expire_entry_takes_every_lot_due_at_that_time(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_MONTH, 0, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 40, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-03-20"), post_accrue(101, 1, 1, 60, 0)));
    uint64_t before = fx_entries(f);
    fx_tick(f, t("2026-04-02"));
    assert_int_equal(fx_entries(f), before + 1);
    struct tally_lot_ref refs[4];
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, before + 1, refs, 4, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 100);
    assert_int_equal(en.timestamp, t("2026-04-01"));
    assert_int_equal(n, 2);
    assert_ref(&refs[0], l1, 40);
    assert_ref(&refs[1], l2, 60);
    assert_int_equal(fx_account(f, 1, 1).expired, 100);
    fx_verify(f);
}

static void test_lots_due_at_different_times_expire_in_time_order(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_DAYS, 10, 1);
    uint64_t l1 = lot_of(f, fx_ok(f, t("2026-03-01"), post_accrue(100, 1, 1, 10, 0)));
    uint64_t l2 = lot_of(f, fx_ok(f, t("2026-03-05"), post_accrue(101, 1, 1, 20, 0)));
    uint64_t l3 = lot_of(f, fx_ok(f, t("2026-03-10"), post_accrue(102, 1, 1, 30, 0)));
    uint64_t before = fx_entries(f);
    fx_tick(f, t("2026-03-20"));
    assert_int_equal(fx_entries(f), before + 2);
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, before + 1, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 10);
    assert_int_equal(en.timestamp, t("2026-03-12"));
    assert_ref(&ref, l1, 10);
    en = fx_entry(f, before + 2, &ref, 1, &n);
    assert_entry_kind(&en, TALLY_KIND_EXPIRE, 1, SYS_BREAKAGE, 20);
    assert_int_equal(en.timestamp, t("2026-03-16"));
    assert_ref(&ref, l2, 20);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 1);
    assert_int_equal(lot.lot_id, l3);
    assert_int_equal(fx_account(f, 1, 1).available, 30);
    fx_verify(f);
}

static void test_each_member_gets_its_own_expire_entry(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_MONTH, 0, 2);
    fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 10, 0));
    fx_ok(f, t("2026-03-05"), post_accrue(101, 1, 2, 20, 0));
    uint64_t before = fx_entries(f);
    fx_tick(f, t("2026-04-02"));
    assert_int_equal(fx_entries(f), before + 2);
    uint64_t seen[3] = {0};
    for (uint64_t s = before + 1; s <= before + 2; s++) {
        struct tally_entry en = fx_entry(f, s, NULL, 0, NULL);
        assert_int_equal(en.kind, TALLY_KIND_EXPIRE);
        assert_int_equal(en.credit, SYS_BREAKAGE);
        assert_int_equal(en.timestamp, t("2026-04-01"));
        assert_true(en.debit == 1 || en.debit == 2);
        seen[en.debit] = en.amount;
    }
    assert_int_equal(seen[1], 10);
    assert_int_equal(seen[2], 20);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 30);
    fx_verify(f);
}

static void test_expiry_due_by_batch_time_comes_before_its_postings(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_MONTH, 0, 1);
    fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 10, 0));
    uint64_t before = fx_entries(f);
    struct tally_result r = fx_apply1(f, t("2026-04-02"), post_redeem(101, 1, 1, 10));
    assert_code(r.code, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), before + 1);
    assert_int_equal(fx_entry(f, before + 1, NULL, 0, NULL).kind, TALLY_KIND_EXPIRE);
}

static void test_lots_without_expiry_never_expire(void **state)
{
    struct fx *f = *state;
    program_with(f, TALLY_EXPIRY_NONE, 0, 1);
    uint64_t seq = fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 10, 0));
    assert_int_equal(fx_entry(f, seq, NULL, 0, NULL).time_a, UINT64_MAX);
    fx_tick(f, t("2099-12-31"));
    assert_int_equal(fx_entries(f), seq);
    assert_int_equal(fx_account(f, 1, 1).available, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_lot_expires_at_its_expiry_time),
        FX_TEST(test_lot_expires_on_late_tick_stamped_with_expiry_time),
        FX_TEST(test_one_expire_entry_takes_every_lot_due_at_that_time),
        FX_TEST(test_lots_due_at_different_times_expire_in_time_order),
        FX_TEST(test_each_member_gets_its_own_expire_entry),
        FX_TEST(test_expiry_due_by_batch_time_comes_before_its_postings),
        FX_TEST(test_lots_without_expiry_never_expire),
    };
    return cmocka_run_group_tests_name("expiry", tests, NULL, NULL);
}
