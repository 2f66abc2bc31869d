/* fuzz_front.c: libFuzzer target for tallyd's request handler (server/front.c), the code behind
 * the frame layer: sessions (REGISTER), POST with its table of pending requests, every read,
 * STATUS, LEDGER copy requests, and the error replies of each.
 *
 * What is real and what stands in
 * -------------------------------
 * Real: server/front.c as tallyd links it; the ledger engine on a real LMDB directory (created
 * once per process under /tmp, no fsync, filled with three programs, members, accruals, holds, a
 * redemption and a transfer so that reads find data; started afresh every FUZZ_ENTRIES_PER_LEDGER
 * entries); server/copies.c serving LEDGER requests on a real libuv loop (the copy is made on a
 * libuv worker thread; the loop is run to completion after every LEDGER frame, so each input
 * sees the copy finished, as a reader asking again later would); server/batch.c and
 * batch_apply applying committed POSTs, as replica.c's FSM does; common/wire.c judging
 * every frame before the front sees it (net.c's order: header, body size, body checksum, field
 * rules) and every reply the front sends.
 * Stand-ins (a Raft replica and a socket layer cannot run per input here):
 *   - the replica (replica_ready, replica_leader, replica_engine, replica_status, replica_submit,
 *     replica_clock, replica_ledger_chunk, replica_ledger_busy): no Raft. Readiness, leader
 *     knowledge, the clock mode (wall or client: POST_AT is refused or served) and whether the
 *     ledger is committing (reads are then held, or ACCOUNT reads answered from the member
 *     cache; the input decides when the commit ends, and front_ledger_free is called as the
 *     replica calls it) are set by the input.
 *     replica_submit mirrors the real one's refusals (NOT_LEADER when not ready, TOO_LARGE,
 *     BUSY beyond one entry of TALLY_BATCH_MAX postings, or BUSY / NOT_LEADER when the input
 *     says so; the real one gathers up to REPLICA_GATHER_MAX entries before BUSY, a threshold
 *     the front does not see: what is fuzzed is how the front answers a BUSY) and queues the
 *     request; the input decides when the queue "commits" (one entry
 *     applied to the real engine, each request answered through front_posted as replica.c's
 *     applied_cb does) or "fails" (leadership lost: TALLY_ENOT_LEADER; storage: -EIO).
 *   - net_send: captures the reply instead of queueing it on a socket, and checks it.
 *   - log_event: discards the lines (copies.c logs every copy it makes).
 *
 * Input format
 * ------------
 * The input is a byte stream as one client would send it: frames one after another (a 64-byte
 * header, then body_size bytes, cut short at the end of the input), at most FUZZ_FRAMES_MAX. So
 * the protocol test vectors are inputs as they are, and so are their concatenations. Each frame
 * is sealed before it is judged (magic, version and both checksums made right: fuzz_frame.c
 * covers the frames the frame layer refuses), so the 8 bytes of checksum_body in the input are
 * free: they steer the harness (struct ctl below): the connection the frame arrives on, an event
 * before it (commit or fail the queued POSTs, readiness toggled), and whether the header and
 * body are pulled into the small space where requests meet the ledger's data and each other
 * (client ids 1..4, request numbers 0..7, programs 1..3, members 1..16, posting ids 1..64).
 * At the end of each input the queue commits and the replica is ready again, so no pending POST
 * outlives its input.
 *
 * What counts as a finding
 * ------------------------
 * A crash or sanitizer report (bodies are copied into buffers of their exact size, so a read past
 * a body is one); and, checked on every reply: a reply that does not pass the frame layer's
 * reply judgement (header, body size, body checksum, field rules) or exceeds TALLY_WIRE_BODY_MAX
 * (net_send would refuse it and the client would wait forever); a reply whose op, client id or
 * request number is not its request's; INTERNAL for a request (nothing fails here: INTERNAL
 * sends the client to another replica, which would answer the same); a request other than POST
 * answered other than exactly once, during its frame, except a read held while the ledger
 * commits, which must be answered when the commit ends, in arrival order, on its connection, and
 * only then (a read held with the ledger free is a finding); and for POST and POST_AT, a model of the
 * session table: a POST while not ready answered NOT_LEADER; a POST_AT to a wall-clock replica
 * answered CLOCK_MODE and not submitted; a retry of the pending request (same client, same
 * number) not answered now but once, when its entry commits, on the connection the retry came on;
 * another number while one is pending answered BUSY and not submitted; otherwise submitted exactly
 * once, then answered once, with as many results as it had postings (or REQUEST_REUSED), or with
 * the status of the submit's refusal.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "batch.h"
#include "copies.h"
#include "engine.h"
#include "front.h"
#include "log.h"
#include "tally_errors.h"
#include "tally_results.h"
#include "tally_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frames per input: enough for a session's story (register, posts, retries, reads), few enough
 * that an input runs in milliseconds. */
#define FUZZ_FRAMES_MAX 64u
/* Connections the frames of an input arrive on. */
#define FUZZ_CONNS 4u
/* Entries a ledger takes before the next starts afresh: a long run must not fill /tmp. */
#define FUZZ_ENTRIES_PER_LEDGER 5000u
/* Replies one front call may send: one per request, one per queued request on a commit, or
 * one per held read when the ledger's commit ends. */
#define FUZZ_REPLIES_MAX FUZZ_FRAMES_MAX
#define FUZZ_T0_MS       1767225600000ull /* 2026-01-01 */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_front: check failed: %s: ", #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#ifdef FUZZ_FRONT_STATS
static unsigned long stats[16][16];
static void stats_print(void)
{
    for (int o = 0; o < 16; o++)
        for (int st = 0; st < 16; st++)
            if (stats[o][st])
                fprintf(stderr, "op %d status %d: %lu\n", o, st, stats[o][st]);
}
#endif

/* ---- stand-ins: the network layer and the log ------------------------------------------------ */

struct net {
    int unused; /* front.c only passes the pointer to net_send */
};

struct sent {
    uint64_t conn;
    struct tally_wire_header h;
    uint32_t results; /* POST OK: results in the body */
    uint8_t head[64]; /* the body's first bytes (a LEDGER chunk's header) */
};

static struct sent sent[FUZZ_REPLIES_MAX];
static uint32_t nsent;

/* The reply is judged as libtally judges what it receives (common/wire.c), then recorded. */
int net_send(struct net *n, uint64_t conn_id, const struct tally_wire_header *h, const void *body)
{
    (void)n;
    CHECK(h->body_size <= TALLY_WIRE_BODY_MAX, "op %u reply body %u bytes", h->op, h->body_size);
    struct tally_wire_header d;
    enum tally_wire_fault f = tally_wire_header_decode(&d, h, sizeof(*h), TALLY_WIRE_TO_CLIENT);
    CHECK(f == TALLY_WIRE_FAULT_NONE, "op %u status %u: header fault %d", h->op, h->status, f);
    f = tally_wire_body_size_check(&d);
    CHECK(f == TALLY_WIRE_FAULT_NONE, "op %u status %u size %u: fault %d", h->op, h->status,
          h->body_size, f);
    /* The body at its exact size, so that the judges read nothing beyond it. */
    uint8_t *copy = malloc(d.body_size ? d.body_size : 1);
    CHECK(copy != NULL, "out of memory");
    if (d.body_size)
        memcpy(copy, body, d.body_size);
    f = tally_wire_body_verify(&d, copy);
    CHECK(f == TALLY_WIRE_FAULT_NONE, "op %u: body checksum", h->op);
    f = tally_wire_reply_check(&d, copy);
    CHECK(f == TALLY_WIRE_FAULT_NONE, "op %u status %u size %u: reply fault %d", h->op, h->status,
          h->body_size, f);
    CHECK(nsent < FUZZ_REPLIES_MAX, "more than %u replies at once", FUZZ_REPLIES_MAX);
    struct sent *s = &sent[nsent++];
    memset(s, 0, sizeof(*s));
    s->conn = conn_id;
    s->h = d;
    s->results = d.body_size / (uint32_t)sizeof(struct tally_result);
    memcpy(s->head, copy, d.body_size < sizeof(s->head) ? d.body_size : sizeof(s->head));
    free(copy);
    return 0;
}

void log_event(const char *level, const char *event, const char *fmt, ...)
{
    (void)level;
    (void)event;
    (void)fmt;
}

/* ---- stand-in: the replica --------------------------------------------------------------------
 */

/* A POST the front submitted and the harness has not committed or failed yet. */
struct queued {
    uint8_t client_id[16];
    uint64_t request;
    uint32_t first, count;
    void *ctx;
    uint64_t conn; /* where its reply must go: the connection of its latest retry */
    uint16_t op;   /* POST or POST_AT: what its reply must echo */
};

struct replica {
    struct engine *engine;
    struct copies *copies;
    char dir[64];
    bool ready;
    bool leader_known;
    bool clock_client; /* replica_clock: REPLICA_CLOCK_CLIENT */
    bool ledger_busy;  /* replica_ledger_busy: a ledger commit is in flight */
    int refuse;        /* replica_submit answers this for the current frame (0: it accepts) */
    uint32_t submits;
    uint32_t nqueued, npostings;
    struct queued queued[BATCH_REQUESTS_MAX];
    struct tally_posting postings[TALLY_BATCH_MAX];
    uint64_t index_next, now;
};

static struct replica replica;
static uv_loop_t loop;
static struct front *front;
static struct net net;
static const uint8_t cluster_id[16] = {0x7a, 0x11, [15] = 1};

bool replica_ready(const struct replica *r)
{
    return r->ready;
}

void replica_leader(const struct replica *r, uint64_t *id, const char **client_address)
{
    *id = r->ready ? 1 : r->leader_known ? 2 : 0;
    *client_address = r->ready ? "127.0.0.1:7001" : r->leader_known ? "127.0.0.1:7002" : "";
}

struct engine *replica_engine(struct replica *r)
{
    return r->engine;
}

void replica_status(const struct replica *r, struct tally_wire_replica_status *out)
{
    memset(out, 0, sizeof(*out));
    struct engine_status st;
    engine_status(r->engine, &st);
    out->replica_id = 1;
    const char *leader_address;
    replica_leader(r, &out->leader_id, &leader_address);
    out->term = 1;
    out->commit_index = st.applied_index;
    out->applied_index = st.applied_index;
    out->last_timestamp = st.last_timestamp;
    out->entries = st.entries;
    out->chain_head = st.chain_head;
    memcpy(out->digest, st.digest, sizeof(out->digest));
    out->role = r->ready ? TALLY_WIRE_ROLE_LEADER : TALLY_WIRE_ROLE_FOLLOWER;
    out->voters = 3;
    out->sessions = engine_sessions(r->engine);
    (void)tally_wire_address_set(out->address, "127.0.0.1:7001");
    if (leader_address[0] != '\0')
        (void)tally_wire_address_set(out->leader_address, leader_address);
}

static struct queued *queued_find(struct replica *r, const uint8_t client_id[16])
{
    for (uint32_t i = 0; i < r->nqueued; i++)
        if (memcmp(r->queued[i].client_id, client_id, 16) == 0)
            return &r->queued[i];
    return NULL;
}

bool replica_ledger_busy(const struct replica *r)
{
    return r->ledger_busy;
}

enum replica_clock replica_clock(const struct replica *r)
{
    return r->clock_client ? REPLICA_CLOCK_CLIENT : REPLICA_CLOCK_WALL;
}

int replica_submit(struct replica *r, const uint8_t client_id[16], uint64_t request, uint64_t at_ms,
                   const struct tally_posting *postings, uint32_t count, void *ctx)
{
    r->submits++;
    CHECK(queued_find(r, client_id) == NULL, "a second POST in flight for one session");
    CHECK(at_ms <= TALLY_WIRE_AT_MAX, "POST_AT's at above the wire's maximum reached the replica");
    if (!r->ready)
        return TALLY_ENOT_LEADER;
    if (count == 0 || count > TALLY_BATCH_MAX)
        return TALLY_ETOO_LARGE;
    CHECK(at_ms == 0 || r->clock_client, "POST_AT submitted to a wall-clock replica");
    if (r->refuse != 0)
        return r->refuse;
    if (r->npostings + count > TALLY_BATCH_MAX)
        return TALLY_EBUSY;
    struct queued *q = &r->queued[r->nqueued++];
    memcpy(q->client_id, client_id, 16);
    q->request = request;
    q->first = r->npostings;
    q->count = count;
    q->ctx = ctx;
    memcpy(&r->postings[r->npostings], postings, (size_t)count * sizeof(*postings));
    r->npostings += count;
    return 0;
}

uint16_t replica_ledger_chunk(struct replica *r, const struct tally_wire_ledger_request *q,
                              uint8_t *body, uint32_t *size)
{
    return copies_serve(r->copies, r->engine, q, body, size);
}

/* ---- committing and failing the queue ------------------------------------------------------- */

/* The one reply front_posted sent for queued request q. */
static const struct sent *posted_reply(const struct queued *q)
{
    CHECK(nsent == 1, "%u replies to one completed POST", nsent);
    const struct sent *s = &sent[0];
    CHECK(s->conn == q->conn, "POST reply on connection %lu, the client waits on %lu",
          (unsigned long)s->conn, (unsigned long)q->conn);
    CHECK(s->h.op == q->op, "POST answered with op %u, not %u", s->h.op, q->op);
    CHECK(memcmp(s->h.client_id, q->client_id, 16) == 0, "POST reply to another client");
    CHECK(s->h.request == q->request, "POST reply to request %lu, not %lu",
          (unsigned long)s->h.request, (unsigned long)q->request);
    return s;
}

/* One entry with every queued request, applied as replica.c's FSM applies it, each request then
 * answered through front_posted as replica.c's applied_cb does. */
static void queue_commit(struct replica *r)
{
    if (r->nqueued == 0)
        return;
    static uint8_t payload[sizeof(struct batch_header) +
                           BATCH_REQUESTS_MAX * sizeof(struct batch_request) +
                           TALLY_BATCH_MAX * sizeof(struct tally_posting)];
    static struct batch_request requests[BATCH_REQUESTS_MAX];
    static struct engine_request ereq[BATCH_REQUESTS_MAX];
    static struct tally_result results[TALLY_BATCH_MAX];
    static uint8_t status[BATCH_REQUESTS_MAX];
    r->now += 1000;
    struct batch_header h = {
        BATCH_MAGIC, BATCH_VERSION, BATCH_POSTS, r->now, r->nqueued, r->npostings, 0};
    for (uint32_t i = 0; i < r->nqueued; i++) {
        memset(&requests[i], 0, sizeof(requests[i]));
        memcpy(requests[i].client_id, r->queued[i].client_id, 16);
        requests[i].request = r->queued[i].request;
        requests[i].count = r->queued[i].count;
    }
    size_t len = batch_size(r->nqueued, r->npostings);
    memcpy(payload, &h, sizeof(h));
    memcpy(payload + sizeof(h), requests, (size_t)r->nqueued * sizeof(*requests));
    memcpy(payload + sizeof(h) + (size_t)r->nqueued * sizeof(*requests), r->postings,
           (size_t)r->npostings * sizeof(*r->postings));
    batch_seal(payload, len);
    struct batch_view b;
    CHECK(batch_decode(payload, len, &b) == 0, "a sealed entry does not decode");
    uint64_t index = r->index_next++;
    int rc = batch_apply(r->engine, index, &b, ereq, results, status);
    CHECK(rc == 0, "batch_apply: %d %s", rc, tally_strerror(rc));
    uint32_t n = r->nqueued;
    r->nqueued = r->npostings = 0; /* front_posted may not resubmit, but be clean */
    for (uint32_t i = 0; i < n; i++) {
        struct queued *q = &r->queued[i];
        nsent = 0;
        front_posted(q->ctx, 0, status[i], &results[q->first], q->count, index);
        const struct sent *s = posted_reply(q);
        if (status[i] == ENGINE_REQUEST_OLD) {
            CHECK(s->h.status == TALLY_WIRE_REQUEST_REUSED, "OLD answered %u", s->h.status);
        } else {
            CHECK(s->h.status == TALLY_WIRE_OK, "applied POST answered %u", s->h.status);
            CHECK(s->results == q->count, "%u results for %u postings", s->results, q->count);
            CHECK(s->h.index == index, "POST reply index");
        }
        for (uint32_t k = 0; k < q->count; k++)
            CHECK(results[q->first + k].code < TALLY_RESULT_CODE_LIMIT, "unknown result code");
    }
    nsent = 0;
}

/* Every queued request fails, as replica.c's proposal_fail fails them. */
static void queue_fail(struct replica *r, int status)
{
    uint32_t n = r->nqueued;
    r->nqueued = r->npostings = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct queued *q = &r->queued[i];
        nsent = 0;
        front_posted(q->ctx, status, 0, NULL, 0, 0);
        const struct sent *s = posted_reply(q);
        uint16_t want = status == TALLY_ENOT_LEADER ? TALLY_WIRE_NOT_LEADER : TALLY_WIRE_INTERNAL;
        CHECK(s->h.status == want, "failed POST answered %u, not %u", s->h.status, want);
    }
    nsent = 0;
}

/* ---- the ledger --------------------------------------------------------------------------- */

static void id_small(uint8_t id[16], uint64_t n)
{
    memset(id, 0, 16);
    for (int i = 0; i < 8; i++)
        id[15 - i] = (uint8_t)(n >> (8 * i));
}

static struct tally_posting posting(uint64_t id, uint32_t program, uint16_t kind, uint64_t member,
                                    uint64_t amount)
{
    struct tally_posting p;
    memset(&p, 0, sizeof(p));
    id_small(p.id, id);
    p.program = program;
    p.kind = kind;
    p.account = member;
    p.amount = amount;
    return p;
}

/* Programs 1..3 (3 with expiry at the end of the 12th month), members 1..8 open in each, points
 * on all of program 1's, a pending accrual, a redemption, a transfer, two holds (one captured):
 * posting ids 1..64, the space steered POSTs and POSTING / HOLD reads use. */
static void ledger_fill(struct replica *r)
{
    static struct tally_posting p[64];
    static struct tally_result res[64];
    uint32_t n = 0;
    uint64_t id = 1;
    for (uint32_t prog = 1; prog <= 3; prog++) {
        struct tally_posting pp = posting(id++, prog, TALLY_KIND_PROGRAM, 0, 0);
        memset(&pp.config, 0, sizeof(pp.config));
        pp.config.expiry = prog == 3 ? TALLY_EXPIRY_MONTH : TALLY_EXPIRY_NONE;
        pp.config.expiry_n = prog == 3 ? 12 : 0;
        pp.config.window_months = 12;
        pp.config.validity_months = 12;
        pp.config.tier_count = 3;
        pp.config.hold_timeout_ms = 15 * 60000ull;
        pp.config.thresholds[0] = 1000;
        pp.config.thresholds[1] = 5000;
        p[n++] = pp;
    }
    for (uint32_t prog = 1; prog <= 3; prog++)
        for (uint64_t m = 1; m <= 8; m++)
            p[n++] = posting(id++, prog, TALLY_KIND_OPEN, m, 0);
    for (uint64_t m = 1; m <= 8; m++) {
        p[n] = posting(id++, 1, TALLY_KIND_ACCRUE, m, 500 * m);
        p[n++].value = 1000 * m;
    }
    p[n] = posting(id++, 1, TALLY_KIND_ACCRUE, 1, 250);
    p[n].flags = TALLY_FLAG_PENDING;
    p[n++].duration_ms = 7 * 86400000ull;
    p[n++] = posting(id++, 1, TALLY_KIND_REDEEM, 3, 200);
    struct tally_posting t = posting(id++, 1, TALLY_KIND_TRANSFER, 4, 50);
    t.account2 = 5;
    p[n++] = t;
    uint64_t hold = id;
    p[n++] = posting(id++, 1, TALLY_KIND_HOLD, 2, 100);
    p[n++] = posting(id++, 1, TALLY_KIND_HOLD, 6, 300);
    struct tally_posting cap = posting(id++, 1, TALLY_KIND_CAPTURE, 6, 100);
    id_small(cap.ref, hold + 1);
    p[n++] = cap;
    p[n++] = posting(id++, 3, TALLY_KIND_ACCRUE, 7, 900);
    CHECK(n <= 64 && id <= 65, "fill too large");
    int rc = engine_apply(r->engine, r->index_next++, r->now, p, n, res);
    CHECK(rc == 0, "filling the ledger: %d %s", rc, tally_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        CHECK(res[i].code == TALLY_OK, "fill posting %u: result %u", i, res[i].code);
}

static void ledger_remove(struct replica *r)
{
    engine_close(r->engine);
    r->engine = NULL;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/ledger'", r->dir);
    CHECK(system(cmd) == 0, "%s", cmd);
}

static void ledger_fresh(struct replica *r)
{
    if (r->engine != NULL) {
        copies_wait(r->copies);
        ledger_remove(r);
    }
    char path[96];
    snprintf(path, sizeof(path), "%s/ledger", r->dir);
    CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    o.member_cache = ENGINE_MEMBER_CACHE_MIN;
    int rc = engine_open(&r->engine, path, &o);
    CHECK(rc == 0, "engine_open: %d %s", rc, tally_strerror(rc));
    r->index_next = 1;
    r->now = FUZZ_T0_MS;
    ledger_fill(r);
}

static void cleanup(void)
{
    if (replica.engine == NULL)
        return;
    copies_wait(replica.copies);
    ledger_remove(&replica);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", replica.dir);
    (void)system(cmd);
}

static void start(void)
{
    snprintf(replica.dir, sizeof(replica.dir), "/tmp/tally-fuzz-front-XXXXXX");
    CHECK(mkdtemp(replica.dir) != NULL, "mkdtemp");
    CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    CHECK(copies_init(&replica.copies, &loop, replica.dir) == 0, "copies_init");
    ledger_fresh(&replica);
    CHECK(front_init(&front, &net, &replica, cluster_id) == 0, "front_init");
    atexit(cleanup);
#ifdef FUZZ_FRONT_STATS
    atexit(stats_print);
#endif
}

/* ---- steering ------------------------------------------------------------------------------ */

/* The harness's control bytes: the input's checksum_body field, which sealing overwrites. */
struct ctl {
    uint8_t conn;   /* % FUZZ_CONNS */
    uint8_t event;  /* % 16: 8 commit, 9 fail NOT_LEADER, 10 fail -EIO, 11 toggle ready,
                       12 a ledger commit begins or ends */
    uint8_t steer;  /* bit 0 header, bit 1 body, bit 2 leader unknown, bit 3 client clock */
    uint8_t refuse; /* % 8: 6 submit refuses BUSY, 7 NOT_LEADER; else it accepts */
    uint8_t unused[4];
};
_Static_assert(sizeof(struct ctl) == 8, "control bytes fill checksum_body");

/* Last LEDGER chunk seen, so steered requests can ask for the copy by its id and offset. */
static uint64_t copy_id_seen, copy_size_seen;

static void steer_id(uint8_t id[16])
{
    uint8_t last = id[15];
    memset(id, 0, 16);
    id[15] = (uint8_t)(1 + last % 64);
}

static void steer_posting(struct tally_posting *p)
{
    p->program = 1 + p->program % 3;
    p->kind = (uint16_t)(1 + p->kind % 13);
    steer_id(p->id);
    if (p->kind == TALLY_KIND_PROGRAM)
        return;
    steer_id(p->ref);
    p->account = 1 + p->account % 16;
    p->account2 = 1 + p->account2 % 16;
    p->amount %= 2000;
    p->duration_ms %= 40ull * 86400000ull;
}

static void steer_header(struct tally_wire_header *h, uint64_t applied)
{
    uint8_t c = h->client_id[15];
    memset(h->client_id, 0, 16);
    h->client_id[15] = (uint8_t)(1 + c % 4);
    h->request %= 8;
    h->index %= applied + 2;
}

/* Pull a request body's fields toward the ledger's data; the field rules are kept. */
static void steer_body(uint16_t op, uint8_t *body, uint32_t size, const struct engine_status *st)
{
    switch (op) {
    case TALLY_WIRE_OP_POST:
    case TALLY_WIRE_OP_POST_AT: {
        uint32_t first =
            op == TALLY_WIRE_OP_POST_AT ? (uint32_t)sizeof(struct tally_wire_post_at) : 0u;
        if (op == TALLY_WIRE_OP_POST_AT && size >= first) { /* around the ledger's time */
            struct tally_wire_post_at q;
            memcpy(&q, body, sizeof(q));
            q.at = FUZZ_T0_MS + q.at % (st->last_timestamp - FUZZ_T0_MS + 60 * 86400000ull);
            memcpy(body, &q, sizeof(q));
        }
        for (uint32_t off = first; off + sizeof(struct tally_posting) <= size;
             off += (uint32_t)sizeof(struct tally_posting)) {
            struct tally_posting p;
            memcpy(&p, body + off, sizeof(p));
            steer_posting(&p);
            memcpy(body + off, &p, sizeof(p));
        }
        return;
    }
    case TALLY_WIRE_OP_PROGRAM:
    case TALLY_WIRE_OP_ACCOUNT:
    case TALLY_WIRE_OP_BALANCE_AT:
    case TALLY_WIRE_OP_HISTORY:
    case TALLY_WIRE_OP_LOTS:
        if (size >= 4) {
            uint32_t program;
            memcpy(&program, body, 4);
            program = 1 + program % 4; /* 4: a program that does not exist */
            memcpy(body, &program, 4);
        }
        if (op != TALLY_WIRE_OP_PROGRAM && size >= 16) {
            uint64_t member;
            memcpy(&member, body + 8, 8);
            member = 1 + member % 16;
            memcpy(body + 8, &member, 8);
        }
        if (op == TALLY_WIRE_OP_BALANCE_AT && size >= 24) {
            uint64_t at;
            memcpy(&at, body + 16, 8);
            at =
                FUZZ_T0_MS - 86400000ull + at % (st->last_timestamp - FUZZ_T0_MS + 2 * 86400000ull);
            memcpy(body + 16, &at, 8);
        }
        return;
    case TALLY_WIRE_OP_ENTRY:
        if (size >= 8) {
            uint64_t seq;
            memcpy(&seq, body, 8);
            seq = 1 + seq % (st->entries + 2);
            memcpy(body, &seq, 8);
        }
        return;
    case TALLY_WIRE_OP_POSTING:
    case TALLY_WIRE_OP_HOLD:
        if (size >= 16)
            steer_id(body);
        return;
    case TALLY_WIRE_OP_LEDGER:
        if (size >= sizeof(struct tally_wire_ledger_request)) {
            struct tally_wire_ledger_request q;
            memcpy(&q, body, sizeof(q));
            q.copy_id = (q.copy_id & 1) ? copy_id_seen : 0;
            q.offset = q.copy_id ? q.offset % (copy_size_seen + 2) : 0;
            q.min_index %= st->applied_index + 2;
            memcpy(body, &q, sizeof(q));
        }
        return;
    default:
        return;
    }
}

/* ---- one frame ------------------------------------------------------------------------------ */

/* What the front must do with a POST, by the model of its session table (front.c). */
static void post_expect(const struct tally_wire_header *h, uint64_t conn, uint32_t submits_before)
{
    struct queued *q = queued_find(&replica, h->client_id);
    bool submitted = replica.submits != submits_before;
    if (!replica.ready) {
        CHECK(!submitted && nsent == 1 && sent[0].h.status == TALLY_WIRE_NOT_LEADER,
              "POST while not ready: %u replies", nsent);
        return;
    }
    if (h->op == TALLY_WIRE_OP_POST_AT && !replica.clock_client) {
        CHECK(!submitted && nsent == 1 && sent[0].h.status == TALLY_WIRE_CLOCK_MODE,
              "POST_AT to a wall-clock replica: %u replies", nsent);
        return;
    }
    if (q != NULL && !submitted) {
        if (q->request == h->request) {
            CHECK(nsent == 0, "a retry of the pending POST answered at once (%u)",
                  sent[0].h.status);
            q->conn = conn; /* the reply goes where the client waits now */
        } else {
            CHECK(nsent == 1 && sent[0].h.status == TALLY_WIRE_BUSY,
                  "a second POST while one is pending: %u replies", nsent);
        }
        return;
    }
    CHECK(submitted, "a POST neither submitted nor matched to the pending one");
    if (q != NULL) { /* the submit accepted it: it is the last queued */
        CHECK(q == &replica.queued[replica.nqueued - 1] && q->request == h->request, "queue");
        CHECK(nsent == 0, "a submitted POST answered at once (%u)", sent[0].h.status);
        q->conn = conn;
        q->op = h->op;
        return;
    }
    CHECK(nsent == 1, "a refused POST answered %u times", nsent);
    uint16_t s = sent[0].h.status;
    CHECK(s == TALLY_WIRE_BUSY || s == TALLY_WIRE_NOT_LEADER || s == TALLY_WIRE_TOO_LARGE,
          "a refused POST answered %u", s);
}

/* Reads the front holds while the ledger commits, oldest first (its request). */
static struct tally_wire_header held[FUZZ_FRAMES_MAX];
static uint64_t held_conn[FUZZ_FRAMES_MAX];
static uint32_t nheld;

/* The reads front_frame answers in its default branch (front.c): those it may hold. */
static bool op_is_read(uint16_t op)
{
    return op != TALLY_WIRE_OP_REGISTER && op != TALLY_WIRE_OP_POST &&
           op != TALLY_WIRE_OP_POST_AT && op != TALLY_WIRE_OP_STATUS &&
           op != TALLY_WIRE_OP_LEDGER;
}

/* The ledger's commit ends, as replica.c's ledger_free: every held read is answered now, once,
 * in order, on its connection. */
static void ledger_free(void)
{
    replica.ledger_busy = false;
    nsent = 0;
    front_ledger_free(front);
    CHECK(nsent == nheld, "%u reads held, %u answered when the commit ended", nheld, nsent);
    for (uint32_t i = 0; i < nheld; i++) {
        CHECK(sent[i].conn == held_conn[i], "a held read answered on another connection");
        CHECK(sent[i].h.op == held[i].op && sent[i].h.request == held[i].request &&
                  memcmp(sent[i].h.client_id, held[i].client_id, 16) == 0,
              "held reads answered out of order");
        CHECK(sent[i].h.status != TALLY_WIRE_INTERNAL, "a held read answered INTERNAL");
    }
    nheld = 0;
    nsent = 0;
}

static void frame_event(const struct ctl *c)
{
    switch (c->event % 16) {
    case 8:
        queue_commit(&replica);
        break;
    case 9:
        queue_fail(&replica, TALLY_ENOT_LEADER);
        replica.ready = false; /* leadership lost */
        break;
    case 10:
        queue_fail(&replica, -EIO);
        break;
    case 11:
        replica.ready = !replica.ready;
        break;
    case 12:
        if (replica.ledger_busy)
            ledger_free();
        else
            replica.ledger_busy = true;
        break;
    default:
        break;
    }
    replica.leader_known = (c->steer & 4) == 0;
    replica.clock_client = (c->steer & 8) != 0;
    replica.refuse = c->refuse % 8 == 6 ? TALLY_EBUSY : c->refuse % 8 == 7 ? TALLY_ENOT_LEADER : 0;
}

/* One frame: steered, sealed, judged as net.c judges it, handed to the front, replies checked. */
static void frame_run(struct tally_wire_header h, uint8_t *body)
{
    struct ctl c;
    memcpy(&c, &h.checksum_body, sizeof(c));
    frame_event(&c);
    uint64_t conn = 1 + c.conn % FUZZ_CONNS;
    struct engine_status st;
    engine_status(replica.engine, &st);
    if (c.steer & 1)
        steer_header(&h, st.applied_index);
    if (c.steer & 2)
        steer_body(h.op, body, h.body_size, &st);
    memcpy(h.magic, TALLY_WIRE_MAGIC, TALLY_WIRE_MAGIC_SIZE);
    h.version = TALLY_WIRE_VERSION;
    tally_wire_header_seal(&h, body);

    struct tally_wire_header d;
    if (tally_wire_header_decode(&d, &h, sizeof(h), TALLY_WIRE_TO_SERVER) !=
            TALLY_WIRE_FAULT_NONE ||
        tally_wire_body_size_check(&d) != TALLY_WIRE_FAULT_NONE ||
        tally_wire_body_verify(&d, body) != TALLY_WIRE_FAULT_NONE ||
        tally_wire_request_check(&d, body) != TALLY_WIRE_FAULT_NONE)
        return; /* the network layer answers it (fuzz_frame.c): the front never sees it */

    nsent = 0;
    uint32_t submits_before = replica.submits;
    front_frame(front, conn, &d, body);
#ifdef FUZZ_FRONT_STATS
    stats[d.op % 16][nsent ? sent[0].h.status % 16 : 15]++;
#endif
    for (uint32_t i = 0; i < nsent; i++) {
        CHECK(sent[i].conn == conn, "reply on another connection");
        CHECK(sent[i].h.op == d.op, "op %u answered as %u", d.op, sent[i].h.op);
        CHECK(memcmp(sent[i].h.client_id, d.client_id, 16) == 0, "reply to another client");
        CHECK(sent[i].h.request == d.request, "reply to another request");
    }
    /* Nothing here fails (a healthy disk, a copy that can be made): INTERNAL would send the
     * client to retry elsewhere for nothing. */
    CHECK(nsent == 0 || sent[0].h.status != TALLY_WIRE_INTERNAL, "op %u answered INTERNAL", d.op);
    if (d.op == TALLY_WIRE_OP_POST || d.op == TALLY_WIRE_OP_POST_AT) {
        post_expect(&d, conn, submits_before);
    } else if (nsent == 0 && op_is_read(d.op)) { /* held: answered when the commit ends */
        CHECK(replica.ledger_busy || nheld > 0, "op %u held with the ledger free", d.op);
        if (d.op == TALLY_WIRE_OP_ACCOUNT) { /* held only when not in the member cache */
            struct tally_wire_account_request q;
            struct tally_account a;
            memcpy(&q, body, sizeof(q));
            CHECK(engine_account_cached(replica.engine, q.program, q.member, &a) == 1,
                  "an ACCOUNT read of a cached account held");
        }
        held_conn[nheld] = conn;
        held[nheld++] = d;
        CHECK(replica.submits == submits_before, "op %u submitted", d.op);
    } else {
        CHECK(nsent == 1, "op %u answered %u times", d.op, nsent);
        CHECK(replica.submits == submits_before, "op %u submitted", d.op);
    }
    if (d.op == TALLY_WIRE_OP_LEDGER) {
        if (sent[0].h.status == TALLY_WIRE_OK) {
            struct tally_wire_ledger_chunk ch;
            memcpy(&ch, sent[0].head, sizeof(ch));
            copy_id_seen = ch.copy_id;
            copy_size_seen = ch.size;
        }
        uv_run(&loop, UV_RUN_DEFAULT); /* a copy started now completes before the next frame */
    }
    nsent = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (front == NULL)
        start();
    replica.ready = true;
    replica.leader_known = true;
    size_t off = 0;
    for (uint32_t frames = 0; frames < FUZZ_FRAMES_MAX; frames++) {
        if (size - off < TALLY_WIRE_HEADER_SIZE)
            break;
        struct tally_wire_header h;
        memcpy(&h, data + off, sizeof(h));
        off += sizeof(h);
        size_t avail = size - off;
        if (h.body_size > avail)
            h.body_size = (uint32_t)avail;
        if (h.body_size > TALLY_WIRE_BODY_MAX)
            h.body_size = TALLY_WIRE_BODY_MAX;
        /* The body alone in a buffer of its size: a read past it is a finding. */
        uint8_t *body = malloc(h.body_size);
        CHECK(body != NULL || h.body_size == 0, "out of memory");
        if (h.body_size)
            memcpy(body, data + off, h.body_size);
        off += h.body_size;
        frame_run(h, body);
        free(body);
    }
    ledger_free();
    queue_commit(&replica);
    replica.refuse = 0;
    if (replica.index_next > FUZZ_ENTRIES_PER_LEDGER)
        ledger_fresh(&replica);
    return 0;
}
