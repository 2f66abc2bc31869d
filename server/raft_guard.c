/* raft_guard.c: defences against libraft 0.15 defects at its I/O interface (raft_guard.h). */
#include "raft_guard.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct failed_send {
    struct raft_io_send *req;
    raft_io_send_cb cb;
    int status;
};

struct guard {
    struct raft_io *io;
    int (*start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
    int (*send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
                raft_io_send_cb);
    void (*close)(struct raft_io *, raft_io_close_cb);
    raft_io_recv_cb recv;
    raft_io_close_cb closed; /* libraft's close callback */
    bool closed_once;        /* it ran: later calls are raft_uv's repeats (defect 4) */
    struct failed_send failed[RAFT_GUARD_FAILED_SENDS];
    unsigned nfailed;
    struct raft_guard_stats stats;
};

static struct guard guards[RAFT_GUARD_MAX];

static struct guard *guard_of(const struct raft_io *io)
{
    for (unsigned i = 0; i < RAFT_GUARD_MAX; i++)
        if (guards[i].io == io)
            return &guards[i];
    return NULL;
}

/* Defect 1: entries from index 1 sent to a follower whose log starts after a snapshot. */
static void append_rewrite(struct guard *g, struct raft_append_entries *a)
{
    const struct raft *r = g->io->data; /* libraft sets it in raft_init */
    if (r == NULL || a->prev_log_index != 0 || r->log.offset == 0)
        return;
    raft_index snap = r->log.snapshot.last_index;
    if (snap == 0)
        return;
    unsigned drop = a->n_entries < snap ? a->n_entries : (unsigned)snap;
    raft_term term = drop == snap ? a->entries[drop - 1].term : r->log.snapshot.last_term;
    struct raft_entry *rest = NULL;
    if (drop < a->n_entries) {
        rest = raft_malloc((a->n_entries - drop) * sizeof(*rest));
        if (rest == NULL)
            return; /* cannot rewrite: the message goes in as it came (libraft's behaviour) */
        memcpy(rest, a->entries + drop, (a->n_entries - drop) * sizeof(*rest));
    } else if (a->n_entries > 0) {
        raft_free(a->entries[0].batch); /* every entry of a message shares one batch */
    }
    raft_free(a->entries);
    a->entries = rest;
    a->n_entries -= drop;
    a->prev_log_index = snap;
    a->prev_log_term = term;
    g->stats.appends_rewritten++;
}

static void guard_recv(struct raft_io *io, struct raft_message *m)
{
    struct guard *g = guard_of(io);
    if (m->type == RAFT_IO_APPEND_ENTRIES)
        append_rewrite(g, &m->append_entries);
    g->recv(io, m);
}

static int guard_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                       raft_io_recv_cb recv)
{
    struct guard *g = guard_of(io);
    g->recv = recv;
    return g->start(io, msecs, tick, guard_recv);
}

/* Defect 2: a send must not fail synchronously. */
static int guard_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                      raft_io_send_cb cb)
{
    struct guard *g = guard_of(io);
    struct raft_message fixed;
    const struct raft *r = io->data;
    if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT && m->append_entries_result.rejected == 0 &&
        r != NULL && m->append_entries_result.last_log_index < r->log.snapshot.last_index) {
        /* Defect 3: the answer to an InstallSnapshot older than our own snapshot. */
        fixed = *m;
        fixed.append_entries_result.last_log_index = r->log.snapshot.last_index;
        m = &fixed;
        g->stats.snapshot_answers_raised++;
    }
    int rc = g->send(io, req, m, cb);
    if (rc == 0 || g->nfailed == RAFT_GUARD_FAILED_SENDS)
        return rc;
    g->failed[g->nfailed++] = (struct failed_send){req, cb, rc};
    g->stats.sends_deferred++;
    return 0;
}

/* Defect 4: raft_uv may run its close callback more than once. */
static void guard_closed(struct raft_io *io)
{
    struct guard *g = guard_of(io);
    if (g->closed_once) {
        g->stats.closes_swallowed++;
        return;
    }
    g->closed_once = true;
    g->closed(io);
}

static void guard_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct guard *g = guard_of(io);
    g->closed = cb;
    g->closed_once = false; /* a raft_io closed, started again and closed (the simulation) */
    g->close(io, guard_closed);
}

void raft_guard_flush(struct raft_io *io)
{
    struct guard *g = guard_of(io);
    if (g == NULL)
        return;
    /* A callback may send again (and be refused again): those wait for the next flush. */
    unsigned n = g->nfailed;
    struct failed_send batch[RAFT_GUARD_FAILED_SENDS];
    memcpy(batch, g->failed, n * sizeof(batch[0]));
    g->nfailed = 0;
    for (unsigned i = 0; i < n; i++) {
        batch[i].req->cb = batch[i].cb;
        batch[i].cb(batch[i].req, batch[i].status);
    }
}

int raft_guard_install(struct raft_io *io)
{
    struct guard *g = guard_of(io);
    if (g == NULL)
        g = guard_of(NULL);
    if (g == NULL)
        return RAFT_TOOMANY;
    memset(g, 0, sizeof(*g));
    g->io = io;
    g->start = io->start;
    g->send = io->send;
    g->close = io->close;
    io->start = guard_start;
    io->send = guard_send;
    io->close = guard_close;
    return 0;
}

void raft_guard_remove(struct raft_io *io)
{
    struct guard *g = guard_of(io);
    if (g == NULL)
        return;
    io->start = g->start;
    io->send = g->send;
    io->close = g->close;
    memset(g, 0, sizeof(*g));
}

void raft_guard_stats(const struct raft_io *io, struct raft_guard_stats *out)
{
    const struct guard *g = guard_of(io);
    memset(out, 0, sizeof(*out));
    if (g != NULL)
        *out = g->stats;
}
