/* replay_model.h: what the ledger must hold after a replay, computed from the postings alone.
 *
 * What it is
 * ----------
 * An independent implementation of the rules of docs/LEDGER.md for the postings tally-replay
 * sends (OPEN; ACCRUE, pending or not; ACTIVATE; CANCEL; REVERSE of an accrual) and for the work
 * time does (pending activation, lot expiry, tier upgrade and evaluation), for one program with
 * a rolling or calendar window, any tier mode and the DAYS, MONTH or NONE expiry policies in UTC.
 * It predicts each posting's result code, and at the end every member's buckets, lifetime
 * totals, qualifying value, tier and open lots, to be compared with what the cluster answers.
 *
 * It is written from the document, not from engine/: it calls no engine function and shares no
 * code with it (its calendar is libc's timegm/gmtime_r). Where the document left a detail open,
 * the engine was read and the rule is stated in docs/BENCHMARKS.md ("Replay of real purchase
 * histories", "Rules confirmed in the engine").
 *
 * How time works here: members do not interact (no transfers), so a member's due work (an
 * activation, an expiry, a tier evaluation) is run lazily, in time order, when the member is
 * next touched by a posting of a batch at time T (everything due at or before T, as the engine
 * runs every due timer at the start of a batch), and for every member by replay_model_finish.
 *
 * Limits: members are 1 .. members_max (an array slot each); a member holds at most
 * TALLY_LINEAGE_MAX open lots (the ledger's bound: one more accrual is LOTS_LIMIT).
 */
#ifndef TALLY_REPLAY_MODEL_H
#define TALLY_REPLAY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "tally_records.h"

struct replay_model;

/* One accrual, as the model knows it (its index is the handle replay_model_accrue returns). */
struct model_accrual {
    uint64_t member;
    uint64_t amount, value;            /* points and qualifying value accrued */
    uint64_t at_ms;                    /* effective time of the ACCRUE entry */
    uint64_t lot;                      /* the lot it created (model lot number, creation order) */
    uint64_t reversed, reversed_value; /* reversal record: points and QV taken back so far */
};

/* A member's expected state: the fields of struct tally_account the replay compares, and its
 * open lots soonest-expiring first (lot_id is the model's creation number, not the engine's). */
struct model_member_view {
    bool open;
    uint64_t opened_at;
    int64_t available;
    uint64_t pending, earned, expired, qv_lifetime;
    uint32_t tier, qv_month;
    uint64_t tier_valid_until;
    uint64_t qv[TALLY_QV_MONTHS];
    uint32_t lots_open;
    const struct tally_lot *lots;
};

int replay_model_create(struct replay_model **out, const struct tally_program_config *config,
                        uint64_t members_max);
void replay_model_destroy(struct replay_model *m);

/* A batch starts at time at_ms: the model's time becomes max(its time, at_ms). Returns it. */
uint64_t replay_model_batch(struct replay_model *m, uint64_t at_ms);

/* Each returns the result code (enum tally_result_code) the ledger must give the posting, and
 * applies its effects if that is TALLY_OK. */
uint32_t replay_model_open(struct replay_model *m, uint64_t member);
/* *accrual: the handle of the new accrual (UINT32_MAX if it failed). pending_ms 0: not pending. */
uint32_t replay_model_accrue(struct replay_model *m, uint64_t member, uint64_t amount,
                             uint64_t value, uint64_t pending_ms, uint32_t *accrual);
uint32_t replay_model_activate(struct replay_model *m, uint32_t accrual);
uint32_t replay_model_cancel(struct replay_model *m, uint32_t accrual);
uint32_t replay_model_reverse(struct replay_model *m, uint32_t accrual, uint64_t amount);

/* Whether the accrual's lot is still pending now (its member's due work run first). */
bool replay_model_is_pending(struct replay_model *m, uint32_t accrual);
const struct model_accrual *replay_model_accrual(const struct replay_model *m, uint32_t accrual);

/* Run every member's work due at or before the model's time (after the last batch). */
void replay_model_finish(struct replay_model *m);

/* A member's expected state (open = false if never opened). Valid until the next call. */
void replay_model_member(struct replay_model *m, uint64_t member, struct model_member_view *out);

/* Counters of time-driven work the model saw (to say what the replay exercised). */
struct model_counts {
    uint64_t activations, expiries, expired_points, upgrades, renewals, downgrades;
};
void replay_model_counts(const struct replay_model *m, struct model_counts *out);

#endif
