/* test_faults.c: exactly-once through failures, with real tallyd processes on loopback.
 *
 * The leader is killed with SIGKILL again and again while a client posts a steady load, and the
 * killed replica is restarted each time (it catches up from the log or from a copy). The client
 * does what libtally's contract says a till must do (docs/PROTOCOL.md section 11): when a POST
 * ends without an answer (TALLY_ETIMEOUT, TALLY_ECLOSED), it posts the very same postings again
 * until they are answered; so every posting is acknowledged exactly once, whatever happened to the
 * copies that went out before.
 *
 * An independent checker (load.h, shared with test_partition.c), on the client side, records
 * every acknowledged posting (id, member, points) and afterwards proves:
 *   - nothing acknowledged is lost and nothing is applied twice: every member's balance equals the
 *     sum of the acknowledged accruals to it, and each acknowledged id has one ledger record;
 *   - no replica diverged: all reach the same applied index with the same digest;
 *   - tally-audit verify passes on every replica's ledger (teardown);
 *   - the cluster served again after each kill: the time from the kill to the first acknowledged
 *     posting sent after it (the unavailability window) is measured for every kill and printed.
 * The same with the leader paused (SIGSTOP, then SIGCONT once the others serve). And a follower
 * whose disk fills: it stops (fail-stop), the others serve on, it catches up once restarted.
 * TALLY_FAULT_KILLS and TALLY_FAULT_PAUSES set the counts (default 6 and 3; `make faults` runs 50
 * and 10).
 */
#include "harness.h"
#include "load.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../server/front_limits.h"
#include "tally_wire.h"

static struct tally_client *admin;

static unsigned leader_index(void)
{
    const char *addr = leader_address(admin);
    for (unsigned i = 1; i <= N; i++)
        if (strcmp(addr, cl.client_addr[i]) == 0)
            return i;
    fail_msg("leader %s is not one of ours", addr);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

enum fault {
    FAULT_KILL,  /* SIGKILL the leader; restart it once the others serve */
    FAULT_PAUSE, /* SIGSTOP the leader; SIGCONT it a second after the others serve */
};

static void run_faults(enum fault fault, unsigned kills)
{
    load_start(admin);
    uint64_t *gap = calloc(kills, sizeof(*gap));
    assert_non_null(gap);
    for (unsigned k = 0; k < kills; k++) {
        usleep(700000); /* let the load run */
        unsigned victim = leader_index();
        uint64_t t0 = mono_ms(), t0_us = load_mark();
        if (fault == FAULT_KILL)
            replica_stop(victim, SIGKILL);
        else
            kill(cl.pid[victim], SIGSTOP);
        /* Served again: a posting sent after the fault acknowledged. */
        while (load_first_ack_since_mark() == 0 && mono_ms() - t0 < 20000 && load_error() == 0)
            usleep(2000);
        assert_int_equal(load_error(), 0);
        uint64_t first_us = load_first_ack_since_mark();
        if (first_us == 0)
            fail_msg("fault %u: no posting acknowledged within 20 s of stopping replica %u",
                     k + 1, victim);
        gap[k] = (first_us - t0_us) / 1000;
        if (fault == FAULT_KILL) {
            replica_start(victim);
        } else {
            usleep(1000000); /* the paused one wakes as a deposed leader */
            kill(cl.pid[victim], SIGCONT);
        }
    }
    usleep(500000);
    struct load_result res;
    load_stop_and_check(admin, &res); /* the checker: nothing lost, nothing applied twice */
    assert_true(res.acked > kills * LOAD_PER_POST);
    qsort(gap, kills, sizeof(*gap), cmp_u64);
    printf("faults: %u leader %s, %u postings acknowledged (%u rejected), %u POSTs sent again; "
           "unavailability after each (fault to the first acknowledgement of a POST sent after "
           "it): median %llu ms, min %llu ms, max %llu ms\n",
           kills, fault == FAULT_KILL ? "kills" : "pauses", res.acked, res.rejected, res.retries,
           (unsigned long long)gap[kills / 2], (unsigned long long)gap[0],
           (unsigned long long)gap[kills - 1]);
    free(gap);
}

static unsigned env_count(const char *name, unsigned fallback)
{
    const char *v = getenv(name);
    return v != NULL ? (unsigned)atoi(v) : fallback;
}

static void test_leader_killed_again_and_again_under_load(void **state)
{
    (void)state;
    mark_logs(__func__);
    run_faults(FAULT_KILL, env_count("TALLY_FAULT_KILLS", 6));
}

/* A paused leader (SIGSTOP: a long GC pause, a frozen VM) keeps its connections open but
 * answers nothing: clients leave it after CALL_ATTEMPT_MS, the others elect a new leader, and
 * when it wakes it must step down without applying anything on its own. */
static void test_leader_paused_under_load(void **state)
{
    (void)state;
    mark_logs(__func__);
    run_faults(FAULT_PAUSE, env_count("TALLY_FAULT_PAUSES", 3));
}

static int group_setup(void **state)
{
    (void)state;
    cluster_up();
    admin = client_of(cl.clients);
    (void)leader_address(admin);
    load_setup(admin);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return harness_teardown(admin);
}

/* A follower of the current leader. */
static unsigned a_follower(void)
{
    const char *leader = leader_address(admin);
    for (unsigned i = 1; i <= N; i++)
        if (strcmp(leader, cl.client_addr[i]) != 0)
            return i;
    fail_msg("no follower");
    return 0;
}

/* Restart replica f with the LD_PRELOAD shim (failwrite.c) and its two settings. */
static void restart_with_shim(unsigned f, const char *setting1, const char *setting2)
{
    replica_stop(f, SIGTERM);
    static char preload[300], s1[128], s2[128],
        order[] = "ASAN_OPTIONS=verify_asan_link_order=0";
    snprintf(preload, sizeof(preload), "LD_PRELOAD=%s/tests/cluster/libfailwrite.so",
             build_dir());
    snprintf(s1, sizeof(s1), "%s", setting1);
    snprintf(s2, sizeof(s2), "%s", setting2);
    char *env[] = {preload, s1, s2, order, NULL};
    replica_start_env(f, env);
}

/* Disk full on one follower: its ledger's writes fail with ENOSPC (an LD_PRELOAD shim, see
 * failwrite.c). It must stop (fail-stop: it cannot apply a committed entry), saying why, while the
 * other two go on serving; started again with room, it catches up and nothing is lost. */
static void test_disk_full_on_a_follower(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = a_follower();
    unsigned stops_before = log_count(f, "fail_stop") + log_count(f, "catch_up_failed");
    /* Every ledger file of the replica: its own, and a copy it fetches to catch up. */
    restart_with_shim(f, "TALLY_FAILWRITE_MATCH=data.mdb", "TALLY_FAILWRITE_AFTER=4000000");
    int64_t before[LOAD_MEMBERS + 1];
    for (unsigned m = 1; m <= LOAD_MEMBERS; m++)
        before[m] = available(admin, m);
    /* Post until the follower's disk is full and it stops (bounded: 4 MB of ledger writes take
     * a few hundred 64-posting batches). */
    pid_t pid = cl.pid[f];
    int status = 0;
    uint64_t sent = 0;
    bool stopped = false;
    for (unsigned b = 0; b < 3000 && !stopped; b++) {
        struct tally_posting p[64];
        for (unsigned k = 0; k < 64; k++) {
            p[k] = post_accrue(0, 1, 1 + (b * 64 + k) % LOAD_MEMBERS, 1, 10);
            assert_int_equal(tally_client_id(admin, p[k].id), 0);
        }
        post_ok(admin, p, 64); /* the other two serve throughout */
        sent += 64;
        stopped = waitpid(pid, &status, WNOHANG) == pid;
    }
    if (!stopped)
        fail_msg("replica %u did not stop on a full disk after %llu postings", f,
                 (unsigned long long)sent);
    cl.pid[f] = 0;
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    /* It said why: an entry it could not apply, or a catch-up copy it could not write (with the
     * tests' short log it may be catching up when the disk fills). */
    assert_int_equal(log_count(f, "fail_stop") + log_count(f, "catch_up_failed"),
                     stops_before + 1);
    /* Room again: it restarts, catches up, and every acknowledged posting is there, once. */
    replica_start(f);
    wait_converged(admin, 30000);
    uint64_t total = 0;
    for (unsigned m = 1; m <= LOAD_MEMBERS; m++)
        total += (uint64_t)(available(admin, m) - before[m]);
    assert_int_equal(total, sent);
}

/* A follower whose ledger flushes are slow (each 100 ms longer: the LD_PRELOAD shim, failwrite.c)
 * goes on taking part in Raft while its ledger commits, and applies the entries committed
 * meanwhile afterwards, in order, from its apply queue (replica.c): the cluster keeps serving,
 * the follower converges to the same digest, every posting counts once, and it counted entries
 * that waited. Under --commit-ms 0 (make test's epoll pass) no commit runs beside the loop and
 * none waits. */
static void test_a_follower_with_slow_ledger_flushes_queues_entries_and_converges(void **state)
{
    (void)state;
    mark_logs(__func__);
    unsigned f = a_follower();
    restart_with_shim(f, "TALLY_SLOWSYNC_MATCH=data.mdb", "TALLY_SLOWSYNC_MS=100");
    wait_converged(admin, 30000);
    /* Members of its own (the earlier tests' members hold many lots already). */
    enum { FIRST = 50001, MEMBERS = 64, BATCHES = 100 };
    struct tally_posting p[MEMBERS];
    for (unsigned k = 0; k < MEMBERS; k++) {
        p[k] = post_open(0, 1, FIRST + k);
        assert_int_equal(tally_client_id(admin, p[k].id), 0);
    }
    post_ok(admin, p, MEMBERS);
    /* About a second and a half of batches: several of the follower's slow commits. */
    for (unsigned b = 0; b < BATCHES; b++) {
        for (unsigned k = 0; k < MEMBERS; k++) {
            p[k] = post_accrue(0, 1, FIRST + k, b + 1, 10);
            assert_int_equal(tally_client_id(admin, p[k].id), 0);
        }
        post_ok(admin, p, MEMBERS);
        usleep(10000);
    }
    wait_converged(admin, 30000);
    for (unsigned k = 0; k < MEMBERS; k++) /* each once: 1 + 2 + ... + BATCHES */
        assert_int_equal(available(admin, FIRST + k), BATCHES * (BATCHES + 1) / 2);
    usleep(METRICS_WAIT_MS * 1000);
    static char body[1 << 16];
    assert_int_equal(http(f, "GET", "/metrics", body, sizeof(body)), 200);
    uint64_t queued = metric(body, "tally_raft_entries_queued_total");
    const char *cms = getenv("TALLY_TEST_COMMIT_MS");
    if (cms != NULL && strcmp(cms, "0") == 0)
        assert_int_equal(queued, 0);
    else
        assert_true(queued > 0);
    /* The shim off again for the tests after this one. */
    replica_stop(f, SIGTERM);
    replica_start(f);
    wait_converged(admin, 30000);
}

/* The applied index a replica reports (STATUS, answered from memory, never waiting). */
static uint64_t applied_of(int fd)
{
    static uint64_t request = 1;
    struct tally_wire_replica_status st;
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_STATUS, NULL, request++, NULL, 0, &st, sizeof(st)),
                     TALLY_WIRE_OK);
    return st.applied_index;
}

/* A stale-ok read frame of program 1's member, as request `request`, into `out`: ACCOUNT (the
 * member cache answers it during a commit) or HISTORY (it needs the ledger). */
enum { HEADER = TALLY_WIRE_HEADER_SIZE };
enum {
    ACCOUNT_FRAME = HEADER + sizeof(struct tally_wire_account_request),
    HISTORY_FRAME = HEADER + sizeof(struct tally_wire_history_request),
};
static size_t read_frame(uint8_t *out, uint16_t op, uint64_t member, uint64_t request)
{
    static const uint8_t id[16] = {0x52, 0x45, 0x41, 0x44};
    struct tally_wire_account_request qa = {.program = 1, .member = member};
    struct tally_wire_history_request qh = {.program = 1, .max = 4, .member = member};
    const void *q = op == TALLY_WIRE_OP_ACCOUNT ? (const void *)&qa : (const void *)&qh;
    uint32_t size = op == TALLY_WIRE_OP_ACCOUNT ? (uint32_t)sizeof(qa) : (uint32_t)sizeof(qh);
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, id, request);
    h.flags = TALLY_WIRE_FLAG_STALE_OK;
    h.body_size = size;
    tally_wire_header_seal(&h, q);
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), q, size);
    return sizeof(h) + size;
}

/* Read one reply: its header, and its body into `body` (up to max bytes). */
static uint16_t read_reply(int fd, struct tally_wire_header *r, void *body, uint32_t max)
{
    if (raw_read(fd, r, sizeof(*r), 20000) != 1)
        fail_msg("no reply to a read");
    assert_true(r->body_size <= max);
    if (r->body_size > 0)
        assert_int_equal(raw_read(fd, body, r->body_size, 20000), 1);
    return r->status;
}

/* A HISTORY reply of the test's member: its newest entry's amount (the page holds one at least). */
static uint64_t newest_amount(const uint8_t *body, uint32_t size)
{
    struct tally_wire_page pg;
    struct tally_entry en;
    assert_true(size >= sizeof(pg) + sizeof(en));
    memcpy(&pg, body, sizeof(pg));
    assert_true(pg.count >= 1);
    memcpy(&en, body + sizeof(pg), sizeof(en));
    return en.amount;
}

/* Make follower f's ledger commit now: an accrual to `member` through the leader, applied by f,
 * then a wait past its group's age (REPLICA_COMMIT_MS, 20 ms): the commit then runs on f's
 * committer for its slow flush (a second, failwrite.c; under --commit-ms 0 the commit was part
 * of the apply). Returns the index f has applied. */
static uint64_t follower_commits(unsigned f, int ffd, int lfd, uint64_t member, uint64_t points)
{
    struct tally_posting p = post_accrue(0, 1, member, points, 10);
    assert_int_equal(tally_client_id(admin, p.id), 0);
    post_ok(admin, &p, 1);
    uint64_t target = applied_of(lfd), t0 = mono_ms();
    while (applied_of(ffd) < target) {
        if (mono_ms() - t0 > 10000)
            fail_msg("replica %u did not apply index %llu", f, (unsigned long long)target);
        usleep(2000);
    }
    usleep(100000);
    return target;
}

/* A read that reaches a replica while its ledger commits does not hold the event loop
 * (front.c, "Reads during a ledger commit"). Here a follower whose ledger flushes take a second
 * longer (failwrite.c) gets, during a commit, a stale-ok HISTORY read (it needs the ledger), then
 * on another connection an ACCOUNT read of the same member (its image is in the member cache)
 * and a STATUS: both are answered while the HISTORY read still waits (with the read waiting on
 * the loop, as before, they came after it), the ACCOUNT with the member's balance; the HISTORY
 * read is answered when the commit ends, with the member's newest entry. Then, during another
 * commit, FRONT_READS_MAX + 104 HISTORY reads on one connection: the first FRONT_READS_MAX wait
 * and are answered, the rest are answered BUSY at once, and the metrics count all three kinds.
 * Under --commit-ms 0 (make test's epoll pass) the loop itself commits each entry, and no read is
 * held or answered from the cache. */
static void test_reads_during_a_slow_ledger_commit_wait_off_the_loop(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *cms = getenv("TALLY_TEST_COMMIT_MS");
    bool deferred = !(cms != NULL && strcmp(cms, "0") == 0);
    unsigned f = a_follower();
    /* No Raft snapshot on f meanwhile: the harness's threshold of 64 entries would have f take
     * one every ~13 s of ticks, and a snapshot flushes the ledger on the loop (a second here),
     * during which f reads nothing: a read arriving then would find the ledger free afterwards
     * (CI saw the burst below answered without a BUSY once). */
    cl.snapshot_default = true;
    /* A second under the deferred commit, where the loop goes on meanwhile; under --commit-ms 0
     * each entry's commit holds the loop for its flush, and a second each would leave the
     * follower behind the leader's ticks (five a second here) for good. */
    restart_with_shim(f, "TALLY_SLOWSYNC_MATCH=data.mdb",
                      deferred ? "TALLY_SLOWSYNC_MS=1000" : "TALLY_SLOWSYNC_MS=100");
    wait_converged(admin, 30000);
    enum { MEMBER = 60001, EXTRA = 104 };
    struct tally_posting p = post_open(0, 1, MEMBER);
    assert_int_equal(tally_client_id(admin, p.id), 0);
    post_ok(admin, &p, 1);
    int ffd = raw_connect(cl.client_addr[f]), sfd = raw_connect(cl.client_addr[f]);
    int lfd = raw_connect(leader_address(admin));
    static uint8_t body[TALLY_WIRE_BODY_MAX];
    struct tally_wire_header r;

    uint64_t applied = follower_commits(f, ffd, lfd, MEMBER, 25);
    uint8_t frame[HISTORY_FRAME];
    raw_send(ffd, frame, read_frame(frame, TALLY_WIRE_OP_HISTORY, MEMBER, 7));
    raw_send(sfd, frame, read_frame(frame, TALLY_WIRE_OP_ACCOUNT, MEMBER, 8));
    assert_int_equal(read_reply(sfd, &r, body, sizeof(body)), TALLY_WIRE_OK);
    assert_int_equal(r.request, 8);
    struct tally_account a;
    memcpy(&a, body, sizeof(a));
    assert_int_equal(a.available, 25);
    assert_true(r.index >= applied);
    (void)applied_of(sfd);
    struct pollfd pf = {.fd = ffd, .events = POLLIN};
    int history_answered = poll(&pf, 1, 0);
    if (deferred)
        assert_int_equal(history_answered, 0);
    assert_int_equal(read_reply(ffd, &r, body, sizeof(body)), TALLY_WIRE_OK);
    assert_int_equal(r.request, 7);
    assert_int_equal(newest_amount(body, r.body_size), 25);
    assert_true(r.index >= applied);

    if (deferred) {
        applied = follower_commits(f, ffd, lfd, MEMBER, 5);
        enum { READS = FRONT_READS_MAX + EXTRA };
        uint8_t *burst = malloc((size_t)READS * HISTORY_FRAME);
        assert_non_null(burst);
        for (unsigned k = 0; k < READS; k++)
            (void)read_frame(burst + (size_t)k * HISTORY_FRAME, TALLY_WIRE_OP_HISTORY, MEMBER,
                             100 + k);
        raw_send(ffd, burst, (size_t)READS * HISTORY_FRAME);
        free(burst);
        unsigned ok = 0, busy = 0;
        for (unsigned k = 0; k < READS; k++) {
            uint16_t st = read_reply(ffd, &r, body, sizeof(body));
            assert_true(r.request >= 100 && r.request < 100 + READS);
            if (st == TALLY_WIRE_BUSY) {
                busy++;
                continue;
            }
            assert_int_equal(st, TALLY_WIRE_OK);
            assert_int_equal(newest_amount(body, r.body_size), 5);
            assert_true(r.index >= applied);
            ok++;
        }
        assert_int_equal(ok, FRONT_READS_MAX);
        assert_int_equal(busy, EXTRA);
    }
    close(ffd);
    close(sfd);
    close(lfd);
    usleep(METRICS_WAIT_MS * 1000);
    static char text[1 << 16];
    assert_int_equal(http(f, "GET", "/metrics", text, sizeof(text)), 200);
    assert_int_equal(metric(text, "tally_reads_held_total"), deferred ? 1 + FRONT_READS_MAX : 0);
    assert_int_equal(metric(text, "tally_reads_busy_total"), deferred ? EXTRA : 0);
    assert_int_equal(metric(text, "tally_reads_cached_total"), deferred ? 1 : 0);
    assert_int_equal(metric(text, "tally_reads_held"), 0);
    replica_stop(f, SIGTERM);
    cl.snapshot_default = false;
    replica_start(f);
    wait_converged(admin, 30000);
}

int main(void)
{
    if (!harness_ready("test_faults"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_killed_again_and_again_under_load),
        cmocka_unit_test(test_leader_paused_under_load),
        cmocka_unit_test(test_disk_full_on_a_follower),
        cmocka_unit_test(test_a_follower_with_slow_ledger_flushes_queues_entries_and_converges),
        cmocka_unit_test(test_reads_during_a_slow_ledger_commit_wait_off_the_loop),
    };
    return cmocka_run_group_tests_name("faults", tests, group_setup, group_teardown);
}
