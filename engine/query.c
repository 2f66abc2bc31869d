/* query.c: read-only queries, each in its own read transaction (one consistent snapshot).
 *
 * A query borrows e->txn for the store helpers; the engine is single-threaded, and apply never
 * runs while a query does, so the write transaction slot is free.
 */
#include "internal.h"

#include <string.h>

static int read_begin(struct engine *e)
{
    MDB_txn *txn;
    int rc = store_translate(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn));
    if (rc == 0)
        e->txn = txn;
    return rc;
}

static int read_end(struct engine *e, int rc)
{
    mdb_txn_abort(e->txn);
    e->txn = NULL;
    return rc;
}

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
        struct acct s[TALLY_SYS_COUNT];
        for (uint32_t i = 0; i < TALLY_SYS_COUNT && rc == 0; i++)
            rc = acct_load(e, program, UINT64_MAX - i, &s[i]);
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

int engine_account(struct engine *e, uint32_t program, uint64_t member,
                   struct tally_account *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct acct a;
    rc = acct_load(e, program, member, &a);
    if (rc == 0)
        *out = a.rec;
    return read_end(e, rc);
}

int engine_balance_at(struct engine *e, uint32_t program, uint64_t member, uint64_t at,
                      struct tally_balance *out)
{
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    MDB_cursor *c;
    if ((rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_MEMBERS], &c))) != 0)
        return read_end(e, rc);
    /* The first row after `at`, then one step back: the newest row at or before `at`. */
    uint8_t key[STORE_HISTORY_KEY];
    store_history_key(key, program, member, at == UINT64_MAX ? at : at + 1, 0);
    MDB_val k = {.mv_size = sizeof(key), .mv_data = key}, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    if (rc == 0 || rc == TALLY_ENOT_FOUND)
        rc = store_translate(mdb_cursor_get(c, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST));
    if (rc == 0 && (k.mv_size != STORE_HISTORY_KEY || memcmp(k.mv_data, key, STORE_MEMBER_PREFIX + 1) != 0))
        rc = TALLY_ENOT_FOUND;
    if (rc == 0 && v.mv_size != sizeof(struct store_history))
        rc = TALLY_ECORRUPT;
    if (rc == 0) {
        struct store_history h;
        memcpy(&h, v.mv_data, sizeof(h));
        out->as_of = at;
        out->seq = store_get_be64((const uint8_t *)k.mv_data + 21);
        out->available = h.available;
        out->pending = h.pending;
        out->held = h.held;
    }
    mdb_cursor_close(c);
    return read_end(e, rc);
}

int engine_history(struct engine *e, uint32_t program, uint64_t member, uint64_t before_seq,
                   struct tally_entry *out, uint32_t max, uint32_t *count)
{
    *count = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct acct a;
    if ((rc = acct_load(e, program, member, &a)) != 0)
        return read_end(e, rc);
    MDB_cursor *c;
    if ((rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_MEMBERS], &c))) != 0)
        return read_end(e, rc);
    /* History keys sort by (time, seq) and both grow together, so walking back from the end of
     * the member's range, skipping seqs >= before_seq, gives the entries newest first. */
    uint8_t key[STORE_HISTORY_KEY];
    store_history_key(key, program, member, UINT64_MAX, UINT64_MAX);
    MDB_val k = {.mv_size = sizeof(key), .mv_data = key}, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    rc = store_translate(mdb_cursor_get(c, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST));
    while (rc == 0 && *count < max) {
        if (k.mv_size != STORE_HISTORY_KEY || memcmp(k.mv_data, key, STORE_MEMBER_PREFIX + 1) != 0)
            break;
        uint64_t seq = store_get_be64((const uint8_t *)k.mv_data + 21);
        if (before_seq == 0 || seq < before_seq) {
            if ((rc = entry_read(e, seq, &out[*count], NULL)) != 0)
                break;
            (*count)++;
        }
        rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_PREV));
    }
    mdb_cursor_close(c);
    return read_end(e, rc == TALLY_ENOT_FOUND ? 0 : rc);
}

int engine_lots(struct engine *e, uint32_t program, uint64_t member, struct tally_lot *out,
                uint32_t max, uint32_t *count)
{
    *count = 0;
    int rc = read_begin(e);
    if (rc != 0)
        return rc;
    struct acct a;
    if ((rc = acct_load(e, program, member, &a)) != 0)
        return read_end(e, rc);
    MDB_cursor *c;
    if ((rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_MEMBERS], &c))) != 0)
        return read_end(e, rc);
    uint8_t prefix[STORE_MEMBER_PREFIX + 1];
    store_member_tag(prefix, program, member, STORE_TAG_LOT);
    MDB_val k = {.mv_size = sizeof(prefix), .mv_data = prefix}, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    while (rc == 0 && *count < max) {
        if (k.mv_size != STORE_LOT_KEY || memcmp(k.mv_data, prefix, sizeof(prefix)) != 0)
            break;
        if (v.mv_size != sizeof(struct tally_lot)) {
            rc = TALLY_ECORRUPT;
            break;
        }
        memcpy(&out[(*count)++], v.mv_data, sizeof(struct tally_lot));
        rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_NEXT));
    }
    mdb_cursor_close(c);
    return read_end(e, rc == TALLY_ENOT_FOUND ? 0 : rc);
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
