/* bench_pg.c: tally-bench-pg, the retail workload of bench/workload.h against the PostgreSQL
 * peer (bench/peers/pg: schema.sql, ledger.sql), through libpq.
 *
 * What it measures
 * ----------------
 * A PostgreSQL server that is already running with the peer's schema (bench/peers/pg/pg.sh
 * starts one) is driven by `clients` clients, one thread each (or --threads T threads driving
 * them all through libpq's asynchronous calls, as tally-bench --threads). Each client owns one
 * libpq connection and one workload generator (its own instance number and seed, as
 * tally-bench's clients), and sends batches of `batch` postings as fast as the server answers: one call of
 * ledger_apply(...) per batch, one transaction, committed durably before the answer comes
 * back (synchronous_commit = on). The results are fed back to the generator (workload_observe).
 *
 * 1. Setup (--setup; not measured): the PROGRAM posting (ledger_program) and one OPEN per
 *    member, in batches of 1,000.
 * 2. Throughput: `runs` runs of `seconds` wall seconds. A run's rate is the postings answered
 *    during it over its wall time, all clients together; the headline is the median over
 *    runs. Every batch's round trip (call sent to result read) gives the batch p50/p99.
 *    --till is the till case of `make bench`: single postings from 64 clients.
 *
 * Generators of one invocation use instances base+1 .. base+clients (--instance-base), so
 * that successive invocations on the same database never reuse a posting id.
 *
 * The call is a prepared statement (parsed and planned once per connection); parameters go as
 * text-format arrays (one per posting field); the batch timestamp is the generator's
 * simulated time, as in tally-bench-engine.
 *
 * Exit: 0 done; 2 usage; 3 the server could not be reached or a call failed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "tally_records.h"
#include "tally_results.h"
#include "proc.h"
#include "workload.h"

#define CLIENTS_MAX 64u
#define RUNS_MAX    32u
/* Largest batch a call carries: ledger_apply refuses more than tally's batch. */
#define BATCH_MAX TALLY_BATCH_MAX
/* Batch round trips kept per client for the percentiles (8 bytes each). */
#define CLIENT_SAMPLES_MAX (1u << 20)
#define SETUP_BATCH 1000u
/* Text of one posting's longest field element: a uuid (36), a bytea of 32 bytes ("\\x" and
 * 64 hex digits, quoted: 70) or a 20-digit number, plus separators. */
#define ELEMENT_MAX 80u
/* Arrays passed to ledger_apply (the posting's reserved fields are not: the workload leaves
 * them zero, and tally refuses nonzero ones before looking at the ledger). */
#define PARAMS 12

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_SERVER = 3 };

struct options {
    const char *conninfo;
    uint64_t members;
    uint32_t clients;
    uint32_t threads; /* threads driving the clients: one each (= clients), or fewer */
    uint32_t batch;
    uint32_t runs;
    uint32_t seconds;
    uint32_t instance_base;
    uint64_t seed;
    bool setup;
    const char *json_file;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU time (user + system) of a process so far, in clock ticks, from /proc/PID/stat; 0 if
 * unknown (the server runs on this machine: loopback only). Field 2 (comm) may hold spaces:
 * parse after its closing parenthesis. */
/* ---------------------------------------------------------------------------------------------
 * Translating postings into ledger_apply's text-format array parameters.
 * ------------------------------------------------------------------------------------------- */

struct call {
    char *buf[PARAMS]; /* each batch * ELEMENT_MAX + 16 bytes */
    char ts[24];
    const char *values[PARAMS + 1];
};

static const char APPLY_SQL[] =
    "SELECT code, detail, seq FROM ledger_apply($1::bigint, $2::uuid[], $3::integer[], "
    "$4::smallint[], $5::integer[], $6::bigint[], $7::uuid[], $8::bigint[], $9::bigint[], "
    "$10::bigint[], $11::bigint[], $12::bigint[], $13::bytea[])";

static bool id_zero(const uint8_t *id)
{
    for (int i = 0; i < 16; i++)
        if (id[i] != 0)
            return false;
    return true;
}

static char *put_uuid(char *o, const uint8_t *id)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[id[i] >> 4];
        *o++ = hex[id[i] & 15];
    }
    return o;
}

static char *put_bytea(char *o, const uint8_t *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(o, "\"\\\\x", 4);
    o += 4;
    for (size_t i = 0; i < n; i++) {
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o++ = '"';
    return o;
}

static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *o++ = tmp[--n];
    return o;
}

/* Fill the parameters for postings p[0..n). */
static void call_fill(struct call *c, const struct tally_posting *p, uint32_t n, uint64_t ts)
{
    char *o[PARAMS];
    snprintf(c->ts, sizeof(c->ts), "%" PRIu64, ts);
    c->values[0] = c->ts;
    for (int k = 0; k < PARAMS; k++) {
        o[k] = c->buf[k];
        *o[k]++ = '{';
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct tally_posting *x = &p[i];
        if (i > 0)
            for (int k = 0; k < PARAMS; k++)
                *o[k]++ = ',';
        o[0] = put_uuid(o[0], x->id);
        o[1] = put_u64(o[1], x->program);
        o[2] = put_u64(o[2], x->kind);
        o[3] = put_u64(o[3], x->flags);
        o[4] = put_u64(o[4], x->code);
        if (id_zero(x->ref)) {
            memcpy(o[5], "NULL", 4);
            o[5] += 4;
        } else {
            o[5] = put_uuid(o[5], x->ref);
        }
        o[6] = put_u64(o[6], x->account);
        o[7] = put_u64(o[7], x->account2);
        o[8] = put_u64(o[8], x->amount);
        o[9] = put_u64(o[9], x->value);
        o[10] = put_u64(o[10], x->duration_ms);
        o[11] = put_bytea(o[11], x->user_data, sizeof(x->user_data));
    }
    for (int k = 0; k < PARAMS; k++) {
        *o[k]++ = '}';
        *o[k] = '\0';
        c->values[k + 1] = c->buf[k];
    }
}

static int call_init(struct call *c, uint32_t batch)
{
    memset(c, 0, sizeof(*c));
    for (int k = 0; k < PARAMS; k++) {
        c->buf[k] = malloc((size_t)batch * ELEMENT_MAX + 16);
        if (c->buf[k] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static void call_deinit(struct call *c)
{
    for (int k = 0; k < PARAMS; k++)
        free(c->buf[k]);
}

/* The results of one ledger_apply call, results[0..n), from its result r (cleared here).
 * Returns 0, or -1 (message printed). */
static int call_results(PGconn *conn, PGresult *r, uint32_t n, struct tally_result *results)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != (int)n) {
        fprintf(stderr, "tally-bench-pg: ledger_apply failed: %s", PQerrorMessage(conn));
        PQclear(r);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        results[i].code = (uint32_t)strtoul(PQgetvalue(r, (int)i, 0), NULL, 10);
        results[i].detail = (uint32_t)strtoul(PQgetvalue(r, (int)i, 1), NULL, 10);
        results[i].seq = strtoull(PQgetvalue(r, (int)i, 2), NULL, 10);
    }
    PQclear(r);
    return 0;
}

/* One ledger_apply call: results[0..n) on success. Returns 0, or -1 (message printed). */
static int call_apply(PGconn *conn, struct call *c, const struct tally_posting *p, uint32_t n,
                      uint64_t ts, struct tally_result *results)
{
    call_fill(c, p, n, ts);
    return call_results(conn, PQexecPrepared(conn, "apply", PARAMS + 1, c->values, NULL, NULL, 0),
                        n, results);
}

static PGconn *connect_db(const struct options *o)
{
    PGconn *conn = PQconnectdb(o->conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "tally-bench-pg: cannot connect (%s): %s", o->conninfo,
                PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    /* Parsed and planned once per connection, as any production client would. */
    PGresult *r = PQprepare(conn, "apply", APPLY_SQL, PARAMS + 1, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "tally-bench-pg: cannot prepare ledger_apply: %s", PQerrorMessage(conn));
        PQclear(r);
        PQfinish(conn);
        return NULL;
    }
    PQclear(r);
    return conn;
}

/* ---------------------------------------------------------------------------------------------
 * Setup: the program, then every member.
 * ------------------------------------------------------------------------------------------- */

static int setup_program(PGconn *conn, const struct tally_posting *p, uint64_t ts)
{
    const struct tally_program_config *k = &p->config;
    char v[15][64];
    const char *values[15];
    char *o = v[0];
    o = put_uuid(o, p->id);
    *o = '\0';
    snprintf(v[1], 64, "%u", p->program);
    snprintf(v[2], 64, "%" PRIu64, ts);
    snprintf(v[3], 64, "%u", k->expiry);
    snprintf(v[4], 64, "%u", k->expiry_n);
    snprintf(v[5], 64, "%u", k->tier_mode);
    snprintf(v[6], 64, "%u", k->window);
    snprintf(v[7], 64, "%u", k->window_months);
    snprintf(v[8], 64, "%u", k->validity_months);
    snprintf(v[9], 64, "%u", k->tier_count);
    snprintf(v[10], 64, "%u", k->flags);
    snprintf(v[11], 64, "%d", k->tz_offset_min);
    snprintf(v[12], 64, "%" PRIu64, k->expiry_fixed_at);
    snprintf(v[13], 64, "%" PRIu64, k->hold_timeout_ms);
    o = v[14];
    *o++ = '{';
    for (uint32_t t = 0; t + 1 < k->tier_count && t < TALLY_TIERS_MAX - 1; t++) {
        if (t > 0)
            *o++ = ',';
        o = put_u64(o, k->thresholds[t]);
    }
    *o++ = '}';
    *o = '\0';
    for (int i = 0; i < 15; i++)
        values[i] = v[i];
    PGresult *r = PQexecParams(conn,
                               "SELECT code FROM ledger_program($1, $2, $3, $4, $5, $6, $7, $8, "
                               "$9, $10, $11, $12, $13, $14, $15)",
                               15, NULL, values, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        uint32_t code = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        rc = code == TALLY_OK || code == TALLY_EXISTS ? 0 : -1;
        if (rc != 0)
            fprintf(stderr, "tally-bench-pg: PROGRAM refused: %s\n", tally_result_name(code));
    } else {
        fprintf(stderr, "tally-bench-pg: ledger_program failed: %s", PQerrorMessage(conn));
    }
    PQclear(r);
    return rc;
}

static int setup(const struct options *o, struct workload *w, uint64_t *postings)
{
    PGconn *conn = connect_db(o);
    if (conn == NULL)
        return EXIT_SERVER;
    struct tally_posting *p = calloc(SETUP_BATCH, sizeof(*p));
    struct tally_result *r = calloc(SETUP_BATCH, sizeof(*r));
    struct call c;
    if (p == NULL || r == NULL || call_init(&c, SETUP_BATCH) != 0)
        abort();
    int status = EXIT_OK;
    /* Bounded: the setup is 1 + ceil(members / SETUP_BATCH) batches. */
    for (uint64_t b = 0; b <= o->members / SETUP_BATCH + 2; b++) {
        uint32_t count = 0;
        uint64_t ts;
        workload_setup_batch(w, p, SETUP_BATCH, &count, &ts);
        if (count == 0)
            break;
        if (p[0].kind == TALLY_KIND_PROGRAM) {
            if (setup_program(conn, &p[0], ts) != 0) {
                status = EXIT_SERVER;
                break;
            }
            *postings += 1;
            continue;
        }
        if (call_apply(conn, &c, p, count, ts, r) != 0) {
            status = EXIT_SERVER;
            break;
        }
        for (uint32_t i = 0; i < count; i++) {
            if (r[i].code != TALLY_OK && r[i].code != TALLY_EXISTS) {
                fprintf(stderr, "tally-bench-pg: setup posting refused: %s\n",
                        tally_result_name(r[i].code));
                status = EXIT_SERVER;
                goto out;
            }
        }
        *postings += count;
    }
out:
    call_deinit(&c);
    free(p);
    free(r);
    PQfinish(conn);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * The load: one thread per client, or --threads drivers.
 * ------------------------------------------------------------------------------------------- */

/* Shared by the load threads. phase: 0 wait, 1 post and count, 2 stop. */
struct load {
    const struct options *opts;
    _Atomic int phase;
    _Atomic uint64_t run_postings;
    _Atomic uint64_t run_ok;
    _Atomic uint64_t run_batches;
    _Atomic uint64_t codes[TALLY_RESULT_CODE_LIMIT];
    _Atomic int failed;
};

struct client_thread {
    pthread_t thread;
    struct load *load;
    PGconn *conn;
    int backend_pid; /* the server process serving this connection */
    struct workload workload;
    struct call call;
    struct tally_posting *postings;
    struct tally_result *results;
    uint64_t *rtt_ns;
    uint64_t rtt_count;
    uint32_t count; /* the batch being made: its postings and stamp */
    uint64_t ts;
    bool busy, answered; /* driven clients: a call in flight; its result read */
    uint64_t sent;       /* when it was sent */
};

/* The next batch of client t: t->count postings in t->postings, stamped t->ts. */
static void client_next(struct client_thread *t)
{
    if (workload_next_batch(&t->workload, t->postings, t->load->opts->batch, &t->count, &t->ts) !=
        0)
        abort(); /* options were checked: the generator cannot refuse */
}

/* Count client t's answered batch (t->results), whose round trip took rtt ns. */
static void client_account(struct client_thread *t, uint64_t rtt)
{
    struct load *l = t->load;
    workload_observe(&t->workload, t->results, t->count);
    if (atomic_load(&l->phase) != 1)
        return; /* answered after the run ended: not counted */
    uint64_t ok = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        ok += t->results[i].code == TALLY_OK;
        if (t->results[i].code < TALLY_RESULT_CODE_LIMIT)
            atomic_fetch_add(&l->codes[t->results[i].code], 1);
    }
    atomic_fetch_add(&l->run_postings, t->count);
    atomic_fetch_add(&l->run_ok, ok);
    atomic_fetch_add(&l->run_batches, 1);
    if (t->rtt_count < CLIENT_SAMPLES_MAX)
        t->rtt_ns[t->rtt_count++] = rtt;
}

static void *client_main(void *arg)
{
    struct client_thread *t = arg;
    struct load *l = t->load;
    while (atomic_load(&l->phase) == 0)
        usleep(1000);
    while (atomic_load(&l->phase) == 1) {
        client_next(t);
        uint64_t start = now_ns();
        if (call_apply(t->conn, &t->call, t->postings, t->count, t->ts, t->results) != 0) {
            atomic_store(&l->failed, 1);
            break;
        }
        client_account(t, now_ns() - start);
    }
    return NULL;
}

/* Driven clients (--threads below --clients), as tally-bench's: thread d drives connections d,
 * d + T, d + 2T, ... through libpq's asynchronous calls (PQsendQueryPrepared, then
 * PQconsumeInput / PQgetResult when the socket is readable), each in the same closed loop as
 * client_main, its round trip from the send to the moment this thread read the whole answer. */
struct driver {
    pthread_t thread;
    struct load *load;
    struct client_thread *t;
    uint32_t index;
};

static int driven_send(struct client_thread *t)
{
    client_next(t);
    call_fill(&t->call, t->postings, t->count, t->ts);
    t->sent = now_ns();
    t->answered = false;
    if (!PQsendQueryPrepared(t->conn, "apply", PARAMS + 1, t->call.values, NULL, NULL, 0)) {
        fprintf(stderr, "tally-bench-pg: cannot send ledger_apply: %s", PQerrorMessage(t->conn));
        return -1;
    }
    return 0;
}

/* Take what has come for client t's call: 1 answered (and counted), 0 not yet, -1 failed. */
static int driven_read(struct client_thread *t)
{
    if (!PQconsumeInput(t->conn)) {
        fprintf(stderr, "tally-bench-pg: connection lost: %s", PQerrorMessage(t->conn));
        return -1;
    }
    while (!PQisBusy(t->conn)) {
        PGresult *r = PQgetResult(t->conn);
        if (r == NULL) { /* the call's results are all in */
            if (!t->answered) {
                fprintf(stderr, "tally-bench-pg: ledger_apply gave no result\n");
                return -1;
            }
            client_account(t, now_ns() - t->sent);
            return 1;
        }
        if (t->answered) {
            PQclear(r);
            fprintf(stderr, "tally-bench-pg: ledger_apply gave more than one result\n");
            return -1;
        }
        if (call_results(t->conn, r, t->count, t->results) != 0)
            return -1;
        t->answered = true;
    }
    return 0;
}

static void *driver_main(void *arg)
{
    struct driver *d = arg;
    struct load *l = d->load;
    const struct options *o = l->opts;
    struct client_thread *mine[CLIENTS_MAX];
    struct pollfd pfd[CLIENTS_MAX];
    uint32_t n = 0, at[CLIENTS_MAX];
    for (uint32_t i = d->index; i < o->clients; i += o->threads)
        mine[n++] = &d->t[i];
    while (atomic_load(&l->phase) == 0)
        usleep(1000);
    /* New calls only while the load runs; then those in flight are answered and the loop ends
     * (a server that never answers is bounded by the suite's timeout, as client_main's wait). */
    for (;;) {
        bool run = atomic_load(&l->phase) == 1 && atomic_load(&l->failed) == 0;
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct client_thread *t = mine[i];
            if (!t->busy && run) {
                if (driven_send(t) != 0) {
                    atomic_store(&l->failed, 1);
                    run = false;
                    continue;
                }
                t->busy = true;
            }
            if (t->busy) {
                pfd[m] = (struct pollfd){.fd = PQsocket(t->conn), .events = POLLIN};
                at[m++] = i;
            }
        }
        if (m == 0)
            break;
        (void)poll(pfd, m, 10);
        for (uint32_t j = 0; j < m; j++) {
            struct client_thread *t = mine[at[j]];
            if (pfd[j].revents == 0)
                continue;
            int rc = driven_read(t);
            if (rc < 0)
                atomic_store(&l->failed, 1);
            if (rc != 0)
                t->busy = false; /* answered, or its connection is of no more use */
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Main.
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench-pg --conninfo STR [--setup] [--members N] [--clients N]\n"
            "           [--batch N] [--runs N] [--seconds S] [--till] [--instance-base N]\n"
            "           [--seed N] [--json-file FILE] [--threads T]\n"
            "Drives the PostgreSQL peer (bench/peers/pg); see docs/BENCHMARKS.md.\n"
            "--setup creates the program and the members first (not measured); --runs 0\n"
            "with --setup only sets up. --till: batches of 1 from 64 clients. --threads T:\n"
            "T threads drive the clients' connections (libpq's asynchronous calls) instead\n"
            "of one thread each.\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .members = 100000, .clients = 4, .batch = 1000, .runs = 5, .seconds = 10, .seed = 1,
    };
    static const struct option longs[] = {
        {"conninfo", required_argument, 0, 'c'}, {"members", required_argument, 0, 'm'},
        {"clients", required_argument, 0, 'n'},  {"batch", required_argument, 0, 'b'},
        {"runs", required_argument, 0, 'r'},     {"seconds", required_argument, 0, 's'},
        {"till", no_argument, 0, 't'},           {"setup", no_argument, 0, 'u'},
        {"instance-base", required_argument, 0, 'i'},
        {"seed", required_argument, 0, 'S'},     {"json-file", required_argument, 0, 'j'},
        {"threads", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    int ch, li = 0;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'c': o->conninfo = optarg; break;
        case 'm': ok = parse_u64(optarg, 2, WORKLOAD_MEMBERS_MAX, &o->members); break;
        case 'n': ok = parse_u64(optarg, 1, CLIENTS_MAX, &v), o->clients = (uint32_t)v; break;
        case 'b': ok = parse_u64(optarg, 1, BATCH_MAX, &v), o->batch = (uint32_t)v; break;
        case 'r': ok = parse_u64(optarg, 0, RUNS_MAX, &v), o->runs = (uint32_t)v; break;
        case 's': ok = parse_u64(optarg, 1, 3600, &v), o->seconds = (uint32_t)v; break;
        case 't': o->batch = 1, o->clients = 64; break;
        case 'T': ok = parse_u64(optarg, 1, CLIENTS_MAX, &v), o->threads = (uint32_t)v; break;
        case 'u': o->setup = true; break;
        case 'i': ok = parse_u64(optarg, 0, 60000, &v), o->instance_base = (uint32_t)v; break;
        case 'S': ok = parse_u64(optarg, 0, UINT64_MAX, &o->seed); break;
        case 'j': o->json_file = optarg; break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default: usage(stderr); return EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "tally-bench-pg: bad value for --%s: %s\n", longs[li].name, optarg);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (o->conninfo == NULL || optind != argc || (o->runs == 0 && !o->setup)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (o->threads == 0 || o->threads > o->clients)
        o->threads = o->clients;
    return EXIT_OK;
}

static void workload_for(struct workload *w, const struct options *o, uint32_t instance)
{
    struct workload_options wo;
    workload_options_default(&wo);
    wo.seed = o->seed * 1000003u + instance;
    wo.members = o->members;
    wo.program = 1;
    wo.instance = (uint16_t)instance;
    if (workload_init(w, &wo) != 0) {
        fprintf(stderr, "tally-bench-pg: cannot allocate a workload generator\n");
        exit(EXIT_USAGE);
    }
}

static void write_json(const struct options *o, const double *rates, const uint64_t *postings,
                       const uint64_t *oks, double median, uint64_t p50, uint64_t p99,
                       uint64_t batches, double server_us, double server_pct)
{
    FILE *f = fopen(o->json_file, "w");
    if (f == NULL) {
        fprintf(stderr, "tally-bench-pg: cannot write %s\n", o->json_file);
        return;
    }
    fprintf(f, "{\"peer\":\"postgresql\",\"clients\":%u,\"threads\":%u,\"batch\":%u,"
            "\"members\":%" PRIu64 ",\"runs\":[", o->clients, o->threads, o->batch, o->members);
    for (uint32_t r = 0; r < o->runs; r++)
        fprintf(f, "%s{\"postings\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"rate\":%.0f}", r ? "," : "",
                postings[r], oks[r], rates[r]);
    fprintf(f, "],\"median_rate\":%.0f,\"batch_p50_ns\":%" PRIu64 ",\"batch_p99_ns\":%" PRIu64
            ",\"batches\":%" PRIu64 ",\"server_cpu_us_per_posting\":%.1f"
            ",\"server_cpu_pct\":%.0f}\n", median, p50, p99, batches, server_us, server_pct);
    fclose(f);
}

static int measure(const struct options *o)
{
    static struct load load;
    load.opts = o;
    struct client_thread *t = calloc(o->clients, sizeof(*t));
    if (t == NULL)
        abort();
    for (uint32_t i = 0; i < o->clients; i++) {
        t[i].load = &load;
        workload_for(&t[i].workload, o, o->instance_base + i + 1);
        workload_setup_skip(&t[i].workload);
        t[i].postings = calloc(o->batch, sizeof(*t[i].postings));
        t[i].results = calloc(o->batch, sizeof(*t[i].results));
        t[i].rtt_ns = calloc(CLIENT_SAMPLES_MAX, sizeof(*t[i].rtt_ns));
        if (t[i].postings == NULL || t[i].results == NULL || t[i].rtt_ns == NULL ||
            call_init(&t[i].call, o->batch) != 0)
            abort();
        t[i].conn = connect_db(o);
        if (t[i].conn == NULL)
            return EXIT_SERVER;
        t[i].backend_pid = PQbackendPID(t[i].conn);
        if (o->threads == o->clients &&
            pthread_create(&t[i].thread, NULL, client_main, &t[i]) != 0)
            abort();
    }
    struct driver *drivers = NULL;
    if (o->threads < o->clients) {
        drivers = calloc(o->threads, sizeof(*drivers));
        if (drivers == NULL)
            abort();
        for (uint32_t d = 0; d < o->threads; d++) {
            drivers[d] = (struct driver){.load = &load, .t = t, .index = d};
            if (pthread_create(&drivers[d].thread, NULL, driver_main, &drivers[d]) != 0)
                abort();
        }
    }
    double rates[RUNS_MAX];
    uint64_t postings[RUNS_MAX], oks[RUNS_MAX];
    printf("%u clients (%u threads), batches of %u, %u runs of %u s, PostgreSQL (durable "
           "commits)\n", o->clients, o->threads, o->batch, o->runs, o->seconds);
    printf("%4s %12s %10s %8s %12s\n", "run", "postings", "ok", "batches", "postings/s");
    uint64_t cpu0 = 0, cpu1 = 0, self0 = bench_process_cpu_ticks((int)getpid());
    for (uint32_t i = 0; i < o->clients; i++)
        cpu0 += bench_process_cpu_ticks(t[i].backend_pid);
    uint64_t load_start = now_ns();
    atomic_store(&load.phase, 1);
    uint32_t done = 0;
    for (uint32_t r = 0; r < o->runs && atomic_load(&load.failed) == 0; r++) {
        uint64_t p0 = atomic_load(&load.run_postings), ok0 = atomic_load(&load.run_ok);
        uint64_t b0 = atomic_load(&load.run_batches);
        uint64_t start = now_ns();
        uint64_t end = start + (uint64_t)o->seconds * UINT64_C(1000000000);
        while (now_ns() < end && atomic_load(&load.failed) == 0)
            usleep(10 * 1000);
        uint64_t wall = now_ns() - start;
        postings[r] = atomic_load(&load.run_postings) - p0;
        oks[r] = atomic_load(&load.run_ok) - ok0;
        rates[r] = (double)postings[r] / ((double)wall / 1e9);
        printf("%4u %12" PRIu64 " %10" PRIu64 " %8" PRIu64 " %12.0f\n", r + 1, postings[r], oks[r],
               atomic_load(&load.run_batches) - b0, rates[r]);
        fflush(stdout);
        done++;
    }
    double load_s = (double)(now_ns() - load_start) / 1e9;
    for (uint32_t i = 0; i < o->clients; i++)
        cpu1 += bench_process_cpu_ticks(t[i].backend_pid);
    uint64_t self1 = bench_process_cpu_ticks((int)getpid());
    atomic_store(&load.phase, 2);
    uint64_t total = 0;
    for (uint32_t d = 0; drivers != NULL && d < o->threads; d++)
        pthread_join(drivers[d].thread, NULL);
    free(drivers);
    for (uint32_t i = 0; i < o->clients; i++) {
        if (o->threads == o->clients)
            pthread_join(t[i].thread, NULL);
        total += t[i].rtt_count;
    }
    if (atomic_load(&load.failed) != 0 || done == 0)
        return EXIT_SERVER;
    uint64_t *rtt = calloc(total + 1, sizeof(*rtt));
    if (rtt == NULL)
        abort();
    uint64_t k = 0;
    for (uint32_t i = 0; i < o->clients; i++) {
        memcpy(rtt + k, t[i].rtt_ns, t[i].rtt_count * sizeof(*rtt));
        k += t[i].rtt_count;
        PQfinish(t[i].conn);
        workload_deinit(&t[i].workload);
        call_deinit(&t[i].call);
        free(t[i].postings);
        free(t[i].results);
        free(t[i].rtt_ns);
    }
    free(t);
    qsort(rtt, k, sizeof(*rtt), compare_u64);
    uint64_t p50 = bench_percentile(rtt, k, 0.50), p99 = bench_percentile(rtt, k, 0.99);
    free(rtt);
    double sorted[RUNS_MAX];
    memcpy(sorted, rates, done * sizeof(double));
    qsort(sorted, done, sizeof(double), compare_double);
    double median = done % 2 ? sorted[done / 2] : (sorted[done / 2 - 1] + sorted[done / 2]) / 2;
    printf("median: %.0f postings/s; batch round trip p50 %.2f ms, p99 %.2f ms (%" PRIu64
           " batches)\nresults:", median, (double)p50 / 1e6, (double)p99 / 1e6, k);
    for (uint32_t c = 0; c < TALLY_RESULT_CODE_LIMIT; c++) {
        uint64_t n = atomic_load(&load.codes[c]);
        if (n > 0)
            printf(" %s %" PRIu64, tally_result_name(c), n);
    }
    printf("\n");
    /* Only the backends serving the clients: the WAL writer, checkpointer and autovacuum are
     * not counted (they are a few percent here). */
    double tick = (double)sysconf(_SC_CLK_TCK), counted = 0;
    for (uint32_t r = 0; r < done; r++)
        counted += (double)postings[r];
    double server_cpu_s = (double)(cpu1 - cpu0) / tick;
    double server_us = counted > 0 ? server_cpu_s * 1e6 / counted : 0;
    printf("server backends: %.1f CPU s in %.1f s (%.0f%% of a core), %.1f CPU us per posting; "
           "this driver: %.1f CPU s\n", server_cpu_s, load_s, 100 * server_cpu_s / load_s,
           server_us, (double)(self1 - self0) / tick);
    if (o->json_file != NULL)
        write_json(o, rates, postings, oks, median, p50, p99, k, server_us,
                   100 * server_cpu_s / load_s);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct options o;
    int status = parse(argc, argv, &o);
    if (status != EXIT_OK)
        return status;
    if (o.setup) {
        struct workload w;
        workload_for(&w, &o, 0);
        uint64_t n = 0, start = now_ns();
        printf("setup: program 1 and %" PRIu64 " members ...\n", o.members);
        fflush(stdout);
        status = setup(&o, &w, &n);
        workload_deinit(&w);
        if (status != EXIT_OK)
            return status;
        double s = (double)(now_ns() - start) / 1e9;
        printf("setup: %" PRIu64 " postings in %.1f s (%.0f/s)\n", n, s, (double)n / s);
    }
    if (o.runs == 0)
        return EXIT_OK;
    return measure(&o);
}
