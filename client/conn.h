/* conn.h: one TCP connection from libtally to one replica, with deadlines on every wait.
 *
 * The socket is non-blocking and every wait is a poll(2) bounded by an absolute deadline on
 * CLOCK_MONOTONIC, so a call of the library blocks its caller exactly as long as the caller
 * allowed and never longer: a replica that stops answering, a connect that hangs in SYN_SENT or
 * a half-written frame cannot hold a till past its deadline. TCP_NODELAY is set: a request is
 * one write of one whole frame, and Nagle's delay would be pure latency on top of it.
 *
 * Errors are of two kinds only, because the caller reacts to only two: TALLY_ETIMEOUT (the
 * deadline passed) and TALLY_ECLOSED (the connection could not be made or is lost: refused,
 * reset, closed by the peer, unresolvable name). SIGPIPE is never raised (MSG_NOSIGNAL).
 */
#ifndef TALLY_CLIENT_CONN_H
#define TALLY_CLIENT_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct conn {
    int fd; /* -1: not connected */
    struct addr peer;
};

/* Now on CLOCK_MONOTONIC, in nanoseconds, and a deadline ms milliseconds from now. */
uint64_t conn_now_ns(void);
uint64_t conn_deadline_ms(uint64_t ms);

/* Sleep until min(now + ms, deadline_ns). */
void conn_sleep_ms(uint64_t ms, uint64_t deadline_ns);

void conn_init(struct conn *cn);

/* Connect to `address` ("host:port"), trying each address the name resolves to, before
 * deadline_ns. Returns 0, TALLY_ETIMEOUT, TALLY_ECLOSED, or TALLY_ECONFIG (not an address). */
int conn_open(struct conn *cn, const struct addr *address, uint64_t deadline_ns);

/* Write all of bytes[0..size) / read exactly size bytes, before deadline_ns. Returns 0,
 * TALLY_ETIMEOUT or TALLY_ECLOSED. After an error the connection must be closed: how much of a
 * frame went out or came in is unknown. */
int conn_send(struct conn *cn, const void *bytes, size_t size, uint64_t deadline_ns);
int conn_recv(struct conn *cn, void *bytes, size_t size, uint64_t deadline_ns);

/* Close the connection (nothing if it is not open). */
void conn_close(struct conn *cn);

static inline int conn_is_open(const struct conn *cn)
{
    return cn->fd >= 0;
}

#endif
