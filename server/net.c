/* net.c: tallyd's client network layer, the part both backends share (server/net.h).
 *
 * Design notes
 * ------------
 * How a frame flows. A backend hands received bytes, in whatever chunks the kernel cut them, to
 * net_conn_input. While nothing is pending, a frame lying whole inside a chunk is judged and
 * delivered where it lies (no copy); what is left (the start of a frame that straddles chunks)
 * goes to the connection's input buffer, which holds any valid frame whole, and is consumed from
 * there as the rest arrives. The header is judged as soon as its 64 bytes are there, once: a
 * header the wire layer condemns gets its verdict at once, and a body the header already
 * condemns (a size misfit, too many items) is skipped as it streams past, never stored. A frame
 * that passes every check reaches on_frame, in arrival order.
 *
 * Replies. net_send copies the sealed header and body into the connection's ring of out_max bytes
 * and marks the connection dirty; nothing is written yet. At the end of each loop phase (uv_check,
 * right after the I/O callbacks; uv_prepare, right before the loop blocks) the dirty list is
 * flushed: one send per connection carries every reply queued since the last one (epoll: one
 * uv_write; io_uring: one SQE per connection, then one io_uring_submit for all of them).
 *
 * Backpressure and slow readers. Replies are produced faster than the kernel takes them whenever
 * a client pipelines: one 64 KiB read of 64-byte requests can ask for megabytes of answers. So a
 * connection whose queue reaches out_max / 2 is paused: its bytes stay in the kernel (TCP then
 * slows the client down) until the queue has drained to out_max / 4, when the requests that
 * waited are consumed. Bytes the backend had already received when it paused wait in the input
 * buffer's slack (NET_IN_SLACK). A reader too slow to serve is closed (slow_closed): when a reply
 * does not fit its queue (TALLY_EBUSY to the sender: replies produced without new requests, as
 * commits are), or when it stayed paused for a whole idle period. Either way one stalled client
 * never holds more than its bounded buffers, nor other clients hostage.
 *
 * Faults. Each verdict of common/wire.c says whether to answer and whether to close
 * (tally_wire_fault_replies/closes). The answer is queued like any reply; a closing verdict puts
 * the connection in LINGER: input is discarded (the framing is lost), the queue drains, then the
 * socket closes, and the idle timer bounds that wait. A peer whose first bytes cannot begin
 * "TLY1" is closed as soon as they arrive, without waiting for a whole header: an HTTP probe on
 * the wrong port is gone at once instead of holding a slot until the idle timeout.
 *
 * Time. Each connection has a uv_timer armed for idle_ms at accept. Traffic either way (bytes
 * received, or bytes of replies the kernel took) only stamps last_active_ms; the timer, when it
 * fires, sleeps the rest of the period if there was traffic, so a busy connection costs no timer
 * operation per receive. A connection still taking its replies is not idle, however long ago
 * it last sent: a client that pipelined a thousand reads and is still reading the answers.
 *
 * Memory. Everything is allocated in net_init: the slot table, the dirty lists, and one
 * anonymous mapping (MAP_NORESERVE) holding each slot's input buffer (NET_IN_SIZE) and output
 * ring (out_max), so memory is bounded by max_conns x (NET_IN_SIZE + out_max), and only the
 * pages a connection actually touches become resident (given back on close past
 * NET_TRIM_BYTES): rings restart at offset 0 whenever they empty, so a request-reply connection
 * touches a few pages, not its whole ring.
 *
 * Invariants: a slot is reused only after net_conn_released (no kernel operation names it any
 * more); on_frame and on_close never run inside net_send, net_drop or net_close; no byte from the
 * network is asserted; nothing is allocated after net_init.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"
#include "tally_errors.h"

#define NET_HEADER TALLY_WIRE_HEADER_SIZE

static void net_close_maybe_finish(struct net *n);
static void net_conn_drain(struct net *n, struct net_conn *c);

/* ---------------------------------------------------------------------------------------------
 * The listening socket.
 * ------------------------------------------------------------------------------------------- */

/* Split "host:port" or "[v6]:port" into host and port texts; numbers only, no names: a replica
 * must not depend on a resolver to start. */
static int net_address_split(const char *address, char host[64], char port[8])
{
    if (address == NULL)
        return TALLY_ECONFIG;
    const char *colon = strrchr(address, ':');
    if (colon == NULL)
        return TALLY_ECONFIG;
    const char *h = address;
    size_t host_len = (size_t)(colon - address);
    if (host_len >= 2 && h[0] == '[' && h[host_len - 1] == ']') {
        h++;
        host_len -= 2;
    } else if (memchr(h, ':', host_len) != NULL) {
        return TALLY_ECONFIG; /* IPv6 without brackets: the port is ambiguous */
    }
    size_t port_len = strlen(colon + 1);
    if (host_len == 0 || host_len >= 64 || port_len == 0 || port_len > 5)
        return TALLY_ECONFIG;
    unsigned long value = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return TALLY_ECONFIG;
        value = value * 10 + (unsigned long)(colon[1 + i] - '0');
    }
    if (value > 65535)
        return TALLY_ECONFIG;
    memcpy(host, h, host_len);
    host[host_len] = '\0';
    memcpy(port, colon + 1, port_len + 1);
    return 0;
}

/* The bound address as text, "a.b.c.d:port" or "[v6]:port". */
static int net_address_format(struct net *n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(n->listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    char text[INET6_ADDRSTRLEN];
    int port;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
        port = ntohs(a->sin6_port);
        snprintf(n->address, sizeof(n->address), "[%s]:%d", text, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
        port = ntohs(a->sin_port);
        snprintf(n->address, sizeof(n->address), "%s:%d", text, port);
    }
    return 0;
}

int net_listen_socket(const char *address, int *out)
{
    char host[64], port[8];
    int rc = net_address_split(address, host, port);
    if (rc != 0)
        return rc;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
        return TALLY_ECONFIG;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
    } else {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            rc = -errno;
            close(fd);
        }
    }
    freeaddrinfo(ai);
    if (rc == 0)
        *out = fd;
    return rc;
}

/* Bind and listen. The socket is left blocking: io_uring waits on it by itself, and the epoll
 * backend's uv_poll makes it non-blocking. */
static int net_listen(struct net *n, const char *address)
{
    int rc = net_listen_socket(address, &n->listen_fd);
    if (rc != 0)
        return rc;
    rc = net_address_format(n);
    if (rc != 0) {
        close(n->listen_fd);
        n->listen_fd = -1;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Start-up and the final release.
 * ------------------------------------------------------------------------------------------- */

static size_t net_page_round(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (size + page - 1) / page * page;
}

static int net_options_check(struct net *n, const struct net_options *o)
{
    n->max_conns = o->max_conns != 0 ? o->max_conns : NET_CONNS_DEFAULT;
    n->out_max = o->out_max != 0 ? o->out_max : NET_OUT_DEFAULT;
    n->idle_ms = o->idle_timeout_ms != 0 ? o->idle_timeout_ms : NET_IDLE_DEFAULT_MS;
    n->recv_buffers = o->recv_buffers;
    if (n->max_conns > NET_CONNS_MAX || n->out_max < NET_HEADER)
        return TALLY_ECONFIG;
    if (n->recv_buffers > 32768u || (n->recv_buffers & (n->recv_buffers - 1)) != 0)
        return TALLY_ECONFIG;
    return 0;
}

static void net_free(struct net *n)
{
    if (n->arena != NULL)
        munmap(n->arena, n->arena_size);
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    free(n->conns);
    free(n->free_slots);
    free(n->dirty);
    free(n->dirty_work);
    free(n);
}

/* Every slot and every buffer, once. */
static int net_alloc(struct net **out, uv_loop_t *loop, const struct net_options *opts,
                     const struct net_handler *handler)
{
    if (opts == NULL || handler == NULL || handler->on_frame == NULL)
        return TALLY_ECONFIG;
    struct net *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->loop = loop;
    n->handler = *handler;
    n->listen_fd = -1;
    int rc = net_options_check(n, opts);
    if (rc != 0) {
        net_free(n);
        return rc;
    }
    n->conns = calloc(n->max_conns, sizeof(*n->conns));
    n->free_slots = calloc(n->max_conns, sizeof(uint32_t));
    n->dirty = calloc(n->max_conns, sizeof(uint32_t));
    n->dirty_work = calloc(n->max_conns, sizeof(uint32_t));
    size_t stride = NET_IN_SIZE + net_page_round(n->out_max);
    n->arena_size = stride * n->max_conns;
    void *arena = mmap(NULL, n->arena_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    n->arena = arena == MAP_FAILED ? NULL : arena;
    if (n->conns == NULL || n->free_slots == NULL || n->dirty == NULL || n->dirty_work == NULL ||
        n->arena == NULL) {
        net_free(n);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n->max_conns; i++) {
        struct net_conn *c = &n->conns[i];
        c->net = n;
        c->index = i;
        c->in = n->arena + stride * i;
        c->out = c->in + NET_IN_SIZE;
        n->free_slots[i] = n->max_conns - 1 - i; /* slot 0 is taken first */
    }
    n->free_count = n->max_conns;
    *out = n;
    return 0;
}

static bool net_refuse_uring(void)
{
    const char *v = getenv("TALLY_NET_FORCE_EPOLL");
    return v != NULL && strcmp(v, "1") == 0;
}

static int net_backend_start(struct net *n, enum net_backend want)
{
    bool refused = net_refuse_uring();
    int rc;
    switch (want) {
    case NET_EPOLL:
        n->ops = &net_uv_ops;
        break;
    case NET_URING:
        if (refused)
            return -EPERM;
        n->ops = &net_uring_ops;
        break;
    case NET_AUTO:
        /* Whatever stops io_uring here (seccomp's -EPERM, an old kernel's -ENOSYS, a locked
         * memory limit's -ENOMEM) leaves epoll, which works everywhere libuv does. */
        if (!refused) {
            n->ops = &net_uring_ops;
            if (n->ops->start(n) == 0)
                return 0;
        }
        n->ops = &net_uv_ops;
        break;
    default:
        return TALLY_ECONFIG;
    }
    rc = n->ops->start(n);
    if (rc != 0)
        n->ops = NULL;
    return rc;
}

static void net_flush_cb(uv_prepare_t *p);
static void net_check_cb(uv_check_t *c);
static void net_idle_cb(uv_idle_t *i);

/* The uv handles of the core. Last in net_init: none of these can fail, so an error of
 * net_init never leaves a handle that would need an asynchronous close. */
static void net_handles_init(struct net *n)
{
    for (uint32_t i = 0; i < n->max_conns; i++) {
        uv_timer_init(n->loop, &n->conns[i].timer);
        n->conns[i].timer.data = &n->conns[i];
    }
    uv_prepare_init(n->loop, &n->prepare);
    uv_check_init(n->loop, &n->check);
    uv_idle_init(n->loop, &n->idle);
    uv_timer_init(n->loop, &n->accept_pause);
    n->prepare.data = n->check.data = n->idle.data = n->accept_pause.data = n;
    uv_prepare_start(&n->prepare, net_flush_cb);
    uv_check_start(&n->check, net_check_cb);
}

int net_init(struct net **out, uv_loop_t *loop, const struct net_options *opts,
             const struct net_handler *handler)
{
    *out = NULL;
    struct net *n;
    int rc = net_alloc(&n, loop, opts, handler);
    if (rc != 0)
        return rc;
    rc = net_listen(n, opts->address);
    if (rc != 0)
        goto err_after_alloc;
    rc = net_backend_start(n, opts->backend);
    if (rc != 0)
        goto err_after_alloc; /* net_free closes the listening socket */
    net_handles_init(n);
    *out = n;
    return 0;
err_after_alloc:
    net_free(n);
    return rc;
}

enum net_backend net_backend_of(const struct net *n)
{
    return n->ops->kind;
}

const char *net_address(const struct net *n)
{
    return n->address;
}

void net_stats(const struct net *n, struct net_stats *out)
{
    *out = n->stats;
    out->open = (uint32_t)(n->stats.accepted - n->stats.closed);
}

/* ---------------------------------------------------------------------------------------------
 * Connections: accept, find, close, release.
 * ------------------------------------------------------------------------------------------- */

static void net_conn_timer_cb(uv_timer_t *t);

void net_accepted(struct net *n, int fd)
{
    if (n->closing || n->free_count == 0) {
        /* Over max_conns: accepted and closed at once, so the peer learns now (EOF) instead of
         * waiting in the backlog, and the listening socket never stays readable for nothing. */
        close(fd);
        n->stats.refused++;
        return;
    }
    struct net_conn *c = &n->conns[n->free_slots[--n->free_count]];
    c->generation++;
    c->id = (c->generation << NET_SLOT_BITS) | c->index;
    c->state = NET_CONN_OPEN;
    c->in_len = 0;
    c->skip = 0;
    c->hdr_ok = false;
    c->paused = false;
    c->out_head = 0;
    c->out_len = 0;
    c->last_active_ms = uv_now(n->loop);
    n->stats.accepted++;
    /* Replies are already batched per loop iteration; Nagle would only add a delay to each. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uv_timer_start(&c->timer, net_conn_timer_cb, n->idle_ms, 0);
    if (n->ops->conn_start(n, c, fd) != 0)
        net_conn_close(n, c);
}

static struct net_conn *net_conn_find(const struct net *n, uint64_t id)
{
    uint64_t slot = id & (NET_CONNS_MAX - 1);
    if (id == 0 || slot >= n->max_conns)
        return NULL;
    struct net_conn *c = &n->conns[slot];
    return c->id == id && c->state != NET_CONN_FREE ? c : NULL;
}

void net_conn_close(struct net *n, struct net_conn *c)
{
    if (c->state == NET_CONN_FREE || c->state == NET_CONN_CLOSING)
        return;
    c->state = NET_CONN_CLOSING;
    uv_timer_stop(&c->timer);
    /* Queued replies are dropped; a send the kernel still holds keeps pointing into the ring,
     * which stays untouched until the slot is released. */
    c->out_len = 0;
    c->in_len = 0;
    c->skip = 0;
    c->hdr_ok = false;
    n->ops->conn_close(n, c);
}

/* Give back the pages of a connection that used much of its buffers. */
static void net_conn_trim(struct net_conn *c)
{
    if (c->in_touched > NET_TRIM_BYTES)
        (void)madvise(c->in, net_page_round(c->in_touched), MADV_DONTNEED);
    if (c->out_touched > NET_TRIM_BYTES)
        (void)madvise(c->out, net_page_round(c->out_touched), MADV_DONTNEED);
    c->in_touched = 0;
    c->out_touched = 0;
}

void net_conn_released(struct net *n, struct net_conn *c)
{
    uint64_t id = c->id;
    net_conn_trim(c);
    c->state = NET_CONN_FREE;
    c->id = 0;
    c->out_head = 0;
    /* c->dirty stays as it is: while set, the slot's index is on a dirty list, and the flush
     * skips free slots. */
    n->free_slots[n->free_count++] = c->index;
    n->stats.closed++;
    if (n->handler.on_close != NULL)
        n->handler.on_close(n->handler.ctx, id);
    net_close_maybe_finish(n);
}

void net_drop(struct net *n, uint64_t conn_id)
{
    struct net_conn *c = net_conn_find(n, conn_id);
    if (c != NULL)
        net_conn_close(n, c);
}

/* A closing verdict was answered: send the answer, then close (now, if nothing is queued). The
 * idle timer bounds how long a peer that does not read may keep the slot. */
static void net_conn_linger(struct net *n, struct net_conn *c)
{
    if (c->out_len == 0) {
        net_conn_close(n, c);
        return;
    }
    c->state = NET_CONN_LINGER;
    c->in_len = 0;
    c->skip = 0;
    c->hdr_ok = false;
    uv_timer_start(&c->timer, net_conn_timer_cb, n->idle_ms, 0);
}

void net_conn_eof(struct net *n, struct net_conn *c)
{
    /* A client may half-close after its last request (a script piping frames in): what it was
     * answered so far still reaches it. Requests not yet read (paused) are not served. */
    if (c->state == NET_CONN_OPEN || c->state == NET_CONN_LINGER)
        net_conn_linger(n, c);
}

static void net_conn_timer_cb(uv_timer_t *t)
{
    struct net_conn *c = t->data;
    struct net *n = c->net;
    if (c->state == NET_CONN_LINGER) {
        net_conn_close(n, c);
        return;
    }
    if (c->state != NET_CONN_OPEN)
        return;
    uint64_t quiet = uv_now(n->loop) - c->last_active_ms;
    if (quiet < n->idle_ms) {
        uv_timer_start(t, net_conn_timer_cb, n->idle_ms - quiet, 0);
        return;
    }
    /* Paused, and not one byte of its replies taken for a whole period: a reader too slow to
     * serve (or gone without a word), not an idle one. */
    if (c->paused)
        n->stats.slow_closed++;
    else
        n->stats.idle_closed++;
    net_conn_close(n, c);
}

/* ---------------------------------------------------------------------------------------------
 * Output: the per-connection ring and the dirty list.
 * ------------------------------------------------------------------------------------------- */

static void net_ring_put(struct net *n, struct net_conn *c, const void *bytes, uint32_t size)
{
    uint32_t cap = n->out_max;
    uint32_t tail = (uint32_t)(((uint64_t)c->out_head + c->out_len) % cap);
    uint32_t first = size < cap - tail ? size : cap - tail;
    memcpy(c->out + tail, bytes, first);
    memcpy(c->out, (const uint8_t *)bytes + first, size - first);
    c->out_len += size;
    uint32_t end = size - first > 0 ? cap : tail + first;
    if (end > c->out_touched)
        c->out_touched = end;
}

void net_conn_out_span(const struct net *n, const struct net_conn *c, const uint8_t **bytes,
                       uint32_t *size)
{
    uint32_t to_end = n->out_max - c->out_head;
    *bytes = c->out + c->out_head;
    *size = c->out_len < to_end ? c->out_len : to_end;
}

void net_conn_out_span2(const struct net *n, const struct net_conn *c, const uint8_t **bytes,
                        uint32_t *size)
{
    uint32_t to_end = n->out_max - c->out_head;
    *bytes = c->out;
    *size = c->out_len > to_end ? c->out_len - to_end : 0;
}

void net_conn_sent(struct net *n, struct net_conn *c, uint32_t size)
{
    n->stats.bytes_out += size;
    if (c->state != NET_CONN_OPEN && c->state != NET_CONN_LINGER)
        return;
    c->last_active_ms = uv_now(n->loop);
    if (size > c->out_len)
        size = c->out_len; /* the kernel never reports more than it was given */
    c->out_head = (uint32_t)(((uint64_t)c->out_head + size) % n->out_max);
    c->out_len -= size;
    if (c->out_len == 0)
        c->out_head = 0; /* restart at the ring's first pages */
    if (c->out_len > 0)
        net_conn_dirty(n, c);
    else if (c->state == NET_CONN_LINGER)
        net_conn_close(n, c);
    if (c->paused && c->state == NET_CONN_OPEN && c->out_len <= n->out_max / 4) {
        c->paused = false;
        n->ops->resume(n, c);
        net_conn_drain(n, c); /* the requests that waited */
    }
}

void net_conn_dirty(struct net *n, struct net_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    n->dirty[n->dirty_count++] = c->index; /* each slot at most once: bounded by max_conns */
}

/* Work through the dirty list once: the connections marked during this pass wait for the next
 * one, so a backend that cannot make progress now does not spin here. */
static void net_flush(struct net *n)
{
    if (n->finishing)
        return;
    uint32_t count = n->dirty_count;
    uint32_t *work = n->dirty;
    n->dirty = n->dirty_work;
    n->dirty_work = work;
    n->dirty_count = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct net_conn *c = &n->conns[work[i]];
        c->dirty = false;
        if (c->state != NET_CONN_FREE)
            n->ops->flush(n, c);
    }
    bool owed = n->ops->submit(n);
    if (owed || n->dirty_count > 0)
        uv_idle_start(&n->idle, net_idle_cb);
    else
        uv_idle_stop(&n->idle);
}

static void net_flush_cb(uv_prepare_t *p)
{
    net_flush(p->data);
}

static void net_check_cb(uv_check_t *c)
{
    net_flush(c->data);
}

static void net_idle_cb(uv_idle_t *i)
{
    net_flush(i->data);
}

static int net_conn_queue(struct net *n, struct net_conn *c, const struct tally_wire_header *h,
                          const void *body)
{
    uint64_t size = (uint64_t)NET_HEADER + h->body_size;
    if (c->out_len + size > n->out_max) {
        n->stats.slow_closed++;
        net_conn_close(n, c);
        return TALLY_EBUSY;
    }
    net_ring_put(n, c, h, NET_HEADER);
    if (h->body_size > 0)
        net_ring_put(n, c, body, h->body_size);
    n->stats.frames_out++;
    net_conn_dirty(n, c);
    if (!c->paused && c->out_len >= n->out_max / 2) {
        /* Backpressure: read no more requests until the kernel has taken these replies, so a
         * client pipelining faster than it reads is slowed down (TCP pushes back on it) instead
         * of growing our queue or being closed. */
        c->paused = true;
        n->stats.paused++;
        n->ops->pause(n, c);
    }
    return 0;
}

int net_send(struct net *n, uint64_t conn_id, const struct tally_wire_header *h, const void *body)
{
    if (h->body_size > TALLY_WIRE_BODY_MAX)
        return TALLY_ETOO_LARGE;
    struct net_conn *c = net_conn_find(n, conn_id);
    if (c == NULL || c->state != NET_CONN_OPEN)
        return TALLY_ECLOSED;
    return net_conn_queue(n, c, h, body);
}

/* ---------------------------------------------------------------------------------------------
 * Input: frames cut from chunks, judged, delivered.
 * ------------------------------------------------------------------------------------------- */

/* Answer a fault as its verdict says. When the header itself cannot be believed (bad magic,
 * version or header checksum) the answer names no request (PROTOCOL.md §5). */
static void net_conn_fault(struct net *n, struct net_conn *c, const struct tally_wire_header *h,
                           enum tally_wire_fault f)
{
    n->stats.bad_frames++;
    if (tally_wire_fault_replies(f)) {
        bool trusted = f != TALLY_WIRE_FAULT_BAD_MAGIC && f != TALLY_WIRE_FAULT_BAD_VERSION &&
                       f != TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM;
        struct tally_wire_header r;
        tally_wire_reply_init(&r, trusted ? h : NULL, tally_wire_fault_status(f), 0, 0);
        tally_wire_header_seal(&r, NULL);
        if (net_conn_queue(n, c, &r, NULL) != 0)
            return; /* the queue was full: closed */
    }
    if (tally_wire_fault_closes(f))
        net_conn_linger(n, c);
}

/* Whether the first bytes can still begin a frame ("TLY1"). */
static bool net_magic_prefix_ok(const uint8_t *bytes, size_t size)
{
    return memcmp(bytes, TALLY_WIRE_MAGIC, size < 4 ? size : 4) == 0;
}

static void net_conn_bad_magic(struct net *n, struct net_conn *c)
{
    struct tally_wire_header none;
    memset(&none, 0, sizeof(none));
    net_conn_fault(n, c, &none, TALLY_WIRE_FAULT_BAD_MAGIC);
}

/* Judge a header (64 bytes at `bytes`) and the body size it announces. True: c->hdr holds it and
 * its body is wanted. False: the verdict was carried out (answered, closed, or body to skip). */
static bool net_conn_header(struct net *n, struct net_conn *c, const uint8_t *bytes)
{
    struct tally_wire_header h;
    enum tally_wire_fault f = tally_wire_header_decode(&h, bytes, NET_HEADER, TALLY_WIRE_TO_SERVER);
    if (f == TALLY_WIRE_FAULT_NONE)
        f = tally_wire_body_size_check(&h);
    if (f == TALLY_WIRE_FAULT_NONE) {
        c->hdr = h;
        return true;
    }
    net_conn_fault(n, c, &h, f);
    if (c->state != NET_CONN_OPEN)
        return false;
    /* Every verdict that keeps the connection comes after the header checksum and the body limit
     * (PROTOCOL.md §6), so body_size is believed: its bytes are skipped to stay in frame. */
    c->skip = h.body_size <= TALLY_WIRE_BODY_MAX ? h.body_size : 0;
    return false;
}

/* The body of c->hdr has arrived whole at `body`: last checks, then the handler. */
static void net_conn_body(struct net *n, struct net_conn *c, const uint8_t *body)
{
    struct tally_wire_header h = c->hdr;
    enum tally_wire_fault f = tally_wire_body_verify(&h, body);
    if (f == TALLY_WIRE_FAULT_NONE)
        f = tally_wire_request_check(&h, body);
    if (f != TALLY_WIRE_FAULT_NONE) {
        net_conn_fault(n, c, &h, f);
        return;
    }
    n->stats.frames_in++;
    n->handler.on_frame(n->handler.ctx, c->id, &h, body);
}

/* One step on the bytes at `p`: skip body bytes of a refused frame, judge a header, or deliver a
 * whole frame. Returns the bytes used, 0 if more must arrive first. */
static size_t net_conn_step(struct net *n, struct net_conn *c, const uint8_t *p, size_t avail)
{
    if (c->skip > 0) {
        size_t used = avail < c->skip ? avail : c->skip;
        c->skip -= (uint32_t)used;
        return used;
    }
    if (avail < NET_HEADER) {
        if (net_magic_prefix_ok(p, avail))
            return 0;
        net_conn_bad_magic(n, c);
        return avail;
    }
    if (!c->hdr_ok) {
        if (!net_conn_header(n, c, p))
            return NET_HEADER; /* the verdict is carried out; its body, if kept, is skipped */
        c->hdr_ok = true;
    }
    size_t frame = NET_HEADER + (size_t)c->hdr.body_size;
    if (avail < frame)
        return 0;
    c->hdr_ok = false;
    net_conn_body(n, c, p + NET_HEADER);
    return frame;
}

/* Steps on `bytes` while the connection is open and not paused. Returns the bytes used. */
static size_t net_conn_steps(struct net *n, struct net_conn *c, const uint8_t *bytes, size_t size)
{
    size_t at = 0;
    while (at < size && c->state == NET_CONN_OPEN && !c->paused) {
        size_t used = net_conn_step(n, c, bytes + at, size - at);
        if (used == 0)
            break;
        at += used;
    }
    return at;
}

/* Consume what `in` holds; keep the rest at its start (one move, of less than a frame unless
 * paused). */
static void net_conn_drain(struct net *n, struct net_conn *c)
{
    size_t used = net_conn_steps(n, c, c->in, c->in_len);
    if (c->state != NET_CONN_OPEN) {
        c->in_len = 0;
        return;
    }
    if (used > 0) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
    }
}

void net_conn_input(struct net *n, struct net_conn *c, const uint8_t *bytes, size_t size)
{
    n->stats.bytes_in += size;
    if (c->state != NET_CONN_OPEN)
        return; /* LINGER: the framing is lost; CLOSING: nobody listens */
    c->last_active_ms = uv_now(n->loop);
    /* Nothing pending: frames lying whole in the chunk are handled where they lie, no copy. */
    if (c->in_len == 0) {
        size_t used = net_conn_steps(n, c, bytes, size);
        bytes += used;
        size -= used;
    }
    /* The rest joins what is pending. Bounded: each turn takes at least one byte, or closes. */
    while (size > 0 && c->state == NET_CONN_OPEN) {
        size_t room = NET_IN_SIZE - c->in_len;
        if (room == 0) {
            /* Only a paused connection fills the slack: it keeps sending while not reading. */
            n->stats.slow_closed++;
            net_conn_close(n, c);
            return;
        }
        size_t take = size < room ? size : room;
        memcpy(c->in + c->in_len, bytes, take);
        c->in_len += (uint32_t)take;
        if (c->in_len > c->in_touched)
            c->in_touched = c->in_len;
        bytes += take;
        size -= take;
        net_conn_drain(n, c);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Accept pauses and the close sequence.
 * ------------------------------------------------------------------------------------------- */

static void net_accept_pause_cb(uv_timer_t *t)
{
    struct net *n = t->data;
    if (!n->closing)
        n->ops->resume_accepting(n);
}

void net_accept_pause(struct net *n)
{
    if (!n->closing)
        uv_timer_start(&n->accept_pause, net_accept_pause_cb, NET_ACCEPT_PAUSE_MS, 0);
}

void net_accept_stopped(struct net *n)
{
    n->accept_stopped = true;
    net_close_maybe_finish(n);
}

void net_close(struct net *n, void (*done)(void *arg), void *arg)
{
    if (n->closing)
        return;
    n->closing = true;
    n->done = done;
    n->done_arg = arg;
    uv_timer_stop(&n->accept_pause);
    for (uint32_t i = 0; i < n->max_conns; i++)
        net_conn_close(n, &n->conns[i]);
    n->ops->stop_accepting(n);
    net_close_maybe_finish(n);
}

static void net_handle_close(struct net *n, uv_handle_t *h)
{
    h->data = n;
    n->handles_open++;
    uv_close(h, net_handle_closed);
}

/* Once nothing is accepted and every slot is free, close the uv handles; the last close
 * callback frees everything and calls `done`. */
static void net_close_maybe_finish(struct net *n)
{
    if (!n->closing || n->finishing || !n->accept_stopped || n->free_count < n->max_conns)
        return;
    n->finishing = true;
    for (uint32_t i = 0; i < n->max_conns; i++)
        net_handle_close(n, (uv_handle_t *)&n->conns[i].timer);
    net_handle_close(n, (uv_handle_t *)&n->prepare);
    net_handle_close(n, (uv_handle_t *)&n->check);
    net_handle_close(n, (uv_handle_t *)&n->idle);
    net_handle_close(n, (uv_handle_t *)&n->accept_pause);
    n->handles_open += n->ops->close_handles(n);
}

void net_handle_closed(uv_handle_t *handle)
{
    struct net *n = handle->data;
    if (--n->handles_open > 0)
        return;
    n->ops->release(n);
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;
    net_free(n);
    if (done != NULL)
        done(arg);
}
