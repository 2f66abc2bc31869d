/* audit_fold.h: independent re-derivation of a ledger's state from its entries (tally-audit).
 *
 * audit_verify opens a data directory read-only (straight through LMDB and engine/storage.h, not
 * through the engine's apply logic), walks every entry from seq 1, and checks:
 *   1. the entries are numbered 1..N without gaps and N matches the meta record;
 *   2. the XXH3 hash chain: each entry's hash, and the head stored in meta;
 *   3. the fold: applying each entry's effects (docs/LEDGER.md, "Entry effects") to an in-memory
 *      state gives exactly the programs, holds and reversal records stored in LMDB, and each
 *      entry's debit_prev / credit_prev link to the previous entry of that member account;
 *   4. member images: `members` is written back lazily (storage.h, "Members: write-back and
 *      recovery"), so each stored image is compared with the fold's state of its account right
 *      after the entry the image says it includes last (account.last_seq), which must be an entry
 *      naming that account; and every change before meta.fold_from must be in `members`;
 *   5. double entry: every program's accounts sum to zero;
 *   6. no member's available balance is negative unless its program allows it;
 *   7. the state sum in meta equals the sum recomputed from the fold's final member images and
 *      the stored postings, programs, holds, reversals and timers;
 *   8. every image in `members` and every timer is well formed, and no member has more than
 *      TALLY_LINEAGE_MAX open lots.
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
    uint64_t accounts;      /* member images in `members` compared (system accounts included) */
    uint64_t lots;          /* lots in those images compared */
    uint64_t holds;         /* holds compared */
    uint64_t bad_seq;       /* entry at or after which the first difference shows (0: not tied
                               to one entry) */
    char what[512];         /* the first difference, in one sentence */
    /* Added for the report of tally-audit (appended: the fields above keep their offsets). */
    uint64_t programs;      /* programs compared */
    uint64_t history_rows;  /* always 0: layout version 2 keeps no history rows (the entries'
                               debit_prev / credit_prev links replace them) */
    uint64_t postings;      /* posting records checked */
    uint64_t chain_head;    /* hash of the newest entry: the value to anchor outside the cluster */
    uint64_t fold_from;     /* meta.fold_from: the entries recovery folds from at the next open */
    uint64_t images_behind; /* images in `members` older than their account's newest entry (not
                               written back yet: a crashed or running engine); always 0 after a
                               clean engine_close */
};

/* Returns 0 if the audit ran (see report->ok), or a negative tally error if the directory could
 * not be read as a ledger at all (-ENOENT, TALLY_EVERSION, TALLY_ECORRUPT, -EIO, -ENOMEM). A
 * sub-database opened with other LMDB flags than storage.h gives it is a difference, so that the
 * report can name it. */
int audit_verify(const char *dir, struct audit_report *report);

/* The per-program totals of the logical state, and whether each program sums to zero. The state
 * is the fold of the entries (as audit_verify makes it, without comparing it with the stored
 * records): images in `members` may be older than the entries (storage.h), so they are not read.
 * Fills up to max programs in id order. TALLY_ECORRUPT when the entries cannot be folded (a
 * broken hash chain, an entry the rules refuse: audit_verify says which). */
int audit_trial_balance(const char *dir, struct tally_program_totals *out, bool *balanced,
                        uint32_t max, uint32_t *count);

#endif
