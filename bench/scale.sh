#!/usr/bin/env bash
# bench/scale.sh: the scale run (docs/BENCHMARKS.md, "Scale"): grow one 3-replica ledger to a
# target number of entries under tally-bench's closed-loop load, and record how the cost moves
# with the size: throughput and p99 as the ledger grows, the LMDB file size per entry, the
# replicas' memory (RSS) over the run, and at the end the restart time of a replica at that
# size (SIGKILL, restart, until it serves again at the leader's applied index).
#
# Usage: bash bench/scale.sh BUILD_DIR [TARGET_ENTRIES (default 50000000)]
# Environment: SCALE_DIR (parent of the data directory, default /tmp: ~400 bytes per entry per
#              replica, so 50M entries need ~60 GB), SCALE_MAX_SECONDS (3600: tally-bench's
#              bound), SCALE_SAMPLE_S (10), SCALE_MIN_FREE_GB (8: stop early below this),
#              SCALE_VERIFY (1: run tally-audit verify on one replica at the end, timed),
#              SCALE_MEMBERS (1000000), SCALE_EXPIRE_AT (300: the campaign expires then, s),
#              SCALE_PORT_BASE (7640: clients on 7641-7643, Raft on 7651-7653).
# Output in BUILD_DIR/scale/: samples.csv (one line per sample), bench.json and bench.svg
#   (tally-bench's report and timeline), scale.svg (the plots against ledger size), run.log.
#
# How it stops: when the leader reports TARGET entries it sends SIGINT to tally-bench, which ends
# the load, checks its work and reports (bench/tally_bench.c, "Stopping early"). Bounded: the
# load by SCALE_MAX_SECONDS, the restart by 600 s; the replicas are stopped however this exits.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # stop_processes

build=${1:-build}
target=${2:-50000000}
max_s=${SCALE_MAX_SECONDS:-3600}
every=${SCALE_SAMPLE_S:-10}
min_free_gb=${SCALE_MIN_FREE_GB:-8}
for b in tallyd tally-bench tally tally-audit; do
    [ -x "$build/$b" ] || { echo "bench/scale.sh: $build/$b is missing: run make first" >&2; exit 2; }
done
out=$build/scale
mkdir -p "$out"
rm -f "$out"/samples.csv "$out"/bench.json "$out"/bench.svg "$out"/scale.svg
dir=$(mktemp -d "${SCALE_DIR:-/tmp}/tally-scale.XXXXXX")
base=${SCALE_PORT_BASE:-7640} # clients on base+1..3, Raft on base+11..13
addr() { echo "127.0.0.1:$((base + $1))"; }
clients=$(addr 1),$(addr 2),$(addr 3)
peers=(--peer "1,$(addr 11),$(addr 1)" --peer "2,$(addr 12),$(addr 2)" --peer "3,$(addr 13),$(addr 3)")
declare -A pid
bench_pid=
cleanup() {
    local rc=$?
    set +e # best effort from here: a replica may be gone already
    [ -n "$bench_pid" ] && kill -KILL "$bench_pid" 2>/dev/null
    stop_processes "${pid[1]:-}" "${pid[2]:-}" "${pid[3]:-}"
    wait 2>/dev/null || true
    for i in 1 2 3; do cp "$dir/r$i.log" "$out/replica-$i.log" 2>/dev/null || true; done
    rm -rf "$dir"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start replica $1, its log appended
    "$build/tallyd" --id "$1" --dir "$dir/r$1" "${peers[@]}" 2>>"$dir/r$1.log" &
    pid[$1]=$!
}
field() { # field F of the replica at ADDRESS (field ADDRESS F) from `tally status --json` on stdin
    python3 -c 'import json,sys; d=json.load(sys.stdin); a=sys.argv[1]; f=sys.argv[2]
r=[x for x in d["replicas"] if x["address"]==a]
print(r[0][f] if r and not r[0]["error"] else "")' "$@"
}
status_json() { # the cluster's status; an empty one while no replica answers
    local o
    o=$("$build/tally" --cluster "$clients" status --json 2>/dev/null) || true
    if [ -n "$o" ]; then echo "$o"; else echo '{"replicas":[]}'; fi
}
leader_of() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("leader") or "")'; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || true; }

for i in 1 2 3; do start "$i"; done
for _ in $(seq 300); do
    [ -n "$(status_json | leader_of)" ] && break
    sleep 0.1
done

echo "== tally scale run (docs/BENCHMARKS.md, \"Scale\") =="
echo "machine: $(nproc) cores, $(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none); started $(date -u +%Y-%m-%dT%H:%M:%SZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "target: $target entries; data under $dir ($(df -h "$dir" | awk 'NR == 2 {print $4}') free)"

"$build/tally-bench" --cluster "$clients" --pids "${pid[1]},${pid[2]},${pid[3]}" \
    --clients 4 --batch 8190 --members "${SCALE_MEMBERS:-1000000}" --seconds "$max_s" \
    --expire-at "${SCALE_EXPIRE_AT:-300}" --quiet \
    --json-file "$out/bench.json" --svg "$out/bench.svg" >"$out/bench.txt" 2>&1 &
bench_pid=$!

echo "unix_s,t_s,entries,applied_index,leader,data_bytes_1,data_bytes_2,data_bytes_3,raft_bytes_1,rss_kib_1,rss_kib_2,rss_kib_3,anon_kib_1,anon_kib_2,anon_kib_3,free_kib" >"$out/samples.csv"
t0=$(date +%s.%N)
stopped=""
while kill -0 "$bench_pid" 2>/dev/null; do
    sleep "$every"
    js=$(status_json)
    leader=$(echo "$js" | leader_of)
    entries=""; applied=""
    if [ -n "$leader" ]; then
        entries=$(echo "$js" | field "$leader" entries)
        applied=$(echo "$js" | field "$leader" applied_index)
    fi
    t=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')
    free=$(df -k --output=avail "$dir" | tail -1 | tr -d ' ')
    line="$(date +%s.%N),$t,$entries,$applied,$leader"
    for i in 1 2 3; do line+=",$(stat -c %s "$dir/r$i/ledger/data.mdb" 2>/dev/null || echo)"; done
    line+=",$(du -sb "$dir/r1/raft" 2>/dev/null | cut -f1)"
    for i in 1 2 3; do line+=",$(kib "${pid[$i]}" VmRSS)"; done
    for i in 1 2 3; do line+=",$(kib "${pid[$i]}" RssAnon)"; done
    echo "$line,$free" >>"$out/samples.csv"
    printf '\r%6ss  %s entries  RSS %s MiB  free %s GiB   ' "${t%.*}" "${entries:-?}" \
        "$(( $(kib "${pid[1]}" VmRSS || echo 0) / 1024 ))" "$((free / 1048576))"
    if [ -z "$stopped" ] && { [ "${entries:-0}" -ge "$target" ] || [ "$free" -lt $((min_free_gb * 1048576)) ]; }; then
        [ "${entries:-0}" -ge "$target" ] && stopped="target" || stopped="disk"
        echo; echo "stopping the load ($stopped reached at ${t}s)"
        kill -INT "$bench_pid"
    fi
done
echo
set +e
wait "$bench_pid"
bench_rc=$?
set -e
bench_pid=
echo "tally-bench exit $bench_rc (0: done and checked); its report:"
sed 's/^/  /' "$out/bench.txt" | tail -40

# Restart of a replica at this size: a follower killed with SIGKILL (the recovery path: the
# engine folds the entries its member images had not yet written back), restarted, timed until
# it answers and has applied everything the leader had when it was killed.
js=$(status_json)
leader=$(echo "$js" | leader_of)
victim=""
for i in 1 2 3; do [ "$(addr $i)" != "$leader" ] && { victim=$i; break; }; done
want=$(echo "$js" | field "$leader" applied_index)
entries=$(echo "$js" | field "$leader" entries)
size=$(stat -c %s "$dir/r$victim/ledger/data.mdb")
kill -KILL "${pid[$victim]}"
wait "${pid[$victim]}" 2>/dev/null || true
r0=$(date +%s.%N)
start "$victim"
served=""; caught=""
for _ in $(seq 6000); do
    js=$(status_json)
    a=$(echo "$js" | field "$(addr $victim)" applied_index)
    now=$(date +%s.%N)
    if [ -n "$a" ] && [ -z "$served" ]; then served=$(awk -v a="$now" -v b="$r0" 'BEGIN {printf "%.2f", a - b}'); fi
    if [ -n "$a" ] && [ "$a" -ge "$want" ]; then caught=$(awk -v a="$now" -v b="$r0" 'BEGIN {printf "%.2f", a - b}'); break; fi
    sleep 0.1
done
echo "restart of replica $victim (SIGKILL) at $entries entries, data.mdb $size bytes:" \
    "answering after ${served:-?} s, at the leader's applied index $want after ${caught:-?} s"
grep -h 'recover\|fold\|open' "$dir/r$victim.log" | tail -3 | sed 's/^/  log: /' || true

verify=""
if [ "${SCALE_VERIFY:-1}" = 1 ]; then
    for i in 1 2 3; do [ "$i" != "$victim" ] && { vi=$i; break; }; done
    kill -TERM "${pid[$vi]}"; wait "${pid[$vi]}" 2>/dev/null || true; pid[$vi]=""
    v0=$(date +%s.%N)
    if "$build/tally-audit" verify "$dir/r$vi/ledger" >"$out/verify.txt" 2>&1; then v=ok; else v=FAILED; fi
    verify=$(awk -v a="$(date +%s.%N)" -v b="$v0" 'BEGIN {printf "%.1f", a - b}')
    echo "tally-audit verify of replica $vi: $v in $verify s"
    tail -3 "$out/verify.txt" | sed 's/^/  /'
fi

python3 "$(dirname "$0")/scale_report.py" "$out" "$target" "${served:-}" "${caught:-}" "$entries" "$size" \
    "${stopped:-time}"
[ "$bench_rc" = 0 ]
