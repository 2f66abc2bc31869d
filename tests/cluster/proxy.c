/* proxy.c: the partitioning Raft proxy of the cluster tests (proxy.h).
 *
 * Design notes
 * ------------
 * One thread, one poll() loop over an eventfd (wakes it for a new partition or a stop), the
 * listeners, and both sockets of every connection. A connection slot goes
 *
 *   FREE -> HANDSHAKE (accepted; the sender's bytes are read into the sender-to-receiver buffer,
 *                      nothing is forwarded yet)
 *        -> CONNECTING (handshake complete and its pair not blocked: a non-blocking connect to
 *                       the receiver's real port)
 *        -> PIPE (bytes flow both ways, the buffered handshake first)
 *        -> FREE (either side closed or failed, or a partition cut the pair).
 *
 * The blocked set the test asks for (want, under lock, numbered by gen_want) is copied into the
 * thread's own (block) at the top of each turn; the thread then closes every connection of a
 * newly blocked pair and only then publishes gen_done, which proxy_partition waits for. Sockets
 * are non-blocking: EAGAIN and short reads and writes are the normal path. A side that closes or
 * fails closes the whole connection: raft_uv never half-closes, and reconnects on its own.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HANDSHAKE_PREAMBLE 24u /* protocol, sender id, address length: 3 x uint64 */
#define HANDSHAKE_PROTOCOL 1u  /* libraft 0.15's raft_uv */
#define PARTITION_WAIT_MS 5000

enum conn_state { CONN_FREE, CONN_HANDSHAKE, CONN_CONNECTING, CONN_PIPE };

/* Bytes read from one side, not yet written to the other: [head, tail) of bytes. */
struct pipe_buf {
    uint32_t head, tail;
    uint8_t bytes[PROXY_BUFFER_SIZE];
};

struct conn {
    enum conn_state state;
    int fd[2];      /* 0: the sender's (accepted), 1: the receiver's (connected) */
    unsigned to;    /* the receiver: the replica whose listener accepted */
    uint64_t from;  /* the sender, from its handshake */
    struct pipe_buf buf[2]; /* buf[d]: read from fd[d], to be written to fd[1 - d] */
};

static struct {
    unsigned n;
    uint16_t target_port[PROXY_REPLICAS_MAX + 1];
    int listener[PROXY_REPLICAS_MAX + 1];
    int wake_fd;
    pthread_t thread;
    bool running;
    atomic_bool stopping;
    bool block[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1]; /* the thread's copy */
    uint64_t gen_seen;
    struct conn conns[PROXY_CONNS_MAX];

    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t enforced;
    bool want[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1];
    uint64_t gen_want, gen_done;
    struct proxy_stats stats;
} px = {.lock = PTHREAD_MUTEX_INITIALIZER, .enforced = PTHREAD_COND_INITIALIZER};

static void count(uint64_t *counter)
{
    pthread_mutex_lock(&px.lock);
    (*counter)++;
    pthread_mutex_unlock(&px.lock);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void conn_close(struct conn *c)
{
    for (int d = 0; d < 2; d++)
        if (c->fd[d] >= 0)
            close(c->fd[d]);
    c->fd[0] = c->fd[1] = -1;
    c->state = CONN_FREE;
}

static bool blocked(const struct conn *c)
{
    return c->from >= 1 && c->from <= px.n && px.block[c->from][c->to];
}

/* ---- the handshake ------------------------------------------------------------------------- */

/* 1: complete (c->from set), 0: more bytes needed, -1: malformed. */
static int handshake_parse(struct conn *c)
{
    const struct pipe_buf *b = &c->buf[0];
    if (b->tail < HANDSHAKE_PREAMBLE)
        return 0;
    uint64_t protocol = le64(b->bytes), length = le64(b->bytes + 16);
    if (protocol != HANDSHAKE_PROTOCOL || length == 0 || length % 8 != 0 ||
        length > PROXY_ADDRESS_MAX)
        return -1;
    if (b->tail < HANDSHAKE_PREAMBLE + length)
        return 0;
    c->from = le64(b->bytes + 8);
    return 1;
}

static void connect_receiver(struct conn *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(px.target_port[c->to]),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    c->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd[1] < 0) {
        count(&px.stats.failed);
        conn_close(c);
        return;
    }
    if (connect(c->fd[1], (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        c->state = CONN_PIPE;
    } else if (errno == EINPROGRESS) {
        c->state = CONN_CONNECTING;
    } else { /* the receiver is down: the sender retries */
        count(&px.stats.failed);
        conn_close(c);
        return;
    }
    count(&px.stats.forwarded);
}

/* ---- moving bytes -------------------------------------------------------------------------- */

/* Read what fits from fd[d] into buf[d]. false: that side closed or failed. */
static bool pump_in(struct conn *c, int d)
{
    struct pipe_buf *b = &c->buf[d];
    if (b->tail == PROXY_BUFFER_SIZE && b->head > 0) {
        memmove(b->bytes, b->bytes + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
    if (b->tail == PROXY_BUFFER_SIZE)
        return true; /* full: backpressure until the other side drains it */
    ssize_t r = recv(c->fd[d], b->bytes + b->tail, PROXY_BUFFER_SIZE - b->tail, 0);
    if (r > 0)
        b->tail += (uint32_t)r;
    return r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR));
}

/* Write what buf[d] holds to fd[1 - d]. false: that side failed. */
static bool pump_out(struct conn *c, int d)
{
    struct pipe_buf *b = &c->buf[d];
    if (b->head == b->tail)
        return true;
    ssize_t w = send(c->fd[1 - d], b->bytes + b->head, b->tail - b->head, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EINTR;
    b->head += (uint32_t)w;
    if (b->head == b->tail)
        b->head = b->tail = 0;
    return true;
}

static void conn_service(struct conn *c, short ev0, short ev1)
{
    if (c->state == CONN_HANDSHAKE) {
        if (ev0 == 0)
            return;
        int ok = pump_in(c, 0) ? handshake_parse(c) : -1;
        if (ok < 0 || (ok == 0 && (ev0 & (POLLHUP | POLLERR)))) {
            count(&px.stats.failed);
            conn_close(c);
        } else if (ok == 1 && blocked(c)) {
            count(&px.stats.refused);
            conn_close(c);
        } else if (ok == 1) {
            connect_receiver(c);
        }
        return;
    }
    if (c->state == CONN_CONNECTING) {
        if (ev1 == 0)
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            count(&px.stats.failed);
            conn_close(c);
            return;
        }
        c->state = CONN_PIPE;
    }
    /* PIPE: each direction in, then out; any failure ends the connection. */
    bool ok = true;
    if (ev0 & (POLLIN | POLLHUP | POLLERR))
        ok = pump_in(c, 0);
    if (ok && (ev1 & (POLLIN | POLLHUP | POLLERR)))
        ok = pump_in(c, 1);
    if (ok)
        ok = pump_out(c, 0) && pump_out(c, 1);
    if (!ok)
        conn_close(c);
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void accept_all(unsigned j)
{
    for (unsigned k = 0; k < PROXY_CONNS_MAX; k++) {
        int fd = accept4(px.listener[j], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN: no more; anything else: the next turn tries again */
        count(&px.stats.accepted);
        struct conn *c = NULL;
        for (unsigned i = 0; i < PROXY_CONNS_MAX && c == NULL; i++)
            if (px.conns[i].state == CONN_FREE)
                c = &px.conns[i];
        if (c == NULL) {
            count(&px.stats.failed);
            close(fd);
            continue;
        }
        c->state = CONN_HANDSHAKE;
        c->fd[0] = fd;
        c->fd[1] = -1;
        c->to = j;
        c->from = 0;
        c->buf[0].head = c->buf[0].tail = c->buf[1].head = c->buf[1].tail = 0;
    }
}

/* Take the newest blocked set and cut what it blocks; then say it is enforced. */
static void partition_enforce(void)
{
    pthread_mutex_lock(&px.lock);
    uint64_t gen = px.gen_want;
    memcpy(px.block, px.want, sizeof(px.block));
    pthread_mutex_unlock(&px.lock);
    if (gen == px.gen_seen)
        return;
    for (unsigned i = 0; i < PROXY_CONNS_MAX; i++) {
        struct conn *c = &px.conns[i];
        if ((c->state == CONN_CONNECTING || c->state == CONN_PIPE) && blocked(c)) {
            count(&px.stats.cut);
            conn_close(c);
        }
    }
    px.gen_seen = gen;
    pthread_mutex_lock(&px.lock);
    px.gen_done = gen;
    pthread_cond_broadcast(&px.enforced);
    pthread_mutex_unlock(&px.lock);
}

static short events_of(const struct conn *c, int side)
{
    short ev = 0;
    if (c->state == CONN_HANDSHAKE)
        return side == 0 ? POLLIN : 0;
    if (c->state == CONN_CONNECTING)
        return side == 1 ? POLLOUT : 0;
    if (c->buf[side].tail < PROXY_BUFFER_SIZE || c->buf[side].head > 0)
        ev |= POLLIN;
    if (c->buf[1 - side].head < c->buf[1 - side].tail)
        ev |= POLLOUT;
    return ev;
}

static void *proxy_main(void *arg)
{
    (void)arg;
    /* wake, listeners, two per connection */
    struct pollfd pf[1 + PROXY_REPLICAS_MAX + 2 * PROXY_CONNS_MAX];
    while (!atomic_load(&px.stopping)) {
        partition_enforce();
        unsigned n = 0;
        pf[n++] = (struct pollfd){.fd = px.wake_fd, .events = POLLIN};
        for (unsigned j = 1; j <= px.n; j++)
            pf[n++] = (struct pollfd){.fd = px.listener[j], .events = POLLIN};
        for (unsigned i = 0; i < PROXY_CONNS_MAX; i++) {
            const struct conn *c = &px.conns[i];
            for (int s = 0; s < 2; s++) /* fd -1 is ignored by poll */
                pf[n++] = (struct pollfd){.fd = c->state == CONN_FREE ? -1 : c->fd[s],
                                          .events = c->state == CONN_FREE ? 0 : events_of(c, s)};
        }
        if (poll(pf, n, 200) <= 0)
            continue;
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(px.wake_fd, &v, sizeof(v));
            (void)r;
        }
        /* Connections first: a slot freed here is not reused by this turn's accepts, whose
         * pollfd entries were filled for the old occupant. */
        for (unsigned i = 0; i < PROXY_CONNS_MAX; i++) {
            struct conn *c = &px.conns[i];
            short ev0 = pf[1 + px.n + 2 * i].revents, ev1 = pf[2 + px.n + 2 * i].revents;
            if (c->state != CONN_FREE && (ev0 | ev1) != 0)
                conn_service(c, ev0, ev1);
        }
        for (unsigned j = 1; j <= px.n; j++)
            if (pf[j].revents & POLLIN)
                accept_all(j);
    }
    return NULL;
}

/* ---- the interface ------------------------------------------------------------------------- */

static int listen_on(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int proxy_start(const uint16_t *listen_port, const uint16_t *target_port, unsigned n)
{
    if (px.running || n == 0 || n > PROXY_REPLICAS_MAX)
        return -EINVAL;
    px.n = n;
    for (unsigned i = 0; i < PROXY_CONNS_MAX; i++) {
        px.conns[i].state = CONN_FREE;
        px.conns[i].fd[0] = px.conns[i].fd[1] = -1;
    }
    memset(px.want, 0, sizeof(px.want));
    memset(px.block, 0, sizeof(px.block));
    memset(&px.stats, 0, sizeof(px.stats));
    px.gen_want = px.gen_done = px.gen_seen = 0;
    atomic_store(&px.stopping, false);
    int rc = 0;
    unsigned j = 1;
    for (; j <= n; j++) {
        px.target_port[j] = target_port[j - 1];
        if ((px.listener[j] = listen_on(listen_port[j - 1])) < 0) {
            rc = px.listener[j];
            goto err_after_listeners;
        }
    }
    if ((px.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = -errno;
        goto err_after_listeners;
    }
    if ((rc = -pthread_create(&px.thread, NULL, proxy_main, NULL)) != 0)
        goto err_after_eventfd;
    px.running = true;
    return 0;

err_after_eventfd:
    close(px.wake_fd);
err_after_listeners:
    while (--j >= 1)
        close(px.listener[j]);
    return rc;
}

static void wake(void)
{
    uint64_t one = 1;
    ssize_t w = write(px.wake_fd, &one, sizeof(one));
    (void)w; /* a full counter still wakes the thread */
}

void proxy_stop(void)
{
    if (!px.running)
        return;
    atomic_store(&px.stopping, true);
    wake();
    pthread_join(px.thread, NULL);
    for (unsigned i = 0; i < PROXY_CONNS_MAX; i++)
        if (px.conns[i].state != CONN_FREE)
            conn_close(&px.conns[i]);
    for (unsigned j = 1; j <= px.n; j++)
        close(px.listener[j]);
    close(px.wake_fd);
    px.running = false;
}

int proxy_partition(const bool block[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1])
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += PARTITION_WAIT_MS / 1000;
    pthread_mutex_lock(&px.lock);
    memcpy(px.want, block, sizeof(px.want));
    uint64_t gen = ++px.gen_want;
    wake();
    int rc = 0;
    while (px.gen_done < gen && rc == 0)
        rc = pthread_cond_timedwait(&px.enforced, &px.lock, &end);
    pthread_mutex_unlock(&px.lock);
    return rc == 0 ? 0 : -ETIMEDOUT;
}

int proxy_heal(void)
{
    static const bool none[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1];
    return proxy_partition(none);
}

void proxy_stats_get(struct proxy_stats *out)
{
    pthread_mutex_lock(&px.lock);
    *out = px.stats;
    pthread_mutex_unlock(&px.lock);
}
