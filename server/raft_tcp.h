/* raft_tcp.h: the Raft connections of raft_uv's TCP transport without Nagle's algorithm.
 *
 * Why
 * ---
 * libraft 0.15's TCP transport (raft_uv_tcp_init) never sets TCP_NODELAY. Each replica sends
 * its Raft messages to a peer on a connection of its own, so a connection carries data one way
 * and its acknowledgements are pure delayed ACKs; a small message (an AppendEntries of a few
 * postings, a heartbeat, an answer) written while the previous one is still unacknowledged is
 * held by Nagle's algorithm until the peer's delayed ACK comes, up to ~40 ms later. In the till
 * (64 single-posting clients, 3 replicas) that was the seconds with a p99 of 40-46 ms and the
 * p99.9 of 41-43 ms (docs/BENCHMARKS.md, "The loop's 40 ms stops"). raft_uv hands each
 * stream it gets from the transport to its own code and sets nothing on it, so the install
 * wraps the transport's `connect` and `listen`: every stream they deliver has TCP_NODELAY set
 * before raft_uv sees it.
 *
 * Contract
 * --------
 * raft_tcp_nodelay_install(t): t is a transport from raft_uv_tcp_init, not yet handed to
 *   raft_uv_init. Afterwards every TCP stream t delivers (connected, or accepted once the peer's
 *   handshake is read) has TCP_NODELAY set; a stream of another type is passed on untouched, and
 *   a failure to set the option is ignored (the connection works, only slower). Everything else
 *   (status, ids, addresses, the order of callbacks) is passed on unchanged. libraft's connect
 *   and accept callbacks are one function each for every raft_uv, so the wrappers keep them in
 *   one place (shared by every install in a process); a call with a callback other than the one
 *   kept is passed on unwrapped (its streams keep Nagle), never misrouted.
 */
#ifndef TALLY_SERVER_RAFT_TCP_H
#define TALLY_SERVER_RAFT_TCP_H

#include <raft/uv.h>

void raft_tcp_nodelay_install(struct raft_uv_transport *t);

#endif
