/* test_time.c: batch indexes and timestamps (engine/engine.h, engine_apply). A batch at or below
 * the applied index is a replay: skipped, returning 1, results untouched. A batch's effective time
 * is max(timestamp, last timestamp), so entry timestamps never go backwards. Empty batches are
 * ticks; batches above TALLY_BATCH_MAX are refused whole. */
#include "../support.h"

#include <stdlib.h>
#include <string.h>

static void assert_status_equal(const struct engine_status *a, const struct engine_status *b)
{
    assert_int_equal(a->applied_index, b->applied_index);
    assert_int_equal(a->last_timestamp, b->last_timestamp);
    assert_int_equal(a->entries, b->entries);
    assert_int_equal(a->chain_head, b->chain_head);
    assert_memory_equal(a->digest, b->digest, sizeof(a->digest));
}

static void test_replayed_index_is_skipped_and_returns_one(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(100, 1, 1, 100, 0));
    struct engine_status before;
    engine_status(f->e, &before);
    assert_int_equal(before.applied_index, f->index);

    struct tally_posting p = post_accrue(101, 1, 1, 5, 0);
    struct tally_result r;
    memset(&r, 0xab, sizeof(r));
    struct tally_result untouched = r;
    for (uint64_t index = 0; index <= f->index; index++) {
        assert_int_equal(engine_apply(f->e, index, t("2026-01-03"), &p, 1, &r), 1);
        assert_memory_equal(&r, &untouched, sizeof(r));
    }
    assert_int_equal(engine_apply(f->e, f->index, t("2026-01-03"), NULL, 0, NULL), 1);
    struct engine_status after;
    engine_status(f->e, &after);
    assert_status_equal(&before, &after);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
    uint8_t id[16];
    id_make(id, 101);
    struct engine_posting_info pi;
    assert_int_equal(engine_posting(f->e, id, &pi), TALLY_ENOT_FOUND);
}

static void test_replay_after_reopen_is_skipped(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    fx_ok(f, t("2026-01-02"), post_accrue(100, 1, 1, 100, 0));
    struct engine_status before;
    engine_status(f->e, &before);
    fx_reopen(f);
    struct engine_status reopened;
    engine_status(f->e, &reopened);
    assert_status_equal(&before, &reopened);
    assert_int_equal(reopened.applied_index, f->index);

    /* The log replays the last entry after a restart: it must not apply twice. */
    struct tally_posting p = post_accrue(100, 1, 1, 100, 0);
    struct tally_result r;
    assert_int_equal(engine_apply(f->e, f->index, t("2026-01-02"), &p, 1, &r), 1);
    assert_int_equal(fx_account(f, 1, 1).available, 100);
    /* The next index is applied. */
    assert_code(fx_apply1(f, t("2026-01-03"), post_accrue(101, 1, 1, 1, 0)).code, TALLY_OK);
    assert_int_equal(fx_account(f, 1, 1).available, 101);
}

static void test_indexes_may_skip_numbers(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    struct tally_posting p = post_program(1, 1, &c);
    struct tally_result r;
    assert_int_equal(engine_apply(f->e, 10, t("2026-01-01"), &p, 1, &r), 0);
    assert_code(r.code, TALLY_OK);
    p = post_open(2, 1, 1);
    assert_int_equal(engine_apply(f->e, 20, t("2026-01-01"), &p, 1, &r), 0);
    assert_code(r.code, TALLY_OK);
    struct engine_status st;
    engine_status(f->e, &st);
    assert_int_equal(st.applied_index, 20);
    assert_int_equal(st.entries, 2);
    assert_int_equal(engine_apply(f->e, 15, t("2026-01-01"), NULL, 0, NULL), 1);
}

static void test_earlier_batch_timestamp_is_applied_at_last_timestamp(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-10"), 1, NULL, 1);
    uint64_t seq = fx_ok(f, t("2026-03-05"), post_accrue(100, 1, 1, 100, 0));
    struct tally_lot_ref ref;
    uint32_t n = 0;
    struct tally_entry en = fx_entry(f, seq, &ref, 1, &n);
    assert_int_equal(en.timestamp, t("2026-03-10"));
    assert_int_equal(ref.earned_at, t("2026-03-10"));
    assert_int_equal(fx_posting(f, 100).timestamp, t("2026-03-10"));
    struct engine_status st;
    engine_status(f->e, &st);
    assert_int_equal(st.last_timestamp, t("2026-03-10"));
    fx_tick(f, t("2026-01-01"));
    engine_status(f->e, &st);
    assert_int_equal(st.last_timestamp, t("2026-03-10"));
}

static void test_tick_advances_index_and_time_only(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-03-10"), 1, NULL, 1);
    struct engine_status before;
    engine_status(f->e, &before);
    fx_tick(f, t("2026-03-11"));
    struct engine_status after;
    engine_status(f->e, &after);
    assert_int_equal(after.applied_index, before.applied_index + 1);
    assert_int_equal(after.last_timestamp, t("2026-03-11"));
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.chain_head, before.chain_head);
    /* The digest covers the applied index, so even a tick changes it. */
    assert_memory_not_equal(after.digest, before.digest, sizeof(after.digest));
}

static void test_entry_timestamps_never_go_backwards(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    config_default(&c);
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 3;
    c.tier_mode = TALLY_TIER_DOWN_STEP;
    c.validity_months = 1;
    fx_program(f, t("2026-03-01"), 1, &c, 3);
    fx_ok(f, t("2026-03-01T10:00Z"), post_accrue(100, 1, 1, 100, 6000));
    fx_ok(f, t("2026-03-01T11:00Z"), post_accrue_pending(101, 1, 2, 50, 0, DAY_MS));
    fx_ok(f, t("2026-03-01T12:00Z"), post_hold(102, 1, 1, 30, 2 * DAY_MS));
    fx_ok(f, t("2026-02-01"), post_accrue(103, 1, 3, 10, 0)); /* clock went back */
    fx_ok(f, t("2026-03-02"), post_accrue(104, 1, 3, 10, 0));
    fx_tick(f, t("2026-06-01")); /* activation, hold timeout, expiries, tier evaluations */
    fx_ok(f, t("2026-05-01"), post_accrue(105, 1, 2, 5, 0));

    uint64_t last = fx_entries(f);
    assert_true(last > 12);
    uint64_t prev = 0;
    uint32_t kinds_seen = 0;
    for (uint64_t s = 1; s <= last; s++) {
        struct tally_entry en = fx_entry(f, s, NULL, 0, NULL);
        if (en.timestamp < prev)
            fail_msg("entry %llu at %llu is before entry %llu at %llu", (unsigned long long)s,
                     (unsigned long long)en.timestamp, (unsigned long long)(s - 1),
                     (unsigned long long)prev);
        prev = en.timestamp;
        kinds_seen |= 1u << en.kind;
    }
    assert_true((kinds_seen & (1u << TALLY_KIND_ACTIVATE)) != 0);
    assert_true((kinds_seen & (1u << TALLY_KIND_RELEASE)) != 0);
    assert_true((kinds_seen & (1u << TALLY_KIND_EXPIRE)) != 0);
    assert_true((kinds_seen & (1u << TALLY_KIND_TIER_CHANGE)) != 0);
    assert_int_equal(fx_entry(f, last, NULL, 0, NULL).timestamp, t("2026-06-01"));
    fx_verify(f);
}

static void test_batch_above_limit_gives_too_large_and_applies_nothing(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    uint32_t count = TALLY_BATCH_MAX + 1;
    struct tally_posting *p = calloc(count, sizeof(*p));
    struct tally_result *r = calloc(count, sizeof(*r));
    assert_non_null(p);
    assert_non_null(r);
    /* Openings: one posting each, none of them a lot (a member holds at most
     * TALLY_LINEAGE_MAX open lots, fewer than a batch). */
    for (uint32_t i = 0; i < count; i++)
        p[i] = post_open(1000 + i, 1, 100 + i);
    struct engine_status before;
    engine_status(f->e, &before);
    assert_int_equal(engine_apply(f->e, f->index + 1, t("2026-01-02"), p, count, r),
                     TALLY_ETOO_LARGE);
    struct engine_status after;
    engine_status(f->e, &after);
    assert_status_equal(&before, &after);
    assert_int_equal(fx_totals(f, 1).members, 1);

    /* Exactly the limit is one batch. */
    fx_apply(f, t("2026-01-02"), p, TALLY_BATCH_MAX, r);
    for (uint32_t i = 0; i < TALLY_BATCH_MAX; i++)
        assert_code(r[i].code, TALLY_OK);
    assert_int_equal(fx_totals(f, 1).members, 1 + TALLY_BATCH_MAX);
    free(r);
    free(p);
    fx_verify(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_replayed_index_is_skipped_and_returns_one),
        FX_TEST(test_replay_after_reopen_is_skipped),
        FX_TEST(test_indexes_may_skip_numbers),
        FX_TEST(test_earlier_batch_timestamp_is_applied_at_last_timestamp),
        FX_TEST(test_tick_advances_index_and_time_only),
        FX_TEST(test_entry_timestamps_never_go_backwards),
        FX_TEST(test_batch_above_limit_gives_too_large_and_applies_nothing),
    };
    return cmocka_run_group_tests_name("time", tests, NULL, NULL);
}
