/* raft_aio.h: libraft 0.15's AIO contexts are destroyed on a helper thread, not on the loop.
 *
 * Why
 * ---
 * raft_uv writes each open segment of its log through a Linux AIO context of its own
 * (uv_writer.c: io_setup when the segment opens, io_destroy when it is finalized). io_destroy(2)
 * does not return until the kernel has torn the context down, which waits for an RCU grace
 * period: 25-47 ms on this machine (`perf trace --duration 3` of a replica), on the loop thread,
 * which meanwhile neither takes part in Raft nor answers clients. A segment is 8 MiB, so at the
 * peak (~13 MB/s of log) each replica stopped for that long 1.6 times a second, and in the till
 * every ~4 s (docs/BENCHMARKS.md, "The loop's 40 ms stops"). libraft calls io_destroy through
 * glibc's syscall(2), and nothing it does after the call depends on the context being gone
 * (it has finished or cancelled every write of that context first, and ignores the result). So
 * tallyd defines `syscall` itself (the executable's definition comes first in the dynamic symbol
 * lookup, as for posix_fallocate in raft_alloc.h): io_destroy is handed to one helper thread,
 * every other system call goes to glibc's syscall unchanged.
 *
 * Contract
 * --------
 * syscall(SYS_io_destroy, ctx): returns 0 at once; the context is destroyed by the helper thread
 *   soon after (in the order handed over). When the helper cannot be started or its queue
 *   (RAFT_AIO_QUEUE contexts) is full, or after raft_aio_drain, the context is destroyed before
 *   the call returns and its result returned, as glibc's would be (-1 and errno).
 *   A context handed over must not be used again by the caller (as after a real io_destroy).
 * syscall(n, ...) for every other n: glibc's syscall(n, ...), result and errno as it gives them.
 * raft_aio_drain(): destroys every context still queued, then stops the helper; from then on
 *   io_destroy is synchronous. Called by tallyd as it exits (after the loop has closed), so
 *   nothing is left to the process's exit. Safe to call more than once, and when nothing was
 *   ever handed over.
 * raft_aio_handed_over(): how many io_destroy calls went to the helper so far (for the tests and
 *   nothing else).
 */
#ifndef TALLY_SERVER_RAFT_AIO_H
#define TALLY_SERVER_RAFT_AIO_H

#include <stdint.h>

/* Contexts waiting for the helper at most; a raft_uv has one open segment and one being
 * finalized at a time, so more than a few means the helper is stuck. */
#define RAFT_AIO_QUEUE 64u

void raft_aio_drain(void);
uint64_t raft_aio_handed_over(void);

#endif
