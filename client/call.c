/* call.c: one request until a reply settles it (see call.h for the rules).
 *
 * Design notes
 * ------------
 * The loop owns c->conn: it opens a connection to c->addrs[c->target] when none is open and
 * closes it whenever the outcome of an exchange is not a reply it can trust, so a connection
 * never carries a stale reply into a later request (internal.h). The frame is built once by
 * the caller and only ever re-sent, never rebuilt: "the same request" is the same bytes.
 *
 * Where to go next is three fields: target (the slot the next connection goes to), rotor (the
 * position in the caller's list that moving on starts from) and the redirect slot. A NOT_LEADER
 * that names an address points target at it (found in the list, or put in the redirect slot);
 * moving on goes to the list position after rotor, so a dead redirect target is left for the
 * caller's own list.
 */
#include "call.h"

#include <string.h>

static uint32_t call_random(struct tally_client *c)
{
    /* xorshift64: jitter only, seeded from the client id (tally.c). */
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return (uint32_t)(x >> 32);
}

/* Sleep the next backoff step: between half and all of it, never past the deadline. */
static void call_backoff(struct tally_client *c, uint32_t *step_ms, uint64_t deadline_ns)
{
    if (*step_ms == 0)
        *step_ms = CALL_BACKOFF_FIRST_MS;
    else
        *step_ms = *step_ms * 2 < CALL_BACKOFF_MAX_MS ? *step_ms * 2 : CALL_BACKOFF_MAX_MS;
    uint32_t half = *step_ms / 2;
    conn_sleep_ms(half + call_random(c) % (*step_ms - half + 1), deadline_ns);
}

static void call_move_on(struct tally_client *c)
{
    c->rotor = (c->rotor + 1) % c->addr_count;
    c->target = c->rotor;
}

/* Follow a NOT_LEADER body. Returns false when it names no usable leader, or the replica that
 * just said it is not the leader. */
static bool call_redirect(struct tally_client *c, const uint8_t *body)
{
    struct tally_wire_not_leader nl;
    struct addr a;
    memcpy(&nl, body, sizeof(nl));
    if (addr_from_wire(nl.leader_address, &a) != 0)
        return false;
    if (strcmp(a.text, c->conn.peer.text) == 0)
        return false;
    for (uint32_t i = 0; i < c->addr_count; i++) {
        if (strcmp(c->addrs[i].text, a.text) == 0) {
            c->target = i;
            c->rotor = i;
            return true;
        }
    }
    c->addrs[CLIENT_SLOT_REDIRECT] = a;
    c->target = CLIENT_SLOT_REDIRECT;
    return true;
}

/* Whether a reply that passed the wire checks answers k. */
static bool call_reply_matches(const struct call *k, const struct tally_wire_header *h,
                               const uint8_t *body)
{
    /* A reply to a request header the server could not trust concerns the connection: op,
     * client id and request are zero (docs/PROTOCOL.md section 5). */
    if ((h->status == TALLY_WIRE_BAD_CHECKSUM || h->status == TALLY_WIRE_BAD_VERSION) &&
        h->op == 0 && h->request == 0)
        return true;
    struct tally_wire_header sent;
    memcpy(&sent, k->frame, sizeof(sent));
    if (h->request != k->request || h->op != k->op)
        return false;
    if (memcmp(h->client_id, sent.client_id, sizeof(sent.client_id)) != 0)
        return false;
    if (h->status != TALLY_WIRE_OK)
        return true;
    if (k->reply_size != 0 && h->body_size != k->reply_size)
        return false;
    if (k->page_max != 0) {
        struct tally_wire_page p; /* present: the wire checks fitted the body to a page */
        memcpy(&p, body, sizeof(p));
        if (p.count > k->page_max)
            return false;
    }
    return h->index >= k->min_index;
}

int call_reply_header(const uint8_t *in, struct tally_wire_header *h)
{
    enum tally_wire_fault f =
        tally_wire_header_decode(h, in, TALLY_WIRE_HEADER_SIZE, TALLY_WIRE_TO_CLIENT);
    if (f == TALLY_WIRE_FAULT_BAD_VERSION)
        return TALLY_EVERSION;
    if (f != TALLY_WIRE_FAULT_NONE)
        return TALLY_ECORRUPT;
    if (tally_wire_body_size_check(h) != TALLY_WIRE_FAULT_NONE)
        return TALLY_EPROTOCOL; /* decided before reading a body of the wrong size */
    return 0;
}

int call_reply_body(struct call *k, const struct tally_wire_header *h, uint8_t *body)
{
    if (tally_wire_body_verify(h, body) != TALLY_WIRE_FAULT_NONE)
        return TALLY_ECORRUPT;
    if (tally_wire_reply_check(h, body) != TALLY_WIRE_FAULT_NONE ||
        !call_reply_matches(k, h, body))
        return TALLY_EPROTOCOL;
    k->reply = *h;
    k->body = body;
    return 0;
}

int call_exchange(struct conn *cn, uint8_t *in, struct call *k, uint64_t deadline_ns)
{
    k->sent = false;
    int rc = conn_send(cn, k->frame, k->frame_size, deadline_ns);
    if (rc != 0)
        return rc;
    k->sent = true;
    if ((rc = conn_recv(cn, in, TALLY_WIRE_HEADER_SIZE, deadline_ns)) != 0)
        return rc;
    struct tally_wire_header h;
    if ((rc = call_reply_header(in, &h)) != 0)
        return rc;
    uint8_t *body = in + TALLY_WIRE_HEADER_SIZE;
    if ((rc = conn_recv(cn, body, h.body_size, deadline_ns)) != 0)
        return rc;
    return call_reply_body(k, &h, body);
}

/* Whether a status proves that the copy it answers was not executed. */
bool call_status_refuses(uint16_t status)
{
    return status != TALLY_WIRE_OK && status != TALLY_WIRE_NOT_LEADER &&
           status != TALLY_WIRE_INTERNAL;
}

int call_run(struct tally_client *c, struct call *k)
{
    uint32_t step_ms = 0, fails = 0, hops = 0;
    bool wait = false;
    k->reached = false;
    for (uint32_t round = 0; round < CALL_ROUNDS_MAX; round++) {
        if (wait)
            call_backoff(c, &step_ms, k->deadline_ns);
        wait = true;
        uint64_t now = conn_now_ns();
        if (now >= k->deadline_ns)
            break;
        bool reused = conn_is_open(&c->conn);
        if (!reused) {
            int rc = conn_open(&c->conn, &c->addrs[c->target], k->deadline_ns);
            if (rc != 0) {
                call_move_on(c);
                fails = 0;
                continue;
            }
        }
        k->reached = true;
        uint64_t attempt = conn_deadline_ms(CALL_ATTEMPT_MS);
        int rc =
            call_exchange(&c->conn, c->in, k, attempt < k->deadline_ns ? attempt : k->deadline_ns);
        bool post = k->op == TALLY_WIRE_OP_POST || k->op == TALLY_WIRE_OP_POST_AT;
        if (k->sent && post && (rc != 0 || !call_status_refuses(k->reply.status)))
            k->maybe_executed = true;
        if (rc == TALLY_EVERSION) {
            conn_close(&c->conn);
            return rc;
        }
        if (rc != 0) {
            conn_close(&c->conn);
            if (rc == TALLY_ECLOSED && reused && fails == 0) {
                /* A connection kept from an earlier call, closed by the server meanwhile (idle
                 * timeout, restart): the only news is that it is gone, so reconnect at once. */
                wait = false;
                fails = 1;
                continue;
            }
            if (rc == TALLY_ETIMEOUT || ++fails >= CALL_FAILS_PER_REPLICA) {
                call_move_on(c);
                fails = 0;
            }
            continue;
        }
        switch (k->reply.status) {
        case TALLY_WIRE_NOT_LEADER:
            conn_close(&c->conn);
            if (call_redirect(c, k->body))
                wait = ++hops > c->addr_count;
            else
                call_move_on(c);
            fails = 0;
            continue;
        case TALLY_WIRE_BUSY:
            continue;
        case TALLY_WIRE_BAD_CHECKSUM:
            conn_close(&c->conn);
            continue;
        case TALLY_WIRE_INTERNAL:
            conn_close(&c->conn);
            call_move_on(c);
            fails = 0;
            continue;
        default:
            return 0;
        }
    }
    return k->reached ? TALLY_ETIMEOUT : TALLY_ECLOSED;
}
