# cluster.sh: sourced by the script tests that need a real cluster (drill_kill.sh,
# tally_bench.sh): three tallyd processes on loopback with the cluster tests' timing (election
# timeout 300 ms, heartbeat 50 ms), on ports from the test's pid in a band of its own below the
# ephemeral range (tests/cluster/harness.c says why; the harness uses 20000-32000). Everything
# started on the test's directory is killed on exit, and the directory removed (unless
# TALLY_TEST_KEEP is set).
#
#   script_needs PROGRAM...     exit 77 (skip) unless each $BUILD/PROGRAM and python3 exist
#   script_cluster NAME BAND    DIR, BASE, CLUSTER, DIRS, PIDS; the exit trap
#   script_cluster_start [ARG...]
#                               start r1..r3 (ARGs: extra tallyd flags, e.g. --clock client) and
#                               wait (10 s at most) for a leader all three know
#   fail MESSAGE...             print it and the tails of the logs, exit 1

BUILD=${TALLY_BUILD:-build}

script_needs() {
    for p in "$@"; do
        if [ ! -x "$BUILD/$p" ]; then
            echo "skip: $BUILD/$p is not built"
            exit 77
        fi
    done
    if ! command -v python3 >/dev/null; then
        echo "skip: python3 is needed to read the JSON"
        exit 77
    fi
}

# Ours: the replicas started here, and any tallyd on this test's directory (one restarted by a
# tool under test is not our child).
script_ours() {
    echo "${PIDS[@]}"
    pgrep -f -- "--dir $DIR/r" 2>/dev/null
}

script_cleanup() {
    for p in $(script_ours); do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in $(script_ours); do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ -z "${TALLY_TEST_KEEP:-}" ]; then rm -rf "$DIR"; else echo "kept $DIR"; fi
}

script_cluster() {
    DIR=$(mktemp -d "/tmp/$1-XXXXXX")
    BASE=$(($2 + ($$ % 300) * 10))
    CLUSTER=127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))
    DIRS=$DIR/r1,$DIR/r2,$DIR/r3
    PIDS=()
    trap script_cleanup EXIT
}

fail() {
    echo "FAIL: $*"
    for f in "$DIR"/*.err "$DIR"/*.log "$DIR"/*/tallyd-drill.log; do
        [ -f "$f" ] && { echo "--- $f"; tail -8 "$f"; }
    done
    exit 1
}

script_cluster_start() {
    local tallyd i
    tallyd=$(cd "$(dirname "$BUILD/tallyd")" && pwd)/tallyd
    for i in 1 2 3; do
        "$tallyd" --id $i --dir "$DIR/r$i" --election-timeout 300 --heartbeat 50 "$@" \
            --peer 1,127.0.0.1:$((BASE + 11)),127.0.0.1:$((BASE + 1)) \
            --peer 2,127.0.0.1:$((BASE + 12)),127.0.0.1:$((BASE + 2)) \
            --peer 3,127.0.0.1:$((BASE + 13)),127.0.0.1:$((BASE + 3)) 2>"$DIR/r$i.log" &
        PIDS+=($!)
    done
    local st
    for i in $(seq 100); do
        st=$("$BUILD/tally" --cluster "$CLUSTER" --json status 2>/dev/null)
        case $st in *'"answered":3'*'"leader":"'*|*'"leader":"'*'"answered":3'*) return 0;; esac
        sleep 0.1
    done
    fail "the cluster did not start: $st"
}
