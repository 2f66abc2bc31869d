/* workload.h: a deterministic generator of retail loyalty postings, for the benchmarks.
 *
 * What it produces
 * ----------------
 * One program with N members: first a setup (the PROGRAM posting, then N OPEN postings in
 * batches), then an endless stream of batches that look like the traffic of a retail chain:
 * accruals on purchases (some pending for a 7-day return window), redemptions at checkout,
 * two-phase checkouts (HOLD, then CAPTURE of all or part, or RELEASE; a few holds are abandoned
 * and left to time out), returns (REVERSE of an accrual or a redemption, in full or in part, and
 * CANCEL of a pending accrual inside its window), transfers between members and manual
 * adjustments. docs/BENCHMARKS.md gives the exact mix and why.
 *
 * Members are drawn from a Zipf-Mandelbrot law, P(rank k) ~ 1/(k+q)^s, with s = 1 and
 * q = N/50 by default: the top 1% / 10% / 50% of members then draw 10% / 46% / 83% of the
 * draws, as in the real purchase histories of data/retail/ (CDNOW: 11% / 41% / 83% of the
 * purchases; UCI Online Retail: 13% / 43% / 85% of the invoices). A pure Zipf law (q = 0)
 * would give the busiest member 7% of all traffic. Ranks are scattered over the member ids by a
 * fixed permutation, so hot members are not neighbours in the ledger's key space. A draw costs
 * O(1) (rejection-inversion, no table).
 *
 * The generator keeps an estimate of every member's available points (8 bytes a member) so
 * that redemptions, holds, transfers and negative adjustments ask for amounts the member most
 * likely has, and the bulk of postings succeed, as in a real shop. The estimate is approximate
 * on purpose (it ignores pending points, partial expiry and timed-out holds); a caller that sees
 * the results can feed them back with workload_observe() so that a rejection corrects it.
 *
 * What it guarantees
 * ------------------
 * The same options (seed included) give the same postings, byte for byte, on every machine, as
 * long as the same results are fed back (or none are). Posting ids are unique and time-ordered:
 * 48 bits of simulated milliseconds (minus a small per-till clock skew), the 16-bit instance
 * number of the generator, 16 pseudo-random bits, then a 48-bit counter. Simulated time advances
 * with every posting (by default one simulated hour per 8,190 postings), so that pending
 * activation, hold timeouts, lot expiry and tier evaluation happen inside a benchmark of a few
 * million postings.
 *
 * What it does not do
 * -------------------
 * It knows nothing of the engine (it uses the records and result codes of include/ only) and
 * never reads a clock or a random device: the network benchmark reuses it unchanged. It is not
 * thread-safe (use one generator per thread, each with its own instance number). Memory is
 * allocated once, by workload_init, and bounded: per-member state, fixed rings of earlier
 * postings that later postings refer to or re-send, and one record per posting of the last
 * batch.
 */
#ifndef TALLY_WORKLOAD_H
#define TALLY_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "tally_records.h"

/* ---------------------------------------------------------------------------------------------
 * Limits and defaults.
 * ------------------------------------------------------------------------------------------- */

/* Most members the generator can simulate: it keeps 8 bytes per member (800 MB at this limit),
 * and the rank-to-member permutation multiplies two numbers below 2^32 in 64 bits. */
#define WORKLOAD_MEMBERS_MAX UINT64_C(100000000)

/* Default population: a large chain's active members. */
#define WORKLOAD_MEMBERS_DEFAULT UINT64_C(1000000)

/* Time compression: postings that make one simulated hour. 8,190 (one full batch an hour)
 * brings a 7-day pending window, 3-hour hold timeouts, 30-day expiry and month-start tier
 * evaluation inside a run of ~10 million postings (about 51 simulated days). */
#define WORKLOAD_POSTINGS_PER_HOUR_DEFAULT 8190u

/* Simulated start: 2026-01-20T00:00:00Z. Late in a month, so that the first monthly tier
 * evaluation (1 March, for January's upgrades) falls inside a standard run. */
#define WORKLOAD_START_MS_DEFAULT UINT64_C(1768867200000)

/* Rings of earlier postings that later postings refer to. Returns pick from a sample of
 * recent accruals and redemptions (one in WORKLOAD_REFS_SAMPLE is kept): 65,536 refs at a
 * sample of 1/8 cover the last ~80 simulated hours at the default rate, so a return comes from
 * a purchase made up to ~3 days earlier. Holds wait in their ring until they are resolved. */
#define WORKLOAD_REFS_MAX    65536u
#define WORKLOAD_REFS_SAMPLE 8u
#define WORKLOAD_HOLDS_MAX   65536u
/* Postings kept to be sent again as retries (a 1-in-64 sample: the last ~8 batches). */
#define WORKLOAD_RECENT_MAX 1024u

/* ---------------------------------------------------------------------------------------------
 * Options.
 * ------------------------------------------------------------------------------------------- */
struct workload_options {
    uint64_t seed;              /* any value; the same seed gives the same postings */
    uint64_t members;           /* 2 .. WORKLOAD_MEMBERS_MAX; member ids are 1 .. members */
    uint32_t program;           /* program id, nonzero */
    uint32_t postings_per_hour; /* time compression: postings per simulated hour, >= 1 */
    uint64_t start_ms;          /* simulated time of the setup */
    double zipf_exponent;       /* s, > 0 (default 1.0) */
    double zipf_offset;         /* q as a fraction of members, >= 0 (default 0.02) */
    uint16_t instance;          /* generators sending to one ledger need distinct instances */
};

void workload_options_default(struct workload_options *o);

/* ---------------------------------------------------------------------------------------------
 * State. Callers allocate struct workload and treat every field as read-only except stats.
 * ------------------------------------------------------------------------------------------- */

/* xoshiro256** state (seeded by splitmix64). */
struct workload_rng {
    uint64_t s[4];
};

/* Zipf-Mandelbrot sampler over ranks 1..n by rejection-inversion (Hoermann and Derflinger,
 * "Rejection-inversion to generate variates from monotone discrete distributions", 1996). */
struct workload_zipf {
    uint64_t n;
    double exponent;
    double offset; /* q, a whole number */
    double u_low;  /* H(q + 1.5) - h(q + 1): the first rank's region starts here */
    double u_high; /* H(q + n + 0.5) */
};

/* An earlier accrual or redemption that a return may reverse (or cancel). */
struct workload_ref {
    uint8_t id[16];
    uint64_t member;
    uint64_t amount_left; /* points not reversed yet; 0: not usable any more */
    uint64_t created_ms;
    uint64_t push;    /* the ring's push count when stored: tells a reused slot apart */
    uint16_t kind;    /* TALLY_KIND_ACCRUE or TALLY_KIND_REDEEM */
    uint16_t pending; /* the accrual was pending */
    uint32_t reserved;
};

/* A hold waiting for its CAPTURE or RELEASE. */
struct workload_hold {
    uint8_t id[16];
    uint64_t member;
    uint64_t amount;
    uint64_t due_us; /* simulated time at which the till resolves it */
    uint64_t push;
    bool dead; /* the HOLD was rejected: nothing to resolve */
};

/* What one posting of the last batch did to the estimates, so that a rejection can undo it. */
struct workload_undo {
    uint16_t kind;
    uint8_t ring;          /* 0: none, 1: refs ring, 2: holds ring */
    uint8_t expect_reject; /* made to be rejected: a rejection teaches nothing */
    uint32_t slot;
    uint64_t push;
    uint64_t member;
    int64_t delta; /* added to member's estimate */
    uint64_t member2;
    int64_t delta2; /* added to member2's estimate */
};

/* What the generator believes of one member: 8 bytes, so that one cache miss serves a draw. */
struct workload_member {
    int32_t points;    /* estimated available points, >= 0 (capped at INT32_MAX) */
    uint32_t last_day; /* simulated day of the last credit that made a lot, plus 1 (0: none) */
};

/* Counters of what was generated (results are the caller's to count). */
struct workload_stats {
    uint64_t postings;                  /* stream postings (setup excluded) */
    uint64_t batches;                   /* stream batches */
    uint64_t by_kind[TALLY_KIND_LIMIT]; /* stream postings per kind */
    uint64_t pending_accruals;
    uint64_t partial_reversals;
    uint64_t partial_captures;
    uint64_t holds_abandoned; /* left to time out (by choice, or the ring was full) */
    uint64_t fallbacks;       /* draws that found no member with points and became accruals */
    uint64_t overspends;      /* REDEEM or HOLD of more than the member has, on purpose */
    uint64_t unknown_cards;   /* ACCRUE for a member never opened, on purpose */
    uint64_t retries;         /* a recent posting sent again, byte for byte */
    uint64_t observed_rejections;
};

struct workload {
    struct workload_options opts;
    struct workload_rng rng;
    struct workload_zipf zipf;
    uint64_t permute_mul; /* rank -> member: 1 + (rank-1) * permute_mul mod members */

    struct workload_member *member; /* [members + 1], index 0 unused */

    struct workload_ref *refs; /* WORKLOAD_REFS_MAX */
    uint64_t refs_pushed;
    struct workload_hold *holds; /* WORKLOAD_HOLDS_MAX, FIFO by due time */
    uint64_t holds_head;         /* pops so far */
    uint64_t holds_tail;         /* pushes so far */

    struct workload_undo *undo;   /* TALLY_BATCH_MAX: the last batch */
    struct tally_posting *recent; /* WORKLOAD_RECENT_MAX: a sample of postings, for retries */
    uint64_t recent_pushed;
    uint32_t undo_count;

    uint64_t setup_opened; /* members opened so far by the setup */
    bool setup_program_done;
    uint64_t id_counter;     /* low 48 bits of every id */
    uint64_t clock_postings; /* stream postings so far: the simulated clock */
    uint64_t last_batch_ms;  /* timestamp of the newest batch */
    uint64_t order_number;

    struct workload_stats stats;
};

/* Allocate and seed. Returns 0, -EINVAL (option out of range), or -ENOMEM. */
int workload_init(struct workload *w, const struct workload_options *opts);
void workload_deinit(struct workload *w);

/* The program's configuration used by the setup (30-day rolling expiry, 4 tiers on a rolling
 * 12-month window, one-step downgrades, UTC+8, and a hold timeout of three full-batch spans:
 * 3 simulated hours by default). */
void workload_program_config(const struct workload *w, struct tally_program_config *config);

/* The next setup batch: the PROGRAM posting alone, then OPEN postings, up to max (1 ..
 * TALLY_BATCH_MAX) per batch. *count = 0 once the setup is complete. Returns 0, or -EINVAL. */
int workload_setup_batch(struct workload *w, struct tally_posting *out, uint32_t max,
                         uint32_t *count, uint64_t *timestamp);

/* Mark the setup as done without generating it: for a second generator (another instance
 * number, another seed) sending to a ledger whose program and members another one created.
 * Each generator then knows only its own postings' effect on balances, so expect more
 * INSUFFICIENT_POINTS than with one generator. */
void workload_setup_skip(struct workload *w);

/* The next stream batch: exactly max postings (1 .. TALLY_BATCH_MAX), and the batch timestamp
 * (the simulated time of its last posting, never below the previous batch's). Call only after
 * the setup is complete. Returns 0, or -EINVAL. */
int workload_next_batch(struct workload *w, struct tally_posting *out, uint32_t max,
                        uint32_t *count, uint64_t *timestamp);

/* Optional feedback: the results of the batch last returned by workload_next_batch, in order
 * (count must equal that batch's count). A rejected posting's effect on the estimates is undone
 * and the postings it would have made referable are forgotten. Returns 0, or -EINVAL. */
int workload_observe(struct workload *w, const struct tally_result *results, uint32_t count);

/* The member id of a Zipf rank (1 = the busiest member). */
uint64_t workload_member_of_rank(const struct workload *w, uint64_t rank);

/* One draw of a member rank (1 .. members): exposed for tests and for the benchmark's report. */
uint64_t workload_draw_rank(struct workload *w);

/* Nearest-rank percentile p (0 < p <= 1) of sorted[0..n); 0 if n is 0. Shared by both
 * benchmarks, so their latency figures mean the same thing. */
uint64_t bench_percentile(const uint64_t *sorted, uint64_t n, double p);

#endif
