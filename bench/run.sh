#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs: the machine it ran on (so that a pasted result says where
# it came from), then the side-by-side suite, bench/suite.sh: engine apply in process, tally with
# 1 replica, tally with 3 replicas and PostgreSQL, measured one after the other with the same
# workload, member count (1,000,000) and durability, and one table at the end (also in
# BUILD_DIR/bench-suite.{json,md}). docs/BENCHMARKS.md, "The side-by-side suite", says what
# each row measures.
#
# Usage: bash bench/run.sh BUILD_DIR [extra tally-bench-engine options, e.g. --no-sync]
#
# Bounded: about 15 minutes on the development machine, every run bounded in time
# (bench/suite.sh). The earlier end-to-end runs of make bench (closed loop, one till, open
# loop on three replicas) are `make bench-cluster` (bench/cluster.sh).
set -euo pipefail

build=${1:-build}
if [ $# -gt 0 ]; then shift; fi

model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")
echo "== tally benchmarks (docs/BENCHMARKS.md) =="
echo "machine: $(nproc) cores ($model), $mem, $os, kernel $(uname -r)"
echo "disk under /tmp: $(df -h /tmp | awk 'NR == 2 {print $1 ", " $4 " free"}')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'none (no commits yet)')"
echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo

status=0
bash "$(dirname "$0")/suite.sh" "$build" "$@" || status=$?
echo
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
exit $status
