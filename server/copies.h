/* copies.h: the ledger copies a replica serves to its peers (the LEDGER operation), which is how a
 * replica behind the cluster's log, or with an empty data directory, catches up
 * (docs/ARCHITECTURE.md, "Catch-up"; the request and reply bytes are in tally_wire.h).
 *
 * What it guarantees
 * ------------------
 * - One copy at a time, of the whole ledger (engine_copy: an LMDB copy, compacted), made on a
 *   libuv worker thread while the replica goes on applying and serving; meanwhile requests for it
 *   get BUSY. The copy lives in an unlinked file in the replica's directory, so nothing is left
 *   behind by a crash, and it is sealed by XXH3-128 over its bytes, computed once it is complete,
 *   which the receiver checks before it trusts a byte of it.
 * - A copy holds at least the applied index the engine had when the copy was started (the index
 *   the replies report): the receiver compares it with what it needs (min_index), and a replica
 *   that has not applied min_index itself answers STALE at once rather than make a useless copy.
 * - Chunks are read from the copy by offset (pread on the loop thread: the copy is in the page
 *   cache while it is fresh), so any number of readers may read the same copy, at their own pace,
 *   and a reader that lost its connection resumes where it stopped.
 * - A copy no reader has asked for in COPIES_IDLE_MS is dropped (its disk space freed); its id is
 *   then unknown (NOT_FOUND) and the reader starts again with a new copy.
 * - copies_wait() blocks until a copy being made is complete: the replica calls it before it
 *   closes or replaces its engine, which the worker thread must not outlive.
 *
 * What it does not do: it does not limit the readers' bandwidth (a replica serving a copy shares
 * its disk and network with its own work), and it keeps no copy across a restart.
 */
#ifndef TALLY_SERVER_COPIES_H
#define TALLY_SERVER_COPIES_H

#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "tally_wire.h"

/* A copy unread this long is dropped. A catching-up reader asks for the next chunk as soon as it
 * has written the last one, so any pause this long means the reader is gone. */
#define COPIES_IDLE_MS 120000u

struct copies;

/* dir: the replica's directory (the copy's file is made there, and unlinked at once). */
int copies_init(struct copies **out, uv_loop_t *loop, const char *dir);

/* Answer a LEDGER request (fields already checked by tally_wire_request_check) from engine `e`.
 * Writes the reply body into `body` (at least TALLY_WIRE_BODY_MAX bytes) and its size into
 * *size; returns the reply's status: OK, BUSY, STALE, NOT_FOUND, BAD_REQUEST or INTERNAL. */
uint16_t copies_serve(struct copies *c, struct engine *e,
                      const struct tally_wire_ledger_request *q, uint8_t *body, uint32_t *size);

/* Block until no copy is being made (see above). */
void copies_wait(struct copies *c);

/* Drop the copy and release everything once the worker (if any) has reported back. */
void copies_close(struct copies *c);

#endif
