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
 *
 * Speed: the sweep reads due timers TIMERS_CHUNK at a time with one cursor, and prefetches the
 * members of the timers ahead (a midnight of expiries is tens of thousands of timers of random
 * members). The order stays exactly (time, seq): a timer set while a chunk runs has a time later
 * than the running one's, and a seq above every existing one, so it comes before the rest of the
 * chunk only if its time is earlier than the next one's; the sweep then reads again.
 */
#include "internal.h"

#include <string.h>

int timers_set(struct engine *e, uint64_t time, uint32_t kind, uint32_t program, uint64_t member,
               uint64_t object, uint64_t aux)
{
    uint8_t k[STORE_TIMER_KEY];
    store_timer_key(k, time, e->work.next_timer++);
    struct store_timer t = {kind, program, member, object, aux};
    if (time < e->timer_set_min)
        e->timer_set_min = time;
    return store_put(e, STORE_DB_TIMERS, k, sizeof(k), NULL, 0, &t, sizeof(t));
}

struct timer {
    uint64_t time;
    struct store_timer t;
    uint8_t key[STORE_TIMER_KEY];
};

#define TIMERS_CHUNK 256u

/* The first due timers, in order, at most max of them: their count in *n (0: none due). */
static int due_chunk(struct engine *e, uint64_t now, struct timer *out, uint32_t max, uint32_t *n)
{
    MDB_cursor *c;
    *n = 0;
    int rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_TIMERS], &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    MDB_cursor_op op = MDB_FIRST;
    while (*n < max && (rc = store_translate(mdb_cursor_get(c, &k, &v, op))) == 0) {
        op = MDB_NEXT;
        struct timer *t = &out[*n];
        if (k.mv_size != STORE_TIMER_KEY || v.mv_size != sizeof(t->t)) {
            rc = TALLY_ECORRUPT;
            break;
        }
        memcpy(t->key, k.mv_data, sizeof(t->key));
        t->time = store_get_be64(t->key);
        if (t->time > now)
            break;
        memcpy(&t->t, v.mv_data, sizeof(t->t));
        (*n)++;
    }
    mdb_cursor_close(c);
    return rc == TALLY_ENOT_FOUND ? 0 : rc;
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

/* Prefetch distances within a chunk, in timers: bucket, slot, image (members_prefetch). */
static const uint32_t timers_ahead[3] = {12, 6, 3};

static void prefetch_timer(struct engine *e, const struct timer *chunk, uint32_t n, uint32_t i)
{
    for (int step = 0; step < 3; step++) {
        uint32_t k = i + timers_ahead[step];
        if (k < n)
            members_prefetch(&e->cache, chunk[k].t.program, chunk[k].t.member, step);
    }
}

int timers_sweep(struct engine *e, uint64_t now)
{
    struct timer chunk[TIMERS_CHUNK]; /* 14 KiB of stack */
    for (;;) {
        uint32_t n;
        int rc = due_chunk(e, now, chunk, TIMERS_CHUNK, &n);
        if (rc != 0 || n == 0)
            return rc;
        for (int step = 0; step < 3; step++)
            for (uint32_t k = 0; k < timers_ahead[step] && k < n; k++)
                members_prefetch(&e->cache, chunk[k].t.program, chunk[k].t.member, step);
        e->timer_set_min = UINT64_MAX;
        for (uint32_t i = 0; i < n; i++) {
            prefetch_timer(e, chunk, n, i);
            const struct timer *t = &chunk[i];
            rc = store_del(e, STORE_DB_TIMERS, t->key, sizeof(t->key), &t->t, sizeof(t->t));
            if (rc == 0)
                rc = run(e, t);
            if (rc != 0)
                return rc;
            if (i + 1 < n && e->timer_set_min < chunk[i + 1].time)
                break; /* a timer just set comes first: read again */
        }
    }
}
