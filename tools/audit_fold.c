/* audit_fold.c: tally-audit's independent re-derivation of a ledger's state from its entries.
 *
 * Design
 * ------
 * The auditor shares the on-disk layout with the engine (engine/storage.h, include/
 * tally_records.h) and nothing else: it never calls the engine. It opens the LMDB environment
 * read-only, takes one read transaction (one consistent snapshot, even beside a live writer),
 * and walks the entries from seq 1. Each entry is checked (numbering, shape, hash chain, the
 * posting that caused it, the per-member back-links debit_prev / credit_prev), then folded into
 * an in-memory state following the "Entry effects" table of docs/LEDGER.md. After the walk the
 * derived tables written with every batch (programs, holds, reversals, postings) are scanned once:
 * each record is compared with the fold (both ways: a stored record the fold does not have is a
 * difference too) and hashed into the state sum, which must equal the one in meta. Finally the
 * folded state must keep the laws: every program sums to zero, each member's buckets equal what
 * its lots hold, no member has more than TALLY_LINEAGE_MAX open lots, and no time-driven work
 * (expiry, activation, hold timeout, tier evaluation) is overdue after the last batch. Every
 * TIER_CHANGE is recomputed from the QV ring and the program's ladder, and an accrual that earns
 * a higher tier must be followed by its UPGRADE. The first difference stops the audit and is
 * reported with the entry, account, lot and field.
 *
 * Member images (storage.h, "Members: write-back and recovery") are not written with every
 * batch: the engine keeps them in memory and writes them back lazily, so an image in `members`
 * may be older than the entries, and says how old in its account.last_seq. Before the walk,
 * `members` is read once into a table of (program, member) -> that image (a pointer into the
 * read transaction's map, valid until it ends: nothing is copied) and its last_seq; each image
 * must be well formed (an account, then whole lots in (expires_at, lot_id) order, as many as
 * lots_open) under exactly the key store_member_key() makes of its program and member. During
 * the walk, right after an entry is folded, each account it names whose image has last_seq equal
 * to that entry is compared with the fold's state of that account at that moment: its lots
 * first (so a lot added or removed is named as such), then its account. After the walk every
 * image must have been compared (its last_seq names an entry of that account), and every change
 * before meta.fold_from must be in `members`: for each account, its last entry before fold_from
 * is at or before its image's last_seq, and an account without an image has no entry before
 * fold_from. The state sum covers the logical images (as of the last batch, written back or
 * not): they are the fold's final accounts, each with its lots in (expires_at, lot_id) order,
 * hashed under their `members` key; the stored images, possibly older, are not in it.
 *
 * Memory: accounts (1M members: about 300 MB), open lots, active holds and reversal records are
 * kept in open-addressing tables; resolved holds are compared when they resolve and dropped,
 * deleted lots are dropped; entries are streamed; the stored images are one pointer per member.
 *
 * Nothing read from disk is asserted: every size, kind, reference and counter is checked and a
 * bad one is reported as a difference (or, if LMDB itself fails, as an error code).
 *
 * Interpretations of docs/LEDGER.md (where the document leaves room; the engine must agree)
 * --------------------------------------------------------------------------------------
 *  1. System accounts are created by the PROGRAM entry with status SYSTEM, opened_at = the
 *     entry's timestamp, tier 0, tier_valid_until = UINT64_MAX, last_seq = the PROGRAM entry,
 *     everything else 0 (qv_month too: they never earn QV). Afterwards a system account's
 *     last_seq is the newest entry that names it as debit or credit (whatever the amount).
 *     Entries link only member accounts: debit_prev / credit_prev of a system side (or of the
 *     zero sides of a PROGRAM entry) is 0; of a member side, the account's last_seq before the
 *     entry (0 for its OPEN). "The account" is (program, member): the same member id in two
 *     programs is two chains.
 *  2. A member account's qv_month starts at the month of its OPEN entry. Every ACCRUE advances
 *     the ring to its month, even with value 0. CANCEL and REVERSE never advance the ring; they
 *     subtract (saturating at 0) from the accrual's month only while that month is still within
 *     the 12 months ending at qv_month. qv_lifetime subtracts saturating at 0 too.
 *  3. Lot `amount` ("points the lot was created with"): for a pending ACCRUE the entry's amount;
 *     for an active ACCRUE and a positive ADJUST refs[0].amount (what landed after paying a
 *     debt); for a TRANSFER destination and a re-created lot, the ref's amount.
 *  4. A TRANSFER destination lot i gets id entry.lot_id + i, and ids of zero-amount
 *     destinations are skipped but not reused.
 *  5. CANCEL deletes the lot named by the accrual's entry.lot_id (the cancelled entry may or may
 *     not carry lot refs), and its value must equal the accrual's value (all QV is removed). It
 *     counts as a full reversal: the accrual's reversal record gets its amount and value.
 *  6. CLOSE: a pending lot emptied by the close stops being pending, and so is deleted (it would
 *     otherwise be a lot with no points kept forever). Its refs must total the entry's amount;
 *     its value is the pending part, which must equal the refs of the lots that were pending:
 *     pending -= value, available -= amount - value.
 *  7. Lineage totals: REDEEM, HOLD, CAPTURE, RELEASE, EXPIRE, CLOSE and the source half of a
 *     TRANSFER take exactly `amount` from their lots. Entries that credit a member (an active
 *     ACCRUE, ACTIVATE, positive ADJUST, REVERSE of a redemption, the destination half of a
 *     TRANSFER) land exactly amount - min(amount, debt) in lots. A debit that may make a debt
 *     (negative ADJUST, REVERSE of an accrual) takes at most `amount` from lots.
 *  8. REVERSE of an accrual: its value must be floor(V*R_after/A) - floor(V*R_before/A). The
 *     reversal record of an accrual has lot_count 0 and value = QV removed so far. A REVERSE of a
 *     redemption or capture is split over the original lineage by the proportional rule (lots
 *     matched by lot id, first match); restored[i] adds the split, what was meant for lot i, even
 *     when a debt took part of it; each ref lands at most lot i's part (exactly, without debt).
 *  9. A hold record keeps the HOLD entry's refs, posting id and timeout; CAPTURE sets captured and
 *     resolved_seq; a RELEASE of an ACTIVE hold sets resolved_seq to itself. A resolved hold is
 *     never changed again.
 * 10. Every entry with a zero posting id is flagged AUTO; every entry with a nonzero one lies in
 *     the range [seq, seq + entry_count) of that posting's record, whose code is OK.
 * 11. TIER_CHANGE: an UPGRADE at t records the window QV at t and the tier it earns, valid until
 *     the start of month(t) + validity_months + 1 (never in UP_ONLY); RENEW and DOWNGRADE happen
 *     exactly at tier_valid_until = t and use the window at t - 1 ms; time_b (rules) is 1.
 *     Months after qv_month count 0 in a window (the ring has not reached them).
 * 12. Due work: after the last batch (meta.last_timestamp) nothing is due at or before it; a
 *     closed member's tier is never evaluated.
 * 13. Lot limit: after every entry each member it names has at most TALLY_LINEAGE_MAX open lots
 *     (a lot created and emptied by the same entry does not count).
 * 14. Member images: an image in `members` is the state of its account right after the entry
 *     its last_seq names (an entry whose debit or credit is that account, or for a system account
 *     the PROGRAM entry that created it); meta.fold_from lies in [1, next_seq].
 * 15. RELEASE of the rest of a partially captured hold: flagged REMAINDER (and AUTO), it comes
 *     right after its CAPTURE, names the same hold, releases exactly the hold's amount less the
 *     captured one, and leaves holds_active alone (the CAPTURE resolved the hold). Any other
 *     RELEASE resolves an active hold, all of it. No other kind carries the flag.
 */
#include "audit_fold.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "calendar.h"
#include "hash.h"
#include "ids.h"
#include "storage.h"
#include "tally_errors.h"
#include "tally_results.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the record layouts are little-endian and read in place"
#endif

/* Returned (positive) by the checks when they recorded a difference: the audit stops there. */
#define AUDIT_DIFF 1

/* Largest tail of one entry the auditor reads: a TRANSFER carries 2 x TALLY_LINEAGE_MAX refs;
 * twice that again leaves room for a time-driven EXPIRE, which no posting limit bounds. A larger
 * tail is reported as a difference, never read past. */
#define AUDIT_TAIL_MAX  (4u * TALLY_LINEAGE_MAX * (uint32_t)sizeof(struct tally_lot_ref))
#define AUDIT_ENTRY_MAX ((size_t)sizeof(struct tally_entry) + AUDIT_TAIL_MAX)

/* Slots of a table when it starts (a power of two); tables double past 70% load. */
#define TABLE_SLOTS_MIN 1024u

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int try_rc_ = (expr);                                                                      \
        if (try_rc_ != 0)                                                                          \
            return try_rc_;                                                                        \
    } while (0)

/* =============================================================================================
 * A plain open-addressing table: dense items, and a linear-probing index keyed by two u64.
 * Items move when the table grows or an item is removed: never keep an item pointer across
 * table_add or table_remove on the same table.
 * =========================================================================================== */

struct table_key {
    uint64_t a;
    uint64_t b;
};

struct table_slot {
    uint64_t a;
    uint64_t b;
    uint64_t pos; /* item index + 1; 0: empty */
};

struct table {
    struct table_slot *slot;
    size_t mask; /* slot count - 1 */
    struct table_key *keys;
    uint8_t *items;
    size_t item_size;
    size_t count;
    size_t cap;
};

static uint64_t table_hash(uint64_t a, uint64_t b)
{
    uint64_t x = a * UINT64_C(0x9e3779b97f4a7c15) ^ (b + UINT64_C(0x632be59bd9b4e019));
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    return x;
}

static int table_init(struct table *t, size_t item_size)
{
    memset(t, 0, sizeof(*t));
    t->item_size = item_size;
    t->slot = calloc(TABLE_SLOTS_MIN, sizeof(*t->slot));
    if (t->slot == NULL)
        return -ENOMEM;
    t->mask = TABLE_SLOTS_MIN - 1;
    return 0;
}

static void table_release(struct table *t)
{
    free(t->slot);
    free(t->keys);
    free(t->items);
    memset(t, 0, sizeof(*t));
}

/* The slot holding (a, b), or the empty slot where it would go. */
static size_t table_probe(const struct table *t, uint64_t a, uint64_t b)
{
    size_t i = (size_t)table_hash(a, b) & t->mask;
    while (t->slot[i].pos != 0 && (t->slot[i].a != a || t->slot[i].b != b))
        i = (i + 1) & t->mask;
    return i;
}

static void *table_item(const struct table *t, size_t pos)
{
    return t->items + pos * t->item_size;
}

static void *table_get(const struct table *t, uint64_t a, uint64_t b)
{
    size_t i = table_probe(t, a, b);
    if (t->slot[i].pos == 0)
        return NULL;
    return table_item(t, (size_t)t->slot[i].pos - 1);
}

static int table_grow(struct table *t)
{
    if ((t->count + 1) * 10 > (t->mask + 1) * 7) {
        size_t old_n = t->mask + 1;
        struct table_slot *old = t->slot;
        t->slot = calloc(old_n * 2, sizeof(*t->slot));
        if (t->slot == NULL) {
            t->slot = old;
            return -ENOMEM;
        }
        t->mask = old_n * 2 - 1;
        for (size_t k = 0; k < old_n; k++)
            if (old[k].pos != 0)
                t->slot[table_probe(t, old[k].a, old[k].b)] = old[k];
        free(old);
    }
    if (t->count == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 256;
        uint8_t *items = realloc(t->items, cap * t->item_size);
        if (items == NULL)
            return -ENOMEM;
        t->items = items;
        struct table_key *keys = realloc(t->keys, cap * sizeof(*keys));
        if (keys == NULL)
            return -ENOMEM;
        t->keys = keys;
        t->cap = cap;
    }
    return 0;
}

/* Add (a, b), which must be absent. Returns its zeroed item, or NULL when out of memory. */
static void *table_add(struct table *t, uint64_t a, uint64_t b)
{
    if (table_grow(t) != 0)
        return NULL;
    size_t i = table_probe(t, a, b);
    t->slot[i] = (struct table_slot){.a = a, .b = b, .pos = t->count + 1};
    t->keys[t->count] = (struct table_key){.a = a, .b = b};
    void *item = table_item(t, t->count);
    memset(item, 0, t->item_size);
    t->count++;
    return item;
}

/* Empty slot i without breaking any probe chain (backward-shift deletion). */
static void table_unlink_slot(struct table *t, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->slot[j].pos == 0)
            break;
        size_t home = (size_t)table_hash(t->slot[j].a, t->slot[j].b) & t->mask;
        /* slot j may fill the hole at i only if its home is not in the cyclic range (i, j] */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        t->slot[i] = t->slot[j];
        i = j;
    }
    memset(&t->slot[i], 0, sizeof(t->slot[i]));
}

/* Remove (a, b) if present; the last item moves into its place so the items stay dense. */
static void table_remove(struct table *t, uint64_t a, uint64_t b)
{
    size_t i = table_probe(t, a, b);
    if (t->slot[i].pos == 0)
        return;
    size_t pos = (size_t)t->slot[i].pos - 1;
    table_unlink_slot(t, i);
    size_t last = t->count - 1;
    if (pos != last) {
        memcpy(table_item(t, pos), table_item(t, last), t->item_size);
        t->keys[pos] = t->keys[last];
        t->slot[table_probe(t, t->keys[pos].a, t->keys[pos].b)].pos = pos + 1;
    }
    t->count--;
}

/* =============================================================================================
 * The audit: its folded state, its LMDB handles and its report.
 * =========================================================================================== */

struct fold_program {
    struct store_program rec; /* the record the programs table must hold */
    __int128 sum;             /* scratch: the program's accounts summed */
    uint64_t last_seq;        /* newest entry that changed the record */
};

struct fold_account {
    struct tally_account acc; /* the account as folded so far: at the end, the logical image */
    uint64_t lot_active;      /* scratch: what the member's lots hold */
    uint64_t lot_pending;
    uint64_t lot_held;
    uint64_t last_before; /* newest entry naming it before meta.fold_from (0: none) */
    size_t lot_first;     /* scratch: its first lot in the sorted lots of the state sum */
    uint32_t lot_count;   /* scratch: how many */
    uint32_t reserved;
};

struct fold_lot {
    uint32_t program;
    uint32_t reserved;
    uint64_t member;
    uint64_t last_seq; /* newest entry that changed the lot */
    struct tally_lot lot;
};

struct fold_reversal {
    uint64_t amount;    /* points reversed so far */
    uint64_t value;     /* QV removed so far */
    uint64_t *restored; /* per lot of the original lineage (redemption, capture) */
    uint32_t lot_count;
    uint32_t reserved;
    uint64_t last_seq; /* newest REVERSE entry naming it */
};

/* The image of one account in `members`: where it lies in the read transaction's map. */
struct stored_image {
    const uint8_t *image; /* account, then lots; not aligned: copy fields out */
    uint64_t last_seq;    /* the newest entry it includes (its account.last_seq) */
    uint32_t size;
    uint32_t compared; /* the walk compared it, at entry last_seq */
};

/* One entry as read: the fixed part copied out, the whole value in an aligned buffer. */
struct audit_entry {
    struct tally_entry e;
    uint8_t *raw;
    size_t size;
    const struct tally_lot_ref *refs;
    uint32_t nrefs;
};

struct audit {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[STORE_DB_COUNT];
    bool has_db[STORE_DB_COUNT];
    struct audit_report *rep;
    struct store_meta meta;
    bool has_meta;
    struct table programs;  /* (program, 0) -> fold_program */
    struct table accounts;  /* (program, member) -> fold_account */
    struct table lots;      /* (lot id, 0) -> fold_lot: lots that exist now */
    struct table holds;     /* (HOLD seq, 0) -> store_hold: active holds only */
    struct table reversals; /* (reversed seq, 0) -> fold_reversal */
    struct table stored;    /* (program, member) -> stored_image: `members` as read */
    bool verifying;         /* audit_verify: compare with the stored records as the walk goes */
    uint64_t fold_from;     /* meta.fold_from while verifying; 0: no write-back check */
    struct audit_entry cur; /* the entry being folded */
    struct audit_entry ref; /* the entry it acts upon, or any entry looked up */
    uint64_t prev_hash;
    uint64_t upgrade_due; /* member whose last ACCRUE earned a higher tier (0: none) */
    uint64_t upgrade_seq; /* that ACCRUE */
    uint64_t remainder_hold;   /* hold whose CAPTURE left points to release (0: none) */
    uint64_t remainder_amount; /* those points */
    uint64_t remainder_seq;    /* that CAPTURE */
    uint64_t max_lot_id;
    uint64_t max_timestamp;
    uint64_t holds_created;
    uint64_t matched;          /* records of the table being scanned that the fold has */
    uint64_t *share;       /* scratch: a reversal's split over the original lineage */
    uint8_t *scratch;      /* tag || key || value, hashed into the state sum */
    size_t scratch_cap;
};

static const char *const kind_names[TALLY_KIND_LIMIT] = {
    "?",       "PROGRAM", "OPEN",    "ACCRUE",   "ACTIVATE", "CANCEL", "REDEEM", "HOLD",
    "CAPTURE", "RELEASE", "REVERSE", "TRANSFER", "ADJUST",   "CLOSE",  "EXPIRE", "TIER_CHANGE",
};

static const char *kind_name(uint32_t kind)
{
    return kind < TALLY_KIND_LIMIT ? kind_names[kind] : "?";
}

/* "member 42" or "ISSUANCE": who an account is, for messages. */
/* Room for "system account " and 20 digits. */
#define MEMBER_NAME_MAX 40

static const char *member_name(uint64_t member, char buf[MEMBER_NAME_MAX])
{
    static const char *const sys[TALLY_SYS_COUNT] = {"ISSUANCE", "REDEMPTION", "BREAKAGE",
                                                     "ADJUSTMENT"};
    if (member > UINT64_MAX - TALLY_SYS_COUNT)
        snprintf(buf, MEMBER_NAME_MAX, "%s", sys[UINT64_MAX - member]);
    else if (member >= TALLY_SYS_FIRST)
        snprintf(buf, MEMBER_NAME_MAX, "system account %" PRIu64, member);
    else
        snprintf(buf, MEMBER_NAME_MAX, "member %" PRIu64, member);
    return buf;
}

/* An instant for messages: ISO-8601 UTC, or "never". */
static const char *time_text(uint64_t t, char buf[32])
{
    if (t == UINT64_MAX)
        snprintf(buf, 32, "never");
    else
        calendar_format(t, buf);
    return buf;
}

static const char *reason_name(uint32_t reason)
{
    switch (reason) {
    case TALLY_TIER_UPGRADE:
        return "UPGRADE";
    case TALLY_TIER_RENEW:
        return "RENEW";
    case TALLY_TIER_DOWNGRADE:
        return "DOWNGRADE";
    default:
        return "unknown reason";
    }
}

__attribute__((format(printf, 3, 4))) static int audit_diff(struct audit *a, uint64_t seq,
                                                            const char *fmt, ...)
{
    va_list ap;
    a->rep->ok = false;
    a->rep->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(a->rep->what, sizeof(a->rep->what), fmt, ap);
    va_end(ap);
    return AUDIT_DIFF;
}

/* A difference found while folding the current entry: the message starts with the entry. */
__attribute__((format(printf, 2, 3))) static int entry_diff(struct audit *a, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return audit_diff(a, a->cur.e.seq, "entry %" PRIu64 " (%s, program %" PRIu32 "): %s",
                      a->cur.e.seq, kind_name(a->cur.e.kind), a->cur.e.program, msg);
}

/* LMDB's codes, translated at this one boundary. */
static int lmdb_error(int rc)
{
    switch (rc) {
    case MDB_NOTFOUND:
        return TALLY_ENOT_FOUND;
    case MDB_VERSION_MISMATCH:
        return TALLY_EVERSION;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
    case MDB_BAD_VALSIZE:
        return TALLY_ECORRUPT;
    case MDB_READERS_FULL:
        return TALLY_EBUSY;
    case MDB_MAP_RESIZED:
        return -EAGAIN;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

/* =============================================================================================
 * Record comparison, field by field, so a difference names its field.
 * =========================================================================================== */

struct field {
    const char *name;
    uint16_t offset;
    uint16_t size;
    bool is_signed;
};

#define FIELD(type, member, sgn)                                                                   \
    {                                                                                              \
#member, (uint16_t)offsetof(type, member), (uint16_t)sizeof(((type *)0)->member), sgn      \
    }
#define ACCOUNT_QV(i) FIELD(struct tally_account, qv[i], false)
#define PROGRAM_T(i)  FIELD(struct store_program, config.thresholds[i], false)

static const struct field account_fields[] = {
    FIELD(struct tally_account, program, false),
    FIELD(struct tally_account, status, false),
    FIELD(struct tally_account, member, false),
    FIELD(struct tally_account, available, true),
    FIELD(struct tally_account, pending, false),
    FIELD(struct tally_account, held, false),
    FIELD(struct tally_account, earned, false),
    FIELD(struct tally_account, redeemed, false),
    FIELD(struct tally_account, expired, false),
    FIELD(struct tally_account, adjusted, true),
    FIELD(struct tally_account, transferred_in, false),
    FIELD(struct tally_account, transferred_out, false),
    FIELD(struct tally_account, qv_lifetime, false),
    FIELD(struct tally_account, opened_at, false),
    FIELD(struct tally_account, closed_at, false),
    FIELD(struct tally_account, tier_valid_until, false),
    FIELD(struct tally_account, tier, false),
    FIELD(struct tally_account, qv_month, false),
    ACCOUNT_QV(0),
    ACCOUNT_QV(1),
    ACCOUNT_QV(2),
    ACCOUNT_QV(3),
    ACCOUNT_QV(4),
    ACCOUNT_QV(5),
    ACCOUNT_QV(6),
    ACCOUNT_QV(7),
    ACCOUNT_QV(8),
    ACCOUNT_QV(9),
    ACCOUNT_QV(10),
    ACCOUNT_QV(11),
    FIELD(struct tally_account, holds_active, false),
    FIELD(struct tally_account, lots_open, false),
    FIELD(struct tally_account, last_seq, false),
};

static const struct field lot_fields[] = {
    FIELD(struct tally_lot, lot_id, false),    FIELD(struct tally_lot, expires_at, false),
    FIELD(struct tally_lot, earned_at, false), FIELD(struct tally_lot, origin_seq, false),
    FIELD(struct tally_lot, amount, false),    FIELD(struct tally_lot, remaining, false),
    FIELD(struct tally_lot, held, false),      FIELD(struct tally_lot, activate_at, false),
};

static const struct field program_fields[] = {
    FIELD(struct store_program, config.expiry, false),
    FIELD(struct store_program, config.tier_mode, false),
    FIELD(struct store_program, config.window, false),
    FIELD(struct store_program, config.window_months, false),
    FIELD(struct store_program, config.validity_months, false),
    FIELD(struct store_program, config.tier_count, false),
    FIELD(struct store_program, config.flags, false),
    FIELD(struct store_program, config.expiry_n, false),
    FIELD(struct store_program, config.tz_offset_min, true),
    FIELD(struct store_program, config.expiry_fixed_at, false),
    FIELD(struct store_program, config.hold_timeout_ms, false),
    PROGRAM_T(0),
    PROGRAM_T(1),
    PROGRAM_T(2),
    PROGRAM_T(3),
    PROGRAM_T(4),
    PROGRAM_T(5),
    PROGRAM_T(6),
    FIELD(struct store_program, config.reserved, false),
    FIELD(struct store_program, created_at, false),
    FIELD(struct store_program, created_seq, false),
    FIELD(struct store_program, members, false),
    FIELD(struct store_program, rule_version, false),
    FIELD(struct store_program, reserved, false),
};

static const struct field hold_fields[] = {
    FIELD(struct store_hold, program, false),      FIELD(struct store_hold, status, false),
    FIELD(struct store_hold, member, false),       FIELD(struct store_hold, amount, false),
    FIELD(struct store_hold, captured, false),     FIELD(struct store_hold, timeout_at, false),
    FIELD(struct store_hold, resolved_seq, false), FIELD(struct store_hold, posting_id, false),
    FIELD(struct store_hold, lot_count, false),    FIELD(struct store_hold, reserved, false),
};

#define COUNT_OF(x) (sizeof(x) / sizeof((x)[0]))

static void field_format(const uint8_t *p, const struct field *f, char out[48])
{
    if (f->size > 8) {
        for (uint16_t i = 0; i < f->size && i < 23; i++)
            snprintf(out + 2 * i, 3, "%02x", p[i]);
        return;
    }
    uint64_t u = 0;
    memcpy(&u, p, f->size);
    if (!f->is_signed) {
        snprintf(out, 48, "%" PRIu64, u);
        return;
    }
    int64_t s;
    if (f->size == 4) {
        int32_t v;
        memcpy(&v, p, 4);
        s = v;
    } else {
        memcpy(&s, p, 8);
    }
    snprintf(out, 48, "%" PRId64, s);
}

/* Compare `found` (as stored) with `expected` (as folded), both `size` bytes. */
static int compare_fields(struct audit *a, uint64_t seq, const char *what, const struct field *f,
                          size_t nf, const void *expected, const void *found, size_t size)
{
    const uint8_t *e = expected;
    const uint8_t *g = found;
    for (size_t i = 0; i < nf; i++) {
        if (memcmp(e + f[i].offset, g + f[i].offset, f[i].size) == 0)
            continue;
        char ev[48], gv[48];
        field_format(e + f[i].offset, &f[i], ev);
        field_format(g + f[i].offset, &f[i], gv);
        return audit_diff(a, seq, "%s: field %s: expected %s, found %s", what, f[i].name, ev, gv);
    }
    if (memcmp(e, g, size) != 0)
        return audit_diff(a, seq, "%s: bytes differ outside the named fields", what);
    return 0;
}

/* =============================================================================================
 * Opening the data directory read-only.
 * =========================================================================================== */

static int env_open(struct audit *a, const char *dir, unsigned flags)
{
    int rc = mdb_env_create(&a->env);
    if (rc != 0)
        return lmdb_error(rc);
    rc = mdb_env_set_maxdbs(a->env, 16);
    if (rc == 0)
        rc = mdb_env_open(a->env, dir, flags, 0644);
    if (rc != 0) {
        mdb_env_close(a->env);
        a->env = NULL;
        return rc; /* raw: the caller decides about a fallback */
    }
    return 0;
}

static int dbs_open(struct audit *a)
{
    static const char *const names[STORE_DB_COUNT] = {
#define STORE_DB_NAME_(name, str, tag) [tag] = str,
        STORE_DBS(STORE_DB_NAME_)
#undef STORE_DB_NAME_
    };
    bool any = false;
    for (int i = 0; i < STORE_DB_COUNT; i++) {
        bool intkey = i == STORE_DB_ENTRIES || i == STORE_DB_HOLDS || i == STORE_DB_REVERSALS;
        int rc = mdb_dbi_open(a->txn, names[i], intkey ? MDB_INTEGERKEY : 0, &a->dbi[i]);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            return lmdb_error(rc);
        unsigned flags = 0;
        rc = mdb_dbi_flags(a->txn, a->dbi[i], &flags);
        if (rc != 0)
            return lmdb_error(rc);
        if (((flags & MDB_INTEGERKEY) != 0) != intkey || (flags & MDB_DUPSORT) != 0)
            return audit_diff(a, 0,
                              "sub-database %s: LMDB flags 0x%x, but storage.h gives it %s keys "
                              "and single values (%s, no MDB_DUPSORT): not the layout of "
                              "format version %u",
                              names[i], flags, intkey ? "native u64" : "byte-string",
                              intkey ? "MDB_INTEGERKEY" : "no MDB_INTEGERKEY",
                              STORE_FORMAT_VERSION);
        a->has_db[i] = true;
        any = true;
    }
    /* No tally database at all: an environment nobody applied anything to, or not ours. A
     * meta database is required as soon as anything else exists. */
    if (any && !a->has_db[STORE_DB_META])
        return TALLY_ECORRUPT;
    return 0;
}

static int audit_open(struct audit *a, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    size_t n = strlen(dir) + sizeof("/data.mdb");
    char *path = malloc(n);
    if (path == NULL)
        return -ENOMEM;
    snprintf(path, n, "%s/data.mdb", dir);
    int rc = stat(path, &st) != 0 ? -errno : 0;
    free(path);
    if (rc != 0)
        return rc;
    /* MDB_NOTLS: the read slot belongs to the transaction, not the thread, so a caller may hold
     * other LMDB environments. No map size is set: read-only, LMDB takes the file's. */
    rc = env_open(a, dir, MDB_RDONLY | MDB_NOTLS);
    if (rc == EACCES || rc == EROFS) /* the lock file cannot be created: a read-only copy */
        rc = env_open(a, dir, MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK);
    if (rc != 0)
        return lmdb_error(rc);
    rc = mdb_txn_begin(a->env, NULL, MDB_RDONLY, &a->txn);
    if (rc == MDB_MAP_RESIZED) { /* a live writer grew the map since we opened: adopt its size */
        rc = mdb_env_set_mapsize(a->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(a->env, NULL, MDB_RDONLY, &a->txn);
    }
    if (rc != 0)
        return lmdb_error(rc);
    return dbs_open(a);
}

/* Read and check the meta record. An absent one is allowed only in an empty ledger. */
static int meta_read(struct audit *a)
{
    if (!a->has_db[STORE_DB_META])
        return 0;
    MDB_val k = {.mv_size = 5, .mv_data = "state"};
    MDB_val v;
    int rc = mdb_get(a->txn, a->dbi[STORE_DB_META], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_error(rc);
    if (v.mv_size != sizeof(a->meta))
        return TALLY_ECORRUPT;
    memcpy(&a->meta, v.mv_data, sizeof(a->meta));
    if (a->meta.magic != STORE_FORMAT_MAGIC)
        return TALLY_ECORRUPT;
    if (a->meta.version != STORE_FORMAT_VERSION)
        return TALLY_EVERSION;
    a->has_meta = true;
    uint64_t sum = XXH3_64bits(&a->meta, offsetof(struct store_meta, checksum));
    if (sum != a->meta.checksum)
        return audit_diff(a, 0,
                          "meta record: checksum %016" PRIx64
                          " does not match its bytes (%016" PRIx64 "): the meta record was damaged",
                          a->meta.checksum, sum);
    return 0;
}

static int audit_init(struct audit *a, struct audit_report *rep)
{
    memset(a, 0, sizeof(*a));
    a->rep = rep;
    memset(rep, 0, sizeof(*rep));
    rep->ok = true;
    a->cur.raw = malloc(AUDIT_ENTRY_MAX);
    a->ref.raw = malloc(AUDIT_ENTRY_MAX);
    a->share = calloc(AUDIT_TAIL_MAX / sizeof(struct tally_lot_ref), sizeof(uint64_t));
    if (a->cur.raw == NULL || a->ref.raw == NULL || a->share == NULL)
        return -ENOMEM;
    TRY(table_init(&a->programs, sizeof(struct fold_program)));
    TRY(table_init(&a->accounts, sizeof(struct fold_account)));
    TRY(table_init(&a->lots, sizeof(struct fold_lot)));
    TRY(table_init(&a->holds, sizeof(struct store_hold)));
    TRY(table_init(&a->reversals, sizeof(struct fold_reversal)));
    TRY(table_init(&a->stored, sizeof(struct stored_image)));
    return 0;
}

static void audit_release(struct audit *a)
{
    for (size_t i = 0; i < a->reversals.count; i++) {
        struct fold_reversal *r = table_item(&a->reversals, i);
        free(r->restored);
    }
    table_release(&a->programs);
    table_release(&a->accounts);
    table_release(&a->lots);
    table_release(&a->holds);
    table_release(&a->reversals);
    table_release(&a->stored);
    free(a->cur.raw);
    free(a->ref.raw);
    free(a->scratch);
    free(a->share);
    if (a->txn != NULL)
        mdb_txn_abort(a->txn);
    if (a->env != NULL)
        mdb_env_close(a->env);
}

/* =============================================================================================
 * Reading entries.
 * =========================================================================================== */

/* Decode the entry stored under key `seq` into dst, checking its shape. */
static int entry_decode(struct audit *a, uint64_t seq, const MDB_val *v, struct audit_entry *dst)
{
    if (v->mv_size < sizeof(struct tally_entry))
        return audit_diff(a, seq, "entry %" PRIu64 ": %zu bytes, shorter than the %zu-byte entry",
                          seq, v->mv_size, sizeof(struct tally_entry));
    if (v->mv_size > AUDIT_ENTRY_MAX)
        return audit_diff(a, seq, "entry %" PRIu64 ": %zu bytes, more than the %zu the audit reads",
                          seq, v->mv_size, AUDIT_ENTRY_MAX);
    memcpy(dst->raw, v->mv_data, v->mv_size);
    memcpy(&dst->e, dst->raw, sizeof(dst->e));
    dst->size = v->mv_size;
    const struct tally_entry *e = &dst->e;
    if (e->seq != seq)
        return audit_diff(a, seq,
                          "entry %" PRIu64 ": stored under seq %" PRIu64 " but says seq %" PRIu64,
                          seq, seq, e->seq);
    if ((size_t)e->tail_size + sizeof(*e) != v->mv_size)
        return audit_diff(a, seq,
                          "entry %" PRIu64 ": tail_size %" PRIu32 " but %zu bytes follow the entry",
                          seq, e->tail_size, v->mv_size - sizeof(*e));
    if (e->kind == 0 || e->kind >= TALLY_KIND_LIMIT)
        return audit_diff(a, seq, "entry %" PRIu64 ": unknown kind %" PRIu16, seq, e->kind);
    if (e->reserved != 0 || e->reserved2 != 0)
        return audit_diff(a, seq, "entry %" PRIu64 ": reserved bytes are not zero", seq);
    bool program = e->kind == TALLY_KIND_PROGRAM;
    if (program ? e->tail_size != sizeof(struct tally_program_config)
                : e->tail_size % sizeof(struct tally_lot_ref) != 0)
        return audit_diff(a, seq, "entry %" PRIu64 " (%s): tail of %" PRIu32 " bytes is malformed",
                          seq, kind_name(e->kind), e->tail_size);
    dst->refs = (const struct tally_lot_ref *)(const void *)(dst->raw + sizeof(*e));
    dst->nrefs = program ? 0 : e->tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    return 0;
}

/* Read entry `seq` into dst. TALLY_ENOT_FOUND if there is none (the caller says why it
 * matters); AUDIT_DIFF if it is malformed. */
static int entry_read(struct audit *a, uint64_t seq, struct audit_entry *dst)
{
    MDB_val k = {.mv_size = sizeof(seq), .mv_data = &seq};
    MDB_val v;
    if (!a->has_db[STORE_DB_ENTRIES])
        return TALLY_ENOT_FOUND;
    int rc = mdb_get(a->txn, a->dbi[STORE_DB_ENTRIES], &k, &v);
    if (rc != 0)
        return lmdb_error(rc);
    return entry_decode(a, seq, &v, dst);
}

static bool id_is_zero(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        if (id[i] != 0)
            return false;
    return true;
}

/* The posting that caused the current entry must be recorded as a success covering it. */
static int posting_link_check(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    if (id_is_zero(e->posting_id)) {
        if ((e->flags & TALLY_ENTRY_AUTO) == 0)
            return entry_diff(a, "has no posting id but is not flagged AUTO");
        return 0;
    }
    if (!a->verifying) /* the trial balance folds the entries alone */
        return 0;
    char hex[33];
    ids_format(e->posting_id, hex);
    MDB_val k = {.mv_size = 16, .mv_data = (void *)e->posting_id};
    MDB_val v;
    int rc = a->has_db[STORE_DB_POSTINGS] ? mdb_get(a->txn, a->dbi[STORE_DB_POSTINGS], &k, &v)
                                          : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND)
        return entry_diff(a, "posting %s that caused it has no record in postings", hex);
    if (rc != 0)
        return lmdb_error(rc);
    struct store_posting p;
    if (v.mv_size != sizeof(p))
        return entry_diff(a, "posting %s: record of %zu bytes, expected 40", hex, v.mv_size);
    memcpy(&p, v.mv_data, sizeof(p));
    if (p.code != TALLY_OK)
        return entry_diff(a, "posting %s that caused it is recorded as failed (%s)", hex,
                          tally_result_name(p.code) ? tally_result_name(p.code) : "?");
    if (e->seq < p.seq || e->seq - p.seq >= p.entry_count)
        return entry_diff(a,
                          "posting %s is recorded with entries %" PRIu64 "..%" PRIu64
                          ", which do not include this one",
                          hex, p.seq, p.seq + p.entry_count - 1);
    return 0;
}

/* =============================================================================================
 * Folding: accounts, buckets and the QV ring.
 * =========================================================================================== */

static struct fold_account *account_find(struct audit *a, uint32_t program, uint64_t member)
{
    return table_get(&a->accounts, program, member);
}

/* The member's account, which the current entry needs to exist. */
static int account_need(struct audit *a, uint64_t member, struct tally_account **out)
{
    struct fold_account *f = account_find(a, a->cur.e.program, member);
    if (f == NULL)
        return entry_diff(a, "member %" PRIu64 " has no account", member);
    *out = &f->acc;
    return 0;
}

static int u64_add(struct audit *a, const struct tally_account *acc, const char *field, uint64_t *x,
                   uint64_t v)
{
    char who[MEMBER_NAME_MAX];
    if (__builtin_add_overflow(*x, v, x))
        return entry_diff(a, "%s: %s overflows", member_name(acc->member, who), field);
    return 0;
}

static int u64_sub(struct audit *a, const struct tally_account *acc, const char *field, uint64_t *x,
                   uint64_t v)
{
    char who[MEMBER_NAME_MAX];
    if (*x < v)
        return entry_diff(a, "%s: %s %" PRIu64 " cannot give %" PRIu64 " (would go below zero)",
                          member_name(acc->member, who), field, *x, v);
    *x -= v;
    return 0;
}

static int i64_add(struct audit *a, const struct tally_account *acc, const char *field, int64_t *x,
                   uint64_t v, bool negate)
{
    char who[MEMBER_NAME_MAX];
    int64_t r;
    bool bad = v > (uint64_t)INT64_MAX;
    if (!bad)
        bad = negate ? __builtin_sub_overflow(*x, (int64_t)v, &r)
                     : __builtin_add_overflow(*x, (int64_t)v, &r);
    if (bad)
        return entry_diff(a, "%s: %s overflows", member_name(acc->member, who), field);
    *x = r;
    return 0;
}

static int avail_add(struct audit *a, struct tally_account *acc, uint64_t v)
{
    return i64_add(a, acc, "available", &acc->available, v, false);
}

static int avail_sub(struct audit *a, struct tally_account *acc, uint64_t v)
{
    return i64_add(a, acc, "available", &acc->available, v, true);
}

static uint32_t month_of(const struct audit *a, uint64_t t)
{
    const struct fold_program *p = table_get(&a->programs, a->cur.e.program, 0);
    return calendar_month_of(t, p != NULL ? p->rec.config.tz_offset_min : 0);
}

/* Add v to month m of the ring: advance the ring to m first if m is newer. */
static int qv_add(struct audit *a, struct tally_account *acc, uint32_t m, uint64_t v)
{
    if (m > acc->qv_month) {
        uint32_t gap = m - acc->qv_month;
        for (uint32_t k = 1; k <= gap && k <= TALLY_QV_MONTHS; k++)
            acc->qv[(acc->qv_month + k) % TALLY_QV_MONTHS] = 0;
        acc->qv_month = m;
    }
    if ((uint64_t)m + TALLY_QV_MONTHS > acc->qv_month)
        TRY(u64_add(a, acc, "qv", &acc->qv[m % TALLY_QV_MONTHS], v));
    return u64_add(a, acc, "qv_lifetime", &acc->qv_lifetime, v);
}

/* Remove v from month m, saturating, while m is still in the ring; the ring does not move. */
static void qv_remove(struct tally_account *acc, uint32_t m, uint64_t v)
{
    if (m <= acc->qv_month && (uint64_t)m + TALLY_QV_MONTHS > acc->qv_month) {
        uint64_t *b = &acc->qv[m % TALLY_QV_MONTHS];
        *b -= v < *b ? v : *b;
    }
    acc->qv_lifetime -= v < acc->qv_lifetime ? v : acc->qv_lifetime;
}

/* =============================================================================================
 * Folding: lots.
 * =========================================================================================== */

/* Delete the lot if it has nothing left (the rule after every lot change). */
static void lot_settle(struct audit *a, uint64_t lot_id)
{
    struct fold_lot *l = table_get(&a->lots, lot_id, 0);
    if (l == NULL || l->lot.remaining != 0 || l->lot.held != 0 || l->lot.activate_at != 0)
        return;
    struct fold_account *f = account_find(a, l->program, l->member);
    if (f != NULL && f->acc.lots_open > 0)
        f->acc.lots_open--;
    table_remove(&a->lots, lot_id, 0);
}

/* Create a lot of member m (created by the current entry), then apply the deletion rule. */
static int lot_create(struct audit *a, uint64_t m, const struct tally_lot *lot)
{
    if (table_get(&a->lots, lot->lot_id, 0) != NULL)
        return entry_diff(a, "creates lot %" PRIu64 ", which already exists", lot->lot_id);
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    if (acc->lots_open == UINT32_MAX)
        return entry_diff(a, "member %" PRIu64 ": lots_open overflows", m);
    struct fold_lot *l = table_add(&a->lots, lot->lot_id, 0);
    if (l == NULL)
        return -ENOMEM;
    l->program = a->cur.e.program;
    l->member = m;
    l->lot = *lot;
    l->lot.origin_seq = a->cur.e.seq;
    l->last_seq = a->cur.e.seq;
    acc->lots_open++;
    if (lot->lot_id > a->max_lot_id)
        a->max_lot_id = lot->lot_id;
    lot_settle(a, lot->lot_id);
    return 0;
}

/* The lot a ref of the current entry names: it must exist, be member m's, with the same expiry. */
static int lot_of_ref(struct audit *a, uint64_t m, const struct tally_lot_ref *r,
                      struct fold_lot **out)
{
    struct fold_lot *l = table_get(&a->lots, r->lot_id, 0);
    if (l == NULL)
        return entry_diff(a, "its lineage names lot %" PRIu64 ", which does not exist", r->lot_id);
    if (l->program != a->cur.e.program || l->member != m)
        return entry_diff(a,
                          "lot %" PRIu64 " belongs to program %" PRIu32 " member %" PRIu64
                          ", not to member %" PRIu64,
                          r->lot_id, l->program, l->member, m);
    if (l->lot.expires_at != r->expires_at)
        return entry_diff(
            a, "its lineage gives lot %" PRIu64 " expiry %" PRIu64 ", the lot has %" PRIu64,
            r->lot_id, r->expires_at, l->lot.expires_at);
    l->last_seq = a->cur.e.seq;
    *out = l;
    return 0;
}

static int lot_field_sub(struct audit *a, const struct fold_lot *l, const char *field, uint64_t *x,
                         uint64_t v)
{
    if (*x < v)
        return entry_diff(
            a, "lot %" PRIu64 " of member %" PRIu64 ": %s %" PRIu64 ", the entry takes %" PRIu64,
            l->lot.lot_id, l->member, field, *x, v);
    *x -= v;
    return 0;
}

static int lot_field_add(struct audit *a, const struct fold_lot *l, const char *field, uint64_t *x,
                         uint64_t v)
{
    if (__builtin_add_overflow(*x, v, x))
        return entry_diff(a, "lot %" PRIu64 ": %s overflows", l->lot.lot_id, field);
    return 0;
}

enum lot_op {
    LOT_TAKE,    /* remaining -= a */
    LOT_HOLD,    /* remaining -= a, held += a */
    LOT_CAPTURE, /* held -= a */
    LOT_RELEASE, /* held -= a, remaining += a */
};

/* Apply one lot operation to every ref in refs[0..n) of member m. */
static int lots_apply(struct audit *a, uint64_t m, const struct tally_lot_ref *refs, uint32_t n,
                      enum lot_op op)
{
    for (uint32_t i = 0; i < n; i++) {
        struct fold_lot *l = NULL;
        uint64_t v = refs[i].amount;
        TRY(lot_of_ref(a, m, &refs[i], &l));
        if (op == LOT_TAKE || op == LOT_HOLD)
            TRY(lot_field_sub(a, l, "remaining", &l->lot.remaining, v));
        if (op == LOT_HOLD)
            TRY(lot_field_add(a, l, "held", &l->lot.held, v));
        if (op == LOT_CAPTURE || op == LOT_RELEASE)
            TRY(lot_field_sub(a, l, "held", &l->lot.held, v));
        if (op == LOT_RELEASE)
            TRY(lot_field_add(a, l, "remaining", &l->lot.remaining, v));
        lot_settle(a, refs[i].lot_id);
    }
    return 0;
}

static int lineage_sum(struct audit *a, const struct tally_lot_ref *refs, uint32_t n, uint64_t *sum)
{
    *sum = 0;
    for (uint32_t i = 0; i < n; i++)
        if (__builtin_add_overflow(*sum, refs[i].amount, sum))
            return entry_diff(a, "its lineage total overflows");
    return 0;
}

/* The lineage of the current entry must total exactly `amount` (exact) or at most it. */
static int lineage_total(struct audit *a, const struct tally_lot_ref *refs, uint32_t n, bool exact)
{
    uint64_t sum;
    TRY(lineage_sum(a, refs, n, &sum));
    uint64_t amount = a->cur.e.amount;
    if (exact ? sum != amount : sum > amount)
        return entry_diff(a, "its lineage totals %" PRIu64 " points, its amount is %" PRIu64, sum,
                          amount);
    return 0;
}

/* Points credited to a member pay its debt first (docs/LEDGER.md, "Debt"): of the entry's
 * amount, exactly what the debt leaves must land in lots. Call before crediting available. */
static int landed_check(struct audit *a, const struct tally_account *acc, uint64_t landed)
{
    uint64_t debt = acc->available < 0 ? 0 - (uint64_t)acc->available : 0;
    uint64_t amount = a->cur.e.amount;
    uint64_t want = amount > debt ? amount - debt : 0;
    if (landed != want)
        return entry_diff(a,
                          "credits %" PRIu64 " points to member %" PRIu64 ", whose debt is %" PRIu64
                          ": %" PRIu64 " should land in lots, its lineage lands %" PRIu64,
                          amount, acc->member, debt, want, landed);
    return 0;
}

/* =============================================================================================
 * Folding: holds and reversal records.
 * =========================================================================================== */

/* Compare a hold as folded with the stored record (and its refs with its HOLD entry's). */
static int hold_compare(struct audit *a, uint64_t seq, const struct store_hold *h, uint64_t at)
{
    MDB_val k = {.mv_size = sizeof(seq), .mv_data = &seq};
    MDB_val v;
    int rc =
        a->has_db[STORE_DB_HOLDS] ? mdb_get(a->txn, a->dbi[STORE_DB_HOLDS], &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND)
        return audit_diff(a, at, "hold %" PRIu64 " (member %" PRIu64 "): no record in holds", seq,
                          h->member);
    if (rc != 0)
        return lmdb_error(rc);
    size_t want = sizeof(*h) + (size_t)h->lot_count * sizeof(struct tally_lot_ref);
    if (v.mv_size != want)
        return audit_diff(a, at, "hold %" PRIu64 ": record of %zu bytes, expected %zu", seq,
                          v.mv_size, want);
    struct store_hold got;
    memcpy(&got, v.mv_data, sizeof(got));
    char what[64];
    snprintf(what, sizeof(what), "hold %" PRIu64, seq);
    TRY(compare_fields(a, at, what, hold_fields, COUNT_OF(hold_fields), h, &got, sizeof(got)));
    rc = entry_read(a, seq, &a->ref);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? audit_diff(a, at, "hold %" PRIu64 ": no HOLD entry", seq)
                                      : rc;
    if (memcmp((const uint8_t *)v.mv_data + sizeof(got), a->ref.refs, want - sizeof(got)) != 0)
        return audit_diff(a, at, "hold %" PRIu64 ": its lot refs differ from its HOLD entry's",
                          seq);
    a->rep->holds++;
    return 0;
}

/* Resolve active hold `seq` (CAPTURE, or RELEASE of an active hold): compare, then drop it. */
static int hold_resolve(struct audit *a, uint64_t seq, struct tally_account *acc, uint32_t status,
                        uint64_t captured)
{
    struct store_hold *h = table_get(&a->holds, seq, 0);
    if (h == NULL)
        return 0;
    h->status = status;
    h->captured = captured;
    h->resolved_seq = a->cur.e.seq;
    if (acc->holds_active == 0)
        return entry_diff(a, "member %" PRIu64 ": holds_active would go below zero", acc->member);
    acc->holds_active--;
    struct store_hold done = *h;
    table_remove(&a->holds, seq, 0);
    return a->verifying ? hold_compare(a, seq, &done, a->cur.e.seq) : 0;
}

/* The reversal record of entry `orig` (in a->ref), created on first use. */
static int reversal_get(struct audit *a, uint64_t orig, uint32_t lot_count,
                        struct fold_reversal **out)
{
    struct fold_reversal *r = table_get(&a->reversals, orig, 0);
    if (r == NULL) {
        uint64_t *restored = NULL;
        if (lot_count > 0 && (restored = calloc(lot_count, sizeof(*restored))) == NULL)
            return -ENOMEM;
        r = table_add(&a->reversals, orig, 0);
        if (r == NULL) {
            free(restored);
            return -ENOMEM;
        }
        r->restored = restored;
        r->lot_count = lot_count;
    }
    r->last_seq = a->cur.e.seq;
    *out = r;
    return 0;
}

/* =============================================================================================
 * Folding: the entry's sides and the entry it acts upon.
 * =========================================================================================== */

/* In expected sides, a member (any member id) rather than one system account. */
#define SIDE_MEMBER 0u

static bool is_member(uint64_t id)
{
    return id != 0 && id < TALLY_SYS_FIRST;
}

static void sides_expected(const struct tally_entry *e, uint16_t ref_kind, uint64_t *debit,
                           uint64_t *credit)
{
    *debit = SIDE_MEMBER;
    *credit = SIDE_MEMBER;
    switch (e->kind) {
    case TALLY_KIND_ACCRUE:
        *debit = TALLY_SYS_ISSUANCE;
        break;
    case TALLY_KIND_CANCEL:
        *credit = TALLY_SYS_ISSUANCE;
        break;
    case TALLY_KIND_REDEEM:
    case TALLY_KIND_CAPTURE:
        *credit = TALLY_SYS_REDEMPTION;
        break;
    case TALLY_KIND_REVERSE:
        if (ref_kind == TALLY_KIND_ACCRUE)
            *credit = TALLY_SYS_ISSUANCE;
        else
            *debit = TALLY_SYS_REDEMPTION;
        break;
    case TALLY_KIND_ADJUST:
        if ((e->flags & TALLY_ENTRY_NEGATIVE) != 0)
            *credit = TALLY_SYS_ADJUSTMENT;
        else
            *debit = TALLY_SYS_ADJUSTMENT;
        break;
    case TALLY_KIND_EXPIRE:
    case TALLY_KIND_CLOSE:
        *credit = TALLY_SYS_BREAKAGE;
        break;
    default:
        break;
    }
}

/* Check debit and credit against the kind; give the member m (and m2 for a TRANSFER). */
static int sides_check(struct audit *a, uint16_t ref_kind, uint64_t *m, uint64_t *m2)
{
    const struct tally_entry *e = &a->cur.e;
    uint64_t d, c;
    sides_expected(e, ref_kind, &d, &c);
    bool bad = d == SIDE_MEMBER ? !is_member(e->debit) : e->debit != d;
    bad = bad || (c == SIDE_MEMBER ? !is_member(e->credit) : e->credit != c);
    if (!bad && d == SIDE_MEMBER && c == SIDE_MEMBER)
        bad = (e->kind == TALLY_KIND_TRANSFER) == (e->debit == e->credit);
    if (bad) {
        char dn[MEMBER_NAME_MAX], cn[MEMBER_NAME_MAX], wd[MEMBER_NAME_MAX], wc[MEMBER_NAME_MAX];
        const char *to = e->kind == TALLY_KIND_TRANSFER ? "another member"
                         : d == SIDE_MEMBER             ? "the same member"
                                                        : "a member";
        return entry_diff(a, "moves points from %s to %s; this kind moves them from %s to %s",
                          member_name(e->debit, dn), member_name(e->credit, cn),
                          d == SIDE_MEMBER ? "a member" : member_name(d, wd),
                          c == SIDE_MEMBER ? to : member_name(c, wc));
    }
    *m = d == SIDE_MEMBER ? e->debit : e->credit;
    *m2 = e->kind == TALLY_KIND_TRANSFER ? e->credit : 0;
    return 0;
}

static bool ref_kind_ok(uint16_t kind, const struct tally_entry *r)
{
    switch (kind) {
    case TALLY_KIND_ACTIVATE:
    case TALLY_KIND_CANCEL:
        return r->kind == TALLY_KIND_ACCRUE && (r->flags & TALLY_ENTRY_PENDING) != 0;
    case TALLY_KIND_CAPTURE:
    case TALLY_KIND_RELEASE:
        return r->kind == TALLY_KIND_HOLD;
    case TALLY_KIND_REVERSE:
        return r->kind == TALLY_KIND_ACCRUE || r->kind == TALLY_KIND_REDEEM ||
               r->kind == TALLY_KIND_CAPTURE;
    default:
        return false;
    }
}

static bool kind_has_ref(uint16_t kind)
{
    return kind == TALLY_KIND_ACTIVATE || kind == TALLY_KIND_CANCEL || kind == TALLY_KIND_CAPTURE ||
           kind == TALLY_KIND_RELEASE || kind == TALLY_KIND_REVERSE;
}

/* The member an entry that can be acted upon belongs to. */
static uint64_t ref_member(const struct tally_entry *r)
{
    return r->kind == TALLY_KIND_ACCRUE ? r->credit : r->debit;
}

/* Load the entry the current one acts upon into a->ref and check that it may act upon it. */
static int ref_load(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    if (e->ref_seq == 0 || e->ref_seq >= e->seq)
        return entry_diff(a, "acts upon entry %" PRIu64 ", which is not an earlier entry",
                          e->ref_seq);
    int rc = entry_read(a, e->ref_seq, &a->ref);
    if (rc == TALLY_ENOT_FOUND)
        return entry_diff(a, "acts upon entry %" PRIu64 ", which does not exist", e->ref_seq);
    if (rc != 0)
        return rc;
    const struct tally_entry *r = &a->ref.e;
    if (!ref_kind_ok(e->kind, r))
        return entry_diff(
            a, "acts upon entry %" PRIu64 ", a%s %s, which this kind cannot act upon", e->ref_seq,
            r->kind == TALLY_KIND_ACCRUE && (r->flags & TALLY_ENTRY_PENDING) == 0 ? "n active" : "",
            kind_name(r->kind));
    if (r->program != e->program)
        return entry_diff(a, "acts upon entry %" PRIu64 " of program %" PRIu32, e->ref_seq,
                          r->program);
    return 0;
}

/* =============================================================================================
 * Folding: one function per kind (the member's side; the system side is generic).
 * =========================================================================================== */

static int fold_program(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    if (e->program == 0 || e->debit != 0 || e->credit != 0 || e->amount != 0)
        return entry_diff(a, "a PROGRAM entry needs a program id, debit 0, credit 0, amount 0");
    if (table_get(&a->programs, e->program, 0) != NULL)
        return entry_diff(a, "creates program %" PRIu32 ", which already exists", e->program);
    struct fold_program *p = table_add(&a->programs, e->program, 0);
    if (p == NULL)
        return -ENOMEM;
    memcpy(&p->rec.config, a->cur.raw + sizeof(*e), sizeof(p->rec.config));
    p->rec.created_at = e->timestamp;
    p->rec.created_seq = e->seq;
    p->rec.rule_version = 1;
    p->last_seq = e->seq;
    for (uint64_t i = 0; i < TALLY_SYS_COUNT; i++) {
        uint64_t member = UINT64_MAX - i;
        if (account_find(a, e->program, member) != NULL)
            return entry_diff(a, "system account %" PRIu64 " exists before its program", member);
        struct fold_account *f = table_add(&a->accounts, e->program, member);
        if (f == NULL)
            return -ENOMEM;
        f->acc.program = e->program;
        f->acc.status = TALLY_ACCOUNT_STATUS_SYSTEM;
        f->acc.member = member;
        f->acc.opened_at = e->timestamp;
        f->acc.tier_valid_until = UINT64_MAX;
        f->acc.last_seq = e->seq;
    }
    return 0;
}

static int fold_open(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    if (e->amount != 0)
        return entry_diff(a, "an OPEN entry moves no points, this one moves %" PRIu64, e->amount);
    if (account_find(a, e->program, m) != NULL)
        return entry_diff(a, "opens member %" PRIu64 ", whose account already exists", m);
    struct fold_program *p = table_get(&a->programs, e->program, 0);
    struct fold_account *f = table_add(&a->accounts, e->program, m);
    if (f == NULL)
        return -ENOMEM;
    f->acc.program = e->program;
    f->acc.status = TALLY_ACCOUNT_STATUS_OPEN;
    f->acc.member = m;
    f->acc.opened_at = e->timestamp;
    f->acc.tier_valid_until = UINT64_MAX;
    f->acc.qv_month = calendar_month_of(e->timestamp, p->rec.config.tz_offset_min);
    p->rec.members++;
    p->last_seq = e->seq;
    return 0;
}

/* The one lot ref of an entry that creates a lot (ACCRUE, positive ADJUST). */
static int created_lot_ref(struct audit *a, const struct tally_lot_ref **out)
{
    const struct tally_entry *e = &a->cur.e;
    if (a->cur.nrefs != 1)
        return entry_diff(a, "has %" PRIu32 " lot refs; it creates one lot", a->cur.nrefs);
    const struct tally_lot_ref *r = &a->cur.refs[0];
    if (r->lot_id != e->lot_id)
        return entry_diff(a, "creates lot %" PRIu64 " but its lineage names lot %" PRIu64,
                          e->lot_id, r->lot_id);
    if (r->expires_at != e->time_a)
        return entry_diff(a, "gives the new lot expiry %" PRIu64 " but its lineage %" PRIu64,
                          e->time_a, r->expires_at);
    *out = r;
    return 0;
}

static int fold_accrue(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    const struct tally_lot_ref *r = NULL;
    TRY(account_need(a, m, &acc));
    TRY(created_lot_ref(a, &r));
    bool pending = (e->flags & TALLY_ENTRY_PENDING) != 0;
    if (pending && e->time_b == 0)
        return entry_diff(a, "is PENDING but has no activation time (time_b)");
    if (!pending)
        TRY(landed_check(a, acc, r->amount));
    TRY(u64_add(a, acc, "earned", &acc->earned, e->amount));
    TRY(qv_add(a, acc, month_of(a, e->timestamp), e->value));
    struct tally_lot lot = {
        .lot_id = r->lot_id, .expires_at = r->expires_at, .earned_at = r->earned_at};
    if (pending) {
        TRY(u64_add(a, acc, "pending", &acc->pending, e->amount));
        lot.amount = e->amount;
        lot.remaining = e->amount;
        lot.activate_at = e->time_b;
    } else {
        TRY(avail_add(a, acc, e->amount));
        lot.amount = r->amount;
        lot.remaining = r->amount;
    }
    return lot_create(a, m, &lot);
}

static int fold_activate(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    struct fold_lot *l = NULL;
    TRY(account_need(a, m, &acc));
    if (a->cur.nrefs != 1)
        return entry_diff(a, "has %" PRIu32 " lot refs; it activates one lot", a->cur.nrefs);
    const struct tally_lot_ref *r = &a->cur.refs[0];
    if (r->lot_id != a->ref.e.lot_id)
        return entry_diff(a,
                          "activates lot %" PRIu64 ", but accrual %" PRIu64 " created lot %" PRIu64,
                          r->lot_id, a->ref.e.seq, a->ref.e.lot_id);
    TRY(lot_of_ref(a, m, r, &l));
    if (l->lot.activate_at == 0)
        return entry_diff(a, "activates lot %" PRIu64 ", which is not pending", r->lot_id);
    if (l->lot.remaining != e->amount)
        return entry_diff(a, "activates %" PRIu64 " points; pending lot %" PRIu64 " has %" PRIu64,
                          e->amount, r->lot_id, l->lot.remaining);
    TRY(landed_check(a, acc, r->amount));
    l->lot.activate_at = 0;
    l->lot.remaining = r->amount;
    lot_settle(a, r->lot_id);
    TRY(u64_sub(a, acc, "pending", &acc->pending, e->amount));
    return avail_add(a, acc, e->amount);
}

static int fold_cancel(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    const struct tally_entry *o = &a->ref.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    struct fold_lot *l = table_get(&a->lots, o->lot_id, 0);
    if (l == NULL || l->member != m || l->program != e->program)
        return entry_diff(a, "cancels accrual %" PRIu64 ", whose lot %" PRIu64 " does not exist",
                          o->seq, o->lot_id);
    if (l->lot.activate_at == 0)
        return entry_diff(a, "cancels lot %" PRIu64 ", which is no longer pending", o->lot_id);
    if (l->lot.remaining != e->amount)
        return entry_diff(a, "cancels %" PRIu64 " points; pending lot %" PRIu64 " has %" PRIu64,
                          e->amount, o->lot_id, l->lot.remaining);
    if (e->value != o->value)
        return entry_diff(
            a, "removes qualifying value %" PRIu64 "; accrual %" PRIu64 " added %" PRIu64, e->value,
            o->seq, o->value);
    struct fold_reversal *rv = NULL;
    TRY(reversal_get(a, o->seq, 0, &rv));
    if (rv->amount != 0)
        return entry_diff(a, "cancels accrual %" PRIu64 ", which was reversed before", o->seq);
    rv->amount = e->amount;
    rv->value = e->value;
    table_remove(&a->lots, o->lot_id, 0);
    if (acc->lots_open == 0)
        return entry_diff(a, "member %" PRIu64 ": lots_open would go below zero", m);
    acc->lots_open--;
    TRY(u64_sub(a, acc, "pending", &acc->pending, e->amount));
    TRY(u64_sub(a, acc, "earned", &acc->earned, e->amount));
    qv_remove(acc, month_of(a, o->timestamp), e->value);
    return 0;
}

static int fold_redeem(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(avail_sub(a, acc, e->amount));
    TRY(u64_add(a, acc, "redeemed", &acc->redeemed, e->amount));
    return lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_TAKE);
}

static int fold_hold(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(avail_sub(a, acc, e->amount));
    TRY(u64_add(a, acc, "held", &acc->held, e->amount));
    if (acc->holds_active == UINT32_MAX)
        return entry_diff(a, "member %" PRIu64 ": holds_active overflows", m);
    acc->holds_active++;
    TRY(lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_HOLD));
    struct store_hold *h = table_add(&a->holds, e->seq, 0);
    if (h == NULL)
        return -ENOMEM;
    h->program = e->program;
    h->status = TALLY_HOLD_ACTIVE;
    h->member = m;
    h->amount = e->amount;
    h->timeout_at = e->time_a;
    memcpy(h->posting_id, e->posting_id, sizeof(h->posting_id));
    h->lot_count = a->cur.nrefs;
    a->holds_created++;
    return 0;
}

static int fold_capture(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    const struct store_hold *h = table_get(&a->holds, e->ref_seq, 0);
    if (h == NULL)
        return entry_diff(a, "captures hold %" PRIu64 ", which is not active", e->ref_seq);
    if (e->amount > h->amount)
        return entry_diff(a, "captures %" PRIu64 " points from a hold of %" PRIu64, e->amount,
                          h->amount);
    uint64_t rest = h->amount - e->amount;
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(u64_sub(a, acc, "held", &acc->held, e->amount));
    TRY(u64_add(a, acc, "redeemed", &acc->redeemed, e->amount));
    TRY(lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_CAPTURE));
    TRY(hold_resolve(a, e->ref_seq, acc, TALLY_HOLD_CAPTURED, e->amount));
    if (rest > 0) { /* the next entry must give the rest back (remainder_check) */
        a->remainder_hold = e->ref_seq;
        a->remainder_amount = rest;
        a->remainder_seq = e->seq;
    }
    return 0;
}

static int fold_release(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(u64_sub(a, acc, "held", &acc->held, e->amount));
    TRY(avail_add(a, acc, e->amount));
    TRY(lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_RELEASE));
    if ((e->flags & TALLY_ENTRY_REMAINDER) != 0) {
        /* The rest of a hold its CAPTURE (the previous entry) resolved: remainder_check matched
         * the hold and the amount; holds_active already went down with the capture. */
        a->remainder_hold = 0;
        return 0;
    }
    const struct store_hold *h = table_get(&a->holds, e->ref_seq, 0);
    if (h == NULL)
        return entry_diff(a,
                          "releases hold %" PRIu64 ", which is not active (only a RELEASE flagged "
                          "REMAINDER may follow its capture)",
                          e->ref_seq);
    if (e->amount != h->amount)
        return entry_diff(a, "releases %" PRIu64 " points of active hold %" PRIu64 " of %" PRIu64,
                          e->amount, e->ref_seq, h->amount);
    bool timeout = (e->flags & TALLY_ENTRY_AUTO) != 0 && id_is_zero(e->posting_id);
    return hold_resolve(a, e->ref_seq, acc, timeout ? TALLY_HOLD_TIMED_OUT : TALLY_HOLD_RELEASED,
                        0);
}

static int fold_reverse_accrual(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    const struct tally_entry *o = &a->ref.e;
    struct tally_account *acc = NULL;
    struct fold_reversal *rv = NULL;
    TRY(account_need(a, m, &acc));
    TRY(reversal_get(a, o->seq, 0, &rv));
    uint64_t before = rv->amount;
    uint64_t after;
    if (o->amount == 0 || __builtin_add_overflow(before, e->amount, &after) || after > o->amount)
        return entry_diff(a,
                          "reverses %" PRIu64 " points of accrual %" PRIu64 ", of which %" PRIu64
                          " remain unreversed",
                          e->amount, o->seq, o->amount - (before < o->amount ? before : o->amount));
    /* floor(V * R_after / A) - floor(V * R_before / A): partial reversals add up exactly. */
    unsigned __int128 v_after = (unsigned __int128)o->value * after / o->amount;
    unsigned __int128 v_before = (unsigned __int128)o->value * before / o->amount;
    uint64_t share = (uint64_t)(v_after - v_before);
    if (e->value != share)
        return entry_diff(a,
                          "removes qualifying value %" PRIu64 "; its proportional share of accrual "
                          "%" PRIu64 " is %" PRIu64,
                          e->value, o->seq, share);
    rv->amount = after;
    rv->value += e->value;
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, false));
    TRY(avail_sub(a, acc, e->amount));
    TRY(u64_sub(a, acc, "earned", &acc->earned, e->amount));
    qv_remove(acc, month_of(a, o->timestamp), e->value);
    return lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_TAKE);
}

/* Put ref's points back into its lot, re-creating the lot if it is gone. */
static int lot_restore(struct audit *a, uint64_t m, const struct tally_lot_ref *r)
{
    if (table_get(&a->lots, r->lot_id, 0) == NULL) {
        struct tally_lot lot = {.lot_id = r->lot_id,
                                .expires_at = r->expires_at,
                                .earned_at = r->earned_at,
                                .amount = r->amount,
                                .remaining = r->amount};
        return lot_create(a, m, &lot);
    }
    struct fold_lot *l = NULL;
    TRY(lot_of_ref(a, m, r, &l));
    TRY(lot_field_add(a, l, "remaining", &l->lot.remaining, r->amount));
    lot_settle(a, r->lot_id);
    return 0;
}

/* How a reversal of `amount` points of a redemption or capture splits over its lineage
 * (docs/LEDGER.md, "Reversals in proportion"): floor((a_i - r_i) * R / S) to lot i, then the
 * remainder one point at a time, in lineage order, to the lots that still have room. */
static int reversal_split(struct audit *a, const struct audit_entry *o,
                          const struct fold_reversal *rv, uint64_t amount, uint64_t *share)
{
    unsigned __int128 room_total = 0;
    for (uint32_t i = 0; i < o->nrefs; i++) {
        if (rv->restored[i] > o->refs[i].amount)
            return entry_diff(a, "entry %" PRIu64 ": lot %" PRIu64 " got back more than it gave",
                              o->e.seq, o->refs[i].lot_id);
        room_total += o->refs[i].amount - rv->restored[i];
    }
    if (amount > room_total)
        return entry_diff(a,
                          "reverses %" PRIu64 " points of entry %" PRIu64
                          ", whose lots can take back only %" PRIu64,
                          amount, o->e.seq, (uint64_t)room_total);
    uint64_t given = 0;
    for (uint32_t i = 0; i < o->nrefs; i++) {
        uint64_t room = o->refs[i].amount - rv->restored[i];
        share[i] = (uint64_t)((unsigned __int128)room * amount / room_total);
        given += share[i];
    }
    for (uint32_t i = 0; i < o->nrefs && given < amount; i++) {
        if (o->refs[i].amount - rv->restored[i] > share[i]) {
            share[i]++;
            given++;
        }
    }
    if (given != amount)
        return entry_diff(a, "the reversal of entry %" PRIu64 " does not split over its lots",
                          o->e.seq);
    return 0;
}

static int fold_reverse_redemption(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    const struct audit_entry *o = &a->ref;
    struct tally_account *acc = NULL;
    struct fold_reversal *rv = NULL;
    uint64_t landed;
    TRY(account_need(a, m, &acc));
    TRY(reversal_get(a, o->e.seq, o->nrefs, &rv));
    TRY(reversal_split(a, o, rv, e->amount, a->share));
    TRY(lineage_sum(a, a->cur.refs, a->cur.nrefs, &landed));
    TRY(landed_check(a, acc, landed));
    rv->amount += e->amount; /* within the original's amount: the split checked the room */
    rv->value += e->value;
    for (uint32_t j = 0; j < o->nrefs; j++)
        rv->restored[j] += a->share[j];
    for (uint32_t i = 0; i < a->cur.nrefs; i++) {
        const struct tally_lot_ref *r = &a->cur.refs[i];
        uint32_t j = 0;
        while (j < o->nrefs && o->refs[j].lot_id != r->lot_id)
            j++;
        if (j == o->nrefs)
            return entry_diff(
                a, "restores lot %" PRIu64 ", which entry %" PRIu64 " did not take points from",
                r->lot_id, o->e.seq);
        if (r->amount > a->share[j])
            return entry_diff(a,
                              "restores %" PRIu64 " points to lot %" PRIu64
                              "; its share of the reversal is %" PRIu64,
                              r->amount, r->lot_id, a->share[j]);
        a->share[j] -= r->amount;
        TRY(lot_restore(a, m, r));
    }
    TRY(avail_add(a, acc, e->amount));
    return u64_sub(a, acc, "redeemed", &acc->redeemed, e->amount);
}

static int fold_transfer(struct audit *a, uint64_t m, uint64_t m2)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *src = NULL, *dst = NULL;
    if (a->cur.nrefs % 2 != 0)
        return entry_diff(a,
                          "has %" PRIu32 " lot refs; a TRANSFER has n sources and n "
                          "destinations",
                          a->cur.nrefs);
    uint32_t half = a->cur.nrefs / 2;
    const struct tally_lot_ref *from = a->cur.refs;
    const struct tally_lot_ref *to = a->cur.refs + half;
    TRY(account_need(a, m, &src));
    TRY(account_need(a, m2, &dst));
    uint64_t landed;
    TRY(lineage_total(a, from, half, true));
    TRY(lineage_sum(a, to, half, &landed));
    TRY(landed_check(a, dst, landed));
    TRY(avail_sub(a, src, e->amount));
    TRY(u64_add(a, src, "transferred_out", &src->transferred_out, e->amount));
    TRY(avail_add(a, dst, e->amount));
    TRY(u64_add(a, dst, "transferred_in", &dst->transferred_in, e->amount));
    TRY(lots_apply(a, m, from, half, LOT_TAKE));
    for (uint32_t i = 0; i < half; i++) {
        if (to[i].amount == 0)
            continue;
        if (to[i].lot_id != e->lot_id + i)
            return entry_diff(
                a, "destination %" PRIu32 " names lot %" PRIu64 ", expected lot %" PRIu64, i,
                to[i].lot_id, e->lot_id + i);
        struct tally_lot lot = {.lot_id = e->lot_id + i,
                                .expires_at = from[i].expires_at,
                                .earned_at = from[i].earned_at,
                                .amount = to[i].amount,
                                .remaining = to[i].amount};
        TRY(lot_create(a, m2, &lot));
    }
    return 0;
}

static int fold_adjust(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    if ((e->flags & TALLY_ENTRY_NEGATIVE) != 0) {
        TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, false));
        TRY(avail_sub(a, acc, e->amount));
        TRY(i64_add(a, acc, "adjusted", &acc->adjusted, e->amount, true));
        return lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_TAKE);
    }
    const struct tally_lot_ref *r = NULL;
    TRY(created_lot_ref(a, &r));
    TRY(landed_check(a, acc, r->amount));
    TRY(avail_add(a, acc, e->amount));
    TRY(i64_add(a, acc, "adjusted", &acc->adjusted, e->amount, false));
    struct tally_lot lot = {.lot_id = r->lot_id,
                            .expires_at = r->expires_at,
                            .earned_at = r->earned_at,
                            .amount = r->amount,
                            .remaining = r->amount};
    return lot_create(a, m, &lot);
}

static int fold_expire(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(avail_sub(a, acc, e->amount));
    TRY(u64_add(a, acc, "expired", &acc->expired, e->amount));
    return lots_apply(a, m, a->cur.refs, a->cur.nrefs, LOT_TAKE);
}

/* CLOSE forfeits everything: its refs take `amount` from the lots, and its value says how much
 * of that was pending (the refs of the pending lots); the rest was available. */
static int fold_close(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    if (acc->status != TALLY_ACCOUNT_STATUS_OPEN)
        return entry_diff(
            a, "closes member %" PRIu64 ", whose account is not open (status %" PRIu32 ")", m,
            acc->status);
    if (e->value > e->amount)
        return entry_diff(a,
                          "forfeits %" PRIu64 " points, but says %" PRIu64
                          " of them (its value) were pending",
                          e->amount, e->value);
    TRY(lineage_total(a, a->cur.refs, a->cur.nrefs, true));
    TRY(u64_add(a, acc, "expired", &acc->expired, e->amount));
    uint64_t from_pending = 0; /* within amount: the lineage total was checked */
    for (uint32_t i = 0; i < a->cur.nrefs; i++) {
        const struct tally_lot_ref *r = &a->cur.refs[i];
        struct fold_lot *l = NULL;
        TRY(lot_of_ref(a, m, r, &l));
        TRY(lot_field_sub(a, l, "remaining", &l->lot.remaining, r->amount));
        if (l->lot.activate_at != 0) {
            from_pending += r->amount;
            if (l->lot.remaining == 0)
                l->lot.activate_at = 0; /* a forfeited pending lot is gone (see the notes) */
        }
        lot_settle(a, r->lot_id);
    }
    if (from_pending != e->value)
        return entry_diff(a,
                          "says %" PRIu64 " of the %" PRIu64
                          " points it forfeits were pending (its value), but its refs take %" PRIu64
                          " from pending lots",
                          e->value, e->amount, from_pending);
    TRY(u64_sub(a, acc, "pending", &acc->pending, e->value));
    TRY(avail_sub(a, acc, e->amount - e->value));
    acc->status = TALLY_ACCOUNT_STATUS_CLOSED;
    acc->closed_at = e->timestamp;
    return 0;
}

/* =============================================================================================
 * Tiers: every TIER_CHANGE is recomputed from the QV ring and the program's ladder.
 * =========================================================================================== */

/* Window QV at instant t (docs/LEDGER.md, "Tiers"), from the ring as folded so far: months after
 * qv_month hold nothing yet, months before the ring's reach are gone. */
static uint64_t window_qv(const struct tally_program_config *c, const struct tally_account *acc,
                          uint64_t t)
{
    uint32_t m = calendar_month_of(t, c->tz_offset_min);
    uint32_t first;
    if (c->window == TALLY_WINDOW_CALENDAR)
        first = m - m % 12; /* month 0 is January 1970 */
    else
        first = m + 1 >= c->window_months ? m + 1 - c->window_months : 0;
    uint64_t sum = 0;
    for (uint32_t k = first; k <= m && k >= first; k++)
        if (k <= acc->qv_month && (uint64_t)k + TALLY_QV_MONTHS > acc->qv_month)
            sum =
                __builtin_add_overflow(sum, acc->qv[k % TALLY_QV_MONTHS], &sum) ? UINT64_MAX : sum;
    return sum;
}

/* The highest tier whose threshold the window QV reaches. */
static uint32_t earned_tier(const struct tally_program_config *c, uint64_t qv)
{
    for (uint32_t k = c->tier_count > TALLY_TIERS_MAX ? TALLY_TIERS_MAX - 1 : c->tier_count - 1u;
         k >= 1 && k < TALLY_TIERS_MAX; k--)
        if (c->thresholds[k - 1] != 0 && c->thresholds[k - 1] <= qv)
            return k;
    return 0;
}

/* A tier reached or kept at instant t stays until the start of month(t) + validity + 1. */
static uint64_t tier_until(const struct tally_program_config *c, uint64_t t, uint32_t tier)
{
    if (tier == 0 || c->tier_mode == TALLY_TIER_UP_ONLY)
        return UINT64_MAX;
    uint32_t m = calendar_month_of(t, c->tz_offset_min);
    return calendar_month_start(m + c->validity_months + 1u, c->tz_offset_min);
}

/* What the current TIER_CHANGE must say: its reason, new tier, validity and window QV. */
static int tier_expected(struct audit *a, const struct tally_account *acc,
                         const struct tally_program_config *c, uint32_t *reason, uint32_t *to,
                         uint64_t *until, uint64_t *qv)
{
    const struct tally_entry *e = &a->cur.e;
    char t1[32], t2[32];
    if (e->code == TALLY_TIER_UPGRADE) {
        *reason = TALLY_TIER_UPGRADE;
        *qv = window_qv(c, acc, e->timestamp);
        *to = earned_tier(c, *qv);
        *until = tier_until(c, e->timestamp, *to);
        return 0;
    }
    if (c->tier_mode == TALLY_TIER_UP_ONLY || e->timestamp != acc->tier_valid_until ||
        e->timestamp == 0)
        return entry_diff(a,
                          "evaluates member %" PRIu64 "'s tier at %s, but the tier is valid "
                          "until %s%s",
                          acc->member, time_text(e->timestamp, t1),
                          time_text(acc->tier_valid_until, t2),
                          c->tier_mode == TALLY_TIER_UP_ONLY ? " (UP_ONLY: never evaluated)" : "");
    *qv = window_qv(c, acc, e->timestamp - 1);
    uint32_t earned = earned_tier(c, *qv);
    *reason = earned >= acc->tier ? TALLY_TIER_RENEW : TALLY_TIER_DOWNGRADE;
    *to = earned;
    if (earned < acc->tier && c->tier_mode == TALLY_TIER_DOWN_STEP && earned + 1 < acc->tier)
        *to = acc->tier - 1;
    *until = tier_until(c, e->timestamp - 1, *to);
    return 0;
}

static int fold_tier_change(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct tally_account *acc = NULL;
    TRY(account_need(a, m, &acc));
    const struct tally_program_config *c =
        &((const struct fold_program *)table_get(&a->programs, e->program, 0))->rec.config;
    if (e->amount != 0)
        return entry_diff(a, "a TIER_CHANGE moves no points, this one moves %" PRIu64, e->amount);
    if (e->tier_from != acc->tier)
        return entry_diff(
            a, "moves member %" PRIu64 " from tier %u, but the member is at tier %" PRIu32, m,
            e->tier_from, acc->tier);
    uint32_t reason = 0, to = 0;
    uint64_t until = 0, qv = 0;
    TRY(tier_expected(a, acc, c, &reason, &to, &until, &qv));
    if (e->code != reason || e->tier_to != to || e->time_a != until || e->value != qv ||
        e->time_b != 1 || (reason == TALLY_TIER_UPGRADE && to <= acc->tier)) {
        char t1[32], t2[32];
        return entry_diff(
            a,
            "member %" PRIu64 ": tier %u -> %u (%s, valid until %s, window QV %" PRIu64
            ", rules %" PRIu64 "); the window QV %" PRIu64 " and the ladder give tier %" PRIu32
            " (%s, valid until %s, rules 1)",
            m, e->tier_from, e->tier_to, reason_name(e->code), time_text(e->time_a, t1), e->value,
            e->time_b, qv, to, reason_name(reason), time_text(until, t2));
    }
    acc->tier = e->tier_to;
    acc->tier_valid_until = e->time_a;
    return 0;
}

/* After an ACCRUE: if it lifted the member above its tier, the next entry must upgrade it. */
static void upgrade_watch(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    const struct fold_account *f = account_find(a, e->program, m);
    const struct fold_program *p = table_get(&a->programs, e->program, 0);
    if (f == NULL || p == NULL)
        return;
    uint64_t qv = window_qv(&p->rec.config, &f->acc, e->timestamp);
    if (earned_tier(&p->rec.config, qv) > f->acc.tier) {
        a->upgrade_due = m;
        a->upgrade_seq = e->seq;
    }
}

static int upgrade_check(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    uint64_t m = a->upgrade_due;
    if (m == 0)
        return 0;
    a->upgrade_due = 0;
    if (e->kind == TALLY_KIND_TIER_CHANGE && e->code == TALLY_TIER_UPGRADE && e->debit == m)
        return 0;
    return audit_diff(a, e->seq,
                      "entry %" PRIu64 " (ACCRUE) lifted member %" PRIu64
                      " above its tier, but entry %" PRIu64 " is no UPGRADE of it",
                      a->upgrade_seq, m, e->seq);
}

/* After a partial CAPTURE: the entry right after it must release the rest of that hold, flagged
 * REMAINDER; and only such an entry may carry the flag. */
static int remainder_check(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    bool flagged = (e->flags & TALLY_ENTRY_REMAINDER) != 0;
    if (flagged && (e->kind != TALLY_KIND_RELEASE || (e->flags & TALLY_ENTRY_AUTO) == 0))
        return entry_diff(a, "is flagged REMAINDER, which only an AUTO RELEASE may be");
    if (a->remainder_hold == 0) {
        if (flagged)
            return entry_diff(a, "is flagged REMAINDER, but does not follow a partial CAPTURE");
        return 0;
    }
    uint64_t hold = a->remainder_hold;
    if (!flagged || e->ref_seq != hold || e->amount != a->remainder_amount)
        return audit_diff(a, e->seq,
                          "entry %" PRIu64 " (CAPTURE) left %" PRIu64 " points of hold %" PRIu64
                          " to give back, but entry %" PRIu64 " (%s%s, hold %" PRIu64
                          ", %" PRIu64 " points) is no RELEASE flagged REMAINDER of them",
                          a->remainder_seq, a->remainder_amount, hold, e->seq,
                          kind_name(e->kind), flagged ? ", REMAINDER" : "", e->ref_seq, e->amount);
    return 0;
}

static int fold_member_side(struct audit *a, uint64_t m, uint64_t m2)
{
    switch (a->cur.e.kind) {
    case TALLY_KIND_OPEN:
        return fold_open(a, m);
    case TALLY_KIND_ACCRUE:
        return fold_accrue(a, m);
    case TALLY_KIND_ACTIVATE:
        return fold_activate(a, m);
    case TALLY_KIND_CANCEL:
        return fold_cancel(a, m);
    case TALLY_KIND_REDEEM:
        return fold_redeem(a, m);
    case TALLY_KIND_HOLD:
        return fold_hold(a, m);
    case TALLY_KIND_CAPTURE:
        return fold_capture(a, m);
    case TALLY_KIND_RELEASE:
        return fold_release(a, m);
    case TALLY_KIND_REVERSE:
        return a->ref.e.kind == TALLY_KIND_ACCRUE ? fold_reverse_accrual(a, m)
                                                  : fold_reverse_redemption(a, m);
    case TALLY_KIND_TRANSFER:
        return fold_transfer(a, m, m2);
    case TALLY_KIND_ADJUST:
        return fold_adjust(a, m);
    case TALLY_KIND_EXPIRE:
        return fold_expire(a, m);
    case TALLY_KIND_CLOSE:
        return fold_close(a, m);
    case TALLY_KIND_TIER_CHANGE:
        return fold_tier_change(a, m);
    default:
        return entry_diff(a, "unknown kind");
    }
}

/* The system side: the debit account gives `amount`, the credit account receives it. */
static int fold_system_side(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    const uint64_t side[2] = {e->debit, e->credit};
    for (int i = 0; i < 2; i++) {
        if (side[i] < TALLY_SYS_FIRST)
            continue;
        struct fold_account *f = account_find(a, e->program, side[i]);
        char who[MEMBER_NAME_MAX];
        if (f == NULL || f->acc.status != TALLY_ACCOUNT_STATUS_SYSTEM)
            return entry_diff(a, "names %s, which the program does not have",
                              member_name(side[i], who));
        TRY(i64_add(a, &f->acc, "available", &f->acc.available, e->amount, i == 0));
        f->acc.last_seq = e->seq;
    }
    return 0;
}

/* After an entry: the member's last_seq, the no-negative law and the lot limit. */
static int touch_member(struct audit *a, uint64_t m)
{
    const struct tally_entry *e = &a->cur.e;
    struct fold_account *f = account_find(a, e->program, m);
    const struct fold_program *p = table_get(&a->programs, e->program, 0);
    if (f == NULL)
        return entry_diff(a, "member %" PRIu64 " has no account", m);
    f->acc.last_seq = e->seq;
    if (f->acc.available < 0 && (p->rec.config.flags & TALLY_PROGRAM_ALLOW_NEGATIVE) == 0)
        return entry_diff(a,
                          "member %" PRIu64 ": available is %" PRId64
                          ", and the program does not allow negative balances",
                          m, f->acc.available);
    if (f->acc.lots_open > TALLY_LINEAGE_MAX)
        return entry_diff(a,
                          "member %" PRIu64 " has %" PRIu32
                          " open lots after it; a member may have at most %u",
                          m, f->acc.lots_open, TALLY_LINEAGE_MAX);
    return 0;
}

/* debit_prev / credit_prev: a member side links to the previous entry naming that account (its
 * last_seq before this entry; 0 when there is none); a system or zero side links to nothing. */
static int links_check(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    const uint64_t side[2] = {e->debit, e->credit};
    const uint64_t link[2] = {e->debit_prev, e->credit_prev};
    static const char *const field[2] = {"debit_prev", "credit_prev"};
    static const char *const role[2] = {"debit", "credit"};
    for (int i = 0; i < 2; i++) {
        char who[MEMBER_NAME_MAX];
        uint64_t want = 0;
        if (is_member(side[i])) {
            const struct fold_account *f = account_find(a, e->program, side[i]);
            want = f != NULL ? f->acc.last_seq : 0;
        }
        if (link[i] == want)
            continue;
        if (!is_member(side[i]))
            return entry_diff(a, "%s is %" PRIu64 ", but its %s side (%s) is no member: expected 0",
                              field[i], link[i], role[i], member_name(side[i], who));
        if (want == 0)
            return entry_diff(a,
                              "%s is %" PRIu64 ", but no earlier entry names %s (its %s side): "
                              "expected 0",
                              field[i], link[i], member_name(side[i], who), role[i]);
        return entry_diff(a,
                          "%s is %" PRIu64 ", but the previous entry naming %s (its %s side) is "
                          "%" PRIu64,
                          field[i], link[i], member_name(side[i], who), role[i], want);
    }
    return 0;
}

static int fold_one(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    if (e->timestamp > a->max_timestamp)
        a->max_timestamp = e->timestamp;
    TRY(posting_link_check(a));
    TRY(upgrade_check(a));
    TRY(remainder_check(a));
    TRY(links_check(a));
    if (e->kind == TALLY_KIND_PROGRAM)
        return fold_program(a);
    if (table_get(&a->programs, e->program, 0) == NULL)
        return entry_diff(a, "program %" PRIu32 " does not exist", e->program);
    uint16_t ref_kind = 0;
    if (kind_has_ref(e->kind)) {
        TRY(ref_load(a));
        ref_kind = a->ref.e.kind;
    }
    uint64_t m = 0, m2 = 0;
    TRY(sides_check(a, ref_kind, &m, &m2));
    if (ref_kind != 0 && ref_member(&a->ref.e) != m)
        return entry_diff(a,
                          "acts upon entry %" PRIu64 " of member %" PRIu64 ", not member %" PRIu64,
                          e->ref_seq, ref_member(&a->ref.e), m);
    TRY(fold_member_side(a, m, m2));
    TRY(fold_system_side(a));
    TRY(touch_member(a, m));
    if (m2 != 0)
        TRY(touch_member(a, m2));
    if (e->kind == TALLY_KIND_ACCRUE)
        upgrade_watch(a, m);
    return 0;
}

/* =============================================================================================
 * Member images in `members`: read before the walk, each compared during it at its last_seq.
 * =========================================================================================== */

/* A members key ends with the big-endian program and member (storage.h); the whole key must be
 * the one store_member_key() makes of them (its leading slot included). Returns false for a key
 * of another size or with a wrong slot; *program and *member are set whenever the size is right. */
static bool member_key_decode(const MDB_val *k, uint32_t *program, uint64_t *member)
{
    if (k->mv_size != STORE_MEMBER_KEY)
        return false;
    const uint8_t *p = k->mv_data;
    *program = store_get_be32(p + STORE_MEMBER_KEY - 12);
    *member = store_get_be64(p + STORE_MEMBER_KEY - 8);
    uint8_t want[STORE_MEMBER_KEY];
    store_member_key(want, *program, *member);
    return memcmp(want, p, sizeof(want)) == 0;
}

/* The shape of one image (a members value): a whole account, then lots_open whole lots in
 * (expires_at, lot_id) order, at most TALLY_LINEAGE_MAX of them, under the key of its own program
 * and member. `where` says where the image lies, for messages. */
static int image_shape(struct audit *a, uint32_t program, uint64_t member, const uint8_t *img,
                       size_t size, const char *where)
{
    char who[MEMBER_NAME_MAX];
    member_name(member, who);
    const size_t acc_size = sizeof(struct tally_account);
    const size_t lot_size = sizeof(struct tally_lot);
    if (size < acc_size || (size - acc_size) % lot_size != 0)
        return audit_diff(a, 0,
                          "%s: the image of %s in program %" PRIu32 " has %zu bytes, not a "
                          "%zu-byte account followed by whole %zu-byte lots",
                          where, who, program, size, acc_size, lot_size);
    size_t n = (size - acc_size) / lot_size;
    if (size > STORE_MEMBER_MAX)
        return audit_diff(a, 0,
                          "%s: the image of %s in program %" PRIu32
                          " holds %zu lots; a member may have at most %u",
                          where, who, program, n, TALLY_LINEAGE_MAX);
    struct tally_account acc;
    memcpy(&acc, img, sizeof(acc));
    if (acc.program != program || acc.member != member)
        return audit_diff(a, 0,
                          "%s: the image of %s in program %" PRIu32
                          " holds the account of member %" PRIu64 " in program %" PRIu32,
                          where, who, program, acc.member, acc.program);
    if (acc.lots_open != n)
        return audit_diff(a, 0,
                          "%s: the image of %s in program %" PRIu32 ": lots_open is %" PRIu32
                          ", but %zu lots follow the account",
                          where, who, program, acc.lots_open, n);
    struct tally_lot prev, lot;
    for (size_t i = 0; i < n; i++) {
        memcpy(&lot, img + acc_size + i * lot_size, sizeof(lot));
        bool ordered = i == 0 || prev.expires_at < lot.expires_at ||
                       (prev.expires_at == lot.expires_at && prev.lot_id < lot.lot_id);
        if (!ordered)
            return audit_diff(a, 0,
                              "%s: the image of %s in program %" PRIu32 ": lot %" PRIu64
                              " (expiry %" PRIu64 ") follows lot %" PRIu64 " (expiry %" PRIu64
                              "): lots are not in (expires_at, lot_id) order",
                              where, who, program, lot.lot_id, lot.expires_at, prev.lot_id,
                              prev.expires_at);
        prev = lot;
    }
    return 0;
}

/* One record of `members`: checked for shape and remembered for the walk. */
static int stored_add(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    uint32_t program = 0;
    uint64_t member = 0;
    if (!member_key_decode(k, &program, &member)) {
        char who[MEMBER_NAME_MAX];
        if (k->mv_size != STORE_MEMBER_KEY)
            return audit_diff(a, 0, "members: a key of %zu bytes (keys are %d bytes)",
                              k->mv_size, STORE_MEMBER_KEY);
        return audit_diff(a, 0,
                          "members: the key of %s in program %" PRIu32
                          " does not begin with its slot (storage.h, store_member_slot)",
                          member_name(member, who), program);
    }
    TRY(image_shape(a, program, member, v->mv_data, v->mv_size, "members"));
    struct stored_image *s = table_add(&a->stored, program, member);
    if (s == NULL)
        return -ENOMEM;
    struct tally_account acc;
    memcpy(&acc, v->mv_data, sizeof(acc));
    s->image = v->mv_data;
    s->size = (uint32_t)v->mv_size; /* at most STORE_MEMBER_MAX: image_shape checked */
    s->last_seq = acc.last_seq;
    return 0;
}

/* Read `members` into a->stored, before the walk compares the images. */
static int stored_load(struct audit *a)
{
    if (!a->has_db[STORE_DB_MEMBERS])
        return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->dbi[STORE_DB_MEMBERS], &c);
    if (rc != 0)
        return lmdb_error(rc);
    MDB_val k, v;
    int res = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && res == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        res = stored_add(a, &k, &v);
    mdb_cursor_close(c);
    if (res != 0)
        return res;
    return rc == MDB_NOTFOUND ? 0 : lmdb_error(rc);
}

/* Whether lot `lot_id` (of expiry `expires_at`) is among the n lots of an image (in
 * (expires_at, lot_id) order: image_shape checked). */
static bool image_has_lot(const uint8_t *img, size_t n, uint64_t expires_at, uint64_t lot_id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct tally_lot l;
        memcpy(&l, img + sizeof(struct tally_account) + mid * sizeof(l), sizeof(l));
        if (l.expires_at == expires_at && l.lot_id == lot_id)
            return true;
        if (l.expires_at < expires_at || (l.expires_at == expires_at && l.lot_id < lot_id))
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* The image holds fewer lots than the fold gives the account: name one it lacks (a scan of all
 * lots, only on this path). */
static int image_lot_missing(struct audit *a, uint32_t program, uint64_t member, const uint8_t *img,
                             size_t n)
{
    char who[MEMBER_NAME_MAX];
    member_name(member, who);
    for (size_t i = 0; i < a->lots.count; i++) {
        const struct fold_lot *l = table_item(&a->lots, i);
        if (l->program != program || l->member != member ||
            image_has_lot(img, n, l->lot.expires_at, l->lot.lot_id))
            continue;
        return audit_diff(a, a->cur.e.seq,
                          "lot %" PRIu64 " of %s in program %" PRIu32 " (%" PRIu64
                          " points, %" PRIu64 " held): the entries produce it by entry %" PRIu64
                          ", but it is not stored in the image (in members) as of that entry",
                          l->lot.lot_id, who, program, l->lot.remaining, l->lot.held,
                          a->cur.e.seq);
    }
    return 0; /* not reached while lots_open counts the lots; the account comparison says more */
}

/* Compare the image of (program, member) with the fold's state of that account right after the
 * current entry, which the image says it includes last: its lots first, then its account. */
static int image_compare(struct audit *a, uint32_t program, uint64_t member,
                         struct stored_image *s)
{
    const uint64_t seq = a->cur.e.seq;
    const struct fold_account *f = account_find(a, program, member);
    char who[MEMBER_NAME_MAX], what[200];
    member_name(member, who);
    if (f == NULL) /* an entry names it, so the fold made it: a fault of the fold's own */
        return audit_diff(a, seq, "%s in program %" PRIu32 ": named by the entry, not folded", who,
                          program);
    size_t n = (s->size - sizeof(struct tally_account)) / sizeof(struct tally_lot);
    for (size_t i = 0; i < n; i++) {
        struct tally_lot got;
        memcpy(&got, s->image + sizeof(struct tally_account) + i * sizeof(got), sizeof(got));
        const struct fold_lot *l = table_get(&a->lots, got.lot_id, 0);
        if (l == NULL)
            return audit_diff(a, seq,
                              "lot %" PRIu64 " of %s in program %" PRIu32
                              " (in members) as of entry %" PRIu64 " is stored, but after that "
                              "entry it has no points left or never existed",
                              got.lot_id, who, program, seq);
        if (l->program != program || l->member != member)
            return audit_diff(a, seq,
                              "lot %" PRIu64 " is stored with %s in program %" PRIu32
                              " (in members) as of entry %" PRIu64
                              "; the entries give it to member %" PRIu64 " in program %" PRIu32,
                              got.lot_id, who, program, seq, l->member, l->program);
        snprintf(what, sizeof(what),
                 "lot %" PRIu64 " of %s in program %" PRIu32 " (in members) as of entry %" PRIu64,
                 got.lot_id, who, program, seq);
        TRY(compare_fields(a, seq, what, lot_fields, COUNT_OF(lot_fields), &l->lot, &got,
                           sizeof(got)));
        a->rep->lots++;
    }
    if (f->acc.lots_open > n)
        TRY(image_lot_missing(a, program, member, s->image, n));
    struct tally_account got;
    memcpy(&got, s->image, sizeof(got));
    snprintf(what, sizeof(what),
             "account of %s in program %" PRIu32 " (in members) as of entry %" PRIu64, who,
             program, seq);
    TRY(compare_fields(a, seq, what, account_fields, COUNT_OF(account_fields), &f->acc, &got,
                       sizeof(got)));
    s->compared = 1;
    a->rep->accounts++;
    return 0;
}

/* One account the current entry names (after folding it): remember the entry if it lies before
 * fold_from, and compare the account's image if the image says it ends here. */
static int image_after_entry(struct audit *a, uint32_t program, uint64_t member)
{
    if (a->cur.e.seq < a->fold_from) {
        struct fold_account *f = account_find(a, program, member);
        if (f != NULL)
            f->last_before = a->cur.e.seq;
    }
    struct stored_image *s = table_get(&a->stored, program, member);
    if (s == NULL || s->last_seq != a->cur.e.seq)
        return 0;
    return image_compare(a, program, member, s);
}

/* The accounts the current entry names: its debit and credit, or for a PROGRAM entry the four
 * system accounts it creates. */
static int images_after_entry(struct audit *a)
{
    const struct tally_entry *e = &a->cur.e;
    if (e->kind == TALLY_KIND_PROGRAM) {
        for (uint64_t i = 0; i < TALLY_SYS_COUNT; i++)
            TRY(image_after_entry(a, e->program, UINT64_MAX - i));
        return 0;
    }
    TRY(image_after_entry(a, e->program, e->debit));
    if (e->credit != e->debit)
        TRY(image_after_entry(a, e->program, e->credit));
    return 0;
}

/* After the walk: an image the walk did not compare names in its last_seq no entry of its
 * account. */
static int image_uncompared(struct audit *a, size_t pos)
{
    const struct stored_image *s = table_item(&a->stored, pos);
    uint32_t program = (uint32_t)a->stored.keys[pos].a;
    uint64_t member = a->stored.keys[pos].b;
    char who[MEMBER_NAME_MAX];
    member_name(member, who);
    const struct fold_account *f = account_find(a, program, member);
    if (f == NULL)
        return audit_diff(a, 0,
                          "account of %s in program %" PRIu32
                          " is stored (in members), but no entry opened it",
                          who, program);
    uint64_t n = a->rep->entries;
    const char *why = s->last_seq == 0  ? "no entry"
                      : s->last_seq > n ? "an entry the ledger does not have"
                                        : "an entry that does not name it";
    return audit_diff(a, s->last_seq != 0 && s->last_seq <= n ? s->last_seq : f->acc.last_seq,
                      "account of %s in program %" PRIu32 " (in members) says it includes the "
                      "entries up to %" PRIu64 " (its last_seq), %s: an image is the state "
                      "right after an entry of its account",
                      who, program, s->last_seq, why);
}

/* After the walk and meta_check: every image was compared, and `members` holds every change
 * before fold_from (storage.h). Counts the images behind their accounts' newest entry. */
static int images_check(struct audit *a)
{
    for (size_t i = 0; i < a->stored.count; i++) {
        const struct stored_image *s = table_item(&a->stored, i);
        if (!s->compared)
            return image_uncompared(a, i);
    }
    for (size_t i = 0; i < a->accounts.count; i++) {
        const struct fold_account *f = table_item(&a->accounts, i);
        const struct stored_image *s = table_get(&a->stored, f->acc.program, f->acc.member);
        char who[MEMBER_NAME_MAX];
        member_name(f->acc.member, who);
        if (s == NULL && f->last_before != 0)
            return audit_diff(a, f->last_before,
                              "account of %s in program %" PRIu32 ": the entries produce it, "
                              "but it is not stored, and entry %" PRIu64
                              " changed it before fold_from (%" PRIu64
                              "): every change before fold_from must be in members",
                              who, f->acc.program, f->last_before, a->fold_from);
        if (s != NULL && s->last_seq < f->last_before)
            return audit_diff(a, f->last_before,
                              "account of %s in program %" PRIu32 " (in members) is its state "
                              "as of entry %" PRIu64 ", but entry %" PRIu64
                              " changed it before fold_from (%" PRIu64
                              "): every change before fold_from must be in members",
                              who, f->acc.program, s->last_seq, f->last_before, a->fold_from);
        if (s != NULL && s->last_seq < f->acc.last_seq)
            a->rep->images_behind++;
    }
    return 0;
}

/* =============================================================================================
 * The walk over the entries: numbering, hash chain, fold.
 * =========================================================================================== */

static int walk_one(struct audit *a, const MDB_val *k, const MDB_val *v, uint64_t expect)
{
    uint64_t seq;
    if (k->mv_size != sizeof(seq))
        return audit_diff(a, expect,
                          "entries: a key of %zu bytes where entry %" PRIu64 " should be",
                          k->mv_size, expect);
    memcpy(&seq, k->mv_data, sizeof(seq));
    if (seq != expect)
        return audit_diff(a, expect,
                          "entry %" PRIu64 " is missing: the next stored entry is %" PRIu64, expect,
                          seq);
    TRY(entry_decode(a, seq, v, &a->cur));
    uint64_t h = XXH3_64bits_withSeed(a->cur.raw + 8, a->cur.size - 8, a->prev_hash);
    if (h != a->cur.e.hash)
        return audit_diff(a, seq,
                          "entry %" PRIu64 " (%s): hash chain broken: stored hash %016" PRIx64
                          ", its bytes and entry %" PRIu64 "'s hash give %016" PRIx64
                          " (the entry was changed after it was written)",
                          seq, kind_name(a->cur.e.kind), a->cur.e.hash, seq - 1, h);
    a->prev_hash = h;
    TRY(fold_one(a));
    return images_after_entry(a);
}

static int walk_entries(struct audit *a)
{
    if (!a->has_db[STORE_DB_ENTRIES])
        return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->dbi[STORE_DB_ENTRIES], &c);
    if (rc != 0)
        return lmdb_error(rc);
    MDB_val k, v;
    uint64_t expect = 1;
    int res = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && res == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        res = walk_one(a, &k, &v, expect);
        if (res == 0)
            expect++;
    }
    mdb_cursor_close(c);
    a->rep->entries = expect - 1;
    if (res != 0)
        return res;
    if (a->upgrade_due != 0)
        return audit_diff(a, a->upgrade_seq,
                          "entry %" PRIu64 " (ACCRUE) lifted member %" PRIu64
                          " above its tier, but no UPGRADE follows",
                          a->upgrade_seq, a->upgrade_due);
    if (a->remainder_hold != 0)
        return audit_diff(a, a->remainder_seq,
                          "entry %" PRIu64 " (CAPTURE) left %" PRIu64 " points of hold %" PRIu64
                          " to give back, but no RELEASE flagged REMAINDER follows",
                          a->remainder_seq, a->remainder_amount, a->remainder_hold);
    return rc == MDB_NOTFOUND ? 0 : lmdb_error(rc);
}

/* The meta record must describe the entries just walked. */
static int meta_check(struct audit *a)
{
    uint64_t n = a->rep->entries;
    a->rep->chain_head = a->prev_hash;
    a->rep->fold_from = a->meta.fold_from;
    if (!a->has_meta)
        return n == 0
                   ? 0
                   : audit_diff(a, 1,
                                "the meta record is missing, but there are %" PRIu64 " entries", n);
    if (a->meta.next_seq != n + 1)
        return audit_diff(a, a->meta.next_seq > n + 1 ? n + 1 : a->meta.next_seq,
                          "meta: next_seq is %" PRIu64 ", but the entries end at %" PRIu64
                          " (entries were %s)",
                          a->meta.next_seq, n, a->meta.next_seq > n + 1 ? "removed" : "added");
    if (a->meta.chain_head != a->prev_hash)
        return audit_diff(
            a, n, "meta: chain_head is %016" PRIx64 ", entry %" PRIu64 "'s hash is %016" PRIx64,
            a->meta.chain_head, n, a->prev_hash);
    if (a->meta.fold_from == 0 || a->meta.fold_from > a->meta.next_seq)
        return audit_diff(a, 0,
                          "meta: fold_from is %" PRIu64 ", outside [1, next_seq %" PRIu64
                          "]: recovery would fold from an entry that %s",
                          a->meta.fold_from, a->meta.next_seq,
                          a->meta.fold_from == 0 ? "does not exist" : "is not written yet");
    if (a->meta.last_timestamp < a->max_timestamp)
        return audit_diff(a, 0,
                          "meta: last_timestamp %" PRIu64 " is older than an entry's %" PRIu64,
                          a->meta.last_timestamp, a->max_timestamp);
    if (a->max_lot_id != 0 && a->meta.next_lot_id <= a->max_lot_id)
        return audit_diff(a, 0, "meta: next_lot_id %" PRIu64 " was already used by lot %" PRIu64,
                          a->meta.next_lot_id, a->max_lot_id);
    return 0;
}

/* =============================================================================================
 * The scans: every record of every derived table, compared with the fold and summed.
 * =========================================================================================== */

typedef int (*scan_fn)(struct audit *a, const MDB_val *k, const MDB_val *v);

/* Room for n bytes in a->scratch. */
static int scratch_reserve(struct audit *a, size_t n)
{
    if (n > a->scratch_cap) {
        size_t cap = n > 2 * a->scratch_cap ? n : 2 * a->scratch_cap;
        uint8_t *p = realloc(a->scratch, cap);
        if (p == NULL)
            return -ENOMEM;
        a->scratch = p;
        a->scratch_cap = cap;
    }
    return 0;
}

/* Add the record's term (store_sum_term: the value hashed with a seed from tag and key) to
 * the state sum. */
static int sum_add(struct audit *a, int tag, const MDB_val *k, const MDB_val *v,
                   unsigned __int128 *sum)
{
    (void)a;
    *sum += store_sum_term(tag, k->mv_data, k->mv_size, v->mv_data, v->mv_size);
    return 0;
}

static int scan_db(struct audit *a, enum store_db db, scan_fn fn, unsigned __int128 *sum,
                   uint64_t *rows)
{
    *rows = 0;
    a->matched = 0;
    if (!a->has_db[db])
        return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->dbi[db], &c);
    if (rc != 0)
        return lmdb_error(rc);
    MDB_val k, v;
    int res = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && res == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        res = sum_add(a, (int)db, &k, &v, sum);
        (*rows)++;
        if (res == 0 && fn != NULL)
            res = fn(a, &k, &v);
    }
    mdb_cursor_close(c);
    if (res != 0)
        return res;
    return rc == MDB_NOTFOUND ? 0 : lmdb_error(rc);
}

static int scan_program(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    if (k->mv_size != 4)
        return audit_diff(a, 0, "programs: a key of %zu bytes", k->mv_size);
    uint32_t id = store_get_be32(k->mv_data);
    const struct fold_program *p = table_get(&a->programs, id, 0);
    if (p == NULL)
        return audit_diff(a, 0, "program %" PRIu32 " is stored, but no entry created it", id);
    struct store_program got;
    if (v->mv_size != sizeof(got))
        return audit_diff(a, p->last_seq, "program %" PRIu32 ": record of %zu bytes, expected %zu",
                          id, v->mv_size, sizeof(got));
    memcpy(&got, v->mv_data, sizeof(got));
    char what[48];
    snprintf(what, sizeof(what), "program %" PRIu32, id);
    TRY(compare_fields(a, p->last_seq, what, program_fields, COUNT_OF(program_fields), &p->rec,
                       &got, sizeof(got)));
    a->matched++;
    a->rep->programs++;
    return 0;
}

static int scan_hold(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    uint64_t seq;
    if (k->mv_size != sizeof(seq))
        return audit_diff(a, 0, "holds: a key of %zu bytes", k->mv_size);
    memcpy(&seq, k->mv_data, sizeof(seq));
    const struct store_hold *h = table_get(&a->holds, seq, 0);
    if (h != NULL) {
        struct store_hold want = *h;
        a->matched++;
        return hold_compare(a, seq, &want, seq);
    }
    /* Resolved holds were compared when they resolved; this one must be one of them. */
    int rc = entry_read(a, seq, &a->ref);
    if (rc == TALLY_ENOT_FOUND || (rc == 0 && a->ref.e.kind != TALLY_KIND_HOLD))
        return audit_diff(a, 0, "hold %" PRIu64 " is stored, but entry %" PRIu64 " is no HOLD", seq,
                          seq);
    if (rc != 0)
        return rc;
    struct store_hold got;
    if (v->mv_size < sizeof(got))
        return audit_diff(a, seq, "hold %" PRIu64 ": record of %zu bytes", seq, v->mv_size);
    memcpy(&got, v->mv_data, sizeof(got));
    if (got.status == TALLY_HOLD_ACTIVE)
        return audit_diff(a, seq,
                          "hold %" PRIu64 " is stored as ACTIVE, but the entries "
                          "resolved it",
                          seq);
    return 0;
}

static int scan_reversal(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    uint64_t seq;
    if (k->mv_size != sizeof(seq))
        return audit_diff(a, 0, "reversals: a key of %zu bytes", k->mv_size);
    memcpy(&seq, k->mv_data, sizeof(seq));
    const struct fold_reversal *r = table_get(&a->reversals, seq, 0);
    if (r == NULL)
        return audit_diff(a, seq,
                          "a reversal record of entry %" PRIu64
                          " is stored, but no REVERSE entry acts upon it",
                          seq);
    struct store_reversal want = {
        .amount = r->amount, .value = r->value, .lot_count = r->lot_count};
    struct store_reversal got;
    size_t size = sizeof(got) + (size_t)r->lot_count * sizeof(uint64_t);
    if (v->mv_size != size)
        return audit_diff(a, r->last_seq,
                          "reversal record of entry %" PRIu64 ": %zu bytes, expected %zu", seq,
                          v->mv_size, size);
    memcpy(&got, v->mv_data, sizeof(got));
    if (memcmp(&want, &got, sizeof(got)) != 0)
        return audit_diff(
            a, r->last_seq,
            "reversal record of entry %" PRIu64 ": expected amount %" PRIu64 " value %" PRIu64
            " lots %" PRIu32 ", found amount %" PRIu64 " value %" PRIu64 " lots %" PRIu32,
            seq, want.amount, want.value, want.lot_count, got.amount, got.value, got.lot_count);
    for (uint32_t i = 0; i < r->lot_count; i++) {
        uint64_t x;
        memcpy(&x, (const uint8_t *)v->mv_data + sizeof(got) + i * sizeof(x), sizeof(x));
        if (x != r->restored[i])
            return audit_diff(a, r->last_seq,
                              "reversal record of entry %" PRIu64 ": restored[%" PRIu32
                              "]: expected %" PRIu64 ", found %" PRIu64,
                              seq, i, r->restored[i], x);
    }
    a->matched++;
    return 0;
}

/* A timer (storage.h): its work is not re-derived (only the state sum covers it), but its shape
 * is checked: a (time, seq) key with seq below meta.next_timer, a known kind, and an account of
 * a program the entries created. */
static int scan_timer(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    if (k->mv_size != STORE_TIMER_KEY)
        return audit_diff(a, 0, "timers: a key of %zu bytes (keys are %d bytes)", k->mv_size,
                          STORE_TIMER_KEY);
    uint64_t time = store_get_be64(k->mv_data);
    uint64_t seq = store_get_be64((const uint8_t *)k->mv_data + 8);
    char when[32];
    time_text(time, when);
    struct store_timer t;
    if (v->mv_size != sizeof(t))
        return audit_diff(a, 0, "timer %" PRIu64 " (due %s): a value of %zu bytes, expected %zu",
                          seq, when, v->mv_size, sizeof(t));
    memcpy(&t, v->mv_data, sizeof(t));
    if (a->has_meta && seq >= a->meta.next_timer)
        return audit_diff(a, 0,
                          "timer %" PRIu64 " (due %s): meta.next_timer is %" PRIu64
                          ", so no timer has that number yet",
                          seq, when, a->meta.next_timer);
    if (t.kind < STORE_TIMER_ACTIVATE || t.kind > STORE_TIMER_TIER)
        return audit_diff(a, 0, "timer %" PRIu64 " (due %s): unknown kind %" PRIu32, seq, when,
                          t.kind);
    char who[MEMBER_NAME_MAX];
    if (account_find(a, t.program, t.member) == NULL)
        return audit_diff(a, 0,
                          "timer %" PRIu64 " (due %s) is for %s in program %" PRIu32
                          ", whose account no entry opened",
                          seq, when, member_name(t.member, who), t.program);
    return 0;
}

/* A posting record: a success names its entries, a failure names none. */
static int scan_posting(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    if (k->mv_size != 16)
        return audit_diff(a, 0, "postings: a key of %zu bytes", k->mv_size);
    char hex[33];
    ids_format(k->mv_data, hex);
    struct store_posting p;
    if (v->mv_size != sizeof(p))
        return audit_diff(a, 0, "posting %s: record of %zu bytes, expected %zu", hex, v->mv_size,
                          sizeof(p));
    memcpy(&p, v->mv_data, sizeof(p));
    a->rep->postings++;
    if (p.code != TALLY_OK) {
        if (!tally_result_recorded(p.code))
            return audit_diff(
                a, 0, "posting %s is recorded with result %" PRIu32 ", which is never recorded",
                hex, p.code);
        if (p.seq != 0 || p.entry_count != 0)
            return audit_diff(a, p.seq,
                              "posting %s failed but names entries %" PRIu64 " (+%" PRIu32 ")", hex,
                              p.seq, p.entry_count);
        return 0;
    }
    uint64_t n = a->rep->entries;
    if (p.seq == 0 || p.entry_count == 0 || p.seq > n || p.entry_count - 1 > n - p.seq)
        return audit_diff(a, 0,
                          "posting %s succeeded with entries %" PRIu64 " (+%" PRIu32
                          "), which are not all in the ledger (%" PRIu64 " entries)",
                          hex, p.seq, p.entry_count, n);
    int rc = entry_read(a, p.seq, &a->ref);
    if (rc != 0)
        return rc == TALLY_ENOT_FOUND ? audit_diff(a, p.seq, "entry %" PRIu64 " vanished", p.seq)
                                      : rc;
    const struct tally_entry *e = &a->ref.e;
    if (memcmp(e->posting_id, k->mv_data, 16) != 0 || e->kind != p.kind ||
        e->timestamp != p.timestamp)
        return audit_diff(a, p.seq,
                          "posting %s (%s at %" PRIu64 ") names entry %" PRIu64
                          ", which is a %s at %" PRIu64 " of another posting or time",
                          hex, kind_name(p.kind), p.timestamp, p.seq, kind_name(e->kind),
                          e->timestamp);
    return 0;
}

typedef size_t (*key_fn)(const struct audit *a, size_t pos, uint8_t key[32], uint64_t *seq,
                         char *what, size_t what_size);

static size_t program_key(const struct audit *a, size_t pos, uint8_t key[32], uint64_t *seq,
                          char *what, size_t what_size)
{
    const struct fold_program *p = table_item(&a->programs, pos);
    store_be32(key, (uint32_t)a->programs.keys[pos].a);
    *seq = p->last_seq;
    snprintf(what, what_size, "program %" PRIu64, a->programs.keys[pos].a);
    return 4;
}

static size_t seq_key(const struct table *t, size_t pos, uint8_t key[32])
{
    memcpy(key, &t->keys[pos].a, sizeof(uint64_t));
    return sizeof(uint64_t);
}

static size_t hold_key(const struct audit *a, size_t pos, uint8_t key[32], uint64_t *seq,
                       char *what, size_t what_size)
{
    *seq = a->holds.keys[pos].a;
    snprintf(what, what_size, "active hold %" PRIu64, *seq);
    return seq_key(&a->holds, pos, key);
}

static size_t reversal_key(const struct audit *a, size_t pos, uint8_t key[32], uint64_t *seq,
                           char *what, size_t what_size)
{
    const struct fold_reversal *r = table_item(&a->reversals, pos);
    *seq = r->last_seq;
    snprintf(what, what_size, "reversal record of entry %" PRIu64, a->reversals.keys[pos].a);
    return seq_key(&a->reversals, pos, key);
}

/* Every item of the fold's table must be stored (called when the scan matched fewer). */
static int find_missing(struct audit *a, const struct table *t, enum store_db db, key_fn fn)
{
    for (size_t i = 0; i < t->count; i++) {
        uint8_t kb[32];
        uint64_t seq;
        char what[160];
        MDB_val k = {.mv_size = fn(a, i, kb, &seq, what, sizeof(what)), .mv_data = kb};
        MDB_val v;
        int rc = a->has_db[db] ? mdb_get(a->txn, a->dbi[db], &k, &v) : MDB_NOTFOUND;
        if (rc == MDB_NOTFOUND)
            return audit_diff(a, seq, "%s: the entries produce it, but it is not stored", what);
        if (rc != 0)
            return lmdb_error(rc);
    }
    return 0;
}

/* Scan one table: compare each record, then look for what the fold has and the store lacks. */
static int scan_compare(struct audit *a, enum store_db db, scan_fn fn, const struct table *t,
                        key_fn kf, unsigned __int128 *sum)
{
    uint64_t rows;
    TRY(scan_db(a, db, fn, sum, &rows));
    if (t != NULL && a->matched != t->count)
        TRY(find_missing(a, t, db, kf));
    return 0;
}

/* =============================================================================================
 * The logical member images in the state sum: the fold's final accounts and their lots.
 * =========================================================================================== */

/* A lot in image order: by account, then (expires_at, lot_id). */
struct sum_lot {
    uint64_t member;
    uint64_t expires_at;
    uint64_t lot_id;
    size_t pos; /* in a->lots */
    uint32_t program;
    uint32_t reserved;
};

static int sum_lot_cmp(const void *x, const void *y)
{
    const struct sum_lot *p = x, *q = y;
    if (p->program != q->program)
        return p->program < q->program ? -1 : 1;
    if (p->member != q->member)
        return p->member < q->member ? -1 : 1;
    if (p->expires_at != q->expires_at)
        return p->expires_at < q->expires_at ? -1 : 1;
    if (p->lot_id != q->lot_id)
        return p->lot_id < q->lot_id ? -1 : 1;
    return 0;
}

/* Give each account the run of `order` that holds its lots; the fold's lots_open must count
 * them (both come from the fold: a difference is the auditor's own fault, still reported). */
static int sum_lots_assign(struct audit *a, const struct sum_lot *order, size_t n)
{
    for (size_t i = 0; i < a->accounts.count; i++) {
        struct fold_account *f = table_item(&a->accounts, i);
        f->lot_first = 0;
        f->lot_count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct fold_account *f = account_find(a, order[i].program, order[i].member);
        if (f == NULL)
            return audit_diff(a, 0, "lot %" PRIu64 " belongs to no account", order[i].lot_id);
        if (f->lot_count == 0)
            f->lot_first = i;
        f->lot_count++;
    }
    for (size_t i = 0; i < a->accounts.count; i++) {
        const struct fold_account *f = table_item(&a->accounts, i);
        if (f->lot_count != f->acc.lots_open)
            return audit_diff(a, f->acc.last_seq,
                              "member %" PRIu64 " in program %" PRIu32 ": the fold counts %" PRIu32
                              " open lots, but holds %" PRIu32,
                              f->acc.member, f->acc.program, f->acc.lots_open, f->lot_count);
    }
    return 0;
}

/* Hash one account's logical image (account, then its lots in order) into the sum. */
static int sum_image(struct audit *a, const struct fold_account *f, const struct sum_lot *order,
                     unsigned __int128 *sum)
{
    const size_t acc_size = sizeof(struct tally_account);
    const size_t lot_size = sizeof(struct tally_lot);
    size_t n = acc_size + (size_t)f->lot_count * lot_size;
    TRY(scratch_reserve(a, n));
    uint8_t *p = a->scratch;
    memcpy(p, &f->acc, acc_size);
    p += acc_size;
    for (uint32_t k = 0; k < f->lot_count; k++) {
        const struct fold_lot *l = table_item(&a->lots, order[f->lot_first + k].pos);
        memcpy(p + k * lot_size, &l->lot, lot_size);
    }
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, f->acc.program, f->acc.member);
    *sum += store_sum_term(STORE_DB_MEMBERS, key, sizeof(key), a->scratch, n);
    return 0;
}

/* Every account of the fold, as the engine's images are after the last batch, into the sum. */
static int members_sum(struct audit *a, unsigned __int128 *sum)
{
    size_t n = a->lots.count;
    struct sum_lot *order = malloc((n + 1) * sizeof(*order));
    if (order == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct fold_lot *l = table_item(&a->lots, i);
        order[i] = (struct sum_lot){.member = l->member,
                                    .expires_at = l->lot.expires_at,
                                    .lot_id = l->lot.lot_id,
                                    .pos = i,
                                    .program = l->program};
    }
    qsort(order, n, sizeof(*order), sum_lot_cmp);
    int rc = sum_lots_assign(a, order, n);
    for (size_t i = 0; rc == 0 && i < a->accounts.count; i++)
        rc = sum_image(a, table_item(&a->accounts, i), order, sum);
    free(order);
    return rc;
}

/* A session record (the reply cache of tallyd's sessions): well formed, and indexed by
 * session_lru under the index it says. Sessions are not re-derived from the entries (entries
 * do not name sessions); they are covered by the state sum. */
static int scan_session(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    struct store_session s;
    if (k->mv_size != 16 || v->mv_size < sizeof(s))
        return audit_diff(a, 0, "sessions: a record with a %zu-byte key and %zu bytes",
                          k->mv_size, v->mv_size);
    memcpy(&s, v->mv_data, sizeof(s));
    if (s.count > TALLY_BATCH_MAX || s.last_request == 0 || s.reserved != 0 ||
        v->mv_size != sizeof(s) + (size_t)s.count * sizeof(struct tally_result) ||
        (a->has_meta && s.last_index > a->meta.applied_index))
        return audit_diff(a, 0, "sessions: a record of %zu bytes for %" PRIu32
                          " results, request %" PRIu64 " at index %" PRIu64 " is malformed",
                          v->mv_size, s.count, s.last_request, s.last_index);
    uint8_t key[24];
    store_be64(key, s.last_index);
    memcpy(key + 8, k->mv_data, 16);
    MDB_val lk = {.mv_size = sizeof(key), .mv_data = key}, lv;
    if (!a->has_db[STORE_DB_SESSION_LRU] ||
        mdb_get(a->txn, a->dbi[STORE_DB_SESSION_LRU], &lk, &lv) != 0)
        return audit_diff(a, 0, "sessions: a session of index %" PRIu64
                          " is missing from session_lru", s.last_index);
    return 0;
}

static int scan_session_lru(struct audit *a, const MDB_val *k, const MDB_val *v)
{
    if (k->mv_size != 24 || v->mv_size != 0)
        return audit_diff(a, 0, "session_lru: a record with a %zu-byte key and %zu bytes",
                          k->mv_size, v->mv_size);
    return 0;
}

static int scan_all(struct audit *a)
{
    unsigned __int128 sum = 0;
    uint64_t rows;
    TRY(scan_compare(a, STORE_DB_PROGRAMS, scan_program, &a->programs, program_key, &sum));
    TRY(members_sum(a, &sum));
    TRY(scan_compare(a, STORE_DB_HOLDS, scan_hold, &a->holds, hold_key, &sum));
    TRY(scan_compare(a, STORE_DB_REVERSALS, scan_reversal, &a->reversals, reversal_key, &sum));
    TRY(scan_db(a, STORE_DB_POSTINGS, scan_posting, &sum, &rows));
    TRY(scan_db(a, STORE_DB_TIMERS, scan_timer, &sum, &rows));
    uint64_t sessions = 0;
    TRY(scan_db(a, STORE_DB_SESSIONS, scan_session, &sum, &sessions));
    TRY(scan_db(a, STORE_DB_SESSION_LRU, scan_session_lru, &sum, &rows));
    if (rows != sessions)
        return audit_diff(a, 0, "session_lru holds %" PRIu64 " keys for %" PRIu64 " sessions",
                          rows, sessions);
    uint64_t lo = (uint64_t)sum;
    uint64_t hi = (uint64_t)(sum >> 64);
    if (a->has_meta && (lo != a->meta.sum_lo || hi != a->meta.sum_hi))
        return audit_diff(a, 0,
                          "state sum: meta holds %016" PRIx64 "%016" PRIx64
                          ", the fold's member images and the stored tables sum to %016" PRIx64
                          "%016" PRIx64 " (every record the fold re-derives matched: a record "
                          "only the sum covers, such as a timer, was changed, added or removed "
                          "outside the engine, or the engine kept the sum wrongly)",
                          a->meta.sum_hi, a->meta.sum_lo, hi, lo);
    return 0;
}

/* =============================================================================================
 * The laws, on the folded state (the logical state, which the stored records matched).
 * =========================================================================================== */

static int check_double_entry(struct audit *a)
{
    for (size_t i = 0; i < a->programs.count; i++)
        ((struct fold_program *)table_item(&a->programs, i))->sum = 0;
    for (size_t i = 0; i < a->accounts.count; i++) {
        const struct tally_account *acc = table_item(&a->accounts, i);
        struct fold_program *p = table_get(&a->programs, acc->program, 0);
        if (p == NULL)
            continue;
        p->sum += acc->available;
        if (acc->status != TALLY_ACCOUNT_STATUS_SYSTEM)
            p->sum += (__int128)acc->pending + acc->held;
    }
    for (size_t i = 0; i < a->programs.count; i++) {
        const struct fold_program *p = table_item(&a->programs, i);
        if (p->sum != 0)
            return audit_diff(a, 0,
                              "program %" PRIu64 " does not sum to zero: its accounts total "
                              "%s%" PRIu64 "%s",
                              a->programs.keys[i].a, p->sum < 0 ? "-" : "",
                              (uint64_t)(p->sum < 0 ? -p->sum : p->sum),
                              p->sum > INT64_MAX || p->sum < INT64_MIN ? " (mod 2^64)" : "");
    }
    return 0;
}

/* Each member's buckets must be what its lots hold (available only while not in debt). */
static int check_lots_vs_buckets(struct audit *a)
{
    for (size_t i = 0; i < a->accounts.count; i++) {
        struct fold_account *f = table_item(&a->accounts, i);
        f->lot_active = f->lot_pending = f->lot_held = 0;
    }
    for (size_t i = 0; i < a->lots.count; i++) {
        const struct fold_lot *l = table_item(&a->lots, i);
        struct fold_account *f = account_find(a, l->program, l->member);
        if (f == NULL)
            continue;
        uint64_t *bucket = l->lot.activate_at != 0 ? &f->lot_pending : &f->lot_active;
        if (__builtin_add_overflow(*bucket, l->lot.remaining, bucket) ||
            __builtin_add_overflow(f->lot_held, l->lot.held, &f->lot_held))
            return audit_diff(a, l->last_seq, "member %" PRIu64 ": its lots overflow", l->member);
    }
    for (size_t i = 0; i < a->accounts.count; i++) {
        const struct fold_account *f = table_item(&a->accounts, i);
        const struct tally_account *acc = &f->acc;
        if (acc->status == TALLY_ACCOUNT_STATUS_SYSTEM)
            continue;
        uint64_t avail = acc->available > 0 ? (uint64_t)acc->available : 0;
        const char *field = avail != f->lot_active           ? "available"
                            : acc->pending != f->lot_pending ? "pending"
                            : acc->held != f->lot_held       ? "held"
                                                             : NULL;
        if (field != NULL)
            return audit_diff(a, acc->last_seq,
                              "member %" PRIu64 " in program %" PRIu32 ": available %" PRId64
                              ", pending %" PRIu64 ", held %" PRIu64 ", but its lots hold %" PRIu64
                              ", %" PRIu64 " pending, %" PRIu64 " held (%s differs)",
                              acc->member, acc->program, acc->available, acc->pending, acc->held,
                              f->lot_active, f->lot_pending, f->lot_held, field);
    }
    return 0;
}

/* Time-driven work is done in the first batch at or after its time (docs/LEDGER.md): after the
 * last batch nothing may be overdue: no lot past its expiry with points left, no pending lot
 * past its activation, no active hold past its timeout, no open member's tier past its validity. */
static int check_overdue(struct audit *a)
{
    uint64_t now = a->meta.last_timestamp;
    char t1[32], t2[32];
    time_text(now, t2);
    for (size_t i = 0; a->has_meta && i < a->lots.count; i++) {
        const struct fold_lot *l = table_item(&a->lots, i);
        bool pending = l->lot.activate_at != 0;
        uint64_t due = pending ? l->lot.activate_at : l->lot.expires_at;
        if (due <= now && (pending || l->lot.remaining != 0))
            return audit_diff(a, l->last_seq,
                              "lot %" PRIu64 " of member %" PRIu64 " in program %" PRIu32
                              " was due to %s at %s, but "
                              "is still %s after the last batch (at %s)",
                              l->lot.lot_id, l->member, l->program, pending ? "activate" : "expire",
                              time_text(due, t1), pending ? "pending" : "holding points", t2);
    }
    for (size_t i = 0; a->has_meta && i < a->holds.count; i++) {
        const struct store_hold *h = table_item(&a->holds, i);
        if (h->timeout_at <= now)
            return audit_diff(a, a->holds.keys[i].a,
                              "hold %" PRIu64 " of member %" PRIu64
                              " timed out at %s, but is still active after "
                              "the last batch (at %s)",
                              a->holds.keys[i].a, h->member, time_text(h->timeout_at, t1), t2);
    }
    for (size_t i = 0; a->has_meta && i < a->accounts.count; i++) {
        const struct tally_account *acc = table_item(&a->accounts, i);
        if (acc->status == TALLY_ACCOUNT_STATUS_OPEN && acc->tier_valid_until <= now)
            return audit_diff(a, acc->last_seq,
                              "member %" PRIu64 " in program %" PRIu32 ": tier %" PRIu32
                              " was valid until %s, and no "
                              "evaluation followed by the last batch (at %s)",
                              acc->member, acc->program, acc->tier,
                              time_text(acc->tier_valid_until, t1), t2);
    }
    return 0;
}

static int audit_run(struct audit *a)
{
    TRY(meta_read(a));
    a->verifying = true;
    a->fold_from = a->has_meta ? a->meta.fold_from : 0;
    TRY(stored_load(a));
    TRY(walk_entries(a));
    TRY(meta_check(a));
    TRY(images_check(a));
    TRY(scan_all(a));
    TRY(check_double_entry(a));
    TRY(check_lots_vs_buckets(a));
    return check_overdue(a);
}

int audit_verify(const char *dir, struct audit_report *report)
{
    struct audit a;
    int rc = audit_init(&a, report);
    if (rc == 0)
        rc = audit_open(&a, dir);
    if (rc == 0)
        rc = audit_run(&a);
    audit_release(&a);
    if (rc == AUDIT_DIFF)
        return 0;
    if (rc != 0) {
        report->ok = false;
        snprintf(report->what, sizeof(report->what), "the audit could not run: %s",
                 tally_strerror(rc));
    }
    return rc;
}

/* =============================================================================================
 * Trial balance: the system accounts and the members' points of each program, as folded.
 *
 * The images in `members` may be older than the entries (written back lazily), so the totals
 * come from the fold of the entries: the logical state, what the engine serves after its next
 * open. Stored records are not compared here; that is audit_verify's work.
 * =========================================================================================== */

/* Fold one account into the program's totals. */
static void trial_account(const struct tally_account *acc, struct tally_program_totals *t,
                          __int128 *members, __int128 *system)
{
    uint64_t neg = 0 - (uint64_t)acc->available; /* -(balance), two's complement */
    if (acc->member < TALLY_SYS_FIRST)
        *members += (__int128)acc->available + acc->pending + acc->held;
    else
        *system += acc->available;
    if (acc->member == TALLY_SYS_ISSUANCE)
        t->issued = neg;
    else if (acc->member == TALLY_SYS_REDEMPTION)
        t->redeemed = (uint64_t)acc->available;
    else if (acc->member == TALLY_SYS_BREAKAGE)
        t->expired = (uint64_t)acc->available;
    else if (acc->member == TALLY_SYS_ADJUSTMENT)
        t->adjusted = (int64_t)neg;
}

static int u32_cmp(const void *x, const void *y)
{
    uint32_t p = *(const uint32_t *)x, q = *(const uint32_t *)y;
    return p < q ? -1 : p > q;
}

/* Index of `program` in ids[0..n) (ascending), or n. */
static uint32_t trial_find(const uint32_t *ids, uint32_t n, uint32_t program)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < program)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == program ? lo : n;
}

/* The totals of the first `n` programs (ids ascending) from the folded accounts. */
static int trial_sum(struct audit *a, const uint32_t *ids, uint32_t n,
                     struct tally_program_totals *out, bool *balanced)
{
    __int128 *members = calloc(n + 1u, sizeof(*members));
    __int128 *system = calloc(n + 1u, sizeof(*system));
    if (members == NULL || system == NULL) {
        free(members);
        free(system);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct fold_program *p = table_get(&a->programs, ids[i], 0);
        memset(&out[i], 0, sizeof(out[i]));
        out[i].program = ids[i];
        out[i].tier_count = p->rec.config.tier_count;
        out[i].members = p->rec.members;
    }
    for (size_t k = 0; k < a->accounts.count; k++) {
        const struct fold_account *f = table_item(&a->accounts, k);
        uint32_t i = trial_find(ids, n, f->acc.program);
        if (i < n)
            trial_account(&f->acc, &out[i], &members[i], &system[i]);
    }
    for (uint32_t i = 0; i < n; i++) {
        out[i].outstanding = (int64_t)members[i];
        balanced[i] = members[i] + system[i] == 0;
    }
    free(members);
    free(system);
    return 0;
}

/* The folded programs, up to max of them, in id order. */
static int trial_programs(struct audit *a, struct tally_program_totals *out, bool *balanced,
                          uint32_t max, uint32_t *count)
{
    size_t np = a->programs.count;
    uint32_t *ids = malloc((np + 1) * sizeof(*ids));
    if (ids == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < np; i++)
        ids[i] = (uint32_t)a->programs.keys[i].a;
    qsort(ids, np, sizeof(*ids), u32_cmp);
    uint32_t n = np < max ? (uint32_t)np : max;
    int rc = trial_sum(a, ids, n, out, balanced);
    free(ids);
    if (rc == 0)
        *count = n;
    return rc;
}

int audit_trial_balance(const char *dir, struct tally_program_totals *out, bool *balanced,
                        uint32_t max, uint32_t *count)
{
    struct audit a;
    struct audit_report unused;
    *count = 0;
    int rc = audit_init(&a, &unused);
    if (rc == 0)
        rc = audit_open(&a, dir);
    if (rc == 0)
        rc = walk_entries(&a); /* a->verifying is false: the fold alone */
    if (rc == AUDIT_DIFF)      /* another layout, or entries that do not fold */
        rc = TALLY_ECORRUPT;
    if (rc == 0)
        rc = trial_programs(&a, out, balanced, max, count);
    audit_release(&a);
    return rc;
}
