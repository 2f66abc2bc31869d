/* tally.c: libtally's session and POST (include/tally.h); reads are in reads.c.
 *
 * Design notes
 * ------------
 * Session. tally_client_open() picks a replica (at random, to spread clients), REGISTERs the
 * client id (random from getrandom(2) if the caller gave none) with the leader, and learns the
 * session's last_request: request numbers resume after it, so a process that restarts with the
 * same client id carries on the same session. With defer_register the REGISTER waits for the
 * first POST (reads need no session, STATUS no leader). The client registers once, and again
 * only after SESSION_EXPIRED (docs/PROTOCOL.md section 7), never once per connection: a replica
 * that does not know the session says so.
 *
 * POST. A POST takes the next request number and its frame is built once into c->post; every
 * retry (call.c) sends those bytes again. If the call ends without an answer (TALLY_ETIMEOUT,
 * TALLY_ECLOSED), the frame stays in c->post as c->pending: a later POST of the very same
 * postings is that frame again, same number, so the session answers it from its reply cache.
 * Any other POST takes a new number and replaces it. POST_AT is the same path: its frame is the
 * 16-byte prefix (the ledger time) then the postings, and "the very same" means the same
 * operation, the same time and the same postings.
 *
 * SESSION_EXPIRED. The replica holds no session for this client id (evicted, or not carried
 * over by a leader change). The client registers again and reads last_request L:
 *   - L >= the request's number N: the session answered it; the same frame gets the kept reply;
 *   - N > L and no copy of the frame can have been executed (every copy that went out was
 *     refused: BUSY, BAD_CHECKSUM, SESSION_EXPIRED): sending the same frame executes it now,
 *     once;
 *   - N > L and some copy's fate is unknown (no reply came, or NOT_LEADER / INTERNAL answered
 *     it): the session that could have vouched for it is gone, so the outcome is unknown and the
 *     call returns TALLY_ECLOSED. Sending the same postings again is still safe (posting ids,
 *     law 4: applied ones answer EXISTS with their original result); post_outcome() asks.
 * At most CLIENT_REGISTERS_MAX re-registrations per call, then TALLY_ECLOSED.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "call.h"

/* Registrations one POST may make after SESSION_EXPIRED before it gives up: a session that
 * expires again right after it was created means the servers are shedding sessions as fast as
 * they are made, and retrying harder would only add to it. */
#define CLIENT_REGISTERS_MAX 4u

uint64_t client_deadline(const struct tally_client *c, uint64_t timeout_ms)
{
    return conn_deadline_ms(timeout_ms != 0 ? timeout_ms : c->timeout_ms);
}

static bool client_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * The session
 * ------------------------------------------------------------------------------------------- */

int client_register(struct tally_client *c, uint64_t deadline_ns, uint64_t *last_request)
{
    uint8_t frame[TALLY_WIRE_HEADER_SIZE + sizeof(struct tally_wire_register)];
    struct tally_wire_header h;
    struct tally_wire_register body;
    memset(&body, 0, sizeof(body));
    memcpy(body.label, c->label, sizeof(body.label));
    tally_wire_header_init(&h, TALLY_WIRE_OP_REGISTER, c->client_id, 0);
    h.body_size = sizeof(body);
    tally_wire_header_seal(&h, &body);
    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), &body, sizeof(body));

    struct call k = {.op = TALLY_WIRE_OP_REGISTER,
                     .request = 0,
                     .frame = frame,
                     .frame_size = sizeof(frame),
                     .deadline_ns = deadline_ns};
    int rc = call_run(c, &k);
    if (rc != 0)
        return rc;
    if (k.reply.status != TALLY_WIRE_OK)
        return k.reply.status == TALLY_WIRE_SESSION_EXPIRED
                   ? TALLY_EPROTOCOL
                   : tally_wire_status_error(k.reply.status);
    struct tally_wire_session s;
    memcpy(&s, k.body, sizeof(s));
    if (c->cluster_known && memcmp(s.cluster_id, c->cluster_id, sizeof(s.cluster_id)) != 0)
        return TALLY_ECONFIG; /* these addresses now lead to another cluster */
    memcpy(c->cluster_id, s.cluster_id, sizeof(c->cluster_id));
    c->cluster_known = true;
    if (s.batch_max != 0 && s.batch_max < TALLY_BATCH_MAX)
        c->batch_max = s.batch_max;
    if (s.last_request >= c->next_request)
        c->next_request = s.last_request + 1;
    *last_request = s.last_request;
    c->registered = true;
    return 0;
}

int tally_client_open(struct tally_client **out, const struct tally_client_options *opts)
{
    *out = NULL;
    if (opts == NULL || opts->addresses == NULL)
        return TALLY_ECONFIG;
    if (opts->label != NULL && strlen(opts->label) >= TALLY_WIRE_LABEL_SIZE)
        return TALLY_ECONFIG;
    struct tally_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    int rc = addr_list_parse(opts->addresses, c->addrs, ADDR_LIST_MAX, &c->addr_count);
    if (rc != 0)
        goto err_after_alloc;
    c->post = malloc(TALLY_WIRE_FRAME_MAX);
    c->in = malloc(TALLY_WIRE_FRAME_MAX);
    if (c->post == NULL || c->in == NULL) {
        rc = -ENOMEM;
        goto err_after_alloc;
    }
    conn_init(&c->conn);
    ids_init(&c->ids);
    c->timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : TALLY_CLIENT_TIMEOUT_MS;
    c->batch_max = TALLY_BATCH_MAX;
    c->next_request = 1;
    if (opts->label != NULL)
        memcpy(c->label, opts->label, strlen(opts->label));
    memcpy(c->client_id, opts->client_id, sizeof(c->client_id));
    while (client_zero(c->client_id, sizeof(c->client_id))) {
        if (getrandom(c->client_id, sizeof(c->client_id), 0) != (ssize_t)sizeof(c->client_id)) {
            rc = -errno;
            goto err_after_alloc;
        }
    }
    memcpy(&c->rng, c->client_id, sizeof(c->rng));
    c->rng ^= (uint64_t)conn_now_ns();
    c->rng |= 1; /* xorshift state must not be zero */
    c->rotor = (uint32_t)(c->rng % c->addr_count);
    c->target = c->rotor;

    uint64_t last;
    if (!opts->defer_register && (rc = client_register(c, client_deadline(c, 0), &last)) != 0)
        goto err_after_alloc;
    *out = c;
    return 0;

err_after_alloc:
    tally_client_close(c);
    return rc;
}

void tally_client_close(struct tally_client *c)
{
    if (c == NULL)
        return;
    conn_close(&c->conn);
    free(c->post);
    free(c->in);
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * POST
 * ------------------------------------------------------------------------------------------- */

/* Make c->post the frame of op (POST, or POST_AT with its `prefix_size` bytes of prefix) and
 * these postings: the pending one again if it is the same operation and the same bytes, else a
 * new one under the next request number. */
static void client_post_frame(struct tally_client *c, uint16_t op, const void *prefix,
                              uint32_t prefix_size, const struct tally_posting *postings,
                              uint32_t postings_size)
{
    uint8_t *body = c->post + TALLY_WIRE_HEADER_SIZE;
    uint32_t body_size = prefix_size + postings_size;
    /* prefix is NULL for POST: memcmp and memcpy must not see it, even for 0 bytes */
    if (c->pending.valid && c->pending.op == op && c->pending.body_size == body_size &&
        (prefix_size == 0 || memcmp(body, prefix, prefix_size) == 0) &&
        memcmp(body + prefix_size, postings, postings_size) == 0)
        return;
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, c->client_id, c->next_request++);
    h.body_size = body_size;
    if (prefix_size > 0)
        memcpy(body, prefix, prefix_size);
    memcpy(body + prefix_size, postings, postings_size);
    tally_wire_header_seal(&h, body);
    memcpy(c->post, &h, sizeof(h));
    c->pending.valid = true;
    c->pending.maybe_executed = false;
    c->pending.op = op;
    c->pending.request = h.request;
    c->pending.body_size = body_size;
}

/* What to do after SESSION_EXPIRED: 0 to send the same frame again, or the call's error. */
static int client_session_lost(struct tally_client *c, uint64_t deadline_ns)
{
    uint64_t last;
    int rc = client_register(c, deadline_ns, &last);
    if (rc != 0)
        return rc;
    if (last >= c->pending.request || !c->pending.maybe_executed)
        return 0;
    return TALLY_ECLOSED;
}

/* POST (prefix_size 0) and POST_AT (the 16-byte prefix): one path, one set of outcomes. */
static int client_post(struct tally_client *c, uint16_t op, const void *prefix,
                       uint32_t prefix_size, const struct tally_posting *postings, uint32_t count,
                       struct tally_result *results, uint64_t deadline)
{
    if (postings == NULL || results == NULL || count == 0 || c->async.active)
        return TALLY_ECONFIG; /* (c->post is the asynchronous POST's frame: left untouched) */
    if (count > c->batch_max)
        return TALLY_ETOO_LARGE;
    uint32_t body_size = prefix_size + count * (uint32_t)sizeof(struct tally_posting);
    uint64_t last;
    int rc = c->registered ? 0 : client_register(c, deadline, &last);
    if (rc != 0)
        return rc; /* nothing was sent: numbering must start after the session's last_request */
    client_post_frame(c, op, prefix, prefix_size, postings, body_size - prefix_size);

    for (uint32_t registers = 0;; registers++) {
        struct call k = {.op = op,
                         .request = c->pending.request,
                         .frame = c->post,
                         .frame_size = TALLY_WIRE_HEADER_SIZE + body_size,
                         .deadline_ns = deadline,
                         .reply_size = count * (uint32_t)sizeof(struct tally_result),
                         .maybe_executed = c->pending.maybe_executed};
        rc = call_run(c, &k);
        c->pending.maybe_executed = k.maybe_executed;
        if (rc != 0)
            return rc;
        if (k.reply.status == TALLY_WIRE_OK) {
            memcpy(results, k.body, k.reply.body_size);
            c->last_index = k.reply.index;
            c->pending.valid = false;
            return 0;
        }
        if (k.reply.status != TALLY_WIRE_SESSION_EXPIRED) {
            /* Refused as a whole (TOO_LARGE, BAD_REQUEST, REQUEST_REUSED, CLOCK_MODE, ...):
             * sending these bytes again cannot help. A status no POST may get is a protocol
             * violation (CLOCK_MODE answers only POST_AT). */
            c->pending.valid = false;
            bool post_status =
                k.reply.status == TALLY_WIRE_TOO_LARGE ||
                k.reply.status == TALLY_WIRE_BAD_VERSION ||
                (k.reply.status == TALLY_WIRE_CLOCK_MODE && op == TALLY_WIRE_OP_POST_AT);
            return post_status ? tally_wire_status_error(k.reply.status) : TALLY_EPROTOCOL;
        }
        if (registers == CLIENT_REGISTERS_MAX)
            return TALLY_ECLOSED;
        if ((rc = client_session_lost(c, deadline)) != 0)
            return rc;
    }
}

int tally_client_post(struct tally_client *c, const struct tally_posting *postings, uint32_t count,
                      struct tally_result *results, uint64_t timeout_ms)
{
    if (c == NULL)
        return TALLY_ECONFIG;
    return client_post(c, TALLY_WIRE_OP_POST, NULL, 0, postings, count, results,
                       client_deadline(c, timeout_ms));
}

int tally_client_post_at(struct tally_client *c, uint64_t at_ms,
                         const struct tally_posting *postings, uint32_t count,
                         struct tally_result *results, uint64_t timeout_ms)
{
    if (c == NULL || at_ms > TALLY_WIRE_AT_MAX)
        return TALLY_ECONFIG;
    struct tally_wire_post_at prefix = {.at = at_ms, .reserved = 0};
    return client_post(c, TALLY_WIRE_OP_POST_AT, &prefix, (uint32_t)sizeof(prefix), postings, count,
                       results, client_deadline(c, timeout_ms));
}

/* ---------------------------------------------------------------------------------------------
 * The asynchronous POST
 *
 * The frame is built as a POST's (client_post_frame: a new request number, or the pending
 * frame again) and written on the open connection; its reply is read as it arrives, without
 * blocking, into c->in, and checked as call_exchange checks one. An OK reply ends it. Anything
 * else (no open connection, a failed write, a lost connection, a reply that fails a check, no
 * reply within CALL_ATTEMPT_MS, a status other than OK) hands the same frame to the blocking
 * POST (client_post), which retries it by call.c's rules and settles it before the call's
 * deadline: the asynchronous path only ever adds a first copy of the request, never a new
 * number, so exactly-once is the blocking POST's. The copy's fate is recorded first
 * (maybe_executed, as call_run does: unknown unless a status proves it refused).
 * ------------------------------------------------------------------------------------------- */

/* Hand the in-flight POST to the blocking path. maybe_executed: this copy went out and its fate
 * is unknown. */
static int client_async_block(struct tally_client *c, bool maybe_executed)
{
    struct client_async *a = &c->async;
    conn_close(&c->conn);
    a->active = false;
    c->pending.maybe_executed |= maybe_executed;
    return client_post(c, TALLY_WIRE_OP_POST, NULL, 0,
                       (const struct tally_posting *)(c->post + TALLY_WIRE_HEADER_SIZE), a->count,
                       a->results, a->deadline_ns);
}

int tally_client_post_start(struct tally_client *c, const struct tally_posting *postings,
                            uint32_t count, struct tally_result *results, uint64_t timeout_ms)
{
    if (c == NULL || c->async.active || postings == NULL || results == NULL || count == 0)
        return TALLY_ECONFIG;
    if (count > c->batch_max)
        return TALLY_ETOO_LARGE;
    uint64_t deadline = client_deadline(c, timeout_ms);
    uint64_t last;
    int rc = c->registered ? 0 : client_register(c, deadline, &last);
    if (rc != 0)
        return rc;
    uint32_t postings_size = count * (uint32_t)sizeof(struct tally_posting);
    client_post_frame(c, TALLY_WIRE_OP_POST, NULL, 0, postings, postings_size);
    struct client_async *a = &c->async;
    *a = (struct client_async){
        .active = true, .count = count, .deadline_ns = deadline, .results = results};
    if (!conn_is_open(&c->conn))
        return client_async_block(c, false);
    a->attempt_ns = conn_deadline_ms(CALL_ATTEMPT_MS);
    rc = conn_send(&c->conn, c->post, TALLY_WIRE_HEADER_SIZE + postings_size,
                   a->attempt_ns < deadline ? a->attempt_ns : deadline);
    if (rc != 0)
        return client_async_block(c, false); /* no whole copy went out */
    return TALLY_EAGAIN;
}

int tally_client_post_finish(struct tally_client *c)
{
    if (c == NULL || !c->async.active)
        return TALLY_ECONFIG;
    struct client_async *a = &c->async;
    int rc;
    for (;;) {
        uint32_t want = a->have < TALLY_WIRE_HEADER_SIZE
                            ? TALLY_WIRE_HEADER_SIZE - a->have
                            : TALLY_WIRE_HEADER_SIZE + a->header.body_size - a->have;
        if (want == 0)
            break;
        ssize_t n = recv(c->conn.fd, c->in + a->have, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (conn_now_ns() < a->attempt_ns && conn_now_ns() < a->deadline_ns)
                return TALLY_EAGAIN;
            return client_async_block(c, true); /* no reply in time: as a timed-out attempt */
        }
        if (n <= 0)
            return client_async_block(c, true); /* closed or reset */
        a->have += (uint32_t)n;
        if (a->have != TALLY_WIRE_HEADER_SIZE)
            continue;
        if ((rc = call_reply_header(c->in, &a->header)) == TALLY_EVERSION) {
            conn_close(&c->conn);
            a->active = false;
            c->pending.maybe_executed = true;
            return rc;
        }
        if (rc != 0)
            return client_async_block(c, true);
    }
    const struct tally_wire_header *h = &a->header;
    struct call k = {.op = TALLY_WIRE_OP_POST,
                     .request = c->pending.request,
                     .frame = c->post,
                     .reply_size = a->count * (uint32_t)sizeof(struct tally_result)};
    if (call_reply_body(&k, h, c->in + TALLY_WIRE_HEADER_SIZE) != 0)
        return client_async_block(c, true);
    if (h->status != TALLY_WIRE_OK)
        return client_async_block(c, !call_status_refuses(h->status));
    memcpy(a->results, k.body, h->body_size);
    c->last_index = h->index;
    c->pending.valid = false;
    a->active = false;
    return 0;
}

int tally_client_fd(const struct tally_client *c)
{
    return c != NULL ? c->conn.fd : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Ids and the last index
 * ------------------------------------------------------------------------------------------- */

int tally_client_id(struct tally_client *c, uint8_t out[16])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return ids_next(&c->ids, ms, out);
}

uint64_t tally_client_last_index(const struct tally_client *c)
{
    return c->last_index;
}
