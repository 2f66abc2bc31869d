/* test_linked.c: linked chains are all or nothing (docs/LEDGER.md, "Linked chains"). A failing
 * posting leaves none of its chain's entries, gets its own result (recorded when state-dependent)
 * and the others LINKED_EVENT_FAILED; a chain still open at the end of the batch fails with
 * LINKED_CHAIN_OPEN; an EXISTS counts as success; time-driven work is never part of a chain. */
#include "../support.h"

#include <string.h>

/* Program 1, members 1 and 2; member 1 has 100 points (posting 100). */
static void setup_linked(struct fx *f)
{
    fx_program(f, t("2026-01-01"), 1, NULL, 2);
    fx_ok(f, t("2026-01-02"), post_accrue(100, 1, 1, 100, 0));
}

static void assert_unknown_posting(struct fx *f, uint64_t id_n)
{
    uint8_t id[16];
    id_make(id, id_n);
    struct engine_posting_info pi;
    assert_int_equal(engine_posting(f->e, id, &pi), TALLY_ENOT_FOUND);
}

static void test_failing_posting_leaves_no_entries_of_its_chain(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t before = fx_entries(f);
    struct tally_posting p[5] = {
        post_accrue(200, 1, 1, 50, 0),         /* alone */
        linked(post_open(201, 1, 3)),          /* chain ... */
        linked(post_accrue(202, 1, 3, 70, 0)), /* ... */
        post_redeem(203, 1, 1, 500),           /* ... ends here, and fails */
        post_accrue(204, 1, 2, 10, 0),         /* alone */
    };
    struct tally_result r[5];
    fx_apply(f, t("2026-01-03"), p, 5, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[2].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[3].code, TALLY_INSUFFICIENT_POINTS);
    assert_code(r[4].code, TALLY_OK);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(r[i].seq, 0);
    assert_int_equal(r[0].seq, before + 1);
    assert_int_equal(r[4].seq, before + 2); /* no gap where the chain was */
    assert_int_equal(fx_entries(f), before + 2);

    struct tally_account a;
    assert_int_equal(engine_account(f->e, 1, 3, &a), TALLY_ENOT_FOUND);
    assert_int_equal(fx_account(f, 1, 1).available, 150);
    assert_int_equal(fx_account(f, 1, 2).available, 10);
    assert_int_equal(fx_totals(f, 1).members, 2);

    /* The failing posting is recorded; its chain partners are not. */
    assert_code(fx_posting(f, 203).code, TALLY_INSUFFICIENT_POINTS);
    assert_unknown_posting(f, 201);
    assert_unknown_posting(f, 202);
    fx_verify(f);
}

static void test_chain_rolls_back_effects_of_its_earlier_postings(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t before = fx_entries(f);
    /* The first redemption alone would succeed; the second then lacks the points. */
    struct tally_posting p[2] = {
        linked(post_redeem(200, 1, 1, 100)),
        post_redeem(201, 1, 1, 1),
    };
    struct tally_result r[2];
    fx_apply(f, t("2026-01-03"), p, 2, r);
    assert_code(r[0].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[1].code, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), before);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 100);
    assert_int_equal(a.redeemed, 0);
    struct tally_lot lot;
    assert_int_equal(fx_lots(f, 1, 1, &lot, 1), 1);
    assert_int_equal(lot.remaining, 100);
    assert_int_equal(fx_account(f, 1, SYS_REDEMPTION).available, 0);
    fx_verify(f);
}

static void test_successful_chain_applies_every_posting_in_order(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t before = fx_entries(f);
    struct tally_posting p[3] = {
        linked(post_open(200, 1, 3)),
        linked(post_accrue(201, 1, 3, 70, 0)),
        post_transfer(202, 1, 3, 1, 20),
    };
    struct tally_result r[3];
    fx_apply(f, t("2026-01-03"), p, 3, r);
    for (uint64_t i = 0; i < 3; i++) {
        assert_code(r[i].code, TALLY_OK);
        assert_int_equal(r[i].seq, before + 1 + i);
    }
    assert_int_equal(fx_account(f, 1, 3).available, 50);
    assert_int_equal(fx_account(f, 1, 1).available, 120);
    fx_verify(f);
}

static void test_chain_open_at_batch_end_gives_linked_chain_open(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t before = fx_entries(f);
    struct tally_posting p[3] = {
        post_accrue(300, 1, 1, 10, 0),
        linked(post_accrue(301, 1, 1, 20, 0)),
        linked(post_accrue(302, 1, 1, 30, 0)),
    };
    struct tally_result r[3];
    fx_apply(f, t("2026-01-03"), p, 3, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_LINKED_CHAIN_OPEN);
    assert_code(r[2].code, TALLY_LINKED_CHAIN_OPEN);
    assert_int_equal(r[1].seq, 0);
    assert_int_equal(r[2].seq, 0);
    assert_int_equal(fx_entries(f), before + 1);
    assert_int_equal(fx_account(f, 1, 1).available, 110);
    assert_unknown_posting(f, 301);
    assert_unknown_posting(f, 302);

    /* Not recorded: the same ids go through once the chain is closed. */
    struct tally_posting q[2] = {p[1], post_accrue(302, 1, 1, 30, 0)};
    fx_apply(f, t("2026-01-04"), q, 2, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_OK);
    assert_int_equal(fx_account(f, 1, 1).available, 160);
    fx_verify(f);
}

static void test_validation_failure_in_chain_fails_the_chain(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t before = fx_entries(f);
    struct tally_posting p[2] = {
        linked(post_open(200, 1, 3)),
        post_redeem(201, 1, 3, 0),
    };
    struct tally_result r[2];
    fx_apply(f, t("2026-01-03"), p, 2, r);
    assert_code(r[0].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[1].code, TALLY_AMOUNT_ZERO);
    assert_int_equal(fx_entries(f), before);
    struct tally_account a;
    assert_int_equal(engine_account(f->e, 1, 3, &a), TALLY_ENOT_FOUND);
    assert_unknown_posting(f, 200);
    assert_unknown_posting(f, 201);
}

static void test_failed_chain_posting_stays_failed_while_partners_can_retry(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    struct tally_posting p[2] = {
        linked(post_accrue(200, 1, 1, 1000, 0)),
        post_redeem(201, 1, 3, 500), /* member 3 does not exist yet */
    };
    struct tally_result r[2];
    fx_apply(f, t("2026-01-03"), p, 2, r);
    assert_code(r[0].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[1].code, TALLY_ACCOUNT_NOT_FOUND);

    /* Member 3 appears; 201 stays failed (EXISTS with its failure), 200 is accepted anew. */
    fx_ok(f, t("2026-01-04"), post_open(202, 1, 3));
    struct tally_result r1 = fx_apply1(f, t("2026-01-04"), p[1]);
    assert_code(r1.code, TALLY_EXISTS);
    assert_code(r1.detail, TALLY_ACCOUNT_NOT_FOUND);
    assert_int_equal(r1.seq, 0);
    p[0].flags = 0;
    fx_ok(f, t("2026-01-04"), p[0]);
    assert_int_equal(fx_account(f, 1, 1).available, 1100);
    assert_int_equal(fx_account(f, 1, 3).redeemed, 0);
}

static void test_exists_in_chain_counts_as_success(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    struct tally_posting open3 = linked(post_open(200, 1, 3));
    struct tally_posting acc3 = post_accrue(201, 1, 3, 40, 0);
    struct tally_posting p[2] = {open3, acc3};
    struct tally_result r[2];
    fx_apply(f, t("2026-01-03"), p, 2, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_OK);
    uint64_t open_seq = r[0].seq;
    uint64_t acc_seq = r[1].seq;

    /* The same OPEN again, chained to a new redemption: EXISTS, and the chain goes through. */
    struct tally_posting q[2] = {open3, post_redeem(202, 1, 3, 15)};
    fx_apply(f, t("2026-01-04"), q, 2, r);
    assert_code(r[0].code, TALLY_EXISTS);
    assert_code(r[0].detail, TALLY_OK);
    assert_int_equal(r[0].seq, open_seq);
    assert_code(r[1].code, TALLY_OK);

    /* A new posting chained to a repeated last posting. */
    struct tally_posting s[2] = {linked(post_redeem(203, 1, 3, 5)), acc3};
    fx_apply(f, t("2026-01-05"), s, 2, r);
    assert_code(r[0].code, TALLY_OK);
    assert_code(r[1].code, TALLY_EXISTS);
    assert_int_equal(r[1].seq, acc_seq);
    assert_int_equal(fx_account(f, 1, 3).available, 20);
    fx_verify(f);
}

static void test_time_driven_work_survives_a_failed_chain(void **state)
{
    struct fx *f = *state;
    setup_linked(f);
    uint64_t acc = fx_ok(f, t("2026-01-03"), post_accrue_pending(200, 1, 2, 30, 0, DAY_MS));
    struct tally_posting p[2] = {
        linked(post_redeem(201, 1, 2, 30)),
        post_redeem(202, 1, 2, 1000),
    };
    struct tally_result r[2];
    fx_apply(f, t("2026-01-05"), p, 2, r);
    assert_code(r[0].code, TALLY_LINKED_EVENT_FAILED);
    assert_code(r[1].code, TALLY_INSUFFICIENT_POINTS);
    assert_int_equal(fx_entries(f), acc + 1);
    assert_int_equal(fx_entry(f, acc + 1, NULL, 0, NULL).kind, TALLY_KIND_ACTIVATE);
    assert_int_equal(fx_account(f, 1, 2).available, 30);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_failing_posting_leaves_no_entries_of_its_chain),
        FX_TEST(test_chain_rolls_back_effects_of_its_earlier_postings),
        FX_TEST(test_successful_chain_applies_every_posting_in_order),
        FX_TEST(test_chain_open_at_batch_end_gives_linked_chain_open),
        FX_TEST(test_validation_failure_in_chain_fails_the_chain),
        FX_TEST(test_failed_chain_posting_stays_failed_while_partners_can_retry),
        FX_TEST(test_exists_in_chain_counts_as_success),
        FX_TEST(test_time_driven_work_survives_a_failed_chain),
    };
    return cmocka_run_group_tests_name("linked", tests, NULL, NULL);
}
