/* failwrite.c: an LD_PRELOAD shim for the disk fault tests (test_faults.c).
 *
 * Disk full: write(2) and its relatives fail with ENOSPC on files whose path contains
 * TALLY_FAILWRITE_MATCH, once TALLY_FAILWRITE_AFTER bytes have been written to such files.
 * Used instead of a small filesystem of its own, which would need a loop device (not available
 * in every CI container); it is the disk-full the process sees either way: the kernel's answer.
 *
 * A slow disk: fdatasync(2) and fsync(2) of files whose path contains TALLY_SLOWSYNC_MATCH take
 * TALLY_SLOWSYNC_MS milliseconds longer (a sleep before the real flush).
 *
 * Everything else passes through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static atomic_llong written;

static int path_matches(int fd, const char *var);

/* Whether a write of n bytes to fd must fail. */
static int full(int fd, size_t n)
{
    const char *after = getenv("TALLY_FAILWRITE_AFTER");
    if (after == NULL || !path_matches(fd, "TALLY_FAILWRITE_MATCH"))
        return 0;
    long long total = atomic_fetch_add(&written, (long long)n) + (long long)n;
    if (total <= atoll(after))
        return 0;
    errno = ENOSPC;
    return 1;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);

#define NEXT(name, type)                                                                          \
    static type real_##name;                                                                      \
    if (real_##name == NULL)                                                                      \
    real_##name = (type)dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
    NEXT(write, write_fn);
    return full(fd, n) ? -1 : real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    NEXT(pwrite, pwrite_fn);
    return full(fd, n) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    NEXT(pwrite64, pwrite_fn);
    return full(fd, n) ? -1 : real_pwrite64(fd, buf, n, off);
}

static size_t iov_bytes(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    NEXT(writev, writev_fn);
    return full(fd, iov_bytes(iov, cnt)) ? -1 : real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    NEXT(pwritev, pwritev_fn);
    return full(fd, iov_bytes(iov, cnt)) ? -1 : real_pwritev(fd, iov, cnt, off);
}

/* Whether fd's path contains the value of the environment variable `var`. */
static int path_matches(int fd, const char *var)
{
    const char *match = getenv(var);
    if (match == NULL)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof(path) - 1);
    if (len <= 0)
        return 0;
    path[len] = '\0';
    return strstr(path, match) != NULL;
}

static void slow_sync(int fd)
{
    const char *ms = getenv("TALLY_SLOWSYNC_MS");
    if (ms == NULL || !path_matches(fd, "TALLY_SLOWSYNC_MATCH"))
        return;
    long n = atol(ms);
    struct timespec ts = {.tv_sec = n / 1000, .tv_nsec = (n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

typedef int (*sync_fn)(int);

int fdatasync(int fd)
{
    NEXT(fdatasync, sync_fn);
    slow_sync(fd);
    return real_fdatasync(fd);
}

int fsync(int fd)
{
    NEXT(fsync, sync_fn);
    slow_sync(fd);
    return real_fsync(fd);
}
