/* test_faults.c: exactly-once through failures, with real tallyd processes on loopback.
 *
 * The leader is killed with SIGKILL again and again while a client posts a steady load, and the
 * killed replica is restarted each time (it catches up from the log or from a copy). The client
 * does what libtally's contract says a till must do (docs/PROTOCOL.md section 11): when a POST
 * ends without an answer (TALLY_ETIMEOUT, TALLY_ECLOSED), it posts the very same postings again
 * until they are answered; so every posting is acknowledged exactly once, whatever happened to the
 * copies that went out before.
 *
 * An independent checker, on the client side, records every acknowledged posting (id, member,
 * points) and afterwards proves:
 *   - nothing acknowledged is lost and nothing is applied twice: every member's balance equals the
 *     sum of the acknowledged accruals to it, and each acknowledged id has one ledger record;
 *   - no replica diverged: all reach the same applied index with the same digest;
 *   - tally-audit verify passes on every replica's ledger (teardown);
 *   - the cluster served again after each kill: the time from the kill to the first acknowledged
 *     posting after it (the unavailability window) is measured for every kill and printed.
 * The same with the leader paused (SIGSTOP, then SIGCONT once the others serve). And a follower
 * whose disk fills: it stops (fail-stop), the others serve on, it catches up once restarted.
 * TALLY_FAULT_KILLS and TALLY_FAULT_PAUSES set the counts (default 6 and 3; `make faults` runs 50
 * and 10).
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEMBERS 256u
#define PER_POST 4u
#define ACKED_MAX 200000u

struct acked {
    uint8_t id[16];
    uint32_t member;
    uint32_t points;
};

static struct tally_client *admin;
static struct acked *acked;
static atomic_uint nacked;
static atomic_bool stop_load;
static atomic_ullong last_ack_ms;
static atomic_uint retries;   /* calls repeated after an unanswered one (libtally itself
                                 resends within a call; this counts what reached the caller) */
static atomic_int load_error; /* an outcome the contract does not allow */
static atomic_uint rejected;  /* answered with a business rejection (LOTS_LIMIT at the most) */

static void *load_main(void *arg)
{
    (void)arg;
    struct tally_client *c = client_of(cl.clients);
    uint64_t rng = 0x243f6a8885a308d3ull;
    struct tally_posting p[PER_POST];
    struct tally_result r[PER_POST];
    while (!atomic_load(&stop_load) && atomic_load(&nacked) + PER_POST <= ACKED_MAX) {
        for (uint32_t i = 0; i < PER_POST; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint8_t id[16];
            if (tally_client_id(c, id) != 0) {
                atomic_store(&load_error, 1);
                return NULL;
            }
            uint64_t member = 1 + rng % MEMBERS, points = 1 + (rng >> 20) % 9;
            p[i] = post_accrue(0, 1, member, points, points * 10);
            memcpy(p[i].id, id, 16);
        }
        int rc;
        /* Until answered: the same postings again (libtally resends the same frame). */
        while ((rc = tally_client_post(c, p, PER_POST, r, 5000)) == TALLY_ETIMEOUT ||
               rc == TALLY_ECLOSED)
            atomic_fetch_add(&retries, 1);
        if (rc != 0) {
            fprintf(stderr, "load: tally_client_post: %d %s\n", rc, tally_strerror(rc));
            atomic_store(&load_error, 2);
            break;
        }
        for (uint32_t i = 0; i < PER_POST; i++) {
            if (r[i].code != TALLY_OK) { /* rejected, so not applied: not the checker's */
                atomic_fetch_add(&rejected, 1);
                continue;
            }
            unsigned k = atomic_load(&nacked);
            memcpy(acked[k].id, p[i].id, 16);
            acked[k].member = (uint32_t)p[i].account;
            acked[k].points = (uint32_t)p[i].amount;
            atomic_store(&nacked, k + 1);
        }
        atomic_store(&last_ack_ms, mono_ms());
    }
    tally_client_close(c);
    return NULL;
}

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
    atomic_store(&nacked, 0);
    atomic_store(&stop_load, false);
    atomic_store(&last_ack_ms, 0);
    atomic_store(&retries, 0);
    atomic_store(&rejected, 0);
    acked = calloc(ACKED_MAX, sizeof(*acked));
    assert_non_null(acked);
    int64_t before[MEMBERS + 1];
    for (unsigned m = 1; m <= MEMBERS; m++)
        before[m] = available(admin, m);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load_main, NULL), 0);
    uint64_t *gap = calloc(kills, sizeof(*gap));
    for (unsigned k = 0; k < kills; k++) {
        usleep(700000); /* let the load run */
        unsigned at = atomic_load(&nacked);
        unsigned victim = leader_index();
        uint64_t t0 = mono_ms();
        if (fault == FAULT_KILL)
            replica_stop(victim, SIGKILL);
        else
            kill(cl.pid[victim], SIGSTOP);
        /* Served again: a posting acknowledged after the kill. */
        while (mono_ms() - t0 < 20000 && (atomic_load(&nacked) == at ||
                                          atomic_load(&last_ack_ms) <= t0))
            usleep(2000);
        if (atomic_load(&last_ack_ms) <= t0)
            fail_msg("kill %u: no posting acknowledged within 20 s of killing replica %u", k + 1,
                     victim);
        gap[k] = atomic_load(&last_ack_ms) - t0;
        if (fault == FAULT_KILL) {
            replica_start(victim);
        } else {
            usleep(1000000); /* the paused one wakes as a deposed leader */
            kill(cl.pid[victim], SIGCONT);
        }
        assert_int_equal(atomic_load(&load_error), 0);
    }
    usleep(500000);
    atomic_store(&stop_load, true);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&load_error), 0);

    /* The checker. */
    unsigned n = atomic_load(&nacked);
    assert_true(n > kills * PER_POST);
    wait_converged(admin, 30000);
    int64_t want[MEMBERS + 1];
    memcpy(want, before, sizeof(want));
    for (unsigned i = 0; i < n; i++)
        want[acked[i].member] += acked[i].points;
    for (unsigned m = 1; m <= MEMBERS; m++)
        if (available(admin, m) != want[m])
            fail_msg("member %u: %lld points, the acknowledged postings make %lld", m,
                     (long long)available(admin, m), (long long)want[m]);
    for (unsigned i = 0; i < n; i += n / 200 + 1) { /* a sample: one record each, applied */
        struct tally_posting_outcome o;
        assert_int_equal(tally_client_post_outcome(admin, acked[i].id, &o, 10000), 0);
        assert_int_equal(o.code, TALLY_OK);
        assert_true(o.entry_count >= 1); /* the ACCRUE (and a TIER_CHANGE it caused) */
    }
    qsort(gap, kills, sizeof(*gap), cmp_u64);
    printf("faults: %u leader %s, %u postings acknowledged (%u rejected), %u POSTs sent again; "
           "unavailability after each: median %llu ms, min %llu ms, max %llu ms\n",
           kills, fault == FAULT_KILL ? "kills" : "pauses", n, atomic_load(&rejected), atomic_load(&retries), (unsigned long long)gap[kills / 2],
           (unsigned long long)gap[0], (unsigned long long)gap[kills - 1]);
    free(gap);
    free(acked);
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
    struct tally_program_config c;
    config_default(&c);
    struct tally_posting p[1] = {post_program(1, 1, &c)};
    post_ok(admin, p, 1);
    for (unsigned m = 1; m <= MEMBERS; m++) {
        p[0] = post_open(1 + m, 1, m);
        post_ok(admin, p, 1);
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return harness_teardown(admin);
}

/* Disk full on one follower: its ledger's writes fail with ENOSPC (an LD_PRELOAD shim, see
 * failwrite.c). It must stop (fail-stop: it cannot apply a committed entry), saying why, while the
 * other two go on serving; started again with room, it catches up and nothing is lost. */
static void test_disk_full_on_a_follower(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *leader = leader_address(admin);
    unsigned f = 0;
    for (unsigned i = 1; i <= N && f == 0; i++)
        if (strcmp(leader, cl.client_addr[i]) != 0)
            f = i;
    unsigned stops_before = log_count(f, "fail_stop") + log_count(f, "catch_up_failed");
    replica_stop(f, SIGTERM);
    /* Every ledger file of the replica: its own, and a copy it fetches to catch up. */
    static char preload[300], match[] = "TALLY_FAILWRITE_MATCH=data.mdb",
                              after[] = "TALLY_FAILWRITE_AFTER=4000000",
                              order[] = "ASAN_OPTIONS=verify_asan_link_order=0";
    snprintf(preload, sizeof(preload), "LD_PRELOAD=%s/tests/cluster/libfailwrite.so",
             build_dir());
    char *env[] = {preload, match, after, order, NULL};
    replica_start_env(f, env);
    int64_t before[MEMBERS + 1];
    for (unsigned m = 1; m <= MEMBERS; m++)
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
            p[k] = post_accrue(0, 1, 1 + (b * 64 + k) % MEMBERS, 1, 10);
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
    for (unsigned m = 1; m <= MEMBERS; m++)
        total += (uint64_t)(available(admin, m) - before[m]);
    assert_int_equal(total, sent);
}

int main(void)
{
    if (!harness_ready("test_faults"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_killed_again_and_again_under_load),
        cmocka_unit_test(test_leader_paused_under_load),
        cmocka_unit_test(test_disk_full_on_a_follower),
    };
    return cmocka_run_group_tests_name("faults", tests, group_setup, group_teardown);
}
