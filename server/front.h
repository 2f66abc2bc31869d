/* front.h: tallyd's request handling: what each request frame does (sessions, POST, reads). */
#ifndef TALLY_SERVER_FRONT_H
#define TALLY_SERVER_FRONT_H

#include <stdint.h>

#include "net.h"
#include "replica.h"

struct front;

int front_init(struct front **out, struct net *net, struct replica *replica,
               const uint8_t cluster_id[16]);
/* The replica and the network layer start after the front (their callbacks need it). */
void front_set_replica(struct front *f, struct replica *replica);
void front_set_net(struct front *f, struct net *net);

void front_free(struct front *f);

/* net_handler.on_frame: ctx is the front. */
void front_frame(void *ctx, uint64_t conn, const struct tally_wire_header *h, const uint8_t *body);

/* replica_options.done: ctx is the pending request. */
void front_posted(void *ctx, int status, uint8_t req_status, const struct tally_result *results,
                  uint32_t count, uint64_t index);

#endif
