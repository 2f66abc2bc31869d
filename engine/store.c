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
#include <string.h>

#include "hash.h"

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
    uint8_t *b = e->hash_buf;
    b[0] = (uint8_t)db;
    memcpy(b + 1, key, klen);
    memcpy(b + 1 + klen, val, len);
    XXH128_hash_t h = XXH3_128bits(b, 1 + klen + len);
    unsigned __int128 sum = (unsigned __int128)e->work.sum_hi << 64 | e->work.sum_lo;
    unsigned __int128 v = (unsigned __int128)h.high64 << 64 | h.low64;
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

/* ---- accounts and programs ---------------------------------------------------------------- */

int acct_load(struct engine *e, uint32_t program, uint64_t member, struct acct *a)
{
    uint8_t k[STORE_ACCOUNT_KEY];
    store_account_key(k, program, member);
    int rc = store_get(e, STORE_DB_MEMBERS, k, sizeof(k), &a->rec, sizeof(a->rec));
    if (rc == TALLY_ENOT_FOUND) {
        memset(a, 0, sizeof(*a));
        return rc;
    }
    if (rc != 0)
        return rc;
    a->old = a->rec;
    a->stored = true;
    return 0;
}

int acct_save(struct engine *e, struct acct *a)
{
    uint8_t k[STORE_ACCOUNT_KEY];
    store_account_key(k, a->rec.program, a->rec.member);
    int rc = store_put(e, STORE_DB_MEMBERS, k, sizeof(k), a->stored ? &a->old : NULL,
                       sizeof(a->old), &a->rec, sizeof(a->rec));
    if (rc != 0)
        return rc;
    a->old = a->rec;
    a->stored = true;
    return 0;
}

int program_load(struct engine *e, uint32_t program, struct store_program *out)
{
    uint8_t k[4];
    store_be32(k, program);
    return store_get(e, STORE_DB_PROGRAMS, k, sizeof(k), out, sizeof(*out));
}

/* ---- the entry log ------------------------------------------------------------------------ */

static int history_append(struct engine *e, const struct tally_account *a, uint64_t time,
                          uint64_t seq)
{
    uint8_t k[STORE_HISTORY_KEY];
    store_history_key(k, a->program, a->member, time, seq);
    struct store_history h = {.available = a->available, .pending = a->pending, .held = a->held};
    return store_put(e, STORE_DB_MEMBERS, k, sizeof(k), NULL, 0, &h, sizeof(h));
}

static int touch_account(struct engine *e, struct acct *a, uint64_t seq, uint64_t time)
{
    a->rec.last_seq = seq;
    int rc = acct_save(e, a);
    if (rc != 0 || a->rec.status == TALLY_ACCOUNT_STATUS_SYSTEM)
        return rc;
    return history_append(e, &a->rec, time, seq);
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

    if (a1 != NULL && (rc = touch_account(e, a1, en->seq, en->timestamp)) != 0)
        return rc;
    if (a2 != NULL && a2 != a1 && (rc = touch_account(e, a2, en->seq, en->timestamp)) != 0)
        return rc;
    return 0;
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
