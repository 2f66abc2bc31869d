/* raft_alloc.h: Raft log segments are allocated as written zeros, so that libraft 0.15's writes
 * into them run on the loop thread instead of a thread pool.
 *
 * Why
 * ---
 * raft_uv creates each open segment of its log (8 MiB) with posix_fallocate, then writes entries
 * into it with Linux AIO, O_DIRECT and RWF_NOWAIT, and falls back to running the write on
 * libuv's thread pool whenever the kernel answers EAGAIN (uv_writer.c). On ext4 (and XFS) a
 * fallocated range is *unwritten*: a direct write into it must convert the extent, which may
 * block, so every RWF_NOWAIT write there is refused with EAGAIN. So every Raft entry of every
 * replica went the slow way: a worker thread woken to submit it and wait for it, the loop woken
 * again to complete it (futex traffic in strace: one wake-up pair per entry), and an extent
 * conversion and journal commit per write (the kernel's `dio` workers). tallyd therefore defines
 * posix_fallocate itself: the executable's definition comes first in the dynamic symbol lookup,
 * so libraft's call lands here (nothing else in tallyd calls it). It reserves the range with
 * fallocate(2), as before (a full disk is still refused up front, with ENOSPC), then writes
 * zeros over it (direct I/O, one flush at the end), so the extents are written and raft_uv's
 * direct writes are plain overwrites that RWF_NOWAIT accepts. The zeros are written on the
 * thread raft_uv allocates from (its preparer runs in the thread pool, ahead of need), never on
 * the loop. Cost: a segment's bytes are written twice (once as zeros); measured in
 * docs/BENCHMARKS.md ("Raft log segments written before use").
 *
 * Contract
 * --------
 * posix_fallocate(fd, offset, len): as POSIX says (0 or an error number, errno untouched; the
 * file is at least offset + len long afterwards), plus: every byte of [offset, offset + len)
 * that was not inside the file before reads as zero and is backed by written blocks (no
 * unwritten extents). Bytes already inside the file are overwritten with zeros too: libraft only
 * ever allocates new, empty files, and a caller that wants old bytes kept must not use this
 * build. The zeros are durable when it returns (fdatasync). They are written through a second
 * descriptor of the same file opened O_DIRECT (via /proc/self/fd) when the range is 4 KiB
 * aligned and the file system allows it, else through the caller's descriptor (without
 * O_DIRECT for the time, its flags given back after) and then dropped from the page cache.
 *
 * Errors: EBADF (also: not open for writing), EINVAL (negative offset, len <= 0), EFBIG,
 * ENOSPC, EIO, EINTR as fallocate(2), pwrite(2) and fdatasync(2) give them.
 */
#ifndef TALLY_SERVER_RAFT_ALLOC_H
#define TALLY_SERVER_RAFT_ALLOC_H

#include <sys/types.h>

/* Zeros written per pwrite: one MiB, so that a segment of 8 MiB takes 8 writes and the buffer
 * stays a small static. */
#define RAFT_ALLOC_ZERO_CHUNK ((size_t)1 << 20)

/* The zero fill itself (what posix_fallocate does after reserving the range); 0 or an errno. */
int raft_alloc_zero_fill(int fd, off_t offset, off_t len);

#endif
