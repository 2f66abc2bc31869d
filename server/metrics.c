/* metrics.c: Prometheus metrics and health over HTTP (metrics.h).
 *
 * Threads: the loop thread writes `snap` in refresh_cb; libmicrohttpd's thread reads it in
 * answer(); both hold `lock`, and neither does anything slow while holding it (a copy of a few
 * hundred bytes).
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct snapshot {
    struct tally_wire_replica_status st;
    struct replica_counters rc;
    struct engine_status es;
    struct net_stats ns;
    struct front_stats fs;
    bool ready;
    bool clock_client;
};

struct metrics {
    uv_timer_t timer;
    struct replica *replica;
    struct net *net;
    struct front *front;
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;
    struct snapshot snap;
};

static void refresh(struct metrics *m)
{
    struct snapshot s;
    memset(&s, 0, sizeof(s));
    replica_status(m->replica, &s.st);
    replica_counters(m->replica, &s.rc);
    struct engine *e = replica_engine(m->replica);
    if (e != NULL)
        engine_status(e, &s.es);
    net_stats(m->net, &s.ns);
    front_stats(m->front, &s.fs);
    s.ready = replica_ready(m->replica);
    s.clock_client = replica_clock(m->replica) == REPLICA_CLOCK_CLIENT;
    pthread_mutex_lock(&m->lock);
    m->snap = s;
    pthread_mutex_unlock(&m->lock);
}

static void refresh_cb(uv_timer_t *t)
{
    refresh(t->data);
}

static const char *const role_names[] = {"unavailable", "follower", "candidate", "leader"};

static const char *role_name(uint32_t role)
{
    return role < 4 ? role_names[role] : "unavailable";
}

/* The Prometheus text of snapshot s into buf; returns its length. */
static size_t format_metrics(const struct snapshot *s, char *buf, size_t size)
{
    size_t n = 0;
#define OUT(...)                                                                                  \
    do {                                                                                          \
        if (n < size)                                                                             \
            n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__);                                \
    } while (0)
#define METRIC(name, type, help, value)                                                           \
    OUT("# HELP " name " " help "\n# TYPE " name " " type "\n" name " %" PRIu64 "\n",              \
        (uint64_t)(value))
#define SECONDS(name, help, us)                                                                   \
    OUT("# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 ".%06" PRIu64 "\n", \
        (uint64_t)(us) / 1000000, (uint64_t)(us) % 1000000)
    OUT("# HELP tally_role The replica's Raft role (1 for the current one).\n"
        "# TYPE tally_role gauge\n");
    for (uint32_t r = 0; r < 4; r++)
        OUT("tally_role{role=\"%s\"} %d\n", role_names[r], s->st.role == r);
    METRIC("tally_ready", "gauge", "1 when this replica is the leader and serves requests.",
           s->ready);
    METRIC("tally_replica_id", "gauge", "This replica's Raft id.", s->st.replica_id);
    METRIC("tally_leader_id", "gauge", "The leader's Raft id as this replica knows it (0: none).",
           s->st.leader_id);
    METRIC("tally_raft_term", "gauge", "Current Raft term.", s->st.term);
    METRIC("tally_raft_commit_index", "gauge", "Highest Raft index known committed.",
           s->st.commit_index);
    METRIC("tally_applied_index", "gauge", "Highest Raft index applied to the ledger.",
           s->st.applied_index);
    METRIC("tally_last_timestamp_ms", "gauge", "Effective time of the newest applied batch (ms).",
           s->st.last_timestamp);
    METRIC("tally_ledger_entries", "gauge", "Sequence number of the newest ledger entry.",
           s->st.entries);
    METRIC("tally_sessions", "gauge", "Client sessions held.", s->st.sessions);
    METRIC("tally_voters", "gauge", "Voters in the configuration.", s->st.voters);
    METRIC("tally_raft_entries_applied_total", "counter",
           "Raft entries this process applied to the ledger.", s->rc.entries_applied);
    METRIC("tally_raft_entries_queued_total", "counter",
           "Raft entries that waited in the apply queue for a ledger commit to end (the loop "
           "went on with Raft and the network meanwhile).",
           s->rc.entries_queued);
    METRIC("tally_postings_applied_total", "counter",
           "Postings this process applied (any result).", s->rc.postings_applied);
    METRIC("tally_catch_ups_total", "counter",
           "Ledger copies this process fetched to catch up.", s->rc.catch_ups);
    METRIC("tally_clock_client", "gauge",
           "1 when this replica runs with --clock client (clients drive ledger time).",
           s->clock_client);
    METRIC("tally_clock_mode_mismatch_entries_total", "counter",
           "Entries applied that a leader in the other --clock mode stamped (must stay 0).",
           s->rc.clock_mismatches);
    METRIC("tally_members_cached", "gauge", "Member images in the write-back cache.",
           s->es.members_cached);
    METRIC("tally_members_dirty", "gauge", "Cached member images not yet written back.",
           s->es.members_dirty);
    METRIC("tally_map_size_bytes", "gauge", "LMDB map size.", s->es.map_size);
    METRIC("tally_ledger_committed_index", "gauge",
           "Highest Raft index in the ledger file (at most --commit-ms behind the applied one).",
           s->es.committed_index);
    METRIC("tally_ledger_commits_total", "counter",
           "Deferred ledger commits, each of every entry applied since the last (0 under "
           "--commit-ms 0, where each entry commits itself).",
           s->es.commits);
    SECONDS("tally_ledger_commit_seconds_total",
            "Time the ledger's committer thread spent in those commits (writing the group and "
            "flushing it); the event loop goes on meanwhile.",
            s->es.commit_us);
    SECONDS("tally_ledger_commit_wait_seconds_total",
            "Time the event loop waited for the committer (a commit to end, a group to begin) "
            "before it could apply an entry or read the ledger.",
            s->es.commit_wait_us);
    METRIC("tally_posts_busy_total", "counter",
           "POST requests the leader answered BUSY because every slot gathering requests for "
           "the next entries was taken (the client retries after a backoff).",
           s->rc.posts_busy);
    METRIC("tally_reads_held_total", "counter",
           "Reads that arrived while the ledger was committing and were answered when the "
           "commit ended (the loop went on with Raft and the network meanwhile).",
           s->fs.reads_held);
    METRIC("tally_reads_busy_total", "counter",
           "Reads answered BUSY because the queue of reads waiting for a ledger commit was full.",
           s->fs.reads_busy);
    METRIC("tally_reads_held", "gauge", "Reads waiting for a ledger commit to end, now.",
           s->fs.reads_held_now);
    METRIC("tally_reads_cached_total", "counter",
           "ACCOUNT reads that arrived during a ledger commit and were answered at once from "
           "the member cache.",
           s->fs.reads_cached);
    METRIC("tally_raft_snapshot_threshold", "gauge",
           "Entries applied between Raft snapshots, as now set (follows the entries' size "
           "unless --snapshot-threshold is given).",
           s->rc.snapshot_threshold);
    METRIC("tally_net_connections", "gauge", "Client connections open.", s->ns.open);
    METRIC("tally_net_accepted_total", "counter", "Client connections accepted.", s->ns.accepted);
    METRIC("tally_net_refused_total", "counter", "Connections refused (over the limit).",
           s->ns.refused);
    METRIC("tally_net_frames_in_total", "counter", "Valid request frames received.",
           s->ns.frames_in);
    METRIC("tally_net_frames_out_total", "counter", "Reply frames queued.", s->ns.frames_out);
    METRIC("tally_net_bytes_in_total", "counter", "Bytes received from clients.", s->ns.bytes_in);
    METRIC("tally_net_bytes_out_total", "counter", "Bytes sent to clients.", s->ns.bytes_out);
    METRIC("tally_net_bad_frames_total", "counter", "Malformed frames judged.",
           s->ns.bad_frames);
    METRIC("tally_net_slow_closed_total", "counter", "Connections closed for not reading.",
           s->ns.slow_closed);
    METRIC("tally_net_idle_closed_total", "counter", "Connections closed for silence.",
           s->ns.idle_closed);
    METRIC("tally_net_paused_total", "counter", "Times a connection was paused (backpressure).",
           s->ns.paused);
#undef METRIC
#undef SECONDS
#undef OUT
    return n < size ? n : size - 1;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)con_cls;
    struct metrics *m = cls;
    if (*upload_size != 0)
        return MHD_NO; /* no request bodies here */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, "text/plain", "GET only\n", 9);
    struct snapshot s;
    pthread_mutex_lock(&m->lock);
    s = m->snap;
    pthread_mutex_unlock(&m->lock);
    if (strcmp(url, "/metrics") == 0) {
        static __thread char buf[16384];
        size_t n = format_metrics(&s, buf, sizeof(buf));
        return reply(c, 200, "text/plain; version=0.0.4", buf, n);
    }
    if (strcmp(url, "/health") == 0) {
        bool serving = s.ready || (s.st.role == TALLY_WIRE_ROLE_FOLLOWER && s.st.leader_id != 0);
        char buf[256];
        int n = snprintf(buf, sizeof(buf),
                         "{\"role\":\"%s\",\"ready\":%s,\"serving\":%s,\"leader\":\"%s\","
                         "\"applied_index\":%" PRIu64 "}\n",
                         role_name(s.st.role), s.ready ? "true" : "false",
                         serving ? "true" : "false", s.st.leader_address, s.st.applied_index);
        return reply(c, serving ? 200 : 503, "application/json", buf, (size_t)n);
    }
    return reply(c, 404, "text/plain", "not found: /metrics or /health\n", 31);
}

int metrics_start(struct metrics **out, uv_loop_t *loop, const char *address, struct replica *r,
                  struct net *n, struct front *f)
{
    int fd;
    int rc = net_listen_socket(address, &fd);
    if (rc != 0)
        return rc;
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        close(fd);
        return -ENOMEM;
    }
    m->replica = r;
    m->net = n;
    m->front = f;
    pthread_mutex_init(&m->lock, NULL);
    refresh(m);
    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                                 NULL, answer, m, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (m->daemon == NULL) {
        close(fd);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return -EIO;
    }
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, refresh_cb, METRICS_REFRESH_MS, METRICS_REFRESH_MS);
    *out = m;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct metrics *m = h->data;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL)
        return;
    MHD_stop_daemon(m->daemon); /* joins the HTTP thread and closes the socket */
    uv_close((uv_handle_t *)&m->timer, timer_closed);
}
