/* bench_cluster.c: tally-bench-cluster, the end-to-end benchmark of a running cluster.
 *
 * What it measures
 * ----------------
 * A cluster that is already running (bench/cluster.sh starts three durable tallyd replicas on
 * loopback and points this program at them) is driven through libtally, over real sockets, by
 * `clients` threads. Each thread owns one struct tally_client (one session, one request in
 * flight, as libtally allows) and one retail workload generator of workload.h (its own instance
 * number and seed), and posts batches of `batch` postings as fast as the cluster answers.
 *
 * 1. Setup (not measured): one client creates the program and opens every member.
 * 2. Throughput: `runs` runs of `seconds` wall seconds each. A run's rate is the postings that
 *    were answered (committed by a majority, applied, and replied to) during the run, over the
 *    run's wall time, all clients together. The headline is the median over runs. Every batch's
 *    round trip (request sent to reply read, retries included) is kept for its p50/p99.
 * 3. Latency: one client alone posts single-posting batches (one ACCRUE each), one after the
 *    other, for `latency_seconds` or `latency_requests`, whichever comes first: the p50/p99 of
 *    a posting's round trip on an idle cluster, i.e. one Raft entry, replicated and fsynced by a
 *    majority, then applied and fsynced in LMDB, per posting.
 * 4. Convergence: once the load stops, every replica's status is read until all report the same
 *    applied index; the program fails unless they then also report the same state digest.
 *
 * What it does not measure: the time-driven work of the engine benchmark's compressed simulated
 * clock. The leader stamps batches with its wall clock, so in a run of seconds no pending
 * window closes and no lot expires; hold timeouts, accruals, redemptions, returns, transfers and
 * adjustments are all there (workload.h's mix).
 *
 * Output: a table for people; --json-file also writes one JSON object (printed by hand: every
 * value is a number or a fixed word).
 *
 * Exit: 0 done; 2 usage; 3 the cluster could not be reached or failed a request; 4 the replicas
 * did not converge to one digest.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"
#include "workload.h"

#define CLIENTS_MAX           64u
#define RUNS_MAX              32u
#define REQUEST_TIMEOUT_MS    60000u
#define LATENCY_REQUESTS_MAX  100000u
#define CONVERGE_SECONDS      60u
#define STATUS_MAX            16u
/* Batch round trips kept per client for the percentiles (8 bytes each). */
#define CLIENT_SAMPLES_MAX    (1u << 20)

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_CLUSTER = 3, EXIT_DIVERGED = 4 };

struct options {
    const char *addresses;
    uint64_t members;
    uint32_t clients;
    uint32_t batch;
    uint32_t runs;
    uint32_t seconds;
    uint32_t latency_seconds;
    uint32_t latency_requests;
    uint64_t seed;
    const char *json_file;
    pid_t pids[STATUS_MAX]; /* --pids: the replicas' processes, for their CPU time */
    uint32_t npids;
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
 * unknown. Field 2 (comm) may hold spaces: parse after its closing parenthesis. */
static uint64_t process_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    unsigned long long utime = 0, stime = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2)
        return 0;
    return utime + stime;
}

/* ---------------------------------------------------------------------------------------------
 * The load: one thread per client.
 * ------------------------------------------------------------------------------------------- */

/* Shared by the load threads. phase: 0 wait, 1 post and count, 2 stop. */
struct load {
    const struct options *opts;
    _Atomic int phase;
    _Atomic uint64_t run_postings;   /* postings answered in the current run */
    _Atomic uint64_t run_ok;
    _Atomic uint64_t run_batches;
    _Atomic int failed;              /* a client got an error: its code */
};

struct client_thread {
    pthread_t thread;
    struct load *load;
    uint32_t index;
    struct tally_client *client;
    struct workload workload;
    struct tally_posting *postings;
    struct tally_result *results;
    uint64_t *rtt_ns; /* round trips of the batches posted during runs */
    uint64_t rtt_count;
};

static void *client_main(void *arg)
{
    struct client_thread *t = arg;
    struct load *l = t->load;
    const struct options *o = l->opts;
    while (atomic_load(&l->phase) == 0)
        usleep(1000);
    while (atomic_load(&l->phase) == 1) {
        uint32_t count = 0;
        uint64_t ts;
        if (workload_next_batch(&t->workload, t->postings, o->batch, &count, &ts) != 0)
            abort(); /* options were checked: the generator cannot refuse */
        uint64_t start = now_ns();
        int rc = tally_client_post(t->client, t->postings, count, t->results, REQUEST_TIMEOUT_MS);
        uint64_t rtt = now_ns() - start;
        if (rc != 0) {
            atomic_store(&l->failed, rc);
            break;
        }
        workload_observe(&t->workload, t->results, count);
        if (atomic_load(&l->phase) != 1)
            break; /* answered after the run ended: not counted */
        uint64_t ok = 0;
        for (uint32_t i = 0; i < count; i++)
            ok += t->results[i].code == TALLY_OK;
        atomic_fetch_add(&l->run_postings, count);
        atomic_fetch_add(&l->run_ok, ok);
        atomic_fetch_add(&l->run_batches, 1);
        if (t->rtt_count < CLIENT_SAMPLES_MAX)
            t->rtt_ns[t->rtt_count++] = rtt;
    }
    return NULL;
}

static int client_open(struct tally_client **c, const struct options *o, const char *label)
{
    struct tally_client_options co = {
        .addresses = o->addresses,
        .timeout_ms = REQUEST_TIMEOUT_MS,
        .label = label,
    };
    int rc = tally_client_open(c, &co);
    if (rc != 0)
        fprintf(stderr, "tally-bench-cluster: cannot open a session on %s: %s\n", o->addresses,
                tally_strerror(rc));
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Phases.
 * ------------------------------------------------------------------------------------------- */

static int setup(const struct options *o, struct workload *w, uint64_t *postings, uint64_t *ns)
{
    struct tally_client *c;
    if (client_open(&c, o, "bench-setup") != 0)
        return EXIT_CLUSTER;
    struct tally_posting *p = calloc(TALLY_BATCH_MAX, sizeof(*p));
    struct tally_result *r = calloc(TALLY_BATCH_MAX, sizeof(*r));
    if (p == NULL || r == NULL)
        abort();
    uint64_t start = now_ns();
    int status = EXIT_OK;
    for (;;) {
        uint32_t count = 0;
        uint64_t ts;
        workload_setup_batch(w, p, o->batch, &count, &ts);
        if (count == 0)
            break;
        int rc = tally_client_post(c, p, count, r, REQUEST_TIMEOUT_MS);
        if (rc != 0) {
            fprintf(stderr, "tally-bench-cluster: setup POST failed: %s\n", tally_strerror(rc));
            status = EXIT_CLUSTER;
            break;
        }
        for (uint32_t i = 0; i < count; i++) {
            /* EXISTS: the benchmark was run before on the same cluster; still usable. */
            if (r[i].code != TALLY_OK && r[i].code != TALLY_EXISTS) {
                fprintf(stderr, "tally-bench-cluster: setup posting %u refused: code %u\n", i,
                        r[i].code);
                status = EXIT_CLUSTER;
                goto out;
            }
        }
        *postings += count;
    }
out:
    *ns = now_ns() - start;
    free(p);
    free(r);
    tally_client_close(c);
    return status;
}

struct latency_result {
    uint64_t requests, ok, p50_ns, p99_ns, max_ns;
};

/* Single-posting ACCRUEs of 1 point to members 1.. in turn, one at a time. */
static int latency(const struct options *o, struct latency_result *out)
{
    struct tally_client *c;
    if (client_open(&c, o, "bench-latency") != 0)
        return EXIT_CLUSTER;
    uint64_t *rtt = calloc(LATENCY_REQUESTS_MAX, sizeof(*rtt));
    if (rtt == NULL)
        abort();
    uint64_t deadline = now_ns() + (uint64_t)o->latency_seconds * UINT64_C(1000000000);
    int status = EXIT_OK;
    uint64_t n = 0;
    while (n < o->latency_requests && now_ns() < deadline) {
        struct tally_posting p = {
            .program = 1,
            .kind = TALLY_KIND_ACCRUE,
            .account = 1 + n % o->members,
            .amount = 1,
        };
        tally_client_id(c, p.id);
        struct tally_result r;
        uint64_t start = now_ns();
        int rc = tally_client_post(c, &p, 1, &r, REQUEST_TIMEOUT_MS);
        rtt[n] = now_ns() - start;
        if (rc != 0) {
            fprintf(stderr, "tally-bench-cluster: latency POST failed: %s\n", tally_strerror(rc));
            status = EXIT_CLUSTER;
            break;
        }
        out->ok += r.code == TALLY_OK;
        n++;
    }
    out->requests = n;
    qsort(rtt, n, sizeof(*rtt), compare_u64);
    out->p50_ns = bench_percentile(rtt, n, 0.50);
    out->p99_ns = bench_percentile(rtt, n, 0.99);
    out->max_ns = n > 0 ? rtt[n - 1] : 0;
    free(rtt);
    tally_client_close(c);
    return status;
}

/* Wait until every replica reports the same applied index, then compare digests. */
static int converge(const struct options *o, struct tally_replica_status *st, uint32_t *count)
{
    struct tally_client_options co = {.addresses = o->addresses, .defer_register = true};
    struct tally_client *c;
    if (tally_client_open(&c, &co) != 0)
        return EXIT_CLUSTER;
    uint64_t deadline = now_ns() + (uint64_t)CONVERGE_SECONDS * UINT64_C(1000000000);
    int status = EXIT_DIVERGED;
    while (now_ns() < deadline) {
        *count = 0;
        tally_client_status(c, st, STATUS_MAX, count, 5000);
        bool same = *count > 0;
        for (uint32_t i = 0; i < *count; i++)
            same = same && st[i].error == 0 && st[i].applied_index == st[0].applied_index;
        if (same) {
            status = EXIT_OK;
            for (uint32_t i = 1; i < *count; i++)
                if (memcmp(st[i].digest, st[0].digest, sizeof(st[0].digest)) != 0)
                    status = EXIT_DIVERGED;
            break;
        }
        usleep(200 * 1000);
    }
    tally_client_close(c);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Main.
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench-cluster --cluster ADDR[,ADDR...] [--members N] [--clients N]\n"
            "           [--batch N] [--runs N] [--seconds S] [--latency-seconds S]\n"
            "           [--latency-requests N] [--seed N] [--json-file FILE] [--pids PID,...]\n"
            "Drives a running cluster through libtally; see docs/BENCHMARKS.md.\n");
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
        .members = 1000000, .clients = 4, .batch = TALLY_BATCH_MAX, .runs = 5, .seconds = 10,
        .latency_seconds = 10, .latency_requests = 5000, .seed = 1,
    };
    static const struct option longs[] = {
        {"cluster", required_argument, 0, 'c'},   {"members", required_argument, 0, 'm'},
        {"clients", required_argument, 0, 'n'},   {"batch", required_argument, 0, 'b'},
        {"runs", required_argument, 0, 'r'},      {"seconds", required_argument, 0, 's'},
        {"latency-seconds", required_argument, 0, 'L'},
        {"latency-requests", required_argument, 0, 'R'},
        {"seed", required_argument, 0, 'S'},      {"json-file", required_argument, 0, 'j'},
        {"pids", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    int ch, li = 0;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'c': o->addresses = optarg; break;
        case 'm': ok = parse_u64(optarg, 2, WORKLOAD_MEMBERS_MAX, &o->members); break;
        case 'n': ok = parse_u64(optarg, 1, CLIENTS_MAX, &v), o->clients = (uint32_t)v; break;
        case 'b': ok = parse_u64(optarg, 1, TALLY_BATCH_MAX, &v), o->batch = (uint32_t)v; break;
        case 'r': ok = parse_u64(optarg, 1, RUNS_MAX, &v), o->runs = (uint32_t)v; break;
        case 's': ok = parse_u64(optarg, 1, 3600, &v), o->seconds = (uint32_t)v; break;
        case 'L': ok = parse_u64(optarg, 0, 3600, &v), o->latency_seconds = (uint32_t)v; break;
        case 'R':
            ok = parse_u64(optarg, 0, LATENCY_REQUESTS_MAX, &v), o->latency_requests = (uint32_t)v;
            break;
        case 'S': ok = parse_u64(optarg, 0, UINT64_MAX, &o->seed); break;
        case 'j': o->json_file = optarg; break;
        case 'p':
            for (char *tok = strtok(optarg, ","); ok && tok != NULL; tok = strtok(NULL, ",")) {
                ok = o->npids < STATUS_MAX && parse_u64(tok, 1, INT32_MAX, &v);
                if (ok)
                    o->pids[o->npids++] = (pid_t)v;
            }
            break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default: usage(stderr); return EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "tally-bench-cluster: bad value for --%s: %s\n",
                    longs[li].name, optarg);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (o->addresses == NULL || optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
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
        fprintf(stderr, "tally-bench-cluster: cannot allocate a workload generator\n");
        exit(EXIT_USAGE);
    }
}

int main(int argc, char **argv)
{
    struct options o;
    int status = parse(argc, argv, &o);
    if (status != EXIT_OK)
        return status;
    signal(SIGPIPE, SIG_IGN);

    /* 1. Setup, by the generator of instance 0 (the others skip it). */
    struct workload setup_w;
    workload_for(&setup_w, &o, 0);
    uint64_t setup_postings = 0, setup_ns = 0;
    printf("setup: program 1 and %" PRIu64 " members through %s ...\n", o.members, o.addresses);
    fflush(stdout);
    status = setup(&o, &setup_w, &setup_postings, &setup_ns);
    workload_deinit(&setup_w);
    if (status != EXIT_OK)
        return status;
    printf("setup: %" PRIu64 " postings in %.1f s (%.0f/s)\n", setup_postings, (double)setup_ns / 1e9,
           (double)setup_postings / ((double)setup_ns / 1e9));

    /* 2. Throughput. */
    struct load load = {.opts = &o};
    struct client_thread *t = calloc(o.clients, sizeof(*t));
    if (t == NULL)
        abort();
    for (uint32_t i = 0; i < o.clients; i++) {
        char label[32];
        snprintf(label, sizeof(label), "bench-%u", i + 1);
        t[i] = (struct client_thread){.load = &load, .index = i};
        workload_for(&t[i].workload, &o, i + 1);
        workload_setup_skip(&t[i].workload);
        t[i].postings = calloc(TALLY_BATCH_MAX, sizeof(*t[i].postings));
        t[i].results = calloc(TALLY_BATCH_MAX, sizeof(*t[i].results));
        t[i].rtt_ns = calloc(CLIENT_SAMPLES_MAX, sizeof(*t[i].rtt_ns));
        if (t[i].postings == NULL || t[i].results == NULL || t[i].rtt_ns == NULL)
            abort();
        if (client_open(&t[i].client, &o, label) != 0)
            return EXIT_CLUSTER;
        if (pthread_create(&t[i].thread, NULL, client_main, &t[i]) != 0)
            abort();
    }
    double rates[RUNS_MAX];
    uint64_t run_postings[RUNS_MAX], run_ok[RUNS_MAX], run_batches[RUNS_MAX];
    printf("\n%u clients, batches of %u, %u runs of %u s, durable 3-replica cluster\n",
           o.clients, o.batch, o.runs, o.seconds);
    printf("%4s %12s %10s %8s %12s\n", "run", "postings", "ok", "batches", "postings/s");
    uint64_t cpu0[STATUS_MAX], cpu1[STATUS_MAX];
    for (uint32_t i = 0; i < o.npids; i++)
        cpu0[i] = process_cpu_ticks(o.pids[i]);
    uint64_t self0 = process_cpu_ticks(getpid());
    uint64_t load_start = now_ns();
    atomic_store(&load.phase, 1);
    for (uint32_t r = 0; r < o.runs && atomic_load(&load.failed) == 0; r++) {
        uint64_t p0 = atomic_load(&load.run_postings), ok0 = atomic_load(&load.run_ok);
        uint64_t b0 = atomic_load(&load.run_batches);
        uint64_t start = now_ns();
        uint64_t end = start + (uint64_t)o.seconds * UINT64_C(1000000000);
        while (now_ns() < end && atomic_load(&load.failed) == 0)
            usleep(10 * 1000);
        uint64_t wall = now_ns() - start;
        run_postings[r] = atomic_load(&load.run_postings) - p0;
        run_ok[r] = atomic_load(&load.run_ok) - ok0;
        run_batches[r] = atomic_load(&load.run_batches) - b0;
        rates[r] = (double)run_postings[r] / ((double)wall / 1e9);
        printf("%4u %12" PRIu64 " %10" PRIu64 " %8" PRIu64 " %12.0f\n", r + 1, run_postings[r],
               run_ok[r], run_batches[r], rates[r]);
        fflush(stdout);
    }
    uint64_t load_wall = now_ns() - load_start;
    for (uint32_t i = 0; i < o.npids; i++)
        cpu1[i] = process_cpu_ticks(o.pids[i]);
    uint64_t self1 = process_cpu_ticks(getpid());
    atomic_store(&load.phase, 2);
    uint64_t rtt_total = 0;
    for (uint32_t i = 0; i < o.clients; i++) {
        pthread_join(t[i].thread, NULL);
        rtt_total += t[i].rtt_count;
    }
    int failed = atomic_load(&load.failed);
    if (failed != 0) {
        fprintf(stderr, "tally-bench-cluster: a client failed: %s\n", tally_strerror(failed));
        return EXIT_CLUSTER;
    }
    uint64_t *rtt = calloc(rtt_total + 1, sizeof(*rtt));
    uint64_t k = 0;
    for (uint32_t i = 0; i < o.clients; i++) {
        memcpy(rtt + k, t[i].rtt_ns, t[i].rtt_count * sizeof(*rtt));
        k += t[i].rtt_count;
        tally_client_close(t[i].client);
        workload_deinit(&t[i].workload);
        free(t[i].postings);
        free(t[i].results);
        free(t[i].rtt_ns);
    }
    free(t);
    qsort(rtt, k, sizeof(*rtt), compare_u64);
    uint64_t batch_p50 = bench_percentile(rtt, k, 0.50), batch_p99 = bench_percentile(rtt, k, 0.99);
    free(rtt);
    double sorted[RUNS_MAX];
    memcpy(sorted, rates, o.runs * sizeof(double));
    qsort(sorted, o.runs, sizeof(double), compare_double);
    double median = o.runs % 2 ? sorted[o.runs / 2]
                               : (sorted[o.runs / 2 - 1] + sorted[o.runs / 2]) / 2;
    printf("median: %.0f postings/s; batch round trip p50 %.1f ms, p99 %.1f ms (%" PRIu64
           " batches)\n",
           median, (double)batch_p50 / 1e6, (double)batch_p99 / 1e6, k);

    uint64_t counted = 0;
    for (uint32_t r = 0; r < o.runs; r++)
        counted += run_postings[r];
    double tick = (double)sysconf(_SC_CLK_TCK);
    for (uint32_t i = 0; i < o.npids; i++) {
        double cpu_s = (double)(cpu1[i] - cpu0[i]) / tick;
        printf("replica process %d: %.1f CPU s in %.1f s of load (%.0f%% of a core), %.1f CPU us "
               "per posting\n",
               (int)o.pids[i], cpu_s, (double)load_wall / 1e9,
               100 * cpu_s / ((double)load_wall / 1e9),
               counted ? cpu_s * 1e6 / (double)counted : 0.0);
    }

    printf("this client process (generators and libtally): %.1f CPU s during the load\n",
           (double)(self1 - self0) / tick);

    /* 3. Latency of a single posting on the idle cluster. */
    struct latency_result lat = {0};
    if (o.latency_requests > 0 && o.latency_seconds > 0) {
        status = latency(&o, &lat);
        if (status != EXIT_OK)
            return status;
        printf("single posting: %" PRIu64 " requests, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
               lat.requests, (double)lat.p50_ns / 1e6, (double)lat.p99_ns / 1e6,
               (double)lat.max_ns / 1e6);
    }

    /* 4. Convergence. */
    struct tally_replica_status st[STATUS_MAX];
    uint32_t nst = 0;
    status = converge(&o, st, &nst);
    for (uint32_t i = 0; i < nst; i++) {
        printf("replica %" PRIu64 " at %s: applied %" PRIu64 ", digest ", st[i].replica_id,
               st[i].address, st[i].applied_index);
        for (int b = 0; b < 16; b++)
            printf("%02x", st[i].digest[b]);
        printf("\n");
    }
    printf("replicas %s\n", status == EXIT_OK ? "converged: same applied index, same digest"
                                              : "DID NOT CONVERGE");

    if (o.json_file != NULL) {
        FILE *f = fopen(o.json_file, "w");
        if (f != NULL) {
            fprintf(f,
                    "{\"clients\":%u,\"batch\":%u,\"members\":%" PRIu64 ",\"runs\":[",
                    o.clients, o.batch, o.members);
            for (uint32_t r = 0; r < o.runs; r++)
                fprintf(f, "%s{\"postings\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"batches\":%" PRIu64
                        ",\"rate\":%.0f}", r ? "," : "", run_postings[r], run_ok[r],
                        run_batches[r], rates[r]);
            fprintf(f,
                    "],\"median_rate\":%.0f,\"batch_p50_ns\":%" PRIu64 ",\"batch_p99_ns\":%" PRIu64
                    ",\"single_requests\":%" PRIu64 ",\"single_p50_ns\":%" PRIu64
                    ",\"single_p99_ns\":%" PRIu64 ",\"converged\":%s}\n",
                    median, batch_p50, batch_p99, lat.requests, lat.p50_ns, lat.p99_ns,
                    status == EXIT_OK ? "true" : "false");
            fclose(f);
        }
    }
    return status;
}
