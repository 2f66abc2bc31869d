/* net_internal.h: what the network layer's core (net.c) and its two backends (net_uring.c,
 * net_uv.c) share: the connection table, the byte queues, and the backend interface.
 *
 * Division of work
 * ----------------
 * net.c owns everything that does not depend on how bytes move: the listening socket, the
 * connection slots and their ids, reassembly of frames from received chunks, judging them with
 * common/wire.c, error replies, the output queues, idle timers, the list of connections with
 * work owed to the kernel, and the close sequence. A backend moves bytes: it accepts, receives
 * chunks and hands them to net_conn_input, sends what net_conn_out_span shows and reports it
 * with net_conn_sent, and closes sockets, reporting each with net_conn_released.
 *
 * Life of a slot: FREE -> OPEN (accepted) -> [LINGER (flushing an error reply before closing)]
 * -> CLOSING (the backend is tearing the socket down) -> FREE (net_conn_released). A slot is
 * never reused while the kernel may still complete an operation that names it, so a completion
 * always finds the connection it was issued for.
 */
#ifndef TALLY_SERVER_NET_INTERNAL_H
#define TALLY_SERVER_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net.h"

/* Connection ids are (generation << NET_SLOT_BITS) | slot: the slot finds the connection in one
 * step, the per-slot generation (40 bits: a trillion reuses of one slot) keeps ids unique for
 * the life of the process. Hence at most 2^24 connections. */
#define NET_SLOT_BITS 24u
#define NET_CONNS_MAX (UINT32_C(1) << NET_SLOT_BITS)

/* Accepts done per readiness callback of the epoll backend before yielding to other work. */
#define NET_ACCEPT_BURST 64u

/* After accept fails for want of file descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM), wait this
 * long before accepting again: retrying at once would spin on a listening socket that stays
 * readable. */
#define NET_ACCEPT_PAUSE_MS 100u

/* A connection's input buffer: one whole frame of the largest size, plus room for bytes that
 * arrive after the connection was paused (its output queue above half of out_max: see
 * net.c), before the backend has stopped receiving. epoll stops at once (at most one 64 KiB
 * read is pending); io_uring may still complete receives the kernel made before its cancel ran.
 * A paused connection that overflows this is closed as a slow reader. */
#define NET_IN_SLACK TALLY_WIRE_FRAME_MAX
#define NET_IN_SIZE  (TALLY_WIRE_FRAME_MAX + NET_IN_SLACK)

/* A closed connection whose buffers were touched beyond this many bytes gives the pages back to
 * the kernel (madvise), so resident memory follows the connections in use, not their peak. */
#define NET_TRIM_BYTES (256u * 1024u)

enum net_conn_state {
    NET_CONN_FREE = 0,
    NET_CONN_OPEN,    /* reading and sending */
    NET_CONN_LINGER,  /* a closing fault was answered: input discarded, send the queue, close */
    NET_CONN_CLOSING, /* the backend is closing the socket; net_conn_released ends it */
};

struct net_conn {
    struct net *net;
    uint64_t id; /* 0 while free */
    uint64_t generation;
    uint32_t index;
    enum net_conn_state state;

    /* Input: in_len bytes received and not yet consumed, from the start of a frame (or of the
     * bytes to skip). hdr_ok: the header at the start of `in` (or of the chunk being read in
     * place) was judged good and copied to `hdr`, and its body is awaited. skip counts body
     * bytes of a refused frame still to discard. */
    uint8_t *in; /* NET_IN_SIZE bytes */
    uint32_t in_len;
    uint32_t skip;
    bool hdr_ok;
    struct tally_wire_header hdr;
    /* Backpressure: set while out_len >= out_max / 2; no input is consumed (or, as far as the
     * backend can, received) until the queue has drained to out_max / 4. */
    bool paused;

    /* Output: a ring of net->out_max bytes; out_len bytes queued from out_head (those a send in
     * flight covers are the first ones). Emptied rings restart at 0, so a connection that never
     * queues much keeps touching the same few pages. */
    uint8_t *out;
    uint32_t out_head;
    uint32_t out_len;
    uint32_t out_touched; /* high-water mark of out bytes written, for trimming */
    uint32_t in_touched;

    /* Idle timer: started at accept, re-armed lazily: bytes received, or sent, only stamp
     * last_active_ms, and the timer, when it fires early, sleeps the rest of the period. */
    uv_timer_t timer;
    uint64_t last_active_ms;

    bool dirty; /* on net->dirty: the backend owes the kernel work for it */
};

struct net_backend_ops {
    enum net_backend kind;
    /* Allocate the backend's state and start accepting on n->listen_fd. */
    int (*start)(struct net *n);
    /* A slot was given to an accepted socket: start receiving. An error closes it. */
    int (*conn_start)(struct net *n, struct net_conn *c, int fd);
    /* Do what is owed for c: send queued bytes if no send is in flight, re-arm a receive, ... */
    void (*flush)(struct net *n, struct net_conn *c);
    /* End of a batch of flushes (io_uring: submit). Returns whether work is still owed that
     * no completion will bring back (the loop must then not block). */
    bool (*submit)(struct net *n);
    /* Stop receiving for c (it is paused), or receive again. */
    void (*pause)(struct net *n, struct net_conn *c);
    void (*resume)(struct net *n, struct net_conn *c);
    /* Begin closing c's socket; net_conn_released follows, never from inside this call. */
    void (*conn_close)(struct net *n, struct net_conn *c);
    /* Stop accepting; net_accept_stopped follows (it may from inside this call). */
    void (*stop_accepting)(struct net *n);
    /* Accept again after a pause (NET_ACCEPT_PAUSE_MS). */
    void (*resume_accepting)(struct net *n);
    /* Close the backend's uv handles: call net_handle_closed once for each, and return how many. */
    unsigned (*close_handles)(struct net *n);
    /* Free everything the backend allocated (after its handles are closed). */
    void (*release)(struct net *n);
};

extern const struct net_backend_ops net_uring_ops;
extern const struct net_backend_ops net_uv_ops;

struct net {
    uv_loop_t *loop;
    struct net_handler handler;
    const struct net_backend_ops *ops;
    void *backend; /* the backend's own state */

    uint32_t max_conns;
    uint32_t out_max;
    uint32_t idle_ms;
    uint32_t recv_buffers;

    int listen_fd;
    char address[TALLY_WIRE_ADDRESS_SIZE];

    struct net_conn *conns;
    uint32_t *free_slots; /* stack of free slot indexes */
    uint32_t free_count;
    uint32_t *dirty;      /* connections with work owed to the kernel */
    uint32_t *dirty_work; /* the list being worked through */
    uint32_t dirty_count;
    uint8_t *arena; /* every connection's in and out buffers, one mapping */
    size_t arena_size;

    uv_prepare_t prepare; /* flush before the loop blocks... */
    uv_check_t check;     /* ...and after the I/O callbacks of an iteration */
    uv_idle_t idle;       /* keeps the loop from blocking while work is owed but stuck */
    uv_timer_t accept_pause;

    struct net_stats stats;

    bool closing;
    bool accept_stopped;
    bool finishing;
    unsigned handles_open;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---------------------------------------------------------------------------------------------
 * Called by the backends.
 * ------------------------------------------------------------------------------------------- */

/* An accepted socket: give it a slot and start it, or close it (over max_conns, closing). */
void net_accepted(struct net *n, int fd);

/* Accept failed for want of resources: pause accepting for NET_ACCEPT_PAUSE_MS. */
void net_accept_pause(struct net *n);

/* The backend stopped accepting (after stop_accepting). */
void net_accept_stopped(struct net *n);

/* Received bytes: cut, judge, deliver. Discarded unless the connection is OPEN. */
void net_conn_input(struct net *n, struct net_conn *c, const uint8_t *bytes, size_t size);

/* The first contiguous run of queued output (size 0: nothing queued). */
void net_conn_out_span(const struct net *n, const struct net_conn *c, const uint8_t **bytes,
                       uint32_t *size);
/* The second run, where the queue wraps around the ring's end (size 0: none). */
void net_conn_out_span2(const struct net *n, const struct net_conn *c, const uint8_t **bytes,
                        uint32_t *size);

/* The kernel took `size` bytes from the front of the queue. */
void net_conn_sent(struct net *n, struct net_conn *c, uint32_t size);

/* The peer sent EOF (it will send nothing more): replies already queued are still sent, then
 * the connection closes. The backend must not receive on it again. */
void net_conn_eof(struct net *n, struct net_conn *c);

/* Close c (peer gone, socket error, a closing verdict...): state CLOSING, backend conn_close. */
void net_conn_close(struct net *n, struct net_conn *c);

/* The backend has closed c's socket and no operation refers to it: on_close, slot freed. */
void net_conn_released(struct net *n, struct net_conn *c);

/* Put c on the list of connections the backend owes work to (flushed once per loop phase). */
void net_conn_dirty(struct net *n, struct net_conn *c);

/* A uv handle of the layer or its backend has closed (uv_close callback). */
void net_handle_closed(uv_handle_t *handle);

#endif
