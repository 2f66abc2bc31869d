/* ids.h: time-ordered 128-bit posting ids for callers who have none of their own.
 *
 * An id is 48 bits of milliseconds since the epoch followed by 80 random bits, stored big-endian
 * in 16 bytes so ids sort by time as byte strings (and land near the right edge of the ledger's
 * id index, where inserts are cheap). Within one generator, ids are strictly increasing even when
 * the clock stalls or steps back: the random part is then incremented instead. The random bits
 * come from getrandom(2). Never used inside the engine, which must be deterministic.
 */
#ifndef TALLY_IDS_H
#define TALLY_IDS_H

#include <stdint.h>

struct ids {
    uint64_t last_ms;
    uint8_t last[16];
};

void ids_init(struct ids *g);

/* Next id for wall-clock time now_ms. Returns 0, or a negated errno if getrandom failed. */
int ids_next(struct ids *g, uint64_t now_ms, uint8_t out[16]);

/* Hex text (32 lower-case digits) and back. ids_parse returns 0, or -1 on bad text. */
void ids_format(const uint8_t id[16], char out[33]);
int ids_parse(const char *s, uint8_t out[16]);

#endif
