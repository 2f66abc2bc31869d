/* tally_records.h: the fixed-size records that cross the wire and the disk.
 *
 * Everything here is little-endian, naturally aligned and of a fixed size checked at compile time,
 * so a batch of postings can be checksummed, replicated and applied as it arrived, with no parsing.
 * Time is always milliseconds since the Unix epoch (UTC), in a uint64_t named *_ms or *_at.
 * Amounts of points are unsigned and at most TALLY_AMOUNT_MAX; a balance that can go negative is
 * int64_t. The byte tables below are the specification; docs/PROTOCOL.md and docs/STORAGE.md quote
 * them.
 */
#ifndef TALLY_RECORDS_H
#define TALLY_RECORDS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Limits. Each one is a promise to the reader of a batch or a record.
 * ------------------------------------------------------------------------------------------- */

/* Postings per batch. 8190 x 128 bytes is just under 1 MiB, so a full batch plus its frame header
 * fits in one 1 MiB message buffer and one Raft entry; the engine sizes its scratch space from it. */
#define TALLY_BATCH_MAX 8190u

/* Largest amount or value of one posting: 2^53, so every amount survives a trip through JSON
 * (an IEEE double) in the CLI and the exports, and sums of many stay far from int64 overflow. */
#define TALLY_AMOUNT_MAX (UINT64_C(1) << 53)

/* Lots one entry may consume or restore, and open lots one member may have. A member's open lots
 * are stored with its account and rewritten with it, so their number is bounded: at this bound
 * an accrual that would open one more lot is refused (LOTS_LIMIT) until some are spent or expire.
 * 1024 lots is about three years of daily purchases under a rolling-days policy; under the month,
 * quarter and year policies most members hold a handful. */
#define TALLY_LINEAGE_MAX 1024u

/* Tiers per program: tier 0 (base) and up to 7 above it. */
#define TALLY_TIERS_MAX 8u

/* Months of qualifying value kept per account: a rolling window is at most this long, and a
 * calendar year never needs more. */
#define TALLY_QV_MONTHS 12u

/* Member ids at or above this are the program's system accounts; members are 1 .. SYS_FIRST-1. */
#define TALLY_SYS_FIRST (UINT64_MAX - 255u)
#define TALLY_SYS_ISSUANCE (UINT64_MAX - 0u)   /* source of every accrual */
#define TALLY_SYS_REDEMPTION (UINT64_MAX - 1u) /* sink of every redemption and capture */
#define TALLY_SYS_BREAKAGE (UINT64_MAX - 2u)   /* sink of expiry and of forfeiture at close */
#define TALLY_SYS_ADJUSTMENT (UINT64_MAX - 3u) /* counterpart of manual adjustments */
#define TALLY_SYS_COUNT 4u

/* Longest duration a posting may carry (pending window, hold timeout): ten years. */
#define TALLY_DURATION_MAX_MS (UINT64_C(10) * 366 * 24 * 3600 * 1000)

/* ---------------------------------------------------------------------------------------------
 * Kinds of posting (what a client asks for) and of entry (what the ledger records).
 * The numbers are on the wire and on disk: append only.
 * ------------------------------------------------------------------------------------------- */
enum tally_kind {
    TALLY_KIND_PROGRAM = 1,      /* create a program with its configuration */
    TALLY_KIND_OPEN = 2,         /* open a member account */
    TALLY_KIND_ACCRUE = 3,       /* earn points (a new lot), optionally pending */
    TALLY_KIND_ACTIVATE = 4,     /* make a pending accrual available now */
    TALLY_KIND_CANCEL = 5,       /* cancel a pending accrual (a return inside the window) */
    TALLY_KIND_REDEEM = 6,       /* spend available points, soonest-expiring lots first */
    TALLY_KIND_HOLD = 7,         /* reserve available points until captured, released or timed out */
    TALLY_KIND_CAPTURE = 8,      /* spend all or part of a hold; the rest is released */
    TALLY_KIND_RELEASE = 9,      /* give a hold back */
    TALLY_KIND_REVERSE = 10,     /* undo all or part of an accrual, redemption or capture */
    TALLY_KIND_TRANSFER = 11,    /* move available points to another member of the program */
    TALLY_KIND_ADJUST = 12,      /* authorised manual correction, signed, with a reason code */
    TALLY_KIND_CLOSE = 13,       /* close an account, forfeiting its points */
    TALLY_KIND_EXPIRE = 14,      /* entry only: lots reached their expiry time */
    TALLY_KIND_TIER_CHANGE = 15, /* entry only: tier upgraded, renewed or downgraded */
};
#define TALLY_KIND_LIMIT 16

/* Posting flags. */
enum tally_posting_flag {
    TALLY_FLAG_LINKED = 1u << 0,   /* the next posting belongs to the same all-or-nothing chain */
    TALLY_FLAG_PENDING = 1u << 1,  /* ACCRUE: points are pending for duration_ms first */
    TALLY_FLAG_NEGATIVE = 1u << 2, /* ADJUST: take points away instead of adding them */
};
#define TALLY_FLAGS_KNOWN 0x7u

/* Entry flags (set by the engine). */
enum tally_entry_flag {
    TALLY_ENTRY_PENDING = 1u << 1,  /* ACCRUE created a pending lot */
    TALLY_ENTRY_NEGATIVE = 1u << 2, /* ADJUST took points away */
    TALLY_ENTRY_AUTO = 1u << 3,     /* created by the ledger (time, or a consequence of a posting) */
    TALLY_ENTRY_REMAINDER = 1u << 4, /* RELEASE of what a partial CAPTURE left of its hold */
};

/* Expiry policy of a program's lots. Periods are computed in the program's time zone offset. */
enum tally_expiry {
    TALLY_EXPIRY_NONE = 0,    /* lots never expire */
    TALLY_EXPIRY_FIXED = 1,   /* every lot expires at expiry_fixed_at */
    TALLY_EXPIRY_DAYS = 2,    /* rolling: end of the day expiry_n days after the day earned */
    TALLY_EXPIRY_MONTH = 3,   /* end of the month expiry_n months after the month earned */
    TALLY_EXPIRY_QUARTER = 4, /* end of the quarter expiry_n quarters after the quarter earned */
    TALLY_EXPIRY_YEAR = 5,    /* end of the year expiry_n years after the year earned */
};

enum tally_tier_mode {
    TALLY_TIER_UP_ONLY = 0,     /* never downgraded (只进不退) */
    TALLY_TIER_DOWN_STEP = 1,   /* re-evaluated at end of validity, falls at most one step */
    TALLY_TIER_DOWN_EARNED = 2, /* re-evaluated at end of validity, falls to the earned tier */
};

enum tally_window {
    TALLY_WINDOW_ROLLING = 0,  /* the last window_months calendar months, the current included */
    TALLY_WINDOW_CALENDAR = 1, /* the current calendar year so far */
};

/* TIER_CHANGE reasons (entry code field). */
enum tally_tier_reason {
    TALLY_TIER_UPGRADE = 1,   /* an accrual crossed a threshold */
    TALLY_TIER_RENEW = 2,     /* validity ended and the earned tier kept (or raised) it */
    TALLY_TIER_DOWNGRADE = 3, /* validity ended and the earned tier was lower */
};

/* Program flags. */
enum tally_program_flag {
    TALLY_PROGRAM_ALLOW_NEGATIVE = 1u << 0, /* REVERSE and ADJUST may take available below zero */
};

/* ---------------------------------------------------------------------------------------------
 * struct tally_program_config: 96 bytes, the body of a PROGRAM posting.
 *
 *   offset size field             meaning
 *        0    1 expiry            enum tally_expiry
 *        1    1 tier_mode         enum tally_tier_mode
 *        2    1 window            enum tally_window
 *        3    1 window_months     1..12 (ROLLING); 0 for CALENDAR
 *        4    1 validity_months   1..120, months a reached tier stays valid (ignored for UP_ONLY)
 *        5    1 tier_count        1..8; tier 0 is the base tier
 *        6    2 flags             enum tally_program_flag
 *        8    4 expiry_n          days (DAYS, 1..3660) or periods (MONTH/QUARTER/YEAR, 0..120)
 *       12    4 tz_offset_min     int32, -840..840: the program's civil time offset from UTC
 *       16    8 expiry_fixed_at   FIXED: the instant every lot expires; otherwise 0
 *       24    8 hold_timeout_ms   default timeout of a HOLD that names none, 1 .. DURATION_MAX
 *       32   56 thresholds[7]     qualifying value needed for tier 1..7, strictly increasing;
 *                                 entries at and above tier_count-1 must be 0
 *       88    8 reserved          zero
 * ------------------------------------------------------------------------------------------- */
struct tally_program_config {
    uint8_t expiry;
    uint8_t tier_mode;
    uint8_t window;
    uint8_t window_months;
    uint8_t validity_months;
    uint8_t tier_count;
    uint16_t flags;
    uint32_t expiry_n;
    int32_t tz_offset_min;
    uint64_t expiry_fixed_at;
    uint64_t hold_timeout_ms;
    uint64_t thresholds[TALLY_TIERS_MAX - 1];
    uint64_t reserved;
};
_Static_assert(sizeof(struct tally_program_config) == 96, "program config is 96 bytes");
_Static_assert(offsetof(struct tally_program_config, thresholds) == 32, "thresholds at 32");

/* ---------------------------------------------------------------------------------------------
 * struct tally_posting: 128 bytes, what a client submits. Fields a kind does not use must be zero.
 *
 *   offset size field        meaning
 *        0   16 id           posting id chosen by the client, nonzero, unique forever
 *       16    4 program      program id, nonzero
 *       20    2 kind         enum tally_kind
 *       22    2 flags        enum tally_posting_flag
 *       24    4 code         ADJUST: reason code; other kinds: channel or store code (kept)
 *       28    4 reserved     zero
 *       32   16 ref          id of the posting acted upon (ACTIVATE, CANCEL, CAPTURE, RELEASE,
 *                            REVERSE)
 *       48    8 account      member id (1 .. TALLY_SYS_FIRST-1)
 *       56    8 account2     TRANSFER: destination member
 *       64    8 amount       points (CAPTURE, REVERSE: 0 means "all that remains")
 *       72    8 value        ACCRUE: qualifying value earned (e.g. cents spent)
 *       80    8 duration_ms  ACCRUE+PENDING: pending window; HOLD: timeout (0: program default)
 *       88   32 user_data    opaque to the ledger (order number, till id), kept in the entry
 *      120    8 reserved2    zero
 *
 * PROGRAM postings carry a struct tally_program_config at offset 32 instead of ref .. reserved2.
 * ------------------------------------------------------------------------------------------- */
struct tally_posting {
    uint8_t id[16];
    uint32_t program;
    uint16_t kind;
    uint16_t flags;
    uint32_t code;
    uint32_t reserved;
    union {
        struct {
            uint8_t ref[16];
            uint64_t account;
            uint64_t account2;
            uint64_t amount;
            uint64_t value;
            uint64_t duration_ms;
            uint8_t user_data[32];
            uint64_t reserved2;
        };
        struct tally_program_config config;
    };
};
_Static_assert(sizeof(struct tally_posting) == 128, "posting is 128 bytes");
_Static_assert(offsetof(struct tally_posting, ref) == 32, "ref at 32");
_Static_assert(offsetof(struct tally_posting, account) == 48, "account at 48");
_Static_assert(offsetof(struct tally_posting, duration_ms) == 80, "duration at 80");
_Static_assert(offsetof(struct tally_posting, user_data) == 88, "user_data at 88");
_Static_assert(offsetof(struct tally_posting, config) == 32, "config at 32");

/* ---------------------------------------------------------------------------------------------
 * struct tally_result: 16 bytes, one per posting, in the order of the batch.
 *
 *   offset size field   meaning
 *        0    4 code    enum tally_result_code
 *        4    4 detail  EXISTS: the original result code; otherwise 0
 *        8    8 seq     sequence number of the first entry the posting produced (0 if none)
 * ------------------------------------------------------------------------------------------- */
struct tally_result {
    uint32_t code;
    uint32_t detail;
    uint64_t seq;
};
_Static_assert(sizeof(struct tally_result) == 16, "result is 16 bytes");

/* ---------------------------------------------------------------------------------------------
 * struct tally_lot_ref: 32 bytes, one lot touched by an entry (its lineage).
 * ------------------------------------------------------------------------------------------- */
struct tally_lot_ref {
    uint64_t lot_id;
    uint64_t expires_at; /* UINT64_MAX: never */
    uint64_t earned_at;
    uint64_t amount; /* points taken from (or restored to, or created in) this lot */
};
_Static_assert(sizeof(struct tally_lot_ref) == 32, "lot ref is 32 bytes");

/* ---------------------------------------------------------------------------------------------
 * struct tally_entry: 176 bytes, followed by tail_size bytes of tail. An entry moves `amount`
 * points from `debit` to `credit` (member ids, or TALLY_SYS_* of the entry's program); what each
 * kind means for buckets, lots and tiers is specified in docs/LEDGER.md ("Entry effects").
 *
 *   offset size field        meaning
 *        0    8 hash         XXH3-64 of bytes [8, 176+tail_size), seeded with the previous entry's
 *                            hash (0 before the first entry): the hash chain
 *        8    8 seq          1, 2, 3, ... without gaps
 *       16    8 timestamp    effective time (the batch's, or the timer's for time-driven entries)
 *       24   16 posting_id   the posting that caused it (zero for time-driven entries)
 *       40    4 program
 *       44    2 kind         enum tally_kind
 *       46    2 flags        enum tally_entry_flag
 *       48    8 debit        account the points leave
 *       56    8 credit       account the points reach
 *       64    8 amount
 *       72    8 value        ACCRUE/CANCEL/REVERSE: qualifying value added or removed;
 *                            TIER_CHANGE: window QV that decided it; CLOSE: the pending part
 *       80    8 ref_seq      entry acted upon (accrual, hold, reversed entry; 0 if none)
 *       88    8 lot_id       ACCRUE / ADJUST+: lot created; TRANSFER: first lot created
 *       96    8 time_a       ACCRUE/ADJUST+: lot expiry; HOLD: timeout; TIER_CHANGE: valid until
 *      104    8 time_b       ACCRUE+PENDING: activation time; TIER_CHANGE: rule version
 *      112    4 code         posting code (ADJUST reason); TIER_CHANGE: enum tally_tier_reason
 *      116    1 tier_from    TIER_CHANGE
 *      117    1 tier_to      TIER_CHANGE
 *      118    2 reserved     zero
 *      120    4 tail_size    bytes after the fixed part: lineage (n x 32) or, for PROGRAM, the
 *                            96-byte configuration
 *      124    4 reserved2    zero
 *      128    8 debit_prev   previous entry of the debit account if it is a member (0: none)
 *      136    8 credit_prev  previous entry of the credit account if it is a member (0: none)
 *      144   32 user_data    copied from the posting
 *
 * debit_prev / credit_prev chain each member's entries newest to oldest: a member's history and
 * its balance at any past time are read by walking this chain back from the account's last_seq,
 * so no separate, randomly-keyed history index has to be written with every posting. (For an
 * entry whose debit and credit are the same member, both links hold the same value.)
 * ------------------------------------------------------------------------------------------- */
struct tally_entry {
    uint64_t hash;
    uint64_t seq;
    uint64_t timestamp;
    uint8_t posting_id[16];
    uint32_t program;
    uint16_t kind;
    uint16_t flags;
    uint64_t debit;
    uint64_t credit;
    uint64_t amount;
    uint64_t value;
    uint64_t ref_seq;
    uint64_t lot_id;
    uint64_t time_a;
    uint64_t time_b;
    uint32_t code;
    uint8_t tier_from;
    uint8_t tier_to;
    uint16_t reserved;
    uint32_t tail_size;
    uint32_t reserved2;
    uint64_t debit_prev;
    uint64_t credit_prev;
    uint8_t user_data[32];
};
_Static_assert(sizeof(struct tally_entry) == 176, "entry is 176 bytes");
_Static_assert(offsetof(struct tally_entry, debit) == 48, "debit at 48");
_Static_assert(offsetof(struct tally_entry, code) == 112, "code at 112");
_Static_assert(offsetof(struct tally_entry, debit_prev) == 128, "debit_prev at 128");
_Static_assert(offsetof(struct tally_entry, user_data) == 144, "user_data at 144");

/* ---------------------------------------------------------------------------------------------
 * struct tally_account: the materialised state of one account (member or system), as stored.
 *
 * Buckets: available (redeemable; negative only if the program allows it), pending (earned, not
 * yet active), held (reserved by active holds). A member's points are available+pending+held; a
 * system account uses available alone, as a signed balance. Over a program, all accounts sum to 0.
 * ------------------------------------------------------------------------------------------- */
enum tally_account_status {
    TALLY_ACCOUNT_STATUS_OPEN = 1,
    TALLY_ACCOUNT_STATUS_CLOSED = 2,
    TALLY_ACCOUNT_STATUS_SYSTEM = 3,
};

struct tally_account {
    uint32_t program;           /*   0 */
    uint32_t status;            /*   4 enum tally_account_status */
    uint64_t member;            /*   8 */
    int64_t available;          /*  16 */
    uint64_t pending;           /*  24 */
    uint64_t held;              /*  32 */
    uint64_t earned;            /*  40 accrued - cancelled - reversed accruals */
    uint64_t redeemed;          /*  48 redeemed + captured - reversed redemptions */
    uint64_t expired;           /*  56 expired + forfeited at close */
    int64_t adjusted;           /*  64 net manual adjustments */
    uint64_t transferred_in;    /*  72 */
    uint64_t transferred_out;   /*  80 */
    uint64_t qv_lifetime;       /*  88 qualifying value, all time (net of reversals) */
    uint64_t opened_at;         /*  96 */
    uint64_t closed_at;         /* 104 0 while open */
    uint64_t tier_valid_until;  /* 112 UINT64_MAX: no end (tier 0, or UP_ONLY) */
    uint32_t tier;              /* 120 */
    uint32_t qv_month;          /* 124 month number (months since 1970-01) of the newest bucket */
    uint64_t qv[TALLY_QV_MONTHS]; /* 128 qualifying value per month, ring indexed month % 12 */
    uint32_t holds_active;      /* 224 */
    uint32_t lots_open;         /* 228 lots stored with the account (points, held or pending) */
    uint64_t last_seq;          /* 232 newest entry touching this account */
};
_Static_assert(sizeof(struct tally_account) == 240, "account record is 240 bytes");

/* A point-in-time balance of a member. */
struct tally_balance {
    uint64_t as_of;     /* the time asked for */
    uint64_t seq;       /* newest entry at or before as_of that touched the account (0: none) */
    int64_t available;
    uint64_t pending;
    uint64_t held;
};

/* A lot, stored with its member's account in soonest-expiring-first order. */
struct tally_lot {
    uint64_t lot_id;
    uint64_t expires_at;  /* UINT64_MAX: never */
    uint64_t earned_at;
    uint64_t origin_seq;  /* entry that created the lot (for a restored lot: the restoring entry) */
    uint64_t amount;      /* points the lot was created with */
    uint64_t remaining;   /* points in the lot, not held: available, or pending */
    uint64_t held;        /* points of the lot reserved by active holds */
    uint64_t activate_at; /* nonzero: the lot is pending until this time */
};
_Static_assert(sizeof(struct tally_lot) == 64, "lot is 64 bytes");

/* Hold status. */
enum tally_hold_status {
    TALLY_HOLD_ACTIVE = 1,
    TALLY_HOLD_CAPTURED = 2,
    TALLY_HOLD_RELEASED = 3,
    TALLY_HOLD_TIMED_OUT = 4,
};

/* Per-program totals: the balances of the system accounts, seen from finance. */
struct tally_program_totals {
    uint32_t program;
    uint32_t tier_count;
    uint64_t members;     /* accounts ever opened */
    uint64_t issued;      /* -(issuance balance): points accrued net of cancels and reversals */
    uint64_t redeemed;    /* redemption balance */
    uint64_t expired;     /* breakage balance */
    int64_t adjusted;     /* -(adjustment balance) */
    int64_t outstanding;  /* sum of member points: the liability */
};

#endif
