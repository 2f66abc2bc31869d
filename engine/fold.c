/* fold.c: the effects of an entry on member state: the one place where accounts and lots change.
 *
 * Every change to a member image (account + lots) happens here, as the effect of an entry, as
 * specified by the "Entry effects" table of docs/LEDGER.md. The engine uses it twice:
 *   - at run time, entry_emit() folds each entry right after appending it, so a posting's ops only
 *     decide (validate, plan which lots, compute amounts) and never change an account themselves;
 *   - at open, recovery folds the entries that the `members` B-tree may not include yet (those
 *     from meta.fold_from on), skipping, for each side, entries its image already includes.
 * One implementation for both means recovery cannot drift from what apply did.
 *
 * Deciding belongs to the ops: fold applies what the entry and its lot refs say, and never looks at
 * anything but the entry, its tail, the referenced entry (for the month of an accrual's QV) and the
 * images it changes. Records outside member images (holds, reversals, timers, programs, postings)
 * are written by the ops in the batch's transaction, so recovery never needs to rebuild them.
 */
#include "internal.h"

#include <string.h>

#include "calendar.h"

/* ---- lots of an image, by their refs ------------------------------------------------------ */

static struct tally_lot *lot_at(struct acct *a, const struct tally_lot_ref *r)
{
    if (a->ghost)
        return NULL;
    int32_t i = lots_find(a, r->expires_at, r->lot_id);
    return i < 0 ? NULL : &member_lots(a->m)[i];
}

/* remaining -= ref.amount (from_held: held -= ref.amount) for each ref. */
static int lots_take(struct acct *a, const struct tally_lot_ref *refs, uint32_t n, bool from_held)
{
    if (a->ghost)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        struct tally_lot *l = lot_at(a, &refs[i]);
        uint64_t *x = l == NULL ? NULL : from_held ? &l->held : &l->remaining;
        if (x == NULL || *x < refs[i].amount)
            return TALLY_ECORRUPT;
        *x -= refs[i].amount;
    }
    lots_compact(a);
    return 0;
}

/* remaining += ref.amount; a lot that is gone is re-created (origin: this entry). from_held
 * moves the points from held instead. */
static int lots_give(struct acct *a, const struct tally_lot_ref *refs, uint32_t n, uint64_t seq,
                     bool from_held)
{
    if (a->ghost)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        if (refs[i].amount == 0)
            continue;
        struct tally_lot *l = lot_at(a, &refs[i]);
        if (l == NULL) {
            if (from_held)
                return TALLY_ECORRUPT;
            int rc = lots_insert(a, &refs[i], seq, 0);
            if (rc != 0)
                return rc;
            continue;
        }
        if (from_held) {
            if (l->held < refs[i].amount)
                return TALLY_ECORRUPT;
            l->held -= refs[i].amount;
        }
        l->remaining += refs[i].amount;
    }
    return 0;
}

/* ---- the sides of an entry ------------------------------------------------------------------ */

struct sides {
    struct acct *m;  /* the member the entry is about (the debit member, else the credit one) */
    struct acct *m2; /* TRANSFER: the credit member */
    struct acct *s;  /* the system account, if one side is */
};

static struct acct *side_of(uint64_t id, struct acct *a1, struct acct *a2)
{
    if (a1 != NULL && a1->rec.member == id)
        return a1;
    if (a2 != NULL && a2->rec.member == id)
        return a2;
    return NULL;
}

static int sides_of(const struct tally_entry *en, struct acct *a1, struct acct *a2,
                    struct sides *out)
{
    bool dm = en->debit < TALLY_SYS_FIRST, cm = en->credit < TALLY_SYS_FIRST;
    out->m = side_of(dm ? en->debit : en->credit, a1, a2);
    out->m2 = en->kind == TALLY_KIND_TRANSFER ? side_of(en->credit, a1, a2) : NULL;
    out->s = !dm ? side_of(en->debit, a1, a2) : !cm ? side_of(en->credit, a1, a2) : NULL;
    return 0;
}

static uint32_t month_of(const struct op *op, uint64_t t)
{
    return calendar_month_of(t, op->prog.config.tz_offset_min);
}

/* The month of the accrual an entry refers to (CANCEL, REVERSE of an accrual). */
static int ref_month(struct op *op, const struct tally_entry *en, uint32_t *month)
{
    struct tally_entry ref;
    int rc = entry_read(op->e, en->ref_seq, &ref, NULL);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    *month = month_of(op, ref.timestamp);
    return 0;
}

/* ---- effects, by kind ----------------------------------------------------------------------- */

static int fold_accrue(struct op *op, const struct tally_entry *en, const struct tally_lot_ref *r,
                       struct sides *x)
{
    struct tally_account *a = &x->m->rec;
    bool pending = (en->flags & TALLY_ENTRY_PENDING) != 0;
    x->s->rec.available -= (int64_t)en->amount;
    if (pending)
        a->pending += en->amount;
    else
        a->available += (int64_t)en->amount;
    a->earned += en->amount;
    tiers_qv_add(a, month_of(op, en->timestamp), en->value);
    return x->m->ghost ? 0 : lots_insert(x->m, r, en->seq, en->time_b);
}

static int fold_activate(const struct tally_entry *en, const struct tally_lot_ref *r,
                         struct sides *x)
{
    struct tally_lot *l = lot_at(x->m, r);
    x->m->rec.pending -= en->amount;
    x->m->rec.available += (int64_t)en->amount;
    if (x->m->ghost)
        return 0;
    if (l == NULL || l->activate_at == 0 || l->remaining != en->amount || r->amount > en->amount)
        return TALLY_ECORRUPT;
    l->activate_at = 0;
    l->remaining = r->amount; /* less than amount when it paid a debt */
    lots_compact(x->m);
    return 0;
}

static int fold_cancel(struct op *op, const struct tally_entry *en, const struct tally_lot_ref *r,
                       struct sides *x)
{
    struct tally_lot *l = lot_at(x->m, r);
    uint32_t month;
    int rc = ref_month(op, en, &month);
    if (rc != 0)
        return rc;
    x->m->rec.pending -= en->amount;
    x->m->rec.earned -= en->amount;
    x->s->rec.available += (int64_t)en->amount;
    tiers_qv_remove(&x->m->rec, month, en->value);
    if (x->m->ghost)
        return 0;
    if (l == NULL || l->activate_at == 0)
        return TALLY_ECORRUPT;
    l->remaining = 0;
    l->activate_at = 0;
    lots_compact(x->m);
    return 0;
}

static int fold_release(const struct tally_entry *en, const struct tally_lot_ref *r, uint32_t n,
                        struct sides *x)
{
    x->m->rec.held -= en->amount;
    x->m->rec.available += (int64_t)en->amount;
    if (!(en->flags & TALLY_ENTRY_REMAINDER))
        x->m->rec.holds_active--;
    return lots_give(x->m, r, n, en->seq, true);
}

static int fold_reverse(struct op *op, const struct tally_entry *en,
                        const struct tally_lot_ref *r, uint32_t n, struct sides *x)
{
    struct tally_account *a = &x->m->rec;
    if (en->credit == TALLY_SYS_ISSUANCE) { /* of an accrual */
        uint32_t month;
        int rc = ref_month(op, en, &month);
        if (rc != 0)
            return rc;
        a->available -= (int64_t)en->amount;
        a->earned -= en->amount;
        tiers_qv_remove(a, month, en->value);
        x->s->rec.available += (int64_t)en->amount;
        return lots_take(x->m, r, n, false);
    }
    a->available += (int64_t)en->amount; /* of a redemption or capture */
    a->redeemed -= en->amount;
    x->s->rec.available -= (int64_t)en->amount;
    return lots_give(x->m, r, n, en->seq, false);
}

static int fold_transfer(const struct tally_entry *en, const struct tally_lot_ref *r, uint32_t n,
                         struct sides *x)
{
    if (n % 2 != 0 || x->m2 == NULL)
        return TALLY_ECORRUPT;
    uint32_t half = n / 2;
    x->m->rec.available -= (int64_t)en->amount;
    x->m->rec.transferred_out += en->amount;
    x->m2->rec.available += (int64_t)en->amount;
    x->m2->rec.transferred_in += en->amount;
    int rc = lots_take(x->m, r, half, false);
    for (uint32_t i = 0; i < half && rc == 0 && !x->m2->ghost; i++)
        rc = lots_insert(x->m2, &r[half + i], en->seq, 0);
    return rc;
}

static int fold_adjust(const struct tally_entry *en, const struct tally_lot_ref *r, uint32_t n,
                       struct sides *x)
{
    int64_t amt = (int64_t)en->amount;
    if (en->flags & TALLY_ENTRY_NEGATIVE) {
        x->m->rec.available -= amt;
        x->m->rec.adjusted -= amt;
        x->s->rec.available += amt;
        return lots_take(x->m, r, n, false);
    }
    x->m->rec.available += amt;
    x->m->rec.adjusted += amt;
    x->s->rec.available -= amt;
    if (n != 1)
        return TALLY_ECORRUPT;
    return x->m->ghost ? 0 : lots_insert(x->m, r, en->seq, 0);
}

static int fold_close(const struct tally_entry *en, struct sides *x)
{
    struct tally_account *a = &x->m->rec;
    if (!x->m->ghost &&
        (en->value > a->pending || (int64_t)(en->amount - en->value) != a->available))
        return TALLY_ECORRUPT;
    a->expired += en->amount;
    a->available = 0;
    a->pending = 0;
    a->status = TALLY_ACCOUNT_STATUS_CLOSED;
    a->closed_at = en->timestamp;
    x->s->rec.available += (int64_t)en->amount;
    return x->m->ghost ? 0 : members_set_size(x->m->m, (uint32_t)sizeof(struct tally_account));
}

/* Move `amount` from the member's available to a system account (REDEEM, EXPIRE), or to its
 * held bucket (HOLD), taking the refs' points out of the lots. */
static int fold_spend(const struct tally_entry *en, const struct tally_lot_ref *r, uint32_t n,
                      struct sides *x)
{
    struct tally_account *a = &x->m->rec;
    a->available -= (int64_t)en->amount;
    switch (en->kind) {
    case TALLY_KIND_REDEEM:
        a->redeemed += en->amount;
        break;
    case TALLY_KIND_EXPIRE:
        a->expired += en->amount;
        break;
    default: /* HOLD: into held, the refs' points too */
        a->held += en->amount;
        a->holds_active++;
        for (uint32_t i = 0; i < n && !x->m->ghost; i++) {
            struct tally_lot *l = lot_at(x->m, &r[i]);
            if (l == NULL || l->remaining < r[i].amount)
                return TALLY_ECORRUPT;
            l->remaining -= r[i].amount;
            l->held += r[i].amount;
        }
        return 0;
    }
    x->s->rec.available += (int64_t)en->amount;
    return lots_take(x->m, r, n, false);
}

static int fold_capture(const struct tally_entry *en, const struct tally_lot_ref *r, uint32_t n,
                        struct sides *x)
{
    x->m->rec.held -= en->amount;
    x->m->rec.redeemed += en->amount;
    x->m->rec.holds_active--;
    x->s->rec.available += (int64_t)en->amount;
    return lots_take(x->m, r, n, true);
}

static void fold_open(struct op *op, const struct tally_entry *en, struct acct *a)
{
    memset(&a->rec, 0, sizeof(a->rec));
    a->rec.program = en->program;
    a->rec.status = TALLY_ACCOUNT_STATUS_OPEN;
    a->rec.member = en->debit;
    a->rec.opened_at = en->timestamp;
    a->rec.tier_valid_until = UINT64_MAX;
    a->rec.qv_month = month_of(op, en->timestamp);
}

static int fold_kind(struct op *op, const struct tally_entry *en, const struct tally_lot_ref *r,
                     uint32_t n, struct sides *x)
{
    switch (en->kind) {
    case TALLY_KIND_OPEN:
        fold_open(op, en, x->m);
        return 0;
    case TALLY_KIND_ACCRUE:
        return n == 1 ? fold_accrue(op, en, r, x) : TALLY_ECORRUPT;
    case TALLY_KIND_ACTIVATE:
        return n == 1 ? fold_activate(en, r, x) : TALLY_ECORRUPT;
    case TALLY_KIND_CANCEL:
        return n == 1 ? fold_cancel(op, en, r, x) : TALLY_ECORRUPT;
    case TALLY_KIND_REDEEM:
    case TALLY_KIND_HOLD:
    case TALLY_KIND_EXPIRE:
        return fold_spend(en, r, n, x);
    case TALLY_KIND_CAPTURE:
        return fold_capture(en, r, n, x);
    case TALLY_KIND_RELEASE:
        return fold_release(en, r, n, x);
    case TALLY_KIND_REVERSE:
        return fold_reverse(op, en, r, n, x);
    case TALLY_KIND_TRANSFER:
        return fold_transfer(en, r, n, x);
    case TALLY_KIND_ADJUST:
        return fold_adjust(en, r, n, x);
    case TALLY_KIND_CLOSE:
        return fold_close(en, x);
    case TALLY_KIND_TIER_CHANGE:
        x->m->rec.tier = en->tier_to;
        x->m->rec.tier_valid_until = en->time_a;
        return 0;
    default:
        return TALLY_ECORRUPT;
    }
}

/* Which sides an entry of this kind needs: a member, a second member, a system account. */
static bool needs_system(const struct tally_entry *en)
{
    return en->debit >= TALLY_SYS_FIRST || en->credit >= TALLY_SYS_FIRST;
}

int fold_apply(struct op *op, const struct tally_entry *en, const void *tail, struct acct *a1,
               struct acct *a2)
{
    struct sides x;
    int rc = sides_of(en, a1, a2, &x);
    if (rc != 0)
        return rc;
    if (x.m == NULL || (needs_system(en) && x.s == NULL))
        return TALLY_ECORRUPT;
    uint32_t n = en->tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    /* Every account the entry touches is about to change: save before-images for undo. */
    if ((rc = acct_modify(op->e, x.m)) != 0 || (x.m2 && (rc = acct_modify(op->e, x.m2)) != 0) ||
        (x.s && (rc = acct_modify(op->e, x.s)) != 0))
        return rc;
    if ((rc = fold_kind(op, en, (const struct tally_lot_ref *)tail, n, &x)) != 0)
        return rc;
    x.m->rec.last_seq = en->seq;
    if (x.m2 != NULL)
        x.m2->rec.last_seq = en->seq;
    if (x.s != NULL)
        x.s->rec.last_seq = en->seq;
    return 0;
}

/* PROGRAM: the four system accounts, created by the entry. */
int fold_program(struct op *op, const struct tally_entry *en)
{
    for (uint32_t i = 0; i < TALLY_SYS_COUNT; i++) {
        struct acct s;
        int rc = acct_load(op->e, en->program, UINT64_MAX - i, &s);
        if (rc == 0)
            continue; /* recovery: already written back */
        if (rc == TALLY_ENOT_FOUND)
            rc = acct_create(op->e, en->program, UINT64_MAX - i, &s);
        if (rc != 0)
            return rc;
        s.rec.program = en->program;
        s.rec.status = TALLY_ACCOUNT_STATUS_SYSTEM;
        s.rec.member = UINT64_MAX - i;
        s.rec.opened_at = en->timestamp;
        s.rec.tier_valid_until = UINT64_MAX;
        s.rec.last_seq = en->seq;
        if ((rc = acct_save(op->e, &s)) != 0)
            return rc;
    }
    return 0;
}

/* ---- recovery -------------------------------------------------------------------------------- */

/* After each recovered entry: the changed images' hashes (already in meta's sum), no undo. */
static void settle(struct engine *e)
{
    struct members *c = &e->cache;
    for (uint32_t k = 0; k < c->nchanged; k++) {
        struct member *m = &c->slots[c->changed[k]];
        members_hash(m, &m->hash_lo, &m->hash_hi);
        m->flags |= MEMBER_COUNTED;
    }
    members_batch_reset(c);
}

/* Load one side of an entry for recovery: a ghost if its image already has the entry. */
static int side_load(struct op *op, const struct tally_entry *en, uint64_t id, uint64_t prev,
                     struct acct *a, bool *needed)
{
    int rc = acct_load(op->e, en->program, id, a);
    if (rc == TALLY_ENOT_FOUND && en->kind == TALLY_KIND_OPEN && prev == 0) {
        *needed = true;
        return acct_create(op->e, en->program, id, a);
    }
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    if (a->rec.last_seq >= en->seq) {
        a->ghost = true;
        return 0;
    }
    /* The image is older than the entry: it must be exactly the state the entry followed. */
    if (id < TALLY_SYS_FIRST && a->rec.last_seq != prev)
        return TALLY_ECORRUPT;
    *needed = true;
    return 0;
}

static int recover_entry(struct op *op, const struct tally_entry *en, const void *tail)
{
    if (en->kind == TALLY_KIND_PROGRAM)
        return fold_program(op, en);
    struct acct a1, a2;
    bool needed = false;
    int rc = side_load(op, en, en->debit, en->debit_prev, &a1, &needed);
    bool two = en->credit != en->debit;
    if (rc == 0 && two)
        rc = side_load(op, en, en->credit, en->credit_prev, &a2, &needed);
    if (rc != 0 || !needed)
        return rc;
    if ((rc = fold_apply(op, en, tail, &a1, two ? &a2 : NULL)) != 0)
        return rc;
    if ((rc = acct_save(op->e, &a1)) == 0 && two)
        rc = acct_save(op->e, &a2);
    return rc;
}

int fold_recover(struct engine *e, uint64_t from)
{
    struct op op = {.e = e, .p = NULL};
    uint32_t program = 0;
    for (uint64_t seq = from; seq < e->meta.next_seq; seq++) {
        struct tally_entry en;
        const uint8_t *t;
        int rc = entry_read(e, seq, &en, &t);
        if (rc != 0)
            return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
        /* Copy the tail out of the map: folding writes to the cache only, but be strict. */
        memcpy(e->buf2, t, en.tail_size);
        if (en.program != program) {
            if ((rc = program_load(e, en.program, &op.prog)) != 0)
                return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
            program = en.program;
        }
        op.now = en.timestamp;
        if ((rc = recover_entry(&op, &en, e->buf2)) != 0)
            return rc;
        settle(e);
    }
    return 0;
}
