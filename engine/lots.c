/* lots.c: lots, the units in which points are earned, consumed, held, restored and expired.
 *
 * Invariants (checked from outside by tally-audit, which re-derives every lot from the entries):
 *   - for an open member not in debt, available == the sum of `remaining` over its active lots,
 *     pending == the sum over its pending lots, held == the sum of `held` over all its lots;
 *   - a lot is stored while it has remaining or held points or is pending, and deleted when it
 *     has none (the entries keep its history; a reversal can re-create it);
 *   - consumption takes active lots soonest-expiring first (the key order), ties by lot id.
 *
 * Taking points is two steps: plan (read the lots, decide how much to take from each, find out
 * whether there is enough) and apply (write). Nothing is written until the plan says the posting
 * can succeed, so a refused posting leaves no trace.
 */
#include "internal.h"

#include <string.h>

int lots_get(struct engine *e, uint32_t program, uint64_t member, uint64_t expires_at,
             uint64_t lot_id, struct tally_lot *out)
{
    uint8_t k[STORE_LOT_KEY];
    store_lot_key(k, program, member, expires_at, lot_id);
    return store_get(e, STORE_DB_MEMBERS, k, sizeof(k), out, sizeof(*out));
}

static bool lot_empty(const struct tally_lot *l)
{
    return l->remaining == 0 && l->held == 0 && l->activate_at == 0;
}

int lots_put(struct engine *e, struct acct *a, const struct tally_lot *old,
             const struct tally_lot *lot)
{
    uint8_t k[STORE_LOT_KEY];
    store_lot_key(k, a->rec.program, a->rec.member, lot->expires_at, lot->lot_id);
    if (lot_empty(lot)) {
        if (old == NULL)
            return 0;
        a->rec.lots_open--;
        return store_del(e, STORE_DB_MEMBERS, k, sizeof(k), old, sizeof(*old));
    }
    if (old == NULL)
        a->rec.lots_open++;
    return store_put(e, STORE_DB_MEMBERS, k, sizeof(k), old, sizeof(*old), lot, sizeof(*lot));
}

uint64_t lots_landed(struct acct *a, uint64_t amount)
{
    int64_t before = a->rec.available;
    a->rec.available += (int64_t)amount;
    if (before >= 0)
        return amount;
    uint64_t debt = (uint64_t)(-before);
    return amount > debt ? amount - debt : 0;
}

/* ---- taking points ------------------------------------------------------------------------ */

static void plan_add(struct engine *e, struct lot_plan *plan, const uint8_t *key,
                     const struct tally_lot *lot, uint64_t take)
{
    uint32_t i = plan->count++;
    e->lots[i] = *lot;
    memcpy(e->lot_keys[i], key, STORE_LOT_KEY);
    e->u64s[i] = take;
    plan->total += take;
}

static bool lot_takeable(const struct tally_lot *l)
{
    return l->activate_at == 0 && l->remaining > 0;
}

int lots_plan_take(struct engine *e, uint32_t program, uint64_t member, uint64_t amount,
                   const uint8_t *first_lot, struct lot_plan *plan, uint32_t *result)
{
    plan->count = 0;
    plan->total = 0;
    *result = TALLY_OK;
    struct tally_lot lot;
    if (first_lot != NULL) {
        int rc = store_get(e, STORE_DB_MEMBERS, first_lot, STORE_LOT_KEY, &lot, sizeof(lot));
        if (rc != 0 && rc != TALLY_ENOT_FOUND)
            return rc;
        if (rc == 0 && lot_takeable(&lot))
            plan_add(e, plan, first_lot, &lot, lot.remaining < amount ? lot.remaining : amount);
    }
    uint8_t prefix[STORE_MEMBER_PREFIX + 1];
    store_member_tag(prefix, program, member, STORE_TAG_LOT);
    MDB_cursor *c;
    int rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_MEMBERS], &c));
    if (rc != 0)
        return rc;
    MDB_val k = {.mv_size = sizeof(prefix), .mv_data = prefix}, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    while (rc == 0 && plan->total < amount) {
        if (k.mv_size != STORE_LOT_KEY || memcmp(k.mv_data, prefix, sizeof(prefix)) != 0)
            break;
        if (v.mv_size != sizeof(lot)) {
            rc = TALLY_ECORRUPT;
            break;
        }
        memcpy(&lot, v.mv_data, sizeof(lot));
        bool is_first = first_lot != NULL && memcmp(k.mv_data, first_lot, STORE_LOT_KEY) == 0;
        if (lot_takeable(&lot) && !is_first) {
            if (plan->count == TALLY_LINEAGE_MAX) {
                *result = TALLY_LOTS_LIMIT;
                break;
            }
            uint64_t want = amount - plan->total;
            plan_add(e, plan, k.mv_data, &lot, lot.remaining < want ? lot.remaining : want);
        }
        rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_NEXT));
    }
    mdb_cursor_close(c);
    return rc == TALLY_ENOT_FOUND ? 0 : rc;
}

int lots_apply_take(struct engine *e, struct acct *a, const struct lot_plan *plan, bool to_held,
                    struct tally_lot_ref *refs)
{
    for (uint32_t i = 0; i < plan->count; i++) {
        const struct tally_lot *old = &e->lots[i];
        struct tally_lot lot = *old;
        uint64_t take = e->u64s[i];
        lot.remaining -= take;
        if (to_held)
            lot.held += take;
        refs[i] = (struct tally_lot_ref){old->lot_id, old->expires_at, old->earned_at, take};
        int rc = lots_put(e, a, old, &lot);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int lots_take_held(struct engine *e, struct acct *a, const struct tally_lot_ref *held,
                   uint32_t n, uint64_t amount, struct tally_lot_ref *out, uint32_t *out_n)
{
    *out_n = 0;
    for (uint32_t i = 0; i < n && amount > 0; i++) {
        struct tally_lot old;
        int rc = lots_get(e, a->rec.program, a->rec.member, held[i].expires_at, held[i].lot_id,
                          &old);
        if (rc != 0)
            return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
        uint64_t take = held[i].amount < amount ? held[i].amount : amount;
        if (old.held < take)
            return TALLY_ECORRUPT;
        struct tally_lot lot = old;
        lot.held -= take;
        if ((rc = lots_put(e, a, &old, &lot)) != 0)
            return rc;
        out[(*out_n)++] = (struct tally_lot_ref){old.lot_id, old.expires_at, old.earned_at, take};
        amount -= take;
    }
    return amount == 0 ? 0 : TALLY_ECORRUPT;
}

/* ---- creating and restoring --------------------------------------------------------------- */

static int lot_timers(struct engine *e, const struct acct *a, const struct tally_lot *lot)
{
    int rc = 0;
    if (lot->activate_at != 0)
        rc = timers_set(e, lot->activate_at, STORE_TIMER_ACTIVATE, a->rec.program, a->rec.member,
                        lot->lot_id, lot->expires_at);
    if (rc == 0 && lot->expires_at != UINT64_MAX)
        rc = timers_set(e, lot->expires_at, STORE_TIMER_EXPIRE, a->rec.program, a->rec.member,
                        0, 0);
    return rc;
}

int lots_create(struct engine *e, struct acct *a, const struct tally_lot_ref *ref,
                uint64_t origin_seq, uint64_t activate_at)
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
    int rc = lots_put(e, a, NULL, &lot);
    return rc != 0 ? rc : lot_timers(e, a, &lot);
}

int lots_restore(struct engine *e, struct acct *a, const struct tally_lot_ref *ref,
                 uint64_t origin_seq, bool from_held)
{
    struct tally_lot old;
    int rc = lots_get(e, a->rec.program, a->rec.member, ref->expires_at, ref->lot_id, &old);
    if (rc == TALLY_ENOT_FOUND) {
        if (from_held)
            return TALLY_ECORRUPT;
        return lots_create(e, a, ref, origin_seq, 0);
    }
    if (rc != 0)
        return rc;
    struct tally_lot lot = old;
    if (from_held) {
        if (lot.held < ref->amount)
            return TALLY_ECORRUPT;
        lot.held -= ref->amount;
    }
    lot.remaining += ref->amount;
    return lots_put(e, a, &old, &lot);
}

int lots_activate(struct op *op, struct acct *a, const struct tally_lot *lot,
                  const struct tally_posting *p)
{
    struct tally_entry en = {0};
    en.program = a->rec.program;
    en.kind = TALLY_KIND_ACTIVATE;
    en.flags = p == NULL ? TALLY_ENTRY_AUTO : 0;
    en.debit = a->rec.member;
    en.credit = a->rec.member;
    en.amount = lot->remaining;
    en.ref_seq = lot->origin_seq;
    en.lot_id = lot->lot_id;
    if (p != NULL)
        en.code = p->code;
    a->rec.pending -= lot->remaining;
    struct tally_lot_ref ref = {lot->lot_id, lot->expires_at, lot->earned_at, 0};
    ref.amount = lots_landed(a, lot->remaining);
    struct tally_lot next = *lot;
    next.activate_at = 0;
    next.remaining = ref.amount;
    int rc = lots_put(op->e, a, lot, &next);
    if (rc == 0 && p != NULL)
        rc = timers_clear(op->e, lot->activate_at, STORE_TIMER_ACTIVATE, a->rec.program,
                          a->rec.member, lot->lot_id, lot->expires_at);
    if (rc == 0)
        rc = entry_emit(op, &en, &ref, sizeof(ref), a, NULL);
    if (rc != 0 || lot->expires_at > op->now)
        return rc;
    return lots_expire_due(op, a);
}

/* ---- expiry ------------------------------------------------------------------------------- */

/* Plan the member's active lots with points that are due by `now`. */
static int plan_due(struct engine *e, const struct acct *a, uint64_t now, struct lot_plan *plan)
{
    plan->count = 0;
    plan->total = 0;
    uint8_t prefix[STORE_MEMBER_PREFIX + 1];
    store_member_tag(prefix, a->rec.program, a->rec.member, STORE_TAG_LOT);
    MDB_cursor *c;
    int rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_MEMBERS], &c));
    if (rc != 0)
        return rc;
    MDB_val k = {.mv_size = sizeof(prefix), .mv_data = prefix}, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    while (rc == 0 && plan->count < TALLY_LINEAGE_MAX) {
        if (k.mv_size != STORE_LOT_KEY || memcmp(k.mv_data, prefix, sizeof(prefix)) != 0)
            break;
        if (store_get_be64((const uint8_t *)k.mv_data + 13) > now)
            break;
        struct tally_lot lot;
        if (v.mv_size != sizeof(lot)) {
            rc = TALLY_ECORRUPT;
            break;
        }
        memcpy(&lot, v.mv_data, sizeof(lot));
        if (lot_takeable(&lot))
            plan_add(e, plan, k.mv_data, &lot, lot.remaining);
        rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_NEXT));
    }
    mdb_cursor_close(c);
    return rc == TALLY_ENOT_FOUND ? 0 : rc;
}

int lots_expire_due(struct op *op, struct acct *a)
{
    struct engine *e = op->e;
    for (;;) {
        struct lot_plan plan;
        int rc = plan_due(e, a, op->now, &plan);
        if (rc != 0 || plan.count == 0)
            return rc;
        struct acct sink;
        if ((rc = acct_load(e, a->rec.program, TALLY_SYS_BREAKAGE, &sink)) != 0)
            return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
        if ((rc = lots_apply_take(e, a, &plan, false, e->refs)) != 0)
            return rc;
        a->rec.available -= (int64_t)plan.total;
        a->rec.expired += plan.total;
        sink.rec.available += (int64_t)plan.total;
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
