#!/usr/bin/env bash
# scale.sh: bench/scale.sh for real, in miniature: three real tallyd on loopback grown to
# 300,000 entries by tally-bench (20,000 members), stopped by SIGINT at the target, then one
# replica killed and restarted at that size, and another's ledger verified. The outputs must say
# so: samples that grow, a summary with bytes per entry, peak RSS, both restart times and
# throughput by ledger size, a plot that parses, and tally-bench's own check passed.
#
# Ports from this shell's pid in 11000-13990 (other script tests use 14000 and up).
# Run: TALLY_BUILD=build bash tests/tools/scale.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

BUILD=${TALLY_BUILD:-build}
for p in tallyd tally tally-bench tally-audit; do
    [ -x "$BUILD/$p" ] || { echo "skip: $BUILD/$p is not built"; exit 77; }
done
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }

out=$(mktemp -d /tmp/tally-scale-test-XXXXXX)
trap 'rm -rf "$out"' EXIT
for p in tallyd tally tally-bench tally-audit; do ln -s "$(cd "$BUILD" && pwd)/$p" "$out/$p"; done

SCALE_PORT_BASE=$((11000 + ($$ % 300) * 10)) SCALE_MEMBERS=20000 SCALE_SAMPLE_S=1 \
    SCALE_EXPIRE_AT=2 SCALE_MAX_SECONDS=120 SCALE_DIR=$out \
    bash "$(dirname "$0")/../../bench/scale.sh" "$out" 300000 >"$out/run.txt" 2>&1
rc=$?
fail() {
    echo "FAIL: $*"
    tail -30 "$out/run.txt"
    for i in 1 2 3; do tail -3 "$out/scale/replica-$i.log" 2>/dev/null; done
    exit 1
}
[ $rc = 0 ] || fail "bench/scale.sh exit $rc"
grep -q 'stopping the load (target reached' "$out/run.txt" || fail "not stopped at the target"
grep -q 'tally-audit verify of replica [0-9]: ok' "$out/run.txt" || fail "verify"
python3 - "$out/scale" <<'PY' || fail "outputs"
import csv, json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
s = json.load(open(d + "/scale.json"))
def need(ok, msg):
    if not ok:
        print(json.dumps(s, indent=1)); sys.exit("not so: " + msg)
need(s["stopped_by"] == "target" and s["entries"] >= 300000, "target reached")
need(100 < s["bytes_per_entry"] < 4000, "bytes per entry")
need(s["peak_rss_kib"] > 10000 and s["peak_anon_kib"] > 0, "RSS sampled")
need(s["restart_answering_s"] is not None and s["restart_caught_up_s"] is not None
     and s["restart_answering_s"] <= s["restart_caught_up_s"] < 60, "restart timed")
need(len(s["by_size"]) >= 2 and all(b["median_postings_per_s"] > 0 for b in s["by_size"]),
     "throughput by ledger size")
rows = list(csv.DictReader(open(d + "/samples.csv")))
e = [int(r["entries"]) for r in rows if r["entries"]]
need(len(e) >= 3 and e == sorted(e) and e[-1] > e[0], "samples grow: %r" % e)
b = json.load(open(d + "/bench.json"))
need(b["check"]["ok"] is True, "tally-bench's check")
root = ET.parse(d + "/scale.svg").getroot()
need(root.tag == "{http://www.w3.org/2000/svg}svg", "an svg")
need(len(root.findall("{http://www.w3.org/2000/svg}polyline")) >= 2, "plotted lines")
PY
pgrep -f -- "--dir $out/" >/dev/null && fail "a replica outlived the run"
echo ok
