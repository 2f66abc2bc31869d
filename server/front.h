/* front.h: tallyd's request handling: what each request frame does (sessions, POST, reads). */
#ifndef TALLY_SERVER_FRONT_H
#define TALLY_SERVER_FRONT_H

#include <stdint.h>

#include "front_limits.h"
#include "net.h"
#include "replica.h"

struct front;

int front_init(struct front **out, struct net *net, struct replica *replica,
               const uint8_t cluster_id[16]);
/* The replica and the network layer start after the front (their callbacks need it). */
void front_set_replica(struct front *f, struct replica *replica);
void front_set_net(struct front *f, struct net *net);

void front_free(struct front *f);

/* What the front has done since it started (for the metrics endpoint). */
struct front_stats {
    uint64_t reads_held;     /* reads that arrived during a ledger commit and waited for its end */
    uint64_t reads_busy;     /* reads answered BUSY: the queue of such reads was full */
    uint64_t reads_cached;   /* ACCOUNT reads answered from the member cache during a commit */
    uint32_t reads_held_now; /* reads waiting now */
};
void front_stats(const struct front *f, struct front_stats *out);

/* replica_options.ledger_free: a ledger commit ended; the reads that waited for it are
 * answered, in order (front.c, "Reads during a ledger commit"). ctx is the front. */
void front_ledger_free(void *ctx);

/* net_handler.on_frame: ctx is the front. */
void front_frame(void *ctx, uint64_t conn, const struct tally_wire_header *h, const uint8_t *body);

/* replica_options.done: ctx is the pending request. */
void front_posted(void *ctx, int status, uint8_t req_status, const struct tally_result *results,
                  uint32_t count, uint64_t index);

#endif
