/* failwrite.c: an LD_PRELOAD shim for the disk-full fault test (test_faults.c): write(2) and its
 * relatives fail with ENOSPC on files whose path contains TALLY_FAILWRITE_MATCH, once
 * TALLY_FAILWRITE_AFTER bytes have been written to such files. Everything else passes through.
 * Used instead of a small filesystem of its own, which would need a loop device (not available
 * in every CI container); it is the disk-full the process sees either way: the kernel's answer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_llong written;

/* Whether a write of n bytes to fd must fail. */
static int full(int fd, size_t n)
{
    const char *match = getenv("TALLY_FAILWRITE_MATCH");
    const char *after = getenv("TALLY_FAILWRITE_AFTER");
    if (match == NULL || after == NULL)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof(path) - 1);
    if (len <= 0)
        return 0;
    path[len] = '\0';
    if (strstr(path, match) == NULL)
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
