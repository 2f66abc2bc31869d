#!/usr/bin/env bash
# drill_kill.sh: tally-drill for real, against three real tallyd processes on loopback.
#
# One short kill drill (the drill finds the leader, SIGKILLs it, starts it again itself from
# /proc with --restart self) and one pause drill driven by the hooks (--fault-cmd 'kill -STOP
# {pid}', --heal-cmd 'kill -CONT {pid}'), each checked through the --json report: the outage was
# measured and ended, the replica is back, nothing acknowledged was lost or doubled, every
# acknowledged id was looked up, and the SVG timeline was written and parses as XML. Then bad
# input: an unknown option and a bad value exit 2, an unreachable cluster exits 3 within a few
# seconds (never a hang).
#
# Replicas run with the cluster tests' timing (election timeout 300 ms, heartbeat 50 ms) on ports
# from this shell's pid, below the ephemeral range (tests/cluster/harness.c says why), apart from
# the harness's 20000-32000 band. Every process started here, the restarted one included, is
# killed on exit.
#
# Run: TALLY_BUILD=build bash tests/tools/drill_kill.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

. "$(dirname "$0")/lib/cluster.sh"
script_needs tallyd tally tally-drill
script_cluster tally-drill-test 14000
script_cluster_start

# Reads the JSON report on stdin and checks it; $1: the fault, $2: the expected healed_by.
check_report() {
    python3 -c '
import json, sys, xml.etree.ElementTree as ET
fault, healed, svg = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(sys.stdin)
def need(ok, what):
    if not ok:
        print("report:", json.dumps(r, indent=1)[:3000])
        sys.exit("not so: " + what)
need(r["fault"] == fault, "fault " + fault)
need(len(r["drills"]) == 1, "one drill")
d = r["drills"][0]
need(d["recovered"] and d["unavailability_ms"] is not None, "the outage ended")
need(5 <= d["unavailability_ms"] < 15000, "unavailability measured: %r" % d["unavailability_ms"])
need(d["healed_by"] == healed, "healed by " + healed + ", not " + d["healed_by"])
need(d["rejoined"], "every replica serves again")
need(d["latency"]["before"]["requests"] > 0 and d["latency"]["after"]["requests"] > 0,
     "latency before and after the fault")
need(d["latency"]["recovery"]["max_ms"] >= d["unavailability_ms"] * 0.5,
     "requests waited out the outage")
need(r["unavailability_ms"]["median"] == d["unavailability_ms"], "median of one")
p, c = r["postings"], r["check"]
need(p["acknowledged"] > 100, "a load was acknowledged: %d" % p["acknowledged"])
need(c["ids_checked"] == p["acknowledged"], "every acknowledged id looked up")
need(c["lost"] == 0 and c["duplicated"] == 0 and c["result_mismatch"] == 0, "nothing lost/doubled")
need(c["balance_mismatch"] == 0 and c["members_checked"] == 50, "balances")
need(c["ok"] is True, "check ok")
need(r["svg"] == svg, "svg named")
root = ET.parse(svg).getroot()
need(root.tag == "{http://www.w3.org/2000/svg}svg", "an svg root")
ns = {"s": "http://www.w3.org/2000/svg"}
need(len(root.findall("s:polyline", ns)) == 1, "the throughput line")
need(len(root.findall("s:circle", ns)) > 10, "latency points")
need(any("unavailability" in (t.text or "") for t in root.findall("s:text", ns)), "a title")
if healed == "self":
    print(d["restarted_pid"])
' "$1" "$2" "$3"
}

# 1. A kill drill, restarted by the drill itself.
start=$(date +%s)
"$BUILD/tally-drill" --cluster "$CLUSTER" --duration 3 --fault-at 1 --rate 800 --clients 8 \
    --members 50 --timeout 15 --restart self --json --svg "$DIR/kill.svg" >"$DIR/kill.json" \
    2>"$DIR/kill.err"
rc=$?
[ $rc = 0 ] || { cat "$DIR/kill.err"; fail "kill drill exit $rc"; }
pid=$(check_report kill self "$DIR/kill.svg" <"$DIR/kill.json") || fail "kill report"
kill -0 "$pid" 2>/dev/null || fail "the restarted replica (pid $pid) is not running"
ls "$DIR"/r*/tallyd-drill.log >/dev/null 2>&1 || fail "no tallyd-drill.log from the restart"

# 2. A pause through the hooks (the same members: the check is per run, from fresh balances).
"$BUILD/tally-drill" --cluster "$CLUSTER" --duration 3 --fault-at 1 --rate 800 --clients 8 \
    --members 50 --timeout 15 --fault-cmd 'kill -STOP {pid}' --heal-cmd 'kill -CONT {pid}' \
    --json --svg "$DIR/stop.svg" >"$DIR/stop.json" 2>"$DIR/stop.err"
rc=$?
[ $rc = 0 ] || { cat "$DIR/stop.err"; fail "hook drill exit $rc"; }
check_report command heal-cmd "$DIR/stop.svg" <"$DIR/stop.json" >/dev/null || fail "hook report"
echo "drills took $(($(date +%s) - start)) s"

# 3. Bad input: clear errors, meaningful exit codes, no hang.
"$BUILD/tally-drill" --cluster "$CLUSTER" --bogus 2>"$DIR/e1"
[ $? = 2 ] && grep -q "unknown option '--bogus'" "$DIR/e1" || fail "unknown option"
"$BUILD/tally-drill" --cluster "$CLUSTER" --fault melt 2>"$DIR/e2"
[ $? = 2 ] && grep -q "bad value for --fault" "$DIR/e2" || fail "bad --fault value"
env -u TALLY_CLUSTER "$BUILD/tally-drill" 2>"$DIR/e3"
[ $? = 2 ] && grep -q "no cluster" "$DIR/e3" || fail "no --cluster"
t0=$(date +%s%N)
timeout 20 "$BUILD/tally-drill" --cluster 127.0.0.1:$((BASE + 9)) --timeout 5 2>"$DIR/e4"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 3 ] && grep -q "no replica of 127.0.0.1:$((BASE + 9)) answered" "$DIR/e4" ||
    fail "unreachable cluster: exit $rc: $(cat "$DIR/e4")"
[ $ms -lt 5000 ] || fail "unreachable cluster took $ms ms to report"
echo "ok"
