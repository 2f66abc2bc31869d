/* tally_bench.c: tally-bench, the load generator SREs size a cluster with.
 *
 * What it does
 * ------------
 * Drives a running cluster (bench/cluster.sh starts one and points this program at it) through
 * libtally with the retail workload of workload.h, then checks its own work:
 *
 * 1. Setup (not measured): two fresh programs (the next free ids, so that runs can follow each
 *    other on one cluster): the main program with --members members, and a campaign program
 *    with a tenth of them whose points all expire at one fixed instant inside the run. Every
 *    member is opened before the load starts.
 * 2. Load, for --seconds: --clients threads, each with one libtally session and one generator
 *    per program (own instance number and seed). A request is a balance read (--read-share of
 *    requests; --stale-share of those are stale-allowed reads, TALLY_READ_STALE with the
 *    session's last write as min_index, answered by the replica the session is connected to:
 *    the leader, as the session also posts) or a batch of --batch postings of the campaign
 *    program (--campaign-share) or of the main program.
 *    - closed loop (default): each client sends its next request when the previous is answered;
 *    - open loop (--rate R): request k is due at start + k / R (R requests a second, whatever
 *      the cluster does); a client takes the next due request, waits for its time if early,
 *      and its latency runs from when it was due, not from when it was sent, so a cluster that
 *      falls behind shows its queueing (no coordinated omission). Requests still undone when
 *      the time is up are the backlog, reported with the lag of the latest send.
 * 3. Convergence: every replica must reach the same applied index and state digest.
 * 4. Self-check: the expected counters (earned, redeemed, adjusted, transferred in and out) of a
 *    sample of members of each program, computed here from the acknowledged postings, must equal
 *    the cluster's (linearizable reads), and each account's points must add up:
 *    available + pending + held = earned - redeemed - expired + adjusted + in - out. Where a
 *    posting asks for "all that remains" (CANCEL, REVERSE or CAPTURE of amount 0) the amount is
 *    read from the entry it produced (its result's seq), and an explicit amount must equal the
 *    entry's. The sampled members' histories must show the time-driven work (EXPIRE, ACTIVATE,
 *    TIER_CHANGE, hold time-outs) the run was long enough for. With --data-dirs, tally-audit's
 *    verify (tools/audit_fold.c) re-derives each replica's whole ledger from its entries.
 *
 * Time inside a real-time run: the leader stamps entries with its wall clock, so the
 * generator's compressed simulated clock does not reach the cluster. What makes time-driven work
 * happen within seconds: pending accruals carry a --pending-ms window (instead of 7 days), holds
 * time out after --hold-timeout-ms (the program default, instead of hours), the campaign
 * program's lots expire at the fixed instant --expire-at seconds after the load starts, and tier
 * upgrades happen on accruals as they cross thresholds. Tier evaluations (month ends) and
 * rolling-day expiry of the main program do not happen in a run of minutes; docs/BENCHMARKS.md
 * says so.
 *
 * Operation latency: for a single-posting request (--batch 1), the round trip of that posting,
 * kept per posting kind; for a batch, one sample per request: from due (open loop) or sent
 * (closed loop) until the reply with all B results was read, i.e. the time every posting of the
 * batch waited. Reads have their own histograms (read, read_stale).
 *
 * Stopping early: SIGINT or SIGTERM during the load ends it at the next second, as if --seconds
 * had passed; convergence, the self-check and the report follow as usual (bench/scale.sh stops
 * its run this way once the ledger has grown to its target). Before and after the load the
 * signals keep their default action.
 *
 * Bounds: --seconds at most 3,600; at most 64 clients; histograms and the per-second timeline
 * are allocated at start, and each client's generators and lists (about 35 MB a client with
 * 1,000,000 members: the generators' per-member estimates and rings, 8 MB of deferred
 * lookups); every wait has a deadline (each call --timeout, 60 s by default; convergence 60 s).
 *
 * Test hook: with TALLY_BENCH_TEST_SKEW set in the environment, one sampled member's expected
 * `earned` is off by one point, so the check must fail (tests/tools/tally_bench.sh proves that
 * the check can fail).
 *
 * Exit: 0 done and checked; 1 the self-check failed (a balance, a missing kind of time-driven
 * work, replicas diverged, an audit difference); 2 usage; 3 the cluster could not be reached or
 * failed a request.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../tools/audit_fold.h"
#include "../tools/cli_common.h"
#include "histogram.h"
#include "../tools/svg.h"
#include "tally.h"
#include "proc.h"
#include "replay.h"
#include "workload.h"

#define CLIENTS_MAX        64u
#define SECONDS_MAX        3600u
/* The timeline also covers requests answered after the end (a closed-loop batch in flight, an
 * open-loop backlog being cut off): at most the request timeout. */
#define TIMELINE_SLACK_S   70u
#define TIMEOUT_MS_DEFAULT 60000u
#define CONVERGE_SECONDS   60u
#define STATUS_MAX         16u
#define DIRS_MAX           16u
#define PROGRAMS           2u
#define CHECK_MEMBERS_MAX  100000u
/* Postings of sampled members whose amount is read back from their entry, per client. */
#define DEFER_MAX          (1u << 18)
/* History entries walked per sampled member to count the time-driven kinds. */
#define HISTORY_PAGE       256u
#define HISTORY_WALK_MAX   4096u
/* Coarse per-second latency buckets: every 4th fine bucket (8 per power of two). */
#define TICK_BUCKETS       (HIST_BUCKETS / 4u)
#define NS                 UINT64_C(1000000000)

enum { EXIT_OK = 0, EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_CLUSTER = 3 };

/* Operations with a histogram: 0..2, then single postings by their kind (3..12). */
enum { OP_BATCH = 0, OP_READ = 1, OP_READ_STALE = 2, OP_COUNT = TALLY_KIND_ADJUST + 1 };
static const char *const op_names[OP_COUNT] = {
    "batch", "read", "read_stale", "accrue", "activate", "cancel", "redeem",
    "hold",  "capture", "release", "reverse", "transfer", "adjust",
};

struct options {
    const char *addresses;
    uint64_t members;
    uint32_t clients, batch, seconds, rate; /* rate: requests/s; 0: closed loop */
    uint32_t threads; /* threads driving the clients: one each (= clients), or fewer */
    double read_share, stale_share, campaign_share;
    uint64_t pending_ms, hold_timeout_ms;
    uint32_t expire_at_s;
    uint32_t check_members;
    uint32_t program; /* first program id; 0: the next free ones */
    uint64_t timeout_ms; /* deadline of every call */
    uint64_t seed;
    bool json, quiet;
    const char *json_file, *svg;
    const char *dirs[DIRS_MAX];
    uint32_t ndirs;
    pid_t pids[STATUS_MAX];
    uint32_t npids;
};

/* One second of the run, filled by every client (atomics). */
struct tick {
    _Atomic uint64_t postings, ok, requests, reads;
    _Atomic uint32_t lat[TICK_BUCKETS]; /* write requests, by their answer's second */
};

/* Expected counters of one sampled member, from the acknowledged postings of one client. */
struct expect {
    int64_t earned, redeemed, adjusted, tin, tout;
};

/* A posting of a sampled member whose amount is read from its entry at the end. */
struct defer {
    uint64_t seq, wire_amount;
    uint32_t prog, slot;
    uint16_t kind;
};

struct client {
    pthread_t thread;
    uint32_t index;
    struct tally_client *tc;
    struct workload w[PROGRAMS];
    uint64_t rng;
    struct tally_posting *postings;
    struct tally_result *results;
    uint32_t prog, count; /* the request being made (post_prepare) */
    uint64_t sent;        /* driven clients: when it was started; 0: none in flight */
    struct hist hist[OP_COUNT];
    struct expect *expect[PROGRAMS]; /* [nsample + 1], slot 0 unused */
    struct defer *defer;
    uint32_t ndefer;
    bool defer_overflow;
    uint64_t requests, postings_sent, reads, read_errors;
    uint64_t by_code[TALLY_RESULT_CODE_LIMIT];
    uint64_t ok_by_kind[TALLY_KIND_LIMIT];
    uint64_t pending_ok;
    uint64_t late, max_lag_ns; /* open loop: sends after their due time */
    int failed;
};

/* The run, shared by every thread. */
static struct {
    struct options o;
    uint32_t program[PROGRAMS];
    uint64_t members[PROGRAMS];
    uint64_t *sample[PROGRAMS]; /* [nsample + 1]: slot -> member */
    uint32_t *slot_of[PROGRAMS]; /* [members + 1]: member -> slot, 0: not sampled */
    uint32_t nsample[PROGRAMS];
    uint64_t expire_at_ms;      /* wall clock of the campaign's expiry */
    uint64_t start_ns, end_ns;  /* monotonic */
    uint64_t start_wall_ms;
    _Atomic uint64_t next_k;
    _Atomic int phase;          /* 0 wait, 1 run, 2 stop */
    _Atomic int failed;
    struct tick *ticks;
    uint32_t nticks;
} B;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / NS), .tv_nsec = (long)(ns % NS)};
    nanosleep(&ts, NULL);
}

/* splitmix64: the clients' own choices (operation, program), seeded per client. */
static double rng_unit(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* CPU time (user + system) of a process so far, in clock ticks, from /proc/PID/stat; 0 if
 * unknown. Field 2 (comm) may hold spaces: parse after its closing parenthesis. */
static int open_client(struct tally_client **c, const char *label)
{
    struct tally_client_options co = {
        .addresses = B.o.addresses, .timeout_ms = B.o.timeout_ms, .label = label};
    int rc = tally_client_open(c, &co);
    if (rc != 0)
        fprintf(stderr, "tally-bench: cannot open a session on %s: %s\n", B.o.addresses,
                tally_strerror(rc));
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Programs and setup
 * ------------------------------------------------------------------------------------------- */

/* Generator instances: program * 64 + client + 1 (0: the setup), distinct for program ids
 * below 1,024, so that posting ids never repeat across the runs made on one cluster. */
static void generator_init(struct workload *w, uint32_t p, uint32_t instance)
{
    struct workload_options wo;
    workload_options_default(&wo);
    wo.members = B.members[p];
    wo.program = B.program[p];
    wo.instance = (uint16_t)(B.program[p] * 64u + instance);
    wo.seed = B.o.seed * 1000003u + wo.instance;
    if (workload_init(w, &wo) != 0) {
        fprintf(stderr, "tally-bench: cannot allocate a workload generator\n");
        exit(EXIT_USAGE);
    }
}

/* The program's configuration: the workload's, with the hold time-out of the run; the campaign
 * (p = 1) expires every lot at B.expire_at_ms. */
static void program_config(uint32_t p, struct tally_program_config *c)
{
    c->hold_timeout_ms = B.o.hold_timeout_ms;
    if (p == 1) {
        c->expiry = TALLY_EXPIRY_FIXED;
        c->expiry_n = 0;
        c->expiry_fixed_at = B.expire_at_ms;
    }
}

static int choose_programs(struct tally_client *c)
{
    if (B.o.program == 0) {
        uint32_t ids[1024], count = 0, after = 0, top = 0;
        for (int page = 0; page < 1024; page++) {
            int rc = tally_client_programs(c, after, ids, 1024, &count, NULL);
            if (rc != 0) {
                fprintf(stderr, "tally-bench: cannot list programs: %s\n", tally_strerror(rc));
                return EXIT_CLUSTER;
            }
            if (count == 0)
                break;
            after = top = ids[count - 1];
            if (count < 1024)
                break;
        }
        B.o.program = top + 1;
    }
    if (B.o.program + PROGRAMS > 1024u) {
        fprintf(stderr, "tally-bench: program ids must stay below 1024 (generator instances)\n");
        return EXIT_USAGE;
    }
    for (uint32_t p = 0; p < PROGRAMS; p++)
        B.program[p] = B.o.program + p;
    B.members[0] = B.o.members;
    B.members[1] = B.o.members / 10 < 2 ? 2 : B.o.members / 10;
    return EXIT_OK;
}

static int setup_program(struct tally_client *c, uint32_t p, uint64_t *postings)
{
    struct workload w;
    generator_init(&w, p, 0);
    struct tally_posting *ps = calloc(TALLY_BATCH_MAX, sizeof(*ps));
    struct tally_result *rs = calloc(TALLY_BATCH_MAX, sizeof(*rs));
    if (ps == NULL || rs == NULL)
        abort();
    int status = EXIT_OK;
    for (uint64_t guard = 0; guard <= B.members[p] + 1 && status == EXIT_OK; guard++) {
        uint32_t count = 0;
        uint64_t ts;
        workload_setup_batch(&w, ps, TALLY_BATCH_MAX, &count, &ts);
        if (count == 0)
            break;
        if (ps[0].kind == TALLY_KIND_PROGRAM) {
            if (p == 1) /* the instant is relative to the load's start, estimated here */
                B.expire_at_ms = cli_now_ms() + B.members[1] / 20 + B.o.expire_at_s * 1000u;
            program_config(p, &ps[0].config);
        }
        int rc = tally_client_post(c, ps, count, rs, B.o.timeout_ms);
        if (rc != 0) {
            fprintf(stderr, "tally-bench: setup failed: %s\n", tally_strerror(rc));
            status = EXIT_CLUSTER;
            break;
        }
        for (uint32_t i = 0; i < count && status == EXIT_OK; i++)
            if (rs[i].code != TALLY_OK) {
                fprintf(stderr, "tally-bench: setup posting refused: %s\n",
                        tally_result_name(rs[i].code));
                status = EXIT_CLUSTER;
            }
        *postings += count;
    }
    free(ps);
    free(rs);
    workload_deinit(&w);
    return status;
}

/* The sample: the busiest half by Zipf rank, the other half spread evenly over the ranks. */
static void choose_sample(void)
{
    for (uint32_t p = 0; p < PROGRAMS; p++) {
        struct workload w;
        generator_init(&w, p, 0);
        uint64_t n = B.o.check_members < B.members[p] ? B.o.check_members : B.members[p];
        B.sample[p] = calloc(n + 1, sizeof(uint64_t));
        B.slot_of[p] = calloc(B.members[p] + 1, sizeof(uint32_t));
        if (B.sample[p] == NULL || B.slot_of[p] == NULL)
            abort();
        uint32_t k = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t rank = i < n / 2 ? i + 1 : 1 + (i - n / 2) * (B.members[p] / (n - n / 2));
            uint64_t m = workload_member_of_rank(&w, rank > B.members[p] ? B.members[p] : rank);
            if (B.slot_of[p][m] != 0)
                continue;
            B.sample[p][++k] = m;
            B.slot_of[p][m] = k;
        }
        B.nsample[p] = k;
        workload_deinit(&w);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The load
 * ------------------------------------------------------------------------------------------- */

static struct expect *expect_of(struct client *t, uint32_t p, uint64_t member)
{
    if (member == 0 || member > B.members[p] || B.slot_of[p][member] == 0)
        return NULL;
    return &t->expect[p][B.slot_of[p][member]];
}

/* What an acknowledged posting does to the expected counters of its sampled members. */
static void expect_posting(struct client *t, uint32_t p, const struct tally_posting *q,
                           const struct tally_result *r)
{
    struct expect *e = expect_of(t, p, q->account);
    int64_t amount = (int64_t)q->amount;
    if (q->kind == TALLY_KIND_TRANSFER) {
        struct expect *to = expect_of(t, p, q->account2);
        if (e != NULL)
            e->tout += amount;
        if (to != NULL)
            to->tin += amount;
        return;
    }
    if (e == NULL)
        return;
    switch (q->kind) {
    case TALLY_KIND_ACCRUE: e->earned += amount; break;
    case TALLY_KIND_REDEEM: e->redeemed += amount; break;
    case TALLY_KIND_ADJUST: e->adjusted += q->flags & TALLY_FLAG_NEGATIVE ? -amount : amount; break;
    case TALLY_KIND_CANCEL:
    case TALLY_KIND_REVERSE:
    case TALLY_KIND_CAPTURE:
        if (t->ndefer == DEFER_MAX) {
            t->defer_overflow = true;
            break;
        }
        t->defer[t->ndefer++] = (struct defer){.seq = r->seq, .wire_amount = q->amount,
                                               .prog = p, .slot = B.slot_of[p][q->account],
                                               .kind = q->kind};
        break;
    default: break;
    }
}

static void tick_add(uint64_t done_ns, uint64_t postings, uint64_t ok, bool read, uint64_t lat)
{
    uint64_t s = (done_ns - B.start_ns) / NS;
    if (s >= B.nticks)
        return;
    struct tick *k = &B.ticks[s];
    atomic_fetch_add_explicit(&k->requests, 1, memory_order_relaxed);
    if (read) {
        atomic_fetch_add_explicit(&k->reads, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&k->postings, postings, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->ok, ok, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->lat[hist_index(lat) / 4], 1, memory_order_relaxed);
}

static void do_read(struct client *t, uint64_t due)
{
    uint32_t p = rng_unit(&t->rng) < B.o.campaign_share ? 1 : 0;
    uint64_t m = workload_member_of_rank(&t->w[p], workload_draw_rank(&t->w[p]));
    bool stale = rng_unit(&t->rng) < B.o.stale_share;
    struct tally_read r = {.stale = stale, .min_index = stale ? tally_client_last_index(t->tc) : 0};
    struct tally_account a;
    int rc = tally_client_account(t->tc, B.program[p], m, &a, &r);
    uint64_t done = now_ns();
    t->reads++;
    if (rc != 0) {
        t->read_errors++;
        return;
    }
    hist_record(&t->hist[stale ? OP_READ_STALE : OP_READ], done - due);
    tick_add(done, 0, 0, true, 0);
}

/* The next posting request of client t: its postings in t->postings, their program in t->prog,
 * their number in t->count. */
static void post_prepare(struct client *t)
{
    uint32_t p = rng_unit(&t->rng) < B.o.campaign_share ? 1 : 0;
    uint32_t count = 0;
    uint64_t ts;
    if (workload_next_batch(&t->w[p], t->postings, B.o.batch, &count, &ts) != 0)
        abort(); /* options were checked: the generator cannot refuse */
    for (uint32_t i = 0; i < count; i++)
        if (t->postings[i].kind == TALLY_KIND_ACCRUE &&
            (t->postings[i].flags & TALLY_FLAG_PENDING) != 0)
            t->postings[i].duration_ms = B.o.pending_ms;
    t->prog = p;
    t->count = count;
}

/* Account for client t's answered request (results in t->results), due at `due`, answered at
 * `done`. */
static void post_account(struct client *t, uint64_t due, uint64_t done)
{
    uint32_t p = t->prog, count = t->count;
    workload_observe(&t->w[p], t->results, count);
    uint64_t ok = 0;
    for (uint32_t i = 0; i < count; i++) {
        const struct tally_result *r = &t->results[i];
        const struct tally_posting *q = &t->postings[i];
        t->by_code[r->code < TALLY_RESULT_CODE_LIMIT ? r->code : 0]++;
        if (r->code != TALLY_OK)
            continue;
        ok++;
        t->ok_by_kind[q->kind < TALLY_KIND_LIMIT ? q->kind : 0]++;
        t->pending_ok += q->kind == TALLY_KIND_ACCRUE && (q->flags & TALLY_FLAG_PENDING) != 0;
        expect_posting(t, p, q, r);
    }
    t->postings_sent += count;
    uint32_t op = count == 1 && t->postings[0].kind < OP_COUNT ? t->postings[0].kind : OP_BATCH;
    hist_record(&t->hist[B.o.batch == 1 ? op : OP_BATCH], done - due);
    tick_add(done, count, ok, false, done - due);
}

static int do_post(struct client *t, uint64_t due)
{
    post_prepare(t);
    int rc = tally_client_post(t->tc, t->postings, t->count, t->results, B.o.timeout_ms);
    if (rc != 0)
        return rc;
    post_account(t, due, now_ns());
    return 0;
}

/* Open loop: the due time of this client's next request, or 0 when the run is over. */
static uint64_t next_due(struct client *t)
{
    uint64_t k = atomic_fetch_add(&B.next_k, 1);
    uint64_t rate = B.o.rate; /* k / rate seconds, exactly, without overflowing k * NS */
    uint64_t due = B.start_ns + k / rate * NS + k % rate * NS / rate;
    if (due >= B.end_ns)
        return 0;
    for (uint64_t now = now_ns(); now < due && atomic_load(&B.phase) == 1; now = now_ns())
        sleep_ns(due - now < 50000000u ? due - now : 50000000u);
    uint64_t lag = now_ns() - due;
    t->late += lag > 10000000u; /* sent more than 10 ms after its due time */
    t->max_lag_ns = lag > t->max_lag_ns ? lag : t->max_lag_ns;
    return now_ns() < B.end_ns ? due : 0;
}

static void *client_main(void *arg)
{
    struct client *t = arg;
    for (int i = 0; i < 100000 && atomic_load(&B.phase) == 0; i++)
        sleep_ns(1000000);
    /* Bounded by the clock: every iteration ends at B.end_ns or on a failure. */
    while (atomic_load(&B.phase) == 1 && atomic_load(&B.failed) == 0) {
        uint64_t due = B.o.rate > 0 ? next_due(t) : now_ns();
        if (due == 0 || due >= B.end_ns)
            break;
        t->requests++;
        if (rng_unit(&t->rng) < B.o.read_share) {
            do_read(t, due);
            continue;
        }
        int rc = do_post(t, due);
        if (rc != 0) {
            t->failed = rc;
            atomic_store(&B.failed, rc);
            break;
        }
    }
    return NULL;
}

/* Driven clients (--threads below --clients): thread d drives clients d, d + T, d + 2T, ...
 * through libtally's asynchronous POST, each in the closed loop of client_main (its next
 * request sent when the last is answered, its latency from that send to the moment this thread
 * read the answer, so time spent serving its neighbours counts), without a thread per client. */
struct driver {
    pthread_t thread;
    uint32_t index;
    struct client *t;
};

static int driven_end(struct client *t, int rc)
{
    uint64_t sent = t->sent;
    t->sent = 0;
    if (rc != 0)
        return rc;
    post_account(t, sent, now_ns());
    return 0;
}

static int driven_start(struct client *t)
{
    post_prepare(t);
    t->requests++;
    t->sent = now_ns();
    int rc = tally_client_post_start(t->tc, t->postings, t->count, t->results, B.o.timeout_ms);
    return rc == TALLY_EAGAIN ? 0 : driven_end(t, rc);
}

/* How often a driver asks every request in flight, readable or not: libtally notices a reply
 * that never comes only when asked (tally.h). */
#define DRIVER_SWEEP_NS UINT64_C(100000000)

static void *driver_main(void *arg)
{
    struct driver *d = arg;
    struct client *mine[CLIENTS_MAX];
    struct pollfd pfd[CLIENTS_MAX];
    uint32_t n = 0, at[CLIENTS_MAX];
    for (uint32_t i = d->index; i < B.o.clients; i += B.o.threads)
        mine[n++] = &d->t[i];
    for (int i = 0; i < 100000 && atomic_load(&B.phase) == 0; i++)
        sleep_ns(1000000);
    uint64_t sweep = now_ns();
    /* Bounded by the clock: requests start only while the load runs (until B.end_ns or a
     * failure); then those in flight end, each within its call's deadline. */
    for (;;) {
        bool run = atomic_load(&B.phase) == 1 && atomic_load(&B.failed) == 0 &&
                   now_ns() < B.end_ns;
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct client *t = mine[i];
            int rc = t->sent == 0 && run ? driven_start(t) : 0;
            if (rc != 0) {
                t->failed = rc;
                atomic_store(&B.failed, rc);
                run = false;
            }
            if (t->sent != 0) {
                pfd[m] = (struct pollfd){.fd = tally_client_fd(t->tc), .events = POLLIN};
                at[m++] = i;
            }
        }
        if (m == 0)
            break;
        (void)poll(pfd, m, 10);
        uint64_t now = now_ns();
        bool all = now - sweep >= DRIVER_SWEEP_NS;
        if (all)
            sweep = now;
        for (uint32_t j = 0; j < m; j++) {
            struct client *t = mine[at[j]];
            if (pfd[j].revents == 0 && !all)
                continue;
            int rc = tally_client_post_finish(t->tc);
            if (rc != TALLY_EAGAIN && (rc = driven_end(t, rc)) != 0) {
                t->failed = rc;
                atomic_store(&B.failed, rc);
            }
        }
    }
    return NULL;
}

/* The p99 of the write requests answered in one second (coarse buckets: within 12.5%). */
static uint64_t tick_p99(const struct tick *k)
{
    uint64_t n = 0, seen = 0;
    for (uint32_t i = 0; i < TICK_BUCKETS; i++)
        n += atomic_load(&k->lat[i]);
    uint64_t rank = (uint64_t)ceil(0.99 * (double)n);
    for (uint32_t i = 0; i < TICK_BUCKETS && n > 0; i++) {
        seen += atomic_load(&k->lat[i]);
        if (seen >= rank)
            return hist_upper(i * 4 + 3);
    }
    return 0;
}

/* The progress line, once a second on stderr, until the end (and at most SECONDS_MAX + 1). */
static void progress(uint32_t s)
{
    if (B.o.quiet || s >= B.nticks)
        return;
    const struct tick *k = &B.ticks[s];
    uint64_t p99 = tick_p99(k);
    fprintf(stderr, "tally-bench: %4us  %9" PRIu64 " postings/s  %7" PRIu64 " requests/s  %6"
            PRIu64 " reads/s  p99 %.1f ms\n", s + 1, atomic_load(&k->postings),
            atomic_load(&k->requests), atomic_load(&k->reads), ms_of(p99));
}

/* ---------------------------------------------------------------------------------------------
 * The self-check
 * ------------------------------------------------------------------------------------------- */

struct check {
    uint64_t members_checked, balance_mismatch, amount_mismatch, entries_read, lookup_errors;
    bool defer_overflow;
    uint64_t kinds_seen[TALLY_KIND_LIMIT]; /* in the sampled members' histories */
    uint64_t holds_timed_out;              /* AUTO RELEASEs with a zero posting id */
    struct tally_program_totals totals[PROGRAMS];
    bool need_expire, need_activate, need_tier;
    bool converged, audited, audit_ok;
    uint64_t applied_index;
    bool ok;
};

static void check_report_mismatch(struct check *k, uint32_t p, uint64_t m, const char *what,
                                  int64_t want, int64_t got)
{
    if (k->balance_mismatch++ < 10)
        fprintf(stderr, "tally-bench: check: program %u member %" PRIu64 ": %s expected %" PRId64
                ", cluster has %" PRId64 "\n", B.program[p], m, what, want, got);
}

/* Amounts of the deferred postings, from their entries, into the merged expectations. */
static void check_deferred(struct tally_client *c, struct client *t, struct expect **merged,
                           struct tally_lot_ref *tail, struct check *k)
{
    for (uint32_t i = 0; i < t->ndefer; i++) {
        const struct defer *d = &t->defer[i];
        struct tally_entry e;
        uint32_t n = 0;
        int rc = tally_client_entry(c, d->seq, &e, tail, TALLY_LINEAGE_MAX, &n, NULL);
        k->entries_read++;
        if (rc != 0 || e.kind != d->kind) {
            k->lookup_errors++;
            continue;
        }
        if (d->wire_amount != 0 && e.amount != d->wire_amount)
            k->amount_mismatch++;
        struct expect *x = &merged[d->prog][d->slot];
        int64_t a = (int64_t)e.amount;
        if (d->kind == TALLY_KIND_CAPTURE)
            x->redeemed += a;
        else if (d->kind == TALLY_KIND_CANCEL || e.credit == TALLY_SYS_ISSUANCE)
            x->earned -= a; /* a cancelled accrual, or the reversal of one */
        else
            x->redeemed -= a; /* the reversal of a redemption or a capture */
    }
}

/* Count the kinds of entries in one member's history (newest first, bounded). */
static void check_history(struct tally_client *c, uint32_t p, uint64_t m,
                          struct tally_entry *page, struct check *k)
{
    uint64_t before = 0; /* 0: from the newest */
    for (uint32_t walked = 0; walked < HISTORY_WALK_MAX;) {
        uint32_t n = 0;
        if (tally_client_history(c, B.program[p], m, before, page, HISTORY_PAGE, &n, NULL) != 0)
            return;
        for (uint32_t i = 0; i < n; i++) {
            const struct tally_entry *e = &page[i];
            k->kinds_seen[e->kind < TALLY_KIND_LIMIT ? e->kind : 0]++;
            static const uint8_t zero[16];
            k->holds_timed_out += e->kind == TALLY_KIND_RELEASE &&
                                  (e->flags & TALLY_ENTRY_AUTO) != 0 &&
                                  memcmp(e->posting_id, zero, 16) == 0;
        }
        walked += n;
        if (n < HISTORY_PAGE || page[n - 1].seq <= 1)
            return;
        before = page[n - 1].seq;
    }
}

static void check_member(struct tally_client *c, uint32_t p, uint32_t slot,
                         const struct expect *x, struct tally_entry *page, struct check *k)
{
    uint64_t m = B.sample[p][slot];
    struct tally_account a;
    if (tally_client_account(c, B.program[p], m, &a, NULL) != 0) {
        k->lookup_errors++;
        return;
    }
    k->members_checked++;
    if ((int64_t)a.earned != x->earned)
        check_report_mismatch(k, p, m, "earned", x->earned, (int64_t)a.earned);
    if ((int64_t)a.redeemed != x->redeemed)
        check_report_mismatch(k, p, m, "redeemed", x->redeemed, (int64_t)a.redeemed);
    if (a.adjusted != x->adjusted)
        check_report_mismatch(k, p, m, "adjusted", x->adjusted, a.adjusted);
    if ((int64_t)a.transferred_in != x->tin)
        check_report_mismatch(k, p, m, "transferred_in", x->tin, (int64_t)a.transferred_in);
    if ((int64_t)a.transferred_out != x->tout)
        check_report_mismatch(k, p, m, "transferred_out", x->tout, (int64_t)a.transferred_out);
    int64_t points = a.available + (int64_t)a.pending + (int64_t)a.held;
    int64_t flows = x->earned - x->redeemed - (int64_t)a.expired + x->adjusted + x->tin - x->tout;
    if (points != flows)
        check_report_mismatch(k, p, m, "points (available + pending + held)", flows, points);
    check_history(c, p, m, page, k);
}

static int self_check(struct client *t, uint32_t nclients, struct check *k)
{
    struct tally_client *c;
    if (open_client(&c, "bench-check") != 0)
        return EXIT_CLUSTER;
    struct expect *merged[PROGRAMS];
    struct tally_lot_ref *tail = calloc(TALLY_LINEAGE_MAX, sizeof(*tail));
    struct tally_entry *page = calloc(HISTORY_PAGE, sizeof(*page));
    if (tail == NULL || page == NULL)
        abort();
    for (uint32_t p = 0; p < PROGRAMS; p++) {
        merged[p] = calloc(B.nsample[p] + 1, sizeof(struct expect));
        if (merged[p] == NULL)
            abort();
        for (uint32_t i = 0; i < nclients; i++)
            for (uint32_t s = 1; s <= B.nsample[p]; s++) {
                const struct expect *x = &t[i].expect[p][s];
                merged[p][s].earned += x->earned;
                merged[p][s].redeemed += x->redeemed;
                merged[p][s].adjusted += x->adjusted;
                merged[p][s].tin += x->tin;
                merged[p][s].tout += x->tout;
            }
    }
    /* Test hook (tests/tools/tally_bench.sh): a wrong expectation must fail the check. */
    if (getenv("TALLY_BENCH_TEST_SKEW") != NULL && B.nsample[0] > 0)
        merged[0][1].earned += 1;
    for (uint32_t i = 0; i < nclients; i++) {
        k->defer_overflow |= t[i].defer_overflow;
        check_deferred(c, &t[i], merged, tail, k);
    }
    for (uint32_t p = 0; p < PROGRAMS; p++) {
        for (uint32_t s = 1; s <= B.nsample[p]; s++)
            check_member(c, p, s, &merged[p][s], page, k);
        struct tally_program_config cfg;
        if (tally_client_program(c, B.program[p], &cfg, &k->totals[p], NULL) != 0)
            k->lookup_errors++;
        free(merged[p]);
    }
    free(tail);
    free(page);
    tally_client_close(c);
    return EXIT_OK;
}

/* Wait until every replica reports the same applied index, then compare digests. */
static bool converge(struct tally_replica_status *st, uint32_t *count)
{
    struct tally_client_options co = {.addresses = B.o.addresses, .defer_register = true};
    struct tally_client *c;
    if (tally_client_open(&c, &co) != 0)
        return false;
    uint64_t deadline = now_ns() + CONVERGE_SECONDS * NS;
    bool converged = false;
    while (now_ns() < deadline) {
        *count = 0;
        tally_client_status(c, st, STATUS_MAX, count, 5000);
        bool same = *count > 0;
        for (uint32_t i = 0; i < *count; i++)
            same = same && st[i].error == 0 && st[i].applied_index == st[0].applied_index;
        if (same) {
            converged = true;
            for (uint32_t i = 1; i < *count; i++)
                converged = converged && memcmp(st[i].digest, st[0].digest, 16) == 0;
            break;
        }
        sleep_ns(200000000u);
    }
    tally_client_close(c);
    return converged;
}

/* ---------------------------------------------------------------------------------------------
 * The report
 * ------------------------------------------------------------------------------------------- */

/* What the run measured, merged from the clients. */
struct totals {
    struct hist hist[OP_COUNT];
    struct hist writes; /* every posting request, whatever its size */
    uint64_t requests, postings, reads, read_errors, ok, pending_ok, late, max_lag_ns;
    uint64_t by_code[TALLY_RESULT_CODE_LIMIT];
    uint64_t ok_by_kind[TALLY_KIND_LIMIT];
    uint64_t due, backlog; /* open loop */
    double seconds, rate, median_rate;
    uint32_t nsec; /* full seconds of the load in the timeline */
    uint64_t cpu_ticks[STATUS_MAX];
};

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void add_hist_json(cJSON *obj, const char *name, const struct hist *h)
{
    if (h->count == 0)
        return;
    cJSON *o = cJSON_AddObjectToObject(obj, name);
    cli_json_add_u64(o, "count", h->count);
    cJSON_AddNumberToObject(o, "p50_ms", ms_of(hist_percentile(h, 0.50)));
    cJSON_AddNumberToObject(o, "p90_ms", ms_of(hist_percentile(h, 0.90)));
    cJSON_AddNumberToObject(o, "p99_ms", ms_of(hist_percentile(h, 0.99)));
    cJSON_AddNumberToObject(o, "p999_ms", ms_of(hist_percentile(h, 0.999)));
    cJSON_AddNumberToObject(o, "max_ms", ms_of(h->max));
    cJSON_AddNumberToObject(o, "mean_ms", ms_of(h->sum / h->count));
}

/* The self-check's part of the JSON report. */
static void report_json_check(cJSON *doc, const struct check *k)
{
    cJSON *ck = cJSON_AddObjectToObject(doc, "check");
    cJSON_AddBoolToObject(ck, "ok", k->ok);
    cli_json_add_u64(ck, "members_checked", k->members_checked);
    cli_json_add_u64(ck, "balance_mismatch", k->balance_mismatch);
    cli_json_add_u64(ck, "amount_mismatch", k->amount_mismatch);
    cli_json_add_u64(ck, "entries_read", k->entries_read);
    cli_json_add_u64(ck, "lookup_errors", k->lookup_errors);
    cJSON *seen = cJSON_AddObjectToObject(ck, "history_kinds");
    cli_json_add_u64(seen, "expire", k->kinds_seen[TALLY_KIND_EXPIRE]);
    cli_json_add_u64(seen, "activate", k->kinds_seen[TALLY_KIND_ACTIVATE]);
    cli_json_add_u64(seen, "tier_change", k->kinds_seen[TALLY_KIND_TIER_CHANGE]);
    cli_json_add_u64(seen, "hold_timeout", k->holds_timed_out);
    cJSON_AddBoolToObject(ck, "need_expire", k->need_expire);
    cJSON_AddBoolToObject(ck, "need_activate", k->need_activate);
    cJSON_AddBoolToObject(ck, "need_tier_change", k->need_tier);
    cJSON *pt = cJSON_AddArrayToObject(ck, "programs");
    for (uint32_t p = 0; p < PROGRAMS; p++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "program", B.program[p]);
        cli_json_add_u64(e, "members", k->totals[p].members);
        cli_json_add_u64(e, "issued", k->totals[p].issued);
        cli_json_add_u64(e, "redeemed", k->totals[p].redeemed);
        cli_json_add_u64(e, "expired", k->totals[p].expired);
        cli_json_add_i64(e, "outstanding", k->totals[p].outstanding);
        cJSON_AddItemToArray(pt, e);
    }
    cJSON_AddBoolToObject(ck, "converged", k->converged);
    cli_json_add_u64(ck, "applied_index", k->applied_index);
    if (k->audited)
        cJSON_AddBoolToObject(ck, "audit_ok", k->audit_ok);
    else
        cJSON_AddNullToObject(ck, "audit_ok");
}

static cJSON *report_json(const struct totals *r, const struct check *k,
                          const struct tally_replica_status *st, uint32_t nst)
{
    const struct options *o = &B.o;
    cJSON *doc = cJSON_CreateObject();
    cJSON *cfg = cJSON_AddObjectToObject(doc, "config");
    cJSON_AddStringToObject(cfg, "mode", o->rate > 0 ? "open" : "closed");
    cJSON_AddNumberToObject(cfg, "clients", o->clients);
    cJSON_AddNumberToObject(cfg, "threads", o->threads);
    cJSON_AddNumberToObject(cfg, "batch", o->batch);
    cJSON_AddNumberToObject(cfg, "seconds", o->seconds);
    cJSON_AddNumberToObject(cfg, "rate", o->rate);
    cli_json_add_u64(cfg, "members", B.members[0]);
    cli_json_add_u64(cfg, "campaign_members", B.members[1]);
    cJSON_AddNumberToObject(cfg, "program", B.program[0]);
    cJSON_AddNumberToObject(cfg, "campaign_program", B.program[1]);
    cJSON_AddNumberToObject(cfg, "read_share", o->read_share);
    cJSON_AddNumberToObject(cfg, "stale_share", o->stale_share);
    cJSON_AddNumberToObject(cfg, "campaign_share", o->campaign_share);
    cli_json_add_u64(cfg, "pending_ms", o->pending_ms);
    cli_json_add_u64(cfg, "hold_timeout_ms", o->hold_timeout_ms);
    cJSON_AddNumberToObject(cfg, "expire_at_s",
                            ((double)B.expire_at_ms - (double)B.start_wall_ms) / 1e3);
    cli_json_add_u64(cfg, "seed", o->seed);

    cJSON *ld = cJSON_AddObjectToObject(doc, "load");
    cli_json_add_u64(ld, "start_unix_ms", B.start_wall_ms); /* the timeline's second 0 */
    cJSON_AddNumberToObject(ld, "seconds", r->seconds);
    cli_json_add_u64(ld, "requests", r->requests);
    cli_json_add_u64(ld, "postings", r->postings);
    cli_json_add_u64(ld, "ok", r->ok);
    cli_json_add_u64(ld, "reads", r->reads);
    cli_json_add_u64(ld, "read_errors", r->read_errors);
    cJSON_AddNumberToObject(ld, "postings_per_s", r->rate);
    cJSON_AddNumberToObject(ld, "median_postings_per_s", r->median_rate);
    cJSON *codes = cJSON_AddObjectToObject(ld, "results");
    for (uint32_t c = 0; c < TALLY_RESULT_CODE_LIMIT; c++)
        if (r->by_code[c] > 0)
            cli_json_add_u64(codes, tally_result_name(c), r->by_code[c]);
    cJSON *kinds = cJSON_AddObjectToObject(ld, "ok_by_kind");
    for (uint32_t kd = TALLY_KIND_ACCRUE; kd < OP_COUNT; kd++)
        if (r->ok_by_kind[kd] > 0)
            cli_json_add_u64(kinds, op_names[kd], r->ok_by_kind[kd]);
    if (o->rate > 0) {
        cJSON *ol = cJSON_AddObjectToObject(doc, "open_loop");
        cli_json_add_u64(ol, "due", r->due);
        cli_json_add_u64(ol, "sent", r->requests);
        cli_json_add_u64(ol, "backlog", r->backlog);
        cli_json_add_u64(ol, "late", r->late);
        cJSON_AddNumberToObject(ol, "max_lag_ms", ms_of(r->max_lag_ns));
        cJSON_AddBoolToObject(ol, "kept_up", r->backlog == 0 && r->max_lag_ns < NS);
    }
    cJSON *lat = cJSON_AddObjectToObject(doc, "latency");
    for (uint32_t op = 0; op < OP_COUNT; op++)
        add_hist_json(lat, op_names[op], &r->hist[op]);
    /* Every posting request together, whatever its kind or size: with --batch 1 the latency
     * of a till's posting over the whole mix, which bench/suite.sh compares with PostgreSQL's
     * (its till figure is over every call too). */
    add_hist_json(lat, "writes", &r->writes);
    cJSON *tl = cJSON_AddArrayToObject(doc, "timeline");
    for (uint32_t s = 0; s < r->nsec; s++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "t", s + 1);
        cli_json_add_u64(e, "postings", atomic_load(&B.ticks[s].postings));
        cli_json_add_u64(e, "requests", atomic_load(&B.ticks[s].requests));
        cli_json_add_u64(e, "reads", atomic_load(&B.ticks[s].reads));
        cJSON_AddNumberToObject(e, "p99_ms", ms_of(tick_p99(&B.ticks[s])));
        cJSON_AddItemToArray(tl, e);
    }
    report_json_check(doc, k);
    cJSON *rp = cJSON_AddArrayToObject(doc, "replicas");
    double tick = (double)sysconf(_SC_CLK_TCK);
    for (uint32_t i = 0; i < nst; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "address", st[i].address);
        cli_json_add_u64(e, "applied_index", st[i].applied_index);
        cJSON_AddItemToArray(rp, e);
    }
    cJSON *cpu = cJSON_AddArrayToObject(doc, "replica_cpu_s");
    for (uint32_t i = 0; i < o->npids; i++)
        cJSON_AddItemToArray(cpu, cJSON_CreateNumber((double)r->cpu_ticks[i] / tick));
    return doc;
}

static void report_text(const struct totals *r, const struct check *k)
{
    const struct options *o = &B.o;
    printf("%s loop: %u clients, batches of %u, %.1f s; programs %u (%" PRIu64
           " members) and %u (campaign, %" PRIu64 " members)\n",
           o->rate > 0 ? "open" : "closed", o->clients, o->batch, r->seconds, B.program[0],
           B.members[0], B.program[1], B.members[1]);
    printf("postings: %" PRIu64 " answered, %" PRIu64 " OK, %.0f postings/s (median second %.0f)"
           "; requests %" PRIu64 ", reads %" PRIu64 " (%" PRIu64 " errors)\n",
           r->postings, r->ok, r->rate, r->median_rate, r->requests, r->reads, r->read_errors);
    if (o->rate > 0)
        printf("open loop: %u requests/s offered, %" PRIu64 " due, %" PRIu64 " sent, backlog %"
               PRIu64 ", %" PRIu64 " sent >10 ms late, max lag %.1f ms: %s\n", o->rate, r->due,
               r->requests, r->backlog, r->late, ms_of(r->max_lag_ns),
               r->backlog == 0 && r->max_lag_ns < NS ? "kept up" : "DID NOT KEEP UP");
    printf("%-11s %9s %9s %9s %9s %9s %9s\n", "latency", "count", "p50 ms", "p90 ms", "p99 ms",
           "p99.9 ms", "max ms");
    for (uint32_t op = 0; op < OP_COUNT; op++) {
        const struct hist *h = &r->hist[op];
        if (h->count > 0)
            printf("%-11s %9" PRIu64 " %9.2f %9.2f %9.2f %9.2f %9.2f\n", op_names[op], h->count,
                   ms_of(hist_percentile(h, 0.5)), ms_of(hist_percentile(h, 0.9)),
                   ms_of(hist_percentile(h, 0.99)), ms_of(hist_percentile(h, 0.999)),
                   ms_of(h->max));
    }
    printf("results:");
    for (uint32_t c = 0; c < TALLY_RESULT_CODE_LIMIT; c++)
        if (r->by_code[c] > 0)
            printf(" %s %" PRIu64, tally_result_name(c), r->by_code[c]);
    printf("\ncheck: %" PRIu64 " members, %" PRIu64 " balance mismatches, %" PRIu64
           " amount mismatches, %" PRIu64 " lookup errors; in their histories EXPIRE %" PRIu64
           ", ACTIVATE %" PRIu64 ", TIER_CHANGE %" PRIu64 ", hold time-outs %" PRIu64
           "; campaign expired %" PRIu64 " points; replicas %s at index %" PRIu64
           "; audit %s: %s\n",
           k->members_checked, k->balance_mismatch, k->amount_mismatch, k->lookup_errors,
           k->kinds_seen[TALLY_KIND_EXPIRE], k->kinds_seen[TALLY_KIND_ACTIVATE],
           k->kinds_seen[TALLY_KIND_TIER_CHANGE], k->holds_timed_out, k->totals[1].expired,
           k->converged ? "converged" : "DID NOT CONVERGE", k->applied_index,
           !k->audited ? "not run (no --data-dirs)" : k->audit_ok ? "OK" : "DIFFERENCE",
           k->ok ? "OK" : "FAILED");
}

static int write_svg(const char *path, const struct totals *r)
{
    uint64_t *count = calloc(r->nsec + 1, sizeof(*count));
    uint64_t *p99 = calloc(r->nsec + 1, sizeof(*p99));
    if (count == NULL || p99 == NULL) {
        free(count);
        free(p99);
        return -ENOMEM;
    }
    for (uint32_t s = 0; s < r->nsec; s++) {
        count[s] = atomic_load(&B.ticks[s].postings);
        p99[s] = tick_p99(&B.ticks[s]);
    }
    struct svg_plot g;
    int rc = svg_plot_open(&g, path, (uint64_t)r->nsec * NS, NS, count, p99, r->nsec);
    if (rc == 0) {
        const struct options *o = &B.o;
        fprintf(g.f, "<text x=\"%d\" y=\"22\" font-size=\"15\">tally-bench: %s loop, %u clients, "
                     "batches of %u%s; %.0f postings/s, %s p99 %.1f ms</text>\n",
                SVG_LEFT, o->rate > 0 ? "open" : "closed", o->clients, o->batch,
                o->rate > 0 ? " (fixed arrival rate)" : "", r->rate,
                o->batch == 1 ? "posting" : "batch", ms_of(hist_percentile(&r->writes, 0.99)));
        double ex = ((double)B.expire_at_ms - (double)B.start_wall_ms) / 1e3;
        if (ex > 0 && ex < r->nsec) {
            double x = svg_plot_x(&g, (uint64_t)(ex * 1e9));
            fprintf(g.f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.0f\" stroke=\"#c00000\" "
                         "stroke-dasharray=\"4 3\"/>\n<text x=\"%.1f\" y=\"%d\" fill=\"#c00000\" "
                         "font-size=\"11\">campaign lots expire</text>\n",
                    x, x, SVG_TOP, SVG_TOP + g.ph, x + 3, SVG_TOP + 12);
        }
        svg_plot_axes(&g, "answered postings/s", "p99 of write requests answered in the second");
        svg_plot_series(&g, "<tspan fill=\"#1f4e9c\">&#8212; throughput</tspan>  <tspan "
                            "fill=\"#b35900\">&#9679; p99 latency of the second</tspan>  <tspan "
                            "fill=\"#c00000\">&#8942; campaign expiry</tspan>");
        rc = svg_plot_close(&g);
    }
    free(count);
    free(p99);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Options and main
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench --cluster ADDR[,ADDR...] [options]\n"
            "Drives a running cluster with the retail workload, then checks it\n"
            "(docs/BENCHMARKS.md).\n"
            "  --members N          members of the main program (default 1000000; the campaign\n"
            "                       program gets a tenth)\n"
            "  --clients N          sessions, one thread each (default 4, at most 64)\n"
            "  --threads T          drive the sessions from T threads instead (libtally's\n"
            "                       asynchronous POST; closed loop, --read-share 0 only)\n"
            "  --batch B            postings per request, 1..8190 (default 8190)\n"
            "  --seconds S          length of the load (default 60, at most 3600)\n"
            "  --rate R             open loop: R requests a second are due (default: closed loop)\n"
            "  --read-share F       share of requests that are balance reads (default 0.05)\n"
            "  --stale-share F      share of reads that may be stale (default 0.5)\n"
            "  --campaign-share F   share of posting requests for the campaign (default 0.2)\n"
            "  --pending-ms MS      pending window of pending accruals (default 2000)\n"
            "  --hold-timeout-ms MS hold time-out of both programs (default 2000)\n"
            "  --expire-at S        the campaign's lots expire S s into the load (default half)\n"
            "  --check-members N    members per program whose balances are checked (default 1000)\n"
            "  --program ID         first program id (default: the next free ids)\n"
            "  --data-dirs D,D,...  replica data directories: run tally-audit verify on each\n"
            "  --pids PID,...       replica processes: report their CPU time\n"
            "  --timeout S          deadline of each call to the cluster (default 60)\n"
            "  --seed N  --json  --json-file FILE  --svg FILE  --quiet (no progress line)\n"
            "exit: 0 done and checked, 1 the check failed, 2 usage, 3 cluster unreachable or\n"
            "      a request failed\n");
}

static bool parse_u32(const char *s, uint64_t lo, uint64_t hi, uint32_t *out)
{
    uint64_t v;
    if (!cli_parse_u64(s, &v) || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_share(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

static bool parse_list(char *s, const char **dirs, pid_t *pids, uint32_t *n)
{
    for (char *tok = strtok(s, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (*n >= (dirs != NULL ? DIRS_MAX : STATUS_MAX))
            return false;
        if (dirs != NULL) {
            dirs[(*n)++] = tok;
        } else {
            uint64_t v;
            if (!cli_parse_u64(tok, &v) || v == 0 || v > INT32_MAX)
                return false;
            pids[(*n)++] = (pid_t)v;
        }
    }
    return *n > 0;
}

static int parse(int argc, char **argv, struct options *o)
{
    *o = (struct options){.members = 1000000, .clients = 4, .batch = TALLY_BATCH_MAX,
                          .seconds = 60, .read_share = 0.05, .stale_share = 0.5,
                          .campaign_share = 0.2, .pending_ms = 2000, .hold_timeout_ms = 2000,
                          .check_members = 1000, .seed = 1,
                          .timeout_ms = TIMEOUT_MS_DEFAULT};
    o->addresses = getenv("TALLY_CLUSTER");
    bool expire_given = false;
    static const struct option longs[] = {
        {"cluster", required_argument, 0, 'c'},       {"members", required_argument, 0, 'm'},
        {"clients", required_argument, 0, 'n'},       {"batch", required_argument, 0, 'b'},
        {"seconds", required_argument, 0, 's'},       {"rate", required_argument, 0, 'r'},
        {"read-share", required_argument, 0, 'R'},    {"stale-share", required_argument, 0, 'T'},
        {"campaign-share", required_argument, 0, 'C'}, {"pending-ms", required_argument, 0, 'P'},
        {"hold-timeout-ms", required_argument, 0, 'H'}, {"expire-at", required_argument, 0, 'E'},
        {"check-members", required_argument, 0, 'K'}, {"program", required_argument, 0, 'g'},
        {"data-dirs", required_argument, 0, 'd'},     {"pids", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 'S'},          {"json", no_argument, 0, 'J'},
        {"json-file", required_argument, 0, 'j'},     {"svg", required_argument, 0, 'v'},
        {"quiet", no_argument, 0, 'q'},               {"help", no_argument, 0, 'h'},
        {"timeout", required_argument, 0, 't'},       {"threads", required_argument, 0, 'D'},
        {0, 0, 0, 0},
    };
    int ch, li = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        uint32_t v32 = 0;
        switch (ch) {
        case 'c': o->addresses = optarg; break;
        case 'm': ok = cli_parse_u64(optarg, &o->members) && o->members >= 20 &&
                       o->members <= WORKLOAD_MEMBERS_MAX; break;
        case 'n': ok = parse_u32(optarg, 1, CLIENTS_MAX, &o->clients); break;
        case 'D': ok = parse_u32(optarg, 1, CLIENTS_MAX, &o->threads); break;
        case 'b': ok = parse_u32(optarg, 1, TALLY_BATCH_MAX, &o->batch); break;
        case 's': ok = parse_u32(optarg, 1, SECONDS_MAX, &o->seconds); break;
        case 'r': ok = parse_u32(optarg, 1, 10000000, &o->rate); break;
        case 'R': ok = parse_share(optarg, &o->read_share); break;
        case 'T': ok = parse_share(optarg, &o->stale_share); break;
        case 'C': ok = parse_share(optarg, &o->campaign_share); break;
        case 'P': ok = cli_parse_u64(optarg, &o->pending_ms) && o->pending_ms >= 1 &&
                       o->pending_ms <= TALLY_DURATION_MAX_MS; break;
        case 'H': ok = cli_parse_u64(optarg, &o->hold_timeout_ms) && o->hold_timeout_ms >= 1 &&
                       o->hold_timeout_ms <= TALLY_DURATION_MAX_MS; break;
        case 'E': ok = parse_u32(optarg, 0, SECONDS_MAX, &o->expire_at_s); expire_given = true;
                  break;
        case 'K': ok = parse_u32(optarg, 1, CHECK_MEMBERS_MAX, &o->check_members); break;
        case 'g': ok = parse_u32(optarg, 1, 1000, &v32); o->program = v32; break;
        case 'd': ok = parse_list(optarg, o->dirs, NULL, &o->ndirs); break;
        case 'p': ok = parse_list(optarg, NULL, o->pids, &o->npids); break;
        case 'S': ok = cli_parse_u64(optarg, &o->seed); break;
        case 'J': o->json = true; break;
        case 'j': o->json_file = optarg; break;
        case 'v': o->svg = optarg; break;
        case 'q': o->quiet = true; break;
        case 't': ok = parse_u32(optarg, 1, 3600, &v32); o->timeout_ms = v32 * UINT64_C(1000);
                  break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default:
            fprintf(stderr, "tally-bench: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "tally-bench: bad value for --%s: %s\n", longs[li].name, optarg);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "tally-bench: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (o->addresses == NULL) {
        fprintf(stderr, "tally-bench: no cluster: give --cluster ADDR[,ADDR...] (or set "
                        "TALLY_CLUSTER)\n");
        return EXIT_USAGE;
    }
    if (!expire_given)
        o->expire_at_s = o->seconds / 2;
    if (o->threads == 0 || o->threads > o->clients)
        o->threads = o->clients;
    if (o->threads < o->clients && (o->rate != 0 || o->read_share != 0)) {
        fprintf(stderr, "tally-bench: --threads below --clients drives posts in a closed loop "
                        "only: give --read-share 0 and no --rate\n");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static struct driver *drivers; /* --threads below --clients */

static struct client *clients_start(void)
{
    const struct options *o = &B.o;
    struct client *t = calloc(o->clients, sizeof(*t));
    if (t == NULL)
        abort();
    for (uint32_t i = 0; i < o->clients; i++) {
        char label[32];
        snprintf(label, sizeof(label), "bench-%u", i + 1);
        t[i].index = i;
        t[i].rng = o->seed * 7919u + i;
        for (uint32_t p = 0; p < PROGRAMS; p++) {
            generator_init(&t[i].w[p], p, i + 1);
            workload_setup_skip(&t[i].w[p]);
            t[i].expect[p] = calloc(B.nsample[p] + 1, sizeof(struct expect));
            if (t[i].expect[p] == NULL)
                abort();
        }
        for (uint32_t op = 0; op < OP_COUNT; op++)
            hist_reset(&t[i].hist[op]);
        t[i].postings = calloc(TALLY_BATCH_MAX, sizeof(*t[i].postings));
        t[i].results = calloc(TALLY_BATCH_MAX, sizeof(*t[i].results));
        t[i].defer = calloc(DEFER_MAX, sizeof(*t[i].defer));
        if (t[i].postings == NULL || t[i].results == NULL || t[i].defer == NULL)
            abort();
        if (open_client(&t[i].tc, label) != 0)
            exit(EXIT_CLUSTER);
        if (o->threads == o->clients &&
            pthread_create(&t[i].thread, NULL, client_main, &t[i]) != 0)
            abort();
    }
    if (o->threads < o->clients) {
        drivers = calloc(o->threads, sizeof(*drivers));
        if (drivers == NULL)
            abort();
        for (uint32_t d = 0; d < o->threads; d++) {
            drivers[d] = (struct driver){.index = d, .t = t};
            if (pthread_create(&drivers[d].thread, NULL, driver_main, &drivers[d]) != 0)
                abort();
        }
    }
    return t;
}

/* Set by SIGINT or SIGTERM during the load: end it now. */
static volatile sig_atomic_t stop_load;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_load = 1;
}

/* Run the load: start the clients, print progress each second, stop at the end (of --seconds,
 * or at the first second after SIGINT or SIGTERM). */
static void run_load(struct client *t, struct totals *r)
{
    const struct options *o = &B.o;
    uint64_t cpu0[STATUS_MAX];
    for (uint32_t i = 0; i < o->npids; i++)
        cpu0[i] = bench_process_cpu_ticks((int)o->pids[i]);
    B.start_ns = now_ns();
    B.start_wall_ms = cli_now_ms();
    B.end_ns = B.start_ns + (uint64_t)o->seconds * NS;
    struct sigaction stop = {.sa_handler = on_stop_signal}, old_int, old_term;
    sigemptyset(&stop.sa_mask);
    sigaction(SIGINT, &stop, &old_int);
    sigaction(SIGTERM, &stop, &old_term);
    atomic_store(&B.phase, 1);
    uint32_t ran = 0; /* full seconds of load */
    for (; ran < o->seconds && atomic_load(&B.failed) == 0 && !stop_load; ran++) {
        uint64_t wake = B.start_ns + (uint64_t)(ran + 1) * NS;
        for (uint64_t now = now_ns(); now < wake && atomic_load(&B.failed) == 0; now = now_ns())
            sleep_ns(wake - now < 20000000u ? wake - now : 20000000u);
        progress(ran);
    }
    atomic_store(&B.phase, 2);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_load)
        fprintf(stderr, "tally-bench: load stopped by a signal after %u s\n", ran);
    for (uint32_t i = 0; o->threads == o->clients && i < o->clients; i++)
        pthread_join(t[i].thread, NULL);
    for (uint32_t d = 0; o->threads < o->clients && d < o->threads; d++)
        pthread_join(drivers[d].thread, NULL);
    free(drivers);
    drivers = NULL;
    uint64_t wall = now_ns() - B.start_ns;
    for (uint32_t i = 0; i < o->npids; i++)
        r->cpu_ticks[i] = bench_process_cpu_ticks((int)o->pids[i]) - cpu0[i];
    for (uint32_t op = 0; op < OP_COUNT; op++)
        hist_reset(&r->hist[op]);
    hist_reset(&r->writes);
    for (uint32_t i = 0; i < o->clients; i++) {
        for (uint32_t op = 0; op < OP_COUNT; op++) {
            hist_merge(&r->hist[op], &t[i].hist[op]);
            if (op != OP_READ && op != OP_READ_STALE)
                hist_merge(&r->writes, &t[i].hist[op]);
        }
        r->requests += t[i].requests;
        r->postings += t[i].postings_sent;
        r->reads += t[i].reads;
        r->read_errors += t[i].read_errors;
        r->pending_ok += t[i].pending_ok;
        r->late += t[i].late;
        r->max_lag_ns = t[i].max_lag_ns > r->max_lag_ns ? t[i].max_lag_ns : r->max_lag_ns;
        for (uint32_t c = 0; c < TALLY_RESULT_CODE_LIMIT; c++)
            r->by_code[c] += t[i].by_code[c];
        for (uint32_t k = 0; k < TALLY_KIND_LIMIT; k++)
            r->ok_by_kind[k] += t[i].ok_by_kind[k];
    }
    r->ok = r->by_code[TALLY_OK];
    r->seconds = (double)wall / 1e9;
    r->rate = (double)r->postings / r->seconds;
    if (o->rate > 0) {
        r->due = (uint64_t)ran * o->rate;
        r->backlog = r->due > r->requests ? r->due - r->requests : 0;
    }
    r->nsec = ran < B.nticks ? ran : B.nticks;
    uint64_t per_s[SECONDS_MAX];
    for (uint32_t s = 0; s < r->nsec; s++)
        per_s[s] = atomic_load(&B.ticks[s].postings);
    qsort(per_s, r->nsec, sizeof(per_s[0]), compare_u64);
    uint32_t mid = r->nsec / 2;
    r->median_rate = r->nsec == 0     ? 0
                     : r->nsec % 2 ? (double)per_s[mid]
                                   : ((double)per_s[mid - 1] + (double)per_s[mid]) / 2;
}

/* Replicas, audit, and the verdict. */
static void finish_check(const struct totals *r, struct check *k, struct tally_replica_status *st,
                         uint32_t *nst)
{
    double elapsed_s = r->seconds;
    double expire_s = ((double)B.expire_at_ms - (double)B.start_wall_ms) / 1e3;
    k->need_tier = r->ok_by_kind[TALLY_KIND_ACCRUE] > 1000;
    k->need_activate = r->pending_ok > 100 && elapsed_s * 1000 > 2.0 * (double)B.o.pending_ms;
    k->need_expire = B.o.campaign_share > 0 && expire_s + 1 < elapsed_s &&
                     r->ok_by_kind[TALLY_KIND_ACCRUE] > 1000;
    k->converged = converge(st, nst);
    k->applied_index = *nst > 0 ? st[0].applied_index : 0;
    if (B.o.ndirs > 0) {
        k->audited = true;
        k->audit_ok = true;
        for (uint32_t i = 0; i < B.o.ndirs; i++) {
            /* A replica's directory (tallyd --dir) holds the ledger in ledger/. */
            char path[4096], probe[4200];
            snprintf(path, sizeof(path), "%s", B.o.dirs[i]);
            snprintf(probe, sizeof(probe), "%s/ledger/data.mdb", B.o.dirs[i]);
            if (access(probe, F_OK) == 0)
                snprintf(path, sizeof(path), "%s/ledger", B.o.dirs[i]);
            struct audit_report ar;
            memset(&ar, 0, sizeof(ar));
            int rc = audit_verify(path, &ar);
            if (rc != 0 || !ar.ok) {
                k->audit_ok = false;
                fprintf(stderr, "tally-bench: audit of %s: %s\n", B.o.dirs[i],
                        rc != 0 ? tally_strerror(rc) : ar.what);
            }
        }
    }
    k->ok = k->balance_mismatch == 0 && k->amount_mismatch == 0 && k->lookup_errors == 0 &&
            !k->defer_overflow && k->members_checked > 0 && k->converged &&
            (!k->audited || k->audit_ok) &&
            (!k->need_expire ||
             (k->kinds_seen[TALLY_KIND_EXPIRE] > 0 && k->totals[1].expired > 0)) &&
            (!k->need_activate || k->kinds_seen[TALLY_KIND_ACTIVATE] > 0) &&
            (!k->need_tier || k->kinds_seen[TALLY_KIND_TIER_CHANGE] > 0);
}

/* The SVG, the JSON file, then the JSON or the text on stdout. Returns 0, or the SVG's error.
 * Frees doc. */
static int report_emit(cJSON *doc, const struct totals *r, const struct check *k)
{
    const struct options *o = &B.o;
    int svg_rc = 0;
    if (o->svg != NULL) {
        svg_rc = write_svg(o->svg, r);
        if (svg_rc != 0)
            fprintf(stderr, "tally-bench: cannot write %s: %s\n", o->svg, strerror(-svg_rc));
        else
            cJSON_AddStringToObject(doc, "svg", o->svg);
    }
    if (o->json_file != NULL) {
        char *text = cJSON_Print(doc);
        FILE *f = fopen(o->json_file, "w");
        if (text == NULL || f == NULL || fprintf(f, "%s\n", text) < 0)
            fprintf(stderr, "tally-bench: cannot write %s\n", o->json_file);
        if (f != NULL)
            fclose(f);
        free(text);
    }
    if (o->json)
        cli_print_json(doc);
    else {
        report_text(r, k);
        cJSON_Delete(doc);
    }
    return svg_rc;
}

/* Both programs and their members; *seconds: how long it took. */
static int setup(double *seconds)
{
    struct tally_client *c;
    if (open_client(&c, "bench-setup") != 0)
        return EXIT_CLUSTER;
    int status = choose_programs(c);
    uint64_t postings = 0, t0 = now_ns();
    for (uint32_t p = 0; p < PROGRAMS && status == EXIT_OK; p++) {
        if (!B.o.quiet)
            fprintf(stderr, "tally-bench: setup of program %u: %" PRIu64 " members\n",
                    B.program[p], B.members[p]);
        status = setup_program(c, p, &postings);
    }
    tally_client_close(c);
    *seconds = (double)(now_ns() - t0) / 1e9;
    if (status == EXIT_OK && !B.o.quiet)
        fprintf(stderr, "tally-bench: setup: %" PRIu64 " postings in %.1f s\n", postings,
                *seconds);
    return status;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--replay") == 0 || strncmp(argv[i], "--replay=", 9) == 0)
            return replay_main(argc, argv); /* the replay of real purchase histories */
    }
    int status = parse(argc, argv, &B.o);
    if (status != EXIT_OK)
        return status;
    signal(SIGPIPE, SIG_IGN);
    const struct options *o = &B.o;

    double setup_s = 0;
    status = setup(&setup_s);
    if (status != EXIT_OK)
        return status;
    choose_sample();
    /* The campaign's expiry instant was fixed at its creation, from an estimate of the setup
     * left: start the load when planned, so that it falls --expire-at seconds in (later if the
     * setup was slower than estimated; the report gives the instant as it fell). */
    uint64_t planned_ms = B.expire_at_ms - o->expire_at_s * UINT64_C(1000);
    for (uint64_t now = cli_now_ms(); now < planned_ms; now = cli_now_ms())
        sleep_ns((planned_ms - now) * UINT64_C(1000000));

    B.nticks = o->seconds + TIMELINE_SLACK_S;
    B.ticks = calloc(B.nticks, sizeof(*B.ticks));
    if (B.ticks == NULL)
        abort();
    struct client *t = clients_start();
    struct totals r = {0};
    run_load(t, &r);
    int failed = atomic_load(&B.failed);
    if (failed != 0) {
        fprintf(stderr, "tally-bench: a request failed: %s\n", tally_strerror(failed));
        return EXIT_CLUSTER;
    }

    struct check k = {0};
    if (self_check(t, o->clients, &k) != EXIT_OK)
        return EXIT_CLUSTER;
    struct tally_replica_status st[STATUS_MAX];
    uint32_t nst = 0;
    finish_check(&r, &k, st, &nst);

    cJSON *doc = report_json(&r, &k, st, nst);
    cJSON_AddNumberToObject(cJSON_GetObjectItem(doc, "load"), "setup_seconds", setup_s);
    int out_rc = report_emit(doc, &r, &k);
    for (uint32_t i = 0; i < o->clients; i++) {
        tally_client_close(t[i].tc);
        for (uint32_t p = 0; p < PROGRAMS; p++) {
            workload_deinit(&t[i].w[p]);
            free(t[i].expect[p]);
        }
        free(t[i].postings);
        free(t[i].results);
        free(t[i].defer);
    }
    free(t);
    for (uint32_t p = 0; p < PROGRAMS; p++) {
        free(B.sample[p]);
        free(B.slot_of[p]);
    }
    free(B.ticks);
    return k.ok && out_rc == 0 ? EXIT_OK : EXIT_CHECK;
}
