/* calendar.c: civil dates from day numbers and back (Howard Hinnant's public-domain algorithms,
 * re-derived here: eras of 400 years, March-based years so that the leap day is last). */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t calendar_days_from_civil(int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t yoe = year - era * 400;                                   /* [0, 399] */
    int64_t mp = (int64_t)month + (month > 2 ? -3 : 9);               /* March = 0 */
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)day - 1;              /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;              /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void calendar_civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

static int64_t local_ms(uint64_t t, int32_t offset_min)
{
    return (int64_t)t + (int64_t)offset_min * 60000;
}

int64_t calendar_day_of(uint64_t t, int32_t offset_min)
{
    int64_t l = local_ms(t, offset_min);
    int64_t d = l / (int64_t)CALENDAR_DAY_MS;
    if (l < 0 && d * (int64_t)CALENDAR_DAY_MS != l)
        d--;
    return d;
}

uint32_t calendar_month_of(uint64_t t, int32_t offset_min)
{
    int64_t y;
    unsigned m, d;
    calendar_civil_from_days(calendar_day_of(t, offset_min), &y, &m, &d);
    int64_t n = (y - 1970) * 12 + (int64_t)m - 1;
    return n < 0 ? 0 : (uint32_t)n;
}

static uint64_t utc_of_local(int64_t local, int32_t offset_min)
{
    int64_t u = local - (int64_t)offset_min * 60000;
    return u < 0 ? 0 : (uint64_t)u;
}

uint64_t calendar_day_start(int64_t day, int32_t offset_min)
{
    return utc_of_local(day * (int64_t)CALENDAR_DAY_MS, offset_min);
}

uint64_t calendar_month_start(uint32_t month, int32_t offset_min)
{
    int64_t y = 1970 + (int64_t)(month / 12);
    unsigned m = month % 12 + 1;
    return calendar_day_start(calendar_days_from_civil(y, m, 1), offset_min);
}

void calendar_format(uint64_t t, char buf[32])
{
    int64_t days = (int64_t)(t / CALENDAR_DAY_MS);
    uint64_t ms = t % CALENDAR_DAY_MS;
    int64_t y;
    unsigned m, d;
    calendar_civil_from_days(days, &y, &m, &d);
    snprintf(buf, 32, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d,
             (unsigned)(ms / 3600000), (unsigned)(ms / 60000 % 60), (unsigned)(ms / 1000 % 60),
             (unsigned)(ms % 1000));
}

int calendar_parse(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    size_t n = strlen(s);
    if (strspn(s, "0123456789") == n) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end != '\0')
            return -1;
        *out = v;
        return 0;
    }
    unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, ms = 0;
    int used = 0;
    if (sscanf(s, "%4u-%2u-%2u%n", &y, &mo, &d, &used) != 3 || used != 10)
        return -1;
    const char *p = s + used;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2u:%2u%n", &h, &mi, &k) != 2 || k != 5)
            return -1;
        p += 1 + k;
        if (*p == ':') {
            if (sscanf(p + 1, "%2u%n", &se, &k) != 1 || k != 2)
                return -1;
            p += 1 + k;
            if (*p == '.') {
                if (sscanf(p + 1, "%3u%n", &ms, &k) != 1 || k != 3)
                    return -1;
                p += 1 + k;
            }
        }
        if (*p == 'Z')
            p++;
    }
    if (*p != '\0' || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 59)
        return -1;
    int64_t days = calendar_days_from_civil(y, mo, d);
    *out = (uint64_t)days * CALENDAR_DAY_MS + (uint64_t)h * 3600000 + (uint64_t)mi * 60000 +
           (uint64_t)se * 1000 + ms;
    return 0;
}
