/* metrics.h: tallyd's HTTP endpoints for operators: Prometheus metrics and health (BRIEF §5).
 *
 *   GET /metrics   Prometheus text format (version 0.0.4): the replica's role, term, commit and
 *                  applied index, entries, sessions, member cache, map size, postings applied,
 *                  catch-ups, and the network layer's counters (docs/OPERATIONS.md lists them)
 *   GET /health    200 when the replica is serving (a leader with its barrier applied, or a
 *                  follower that knows its leader), 503 otherwise; a one-line JSON body either
 *                  way: role, ready, leader address, applied index
 *   anything else  404; a method other than GET or HEAD, 405
 *
 * How: libmicrohttpd (Debian's libmicrohttpd-dev) answers on its own thread, so a scrape never
 * waits for the replica's loop and the loop never serves HTTP. It reads a snapshot of the figures
 * that the loop thread refreshes every METRICS_REFRESH_MS under a mutex: a scrape sees figures at
 * most that old, and never a half-written set. Off unless tallyd is given --metrics ADDR.
 */
#ifndef TALLY_SERVER_METRICS_H
#define TALLY_SERVER_METRICS_H

#include <uv.h>

#include "front.h"
#include "net.h"
#include "replica.h"

#define METRICS_REFRESH_MS 500u

struct metrics;

/* Listen on `address` ("host:port", IPv4 or [IPv6]) and refresh from the replica, the network
 * layer and the front on `loop`. Errors: TALLY_ECONFIG (bad address), -EADDRINUSE and other
 * errno values. */
int metrics_start(struct metrics **out, uv_loop_t *loop, const char *address, struct replica *r,
                  struct net *n, struct front *f);

/* Stop the HTTP thread and the refresh timer; the memory is freed once the timer has closed. */
void metrics_stop(struct metrics *m);

#endif
