/* tally_errors.h: system error codes, the failures of the machine rather than of a posting.
 *
 * Every function of tally that can fail returns an int: 0 on success, a negative number on failure.
 * A failure is either a negated errno (-ENOMEM, -EIO, -ENOSPC, ...; values -1 .. -4095) or one of the
 * project's own codes below, which live in their own band (-30900 ..) so they never collide with
 * errno or with LMDB's band (-30800 .. -30780). Foreign codes (MDB_*, RAFT_*) are translated into one
 * of these at one boundary each and never escape it.
 *
 * Business outcomes of postings ("insufficient points") are not errors: see tally_results.h.
 */
#ifndef TALLY_ERRORS_H
#define TALLY_ERRORS_H

/* X(name, value, message) */
#define TALLY_ERRORS(X)                                                                           \
    X(CORRUPT, -30900, "data is corrupt (checksum or structure mismatch)")                       \
    X(VERSION, -30901, "unsupported on-disk or wire format version")                              \
    X(DIVERGED, -30902, "replica state diverged from the cluster (hash chain mismatch)")          \
    X(TOO_LARGE, -30903, "request or batch larger than the allowed maximum")                      \
    X(NOT_FOUND, -30904, "no such record")                                                        \
    X(TIMEOUT, -30905, "deadline passed before an answer arrived")                                \
    X(NOT_LEADER, -30906, "this replica is not the leader")                                       \
    X(BUSY, -30907, "server is at its in-flight limit: retry later")                              \
    X(PROTOCOL, -30908, "malformed frame or reply")                                               \
    X(CLOSED, -30909, "connection or handle is closed")                                           \
    X(CONFIG, -30910, "invalid configuration or argument")                                        \
    X(MAP_LIMIT, -30911, "LMDB map reached its configured maximum size")                          \
    X(STALE, -30912, "applied index is behind the requested one")                                  \
    X(AGAIN, -30913, "request in flight: its reply has not come yet")

enum tally_error {
#define TALLY_ERROR_ENUM_(name, value, message) TALLY_E##name = value,
    TALLY_ERRORS(TALLY_ERROR_ENUM_)
#undef TALLY_ERROR_ENUM_
};

/* A message for any return code of tally: 0, a negated errno, or a TALLY_E* code. */
const char *tally_strerror(int rc);

#endif
