#!/usr/bin/env bash
# bench/suite.sh: the side-by-side suite that `make bench` runs (through bench/run.sh): engine
# apply, tally with 1 replica, tally with 3 replicas and PostgreSQL, measured one after the
# other in one invocation on this machine, with the same workload generator (bench/workload.c),
# the same member count and durable commits everywhere; then one table, also written as
# OUT/bench-suite.json and OUT/bench-suite.md (docs/BENCHMARKS.md, "The side-by-side suite").
#
# Usage: bash bench/suite.sh BUILD_DIR [extra tally-bench-engine options]
#
# In this order:
#   1. engine   tally-bench-engine in process: batches of 8,190, SUITE_ENGINE_RUNS runs of
#               SUITE_ENGINE_POSTINGS postings (durable commits), each run stopped after 50 s;
#   2. tally-1  one tallyd with no peers (a one-voter Raft cluster: every entry is still in the
#               fsynced Raft log and the fsynced ledger before it is acknowledged);
#   3. tally-3  three tallyd on loopback;
#               for each: peak = closed loop, each configuration of SUITE_TALLY_PEAKS
#               (CLIENTSxBATCH) in turn, the best one counts; till = closed loop, 64 clients,
#               one posting a request, each waiting for its answer (driven from
#               SUITE_TILL_THREADS threads); every run is a tally-bench
#               of SUITE_SECONDS on fresh programs (its own setup of SUITE_MEMBERS members, not
#               measured), single program (--campaign-share 0) and no balance reads
#               (--read-share 0), as the PostgreSQL peer's load; the last run of each cluster
#               also audits every replica's ledger (--data-dirs);
#   4. pg       a throw-away PostgreSQL 15 (bench/peers/pg/pg.sh): the setup of SUITE_MEMBERS
#               members, then each configuration of SUITE_PG_PEAKS, then the till (--till:
#               64 clients x 1 posting) twice, a thread per client and driven from
#               SUITE_TILL_THREADS threads (the better counts), each SUITE_PG_RUNS runs of
#               SUITE_PG_SECONDS (median).
#   5. the table (bench/suite_table.py): rows engine / tally-1 / tally-3 / PostgreSQL, the
#      peak and till columns, and the ratios tally-3 / PostgreSQL.
#
# Environment (defaults: the standard suite):
#   SUITE_MEMBERS (1000000)   SUITE_SECONDS (30)   SUITE_TALLY_PEAKS (4x8190: docs/BENCHMARKS.md
#   says why one)
#   SUITE_ENGINE_RUNS (3)     SUITE_ENGINE_POSTINGS (2000000)
#   SUITE_PG_PEAKS ("16x100 4x100")   SUITE_PG_RUNS (3)   SUITE_PG_SECONDS (10)
#   SUITE_TILL_THREADS (16): threads driving the till's 64 clients
#   SUITE_PORT_BASE (7700): tally-1 on BASE+1 (Raft BASE+11), tally-3 on BASE+2..4 (BASE+12..14)
#   (bench/cluster.sh uses 7611-7623, tools/cluster.sh 7401-7503)
#   SUITE_TALLYD_OPTS: extra tallyd options (the script test shortens the election timeout)
#   SUITE_RUN_LIMIT (420): seconds each tally-bench run may take, setup and check included
#   SUITE_OUT (BUILD_DIR): where bench-suite.{json,md} and bench-suite/ (each run's JSON, SVG
#   and the replicas' logs) go. tally-3's best peak run is also copied to OUT/bench-closed.svg
#   and its till to OUT/bench-till.svg.
#
# Bounded: every run is bounded in time (the engine's --run-seconds and a `timeout`, tally-bench
# under `timeout SUITE_RUN_LIMIT`, tally-bench-pg by its runs x seconds and `timeout`); the
# standard suite takes about 15 minutes on the development machine. Every tallyd and the PostgreSQL
# server are started here and stopped however the script ends (trap), and their data (a fresh
# ${TMPDIR:-/tmp}/tally-suite.* and pg.sh's /tmp/tally-pg.*) removed. A run that fails is
# marked FAILED in the table and the script then exits 1; the other runs still run.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # stop_processes

build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
here=$(cd "$(dirname "$0")" && pwd)
members=${SUITE_MEMBERS:-1000000}
seconds=${SUITE_SECONDS:-30}
tally_peaks=${SUITE_TALLY_PEAKS:-4x8190}
engine_runs=${SUITE_ENGINE_RUNS:-3}
engine_postings=${SUITE_ENGINE_POSTINGS:-2000000}
pg_peaks=${SUITE_PG_PEAKS:-"16x100 4x100"}
pg_runs=${SUITE_PG_RUNS:-3}
pg_seconds=${SUITE_PG_SECONDS:-10}
port_base=${SUITE_PORT_BASE:-7700}
run_limit=${SUITE_RUN_LIMIT:-420}
out=${SUITE_OUT:-$build}
runs=$out/bench-suite
# The till: single postings from this many clients, each waiting for its answer (tally-bench-pg
# --till is the same: 64 clients, batches of 1).
TILL_CLIENTS=64
# ... driven from this many threads (tally-bench and tally-bench-pg --threads), so that 64 client
# threads do not crowd the servers off this machine's cores (docs/BENCHMARKS.md, "Driving the
# till's 64 clients from fewer threads"); PostgreSQL also runs its till with a thread per client,
# and the better of its two counts.
till_threads=${SUITE_TILL_THREADS:-16}

load1() { cut -d' ' -f1 /proc/loadavg; }
# One line per run in runs.tsv: name, system, clients, batch, exit status, load before, after.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$runs/runs.tsv"; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL, inside pg.sh (which started the server and loads the schema; it stops the server
# and removes its directory when this returns).
# ---------------------------------------------------------------------------------------------
if [ "${1:-}" = "--pg-inside" ]; then
    bin=$build/tally-bench-pg
    echo "PostgreSQL: setup of $members members (not measured)"
    l0=$(load1)
    status=0
    timeout -k 10 900 "$bin" --conninfo "$TALLY_PG_CONNINFO" --setup --members "$members" \
        --runs 0 || status=$?
    record pg-setup pg 0 0 "$status" "$l0" "$(load1)"
    [ "$status" = 0 ] || exit "$status"
    base=0
    pg_run() { # pg_run NAME CLIENTS BATCH [--till]
        local name=$1 c=$2 b=$3 l0 st=0
        shift 3
        base=$((base + 100))
        l0=$(load1)
        echo
        echo "-- PostgreSQL $name: tally-bench-pg --clients $c --batch $b," \
            "$pg_runs runs of $pg_seconds s"
        timeout -k 10 $((pg_runs * pg_seconds + 300)) "$bin" --conninfo "$TALLY_PG_CONNINFO" \
            --members "$members" --clients "$c" --batch "$b" --runs "$pg_runs" \
            --seconds "$pg_seconds" --instance-base "$base" --json-file "$runs/$name.json" "$@" ||
            st=$?
        record "$name" pg "$c" "$b" "$st" "$l0" "$(load1)"
    }
    for cfg in $pg_peaks; do
        pg_run "pg-peak-$cfg" "${cfg%x*}" "${cfg#*x}"
    done
    pg_run pg-till "$TILL_CLIENTS" 1 --till
    pg_run pg-till-driven "$TILL_CLIENTS" 1 --till --threads "$till_threads"
    exit 0
fi

for b in tallyd tally tally-bench tally-bench-engine tally-bench-pg; do
    if [ ! -x "$build/$b" ]; then
        echo "bench/suite.sh: $build/$b is missing: run make first" >&2
        exit 2
    fi
done
if ! command -v python3 >/dev/null; then
    echo "bench/suite.sh: python3 is needed for the table (apt-get install python3)" >&2
    exit 2
fi
for cfg in $tally_peaks $pg_peaks; do
    case $cfg in
        [0-9]*x[0-9]*) ;;
        *) echo "bench/suite.sh: a configuration is CLIENTSxBATCH, not '$cfg'" >&2; exit 2;;
    esac
done

mkdir -p "$runs"
rm -f "$runs"/*.json "$runs"/*.svg "$runs"/*.log "$runs/runs.tsv"
dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-suite.XXXXXX")
pids=()
pg_pid=""
child=""
cluster_name=""
# bounded LIMIT COMMAND...: COMMAND under `timeout LIMIT`, in the background, so that a signal to
# this script is handled at once (bash runs a trap only after a foreground command returns).
bounded() {
    local limit=$1 st=0
    shift
    timeout -k 10 "$limit" "$@" &
    child=$!
    wait "$child" || st=$?
    child=""
    return "$st"
}
stop_cluster() {
    stop_processes "${pids[@]}"
    pids=()
    # The replicas' logs outlive their data (leader changes, stalls).
    if [ -n "$cluster_name" ]; then
        for log in "$dir/$cluster_name"/r*.log; do
            [ -f "$log" ] && cp "$log" "$runs/$cluster_name-$(basename "$log")"
        done
        rm -rf "${dir:?}/$cluster_name"
    fi
    cluster_name=""
}
cleanup() {
    local rc=$?
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true # timeout passes it on to the benchmark
        wait "$child" 2>/dev/null || true
    fi
    stop_cluster
    if [ -n "$pg_pid" ]; then
        # pg.sh runs in a session of its own: its process group is it, the driver and psql;
        # pg.sh's own trap stops the server and removes its directory.
        kill -TERM -- "-$pg_pid" 2>/dev/null || true
        wait "$pg_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== tally side-by-side suite (docs/BENCHMARKS.md, \"The side-by-side suite\") =="
echo "$members members everywhere, durable commits everywhere; tally runs of $seconds s," \
    "PostgreSQL $pg_runs x $pg_seconds s"
echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
date -u +%Y-%m-%dT%H:%M:%SZ >"$runs/started"
# The memory state at the start: on a VM whose memory is fresh (never touched, or handed back to
# the host), every new page of the page cache is slow to come by, and every row runs slower
# (docs/BENCHMARKS.md, "A freshly booted VM"). The table prints it.
grep -E '^(MemFree|Cached):' /proc/meminfo >"$runs/meminfo" || true

# ---------------------------------------------------------------------------------------------
# 1. Engine apply, in process.
# ---------------------------------------------------------------------------------------------
echo
echo "-- engine: tally-bench-engine --members $members --batch 8190" \
    "--postings $engine_postings --runs $engine_runs $*"
mkdir -p "$dir/engine"
l0=$(load1)
st=0
bounded $((engine_runs * 50 + 600)) "$build/tally-bench-engine" --members "$members" \
    --batch 8190 --postings "$engine_postings" --runs "$engine_runs" --run-seconds 50 \
    --dir "$dir/engine" --json-file "$runs/engine.json" "$@" || st=$?
record engine engine 1 8190 "$st" "$l0" "$(load1)"
rm -rf "$dir/engine"
printf '%s\n' "$@" >"$runs/engine-options"

# ---------------------------------------------------------------------------------------------
# 2-3. tally, 1 and 3 replicas.
# ---------------------------------------------------------------------------------------------
# start_cluster NAME N: N tallyd with data under $dir/NAME; sets $addrs, $dirs, pids.
start_cluster() {
    local name=$1 n=$2 first i tallyd_opts=() peers=() st=""
    cluster_name=$name
    mkdir -p "$dir/$name"
    read -r -a tallyd_opts <<<"${SUITE_TALLYD_OPTS:-}"
    if [ "$n" = 1 ]; then first=1; else first=2; fi
    addrs="" dirs=""
    for i in $(seq 1 "$n"); do
        local cp=$((port_base + first + i - 1)) rp=$((port_base + 10 + first + i - 1))
        peers+=(--peer "$i,127.0.0.1:$rp,127.0.0.1:$cp")
        addrs+="${addrs:+,}127.0.0.1:$cp"
        dirs+="${dirs:+,}$dir/$name/r$i"
    done
    for i in $(seq 1 "$n"); do
        if [ "$n" = 1 ]; then
            # No --peer: a one-voter cluster (tallyd --help).
            "$build/tallyd" --id 1 --dir "$dir/$name/r1" --listen "127.0.0.1:$((port_base + 1))" \
                --raft "127.0.0.1:$((port_base + 11))" "${tallyd_opts[@]}" \
                2>"$dir/$name/r1.log" &
        else
            "$build/tallyd" --id "$i" --dir "$dir/$name/r$i" "${peers[@]}" "${tallyd_opts[@]}" \
                2>"$dir/$name/r$i.log" &
        fi
        pids+=($!)
    done
    # A leader that every replica knows, within 30 s; a replica that exits (a port taken, a
    # directory it cannot use) ends the wait at once.
    for _ in $(seq 300); do
        for i in "${pids[@]}"; do
            if ! kill -0 "$i" 2>/dev/null; then
                echo "bench/suite.sh: a tallyd of $name exited; the logs:" >&2
                tail -n 3 "$dir/$name"/r*.log >&2
                return 1
            fi
        done
        st=$("$build/tally" --cluster "$addrs" --deadline 1s --json status 2>/dev/null || true)
        case $st in *'"answered":'"$n"*'"leader":"'*|*'"leader":"'*'"answered":'"$n"*) return 0;; esac
        sleep 0.1
    done
    echo "bench/suite.sh: cluster $name did not elect a leader in 30 s: $st" >&2
    return 1
}

# tally_run CLUSTER NAME CLIENTS BATCH [tally-bench options]
tally_run() {
    local cluster=$1 name=$2 c=$3 b=$4 l0 st=0
    shift 4
    l0=$(load1)
    echo
    echo "-- $cluster $name: tally-bench --clients $c --batch $b --members $members" \
        "--seconds $seconds"
    bounded "$run_limit" "$build/tally-bench" --cluster "$addrs" \
        --pids "$(IFS=,; echo "${pids[*]}")" --members "$members" --clients "$c" --batch "$b" \
        --seconds "$seconds" --read-share 0 --campaign-share 0 --quiet \
        --json-file "$runs/$cluster-$name.json" --svg "$runs/$cluster-$name.svg" "$@" || st=$?
    [ "$st" = 0 ] || echo "tally-bench exit $st" >&2
    record "$cluster-$name" "$cluster" "$c" "$b" "$st" "$l0" "$(load1)"
}

tally_cluster() { # tally_cluster NAME REPLICAS
    local cfg
    if ! start_cluster "$1" "$2"; then
        record "$1-start" "$1" 0 0 1 "$(load1)" "$(load1)"
        stop_cluster
        return 0
    fi
    echo
    echo "== $1: $2 durable tallyd on loopback ($addrs), data under $dir/$1 =="
    for cfg in $tally_peaks; do
        tally_run "$1" "peak-$cfg" "${cfg%x*}" "${cfg#*x}"
    done
    tally_run "$1" till "$TILL_CLIENTS" 1 --threads "$till_threads" --data-dirs "$dirs"
    stop_cluster
}
tally_cluster tally1 1
tally_cluster tally3 3

# ---------------------------------------------------------------------------------------------
# 4. PostgreSQL (pg.sh exits 77 when it cannot run here: the rows say so).
# ---------------------------------------------------------------------------------------------
echo
pg_version=$(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || echo 'not installed')
echo "== PostgreSQL 15 peer (bench/peers/pg): $pg_version =="
st=0
SUITE_MEMBERS=$members SUITE_PG_PEAKS=$pg_peaks SUITE_PG_RUNS=$pg_runs \
    SUITE_PG_SECONDS=$pg_seconds SUITE_TILL_THREADS=$till_threads SUITE_OUT=$out \
    setsid bash "$here/peers/pg/pg.sh" bash "$0" "$build" --pg-inside &
pg_pid=$!
wait "$pg_pid" || st=$?
pg_pid=""
[ "$st" = 0 ] || record pg-server pg 0 0 "$st" "$(load1)" "$(load1)"

# ---------------------------------------------------------------------------------------------
# 5. The table.
# ---------------------------------------------------------------------------------------------
date -u +%Y-%m-%dT%H:%M:%SZ >"$runs/finished"
# The plots of tally-3's best peak run and its till, where make bench always put them.
best=$(python3 "$here/suite_table.py" --best "$runs" tally3 || true)
if [ -n "$best" ]; then cp "$runs/tally3-$best.svg" "$out/bench-closed.svg" || true; fi
cp "$runs/tally3-till.svg" "$out/bench-till.svg" 2>/dev/null || true
echo
python3 "$here/suite_table.py" "$runs" "$out/bench-suite.json" "$out/bench-suite.md"
