/* tiers.c: qualifying value, tier upgrades and evaluations, and lot expiry times.
 *
 * The rules are specified in docs/LEDGER.md ("Expiry policies", "Tiers"); this file is their only
 * implementation in the engine. All calendar arithmetic uses the program's fixed offset from UTC.
 *
 * The QV ring: qv[m % 12] holds the qualifying value of month m for the 12 months ending at
 * qv_month. Adding in a month later than qv_month first clears the months in between; a month
 * older than qv_month - 11 is outside the ring and only counts in qv_lifetime.
 */
#include "internal.h"

#include <string.h>

#include "calendar.h"

uint64_t tiers_expiry_of(const struct tally_program_config *c, uint64_t t)
{
    uint32_t n = c->expiry_n;
    int32_t tz = c->tz_offset_min;
    uint32_t month = calendar_month_of(t, tz);
    switch (c->expiry) {
    case TALLY_EXPIRY_FIXED:
        return c->expiry_fixed_at;
    case TALLY_EXPIRY_DAYS:
        return calendar_day_start(calendar_day_of(t, tz) + (int64_t)n + 1, tz);
    case TALLY_EXPIRY_MONTH:
        return calendar_month_start(month + n + 1, tz);
    case TALLY_EXPIRY_QUARTER:
        return calendar_month_start(month - month % 3 + 3 * (n + 1), tz);
    case TALLY_EXPIRY_YEAR:
        return calendar_month_start(month - month % 12 + 12 * (n + 1), tz);
    default:
        return UINT64_MAX;
    }
}

static bool in_ring(const struct tally_account *a, uint32_t month)
{
    return month <= a->qv_month && month + TALLY_QV_MONTHS > a->qv_month;
}

void tiers_qv_add(struct tally_account *a, uint32_t month, uint64_t value)
{
    if (month > a->qv_month) {
        uint32_t gap = month - a->qv_month;
        if (gap >= TALLY_QV_MONTHS) {
            memset(a->qv, 0, sizeof(a->qv));
        } else {
            for (uint32_t m = a->qv_month + 1; m <= month; m++)
                a->qv[m % TALLY_QV_MONTHS] = 0;
        }
        a->qv_month = month;
    }
    if (in_ring(a, month))
        a->qv[month % TALLY_QV_MONTHS] += value;
    a->qv_lifetime += value;
}

void tiers_qv_remove(struct tally_account *a, uint32_t month, uint64_t value)
{
    if (in_ring(a, month)) {
        uint64_t *b = &a->qv[month % TALLY_QV_MONTHS];
        *b -= value < *b ? value : *b;
    }
    a->qv_lifetime -= value < a->qv_lifetime ? value : a->qv_lifetime;
}

uint64_t tiers_window_qv(const struct tally_program_config *c, const struct tally_account *a,
                         uint64_t t)
{
    uint32_t now = calendar_month_of(t, c->tz_offset_min);
    uint32_t first;
    if (c->window == TALLY_WINDOW_CALENDAR)
        first = now - now % 12;
    else
        first = now + 1 >= c->window_months ? now + 1 - c->window_months : 0;
    uint64_t sum = 0;
    for (uint32_t m = first; m <= now; m++) {
        if (in_ring(a, m))
            sum += a->qv[m % TALLY_QV_MONTHS];
    }
    return sum;
}

uint32_t tiers_earned(const struct tally_program_config *c, uint64_t qv)
{
    uint32_t tier = 0;
    for (uint32_t k = 1; k < c->tier_count; k++) {
        if (qv >= c->thresholds[k - 1])
            tier = k;
    }
    return tier;
}

/* Valid until the start of month(t) + validity + 1; forever in UP_ONLY mode or at tier 0. */
static uint64_t valid_until(const struct tally_program_config *c, uint64_t t, uint32_t tier)
{
    if (c->tier_mode == TALLY_TIER_UP_ONLY || tier == 0)
        return UINT64_MAX;
    uint32_t month = calendar_month_of(t, c->tz_offset_min);
    return calendar_month_start(month + c->validity_months + 1, c->tz_offset_min);
}

static int tier_change(struct op *op, struct acct *a, uint32_t to, uint32_t reason, uint64_t qv,
                       uint64_t until)
{
    struct tally_entry en = {0};
    en.program = a->rec.program;
    en.kind = TALLY_KIND_TIER_CHANGE;
    en.flags = TALLY_ENTRY_AUTO;
    en.debit = a->rec.member;
    en.credit = a->rec.member;
    en.value = qv;
    en.time_a = until;
    en.time_b = op->prog.rule_version;
    en.code = reason;
    en.tier_from = (uint8_t)a->rec.tier;
    en.tier_to = (uint8_t)to;
    if (until != UINT64_MAX) {
        int rc = timers_set(op->e, until, STORE_TIMER_TIER, a->rec.program, a->rec.member, 0, 0);
        if (rc != 0)
            return rc;
    }
    return entry_emit(op, &en, NULL, 0, a, NULL);
}

int tiers_after_accrual(struct op *op, struct acct *a)
{
    const struct tally_program_config *c = &op->prog.config;
    uint64_t qv = tiers_window_qv(c, &a->rec, op->now);
    uint32_t earned = tiers_earned(c, qv);
    if (earned <= a->rec.tier)
        return 0;
    return tier_change(op, a, earned, TALLY_TIER_UPGRADE, qv, valid_until(c, op->now, earned));
}

int tiers_evaluate(struct op *op, struct acct *a)
{
    const struct tally_program_config *c = &op->prog.config;
    if (a->rec.status != TALLY_ACCOUNT_STATUS_OPEN || a->rec.tier_valid_until != op->now ||
        c->tier_mode == TALLY_TIER_UP_ONLY || a->rec.tier == 0)
        return 0; /* a stale timer: the validity moved or the account closed */
    uint64_t before = op->now - 1;
    uint64_t qv = tiers_window_qv(c, &a->rec, before);
    uint32_t earned = tiers_earned(c, qv);
    uint32_t to = earned;
    uint32_t reason = TALLY_TIER_RENEW;
    if (earned < a->rec.tier) {
        reason = TALLY_TIER_DOWNGRADE;
        if (c->tier_mode == TALLY_TIER_DOWN_STEP && a->rec.tier - 1 > earned)
            to = a->rec.tier - 1;
    }
    return tier_change(op, a, to, reason, qv, valid_until(c, before, to));
}
