/* sessions.c: the replicated reply cache that makes client requests exactly-once (engine.h).
 *
 * A session is a client id; its record holds the number of its last applied request and that
 * request's results. Both live in LMDB, written in the batch's transaction and counted in the
 * state sum, so every replica has the same cache and a retry answered by a new leader gets the
 * reply the old one would have given.
 *
 * Eviction is deterministic: session_lru orders sessions by the index of their last request
 * (then client id); creating a session beyond ENGINE_SESSIONS_MAX removes the first one.
 */
#include "internal.h"

#include <string.h>

static void lru_key(uint8_t k[24], uint64_t index, const uint8_t id[16])
{
    store_be64(k, index);
    memcpy(k + 8, id, 16);
}

/* The session's record: 0 with *rec (and *results pointing into the map until the next
 * write), or TALLY_ENOT_FOUND. */
static int session_get(struct engine *e, const uint8_t id[16], struct store_session *rec,
                       const struct tally_result **results)
{
    MDB_val v;
    int rc = store_get_raw(e, STORE_DB_SESSIONS, id, 16, &v);
    if (rc != 0)
        return rc;
    if (v.mv_size < sizeof(*rec))
        return TALLY_ECORRUPT;
    memcpy(rec, v.mv_data, sizeof(*rec));
    if (v.mv_size != sizeof(*rec) + (size_t)rec->count * sizeof(struct tally_result) ||
        rec->count > TALLY_BATCH_MAX)
        return TALLY_ECORRUPT;
    if (results != NULL)
        *results = (const struct tally_result *)(const void *)((const uint8_t *)v.mv_data +
                                                               sizeof(*rec));
    return 0;
}

int sessions_check(struct engine *e, const struct engine_request *r, struct tally_result *results,
                   uint8_t *status)
{
    struct store_session rec;
    const struct tally_result *cached;
    int rc = session_get(e, r->client_id, &rec, &cached);
    *status = ENGINE_REQUEST_APPLIED;
    if (rc == TALLY_ENOT_FOUND || (rc == 0 && r->request > rec.last_request))
        return 0;
    if (rc != 0)
        return rc;
    if (r->request == rec.last_request && r->count == rec.count) {
        *status = ENGINE_REQUEST_REPLAYED;
        memcpy(results, cached, (size_t)r->count * sizeof(*results));
        return 0;
    }
    *status = ENGINE_REQUEST_OLD;
    memset(results, 0, (size_t)r->count * sizeof(*results));
    return 0;
}

/* Remove the least recently used session. */
static int evict_one(struct engine *e)
{
    MDB_cursor *c;
    int rc = store_translate(mdb_cursor_open(e->txn, e->dbi[STORE_DB_SESSION_LRU], &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    rc = store_translate(mdb_cursor_get(c, &k, &v, MDB_FIRST));
    uint8_t key[24];
    if (rc == 0 && k.mv_size == sizeof(key))
        memcpy(key, k.mv_data, sizeof(key));
    else if (rc == 0)
        rc = TALLY_ECORRUPT;
    mdb_cursor_close(c);
    if (rc != 0)
        return rc;
    MDB_val old;
    if ((rc = store_get_raw(e, STORE_DB_SESSIONS, key + 8, 16, &old)) != 0)
        return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
    store_sum_add(e, STORE_DB_SESSIONS, key + 8, 16, old.mv_data, old.mv_size, true);
    MDB_val kid = {.mv_size = 16, .mv_data = key + 8};
    if ((rc = store_translate(mdb_del(e->txn, e->dbi[STORE_DB_SESSIONS], &kid, NULL))) != 0)
        return rc;
    return store_del(e, STORE_DB_SESSION_LRU, key, sizeof(key), NULL, 0);
}

int sessions_record(struct engine *e, const struct engine_request *r, uint64_t index,
                    const struct tally_result *results)
{
    struct store_session rec;
    MDB_val old;
    int rc = store_get_raw(e, STORE_DB_SESSIONS, r->client_id, 16, &old);
    uint8_t key[24];
    if (rc == 0) {
        /* Take the old value out of the sum before writing over it (the pointer into the map
         * does not survive the write). */
        memcpy(&rec, old.mv_data, sizeof(rec));
        store_sum_add(e, STORE_DB_SESSIONS, r->client_id, 16, old.mv_data, old.mv_size, true);
        lru_key(key, rec.last_index, r->client_id);
        if ((rc = store_del(e, STORE_DB_SESSION_LRU, key, sizeof(key), NULL, 0)) != 0)
            return rc;
    } else if (rc == TALLY_ENOT_FOUND) {
        MDB_stat st;
        if ((rc = store_translate(mdb_stat(e->txn, e->dbi[STORE_DB_SESSIONS], &st))) != 0)
            return rc;
        if (st.ms_entries >= ENGINE_SESSIONS_MAX && (rc = evict_one(e)) != 0)
            return rc;
    } else {
        return rc;
    }
    uint8_t *v = e->session_buf;
    rec = (struct store_session){.last_request = r->request, .last_index = index,
                                 .count = r->count};
    memcpy(v, &rec, sizeof(rec));
    memcpy(v + sizeof(rec), results, (size_t)r->count * sizeof(*results));
    size_t size = sizeof(rec) + (size_t)r->count * sizeof(*results);
    if ((rc = store_put(e, STORE_DB_SESSIONS, r->client_id, 16, NULL, 0, v, size)) != 0)
        return rc;
    lru_key(key, index, r->client_id);
    return store_put(e, STORE_DB_SESSION_LRU, key, sizeof(key), NULL, 0, NULL, 0);
}
