/* raft_aio.c: io_destroy off the loop thread, for libraft's log writers (raft_aio.h). */
#include "raft_aio.h"

#include <dlfcn.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/syscall.h>

typedef long (*syscall_fn)(long number, ...);

enum helper_state { HELPER_NONE, HELPER_RUNNING, HELPER_STOPPED };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static aio_context_t queue[RAFT_AIO_QUEUE]; /* a ring: queued from head, count long */
static uint32_t head, count;
static enum helper_state state = HELPER_NONE;
static int stopping;
static pthread_t helper;
static uint64_t handed;

/* glibc's syscall: the next definition after this executable's. */
static syscall_fn next_syscall(void)
{
    static syscall_fn next;
    syscall_fn f = __atomic_load_n(&next, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = (syscall_fn)dlsym(RTLD_NEXT, "syscall"); /* the same answer in every thread */
        __atomic_store_n(&next, f, __ATOMIC_RELEASE);
    }
    return f;
}

static void *helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (count == 0 && !stopping)
            pthread_cond_wait(&wake, &mu);
        if (count == 0)
            break; /* stopping, and nothing left */
        aio_context_t ctx = queue[head];
        head = (head + 1) % RAFT_AIO_QUEUE;
        count--;
        pthread_mutex_unlock(&mu);
        (void)next_syscall()(SYS_io_destroy, ctx); /* libraft ignores the result too */
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* Start the helper (mu held); whether it runs. It takes no signals: they stay the loop's. */
static int helper_start(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&helper, NULL, helper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return 0;
    state = HELPER_RUNNING;
    return 1;
}

/* Queue ctx for the helper; whether it was taken. */
static int hand_over(aio_context_t ctx)
{
    int taken = 0;
    pthread_mutex_lock(&mu);
    if ((state == HELPER_RUNNING || (state == HELPER_NONE && helper_start())) &&
        count < RAFT_AIO_QUEUE) {
        queue[(head + count) % RAFT_AIO_QUEUE] = ctx;
        count++;
        handed++;
        taken = 1;
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&mu);
    return taken;
}

void raft_aio_drain(void)
{
    pthread_mutex_lock(&mu);
    enum helper_state was = state;
    state = HELPER_STOPPED; /* io_destroy is synchronous from here on */
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&mu);
    if (was == HELPER_RUNNING)
        pthread_join(helper, NULL); /* it empties the queue before it ends */
}

uint64_t raft_aio_handed_over(void)
{
    pthread_mutex_lock(&mu);
    uint64_t n = handed;
    pthread_mutex_unlock(&mu);
    return n;
}

/* Interposes glibc's syscall (raft_aio.h says why and what it promises). Six arguments are
 * passed on whatever the call took, as glibc's own syscall does (on x86-64 it loads the sixth
 * from the caller's stack unconditionally): the kernel reads only the ones the call has. The
 * reads past a shorter call's arguments are of the caller's own stack, which is always there;
 * AddressSanitizer would call them an underflow of the caller's frame, so it does not look. */
__attribute__((no_sanitize_address)) long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_destroy && hand_over((aio_context_t)a1))
        return 0;
    return next_syscall()(number, a1, a2, a3, a4, a5, a6);
}
