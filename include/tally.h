/* tally.h: libtally, the client library of a tally cluster.
 *
 * What it guarantees
 * ------------------
 * A client posts batches of postings and reads the ledger through any replica of a cluster. It
 * finds the leader by itself (a replica that is not the leader answers NOT_LEADER with the
 * leader's address), and opens one session (a 128-bit client id) in which every POST carries a
 * request number, one request at a time. If an answer does not come (timeout, connection lost,
 * leader changed, BUSY), the client sends the same request, with the same number and the same
 * bytes, again, to whichever replica leads now: the cluster answers a retried request from its
 * replicated reply cache, so a posting takes effect once however many times it was sent.
 * Posting ids (law 4) are the second guard, across sessions and restarts of the client.
 *
 * Every call takes a deadline. A call that returns TALLY_ETIMEOUT did not learn the outcome:
 * the postings may or may not have been applied. tally_client_post_outcome() asks, by posting
 * id, what became of each one; retrying the same POST in the same session is also safe. A
 * client never retries forever on its own.
 *
 * Threading: one struct tally_client per thread (a client holds one connection and one request
 * in flight). Blocking I/O with poll(2) and deadlines; no background threads. A thread may drive
 * many clients with the asynchronous POST (tally_client_post_start, below), each still one
 * request in flight.
 *
 * Errors: 0 or a negative code from tally_errors.h: TALLY_ETIMEOUT, TALLY_ECLOSED (no replica
 * could be reached before the deadline; for a POST also: the session was lost while the request
 * may have been applied), TALLY_EPROTOCOL (the cluster refused the request as malformed),
 * TALLY_EVERSION, TALLY_ETOO_LARGE, TALLY_ENOT_FOUND (queries), TALLY_ESTALE, TALLY_ECONFIG,
 * -ENOMEM; TALLY_EAGAIN only from the asynchronous POST (in flight). Per-posting outcomes are results (tally_results.h), not errors. A reply that fails
 * its checks (checksums, request number, operation, sizes) is treated as a lost connection and
 * the request is sent again. What each return of tally_client_post() says about the postings
 * (committed, rejected, unknown until queried) is docs/PROTOCOL.md, "Client semantics".
 */
#ifndef TALLY_H
#define TALLY_H

#include <stdbool.h>
#include <stdint.h>

#include "tally_errors.h"
#include "tally_records.h"
#include "tally_results.h"

struct tally_client;

struct tally_client_options {
    const char *addresses;   /* "host:port[,host:port...]": any replicas of the cluster */
    uint64_t timeout_ms;     /* deadline of a call that passes 0; 0: TALLY_CLIENT_TIMEOUT_MS */
    uint8_t client_id[16];   /* the session; all zero: a random one */
    const char *label;       /* shown in the server's session list (at most 31 bytes), or NULL */
    bool defer_register;     /* REGISTER at the first POST, not in open: open then needs no
                                leader and no network (status and read-only tools) */
};

#define TALLY_CLIENT_TIMEOUT_MS 10000u

int tally_client_open(struct tally_client **out, const struct tally_client_options *opts);
void tally_client_close(struct tally_client *c);

/* Apply a batch of 1..TALLY_BATCH_MAX postings; results[i] is the outcome of postings[i]. */
int tally_client_post(struct tally_client *c, const struct tally_posting *postings,
                      uint32_t count, struct tally_result *results, uint64_t timeout_ms);

/* The asynchronous POST, for a program that drives many clients from one thread (a load
 * generator, a gateway): tally_client_post without the wait. Exactly the same request, retries
 * and outcomes; only who waits differs.
 *
 * tally_client_post_start sends the batch and returns TALLY_EAGAIN: it is in flight, and
 * results (count entries) must stay valid until it ends. Then, whenever tally_client_fd(c) is
 * readable (poll(2), epoll), and at least every few hundred milliseconds in any case (a reply
 * that never comes is noticed only then), call tally_client_post_finish: TALLY_EAGAIN while the
 * reply is not all in, else the end, as tally_client_post would have returned it. Either call
 * may instead end the POST itself (return 0 or an error, not TALLY_EAGAIN): when anything but
 * an OK reply comes back (a redirect, BUSY, a lost connection, a bad reply, no reply within a
 * second, no connection open yet), the POST is finished by the blocking path of
 * tally_client_post, which may block up to the call's deadline. While a POST is in flight the
 * client takes no other call (TALLY_ECONFIG). POST_AT has no asynchronous form. */
int tally_client_post_start(struct tally_client *c, const struct tally_posting *postings,
                            uint32_t count, struct tally_result *results, uint64_t timeout_ms);
int tally_client_post_finish(struct tally_client *c);

/* The socket of the client's connection (to wait on for an asynchronous POST), or -1. */
int tally_client_fd(const struct tally_client *c);

/* Apply a batch of 1..TALLY_BATCH_MAX postings at ledger time at_ms (ms since the epoch; the wire's
 * POST_AT): for replays of history and drills, on a cluster whose replicas all run with
 * tallyd --clock client. The batch's entry is stamped max(the ledger's time, at_ms): time never
 * goes backwards, so an at_ms at or before the ledger's time (0 included) applies the postings
 * at the ledger's time, and whatever falls due up to the stamp (pending points activating, holds
 * timing out, lots expiring, tier evaluations) happens first, at its due time. Results, retries,
 * exactly-once and every return are those of tally_client_post (docs/PROTOCOL.md, "Client
 * semantics"); sending the same at_ms and postings again after TALLY_ETIMEOUT or TALLY_ECLOSED
 * resends the same request, answered from the session's reply cache. Also returns
 * TALLY_ECONFIG, with nothing applied: at_ms above TALLY_WIRE_AT_MAX (tally_wire.h: 9999-12-31;
 * refused before anything is sent), or the cluster stamps entries with its wall clock
 * (tallyd --clock wall, the default: the server's CLOCK_MODE). */
int tally_client_post_at(struct tally_client *c, uint64_t at_ms,
                         const struct tally_posting *postings, uint32_t count,
                         struct tally_result *results, uint64_t timeout_ms);

/* What became of postings by id, after a POST whose answer was lost (TALLY_ENOT_FOUND for an
 * id the ledger never recorded: it was not applied, or failed validation). */
struct tally_posting_outcome {
    uint32_t code;        /* the result it got (TALLY_OK ...) */
    uint16_t kind;
    uint16_t reserved;
    uint64_t seq;         /* its first entry */
    uint32_t entry_count;
    uint32_t reserved2;
    uint64_t timestamp;
};
int tally_client_post_outcome(struct tally_client *c, const uint8_t id[16],
                              struct tally_posting_outcome *out, uint64_t timeout_ms);

/* Reads. By default linearizable, through the leader. With TALLY_READ_STALE any replica may
 * answer from its own state; *applied_index (if not NULL) says at which Raft index the read was
 * taken, and min_index makes a replica behind it answer TALLY_ESTALE. */
struct tally_read {
    bool stale;
    uint64_t min_index;
    uint64_t applied_index; /* out */
};

int tally_client_account(struct tally_client *c, uint32_t program, uint64_t member,
                         struct tally_account *out, struct tally_read *r);
int tally_client_balance_at(struct tally_client *c, uint32_t program, uint64_t member,
                            uint64_t at, struct tally_balance *out, struct tally_read *r);
int tally_client_history(struct tally_client *c, uint32_t program, uint64_t member,
                         uint64_t before_seq, struct tally_entry *out, uint32_t max,
                         uint32_t *count, struct tally_read *r);
int tally_client_lots(struct tally_client *c, uint32_t program, uint64_t member,
                      struct tally_lot *out, uint32_t max, uint32_t *count, struct tally_read *r);
int tally_client_entry(struct tally_client *c, uint64_t seq, struct tally_entry *out,
                       struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count,
                       struct tally_read *r);
int tally_client_program(struct tally_client *c, uint32_t program,
                         struct tally_program_config *config, struct tally_program_totals *totals,
                         struct tally_read *r);

/* Program ids in id order, strictly after `after` (0: from the first), up to max of them
 * (paged over as many PROGRAMS requests as needed). */
int tally_client_programs(struct tally_client *c, uint32_t after, uint32_t *ids, uint32_t max,
                          uint32_t *count, struct tally_read *r);

/* A hold, by the id of its HOLD posting (the wire's HOLD reply). */
struct tally_hold_info {
    uint64_t seq;          /* the HOLD entry */
    uint32_t program;
    uint32_t status;       /* enum tally_hold_status */
    uint64_t member;
    uint64_t amount;       /* points held at the start */
    uint64_t captured;     /* points captured so far */
    uint64_t timeout_at;   /* when an unresolved hold is released */
    uint64_t resolved_seq; /* the entry that captured, released or timed it out (0: active) */
};
int tally_client_hold(struct tally_client *c, const uint8_t id[16], struct tally_hold_info *out,
                      struct tally_read *r);

/* The Raft index of the entry that carried the last POST answered OK (0: none yet). Pass it as
 * min_index of a stale read to read your own writes from any replica. */
uint64_t tally_client_last_index(const struct tally_client *c);

/* The status of every replica the client was given (role, term, applied index, digest...),
 * asked of each directly; a replica that does not answer gets role UNAVAILABLE and its reason
 * in `error`. Returns 0 if at least one replica answered, TALLY_ECLOSED if none did (out and
 * *count are filled either way). */
struct tally_replica_status {
    char address[64];
    int error;              /* 0, or why it could not be asked */
    uint32_t role;          /* enum tally_wire_role */
    uint64_t replica_id, leader_id, term, commit_index, applied_index, last_timestamp;
    uint64_t entries, chain_head;
    uint8_t digest[16];
};
int tally_client_status(struct tally_client *c, struct tally_replica_status *out, uint32_t max,
                        uint32_t *count, uint64_t timeout_ms);

/* Fetch a whole copy of the ledger (an LMDB data.mdb) from one replica into the file `path`
 * (created or truncated), and fsync it: how a replica catches up (docs/ARCHITECTURE.md), and a
 * way to take a backup over the network. The replicas are asked in the order the client was
 * given them (no leader needed: any replica that has applied min_index will do); BUSY (the copy
 * is being made) is waited out, a replica that is STALE, fails, or loses the connection is left
 * for the next one, and a copy dropped by its replica (NOT_FOUND) is started again. Every chunk
 * is checked as a reply, and the whole file against the copy's XXH3-128 before the call returns.
 * *applied_index: the copy holds at least this applied index (>= min_index); opening it tells
 * the exact one. Returns 0; TALLY_ETIMEOUT at the deadline (the whole copy, not each chunk);
 * TALLY_ECLOSED if no replica could be reached; TALLY_ESTALE if every replica reached was
 * behind min_index; -errno of the local file. */
int tally_client_ledger_copy(struct tally_client *c, const char *path, uint64_t min_index,
                             uint64_t *applied_index, uint64_t timeout_ms);

/* A new time-ordered posting id: 48 bits of milliseconds, then 80 random bits; strictly
 * increasing within one client. */
int tally_client_id(struct tally_client *c, uint8_t out[16]);

#endif
