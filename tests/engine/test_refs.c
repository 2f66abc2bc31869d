/* test_refs.c: the "ref checks" of postings that act on an earlier posting (ACTIVATE, CANCEL,
 * CAPTURE, RELEASE, REVERSE), in their documented order: REF_NOT_FOUND, REF_FAILED,
 * REF_WRONG_KIND, REF_ACCOUNT_MISMATCH, then ACCOUNT_CLOSED (docs/LEDGER.md, "Postings"). */
#include "../support.h"

#include <string.h>

/* Program 1, members 1..3. Member 1: accrual 100 (200 points), a failed redemption 101, a hold
 * 102 of 10, a failed hold 103, a redemption 104 of 5. Member 3: accrual 300, then closed. */
static void setup_refs(struct fx *f)
{
    fx_program(f, t("2026-01-01"), 1, NULL, 3);
    uint64_t ts = t("2026-01-02");
    fx_ok(f, ts, post_accrue(100, 1, 1, 200, 0));
    assert_code(fx_code(f, ts, post_redeem(101, 1, 1, 1000)), TALLY_INSUFFICIENT_POINTS);
    fx_ok(f, ts, post_hold(102, 1, 1, 10, 30 * DAY_MS));
    assert_code(fx_code(f, ts, post_hold(103, 1, 1, 1000, 30 * DAY_MS)), TALLY_INSUFFICIENT_POINTS);
    fx_ok(f, ts, post_redeem(104, 1, 1, 5));
    fx_ok(f, ts, post_accrue(300, 1, 3, 50, 0));
    fx_ok(f, ts, post_close(301, 1, 3));
}

static void test_ref_to_unknown_posting_gives_ref_not_found(void **state)
{
    struct fx *f = *state;
    setup_refs(f);
    uint64_t before = fx_entries(f);
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_activate(10, 1, 1, 999)), TALLY_REF_NOT_FOUND);
    assert_code(fx_code(f, ts, post_cancel(11, 1, 1, 999)), TALLY_REF_NOT_FOUND);
    assert_code(fx_code(f, ts, post_capture(12, 1, 1, 999, 0)), TALLY_REF_NOT_FOUND);
    assert_code(fx_code(f, ts, post_release(13, 1, 1, 999)), TALLY_REF_NOT_FOUND);
    assert_code(fx_code(f, ts, post_reverse(14, 1, 1, 999, 0)), TALLY_REF_NOT_FOUND);

    /* A posting rejected by validation was never recorded: it does not exist either. */
    struct tally_posting bad = post_accrue(15, 1, 1, 10, 0);
    bad.reserved = 1;
    assert_code(fx_code(f, ts, bad), TALLY_RESERVED_NONZERO);
    assert_code(fx_code(f, ts, post_reverse(16, 1, 1, 15, 0)), TALLY_REF_NOT_FOUND);
    assert_int_equal(fx_entries(f), before);
    assert_code(fx_posting(f, 14).code, TALLY_REF_NOT_FOUND); /* recorded: state-dependent */
}

static void test_ref_to_failed_posting_gives_ref_failed(void **state)
{
    struct fx *f = *state;
    setup_refs(f);
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_reverse(10, 1, 1, 101, 0)), TALLY_REF_FAILED);
    assert_code(fx_code(f, ts, post_capture(11, 1, 1, 103, 0)), TALLY_REF_FAILED);
    assert_code(fx_code(f, ts, post_release(12, 1, 1, 103)), TALLY_REF_FAILED);
    assert_int_equal(fx_account(f, 1, 1).redeemed, 5);
}

static void test_ref_to_posting_of_other_kind_gives_ref_wrong_kind(void **state)
{
    struct fx *f = *state;
    setup_refs(f);
    fx_ok(f, t("2026-01-02"), post_reverse(105, 1, 1, 104, 1));
    fx_ok(f, t("2026-01-02"), post_transfer(106, 1, 1, 2, 1));
    fx_ok(f, t("2026-01-02"), post_adjust(107, 1, 1, 1, false, 3));
    uint64_t before = fx_entries(f);
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_capture(10, 1, 1, 100, 0)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_release(11, 1, 1, 104)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_activate(12, 1, 1, 102)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_cancel(13, 1, 1, 104)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_reverse(14, 1, 1, 102, 0)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_reverse(15, 1, 1, 105, 0)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_reverse(16, 1, 1, 106, 0)), TALLY_REF_WRONG_KIND);
    assert_code(fx_code(f, ts, post_reverse(17, 1, 1, 107, 0)), TALLY_REF_WRONG_KIND);
    assert_int_equal(fx_entries(f), before);
}

static void test_ref_to_other_members_posting_gives_ref_account_mismatch(void **state)
{
    struct fx *f = *state;
    setup_refs(f);
    uint64_t before = fx_entries(f);
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_reverse(10, 1, 2, 100, 0)), TALLY_REF_ACCOUNT_MISMATCH);
    assert_code(fx_code(f, ts, post_capture(11, 1, 2, 102, 0)), TALLY_REF_ACCOUNT_MISMATCH);
    assert_code(fx_code(f, ts, post_release(12, 1, 2, 102)), TALLY_REF_ACCOUNT_MISMATCH);
    assert_code(fx_code(f, ts, post_reverse(13, 1, 2, 104, 0)), TALLY_REF_ACCOUNT_MISMATCH);
    assert_int_equal(fx_entries(f), before);
    assert_int_equal(fx_hold(f, 102).status, TALLY_HOLD_ACTIVE);
}

static void test_ref_to_closed_members_posting_gives_account_closed(void **state)
{
    struct fx *f = *state;
    setup_refs(f);
    uint64_t ts = t("2026-01-03");
    assert_code(fx_code(f, ts, post_reverse(10, 1, 3, 300, 0)), TALLY_ACCOUNT_CLOSED);
    /* The order of the checks: the wrong member is found before the closed account. */
    assert_code(fx_code(f, ts, post_reverse(11, 1, 1, 300, 0)), TALLY_REF_ACCOUNT_MISMATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_ref_to_unknown_posting_gives_ref_not_found),
        FX_TEST(test_ref_to_failed_posting_gives_ref_failed),
        FX_TEST(test_ref_to_posting_of_other_kind_gives_ref_wrong_kind),
        FX_TEST(test_ref_to_other_members_posting_gives_ref_account_mismatch),
        FX_TEST(test_ref_to_closed_members_posting_gives_account_closed),
    };
    return cmocka_run_group_tests_name("refs", tests, NULL, NULL);
}
