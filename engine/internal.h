/* internal.h: the engine's private state and the interfaces between its files.
 *
 * Files of the engine, one concern each:
 *   engine.c   open, close, status; the batch loop: one write transaction per batch, linked
 *              chains in nested transactions, idempotency, map growth on MDB_MAP_FULL
 *   store.c    LMDB access: the only file that sees MDB_* codes; puts and deletes that keep the
 *              state sum; the entry log and its hash chain; account load and save with history
 *   postings.c validation and execution of each posting kind
 *   lots.c     lots: creation, soonest-expiring-first consumption, holds, restoration, expiry
 *   tiers.c    qualifying value and tier rules; expiry-time computation from a program's policy
 *   timers.c   time-driven work: the timer index and the sweep at the start of every batch
 *   query.c    read-only queries
 */
#ifndef TALLY_ENGINE_INTERNAL_H
#define TALLY_ENGINE_INTERNAL_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "storage.h"

/* An internal status (never returned to callers): the map is full, grow and re-run the batch. */
#define ENGINE_EMAP_FULL (-30999)

struct engine {
    MDB_env *env;
    MDB_dbi dbi[STORE_DB_COUNT];
    struct engine_options opts;
    size_t map_size;
    struct store_meta meta; /* as of the last commit */
    struct store_meta work; /* inside the running write transaction */
    MDB_txn *txn;           /* the running write transaction (a chain's child, if in one) */
    int fd;                 /* data.mdb, for page-cache advice */
    uint64_t cached_pages;  /* pages of data.mdb below which the cache holds 4 KiB folios */

    /* Scratch space, allocated at open, sized by the limits in tally_records.h. */
    struct tally_lot *lots;       /* TALLY_LINEAGE_MAX lots read for one entry */
    uint8_t (*lot_keys)[STORE_LOT_KEY];
    struct tally_lot_ref *refs;   /* 2 * TALLY_LINEAGE_MAX: a transfer's source and destination */
    uint64_t *u64s;               /* TALLY_LINEAGE_MAX: per-lot amounts */
    uint8_t *buf;                 /* ENGINE_BUF_SIZE: an entry, a hold or a reversal record */
    uint8_t *buf2;                /* ENGINE_BUF_SIZE: a second record while the first is in use */
    uint8_t *hash_buf;            /* ENGINE_BUF_SIZE + 64: tag || key || value for the sum */
};

/* The largest record: a TRANSFER entry with two full lineages. */
#define ENGINE_BUF_SIZE (sizeof(struct tally_entry) + 2 * TALLY_LINEAGE_MAX * sizeof(struct tally_lot_ref))

/* An account loaded for change: `rec` is edited, `old` is what is stored (for the state sum). */
struct acct {
    struct tally_account rec;
    struct tally_account old;
    bool stored;
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

int acct_load(struct engine *e, uint32_t program, uint64_t member, struct acct *a);
int acct_save(struct engine *e, struct acct *a);
int program_load(struct engine *e, uint32_t program, struct store_program *out);

/* Append an entry (fixed part `en`, tail of tail_size bytes): assigns seq, timestamp, posting id
 * and user data from `op`, links the hash chain, saves the accounts a1 and a2 (either may be
 * NULL; a2 may equal a1) with their last_seq, and writes their history rows. */
int entry_emit(struct op *op, struct tally_entry *en, const void *tail, uint32_t tail_size,
               struct acct *a1, struct acct *a2);
int entry_read(struct engine *e, uint64_t seq, struct tally_entry *out, const uint8_t **tail);

/* ---- lots.c ----------------------------------------------------------------------------- */
/* A plan of lots to draw from: the lots read and how much to take from each. */
struct lot_plan {
    uint32_t count;
    uint64_t total;
};

/* Plan taking `amount` from the member's active lots, soonest-expiring first, the lot
 * `first_lot` (key) first if given. Fills e->lots, e->lot_keys, e->u64s. Returns 0 with
 * plan->total <= amount (less if the member has less), or TALLY_RESULT via *result:
 * LOTS_LIMIT when more than TALLY_LINEAGE_MAX lots would be needed. */
int lots_plan_take(struct engine *e, uint32_t program, uint64_t member, uint64_t amount,
                   const uint8_t *first_lot, struct lot_plan *plan, uint32_t *result);
/* Apply a plan: take from remaining (HOLD: move to held), write refs[0..count). */
int lots_apply_take(struct engine *e, struct acct *a, const struct lot_plan *plan, bool to_held,
                    struct tally_lot_ref *refs);
/* Create a lot (remaining = amount landed; pending if activate_at != 0) and its timers. */
int lots_create(struct engine *e, struct acct *a, const struct tally_lot_ref *ref,
                uint64_t origin_seq, uint64_t activate_at);
/* Add points back to a lot (re-created if absent); from_held moves them from held instead. */
int lots_restore(struct engine *e, struct acct *a, const struct tally_lot_ref *ref,
                 uint64_t origin_seq, bool from_held);
/* Take `amount` from the held part of the lots in refs (in order), writing what was taken. */
int lots_take_held(struct engine *e, struct acct *a, const struct tally_lot_ref *held,
                   uint32_t n, uint64_t amount, struct tally_lot_ref *out, uint32_t *out_n);
int lots_get(struct engine *e, uint32_t program, uint64_t member, uint64_t expires_at,
             uint64_t lot_id, struct tally_lot *out);
int lots_put(struct engine *e, struct acct *a, const struct tally_lot *old,
             const struct tally_lot *lot);
/* Expire every active lot of the member due at op->now; emits EXPIRE entries. */
int lots_expire_due(struct op *op, struct acct *a);
/* Credit `amount` to the member's available points; a debt (available below zero) is paid
 * first. Returns how much lands in lots. */
uint64_t lots_landed(struct acct *a, uint64_t amount);
/* Activate a pending lot (by the ACTIVATE posting p, or by its timer when p is NULL). */
int lots_activate(struct op *op, struct acct *a, const struct tally_lot *lot,
                  const struct tally_posting *p);

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
int timers_clear(struct engine *e, uint64_t time, uint32_t kind, uint32_t program,
                 uint64_t member, uint64_t object, uint64_t aux);
/* Run every timer due at or before `now`, in time order. */
int timers_sweep(struct engine *e, uint64_t now);

/* ---- postings.c ------------------------------------------------------------------------- */
/* Validation by the posting's bytes alone: TALLY_OK or a validation result code. */
uint32_t postings_validate(const struct tally_posting *p);
/* Execute a valid posting at `now`. Returns 0 and *result, or a negative system error. */
int postings_execute(struct engine *e, const struct tally_posting *p, uint64_t now,
                     uint32_t *result, uint64_t *first_seq, uint32_t *entry_count);
/* Give back what a hold still reserves: a RELEASE posting or a timeout (the hold must be
 * ACTIVE; a timeout of a resolved hold does nothing), or the remainder right after a partial
 * CAPTURE (remainder = true). */
int postings_release_hold(struct op *op, uint64_t hold_seq, struct acct *a, bool remainder);

#endif
