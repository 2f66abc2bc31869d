/* test_sessions.c: the replicated reply cache (engine.h, "Sessions"). A request applied once is
 * answered from the cache when it comes again (a client retrying through a new leader), an
 * older one is refused, and eviction of the least recently used session is deterministic. */
#include "../support.h"

#include <stdlib.h>
#include <string.h>

static struct engine_request req(uint8_t client, uint64_t number, uint32_t first, uint32_t count)
{
    struct engine_request r;
    memset(&r, 0, sizeof(r));
    r.client_id[0] = client;
    r.client_id[15] = 0x5a;
    r.request = number;
    r.first = first;
    r.count = count;
    return r;
}

/* Apply requests as the next index; fail the test on an engine error. */
static void apply_reqs(struct fx *f, uint64_t ts, const struct engine_request *r, uint32_t nr,
                       const struct tally_posting *p, uint32_t n, struct tally_result *res,
                       uint8_t *status)
{
    f->index++;
    int rc = engine_apply_requests(f->e, f->index, ts, r, nr, p, n, res, status);
    if (rc != 0)
        fail_msg("engine_apply_requests: %d %s", rc, tally_strerror(rc));
}

static void test_retried_request_is_answered_from_the_cache(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p[2] = {post_accrue(100, 1, 1, 50, 0), post_redeem(101, 1, 1, 80)};
    struct engine_request r = req(7, 1, 0, 2);
    struct tally_result res[2], again[2];
    uint8_t st = 0xff;
    apply_reqs(f, t("2026-01-02"), &r, 1, p, 2, res, &st);
    assert_int_equal(st, ENGINE_REQUEST_APPLIED);
    assert_code(res[0].code, TALLY_OK);
    assert_code(res[1].code, TALLY_INSUFFICIENT_POINTS);
    uint64_t entries = fx_entries(f);

    /* The same request again, as a retry reaching a new leader would: the cached reply, not
     * EXISTS from the posting ids, and nothing applied. */
    apply_reqs(f, t("2026-01-03"), &r, 1, p, 2, again, &st);
    assert_int_equal(st, ENGINE_REQUEST_REPLAYED);
    assert_memory_equal(again, res, sizeof(res));
    assert_int_equal(fx_entries(f), entries);
    assert_int_equal(fx_account(f, 1, 1).available, 50);
    uint64_t last = 0;
    assert_int_equal(engine_session(f->e, r.client_id, &last), 0);
    assert_int_equal(last, 1);
    fx_verify(f);
}

static void test_older_request_is_not_applied(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p1 = post_accrue(100, 1, 1, 50, 0), p2 = post_accrue(101, 1, 1, 7, 0);
    struct tally_result res;
    uint8_t st;
    struct engine_request r1 = req(7, 1, 0, 1), r2 = req(7, 2, 0, 1);
    apply_reqs(f, t("2026-01-02"), &r1, 1, &p1, 1, &res, &st);
    apply_reqs(f, t("2026-01-02"), &r2, 1, &p2, 1, &res, &st);
    assert_int_equal(st, ENGINE_REQUEST_APPLIED);
    /* Request 1 arrives late (an old retry): it is neither applied nor answered. */
    struct tally_posting p3 = post_accrue(102, 1, 1, 1000, 0);
    memset(&res, 0xab, sizeof(res));
    apply_reqs(f, t("2026-01-03"), &r1, 1, &p3, 1, &res, &st);
    assert_int_equal(st, ENGINE_REQUEST_OLD);
    assert_int_equal(res.code, 0);
    assert_int_equal(res.seq, 0);
    assert_int_equal(fx_account(f, 1, 1).available, 57);
    fx_verify(f);
}

static void test_retry_in_the_same_entry_is_answered_from_the_cache(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 2);
    /* Client 7's request 1, client 8's request 1, then client 7's request 1 again (a retry
     * that the leader put in the same entry as the original). */
    struct tally_posting p[3] = {post_accrue(100, 1, 1, 10, 0), post_accrue(101, 1, 2, 20, 0),
                                 post_accrue(100, 1, 1, 10, 0)};
    struct engine_request r[3] = {req(7, 1, 0, 1), req(8, 1, 1, 1), req(7, 1, 2, 1)};
    struct tally_result res[3];
    uint8_t st[3];
    apply_reqs(f, t("2026-01-02"), r, 3, p, 3, res, st);
    assert_int_equal(st[0], ENGINE_REQUEST_APPLIED);
    assert_int_equal(st[1], ENGINE_REQUEST_APPLIED);
    assert_int_equal(st[2], ENGINE_REQUEST_REPLAYED);
    assert_memory_equal(&res[2], &res[0], sizeof(res[0]));
    assert_code(res[0].code, TALLY_OK);
    assert_int_equal(fx_account(f, 1, 1).available, 10);
    assert_int_equal(fx_account(f, 1, 2).available, 20);
    fx_verify(f);
}

static void test_malformed_request_table_is_refused(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p[2] = {post_accrue(100, 1, 1, 10, 0), post_accrue(101, 1, 1, 10, 0)};
    struct tally_result res[2];
    uint8_t st[2];
    struct engine_request gap[2] = {req(7, 1, 0, 1), req(8, 1, 2, 1)};
    struct engine_request zero = req(7, 0, 0, 2);
    struct engine_request shortr = req(7, 1, 0, 1);
    struct engine_status before, after;
    engine_status(f->e, &before);
    assert_int_equal(engine_apply_requests(f->e, f->index + 1, t("2026-01-02"), gap, 2, p, 2, res, st),
                     TALLY_ECONFIG);
    assert_int_equal(engine_apply_requests(f->e, f->index + 1, t("2026-01-02"), &zero, 1, p, 2, res, st),
                     TALLY_ECONFIG);
    assert_int_equal(engine_apply_requests(f->e, f->index + 1, t("2026-01-02"), &shortr, 1, p, 2, res, st),
                     TALLY_ECONFIG);
    engine_status(f->e, &after);
    assert_memory_equal(before.digest, after.digest, sizeof(before.digest));
}

static void test_least_recently_used_session_is_evicted_deterministically(void **state)
{
    struct fx *f = *state;
    fx_program(f, t("2026-01-01"), 1, NULL, 1);
    uint32_t n = ENGINE_SESSIONS_MAX; /* fill the table, one request per session */
    struct tally_posting *p = calloc(n, sizeof(*p));
    struct tally_result *res = calloc(n, sizeof(*res));
    struct engine_request *r = calloc(n, sizeof(*r));
    uint8_t *st = calloc(n, 1);
    assert_non_null(p);
    assert_non_null(r);
    uint32_t done = 0;
    while (done < n) {
        uint32_t k = n - done < TALLY_BATCH_MAX ? n - done : TALLY_BATCH_MAX;
        for (uint32_t i = 0; i < k; i++) {
            p[i] = post_open(1000 + done + i, 1, 100 + done + i); /* no lots: members differ */
            memset(&r[i], 0, sizeof(r[i]));
            r[i].client_id[0] = 1;
            memcpy(r[i].client_id + 8, &(uint64_t){done + i}, 8);
            r[i].request = 1;
            r[i].first = i;
            r[i].count = 1;
        }
        apply_reqs(f, t("2026-01-02"), r, k, p, k, res, st);
        done += k;
    }
    assert_int_equal(engine_sessions(f->e), n);
    /* One more session evicts the oldest: the first of the first batch (lowest index, then
     * lowest client id). */
    struct engine_request extra = req(9, 1, 0, 1);
    struct tally_posting px = post_open(999, 1, 99);
    apply_reqs(f, t("2026-01-03"), &extra, 1, &px, 1, res, st);
    assert_int_equal(engine_sessions(f->e), n);
    uint8_t first[16] = {1};
    uint64_t last;
    assert_int_equal(engine_session(f->e, first, &last), TALLY_ENOT_FOUND);
    uint8_t second[16] = {1};
    memcpy(second + 8, &(uint64_t){1}, 8);
    assert_int_equal(engine_session(f->e, second, &last), 0);
    /* The evicted client's retry is applied as new, and its posting id still stops it. */
    struct engine_request again;
    memset(&again, 0, sizeof(again));
    memcpy(again.client_id, first, 16);
    again.request = 1;
    again.count = 1;
    struct tally_posting p0 = post_open(1000, 1, 100);
    apply_reqs(f, t("2026-01-03"), &again, 1, &p0, 1, res, st);
    assert_int_equal(st[0], ENGINE_REQUEST_APPLIED);
    assert_code(res[0].code, TALLY_EXISTS);
    assert_int_equal(fx_totals(f, 1).members, 1 + n + 1);
    free(st);
    free(r);
    free(res);
    free(p);
    fx_verify(f);
}

static void test_sessions_are_part_of_the_digest(void **state)
{
    (void)state;
    static struct fx a, b;
    fx_init(&a, NULL);
    fx_init(&b, NULL);
    fx_program(&a, t("2026-01-01"), 1, NULL, 1);
    fx_program(&b, t("2026-01-01"), 1, NULL, 1);
    struct tally_posting p = post_accrue(100, 1, 1, 5, 0);
    struct engine_request ra = req(7, 1, 0, 1), rb = req(8, 1, 0, 1);
    struct tally_result res;
    uint8_t st;
    apply_reqs(&a, t("2026-01-02"), &ra, 1, &p, 1, &res, &st);
    apply_reqs(&b, t("2026-01-02"), &rb, 1, &p, 1, &res, &st);
    struct engine_status sa, sb;
    engine_status(a.e, &sa);
    engine_status(b.e, &sb);
    assert_int_equal(sa.chain_head, sb.chain_head); /* same entries */
    assert_memory_not_equal(sa.digest, sb.digest, sizeof(sa.digest)); /* other sessions */
    fx_verify(&a);
    fx_verify(&b);
    fx_deinit(&a);
    fx_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_retried_request_is_answered_from_the_cache),
        FX_TEST(test_older_request_is_not_applied),
        FX_TEST(test_retry_in_the_same_entry_is_answered_from_the_cache),
        FX_TEST(test_malformed_request_table_is_refused),
        FX_TEST(test_least_recently_used_session_is_evicted_deterministically),
        FX_OWN_TEST(test_sessions_are_part_of_the_digest),
    };
    return cmocka_run_group_tests_name("sessions", tests, NULL, NULL);
}
