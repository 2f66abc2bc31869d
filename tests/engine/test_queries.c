/* test_queries.c: what finance reads. Balances as of a past time, a member's history page by
 * page, the per-program totals, and double entry: every program sums to zero after every batch,
 * through every kind of entry (BRIEF law 3; docs/LEDGER.md, "Accounts and double entry"). */
#include "../support.h"

#include <string.h>

static void assert_balance(struct fx *f, uint64_t at, int64_t available, uint64_t pending,
                           uint64_t held, uint64_t seq)
{
    struct tally_balance b;
    memset(&b, 0, sizeof(b));
    int rc = engine_balance_at(f->e, 1, 1, at, &b);
    if (rc != 0)
        fail_msg("engine_balance_at(%llu): %d", (unsigned long long)at, rc);
    char when[32];
    calendar_format(at, when);
    if (b.available != available || b.pending != pending || b.held != held || b.seq != seq)
        fail_msg("at %s: available %lld pending %llu held %llu seq %llu, expected %lld %llu %llu "
                 "%llu",
                 when, (long long)b.available, (unsigned long long)b.pending,
                 (unsigned long long)b.held, (unsigned long long)b.seq, (long long)available,
                 (unsigned long long)pending, (unsigned long long)held, (unsigned long long)seq);
    assert_int_equal(b.as_of, at);
}

static void test_balance_at_gives_buckets_as_of_a_past_time(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 0);
    uint64_t open = fx_ok(f, t("2026-03-01T08:00Z"), post_open(1, 1, 1));
    uint64_t acc = fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 100, 0));
    uint64_t pend = fx_ok(f, t("2026-03-10"), post_accrue_pending(101, 1, 1, 40, 0, 7 * DAY_MS));
    uint64_t hold = fx_ok(f, t("2026-03-12"), post_hold(102, 1, 1, 30, HOUR_MS));
    /* This batch first times the hold out (03-12 01:00), activates (03-17), then redeems. */
    uint64_t red = fx_ok(f, t("2026-03-20"), post_redeem(103, 1, 1, 50));
    uint64_t release = hold + 1;
    uint64_t activate = hold + 2;
    assert_int_equal(red, hold + 3);

    struct tally_balance b;
    assert_int_equal(engine_balance_at(f->e, 1, 1, t("2026-03-01T07:59Z"), &b), TALLY_ENOT_FOUND);
    assert_balance(f, t("2026-03-01T08:00Z"), 0, 0, 0, open);
    assert_balance(f, t("2026-03-05") - 1, 0, 0, 0, open);
    assert_balance(f, t("2026-03-05"), 100, 0, 0, acc);
    assert_balance(f, t("2026-03-09"), 100, 0, 0, acc);
    assert_balance(f, t("2026-03-10"), 100, 40, 0, pend);
    assert_balance(f, t("2026-03-12"), 70, 40, 30, hold);
    assert_balance(f, t("2026-03-12T00:59Z"), 70, 40, 30, hold);
    assert_balance(f, t("2026-03-12T01:00Z"), 100, 40, 0, release);
    assert_balance(f, t("2026-03-17"), 140, 0, 0, activate);
    assert_balance(f, t("2026-03-19"), 140, 0, 0, activate);
    assert_balance(f, t("2026-03-20"), 90, 0, 0, red);
    assert_balance(f, t("2030-01-01"), 90, 0, 0, red);
    fx_verify(f);
}

static void test_history_pages_newest_first(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-01"), 1, NULL, 2);
    uint64_t seqs[7];
    seqs[0] = fx_account(f, 1, 1).last_seq; /* OPEN */
    for (int i = 1; i <= 5; i++)
        seqs[i] = fx_ok(f, t("2026-03-02"),
                        post_accrue((uint64_t)(100 + i), 1, 1, (uint64_t)(10 * i), 0));
    fx_ok(f, t("2026-03-02"), post_accrue(110, 1, 2, 1, 0)); /* someone else's */
    seqs[6] = fx_ok(f, t("2026-03-03"), post_transfer(111, 1, 1, 2, 5));

    struct tally_entry page[3];
    uint32_t n = 0;
    assert_int_equal(engine_history(f->e, 1, 1, 0, page, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(page[0].seq, seqs[6]);
    assert_int_equal(page[0].kind, TALLY_KIND_TRANSFER);
    assert_int_equal(page[1].seq, seqs[5]);
    assert_int_equal(page[1].amount, 50);
    assert_int_equal(page[2].seq, seqs[4]);

    assert_int_equal(engine_history(f->e, 1, 1, page[2].seq, page, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(page[0].seq, seqs[3]);
    assert_int_equal(page[1].seq, seqs[2]);
    assert_int_equal(page[2].seq, seqs[1]);

    assert_int_equal(engine_history(f->e, 1, 1, page[2].seq, page, 3, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(page[0].seq, seqs[0]);
    assert_int_equal(page[0].kind, TALLY_KIND_OPEN);

    assert_int_equal(engine_history(f->e, 1, 1, seqs[0], page, 3, &n), 0);
    assert_int_equal(n, 0);

    /* Member 2 sees its own entries and the transfer. */
    assert_int_equal(engine_history(f->e, 1, 2, 0, page, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(page[0].seq, seqs[6]);
    assert_int_equal(page[1].kind, TALLY_KIND_ACCRUE);
    assert_int_equal(page[2].kind, TALLY_KIND_OPEN);
}

/* Every kind of entry, with the program's sum checked after every batch. */
static void step(struct fx *f, const char *at, struct tally_posting p)
{
    fx_ok(f, t(at), p);
    assert_int_equal(fx_program_sum(f, 1, 3), 0);
}

static void test_every_kind_keeps_program_sum_at_zero(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 30;
    fx_program(f, t("2026-03-01"), 1, &c, 3);
    assert_int_equal(fx_program_sum(f, 1, 3), 0);

    /* Member 1 earns 1000 (lot until 04-01) and spends: 200 redeemed, a hold of 100 captured
     * for 60 (40 released), a hold released, a hold timed out, 100 of the redemption reversed,
     * 150 given to member 3. Member 2 earns 300 pending (activated 03-04, lot until 04-02), has
     * 100 of it reversed, and 10 with 1200 QV (tier 1, lot until 04-10). Member 3 gets the
     * transfer (lot until 04-01), +25 and -5 by adjustment, a pending accrual cancelled, and
     * closes. On 04-05 the lots of 04-01 and 04-02 have expired. */
    step(f, "2026-03-01", post_accrue(100, 1, 1, 1000, 0));
    step(f, "2026-03-02", post_accrue_pending(101, 1, 2, 300, 0, 2 * DAY_MS));
    step(f, "2026-03-05", post_redeem(102, 1, 1, 200));
    step(f, "2026-03-05", post_hold(103, 1, 1, 100, 10 * MINUTE_MS));
    step(f, "2026-03-05", post_capture(104, 1, 1, 103, 60));
    step(f, "2026-03-06", post_hold(105, 1, 1, 50, 10 * MINUTE_MS));
    step(f, "2026-03-06", post_release(106, 1, 1, 105));
    step(f, "2026-03-06", post_hold(107, 1, 1, 20, 10 * MINUTE_MS));
    step(f, "2026-03-07", post_reverse(108, 1, 1, 102, 100));
    step(f, "2026-03-07", post_reverse(109, 1, 2, 101, 100));
    step(f, "2026-03-08", post_transfer(110, 1, 1, 3, 150));
    step(f, "2026-03-08", post_adjust(111, 1, 3, 25, false, 1));
    step(f, "2026-03-08", post_adjust(112, 1, 3, 5, true, 2));
    step(f, "2026-03-09", post_accrue_pending(113, 1, 3, 40, 0, 10 * DAY_MS));
    step(f, "2026-03-09", post_cancel(114, 1, 3, 113));
    step(f, "2026-03-10", post_close(115, 1, 3));
    step(f, "2026-03-10", post_accrue(116, 1, 2, 10, 1200));
    fx_tick(f, t("2026-04-05"));
    assert_int_equal(fx_program_sum(f, 1, 3), 0);

    struct tally_account m1 = fx_account(f, 1, 1);
    assert_int_equal(m1.available, 0);
    assert_int_equal(m1.expired, 690);
    assert_int_equal(m1.redeemed, 160);
    assert_int_equal(m1.transferred_out, 150);
    struct tally_account m2 = fx_account(f, 1, 2);
    assert_int_equal(m2.available, 10);
    assert_int_equal(m2.expired, 200);
    assert_int_equal(m2.earned, 210);
    assert_int_equal(m2.tier, 1);
    struct tally_account m3 = fx_account(f, 1, 3);
    assert_int_equal(m3.status, TALLY_ACCOUNT_STATUS_CLOSED);
    assert_int_equal(m3.expired, 170);
    assert_int_equal(m3.adjusted, 20);

    assert_int_equal(fx_account(f, 1, SYS_ISSUANCE).available, -1210);
    assert_int_equal(fx_account(f, 1, SYS_REDEMPTION).available, 160);
    assert_int_equal(fx_account(f, 1, SYS_BREAKAGE).available, 1060);
    assert_int_equal(fx_account(f, 1, SYS_ADJUSTMENT).available, -20);
    struct tally_program_totals tot = fx_totals(f, 1);
    assert_int_equal(tot.members, 3);
    assert_int_equal(tot.issued, 1210);
    assert_int_equal(tot.redeemed, 160);
    assert_int_equal(tot.expired, 1060);
    assert_int_equal(tot.adjusted, 20);
    assert_int_equal(tot.outstanding, 10);

    /* Every kind of entry was made. */
    uint32_t kinds_seen = 0;
    for (uint64_t s = 1; s <= fx_entries(f); s++)
        kinds_seen |= 1u << fx_entry(f, s, NULL, 0, NULL).kind;
    for (uint32_t k = TALLY_KIND_PROGRAM; k < TALLY_KIND_LIMIT; k++)
        if ((kinds_seen & (1u << k)) == 0)
            fail_msg("no entry of kind %u", k);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_balance_at_gives_buckets_as_of_a_past_time),
        FX_TEST(test_history_pages_newest_first),
        FX_TEST(test_every_kind_keeps_program_sum_at_zero),
    };
    return cmocka_run_group_tests_name("queries", tests, NULL, NULL);
}
