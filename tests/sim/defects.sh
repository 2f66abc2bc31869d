#!/usr/bin/env bash
# defects.sh: the three libraft 0.15 defects server/raft_guard.h defends against, reproduced by the
# simulation with the guard off (--raw) and defused with it on. Part of make test.
#   seed 246: AppendEntries from index 1 to a follower whose log starts after a snapshot: the
#             follower appends the entries at the wrong indexes (SIGSEGV in Debian's build; the
#             assertion in replicationAppend in libraft's debug build);
#   seed 97: a refused send while a follower answers an AppendEntries: a double free;
#   seed 388: a leader stuck resending a snapshot older than the follower's own: that follower
#             gets nothing more (the run never converges).
# The seeds are tied to the simulation's code: if a change to tests/sim/sim.c makes a --raw run
# pass, find new ones (a loop over `sim --raw --seed N` until it fails) and update them here;
# `sim --seed N` (guard on) says which defect a seed meets, in its "defects defused" line.
# Usage: tests/sim/defects.sh SIM_BINARY
set -u
SIM=$1
# A run with the guard off dies without cleaning up: its ledgers go in a directory of our own.
TMPDIR=$(mktemp -d /tmp/tally-sim-defects-XXXXXX)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
fail=0
for seed in 246 97 388; do
    if { "$SIM" --raw --seed "$seed" >/dev/null 2>&1; } 2>/dev/null; then
        echo "defects.sh: sim --raw --seed $seed passed: it no longer reproduces its libraft defect" >&2
        fail=1
    fi
    if ! out=$("$SIM" --seed "$seed" 2>&1); then
        echo "defects.sh: sim --seed $seed fails with the guard on:" >&2
        echo "$out" | tail -n 5 >&2
        fail=1
    fi
done
[ $fail = 0 ] && echo "sim: libraft 0.15 defects reproduced without the guard (seeds 246, 97, 388) and defused with it"
exit $fail
