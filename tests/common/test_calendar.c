/* test_calendar.c: civil-time arithmetic (common/calendar.h): day numbers and civil dates round
 * trip across leap years and centuries, months and days start at the right UTC instant for a
 * zone offset, and parse/format accept and refuse the documented texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "calendar.h"

static void test_known_dates_have_known_day_numbers(void **state)
{
    (void)state;
    assert_int_equal(calendar_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(calendar_days_from_civil(1970, 1, 2), 1);
    assert_int_equal(calendar_days_from_civil(1972, 2, 29), 789);
    assert_int_equal(calendar_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(calendar_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(calendar_days_from_civil(2026, 3, 15), 20527);
    assert_int_equal(calendar_days_from_civil(2100, 3, 1), 47541);
    assert_int_equal(calendar_days_from_civil(9999, 12, 31), 2932896);
}

static void test_every_day_round_trips_through_its_civil_date(void **state)
{
    (void)state;
    static const unsigned month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t day = 0;
    for (int64_t y = 1970; y <= 2400; y++) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for (unsigned m = 1; m <= 12; m++) {
            unsigned len = month_days[m - 1] + (m == 2 && leap ? 1u : 0u);
            for (unsigned d = 1; d <= len; d++, day++) {
                if (calendar_days_from_civil(y, m, d) != day)
                    fail_msg("%lld-%02u-%02u is not day %lld", (long long)y, m, d, (long long)day);
                int64_t yy;
                unsigned mm;
                unsigned dd;
                calendar_civil_from_days(day, &yy, &mm, &dd);
                if (yy != y || mm != m || dd != d)
                    fail_msg("day %lld gave %lld-%02u-%02u", (long long)day, (long long)yy, mm, dd);
            }
        }
    }
}

static void test_leap_days_follow_gregorian_rules(void **state)
{
    (void)state;
    /* 2000 is a leap year (divisible by 400), 2100 is not (by 100), 2024 is (by 4). */
    assert_int_equal(calendar_days_from_civil(2000, 3, 1) - calendar_days_from_civil(2000, 2, 28),
                     2);
    assert_int_equal(calendar_days_from_civil(2100, 3, 1) - calendar_days_from_civil(2100, 2, 28),
                     1);
    assert_int_equal(calendar_days_from_civil(2024, 3, 1) - calendar_days_from_civil(2024, 2, 28),
                     2);
    assert_int_equal(calendar_days_from_civil(2027, 1, 1) - calendar_days_from_civil(2026, 1, 1),
                     365);
    assert_int_equal(calendar_days_from_civil(2029, 1, 1) - calendar_days_from_civil(2028, 1, 1),
                     366);
}

static uint64_t at(const char *s)
{
    uint64_t v = 0;
    assert_int_equal(calendar_parse(s, &v), 0);
    return v;
}

static void test_month_of_instant_depends_on_zone_offset(void **state)
{
    (void)state;
    uint32_t march_2026 = (2026 - 1970) * 12 + 2;
    assert_int_equal(calendar_month_of(0, 0), 0);
    assert_int_equal(calendar_month_of(at("2026-03-31T20:00Z"), 0), march_2026);
    assert_int_equal(calendar_month_of(at("2026-03-31T20:00Z"), 480), march_2026 + 1);
    assert_int_equal(calendar_month_of(at("2026-04-01T03:00Z"), -300), march_2026);
    assert_int_equal(calendar_month_of(at("2026-04-01T05:00Z"), -300), march_2026 + 1);
    assert_int_equal(calendar_month_of(at("2026-12-31T23:30Z"), 60), march_2026 + 10);
}

static void test_month_starts_at_local_midnight(void **state)
{
    (void)state;
    uint32_t april_2026 = (2026 - 1970) * 12 + 3;
    assert_int_equal(calendar_month_start(april_2026, 0), at("2026-04-01"));
    assert_int_equal(calendar_month_start(april_2026, 480), at("2026-03-31T16:00Z"));
    assert_int_equal(calendar_month_start(april_2026, -300), at("2026-04-01T05:00Z"));
    assert_int_equal(calendar_month_start(april_2026 + 9, 0), at("2027-01-01"));
    assert_int_equal(calendar_month_start(0, 0), 0);
    /* Every month start is a fixed point of month_of. */
    for (uint32_t m = 1; m < 12 * 200; m += 7) {
        assert_int_equal(calendar_month_of(calendar_month_start(m, 330), 330), m);
        assert_int_equal(calendar_month_of(calendar_month_start(m, 330) - 1, 330), m - 1);
    }
}

static void test_day_starts_at_local_midnight(void **state)
{
    (void)state;
    int64_t day = calendar_days_from_civil(2026, 3, 15);
    assert_int_equal(calendar_day_of(at("2026-03-15T23:59:59.999Z"), 0), day);
    assert_int_equal(calendar_day_of(at("2026-03-15T16:00Z"), 480), day + 1);
    assert_int_equal(calendar_day_of(at("2026-03-15T15:59Z"), 480), day);
    assert_int_equal(calendar_day_of(at("2026-03-15T02:00Z"), -300), day - 1);
    assert_int_equal(calendar_day_start(day, 0), at("2026-03-15"));
    assert_int_equal(calendar_day_start(day, 480), at("2026-03-14T16:00Z"));
    assert_int_equal(calendar_day_start(day, -300), at("2026-03-15T05:00Z"));
    assert_int_equal(calendar_day_start(day + 1, 0) - calendar_day_start(day, 0), CALENDAR_DAY_MS);
}

static void test_parse_accepts_documented_forms(void **state)
{
    (void)state;
    assert_int_equal(at("1970-01-01"), 0);
    assert_int_equal(at("2026-03-15"), (uint64_t)20527 * CALENDAR_DAY_MS);
    assert_int_equal(at("2026-03-15T10:30Z"), (uint64_t)20527 * CALENDAR_DAY_MS + 37800000);
    assert_int_equal(at("2026-03-15T10:30"), at("2026-03-15T10:30Z"));
    assert_int_equal(at("2026-03-15 10:30"), at("2026-03-15T10:30Z"));
    assert_int_equal(at("2026-03-15T10:30:45Z"), at("2026-03-15T10:30Z") + 45000);
    assert_int_equal(at("2026-03-15T10:30:45.123Z"), UINT64_C(1773570645123));
    assert_int_equal(at("1773570645123"), UINT64_C(1773570645123));
    assert_int_equal(at("0"), 0);
}

static void test_parse_refuses_other_text(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "abc",
        "2026-3-15",
        "2026-03-15X",
        "2026-13-01",
        "2026-00-10",
        "2026-03-00",
        "2026-03-32",
        "1969-12-31",
        "2026-03-15T10",
        "2026-03-15T24:00Z",
        "2026-03-15T10:60Z",
        "2026-03-15T10:30:60Z",
        "2026-03-15T10:30Zz",
        "-5",
        "12 34",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        if (calendar_parse(bad[i], &v) != -1)
            fail_msg("calendar_parse accepted \"%s\"", bad[i]);
    }
    uint64_t v;
    assert_int_equal(calendar_parse(NULL, &v), -1);
}

static void test_format_writes_iso_utc_and_parses_back(void **state)
{
    (void)state;
    char buf[32];
    calendar_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    calendar_format(UINT64_C(1773570645123), buf);
    assert_string_equal(buf, "2026-03-15T10:30:45.123Z");
    calendar_format(at("2024-02-29T23:59:59.999Z"), buf);
    assert_string_equal(buf, "2024-02-29T23:59:59.999Z");
    for (uint64_t t = 0; t < UINT64_C(4102444800000); t += UINT64_C(86399999) * 37) {
        calendar_format(t, buf);
        assert_int_equal(at(buf), t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_dates_have_known_day_numbers),
        cmocka_unit_test(test_every_day_round_trips_through_its_civil_date),
        cmocka_unit_test(test_leap_days_follow_gregorian_rules),
        cmocka_unit_test(test_month_of_instant_depends_on_zone_offset),
        cmocka_unit_test(test_month_starts_at_local_midnight),
        cmocka_unit_test(test_day_starts_at_local_midnight),
        cmocka_unit_test(test_parse_accepts_documented_forms),
        cmocka_unit_test(test_parse_refuses_other_text),
        cmocka_unit_test(test_format_writes_iso_utc_and_parses_back),
    };
    return cmocka_run_group_tests_name("calendar", tests, NULL, NULL);
}
