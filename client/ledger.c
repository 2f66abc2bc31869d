/* ledger.c: tally_client_ledger_copy, a whole ledger copy fetched chunk by chunk (LEDGER).
 *
 * The copy is written where each chunk says (pwrite at its offset) and hashed as it arrives, in
 * order: a reader always asks for the byte after the last one it wrote, and starts again from 0
 * whenever the copy changes (a new copy_id), so the running hash covers the file exactly when the
 * last chunk is in. Each replica gets its own connection; a replica that misbehaves is left for
 * the next, never retried in a loop (the caller's deadline bounds the whole call).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "hash.h"
#include "internal.h"

/* Waiting for a copy being made: 20 ms, doubling to one second (a large ledger takes seconds). */
#define LEDGER_BUSY_FIRST_MS 20u
#define LEDGER_BUSY_MAX_MS 1000u
/* One exchange (a chunk of 512 KiB: 100 KiB/s at the least) that takes longer than this means the
 * replica is stuck or cut off: the next one is tried, rather than the whole deadline spent on it.
 * Keep it short: a replica catching up waits inside Raft's restore and takes no part meanwhile
 * (server/replica.c). At 30 s, a leader paused while a follower copied from it left the cluster
 * without a majority for 30 s (test_faults, the leader-pause test, on a clean clone). */
#define LEDGER_EXCHANGE_MS 5000u

static uint64_t exchange_deadline(uint64_t deadline_ns)
{
    uint64_t d = conn_deadline_ms(LEDGER_EXCHANGE_MS);
    return d < deadline_ns ? d : deadline_ns;
}

struct fetch {
    int fd;
    uint64_t copy_id, offset, size, applied;
    XXH128_hash_t expect;
    XXH3_state_t *hash;
};

static int fetch_restart(struct fetch *f)
{
    f->copy_id = 0;
    f->offset = 0;
    XXH3_128bits_reset(f->hash);
    return ftruncate(f->fd, 0) == 0 ? 0 : -errno;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Take one OK chunk. Returns 0, 1 when the copy is complete and verified, or an error (a
 * negative errno of the file, or TALLY_ECORRUPT when the reply contradicts the copy). */
static int fetch_take(struct fetch *f, const uint8_t *body)
{
    struct tally_wire_ledger_chunk h;
    memcpy(&h, body, sizeof(h));
    if (f->copy_id != h.copy_id) {
        if (f->copy_id != 0 || h.offset != 0)
            return TALLY_ECORRUPT;
        f->copy_id = h.copy_id;
        f->size = h.size;
        f->applied = h.applied_index;
        f->expect = (XXH128_hash_t){.low64 = h.hash_lo, .high64 = h.hash_hi};
    }
    if (h.offset != f->offset || h.size != f->size || h.applied_index != f->applied ||
        h.hash_lo != f->expect.low64 || h.hash_hi != f->expect.high64 ||
        (h.count == 0 && f->offset != f->size))
        return TALLY_ECORRUPT;
    int rc = write_all(f->fd, body + sizeof(h), h.count, h.offset);
    if (rc != 0)
        return rc;
    XXH3_128bits_update(f->hash, body + sizeof(h), h.count);
    f->offset += h.count;
    if (f->offset < f->size)
        return 0;
    XXH128_hash_t got = XXH3_128bits_digest(f->hash);
    if (!XXH128_isEqual(got, f->expect))
        return TALLY_ECORRUPT;
    return fdatasync(f->fd) == 0 ? 1 : -errno;
}

/* Fetch from one replica. Returns 0 (complete), a local file error (a negative errno: give up),
 * or a tally error (TALLY_ESTALE, TALLY_ECORRUPT...: try the next replica). */
static int fetch_from(struct tally_client *c, const struct addr *a, struct fetch *f,
                      uint64_t min_index, uint64_t deadline_ns)
{
    struct conn cn;
    conn_init(&cn);
    int rc = conn_open(&cn, a, exchange_deadline(deadline_ns));
    uint32_t busy_ms = LEDGER_BUSY_FIRST_MS;
    while (rc == 0) {
        uint8_t frame[TALLY_WIRE_HEADER_SIZE + sizeof(struct tally_wire_ledger_request)];
        struct tally_wire_ledger_request q = {.copy_id = f->copy_id, .offset = f->offset,
                                              .min_index = min_index,
                                              .max = TALLY_WIRE_LEDGER_CHUNK_MAX};
        struct tally_wire_header h;
        tally_wire_header_init(&h, TALLY_WIRE_OP_LEDGER, c->client_id, c->next_request++);
        h.body_size = sizeof(q);
        tally_wire_header_seal(&h, &q);
        memcpy(frame, &h, sizeof(h));
        memcpy(frame + sizeof(h), &q, sizeof(q));
        struct call k = {.op = TALLY_WIRE_OP_LEDGER, .request = h.request, .frame = frame,
                         .frame_size = sizeof(frame), .deadline_ns = deadline_ns};
        if ((rc = call_exchange(&cn, c->in, &k, exchange_deadline(deadline_ns))) != 0)
            break;
        switch (k.reply.status) {
        case TALLY_WIRE_OK:
            busy_ms = LEDGER_BUSY_FIRST_MS;
            rc = fetch_take(f, k.body);
            if (rc == 1) {
                conn_close(&cn);
                return 0;
            }
            break;
        case TALLY_WIRE_BUSY:
            conn_sleep_ms(busy_ms, deadline_ns);
            busy_ms = busy_ms * 2 > LEDGER_BUSY_MAX_MS ? LEDGER_BUSY_MAX_MS : busy_ms * 2;
            if (conn_now_ns() >= deadline_ns)
                rc = TALLY_ETIMEOUT;
            break;
        case TALLY_WIRE_NOT_FOUND: /* the replica dropped the copy: a new one */
            rc = fetch_restart(f);
            break;
        default: /* STALE, INTERNAL, or a refusal: this replica cannot help */
            rc = k.reply.status == TALLY_WIRE_STALE ? TALLY_ESTALE : TALLY_ECLOSED;
        }
    }
    conn_close(&cn);
    return rc;
}

int tally_client_ledger_copy(struct tally_client *c, const char *path, uint64_t min_index,
                             uint64_t *applied_index, uint64_t timeout_ms)
{
    if (c->async.active)
        return TALLY_ECONFIG; /* c->in holds the asynchronous POST's reply */
    uint64_t deadline_ns = client_deadline(c, timeout_ms);
    struct fetch f = {.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0)
        return -errno;
    f.hash = XXH3_createState();
    if (f.hash == NULL) {
        close(f.fd);
        return -ENOMEM;
    }
    int rc = TALLY_ECLOSED;
    bool stale = false;
    for (uint32_t i = 0; i < c->addr_count; i++) {
        if ((rc = fetch_restart(&f)) != 0)
            break;
        rc = fetch_from(c, &c->addrs[i], &f, min_index, deadline_ns);
        if (rc == 0 || rc > -4096 || conn_now_ns() >= deadline_ns)
            break; /* done, a local file error, or out of time */
        stale = stale || rc == TALLY_ESTALE;
    }
    if (rc != 0 && rc <= -4096)
        rc = conn_now_ns() >= deadline_ns ? TALLY_ETIMEOUT : stale ? TALLY_ESTALE : TALLY_ECLOSED;
    if (rc == 0)
        *applied_index = f.applied;
    XXH3_freeState(f.hash);
    if (close(f.fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}
