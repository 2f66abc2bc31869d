/* front_limits.h: the front's bounds that tests check from outside (front.h, front.c). */
#ifndef TALLY_SERVER_FRONT_LIMITS_H
#define TALLY_SERVER_FRONT_LIMITS_H

/* Reads held while the ledger commits, at most (front.c, "Reads during a ledger commit"): one
 * more is answered BUSY. */
#define FRONT_READS_MAX 4096u

#endif
