/* replica.h: one replica of a tally cluster: canonical Raft (libraft 0.15, raft_uv) with the
 * ledger engine as its state machine, and the leader's batching of client requests.
 *
 * What it guarantees
 * ------------------
 * A request submitted on the leader is answered (done callback) only once the entry carrying it
 * is committed by a majority and applied: acknowledged means replicated and durable (law 5).
 * Requests of many clients are packed into one entry (group commit): the replica proposes at
 * once when nothing is in flight, a second entry beside it only when that one is full, and
 * otherwise gathers what arrives (in up to REPLICA_GATHER_MAX slots of TALLY_BATCH_MAX postings
 * each, beyond which a request is answered BUSY) until an entry completes. An idle
 * leader proposes a tick entry every tick_ms, so time-driven work (expiry, hold timeouts,
 * activation, tiers) happens without traffic. Every entry carries the leader's clock, never
 * behind the previous entry's; under REPLICA_CLOCK_CLIENT the clients' instead (enum
 * replica_clock).
 *
 * Defences against known libraft 0.15 issues (BRIEF §3): payloads padded to 8 bytes (batch.h);
 * raft_uv auto-recovery off (a corrupt log stops the node); a new leader applies a barrier
 * before it serves reads or accepts requests (replica_ready); the FSM's index is
 * raft->last_applied + 1, skipped when the engine has it already (restart replay); business
 * outcomes are results, and apply only fails (stopping the replica) on a system error or an
 * entry that does not decode; a leadership loss fails pending requests with TALLY_ENOT_LEADER,
 * though their entry may still commit: only the sessions' reply cache makes the client's retry
 * safe.
 *
 * Snapshots and catch-up: a Raft snapshot carries only the applied index and the digest, taken
 * after engine_sync, so the log before it can be dropped; the ledger itself is the LMDB file,
 * which may be far larger than memory. When libraft restores such a snapshot on a replica whose
 * ledger is behind it (the replica fell behind the leader's log start, or its data directory was
 * wiped), the replica fetches a whole ledger copy from a peer (the LEDGER operation: leader
 * first, then the others; server/copies.h serves it), checks its XXH3-128, swaps it in for its
 * own ledger (ledger.incoming -> ledger, the old one kept as ledger.old until the new one opens;
 * a crash in between is rolled back at the next start), and goes on from the copy's applied index
 * (which may be past the snapshot's: the entries in between are skipped as already applied).
 * The loop is blocked meanwhile (the replica is behind anyway; pre-vote keeps it from disturbing
 * the others). If no peer can give a copy within REPLICA_CATCH_UP_MS, the replica stops with a
 * clear message, and its next start tries again (libraft restores the snapshot at start).
 */
#ifndef TALLY_SERVER_REPLICA_H
#define TALLY_SERVER_REPLICA_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "tally_wire.h"

#define REPLICA_PEERS_MAX 7u
/* Entries in flight (proposed, not yet applied) at most. The second goes only when the
 * gathering entry is full (replica.c, gather_ready): small requests wait for the one in flight
 * and ride the next, larger entry; full batches keep two in flight, one replicating while the
 * other applies. Three and four were tried (docs/BENCHMARKS.md): more, smaller entries. */
#define REPLICA_INFLIGHT_MAX 2u
/* Slots gathering requests behind the entries in flight (each one entry's worth, up to
 * TALLY_BATCH_MAX postings): beyond them a request is answered BUSY. Four: a peak of clients
 * sending full batches (8,190 postings, one entry each) keeps two in flight and up to four
 * waiting, so six such clients are served without a BUSY, each waiting its turn; with one
 * gathering slot, as until 2026-12-07, every client past the third was answered BUSY again and
 * again, resending its megabyte after each backoff (docs/BENCHMARKS.md, "Gathering slots"). */
#define REPLICA_GATHER_MAX 4u
#define REPLICA_SLOTS (REPLICA_INFLIGHT_MAX + REPLICA_GATHER_MAX)
/* Postings the replica holds that are not in flight: the front sizes its table of pending POSTs
 * from it (front.c, FRONT_PENDING_MAX). */
#define REPLICA_QUEUE_MAX (REPLICA_GATHER_MAX * TALLY_BATCH_MAX)
/* Defaults of replica_options.snapshot_threshold / snapshot_trailing: a snapshot every 1,024
 * entries, keeping 1,024 entries of log behind it, so a replica that was away for less than
 * that catches up from the log, not from a copy. libraft holds its whole log in memory, so the
 * two bound the log's memory: at most threshold + trailing entries of up to 1 MiB each (2 GiB
 * under full 8,190-posting batches; group-committed entries are usually far smaller). The tail
 * was 8,192 until the scale run (docs/BENCHMARKS.md, "Scale") grew each replica's RSS by 1 GiB
 * per 1,000 full entries on its way to 9 GiB. */
#define REPLICA_SNAPSHOT_THRESHOLD 1024u
#define REPLICA_SNAPSHOT_TRAILING 1024u
/* Unless a threshold is given, it follows the size of the entries: REPLICA_SNAPSHOT_LOG_BYTES
 * over the mean entry size (a moving average over the entries applied, recomputed at each poll),
 * within [REPLICA_SNAPSHOT_THRESHOLD, REPLICA_SNAPSHOT_THRESHOLD_MAX]. Full entries keep 1,024;
 * the till's entries of a few dozen postings (~2 KiB) reach the maximum, a snapshot (a ledger
 * flush and libraft's log truncation) every ~12 s instead of every ~0.8 s at ~1,300 entries/s
 * (docs/BENCHMARKS.md: ~8% of the till). The log's memory stays about LOG_BYTES beyond the
 * trailing entries: sizes that jump are seen at the next poll, and libraft snapshots at the next
 * apply once the log is past the lowered threshold. */
#define REPLICA_SNAPSHOT_LOG_BYTES ((uint64_t)1 << 30)
#define REPLICA_SNAPSHOT_THRESHOLD_MAX 16384u
/* The ledger commits deferred (engine.h, "Deferred commit"): entries are applied into an open
 * LMDB transaction, and it is committed (one flush) once it is this old or holds this many
 * postings, and before a snapshot, a ledger copy and a stop. The file trails what is applied
 * (and acknowledged) by at most that: the Raft log holds those entries durably on a majority,
 * and a restart applies them again. One flush per entry instead was the till's limit
 * (docs/BENCHMARKS.md, "The till"). Until the committer thread (2026-12-07) each commit blocked
 * the loop while it wrote and flushed: 100 ms gave a till on 100k members 10-13% more, but on
 * the benchmark's 1M members no more than the noise and a p99 40-60% higher (a group dirties
 * more scattered pages), so 20 ms it is (docs/BENCHMARKS.md, "The group commit's age").
 * REPLICA_COMMIT_POSTINGS bounds a peak's group. */
#define REPLICA_COMMIT_MS 20u
#define REPLICA_COMMIT_POSTINGS 16384u
#define REPLICA_COMMIT_EACH 0xffffffffu /* tallyd --commit-ms 0: a commit per entry */
/* Committed entries waiting, copied, for a ledger commit to end before they are applied
 * (replica.c, the apply queue): beyond this many bytes the loop waits for the ledger instead
 * (a follower catching up through the log is handed thousands of entries at once). */
#define REPLICA_APPLY_QUEUE_BYTES ((uint64_t)64 << 20)
/* The ledger's first map size: address space, not memory or disk. The engine keeps half of the
 * map free for the open group (engine.h): half of 1 GiB is far above what 20 ms or 16,384
 * postings (plus one entry) can write. */
#define REPLICA_MAP_SIZE ((size_t)1 << 30)
/* A leader that sent a Raft snapshot waits this long for the follower's answer before it sends
 * again (libraft's default, 30 s, leaves a follower that was down when the snapshot went out
 * idle that long). Our snapshots are 40 bytes; what takes time is the catch-up the follower does
 * inside restore, and a snapshot sent again meanwhile is answered at once afterwards (the ledger
 * has it already). */
#define REPLICA_INSTALL_SNAPSHOT_MS 5000u
/* How long a catch-up may take, copy included: ten minutes (a 100 GiB ledger over a 1 Gbit/s
 * link would not make it: raise it with the ledger). */
#define REPLICA_CATCH_UP_MS 600000u

/* How the leader stamps the entries it proposes (tallyd --clock; docs/ARCHITECTURE.md, "Ledger
 * time"). Every replica of a cluster must run with the same one: the mode is written into each
 * entry (batch.h), and a replica applying an entry stamped in the other mode logs
 * clock_mode_mismatch and counts it, but goes on (the entry is valid either way; what is wrong is
 * the next entry the misconfigured replica would stamp as leader). */
enum replica_clock {
    /* The leader's wall clock (ms since the epoch), never behind the previous entry's: production.
     * POST_AT is refused (CLOCK_MODE). An idle leader proposes a tick entry every tick_ms. */
    REPLICA_CLOCK_WALL = 0,
    /* The clients' clock, for replays and drills: the leader never reads the wall clock for an
     * entry. A POST_AT's entry is stamped max(the ledger's time, at), a POST's with the ledger's
     * time; one entry never mixes requests of different stamps; no tick entries (time moves only
     * when a POST_AT moves it). */
    REPLICA_CLOCK_CLIENT = 1,
};

struct replica_peer {
    uint64_t id;
    char raft_address[TALLY_WIRE_ADDRESS_SIZE];
    char client_address[TALLY_WIRE_ADDRESS_SIZE];
};

struct replica;

/* A request's outcome, on the leader that accepted it. status: 0 (applied: req_status and
 * results say how), TALLY_ENOT_LEADER (leadership lost: the client must retry elsewhere; the
 * entry may still have committed), or another error. */
typedef void (*replica_done_cb)(void *ctx, int status, uint8_t req_status,
                                const struct tally_result *results, uint32_t count,
                                uint64_t index);

struct replica_options {
    uint64_t id;
    const char *dir;            /* the replica's directory: ledger/ and raft/ inside */
    const struct replica_peer *peers; /* every voter, this replica included */
    uint32_t npeers;
    const char *raft_bind;        /* where the Raft listener binds (IPv4 host:port); NULL: this
                                     replica's raft_address, the one the peers connect to */
    unsigned election_timeout_ms; /* 0: 1000 */
    unsigned heartbeat_ms;        /* 0: 100 */
    unsigned tick_ms;             /* idle leader tick; 0: 1000 */
    unsigned snapshot_threshold;  /* 0: follows the entries' size (REPLICA_SNAPSHOT_LOG_BYTES) */
    unsigned snapshot_trailing;   /* 0: REPLICA_SNAPSHOT_TRAILING */
    enum replica_clock clock;     /* REPLICA_CLOCK_WALL (0) unless tallyd --clock client */
    unsigned commit_ms;           /* ledger group age that commits; 0: REPLICA_COMMIT_MS;
                                     REPLICA_COMMIT_EACH: every entry commits (not deferred) */
    replica_done_cb done;
    /* Called on the loop when a ledger commit has ended (and by the poll, as a backstop), before
     * the entries that waited for it are applied: tallyd's front answers the reads that waited
     * (front.c, "Reads during a ledger commit"). May be NULL. */
    void (*ledger_free)(void *ctx);
    void *ledger_free_ctx;
};

int replica_start(struct replica **out, uv_loop_t *loop, const struct replica_options *opts);

/* Queue a client request (on the leader). The postings are copied. at_ms is the ledger time a
 * POST_AT asks for (REPLICA_CLOCK_CLIENT only; 0 for a POST): its entry is stamped
 * max(the ledger's time, at_ms). Requests of different stamps never share an entry: one whose
 * stamp differs from the gathering entry's closes that entry (proposes it), or, with the
 * pipeline full, is answered TALLY_EBUSY (under the client clock one entry gathers). Returns 0
 * (done follows), TALLY_ENOT_LEADER, TALLY_EBUSY (every gathering slot is taken: retry later),
 * TALLY_ETOO_LARGE, TALLY_ECONFIG (at_ms nonzero under
 * REPLICA_CLOCK_WALL: the caller checks replica_clock first). */
int replica_submit(struct replica *r, const uint8_t client_id[16], uint64_t request, uint64_t at_ms,
                   const struct tally_posting *postings, uint32_t count, void *ctx);

/* The clock this replica stamps entries with when it leads (replica_options.clock). */
enum replica_clock replica_clock(const struct replica *r);

/* Whether the ledger is committing a group on the engine's committer thread now: an engine
 * query would wait for the commit to end (engine.h, "The committer"). */
bool replica_ledger_busy(const struct replica *r);

/* Leader, and its barrier applied: it may serve linearizable reads and accept requests. */
bool replica_ready(const struct replica *r);
/* The leader as this replica knows it (id 0: unknown) and its client address ("" if none). */
void replica_leader(const struct replica *r, uint64_t *id, const char **client_address);
struct engine *replica_engine(struct replica *r);
void replica_status(const struct replica *r, struct tally_wire_replica_status *out);

/* What this process has done since it started (for the metrics endpoint). */
struct replica_counters {
    uint64_t entries_applied;  /* Raft entries applied to the ledger (ticks included) */
    uint64_t postings_applied; /* postings in them, whatever their result */
    uint64_t catch_ups;        /* ledger copies fetched and swapped in */
    uint64_t clock_mismatches; /* entries applied that were stamped in the other clock mode */
    uint64_t entries_queued;   /* entries that waited for a ledger commit to end (apply queue) */
    uint64_t snapshot_threshold; /* entries between Raft snapshots, as now set */
    uint64_t posts_busy;       /* requests answered BUSY: every gathering slot taken */
};
void replica_counters(const struct replica *r, struct replica_counters *out);

/* Answer a LEDGER request (copies_serve on this replica's ledger): the status, and the body in
 * `body` (TALLY_WIRE_BODY_MAX bytes), its size in *size. */
uint16_t replica_ledger_chunk(struct replica *r, const struct tally_wire_ledger_request *q,
                              uint8_t *body, uint32_t *size);

/* Stop: hand leadership to another voter if this one leads, then close Raft and the engine;
 * `done` runs when everything is closed. */
void replica_stop(struct replica *r, void (*done)(void *arg), void *arg);
/* Release a stopped replica's memory: after replica_stop's `done`, once the loop has run dry
 * (uv_run returned), since raft_uv may still run callbacks after `done` (raft_guard.h). */
void replica_free(struct replica *r);

#endif
