/* test_random.c: a seeded random workload against the laws (BRIEF §4).
 *
 * Thousands of postings of every kind, valid and not, for random members of four programs with
 * different policies, many referring to earlier postings (some of the wrong kind, member or
 * outcome), in linked chains now and then, in batches of random sizes whose timestamps advance
 * a day or so at a time (sometimes going back, sometimes empty: ticks) over several simulated
 * years, so that activations, hold timeouts, expiries and tier evaluations all happen by time.
 *
 * After every batch: each result is a known code; OK results point at new entries; retries of
 * recorded postings get EXISTS with the original outcome (law 4); deliberately invalid postings
 * get exactly their validation result; linked chains are all or nothing. Every CHECK_EVERY
 * batches and at the end: audit_verify re-derives the state and finds no difference (law 2), each
 * program's trial balance is zero (law 3), no member of a program without ALLOW_NEGATIVE has a
 * negative available balance (law 7), entry timestamps never decrease. At the end a second ledger
 * fed the same batches has the same digest (law 6).
 *
 * The seed is printed when the test fails; TALLY_TEST_SEED=n runs seed n again.
 * TALLY_TEST_VERBOSE=1 prints how often each result code and entry kind occurred.
 */
#include "../support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRAMS           4u
#define MEMBERS            40u
#define BATCHES            2500u
#define BATCH_POSTINGS_MAX 60u
#define CHECK_EVERY        25u
#define CLOSING_MEMBERS    6u
#define LOG_MAX            (BATCHES * BATCH_POSTINGS_MAX)

/* ---------------------------------------------------------------------------------------------
 * Random numbers: splitmix64, so a seed means the same run on every machine.
 * ------------------------------------------------------------------------------------------- */

static uint64_t seed;
static uint64_t rng_state;
static bool finished;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* True with probability pct percent. */
static bool chance(unsigned pct)
{
    return below(100) < pct;
}

/* ---------------------------------------------------------------------------------------------
 * What was sent: every posting in order (for the replay), and the originals with their first
 * outcome (for refs and retries).
 * ------------------------------------------------------------------------------------------- */

struct original {
    struct tally_posting p;
    uint32_t code; /* first result; UINT32_MAX until its batch is applied */
    uint64_t seq;
};

enum expect_kind {
    EXPECT_ANY,
    EXPECT_CODE,   /* exactly `code` (an invalid posting outside chains) */
    EXPECT_EXISTS, /* a retry: EXISTS with detail `code` and seq `seq` */
};

struct expect {
    uint8_t kind;
    uint32_t code;
    uint64_t seq;
    int32_t original; /* index into originals, or -1 for a retry */
    int32_t chain;    /* index of the chain's first posting in the batch, or -1 */
};

struct batch_log {
    uint64_t ts;
    uint32_t first;
    uint32_t count;
};

static struct original *originals;
static uint32_t originals_count;
static struct tally_posting *log_postings;
static uint32_t log_count;
static struct batch_log batches[BATCHES];
static uint32_t batches_count;
static uint64_t next_id = 1;

static struct tally_program_config configs[PROGRAMS];

static void configs_init(uint64_t start)
{
    struct tally_program_config *c = &configs[0];
    config_default(c); /* rolling days, one step down at a time */
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = 45;
    c->tier_mode = TALLY_TIER_DOWN_STEP;
    c->window_months = 3;
    c->validity_months = 2;
    c->tier_count = 4;
    c->thresholds[0] = 300;
    c->thresholds[1] = 1500;
    c->thresholds[2] = 5000;
    c->hold_timeout_ms = 2 * DAY_MS;

    c = &configs[1]; /* month ends, up only, calendar year, debts allowed, UTC+8 */
    config_default(c);
    c->expiry = TALLY_EXPIRY_MONTH;
    c->expiry_n = 1;
    c->window = TALLY_WINDOW_CALENDAR;
    c->window_months = 0;
    c->tier_count = 2;
    c->thresholds[0] = 1000;
    c->thresholds[1] = 0;
    c->flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    c->tz_offset_min = 480;
    c->hold_timeout_ms = DAY_MS;

    c = &configs[2]; /* quarter ends, down to the earned tier, UTC-5 */
    config_default(c);
    c->expiry = TALLY_EXPIRY_QUARTER;
    c->expiry_n = 0;
    c->tier_mode = TALLY_TIER_DOWN_EARNED;
    c->validity_months = 1;
    c->thresholds[0] = 1000;
    c->thresholds[1] = 4000;
    c->tz_offset_min = -300;
    c->hold_timeout_ms = 6 * HOUR_MS;

    c = &configs[3]; /* one fixed expiry date in the middle of the run, no tiers */
    config_default(c);
    c->expiry = TALLY_EXPIRY_FIXED;
    c->expiry_fixed_at = start + 200 * DAY_MS;
    c->tier_count = 1;
    c->thresholds[0] = 0;
    c->thresholds[1] = 0;
}

static bool allows_negative(uint32_t program)
{
    return (configs[program - 1].flags & TALLY_PROGRAM_ALLOW_NEGATIVE) != 0;
}

/* ---------------------------------------------------------------------------------------------
 * Generating postings
 * ------------------------------------------------------------------------------------------- */

static uint32_t rnd_program(void)
{
    return (uint32_t)(1 + below(PROGRAMS));
}

static uint64_t rnd_member(void)
{
    return 1 + below(MEMBERS);
}

static uint64_t rnd_amount(uint64_t max)
{
    return 1 + below(max);
}

/* An earlier original of one of the kinds in `mask` (bit per kind), or -1. */
static int32_t rnd_original(uint32_t mask)
{
    if (originals_count == 0)
        return -1;
    for (int tries = 0; tries < 40; tries++) {
        /* Favour recent postings: holds and pending accruals are still active there. */
        uint32_t span = originals_count < 400 ? originals_count : 400;
        uint32_t i = chance(70) ? originals_count - 1 - (uint32_t)below(span)
                                : (uint32_t)below(originals_count);
        /* Mostly postings that succeeded (or are in this batch, outcome unknown yet). */
        uint32_t code = originals[i].code;
        bool usable = code == TALLY_OK || code == UINT32_MAX || chance(10);
        if ((mask & (1u << originals[i].p.kind)) != 0 && usable)
            return (int32_t)i;
    }
    return -1;
}

/* A posting that acts on an earlier one: mostly the right kind and member, sometimes not. */
static struct tally_posting with_ref(uint16_t kind, uint32_t mask)
{
    int32_t o = rnd_original(chance(90) ? mask : 0xffffu);
    uint32_t program = rnd_program();
    uint64_t member = rnd_member();
    uint64_t ref = UINT64_C(1) << 62; /* never sent */
    if (o >= 0 && !chance(3)) {
        const struct tally_posting *q = &originals[o].p;
        uint8_t id[16];
        memcpy(id, q->id, 16);
        ref = 0;
        for (int b = 8; b < 16; b++)
            ref = ref << 8 | id[b];
        if (chance(90)) {
            program = q->program;
            member = q->account;
        }
    }
    struct tally_posting p;
    switch (kind) {
    case TALLY_KIND_ACTIVATE:
        p = post_activate(next_id++, program, member, ref);
        break;
    case TALLY_KIND_CANCEL:
        p = post_cancel(next_id++, program, member, ref);
        break;
    case TALLY_KIND_CAPTURE:
        p = post_capture(next_id++, program, member, ref, chance(50) ? 0 : rnd_amount(200));
        break;
    case TALLY_KIND_RELEASE:
        p = post_release(next_id++, program, member, ref);
        break;
    default:
        p = post_reverse(next_id++, program, member, ref, chance(40) ? 0 : rnd_amount(150));
    }
    return p;
}

static struct tally_posting rnd_valid_posting(void)
{
    uint32_t program = rnd_program();
    uint64_t m = rnd_member();
    uint64_t w = below(100);
    if (w < 4)
        return post_open(next_id++, program, m);
    if (w < 32) {
        uint64_t amount = chance(5) ? rnd_amount(5000) : rnd_amount(400);
        uint64_t value = chance(30) ? 0 : below(2000);
        if (chance(25))
            return post_accrue_pending(next_id++, program, m, amount, value,
                                       chance(10) ? HOUR_MS : rnd_amount(10 * DAY_MS));
        return post_accrue(next_id++, program, m, amount, value);
    }
    if (w < 36)
        return with_ref(TALLY_KIND_ACTIVATE, 1u << TALLY_KIND_ACCRUE);
    if (w < 39)
        return with_ref(TALLY_KIND_CANCEL, 1u << TALLY_KIND_ACCRUE);
    if (w < 53)
        return post_redeem(next_id++, program, m, rnd_amount(300));
    if (w < 61)
        return post_hold(next_id++, program, m, rnd_amount(200),
                         chance(20) ? 0 : rnd_amount(12 * DAY_MS));
    if (w < 67)
        return with_ref(TALLY_KIND_CAPTURE, 1u << TALLY_KIND_HOLD);
    if (w < 71)
        return with_ref(TALLY_KIND_RELEASE, 1u << TALLY_KIND_HOLD);
    if (w < 79)
        return with_ref(TALLY_KIND_REVERSE, 1u << TALLY_KIND_ACCRUE | 1u << TALLY_KIND_REDEEM |
                                                1u << TALLY_KIND_CAPTURE);
    if (w < 86) {
        uint64_t to = rnd_member();
        if (to == m)
            to = m % MEMBERS + 1;
        return post_transfer(next_id++, program, m, to, rnd_amount(200));
    }
    if (w < 91)
        return post_adjust(next_id++, program, m, rnd_amount(150), chance(30), (uint32_t)below(10));
    if (w < 93) /* closed accounts stay closed: only the last few members ever close */
        return post_close(next_id++, program, MEMBERS - below(CLOSING_MEMBERS));
    if (w >= 93 && w < 94)
        return post_program(next_id++, program, &configs[program - 1]); /* PROGRAM_EXISTS */
    return post_redeem(next_id++, program, m, rnd_amount(50));
}

/* A posting with exactly one validation fault; *want gets its result. */
static struct tally_posting rnd_invalid_posting(uint32_t *want)
{
    uint32_t program = rnd_program();
    uint64_t m = rnd_member();
    struct tally_posting p = post_accrue(next_id++, program, m, rnd_amount(100), 0);
    switch (below(11)) {
    case 0:
        memset(p.id, 0, 16);
        *want = TALLY_ID_ZERO;
        break;
    case 1:
        p.kind = TALLY_KIND_EXPIRE;
        *want = TALLY_KIND_INVALID;
        break;
    case 2:
        p.reserved = 1;
        *want = TALLY_RESERVED_NONZERO;
        break;
    case 3:
        p.program = 0;
        *want = TALLY_PROGRAM_ZERO;
        break;
    case 4:
        p.account = 0;
        *want = TALLY_ACCOUNT_INVALID;
        break;
    case 5:
        p = post_redeem(next_id++, program, m, 0);
        *want = TALLY_AMOUNT_ZERO;
        break;
    case 6:
        p.amount = TALLY_AMOUNT_MAX + 1;
        *want = TALLY_AMOUNT_TOO_LARGE;
        break;
    case 7:
        p = post_release(next_id++, program, m, 0);
        *want = TALLY_REF_ZERO;
        break;
    case 8:
        p = post_transfer(next_id++, program, m, m, 5);
        *want = TALLY_SAME_ACCOUNT;
        break;
    case 9:
        p = post_redeem(next_id++, program, m, 5);
        p.flags = TALLY_FLAG_PENDING;
        *want = TALLY_FLAGS_INVALID;
        break;
    default:
        p = post_hold(next_id++, program, m, 5, TALLY_DURATION_MAX_MS + 1);
        *want = TALLY_DURATION_INVALID;
    }
    return p;
}

/* An earlier original whose outcome was recorded, sent alone: its retry must get EXISTS. */
static int32_t rnd_retry(uint32_t applied_originals)
{
    for (int tries = 0; tries < 20 && applied_originals > 0; tries++) {
        uint32_t i = (uint32_t)below(applied_originals);
        const struct original *o = &originals[i];
        if ((o->p.flags & TALLY_FLAG_LINKED) == 0 && o->code != TALLY_EXISTS &&
            tally_result_recorded(o->code))
            return (int32_t)i;
    }
    return -1;
}

static void add_original(const struct tally_posting *p, struct expect *e)
{
    assert_true(originals_count < LOG_MAX);
    originals[originals_count].p = *p;
    originals[originals_count].code = UINT32_MAX;
    originals[originals_count].seq = 0;
    e->original = (int32_t)originals_count++;
}

/* Fill one batch; returns its size. */
static uint32_t make_batch(struct tally_posting *p, struct expect *ex, uint32_t applied)
{
    uint32_t n = chance(8) ? 0 : (uint32_t)(1 + below(BATCH_POSTINGS_MAX));
    int32_t chain = -1; /* first posting of the open chain */
    uint32_t chain_left = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct expect *e = &ex[i];
        memset(e, 0, sizeof(*e));
        e->kind = EXPECT_ANY;
        e->original = -1;
        e->chain = -1;
        if (chain_left == 0 && chance(3)) {
            int32_t r = rnd_retry(applied);
            if (r >= 0) {
                p[i] = originals[r].p;
                e->kind = EXPECT_EXISTS;
                e->code = originals[r].code;
                e->seq = originals[r].seq;
                continue;
            }
        }
        if (chain_left == 0 && chance(4)) {
            chain = (int32_t)i;
            chain_left = (uint32_t)(2 + below(3));
        }
        /* Invalid postings stay out of chains (test_linked covers that): with a bad kind or
         * flags, whether LINKED still counts is not something the specification settles. */
        if (chain_left == 0 && chance(4)) {
            uint32_t want = 0;
            p[i] = rnd_invalid_posting(&want);
            e->kind = EXPECT_CODE;
            e->code = want;
        } else {
            p[i] = rnd_valid_posting();
        }
        if (chain_left > 0) {
            e->chain = chain;
            if (--chain_left > 0)
                p[i].flags = (uint16_t)(p[i].flags | TALLY_FLAG_LINKED);
        }
        if (!id_is_zero(p[i].id))
            add_original(&p[i], e);
    }
    /* A chain cut by the end of the batch stays open (its last posting still says LINKED). */
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Checking
 * ------------------------------------------------------------------------------------------- */

static uint64_t code_counts[TALLY_RESULT_CODE_LIMIT];
static uint64_t kind_counts[TALLY_KIND_LIMIT];

static bool is_success(uint32_t code)
{
    return code == TALLY_OK || code == TALLY_EXISTS;
}

static void check_chain(const struct tally_posting *p, const struct tally_result *r, uint32_t first,
                        uint32_t n)
{
    uint32_t last = first;
    while (last + 1 < n && (p[last].flags & TALLY_FLAG_LINKED) != 0)
        last++;
    bool open = (p[last].flags & TALLY_FLAG_LINKED) != 0;
    uint32_t failures = 0;
    uint32_t event_failed = 0;
    for (uint32_t i = first; i <= last; i++) {
        if (open) {
            if (r[i].code != TALLY_LINKED_CHAIN_OPEN)
                fail_msg("open chain at %u: posting %u got %s", first, i, code_name(r[i].code));
            continue;
        }
        if (r[i].code == TALLY_LINKED_EVENT_FAILED)
            event_failed++;
        else if (!is_success(r[i].code))
            failures++;
    }
    if (open)
        return;
    if (failures == 0 && event_failed != 0)
        fail_msg("chain at %u: LINKED_EVENT_FAILED without a failure", first);
    if (failures > 1)
        fail_msg("chain at %u: %u postings failed on their own", first, failures);
    if (failures == 1 && event_failed != last - first)
        fail_msg("chain at %u: a failure, but only %u of %u others LINKED_EVENT_FAILED", first,
                 event_failed, last - first);
}

static void check_results(const struct tally_posting *p, const struct tally_result *r,
                          const struct expect *ex, uint32_t n, uint64_t entries_before,
                          uint64_t entries_after)
{
    for (uint32_t i = 0; i < n; i++) {
        if (tally_result_name(r[i].code) == NULL)
            fail_msg("posting %u: unknown result %u", i, r[i].code);
        code_counts[r[i].code]++;
        if (r[i].code == TALLY_OK) {
            if (r[i].seq <= entries_before || r[i].seq > entries_after)
                fail_msg("posting %u: OK with seq %llu outside (%llu, %llu]", i,
                         (unsigned long long)r[i].seq, (unsigned long long)entries_before,
                         (unsigned long long)entries_after);
        } else if (r[i].code != TALLY_EXISTS) {
            assert_int_equal(r[i].seq, 0);
            assert_int_equal(r[i].detail, 0);
        }
        const struct expect *e = &ex[i];
        if (e->kind == EXPECT_EXISTS) {
            if (r[i].code != TALLY_EXISTS || r[i].detail != e->code || r[i].seq != e->seq)
                fail_msg("retry %u: %s detail %s seq %llu, expected EXISTS detail %s seq %llu", i,
                         code_name(r[i].code), code_name(r[i].detail), (unsigned long long)r[i].seq,
                         code_name(e->code), (unsigned long long)e->seq);
        } else if (e->kind == EXPECT_CODE && e->chain < 0 && r[i].code != e->code) {
            fail_msg("invalid posting %u: %s, expected %s", i, code_name(r[i].code),
                     code_name(e->code));
        }
        if (e->chain == (int32_t)i)
            check_chain(p, r, i, n);
        if (e->original >= 0) {
            originals[e->original].code = r[i].code;
            originals[e->original].seq = r[i].code == TALLY_OK ? r[i].seq : 0;
        }
    }
}

static uint64_t checked_seq;
static uint64_t checked_ts;

static void check_ledger(struct fx *f)
{
    /* Entry timestamps never decrease. */
    uint64_t last = fx_entries(f);
    for (uint64_t s = checked_seq + 1; s <= last; s++) {
        struct tally_entry en = fx_entry(f, s, NULL, 0, NULL);
        if (en.timestamp < checked_ts)
            fail_msg("entry %llu goes back in time", (unsigned long long)s);
        checked_ts = en.timestamp;
        assert_true(en.kind < TALLY_KIND_LIMIT);
        kind_counts[en.kind]++;
    }
    checked_seq = last;

    for (uint32_t prog = 1; prog <= PROGRAMS; prog++) {
        if (fx_program_sum(f, prog, MEMBERS) != 0)
            fail_msg("program %u does not sum to zero", prog);
        for (uint64_t m = 1; m <= MEMBERS && !allows_negative(prog); m++) {
            struct tally_account a;
            if (engine_account(f->e, prog, m, &a) != 0)
                continue;
            if (a.available < 0)
                fail_msg("member %llu of program %u: available %lld", (unsigned long long)m, prog,
                         (long long)a.available);
        }
    }
    fx_verify(f); /* audit_verify and audit_trial_balance */
}

/* ---------------------------------------------------------------------------------------------
 * The test
 * ------------------------------------------------------------------------------------------- */

static void report_counts(uint64_t postings)
{
    if (getenv("TALLY_TEST_VERBOSE") == NULL)
        return;
    fprintf(stderr, "%llu postings, %llu entries\n", (unsigned long long)postings,
            (unsigned long long)checked_seq);
    for (uint32_t c = 0; c < TALLY_RESULT_CODE_LIMIT; c++)
        if (code_counts[c] != 0)
            fprintf(stderr, "  %-22s %llu\n", code_name(c), (unsigned long long)code_counts[c]);
    for (uint32_t k = 1; k < TALLY_KIND_LIMIT; k++)
        fprintf(stderr, "  entry kind %-2u %llu\n", k, (unsigned long long)kind_counts[k]);
}

static void apply_setup(struct fx *f, uint64_t ts)
{
    struct tally_posting p[PROGRAMS * (MEMBERS + 1)];
    struct tally_result r[PROGRAMS * (MEMBERS + 1)];
    struct expect ex[PROGRAMS * (MEMBERS + 1)];
    uint32_t n = 0;
    for (uint32_t prog = 1; prog <= PROGRAMS; prog++) {
        p[n++] = post_program(next_id++, prog, &configs[prog - 1]);
        for (uint64_t m = 1; m <= MEMBERS - 8; m++) /* a few members open later, or never */
            p[n++] = post_open(next_id++, prog, m);
    }
    for (uint32_t i = 0; i < n; i++) {
        memset(&ex[i], 0, sizeof(ex[i]));
        ex[i].chain = -1;
        add_original(&p[i], &ex[i]);
    }
    memcpy(&log_postings[log_count], p, n * sizeof(p[0]));
    batches[batches_count++] = (struct batch_log){ts, log_count, n};
    log_count += n;
    fx_apply(f, ts, p, n, r);
    for (uint32_t i = 0; i < n; i++)
        assert_code(r[i].code, TALLY_OK);
    check_results(p, r, ex, n, 0, fx_entries(f));
}

static void test_random_workload_keeps_the_laws(void **state)
{
    struct fx *f = *state;
    uint64_t ts = t("2026-01-01");
    configs_init(ts);
    originals = calloc(LOG_MAX, sizeof(*originals));
    log_postings = calloc(LOG_MAX, sizeof(*log_postings));
    assert_non_null(originals);
    assert_non_null(log_postings);
    apply_setup(f, ts);

    struct tally_posting p[BATCH_POSTINGS_MAX];
    struct tally_result r[BATCH_POSTINGS_MAX];
    struct expect ex[BATCH_POSTINGS_MAX];
    uint64_t postings = 0;
    for (uint32_t b = 1; b < BATCHES; b++) {
        uint32_t applied = originals_count;
        uint32_t n = make_batch(p, ex, applied);
        uint64_t step = below(2 * DAY_MS + DAY_MS / 5);
        ts += step;
        uint64_t sent_ts = chance(2) ? ts - below(DAY_MS) : ts; /* a clock that steps back */
        memcpy(&log_postings[log_count], p, n * sizeof(p[0]));
        batches[batches_count++] = (struct batch_log){sent_ts, log_count, n};
        log_count += n;
        uint64_t before = fx_entries(f);
        fx_apply(f, sent_ts, p, n, r);
        check_results(p, r, ex, n, before, fx_entries(f));
        postings += n;
        if (b % CHECK_EVERY == 0)
            check_ledger(f);
    }
    check_ledger(f);
    report_counts(postings);
    /* The workload is only worth something if it did everything, and mostly succeeded. */
    assert_true(postings > 5000);
    for (uint32_t k = TALLY_KIND_PROGRAM; k < TALLY_KIND_LIMIT; k++)
        if (kind_counts[k] == 0)
            fail_msg("no entry of kind %u was made", k);
    assert_true(code_counts[TALLY_OK] * 3 > postings);
    assert_true(code_counts[TALLY_EXISTS] > 0);
    assert_true(code_counts[TALLY_LINKED_EVENT_FAILED] + code_counts[TALLY_LINKED_CHAIN_OPEN] > 0);

    /* Law 6: the same batches in another directory give the same state. */
    static struct fx twin;
    fx_init(&twin, NULL);
    struct tally_result *rr =
        calloc(BATCH_POSTINGS_MAX * PROGRAMS + MEMBERS * PROGRAMS, sizeof(*rr));
    assert_non_null(rr);
    for (uint32_t b = 0; b < batches_count; b++)
        fx_apply(&twin, batches[b].ts, &log_postings[batches[b].first], batches[b].count, rr);
    struct engine_status s1;
    struct engine_status s2;
    engine_status(f->e, &s1);
    engine_status(twin.e, &s2);
    assert_int_equal(s1.entries, s2.entries);
    assert_int_equal(s1.chain_head, s2.chain_head);
    assert_memory_equal(s1.digest, s2.digest, sizeof(s1.digest));
    fx_deinit(&twin);
    free(rr);
    free(log_postings);
    free(originals);
    finished = true;
}

static int random_teardown(void **state)
{
    if (!finished)
        fprintf(stderr, "test_random failed with seed %llu: run again with TALLY_TEST_SEED=%llu\n",
                (unsigned long long)seed, (unsigned long long)seed);
    return fx_teardown(state);
}

int main(void)
{
    const char *s = getenv("TALLY_TEST_SEED");
    if (s != NULL && *s != '\0')
        seed = strtoull(s, NULL, 10);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_state = seed;
    fprintf(stderr, "test_random: seed %llu\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_workload_keeps_the_laws, fx_setup,
                                        random_teardown),
    };
    return cmocka_run_group_tests_name("random", tests, NULL, NULL);
}
