/* lots.c: lots, the units in which points are earned, consumed, held, restored and expired.
 *
 * A member's open lots are stored in its image, after the account, sorted by (expires_at,
 * lot_id): the order in which redemption consumes them (soonest-expiring first, ties by lot id).
 *
 * This file decides which lots a posting touches (plans, which change nothing) and holds the
 * primitives fold.c uses to change an image's lots. The points themselves only move in fold.c.
 *
 * Invariants (checked from outside by tally-audit, which re-derives every lot from the entries):
 *   - for an open member not in debt, available == the sum of `remaining` over its active lots,
 *     pending == the sum over its pending lots, held == the sum of `held` over all its lots;
 *   - a lot is kept while it has remaining or held points or is pending, and removed when it has
 *     none (the entries keep its history; a reversal can re-create it);
 *   - a member has at most TALLY_LINEAGE_MAX open lots.
 */
#include "internal.h"

#include <string.h>

static struct tally_lot *lots_of(struct acct *a)
{
    return member_lots(a->m);
}

static int lot_cmp(const struct tally_lot *l, uint64_t expires_at, uint64_t lot_id)
{
    if (l->expires_at != expires_at)
        return l->expires_at < expires_at ? -1 : 1;
    if (l->lot_id != lot_id)
        return l->lot_id < lot_id ? -1 : 1;
    return 0;
}

/* First index whose lot sorts at or after (expires_at, lot_id). */
static uint32_t lower_bound(struct acct *a, uint64_t expires_at, uint64_t lot_id)
{
    const struct tally_lot *lots = lots_of(a);
    uint32_t lo = 0, hi = member_lot_count(a->m);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (lot_cmp(&lots[mid], expires_at, lot_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int32_t lots_find(struct acct *a, uint64_t expires_at, uint64_t lot_id)
{
    uint32_t i = lower_bound(a, expires_at, lot_id);
    if (i < member_lot_count(a->m) && lot_cmp(&lots_of(a)[i], expires_at, lot_id) == 0)
        return (int32_t)i;
    return -1;
}

static bool lot_empty(const struct tally_lot *l)
{
    return l->remaining == 0 && l->held == 0 && l->activate_at == 0;
}

static bool lot_takeable(const struct tally_lot *l)
{
    return l->activate_at == 0 && l->remaining > 0;
}

bool lots_room(const struct acct *a, uint32_t more)
{
    return member_lot_count(a->m) + more <= TALLY_LINEAGE_MAX;
}

void lots_compact(struct acct *a)
{
    struct tally_lot *lots = lots_of(a);
    uint32_t n = member_lot_count(a->m), kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!lot_empty(&lots[i]))
            lots[kept++] = lots[i];
    }
    (void)members_set_size(a->m, (uint32_t)(sizeof(struct tally_account) + kept * sizeof(*lots)));
}

int lots_insert(struct acct *a, const struct tally_lot_ref *ref, uint64_t origin_seq,
                uint64_t activate_at)
{
    struct tally_lot lot = {
        .lot_id = ref->lot_id,
        .expires_at = ref->expires_at,
        .earned_at = ref->earned_at,
        .origin_seq = origin_seq,
        .amount = ref->amount,
        .remaining = ref->amount,
        .activate_at = activate_at,
    };
    if (lot_empty(&lot))
        return 0;
    if (!lots_room(a, 1) || lots_find(a, lot.expires_at, lot.lot_id) >= 0)
        return TALLY_ECORRUPT; /* ops check lots_room first; lot ids are unique */
    uint32_t n = member_lot_count(a->m);
    uint32_t at = lower_bound(a, lot.expires_at, lot.lot_id);
    int rc = members_set_size(a->m, a->m->size + (uint32_t)sizeof(lot));
    if (rc != 0)
        return rc;
    struct tally_lot *lots = lots_of(a);
    memmove(&lots[at + 1], &lots[at], (n - at) * sizeof(lot));
    lots[at] = lot;
    return 0;
}

uint64_t lots_land(int64_t *available, uint64_t amount)
{
    int64_t before = *available;
    *available += (int64_t)amount;
    if (before >= 0)
        return amount;
    uint64_t debt = (uint64_t)(-before);
    return amount > debt ? amount - debt : 0;
}

int lots_timers(struct engine *e, const struct acct *a, const struct tally_lot_ref *ref,
                uint64_t activate_at)
{
    int rc = 0;
    if (activate_at != 0)
        rc = timers_set(e, activate_at, STORE_TIMER_ACTIVATE, a->rec.program, a->rec.member,
                        ref->lot_id, ref->expires_at);
    if (rc != 0 || ref->expires_at == UINT64_MAX || (ref->amount == 0 && activate_at == 0))
        return rc;
    /* One expiry timer per member and expiry time is enough (it expires every lot due): a lot
     * already open with the same expiry has set it. */
    const struct tally_lot *lots = member_lots(a->m);
    for (uint32_t i = 0, n = member_lot_count(a->m); i < n; i++) {
        if (lots[i].expires_at == ref->expires_at)
            return 0;
        if (lots[i].expires_at > ref->expires_at)
            break;
    }
    return timers_set(e, ref->expires_at, STORE_TIMER_EXPIRE, a->rec.program, a->rec.member, 0,
                      0);
}

/* ---- plans ---------------------------------------------------------------------------------- */

static void plan_add(struct engine *e, struct lot_plan *plan, uint32_t i, uint64_t take)
{
    e->plan_idx[plan->count] = i;
    e->u64s[plan->count] = take;
    plan->count++;
    plan->total += take;
}

void lots_plan_take(struct engine *e, struct acct *a, uint64_t amount, int32_t first,
                    struct lot_plan *plan, uint32_t *result)
{
    plan->count = 0;
    plan->total = 0;
    *result = TALLY_OK;
    const struct tally_lot *lots = lots_of(a);
    uint32_t n = member_lot_count(a->m);
    if (first >= 0 && lot_takeable(&lots[first])) {
        uint64_t r = lots[first].remaining;
        plan_add(e, plan, (uint32_t)first, r < amount ? r : amount);
    }
    for (uint32_t i = 0; i < n && plan->total < amount; i++) {
        if ((int32_t)i == first || !lot_takeable(&lots[i]))
            continue;
        if (plan->count == TALLY_LINEAGE_MAX) {
            *result = TALLY_LOTS_LIMIT;
            return;
        }
        uint64_t want = amount - plan->total;
        plan_add(e, plan, i, lots[i].remaining < want ? lots[i].remaining : want);
    }
}

void lots_plan_due(struct engine *e, struct acct *a, uint64_t now, struct lot_plan *plan)
{
    plan->count = 0;
    plan->total = 0;
    const struct tally_lot *lots = lots_of(a);
    uint32_t n = member_lot_count(a->m);
    for (uint32_t i = 0; i < n && lots[i].expires_at <= now; i++) {
        if (plan->count == TALLY_LINEAGE_MAX)
            break;
        if (lot_takeable(&lots[i]))
            plan_add(e, plan, i, lots[i].remaining);
    }
}

void lots_plan_refs(struct engine *e, struct acct *a, const struct lot_plan *plan,
                    struct tally_lot_ref *refs)
{
    const struct tally_lot *lots = lots_of(a);
    for (uint32_t k = 0; k < plan->count; k++) {
        const struct tally_lot *l = &lots[e->plan_idx[k]];
        refs[k] = (struct tally_lot_ref){l->lot_id, l->expires_at, l->earned_at, e->u64s[k]};
    }
}

/* ---- time-driven and follow-up entries -------------------------------------------------- */

int lots_activate(struct op *op, struct acct *a, uint32_t i, const struct tally_posting *p)
{
    struct tally_lot lot = lots_of(a)[i];
    struct tally_entry en = {0};
    en.program = a->rec.program;
    en.kind = TALLY_KIND_ACTIVATE;
    en.flags = p == NULL ? TALLY_ENTRY_AUTO : 0;
    en.debit = a->rec.member;
    en.credit = a->rec.member;
    en.amount = lot.remaining;
    en.ref_seq = lot.origin_seq;
    en.lot_id = lot.lot_id;
    if (p != NULL)
        en.code = p->code;
    int64_t available = a->rec.available;
    struct tally_lot_ref ref = {lot.lot_id, lot.expires_at, lot.earned_at,
                                lots_land(&available, lot.remaining)};
    int rc = entry_emit(op, &en, &ref, sizeof(ref), a, NULL);
    if (rc != 0 || lot.expires_at > op->now)
        return rc;
    return lots_expire_due(op, a);
}

int lots_expire_due(struct op *op, struct acct *a)
{
    struct engine *e = op->e;
    for (;;) {
        struct lot_plan plan;
        lots_plan_due(e, a, op->now, &plan);
        if (plan.count == 0)
            return 0;
        struct acct sink;
        int rc = acct_load(e, a->rec.program, TALLY_SYS_BREAKAGE, &sink);
        if (rc != 0)
            return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
        lots_plan_refs(e, a, &plan, e->refs);
        struct tally_entry en = {0};
        en.program = a->rec.program;
        en.kind = TALLY_KIND_EXPIRE;
        en.flags = TALLY_ENTRY_AUTO;
        en.debit = a->rec.member;
        en.credit = TALLY_SYS_BREAKAGE;
        en.amount = plan.total;
        rc = entry_emit(op, &en, e->refs, plan.count * (uint32_t)sizeof(struct tally_lot_ref), a,
                        &sink);
        if (rc != 0)
            return rc;
    }
}
