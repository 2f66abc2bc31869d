/* sim.c: deterministic simulation of a tally cluster, driven by a seed (issue 4).
 *
 * What runs
 * ---------
 * Three or five replicas, each the real ledger engine on a real LMDB directory and libraft 0.15,
 * the same code tallyd runs between them: every committed entry reaches the engine through
 * batch_decode and batch_apply (server/batch.c), at index raft->last_applied + 1, skipped when
 * the engine has it (replay after a restart); a Raft snapshot is the applied index and digest
 * taken after engine_sync; restoring one on a replica whose ledger is behind swaps in a copy of
 * a peer's ledger (engine_copy), as tallyd's catch-up does. What is simulated is everything
 * around them: libraft's raft_fixture gives simulated time, an in-memory disk and network, and
 * one thread. Client sessions post random traffic (accruals, pending accruals, redemptions,
 * holds and releases, transfers, and posting ids sent again with the same or another body) to
 * whichever replica believes it leads and has passed its barrier, as libtally would, and retry a
 * request that failed or went unanswered with the same session and request number.
 *
 * Faults, drawn from the seed
 * ---------------------------
 *   partition   the replicas split in two groups (raft_fixture_saturate both ways: the messages
 *               are dropped, BRIEF section 3), healed after 0.3-5 s;
 *   drop        one direction of one link drops everything for a while;
 *   delay       a replica's outgoing messages take 40-600 ms instead of 15;
 *   crash       a replica is killed (no ticks, no messages); once its in-flight disk writes have
 *               landed it restarts for real: raft_close, raft_init, raft_start from what the
 *               stub disk persisted (term, vote, snapshot, log), and its engine reopened from a
 *               crash image (engine_copy: what a killed writer leaves, so recovery folds the
 *               entries since fold_from). The engines commit deferred, as tallyd's do
 *               (engine.h, "Deferred commit"), at seeded moments and before every snapshot and
 *               copy: the image holds the last commit, whose digest must be the one every
 *               replica had at its index, and Raft must apply the entries after it again;
 *   disk        raft_fixture_io_fault: the replica's next raft_io calls (log append, term, vote,
 *               send, snapshot) fail;
 *   clock       replicas' clocks differ by up to 3 hours (a new leader's clock may be behind).
 * Not simulated: an engine write that fails (tallyd stops the replica on it: fail_stop; the
 * real-process disk-full test covers it) and lost or torn disk writes inside raft (the stub
 * either completes a write or has not started it).
 *
 * What is checked
 * ---------------
 * Continuously: every replica that applies index i reaches the same digest as the first replica
 * that applied i (the digest covers the hash chain and the state sum: any divergence shows at the
 * first index it happens); raft_fixture checks election safety and leader append-only on every
 * step. After the run (faults healed, every client request answered, all replicas at the
 * leader's commit index): same applied index and digest everywhere; every acknowledged posting
 * has exactly the result it was acknowledged with on every replica, and a fresh id is never
 * acknowledged as EXISTS (a request retried through another leader got its original answer);
 * every member's totals equal the sums of its acknowledged postings (earned, redeemed,
 * transferred in and out: nothing lost, nothing doubled) and its buckets add up; the ledger
 * audit (tools/audit_fold.c, what tally-audit verify runs) passes on every replica.
 *
 * A run is a pure function of its seed: a failing seed prints how to run it again, and runs the
 * same way every time (`--check` runs seeds twice and compares a fingerprint of every apply).
 *
 * Usage: sim [--seeds N] [--first S] [--seed S] [--check N] [--raw] [--verbose]
 * (--verbose says what happens; SIM_TRACE=1 with it adds every apply and the stub's log.)
 */
#include "../support.h"
#include "../../server/batch.h"
#include "../../server/raft_guard.h"

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "tally_errors.h"

#define NODES_MAX 5u
#define CLIENTS_MAX 6u
#define MEMBERS 32u
#define PROGRAM 1u
#define REQ_POSTINGS_MAX 8u           /* postings in one client request */
#define PROP_POSTINGS_MAX (CLIENTS_MAX * (MEMBERS + 2u))
#define ACKED_MAX 65536u
#define RUN_MS 30000u                 /* simulated time with traffic and faults */
#define SETTLE_MS 60000u              /* after healing: every request must be answered */
#define CLIENT_TIMEOUT_MS 2500u       /* an unanswered attempt is sent again */
#define LEDGER_MINUTES_PER_MS 1u      /* ledger time runs 60,000 times faster */
#define T0 UINT64_C(1767225600000)    /* 2026-01-01T00:00Z */

/* ---- seeded randomness ----------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return rnd() % n; }
static uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }

/* ---- the run's state ------------------------------------------------------------------------- */

struct node {
    unsigned i;
    char dir[128];
    struct engine *e;
    struct raft_fsm fsm;
    bool dead;               /* killed: restarts at restart_at */
    raft_time restart_at;
    int64_t skew_ms;         /* its clock against the simulation's (ledger ms) */
    uint64_t last_ts;        /* newest timestamp it proposed */
    raft_term ready_term;    /* the term whose barrier it has passed (serves then) */
    bool barrier_pending;
    struct raft_barrier barrier;
    raft_time last_proposal;
    unsigned inflight;
    struct engine_request *ereq;
    struct tally_result *scratch_results;
    uint8_t *scratch_status;
    raft_index base;              /* index of the first entry in the stub's log array */
    raft_index snapshot_emptying; /* a snapshot stored with no trailing entries, in flight */
    raft_index len;               /* entries in the stub's log array */
    bool faulty;
};

struct prop {
    struct raft_apply req;
    struct prop *next;       /* every proposal, freed at the end */
    int node;                /* -1 once its replica restarted (libraft forgot it) */
    bool done;               /* its callback ran */
    bool applied;            /* applied on its own replica: results are fresh */
    uint32_t nreq;
    unsigned client[CLIENTS_MAX];
    uint64_t request[CLIENTS_MAX];
    uint32_t first[CLIENTS_MAX];
    uint32_t count[CLIENTS_MAX];
    uint8_t status[CLIENTS_MAX];
    struct tally_result results[PROP_POSTINGS_MAX];
};

struct client {
    uint8_t id[16];
    uint64_t request;        /* the current request's number */
    bool waiting;            /* the current request is not answered yet */
    bool in_flight;          /* an attempt of it is with a replica */
    raft_time sent_at;
    uint32_t n;
    struct tally_posting postings[MEMBERS + 2u];
    bool fresh[MEMBERS + 2u]; /* first use of the id: never answered EXISTS */
};

struct acked {
    struct tally_posting p;
    uint32_t code;
    bool fresh;
};

struct stats {
    uint64_t partitions, drops, delays, crashes, disk_faults, fail_stops, snapshots_restored;
    uint64_t entries_reapplied; /* lost uncommitted by a crash, applied again from the log */
    uint64_t catch_ups, appends_rewritten, sends_deferred, snapshot_answers_raised;
    uint64_t requests, postings_acked, retries, entries, leader_changes;
};

static struct {
    uint64_t seed;
    bool verbose;
    unsigned n;
    struct raft_fixture f;
    struct node nodes[NODES_MAX];
    struct client clients[CLIENTS_MAX];
    unsigned nclients;
    struct prop *props;
    struct acked *acked;
    uint32_t nacked;
    uint64_t next_id;
    bool setup_done;         /* the program and members exist (client 0's first request) */
    /* Digest of each applied index, as the first replica to apply it had it. */
    uint8_t (*digests)[16];
    bool *digest_set;
    uint64_t digests_cap;
    XXH3_state_t *trace;     /* fingerprint of the run: every apply, in order */
    struct stats st;
    raft_id last_leader;
} S;

static struct stats totals;

#define FAIL(...)                                                                                 \
    do {                                                                                          \
        fprintf(stderr, "sim: seed %" PRIu64 " FAILED at t=%llu ms: ", S.seed,                    \
                (unsigned long long)S.f.time);                                                    \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fprintf(stderr, "\n  reproduce: sim --seed %" PRIu64 " --verbose\n", S.seed);            \
        exit(1);                                                                                  \
    } while (0)

#define SAY(...)                                                                                  \
    do {                                                                                          \
        if (S.verbose) {                                                                          \
            fprintf(stderr, "[%6llu] ", (unsigned long long)S.f.time);                            \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

static struct raft *raft_of(unsigned i) { return &S.f.servers[i].raft; }

/* ---- the state machine: what tallyd's replica.c does --------------------------------------- */

static struct prop *prop_of(unsigned node, uint64_t index)
{
    for (struct prop *p = S.props; p != NULL; p = p->next)
        if (!p->done && p->node == (int)node && p->req.index == index)
            return p;
    return NULL;
}

static void digest_check(unsigned node, uint64_t index)
{
    struct engine_status st;
    engine_status(S.nodes[node].e, &st);
    if (st.applied_index != index)
        FAIL("replica %u applied index %" PRIu64 " but the engine says %" PRIu64, node + 1,
             index, st.applied_index);
    if (index >= S.digests_cap) {
        uint64_t cap = S.digests_cap ? S.digests_cap * 2 : 4096;
        while (cap <= index)
            cap *= 2;
        S.digests = realloc(S.digests, cap * 16);
        S.digest_set = realloc(S.digest_set, cap);
        if (S.digests == NULL || S.digest_set == NULL)
            FAIL("out of memory");
        memset(S.digest_set + S.digests_cap, 0, cap - S.digests_cap);
        S.digests_cap = cap;
    }
    if (!S.digest_set[index]) {
        memcpy(S.digests[index], st.digest, 16);
        S.digest_set[index] = true;
    } else if (memcmp(S.digests[index], st.digest, 16) != 0) {
        FAIL("replica %u diverged: its digest at index %" PRIu64 " differs from another's",
             node + 1, index);
    }
    XXH3_64bits_update(S.trace, &node, sizeof(node));
    XXH3_64bits_update(S.trace, &index, sizeof(index));
    XXH3_64bits_update(S.trace, st.digest, 16);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct node *n = fsm->data;
    uint64_t index = raft_of(n->i)->last_applied + 1;
    struct batch_view b;
    if (batch_decode(buf->base, buf->len, &b) != 0)
        FAIL("replica %u: entry %" PRIu64 " does not decode", n->i + 1, index);
    struct prop *p = prop_of(n->i, index);
    if (getenv("SIM_TRACE"))
        SAY("replica %u applies %" PRIu64 " (kind %u, %u postings, ts %" PRIu64 ")", n->i + 1,
            index, b.h.kind, b.h.npostings, b.h.timestamp);
    int rc = batch_apply(n->e, index, &b, n->ereq, p ? p->results : n->scratch_results,
                         p ? p->status : n->scratch_status);
    if (rc < 0)
        FAIL("replica %u: the engine could not apply entry %" PRIu64 ": %s", n->i + 1, index,
             tally_strerror(rc));
    if (rc == 0) {
        digest_check(n->i, index);
        if (p != NULL)
            p->applied = true;
    }
    /* tallyd commits by age and size (replica.h REPLICA_COMMIT_MS); here at seeded moments,
     * so that crashes find anywhere from none to a dozen entries uncommitted. */
    if (below(4) == 0 && engine_commit(n->e) != 0)
        FAIL("replica %u: engine_commit at entry %" PRIu64, n->i + 1, index);
    *result = p;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *nbufs)
{
    struct node *n = fsm->data;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    struct batch_snapshot *s = raft_malloc(sizeof(*s));
    if (b == NULL || s == NULL)
        FAIL("out of memory");
    if (batch_snapshot_take(n->e, s) != 0)
        FAIL("replica %u: engine_sync", n->i + 1);
    *b = (struct raft_buffer){.base = s, .len = sizeof(*s)};
    *bufs = b;
    *nbufs = 1;
    return 0;
}

static void engine_start(struct node *n)
{
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;           /* a process crash keeps what was written; power loss is not
                                 simulated here (tests/engine/test_crash.c, real fsync) */
    o.defer_commit = true;    /* as tallyd: commits at seeded moments (fsm_apply) */
    o.map_size = 1u << 20;    /* small: map growth happens in the runs */
    o.member_cache = 256;
    o.turn_entries = 512;     /* small turns: write-back and recovery folds happen */
    int rc = engine_open(&n->e, n->dir, &o);
    if (rc != 0)
        FAIL("replica %u: engine_open: %s", n->i + 1, tally_strerror(rc));
}

/* Replace node n's ledger with a copy of `from`'s (a catch-up), or with its own crash image
 * (from == n). */
static void ledger_swap(struct node *n, struct node *from)
{
    char path[160], image[160];
    snprintf(image, sizeof(image), "%s/image.mdb", n->dir);
    int fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        FAIL("open %s", image);
    /* A catch-up copies what the peer applied (tallyd commits before a copy: replica.c); a
     * crash image is what the replica's file held, its uncommitted entries lost. */
    int rc = from == n ? 0 : engine_commit(from->e);
    if (rc == 0)
        rc = engine_copy(from->e, fd);
    close(fd);
    if (rc != 0)
        FAIL("engine_copy: %s", tally_strerror(rc));
    engine_close(n->e);
    n->e = NULL;
    snprintf(path, sizeof(path), "%s/lock.mdb", n->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/data.mdb", n->dir);
    if (rename(image, path) != 0)
        FAIL("rename %s", image);
    engine_start(n);
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct node *n = fsm->data;
    struct batch_snapshot s;
    if (buf->len != sizeof(s))
        FAIL("replica %u: snapshot of %zu bytes", n->i + 1, buf->len);
    memcpy(&s, buf->base, sizeof(s));
    S.st.snapshots_restored++;
    struct engine_status st;
    engine_status(n->e, &st);
    if (st.applied_index < s.applied_index) {
        /* Behind the snapshot: copy a ledger that has it (tallyd asks its peers over the
         * network, server/copies.h; here the peer with the most applied is read directly). */
        struct node *from = NULL;
        uint64_t best = 0;
        for (unsigned j = 0; j < S.n; j++) {
            struct engine_status o;
            if (j == n->i)
                continue;
            engine_status(S.nodes[j].e, &o);
            if (o.applied_index >= s.applied_index && o.applied_index > best) {
                best = o.applied_index;
                from = &S.nodes[j];
            }
        }
        if (from == NULL)
            FAIL("replica %u: no peer has applied snapshot index %" PRIu64, n->i + 1,
                 s.applied_index);
        SAY("replica %u catches up from replica %u (snapshot %" PRIu64 ", copy at %" PRIu64
            ")", n->i + 1, from->i + 1, s.applied_index, best);
        ledger_swap(n, from);
        S.st.catch_ups++;
        engine_status(n->e, &st);
        if (st.applied_index < s.applied_index)
            FAIL("replica %u: the copy is behind the snapshot", n->i + 1);
    }
    raft_free(buf->base);
    return 0;
}

/* ---- raft_fixture's stub disk, made restartable ----------------------------------------------
 *
 * The stub keeps a server's persisted log as an array it assumes starts at index 1: its truncate
 * keeps index - 1 entries, yet its load reports the entries as starting right after the snapshot,
 * and a snapshot stored with no trailing entries (an installed one) empties the array, after
 * which it starts right after that snapshot. A server that restarts after a snapshot would so
 * replay entries at the wrong indexes (found by this simulation: the digest check stopped at the
 * first entry applied on top of the shifted ones). libraft's own tests never restart a fixture
 * server. The wrappers below keep where the array starts (`base`) and translate. */

static int (*stub_load)(struct raft_io *, raft_term *, raft_id *, struct raft_snapshot **,
                        raft_index *, struct raft_entry **, size_t *);
static int (*stub_truncate)(struct raft_io *, raft_index);
static int (*stub_snapshot_put)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
                                const struct raft_snapshot *, raft_io_snapshot_put_cb);

static int (*stub_append)(struct raft_io *, struct raft_io_append *, const struct raft_entry *,
                          unsigned, raft_io_append_cb);

struct append_wrap {
    struct raft_io_append *req;
    raft_io_append_cb cb;
    unsigned node, n;
};
static struct append_wrap appends[256];

static unsigned node_of_io(const struct raft_io *io)
{
    for (unsigned i = 0; i < S.n; i++)
        if (&S.f.servers[i].io == io)
            return i;
    FAIL("an io that is no server's");
}

static int sim_load(struct raft_io *io, raft_term *term, raft_id *vote,
                    struct raft_snapshot **snapshot, raft_index *start, struct raft_entry **entries,
                    size_t *n)
{
    int rc = stub_load(io, term, vote, snapshot, start, entries, n);
    if (rc == 0) {
        *start = S.nodes[node_of_io(io)].base;
        if (*n != S.nodes[node_of_io(io)].len)
            FAIL("replica %u: the stub's log holds %zu entries, %llu expected",
                 node_of_io(io) + 1, *n, (unsigned long long)S.nodes[node_of_io(io)].len);
    }
    if (getenv("SIM_TRACE"))
        SAY("replica %u loads: base %llu, %zu entries, snapshot %llu", node_of_io(io) + 1,
            (unsigned long long)*start, *n, *snapshot ? (unsigned long long)(*snapshot)->index : 0);
    return rc;
}

static int sim_truncate(struct raft_io *io, raft_index index)
{
    struct node *n = &S.nodes[node_of_io(io)];
    if (getenv("SIM_TRACE"))
        SAY("replica %u truncates at %llu (base %llu, emptying %llu)", n->i + 1,
            (unsigned long long)index, (unsigned long long)n->base,
            (unsigned long long)n->snapshot_emptying);
    if (index == 1 && n->snapshot_emptying != 0) {
        /* The stub storing a snapshot without trailing entries: the array empties, and the next
         * entry appended is the one after the snapshot. */
        /* The stub ignores a failure of this truncation (an assert, compiled out): with an
         * injected fault it would keep the old entries under a stored snapshot. It is the
         * stub's own housekeeping, not an I/O libraft asked for: made to happen. */
        int rc = -1;
        for (unsigned tries = 0; rc != 0 && tries < 16; tries++)
            rc = stub_truncate(io, 1);
        if (rc != 0)
            FAIL("replica %u: the stub's log cannot be emptied", n->i + 1);
        n->base = n->snapshot_emptying + 1;
        n->len = 0;
        n->snapshot_emptying = 0;
        return 0;
    }
    if (index < n->base)
        FAIL("replica %u: truncate at %llu, before its log's start %llu", n->i + 1,
             (unsigned long long)index, (unsigned long long)n->base);
    int rc = stub_truncate(io, index - n->base + 1);
    if (rc == 0)
        n->len = index - n->base;
    return rc;
}

static int sim_snapshot_put(struct raft_io *io, unsigned trailing,
                            struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                            raft_io_snapshot_put_cb cb)
{
    struct node *n = &S.nodes[node_of_io(io)];
    if (getenv("SIM_TRACE"))
        SAY("replica %u stores snapshot %llu, trailing %u", n->i + 1,
            (unsigned long long)snapshot->index, trailing);
    if (trailing == 0) {
        if (n->snapshot_emptying != 0)
            FAIL("replica %u: two snapshots without trailing entries in flight", n->i + 1);
        n->snapshot_emptying = snapshot->index;
    }
    return stub_snapshot_put(io, trailing, req, snapshot, cb);
}

static bool raw; /* --raw: without server/raft_guard.h (reproduces the defects it defends) */

static void sim_append_cb(struct raft_io_append *req, int status)
{
    for (unsigned k = 0; k < 256; k++)
        if (appends[k].req == req) {
            struct append_wrap w = appends[k];
            appends[k].req = NULL;
            if (status == 0)
                S.nodes[w.node].len += w.n;
            if (getenv("SIM_TRACE"))
                SAY("replica %u append of %u done (%d), log %llu..%llu", w.node + 1, w.n, status,
                    (unsigned long long)S.nodes[w.node].base,
                    (unsigned long long)(S.nodes[w.node].base + S.nodes[w.node].len - 1));
            w.cb(req, status);
            return;
        }
    FAIL("an append callback of no append");
}

static int sim_append(struct raft_io *io, struct raft_io_append *req,
                      const struct raft_entry *entries, unsigned n, raft_io_append_cb cb)
{
    unsigned k = 0;
    while (k < 256 && appends[k].req != NULL)
        k++;
    if (k == 256)
        FAIL("too many appends in flight");
    appends[k] = (struct append_wrap){req, cb, node_of_io(io), n};
    int rc = stub_append(io, req, entries, n, sim_append_cb);
    if (rc != 0)
        appends[k].req = NULL;
    return rc;
}

static void stub_wrap(unsigned i)
{
    struct raft_io *io = &S.f.servers[i].io;
    stub_append = io->append;
    io->append = sim_append;
    stub_load = io->load;
    stub_truncate = io->truncate;
    stub_snapshot_put = io->snapshot_put;
    io->load = sim_load;
    io->truncate = sim_truncate;
    io->snapshot_put = sim_snapshot_put;
    S.nodes[i].base = 1;
    if (!raw && raft_guard_install(io) != 0)
        FAIL("raft_guard_install");
}

/* ---- clients ----------------------------------------------------------------------------- */

static uint64_t member_pick(void) { return between(1, MEMBERS); }

/* A new request for client c: random postings, sometimes an id already used (same body: EXISTS;
 * another body: ID_EXISTS_DIFFERENT). */
static void request_new(struct client *c, unsigned ci)
{
    c->request++;
    c->waiting = true;
    c->in_flight = false;
    c->sent_at = 0;
    c->n = 0;
    if (ci == 0 && c->request == 1) {
        struct tally_program_config cfg;
        config_default(&cfg);
        cfg.expiry = TALLY_EXPIRY_DAYS;
        cfg.expiry_n = 7;
        c->postings[c->n] = post_program(++S.next_id, PROGRAM, &cfg);
        c->fresh[c->n++] = true;
        for (uint64_t m = 1; m <= MEMBERS; m++) {
            c->postings[c->n] = post_open(++S.next_id, PROGRAM, m);
            c->fresh[c->n++] = true;
        }
        return;
    }
    uint32_t want = (uint32_t)between(1, REQ_POSTINGS_MAX);
    for (uint32_t k = 0; k < want; k++) {
        uint64_t roll = below(100), m = member_pick(), id = ++S.next_id;
        struct tally_posting p;
        bool fresh = true;
        if (roll < 35) {
            p = post_accrue(id, PROGRAM, m, between(1, 500), between(0, 300));
        } else if (roll < 45) {
            p = post_accrue_pending(id, PROGRAM, m, between(1, 400), 0,
                                    between(60, 48 * 60) * 60000);
        } else if (roll < 65) {
            p = post_redeem(id, PROGRAM, m, between(1, 300));
        } else if (roll < 75) {
            p = post_hold(id, PROGRAM, m, between(1, 200), between(5, 120) * 60000);
        } else if (roll < 80 && S.nacked > 0) {
            /* Release some earlier hold (any outcome: it may have timed out or be another
             * member's). */
            const struct acked *a = &S.acked[below(S.nacked)];
            uint64_t ref;
            memcpy(&ref, a->p.id + 8, 8);
            p = post_release(id, PROGRAM, a->p.account, __builtin_bswap64(ref));
        } else if (roll < 92) {
            uint64_t to = member_pick();
            if (to == m)
                to = m % MEMBERS + 1;
            p = post_transfer(id, PROGRAM, m, to, between(1, 200));
        } else if (S.nacked > 0) {
            /* An id used before: the same body again, or another body. */
            S.next_id--;
            const struct acked *a = &S.acked[below(S.nacked)];
            p = a->p;
            if (below(2) == 0)
                p.amount += 1;
            fresh = false;
        } else {
            p = post_accrue(id, PROGRAM, m, 10, 0);
        }
        c->postings[c->n] = p;
        c->fresh[c->n++] = fresh;
    }
}

static void ack(struct client *c, const struct tally_result *results)
{
    for (uint32_t k = 0; k < c->n; k++) {
        if (S.nacked == ACKED_MAX)
            FAIL("more acknowledged postings than the checker keeps");
        if (c->fresh[k] && results[k].code == TALLY_EXISTS)
            FAIL("a fresh posting was acknowledged as EXISTS: a retried request was applied "
                 "again instead of getting its original answer");
        S.acked[S.nacked++] = (struct acked){c->postings[k], results[k].code, c->fresh[k]};
    }
    S.st.postings_acked += c->n;
    c->waiting = false;
    c->in_flight = false;
}

static void applied_cb(struct raft_apply *req, int status, void *result)
{
    struct prop *p = req->data;
    (void)result;
    p->done = true;
    if (p->node >= 0)
        S.nodes[p->node].inflight--;
    for (uint32_t r = 0; r < p->nreq; r++) {
        struct client *c = &S.clients[p->client[r]];
        if (!c->waiting || c->request != p->request[r])
            continue; /* answered already, through another attempt */
        if (status != 0 || !p->applied) {
            c->in_flight = false; /* unknown: send it again */
            continue;
        }
        if (p->status[r] == ENGINE_REQUEST_OLD)
            FAIL("client %u request %" PRIu64 " answered OLD", p->client[r], p->request[r]);
        ack(c, &p->results[p->first[r]]);
    }
}

static uint64_t node_clock(struct node *n)
{
    uint64_t now = T0 + (uint64_t)S.f.time * 60000u * LEDGER_MINUTES_PER_MS;
    now = (uint64_t)((int64_t)now + n->skew_ms);
    if (now < n->last_ts)
        now = n->last_ts;
    n->last_ts = now;
    return now;
}

/* Propose one entry on node n: the clients' requests waiting to be sent (or a tick). */
static void propose(struct node *n, bool tick)
{
    struct prop *p = calloc(1, sizeof(*p));
    if (p == NULL)
        FAIL("out of memory");
    uint32_t npostings = 0;
    for (unsigned ci = 0; ci < S.nclients && !tick; ci++) {
        struct client *c = &S.clients[ci];
        if (!c->waiting || c->in_flight)
            continue;
        if (ci != 0 && !S.setup_done)
            continue;
        p->client[p->nreq] = ci;
        p->request[p->nreq] = c->request;
        p->first[p->nreq] = npostings;
        p->count[p->nreq] = c->n;
        p->nreq++;
        npostings += c->n;
    }
    if (p->nreq == 0 && !tick) {
        free(p);
        return;
    }
    size_t size = batch_size(p->nreq, npostings);
    uint8_t *payload = raft_malloc(size);
    if (payload == NULL)
        FAIL("out of memory");
    struct batch_header h = {.magic = BATCH_MAGIC, .version = BATCH_VERSION,
                             .kind = (uint16_t)(p->nreq ? BATCH_POSTS : BATCH_TICK),
                             .timestamp = node_clock(n), .nrequests = p->nreq,
                             .npostings = npostings};
    memcpy(payload, &h, sizeof(h));
    uint8_t *at = payload + sizeof(h);
    for (uint32_t r = 0; r < p->nreq; r++) {
        struct client *c = &S.clients[p->client[r]];
        struct batch_request q = {.request = c->request, .count = c->n};
        memcpy(q.client_id, c->id, 16);
        memcpy(at, &q, sizeof(q));
        at += sizeof(q);
    }
    for (uint32_t r = 0; r < p->nreq; r++) {
        struct client *c = &S.clients[p->client[r]];
        memcpy(at, c->postings, (size_t)c->n * sizeof(struct tally_posting));
        at += (size_t)c->n * sizeof(struct tally_posting);
    }
    batch_seal(payload, size);
    struct raft_buffer buf = {.base = payload, .len = size};
    p->node = (int)n->i;
    p->req.data = p;
    int rc = raft_apply(raft_of(n->i), &p->req, &buf, 1, applied_cb);
    if (rc != 0) {
        raft_free(payload);
        free(p);
        return;
    }
    p->next = S.props;
    S.props = p;
    n->inflight++;
    n->last_proposal = S.f.time;
    for (uint32_t r = 0; r < p->nreq; r++) {
        struct client *c = &S.clients[p->client[r]];
        if (c->sent_at != 0)
            S.st.retries++;
        c->in_flight = true;
        c->sent_at = S.f.time;
    }
    S.st.requests += p->nreq;
}

/* ---- leaders ------------------------------------------------------------------------------- */

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct node *n = req->data;
    n->barrier_pending = false;
    struct raft *r = raft_of(n->i);
    if (status == 0 && raft_state(r) == RAFT_LEADER)
        n->ready_term = r->current_term;
}

/* A replica that leads serves once a barrier of its term has applied (replica.c). */
static bool serving(unsigned i)
{
    struct node *n = &S.nodes[i];
    struct raft *r = raft_of(i);
    if (n->dead || raft_state(r) != RAFT_LEADER)
        return false;
    if (n->ready_term == r->current_term)
        return true;
    if (!n->barrier_pending) {
        n->barrier.data = n;
        if (raft_barrier(r, &n->barrier, barrier_cb) == 0)
            n->barrier_pending = true;
    }
    return false;
}

/* Clients post through a replica that believes it leads (a stale leader too: a client cannot
 * tell); the setup request goes first. */
static void clients_step(void)
{
    unsigned leaders[NODES_MAX], nl = 0;
    for (unsigned i = 0; i < S.n; i++)
        if (serving(i))
            leaders[nl++] = i;
    for (unsigned ci = 0; ci < S.nclients; ci++) {
        struct client *c = &S.clients[ci];
        if (c->in_flight && S.f.time - c->sent_at > CLIENT_TIMEOUT_MS)
            c->in_flight = false; /* no answer: send the same request again */
        if (!c->waiting && (ci == 0 || S.setup_done) && S.f.time < RUN_MS && below(3) == 0)
            request_new(c, ci);
    }
    if (!S.setup_done && !S.clients[0].waiting && S.clients[0].request >= 1)
        S.setup_done = true;
    if (nl == 0)
        return;
    struct node *n = &S.nodes[leaders[below(nl)]];
    if (n->inflight < 4)
        propose(n, false);
    /* An idle leader ticks, so time-driven work happens without traffic. */
    for (unsigned k = 0; k < nl; k++) {
        struct node *l = &S.nodes[leaders[k]];
        if (S.f.time - l->last_proposal >= 1000 && l->inflight == 0)
            propose(l, true);
    }
}

/* ---- faults --------------------------------------------------------------------------------- */

struct fault {
    int kind;                /* 0 none */
    raft_time until;
    unsigned a, b;
    bool group[NODES_MAX];
};

enum { F_PARTITION = 1, F_DROP, F_DELAY };

static struct fault active[4];

/* Saturate or clear the link i -> j. A dead replica's links stay saturated (that is how
 * raft_fixture_kill cuts it off) until it restarts. */
static void link_set(unsigned i, unsigned j, bool saturate)
{
    if (!saturate && (S.nodes[i].dead || S.nodes[j].dead))
        return;
    if (saturate && !raft_fixture_saturated(&S.f, i, j))
        raft_fixture_saturate(&S.f, i, j);
    else if (!saturate && raft_fixture_saturated(&S.f, i, j))
        raft_fixture_desaturate(&S.f, i, j);
}

static void fault_heal(struct fault *ft)
{
    switch (ft->kind) {
    case F_PARTITION:
        for (unsigned i = 0; i < S.n; i++)
            for (unsigned j = 0; j < S.n; j++)
                if (i != j && ft->group[i] != ft->group[j])
                    link_set(i, j, false);
        SAY("partition healed");
        break;
    case F_DROP:
        link_set(ft->a, ft->b, false);
        SAY("link %u->%u healed", ft->a + 1, ft->b + 1);
        break;
    case F_DELAY:
        raft_fixture_set_network_latency(&S.f, ft->a, 15);
        SAY("replica %u latency back to 15 ms", ft->a + 1);
        break;
    }
    ft->kind = 0;
}

static bool link_busy(unsigned i, unsigned j)
{
    for (unsigned k = 0; k < 4; k++) {
        const struct fault *ft = &active[k];
        if ((ft->kind == F_PARTITION && ft->group[i] != ft->group[j]) ||
            (ft->kind == F_DROP && ft->a == i && ft->b == j))
            return true;
    }
    return false;
}

static void crash(unsigned i)
{
    struct node *n = &S.nodes[i];
    raft_fixture_kill(&S.f, i);
    n->dead = true;
    /* Its in-flight disk writes and sends complete first (the stub completes them whether the
     * server is alive or not): then nothing of the old instance is left in the fixture. */
    n->restart_at = S.f.time + between(1000, 4000);
    S.st.crashes++;
    SAY("replica %u crashes", i + 1);
}

static void closed_cb(struct raft *r) { (void)r; }

static void restart(unsigned i)
{
    struct node *n = &S.nodes[i];
    struct raft_fixture_server *s = &S.f.servers[i];
    raft_guard_flush(&s->io);
    raft_close(&s->raft, closed_cb);
    for (struct prop *p = S.props; p != NULL; p = p->next)
        if (p->node == (int)i) {
            if (!p->done)
                n->inflight--;
            p->node = -1; /* the new instance knows nothing of it */
            p->done = true;
        }
    if (n->inflight != 0)
        FAIL("replica %u: %u proposals unaccounted for", i + 1, n->inflight);
    /* The engine as a killed process leaves it: a crash image (its last commit), recovered at
     * open, with the digest every replica had at that index; Raft applies the rest again. */
    struct engine_status before, after;
    engine_status(n->e, &before);
    ledger_swap(n, n);
    engine_status(n->e, &after);
    if (after.applied_index != before.committed_index ||
        (after.applied_index > 0 && (!S.digest_set[after.applied_index] ||
                                     memcmp(S.digests[after.applied_index], after.digest, 16))))
        FAIL("replica %u: the ledger recovered from its crash image differs (applied %" PRIu64
             ", committed %" PRIu64 " -> %" PRIu64 ")",
             i + 1, before.applied_index, before.committed_index, after.applied_index);
    S.st.entries_reapplied += before.applied_index - after.applied_index;
    raft_fixture_io_fault(&S.f, i, -1, 0); /* a fault left from before the crash is gone */
    n->faulty = false;
    int rc = raft_init(&s->raft, &s->io, &n->fsm, s->id, s->address);
    if (rc != 0)
        FAIL("raft_init: %d", rc);
    s->raft.tracer = &s->tracer;
    raft_set_election_timeout(&s->raft, 1000);
    raft_set_heartbeat_timeout(&s->raft, 100);
    raft_set_snapshot_threshold(&s->raft, (unsigned)between(8, 64));
    raft_set_snapshot_trailing(&s->raft, (unsigned)between(2, 32));
    raft_set_pre_vote(&s->raft, below(2) == 0);
    raft_set_install_snapshot_timeout(&s->raft, 5000);
    raft_fixture_set_randomized_election_timeout(&S.f, i, (unsigned)between(1000, 1999));
    n->ready_term = 0;
    n->barrier_pending = false;
    n->last_ts = 0;
    if ((rc = raft_start(&s->raft)) != 0)
        FAIL("replica %u: raft_start: %d %s", i + 1, rc, raft_errmsg(&s->raft));
    raft_fixture_revive(&S.f, i);
    n->dead = false;
    /* revive connects it to every live replica: the faults in force cut it again. */
    for (unsigned j = 0; j < S.n; j++)
        if (j != i) {
            if (link_busy(i, j))
                link_set(i, j, true);
            if (link_busy(j, i))
                link_set(j, i, true);
        }
    SAY("replica %u restarted (term %llu, log from %llu)", i + 1,
        (unsigned long long)s->raft.current_term,
        (unsigned long long)s->raft.last_applied);
}

static void faults_step(bool allowed)
{
    for (unsigned k = 0; k < 4; k++)
        if (active[k].kind != 0 && (S.f.time >= active[k].until || !allowed))
            fault_heal(&active[k]);
    if (!allowed) /* disk faults armed earlier and not fired yet are disarmed */
        for (unsigned i = 0; i < S.n; i++)
            if (S.nodes[i].faulty && !S.nodes[i].dead) {
                raft_fixture_io_fault(&S.f, i, -1, 0);
                S.nodes[i].faulty = false;
            }
    for (unsigned i = 0; i < S.n; i++)
        if (S.nodes[i].dead && S.f.time >= S.nodes[i].restart_at)
            restart(i);
    /* raft_fixture's io->random answers a fixed value per server: left alone, replicas whose
     * values are close split the vote again and again. Redrawn here, as libraft draws anew at
     * every election with a real random source. */
    for (unsigned i = 0; i < S.n; i++)
        raft_fixture_set_randomized_election_timeout(&S.f, i, (unsigned)between(1000, 1999));
    /* A replica whose Raft log write failed is left RAFT_UNAVAILABLE by libraft 0.15: tallyd
     * stops it (fail-stop, replica.c poll_cb) and its supervisor starts it again. */
    for (unsigned i = 0; i < S.n; i++)
        if (!S.nodes[i].dead && raft_state(raft_of(i)) == RAFT_UNAVAILABLE) {
            SAY("replica %u: Raft unavailable after a disk fault: fail-stop", i + 1);
            S.st.fail_stops++;
            crash(i);
            S.st.crashes--;
        }
    if (!allowed || below(40) != 0)
        return;
    unsigned k = 0;
    while (k < 4 && active[k].kind != 0)
        k++;
    unsigned dead = 0;
    for (unsigned i = 0; i < S.n; i++)
        dead += S.nodes[i].dead;
    uint64_t roll = below(100);
    if (roll < 25 && k < 4) {
        struct fault *ft = &active[k];
        memset(ft, 0, sizeof(*ft));
        /* The leader alone, or a random minority, on the other side. */
        unsigned leader = raft_fixture_leader_index(&S.f);
        if (leader < S.n && below(2) == 0) {
            ft->group[leader] = true;
        } else {
            unsigned size = (unsigned)between(1, (S.n - 1) / 2);
            for (unsigned m = 0; m < size; m++)
                ft->group[below(S.n)] = true;
        }
        for (unsigned i = 0; i < S.n; i++)
            for (unsigned j = 0; j < S.n; j++)
                if (i != j && ft->group[i] != ft->group[j] && !link_busy(i, j))
                    link_set(i, j, true);
        ft->kind = F_PARTITION;
        ft->until = S.f.time + between(300, 5000);
        S.st.partitions++;
        SAY("partition: %s%s%s%s%s | the rest, for %llu ms", ft->group[0] ? "1 " : "",
            ft->group[1] ? "2 " : "", ft->group[2] ? "3 " : "", S.n > 3 && ft->group[3] ? "4 " : "",
            S.n > 4 && ft->group[4] ? "5 " : "", (unsigned long long)(ft->until - S.f.time));
    } else if (roll < 40 && k < 4) {
        struct fault *ft = &active[k];
        memset(ft, 0, sizeof(*ft));
        ft->a = (unsigned)below(S.n);
        ft->b = (unsigned)((ft->a + between(1, S.n - 1)) % S.n);
        if (link_busy(ft->a, ft->b))
            return;
        link_set(ft->a, ft->b, true);
        ft->kind = F_DROP;
        ft->until = S.f.time + between(200, 4000);
        S.st.drops++;
        SAY("link %u->%u drops everything", ft->a + 1, ft->b + 1);
    } else if (roll < 55 && k < 4) {
        struct fault *ft = &active[k];
        memset(ft, 0, sizeof(*ft));
        ft->a = (unsigned)below(S.n);
        for (unsigned j = 0; j < 4; j++)
            if (active[j].kind == F_DELAY && active[j].a == ft->a)
                return;
        raft_fixture_set_network_latency(&S.f, ft->a, (unsigned)between(40, 600));
        ft->kind = F_DELAY;
        ft->until = S.f.time + between(500, 5000);
        S.st.delays++;
        SAY("replica %u messages delayed", ft->a + 1);
    } else if (roll < 80) {
        /* Crash one replica, never more than a minority at once; the leader half the time. */
        if (dead + 1 > (S.n - 1) / 2)
            return;
        unsigned leader = raft_fixture_leader_index(&S.f);
        unsigned i = leader < S.n && below(2) == 0 ? leader : (unsigned)below(S.n);
        if (!S.nodes[i].dead)
            crash(i);
    } else if (roll < 90) {
        unsigned i = (unsigned)below(S.n);
        if (S.nodes[i].dead)
            return;
        raft_fixture_io_fault(&S.f, i, (int)between(0, 20), (int)between(1, 3));
        S.nodes[i].faulty = true;
        S.st.disk_faults++;
        SAY("replica %u: disk faults injected", i + 1);
    }
}

/* ---- one run -------------------------------------------------------------------------------- */

static bool all_answered(void)
{
    for (unsigned ci = 0; ci < S.nclients; ci++)
        if (S.clients[ci].waiting)
            return false;
    return true;
}

/* What each replica's Raft says, for a failure message. */
static void dump_rafts(void)
{
    for (unsigned i = 0; i < S.n; i++) {
        struct raft *r = raft_of(i);
        fprintf(stderr, "  replica %u: state %d term %llu applied %llu commit %llu last %llu%s\n",
                i + 1, raft_state(r), (unsigned long long)r->current_term,
                (unsigned long long)r->last_applied, (unsigned long long)r->commit_index,
                (unsigned long long)raft_last_index(r), S.nodes[i].dead ? " dead" : "");
    }
}

static bool none_dead(void)
{
    for (unsigned i = 0; i < S.n; i++)
        if (S.nodes[i].dead)
            return false;
    return true;
}

static void step(void)
{
    raft_fixture_step(&S.f);
    for (unsigned i = 0; i < S.n; i++)
        raft_guard_flush(&S.f.servers[i].io);
    unsigned l = raft_fixture_leader_index(&S.f);
    if (l < S.n && S.f.servers[l].id != S.last_leader) {
        S.last_leader = S.f.servers[l].id;
        S.st.leader_changes++;
        SAY("replica %u leads (term %llu)", l + 1,
            (unsigned long long)raft_of(l)->current_term);
    }
}

static void check_end(void)
{
    /* Every replica at the same index with the same digest. */
    struct engine_status st0;
    engine_status(S.nodes[0].e, &st0);
    for (unsigned i = 1; i < S.n; i++) {
        struct engine_status st;
        engine_status(S.nodes[i].e, &st);
        if (st.applied_index != st0.applied_index || memcmp(st.digest, st0.digest, 16) != 0)
            FAIL("replicas 1 and %u end apart: index %" PRIu64 " vs %" PRIu64, i + 1,
                 st0.applied_index, st.applied_index);
    }
    S.st.entries = st0.entries;
    /* Every acknowledged posting with its result, everywhere; the totals it implies. */
    struct expect {
        uint64_t earned, redeemed, in, out;
    } want[MEMBERS + 1];
    memset(want, 0, sizeof(want));
    for (uint32_t k = 0; k < S.nacked; k++) {
        const struct acked *a = &S.acked[k];
        if (!a->fresh)
            continue; /* a repeat: its effect is its original's */
        for (unsigned i = 0; i < S.n; i++) {
            struct engine_posting_info info;
            int rc = engine_posting(S.nodes[i].e, a->p.id, &info);
            bool recorded = tally_result_recorded(a->code);
            if (recorded && (rc != 0 || info.code != a->code))
                FAIL("replica %u: acknowledged posting %" PRIu32 " (code %u) recorded as %d/%u",
                     i + 1, k, a->code, rc, rc == 0 ? info.code : 0);
            if (!recorded && rc == 0)
                FAIL("replica %u: posting %" PRIu32 " answered %u is recorded", i + 1, k,
                     a->code);
        }
        if (a->code != TALLY_OK)
            continue;
        const struct tally_posting *p = &a->p;
        switch (p->kind) {
        case TALLY_KIND_ACCRUE: want[p->account].earned += p->amount; break;
        case TALLY_KIND_REDEEM: want[p->account].redeemed += p->amount; break;
        case TALLY_KIND_TRANSFER:
            want[p->account].out += p->amount;
            want[p->account2].in += p->amount;
            break;
        default: break;
        }
    }
    for (unsigned i = 0; i < S.n; i++)
        for (uint64_t m = 1; m <= MEMBERS; m++) {
            struct tally_account acc;
            int rc = engine_account(S.nodes[i].e, PROGRAM, m, &acc);
            if (rc != 0)
                FAIL("replica %u: member %" PRIu64 ": %s", i + 1, m, tally_strerror(rc));
            if (acc.earned != want[m].earned || acc.redeemed != want[m].redeemed ||
                acc.transferred_in != want[m].in || acc.transferred_out != want[m].out)
                FAIL("replica %u member %" PRIu64 ": earned %" PRIu64 " redeemed %" PRIu64
                     " in %" PRIu64 " out %" PRIu64 ", the acknowledged postings say %" PRIu64
                     " %" PRIu64 " %" PRIu64 " %" PRIu64,
                     i + 1, m, acc.earned, acc.redeemed, acc.transferred_in,
                     acc.transferred_out, want[m].earned, want[m].redeemed, want[m].in,
                     want[m].out);
            int64_t points = acc.available + (int64_t)acc.pending + (int64_t)acc.held;
            int64_t flows = (int64_t)(acc.earned - acc.redeemed - acc.expired) + acc.adjusted +
                            (int64_t)acc.transferred_in - (int64_t)acc.transferred_out;
            if (points != flows)
                FAIL("replica %u member %" PRIu64 ": buckets %" PRId64 " != flows %" PRId64,
                     i + 1, m, points, flows);
        }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* The replicas' directories go when the run ends, failed or not (atexit), unless
 * TALLY_TEST_KEEP is set. Only ever directories this run made ("tally-test-" ones). */
static void dirs_remove(void)
{
    for (unsigned i = 0; i < NODES_MAX; i++) {
        char *dir = S.nodes[i].dir;
        if (dir[0] == '\0' || strstr(dir, "/tally-test-") == NULL)
            continue;
        if (getenv("TALLY_TEST_KEEP") != NULL)
            fprintf(stderr, "kept %s\n", dir);
        else
            nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        dir[0] = '\0';
    }
}

static uint64_t run(uint64_t seed)
{
    memset(&S, 0, sizeof(S));
    memset(active, 0, sizeof(active));
    S.seed = seed;
    rng_state = seed * UINT64_C(0x2545f4914f6cdd1d) + 1;
    S.verbose = getenv("SIM_VERBOSE") != NULL;
    S.n = below(4) == 0 ? 5 : 3;
    S.nclients = (unsigned)between(2, CLIENTS_MAX);
    S.acked = malloc(ACKED_MAX * sizeof(*S.acked));
    S.trace = XXH3_createState();
    if (S.acked == NULL || S.trace == NULL)
        FAIL("out of memory");
    XXH3_64bits_reset(S.trace);
    for (unsigned ci = 0; ci < S.nclients; ci++) {
        S.clients[ci].id[0] = (uint8_t)(ci + 1);
        S.clients[ci].id[15] = 0x51;
    }
    if (raft_fixture_initialize(&S.f) != 0)
        FAIL("raft_fixture_initialize");
    for (unsigned i = 0; i < S.n; i++) {
        struct node *n = &S.nodes[i];
        n->i = i;
        const char *tmp = getenv("TMPDIR");
        snprintf(n->dir, sizeof(n->dir), "%s/tally-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(n->dir) == NULL)
            FAIL("mkdtemp");
        engine_start(n);
        n->ereq = malloc(BATCH_REQUESTS_MAX * sizeof(*n->ereq));
        n->scratch_results = malloc(TALLY_BATCH_MAX * sizeof(*n->scratch_results));
        n->scratch_status = malloc(BATCH_REQUESTS_MAX);
        if (n->ereq == NULL || n->scratch_results == NULL || n->scratch_status == NULL)
            FAIL("out of memory");
        n->fsm = (struct raft_fsm){.version = 1, .data = n, .apply = fsm_apply,
                                   .snapshot = fsm_snapshot, .restore = fsm_restore};
        n->skew_ms = (int64_t)between(0, 6 * 3600000) - 3 * 3600000;
        if (raft_fixture_grow(&S.f, &n->fsm) != 0)
            FAIL("raft_fixture_grow");
        stub_wrap(i);
        struct raft *r = raft_of(i);
        raft_set_snapshot_threshold(r, (unsigned)between(8, 64));
        raft_set_snapshot_trailing(r, (unsigned)between(2, 32));
        raft_set_pre_vote(r, below(2) == 0);
        raft_set_install_snapshot_timeout(r, 5000); /* tallyd's REPLICA_INSTALL_SNAPSHOT_MS */
        raft_fixture_set_randomized_election_timeout(&S.f, i, (unsigned)between(1000, 1999));
        raft_fixture_set_disk_latency(&S.f, i, (unsigned)between(1, 30));
    }
    struct raft_configuration conf;
    if (raft_fixture_configuration(&S.f, S.n, &conf) != 0 ||
        raft_fixture_bootstrap(&S.f, &conf) != 0)
        FAIL("fixture bootstrap");
    raft_configuration_close(&conf);
    for (unsigned i = 0; i < S.n; i++)
        S.nodes[i].len = 1; /* the bootstrap configuration, written straight to the stub */
    if (raft_fixture_start(&S.f) != 0)
        FAIL("fixture start");

    /* Traffic and faults; then healed, until every request is answered. */
    raft_time next_client = 0, next_fault = 0;
    while (S.f.time < RUN_MS + SETTLE_MS) {
        bool faulty = S.f.time < RUN_MS;
        if (S.f.time >= next_fault || !faulty) {
            faults_step(faulty);
            next_fault = S.f.time + 50;
        }
        if (S.f.time >= next_client) {
            clients_step();
            next_client = S.f.time + between(2, 20);
        }
        if (!faulty && all_answered() && none_dead())
            break;
        step();
    }
    if (!all_answered()) {
        dump_rafts();
        FAIL("requests still unanswered %u s after the faults were healed", SETTLE_MS / 1000);
    }
    /* Every live replica applies what the leader committed. */
    raft_time until = S.f.time + 30000;
    for (;;) {
        unsigned l = raft_fixture_leader_index(&S.f);
        /* A leader knows the commit index once an entry of its own term committed (its
         * barrier): before, a restarted replica's ledger may be ahead of what it reports. */
        bool same = l < S.n && serving(l);
        struct engine_status lst;
        if (same)
            engine_status(S.nodes[l].e, &lst);
        for (unsigned i = 0; same && i < S.n; i++) {
            struct engine_status ist;
            engine_status(S.nodes[i].e, &ist);
            same = raft_of(i)->last_applied == raft_of(l)->commit_index &&
                   raft_of(l)->last_applied == raft_of(l)->commit_index &&
                   ist.applied_index == lst.applied_index;
        }
        if (same)
            break;
        faults_step(false); /* a replica that failed stop meanwhile is restarted */
        if (S.f.time > until) {
            dump_rafts();
            FAIL("replicas did not converge within 30 s of the last answer");
        }
        step();
    }
    check_end();
    uint64_t print = XXH3_64bits_digest(S.trace);
    for (unsigned i = 0; i < S.n; i++) {
        struct raft_guard_stats gs;
        raft_guard_stats(&S.f.servers[i].io, &gs);
        S.st.appends_rewritten += gs.appends_rewritten;
        S.st.sends_deferred += gs.sends_deferred;
        S.st.snapshot_answers_raised += gs.snapshot_answers_raised;
        raft_guard_remove(&S.f.servers[i].io);
    }

    raft_fixture_close(&S.f);
    while (S.props != NULL) {
        struct prop *p = S.props;
        S.props = p->next;
        free(p);
    }
    for (unsigned i = 0; i < S.n; i++) {
        struct node *n = &S.nodes[i];
        engine_close(n->e);
        struct audit_report rep;
        int rc = audit_verify(n->dir, &rep);
        if (rc != 0 || !rep.ok)
            FAIL("replica %u: the audit of its ledger fails (%d): %s", i + 1, rc, rep.what);
        free(n->ereq);
        free(n->scratch_results);
        free(n->scratch_status);
    }
    dirs_remove();
    free(S.acked);
    free(S.digests);
    free(S.digest_set);
    XXH3_freeState(S.trace);
    if (S.verbose)
        fprintf(stderr,
                "seed %" PRIu64 ": %u replicas, %u clients, %" PRIu64 " postings acknowledged, "
                "%" PRIu64 " entries\n", seed, S.n, S.nclients, S.st.postings_acked,
                S.st.entries);
    uint64_t *t = (uint64_t *)(void *)&totals, *s = (uint64_t *)(void *)&S.st;
    for (size_t k = 0; k < sizeof(totals) / sizeof(uint64_t); k++)
        t[k] += s[k];
    return print;
}

int main(int argc, char **argv)
{
    uint64_t first = 1, count = 200, check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            count = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--first") && i + 1 < argc)
            first = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            first = strtoull(argv[++i], NULL, 10), count = 1;
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            check = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--raw"))
            raw = true;
        else if (!strcmp(argv[i], "--verbose"))
            setenv("SIM_VERBOSE", "1", 1);
        else {
            fprintf(stderr, "usage: sim [--seeds N] [--first S] [--seed S] [--check N] "
                            "[--raw] [--verbose]\n");
            return 2;
        }
    }
    atexit(dirs_remove); /* a failed run exits through FAIL */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t s = first; s < first + count; s++) {
        uint64_t print = run(s);
        if (s < first + check) {
            struct stats keep = totals;
            if (run(s) != print)
                FAIL("the same seed ran differently twice (not deterministic)");
            totals = keep;
        }
        if (!S.verbose && count >= 1000 && (s - first + 1) % 1000 == 0)
            fprintf(stderr, "sim: %" PRIu64 " seeds passed\n", s - first + 1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 ") passed in %.1f s; %" PRIu64
           " rerun and identical\n"
           "  faults: %" PRIu64 " partitions, %" PRIu64 " one-way drops, %" PRIu64
           " delays, %" PRIu64 " crashes+restarts, %" PRIu64 " disk-fault bursts (%" PRIu64
           " fail-stops after them), %" PRIu64 " uncommitted entries lost and applied again\n"
           "  %" PRIu64 " snapshots restored, %" PRIu64 " catch-ups from a copy, %" PRIu64
           " leader changes\n"
           "  %" PRIu64 " requests sent (%" PRIu64 " resent), %" PRIu64
           " postings acknowledged, %" PRIu64 " entries\n"
           "  libraft 0.15 defects defused (server/raft_guard.h): %" PRIu64
           " AppendEntries rewritten, %" PRIu64 " refused sends deferred, %" PRIu64
           " snapshot answers raised\n",
           count, first, first + count - 1, secs, check < count ? check : count,
           totals.partitions, totals.drops, totals.delays, totals.crashes, totals.disk_faults,
           totals.fail_stops, totals.entries_reapplied, totals.snapshots_restored, totals.catch_ups, totals.leader_changes, totals.requests,
           totals.retries, totals.postings_acked, totals.entries,
           totals.appends_rewritten, totals.sends_deferred, totals.snapshot_answers_raised);
    return 0;
}
