#!/usr/bin/env bash
# demo.sh: what `make run` shows: a Black Friday at a retail chain, on the embedded ledger.
#
# Usage: bash tools/demo.sh [BUILD_DIR]   (default build; run from anywhere)
#
# Writes a fresh ledger to var/demo (wiped first) with `tally` in embedded mode: a program whose
# points expire at the end of the year after they are earned, with silver and gold tiers; five
# members; a morning of till purchases applied as one batch; a web order with a return window;
# a hold at checkout captured in part; a refund; a family transfer; a service adjustment; a
# refused overdraft and a safe retry. Then balances and tiers, and tally-audit's verification and
# trial balance. Every command carries --at and --id, so the output is the same on every run.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${1:-build}
TALLY=$BUILD/tally
AUDIT=$BUILD/tally-audit
DATA=var/demo

if [ ! -x "$TALLY" ]; then
    echo "demo: $TALLY is not built: run make first" >&2
    exit 1
fi
rm -rf "$DATA"
mkdir -p "$DATA"

tally() { "$TALLY" --data "$DATA" "$@"; }
heading() { printf '\n== %s ==\n' "$*"; }

heading "Program 1: points expire at the end of next year; silver from 2,000 spent in 12 months, gold from 5,000; tiers last 12 months and fall one step at a time"
tally --at 2026-11-01T08:00Z program create --program 1 --id 1 --expiry year:1 \
    --tiers 2000,5000 --tier-mode down-step --window rolling:12 --validity 12 --hold-timeout 15m

heading "Members join: 1001 Ana, 1002 Ben (Ana's son), 1003 Chen, 1004 Dara, 1005 Eli"
for m in 1001 1002 1003 1004 1005; do
    tally --at 2026-11-01T08:00Z open --program 1 --member "$m" --id "$m"
done

heading "Black Friday morning: the tills' purchases, one batch (1 point and 1 unit of qualifying value per yuan)"
BATCH=$DATA/../demo-morning.batch
cat >"$BATCH" <<'EOF'
# member  points = value = yuan spent; --code is the store, --ref-data the order
accrue --program 1 --member 1001 --points 1200 --value 1200 --code 1 --ref-data "order S1-0001" --id 1101
accrue --program 1 --member 1002 --points 300  --value 300  --code 1 --ref-data "order S1-0002" --id 1102
accrue --program 1 --member 1003 --points 5200 --value 5200 --code 3 --ref-data "order S3-0001" --id 1103
accrue --program 1 --member 1001 --points 1100 --value 1100 --code 2 --ref-data "order S2-0001" --id 1104
accrue --program 1 --member 1004 --points 450  --value 450  --code 2 --ref-data "order S2-0002" --id 1105
accrue --program 1 --member 1005 --points 800  --value 800  --code 1 --ref-data "order S1-0003" --id 1106
accrue --program 1 --member 1005 --points 150  --value 150  --code 3 --ref-data "order S3-0002" --id 1107
accrue --program 1 --member 1001 --points 250  --value 250  --code 3 --ref-data "order S3-0003" --id 1108
accrue --program 1 --member 1002 --points 900  --value 900  --code 2 --ref-data "order S2-0003" --id 1109
EOF
tally --at 2026-11-27T10:00Z batch "$BATCH"
rm -f "$BATCH"
echo "(Ana's second order took her to silver, Chen's order to gold: see the tiers below)"

heading "Web order: Dara earns 600 points, pending through a 14-day return window"
tally --at 2026-11-27T14:00Z accrue --program 1 --member 1004 --points 600 --value 600 \
    --pending 14d --code 9 --ref-data "web W-7731" --id 1201

heading "Checkout: Ana reserves 800 points, the basket needs 500 (the other 300 go back)"
tally --at 2026-11-27T15:00Z hold --program 1 --member 1001 --points 800 --id 1301
tally --at 2026-11-27T15:02Z capture --program 1 --member 1001 --ref 1301 --points 500 --id 1302

heading "The till retries the capture after a timeout: same id, nothing happens twice"
tally --at 2026-11-27T15:03Z capture --program 1 --member 1001 --ref 1301 --points 500 --id 1302

heading "Refund: Chen returns goods worth 1,200 of his 5,200 order (his gold tier stays until it is re-evaluated)"
tally --at 2026-11-27T16:00Z reverse --program 1 --member 1003 --ref 1103 --points 1200 --id 1401

heading "Family pooling: Ana gives Ben 300 points"
tally --at 2026-11-27T17:00Z transfer --program 1 --from 1001 --to 1002 --points 300 --id 1501

heading "Service recovery: Eli gets 150 points for a late delivery (reason 17)"
tally --at 2026-11-27T18:00Z adjust --program 1 --member 1005 --points 150 --reason 17 --id 1601

heading "Ben tries to redeem 5,000 points: refused, and told why"
tally --at 2026-11-27T19:00Z redeem --program 1 --member 1002 --points 5000 --id 1701 || true

heading "End of day: balances and tiers"
printf '%-7s %-5s %9s %8s %5s %-7s %-12s %s\n' member name available pending held tier "valid until" "QV (12 months)"
names=(Ana Ben Chen Dara Eli)
tiers=(member silver gold)
i=0
for m in 1001 1002 1003 1004 1005; do
    json=$(tally --at 2026-11-27T23:00Z --json account --program 1 --member "$m")
    if command -v python3 >/dev/null; then
        python3 - "$json" "$m" "${names[$i]}" "${tiers[@]}" <<'EOF'
import json, sys
a = json.loads(sys.argv[1])
tiers = sys.argv[4:]
until = a["tier_valid_until"][:10] if a["tier_valid_until"] != "never" else "-"
print("%-7s %-5s %9d %8d %5d %-7s %-12s %d" % (sys.argv[2], sys.argv[3], a["available"],
      a["pending"], a["held"], tiers[a["tier"]], until, a["qv_window"]))
EOF
    else
        echo "$m ${names[$i]}: $json"
    fi
    i=$((i + 1))
done

heading "Ana's lots: each purchase is a lot that expires at the start of 2028"
tally lots --program 1 --member 1001

heading "Ana's history, newest first"
tally history --program 1 --member 1001 --limit 8

heading "Two weeks later: Dara's return window has passed, her points activate by themselves"
tally --at 2026-12-12T00:00Z tick
tally balance --program 1 --member 1004

heading "Program totals (the outstanding points are finance's liability)"
tally program show --program 1

heading "Ledger status"
tally status

heading "Audit: re-derive every balance from the entries, then the trial balance"
if [ -x "$AUDIT" ]; then
    "$AUDIT" verify "$DATA" || echo "(tally-audit verify reported a problem, exit $?)"
    "$AUDIT" trial-balance "$DATA" || echo "(tally-audit trial-balance failed, exit $?)"
else
    echo "$AUDIT is not built yet: skipping verify and trial-balance"
fi
printf '\nThe ledger is in %s; try: %s --data %s --help\n' "$DATA" "$TALLY" "$DATA"
