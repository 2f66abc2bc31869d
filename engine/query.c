/* query.c: read-only queries, each in its own read transaction (one consistent snapshot).
 *
 * A query borrows e->txn for the store helpers; the engine is single-threaded, and apply never
 * runs while a query does, so the write transaction slot is free. With defer_commit and a group
 * open, the query reads through the group (it holds applied batches the file does not yet) and
 * leaves it open.
 */
#include "internal.h"

#include <string.h>

static int read_begin(struct engine *e)
{
    int rc = engine_group_wait(e); /* a group being committed holds batches the file lacks */
    if (rc != 0)
        return rc;
    if (e->group != NULL) {
        e->txn = e->group;
        return 0;
    }
    MDB_txn *txn;
    rc = store_translate(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn));
    if (rc == 0)
        e->txn = txn;
    return rc;
}

static int read_end(struct engine *e, int rc)
{
    if (e->txn != e->group)
        mdb_txn_abort(e->txn);
    e->txn = NULL;
    return rc;
}

static int account_view(struct engine *e, uint32_t program, uint64_t member,
                        struct tally_account *out);

int engine_program(struct engine *e, uint32_t program, struct tally_program_config *config,
                   struct tally_program_totals *totals)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct store_program prog;
    if ((rc = program_load(e, program, &prog)) != 0)
        return read_end(e, rc);
    if (config != NULL)
        *config = prog.config;
    if (totals != NULL) {
        struct {
            struct tally_account rec;
        } s[TALLY_SYS_COUNT];
        for (uint32_t i = 0; i < TALLY_SYS_COUNT && rc == 0; i++)
            rc = account_view(e, program, UINT64_MAX - i, &s[i].rec);
        if (rc != 0)
            return read_end(e, rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc);
        memset(totals, 0, sizeof(*totals));
        totals->program = program;
        totals->tier_count = prog.config.tier_count;
        totals->members = prog.members;
        totals->issued = (uint64_t)-s[0].rec.available;
        totals->redeemed = (uint64_t)s[1].rec.available;
        totals->expired = (uint64_t)s[2].rec.available;
        totals->adjusted = -s[3].rec.available;
        totals->outstanding = -(s[0].rec.available + s[1].rec.available + s[2].rec.available +
                                s[3].rec.available);
    }
    return read_end(e, 0);
}

int engine_programs(struct engine *e, uint32_t after, uint32_t *ids, uint32_t max,
                    uint32_t *count)
{
    *count = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    MDB_cursor *c;
    if ((rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_PROGRAMS], &c))) != 0)
        return read_end(e, rc);
    uint8_t k0[4];
    store_be32(k0, after + 1);
    MDB_val k = {.mv_size = 4, .mv_data = k0}, v;
    rc = after == UINT32_MAX ? TALLY_ENOT_FOUND
                             : store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    while (rc == 0 && *count < max && k.mv_size == 4) {
        ids[(*count)++] = store_get_be32(k.mv_data);
        rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_NEXT));
    }
    mdb_cursor_close(c);
    return read_end(e, rc == TALLY_ENOT_FOUND ? 0 : rc);
}

/* A member's image: the cached one if cached (it may be newer than LMDB), else the stored one
 * (valid until the read transaction ends). */
static int member_view(struct engine *e, uint32_t program, uint64_t member, const uint8_t **image,
                       uint32_t *size)
{
    struct member *m = members_find(&e->cache, program, member);
    if (m != NULL) {
        *image = m->blob;
        *size = m->size;
        return 0;
    }
    uint8_t k[STORE_MEMBER_KEY];
    store_member_key(k, program, member);
    MDB_val v;
    int rc = store_get_raw(e, STORE_DB_MEMBERS, k, sizeof(k), &v);
    if (rc != 0)
        return rc;
    if (v.mv_size < sizeof(struct tally_account) || v.mv_size > STORE_MEMBER_MAX)
        return TALLY_ECORRUPT;
    *image = v.mv_data;
    *size = (uint32_t)v.mv_size;
    return 0;
}

static int account_view(struct engine *e, uint32_t program, uint64_t member,
                        struct tally_account *out)
{
    const uint8_t *image;
    uint32_t size;
    int rc = member_view(e, program, member, &image, &size);
    if (rc == 0)
        memcpy(out, image, sizeof(*out));
    return rc;
}

int engine_account(struct engine *e, uint32_t program, uint64_t member,
                   struct tally_account *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    return read_end(e, account_view(e, program, member, out));
}

int engine_account_cached(struct engine *e, uint32_t program, uint64_t member,
                          struct tally_account *out)
{
    if (e->failed != 0)
        return e->failed;
    const struct member *m = members_find(&e->cache, program, member);
    if (m == NULL)
        return 1;
    memcpy(out, m->blob, sizeof(*out));
    return 0;
}

/* What entry `en` did to member m's buckets. */
static void member_delta(const struct tally_entry *en, uint64_t m, int64_t *da, int64_t *dp,
                         int64_t *dh)
{
    int64_t amt = (int64_t)en->amount;
    *da = *dp = *dh = 0;
    switch (en->kind) {
    case TALLY_KIND_ACCRUE:
        *(en->flags & TALLY_ENTRY_PENDING ? dp : da) = amt;
        break;
    case TALLY_KIND_ACTIVATE:
        *dp = -amt;
        *da = amt;
        break;
    case TALLY_KIND_CANCEL:
        *dp = -amt;
        break;
    case TALLY_KIND_HOLD:
        *da = -amt;
        *dh = amt;
        break;
    case TALLY_KIND_CAPTURE:
        *dh = -amt;
        break;
    case TALLY_KIND_RELEASE:
        *dh = -amt;
        *da = amt;
        break;
    case TALLY_KIND_CLOSE:
        *da = -(amt - (int64_t)en->value);
        *dp = -(int64_t)en->value;
        break;
    case TALLY_KIND_REDEEM:
    case TALLY_KIND_REVERSE:
    case TALLY_KIND_TRANSFER:
    case TALLY_KIND_ADJUST:
    case TALLY_KIND_EXPIRE:
        *da = en->debit == m ? -amt : amt;
        break;
    default:
        break;
    }
}

static uint64_t prev_for(const struct tally_entry *en, uint64_t m)
{
    return en->debit == m ? en->debit_prev : en->credit_prev;
}

int engine_balance_at(struct engine *e, uint32_t program, uint64_t member, uint64_t at,
                      struct tally_balance *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct tally_account a;
    if ((rc = account_view(e, program, member, &a)) != 0)
        return read_end(e, rc);
    /* Walk the member's entries back from the newest, undoing each one stamped after `at`. */
    int64_t avail = a.available, pend = (int64_t)a.pending, held = (int64_t)a.held;
    uint64_t seq = a.last_seq;
    while (seq != 0) {
        struct tally_entry en;
        if ((rc = entry_read(e, seq, &en, NULL)) != 0)
            return read_end(e, rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc);
        if (en.timestamp <= at)
            break;
        int64_t da, dp, dh;
        member_delta(&en, member, &da, &dp, &dh);
        avail -= da;
        pend -= dp;
        held -= dh;
        seq = en.kind == TALLY_KIND_OPEN ? 0 : prev_for(&en, member);
    }
    if (seq == 0)
        return read_end(e, TALLY_ENOT_FOUND); /* not yet opened at `at` */
    *out = (struct tally_balance){.as_of = at, .seq = seq, .available = avail,
                                  .pending = (uint64_t)pend, .held = (uint64_t)held};
    return read_end(e, 0);
}

int engine_history(struct engine *e, uint32_t program, uint64_t member, uint64_t before_seq,
                   struct tally_entry *out, uint32_t max, uint32_t *count)
{
    *count = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct tally_account a;
    if ((rc = account_view(e, program, member, &a)) != 0)
        return read_end(e, rc);
    uint64_t seq = a.last_seq;
    if (before_seq != 0) {
        /* Continue from the entry the last page ended with: one of this member's. */
        struct tally_entry en;
        if ((rc = entry_read(e, before_seq, &en, NULL)) != 0)
            return read_end(e, rc);
        if (en.program != program || (en.debit != member && en.credit != member))
            return read_end(e, TALLY_ECONFIG);
        seq = prev_for(&en, member);
    }
    while (seq != 0 && *count < max) {
        struct tally_entry *en = &out[*count];
        if ((rc = entry_read(e, seq, en, NULL)) != 0)
            return read_end(e, rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc);
        (*count)++;
        seq = en->kind == TALLY_KIND_OPEN ? 0 : prev_for(en, member);
    }
    return read_end(e, 0);
}

int engine_lots(struct engine *e, uint32_t program, uint64_t member, struct tally_lot *out,
                uint32_t max, uint32_t *count)
{
    *count = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    const uint8_t *image;
    uint32_t size;
    if ((rc = member_view(e, program, member, &image, &size)) != 0)
        return read_end(e, rc);
    uint32_t n = (uint32_t)((size - sizeof(struct tally_account)) / sizeof(struct tally_lot));
    *count = n < max ? n : max;
    memcpy(out, image + sizeof(struct tally_account), *count * sizeof(struct tally_lot));
    return read_end(e, 0);
}

int engine_entry(struct engine *e, uint64_t seq, struct tally_entry *out,
                 struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    const uint8_t *t;
    if ((rc = entry_read(e, seq, out, &t)) != 0)
        return read_end(e, rc);
    uint32_t n = out->tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    if (out->kind == TALLY_KIND_PROGRAM)
        n = 0;
    if (tail_count != NULL)
        *tail_count = n;
    if (tail != NULL)
        memcpy(tail, t, (n < tail_max ? n : tail_max) * sizeof(struct tally_lot_ref));
    return read_end(e, 0);
}

int engine_posting(struct engine *e, const uint8_t id[16], struct engine_posting_info *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct store_posting rec;
    rc = store_get(e, STORE_DB_POSTINGS, id, 16, &rec, sizeof(rec));
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        out->code = rec.code;
        out->kind = rec.kind;
        out->seq = rec.seq;
        out->entry_count = rec.entry_count;
        out->timestamp = rec.timestamp;
    }
    return read_end(e, rc);
}

int engine_hold(struct engine *e, const uint8_t id[16], struct engine_hold_info *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct store_posting rec;
    rc = store_get(e, STORE_DB_POSTINGS, id, 16, &rec, sizeof(rec));
    if (rc == 0 && (rec.kind != TALLY_KIND_HOLD || rec.code != TALLY_OK))
        rc = TALLY_ENOT_FOUND;
    MDB_val v;
    if (rc == 0)
        rc = store_get_raw(e, STORE_DB_HOLDS, &rec.seq, sizeof(rec.seq), &v);
    if (rc == 0 && v.mv_size < sizeof(struct store_hold))
        rc = TALLY_ECORRUPT;
    if (rc == 0) {
        struct store_hold h;
        memcpy(&h, v.mv_data, sizeof(h));
        *out = (struct engine_hold_info){.seq = rec.seq, .program = h.program, .status = h.status,
                                         .member = h.member, .amount = h.amount,
                                         .captured = h.captured, .timeout_at = h.timeout_at,
                                         .resolved_seq = h.resolved_seq};
    }
    return read_end(e, rc);
}

int engine_session(struct engine *e, const uint8_t client_id[16], uint64_t *last_request)
{
    *last_request = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    MDB_val v;
    rc = store_get_raw(e, STORE_DB_SESSIONS, client_id, 16, &v);
    if (rc == 0 && v.mv_size < sizeof(struct store_session))
        rc = TALLY_ECORRUPT;
    if (rc == 0) {
        struct store_session s;
        memcpy(&s, v.mv_data, sizeof(s));
        *last_request = s.last_request;
    }
    return read_end(e, rc);
}

uint32_t engine_sessions(struct engine *e)
{
    return e->sessions; /* kept by every batch (engine.c): no wait for a commit in flight */
}
