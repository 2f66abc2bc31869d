/* tally_wire.h: the frame layer of tally's binary wire protocol (header, operations, bodies).
 *
 * What it guarantees
 * ------------------
 * Every message between a client and a replica, in either direction, is one frame: a 64-byte
 * header followed by body_size bytes of body. Both parts carry an XXH3-64 checksum, so a frame
 * damaged in transit is detected before any of it is believed; every field has a fixed size and
 * offset, little-endian, so a body of postings is handed to the ledger as it arrived, with no
 * parsing. Every size is bounded by a named limit below, so a receiver can hold any frame in one
 * buffer allocated at start-up. The byte tables in this header are the specification;
 * docs/PROTOCOL.md quotes them, adds the sequencing rules and the worked test vectors
 * (tests/common/wire_vectors.txt), and is what a third party implements against.
 *
 * The functions in common/wire.c encode headers and judge received bytes. They are pure: no I/O,
 * no allocation, no global state, and they never assert on received bytes: whatever arrives gets
 * a verdict from enum tally_wire_fault, and that verdict says which status to answer with and
 * whether the connection must close (TALLY_WIRE_FAULTS below).
 *
 * What it does not do
 * -------------------
 * It does not read or write sockets, keep sessions or cache replies: that is tallyd's (server/)
 * and libtally's (client/) work, under the rules in docs/PROTOCOL.md ("Sequencing"). XXH3 catches
 * damage, not forgery: anyone on the path can recompute both checksums (BRIEF §3). It does not
 * validate postings: a posting's business validity is a per-posting result of the ledger
 * (tally_results.h), never a frame error.
 *
 * The protocol version is TALLY_WIRE_VERSION. Numbers on the wire (operations, statuses, flags)
 * are append-only within a version; any change of a layout is a new version. The magic and the
 * version stay at offsets 0 and 4 in every version, so any two versions can tell each other apart.
 */
#ifndef TALLY_WIRE_H
#define TALLY_WIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally_errors.h"
#include "tally_records.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tally's records and frames are little-endian in memory and on the wire"
#endif
#endif

/* ---------------------------------------------------------------------------------------------
 * Limits. Each one is a promise to whoever sizes a buffer for a frame.
 * ------------------------------------------------------------------------------------------- */

/* "TLY1": the first four bytes of every frame, in every version. */
#define TALLY_WIRE_MAGIC "TLY1"
#define TALLY_WIRE_MAGIC_SIZE 4u

/* The version this header describes. */
#define TALLY_WIRE_VERSION 1u

/* Size of a frame header, in every frame, both directions. */
#define TALLY_WIRE_HEADER_SIZE 64u

/* Largest frame, header included: 1 MiB. A receiver keeps one buffer of this size per
 * connection (allocated at start-up; io_uring's provided-buffer rings want a power of two), and
 * any valid frame fits in it whole, so a frame is never reassembled from pieces held elsewhere.
 * It is the size tally_records.h promises for "a full batch plus its frame header". */
#define TALLY_WIRE_FRAME_MAX (UINT32_C(1) << 20)

/* Largest body: 1 MiB minus the header, 1,048,512 bytes. The largest body the protocol defines is
 * a full POST_AT, 16 + TALLY_BATCH_MAX x 128 = 1,048,336 bytes (a full POST is 1,048,320); every
 * other request and reply is far smaller (the assertions after the structs below check each). A
 * header announcing more is refused before a byte of its body is read (TOO_LARGE), and the
 * connection is closed: a peer must never make a replica buffer, or skip, more than one frame's
 * worth of bytes. */
#define TALLY_WIRE_BODY_MAX (TALLY_WIRE_FRAME_MAX - TALLY_WIRE_HEADER_SIZE)

/* Entries in one HISTORY reply: 1,024 x 176 bytes = 176 KiB. Enough for a screen, a statement
 * or an export chunk; small enough that a replica answering many history reads at once from its
 * fixed reply buffers stays far below the frame maximum. Longer histories page with before_seq. */
#define TALLY_WIRE_HISTORY_MAX 1024u

/* Lots in one LOTS reply: 1,024 x 64 bytes = 64 KiB, the same as TALLY_LINEAGE_MAX, so one page
 * always shows every lot a single redemption may consume. More lots page with the after cursor. */
#define TALLY_WIRE_LOTS_MAX 1024u

/* Program ids in one PROGRAMS reply: 1,024 x 4 bytes. A chain runs a handful of programs (brands,
 * countries); a page this size is one reply for every real deployment, and pages otherwise. */
#define TALLY_WIRE_PROGRAMS_MAX 1024u

/* A replica's address as text, "host:port" (IPv6: "[::1]:7401"), NUL-padded in a fixed field:
 * at most 63 characters, so byte 63 is always NUL. All zero: unknown. */
#define TALLY_WIRE_ADDRESS_SIZE 64u

/* A client's label for the server's logs ("till-0042"), NUL-padded, opaque to the protocol. */
#define TALLY_WIRE_LABEL_SIZE 32u

/* Data bytes in one LEDGER reply: 512 KiB. A ledger copy (gigabytes) crosses in many chunks, each
 * one frame of at most half the frame maximum, so a replica serving a copy to a catching-up peer
 * queues at most a few of them per connection. */
#define TALLY_WIRE_LEDGER_CHUNK_MAX (UINT32_C(1) << 19)

/* Latest ledger time a POST_AT may ask for: 9999-12-31T23:59:59.999Z, in ms since the epoch. The
 * ledger's civil-time arithmetic (expiry at the end of a month, quarter or year; tier windows) is
 * defined for years 1970 .. 9999 (common/calendar.h), and a time near UINT64_MAX would overflow
 * the due times the ledger derives from it (a lot's expiry, a pending window's end). A wall clock
 * never comes near it; a client-driven clock must be kept below it, so the wire refuses more. */
#define TALLY_WIRE_AT_MAX UINT64_C(253402300799999)

/* The checksum of an empty body: XXH3-64 (seed 0) of zero bytes. */
#define TALLY_WIRE_CHECKSUM_EMPTY UINT64_C(0x2D06800538D394C2)

/* ---------------------------------------------------------------------------------------------
 * struct tally_wire_header: 64 bytes, the first bytes of every frame.
 *
 *   offset size field            meaning
 *        0    4 magic            "TLY1" (54 4C 59 31)
 *        4    2 version          TALLY_WIRE_VERSION (1)
 *        6    2 op               enum tally_wire_op; a reply carries its request's op
 *        8    2 flags            enum tally_wire_flag: STALE_OK (requests), REPLY (replies)
 *       10    2 status           requests: 0; replies: enum tally_wire_status (0: OK)
 *       12    4 body_size        bytes of body after the header, 0 .. TALLY_WIRE_BODY_MAX
 *       16   16 client_id        the session: a 128-bit id the client chose (zero: no session)
 *       32    8 request          request number, chosen by the client; echoed in the reply
 *       40    8 index            requests: reads: the least applied index the answer may be
 *                                taken at (0: any); other ops: 0.
 *                                replies: POST: the Raft index of the entry holding the batch;
 *                                reads: the applied index the answer was taken at; otherwise
 *                                the replica's applied index when it answered (0: unknown)
 *       48    8 checksum_body    XXH3-64, seed 0, of the body_size bytes of body
 *                                (empty body: TALLY_WIRE_CHECKSUM_EMPTY)
 *       56    8 checksum_header  XXH3-64, seed 0, of header bytes [0, 56): everything before it,
 *                                checksum_body included, so the header also seals the body
 *
 * A receiver checks, in this order: at least 64 bytes; magic; version (before the checksum: the
 * layout after offset 8 belongs to the version); checksum_header; body_size; flags; status; op.
 * ------------------------------------------------------------------------------------------- */
struct tally_wire_header {
    uint8_t magic[4];
    uint16_t version;
    uint16_t op;
    uint16_t flags;
    uint16_t status;
    uint32_t body_size;
    uint8_t client_id[16];
    uint64_t request;
    uint64_t index;
    uint64_t checksum_body;
    uint64_t checksum_header;
};
_Static_assert(sizeof(struct tally_wire_header) == TALLY_WIRE_HEADER_SIZE, "header is 64 bytes");
_Static_assert(offsetof(struct tally_wire_header, version) == 4, "version at 4");
_Static_assert(offsetof(struct tally_wire_header, op) == 6, "op at 6");
_Static_assert(offsetof(struct tally_wire_header, flags) == 8, "flags at 8");
_Static_assert(offsetof(struct tally_wire_header, status) == 10, "status at 10");
_Static_assert(offsetof(struct tally_wire_header, body_size) == 12, "body_size at 12");
_Static_assert(offsetof(struct tally_wire_header, client_id) == 16, "client_id at 16");
_Static_assert(offsetof(struct tally_wire_header, request) == 32, "request at 32");
_Static_assert(offsetof(struct tally_wire_header, index) == 40, "index at 40");
_Static_assert(offsetof(struct tally_wire_header, checksum_body) == 48, "checksum_body at 48");
_Static_assert(offsetof(struct tally_wire_header, checksum_header) == 56,
               "checksum_header at 56");

/* The bytes checksum_header covers. */
#define TALLY_WIRE_HEADER_SEALED_SIZE 56u

/* Header flags. A request may carry only STALE_OK; a reply carries exactly REPLY. */
enum tally_wire_flag {
    /* Request, read operations only: a follower may answer from its own applied state, provided
     * it has applied at least `index`; without it only the leader answers (NOT_LEADER). */
    TALLY_WIRE_FLAG_STALE_OK = 1u << 0,
    /* Set in every reply and in no request, so neither is ever taken for the other. */
    TALLY_WIRE_FLAG_REPLY = 1u << 15,
};
#define TALLY_WIRE_FLAGS_REQUEST 0x0001u
#define TALLY_WIRE_FLAGS_REPLY 0x8000u

/* ---------------------------------------------------------------------------------------------
 * Request bodies (fixed size; a field named reserved must be zero).
 * ------------------------------------------------------------------------------------------- */

/* REGISTER request, 32 bytes.
 *   offset size field  meaning
 *        0   32 label  the client's name for the server's logs, NUL-padded; may be all zero */
struct tally_wire_register {
    char label[TALLY_WIRE_LABEL_SIZE];
};
_Static_assert(sizeof(struct tally_wire_register) == 32, "register request is 32 bytes");

/* PROGRAM request, 8 bytes.
 *   offset size field     meaning
 *        0    4 program   nonzero
 *        4    4 reserved  zero */
struct tally_wire_program_request {
    uint32_t program;
    uint32_t reserved;
};
_Static_assert(sizeof(struct tally_wire_program_request) == 8, "program request is 8 bytes");

/* PROGRAMS request, 8 bytes.
 *   offset size field  meaning
 *        0    4 after  list programs with ids above this (0: from the first)
 *        4    4 max    1 .. TALLY_WIRE_PROGRAMS_MAX */
struct tally_wire_programs_request {
    uint32_t after;
    uint32_t max;
};
_Static_assert(sizeof(struct tally_wire_programs_request) == 8, "programs request is 8 bytes");

/* ACCOUNT request, 16 bytes.
 *   offset size field     meaning
 *        0    4 program   nonzero
 *        4    4 reserved  zero
 *        8    8 member    nonzero: a member id, or a TALLY_SYS_* account */
struct tally_wire_account_request {
    uint32_t program;
    uint32_t reserved;
    uint64_t member;
};
_Static_assert(sizeof(struct tally_wire_account_request) == 16, "account request is 16 bytes");
_Static_assert(offsetof(struct tally_wire_account_request, member) == 8, "member at 8");

/* BALANCE_AT request, 24 bytes.
 *   offset size field     meaning
 *        0    4 program   nonzero
 *        4    4 reserved  zero
 *        8    8 member    nonzero
 *       16    8 at        the instant asked about (ms since the epoch): after every entry <= at */
struct tally_wire_balance_request {
    uint32_t program;
    uint32_t reserved;
    uint64_t member;
    uint64_t at;
};
_Static_assert(sizeof(struct tally_wire_balance_request) == 24, "balance request is 24 bytes");
_Static_assert(offsetof(struct tally_wire_balance_request, at) == 16, "at at 16");

/* HISTORY request, 24 bytes.
 *   offset size field       meaning
 *        0    4 program     nonzero
 *        4    4 max         1 .. TALLY_WIRE_HISTORY_MAX entries wanted
 *        8    8 member      nonzero
 *       16    8 before_seq  entries strictly older than this seq, newest first (0: the newest) */
struct tally_wire_history_request {
    uint32_t program;
    uint32_t max;
    uint64_t member;
    uint64_t before_seq;
};
_Static_assert(sizeof(struct tally_wire_history_request) == 24, "history request is 24 bytes");
_Static_assert(offsetof(struct tally_wire_history_request, before_seq) == 16, "before at 16");

/* LOTS request, 32 bytes. Lots come in consumption order: (expires_at, lot_id) ascending.
 *   offset size field             meaning
 *        0    4 program           nonzero
 *        4    4 max               1 .. TALLY_WIRE_LOTS_MAX lots wanted
 *        8    8 member            nonzero
 *       16    8 after_expires_at  cursor: lots strictly after (after_expires_at, after_lot_id)
 *       24    8 after_lot_id      in that order; both 0: from the first */
struct tally_wire_lots_request {
    uint32_t program;
    uint32_t max;
    uint64_t member;
    uint64_t after_expires_at;
    uint64_t after_lot_id;
};
_Static_assert(sizeof(struct tally_wire_lots_request) == 32, "lots request is 32 bytes");
_Static_assert(offsetof(struct tally_wire_lots_request, after_lot_id) == 24, "after_lot at 24");

/* ENTRY request, 16 bytes.
 *   offset size field     meaning
 *        0    8 seq       nonzero: the entry's sequence number
 *        8    8 reserved  zero */
struct tally_wire_entry_request {
    uint64_t seq;
    uint64_t reserved;
};
_Static_assert(sizeof(struct tally_wire_entry_request) == 16, "entry request is 16 bytes");

/* POSTING and HOLD requests, 16 bytes.
 *   offset size field  meaning
 *        0   16 id     nonzero: the posting id (HOLD: the id of the HOLD posting) */
struct tally_wire_id_request {
    uint8_t id[16];
};
_Static_assert(sizeof(struct tally_wire_id_request) == 16, "id request is 16 bytes");

/* POST_AT request: this 16-byte prefix, then N postings of 128 bytes, 1 <= N <= TALLY_BATCH_MAX
 * (the body of a POST). Served only by a cluster whose replicas run with tallyd --clock client
 * (others answer CLOCK_MODE): the postings are applied in a Raft entry stamped
 * max(the ledger's time, at), never earlier than the entries before it.
 *   offset size field     meaning
 *        0    8 at        the ledger time asked for (ms since the epoch), 0 .. TALLY_WIRE_AT_MAX;
 *                         0 or any time at or before the ledger's: the ledger's time (as POST)
 *        8    8 reserved  zero */
struct tally_wire_post_at {
    uint64_t at;
    uint64_t reserved;
};
_Static_assert(sizeof(struct tally_wire_post_at) == 16, "post_at prefix is 16 bytes");
_Static_assert(offsetof(struct tally_wire_post_at, reserved) == 8, "reserved at 8");

/* ---------------------------------------------------------------------------------------------
 * Reply bodies of status OK. Records of tally_records.h cross the wire as they are; these are
 * the ones the wire adds. Reply bodies of other statuses: see TALLY_WIRE_STATUSES.
 * ------------------------------------------------------------------------------------------- */

/* REGISTER reply: the session's state, 64 bytes.
 *   offset size field         meaning
 *        0   16 cluster_id    the cluster's id: a client configured with another one must stop
 *       16    8 last_request  the highest request number of a POST this session has answered
 *                             (0: the session is new). The client's POST in flight, if any,
 *                             was answered iff its number is <= last_request.
 *       24    4 batch_max     postings per POST this server accepts (TALLY_BATCH_MAX)
 *       28    4 body_max      body bytes this server accepts (TALLY_WIRE_BODY_MAX)
 *       32   32 reserved      zero */
struct tally_wire_session {
    uint8_t cluster_id[16];
    uint64_t last_request;
    uint32_t batch_max;
    uint32_t body_max;
    uint8_t reserved[32];
};
_Static_assert(sizeof(struct tally_wire_session) == 64, "session is 64 bytes");
_Static_assert(offsetof(struct tally_wire_session, last_request) == 16, "last_request at 16");
_Static_assert(offsetof(struct tally_wire_session, batch_max) == 24, "batch_max at 24");

/* Roles of a replica (STATUS reply). */
enum tally_wire_role {
    TALLY_WIRE_ROLE_UNAVAILABLE = 0, /* starting, stopping, or not a voter of the cluster */
    TALLY_WIRE_ROLE_FOLLOWER = 1,
    TALLY_WIRE_ROLE_CANDIDATE = 2,
    TALLY_WIRE_ROLE_LEADER = 3,
};

/* STATUS reply: the answering replica, 240 bytes.
 *   offset size field           meaning
 *        0   16 cluster_id      the cluster's id
 *       16    8 replica_id      this replica's Raft id
 *       24    8 leader_id       the leader's Raft id as this replica knows it (0: unknown)
 *       32    8 term            current Raft term
 *       40    8 commit_index    highest Raft index known committed
 *       48    8 applied_index   highest Raft index applied to the ledger
 *       56    8 last_timestamp  effective time of the newest applied batch (ms)
 *       64    8 entries         sequence number of the newest ledger entry (0: none)
 *       72    8 chain_head      hash of the newest entry (the XXH3 chain)
 *       80   16 digest          state digest at applied_index (equal on every replica: law 6)
 *       96    4 role            enum tally_wire_role
 *      100    4 voters          voting members in the configuration this replica knows
 *      104    4 sessions        client sessions this replica holds
 *      108    4 reserved        zero
 *      112   64 address         this replica's client address, "host:port", NUL-padded
 *      176   64 leader_address  the leader's client address (all zero: unknown) */
struct tally_wire_replica_status {
    uint8_t cluster_id[16];
    uint64_t replica_id;
    uint64_t leader_id;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_timestamp;
    uint64_t entries;
    uint64_t chain_head;
    uint8_t digest[16];
    uint32_t role;
    uint32_t voters;
    uint32_t sessions;
    uint32_t reserved;
    char address[TALLY_WIRE_ADDRESS_SIZE];
    char leader_address[TALLY_WIRE_ADDRESS_SIZE];
};
_Static_assert(sizeof(struct tally_wire_replica_status) == 240, "status reply is 240 bytes");
_Static_assert(offsetof(struct tally_wire_replica_status, digest) == 80, "digest at 80");
_Static_assert(offsetof(struct tally_wire_replica_status, role) == 96, "role at 96");
_Static_assert(offsetof(struct tally_wire_replica_status, address) == 112, "address at 112");
_Static_assert(offsetof(struct tally_wire_replica_status, leader_address) == 176,
               "leader_address at 176");

/* PROGRAM reply, 152 bytes: the configuration it was created with, and its totals now.
 *   offset size field   meaning
 *        0   96 config  struct tally_program_config
 *       96   56 totals  struct tally_program_totals */
struct tally_wire_program_reply {
    struct tally_program_config config;
    struct tally_program_totals totals;
};
_Static_assert(sizeof(struct tally_wire_program_reply) == 152, "program reply is 152 bytes");
_Static_assert(offsetof(struct tally_wire_program_reply, totals) == 96, "totals at 96");

/* Page header, 8 bytes, first in PROGRAMS, HISTORY and LOTS replies; `count` items follow.
 *   offset size field  meaning
 *        0    4 count  items after this header, 0 .. the operation's page maximum
 *        4    4 flags  enum tally_wire_page_flag */
struct tally_wire_page {
    uint32_t count;
    uint32_t flags;
};
_Static_assert(sizeof(struct tally_wire_page) == 8, "page header is 8 bytes");

enum tally_wire_page_flag {
    TALLY_WIRE_PAGE_MORE = 1u << 0, /* more items exist past the last one: ask again from it */
};
#define TALLY_WIRE_PAGE_FLAGS_KNOWN 0x1u

/* POSTING reply, 32 bytes: what became of a posting id (mirrors engine_posting_info).
 *   offset size field        meaning
 *        0    4 code         enum tally_result_code the posting got
 *        4    2 kind         enum tally_kind
 *        6    2 reserved     zero
 *        8    8 seq          its first entry (0 for a failed posting)
 *       16    4 entry_count  entries it produced
 *       20    4 reserved2    zero
 *       24    8 timestamp    effective time of its batch */
struct tally_wire_posting_info {
    uint32_t code;
    uint16_t kind;
    uint16_t reserved;
    uint64_t seq;
    uint32_t entry_count;
    uint32_t reserved2;
    uint64_t timestamp;
};
_Static_assert(sizeof(struct tally_wire_posting_info) == 32, "posting info is 32 bytes");
_Static_assert(offsetof(struct tally_wire_posting_info, seq) == 8, "seq at 8");
_Static_assert(offsetof(struct tally_wire_posting_info, timestamp) == 24, "timestamp at 24");

/* HOLD reply, 56 bytes: a hold by the id of its HOLD posting (mirrors engine_hold_info).
 *   offset size field         meaning
 *        0    8 seq           the HOLD entry
 *        8    4 program
 *       12    4 status        enum tally_hold_status
 *       16    8 member
 *       24    8 amount        points held at the start
 *       32    8 captured      points captured so far
 *       40    8 timeout_at    when an unresolved hold is released
 *       48    8 resolved_seq  the entry that captured, released or timed it out (0: active) */
struct tally_wire_hold_info {
    uint64_t seq;
    uint32_t program;
    uint32_t status;
    uint64_t member;
    uint64_t amount;
    uint64_t captured;
    uint64_t timeout_at;
    uint64_t resolved_seq;
};
_Static_assert(sizeof(struct tally_wire_hold_info) == 56, "hold info is 56 bytes");
_Static_assert(offsetof(struct tally_wire_hold_info, member) == 16, "member at 16");
_Static_assert(offsetof(struct tally_wire_hold_info, resolved_seq) == 48, "resolved at 48");

/* LEDGER request, 32 bytes: a chunk of a copy of the answering replica's ledger file (catch-up:
 * docs/ARCHITECTURE.md). A copy is made once, then read in chunks by offset; a replica keeps one
 * copy at a time, and drops it when it has not been read for a while.
 *   offset size field      meaning
 *        0    8 copy_id    0: the current copy (made now if there is none holding min_index), and
 *                          then offset must be 0; otherwise the copy_id of an earlier reply
 *        8    8 offset     first byte wanted
 *       16    8 min_index  the least applied index the copy must hold (0: any)
 *       24    4 max        most data bytes wanted, 1 .. TALLY_WIRE_LEDGER_CHUNK_MAX
 *       28    4 reserved   zero
 * Statuses besides OK: BUSY (the copy is being made: ask again shortly), STALE (this replica has
 * not applied min_index), NOT_FOUND (no copy has that copy_id any more: start again with 0),
 * BAD_REQUEST (offset beyond the copy's size), INTERNAL (the copy could not be made). */
struct tally_wire_ledger_request {
    uint64_t copy_id;
    uint64_t offset;
    uint64_t min_index;
    uint32_t max;
    uint32_t reserved;
};
_Static_assert(sizeof(struct tally_wire_ledger_request) == 32, "ledger request is 32 bytes");

/* LEDGER reply, 64 bytes, then `count` bytes of the copy from `offset` on.
 *   offset size field          meaning
 *        0    8 copy_id        the copy (nonzero; a new one after every restart of the replica)
 *        8    8 size           the copy's size in bytes: a whole LMDB data.mdb
 *       16    8 offset         of the first data byte (the request's)
 *       24    8 applied_index  the copy holds at least this applied index (>= min_index)
 *       32   16 hash           XXH3-128 (seed 0) of the whole copy: low 64 bits, then high
 *       48    4 count          data bytes after these 64: body_size - 64, and offset + count <=
 *                              size; fewer than max only at the end of the copy
 *       52   12 reserved       zero */
struct tally_wire_ledger_chunk {
    uint64_t copy_id;
    uint64_t size;
    uint64_t offset;
    uint64_t applied_index;
    uint64_t hash_lo;
    uint64_t hash_hi;
    uint32_t count;
    uint8_t reserved[12];
};
_Static_assert(sizeof(struct tally_wire_ledger_chunk) == 64, "ledger chunk header is 64 bytes");
_Static_assert(offsetof(struct tally_wire_ledger_chunk, hash_lo) == 32, "hash at 32");
_Static_assert(offsetof(struct tally_wire_ledger_chunk, count) == 48, "count at 48");

/* NOT_LEADER reply body, 64 bytes: where the leader is, "host:port" NUL-padded (all zero: no
 * leader known yet; wait a moment and retry any replica). */
struct tally_wire_not_leader {
    char leader_address[TALLY_WIRE_ADDRESS_SIZE];
};
_Static_assert(sizeof(struct tally_wire_not_leader) == 64, "not-leader body is 64 bytes");

/* Records of tally_records.h that cross the wire without a byte table of their own there. */
_Static_assert(sizeof(struct tally_balance) == 40, "balance is 40 bytes");
_Static_assert(offsetof(struct tally_balance, available) == 16, "available at 16");
_Static_assert(offsetof(struct tally_balance, held) == 32, "held at 32");
_Static_assert(sizeof(struct tally_program_totals) == 56, "program totals are 56 bytes");
_Static_assert(offsetof(struct tally_program_totals, members) == 8, "members at 8");
_Static_assert(offsetof(struct tally_program_totals, outstanding) == 48, "outstanding at 48");
_Static_assert(offsetof(struct tally_account, qv) == 128, "qv at 128");
_Static_assert(offsetof(struct tally_account, holds_active) == 224, "holds_active at 224");
_Static_assert(offsetof(struct tally_account, last_seq) == 232, "last_seq at 232");
_Static_assert(offsetof(struct tally_lot, remaining) == 40, "remaining at 40");
_Static_assert(offsetof(struct tally_lot, activate_at) == 56, "activate_at at 56");

/* Every body the protocol defines fits TALLY_WIRE_BODY_MAX. */
_Static_assert((uint64_t)TALLY_BATCH_MAX * sizeof(struct tally_posting) <= TALLY_WIRE_BODY_MAX,
               "a full POST fits one frame");
_Static_assert(sizeof(struct tally_wire_post_at) +
                       (uint64_t)TALLY_BATCH_MAX * sizeof(struct tally_posting) <=
                   TALLY_WIRE_BODY_MAX,
               "a full POST_AT fits one frame");
_Static_assert(sizeof(struct tally_wire_page) +
                       (uint64_t)TALLY_WIRE_HISTORY_MAX * sizeof(struct tally_entry) <=
                   TALLY_WIRE_BODY_MAX,
               "a full HISTORY page fits one frame");
_Static_assert(sizeof(struct tally_wire_page) +
                       (uint64_t)TALLY_WIRE_LOTS_MAX * sizeof(struct tally_lot) <=
                   TALLY_WIRE_BODY_MAX,
               "a full LOTS page fits one frame");
_Static_assert(sizeof(struct tally_entry) +
                       (uint64_t)TALLY_LINEAGE_MAX * sizeof(struct tally_lot_ref) <=
                   TALLY_WIRE_BODY_MAX,
               "an entry with its longest tail fits one frame");

/* ---------------------------------------------------------------------------------------------
 * Operations. Numbers are on the wire: append only; 0 is never an operation.
 *
 * Classes: SESSION operations go to the leader and need a registered client id (nonzero),
 * index 0 and no STALE_OK; READ operations go to the leader, or to any replica with STALE_OK;
 * REPLICA operations are answered by whichever replica receives it (index 0, no STALE_OK).
 *
 * Body shapes, requests and OK replies alike: `fixed` bytes, then `item`-byte items, their count
 * in [min, max] (item 0: exactly `fixed` bytes). A count above max is TOO_LARGE; any other
 * misfit is BAD_REQUEST.
 *
 * X(name, value, class,
 *   request fixed, request item, request min, request max,
 *   reply fixed, reply item, reply min, reply max, message)
 * ------------------------------------------------------------------------------------------- */
enum tally_wire_class {
    TALLY_WIRE_CLASS_SESSION = 1,
    TALLY_WIRE_CLASS_READ = 2,
    TALLY_WIRE_CLASS_REPLICA = 3,
};

#define TALLY_WIRE_OPS(X)                                                                         \
    X(REGISTER, 1, SESSION, sizeof(struct tally_wire_register), 0, 0, 0,                          \
      sizeof(struct tally_wire_session), 0, 0, 0, "open or resume the session of a client id")    \
    X(POST, 2, SESSION, 0, sizeof(struct tally_posting), 1, TALLY_BATCH_MAX, 0,                   \
      sizeof(struct tally_result), 1, TALLY_BATCH_MAX, "apply a batch of postings")               \
    X(STATUS, 3, REPLICA, 0, 0, 0, 0, sizeof(struct tally_wire_replica_status), 0, 0, 0,          \
      "role and state of the answering replica")                                                  \
    X(PROGRAM, 4, READ, sizeof(struct tally_wire_program_request), 0, 0, 0,                       \
      sizeof(struct tally_wire_program_reply), 0, 0, 0, "a program's configuration and totals")   \
    X(PROGRAMS, 5, READ, sizeof(struct tally_wire_programs_request), 0, 0, 0,                     \
      sizeof(struct tally_wire_page), sizeof(uint32_t), 0, TALLY_WIRE_PROGRAMS_MAX,               \
      "program ids, in id order")                                                                 \
    X(ACCOUNT, 6, READ, sizeof(struct tally_wire_account_request), 0, 0, 0,                       \
      sizeof(struct tally_account), 0, 0, 0, "an account's materialised state")                   \
    X(BALANCE_AT, 7, READ, sizeof(struct tally_wire_balance_request), 0, 0, 0,                    \
      sizeof(struct tally_balance), 0, 0, 0, "a member's buckets at a past instant")              \
    X(HISTORY, 8, READ, sizeof(struct tally_wire_history_request), 0, 0, 0,                       \
      sizeof(struct tally_wire_page), sizeof(struct tally_entry), 0, TALLY_WIRE_HISTORY_MAX,      \
      "a member's entries, newest first (fixed parts)")                                           \
    X(LOTS, 9, READ, sizeof(struct tally_wire_lots_request), 0, 0, 0,                             \
      sizeof(struct tally_wire_page), sizeof(struct tally_lot), 0, TALLY_WIRE_LOTS_MAX,           \
      "a member's open lots, soonest-expiring first")                                             \
    X(ENTRY, 10, READ, sizeof(struct tally_wire_entry_request), 0, 0, 0,                          \
      sizeof(struct tally_entry), sizeof(struct tally_lot_ref), 0, TALLY_LINEAGE_MAX,             \
      "one entry with its whole tail")                                                            \
    X(POSTING, 11, READ, sizeof(struct tally_wire_id_request), 0, 0, 0,                           \
      sizeof(struct tally_wire_posting_info), 0, 0, 0, "what became of a posting id")             \
    X(HOLD, 12, READ, sizeof(struct tally_wire_id_request), 0, 0, 0,                              \
      sizeof(struct tally_wire_hold_info), 0, 0, 0, "a hold, by its HOLD posting's id")        \
    X(LEDGER, 13, REPLICA, sizeof(struct tally_wire_ledger_request), 0, 0, 0,                     \
      sizeof(struct tally_wire_ledger_chunk), 1, 0, TALLY_WIRE_LEDGER_CHUNK_MAX,                  \
      "a chunk of a copy of the replica's ledger file (catch-up, backups)")                      \
    X(POST_AT, 14, SESSION, sizeof(struct tally_wire_post_at), sizeof(struct tally_posting), 1,   \
      TALLY_BATCH_MAX, 0, sizeof(struct tally_result), 1, TALLY_BATCH_MAX,                        \
      "apply a batch of postings at a ledger time the client gives (tallyd --clock client)")

enum tally_wire_op {
#define TALLY_WIRE_OP_ENUM_(name, value, cls, qf, qi, qmin, qmax, pf, pi, pmin, pmax, message)    \
    TALLY_WIRE_OP_##name = value,
    TALLY_WIRE_OPS(TALLY_WIRE_OP_ENUM_)
#undef TALLY_WIRE_OP_ENUM_
};

/* Largest operation value + 1. */
#define TALLY_WIRE_OP_LIMIT 15u

/* ---------------------------------------------------------------------------------------------
 * Statuses of a reply (header field status). 0 is OK; every other status is an error reply
 * whose body is empty, except NOT_LEADER's (struct tally_wire_not_leader). Numbers are on the
 * wire: append only. `error` is the tally_errors.h code libtally turns the status into: the one
 * boundary where wire statuses become system errors.
 *
 * What a POST client does with each is in docs/PROTOCOL.md ("Error replies").
 *
 * X(name, value, error, message)
 * ------------------------------------------------------------------------------------------- */
#define TALLY_WIRE_STATUSES(X)                                                                    \
    X(OK, 0, 0, "ok")                                                                             \
    X(NOT_LEADER, 1, TALLY_ENOT_LEADER,                                                           \
      "this replica is not the leader: retry at the leader address in the body (empty: unknown)") \
    X(BUSY, 2, TALLY_EBUSY, "server at its in-flight limit: retry the same request later")        \
    X(TOO_LARGE, 3, TALLY_ETOO_LARGE, "body or batch larger than the protocol allows")            \
    X(BAD_CHECKSUM, 4, TALLY_ECORRUPT, "header or body checksum mismatch: damaged in transit")    \
    X(BAD_VERSION, 5, TALLY_EVERSION, "protocol version not supported by this server")            \
    X(BAD_REQUEST, 6, TALLY_EPROTOCOL, "malformed request: a field or the body is wrong for it")  \
    X(UNKNOWN_OP, 7, TALLY_EPROTOCOL, "operation not known to this server")                       \
    X(SESSION_EXPIRED, 8, TALLY_ECLOSED,                                                          \
      "no session for this client id (evicted, never registered, or lost): register again")      \
    X(STALE, 9, TALLY_ESTALE, "this replica has not applied the requested index yet")             \
    X(NOT_FOUND, 10, TALLY_ENOT_FOUND, "no such program, account, entry, posting or hold")        \
    X(REQUEST_REUSED, 11, TALLY_EPROTOCOL,                                                        \
      "request number below the session's latest, or the latest's with a different body")         \
    X(INTERNAL, 12, -EIO, "the replica failed to serve the request (storage error): try another") \
    X(CLOCK_MODE, 13, TALLY_ECONFIG,                                                              \
      "POST_AT refused: this cluster stamps entries with its leader's wall clock (--clock wall)")

enum tally_wire_status {
#define TALLY_WIRE_STATUS_ENUM_(name, value, error, message) TALLY_WIRE_##name = value,
    TALLY_WIRE_STATUSES(TALLY_WIRE_STATUS_ENUM_)
#undef TALLY_WIRE_STATUS_ENUM_
};

/* Largest status value + 1. */
#define TALLY_WIRE_STATUS_LIMIT 14u

/* ---------------------------------------------------------------------------------------------
 * Verdicts on received bytes. The receiver of a request answers a fault with `status` if
 * `reply` is set (when the header could not be trusted, with op, client_id and request zero),
 * and closes the connection after that reply if `close` is set: the framing is lost, or the peer
 * does not speak this protocol. A client receiving a faulty reply closes the connection and
 * reports TALLY_EPROTOCOL (TALLY_ECORRUPT for checksums). Numbers are not on the wire.
 *
 * X(name, value, status, reply, close, message)
 * ------------------------------------------------------------------------------------------- */
#define TALLY_WIRE_FAULTS(X)                                                                      \
    X(NONE, 0, OK, false, false, "frame is valid")                                                \
    X(TRUNCATED, 1, OK, false, false, "not all of the header or body has arrived: read more")    \
    X(BAD_MAGIC, 2, OK, false, true, "not a tally frame: the first bytes are not \"TLY1\"")      \
    X(BAD_VERSION, 3, BAD_VERSION, true, true, "protocol version not supported")                 \
    X(BAD_HEADER_CHECKSUM, 4, BAD_CHECKSUM, true, true, "header checksum mismatch")               \
    X(TOO_LARGE, 5, TOO_LARGE, true, true, "body_size above TALLY_WIRE_BODY_MAX")                 \
    X(BAD_FLAGS, 6, BAD_REQUEST, true, false, "flag bits set that this direction does not allow") \
    X(WRONG_DIRECTION, 7, BAD_REQUEST, true, true,                                                \
      "a reply where a request was expected, or a request where a reply was")                     \
    X(BAD_STATUS, 8, BAD_REQUEST, true, false,                                                    \
      "status set in a request, or a status unknown to this version in a reply")                  \
    X(UNKNOWN_OP, 9, UNKNOWN_OP, true, false, "operation not known to this version")              \
    X(BAD_BODY_SIZE, 10, BAD_REQUEST, true, false, "body size does not fit the operation")        \
    X(TOO_MANY_ITEMS, 11, TOO_LARGE, true, false,                                                 \
      "more postings than TALLY_BATCH_MAX, or more items than the page maximum")                  \
    X(BAD_BODY_CHECKSUM, 12, BAD_CHECKSUM, true, false, "body checksum mismatch")                 \
    X(BAD_FIELD, 13, BAD_REQUEST, true, false,                                                    \
      "a header or body field is out of range for the operation")

enum tally_wire_fault {
#define TALLY_WIRE_FAULT_ENUM_(name, value, status, reply, close, message)                        \
    TALLY_WIRE_FAULT_##name = value,
    TALLY_WIRE_FAULTS(TALLY_WIRE_FAULT_ENUM_)
#undef TALLY_WIRE_FAULT_ENUM_
};

/* Largest fault value + 1. */
#define TALLY_WIRE_FAULT_LIMIT 14u

/* Which way a frame travels: decides whether REPLY must be set and what status may be. */
enum tally_wire_direction {
    TALLY_WIRE_TO_SERVER = 0, /* a request */
    TALLY_WIRE_TO_CLIENT = 1, /* a reply */
};

/* ---------------------------------------------------------------------------------------------
 * Encoding.
 * ------------------------------------------------------------------------------------------- */

/* XXH3-64 with seed 0 of `size` bytes (bytes may be NULL when size is 0). */
uint64_t tally_wire_checksum(const void *bytes, size_t size);

/* Zero *h, then set magic, version, op, client_id (NULL: zero) and request. The caller sets
 * flags, index and body_size as needed, then seals. */
void tally_wire_header_init(struct tally_wire_header *h, uint16_t op, const uint8_t *client_id,
                            uint64_t request);

/* The header of the reply to `request`: op, client_id and request echoed, flags REPLY, the given
 * status, index and body_size. Seal it afterwards. Pass request NULL to answer a header that
 * could not be trusted (op, client_id and request are then zero). */
void tally_wire_reply_init(struct tally_wire_header *h, const struct tally_wire_header *request,
                           uint16_t status, uint64_t index, uint32_t body_size);

/* Fill checksum_body from the h->body_size bytes at body (NULL allowed when body_size is 0),
 * then checksum_header. After this the 64 bytes of *h are the frame header, as sent. The caller
 * guarantees body_size <= TALLY_WIRE_BODY_MAX (asserted: a local programming error). */
void tally_wire_header_seal(struct tally_wire_header *h, const void *body);

/* ---------------------------------------------------------------------------------------------
 * Decoding. Every function takes bytes as they arrived (any alignment), reads only what it is
 * told it may, never asserts on their contents, and returns TALLY_WIRE_FAULT_NONE or the first
 * fault found, in the order documented at each.
 * ------------------------------------------------------------------------------------------- */

/* Judge the first `size` bytes at `bytes` as a frame header travelling in direction `dir`.
 * Checks, in order: size >= 64 (TRUNCATED), magic (BAD_MAGIC), version (BAD_VERSION),
 * checksum_header (BAD_HEADER_CHECKSUM), body_size <= TALLY_WIRE_BODY_MAX (TOO_LARGE), the REPLY
 * flag against dir (WRONG_DIRECTION), other flags (BAD_FLAGS), status (BAD_STATUS: nonzero in a
 * request, unknown in a reply), op (UNKNOWN_OP; a reply of an error status may carry any op).
 * Whenever size >= 64, *out receives the 64 bytes as they are (for logs), trustworthy only when
 * NONE is returned. */
enum tally_wire_fault tally_wire_header_decode(struct tally_wire_header *out, const void *bytes,
                                               size_t size, enum tally_wire_direction dir);

/* Whether body_size fits the operation and status of a header that decoded without fault:
 * BAD_BODY_SIZE, or TOO_MANY_ITEMS (item count above the operation's maximum). An error reply's
 * body is empty, NOT_LEADER's is 64 bytes. Needs no body: a server calls it before reading one. */
enum tally_wire_fault tally_wire_body_size_check(const struct tally_wire_header *h);

/* Whether the h->body_size bytes at body match h->checksum_body: BAD_BODY_CHECKSUM. */
enum tally_wire_fault tally_wire_body_verify(const struct tally_wire_header *h, const void *body);

/* Field rules of a request whose header, size and checksum passed (BAD_FIELD): client_id nonzero,
 * index 0 and no STALE_OK for SESSION operations; request 0 for REGISTER, >= 1 for POST and
 * POST_AT; index 0 and no STALE_OK for STATUS; reserved fields zero; program, member, seq and ids
 * nonzero; page sizes 1 .. their maximum; POST_AT's at <= TALLY_WIRE_AT_MAX. Postings themselves are the ledger's to judge (per-posting results). */
enum tally_wire_fault tally_wire_request_check(const struct tally_wire_header *h,
                                               const void *body);

/* Field rules of a reply whose header, size and checksum passed (BAD_FIELD): a page's count
 * matches its items and its flags are known; an ENTRY's tail_size matches the bytes after it;
 * addresses (NOT_LEADER, STATUS) are valid. Whether a POST reply has as many results as the
 * request had postings is the client's check: only it knows the request. */
enum tally_wire_fault tally_wire_reply_check(const struct tally_wire_header *h, const void *body);

/* All of the above on a buffer that should start with one whole frame: header decode, then
 * size >= 64 + body_size (TRUNCATED), body size, body checksum, then request or reply field
 * rules by dir. On NONE the frame is the first 64 + out->body_size bytes; bytes after it belong
 * to the next frame. */
enum tally_wire_fault tally_wire_frame_decode(struct tally_wire_header *out, const void *bytes,
                                              size_t size, enum tally_wire_direction dir);

/* ---------------------------------------------------------------------------------------------
 * Names, messages and the tables above as functions.
 * ------------------------------------------------------------------------------------------- */

bool tally_wire_op_known(uint32_t op);
const char *tally_wire_op_name(uint32_t op);          /* "POST"; NULL if unknown */
const char *tally_wire_status_name(uint32_t status);  /* "NOT_LEADER"; NULL if unknown */
const char *tally_wire_status_str(uint32_t status);   /* its message; "unknown status" */
int tally_wire_status_error(uint32_t status);         /* tally_errors.h code; TALLY_EPROTOCOL
                                                         for an unknown status */
const char *tally_wire_fault_name(enum tally_wire_fault f); /* "BAD_MAGIC"; NULL if unknown */
const char *tally_wire_fault_str(enum tally_wire_fault f);  /* its message */
uint16_t tally_wire_fault_status(enum tally_wire_fault f);  /* the status to answer with */
bool tally_wire_fault_replies(enum tally_wire_fault f);     /* a request fault gets a reply */
bool tally_wire_fault_closes(enum tally_wire_fault f);      /* the connection must close */

/* Whether a 64-byte address field is valid: printable ASCII (0x21 .. 0x7e) up to the first NUL,
 * zero after it, and at least one NUL (so at most 63 characters). All zero is valid (unknown). */
bool tally_wire_address_valid(const char address[TALLY_WIRE_ADDRESS_SIZE]);

/* Write text into a 64-byte address field, NUL-padded. Returns 0, or TALLY_ETOO_LARGE if the
 * text has more than 63 characters, TALLY_ECONFIG if it has a character the field does not
 * allow (the field is then all zero). */
int tally_wire_address_set(char address[TALLY_WIRE_ADDRESS_SIZE], const char *text);

#endif
