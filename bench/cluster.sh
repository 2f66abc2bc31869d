#!/usr/bin/env bash
# bench/cluster.sh: `make bench-cluster`. Starts three durable tallyd replicas on
# loopback (ports 7611-7613 for clients, 7621-7623 for Raft, data in a fresh directory under
# ${TMPDIR:-/tmp}), runs tally-bench against them, stops them with SIGTERM and removes the data.
#
# Usage: bash bench/cluster.sh BUILD_DIR                      the standard runs (below)
#        bash bench/cluster.sh BUILD_DIR [tally-bench options]  one run with those options
# TALLYD_EXTRA_ARGS: more options for every tallyd (e.g. "--clock client" for make replay).
#
# The standard runs (docs/BENCHMARKS.md, "tally-bench"), one after the other on one cluster,
# each on fresh programs:
#   1. closed loop, 4 clients, batches of 8,190, 1,000,000 members, 50 s: throughput;
#   2. closed loop, 1 client, single postings, 100,000 members, 10 s: a till's latency, per kind;
#   3. open loop, 16 clients, single postings at a fixed arrival rate (TALLY_BENCH_RATE, default
#      500 requests/s), 100,000 members, 20 s: latency without coordinated omission; then
#      tally-audit verify of every replica's ledger (the whole ledger, all three runs).
# JSON and SVG of each run are written to BUILD_DIR/bench-{closed,single,open}.{json,svg}.
#
# Bounded: each run is bounded in time by tally-bench (load, check, 60 s convergence); the
# replicas are killed when this script exits, however it exits. Each replica's log is kept in
# the data directory while it runs and its last lines are printed if a run fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # stop_processes

build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
for b in tallyd tally-bench tally; do
    if [ ! -x "$build/$b" ]; then
        echo "bench/cluster.sh: $build/$b is missing: run make first" >&2
        exit 2
    fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-bench-cluster.XXXXXX")
clients=127.0.0.1:7611,127.0.0.1:7612,127.0.0.1:7613
peers=(--peer 1,127.0.0.1:7621,127.0.0.1:7611 --peer 2,127.0.0.1:7622,127.0.0.1:7612
       --peer 3,127.0.0.1:7623,127.0.0.1:7613)
pids=()
cleanup() {
    local rc=$?
    stop_processes "${pids[@]}"
    if [ $rc -ne 0 ]; then
        for i in 1 2 3; do
            echo "--- last lines of replica $i's log ---" >&2
            tail -5 "$dir/r$i.log" >&2 || true
        done
    fi
    # The replicas' logs outlive the data (leader changes, stalls): BUILD_DIR/bench-replica-N.log.
    for i in 1 2 3; do cp "$dir/r$i.log" "$build/bench-replica-$i.log" 2>/dev/null || true; done
    rm -rf "$dir"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do
    # shellcheck disable=SC2086 # TALLYD_EXTRA_ARGS is a list of options
    "$build/tallyd" --id "$i" --dir "$dir/r$i" "${peers[@]}" ${TALLYD_EXTRA_ARGS:-} \
        2>"$dir/r$i.log" &
    pids+=($!)
done

# Wait (at most 30 s) for a leader.
for _ in $(seq 300); do
    if "$build/tally" --cluster "$clients" --json status 2>/dev/null | grep -q '"role":"leader"'; then
        break
    fi
    sleep 0.1
done

echo "== tally end-to-end benchmark: tally-bench (docs/BENCHMARKS.md) =="
echo "cluster: 3 tallyd replicas on loopback, durable, data under $dir"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h 'listening' "$dir"/r*.log || true
pidlist=$(IFS=,; echo "${pids[*]}")
dirs=$dir/r1,$dir/r2,$dir/r3
bench() {
    local name=$1
    shift
    echo
    echo "-- $name: tally-bench $*"
    "$build/tally-bench" --cluster "$clients" --pids "$pidlist" \
        --json-file "$build/bench-$name.json" --svg "$build/bench-$name.svg" "$@"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); JSON in $build/bench-$name.json"
}
if [ $# -gt 0 ]; then
    bench cluster --data-dirs "$dirs" "$@"
    exit 0
fi
bench closed --clients 4 --batch 8190 --members 1000000 --seconds 50
bench single --clients 1 --batch 1 --members 100000 --seconds 10
bench open --clients 16 --batch 1 --members 100000 --seconds 20 \
    --rate "${TALLY_BENCH_RATE:-500}" --data-dirs "$dirs"
