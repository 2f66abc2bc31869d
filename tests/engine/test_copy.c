/* test_copy.c: engine_copy, the ledger copy a replica catches up from (docs/ARCHITECTURE.md,
 * "Catch-up"). A copy opened as a data directory is the same ledger: same applied index, entries,
 * chain head and digest, and tally-audit verify passes on it, even though most member images were
 * never written back to LMDB (the copy folds them from the entries, like a crashed writer). A copy
 * taken on another thread while batches go on being applied, and the map grows, holds a prefix of
 * the batches: applying the rest to it gives the source's digest. A copy into a file it cannot
 * write fails with an error and leaves the engine applying as before. */
#include "../support.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEMBERS 400u
#define PER_BATCH 200u

/* Batch k (k >= 1) of a deterministic stream: accruals, redemptions, holds and their captures,
 * transfers; the same k gives the same bytes, so a copy can be brought forward by re-applying
 * the batches after its applied index. */
static void batch_of(uint64_t k, struct tally_posting *out, uint32_t *count)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < PER_BATCH; i++) {
        uint64_t id = 10000000 + k * PER_BATCH + i;
        uint64_t m = 1 + (k * 7919 + i * 104729) % MEMBERS;
        switch (i % 10) {
        case 7:
            out[n++] = post_redeem(id, 1, m, 5);
            break;
        case 8:
            out[n++] = post_transfer(id, 1, m, 1 + (m % MEMBERS), 3);
            break;
        case 9:
            out[n++] = post_hold(id, 1, m, 4, 0);
            break;
        default:
            out[n++] = post_accrue(id, 1, m, 20 + i % 13, 100);
        }
    }
    *count = n;
}

static uint64_t ts_of(uint64_t k)
{
    return t("2026-03-02") + k * 10 * MINUTE_MS;
}

/* The index of the last batch of the setup (the same on every ledger set up alike). */
static uint64_t base;

static void apply_batch(struct fx *f, uint64_t k)
{
    static struct tally_posting p[PER_BATCH];
    static struct tally_result r[PER_BATCH];
    uint32_t n;
    batch_of(k, p, &n);
    assert_int_equal(f->index, base + k - 1); /* batch k is index base + k */
    fx_apply(f, ts_of(k), p, n, r);
}

static void setup_ledger(struct fx *f)
{
    fx_program(f, t("2026-03-01"), 1, NULL, MEMBERS);
    base = f->index;
}

/* Replace the ledger of `dst` (closed) by the bytes the copy wrote to `fd`. */
static void install_copy(struct fx *dst, int fd)
{
    char path[128];
    engine_close(dst->e);
    dst->e = NULL;
    snprintf(path, sizeof(path), "%s/lock.mdb", dst->dir);
    (void)unlink(path);
    snprintf(path, sizeof(path), "%s/data.mdb", dst->dir);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(out >= 0);
    static uint8_t buf[1 << 16];
    off_t off = 0;
    ssize_t n;
    while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
        assert_int_equal(write(out, buf, (size_t)n), n);
        off += n;
    }
    assert_int_equal(n, 0);
    assert_true(off > 0);
    close(out);
    fx_reopen(dst);
}

static int copy_file(const struct fx *f)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/copy.mdb", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_a_copy_is_the_same_ledger_and_verifies(void **state)
{
    (void)state;
    static struct fx src, dst;
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    o.turn_entries = (uint64_t)1 << 40; /* the hand never turns: images stay dirty in memory */
    fx_init(&src, &o);
    fx_init(&dst, NULL);
    setup_ledger(&src);
    for (uint64_t k = 1; k <= 20; k++)
        apply_batch(&src, k);
    struct engine_status st;
    engine_status(src.e, &st);
    assert_true(st.members_dirty > MEMBERS / 2); /* the copy must fold them from the entries */

    int fd = copy_file(&dst);
    assert_int_equal(engine_copy(src.e, fd), 0);
    install_copy(&dst, fd);
    close(fd);
    assert_same_engines(src.e, dst.e);
    assert_int_equal(fx_account(&src, 1, 17).available, fx_account(&dst, 1, 17).available);
    fx_verify(&dst);

    /* Both go on from there as one ledger. */
    dst.index = src.index;
    apply_batch(&src, 21);
    apply_batch(&dst, 21);
    assert_same_engines(src.e, dst.e);
    fx_deinit(&src);
    fx_deinit(&dst);
}

struct copier {
    struct engine *e;
    int fd;
    int rc;
};

static void *copier_main(void *arg)
{
    struct copier *c = arg;
    c->rc = engine_copy(c->e, c->fd);
    return NULL;
}

static void test_a_copy_taken_while_applying_holds_a_prefix(void **state)
{
    (void)state;
    static struct fx src, dst;
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    o.map_size = (size_t)256 << 10; /* 256 KiB: the map grows while the copy runs */
    fx_init(&src, &o);
    fx_init(&dst, NULL);
    setup_ledger(&src);
    for (uint64_t k = 1; k <= 10; k++)
        apply_batch(&src, k);
    struct engine_status before;
    engine_status(src.e, &before);

    struct copier c = {src.e, copy_file(&dst), -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, copier_main, &c), 0);
    const uint64_t last = 60;
    for (uint64_t k = 11; k <= last; k++)
        apply_batch(&src, k);
    pthread_join(th, NULL);
    assert_int_equal(c.rc, 0);
    struct engine_status after;
    engine_status(src.e, &after);
    assert_true(after.map_size > before.map_size);

    install_copy(&dst, c.fd);
    close(c.fd);
    struct engine_status got;
    engine_status(dst.e, &got);
    assert_true(got.applied_index >= before.applied_index);
    assert_true(got.applied_index <= after.applied_index);
    fx_verify(&dst);
    dst.index = got.applied_index;
    for (uint64_t k = got.applied_index - base + 1; k <= last; k++)
        apply_batch(&dst, k);
    assert_same_engines(src.e, dst.e);
    fx_deinit(&src);
    fx_deinit(&dst);
}

static void test_a_copy_that_cannot_be_written_fails_and_harms_nothing(void **state)
{
    (void)state;
    static struct fx src;
    fx_init(&src, NULL);
    setup_ledger(&src);
    apply_batch(&src, 1);
    char path[128];
    snprintf(path, sizeof(path), "%s/ro.mdb", src.dir);
    int fd = open(path, O_RDONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    int rc = engine_copy(src.e, fd);
    assert_true(rc < 0); /* -EBADF: an errno value, not a crash and not a partial success */
    close(fd);
    unlink(path);
    apply_batch(&src, 2);
    fx_verify(&src);
    fx_deinit(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_OWN_TEST(test_a_copy_is_the_same_ledger_and_verifies),
        FX_OWN_TEST(test_a_copy_taken_while_applying_holds_a_prefix),
        FX_OWN_TEST(test_a_copy_that_cannot_be_written_fails_and_harms_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
