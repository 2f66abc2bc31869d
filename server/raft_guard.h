/* raft_guard.h: defences against four defects of libraft 0.15 that sit between its I/O interface
 * and its core, installed by wrapping a struct raft_io's methods (the raft_uv one in tallyd, the
 * raft_fixture stub in the simulation). The first three were found by the deterministic
 * simulation (tests/sim/sim.c) and are reproduced there with the guard off (`sim --raw`); the
 * fourth by stopping tallyd under load.
 *
 * 1. AppendEntries from index 1 to a follower that has compacted its log. A follower whose log
 *    starts after a snapshot (offset > 0) and receives entries with prev_log_index 0 skips the
 *    log-matching check (there is no previous entry), finds no term for the first entries (they
 *    are inside its snapshot), takes them for new, and appends them at the end of its in-memory
 *    log: at the wrong indexes. libraft's debug build stops on an assertion
 *    (replicationAppend: `request->args.n_entries == n`); Debian's release build goes on with a
 *    corrupted log (seen: SIGSEGV). The guard rewrites such a message before libraft sees it:
 *    the entries at or below the follower's snapshot index are dropped (they are committed, so
 *    the same on both sides) and prev_log_index/prev_log_term become the snapshot's last index
 *    and the term the message gives it (or the snapshot's term when the message stops short of
 *    it). What remains is an ordinary AppendEntries, checked the ordinary way.
 *
 * 2. A send that fails synchronously while a follower answers an AppendEntries at once (it had
 *    the entries already, or rejects them): recv_append_entries.c frees the received entries
 *    before sending its answer and recv.c frees them again when the send returns an error: a
 *    double free. The guard makes sends never fail synchronously: a send the transport refuses
 *    is reported through its callback (as a lost message is) from raft_guard_flush, which the
 *    owner calls soon after, outside libraft (tallyd: its poll timer; the simulation: after each
 *    step).
 *
 * 3. A leader stuck sending a snapshot. A follower answers an InstallSnapshot older than its own
 *    snapshot with success and last_log_index = the snapshot's index; a leader whose match index
 *    for it is already that index sees no progress (progressMaybeUpdate) and never leaves its
 *    snapshot state for this follower: it sends the same snapshot every install-snapshot
 *    timeout, and the follower gets no more entries while that leader leads. The guard raises
 *    such an answer's last_log_index to the follower's own snapshot index (committed, so the
 *    same on every replica): the leader sees progress and goes back to probing.
 *
 * 4. raft_uv runs its close callback more than once. uvMaybeFireCloseCb (uv.c) runs the callback
 *    whenever the close paths it tracks are all done, and it is also called from close paths it
 *    does not track (an open segment's writer, a peer connection's stream): one of those that
 *    finishes after the callback ran runs it again. libraft's callback (ioCloseCb) then frees
 *    the raft's address and log a second time and calls raft_close's callback again; and an
 *    owner that released raft_uv in that callback (raft_uv_close, as raft/uv.h suggests) has
 *    libraft read the freed memory and call through it (seen: tallyd SIGSEGV after logging
 *    `stopped`, 3 of 15 stops of one replica under load). The guard passes the first close
 *    callback on and swallows the others; the owner must keep raft_uv, the transport and the
 *    guard until its loop has run dry (uv_run returned: no handle, no callback is left), and
 *    release them only then.
 *
 * Install after the raft_io is initialized and before raft_init; one guard per raft_io, at most
 * RAFT_GUARD_MAX in a process. Single-threaded, like libraft.
 */
#ifndef TALLY_SERVER_RAFT_GUARD_H
#define TALLY_SERVER_RAFT_GUARD_H

#include <raft.h>
#include <stdint.h>

#define RAFT_GUARD_MAX 8u
/* Refused sends kept until raft_guard_flush; beyond it the refusal is passed on as it is. */
#define RAFT_GUARD_FAILED_SENDS 64u

struct raft_guard_stats {
    uint64_t appends_rewritten; /* defect 1 met and defused */
    uint64_t sends_deferred;    /* defect 2 avoided */
    uint64_t snapshot_answers_raised; /* defect 3 */
    uint64_t closes_swallowed;  /* defect 4: close callbacks after the first */
};

/* Wrap io's start, send and close. Returns 0, or RAFT_TOOMANY when RAFT_GUARD_MAX guards exist. */
int raft_guard_install(struct raft_io *io);
/* Forget io's guard and give io its methods back: after raft_close completed and the loop ran
 * dry (defect 4), just before raft_uv_close. */
void raft_guard_remove(struct raft_io *io);
/* Run the callbacks of the sends refused since the last call. */
void raft_guard_flush(struct raft_io *io);
void raft_guard_stats(const struct raft_io *io, struct raft_guard_stats *out);

#endif
