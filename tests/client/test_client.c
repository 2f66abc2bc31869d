/* test_client.c: libtally's protocol behaviour (include/tally.h, client/), against fake replicas.
 *
 * WHY A FAKE. The project's rule is "mocks only where the real thing cannot run here". tallyd is
 * being written at the same time as libtally and cannot run yet, and even when it can, the
 * faults these tests need on demand (drop the connection after applying a POST, answer BUSY
 * exactly three times, corrupt one reply's checksum, sit on a reply past the deadline) are not
 * things a real replica does when asked. So the fake below is a PROTOCOL CONFORMANCE DOUBLE: a
 * thread with listening sockets on 127.0.0.1 that speaks the real wire protocol through the
 * real common/wire.c (frames are sealed and judged by the same code tallyd uses), keeps
 * sessions and a reply cache keyed by (client id, request number) as docs/PROTOCOL.md section 7
 * specifies, and misbehaves only when a test tells it to. It has no ledger: every posting it
 * executes gets OK (or EXISTS when its id was executed before, like law 4). Whole-cluster
 * behaviour (failover, replication, real results) belongs to tests/cluster/, which runs real
 * tallyd processes; these tests stay as the client's conformance suite beside them.
 *
 * What is proven: redirects are followed (to an address in the list or outside it, and past a
 * replica that knows no leader); a retried request keeps its request number and its bytes (the
 * fake records every POST frame it receives); the fake executes each logical POST exactly once
 * whatever the faults; the deadline is kept (TALLY_ETIMEOUT within the deadline plus a small
 * slack, TALLY_ECLOSED when nothing can be reached); a reply with a bad header checksum, a bad
 * body checksum, the wrong request number or the wrong result count is treated as a lost
 * connection and the request sent again; BUSY is retried with backoff; sessions resume their
 * numbering and survive SESSION_EXPIRED as docs/PROTOCOL.md "Client semantics" says (sent again
 * when no copy can have been executed, TALLY_ECLOSED when one may have been), or register at the
 * first POST when asked to; reads carry STALE_OK and min_index, report the applied index, and a
 * read answered below its min_index is asked again; STATUS asks every replica; ids are strictly
 * increasing and time-ordered; POST_AT carries its time in a 16-byte prefix, retries and resends
 * it as the same bytes like a POST, and a wall-clock cluster's CLOCK_MODE is TALLY_ECONFIG; the
 * asynchronous POST is in flight until its reply is read, holds the session meanwhile, and after
 * a dropped connection, a corrupt reply or a NOT_LEADER is finished as the same request by the
 * blocking path, executed once. Everything runs on loopback, every loop and wait is bounded.
 */
#include "../support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"
#include "tally_wire.h"

/* ---------------------------------------------------------------------------------------------
 * Limits of the fake and of the tests
 * ------------------------------------------------------------------------------------------- */

#define FAKE_CONNS_MAX    8u  /* the client holds one connection, STATUS one more per replica */
#define FAKE_POSTS_MAX    64u /* POST frames recorded per fake */
#define FAKE_POSTINGS_MAX 4u  /* postings per POST the tests send (and the fake records whole) */
#define FAKE_CACHE_MAX    64u
#define FAKE_SESSIONS_MAX 8u
#define FAKE_APPLIED_MAX  256u
#define FAKE_POLL_MS      10   /* how often the fake's thread looks at its stop flag */
#define FAKE_RECV_MS      2000 /* a half-sent frame never holds the fake longer than this */
#define FAKE_RECORD_BYTES (TALLY_WIRE_HEADER_SIZE + FAKE_POSTINGS_MAX * 128u)

/* What "within the deadline" allows on top of it: scheduling, and the sanitizers' slowness. */
#define SLACK_MS 250u

static const uint8_t fake_cluster_id[16] = {0x7a, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

enum fake_corruption {
    CORRUPT_HEADER_CHECKSUM = 1, /* one bit of checksum_header flipped after sealing */
    CORRUPT_BODY_CHECKSUM = 2,   /* one bit of the body flipped after sealing */
    CORRUPT_REQUEST_NUMBER = 3,  /* a well-sealed reply to another request number */
    CORRUPT_RESULT_COUNT = 4,    /* a well-sealed POST reply with one result too few */
};

/* One POST frame as the fake received it. */
struct fake_frame {
    uint64_t request;
    uint32_t size; /* of the whole frame; bytes holds the first FAKE_RECORD_BYTES of it */
    uint8_t bytes[FAKE_RECORD_BYTES];
};

/* The reply cache: what the fake answered to (client id, request number). */
struct fake_cached {
    uint8_t client_id[16];
    uint64_t request;
    uint64_t checksum_body;
    uint64_t index;
    uint32_t count;
    struct tally_result results[FAKE_POSTINGS_MAX];
};

struct fake_session {
    uint8_t client_id[16];
    uint64_t last_request;
};

struct fake_applied {
    uint8_t id[16];
    uint64_t seq;
};

struct fake {
    int listen_fd;
    char address[TALLY_WIRE_ADDRESS_SIZE];
    pthread_t thread;
    bool running;
    atomic_bool stop;
    pthread_mutex_t mu;
    int conns[FAKE_CONNS_MAX];
    uint8_t *buf; /* one frame, TALLY_WIRE_FRAME_MAX */

    /* Behaviour, set by the tests (under mu once the thread runs). */
    bool follower;                        /* answer session ops and reads NOT_LEADER */
    char leader[TALLY_WIRE_ADDRESS_SIZE]; /* the address NOT_LEADER names ("" unknown) */
    uint32_t drop_posts;   /* execute a POST, then close the connection without answering */
    bool forget_on_drop;   /* ... and forget the session as well (a leader change without it) */
    uint32_t busy_posts;   /* answer POSTs BUSY this many times */
    uint32_t expire_posts; /* forget the session and answer SESSION_EXPIRED this many times */
    uint32_t corrupt_replies;
    enum fake_corruption corruption;
    uint32_t delay_ms;     /* sit on every POST reply this long (re-read while waiting) */
    uint32_t stale_reads;  /* answer reads STALE this many times */
    uint32_t behind_reads; /* answer reads OK but at an index below the one asked for */
    bool close_all;        /* close every connection (as an idle timeout would), then clear */
    bool clock_wall;       /* answer POST_AT CLOCK_MODE (tallyd --clock wall) */

    /* What happened. */
    struct fake_frame posts[FAKE_POSTS_MAX];
    uint32_t post_count;
    struct fake_cached cache[FAKE_CACHE_MAX];
    uint32_t cache_count;
    struct fake_session sessions[FAKE_SESSIONS_MAX];
    uint32_t session_count;
    struct fake_applied applied[FAKE_APPLIED_MAX];
    uint32_t applied_count;
    uint32_t executions; /* POSTs executed: cache misses */
    uint32_t registers, not_leaders, reads;
    uint16_t last_read_flags;
    uint64_t last_read_index;
    uint64_t index, seq;
};

/* ---------------------------------------------------------------------------------------------
 * The fake: state
 * ------------------------------------------------------------------------------------------- */

static struct fake_session *fake_session(struct fake *f, const uint8_t id[16])
{
    for (uint32_t i = 0; i < f->session_count; i++)
        if (memcmp(f->sessions[i].client_id, id, 16) == 0)
            return &f->sessions[i];
    return NULL;
}

static struct fake_session *fake_session_make(struct fake *f, const uint8_t id[16])
{
    struct fake_session *s = fake_session(f, id);
    if (s != NULL)
        return s;
    if (f->session_count == FAKE_SESSIONS_MAX)
        return NULL;
    s = &f->sessions[f->session_count++];
    memcpy(s->client_id, id, 16);
    s->last_request = 0;
    return s;
}

/* Forget a session and its reply cache, as a server that evicted it (or a new leader that never
 * had it) would. */
static void fake_session_forget(struct fake *f, const uint8_t id[16])
{
    struct fake_session *s = fake_session(f, id);
    if (s != NULL)
        *s = f->sessions[--f->session_count];
    for (uint32_t i = 0; i < f->cache_count;) {
        if (memcmp(f->cache[i].client_id, id, 16) == 0)
            f->cache[i] = f->cache[--f->cache_count];
        else
            i++;
    }
}

static struct fake_cached *fake_cache_find(struct fake *f, const uint8_t id[16], uint64_t request)
{
    for (uint32_t i = 0; i < f->cache_count; i++)
        if (memcmp(f->cache[i].client_id, id, 16) == 0 && f->cache[i].request == request)
            return &f->cache[i];
    return NULL;
}

static struct fake_applied *fake_applied_find(struct fake *f, const uint8_t id[16])
{
    for (uint32_t i = 0; i < f->applied_count; i++)
        if (memcmp(f->applied[i].id, id, 16) == 0)
            return &f->applied[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The fake: replies
 * ------------------------------------------------------------------------------------------- */

static void fake_send(int fd, const struct tally_wire_header *h, const void *body)
{
    uint8_t out[TALLY_WIRE_HEADER_SIZE + 256];
    size_t n = TALLY_WIRE_HEADER_SIZE + h->body_size;
    assert_true(n <= sizeof(out));
    memcpy(out, h, TALLY_WIRE_HEADER_SIZE);
    if (h->body_size > 0)
        memcpy(out + TALLY_WIRE_HEADER_SIZE, body, h->body_size);
    (void)send(fd, out, n, MSG_NOSIGNAL); /* a client that left gets nothing: that is fine */
}

static void fake_reply(struct fake *f, int fd, const struct tally_wire_header *req, uint16_t status,
                       const void *body, uint32_t size)
{
    struct tally_wire_header h;
    tally_wire_reply_init(&h, req, status, f->index, size);
    tally_wire_header_seal(&h, body);
    fake_send(fd, &h, body);
}

/* A POST reply, damaged as told. */
static void fake_post_reply(struct fake *f, int fd, const struct tally_wire_header *req,
                            const struct fake_cached *e)
{
    uint8_t body[FAKE_POSTINGS_MAX * sizeof(struct tally_result)];
    uint32_t size = e->count * (uint32_t)sizeof(struct tally_result);
    memcpy(body, e->results, size);
    struct tally_wire_header h;
    tally_wire_reply_init(&h, req, TALLY_WIRE_OK, e->index, size);
    enum fake_corruption how = f->corrupt_replies > 0 ? f->corruption : 0;
    if (how != 0)
        f->corrupt_replies--;
    if (how == CORRUPT_REQUEST_NUMBER)
        h.request++;
    if (how == CORRUPT_RESULT_COUNT)
        h.body_size -= (uint32_t)sizeof(struct tally_result);
    tally_wire_header_seal(&h, body);
    if (how == CORRUPT_HEADER_CHECKSUM)
        h.checksum_header ^= 1;
    if (how == CORRUPT_BODY_CHECKSUM)
        body[0] ^= 1;
    fake_send(fd, &h, body);
}

static void fake_not_leader(struct fake *f, int fd, const struct tally_wire_header *req)
{
    struct tally_wire_not_leader nl;
    memset(&nl, 0, sizeof(nl));
    memcpy(nl.leader_address, f->leader, sizeof(nl.leader_address));
    f->not_leaders++;
    fake_reply(f, fd, req, TALLY_WIRE_NOT_LEADER, &nl, sizeof(nl));
}

/* ---------------------------------------------------------------------------------------------
 * The fake: requests
 * ------------------------------------------------------------------------------------------- */

static void fake_register(struct fake *f, int fd, const struct tally_wire_header *req)
{
    struct tally_wire_session s;
    struct fake_session *fs = fake_session_make(f, req->client_id);
    assert_non_null(fs);
    f->registers++;
    memset(&s, 0, sizeof(s));
    memcpy(s.cluster_id, fake_cluster_id, sizeof(s.cluster_id));
    s.last_request = fs->last_request;
    s.batch_max = TALLY_BATCH_MAX;
    s.body_max = TALLY_WIRE_BODY_MAX;
    fake_reply(f, fd, req, TALLY_WIRE_OK, &s, sizeof(s));
}

/* Execute a POST: every posting OK, or EXISTS (detail OK) if its id was executed before. */
static struct fake_cached *fake_execute(struct fake *f, const struct tally_wire_header *req,
                                        const uint8_t *body)
{
    assert_true(f->cache_count < FAKE_CACHE_MAX);
    struct fake_cached *e = &f->cache[f->cache_count++];
    memset(e, 0, sizeof(*e));
    memcpy(e->client_id, req->client_id, 16);
    e->request = req->request;
    e->checksum_body = req->checksum_body;
    uint32_t prefix = req->op == TALLY_WIRE_OP_POST_AT ? 16u : 0u; /* POST_AT's at, reserved */
    body += prefix;
    e->count = (req->body_size - prefix) / (uint32_t)sizeof(struct tally_posting);
    e->index = ++f->index;
    assert_true(e->count <= FAKE_POSTINGS_MAX);
    for (uint32_t i = 0; i < e->count; i++) {
        struct tally_posting p;
        memcpy(&p, body + i * sizeof(p), sizeof(p));
        struct fake_applied *a = fake_applied_find(f, p.id);
        if (a != NULL) {
            e->results[i] =
                (struct tally_result){.code = TALLY_EXISTS, .detail = TALLY_OK, .seq = a->seq};
            continue;
        }
        assert_true(f->applied_count < FAKE_APPLIED_MAX);
        a = &f->applied[f->applied_count++];
        memcpy(a->id, p.id, 16);
        a->seq = ++f->seq;
        e->results[i] = (struct tally_result){.code = TALLY_OK, .seq = a->seq};
    }
    f->executions++;
    return e;
}

/* Sit on a reply while delay_ms (which a test may lower meanwhile) has not passed. */
static void fake_delay(struct fake *f)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (uint32_t i = 0; i < 10000u && !atomic_load(&f->stop); i++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms >= (int64_t)f->delay_ms)
            return;
        pthread_mutex_unlock(&f->mu);
        usleep(2000);
        pthread_mutex_lock(&f->mu);
    }
}

/* Returns false to close the connection. */
static bool fake_post(struct fake *f, int fd, const struct tally_wire_header *req,
                      const uint8_t *frame)
{
    if (f->post_count < FAKE_POSTS_MAX) {
        struct fake_frame *r = &f->posts[f->post_count++];
        r->request = req->request;
        r->size = TALLY_WIRE_HEADER_SIZE + req->body_size;
        memcpy(r->bytes, frame, r->size < FAKE_RECORD_BYTES ? r->size : FAKE_RECORD_BYTES);
    }
    if (f->busy_posts > 0) {
        f->busy_posts--;
        fake_reply(f, fd, req, TALLY_WIRE_BUSY, NULL, 0);
        return true;
    }
    if (req->op == TALLY_WIRE_OP_POST_AT && f->clock_wall) {
        fake_reply(f, fd, req, TALLY_WIRE_CLOCK_MODE, NULL, 0);
        return true;
    }
    if (f->expire_posts > 0) {
        f->expire_posts--;
        fake_session_forget(f, req->client_id);
    }
    struct fake_session *s = fake_session(f, req->client_id);
    if (s == NULL) {
        fake_reply(f, fd, req, TALLY_WIRE_SESSION_EXPIRED, NULL, 0);
        return true;
    }
    struct fake_cached *e = fake_cache_find(f, req->client_id, req->request);
    if (e != NULL && e->checksum_body != req->checksum_body) {
        fake_reply(f, fd, req, TALLY_WIRE_REQUEST_REUSED, NULL, 0);
        return true;
    }
    if (e == NULL && req->request <= s->last_request) {
        fake_reply(f, fd, req, TALLY_WIRE_REQUEST_REUSED, NULL, 0);
        return true;
    }
    if (e == NULL) {
        e = fake_execute(f, req, frame + TALLY_WIRE_HEADER_SIZE);
        s->last_request = req->request;
    }
    if (f->drop_posts > 0) {
        f->drop_posts--;
        if (f->forget_on_drop)
            fake_session_forget(f, req->client_id);
        return false; /* executed, never answered */
    }
    if (f->delay_ms > 0)
        fake_delay(f);
    fake_post_reply(f, fd, req, e);
    return true;
}

static void fake_read(struct fake *f, int fd, const struct tally_wire_header *req,
                      const uint8_t *body)
{
    f->reads++;
    f->last_read_flags = req->flags;
    f->last_read_index = req->index;
    if (f->stale_reads > 0) {
        f->stale_reads--;
        fake_reply(f, fd, req, TALLY_WIRE_STALE, NULL, 0);
        return;
    }
    uint64_t at = f->index > req->index ? f->index : req->index;
    if (f->behind_reads > 0 && req->index > 0) {
        f->behind_reads--;
        at = req->index - 1; /* breaks section 7: "never less than the request's" */
    }
    struct tally_wire_header h;
    if (req->op == TALLY_WIRE_OP_ACCOUNT) {
        struct tally_wire_account_request q;
        struct tally_account a;
        memcpy(&q, body, sizeof(q));
        memset(&a, 0, sizeof(a));
        a.program = q.program;
        a.member = q.member;
        a.status = TALLY_ACCOUNT_STATUS_OPEN;
        a.available = 100;
        tally_wire_reply_init(&h, req, TALLY_WIRE_OK, at, sizeof(a));
        tally_wire_header_seal(&h, &a);
        fake_send(fd, &h, &a);
        return;
    }
    if (req->op == TALLY_WIRE_OP_POSTING) {
        struct tally_wire_id_request q;
        memcpy(&q, body, sizeof(q));
        struct fake_applied *a = fake_applied_find(f, q.id);
        if (a == NULL) {
            fake_reply(f, fd, req, TALLY_WIRE_NOT_FOUND, NULL, 0);
            return;
        }
        struct tally_wire_posting_info info = {.code = TALLY_OK,
                                               .kind = TALLY_KIND_ACCRUE,
                                               .seq = a->seq,
                                               .entry_count = 1,
                                               .timestamp = 1000};
        tally_wire_reply_init(&h, req, TALLY_WIRE_OK, at, sizeof(info));
        tally_wire_header_seal(&h, &info);
        fake_send(fd, &h, &info);
        return;
    }
    fake_reply(f, fd, req, TALLY_WIRE_NOT_FOUND, NULL, 0);
}

static void fake_status(struct fake *f, int fd, const struct tally_wire_header *req)
{
    struct tally_wire_replica_status s;
    memset(&s, 0, sizeof(s));
    memcpy(s.cluster_id, fake_cluster_id, sizeof(s.cluster_id));
    s.replica_id = (uint64_t)(f->follower ? 2 : 1);
    s.leader_id = 1;
    s.term = 7;
    s.commit_index = f->index;
    s.applied_index = f->index;
    s.entries = f->seq;
    s.role = f->follower ? TALLY_WIRE_ROLE_FOLLOWER : TALLY_WIRE_ROLE_LEADER;
    s.voters = 3;
    memcpy(s.address, f->address, sizeof(s.address));
    memcpy(s.leader_address, f->follower ? f->leader : f->address, sizeof(s.leader_address));
    struct tally_wire_header h;
    tally_wire_reply_init(&h, req, TALLY_WIRE_OK, f->index, sizeof(s));
    tally_wire_header_seal(&h, &s);
    uint8_t out[TALLY_WIRE_HEADER_SIZE + sizeof(s)];
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), &s, sizeof(s));
    (void)send(fd, out, sizeof(out), MSG_NOSIGNAL);
}

/* Read and answer one frame. Returns false to close the connection. */
static bool fake_frame(struct fake *f, int fd)
{
    ssize_t n = recv(fd, f->buf, TALLY_WIRE_HEADER_SIZE, MSG_WAITALL);
    if (n != (ssize_t)TALLY_WIRE_HEADER_SIZE)
        return false;
    struct tally_wire_header h;
    if (tally_wire_header_decode(&h, f->buf, TALLY_WIRE_HEADER_SIZE, TALLY_WIRE_TO_SERVER) !=
        TALLY_WIRE_FAULT_NONE)
        return false;
    if (h.body_size > 0 &&
        recv(fd, f->buf + TALLY_WIRE_HEADER_SIZE, h.body_size, MSG_WAITALL) != h.body_size)
        return false;
    size_t size = TALLY_WIRE_HEADER_SIZE + h.body_size;
    enum tally_wire_fault fault = tally_wire_frame_decode(&h, f->buf, size, TALLY_WIRE_TO_SERVER);
    if (fault != TALLY_WIRE_FAULT_NONE) {
        /* The client sent something the protocol refuses: a test failure, reported loudly. */
        fprintf(stderr, "fake %s: request refused: %s\n", f->address, tally_wire_fault_name(fault));
        return false;
    }
    const uint8_t *body = f->buf + TALLY_WIRE_HEADER_SIZE;
    pthread_mutex_lock(&f->mu);
    bool keep = true;
    if (h.op == TALLY_WIRE_OP_STATUS)
        fake_status(f, fd, &h);
    else if (f->follower)
        fake_not_leader(f, fd, &h);
    else if (h.op == TALLY_WIRE_OP_REGISTER)
        fake_register(f, fd, &h);
    else if (h.op == TALLY_WIRE_OP_POST || h.op == TALLY_WIRE_OP_POST_AT)
        keep = fake_post(f, fd, &h, f->buf);
    else
        fake_read(f, fd, &h, body);
    pthread_mutex_unlock(&f->mu);
    return keep;
}

static void fake_accept(struct fake *f)
{
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    struct timeval tv = {.tv_sec = FAKE_RECV_MS / 1000, .tv_usec = (FAKE_RECV_MS % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (uint32_t i = 0; i < FAKE_CONNS_MAX; i++) {
        if (f->conns[i] < 0) {
            f->conns[i] = fd;
            return;
        }
    }
    close(fd); /* full: the client sees a closed connection */
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        pthread_mutex_lock(&f->mu);
        for (uint32_t i = 0; i < FAKE_CONNS_MAX && f->close_all; i++) {
            if (f->conns[i] >= 0)
                close(f->conns[i]);
            f->conns[i] = -1;
        }
        f->close_all = false;
        pthread_mutex_unlock(&f->mu);
        struct pollfd p[1 + FAKE_CONNS_MAX];
        int slot[1 + FAKE_CONNS_MAX];
        nfds_t n = 0;
        p[n] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
        slot[n++] = -1;
        for (uint32_t i = 0; i < FAKE_CONNS_MAX; i++) {
            if (f->conns[i] >= 0) {
                p[n] = (struct pollfd){.fd = f->conns[i], .events = POLLIN};
                slot[n++] = (int)i;
            }
        }
        if (poll(p, n, FAKE_POLL_MS) <= 0)
            continue;
        for (nfds_t k = 0; k < n; k++) {
            if (p[k].revents == 0)
                continue;
            if (slot[k] < 0) {
                fake_accept(f);
            } else if (!fake_frame(f, f->conns[slot[k]])) {
                close(f->conns[slot[k]]);
                f->conns[slot[k]] = -1;
            }
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The fake: lifecycle
 * ------------------------------------------------------------------------------------------- */

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    for (uint32_t i = 0; i < FAKE_CONNS_MAX; i++)
        f->conns[i] = -1;
    f->buf = malloc(TALLY_WIRE_FRAME_MAX);
    assert_non_null(f->buf);
    pthread_mutex_init(&f->mu, NULL);
    f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(f->address, sizeof(f->address), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

static void fake_start(struct fake *f)
{
    atomic_store(&f->stop, false);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    f->running = true;
}

static void fake_deinit(struct fake *f)
{
    if (f->running) {
        atomic_store(&f->stop, true);
        pthread_join(f->thread, NULL);
        f->running = false;
    }
    for (uint32_t i = 0; i < FAKE_CONNS_MAX; i++)
        if (f->conns[i] >= 0)
            close(f->conns[i]);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    f->listen_fd = -1;
    pthread_mutex_destroy(&f->mu);
    free(f->buf);
    f->buf = NULL;
}

/* Tests change behaviour and read records under the fake's lock. */
#define FAKE_SET(f, field, value)                                                                  \
    do {                                                                                           \
        pthread_mutex_lock(&(f)->mu);                                                              \
        (f)->field = (value);                                                                      \
        pthread_mutex_unlock(&(f)->mu);                                                            \
    } while (0)

static uint32_t fake_get(struct fake *f, const uint32_t *field)
{
    pthread_mutex_lock(&f->mu);
    uint32_t v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static bool fake_get_bool(struct fake *f, const bool *field)
{
    pthread_mutex_lock(&f->mu);
    bool v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

/* An address that refuses connections: a port bound, then released. */
static void dead_address(char out[TALLY_WIRE_ADDRESS_SIZE])
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(out, TALLY_WIRE_ADDRESS_SIZE, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    close(fd);
}

/* ---------------------------------------------------------------------------------------------
 * Fixtures: up to three fakes per test, freed by the teardown even when a test fails early.
 * ------------------------------------------------------------------------------------------- */

#define FAKES 3u
static struct fake fakes[FAKES];
static struct tally_client *client;

static int fakes_setup(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < FAKES; i++)
        fake_init(&fakes[i]);
    client = NULL;
    return 0;
}

static int fakes_teardown(void **state)
{
    (void)state;
    tally_client_close(client);
    client = NULL;
    for (uint32_t i = 0; i < FAKES; i++)
        fake_deinit(&fakes[i]);
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int open_client(const char *addresses, const uint8_t *client_id, uint64_t timeout_ms)
{
    struct tally_client_options o;
    memset(&o, 0, sizeof(o));
    o.addresses = addresses;
    o.timeout_ms = timeout_ms;
    o.label = "test-till";
    if (client_id != NULL)
        memcpy(o.client_id, client_id, 16);
    return tally_client_open(&client, &o);
}

static void postings_make(struct tally_posting *p, uint32_t n, uint64_t first_id)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = post_accrue(first_id + i, 1, 7, 100 + i, 0);
}

/* Every POST frame the fake recorded is byte for byte the first one. */
static void assert_posts_identical(struct fake *f, uint32_t want_count)
{
    pthread_mutex_lock(&f->mu);
    uint32_t n = f->post_count;
    struct fake_frame first = f->posts[0];
    bool same = true;
    for (uint32_t i = 1; i < n; i++) {
        same = same && f->posts[i].request == first.request && f->posts[i].size == first.size &&
               memcmp(f->posts[i].bytes, first.bytes, first.size) == 0;
    }
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(n, want_count);
    assert_true(same);
}

/* ---------------------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------------------- */

static void test_open_registers_and_numbers_posts_from_one(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    assert_int_equal(fake_get(a, &a->registers), 1);
    postings_make(p, 1, 1);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(a->posts[0].request, 1);
    assert_int_equal(tally_client_last_index(client), 1);
}

static void test_session_resumes_numbering_after_last_request(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    const uint8_t id[16] = {0xc1, 0x1e, 0x47, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    struct tally_posting p[1];
    struct tally_result r[1];
    struct fake_session *s = fake_session_make(a, id);
    s->last_request = 41; /* a previous process of this client id got answers up to 41 */
    fake_start(a);
    assert_int_equal(open_client(a->address, id, 2000), 0);
    postings_make(p, 1, 1);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(a, &a->post_count), 1);
    assert_int_equal(a->posts[0].request, 42);

    /* Close and open again with the same id: the numbering carries on past 42. */
    tally_client_close(client);
    client = NULL;
    assert_int_equal(open_client(a->address, id, 2000), 0);
    postings_make(p, 1, 2);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(a, &a->post_count), 2);
    assert_true(a->posts[1].request > 42);
    assert_int_equal(fake_get(a, &a->executions), 2);
}

static void test_random_client_ids_differ(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    uint8_t first[16];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    tally_client_close(client);
    client = NULL;
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    pthread_mutex_lock(&a->mu);
    uint32_t n = a->session_count;
    memcpy(first, a->sessions[0].client_id, 16);
    bool differ = n == 2 && memcmp(first, a->sessions[1].client_id, 16) != 0;
    bool nonzero = !id_is_zero(first);
    pthread_mutex_unlock(&a->mu);
    assert_true(differ);
    assert_true(nonzero);
}

static void test_session_expired_before_execution_resends_transparently(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[2];
    struct tally_result r[2];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, expire_posts, 1); /* the fake forgets the session as the POST arrives */
    postings_make(p, 2, 10);
    assert_int_equal(tally_client_post(client, p, 2, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(r[1].code, TALLY_OK);
    assert_int_equal(fake_get(a, &a->registers), 2); /* open, then again after SESSION_EXPIRED */
    assert_posts_identical(a, 2);
    assert_int_equal(fake_get(a, &a->executions), 1);
}

static void test_session_lost_after_possible_execution_reports_closed(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    struct tally_posting_outcome o;
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    /* The first copy is executed and its reply lost, and the session with it: the retry gets
     * SESSION_EXPIRED, and nothing can tell the client whether its postings were applied. */
    pthread_mutex_lock(&a->mu);
    a->drop_posts = 1;
    a->forget_on_drop = true;
    pthread_mutex_unlock(&a->mu);
    postings_make(p, 1, 20);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), TALLY_ECLOSED);
    assert_int_equal(fake_get(a, &a->registers), 2);
    assert_int_equal(fake_get(a, &a->executions), 1);
    assert_posts_identical(a, 2);

    /* Unknown until queried: the posting id tells. */
    assert_int_equal(tally_client_post_outcome(client, p[0].id, &o, 0), 0);
    assert_int_equal(o.code, TALLY_OK);

    /* Or send the same postings again: the same frame, executed by the new session, where the
     * posting id answers EXISTS with the original outcome (law 4). */
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_EXISTS);
    assert_int_equal(r[0].detail, TALLY_OK);
    assert_posts_identical(a, 3);
    assert_int_equal(fake_get(a, &a->applied_count), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Leader discovery
 * ------------------------------------------------------------------------------------------- */

static void test_not_leader_redirect_is_followed(void **state)
{
    (void)state;
    struct fake *follower = &fakes[0], *leader = &fakes[1];
    struct tally_posting p[1];
    struct tally_result r[1];
    follower->follower = true;
    memcpy(follower->leader, leader->address, sizeof(follower->leader));
    fake_start(follower);
    fake_start(leader);
    /* Only the follower is listed: the leader is known from its NOT_LEADER alone. */
    assert_int_equal(open_client(follower->address, NULL, 2000), 0);
    postings_make(p, 1, 30);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_true(fake_get(follower, &follower->not_leaders) >= 1);
    assert_int_equal(fake_get(follower, &follower->executions), 0);
    assert_int_equal(fake_get(leader, &leader->registers), 1);
    assert_int_equal(fake_get(leader, &leader->executions), 1);
}

static void test_unknown_leader_moves_to_next_replica(void **state)
{
    (void)state;
    struct fake *lost = &fakes[0], *leader = &fakes[1];
    char list[2 * TALLY_WIRE_ADDRESS_SIZE + 2];
    struct tally_posting p[1];
    struct tally_result r[1];
    lost->follower = true; /* NOT_LEADER with an all-zero address: no leader known */
    fake_start(lost);
    fake_start(leader);
    snprintf(list, sizeof(list), "%s, %s", lost->address, leader->address);
    assert_int_equal(open_client(list, NULL, 2000), 0);
    postings_make(p, 1, 40);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(leader, &leader->executions), 1);
    assert_int_equal(fake_get(lost, &lost->executions), 0);
}

static void test_dead_replica_in_list_is_skipped(void **state)
{
    (void)state;
    struct fake *leader = &fakes[0];
    char dead[TALLY_WIRE_ADDRESS_SIZE], list[2 * TALLY_WIRE_ADDRESS_SIZE + 2];
    struct tally_posting p[1];
    struct tally_result r[1];
    dead_address(dead);
    fake_start(leader);
    snprintf(list, sizeof(list), "%s,%s", dead, leader->address);
    assert_int_equal(open_client(list, NULL, 2000), 0);
    postings_make(p, 1, 45);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(leader, &leader->executions), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Retries keep the request number and the bytes; one execution per request
 * ------------------------------------------------------------------------------------------- */

static void test_dropped_connection_retries_same_frame(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[3];
    struct tally_result r[3];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, drop_posts, 1); /* executed, then the connection closes unanswered */
    postings_make(p, 3, 50);
    assert_int_equal(tally_client_post(client, p, 3, r, 0), 0);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(r[i].code, TALLY_OK); /* the cached reply, not EXISTS */
    assert_posts_identical(a, 2);
    assert_int_equal(fake_get(a, &a->executions), 1);
    assert_int_equal(fake_get(a, &a->cache_count), 1);
}

/* POST_AT is POST with a prefix: the frame carries the time, its retries are the same bytes, and
 * a resend of the same time and postings after an unknown outcome is the same request. */
static void test_post_at_frame_carries_the_time_and_retries_are_the_same_bytes(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[2];
    struct tally_result r[2];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, drop_posts, 1);
    FAKE_SET(a, busy_posts, 1);
    postings_make(p, 2, 80);
    uint64_t at = UINT64_C(852076800000); /* 1997-01-01T00:00Z */
    assert_int_equal(tally_client_post_at(client, at, p, 2, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(r[1].code, TALLY_OK);
    assert_posts_identical(a, 3); /* BUSY, dropped after executing, answered from the cache */
    assert_int_equal(fake_get(a, &a->executions), 1);
    pthread_mutex_lock(&a->mu);
    struct tally_wire_header h;
    struct tally_wire_post_at pre;
    memcpy(&h, a->posts[0].bytes, sizeof(h));
    memcpy(&pre, a->posts[0].bytes + sizeof(h), sizeof(pre));
    uint8_t first[sizeof(struct tally_posting)];
    memcpy(first, a->posts[0].bytes + sizeof(h) + sizeof(pre), sizeof(first));
    pthread_mutex_unlock(&a->mu);
    assert_int_equal(h.op, TALLY_WIRE_OP_POST_AT);
    assert_int_equal(h.body_size, 16 + 2 * sizeof(struct tally_posting));
    assert_int_equal(pre.at, at);
    assert_int_equal(pre.reserved, 0);
    assert_memory_equal(first, &p[0], sizeof(first));

    /* An unknown outcome (the answer never came), then the same call: the same request, not a
     * new one. */
    FAKE_SET(a, delay_ms, 400);
    postings_make(p, 1, 90);
    assert_int_equal(tally_client_post_at(client, at + 1, p, 1, r, 100), TALLY_ETIMEOUT);
    FAKE_SET(a, delay_ms, 0);
    assert_int_equal(tally_client_post_at(client, at + 1, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK); /* the kept reply, not EXISTS */
    assert_int_equal(fake_get(a, &a->executions), 2);
    /* Past 9999-12-31: refused before anything is sent. */
    uint32_t posts = fake_get(a, &a->post_count);
    assert_int_equal(tally_client_post_at(client, TALLY_WIRE_AT_MAX + 1, p, 1, r, 0),
                     TALLY_ECONFIG);
    assert_int_equal(fake_get(a, &a->post_count), posts);
}

/* A wall-clock cluster's CLOCK_MODE: TALLY_ECONFIG at once, nothing retried or executed. */
static void test_post_at_to_a_wall_clock_cluster_is_a_config_error(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    FAKE_SET(a, clock_wall, true);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 95);
    assert_int_equal(tally_client_post_at(client, UINT64_C(852076800000), p, 1, r, 0),
                     TALLY_ECONFIG);
    assert_int_equal(fake_get(a, &a->post_count), 1);
    assert_int_equal(fake_get(a, &a->executions), 0);
    /* The same postings in a POST are a new request, executed. */
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(fake_get(a, &a->executions), 1);
}

static void test_connection_closed_while_idle_is_reopened(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 55);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    FAKE_SET(a, close_all, true);
    for (uint32_t i = 0; i < 200 && fake_get_bool(a, &a->close_all); i++)
        usleep(5000);
    assert_false(fake_get_bool(a, &a->close_all));
    postings_make(p, 1, 56);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(fake_get(a, &a->executions), 2);
    assert_int_equal(fake_get(a, &a->post_count), 2);
}

static void test_busy_is_retried_with_backoff(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, busy_posts, 3);
    postings_make(p, 1, 60);
    uint64_t start = now_ms();
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    uint64_t took = now_ms() - start;
    assert_int_equal(r[0].code, TALLY_OK);
    assert_posts_identical(a, 4);
    assert_int_equal(fake_get(a, &a->executions), 1);
    /* Backoff steps of 5, 10 and 20 ms, each sleeping at least half its length. */
    assert_true(took >= 17);
    assert_true(took < 1000);
}

/* Finish the client's asynchronous POST as a driver would: wait for its socket, then ask; asked
 * at least every 50 ms, for at most 5 s. */
static int async_wait(void)
{
    for (uint32_t i = 0; i < 100; i++) {
        struct pollfd p = {.fd = tally_client_fd(client), .events = POLLIN};
        assert_true(p.fd >= 0); /* in flight: its connection is open */
        (void)poll(&p, 1, 50);
        int rc = tally_client_post_finish(client);
        if (rc != TALLY_EAGAIN)
            return rc;
    }
    fail_msg("the asynchronous POST did not end within 5 s");
    return 0;
}

/* A reply corrupted `how` is treated as a lost connection: the same frame again, executed once.
 * async: the POST is the asynchronous one, whose first copy's reply is the corrupt one. */
static void corrupted_reply_is_retried(enum fake_corruption how, bool async)
{
    struct fake *a = &fakes[0];
    struct tally_posting p[2];
    struct tally_result r[2];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    pthread_mutex_lock(&a->mu);
    a->corrupt_replies = 1;
    a->corruption = how;
    pthread_mutex_unlock(&a->mu);
    postings_make(p, 2, 70);
    if (async) {
        assert_int_equal(tally_client_post_start(client, p, 2, r, 0), TALLY_EAGAIN);
        assert_int_equal(async_wait(), 0);
    } else {
        assert_int_equal(tally_client_post(client, p, 2, r, 0), 0);
    }
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(r[1].code, TALLY_OK);
    assert_posts_identical(a, 2);
    assert_int_equal(fake_get(a, &a->executions), 1);
    assert_int_equal(fake_get(a, &a->corrupt_replies), 0);
}

static void test_reply_with_bad_header_checksum_is_retried(void **state)
{
    (void)state;
    corrupted_reply_is_retried(CORRUPT_HEADER_CHECKSUM, false);
}

static void test_reply_with_bad_body_checksum_is_retried(void **state)
{
    (void)state;
    corrupted_reply_is_retried(CORRUPT_BODY_CHECKSUM, false);
}

static void test_reply_to_another_request_is_retried(void **state)
{
    (void)state;
    corrupted_reply_is_retried(CORRUPT_REQUEST_NUMBER, false);
}

static void test_reply_with_wrong_result_count_is_retried(void **state)
{
    (void)state;
    corrupted_reply_is_retried(CORRUPT_RESULT_COUNT, false);
}

/* ---------------------------------------------------------------------------------------------
 * Deadlines
 * ------------------------------------------------------------------------------------------- */

static void test_slow_reply_times_out_within_deadline(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, delay_ms, 3000);
    postings_make(p, 1, 80);
    uint64_t start = now_ms();
    assert_int_equal(tally_client_post(client, p, 1, r, 300), TALLY_ETIMEOUT);
    uint64_t took = now_ms() - start;
    assert_true(took >= 300);
    assert_true(took <= 300 + SLACK_MS);

    /* The outcome was unknown; the same postings again are the same frame, answered from the
     * session's cache once the fake lets go of the first copy. */
    FAKE_SET(a, delay_ms, 0);
    assert_int_equal(tally_client_post(client, p, 1, r, 5000), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_posts_identical(a, 2);
    assert_int_equal(fake_get(a, &a->executions), 1);

    /* Other postings take the next number. */
    postings_make(p, 1, 81);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(a, &a->post_count), 3);
    assert_true(a->posts[2].request > a->posts[0].request);
}

static void test_unreachable_cluster_fails_closed_within_deadline(void **state)
{
    (void)state;
    char dead[TALLY_WIRE_ADDRESS_SIZE];
    dead_address(dead);
    uint64_t start = now_ms();
    assert_int_equal(open_client(dead, NULL, 300), TALLY_ECLOSED);
    uint64_t took = now_ms() - start;
    assert_null(client);
    assert_true(took >= 300);
    assert_true(took <= 300 + SLACK_MS);
}

static void test_no_leader_times_out_within_deadline(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    a->follower = true; /* answers, but never knows a leader */
    fake_start(a);
    uint64_t start = now_ms();
    assert_int_equal(open_client(a->address, NULL, 400), TALLY_ETIMEOUT);
    uint64_t took = now_ms() - start;
    assert_true(took <= 400 + SLACK_MS);
    /* Backoff bounds the asking: at most one NOT_LEADER per couple of milliseconds. */
    assert_true(fake_get(a, &a->not_leaders) < 200);
}

/* ---------------------------------------------------------------------------------------------
 * Bad arguments and addresses
 * ------------------------------------------------------------------------------------------- */

static void test_bad_addresses_are_config_errors(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "localhost",
                         "127.0.0.1",
                         "127.0.0.1:0",
                         "127.0.0.1:65536",
                         "::1:7401",
                         "[::1]7401",
                         "127.0.0.1:7401,,127.0.0.1:7402",
                         "127.0.0.1:74x1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = open_client(bad[i], NULL, 200);
        if (rc != TALLY_ECONFIG)
            fail_msg("address list '%s' gave %d, expected TALLY_ECONFIG", bad[i], rc);
    }
    struct tally_client_options o;
    memset(&o, 0, sizeof(o));
    o.addresses = "127.0.0.1:1";
    o.label = "a label of thirty-two characters";
    assert_int_equal(tally_client_open(&client, &o), TALLY_ECONFIG);
}

static void test_ipv6_address_is_reached(void **state)
{
    (void)state;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0)
            close(fd);
        skip(); /* no IPv6 loopback in this container */
    }
    /* Swap the fake's IPv4 listener for this one. */
    struct fake *a = &fakes[0];
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(a->listen_fd);
    a->listen_fd = fd;
    snprintf(a->address, sizeof(a->address), "[::1]:%u", (unsigned)ntohs(sa.sin6_port));
    fake_start(a);
    struct tally_posting p[1];
    struct tally_result r[1];
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 90);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(a, &a->executions), 1);
}

static void test_empty_or_oversized_batch_is_refused_before_sending(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 95);
    assert_int_equal(tally_client_post(client, p, 0, r, 0), TALLY_ECONFIG);
    assert_int_equal(tally_client_post(client, p, TALLY_BATCH_MAX + 1, r, 0), TALLY_ETOO_LARGE);
    assert_int_equal(fake_get(a, &a->post_count), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Reads and STATUS
 * ------------------------------------------------------------------------------------------- */

static void test_reads_carry_stale_flag_and_min_index(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_account acc;
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);

    struct tally_read linear = {0};
    assert_int_equal(tally_client_account(client, 3, 77, &acc, &linear), 0);
    assert_int_equal(acc.member, 77);
    assert_int_equal(acc.available, 100);
    assert_int_equal(a->last_read_flags, 0);
    assert_int_equal(a->last_read_index, 0);

    struct tally_read stale = {.stale = true, .min_index = 12};
    assert_int_equal(tally_client_account(client, 3, 77, &acc, &stale), 0);
    assert_int_equal(a->last_read_flags, TALLY_WIRE_FLAG_STALE_OK);
    assert_int_equal(a->last_read_index, 12);
    assert_int_equal(stale.applied_index, 12); /* the fake answers at the index asked for */

    FAKE_SET(a, stale_reads, 1);
    assert_int_equal(tally_client_account(client, 3, 77, &acc, &stale), TALLY_ESTALE);
}

static void test_read_reply_behind_min_index_is_retried(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_account acc;
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, behind_reads, 1);
    struct tally_read r = {.stale = true, .min_index = 5};
    assert_int_equal(tally_client_account(client, 3, 77, &acc, &r), 0);
    assert_int_equal(fake_get(a, &a->reads), 2);
    assert_int_equal(r.applied_index, 5);
}

static void test_deferred_session_registers_at_first_post(void **state)
{
    (void)state;
    struct fake *lost = &fakes[0], *leader = &fakes[1];
    struct tally_client_options o;
    struct tally_replica_status st[1];
    struct tally_posting p[1];
    struct tally_result r[1];
    uint32_t n = 0;
    lost->follower = true; /* no leader anywhere */
    fake_start(lost);
    fake_start(leader);
    memset(&o, 0, sizeof(o));
    o.addresses = lost->address;
    o.defer_register = true;
    o.timeout_ms = 300;
    /* Without a leader, open still succeeds, and STATUS works... */
    assert_int_equal(tally_client_open(&client, &o), 0);
    assert_int_equal(tally_client_status(client, st, 1, &n, 0), 0);
    assert_int_equal(st[0].role, TALLY_WIRE_ROLE_FOLLOWER);
    /* ...but a POST needs the session, so it waits for a leader and times out. */
    postings_make(p, 1, 110);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), TALLY_ETIMEOUT);
    assert_int_equal(fake_get(lost, &lost->post_count), 0);
    tally_client_close(client);
    client = NULL;

    o.addresses = leader->address;
    assert_int_equal(tally_client_open(&client, &o), 0);
    assert_int_equal(fake_get(leader, &leader->registers), 0);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(leader, &leader->registers), 1);
    assert_int_equal(fake_get(leader, &leader->executions), 1);
}

static void test_post_outcome_finds_applied_posting(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    struct tally_posting_outcome o;
    uint8_t unknown[16];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 100);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(tally_client_post_outcome(client, p[0].id, &o, 0), 0);
    assert_int_equal(o.code, TALLY_OK);
    assert_int_equal(o.seq, r[0].seq);
    id_make(unknown, 999);
    assert_int_equal(tally_client_post_outcome(client, unknown, &o, 0), TALLY_ENOT_FOUND);
}

static void test_status_asks_every_replica(void **state)
{
    (void)state;
    struct fake *leader = &fakes[0], *follower = &fakes[1];
    char dead[TALLY_WIRE_ADDRESS_SIZE], list[3 * TALLY_WIRE_ADDRESS_SIZE + 3];
    struct tally_replica_status st[4];
    uint32_t n = 0;
    follower->follower = true;
    memcpy(follower->leader, leader->address, sizeof(follower->leader));
    dead_address(dead);
    fake_start(leader);
    fake_start(follower);
    snprintf(list, sizeof(list), "%s,%s,%s", leader->address, follower->address, dead);
    assert_int_equal(open_client(list, NULL, 2000), 0);
    assert_int_equal(tally_client_status(client, st, 4, &n, 1000), 0);
    assert_int_equal(n, 3);
    assert_string_equal(st[0].address, leader->address);
    assert_int_equal(st[0].error, 0);
    assert_int_equal(st[0].role, TALLY_WIRE_ROLE_LEADER);
    assert_int_equal(st[0].term, 7);
    assert_int_equal(st[1].error, 0);
    assert_int_equal(st[1].role, TALLY_WIRE_ROLE_FOLLOWER);
    assert_string_equal(st[2].address, dead);
    assert_int_not_equal(st[2].error, 0);
    assert_int_equal(st[2].role, TALLY_WIRE_ROLE_UNAVAILABLE);
}

/* ---------------------------------------------------------------------------------------------
 * The asynchronous POST: the same request and outcomes as the blocking one
 * ------------------------------------------------------------------------------------------- */

static void test_async_post_is_in_flight_until_its_reply_is_read(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[2];
    struct tally_result r[2];
    struct tally_posting other[1];
    struct tally_result r2[1];
    struct tally_account acc;
    struct tally_replica_status st[1];
    uint32_t n = 0;
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    assert_int_equal(tally_client_post_finish(client), TALLY_ECONFIG); /* nothing in flight */
    FAKE_SET(a, delay_ms, 200);
    postings_make(p, 2, 300);
    assert_int_equal(tally_client_post_start(client, p, 2, r, 0), TALLY_EAGAIN);
    /* Sent, not answered: asking returns at once, and the session takes no other call. */
    assert_int_equal(tally_client_post_finish(client), TALLY_EAGAIN);
    assert_int_equal(tally_client_post_start(client, p, 2, r, 0), TALLY_ECONFIG);
    /* Other postings: refused before they could replace the frame in flight. */
    postings_make(other, 1, 305);
    assert_int_equal(tally_client_post(client, other, 1, r2, 0), TALLY_ECONFIG);
    assert_int_equal(tally_client_account(client, 1, 7, &acc, NULL), TALLY_ECONFIG);
    assert_int_equal(tally_client_status(client, st, 1, &n, 0), TALLY_ECONFIG);
    assert_int_equal(async_wait(), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_int_equal(r[1].code, TALLY_OK);
    assert_int_equal(tally_client_last_index(client), 1);
    assert_posts_identical(a, 1);
    assert_int_equal(a->posts[0].request, 1);
    assert_int_equal(fake_get(a, &a->executions), 1);
    /* Ended: the session is free again, and numbering goes on. */
    FAKE_SET(a, delay_ms, 0);
    postings_make(p, 1, 310);
    assert_int_equal(tally_client_post(client, p, 1, r, 0), 0);
    assert_int_equal(fake_get(a, &a->post_count), 2);
    assert_int_equal(a->posts[1].request, 2); /* the refused calls took no number */
    assert_int_equal(fake_get(a, &a->executions), 2);
}

static void test_async_post_refuses_bad_batches_before_sending(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[1];
    struct tally_result r[1];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    postings_make(p, 1, 320);
    assert_int_equal(tally_client_post_start(client, p, 0, r, 0), TALLY_ECONFIG);
    assert_int_equal(tally_client_post_start(client, NULL, 1, r, 0), TALLY_ECONFIG);
    assert_int_equal(tally_client_post_start(client, p, 1, NULL, 0), TALLY_ECONFIG);
    assert_int_equal(tally_client_post_start(client, p, TALLY_BATCH_MAX + 1, r, 0),
                     TALLY_ETOO_LARGE);
    assert_int_equal(tally_client_post_finish(client), TALLY_ECONFIG);
    assert_int_equal(fake_get(a, &a->post_count), 0);
}

static void test_async_post_dropped_connection_is_sent_again_as_the_same_frame(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    struct tally_posting p[3];
    struct tally_result r[3];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    FAKE_SET(a, drop_posts, 1); /* executed, then the connection closes unanswered */
    postings_make(p, 3, 330);
    assert_int_equal(tally_client_post_start(client, p, 3, r, 0), TALLY_EAGAIN);
    assert_int_equal(async_wait(), 0);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(r[i].code, TALLY_OK); /* the cached reply, not EXISTS */
    assert_posts_identical(a, 2);
    assert_int_equal(fake_get(a, &a->executions), 1);
}

static void test_async_post_corrupt_reply_is_sent_again_as_the_same_frame(void **state)
{
    (void)state;
    corrupted_reply_is_retried(CORRUPT_BODY_CHECKSUM, true);
}

/* The leader the session was opened with steps down: its NOT_LEADER ends the asynchronous
 * path, and the blocking one follows the redirect and registers with the new leader. */
static void test_async_post_not_leader_is_followed_to_the_new_leader(void **state)
{
    (void)state;
    struct fake *old = &fakes[0], *leader = &fakes[1];
    struct tally_posting p[1];
    struct tally_result r[1];
    static const uint8_t id[16] = {0x5e, 0x55, 0x10, 0x4e};
    fake_start(old);
    fake_start(leader);
    /* The fakes do not replicate sessions as replicas do: the session is opened on both. */
    assert_int_equal(open_client(leader->address, id, 2000), 0);
    tally_client_close(client);
    client = NULL;
    assert_int_equal(open_client(old->address, id, 2000), 0);
    pthread_mutex_lock(&old->mu);
    old->follower = true;
    memcpy(old->leader, leader->address, sizeof(old->leader));
    pthread_mutex_unlock(&old->mu);
    postings_make(p, 1, 350);
    assert_int_equal(tally_client_post_start(client, p, 1, r, 0), TALLY_EAGAIN);
    assert_int_equal(async_wait(), 0);
    assert_int_equal(r[0].code, TALLY_OK);
    assert_true(fake_get(old, &old->not_leaders) >= 1);
    assert_int_equal(fake_get(old, &old->executions), 0);
    assert_int_equal(fake_get(leader, &leader->executions), 1);
    assert_int_equal(leader->posts[0].request, 1); /* the same request, not a new number */
}

/* ---------------------------------------------------------------------------------------------
 * Ids
 * ------------------------------------------------------------------------------------------- */

static void test_ids_are_time_ordered_and_strictly_increasing(void **state)
{
    (void)state;
    struct fake *a = &fakes[0];
    uint8_t prev[16], id[16];
    fake_start(a);
    assert_int_equal(open_client(a->address, NULL, 2000), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    assert_int_equal(tally_client_id(client, prev), 0);
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | prev[i];
    assert_true(ms >= wall && ms <= wall + 1000);
    for (uint32_t i = 0; i < 100000; i++) {
        assert_int_equal(tally_client_id(client, id), 0);
        if (memcmp(id, prev, 16) <= 0)
            fail_msg("id %u is not above the one before it", i);
        memcpy(prev, id, 16);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fakes_setup, fakes_teardown)
        T(test_open_registers_and_numbers_posts_from_one),
        T(test_session_resumes_numbering_after_last_request),
        T(test_random_client_ids_differ),
        T(test_session_expired_before_execution_resends_transparently),
        T(test_session_lost_after_possible_execution_reports_closed),
        T(test_not_leader_redirect_is_followed),
        T(test_unknown_leader_moves_to_next_replica),
        T(test_dead_replica_in_list_is_skipped),
        T(test_dropped_connection_retries_same_frame),
        T(test_connection_closed_while_idle_is_reopened),
        T(test_post_at_frame_carries_the_time_and_retries_are_the_same_bytes),
        T(test_post_at_to_a_wall_clock_cluster_is_a_config_error),
        T(test_busy_is_retried_with_backoff),
        T(test_reply_with_bad_header_checksum_is_retried),
        T(test_reply_with_bad_body_checksum_is_retried),
        T(test_reply_to_another_request_is_retried),
        T(test_reply_with_wrong_result_count_is_retried),
        T(test_slow_reply_times_out_within_deadline),
        T(test_unreachable_cluster_fails_closed_within_deadline),
        T(test_no_leader_times_out_within_deadline),
        T(test_bad_addresses_are_config_errors),
        T(test_ipv6_address_is_reached),
        T(test_empty_or_oversized_batch_is_refused_before_sending),
        T(test_reads_carry_stale_flag_and_min_index),
        T(test_read_reply_behind_min_index_is_retried),
        T(test_deferred_session_registers_at_first_post),
        T(test_post_outcome_finds_applied_posting),
        T(test_status_asks_every_replica),
        T(test_async_post_is_in_flight_until_its_reply_is_read),
        T(test_async_post_refuses_bad_batches_before_sending),
        T(test_async_post_dropped_connection_is_sent_again_as_the_same_frame),
        T(test_async_post_corrupt_reply_is_sent_again_as_the_same_frame),
        T(test_async_post_not_leader_is_followed_to_the_new_leader),
        T(test_ids_are_time_ordered_and_strictly_increasing),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
