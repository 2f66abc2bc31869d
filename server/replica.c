/* replica.c: Raft (libraft 0.15) with the ledger engine as its state machine (replica.h).
 *
 * Design notes
 * ------------
 * - Proposals come from a pool of REPLICA_SLOTS slots allocated at start. Behind the entries in
 *   flight, up to REPLICA_GATHER_MAX slots gather requests, in arrival order (gather[0] is the
 *   next to be proposed; requests join the last one, and open a new one when it cannot take
 *   them); their postings are copied in. Proposing takes gather[0] (raft_apply with a
 *   raft_malloc'd payload, which libraft frees). The FSM finds the slot of an entry by the index
 *   libraft assigned it (req.index) and writes the results into that slot; on followers, or for
 *   entries this replica did not propose, into scratch arrays. gather[0] is proposed at once
 *   when nothing is in flight, and beside one entry in flight only when it is closed (full, or a
 *   request went on to the next slot: gather_ready); otherwise the slots gather, and gather[0]
 *   is proposed the moment an entry completes (applied_cb), not at the next poll. Only when every gathering slot is taken is a request answered BUSY
 *   (until 2026-12-07 there was one gathering slot, and the fourth client of a peak of full
 *   batches was answered BUSY over and over: docs/BENCHMARKS.md). Under the client clock one
 *   slot gathers (each entry's stamp follows the one proposed before it: see next_timestamp).
 * - Leadership is polled (libraft 0.15 has no state callback): on becoming leader the replica
 *   proposes a barrier and is ready once it applies; on losing it, queued requests fail with
 *   TALLY_ENOT_LEADER (in-flight ones fail through their raft_apply callback).
 * - Ledger time (enum replica_clock). Under --clock wall an entry's timestamp is read from the
 *   wall clock when it is proposed (never below the previous proposal's). Under --clock client
 *   the open slot's timestamp is fixed when its first request joins it: max(last_proposed_ts,
 *   at), where last_proposed_ts is the ledger's time when this replica became ready (its
 *   barrier applied every earlier entry) and then the stamp of each entry it proposed, so the
 *   stamp is exactly the effective time the engine will apply the entry at. A request whose
 *   stamp differs closes the open slot (one clear rule: an entry has one stamp); nothing else
 *   moves time, and no tick entries are proposed.
 * - The ledger commits deferred (engine.h "Deferred commit", replica.h REPLICA_COMMIT_MS):
 *   fsm_apply applies each entry into the engine's open group; ledger_commit hands the group
 *   (one durable LMDB commit) to the engine's committer thread (engine.h, "The committer") when
 *   it is REPLICA_COMMIT_MS old (poll_cb) or holds REPLICA_COMMIT_POSTINGS postings
 *   (fsm_apply), and the loop goes on with Raft and the network.
 * - The apply queue. While the ledger commits, nothing can be applied (LMDB has one writer);
 *   an entry libraft hands to fsm_apply then is copied into the queue, and the queued entries
 *   are applied in order as soon as the commit ends (committed_cb, woken by the committer
 *   through a uv_async; poll_cb as a backstop). Its proposal is answered only once it is
 *   applied (applied_cb defers to entry_apply), and stays in flight until then, so the
 *   pipeline's bound holds. Where the ledger must hold every entry libraft has handed over
 *   (a snapshot, a restore, a new leader's barrier, the stop) the queue is drained first,
 *   waiting for the commit; past REPLICA_APPLY_QUEUE_BYTES fsm_apply waits too. Reads wait for
 *   a commit in flight (the engine does), not for the queue: what is queued has not been
 *   answered, so a read that misses it is still linearizable. Before a snapshot (engine_sync),
 *   a ledger copy and at close the commit is waited for. An acknowledged entry is durable in the Raft log of a majority
 *   before it is applied; the ledger file may trail by one group, which a restart applies again
 *   from the log (a snapshot, which lets the log be truncated, commits first). A commit that
 *   fails stops the replica: the engine's memory is ahead of its file (fail_stop).
 */
#include "replica.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "copies.h"
#include "log.h"
#include "raft_guard.h"
#include "raft_tcp.h"
#include "tally.h"

struct proposal {
    struct raft_apply req;
    struct replica *r;
    bool busy;          /* proposed, waiting for its callback (and its apply, if queued) */
    bool queued;        /* committed by Raft, waiting in the apply queue (see the notes) */
    bool raft_done;     /* queued, and libraft's callback has come: answer once applied */
    uint64_t timestamp; /* --clock client: the stamp of its requests, fixed by the first one */
    uint32_t nrequests;
    uint32_t npostings;
    struct batch_request *requests; /* BATCH_REQUESTS_MAX */
    void **ctx;                     /* BATCH_REQUESTS_MAX */
    struct tally_posting *postings; /* TALLY_BATCH_MAX */
    struct tally_result *results;   /* TALLY_BATCH_MAX */
    uint8_t *status;                /* BATCH_REQUESTS_MAX */
};

/* An entry Raft has committed and libraft has handed to fsm_apply while the ledger was
 * committing: a copy, applied in order once the commit has ended (see the design notes). */
struct queued_entry {
    struct queued_entry *next;
    uint64_t index;
    size_t len;
    uint8_t bytes[];
};

struct replica {
    uv_loop_t *loop;
    struct replica_options opts;
    struct replica_peer peers[REPLICA_PEERS_MAX];
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct engine *engine;
    struct copies *copies;       /* ledger copies served to catching-up peers */
    struct replica_counters counters;
    bool threshold_adapts;   /* no snapshot threshold given: it follows entry_bytes_avg */
    uint64_t entry_bytes_avg; /* moving average of applied entries' sizes, in bytes x 16 */
    struct proposal slots[REPLICA_SLOTS];
    struct proposal *gather[REPLICA_GATHER_MAX]; /* gathering requests, oldest first (not busy) */
    uint32_t ngather;                            /* 1 at least once slots_alloc ran */
    uint32_t inflight;
    bool ready;                  /* leader with its barrier applied */
    bool barrier_pending;
    struct raft_barrier barrier;
    uint64_t last_proposed_ts;   /* stamp of the newest proposal (client clock: or the ledger's
                                    time when this replica became ready) */
    uint64_t last_proposal_ms;   /* loop time of the last proposal (ticks) */
    uint64_t group_since_ms;     /* loop time of the first entry not yet committed to the file */
    bool clock_mismatch_seen;    /* the last entry applied was stamped in the other mode */
    struct queued_entry *queue_head, *queue_tail; /* the apply queue, oldest first */
    uint64_t queue_bytes;
    uv_async_t committed;        /* the engine's committer ended a commit */
    bool in_fsm;                 /* inside a libraft FSM call: propose nothing from there */
    uv_timer_t poll;
    bool stopping;
    void (*stopped)(void *arg);
    void *stopped_arg;
    struct raft_transfer transfer;
    /* Scratch for entries this replica did not propose. */
    struct engine_request *ereq;
    struct tally_result *scratch_results;
    uint8_t *scratch_status;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the state machine ---------------------------------------------------------------------- */

static struct proposal *proposal_of(struct replica *r, uint64_t index)
{
    for (uint32_t i = 0; i < REPLICA_SLOTS; i++) {
        struct proposal *p = &r->slots[i];
        if (p->busy && p->req.index == index)
            return p;
    }
    return NULL;
}

/* A replica that cannot apply a committed entry must not go on (it would diverge): stop. */
static void fail_stop(struct replica *r, uint64_t index, int rc, const char *why)
{
    LOG_ERROR("fail_stop", "replica=%" PRIu64 " index=%" PRIu64 " error=%d reason=\"%s: %s\"",
              r->opts.id, index, rc, why, tally_strerror(rc));
    abort();
}

static const char *clock_name(bool client)
{
    return client ? "client" : "wall";
}

/* An entry stamped in the other clock mode than this replica's: the cluster's replicas were
 * started with different --clock. The entry itself is valid (and applied like any other); what
 * must not happen is this replica leading and stamping the next ones. Logged once per run of
 * such entries, counted always (tally_clock_mode_mismatch_entries_total). */
static void clock_check(struct replica *r, uint64_t index, const struct batch_view *b)
{
    bool mine = r->opts.clock == REPLICA_CLOCK_CLIENT;
    if (b->clock_client == mine) {
        r->clock_mismatch_seen = false;
        return;
    }
    r->counters.clock_mismatches++;
    if (r->clock_mismatch_seen)
        return;
    r->clock_mismatch_seen = true;
    LOG_ERROR("clock_mode_mismatch",
              "replica=%" PRIu64 " index=%" PRIu64 " entry_clock=%s own_clock=%s next=\"start "
              "every replica of the cluster with the same --clock (docs/OPERATIONS.md)\"",
              r->opts.id, index, clock_name(b->clock_client), clock_name(mine));
}

static void committed_signal(void *arg);

static int ledger_open(struct replica *r, const char *path)
{
    struct engine_options o;
    engine_options_default(&o);
    o.defer_commit = r->opts.commit_ms != REPLICA_COMMIT_EACH;
    o.map_size = REPLICA_MAP_SIZE;
    o.committed = committed_signal;
    o.committed_arg = r;
    return engine_open(&r->engine, path, &o);
}

/* Commit the entries applied since the last commit (see the design notes): handed to the
 * engine's committer thread, unless `wait` (a ledger copy holds what the file holds). */
static void ledger_commit(struct replica *r, bool wait)
{
    struct engine_status st;
    engine_status(r->engine, &st);
    if (st.uncommitted == 0 && !(wait && st.committing))
        return;
    int rc = wait ? engine_commit(r->engine) : engine_commit_start(r->engine);
    if (rc != 0)
        fail_stop(r, st.applied_index, rc, "the ledger could not commit applied entries");
}

static void proposal_complete(struct replica *r, struct proposal *p, int status);

/* Apply one committed entry to the ledger, and answer its proposal if libraft already called
 * back for it (it was queued). */
static void entry_apply(struct replica *r, uint64_t index, const void *base, size_t len)
{
    struct batch_view b;
    int rc = batch_decode(base, len, &b);
    if (rc != 0)
        fail_stop(r, index, rc, "an entry of the Raft log does not decode");
    struct proposal *p = proposal_of(r, index);
    struct tally_result *results = p ? p->results : r->scratch_results;
    uint8_t *status = p ? p->status : r->scratch_status;
    rc = batch_apply(r->engine, index, &b, r->ereq, results, status);
    if (rc < 0)
        fail_stop(r, index, rc, "the ledger could not apply a committed entry");
    if (rc == 0) /* applied now, not skipped at a restart */
        clock_check(r, index, &b);
    r->counters.entries_applied++;
    /* x16 fixed point, each entry weighs 1/16 */
    r->entry_bytes_avg += len - r->entry_bytes_avg / 16;
    r->counters.postings_applied += b.h.npostings;
    struct engine_status st;
    engine_status(r->engine, &st);
    if (st.uncommitted == 1)
        r->group_since_ms = uv_now(r->loop);
    if (st.uncommitted_postings >= REPLICA_COMMIT_POSTINGS)
        ledger_commit(r, false);
    if (p != NULL && p->queued) {
        p->queued = false;
        if (p->raft_done)
            proposal_complete(r, p, 0);
    }
}

static bool ledger_committing(const struct replica *r)
{
    struct engine_status st;
    engine_status(r->engine, &st);
    return st.committing;
}

bool replica_ledger_busy(const struct replica *r)
{
    return r->engine != NULL && ledger_committing(r);
}

/* Apply queued entries: those that can go without waiting for a commit, or (wait) all. */
static void queue_drain(struct replica *r, bool wait)
{
    while (r->queue_head != NULL && (wait || !ledger_committing(r))) {
        struct queued_entry *q = r->queue_head;
        r->queue_head = q->next;
        if (r->queue_head == NULL)
            r->queue_tail = NULL;
        r->queue_bytes -= q->len;
        entry_apply(r, q->index, q->bytes, q->len);
        free(q);
    }
}

/* A commit ended: what waited for the ledger goes on, the reads first (they are quick, and
 * applying the queued entries may begin the next commit). */
static void ledger_free(struct replica *r)
{
    if (r->opts.ledger_free != NULL) /* it answers nothing while a commit runs still */
        r->opts.ledger_free(r->opts.ledger_free_ctx);
    queue_drain(r, false);
}

static void committed_cb(uv_async_t *a)
{
    ledger_free(a->data);
}

/* The engine's committer thread: a commit ended (engine_options.committed). */
static void committed_signal(void *arg)
{
    struct replica *r = arg;
    uv_async_send(&r->committed);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct replica *r = fsm->data;
    uint64_t index = r->raft.last_applied + 1;
    const void *base = buf->base;
    size_t len = buf->len;
    struct proposal *p = proposal_of(r, index);
    *result = p;
    r->in_fsm = true;
    struct queued_entry *q = NULL;
    if (r->queue_head == NULL && !ledger_committing(r)) {
        entry_apply(r, index, base, len);
    } else if (r->queue_bytes + len > REPLICA_APPLY_QUEUE_BYTES ||
               (q = malloc(sizeof(*q) + len)) == NULL) {
        queue_drain(r, true); /* the queue is full: wait for the ledger */
        entry_apply(r, index, base, len);
    }
    r->in_fsm = false;
    if (q == NULL)
        return 0;
    /* The ledger is committing: the entry waits (in order) and the loop goes on. */
    q->next = NULL;
    q->index = index;
    q->len = len;
    memcpy(q->bytes, base, len);
    if (r->queue_tail != NULL)
        r->queue_tail->next = q;
    else
        r->queue_head = q;
    r->queue_tail = q;
    r->queue_bytes += len;
    r->counters.entries_queued++;
    if (p != NULL)
        p->queued = true;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
    struct replica *r = fsm->data;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    struct batch_snapshot *s = raft_malloc(sizeof(*s));
    if (b == NULL || s == NULL) {
        raft_free(b);
        raft_free(s);
        return RAFT_NOMEM;
    }
    /* The log before this point may be dropped: the ledger must hold every entry libraft has
     * handed over, and be on disk, first. */
    r->in_fsm = true;
    queue_drain(r, true);
    r->in_fsm = false;
    int rc = batch_snapshot_take(r->engine, s);
    if (rc != 0) {
        LOG_ERROR("snapshot", "replica=%" PRIu64 " error=\"%s\"", r->opts.id, tally_strerror(rc));
        raft_free(b);
        raft_free(s);
        return RAFT_IOERR;
    }
    b->base = s;
    b->len = sizeof(*s);
    *bufs = b;
    *n = 1;
    return 0;
}

/* ---- catch-up -------------------------------------------------------------------------------- */

static void ledger_path(const struct replica *r, char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", r->opts.dir, name);
}

/* Remove a ledger directory (data.mdb and lock.mdb, nothing else is ever in it). */
static int ledger_remove(const char *dir)
{
    char p[600];
    const char *files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        if (unlink(p) != 0 && errno != ENOENT)
            return -errno;
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : -errno;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* At start: finish or undo a swap a crash interrupted (see replica.h). */
static int ledger_tidy(const struct replica *r)
{
    char ledger[512], old[512], incoming[512];
    ledger_path(r, ledger, sizeof(ledger), "ledger");
    ledger_path(r, old, sizeof(old), "ledger.old");
    ledger_path(r, incoming, sizeof(incoming), "ledger.incoming");
    struct stat st;
    if (stat(ledger, &st) != 0 && errno == ENOENT && stat(old, &st) == 0) {
        if (rename(old, ledger) != 0) /* the swap stopped halfway: back to the old ledger */
            return -errno;
        LOG_INFO("catch_up_undone", "replica=%" PRIu64 " reason=\"a swap was interrupted\"",
                 r->opts.id);
    }
    int rc = ledger_remove(old);
    return rc != 0 ? rc : ledger_remove(incoming);
}

/* The peers' client addresses, the leader's first, this replica's left out. */
static void peer_addresses(const struct replica *r, char *out, size_t size)
{
    raft_id leader = 0;
    const char *leader_address = NULL;
    raft_leader((struct raft *)&r->raft, &leader, &leader_address);
    size_t n = 0;
    out[0] = '\0';
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < r->opts.npeers; i++) {
            const struct replica_peer *p = &r->peers[i];
            if (p->id == r->opts.id || (pass == 0) != (p->id == leader))
                continue;
            n += (size_t)snprintf(out + n, size - n, "%s%s", n ? "," : "", p->client_address);
        }
}

/* Replace this replica's ledger by a peer's copy holding at least min_index (replica.h). */
static int catch_up(struct replica *r, uint64_t min_index)
{
    char ledger[512], old[512], incoming[512], file[600], addresses[REPLICA_PEERS_MAX * 66];
    ledger_path(r, ledger, sizeof(ledger), "ledger");
    ledger_path(r, old, sizeof(old), "ledger.old");
    ledger_path(r, incoming, sizeof(incoming), "ledger.incoming");
    snprintf(file, sizeof(file), "%s/data.mdb", incoming);
    peer_addresses(r, addresses, sizeof(addresses));
    struct engine_status st;
    engine_status(r->engine, &st);
    LOG_INFO("catch_up", "replica=%" PRIu64 " applied=%" PRIu64 " need=%" PRIu64 " from=%s",
             r->opts.id, st.applied_index, min_index, addresses[0] ? addresses : "(none)");
    if (addresses[0] == '\0')
        return TALLY_ECONFIG;
    uint64_t t0 = wall_ms();
    int rc = ledger_remove(incoming);
    if (rc == 0 && mkdir(incoming, 0755) != 0)
        rc = -errno;
    struct tally_client *c = NULL;
    struct tally_client_options co = {.addresses = addresses, .timeout_ms = REPLICA_CATCH_UP_MS,
                                      .defer_register = true, .label = "catch-up"};
    if (rc == 0)
        rc = tally_client_open(&c, &co);
    uint64_t applied = 0;
    if (rc == 0)
        rc = tally_client_ledger_copy(c, file, min_index, &applied, REPLICA_CATCH_UP_MS);
    tally_client_close(c);
    if (rc != 0) {
        (void)ledger_remove(incoming);
        return rc;
    }
    struct stat fs;
    uint64_t bytes = stat(file, &fs) == 0 ? (uint64_t)fs.st_size : 0;
    /* The swap. A copy this replica is making for someone else reads the old engine: wait. */
    copies_wait(r->copies);
    engine_close(r->engine);
    r->engine = NULL;
    if (rename(ledger, old) != 0 || rename(incoming, ledger) != 0 || fsync_dir(r->opts.dir) != 0)
        return -errno; /* the caller stops; the next start undoes a half-done swap */
    if ((rc = ledger_open(r, ledger)) != 0)
        return rc;
    engine_status(r->engine, &st);
    if (st.applied_index < min_index)
        return TALLY_ESTALE; /* cannot be: the copy said it held min_index */
    (void)ledger_remove(old);
    r->counters.catch_ups++;
    LOG_INFO("catch_up_done",
             "replica=%" PRIu64 " applied=%" PRIu64 " entries=%" PRIu64 " bytes=%" PRIu64
             " ms=%" PRIu64,
             r->opts.id, st.applied_index, st.entries, bytes, wall_ms() - t0);
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct replica *r = fsm->data;
    struct batch_snapshot s;
    if (buf->len != sizeof(s))
        return RAFT_CORRUPT; /* on failure the buffer stays libraft's */
    memcpy(&s, buf->base, sizeof(s));
    r->in_fsm = true;
    queue_drain(r, true);
    r->in_fsm = false;
    struct engine_status st;
    engine_status(r->engine, &st);
    if (st.applied_index < s.applied_index) {
        int rc = catch_up(r, s.applied_index);
        if (rc != 0) {
            /* Failing the restore would leave libraft's log and state machine apart: stop, and
             * let the next start (which restores the same snapshot) try again. */
            LOG_ERROR("catch_up_failed",
                      "replica=%" PRIu64 " snapshot=%" PRIu64 " error=\"%s\" next=\"start the "
                      "replica again once a peer that has applied the snapshot index is up "
                      "(docs/OPERATIONS.md)\"",
                      r->opts.id, s.applied_index, tally_strerror(rc));
            abort();
        }
    }
    raft_free(buf->base);
    return 0;
}

/* ---- proposals ------------------------------------------------------------------------------ */

static bool slot_gathering(const struct replica *r, const struct proposal *p)
{
    for (uint32_t i = 0; i < r->ngather; i++)
        if (r->gather[i] == p)
            return true;
    return false;
}

/* A slot neither in flight nor gathering. There always is one while fewer than
 * REPLICA_GATHER_MAX slots gather: at most REPLICA_INFLIGHT_MAX are in flight. */
static struct proposal *slot_free(struct replica *r)
{
    for (uint32_t i = 0; i < REPLICA_SLOTS; i++) {
        struct proposal *p = &r->slots[i];
        if (!p->busy && !slot_gathering(r, p))
            return p;
    }
    return NULL;
}

/* How many slots may gather: one under the client clock (see the design notes). */
static uint32_t gather_max(const struct replica *r);

static void proposal_fail(struct replica *r, struct proposal *p, int status)
{
    for (uint32_t i = 0; i < p->nrequests; i++)
        r->opts.done(p->ctx[i], status, 0, NULL, 0, 0);
    p->nrequests = 0;
    p->npostings = 0;
}

static int propose(struct replica *r, bool tick);
static void propose_gathered(struct replica *r);

static void applied_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    (void)result;
    if (status == 0 && p->queued) {
        p->raft_done = true; /* answered once applied (entry_apply) */
        return;
    }
    proposal_complete(p->r, p, status);
}

/* The entry of slot p is applied (status 0) or failed: answer its requests, free the slot. */
static void proposal_complete(struct replica *r, struct proposal *p, int status)
{
    struct raft_apply *req = &p->req;
    if (status != 0) {
        proposal_fail(r, p, status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST
                                ? TALLY_ENOT_LEADER
                                : -EIO);
    } else {
        uint32_t first = 0;
        for (uint32_t i = 0; i < p->nrequests; i++) {
            uint32_t n = p->requests[i].count;
            r->opts.done(p->ctx[i], 0, p->status[i], &p->results[first], n, req->index);
            first += n;
        }
    }
    p->busy = false;
    p->queued = p->raft_done = false;
    p->nrequests = p->npostings = 0;
    r->inflight--;
    /* Group commit: what gathered while the pipeline was full goes now, not at the next poll
     * (libraft calls this after applying the entry and uses nothing of it afterwards, so
     * appending the next one from here is safe; not from inside an FSM call, which libraft
     * makes in the middle of its own work: the next poll proposes then). */
    if (status == 0 && r->ready && !r->stopping && !r->in_fsm)
        propose_gathered(r);
}

static bool clock_client(const struct replica *r)
{
    return r->opts.clock == REPLICA_CLOCK_CLIENT;
}

/* The stamp of the entry about to be proposed from slot p (see the design notes). */
static uint64_t next_timestamp(struct replica *r, const struct proposal *p)
{
    uint64_t now;
    if (clock_client(r)) {
        assert(p->nrequests > 0);                    /* no ticks under the client clock */
        assert(p->timestamp >= r->last_proposed_ts); /* fixed since the last proposal */
        now = p->timestamp;
    } else {
        now = wall_ms();
        if (now < r->last_proposed_ts)
            now = r->last_proposed_ts;
    }
    r->last_proposed_ts = now;
    return now;
}

/* The stamp a request asking for ledger time at_ms gets if it joins the open slot now. */
static uint64_t request_timestamp(const struct replica *r, uint64_t at_ms)
{
    if (!clock_client(r))
        return 0; /* decided when the slot is proposed */
    return at_ms > r->last_proposed_ts ? at_ms : r->last_proposed_ts;
}

static uint32_t gather_max(const struct replica *r)
{
    return clock_client(r) ? 1u : REPLICA_GATHER_MAX;
}

/* gather[0] was proposed: the others move up, and a free slot gathers if none is left. */
static void gather_advance(struct replica *r)
{
    memmove(&r->gather[0], &r->gather[1], (r->ngather - 1) * sizeof(r->gather[0]));
    r->ngather--;
    r->gather[r->ngather] = NULL; /* past ngather, nothing: no stale slot to be mistaken */
    if (r->ngather == 0) {
        r->gather[0] = slot_free(r);
        assert(r->gather[0] != NULL); /* REPLICA_SLOTS > REPLICA_INFLIGHT_MAX */
        r->ngather = 1;
    }
}

/* Propose gather[0] (or a tick when `tick` and it is empty). */
static int propose(struct replica *r, bool tick)
{
    struct proposal *p = r->gather[0];
    if (p->nrequests == 0 && !tick)
        return 0;
    size_t size = batch_size(p->nrequests, p->npostings);
    uint8_t *payload = raft_malloc(size);
    if (payload == NULL)
        return -ENOMEM;
    uint16_t kind = (uint16_t)((p->nrequests ? BATCH_POSTS : BATCH_TICK) |
                               (clock_client(r) ? BATCH_CLOCK_CLIENT : 0u));
    struct batch_header h = {.magic = BATCH_MAGIC, .version = BATCH_VERSION, .kind = kind,
                             .timestamp = next_timestamp(r, p), .nrequests = p->nrequests,
                             .npostings = p->npostings};
    memcpy(payload, &h, sizeof(h));
    memcpy(payload + sizeof(h), p->requests, (size_t)p->nrequests * sizeof(*p->requests));
    memcpy(payload + sizeof(h) + (size_t)p->nrequests * sizeof(*p->requests), p->postings,
           (size_t)p->npostings * sizeof(*p->postings));
    batch_seal(payload, size);
    struct raft_buffer buf = {.base = payload, .len = size};
    p->req.data = p;
    int rc = raft_apply(&r->raft, &p->req, &buf, 1, applied_cb);
    if (rc != 0) {
        raft_free(payload);
        proposal_fail(r, p, rc == RAFT_NOTLEADER ? TALLY_ENOT_LEADER : -EIO);
        return rc;
    }
    p->busy = true;
    r->inflight++;
    gather_advance(r);
    r->last_proposal_ms = uv_now(r->loop);
    return 0;
}

/* Propose what gathered, oldest first, while the pipeline has room. */
/* Whether gather[0] can take no more: full, or a request already went on to the next slot. */
static bool gather_head_closed(const struct replica *r)
{
    return r->ngather > 1 || r->gather[0]->npostings == TALLY_BATCH_MAX;
}

/* Whether gather[0] goes now. With nothing in flight, whatever gathered goes. With an entry in
 * flight, a second goes only once gather[0] is closed: waiting could not make it larger. An
 * entry's cost is mostly fixed (a synchronous log write and Raft messages on every replica, an
 * LMDB transaction), so small requests from many clients (the till) make fewer, larger entries
 * this way, and full batches (the peak) still keep two in flight, replicating one while the
 * other applies (docs/BENCHMARKS.md, "One entry in flight unless the next is full"). */
static bool gather_ready(const struct replica *r)
{
    if (r->gather[0]->nrequests == 0 || r->inflight >= REPLICA_INFLIGHT_MAX)
        return false;
    return r->inflight == 0 || gather_head_closed(r);
}

static void propose_gathered(struct replica *r)
{
    while (gather_ready(r))
        if (propose(r, false) != 0)
            return; /* its requests were failed: the next poll goes on */
}

enum replica_clock replica_clock(const struct replica *r)
{
    return r->opts.clock;
}

/* Whether request of `count` postings stamped `ts` cannot join slot p: full, or (an entry has
 * one stamp) p gathers requests of another stamp. */
static bool slot_closed_to(const struct proposal *p, uint32_t count, uint64_t ts)
{
    return p->npostings + count > TALLY_BATCH_MAX || (p->nrequests > 0 && p->timestamp != ts);
}

int replica_submit(struct replica *r, const uint8_t client_id[16], uint64_t request, uint64_t at_ms,
                   const struct tally_posting *postings, uint32_t count, void *ctx)
{
    if (!r->ready || r->stopping)
        return TALLY_ENOT_LEADER;
    if (count == 0 || count > TALLY_BATCH_MAX)
        return TALLY_ETOO_LARGE;
    if (at_ms != 0 && !clock_client(r))
        return TALLY_ECONFIG;
    struct proposal *p = r->gather[r->ngather - 1];
    uint64_t ts = request_timestamp(r, at_ms);
    if (slot_closed_to(p, count, ts)) {
        if (r->ngather == 1 && r->inflight < REPLICA_INFLIGHT_MAX) {
            propose(r, false); /* the pipeline has room: the full slot goes */
            ts = request_timestamp(r, at_ms); /* the slot proposed moved last_proposed_ts */
        } else if (r->ngather < gather_max(r)) {
            /* Found before ngather grows: slot_free reads gather[0..ngather). (In one
             * expression the increment and the call are unsequenced, and gcc did the increment
             * first, so a stale gather[ngather] hid the one free slot.) */
            struct proposal *fresh = slot_free(r); /* there is one: see slot_free */
            r->gather[r->ngather++] = fresh;
        } else {
            r->counters.posts_busy++;
            return TALLY_EBUSY;
        }
        p = r->gather[r->ngather - 1];
        assert(p != NULL && p->nrequests == 0);
    }
    if (p->nrequests == 0)
        p->timestamp = ts;
    struct batch_request *q = &p->requests[p->nrequests];
    memset(q, 0, sizeof(*q));
    memcpy(q->client_id, client_id, 16);
    q->request = request;
    q->count = count;
    p->ctx[p->nrequests++] = ctx;
    memcpy(&p->postings[p->npostings], postings, (size_t)count * sizeof(*postings));
    p->npostings += count;
    /* Group commit: propose now if the pipeline has room; otherwise the slots gather until an
     * entry completes (applied_cb proposes gather[0] then). */
    propose_gathered(r);
    return 0;
}

/* ---- leadership, ticks, flushing: polled ----------------------------------------------------- */

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct replica *r = req->data;
    r->barrier_pending = false;
    queue_drain(r, true); /* ready means every earlier entry is in the ledger */
    if (status == 0 && raft_state(&r->raft) == RAFT_LEADER) {
        if (clock_client(r)) {
            /* Every earlier entry is applied: the ledger's time is where this leader's stamps
             * start (a stamp it proposed in an earlier term may never have committed). */
            struct engine_status st;
            engine_status(r->engine, &st);
            r->last_proposed_ts = st.last_timestamp;
        }
        r->ready = true;
        LOG_INFO("leader_ready", "replica=%" PRIu64 " term=%llu index=%llu", r->opts.id,
                 (unsigned long long)r->raft.current_term,
                 (unsigned long long)raft_last_applied(&r->raft));
    }
}

static void lost_leadership(struct replica *r)
{
    if (r->ready)
        LOG_INFO("leader_lost", "replica=%" PRIu64, r->opts.id);
    r->ready = false;
    for (uint32_t i = 0; i < r->ngather; i++)
        proposal_fail(r, r->gather[i], TALLY_ENOT_LEADER);
    r->ngather = r->ngather > 0 ? 1 : 0; /* gather[0] gathers again, the others are free */
    for (uint32_t i = r->ngather; i < REPLICA_GATHER_MAX; i++)
        r->gather[i] = NULL;
}

/* The snapshot threshold for entries of mean size avg16 / 16 bytes (replica.h). */
static uint32_t snapshot_threshold_for(uint64_t avg16)
{
    uint64_t avg = avg16 / 16 > 0 ? avg16 / 16 : 1;
    uint64_t n = REPLICA_SNAPSHOT_LOG_BYTES / avg;
    return n < REPLICA_SNAPSHOT_THRESHOLD       ? REPLICA_SNAPSHOT_THRESHOLD
           : n > REPLICA_SNAPSHOT_THRESHOLD_MAX ? REPLICA_SNAPSHOT_THRESHOLD_MAX
                                                : (uint32_t)n;
}

static void snapshot_threshold_follow(struct replica *r)
{
    if (!r->threshold_adapts || r->entry_bytes_avg == 0)
        return;
    uint32_t n = snapshot_threshold_for(r->entry_bytes_avg);
    if (n != r->counters.snapshot_threshold) {
        raft_set_snapshot_threshold(&r->raft, n);
        r->counters.snapshot_threshold = n;
    }
}

static void poll_cb(uv_timer_t *t)
{
    struct replica *r = t->data;
    if (r->stopping)
        return;
    raft_guard_flush(&r->io); /* sends refused since the last poll: reported as lost */
    snapshot_threshold_follow(r);
    ledger_free(r); /* (committed_cb does it as a commit ends; this is the backstop) */
    struct engine_status st;
    engine_status(r->engine, &st);
    if (st.failed != 0) /* a commit on the committer thread failed: seen here at the latest */
        fail_stop(r, st.committed_index, st.failed, "the ledger could not commit applied entries");
    if (st.uncommitted > 0 && uv_now(r->loop) - r->group_since_ms >= r->opts.commit_ms)
        ledger_commit(r, false);
    /* libraft 0.15 turns a replica whose Raft log write failed (disk full, I/O error) into
     * RAFT_UNAVAILABLE and leaves it there: the process would live on, taking no part. Stop
     * instead, so the failure is seen and a supervisor's restart reloads the log (found by the
     * simulation, tests/sim). */
    if (raft_state(&r->raft) == RAFT_UNAVAILABLE)
        fail_stop(r, r->raft.last_applied, -EIO,
                  "the Raft log could not be written (libraft stopped the replica)");
    if (raft_state(&r->raft) != RAFT_LEADER) {
        lost_leadership(r);
        return;
    }
    if (!r->ready && !r->barrier_pending) {
        r->barrier.data = r;
        if (raft_barrier(&r->raft, &r->barrier, barrier_cb) == 0)
            r->barrier_pending = true;
        return;
    }
    if (!r->ready || r->inflight >= REPLICA_INFLIGHT_MAX)
        return;
    if (r->gather[0]->nrequests > 0)
        propose_gathered(r);
    else if (!clock_client(r) && r->inflight == 0 &&
             uv_now(r->loop) - r->last_proposal_ms >= r->opts.tick_ms)
        propose(r, true); /* under the client clock, time moves only with POST_AT */
}

/* ---- start and stop ------------------------------------------------------------------------- */

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static int slots_alloc(struct replica *r)
{
    for (uint32_t i = 0; i < REPLICA_SLOTS; i++) {
        struct proposal *p = &r->slots[i];
        p->r = r;
        p->requests = calloc(BATCH_REQUESTS_MAX, sizeof(*p->requests));
        p->ctx = calloc(BATCH_REQUESTS_MAX, sizeof(*p->ctx));
        p->postings = calloc(TALLY_BATCH_MAX, sizeof(*p->postings));
        p->results = calloc(TALLY_BATCH_MAX, sizeof(*p->results));
        p->status = calloc(BATCH_REQUESTS_MAX, 1);
        if (!p->requests || !p->ctx || !p->postings || !p->results || !p->status)
            return -ENOMEM;
    }
    r->ereq = calloc(BATCH_REQUESTS_MAX, sizeof(*r->ereq));
    r->scratch_results = calloc(TALLY_BATCH_MAX, sizeof(*r->scratch_results));
    r->scratch_status = calloc(BATCH_REQUESTS_MAX, 1);
    r->gather[0] = &r->slots[0];
    r->ngather = 1;
    return r->ereq && r->scratch_results && r->scratch_status ? 0 : -ENOMEM;
}

static const struct replica_peer *peer_of(const struct replica *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->opts.npeers; i++)
        if (r->peers[i].id == id)
            return &r->peers[i];
    return NULL;
}

static int raft_setup(struct replica *r, const char *raft_dir)
{
    const struct replica_peer *self = peer_of(r, r->opts.id);
    if (self == NULL)
        return TALLY_ECONFIG;
    int rc = raft_uv_tcp_init(&r->transport, r->loop);
    if (rc == 0)
        raft_tcp_nodelay_install(&r->transport); /* libraft leaves Nagle on (raft_tcp.h) */
    /* Before raft_init. raft_uv binds its listener here and still tells every peer it connects
     * to (in its handshake) the raft_address given to raft_init: the two may differ. uv.h says
     * the ports must match; libraft 0.15's source neither needs nor checks that. */
    if (rc == 0 && r->opts.raft_bind != NULL &&
        (rc = raft_uv_tcp_set_bind_address(&r->transport, r->opts.raft_bind)) != 0)
        LOG_ERROR("raft_bind", "replica=%" PRIu64 " address=%s error=\"%s\"", r->opts.id,
                  r->opts.raft_bind, raft_strerror(rc));
    if (rc == 0)
        rc = raft_uv_init(&r->io, r->loop, raft_dir, &r->transport);
    if (rc != 0)
        return TALLY_ECONFIG;
    raft_uv_set_auto_recovery(&r->io, false); /* a corrupt log stops the node (BRIEF §3) */
    if (raft_guard_install(&r->io) != 0) /* two libraft 0.15 defects (raft_guard.h) */
        return TALLY_ECONFIG;
    r->fsm = (struct raft_fsm){.version = 1, .data = r, .apply = fsm_apply,
                               .snapshot = fsm_snapshot, .restore = fsm_restore};
    if ((rc = raft_init(&r->raft, &r->io, &r->fsm, r->opts.id, self->raft_address)) != 0)
        return TALLY_ECONFIG;
    raft_set_election_timeout(&r->raft, r->opts.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, r->opts.heartbeat_ms);
    raft_set_snapshot_threshold(&r->raft, r->opts.snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, r->opts.snapshot_trailing);
    raft_set_install_snapshot_timeout(&r->raft, REPLICA_INSTALL_SNAPSHOT_MS);
    raft_set_pre_vote(&r->raft, true);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (uint32_t i = 0; i < r->opts.npeers && rc == 0; i++)
        rc = raft_configuration_add(&conf, r->peers[i].id, r->peers[i].raft_address, RAFT_VOTER);
    if (rc == 0) {
        rc = raft_bootstrap(&r->raft, &conf);
        if (rc == RAFT_CANTBOOTSTRAP)
            rc = 0; /* bootstrapped before: the log says who the voters are */
    }
    raft_configuration_close(&conf);
    if (rc == 0)
        rc = raft_start(&r->raft);
    if (rc != 0)
        LOG_ERROR("raft_start", "replica=%" PRIu64 " error=\"%s\"", r->opts.id,
                  raft_errmsg(&r->raft));
    return rc == 0 ? 0 : -EIO;
}

int replica_start(struct replica **out, uv_loop_t *loop, const struct replica_options *opts)
{
    if (opts->npeers == 0 || opts->npeers > REPLICA_PEERS_MAX || opts->done == NULL ||
        (opts->clock != REPLICA_CLOCK_WALL && opts->clock != REPLICA_CLOCK_CLIENT))
        return TALLY_ECONFIG;
    struct replica *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->loop = loop;
    r->opts = *opts;
    memcpy(r->peers, opts->peers, opts->npeers * sizeof(*r->peers));
    r->opts.peers = r->peers;
    if (r->opts.election_timeout_ms == 0)
        r->opts.election_timeout_ms = 1000;
    if (r->opts.heartbeat_ms == 0)
        r->opts.heartbeat_ms = 100;
    if (r->opts.tick_ms == 0)
        r->opts.tick_ms = 1000;
    r->threshold_adapts = r->opts.snapshot_threshold == 0;
    if (r->opts.snapshot_threshold == 0)
        r->opts.snapshot_threshold = REPLICA_SNAPSHOT_THRESHOLD;
    r->counters.snapshot_threshold = r->opts.snapshot_threshold;
    if (r->opts.snapshot_trailing == 0)
        r->opts.snapshot_trailing = REPLICA_SNAPSHOT_TRAILING;
    if (r->opts.commit_ms == 0)
        r->opts.commit_ms = REPLICA_COMMIT_MS;
    char ledger[512], raft_dir[512];
    snprintf(ledger, sizeof(ledger), "%s/ledger", opts->dir);
    snprintf(raft_dir, sizeof(raft_dir), "%s/raft", opts->dir);
    int rc = make_dir(opts->dir);
    if (rc == 0)
        rc = make_dir(raft_dir);
    if (rc == 0)
        rc = slots_alloc(r);
    if (rc == 0)
        rc = ledger_tidy(r);
    if (rc == 0)
        rc = make_dir(ledger);
    if (rc == 0)
        rc = copies_init(&r->copies, loop, opts->dir);
    if (rc == 0 && (rc = uv_async_init(loop, &r->committed, committed_cb)) == 0)
        r->committed.data = r;
    /* Opening a ledger a crash left folds the entries its member images had not yet written
     * back (up to two write-back turns: tens of seconds for a large ledger): say so first. */
    uint64_t t0 = mono_us();
    if (rc == 0)
        LOG_INFO("opening", "replica=%" PRIu64 " ledger=%s", opts->id, ledger);
    if (rc == 0)
        rc = ledger_open(r, ledger);
    if (rc == 0)
        rc = raft_setup(r, raft_dir);
    int64_t open_ms = (int64_t)((mono_us() - t0) / 1000);
    if (rc != 0) {
        LOG_ERROR("start", "replica=%" PRIu64 " dir=%s error=\"%s\"", opts->id, opts->dir,
                  tally_strerror(rc));
        return rc; /* the process exits: nothing to release */
    }
    uv_timer_init(loop, &r->poll);
    r->poll.data = r;
    uv_timer_start(&r->poll, poll_cb, 5, 5);
    struct engine_status st;
    engine_status(r->engine, &st);
    LOG_INFO("started",
             "replica=%" PRIu64 " dir=%s applied=%" PRIu64 " entries=%" PRIu64
             " clock=%s open_ms=%" PRId64,
             opts->id, opts->dir, st.applied_index, st.entries, clock_name(clock_client(r)),
             open_ms);
    *out = r;
    return 0;
}

bool replica_ready(const struct replica *r)
{
    return r->ready && !r->stopping;
}

void replica_leader(const struct replica *r, uint64_t *id, const char **client_address)
{
    raft_id lid = 0;
    const char *addr = NULL;
    raft_leader((struct raft *)&r->raft, &lid, &addr);
    const struct replica_peer *p = lid ? peer_of(r, lid) : NULL;
    *id = lid;
    *client_address = p ? p->client_address : "";
}

struct engine *replica_engine(struct replica *r)
{
    return r->engine;
}

void replica_status(const struct replica *r, struct tally_wire_replica_status *out)
{
    memset(out, 0, sizeof(*out));
    struct engine_status st;
    engine_status(r->engine, &st);
    struct raft *raft = (struct raft *)&r->raft;
    int state = raft_state(raft);
    out->replica_id = r->opts.id;
    const char *leader_address;
    replica_leader(r, &out->leader_id, &leader_address);
    out->term = raft->current_term;
    out->commit_index = raft->commit_index;
    out->applied_index = st.applied_index;
    out->last_timestamp = st.last_timestamp;
    out->entries = st.entries;
    out->chain_head = st.chain_head;
    memcpy(out->digest, st.digest, sizeof(out->digest));
    out->role = state == RAFT_LEADER      ? TALLY_WIRE_ROLE_LEADER
                : state == RAFT_FOLLOWER  ? TALLY_WIRE_ROLE_FOLLOWER
                : state == RAFT_CANDIDATE ? TALLY_WIRE_ROLE_CANDIDATE
                                          : TALLY_WIRE_ROLE_UNAVAILABLE;
    out->voters = r->opts.npeers;
    out->sessions = engine_sessions(r->engine);
    const struct replica_peer *self = peer_of(r, r->opts.id);
    if (self != NULL)
        (void)tally_wire_address_set(out->address, self->client_address);
    if (leader_address[0] != '\0')
        (void)tally_wire_address_set(out->leader_address, leader_address);
}

void replica_counters(const struct replica *r, struct replica_counters *out)
{
    *out = r->counters;
}

uint16_t replica_ledger_chunk(struct replica *r, const struct tally_wire_ledger_request *q,
                              uint8_t *body, uint32_t *size)
{
    *size = 0;
    if (r->copies == NULL || r->engine == NULL)
        return TALLY_WIRE_BUSY; /* stopping */
    if (q->copy_id == 0)
        ledger_commit(r, true); /* a copy holds what the file holds: every entry applied */
    return copies_serve(r->copies, r->engine, q, body, size);
}

/* libraft has closed. raft_uv, its transport and the guard stay until replica_free: raft_uv may
 * still run close callbacks of its own after this one (raft_guard.h, defect 4). */
static void raft_closed(struct raft *raft)
{
    struct replica *r = raft->data;
    copies_wait(r->copies); /* a copy being made reads the engine */
    copies_close(r->copies);
    r->copies = NULL;
    queue_drain(r, true);
    engine_close(r->engine); /* (its committer has stopped: nothing signals `committed` now) */
    r->engine = NULL;
    uv_close((uv_handle_t *)&r->committed, NULL);
    LOG_INFO("stopped", "replica=%" PRIu64, r->opts.id);
    if (r->stopped != NULL)
        r->stopped(r->stopped_arg);
}

static void poll_closed(uv_handle_t *h)
{
    struct replica *r = h->data;
    r->raft.data = r;
    raft_guard_flush(&r->io);
    raft_close(&r->raft, raft_closed);
}

static void transferred(struct raft_transfer *req)
{
    struct replica *r = req->data;
    uv_close((uv_handle_t *)&r->poll, poll_closed);
}

void replica_stop(struct replica *r, void (*done)(void *arg), void *arg)
{
    r->stopping = true;
    r->stopped = done;
    r->stopped_arg = arg;
    lost_leadership(r);
    /* A leader hands over first, so the cluster does not wait an election timeout. */
    if (raft_state(&r->raft) == RAFT_LEADER && r->opts.npeers > 1) {
        r->transfer.data = r;
        if (raft_transfer(&r->raft, &r->transfer, 0, transferred) == 0) {
            LOG_INFO("transfer_leadership", "replica=%" PRIu64, r->opts.id);
            return;
        }
    }
    uv_close((uv_handle_t *)&r->poll, poll_closed);
}

void replica_free(struct replica *r)
{
    if (r == NULL)
        return;
    struct raft_guard_stats gs;
    raft_guard_stats(&r->io, &gs);
    if (gs.closes_swallowed > 0) /* libraft 0.15's repeated close callback, defused */
        LOG_INFO("raft_close_repeated", "replica=%" PRIu64 " callbacks=%" PRIu64, r->opts.id,
                 gs.closes_swallowed);
    raft_guard_remove(&r->io);
    raft_uv_close(&r->io);
    raft_uv_tcp_close(&r->transport);
    for (uint32_t i = 0; i < REPLICA_SLOTS; i++) {
        struct proposal *p = &r->slots[i];
        free(p->requests);
        free(p->ctx);
        free(p->postings);
        free(p->results);
        free(p->status);
    }
    free(r->ereq);
    free(r->scratch_results);
    free(r->scratch_status);
    free(r);
}
