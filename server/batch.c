/* batch.c: encode and decode the payload of a Raft entry (batch.h). */
#include "batch.h"

#include <string.h>

#include "hash.h"

void batch_seal(void *payload, size_t size)
{
    struct batch_header h;
    memcpy(&h, payload, sizeof(h));
    h.checksum = XXH3_64bits((const uint8_t *)payload + sizeof(h), size - sizeof(h));
    memcpy(payload, &h, sizeof(h));
}

int batch_decode(const void *payload, size_t size, struct batch_view *out)
{
    if (size < sizeof(struct batch_header))
        return TALLY_ECORRUPT;
    struct batch_header h;
    memcpy(&h, payload, sizeof(h));
    uint16_t kind = h.kind & BATCH_KIND_MASK;
    if (h.magic != BATCH_MAGIC || h.version != BATCH_VERSION ||
        (kind != BATCH_POSTS && kind != BATCH_TICK) ||
        (h.kind & ~(BATCH_KIND_MASK | BATCH_CLOCK_CLIENT)) != 0)
        return TALLY_ECORRUPT;
    if (h.npostings > TALLY_BATCH_MAX || h.nrequests > h.npostings ||
        (kind == BATCH_TICK && (h.npostings != 0 || h.nrequests != 0)) ||
        size != batch_size(h.nrequests, h.npostings))
        return TALLY_ECORRUPT;
    const uint8_t *p = payload;
    if (XXH3_64bits(p + sizeof(h), size - sizeof(h)) != h.checksum)
        return TALLY_ECORRUPT;
    out->h = h;
    out->kind = kind;
    out->clock_client = (h.kind & BATCH_CLOCK_CLIENT) != 0;
    out->requests = (const struct batch_request *)(const void *)(p + sizeof(h));
    out->postings = (const struct tally_posting *)(const void *)(
        p + sizeof(h) + (size_t)h.nrequests * sizeof(struct batch_request));
    /* The requests must tile the postings, each with at least one. */
    uint64_t total = 0;
    for (uint32_t i = 0; i < h.nrequests; i++) {
        struct batch_request r;
        memcpy(&r, &out->requests[i], sizeof(r));
        if (r.count == 0 || r.request == 0 || r.reserved != 0)
            return TALLY_ECORRUPT;
        total += r.count;
    }
    return total == h.npostings ? 0 : TALLY_ECORRUPT;
}

/* The engine's request table of a decoded batch. */
static void batch_requests(const struct batch_view *b, struct engine_request *out)
{
    uint32_t first = 0;
    for (uint32_t i = 0; i < b->h.nrequests; i++) {
        struct batch_request r;
        memcpy(&r, &b->requests[i], sizeof(r));
        memcpy(out[i].client_id, r.client_id, 16);
        out[i].request = r.request;
        out[i].first = first;
        out[i].count = r.count;
        first += r.count;
    }
}

int batch_apply(struct engine *e, uint64_t index, const struct batch_view *b,
                struct engine_request *ereq, struct tally_result *results, uint8_t *status)
{
    if (b->kind == BATCH_TICK)
        return engine_apply(e, index, b->h.timestamp, NULL, 0, NULL);
    batch_requests(b, ereq);
    return engine_apply_requests(e, index, b->h.timestamp, ereq, b->h.nrequests, b->postings,
                                 b->h.npostings, results, status);
}

int batch_snapshot_take(struct engine *e, struct batch_snapshot *out)
{
    int rc = engine_sync(e);
    if (rc != 0)
        return rc;
    struct engine_status st;
    engine_status(e, &st);
    *out = (struct batch_snapshot){BATCH_MAGIC, st.applied_index, {0}};
    memcpy(out->digest, st.digest, sizeof(out->digest));
    return 0;
}
