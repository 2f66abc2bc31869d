#!/usr/bin/env bash
# replay.sh: tally-bench --replay for real, against three real tallyd processes on loopback run
# with --clock client (entries stamped with the historical times the replay sends).
#
# 1. The first 2,000 rows of CDNOW (customers 1..~700, their whole 18 months: pending windows,
#    expiries, tier upgrades, renewals and downgrades) and the first 20,000 lines of UCI Online
#    Retail (two weeks of December 2010, with cancellations: CANCEL, ACTIVATE+REVERSE and
#    REVERSE) replayed through the cluster: every posting's result and every member's account
#    and lots equal the model's, every replica's ledger passes tally-audit verify, and the JSON
#    report gives the throughput and the batch latency.
# 2. The check can fail: with TALLY_REPLAY_TEST_SKEW one member's expected available points are
#    off by one (an in-process engine, --engine), and the replay must say so and exit 1.
# 3. Bad input: an unknown option, an unknown set, and a missing data directory exit 2.
#
# Ports from this shell's pid in 7900-10903 (above bench/cluster.sh's and make run's 76xx-77xx;
# tally --at's test uses 11000-14003, tally-drill's 14000-16990, tally-bench's 17000-19990, the
# cluster harness 20000-32000). Every process started here is killed on exit.
#
# Run: TALLY_BUILD=build bash tests/tools/replay.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

. "$(dirname "$0")/lib/cluster.sh"
script_needs tallyd tally tally-bench
DATA=${TALLY_RETAIL_DATA:-$(dirname "$0")/../../../shared/data/retail}
if [ ! -r "$DATA/cdnow.txt" ] || [ ! -r "$DATA/online_retail.csv.gz" ]; then
    echo "skip: the retail data is not at $DATA (set TALLY_RETAIL_DATA)"
    exit 77
fi
script_cluster tally-replay-test 7900
script_cluster_start --clock client

# Checks a --json report on stdin; $1: the set, $2: the customers expected.
check_report() {
    python3 -c '
import json, sys
name, customers = sys.argv[1], int(sys.argv[2])
doc = json.load(sys.stdin)
def need(ok, msg):
    if not ok:
        print("report:", json.dumps(doc, indent=1)[:4000])
        sys.exit("not so: " + msg)
need(doc["ok"] is True, "the replay passed")
need(len(doc["replay"]) == 1 and doc["replay"][0]["set"] == name, "one run of " + name)
r = doc["replay"][0]
d, ld, td, ck = r["data"], r["load"], r["time_driven"], r["check"]
need(d["customers"] == customers, "customers: %d" % d["customers"])
need(ck["members_checked"] == customers + 1, "every member and the tick member checked")
need(ck["members_mismatched"] == 0 and ck["read_errors"] == 0 and ck["ok"], "balances equal")
need(ld["result_mismatches"] == 0 and ld["post_errors"] == 0, "results as the model said")
need(ld["by_kind"]["open"] == customers + 1, "an OPEN per customer and the tick")
need(ld["by_kind"]["accrue"] == ld["purchases_posted"] > 0, "an ACCRUE per purchase")
need(ld["postings_per_s"] > 0 and ld["purchases_per_s"] > 0, "throughput reported")
lat = ld["batch_latency"]
need(lat["count"] == ld["batches"] and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"],
     "batch latency")
need(td["activations"] > 0, "pending points activated")
need(all(x >= 0 for x in r["load_average"]["before"] + r["load_average"]["after"]),
     "load averages beside the figures")
if name == "cdnow":
    need(td["expiries"] > 0 and td["upgrades"] > 0 and td["downgrades"] > 0, "time: %r" % td)
else:
    k = ld["by_kind"]
    need(d["returns"] > 0 and k["cancel"] > 0 and k["reverse"] > 0 and k["activate"] > 0,
         "cancellations replayed: %r" % k)
need(len(doc["audit"]) == 3 and all(a["ok"] and a["entries"] > 0 for a in doc["audit"]),
     "every replica audited OK")
' "$@"
}

# 1. Through the cluster.
out=$("$BUILD/tally-bench" --replay cdnow --rows 2000 --data "$DATA" --cluster "$CLUSTER" \
      --data-dirs "$DIRS" --json --quiet 2>"$DIR/cdnow.err") || fail "cdnow replay: exit $?: $out"
customers=$(head -2001 "$DATA/cdnow.txt" | tail -2000 | awk '{print $1}' | sort -u | wc -l)
echo "$out" | check_report cdnow "$customers" || fail "cdnow report"
out=$("$BUILD/tally-bench" --replay online-retail --rows 20000 --data "$DATA" \
      --cluster "$CLUSTER" --data-dirs "$DIRS" --json --quiet 2>"$DIR/uci.err") ||
    fail "online-retail replay: exit $?: $out"
customers=$(echo "$out" | python3 -c '
import json, sys
print(json.load(sys.stdin)["replay"][0]["data"]["customers"])')
[ "$customers" -gt 100 ] || fail "online-retail prefix: $customers customers"
echo "$out" | check_report online-retail "$customers" || fail "online-retail report"

# 2. A wrong expectation is found and reported.
out=$(TALLY_REPLAY_TEST_SKEW=1 "$BUILD/tally-bench" --replay cdnow --rows 300 --data "$DATA" \
      --engine "$DIR/engine" --quiet 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "a skewed check exits 1, not $rc: $out"
case $out in *"member 1: available is"*DIFFERENCE*|*DIFFERENCE*"member 1: available is"*) ;;
    *) fail "the skewed member is named: $out";; esac

# 3. Usage.
"$BUILD/tally-bench" --replay cdnow --bogus --engine "$DIR/e2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown option exits 2"
"$BUILD/tally-bench" --replay everything --engine "$DIR/e2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown set exits 2"
"$BUILD/tally-bench" --replay cdnow --data "$DIR/none" --engine "$DIR/e3" >/dev/null 2>&1
[ $? -eq 2 ] || fail "a missing data directory exits 2"
echo "ok"
