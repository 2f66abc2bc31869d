/* load.h: a steady posting load and its exactly-once checker, for the cluster fault tests.
 *
 * One thread posts 4-posting accrual batches to LOAD_MEMBERS members of program 1 through its
 * own libtally client, as fast as the cluster answers. It does what libtally's contract says a
 * till must do (docs/PROTOCOL.md section 11): when a POST ends without an answer (TALLY_ETIMEOUT,
 * TALLY_ECLOSED) it posts the very same postings again until they are answered, so every posting
 * is acknowledged exactly once whatever became of the copies that went out before. Every
 * acknowledged posting (id, member, points) is recorded.
 *
 * load_stop_and_check then proves, against the replicas: the replicas converge (same applied
 * index, same digest); every member's balance is what it was at load_start plus the acknowledged
 * accruals to it (nothing acknowledged lost, nothing applied twice); a sample of the acknowledged
 * ids each has its one ledger record, applied.
 *
 * Bounded: at most LOAD_ACKED_MAX postings (the load stops there), one load at a time.
 */
#ifndef TALLY_TESTS_CLUSTER_LOAD_H
#define TALLY_TESTS_CLUSTER_LOAD_H

#include <stdint.h>

#include "tally.h"

#define LOAD_MEMBERS 256u
#define LOAD_PER_POST 4u
#define LOAD_ACKED_MAX 200000u

struct load_result {
    unsigned acked;    /* postings acknowledged TALLY_OK (checked) */
    unsigned rejected; /* answered with a business rejection (not applied: not checked) */
    unsigned retries;  /* POSTs sent again after an unanswered one */
};

/* Program 1 and members 1..LOAD_MEMBERS, through admin (a group setup). */
void load_setup(struct tally_client *admin);

/* Read every member's balance, then start posting. */
void load_start(struct tally_client *admin);
unsigned load_acked(void);
/* An outcome the contract does not allow (0: none so far). */
int load_error(void);
/* From now on, remember the first acknowledgement of a POST sent after now. Returns now
 * (CLOCK_MONOTONIC, microseconds). */
uint64_t load_mark(void);
/* That acknowledgement's time (the same clock), 0 while none came. */
uint64_t load_first_ack_since_mark(void);

/* Stop the load, wait for the replicas to converge, and check (fails the test on any loss or
 * duplicate). */
void load_stop_and_check(struct tally_client *admin, struct load_result *out);

#endif
