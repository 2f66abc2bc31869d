/* main.c: tallyd, one replica of a tally cluster.
 *
 *   tallyd --id 1 --dir var/r1 --peer 1,127.0.0.1:7501,127.0.0.1:7401 \
 *          --peer 2,127.0.0.1:7502,127.0.0.1:7402 --peer 3,127.0.0.1:7503,127.0.0.1:7403
 *   tallyd --config FILE        (the same options, one "name value" per line, # comments)
 *
 * With no --peer, the replica is a one-voter cluster listening on --listen (clients) and --raft
 * (Raft): the same code path, a cluster of one. SIGTERM and SIGINT stop it cleanly: a leader
 * hands leadership over first. Logs are structured lines on stderr (server/log.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "front.h"
#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "raft_aio.h"
#include "replica.h"

struct config {
    uint64_t id;
    const char *dir;
    const char *listen;
    const char *raft;
    const char *raft_bind;
    const char *metrics;
    struct replica_peer peers[REPLICA_PEERS_MAX];
    uint32_t npeers;
    enum net_backend io;
    unsigned election_ms, heartbeat_ms, tick_ms;
    unsigned snapshot_threshold, snapshot_trailing;
    long commit_ms; /* -1: the default */
    int clock; /* enum replica_clock, -1: not a mode */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tallyd --id N --dir DIR [--peer ID,RAFT_ADDR,CLIENT_ADDR ...]\n"
            "              [--listen ADDR --raft ADDR] [--raft-bind ADDR] [--io uring|epoll|auto]\n"
            "              [--election-timeout MS] [--heartbeat MS] [--tick MS]\n"
            "              [--snapshot-threshold N] [--snapshot-trailing N] [--metrics ADDR]\n"
            "              [--clock wall|client] [--commit-ms MS]\n"
            "       tallyd --config FILE\n\n"
            "One replica of a tally cluster. Give every voter with --peer (this one included),\n"
            "the same list on every replica; without --peer the replica is a cluster of one\n"
            "on --listen (clients, default 127.0.0.1:7401) and --raft (default 127.0.0.1:7501).\n"
            "DIR holds the ledger (DIR/ledger) and the Raft log (DIR/raft).\n"
            "A Raft snapshot every N entries (default: 1 GiB of log over the mean entry size,\n"
            "1024 to 16384) keeps N trailing entries of log (default 1024); a replica further\n"
            "behind catches up from a peer's ledger copy.\n"
            "--metrics ADDR serves GET /metrics (Prometheus) and /health over HTTP on ADDR.\n"
            "--raft-bind ADDR (IPv4 host:port) listens for Raft peers on ADDR instead of this\n"
            "replica's RAFT_ADDR, which is still what the peers are told and connect to (NAT,\n"
            "containers, a proxy in between).\n"
            "--clock wall (default) stamps entries with the leader's wall clock; --clock client\n"
            "lets clients drive ledger time with POST_AT (replays, drills): give every replica\n"
            "of a cluster the same --clock.\n"
            "--commit-ms MS (default 20, at most 1000) commits the ledger file once its oldest\n"
            "uncommitted entry is MS old (the Raft log holds those entries durably meanwhile);\n"
            "0 commits at every entry, one disk flush each.\n"
            "Exit codes: 0 stopped cleanly, 2 usage, 3 cannot start (address, directory), 4 error.\n");
}

static void config_release(struct config *c)
{
    free((char *)c->dir);
    free((char *)c->listen);
    free((char *)c->raft);
    free((char *)c->raft_bind);
    free((char *)c->metrics);
}

static int add_peer(struct config *c, const char *spec)
{
    if (c->npeers == REPLICA_PEERS_MAX)
        return -1;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", spec);
    char *raft = strchr(buf, ','), *client = raft ? strchr(raft + 1, ',') : NULL;
    if (raft == NULL || client == NULL)
        return -1;
    *raft++ = '\0';
    *client++ = '\0';
    struct replica_peer *p = &c->peers[c->npeers];
    char *end;
    p->id = strtoull(buf, &end, 10);
    if (*end != '\0' || p->id == 0 || strlen(raft) >= sizeof(p->raft_address) ||
        strlen(client) >= sizeof(p->client_address))
        return -1;
    strcpy(p->raft_address, raft);
    strcpy(p->client_address, client);
    c->npeers++;
    return 0;
}

/* A string option given twice keeps the last value. */
static void set_string(const char **field, const char *value)
{
    free((char *)*field);
    *field = strdup(value);
}

static int set_option(struct config *c, const char *name, const char *value)
{
    char *end = NULL;
    if (strcmp(name, "id") == 0)
        c->id = strtoull(value, &end, 10);
    else if (strcmp(name, "dir") == 0)
        set_string(&c->dir, value);
    else if (strcmp(name, "listen") == 0)
        set_string(&c->listen, value);
    else if (strcmp(name, "raft") == 0)
        set_string(&c->raft, value);
    else if (strcmp(name, "raft-bind") == 0)
        set_string(&c->raft_bind, value);
    else if (strcmp(name, "metrics") == 0)
        set_string(&c->metrics, value);
    else if (strcmp(name, "peer") == 0)
        return add_peer(c, value);
    else if (strcmp(name, "io") == 0)
        c->io = strcmp(value, "uring") == 0 ? NET_URING : strcmp(value, "epoll") == 0 ? NET_EPOLL
                : strcmp(value, "auto") == 0 ? NET_AUTO : (enum net_backend)99;
    else if (strcmp(name, "election-timeout") == 0)
        c->election_ms = (unsigned)strtoul(value, &end, 10);
    else if (strcmp(name, "heartbeat") == 0)
        c->heartbeat_ms = (unsigned)strtoul(value, &end, 10);
    else if (strcmp(name, "tick") == 0)
        c->tick_ms = (unsigned)strtoul(value, &end, 10);
    else if (strcmp(name, "snapshot-threshold") == 0)
        c->snapshot_threshold = (unsigned)strtoul(value, &end, 10);
    else if (strcmp(name, "snapshot-trailing") == 0)
        c->snapshot_trailing = (unsigned)strtoul(value, &end, 10);
    else if (strcmp(name, "commit-ms") == 0) {
        c->commit_ms = strtol(value, &end, 10);
        if (c->commit_ms < 0) /* -1 is the unset default, never a value */
            return -1;
    }
    else if (strcmp(name, "clock") == 0)
        c->clock = strcmp(value, "wall") == 0     ? REPLICA_CLOCK_WALL
                   : strcmp(value, "client") == 0 ? REPLICA_CLOCK_CLIENT
                                                  : -1;
    else
        return -1;
    if (c->io > NET_EPOLL || c->clock < 0 || c->commit_ms > 1000)
        return -1;
    return end != NULL && *end != '\0' ? -1 : 0;
}

static int read_config_file(struct config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[512];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "\r\n#")] = '\0';
        if (*s == '\0')
            continue;
        char *v = s + strcspn(s, " \t");
        if (*v != '\0')
            *v++ = '\0';
        v += strspn(v, " \t");
        v[strcspn(v, " \t")] = '\0';
        rc = set_option(c, s, v);
    }
    fclose(f);
    return rc;
}

static int parse(struct config *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc)
            return -1;
        int rc = strcmp(a, "--config") == 0 ? read_config_file(c, argv[i + 1])
                                             : set_option(c, a + 2, argv[i + 1]);
        if (rc != 0) {
            fprintf(stderr, "tallyd: bad option %s %s\n", a, argv[i + 1]);
            return -1;
        }
        i++;
    }
    if (c->id == 0 || c->dir == NULL)
        return -1;
    if (c->npeers == 0) { /* a cluster of one */
        struct replica_peer *p = &c->peers[c->npeers++];
        p->id = c->id;
        snprintf(p->raft_address, sizeof(p->raft_address), "%s",
                 c->raft ? c->raft : "127.0.0.1:7501");
        snprintf(p->client_address, sizeof(p->client_address), "%s",
                 c->listen ? c->listen : "127.0.0.1:7401");
    }
    return 0;
}

/* ---- the process ----------------------------------------------------------------------------- */

struct tallyd {
    uv_loop_t *loop;
    struct replica *replica;
    struct net *net;
    struct front *front;
    struct metrics *metrics;
    uv_signal_t sigterm, sigint;
    bool stopping;
};

static void net_closed(void *arg)
{
    struct tallyd *d = arg;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void replica_stopped(void *arg)
{
    struct tallyd *d = arg;
    net_close(d->net, net_closed, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct tallyd *d = s->data;
    if (d->stopping)
        return;
    d->stopping = true;
    LOG_INFO("stopping", "signal=%d", signum);
    metrics_stop(d->metrics); /* first: it reads the replica */
    d->metrics = NULL;
    replica_stop(d->replica, replica_stopped, d);
}

static void cluster_id_of(const struct config *c, uint8_t out[16])
{
    /* The same on every replica given the same peers: a hash of the voter list. */
    XXH128_hash_t h = XXH3_128bits(c->peers, c->npeers * sizeof(c->peers[0]));
    XXH128_canonical_t can;
    XXH128_canonicalFromHash(&can, h);
    memcpy(out, can.digest, 16);
}

static const struct replica_peer *self_of(const struct config *c)
{
    for (uint32_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == c->id)
            return &c->peers[i];
    return NULL;
}

/* Exit 3 (cannot start: an address taken, a directory unusable). What main allocated itself is
 * released, so that a sanitized tallyd's leak check does not turn 3 into 1; the replica and the
 * network, once started, hold sockets and libraft's state on the loop, and the exit releases
 * those (they stay reachable from libuv's loop). */
static int cannot_start(struct front *front, struct config *c)
{
    front_free(front);
    config_release(c);
    return 3;
}

int main(int argc, char **argv)
{
    struct config c = {.io = NET_AUTO, .commit_ms = -1};
    if (parse(&c, argc, argv) != 0 || self_of(&c) == NULL) {
        usage(stderr);
        config_release(&c);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct tallyd d = {.loop = uv_default_loop()};
    uint8_t cluster_id[16];
    cluster_id_of(&c, cluster_id);
    struct front *front = NULL;
    int rc = front_init(&front, NULL, NULL, cluster_id);
    struct replica_options ro = {.id = c.id, .dir = c.dir, .peers = c.peers, .npeers = c.npeers,
                                 .raft_bind = c.raft_bind,
                                 .election_timeout_ms = c.election_ms,
                                 .heartbeat_ms = c.heartbeat_ms, .tick_ms = c.tick_ms,
                                 .snapshot_threshold = c.snapshot_threshold,
                                 .snapshot_trailing = c.snapshot_trailing,
                                 .clock = (enum replica_clock)c.clock,
                                 .commit_ms = c.commit_ms < 0 ? REPLICA_COMMIT_MS
                                              : c.commit_ms == 0 ? REPLICA_COMMIT_EACH
                                                                 : (unsigned)c.commit_ms,
                                 .done = front_posted,
                                 .ledger_free = front_ledger_free,
                                 .ledger_free_ctx = front};
    if (rc == 0)
        rc = replica_start(&d.replica, d.loop, &ro);
    if (rc != 0)
        return cannot_start(front, &c);
    front_set_replica(front, d.replica);
    struct net_options no = {.backend = c.io, .address = self_of(&c)->client_address};
    struct net_handler nh = {.ctx = front, .on_frame = front_frame};
    if ((rc = net_init(&d.net, d.loop, &no, &nh)) != 0) {
        LOG_ERROR("listen", "address=%s error=\"%s\"", no.address, tally_strerror(rc));
        return cannot_start(front, &c);
    }
    front_set_net(front, d.net);
    if (c.metrics != NULL && (rc = metrics_start(&d.metrics, d.loop, c.metrics, d.replica,
                                                 d.net, front)) != 0) {
        LOG_ERROR("metrics", "address=%s error=\"%s\"", c.metrics, tally_strerror(rc));
        return cannot_start(front, &c);
    }
    LOG_INFO("listening", "replica=%" PRIu64 " address=%s io=%s peers=%u metrics=%s clock=%s", c.id,
             net_address(d.net), net_backend_of(d.net) == NET_URING ? "io_uring" : "epoll",
             c.npeers, c.metrics != NULL ? c.metrics : "off",
             c.clock == REPLICA_CLOCK_CLIENT ? "client" : "wall");
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_run(d.loop, UV_RUN_DEFAULT);
    replica_free(d.replica);
    front_free(front);
    uv_loop_close(d.loop);
    raft_aio_drain(); /* the last segments' AIO contexts, handed to the helper thread */
    config_release(&c);
    LOG_INFO("exit", "replica=%" PRIu64, c.id);
    return 0;
}
