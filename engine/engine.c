/* engine.c: open, close and status of a ledger; the batch loop.
 *
 * One batch is one LMDB write transaction: the time-driven sweep, then the postings in order,
 * then the meta record (applied index, sequence counters, chain head, state sum). The commit is
 * the only moment the batch becomes visible, so a crash leaves it wholly present or wholly
 * absent. A linked chain runs in a nested transaction that is aborted if one of its postings
 * fails; the in-memory copy of meta (`work`) is restored with it.
 *
 * MDB_MAP_FULL: the transaction is dead (LMDB cannot continue it). The batch is aborted, the map
 * doubled (up to map_size_max), and the batch re-run from the start. The re-run is exact because
 * apply is deterministic and nothing of the aborted attempt survives, in LMDB or in `work`.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "hash.h"

static const char *const db_names[STORE_DB_COUNT] = {
#define STORE_DB_NAME_(name, str, tag) [tag] = str,
    STORE_DBS(STORE_DB_NAME_)
#undef STORE_DB_NAME_
};

static const char meta_key[] = "state";

void engine_options_default(struct engine_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->map_size = ENGINE_MAP_SIZE_DEFAULT;
    opts->map_size_max = ENGINE_MAP_SIZE_MAX;
    opts->sync = true;
    opts->member_cache = ENGINE_MEMBER_CACHE_DEFAULT;
}

static unsigned db_flags(int db)
{
    bool integer = db == STORE_DB_ENTRIES || db == STORE_DB_HOLDS || db == STORE_DB_REVERSALS;
    /* (sessions and session_lru use byte-string keys) */
    return integer ? MDB_INTEGERKEY : 0;
}

static int scratch_alloc(struct engine *e)
{
    e->plan_idx = calloc(TALLY_LINEAGE_MAX, sizeof(*e->plan_idx));
    e->refs = calloc(2 * TALLY_LINEAGE_MAX, sizeof(*e->refs));
    e->u64s = calloc(TALLY_LINEAGE_MAX, sizeof(*e->u64s));
    e->buf = malloc(ENGINE_BUF_SIZE);
    e->buf2 = malloc(ENGINE_BUF_SIZE);
    e->session_buf = malloc(sizeof(struct store_session) +
                            TALLY_BATCH_MAX * sizeof(struct tally_result));
    bool ok = e->plan_idx && e->refs && e->u64s && e->buf && e->buf2 && e->session_buf;
    if (!ok)
        return -ENOMEM;
    return members_init(&e->cache, e->opts.member_cache);
}

static void meta_init(struct store_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->magic = STORE_FORMAT_MAGIC;
    m->version = STORE_FORMAT_VERSION;
    m->next_seq = 1;
    m->next_lot_id = 1;
    m->fold_from = 1;
}

static int meta_check(const struct store_meta *m)
{
    if (m->magic != STORE_FORMAT_MAGIC)
        return TALLY_ECORRUPT;
    if (m->version != STORE_FORMAT_VERSION)
        return TALLY_EVERSION;
    if (m->checksum != store_meta_checksum(m))
        return TALLY_ECORRUPT;
    if (m->next_seq == 0 || m->next_lot_id == 0)
        return TALLY_ECORRUPT;
    return 0;
}

/* Open the sub-databases and read (or, in a new ledger, write) the meta record. */
static int open_dbs(struct engine *e)
{
    bool ro = e->opts.read_only;
    MDB_txn *txn;
    int rc = store_translate(mdb_txn_begin(e->env, NULL, ro ? MDB_RDONLY : 0, &txn));
    if (rc != 0)
        return rc;
    for (int db = 0; db < STORE_DB_COUNT && rc == 0; db++)
        rc = store_translate(
            mdb_dbi_open(txn, db_names[db], db_flags(db) | (ro ? 0 : MDB_CREATE), &e->dbi[db]));
    if (rc == TALLY_ENOT_FOUND)
        rc = TALLY_ECORRUPT; /* read-only open of a directory that is not a ledger */
    if (rc != 0)
        goto err_after_txn;
    MDB_stat sst;
    if ((rc = store_translate(mdb_stat(txn, e->dbi[STORE_DB_SESSIONS], &sst))) != 0)
        goto err_after_txn;
    e->sessions = (uint32_t)sst.ms_entries;
    MDB_val k = {.mv_size = sizeof(meta_key) - 1, .mv_data = (void *)meta_key}, v;
    rc = store_translate(mdb_get(txn, e->dbi[STORE_DB_META], &k, &v));
    if (rc == TALLY_ENOT_FOUND && !ro) {
        meta_init(&e->meta);
        e->meta.checksum = store_meta_checksum(&e->meta);
        v = (MDB_val){.mv_size = sizeof(e->meta), .mv_data = &e->meta};
        rc = store_translate(mdb_put(txn, e->dbi[STORE_DB_META], &k, &v, 0));
        if (rc != 0)
            goto err_after_txn;
        return store_translate(mdb_txn_commit(txn));
    }
    if (rc == 0 && v.mv_size != sizeof(e->meta))
        rc = TALLY_ECORRUPT;
    if (rc == 0) {
        memcpy(&e->meta, v.mv_data, sizeof(e->meta));
        rc = meta_check(&e->meta);
    }
    if (rc != 0)
        goto err_after_txn;
    return store_translate(mdb_txn_commit(txn));
err_after_txn:
    mdb_txn_abort(txn);
    return rc == TALLY_ENOT_FOUND ? TALLY_ECORRUPT : rc;
}

/* Fold the entries the `members` B-tree may not include yet into the cached images (a crash, or
 * a process that ended without engine_close). */
static int recover(struct engine *e)
{
    if (e->meta.fold_from == 0)
        e->meta.fold_from = 1;
    if (e->meta.fold_from >= e->meta.next_seq)
        return 0;
    MDB_txn *txn;
    int rc = store_translate(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    e->txn = txn;
    e->work = e->meta;
    rc = fold_recover(e, e->meta.fold_from);
    mdb_txn_abort(txn);
    e->txn = NULL;
    if (rc == ENGINE_ECACHE_FULL)
        return TALLY_ECONFIG; /* more members changed since fold_from than the cache holds */
    return rc;
}

/* ---- the committer (engine.h, "The committer") ------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *committer_main(void *arg)
{
    struct engine *e = arg;
    struct committer *c = &e->committer;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (c->job == COMMITTER_IDLE)
            pthread_cond_wait(&c->wake, &c->lock);
        enum committer_job job = c->job;
        if (job == COMMITTER_STOP)
            break;
        MDB_txn *txn = c->txn;
        pthread_mutex_unlock(&c->lock);
        int rc = 0;
        uint64_t start = mono_us(), took = 0;
        if (job == COMMITTER_BEGIN) {
            rc = store_translate(mdb_txn_begin(e->env, NULL, 0, &txn));
        } else if (job == COMMITTER_COMMIT) {
            rc = store_translate(mdb_txn_commit(txn));
            took = mono_us() - start;
            txn = NULL;
        } else {
            mdb_txn_abort(txn);
            txn = NULL;
        }
        pthread_mutex_lock(&c->lock);
        c->txn = rc == 0 ? txn : NULL;
        c->rc = rc;
        if (job == COMMITTER_COMMIT)
            c->outcome = true; /* until the engine takes it (committer_take) */
        c->commit_us += took;
        c->job = COMMITTER_IDLE;
        pthread_cond_broadcast(&c->done);
        if (job == COMMITTER_COMMIT && e->opts.committed != NULL) {
            pthread_mutex_unlock(&c->lock);
            e->opts.committed(e->opts.committed_arg);
            pthread_mutex_lock(&c->lock);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int committer_start(struct engine *e)
{
    struct committer *c = &e->committer;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->done, NULL);
    int rc = pthread_create(&c->thread, NULL, committer_main, e);
    if (rc != 0) {
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        return -rc;
    }
    c->running = true;
    return 0;
}

/* Under the lock, with the committer idle: take a commit's outcome into the engine. */
static void committer_take(struct engine *e)
{
    struct committer *c = &e->committer;
    if (!c->outcome)
        return;
    c->outcome = false;
    if (c->rc != 0) {
        if (e->failed == 0)
            e->failed = c->rc == ENGINE_EMAP_FULL ? TALLY_EMAP_LIMIT : c->rc;
        return;
    }
    e->committed_index = e->committing_index;
    e->commits++;
}

int engine_group_wait(struct engine *e)
{
    struct committer *c = &e->committer;
    if (!c->running)
        return e->failed;
    pthread_mutex_lock(&c->lock);
    if (c->job != COMMITTER_IDLE) {
        uint64_t start = mono_us();
        while (c->job != COMMITTER_IDLE)
            pthread_cond_wait(&c->done, &c->lock);
        e->commit_wait_us += mono_us() - start;
    }
    committer_take(e);
    pthread_mutex_unlock(&c->lock);
    return e->failed;
}

/* Give the committer a job. A BEGIN or an ABORT is waited for (their result is needed now, or
 * nothing else may run meanwhile); a COMMIT is not. The committer must be idle. */
static int committer_run(struct engine *e, enum committer_job job, MDB_txn **txn)
{
    struct committer *c = &e->committer;
    pthread_mutex_lock(&c->lock);
    c->job = job;
    c->txn = *txn;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (job == COMMITTER_COMMIT)
        return 0;
    int rc = engine_group_wait(e);
    pthread_mutex_lock(&c->lock);
    *txn = c->txn;
    c->txn = NULL;
    if (rc == 0)
        rc = c->rc;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void committer_stop(struct engine *e)
{
    struct committer *c = &e->committer;
    if (!c->running)
        return;
    (void)engine_group_wait(e);
    pthread_mutex_lock(&c->lock);
    c->job = COMMITTER_STOP;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->running = false;
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
}

int engine_open(struct engine **out, const char *dir, const struct engine_options *opts)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    struct engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    pthread_mutex_init(&e->map_lock, NULL);
    if (opts != NULL)
        e->opts = *opts;
    else
        engine_options_default(&e->opts);
    if (e->opts.map_size == 0)
        e->opts.map_size = ENGINE_MAP_SIZE_DEFAULT;
    if (e->opts.map_size_max == 0)
        e->opts.map_size_max = ENGINE_MAP_SIZE_MAX;
    if (e->opts.turn_entries == 0)
        e->opts.turn_entries = ENGINE_TURN_ENTRIES;
    if (e->opts.member_cache < ENGINE_MEMBER_CACHE_MIN)
        e->opts.member_cache = e->opts.member_cache == 0 ? ENGINE_MEMBER_CACHE_DEFAULT
                                                         : ENGINE_MEMBER_CACHE_MIN;
    int rc = scratch_alloc(e);
    if (rc != 0)
        goto err_after_alloc;
    if ((rc = store_translate(mdb_env_create(&e->env))) != 0)
        goto err_after_alloc;
    mdb_env_set_maxdbs(e->env, STORE_DB_COUNT + 2);
    mdb_env_set_mapsize(e->env, e->opts.map_size);
    /* Deferred commit with sync: the data is flushed at every commit, the meta page that makes
     * it current is written without a flush of its own (engine.h, "Deferred commit"). */
    unsigned flags = MDB_NORDAHEAD | (e->opts.sync ? 0 : MDB_NOSYNC) |
                     (e->opts.sync && e->opts.defer_commit ? MDB_NOMETASYNC : 0) |
                     (e->opts.read_only ? MDB_RDONLY : 0);
    if ((rc = store_translate(mdb_env_open(e->env, dir, flags, 0644))) != 0)
        goto err_after_env;
    MDB_envinfo info;
    mdb_env_info(e->env, &info);
    e->map_size = info.me_mapsize;
    if ((rc = open_dbs(e)) != 0)
        goto err_after_env;
    if ((rc = recover(e)) != 0)
        goto err_after_env;
    e->turn_seq = e->meta.next_seq;
    e->committed_index = e->meta.applied_index;
    /* Start from a clean cache: write back what recovery rebuilt. Without room for that (the map
     * at its maximum, or the disk full) the ledger still opens: the recovered images are in the
     * cache, fold_from still covers them, and the sweep writes them back once there is room. */
    if (!e->opts.read_only && (rc = store_checkpoint(e)) != 0 && rc != TALLY_EMAP_LIMIT &&
        rc != -ENOSPC)
        goto err_after_env;
    if (e->opts.defer_commit && !e->opts.read_only && (rc = committer_start(e)) != 0)
        goto err_after_env;
    *out = e;
    return 0;
err_after_env:
    mdb_env_close(e->env);
    e->env = NULL;
err_after_alloc:
    engine_close(e);
    return rc;
}

void engine_close(struct engine *e)
{
    if (e == NULL)
        return;
    if (e->env != NULL) {
        if (!e->opts.read_only && engine_group_wait(e) == 0 && store_checkpoint(e) == 0 &&
            e->opts.sync)
            (void)mdb_env_sync(e->env, 1); /* the last meta page too (MDB_NOMETASYNC) */
        /* (a failed checkpoint leaves fold_from where it was: nothing is lost) */
        if (e->group != NULL) /* the checkpoint failed before it could commit the group */
            (void)committer_run(e, COMMITTER_ABORT, &e->group);
        e->group = NULL;
        committer_stop(e);
        pthread_mutex_lock(&e->map_lock); /* a copy still running finishes first */
        mdb_env_close(e->env);
        pthread_mutex_unlock(&e->map_lock);
    }
    pthread_mutex_destroy(&e->map_lock);
    members_deinit(&e->cache);
    free(e->plan_idx);
    free(e->refs);
    free(e->u64s);
    free(e->buf);
    free(e->buf2);
    free(e->session_buf);
    free(e);
}

int engine_commit_start(struct engine *e)
{
    int rc = engine_group_wait(e);
    if (rc != 0 || e->group == NULL)
        return rc;
    MDB_txn *group = e->group;
    e->group = NULL;
    e->committing_index = e->meta.applied_index;
    e->group_batches = 0;
    e->group_postings = 0;
    return committer_run(e, COMMITTER_COMMIT, &group); /* LMDB frees the group either way */
}

int engine_commit(struct engine *e)
{
    int rc = engine_commit_start(e);
    return rc != 0 ? rc : engine_group_wait(e);
}

int engine_sync(struct engine *e)
{
    int rc = engine_commit(e);
    return rc != 0 ? rc : store_translate(mdb_env_sync(e->env, 1));
}

int engine_copy(struct engine *e, int fd)
{
    pthread_mutex_lock(&e->map_lock);
    int rc = store_translate(mdb_env_copyfd2(e->env, fd, MDB_CP_COMPACT));
    pthread_mutex_unlock(&e->map_lock);
    return rc;
}

void engine_status(struct engine *e, struct engine_status *out)
{
    memset(out, 0, sizeof(*out));
    struct committer *cm = &e->committer;
    if (cm->running) {
        pthread_mutex_lock(&cm->lock);
        if (cm->job == COMMITTER_IDLE)
            committer_take(e); /* a commit that ended: committed_index moves now */
        out->committing = cm->job == COMMITTER_COMMIT;
        out->commit_us = cm->commit_us;
        pthread_mutex_unlock(&cm->lock);
    }
    out->commits = e->commits;
    out->commit_wait_us = e->commit_wait_us;
    out->failed = e->failed;
    out->applied_index = e->meta.applied_index;
    out->last_timestamp = e->meta.last_timestamp;
    out->entries = e->meta.next_seq - 1;
    out->chain_head = e->meta.chain_head;
    out->map_size = e->map_size;
    out->fold_from = e->meta.fold_from;
    out->members_cached = e->cache.used;
    out->members_dirty = e->cache.ndirty;
    out->committed_index = e->committed_index;
    out->uncommitted = e->group_batches;
    out->uncommitted_postings = e->group_postings;
    uint64_t words[7] = {e->meta.applied_index, out->entries, e->meta.chain_head,
                         e->meta.sum_lo, e->meta.sum_hi, e->meta.last_timestamp,
                         e->meta.next_lot_id};
    XXH128_hash_t h = XXH3_128bits(words, sizeof(words));
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out->digest, c.digest, sizeof(out->digest));
}

/* ---- the batch ---------------------------------------------------------------------------- */

/* A failure for a chain: anything but OK, or EXISTS of a posting that had failed. */
static bool is_failure(const struct tally_result *r)
{
    return r->code == TALLY_EXISTS ? r->detail != TALLY_OK : r->code != TALLY_OK;
}

static int record_posting(struct engine *e, const struct tally_posting *p, uint64_t hash,
                          uint32_t code, uint64_t seq, uint32_t count, uint64_t now)
{
    struct store_posting rec = {.body_hash = hash, .code = code, .kind = p->kind, .seq = seq,
                                .entry_count = count, .timestamp = now};
    return store_put(e, STORE_DB_POSTINGS, p->id, 16, NULL, 0, &rec, sizeof(rec));
}

/* Apply one posting. *record says whether a failure should be recorded (the caller decides when:
 * a failure inside a chain is recorded after the chain's transaction is aborted). */
static int apply_one(struct engine *e, const struct tally_posting *p, uint64_t now,
                     struct tally_result *res, uint64_t *hash_out)
{
    memset(res, 0, sizeof(*res));
    res->code = postings_validate(p);
    if (res->code != TALLY_OK)
        return 0;
    uint64_t hash = XXH3_64bits(p, sizeof(*p));
    *hash_out = hash;
    struct store_posting rec;
    int rc = store_get(e, STORE_DB_POSTINGS, p->id, 16, &rec, sizeof(rec));
    if (rc == 0) {
        if (rec.body_hash == hash) {
            *res = (struct tally_result){TALLY_EXISTS, rec.code, rec.seq};
        } else {
            res->code = TALLY_ID_EXISTS_DIFFERENT;
        }
        return 0;
    }
    if (rc != TALLY_ENOT_FOUND)
        return rc;
    uint32_t code, count;
    uint64_t seq;
    if ((rc = postings_execute(e, p, now, &code, &seq, &count)) != 0)
        return rc;
    res->code = code;
    res->seq = seq;
    if (code == TALLY_OK)
        return record_posting(e, p, hash, code, seq, count, now);
    return 0;
}

static int record_failure(struct engine *e, const struct tally_posting *p, uint64_t hash,
                          const struct tally_result *res, uint64_t now)
{
    if (!tally_result_recorded(res->code) || res->code == TALLY_OK)
        return 0;
    return record_posting(e, p, hash, res->code, 0, 0, now);
}

/* Apply postings[first..end), a linked chain, all or nothing. */
static int apply_chain(struct engine *e, const struct tally_posting *postings, uint32_t first,
                       uint32_t end, uint64_t now, struct tally_result *results)
{
    struct store_meta saved = e->work;
    struct members_mark mark;
    MDB_txn *parent = e->txn, *child;
    int rc = store_translate(mdb_txn_begin(e->env, parent, 0, &child));
    if (rc != 0)
        return rc;
    members_scope(&e->cache, &mark);
    e->txn = child;
    uint32_t failed = end;
    uint64_t hash = 0;
    for (uint32_t i = first; i < end && rc == 0; i++) {
        rc = apply_one(e, &postings[i], now, &results[i], &hash);
        if (rc == 0 && is_failure(&results[i])) {
            failed = i;
            break;
        }
    }
    if (rc == 0 && failed == end) {
        rc = store_translate(mdb_txn_commit(child));
        e->txn = parent;
        return rc;
    }
    mdb_txn_abort(child);
    e->txn = parent;
    e->work = saved;
    program_cache_clear(e);
    members_rollback(&e->cache, &mark);
    if (rc != 0)
        return rc;
    for (uint32_t i = first; i < end; i++) {
        if (i != failed)
            results[i] = (struct tally_result){TALLY_LINKED_EVENT_FAILED, 0, 0};
    }
    if (results[failed].code < TALLY_ID_EXISTS_DIFFERENT)
        return 0; /* a validation result, or EXISTS: nothing to record */
    return record_failure(e, &postings[failed], hash, &results[failed], now);
}

/* Prefetch distances, in postings: bucket, slot, image (see members_prefetch). */
static const uint32_t prefetch_ahead[3] = {16, 8, 4};

static void prefetch_member(struct engine *e, const struct tally_posting *postings,
                            uint32_t count, uint32_t i)
{
    for (int step = 0; step < 3; step++) {
        uint32_t k = i + prefetch_ahead[step];
        if (k < count && postings[k].kind != TALLY_KIND_PROGRAM)
            members_prefetch(&e->cache, postings[k].program, postings[k].account, step);
    }
}

static int apply_postings(struct engine *e, const struct tally_posting *postings, uint32_t count,
                          uint64_t now, struct tally_result *results)
{
    /* The first postings get the prefetches the loop would have issued before them. */
    for (int step = 0; step < 3; step++) {
        for (uint32_t k = 0; k < prefetch_ahead[step] && k < count; k++) {
            if (postings[k].kind != TALLY_KIND_PROGRAM)
                members_prefetch(&e->cache, postings[k].program, postings[k].account, step);
        }
    }
    uint32_t i = 0;
    while (i < count) {
        prefetch_member(e, postings, count, i);
        uint32_t end = i;
        while (end < count && (postings[end].flags & TALLY_FLAG_LINKED))
            end++;
        int rc;
        if (end == count) { /* the batch ended inside a chain */
            for (uint32_t k = i; k < count; k++)
                results[k] = (struct tally_result){TALLY_LINKED_CHAIN_OPEN, 0, 0};
            return 0;
        }
        end++; /* the posting that closes the chain (or a lone posting) */
        if (end - i == 1) {
            uint64_t hash = 0;
            rc = apply_one(e, &postings[i], now, &results[i], &hash);
            if (rc == 0 && results[i].code >= TALLY_ID_EXISTS_DIFFERENT)
                rc = record_failure(e, &postings[i], hash, &results[i], now);
        } else {
            rc = apply_chain(e, postings, i, end, now, results);
        }
        if (rc != 0)
            return rc;
        i = end;
    }
    return 0;
}

/* What one transaction applies: postings, and optionally the requests (sessions) they form. */
struct batch {
    const struct tally_posting *postings;
    uint32_t count;
    struct tally_result *results;
    const struct engine_request *requests; /* NULL: the postings are one request, no session */
    uint32_t nrequests;
    uint8_t *status;
};

static int apply_requests(struct engine *e, uint64_t index, uint64_t now, const struct batch *b)
{
    if (b->requests == NULL)
        return apply_postings(e, b->postings, b->count, now, b->results);
    for (uint32_t r = 0; r < b->nrequests; r++) {
        const struct engine_request *q = &b->requests[r];
        int rc = sessions_check(e, q, &b->results[q->first], &b->status[r]);
        if (rc == 0 && b->status[r] == ENGINE_REQUEST_APPLIED)
            rc = apply_postings(e, &b->postings[q->first], q->count, now, &b->results[q->first]);
        if (rc == 0 && b->status[r] == ENGINE_REQUEST_APPLIED)
            rc = sessions_record(e, q, index, &b->results[q->first]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Whether more than half of the map is in use (as of the last commit). */
static bool map_half_full(struct engine *e)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(e->env, &info);
    mdb_env_stat(e->env, &st);
    return (uint64_t)(info.me_last_pgno + 1) * st.ms_psize > e->map_size / 2;
}

/* A batch's transaction: top-level, or (defer_commit) nested in the group, opened if need be.
 * A group that fills the map cannot be committed (LMDB needs pages to write its free list, and
 * the map can only grow with no transaction open): so the map grows before a group opens,
 * whenever more than half of it is in use. A group then has the other half to itself. */
static int batch_txn_begin(struct engine *e, MDB_txn **txn)
{
    if (e->opts.defer_commit && e->group == NULL) {
        if (map_half_full(e) && e->map_size < e->opts.map_size_max) {
            int rc = engine_grow_map(e);
            if (rc != 0)
                return rc;
        }
        int rc = committer_run(e, COMMITTER_BEGIN, &e->group); /* (the commit has ended) */
        if (rc != 0) {
            e->group = NULL;
            return rc;
        }
    }
    return store_translate(mdb_txn_begin(e->env, e->group, 0, txn));
}

static int apply_txn(struct engine *e, uint64_t index, uint64_t now, const struct batch *b)
{
    MDB_txn *txn;
    struct members_mark mark;
    int rc = batch_txn_begin(e, &txn);
    if (rc != 0)
        return rc;
    e->txn = txn;
    e->work = e->meta;
    e->in_apply = true;
    program_cache_clear(e);
    members_scope(&e->cache, &mark);
    struct sweep sweep;
    rc = timers_sweep(e, now);
    if (rc == 0)
        rc = apply_requests(e, index, now, b);
    if (rc == 0) {
        store_batch_end(e);
        rc = store_write_back_some(e, e->work.next_seq - e->meta.next_seq, &sweep);
    }
    if (rc != 0)
        goto err_after_txn;
    e->work.applied_index = index;
    e->work.last_timestamp = now;
    e->work.checksum = store_meta_checksum(&e->work);
    MDB_val k = {.mv_size = sizeof(meta_key) - 1, .mv_data = (void *)meta_key};
    MDB_val v = {.mv_size = sizeof(e->work), .mv_data = &e->work};
    if ((rc = store_translate(mdb_put(txn, e->dbi[STORE_DB_META], &k, &v, 0))) != 0)
        goto err_after_txn;
    MDB_stat sst; /* the batch's count of sessions: engine_sessions answers without LMDB */
    if ((rc = store_translate(mdb_stat(txn, e->dbi[STORE_DB_SESSIONS], &sst))) != 0)
        goto err_after_txn;
    e->txn = NULL;
    e->in_apply = false;
    if ((rc = store_translate(mdb_txn_commit(txn))) != 0) {
        members_rollback(&e->cache, &mark); /* LMDB has freed the transaction */
        members_batch_reset(&e->cache);
        members_written_done(&e->cache, false);
        e->work = e->meta;
        return rc;
    }
    e->meta = e->work;
    e->sessions = (uint32_t)sst.ms_entries;
    if (e->group != NULL) {
        e->group_batches++;
        e->group_postings += b->count;
    } else {
        e->committed_index = index;
    }
    members_batch_reset(&e->cache);
    store_sweep_done(e, &sweep);
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    e->txn = NULL;
    e->in_apply = false;
    e->work = e->meta;
    members_rollback(&e->cache, &mark);
    members_batch_reset(&e->cache);
    members_written_done(&e->cache, false);
    return rc;
}

int engine_grow_map(struct engine *e)
{
    if (e->map_size >= e->opts.map_size_max)
        return TALLY_EMAP_LIMIT;
    int rc = engine_commit(e); /* LMDB remaps only with no transaction open */
    if (rc != 0)
        return rc;
    size_t next = e->map_size * 2;
    if (next > e->opts.map_size_max)
        next = e->opts.map_size_max;
    pthread_mutex_lock(&e->map_lock); /* not while a copy reads the map (engine_copy) */
    rc = store_translate(mdb_env_set_mapsize(e->env, next));
    pthread_mutex_unlock(&e->map_lock);
    if (rc != 0)
        return rc;
    MDB_envinfo info;
    mdb_env_info(e->env, &info);
    e->map_size = info.me_mapsize;
    return 0;
}

/* The batch loop around apply_txn: map growth and cache eviction re-run the batch. */
static int apply_batch(struct engine *e, uint64_t index, uint64_t timestamp, const struct batch *b)
{
    if (e->opts.read_only)
        return -EROFS;
    int rc = engine_group_wait(e);
    if (rc != 0)
        return rc;
    if (b->count > TALLY_BATCH_MAX)
        return TALLY_ETOO_LARGE;
    if (index <= e->meta.applied_index)
        return 1;
    uint64_t now = timestamp > e->meta.last_timestamp ? timestamp : e->meta.last_timestamp;
    bool evicted = false;
    for (;;) {
        rc = apply_txn(e, index, now, b);
        if (rc == 0)
            return 0;
        if (rc == ENGINE_EMAP_FULL) {
            if ((rc = engine_grow_map(e)) != 0)
                return rc;
        } else if (rc == ENGINE_ECACHE_FULL && !evicted) {
            if ((rc = store_checkpoint(e)) != 0)
                return rc;
            members_evict_clean(&e->cache);
            evicted = true;
        } else {
            return rc == ENGINE_ECACHE_FULL ? TALLY_ETOO_LARGE : rc;
        }
    }
}

int engine_apply(struct engine *e, uint64_t index, uint64_t timestamp,
                 const struct tally_posting *postings, uint32_t count,
                 struct tally_result *results)
{
    struct batch b = {.postings = postings, .count = count, .results = results};
    return apply_batch(e, index, timestamp, &b);
}

/* Requests must tile the postings in order, each of at least one posting. */
static bool requests_valid(const struct engine_request *r, uint32_t n, uint32_t count)
{
    uint32_t next = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (r[i].first != next || r[i].count == 0 || r[i].count > count - next ||
            r[i].request == 0)
            return false;
        next += r[i].count;
    }
    return next == count;
}

int engine_apply_requests(struct engine *e, uint64_t index, uint64_t timestamp,
                          const struct engine_request *requests, uint32_t nrequests,
                          const struct tally_posting *postings, uint32_t count,
                          struct tally_result *results, uint8_t *status)
{
    if (count > TALLY_BATCH_MAX)
        return TALLY_ETOO_LARGE;
    if (!requests_valid(requests, nrequests, count))
        return TALLY_ECONFIG;
    struct batch b = {.postings = postings, .count = count, .results = results,
                      .requests = requests, .nrequests = nrequests, .status = status};
    return apply_batch(e, index, timestamp, &b);
}
