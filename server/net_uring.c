/* net_uring.c: the io_uring backend of the network layer (server/net_internal.h).
 *
 * Design notes
 * ------------
 * One ring, driven from the caller's libuv loop: the ring's eventfd (io_uring_register_eventfd)
 * is watched with a uv_poll, whose callback drains the completion queue. Submissions are queued
 * by the completions and by net.c's flush, and go to the kernel in one io_uring_submit per flush
 * (net.c flushes after each loop phase), so a loop iteration that answers a thousand requests on
 * a hundred connections enters the kernel once to send them all.
 *
 * Operations, each named in user_data by (slot << 8) | kind:
 *   - accept: one multishot accept on the listening socket, re-armed when the kernel ends it.
 *   - recv: one multishot recv per connection (IORING_RECV_MULTISHOT, kernel >= 6.0) into the
 *     provided-buffer ring. Each completion is handed to net.c, which keeps what it needs, and
 *     its buffer goes straight back to the ring. -ENOBUFS (every buffer in use) ends the
 *     multishot: it is re-armed at once, since the buffers of this very batch are back by then.
 *   - send: at most one per connection, of the ring's first contiguous run; a short send simply
 *     leaves the rest for the next one; -EAGAIN and -EINTR retry.
 *   - cancel: closing a connection shuts the socket down (a receive or send the kernel holds
 *     completes at once) and cancels everything on its fd; the slot is released when the recv,
 *     the send and the cancel have all completed, so no completion ever finds a reused slot.
 *
 * The provided-buffer ring is registered by hand (liburing 2.3 has no io_uring_setup_buf_ring):
 * a page-aligned array of struct io_uring_buf from mmap, io_uring_register_buf_ring, then every
 * buffer added with io_uring_buf_ring_add and published with io_uring_buf_ring_advance. Its
 * size: NET_RECV_BUFFER_SIZE each; by default a quarter of max_conns (16 .. 512): a buffer is
 * held only between a completion and the end of the callback that drains it, so the pool only
 * has to cover the connections that receive within one loop iteration; the others wait one
 * round through -ENOBUFS.
 *
 * Kernel 6.0 is required (multishot recv); older kernels get -ENOSYS at start, so NET_AUTO
 * falls back to epoll rather than failing on the first connection.
 */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "net_internal.h"

enum net_uring_op {
    NET_URING_ACCEPT = 1,
    NET_URING_RECV = 2,
    NET_URING_SEND = 3,
    NET_URING_CANCEL = 4,        /* cancel of a connection's operations */
    NET_URING_ACCEPT_CANCEL = 5, /* cancel of the multishot accept */
    NET_URING_RECV_CANCEL = 6,   /* cancel of a paused connection's recv */
};

/* The buffer group id of the provided-buffer ring. */
#define NET_URING_BGID 7

/* Completions handled per eventfd callback before yielding to the rest of the loop; if more
 * are waiting the callback pokes its own eventfd to come back next iteration. */
#define NET_URING_CQE_BUDGET 4096u
#define NET_URING_CQE_BATCH  64u

struct net_uring_conn {
    int fd;
    uint32_t send_size;    /* bytes of the send in flight */
    bool recv_armed;       /* a multishot recv is in the kernel */
    bool sending;          /* a send is in the kernel */
    bool cancelling;       /* a cancel is in the kernel */
    bool want_recv;        /* a recv must be armed (the SQ was full) */
    bool want_cancel;      /* a cancel must be issued (the SQ was full) */
    bool want_recv_cancel; /* the recv of a paused connection must be cancelled (SQ was full) */
    bool eof;              /* the peer sent EOF: never receive again (it would return 0 again) */
};

struct net_uring {
    struct io_uring ring;
    int event_fd;
    uv_poll_t poll;
    struct io_uring_buf_ring *br;
    size_t br_size;
    uint8_t *bufs;
    uint32_t buf_count;
    struct net_uring_conn *conns;
    bool accept_armed;
    bool want_accept;
    bool want_accept_cancel;
};

static uint64_t net_uring_data(uint32_t slot, enum net_uring_op op)
{
    return ((uint64_t)slot << 8) | (uint64_t)op;
}

static uint32_t net_uring_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* An SQE, submitting what is queued if the SQ is full; NULL only if that submit failed (the
 * caller records what it owes and the next flush retries). */
static struct io_uring_sqe *net_uring_sqe(struct net_uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL && io_uring_submit(&u->ring) >= 0)
        sqe = io_uring_get_sqe(&u->ring);
    return sqe;
}

/* ---------------------------------------------------------------------------------------------
 * Accepting.
 * ------------------------------------------------------------------------------------------- */

static void net_uring_arm_accept(struct net *n)
{
    struct net_uring *u = n->backend;
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    u->want_accept = sqe == NULL;
    if (sqe == NULL)
        return;
    io_uring_prep_multishot_accept(sqe, n->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, net_uring_data(0, NET_URING_ACCEPT));
    u->accept_armed = true;
}

static void net_uring_cancel_accept(struct net *n)
{
    struct net_uring *u = n->backend;
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    u->want_accept_cancel = sqe == NULL;
    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, net_uring_data(0, NET_URING_ACCEPT), 0);
    io_uring_sqe_set_data64(sqe, net_uring_data(0, NET_URING_ACCEPT_CANCEL));
}

static void net_uring_accepted(struct net *n, const struct io_uring_cqe *cqe)
{
    struct net_uring *u = n->backend;
    if ((cqe->flags & IORING_CQE_F_MORE) == 0)
        u->accept_armed = false;
    if (cqe->res >= 0)
        net_accepted(n, cqe->res);
    if (u->accept_armed)
        return;
    if (n->closing) {
        net_accept_stopped(n);
        return;
    }
    /* Ended by the kernel (CQ overflow) or by one aborted connection: accept again now. Any
     * other error (no descriptors, no memory, or worse) would end the next accept the same way
     * at once: wait NET_ACCEPT_PAUSE_MS, so it is retried without spinning. */
    int err = cqe->res < 0 ? -cqe->res : 0;
    if (err == 0 || err == ECONNABORTED || err == EINTR || err == EAGAIN)
        net_uring_arm_accept(n);
    else
        net_accept_pause(n);
}

static void net_uring_stop_accepting(struct net *n)
{
    struct net_uring *u = n->backend;
    u->want_accept = false;
    if (u->accept_armed)
        net_uring_cancel_accept(n); /* net_accept_stopped follows from its last completion */
    else
        net_accept_stopped(n);
}

static void net_uring_resume_accepting(struct net *n)
{
    net_uring_arm_accept(n);
}

/* ---------------------------------------------------------------------------------------------
 * Connections.
 * ------------------------------------------------------------------------------------------- */

static struct net_uring_conn *net_uring_conn_of(struct net *n, const struct net_conn *c)
{
    struct net_uring *u = n->backend;
    return &u->conns[c->index];
}

static void net_uring_arm_recv(struct net *n, struct net_conn *c)
{
    struct net_uring *u = n->backend;
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    uc->want_recv = sqe == NULL;
    if (sqe == NULL) {
        net_conn_dirty(n, c);
        return;
    }
    io_uring_prep_recv_multishot(sqe, uc->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = NET_URING_BGID;
    io_uring_sqe_set_data64(sqe, net_uring_data(c->index, NET_URING_RECV));
    uc->recv_armed = true;
}

static int net_uring_conn_start(struct net *n, struct net_conn *c, int fd)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    memset(uc, 0, sizeof(*uc));
    uc->fd = fd;
    net_uring_arm_recv(n, c);
    return 0;
}

static void net_uring_cancel(struct net *n, struct net_conn *c)
{
    struct net_uring *u = n->backend;
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    uc->want_cancel = sqe == NULL;
    if (sqe == NULL) {
        net_conn_dirty(n, c);
        return;
    }
    io_uring_prep_cancel_fd(sqe, uc->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, net_uring_data(c->index, NET_URING_CANCEL));
    uc->cancelling = true;
}

/* Release the slot once the kernel holds nothing that names it. */
static void net_uring_maybe_release(struct net *n, struct net_conn *c)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    if (c->state != NET_CONN_CLOSING || uc->recv_armed || uc->sending || uc->cancelling ||
        uc->want_cancel)
        return;
    close(uc->fd);
    uc->fd = -1;
    net_conn_released(n, c);
}

static void net_uring_conn_close(struct net *n, struct net_conn *c)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    /* The shutdown ends a receive or a send the kernel holds (EOF, EPIPE) even where the cancel
     * finds it already running; the cancel's own completion then releases the slot, never from
     * inside this call (net_internal.h). */
    (void)shutdown(uc->fd, SHUT_RDWR);
    uc->want_recv = false;
    net_uring_cancel(n, c);
}

static void net_uring_send(struct net *n, struct net_conn *c)
{
    struct net_uring *u = n->backend;
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    const uint8_t *bytes;
    uint32_t size;
    net_conn_out_span(n, c, &bytes, &size);
    if (size == 0)
        return;
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    if (sqe == NULL) {
        net_conn_dirty(n, c);
        return;
    }
    io_uring_prep_send(sqe, uc->fd, bytes, size, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, net_uring_data(c->index, NET_URING_SEND));
    uc->sending = true;
    uc->send_size = size;
}

/* Pausing ends the multishot recv: a cancel by its user_data. Receives the kernel completes
 * before the cancel runs still arrive, and net.c keeps them (NET_IN_SLACK). A cancel is issued
 * synchronously at submission, so it can never hit a recv armed after it. */
static void net_uring_cancel_recv(struct net *n, struct net_conn *c)
{
    struct net_uring *u = n->backend;
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    uc->want_recv_cancel = false;
    if (!uc->recv_armed || !c->paused)
        return;
    struct io_uring_sqe *sqe = net_uring_sqe(u);
    if (sqe == NULL) {
        uc->want_recv_cancel = true;
        net_conn_dirty(n, c);
        return;
    }
    io_uring_prep_cancel64(sqe, net_uring_data(c->index, NET_URING_RECV), 0);
    io_uring_sqe_set_data64(sqe, net_uring_data(c->index, NET_URING_RECV_CANCEL));
}

static void net_uring_pause(struct net *n, struct net_conn *c)
{
    net_uring_cancel_recv(n, c);
}

static void net_uring_resume(struct net *n, struct net_conn *c)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    uc->want_recv_cancel = false;
    if (!uc->recv_armed && !uc->eof)
        net_uring_arm_recv(n, c); /* else its cancel's completion re-arms it */
}

static void net_uring_flush(struct net *n, struct net_conn *c)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    if (uc->want_cancel)
        net_uring_cancel(n, c);
    if (c->state == NET_CONN_CLOSING)
        return;
    if (uc->want_recv_cancel)
        net_uring_cancel_recv(n, c);
    if (uc->want_recv && !uc->recv_armed && !c->paused && !uc->eof)
        net_uring_arm_recv(n, c);
    if (!uc->sending)
        net_uring_send(n, c);
}

/* ---------------------------------------------------------------------------------------------
 * Completions.
 * ------------------------------------------------------------------------------------------- */

static void net_uring_buf_return(struct net_uring *u, uint32_t bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * NET_RECV_BUFFER_SIZE, NET_RECV_BUFFER_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(u->buf_count), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static void net_uring_received(struct net *n, struct net_conn *c, const struct io_uring_cqe *cqe)
{
    struct net_uring *u = n->backend;
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    if ((cqe->flags & IORING_CQE_F_MORE) == 0)
        uc->recv_armed = false;
    if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (bid < u->buf_count) {
            if (cqe->res > 0)
                net_conn_input(n, c, u->bufs + (size_t)bid * NET_RECV_BUFFER_SIZE,
                               (size_t)cqe->res);
            net_uring_buf_return(u, bid);
        }
    }
    /* -ENOBUFS: every buffer in use; -ECANCELED outside a close: the pause's cancel. Both are
     * re-armed below unless paused. 0: the peer closed; other errors: a reset. */
    bool rearm = cqe->res == -ENOBUFS || (cqe->res == -ECANCELED && c->state != NET_CONN_CLOSING);
    if (cqe->res == -ENOBUFS)
        n->stats.nobufs++;
    if (cqe->res == 0) {
        uc->eof = true;
        net_conn_eof(n, c);
    } else if (cqe->res < 0 && !rearm) {
        net_conn_close(n, c);
    }
    if (c->state == NET_CONN_CLOSING) {
        net_uring_maybe_release(n, c);
        return;
    }
    if (!uc->recv_armed && !c->paused && !uc->eof)
        net_uring_arm_recv(n, c); /* ended by -ENOBUFS, the kernel (CQ overflow), a resume */
}

static void net_uring_sent(struct net *n, struct net_conn *c, const struct io_uring_cqe *cqe)
{
    struct net_uring_conn *uc = net_uring_conn_of(n, c);
    uc->sending = false;
    if (c->state == NET_CONN_CLOSING) {
        net_uring_maybe_release(n, c);
        return;
    }
    if (cqe->res > 0) {
        uint32_t size = (uint32_t)cqe->res;
        net_conn_sent(n, c, size < uc->send_size ? size : uc->send_size);
    } else if (cqe->res == -EAGAIN || cqe->res == -EINTR) {
        net_conn_dirty(n, c); /* nothing taken: send again at the next flush */
    } else {
        net_conn_close(n, c); /* EPIPE, ECONNRESET...; 0 bytes of a non-empty send too */
    }
}

static void net_uring_complete(struct net *n, const struct io_uring_cqe *cqe)
{
    uint32_t slot = (uint32_t)(cqe->user_data >> 8);
    enum net_uring_op op = (enum net_uring_op)(cqe->user_data & 0xff);
    if (op == NET_URING_ACCEPT) {
        net_uring_accepted(n, cqe);
        return;
    }
    if (op == NET_URING_ACCEPT_CANCEL || op == NET_URING_RECV_CANCEL || slot >= n->max_conns)
        return; /* only the cancelled operation's own completion matters */
    struct net_conn *c = &n->conns[slot];
    if (c->state == NET_CONN_FREE)
        return; /* cannot happen: a slot is freed only after its last completion */
    switch (op) {
    case NET_URING_RECV:
        net_uring_received(n, c, cqe);
        break;
    case NET_URING_SEND:
        net_uring_sent(n, c, cqe);
        break;
    case NET_URING_CANCEL:
        net_uring_conn_of(n, c)->cancelling = false;
        net_uring_maybe_release(n, c);
        break;
    default:
        break;
    }
}

static void net_uring_poll_cb(uv_poll_t *poll, int status, int events)
{
    struct net *n = poll->data;
    struct net_uring *u = n->backend;
    (void)status;
    (void)events;
    /* Reset the counter first: a completion posted after the drain below signals again. */
    uint64_t count;
    ssize_t r = read(u->event_fd, &count, sizeof(count));
    (void)r;
    unsigned handled = 0;
    while (handled < NET_URING_CQE_BUDGET) {
        struct io_uring_cqe *cqes[NET_URING_CQE_BATCH];
        unsigned got = io_uring_peek_batch_cqe(&u->ring, cqes, NET_URING_CQE_BATCH);
        if (got == 0)
            return;
        for (unsigned i = 0; i < got; i++)
            net_uring_complete(n, cqes[i]);
        io_uring_cq_advance(&u->ring, got);
        handled += got;
    }
    (void)eventfd_write(u->event_fd, 1); /* budget spent: come back next iteration */
}

static bool net_uring_submit(struct net *n)
{
    struct net_uring *u = n->backend;
    if (u->want_accept_cancel)
        net_uring_cancel_accept(n);
    else if (u->want_accept && !n->closing)
        net_uring_arm_accept(n);
    if (io_uring_sq_ready(&u->ring) > 0)
        (void)io_uring_submit(&u->ring); /* on failure the SQEs stay queued for the next try */
    return u->want_accept || u->want_accept_cancel || io_uring_sq_ready(&u->ring) > 0;
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop.
 * ------------------------------------------------------------------------------------------- */

/* Multishot recv needs 6.0; io_uring_setup alone would succeed on 5.19 and fail each recv. */
static bool net_uring_kernel_ok(void)
{
    struct utsname un;
    unsigned major = 0, minor = 0;
    if (uname(&un) != 0 || sscanf(un.release, "%u.%u", &major, &minor) != 2)
        return false;
    (void)minor;
    return major >= 6;
}

/* The provided-buffer ring, registered by hand (see the design notes). */
static int net_uring_buffers_init(struct net *n, struct net_uring *u)
{
    uint32_t count = n->recv_buffers;
    if (count == 0) {
        count = net_uring_pow2(n->max_conns) / 4;
        count = count < 16 ? 16 : count > 512 ? 512 : count;
    }
    u->buf_count = count;
    u->br_size = (size_t)count * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, u->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bufs = mmap(NULL, (size_t)count * NET_RECV_BUFFER_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    u->br = br == MAP_FAILED ? NULL : br;
    u->bufs = bufs == MAP_FAILED ? NULL : bufs;
    if (u->br == NULL || u->bufs == NULL)
        return -ENOMEM;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = count;
    reg.bgid = NET_URING_BGID;
    int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * NET_RECV_BUFFER_SIZE,
                              NET_RECV_BUFFER_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(count), (int)i);
    io_uring_buf_ring_advance(u->br, (int)count);
    return 0;
}

static void net_uring_free(struct net *n, struct net_uring *u)
{
    if (u->bufs != NULL)
        munmap(u->bufs, (size_t)u->buf_count * NET_RECV_BUFFER_SIZE);
    if (u->br != NULL)
        munmap(u->br, u->br_size);
    if (u->event_fd >= 0)
        close(u->event_fd);
    free(u->conns);
    free(u);
    n->backend = NULL;
}

/* Ring sizes: the SQ holds a flush's sends and re-arms (about two per connection), the CQ four
 * times that and at least two per receive buffer, so multishot bursts rarely overflow (and an
 * overflow is not lost: IORING_FEAT_NODROP, drained through io_uring_peek_batch_cqe). */
static int net_uring_ring_init(struct net *n, struct net_uring *u)
{
    uint32_t sq = net_uring_pow2(2 * n->max_conns);
    sq = sq < 64 ? 64 : sq > 4096 ? 4096 : sq;
    uint32_t cq = 4 * sq;
    uint32_t cq_bufs = net_uring_pow2(2 * (n->recv_buffers != 0 ? n->recv_buffers : 512));
    cq = cq < cq_bufs ? cq_bufs : cq;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = cq;
    return io_uring_queue_init_params(sq, &u->ring, &p);
}

static int net_uring_start(struct net *n)
{
    if (!net_uring_kernel_ok())
        return -ENOSYS;
    struct net_uring *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    u->event_fd = -1;
    n->backend = u;
    u->conns = calloc(n->max_conns, sizeof(*u->conns));
    if (u->conns == NULL) {
        net_uring_free(n, u);
        return -ENOMEM;
    }
    int rc = net_uring_ring_init(n, u);
    if (rc < 0) {
        net_uring_free(n, u);
        return rc; /* -EPERM under seccomp, -ENOSYS without io_uring, -ENOMEM (memlock) */
    }
    rc = net_uring_buffers_init(n, u);
    if (rc < 0)
        goto err_after_ring;
    u->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->event_fd < 0) {
        rc = -errno;
        goto err_after_ring;
    }
    rc = io_uring_register_eventfd(&u->ring, u->event_fd);
    if (rc < 0)
        goto err_after_ring;
    net_uring_arm_accept(n);
    rc = io_uring_submit(&u->ring); /* proves io_uring_enter works too, not only setup */
    if (rc < 0)
        goto err_after_ring;
    rc = uv_poll_init(n->loop, &u->poll, u->event_fd);
    if (rc != 0)
        goto err_after_ring;
    u->poll.data = n;
    uv_poll_start(&u->poll, UV_READABLE, net_uring_poll_cb);
    return 0;
err_after_ring:
    io_uring_queue_exit(&u->ring); /* cancels the accept, unregisters buffers and eventfd */
    net_uring_free(n, u);
    return rc;
}

static unsigned net_uring_close_handles(struct net *n)
{
    struct net_uring *u = n->backend;
    u->poll.data = n;
    uv_close((uv_handle_t *)&u->poll, net_handle_closed);
    return 1;
}

static void net_uring_release(struct net *n)
{
    struct net_uring *u = n->backend;
    io_uring_queue_exit(&u->ring);
    net_uring_free(n, u);
}

const struct net_backend_ops net_uring_ops = {
    .kind = NET_URING,
    .start = net_uring_start,
    .conn_start = net_uring_conn_start,
    .flush = net_uring_flush,
    .submit = net_uring_submit,
    .pause = net_uring_pause,
    .resume = net_uring_resume,
    .conn_close = net_uring_conn_close,
    .stop_accepting = net_uring_stop_accepting,
    .resume_accepting = net_uring_resume_accepting,
    .close_handles = net_uring_close_handles,
    .release = net_uring_release,
};
