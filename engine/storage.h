/* storage.h: the LMDB layout of a tally data directory: sub-databases, keys and values.
 *
 * This header is the single definition of the on-disk format, shared by the engine (which writes
 * it) and tally-audit (which reads it without the engine's logic). docs/STORAGE.md explains it.
 *
 * Keys that must sort are big-endian byte strings, so LMDB's memcmp order is the numeric order.
 * Keys that only need lookup or append order are native uint64_t with MDB_INTEGERKEY. Values are
 * the fixed-size structs below, little-endian and naturally aligned; readers copy a value out
 * before reading fields (LMDB only promises 2-byte alignment).
 *
 *   sub-database  key                                          value
 *   meta          "state" (5 bytes)                            struct store_meta
 *   entries       seq u64 (INTEGERKEY, appended)               struct tally_entry + tail
 *   postings      posting id (16 bytes)                        struct store_posting
 *   programs      program BE32                                 struct store_program
 *   members       slot BE64, program BE32, member BE64 (20)    struct tally_account, then
 *                                                              lots_open x struct tally_lot
 *   holds         HOLD entry seq u64 (INTEGERKEY)              struct store_hold + lot refs
 *   reversals     reversed entry seq u64 (INTEGERKEY)          struct store_reversal + u64[n]
 *   timers        time BE64, timer seq BE64 (16 bytes)         struct store_timer
 *   sessions      client id (16 bytes)                         struct store_session + results
 *   session_lru   last index BE64, client id (24 bytes)        empty
 *
 * Members: write-back and recovery
 * --------------------------------
 * LMDB is a copy-on-write B-tree: a write transaction costs the distinct 4 KiB pages it dirties,
 * however small the records. Writing every touched member into the B-tree with every batch costs
 * about one random page per posting, which measured here caps a durable engine near 25,000
 * postings/s (docs/BENCHMARKS.md). So member images (account + open lots, one value per member)
 * live in an in-memory write-back cache, and a batch's transaction makes only its entries durable
 * (appended: sequential pages) together with the small records beside them. The entries are
 * enough: every change to a member image is the effect of an entry (engine/fold.c), and each
 * image records the newest entry it includes (account.last_seq).
 *
 * Dirty members go back into `members` by a clock sweep: each batch also writes back the dirty
 * members of the next slice of the key space, the slice sized so that the hand goes round once
 * per ENGINE_TURN_ENTRIES entries. When a turn ends, every member changed before the turn began
 * has been written back since, so meta.fold_from moves to the first entry of that turn. At open,
 * recovery folds the entries from fold_from on into the images (skipping, for each member, those
 * its image already has), so a restart reads at most two turns of the log. A member rewritten by a
 * thousand batches in one turn costs one page write, not a thousand; and because the sweep moves
 * in key order, the dirty members that share a page share its write.
 *
 * The `slot` that leads a members key is XXH3-64 of the member's 12-byte big-endian
 * (program, member), so key order is hash order: the in-memory cache indexes its buckets by the
 * top bits of the same hash, and a slice of buckets is a contiguous range of the B-tree.
 *
 * The state sum: every change to a record of postings, programs, members (the logical state:
 * the images as of the last batch, whether or not written back yet), holds, reversals, timers,
 * sessions and session_lru
 * adds (put) or subtracts (delete, or the old value of an overwrite) store_sum_term(tag, key,
 * value) = XXH3-128(value) seeded with XXH3-64(key) seeded with the dbi tag, to a 128-bit sum
 * kept in store_meta, modulo 2^128 (seeding, rather than hashing tag || key || value, spares a
 * copy of every value into a buffer). The sum
 * therefore fingerprints the whole derived state, is maintained in O(1) per write, and can be
 * recomputed from scratch (tally-audit folds the entries and hashes what it gets). Entries are
 * covered by the hash chain; meta is not part of the sum.
 */
#ifndef TALLY_STORAGE_H
#define TALLY_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "tally_records.h"

#define STORE_FORMAT_MAGIC 0x594c4c4154u /* "TALLY" */
#define STORE_FORMAT_VERSION 3u

/* Sub-database names and the one-byte tags mixed into the state sum. */
#define STORE_DBS(X)                                                                              \
    X(META, "meta", 0)                                                                            \
    X(ENTRIES, "entries", 1)                                                                      \
    X(POSTINGS, "postings", 2)                                                                    \
    X(PROGRAMS, "programs", 3)                                                                    \
    X(MEMBERS, "members", 4)                                                                      \
    X(HOLDS, "holds", 5)                                                                          \
    X(REVERSALS, "reversals", 6)                                                                  \
    X(TIMERS, "timers", 7)                                                                        \
    X(SESSIONS, "sessions", 8)                                                                    \
    X(SESSION_LRU, "session_lru", 9)

enum store_db {
#define STORE_DB_ENUM_(name, str, tag) STORE_DB_##name = tag,
    STORE_DBS(STORE_DB_ENUM_)
#undef STORE_DB_ENUM_
        STORE_DB_COUNT
};

/* Key sizes. */
#define STORE_MEMBER_KEY 20
#define STORE_TIMER_KEY 16

/* The largest members value: the account and TALLY_LINEAGE_MAX lots. */
#define STORE_MEMBER_MAX (sizeof(struct tally_account) + TALLY_LINEAGE_MAX * sizeof(struct tally_lot))

/* ---------------------------------------------------------------------------------------------
 * meta "state": 96 bytes, rewritten by every batch.
 *   0 magic u64, 8 version u32, 12 reserved u32, 16 applied_index, 24 last_timestamp,
 *   32 next_seq (seq the next entry gets; 1 in an empty ledger), 40 next_lot_id,
 *   48 chain_head (hash of entry next_seq-1), 56 sum_lo, 64 sum_hi, 72 fold_from (every member
 *   change before this entry is in `members`: recovery folds from here), 80 next_timer (the seq
 *   the next timer gets), 88 checksum (XXH3-64 of bytes [0,88)).
 * ------------------------------------------------------------------------------------------- */
struct store_meta {
    uint64_t magic;
    uint32_t version;
    uint32_t reserved;
    uint64_t applied_index;
    uint64_t last_timestamp;
    uint64_t next_seq;
    uint64_t next_lot_id;
    uint64_t chain_head;
    uint64_t sum_lo;
    uint64_t sum_hi;
    uint64_t fold_from;
    uint64_t next_timer;
    uint64_t checksum;
};
_Static_assert(sizeof(struct store_meta) == 96, "meta is 96 bytes");

/* postings: what became of a posting id. Recorded for successes and state-dependent failures. */
struct store_posting {
    uint64_t body_hash;   /* XXH3-64 of the 128 posting bytes */
    uint32_t code;        /* enum tally_result_code */
    uint16_t kind;
    uint16_t reserved;
    uint64_t seq;         /* first entry (0 for a failure) */
    uint32_t entry_count; /* consecutive entries from seq */
    uint32_t reserved2;
    uint64_t timestamp;
};
_Static_assert(sizeof(struct store_posting) == 40, "posting record is 40 bytes");

/* sessions: a client's last applied request and its results (the reply cache), followed by
 * `count` struct tally_result. session_lru orders sessions by last_index for eviction. */
struct store_session {
    uint64_t last_request;
    uint64_t last_index; /* applied index of the entry that carried it */
    uint32_t count;
    uint32_t reserved;
};
_Static_assert(sizeof(struct store_session) == 24, "session record is 24 bytes");

/* programs: configuration and counters. */
struct store_program {
    struct tally_program_config config;
    uint64_t created_at;
    uint64_t created_seq;
    uint64_t members;      /* accounts opened */
    uint32_t rule_version; /* 1; recorded in TIER_CHANGE entries */
    uint32_t reserved;
};
_Static_assert(sizeof(struct store_program) == 128, "program record is 128 bytes");

/* holds: one per HOLD entry, followed by lot_count lot refs (the lots the hold reserved from,
 * and how much of each). Resolved holds stay, with their status. */
struct store_hold {
    uint32_t program;
    uint32_t status; /* enum tally_hold_status */
    uint64_t member;
    uint64_t amount;
    uint64_t captured;
    uint64_t timeout_at;
    uint64_t resolved_seq;
    uint8_t posting_id[16];
    uint32_t lot_count;
    uint32_t reserved;
};
_Static_assert(sizeof(struct store_hold) == 72, "hold record is 72 bytes");

/* reversals: how much of an accrual, redemption or capture has been reversed so far. For a
 * redemption or capture, followed by lot_count u64: points restored so far to each lot of the
 * original entry's lineage, in lineage order (so partial reversals stay proportional and exact). */
struct store_reversal {
    uint64_t amount;
    uint64_t value;
    uint32_t lot_count;
    uint32_t reserved;
};
_Static_assert(sizeof(struct store_reversal) == 24, "reversal record is 24 bytes");

/* timers: due work, in time order. The key is (time, seq): seq is a counter (meta.next_timer),
 * so timers set in a batch are appended at the end of their time's range instead of scattered
 * through it, and a batch dirties a handful of pages for them. Timers are never deleted early:
 * one whose work is done or moot does nothing when it comes due (timers.c).
 * object: lot id (ACTIVATE), hold seq (HOLD_TIMEOUT), 0 else; aux: the lot's expires_at
 * (ACTIVATE), 0 else. */
struct store_timer {
    uint32_t kind; /* enum store_timer_kind */
    uint32_t program;
    uint64_t member;
    uint64_t object;
    uint64_t aux;
};
_Static_assert(sizeof(struct store_timer) == 32, "timer record is 32 bytes");

enum store_timer_kind {
    STORE_TIMER_ACTIVATE = 1,
    STORE_TIMER_HOLD_TIMEOUT = 2,
    STORE_TIMER_EXPIRE = 3,
    STORE_TIMER_TIER = 4,
};

/* ---------------------------------------------------------------------------------------------
 * Big-endian key helpers (shared so that the writer and the auditor cannot disagree).
 * ------------------------------------------------------------------------------------------- */
static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

/* The state sum's term for one record (see the top of this file). */
static inline unsigned __int128 store_sum_term(int tag, const void *key, size_t klen,
                                               const void *val, size_t vlen)
{
    XXH64_hash_t seed = XXH3_64bits_withSeed(key, klen, (XXH64_hash_t)tag);
    XXH128_hash_t h = tally_hash128(val, vlen, seed);
    return (unsigned __int128)h.high64 << 64 | h.low64;
}

static inline uint32_t store_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t store_get_be64(const uint8_t *p)
{
    return (uint64_t)store_get_be32(p) << 32 | store_get_be32(p + 4);
}

/* The slot of a member: XXH3-64 of its big-endian (program, member). Part of the format. */
static inline uint64_t store_member_slot(uint32_t program, uint64_t member)
{
    uint8_t k[12];
    store_be32(k, program);
    store_be64(k + 4, member);
    return XXH3_64bits(k, sizeof(k));
}

static inline void store_member_key(uint8_t k[STORE_MEMBER_KEY], uint32_t program,
                                    uint64_t member)
{
    store_be64(k, store_member_slot(program, member));
    store_be32(k + 8, program);
    store_be64(k + 12, member);
}

static inline void store_timer_key(uint8_t k[STORE_TIMER_KEY], uint64_t time, uint64_t seq)
{
    store_be64(k, time);
    store_be64(k + 8, seq);
}

#endif
