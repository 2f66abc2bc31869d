/* fuzz_frame.c: libFuzzer target for the frame layer (common/wire.c), both directions.
 *
 * Each input is judged as received bytes, the way tallyd and libtally judge them: header decode,
 * body size, body checksum, field rules. Then the same bytes are re-sealed (magic, version and
 * both checksums made right) and judged again, so that the fuzzer reaches the field rules behind
 * the checksums, which random bytes almost never pass. Whatever arrives, the judges must return
 * a verdict: any crash, overflow or undefined behaviour is a finding (built with ASan + UBSan).
 * Invariants checked on top: a verdict that says "reply" maps to a known status, and a frame
 * judged valid has a body that fits its operation's shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void judge(const uint8_t *bytes, size_t size, enum tally_wire_direction dir)
{
    struct tally_wire_header h;
    enum tally_wire_fault f = tally_wire_header_decode(&h, bytes, size, dir);
    if (f != TALLY_WIRE_FAULT_NONE) {
        if (tally_wire_fault_status(f) >= TALLY_WIRE_STATUS_LIMIT)
            abort();
        return;
    }
    if (tally_wire_body_size_check(&h) != TALLY_WIRE_FAULT_NONE)
        return;
    if (size < TALLY_WIRE_HEADER_SIZE + (size_t)h.body_size)
        return; /* truncated: a receiver reads more */
    const uint8_t *body = bytes + TALLY_WIRE_HEADER_SIZE;
    if (tally_wire_body_verify(&h, body) != TALLY_WIRE_FAULT_NONE)
        return;
    f = dir == TALLY_WIRE_TO_SERVER ? tally_wire_request_check(&h, body)
                                    : tally_wire_reply_check(&h, body);
    if (f == TALLY_WIRE_FAULT_NONE && h.body_size > TALLY_WIRE_BODY_MAX)
        abort(); /* a valid frame never exceeds the limit */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TALLY_WIRE_FRAME_MAX + 64)
        return 0;
    judge(data, size, TALLY_WIRE_TO_SERVER);
    judge(data, size, TALLY_WIRE_TO_CLIENT);
    if (size < TALLY_WIRE_HEADER_SIZE)
        return 0;
    /* The same bytes made well-sealed: the body is what follows the header, capped. */
    uint8_t *copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    struct tally_wire_header h;
    memcpy(&h, copy, sizeof(h));
    memcpy(h.magic, TALLY_WIRE_MAGIC, TALLY_WIRE_MAGIC_SIZE);
    h.version = TALLY_WIRE_VERSION;
    size_t body = size - TALLY_WIRE_HEADER_SIZE;
    h.body_size = (uint32_t)(body > TALLY_WIRE_BODY_MAX ? TALLY_WIRE_BODY_MAX : body);
    tally_wire_header_seal(&h, copy + TALLY_WIRE_HEADER_SIZE);
    memcpy(copy, &h, sizeof(h));
    size_t n = TALLY_WIRE_HEADER_SIZE + h.body_size;
    judge(copy, n, TALLY_WIRE_TO_SERVER);
    judge(copy, n, TALLY_WIRE_TO_CLIENT);
    free(copy);
    return 0;
}
