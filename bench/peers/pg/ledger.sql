-- ledger.sql: the PostgreSQL peer's posting logic: tally's ledger rules (docs/LEDGER.md) in
-- PL/pgSQL, one call per batch of postings (ledger_apply), for docs/BENCHMARKS.md ("The
-- PostgreSQL peer"). Loaded after schema.sql.
--
-- Design notes
-- ------------
-- * One call applies a batch in one transaction: the caller passes the postings as parallel
--   arrays (one array per field; text-format parameters through libpq) and gets one row per
--   posting back (code, detail, seq: include/tally_results.h's codes). A batch of one is the
--   per-posting case. The client's COMMIT is durable (synchronous_commit = on, fsync = on).
-- * Concurrency: the batch first takes a transaction-scoped advisory lock per member it
--   names (account and account2), in ascending order, in one statement: two batches never
--   deadlock, and a member's lots, holds and account row change under its lock only. Reads
--   then run in READ COMMITTED, each statement seeing what earlier lock holders committed.
--   There is no other shared row: system account balances are derived from the entries.
-- * Idempotency (law 4): one query looks up every id of the batch in postings; only ids
--   found there (or repeated inside the batch) are probed one by one. A found id with the
--   same body gives EXISTS (detail = its result, seq = its first entry); a different body
--   gives ID_EXISTS_DIFFERENT. State-dependent failures are recorded like successes;
--   validation failures are not.
-- * Time-driven work (pending activation, hold time-out, expiry, tier evaluation) is done
--   lazily: each account keeps next_due, the earliest time something is due for it, and
--   the first posting that touches the member at or after that time does the work first
--   (entries stamped with their due times, written then). ledger_tick(ts) does the same for
--   every member that is due, for a nightly job; the benchmark does not call it (see
--   docs/BENCHMARKS.md for what that changes).
-- * Every loop is bounded: by the batch length, by a member's open lots (at most 1,024,
--   LOTS_LIMIT) or active holds, or by an explicit count.
--
-- Result codes used (tally_results.h): OK 0, EXISTS 1, ID_ZERO 2, KIND_INVALID 3,
-- FLAGS_INVALID 4, ACCOUNT_INVALID 7, AMOUNT_ZERO 8, AMOUNT_TOO_LARGE 9, REF_ZERO 11,
-- SAME_ACCOUNT 12, DURATION_INVALID 14, ID_EXISTS_DIFFERENT 20, PROGRAM_EXISTS 21,
-- PROGRAM_NOT_FOUND 22, ACCOUNT_EXISTS 23, ACCOUNT_NOT_FOUND 24, ACCOUNT_CLOSED 25,
-- INSUFFICIENT_POINTS 26, REF_NOT_FOUND 27, REF_WRONG_KIND 28, REF_FAILED 29,
-- REF_ACCOUNT_MISMATCH 30, NOT_PENDING 31, REF_PENDING 32, HOLD_NOT_ACTIVE 33,
-- EXCEEDS_HOLD 34, EXCEEDS_ORIGINAL 35, ACCOUNT_HAS_HOLDS 36, LOTS_LIMIT 38.

-- ---------------------------------------------------------------------------------------------
-- Calendar helpers (program civil time = UTC + tz_offset_min).
-- ---------------------------------------------------------------------------------------------

-- Months since 1970-01 of civil time t. One expression, no FROM: the planner inlines it into
-- the calling statement's cached plan (a SQL function it cannot inline is parsed and planned
-- again in every transaction).
CREATE OR REPLACE FUNCTION civil_month(t bigint, tz integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((extract(year FROM to_timestamp((t + tz * 60000) / 1000.0) AT TIME ZONE 'UTC') - 1970)
            * 12 + extract(month FROM to_timestamp((t + tz * 60000) / 1000.0) AT TIME ZONE 'UTC')
            - 1)::integer
$$;

-- UTC milliseconds of the start of civil month m.
CREATE OR REPLACE FUNCTION month_start_ms(m integer, tz integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM make_timestamp(1970 + m / 12, m % 12 + 1, 1, 0, 0, 0)) * 1000)::bigint
           - tz * 60000::bigint
$$;

-- Expiry time of a lot earned at t (docs/LEDGER.md "Expiry policies").
CREATE OR REPLACE FUNCTION lot_expiry(p programs, t bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
#variable_conflict use_variable
DECLARE
    tzms bigint := p.tz_offset_min * 60000::bigint;
    m integer;
BEGIN
    CASE p.expiry
    WHEN 0 THEN RETURN 9223372036854775807;
    WHEN 1 THEN RETURN p.expiry_fixed_at;
    WHEN 2 THEN RETURN (div(t + tzms, 86400000) + p.expiry_n + 1) * 86400000 - tzms;
    WHEN 3 THEN RETURN month_start_ms(civil_month(t, p.tz_offset_min) + p.expiry_n + 1, p.tz_offset_min);
    WHEN 4 THEN
        m := civil_month(t, p.tz_offset_min);
        RETURN month_start_ms((m / 3 + p.expiry_n + 1) * 3, p.tz_offset_min);
    ELSE
        m := civil_month(t, p.tz_offset_min);
        RETURN month_start_ms((m / 12 + p.expiry_n + 1) * 12, p.tz_offset_min);
    END CASE;
END $$;

-- Window QV at civil month m from a 12-month ring whose newest bucket is month top.
CREATE OR REPLACE FUNCTION window_qv(qv bigint[], top integer, m integer, n integer, win smallint)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
#variable_conflict use_variable
DECLARE
    s bigint := 0;
    first integer := CASE WHEN win = 1 THEN m - m % 12 ELSE m - n + 1 END;
BEGIN
    FOR k IN greatest(first, top - 11) .. least(m, top) LOOP   -- at most 12 months
        s := s + qv[k % 12 + 1];
    END LOOP;
    RETURN s;
END $$;

-- The highest tier whose threshold the window QV reaches.
CREATE OR REPLACE FUNCTION earned_tier(p programs, w bigint) RETURNS smallint
LANGUAGE plpgsql IMMUTABLE AS $$
#variable_conflict use_variable
DECLARE
    t smallint := 0;
BEGIN
    FOR k IN 1 .. p.tier_count - 1 LOOP
        EXIT WHEN w < p.thresholds[k];
        t := k;
    END LOOP;
    RETURN t;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Lots.
-- ---------------------------------------------------------------------------------------------

-- Take p_amount active points from a member's lots, lot p_first first (0: none), then
-- soonest-expiring first. p_hold: the points become held in their lots instead of leaving.
-- The caller has checked that the member has them. dropped: lots deleted (now empty).
CREATE OR REPLACE FUNCTION lots_take(p_program integer, p_member bigint, p_amount bigint, p_hold boolean,
                          p_first bigint, OUT ids bigint[], OUT exps bigint[],
                          OUT earns bigint[], OUT amts bigint[], OUT dropped integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    need bigint := p_amount;
    l record;
    t bigint;
BEGIN
    ids := '{}'; exps := '{}'; earns := '{}'; amts := '{}'; dropped := 0;
    FOR l IN SELECT lot_id, expires_at, earned_at, remaining, held,
                    (lot_id = p_first) AS preferred
             FROM lots
             WHERE program = p_program AND member = p_member AND activate_at = 0
               AND remaining > 0
             ORDER BY (lot_id = p_first) DESC, expires_at, lot_id
    LOOP
        EXIT WHEN need = 0;
        t := least(need, l.remaining);
        need := need - t;
        ids := ids || l.lot_id; exps := exps || l.expires_at; earns := earns || l.earned_at;
        amts := amts || t;
        IF l.remaining = t AND l.held = 0 AND NOT p_hold THEN
            DELETE FROM lots WHERE program = p_program AND member = p_member
                               AND expires_at = l.expires_at AND lot_id = l.lot_id;
            dropped := dropped + 1;
        ELSE
            UPDATE lots SET remaining = remaining - t,
                            held = held + CASE WHEN p_hold THEN t ELSE 0 END
            WHERE program = p_program AND member = p_member
              AND expires_at = l.expires_at AND lot_id = l.lot_id;
        END IF;
    END LOOP;
    IF need <> 0 THEN
        RAISE EXCEPTION 'lots_take: member % has % points fewer than its balance', p_member, need;
    END IF;
END $$;

-- Give held points of a hold's lots back (p_release) or spend them, lot by lot in order, at
-- most p_amount in all. Returns the amounts per lot; lots left empty are deleted.
CREATE OR REPLACE FUNCTION lots_unhold(p_program integer, p_member bigint, p_ids bigint[], p_amts bigint[],
                            p_amount bigint, p_release boolean,
                            OUT ids bigint[], OUT amts bigint[], OUT dropped integer,
                            OUT earliest_expiry bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    need bigint := p_amount;
    t bigint;
    l record;
BEGIN
    ids := '{}'; amts := '{}'; dropped := 0; earliest_expiry := 9223372036854775807;
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        EXIT WHEN need = 0;
        t := least(need, p_amts[i]);
        CONTINUE WHEN t = 0;
        need := need - t;
        ids := ids || p_ids[i]; amts := amts || t;
        SELECT expires_at, remaining, held INTO STRICT l FROM lots
            WHERE program = p_program AND member = p_member AND lot_id = p_ids[i];
        IF NOT p_release AND l.remaining = 0 AND l.held = t THEN
            DELETE FROM lots WHERE program = p_program AND member = p_member
                               AND expires_at = l.expires_at AND lot_id = p_ids[i];
            dropped := dropped + 1;
        ELSE
            UPDATE lots SET held = held - t,
                            remaining = remaining + CASE WHEN p_release THEN t ELSE 0 END
            WHERE program = p_program AND member = p_member AND expires_at = l.expires_at
              AND lot_id = p_ids[i];
            IF p_release THEN
                earliest_expiry := least(earliest_expiry, l.expires_at);
            END IF;
        END IF;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Time-driven work for one member (lazy: called when a posting touches a due member).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION member_due(p programs, p_member bigint, p_ts bigint) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts;
    l record;
    h record;
    u record;
    s bigint;
    exp_ids bigint[] := '{}'; exp_amts bigint[] := '{}'; exp_exps bigint[] := '{}';
    exp_earns bigint[] := '{}';
    exp_total bigint := 0; exp_at bigint := 0; dropped integer := 0;
    e smallint; tnew smallint; w bigint; mv integer; until bigint; reason integer;
BEGIN
    SELECT * INTO STRICT a FROM accounts WHERE program = p.program AND member = p_member;
    -- 1. Pending lots whose window has passed become available.
    FOR l IN SELECT lot_id, expires_at, remaining, activate_at FROM lots
             WHERE program = p.program AND member = p_member AND activate_at <> 0
               AND activate_at <= p_ts ORDER BY activate_at, lot_id
    LOOP
        UPDATE lots SET activate_at = 0
            WHERE program = p.program AND member = p_member AND lot_id = l.lot_id;
        INSERT INTO entries (ts, program, kind, flags, debit, credit, amount, lot_id,
                             lot_ids, lot_amounts)
        VALUES (l.activate_at, p.program, 4, 8, p_member, p_member, l.remaining, l.lot_id,
                ARRAY[l.lot_id], ARRAY[l.remaining]) RETURNING seq INTO s;
        a.pending := a.pending - l.remaining; a.available := a.available + l.remaining;
        a.last_seq := s;
    END LOOP;
    -- 2. Holds past their timeout are released (TIMED_OUT).
    FOR h IN SELECT id, seq, amount, timeout_at, lot_ids, lot_amounts FROM holds
             WHERE program = p.program AND member = p_member AND status = 1
               AND timeout_at <= p_ts ORDER BY timeout_at
    LOOP
        SELECT * INTO u FROM lots_unhold(p.program, p_member, h.lot_ids, h.lot_amounts,
                                         h.amount, true);
        INSERT INTO entries (ts, program, kind, flags, debit, credit, amount, ref_seq,
                             lot_ids, lot_amounts)
        VALUES (h.timeout_at, p.program, 9, 8, p_member, p_member, h.amount, h.seq,
                u.ids, u.amts) RETURNING seq INTO s;
        UPDATE holds SET status = 4 WHERE id = h.id;
        a.held := a.held - h.amount; a.available := a.available + h.amount;
        a.holds_active := a.holds_active - 1; a.last_seq := s;
    END LOOP;
    -- 3. Active points of lots past their expiry go to breakage: one EXPIRE entry.
    FOR l IN SELECT lot_id, expires_at, earned_at, remaining, held FROM lots
             WHERE program = p.program AND member = p_member AND expires_at <= p_ts
               AND activate_at = 0 AND remaining > 0 ORDER BY expires_at, lot_id
    LOOP
        exp_ids := exp_ids || l.lot_id; exp_amts := exp_amts || l.remaining;
        exp_exps := exp_exps || l.expires_at; exp_earns := exp_earns || l.earned_at;
        exp_total := exp_total + l.remaining; exp_at := l.expires_at;
        IF l.held = 0 THEN
            DELETE FROM lots WHERE program = p.program AND member = p_member AND lot_id = l.lot_id;
            dropped := dropped + 1;
        ELSE
            UPDATE lots SET remaining = 0
                WHERE program = p.program AND member = p_member AND lot_id = l.lot_id;
        END IF;
    END LOOP;
    IF exp_total > 0 THEN
        INSERT INTO entries (ts, program, kind, flags, debit, credit, amount, lot_ids,
                             lot_expires, lot_earned, lot_amounts)
        VALUES (exp_at, p.program, 14, 8, p_member, -3, exp_total, exp_ids, exp_exps,
                exp_earns, exp_amts) RETURNING seq INTO s;
        a.available := a.available - exp_total; a.expired := a.expired + exp_total;
        a.lots_open := a.lots_open - dropped; a.last_seq := s;
    END IF;
    -- 4. Tier evaluation at the end of validity (DOWN_STEP, DOWN_EARNED); at most 24 steps.
    FOR step IN 1 .. 24 LOOP
        EXIT WHEN a.tier = 0 OR a.tier_valid_until > p_ts OR p.tier_mode = 0;
        mv := civil_month(a.tier_valid_until - 1, p.tz_offset_min);
        w := window_qv(a.qv, a.qv_month, mv, p.window_months, p.win);
        e := earned_tier(p, w);
        IF e >= a.tier THEN
            tnew := e; reason := 2;
        ELSE
            tnew := CASE WHEN p.tier_mode = 1 THEN greatest(e, a.tier - 1) ELSE e END;
            reason := 3;
        END IF;
        until := CASE WHEN tnew = 0 THEN 9223372036854775807
                      ELSE month_start_ms(mv + p.validity_months + 1, p.tz_offset_min) END;
        INSERT INTO entries (ts, program, kind, flags, debit, credit, amount, value, code,
                             time_a, time_b, tier_from, tier_to)
        VALUES (a.tier_valid_until, p.program, 15, 8, p_member, p_member, 0, w, reason,
                until, 1, a.tier, tnew) RETURNING seq INTO s;
        a.tier := tnew; a.tier_valid_until := until; a.last_seq := s;
    END LOOP;
    -- What is due next.
    SELECT least(a.tier_valid_until,
                 (SELECT min(CASE WHEN activate_at <> 0 THEN activate_at ELSE expires_at END)
                  FROM lots WHERE program = p.program AND member = p_member
                    AND (activate_at <> 0 OR remaining > 0)),
                 (SELECT min(timeout_at) FROM holds
                  WHERE program = p.program AND member = p_member AND status = 1))
    INTO a.next_due;
    UPDATE accounts SET available = a.available, pending = a.pending, held = a.held,
                        expired = a.expired, holds_active = a.holds_active,
                        lots_open = a.lots_open, tier = a.tier,
                        tier_valid_until = a.tier_valid_until, next_due = a.next_due,
                        last_seq = a.last_seq
    WHERE program = p.program AND member = p_member;
END $$;

-- Every due member of a program, up to p_limit of them (a nightly job would loop on it).
CREATE OR REPLACE FUNCTION ledger_tick(p_program integer, p_ts bigint, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    p programs;
    m bigint;
    n integer := 0;
BEGIN
    SELECT * INTO STRICT p FROM programs WHERE program = p_program;
    FOR m IN SELECT member FROM accounts WHERE program = p_program AND next_due <= p_ts
             AND status = 1 ORDER BY member LIMIT p_limit
    LOOP
        PERFORM pg_advisory_xact_lock(m);
        PERFORM member_due(p, m, p_ts);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Account and reference checks.
-- ---------------------------------------------------------------------------------------------

-- The member's account, due work done first; a row of NULLs if there is none.
CREATE OR REPLACE FUNCTION account_get(p programs, p_member bigint, p_ts bigint) RETURNS accounts
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts;
BEGIN
    SELECT * INTO a FROM accounts WHERE program = p.program AND member = p_member;
    IF FOUND AND a.status = 1 AND a.next_due <= p_ts THEN
        PERFORM member_due(p, p_member, p_ts);
        SELECT * INTO a FROM accounts WHERE program = p.program AND member = p_member;
    END IF;
    RETURN a;
END $$;

-- Account checks: ACCOUNT_NOT_FOUND, ACCOUNT_CLOSED, or 0.
CREATE OR REPLACE FUNCTION account_code(a accounts) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a.member IS NULL THEN 24 WHEN a.status <> 1 THEN 25 ELSE 0 END
$$;

-- Ref checks on the referenced posting r (a row of NULLs if none): REF_NOT_FOUND,
-- REF_FAILED, REF_WRONG_KIND (not one of p_kinds), REF_ACCOUNT_MISMATCH, or 0.
CREATE OR REPLACE FUNCTION ref_code(r postings, p_kinds smallint[], p_member bigint) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r.id IS NULL THEN 27 WHEN r.result <> 0 THEN 29
                WHEN NOT (r.kind = ANY (p_kinds)) THEN 28 WHEN r.account <> p_member THEN 30
                ELSE 0 END
$$;

-- QV change in civil month m (positive: earned; negative: removed from an earlier month).
CREATE OR REPLACE FUNCTION qv_add(INOUT a accounts, m integer, v bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    IF m > a.qv_month THEN
        FOR k IN a.qv_month + 1 .. least(m, a.qv_month + 12) LOOP
            a.qv[k % 12 + 1] := 0;
        END LOOP;
        a.qv_month := m;
    END IF;
    IF m > a.qv_month - 12 THEN
        a.qv[m % 12 + 1] := greatest(a.qv[m % 12 + 1] + v, 0);
    END IF;
    a.qv_lifetime := greatest(a.qv_lifetime + v, 0);
END $$;

-- ---------------------------------------------------------------------------------------------
-- Postings. Each returns the first entry's seq (> 0) on success, or minus the result code.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION post_open(p programs, id uuid, m bigint, ts bigint, ud bytea, mt integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    s bigint;
BEGIN
    PERFORM 1 FROM accounts WHERE program = p.program AND member = m;
    IF FOUND THEN RETURN -23; END IF;
    INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, user_data)
    VALUES (ts, id, p.program, 2, m, m, 0, ud) RETURNING seq INTO s;
    INSERT INTO accounts (program, member, status, qv_month, opened_at, last_seq)
    VALUES (p.program, m, 1, mt, ts, s);
    RETURN s;
END $$;

-- exp and mt are the batch's lot expiry and civil month (the same for the whole batch).
CREATE OR REPLACE FUNCTION post_accrue(p programs, id uuid, m bigint, amt bigint, val bigint, flags integer,
                            dur bigint, code bigint, ts bigint, ud bytea, exp bigint,
                            mt integer) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts;
    s bigint; s2 bigint;
    lot bigint := nextval('lot_ids');
    act bigint := CASE WHEN flags & 2 <> 0 THEN ts + dur ELSE 0 END;
    e smallint; w bigint; until bigint;
BEGIN
    -- account_get and account_code, inlined: ACCRUE is 70% of the traffic.
    SELECT * INTO a FROM accounts WHERE program = p.program AND member = m;
    IF NOT FOUND THEN RETURN -24; END IF;
    IF a.status <> 1 THEN RETURN -25; END IF;
    IF a.next_due <= ts THEN
        a := account_get(p, m, ts);
    END IF;
    IF a.lots_open >= 1024 THEN RETURN -38; END IF;
    -- The lot is the entry's lot_id, expiring at time_a, pending until time_b (no arrays).
    INSERT INTO entries (ts, posting_id, program, kind, flags, debit, credit, amount, value,
                         lot_id, time_a, time_b, code, user_data)
    VALUES (ts, id, p.program, 3, flags & 2, -1, m, amt, val, lot, exp, act, code, ud)
    RETURNING seq INTO s;
    INSERT INTO lots (program, member, expires_at, lot_id, earned_at, origin_seq, amount,
                      remaining, activate_at)
    VALUES (p.program, m, exp, lot, ts, s, amt, amt, act);
    IF act <> 0 THEN
        a.pending := a.pending + amt;
        a.next_due := least(a.next_due, act);
    ELSE
        a.available := a.available + amt;
        a.next_due := least(a.next_due, exp);
    END IF;
    a.earned := a.earned + amt; a.lots_open := a.lots_open + 1; a.last_seq := s;
    IF mt = a.qv_month THEN   -- the common case, without a call
        a.qv[mt % 12 + 1] := a.qv[mt % 12 + 1] + val;
        a.qv_lifetime := a.qv_lifetime + val;
    ELSE
        a := qv_add(a, mt, val);
    END IF;
    -- Upgrade on the accrual that crosses a threshold.
    IF a.tier < p.tier_count - 1 THEN
        w := window_qv(a.qv, a.qv_month, mt, p.window_months, p.win);
        e := earned_tier(p, w);
    ELSE
        e := a.tier;
    END IF;
    IF e > a.tier THEN
        until := CASE WHEN p.tier_mode = 0 THEN 9223372036854775807
                      ELSE month_start_ms(mt + p.validity_months + 1, p.tz_offset_min) END;
        INSERT INTO entries (ts, posting_id, program, kind, flags, debit, credit, amount,
                             value, code, time_a, time_b, tier_from, tier_to)
        VALUES (ts, id, p.program, 15, 8, m, m, 0, w, 1, until, 1, a.tier, e)
        RETURNING seq INTO s2;
        a.tier := e; a.tier_valid_until := until; a.last_seq := s2;
        a.next_due := least(a.next_due, until);
    END IF;
    UPDATE accounts SET available = a.available, pending = a.pending, earned = a.earned,
                        lots_open = a.lots_open, qv = a.qv, qv_month = a.qv_month,
                        qv_lifetime = a.qv_lifetime, tier = a.tier,
                        tier_valid_until = a.tier_valid_until, next_due = a.next_due,
                        last_seq = a.last_seq
    WHERE program = p.program AND member = m;
    RETURN s;
END $$;

-- ACTIVATE (p_cancel false) or CANCEL (true) of a pending accrual.
CREATE OR REPLACE FUNCTION post_pending(p programs, id uuid, m bigint, ref uuid, p_cancel boolean,
                             code bigint, ts bigint, ud bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; r postings; c integer; acc record; l record; s bigint;
BEGIN
    SELECT * INTO r FROM postings WHERE postings.id = ref;
    c := ref_code(r, '{3}', m);
    IF c <> 0 THEN RETURN -c; END IF;
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    SELECT seq, ts, lot_id, amount, value INTO STRICT acc FROM entries WHERE seq = r.seq;
    SELECT expires_at, remaining, activate_at INTO l FROM lots
        WHERE program = p.program AND member = m AND lot_id = acc.lot_id;
    IF NOT FOUND OR l.activate_at = 0 THEN RETURN -31; END IF;
    IF p_cancel THEN
        INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, value,
                             ref_seq, lot_id, code, user_data, lot_ids, lot_amounts)
        VALUES (ts, id, p.program, 5, m, -1, acc.amount, acc.value, acc.seq, acc.lot_id, code,
                ud, ARRAY[acc.lot_id], ARRAY[acc.amount]) RETURNING seq INTO s;
        DELETE FROM lots WHERE program = p.program AND member = m AND lot_id = acc.lot_id;
        a.pending := a.pending - acc.amount; a.earned := a.earned - acc.amount;
        a.lots_open := a.lots_open - 1;
        a := qv_add(a, civil_month(acc.ts, p.tz_offset_min), -acc.value);
        UPDATE postings SET reversed = acc.amount, reversed_value = acc.value WHERE id = ref;
    ELSE
        INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, ref_seq,
                             lot_id, code, user_data, lot_ids, lot_amounts)
        VALUES (ts, id, p.program, 4, m, m, l.remaining, acc.seq, acc.lot_id, code, ud,
                ARRAY[acc.lot_id], ARRAY[l.remaining]) RETURNING seq INTO s;
        UPDATE lots SET activate_at = 0
            WHERE program = p.program AND member = m AND lot_id = acc.lot_id;
        a.pending := a.pending - l.remaining; a.available := a.available + l.remaining;
        a.next_due := least(a.next_due, l.expires_at);
    END IF;
    UPDATE accounts SET available = a.available, pending = a.pending, earned = a.earned,
                        lots_open = a.lots_open, qv = a.qv, qv_month = a.qv_month,
                        qv_lifetime = a.qv_lifetime, next_due = a.next_due, last_seq = s
    WHERE program = p.program AND member = m;
    RETURN s;
END $$;

-- REDEEM, HOLD, negative ADJUST: points leave the member's lots soonest-expiring first.
CREATE OR REPLACE FUNCTION post_spend(p programs, id uuid, kind smallint, m bigint, amt bigint,
                           dur bigint, code bigint, ts bigint, ud bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; c integer; t record; s bigint; timeout bigint;
BEGIN
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    IF a.available < amt THEN RETURN -26; END IF;
    SELECT * INTO t FROM lots_take(p.program, m, amt, kind = 7, 0);
    IF kind = 7 THEN
        timeout := ts + CASE WHEN dur = 0 THEN p.hold_timeout_ms ELSE dur END;
        INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, time_a, code,
                             user_data, lot_ids, lot_expires, lot_earned, lot_amounts)
        VALUES (ts, id, p.program, 7, m, m, amt, timeout, code, ud, t.ids, t.exps, t.earns,
                t.amts) RETURNING seq INTO s;
        INSERT INTO holds (id, program, member, seq, amount, timeout_at, status, lot_ids,
                           lot_amounts)
        VALUES (id, p.program, m, s, amt, timeout, 1, t.ids, t.amts);
        UPDATE accounts SET available = available - amt, held = held + amt,
                            holds_active = holds_active + 1,
                            next_due = least(next_due, timeout), last_seq = s
        WHERE program = p.program AND member = m;
    ELSE
        INSERT INTO entries (ts, posting_id, program, kind, flags, debit, credit, amount, code,
                             user_data, lot_ids, lot_expires, lot_earned, lot_amounts)
        VALUES (ts, id, p.program, kind, CASE WHEN kind = 12 THEN 4 ELSE 0 END, m,
                CASE WHEN kind = 12 THEN -4 ELSE -2 END, amt, code, ud, t.ids, t.exps,
                t.earns, t.amts) RETURNING seq INTO s;
        UPDATE accounts SET available = available - amt,
                            redeemed = redeemed + CASE WHEN kind = 6 THEN amt ELSE 0 END,
                            adjusted = adjusted - CASE WHEN kind = 12 THEN amt ELSE 0 END,
                            lots_open = lots_open - t.dropped, last_seq = s
        WHERE program = p.program AND member = m;
    END IF;
    RETURN s;
END $$;

-- CAPTURE (all or part; the rest is released) or RELEASE of a hold.
CREATE OR REPLACE FUNCTION post_resolve(p programs, id uuid, kind smallint, m bigint, ref uuid, amt bigint,
                             code bigint, ts bigint, ud bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; r postings; c integer; h holds; cap record; rel record;
    cap_ids bigint[] := '{}'; cap_amts bigint[] := '{}';
    s bigint := 0; s2 bigint; take bigint; rest bigint; dropped integer := 0;
    due bigint := 9223372036854775807;
BEGIN
    SELECT * INTO r FROM postings WHERE postings.id = ref;
    c := ref_code(r, '{7}', m);
    IF c <> 0 THEN RETURN -c; END IF;
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    SELECT * INTO STRICT h FROM holds WHERE holds.id = ref;
    IF h.status <> 1 THEN RETURN -33; END IF;
    take := CASE WHEN kind = 9 THEN 0 WHEN amt = 0 THEN h.amount ELSE amt END;
    IF take > h.amount THEN RETURN -34; END IF;
    rest := h.amount - take;
    IF take > 0 THEN
        SELECT * INTO cap FROM lots_unhold(p.program, m, h.lot_ids, h.lot_amounts, take, false);
        INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, ref_seq, code,
                             user_data, lot_ids, lot_amounts)
        VALUES (ts, id, p.program, 8, m, -2, take, h.seq, code, ud, cap.ids, cap.amts)
        RETURNING seq INTO s;
        dropped := cap.dropped; cap_ids := cap.ids; cap_amts := cap.amts;
    END IF;
    IF rest > 0 THEN
        -- What the capture did not take, from the same lots in order.
        SELECT * INTO rel FROM lots_unhold(p.program, m,
            (SELECT array_agg(x.i ORDER BY x.o) FROM unnest(h.lot_ids) WITH ORDINALITY x(i, o)),
            (SELECT array_agg(greatest(x.a - coalesce(y.a, 0), 0) ORDER BY x.o)
             FROM unnest(h.lot_ids, h.lot_amounts) WITH ORDINALITY x(i, a, o)
             LEFT JOIN unnest(cap_ids, cap_amts) y(i, a) ON y.i = x.i),
            rest, true);
        INSERT INTO entries (ts, posting_id, program, kind, flags, debit, credit, amount,
                             ref_seq, code, user_data, lot_ids, lot_amounts)
        VALUES (ts, id, p.program, 9, CASE WHEN take > 0 THEN 16 ELSE 0 END, m, m, rest, h.seq,
                code, ud, rel.ids, rel.amts) RETURNING seq INTO s2;
        IF s = 0 THEN s := s2; END IF;
        due := rel.earliest_expiry;   -- released into an expired lot: it expires at once
    END IF;
    UPDATE holds SET status = CASE WHEN take > 0 THEN 2 ELSE 3 END, captured = take
    WHERE holds.id = ref;
    UPDATE accounts SET held = held - h.amount, available = available + rest,
                        redeemed = redeemed + take, holds_active = holds_active - 1,
                        lots_open = lots_open - dropped, next_due = least(next_due, due),
                        last_seq = greatest(s, coalesce(s2, 0))
    WHERE program = p.program AND member = m;
    IF due <= ts THEN
        PERFORM member_due(p, m, ts);
    END IF;
    RETURN s;
END $$;

-- REVERSE of an ACCRUE (points leave), or of a REDEEM or CAPTURE (points come back).
CREATE OR REPLACE FUNCTION post_reverse(p programs, id uuid, m bigint, ref uuid, amt bigint, code bigint,
                             ts bigint, ud bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; r postings; c integer; o record; t record; s bigint;
    left_ bigint; rr bigint; qv_out bigint; n integer; share bigint[]; v_restored bigint[];
    room bigint; sum_room bigint := 0; extra bigint; due bigint := 9223372036854775807;
    created integer := 0; l record;
BEGIN
    SELECT * INTO r FROM postings WHERE postings.id = ref;
    c := ref_code(r, '{3,6,8}', m);
    IF c <> 0 THEN RETURN -c; END IF;
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    SELECT * INTO STRICT o FROM entries WHERE seq = r.seq;
    left_ := o.amount - r.reversed;
    rr := CASE WHEN amt = 0 THEN left_ ELSE amt END;
    IF rr > left_ OR rr = 0 THEN RETURN -35; END IF;
    IF r.kind = 3 THEN
        PERFORM 1 FROM lots
            WHERE program = p.program AND member = m AND lot_id = o.lot_id AND activate_at <> 0;
        IF FOUND THEN RETURN -32; END IF;
        IF a.available < rr THEN RETURN -26; END IF;
        SELECT * INTO t FROM lots_take(p.program, m, rr, false, o.lot_id);
        qv_out := div(o.value::numeric * (r.reversed + rr), o.amount)
                - div(o.value::numeric * r.reversed, o.amount);
        INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, value,
                             ref_seq, code, user_data, lot_ids, lot_expires, lot_earned,
                             lot_amounts)
        VALUES (ts, id, p.program, 10, m, -1, rr, qv_out, o.seq, code, ud, t.ids, t.exps,
                t.earns, t.amts) RETURNING seq INTO s;
        a := qv_add(a, civil_month(o.ts, p.tz_offset_min), -qv_out);
        UPDATE postings SET reversed = reversed + rr, reversed_value = reversed_value + qv_out
        WHERE postings.id = ref;
        UPDATE accounts SET available = available - rr, earned = earned - rr, qv = a.qv,
                            qv_month = a.qv_month, qv_lifetime = a.qv_lifetime,
                            lots_open = lots_open - t.dropped, last_seq = s
        WHERE program = p.program AND member = m;
        RETURN s;
    END IF;
    -- A redemption or capture: restore in proportion to what each lot gave and has not
    -- had back yet, then the remainder one point at a time in lineage order.
    n := cardinality(o.lot_ids);
    v_restored := coalesce(r.restored, array_fill(0::bigint, ARRAY[n]));
    share := array_fill(0::bigint, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        sum_room := sum_room + o.lot_amounts[i] - v_restored[i];
    END LOOP;
    extra := rr;
    FOR i IN 1 .. n LOOP
        share[i] := div((o.lot_amounts[i] - v_restored[i])::numeric * rr, sum_room);
        extra := extra - share[i];
    END LOOP;
    FOR i IN 1 .. n LOOP
        EXIT WHEN extra = 0;
        room := o.lot_amounts[i] - v_restored[i] - share[i];
        IF room > 0 THEN
            share[i] := share[i] + least(room, extra);
            extra := extra - least(room, extra);
        END IF;
    END LOOP;
    s := nextval('entry_seqs');
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN share[i] = 0;
        v_restored[i] := v_restored[i] + share[i];
        UPDATE lots SET remaining = remaining + share[i]
            WHERE program = p.program AND member = m AND lot_id = o.lot_ids[i];
        IF NOT FOUND THEN
            IF a.lots_open + created >= 1024 THEN RETURN -38; END IF;
            -- o.lot_expires is NULL for a capture's entry: take it from the HOLD's entry.
            SELECT o.lot_ids[i] AS lot_id,
                   coalesce(o.lot_expires[i], hx.lot_expires[array_position(hx.lot_ids, o.lot_ids[i])]) AS exp,
                   coalesce(o.lot_earned[i], hx.lot_earned[array_position(hx.lot_ids, o.lot_ids[i])]) AS earn
            INTO l FROM (SELECT lot_ids, lot_expires, lot_earned FROM entries
                         WHERE seq = CASE WHEN o.kind = 8 THEN o.ref_seq ELSE o.seq END) hx;
            INSERT INTO lots (program, member, expires_at, lot_id, earned_at, origin_seq, amount,
                              remaining)
            VALUES (p.program, m, l.exp, l.lot_id, l.earn, s, share[i], share[i]);
            created := created + 1;
            due := least(due, l.exp);
        ELSE
            due := least(due, (SELECT expires_at FROM lots
                WHERE program = p.program AND member = m AND lot_id = o.lot_ids[i]));
        END IF;
    END LOOP;
    INSERT INTO entries (seq, ts, posting_id, program, kind, debit, credit, amount, ref_seq, code,
                         user_data, lot_ids, lot_amounts)
    VALUES (s, ts, id, p.program, 10, -2, m, rr, o.seq, code, ud, o.lot_ids, share);
    UPDATE postings SET reversed = reversed + rr, restored = v_restored WHERE postings.id = ref;
    UPDATE accounts SET available = available + rr, redeemed = redeemed - rr,
                        lots_open = lots_open + created, next_due = least(next_due, due),
                        last_seq = s
    WHERE program = p.program AND member = m;
    IF due <= ts THEN
        PERFORM member_due(p, m, ts);   -- restored into expired lots: they expire at once
    END IF;
    RETURN s;
END $$;

-- TRANSFER: the source's lots soonest-expiring first; the destination gets one lot per
-- source lot, with its expiry and earn time.
CREATE OR REPLACE FUNCTION post_transfer(p programs, id uuid, m bigint, m2 bigint, amt bigint, code bigint,
                              ts bigint, ud bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; b accounts; c integer; t record; s bigint; first_lot bigint; n integer;
BEGIN
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    b := account_get(p, m2, ts);
    c := account_code(b);
    IF c <> 0 THEN RETURN -c; END IF;
    IF a.available < amt THEN RETURN -26; END IF;
    -- LOTS_LIMIT on the destination: how many source lots the transfer will draw from.
    SELECT count(*) INTO n FROM (
        SELECT sum(remaining) OVER (ORDER BY expires_at, lot_id) - remaining AS before
        FROM lots WHERE program = p.program AND member = m AND activate_at = 0
          AND remaining > 0) s
    WHERE before < amt;
    IF b.lots_open + n > 1024 THEN RETURN -38; END IF;
    SELECT * INTO t FROM lots_take(p.program, m, amt, false, 0);
    n := cardinality(t.ids);
    s := nextval('entry_seqs');
    first_lot := nextval('lot_ids');
    INSERT INTO lots (program, member, expires_at, lot_id, earned_at, origin_seq, amount, remaining)
    SELECT p.program, m2, x.e, CASE WHEN x.o = 1 THEN first_lot ELSE nextval('lot_ids') END,
           x.ea, s, x.a, x.a
    FROM unnest(t.exps, t.earns, t.amts) WITH ORDINALITY x(e, ea, a, o);
    INSERT INTO entries (seq, ts, posting_id, program, kind, debit, credit, amount, lot_id, code,
                         user_data, lot_ids, lot_expires, lot_earned, lot_amounts)
    VALUES (s, ts, id, p.program, 11, m, m2, amt, first_lot, code, ud, t.ids, t.exps, t.earns,
            t.amts);
    UPDATE accounts SET available = available - amt, transferred_out = transferred_out + amt,
                        lots_open = lots_open - t.dropped, last_seq = s
    WHERE program = p.program AND member = m;
    UPDATE accounts SET available = available + amt, transferred_in = transferred_in + amt,
                        lots_open = lots_open + n,
                        next_due = least(next_due, (SELECT min(e) FROM unnest(t.exps) e)),
                        last_seq = s
    WHERE program = p.program AND member = m2;
    RETURN s;
END $$;

-- Positive ADJUST: a new lot with the policy's expiry from now.
CREATE OR REPLACE FUNCTION post_credit(p programs, id uuid, m bigint, amt bigint, code bigint, ts bigint,
                            ud bytea, exp bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a accounts; c integer; s bigint; lot bigint := nextval('lot_ids');
BEGIN
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    IF a.lots_open >= 1024 THEN RETURN -38; END IF;
    INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, lot_id, code,
                         user_data, lot_ids, lot_expires, lot_earned, lot_amounts)
    VALUES (ts, id, p.program, 12, -4, m, amt, lot, code, ud, ARRAY[lot], ARRAY[exp],
            ARRAY[ts], ARRAY[amt]) RETURNING seq INTO s;
    INSERT INTO lots (program, member, expires_at, lot_id, earned_at, origin_seq, amount, remaining)
    VALUES (p.program, m, exp, lot, ts, s, amt, amt);
    UPDATE accounts SET available = available + amt, adjusted = adjusted + amt,
                        lots_open = lots_open + 1, next_due = least(next_due, exp), last_seq = s
    WHERE program = p.program AND member = m;
    RETURN s;
END $$;

-- CLOSE: every point forfeited to breakage, lots dropped.
CREATE OR REPLACE FUNCTION post_close(p programs, id uuid, m bigint, code bigint, ts bigint, ud bytea)
RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_variable
#variable_conflict use_variable
DECLARE
    a accounts; c integer; s bigint;
BEGIN
    a := account_get(p, m, ts);
    c := account_code(a);
    IF c <> 0 THEN RETURN -c; END IF;
    IF a.holds_active > 0 THEN RETURN -36; END IF;
    IF a.available < 0 THEN RETURN -26; END IF;
    INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount, value, code,
                         user_data)
    VALUES (ts, id, p.program, 13, m, -3, a.available + a.pending, a.pending, code, ud)
    RETURNING seq INTO s;
    DELETE FROM lots WHERE program = p.program AND member = m;
    UPDATE accounts SET status = 2, closed_at = ts, expired = expired + available + pending,
                        available = 0, pending = 0, lots_open = 0, last_seq = s
    WHERE program = p.program AND member = m;
    RETURN s;
END $$;

-- PROGRAM: create a program (its configuration as columns). Returns the result code.
CREATE OR REPLACE FUNCTION ledger_program(p_id uuid, p_program integer, p_ts bigint, p_expiry smallint,
                               p_expiry_n integer, p_tier_mode smallint, p_win smallint,
                               p_window_months smallint, p_validity_months smallint,
                               p_tier_count smallint, p_flags integer, p_tz integer,
                               p_fixed bigint, p_hold_timeout bigint, p_thresholds bigint[])
RETURNS TABLE (code integer, detail integer, seq bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_variable
#variable_conflict use_variable
DECLARE
    s bigint;
BEGIN
    PERFORM 1 FROM postings WHERE id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT 1, result::integer, postings.seq FROM postings WHERE id = p_id;
        RETURN;
    END IF;
    PERFORM 1 FROM programs WHERE program = p_program;
    IF FOUND THEN
        INSERT INTO postings (id, program, kind, flags, code, account, account2, amount, value,
                              duration_ms, user_data, result)
        VALUES (p_id, p_program, 1, 0, 0, 0, 0, 0, 0, 0, '', 21);
        RETURN QUERY SELECT 21, 0, 0::bigint;
        RETURN;
    END IF;
    INSERT INTO entries (ts, posting_id, program, kind, debit, credit, amount)
    VALUES (p_ts, p_id, p_program, 1, 0, 0, 0) RETURNING entries.seq INTO s;
    INSERT INTO programs VALUES (p_program, p_expiry, p_expiry_n, p_tier_mode, p_win,
                                 p_window_months, p_validity_months, p_tier_count, p_flags, p_tz,
                                 p_fixed, p_hold_timeout, p_thresholds, p_ts);
    INSERT INTO postings (id, program, kind, flags, code, account, account2, amount, value,
                          duration_ms, user_data, result, seq)
    VALUES (p_id, p_program, 1, 0, 0, 0, 0, 0, 0, 0, '', 0, s);
    RETURN QUERY SELECT 0, 0, s;
END $$;

-- ---------------------------------------------------------------------------------------------
-- The batch.
-- ---------------------------------------------------------------------------------------------

-- A validation result from the posting's fields alone (never recorded), or 0.
CREATE OR REPLACE FUNCTION posting_check(kind smallint, flags integer, ref uuid, m bigint, m2 bigint,
                              amt bigint, val bigint, dur bigint) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN kind < 2 OR kind > 13 THEN 3
        WHEN flags & 1 <> 0 THEN 4                          -- LINKED: not in the peer
        WHEN flags & ~6 <> 0 THEN 4
        WHEN flags & 2 <> 0 AND kind <> 3 THEN 4
        WHEN flags & 4 <> 0 AND kind <> 12 THEN 4
        WHEN m <= 0 THEN 7
        WHEN amt > 9007199254740992 OR val > 9007199254740992 THEN 9
        WHEN kind IN (3, 6, 7, 11, 12) AND amt = 0 THEN 8
        WHEN kind IN (4, 5, 8, 9, 10) AND ref IS NULL THEN 11
        WHEN kind = 11 AND m2 <= 0 THEN 7
        WHEN kind = 11 AND m2 = m THEN 12
        WHEN kind = 3 AND ((flags & 2 <> 0) <> (dur > 0)) THEN 14
        WHEN kind = 7 AND dur > 315619200000 THEN 14
        ELSE 0 END
$$;

-- Apply a batch of postings at time p_ts (ms). Arrays are parallel, one element a posting;
-- p_ref elements are NULL for "no reference". Returns one row per posting, in order.
CREATE OR REPLACE FUNCTION ledger_apply(p_ts bigint, p_id uuid[], p_program integer[], p_kind smallint[],
                             p_flags integer[], p_code bigint[], p_ref uuid[],
                             p_account bigint[], p_account2 bigint[], p_amount bigint[],
                             p_value bigint[], p_duration bigint[], p_user_data bytea[])
RETURNS TABLE (code integer, detail integer, seq bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_variable
#variable_conflict use_variable
DECLARE
    n integer := cardinality(p_id);
    known uuid[];
    prog programs;
    r postings;
    res bigint;
    k smallint;
    x record;
    v_exp bigint;     -- expiry of a lot earned now, and the civil month of now
    v_month integer;
BEGIN
    IF n > 8190 THEN RAISE EXCEPTION 'ledger_apply: % postings, at most 8190', n; END IF;
    -- Lock every member the batch names, in one ascending order: no deadlock between batches.
    -- Ids already recorded, or repeated inside the batch: only these are probed one by one.
    IF n = 1 THEN   -- a single posting: the same, without the set queries
        PERFORM pg_advisory_xact_lock(least(p_account[1], p_account2[1]))
        WHERE least(p_account[1], p_account2[1]) > 0;
        PERFORM pg_advisory_xact_lock(greatest(p_account[1], p_account2[1]))
        WHERE greatest(p_account[1], p_account2[1]) > 0
          AND p_account[1] <> p_account2[1];
        known := p_id;
    ELSE
        PERFORM pg_advisory_xact_lock(mm)
        FROM (SELECT DISTINCT mm FROM unnest(p_account || p_account2) mm WHERE mm > 0
              ORDER BY mm) s;
        SELECT coalesce(array_agg(kid), '{}') INTO known FROM (
            SELECT postings.id AS kid FROM postings WHERE postings.id = ANY (p_id)
            UNION
            SELECT y FROM unnest(p_id) y GROUP BY y HAVING count(*) > 1) s;
    END IF;
    -- One pass over the postings as rows: subscripting arrays with NULLs or variable-length
    -- elements (p_ref, p_user_data) by position would cost O(n) per access.
    FOR x IN SELECT * FROM unnest(p_id, p_program, p_kind, p_flags, p_code, p_ref, p_account,
                                  p_account2, p_amount, p_value, p_duration, p_user_data)
                           AS u(id, program, kind, flags, code, ref, account, account2, amount,
                                value, duration, user_data)
    LOOP
        k := x.kind;
        seq := 0; detail := 0;
        code := CASE WHEN x.id = '00000000-0000-0000-0000-000000000000' THEN 2
                     WHEN x.program <= 0 THEN 6
                     ELSE posting_check(k, x.flags, x.ref, x.account, x.account2,
                                        x.amount, x.value, x.duration) END;
        IF code <> 0 THEN RETURN NEXT; CONTINUE; END IF;
        IF x.id = ANY (known) THEN
            SELECT * INTO r FROM postings WHERE postings.id = x.id;
            IF FOUND THEN
                IF (r.program, r.kind, r.flags, r.code, r.ref, r.account, r.account2, r.amount,
                    r.value, r.duration_ms, r.user_data)
                   IS NOT DISTINCT FROM
                   (x.program, k, x.flags, x.code, x.ref, x.account,
                    x.account2, x.amount, x.value, x.duration, x.user_data) THEN
                    code := 1; detail := r.result; seq := r.seq;
                ELSE
                    code := 20;
                END IF;
                RETURN NEXT; CONTINUE;
            END IF;
        END IF;
        IF prog.program IS DISTINCT FROM x.program THEN
            SELECT * INTO prog FROM programs WHERE program = x.program;
            v_exp := NULL;   -- computed when a posting first needs them
        END IF;
        IF v_exp IS NULL AND prog.program IS NOT NULL AND k IN (2, 3, 12) THEN
            v_exp := lot_expiry(prog, p_ts);
            v_month := civil_month(p_ts, prog.tz_offset_min);
        END IF;
        IF prog.program IS NULL THEN
            res := -22;
        ELSE
            res := CASE k
                WHEN 2 THEN post_open(prog, x.id, x.account, p_ts, x.user_data, v_month)
                WHEN 3 THEN post_accrue(prog, x.id, x.account, x.amount, x.value,
                                        x.flags, x.duration, x.code, p_ts, x.user_data,
                                        v_exp, v_month)
                WHEN 4 THEN post_pending(prog, x.id, x.account, x.ref, false, x.code,
                                         p_ts, x.user_data)
                WHEN 5 THEN post_pending(prog, x.id, x.account, x.ref, true, x.code,
                                         p_ts, x.user_data)
                WHEN 8 THEN post_resolve(prog, x.id, k, x.account, x.ref, x.amount,
                                         x.code, p_ts, x.user_data)
                WHEN 9 THEN post_resolve(prog, x.id, k, x.account, x.ref, x.amount,
                                         x.code, p_ts, x.user_data)
                WHEN 10 THEN post_reverse(prog, x.id, x.account, x.ref, x.amount,
                                          x.code, p_ts, x.user_data)
                WHEN 11 THEN post_transfer(prog, x.id, x.account, x.account2,
                                           x.amount, x.code, p_ts, x.user_data)
                WHEN 12 THEN CASE WHEN x.flags & 4 <> 0
                    THEN post_spend(prog, x.id, k, x.account, x.amount, 0, x.code,
                                    p_ts, x.user_data)
                    ELSE post_credit(prog, x.id, x.account, x.amount, x.code, p_ts,
                                     x.user_data, v_exp) END
                WHEN 13 THEN post_close(prog, x.id, x.account, x.code, p_ts,
                                        x.user_data)
                ELSE post_spend(prog, x.id, k, x.account, x.amount, x.duration,
                                x.code, p_ts, x.user_data)   -- 6 REDEEM, 7 HOLD
                END;
        END IF;
        IF res > 0 THEN seq := res; ELSE code := -res; END IF;
        INSERT INTO postings (id, program, kind, flags, code, ref, account, account2, amount,
                              value, duration_ms, user_data, result, seq)
        VALUES (x.id, x.program, k, x.flags, x.code, x.ref, x.account,
                x.account2, x.amount, x.value, x.duration, x.user_data, code, seq);
        RETURN NEXT;
    END LOOP;
END $$;
