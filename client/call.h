/* call.h: one request to the cluster, carried until a reply settles it or the deadline passes.
 *
 * call_run() sends one frame and brings back one verified reply whose status the caller must
 * judge (OK, SESSION_EXPIRED, NOT_FOUND, STALE, and the refusals TOO_LARGE, BAD_REQUEST,
 * UNKNOWN_OP, REQUEST_REUSED, BAD_VERSION). Everything else is its own business, and it retries
 * by sending the very same bytes again (docs/PROTOCOL.md section 7: "until a POST's postings
 * have an OK reply, send them again, unchanged"):
 *
 *   NOT_LEADER with an address   connect there at once (a redirect chain longer than the list
 *                                of replicas waits a backoff step first: an election is going on)
 *   NOT_LEADER, leader unknown   the next replica of the list, after a backoff step
 *   BUSY                         the same connection, after a backoff step
 *   BAD_CHECKSUM                 a new connection to the same replica, after a backoff step
 *   INTERNAL                     the next replica, after a backoff step
 *   no reply within CALL_ATTEMPT_MS, or within the deadline
 *                                the next replica (this one may be cut off from the others)
 *   connection refused, reset or closed; a reply that fails any check
 *                                the same replica once more, then the next, backoff each time
 *                                (a kept connection found closed is reopened at once)
 *
 * Backoff is exponential from CALL_BACKOFF_FIRST_MS to CALL_BACKOFF_MAX_MS, with jitter (each
 * step sleeps between half and all of its length), and never sleeps past the deadline.
 *
 * Every reply is verified before anything in it is believed: header checksum, version, flags,
 * status, body size for its operation, body checksum, field rules (common/wire.c), then what only
 * the client can check: the reply answers this client id, this request number and this
 * operation; an OK reply has the body size the caller expects, an index no lower than the read
 * asked for, and no more items on a page than were asked for. A reply that fails is treated as a
 * lost connection: closed, and the request sent again. Only a reply in another protocol version
 * ends the call (TALLY_EVERSION).
 */
#ifndef TALLY_CLIENT_CALL_H
#define TALLY_CLIENT_CALL_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* How long one attempt waits for its reply before the client tries another replica. One second
 * is twenty times the p99 commit latency of a full batch (BRIEF §6: 50 ms), so a loaded but
 * healthy leader is not abandoned; and a leader cut off from the cluster (its connection still
 * open, its replies never coming) is left after one second, about when the others have elected
 * a new one, and well within the default 10 s deadline. A dead leader process needs no timeout:
 * its connections are reset at once. */
#define CALL_ATTEMPT_MS 1000u

/* Backoff between attempts: 5 ms first (a BUSY server drains its queue in a few ms; a new leader
 * is usually known one heartbeat after an election), doubling to 200 ms (so a client waiting out
 * an election asks about five times a second, not hundreds). */
#define CALL_BACKOFF_FIRST_MS 5u
#define CALL_BACKOFF_MAX_MS   200u

/* Consecutive failures at one replica (refused, reset, bad reply) before moving to the next.
 * The first loss of a connection kept from an earlier call counts, but is retried at once,
 * without a backoff step: a server closes idle connections, and that is no sign of trouble. */
#define CALL_FAILS_PER_REPLICA 2u

/* A backstop on the rounds of one call, beyond the deadline: each round sleeps a backoff step
 * or does network I/O, so the deadline ends a call long before this; it only guards against a
 * deadline so far away that a loop bound is the only bound left. */
#define CALL_ROUNDS_MAX (UINT32_C(1) << 20)

struct call {
    /* in */
    uint16_t op;
    uint64_t request;
    const uint8_t *frame; /* header and body, sealed */
    uint32_t frame_size;
    uint64_t deadline_ns;
    uint32_t reply_size; /* the body size an OK reply must have (0: what the operation allows) */
    uint64_t min_index;  /* the least index an OK reply may carry (reads) */
    uint32_t page_max;   /* paged reads: the most items an OK reply's page may hold (0: any) */
    /* in and out: a copy of this POST went out and its fate is unknown: no reply came (timeout,
     * lost connection, bad reply), or NOT_LEADER / INTERNAL answered it (a deposed leader's
     * proposal may still commit). BUSY, BAD_CHECKSUM, SESSION_EXPIRED and the refusals say
     * that copy was not executed, and leave it unchanged. */
    bool maybe_executed;
    /* out */
    bool reached; /* some replica accepted a connection during the call */
    bool sent;    /* the last exchange wrote the whole frame */
    struct tally_wire_header reply;
    const uint8_t *body; /* reply.body_size bytes, valid until the next call */
};

/* Carry k to a settling reply. Returns 0 (k->reply, k->body), or at the deadline TALLY_ETIMEOUT
 * (a replica was reached) or TALLY_ECLOSED (none could be), or TALLY_EVERSION. */
int call_run(struct tally_client *c, struct call *k);

/* One exchange on an open connection, no retry: send k's frame, read and verify the reply into
 * `in` (TALLY_WIRE_FRAME_MAX bytes). Returns 0, TALLY_ETIMEOUT, TALLY_ECLOSED, TALLY_ECORRUPT (a
 * checksum failed), TALLY_EPROTOCOL (a well-sealed reply that does not answer this request) or
 * TALLY_EVERSION. */
int call_exchange(struct conn *cn, uint8_t *in, struct call *k, uint64_t deadline_ns);

/* The two halves of an exchange's checks, for a reply read by other means (the asynchronous
 * POST, tally.c). call_reply_header: the header's, before its body is read (*h decoded): 0,
 * TALLY_EVERSION, TALLY_ECORRUPT or TALLY_EPROTOCOL. call_reply_body: the rest, with the body
 * after the header: 0 (k->reply, k->body set), TALLY_ECORRUPT or TALLY_EPROTOCOL. */
int call_reply_header(const uint8_t *in, struct tally_wire_header *h);
int call_reply_body(struct call *k, const struct tally_wire_header *h, uint8_t *body);

/* Whether a reply's status proves that the copy it answers was not executed. */
bool call_status_refuses(uint16_t status);

#endif
