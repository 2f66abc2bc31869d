/* load.c: the fault tests' steady load and exactly-once checker (load.h).
 *
 * The load thread writes acked[] and publishes each record by storing nacked after it; the test
 * thread reads only below nacked. The mark (load_mark) and the first acknowledgement after it are
 * two atomics, in microseconds: a POST counts when it was sent after the mark, so a posting
 * already on its way when the fault began is not taken for the cluster serving again. (In
 * milliseconds, a POST sent in the same millisecond as the mark but before it passed: with the
 * leader's outgoing traffic cut one way, its followers' acknowledgements of an entry sent just
 * before the cut still arrive, and it committed 1-2 ms "after" the cut.)
 */
#include "load.h"

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct acked {
    uint8_t id[16];
    uint32_t member;
    uint32_t points;
};

static struct {
    pthread_t thread;
    struct acked *acked;
    atomic_uint nacked;
    atomic_bool stop;
    atomic_uint retries;
    atomic_uint rejected;
    atomic_int error;
    atomic_ullong mark_us, first_us;
    int64_t before[LOAD_MEMBERS + 1];
} ld;

void load_setup(struct tally_client *admin)
{
    struct tally_program_config c;
    config_default(&c);
    struct tally_posting p[1] = {post_program(1, 1, &c)};
    post_ok(admin, p, 1);
    for (unsigned m = 1; m <= LOAD_MEMBERS; m++) {
        p[0] = post_open(1 + m, 1, m);
        post_ok(admin, p, 1);
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void load_record(const struct tally_posting *p, const struct tally_result *r,
                        uint64_t sent_us)
{
    for (uint32_t i = 0; i < LOAD_PER_POST; i++) {
        if (r[i].code != TALLY_OK) { /* rejected, so not applied: not the checker's */
            atomic_fetch_add(&ld.rejected, 1);
            continue;
        }
        unsigned k = atomic_load(&ld.nacked);
        memcpy(ld.acked[k].id, p[i].id, 16);
        ld.acked[k].member = (uint32_t)p[i].account;
        ld.acked[k].points = (uint32_t)p[i].amount;
        atomic_store(&ld.nacked, k + 1);
    }
    uint64_t mark = atomic_load(&ld.mark_us), none = 0;
    if (mark != 0 && sent_us > mark)
        atomic_compare_exchange_strong(&ld.first_us, &none, mono_us());
}

static void *load_main(void *arg)
{
    (void)arg;
    struct tally_client *c = client_of(cl.clients);
    uint64_t rng = 0x243f6a8885a308d3ull;
    struct tally_posting p[LOAD_PER_POST];
    struct tally_result r[LOAD_PER_POST];
    while (!atomic_load(&ld.stop) && atomic_load(&ld.nacked) + LOAD_PER_POST <= LOAD_ACKED_MAX) {
        for (uint32_t i = 0; i < LOAD_PER_POST; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint8_t id[16];
            if (tally_client_id(c, id) != 0) {
                atomic_store(&ld.error, 1);
                return NULL;
            }
            uint64_t member = 1 + rng % LOAD_MEMBERS, points = 1 + (rng >> 20) % 9;
            p[i] = post_accrue(0, 1, member, points, points * 10);
            memcpy(p[i].id, id, 16);
        }
        uint64_t sent_us = mono_us();
        int rc;
        /* Until answered: the same postings again (libtally resends the same frame). */
        while ((rc = tally_client_post(c, p, LOAD_PER_POST, r, 5000)) == TALLY_ETIMEOUT ||
               rc == TALLY_ECLOSED)
            atomic_fetch_add(&ld.retries, 1);
        if (rc != 0) {
            fprintf(stderr, "load: tally_client_post: %d %s\n", rc, tally_strerror(rc));
            atomic_store(&ld.error, 2);
            break;
        }
        load_record(p, r, sent_us);
    }
    tally_client_close(c);
    return NULL;
}

void load_start(struct tally_client *admin)
{
    atomic_store(&ld.nacked, 0);
    atomic_store(&ld.stop, false);
    atomic_store(&ld.retries, 0);
    atomic_store(&ld.rejected, 0);
    atomic_store(&ld.error, 0);
    atomic_store(&ld.mark_us, 0);
    atomic_store(&ld.first_us, 0);
    ld.acked = calloc(LOAD_ACKED_MAX, sizeof(*ld.acked));
    assert_non_null(ld.acked);
    for (unsigned m = 1; m <= LOAD_MEMBERS; m++)
        ld.before[m] = available(admin, m);
    assert_int_equal(pthread_create(&ld.thread, NULL, load_main, NULL), 0);
}

unsigned load_acked(void)
{
    return atomic_load(&ld.nacked);
}

int load_error(void)
{
    return atomic_load(&ld.error);
}

uint64_t load_mark(void)
{
    uint64_t now = mono_us();
    atomic_store(&ld.mark_us, 0); /* no acknowledgement counts for the new mark meanwhile */
    atomic_store(&ld.first_us, 0);
    atomic_store(&ld.mark_us, now);
    return now;
}

uint64_t load_first_ack_since_mark(void)
{
    return atomic_load(&ld.first_us);
}

void load_stop_and_check(struct tally_client *admin, struct load_result *out)
{
    atomic_store(&ld.stop, true);
    pthread_join(ld.thread, NULL);
    assert_int_equal(atomic_load(&ld.error), 0);
    unsigned n = atomic_load(&ld.nacked);
    wait_converged(admin, 30000);
    int64_t want[LOAD_MEMBERS + 1];
    memcpy(want, ld.before, sizeof(want));
    for (unsigned i = 0; i < n; i++)
        want[ld.acked[i].member] += ld.acked[i].points;
    for (unsigned m = 1; m <= LOAD_MEMBERS; m++)
        if (available(admin, m) != want[m])
            fail_msg("member %u: %lld points, the acknowledged postings make %lld", m,
                     (long long)available(admin, m), (long long)want[m]);
    for (unsigned i = 0; i < n; i += n / 200 + 1) { /* a sample: one record each, applied */
        struct tally_posting_outcome o;
        assert_int_equal(tally_client_post_outcome(admin, ld.acked[i].id, &o, 10000), 0);
        assert_int_equal(o.code, TALLY_OK);
        assert_true(o.entry_count >= 1); /* the ACCRUE (and a TIER_CHANGE it caused) */
    }
    out->acked = n;
    out->rejected = atomic_load(&ld.rejected);
    out->retries = atomic_load(&ld.retries);
    free(ld.acked);
    ld.acked = NULL;
}
