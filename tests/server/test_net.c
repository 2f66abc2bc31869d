/* test_net.c: the client network layer (server/net.h) against real sockets on 127.0.0.1, the same
 * tests once per backend (io_uring, then epoll through libuv).
 *
 * How a test runs. The layer runs on its own uv loop in a server thread, with a test handler that
 * answers like a tiny replica: STATUS gets a STATUS reply naming the connection id and the
 * request, ACCOUNT a NOT_FOUND whose index is the member asked about, POST one result per
 * posting, PROGRAMS (the flood) `max` full pages, REGISTER a session, or, with the label "drop",
 * net_drop from inside on_frame. The test thread is the client: plain sockets, poll with
 * deadlines, every loop bounded in count and in time. It reads the layer's counters and the
 * handler's through a command the server thread answers (uv_async), so nothing is shared
 * without a lock. Every reply a client receives is judged with tally_wire_frame_decode as a
 * client would judge it, so malformed error replies fail the test too.
 *
 * The io_uring variant is skipped, with a message, where io_uring is refused (seccomp, an old
 * kernel, TALLY_NET_FORCE_EPOLL=1); the epoll variant always runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../server/net.h"
#include "tally_errors.h"
#include "tally_wire.h"

/* Every wait of a test ends by this deadline, whatever happens. */
#define WAIT_MS 5000
/* The idle timeout of most tests: short, so idle closes are quick to see. */
#define IDLE_MS 400u

static const uint8_t client_id[16] = {0x01, 0x95, 0x4f, 0x3a, 0x9c, 0x00, 0x7e, 0x21,
                                      0xb4, 0x6d, 0x3c, 0x88, 0x51, 0x0a, 0xf2, 0x6e};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CPU time of the whole process (both threads), in milliseconds. */
static uint64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

static int ms_left(uint64_t deadline)
{
    uint64_t now = now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* ---------------------------------------------------------------------------------------------
 * The server thread and its handler.
 * ------------------------------------------------------------------------------------------- */

enum server_cmd { CMD_NONE = 0, CMD_SNAPSHOT, CMD_STOP };

/* What the test can see of the server: the layer's counters and the handler's. */
struct snapshot {
    struct net_stats st;
    uint64_t frames;       /* on_frame calls */
    uint64_t closes;       /* on_close calls */
    uint64_t send_ebusy;   /* net_send answered TALLY_EBUSY */
    uint64_t send_eclosed; /* net_send answered TALLY_ECLOSED */
    uint64_t dropped_id;   /* the connection a "drop" REGISTER dropped */
    int drop_send_rc;      /* net_send to it right after net_drop */
    int big_send_rc;       /* net_send of a body over TALLY_WIRE_BODY_MAX ("big" REGISTER) */
    uint64_t last_closed_id;
};

struct server {
    struct net_options opts;
    pthread_t thread;
    bool running;
    uv_loop_t loop;
    uv_async_t async;
    struct net *net;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    int init_rc;
    char address[TALLY_WIRE_ADDRESS_SIZE];
    enum net_backend chosen;
    enum server_cmd cmd;
    bool cmd_done;
    int loop_close_rc;

    /* Server thread only; CMD_SNAPSHOT copies it into snap_out under the lock. */
    struct snapshot snap;
    struct snapshot snap_out;
    /* The asynchronous flood: pages sent from a timer, as replies that come from replication
     * rather than from a request just read. */
    uv_timer_t flood_timer;
    uint64_t flood_conn;
    uint64_t flood_left;
    struct tally_wire_header flood_request;
    uint8_t reply_body[TALLY_BATCH_MAX * sizeof(struct tally_result)];
};

static void handler_send(struct server *s, uint64_t conn, struct tally_wire_header *r,
                         const void *body)
{
    tally_wire_header_seal(r, body);
    int rc = net_send(s->net, conn, r, body);
    if (rc == TALLY_EBUSY)
        s->snap.send_ebusy++;
    else if (rc == TALLY_ECLOSED)
        s->snap.send_eclosed++;
}

static void handler_status(struct server *s, uint64_t conn, const struct tally_wire_header *h)
{
    struct tally_wire_replica_status st;
    memset(&st, 0, sizeof(st));
    st.replica_id = conn;
    st.commit_index = h->request;
    st.term = s->snap.frames;
    struct tally_wire_header r;
    tally_wire_reply_init(&r, h, TALLY_WIRE_OK, 0, sizeof(st));
    handler_send(s, conn, &r, &st);
}

/* One full page of program ids (4 KiB) to `conn`; false once net_send refuses. */
static bool handler_page(struct server *s, uint64_t conn, const struct tally_wire_header *h)
{
    struct tally_wire_page page = {.count = TALLY_WIRE_PROGRAMS_MAX, .flags = 0};
    memcpy(s->reply_body, &page, sizeof(page));
    uint32_t size = (uint32_t)(sizeof(page) + TALLY_WIRE_PROGRAMS_MAX * sizeof(uint32_t));
    struct tally_wire_header r;
    tally_wire_reply_init(&r, h, TALLY_WIRE_OK, 0, size);
    uint64_t before = s->snap.send_ebusy + s->snap.send_eclosed;
    handler_send(s, conn, &r, s->reply_body);
    return s->snap.send_ebusy + s->snap.send_eclosed == before;
}

/* 16 pages a millisecond, until done or refused. */
static void handler_flood_tick(uv_timer_t *t)
{
    struct server *s = t->data;
    for (int i = 0; i < 16 && s->flood_left > 0; i++) {
        s->flood_left--;
        if (!handler_page(s, s->flood_conn, &s->flood_request))
            s->flood_left = 0;
    }
    if (s->flood_left == 0)
        uv_timer_stop(t);
}

/* PROGRAMS: `max` pages at once; and if `after` is nonzero, `after` more pages from a timer. */
static void handler_flood(struct server *s, uint64_t conn, const struct tally_wire_header *h,
                          const uint8_t *body)
{
    struct tally_wire_programs_request q;
    memcpy(&q, body, sizeof(q));
    for (uint32_t i = 0; i < q.max; i++)
        if (!handler_page(s, conn, h))
            return;
    if (q.after > 0) {
        s->flood_conn = conn;
        s->flood_left = q.after;
        s->flood_request = *h;
        uv_timer_start(&s->flood_timer, handler_flood_tick, 1, 1);
    }
}

static void handler_register(struct server *s, uint64_t conn, const struct tally_wire_header *h,
                             const uint8_t *body)
{
    struct tally_wire_header r;
    if (memcmp(body, "drop", 5) == 0) {
        net_drop(s->net, conn);
        tally_wire_reply_init(&r, h, TALLY_WIRE_OK, 0, sizeof(struct tally_wire_session));
        memset(s->reply_body, 0, sizeof(struct tally_wire_session));
        tally_wire_header_seal(&r, s->reply_body);
        s->snap.dropped_id = conn;
        s->snap.drop_send_rc = net_send(s->net, conn, &r, s->reply_body);
        return;
    }
    memset(s->reply_body, 0, sizeof(struct tally_wire_session));
    if (memcmp(body, "big", 4) == 0) {
        /* A caller's mistake: refused before anything is queued; the reply below still goes. */
        tally_wire_reply_init(&r, h, TALLY_WIRE_OK, 0, 0);
        r.body_size = TALLY_WIRE_BODY_MAX + 1;
        s->snap.big_send_rc = net_send(s->net, conn, &r, s->reply_body);
    }
    tally_wire_reply_init(&r, h, TALLY_WIRE_OK, 0, sizeof(struct tally_wire_session));
    handler_send(s, conn, &r, s->reply_body);
}

static void handler_frame(void *ctx, uint64_t conn, const struct tally_wire_header *h,
                          const uint8_t *body)
{
    struct server *s = ctx;
    s->snap.frames++;
    struct tally_wire_header r;
    switch (h->op) {
    case TALLY_WIRE_OP_STATUS:
        handler_status(s, conn, h);
        return;
    case TALLY_WIRE_OP_PROGRAMS:
        handler_flood(s, conn, h, body);
        return;
    case TALLY_WIRE_OP_REGISTER:
        handler_register(s, conn, h, body);
        return;
    case TALLY_WIRE_OP_POST: {
        uint32_t size = h->body_size / 128u * (uint32_t)sizeof(struct tally_result);
        memset(s->reply_body, 0, size);
        tally_wire_reply_init(&r, h, TALLY_WIRE_OK, h->body_size / 128u, size);
        handler_send(s, conn, &r, s->reply_body);
        return;
    }
    case TALLY_WIRE_OP_ACCOUNT: {
        struct tally_wire_account_request q;
        memcpy(&q, body, sizeof(q));
        tally_wire_reply_init(&r, h, TALLY_WIRE_NOT_FOUND, q.member, 0);
        handler_send(s, conn, &r, NULL);
        return;
    }
    default:
        tally_wire_reply_init(&r, h, TALLY_WIRE_NOT_FOUND, 0, 0);
        handler_send(s, conn, &r, NULL);
        return;
    }
}

static void handler_close(void *ctx, uint64_t conn)
{
    struct server *s = ctx;
    s->snap.closes++;
    s->snap.last_closed_id = conn;
}

static void server_complete(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    s->cmd = CMD_NONE;
    s->cmd_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void server_take_snapshot(struct server *s)
{
    if (s->net != NULL)
        net_stats(s->net, &s->snap.st);
    pthread_mutex_lock(&s->mu);
    s->snap_out = s->snap;
    pthread_mutex_unlock(&s->mu);
}

static void server_closed(void *arg)
{
    struct server *s = arg;
    s->net = NULL;
    uv_close((uv_handle_t *)&s->async, NULL);
    uv_close((uv_handle_t *)&s->flood_timer, NULL);
    server_complete(s);
}

static void server_async_cb(uv_async_t *a)
{
    struct server *s = a->data;
    pthread_mutex_lock(&s->mu);
    enum server_cmd cmd = s->cmd;
    pthread_mutex_unlock(&s->mu);
    if (cmd == CMD_SNAPSHOT) {
        server_take_snapshot(s);
        server_complete(s);
    } else if (cmd == CMD_STOP) {
        server_take_snapshot(s);
        net_close(s->net, server_closed, s);
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->async, server_async_cb);
    s->async.data = s;
    uv_timer_init(&s->loop, &s->flood_timer);
    s->flood_timer.data = s;
    struct net_handler h = {.ctx = s, .on_frame = handler_frame, .on_close = handler_close};
    int rc = net_init(&s->net, &s->loop, &s->opts, &h);
    pthread_mutex_lock(&s->mu);
    s->init_rc = rc;
    if (rc == 0) {
        snprintf(s->address, sizeof(s->address), "%s", net_address(s->net));
        s->chosen = net_backend_of(s->net);
    }
    s->ready = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->async, NULL);
        uv_close((uv_handle_t *)&s->flood_timer, NULL);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    s->loop_close_rc = uv_loop_close(&s->loop);
    return NULL;
}

/* Wait for `flag` under the lock, at most WAIT_MS. */
static bool server_wait(struct server *s, bool *flag)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&s->mu);
    while (!*flag)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0)
            break;
    bool ok = *flag;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Run a command on the server thread and wait for it. */
static bool server_command(struct server *s, enum server_cmd cmd)
{
    pthread_mutex_lock(&s->mu);
    s->cmd = cmd;
    s->cmd_done = false;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
    return server_wait(s, &s->cmd_done);
}

static struct snapshot server_snapshot(struct server *s)
{
    assert_true(server_command(s, CMD_SNAPSHOT));
    pthread_mutex_lock(&s->mu);
    struct snapshot sn = s->snap_out;
    pthread_mutex_unlock(&s->mu);
    return sn;
}

/* Poll the counters until `cond` holds, for at most WAIT_MS; then assert it. */
#define WAIT_FOR(s, snap, cond)                                                                    \
    do {                                                                                           \
        uint64_t deadline_ = now_ms() + WAIT_MS;                                                   \
        for (;;) {                                                                                 \
            snap = server_snapshot(s);                                                             \
            if ((cond) || ms_left(deadline_) == 0)                                                 \
                break;                                                                             \
            usleep(2000);                                                                          \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static uint16_t server_port(const struct server *s)
{
    const char *colon = strrchr(s->address, ':');
    return (uint16_t)atoi(colon + 1);
}

/* ---------------------------------------------------------------------------------------------
 * Fixture: one backend per group, one server per test.
 * ------------------------------------------------------------------------------------------- */

#define CLIENTS_MAX 512

struct ctx {
    enum net_backend backend;
    struct server server;
    int fds[CLIENTS_MAX];
    unsigned nfds;
    /* test_accept_out_of_descriptors_recovers: undone by teardown, whatever happened */
    int *dummies;
    unsigned ndummies;
    struct rlimit nofile;
    bool nofile_saved;
};

static enum net_backend backend_uring = NET_URING;
static enum net_backend backend_epoll = NET_EPOLL;
static bool uring_available;
static int uring_probe_rc;

static int setup(void **state)
{
    struct ctx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->backend = *(enum net_backend *)*state;
    pthread_mutex_init(&x->server.mu, NULL);
    pthread_cond_init(&x->server.cv, NULL);
    *state = x;
    return 0;
}

static void server_stop_quiet(struct server *s)
{
    if (!s->running)
        return;
    server_command(s, CMD_STOP);
    pthread_join(s->thread, NULL);
    s->running = false;
}

static int teardown(void **state)
{
    struct ctx *x = *state;
    for (unsigned i = 0; i < x->nfds; i++)
        if (x->fds[i] >= 0)
            close(x->fds[i]);
    for (unsigned i = 0; i < x->ndummies; i++)
        close(x->dummies[i]);
    free(x->dummies);
    if (x->nofile_saved)
        setrlimit(RLIMIT_NOFILE, &x->nofile);
    server_stop_quiet(&x->server);
    pthread_cond_destroy(&x->server.cv);
    pthread_mutex_destroy(&x->server.mu);
    free(x);
    return 0;
}

static struct net_options options_default(void)
{
    struct net_options o = {.address = "127.0.0.1:0",
                            .max_conns = 16,
                            .out_max = 256u * 1024u,
                            .idle_timeout_ms = IDLE_MS};
    return o;
}

/* Start the server of this group's backend; skips the test where io_uring is refused. */
static struct server *start(void **state, struct net_options o)
{
    struct ctx *x = *state;
    if (x->backend == NET_URING && !uring_available)
        skip();
    struct server *s = &x->server;
    o.backend = x->backend;
    s->opts = o;
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    s->running = true;
    assert_true(server_wait(s, &s->ready));
    if (s->init_rc != 0) {
        pthread_join(s->thread, NULL); /* it closed its loop: no command may reach it */
        s->running = false;
    }
    assert_int_equal(s->init_rc, 0);
    assert_int_equal(s->chosen, x->backend);
    return s;
}

/* Stop the server: every handle closed (the loop closes cleanly), and every connection that
 * held a slot was reported to on_close exactly once. */
static void stop(void **state)
{
    struct ctx *x = *state;
    struct server *s = &x->server;
    assert_true(server_command(s, CMD_STOP));
    pthread_join(s->thread, NULL);
    s->running = false;
    assert_int_equal(s->loop_close_rc, 0);
    assert_int_equal(s->snap.closes, s->snap.st.accepted);
}

/* ---------------------------------------------------------------------------------------------
 * Clients.
 * ------------------------------------------------------------------------------------------- */

static int client_connect(void **state)
{
    struct ctx *x = *state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(server_port(&x->server))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    assert_true(x->nfds < CLIENTS_MAX);
    x->fds[x->nfds++] = fd;
    return fd;
}

static void client_close(void **state, int fd)
{
    struct ctx *x = *state;
    for (unsigned i = 0; i < x->nfds; i++)
        if (x->fds[i] == fd)
            x->fds[i] = -1;
    close(fd);
}

/* Send `out` while receiving up to `want` bytes into `in`, until both are done, the peer closes
 * (*closed), or `timeout_ms` passes. Returns the bytes received. */
static size_t client_pump(int fd, const uint8_t *out, size_t out_len, uint8_t *in, size_t want,
                          int timeout_ms, bool *closed)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    size_t sent = 0, got = 0;
    *closed = false;
    while ((sent < out_len || got < want) && !*closed && ms_left(deadline) > 0) {
        struct pollfd p = {.fd = fd,
                           .events =
                               (short)((got < want ? POLLIN : 0) | (sent < out_len ? POLLOUT : 0))};
        if (poll(&p, 1, ms_left(deadline)) <= 0)
            continue;
        if (got < want && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            ssize_t k = recv(fd, in + got, want - got, MSG_DONTWAIT);
            if (k > 0)
                got += (size_t)k;
            else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                *closed = true;
        }
        if (sent < out_len && (p.revents & (POLLOUT | POLLHUP | POLLERR)) != 0) {
            size_t chunk = out_len - sent < 65536 ? out_len - sent : 65536;
            ssize_t k = send(fd, out + sent, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            else if (k < 0 && errno != EAGAIN && errno != EINTR)
                *closed = true;
        }
    }
    return got;
}

static void client_send(int fd, const void *bytes, size_t size)
{
    bool closed;
    client_pump(fd, bytes, size, NULL, 0, WAIT_MS, &closed);
    assert_false(closed);
}

/* Read one reply frame and judge it as a client does. False: closed or timed out. */
static bool client_reply(int fd, struct tally_wire_header *h, uint8_t *body, size_t body_max)
{
    uint8_t head[TALLY_WIRE_HEADER_SIZE];
    bool closed;
    if (client_pump(fd, NULL, 0, head, sizeof(head), WAIT_MS, &closed) != sizeof(head))
        return false;
    struct tally_wire_header peek;
    memcpy(&peek, head, sizeof(peek));
    assert_true(peek.body_size <= body_max);
    uint8_t *frame = malloc(sizeof(head) + peek.body_size);
    assert_non_null(frame);
    memcpy(frame, head, sizeof(head));
    size_t got = client_pump(fd, NULL, 0, frame + sizeof(head), peek.body_size, WAIT_MS, &closed);
    assert_int_equal(got, peek.body_size);
    assert_int_equal(tally_wire_frame_decode(h, frame, sizeof(head) + got, TALLY_WIRE_TO_CLIENT),
                     TALLY_WIRE_FAULT_NONE);
    if (body != NULL)
        memcpy(body, frame + sizeof(head), got);
    free(frame);
    return true;
}

/* Wait for the server to close: returns the bytes that came before the end, or -1 if the
 * connection is still open after timeout_ms. */
static long client_until_closed(int fd, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    long total = 0;
    uint8_t buf[65536];
    while (ms_left(deadline) > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms_left(deadline)) <= 0)
            continue;
        ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (k > 0)
            total += k;
        else if (k == 0 || (errno != EAGAIN && errno != EINTR))
            return total; /* EOF, or a reset: closed either way */
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Frames.
 * ------------------------------------------------------------------------------------------- */

static size_t frame_make(uint8_t *out, uint16_t op, uint64_t request, const void *body,
                         uint32_t size)
{
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, client_id, request);
    h.body_size = size;
    tally_wire_header_seal(&h, body);
    memcpy(out, &h, sizeof(h));
    if (size > 0)
        memcpy(out + sizeof(h), body, size);
    return sizeof(h) + size;
}

static size_t frame_status(uint8_t *out, uint64_t request)
{
    return frame_make(out, TALLY_WIRE_OP_STATUS, request, NULL, 0);
}

static size_t frame_account(uint8_t *out, uint64_t request, uint64_t member)
{
    struct tally_wire_account_request q = {.program = 1, .reserved = 0, .member = member};
    return frame_make(out, TALLY_WIRE_OP_ACCOUNT, request, &q, sizeof(q));
}

/* A header re-sealed after a field was changed, so only that field is wrong. */
static void header_reseal(uint8_t *frame)
{
    struct tally_wire_header h;
    memcpy(&h, frame, sizeof(h));
    h.checksum_header = tally_wire_checksum(&h, TALLY_WIRE_HEADER_SEALED_SIZE);
    memcpy(frame, &h, sizeof(h));
}

/* Set a 16-bit header field of a sealed frame, then re-seal its header. */
static void header_set_u16(uint8_t *frame, size_t offset, uint16_t value)
{
    memcpy(frame + offset, &value, sizeof(value));
    header_reseal(frame);
}

/* STATUS request `request` answered OK on connection `conn` (0: any), as the handler answers. */
static uint64_t expect_status_reply(int fd, uint64_t request)
{
    struct tally_wire_header h;
    struct tally_wire_replica_status st;
    assert_true(client_reply(fd, &h, (uint8_t *)&st, sizeof(st)));
    assert_int_equal(h.op, TALLY_WIRE_OP_STATUS);
    assert_int_equal(h.status, TALLY_WIRE_OK);
    assert_int_equal(h.request, request);
    assert_int_equal(h.body_size, sizeof(st));
    assert_int_equal(st.commit_index, request);
    return st.replica_id;
}

static uint64_t status_round_trip(int fd, uint64_t request)
{
    uint8_t f[TALLY_WIRE_HEADER_SIZE];
    client_send(fd, f, frame_status(f, request));
    return expect_status_reply(fd, request);
}

static void expect_error_reply(int fd, uint16_t status, uint16_t op, uint64_t request)
{
    struct tally_wire_header h;
    assert_true(client_reply(fd, &h, NULL, 0));
    assert_int_equal(h.status, status);
    assert_int_equal(h.op, op);
    assert_int_equal(h.request, request);
    assert_int_equal(h.body_size, 0);
    uint8_t zero[16] = {0};
    assert_memory_equal(h.client_id, op == 0 ? zero : client_id, 16);
}

/* ---------------------------------------------------------------------------------------------
 * Valid traffic.
 * ------------------------------------------------------------------------------------------- */

static void test_requests_answered_in_order(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint64_t conn = 0;
    for (uint64_t i = 1; i <= 20; i++) {
        uint64_t id = status_round_trip(fd, i);
        if (i == 1)
            conn = id;
        assert_int_equal(id, conn); /* the same connection id throughout */
    }
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.bytes_out == 20u * (64u + 240u));
    assert_int_equal(sn.st.accepted, 1);
    assert_int_equal(sn.st.open, 1);
    assert_int_equal(sn.st.frames_in, 20);
    assert_int_equal(sn.st.frames_out, 20);
    assert_int_equal(sn.st.bytes_in, 20u * 64u);
    assert_int_equal(sn.st.bad_frames, 0);
    assert_int_equal(sn.frames, 20);
    client_close(state, fd);
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.open, 0);
    assert_int_equal(sn.last_closed_id, conn);
    stop(state);
}

/* A client that half-closes after its last request (a script piping frames in) still gets
 * every reply, then the end of the connection. */
static void test_half_closed_client_answered_then_closed(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint8_t f[50 * TALLY_WIRE_HEADER_SIZE];
    for (unsigned i = 0; i < 50; i++)
        frame_status(f + i * TALLY_WIRE_HEADER_SIZE, i + 1);
    client_send(fd, f, sizeof(f));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    for (unsigned i = 0; i < 50; i++)
        expect_status_reply(fd, i + 1);
    assert_int_equal(client_until_closed(fd, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.frames_in, 50);
    assert_int_equal(sn.st.idle_closed, 0);
    assert_int_equal(sn.st.bad_frames, 0);
    stop(state);
}

/* `count` frames, STATUS and ACCOUNT alternating, in one buffer; the replies' total size. */
static size_t pipeline_build(uint8_t *buf, unsigned count, size_t *reply_bytes)
{
    size_t len = 0;
    *reply_bytes = 0;
    for (unsigned i = 0; i < count; i++) {
        if (i % 2 == 0) {
            len += frame_status(buf + len, 1000 + i);
            *reply_bytes += 64 + 240;
        } else {
            len += frame_account(buf + len, 1000 + i, 7 + i);
            *reply_bytes += 64;
        }
    }
    return len;
}

/* Replies to pipeline_build's frames, in order. */
static void pipeline_check(const uint8_t *in, size_t len, unsigned count)
{
    size_t at = 0;
    for (unsigned i = 0; i < count; i++) {
        struct tally_wire_header h;
        assert_int_equal(tally_wire_frame_decode(&h, in + at, len - at, TALLY_WIRE_TO_CLIENT),
                         TALLY_WIRE_FAULT_NONE);
        assert_int_equal(h.request, 1000 + i);
        if (i % 2 == 0) {
            assert_int_equal(h.op, TALLY_WIRE_OP_STATUS);
            assert_int_equal(h.status, TALLY_WIRE_OK);
        } else {
            assert_int_equal(h.op, TALLY_WIRE_OP_ACCOUNT);
            assert_int_equal(h.status, TALLY_WIRE_NOT_FOUND);
            assert_int_equal(h.index, 7 + i); /* the body reached the handler intact */
        }
        at += TALLY_WIRE_HEADER_SIZE + h.body_size;
    }
    assert_int_equal(at, len);
}

/* 2,000 frames (144 KB) in one write: frames straddle every receive chunk and buffer. */
static void run_pipeline(void **state, struct net_options o, unsigned count)
{
    struct server *s = start(state, o);
    int fd = client_connect(state);
    size_t reply_bytes;
    uint8_t *out = malloc((size_t)count * 80u);
    assert_non_null(out);
    size_t len = pipeline_build(out, count, &reply_bytes);
    uint8_t *in = malloc(reply_bytes);
    assert_non_null(in);
    bool closed;
    size_t got = client_pump(fd, out, len, in, reply_bytes, WAIT_MS, &closed);
    assert_false(closed);
    assert_int_equal(got, reply_bytes);
    pipeline_check(in, got, count);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.frames_in, count);
    assert_int_equal(sn.st.bytes_in, len);
    assert_int_equal(sn.st.bad_frames, 0);
    if (s->chosen == NET_EPOLL)
        assert_int_equal(sn.st.nobufs, 0);
    print_message("pipeline: %u frames, out_max %u: paused %llu times, %llu receives re-armed "
                  "for want of a buffer\n",
                  count, o.out_max, (unsigned long long)sn.st.paused,
                  (unsigned long long)sn.st.nobufs);
    if (o.out_max <= 8u * 1024u)
        assert_true(sn.st.paused > 0);
    if (s->chosen == NET_URING && o.recv_buffers == 1)
        assert_true(sn.st.nobufs > 0);
    free(in);
    free(out);
    stop(state);
}

static void test_pipelined_frames_in_one_write(void **state)
{
    run_pipeline(state, options_default(), 2000);
}

/* One receive buffer and a small queue: each time the connection resumes, the kernel holds
 * more than one buffer's worth, so io_uring's multishot recv runs out of buffers (-ENOBUFS) and
 * is re-armed, again and again; nothing may be lost or reordered. */
static void test_one_receive_buffer_loses_nothing(void **state)
{
    struct net_options o = options_default();
    o.recv_buffers = 1;
    o.out_max = 8u * 1024u;
    run_pipeline(state, o, 6000);
}

/* A client pipelining 6,000 requests while reading slowly enough that an 8 KiB queue fills
 * again and again: it is paused and resumed, never closed, and every reply comes, in order. */
static void test_pipelining_reader_throttled_not_closed(void **state)
{
    struct net_options o = options_default();
    o.out_max = 8u * 1024u;
    run_pipeline(state, o, 6000);
}

static void test_frames_split_byte_by_byte(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint8_t f[2 * (TALLY_WIRE_HEADER_SIZE + 16)];
    size_t len = frame_account(f, 1, 42);
    len += frame_status(f + len, 2);
    for (size_t i = 0; i < len; i++) {
        client_send(fd, f + i, 1);
        if (i % 8 == 0)
            usleep(1000); /* let some bytes arrive alone */
    }
    struct tally_wire_header h;
    assert_true(client_reply(fd, &h, NULL, 0));
    assert_int_equal(h.op, TALLY_WIRE_OP_ACCOUNT);
    assert_int_equal(h.request, 1);
    assert_int_equal(h.index, 42);
    expect_status_reply(fd, 2);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.frames_in, 2);
    assert_int_equal(sn.st.bad_frames, 0);
    assert_int_equal(sn.st.bytes_in, len);
    stop(state);
}

/* The largest valid frame, a full POST of 1 MiB, sent in uneven pieces: it is gathered whole. */
static void test_largest_frame_reassembled(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint32_t body_size = TALLY_BATCH_MAX * 128u;
    uint8_t *f = calloc(1, TALLY_WIRE_HEADER_SIZE + body_size);
    assert_non_null(f);
    for (uint32_t i = 0; i < body_size; i++)
        f[TALLY_WIRE_HEADER_SIZE + i] = (uint8_t)(i * 7u);
    struct tally_wire_header post;
    tally_wire_header_init(&post, TALLY_WIRE_OP_POST, client_id, 5);
    post.body_size = body_size;
    tally_wire_header_seal(&post, f + TALLY_WIRE_HEADER_SIZE);
    memcpy(f, &post, sizeof(post));
    size_t len = TALLY_WIRE_HEADER_SIZE + body_size;
    for (size_t at = 0; at < len;) {
        size_t piece = at == 0 ? 13 : 70001; /* cut inside the header, then odd chunks */
        piece = piece < len - at ? piece : len - at;
        client_send(fd, f + at, piece);
        at += piece;
    }
    struct tally_wire_header h;
    uint8_t *body = malloc(TALLY_BATCH_MAX * sizeof(struct tally_result));
    assert_non_null(body);
    assert_true(client_reply(fd, &h, body, TALLY_BATCH_MAX * sizeof(struct tally_result)));
    assert_int_equal(h.op, TALLY_WIRE_OP_POST);
    assert_int_equal(h.status, TALLY_WIRE_OK);
    assert_int_equal(h.index, TALLY_BATCH_MAX);
    assert_int_equal(h.body_size, TALLY_BATCH_MAX * sizeof(struct tally_result));
    status_round_trip(fd, 6);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.frames_in, 2);
    assert_int_equal(sn.st.bytes_in, len + TALLY_WIRE_HEADER_SIZE);
    free(body);
    free(f);
    stop(state);
}

/* ---------------------------------------------------------------------------------------------
 * Bad bytes.
 * ------------------------------------------------------------------------------------------- */

static void test_bad_magic_closed_without_reply(void **state)
{
    struct net_options o = options_default();
    o.idle_timeout_ms = 60000; /* any close seen below is the verdict's, not the idle timer's */
    struct server *s = start(state, o);
    int a = client_connect(state);
    char http[TALLY_WIRE_HEADER_SIZE];
    memset(http, ' ', sizeof(http));
    memcpy(http, "GET / HTTP/1.1\r\nHost: tally\r\n\r\n", 31);
    client_send(a, http, sizeof(http));
    assert_int_equal(client_until_closed(a, WAIT_MS), 0);
    /* Four bytes that cannot begin "TLY1": closed without waiting for a whole header. */
    int b = client_connect(state);
    client_send(b, "GET ", 4);
    assert_int_equal(client_until_closed(b, WAIT_MS), 0);
    /* "TL" then "x": the third byte decides. */
    int c = client_connect(state);
    client_send(c, "TL", 2);
    usleep(20000);
    client_send(c, "x", 1);
    assert_int_equal(client_until_closed(c, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 3);
    assert_int_equal(sn.st.bad_frames, 3);
    assert_int_equal(sn.st.frames_in, 0);
    assert_int_equal(sn.st.frames_out, 0);
    assert_int_equal(sn.st.idle_closed, 0);
    assert_int_equal(sn.frames, 0);
    stop(state);
}

static void test_header_checksum_mismatch_answered_then_closed(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint8_t f[2 * TALLY_WIRE_HEADER_SIZE];
    size_t len = frame_status(f, 1);
    len += frame_status(f + len, 2);
    f[TALLY_WIRE_HEADER_SIZE + 32] ^= 0x01; /* the second frame's request, after sealing */
    client_send(fd, f, len);
    expect_status_reply(fd, 1); /* the good frame before it is answered first */
    expect_error_reply(fd, TALLY_WIRE_BAD_CHECKSUM, 0, 0); /* header not believed: no echo */
    assert_int_equal(client_until_closed(fd, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.bad_frames, 1);
    assert_int_equal(sn.st.frames_in, 1);
    assert_int_equal(sn.st.frames_out, 2);
    assert_int_equal(sn.st.idle_closed, 0);
    stop(state);
}

static void test_body_checksum_mismatch_answered_connection_kept(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint8_t f[TALLY_WIRE_HEADER_SIZE + 16];
    size_t len = frame_account(f, 3, 99);
    f[TALLY_WIRE_HEADER_SIZE + 9] ^= 0x40; /* a body byte */
    client_send(fd, f, len);
    expect_error_reply(fd, TALLY_WIRE_BAD_CHECKSUM, TALLY_WIRE_OP_ACCOUNT, 3);
    status_round_trip(fd, 4);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.bad_frames, 1);
    assert_int_equal(sn.st.frames_in, 1);
    assert_int_equal(sn.st.closed, 0);
    assert_int_equal(sn.frames, 1);
    stop(state);
}

/* Verdicts that keep the connection, pipelined in one write: each answered as its verdict says,
 * each body skipped, and the frame after them served. */
static void test_kept_verdicts_answered_and_skipped(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint8_t f[8 * 128];
    size_t len = 0;
    /* An operation this version does not know. */
    size_t at = len;
    len += frame_status(f + len, 10);
    header_set_u16(f + at, offsetof(struct tally_wire_header, op), 99);
    /* ACCOUNT with member 0: BAD_FIELD. */
    len += frame_account(f + len, 11, 0);
    /* A flag requests may not carry: BAD_FLAGS, with a 16-byte body to skip. */
    at = len;
    len += frame_account(f + len, 12, 5);
    header_set_u16(f + at, offsetof(struct tally_wire_header, flags), 0x0004);
    /* STATUS with an 8-byte body: BAD_BODY_SIZE, decided before the body arrives. */
    uint8_t eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    len += frame_make(f + len, TALLY_WIRE_OP_STATUS, 13, eight, sizeof(eight));
    len += frame_status(f + len, 14);
    client_send(fd, f, len);
    expect_error_reply(fd, TALLY_WIRE_UNKNOWN_OP, 99, 10);
    expect_error_reply(fd, TALLY_WIRE_BAD_REQUEST, TALLY_WIRE_OP_ACCOUNT, 11);
    expect_error_reply(fd, TALLY_WIRE_BAD_REQUEST, TALLY_WIRE_OP_ACCOUNT, 12);
    expect_error_reply(fd, TALLY_WIRE_BAD_REQUEST, TALLY_WIRE_OP_STATUS, 13);
    expect_status_reply(fd, 14);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.bad_frames, 4);
    assert_int_equal(sn.st.frames_in, 1);
    assert_int_equal(sn.st.frames_out, 5);
    assert_int_equal(sn.st.bytes_in, len);
    assert_int_equal(sn.st.closed, 0);
    stop(state);
}

/* Verdicts that close: a reply where a request belongs, and another protocol version. */
static void test_closing_verdicts_answered_then_closed(void **state)
{
    struct server *s = start(state, options_default());
    int a = client_connect(state);
    uint8_t f[TALLY_WIRE_HEADER_SIZE];
    frame_status(f, 21);
    header_set_u16(f, offsetof(struct tally_wire_header, flags), TALLY_WIRE_FLAG_REPLY);
    client_send(a, f, sizeof(f));
    expect_error_reply(a, TALLY_WIRE_BAD_REQUEST, TALLY_WIRE_OP_STATUS, 21);
    assert_int_equal(client_until_closed(a, WAIT_MS), 0);
    int b = client_connect(state);
    frame_status(f, 22);
    header_set_u16(f, offsetof(struct tally_wire_header, version), 2);
    client_send(b, f, sizeof(f));
    expect_error_reply(b, TALLY_WIRE_BAD_VERSION, 0, 0);
    assert_int_equal(client_until_closed(b, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 2);
    assert_int_equal(sn.st.bad_frames, 2);
    assert_int_equal(sn.st.frames_in, 0);
    assert_int_equal(sn.st.idle_closed, 0);
    stop(state);
}

/* body_size above the maximum: TOO_LARGE, then closed; not one byte past the header is read. */
static void test_oversized_body_refused_unread(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_POST, client_id, 8);
    h.body_size = TALLY_WIRE_BODY_MAX + 1;
    h.checksum_body = 0;
    h.checksum_header = tally_wire_checksum(&h, TALLY_WIRE_HEADER_SEALED_SIZE);
    client_send(fd, &h, sizeof(h));
    expect_error_reply(fd, TALLY_WIRE_TOO_LARGE, TALLY_WIRE_OP_POST, 8);
    assert_int_equal(client_until_closed(fd, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.bytes_in, TALLY_WIRE_HEADER_SIZE);
    assert_int_equal(sn.st.bad_frames, 1);
    assert_int_equal(sn.st.frames_in, 0);
    stop(state);
}

/* 8,191 postings fit the frame but not a batch: TOO_LARGE from the header alone (the reply
 * comes before the body is sent), the megabyte of body skipped, the connection kept. */
static void test_too_many_postings_refused_body_skipped(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint32_t body_size = (TALLY_BATCH_MAX + 1) * 128u;
    uint8_t *body = calloc(1, body_size);
    assert_non_null(body);
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_POST, client_id, 9);
    h.body_size = body_size;
    tally_wire_header_seal(&h, body);
    client_send(fd, &h, sizeof(h));
    expect_error_reply(fd, TALLY_WIRE_TOO_LARGE, TALLY_WIRE_OP_POST, 9);
    client_send(fd, body, body_size);
    status_round_trip(fd, 10);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.bytes_in, 2u * TALLY_WIRE_HEADER_SIZE + body_size);
    assert_int_equal(sn.st.bad_frames, 1);
    assert_int_equal(sn.st.frames_in, 1);
    assert_int_equal(sn.st.closed, 0);
    free(body);
    stop(state);
}

/* ---------------------------------------------------------------------------------------------
 * Idle and slow peers, and limits.
 * ------------------------------------------------------------------------------------------- */

static void test_truncated_frames_closed_when_idle(void **state)
{
    struct server *s = start(state, options_default());
    uint8_t f[TALLY_WIRE_HEADER_SIZE + 16];
    frame_account(f, 1, 5);
    int a = client_connect(state);
    client_send(a, f, 40); /* part of the header */
    int b = client_connect(state);
    client_send(b, f, TALLY_WIRE_HEADER_SIZE + 5); /* the header and part of the body */
    assert_int_equal(client_until_closed(a, WAIT_MS), 0);
    assert_int_equal(client_until_closed(b, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 2);
    assert_int_equal(sn.st.idle_closed, 2);
    assert_int_equal(sn.st.frames_in, 0);
    assert_int_equal(sn.st.bad_frames, 0);
    stop(state);
}

static void test_silent_client_closed_when_idle(void **state)
{
    struct server *s = start(state, options_default());
    uint64_t t0 = now_ms();
    int fd = client_connect(state);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, (int)IDLE_MS / 4), 0); /* still open well before the timeout */
    assert_int_equal(client_until_closed(fd, WAIT_MS), 0);
    assert_true(now_ms() - t0 >= IDLE_MS - 50u);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.closes == 1);
    assert_int_equal(sn.st.idle_closed, 1);
    assert_int_equal(sn.st.closed, 1);
    assert_int_equal(sn.st.open, 0);
    stop(state);
}

/* Replies keep coming (as committed POSTs would) to a client that reads nothing: once the kernel
 * holds all it will take, the queue passes out_max and the connection is closed (TALLY_EBUSY to
 * the sender), while another client is served all along. */
static void test_slow_reader_closed_at_out_max_others_served(void **state)
{
    struct net_options o = options_default();
    o.out_max = 64u * 1024u;
    o.idle_timeout_ms = 30000;
    struct server *s = start(state, o);
    int slow = client_connect(state);
    int good = client_connect(state);
    uint8_t f[TALLY_WIRE_HEADER_SIZE + 8];
    struct tally_wire_programs_request q = {.after = 1u << 20, .max = 1}; /* 4 GiB, if taken */
    client_send(slow, f, frame_make(f, TALLY_WIRE_OP_PROGRAMS, 1, &q, sizeof(q)));
    struct snapshot sn = server_snapshot(s);
    uint64_t deadline = now_ms() + WAIT_MS;
    for (uint64_t i = 1; sn.st.slow_closed == 0 && ms_left(deadline) > 0; i++) {
        status_round_trip(good, i);
        sn = server_snapshot(s);
    }
    assert_int_equal(sn.st.slow_closed, 1);
    assert_int_equal(sn.send_ebusy, 1);
    assert_true(client_until_closed(slow, WAIT_MS) >= 0);
    status_round_trip(good, 1u << 20);
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.open, 1);
    assert_int_equal(sn.st.idle_closed, 0);
    stop(state);
}

/* Requests whose replies a client never reads: the connection is paused (no more requests read)
 * once its queue passes half of out_max, and closed as slow when it has not drained for a whole
 * idle period; the queue itself never overflows. */
static void test_stalled_reader_paused_then_closed(void **state)
{
    struct net_options o = options_default();
    o.out_max = 128u * 1024u;
    o.idle_timeout_ms = 500;
    struct server *s = start(state, o);
    int slow = client_connect(state);
    enum { REQUESTS = 2000 }; /* 2,000 x 8 pages: 64 MiB of replies, far above any socket buffer */
    size_t frame = TALLY_WIRE_HEADER_SIZE + sizeof(struct tally_wire_programs_request);
    uint8_t *out = malloc(REQUESTS * frame);
    assert_non_null(out);
    struct tally_wire_programs_request q = {.after = 0, .max = 8};
    for (unsigned i = 0; i < REQUESTS; i++)
        frame_make(out + i * frame, TALLY_WIRE_OP_PROGRAMS, i + 1, &q, sizeof(q));
    client_send(slow, out, REQUESTS * frame); /* fits the socket buffers: never blocks */
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 1);
    assert_int_equal(sn.st.slow_closed, 1);
    assert_int_equal(sn.st.idle_closed, 0);
    assert_int_equal(sn.send_ebusy, 0);
    assert_true(sn.st.paused >= 1);
    assert_true(sn.frames < REQUESTS); /* it stopped reading requests */
    assert_true(client_until_closed(slow, WAIT_MS) >= 0);
    free(out);
    stop(state);
}

static void test_connections_over_max_closed_at_once(void **state)
{
    struct net_options o = options_default();
    o.max_conns = 4;
    o.idle_timeout_ms = 30000;
    struct server *s = start(state, o);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = client_connect(state);
        status_round_trip(fds[i], (uint64_t)i + 1); /* accepted, not just queued */
    }
    for (int i = 0; i < 3; i++) {
        int extra = client_connect(state);
        assert_int_equal(client_until_closed(extra, WAIT_MS), 0);
    }
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.refused == 3);
    assert_int_equal(sn.st.accepted, 4);
    assert_int_equal(sn.st.open, 4);
    for (int i = 0; i < 4; i++)
        status_round_trip(fds[i], (uint64_t)i + 10);
    client_close(state, fds[0]);
    WAIT_FOR(s, sn, sn.st.closed == 1);
    int again = client_connect(state);
    status_round_trip(again, 99);
    sn = server_snapshot(s);
    assert_int_equal(sn.st.accepted, 5);
    assert_int_equal(sn.st.refused, 3);
    assert_int_equal(sn.st.open, 4);
    stop(state);
}

/* With two slots, twelve connections one after another: slots are reused, ids never are. */
static void test_connection_ids_never_reused(void **state)
{
    struct net_options o = options_default();
    o.max_conns = 2;
    struct server *s = start(state, o);
    uint64_t ids[12];
    struct snapshot sn;
    for (unsigned i = 0; i < 12; i++) {
        int fd = client_connect(state);
        ids[i] = status_round_trip(fd, i + 1);
        assert_true(ids[i] != 0);
        assert_true((ids[i] & 0xffffffu) < 2u);
        for (unsigned j = 0; j < i; j++)
            assert_true(ids[i] != ids[j]);
        client_close(state, fd);
        WAIT_FOR(s, sn, sn.st.closed == i + 1);
        assert_int_equal(sn.last_closed_id, ids[i]);
    }
    stop(state);
}

/* net_drop from inside on_frame: no reply goes out, net_send to it answers TALLY_ECLOSED, and
 * on_close follows from the loop, not from inside net_drop. */
static void test_drop_from_handler(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    uint64_t conn = status_round_trip(fd, 1);
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    memcpy(reg.label, "drop", 4);
    uint8_t f[2 * TALLY_WIRE_HEADER_SIZE + sizeof(reg)];
    size_t len = frame_make(f, TALLY_WIRE_OP_REGISTER, 0, &reg, sizeof(reg));
    len += frame_status(f + len, 2); /* after the drop: never delivered */
    client_send(fd, f, len);
    assert_int_equal(client_until_closed(fd, WAIT_MS), 0);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.closes == 1);
    assert_int_equal(sn.dropped_id, conn);
    assert_int_equal(sn.drop_send_rc, TALLY_ECLOSED);
    assert_int_equal(sn.last_closed_id, conn);
    assert_int_equal(sn.frames, 2);
    stop(state);
}

static void test_oversized_reply_refused_connection_kept(void **state)
{
    struct server *s = start(state, options_default());
    int fd = client_connect(state);
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    memcpy(reg.label, "big", 3);
    uint8_t f[TALLY_WIRE_HEADER_SIZE + sizeof(reg)];
    client_send(fd, f, frame_make(f, TALLY_WIRE_OP_REGISTER, 0, &reg, sizeof(reg)));
    struct tally_wire_header h;
    struct tally_wire_session session;
    assert_true(client_reply(fd, &h, (uint8_t *)&session, sizeof(session)));
    assert_int_equal(h.op, TALLY_WIRE_OP_REGISTER);
    assert_int_equal(h.status, TALLY_WIRE_OK);
    status_round_trip(fd, 1);
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.big_send_rc, TALLY_ETOO_LARGE);
    assert_int_equal(sn.st.frames_out, 2);
    assert_int_equal(sn.st.closed, 0);
    stop(state);
}

/* Out of file descriptors: accept fails with EMFILE; the layer pauses accepting (no spinning on
 * a listening socket that stays readable) and takes the waiting client once a descriptor is
 * free again. The table is filled with dummies (dup) but for five descriptors: two clients and
 * their server ends, and a third client whose server end cannot be had. */
static void test_accept_out_of_descriptors_recovers(void **state)
{
    struct ctx *x = *state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &x->nofile), 0);
    x->nofile_saved = true;
    struct rlimit low = x->nofile;
    if (low.rlim_cur > 4096)
        low.rlim_cur = 4096; /* before the server starts: io_uring's accept reads it when armed */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct server *s = start(state, options_default());
    /* One connection first: libuv keeps one spare descriptor per loop from its first stream on
     * (its own EMFILE reserve), which must exist before the table is filled. */
    int warm = client_connect(state);
    status_round_trip(warm, 1);
    client_close(state, warm);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.closed == 1);
    x->dummies = malloc(4096 * sizeof(int));
    assert_non_null(x->dummies);
    while (x->ndummies < 4096) {
        int fd = dup(0);
        if (fd < 0)
            break;
        x->dummies[x->ndummies++] = fd;
    }
    assert_int_equal(errno, EMFILE);
    assert_true(x->ndummies >= 5);
    for (int i = 0; i < 5; i++)
        close(x->dummies[--x->ndummies]);
    int a = client_connect(state);
    status_round_trip(a, 1);
    int b = client_connect(state);
    status_round_trip(b, 2);
    int c = client_connect(state);
    uint8_t f[TALLY_WIRE_HEADER_SIZE];
    client_send(c, f, frame_status(f, 3));
    struct pollfd p = {.fd = c, .events = POLLIN};
    uint64_t cpu0 = cpu_ms();
    assert_int_equal(poll(&p, 1, 300), 0); /* not served while no descriptor is free */
    assert_true(cpu_ms() - cpu0 < 150);    /* ...and the server waits, it does not spin */
    client_close(state, a);
    expect_status_reply(c, 3); /* served once the server has closed a's end */
    sn = server_snapshot(s);
    assert_int_equal(sn.st.accepted, 4);
    assert_int_equal(sn.st.refused, 0);
    stop(state);
}

/* net_close with clients connected: each sees its connection end, each is reported closed. */
static void test_close_with_connections_open(void **state)
{
    struct server *s = start(state, options_default());
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = client_connect(state);
        status_round_trip(fds[i], 1);
    }
    struct snapshot sn = server_snapshot(s);
    assert_int_equal(sn.st.open, 3);
    stop(state);
    assert_int_equal(s->snap.closes, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(client_until_closed(fds[i], WAIT_MS), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Random bytes.
 * ------------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* One fuzz message: random bytes; or "TLY1" and random bytes; or a correctly sealed header with
 * random fields and a body of random size; or a valid frame followed by random bytes. */
static size_t fuzz_message(uint64_t *rng, uint8_t *buf, size_t cap)
{
    size_t len = 1 + rng_next(rng) % 300;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rng_next(rng);
    switch (rng_next(rng) % 4) {
    case 0:
        return len;
    case 1:
        memcpy(buf, TALLY_WIRE_MAGIC, len < 4 ? len : 4);
        return len;
    case 2: {
        struct tally_wire_header h;
        tally_wire_header_init(&h, (uint16_t)(rng_next(rng) % 16), client_id, rng_next(rng));
        h.flags = (uint16_t)(rng_next(rng) % 3 == 0 ? rng_next(rng) : 0);
        h.status = (uint16_t)(rng_next(rng) % 5 == 0 ? rng_next(rng) % 20 : 0);
        h.index = rng_next(rng) % 2;
        h.body_size = (uint32_t)(rng_next(rng) % 600);
        size_t total = sizeof(h) + h.body_size;
        if (total > cap)
            return len;
        tally_wire_header_seal(&h, buf + sizeof(h));
        memcpy(buf, &h, sizeof(h));
        return rng_next(rng) % 3 == 0 ? total - rng_next(rng) % total : total;
    }
    default:
        frame_status(buf, 77);
        return len < TALLY_WIRE_HEADER_SIZE ? TALLY_WIRE_HEADER_SIZE : len;
    }
}

static void test_random_bytes_then_good_client_served(void **state)
{
    struct net_options o = options_default();
    o.max_conns = 64;
    o.idle_timeout_ms = 200;
    struct server *s = start(state, o);
    uint64_t rng = 0x9e3779b97f4a7c15u;
    uint8_t buf[1024], sink[4096];
    unsigned rounds = 0;
    uint64_t deadline = now_ms() + 8000;
    for (; rounds < 400 && ms_left(deadline) > 0; rounds++) {
        int fd = client_connect(state);
        size_t len = fuzz_message(&rng, buf, sizeof(buf));
        bool closed;
        client_pump(fd, buf, len, sink, sizeof(sink), 5, &closed);
        client_close(state, fd);
    }
    int good = client_connect(state);
    status_round_trip(good, 1);
    client_close(state, good);
    struct snapshot sn;
    WAIT_FOR(s, sn, sn.st.accepted + sn.st.refused == rounds + 1u && sn.st.open == 0);
    assert_int_equal(sn.closes, sn.st.accepted);
    print_message("fuzz: %u connections, %llu bad frames, %llu frames, %llu refused\n", rounds,
                  (unsigned long long)sn.st.bad_frames, (unsigned long long)sn.st.frames_in,
                  (unsigned long long)sn.st.refused);
    stop(state);
}

/* ---------------------------------------------------------------------------------------------
 * Backend choice and options (not per backend).
 * ------------------------------------------------------------------------------------------- */

static void close_done(void *arg)
{
    *(bool *)arg = true;
}

static void frame_ignored(void *ctx, uint64_t conn, const struct tally_wire_header *h,
                          const uint8_t *body)
{
    (void)ctx;
    (void)conn;
    (void)h;
    (void)body;
}

/* net_init on a private loop; on success, the chosen backend and the address, then closed. */
static int try_init(struct net_options o, enum net_backend *chosen, char *address)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct net_handler h = {.on_frame = frame_ignored};
    struct net *n;
    int rc = net_init(&n, &loop, &o, &h);
    if (rc == 0) {
        if (chosen != NULL)
            *chosen = net_backend_of(n);
        if (address != NULL)
            snprintf(address, TALLY_WIRE_ADDRESS_SIZE, "%s", net_address(n));
        bool done = false;
        net_close(n, close_done, &done);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (!done)
            rc = -EINVAL;
    }
    if (uv_loop_close(&loop) != 0)
        rc = -EBUSY;
    return rc;
}

static void test_auto_falls_back_when_uring_refused(void **state)
{
    (void)state;
    struct net_options o = options_default();
    o.backend = NET_AUTO;
    const char *was = getenv("TALLY_NET_FORCE_EPOLL");
    char saved[8] = "";
    if (was != NULL)
        snprintf(saved, sizeof(saved), "%s", was);
    unsetenv("TALLY_NET_FORCE_EPOLL");
    o.backend = NET_URING;
    bool kernel_allows = try_init(o, NULL, NULL) == 0; /* whatever the caller's environment */
    o.backend = NET_AUTO;
    enum net_backend chosen;
    assert_int_equal(try_init(o, &chosen, NULL), 0);
    assert_int_equal(chosen, kernel_allows ? NET_URING : NET_EPOLL);
    setenv("TALLY_NET_FORCE_EPOLL", "1", 1);
    assert_int_equal(try_init(o, &chosen, NULL), 0);
    assert_int_equal(chosen, NET_EPOLL);
    o.backend = NET_URING;
    assert_int_equal(try_init(o, NULL, NULL), -EPERM);
    if (was != NULL)
        setenv("TALLY_NET_FORCE_EPOLL", saved, 1);
    else
        unsetenv("TALLY_NET_FORCE_EPOLL");
}

#if defined(__x86_64__)
/* A child process with a seccomp filter like a container runtime's: io_uring_setup fails with
 * EPERM. Exit status: 0 when NET_URING reports -EPERM and NET_AUTO chose epoll. */
static int seccomp_child(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
                              .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 10;
    unsetenv("TALLY_NET_FORCE_EPOLL");
    struct net_options o = options_default();
    o.backend = NET_URING;
    if (try_init(o, NULL, NULL) != -EPERM)
        return 11;
    o.backend = NET_AUTO;
    enum net_backend chosen = NET_AUTO;
    if (try_init(o, &chosen, NULL) != 0)
        return 12;
    return chosen == NET_EPOLL ? 0 : 13;
}

static void test_auto_falls_back_under_seccomp(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(seccomp_child());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 10)
        skip(); /* seccomp filters not allowed here */
    assert_int_equal(WEXITSTATUS(status), 0);
}
#else
static void test_auto_falls_back_under_seccomp(void **state)
{
    (void)state;
    skip(); /* the filter above is written for x86-64 system call numbers */
}
#endif

static void test_bad_options_refused(void **state)
{
    (void)state;
    struct net_options o = options_default();
    o.backend = NET_EPOLL;
    const char *bad[] = {
        "nonsense",    "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:8x", "::1:80",
        "localhost:0", ":0",        NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        o.address = bad[i];
        assert_int_equal(try_init(o, NULL, NULL), TALLY_ECONFIG);
    }
    o = options_default();
    o.backend = NET_EPOLL;
    o.recv_buffers = 3;
    assert_int_equal(try_init(o, NULL, NULL), TALLY_ECONFIG);
    o.recv_buffers = 0;
    o.out_max = TALLY_WIRE_HEADER_SIZE - 1;
    assert_int_equal(try_init(o, NULL, NULL), TALLY_ECONFIG);
    o.out_max = 0;
    o.max_conns = (1u << 24) + 1;
    assert_int_equal(try_init(o, NULL, NULL), TALLY_ECONFIG);
}

static void test_address_bound_and_in_use(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct net_handler h = {.on_frame = frame_ignored};
    struct net_options o = options_default();
    o.backend = NET_EPOLL;
    struct net *n;
    assert_int_equal(net_init(&n, &loop, &o, &h), 0);
    const char *bound = net_address(n);
    assert_int_equal(strncmp(bound, "127.0.0.1:", 10), 0);
    assert_true(atoi(bound + 10) > 0);
    char again[TALLY_WIRE_ADDRESS_SIZE];
    snprintf(again, sizeof(again), "%s", bound);
    o.address = again;
    assert_int_equal(try_init(o, NULL, NULL), -EADDRINUSE);
    bool done = false;
    net_close(n, close_done, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(done);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* IPv6 loopback, where the machine has it. */
    o.address = "[::1]:0";
    char address[TALLY_WIRE_ADDRESS_SIZE];
    int rc = try_init(o, NULL, address);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT)
        return;
    assert_int_equal(rc, 0);
    assert_int_equal(strncmp(address, "[::1]:", 6), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Main: the same tests for each backend.
 * ------------------------------------------------------------------------------------------- */

#define NET_TEST(f, backend) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, backend)
#define NET_TESTS(backend)                                                                         \
    NET_TEST(test_requests_answered_in_order, backend),                                            \
        NET_TEST(test_pipelined_frames_in_one_write, backend),                                     \
        NET_TEST(test_one_receive_buffer_loses_nothing, backend),                                  \
        NET_TEST(test_frames_split_byte_by_byte, backend),                                         \
        NET_TEST(test_half_closed_client_answered_then_closed, backend),                           \
        NET_TEST(test_largest_frame_reassembled, backend),                                         \
        NET_TEST(test_bad_magic_closed_without_reply, backend),                                    \
        NET_TEST(test_header_checksum_mismatch_answered_then_closed, backend),                     \
        NET_TEST(test_body_checksum_mismatch_answered_connection_kept, backend),                   \
        NET_TEST(test_kept_verdicts_answered_and_skipped, backend),                                \
        NET_TEST(test_closing_verdicts_answered_then_closed, backend),                             \
        NET_TEST(test_oversized_body_refused_unread, backend),                                     \
        NET_TEST(test_too_many_postings_refused_body_skipped, backend),                            \
        NET_TEST(test_truncated_frames_closed_when_idle, backend),                                 \
        NET_TEST(test_silent_client_closed_when_idle, backend),                                    \
        NET_TEST(test_slow_reader_closed_at_out_max_others_served, backend),                       \
        NET_TEST(test_stalled_reader_paused_then_closed, backend),                                 \
        NET_TEST(test_pipelining_reader_throttled_not_closed, backend),                            \
        NET_TEST(test_connections_over_max_closed_at_once, backend),                               \
        NET_TEST(test_connection_ids_never_reused, backend),                                       \
        NET_TEST(test_drop_from_handler, backend),                                                 \
        NET_TEST(test_oversized_reply_refused_connection_kept, backend),                           \
        NET_TEST(test_accept_out_of_descriptors_recovers, backend),                                \
        NET_TEST(test_close_with_connections_open, backend),                                       \
        NET_TEST(test_random_bytes_then_good_client_served, backend)

int main(void)
{
    struct net_options o = options_default();
    o.backend = NET_URING;
    uring_probe_rc = try_init(o, NULL, NULL);
    uring_available = uring_probe_rc == 0;
    if (!uring_available)
        fprintf(stderr, "test_net: io_uring refused here (%s): the io_uring tests are skipped\n",
                tally_strerror(uring_probe_rc));

    const struct CMUnitTest uring_tests[] = {NET_TESTS(&backend_uring)};
    const struct CMUnitTest epoll_tests[] = {NET_TESTS(&backend_epoll)};
    const struct CMUnitTest choice_tests[] = {
        cmocka_unit_test(test_auto_falls_back_when_uring_refused),
        cmocka_unit_test(test_auto_falls_back_under_seccomp),
        cmocka_unit_test(test_bad_options_refused),
        cmocka_unit_test(test_address_bound_and_in_use),
    };
    int failed = cmocka_run_group_tests_name("net/io_uring", uring_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("net/epoll", epoll_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("net/choice", choice_tests, NULL, NULL);
    return failed == 0 ? 0 : 1;
}
