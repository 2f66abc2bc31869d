/* fuzz_batch.c: libFuzzer target for the Raft entry decoder (server/batch.c) and for the ledger
 * engine behind it.
 *
 * Every input is first decoded as a raw Raft payload: batch_decode must give a verdict on any
 * bytes. Then the input is read as a batch of postings (128 bytes each, at most 64) that is sealed
 * into a valid payload, decoded again (it must decode now) and applied to a real engine (LMDB in
 * a temporary directory, no fsync). Half of the inputs are steered toward the live part of the
 * ledger (programs 1..3, members 1..16, ids and refs from a small space), or the engine would
 * only ever answer PROGRAM_NOT_FOUND. Whatever the postings say, engine_apply must return 0
 * (business outcomes are results: BRIEF law 3) with a known result code for each posting; a
 * crash, a sanitizer report or a system error from apply is a finding. Every 5,000 inputs the
 * ledger starts afresh, so a long run does not fill the disk.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "engine.h"
#include "tally_results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_POSTINGS_MAX 64u
#define FUZZ_RUNS_PER_LEDGER 5000u

static struct engine *engine;
static char dir[64];
static uint64_t index_next = 1, now = 1767225600000ull; /* 2026-01-01 */
static unsigned runs;

static void ledger_fresh(void)
{
    if (engine != NULL) {
        engine_close(engine);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            abort();
    }
    snprintf(dir, sizeof(dir), "/tmp/tally-fuzz-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    o.member_cache = ENGINE_MEMBER_CACHE_MIN;
    if (engine_open(&engine, dir, &o) != 0)
        abort();
    index_next = 1;
    runs = 0;
}

static void cleanup(void)
{
    if (engine != NULL) {
        engine_close(engine);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)system(cmd);
    }
}

/* Pull a posting's fields into the small space where postings meet each other. */
static void steer(struct tally_posting *p, uint8_t salt)
{
    p->program = 1 + p->program % 3;
    p->kind = (uint16_t)(1 + p->kind % 13);
    memset(p->id, 0, 8);
    p->id[15] = (uint8_t)(p->id[15] % 64 + 1);
    if (p->kind != TALLY_KIND_PROGRAM) {
        memset(p->ref, 0, 8);
        p->ref[15] = (uint8_t)(p->ref[15] % 64 + 1);
        p->account = 1 + p->account % 16;
        p->account2 = 1 + p->account2 % 16;
        p->amount %= (salt & 1) ? 1000u : UINT64_MAX;
        p->duration_ms %= 40ull * 86400000ull;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (engine == NULL) {
        ledger_fresh();
        atexit(cleanup);
    }
    struct batch_view v;
    (void)batch_decode(data, size, &v); /* raw bytes: any verdict, never a crash */

    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    uint32_t n = (uint32_t)(size / sizeof(struct tally_posting));
    if (n > FUZZ_POSTINGS_MAX)
        n = FUZZ_POSTINGS_MAX;
    static uint8_t payload[sizeof(struct batch_header) + sizeof(struct batch_request) +
                           FUZZ_POSTINGS_MAX * sizeof(struct tally_posting)];
    struct batch_header h = {BATCH_MAGIC, BATCH_VERSION, n ? BATCH_POSTS : BATCH_TICK,
                             now, n ? 1u : 0u, n, 0};
    struct batch_request rq = {{0}, 1, n, 0};
    struct tally_posting *postings = (struct tally_posting *)(void *)(payload + sizeof(h) +
                                                                      (n ? sizeof(rq) : 0));
    memcpy(payload, &h, sizeof(h));
    if (n)
        memcpy(payload + sizeof(h), &rq, sizeof(rq));
    memcpy(postings, data, (size_t)n * sizeof(*postings));
    if (mode & 1)
        for (uint32_t i = 0; i < n; i++)
            steer(&postings[i], mode);
    size_t len = batch_size(h.nrequests, n);
    batch_seal(payload, len);
    if (batch_decode(payload, len, &v) != 0)
        abort(); /* a sealed, well-formed batch must decode */

    now += (uint64_t)(mode >> 1) * 3600000ull; /* up to ~5 days a batch: expiry and tiers run */
    static struct tally_result results[FUZZ_POSTINGS_MAX];
    int rc = engine_apply(engine, index_next++, now, v.postings, n, results);
    if (rc != 0) {
        fprintf(stderr, "engine_apply failed: %d %s\n", rc, tally_strerror(rc));
        abort();
    }
    for (uint32_t i = 0; i < n; i++)
        if (results[i].code >= TALLY_RESULT_CODE_LIMIT)
            abort();
    if (++runs >= FUZZ_RUNS_PER_LEDGER)
        ledger_fresh();
    return 0;
}
