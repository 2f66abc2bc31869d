/* replay.h: a real purchase history (replay_data.h) replayed as postings through a ledger, and
 * the ledger's final state checked against the replay's own model (replay_model.h).
 *
 * What it does
 * ------------
 * replay_run creates one program (replay_program_config), then walks the events in time order
 * and turns them into postings, batch by batch, each batch posted at the events' historical
 * time (tally_client_post_at against a cluster run with `tallyd --clock client`, or
 * engine_apply in process):
 *   - a customer's first event OPENs the member (member id = customer id);
 *   - a PURCHASE of c cents is an ACCRUE of floor(c / 100) points with qualifying value c,
 *     PENDING for the return window (o->pending_ms); below one point nothing is posted (counted);
 *   - a RETURN gives back points in proportion: with r the cents returned of the purchase so
 *     far, the accrual's points reversed become floor(A * r / c); the difference is posted as a
 *     CANCEL (everything, while pending), an ACTIVATE + REVERSE linked chain (a part, while
 *     pending: the ledger reverses active points only), or a REVERSE (after the window);
 *   - after the last event, one more batch (an OPEN of the member after the highest customer id,
 *     "the tick member") at the last event's time + the return window moves the ledger past
 *     every pending window.
 * Every posting's result is compared with the model's prediction as it comes back. Events that
 * share a millisecond (or a window of o->window_ms, if set: the time is rounded down to it) go
 * in one batch (split at TALLY_BATCH_MAX, chains kept whole); one batch is in flight at a time.
 * Then every member's account and lots are read back and compared with the model.
 *
 * Posting ids are deterministic and time-ordered: 48 bits of the batch's time in ms, the low
 * 16 bits of the program id, then a 64-bit counter (big-endian), so a replay re-run against the
 * same ledger is answered EXISTS, never applied twice.
 */
#ifndef TALLY_REPLAY_H
#define TALLY_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "histogram.h"
#include "replay_data.h"
#include "tally_records.h"
#include "tally_results.h"

/* Differences described in a report (the first ones; the rest are counted). */
#define REPLAY_DIFFS_MAX 10u

/* Where postings go and where the state is read back. Each returns 0 or a tally_errors.h code. */
struct replay_sink {
    void *ctx;
    int (*post)(void *ctx, uint64_t at_ms, const struct tally_posting *p, uint32_t n,
                struct tally_result *r);
    int (*account)(void *ctx, uint32_t program, uint64_t member, struct tally_account *out);
    int (*lots)(void *ctx, uint32_t program, uint64_t member, struct tally_lot *out, uint32_t max,
                uint32_t *count);
};

struct replay_options {
    uint32_t program;    /* program id to create */
    uint64_t pending_ms; /* return window of each accrual */
    uint64_t window_ms;  /* 0: batch by exact time; else round times down to this */
    bool progress;       /* a progress line on stderr, once a second */
};

struct replay_report {
    /* the load */
    uint64_t batches, postings, purchases_posted;
    uint64_t by_kind[TALLY_KIND_LIMIT]; /* postings sent, by kind */
    uint64_t purchases_below_point, returns_below_point, returns_of_unposted;
    uint64_t chains;                                    /* ACTIVATE + REVERSE chains */
    uint64_t expected_failures;                         /* postings the model expected to fail */
    uint64_t expected_by_code[TALLY_RESULT_CODE_LIMIT]; /* ... by the result expected */
    uint64_t result_mismatches;
    uint64_t post_errors;                 /* sink errors (the run stops at the first) */
    double post_seconds;                  /* wall time of the posting phase */
    struct hist batch_ns;                 /* latency of each batch */
    uint64_t first_ms, last_ms, final_ms; /* ledger time span of the replay */
    /* the check */
    uint64_t members_checked, members_mismatched, read_errors;
    double check_seconds;
    char diffs[REPLAY_DIFFS_MAX][256];
    uint32_t ndiffs;
    /* time-driven work the model saw */
    uint64_t activations, expiries, expired_points, upgrades, renewals, downgrades;
    uint32_t tier_count[TALLY_TIERS_MAX]; /* members per tier at the end (model) */
    bool ok;
};

/* The program each data set is replayed into (docs/BENCHMARKS.md says why these numbers). */
void replay_program_config(uint32_t set, struct tally_program_config *out);

/* Replay and check. Returns 0 (see report->ok for the verdict) or -ENOMEM / -EINVAL. */
int replay_run(const struct replay_data *d, const struct replay_options *o,
               const struct replay_sink *s, struct replay_report *report);

/* tally-bench --replay ...: the command line (bench/replay_main.c); exit status. */
int replay_main(int argc, char **argv);

#endif
