/* timers.c: time-driven work as ordinary deterministic input.
 *
 * The timers sub-database is an index of due work ordered by (time, seq), seq a counter, so
 * timers set by a batch are appended rather than scattered (storage.h). At the start of every batch the engine runs every timer whose time has come, oldest
 * first; each one runs with op->now = its own time, so the entries it creates are stamped with
 * the moment they were due, however late the batch that found them. A timer is deleted when it
 * runs. Work a timer would do may already be done or moot (the lots were redeemed, the tier was
 * renewed by a later change, the hold was captured): each handler checks the current state and
 * does nothing then, so the engine never has to find and delete such timers, and never does.
 *
 * Termination: a timer only ever creates timers later than its own time (an expiry after the
 * earn time, a validity after the evaluation), so the sweep moves forward and ends.
 */
#include "internal.h"

#include <string.h>

int timers_set(struct engine *e, uint64_t time, uint32_t kind, uint32_t program, uint64_t member,
               uint64_t object, uint64_t aux)
{
    uint8_t k[STORE_TIMER_KEY];
    store_timer_key(k, time, e->work.next_timer++);
    struct store_timer t = {kind, program, member, object, aux};
    return store_put(e, STORE_DB_TIMERS, k, sizeof(k), NULL, 0, &t, sizeof(t));
}

struct timer {
    uint64_t time;
    struct store_timer t;
    uint8_t key[STORE_TIMER_KEY];
};

/* The first timer, if due by `now`: 0 and *t, or TALLY_ENOT_FOUND. */
static int first_due(struct engine *e, uint64_t now, struct timer *t)
{
    MDB_cursor *c;
    int rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_TIMERS], &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_FIRST));
    mdb_cursor_close(c);
    if (rc != 0)
        return rc;
    if (k.mv_size != STORE_TIMER_KEY || v.mv_size != sizeof(t->t))
        return TALLY_ECORRUPT;
    memcpy(t->key, k.mv_data, sizeof(t->key));
    t->time = store_get_be64(t->key);
    if (t->time > now)
        return TALLY_ENOT_FOUND;
    memcpy(&t->t, v.mv_data, sizeof(t->t));
    return 0;
}

static int activate_lot(struct op *op, struct acct *a, uint64_t lot_id, uint64_t expires_at)
{
    int32_t i = lots_find(a, expires_at, lot_id);
    if (i < 0 || member_lots(a->m)[i].activate_at == 0)
        return 0; /* cancelled, activated by hand, or forfeited at close */
    return lots_activate(op, a, (uint32_t)i, NULL);
}

static int run(struct engine *e, const struct timer *t)
{
    struct op op = {.e = e, .p = NULL, .now = t->time};
    int rc = program_load(e, t->t.program, &op.prog);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    struct acct a;
    rc = acct_load(e, t->t.program, t->t.member, &a);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    switch (t->t.kind) {
    case STORE_TIMER_ACTIVATE:
        return activate_lot(&op, &a, t->t.object, t->t.aux);
    case STORE_TIMER_HOLD_TIMEOUT:
        return postings_release_hold(&op, t->t.object, &a, false);
    case STORE_TIMER_EXPIRE:
        return lots_expire_due(&op, &a);
    case STORE_TIMER_TIER:
        return tiers_evaluate(&op, &a);
    default:
        return TALLY_ECORRUPT;
    }
}

int timers_sweep(struct engine *e, uint64_t now)
{
    for (;;) {
        struct timer t;
        int rc = first_due(e, now, &t);
        if (rc == TALLY_ENOT_FOUND)
            return 0;
        if (rc != 0)
            return rc;
        rc = store_del(e, STORE_DB_TIMERS, t.key, sizeof(t.key), &t.t, sizeof(t.t));
        if (rc != 0)
            return rc;
        if ((rc = run(e, &t)) != 0)
            return rc;
    }
}
