/* test_clock.c: a client-driven ledger clock (tallyd --clock client, POST_AT), on 3 real tallyd
 * processes on loopback. What it shows (docs/ARCHITECTURE.md, "Ledger time"):
 *   - postings sent with at in 1997 are applied in entries stamped then, on every replica;
 *   - an idle leader proposes no tick entries, and a plain POST is stamped with the ledger's
 *     time, not the wall clock;
 *   - a pending accrual activates only when a later POST_AT moves time past its window, and a
 *     lot expires only when one moves time past its expiry (the EXPIRE entry stamped when due);
 *   - an at earlier than the ledger's time (0 included) is stamped with the ledger's time: time
 *     never goes backwards;
 *   - concurrent clients posting different times: every posting is applied at exactly
 *     max(ledger time before its entry, its at), so no entry mixed requests of different stamps;
 *   - a retried POST_AT (same session and request number) gets the kept reply, applied once;
 *     libtally's resend after an unknown outcome is the same request;
 *   - malformed POST_AT bodies (shorter than the prefix, no postings, not whole postings,
 *     reserved nonzero, at past 9999) get BAD_REQUEST, the connection and the server go on,
 *     nothing is applied;
 *   - a replica started with --clock wall in this cluster logs clock_mode_mismatch and counts
 *     the entries (the mode travels in the entries);
 *   - tally-audit verify passes on every replica's ledger afterwards.
 * The refusal of POST_AT by a --clock wall cluster is in test_cluster.c (a wall-clock cluster).
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tally.h"
#include "tally_wire.h"

static struct tally_client *admin;
static uint64_t next_id = 1;

/* 1997-01-01T00:00Z: where the replays of CDNOW's history start. */
#define T1997     UINT64_C(852076800000)
#define WINDOW_MS (7 * DAY_MS)

/* Program 1: no expiry (config_default); program 2: lots expire 365 days after earning. */
static int group_setup(void **state)
{
    (void)state;
    cl.clock = "client";
    cluster_up();
    admin = client_of(cl.clients);
    (void)leader_address(admin);
    struct tally_program_config c, y;
    config_default(&c);
    config_default(&y);
    y.expiry = TALLY_EXPIRY_DAYS;
    y.expiry_n = 365;
    struct tally_posting p[2 + 2 * 4] = {post_program(next_id++, 1, &c),
                                         post_program(next_id++, 2, &y)};
    uint32_t n = 2;
    for (uint32_t prog = 1; prog <= 2; prog++)
        for (unsigned m = 1; m <= 4; m++)
            p[n++] = post_open(next_id++, prog, m);
    struct tally_result r[10];
    int rc = tally_client_post_at(admin, T1997, p, n, r, 10000);
    if (rc != 0)
        fail_msg("POST_AT: %d %s", rc, tally_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        assert_code(r[i].code, TALLY_OK);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return harness_teardown(admin);
}

/* The effective time the ledger recorded for posting id (the POSTING read). */
static uint64_t stamp_of(uint64_t id)
{
    uint8_t raw[16];
    id_make(raw, id);
    struct tally_posting_outcome o;
    int rc = tally_client_post_outcome(admin, raw, &o, 10000);
    if (rc != 0)
        fail_msg("outcome of %llu: %d %s", (unsigned long long)id, rc, tally_strerror(rc));
    return o.timestamp;
}

/* The leader's ledger time (STATUS). */
static uint64_t ledger_time(void)
{
    struct tally_replica_status st[N];
    uint32_t n = 0;
    const char *leader = leader_address(admin);
    assert_int_equal(tally_client_status(admin, st, N, &n, 5000), 0);
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(st[i].address, leader) == 0)
            return st[i].last_timestamp;
    fail_msg("the leader %s did not answer STATUS", leader);
    return 0;
}

/* One posting at `at`; returns its result, fails on a call error. */
static struct tally_result post_at1(uint64_t at, struct tally_posting p)
{
    struct tally_result r;
    int rc = tally_client_post_at(admin, at, &p, 1, &r, 10000);
    if (rc != 0)
        fail_msg("POST_AT %llu: %d %s", (unsigned long long)at, rc, tally_strerror(rc));
    return r;
}

static void test_postings_at_1997_are_stamped_then_on_every_replica(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t at = T1997 + 74 * DAY_MS + 10 * HOUR_MS; /* 1997-03-16T10:00Z */
    uint64_t id = next_id++;
    assert_code(post_at1(at, post_accrue(id, 1, 1, 120, 1200)).code, TALLY_OK);
    assert_int_equal(stamp_of(id), at);
    assert_int_equal(ledger_time(), at);
    /* Every replica applied it at the same index, stamped the same (the digests cover it). */
    wait_converged(admin, 10000);
    struct tally_replica_status st[N];
    uint32_t n = 0;
    assert_int_equal(tally_client_status(admin, st, N, &n, 5000), 0);
    assert_int_equal(n, N);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(st[i].last_timestamp, at);
    /* The entry itself carries the time (history, newest first). */
    struct tally_entry en[4];
    uint32_t count = 0;
    assert_int_equal(tally_client_history(admin, 1, 1, 0, en, 4, &count, NULL), 0);
    assert_true(count >= 1);
    assert_int_equal(en[0].timestamp, at);
}

/* No tick entries under the client clock, and a plain POST takes the ledger's time. */
static void test_idle_leader_does_not_move_time_and_a_post_takes_the_ledger_time(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t at = ledger_time() + HOUR_MS;
    assert_code(post_at1(at, post_accrue(next_id++, 1, 2, 10, 0)).code, TALLY_OK);
    wait_converged(admin, 10000);
    struct tally_replica_status before[N], after[N];
    uint32_t n = 0;
    assert_int_equal(tally_client_status(admin, before, N, &n, 5000), 0);
    usleep(1000 * 1000); /* five tick periods of the harness's --tick 200 */
    assert_int_equal(tally_client_status(admin, after, N, &n, 5000), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(after[i].applied_index, before[i].applied_index);
        assert_int_equal(after[i].last_timestamp, at);
    }
    uint64_t id = next_id++;
    post_ok(admin, (struct tally_posting[]){post_accrue(id, 1, 2, 5, 0)}, 1);
    assert_int_equal(stamp_of(id), at); /* 1997, not the wall clock */
    assert_int_equal(ledger_time(), at);
}

static void test_pending_accrual_activates_only_when_time_passes_its_window(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t t0 = ledger_time() + DAY_MS;
    struct tally_account a0;
    assert_int_equal(tally_client_account(admin, 1, 3, &a0, NULL), 0);
    uint64_t id = next_id++;
    assert_code(post_at1(t0, post_accrue_pending(id, 1, 3, 300, 0, WINDOW_MS)).code, TALLY_OK);
    struct tally_account a;
    assert_int_equal(tally_client_account(admin, 1, 3, &a, NULL), 0);
    assert_int_equal(a.pending, a0.pending + 300);
    assert_int_equal(a.available, a0.available);
    /* Six days later (another member's posting moves time): still pending. */
    assert_code(post_at1(t0 + 6 * DAY_MS, post_accrue(next_id++, 1, 4, 1, 0)).code, TALLY_OK);
    assert_int_equal(tally_client_account(admin, 1, 3, &a, NULL), 0);
    assert_int_equal(a.pending, a0.pending + 300);
    assert_int_equal(a.available, a0.available);
    /* Past the window: activated, by an entry stamped when it fell due. */
    assert_code(post_at1(t0 + WINDOW_MS + 1, post_accrue(next_id++, 1, 4, 1, 0)).code, TALLY_OK);
    assert_int_equal(tally_client_account(admin, 1, 3, &a, NULL), 0);
    assert_int_equal(a.pending, a0.pending);
    assert_int_equal(a.available, a0.available + 300);
    struct tally_entry en[4];
    uint32_t count = 0;
    assert_int_equal(tally_client_history(admin, 1, 3, 0, en, 4, &count, NULL), 0);
    assert_true(count >= 2);
    assert_int_equal(en[0].kind, TALLY_KIND_ACTIVATE);
    assert_int_equal(en[0].timestamp, t0 + WINDOW_MS);
}

static void test_a_lot_expires_only_when_time_passes_its_expiry(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t t0 = ledger_time() + DAY_MS;
    assert_code(post_at1(t0, post_accrue(next_id++, 2, 1, 700, 0)).code, TALLY_OK);
    struct tally_account a;
    assert_int_equal(tally_client_account(admin, 2, 1, &a, NULL), 0);
    assert_int_equal(a.available, 700);
    assert_code(post_at1(t0 + 364 * DAY_MS, post_accrue(next_id++, 2, 2, 1, 0)).code, TALLY_OK);
    assert_int_equal(tally_client_account(admin, 2, 1, &a, NULL), 0);
    assert_int_equal(a.available, 700);
    assert_code(post_at1(t0 + 367 * DAY_MS, post_accrue(next_id++, 2, 2, 1, 0)).code, TALLY_OK);
    assert_int_equal(tally_client_account(admin, 2, 1, &a, NULL), 0);
    assert_int_equal(a.available, 0);
    assert_int_equal(a.expired, 700);
    struct tally_entry en[4];
    uint32_t count = 0;
    assert_int_equal(tally_client_history(admin, 2, 1, 0, en, 4, &count, NULL), 0);
    assert_true(count >= 1);
    assert_int_equal(en[0].kind, TALLY_KIND_EXPIRE);
    assert_true(en[0].timestamp > t0 + 364 * DAY_MS);
    assert_true(en[0].timestamp <= t0 + 367 * DAY_MS);
}

static void test_an_earlier_at_is_stamped_with_the_ledger_time(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t now = ledger_time();
    uint64_t id = next_id++;
    assert_code(post_at1(now - 365 * DAY_MS, post_accrue(id, 1, 1, 3, 0)).code, TALLY_OK);
    assert_int_equal(stamp_of(id), now);
    id = next_id++;
    assert_code(post_at1(0, post_accrue(id, 1, 1, 3, 0)).code, TALLY_OK);
    assert_int_equal(stamp_of(id), now);
    assert_int_equal(ledger_time(), now);
    /* Past the wire's maximum: refused before anything is sent. */
    struct tally_posting p = post_accrue(next_id++, 1, 1, 3, 0);
    struct tally_result r;
    assert_int_equal(tally_client_post_at(admin, TALLY_WIRE_AT_MAX + 1, &p, 1, &r, 5000),
                     TALLY_ECONFIG);
}

/* ---- concurrent clients, different times ------------------------------------------------------
 */

#define WRITERS 4u
#define ROUNDS  25u

struct posted {
    uint64_t id, at, index;
};

struct writer {
    unsigned k;
    uint64_t base;
    uint64_t first_id;
    struct posted done[ROUNDS];
    int rc;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    struct tally_client *c = client_of(cl.clients);
    for (unsigned i = 0; i < ROUNDS && w->rc == 0; i++) {
        /* Times interleave across writers and sometimes repeat (equal stamps may share). */
        uint64_t at = w->base + (uint64_t)(i * 3 + w->k % 3) * MINUTE_MS;
        uint64_t id = w->first_id + i;
        struct tally_posting p = post_accrue(id, 1, 1 + w->k % 4, 1, 0);
        struct tally_result r;
        w->rc = tally_client_post_at(c, at, &p, 1, &r, 10000);
        if (w->rc == 0 && r.code != TALLY_OK)
            w->rc = -1000 - (int)r.code;
        w->done[i] = (struct posted){id, at, tally_client_last_index(c)};
    }
    tally_client_close(c);
    return NULL;
}

static int posted_by_index(const void *a, const void *b)
{
    const struct posted *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void test_concurrent_times_are_never_mixed_in_one_entry(void **state)
{
    (void)state;
    mark_logs(__func__);
    uint64_t start = ledger_time();
    static struct writer w[WRITERS];
    pthread_t th[WRITERS];
    for (unsigned k = 0; k < WRITERS; k++) {
        w[k] = (struct writer){.k = k, .base = start + MINUTE_MS, .first_id = next_id};
        next_id += ROUNDS;
        assert_int_equal(pthread_create(&th[k], NULL, writer_run, &w[k]), 0);
    }
    for (unsigned k = 0; k < WRITERS; k++)
        pthread_join(th[k], NULL);
    static struct posted all[WRITERS * ROUNDS];
    unsigned n = 0;
    for (unsigned k = 0; k < WRITERS; k++) {
        if (w[k].rc != 0)
            fail_msg("writer %u: %d %s", k, w[k].rc, tally_strerror(w[k].rc));
        memcpy(&all[n], w[k].done, sizeof(w[k].done));
        n += ROUNDS;
    }
    /* Nothing but these writers proposed entries meanwhile (no ticks): in index order, each
     * posting was applied at exactly max(the time before its entry, its at). */
    qsort(all, n, sizeof(all[0]), posted_by_index);
    uint64_t before = start, entry = 0, entry_stamp = 0;
    unsigned shared = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t stamp = stamp_of(all[i].id);
        if (all[i].index != entry) {
            before = entry == 0 ? start : entry_stamp;
            entry = all[i].index;
            entry_stamp = stamp;
        } else {
            shared++;
            assert_int_equal(stamp, entry_stamp); /* one entry, one stamp */
        }
        uint64_t want = all[i].at > before ? all[i].at : before;
        if (stamp != want)
            fail_msg("posting %llu at %llu in entry %llu stamped %llu, not %llu",
                     (unsigned long long)all[i].id, (unsigned long long)all[i].at,
                     (unsigned long long)entry, (unsigned long long)stamp,
                     (unsigned long long)want);
    }
    fprintf(stderr, "%u postings, %u of them in an entry with another\n", n, shared);
    wait_converged(admin, 10000);
}

/* ---- sessions and bad bytes ------------------------------------------------------------------ */

static void test_retried_post_at_takes_effect_once(void **state)
{
    (void)state;
    mark_logs(__func__);
    int fd = raw_connect(leader_address(admin));
    uint8_t id[16];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xa0 + i);
    uint8_t out[4096];
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    assert_int_equal(
        raw_call(fd, TALLY_WIRE_OP_REGISTER, id, 0, &reg, sizeof(reg), out, sizeof(out)),
        TALLY_WIRE_OK);
    int64_t before = available(admin, 2);
    uint64_t at = ledger_time() + HOUR_MS;
    uint8_t body[16 + sizeof(struct tally_posting)];
    struct tally_wire_post_at pre = {.at = at, .reserved = 0};
    uint64_t pid = next_id++;
    struct tally_posting p = post_accrue(pid, 1, 2, 9, 0);
    memcpy(body, &pre, sizeof(pre));
    memcpy(body + 16, &p, sizeof(p));
    assert_int_equal(
        raw_call(fd, TALLY_WIRE_OP_POST_AT, id, 5, body, sizeof(body), out, sizeof(out)),
        TALLY_WIRE_OK);
    struct tally_result first;
    memcpy(&first, out, sizeof(first));
    assert_code(first.code, TALLY_OK);
    /* The same request again, on another connection (a retry after a lost answer): the kept
     * reply, nothing applied twice. */
    close(fd);
    fd = raw_connect(leader_address(admin));
    assert_int_equal(
        raw_call(fd, TALLY_WIRE_OP_POST_AT, id, 5, body, sizeof(body), out, sizeof(out)),
        TALLY_WIRE_OK);
    assert_memory_equal(out, &first, sizeof(first));
    assert_int_equal(available(admin, 2), before + 9);
    assert_int_equal(stamp_of(pid), at);
    close(fd);

    /* Through libtally: after an answer it did not get, the same call is the same request. A
     * deadline of 0 ms elapses before any reply can come. */
    struct tally_client *c = client_of(cl.clients);
    struct tally_posting q = post_accrue(next_id++, 1, 2, 11, 0);
    struct tally_result r;
    int rc = tally_client_post_at(c, at + HOUR_MS, &q, 1, &r, 1);
    assert_true(rc == 0 || rc == TALLY_ETIMEOUT || rc == TALLY_ECLOSED);
    assert_int_equal(tally_client_post_at(c, at + HOUR_MS, &q, 1, &r, 10000), 0);
    assert_true(r.code == TALLY_OK || (r.code == TALLY_EXISTS && r.detail == TALLY_OK));
    assert_int_equal(available(admin, 2), before + 9 + 11);
    tally_client_close(c);
}

/* A POST_AT frame with the given body: its reply status. */
static uint16_t post_at_status(int fd, const uint8_t id[16], uint64_t request, const void *body,
                               uint32_t size)
{
    uint8_t out[256];
    return raw_call(fd, TALLY_WIRE_OP_POST_AT, id, request, body, size, out, sizeof(out));
}

static void test_malformed_post_at_bodies_get_bad_request_and_nothing_is_applied(void **state)
{
    (void)state;
    mark_logs(__func__);
    wait_converged(admin, 10000);
    struct tally_replica_status before[N];
    uint32_t n = 0;
    assert_int_equal(tally_client_status(admin, before, N, &n, 5000), 0);
    int fd = raw_connect(leader_address(admin));
    uint8_t id[16];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xb0 + i);
    uint8_t out[256];
    struct tally_wire_register reg;
    memset(&reg, 0, sizeof(reg));
    assert_int_equal(
        raw_call(fd, TALLY_WIRE_OP_REGISTER, id, 0, &reg, sizeof(reg), out, sizeof(out)),
        TALLY_WIRE_OK);
    static uint8_t body[16 + 2 * sizeof(struct tally_posting)];
    struct tally_wire_post_at pre = {.at = ledger_time() + DAY_MS, .reserved = 0};
    struct tally_posting p = post_accrue(next_id++, 1, 3, 50, 0);
    memcpy(body, &pre, sizeof(pre));
    memcpy(body + 16, &p, sizeof(p));
    memcpy(body + 16 + sizeof(p), &p, sizeof(p));
    uint64_t req = 1;
    assert_int_equal(post_at_status(fd, id, req++, body, 8), TALLY_WIRE_BAD_REQUEST);
    assert_int_equal(post_at_status(fd, id, req++, body, 16), TALLY_WIRE_BAD_REQUEST);
    assert_int_equal(post_at_status(fd, id, req++, body, 16 + 100), TALLY_WIRE_BAD_REQUEST);
    assert_int_equal(post_at_status(fd, id, req++, body, 16 + 128 + 64), TALLY_WIRE_BAD_REQUEST);
    pre.reserved = 1;
    memcpy(body, &pre, sizeof(pre));
    assert_int_equal(post_at_status(fd, id, req++, body, 16 + 128), TALLY_WIRE_BAD_REQUEST);
    pre.reserved = 0;
    pre.at = TALLY_WIRE_AT_MAX + 1;
    memcpy(body, &pre, sizeof(pre));
    assert_int_equal(post_at_status(fd, id, req++, body, 16 + 128), TALLY_WIRE_BAD_REQUEST);
    /* The connection was kept through all of it, and serves. */
    assert_int_equal(raw_call(fd, TALLY_WIRE_OP_STATUS, NULL, req++, NULL, 0, out, sizeof(out)),
                     TALLY_WIRE_OK);
    close(fd);
    struct tally_replica_status after[N];
    assert_int_equal(tally_client_status(admin, after, N, &n, 5000), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(after[i].applied_index, before[i].applied_index);
        assert_int_equal(after[i].last_timestamp, before[i].last_timestamp);
    }
    uint8_t raw[16];
    struct tally_posting_outcome o;
    memcpy(raw, p.id, 16);
    assert_int_equal(tally_client_post_outcome(admin, raw, &o, 5000), TALLY_ENOT_FOUND);
}

/* ---- a replica started in the other mode -------------------------------------------------- */

static void test_a_replica_started_with_the_wall_clock_reports_the_mismatch(void **state)
{
    (void)state;
    mark_logs(__func__);
    const char *leader = leader_address(admin);
    unsigned odd = strcmp(leader, cl.client_addr[1]) == 0 ? 2 : 1;
    replica_stop(odd, SIGTERM);
    cl.clock = "wall";
    replica_start(odd);
    cl.clock = "client";
    wait_converged(admin, 20000);
    uint64_t at = ledger_time() + HOUR_MS;
    assert_code(post_at1(at, post_accrue(next_id++, 1, 4, 2, 0)).code, TALLY_OK);
    wait_converged(admin, 20000);
    assert_true(log_count(odd, "clock_mode_mismatch") >= 1);
    usleep(METRICS_WAIT_MS * 1000);
    static char body[65536];
    assert_int_equal(http(odd, "GET", "/metrics", body, sizeof(body)), 200);
    assert_int_equal(metric(body, "tally_clock_client"), 0);
    assert_true(metric(body, "tally_clock_mode_mismatch_entries_total") >= 1);
    assert_int_equal(http(3, "GET", "/metrics", body, sizeof(body)), 200); /* odd is 1 or 2 */
    assert_int_equal(metric(body, "tally_clock_client"), 1);
    assert_int_equal(metric(body, "tally_clock_mode_mismatch_entries_total"), 0);
    /* Back in the cluster's mode, for the teardown's checks. */
    replica_stop(odd, SIGTERM);
    replica_start(odd);
    wait_converged(admin, 20000);
}

int main(void)
{
    if (!harness_ready("test_clock"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postings_at_1997_are_stamped_then_on_every_replica),
        cmocka_unit_test(test_idle_leader_does_not_move_time_and_a_post_takes_the_ledger_time),
        cmocka_unit_test(test_pending_accrual_activates_only_when_time_passes_its_window),
        cmocka_unit_test(test_a_lot_expires_only_when_time_passes_its_expiry),
        cmocka_unit_test(test_an_earlier_at_is_stamped_with_the_ledger_time),
        cmocka_unit_test(test_concurrent_times_are_never_mixed_in_one_entry),
        cmocka_unit_test(test_retried_post_at_takes_effect_once),
        cmocka_unit_test(test_malformed_post_at_bodies_get_bad_request_and_nothing_is_applied),
        cmocka_unit_test(test_a_replica_started_with_the_wall_clock_reports_the_mismatch),
    };
    return cmocka_run_group_tests_name("clock", tests, group_setup, group_teardown);
}
