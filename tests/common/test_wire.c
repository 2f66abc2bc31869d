/* test_wire.c: the wire protocol's frame layer (include/tally_wire.h, common/wire.c): headers
 * round-trip; every kind of damage, misfit and misuse gets the documented verdict; every single
 * bit flipped in a valid frame is caught; the test vectors of docs/PROTOCOL.md decode to their
 * listed fields and verdicts and re-encode to their exact bytes; random bytes, and randomly
 * filled but correctly sealed frames, never crash the decoders and always get a defined verdict.
 *
 * The vectors are read from tests/common/wire_vectors.txt (the Makefile runs tests from the
 * repository root), or from the file named by TALLY_WIRE_VECTORS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "tally_results.h"
#include "tally_wire.h"

/* The engine's query records are what the server copies into POSTING and HOLD replies: they
 * must keep the wire layout (checked here, where both headers meet, since include/ must not
 * depend on engine/). */
_Static_assert(sizeof(struct engine_posting_info) == sizeof(struct tally_wire_posting_info),
               "posting info sizes agree");
_Static_assert(offsetof(struct engine_posting_info, seq) ==
                   offsetof(struct tally_wire_posting_info, seq),
               "posting info seq agrees");
_Static_assert(offsetof(struct engine_posting_info, entry_count) ==
                   offsetof(struct tally_wire_posting_info, entry_count),
               "posting info entry_count agrees");
_Static_assert(offsetof(struct engine_posting_info, timestamp) ==
                   offsetof(struct tally_wire_posting_info, timestamp),
               "posting info timestamp agrees");
_Static_assert(sizeof(struct engine_hold_info) == sizeof(struct tally_wire_hold_info),
               "hold info sizes agree");
_Static_assert(offsetof(struct engine_hold_info, status) ==
                   offsetof(struct tally_wire_hold_info, status),
               "hold info status agrees");
_Static_assert(offsetof(struct engine_hold_info, member) ==
                   offsetof(struct tally_wire_hold_info, member),
               "hold info member agrees");
_Static_assert(offsetof(struct engine_hold_info, resolved_seq) ==
                   offsetof(struct tally_wire_hold_info, resolved_seq),
               "hold info resolved_seq agrees");

static const uint8_t client_a[16] = {0x01, 0x95, 0x4f, 0x3a, 0x9c, 0x00, 0x7e, 0x21,
                                     0xb4, 0x6d, 0x3c, 0x88, 0x51, 0x0a, 0xf2, 0x6e};

/* A frame under construction: header and body in one buffer, as on the wire. */
#define FRAME_BODY_MAX 4096u
struct frame {
    uint8_t bytes[TALLY_WIRE_HEADER_SIZE + FRAME_BODY_MAX];
    size_t len;
};

/* Seal h with body and lay both out in f. */
static void frame_make(struct frame *f, struct tally_wire_header *h, const void *body)
{
    assert_true(h->body_size <= FRAME_BODY_MAX);
    tally_wire_header_seal(h, body);
    memcpy(f->bytes, h, sizeof(*h));
    if (h->body_size > 0)
        memcpy(f->bytes + TALLY_WIRE_HEADER_SIZE, body, h->body_size);
    f->len = TALLY_WIRE_HEADER_SIZE + h->body_size;
}

/* A request frame of op with the given body. */
static void request_make(struct frame *f, uint16_t op, uint64_t request, const void *body,
                         uint32_t body_size)
{
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, client_a, request);
    h.body_size = body_size;
    frame_make(f, &h, body);
}

static enum tally_wire_fault request_judge(const struct frame *f)
{
    struct tally_wire_header h;
    return tally_wire_frame_decode(&h, f->bytes, f->len, TALLY_WIRE_TO_SERVER);
}

static enum tally_wire_fault reply_judge(const struct frame *f)
{
    struct tally_wire_header h;
    return tally_wire_frame_decode(&h, f->bytes, f->len, TALLY_WIRE_TO_CLIENT);
}

/* Assert a verdict by name, printing both names when they differ. */
#define assert_fault(got, want)                                                                   \
    do {                                                                                          \
        enum tally_wire_fault got_ = (got);                                                       \
        enum tally_wire_fault want_ = (want);                                                     \
        if (got_ != want_)                                                                        \
            fail_msg("verdict %s, expected %s", tally_wire_fault_name(got_),                      \
                     tally_wire_fault_name(want_));                                               \
    } while (0)

/* Deterministic pseudo-random numbers (splitmix64): a failing run repeats exactly. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next();
}

/* ---------------------------------------------------------------------------------------------
 * Headers.
 * ------------------------------------------------------------------------------------------- */

static void test_header_roundtrip(void **state)
{
    (void)state;
    struct tally_wire_account_request body = {.program = 7, .member = 1234};
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_ACCOUNT, client_a, 99);
    h.flags = TALLY_WIRE_FLAG_STALE_OK;
    h.index = 1000;
    h.body_size = sizeof(body);
    struct frame f;
    frame_make(&f, &h, &body);
    assert_int_equal(f.len, 80);
    assert_memory_equal(f.bytes, "TLY1\x01\x00\x06\x00\x01\x00\x00\x00\x10\x00\x00\x00", 16);

    struct tally_wire_header d;
    assert_fault(tally_wire_frame_decode(&d, f.bytes, f.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_NONE);
    assert_memory_equal(&d, &h, sizeof(h));
    assert_int_equal(d.op, TALLY_WIRE_OP_ACCOUNT);
    assert_int_equal(d.request, 99);
    assert_int_equal(d.index, 1000);
    assert_int_equal(d.checksum_body, tally_wire_checksum(&body, sizeof(body)));
    assert_int_equal(d.checksum_header, tally_wire_checksum(f.bytes, 56));

    /* The reply echoes op, client id and request, and is judged as a reply. */
    struct tally_account a = {.program = 7, .member = 1234, .available = -5};
    struct tally_wire_header r;
    tally_wire_reply_init(&r, &d, TALLY_WIRE_OK, 1001, sizeof(a));
    struct frame g;
    frame_make(&g, &r, &a);
    assert_fault(tally_wire_frame_decode(&d, g.bytes, g.len, TALLY_WIRE_TO_CLIENT),
                 TALLY_WIRE_FAULT_NONE);
    assert_int_equal(d.op, TALLY_WIRE_OP_ACCOUNT);
    assert_int_equal(d.flags, TALLY_WIRE_FLAG_REPLY);
    assert_memory_equal(d.client_id, client_a, 16);
    assert_int_equal(d.request, 99);
    assert_int_equal(d.index, 1001);
    assert_memory_equal(g.bytes + 64, &a, sizeof(a));
}

static void test_empty_body_checksum_is_the_documented_constant(void **state)
{
    (void)state;
    assert_int_equal(tally_wire_checksum(NULL, 0), TALLY_WIRE_CHECKSUM_EMPTY);
    assert_int_equal(tally_wire_checksum("", 0), TALLY_WIRE_CHECKSUM_EMPTY);
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_STATUS, 1, NULL, 0);
    struct tally_wire_header h;
    memcpy(&h, f.bytes, sizeof(h));
    assert_int_equal(h.checksum_body, TALLY_WIRE_CHECKSUM_EMPTY);
}

static void test_bad_magic_rejected(void **state)
{
    (void)state;
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_STATUS, 1, NULL, 0);
    for (size_t i = 0; i < 4; i++) {
        struct frame g = f;
        g.bytes[i] ^= 0x20; /* "tLY1", "TlY1", ... */
        struct tally_wire_header h;
        assert_fault(tally_wire_header_decode(&h, g.bytes, g.len, TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_BAD_MAGIC);
    }
    static const char http[] = "GET /metrics HTTP/1.1\r\nHost: tally-1:7401\r\n"
                               "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    struct tally_wire_header h;
    assert_true(sizeof(http) - 1 >= 64);
    assert_fault(tally_wire_frame_decode(&h, http, sizeof(http) - 1, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_BAD_MAGIC);
    assert_false(tally_wire_fault_replies(TALLY_WIRE_FAULT_BAD_MAGIC));
    assert_true(tally_wire_fault_closes(TALLY_WIRE_FAULT_BAD_MAGIC));
}

static void test_other_version_rejected_before_its_checksum(void **state)
{
    (void)state;
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_STATUS, NULL, 1);
    h.version = 2;
    struct frame f;
    frame_make(&f, &h, NULL);
    struct tally_wire_header d;
    assert_fault(tally_wire_header_decode(&d, f.bytes, f.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_BAD_VERSION);
    /* A version-2 header whose layout after byte 8 is foreign (its checksum elsewhere) is still
     * BAD_VERSION, not a checksum mismatch: the version is judged first. */
    f.bytes[60] ^= 0xff;
    assert_fault(tally_wire_header_decode(&d, f.bytes, f.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_BAD_VERSION);
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_BAD_VERSION), TALLY_WIRE_BAD_VERSION);
    assert_true(tally_wire_fault_closes(TALLY_WIRE_FAULT_BAD_VERSION));

    /* The answer to a header that cannot be trusted echoes nothing, and is a valid reply. */
    struct tally_wire_header r;
    tally_wire_reply_init(&r, NULL, TALLY_WIRE_BAD_VERSION, 77, 0);
    struct frame g;
    frame_make(&g, &r, NULL);
    assert_fault(tally_wire_frame_decode(&d, g.bytes, g.len, TALLY_WIRE_TO_CLIENT),
                 TALLY_WIRE_FAULT_NONE);
    assert_int_equal(d.op, 0);
    assert_int_equal(d.request, 0);
    assert_true(memcmp(d.client_id, (uint8_t[16]){0}, 16) == 0);
    assert_int_equal(d.status, TALLY_WIRE_BAD_VERSION);
    assert_int_equal(d.index, 77);
}

static void test_header_checksum_mismatch_rejected(void **state)
{
    (void)state;
    struct tally_wire_history_request q = {.program = 1, .max = 10, .member = 42};
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_HISTORY, 5, &q, sizeof(q));
    /* Every single bit of the header: magic bits are BAD_MAGIC, version bits BAD_VERSION, and
     * every other bit, the checksum's own included, is a checksum mismatch. */
    for (size_t bit = 0; bit < 64 * 8; bit++) {
        struct frame g = f;
        g.bytes[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct tally_wire_header h;
        enum tally_wire_fault want = bit < 32   ? TALLY_WIRE_FAULT_BAD_MAGIC
                                     : bit < 48 ? TALLY_WIRE_FAULT_BAD_VERSION
                                                : TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM;
        enum tally_wire_fault got =
            tally_wire_header_decode(&h, g.bytes, g.len, TALLY_WIRE_TO_SERVER);
        if (got != want)
            fail_msg("bit %zu flipped: %s, expected %s", bit, tally_wire_fault_name(got),
                     tally_wire_fault_name(want));
    }
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM),
                     TALLY_WIRE_BAD_CHECKSUM);
    assert_true(tally_wire_fault_replies(TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM));
    assert_true(tally_wire_fault_closes(TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM));
}

static void test_body_checksum_mismatch_detected(void **state)
{
    (void)state;
    struct tally_posting p = {.program = 1, .kind = TALLY_KIND_ACCRUE, .account = 42,
                              .amount = 500};
    p.id[15] = 1;
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_POST, 1, &p, sizeof(p));
    assert_fault(request_judge(&f), TALLY_WIRE_FAULT_NONE);
    for (size_t bit = 0; bit < sizeof(p) * 8; bit++) {
        struct frame g = f;
        g.bytes[64 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct tally_wire_header h;
        /* The header alone is still sound: the damage shows only against the body. */
        assert_fault(tally_wire_header_decode(&h, g.bytes, g.len, TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_NONE);
        assert_fault(tally_wire_body_verify(&h, g.bytes + 64), TALLY_WIRE_FAULT_BAD_BODY_CHECKSUM);
        assert_fault(request_judge(&g), TALLY_WIRE_FAULT_BAD_BODY_CHECKSUM);
    }
    /* The connection survives a damaged body: the header, and so the framing, is intact. */
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_BAD_BODY_CHECKSUM),
                     TALLY_WIRE_BAD_CHECKSUM);
    assert_false(tally_wire_fault_closes(TALLY_WIRE_FAULT_BAD_BODY_CHECKSUM));
}

static void test_oversized_body_rejected(void **state)
{
    (void)state;
    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_POST, client_a, 1);
    uint32_t sizes[] = {TALLY_WIRE_BODY_MAX + 1, TALLY_WIRE_FRAME_MAX, UINT32_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        h.body_size = sizes[i];
        h.checksum_body = 0;
        h.checksum_header = tally_wire_checksum(&h, TALLY_WIRE_HEADER_SEALED_SIZE);
        struct tally_wire_header d;
        assert_fault(tally_wire_header_decode(&d, &h, sizeof(h), TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_TOO_LARGE);
        /* Refused from the header alone, never "truncated: read more". */
        assert_fault(tally_wire_frame_decode(&d, &h, sizeof(h), TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_TOO_LARGE);
    }
    /* The maximum itself passes the header; a POST of that size is judged by its shape. */
    h.body_size = TALLY_WIRE_BODY_MAX;
    h.checksum_header = tally_wire_checksum(&h, TALLY_WIRE_HEADER_SEALED_SIZE);
    struct tally_wire_header d;
    assert_fault(tally_wire_header_decode(&d, &h, sizeof(h), TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_NONE);
    assert_int_equal(TALLY_WIRE_BODY_MAX + TALLY_WIRE_HEADER_SIZE, 1u << 20);
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_TOO_LARGE), TALLY_WIRE_TOO_LARGE);
    assert_true(tally_wire_fault_closes(TALLY_WIRE_FAULT_TOO_LARGE));
}

static void test_unknown_op_rejected(void **state)
{
    (void)state;
    uint16_t ops[] = {0, TALLY_WIRE_OP_LIMIT, 99, 0xffff};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct frame f;
        request_make(&f, ops[i], 1, NULL, 0);
        assert_fault(request_judge(&f), TALLY_WIRE_FAULT_UNKNOWN_OP);
        assert_false(tally_wire_op_known(ops[i]));
        assert_null(tally_wire_op_name(ops[i]));

        /* The error reply echoes the unknown op and is a valid reply ... */
        struct tally_wire_header q;
        memcpy(&q, f.bytes, sizeof(q));
        struct tally_wire_header r;
        tally_wire_reply_init(&r, &q, TALLY_WIRE_UNKNOWN_OP, 0, 0);
        struct frame g;
        frame_make(&g, &r, NULL);
        assert_fault(reply_judge(&g), TALLY_WIRE_FAULT_NONE);
        /* ... but an OK reply to an unknown op is not. */
        tally_wire_reply_init(&r, &q, TALLY_WIRE_OK, 0, 0);
        frame_make(&g, &r, NULL);
        assert_fault(reply_judge(&g), TALLY_WIRE_FAULT_UNKNOWN_OP);
    }
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_UNKNOWN_OP), TALLY_WIRE_UNKNOWN_OP);
    assert_false(tally_wire_fault_closes(TALLY_WIRE_FAULT_UNKNOWN_OP));
    for (uint32_t op = 1; op < TALLY_WIRE_OP_LIMIT; op++)
        assert_non_null(tally_wire_op_name(op));
}

static void test_truncated_header(void **state)
{
    (void)state;
    struct tally_wire_entry_request q = {.seq = 7};
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_ENTRY, 1, &q, sizeof(q));
    struct tally_wire_header h;
    for (size_t len = 0; len < TALLY_WIRE_HEADER_SIZE; len++) {
        assert_fault(tally_wire_header_decode(&h, f.bytes, len, TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_TRUNCATED);
        assert_fault(tally_wire_frame_decode(&h, f.bytes, len, TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_TRUNCATED);
    }
    /* A whole header with part of its body: read more. */
    for (size_t len = TALLY_WIRE_HEADER_SIZE; len < f.len; len++)
        assert_fault(tally_wire_frame_decode(&h, f.bytes, len, TALLY_WIRE_TO_SERVER),
                     TALLY_WIRE_FAULT_TRUNCATED);
    assert_fault(tally_wire_frame_decode(&h, f.bytes, f.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_NONE);
    assert_false(tally_wire_fault_replies(TALLY_WIRE_FAULT_TRUNCATED));
}

static void test_frame_decode_takes_one_frame_from_a_stream(void **state)
{
    (void)state;
    struct tally_wire_lots_request q = {.program = 1, .max = 10, .member = 42};
    struct frame a;
    struct frame b;
    request_make(&a, TALLY_WIRE_OP_LOTS, 1, &q, sizeof(q));
    request_make(&b, TALLY_WIRE_OP_STATUS, 2, NULL, 0);
    static uint8_t stream[2 * sizeof(a.bytes)];
    memcpy(stream, a.bytes, a.len);
    memcpy(stream + a.len, b.bytes, b.len);
    struct tally_wire_header h;
    assert_fault(tally_wire_frame_decode(&h, stream, a.len + b.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_NONE);
    assert_int_equal(h.op, TALLY_WIRE_OP_LOTS);
    size_t used = TALLY_WIRE_HEADER_SIZE + h.body_size;
    assert_int_equal(used, a.len);
    assert_fault(tally_wire_frame_decode(&h, stream + used, b.len, TALLY_WIRE_TO_SERVER),
                 TALLY_WIRE_FAULT_NONE);
    assert_int_equal(h.op, TALLY_WIRE_OP_STATUS);
    assert_int_equal(h.request, 2);
}

static void test_direction_flags_and_status_enforced(void **state)
{
    (void)state;
    struct frame f;
    request_make(&f, TALLY_WIRE_OP_STATUS, 1, NULL, 0);
    /* A request is not a reply. */
    assert_fault(reply_judge(&f), TALLY_WIRE_FAULT_WRONG_DIRECTION);

    struct tally_wire_header h;
    tally_wire_header_init(&h, TALLY_WIRE_OP_STATUS, NULL, 1);
    for (uint32_t bit = 1; bit < 15; bit++) {
        h.flags = (uint16_t)(1u << bit);
        frame_make(&f, &h, NULL);
        assert_fault(request_judge(&f), TALLY_WIRE_FAULT_BAD_FLAGS);
    }
    h.flags = 0;
    h.status = TALLY_WIRE_BUSY;
    frame_make(&f, &h, NULL);
    assert_fault(request_judge(&f), TALLY_WIRE_FAULT_BAD_STATUS);

    /* A reply: REPLY and nothing else; a status this version knows. */
    struct tally_wire_header q;
    tally_wire_header_init(&q, TALLY_WIRE_OP_POST, client_a, 3);
    tally_wire_reply_init(&h, &q, TALLY_WIRE_BUSY, 0, 0);
    frame_make(&f, &h, NULL);
    assert_fault(reply_judge(&f), TALLY_WIRE_FAULT_NONE);
    assert_fault(request_judge(&f), TALLY_WIRE_FAULT_WRONG_DIRECTION);
    assert_true(tally_wire_fault_closes(TALLY_WIRE_FAULT_WRONG_DIRECTION));
    h.flags = TALLY_WIRE_FLAG_REPLY | TALLY_WIRE_FLAG_STALE_OK;
    frame_make(&f, &h, NULL);
    assert_fault(reply_judge(&f), TALLY_WIRE_FAULT_BAD_FLAGS);
    h.flags = TALLY_WIRE_FLAG_REPLY;
    h.status = TALLY_WIRE_STATUS_LIMIT;
    frame_make(&f, &h, NULL);
    assert_fault(reply_judge(&f), TALLY_WIRE_FAULT_BAD_STATUS);
}

/* ---------------------------------------------------------------------------------------------
 * Bodies: sizes and field rules.
 * ------------------------------------------------------------------------------------------- */

static enum tally_wire_fault size_verdict(uint16_t op, uint16_t flags, uint16_t status,
                                          uint32_t body_size)
{
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, client_a, 1);
    h.flags = flags;
    h.status = status;
    h.body_size = body_size;
    return tally_wire_body_size_check(&h);
}

static void test_post_body_not_multiple_of_posting(void **state)
{
    (void)state;
    uint32_t bad[] = {0, 1, 100, 127, 129, 255, 8190 * 128 + 1, TALLY_WIRE_BODY_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_fault(size_verdict(TALLY_WIRE_OP_POST, 0, 0, bad[i]),
                     TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, 0, 0, 128), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, 0, 0, TALLY_BATCH_MAX * 128),
                 TALLY_WIRE_FAULT_NONE);
    /* One posting past the batch maximum is TOO_LARGE, not malformed: the client must split. */
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, 0, 0, (TALLY_BATCH_MAX + 1) * 128),
                 TALLY_WIRE_FAULT_TOO_MANY_ITEMS);
    assert_int_equal(tally_wire_fault_status(TALLY_WIRE_FAULT_TOO_MANY_ITEMS),
                     TALLY_WIRE_TOO_LARGE);
    assert_false(tally_wire_fault_closes(TALLY_WIRE_FAULT_TOO_MANY_ITEMS));

    /* The reply: one 16-byte result per posting. */
    uint16_t r = TALLY_WIRE_FLAG_REPLY;
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, 0, 16), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, 0, 0), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, 0, 24), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, 0, TALLY_BATCH_MAX * 16),
                 TALLY_WIRE_FAULT_NONE);
}

/* POST_AT: a 16-byte prefix, then 1 .. TALLY_BATCH_MAX postings; the reply is POST's. */
static void test_post_at_body_is_a_prefix_then_postings(void **state)
{
    (void)state;
    uint16_t op = TALLY_WIRE_OP_POST_AT;
    uint32_t bad[] = {0,
                      8,
                      15,
                      16,
                      17,
                      16 + 100,
                      16 + 127,
                      16 + 129,
                      128,
                      16 + 8190 * 128 + 1,
                      TALLY_WIRE_BODY_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_fault(size_verdict(op, 0, 0, bad[i]), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_fault(size_verdict(op, 0, 0, 16 + 128), TALLY_WIRE_FAULT_NONE);
    /* The largest POST_AT still fits a frame: 1,048,336 bytes of body. */
    assert_true(16 + TALLY_BATCH_MAX * 128 <= TALLY_WIRE_BODY_MAX);
    assert_fault(size_verdict(op, 0, 0, 16 + TALLY_BATCH_MAX * 128), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(op, 0, 0, 16 + (TALLY_BATCH_MAX + 1) * 128),
                 TALLY_WIRE_FAULT_TOO_MANY_ITEMS);
    uint16_t r = TALLY_WIRE_FLAG_REPLY;
    assert_fault(size_verdict(op, r, 0, 16), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(op, r, 0, 0), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_fault(size_verdict(op, r, 0, 32), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(op, r, 0, TALLY_BATCH_MAX * 16), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(op, r, 0, (TALLY_BATCH_MAX + 1) * 16),
                 TALLY_WIRE_FAULT_TOO_MANY_ITEMS);
    /* A wall-clock replica's refusal: an empty error reply, which libtally maps to ECONFIG. */
    assert_fault(size_verdict(op, r, TALLY_WIRE_CLOCK_MODE, 0), TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(op, r, TALLY_WIRE_CLOCK_MODE, 16), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_CLOCK_MODE), TALLY_ECONFIG);
    assert_string_equal(tally_wire_status_name(TALLY_WIRE_CLOCK_MODE), "CLOCK_MODE");
    assert_string_equal(tally_wire_op_name(TALLY_WIRE_OP_POST_AT), "POST_AT");
}

/* The documented fixed sizes of every request and OK reply (docs/PROTOCOL.md), as an oracle
 * independent of the op table in wire.c. Item 0: the body is exactly `fixed`. */
static const struct {
    uint16_t op;
    uint32_t request;
    uint32_t reply_fixed;
    uint32_t reply_item;
    uint32_t reply_max;
} shapes[] = {
    {TALLY_WIRE_OP_REGISTER, 32, 64, 0, 0},
    {TALLY_WIRE_OP_STATUS, 0, 240, 0, 0},
    {TALLY_WIRE_OP_PROGRAM, 8, 152, 0, 0},
    {TALLY_WIRE_OP_PROGRAMS, 8, 8, 4, 1024},
    {TALLY_WIRE_OP_ACCOUNT, 16, 240, 0, 0},
    {TALLY_WIRE_OP_BALANCE_AT, 24, 40, 0, 0},
    {TALLY_WIRE_OP_HISTORY, 24, 8, 176, 1024},
    {TALLY_WIRE_OP_LOTS, 32, 8, 64, 1024},
    {TALLY_WIRE_OP_ENTRY, 16, 176, 32, 1024},
    {TALLY_WIRE_OP_POSTING, 16, 32, 0, 0},
    {TALLY_WIRE_OP_HOLD, 16, 56, 0, 0},
    {TALLY_WIRE_OP_LEDGER, 32, 64, 1, 512 * 1024},
};
/* POST and POST_AT carry items in their requests: their own tests above. */

static void test_every_op_has_its_documented_body_sizes(void **state)
{
    (void)state;
    uint16_t r = TALLY_WIRE_FLAG_REPLY;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        uint16_t op = shapes[i].op;
        uint32_t q = shapes[i].request;
        assert_fault(size_verdict(op, 0, 0, q), TALLY_WIRE_FAULT_NONE);
        assert_fault(size_verdict(op, 0, 0, q + 1), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
        if (q > 0)
            assert_fault(size_verdict(op, 0, 0, q - 1), TALLY_WIRE_FAULT_BAD_BODY_SIZE);

        uint32_t fx = shapes[i].reply_fixed;
        uint32_t it = shapes[i].reply_item;
        assert_fault(size_verdict(op, r, 0, fx), TALLY_WIRE_FAULT_NONE);
        assert_fault(size_verdict(op, r, 0, fx - 1), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
        if (it == 0) {
            assert_fault(size_verdict(op, r, 0, fx + 1), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
            continue;
        }
        uint32_t max = shapes[i].reply_max;
        assert_fault(size_verdict(op, r, 0, fx + it), TALLY_WIRE_FAULT_NONE);
        if (it > 1) /* with 1-byte items (LEDGER's data) every size is whole items */
            assert_fault(size_verdict(op, r, 0, fx + it + 1), TALLY_WIRE_FAULT_BAD_BODY_SIZE);
        assert_fault(size_verdict(op, r, 0, fx + max * it), TALLY_WIRE_FAULT_NONE);
        assert_fault(size_verdict(op, r, 0, fx + (max + 1) * it),
                     TALLY_WIRE_FAULT_TOO_MANY_ITEMS);
    }
    /* Error replies: empty, except NOT_LEADER's address. */
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, TALLY_WIRE_NOT_LEADER, 64),
                 TALLY_WIRE_FAULT_NONE);
    assert_fault(size_verdict(TALLY_WIRE_OP_POST, r, TALLY_WIRE_NOT_LEADER, 0),
                 TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    for (uint16_t s = TALLY_WIRE_BUSY; s < TALLY_WIRE_STATUS_LIMIT; s++) {
        assert_fault(size_verdict(TALLY_WIRE_OP_ACCOUNT, r, s, 0), TALLY_WIRE_FAULT_NONE);
        assert_fault(size_verdict(TALLY_WIRE_OP_ACCOUNT, r, s, 240),
                     TALLY_WIRE_FAULT_BAD_BODY_SIZE);
    }
}

/* A request frame with a header tweak, judged whole. */
static enum tally_wire_fault judge_request(uint16_t op, const uint8_t *client, uint64_t request,
                                           uint16_t flags, uint64_t index, const void *body,
                                           uint32_t body_size)
{
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, client, request);
    h.flags = flags;
    h.index = index;
    h.body_size = body_size;
    struct frame f;
    frame_make(&f, &h, body);
    return request_judge(&f);
}

static void test_request_field_rules(void **state)
{
    (void)state;
    enum tally_wire_fault NONE = TALLY_WIRE_FAULT_NONE;
    enum tally_wire_fault BAD = TALLY_WIRE_FAULT_BAD_FIELD;
    uint16_t stale = TALLY_WIRE_FLAG_STALE_OK;
    struct tally_wire_register reg = {.label = "till-7"};
    struct tally_posting p = {.program = 1, .kind = TALLY_KIND_OPEN, .account = 5};
    uint16_t REG = TALLY_WIRE_OP_REGISTER;
    uint16_t POST = TALLY_WIRE_OP_POST;

    /* Sessions: a client id, REGISTER as request 0, POSTs from 1, no index, no STALE_OK. */
    assert_fault(judge_request(REG, client_a, 0, 0, 0, &reg, sizeof(reg)), NONE);
    assert_fault(judge_request(REG, NULL, 0, 0, 0, &reg, sizeof(reg)), BAD);
    assert_fault(judge_request(REG, client_a, 1, 0, 0, &reg, sizeof(reg)), BAD);
    assert_fault(judge_request(POST, client_a, 1, 0, 0, &p, sizeof(p)), NONE);
    assert_fault(judge_request(POST, client_a, UINT64_MAX, 0, 0, &p, sizeof(p)), NONE);
    assert_fault(judge_request(POST, NULL, 1, 0, 0, &p, sizeof(p)), BAD);
    assert_fault(judge_request(POST, client_a, 0, 0, 0, &p, sizeof(p)), BAD);
    assert_fault(judge_request(POST, client_a, 1, stale, 0, &p, sizeof(p)), BAD);
    assert_fault(judge_request(POST, client_a, 1, 0, 5, &p, sizeof(p)), BAD);
    /* The wire does not judge postings: a posting of zeros is the ledger's to refuse. */
    struct tally_posting zero = {0};
    assert_fault(judge_request(POST, client_a, 1, 0, 0, &zero, sizeof(zero)), NONE);

    /* POST_AT: a session operation like POST; reserved zero, at at most 9999-12-31. */
    uint16_t PAT = TALLY_WIRE_OP_POST_AT;
    uint8_t pat[16 + sizeof(p)];
    struct tally_wire_post_at pre = {.at = UINT64_C(852076800000)}; /* 1997-01-01T00:00Z */
    memcpy(pat, &pre, sizeof(pre));
    memcpy(pat + 16, &p, sizeof(p));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), NONE);
    assert_fault(judge_request(PAT, NULL, 1, 0, 0, pat, sizeof(pat)), BAD);
    assert_fault(judge_request(PAT, client_a, 0, 0, 0, pat, sizeof(pat)), BAD);
    assert_fault(judge_request(PAT, client_a, 1, stale, 0, pat, sizeof(pat)), BAD);
    assert_fault(judge_request(PAT, client_a, 1, 0, 5, pat, sizeof(pat)), BAD);
    pre.reserved = 1;
    memcpy(pat, &pre, sizeof(pre));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), BAD);
    pre.reserved = 0;
    pre.at = 0; /* the ledger's time: allowed */
    memcpy(pat, &pre, sizeof(pre));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), NONE);
    pre.at = TALLY_WIRE_AT_MAX;
    memcpy(pat, &pre, sizeof(pre));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), NONE);
    pre.at = TALLY_WIRE_AT_MAX + 1;
    memcpy(pat, &pre, sizeof(pre));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), BAD);
    pre.at = UINT64_MAX;
    memcpy(pat, &pre, sizeof(pre));
    assert_fault(judge_request(PAT, client_a, 1, 0, 0, pat, sizeof(pat)), BAD);

    /* STATUS: any client id, no index, no STALE_OK. */
    assert_fault(judge_request(TALLY_WIRE_OP_STATUS, NULL, 0, 0, 0, NULL, 0), NONE);
    assert_fault(judge_request(TALLY_WIRE_OP_STATUS, NULL, 0, stale, 0, NULL, 0), BAD);
    assert_fault(judge_request(TALLY_WIRE_OP_STATUS, NULL, 0, 0, 3, NULL, 0), BAD);

    /* Reads: any client id, STALE_OK and a least index allowed; fields checked. */
    struct tally_wire_account_request a = {.program = 1, .member = 42};
    uint16_t ACC = TALLY_WIRE_OP_ACCOUNT;
    assert_fault(judge_request(ACC, NULL, 0, stale, 1043, &a, sizeof(a)), NONE);
    a.member = TALLY_SYS_ISSUANCE;
    assert_fault(judge_request(ACC, NULL, 0, 0, 0, &a, sizeof(a)), NONE);
    a.member = 0;
    assert_fault(judge_request(ACC, NULL, 0, 0, 0, &a, sizeof(a)), BAD);
    a.member = 42;
    a.program = 0;
    assert_fault(judge_request(ACC, NULL, 0, 0, 0, &a, sizeof(a)), BAD);
    a.program = 1;
    a.reserved = 1;
    assert_fault(judge_request(ACC, NULL, 0, 0, 0, &a, sizeof(a)), BAD);

    struct tally_wire_program_request pr = {.program = 1};
    assert_fault(judge_request(TALLY_WIRE_OP_PROGRAM, NULL, 0, 0, 0, &pr, 8), NONE);
    pr.reserved = 2;
    assert_fault(judge_request(TALLY_WIRE_OP_PROGRAM, NULL, 0, 0, 0, &pr, 8), BAD);

    struct tally_wire_programs_request ps = {.after = 0, .max = TALLY_WIRE_PROGRAMS_MAX};
    assert_fault(judge_request(TALLY_WIRE_OP_PROGRAMS, NULL, 0, 0, 0, &ps, 8), NONE);
    ps.max = 0;
    assert_fault(judge_request(TALLY_WIRE_OP_PROGRAMS, NULL, 0, 0, 0, &ps, 8), BAD);
    ps.max = TALLY_WIRE_PROGRAMS_MAX + 1;
    assert_fault(judge_request(TALLY_WIRE_OP_PROGRAMS, NULL, 0, 0, 0, &ps, 8), BAD);

    struct tally_wire_balance_request b = {.program = 1, .member = 42, .at = 0};
    assert_fault(judge_request(TALLY_WIRE_OP_BALANCE_AT, NULL, 0, 0, 0, &b, 24), NONE);
    b.reserved = 9;
    assert_fault(judge_request(TALLY_WIRE_OP_BALANCE_AT, NULL, 0, 0, 0, &b, 24), BAD);

    struct tally_wire_history_request hi = {.program = 1, .max = 1, .member = 42};
    assert_fault(judge_request(TALLY_WIRE_OP_HISTORY, NULL, 0, 0, 0, &hi, 24), NONE);
    hi.max = TALLY_WIRE_HISTORY_MAX + 1;
    assert_fault(judge_request(TALLY_WIRE_OP_HISTORY, NULL, 0, 0, 0, &hi, 24), BAD);

    struct tally_wire_lots_request lo = {.program = 1, .max = TALLY_WIRE_LOTS_MAX, .member = 42,
                                         .after_expires_at = UINT64_MAX, .after_lot_id = 3};
    assert_fault(judge_request(TALLY_WIRE_OP_LOTS, NULL, 0, 0, 0, &lo, 32), NONE);
    lo.max = 0;
    assert_fault(judge_request(TALLY_WIRE_OP_LOTS, NULL, 0, 0, 0, &lo, 32), BAD);

    struct tally_wire_entry_request en = {.seq = 1};
    assert_fault(judge_request(TALLY_WIRE_OP_ENTRY, NULL, 0, 0, 0, &en, 16), NONE);
    en.seq = 0;
    assert_fault(judge_request(TALLY_WIRE_OP_ENTRY, NULL, 0, 0, 0, &en, 16), BAD);
    en.seq = 1;
    en.reserved = 1;
    assert_fault(judge_request(TALLY_WIRE_OP_ENTRY, NULL, 0, 0, 0, &en, 16), BAD);

    struct tally_wire_id_request id = {{0}};
    assert_fault(judge_request(TALLY_WIRE_OP_POSTING, NULL, 0, 0, 0, &id, 16), BAD);
    assert_fault(judge_request(TALLY_WIRE_OP_HOLD, NULL, 0, 0, 0, &id, 16), BAD);
    id.id[0] = 0x80;
    assert_fault(judge_request(TALLY_WIRE_OP_POSTING, NULL, 0, 0, 0, &id, 16), NONE);
    assert_fault(judge_request(TALLY_WIRE_OP_HOLD, NULL, 0, 0, 0, &id, 16), NONE);

    /* LEDGER: a chunk size within the limit; a new copy (id 0) starts at offset 0. */
    struct tally_wire_ledger_request lq = {.copy_id = 0, .offset = 0, .min_index = 7, .max = 1};
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), NONE);
    lq.max = TALLY_WIRE_LEDGER_CHUNK_MAX;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), NONE);
    lq.max = TALLY_WIRE_LEDGER_CHUNK_MAX + 1;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), BAD);
    lq.max = 0;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), BAD);
    lq.max = 4096;
    lq.offset = 4096;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), BAD);
    lq.copy_id = 3;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), NONE);
    lq.reserved = 1;
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 0, &lq, 32), BAD);
    lq.reserved = 0; /* a replica operation: no index, no STALE_OK */
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, 0, 5, &lq, 32), BAD);
    assert_fault(judge_request(TALLY_WIRE_OP_LEDGER, NULL, 0, stale, 0, &lq, 32), BAD);

    assert_int_equal(tally_wire_fault_status(BAD), TALLY_WIRE_BAD_REQUEST);
    assert_false(tally_wire_fault_closes(BAD));
}

/* A reply frame of status OK, judged whole. */
static enum tally_wire_fault judge_reply(uint16_t op, uint16_t status, const void *body,
                                         uint32_t body_size)
{
    struct tally_wire_header q;
    tally_wire_header_init(&q, op, client_a, 1);
    struct tally_wire_header h;
    tally_wire_reply_init(&h, &q, status, 10, body_size);
    struct frame f;
    frame_make(&f, &h, body);
    return reply_judge(&f);
}

static void test_reply_field_rules(void **state)
{
    (void)state;
    enum tally_wire_fault NONE = TALLY_WIRE_FAULT_NONE;
    enum tally_wire_fault BAD = TALLY_WIRE_FAULT_BAD_FIELD;
    uint16_t OK = TALLY_WIRE_OK;

    /* A page's count accounts for exactly the items after it; only known page flags. */
    uint8_t body[8 + 2 * 64];
    memset(body, 0, sizeof(body));
    struct tally_wire_page pg = {.count = 2, .flags = TALLY_WIRE_PAGE_MORE};
    memcpy(body, &pg, sizeof(pg));
    assert_fault(judge_reply(TALLY_WIRE_OP_LOTS, OK, body, sizeof(body)), NONE);
    pg.count = 1;
    memcpy(body, &pg, sizeof(pg));
    assert_fault(judge_reply(TALLY_WIRE_OP_LOTS, OK, body, sizeof(body)), BAD);
    pg.count = 2;
    pg.flags = 2;
    memcpy(body, &pg, sizeof(pg));
    assert_fault(judge_reply(TALLY_WIRE_OP_LOTS, OK, body, sizeof(body)), BAD);
    pg = (struct tally_wire_page){.count = 0, .flags = 0};
    memcpy(body, &pg, sizeof(pg));
    assert_fault(judge_reply(TALLY_WIRE_OP_HISTORY, OK, body, 8), NONE);
    pg.count = 3;
    uint32_t ids[3] = {1, 2, 9};
    uint8_t pbody[8 + sizeof(ids)];
    memcpy(pbody, &pg, 8);
    memcpy(pbody + 8, ids, sizeof(ids));
    assert_fault(judge_reply(TALLY_WIRE_OP_PROGRAMS, OK, pbody, sizeof(pbody)), NONE);
    pg.count = 0xffffffffu; /* a count whose item bytes would overflow 32 bits */
    memcpy(pbody, &pg, 8);
    assert_fault(judge_reply(TALLY_WIRE_OP_PROGRAMS, OK, pbody, sizeof(pbody)), BAD);

    /* An ENTRY reply carries exactly its tail. */
    uint8_t ebody[176 + 2 * 32];
    memset(ebody, 0, sizeof(ebody));
    struct tally_entry en = {.seq = 9, .kind = TALLY_KIND_REDEEM, .tail_size = 64};
    memcpy(ebody, &en, sizeof(en));
    assert_fault(judge_reply(TALLY_WIRE_OP_ENTRY, OK, ebody, sizeof(ebody)), NONE);
    assert_fault(judge_reply(TALLY_WIRE_OP_ENTRY, OK, ebody, 176 + 32), BAD);

    /* Addresses: NOT_LEADER's, and both of STATUS. */
    struct tally_wire_not_leader nl;
    assert_int_equal(tally_wire_address_set(nl.leader_address, "[::1]:7401"), 0);
    assert_fault(judge_reply(TALLY_WIRE_OP_POST, TALLY_WIRE_NOT_LEADER, &nl, 64), NONE);
    memset(&nl, 0, sizeof(nl));
    assert_fault(judge_reply(TALLY_WIRE_OP_POST, TALLY_WIRE_NOT_LEADER, &nl, 64), NONE);
    memset(&nl, 'a', sizeof(nl));
    assert_fault(judge_reply(TALLY_WIRE_OP_POST, TALLY_WIRE_NOT_LEADER, &nl, 64), BAD);

    struct tally_wire_replica_status st;
    memset(&st, 0, sizeof(st));
    st.role = TALLY_WIRE_ROLE_FOLLOWER;
    assert_int_equal(tally_wire_address_set(st.address, "10.0.0.3:7401"), 0);
    assert_fault(judge_reply(TALLY_WIRE_OP_STATUS, OK, &st, sizeof(st)), NONE);
    st.leader_address[5] = 'x'; /* text after the NUL */
    assert_fault(judge_reply(TALLY_WIRE_OP_STATUS, OK, &st, sizeof(st)), BAD);

    /* LEDGER: count is the data after the 64 bytes, and the data lies within the copy. */
    uint8_t lbody[64 + 100];
    memset(lbody, 0xab, sizeof(lbody));
    struct tally_wire_ledger_chunk ch = {.copy_id = 5, .size = 1000, .offset = 900,
                                         .applied_index = 12, .count = 100};
    memcpy(lbody, &ch, sizeof(ch));
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, sizeof(lbody)), NONE);
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, 64 + 99), BAD);
    ch.offset = 901; /* past the end of the copy */
    memcpy(lbody, &ch, sizeof(ch));
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, sizeof(lbody)), BAD);
    ch.offset = 900;
    ch.copy_id = 0;
    memcpy(lbody, &ch, sizeof(ch));
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, sizeof(lbody)), BAD);
    ch.copy_id = 5;
    ch.reserved[11] = 1;
    memcpy(lbody, &ch, sizeof(ch));
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, sizeof(lbody)), BAD);
    ch.reserved[11] = 0;
    ch.count = 0; /* an empty chunk at the very end */
    ch.offset = 1000;
    memcpy(lbody, &ch, sizeof(ch));
    assert_fault(judge_reply(TALLY_WIRE_OP_LEDGER, OK, lbody, 64), NONE);
}

static void test_address_field(void **state)
{
    (void)state;
    char a[TALLY_WIRE_ADDRESS_SIZE];
    assert_int_equal(tally_wire_address_set(a, "tally-2.example.net:7401"), 0);
    assert_string_equal(a, "tally-2.example.net:7401");
    assert_true(tally_wire_address_valid(a));
    assert_int_equal(tally_wire_address_set(a, ""), 0);
    assert_true(tally_wire_address_valid(a));

    char longest[64];
    memset(longest, 'h', 63);
    longest[63] = '\0';
    assert_int_equal(tally_wire_address_set(a, longest), 0);
    assert_true(tally_wire_address_valid(a));
    char too_long[65];
    memset(too_long, 'h', 64);
    too_long[64] = '\0';
    assert_int_equal(tally_wire_address_set(a, too_long), TALLY_ETOO_LARGE);
    assert_int_equal(tally_wire_address_set(a, "host name:1"), TALLY_ECONFIG);
    assert_true(tally_wire_address_valid(a)); /* left all zero */
    assert_int_equal(tally_wire_address_set(a, "h\x01:1"), TALLY_ECONFIG);

    memset(a, 0, sizeof(a));
    a[0] = (char)0xc3; /* not ASCII */
    assert_false(tally_wire_address_valid(a));
    memset(a, 'h', sizeof(a)); /* no NUL at all */
    assert_false(tally_wire_address_valid(a));
}

static void test_status_and_fault_tables(void **state)
{
    (void)state;
    /* Every status up to the limit has a name, a message and a system error; 0 is success. */
    for (uint32_t s = 0; s < TALLY_WIRE_STATUS_LIMIT; s++) {
        assert_non_null(tally_wire_status_name(s));
        assert_string_not_equal(tally_wire_status_str(s), "unknown status");
        assert_true(s == 0 ? tally_wire_status_error(s) == 0 : tally_wire_status_error(s) < 0);
    }
    assert_null(tally_wire_status_name(TALLY_WIRE_STATUS_LIMIT));
    assert_string_equal(tally_wire_status_str(TALLY_WIRE_STATUS_LIMIT), "unknown status");
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_STATUS_LIMIT), TALLY_EPROTOCOL);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_NOT_LEADER), TALLY_ENOT_LEADER);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_BUSY), TALLY_EBUSY);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_STALE), TALLY_ESTALE);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_NOT_FOUND), TALLY_ENOT_FOUND);
    assert_int_equal(tally_wire_status_error(TALLY_WIRE_BAD_VERSION), TALLY_EVERSION);
    assert_string_equal(tally_wire_status_name(TALLY_WIRE_SESSION_EXPIRED), "SESSION_EXPIRED");

    /* Every fault has a name and a message; a fault that replies, replies with an error. */
    for (uint32_t i = 0; i < TALLY_WIRE_FAULT_LIMIT; i++) {
        enum tally_wire_fault f = (enum tally_wire_fault)i;
        assert_non_null(tally_wire_fault_name(f));
        assert_string_not_equal(tally_wire_fault_str(f), "unknown fault");
        if (tally_wire_fault_replies(f))
            assert_int_not_equal(tally_wire_fault_status(f), TALLY_WIRE_OK);
    }
    assert_false(tally_wire_fault_replies(TALLY_WIRE_FAULT_NONE));
    assert_false(tally_wire_fault_closes(TALLY_WIRE_FAULT_NONE));
    assert_null(tally_wire_fault_name((enum tally_wire_fault)TALLY_WIRE_FAULT_LIMIT));
}

/* ---------------------------------------------------------------------------------------------
 * The test vectors (tests/common/wire_vectors.txt).
 * ------------------------------------------------------------------------------------------- */

#define VEC_MAX 64u
#define VEC_FILE_MAX (256u * 1024u)

enum vec_field {
    VF_MAGIC = 1u << 0,
    VF_VERSION = 1u << 1,
    VF_OP = 1u << 2,
    VF_FLAGS = 1u << 3,
    VF_STATUS = 1u << 4,
    VF_BODY_SIZE = 1u << 5,
    VF_CLIENT_ID = 1u << 6,
    VF_REQUEST = 1u << 7,
    VF_INDEX = 1u << 8,
    VF_CHECKSUM_BODY = 1u << 9,
    VF_CHECKSUM_HEADER = 1u << 10,
};
#define VF_ALL 0x7ffu

struct vec {
    char name[64];
    unsigned line;
    char direction[16];
    char scope[16];
    char verdict[32];
    char sealed[8];
    unsigned fields;
    struct tally_wire_header h; /* the listed fields */
    uint8_t frame[TALLY_WIRE_HEADER_SIZE + FRAME_BODY_MAX];
    size_t len;
};

static struct vec vecs[VEC_MAX];
static char vec_text[VEC_FILE_MAX + 1];

static unsigned hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return (unsigned)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (unsigned)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (unsigned)(c - 'A' + 10);
    return 16;
}

/* Append the hex pairs of text (spaces allowed between pairs) to out; returns bytes or -1. */
static long hex_append(const char *text, uint8_t *out, size_t room)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0';) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned hi = hex_digit(p[0]);
        unsigned lo = p[1] == '\0' ? 16 : hex_digit(p[1]);
        if (hi > 15 || lo > 15 || n == room)
            return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    return (long)n;
}

static uint64_t vec_number(const char *path, unsigned line, const char *text, uint64_t max)
{
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 0);
    if (end == text || *end != '\0' || v > max)
        fail_msg("%s:%u: bad number \"%s\"", path, line, text);
    return (uint64_t)v;
}

static void vec_copy(char *dst, size_t room, const char *path, unsigned line, const char *text)
{
    if (strlen(text) >= room)
        fail_msg("%s:%u: value too long", path, line);
    strcpy(dst, text);
}

/* One "key value" line into v. */
static void vec_line(struct vec *v, const char *path, unsigned line, const char *key,
                     const char *val)
{
    struct tally_wire_header *h = &v->h;
    if (strcmp(key, "frame") == 0) {
        long n = hex_append(val, v->frame + v->len, sizeof(v->frame) - v->len);
        if (n < 0)
            fail_msg("%s:%u: bad or too much hex", path, line);
        v->len += (size_t)n;
    } else if (strcmp(key, "meaning") == 0) {
        /* for people */
    } else if (strcmp(key, "direction") == 0) {
        vec_copy(v->direction, sizeof(v->direction), path, line, val);
    } else if (strcmp(key, "scope") == 0) {
        vec_copy(v->scope, sizeof(v->scope), path, line, val);
    } else if (strcmp(key, "verdict") == 0) {
        vec_copy(v->verdict, sizeof(v->verdict), path, line, val);
    } else if (strcmp(key, "sealed") == 0) {
        vec_copy(v->sealed, sizeof(v->sealed), path, line, val);
    } else if (strcmp(key, "magic") == 0) {
        if (strlen(val) != 4)
            fail_msg("%s:%u: magic is 4 characters", path, line);
        memcpy(h->magic, val, 4);
        v->fields |= VF_MAGIC;
    } else if (strcmp(key, "version") == 0) {
        h->version = (uint16_t)vec_number(path, line, val, UINT16_MAX);
        v->fields |= VF_VERSION;
    } else if (strcmp(key, "op") == 0) {
        h->op = (uint16_t)vec_number(path, line, val, UINT16_MAX);
        v->fields |= VF_OP;
    } else if (strcmp(key, "flags") == 0) {
        h->flags = (uint16_t)vec_number(path, line, val, UINT16_MAX);
        v->fields |= VF_FLAGS;
    } else if (strcmp(key, "status") == 0) {
        h->status = (uint16_t)vec_number(path, line, val, UINT16_MAX);
        v->fields |= VF_STATUS;
    } else if (strcmp(key, "body_size") == 0) {
        h->body_size = (uint32_t)vec_number(path, line, val, UINT32_MAX);
        v->fields |= VF_BODY_SIZE;
    } else if (strcmp(key, "client_id") == 0) {
        if (strlen(val) != 32 || hex_append(val, h->client_id, 16) != 16)
            fail_msg("%s:%u: client_id is 32 hex digits", path, line);
        v->fields |= VF_CLIENT_ID;
    } else if (strcmp(key, "request") == 0) {
        h->request = vec_number(path, line, val, UINT64_MAX);
        v->fields |= VF_REQUEST;
    } else if (strcmp(key, "index") == 0) {
        h->index = vec_number(path, line, val, UINT64_MAX);
        v->fields |= VF_INDEX;
    } else if (strcmp(key, "checksum_body") == 0) {
        h->checksum_body = vec_number(path, line, val, UINT64_MAX);
        v->fields |= VF_CHECKSUM_BODY;
    } else if (strcmp(key, "checksum_header") == 0) {
        h->checksum_header = vec_number(path, line, val, UINT64_MAX);
        v->fields |= VF_CHECKSUM_HEADER;
    } else {
        fail_msg("%s:%u: unknown key \"%s\"", path, line, key);
    }
}

/* Parse the vectors file into vecs[]; returns how many. Fails the test on any malformed line. */
static unsigned vectors_load(const char **path_out)
{
    const char *path = getenv("TALLY_WIRE_VECTORS");
    if (path == NULL)
        path = "tests/common/wire_vectors.txt";
    *path_out = path;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s (run from the repository root, or set TALLY_WIRE_VECTORS)",
                 path);
    size_t n = fread(vec_text, 1, VEC_FILE_MAX + 1, fp);
    fclose(fp);
    if (n > VEC_FILE_MAX)
        fail_msg("%s is larger than %u bytes", path, VEC_FILE_MAX);
    vec_text[n] = '\0';

    unsigned count = 0;
    struct vec *v = NULL;
    unsigned line = 0;
    for (char *s = vec_text, *next; s != NULL; s = next) {
        line++;
        char *nl = strchr(s, '\n');
        next = nl != NULL ? nl + 1 : NULL;
        if (nl != NULL)
            *nl = '\0';
        size_t len = strlen(s);
        if (len > 0 && s[len - 1] == '\r')
            s[--len] = '\0';
        if (len == 0 || s[0] == '#')
            continue;
        char *val = strchr(s, ' ');
        if (val != NULL)
            *val++ = '\0';
        else
            val = s + len;
        if (strcmp(s, "vector") == 0) {
            if (v != NULL || count == VEC_MAX)
                fail_msg("%s:%u: vector inside a vector, or more than %u", path, line, VEC_MAX);
            v = &vecs[count];
            memset(v, 0, sizeof(*v));
            vec_copy(v->name, sizeof(v->name), path, line, val);
            v->line = line;
        } else if (strcmp(s, "end") == 0) {
            if (v == NULL)
                fail_msg("%s:%u: end outside a vector", path, line);
            count++;
            v = NULL;
        } else {
            if (v == NULL)
                fail_msg("%s:%u: \"%s\" outside a vector", path, line, s);
            vec_line(v, path, line, s, val);
        }
    }
    if (v != NULL)
        fail_msg("%s: vector %s has no end", path, v->name);
    return count;
}

/* Compare the listed fields of v with the header decoded from its bytes. */
static void vec_check_fields(const struct vec *v, const struct tally_wire_header *d)
{
    const struct tally_wire_header *w = &v->h;
    if ((v->fields & VF_MAGIC) && memcmp(d->magic, w->magic, 4) != 0)
        fail_msg("%s: magic differs", v->name);
    if ((v->fields & VF_VERSION) && d->version != w->version)
        fail_msg("%s: version %u, listed %u", v->name, d->version, w->version);
    if ((v->fields & VF_OP) && d->op != w->op)
        fail_msg("%s: op %u, listed %u", v->name, d->op, w->op);
    if ((v->fields & VF_FLAGS) && d->flags != w->flags)
        fail_msg("%s: flags 0x%x, listed 0x%x", v->name, d->flags, w->flags);
    if ((v->fields & VF_STATUS) && d->status != w->status)
        fail_msg("%s: status %u, listed %u", v->name, d->status, w->status);
    if ((v->fields & VF_BODY_SIZE) && d->body_size != w->body_size)
        fail_msg("%s: body_size %u, listed %u", v->name, d->body_size, w->body_size);
    if ((v->fields & VF_CLIENT_ID) && memcmp(d->client_id, w->client_id, 16) != 0)
        fail_msg("%s: client_id differs", v->name);
    if ((v->fields & VF_REQUEST) && d->request != w->request)
        fail_msg("%s: request differs", v->name);
    if ((v->fields & VF_INDEX) && d->index != w->index)
        fail_msg("%s: index differs", v->name);
    if ((v->fields & VF_CHECKSUM_BODY) && d->checksum_body != w->checksum_body)
        fail_msg("%s: checksum_body differs", v->name);
    if ((v->fields & VF_CHECKSUM_HEADER) && d->checksum_header != w->checksum_header)
        fail_msg("%s: checksum_header differs", v->name);
}

/* Build the header from the listed fields with the encoder and compare it with the bytes. */
static void vec_check_encode(const struct vec *v)
{
    if (v->fields != VF_ALL || v->len < TALLY_WIRE_HEADER_SIZE)
        fail_msg("%s: a sealed vector lists every field and a whole header", v->name);
    const struct tally_wire_header *w = &v->h;
    struct tally_wire_header e;
    bool reply = (w->flags & TALLY_WIRE_FLAG_REPLY) != 0;
    if (reply) {
        struct tally_wire_header q;
        tally_wire_header_init(&q, w->op, w->client_id, w->request);
        tally_wire_reply_init(&e, &q, w->status, w->index, w->body_size);
    } else {
        tally_wire_header_init(&e, w->op, w->client_id, w->request);
        e.status = w->status;
        e.index = w->index;
        e.body_size = w->body_size;
    }
    e.flags = w->flags;
    memcpy(e.magic, w->magic, 4);
    e.version = w->version;
    if (v->len - TALLY_WIRE_HEADER_SIZE == w->body_size) {
        tally_wire_header_seal(&e, v->frame + TALLY_WIRE_HEADER_SIZE);
    } else { /* body not shown: the listed body checksum, the header sealed over it */
        e.checksum_body = w->checksum_body;
        e.checksum_header = tally_wire_checksum(&e, TALLY_WIRE_HEADER_SEALED_SIZE);
    }
    if (memcmp(&e, v->frame, TALLY_WIRE_HEADER_SIZE) != 0)
        fail_msg("%s: encoding the listed fields does not give the vector's bytes", v->name);
}

static void vec_check(const struct vec *v)
{
    enum tally_wire_direction dir = TALLY_WIRE_TO_SERVER;
    if (strcmp(v->direction, "request") == 0)
        dir = TALLY_WIRE_TO_SERVER;
    else if (strcmp(v->direction, "reply") == 0)
        dir = TALLY_WIRE_TO_CLIENT;
    else
        fail_msg("%s: direction must be request or reply", v->name);

    struct tally_wire_header d;
    memset(&d, 0, sizeof(d));
    enum tally_wire_fault f = TALLY_WIRE_FAULT_NONE;
    if (strcmp(v->scope, "frame") == 0) {
        f = tally_wire_frame_decode(&d, v->frame, v->len, dir);
    } else if (strcmp(v->scope, "header") == 0) {
        f = tally_wire_header_decode(&d, v->frame, v->len, dir);
        if (f == TALLY_WIRE_FAULT_NONE)
            f = tally_wire_body_size_check(&d);
    } else {
        fail_msg("%s: scope must be frame or header", v->name);
    }
    const char *got = tally_wire_fault_name(f);
    if (got == NULL || strcmp(got, v->verdict) != 0)
        fail_msg("%s: verdict %s, listed %s", v->name, got ? got : "?", v->verdict);

    if (v->fields != 0) {
        if (v->len < TALLY_WIRE_HEADER_SIZE)
            fail_msg("%s: fields listed for less than a header", v->name);
        vec_check_fields(v, &d);
    }
    if (strcmp(v->sealed, "yes") == 0)
        vec_check_encode(v);
    else if (strcmp(v->sealed, "no") != 0)
        fail_msg("%s: sealed must be yes or no", v->name);
}

static void test_vectors_match(void **state)
{
    (void)state;
    const char *path;
    unsigned n = vectors_load(&path);
    if (n < 20)
        fail_msg("%s: only %u vectors", path, n);
    bool seen[TALLY_WIRE_FAULT_LIMIT] = {false};
    unsigned valid = 0;
    for (unsigned i = 0; i < n; i++) {
        vec_check(&vecs[i]);
        for (uint32_t k = 0; k < TALLY_WIRE_FAULT_LIMIT; k++)
            if (strcmp(vecs[i].verdict, tally_wire_fault_name((enum tally_wire_fault)k)) == 0)
                seen[k] = true;
        valid += strcmp(vecs[i].verdict, "NONE") == 0;
    }
    /* The file shows every verdict a receiver can reach, and valid frames of both directions. */
    for (uint32_t k = 0; k < TALLY_WIRE_FAULT_LIMIT; k++)
        if (!seen[k])
            fail_msg("%s: no vector with verdict %s", path,
                     tally_wire_fault_name((enum tally_wire_fault)k));
    assert_true(valid >= 10);
}

static void test_every_single_bit_flip_in_a_vector_is_caught(void **state)
{
    (void)state;
    const char *path;
    unsigned n = vectors_load(&path);
    unsigned checked = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct vec *v = &vecs[i];
        if (strcmp(v->verdict, "NONE") != 0 || strcmp(v->scope, "frame") != 0)
            continue;
        enum tally_wire_direction dir =
            strcmp(v->direction, "reply") == 0 ? TALLY_WIRE_TO_CLIENT : TALLY_WIRE_TO_SERVER;
        static uint8_t copy[sizeof(v->frame)];
        struct tally_wire_header d0;
        assert_fault(tally_wire_frame_decode(&d0, v->frame, v->len, dir), TALLY_WIRE_FAULT_NONE);
        for (size_t bit = 0; bit < v->len * 8; bit++) {
            memcpy(copy, v->frame, v->len);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct tally_wire_header d;
            enum tally_wire_fault f = tally_wire_frame_decode(&d, copy, v->len, dir);
            if (f == TALLY_WIRE_FAULT_NONE)
                fail_msg("%s: bit %zu flipped and the frame still passed", v->name, bit);
        }
        checked++;
    }
    assert_true(checked >= 10);
}

/* ---------------------------------------------------------------------------------------------
 * Randomized: the decoders on bytes nobody chose.
 * ------------------------------------------------------------------------------------------- */

static void test_random_bytes_never_crash_and_are_rejected(void **state)
{
    (void)state;
    rng_state = UINT64_C(0x7a11e1f0c0ffee01);
    static uint8_t buf[TALLY_WIRE_HEADER_SIZE + 512];
    unsigned seen[TALLY_WIRE_FAULT_LIMIT] = {0};
    for (unsigned i = 0; i < 20000; i++) {
        size_t len = (size_t)(rng_next() % (sizeof(buf) + 1));
        rng_fill(buf, len);
        /* Half the time, get past the magic and version to reach the checksum. */
        if (i % 2 == 1 && len >= 6)
            memcpy(buf, "TLY1\x01\x00", 6);
        for (int dir = 0; dir < 2; dir++) {
            struct tally_wire_header h;
            enum tally_wire_fault f =
                tally_wire_frame_decode(&h, buf, len, (enum tally_wire_direction)dir);
            assert_true((uint32_t)f < TALLY_WIRE_FAULT_LIMIT);
            assert_int_not_equal(f, TALLY_WIRE_FAULT_NONE);
            seen[f]++;
        }
    }
    assert_true(seen[TALLY_WIRE_FAULT_TRUNCATED] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_BAD_MAGIC] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM] > 0);
}

/* A body size for op that is often right, sometimes off by a little, sometimes anything. */
static uint32_t random_body_size(uint16_t op)
{
    uint32_t exact = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        if (shapes[i].op == op)
            exact = shapes[i].request;
    if (op == TALLY_WIRE_OP_POST)
        exact = (uint32_t)(1 + rng_next() % 8) * 128;
    switch (rng_next() % 4) {
    case 0:
    case 1:
        return exact;
    case 2:
        return (uint32_t)(exact + rng_next() % 3) - 1u + (exact == 0);
    default:
        return (uint32_t)(rng_next() % FRAME_BODY_MAX);
    }
}

static void test_random_sealed_frames_get_a_defined_verdict(void **state)
{
    (void)state;
    rng_state = UINT64_C(0x5eed0000deadbeef);
    static struct frame f;
    unsigned seen[TALLY_WIRE_FAULT_LIMIT] = {0};
    for (unsigned i = 0; i < 50000; i++) {
        bool reply = rng_next() % 2 == 0;
        uint16_t op = (uint16_t)(rng_next() % (TALLY_WIRE_OP_LIMIT + 2));
        struct tally_wire_header h;
        uint8_t client[16];
        rng_fill(client, sizeof(client));
        if (rng_next() % 8 == 0)
            memset(client, 0, sizeof(client));
        tally_wire_header_init(&h, op, client, rng_next() % 4);
        uint64_t r = rng_next();
        h.flags = (uint16_t)(r % 8 == 0 ? r >> 16 : reply ? TALLY_WIRE_FLAG_REPLY : (r >> 3) % 2);
        h.status = (uint16_t)(reply && r % 3 == 0 ? (r >> 20) % (TALLY_WIRE_STATUS_LIMIT + 1) : 0);
        h.index = rng_next() % 3 == 0 ? rng_next() : 0;
        h.body_size = reply && h.status == TALLY_WIRE_NOT_LEADER ? 64 : random_body_size(op);
        if (h.body_size > FRAME_BODY_MAX)
            h.body_size = FRAME_BODY_MAX;
        /* Bodies: mostly zero with a few random bytes (so field rules pass and fail), or noise. */
        static uint8_t body[FRAME_BODY_MAX];
        memset(body, 0, h.body_size);
        if (rng_next() % 4 == 0) {
            rng_fill(body, h.body_size);
        } else {
            for (unsigned k = 0; k < 4 && h.body_size > 0; k++)
                body[rng_next() % h.body_size] = (uint8_t)rng_next();
        }
        frame_make(&f, &h, body);
        /* Sometimes hand over less than the whole frame. */
        size_t len = rng_next() % 16 == 0 ? (size_t)(rng_next() % (f.len + 1)) : f.len;

        enum tally_wire_direction dir = reply ? TALLY_WIRE_TO_CLIENT : TALLY_WIRE_TO_SERVER;
        struct tally_wire_header d;
        enum tally_wire_fault v = tally_wire_frame_decode(&d, f.bytes, len, dir);
        assert_true((uint32_t)v < TALLY_WIRE_FAULT_LIMIT);
        seen[v]++;
        if (v == TALLY_WIRE_FAULT_NONE) {
            /* What passes is within every bound the receiver relies on. */
            assert_true(d.body_size <= TALLY_WIRE_BODY_MAX);
            assert_true(len >= TALLY_WIRE_HEADER_SIZE + d.body_size);
            assert_true(tally_wire_op_known(d.op) || d.status != TALLY_WIRE_OK);
            assert_fault(tally_wire_body_size_check(&d), TALLY_WIRE_FAULT_NONE);
        } else if (!reply && tally_wire_fault_replies(v)) {
            assert_int_not_equal(tally_wire_fault_status(v), TALLY_WIRE_OK);
        }
    }
    /* The generator reached valid frames and the interesting rejections. */
    assert_true(seen[TALLY_WIRE_FAULT_NONE] > 1000);
    assert_true(seen[TALLY_WIRE_FAULT_BAD_FIELD] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_BAD_BODY_SIZE] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_UNKNOWN_OP] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_BAD_FLAGS] > 0);
    assert_true(seen[TALLY_WIRE_FAULT_TRUNCATED] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_empty_body_checksum_is_the_documented_constant),
        cmocka_unit_test(test_bad_magic_rejected),
        cmocka_unit_test(test_other_version_rejected_before_its_checksum),
        cmocka_unit_test(test_header_checksum_mismatch_rejected),
        cmocka_unit_test(test_body_checksum_mismatch_detected),
        cmocka_unit_test(test_oversized_body_rejected),
        cmocka_unit_test(test_unknown_op_rejected),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_frame_decode_takes_one_frame_from_a_stream),
        cmocka_unit_test(test_direction_flags_and_status_enforced),
        cmocka_unit_test(test_post_body_not_multiple_of_posting),
        cmocka_unit_test(test_post_at_body_is_a_prefix_then_postings),
        cmocka_unit_test(test_every_op_has_its_documented_body_sizes),
        cmocka_unit_test(test_request_field_rules),
        cmocka_unit_test(test_reply_field_rules),
        cmocka_unit_test(test_address_field),
        cmocka_unit_test(test_status_and_fault_tables),
        cmocka_unit_test(test_vectors_match),
        cmocka_unit_test(test_every_single_bit_flip_in_a_vector_is_caught),
        cmocka_unit_test(test_random_bytes_never_crash_and_are_rejected),
        cmocka_unit_test(test_random_sealed_frames_get_a_defined_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
