/* tally_results.h: the per-posting result codes, the business outcomes of a posting.
 *
 * A result code says what became of one posting. It is not an error of the system: a batch whose
 * postings all fail for business reasons is still a batch that was applied, replicated and
 * acknowledged. System errors (I/O, out of memory, corruption) are in tally_errors.h.
 *
 * The numbers are part of the wire protocol and of the on-disk posting records: never renumber,
 * only append. Each code says whether it is decided by the posting's bytes alone (a "validation"
 * result: the same bytes always get the same answer, so the engine does not record the id) or by
 * the ledger's state (the id is recorded with its result and stays failed forever: BRIEF law 4).
 *
 *   name                    value  recorded  meaning
 */
#ifndef TALLY_RESULTS_H
#define TALLY_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

/* X(name, value, recorded, message) */
#define TALLY_RESULTS(X)                                                                          \
    X(OK, 0, true, "applied")                                                                     \
    X(EXISTS, 1, false, "already applied with the same body: the original outcome is in detail") \
    /* validation: decided by the posting bytes alone, never recorded */                          \
    X(ID_ZERO, 2, false, "posting id must not be zero")                                           \
    X(KIND_INVALID, 3, false, "unknown posting kind, or a kind only the ledger may create")       \
    X(FLAGS_INVALID, 4, false, "flag not allowed for this kind")                                  \
    X(RESERVED_NONZERO, 5, false, "reserved bytes must be zero")                                  \
    X(PROGRAM_ZERO, 6, false, "program id must not be zero")                                      \
    X(ACCOUNT_INVALID, 7, false, "member id is zero or in the system range")                      \
    X(AMOUNT_ZERO, 8, false, "amount must not be zero for this kind")                             \
    X(AMOUNT_TOO_LARGE, 9, false, "amount or value above TALLY_AMOUNT_MAX")                       \
    X(FIELD_NOT_ALLOWED, 10, false, "a field is set that this kind does not use")                 \
    X(REF_ZERO, 11, false, "this kind needs a referenced posting id")                             \
    X(SAME_ACCOUNT, 12, false, "transfer source and destination are the same member")             \
    X(CONFIG_INVALID, 13, false, "program configuration is not valid")                            \
    X(DURATION_INVALID, 14, false, "duration out of range for this kind")                         \
    /* state-dependent: recorded, the id stays failed */                                          \
    X(ID_EXISTS_DIFFERENT, 20, false, "id already used by a posting with a different body")       \
    X(PROGRAM_EXISTS, 21, true, "program already exists")                                         \
    X(PROGRAM_NOT_FOUND, 22, true, "no such program")                                             \
    X(ACCOUNT_EXISTS, 23, true, "member account already open in this program")                    \
    X(ACCOUNT_NOT_FOUND, 24, true, "no such member account in this program")                      \
    X(ACCOUNT_CLOSED, 25, true, "member account is closed")                                       \
    X(INSUFFICIENT_POINTS, 26, true, "not enough available points")                               \
    X(REF_NOT_FOUND, 27, true, "referenced posting does not exist")                               \
    X(REF_WRONG_KIND, 28, true, "referenced posting is of a kind this posting cannot act on")     \
    X(REF_FAILED, 29, true, "referenced posting did not succeed")                                 \
    X(REF_ACCOUNT_MISMATCH, 30, true, "referenced posting belongs to another account")            \
    X(NOT_PENDING, 31, true, "accrual is not pending (already active or cancelled)")              \
    X(REF_PENDING, 32, true, "accrual is still pending: cancel it instead")                       \
    X(HOLD_NOT_ACTIVE, 33, true, "hold already captured, released or timed out")                  \
    X(EXCEEDS_HOLD, 34, true, "capture amount exceeds the held amount")                           \
    X(EXCEEDS_ORIGINAL, 35, true, "reversal exceeds what remains of the original")                \
    X(ACCOUNT_HAS_HOLDS, 36, true, "account has active holds: capture or release them first")     \
    X(OVERFLOW, 37, true, "a balance or total would overflow")                                    \
    X(LOTS_LIMIT, 38, true, "more than TALLY_LINEAGE_MAX lots in one entry or open in one member") \
    /* linked chains: decided by another posting of the chain, never recorded */                  \
    X(LINKED_EVENT_FAILED, 40, false, "another posting of the linked chain failed")               \
    X(LINKED_CHAIN_OPEN, 41, false, "linked chain not closed by the end of the batch")

enum tally_result_code {
#define TALLY_RESULT_ENUM_(name, value, recorded, message) TALLY_##name = value,
    TALLY_RESULTS(TALLY_RESULT_ENUM_)
#undef TALLY_RESULT_ENUM_
};

/* Largest result code value + 1: sizes tables indexed by code. */
#define TALLY_RESULT_CODE_LIMIT 42

/* The message for a result code ("unknown result" for a value not in the list). */
const char *tally_result_str(uint32_t code);

/* The symbolic name of a result code, e.g. "INSUFFICIENT_POINTS" (NULL if unknown). */
const char *tally_result_name(uint32_t code);

/* Parse a symbolic name back into a code; returns false if unknown. */
bool tally_result_parse(const char *name, uint32_t *code);

/* Whether a failed posting's id is recorded with its result (state-dependent failures). */
bool tally_result_recorded(uint32_t code);

#endif
