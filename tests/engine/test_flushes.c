/* test_flushes.c: how many disk flushes each kind of commit costs, counted as LMDB makes them.
 *
 * Shown here: with tallyd's settings (sync, defer_commit) applying batches flushes nothing, and
 * engine_commit flushes the ledger's data file once and writes its meta page without a flush of
 * its own (engine.h, "Deferred commit": MDB_NOMETASYNC); engine_sync and engine_close then
 * flush that meta page (no meta page is left written and unflushed after either), and what was
 * committed is there after a reopen. Without defer_commit
 * every batch still pays both flushes, the data's and the meta page's (an O_DSYNC write), as
 * LMDB's durable default does. Only the settings are a choice here: whether a flush reaches the
 * platter cannot be seen from a test, so what is counted is the calls LMDB makes.
 * And the committer (engine.h, "The committer"): a group's flush happens on the engine's own
 * thread, not the caller's; engine_commit_start returns while that flush is still held (a gate
 * here keeps it from finishing), status shows the commit in flight and the file's index behind,
 * and the next query waits for the commit and sees every batch.
 *
 * How: this executable defines fdatasync, fsync and pwrite (it comes first in the symbol
 * lookup, so liblmdb's calls land here, as test_raft_alloc does for libraft), counts those on
 * the ledger's data.mdb, and passes every call on to glibc.
 */
#include "../support.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Counted from whichever thread LMDB calls on: read by the test only after the engine call that
 * caused them has returned (engine_commit waits for its commit). */
static unsigned data_flushes; /* fdatasync or fsync of data.mdb */
static unsigned dsync_writes; /* pwrite to data.mdb through a descriptor opened O_DSYNC */
static bool meta_unflushed;   /* a meta page (the file's first two pages) written, not flushed */
static pid_t flush_thread;    /* the thread of the last flush of data.mdb */
static atomic_bool gate_closed;   /* a flush of data.mdb waits while it is set */
static atomic_bool flush_waiting; /* a flush waits at the gate */

static bool is_ledger_file(int fd)
{
    char link[64], path[512];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    size_t len = (size_t)n;
    return len >= 9 && strcmp(path + len - 9, "/data.mdb") == 0;
}

static void count_flush(int fd)
{
    if (!is_ledger_file(fd))
        return;
    data_flushes++;
    meta_unflushed = false;
    flush_thread = gettid();
    /* Held at the gate, at most 10 s (a test that forgets to open it still ends). */
    for (int i = 0; i < 10000 && atomic_load(&gate_closed); i++) {
        atomic_store(&flush_waiting, true);
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    atomic_store(&flush_waiting, false);
}

int fdatasync(int fd)
{
    static int (*next)(int);
    if (next == NULL)
        next = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    count_flush(fd);
    return next(fd);
}

int fsync(int fd)
{
    static int (*next)(int);
    if (next == NULL)
        next = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    count_flush(fd);
    return next(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    static ssize_t (*next)(int, const void *, size_t, off_t);
    if (next == NULL)
        next = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (is_ledger_file(fd)) {
        int fl = fcntl(fd, F_GETFL);
        bool dsync = fl >= 0 && (fl & O_DSYNC) == O_DSYNC;
        dsync_writes += dsync;
        if (offset < 2 * sysconf(_SC_PAGESIZE)) /* LMDB's two meta pages lead the file */
            meta_unflushed = !dsync;
    }
    return next(fd, buf, count, offset);
}

static void count_reset(void)
{
    data_flushes = 0;
    dsync_writes = 0;
    meta_unflushed = false;
}

#define MEMBERS 20u

static void durable_ledger(struct fx *f, bool defer)
{
    struct engine_options o;
    engine_options_default(&o); /* sync on */
    o.defer_commit = defer;
    fx_init(f, &o);
    fx_program(f, t("2026-01-01"), 1, NULL, MEMBERS);
    assert_int_equal(engine_commit(f->e), 0);
}

static void accrue_each(struct fx *f, uint64_t points)
{
    for (uint64_t m = 1; m <= MEMBERS; m++)
        fx_ok(f, t("2026-01-02"), post_accrue(fx_id(f), 1, m, points, 0));
}

static void test_lmdb_calls_are_ours(void **state)
{
    (void)state;
    assert_interposed("fdatasync", (void *)fdatasync);
    assert_interposed("fsync", (void *)fsync);
    assert_interposed("pwrite", (void *)pwrite);
}

static void test_a_deferred_commit_flushes_once_and_the_meta_page_later(void **state)
{
    (void)state;
    static struct fx f;
    durable_ledger(&f, true);
    count_reset();
    accrue_each(&f, 5);
    assert_int_equal(data_flushes, 0); /* applied into the group: nothing written yet */
    assert_int_equal(dsync_writes, 0);
    assert_int_equal(engine_commit(f.e), 0);
    assert_int_equal(data_flushes, 1); /* the group's pages */
    assert_int_equal(dsync_writes, 0);
    assert_true(meta_unflushed); /* the meta page: written, not flushed */
    count_reset();
    assert_int_equal(engine_sync(f.e), 0);
    assert_int_equal(data_flushes, 1); /* now the meta page is durable too */
    assert_false(meta_unflushed);
    accrue_each(&f, 7);
    assert_int_equal(engine_commit(f.e), 0);
    assert_true(meta_unflushed);
    count_reset();
    fx_reopen(&f); /* a clean close flushes the last meta page */
    assert_int_equal(dsync_writes, 0);
    assert_false(meta_unflushed);
    for (uint64_t m = 1; m <= MEMBERS; m++)
        assert_int_equal(fx_account(&f, 1, m).available, 12);
    fx_deinit(&f);
}

static void test_without_deferral_every_batch_pays_both_flushes(void **state)
{
    (void)state;
    static struct fx f;
    durable_ledger(&f, false);
    count_reset();
    fx_ok(&f, t("2026-01-02"), post_accrue(fx_id(&f), 1, 1, 5, 0));
    assert_int_equal(data_flushes, 1); /* the batch's pages */
    assert_int_equal(dsync_writes, 1); /* its meta page, written through LMDB's O_DSYNC handle */
    assert_false(meta_unflushed);
    assert_int_equal(flush_thread, gettid()); /* no committer: the caller flushes */
    fx_deinit(&f);
}

static void test_the_committer_flushes_while_the_caller_goes_on(void **state)
{
    (void)state;
    static struct fx f;
    durable_ledger(&f, true);
    assert_int_not_equal(flush_thread, gettid()); /* durable_ledger's commit: the committer's */
    struct engine_status before, st;
    engine_status(f.e, &before);
    accrue_each(&f, 5);
    count_reset();
    atomic_store(&gate_closed, true);
    assert_int_equal(engine_commit_start(f.e), 0);
    /* It returned; the committer's flush is held at the gate (bounded wait for it to get there). */
    for (int i = 0; i < 10000 && !atomic_load(&flush_waiting); i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    assert_true(atomic_load(&flush_waiting));
    engine_status(f.e, &st);
    assert_true(st.committing);
    assert_int_equal(st.uncommitted, 0); /* the group is the committer's now */
    assert_int_equal(st.committed_index, before.applied_index); /* not in the file yet */
    assert_int_equal(st.applied_index, before.applied_index + MEMBERS);
    assert_int_equal(st.commits, before.commits);
    uint64_t waited = st.commit_wait_us;
    assert_int_equal(engine_sessions(f.e), 0); /* answered without waiting for the commit */
    /* So is an account from the member cache (the batches in the commit included); one the
     * cache does not hold (never opened) says so, for engine_account to answer. */
    for (uint64_t m = 1; m <= MEMBERS; m++) {
        struct tally_account a;
        assert_int_equal(engine_account_cached(f.e, 1, m, &a), 0);
        assert_int_equal(a.member, m);
        assert_int_equal(a.available, 5);
    }
    struct tally_account none;
    assert_int_equal(engine_account_cached(f.e, 1, MEMBERS + 1, &none), 1);
    engine_status(f.e, &st);
    assert_int_equal(st.commit_wait_us, waited);
    assert_true(st.committing);
    atomic_store(&gate_closed, false);
    /* A query waits for the commit, then reads every batch. */
    for (uint64_t m = 1; m <= MEMBERS; m++)
        assert_int_equal(fx_account(&f, 1, m).available, 5);
    assert_int_equal(engine_account(f.e, 1, MEMBERS + 1, &none), TALLY_ENOT_FOUND);
    engine_status(f.e, &st);
    assert_false(st.committing);
    assert_int_equal(st.committed_index, st.applied_index);
    assert_int_equal(st.commits, before.commits + 1);
    assert_true(st.commit_wait_us > before.commit_wait_us); /* the query waited */
    assert_int_equal(data_flushes, 1);
    assert_int_not_equal(flush_thread, gettid());
    /* Applying after a commit that was handed over waits for it the same way. */
    accrue_each(&f, 7);
    assert_int_equal(engine_commit_start(f.e), 0);
    accrue_each(&f, 1);
    assert_int_equal(engine_commit(f.e), 0);
    fx_reopen(&f);
    for (uint64_t m = 1; m <= MEMBERS; m++)
        assert_int_equal(fx_account(&f, 1, m).available, 13);
    fx_deinit(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lmdb_calls_are_ours),
        FX_OWN_TEST(test_a_deferred_commit_flushes_once_and_the_meta_page_later),
        FX_OWN_TEST(test_without_deferral_every_batch_pays_both_flushes),
        FX_OWN_TEST(test_the_committer_flushes_while_the_caller_goes_on),
    };
    return cmocka_run_group_tests_name("flushes", tests, NULL, NULL);
}
