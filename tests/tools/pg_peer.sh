#!/usr/bin/env bash
# pg_peer.sh: the PostgreSQL peer (bench/peers/pg) on a real, throw-away PostgreSQL 15: the
# generator's postings through tally-bench-pg, then hand-made postings whose results and
# balances are checked one by one with psql.
#
# Checked: a retry with the same id and body is EXISTS with the original outcome (also for a
# recorded failure); the same id with another body is ID_EXISTS_DIFFERENT; a redemption above
# the balance is INSUFFICIENT_POINTS; a hold captured in part, a second capture refused
# (HOLD_NOT_ACTIVE); a partial reversal of an accrual (proportional QV) and of a capture; a
# transfer; an unknown member; a tier upgrade; a pending accrual cancelled, another activated
# by time, a hold timed out and lots expired (lazily, when a later posting touches the
# member). Then, over every member (the generator's too):
# available = active lot points, held = held lot points = active holds, pending = pending lot
# points, and the trial balance is zero; the entries refuse UPDATE.
#
# Run: TALLY_BUILD=build bash tests/tools/pg_peer.sh   (exit 0 pass, 1 fail, 77 skip: PostgreSQL
# cannot run here)
set -u

BUILD=${TALLY_BUILD:-build}
BENCH=$BUILD/tally-bench-pg
here=$(cd "$(dirname "$0")" && pwd)
PG_SH=$here/../../bench/peers/pg/pg.sh
if [ ! -x "$BENCH" ]; then
    echo "skip: $BENCH is not built"
    exit 77
fi

if [ "${1:-}" != "--inside" ]; then
    # pg.sh exits 77 itself when PostgreSQL cannot run here.
    exec bash "$PG_SH" bash "$0" --inside
fi

fail=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1: expected '$2', got '$3'"
        fail=1
    fi
}
q() { $TALLY_PG_PSQL -At -c "$1"; }

# 1. The generator: 300 members, two clients, batches of 50, for 2 s.
if ! out=$("$BENCH" --conninfo "$TALLY_PG_CONNINFO" --setup --members 300 --clients 2 \
        --batch 50 --runs 1 --seconds 2 --instance-base 1 2>&1); then
    echo "FAIL tally-bench-pg: $out"
    exit 1
fi
echo "$out" | tail -2
ok=$(echo "$out" | sed -n 's/^results: OK \([0-9]*\).*/\1/p')
[ "${ok:-0}" -gt 100 ] && echo "ok   generator postings applied ($ok OK)" || { echo "FAIL generator: $out"; fail=1; }

# 2. Hand-made postings: p(ID, KIND, MEMBER, AMOUNT, [REF, VALUE, MEMBER2]) prints code/detail.
$TALLY_PG_PSQL <<'SQL'
CREATE FUNCTION p(id text, kind integer, m bigint, amt bigint, ref text DEFAULT NULL,
                  val bigint DEFAULT 0, m2 bigint DEFAULT 0) RETURNS text LANGUAGE sql AS $$
    SELECT code || '/' || detail FROM ledger_apply(1768953600000, ARRAY[id::uuid], '{1}',
        ARRAY[kind::smallint], '{0}', '{7}', ARRAY[ref::uuid], ARRAY[m], ARRAY[m2], ARRAY[amt],
        ARRAY[val], '{0}', ARRAY['\x0102'::bytea])
$$;
-- The same at time ts (ms), with flags and a duration.
CREATE FUNCTION pt(ts bigint, id text, kind integer, m bigint, amt bigint, flags integer,
                   dur bigint, ref text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT code || '/' || detail FROM ledger_apply(ts, ARRAY[id::uuid], '{1}',
        ARRAY[kind::smallint], ARRAY[flags], '{7}', ARRAY[ref::uuid], ARRAY[m], '{0}',
        ARRAY[amt], '{0}', ARRAY[dur], ARRAY['\x0102'::bytea])
$$;
SQL
U=00000000-0000-4000-8000-0000000000
check "open member 1001"                 0/0  "$(q "SELECT p('${U}01', 2, 1001, 0)")"
check "open member 1002"                 0/0  "$(q "SELECT p('${U}02', 2, 1002, 0)")"
check "open twice: ACCOUNT_EXISTS"       23/0 "$(q "SELECT p('${U}03', 2, 1001, 0)")"
check "accrue 500 (QV 6000)"             0/0  "$(q "SELECT p('${U}10', 3, 1001, 500, NULL, 6000)")"
check "retry, same body: EXISTS/OK"      1/0  "$(q "SELECT p('${U}10', 3, 1001, 500, NULL, 6000)")"
check "same id, other body"              20/0 "$(q "SELECT p('${U}10', 3, 1001, 501, NULL, 6000)")"
check "redeem 600 of 500"                26/0 "$(q "SELECT p('${U}11', 6, 1001, 600)")"
check "retry of a recorded failure"      1/26 "$(q "SELECT p('${U}11', 6, 1001, 600)")"
check "accrue 100"                       0/0  "$(q "SELECT p('${U}12', 3, 1001, 100, NULL, 800)")"
check "hold 300"                         0/0  "$(q "SELECT p('${U}13', 7, 1001, 300)")"
check "available while held"             "300|300" "$(q "SELECT available, held FROM accounts WHERE member = 1001")"
check "capture 200 of the hold"          0/0  "$(q "SELECT p('${U}14', 8, 1001, 200, '${U}13')")"
check "capture again: HOLD_NOT_ACTIVE"   33/0 "$(q "SELECT p('${U}15', 8, 1001, 0, '${U}13')")"
check "after capture: rest released"     "400|0|200" "$(q "SELECT available, held, redeemed FROM accounts WHERE member = 1001")"
check "reverse 100 of the accrual"       0/0  "$(q "SELECT p('${U}16', 10, 1001, 100, '${U}10')")"
check "proportional QV: 6800 - 1200"     5600 "$(q "SELECT qv_lifetime FROM accounts WHERE member = 1001")"
check "reverse 50 of the capture"        0/0  "$(q "SELECT p('${U}17', 10, 1001, 50, '${U}14')")"
check "reverse more than is left"        35/0 "$(q "SELECT p('${U}18', 10, 1001, 500, '${U}14')")"
check "transfer 50 to 1002"              0/0  "$(q "SELECT p('${U}19', 11, 1001, 50, NULL, 0, 1002)")"
check "redeem for an unknown member"     24/0 "$(q "SELECT p('${U}1a', 6, 5555, 10)")"
check "member 1001 after all"            "300|0|150|1" "$(q "SELECT available, held, redeemed, tier FROM accounts WHERE member = 1001")"
check "member 1002 after all"            "50|1" "$(q "SELECT available, lots_open FROM accounts WHERE member = 1002")"
# Lots 1 (500) and 2 (100) expire together: the lower id is used first, and everything
# (hold, release, reversals, transfer) went through lot 1.
check "soonest-expiring, then lowest id" "200,100" "$(q "SELECT string_agg(remaining::text, ',' ORDER BY expires_at, lot_id) FROM lots WHERE member = 1001")"

# Time-driven work, done when a posting next touches the member: pending activation, hold
# timeout (the program's default, 3 hours), expiry (30 days).
T0=1768953600000 DAY=86400000 WEEK=604800000
check "open member 1003"                 0/0  "$(q "SELECT pt($T0, '${U}30', 2, 1003, 0, 0, 0)")"
check "pending accrual 100"              0/0  "$(q "SELECT pt($T0, '${U}31', 3, 1003, 100, 2, $WEEK)")"
check "pending accrual 50"               0/0  "$(q "SELECT pt($T0, '${U}32', 3, 1003, 50, 2, $WEEK)")"
check "cancel it"                        0/0  "$(q "SELECT pt($T0, '${U}33', 5, 1003, 0, 0, 0, '${U}32')")"
check "cancel again: NOT_PENDING"        31/0 "$(q "SELECT pt($T0, '${U}34', 5, 1003, 0, 0, 0, '${U}32')")"
check "accrue 200"                       0/0  "$(q "SELECT pt($T0, '${U}35', 3, 1003, 200, 0, 0)")"
check "hold 80 (default timeout)"        0/0  "$(q "SELECT pt($T0, '${U}36', 7, 1003, 80, 0, 0)")"
check "pending, held, available"         "100|80|120" "$(q "SELECT pending, held, available FROM accounts WHERE member = 1003")"
check "8 days later, adjust +10"         0/0  "$(q "SELECT pt($((T0 + 8 * DAY)), '${U}37', 12, 1003, 10, 0, 0)")"
check "activated and timed out"          "0|0|310|4" "$(q "SELECT pending, held, available, (SELECT status FROM holds WHERE member = 1003) FROM accounts WHERE member = 1003")"
check "45 days later, adjust +1"         0/0  "$(q "SELECT pt($((T0 + 45 * DAY)), '${U}38', 12, 1003, 1, 0, 0)")"
check "everything older expired"         "1|310" "$(q "SELECT available, expired FROM accounts WHERE member = 1003")"

# 3. Every member, the generator's included.
check "available = active lot points"    0 "$(q "SELECT count(*) FROM accounts a WHERE available <> (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.program = a.program AND l.member = a.member AND activate_at = 0)")"
check "pending = pending lot points"     0 "$(q "SELECT count(*) FROM accounts a WHERE pending <> (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.program = a.program AND l.member = a.member AND activate_at <> 0)")"
check "held = held lot points"           0 "$(q "SELECT count(*) FROM accounts a WHERE held <> (SELECT coalesce(sum(held), 0) FROM lots l WHERE l.program = a.program AND l.member = a.member)")"
check "held = active holds"              0 "$(q "SELECT count(*) FROM accounts a WHERE held <> (SELECT coalesce(sum(amount), 0) FROM holds h WHERE h.program = a.program AND h.member = a.member AND status = 1)")"
check "trial balance is zero"            0 "$(q "SELECT imbalance FROM trial_balance")"
if $TALLY_PG_PSQL -c "UPDATE entries SET amount = amount + 1 WHERE seq = 1" >/dev/null 2>&1; then
    echo "FAIL entries accepted an UPDATE"; fail=1
else
    echo "ok   entries refuse UPDATE"
fi
exit $fail
