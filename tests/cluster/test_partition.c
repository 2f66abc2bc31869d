/* test_partition.c: exactly-once through network partitions, with real tallyd processes on
 * loopback and their Raft traffic through a partitioning proxy (proxy.h; tallyd --raft-bind).
 *
 * Under the steady load of load.h, the cluster is partitioned again and again, three ways in
 * turn:
 *   - the leader isolated (nothing to or from it): the other two elect a leader and serve. The
 *     old leader must step down (libraft's contact-quorum check) and acknowledge nothing: a probe
 *     client that can reach only the old leader posts during the partition and must get no
 *     answer but "not leader" or a timeout, and its posting must never be applied;
 *   - a follower isolated: the leader serves on with the other follower;
 *   - the leader mute (one way: what it sends is cut, what it is sent still arrives): the
 *     followers hear nothing, elect a leader among themselves and serve, and the old leader
 *     follows it without being able to answer.
 * Each partition holds until a posting sent after it began is acknowledged (the unavailability,
 * measured and printed per kind), and one second more; then it heals, and the cut-off replica
 * must catch up to where the leader was at the heal (it rejoins and converges). Afterwards the
 * checker of load.h proves nothing acknowledged was lost or applied twice, the replicas converge
 * to one digest, and tally-audit verify passes on every replica's ledger (teardown).
 *
 * TALLY_FAULT_PARTITIONS sets the count (default 3, one of each kind; `make faults` runs 12).
 */
#include "harness.h"
#include "load.h"
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tally_wire.h"

/* How long the majority may take to serve again, and the cut-off replica to catch up, before
 * the test fails: far above the ~1 s an election takes, for a loaded 2-core machine. */
#define SERVE_AGAIN_MS_MAX 20000u
#define CATCH_UP_MS_MAX 30000u
/* How long an isolated leader may go on calling itself leader: libraft checks contact with a
 * majority once per election timeout (300 ms here), so two of those and scheduling slack. */
#define STEP_DOWN_MS_MAX 5000u
/* The probe's POST deadline: well past the old leader's step-down. */
#define PROBE_TIMEOUT_MS 1500u
#define PARTITIONS_MAX 200u

enum cut {
    CUT_LEADER,      /* the leader isolated both ways */
    CUT_FOLLOWER,    /* a follower isolated both ways */
    CUT_LEADER_MUTE, /* the leader's outgoing traffic cut, its incoming kept */
    CUT_KINDS
};

static const char *const cut_name[CUT_KINDS] = {"leader isolated", "follower isolated",
                                                "leader mute (one-way)"};

static struct tally_client *admin;

static unsigned replica_of(const char *client_address)
{
    for (unsigned i = 1; i <= N; i++)
        if (strcmp(client_address, cl.client_addr[i]) == 0)
            return i;
    fail_msg("%s is not one of ours", client_address);
    return 0;
}

/* Replica i's status as it answers itself (not through the leader). */
static bool status_of(unsigned i, struct tally_replica_status *out)
{
    struct tally_replica_status st[N];
    uint32_t n = 0;
    if (tally_client_status(admin, st, N, &n, 2000) != 0)
        return false;
    for (uint32_t k = 0; k < n; k++) {
        if (st[k].error == 0 && strcmp(st[k].address, cl.client_addr[i]) == 0) {
            *out = st[k];
            return true;
        }
    }
    return false;
}

static void cut(enum cut kind, unsigned victim)
{
    bool block[PROXY_REPLICAS_MAX + 1][PROXY_REPLICAS_MAX + 1];
    memset(block, 0, sizeof(block));
    for (unsigned j = 1; j <= N; j++) {
        if (j == victim)
            continue;
        block[victim][j] = true;               /* what the victim sends */
        block[j][victim] = kind != CUT_LEADER_MUTE; /* what it is sent */
    }
    struct proxy_stats before, after;
    proxy_stats_get(&before);
    assert_int_equal(proxy_partition(block), 0);
    proxy_stats_get(&after);
    /* The victim's live Raft connections were there, and are gone. */
    if (after.cut == before.cut)
        fail_msg("%s (replica %u): the proxy cut no connection", cut_name[kind], victim);
}

/* The old leader, cut off, must acknowledge nothing: post through a client that reaches only it
 * (opened before the cut, while it led). Returns the probe's posting id. */
static void probe_isolated_leader(struct tally_client *probe, uint8_t id[16])
{
    struct tally_posting p = post_accrue(0, 1, 1, 1, 10);
    assert_int_equal(tally_client_id(probe, p.id), 0);
    memcpy(id, p.id, 16);
    struct tally_result r;
    int rc = tally_client_post(probe, &p, 1, &r, PROBE_TIMEOUT_MS);
    if (rc == 0)
        fail_msg("the isolated old leader answered a POST (result %s)", tally_result_name(r.code));
}

static void wait_stepped_down(unsigned victim)
{
    uint64_t end = mono_ms() + STEP_DOWN_MS_MAX;
    struct tally_replica_status st;
    while (status_of(victim, &st) && st.role == TALLY_WIRE_ROLE_LEADER && mono_ms() < end)
        usleep(20000);
    if (!status_of(victim, &st))
        fail_msg("replica %u does not answer STATUS", victim);
    if (st.role == TALLY_WIRE_ROLE_LEADER)
        fail_msg("replica %u still leads %u ms after it was cut off", victim, STEP_DOWN_MS_MAX);
}

/* A replica cut off both ways knows no leader: its /health answers 503, so a load balancer
 * takes it out (the endpoint refreshes every 500 ms). */
static void wait_unhealthy(unsigned victim)
{
    char body[512];
    uint64_t end = mono_ms() + STEP_DOWN_MS_MAX;
    int code;
    while ((code = http(victim, "GET", "/health", body, sizeof(body))) != 503 && mono_ms() < end)
        usleep(100000);
    if (code != 503)
        fail_msg("replica %u, cut off, still answers /health with %d", victim, code);
}

/* After the heal: the victim applies at least what the leader had applied at the heal. */
static uint64_t wait_caught_up(unsigned victim, uint64_t target)
{
    uint64_t t0 = mono_ms();
    struct tally_replica_status st;
    for (;;) {
        if (status_of(victim, &st) && st.applied_index >= target)
            return mono_ms() - t0;
        if (mono_ms() - t0 > CATCH_UP_MS_MAX)
            fail_msg("replica %u did not catch up to index %llu within %u ms", victim,
                     (unsigned long long)target, CATCH_UP_MS_MAX);
        usleep(20000);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One partition of the given kind, under the load; returns the unavailability (ms), and the
 * time the cut-off replica took to catch up after the heal in *rejoin_ms. */
static uint64_t partition_once(enum cut kind, unsigned k, uint8_t probe_id[16], bool *probed,
                               uint64_t *rejoin_ms)
{
    unsigned leader = replica_of(leader_address(admin));
    unsigned victim = leader;
    if (kind == CUT_FOLLOWER)
        victim = 1 + (leader + k % 2) % N; /* one of the other two, in turn */
    struct tally_client *probe = kind == CUT_LEADER ? client_of(cl.client_addr[leader]) : NULL;
    cut(kind, victim);
    /* From here on the proxy passes nothing the cut blocks: only POSTs sent after this count
     * for the cluster serving again (earlier ones may still commit the ordinary way). */
    uint64_t t0 = mono_ms(), t0_us = load_mark();
    *probed = false;
    if (probe != NULL) {
        probe_isolated_leader(probe, probe_id);
        *probed = true;
        tally_client_close(probe);
    }
    if (kind != CUT_FOLLOWER)
        wait_stepped_down(victim);
    while (load_first_ack_since_mark() == 0 && mono_ms() - t0 < SERVE_AGAIN_MS_MAX &&
           load_error() == 0)
        usleep(2000);
    assert_int_equal(load_error(), 0);
    uint64_t first_us = load_first_ack_since_mark();
    if (first_us == 0)
        fail_msg("partition %u (%s, replica %u): nothing acknowledged within %u ms", k + 1,
                 cut_name[kind], victim, SERVE_AGAIN_MS_MAX);
    usleep(1000000); /* the cut-off side stays cut off a while */
    unsigned now_leader = replica_of(leader_address(admin));
    if (kind != CUT_FOLLOWER && now_leader == victim)
        fail_msg("partition %u: the cut-off replica %u leads", k + 1, victim);
    if (kind != CUT_LEADER_MUTE) /* the mute one may follow the new leader: healthy */
        wait_unhealthy(victim);
    struct tally_replica_status st;
    assert_true(status_of(now_leader, &st));
    assert_int_equal(proxy_heal(), 0);
    *rejoin_ms = wait_caught_up(victim, st.applied_index);
    return (first_us - t0_us) / 1000;
}

static void test_partitions_under_load(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *v = getenv("TALLY_FAULT_PARTITIONS");
    unsigned count = v != NULL ? (unsigned)atoi(v) : 3;
    assert_true(count >= 1 && count <= PARTITIONS_MAX);
    uint64_t gap[CUT_KINDS][PARTITIONS_MAX], rejoin[CUT_KINDS][PARTITIONS_MAX];
    unsigned ngap[CUT_KINDS] = {0};
    uint8_t probes[PARTITIONS_MAX][16];
    unsigned nprobes = 0;
    load_start(admin);
    for (unsigned k = 0; k < count; k++) {
        usleep(700000); /* let the load run */
        enum cut kind = (enum cut)(k % CUT_KINDS);
        bool probed;
        gap[kind][ngap[kind]] = partition_once(kind, k, probes[nprobes], &probed,
                                               &rejoin[kind][ngap[kind]]);
        ngap[kind]++;
        nprobes += probed;
    }
    usleep(500000);
    struct load_result res;
    load_stop_and_check(admin, &res);
    assert_true(res.acked > count * LOAD_PER_POST);
    /* The isolated old leaders' probes: answered by nobody, so applied by nobody. */
    for (unsigned i = 0; i < nprobes; i++) {
        struct tally_posting_outcome o;
        int rc = tally_client_post_outcome(admin, probes[i], &o, 10000);
        if (rc != TALLY_ENOT_FOUND)
            fail_msg("probe %u posted to an isolated leader: outcome %d (code %u), want not found",
                     i + 1, rc, rc == 0 ? o.code : 0);
    }
    struct proxy_stats ps;
    proxy_stats_get(&ps);
    printf("partitions: %u under load, %u postings acknowledged (%u rejected), %u POSTs sent "
           "again, 0 lost, 0 applied twice; proxy: %llu connections cut, %llu refused\n",
           count, res.acked, res.rejected, res.retries, (unsigned long long)ps.cut,
           (unsigned long long)ps.refused);
    for (unsigned kind = 0; kind < CUT_KINDS; kind++) {
        unsigned n = ngap[kind];
        if (n == 0)
            continue;
        qsort(gap[kind], n, sizeof(gap[kind][0]), cmp_u64);
        qsort(rejoin[kind], n, sizeof(rejoin[kind][0]), cmp_u64);
        printf("partitions: %u x %s: unavailability median %llu ms, min %llu ms, max %llu ms; "
               "caught up after the heal in median %llu ms, max %llu ms\n",
               n, cut_name[kind], (unsigned long long)gap[kind][n / 2],
               (unsigned long long)gap[kind][0], (unsigned long long)gap[kind][n - 1],
               (unsigned long long)rejoin[kind][n / 2], (unsigned long long)rejoin[kind][n - 1]);
    }
}

static int group_setup(void **state)
{
    (void)state;
    cl.raft_proxied = true;
    cluster_up();
    uint16_t listen_port[N], target_port[N];
    for (unsigned j = 1; j <= N; j++) {
        listen_port[j - 1] = (uint16_t)(cl.base + 10 + j); /* the configuration's Raft address */
        target_port[j - 1] = (uint16_t)(cl.base + 13 + j); /* tallyd --raft-bind */
    }
    int rc = proxy_start(listen_port, target_port, N);
    if (rc != 0)
        fail_msg("proxy_start: %s", strerror(-rc));
    admin = client_of(cl.clients);
    (void)leader_address(admin);
    load_setup(admin);
    /* The Raft traffic goes through the proxy: at least the leader's connections to its two
     * followers and theirs back (the followers talk to each other only in elections). */
    struct proxy_stats ps;
    proxy_stats_get(&ps);
    assert_true(ps.forwarded >= 2 * (N - 1));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = harness_teardown(admin);
    proxy_stop();
    return rc;
}

int main(void)
{
    if (!harness_ready("test_partition"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partitions_under_load),
    };
    return cmocka_run_group_tests_name("partition", tests, group_setup, group_teardown);
}
