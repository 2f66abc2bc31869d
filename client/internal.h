/* internal.h: the inside of struct tally_client, shared by the files of libtally.
 *
 *   addr.c    replica addresses as text
 *   conn.c    one TCP connection with deadlines
 *   call.c    one request until a reply that settles it: leader finding, retries, backoff,
 *             reply verification
 *   tally.c   the session (open, REGISTER, SESSION_EXPIRED), POST, ids
 *   reads.c   queries and STATUS
 *
 * Invariants: at most one connection is open (c->conn) and at most one request is outstanding
 * on it: a call that gives up on a reply closes the connection, so a late reply can never be
 * taken for the answer to a later request. c->post holds the frame of the last POST whose
 * outcome the caller has not learned; reads and REGISTER build their frames elsewhere, so that
 * frame survives them byte for byte. While an asynchronous POST is in flight (c->async.active,
 * from tally_client_post_start until a finish that does not return TALLY_EAGAIN) its request is
 * the one outstanding, and every other call that would send a frame is refused (TALLY_ECONFIG)
 * before it touches c->post, c->in or c->conn: client_post, read_run, STATUS, the ledger copy.
 */
#ifndef TALLY_CLIENT_INTERNAL_H
#define TALLY_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "conn.h"
#include "ids.h"
#include "tally.h"
#include "tally_wire.h"

/* The slot of c->addrs that holds a leader address learned from NOT_LEADER when it is not one
 * of the addresses the caller gave (a replica added since, or another spelling of one). */
#define CLIENT_SLOT_REDIRECT ADDR_LIST_MAX

/* The POST whose outcome the caller has not learned yet (after TALLY_ETIMEOUT or TALLY_ECLOSED).
 * A later tally_client_post() with the very same postings sends this frame again, under the same
 * request number, so the session's reply cache answers it instead of the ledger's id index. */
struct client_pending {
    bool valid;
    bool maybe_executed; /* a copy went out whose fate is unknown (see call.h) */
    uint16_t op;         /* POST, or POST_AT (its body starts with the ledger time) */
    uint64_t request;
    uint32_t body_size;
};

/* An asynchronous POST in flight (tally.c, "The asynchronous POST"): its frame is c->post, its
 * reply comes into c->in as it arrives. */
struct client_async {
    bool active;
    uint32_t count;               /* postings */
    uint32_t have;                /* bytes of the reply read so far */
    struct tally_wire_header header; /* the reply's, decoded and checked once it is in */
    uint64_t deadline_ns;         /* the call's */
    uint64_t attempt_ns;          /* this copy's: CALL_ATTEMPT_MS after it was sent */
    struct tally_result *results; /* the caller's, filled by an OK reply */
};

struct tally_client {
    struct addr addrs[ADDR_LIST_MAX + 1]; /* the caller's list, then CLIENT_SLOT_REDIRECT */
    uint32_t addr_count;
    uint32_t target; /* slot the next connection goes to */
    uint32_t rotor;  /* position in the caller's list that rotation moves on from */
    struct conn conn;

    uint8_t client_id[16];
    char label[TALLY_WIRE_LABEL_SIZE];
    uint8_t cluster_id[16];
    bool cluster_known;
    bool registered; /* REGISTER answered at least once (tally_client_open, or first POST) */
    uint64_t timeout_ms;
    uint32_t batch_max;    /* postings per POST: TALLY_BATCH_MAX, or less if the server says so */
    uint64_t next_request; /* the next request number; REGISTER is 0 */
    uint64_t last_index;   /* the index of the last POST answered OK */
    uint64_t rng;          /* xorshift state for backoff jitter (not for ids) */
    struct ids ids;

    struct client_pending pending;
    struct client_async async;
    uint8_t *post; /* POST or POST_AT frame: header, [at prefix,] postings; FRAME_MAX bytes */
    uint8_t *in;   /* the last reply: header and body, TALLY_WIRE_FRAME_MAX bytes */
};

/* The deadline of a call given timeout_ms (0: the client's default). */
uint64_t client_deadline(const struct tally_client *c, uint64_t timeout_ms);

/* REGISTER (again): learn the session's last_request and resume numbering after it. */
int client_register(struct tally_client *c, uint64_t deadline_ns, uint64_t *last_request);

#endif
