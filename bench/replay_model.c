/* replay_model.c: the replay's own reading of docs/LEDGER.md (see replay_model.h).
 *
 * Invariants kept (and asserted where cheap): a member's available points equal the remaining
 * points of its active lots, its pending points those of its pending lots; lots are kept in
 * (expires_at, creation) order, as the ledger keeps them (ties by lot id: lot ids grow in
 * creation order in both); qualifying value is kept per calendar month, net of removals.
 */
#include "replay_model.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tally_results.h"

#define DAY_MS UINT64_C(86400000)

struct qv_month {
    uint32_t month;
    uint64_t value;
};

struct member {
    bool open;
    uint64_t opened_at;
    int64_t available;
    uint64_t pending, earned, expired, qv_lifetime;
    uint32_t tier, qv_month;
    uint64_t valid_until;
    struct tally_lot *lots;
    uint32_t nlots, lots_cap;
    struct qv_month *qv;
    uint32_t nqv, qv_cap;
};

struct replay_model {
    struct tally_program_config c;
    uint64_t now;
    uint64_t members_max;
    struct member *members; /* [1 .. members_max] */
    struct model_accrual *acc;
    uint32_t nacc, acc_cap;
    uint64_t next_lot;
    struct model_counts counts;
    bool failed_alloc;
};

/* ---- calendar (UTC only: replay programs use tz_offset_min 0) ------------------------------ */

static uint32_t month_of(uint64_t t)
{
    time_t s = (time_t)(t / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    return (uint32_t)((tm.tm_year + 1900 - 1970) * 12 + tm.tm_mon);
}

static uint64_t month_start(uint32_t month)
{
    struct tm tm = {.tm_year = (int)(month / 12) + 70, .tm_mon = (int)(month % 12), .tm_mday = 1};
    return (uint64_t)timegm(&tm) * 1000;
}

static uint64_t expiry_of(const struct tally_program_config *c, uint64_t t)
{
    switch (c->expiry) {
    case TALLY_EXPIRY_DAYS: /* through the end of day(t) + n: the start of day(t) + n + 1 */
        return (t / DAY_MS + c->expiry_n + 1) * DAY_MS;
    case TALLY_EXPIRY_MONTH:
        return month_start(month_of(t) + c->expiry_n + 1);
    default:
        return UINT64_MAX;
    }
}

/* ---- qualifying value ---------------------------------------------------------------------- */

static struct qv_month *qv_slot(struct replay_model *m, struct member *mb, uint32_t month)
{
    for (uint32_t i = 0; i < mb->nqv; i++) {
        if (mb->qv[i].month == month)
            return &mb->qv[i];
    }
    if (mb->nqv == mb->qv_cap) {
        uint32_t n = mb->qv_cap ? mb->qv_cap * 2 : 8;
        struct qv_month *p = realloc(mb->qv, n * sizeof(*p));
        if (p == NULL) {
            m->failed_alloc = true;
            return NULL;
        }
        mb->qv = p;
        mb->qv_cap = n;
    }
    mb->qv[mb->nqv] = (struct qv_month){month, 0};
    return &mb->qv[mb->nqv++];
}

static uint64_t qv_get(const struct member *mb, uint32_t month)
{
    for (uint32_t i = 0; i < mb->nqv; i++) {
        if (mb->qv[i].month == month)
            return mb->qv[i].value;
    }
    return 0;
}

static uint64_t window_qv(const struct tally_program_config *c, const struct member *mb, uint64_t t)
{
    uint32_t now = month_of(t), first;
    if (c->window == TALLY_WINDOW_CALENDAR)
        first = now - now % 12;
    else
        first = now + 1 >= c->window_months ? now + 1 - c->window_months : 0;
    uint64_t sum = 0;
    for (uint32_t mo = first; mo <= now; mo++)
        sum += qv_get(mb, mo);
    return sum;
}

static uint32_t earned_tier(const struct tally_program_config *c, uint64_t qv)
{
    uint32_t tier = 0;
    for (uint32_t k = 1; k < c->tier_count; k++) {
        if (qv >= c->thresholds[k - 1])
            tier = k;
    }
    return tier;
}

static uint64_t validity_end(const struct tally_program_config *c, uint64_t t, uint32_t tier)
{
    if (c->tier_mode == TALLY_TIER_UP_ONLY || tier == 0)
        return UINT64_MAX;
    return month_start(month_of(t) + c->validity_months + 1);
}

/* ---- lots ---------------------------------------------------------------------------------- */

static void lot_drop_empty(struct member *mb)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < mb->nlots; i++) {
        const struct tally_lot *l = &mb->lots[i];
        if (l->remaining != 0 || l->held != 0 || l->activate_at != 0)
            mb->lots[kept++] = *l;
    }
    mb->nlots = kept;
}

static int lot_insert(struct replay_model *m, struct member *mb, const struct tally_lot *lot)
{
    if (mb->nlots == mb->lots_cap) {
        uint32_t n = mb->lots_cap ? mb->lots_cap * 2 : 4;
        struct tally_lot *p = realloc(mb->lots, n * sizeof(*p));
        if (p == NULL) {
            m->failed_alloc = true;
            return -ENOMEM;
        }
        mb->lots = p;
        mb->lots_cap = n;
    }
    uint32_t at = mb->nlots;
    while (at > 0 && (mb->lots[at - 1].expires_at > lot->expires_at ||
                      (mb->lots[at - 1].expires_at == lot->expires_at &&
                       mb->lots[at - 1].lot_id > lot->lot_id)))
        at--;
    memmove(&mb->lots[at + 1], &mb->lots[at], (mb->nlots - at) * sizeof(*lot));
    mb->lots[at] = *lot;
    mb->nlots++;
    return 0;
}

static int32_t lot_find(const struct member *mb, uint64_t lot_id)
{
    for (uint32_t i = 0; i < mb->nlots; i++) {
        if (mb->lots[i].lot_id == lot_id)
            return (int32_t)i;
    }
    return -1;
}

/* Expire every active lot due at or before t. */
static void expire_due(struct replay_model *m, struct member *mb, uint64_t t)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < mb->nlots && mb->lots[i].expires_at <= t; i++) {
        struct tally_lot *l = &mb->lots[i];
        if (l->activate_at != 0 || l->remaining == 0)
            continue;
        total += l->remaining;
        l->remaining = 0;
    }
    if (total == 0)
        return;
    mb->available -= (int64_t)total;
    mb->expired += total;
    m->counts.expiries++;
    m->counts.expired_points += total;
    lot_drop_empty(mb);
}

/* Activate lot i at time t: by its timer (timed), or by an ACTIVATE posting. */
static void activate(struct replay_model *m, struct member *mb, uint32_t i, uint64_t t, bool timed)
{
    struct tally_lot *l = &mb->lots[i];
    mb->pending -= l->remaining;
    mb->available += (int64_t)l->remaining;
    l->activate_at = 0;
    m->counts.activations += timed;
    lot_drop_empty(mb);
    expire_due(m, mb, t); /* a lot past its expiry expires as soon as it is active */
}

static void evaluate(struct replay_model *m, struct member *mb)
{
    const struct tally_program_config *c = &m->c;
    uint64_t before = mb->valid_until - 1;
    uint32_t earned = earned_tier(c, window_qv(c, mb, before));
    uint32_t to = earned;
    if (earned < mb->tier) {
        m->counts.downgrades++;
        if (c->tier_mode == TALLY_TIER_DOWN_STEP && mb->tier - 1 > earned)
            to = mb->tier - 1;
    } else {
        m->counts.renewals++;
    }
    mb->tier = to;
    mb->valid_until = validity_end(c, before, to);
}

/* Run the member's work due at or before t, oldest first. */
static void settle(struct replay_model *m, struct member *mb, uint64_t t)
{
    for (;;) {
        enum { NONE, ACTIVATE, EXPIRE, TIER } what = NONE;
        uint64_t next = UINT64_MAX;
        uint32_t which = 0;
        for (uint32_t i = 0; i < mb->nlots; i++) {
            const struct tally_lot *l = &mb->lots[i];
            if (l->activate_at != 0 && l->activate_at <= t && l->activate_at < next) {
                next = l->activate_at;
                what = ACTIVATE;
                which = i;
            } else if (l->activate_at == 0 && l->remaining > 0 && l->expires_at <= t &&
                       l->expires_at < next) {
                next = l->expires_at;
                what = EXPIRE;
            }
        }
        if (mb->tier > 0 && m->c.tier_mode != TALLY_TIER_UP_ONLY && mb->valid_until <= t &&
            mb->valid_until < next) {
            next = mb->valid_until;
            what = TIER;
        }
        if (what == NONE)
            return;
        if (what == ACTIVATE)
            activate(m, mb, which, next, true);
        else if (what == EXPIRE)
            expire_due(m, mb, next);
        else
            evaluate(m, mb);
    }
}

/* ---- the postings -------------------------------------------------------------------------- */

int replay_model_create(struct replay_model **out, const struct tally_program_config *config,
                        uint64_t members_max)
{
    if (config->tz_offset_min != 0 ||
        (config->expiry != TALLY_EXPIRY_DAYS && config->expiry != TALLY_EXPIRY_MONTH &&
         config->expiry != TALLY_EXPIRY_NONE))
        return -EINVAL; /* the model covers UTC programs with these policies only */
    struct replay_model *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->c = *config;
    m->members_max = members_max;
    m->members = calloc(members_max + 1, sizeof(*m->members));
    if (m->members == NULL) {
        free(m);
        return -ENOMEM;
    }
    m->next_lot = 1;
    *out = m;
    return 0;
}

void replay_model_destroy(struct replay_model *m)
{
    if (m == NULL)
        return;
    for (uint64_t i = 0; i <= m->members_max; i++) {
        free(m->members[i].lots);
        free(m->members[i].qv);
    }
    free(m->members);
    free(m->acc);
    free(m);
}

uint64_t replay_model_batch(struct replay_model *m, uint64_t at_ms)
{
    if (at_ms > m->now)
        m->now = at_ms;
    return m->now;
}

static struct member *member_at(struct replay_model *m, uint64_t member)
{
    if (member == 0 || member > m->members_max)
        return NULL;
    struct member *mb = &m->members[member];
    if (mb->open)
        settle(m, mb, m->now);
    return mb;
}

uint32_t replay_model_open(struct replay_model *m, uint64_t member)
{
    struct member *mb = member_at(m, member);
    if (mb == NULL)
        return TALLY_ACCOUNT_INVALID;
    if (mb->open)
        return TALLY_ACCOUNT_EXISTS;
    mb->open = true;
    mb->opened_at = m->now;
    mb->qv_month = month_of(m->now);
    mb->valid_until = UINT64_MAX;
    return TALLY_OK;
}

uint32_t replay_model_accrue(struct replay_model *m, uint64_t member, uint64_t amount,
                             uint64_t value, uint64_t pending_ms, uint32_t *accrual)
{
    *accrual = UINT32_MAX;
    struct member *mb = member_at(m, member);
    if (mb == NULL)
        return TALLY_ACCOUNT_INVALID;
    if (amount == 0)
        return TALLY_AMOUNT_ZERO;
    if (!mb->open)
        return TALLY_ACCOUNT_NOT_FOUND;
    if (mb->nlots >= TALLY_LINEAGE_MAX)
        return TALLY_LOTS_LIMIT;
    if (m->nacc == m->acc_cap) {
        uint32_t n = m->acc_cap ? m->acc_cap * 2 : 4096;
        struct model_accrual *p = realloc(m->acc, n * sizeof(*p));
        if (p == NULL) {
            m->failed_alloc = true;
            return TALLY_OVERFLOW;
        }
        m->acc = p;
        m->acc_cap = n;
    }
    struct tally_lot lot = {.lot_id = m->next_lot++,
                            .expires_at = expiry_of(&m->c, m->now),
                            .earned_at = m->now,
                            .amount = amount,
                            .remaining = amount,
                            .activate_at = pending_ms ? m->now + pending_ms : 0};
    if (lot_insert(m, mb, &lot) != 0)
        return TALLY_OVERFLOW;
    if (pending_ms)
        mb->pending += amount;
    else
        mb->available += (int64_t)amount;
    mb->earned += amount;
    uint32_t month = month_of(m->now);
    struct qv_month *q = qv_slot(m, mb, month);
    if (q != NULL)
        q->value += value;
    mb->qv_lifetime += value;
    if (month > mb->qv_month)
        mb->qv_month = month;
    m->acc[m->nacc] = (struct model_accrual){member, amount, value, m->now, lot.lot_id, 0, 0};
    *accrual = m->nacc++;
    /* An upgrade right after the accrual, on the window that includes it. */
    uint64_t qv = window_qv(&m->c, mb, m->now);
    uint32_t earned = earned_tier(&m->c, qv);
    if (earned > mb->tier) {
        mb->tier = earned;
        mb->valid_until = validity_end(&m->c, m->now, earned);
        m->counts.upgrades++;
    }
    if (!pending_ms)
        expire_due(m, mb, m->now);
    return TALLY_OK;
}

/* The pending lot of an accrual, or -1. */
static int32_t pending_lot(const struct member *mb, const struct model_accrual *a)
{
    int32_t i = lot_find(mb, a->lot);
    return i >= 0 && mb->lots[i].activate_at != 0 ? i : -1;
}

bool replay_model_is_pending(struct replay_model *m, uint32_t accrual)
{
    const struct model_accrual *a = &m->acc[accrual];
    struct member *mb = member_at(m, a->member);
    return pending_lot(mb, a) >= 0;
}

const struct model_accrual *replay_model_accrual(const struct replay_model *m, uint32_t accrual)
{
    return accrual < m->nacc ? &m->acc[accrual] : NULL;
}

uint32_t replay_model_activate(struct replay_model *m, uint32_t accrual)
{
    const struct model_accrual *a = &m->acc[accrual];
    struct member *mb = member_at(m, a->member);
    int32_t i = pending_lot(mb, a);
    if (i < 0)
        return TALLY_NOT_PENDING;
    activate(m, mb, (uint32_t)i, m->now, false);
    return TALLY_OK;
}

static void qv_remove(struct replay_model *m, struct member *mb, uint64_t accrued_at,
                      uint64_t value)
{
    struct qv_month *q = qv_slot(m, mb, month_of(accrued_at));
    if (q != NULL)
        q->value -= value < q->value ? value : q->value;
    mb->qv_lifetime -= value < mb->qv_lifetime ? value : mb->qv_lifetime;
}

uint32_t replay_model_cancel(struct replay_model *m, uint32_t accrual)
{
    struct model_accrual *a = &m->acc[accrual];
    struct member *mb = member_at(m, a->member);
    int32_t i = pending_lot(mb, a);
    if (i < 0)
        return TALLY_NOT_PENDING;
    uint64_t points = mb->lots[i].remaining;
    mb->pending -= points;
    mb->earned -= points;
    qv_remove(m, mb, a->at_ms, a->value);
    mb->lots[i].remaining = 0;
    mb->lots[i].activate_at = 0;
    lot_drop_empty(mb);
    a->reversed = a->amount;
    a->reversed_value = a->value;
    return TALLY_OK;
}

uint32_t replay_model_reverse(struct replay_model *m, uint32_t accrual, uint64_t amount)
{
    struct model_accrual *a = &m->acc[accrual];
    struct member *mb = member_at(m, a->member);
    if (amount == 0)
        amount = a->amount - a->reversed;
    if (amount > a->amount - a->reversed)
        return TALLY_EXCEEDS_ORIGINAL;
    int32_t own = lot_find(mb, a->lot);
    if (own >= 0 && mb->lots[own].activate_at != 0)
        return TALLY_REF_PENDING;
    if (mb->available < (int64_t)amount)
        return TALLY_INSUFFICIENT_POINTS;
    /* The original lot first, then the others soonest-expiring first. */
    uint64_t left = amount;
    if (own >= 0) {
        uint64_t take = mb->lots[own].remaining < left ? mb->lots[own].remaining : left;
        mb->lots[own].remaining -= take;
        left -= take;
    }
    for (uint32_t i = 0; i < mb->nlots && left > 0; i++) {
        struct tally_lot *l = &mb->lots[i];
        if ((int32_t)i == own || l->activate_at != 0)
            continue;
        uint64_t take = l->remaining < left ? l->remaining : left;
        l->remaining -= take;
        left -= take;
    }
    assert(left == 0); /* active lots hold exactly the available points */
    unsigned __int128 v = a->value;
    uint64_t value = (uint64_t)(v * (a->reversed + amount) / a->amount) -
                     (uint64_t)(v * a->reversed / a->amount);
    a->reversed += amount;
    a->reversed_value += value;
    mb->available -= (int64_t)amount;
    mb->earned -= amount;
    qv_remove(m, mb, a->at_ms, value);
    lot_drop_empty(mb);
    return TALLY_OK;
}

void replay_model_finish(struct replay_model *m)
{
    for (uint64_t i = 1; i <= m->members_max; i++) {
        if (m->members[i].open)
            settle(m, &m->members[i], m->now);
    }
}

void replay_model_member(struct replay_model *m, uint64_t member, struct model_member_view *out)
{
    memset(out, 0, sizeof(*out));
    if (member == 0 || member > m->members_max || !m->members[member].open)
        return;
    const struct member *mb = &m->members[member];
    out->open = true;
    out->opened_at = mb->opened_at;
    out->available = mb->available;
    out->pending = mb->pending;
    out->earned = mb->earned;
    out->expired = mb->expired;
    out->qv_lifetime = mb->qv_lifetime;
    out->tier = mb->tier;
    out->tier_valid_until = mb->tier == 0 ? UINT64_MAX : mb->valid_until;
    out->qv_month = mb->qv_month;
    /* The ledger keeps the 12 months ending at qv_month, ring-indexed by month % 12. */
    for (uint32_t k = 0; k < TALLY_QV_MONTHS && k <= mb->qv_month; k++) {
        uint32_t mo = mb->qv_month - k;
        out->qv[mo % TALLY_QV_MONTHS] = qv_get(mb, mo);
    }
    out->lots_open = mb->nlots;
    out->lots = mb->lots;
}

void replay_model_counts(const struct replay_model *m, struct model_counts *out)
{
    *out = m->counts;
}
