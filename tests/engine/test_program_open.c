/* test_program_open.c: PROGRAM and OPEN postings, the system accounts, and the queries that
 * answer TALLY_ENOT_FOUND for things that do not exist (docs/LEDGER.md, "Accounts and double
 * entry", and the PROGRAM and OPEN rows of the postings and effects tables). */
#include "../support.h"

#include <string.h>

static void test_program_posting_creates_program_and_four_system_accounts(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_YEAR;
    c.expiry_n = 1;
    uint64_t ts = t("2026-03-01T09:00Z");

    struct tally_posting p = post_program(11, 7, &c);
    p.code = 99;
    struct tally_result r = fx_apply1(f, ts, p);
    assert_code(r.code, TALLY_OK);
    assert_int_equal(r.detail, 0);
    assert_int_equal(r.seq, 1); /* the first entry of an empty ledger */

    struct tally_entry en = fx_entry(f, 1, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_PROGRAM, 0, 0, 0);
    assert_int_equal(en.program, 7);
    assert_int_equal(en.timestamp, ts);
    assert_int_equal(en.tail_size, sizeof(struct tally_program_config));
    assert_int_equal(en.code, 99);
    uint8_t id[16];
    id_make(id, 11);
    assert_memory_equal(en.posting_id, id, 16);

    struct tally_program_config got;
    struct tally_program_totals tot;
    assert_int_equal(engine_program(f->e, 7, &got, &tot), 0);
    assert_memory_equal(&got, &c, sizeof(c));
    assert_int_equal(tot.program, 7);
    assert_int_equal(tot.tier_count, 3);
    assert_int_equal(tot.members, 0);
    assert_int_equal(tot.issued, 0);
    assert_int_equal(tot.redeemed, 0);
    assert_int_equal(tot.expired, 0);
    assert_int_equal(tot.adjusted, 0);
    assert_int_equal(tot.outstanding, 0);

    static const uint64_t sys[] = {SYS_ISSUANCE, SYS_REDEMPTION, SYS_BREAKAGE, SYS_ADJUSTMENT};
    for (size_t i = 0; i < 4; i++) {
        struct tally_account a = fx_account(f, 7, sys[i]);
        assert_int_equal(a.status, TALLY_ACCOUNT_STATUS_SYSTEM);
        assert_int_equal(a.program, 7);
        assert_int_equal(a.member, sys[i]);
        assert_int_equal(a.available, 0);
    }

    struct engine_posting_info pi = fx_posting(f, 11);
    assert_code(pi.code, TALLY_OK);
    assert_int_equal(pi.kind, TALLY_KIND_PROGRAM);
    assert_int_equal(pi.seq, 1);
    assert_int_equal(pi.entry_count, 1);
    assert_int_equal(pi.timestamp, ts);
    fx_verify(f);
}

static void test_open_creates_member_at_tier_zero_without_end(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 7, NULL, 0);
    uint64_t ts = t("2026-03-02T10:00Z");
    uint64_t seq = fx_ok(f, ts, post_open(21, 7, 42));
    assert_int_equal(seq, 2);

    struct tally_entry en = fx_entry(f, seq, NULL, 0, NULL);
    assert_entry_kind(&en, TALLY_KIND_OPEN, 42, 42, 0);
    assert_int_equal(en.timestamp, ts);

    struct tally_account a = fx_account(f, 7, 42);
    assert_int_equal(a.status, TALLY_ACCOUNT_STATUS_OPEN);
    assert_int_equal(a.program, 7);
    assert_int_equal(a.member, 42);
    assert_int_equal(a.opened_at, ts);
    assert_int_equal(a.closed_at, 0);
    assert_int_equal(a.tier, 0);
    assert_int_equal(a.tier_valid_until, UINT64_MAX);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.pending, 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(a.last_seq, seq);

    assert_int_equal(fx_totals(f, 7).members, 1);
    fx_ok(f, ts, post_open(22, 7, TALLY_SYS_FIRST - 1)); /* the highest member id */
    assert_int_equal(fx_totals(f, 7).members, 2);
    fx_verify(f);
}

static void test_second_program_with_same_number_gives_program_exists(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    fx_ok(f, t("2026-03-01"), post_program(1, 7, &c));
    uint64_t before = fx_entries(f);
    c.tier_count = 2;
    c.thresholds[1] = 0;
    struct tally_result r = fx_apply1(f, t("2026-03-02"), post_program(2, 7, &c));
    assert_code(r.code, TALLY_PROGRAM_EXISTS);
    assert_int_equal(r.seq, 0);
    assert_int_equal(fx_entries(f), before);

    /* The first configuration stands, and the failure is recorded under its id. */
    struct tally_program_config got;
    struct tally_program_totals tot;
    assert_int_equal(engine_program(f->e, 7, &got, &tot), 0);
    assert_int_equal(got.tier_count, 3);
    struct engine_posting_info pi = fx_posting(f, 2);
    assert_code(pi.code, TALLY_PROGRAM_EXISTS);
    assert_int_equal(pi.seq, 0);
}

static void test_open_in_unknown_program_gives_program_not_found(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 7, NULL, 0);
    struct tally_result r = fx_apply1(f, t("2026-03-02"), post_open(5, 8, 1));
    assert_code(r.code, TALLY_PROGRAM_NOT_FOUND);
    assert_int_equal(r.seq, 0);
    struct tally_account a;
    assert_int_equal(engine_account(f->e, 8, 1, &a), TALLY_ENOT_FOUND);
    assert_int_equal(engine_account(f->e, 7, 1, &a), TALLY_ENOT_FOUND);
}

static void test_open_of_open_member_gives_account_exists(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 7, NULL, 1);
    uint64_t before = fx_entries(f);
    struct tally_result r = fx_apply1(f, t("2026-03-02"), post_open(5, 7, 1));
    assert_code(r.code, TALLY_ACCOUNT_EXISTS);
    assert_int_equal(fx_entries(f), before);
    struct tally_account a = fx_account(f, 7, 1);
    assert_int_equal(a.opened_at, t("2026-03-01"));
    assert_int_equal(fx_totals(f, 7).members, 1);
}

static void test_posting_for_unopened_member_gives_account_not_found(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 7, NULL, 1);
    uint64_t ts = t("2026-03-02");
    assert_code(fx_code(f, ts, post_accrue(5, 7, 2, 100, 0)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_redeem(6, 7, 2, 1)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_close(7, 7, 2)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_transfer(8, 7, 1, 2, 1)), TALLY_ACCOUNT_NOT_FOUND);
    assert_code(fx_code(f, ts, post_accrue(9, 9, 1, 100, 0)), TALLY_PROGRAM_NOT_FOUND);
    /* Nothing happened to the program. */
    assert_int_equal(fx_program_sum(f, 7, 2), 0);
    struct tally_account iss = fx_account(f, 7, SYS_ISSUANCE);
    assert_int_equal(iss.available, 0);
}

static void test_queries_on_unknown_things_give_not_found(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 7, NULL, 1);
    struct tally_program_config c;
    struct tally_account a;
    struct tally_balance b;
    struct tally_entry en;
    struct tally_lot lot;
    struct engine_posting_info pi;
    struct engine_hold_info h;
    uint32_t n = 0;
    uint8_t id[16];
    id_make(id, 424242);

    struct tally_program_totals tot;
    assert_int_equal(engine_program(f->e, 8, &c, &tot), TALLY_ENOT_FOUND);
    assert_int_equal(engine_account(f->e, 7, 2, &a), TALLY_ENOT_FOUND);
    assert_int_equal(engine_balance_at(f->e, 7, 2, t("2026-03-05"), &b), TALLY_ENOT_FOUND);
    assert_int_equal(engine_history(f->e, 7, 2, 0, &en, 1, &n), TALLY_ENOT_FOUND);
    assert_int_equal(engine_lots(f->e, 7, 2, &lot, 1, &n), TALLY_ENOT_FOUND);
    assert_int_equal(engine_entry(f->e, fx_entries(f) + 1, &en, NULL, 0, &n), TALLY_ENOT_FOUND);
    assert_int_equal(engine_posting(f->e, id, &pi), TALLY_ENOT_FOUND);
    assert_int_equal(engine_hold(f->e, id, &h), TALLY_ENOT_FOUND);
}

static void test_programs_are_listed_in_id_order_page_by_page(void **state)
{
    struct fx *f = *state;
    uint64_t ts = t("2026-03-01");
    fx_program(f, ts, 5, NULL, 0);
    fx_program(f, ts, 3, NULL, 0);
    fx_program(f, ts, 900, NULL, 0);

    uint32_t ids[4] = {0};
    uint32_t n = 99;
    assert_int_equal(engine_programs(f->e, 0, ids, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 5);
    assert_int_equal(engine_programs(f->e, 5, ids, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 900);
    assert_int_equal(engine_programs(f->e, 900, ids, 2, &n), 0);
    assert_int_equal(n, 0);
}

static void test_programs_are_isolated_from_each_other(void **state)
{
    struct fx *f = *state;
    uint64_t ts = t("2026-03-01");
    fx_program(f, ts, 3, NULL, 1);
    fx_program(f, ts, 5, NULL, 1);
    fx_ok(f, ts, post_accrue(100, 3, 1, 250, 0));
    assert_code(fx_code(f, ts, post_redeem(101, 5, 1, 1)), TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_account(f, 3, 1).available, 250);
    assert_int_equal(fx_account(f, 5, 1).available, 0);
    assert_int_equal(fx_account(f, 3, SYS_ISSUANCE).available, -250);
    assert_int_equal(fx_account(f, 5, SYS_ISSUANCE).available, 0);
    assert_int_equal(fx_program_sum(f, 3, 1), 0);
    assert_int_equal(fx_program_sum(f, 5, 1), 0);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_program_posting_creates_program_and_four_system_accounts),
        FX_TEST(test_open_creates_member_at_tier_zero_without_end),
        FX_TEST(test_second_program_with_same_number_gives_program_exists),
        FX_TEST(test_open_in_unknown_program_gives_program_not_found),
        FX_TEST(test_open_of_open_member_gives_account_exists),
        FX_TEST(test_posting_for_unopened_member_gives_account_not_found),
        FX_TEST(test_queries_on_unknown_things_give_not_found),
        FX_TEST(test_programs_are_listed_in_id_order_page_by_page),
        FX_TEST(test_programs_are_isolated_from_each_other),
    };
    return cmocka_run_group_tests_name("program_open", tests, NULL, NULL);
}
