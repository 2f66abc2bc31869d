/* front.c: what tallyd does with each request frame (front.h): sessions, POSTs, reads, status.
 *
 * Design notes
 * ------------
 * - POST and POST_AT (a POST whose body starts with the ledger time it asks for) are one path:
 *   POST_AT is answered CLOCK_MODE by a leader stamping with its wall clock (replica_clock),
 *   before anything else is looked at; otherwise it goes where a POST goes, with its `at`.
 * - POST: one request in flight per session. A POST whose (client id, request number) is
 *   already in flight (the client retried on a new connection) re-addresses the pending reply
 *   to the new connection instead of submitting it twice; one with another number gets BUSY.
 *   Otherwise it goes to the replica, and the reply is sent when its entry is applied: the
 *   results, the cached results (a retry of an applied request), or REQUEST_REUSED (older).
 * - Pending POSTs live in a pool of FRONT_PENDING_MAX slots allocated at start (the replica
 *   queues at most REPLICA_QUEUE_MAX postings, so at most as many requests), found by client
 *   id through an open-addressing table. A full pool answers BUSY.
 * - LEDGER (a chunk of a ledger copy for a catching-up peer) is answered by any replica, from
 *   its copies (server/copies.h).
 * - Reads go to the leader once ready, or to any replica with STALE_OK; the reply's index is
 *   the applied index the answer was taken at, and a replica behind the request's index answers
 *   STALE.
 * - Reads during a ledger commit. While the engine's committer writes and flushes a group
 *   (replica_ledger_busy: tens of milliseconds at a peak) a query would wait for it, and with it
 *   the event loop: Raft, every other client, the POSTs' answers. An ACCOUNT read (a till's
 *   balance) whose account is in the engine's member cache is answered at once from it
 *   (engine_account_cached: the cache holds every applied batch and is the loop's alone, so it
 *   needs neither LMDB nor the committer). Any other read that arrives then is
 *   copied (header and body, at most FRONT_READ_BODY_MAX bytes: every read's body has a fixed
 *   size) into the read queue, FRONT_READS_MAX frames allocated at start, and served in arrival
 *   order when the commit ends (replica_options.ledger_free: the replica calls front_ledger_free
 *   then, before it applies the entries that waited, and from its poll as a backstop). It is
 *   judged then as if it had just arrived (leader ready, applied index at least the request's),
 *   so a leader deposed meanwhile answers NOT_LEADER, never a stale answer. While the queue holds
 *   reads every new read but a cached ACCOUNT joins it, so the held reads of a connection are
 *   answered in order (the protocol matches replies, it does not order them). A full
 *   queue answers BUSY (the client retries after a backoff). The reply goes to the connection
 *   the read came on; if it closed meanwhile, net_send drops it. A deferred read is still
 *   linearizable: it is answered from a state that holds every entry applied when it arrived.
 */
#include "front.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define FRONT_PENDING_MAX (REPLICA_QUEUE_MAX + REPLICA_INFLIGHT_MAX * TALLY_BATCH_MAX)
/* The largest body of a read held while the ledger commits (see the design notes). */
#define FRONT_READ_BODY_MAX 32u
/* Every read operation's request body has a fixed size that fits a held read. */
#define FRONT_READ_FITS_(name, value, cls, qf, qi, qmin, qmax, pf, pi, pmin, pmax, message)      \
    _Static_assert(TALLY_WIRE_CLASS_##cls != TALLY_WIRE_CLASS_READ ||                            \
                       ((qf) <= FRONT_READ_BODY_MAX && (qi) == 0),                               \
                   #name ": a read's request body fits a held read");
TALLY_WIRE_OPS(FRONT_READ_FITS_)
#undef FRONT_READ_FITS_
#define FRONT_TABLE_SIZE (1u << 17) /* a power of two, >= 2 x FRONT_PENDING_MAX */
_Static_assert(FRONT_TABLE_SIZE >= 2 * FRONT_PENDING_MAX, "table sparse enough");

struct pending {
    struct tally_wire_header request; /* for the reply's header */
    uint64_t conn_id;
    struct front *front;
    bool used;
};

/* A read that arrived while the ledger was committing. */
struct held_read {
    struct tally_wire_header request;
    uint64_t conn_id;
    uint8_t body[FRONT_READ_BODY_MAX];
};

struct front {
    struct net *net;
    struct replica *replica;
    uint8_t cluster_id[16];
    struct pending *pending;  /* FRONT_PENDING_MAX */
    uint32_t *table;          /* FRONT_TABLE_SIZE: pending index + 1, 0 empty */
    uint32_t free_top;
    uint32_t *free_list;
    uint8_t *body;            /* TALLY_WIRE_BODY_MAX: the reply being built */
    struct held_read *reads;  /* FRONT_READS_MAX, a ring: the read queue, oldest first */
    uint32_t reads_head;
    uint32_t reads_count;
    struct front_stats stats;
};

int front_init(struct front **out, struct net *net, struct replica *replica,
               const uint8_t cluster_id[16])
{
    struct front *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->net = net;
    f->replica = replica;
    memcpy(f->cluster_id, cluster_id, 16);
    f->pending = calloc(FRONT_PENDING_MAX, sizeof(*f->pending));
    f->table = calloc(FRONT_TABLE_SIZE, sizeof(*f->table));
    f->free_list = calloc(FRONT_PENDING_MAX, sizeof(*f->free_list));
    f->body = malloc(TALLY_WIRE_BODY_MAX);
    f->reads = calloc(FRONT_READS_MAX, sizeof(*f->reads));
    if (!f->pending || !f->table || !f->free_list || !f->body || !f->reads) {
        front_free(f);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < FRONT_PENDING_MAX; i++)
        f->free_list[i] = FRONT_PENDING_MAX - 1 - i;
    f->free_top = FRONT_PENDING_MAX;
    *out = f;
    return 0;
}

void front_free(struct front *f)
{
    if (f == NULL)
        return;
    free(f->pending);
    free(f->table);
    free(f->free_list);
    free(f->body);
    free(f->reads);
    free(f);
}

void front_stats(const struct front *f, struct front_stats *out)
{
    *out = f->stats;
    out->reads_held_now = f->reads_count;
}

void front_set_replica(struct front *f, struct replica *replica)
{
    f->replica = replica;
}

void front_set_net(struct front *f, struct net *net)
{
    f->net = net;
}

/* ---- replies --------------------------------------------------------------------------------- */

static void reply(struct front *f, uint64_t conn, const struct tally_wire_header *req,
                  uint16_t status, uint64_t index, const void *body, uint32_t size)
{
    struct tally_wire_header h;
    tally_wire_reply_init(&h, req, status, index, size);
    tally_wire_header_seal(&h, body);
    (void)net_send(f->net, conn, &h, body);
}

static void reply_not_leader(struct front *f, uint64_t conn, const struct tally_wire_header *req)
{
    struct tally_wire_not_leader nl;
    memset(&nl, 0, sizeof(nl));
    uint64_t id;
    const char *addr;
    replica_leader(f->replica, &id, &addr);
    if (addr[0] != '\0')
        (void)tally_wire_address_set(nl.leader_address, addr);
    reply(f, conn, req, TALLY_WIRE_NOT_LEADER, 0, &nl, sizeof(nl));
}

/* The status for an engine query's error: an unknown record is NOT_FOUND; an argument the engine
 * refuses (TALLY_ECONFIG: a HISTORY before_seq that is not one of the member's entries) is the
 * client's mistake, BAD_REQUEST, which every replica would answer alike; anything else is a
 * failure of this replica's storage, INTERNAL, which sends the client to another one. */
static uint16_t query_status(int rc)
{
    switch (rc) {
    case TALLY_ENOT_FOUND:
        return TALLY_WIRE_NOT_FOUND;
    case TALLY_ECONFIG:
        return TALLY_WIRE_BAD_REQUEST;
    default:
        return TALLY_WIRE_INTERNAL;
    }
}

/* ---- pending POSTs ----------------------------------------------------------------------------- */

static uint32_t slot_of(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (uint32_t)(h >> 40) & (FRONT_TABLE_SIZE - 1);
}

/* The table position of a client's pending POST, or of the empty position where it would go. */
static uint32_t table_find(const struct front *f, const uint8_t id[16])
{
    uint32_t i = slot_of(id);
    while (f->table[i] != 0 &&
           memcmp(f->pending[f->table[i] - 1].request.client_id, id, 16) != 0)
        i = (i + 1) & (FRONT_TABLE_SIZE - 1);
    return i;
}

/* Remove position i (backward-shift deletion keeps every probe chain whole). */
static void table_remove(struct front *f, uint32_t i)
{
    f->table[i] = 0;
    for (uint32_t j = (i + 1) & (FRONT_TABLE_SIZE - 1); f->table[j] != 0;
         j = (j + 1) & (FRONT_TABLE_SIZE - 1)) {
        uint32_t home = slot_of(f->pending[f->table[j] - 1].request.client_id);
        bool between = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (between) {
            f->table[i] = f->table[j];
            f->table[j] = 0;
            i = j;
        }
    }
}

void front_posted(void *ctx, int status, uint8_t req_status, const struct tally_result *results,
                  uint32_t count, uint64_t index)
{
    struct pending *p = ctx;
    struct front *f = p->front;
    if (status == TALLY_ENOT_LEADER)
        reply_not_leader(f, p->conn_id, &p->request);
    else if (status != 0)
        reply(f, p->conn_id, &p->request, TALLY_WIRE_INTERNAL, 0, NULL, 0);
    else if (req_status == ENGINE_REQUEST_OLD)
        reply(f, p->conn_id, &p->request, TALLY_WIRE_REQUEST_REUSED, index, NULL, 0);
    else
        reply(f, p->conn_id, &p->request, TALLY_WIRE_OK, index, results,
              count * (uint32_t)sizeof(*results));
    table_remove(f, table_find(f, p->request.client_id));
    p->used = false;
    f->free_list[f->free_top++] = (uint32_t)(p - f->pending);
}

/* POST and POST_AT. The frame layer checked the body's shape and POST_AT's prefix. */
static void handle_post(struct front *f, uint64_t conn, const struct tally_wire_header *h,
                        const uint8_t *body)
{
    if (!replica_ready(f->replica)) {
        reply_not_leader(f, conn, h);
        return;
    }
    uint64_t at = 0;
    uint32_t prefix = 0;
    if (h->op == TALLY_WIRE_OP_POST_AT) {
        if (replica_clock(f->replica) != REPLICA_CLOCK_CLIENT) {
            reply(f, conn, h, TALLY_WIRE_CLOCK_MODE, 0, NULL, 0);
            return;
        }
        struct tally_wire_post_at q;
        memcpy(&q, body, sizeof(q));
        at = q.at;
        prefix = (uint32_t)sizeof(q);
    }
    uint32_t pos = table_find(f, h->client_id);
    if (f->table[pos] != 0) {
        struct pending *p = &f->pending[f->table[pos] - 1];
        if (p->request.request == h->request) {
            p->conn_id = conn; /* a retry: the reply goes where the client waits now */
            return;
        }
        reply(f, conn, h, TALLY_WIRE_BUSY, 0, NULL, 0); /* one POST in flight per session */
        return;
    }
    if (f->free_top == 0) {
        reply(f, conn, h, TALLY_WIRE_BUSY, 0, NULL, 0);
        return;
    }
    uint32_t i = f->free_list[--f->free_top];
    struct pending *p = &f->pending[i];
    *p = (struct pending){.request = *h, .conn_id = conn, .front = f, .used = true};
    f->table[pos] = i + 1;
    uint32_t count = (h->body_size - prefix) / (uint32_t)sizeof(struct tally_posting);
    struct tally_posting *copy = (struct tally_posting *)(void *)f->body;
    memcpy(copy, body + prefix, (size_t)count * sizeof(*copy)); /* body may be unaligned */
    int rc = replica_submit(f->replica, h->client_id, h->request, at, copy, count, p);
    if (rc == 0)
        return;
    table_remove(f, pos);
    p->used = false;
    f->free_list[f->free_top++] = i;
    if (rc == TALLY_ENOT_LEADER)
        reply_not_leader(f, conn, h);
    else
        reply(f, conn, h,
              rc == TALLY_EBUSY     ? TALLY_WIRE_BUSY
              : rc == TALLY_ECONFIG ? TALLY_WIRE_CLOCK_MODE
                                    : TALLY_WIRE_TOO_LARGE,
              0, NULL, 0);
}

/* ---- reads ----------------------------------------------------------------------------------- */

/* Whether this replica may answer a read now; if not, the reply is sent. */
static bool read_allowed(struct front *f, uint64_t conn, const struct tally_wire_header *h,
                         uint64_t *applied)
{
    struct engine_status st;
    engine_status(replica_engine(f->replica), &st);
    *applied = st.applied_index;
    bool stale_ok = (h->flags & TALLY_WIRE_FLAG_STALE_OK) != 0;
    if (!stale_ok && !replica_ready(f->replica)) {
        reply_not_leader(f, conn, h);
        return false;
    }
    if (h->index > st.applied_index) {
        reply(f, conn, h, TALLY_WIRE_STALE, st.applied_index, NULL, 0);
        return false;
    }
    return true;
}

/* Serve one read into f->body; returns the status and the body size. */
/* A page read one item past max: keep max, and say MORE when the extra one came. */
static void page_trim(struct tally_wire_page *pg, uint32_t max)
{
    if (pg->count > max) {
        pg->count = max;
        pg->flags |= TALLY_WIRE_PAGE_MORE;
    }
}

static uint16_t serve_read(struct front *f, const struct tally_wire_header *h, const uint8_t *body,
                           uint32_t *size)
{
    struct engine *e = replica_engine(f->replica);
    int rc = 0;
    *size = 0;
    switch (h->op) {
    case TALLY_WIRE_OP_ACCOUNT: {
        struct tally_wire_account_request q;
        memcpy(&q, body, sizeof(q));
        rc = engine_account(e, q.program, q.member, (struct tally_account *)(void *)f->body);
        *size = sizeof(struct tally_account);
        break;
    }
    case TALLY_WIRE_OP_BALANCE_AT: {
        struct tally_wire_balance_request q;
        memcpy(&q, body, sizeof(q));
        rc = engine_balance_at(e, q.program, q.member, q.at,
                               (struct tally_balance *)(void *)f->body);
        *size = sizeof(struct tally_balance);
        break;
    }
    case TALLY_WIRE_OP_HISTORY: {
        struct tally_wire_history_request q;
        memcpy(&q, body, sizeof(q));
        struct tally_wire_page pg = {0, 0};
        /* One more than asked: if it comes, MORE is set and it is left out. */
        rc = engine_history(e, q.program, q.member, q.before_seq,
                            (struct tally_entry *)(void *)(f->body + sizeof(pg)), q.max + 1,
                            &pg.count);
        page_trim(&pg, q.max);
        memcpy(f->body, &pg, sizeof(pg));
        *size = (uint32_t)(sizeof(pg) + pg.count * sizeof(struct tally_entry));
        break;
    }
    case TALLY_WIRE_OP_LOTS: {
        struct tally_wire_lots_request q;
        memcpy(&q, body, sizeof(q));
        struct tally_wire_page pg = {0, 0};
        /* A member holds at most TALLY_LINEAGE_MAX lots: all of them are read, those up to the
         * cursor (expires_at, lot_id) skipped, and MORE set when more than max remain. */
        struct tally_lot *lots = (struct tally_lot *)(void *)(f->body + sizeof(pg));
        uint32_t n = 0, skip = 0;
        rc = engine_lots(e, q.program, q.member, lots, TALLY_LINEAGE_MAX, &n);
        while (rc == 0 && (q.after_expires_at != 0 || q.after_lot_id != 0) && skip < n &&
               (lots[skip].expires_at < q.after_expires_at ||
                (lots[skip].expires_at == q.after_expires_at &&
                 lots[skip].lot_id <= q.after_lot_id)))
            skip++;
        memmove(lots, lots + skip, (size_t)(n - skip) * sizeof(*lots));
        pg.count = n - skip;
        page_trim(&pg, q.max);
        memcpy(f->body, &pg, sizeof(pg));
        *size = (uint32_t)(sizeof(pg) + pg.count * sizeof(struct tally_lot));
        break;
    }
    case TALLY_WIRE_OP_ENTRY: {
        struct tally_wire_entry_request q;
        memcpy(&q, body, sizeof(q));
        struct tally_entry *en = (struct tally_entry *)(void *)f->body;
        uint32_t n = 0;
        rc = engine_entry(e, q.seq, en, (struct tally_lot_ref *)(void *)(f->body + sizeof(*en)),
                          TALLY_LINEAGE_MAX, &n);
        *size = (uint32_t)(sizeof(*en) + (rc == 0 ? en->tail_size : 0));
        break;
    }
    case TALLY_WIRE_OP_POSTING: {
        struct tally_wire_id_request q;
        memcpy(&q, body, sizeof(q));
        struct engine_posting_info pi;
        rc = engine_posting(e, q.id, &pi);
        struct tally_wire_posting_info out = {pi.code, pi.kind, 0, pi.seq, pi.entry_count, 0,
                                              pi.timestamp};
        memcpy(f->body, &out, sizeof(out));
        *size = sizeof(out);
        break;
    }
    case TALLY_WIRE_OP_HOLD: {
        struct tally_wire_id_request q;
        memcpy(&q, body, sizeof(q));
        struct engine_hold_info hi;
        rc = engine_hold(e, q.id, &hi);
        struct tally_wire_hold_info out = {hi.seq, hi.program, hi.status, hi.member, hi.amount,
                                           hi.captured, hi.timeout_at, hi.resolved_seq};
        memcpy(f->body, &out, sizeof(out));
        *size = sizeof(out);
        break;
    }
    case TALLY_WIRE_OP_PROGRAM: {
        struct tally_wire_program_request q;
        memcpy(&q, body, sizeof(q));
        struct tally_wire_program_reply *out = (struct tally_wire_program_reply *)(void *)f->body;
        rc = engine_program(e, q.program, &out->config, &out->totals);
        *size = sizeof(*out);
        break;
    }
    case TALLY_WIRE_OP_PROGRAMS: {
        struct tally_wire_programs_request q;
        memcpy(&q, body, sizeof(q));
        struct tally_wire_page pg = {0, 0};
        rc = engine_programs(e, q.after, (uint32_t *)(void *)(f->body + sizeof(pg)), q.max + 1,
                             &pg.count);
        page_trim(&pg, q.max);
        memcpy(f->body, &pg, sizeof(pg));
        *size = (uint32_t)(sizeof(pg) + pg.count * sizeof(uint32_t));
        break;
    }
    default:
        return TALLY_WIRE_UNKNOWN_OP;
    }
    if (rc != 0) {
        *size = 0;
        return query_status(rc);
    }
    return TALLY_WIRE_OK;
}

/* Judge a read and answer it, now. */
static void read_answer(struct front *f, uint64_t conn, const struct tally_wire_header *h,
                        const uint8_t *body)
{
    uint64_t applied;
    if (!read_allowed(f, conn, h, &applied))
        return;
    uint32_t size;
    uint16_t status = serve_read(f, h, body, &size);
    reply(f, conn, h, status, applied, status == TALLY_WIRE_OK ? f->body : NULL,
          status == TALLY_WIRE_OK ? size : 0);
}

/* An ACCOUNT read answered from the member cache, without waiting for the ledger (design
 * notes); false if it cannot be (another read, or an account not cached): nothing sent then. */
static bool read_answer_cached(struct front *f, uint64_t conn, const struct tally_wire_header *h,
                               const uint8_t *body)
{
    if (h->op != TALLY_WIRE_OP_ACCOUNT)
        return false;
    struct tally_wire_account_request q;
    memcpy(&q, body, sizeof(q));
    struct tally_account *a = (struct tally_account *)(void *)f->body;
    int rc = engine_account_cached(replica_engine(f->replica), q.program, q.member, a);
    if (rc == 1)
        return false;
    uint64_t applied;
    if (!read_allowed(f, conn, h, &applied))
        return true;
    f->stats.reads_cached++;
    if (rc != 0)
        reply(f, conn, h, query_status(rc), applied, NULL, 0);
    else
        reply(f, conn, h, TALLY_WIRE_OK, applied, a, sizeof(*a));
    return true;
}

/* The ledger is committing (or reads wait already): the read joins the queue (design notes). */
static void read_hold(struct front *f, uint64_t conn, const struct tally_wire_header *h,
                      const uint8_t *body)
{
    if (h->body_size > FRONT_READ_BODY_MAX) { /* never: the frame layer checked the size */
        read_answer(f, conn, h, body);
        return;
    }
    if (f->reads_count == FRONT_READS_MAX) {
        f->stats.reads_busy++;
        reply(f, conn, h, TALLY_WIRE_BUSY, 0, NULL, 0);
        return;
    }
    struct held_read *r = &f->reads[(f->reads_head + f->reads_count) % FRONT_READS_MAX];
    r->request = *h;
    r->conn_id = conn;
    memcpy(r->body, body, h->body_size);
    f->reads_count++;
    f->stats.reads_held++;
}

void front_ledger_free(void *ctx)
{
    struct front *f = ctx;
    while (f->reads_count > 0 && !replica_ledger_busy(f->replica)) {
        struct held_read r = f->reads[f->reads_head];
        f->reads_head = (f->reads_head + 1) % FRONT_READS_MAX;
        f->reads_count--;
        read_answer(f, r.conn_id, &r.request, r.body);
    }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static void handle_register(struct front *f, uint64_t conn, const struct tally_wire_header *h)
{
    if (!replica_ready(f->replica)) {
        reply_not_leader(f, conn, h);
        return;
    }
    struct tally_wire_session s;
    memset(&s, 0, sizeof(s));
    memcpy(s.cluster_id, f->cluster_id, 16);
    (void)engine_session(replica_engine(f->replica), h->client_id, &s.last_request);
    s.batch_max = TALLY_BATCH_MAX;
    s.body_max = TALLY_WIRE_BODY_MAX;
    reply(f, conn, h, TALLY_WIRE_OK, 0, &s, sizeof(s));
}

void front_frame(void *ctx, uint64_t conn, const struct tally_wire_header *h, const uint8_t *body)
{
    struct front *f = ctx;
    switch (h->op) {
    case TALLY_WIRE_OP_STATUS: {
        struct tally_wire_replica_status st;
        replica_status(f->replica, &st);
        memcpy(st.cluster_id, f->cluster_id, 16);
        reply(f, conn, h, TALLY_WIRE_OK, st.applied_index, &st, sizeof(st));
        return;
    }
    case TALLY_WIRE_OP_REGISTER:
        handle_register(f, conn, h);
        return;
    case TALLY_WIRE_OP_POST:
    case TALLY_WIRE_OP_POST_AT:
        handle_post(f, conn, h, body);
        return;
    case TALLY_WIRE_OP_LEDGER: {
        struct tally_wire_ledger_request q;
        memcpy(&q, body, sizeof(q));
        struct engine_status st;
        engine_status(replica_engine(f->replica), &st);
        uint32_t size;
        uint16_t status = replica_ledger_chunk(f->replica, &q, f->body, &size);
        reply(f, conn, h, status, st.applied_index, status == TALLY_WIRE_OK ? f->body : NULL,
              status == TALLY_WIRE_OK ? size : 0);
        return;
    }
    default:
        if (f->reads_count == 0 && !replica_ledger_busy(f->replica))
            read_answer(f, conn, h, body);
        else if (!read_answer_cached(f, conn, h, body))
            read_hold(f, conn, h, body);
        return;
    }
}
