/* store.c: LMDB access for the engine, and the only file that sees MDB_* codes.
 *
 * Every write to a derived sub-database goes through store_put / store_del, which keep the state
 * sum (storage.h) up to date: the caller passes the old value it already read, so the sum costs
 * two XXH3-128 hashes per write and no extra lookup. A caller that passes a wrong old value makes
 * the stored sum disagree with a recomputation, which tally-audit reports: the mistake cannot stay
 * silent.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "members.h"

int store_translate(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return TALLY_ENOT_FOUND;
    case MDB_MAP_FULL:
        return ENGINE_EMAP_FULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return TALLY_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return TALLY_EVERSION;
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
        return TALLY_ETOO_LARGE;
    case MDB_MAP_RESIZED:
    case MDB_BAD_TXN:
    case MDB_BAD_RSLOT:
    case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
    case MDB_KEYEXIST:
    case MDB_DBS_FULL:
    case MDB_READERS_FULL:
    case MDB_TLS_FULL:
    case MDB_INCOMPATIBLE:
        return -EINVAL;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

void store_sum_add(struct engine *e, int db, const void *key, size_t klen, const void *val,
                   size_t len, bool subtract)
{
    unsigned __int128 sum = (unsigned __int128)e->work.sum_hi << 64 | e->work.sum_lo;
    unsigned __int128 v = store_sum_term(db, key, klen, val, len);
    sum = subtract ? sum - v : sum + v;
    e->work.sum_lo = (uint64_t)sum;
    e->work.sum_hi = (uint64_t)(sum >> 64);
}

uint64_t store_meta_checksum(const struct store_meta *m)
{
    return XXH3_64bits(m, offsetof(struct store_meta, checksum));
}

int store_get_raw(struct engine *e, int db, const void *key, size_t klen, MDB_val *val)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    return store_translate(mdb_get(e->txn, e->dbi[db], &k, val));
}

int store_get(struct engine *e, int db, const void *key, size_t klen, void *out, size_t len)
{
    MDB_val v;
    int rc = store_get_raw(e, db, key, klen, &v);
    if (rc != 0)
        return rc;
    if (v.mv_size != len)
        return TALLY_ECORRUPT;
    memcpy(out, v.mv_data, len);
    return 0;
}

int store_put(struct engine *e, int db, const void *key, size_t klen, const void *old,
              size_t old_len, const void *val, size_t len)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)val};
    int rc = store_translate(mdb_put(e->txn, e->dbi[db], &k, &v, 0));
    if (rc != 0)
        return rc;
    if (old != NULL)
        store_sum_add(e, db, key, klen, old, old_len, true);
    store_sum_add(e, db, key, klen, val, len, false);
    return 0;
}

int store_del(struct engine *e, int db, const void *key, size_t klen, const void *old,
              size_t old_len)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    int rc = store_translate(mdb_del(e->txn, e->dbi[db], &k, NULL));
    if (rc != 0)
        return rc;
    store_sum_add(e, db, key, klen, old, old_len, true);
    return 0;
}

int store_put_once(struct engine *e, int db, const void *key, size_t klen, const void *val,
                   size_t len, bool *inserted)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)val};
    int rc = mdb_put(e->txn, e->dbi[db], &k, &v, MDB_NOOVERWRITE);
    *inserted = false;
    if (rc == MDB_KEYEXIST)
        return 0;
    if (rc != 0)
        return store_translate(rc);
    *inserted = true;
    store_sum_add(e, db, key, klen, val, len, false);
    return 0;
}

/* ---- accounts, through the member cache ---------------------------------------------------- */

int acct_load(struct engine *e, uint32_t program, uint64_t member, struct acct *a)
{
    struct member *m = members_find(&e->cache, program, member);
    if (m == NULL) {
        uint8_t k[STORE_MEMBER_KEY];
        store_member_key(k, program, member);
        MDB_val v;
        int rc = store_get_raw(e, STORE_DB_MEMBERS, k, sizeof(k), &v);
        if (rc != 0)
            return rc;
        if (v.mv_size < sizeof(struct tally_account) || v.mv_size > STORE_MEMBER_MAX ||
            (v.mv_size - sizeof(struct tally_account)) % sizeof(struct tally_lot) != 0)
            return TALLY_ECORRUPT;
        rc = members_insert_image(&e->cache, program, member, v.mv_data, (uint32_t)v.mv_size,
                                  &m);
        if (rc != 0)
            return rc;
    }
    a->m = m;
    a->rec = *member_account(m);
    a->ghost = false;
    return 0;
}

int acct_create(struct engine *e, uint32_t program, uint64_t member, struct acct *a)
{
    int rc = members_create(&e->cache, program, member, &a->m);
    memset(&a->rec, 0, sizeof(a->rec));
    a->rec.program = program;
    a->rec.member = member;
    a->ghost = false;
    return rc;
}

int acct_modify(struct engine *e, struct acct *a)
{
    return a->ghost ? 0 : members_modify(&e->cache, a->m);
}

int acct_save(struct engine *e, struct acct *a)
{
    if (a->ghost)
        return 0;
    int rc = members_modify(&e->cache, a->m);
    if (rc != 0)
        return rc;
    a->rec.lots_open = member_lot_count(a->m);
    *member_account(a->m) = a->rec;
    return 0;
}

/* The programs read or written by the running write transaction, so that a batch reads each
 * program's record once instead of once a posting. Cleared whenever a transaction starts or is
 * aborted (a linked chain's too): it never holds what LMDB would not. */
static struct store_program *program_cached(struct engine *e, uint32_t program)
{
    for (uint32_t i = 0; i < e->programs_cached; i++)
        if (e->program_ids[i] == program)
            return &e->programs[i];
    return NULL;
}

static void program_cache(struct engine *e, uint32_t program, const struct store_program *rec)
{
    struct store_program *c = program_cached(e, program);
    if (c == NULL && e->programs_cached < ENGINE_PROGRAMS_CACHED) {
        e->program_ids[e->programs_cached] = program;
        c = &e->programs[e->programs_cached++];
    }
    if (c != NULL)
        *c = *rec;
}

void program_cache_clear(struct engine *e)
{
    e->programs_cached = 0;
}

int program_load(struct engine *e, uint32_t program, struct store_program *out)
{
    const struct store_program *c = e->in_apply ? program_cached(e, program) : NULL;
    if (c != NULL) {
        *out = *c;
        return 0;
    }
    uint8_t k[4];
    store_be32(k, program);
    int rc = store_get(e, STORE_DB_PROGRAMS, k, sizeof(k), out, sizeof(*out));
    if (rc == 0 && e->in_apply)
        program_cache(e, program, out);
    return rc;
}

int program_save(struct engine *e, uint32_t program, const struct store_program *old,
                 const struct store_program *rec)
{
    uint8_t k[4];
    store_be32(k, program);
    int rc = store_put(e, STORE_DB_PROGRAMS, k, sizeof(k), old, old ? sizeof(*old) : 0, rec,
                       sizeof(*rec));
    if (rc == 0)
        program_cache(e, program, rec);
    return rc;
}

/* ---- the entry log ------------------------------------------------------------------------ */

/* The previous entry of account `id` in this entry, if it is a member among a1, a2. */
static uint64_t prev_of(uint64_t id, const struct acct *a1, const struct acct *a2)
{
    if (id == 0 || id >= TALLY_SYS_FIRST)
        return 0;
    if (a1 != NULL && a1->rec.member == id)
        return a1->rec.last_seq;
    if (a2 != NULL && a2->rec.member == id)
        return a2->rec.last_seq;
    return 0;
}

int entry_emit(struct op *op, struct tally_entry *en, const void *tail, uint32_t tail_size,
               struct acct *a1, struct acct *a2)
{
    struct engine *e = op->e;
    size_t size = sizeof(*en) + tail_size;
    if (size > ENGINE_BUF_SIZE)
        return TALLY_ETOO_LARGE;
    en->seq = e->work.next_seq;
    en->timestamp = op->now;
    en->tail_size = tail_size;
    en->debit_prev = prev_of(en->debit, a1, a2);
    en->credit_prev = prev_of(en->credit, a1, a2);
    if (op->p != NULL) {
        memcpy(en->posting_id, op->p->id, 16);
        memcpy(en->user_data, op->p->user_data, 32);
    }
    uint8_t *b = e->buf;
    memcpy(b, en, sizeof(*en));
    if (tail_size > 0)
        memcpy(b + sizeof(*en), tail, tail_size);
    en->hash = XXH3_64bits_withSeed(b + 8, size - 8, e->work.chain_head);
    memcpy(b, &en->hash, 8);

    MDB_val k = {.mv_size = sizeof(en->seq), .mv_data = &en->seq};
    MDB_val v = {.mv_size = size, .mv_data = b};
    int rc = store_translate(mdb_put(e->txn, e->dbi[STORE_DB_ENTRIES], &k, &v, MDB_APPEND));
    if (rc != 0)
        return rc;
    e->work.next_seq++;
    e->work.chain_head = en->hash;
    if (op->first_seq == 0)
        op->first_seq = en->seq;
    op->entry_count++;
    if (en->kind == TALLY_KIND_PROGRAM)
        return fold_program(op, en);
    if ((rc = fold_apply(op, en, tail, a1, a2)) != 0)
        return rc;
    if (a1 != NULL && (rc = acct_save(e, a1)) != 0)
        return rc;
    if (a2 != NULL && a2 != a1)
        rc = acct_save(e, a2);
    return rc;
}

int entry_read(struct engine *e, uint64_t seq, struct tally_entry *out, const uint8_t **tail)
{
    MDB_val v;
    int rc = store_get_raw(e, STORE_DB_ENTRIES, &seq, sizeof(seq), &v);
    if (rc != 0)
        return rc;
    if (v.mv_size < sizeof(*out))
        return TALLY_ECORRUPT;
    memcpy(out, v.mv_data, sizeof(*out));
    if (v.mv_size != sizeof(*out) + out->tail_size)
        return TALLY_ECORRUPT;
    if (tail != NULL)
        *tail = (const uint8_t *)v.mv_data + sizeof(*out);
    return 0;
}

/* ---- batch end: the state sum of the members it changed ----------------------------------- */

void store_batch_end(struct engine *e)
{
    struct members *c = &e->cache;
    unsigned __int128 sum = (unsigned __int128)e->work.sum_hi << 64 | e->work.sum_lo;
    for (uint32_t k = 0; k < c->nchanged; k++) {
        struct member *m = &c->slots[c->changed[k]];
        if (m->flags & MEMBER_COUNTED)
            sum -= (unsigned __int128)m->hash_hi << 64 | m->hash_lo;
        members_hash(m, &m->hash_lo, &m->hash_hi);
        m->flags |= MEMBER_COUNTED;
        sum += (unsigned __int128)m->hash_hi << 64 | m->hash_lo;
    }
    e->work.sum_lo = (uint64_t)sum;
    e->work.sum_hi = (uint64_t)(sum >> 64);
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

static int member_put(struct engine *e, MDB_txn *txn, const struct member *m)
{
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, m->program, m->member);
    MDB_val k = {.mv_size = sizeof(key), .mv_data = key};
    MDB_val v = {.mv_size = m->size, .mv_data = m->blob};
    return store_translate(mdb_put(txn, e->dbi[STORE_DB_MEMBERS], &k, &v, 0));
}

/* Buckets the hand passes in this batch: the share of one turn that the batch's entries are of
 * the turn (engine_options.turn_entries), at least one bucket while anything is dirty. */
static uint32_t sweep_step(const struct engine *e, uint64_t entries)
{
    const struct members *c = &e->cache;
    if (c->ndirty == 0)
        return 0;
    uint64_t step =
        (uint64_t)((unsigned __int128)c->buckets * entries / e->opts.turn_entries) + 1;
    return step > c->buckets ? c->buckets : (uint32_t)step;
}

int store_write_back_some(struct engine *e, uint64_t entries, struct sweep *out)
{
    struct members *c = &e->cache;
    uint32_t step = sweep_step(e, entries);
    uint64_t batch_first = e->meta.next_seq; /* the first entry of this batch */
    int rc = 0;
    for (uint32_t k = 0; k < step && rc == 0; k++) {
        uint32_t b = (uint32_t)((e->sweep_pos + k) % c->buckets);
        for (struct member *m = members_bucket(c, b); m != NULL && rc == 0;
             m = members_next(c, m)) {
            if (m->flags & MEMBER_DIRTY) {
                rc = member_put(e, e->txn, m);
                members_written(c, m);
            }
        }
    }
    out->pos = e->sweep_pos + step;
    out->turn_seq = e->turn_seq;
    /* A turn ended in this batch: everything changed before it began is written back. The next
     * turn began with this batch (conservatively: its changes may be behind the hand). */
    if (step > 0 && out->pos / c->buckets != e->sweep_pos / c->buckets) {
        e->work.fold_from = e->turn_seq;
        out->turn_seq = batch_first;
    }
    return rc;
}

void store_sweep_done(struct engine *e, const struct sweep *s)
{
    members_written_done(&e->cache, true);
    e->sweep_pos = s->pos;
    e->turn_seq = s->turn_seq;
}

static int checkpoint_txn(struct engine *e)
{
    MDB_txn *txn;
    int rc = store_translate(mdb_txn_begin(e->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct members *c = &e->cache;
    for (uint32_t i = 0; i < c->high_water && rc == 0; i++) {
        struct member *m = &c->slots[i];
        if ((m->flags & MEMBER_USED) && (m->flags & MEMBER_DIRTY)) {
            rc = member_put(e, txn, m);
            members_written(c, m);
        }
    }
    struct store_meta meta = e->meta;
    meta.fold_from = meta.next_seq;
    meta.checksum = store_meta_checksum(&meta);
    MDB_val k = {.mv_size = 5, .mv_data = (void *)"state"};
    MDB_val v = {.mv_size = sizeof(meta), .mv_data = &meta};
    if (rc == 0)
        rc = store_translate(mdb_put(txn, e->dbi[STORE_DB_META], &k, &v, 0));
    if (rc != 0) {
        mdb_txn_abort(txn);
        members_written_done(c, false);
        return rc;
    }
    if ((rc = store_translate(mdb_txn_commit(txn))) != 0) {
        members_written_done(c, false);
        return rc;
    }
    members_written_done(c, true);
    e->meta = meta;
    e->turn_seq = meta.next_seq;
    return 0;
}

int store_checkpoint(struct engine *e)
{
    int rc = engine_commit(e); /* its own top-level transaction: the group goes first */
    if (rc != 0)
        return rc;
    if (e->cache.ndirty == 0 && e->meta.fold_from == e->meta.next_seq)
        return 0;
    for (;;) {
        rc = checkpoint_txn(e);
        if (rc == ENGINE_EMAP_FULL && (rc = engine_grow_map(e)) == 0)
            continue;
        return rc;
    }
}
