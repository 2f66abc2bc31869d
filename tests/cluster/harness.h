/* harness.h: real tallyd processes on loopback for the cluster tests (test_cluster.c,
 * test_faults.c): start, stop and kill replicas, talk to them through libtally, raw sockets and
 * HTTP, and check what they left behind.
 *
 * Every replica runs with small snapshot settings (threshold 64 unless cl.snapshot_default,
 * trailing 32: the log is compacted
 * all the time, so catch-up from a copy happens in the tests), election timeout 300 ms, heartbeat
 * 50 ms, tick 200 ms, the network backend TALLY_TEST_IO names, and its metrics endpoint (and
 * --clock cl.clock when a test sets it). Ports
 * come from the process id, below Linux's ephemeral range (32768 and up), where the replicas' own
 * outgoing connections take their source ports and could hold one of ours when a replica
 * restarts. With cl.raft_proxied the Raft traffic goes through a test's proxy (proxy.h).
 * Logs go to DIR/rI.log; with TALLY_TEST_KEEP=1 the directory is kept.
 */
#ifndef TALLY_TESTS_CLUSTER_HARNESS_H
#define TALLY_TESTS_CLUSTER_HARNESS_H

#include "../support.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tally.h"

#define N 3u
#define METRICS_WAIT_MS 700u /* past one refresh of the metrics endpoint (500 ms) */

struct cluster {
    char dir[64];
    unsigned base;           /* ports base+1..3 (clients), base+11..13 (raft), base+14..16 (raft
                                bind, below), base+17..19 (metrics): all inside the 20 ports
                                from base, so that two test programs at once never share one */
    pid_t pid[N + 1];
    char clients[160];       /* "127.0.0.1:p1,..." */
    char client_addr[N + 1][32];
    bool raft_proxied;       /* set before cluster_up: replicas bind Raft on base+14.. (tallyd
                                --raft-bind) while the configuration names base+11.., where a
                                test's proxy listens (proxy.h) */
    const char *clock;       /* tallyd --clock for replicas started from now on (NULL: none
                                given, the default wall clock) */
    bool snapshot_default;   /* replicas started from now on get no --snapshot-threshold: it
                                follows the entries' size (replica.h) */
};

extern struct cluster cl;

/* Replicas, started for real. */
const char *build_dir(void);
uint64_t mono_ms(void);
void cluster_up(void);                      /* a fresh directory, N replicas started */
void cluster_down(void);                    /* SIGTERM each; each must exit 0 */
void replica_start(unsigned i);
unsigned metrics_port(unsigned i);          /* replica i's --metrics port */
void replica_start_env(unsigned i, char *const *env); /* with extra "NAME=VALUE"s, NULL-ended */
void replica_stop(unsigned i, int sig);     /* and wait for it */
void kill_replicas(void);                   /* atexit: no replica outlives its test */
void replica_report(unsigned i);            /* for a failure: whether it runs, its log's errors */
void cluster_report(void);                  /* replica_report of each */
/* A test program's start: false (print why) when tallyd is not built, so the caller exits 77
 * (skipped); else registers kill_replicas to run at exit. */
bool harness_ready(const char *program);
/* A group teardown: close the admin client, then cluster_verify_and_remove. */
int harness_teardown(struct tally_client *admin);
/* SIGTERM what runs, then tally-audit verify on every replica's ledger; remove the directory
 * (unless TALLY_TEST_KEEP). */
void cluster_verify_and_remove(void);

/* Through libtally. */
struct tally_client *client_of(const char *addresses);
void wait_converged(struct tally_client *c, uint64_t timeout_ms); /* same index and digest */
void post_ok(struct tally_client *c, const struct tally_posting *p, uint32_t n);
int64_t available(struct tally_client *c, uint64_t member);       /* program 1 */
const char *leader_address(struct tally_client *c);               /* waits for a leader */

/* Raw frames. */
int raw_connect(const char *address);
void raw_send(int fd, const void *bytes, size_t n);
int raw_read(int fd, void *bytes, size_t n, int timeout_ms); /* 1 done, 0 closed, -1 timeout */
uint16_t raw_call(int fd, uint16_t op, const uint8_t id[16], uint64_t request, const void *body,
                  uint32_t size, void *body_out, uint32_t out_max);

/* Logs and HTTP. */
void mark_logs(const char *test);
unsigned log_count(unsigned i, const char *event);
int http(unsigned i, const char *method, const char *path, char *out, size_t size);
/* The value of an unlabelled metric in a /metrics body (the test fails if it is absent). */
uint64_t metric(const char *body, const char *name);
/* The same, for a metric with a fractional value (seconds). */
double metric_real(const char *body, const char *name);

#endif
