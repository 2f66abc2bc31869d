/* test_replay.c: the replay's readers of the real purchase histories (bench/replay_data.h) on
 * small fixtures with the data sets' quirks (CRLF, a header, $0.00 rows, RFC 4180 quoting with
 * commas and doubled quotes, cancellations with negative quantities, rows without a customer,
 * duplicates, gzip), and its model of the ledger (bench/replay_model.h) on the worked examples
 * of docs/LEDGER.md. The fixtures are written to a fresh directory under TMPDIR (or /tmp),
 * removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "replay_data.h"
#include "replay_model.h"
#include "tally_results.h"

#define DAY_MS UINT64_C(86400000)

static char dir[256];

static uint64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (uint64_t)timegm(&tm) * 1000;
}

static const char *fixture(const char *name, const char *text, bool gz)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
    }
    return path;
}

/* ---- decimals ------------------------------------------------------------------------------ */

static void test_decimals_are_read_exactly_or_refused(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(replay_parse_decimal("2.55", 5, &v), 0);
    assert_int_equal(v, 255000);
    assert_int_equal(replay_parse_decimal("0.001", 5, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(replay_parse_decimal("11.77", 2, &v), 0);
    assert_int_equal(v, 1177);
    assert_int_equal(replay_parse_decimal("7", 2, &v), 0);
    assert_int_equal(v, 700);
    assert_int_equal(replay_parse_decimal("1.234567", 5, &v), -1);
    assert_int_equal(replay_parse_decimal("-1", 2, &v), -1);
    assert_int_equal(replay_parse_decimal("", 2, &v), -1);
    assert_int_equal(replay_parse_decimal(".", 2, &v), -1);
    assert_int_equal(replay_parse_decimal("1.2.3", 2, &v), -1);
    assert_int_equal(replay_parse_decimal("99999999999999999999", 0, &v), -1);
}

/* ---- CDNOW --------------------------------------------------------------------------------- */

static void test_cdnow_reads_crlf_rows_after_its_header_in_time_order(void **state)
{
    (void)state;
    const char *p = fixture("cdnow.txt",
                            " customer_id  date number_of_cds  dollar_value\r\n"
                            " 00001 19970105  1   11.77\r\n"
                            " 00001 19970101  2   29.33\r\n"
                            " 00002 19970101  1    0.00\r\n"
                            " 00003 19970102  3   45.00\r\n",
                            false);
    struct replay_data d;
    assert_int_equal(replay_data_load_cdnow(p, 0, &d), 0);
    assert_int_equal(d.stats.header_lines, 1);
    assert_int_equal(d.stats.rows, 4);
    assert_int_equal(d.stats.rows_zero, 1);
    assert_int_equal(d.stats.customers, 3);
    assert_int_equal(d.stats.joins, 1); /* customer 2: only a $0.00 row */
    assert_int_equal(d.stats.purchases, 3);
    assert_int_equal(d.stats.purchase_cents, 1177 + 2933 + 4500);
    assert_int_equal(d.count, 4);
    /* 1 Jan: customer 2 joins, customer 1 buys; 2 Jan: customer 3; 5 Jan: customer 1. */
    assert_int_equal(d.events[0].kind, REPLAY_JOIN);
    assert_int_equal(d.events[0].customer, 2);
    assert_int_equal(d.events[1].customer, 1);
    assert_int_equal(d.events[1].cents, 2933);
    assert_int_equal(d.events[1].at_ms, utc_ms(1997, 1, 1, 0, 0));
    assert_int_equal(d.events[2].customer, 3);
    assert_int_equal(d.events[3].cents, 1177);
    assert_int_equal(d.events[3].at_ms, utc_ms(1997, 1, 5, 0, 0));
    replay_data_free(&d);

    /* A prefix: the first two data rows only. */
    assert_int_equal(replay_data_load_cdnow(p, 2, &d), 0);
    assert_int_equal(d.stats.rows, 2);
    assert_int_equal(d.count, 2);
    replay_data_free(&d);
}

static void test_cdnow_row_that_does_not_parse_fails_the_load(void **state)
{
    (void)state;
    const char *p =
        fixture("bad.txt", " 00001 19970101  1   11.77\n 00002 1997013x 1 1.00\n", false);
    struct replay_data d;
    assert_int_equal(replay_data_load_cdnow(p, 0, &d), -EINVAL);
    assert_int_equal(replay_data_load_cdnow("/nonexistent/cdnow.txt", 0, &d), -ENOENT);
}

/* ---- UCI Online Retail ----------------------------------------------------------------------- */

#define UCI_HEADER                                                                                 \
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

static void test_online_retail_quoting_and_rounding(void **state)
{
    (void)state;
    /* Invoice 1: "A, B" (a comma inside quotes) 2 x 1.25 and 7"" FRAME (doubled quotes) 3 x
     * 0.335 = 1.005: 3.505 pounds, 350.5 pence, 351 rounded half up. */
    const char *p = fixture(
        "uci.csv",
        UCI_HEADER "536365,85123A,\"A, B\",2,2010-12-01 08:26:00,1.25,17850,United Kingdom\n"
                   "536365,22041,\"RECORD FRAME 7\"\" SINGLE\",3,2010-12-01 08:26:00,0.335,"
                   "17850,United Kingdom\n",
        false);
    struct replay_data d;
    assert_int_equal(replay_data_load_online_retail(p, 0, &d), 0);
    assert_int_equal(d.stats.header_lines, 1);
    assert_int_equal(d.stats.rows, 2);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.events[0].kind, REPLAY_PURCHASE);
    assert_int_equal(d.events[0].customer, 17850);
    assert_int_equal(d.events[0].cents, 351);
    assert_int_equal(d.events[0].source, 536365);
    assert_int_equal(d.events[0].at_ms, utc_ms(2010, 12, 1, 8, 26));
    replay_data_free(&d);
}

static void test_online_retail_cancellation_returns_from_the_latest_earlier_purchase(void **state)
{
    (void)state;
    const char *p = fixture(
        "uci-c.csv.gz",
        UCI_HEADER
        "500001,X1,pen,10,2010-12-01 09:00:00,1.00,12346,UK\n"
        "500002,X1,pen,4,2010-12-02 09:00:00,1.00,12346,UK\n"
        "500002,Y2,cup,1,2010-12-02 09:00:00,3.00,12346,UK\n"
        /* returns 2 pens of 500002 (the latest before it), and a cup of 500002 */
        "C500003,X1,pen,-2,2010-12-03 10:00:00,1.00,12346,UK\n"
        "C500003,Y2,cup,-1,2010-12-03 10:00:00,3.00,12346,UK\n"
        /* a stock code never bought: unmatched */
        "C500004,D,Discount,-1,2010-12-03 11:00:00,5.00,12346,UK\n"
        /* more pens than 500002 has left (2 x 1.00 + 3.00 = 5.00 returned of 7.00): capped */
        "C500005,X1,pen,-9,2010-12-04 10:00:00,1.00,12346,UK\n",
        true);
    struct replay_data d;
    assert_int_equal(replay_data_load_online_retail(p, 0, &d), 0);
    assert_int_equal(d.stats.purchases, 2);
    assert_int_equal(d.stats.return_rows, 4);
    assert_int_equal(d.stats.return_rows_unmatched, 1);
    assert_int_equal(d.stats.return_cents_unmatched, 500);
    assert_int_equal(d.count, 4);
    assert_int_equal(d.events[1].cents, 700);
    assert_int_equal(d.events[2].kind, REPLAY_RETURN);
    assert_int_equal(d.events[2].ref, 1); /* 500002, not 500001 */
    assert_int_equal(d.events[2].cents, 500);
    assert_int_equal(d.events[2].source, 500003);
    assert_int_equal(d.events[3].ref, 1);
    assert_int_equal(d.events[3].cents, 200); /* 9.00 asked, 2.00 left */
    assert_int_equal(d.stats.return_cents_capped, 700);
    replay_data_free(&d);
}

static void test_online_retail_counts_rows_it_cannot_post(void **state)
{
    (void)state;
    const char *p = fixture(
        "uci-odd.csv",
        UCI_HEADER "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
                   "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
                   "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom\n"
                   "536367,,,-12,2010-12-01 08:30:00,0,,United Kingdom\n"
                   "A563186,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom\n"
                   "536368,22960,JAM JAR,0,2010-12-01 08:34:00,0,13047,United Kingdom\n",
        false);
    struct replay_data d;
    assert_int_equal(replay_data_load_online_retail(p, 0, &d), 0);
    assert_int_equal(d.stats.rows, 6);
    assert_int_equal(d.stats.duplicate_rows, 1); /* kept: the invoice has 12 hearts */
    assert_int_equal(d.stats.rows_no_customer, 3);
    assert_int_equal(d.stats.adjust_rows, 1);
    assert_int_equal(d.stats.rows_zero, 1);
    assert_int_equal(d.stats.invoices, 5);
    assert_int_equal(d.stats.customers, 2);
    assert_int_equal(d.stats.joins, 1); /* 13047: only a zero row */
    assert_int_equal(d.count, 2);
    assert_int_equal(d.events[0].cents, 12 * 255);
    assert_int_equal(d.events[1].kind, REPLAY_JOIN);
    assert_int_equal(d.events[1].customer, 13047);
    replay_data_free(&d);
}

static void test_online_retail_malformed_csv_fails_the_load(void **state)
{
    (void)state;
    const char *p = fixture(
        "uci-bad.csv", UCI_HEADER "536365,85123A,\"unterminated,6,2010-12-01 08:26:00\n", false);
    struct replay_data d;
    assert_int_equal(replay_data_load_online_retail(p, 0, &d), -EINVAL);
    p = fixture("uci-short.csv", UCI_HEADER "536365,85123A,WHITE,6\n", false);
    assert_int_equal(replay_data_load_online_retail(p, 0, &d), -EINVAL);
}

/* The real files, if they are beside the repository (../shared/data/retail, or
 * TALLY_RETAIL_DATA): the counts data/retail/SOURCE.md gives. */
static void test_the_real_files_give_the_counts_of_source_md(void **state)
{
    (void)state;
    const char *data = getenv("TALLY_RETAIL_DATA");
    char path[512];
    snprintf(path, sizeof(path), "%s/cdnow.txt", data ? data : "../shared/data/retail");
    if (access(path, R_OK) != 0)
        skip();
    struct replay_data d;
    assert_int_equal(replay_data_load_cdnow(path, 0, &d), 0);
    assert_int_equal(d.stats.rows, 69659);
    assert_int_equal(d.stats.customers, 23570);
    assert_int_equal(d.stats.rows_zero, 80);
    assert_int_equal(d.stats.purchase_cents, 250031563);
    assert_int_equal(d.stats.first_ms, utc_ms(1997, 1, 1, 0, 0));
    assert_int_equal(d.stats.last_ms, utc_ms(1998, 6, 30, 0, 0));
    replay_data_free(&d);
    snprintf(path, sizeof(path), "%s/online_retail.csv.gz", data ? data : "../shared/data/retail");
    assert_int_equal(replay_data_load_online_retail(path, 0, &d), 0);
    assert_int_equal(d.stats.rows, 541909);
    assert_int_equal(d.stats.rows - d.stats.rows_no_customer, 406829);
    assert_int_equal(d.stats.customers, 4372);
    assert_int_equal(d.stats.invoices, 25900);
    assert_int_equal(d.stats.duplicate_rows, 5268);
    assert_int_equal(d.stats.return_rows, 8905);
    assert_int_equal(d.stats.adjust_rows, 3);
    assert_int_equal(d.stats.odd_rows, 0);
    assert_int_equal(d.stats.first_ms, utc_ms(2010, 12, 1, 8, 26));
    assert_int_equal(d.stats.last_ms, utc_ms(2011, 12, 9, 12, 50));
    replay_data_free(&d);
}

/* ---- the model ------------------------------------------------------------------------------- */

static void program(struct tally_program_config *c, uint8_t mode)
{
    memset(c, 0, sizeof(*c));
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = 365;
    c->tier_mode = mode;
    c->window = TALLY_WINDOW_ROLLING;
    c->window_months = 12;
    c->validity_months = 12;
    c->tier_count = 3;
    c->thresholds[0] = 1000;
    c->thresholds[1] = 5000;
    c->hold_timeout_ms = 1000;
}

/* docs/LEDGER.md, "Tiers": value 6000 on 2026-03-15 -> UPGRADE 0->2 until 2027-04-01; at
 * 2027-04-01, with QV 2000 in April 2026 .. March 2027, DOWN_STEP falls to 1 until 2028-04-01;
 * UP_ONLY stays at 2 forever. */
static void test_model_follows_the_tier_example(void **state)
{
    (void)state;
    for (uint8_t mode = TALLY_TIER_UP_ONLY; mode <= TALLY_TIER_DOWN_STEP; mode++) {
        struct tally_program_config c;
        program(&c, mode);
        struct replay_model *m;
        assert_int_equal(replay_model_create(&m, &c, 10), 0);
        uint32_t a;
        replay_model_batch(m, utc_ms(2026, 3, 1, 0, 0));
        assert_int_equal(replay_model_open(m, 1), TALLY_OK);
        assert_int_equal(replay_model_open(m, 1), TALLY_ACCOUNT_EXISTS);
        replay_model_batch(m, utc_ms(2026, 3, 15, 12, 0));
        assert_int_equal(replay_model_accrue(m, 1, 60, 6000, 0, &a), TALLY_OK);
        struct model_member_view v;
        replay_model_member(m, 1, &v);
        assert_int_equal(v.tier, 2);
        assert_int_equal(v.tier_valid_until,
                         mode == TALLY_TIER_UP_ONLY ? UINT64_MAX : utc_ms(2027, 4, 1, 0, 0));
        replay_model_batch(m, utc_ms(2026, 6, 10, 0, 0));
        assert_int_equal(replay_model_accrue(m, 1, 20, 2000, 0, &a), TALLY_OK);
        replay_model_batch(m, utc_ms(2027, 4, 1, 0, 0));
        replay_model_finish(m);
        replay_model_member(m, 1, &v);
        assert_int_equal(v.tier, mode == TALLY_TIER_UP_ONLY ? 2 : 1);
        assert_int_equal(v.tier_valid_until,
                         mode == TALLY_TIER_UP_ONLY ? UINT64_MAX : utc_ms(2028, 4, 1, 0, 0));
        /* The March lot expired on 2027-03-16 (DAYS 365: through day t + 365); June's has not. */
        assert_int_equal(v.available, 20);
        assert_int_equal(v.expired, 60);
        assert_int_equal(v.lots_open, 1);
        assert_int_equal(v.lots[0].expires_at, utc_ms(2027, 6, 11, 0, 0));
        replay_model_destroy(m);
    }
}

/* docs/LEDGER.md, "Reversals in proportion": the QV removed by partial reversals of an accrual
 * adds up to its value; REVERSE of a pending accrual is REF_PENDING, CANCEL of an active one
 * NOT_PENDING; pending points activate at their time, and a lot expires at the start of day
 * t + 366. (Time only moves forward: a batch stamped earlier runs at the model's time.) */
static void test_model_reversals_pending_and_expiry(void **state)
{
    (void)state;
    struct tally_program_config c;
    program(&c, TALLY_TIER_DOWN_STEP);
    struct replay_model *m;
    assert_int_equal(replay_model_create(&m, &c, 10), 0);
    uint64_t t = utc_ms(2026, 5, 10, 10, 0);
    replay_model_batch(m, t);
    uint32_t a, b;
    assert_int_equal(replay_model_accrue(m, 2, 3, 100, 0, &a), TALLY_ACCOUNT_NOT_FOUND);
    assert_int_equal(replay_model_open(m, 2), TALLY_OK);
    assert_int_equal(replay_model_accrue(m, 2, 3, 100, 30 * DAY_MS, &a), TALLY_OK);
    assert_int_equal(replay_model_accrue(m, 2, 5, 500, 30 * DAY_MS, &b), TALLY_OK);
    assert_true(replay_model_is_pending(m, a));
    assert_int_equal(replay_model_reverse(m, a, 1), TALLY_REF_PENDING);
    assert_int_equal(replay_model_cancel(m, b), TALLY_OK);
    assert_int_equal(replay_model_cancel(m, b), TALLY_NOT_PENDING);
    struct model_member_view v;
    replay_model_member(m, 2, &v);
    assert_int_equal(v.pending, 3);
    assert_int_equal(v.earned, 3);
    assert_int_equal(v.qv_lifetime, 100);
    replay_model_batch(m, t + 30 * DAY_MS);
    assert_false(replay_model_is_pending(m, a));
    assert_int_equal(replay_model_cancel(m, a), TALLY_NOT_PENDING);
    assert_int_equal(replay_model_reverse(m, a, 1), TALLY_OK);
    assert_int_equal(replay_model_accrual(m, a)->reversed_value, 33);
    assert_int_equal(replay_model_reverse(m, a, 1), TALLY_OK);
    assert_int_equal(replay_model_accrual(m, a)->reversed_value, 66);
    assert_int_equal(replay_model_reverse(m, a, 2), TALLY_EXCEEDS_ORIGINAL);
    assert_int_equal(replay_model_reverse(m, a, 1), TALLY_OK);
    assert_int_equal(replay_model_accrual(m, a)->reversed_value, 100);
    replay_model_member(m, 2, &v);
    assert_int_equal(v.available, 0);
    assert_int_equal(v.qv_lifetime, 0);
    assert_int_equal(v.lots_open, 0);
    /* Expiry: earned 2026-07-01, valid through 2027-07-01, expired at 2027-07-02T00:00Z. */
    replay_model_batch(m, utc_ms(2026, 7, 1, 0, 0));
    assert_int_equal(replay_model_accrue(m, 2, 7, 700, 0, &a), TALLY_OK);
    replay_model_member(m, 2, &v);
    assert_int_equal(v.lots[0].expires_at, utc_ms(2027, 7, 2, 0, 0));
    replay_model_batch(m, utc_ms(2027, 7, 1, 23, 59));
    replay_model_finish(m);
    replay_model_member(m, 2, &v);
    assert_int_equal(v.available, 7);
    replay_model_batch(m, utc_ms(2027, 7, 2, 0, 0));
    replay_model_finish(m);
    replay_model_member(m, 2, &v);
    assert_int_equal(v.available, 0);
    assert_int_equal(v.expired, 7);
    replay_model_destroy(m);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/tally-test-replay-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decimals_are_read_exactly_or_refused),
        cmocka_unit_test(test_cdnow_reads_crlf_rows_after_its_header_in_time_order),
        cmocka_unit_test(test_cdnow_row_that_does_not_parse_fails_the_load),
        cmocka_unit_test(test_online_retail_quoting_and_rounding),
        cmocka_unit_test(test_online_retail_cancellation_returns_from_the_latest_earlier_purchase),
        cmocka_unit_test(test_online_retail_counts_rows_it_cannot_post),
        cmocka_unit_test(test_online_retail_malformed_csv_fails_the_load),
        cmocka_unit_test(test_the_real_files_give_the_counts_of_source_md),
        cmocka_unit_test(test_model_follows_the_tier_example),
        cmocka_unit_test(test_model_reversals_pending_and_expiry),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (getenv("TALLY_TEST_KEEP") == NULL && system(cmd) != 0)
        failed++;
    return failed;
}
