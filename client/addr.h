/* addr.h: replica addresses as libtally takes them, "host:port[,host:port...]" (IPv6:
 * "[::1]:7401").
 *
 * An address is kept as text, exactly as the wire carries it in NOT_LEADER and STATUS replies
 * (TALLY_WIRE_ADDRESS_SIZE bytes, NUL-padded), and resolved only when a connection is opened,
 * so a replica that moves (a new DNS record, a restarted container) is found again.
 */
#ifndef TALLY_CLIENT_ADDR_H
#define TALLY_CLIENT_ADDR_H

#include <stdint.h>

#include "tally_wire.h"

/* Replicas one client may be given: a Raft cluster has 3, 5 or 7 voters; 16 leaves room for
 * learners and a membership change in progress, and bounds every loop over the list. */
#define ADDR_LIST_MAX 16u

/* Longest host part (a DNS name or an address literal, brackets removed) and port text. */
#define ADDR_HOST_SIZE TALLY_WIRE_ADDRESS_SIZE
#define ADDR_PORT_SIZE 6u

struct addr {
    char text[TALLY_WIRE_ADDRESS_SIZE];
};

/* Split "host:port" or "[v6]:port" into its host (brackets removed) and port (1..65535).
 * Returns 0, or TALLY_ECONFIG for text that is not such an address. */
int addr_split(const char *text, char host[ADDR_HOST_SIZE], char port[ADDR_PORT_SIZE]);

/* Parse a comma-separated list (blanks around items allowed) into out[0..*count). Returns 0, or
 * TALLY_ECONFIG (an empty list, a bad item, more than max items). Duplicates are kept once. */
int addr_list_parse(const char *text, struct addr *out, uint32_t max, uint32_t *count);

/* Take the address a replica sent in a 64-byte wire field (NOT_LEADER, STATUS). Returns 0, or
 * TALLY_ECONFIG when the field is all zero (unknown) or not an address this client can use. */
int addr_from_wire(const char field[TALLY_WIRE_ADDRESS_SIZE], struct addr *out);

#endif
