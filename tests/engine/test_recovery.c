/* test_recovery.c: a writer that dies before writing its member images back loses nothing.
 *
 * The engine keeps member images (accounts and lots) in memory and writes them back to LMDB
 * lazily; a batch makes only its entries and the records beside them durable (docs/STORAGE.md).
 * At open, recovery folds the entries the `members` B-tree may not include. These tests run the
 * same batches twice: once in a process that ends with _exit() (no engine_close, so no final
 * write-back), reopened afterwards; once cleanly in another directory. Both ledgers must then be
 * identical: digest, entry count, every account and every lot, history and point-in-time
 * balances; and the independent auditor must find nothing wrong with the recovered one.
 *
 * The workload mixes every posting kind over a few dozen members and lets simulated time run
 * over months, so that pending activation, hold timeouts, expiry and tier evaluation happen, and
 * with short write-back turns the sweep writes some images back mid-run and moves fold_from.
 */
#include "../support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEMBERS 24u
#define PER_BATCH 40u
#define BATCHES 120u
#define CRASH_AT 50u /* batches applied cleanly before the writer that dies takes over */

/* A tiny deterministic generator (no state shared with the engine). */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

static uint64_t id_of(uint64_t k, uint32_t i)
{
    return k << 16 | i;
}

static struct tally_posting base_posting(uint64_t k, uint32_t i, uint64_t r);

/* The random draw of posting i of batch k. */
static uint64_t draw(uint64_t k, uint32_t i)
{
    return mix(k * 1000003 + i);
}

/* Kinds 9, 10, 11 and 14 of the draw act on an earlier posting. */
static bool acts_on_ref(uint64_t r)
{
    uint32_t kind = (uint32_t)((r >> 40) % 16);
    return kind == 9 || kind == 10 || kind == 11 || kind == 14;
}

/* A recent posting of one of the wanted kinds (a bit mask of kinds; ACCRUE with the PENDING flag
 * when `pending`), searched from a pseudo-random start: its id and member. False if none. */
static bool find_ref(uint64_t k, uint64_t r, uint32_t kinds, bool pending, uint64_t *id,
                     uint64_t *member)
{
    for (uint64_t back = 1 + r % 3; back <= 8 && back + 2 <= k; back++) {
        for (uint32_t j = 0; j < PER_BATCH; j++) {
            uint32_t i = (uint32_t)((j + (r >> 8)) % PER_BATCH);
            uint64_t rq = draw(k - back, i);
            if (acts_on_ref(rq))
                continue; /* only postings that stand alone: no recursion into their refs */
            struct tally_posting q = base_posting(k - back, i, rq);
            bool is_pending = (q.flags & TALLY_FLAG_PENDING) != 0;
            if ((kinds & (1u << q.kind)) && (!pending || is_pending)) {
                *id = id_of(k - back, i);
                *member = q.account;
                return true;
            }
        }
    }
    return false;
}

static struct tally_posting posting_for(uint64_t k, uint32_t i)
{
    uint64_t r = draw(k, i);
    uint64_t amt = 1 + (r >> 32) % 300, id = id_of(k, i), ref = 0, rm = 0;
    uint32_t kind = (uint32_t)((r >> 40) % 16);
    uint32_t accrue = 1u << TALLY_KIND_ACCRUE, hold = 1u << TALLY_KIND_HOLD;
    uint32_t spent = 1u << TALLY_KIND_REDEEM;
    switch (kind) {
    case 9:
        if (find_ref(k, r, hold, false, &ref, &rm))
            return post_capture(id, 1, rm, ref, (r >> 50) % 2 ? 0 : amt / 5);
        break;
    case 10:
        if (find_ref(k, r, hold, false, &ref, &rm))
            return post_release(id, 1, rm, ref);
        break;
    case 11:
        if (find_ref(k, r, (r >> 50) % 2 ? accrue : spent, false, &ref, &rm))
            return post_reverse(id, 1, rm, ref, (r >> 51) % 2 ? 0 : amt / 4);
        break;
    case 14:
        if (find_ref(k, r, accrue, true, &ref, &rm))
            return (r >> 50) % 2 ? post_activate(id, 1, rm, ref) : post_cancel(id, 1, rm, ref);
        break;
    default:
        break;
    }
    return base_posting(k, i, r);
}

/* A posting that acts on no earlier one (an accrual where a ref kind found nothing). */
static struct tally_posting base_posting(uint64_t k, uint32_t i, uint64_t r)
{
    uint64_t m = 1 + r % MEMBERS, m2 = 1 + (r >> 20) % MEMBERS;
    uint64_t amt = 1 + (r >> 32) % 300, id = id_of(k, i);
    switch ((r >> 40) % 16) {
    case 5:
        return post_accrue_pending(id, 1, m, amt, amt * 10, 3 * DAY_MS);
    case 6: case 7:
        return post_redeem(id, 1, m, amt / 2 + 1);
    case 8:
        return post_hold(id, 1, m, amt / 3 + 1, (1 + r % 4) * DAY_MS);
    case 12:
        return m == m2 ? post_accrue(id, 1, m, amt, 0) : post_transfer(id, 1, m, m2, amt / 4 + 1);
    case 13:
        return post_adjust(id, 1, m, amt / 5 + 1, (r >> 50) % 3 == 0, 7);
    case 15:
        return post_redeem(id, 1, m2, amt);
    default: /* 0-4, and a ref kind that found nothing to act on */
        return post_accrue(id, 1, m, amt, amt * 10);
    }
}

static uint32_t batch_make(uint64_t k, struct tally_posting *p)
{
    if (k == 1) {
        struct tally_program_config c;
        config_default(&c);
        c.expiry = TALLY_EXPIRY_MONTH;
        c.expiry_n = 1;
        c.tier_mode = TALLY_TIER_DOWN_STEP;
        c.validity_months = 2;
        p[0] = post_program(id_of(1, 0), 1, &c);
        for (uint32_t m = 1; m <= MEMBERS; m++)
            p[m] = post_open(id_of(1, m), 1, m);
        return MEMBERS + 1;
    }
    for (uint32_t i = 0; i < PER_BATCH; i++)
        p[i] = posting_for(k, i);
    return PER_BATCH;
}

static uint64_t time_of(uint64_t k)
{
    return t("2026-01-01") + k * DAY_MS / 2;
}

/* Successful postings per kind over a run, to show the workload is not all rejections. */
static uint32_t ok_by_kind[TALLY_KIND_LIMIT];

static void apply_range(struct engine *e, uint64_t from, uint64_t to)
{
    static struct tally_posting p[PER_BATCH + MEMBERS + 1];
    static struct tally_result r[PER_BATCH + MEMBERS + 1];
    for (uint64_t k = from; k <= to; k++) {
        uint32_t n = batch_make(k, p);
        int rc = engine_apply(e, k, time_of(k), p, n, r);
        if (rc != 0)
            fail_msg("apply of batch %llu: %d %s", (unsigned long long)k, rc, tally_strerror(rc));
        for (uint32_t i = 0; i < n; i++)
            ok_by_kind[p[i].kind] += r[i].code == TALLY_OK;
    }
}

static struct engine *open_engine(const char *dir, uint64_t turn)
{
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    o.turn_entries = turn;
    struct engine *e;
    int rc = engine_open(&e, dir, &o);
    if (rc != 0)
        fail_msg("engine_open(%s): %d %s", dir, rc, tally_strerror(rc));
    return e;
}

/* Batches 1..CRASH_AT cleanly, then CRASH_AT+1..last in a child that never closes. */
static void run_and_die(const char *dir, uint64_t turn, uint64_t last)
{
    struct engine *e = open_engine(dir, turn);
    apply_range(e, 1, CRASH_AT);
    engine_close(e);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        e = open_engine(dir, turn);
        apply_range(e, CRASH_AT + 1, last);
        _exit(0); /* no engine_close: the member images are not all written back */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void assert_same_ledger(struct engine *a, struct engine *b)
{
    assert_same_engines(a, b);
    static struct tally_lot la[TALLY_LINEAGE_MAX], lb[TALLY_LINEAGE_MAX];
    for (uint64_t m = 1; m <= MEMBERS; m++) {
        struct tally_account xa, xb;
        assert_int_equal(engine_account(a, 1, m, &xa), 0);
        assert_int_equal(engine_account(b, 1, m, &xb), 0);
        assert_memory_equal(&xa, &xb, sizeof(xa));
        uint32_t na, nb;
        assert_int_equal(engine_lots(a, 1, m, la, TALLY_LINEAGE_MAX, &na), 0);
        assert_int_equal(engine_lots(b, 1, m, lb, TALLY_LINEAGE_MAX, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(la, lb, na * sizeof(la[0]));
        struct tally_balance ba, bb;
        uint64_t mid = time_of(CRASH_AT + 10);
        assert_int_equal(engine_balance_at(a, 1, m, mid, &ba), 0);
        assert_int_equal(engine_balance_at(b, 1, m, mid, &bb), 0);
        assert_memory_equal(&ba, &bb, sizeof(ba));
    }
    for (uint64_t s = UINT64_C(0xffffffffffffffff) - 3; s != 0; s++) {
        struct tally_account xa, xb;
        assert_int_equal(engine_account(a, 1, s, &xa), 0);
        assert_int_equal(engine_account(b, 1, s, &xb), 0);
        assert_memory_equal(&xa, &xb, sizeof(xa));
    }
}

static void audit_ok(const char *dir)
{
    struct audit_report rep;
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(audit_verify(dir, &rep), 0);
    if (!rep.ok)
        fail_msg("audit of %s: seq %llu: %s", dir, (unsigned long long)rep.bad_seq, rep.what);
}

static void recovery_case(uint64_t turn)
{
    char crashed[64], clean[64];
    tmpdir_make(crashed);
    tmpdir_make(clean);
    run_and_die(crashed, turn, BATCHES);
    audit_ok(crashed); /* before recovery: stale images, entries ahead of them */

    memset(ok_by_kind, 0, sizeof(ok_by_kind));
    struct engine *b = open_engine(clean, turn);
    apply_range(b, 1, BATCHES);
    for (uint16_t k = TALLY_KIND_PROGRAM; k <= TALLY_KIND_ADJUST; k++)
        if (ok_by_kind[k] == 0)
            fail_msg("the workload had no successful posting of kind %u", k);

    /* The dead writer left entries that no stored image includes yet: recovery has work. */
    struct engine_options ro;
    engine_options_default(&ro);
    ro.read_only = true;
    struct engine *r;
    assert_int_equal(engine_open(&r, crashed, &ro), 0);
    struct engine_status st;
    engine_status(r, &st);
    engine_close(r);
    if (st.fold_from > st.entries - 100)
        fail_msg("fold_from %llu leaves too little to recover of %llu entries",
                 (unsigned long long)st.fold_from, (unsigned long long)st.entries);
    if (turn != 0 && st.fold_from <= 1)
        fail_msg("short turns never moved fold_from");
    struct engine *a = open_engine(crashed, turn); /* recovery */
    assert_same_ledger(a, b);

    /* And they stay the same afterwards. */
    apply_range(a, BATCHES + 1, BATCHES + 20);
    apply_range(b, BATCHES + 1, BATCHES + 20);
    assert_same_ledger(a, b);
    engine_close(a);
    engine_close(b);
    audit_ok(crashed);
    audit_ok(clean);
    tmpdir_remove(crashed);
    tmpdir_remove(clean);
}

static void test_recovery_without_write_back_gives_the_same_ledger(void **state)
{
    (void)state;
    recovery_case(0); /* default turns: nothing is written back before the writer dies */
}

static void test_recovery_after_partial_write_back_gives_the_same_ledger(void **state)
{
    (void)state;
    recovery_case(200); /* short turns: images written back at many points, fold_from moving */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery_without_write_back_gives_the_same_ledger),
        cmocka_unit_test(test_recovery_after_partial_write_back_gives_the_same_ledger),
    };
    return cmocka_run_group_tests_name("recovery", tests, NULL, NULL);
}
