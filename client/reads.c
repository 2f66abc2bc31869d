/* reads.c: libtally's queries and STATUS (include/tally.h).
 *
 * Design notes
 * ------------
 * A read is one small frame (at most 32 bytes of body) built on the stack, so the frame of a
 * POST whose outcome is pending stays untouched in c->post. It takes the next request number
 * (the server only echoes a read's number, but one counter per client id keeps every reply
 * matchable: docs/PROTOCOL.md section 7). Without TALLY_READ_STALE it goes to the leader
 * (followers answer NOT_LEADER, and call.c follows); with it, STALE_OK lets whichever replica the
 * client is connected to answer, provided it has applied min_index (the frame's index), and the
 * reply's index is checked to be at least that. Reads are idempotent, so every retry of call.c
 * is safe for them without further thought.
 *
 * Pages (PROGRAMS, HISTORY, LOTS) are requested until the caller's buffer is full or the server
 * says there is no more; each page is its own read, so pages of one call may come from
 * different snapshots (history never changes below a seq, so it pages exactly; lots pages only
 * when a member has more than TALLY_WIRE_LOTS_MAX of them, which TALLY_LINEAGE_MAX forbids).
 */
#include "internal.h"

#include <string.h>

#include "call.h"

/* The largest read request body (LOTS, 32 bytes). */
#define READ_BODY_MAX 32u

/* A status a read may get, as the error it becomes; any other is a protocol violation. */
static int read_status_error(uint16_t status)
{
    switch (status) {
    case TALLY_WIRE_NOT_FOUND:
    case TALLY_WIRE_STALE:
    case TALLY_WIRE_TOO_LARGE:
    case TALLY_WIRE_BAD_REQUEST:
    case TALLY_WIRE_UNKNOWN_OP:
    case TALLY_WIRE_BAD_VERSION:
        return tally_wire_status_error(status);
    default:
        return TALLY_EPROTOCOL;
    }
}

/* One read: the reply body (reply_size bytes if that is nonzero) is at k->body on return 0. */
static int read_run(struct tally_client *c, uint16_t op, const void *req, uint32_t req_size,
                    uint32_t reply_size, uint32_t page_max, struct tally_read *r,
                    uint64_t deadline_ns, struct call *k)
{
    uint8_t frame[TALLY_WIRE_HEADER_SIZE + READ_BODY_MAX];
    struct tally_wire_header h;
    if (req_size > READ_BODY_MAX || c->async.active)
        return TALLY_ECONFIG;
    tally_wire_header_init(&h, op, c->client_id, c->next_request++);
    if (r != NULL && r->stale)
        h.flags = TALLY_WIRE_FLAG_STALE_OK;
    h.index = r != NULL ? r->min_index : 0;
    h.body_size = req_size;
    tally_wire_header_seal(&h, req);
    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), req, req_size);
    *k = (struct call){.op = op,
                       .request = h.request,
                       .frame = frame,
                       .frame_size = TALLY_WIRE_HEADER_SIZE + req_size,
                       .deadline_ns = deadline_ns,
                       .reply_size = reply_size,
                       .min_index = h.index,
                       .page_max = page_max};
    int rc = call_run(c, k);
    k->frame = NULL; /* it lived on this stack */
    if (rc != 0)
        return rc;
    if (r != NULL)
        r->applied_index = k->reply.index;
    return k->reply.status == TALLY_WIRE_OK ? 0 : read_status_error(k->reply.status);
}

int tally_client_account(struct tally_client *c, uint32_t program, uint64_t member,
                         struct tally_account *out, struct tally_read *r)
{
    struct tally_wire_account_request req = {.program = program, .member = member};
    struct call k;
    int rc = read_run(c, TALLY_WIRE_OP_ACCOUNT, &req, sizeof(req), sizeof(*out), 0, r,
                      client_deadline(c, 0), &k);
    if (rc == 0)
        memcpy(out, k.body, sizeof(*out));
    return rc;
}

int tally_client_balance_at(struct tally_client *c, uint32_t program, uint64_t member, uint64_t at,
                            struct tally_balance *out, struct tally_read *r)
{
    struct tally_wire_balance_request req = {.program = program, .member = member, .at = at};
    struct call k;
    int rc = read_run(c, TALLY_WIRE_OP_BALANCE_AT, &req, sizeof(req), sizeof(*out), 0, r,
                      client_deadline(c, 0), &k);
    if (rc == 0)
        memcpy(out, k.body, sizeof(*out));
    return rc;
}

int tally_client_program(struct tally_client *c, uint32_t program,
                         struct tally_program_config *config, struct tally_program_totals *totals,
                         struct tally_read *r)
{
    struct tally_wire_program_request req = {.program = program};
    struct tally_wire_program_reply reply;
    struct call k;
    int rc = read_run(c, TALLY_WIRE_OP_PROGRAM, &req, sizeof(req), sizeof(reply), 0, r,
                      client_deadline(c, 0), &k);
    if (rc != 0)
        return rc;
    memcpy(&reply, k.body, sizeof(reply));
    if (config != NULL)
        *config = reply.config;
    if (totals != NULL)
        *totals = reply.totals;
    return 0;
}

int tally_client_entry(struct tally_client *c, uint64_t seq, struct tally_entry *out,
                       struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count,
                       struct tally_read *r)
{
    struct tally_wire_entry_request req = {.seq = seq};
    struct call k;
    int rc =
        read_run(c, TALLY_WIRE_OP_ENTRY, &req, sizeof(req), 0, 0, r, client_deadline(c, 0), &k);
    if (rc != 0)
        return rc;
    memcpy(out, k.body, sizeof(*out));
    /* The tail of a PROGRAM entry is its configuration, not lot references (as engine_entry). */
    uint32_t n = out->tail_size / (uint32_t)sizeof(struct tally_lot_ref);
    if (out->kind == TALLY_KIND_PROGRAM)
        n = 0;
    if (tail != NULL)
        memcpy(tail, k.body + sizeof(*out), (n < tail_max ? n : tail_max) * sizeof(*tail));
    if (tail_count != NULL)
        *tail_count = n;
    return 0;
}

int tally_client_post_outcome(struct tally_client *c, const uint8_t id[16],
                              struct tally_posting_outcome *out, uint64_t timeout_ms)
{
    _Static_assert(sizeof(struct tally_posting_outcome) == sizeof(struct tally_wire_posting_info),
                   "a posting outcome is the wire's POSTING reply");
    struct tally_wire_id_request req;
    memcpy(req.id, id, sizeof(req.id));
    struct call k;
    int rc = read_run(c, TALLY_WIRE_OP_POSTING, &req, sizeof(req), sizeof(*out), 0, NULL,
                      client_deadline(c, timeout_ms), &k);
    if (rc == 0)
        memcpy(out, k.body, sizeof(*out));
    return rc;
}

int tally_client_hold(struct tally_client *c, const uint8_t id[16], struct tally_hold_info *out,
                      struct tally_read *r)
{
    _Static_assert(sizeof(struct tally_hold_info) == sizeof(struct tally_wire_hold_info),
                   "a hold info is the wire's HOLD reply");
    struct tally_wire_id_request req;
    memcpy(req.id, id, sizeof(req.id));
    struct call k;
    int rc = read_run(c, TALLY_WIRE_OP_HOLD, &req, sizeof(req), sizeof(*out), 0, r,
                      client_deadline(c, 0), &k);
    if (rc == 0)
        memcpy(out, k.body, sizeof(*out));
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Pages
 * ------------------------------------------------------------------------------------------- */

/* Items to ask for on the next page: what is left, within the page maximum, at least one (the
 * wire's minimum; a caller asking for 0 items still learns whether the account exists). */
static uint32_t read_page_want(uint32_t max, uint32_t have, uint32_t page_max)
{
    uint32_t left = max - have;
    return left == 0 ? 1 : left < page_max ? left : page_max;
}

/* The page header of a reply (call.c checked it holds no more than was asked for). */
static void read_page(const struct call *k, struct tally_wire_page *p)
{
    memcpy(p, k->body, sizeof(*p));
}

int tally_client_history(struct tally_client *c, uint32_t program, uint64_t member,
                         uint64_t before_seq, struct tally_entry *out, uint32_t max,
                         uint32_t *count, struct tally_read *r)
{
    uint64_t deadline = client_deadline(c, 0);
    *count = 0;
    for (uint32_t pages = 0; pages <= max / TALLY_WIRE_HISTORY_MAX; pages++) {
        uint32_t want = read_page_want(max, *count, TALLY_WIRE_HISTORY_MAX);
        struct tally_wire_history_request req = {
            .program = program, .max = want, .member = member, .before_seq = before_seq};
        struct tally_wire_page p;
        struct call k;
        int rc = read_run(c, TALLY_WIRE_OP_HISTORY, &req, sizeof(req), 0, want, r, deadline, &k);
        if (rc != 0)
            return rc;
        read_page(&k, &p);
        uint32_t take = p.count < max - *count ? p.count : max - *count;
        memcpy(out + *count, k.body + sizeof(p), take * sizeof(*out));
        *count += take;
        if ((p.flags & TALLY_WIRE_PAGE_MORE) == 0 || take == 0 || *count == max)
            return 0;
        before_seq = out[*count - 1].seq;
    }
    return 0;
}

int tally_client_lots(struct tally_client *c, uint32_t program, uint64_t member,
                      struct tally_lot *out, uint32_t max, uint32_t *count, struct tally_read *r)
{
    uint64_t deadline = client_deadline(c, 0), after_expires = 0, after_lot = 0;
    *count = 0;
    for (uint32_t pages = 0; pages <= max / TALLY_WIRE_LOTS_MAX; pages++) {
        uint32_t want = read_page_want(max, *count, TALLY_WIRE_LOTS_MAX);
        struct tally_wire_lots_request req = {.program = program,
                                              .max = want,
                                              .member = member,
                                              .after_expires_at = after_expires,
                                              .after_lot_id = after_lot};
        struct tally_wire_page p;
        struct call k;
        int rc = read_run(c, TALLY_WIRE_OP_LOTS, &req, sizeof(req), 0, want, r, deadline, &k);
        if (rc != 0)
            return rc;
        read_page(&k, &p);
        uint32_t take = p.count < max - *count ? p.count : max - *count;
        memcpy(out + *count, k.body + sizeof(p), take * sizeof(*out));
        *count += take;
        if ((p.flags & TALLY_WIRE_PAGE_MORE) == 0 || take == 0 || *count == max)
            return 0;
        after_expires = out[*count - 1].expires_at;
        after_lot = out[*count - 1].lot_id;
    }
    return 0;
}

int tally_client_programs(struct tally_client *c, uint32_t after, uint32_t *ids, uint32_t max,
                          uint32_t *count, struct tally_read *r)
{
    uint64_t deadline = client_deadline(c, 0);
    *count = 0;
    for (uint32_t pages = 0; pages <= max / TALLY_WIRE_PROGRAMS_MAX; pages++) {
        uint32_t want = read_page_want(max, *count, TALLY_WIRE_PROGRAMS_MAX);
        struct tally_wire_programs_request req = {.after = after, .max = want};
        struct tally_wire_page p;
        struct call k;
        int rc = read_run(c, TALLY_WIRE_OP_PROGRAMS, &req, sizeof(req), 0, want, r, deadline, &k);
        if (rc != 0)
            return rc;
        read_page(&k, &p);
        uint32_t take = p.count < max - *count ? p.count : max - *count;
        memcpy(ids + *count, k.body + sizeof(p), take * sizeof(*ids));
        *count += take;
        if ((p.flags & TALLY_WIRE_PAGE_MORE) == 0 || take == 0 || *count == max)
            return 0;
        after = ids[*count - 1];
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * STATUS: every replica, each on a connection of its own
 * ------------------------------------------------------------------------------------------- */

/* Ask one replica, before deadline_ns. */
static void status_one(struct tally_client *c, const struct addr *a, uint64_t deadline_ns,
                       struct tally_replica_status *out)
{
    uint8_t frame[TALLY_WIRE_HEADER_SIZE];
    struct tally_wire_header h;
    struct conn cn;
    memset(out, 0, sizeof(*out));
    memcpy(out->address, a->text, sizeof(out->address));
    out->role = TALLY_WIRE_ROLE_UNAVAILABLE;
    tally_wire_header_init(&h, TALLY_WIRE_OP_STATUS, c->client_id, c->next_request++);
    tally_wire_header_seal(&h, NULL);
    memcpy(frame, &h, sizeof(h));
    struct call k = {.op = TALLY_WIRE_OP_STATUS,
                     .request = h.request,
                     .frame = frame,
                     .frame_size = sizeof(frame),
                     .deadline_ns = deadline_ns,
                     .reply_size = sizeof(struct tally_wire_replica_status)};
    conn_init(&cn);
    int rc = conn_open(&cn, a, deadline_ns);
    if (rc == 0)
        rc = call_exchange(&cn, c->in, &k, deadline_ns);
    conn_close(&cn);
    if (rc == 0 && k.reply.status != TALLY_WIRE_OK)
        rc = tally_wire_status_error(k.reply.status);
    if (rc != 0) {
        out->error = rc;
        return;
    }
    struct tally_wire_replica_status s;
    memcpy(&s, k.body, sizeof(s));
    out->role = s.role;
    out->replica_id = s.replica_id;
    out->leader_id = s.leader_id;
    out->term = s.term;
    out->commit_index = s.commit_index;
    out->applied_index = s.applied_index;
    out->last_timestamp = s.last_timestamp;
    out->entries = s.entries;
    out->chain_head = s.chain_head;
    memcpy(out->digest, s.digest, sizeof(out->digest));
}

int tally_client_status(struct tally_client *c, struct tally_replica_status *out, uint32_t max,
                        uint32_t *count, uint64_t timeout_ms)
{
    if (c->async.active)
        return TALLY_ECONFIG; /* c->in holds the asynchronous POST's reply */
    uint64_t deadline = client_deadline(c, timeout_ms);
    uint32_t n = c->addr_count < max ? c->addr_count : max, answered = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* Each replica gets an equal share of what is left, so one that hangs cannot leave
         * the others no time at all. */
        uint64_t now = conn_now_ns();
        uint64_t share = now < deadline ? (deadline - now) / (n - i) : 0;
        status_one(c, &c->addrs[i], now + share, &out[i]);
        answered += out[i].error == 0;
    }
    *count = n;
    return answered > 0 || n == 0 ? 0 : TALLY_ECLOSED;
}
