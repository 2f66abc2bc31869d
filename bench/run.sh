#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs: the engine benchmark, then the end-to-end cluster
# benchmark (bench/cluster.sh). The engine benchmark with the standard parameters of
# docs/BENCHMARKS.md (1,000,000 members, 8,190-posting batches, 5 runs of 2,000,000 postings,
# durable commits), with the machine it ran on, so that a pasted result says where it came from.
#
# Usage: bash bench/run.sh BUILD_DIR [extra tally-bench-engine options, e.g. --no-sync]
#
# Bounded: each run stops after 50 s of wall time (the output says so when it happens), so the
# engine benchmark, setup included, ends within about 5 minutes even on a slow engine (the
# cluster benchmark adds 4-5 minutes, bounded the same way: bench/cluster.sh). The JSON
# result is also written to BUILD_DIR/bench-engine.json.
set -euo pipefail

build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
bin="$build/tally-bench-engine"
if [ ! -x "$bin" ]; then
    echo "bench/run.sh: $bin is missing: run make first" >&2
    exit 2
fi

model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")
echo "== tally engine benchmark (docs/BENCHMARKS.md) =="
echo "machine: $(nproc) cores ($model), $mem, $os, kernel $(uname -r)"
echo "disk under /tmp: $(df -h /tmp | awk 'NR == 2 {print $1 ", " $4 " free"}')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'none (no commits yet)')"
echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo

"$bin" --members 1000000 --batch 8190 --postings 2000000 --runs 5 --run-seconds 50 \
    --json-file "$build/bench-engine.json" "$@"

echo
echo "JSON in $build/bench-engine.json"
echo
bash "$(dirname "$0")/cluster.sh" "$build"
echo
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
