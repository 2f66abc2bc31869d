/* postings.c: validation and execution of each posting kind (docs/LEDGER.md is the specification).
 *
 * Every kind follows the same shape: check everything that can refuse the posting, in the order
 * the specification lists, without writing; then write. A refused posting therefore never leaves
 * a partial change behind, and the caller needs no nested transaction for single postings. The
 * "then write" part can only fail with a system error (disk, map full, corruption), which aborts
 * the whole batch.
 */
#include "internal.h"

#include <string.h>

#include "calendar.h"
#include "hash.h"

/* ---- validation: by the posting's bytes alone ---------------------------------------------- */

enum field {
    F_REF = 1 << 0,
    F_ACCOUNT2 = 1 << 1,
    F_AMOUNT = 1 << 2,
    F_VALUE = 1 << 3,
    F_DURATION = 1 << 4,
};

/* For each kind: the fields it may use, and those it must have. */
static const struct {
    uint8_t allowed;
    uint8_t required;
} kind_fields[TALLY_KIND_LIMIT] = {
    [TALLY_KIND_OPEN] = {0, 0},
    [TALLY_KIND_ACCRUE] = {F_AMOUNT | F_VALUE | F_DURATION, F_AMOUNT},
    [TALLY_KIND_ACTIVATE] = {F_REF, F_REF},
    [TALLY_KIND_CANCEL] = {F_REF, F_REF},
    [TALLY_KIND_REDEEM] = {F_AMOUNT, F_AMOUNT},
    [TALLY_KIND_HOLD] = {F_AMOUNT | F_DURATION, F_AMOUNT},
    [TALLY_KIND_CAPTURE] = {F_REF | F_AMOUNT, F_REF},
    [TALLY_KIND_RELEASE] = {F_REF, F_REF},
    [TALLY_KIND_REVERSE] = {F_REF | F_AMOUNT, F_REF},
    [TALLY_KIND_TRANSFER] = {F_ACCOUNT2 | F_AMOUNT, F_ACCOUNT2 | F_AMOUNT},
    [TALLY_KIND_ADJUST] = {F_AMOUNT, F_AMOUNT},
    [TALLY_KIND_CLOSE] = {0, 0},
};

static bool id_zero(const uint8_t id[16])
{
    static const uint8_t zero[16];
    return memcmp(id, zero, 16) == 0;
}

static bool member_valid(uint64_t m)
{
    return m != 0 && m < TALLY_SYS_FIRST;
}

static uint32_t validate_config(const struct tally_program_config *c)
{
    bool ok = c->expiry <= TALLY_EXPIRY_YEAR && c->tier_mode <= TALLY_TIER_DOWN_EARNED &&
              c->window <= TALLY_WINDOW_CALENDAR && c->tier_count >= 1 &&
              c->tier_count <= TALLY_TIERS_MAX && c->validity_months <= 120 &&
              (c->flags & ~TALLY_PROGRAM_ALLOW_NEGATIVE) == 0 && c->tz_offset_min >= -840 &&
              c->tz_offset_min <= 840 && c->hold_timeout_ms >= 1 &&
              c->hold_timeout_ms <= TALLY_DURATION_MAX_MS && c->reserved == 0;
    if (!ok)
        return TALLY_CONFIG_INVALID;
    if (c->window == TALLY_WINDOW_ROLLING ? c->window_months < 1 || c->window_months > 12
                                          : c->window_months != 0)
        return TALLY_CONFIG_INVALID;
    if (c->expiry == TALLY_EXPIRY_FIXED ? c->expiry_fixed_at == 0 || c->expiry_n != 0
                                        : c->expiry_fixed_at != 0)
        return TALLY_CONFIG_INVALID;
    if ((c->expiry == TALLY_EXPIRY_NONE && c->expiry_n != 0) ||
        (c->expiry == TALLY_EXPIRY_DAYS && (c->expiry_n < 1 || c->expiry_n > 3660)) ||
        (c->expiry >= TALLY_EXPIRY_MONTH && c->expiry_n > 120))
        return TALLY_CONFIG_INVALID;
    if (c->tier_count > 1 && c->tier_mode != TALLY_TIER_UP_ONLY && c->validity_months == 0)
        return TALLY_CONFIG_INVALID;
    for (uint32_t k = 1; k < TALLY_TIERS_MAX; k++) {
        uint64_t t = c->thresholds[k - 1];
        bool used = k < c->tier_count;
        if (used ? t == 0 || t > TALLY_AMOUNT_MAX || (k > 1 && t <= c->thresholds[k - 2])
                 : t != 0)
            return TALLY_CONFIG_INVALID;
    }
    return TALLY_OK;
}

static uint32_t validate_fields(const struct tally_posting *p)
{
    uint8_t allowed = kind_fields[p->kind].allowed, required = kind_fields[p->kind].required;
    uint8_t present = (uint8_t)((!id_zero(p->ref) ? F_REF : 0) | (p->account2 ? F_ACCOUNT2 : 0) |
                                (p->amount ? F_AMOUNT : 0) | (p->value ? F_VALUE : 0) |
                                (p->duration_ms ? F_DURATION : 0));
    if (p->reserved2 != 0)
        return TALLY_RESERVED_NONZERO;
    if (!member_valid(p->account))
        return TALLY_ACCOUNT_INVALID;
    if (present & ~allowed)
        return TALLY_FIELD_NOT_ALLOWED;
    if (p->amount > TALLY_AMOUNT_MAX || p->value > TALLY_AMOUNT_MAX)
        return TALLY_AMOUNT_TOO_LARGE;
    if ((required & F_REF) && !(present & F_REF))
        return TALLY_REF_ZERO;
    if ((required & F_AMOUNT) && p->amount == 0)
        return TALLY_AMOUNT_ZERO;
    if ((required & F_ACCOUNT2) && !member_valid(p->account2))
        return TALLY_ACCOUNT_INVALID;
    if (p->kind == TALLY_KIND_TRANSFER && p->account2 == p->account)
        return TALLY_SAME_ACCOUNT;
    if (p->duration_ms > TALLY_DURATION_MAX_MS)
        return TALLY_DURATION_INVALID;
    if (p->kind == TALLY_KIND_ACCRUE &&
        ((p->flags & TALLY_FLAG_PENDING) != 0) != (p->duration_ms != 0))
        return TALLY_DURATION_INVALID;
    return TALLY_OK;
}

uint32_t postings_validate(const struct tally_posting *p)
{
    if (id_zero(p->id))
        return TALLY_ID_ZERO;
    if (p->kind == 0 || p->kind >= TALLY_KIND_EXPIRE)
        return TALLY_KIND_INVALID;
    if (p->reserved != 0)
        return TALLY_RESERVED_NONZERO;
    if (p->program == 0)
        return TALLY_PROGRAM_ZERO;
    if ((p->flags & ~TALLY_FLAGS_KNOWN) != 0 ||
        ((p->flags & TALLY_FLAG_PENDING) && p->kind != TALLY_KIND_ACCRUE) ||
        ((p->flags & TALLY_FLAG_NEGATIVE) && p->kind != TALLY_KIND_ADJUST))
        return TALLY_FLAGS_INVALID;
    if (p->kind == TALLY_KIND_PROGRAM)
        return validate_config(&p->config);
    return validate_fields(p);
}

/* ---- shared checks ------------------------------------------------------------------------- */

/* Overflow guards: an amount <= 2^53 added to or taken from an int64 balance. */
static bool credit_overflows(int64_t balance, uint64_t amount)
{
    return balance > INT64_MAX - (int64_t)amount;
}

static bool debit_overflows(int64_t balance, uint64_t amount)
{
    return balance < INT64_MIN + (int64_t)amount;
}

/* Load the posting's member: 0 with *result OK, or a business result. */
static int member_load(struct op *op, uint64_t member, struct acct *a, uint32_t *result)
{
    int rc = acct_load(op->e, op->p->program, member, a);
    *result = TALLY_OK;
    if (rc == TALLY_ENOT_FOUND) {
        *result = TALLY_ACCOUNT_NOT_FOUND;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (a->rec.status != TALLY_ACCOUNT_STATUS_OPEN)
        *result = TALLY_ACCOUNT_CLOSED;
    return 0;
}

static int sys_load(struct op *op, uint64_t sys, struct acct *a)
{
    int rc = acct_load(op->e, op->p->program, sys, a);
    return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
}

/* The posting a ref names, with its first entry (the one the ref acts on). */
struct ref {
    struct store_posting rec;
    struct tally_entry en;
    uint64_t member;
};

static int ref_resolve(struct op *op, uint32_t kinds, struct ref *r, uint32_t *result)
{
    const struct tally_posting *p = op->p;
    int rc = store_get(op->e, STORE_DB_POSTINGS, p->ref, 16, &r->rec, sizeof(r->rec));
    *result = TALLY_OK;
    if (rc == TALLY_ENOT_FOUND) {
        *result = TALLY_REF_NOT_FOUND;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (r->rec.code != TALLY_OK) {
        *result = TALLY_REF_FAILED;
        return 0;
    }
    if ((kinds & (1u << r->rec.kind)) == 0) {
        *result = TALLY_REF_WRONG_KIND;
        return 0;
    }
    if ((rc = entry_read(op->e, r->rec.seq, &r->en, NULL)) != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    r->member = r->en.debit < TALLY_SYS_FIRST ? r->en.debit : r->en.credit;
    if (r->en.program != p->program || r->member != p->account)
        *result = TALLY_REF_ACCOUNT_MISMATCH;
    return 0;
}

/* Resolve the ref, then load its member (which must be open). */
static int ref_and_member(struct op *op, uint32_t kinds, struct ref *r, struct acct *a,
                          uint32_t *result)
{
    int rc = ref_resolve(op, kinds, r, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    return member_load(op, op->p->account, a, result);
}

static struct tally_entry entry_for(const struct op *op, uint16_t kind, uint64_t debit,
                                    uint64_t credit, uint64_t amount)
{
    struct tally_entry en = {0};
    en.program = op->p->program;
    en.kind = kind;
    en.debit = debit;
    en.credit = credit;
    en.amount = amount;
    en.code = op->p->code;
    return en;
}

static uint32_t refs_size(uint32_t n)
{
    return n * (uint32_t)sizeof(struct tally_lot_ref);
}

/* Copy an entry's lineage out of the map (it may move once we write). */
static int lineage_copy(struct engine *e, uint64_t seq, struct tally_lot_ref *out, uint32_t *n)
{
    struct tally_entry en;
    const uint8_t *tail;
    int rc = entry_read(e, seq, &en, &tail);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    if (en.tail_size % sizeof(struct tally_lot_ref) != 0 ||
        en.tail_size > refs_size(TALLY_LINEAGE_MAX))
        return TALLY_ECORRUPT;
    *n = en.tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    memcpy(out, tail, en.tail_size);
    return 0;
}

/* ---- PROGRAM and OPEN ---------------------------------------------------------------------- */

static int do_program(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct store_program prog;
    int rc = program_load(e, p->program, &prog);
    if (rc == 0) {
        *result = TALLY_PROGRAM_EXISTS;
        return 0;
    }
    if (rc != TALLY_ENOT_FOUND)
        return rc;
    memset(&prog, 0, sizeof(prog));
    prog.config = p->config;
    prog.created_at = op->now;
    prog.created_seq = e->work.next_seq;
    prog.rule_version = 1;
    if ((rc = program_save(e, p->program, NULL, &prog)) != 0)
        return rc;
    struct tally_entry en = {0};
    en.program = p->program;
    en.kind = TALLY_KIND_PROGRAM;
    en.code = p->code;
    return entry_emit(op, &en, &p->config, sizeof(p->config), NULL, NULL);
}

static int do_open(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a;
    int rc = acct_load(e, p->program, p->account, &a);
    if (rc == 0) {
        *result = TALLY_ACCOUNT_EXISTS;
        return 0;
    }
    if (rc != TALLY_ENOT_FOUND)
        return rc;
    if ((rc = acct_create(e, p->program, p->account, &a)) != 0)
        return rc;
    struct store_program prog = op->prog;
    prog.members++;
    if ((rc = program_save(e, p->program, &op->prog, &prog)) != 0)
        return rc;
    op->prog = prog;
    struct tally_entry en = entry_for(op, TALLY_KIND_OPEN, p->account, p->account, 0);
    return entry_emit(op, &en, NULL, 0, &a, NULL);
}

/* ---- earning: ACCRUE, ACTIVATE, CANCEL ----------------------------------------------------- */

static int do_accrue(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a, src;
    int rc = member_load(op, p->account, &a, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = sys_load(op, TALLY_SYS_ISSUANCE, &src)) != 0)
        return rc;
    bool pending = (p->flags & TALLY_FLAG_PENDING) != 0;
    if (!lots_room(&a, 1)) {
        *result = TALLY_LOTS_LIMIT;
        return 0;
    }
    if (debit_overflows(src.rec.available, p->amount) ||
        credit_overflows(a.rec.available, p->amount) ||
        a.rec.pending > (uint64_t)INT64_MAX - p->amount) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    struct tally_lot_ref ref = {e->work.next_lot_id++, tiers_expiry_of(&op->prog.config, op->now),
                                op->now, p->amount};
    uint64_t activate_at = pending ? op->now + p->duration_ms : 0;
    int64_t available = a.rec.available;
    if (!pending)
        ref.amount = lots_land(&available, p->amount);
    if ((rc = lots_timers(e, &a, &ref, activate_at)) != 0)
        return rc;
    struct tally_entry en = entry_for(op, TALLY_KIND_ACCRUE, TALLY_SYS_ISSUANCE, p->account,
                                      p->amount);
    en.flags = pending ? TALLY_ENTRY_PENDING : 0;
    en.value = p->value;
    en.lot_id = ref.lot_id;
    en.time_a = ref.expires_at;
    en.time_b = activate_at;
    if ((rc = entry_emit(op, &en, &ref, sizeof(ref), &a, &src)) != 0)
        return rc;
    if ((rc = tiers_after_accrual(op, &a)) != 0)
        return rc;
    return !pending && ref.expires_at <= op->now ? lots_expire_due(op, &a) : 0;
}

/* The index of the lot an ACCRUE entry created, if it is still pending. */
static int32_t pending_lot(struct acct *a, const struct ref *r, uint32_t *result)
{
    int32_t i = lots_find(a, r->en.time_a, r->en.lot_id);
    if (i < 0 || member_lots(a->m)[i].activate_at == 0) {
        *result = TALLY_NOT_PENDING;
        return -1;
    }
    return i;
}

static int do_activate(struct op *op, uint32_t *result)
{
    struct ref r;
    struct acct a;
    int32_t i = -1;
    int rc = ref_and_member(op, 1u << TALLY_KIND_ACCRUE, &r, &a, result);
    if (rc == 0 && *result == TALLY_OK)
        i = pending_lot(&a, &r, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    return lots_activate(op, &a, (uint32_t)i, op->p);
}

static int reversal_put(struct engine *e, uint64_t seq, const void *old, size_t old_len,
                        const void *rec, size_t len)
{
    return store_put(e, STORE_DB_REVERSALS, &seq, sizeof(seq), old, old_len, rec, len);
}

static int do_cancel(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    struct ref r;
    struct acct a, sink;
    int32_t i = -1;
    int rc = ref_and_member(op, 1u << TALLY_KIND_ACCRUE, &r, &a, result);
    if (rc == 0 && *result == TALLY_OK)
        i = pending_lot(&a, &r, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = sys_load(op, TALLY_SYS_ISSUANCE, &sink)) != 0)
        return rc;
    struct tally_lot lot = member_lots(a.m)[i];
    struct store_reversal rev = {.amount = r.en.amount, .value = r.en.value};
    if ((rc = reversal_put(e, r.en.seq, NULL, 0, &rev, sizeof(rev))) != 0)
        return rc;
    struct tally_entry en = entry_for(op, TALLY_KIND_CANCEL, a.rec.member, TALLY_SYS_ISSUANCE,
                                      lot.remaining);
    en.value = r.en.value;
    en.ref_seq = r.en.seq;
    en.lot_id = lot.lot_id;
    struct tally_lot_ref ref = {lot.lot_id, lot.expires_at, lot.earned_at, lot.remaining};
    return entry_emit(op, &en, &ref, sizeof(ref), &a, &sink);
}

/* ---- spending: REDEEM, HOLD, TRANSFER, negative ADJUST ------------------------------------ */

/* Plan taking `amount` from the member: INSUFFICIENT_POINTS unless the program allows a debt
 * (allow_debt) and the member has no active holds; LOTS_LIMIT. */
static int plan_spend(struct op *op, struct acct *a, uint64_t amount, int32_t first_lot,
                      bool allow_debt, struct lot_plan *plan, uint32_t *result)
{
    bool debt_ok = allow_debt && (op->prog.config.flags & TALLY_PROGRAM_ALLOW_NEGATIVE) &&
                   a->rec.holds_active == 0;
    if (a->rec.available < (int64_t)amount && !debt_ok) {
        *result = TALLY_INSUFFICIENT_POINTS;
        return 0;
    }
    if (debit_overflows(a->rec.available, amount)) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    lots_plan_take(op->e, a, amount, first_lot, plan, result);
    if (*result != TALLY_OK)
        return 0;
    /* Lots hold exactly the available points: a shortfall while available covers the amount
     * means the stored state is inconsistent. */
    int64_t have = a->rec.available > 0 ? a->rec.available : 0;
    uint64_t expect = (uint64_t)have < amount ? (uint64_t)have : amount;
    return plan->total == expect ? 0 : TALLY_ECORRUPT;
}

static int do_redeem(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a, sink;
    struct lot_plan plan;
    int rc = member_load(op, p->account, &a, result);
    if (rc == 0 && *result == TALLY_OK)
        rc = plan_spend(op, &a, p->amount, -1, false, &plan, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = sys_load(op, TALLY_SYS_REDEMPTION, &sink)) != 0)
        return rc;
    if (credit_overflows(sink.rec.available, p->amount)) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    lots_plan_refs(e, &a, &plan, e->refs);
    struct tally_entry en = entry_for(op, TALLY_KIND_REDEEM, a.rec.member, TALLY_SYS_REDEMPTION,
                                      p->amount);
    return entry_emit(op, &en, e->refs, refs_size(plan.count), &a, &sink);
}

static int do_hold(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a;
    struct lot_plan plan;
    int rc = member_load(op, p->account, &a, result);
    if (rc == 0 && *result == TALLY_OK)
        rc = plan_spend(op, &a, p->amount, -1, false, &plan, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    uint64_t seq = e->work.next_seq;
    uint64_t timeout = op->now + (p->duration_ms ? p->duration_ms : op->prog.config.hold_timeout_ms);
    struct store_hold *h = (struct store_hold *)e->buf2;
    memset(h, 0, sizeof(*h));
    h->program = p->program;
    h->status = TALLY_HOLD_ACTIVE;
    h->member = a.rec.member;
    h->amount = p->amount;
    h->timeout_at = timeout;
    memcpy(h->posting_id, p->id, 16);
    h->lot_count = plan.count;
    struct tally_lot_ref *refs = (struct tally_lot_ref *)(h + 1);
    lots_plan_refs(e, &a, &plan, refs);
    rc = store_put(e, STORE_DB_HOLDS, &seq, sizeof(seq), NULL, 0, h,
                   sizeof(*h) + refs_size(plan.count));
    if (rc == 0)
        rc = timers_set(e, timeout, STORE_TIMER_HOLD_TIMEOUT, p->program, a.rec.member, seq, 0);
    if (rc != 0)
        return rc;
    struct tally_entry en = entry_for(op, TALLY_KIND_HOLD, a.rec.member, a.rec.member, p->amount);
    en.time_a = timeout;
    return entry_emit(op, &en, refs, refs_size(plan.count), &a, NULL);
}

static int do_transfer(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a, b;
    struct lot_plan plan;
    int rc = member_load(op, p->account, &a, result);
    if (rc == 0 && *result == TALLY_OK)
        rc = member_load(op, p->account2, &b, result);
    if (rc == 0 && *result == TALLY_OK && credit_overflows(b.rec.available, p->amount))
        *result = TALLY_OVERFLOW;
    if (rc == 0 && *result == TALLY_OK)
        rc = plan_spend(op, &a, p->amount, -1, false, &plan, result);
    if (rc == 0 && *result == TALLY_OK && !lots_room(&b, plan.count))
        *result = TALLY_LOTS_LIMIT;
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    struct tally_lot_ref *src = e->refs, *dst = e->refs + plan.count;
    lots_plan_refs(e, &a, &plan, src);
    uint64_t first_lot = e->work.next_lot_id;
    e->work.next_lot_id += plan.count;
    int64_t available = b.rec.available;
    for (uint32_t i = 0; i < plan.count; i++) {
        dst[i] = src[i];
        dst[i].lot_id = first_lot + i;
        dst[i].amount = lots_land(&available, src[i].amount);
        if ((rc = lots_timers(e, &b, &dst[i], 0)) != 0)
            return rc;
    }
    struct tally_entry en = entry_for(op, TALLY_KIND_TRANSFER, a.rec.member, b.rec.member,
                                      p->amount);
    en.lot_id = first_lot;
    return entry_emit(op, &en, src, 2 * refs_size(plan.count), &a, &b);
}

static int do_adjust(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    bool negative = (p->flags & TALLY_FLAG_NEGATIVE) != 0;
    struct acct a, adj;
    struct lot_plan plan = {0};
    int rc = member_load(op, p->account, &a, result);
    if (rc == 0 && *result == TALLY_OK && negative)
        rc = plan_spend(op, &a, p->amount, -1, true, &plan, result);
    if (rc == 0 && *result == TALLY_OK && !negative && credit_overflows(a.rec.available, p->amount))
        *result = TALLY_OVERFLOW;
    if (rc == 0 && *result == TALLY_OK && !negative && !lots_room(&a, 1))
        *result = TALLY_LOTS_LIMIT;
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = sys_load(op, TALLY_SYS_ADJUSTMENT, &adj)) != 0)
        return rc;
    if (negative ? credit_overflows(adj.rec.available, p->amount)
                 : debit_overflows(adj.rec.available, p->amount)) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    struct tally_entry en;
    if (negative) {
        lots_plan_refs(e, &a, &plan, e->refs);
        en = entry_for(op, TALLY_KIND_ADJUST, a.rec.member, TALLY_SYS_ADJUSTMENT, p->amount);
        en.flags = TALLY_ENTRY_NEGATIVE;
        return entry_emit(op, &en, e->refs, refs_size(plan.count), &a, &adj);
    }
    struct tally_lot_ref ref = {e->work.next_lot_id++, tiers_expiry_of(&op->prog.config, op->now),
                                op->now, 0};
    int64_t available = a.rec.available;
    ref.amount = lots_land(&available, p->amount);
    if ((rc = lots_timers(e, &a, &ref, 0)) != 0)
        return rc;
    en = entry_for(op, TALLY_KIND_ADJUST, TALLY_SYS_ADJUSTMENT, a.rec.member, p->amount);
    en.lot_id = ref.lot_id;
    en.time_a = ref.expires_at;
    if ((rc = entry_emit(op, &en, &ref, sizeof(ref), &a, &adj)) != 0)
        return rc;
    return ref.expires_at <= op->now ? lots_expire_due(op, &a) : 0;
}

/* ---- holds: CAPTURE, RELEASE --------------------------------------------------------------- */

/* Load a hold record into e->buf2. */
static int hold_load(struct engine *e, uint64_t seq, struct store_hold **h)
{
    MDB_val v;
    int rc = store_get_raw(e, STORE_DB_HOLDS, &seq, sizeof(seq), &v);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    struct store_hold *out = (struct store_hold *)e->buf2;
    if (v.mv_size < sizeof(*out) || v.mv_size > ENGINE_BUF_SIZE)
        return TALLY_ECORRUPT;
    memcpy(out, v.mv_data, v.mv_size);
    if (v.mv_size != sizeof(*out) + refs_size(out->lot_count))
        return TALLY_ECORRUPT;
    *h = out;
    return 0;
}

/* Save a hold whose fixed part changed (its refs never change). The old value differs from the
 * new one only in the fixed part, so it is rebuilt in place for the state sum. */
static int hold_save(struct engine *e, uint64_t seq, const struct store_hold *old_fixed,
                     struct store_hold *h)
{
    size_t size = sizeof(*h) + refs_size(h->lot_count);
    struct store_hold now = *h;
    *h = *old_fixed;
    store_sum_add(e, STORE_DB_HOLDS, &seq, sizeof(seq), h, size, true);
    *h = now;
    MDB_val k = {.mv_size = sizeof(seq), .mv_data = &seq};
    MDB_val v = {.mv_size = size, .mv_data = (void *)h};
    int rc = store_translate(mdb_put(e->txn, e->dbi[STORE_DB_HOLDS], &k, &v, 0));
    if (rc != 0)
        return rc;
    store_sum_add(e, STORE_DB_HOLDS, &seq, sizeof(seq), h, size, false);
    return 0;
}

int postings_release_hold(struct op *op, uint64_t hold_seq, struct acct *a, bool remainder)
{
    struct engine *e = op->e;
    struct store_hold *h;
    int rc = hold_load(e, hold_seq, &h);
    if (rc != 0)
        return rc;
    if (!remainder && h->status != TALLY_HOLD_ACTIVE)
        return 0; /* a timeout that lost the race against a capture or release */
    struct store_hold before = *h;
    const struct tally_lot_ref *held = (const struct tally_lot_ref *)(h + 1);
    struct tally_lot_ref *out = e->refs;
    uint32_t n = 0;
    uint64_t skip = h->captured, total = 0;
    bool due = false;
    for (uint32_t i = 0; i < h->lot_count; i++) {
        uint64_t s = held[i].amount < skip ? held[i].amount : skip;
        skip -= s;
        if (held[i].amount == s)
            continue;
        out[n] = held[i];
        out[n].amount = held[i].amount - s;
        due |= out[n].expires_at <= op->now;
        total += out[n++].amount;
    }
    if (!remainder) {
        h->status = op->p == NULL ? TALLY_HOLD_TIMED_OUT : TALLY_HOLD_RELEASED;
        h->resolved_seq = e->work.next_seq;
        if ((rc = hold_save(e, hold_seq, &before, h)) != 0)
            return rc;
    }
    struct tally_entry en = {0};
    en.program = h->program;
    en.kind = TALLY_KIND_RELEASE;
    en.flags = remainder ? TALLY_ENTRY_AUTO | TALLY_ENTRY_REMAINDER
               : op->p == NULL ? TALLY_ENTRY_AUTO
                               : 0;
    en.debit = a->rec.member;
    en.credit = a->rec.member;
    en.amount = total;
    en.ref_seq = hold_seq;
    en.code = op->p != NULL ? op->p->code : 0;
    if ((rc = entry_emit(op, &en, out, refs_size(n), a, NULL)) != 0)
        return rc;
    return due ? lots_expire_due(op, a) : 0;
}

static int hold_for(struct op *op, struct ref *r, struct acct *a, struct store_hold **h,
                    uint32_t *result)
{
    int rc = ref_and_member(op, 1u << TALLY_KIND_HOLD, r, a, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = hold_load(op->e, r->en.seq, h)) != 0)
        return rc;
    if ((*h)->status != TALLY_HOLD_ACTIVE)
        *result = TALLY_HOLD_NOT_ACTIVE;
    return 0;
}

static int do_capture(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    struct ref r;
    struct acct a, sink;
    struct store_hold *h;
    int rc = hold_for(op, &r, &a, &h, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    uint64_t c = op->p->amount ? op->p->amount : h->amount;
    if (c > h->amount) {
        *result = TALLY_EXCEEDS_HOLD;
        return 0;
    }
    if ((rc = sys_load(op, TALLY_SYS_REDEMPTION, &sink)) != 0)
        return rc;
    if (credit_overflows(sink.rec.available, c)) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    /* The capture takes the held points in the order the hold reserved them. */
    uint32_t n = 0;
    const struct tally_lot_ref *held = (const struct tally_lot_ref *)(h + 1);
    for (uint64_t left = c; n < h->lot_count && left > 0; n++) {
        e->refs[n] = held[n];
        e->refs[n].amount = held[n].amount < left ? held[n].amount : left;
        left -= e->refs[n].amount;
    }
    struct store_hold before = *h;
    h->status = TALLY_HOLD_CAPTURED;
    h->captured = c;
    h->resolved_seq = e->work.next_seq;
    if ((rc = hold_save(e, r.en.seq, &before, h)) != 0)
        return rc;
    bool rest = c < h->amount;
    struct tally_entry en = entry_for(op, TALLY_KIND_CAPTURE, a.rec.member, TALLY_SYS_REDEMPTION, c);
    en.ref_seq = r.en.seq;
    if ((rc = entry_emit(op, &en, e->refs, refs_size(n), &a, &sink)) != 0)
        return rc;
    return rest ? postings_release_hold(op, r.en.seq, &a, true) : 0;
}

static int do_release(struct op *op, uint32_t *result)
{
    struct ref r;
    struct acct a;
    struct store_hold *h;
    int rc = hold_for(op, &r, &a, &h, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    return postings_release_hold(op, r.en.seq, &a, false);
}

/* ---- CLOSE --------------------------------------------------------------------------------- */

static int do_close(struct op *op, uint32_t *result)
{
    struct engine *e = op->e;
    const struct tally_posting *p = op->p;
    struct acct a, sink;
    int rc = member_load(op, p->account, &a, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    if (a.rec.holds_active > 0) {
        *result = TALLY_ACCOUNT_HAS_HOLDS;
        return 0;
    }
    if (a.rec.available < 0) {
        *result = TALLY_INSUFFICIENT_POINTS;
        return 0;
    }
    if ((rc = sys_load(op, TALLY_SYS_BREAKAGE, &sink)) != 0)
        return rc;
    const struct tally_lot *lots = member_lots(a.m);
    uint32_t n = member_lot_count(a.m);
    uint64_t total = 0, pending = 0;
    for (uint32_t i = 0; i < n; i++) {
        e->refs[i] = (struct tally_lot_ref){lots[i].lot_id, lots[i].expires_at, lots[i].earned_at,
                                            lots[i].remaining};
        total += lots[i].remaining;
        if (lots[i].activate_at != 0)
            pending += lots[i].remaining;
    }
    if (total != (uint64_t)a.rec.available + a.rec.pending)
        return TALLY_ECORRUPT;
    struct tally_entry en = entry_for(op, TALLY_KIND_CLOSE, a.rec.member, TALLY_SYS_BREAKAGE, total);
    en.value = pending;
    return entry_emit(op, &en, e->refs, refs_size(n), &a, &sink);
}

/* ---- REVERSE ------------------------------------------------------------------------------- */

/* Load the reversal record of entry `seq` into e->buf2 (zeros if none). */
static int reversal_load(struct engine *e, uint64_t seq, uint32_t lots, struct store_reversal **r,
                         bool *stored)
{
    struct store_reversal *out = (struct store_reversal *)e->buf2;
    MDB_val v;
    int rc = store_get_raw(e, STORE_DB_REVERSALS, &seq, sizeof(seq), &v);
    *stored = rc == 0;
    if (rc == TALLY_ENOT_FOUND) {
        memset(out, 0, sizeof(*out) + lots * sizeof(uint64_t));
        out->lot_count = lots;
    } else if (rc != 0) {
        return rc;
    } else {
        if (v.mv_size < sizeof(*out) || v.mv_size > ENGINE_BUF_SIZE / 2)
            return TALLY_ECORRUPT;
        memcpy(out, v.mv_data, v.mv_size);
        if (v.mv_size != sizeof(*out) + out->lot_count * sizeof(uint64_t) ||
            (lots != 0 && out->lot_count != lots))
            return TALLY_ECORRUPT;
    }
    *r = out;
    return 0;
}

static int reversal_save(struct engine *e, uint64_t seq, struct store_reversal *r, bool stored,
                         const struct store_reversal *old_fixed, const uint64_t *old_lots)
{
    size_t size = sizeof(*r) + r->lot_count * sizeof(uint64_t);
    if (stored) {
        /* Rebuild the old value next to the new one for the state sum. */
        uint8_t *old = (uint8_t *)e->buf2 + ENGINE_BUF_SIZE / 2;
        memcpy(old, old_fixed, sizeof(*r));
        if (r->lot_count > 0)
            memcpy(old + sizeof(*r), old_lots, r->lot_count * sizeof(uint64_t));
        return reversal_put(e, seq, old, size, r, size);
    }
    return reversal_put(e, seq, NULL, 0, r, size);
}

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
    return c == 0 ? 0 : (uint64_t)((unsigned __int128)a * b / c);
}

static int reverse_accrual(struct op *op, struct ref *r, struct acct *a, uint64_t amount,
                           struct store_reversal *rev, bool stored, uint32_t *result)
{
    struct engine *e = op->e;
    int32_t first = lots_find(a, r->en.time_a, r->en.lot_id);
    if (first >= 0 && member_lots(a->m)[first].activate_at != 0) {
        *result = TALLY_REF_PENDING;
        return 0;
    }
    struct lot_plan plan;
    struct acct sink;
    int rc;
    if ((rc = plan_spend(op, a, amount, first, true, &plan, result)) != 0 || *result != TALLY_OK)
        return rc;
    if ((rc = sys_load(op, TALLY_SYS_ISSUANCE, &sink)) != 0)
        return rc;
    lots_plan_refs(e, a, &plan, e->refs);
    struct store_reversal old = *rev;
    uint64_t value = mul_div(r->en.value, rev->amount + amount, r->en.amount) -
                     mul_div(r->en.value, rev->amount, r->en.amount);
    rev->amount += amount;
    rev->value += value;
    if ((rc = reversal_save(e, r->en.seq, rev, stored, &old, NULL)) != 0)
        return rc;
    struct tally_entry en = entry_for(op, TALLY_KIND_REVERSE, a->rec.member, TALLY_SYS_ISSUANCE,
                                      amount);
    en.value = value;
    en.ref_seq = r->en.seq;
    return entry_emit(op, &en, e->refs, refs_size(plan.count), a, &sink);
}

/* Split `amount` over the lots of a redemption in proportion to what each can still take back. */
static void restore_shares(const struct tally_lot_ref *lin, const uint64_t *restored, uint32_t n,
                           uint64_t amount, uint64_t *share)
{
    uint64_t room_total = 0, given = 0;
    for (uint32_t i = 0; i < n; i++)
        room_total += lin[i].amount - restored[i];
    for (uint32_t i = 0; i < n; i++) {
        share[i] = mul_div(lin[i].amount - restored[i], amount, room_total);
        given += share[i];
    }
    for (uint32_t i = 0; i < n && given < amount; i++) {
        if (lin[i].amount - restored[i] > share[i]) {
            share[i]++;
            given++;
        }
    }
}

static int reverse_redemption(struct op *op, struct ref *r, struct acct *a, uint64_t amount,
                              struct store_reversal *rev, bool stored, uint32_t *result)
{
    struct engine *e = op->e;
    struct acct src;
    int rc = sys_load(op, TALLY_SYS_REDEMPTION, &src);
    if (rc != 0)
        return rc;
    if (credit_overflows(a->rec.available, amount)) {
        *result = TALLY_OVERFLOW;
        return 0;
    }
    struct tally_lot_ref *lin = e->refs + TALLY_LINEAGE_MAX, *out = e->refs;
    uint32_t n;
    if ((rc = lineage_copy(e, r->en.seq, lin, &n)) != 0)
        return rc;
    if (!lots_room(a, n)) {
        *result = TALLY_LOTS_LIMIT;
        return 0;
    }
    if (n != rev->lot_count)
        return TALLY_ECORRUPT;
    uint64_t *restored = (uint64_t *)(rev + 1), *share = e->u64s;
    struct store_reversal old = *rev;
    uint64_t *old_lots = (uint64_t *)(e->buf2 + ENGINE_BUF_SIZE / 4);
    memcpy(old_lots, restored, n * sizeof(uint64_t));
    restore_shares(lin, restored, n, amount, share);
    uint32_t m = 0;
    bool due = false;
    int64_t available = a->rec.available;
    for (uint32_t i = 0; i < n; i++) {
        restored[i] += share[i];
        uint64_t landed = lots_land(&available, share[i]);
        if (landed == 0)
            continue;
        out[m] = lin[i];
        out[m].amount = landed;
        if (lots_find(a, out[m].expires_at, out[m].lot_id) < 0 &&
            (rc = lots_timers(e, a, &out[m], 0)) != 0)
            return rc;
        due |= out[m++].expires_at <= op->now;
    }
    rev->amount += amount;
    if ((rc = reversal_save(e, r->en.seq, rev, stored, &old, old_lots)) != 0)
        return rc;
    struct tally_entry en = entry_for(op, TALLY_KIND_REVERSE, TALLY_SYS_REDEMPTION, a->rec.member,
                                      amount);
    en.ref_seq = r->en.seq;
    if ((rc = entry_emit(op, &en, out, refs_size(m), a, &src)) != 0)
        return rc;
    return due ? lots_expire_due(op, a) : 0;
}

static int do_reverse(struct op *op, uint32_t *result)
{
    struct ref r;
    struct acct a;
    uint32_t kinds = 1u << TALLY_KIND_ACCRUE | 1u << TALLY_KIND_REDEEM | 1u << TALLY_KIND_CAPTURE;
    int rc = ref_and_member(op, kinds, &r, &a, result);
    if (rc != 0 || *result != TALLY_OK)
        return rc;
    bool accrual = r.rec.kind == TALLY_KIND_ACCRUE;
    uint32_t lots = accrual ? 0 : r.en.tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    struct store_reversal *rev;
    bool stored;
    if ((rc = reversal_load(op->e, r.en.seq, lots, &rev, &stored)) != 0)
        return rc;
    uint64_t left = r.en.amount - rev->amount;
    uint64_t amount = op->p->amount ? op->p->amount : left;
    if (amount == 0 || amount > left) {
        *result = TALLY_EXCEEDS_ORIGINAL;
        return 0;
    }
    if (accrual)
        return reverse_accrual(op, &r, &a, amount, rev, stored, result);
    return reverse_redemption(op, &r, &a, amount, rev, stored, result);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

typedef int (*kind_fn)(struct op *op, uint32_t *result);

static const kind_fn kinds[TALLY_KIND_LIMIT] = {
    [TALLY_KIND_PROGRAM] = do_program,   [TALLY_KIND_OPEN] = do_open,
    [TALLY_KIND_ACCRUE] = do_accrue,     [TALLY_KIND_ACTIVATE] = do_activate,
    [TALLY_KIND_CANCEL] = do_cancel,     [TALLY_KIND_REDEEM] = do_redeem,
    [TALLY_KIND_HOLD] = do_hold,         [TALLY_KIND_CAPTURE] = do_capture,
    [TALLY_KIND_RELEASE] = do_release,   [TALLY_KIND_REVERSE] = do_reverse,
    [TALLY_KIND_TRANSFER] = do_transfer, [TALLY_KIND_ADJUST] = do_adjust,
    [TALLY_KIND_CLOSE] = do_close,
};

int postings_execute(struct engine *e, const struct tally_posting *p, uint64_t now,
                     uint32_t *result, uint64_t *first_seq, uint32_t *entry_count)
{
    struct op op = {.e = e, .p = p, .now = now};
    *result = TALLY_OK;
    if (p->kind != TALLY_KIND_PROGRAM) {
        int rc = program_load(e, p->program, &op.prog);
        if (rc == TALLY_ENOT_FOUND)
            *result = TALLY_PROGRAM_NOT_FOUND;
        else if (rc != 0)
            return rc;
    }
    int rc = *result == TALLY_OK ? kinds[p->kind](&op, result) : 0;
    *first_seq = op.first_seq;
    *entry_count = op.entry_count;
    return rc;
}
