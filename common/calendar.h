/* calendar.h: civil-time arithmetic on millisecond timestamps, without libc time zones.
 *
 * The engine must be deterministic, so it cannot call localtime() (which reads TZ and the zone
 * database). These functions work in proleptic Gregorian UTC, shifted by a fixed offset in
 * minutes: local = utc + offset. Month numbers count months since 1970-01 (January 1970 is 0);
 * day numbers count days since 1970-01-01. Valid for years 1970 .. 9999.
 */
#ifndef TALLY_CALENDAR_H
#define TALLY_CALENDAR_H

#include <stdint.h>

#define CALENDAR_DAY_MS (UINT64_C(86400000))

/* Days since 1970-01-01 of a civil date (month 1..12, day 1..31). */
int64_t calendar_days_from_civil(int64_t year, unsigned month, unsigned day);

/* The civil date of a day number. */
void calendar_civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day);

/* Month number of instant t (ms, UTC) in a zone at offset_min minutes from UTC. */
uint32_t calendar_month_of(uint64_t t, int32_t offset_min);

/* Day number of instant t in the zone. */
int64_t calendar_day_of(uint64_t t, int32_t offset_min);

/* The UTC instant at which local month `month` (months since 1970-01) starts. */
uint64_t calendar_month_start(uint32_t month, int32_t offset_min);

/* The UTC instant at which local day `day` starts. */
uint64_t calendar_day_start(int64_t day, int32_t offset_min);

/* Format t as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into buf (at least 25 bytes). */
void calendar_format(uint64_t t, char buf[32]);

/* Parse "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.mmm]]Z?" (UTC) or a plain millisecond count.
 * Returns 0, or -1 if the text is not one of those. */
int calendar_parse(const char *s, uint64_t *out);

#endif
