/* audit_fold.h: independent re-derivation of a ledger's state from its entries (tally-audit).
 *
 * audit_verify opens a data directory read-only (straight through LMDB and engine/storage.h, not
 * through the engine's apply logic), walks every entry from seq 1, and checks:
 *   1. the entries are numbered 1..N without gaps and N matches the meta record;
 *   2. the XXH3 hash chain: each entry's hash, and the head stored in meta;
 *   3. the fold: applying each entry's effects (docs/LEDGER.md, "Entry effects") to an in-memory
 *      state gives exactly the programs, accounts, lots, holds and history stored in LMDB;
 *   4. double entry: every program's accounts sum to zero;
 *   5. no member's available balance is negative unless its program allows it;
 *   6. the state sum in meta equals the sum recomputed by scanning every derived sub-database.
 * It stops at the first difference and says precisely where it is (entry seq, account, lot, field,
 * expected and found values).
 */
#ifndef TALLY_AUDIT_FOLD_H
#define TALLY_AUDIT_FOLD_H

#include <stdbool.h>
#include <stdint.h>

#include "tally_records.h"

struct audit_report {
    bool ok;                /* everything matched */
    uint64_t entries;       /* entries checked */
    uint64_t accounts;      /* accounts compared */
    uint64_t lots;          /* lots compared */
    uint64_t holds;         /* holds compared */
    uint64_t bad_seq;       /* entry at or after which the first difference shows (0: not tied
                               to one entry) */
    char what[512];         /* the first difference, in one sentence */
    /* Added for the report of tally-audit (appended: the fields above keep their offsets). */
    uint64_t programs;      /* programs compared */
    uint64_t history_rows;  /* history rows compared */
    uint64_t postings;      /* posting records checked */
    uint64_t chain_head;    /* hash of the newest entry: the value to anchor outside the cluster */
};

/* Returns 0 if the audit ran (see report->ok), or a negative tally error if the directory could
 * not be read as a ledger at all (-ENOENT, TALLY_EVERSION, TALLY_ECORRUPT, -EIO, -ENOMEM). */
int audit_verify(const char *dir, struct audit_report *report);

/* The per-program totals read from the system accounts, and whether each program sums to zero.
 * Fills up to max programs in id order. */
int audit_trial_balance(const char *dir, struct tally_program_totals *out, bool *balanced,
                        uint32_t max, uint32_t *count);

#endif
