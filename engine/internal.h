/* internal.h: the engine's private state and the interfaces between its files.
 *
 * Files of the engine, one concern each:
 *   engine.c   open, close, status; the batch loop: one write transaction per batch, linked
 *              chains in nested transactions, idempotency, map growth on MDB_MAP_FULL
 *   store.c    LMDB access: the only file that sees MDB_* codes; puts and deletes that keep the
 *              state sum; the entry log and its hash chain; accounts through the member cache;
 *              the write-back sweep and checkpoints
 *   fold.c     the effects of an entry on member images (run time and recovery)
 *   members.c  the in-memory write-back cache of member records (account + lots), undo
 *   postings.c validation and execution of each posting kind
 *   lots.c     lots: creation, soonest-expiring-first consumption, holds, restoration, expiry
 *   tiers.c    qualifying value and tier rules; expiry-time computation from a program's policy
 *   timers.c   time-driven work: the timer index and the sweep at the start of every batch
 *   query.c    read-only queries
 */
#ifndef TALLY_ENGINE_INTERNAL_H
#define TALLY_ENGINE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "members.h"
#include "storage.h"

/* An internal status (never returned to callers): the map is full, grow and re-run the batch. */
#define ENGINE_EMAP_FULL (-30999)

/* Programs whose records a batch keeps at hand (more are read from LMDB each time). */
#define ENGINE_PROGRAMS_CACHED 8

/* What a batch's write-back step did, applied to memory after its commit. */
struct sweep {
    uint64_t pos;       /* the hand after this batch */
    uint64_t turn_seq;  /* the first entry of the turn in progress after this batch */
};

/* The committer thread (engine.h, "The committer"). The engine's thread sets `job` and waits
 * for it to go back to COMMITTER_IDLE (`done`) before it touches LMDB again; the committer
 * waits for a job (`wake`), does it without the lock, and hands back under it. */
enum committer_job {
    COMMITTER_IDLE = 0,
    COMMITTER_BEGIN,  /* begin a group: `txn` is the result */
    COMMITTER_COMMIT, /* commit `txn` (the group; LMDB frees it either way) */
    COMMITTER_ABORT,  /* abort `txn` (close after a failed checkpoint) */
    COMMITTER_STOP,
};

struct committer {
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    enum committer_job job; /* under lock */
    MDB_txn *txn;           /* under lock */
    int rc;                 /* the last job's outcome (an MDB code translated), under lock */
    bool outcome;           /* a COMMIT's outcome not yet taken by the engine, under lock */
    uint64_t commit_us;     /* under lock */
};

struct engine {
    MDB_env *env;
    struct committer committer; /* defer_commit only */
    pthread_mutex_t map_lock; /* held by engine_copy, and to remap (growth) or close the map */
    MDB_dbi dbi[STORE_DB_COUNT];
    struct engine_options opts;
    size_t map_size;
    struct store_meta meta; /* as of the last commit */
    struct store_meta work; /* inside the running write transaction */
    MDB_txn *txn;           /* the running write transaction (a chain's child, if in one) */
    MDB_txn *group;         /* defer_commit: the open transaction batches nest in, or NULL */
    uint32_t group_batches; /* batches committed into the group */
    uint32_t group_postings;
    uint64_t committed_index; /* applied index as of the last commit to the file */
    uint64_t committing_index; /* applied index of the group with the committer */
    uint64_t commits;         /* group commits taken back from the committer */
    uint64_t commit_wait_us;  /* time spent waiting for the committer */
    uint32_t sessions;        /* sessions kept, as of the last applied batch */
    int failed;             /* a deferred commit failed: memory is ahead of the file */
    struct members cache;   /* member records: see members.h */
    bool in_apply;          /* a write transaction is running: the program cache is valid */
    uint32_t programs_cached;
    uint32_t program_ids[ENGINE_PROGRAMS_CACHED];
    struct store_program programs[ENGINE_PROGRAMS_CACHED];
    uint64_t sweep_pos;     /* buckets the write-back hand has passed, ever */
    uint64_t turn_seq;      /* first entry of the turn in progress: fold_from once it ends */
    uint64_t timer_set_min; /* earliest time of a timer set since the sweep last looked */

    /* Scratch space, allocated at open, sized by the limits in tally_records.h. */
    uint32_t *plan_idx;           /* TALLY_LINEAGE_MAX lot indexes of a plan */
    struct tally_lot_ref *refs;   /* 2 * TALLY_LINEAGE_MAX: a transfer's source and destination */
    uint64_t *u64s;               /* TALLY_LINEAGE_MAX: per-lot amounts */
    uint8_t *buf;                 /* ENGINE_BUF_SIZE: an entry, a hold or a reversal record */
    uint8_t *buf2;                /* ENGINE_BUF_SIZE: a second record while the first is in use */
    uint8_t *session_buf;         /* a session record: header and TALLY_BATCH_MAX results */
};

/* The largest record: a member image (account + TALLY_LINEAGE_MAX lots), which is also larger
 * than a TRANSFER entry with two full lineages. */
#define ENGINE_BUF_SIZE (STORE_MEMBER_MAX + 256)
_Static_assert(ENGINE_BUF_SIZE >= sizeof(struct tally_entry) + 2 * TALLY_LINEAGE_MAX * 32,
               "scratch holds the largest entry");

/* An account loaded for change: `rec` is a copy that ops edit; acct_save writes it back into the
 * member's cached image. The member's lots are edited in place in the image (lots.c). */
struct acct {
    struct tally_account rec;
    struct member *m;
    bool ghost; /* recovery: the image already has this entry; take no change (fold.c) */
};

/* The posting (or timer) being executed. */
struct op {
    struct engine *e;
    const struct tally_posting *p; /* NULL for time-driven work */
    uint64_t now;                  /* effective time of the entries it creates */
    struct store_program prog;
    uint64_t first_seq;            /* first entry created (0: none yet) */
    uint32_t entry_count;
};

/* ---- store.c ---------------------------------------------------------------------------- */
int store_translate(int mdb_rc);
int store_get(struct engine *e, int db, const void *key, size_t klen, void *out, size_t len);
/* Get a variable-size value: *val points into the map (valid until the next write). */
int store_get_raw(struct engine *e, int db, const void *key, size_t klen, MDB_val *val);
int store_put(struct engine *e, int db, const void *key, size_t klen, const void *old,
              size_t old_len, const void *val, size_t len);
int store_del(struct engine *e, int db, const void *key, size_t klen, const void *old,
              size_t old_len);
/* Insert if absent (no change otherwise); *inserted says which. */
int store_put_once(struct engine *e, int db, const void *key, size_t klen, const void *val,
                   size_t len, bool *inserted);
void store_sum_add(struct engine *e, int db, const void *key, size_t klen, const void *val,
                   size_t len, bool subtract);
uint64_t store_meta_checksum(const struct store_meta *m);

/* Load an account (member or system) through the cache: 0, or TALLY_ENOT_FOUND. */
int acct_load(struct engine *e, uint32_t program, uint64_t member, struct acct *a);
/* Create an account (OPEN, and the system accounts of a PROGRAM); a->rec starts zeroed. */
int acct_create(struct engine *e, uint32_t program, uint64_t member, struct acct *a);
/* Write a->rec back into the member's image (the lots in the image are already current). */
int acct_save(struct engine *e, struct acct *a);
/* Call before editing a member's lots in place. */
int acct_modify(struct engine *e, struct acct *a);
int program_load(struct engine *e, uint32_t program, struct store_program *out);
/* Put a program record (old: what it replaces, or NULL), keeping the batch's cache. */
int program_save(struct engine *e, uint32_t program, const struct store_program *old,
                 const struct store_program *rec);
void program_cache_clear(struct engine *e);

/* Append an entry (fixed part `en`, tail of tail_size bytes): assigns seq, timestamp, posting id
 * and user data from `op`, links the hash chain and each member's chain of entries (debit_prev,
 * credit_prev), and saves the accounts a1 and a2 (either may be NULL; a2 may equal a1) with their
 * last_seq. */
int entry_emit(struct op *op, struct tally_entry *en, const void *tail, uint32_t tail_size,
               struct acct *a1, struct acct *a2);
int entry_read(struct engine *e, uint64_t seq, struct tally_entry *out, const uint8_t **tail);
/* End of a batch: add the changed members' new images to the state sum. */
void store_batch_end(struct engine *e);
/* Inside the batch's transaction: move the write-back hand by the share of a turn that
 * `entries` entries are, writing back the dirty members it passes (see storage.h). */
int store_write_back_some(struct engine *e, uint64_t entries, struct sweep *out);
/* After the batch committed: mark written members clean, advance the hand. */
void store_sweep_done(struct engine *e, const struct sweep *s);
/* Write every dirty member into `members`; afterwards fold_from = next_seq (own transaction). */
int store_checkpoint(struct engine *e);
/* Double the map (up to the maximum): TALLY_EMAP_LIMIT at the maximum. No transaction open. */
int engine_grow_map(struct engine *e);
/* Wait for a commit in flight (defer_commit), take its outcome; then e->failed. Every call that
 * reads or writes the ledger starts with it. */
int engine_group_wait(struct engine *e);

/* ---- lots.c ----------------------------------------------------------------------------- */
/* A plan of lots to draw from: indexes into the member's lots (e->plan_idx) and how much to take
 * from each (e->u64s). Plans change nothing. */
struct lot_plan {
    uint32_t count;
    uint64_t total;
};

/* Index of lot (expires_at, lot_id) in the member's lots, or -1. */
int32_t lots_find(struct acct *a, uint64_t expires_at, uint64_t lot_id);
/* Whether the member can take `more` new lots. */
bool lots_room(const struct acct *a, uint32_t more);
/* Plan taking `amount` from the member's active lots, soonest-expiring first, the lot at index
 * `first` first if first >= 0. plan->total <= amount (less if the member has less); *result
 * becomes LOTS_LIMIT when more than TALLY_LINEAGE_MAX lots would be needed. */
void lots_plan_take(struct engine *e, struct acct *a, uint64_t amount, int32_t first,
                    struct lot_plan *plan, uint32_t *result);
/* Plan the member's active lots due at `now` (at most TALLY_LINEAGE_MAX). */
void lots_plan_due(struct engine *e, struct acct *a, uint64_t now, struct lot_plan *plan);
/* The lot refs of a plan. */
void lots_plan_refs(struct engine *e, struct acct *a, const struct lot_plan *plan,
                    struct tally_lot_ref *refs);
/* Credit `amount` to a running `available`; a debt (below zero) is paid first. Returns how much
 * lands in lots. */
uint64_t lots_land(int64_t *available, uint64_t amount);
/* The timers of a lot just created (activation if pending, expiry). */
int lots_timers(struct engine *e, const struct acct *a, const struct tally_lot_ref *ref,
                uint64_t activate_at);
/* Image primitives for fold.c: insert a lot (nothing if empty), drop empty lots. */
int lots_insert(struct acct *a, const struct tally_lot_ref *ref, uint64_t origin_seq,
                uint64_t activate_at);
void lots_compact(struct acct *a);
/* Expire every active lot of the member due at op->now: EXPIRE entries. */
int lots_expire_due(struct op *op, struct acct *a);
/* Activate the pending lot at index i (by the ACTIVATE posting p, or its timer when p is NULL). */
int lots_activate(struct op *op, struct acct *a, uint32_t i, const struct tally_posting *p);

/* ---- fold.c ----------------------------------------------------------------------------- */
/* Apply an entry's effects to the accounts of its sides (a1, a2: loaded, in either order). */
int fold_apply(struct op *op, const struct tally_entry *en, const void *tail, struct acct *a1,
               struct acct *a2);
/* A PROGRAM entry: create the program's system accounts. */
int fold_program(struct op *op, const struct tally_entry *en);
/* Recovery: fold entries from `from` to the newest into the member images, skipping each side
 * whose image already includes the entry. */
int fold_recover(struct engine *e, uint64_t from);

/* ---- tiers.c ---------------------------------------------------------------------------- */
uint64_t tiers_expiry_of(const struct tally_program_config *c, uint64_t earned_at);
void tiers_qv_add(struct tally_account *a, uint32_t month, uint64_t value);
void tiers_qv_remove(struct tally_account *a, uint32_t month, uint64_t value);
uint64_t tiers_window_qv(const struct tally_program_config *c, const struct tally_account *a,
                         uint64_t t);
uint32_t tiers_earned(const struct tally_program_config *c, uint64_t qv);
/* After an accrual at op->now: upgrade if the window QV earns a higher tier. */
int tiers_after_accrual(struct op *op, struct acct *a);
/* The evaluation timer of an account fired at op->now. */
int tiers_evaluate(struct op *op, struct acct *a);

/* ---- timers.c --------------------------------------------------------------------------- */
int timers_set(struct engine *e, uint64_t time, uint32_t kind, uint32_t program, uint64_t member,
               uint64_t object, uint64_t aux);
/* Run every timer due at or before `now`, in time order. */
int timers_sweep(struct engine *e, uint64_t now);

/* ---- sessions.c ------------------------------------------------------------------------- */
/* Whether a request is new (APPLIED: apply it), the session's last (REPLAYED: results copied
 * from the cache) or older (OLD). */
int sessions_check(struct engine *e, const struct engine_request *r, struct tally_result *results,
                   uint8_t *status);
/* Store an applied request's results as its session's reply (creating or evicting sessions). */
int sessions_record(struct engine *e, const struct engine_request *r, uint64_t index,
                    const struct tally_result *results);

/* ---- postings.c ------------------------------------------------------------------------- */
/* Validation by the posting's bytes alone: TALLY_OK or a validation result code. */
uint32_t postings_validate(const struct tally_posting *p);
/* Execute a valid posting at `now`. Returns 0 and *result, or a negative system error. */
int postings_execute(struct engine *e, const struct tally_posting *p, uint64_t now,
                     uint32_t *result, uint64_t *first_seq, uint32_t *entry_count);
/* Give back what a hold still reserves: a RELEASE posting or a timeout (the hold must be
 * ACTIVE; a timeout of a resolved hold does nothing), or the remainder right after a partial
 * CAPTURE (remainder = true: the entry carries TALLY_ENTRY_REMAINDER). */
int postings_release_hold(struct op *op, uint64_t hold_seq, struct acct *a, bool remainder);

#endif
