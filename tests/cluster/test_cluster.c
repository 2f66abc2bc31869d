/* test_cluster.c: real tallyd processes on loopback (3 replicas), driven through libtally and
 * raw sockets. What it shows (the server issue's acceptance):
 *   - postings through any replica's address succeed (a follower redirects to the leader);
 *   - every replica reports the same digest at the same applied index;
 *   - a follower killed with SIGKILL while postings continue catches up after a restart;
 *   - a follower whose data directory was deleted rejoins and catches up;
 *   - a follower behind the leader's log start (the log compacted past it: the replicas run with
 *     small snapshot settings) catches up from a peer's ledger copy, killed or wiped alike;
 *   - LEDGER: a whole copy fetched over the network opens and verifies; bad requests for chunks
 *     (unknown copy, an index no replica has, an offset past the end) get their statuses;
 *   - the whole cluster stopped and restarted keeps every acknowledged posting;
 *   - a retried request (same session and request number) and a re-posted posting id (new
 *     request) each take effect once, seen in the balances;
 *   - malformed input gets an error reply or a closed connection, and the server keeps serving;
 *   - POST_AT to this wall-clock cluster gets CLOCK_MODE (libtally: TALLY_ECONFIG), nothing is
 *     applied, and the server keeps serving;
 *   - tally-audit verify passes on every replica's ledger afterwards;
 *   - the HTTP endpoints: /metrics (Prometheus text) and /health on leader and followers.
 * The network backend comes from TALLY_TEST_IO (uring, epoll; default auto): make test runs the
 * suite under both. Ports are picked from the process id, below the ephemeral range, so that
 * parallel runs do not collide.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "tally.h"
#include "tally_wire.h"


static struct tally_client *admin;
static uint64_t next_id = 1;

static struct tally_posting accrue(uint64_t member, uint64_t points)
{
    return post_accrue(next_id++, 1, member, points, points * 10);
}

/* Each replica logged the network backend it chose: the one TALLY_TEST_IO asked for. */
static void assert_backend(void)
{
    const char *io = getenv("TALLY_TEST_IO");
    if (io == NULL || strcmp(io, "auto") == 0)
        return;
    const char *want = strcmp(io, "uring") == 0 ? "io=io_uring" : "io=epoll";
    for (unsigned i = 1; i <= N; i++) {
        char path[160], line[512];
        snprintf(path, sizeof(path), "%s/r%u.log", cl.dir, i);
        FILE *f = fopen(path, "r");
        bool found = false;
        while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
            found = strstr(line, "event=listening") != NULL && strstr(line, want) != NULL;
        if (f != NULL)
            fclose(f);
        if (!found)
            fail_msg("replica %u did not log %s", i, want);
    }
}

static int group_setup(void **state)
{
    (void)state;
    cluster_up();
    admin = client_of(cl.clients);
    (void)leader_address(admin);
    assert_backend();
    struct tally_program_config c;
    config_default(&c);
    struct tally_posting p[4] = {post_program(next_id++, 1, &c)};
    for (unsigned m = 1; m <= 3; m++)
        p[m] = post_open(next_id++, 1, m);
    post_ok(admin, p, 4);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return harness_teardown(admin);
}

static void test_postings_through_a_follower_are_redirected_to_the_leader(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *leader = leader_address(admin);
    const char *follower = strcmp(leader, cl.client_addr[1]) == 0 ? cl.client_addr[2]
                                                                   : cl.client_addr[1];
    struct tally_client *c = client_of(follower);
    int64_t before = available(admin, 1);
    struct tally_posting p = accrue(1, 40);
    post_ok(c, &p, 1);
    assert_int_equal(available(c, 1), before + 40);
    tally_client_close(c);
    wait_converged(admin, 10000);
}

/* Reads longer than one reply (docs/PROTOCOL.md 4.5): the server says MORE while items remain,
 * and libtally asks again from the last one, so a member's whole history comes back. */
static void test_history_longer_than_a_page_comes_back_whole(void **state)
{
    (void)state;
    /* 600 accruals then 600 redemptions (a member keeps at most TALLY_LINEAGE_MAX lots). */
    enum { HALF = 600, ENTRIES = 2 * HALF };
    struct tally_posting p[50];
    for (unsigned k = 0; k < ENTRIES; k++) {
        p[k % 50] = k < HALF ? accrue(3, 10) : post_redeem(next_id++, 1, 3, 1);
        if (k % 50 == 49)
            post_ok(admin, p, 50); /* the harness posts at most 64 at a time */
    }
    static struct tally_entry entries[2 * TALLY_WIRE_HISTORY_MAX];
    uint32_t count = 0;
    struct tally_read r = {0};
    assert_int_equal(tally_client_history(admin, 1, 3, 0, entries, 2 * TALLY_WIRE_HISTORY_MAX,
                                          &count, &r), 0);
    assert_true(count > TALLY_WIRE_HISTORY_MAX);
    assert_true(count >= ENTRIES + 1); /* the postings and the OPEN, maybe tier changes */
    for (uint32_t k = 1; k < count; k++)
        assert_true(entries[k].seq < entries[k - 1].seq); /* newest first, no repeats */
    /* A page of exactly the items left says nothing more: a second call from the oldest finds
     * none. */
    uint32_t again = 0;
    assert_int_equal(tally_client_history(admin, 1, 3, entries[count - 1].seq, entries, 10,
                                          &again, &r), 0);
    assert_int_equal(again, 0);
}

static void test_retried_request_and_reposted_id_take_effect_once(void **state)
{
    (void)state;
    mark_logs(__func__);
    int fd = raw_connect(leader_address(admin));
    uint8_t id[16];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xc0 + i);
    uint8_t out[4096];
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_REGISTER, id, 0, &reg, sizeof(reg), out,
                              sizeof(out)), TALLY_WIRE_OK); /* REGISTER carries request 0 */
    int64_t before = available(admin, 2);
    struct tally_posting p = accrue(2, 7);
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_POST, id, 2, &p, sizeof(p), out, sizeof(out)),
                     TALLY_WIRE_OK);
    struct tally_result first;
    memcpy(&first, out, sizeof(first));
    assert_code(first.code, TALLY_OK);
    /* The same request again (a retry after a lost answer): the cached reply, applied once. */
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_POST, id, 2, &p, sizeof(p), out, sizeof(out)),
                     TALLY_WIRE_OK);
    assert_memory_equal(out, &first, sizeof(first));
    assert_int_equal(available(admin, 2), before + 7);
    /* The same posting in a new request: EXISTS, still applied once. */
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_POST, id, 3, &p, sizeof(p), out, sizeof(out)),
                     TALLY_WIRE_OK);
    struct tally_result again;
    memcpy(&again, out, sizeof(again));
    assert_code(again.code, TALLY_EXISTS);
    assert_int_equal(again.detail, TALLY_OK);
    assert_int_equal(available(admin, 2), before + 7);
    close(fd);
}

/* A replica still answers STATUS on a fresh connection. */
static void assert_serving(const char *address)
{
    int fd = raw_connect(address);
    uint8_t out[512];
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_STATUS, NULL, 1, NULL, 0, out, sizeof(out)),
                     TALLY_WIRE_OK);
    close(fd);
}

/* Bytes that are not a good frame: the reply status, or 0 if the connection was closed. */
static int bad_frame_outcome(const char *address, const void *bytes, size_t n)
{
    int fd = raw_connect(address);
    raw_send(fd, bytes, n);
    struct tally_wire_header r;
    int got = raw_read(fd, &r, sizeof(r), 3000);
    close(fd);
    return got == 1 ? (int)r.status : got == 0 ? 0 : -1;
}

static void test_malformed_input_gets_an_error_or_a_close_and_the_server_serves_on(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *a = cl.client_addr[1];
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_STATUS, NULL, 1);
    tally_wire_header_seal(&h, NULL);
    struct tally_wire_header bad = h;
    bad.magic[0] = 'X';
    assert_int_equal(bad_frame_outcome(a, &bad, sizeof(bad)), 0); /* closed, no reply */
    bad = h;
    bad.checksum_header ^= 1;
    int rc = bad_frame_outcome(a, &bad, sizeof(bad));
    assert_true(rc == TALLY_WIRE_BAD_CHECKSUM || rc == 0);
    bad = h;
    bad.op = 999;
    tally_wire_header_seal(&bad, NULL);
    assert_int_equal(bad_frame_outcome(a, &bad, sizeof(bad)), TALLY_WIRE_UNKNOWN_OP);
    bad = h;
    bad.op = TALLY_WIRE_OP_POST;
    bad.body_size = TALLY_WIRE_BODY_MAX + 1;
    bad.checksum_header = tally_wire_checksum(&bad, TALLY_WIRE_HEADER_SEALED_SIZE);
    rc = bad_frame_outcome(a, &bad, sizeof(bad));
    assert_true(rc == TALLY_WIRE_TOO_LARGE || rc == 0);
    /* Half a header, then silence; a client that connects and sends nothing: the replica goes
     * on serving everyone else meanwhile. */
    int half = raw_connect(a);
    raw_send(half, &h, 20);
    int mute = raw_connect(a);
    assert_serving(a);
    /* A client that never reads its replies. */
    int deaf = raw_connect(a);
    int flags = fcntl(deaf, F_GETFL);
    fcntl(deaf, F_SETFL, flags | O_NONBLOCK);
    for (int i = 0; i < 200000; i++) {
        ssize_t w = send(deaf, &h, sizeof(h), MSG_NOSIGNAL);
        if (w <= 0)
            break; /* our buffer is full, or the server closed us */
    }
    assert_serving(a);
    close(half);
    close(mute);
    close(deaf);
    /* Nothing of these frames was applied. */
    wait_converged(admin, 10000);
}

/* POST_AT needs --clock client: this cluster runs with the wall clock (the default). */
static void test_post_at_to_a_wall_clock_cluster_is_refused_and_nothing_applied(void **state)
{
    (void)state;
    mark_logs(__func__);
    int64_t before = available(admin, 1);
    uint64_t pid = next_id++;
    struct tally_posting p = post_accrue(pid, 1, 1, 25, 0);
    struct tally_result r;
    assert_int_equal(tally_client_post_at(admin, UINT64_C(852076800000), &p, 1, &r, 5000),
                     TALLY_ECONFIG);
    /* The status itself, on the wire, from the leader; the connection is kept. */
    int fd = raw_connect(leader_address(admin));
    uint8_t id[16], out[512];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xd0 + i);
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_REGISTER, id, 0, &reg, sizeof(reg), out,
                              sizeof(out)),
                     TALLY_WIRE_OK);
    uint8_t body[16 + sizeof(p)];
    struct tally_wire_post_at pre = {.at = UINT64_C(852076800000), .reserved = 0};
    memcpy(body, &pre, sizeof(pre));
    memcpy(body + 16, &p, sizeof(p));
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_POST_AT, id, 1, body, sizeof(body), out,
                              sizeof(out)),
                     TALLY_WIRE_CLOCK_MODE);
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_STATUS, NULL, 2, NULL, 0, out, sizeof(out)),
                     TALLY_WIRE_OK);
    close(fd);
    /* Nothing applied; the same posting in a POST is applied, stamped by the wall clock. */
    uint8_t raw[16];
    id_make(raw, pid);
    struct tally_posting_outcome o;
    assert_int_equal(tally_client_post_outcome(admin, raw, &o, 5000), TALLY_ENOT_FOUND);
    assert_int_equal(available(admin, 1), before);
    post_ok(admin, &p, 1);
    assert_int_equal(available(admin, 1), before + 25);
    assert_int_equal(tally_client_post_outcome(admin, raw, &o, 5000), 0);
    assert_true(o.timestamp > UINT64_C(1700000000000)); /* 2023 or later: the wall clock */
    assert_serving(cl.client_addr[1]);
}

static uint32_t follower_index(void)
{
    const char *leader = leader_address(admin);
    for (unsigned i = 1; i <= N; i++)
        if (strcmp(leader, cl.client_addr[i]) != 0)
            return i;
    return 0;
}

static void test_killed_follower_catches_up_after_restart(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = follower_index();
    replica_stop(f, SIGKILL);
    int64_t before = available(admin, 3);
    for (int k = 0; k < 20; k++) {
        struct tally_posting p[8];
        for (int i = 0; i < 8; i++)
            p[i] = accrue(3, 1);
        post_ok(admin, p, 8);
    }
    replica_start(f);
    wait_converged(admin, 20000);
    assert_int_equal(available(admin, 3), before + 160);
}

static void test_follower_with_deleted_data_rejoins(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = follower_index();
    replica_stop(f, SIGTERM);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/r%u'", cl.dir, f);
    assert_int_equal(system(cmd), 0);
    struct tally_posting p = accrue(1, 5);
    post_ok(admin, &p, 1);
    replica_start(f);
    wait_converged(admin, 20000);
}

/* Post `entries` separate requests (each its own Raft entry: one request in flight), so the
 * leader's log runs past its snapshot threshold and trailing length. */
static void post_entries(uint64_t member, unsigned entries)
{
    for (unsigned k = 0; k < entries; k++) {
        struct tally_posting p = accrue(member, 1);
        post_ok(admin, &p, 1);
    }
}

static void test_follower_behind_the_log_start_catches_up_from_a_copy(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = follower_index();
    unsigned before_done = log_count(f, "catch_up_done");
    replica_stop(f, SIGKILL);
    int64_t before = available(admin, 2);
    post_entries(2, 200); /* > 64 + 32: the log now starts after the follower's applied index */
    replica_start(f);
    wait_converged(admin, 30000);
    assert_int_equal(available(admin, 2), before + 200);
    assert_true(log_count(f, "catch_up_done") > before_done); /* once, or again for a newer snapshot */
    assert_int_equal(log_count(f, "catch_up_failed"), 0);
}

static void test_wiped_follower_behind_the_log_start_catches_up_from_a_copy(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = follower_index();
    unsigned before_done = log_count(f, "catch_up_done");
    replica_stop(f, SIGTERM);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/r%u'", cl.dir, f);
    assert_int_equal(system(cmd), 0);
    post_entries(1, 120);
    replica_start(f);
    wait_converged(admin, 30000);
    assert_true(log_count(f, "catch_up_done") > before_done); /* once, or again for a newer snapshot */
    /* Then it serves like the others: postings go on, all converge. */
    post_entries(3, 10);
    wait_converged(admin, 20000);
}

static void test_ledger_copy_over_the_network_opens_and_verifies(void **state)
{
    (void)state;
    mark_logs(__func__);
    char dir[160], path[200];
    snprintf(dir, sizeof(dir), "%s/backup", cl.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    struct engine_status live;
    uint64_t applied = 0;
    int rc = tally_client_ledger_copy(admin, path, 5, &applied, 30000);
    if (rc != 0)
        fail_msg("tally_client_ledger_copy: %d %s", rc, tally_strerror(rc));
    assert_true(applied >= 5);
    struct engine *e;
    assert_int_equal(engine_open(&e, dir, NULL), 0);
    engine_status(e, &live);
    assert_true(live.applied_index >= applied);
    struct tally_account a;
    assert_int_equal(engine_account(e, 1, 3, &a), 0);
    engine_close(e);
    struct audit_report rep;
    memset(&rep, 0, sizeof(rep));
    if (audit_verify(dir, &rep) != 0 || !rep.ok)
        fail_msg("tally-audit verify of the copy: %s", rep.what);

    /* The same through the CLI, then the auditor on what it wrote. */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s/tally --cluster %s ledger-copy %s/cli-backup >/dev/null && "
             "%s/tally-audit verify %s/cli-backup >/dev/null",
             build_dir(), cl.clients, cl.dir, build_dir(), cl.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/tally --cluster %s ledger-copy %s/cli-backup 2>/dev/null",
             build_dir(), cl.clients, cl.dir);
    assert_int_not_equal(system(cmd), 0); /* never over an existing ledger */

    /* An index no replica has applied: every replica says STALE. */
    rc = tally_client_ledger_copy(admin, path, UINT64_MAX / 2, &applied, 10000);
    assert_int_equal(rc, TALLY_ESTALE);

    /* A replica that does not answer (paused: its port still accepts) is left for the next
     * after one exchange's bound (5 s), not the caller's whole deadline: a replica catching up
     * takes no part in Raft while it copies (docs/ARCHITECTURE.md, "Catch-up"). */
    const char *leader = leader_address(admin);
    unsigned f = strcmp(leader, cl.client_addr[1]) == 0 ? 2 : 1;
    char order[80];
    snprintf(order, sizeof(order), "%s,%s", cl.client_addr[f], leader);
    struct tally_client *c = client_of(order);
    assert_int_equal(kill(cl.pid[f], SIGSTOP), 0);
    uint64_t t0 = mono_ms();
    rc = tally_client_ledger_copy(c, path, 5, &applied, 60000);
    uint64_t took = mono_ms() - t0;
    assert_int_equal(kill(cl.pid[f], SIGCONT), 0);
    tally_client_close(c);
    if (rc != 0)
        fail_msg("copy past a paused replica: %d %s", rc, tally_strerror(rc));
    if (took > 15000)
        fail_msg("copy past a paused replica took %llu ms", (unsigned long long)took);

    /* Raw chunks: an unknown copy, an offset past the end of a real copy. */
    int fd = raw_connect(cl.client_addr[1]);
    static uint8_t out[TALLY_WIRE_BODY_MAX];
    uint8_t id[16] = {0};
    struct tally_wire_ledger_request q = {.copy_id = 12345, .offset = 0, .max = 4096};
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_LEDGER, id, 1, &q, sizeof(q), out, sizeof(out)),
                     TALLY_WIRE_NOT_FOUND);
    q.copy_id = 0;
    uint16_t st = TALLY_WIRE_BUSY;
    for (int tries = 0; tries < 200 && st == TALLY_WIRE_BUSY; tries++) {
        st = raw_call(fd, TALLY_WIRE_OP_LEDGER, id, 2, &q, sizeof(q), out, sizeof(out));
        if (st == TALLY_WIRE_BUSY)
            usleep(20000);
    }
    assert_int_equal(st, TALLY_WIRE_OK);
    struct tally_wire_ledger_chunk ch;
    memcpy(&ch, out, sizeof(ch));
    assert_true(ch.copy_id != 0 && ch.size > 4096 && ch.count == 4096);
    q.copy_id = ch.copy_id;
    q.offset = ch.size + 1;
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_LEDGER, id, 3, &q, sizeof(q), out, sizeof(out)),
                     TALLY_WIRE_BAD_REQUEST);
    q.offset = ch.size - 10; /* the tail: fewer bytes than asked */
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_LEDGER, id, 4, &q, sizeof(q), out, sizeof(out)),
                     TALLY_WIRE_OK);
    memcpy(&ch, out, sizeof(ch));
    assert_int_equal(ch.count, 10);
    close(fd);
    assert_serving(cl.client_addr[1]);
}

static void test_metrics_and_health_endpoints(void **state)
{
    (void)state;
    mark_logs(__func__);
    struct tally_posting p = accrue(1, 7);
    post_ok(admin, &p, 1);
    wait_converged(admin, 10000);
    usleep((METRICS_WAIT_MS) * 1000); /* the endpoint's figures are refreshed every 500 ms */
    const char *leader = leader_address(admin);
    static char body[65536];
    for (unsigned i = 1; i <= N; i++) {
        bool is_leader = strcmp(leader, cl.client_addr[i]) == 0;
        assert_int_equal(http(i, "GET", "/metrics", body, sizeof(body)), 200);
        assert_non_null(strstr(body, is_leader ? "tally_role{role=\"leader\"} 1"
                                               : "tally_role{role=\"follower\"} 1"));
        assert_int_equal(metric(body, "tally_ready"), is_leader ? 1 : 0);
        assert_int_equal(metric(body, "tally_replica_id"), i);
        assert_true(metric(body, "tally_applied_index") >= tally_client_last_index(admin));
        assert_true(metric(body, "tally_postings_applied_total") >= 1);
        assert_int_equal(metric(body, "tally_voters"), N);
        if (is_leader)
            assert_true(metric(body, "tally_net_frames_in_total") >= 1);
        /* Deferred ledger commits happened (the posting's group, 20 ms old, well within the
         * wait) and the committer's time in them is counted, and the loop's waiting for it;
         * under --commit-ms 0 (make test's epoll pass) every entry commits itself and none
         * counts. */
        uint64_t commits = metric(body, "tally_ledger_commits_total");
        double commit_s = metric_real(body, "tally_ledger_commit_seconds_total");
        double wait_s = metric_real(body, "tally_ledger_commit_wait_seconds_total");
        if (getenv("TALLY_TEST_COMMIT_MS") != NULL && strcmp(getenv("TALLY_TEST_COMMIT_MS"), "0") == 0) {
            assert_int_equal(commits, 0);
            assert_true(commit_s == 0.0);
            assert_true(wait_s == 0.0);
        } else {
            assert_true(commits >= 1);
            assert_true(commit_s > 0.0 && commit_s < 60.0);
            assert_true(wait_s >= 0.0 && wait_s < 60.0);
        }
        assert_int_equal(http(i, "GET", "/health", body, sizeof(body)), 200);
        assert_non_null(strstr(body, is_leader ? "\"role\":\"leader\"" : "\"role\":\"follower\""));
        assert_int_equal(http(i, "GET", "/nope", body, sizeof(body)), 404);
        assert_int_equal(http(i, "POST", "/metrics", body, sizeof(body)), 405);
    }
}

static void test_whole_cluster_restart_keeps_every_acknowledged_posting(void **state)
{
    (void)state;
    mark_logs(__func__);
    int64_t b[4];
    for (unsigned m = 1; m <= 3; m++)
        b[m] = available(admin, m);
    cluster_down();
    /* One replica alone has no majority: it is up, but not serving, and says so. */
    replica_start(1);
    static char body[4096];
    int code = 0;
    for (int tries = 0; tries < 100 && code == 0; tries++) {
        usleep(50000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)metrics_port(1))};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        bool up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (up)
            code = http(1, "GET", "/health", body, sizeof(body));
    }
    usleep(METRICS_WAIT_MS * 1000);
    assert_int_equal(http(1, "GET", "/health", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "\"serving\":false"));
    for (unsigned i = 2; i <= N; i++)
        replica_start(i);
    (void)leader_address(admin);
    for (unsigned m = 1; m <= 3; m++)
        assert_int_equal(available(admin, m), b[m]);
    wait_converged(admin, 20000);
}

static uint64_t snapshot_threshold_of(unsigned i)
{
    static char body[65536];
    assert_int_equal(http(i, "GET", "/metrics", body, sizeof(body)), 200);
    return metric(body, "tally_raft_snapshot_threshold");
}

/* Without --snapshot-threshold a replica snapshots by the bytes of its log, not a fixed count of
 * entries: small entries (single postings) raise the threshold to its maximum, full ones
 * (8,190 postings, ~1 MiB) bring it down towards 1,024 (replica.h, REPLICA_SNAPSHOT_LOG_BYTES). */
static void test_snapshot_threshold_follows_the_entries_size(void **state)
{
    (void)state;
    mark_logs(__func__);
    cluster_down();
    cl.snapshot_default = true;
    for (unsigned i = 1; i <= N; i++)
        replica_start(i);
    (void)leader_address(admin);
    for (unsigned k = 0; k < 48; k++) { /* one posting a request: one small entry each */
        struct tally_posting p = accrue(1 + k % 3, 1);
        post_ok(admin, &p, 1);
    }
    wait_converged(admin, 20000);
    usleep(METRICS_WAIT_MS * 1000);
    for (unsigned i = 1; i <= N; i++)
        assert_int_equal(snapshot_threshold_of(i), 16384);
    /* Full entries: accruals to a member that does not exist (ACCOUNT_NOT_FOUND, a business
     * outcome: applied, recorded, and the entry is as large as any). */
    static struct tally_posting big[TALLY_BATCH_MAX];
    static struct tally_result res[TALLY_BATCH_MAX];
    for (unsigned b = 0; b < 32; b++) {
        for (uint32_t k = 0; k < TALLY_BATCH_MAX; k++)
            big[k] = accrue(900000000u + k, 1);
        assert_int_equal(tally_client_post(admin, big, TALLY_BATCH_MAX, res, 30000), 0);
        assert_int_equal(res[0].code, TALLY_ACCOUNT_NOT_FOUND);
    }
    wait_converged(admin, 30000);
    usleep(METRICS_WAIT_MS * 1000);
    for (unsigned i = 1; i <= N; i++) {
        uint64_t t = snapshot_threshold_of(i);
        /* 32 entries of ~1 MiB: the average is ~0.87 MiB, a threshold of ~1,170; each idle
         * tick since (every 200 ms here) weighs 1/16, so a few of them raise it a little. */
        assert_true(t >= 1024 && t <= 8192);
    }
    cl.snapshot_default = false;
}

/* Clients sending full batches (one entry each) wait their turn instead of being answered BUSY:
 * two entries in flight and REPLICA_GATHER_MAX gathering hold six such clients (replica.h).
 * With one gathering slot, as before, the fourth was answered BUSY and resent its megabyte
 * after each backoff; libtally hides that, the leader's tally_posts_busy_total does not. */
struct full_batch_client {
    pthread_t thread;
    struct tally_posting *batches; /* 3 x TALLY_BATCH_MAX, made before the thread starts */
    int rc;
};

static void *full_batch_client_main(void *arg)
{
    struct full_batch_client *t = arg;
    struct tally_client *c = client_of(cl.clients);
    static _Thread_local struct tally_result res[TALLY_BATCH_MAX];
    for (unsigned b = 0; b < 3 && t->rc == 0; b++) {
        t->rc = tally_client_post(c, t->batches + b * TALLY_BATCH_MAX, TALLY_BATCH_MAX, res, 60000);
        if (t->rc == 0 && res[0].code != TALLY_ACCOUNT_NOT_FOUND)
            t->rc = -1000 - (int)res[0].code;
    }
    tally_client_close(c);
    return NULL;
}

static void test_six_clients_of_full_batches_wait_without_busy(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *leader = leader_address(admin);
    unsigned li = 0;
    for (unsigned i = 1; i <= N; i++)
        if (strcmp(leader, cl.client_addr[i]) == 0)
            li = i;
    assert_true(li > 0);
    static char body[65536];
    assert_int_equal(http(li, "GET", "/metrics", body, sizeof(body)), 200);
    uint64_t busy_before = metric(body, "tally_posts_busy_total");
    struct full_batch_client t[6];
    for (unsigned k = 0; k < 6; k++) { /* accrue() numbers ids from one counter: not in threads */
        t[k] = (struct full_batch_client){.batches = calloc(3 * TALLY_BATCH_MAX, sizeof(struct tally_posting))};
        assert_non_null(t[k].batches);
        for (uint32_t j = 0; j < 3 * TALLY_BATCH_MAX; j++) /* to members that do not exist */
            t[k].batches[j] = accrue(800000000u + k * 3 * TALLY_BATCH_MAX + j, 1);
    }
    for (unsigned k = 0; k < 6; k++)
        assert_int_equal(pthread_create(&t[k].thread, NULL, full_batch_client_main, &t[k]), 0);
    for (unsigned k = 0; k < 6; k++) {
        pthread_join(t[k].thread, NULL);
        free(t[k].batches);
        assert_int_equal(t[k].rc, 0);
    }
    usleep(METRICS_WAIT_MS * 1000);
    assert_int_equal(http(li, "GET", "/metrics", body, sizeof(body)), 200);
    assert_string_equal(leader, leader_address(admin)); /* the same leader throughout */
    assert_int_equal(metric(body, "tally_posts_busy_total") - busy_before, 0);
    wait_converged(admin, 30000);
}

/* raft_uv's open segments, as tallyd allocates them (server/raft_alloc.h): written zeros, so
 * that its RWF_NOWAIT writes are accepted on the loop instead of going to the thread pool. A
 * file system without FIEMAP (tmpfs) cannot show extents: nothing to check there. */
static void test_raft_log_segments_have_no_unwritten_extents(void **state)
{
    (void)state;
    struct tally_posting p = accrue(1, 5);
    post_ok(admin, &p, 1);
    unsigned checked = 0;
    for (unsigned i = 1; i <= N; i++) {
        char raft_dir[128];
        snprintf(raft_dir, sizeof(raft_dir), "%s/r%u/raft", cl.dir, i);
        DIR *d = opendir(raft_dir);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strncmp(e->d_name, "open-", 5) != 0)
                continue;
            char path[400];
            snprintf(path, sizeof(path), "%s/%s", raft_dir, e->d_name);
            int fd = open(path, O_RDONLY);
            if (fd < 0)
                continue; /* raft_uv renamed or removed it meanwhile */
            struct {
                struct fiemap m;
                struct fiemap_extent x[64];
            } f;
            memset(&f, 0, sizeof(f));
            f.m.fm_length = FIEMAP_MAX_OFFSET;
            f.m.fm_extent_count = 64;
            int rc = ioctl(fd, FS_IOC_FIEMAP, &f.m);
            close(fd);
            if (rc != 0)
                continue; /* no FIEMAP on this file system */
            for (uint32_t k = 0; k < f.m.fm_mapped_extents; k++)
                if (f.m.fm_extents[k].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
                    fail_msg("%s: extent %u is unwritten (fallocated, never written)", path, k);
            checked++;
        }
        closedir(d);
    }
    if (checked == 0)
        skip();
}

int main(void)
{
    if (!harness_ready("test_cluster"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postings_through_a_follower_are_redirected_to_the_leader),
        cmocka_unit_test(test_retried_request_and_reposted_id_take_effect_once),
        cmocka_unit_test(test_history_longer_than_a_page_comes_back_whole),
        cmocka_unit_test(test_malformed_input_gets_an_error_or_a_close_and_the_server_serves_on),
        cmocka_unit_test(test_post_at_to_a_wall_clock_cluster_is_refused_and_nothing_applied),
        cmocka_unit_test(test_killed_follower_catches_up_after_restart),
        cmocka_unit_test(test_follower_with_deleted_data_rejoins),
        cmocka_unit_test(test_follower_behind_the_log_start_catches_up_from_a_copy),
        cmocka_unit_test(test_wiped_follower_behind_the_log_start_catches_up_from_a_copy),
        cmocka_unit_test(test_ledger_copy_over_the_network_opens_and_verifies),
        cmocka_unit_test(test_metrics_and_health_endpoints),
        cmocka_unit_test(test_whole_cluster_restart_keeps_every_acknowledged_posting),
        cmocka_unit_test(test_snapshot_threshold_follows_the_entries_size),
        cmocka_unit_test(test_raft_log_segments_have_no_unwritten_extents),
        cmocka_unit_test(test_six_clients_of_full_batches_wait_without_busy),
    };
    return cmocka_run_group_tests_name("cluster", tests, group_setup, group_teardown);
}
