/* test_crash.c: a process killed at any moment leaves every batch wholly present or wholly
 * absent (engine/engine.h: "one write transaction per batch: a batch is wholly applied or wholly
 * absent, whatever happens to the process"), with commits per batch and deferred (every third
 * round: batches committed several at a time). A fault test.
 *
 * A child process applies batches of a recognisable shape in a loop, resuming after the applied
 * index it finds; the parent SIGKILLs it after a random delay, several times, and after each kill
 * reopens the ledger and checks: the applied index is the number of the last whole batch; every
 * batch up to it has all its postings recorded, none after it has any; each member's balance is
 * exactly the sum of the whole batches that paid it; the entry count matches; and every fourth
 * round audit_verify finds nothing wrong.
 *
 * The parent checks with the engine and the auditor in between, never while the child runs (one
 * LMDB environment per process, and the child is the only writer).
 *
 * Batch k (k >= 2, applied as index k at time T0 + k seconds) holds size(k) accruals of exactly
 * k points each, posting i to member member_of(k, i), with posting ids k << 20 | i. Batch 1
 * creates the program and opens members 1..MEMBERS. The accruals are spread over many members
 * so no member comes near its limit of open lots (TALLY_LINEAGE_MAX) however long the child
 * runs. Kills land anywhere, so most reopens also exercise recovery: the member images the
 * child had not written back yet are rebuilt from the entries (docs/STORAGE.md).
 */
#include "../support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEMBERS   2000u
#define ROUNDS    20u
#define BATCH_MAX 120u
#define K_MAX     1000000u /* the child stops here if nobody kills it */

static uint64_t t0;

static uint32_t batch_size(uint64_t k)
{
    /* 1 .. BATCH_MAX, varying, so kills land in commits of every size. */
    return 1 + (uint32_t)((k * 7919) % BATCH_MAX);
}

static uint64_t posting_id(uint64_t k, uint32_t i)
{
    return k << 20 | i;
}

static uint64_t member_of(uint64_t k, uint32_t i)
{
    return (k * BATCH_MAX + i) % MEMBERS + 1;
}

static uint32_t batch_make(uint64_t k, struct tally_posting *p)
{
    if (k == 1) {
        struct tally_program_config c;
        config_default(&c);
        c.tier_count = 1; /* no tier entries: the entry count stays predictable */
        c.thresholds[0] = 0;
        c.thresholds[1] = 0;
        p[0] = post_program(posting_id(1, 0), 1, &c);
        for (uint32_t m = 1; m <= MEMBERS; m++)
            p[m] = post_open(posting_id(1, m), 1, m);
        return MEMBERS + 1;
    }
    uint32_t n = batch_size(k);
    for (uint32_t i = 0; i < n; i++)
        p[i] = post_accrue(posting_id(k, i), 1, member_of(k, i), k, 0);
    return n;
}

/* The child: apply batches after the stored applied index until killed. Never returns. With
 * `sync` every commit is flushed, as in production; without, commits are many times faster, so
 * more kills land inside one (the page cache survives a killed process either way). With
 * `defer` (tallyd's mode, engine.h "Deferred commit") batches wait in the group and are
 * committed a varying number at a time, so kills land with batches applied but uncommitted,
 * and inside commits of many batches. */
static void child_run(const char *dir, bool sync, bool defer)
{
    static struct tally_posting p[MEMBERS + 1];
    static struct tally_result r[MEMBERS + 1];
    struct engine_options o;
    engine_options_default(&o);
    o.sync = sync;
    o.defer_commit = defer;
    struct engine *e;
    if (engine_open(&e, dir, &o) != 0)
        _exit(2);
    struct engine_status st;
    engine_status(e, &st);
    for (uint64_t k = st.applied_index + 1; k < K_MAX; k++) {
        uint32_t n = batch_make(k, p);
        if (engine_apply(e, k, t0 + k * 1000, p, n, r) != 0)
            _exit(3);
        if (defer && k % (k % 5 + 3) == 0 && engine_commit(e) != 0)
            _exit(4);
    }
    engine_close(e);
    _exit(0);
}

static bool posting_recorded(struct engine *e, uint64_t id_n)
{
    uint8_t id[16];
    id_make(id, id_n);
    struct engine_posting_info pi;
    int rc = engine_posting(e, id, &pi);
    if (rc == TALLY_ENOT_FOUND)
        return false;
    assert_int_equal(rc, 0);
    assert_code(pi.code, TALLY_OK);
    return true;
}

/* Check the ledger after a kill (with the auditor too if `audit`); returns its applied index. */
static uint64_t check_after_kill(const char *dir, bool audit)
{
    struct engine_options o;
    engine_options_default(&o);
    struct engine *e;
    int rc = engine_open(&e, dir, &o);
    if (rc != 0)
        fail_msg("reopen after kill: %d %s", rc, tally_strerror(rc));
    struct engine_status st;
    engine_status(e, &st);
    uint64_t applied = st.applied_index;

    uint64_t expected[MEMBERS + 1] = {0};
    uint64_t entries = applied >= 1 ? MEMBERS + 1 : 0;
    for (uint64_t k = 2; k <= applied; k++) {
        uint32_t n = batch_size(k);
        for (uint32_t i = 0; i < n; i++)
            expected[member_of(k, i)] += k;
        entries += n;
        if (!posting_recorded(e, posting_id(k, 0)) || !posting_recorded(e, posting_id(k, n - 1)))
            fail_msg("batch %llu of %llu applied is not all there", (unsigned long long)k,
                     (unsigned long long)applied);
    }
    /* The next batch, which the child may have been committing, left nothing behind. */
    uint64_t next = applied + 1;
    for (uint32_t i = 0; i < (next == 1 ? MEMBERS + 1 : batch_size(next)); i++)
        if (posting_recorded(e, posting_id(next, i)))
            fail_msg("posting %u of batch %llu is there, applied index %llu", i,
                     (unsigned long long)next, (unsigned long long)applied);
    assert_int_equal(st.entries, entries);
    if (applied >= 1) {
        for (uint64_t m = 1; m <= MEMBERS; m++) {
            struct tally_account a;
            assert_int_equal(engine_account(e, 1, m, &a), 0);
            if (a.available != (int64_t)expected[m])
                fail_msg("member %llu has %lld, the whole batches up to %llu make %llu",
                         (unsigned long long)m, (long long)a.available, (unsigned long long)applied,
                         (unsigned long long)expected[m]);
        }
    }
    engine_close(e);
    if (!audit)
        return applied;

    struct audit_report rep;
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(audit_verify(dir, &rep), 0);
    if (!rep.ok)
        fail_msg("audit after kill at index %llu: seq %llu: %s", (unsigned long long)applied,
                 (unsigned long long)rep.bad_seq, rep.what);
    return applied;
}

static char crash_dir[64];

static void test_killed_process_leaves_whole_batches_only(void **state)
{
    (void)state;
    t0 = t("2026-01-01");
    tmpdir_make(crash_dir);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    uint64_t applied = 0;
    uint32_t kills = 0;
    /* On a loaded machine the child may get little done in a round: a few longer rounds are
     * added until it has applied a handful of batches, so the test never proves nothing. */
    for (uint32_t round = 0; round < ROUNDS || (applied < 10 && round < ROUNDS + 5); round++) {
        fflush(NULL); /* nothing buffered may be written twice */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            child_run(crash_dir, round % 2 == 1, round % 3 == 2);
        /* The first round gives the child time to open and commit; later ones are anywhere. */
        useconds_t delay = (useconds_t)(round == 0 ? 40000 : 0) + (useconds_t)(rand() % 60000);
        if (round >= ROUNDS)
            delay += 500000;
        usleep(delay);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status))
            kills++;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child failed with status %d (seed %u)", status, seed);
        /* The auditor reads the whole ledger: every few rounds is enough to stay quick. */
        uint64_t now = check_after_kill(crash_dir, round % 4 == 3 || round + 1 >= ROUNDS);
        if (getenv("TALLY_TEST_VERBOSE") != NULL)
            fprintf(stderr, "round %u: killed after %u us, applied index %llu\n", round,
                    (unsigned)delay, (unsigned long long)now);
        if (now < applied)
            fail_msg("applied index went back from %llu to %llu", (unsigned long long)applied,
                     (unsigned long long)now);
        applied = now;
    }
    assert_true(kills > 0);
    if (applied < 2)
        fail_msg("the child applied no batch in %u rounds (seed %u)", ROUNDS, seed);
    tmpdir_remove(crash_dir);
    crash_dir[0] = '\0';
}

static int crash_teardown(void **state)
{
    (void)state;
    tmpdir_remove(crash_dir);
    crash_dir[0] = '\0';
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_killed_process_leaves_whole_batches_only, crash_teardown),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
