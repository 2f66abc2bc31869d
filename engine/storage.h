/* storage.h: the LMDB layout of a tally data directory: sub-databases, keys and values.
 *
 * This header is the single definition of the on-disk format, shared by the engine (which writes
 * it) and tally-audit (which reads it without the engine's logic). docs/STORAGE.md explains it.
 *
 * Keys that must sort (accounts, lots, history, timers) are big-endian byte strings, so LMDB's
 * memcmp order is the numeric order. Keys that only need lookup or append order (entries, holds)
 * are native uint64_t with MDB_INTEGERKEY. Values are the fixed-size structs below, little-endian
 * and naturally aligned (LMDB returns values 2-byte aligned at least; the engine copies a value
 * out before reading any field wider than that, see store_get()).
 *
 *   sub-database  key                                          value
 *   meta          "state" (5 bytes)                            struct store_meta
 *   entries       seq u64 (INTEGERKEY, appended)               struct tally_entry + tail
 *   postings      posting id (16 bytes)                        struct store_posting
 *   programs      program BE32                                 struct store_program
 *   members       program BE32, member BE64, then by tag:      (see below)
 *                   0x01 history: time BE64, seq BE64 (29)     struct store_history
 *                   0x02 lot: expires_at BE64, lot_id BE64 (29) struct tally_lot
 *                   0x03 account (13 bytes)                    struct tally_account
 *   holds         HOLD entry seq u64 (INTEGERKEY)              struct store_hold + lot refs
 *   reversals     reversed entry seq u64 (INTEGERKEY)          struct store_reversal + u64[n]
 *   timers        time BE64, kind BE32, program BE32,          aux u64 (8 bytes)
 *                 member BE64, object BE64 (32 bytes)
 *
 * Why one `members` sub-database: LMDB is a copy-on-write B-tree, so the cost of a write
 * transaction is the number of distinct pages it dirties, 4 KiB each, however small the records.
 * A posting changes a member's account, one or more of its lots and appends to its history; with
 * the three in separate trees that is three random pages per posting. Under one key prefix per
 * member, ordered history < lots < account, the newest history rows, the open lots and the account
 * sit side by side, and a posting usually dirties one page. (System accounts live here too, with
 * no history rows.)
 *
 * The state sum: every put and delete in postings, programs, members, holds, reversals and
 * timers adds (put) or subtracts (delete, or the old value of an overwrite)
 * XXH3-128(dbi tag || key || value) to a 128-bit sum kept in store_meta, modulo 2^128. The sum
 * therefore fingerprints the whole derived state, is maintained in O(1) per write, and can be
 * recomputed from scratch by a scan (tally-audit does). Entries are covered by the hash chain.
 */
#ifndef TALLY_STORAGE_H
#define TALLY_STORAGE_H

#include <stdint.h>

#include "tally_records.h"

#define STORE_FORMAT_MAGIC 0x594c4c4154u /* "TALLY" */
#define STORE_FORMAT_VERSION 1u

/* Sub-database names and the one-byte tags mixed into the state sum. */
#define STORE_DBS(X)                                                                              \
    X(META, "meta", 0)                                                                            \
    X(ENTRIES, "entries", 1)                                                                      \
    X(POSTINGS, "postings", 2)                                                                    \
    X(PROGRAMS, "programs", 3)                                                                    \
    X(MEMBERS, "members", 4)                                                                      \
    X(HOLDS, "holds", 5)                                                                          \
    X(REVERSALS, "reversals", 6)                                                                  \
    X(TIMERS, "timers", 7)

enum store_db {
#define STORE_DB_ENUM_(name, str, tag) STORE_DB_##name = tag,
    STORE_DBS(STORE_DB_ENUM_)
#undef STORE_DB_ENUM_
        STORE_DB_COUNT
};

/* Key sizes, and the tags of the members sub-database. */
#define STORE_MEMBER_PREFIX 12 /* program, member */
#define STORE_ACCOUNT_KEY 13
#define STORE_HISTORY_KEY 29
#define STORE_LOT_KEY 29
#define STORE_TIMER_KEY 32
#define STORE_TAG_HISTORY 0x01
#define STORE_TAG_LOT 0x02
#define STORE_TAG_ACCOUNT 0x03

/* ---------------------------------------------------------------------------------------------
 * meta "state": 96 bytes, rewritten by every batch.
 *   0 magic u64, 8 version u32, 12 reserved u32, 16 applied_index, 24 last_timestamp,
 *   32 next_seq (seq the next entry gets; 1 in an empty ledger), 40 next_lot_id,
 *   48 chain_head (hash of entry next_seq-1), 56 sum_lo, 64 sum_hi, 72 checksum (XXH3-64 of
 *   bytes [0,72)), 80 reserved[2].
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
    uint64_t checksum;
    uint64_t reserved2[2];
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

/* history: the member's buckets right after entry `seq` (stamped `time` in the key). */
struct store_history {
    int64_t available;
    uint64_t pending;
    uint64_t held;
};
_Static_assert(sizeof(struct store_history) == 24, "history record is 24 bytes");

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

/* timers: due work, in time order. object: lot id (ACTIVATE), hold seq (HOLD_TIMEOUT), 0 else.
 * aux (the value): the lot's expires_at (ACTIVATE), 0 else. */
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

static inline uint32_t store_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t store_get_be64(const uint8_t *p)
{
    return (uint64_t)store_get_be32(p) << 32 | store_get_be32(p + 4);
}

static inline void store_member_prefix(uint8_t k[STORE_MEMBER_PREFIX], uint32_t program,
                                       uint64_t member)
{
    store_be32(k, program);
    store_be64(k + 4, member);
}

/* The first 13 bytes of every key of one kind (tag) of one member. */
static inline void store_member_tag(uint8_t k[STORE_MEMBER_PREFIX + 1], uint32_t program,
                                    uint64_t member, uint8_t tag)
{
    store_member_prefix(k, program, member);
    k[12] = tag;
}

static inline void store_account_key(uint8_t k[STORE_ACCOUNT_KEY], uint32_t program,
                                     uint64_t member)
{
    store_member_prefix(k, program, member);
    k[12] = STORE_TAG_ACCOUNT;
}

static inline void store_history_key(uint8_t k[STORE_HISTORY_KEY], uint32_t program,
                                     uint64_t member, uint64_t time, uint64_t seq)
{
    store_member_prefix(k, program, member);
    k[12] = STORE_TAG_HISTORY;
    store_be64(k + 13, time);
    store_be64(k + 21, seq);
}

static inline void store_lot_key(uint8_t k[STORE_LOT_KEY], uint32_t program, uint64_t member,
                                 uint64_t expires_at, uint64_t lot_id)
{
    store_member_prefix(k, program, member);
    k[12] = STORE_TAG_LOT;
    store_be64(k + 13, expires_at);
    store_be64(k + 21, lot_id);
}

static inline void store_timer_key(uint8_t k[STORE_TIMER_KEY], uint64_t time, uint32_t kind,
                                   uint32_t program, uint64_t member, uint64_t object)
{
    store_be64(k, time);
    store_be32(k + 8, kind);
    store_be32(k + 12, program);
    store_be64(k + 16, member);
    store_be64(k + 24, object);
}

#endif
