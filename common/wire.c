/* wire.c: encode frame headers and judge received frames (include/tally_wire.h).
 *
 * Design notes
 * ------------
 * The header struct is the wire image: little-endian, no padding (asserted in tally_wire.h), so
 * encoding is filling a struct and decoding is one memcpy out of the receive buffer, which also
 * frees the caller from any alignment the bytes happen to have. Body fields are read the same
 * way, by memcpy into a local record, never through a cast pointer into the buffer.
 *
 * Received bytes are never asserted: every path through the decoders ends in a fault from
 * TALLY_WIRE_FAULTS, and the order of the checks is part of the specification (docs/PROTOCOL.md),
 * so that two implementations give the same verdict on the same bytes. The body-shape rules of
 * every operation come from the one TALLY_WIRE_OPS table; the field rules are one small function
 * per operation. Assertions here guard only the caller's own arguments (a header to seal).
 *
 * Invariants: no function reads past `size` bytes of a buffer it is given, or past
 * 64 + body_size once the header has been judged and the caller vouches the body is there;
 * no function writes anywhere but into the output it is handed.
 */
#include "tally_wire.h"

#include <assert.h>
#include <string.h>

#include "hash.h"

/* ---------------------------------------------------------------------------------------------
 * Tables.
 * ------------------------------------------------------------------------------------------- */

/* The shape of a body: `fixed` bytes, then `item`-byte items, their count in [min, max]. */
struct wire_shape {
    uint32_t fixed;
    uint32_t item;
    uint32_t min;
    uint32_t max;
};

struct wire_op_info {
    const char *name;
    enum tally_wire_class cls;
    struct wire_shape request;
    struct wire_shape reply;
};

static const struct wire_op_info wire_ops[TALLY_WIRE_OP_LIMIT] = {
#define WIRE_OP_INFO_(name, value, cls, qf, qi, qmin, qmax, pf, pi, pmin, pmax, message)          \
    [value] = {#name,                                                                             \
               TALLY_WIRE_CLASS_##cls,                                                            \
               {(uint32_t)(qf), (uint32_t)(qi), (uint32_t)(qmin), (uint32_t)(qmax)},              \
               {(uint32_t)(pf), (uint32_t)(pi), (uint32_t)(pmin), (uint32_t)(pmax)}},
    TALLY_WIRE_OPS(WIRE_OP_INFO_)
#undef WIRE_OP_INFO_
};

#define WIRE_OP_MAX_(name, value, cls, qf, qi, qmin, qmax, pf, pi, pmin, pmax, message)           \
    _Static_assert(value > 0 && value < TALLY_WIRE_OP_LIMIT, #name " within TALLY_WIRE_OP_LIMIT");
TALLY_WIRE_OPS(WIRE_OP_MAX_)
#undef WIRE_OP_MAX_

#define WIRE_STATUS_MAX_(name, value, error, message)                                             \
    _Static_assert(value >= 0 && value < TALLY_WIRE_STATUS_LIMIT, #name " within the limit");
TALLY_WIRE_STATUSES(WIRE_STATUS_MAX_)
#undef WIRE_STATUS_MAX_

#define WIRE_FAULT_MAX_(name, value, status, reply, close, message)                               \
    _Static_assert(value >= 0 && value < TALLY_WIRE_FAULT_LIMIT, #name " within the limit");
TALLY_WIRE_FAULTS(WIRE_FAULT_MAX_)
#undef WIRE_FAULT_MAX_

bool tally_wire_op_known(uint32_t op)
{
    return op < TALLY_WIRE_OP_LIMIT && wire_ops[op].name != NULL;
}

const char *tally_wire_op_name(uint32_t op)
{
    return tally_wire_op_known(op) ? wire_ops[op].name : NULL;
}

const char *tally_wire_status_name(uint32_t status)
{
    switch (status) {
#define WIRE_STATUS_NAME_(name, value, error, message)                                            \
    case value:                                                                                   \
        return #name;
        TALLY_WIRE_STATUSES(WIRE_STATUS_NAME_)
#undef WIRE_STATUS_NAME_
    }
    return NULL;
}

const char *tally_wire_status_str(uint32_t status)
{
    switch (status) {
#define WIRE_STATUS_STR_(name, value, error, message)                                             \
    case value:                                                                                   \
        return message;
        TALLY_WIRE_STATUSES(WIRE_STATUS_STR_)
#undef WIRE_STATUS_STR_
    }
    return "unknown status";
}

int tally_wire_status_error(uint32_t status)
{
    switch (status) {
#define WIRE_STATUS_ERROR_(name, value, error, message)                                           \
    case value:                                                                                   \
        return error;
        TALLY_WIRE_STATUSES(WIRE_STATUS_ERROR_)
#undef WIRE_STATUS_ERROR_
    }
    return TALLY_EPROTOCOL;
}

const char *tally_wire_fault_name(enum tally_wire_fault f)
{
    switch (f) {
#define WIRE_FAULT_NAME_(name, value, status, reply, close, message)                              \
    case TALLY_WIRE_FAULT_##name:                                                                 \
        return #name;
        TALLY_WIRE_FAULTS(WIRE_FAULT_NAME_)
#undef WIRE_FAULT_NAME_
    }
    return NULL;
}

const char *tally_wire_fault_str(enum tally_wire_fault f)
{
    switch (f) {
#define WIRE_FAULT_STR_(name, value, status, reply, close, message)                               \
    case TALLY_WIRE_FAULT_##name:                                                                 \
        return message;
        TALLY_WIRE_FAULTS(WIRE_FAULT_STR_)
#undef WIRE_FAULT_STR_
    }
    return "unknown fault";
}

uint16_t tally_wire_fault_status(enum tally_wire_fault f)
{
    switch (f) {
#define WIRE_FAULT_STATUS_(name, value, status, reply, close, message)                            \
    case TALLY_WIRE_FAULT_##name:                                                                 \
        return TALLY_WIRE_##status;
        TALLY_WIRE_FAULTS(WIRE_FAULT_STATUS_)
#undef WIRE_FAULT_STATUS_
    }
    return TALLY_WIRE_BAD_REQUEST;
}

bool tally_wire_fault_replies(enum tally_wire_fault f)
{
    switch (f) {
#define WIRE_FAULT_REPLY_(name, value, status, reply, close, message)                             \
    case TALLY_WIRE_FAULT_##name:                                                                 \
        return reply;
        TALLY_WIRE_FAULTS(WIRE_FAULT_REPLY_)
#undef WIRE_FAULT_REPLY_
    }
    return false;
}

bool tally_wire_fault_closes(enum tally_wire_fault f)
{
    switch (f) {
#define WIRE_FAULT_CLOSE_(name, value, status, reply, close, message)                             \
    case TALLY_WIRE_FAULT_##name:                                                                 \
        return close;
        TALLY_WIRE_FAULTS(WIRE_FAULT_CLOSE_)
#undef WIRE_FAULT_CLOSE_
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding.
 * ------------------------------------------------------------------------------------------- */

uint64_t tally_wire_checksum(const void *bytes, size_t size)
{
    static const uint8_t none[1] = {0};
    return XXH3_64bits(size == 0 ? none : bytes, size);
}

void tally_wire_header_init(struct tally_wire_header *h, uint16_t op, const uint8_t *client_id,
                            uint64_t request)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, TALLY_WIRE_MAGIC, TALLY_WIRE_MAGIC_SIZE);
    h->version = TALLY_WIRE_VERSION;
    h->op = op;
    if (client_id != NULL)
        memcpy(h->client_id, client_id, sizeof(h->client_id));
    h->request = request;
}

void tally_wire_reply_init(struct tally_wire_header *h, const struct tally_wire_header *request,
                           uint16_t status, uint64_t index, uint32_t body_size)
{
    if (request != NULL)
        tally_wire_header_init(h, request->op, request->client_id, request->request);
    else
        tally_wire_header_init(h, 0, NULL, 0);
    h->flags = TALLY_WIRE_FLAG_REPLY;
    h->status = status;
    h->index = index;
    h->body_size = body_size;
}

void tally_wire_header_seal(struct tally_wire_header *h, const void *body)
{
    assert(h->body_size <= TALLY_WIRE_BODY_MAX);
    assert(h->body_size == 0 || body != NULL);
    h->checksum_body = tally_wire_checksum(body, h->body_size);
    h->checksum_header = tally_wire_checksum(h, TALLY_WIRE_HEADER_SEALED_SIZE);
}

/* ---------------------------------------------------------------------------------------------
 * Header.
 * ------------------------------------------------------------------------------------------- */

enum tally_wire_fault tally_wire_header_decode(struct tally_wire_header *out, const void *bytes,
                                               size_t size, enum tally_wire_direction dir)
{
    if (size < TALLY_WIRE_HEADER_SIZE)
        return TALLY_WIRE_FAULT_TRUNCATED;
    memcpy(out, bytes, sizeof(*out));
    if (memcmp(out->magic, TALLY_WIRE_MAGIC, TALLY_WIRE_MAGIC_SIZE) != 0)
        return TALLY_WIRE_FAULT_BAD_MAGIC;
    if (out->version != TALLY_WIRE_VERSION)
        return TALLY_WIRE_FAULT_BAD_VERSION;
    if (out->checksum_header != tally_wire_checksum(bytes, TALLY_WIRE_HEADER_SEALED_SIZE))
        return TALLY_WIRE_FAULT_BAD_HEADER_CHECKSUM;
    if (out->body_size > TALLY_WIRE_BODY_MAX)
        return TALLY_WIRE_FAULT_TOO_LARGE;

    bool reply = dir == TALLY_WIRE_TO_CLIENT;
    if (((out->flags & TALLY_WIRE_FLAG_REPLY) != 0) != reply)
        return TALLY_WIRE_FAULT_WRONG_DIRECTION;
    if ((out->flags & ~(reply ? TALLY_WIRE_FLAGS_REPLY : TALLY_WIRE_FLAGS_REQUEST)) != 0)
        return TALLY_WIRE_FAULT_BAD_FLAGS;
    bool status_ok = reply ? tally_wire_status_name(out->status) != NULL : out->status == 0;
    if (!status_ok)
        return TALLY_WIRE_FAULT_BAD_STATUS;
    /* An error reply may echo any op: the op it answers may be one this end does not know. */
    if (!tally_wire_op_known(out->op) && !(reply && out->status != TALLY_WIRE_OK))
        return TALLY_WIRE_FAULT_UNKNOWN_OP;
    return TALLY_WIRE_FAULT_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Body size.
 * ------------------------------------------------------------------------------------------- */

static enum tally_wire_fault wire_shape_check(const struct wire_shape *s, uint32_t size)
{
    if (size < s->fixed)
        return TALLY_WIRE_FAULT_BAD_BODY_SIZE;
    uint32_t rest = size - s->fixed;
    if (s->item == 0)
        return rest == 0 ? TALLY_WIRE_FAULT_NONE : TALLY_WIRE_FAULT_BAD_BODY_SIZE;
    if (rest % s->item != 0)
        return TALLY_WIRE_FAULT_BAD_BODY_SIZE;
    uint32_t count = rest / s->item;
    if (count > s->max)
        return TALLY_WIRE_FAULT_TOO_MANY_ITEMS;
    if (count < s->min)
        return TALLY_WIRE_FAULT_BAD_BODY_SIZE;
    return TALLY_WIRE_FAULT_NONE;
}

enum tally_wire_fault tally_wire_body_size_check(const struct tally_wire_header *h)
{
    bool reply = (h->flags & TALLY_WIRE_FLAG_REPLY) != 0;
    if (reply && h->status != TALLY_WIRE_OK) {
        uint32_t want = h->status == TALLY_WIRE_NOT_LEADER
                            ? (uint32_t)sizeof(struct tally_wire_not_leader)
                            : 0u;
        return h->body_size == want ? TALLY_WIRE_FAULT_NONE : TALLY_WIRE_FAULT_BAD_BODY_SIZE;
    }
    if (!tally_wire_op_known(h->op))
        return TALLY_WIRE_FAULT_UNKNOWN_OP;
    const struct wire_op_info *info = &wire_ops[h->op];
    return wire_shape_check(reply ? &info->reply : &info->request, h->body_size);
}

enum tally_wire_fault tally_wire_body_verify(const struct tally_wire_header *h, const void *body)
{
    if (tally_wire_checksum(body, h->body_size) != h->checksum_body)
        return TALLY_WIRE_FAULT_BAD_BODY_CHECKSUM;
    return TALLY_WIRE_FAULT_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Request field rules.
 * ------------------------------------------------------------------------------------------- */

static bool wire_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static bool wire_page_max_ok(uint32_t max, uint32_t limit)
{
    return max >= 1 && max <= limit;
}

/* The header rules of each class of operation. */
static bool wire_request_header_ok(const struct tally_wire_header *h)
{
    switch (wire_ops[h->op].cls) {
    case TALLY_WIRE_CLASS_SESSION:
        if (wire_zero(h->client_id, sizeof(h->client_id)))
            return false;
        if (h->index != 0 || (h->flags & TALLY_WIRE_FLAG_STALE_OK) != 0)
            return false;
        return h->op == TALLY_WIRE_OP_REGISTER ? h->request == 0 : h->request >= 1;
    case TALLY_WIRE_CLASS_REPLICA:
        return h->index == 0 && (h->flags & TALLY_WIRE_FLAG_STALE_OK) == 0;
    case TALLY_WIRE_CLASS_READ:
        return true;
    }
    return false;
}

/* The body rules of each operation; the body's size is already known to fit. */
static bool wire_request_body_ok(uint16_t op, const void *body)
{
    switch (op) {
    case TALLY_WIRE_OP_REGISTER: /* the label is opaque */
    case TALLY_WIRE_OP_POST:     /* postings are the ledger's to judge */
    case TALLY_WIRE_OP_STATUS:
        return true;
    case TALLY_WIRE_OP_PROGRAM: {
        struct tally_wire_program_request r;
        memcpy(&r, body, sizeof(r));
        return r.program != 0 && r.reserved == 0;
    }
    case TALLY_WIRE_OP_PROGRAMS: {
        struct tally_wire_programs_request r;
        memcpy(&r, body, sizeof(r));
        return wire_page_max_ok(r.max, TALLY_WIRE_PROGRAMS_MAX);
    }
    case TALLY_WIRE_OP_ACCOUNT: {
        struct tally_wire_account_request r;
        memcpy(&r, body, sizeof(r));
        return r.program != 0 && r.reserved == 0 && r.member != 0;
    }
    case TALLY_WIRE_OP_BALANCE_AT: {
        struct tally_wire_balance_request r;
        memcpy(&r, body, sizeof(r));
        return r.program != 0 && r.reserved == 0 && r.member != 0;
    }
    case TALLY_WIRE_OP_HISTORY: {
        struct tally_wire_history_request r;
        memcpy(&r, body, sizeof(r));
        return r.program != 0 && r.member != 0 &&
               wire_page_max_ok(r.max, TALLY_WIRE_HISTORY_MAX);
    }
    case TALLY_WIRE_OP_LOTS: {
        struct tally_wire_lots_request r;
        memcpy(&r, body, sizeof(r));
        return r.program != 0 && r.member != 0 && wire_page_max_ok(r.max, TALLY_WIRE_LOTS_MAX);
    }
    case TALLY_WIRE_OP_ENTRY: {
        struct tally_wire_entry_request r;
        memcpy(&r, body, sizeof(r));
        return r.seq != 0 && r.reserved == 0;
    }
    case TALLY_WIRE_OP_POSTING:
    case TALLY_WIRE_OP_HOLD: {
        struct tally_wire_id_request r;
        memcpy(&r, body, sizeof(r));
        return !wire_zero(r.id, sizeof(r.id));
    }
    case TALLY_WIRE_OP_POST_AT: { /* the prefix; the postings after it are the ledger's */
        struct tally_wire_post_at r;
        memcpy(&r, body, sizeof(r));
        return r.reserved == 0 && r.at <= TALLY_WIRE_AT_MAX;
    }
    case TALLY_WIRE_OP_LEDGER: {
        struct tally_wire_ledger_request r;
        memcpy(&r, body, sizeof(r));
        return r.reserved == 0 && wire_page_max_ok(r.max, TALLY_WIRE_LEDGER_CHUNK_MAX) &&
               (r.copy_id != 0 || r.offset == 0);
    }
    }
    return false;
}

enum tally_wire_fault tally_wire_request_check(const struct tally_wire_header *h,
                                               const void *body)
{
    if (!tally_wire_op_known(h->op))
        return TALLY_WIRE_FAULT_UNKNOWN_OP;
    if (!wire_request_header_ok(h) || !wire_request_body_ok(h->op, body))
        return TALLY_WIRE_FAULT_BAD_FIELD;
    return TALLY_WIRE_FAULT_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Reply field rules.
 * ------------------------------------------------------------------------------------------- */

bool tally_wire_address_valid(const char address[TALLY_WIRE_ADDRESS_SIZE])
{
    size_t n = 0;
    while (n < TALLY_WIRE_ADDRESS_SIZE && address[n] != '\0') {
        unsigned char c = (unsigned char)address[n];
        if (c < 0x21 || c > 0x7e)
            return false;
        n++;
    }
    if (n == TALLY_WIRE_ADDRESS_SIZE)
        return false; /* no NUL: 64 characters */
    return wire_zero(address + n, TALLY_WIRE_ADDRESS_SIZE - n);
}

int tally_wire_address_set(char address[TALLY_WIRE_ADDRESS_SIZE], const char *text)
{
    memset(address, 0, TALLY_WIRE_ADDRESS_SIZE);
    size_t n = strnlen(text, TALLY_WIRE_ADDRESS_SIZE);
    if (n >= TALLY_WIRE_ADDRESS_SIZE)
        return TALLY_ETOO_LARGE;
    memcpy(address, text, n);
    if (!tally_wire_address_valid(address)) {
        memset(address, 0, TALLY_WIRE_ADDRESS_SIZE);
        return TALLY_ECONFIG;
    }
    return 0;
}

/* A page header's count must account for exactly the items after it. */
static bool wire_page_ok(const struct tally_wire_header *h, const void *body, uint32_t item)
{
    struct tally_wire_page p;
    memcpy(&p, body, sizeof(p));
    if ((p.flags & ~TALLY_WIRE_PAGE_FLAGS_KNOWN) != 0)
        return false;
    return (uint64_t)p.count * item == h->body_size - sizeof(p);
}

static bool wire_reply_body_ok(const struct tally_wire_header *h, const void *body)
{
    switch (h->op) {
    case TALLY_WIRE_OP_PROGRAMS:
        return wire_page_ok(h, body, (uint32_t)sizeof(uint32_t));
    case TALLY_WIRE_OP_HISTORY:
        return wire_page_ok(h, body, (uint32_t)sizeof(struct tally_entry));
    case TALLY_WIRE_OP_LOTS:
        return wire_page_ok(h, body, (uint32_t)sizeof(struct tally_lot));
    case TALLY_WIRE_OP_ENTRY: {
        struct tally_entry en;
        memcpy(&en, body, sizeof(en));
        return en.tail_size == h->body_size - sizeof(en);
    }
    case TALLY_WIRE_OP_STATUS: {
        struct tally_wire_replica_status s;
        memcpy(&s, body, sizeof(s));
        return tally_wire_address_valid(s.address) && tally_wire_address_valid(s.leader_address);
    }
    case TALLY_WIRE_OP_LEDGER: {
        struct tally_wire_ledger_chunk c;
        memcpy(&c, body, sizeof(c));
        return c.copy_id != 0 && c.count == h->body_size - sizeof(c) && c.offset <= c.size &&
               c.count <= c.size - c.offset && wire_zero(c.reserved, sizeof(c.reserved));
    }
    }
    return true;
}

enum tally_wire_fault tally_wire_reply_check(const struct tally_wire_header *h, const void *body)
{
    if (h->status == TALLY_WIRE_NOT_LEADER) {
        struct tally_wire_not_leader nl;
        memcpy(&nl, body, sizeof(nl));
        return tally_wire_address_valid(nl.leader_address) ? TALLY_WIRE_FAULT_NONE
                                                           : TALLY_WIRE_FAULT_BAD_FIELD;
    }
    if (h->status != TALLY_WIRE_OK)
        return TALLY_WIRE_FAULT_NONE;
    return wire_reply_body_ok(h, body) ? TALLY_WIRE_FAULT_NONE : TALLY_WIRE_FAULT_BAD_FIELD;
}

/* ---------------------------------------------------------------------------------------------
 * Whole frames.
 * ------------------------------------------------------------------------------------------- */

enum tally_wire_fault tally_wire_frame_decode(struct tally_wire_header *out, const void *bytes,
                                              size_t size, enum tally_wire_direction dir)
{
    enum tally_wire_fault f = tally_wire_header_decode(out, bytes, size, dir);
    if (f != TALLY_WIRE_FAULT_NONE)
        return f;
    if (size - TALLY_WIRE_HEADER_SIZE < out->body_size)
        return TALLY_WIRE_FAULT_TRUNCATED;
    if ((f = tally_wire_body_size_check(out)) != TALLY_WIRE_FAULT_NONE)
        return f;
    const uint8_t *body = (const uint8_t *)bytes + TALLY_WIRE_HEADER_SIZE;
    if ((f = tally_wire_body_verify(out, body)) != TALLY_WIRE_FAULT_NONE)
        return f;
    return dir == TALLY_WIRE_TO_SERVER ? tally_wire_request_check(out, body)
                                       : tally_wire_reply_check(out, body);
}
