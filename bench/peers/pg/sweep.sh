#!/usr/bin/env bash
# sweep.sh: what `make bench-pg` runs: the PostgreSQL peer under the retail workload, batch
# sizes 1 / 100 / 1,000 postings per call x 1 / 4 / 16 client connections, then the till case
# (single postings from 64 clients), on one throw-away server (pg.sh), and one table at the end.
#
# Usage: bash bench/peers/pg/sweep.sh BUILD_DIR
# Environment: PG_SWEEP_MEMBERS (1000000), PG_SWEEP_RUNS (3), PG_SWEEP_SECONDS (10),
#              PG_SWEEP_BATCHES ("1 100 1000"), PG_SWEEP_CLIENTS ("1 4 16").
# Every configuration runs on the same database, one after the other (the ledger grows as it
# goes, as in tally-bench-engine's runs). JSON per configuration in BUILD_DIR/bench-pg/.
# Bounded: (configurations + 1) x runs x seconds, plus the setup (about 2 minutes at 1M).
set -euo pipefail

build=${1:-build}
bin=$build/tally-bench-pg
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$bin" ]; then
    echo "sweep.sh: $bin is missing: run make first" >&2
    exit 2
fi

if [ "${2:-}" != "--inside" ]; then
    model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    echo "== PostgreSQL peer sweep (docs/BENCHMARKS.md, \"The PostgreSQL peer\") =="
    echo "machine: $(nproc) cores ($model), $(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "server: $(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || echo unknown)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    exec bash "$here/pg.sh" bash "$0" "$build" --inside
fi

members=${PG_SWEEP_MEMBERS:-1000000}
runs=${PG_SWEEP_RUNS:-3}
seconds=${PG_SWEEP_SECONDS:-10}
batches=${PG_SWEEP_BATCHES:-"1 100 1000"}
clients_list=${PG_SWEEP_CLIENTS:-"1 4 16"}
out=$build/bench-pg
mkdir -p "$out"
rm -f "$out"/*.json

"$bin" --conninfo "$TALLY_PG_CONNINFO" --setup --members "$members" --runs 0

base=0
rows=()
run_one() { # run_one NAME BATCH CLIENTS
    base=$((base + 100))
    local load0 load1
    load0=$(cut -d' ' -f1 /proc/loadavg)
    echo
    "$bin" --conninfo "$TALLY_PG_CONNINFO" --members "$members" --batch "$2" --clients "$3" \
        --runs "$runs" --seconds "$seconds" --instance-base "$base" --json-file "$out/$1.json"
    load1=$(cut -d' ' -f1 /proc/loadavg)
    rows+=("$1 $2 $3 $load0 $load1")
}
for b in $batches; do
    for c in $clients_list; do
        run_one "batch$b-clients$c" "$b" "$c"
    done
done
run_one till 1 64

field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$out/$1.json"; }
echo
echo "PostgreSQL 15 peer, $members members, median of $runs runs of $seconds s, durable commits"
printf '%-8s %7s %7s %12s %9s %9s %10s %6s %11s\n' "" batch clients postings/s "p50 ms" "p99 ms" \
    "us/posting" "cores" "load"
best="" best_rate=0
for r in "${rows[@]}"; do
    set -- $r
    rate=$(field "$1" median_rate)
    p50=$(field "$1" batch_p50_ns)
    p99=$(field "$1" batch_p99_ns)
    us=$(field "$1" server_cpu_us_per_posting)
    pct=$(field "$1" server_cpu_pct)
    label=""; [ "$1" = till ] && label=till
    printf '%-8s %7s %7s %12s %9.2f %9.2f %10s %6.2f %5s-%-5s\n' "$label" "$2" "$3" "$rate" \
        "$(echo "$p50 / 1000000" | bc -l)" "$(echo "$p99 / 1000000" | bc -l)" "$us" \
        "$(echo "$pct / 100" | bc -l)" "$4" "$5"
    if [ "$1" != till ] && [ "$(echo "$rate > $best_rate" | bc)" = 1 ]; then
        best=$1 best_rate=$rate
    fi
done
echo "us/posting: CPU time of the server backends serving the clients per posting answered;"
echo "cores: their CPU time over the run's wall time (out of $(nproc))."
echo "best: $best ($best_rate postings/s); JSON in $out/"
cp "$out/$best.json" "$out/best.json"
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
