/* test_raft_aio.c: server/raft_aio.h's syscall hands io_destroy to its helper thread, passes
 * every other call on, and destroys everything by raft_aio_drain; after it, io_destroy is
 * synchronous again. The test binary links server/raft_aio.o as tallyd does, and libraft, so
 * the last test checks that a shared library asking for syscall gets this definition.
 *
 * The tests run in order: the drain (test 4) is one way.
 */
#include "../support.h"
#include "../../server/raft_aio.h"

#include <errno.h>
#include <linux/aio_abi.h>
#include <raft.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CONTEXTS (3u * RAFT_AIO_QUEUE)

static aio_context_t context_new(void)
{
    aio_context_t ctx = 0;
    assert_int_equal(syscall(SYS_io_setup, 4, &ctx), 0);
    assert_true(ctx != 0);
    return ctx;
}

/* Whether the kernel still knows ctx: io_getevents answers EINVAL for a destroyed one. */
static bool context_alive(aio_context_t ctx)
{
    struct io_event ev;
    struct timespec zero = {0, 0};
    long n = syscall(SYS_io_getevents, ctx, 0, 1, &ev, &zero);
    if (n >= 0)
        return true;
    assert_int_equal(errno, EINVAL);
    return false;
}

/* Wait (at most 10 s) until ctx is gone; whether it went. */
static bool context_goes(aio_context_t ctx)
{
    for (int i = 0; i < 10000; i++) {
        if (!context_alive(ctx))
            return true;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return false;
}

static void test_other_calls_pass_through(void **state)
{
    (void)state;
    assert_int_equal(syscall(SYS_getpid), getpid());
    errno = 0;
    assert_int_equal(syscall(SYS_close, -1), -1);
    assert_int_equal(errno, EBADF);
    /* Six arguments, as glibc passes them: a read of 0 bytes from a pipe. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char c;
    assert_int_equal(syscall(SYS_read, fds[0], &c, 0), 0);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(raft_aio_handed_over(), 0); /* none of these was an io_destroy */
}

static void test_a_context_is_destroyed_by_the_helper(void **state)
{
    (void)state;
    aio_context_t ctx = context_new();
    assert_true(context_alive(ctx));
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
    assert_int_equal(raft_aio_handed_over(), 1);
    assert_true(context_goes(ctx));
}

static void test_more_contexts_than_the_queue_holds(void **state)
{
    (void)state;
    static aio_context_t ctx[CONTEXTS];
    for (uint32_t i = 0; i < CONTEXTS; i++)
        ctx[i] = context_new();
    uint64_t before = raft_aio_handed_over();
    for (uint32_t i = 0; i < CONTEXTS; i++)
        assert_int_equal(syscall(SYS_io_destroy, ctx[i]), 0);
    uint64_t handed = raft_aio_handed_over() - before;
    assert_true(handed >= 1 && handed <= CONTEXTS);
    for (uint32_t i = 0; i < CONTEXTS; i++)
        assert_true(context_goes(ctx[i]));
}

static void test_the_drain_destroys_what_is_queued(void **state)
{
    (void)state;
    aio_context_t a = context_new(), b = context_new();
    assert_int_equal(syscall(SYS_io_destroy, a), 0);
    assert_int_equal(syscall(SYS_io_destroy, b), 0);
    raft_aio_drain();
    assert_false(context_alive(a)); /* gone by the time the drain returns: no waiting */
    assert_false(context_alive(b));
    raft_aio_drain(); /* a second drain does nothing */
}

static void test_after_the_drain_io_destroy_is_synchronous(void **state)
{
    (void)state;
    uint64_t before = raft_aio_handed_over();
    aio_context_t ctx = context_new();
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
    assert_false(context_alive(ctx));
    assert_int_equal(raft_aio_handed_over(), before);
    /* The synchronous path gives the kernel's answer: an unknown context is EINVAL. */
    errno = 0;
    assert_int_equal(syscall(SYS_io_destroy, ctx), -1);
    assert_int_equal(errno, EINVAL);
}

/* What libraft (a shared library) finds when it asks for syscall. */
static void test_libraft_reaches_this_definition(void **state)
{
    (void)state;
    assert_non_null(raft_strerror(0)); /* libraft is loaded and linked */
    assert_interposed("syscall", (void *)syscall);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_other_calls_pass_through),
        cmocka_unit_test(test_a_context_is_destroyed_by_the_helper),
        cmocka_unit_test(test_more_contexts_than_the_queue_holds),
        cmocka_unit_test(test_the_drain_destroys_what_is_queued),
        cmocka_unit_test(test_after_the_drain_io_destroy_is_synchronous),
        cmocka_unit_test(test_libraft_reaches_this_definition),
    };
    return cmocka_run_group_tests_name("raft_aio", tests, NULL, NULL);
}
