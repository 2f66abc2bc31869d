#!/usr/bin/env bash
# tally_bench.sh: tally-bench for real, against three real tallyd processes on loopback.
#
# 1. A closed-loop run (2 clients, batches of 500, 4 s) with short windows (pending 500 ms, holds
#    500 ms, campaign expiry 2 s into the load) and --data-dirs: its JSON must show a load that
#    was answered, ordered percentiles, a per-second timeline that adds up, the self-check passed
#    (sampled balances equal, EXPIRE / ACTIVATE / TIER_CHANGE / hold time-outs seen, campaign
#    points expired, replicas converged, every replica's ledger audited OK), and an SVG that
#    parses.
# 2. An open-loop run of single postings at a rate the cluster keeps up with: per-kind and read
#    histograms, every due request sent, latency measured from the due time.
# 3. An open-loop run at a rate no cluster here meets: reported as a backlog, not hidden.
# 4. The check can fail: with TALLY_BENCH_TEST_SKEW one expected balance is off by one point,
#    and tally-bench must say so and exit 1.
# 5. Bad input: an unknown option and a bad value exit 2; an unreachable cluster exits 3 within
#    a few seconds.
# 6. SIGINT during the load ends it early (bench/scale.sh stops its run so): the run still
#    converges, checks itself and reports, with a timeline as long as the load really ran.
# 7. Driven clients (--threads below --clients: libtally's asynchronous POST): 8 sessions from
#    2 threads pass the same self-check and audit; --threads with balance reads is refused.
#
# Ports from this shell's pid in 17000-19990 (tally-drill's test uses 14000-16990, the cluster
# harness 20000-32000). Every process started here is killed on exit.
#
# Run: TALLY_BUILD=build bash tests/tools/tally_bench.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

. "$(dirname "$0")/lib/cluster.sh"
script_needs tallyd tally tally-bench
script_cluster tally-bench-test 17000
script_cluster_start

# Checks a JSON report on stdin; $1: closed|open|overload, $2: the SVG file or "-".
check_report() {
    python3 -c '
import json, sys, xml.etree.ElementTree as ET
what, svg = sys.argv[1], sys.argv[2]
r = json.load(sys.stdin)
def need(ok, msg):
    if not ok:
        print("report:", json.dumps(r, indent=1)[:4000])
        sys.exit("not so: " + msg)
cfg, ld, lat, ck = r["config"], r["load"], r["latency"], r["check"]
need(cfg["mode"] == ("closed" if what == "closed" else "open"), "mode")
need(ld["postings"] > 0 and ld["ok"] > 0.8 * ld["postings"], "answered, mostly OK: %r" % ld)
for name, h in lat.items():
    need(h["count"] > 0, "samples of " + name)
    need(h["p50_ms"] <= h["p90_ms"] <= h["p99_ms"] <= h["p999_ms"] <= h["max_ms"],
         "ordered percentiles of " + name)
need(lat["writes"]["count"] == sum(h["count"] for n, h in lat.items()
                                   if n not in ("writes", "read", "read_stale")),
     "writes: every posting request once")
tl = r["timeline"]
need(len(tl) == cfg["seconds"], "one timeline sample a second")
need(0 < sum(s["postings"] for s in tl) <= ld["postings"], "the timeline adds up")
need(ck["balance_mismatch"] == 0 and ck["amount_mismatch"] == 0 and ck["lookup_errors"] == 0,
     "balances as expected")
need(ck["members_checked"] >= 50, "members checked: %d" % ck["members_checked"])
need(ck["converged"], "replicas converged")
need(ck["ok"] is True, "check ok")
if what == "closed":
    need(ld["postings"] >= 2000, "a load: %d postings" % ld["postings"])
    need(lat["batch"]["count"] == ld["postings"] // cfg["batch"], "one batch sample a request")
    k = ck["history_kinds"]
    need(ck["need_expire"] and ck["need_activate"] and ck["need_tier_change"], "all required")
    need(k["expire"] > 0 and k["activate"] > 0 and k["tier_change"] > 0, "time-driven work: %r" % k)
    need(k["hold_timeout"] > 0, "holds timed out")
    need(ck["programs"][1]["expired"] > 0, "campaign points expired")
    need(ck["programs"][0]["members"] == cfg["members"], "members opened")
    need(ck["audit_ok"] is True, "every replica audited")
if what == "open":
    ol = r["open_loop"]
    need(ol["due"] == cfg["rate"] * cfg["seconds"], "requests due")
    need(ol["backlog"] <= 2 and ol["sent"] >= ol["due"] - 2, "every due request sent: %r" % ol)
    need("accrue" in lat and "batch" not in lat, "single postings by kind")
    need(lat["accrue"]["count"] > 50, "accruals measured")
    need("read" in lat and "read_stale" in lat, "both kinds of read")
    reads = lat["read"]["count"] + lat["read_stale"]["count"] + ld["read_errors"]
    need(ld["reads"] == reads, "every read counted once")
if what == "overload":
    ol = r["open_loop"]
    need(ol["kept_up"] is False and ol["backlog"] > 0, "the backlog reported: %r" % ol)
    need(ol["sent"] + ol["backlog"] == ol["due"], "due = sent + backlog")
if svg != "-":
    need(r["svg"] == svg, "svg named")
    root = ET.parse(svg).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    need(root.tag == "{http://www.w3.org/2000/svg}svg", "an svg root")
    need(len(root.findall("s:polyline", ns)) == 1, "the throughput line")
    need(len(root.findall("s:circle", ns)) >= 3, "p99 points")
' "$1" "$2"
}

# 1. Closed loop, batches.
"$BUILD/tally-bench" --cluster "$CLUSTER" --members 2000 --clients 2 --batch 500 --seconds 4 \
    --pending-ms 500 --hold-timeout-ms 500 --expire-at 2 --check-members 200 \
    --data-dirs "$DIRS" --pids "$(IFS=,; echo "${PIDS[*]}")" --json --svg "$DIR/closed.svg" \
    >"$DIR/closed.json" 2>"$DIR/closed.err"
rc=$?
[ $rc = 0 ] || fail "closed loop exit $rc"
check_report closed "$DIR/closed.svg" <"$DIR/closed.json" || fail "closed-loop report"
grep -q 'postings/s' "$DIR/closed.err" || fail "no progress line"

# 2. Open loop, single postings, a rate this cluster keeps up with.
"$BUILD/tally-bench" --cluster "$CLUSTER" --members 2000 --clients 8 --batch 1 --rate 100 \
    --seconds 3 --read-share 0.2 --check-members 100 --json --quiet >"$DIR/open.json" \
    2>"$DIR/open.err"
rc=$?
[ $rc = 0 ] || fail "open loop exit $rc"
check_report open - <"$DIR/open.json" || fail "open-loop report"

# 3. Open loop at a rate nothing here meets.
"$BUILD/tally-bench" --cluster "$CLUSTER" --members 200 --clients 2 --batch 1 --rate 100000 \
    --seconds 2 --check-members 50 --json --quiet >"$DIR/over.json" 2>"$DIR/over.err"
rc=$?
[ $rc = 0 ] || fail "overload exit $rc"
check_report overload - <"$DIR/over.json" || fail "overload report"

# 4. A wrong expectation fails the check.
TALLY_BENCH_TEST_SKEW=1 "$BUILD/tally-bench" --cluster "$CLUSTER" --members 200 --clients 1 \
    --batch 100 --seconds 1 --check-members 50 --quiet >"$DIR/skew.out" 2>"$DIR/skew.err"
rc=$?
[ $rc = 1 ] || fail "a skewed expectation: exit $rc, not 1"
grep -q 'earned expected' "$DIR/skew.err" || fail "the mismatch is not named"
grep -Eq 'check: [0-9]+ members, [1-9][0-9]* balance mismatches' "$DIR/skew.out" ||
    fail "the mismatch is not counted"

# 6. SIGINT ends the load early; the check and the report follow.
"$BUILD/tally-bench" --cluster "$CLUSTER" --members 200 --clients 2 --batch 50 --seconds 120 \
    --check-members 50 --json-file "$DIR/stop.json" >"$DIR/stop.out" 2>"$DIR/stop.err" &
bpid=$!
for _ in $(seq 200); do grep -q 'postings/s' "$DIR/stop.err" && break; sleep 0.1; done
sleep 1
kill -INT $bpid
t0=$SECONDS
wait $bpid
rc=$?
[ $rc = 0 ] || fail "stopped by SIGINT: exit $rc, not 0"
[ $((SECONDS - t0)) -lt 60 ] || fail "SIGINT did not end the load early"
grep -q 'load stopped by a signal' "$DIR/stop.err" || fail "the early stop is not said"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
n = len(r["timeline"])
if not (1 <= n < 30 and r["check"]["ok"] is True and r["load"]["postings"] > 0):
    sys.exit("early stop report: %d seconds, check %r" % (n, r["check"]["ok"]))
' "$DIR/stop.json" || fail "early-stop report"

# 7. Driven clients: 8 sessions from 2 threads (libtally's asynchronous POST), single postings;
#    every answered posting counted, the self-check passed, every replica audited.
"$BUILD/tally-bench" --cluster "$CLUSTER" --members 2000 --clients 8 --threads 2 --batch 1 \
    --seconds 3 --read-share 0 --pending-ms 500 --hold-timeout-ms 500 --expire-at 1 \
    --check-members 100 --data-dirs "$DIRS" --json --quiet >"$DIR/driven.json" \
    2>"$DIR/driven.err"
rc=$?
[ $rc = 0 ] || fail "driven clients exit $rc: $(tail -3 "$DIR/driven.err")"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
load, check = r["load"], r["check"]
if r["config"]["threads"] != 2 or r["config"]["clients"] != 8:
    sys.exit("driven config: %r" % r["config"])
if not (load["postings"] > 100 and load["postings"] == load["requests"]):
    sys.exit("driven load: %r" % load)
if sum(s["postings"] for s in r["timeline"]) > load["postings"]:
    sys.exit("driven timeline adds up to more than the load")
if check["ok"] is not True:
    sys.exit("driven check: %r" % check)
' "$DIR/driven.json" || fail "driven-clients report"

# 5. Bad input.
"$BUILD/tally-bench" --cluster "$CLUSTER" --threads 2 --clients 4 2>"$DIR/e5"
[ $? = 2 ] && grep -q "closed loop only" "$DIR/e5" || fail "--threads with reads"
"$BUILD/tally-bench" --cluster "$CLUSTER" --bogus 2>"$DIR/e1"
[ $? = 2 ] && grep -q "unknown option '--bogus'" "$DIR/e1" || fail "unknown option"
"$BUILD/tally-bench" --cluster "$CLUSTER" --batch 9000 2>"$DIR/e2"
[ $? = 2 ] && grep -q "bad value for --batch" "$DIR/e2" || fail "bad --batch"
env -u TALLY_CLUSTER "$BUILD/tally-bench" 2>"$DIR/e3"
[ $? = 2 ] && grep -q "no cluster" "$DIR/e3" || fail "no --cluster"
t0=$(date +%s%N)
timeout 20 "$BUILD/tally-bench" --cluster 127.0.0.1:$((BASE + 9)) --timeout 3 2>"$DIR/e4"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 3 ] || fail "unreachable cluster: exit $rc: $(cat "$DIR/e4")"
[ $ms -lt 6000 ] || fail "unreachable cluster took $ms ms to report"
echo "ok"
