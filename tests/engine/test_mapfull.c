/* test_mapfull.c: the LMDB map filling up (a fault test). After MDB_MAP_FULL the transaction is
 * dead; the engine must abort, grow the map and re-run the batch, so that a ledger opened with a
 * tiny map still applies everything. Growth stops at map_size_max: apply then fails with
 * TALLY_EMAP_LIMIT, nothing of that batch is applied, and the engine still answers queries
 * (engine/engine.h, engine_options and engine_apply). */
#include "../support.h"

#include <stdlib.h>
#include <string.h>

#define TINY_MAP  ((size_t)256 << 10)
#define MEMBERS   50u
#define PER_BATCH 250u

static void tiny_options(struct engine_options *o, size_t max)
{
    engine_options_default(o);
    o->sync = false;
    o->map_size = TINY_MAP;
    o->map_size_max = max;
}

/* Batch k (from 0): PER_BATCH accruals of k+1 points, member i % MEMBERS + 1. */
static void fill_batch(struct tally_posting *p, uint32_t k)
{
    for (uint32_t i = 0; i < PER_BATCH; i++)
        p[i] = post_accrue((uint64_t)k * PER_BATCH + i + 1000, 1, i % MEMBERS + 1, k + 1, 0);
}

static void test_map_grows_on_map_full_and_keeps_every_batch(void **state)
{
    (void)state;
    struct engine_options o;
    tiny_options(&o, 0);
    static struct fx f;
    fx_init(&f, &o);
    struct engine_status st;
    engine_status(f.e, &st);
    assert_int_equal(st.map_size, TINY_MAP);
    fx_program(&f, t("2026-01-01"), 1, NULL, MEMBERS);

    struct tally_posting *p = calloc(PER_BATCH, sizeof(*p));
    struct tally_result *r = calloc(PER_BATCH, sizeof(*r));
    assert_non_null(p);
    assert_non_null(r);
    uint32_t batches = 40;
    for (uint32_t k = 0; k < batches; k++) {
        fill_batch(p, k);
        fx_apply(&f, t("2026-01-02") + k * HOUR_MS, p, PER_BATCH, r);
        for (uint32_t i = 0; i < PER_BATCH; i++)
            assert_code(r[i].code, TALLY_OK);
    }
    engine_status(f.e, &st);
    /* At least three doublings: 10,000 accruals with their lots and history need megabytes. */
    if (st.map_size < 8 * TINY_MAP)
        fail_msg("map size %llu after growth", (unsigned long long)st.map_size);
    assert_int_equal(st.entries, 1 + MEMBERS + batches * PER_BATCH);

    /* Each member got PER_BATCH / MEMBERS accruals of k+1 in every batch k. */
    uint64_t per_member = 0;
    for (uint32_t k = 0; k < batches; k++)
        per_member += (uint64_t)(PER_BATCH / MEMBERS) * (k + 1);
    for (uint64_t m = 1; m <= MEMBERS; m++)
        assert_int_equal(fx_account(&f, 1, m).available, per_member);
    assert_int_equal(fx_program_sum(&f, 1, MEMBERS), 0);
    fx_verify(&f);
    fx_reopen(&f);
    assert_int_equal(fx_account(&f, 1, MEMBERS).available, per_member);
    free(r);
    free(p);
    fx_deinit(&f);
}

static void test_map_at_its_maximum_gives_map_limit_and_applies_nothing(void **state)
{
    (void)state;
    size_t max = (size_t)1 << 20;
    struct engine_options o;
    tiny_options(&o, max);
    static struct fx f;
    fx_init(&f, &o);
    fx_program(&f, t("2026-01-01"), 1, NULL, MEMBERS);

    struct tally_posting *p = calloc(PER_BATCH, sizeof(*p));
    struct tally_result *r = calloc(PER_BATCH, sizeof(*r));
    assert_non_null(p);
    assert_non_null(r);
    int rc = 0;
    uint32_t k = 0;
    struct engine_status before;
    for (; k < 200; k++) {
        engine_status(f.e, &before);
        fill_batch(p, k);
        rc = engine_apply(f.e, f.index + 1, t("2026-01-02") + k * HOUR_MS, p, PER_BATCH, r);
        if (rc != 0)
            break;
        f.index++;
    }
    if (rc != TALLY_EMAP_LIMIT)
        fail_msg("apply of batch %u returned %d (%s), expected TALLY_EMAP_LIMIT", k, rc,
                 tally_strerror(rc));
    assert_true(k > 0); /* something fitted before the limit */

    struct engine_status after;
    engine_status(f.e, &after);
    assert_int_equal(after.applied_index, before.applied_index);
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.chain_head, before.chain_head);
    assert_memory_equal(after.digest, before.digest, sizeof(after.digest));
    assert_true(after.map_size <= max);

    /* Nothing of the failed batch, and the engine still answers. */
    struct engine_posting_info pi;
    assert_int_equal(engine_posting(f.e, p[0].id, &pi), TALLY_ENOT_FOUND);
    assert_int_equal(engine_posting(f.e, p[PER_BATCH - 1].id, &pi), TALLY_ENOT_FOUND);
    uint64_t per_member = 0;
    for (uint32_t j = 0; j < k; j++)
        per_member += (uint64_t)(PER_BATCH / MEMBERS) * (j + 1);
    assert_int_equal(fx_account(&f, 1, 1).available, per_member);
    struct tally_entry page[2];
    uint32_t n = 0;
    assert_int_equal(engine_history(f.e, 1, 1, 0, page, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(fx_program_sum(&f, 1, MEMBERS), 0);
    fx_verify(&f);
    free(r);
    free(p);
    fx_deinit(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_OWN_TEST(test_map_grows_on_map_full_and_keeps_every_batch),
        FX_OWN_TEST(test_map_at_its_maximum_gives_map_limit_and_applies_nothing),
    };
    return cmocka_run_group_tests_name("mapfull", tests, NULL, NULL);
}
