/* proxy.h: a fault-injecting TCP proxy between the test replicas' Raft endpoints: partitions.
 *
 * What it does. For each replica j (1..PROXY_REPLICAS_MAX) the proxy listens on the port the
 * cluster configuration names as j's Raft address and forwards every connection to the port j
 * really listens on (tallyd --raft-bind). raft_uv opens one connection per (sender, receiver)
 * pair and only the sender writes on it; the sender's first bytes are its handshake:
 *
 *   offset  size  meaning (little-endian)
 *   0       8     handshake protocol version (1 in libraft 0.15)
 *   8       8     the sender's server id
 *   16      8     L: the length of the address that follows, NUL and padding to 8 bytes included
 *   24      L     the sender's Raft address, NUL-terminated
 *
 * so the proxy knows each connection's sender (from the handshake) and receiver (from the port it
 * came in on). A partition is a set of blocked (from, to) pairs: a blocked pair's connections are
 * closed at once, and new ones are closed right after their handshake, before the receiver sees
 * them. A one-way block (from A to B) stops what A sends B, not what B sends A.
 *
 * What it guarantees. proxy_partition returns once the proxy thread has closed every connection
 * the new set blocks: from then on no byte from a blocked sender reaches its receiver. Bytes the
 * receiver's kernel had already accepted before the cut may still be read by it (as on a real
 * network, where packets in flight arrive). Everything is bounded: PROXY_CONNS_MAX connections
 * (one more is closed at once: raft_uv reconnects a second later) and PROXY_BUFFER_SIZE bytes
 * buffered per direction of each (a full buffer stops reading from its side: backpressure).
 *
 * What it does not do: delay, reorder, drop or corrupt bytes inside a live connection; cut the
 * client, metrics or catch-up-copy traffic (those go to the replicas' own client ports). It binds
 * and connects on 127.0.0.1 only. One proxy per process (the tests need one).
 */
#ifndef TALLY_TESTS_CLUSTER_PROXY_H
#define TALLY_TESTS_CLUSTER_PROXY_H

#include <stdbool.h>
#include <stdint.h>

/* Three replicas in the tests; a fourth slot costs nothing and keeps ids 1..3 plain indexes. */
#define PROXY_REPLICAS_MAX 3u
/* Each of the 6 ordered pairs of 3 replicas holds one connection, plus one being replaced after
 * a restart or a cut: 32 leaves room for reconnect churn without ever refusing a live pair. */
#define PROXY_CONNS_MAX 32u
/* A few AppendEntries messages of the tests' load (4-posting batches, 128 bytes a posting). */
#define PROXY_BUFFER_SIZE 65536u
/* A longer handshake address is malformed (raft_uv's are "host:port", under 64 bytes). */
#define PROXY_ADDRESS_MAX 256u

struct proxy_stats {
    uint64_t accepted;  /* connections accepted from senders */
    uint64_t forwarded; /* handshakes passed on to their receiver */
    uint64_t refused;   /* closed after their handshake: the pair was blocked */
    uint64_t cut;       /* live connections closed by a new partition */
    uint64_t failed;    /* malformed handshakes, receiver down, no free slot */
};

/* Listen on 127.0.0.1:listen_port[j-1] for replica j, forward to 127.0.0.1:target_port[j-1],
 * for j in 1..n (n <= PROXY_REPLICAS_MAX), on a thread of its own. Returns 0 or -errno. */
int proxy_start(const uint16_t *listen_port, const uint16_t *target_port, unsigned n);
/* Stop the thread, close every socket. */
void proxy_stop(void);

/* Replace the blocked set with block[from][to] (indexes 1..n; row and column 0 unused) and wait
 * until it is enforced. Returns 0, or -ETIMEDOUT if the proxy thread did not answer in 5 s. */
int proxy_partition(const bool block[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1]);
/* Nothing blocked (the same wait). */
int proxy_heal(void);

void proxy_stats_get(struct proxy_stats *out);

#endif
