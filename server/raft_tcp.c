/* raft_tcp.c: TCP_NODELAY on raft_uv's Raft connections (raft_tcp.h). */
#include "raft_tcp.h"

#include <uv.h>

typedef int (*connect_fn)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                          const char *address, raft_uv_connect_cb cb);
typedef int (*listen_fn)(struct raft_uv_transport *t, raft_uv_accept_cb cb);

/* libraft's callbacks and the transport's methods (the same for every raft_uv_tcp transport);
 * all of it runs on loop threads, set before the first call that uses it. */
static raft_uv_connect_cb connect_next;
static raft_uv_accept_cb accept_next;
static connect_fn connect_real;
static listen_fn listen_real;

static void nodelay(struct uv_stream_s *stream)
{
    if (stream != NULL && stream->type == UV_TCP)
        (void)uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static void connect_cb(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    if (status == 0)
        nodelay(stream);
    connect_next(req, stream, status);
}

static int connect_wrapped(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                           const char *address, raft_uv_connect_cb cb)
{
    if (connect_next == NULL)
        connect_next = cb;
    return connect_real(t, req, id, address, cb == connect_next ? connect_cb : cb);
}

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    nodelay(stream);
    accept_next(t, id, address, stream);
}

static int listen_wrapped(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    if (accept_next == NULL)
        accept_next = cb;
    return listen_real(t, cb == accept_next ? accept_cb : cb);
}

void raft_tcp_nodelay_install(struct raft_uv_transport *t)
{
    if (t->connect == connect_wrapped)
        return; /* installed already */
    connect_real = t->connect;
    listen_real = t->listen;
    t->connect = connect_wrapped;
    t->listen = listen_wrapped;
}
