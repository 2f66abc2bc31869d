#!/usr/bin/env bash
# bench/cluster.sh: the end-to-end part of `make bench`. Starts three durable tallyd replicas on
# loopback (ports 7611-7613 for clients, 7621-7623 for Raft, data in a fresh directory under
# /tmp), runs tally-bench-cluster against them, stops them with SIGTERM and removes the data.
#
# Usage: bash bench/cluster.sh BUILD_DIR [tally-bench-cluster options, e.g. --clients 8]
#
# Bounded: the benchmark's phases are bounded in time (setup by the member count, 5 runs of
# 10 s, 10 s of latency, at most 60 s to converge); the replicas are killed when this script
# exits, however it exits. Each replica's log is kept in the data directory while it runs and
# its last lines are printed if the benchmark fails.
set -euo pipefail

build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
for b in tallyd tally-bench-cluster tally; do
    if [ ! -x "$build/$b" ]; then
        echo "bench/cluster.sh: $build/$b is missing: run make first" >&2
        exit 2
    fi
done

dir=$(mktemp -d /tmp/tally-bench-cluster.XXXXXX)
clients=127.0.0.1:7611,127.0.0.1:7612,127.0.0.1:7613
peers=(--peer 1,127.0.0.1:7621,127.0.0.1:7611 --peer 2,127.0.0.1:7622,127.0.0.1:7612
       --peer 3,127.0.0.1:7623,127.0.0.1:7613)
pids=()
cleanup() {
    local rc=$?
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "${pids[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    if [ $rc -ne 0 ]; then
        for i in 1 2 3; do
            echo "--- last lines of replica $i's log ---" >&2
            tail -5 "$dir/r$i.log" >&2 || true
        done
    fi
    rm -rf "$dir"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do
    "$build/tallyd" --id "$i" --dir "$dir/r$i" "${peers[@]}" 2>"$dir/r$i.log" &
    pids+=($!)
done

# Wait (at most 30 s) for a leader.
for _ in $(seq 300); do
    if "$build/tally" --cluster "$clients" status 2>/dev/null | grep -qi leader; then
        break
    fi
    sleep 0.1
done

echo "== tally end-to-end benchmark (docs/BENCHMARKS.md) =="
echo "cluster: 3 tallyd replicas on loopback, durable, data under $dir"
grep -h 'listening' "$dir"/r*.log || true
"$build/tally-bench-cluster" --cluster "$clients" --pids "$(IFS=,; echo "${pids[*]}")" --json-file "$build/bench-cluster.json" "$@"
echo "JSON in $build/bench-cluster.json"
