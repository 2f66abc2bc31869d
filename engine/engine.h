/* engine.h: the deterministic ledger state machine, apply(batch, timestamp) -> results, on LMDB.
 *
 * What it guarantees
 * ------------------
 * The engine turns a batch of postings and a timestamp into entries, and keeps balances, lots,
 * holds and tiers materialised in LMDB, in one write transaction per batch: a batch is wholly
 * applied or wholly absent, whatever happens to the process. Given the same sequence of
 * (index, timestamp, batch), every engine produces byte-identical entries and the same state
 * digest: there is no wall clock, randomness, thread or socket inside. Time arrives as an
 * argument, and everything time-driven (pending activation, hold timeouts, lot expiry, tier
 * evaluation) happens as entries created while applying the first batch whose timestamp has
 * reached the due time, stamped with the due time itself.
 *
 * The laws it keeps (BRIEF §4): entries get sequence numbers without gaps and are never changed
 * or deleted; every balance, lot, hold and tier equals what replaying the entries produces
 * (tally-audit verify checks this independently); every entry moves points between two accounts
 * of one program so each program sums to zero; a posting id takes effect at most once; available
 * points never go negative unless the program allows it; holds never exceed available.
 *
 * What it does not do
 * -------------------
 * It does not replicate, order or timestamp batches: the caller (Raft in tallyd, the wall clock
 * in the embedded CLI) does. It does not defend against tampering: the XXH3 chain catches
 * corruption and divergence, not an attacker who can rewrite the file. One engine per data
 * directory and per process; it is not thread-safe: every call comes from one thread (queries
 * beside apply too), engine_copy excepted. With defer_commit the engine runs one thread of its
 * own, the committer (below); it changes nothing of the above.
 *
 * Durability: by default every apply ends with a durable LMDB commit (fsync). With
 * engine_options.sync = false the commit is not flushed (MDB_NOSYNC); the caller must then call
 * engine_sync() before it lets anything that depends on durability happen (tallyd does so before
 * a Raft snapshot lets the log be truncated). MDB_WRITEMAP is never used: disk full must be an
 * error, not SIGBUS.
 *
 * Deferred commit (engine_options.defer_commit; tallyd). A durable LMDB commit ends with a
 * flush of the disk's write cache, and for a small batch that flush, not the batch's work, is
 * most of the cost (docs/BENCHMARKS.md, "The till"). With defer_commit each batch runs in its
 * own nested transaction inside one open write transaction, the group: a batch is still all or
 * nothing and still stores its applied index with its state, but only engine_commit() writes
 * the group to the file, so one flush serves many batches. Until then the batches are applied
 * (engine_status and every query see them: queries read through the group) but not in the
 * file: a crash loses them and engine_open gives the state as of the last commit, whose
 * applied index says where to resume. So the caller must be able to apply them again (tallyd
 * can: the Raft log keeps every entry after the last snapshot, and the snapshot first calls
 * engine_sync, which commits). engine_sync, engine_close, map growth and member-cache
 * eviction commit first. engine_copy copies the file, so it holds committed batches only:
 * commit before starting one. The map grows (doubling) before a group opens once more than half
 * of it is used, so that a group never fills it (a full map cannot commit: TALLY_EMAP_LIMIT,
 * below); start with a map of at least a few hundred MiB (address space only) so that half
 * dwarfs what a group writes. If engine_commit fails, the engine's memory is ahead of its file
 * and cannot be put back: the error is returned, and from then on by every call that reads or
 * writes (engine_status excepted) until engine_close; reopening recovers the committed state.
 * With defer_commit and sync, a commit flushes the group's pages and then writes the meta page
 * that makes them current without flushing it (MDB_NOMETASYNC): the next commit's flush,
 * engine_sync or engine_close makes it durable. The file stays whole (LMDB never writes a meta
 * page before the pages it points to are flushed), but a power loss may take the last commit
 * back as well as the open group, which the caller applies again the same way (tallyd: one
 * flush fewer per commit; docs/BENCHMARKS.md, "The loop's time in ledger commits").
 *
 * The committer (defer_commit). A group commit writes the group's pages and waits for the disk's
 * flush: tens of milliseconds at a peak, during which the caller (tallyd's event loop, which
 * also runs Raft and the network) would do nothing else. So each group is begun and committed
 * on a thread of the engine's own (LMDB ties a write transaction to the thread that began it:
 * its write lock is that thread's), and the caller's thread applies batches into it in between
 * (nested transactions carry no lock). engine_commit_start hands the group over and returns at
 * once; every later call that needs the ledger (apply, queries, sync, commit, close) first
 * waits for the commit to end, so they see what they saw before, and the first of them
 * returns its error if it failed (the engine is then failed, as above). Only one of the two
 * threads touches LMDB's write side at a time, handing over under a mutex. engine_commit is
 * engine_commit_start followed by that wait. engine_status and engine_sessions do not wait:
 * status reports a commit in flight as not yet in the file (committed_index), counts the time
 * spent, and reports a commit that failed (failed); options.committed tells the caller's
 * thread when a commit has ended (tallyd applies what waited for it then).
 *
 * Errors: functions return 0 or a negative code from tally_errors.h (a negated errno, or
 * TALLY_E*). After an error from engine_apply nothing of the batch is applied; -ENOSPC and -EIO
 * leave the engine usable for reads, and a retry of the same batch is safe.
 */
#ifndef TALLY_ENGINE_H
#define TALLY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally_errors.h"
#include "tally_records.h"
#include "tally_results.h"

struct engine;

struct engine_options {
    size_t map_size;     /* initial LMDB map size in bytes; 0: ENGINE_MAP_SIZE_DEFAULT */
    size_t map_size_max; /* growth stops here (TALLY_EMAP_LIMIT); 0: ENGINE_MAP_SIZE_MAX */
    bool sync;           /* fsync at every commit (the default from engine_options_default) */
    bool read_only;      /* open for queries only (tools on a live data directory) */
    uint32_t member_cache;       /* member records kept in memory; 0: the default */
    uint64_t turn_entries;       /* entries per write-back turn; 0: ENGINE_TURN_ENTRIES */
    bool defer_commit;           /* batches wait in a group for engine_commit (above) */
    /* defer_commit: called on the committer thread each time a commit handed over by
     * engine_commit_start has ended (the engine is ready for the next call without waiting);
     * it must only signal the caller's thread (tallyd: uv_async_send). May be NULL. */
    void (*committed)(void *arg);
    void *committed_arg;
};

/* Member records in memory: two million slots of 56 bytes, touched only as used (calloc), so a
 * small ledger pays nothing; each cached member also holds its image (about 0.5 KiB). */
#define ENGINE_MEMBER_CACHE_DEFAULT (UINT32_C(1) << 21)
/* Fewer slots than this could not hold the members of one full batch and its sweep. */
#define ENGINE_MEMBER_CACHE_MIN (UINT32_C(1) << 16)
/* Entries per turn of the write-back hand (storage.h): a restart folds at most two turns of the
 * log; the longer the turn, the more rewrites of a busy member, and the more dirty neighbours on
 * a page, one page write absorbs. 8 Mi, measured (docs/BENCHMARKS.md): against 2 Mi, 0.6 KiB
 * written per posting instead of 0.9 and 10-15% more postings/s; the price is the worst-case
 * fold at open, 16 Mi entries, about 20 s at 1.2 us an entry (1M members). */
#define ENGINE_TURN_ENTRIES ((uint64_t)8 << 20)

/* 64 MiB to start: small enough for a test directory, and LMDB's map is only address space. */
#define ENGINE_MAP_SIZE_DEFAULT ((size_t)64 << 20)
/* 1 TiB: the ledger grows forever; the map doubles on MDB_MAP_FULL up to this. */
#define ENGINE_MAP_SIZE_MAX ((size_t)1 << 40)

void engine_options_default(struct engine_options *opts);

/* Open (creating if needed) the ledger in directory `dir` (which must exist).
 * Errors: -ENOENT (no directory), -EACCES, -ENOMEM, TALLY_EVERSION (written by a newer format),
 * TALLY_ECORRUPT (meta record damaged), -EIO. */
int engine_open(struct engine **out, const char *dir, const struct engine_options *opts);
void engine_close(struct engine *e);

/* Apply one batch as Raft entry `index` (or any increasing number chosen by the caller).
 *
 * If index <= the applied index stored in LMDB the batch was applied before (a replay after a
 * restart): nothing happens and 1 is returned, results untouched. Otherwise the batch is applied
 * with effective time max(timestamp, last timestamp), results[i] receives the outcome of
 * postings[i], the applied index is stored in the same transaction, and 0 is returned.
 * count may be 0 (a tick: only time-driven work). count <= TALLY_BATCH_MAX, else TALLY_ETOO_LARGE.
 * Errors: TALLY_ETOO_LARGE, -ENOSPC (disk full), -EIO, TALLY_EMAP_LIMIT, -ENOMEM, TALLY_ECORRUPT
 * (a stored record failed its checks). On error nothing of the batch is applied. */
int engine_apply(struct engine *e, uint64_t index, uint64_t timestamp,
                 const struct tally_posting *postings, uint32_t count,
                 struct tally_result *results);

/* ---------------------------------------------------------------------------------------------
 * Sessions: exactly-once requests (tallyd).
 *
 * A Raft entry carries the POST requests of many client sessions. engine_apply_requests applies
 * them as one batch and keeps, per session (a 128-bit client id), the number of its last applied
 * request and that request's results: the reply cache, part of the replicated state (in the
 * same transaction as the batch, in the state sum and the digest). A request whose number is
 * not above its session's last is not applied again: if it is the last one, its cached results
 * are returned (REPLAYED); if older, nothing (OLD: the client has moved on). So a request
 * retried after a lost answer, even through a new leader, takes effect once.
 *
 * At most ENGINE_SESSIONS_MAX sessions are kept; opening one more evicts the session used
 * least recently (by the index of its last request; ties by client id), deterministically.
 * An evicted client gets SESSION_EXPIRED from the server and must open a new session; its
 * posting ids still guard against double application (law 4).
 * ------------------------------------------------------------------------------------------- */

/* Sessions kept: each holds at most one reply (<= 8,190 results of 16 bytes). */
#define ENGINE_SESSIONS_MAX 16384u

struct engine_request {
    uint8_t client_id[16];
    uint64_t request;  /* the request number, > 0 */
    uint32_t first;    /* its postings: postings[first .. first + count) */
    uint32_t count;
};

enum engine_request_status {
    ENGINE_REQUEST_APPLIED = 0,  /* applied now: results are fresh */
    ENGINE_REQUEST_REPLAYED = 1, /* the session's last request again: its cached results */
    ENGINE_REQUEST_OLD = 2,      /* older than the session's last: nothing applied, no results */
};

/* Apply the requests of one Raft entry. `status[r]` says what became of request r; results[i]
 * is the outcome of postings[i] (for REPLAYED requests copied from the cache; zero for OLD).
 * Requests must cover postings in order without overlap; sum of counts <= TALLY_BATCH_MAX.
 * Returns 0, 1 (index already applied: nothing done) or an error as engine_apply. */
int engine_apply_requests(struct engine *e, uint64_t index, uint64_t timestamp,
                          const struct engine_request *requests, uint32_t nrequests,
                          const struct tally_posting *postings, uint32_t count,
                          struct tally_result *results, uint8_t *status);

/* A session's last applied request number (0 and TALLY_ENOT_FOUND if none). */
int engine_session(struct engine *e, const uint8_t client_id[16], uint64_t *last_request);

/* Sessions kept now (as of the last applied batch). Never waits (as engine_status). */
uint32_t engine_sessions(struct engine *e);

/* Flush everything committed so far to disk (needed with sync = false, and with defer_commit for
 * the last commit's meta page); with defer_commit, commit the group first. */
int engine_sync(struct engine *e);

/* defer_commit: write the batches applied since the last commit to the file, in one durable
 * commit (one flush unless sync = false). 0 if there was nothing to commit, and always without
 * defer_commit. Errors: -ENOSPC, -EIO, TALLY_EMAP_LIMIT (the map could not hold the group's
 * free-page list); after any error the engine is failed (see deferred commit, above). */
int engine_commit(struct engine *e);

/* defer_commit: hand the open group to the committer and return without waiting (above); 0 if
 * there was nothing to hand over, and always without defer_commit. The commit's outcome comes
 * back through the next call that needs the ledger. Errors: only a failure already known. */
int engine_commit_start(struct engine *e);

/* Write a consistent, compacted copy of the ledger's LMDB file (a whole data.mdb) to `fd`, an
 * empty regular file open for writing, from its current position on.
 *
 * The one engine function that may run on another thread while the engine's own thread goes on
 * applying batches: the copy is taken in its own LMDB read transaction, so it holds exactly the
 * batches committed when it starts, hence at least every batch committed before the call. It is
 * what a crashed writer would leave: engine_open on it folds the entries since its fold_from
 * into the member images (storage.h) and reports the same digest as this engine had at the
 * copy's applied index. While a copy runs, map growth (engine_apply on MDB_MAP_FULL) and
 * engine_close wait for it (remapping would pull the map from under the reader); the caller
 * must not close the engine before the call returns.
 *
 * Errors: -ENOSPC, -EIO and the other errno values of write(2), TALLY_ECORRUPT. */
int engine_copy(struct engine *e, int fd);

struct engine_status {
    uint64_t applied_index;
    uint64_t last_timestamp;
    uint64_t entries;       /* sequence number of the newest entry (0: none) */
    uint64_t chain_head;    /* hash of the newest entry */
    uint8_t digest[16];     /* XXH3-128 over applied index, entries, chain head and state sum */
    uint64_t map_size;      /* current LMDB map size */
    uint64_t fold_from;     /* a restart now would fold the entries from here (storage.h) */
    uint32_t members_cached;
    uint32_t members_dirty; /* not yet written back */
    uint64_t committed_index;   /* applied index as of the last commit to the file */
    uint32_t uncommitted;       /* batches in the open group (defer_commit; else 0) */
    uint32_t uncommitted_postings;
    bool committing;            /* a group is with the committer (engine_commit_start) */
    uint64_t commits;           /* group commits done (defer_commit), and their time: */
    uint64_t commit_us;         /* the committer's, writing and flushing, microseconds */
    uint64_t commit_wait_us;    /* the caller's, waiting for a commit to end */
    int32_t failed;             /* the error a failed deferred commit left the engine in, or 0 */
};

/* Status as of the last applied batch. Cannot fail, never waits. The times are measurements
 * (a monotonic clock), never part of the state. */
void engine_status(struct engine *e, struct engine_status *out);

/* ---------------------------------------------------------------------------------------------
 * Queries. Each runs in its own read-only LMDB transaction (a consistent snapshot; with
 * defer_commit and batches not yet committed, in the group, which holds them), never blocks
 * apply, and returns TALLY_ENOT_FOUND for an unknown program, account, entry or posting.
 * ------------------------------------------------------------------------------------------- */

int engine_program(struct engine *e, uint32_t program, struct tally_program_config *config,
                   struct tally_program_totals *totals);

/* Programs in id order, starting after `after` (0: from the first). */
int engine_programs(struct engine *e, uint32_t after, uint32_t *ids, uint32_t max,
                    uint32_t *count);

/* An account (member or TALLY_SYS_*). */
int engine_account(struct engine *e, uint32_t program, uint64_t member,
                   struct tally_account *out);

/* engine_account from the member cache alone: never waits for a commit in flight and never
 * touches LMDB, so the caller's thread may call it while the committer commits (the cache is
 * the caller's thread's alone). 0 and the account when the account's image is cached (a cached
 * image holds every batch applied: it is never behind the ledger), 1 when it is not (ask
 * engine_account), or the error a failed engine is in. */
int engine_account_cached(struct engine *e, uint32_t program, uint64_t member,
                          struct tally_account *out);

/* The member's buckets as they stood at time `at` (after every entry stamped <= at). An account
 * not yet opened at `at` gives TALLY_ENOT_FOUND. */
int engine_balance_at(struct engine *e, uint32_t program, uint64_t member, uint64_t at,
                      struct tally_balance *out);

/* The member's entries, newest first, strictly older than `before_seq` (0: from the newest).
 * Fills up to `max` entries (fixed parts only; see engine_entry for the tail). *count = filled.
 * TALLY_ECONFIG when before_seq is not one of this member's entries. */
int engine_history(struct engine *e, uint32_t program, uint64_t member, uint64_t before_seq,
                   struct tally_entry *out, uint32_t max, uint32_t *count);

/* The member's open lots, soonest-expiring first (the order redemption consumes them). */
int engine_lots(struct engine *e, uint32_t program, uint64_t member, struct tally_lot *out,
                uint32_t max, uint32_t *count);

/* One entry by sequence number; up to tail_max lot refs of its tail are copied into tail (for
 * a PROGRAM entry the tail is its configuration: pass NULL). *tail_count = refs in the entry. */
int engine_entry(struct engine *e, uint64_t seq, struct tally_entry *out,
                 struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count);

/* What became of a posting id: its recorded result, first entry and number of entries. */
struct engine_posting_info {
    uint32_t code;       /* result the posting got */
    uint16_t kind;
    uint16_t reserved;
    uint64_t seq;        /* first entry (0 for a failed posting) */
    uint32_t entry_count;
    uint32_t reserved2;
    uint64_t timestamp;  /* effective time of its batch */
};
int engine_posting(struct engine *e, const uint8_t id[16], struct engine_posting_info *out);

/* A hold, by the id of the HOLD posting. */
struct engine_hold_info {
    uint64_t seq;        /* the HOLD entry */
    uint32_t program;
    uint32_t status;     /* enum tally_hold_status */
    uint64_t member;
    uint64_t amount;
    uint64_t captured;
    uint64_t timeout_at;
    uint64_t resolved_seq;
};
int engine_hold(struct engine *e, const uint8_t id[16], struct engine_hold_info *out);

#endif
