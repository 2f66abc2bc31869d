#!/usr/bin/env bash
# cli_year.sh: one member's year through the `tally` CLI (embedded mode), checked step by step.
#
# Every command runs with --at (deterministic time) and --json; each step checks the exact
# balances that docs/LEDGER.md's rules give. The program:
#   expiry month:3      a lot earned in month m expires at the start of month m+4
#   tiers 1000,5000     silver at QV 1000, gold at QV 5000
#   window rolling:3    QV of the current month and the two before it
#   validity 3          a tier lasts the rest of its month plus 3 months
#   down-step           at the end of validity, fall at most one tier
# Covered: open, accruals, a pending accrual activated by time (tick), a hold captured in part
# (rest released), a hold that times out, partial reversal of a redemption and of an accrual,
# expiry of a lot at its expiry time, tier upgrade then two downgrades at validity boundaries,
# idempotent retry (EXISTS), a reused id with another body, an overdraft (exit 1,
# INSUFFICIENT_POINTS), usage and data-directory errors.
#
# Run: TALLY_BUILD=build bash tests/tools/cli_year.sh   (exit 0 pass, 1 fail, 77 skip)
set -u

BUILD=${TALLY_BUILD:-build}
TALLY=$BUILD/tally
if [ ! -x "$TALLY" ]; then
    echo "skip: $TALLY is not built"
    exit 77
fi
if ! command -v python3 >/dev/null; then
    echo "skip: python3 is needed to read the JSON"
    exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
DATA=$TMP/ledger
FAILS=0
STEP=""
OUT=""
RC=0

# t AT ARGS...: run tally at time AT with --json; sets OUT (stdout) and RC (exit code).
t() {
    local at=$1
    shift
    OUT=$("$TALLY" --data "$DATA" --at "$at" --json "$@" 2>"$TMP/stderr")
    RC=$?
}

fail() {
    echo "FAIL [$STEP]: $*"
    echo "  command output: $OUT"
    [ -s "$TMP/stderr" ] && sed 's/^/  stderr: /' "$TMP/stderr"
    FAILS=$((FAILS + 1))
}

# rc N: the last command exited with N.
rc() {
    [ "$RC" = "$1" ] || fail "exit code $RC, expected $1"
}

# check PATH VALUE [PATH VALUE ...]: fields of the last JSON output (PATH: a.b.0.c).
check() {
    local diffs
    diffs=$(python3 - "$OUT" "$@" <<'EOF'
import json, sys
try:
    doc = json.loads(sys.argv[1])
except ValueError as e:
    print("output is not JSON: %s" % e)
    sys.exit(0)
args = sys.argv[2:]
for path, want in zip(args[0::2], args[1::2]):
    v = doc
    try:
        for k in path.split("."):
            v = v[int(k)] if isinstance(v, list) else v[k]
    except (KeyError, IndexError, ValueError, TypeError):
        print("%s missing, expected %s" % (path, want))
        continue
    got = "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    if got != want:
        print("%s = %s, expected %s" % (path, got, want))
EOF
    )
    [ -z "$diffs" ] || fail "$diffs"
}

# bal AT AVAILABLE PENDING HELD: the member's buckets.
bal() {
    t "$1" balance --program 1 --member 42
    rc 0
    check available "$2" pending "$3" held "$4"
}

P=(--program 1 --member 42)

STEP="create the program"
t 2026-01-01 program create --program 1 --id 1 --expiry month:3 --tiers 1000,5000 \
    --tier-mode down-step --window rolling:3 --validity 3 --hold-timeout 1d
rc 0
check result OK kind program seq 1
t 2026-01-01 program show --program 1
check config.expiry month:3 config.tier_count 3 config.thresholds.1 5000 \
    config.tier_mode down-step config.window rolling:3 config.validity_months 3

STEP="open the member"
t 2026-01-05 open "${P[@]}" --id 2
rc 0
check result OK seq 2 account.available 0 account.tier 0

STEP="accrue 1000 points, value 800 (lot 1, expires 2026-05-01)"
t 2026-01-10T10:00 accrue "${P[@]}" --points 1000 --value 800 --id 101
rc 0
check result OK seq 3 id 00000000000000000000000000000065 account.available 1000 account.tier 0

STEP="accrue 300, value 5500: window QV 6300 upgrades 0 -> 2 until 2026-06-01"
t 2026-02-03T10:00 accrue "${P[@]}" --points 300 --value 5500 --id 102
rc 0
check result OK seq 4 account.available 1300 account.tier 2 \
    account.tier_valid_until 2026-06-01T00:00:00.000Z
t 2026-02-03T10:00 entry --seq 5
check kind tier_change tier_from 0 tier_to 2 code 1 value 6300 \
    time_a 2026-06-01T00:00:00.000Z

STEP="retry of id 102 with the same body: EXISTS, nothing applied"
t 2026-02-03T10:05 accrue "${P[@]}" --points 300 --value 5500 --id 102
rc 0
check result EXISTS detail OK seq 4
bal 2026-02-03T10:05 1300 0 0

STEP="id 102 with another body: ID_EXISTS_DIFFERENT"
t 2026-02-03T10:06 accrue "${P[@]}" --points 301 --value 5500 --id 102
rc 1
check result ID_EXISTS_DIFFERENT
bal 2026-02-03T10:06 1300 0 0

STEP="pending accrual of 200 for 7 days"
t 2026-02-10T12:00 accrue "${P[@]}" --points 200 --value 400 --pending 7d --id 103
rc 0
check result OK seq 6 account.available 1300 account.pending 200
t 2026-02-10T12:00 entry --seq 6
check kind accrue time_b 2026-02-17T12:00:00.000Z time_a 2026-06-01T00:00:00.000Z

STEP="a tick one minute before activation changes nothing"
t 2026-02-17T11:59 tick
rc 0
check new_entries 0
bal 2026-02-17T11:59 1300 200 0

STEP="a tick at the activation time activates the accrual by itself"
t 2026-02-17T12:00 tick
rc 0
check new_entries 1 entries.0.kind activate entries.0.time 2026-02-17T12:00:00.000Z \
    entries.0.amount 200 entries.0.auto true
bal 2026-02-17T12:00 1500 0 0

STEP="hold 250 at checkout (from lot 1, the soonest to expire)"
t 2026-02-20T09:00 hold "${P[@]}" --points 250 --timeout 1h --id 104
rc 0
check result OK account.available 1250 account.held 250
t 2026-02-20T09:00 entry --seq "$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["seq"])' "$OUT")"
check kind hold lineage.0.lot_id 1 lineage.0.amount 250 time_a 2026-02-20T10:00:00.000Z

STEP="capture 150 of the hold: the other 100 is released"
t 2026-02-20T09:10 capture "${P[@]}" --ref 104 --points 150 --id 105
rc 0
check result OK account.available 1350 account.held 0
t 2026-02-20T09:10 posting --id 105
check result OK entry_count 2 entries.0.kind capture entries.0.amount 150 \
    entries.1.kind release entries.1.amount 100
t 2026-02-20T09:10 hold-info --id 104
check status captured amount 250 captured 150

STEP="a hold nobody resolves is released by itself at its timeout"
t 2026-02-20T11:00 hold "${P[@]}" --points 50 --timeout 30m --id 111
rc 0
check result OK account.available 1300 account.held 50
t 2026-02-20T11:29:59 tick
check new_entries 0
t 2026-02-20T11:30 tick
rc 0
check new_entries 1 entries.0.kind release entries.0.amount 50 entries.0.auto true \
    entries.0.time 2026-02-20T11:30:00.000Z
t 2026-02-20T11:30 hold-info --id 111
check status timed-out captured 0
bal 2026-02-20T11:30 1350 0 0

STEP="redeem 200 (from lot 1)"
t 2026-03-01T10:00 redeem "${P[@]}" --points 200 --id 106
rc 0
check result OK account.available 1150
t 2026-03-01T10:00 entry --seq "$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["seq"])' "$OUT")"
check kind redeem amount 200 lineage.0.lot_id 1 lineage.0.amount 200

STEP="refund 50 of the redemption: back into lot 1"
t 2026-03-05T10:00 reverse "${P[@]}" --ref 106 --points 50 --id 107
rc 0
check result OK account.available 1200
t 2026-03-05T10:00 account "${P[@]}"
check redeemed 300 earned 1500

STEP="return 100 of the 300-point accrual: QV falls by floor(5500*100/300) = 1833"
t 2026-03-06T10:00 reverse "${P[@]}" --ref 102 --points 100 --id 108
rc 0
check result OK account.available 1100
t 2026-03-06T10:00 entry --seq "$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["seq"])' "$OUT")"
check kind reverse amount 100 value 1833 lineage.0.lot_id 2 lineage.0.amount 100
t 2026-03-06T10:00 account "${P[@]}"
check earned 1400 qv_lifetime 4867 tier 2

STEP="overdraft: redeem 5000 with 1100 available"
t 2026-03-10T10:00 redeem "${P[@]}" --points 5000 --id 109
rc 1
check result INSUFFICIENT_POINTS available 1100
bal 2026-03-10T10:00 1100 0 0
t 2026-03-10T10:01 redeem "${P[@]}" --points 5000 --id 109
rc 1
check result EXISTS detail INSUFFICIENT_POINTS

STEP="lots before expiry"
t 2026-03-10T10:01 lots "${P[@]}"
rc 0
check count 3 lots.0.lot_id 1 lots.0.remaining 700 lots.0.expires_at 2026-05-01T00:00:00.000Z \
    lots.1.lot_id 2 lots.1.remaining 200 lots.2.lot_id 3 lots.2.remaining 200 \
    lots.2.expires_at 2026-06-01T00:00:00.000Z

STEP="accrue 100, value 1200 in April (lot 4, expires 2026-08-01): still tier 2"
t 2026-04-15T10:00 accrue "${P[@]}" --points 100 --value 1200 --id 110
rc 0
check result OK account.available 1200 account.tier 2
t 2026-04-15T10:00 account "${P[@]}"
check qv_window 5267 tier 2

STEP="lot 1 has not expired one millisecond before its expiry time"
t 2026-04-30T23:59:59.999 tick
rc 0
check new_entries 0
bal 2026-04-30T23:59:59.999 1200 0 0

STEP="lot 1 expires at 2026-05-01: 700 points"
t 2026-05-01 tick
rc 0
check new_entries 1 entries.0.kind expire entries.0.amount 700 \
    entries.0.time 2026-05-01T00:00:00.000Z entries.0.credit breakage
bal 2026-05-01 500 0 0
t 2026-05-01 balance "${P[@]}" --as-of 2026-04-30
rc 0
check available 1200 points 1200

STEP="2026-06-01: lots 2 and 3 expire, and tier 2 ends: window Mar-May has QV 1200 -> tier 1"
t 2026-06-01 tick
rc 0
check new_entries 2
t 2026-06-01 account "${P[@]}"
check available 100 expired 1100 tier 1 tier_valid_until 2026-09-01T00:00:00.000Z
t 2026-06-01 history "${P[@]}" --limit 2
check count 2
python3 - "$OUT" <<'EOF' || fail "history at 2026-06-01 lacks the downgrade or the expiry"
import json, sys
rows = json.loads(sys.argv[1])["entries"]
kinds = sorted(r["kind"] for r in rows)
assert kinds == ["expire", "tier_change"], kinds
tc = [r for r in rows if r["kind"] == "tier_change"][0]
assert tc["note"].startswith("tier 2 -> 1, downgrade"), tc["note"]
ex = [r for r in rows if r["kind"] == "expire"][0]
assert ex["amount"] == 400, ex
EOF

STEP="lot 4 expires at 2026-08-01"
t 2026-08-01 tick
rc 0
bal 2026-08-01 0 0 0

STEP="2026-09-01: tier 1 ends, window Jun-Aug has no QV -> tier 0 for good"
t 2026-09-01 tick
rc 0
t 2026-09-01 account "${P[@]}"
check tier 0 tier_valid_until never available 0 points 0

STEP="program totals: the member's liability is zero"
t 2026-09-01 program show --program 1
check totals.members 1 totals.issued 1500 totals.redeemed 300 totals.expired 1200 \
    totals.outstanding 0
t 2026-09-01 status
check entries 21

STEP="usage errors exit 2, an unusable directory exits 3"
"$TALLY" --data "$DATA" accrue --program 1 --member 42 >/dev/null 2>&1
RC=$?
rc 2
"$TALLY" --data "$DATA" frobnicate >/dev/null 2>&1
RC=$?
rc 2
"$TALLY" --data "$DATA" redeem --program 1 --member 42 --points lots >/dev/null 2>&1
RC=$?
rc 2
"$TALLY" --data /dev/null/ledger status >/dev/null 2>&1
RC=$?
rc 3
"$TALLY" --help >/dev/null
RC=$?
rc 0

if [ "$FAILS" -gt 0 ]; then
    echo "cli_year: $FAILS check(s) failed"
    exit 1
fi
echo "cli_year: ok"
exit 0
