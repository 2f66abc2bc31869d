/* raft_alloc.c: posix_fallocate as written zeros, for libraft's log segments (raft_alloc.h). */
#include "raft_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Zeros for direct I/O: aligned to any logical block size a disk has (4 KiB). */
static _Alignas(4096) const char zeros[RAFT_ALLOC_ZERO_CHUNK];

/* Write [offset, offset + len) of fd with zeros; 0 or an errno. */
static int zero_write(int fd, off_t offset, off_t len)
{
    for (off_t done = 0; done < len;) {
        size_t n = len - done < (off_t)sizeof(zeros) ? (size_t)(len - done) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, offset + done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO; /* a regular file never takes nothing */
        done += w;
    }
    return 0;
}

/* A descriptor of the same file for direct writes without O_DSYNC, or -1 where there is none
 * (a file system without O_DIRECT, or a range not aligned for it). */
static int direct_twin(int fd, off_t offset, off_t len)
{
    if (offset % 4096 != 0 || len % 4096 != 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

int raft_alloc_zero_fill(int fd, off_t offset, off_t len)
{
    if (offset < 0 || len <= 0)
        return EINVAL;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return errno;
    if ((flags & O_ACCMODE) == O_RDONLY)
        return EBADF;
    /* The zeros go around the page cache, with one flush at the end: libraft opened the file
     * O_DSYNC, which would flush every chunk, and zeros in the page cache would only have to be
     * dropped again as raft_uv's direct writes land on them. Where direct I/O is not to be had,
     * the descriptor itself (without O_DIRECT, whatever it was opened with). */
    int twin = direct_twin(fd, offset, len);
    int rc;
    if (twin >= 0) {
        rc = zero_write(twin, offset, len);
        if (rc == 0 && fdatasync(twin) != 0)
            rc = errno;
        close(twin);
        return rc;
    }
    if ((flags & O_DIRECT) != 0 && fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0)
        return errno;
    rc = zero_write(fd, offset, len);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = errno;
    if (rc == 0)
        (void)posix_fadvise(fd, offset, len, POSIX_FADV_DONTNEED);
    if ((flags & O_DIRECT) != 0 && fcntl(fd, F_SETFL, flags) != 0 && rc == 0)
        rc = errno;
    return rc;
}

/* Interposes glibc's posix_fallocate for libraft (raft_alloc.h says why and what it promises). */
int posix_fallocate(int fd, off_t offset, off_t len)
{
    if (offset < 0 || len <= 0)
        return EINVAL;
    /* Reserve first: a disk without room says ENOSPC here, before anything is written. A file
     * system without fallocate gets its blocks from the zero fill alone. */
    if (fallocate(fd, 0, offset, len) != 0 && errno != EOPNOTSUPP)
        return errno;
    return raft_alloc_zero_fill(fd, offset, len);
}
