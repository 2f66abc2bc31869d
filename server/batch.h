/* batch.h: the payload of one Raft entry: a batch of client requests, stamped by the leader.
 *
 * Byte layout (little-endian; every part a multiple of 8 bytes, so the payload length is too:
 * libraft 0.15 silently loses entries whose length is not a multiple of 8 on restart):
 *
 *   offset size field       meaning
 *        0    4 magic       "TLYB"
 *        4    2 version     1
 *        6    2 kind        bits 0-7: BATCH_POSTS (requests) or BATCH_TICK (time only: count 0);
 *                           bit 8 BATCH_CLOCK_CLIENT: stamped by a leader running with
 *                           --clock client; bits 9-15 zero
 *        8    8 timestamp   the leader's clock when it proposed the entry, or under --clock
 *                           client the requests' ledger time (ms; never behind the previous
 *                           entry's: the engine also takes the max)
 *       16    4 nrequests   requests that follow
 *       20    4 npostings   postings that follow the requests, <= TALLY_BATCH_MAX
 *       24    8 checksum    XXH3-64 of everything after the header
 *       32   32 x nrequests struct batch_request
 *        .  128 x npostings struct tally_posting
 *
 * The entry is decoded on every replica from bytes that went through the Raft log and the
 * network: decoding checks everything and never asserts. An entry that does not decode means the
 * log is corrupt or replicas diverged: the replica stops (fail-stop), it never guesses.
 */
#ifndef TALLY_SERVER_BATCH_H
#define TALLY_SERVER_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "tally_records.h"

#define BATCH_MAGIC 0x42594c54u /* "TLYB" */
#define BATCH_VERSION 1u

enum batch_kind {
    BATCH_POSTS = 1,
    BATCH_TICK = 2,
};
#define BATCH_KIND_MASK 0x00ffu
/* Set in `kind` by a leader stamping with the clients' clock (replica.h, enum replica_clock), so
 * that a replica started in the other mode notices. Entries of --clock wall leaders have it
 * clear: their bytes are those of every entry written before the flag existed. */
#define BATCH_CLOCK_CLIENT 0x0100u

struct batch_header {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;
    uint64_t timestamp;
    uint32_t nrequests;
    uint32_t npostings;
    uint64_t checksum;
};
_Static_assert(sizeof(struct batch_header) == 32, "batch header is 32 bytes");

/* One client request inside a batch: its postings are the next `count` of the batch. */
struct batch_request {
    uint8_t client_id[16];
    uint64_t request;
    uint32_t count;
    uint32_t reserved;
};
_Static_assert(sizeof(struct batch_request) == 32, "batch request is 32 bytes");

/* Requests per entry: each has at least one posting. */
#define BATCH_REQUESTS_MAX TALLY_BATCH_MAX

static inline size_t batch_size(uint32_t nrequests, uint32_t npostings)
{
    return sizeof(struct batch_header) + (size_t)nrequests * sizeof(struct batch_request) +
           (size_t)npostings * sizeof(struct tally_posting);
}

/* A decoded batch: pointers into the payload, and the engine's request table. */
struct batch_view {
    struct batch_header h; /* as stored */
    uint16_t kind;         /* h.kind & BATCH_KIND_MASK */
    bool clock_client;     /* BATCH_CLOCK_CLIENT was set */
    const struct batch_request *requests;
    const struct tally_posting *postings;
};

/* Seal a payload whose header fields and parts are filled (computes the checksum). */
void batch_seal(void *payload, size_t size);

/* Check and decode a payload. Returns 0, or TALLY_ECORRUPT with nothing decoded. */
int batch_decode(const void *payload, size_t size, struct batch_view *out);

/* Apply a decoded batch to the engine as Raft entry `index`: a tick through engine_apply, a
 * batch of requests through engine_apply_requests, with `ereq` (BATCH_REQUESTS_MAX entries) as
 * scratch for the engine's request table; results and status as engine_apply_requests fills them. The one
 * way an entry reaches the engine, in tallyd (replica.c) and in the simulation (tests/sim).
 * Returns what the engine returns: 0, 1 (index applied before: nothing done) or an error. */
int batch_apply(struct engine *e, uint64_t index, const struct batch_view *b,
                struct engine_request *ereq, struct tally_result *results, uint8_t *status);

/* The payload of a Raft snapshot (40 bytes): the ledger itself stays in LMDB (a lagging replica
 * fetches a copy of it, replica.h "Snapshots and catch-up"); the snapshot says only which
 * applied index and digest it stands for. */
struct batch_snapshot {
    uint64_t magic; /* BATCH_MAGIC */
    uint64_t applied_index;
    uint8_t digest[16];
};

/* Make the engine's state durable (the log before it may then be dropped) and describe it.
 * Returns 0 or engine_sync's error. */
int batch_snapshot_take(struct engine *e, struct batch_snapshot *out);

#endif
