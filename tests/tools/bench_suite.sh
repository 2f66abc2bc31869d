#!/usr/bin/env bash
# bench_suite.sh: bench/suite.sh (what make bench runs) end to end in a tiny configuration:
# 2,000 members, runs of 2 s, one peak configuration each (two for tally, so that the best of
# several is exercised), a real one-voter and a real three-voter tally cluster and a real,
# throw-away PostgreSQL. Then:
#   - the text table, OUT/bench-suite.json and OUT/bench-suite.md are there, with the four rows;
#   - every rate is nonzero, latencies are ordered (p50 <= p99), every run's exit status is 0;
#   - each row's figures are those of its runs' own JSON (the best peak configuration of tally
#     is the faster of the two runs), and the ratios are computed from the rows;
#   - the Markdown carries the same figures, the plots are written, and nothing is left
#     running or in the suite's temporary directory (TMPDIR).
# Then the failure path: a suite whose clusters cannot start (their ports taken) still measures
# the others, prints a table, marks the rows FAILED, computes no ratio from them and exits
# nonzero. Last, a suite stopped by SIGTERM in the middle of a run ends within seconds and
# leaves no tallyd, tally-bench or data behind.
#
# Ports from this shell's pid in 11000-13990 (tally_bench.sh uses 17000-19990, drill_kill.sh
# 14000-16990, the cluster harness 20000-32000).
#
# Run: TALLY_BUILD=build bash tests/tools/bench_suite.sh   (exit 0 pass, 1 fail, 77 skip:
# PostgreSQL cannot run here)
set -u

BUILD=${TALLY_BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
SUITE=$here/../../bench/suite.sh
for p in tallyd tally tally-bench tally-bench-engine tally-bench-pg; do
    if [ ! -x "$BUILD/$p" ]; then
        echo "skip: $BUILD/$p is not built"
        exit 77
    fi
done
if ! command -v python3 >/dev/null || [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    echo "skip: python3 and PostgreSQL 15 are needed"
    exit 77
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "skip: root without a postgres user: PostgreSQL cannot run here"
    exit 77
fi

DIR=$(mktemp -d /tmp/tally-suite-test-XXXXXX)
BASE=$((11000 + ($$ % 300) * 10))
holder=""
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$DIR/suite.out" ] && tail -30 "$DIR/suite.out"
    exit 1
}

tiny() { # tiny OUT: the suite in its tiny configuration, output in OUT
    SUITE_MEMBERS=2000 SUITE_SECONDS=2 SUITE_TALLY_PEAKS="2x500 4x100" \
        SUITE_ENGINE_POSTINGS=20000 SUITE_ENGINE_RUNS=1 SUITE_PG_PEAKS="2x100" SUITE_PG_RUNS=1 \
        SUITE_PG_SECONDS=2 SUITE_PORT_BASE=$BASE SUITE_RUN_LIMIT=60 SUITE_OUT=$1 \
        SUITE_TALLYD_OPTS="--election-timeout 300 --heartbeat 50" \
        timeout -k 5 120 bash "$SUITE" "$BUILD"
}

# The suite's data directory goes under $TMPDIR: it must be empty after each run.
mkdir "$DIR/tmp"
export TMPDIR=$DIR/tmp
ours() { pgrep -f -- "--dir $DIR/tmp/"; }

# 1. The suite, every run succeeding.
tiny "$DIR/ok" >"$DIR/suite.out" 2>&1
rc=$?
[ $rc = 0 ] || fail "suite exit $rc"
for f in bench-suite.json bench-suite.md bench-closed.svg bench-till.svg; do
    [ -s "$DIR/ok/$f" ] || fail "no $f"
done
grep -q '^tally-3 ' "$DIR/suite.out" || fail "no tally-3 row in the printed table"
grep -q 'peak ratio tally-3 / PostgreSQL: [0-9.]*x' "$DIR/suite.out" || fail "no peak ratio printed"
grep -q 'till ratio tally-3 / PostgreSQL: [0-9.]*x' "$DIR/suite.out" || fail "no till ratio printed"
[ -z "$(ours)" ] || fail "a tallyd of the suite still runs"
[ -z "$(ls -A "$DIR/tmp")" ] || fail "left behind: $(ls -A "$DIR/tmp")"

python3 - "$DIR/ok" <<'PY' || fail "the table's figures"
import json, os, re, sys
out = sys.argv[1]
runs = os.path.join(out, "bench-suite")
doc = json.load(open(os.path.join(out, "bench-suite.json")))
md = open(os.path.join(out, "bench-suite.md")).read()
def need(ok, msg):
    if not ok:
        print(json.dumps(doc, indent=1)[:3000])
        sys.exit("not so: " + msg)
def run(name):
    return json.load(open(os.path.join(runs, name + ".json")))
rows = {r["system"]: r for r in doc["rows"]}
need([r["system"] for r in doc["rows"]] == ["engine", "tally1", "tally3", "pg"], "four rows")
need(doc["complete"] and doc["failed_runs"] == [], "complete, no failed run")
mem = doc["memory_at_start_gib"]
need(isinstance(mem["free"], float) and isinstance(mem["page_cache"], float) and
     0 < mem["free"] <= doc["machine"]["memory_gib"] + 1, "the memory state at the start")
need("memory at the start: %s GiB free" % mem["free"] in md, "the memory state in the Markdown")
for s, r in rows.items():
    cols = ["peak"] + ([] if s == "engine" else ["till"])
    for c in cols:
        f = r[c]
        need(f is not None, "%s %s measured" % (s, c))
        need(f["postings_per_s"] > 0, "%s %s: a nonzero rate" % (s, c))
        need(0 < f["p50_ms"] <= f["p99_ms"], "%s %s: 0 < p50 <= p99" % (s, c))
        need(f["cores"] is not None and f["cores"] > 0, "%s %s: CPU measured" % (s, c))
        need(f["members"] == 2000, "%s %s: the same member count" % (s, c))
need(rows["engine"]["till"] is None, "no till for the engine")
# Each row is its runs' own figures.
e = run("engine")
need(rows["engine"]["peak"]["postings_per_s"] == e["median_postings_per_s"], "engine rate")
for s in ("tally1", "tally3"):
    a, b = run(s + "-peak-2x500"), run(s + "-peak-4x100")
    ra, rb = a["load"]["postings_per_s"], b["load"]["postings_per_s"]
    best, cfg = (a, "2x500") if ra >= rb else (b, "4x100")
    p = rows[s]["peak"]
    need(p["config"] == cfg and p["postings_per_s"] == max(ra, rb), s + ": the best peak counts")
    need(p["p99_ms"] == best["latency"]["batch"]["p99_ms"], s + ": peak p99 of that run")
    need(sorted(x["config"] for x in rows[s]["tried"]) == ["2x500", "4x100"], s + ": both tried")
    t = run(s + "-till")
    need(t["config"]["clients"] == 64 and t["config"]["batch"] == 1, s + ": till = 64 x 1")
    need(t["config"]["threads"] == 16, s + ": the till's clients driven from 16 threads")
    need(t["config"]["read_share"] == 0 and t["config"]["campaign_share"] == 0, "PG's workload")
    need(t["check"]["ok"] and t["check"]["audit_ok"], s + ": till checked and audited")
    need(rows[s]["till"]["postings_per_s"] == t["load"]["postings_per_s"], s + ": till rate")
    need(rows[s]["till"]["p99_ms"] == t["latency"]["writes"]["p99_ms"], s + ": till p99")
need(len(run("tally3-till")["replica_cpu_s"]) == 3 and
     len(run("tally1-till")["replica_cpu_s"]) == 1, "CPU of every replica")
pg, pt, pd = run("pg-peak-2x100"), run("pg-till"), run("pg-till-driven")
need(rows["pg"]["peak"]["postings_per_s"] == pg["median_rate"], "PostgreSQL peak rate")
need(pt["clients"] == 64 and pt["batch"] == 1 and pt["threads"] == 64, "PostgreSQL till = 64 x 1")
need(pd["clients"] == 64 and pd["batch"] == 1 and pd["threads"] == 16, "PostgreSQL driven till")
pb = pt if pt["median_rate"] >= pd["median_rate"] else pd  # PostgreSQL's better till counts
need(rows["pg"]["till"]["postings_per_s"] == pb["median_rate"], "PostgreSQL till: the better")
need(abs(rows["pg"]["till"]["p99_ms"] - pb["batch_p99_ns"] / 1e6) < 1e-9, "PostgreSQL till p99")
# The ratios come from the rows.
ra = doc["ratios"]
t3, p = rows["tally3"], rows["pg"]
need(abs(ra["peak"] - t3["peak"]["postings_per_s"] / p["peak"]["postings_per_s"]) < 1e-9, "peak")
need(abs(ra["till"] - t3["till"]["postings_per_s"] / p["till"]["postings_per_s"]) < 1e-9, "till")
need(ra["till_p99_lower"] == (t3["till"]["p99_ms"] < p["till"]["p99_ms"]), "till p99 compared")
need(ra["meets_bar"] == (ra["peak"] >= 5 and ra["till"] >= 10 and ra["till_p99_lower"]), "bar")
# The Markdown has the same figures.
need(md.count("\n| **") == 4, "four Markdown rows")
need("{:,.0f}".format(t3["peak"]["postings_per_s"]) in md, "tally-3's peak in the Markdown")
need(re.search(r"peak ratio tally-3 / PostgreSQL: %.1fx" % ra["peak"], md), "ratio in Markdown")
PY

# 2. A suite whose clusters cannot start: tally-1's port and tally-3's first are taken.
python3 -c '
import socket, sys, time
ss = []
for p in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(p))); s.listen(1); ss.append(s)
time.sleep(300)' $((BASE + 1)) $((BASE + 2)) &
holder=$!
sleep 0.3
SUITE_TALLY_PEAKS="2x500" tiny "$DIR/bad" >"$DIR/suite.out" 2>&1
rc=$?
[ $rc != 0 ] || fail "a suite with a failed cluster exited 0"
grep -q '^tally-1  *FAILED' "$DIR/suite.out" || fail "tally-1 not marked FAILED"
grep -q '^tally-3  *FAILED' "$DIR/suite.out" || fail "tally-3 not marked FAILED"
grep -q 'peak ratio: not computed' "$DIR/suite.out" || fail "a ratio computed from a failed row"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert not d["complete"], "complete"
assert sorted(d["failed_runs"]) == ["tally1-start", "tally3-start"], d["failed_runs"]
assert "peak" not in d["ratios"] and "till" not in d["ratios"], d["ratios"]
assert d["rows"][3]["peak"]["postings_per_s"] > 0, "PostgreSQL still measured"
' "$DIR/bad/bench-suite.json" || fail "the failed suite's JSON"
[ -z "$(ours)" ] || fail "a tallyd of the failed suite still runs"
[ -z "$(ls -A "$DIR/tmp")" ] || fail "the failed suite left: $(ls -A "$DIR/tmp")"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
holder=""

# 3. Stopped in the middle of tally-1's peak run (SIGTERM, as `timeout` or an operator sends it):
# the script ends within seconds and stops what it started.
SUITE_MEMBERS=2000 SUITE_SECONDS=30 SUITE_ENGINE_POSTINGS=20000 SUITE_ENGINE_RUNS=1 \
    SUITE_PORT_BASE=$BASE SUITE_OUT="$DIR/term" \
    SUITE_TALLYD_OPTS="--election-timeout 300 --heartbeat 50" \
    bash "$SUITE" "$BUILD" >"$DIR/suite.out" 2>&1 &
suite=$!
for _ in $(seq 200); do
    grep -q -- '-- tally1 peak' "$DIR/suite.out" && break
    sleep 0.1
done
sleep 2
[ -n "$(ours)" ] || fail "no tallyd of the suite to stop"
t0=$(date +%s%N)
kill -TERM "$suite"
wait "$suite"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 130 ] || fail "a suite stopped by SIGTERM: exit $rc"
[ $ms -lt 15000 ] || fail "the suite took $ms ms to stop"
sleep 1
[ -z "$(ours)" ] || fail "a tallyd of the stopped suite still runs"
[ -z "$(pgrep -f -- "--cluster 127.0.0.1:$((BASE + 1))")" ] || fail "tally-bench still runs"
[ -z "$(ls -A "$DIR/tmp")" ] || fail "the stopped suite left: $(ls -A "$DIR/tmp")"
echo "ok"
