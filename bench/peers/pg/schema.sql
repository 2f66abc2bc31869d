-- schema.sql: the PostgreSQL peer's tables: tally's ledger (docs/LEDGER.md) as a competent
-- engineer would lay it out in PostgreSQL 15, for the comparison of docs/BENCHMARKS.md
-- ("The PostgreSQL peer").
--
-- What it keeps, and how it maps to tally
-- ---------------------------------------
-- * programs: one row per loyalty program (tally_program_config, column for column).
-- * accounts: one row per member account, (program, member) primary key, with tally's buckets
--   (available, pending, held), lifetime totals, the qualifying-value ring (12 monthly sums, as
--   tally_account.qv) and the tier. System accounts (issuance, redemption, breakage,
--   adjustment) have no row: their balances are derived from the entries (view
--   system_balances). A stored balance per system account would be one row that every accrual
--   updates, a lock every transaction queues on across its commit fsync: no competent design
--   keeps one.
-- * lots: one row per lot with points, held points or pending points, keyed by
--   (program, member, expires_at, lot_id): the primary key is the soonest-expiring-first
--   order in which lots are consumed, so consumption is an index range scan. Empty lots are
--   deleted (as tally does); their history stays in the entries.
-- * entries: append-only (a trigger refuses UPDATE and DELETE). seq comes from a sequence:
--   ordered by allocation, but a transaction that aborts leaves a gap (tally's seq is
--   gapless; a gapless counter here would be one row every commit serialises on). Lot lineage
--   is kept in the entry as arrays (lot ids, expiries, earn times, amounts).
-- * postings: one row per recorded posting id (uuid primary key): its body (to tell a retry
--   from a different posting under the same id), its result and first entry, and the
--   mutable state later postings need (how much of an accrual or redemption was reversed).
-- * holds: one row per HOLD, keyed by the HOLD's posting id, with its lots.
--
-- Member ids are bigint: tally's ids are unsigned 64-bit, 1 .. 2^64-257; the peer accepts
-- 1 .. 2^63-1 (the workload uses 1 .. 1,000,000). System accounts appear in entries as
-- tally's values reinterpreted as signed: issuance -1, redemption -2, breakage -3,
-- adjustment -4. Times are milliseconds since the epoch (bigint), as in tally; "never" is
-- 9223372036854775807.
--
-- Invariants the constraints check: buckets and totals never negative (available may go
-- below zero only for programs with ALLOW_NEGATIVE: checked by the functions, since a CHECK
-- cannot read the program row), a lot's remaining and held never negative, hold amounts
-- positive, a posting id recorded once.

CREATE TABLE programs (
    program         integer PRIMARY KEY CHECK (program > 0),
    expiry          smallint NOT NULL CHECK (expiry BETWEEN 0 AND 5),
    expiry_n        integer  NOT NULL,
    tier_mode       smallint NOT NULL CHECK (tier_mode BETWEEN 0 AND 2),
    win             smallint NOT NULL CHECK (win BETWEEN 0 AND 1),
    window_months   smallint NOT NULL CHECK (window_months BETWEEN 1 AND 12),
    validity_months smallint NOT NULL,
    tier_count      smallint NOT NULL CHECK (tier_count BETWEEN 1 AND 8),
    flags           integer  NOT NULL,
    tz_offset_min   integer  NOT NULL,
    expiry_fixed_at bigint   NOT NULL,
    hold_timeout_ms bigint   NOT NULL CHECK (hold_timeout_ms > 0),
    thresholds      bigint[] NOT NULL,
    -- no member count: it would be a row every OPEN updates; count(*) of accounts says it
    created_at      bigint   NOT NULL
);

CREATE TABLE accounts (
    program          integer  NOT NULL REFERENCES programs,
    member           bigint   NOT NULL CHECK (member > 0),
    status           smallint NOT NULL CHECK (status IN (1, 2)),   -- 1 open, 2 closed
    available        bigint   NOT NULL DEFAULT 0,
    pending          bigint   NOT NULL DEFAULT 0 CHECK (pending >= 0),
    held             bigint   NOT NULL DEFAULT 0 CHECK (held >= 0),
    earned           bigint   NOT NULL DEFAULT 0,
    redeemed         bigint   NOT NULL DEFAULT 0,
    expired          bigint   NOT NULL DEFAULT 0 CHECK (expired >= 0),
    adjusted         bigint   NOT NULL DEFAULT 0,
    transferred_in   bigint   NOT NULL DEFAULT 0 CHECK (transferred_in >= 0),
    transferred_out  bigint   NOT NULL DEFAULT 0 CHECK (transferred_out >= 0),
    qv_lifetime      bigint   NOT NULL DEFAULT 0,
    qv               bigint[] NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0,0,0}',
    qv_month         integer  NOT NULL,          -- month number (months since 1970-01) of the newest bucket
    tier             smallint NOT NULL DEFAULT 0,
    tier_valid_until bigint   NOT NULL DEFAULT 9223372036854775807,
    holds_active     integer  NOT NULL DEFAULT 0 CHECK (holds_active >= 0),
    lots_open        integer  NOT NULL DEFAULT 0 CHECK (lots_open BETWEEN 0 AND 1024),
    next_due         bigint   NOT NULL DEFAULT 9223372036854775807, -- earliest time-driven work
    opened_at        bigint   NOT NULL,
    closed_at        bigint   NOT NULL DEFAULT 0,
    last_seq         bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (program, member)
) WITH (fillfactor = 80);   -- room on the page for HOT updates (no indexed column changes)

CREATE SEQUENCE lot_ids CACHE 64;     -- lot ids need to be unique, not dense
CREATE SEQUENCE entry_seqs;           -- no cache: seq follows allocation order across sessions

CREATE TABLE lots (
    program     integer NOT NULL,
    member      bigint  NOT NULL,
    expires_at  bigint  NOT NULL,
    lot_id      bigint  NOT NULL,
    earned_at   bigint  NOT NULL,
    origin_seq  bigint  NOT NULL,
    amount      bigint  NOT NULL,
    remaining   bigint  NOT NULL CHECK (remaining >= 0),
    held        bigint  NOT NULL DEFAULT 0 CHECK (held >= 0),
    activate_at bigint  NOT NULL DEFAULT 0,   -- nonzero: pending until then
    PRIMARY KEY (program, member, expires_at, lot_id)
) WITH (fillfactor = 80);
-- No index on lot_id alone: every lookup of a lot names its member, and a member has few lots
-- (the primary key prefix finds them); lot ids are unique because a sequence makes them.

CREATE TABLE entries (
    seq         bigint   PRIMARY KEY DEFAULT nextval('entry_seqs'),
    ts          bigint   NOT NULL,
    posting_id  uuid,                       -- NULL for time-driven entries
    program     integer  NOT NULL,
    kind        smallint NOT NULL,
    flags       smallint NOT NULL DEFAULT 0,
    debit       bigint   NOT NULL,
    credit      bigint   NOT NULL,
    amount      bigint   NOT NULL CHECK (amount >= 0),
    value       bigint   NOT NULL DEFAULT 0,
    ref_seq     bigint   NOT NULL DEFAULT 0,
    lot_id      bigint   NOT NULL DEFAULT 0,
    time_a      bigint   NOT NULL DEFAULT 0,
    time_b      bigint   NOT NULL DEFAULT 0,
    code        bigint   NOT NULL DEFAULT 0,
    tier_from   smallint NOT NULL DEFAULT 0,
    tier_to     smallint NOT NULL DEFAULT 0,
    user_data   bytea,
    lot_ids     bigint[],                   -- lineage: the lots consumed, restored or created
    lot_expires bigint[],
    lot_earned  bigint[],
    lot_amounts bigint[]
);

CREATE FUNCTION entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'entries are append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION entries_append_only();

CREATE TABLE postings (
    id          uuid     PRIMARY KEY,
    program     integer  NOT NULL,
    kind        smallint NOT NULL,
    flags       integer  NOT NULL,
    code        bigint   NOT NULL,
    ref         uuid,
    account     bigint   NOT NULL,
    account2    bigint   NOT NULL,
    amount      bigint   NOT NULL,
    value       bigint   NOT NULL,
    duration_ms bigint   NOT NULL,
    user_data   bytea    NOT NULL,
    result      smallint NOT NULL,          -- tally_results.h code
    seq         bigint   NOT NULL DEFAULT 0,-- first entry (0: failed)
    -- what later postings change: accruals and redemptions being reversed
    reversed       bigint   NOT NULL DEFAULT 0 CHECK (reversed >= 0),
    reversed_value bigint   NOT NULL DEFAULT 0,
    restored       bigint[]                 -- per lineage lot, points restored (redemptions)
) WITH (fillfactor = 90);

CREATE TABLE holds (
    id          uuid     PRIMARY KEY,       -- the HOLD posting's id
    program     integer  NOT NULL,
    member      bigint   NOT NULL,
    seq         bigint   NOT NULL,          -- the HOLD entry
    amount      bigint   NOT NULL CHECK (amount > 0),
    timeout_at  bigint   NOT NULL,
    status      smallint NOT NULL CHECK (status BETWEEN 1 AND 4), -- tally_hold_status
    captured    bigint   NOT NULL DEFAULT 0,
    lot_ids     bigint[] NOT NULL,
    lot_amounts bigint[] NOT NULL
) WITH (fillfactor = 90);
CREATE INDEX holds_active_by_member ON holds (program, member, timeout_at) WHERE status = 1;

-- System accounts' balances, derived from the entries (finance's liability report is then
-- a query, as in tally; it scans the entries).
CREATE VIEW system_balances AS
    SELECT program, account, sum(delta) AS balance FROM (
        SELECT program, credit AS account, amount AS delta FROM entries WHERE credit < 0
        UNION ALL
        SELECT program, debit, -amount FROM entries WHERE debit < 0) s
    GROUP BY program, account;

-- Law 3: the sum of every account is zero. Returns the imbalance per program (0 is right).
CREATE VIEW trial_balance AS
    SELECT p.program,
           coalesce((SELECT sum(a.available + a.pending + a.held) FROM accounts a
                     WHERE a.program = p.program), 0)
         + coalesce((SELECT sum(balance) FROM system_balances s WHERE s.program = p.program), 0)
           AS imbalance
    FROM programs p;
