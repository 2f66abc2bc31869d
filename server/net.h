/* net.h: tallyd's client-facing network layer: accept connections, read whole frames, send replies.
 *
 * What it does
 * ------------
 * It listens on one TCP address, reads bytes from each connection, cuts them into frames
 * (include/tally_wire.h: a 64-byte header, then body_size bytes), checks every frame with
 * common/wire.c (magic, version, header checksum, sizes, body checksum, operation and body size)
 * and hands each valid request frame to the handler, in order per connection. It sends replies
 * the server gives it, in order per connection, batching sends where the backend can.
 *
 * Bad input never reaches the handler and never crashes or stalls the server: a frame the wire
 * layer judges bad gets the reply its verdict names (tally_wire_*: BAD_CHECKSUM, TOO_LARGE,
 * BAD_VERSION, BAD_REQUEST, UNKNOWN_OP...) or, where the verdict says so (bad magic, a header
 * that cannot be trusted), the connection is closed. A connection that sends nothing (and takes
 * none of its replies) for idle_timeout_ms, or sends half a frame and stops, is closed. A connection whose queued replies
 * reach out_max / 2 is not read any further until they drain to out_max / 4 (backpressure: a
 * client may pipeline as much as it likes, TCP slows it down); one that does not read its
 * replies (a reply would take its queue past out_max, or it stayed paused for idle_timeout_ms)
 * is closed; other connections are never held up by it. A peer's EOF (half-close) still gets
 * the replies already queued, then the close. docs/NETWORK.md has the whole design.
 *
 * Two backends, one interface, chosen at net_init (--io uring|epoll|auto in tallyd):
 *   - io_uring (liburing): multishot accept, receive into a registered buffer ring (registered
 *     by hand: liburing 2.3 lacks io_uring_setup_buf_ring), batched sends. The ring's eventfd is
 *     polled from the libuv loop, so the network and raft_uv share one thread and one loop.
 *   - epoll through libuv (uv_tcp), for where io_uring is refused (container seccomp profiles):
 *     NET_AUTO probes io_uring at start and falls back, and says which it chose.
 * Both must pass the same test suite (tests/server/test_net.c).
 *
 * TALLY_NET_FORCE_EPOLL=1 in the environment makes net_init behave as if the kernel refused
 * io_uring (as a container's seccomp profile does): NET_AUTO then picks epoll, NET_URING fails
 * with -EPERM. Tests and drills use it to run the fallback on a machine that has io_uring.
 *
 * Limits: max_conns connections (more are accepted and closed at once); a frame is at most
 * TALLY_WIRE_FRAME_MAX bytes; out_max bytes queued per connection. Memory for connections and
 * buffers is allocated at net_init.
 *
 * Threading: single-threaded, on the caller's uv_loop_t. Callbacks run on that loop.
 */
#ifndef TALLY_SERVER_NET_H
#define TALLY_SERVER_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "tally_wire.h"

struct net;

enum net_backend {
    NET_AUTO = 0,  /* io_uring if the kernel allows it, else epoll */
    NET_URING = 1,
    NET_EPOLL = 2,
};

struct net_options {
    enum net_backend backend;
    const char *address;      /* "host:port" to listen on (IPv4, or [IPv6]); port 0: any */
    uint32_t max_conns;       /* 0: NET_CONNS_DEFAULT */
    uint32_t out_max;         /* bytes queued per connection before it is closed; 0: default */
    uint32_t idle_timeout_ms; /* close a connection silent this long; 0: NET_IDLE_DEFAULT_MS */
    uint32_t recv_buffers;    /* io_uring: buffers of NET_RECV_BUFFER_SIZE in the provided-buffer
                                 ring, a power of two up to 32768; 0: sized from max_conns.
                                 Tests make it tiny to drive the -ENOBUFS path. epoll: unused */
};

#define NET_CONNS_DEFAULT 1024u
#define NET_OUT_DEFAULT (4u * TALLY_WIRE_FRAME_MAX)
#define NET_IDLE_DEFAULT_MS 60000u
/* One receive buffer of the io_uring backend: 64 KiB, what one loopback or GRO-coalesced
 * receive delivers at most, so a full 1 MiB POST arrives in about 16 completions. */
#define NET_RECV_BUFFER_SIZE (64u * 1024u)

/* What the server does with frames. conn_id is stable for the life of a connection and never
 * reused within a process; replies are addressed by it (a reply to a connection that has gone
 * is dropped: the client will retry on another). */
struct net_handler {
    void *ctx;
    /* A valid request frame: header checked, body checksum checked, size fits the operation.
     * `body` is valid only during the call. */
    void (*on_frame)(void *ctx, uint64_t conn_id, const struct tally_wire_header *h,
                     const uint8_t *body);
    /* The connection is gone (closed by either side, or by the layer). Optional. */
    void (*on_close)(void *ctx, uint64_t conn_id);
};

/* Start listening. Errors: -EADDRINUSE, -EACCES, TALLY_ECONFIG (bad address, max_conns above
 * 2^24, out_max below TALLY_WIRE_HEADER_SIZE, recv_buffers not a power of two up to 32768),
 * -ENOMEM, and, for NET_URING when io_uring is refused (or kernel older than 6.0), -ENOSYS or
 * -EPERM. */
int net_init(struct net **out, uv_loop_t *loop, const struct net_options *opts,
             const struct net_handler *handler);

/* A blocking TCP socket bound to `address` ("a.b.c.d:port" or "[v6]:port", numbers only: no
 * resolver at start) and listening, in *out. Also used by the metrics endpoint. Errors:
 * TALLY_ECONFIG (bad address), -EADDRINUSE, -EACCES and other errno values. */
int net_listen_socket(const char *address, int *out);

/* The backend in use, and the address actually bound (with the port chosen for port 0). */
enum net_backend net_backend_of(const struct net *n);
const char *net_address(const struct net *n);

/* Queue a reply (the header is sealed by the caller: tally_wire_header_seal). The bytes are copied.
 * Returns 0; TALLY_ECLOSED if the connection is gone (or closing after a fault); TALLY_EBUSY if
 * its queue is over out_max (the connection is then closed); TALLY_ETOO_LARGE if h->body_size is
 * above TALLY_WIRE_BODY_MAX (nothing queued, the connection kept). on_close never runs inside
 * net_send or net_drop: it follows from the loop. */
int net_send(struct net *n, uint64_t conn_id, const struct tally_wire_header *h,
             const void *body);

/* Close one connection (its on_close follows), or stop listening and close everything; `done`
 * is called once every handle is closed (the loop can then end). */
void net_drop(struct net *n, uint64_t conn_id);
void net_close(struct net *n, void (*done)(void *arg), void *arg);

/* Counters for the metrics endpoint. accepted/closed count connections that held a slot (open
 * is their difference); refused ones (over max_conns, or while closing) are only in refused.
 * frames_in: valid frames handed to on_frame; frames_out: frames queued (replies and error
 * replies); bytes_out: bytes the kernel took. bad_frames: faults judged (each also counted by
 * its closing, if it closed). nobufs: io_uring receives stopped for want of a provided buffer
 * and re-armed (always 0 on epoll). paused: times a connection stopped being read because its
 * queue passed out_max / 2 (backpressure; reading resumes at out_max / 4). slow_closed counts
 * both slow-reader closes: a reply over out_max, and a connection paused for idle_timeout_ms. */
struct net_stats {
    uint64_t accepted, closed, frames_in, frames_out, bytes_in, bytes_out;
    uint64_t bad_frames, slow_closed, idle_closed;
    uint64_t refused, nobufs, paused;
    uint32_t open;
};
void net_stats(const struct net *n, struct net_stats *out);

#endif
