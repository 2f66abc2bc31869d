#!/usr/bin/env bash
# cli_cluster_at.sh: `tally --cluster ... --at TIME` on postings, against three real tallyd.
#
# With --clock client the postings are POST_ATs: a program, a member and an accrual at 1997
# times are stamped then (the CLI's JSON "time" and the member's history say so), and a pending
# accrual activates only once a later --at passes its window. Then the same cluster directories
# are wiped and the replicas started with the default wall clock: --at on a posting exits 2 with
# error CLOCK_MODE and applies nothing, and the same posting without --at is applied. An --at
# past 9999 exits 2 before anything is sent.
#
# Run: TALLY_BUILD=build bash tests/tools/cli_cluster_at.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

. "$(dirname "$0")/lib/cluster.sh"
script_needs tallyd tally
script_cluster tally-cli-at-test 11000

# field JSON PATH: one field of a JSON document (PATH: a.b.0.c).
field() {
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(str(v).lower() if isinstance(v, bool) else v)' "$1" "$2" 2>/dev/null
}

# expect WHAT GOT WANT
expect() {
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
}

T() { "$BUILD/tally" --cluster "$CLUSTER" --json "$@" 2>>"$DIR/cli.err"; }

script_cluster_start --clock client
out=$(T --at 1997-01-01 program create --program 1) || fail "program create: $out"
expect "program time" "$(field "$out" time)" 1997-01-01T00:00:00.000Z
out=$(T --at 1997-01-02 open --program 1 --member 42) || fail "open: $out"
out=$(T --at 1997-03-01T10:00Z accrue --program 1 --member 42 --points 500) || fail "accrue: $out"
expect "accrue time" "$(field "$out" time)" 1997-03-01T10:00:00.000Z
out=$(T --at 1997-03-02 accrue --program 1 --member 42 --points 70 --pending 7d) ||
    fail "pending accrue: $out"
expect "pending" "$(field "$out" account.pending)" 70
# An earlier --at: the ledger's time, never backwards.
out=$(T --at 1997-01-01 open --program 1 --member 45) || fail "open 45: $out"
expect "an earlier --at gets the ledger's time" "$(field "$out" time)" 1997-03-02T00:00:00.000Z
out=$(T --at 1997-03-08 open --program 1 --member 43) || fail "open 43: $out"
out=$(T account --program 1 --member 42)
expect "still pending on day 6" "$(field "$out" pending)" 70
out=$(T --at 1997-03-10 open --program 1 --member 44) || fail "open 44: $out"
out=$(T account --program 1 --member 42)
expect "activated after the window" "$(field "$out" pending)" 0
expect "available" "$(field "$out" available)" 570
out=$(T history --program 1 --member 42)
expect "activation stamped when due" "$(field "$out" entries.0.time)" 1997-03-09T00:00:00.000Z
out=$("$BUILD/tally" --cluster "$CLUSTER" --at 99999999999999999 accrue --program 1 --member 42 \
      --points 5 2>&1)
expect "--at past 9999 exits 2" "$?" 2

# The same flag against a wall-clock cluster.
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
wait
PIDS=()
rm -rf "$DIR"/r1 "$DIR"/r2 "$DIR"/r3
script_cluster_start
T program create --program 1 >/dev/null || fail "program create (wall)"
T open --program 1 --member 42 >/dev/null || fail "open (wall)"
out=$(T --at 2026-01-01 accrue --program 1 --member 42 --points 5 --id 777)
rc=$?
expect "--at on a wall-clock cluster exits" "$rc" 2
expect "its error" "$(field "$out" error)" CLOCK_MODE
out=$(T posting --id 777)
expect "nothing applied" "$?" 1
out=$(T accrue --program 1 --member 42 --points 5 --id 777) || fail "accrue without --at: $out"
expect "applied without --at" "$(field "$out" account.available)" 5
echo "ok: --at on a --clock client cluster stamps postings then; a wall-clock one refuses it"
