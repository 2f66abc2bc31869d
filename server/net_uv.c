/* net_uv.c: the epoll backend of the network layer, on libuv's uv_tcp (server/net_internal.h).
 *
 * Design notes
 * ------------
 * The fallback for where io_uring is refused (container seccomp profiles): libuv's streams on
 * epoll, on the caller's loop. It moves bytes and nothing else; net.c cuts and judges frames.
 *
 * Accepting: the listening socket is watched with a uv_poll and accepted with accept4 here, not
 * with uv_listen, because libuv stops accepting altogether while a connection it accepted is not
 * taken by uv_accept, and taking one just to refuse it needs a handle whose close is
 * asynchronous. Here a connection over max_conns is a plain close(). At most NET_ACCEPT_BURST
 * accepts run per readiness callback, so a connection storm cannot starve the connections
 * already open.
 *
 * Receiving: every read lands in one buffer shared by all connections (NET_UV_READ_SIZE). libuv
 * calls alloc, read(2) and the read callback back to back on this one thread, and net.c copies
 * out whatever it keeps, so the buffer is free again when the callback returns.
 *
 * Sending: one uv_write per connection at a time, covering everything queued in its ring (two
 * buffers when the ring wraps). libuv writes it all or fails, so short writes and EAGAIN are
 * libuv's; the write callback reports the bytes to net.c, which asks for the next flush if more
 * was queued meanwhile.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"

/* The shared receive buffer: 64 KiB, what one read of a busy loopback socket returns at most
 * (libuv reads again while data remains, up to 32 times per readiness). */
#define NET_UV_READ_SIZE (64u * 1024u)

struct net_uv_conn {
    uv_tcp_t tcp;
    uv_write_t write;
    uint32_t write_size; /* bytes of the uv_write in flight */
    bool writing;
};

struct net_uv {
    uv_poll_t listen;
    struct net_uv_conn *conns;
    char read_buf[NET_UV_READ_SIZE];
};

static struct net_uv_conn *net_uv_conn_of(struct net *n, struct net_conn *c)
{
    struct net_uv *u = n->backend;
    return &u->conns[c->index];
}

static void net_uv_accept_cb(uv_poll_t *poll, int status, int events)
{
    struct net *n = poll->data;
    (void)events;
    if (n->closing)
        return;
    for (unsigned i = 0; i < NET_ACCEPT_BURST && status == 0; i++) {
        int fd = accept4(n->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            net_accepted(n, fd);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return; /* all taken */
        } else if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO) {
            status = -errno; /* EINTR, ECONNABORTED, EPROTO: that one is gone, try the next */
        }
    }
    if (status == 0)
        return; /* burst spent: the socket is still readable, libuv calls again next turn */
    /* Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or worse: the listening
     * socket stays readable, so retrying now would spin. Wait NET_ACCEPT_PAUSE_MS. */
    uv_poll_stop(poll);
    net_accept_pause(n);
}

static int net_uv_start(struct net *n)
{
    struct net_uv *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    u->conns = calloc(n->max_conns, sizeof(*u->conns));
    if (u->conns == NULL) {
        free(u);
        return -ENOMEM;
    }
    int rc = uv_poll_init(n->loop, &u->listen, n->listen_fd); /* also makes it non-blocking */
    if (rc == 0)
        rc = uv_poll_start(&u->listen, UV_READABLE, net_uv_accept_cb);
    if (rc != 0) {
        /* uv_poll_init fails before registering the handle; a start failure cannot happen on a
         * freshly initialised poll, but would leave a handle only uv_close may free. */
        free(u->conns);
        free(u);
        return rc;
    }
    u->listen.data = n;
    n->backend = u;
    return 0;
}

static void net_uv_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct net_conn *c = handle->data;
    struct net_uv *u = c->net->backend;
    (void)suggested;
    buf->base = u->read_buf;
    buf->len = sizeof(u->read_buf);
}

static void net_uv_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct net_conn *c = stream->data;
    if (nread > 0)
        net_conn_input(c->net, c, (const uint8_t *)buf->base, (size_t)nread);
    else if (nread == UV_EOF)
        net_conn_eof(c->net, c); /* libuv stops reading by itself */
    else if (nread < 0)
        net_conn_close(c->net, c); /* reset or error */
}

static int net_uv_conn_start(struct net *n, struct net_conn *c, int fd)
{
    struct net_uv_conn *uc = net_uv_conn_of(n, c);
    uv_tcp_init(n->loop, &uc->tcp);
    uc->tcp.data = c;
    uc->write.data = c;
    uc->writing = false;
    int rc = uv_tcp_open(&uc->tcp, fd);
    if (rc != 0) {
        close(fd); /* the handle does not own it; net.c closes the handle */
        return rc;
    }
    return uv_read_start((uv_stream_t *)&uc->tcp, net_uv_alloc_cb, net_uv_read_cb);
}

static void net_uv_write_cb(uv_write_t *req, int status)
{
    struct net_conn *c = req->data;
    struct net *n = c->net;
    struct net_uv_conn *uc = net_uv_conn_of(n, c);
    uc->writing = false;
    if (c->state == NET_CONN_CLOSING || c->state == NET_CONN_FREE)
        return; /* UV_ECANCELED from our own close */
    if (status < 0) {
        net_conn_close(n, c);
        return;
    }
    net_conn_sent(n, c, uc->write_size);
}

static void net_uv_flush(struct net *n, struct net_conn *c)
{
    struct net_uv_conn *uc = net_uv_conn_of(n, c);
    if (uc->writing || (c->state != NET_CONN_OPEN && c->state != NET_CONN_LINGER))
        return;
    const uint8_t *p1, *p2;
    uint32_t s1, s2;
    net_conn_out_span(n, c, &p1, &s1);
    net_conn_out_span2(n, c, &p2, &s2);
    if (s1 == 0)
        return;
    uv_buf_t bufs[2] = {uv_buf_init((char *)p1, s1), uv_buf_init((char *)p2, s2)};
    int rc = uv_write(&uc->write, (uv_stream_t *)&uc->tcp, bufs, s2 > 0 ? 2 : 1, net_uv_write_cb);
    if (rc != 0) {
        net_conn_close(n, c);
        return;
    }
    uc->writing = true;
    uc->write_size = s1 + s2;
}

static bool net_uv_submit(struct net *n)
{
    (void)n;
    return false; /* uv_write has already handed the bytes to libuv */
}

/* libuv stops reading at once, even from inside the read callback: at most the rest of the
 * current read is left for net.c to keep. */
static void net_uv_pause(struct net *n, struct net_conn *c)
{
    uv_read_stop((uv_stream_t *)&net_uv_conn_of(n, c)->tcp);
}

static void net_uv_resume(struct net *n, struct net_conn *c)
{
    struct net_uv_conn *uc = net_uv_conn_of(n, c);
    if (!uv_is_readable((uv_stream_t *)&uc->tcp))
        return; /* EOF seen: nothing more to read */
    if (uv_read_start((uv_stream_t *)&uc->tcp, net_uv_alloc_cb, net_uv_read_cb) != 0)
        net_conn_close(n, c);
}

static void net_uv_conn_closed(uv_handle_t *handle)
{
    struct net_conn *c = handle->data;
    net_conn_released(c->net, c);
}

static void net_uv_conn_close(struct net *n, struct net_conn *c)
{
    struct net_uv_conn *uc = net_uv_conn_of(n, c);
    /* A pending write is cancelled (its callback sees UV_ECANCELED) before the close callback. */
    uv_close((uv_handle_t *)&uc->tcp, net_uv_conn_closed);
}

static void net_uv_stop_accepting(struct net *n)
{
    struct net_uv *u = n->backend;
    uv_poll_stop(&u->listen);
    net_accept_stopped(n);
}

static void net_uv_resume_accepting(struct net *n)
{
    struct net_uv *u = n->backend;
    uv_poll_start(&u->listen, UV_READABLE, net_uv_accept_cb);
}

static unsigned net_uv_close_handles(struct net *n)
{
    struct net_uv *u = n->backend;
    u->listen.data = n;
    uv_close((uv_handle_t *)&u->listen, net_handle_closed);
    return 1;
}

static void net_uv_release(struct net *n)
{
    struct net_uv *u = n->backend;
    free(u->conns);
    free(u);
    n->backend = NULL;
}

const struct net_backend_ops net_uv_ops = {
    .kind = NET_EPOLL,
    .start = net_uv_start,
    .conn_start = net_uv_conn_start,
    .flush = net_uv_flush,
    .submit = net_uv_submit,
    .pause = net_uv_pause,
    .resume = net_uv_resume,
    .conn_close = net_uv_conn_close,
    .stop_accepting = net_uv_stop_accepting,
    .resume_accepting = net_uv_resume_accepting,
    .close_handles = net_uv_close_handles,
    .release = net_uv_release,
};
