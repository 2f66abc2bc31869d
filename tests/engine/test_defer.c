/* test_defer.c: deferred commit (engine/engine.h, "Deferred commit"; what tallyd runs).
 *
 * Shown here: batches applied into the group are seen by engine_status and by queries before
 * engine_commit, and the file has them only after it; a process that dies with batches
 * uncommitted reopens at its last commit, and applying the lost batches again gives the state
 * digest of a ledger that never deferred (law 6); map growth commits the group on its way; a
 * commit that cannot be written fails the engine (apply, queries and commit all return the
 * error) until it is reopened, and the reopened ledger is the last committed one, whole; a
 * commit handed to the committer (engine_commit_start) that fails is reported by the next call
 * that needs the ledger, and fails the engine the same way.
 * The failed commit is real: RLIMIT_FSIZE stops LMDB's writes past the file's end with EFBIG,
 * as a full disk would with ENOSPC.
 */
#include "../support.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEMBERS   50u
#define PER_BATCH 250u

static void defer_options(struct engine_options *o)
{
    engine_options_default(o);
    o->sync = false;
    o->defer_commit = true;
}

/* Batch k (from 0): PER_BATCH accruals of k+1 points, member i % MEMBERS + 1. */
static void fill_batch(struct tally_posting *p, uint32_t k)
{
    for (uint32_t i = 0; i < PER_BATCH; i++)
        p[i] = post_accrue((uint64_t)k * PER_BATCH + i + 1000, 1, i % MEMBERS + 1, k + 1, 0);
}

/* What member m holds after batches 0..k-1. */
static int64_t expected_after(uint32_t k)
{
    int64_t sum = 0;
    for (uint32_t j = 0; j < k; j++)
        sum += (int64_t)(PER_BATCH / MEMBERS) * (j + 1);
    return sum;
}

static void apply_batches(struct fx *f, uint32_t from, uint32_t to)
{
    static struct tally_posting p[PER_BATCH];
    static struct tally_result r[PER_BATCH];
    for (uint32_t k = from; k < to; k++) {
        fill_batch(p, k);
        fx_apply(f, t("2026-01-02") + k * HOUR_MS, p, PER_BATCH, r);
        for (uint32_t i = 0; i < PER_BATCH; i++)
            assert_code(r[i].code, TALLY_OK);
    }
}

static void assert_members_hold(struct fx *f, int64_t want)
{
    for (uint64_t m = 1; m <= MEMBERS; m++) {
        struct tally_account a = fx_account(f, 1, m);
        if (a.available != want)
            fail_msg("member %llu holds %lld, expected %lld", (unsigned long long)m,
                     (long long)a.available, (long long)want);
    }
}

/* A deferred ledger with the program and its members, committed. */
static void deferred_ledger(struct fx *f)
{
    struct engine_options o;
    defer_options(&o);
    fx_init(f, &o);
    fx_program(f, t("2026-01-01"), 1, NULL, MEMBERS);
    assert_int_equal(engine_commit(f->e), 0);
}

static void test_batches_are_seen_before_commit_and_committed_by_engine_commit(void **state)
{
    (void)state;
    static struct fx f;
    deferred_ledger(&f);
    struct engine_status st;
    engine_status(f.e, &st);
    uint64_t first = st.applied_index;
    assert_int_equal(st.committed_index, first);
    assert_int_equal(st.uncommitted, 0);

    apply_batches(&f, 0, 5);
    engine_status(f.e, &st);
    assert_int_equal(st.applied_index, first + 5);
    assert_int_equal(st.committed_index, first); /* applied, not in the file */
    assert_int_equal(st.uncommitted, 5);
    assert_int_equal(st.uncommitted_postings, 5 * PER_BATCH);
    assert_members_hold(&f, expected_after(5)); /* queries read through the group */
    assert_code(fx_posting(&f, 1000).code, TALLY_OK);

    assert_int_equal(engine_commit(f.e), 0);
    engine_status(f.e, &st);
    assert_int_equal(st.committed_index, first + 5);
    assert_int_equal(st.uncommitted, 0);
    assert_int_equal(engine_commit(f.e), 0); /* nothing to commit */
    fx_verify(&f);                          /* close (commits), audit, reopen */
    assert_members_hold(&f, expected_after(5));
    fx_deinit(&f);
}

/* The child: open deferred, apply the program and batches 0..4, commit, apply 5..7, and die
 * without committing or closing, as a crashed replica would. */
static void crashing_child(const char *dir)
{
    struct engine_options o;
    defer_options(&o);
    static struct fx c;
    memset(&c, 0, sizeof(c));
    snprintf(c.dir, sizeof(c.dir), "%s", dir);
    c.opts = o;
    c.next_id = 1000000;
    if (engine_open(&c.e, dir, &o) != 0)
        _exit(2);
    fx_program(&c, t("2026-01-01"), 1, NULL, MEMBERS);
    apply_batches(&c, 0, 5);
    if (engine_commit(c.e) != 0)
        _exit(3);
    apply_batches(&c, 5, 8);
    struct engine_status st;
    engine_status(c.e, &st);
    if (st.uncommitted != 3)
        _exit(4);
    _exit(0); /* no engine_close: the group is never committed */
}

static void test_a_crash_loses_only_uncommitted_batches_and_they_apply_again(void **state)
{
    (void)state;
    static struct fx f, ref;
    fx_init(&f, NULL);
    fx_init(&ref, NULL);
    engine_close(f.e); /* the child is the only writer while it runs */
    f.e = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crashing_child(f.dir);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    fx_reopen(&f);
    struct engine_status st;
    engine_status(f.e, &st);
    /* The program and its members (one batch each: fx_program's index) and batches 0..4. */
    fx_program(&ref, t("2026-01-01"), 1, NULL, MEMBERS);
    apply_batches(&ref, 0, 5);
    struct engine_status want;
    engine_status(ref.e, &want);
    assert_same_status(&st, &want);
    assert_members_hold(&f, expected_after(5));
    uint8_t id[16];
    id_make(id, 5 * PER_BATCH + 1000); /* batch 5's first posting */
    struct engine_posting_info pi;
    assert_int_equal(engine_posting(f.e, id, &pi), TALLY_ENOT_FOUND);

    /* Applied again (as Raft would replay them), the lost batches give the same ledger. */
    f.index = st.applied_index;
    f.next_id = ref.next_id;
    apply_batches(&f, 5, 8);
    apply_batches(&ref, 5, 8);
    assert_same_engines(f.e, ref.e);
    assert_members_hold(&f, expected_after(8));
    fx_verify(&f);
    fx_deinit(&f);
    fx_deinit(&ref);
}

static void test_map_growth_commits_the_group_and_loses_nothing(void **state)
{
    (void)state;
    struct engine_options o;
    defer_options(&o);
    o.map_size = (size_t)256 << 10;
    static struct fx f, ref;
    fx_init(&f, &o);
    fx_init(&ref, NULL);
    fx_program(&f, t("2026-01-01"), 1, NULL, MEMBERS);
    fx_program(&ref, t("2026-01-01"), 1, NULL, MEMBERS);
    apply_batches(&f, 0, 40);
    apply_batches(&ref, 0, 40);
    struct engine_status st;
    engine_status(f.e, &st);
    if (st.map_size < 8 * o.map_size)
        fail_msg("map size %llu after growth", (unsigned long long)st.map_size);
    /* Never committed by hand: each growth committed the group before remapping. */
    assert_true(st.committed_index > 1);
    assert_true(st.committed_index < st.applied_index || st.uncommitted == 0);
    assert_same_engines(f.e, ref.e);
    assert_members_hold(&f, expected_after(40));
    fx_verify(&f);
    assert_same_engines(f.e, ref.e);
    fx_deinit(&f);
    fx_deinit(&ref);
}

static off_t file_size(const char *dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    struct stat s;
    assert_int_equal(stat(path, &s), 0);
    return s.st_size;
}

/* The ledger's file may not grow (RLIMIT_FSIZE at its size; SIGXFSZ ignored) until
 * file_limit_lift: LMDB's writes past its end fail with EFBIG, as a full disk's with ENOSPC. */
static struct rlimit limit_old;
static void (*limit_old_handler)(int);

static void file_limit_set(const char *dir)
{
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &limit_old), 0);
    limit_old_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = (rlim_t)file_size(dir), .rlim_max = limit_old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
}

static void file_limit_lift(void)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &limit_old), 0);
    signal(SIGXFSZ, limit_old_handler);
}

static void test_a_failed_commit_fails_the_engine_until_reopened(void **state)
{
    (void)state;
    static struct fx f;
    deferred_ledger(&f);
    apply_batches(&f, 0, 2);
    assert_int_equal(engine_commit(f.e), 0);
    struct engine_status before;
    engine_status(f.e, &before);

    /* 40 batches of accruals need megabytes of new pages: the file must grow to hold them. */
    apply_batches(&f, 2, 42);
    file_limit_set(f.dir);
    int rc = engine_commit(f.e);
    file_limit_lift();
    assert_int_equal(rc, -EFBIG);

    /* Failed: everything that reads or writes says so, and nothing is applied. */
    static struct tally_posting p[PER_BATCH];
    static struct tally_result r[PER_BATCH];
    fill_batch(p, 42);
    assert_int_equal(engine_apply(f.e, 1000, t("2026-03-01"), p, PER_BATCH, r), -EFBIG);
    struct tally_account a;
    assert_int_equal(engine_account(f.e, 1, 1, &a), -EFBIG);
    assert_int_equal(engine_commit(f.e), -EFBIG);
    assert_int_equal(engine_sync(f.e), -EFBIG);

    /* Reopened: the last committed ledger, whole, and it goes on. */
    fx_reopen(&f);
    struct engine_status st;
    engine_status(f.e, &st);
    assert_same_status(&st, &before);
    assert_members_hold(&f, expected_after(2));
    f.index = st.applied_index;
    apply_batches(&f, 2, 42);
    assert_int_equal(engine_commit(f.e), 0);
    assert_members_hold(&f, expected_after(42));
    fx_verify(&f);
    fx_deinit(&f);
}

static void test_a_failed_background_commit_is_reported_by_the_next_call(void **state)
{
    (void)state;
    static struct fx f;
    deferred_ledger(&f);
    apply_batches(&f, 0, 2);
    assert_int_equal(engine_commit(f.e), 0);
    struct engine_status before;
    engine_status(f.e, &before);

    apply_batches(&f, 2, 42);
    file_limit_set(f.dir);
    int started = engine_commit_start(f.e); /* handed over: the failure is still to come */
    struct tally_account a;
    int queried = engine_account(f.e, 1, 1, &a); /* waits for the commit: its failure */
    file_limit_lift();
    assert_int_equal(started, 0);
    assert_int_equal(queried, -EFBIG);
    struct engine_status st;
    engine_status(f.e, &st);
    assert_false(st.committing);
    assert_int_equal(st.committed_index, before.applied_index);
    assert_int_equal(st.commits, before.commits);

    static struct tally_posting p[PER_BATCH];
    static struct tally_result r[PER_BATCH];
    fill_batch(p, 42);
    assert_int_equal(engine_apply(f.e, 1000, t("2026-03-01"), p, PER_BATCH, r), -EFBIG);
    assert_int_equal(engine_commit_start(f.e), -EFBIG);
    assert_int_equal(engine_commit(f.e), -EFBIG);

    fx_reopen(&f);
    engine_status(f.e, &st);
    assert_same_status(&st, &before);
    assert_members_hold(&f, expected_after(2));
    fx_verify(&f);
    fx_deinit(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_OWN_TEST(test_batches_are_seen_before_commit_and_committed_by_engine_commit),
        FX_OWN_TEST(test_a_crash_loses_only_uncommitted_batches_and_they_apply_again),
        FX_OWN_TEST(test_map_growth_commits_the_group_and_loses_nothing),
        FX_OWN_TEST(test_a_failed_commit_fails_the_engine_until_reopened),
        FX_OWN_TEST(test_a_failed_background_commit_is_reported_by_the_next_call),
    };
    return cmocka_run_group_tests_name("defer", tests, NULL, NULL);
}
