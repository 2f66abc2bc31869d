/* copies.c: ledger copies for catching-up peers (copies.h).
 *
 * States of the one copy: NONE; MAKING (a worker runs engine_copy and hashes the file; the loop
 * thread touches none of the copy's fields until the work callback); READY (served by pread);
 * FAILED (the next request with copy_id 0 gets INTERNAL, and the state returns to NONE, so the
 * request after that tries again). `making` is the one field both threads touch, under `lock`:
 * copies_wait sleeps on it.
 */
#include "copies.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"

enum copy_state { COPY_NONE, COPY_MAKING, COPY_READY, COPY_FAILED };

struct copies {
    uv_loop_t *loop;
    char path[512];
    uv_timer_t idle;
    uv_work_t work;
    bool closing, timer_closed;
    bool work_pending; /* queued, its after_work callback not yet run */
    uint64_t next_id;

    enum copy_state state;
    uint64_t id;
    uint64_t applied; /* the engine's applied index when the copy started */
    int fd;
    uint64_t size;
    XXH128_hash_t hash;
    uint64_t started_ms;

    /* The worker's input and output. */
    struct engine *engine;
    int rc;

    pthread_mutex_t lock;
    pthread_cond_t done;
    bool making;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int copies_init(struct copies **out, uv_loop_t *loop, const char *dir)
{
    struct copies *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->loop = loop;
    c->fd = -1;
    /* Ids differ across restarts, so a reader never takes a new copy for its old one. */
    c->next_id = now_ns() | 1;
    snprintf(c->path, sizeof(c->path), "%s/ledger-copy.tmp", dir);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->done, NULL);
    uv_timer_init(loop, &c->idle);
    c->idle.data = c;
    uv_unref((uv_handle_t *)&c->idle); /* an idle copy does not keep the loop running */
    *out = c;
    return 0;
}

static void drop(struct copies *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = COPY_NONE;
    c->id = 0;
    uv_timer_stop(&c->idle);
}

static void idle_cb(uv_timer_t *t)
{
    struct copies *c = t->data;
    if (c->state == COPY_READY) {
        LOG_INFO("copy_dropped", "copy=%" PRIu64 " reason=idle", c->id);
        drop(c);
    }
}

/* ---- the worker ------------------------------------------------------------------------------ */

static int hash_file(int fd, uint64_t *size, XXH128_hash_t *out)
{
    static const size_t chunk = (size_t)1 << 20;
    uint8_t *buf = malloc(chunk);
    XXH3_state_t *st = XXH3_createState();
    int rc = buf && st ? 0 : -ENOMEM;
    if (rc == 0)
        XXH3_128bits_reset(st);
    uint64_t off = 0;
    while (rc == 0) {
        ssize_t n = pread(fd, buf, chunk, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        else if (n == 0)
            break;
        else {
            XXH3_128bits_update(st, buf, (size_t)n);
            off += (uint64_t)n;
        }
    }
    if (rc == 0) {
        *size = off;
        *out = XXH3_128bits_digest(st);
    }
    XXH3_freeState(st);
    free(buf);
    return rc;
}

static void work_cb(uv_work_t *w)
{
    struct copies *c = w->data;
    c->rc = engine_copy(c->engine, c->fd);
    if (c->rc == 0 && fdatasync(c->fd) != 0) /* not for durability: to surface a write error */
        c->rc = -errno;
    if (c->rc == 0)
        c->rc = hash_file(c->fd, &c->size, &c->hash);
    pthread_mutex_lock(&c->lock);
    c->making = false; /* the engine is not touched after this */
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->lock);
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct copies *c = w->data;
    c->work_pending = false;
    if (c->closing) {
        if (c->fd >= 0)
            close(c->fd);
        if (c->timer_closed)
            free(c);
        return;
    }
    if (status != 0 && c->rc == 0)
        c->rc = status;
    if (c->rc != 0) {
        LOG_ERROR("copy_failed", "copy=%" PRIu64 " error=\"%s\"", c->id, tally_strerror(c->rc));
        close(c->fd);
        c->fd = -1;
        c->state = COPY_FAILED;
        return;
    }
    c->state = COPY_READY;
    LOG_INFO("copy_made", "copy=%" PRIu64 " applied=%" PRIu64 " bytes=%" PRIu64 " ms=%" PRIu64,
             c->id, c->applied, c->size, (now_ns() / 1000000u) - c->started_ms);
    uv_timer_start(&c->idle, idle_cb, COPIES_IDLE_MS, 0);
}

static uint16_t start(struct copies *c, struct engine *e, uint64_t applied)
{
    drop(c);
    int fd = open(c->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_ERROR("copy_failed", "path=%s error=\"%s\"", c->path, strerror(errno));
        return TALLY_WIRE_INTERNAL;
    }
    (void)unlink(c->path); /* the open descriptor keeps it; a crash leaves nothing */
    c->fd = fd;
    c->id = c->next_id++;
    c->applied = applied;
    c->engine = e;
    c->rc = 0;
    c->size = 0;
    c->started_ms = now_ns() / 1000000u;
    c->state = COPY_MAKING;
    c->making = true;
    c->work.data = c;
    int rc = uv_queue_work(c->loop, &c->work, work_cb, after_work_cb);
    c->work_pending = rc == 0;
    if (rc != 0) {
        c->making = false;
        drop(c);
        return TALLY_WIRE_INTERNAL;
    }
    LOG_INFO("copy_started", "copy=%" PRIu64 " applied=%" PRIu64, c->id, applied);
    return TALLY_WIRE_BUSY;
}

/* ---- serving --------------------------------------------------------------------------------- */

uint16_t copies_serve(struct copies *c, struct engine *e,
                      const struct tally_wire_ledger_request *q, uint8_t *body, uint32_t *size)
{
    *size = 0;
    struct engine_status st;
    engine_status(e, &st);
    if (st.applied_index < q->min_index)
        return TALLY_WIRE_STALE;
    if (q->copy_id == 0) {
        switch (c->state) {
        case COPY_MAKING:
            return TALLY_WIRE_BUSY;
        case COPY_FAILED:
            c->state = COPY_NONE;
            return TALLY_WIRE_INTERNAL;
        case COPY_READY:
            if (c->applied >= q->min_index)
                break;
            __attribute__((fallthrough)); /* too old for this reader: make a new one */
        case COPY_NONE:
            return start(c, e, st.applied_index);
        }
    } else if (q->copy_id != c->id || c->state == COPY_NONE || c->state == COPY_FAILED) {
        return TALLY_WIRE_NOT_FOUND;
    } else if (c->state == COPY_MAKING) {
        return TALLY_WIRE_BUSY;
    }
    if (q->offset > c->size)
        return TALLY_WIRE_BAD_REQUEST;
    uint64_t left = c->size - q->offset;
    uint32_t want = left < q->max ? (uint32_t)left : q->max;
    struct tally_wire_ledger_chunk h;
    memset(&h, 0, sizeof(h));
    uint32_t got = 0;
    while (got < want) {
        ssize_t n = pread(c->fd, body + sizeof(h) + got, want - got, (off_t)(q->offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            LOG_ERROR("copy_read", "copy=%" PRIu64 " error=\"%s\"", c->id,
                      n < 0 ? strerror(errno) : "short file");
            drop(c);
            return TALLY_WIRE_INTERNAL;
        }
        got += (uint32_t)n;
    }
    h.copy_id = c->id;
    h.size = c->size;
    h.offset = q->offset;
    h.applied_index = c->applied;
    h.hash_lo = c->hash.low64;
    h.hash_hi = c->hash.high64;
    h.count = want;
    memcpy(body, &h, sizeof(h));
    *size = (uint32_t)sizeof(h) + want;
    uv_timer_start(&c->idle, idle_cb, COPIES_IDLE_MS, 0);
    return TALLY_WIRE_OK;
}

void copies_wait(struct copies *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->making)
        pthread_cond_wait(&c->done, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct copies *c = h->data;
    c->timer_closed = true;
    if (!c->work_pending)
        free(c);
}

void copies_close(struct copies *c)
{
    if (c == NULL)
        return;
    c->closing = true;
    if (!c->work_pending && c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    uv_close((uv_handle_t *)&c->idle, timer_closed_cb);
}
