/* tally_drill.c: tally-drill, a failover drill against a running tally cluster.
 *
 *   tally-drill --cluster A,B,C [--fault kill|stop] [--repeat N] [--duration S] [--rate N]
 *               [--json] [--svg FILE] ...            (tally-drill --help lists every option)
 *
 * What it does
 * ------------
 * It posts a steady load of accruals to the cluster, kills (SIGKILL) or pauses (SIGSTOP) the
 * leader in the middle of it, heals the fault (restarts the killed replica, SIGCONTs the paused
 * one) and reports, for each fault:
 *   - the unavailability window: from the fault to the first posting acknowledged after it;
 *   - the latency of the load before the fault, during the recovery (from the fault to one
 *     second after the first acknowledgement) and after it, as percentiles;
 * and, once all faults are done, the loss/duplicate check: every acknowledged posting is in the
 * ledger exactly once with the result the client was given (asked by id), no two acknowledged
 * postings share an entry, and every drill member's balance moved by exactly the sum of its
 * acknowledged postings. `--json` prints the report as one JSON document; `--svg FILE` draws the
 * timeline (throughput and latency per 100 ms, faults and recoveries marked).
 *
 * What it guarantees, and what it does not
 * ----------------------------------------
 * - Its own data only: it creates program --program (default 9001, no expiry, one tier) if it
 *   is missing, opens members --member-base .. +--members, and posts only there. Another writer
 *   to the same members makes the balance check fail: give every drill a range of its own.
 * - Open loop (no coordinated omission): request k is due at start + k / (rate / batch); a client
 *   thread takes the next due request, waits for its time if early, and its latency is measured
 *   from when it was due, not from when a (possibly blocked) thread got round to sending it. So
 *   the requests that queue up while the cluster is down carry the wait in their latency.
 * - A POST that ends unanswered (TALLY_ETIMEOUT, TALLY_ECLOSED) is posted again unchanged (the
 *   same session and request, or the same posting ids: law 4), as a till must (PROTOCOL.md
 *   section 11), until answered or until the drill's bound; one still unanswered then is "in
 *   doubt" and its ids are asked about in the check (applied or not, it is then accounted for).
 * - Answers arriving within DRILL_INFLIGHT_MS of the fault were on their way before it and do not
 *   end the window (no commit after a leader loss can be that quick: an election takes at least
 *   an election timeout).
 * - Bounded: every wait has --timeout, every call --call-timeout, the load --duration per fault;
 *   a watchdog (alarm) ends the process, after SIGCONTing a paused replica, if all else fails.
 *   SIGINT/SIGTERM heal the current fault, stop the load and still run the check.
 *
 * Finding and restarting the leader
 * ---------------------------------
 * The leader is asked of the cluster (the STATUS of every replica, as `tally status`), and its
 * client address is mapped to a local process by reading /proc/PID/cmdline of every tallyd: its
 * --id, --listen, --peer (or --config file) give its client address. Before the kill its argv,
 * cwd, executable and environment are read from /proc, so that it can be started again as it was.
 * Restart (--restart): `auto` (default) waits DRILL_SUPERVISOR_WAIT_MS for a supervisor (make
 * run's cluster.sh, systemd Restart=) to start a tallyd on the same address, and starts it itself
 * (setsid, output to DIR/tallyd-drill.log) if none does; `self`, `supervisor`, `none` force one
 * way. --fault-cmd / --heal-cmd replace the signal and the restart with shell commands
 * ({id} {pid} {addr} substituted) for production drills (systemctl, iptables, a cloud API).
 *
 * Exit codes (cli_common.h): 0 every fault recovered and the check passed; 1 a fault did not
 * recover within --timeout, or the check found a lost, doubled or different posting; 2 usage;
 * 3 the cluster cannot be used (unreachable, no leader, the leader is not a local process);
 * 4 system error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli_common.h"
#include "svg.h"
#include "tally.h"
#include "tally_errors.h"
#include "tally_records.h"
#include "tally_results.h"
#include "tally_wire.h"

/* ---------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------- */

/* Faults per run: 1,000 kills at ~10 s each is a day; more is a soak test, not a drill. */
#define DRILL_REPEAT_MAX 1000u

/* Client threads (one libtally session each). Enough for any open-loop rate a drill needs; each
 * is one connection to the leader. */
#define DRILL_CLIENTS_MAX 64u

/* Postings per request: a drill measures failover, not peak throughput (that is tally-bench). */
#define DRILL_BATCH_MAX 1024u

/* Members of the drill; opened in batches of DRILL_OPEN_BATCH at the start. */
#define DRILL_MEMBERS_MAX 100000u
#define DRILL_OPEN_BATCH  512u

/* Postings one run may send: each is recorded (40 bytes) until the check, 160 MiB at most. The
 * run is refused up front if its rate x its longest duration could exceed this. */
#define DRILL_POSTINGS_MAX (UINT32_C(4) << 20)

/* Replicas a cluster may list (libtally takes 16 addresses). */
#define DRILL_REPLICAS_MAX 16u

/* Answers arriving this soon after a fault were already sent before it (see the top note). */
#define DRILL_INFLIGHT_MS 5u

/* Lookups of one checking thread that may fail (the cluster not answering) before it stops
 * asking: each may wait --timeout, and the check must end. */
#define DRILL_LOOKUP_ERRORS_MAX 8u

/* The recovery phase lasts from the fault to this long after the first acknowledgement: the
 * requests that queued during the outage drain in it. */
#define DRILL_RECOVERY_TAIL_MS 1000u

/* A drill's load runs at least this long after the recovery phase and the rejoin (the "after"
 * phase), whatever --duration says. */
#define DRILL_AFTER_MIN_MS 1000u

/* --restart auto: how long a supervisor gets to start a killed replica again before the drill
 * does it itself (cluster.sh restarts after 200 ms; systemd's RestartSec defaults to 100 ms). */
#define DRILL_SUPERVISOR_WAIT_MS 3000u

/* /proc/PID/cmdline and /proc/PID/environ bytes read (Linux caps argv+env at ~2 MiB; tallyd's
 * command line is under 1 KiB). */
#define PROC_ARGS_BYTES (64u * 1024u)
#define PROC_ENV_BYTES  (256u * 1024u)
#define PROC_ARGS_MAX   256u
#define PROC_ENV_MAX    1024u

/* Processes scanned under /proc: a bound on the loop, far above a server's process count. */
#define PROC_SCAN_MAX 65536u

/* A hook command after substitution. */
#define CMD_BYTES 4096u

/* Timeline buckets of the SVG (and of nothing else): 100 ms, or longer for long runs. */
#define SVG_BUCKET_MS_MIN 100u
#define SVG_BUCKETS_MAX   1500u

/* The drill's default program and members: far from the ids the demo and tests use. */
#define DRILL_PROGRAM_DEFAULT 9001u

#define NS_PER_MS UINT64_C(1000000)

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

enum fault_kind { FAULT_KILL, FAULT_STOP };
enum restart_mode { RESTART_AUTO, RESTART_SELF, RESTART_SUPERVISOR, RESTART_NONE };

struct opts {
    const char *cluster;
    enum fault_kind fault;
    unsigned repeat;
    uint64_t duration_ms, fault_at_ms;
    unsigned rate, batch, clients;
    uint32_t program;
    uint64_t member_base;
    unsigned members;
    uint64_t timeout_ms, call_timeout_ms, stop_max_ms;
    enum restart_mode restart;
    const char *fault_cmd, *heal_cmd, *svg;
    bool json;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tally-drill --cluster ADDR[,ADDR...] [options]\n\n"
            "Runs failover drills against a running tally cluster under a steady load and\n"
            "reports the unavailability after each fault, latency percentiles before, during\n"
            "and after it, and proves that every acknowledged posting is in the ledger once.\n\n"
            "  --fault kill|stop      SIGKILL the leader (then restart it), or SIGSTOP it (then\n"
            "                         SIGCONT it once the others serve)            [kill]\n"
            "  --repeat N             faults, one after the other                   [1]\n"
            "  --duration S           seconds of load per fault (longer if recovery is slow) [6]\n"
            "  --fault-at S           seconds into each drill's load the fault comes [duration/3]\n"
            "  --rate N               postings per second, open loop                [1000]\n"
            "  --batch N              postings per request                          [4]\n"
            "  --clients N            client threads (sessions)                     [32]\n"
            "  --program ID           the drill's own program (created if missing)  [9001]\n"
            "  --member-base N        first member id of the drill's own members    [1]\n"
            "  --members N            members (opened if missing)                   [1000]\n"
            "  --timeout S            bound on each wait (leader, recovery, rejoin) [30]\n"
            "  --call-timeout MS      bound on one POST before it is sent again     [5000]\n"
            "  --stop-max S           --fault stop: SIGCONT after this at the latest [timeout]\n"
            "  --restart auto|self|supervisor|none\n"
            "                         who starts a killed replica again: auto waits 3 s for a\n"
            "                         supervisor (make run, systemd), then does it   [auto]\n"
            "  --fault-cmd CMD        run CMD (sh -c) instead of signalling the leader\n"
            "  --heal-cmd CMD         run CMD to heal the fault instead of restart/SIGCONT\n"
            "                         ({id} {pid} {addr} of the leader are substituted)\n"
            "  --svg FILE             draw the timeline (throughput, latency, faults) as SVG\n"
            "  --json                 print the report as JSON\n\n"
            "The cluster may also be given in TALLY_CLUSTER. Exit codes: 0 every fault recovered\n"
            "and the check passed; 1 a fault did not recover, or the check failed; 2 usage;\n"
            "3 cluster unusable (unreachable, no leader, leader not a local process); 4 system.\n");
}

__attribute__((format(printf, 1, 2))) static int usage_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tally-drill: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (tally-drill --help lists the options)\n");
    va_end(ap);
    return CLI_EXIT_USAGE;
}

/* A number option in [lo, hi], times mul. */
static bool opt_number(const char *v, uint64_t lo, uint64_t hi, uint64_t mul, uint64_t *out)
{
    uint64_t n;
    if (v == NULL || !cli_parse_u64(v, &n) || n < lo || n > hi)
        return false;
    *out = n * mul;
    return true;
}

/* What the report calls the fault: a hook's command is whatever it does. */
static const char *fault_name(const struct opts *o)
{
    return o->fault_cmd != NULL ? "command" : o->fault == FAULT_KILL ? "kill" : "stop";
}

/* The options that take a value (--json and --help take none). */
static bool opt_known(const char *a)
{
    static const char *const names[] = {
        "--cluster", "--fault", "--restart", "--repeat", "--duration", "--fault-at", "--rate",
        "--batch", "--clients", "--program", "--member-base", "--members", "--timeout",
        "--call-timeout", "--stop-max", "--fault-cmd", "--heal-cmd", "--svg"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(a, names[i]) == 0)
            return true;
    return false;
}

static int opts_parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.cluster = getenv("TALLY_CLUSTER"), .fault = FAULT_KILL, .repeat = 1,
                       .duration_ms = 6000, .rate = 1000, .batch = 4, .clients = 32,
                       .program = DRILL_PROGRAM_DEFAULT, .member_base = 1, .members = 1000,
                       .timeout_ms = 30000, .call_timeout_ms = 5000};
    bool have_fault_at = false, have_stop_max = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        bool ok = true, takes = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true, takes = false;
        } else if (!opt_known(a)) {
            return usage_fail("unknown option '%s'", a);
        } else if (v == NULL) {
            return usage_fail("%s needs a value", a);
        } else if (strcmp(a, "--cluster") == 0) {
            o->cluster = v;
        } else if (strcmp(a, "--fault") == 0) {
            ok = strcmp(v, "kill") == 0 || strcmp(v, "stop") == 0;
            o->fault = strcmp(v, "stop") == 0 ? FAULT_STOP : FAULT_KILL;
        } else if (strcmp(a, "--restart") == 0) {
            ok = true;
            if (strcmp(v, "auto") == 0)
                o->restart = RESTART_AUTO;
            else if (strcmp(v, "self") == 0)
                o->restart = RESTART_SELF;
            else if (strcmp(v, "supervisor") == 0)
                o->restart = RESTART_SUPERVISOR;
            else if (strcmp(v, "none") == 0)
                o->restart = RESTART_NONE;
            else
                ok = false;
        } else if (strcmp(a, "--repeat") == 0) {
            ok = opt_number(v, 1, DRILL_REPEAT_MAX, 1, &n), o->repeat = (unsigned)n;
        } else if (strcmp(a, "--duration") == 0) {
            ok = opt_number(v, 1, 3600, 1000, &o->duration_ms);
        } else if (strcmp(a, "--fault-at") == 0) {
            ok = opt_number(v, 0, 3600, 1000, &o->fault_at_ms), have_fault_at = true;
        } else if (strcmp(a, "--rate") == 0) {
            ok = opt_number(v, 1, 1000000, 1, &n), o->rate = (unsigned)n;
        } else if (strcmp(a, "--batch") == 0) {
            ok = opt_number(v, 1, DRILL_BATCH_MAX, 1, &n), o->batch = (unsigned)n;
        } else if (strcmp(a, "--clients") == 0) {
            ok = opt_number(v, 1, DRILL_CLIENTS_MAX, 1, &n), o->clients = (unsigned)n;
        } else if (strcmp(a, "--program") == 0) {
            ok = opt_number(v, 1, UINT32_MAX, 1, &n), o->program = (uint32_t)n;
        } else if (strcmp(a, "--member-base") == 0) {
            ok = opt_number(v, 1, TALLY_SYS_FIRST - 1 - DRILL_MEMBERS_MAX, 1, &o->member_base);
        } else if (strcmp(a, "--members") == 0) {
            ok = opt_number(v, 1, DRILL_MEMBERS_MAX, 1, &n), o->members = (unsigned)n;
        } else if (strcmp(a, "--timeout") == 0) {
            ok = opt_number(v, 1, 3600, 1000, &o->timeout_ms);
        } else if (strcmp(a, "--call-timeout") == 0) {
            ok = opt_number(v, 10, 3600000, 1, &o->call_timeout_ms);
        } else if (strcmp(a, "--stop-max") == 0) {
            ok = opt_number(v, 1, 3600, 1000, &o->stop_max_ms), have_stop_max = true;
        } else if (strcmp(a, "--fault-cmd") == 0) {
            o->fault_cmd = v;
        } else if (strcmp(a, "--heal-cmd") == 0) {
            o->heal_cmd = v;
        } else if (strcmp(a, "--svg") == 0) {
            o->svg = v;
        } else {
            return usage_fail("unknown option '%s'", a);
        }
        if (!ok)
            return usage_fail("bad value for %s", a);
        i += takes;
    }
    if (o->cluster == NULL || o->cluster[0] == '\0')
        return usage_fail("no cluster: give --cluster ADDR[,ADDR...] or set TALLY_CLUSTER");
    if (!have_fault_at)
        o->fault_at_ms = o->duration_ms / 3;
    if (o->fault_at_ms >= o->duration_ms)
        return usage_fail("--fault-at must come before the end of --duration");
    if (!have_stop_max)
        o->stop_max_ms = o->timeout_ms;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Clocks and small helpers
 * ------------------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank over a sorted array (the same rule as bench_percentile). */
static uint64_t percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return sorted[rank - 1];
}

/* Whether two host:port addresses name the same endpoint: the same text, or the same port on
 * hosts that are both this machine's loopback or wildcard. */
static bool addr_same(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return true;
    const char *pa = strrchr(a, ':'), *pb = strrchr(b, ':');
    if (pa == NULL || pb == NULL || strcmp(pa, pb) != 0)
        return false;
    static const char *const local[] = {"127.0.0.1", "localhost", "0.0.0.0", "[::1]", "[::]"};
    bool la = false, lb = false;
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        size_t n = strlen(local[i]);
        la |= (size_t)(pa - a) == n && strncmp(a, local[i], n) == 0;
        lb |= (size_t)(pb - b) == n && strncmp(b, local[i], n) == 0;
    }
    return la && lb;
}

/* ---------------------------------------------------------------------------------------------
 * tallyd processes, from /proc
 * ------------------------------------------------------------------------------------------- */

struct replica_proc {
    pid_t pid;
    uint64_t id;
    char addr[64];       /* its client address */
    char dir[PATH_MAX];  /* --dir as given (relative to cwd) */
    char cwd[PATH_MAX];
    char exe[PATH_MAX];
    char args[PROC_ARGS_BYTES]; /* NUL-separated, as in /proc/PID/cmdline */
    size_t args_len;
    char *env; /* NUL-separated, PROC_ENV_BYTES at most (heap: only the victim's is kept) */
    size_t env_len;
};

/* Read a whole small file: its length, or -errno; a file longer than max is an error. */
static ssize_t read_small(const char *path, char *buf, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    for (unsigned round = 0; round < 1024 && got < max; round++) {
        ssize_t r = read(fd, buf + got, max - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return got >= max ? -E2BIG : (ssize_t)got;
}

/* Whether a process is alive: it exists and is neither a zombie nor dead. */
static bool proc_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    ssize_t n = read_small(path, buf, sizeof(buf) - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' && p[2] != 'x';
}

struct proc_flags {
    uint64_t id;
    const char *dir, *listen;
    char peer_client[DRILL_REPLICAS_MAX][64];
    uint64_t peer_id[DRILL_REPLICAS_MAX];
    unsigned npeers;
};

static void flags_set(struct proc_flags *f, const char *name, const char *value)
{
    if (strcmp(name, "id") == 0) {
        f->id = strtoull(value, NULL, 10);
    } else if (strcmp(name, "dir") == 0) {
        f->dir = value;
    } else if (strcmp(name, "listen") == 0) {
        f->listen = value;
    } else if (strcmp(name, "peer") == 0 && f->npeers < DRILL_REPLICAS_MAX) {
        const char *c1 = strchr(value, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (c2 == NULL)
            return;
        f->peer_id[f->npeers] = strtoull(value, NULL, 10);
        snprintf(f->peer_client[f->npeers], sizeof(f->peer_client[0]), "%s", c2 + 1);
        f->npeers++;
    }
}

/* tallyd --config FILE: the same names, one "name value" per line (server/main.c). Values are
 * kept in `store` (the flags point into it). */
static void flags_from_config(struct proc_flags *f, const char *path, char *store, size_t max)
{
    ssize_t n = read_small(path, store, max - 1);
    if (n <= 0)
        return;
    store[n] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(store, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line[strcspn(line, "#\r")] = '\0';
        char *name = line + strspn(line, " \t");
        char *value = name + strcspn(name, " \t");
        if (*value == '\0')
            continue;
        *value++ = '\0';
        value += strspn(value, " \t");
        value[strcspn(value, " \t")] = '\0';
        flags_set(f, name, value);
    }
}

/* Read process pid as a tallyd: false if it is not one (or is gone). */
static bool proc_read(pid_t pid, struct replica_proc *p)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    ssize_t n = read_small(path, p->args, sizeof(p->args) - 1);
    if (n <= 0)
        return false;
    p->args[n] = '\0';
    p->args_len = (size_t)n;
    const char *base = strrchr(p->args, '/');
    base = base != NULL ? base + 1 : p->args;
    if (strcmp(base, "tallyd") != 0 || !proc_alive(pid))
        return false;
    p->pid = pid;
    snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
    ssize_t l = readlink(path, p->cwd, sizeof(p->cwd) - 1);
    p->cwd[l > 0 ? l : 0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    l = readlink(path, p->exe, sizeof(p->exe) - 1);
    p->exe[l > 0 ? l : 0] = '\0';
    struct proc_flags f;
    memset(&f, 0, sizeof(f));
    static char config[16384]; /* one process at a time: proc_read is not reentrant */
    for (size_t off = 0; off < p->args_len;) {
        const char *a = p->args + off;
        off += strlen(a) + 1;
        const char *v = off < p->args_len ? p->args + off : NULL;
        if (strncmp(a, "--", 2) != 0 || v == NULL)
            continue;
        if (strcmp(a, "--config") == 0) {
            char cpath[PATH_MAX * 2];
            snprintf(cpath, sizeof(cpath), "%s%s%s", v[0] == '/' ? "" : p->cwd,
                     v[0] == '/' ? "" : "/", v);
            flags_from_config(&f, cpath, config, sizeof(config));
        } else {
            flags_set(&f, a + 2, v);
        }
        off += strlen(v) + 1;
    }
    p->id = f.id;
    snprintf(p->dir, sizeof(p->dir), "%s", f.dir != NULL ? f.dir : "");
    const char *addr = f.listen != NULL ? f.listen : "127.0.0.1:7401"; /* main.c's default */
    for (unsigned i = 0; i < f.npeers; i++)
        if (f.peer_id[i] == f.id)
            addr = f.peer_client[i];
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    return true;
}

/* The environment of p (read before it is killed, to start it again the same way). */
static void proc_read_env(struct replica_proc *p)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)p->pid);
    free(p->env);
    p->env = malloc(PROC_ENV_BYTES);
    ssize_t n = p->env != NULL ? read_small(path, p->env, PROC_ENV_BYTES - 1) : -ENOMEM;
    p->env_len = n > 0 ? (size_t)n : 0;
    if (p->env != NULL)
        p->env[p->env_len] = '\0';
}

/* Find the live tallyd serving clients on addr (not `except`): the number found (the first in
 * *out), 0 if none. */
static unsigned proc_find(const char *addr, pid_t except, struct replica_proc *out)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    static struct replica_proc scratch; /* 64 KiB of argv: not on the stack */
    unsigned found = 0;
    struct dirent *e;
    for (unsigned k = 0; k < PROC_SCAN_MAX && (e = readdir(d)) != NULL; k++) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == getpid() || pid == except)
            continue;
        memset(&scratch, 0, offsetof(struct replica_proc, args));
        if (!proc_read((pid_t)pid, &scratch) || !addr_same(scratch.addr, addr))
            continue;
        if (found++ == 0) {
            char *env = out->env;
            memcpy(out, &scratch, sizeof(*out));
            out->env = env;
        }
    }
    closedir(d);
    return found;
}

/* Start p again as it was: its executable, argv, cwd and environment, in a new session (it must
 * outlive the drill, and not get the terminal's Ctrl-C), stdin from /dev/null, stdout and stderr
 * appended to DIR/tallyd-drill.log. Double fork: the replica is not the drill's child. Returns
 * the new pid, or -errno. */
static pid_t proc_restart(const struct replica_proc *p, char *log_path, size_t log_max)
{
    /* Everything the child needs is built here: after fork, only async-signal-safe calls. */
    static char *argv[PROC_ARGS_MAX + 1], *envp[PROC_ENV_MAX + 1];
    static char args[PROC_ARGS_BYTES];
    memcpy(args, p->args, p->args_len + 1);
    unsigned na = 0, ne = 0;
    for (size_t off = 0; off < p->args_len && na < PROC_ARGS_MAX; off += strlen(args + off) + 1)
        argv[na++] = args + off;
    argv[na] = NULL;
    for (size_t off = 0; p->env != NULL && off < p->env_len && ne < PROC_ENV_MAX;
         off += strlen(p->env + off) + 1)
        envp[ne++] = p->env + off;
    envp[ne] = NULL;
    const char *dir = p->dir[0] != '\0' ? p->dir : ".";
    int len = snprintf(log_path, log_max, "%s%s%s/tallyd-drill.log",
                       dir[0] == '/' ? "" : p->cwd, dir[0] == '/' ? "" : "/", dir);
    if (len < 0 || (size_t)len >= log_max)
        return -ENAMETOOLONG;
    /* A binary rebuilt since it started shows as "(deleted)": use argv[0] from its cwd. */
    const char *exe = p->exe[0] != '\0' && strstr(p->exe, " (deleted)") == NULL ? p->exe : argv[0];
    int fds[2];
    if (na == 0 || pipe2(fds, O_CLOEXEC) != 0)
        return -EINVAL;
    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    if (child == 0) {
        setsid();
        pid_t grandchild = fork();
        if (grandchild != 0) {
            ssize_t w = write(fds[1], &grandchild, sizeof(grandchild));
            _exit(w == (ssize_t)sizeof(grandchild) ? 0 : 1);
        }
        if (chdir(p->cwd) != 0)
            _exit(126);
        int in = open("/dev/null", O_RDONLY);
        int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        for (int fd = 3; fd < 65536; fd++) /* the drill's sockets stay with the drill */
            if (fcntl(fd, F_GETFD) >= 0)
                close(fd);
        signal(SIGPIPE, SIG_DFL);
        execve(exe, argv, envp);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(fds[1]);
    pid_t started = -ECHILD;
    struct pollfd pf = {.fd = fds[0], .events = POLLIN};
    if (poll(&pf, 1, 5000) == 1 && read(fds[0], &started, sizeof(started)) != sizeof(started))
        started = -ECHILD;
    close(fds[0]);
    waitpid(child, NULL, 0);
    return started;
}

/* ---------------------------------------------------------------------------------------------
 * Hook commands
 * ------------------------------------------------------------------------------------------- */

/* Run a hook (sh -c) with {id} {pid} {addr} substituted, for at most timeout_ms (then its process
 * group is killed). Returns its exit status (0..255), 128+signal, or -errno / -ETIMEDOUT. */
static int run_hook(const char *tmpl, uint64_t id, pid_t pid, const char *addr,
                    uint64_t timeout_ms)
{
    char cmd[CMD_BYTES], idtext[24], pidtext[24];
    snprintf(idtext, sizeof(idtext), "%" PRIu64, id);
    snprintf(pidtext, sizeof(pidtext), "%d", pid > 0 ? (int)pid : 0);
    size_t o = 0;
    for (const char *s = tmpl; *s != '\0' && o + 1 < sizeof(cmd);) {
        const char *sub = strncmp(s, "{id}", 4) == 0     ? idtext
                          : strncmp(s, "{pid}", 5) == 0  ? pidtext
                          : strncmp(s, "{addr}", 6) == 0 ? addr
                                                          : NULL;
        if (sub == NULL) {
            cmd[o++] = *s++;
            continue;
        }
        s = strchr(s, '}') + 1;
        for (size_t k = 0; sub[k] != '\0' && o + 1 < sizeof(cmd); k++)
            cmd[o++] = sub[k];
    }
    cmd[o] = '\0';
    fflush(NULL);
    pid_t child = fork();
    if (child < 0)
        return -errno;
    if (child == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    uint64_t end = now_ns() + timeout_ms * NS_PER_MS;
    for (;;) {
        int status;
        if (waitpid(child, &status, WNOHANG) == child)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (now_ns() > end) {
            kill(-child, SIGKILL);
            waitpid(child, NULL, 0);
            return -ETIMEDOUT;
        }
        sleep_ns(10 * NS_PER_MS);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The load: open loop, one record per request and per posting
 * ------------------------------------------------------------------------------------------- */

enum req_state { REQ_UNSENT = 0, REQ_ACKED, REQ_IN_DOUBT };

struct req {
    uint64_t due_ns; /* when it was due, since the load's start */
    uint64_t ack_ns; /* when its answer came, since the load's start (0: none) */
    uint32_t state;  /* enum req_state */
    uint32_t resent; /* POST calls repeated after an unanswered one */
};

struct sent {
    uint8_t id[16];
    uint64_t seq;    /* from the result */
    uint32_t member; /* offset from --member-base */
    uint32_t points;
    uint32_t code;   /* the result (the original result for EXISTS) */
    uint32_t reserved;
};

static struct drill_state {
    struct opts o;
    struct req *reqs;
    struct sent *sent;
    uint32_t reqs_max;
    uint64_t start_ns, interval_ns;
    atomic_uint next_req;
    atomic_ullong load_end_ns;  /* no request due at or after this is sent (since start) */
    atomic_ullong hard_end_ns;  /* an unanswered POST is given up after this (since start) */
    atomic_ullong fault_ns;     /* the current fault (since start + 1; 0: none) */
    atomic_ullong recovered_ns; /* some answer after fault_ns + DRILL_INFLIGHT_MS */
    atomic_int load_error;      /* a POST error libtally's contract does not allow */
    atomic_bool capped;
} D;

static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t stopped_pid; /* a replica the drill has SIGSTOPped, for the watchdog */

static uint64_t since_start(void)
{
    return now_ns() - D.start_ns;
}

/* Sleep until `due` (since start), waking every 50 ms to see whether the load ended. */
static bool sleep_until_due(uint64_t due)
{
    for (unsigned round = 0; round < 1000000; round++) {
        uint64_t now = since_start();
        if (due >= atomic_load(&D.load_end_ns))
            return false;
        if (now >= due)
            return true;
        uint64_t step = due - now;
        sleep_ns(step < 50 * NS_PER_MS ? step : 50 * NS_PER_MS);
    }
    return false;
}

struct worker {
    unsigned index;
    struct tally_client *client;
    pthread_t thread;
};

static void worker_post(struct worker *w, uint32_t k, uint64_t *rng)
{
    const struct opts *o = &D.o;
    struct tally_posting p[DRILL_BATCH_MAX];
    struct tally_result r[DRILL_BATCH_MAX];
    struct sent *s = &D.sent[(size_t)k * o->batch];
    for (unsigned i = 0; i < o->batch; i++) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        memset(&p[i], 0, sizeof(p[i]));
        if (tally_client_id(w->client, p[i].id) != 0) {
            atomic_store(&D.load_error, -EIO);
            return;
        }
        p[i].program = o->program;
        p[i].kind = TALLY_KIND_ACCRUE;
        s[i].member = (uint32_t)(*rng % o->members);
        s[i].points = (uint32_t)(1 + (*rng >> 32) % 9);
        p[i].account = o->member_base + s[i].member;
        p[i].amount = s[i].points;
        p[i].value = s[i].points * 10u;
        memcpy(s[i].id, p[i].id, 16);
    }
    struct req *q = &D.reqs[k];
    int rc;
    /* Until answered: the very same postings again (libtally resends the same frame in the same
     * session; after a lost session the ids still make it safe). */
    for (;;) {
        rc = tally_client_post(w->client, p, o->batch, r, o->call_timeout_ms);
        if (rc != TALLY_ETIMEOUT && rc != TALLY_ECLOSED)
            break;
        q->resent++;
        if (since_start() >= atomic_load(&D.hard_end_ns) || interrupted)
            break;
    }
    if (rc != 0) {
        q->state = REQ_IN_DOUBT;
        if (rc != TALLY_ETIMEOUT && rc != TALLY_ECLOSED)
            atomic_store(&D.load_error, rc);
        return;
    }
    uint64_t ack = since_start();
    for (unsigned i = 0; i < o->batch; i++) {
        s[i].code = r[i].code == TALLY_EXISTS ? r[i].detail : r[i].code;
        s[i].seq = r[i].seq;
    }
    q->ack_ns = ack;
    q->state = REQ_ACKED;
    uint64_t fault = atomic_load(&D.fault_ns);
    if (fault != 0 && ack > fault - 1 + DRILL_INFLIGHT_MS * NS_PER_MS) {
        unsigned long long zero = 0;
        atomic_compare_exchange_strong(&D.recovered_ns, &zero, ack);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (w->index + 1) ^ (uint64_t)now_ns();
    for (uint32_t round = 0; round < D.reqs_max; round++) {
        uint32_t k = atomic_fetch_add(&D.next_req, 1);
        if (k >= D.reqs_max) {
            atomic_store(&D.capped, true);
            break;
        }
        uint64_t due = (uint64_t)k * D.interval_ns;
        D.reqs[k].due_ns = due;
        if (interrupted || !sleep_until_due(due))
            break;
        worker_post(w, k, &rng);
        if (atomic_load(&D.load_error) != 0)
            break;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The cluster: status, leader, setup
 * ------------------------------------------------------------------------------------------- */

struct cluster_view {
    struct tally_replica_status st[DRILL_REPLICAS_MAX];
    uint32_t n, answered;
    int leader; /* index into st, or -1 */
};

static int cluster_look(struct tally_client *c, struct cluster_view *v, uint64_t timeout_ms)
{
    v->n = 0;
    v->answered = 0;
    v->leader = -1;
    int rc = tally_client_status(c, v->st, DRILL_REPLICAS_MAX, &v->n, timeout_ms);
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->st[i].error != 0)
            continue;
        v->answered++;
        if (v->st[i].role == TALLY_WIRE_ROLE_LEADER && v->leader < 0)
            v->leader = (int)i;
    }
    return rc;
}

/* Wait for a leader; false at the deadline. */
static bool wait_leader(struct tally_client *c, struct cluster_view *v, uint64_t timeout_ms)
{
    uint64_t end = now_ns() + timeout_ms * NS_PER_MS;
    for (unsigned round = 0; round < 100000; round++) {
        cluster_look(c, v, 1000);
        if (v->leader >= 0)
            return true;
        if (now_ns() > end || interrupted)
            return false;
        sleep_ns(20 * NS_PER_MS);
    }
    return false;
}

/* Every replica answers, one leads, and each has applied what the leader had committed when
 * the wait began (a restarted replica has caught up). */
static bool wait_rejoined(struct tally_client *c, uint64_t timeout_ms)
{
    uint64_t end = now_ns() + timeout_ms * NS_PER_MS, goal = 0;
    struct cluster_view v;
    for (unsigned round = 0; round < 100000; round++) {
        cluster_look(c, &v, 1000);
        if (v.leader >= 0 && goal == 0)
            goal = v.st[v.leader].commit_index;
        bool all = v.leader >= 0 && v.answered == v.n && goal != 0;
        for (uint32_t i = 0; all && i < v.n; i++)
            all = v.st[i].applied_index >= goal;
        if (all)
            return true;
        if (now_ns() > end || interrupted)
            return false;
        sleep_ns(50 * NS_PER_MS);
    }
    return false;
}

static int post_setup(struct tally_client *c, const struct tally_posting *p, uint32_t n,
                      uint32_t allowed, const char *what, uint64_t timeout_ms)
{
    static struct tally_result r[DRILL_OPEN_BATCH];
    int rc = tally_client_post(c, p, n, r, timeout_ms);
    if (rc != 0) {
        fprintf(stderr, "tally-drill: cannot %s: %s\n", what, tally_strerror(rc));
        return CLI_EXIT_DATA;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t code = r[i].code == TALLY_EXISTS ? r[i].detail : r[i].code;
        if (code != TALLY_OK && code != allowed) {
            fprintf(stderr, "tally-drill: cannot %s: %s (%s)\n", what, tally_result_name(code),
                    tally_result_str(code));
            return CLI_EXIT_REJECTED;
        }
    }
    return 0;
}

/* The drill's program (no expiry, one tier: balances move only by the drill's postings) and
 * members; their balances before. */
static int drill_setup(struct tally_client *c, int64_t *before)
{
    const struct opts *o = &D.o;
    static struct tally_posting p[DRILL_OPEN_BATCH];
    memset(&p[0], 0, sizeof(p[0]));
    tally_client_id(c, p[0].id);
    p[0].program = o->program;
    p[0].kind = TALLY_KIND_PROGRAM;
    p[0].config.expiry = TALLY_EXPIRY_NONE;
    p[0].config.window = TALLY_WINDOW_ROLLING;
    p[0].config.window_months = 12;
    p[0].config.validity_months = 12;
    p[0].config.tier_count = 1;
    p[0].config.hold_timeout_ms = UINT64_C(15) * 60 * 1000;
    int rc = post_setup(c, p, 1, TALLY_PROGRAM_EXISTS, "create the drill's program", o->timeout_ms);
    if (rc != 0)
        return rc;
    struct tally_program_config cfg;
    struct tally_program_totals tot;
    if ((rc = tally_client_program(c, o->program, &cfg, &tot, NULL)) != 0) {
        fprintf(stderr, "tally-drill: cannot read program %" PRIu32 ": %s\n", o->program,
                tally_strerror(rc));
        return CLI_EXIT_DATA;
    }
    if (cfg.expiry != TALLY_EXPIRY_NONE) {
        fprintf(stderr, "tally-drill: program %" PRIu32 " exists and expires points: its "
                "balances could move without the drill; choose another --program\n", o->program);
        return CLI_EXIT_USAGE;
    }
    for (unsigned m = 0; m < o->members; m += DRILL_OPEN_BATCH) {
        uint32_t n = o->members - m < DRILL_OPEN_BATCH ? o->members - m : DRILL_OPEN_BATCH;
        for (uint32_t i = 0; i < n; i++) {
            memset(&p[i], 0, sizeof(p[i]));
            tally_client_id(c, p[i].id);
            p[i].program = o->program;
            p[i].kind = TALLY_KIND_OPEN;
            p[i].account = o->member_base + m + i;
        }
        if ((rc = post_setup(c, p, n, TALLY_ACCOUNT_EXISTS, "open the drill's members",
                             o->timeout_ms)) != 0)
            return rc;
    }
    for (unsigned m = 0; m < o->members; m++) {
        struct tally_account a;
        if ((rc = tally_client_account(c, o->program, o->member_base + m, &a, NULL)) != 0) {
            fprintf(stderr, "tally-drill: cannot read member %" PRIu64 ": %s\n",
                    o->member_base + m, tally_strerror(rc));
            return CLI_EXIT_DATA;
        }
        if (a.status != TALLY_ACCOUNT_STATUS_OPEN) {
            fprintf(stderr, "tally-drill: member %" PRIu64 " of program %" PRIu32 " is closed: "
                    "choose another --member-base\n", o->member_base + m, o->program);
            return CLI_EXIT_USAGE;
        }
        before[m] = a.available;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * One fault
 * ------------------------------------------------------------------------------------------- */

struct drill {
    uint64_t window_ns, fault_ns, recovered_ns, healed_ns, rejoined_ns, end_ns; /* since start */
    bool recovered, rejoined, local;
    bool cut; /* interrupted before it recovered: healed early, its window does not count */
    uint64_t victim_id;
    pid_t victim_pid, restarted_pid;
    char victim_addr[64], new_leader[64], how[16], log[PATH_MAX + 32], error[200];
    int fault_status, heal_status; /* hooks' exit statuses */
};

static struct replica_proc victim;

__attribute__((format(printf, 2, 3))) static void drill_note(struct drill *d, const char *fmt,
                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof(d->error)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->error[0] == '\0')
        snprintf(d->error, sizeof(d->error), "%s", msg);
    fprintf(stderr, "tally-drill: %s\n", msg);
}

/* Inject the fault into the leader: 0, or an exit code (the leader cannot be faulted). */
static int drill_inject(struct drill *d, struct tally_client *admin)
{
    const struct opts *o = &D.o;
    struct cluster_view v;
    if (!wait_leader(admin, &v, o->timeout_ms)) {
        drill_note(d, "no leader within --timeout: the cluster is not serving");
        return CLI_EXIT_DATA;
    }
    const struct tally_replica_status *l = &v.st[v.leader];
    snprintf(d->victim_addr, sizeof(d->victim_addr), "%s", l->address);
    d->victim_id = l->replica_id;
    unsigned found = proc_find(l->address, 0, &victim);
    d->local = found == 1;
    if (found > 1) {
        drill_note(d, "more than one tallyd process serves %s on this machine", l->address);
        return CLI_EXIT_DATA;
    }
    if (!d->local && o->fault_cmd == NULL) {
        drill_note(d, "the leader %s is not a tallyd process on this machine: run the drill on "
                      "the leader's machine, or give --fault-cmd / --heal-cmd", l->address);
        return CLI_EXIT_DATA;
    }
    if (d->local) {
        d->victim_pid = victim.pid;
        proc_read_env(&victim);
    }
    uint64_t t0 = since_start();
    d->fault_ns = t0;
    atomic_store(&D.recovered_ns, 0);
    atomic_store(&D.fault_ns, t0 + 1);
    if (o->fault_cmd != NULL) {
        d->fault_status = run_hook(o->fault_cmd, d->victim_id, d->victim_pid, d->victim_addr,
                                   o->timeout_ms);
        if (d->fault_status != 0)
            drill_note(d, "--fault-cmd failed (status %s)", d->fault_status == -ETIMEDOUT
                                                                ? "timeout" : "non-zero");
    } else {
        int sig = o->fault == FAULT_KILL ? SIGKILL : SIGSTOP;
        if (sig == SIGSTOP)
            stopped_pid = victim.pid;
        if (kill(victim.pid, sig) != 0) {
            stopped_pid = 0;
            atomic_store(&D.fault_ns, 0);
            d->fault_ns = 0;
            drill_note(d, "cannot signal the leader's process %d: %s (run the drill as its user)",
                       (int)victim.pid, strerror(errno));
            return CLI_EXIT_DATA;
        }
    }
    return 0;
}

/* A killed replica serves again: restarted by a supervisor, by the drill, or by --heal-cmd. */
static void drill_restart(struct drill *d)
{
    const struct opts *o = &D.o;
    if (o->restart == RESTART_NONE) {
        snprintf(d->how, sizeof(d->how), "none");
        return;
    }
    /* The victim must be gone before anything takes its ports. */
    for (unsigned i = 0; i < 2000 && proc_alive(victim.pid); i++)
        sleep_ns(NS_PER_MS);
    static struct replica_proc found;
    if (o->restart != RESTART_SELF) {
        uint64_t wait_ms = o->restart == RESTART_SUPERVISOR ? o->timeout_ms
                                                            : DRILL_SUPERVISOR_WAIT_MS;
        uint64_t end = now_ns() + wait_ms * NS_PER_MS;
        for (unsigned i = 0; i < 100000 && now_ns() < end && !interrupted; i++) {
            if (proc_find(victim.addr, victim.pid, &found) > 0) {
                snprintf(d->how, sizeof(d->how), "supervisor");
                d->restarted_pid = found.pid;
                return;
            }
            sleep_ns(50 * NS_PER_MS);
        }
        if (o->restart == RESTART_SUPERVISOR) {
            drill_note(d, "no supervisor started replica %s again within --timeout",
                       victim.addr);
            return;
        }
    }
    pid_t pid = proc_restart(&victim, d->log, sizeof(d->log));
    snprintf(d->how, sizeof(d->how), "self");
    if (pid < 0)
        drill_note(d, "could not start the killed replica again: %s", strerror((int)-pid));
    else
        d->restarted_pid = pid;
}

static void drill_heal(struct drill *d)
{
    const struct opts *o = &D.o;
    if (o->heal_cmd != NULL) {
        snprintf(d->how, sizeof(d->how), "heal-cmd");
        d->heal_status = run_hook(o->heal_cmd, d->victim_id, d->victim_pid, d->victim_addr,
                                  o->timeout_ms);
        if (d->heal_status != 0)
            drill_note(d, "--heal-cmd failed (status %s)", d->heal_status == -ETIMEDOUT
                                                               ? "timeout" : "non-zero");
    } else if (o->fault_cmd != NULL) {
        snprintf(d->how, sizeof(d->how), "none");
    } else if (o->fault == FAULT_STOP) {
        kill(victim.pid, SIGCONT);
        stopped_pid = 0;
        snprintf(d->how, sizeof(d->how), "SIGCONT");
    } else {
        drill_restart(d);
    }
    d->healed_ns = since_start();
}

/* One drill: load before, the fault, recovery, heal, rejoin, load after. */
static int drill_run(struct drill *d, struct tally_client *admin)
{
    const struct opts *o = &D.o;
    d->window_ns = since_start();
    sleep_ns(o->fault_at_ms * NS_PER_MS);
    int rc = drill_inject(d, admin);
    if (rc != 0)
        return rc;
    /* Recovered: an answer after the fault. A paused leader is woken at --stop-max anyway. */
    uint64_t t0 = d->fault_ns, bound = o->timeout_ms * NS_PER_MS;
    if (o->fault == FAULT_STOP && o->fault_cmd == NULL && o->stop_max_ms < o->timeout_ms)
        bound = o->stop_max_ms * NS_PER_MS;
    for (unsigned i = 0; i < 10000000 && atomic_load(&D.recovered_ns) == 0; i++) {
        if (since_start() - t0 > bound || interrupted || atomic_load(&D.load_error) != 0)
            break;
        sleep_ns(NS_PER_MS);
    }
    d->recovered = atomic_load(&D.recovered_ns) != 0;
    d->cut = interrupted && !d->recovered;
    if (interrupted)
        drill_note(d, "interrupted %.0f ms after the fault: healing it", ms_of(since_start() - t0));
    else if (!d->recovered)
        drill_note(d, "no posting was acknowledged within %s of the fault",
                   bound == o->timeout_ms * NS_PER_MS ? "--timeout" : "--stop-max");
    struct cluster_view v;
    if (d->recovered && cluster_look(admin, &v, 1000) >= 0 && v.leader >= 0)
        snprintf(d->new_leader, sizeof(d->new_leader), "%s", v.st[v.leader].address);
    drill_heal(d);
    if (strcmp(d->how, "none") != 0) {
        d->rejoined = wait_rejoined(admin, o->timeout_ms);
        d->rejoined_ns = since_start();
        if (!d->rejoined && !interrupted)
            drill_note(d, "replica %s did not serve again within --timeout", d->victim_addr);
    }
    /* The rest of the drill's load: the after phase. */
    uint64_t after = d->window_ns + o->duration_ms * NS_PER_MS;
    uint64_t settled = (d->rejoined_ns > d->healed_ns ? d->rejoined_ns : d->healed_ns);
    uint64_t tail = atomic_load(&D.recovered_ns) + DRILL_RECOVERY_TAIL_MS * NS_PER_MS;
    settled = (settled > tail ? settled : tail) + DRILL_AFTER_MIN_MS * NS_PER_MS;
    after = after > settled ? after : settled;
    while (since_start() < after && !interrupted && atomic_load(&D.load_error) == 0)
        sleep_ns(10 * NS_PER_MS);
    d->end_ns = since_start();
    atomic_store(&D.fault_ns, 0);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Analysis: windows, phases, the check
 * ------------------------------------------------------------------------------------------- */

/* The first answer after the fault (post hoc, over every request: the exact minimum). */
static uint64_t first_answer_after(uint64_t t0, uint32_t nreq)
{
    uint64_t best = UINT64_MAX, from = t0 + DRILL_INFLIGHT_MS * NS_PER_MS;
    for (uint32_t k = 0; k < nreq; k++)
        if (D.reqs[k].state == REQ_ACKED && D.reqs[k].ack_ns > from && D.reqs[k].ack_ns < best)
            best = D.reqs[k].ack_ns;
    return best;
}

struct phase_stats {
    uint64_t count, p50, p90, p99, p999, max; /* latency in ns, due to answer */
};

static void phase_collect(struct phase_stats *s, uint64_t from, uint64_t to, uint32_t nreq,
                          uint64_t *scratch)
{
    size_t n = 0;
    for (uint32_t k = 0; k < nreq; k++) {
        const struct req *q = &D.reqs[k];
        if (q->state == REQ_ACKED && q->ack_ns >= from && q->ack_ns < to)
            scratch[n++] = q->ack_ns - q->due_ns;
    }
    qsort(scratch, n, sizeof(*scratch), cmp_u64);
    *s = (struct phase_stats){.count = n,
                              .p50 = percentile(scratch, n, 0.50),
                              .p90 = percentile(scratch, n, 0.90),
                              .p99 = percentile(scratch, n, 0.99),
                              .p999 = percentile(scratch, n, 0.999),
                              .max = n ? scratch[n - 1] : 0};
}

struct check {
    uint64_t sent, acked, ok, rejected, in_doubt, in_doubt_applied, unknown;
    uint64_t checked, lost, duplicated, result_mismatch, members_checked, balance_mismatch;
    uint64_t lookup_errors;
    bool ok_all;
    char first_problem[200];
};

__attribute__((format(printf, 2, 3))) static void check_problem(struct check *c,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->first_problem[0] == '\0')
        vsnprintf(c->first_problem, sizeof(c->first_problem), fmt, ap);
    va_end(ap);
}

struct lookup_job {
    struct tally_client *client;
    uint32_t from, to, step; /* requests */
    uint64_t lost, mismatch, applied_in_doubt, errors;
    char problem[200];
};

/* Ask the ledger about every posting of the job's requests: acknowledged ones must be there with
 * their result and seq; in-doubt ones are settled (sent[].code becomes what the ledger says). */
static void *lookup_main(void *arg)
{
    struct lookup_job *j = arg;
    const struct opts *o = &D.o;
    for (uint32_t k = j->from; k < j->to; k += j->step) {
        const struct req *q = &D.reqs[k];
        if (q->state == REQ_UNSENT)
            continue;
        if (j->errors >= DRILL_LOOKUP_ERRORS_MAX) { /* the cluster is not answering: stop */
            j->errors++;
            continue;
        }
        for (unsigned i = 0; i < o->batch; i++) {
            struct sent *s = &D.sent[(size_t)k * o->batch + i];
            struct tally_posting_outcome out;
            int rc = tally_client_post_outcome(j->client, s->id, &out, o->timeout_ms);
            char id[33];
            cli_format_id(s->id, id);
            if (q->state == REQ_IN_DOUBT) {
                if (rc == 0 && out.code == TALLY_OK)
                    j->applied_in_doubt++;
                s->code = rc == 0 ? out.code : UINT32_MAX; /* UINT32_MAX: not applied */
                s->seq = rc == 0 ? out.seq : 0;
                if (rc != 0 && rc != TALLY_ENOT_FOUND)
                    j->errors++;
                continue;
            }
            if (rc == TALLY_ENOT_FOUND && tally_result_recorded(s->code)) {
                j->lost++;
                if (j->problem[0] == '\0')
                    snprintf(j->problem, sizeof(j->problem), "acknowledged posting %s is not "
                             "in the ledger", id);
            } else if (rc != 0 && rc != TALLY_ENOT_FOUND) {
                j->errors++;
            } else if (rc == 0 && (out.code != s->code || out.seq != s->seq)) {
                j->mismatch++;
                if (j->problem[0] == '\0')
                    snprintf(j->problem, sizeof(j->problem), "posting %s: acknowledged %s seq "
                             "%" PRIu64 ", the ledger says %s seq %" PRIu64, id,
                             tally_result_name(s->code), s->seq, tally_result_name(out.code),
                             out.seq);
            }
        }
    }
    return NULL;
}

static int cmp_seq(const void *a, const void *b)
{
    return cmp_u64(a, b);
}

/* The loss/duplicate check, after the load. */
static int run_check(struct check *c, struct tally_client *admin, struct worker *w,
                     const int64_t *before, uint32_t nreq)
{
    const struct opts *o = &D.o;
    memset(c, 0, sizeof(*c));
    static struct lookup_job jobs[DRILL_CLIENTS_MAX];
    for (unsigned t = 0; t < o->clients; t++) {
        jobs[t] = (struct lookup_job){.client = w[t].client, .from = t, .to = nreq,
                                      .step = o->clients};
        if (pthread_create(&w[t].thread, NULL, lookup_main, &jobs[t]) != 0)
            return CLI_EXIT_INTERNAL;
    }
    for (unsigned t = 0; t < o->clients; t++) {
        pthread_join(w[t].thread, NULL);
        c->lost += jobs[t].lost;
        c->result_mismatch += jobs[t].mismatch;
        c->in_doubt_applied += jobs[t].applied_in_doubt;
        c->lookup_errors += jobs[t].errors;
        if (c->first_problem[0] == '\0' && jobs[t].problem[0] != '\0')
            snprintf(c->first_problem, sizeof(c->first_problem), "%s", jobs[t].problem);
    }
    /* Counts, expected balances, and the seqs of applied postings (each must be its own). */
    int64_t *want = calloc(o->members, sizeof(*want));
    uint64_t *seqs = malloc(sizeof(*seqs) * ((size_t)nreq * o->batch + 1));
    if (want == NULL || seqs == NULL) {
        free(want);
        free(seqs);
        return CLI_EXIT_INTERNAL;
    }
    size_t nseq = 0;
    for (uint32_t k = 0; k < nreq; k++) {
        const struct req *q = &D.reqs[k];
        if (q->state == REQ_UNSENT)
            continue;
        for (unsigned i = 0; i < o->batch; i++) {
            const struct sent *s = &D.sent[(size_t)k * o->batch + i];
            c->sent++;
            if (q->state == REQ_IN_DOUBT)
                c->in_doubt++;
            else
                c->acked++;
            if (q->state == REQ_ACKED && s->code != TALLY_OK)
                c->rejected++;
            if (s->code == TALLY_OK) {
                c->ok += q->state == REQ_ACKED;
                want[s->member] += s->points;
                seqs[nseq++] = s->seq;
            }
        }
    }
    c->checked = c->acked;
    qsort(seqs, nseq, sizeof(*seqs), cmp_seq);
    for (size_t i = 1; i < nseq; i++)
        if (seqs[i] == seqs[i - 1]) {
            c->duplicated++;
            check_problem(c, "two acknowledged postings share entry %" PRIu64, seqs[i]);
        }
    for (unsigned m = 0; m < o->members; m++) {
        struct tally_account a;
        int rc = c->lookup_errors >= DRILL_LOOKUP_ERRORS_MAX
                     ? TALLY_ETIMEOUT
                     : tally_client_account(admin, o->program, o->member_base + m, &a, NULL);
        c->members_checked++;
        if (rc != 0) {
            c->lookup_errors++;
            continue;
        }
        int64_t got = a.available - before[m];
        if (got != want[m]) {
            c->balance_mismatch++;
            if (got > want[m])
                c->duplicated++;
            else
                c->lost++;
            check_problem(c, "member %" PRIu64 ": balance moved by other than the sum of its "
                          "acknowledged postings", o->member_base + m);
        }
    }
    free(want);
    free(seqs);
    c->ok_all = c->lost == 0 && c->duplicated == 0 && c->result_mismatch == 0 &&
                c->balance_mismatch == 0 && c->lookup_errors == 0;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The timeline (SVG, written by hand: it is text, and the drill then needs nothing installed on
 * the machine it runs on)
 * ------------------------------------------------------------------------------------------- */

/* Fill the buckets from the requests: postings acknowledged, and the worst latency. */
static void svg_buckets(uint64_t bucket_ns, uint64_t *count, uint64_t *worst, size_t nb,
                        uint32_t nreq)
{
    for (uint32_t k = 0; k < nreq; k++) {
        const struct req *q = &D.reqs[k];
        if (q->state != REQ_ACKED || q->ack_ns / bucket_ns >= nb)
            continue;
        size_t b = (size_t)(q->ack_ns / bucket_ns);
        count[b] += D.o.batch;
        uint64_t lat = q->ack_ns - q->due_ns;
        worst[b] = lat > worst[b] ? lat : worst[b];
    }
}

/* Faults: the outage shaded, the fault red, the first answer green, the heal dashed blue. */
static void svg_faults(const struct svg_plot *g, const struct drill *drills, unsigned nd)
{
    FILE *f = g->f;
    for (unsigned i = 0; i < nd; i++) {
        const struct drill *d = &drills[i];
        uint64_t rec = d->recovered ? d->recovered_ns : d->end_ns;
        double x0 = svg_plot_x(g, d->fault_ns), x1 = svg_plot_x(g, rec);
        fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%.0f\" fill=\"#f4cccc\"/>\n",
                x0, SVG_TOP, x1 - x0 + 0.5, g->ph);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.0f\" stroke=\"#c00000\"/>\n",
                x0, x0, SVG_TOP, SVG_TOP + g->ph);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.0f\" stroke=\"#008000\"/>\n",
                x1, x1, SVG_TOP, SVG_TOP + g->ph);
        if (d->healed_ns > 0)
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.0f\" stroke=\"#3060c0\" "
                       "stroke-dasharray=\"4 3\"/>\n",
                    svg_plot_x(g, d->healed_ns), svg_plot_x(g, d->healed_ns), SVG_TOP,
                    SVG_TOP + g->ph);
        if (nd <= 12)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" fill=\"#c00000\" font-size=\"11\">%s r%" PRIu64
                       "%s %.0f ms</text>\n",
                    x0 + 3, SVG_TOP + 12 + 12 * (int)(i % 2), fault_name(&D.o), d->victim_id,
                    d->recovered ? ":" : ": no recovery,",
                    d->recovered ? ms_of(d->recovered_ns - d->fault_ns) : 0.0);
    }
}

static int write_svg(const char *path, const struct drill *drills, unsigned nd, uint32_t nreq,
                     uint64_t end_ns, double median_ms)
{
    const struct opts *o = &D.o;
    uint64_t bucket_ns = SVG_BUCKET_MS_MIN * NS_PER_MS;
    while (end_ns / bucket_ns + 1 > SVG_BUCKETS_MAX)
        bucket_ns *= 2;
    size_t nb = (size_t)(end_ns / bucket_ns + 1);
    uint64_t *count = calloc(nb, sizeof(*count));
    uint64_t *worst = calloc(nb, sizeof(*worst));
    if (count == NULL || worst == NULL) {
        free(count);
        free(worst);
        return -ENOMEM;
    }
    svg_buckets(bucket_ns, count, worst, nb, nreq);
    struct svg_plot g;
    int rc = svg_plot_open(&g, path, end_ns, bucket_ns, count, worst, nb);
    if (rc != 0) {
        free(count);
        free(worst);
        return rc;
    }
    fprintf(g.f, "<text x=\"%d\" y=\"22\" font-size=\"15\">tally-drill: %u leader %s%s, %u "
                 "postings/s offered (batches of %u, %u clients); median unavailability %.0f ms"
                 "</text>\n",
            SVG_LEFT, nd, fault_name(o), nd == 1 ? "" : "s", o->rate, o->batch, o->clients,
            median_ms);
    svg_faults(&g, drills, nd);
    svg_plot_axes(&g, "acknowledged postings/s", "worst latency in bucket (log)");
    svg_plot_series(&g, "<tspan fill=\"#1f4e9c\">&#8212; throughput</tspan>  <tspan "
                        "fill=\"#b35900\">&#9679; worst latency (due to answer)</tspan>  <tspan "
                        "fill=\"#c00000\">| fault</tspan>  <tspan fill=\"#008000\">| first answer "
                        "after it</tspan>  <tspan fill=\"#3060c0\">&#8942; healed (restart / "
                        "SIGCONT)</tspan>");
    rc = svg_plot_close(&g);
    free(count);
    free(worst);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The report
 * ------------------------------------------------------------------------------------------- */

static cJSON *phase_json(const struct phase_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "requests", s->count);
    cJSON_AddNumberToObject(o, "p50_ms", ms_of(s->p50));
    cJSON_AddNumberToObject(o, "p90_ms", ms_of(s->p90));
    cJSON_AddNumberToObject(o, "p99_ms", ms_of(s->p99));
    cJSON_AddNumberToObject(o, "p999_ms", ms_of(s->p999));
    cJSON_AddNumberToObject(o, "max_ms", ms_of(s->max));
    return o;
}

/* The median of sorted values: the middle one, or the mean of the two middle ones. */
static uint64_t median_of(const uint64_t *sorted, unsigned n)
{
    return n == 0 ? 0 : n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static void phase_text(const char *name, const struct phase_stats *s)
{
    printf("    %-9s %7" PRIu64 " requests  p50 %8.1f  p90 %8.1f  p99 %8.1f  p99.9 %8.1f  "
           "max %8.1f ms\n",
           name, s->count, ms_of(s->p50), ms_of(s->p90), ms_of(s->p99), ms_of(s->p999),
           ms_of(s->max));
}

static void drill_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The last resort: every wait is bounded, but should the process hang regardless, it wakes a
 * paused replica and leaves. */
static void drill_watchdog(int sig)
{
    (void)sig;
    if (stopped_pid > 0)
        kill((pid_t)stopped_pid, SIGCONT);
    static const char msg[] = "tally-drill: watchdog: the run exceeded its time bound; gave up\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(CLI_EXIT_INTERNAL);
}

struct run {
    struct drill *drills;
    struct phase_stats (*phases)[3];
    unsigned nd;
    uint64_t gaps_sorted[DRILL_REPEAT_MAX];
    unsigned ngaps;
    struct check check;
    bool checked;
    int svg_rc;
    uint32_t nreq;
};

static void report_json(const struct run *r)
{
    const struct opts *o = &D.o;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "cluster", o->cluster);
    cJSON_AddStringToObject(root, "fault", fault_name(o));
    if (o->fault_cmd != NULL)
        cJSON_AddStringToObject(root, "fault_cmd", o->fault_cmd);
    if (o->heal_cmd != NULL)
        cJSON_AddStringToObject(root, "heal_cmd", o->heal_cmd);
    cJSON_AddNumberToObject(root, "repeat", o->repeat);
    cJSON *load = cJSON_AddObjectToObject(root, "load");
    cJSON_AddNumberToObject(load, "rate", o->rate);
    cJSON_AddNumberToObject(load, "batch", o->batch);
    cJSON_AddNumberToObject(load, "clients", o->clients);
    cJSON_AddNumberToObject(load, "duration_ms", (double)o->duration_ms);
    cJSON_AddNumberToObject(load, "program", o->program);
    cli_json_add_u64(load, "member_first", o->member_base);
    cli_json_add_u64(load, "member_last", o->member_base + o->members - 1);
    cJSON_AddBoolToObject(load, "capped", atomic_load(&D.capped));
    cJSON *arr = cJSON_AddArrayToObject(root, "drills");
    static const char *const names[3] = {"before", "recovery", "after"};
    for (unsigned i = 0; i < r->nd; i++) {
        const struct drill *d = &r->drills[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "n", i + 1);
        cJSON *v = cJSON_AddObjectToObject(j, "victim");
        cli_json_add_u64(v, "id", d->victim_id);
        cJSON_AddStringToObject(v, "address", d->victim_addr);
        cJSON_AddNumberToObject(v, "pid", d->victim_pid);
        cJSON_AddNumberToObject(j, "fault_at_ms", ms_of(d->fault_ns));
        cJSON_AddBoolToObject(j, "recovered", d->recovered);
        if (d->recovered)
            cJSON_AddNumberToObject(j, "unavailability_ms", ms_of(d->recovered_ns - d->fault_ns));
        else
            cJSON_AddNullToObject(j, "unavailability_ms");
        cJSON_AddStringToObject(j, "new_leader", d->new_leader);
        cJSON_AddStringToObject(j, "healed_by", d->how);
        if (d->healed_ns > 0)
            cJSON_AddNumberToObject(j, "healed_after_ms", ms_of(d->healed_ns - d->fault_ns));
        if (d->restarted_pid > 0)
            cJSON_AddNumberToObject(j, "restarted_pid", d->restarted_pid);
        if (d->log[0] != '\0')
            cJSON_AddStringToObject(j, "restarted_log", d->log);
        cJSON_AddBoolToObject(j, "rejoined", d->rejoined);
        if (d->rejoined)
            cJSON_AddNumberToObject(j, "rejoined_after_ms", ms_of(d->rejoined_ns - d->fault_ns));
        cJSON *lat = cJSON_AddObjectToObject(j, "latency");
        for (int p = 0; p < 3; p++)
            cJSON_AddItemToObject(lat, names[p], phase_json(&r->phases[i][p]));
        if (d->error[0] != '\0')
            cJSON_AddStringToObject(j, "error", d->error);
        cJSON_AddItemToArray(arr, j);
    }
    cJSON *u = cJSON_AddObjectToObject(root, "unavailability_ms");
    cJSON_AddNumberToObject(u, "faults", r->nd);
    cJSON_AddNumberToObject(u, "recovered", r->ngaps);
    if (r->ngaps > 0) {
        cJSON_AddNumberToObject(u, "median", ms_of(median_of(r->gaps_sorted, r->ngaps)));
        cJSON_AddNumberToObject(u, "min", ms_of(r->gaps_sorted[0]));
        cJSON_AddNumberToObject(u, "max", ms_of(r->gaps_sorted[r->ngaps - 1]));
    }
    if (r->checked) {
        const struct check *c = &r->check;
        cJSON *p = cJSON_AddObjectToObject(root, "postings");
        cli_json_add_u64(p, "sent", c->sent);
        cli_json_add_u64(p, "acknowledged", c->acked);
        cli_json_add_u64(p, "applied_ok", c->ok);
        cli_json_add_u64(p, "rejected", c->rejected);
        cli_json_add_u64(p, "in_doubt", c->in_doubt);
        cli_json_add_u64(p, "in_doubt_applied", c->in_doubt_applied);
        cJSON *k = cJSON_AddObjectToObject(root, "check");
        cli_json_add_u64(k, "ids_checked", c->checked);
        cli_json_add_u64(k, "lost", c->lost);
        cli_json_add_u64(k, "duplicated", c->duplicated);
        cli_json_add_u64(k, "result_mismatch", c->result_mismatch);
        cli_json_add_u64(k, "members_checked", c->members_checked);
        cli_json_add_u64(k, "balance_mismatch", c->balance_mismatch);
        cli_json_add_u64(k, "lookup_errors", c->lookup_errors);
        cJSON_AddBoolToObject(k, "ok", c->ok_all);
        if (c->first_problem[0] != '\0')
            cJSON_AddStringToObject(k, "first_problem", c->first_problem);
    }
    if (o->svg != NULL && r->svg_rc == 0)
        cJSON_AddStringToObject(root, "svg", o->svg);
    cJSON_AddBoolToObject(root, "interrupted", interrupted != 0);
    cli_print_json(root);
}

static void report_text(const struct run *r)
{
    const struct opts *o = &D.o;
    printf("tally-drill: %u leader %s%s against %s\n", r->nd, fault_name(o),
           r->nd == 1 ? "" : "s", o->cluster);
    printf("load: %u postings/s offered, open loop, batches of %u, %u clients; program %" PRIu32
           ", members %" PRIu64 "..%" PRIu64 "\n",
           o->rate, o->batch, o->clients, o->program, o->member_base,
           o->member_base + o->members - 1);
    static const char *const names[3] = {"before", "recovery", "after"};
    for (unsigned i = 0; i < r->nd; i++) {
        const struct drill *d = &r->drills[i];
        printf("drill %u: %s replica %" PRIu64 " (%s, pid %d) at %.1f s: ", i + 1,
               o->fault_cmd != NULL       ? "--fault-cmd on"
               : o->fault == FAULT_KILL ? "killed"
                                        : "stopped",
               d->victim_id, d->victim_addr,
               (int)d->victim_pid, ms_of(d->fault_ns) / 1000);
        if (d->recovered)
            printf("unavailable %.0f ms, new leader %s", ms_of(d->recovered_ns - d->fault_ns),
                   d->new_leader[0] ? d->new_leader : "?");
        else
            printf(d->cut ? "interrupted before it recovered" : "NOT RECOVERED");
        printf("; healed by %s", d->how);
        if (d->restarted_pid > 0)
            printf(" (pid %d)", (int)d->restarted_pid);
        if (d->rejoined)
            printf(", all replicas serving %.1f s after the fault",
                   ms_of(d->rejoined_ns - d->fault_ns) / 1000);
        printf("\n");
        for (int p = 0; p < 3; p++)
            phase_text(names[p], &r->phases[i][p]);
        if (d->error[0] != '\0')
            printf("    problem: %s\n", d->error);
    }
    if (r->ngaps > 0)
        printf("unavailability: median %.0f ms, min %.0f ms, max %.0f ms over %u recovered "
               "fault%s\n",
               ms_of(median_of(r->gaps_sorted, r->ngaps)), ms_of(r->gaps_sorted[0]),
               ms_of(r->gaps_sorted[r->ngaps - 1]), r->ngaps, r->ngaps == 1 ? "" : "s");
    if (r->checked) {
        const struct check *c = &r->check;
        printf("postings: %" PRIu64 " sent, %" PRIu64 " acknowledged (%" PRIu64
               " rejected by the ledger), %" PRIu64 " in doubt (%" PRIu64 " of them applied)\n",
               c->sent, c->acked, c->rejected, c->in_doubt, c->in_doubt_applied);
        printf("check: %s: %" PRIu64 " acknowledged ids looked up, %" PRIu64 " lost, %" PRIu64
               " duplicated, %" PRIu64 " with another result; %" PRIu64 " member balances, %"
               PRIu64 " off%s%s\n",
               c->ok_all ? "PASSED" : "FAILED", c->checked, c->lost, c->duplicated,
               c->result_mismatch, c->members_checked, c->balance_mismatch,
               c->first_problem[0] ? "; first problem: " : "", c->first_problem);
    }
    if (o->svg != NULL)
        printf("plot: %s%s\n", o->svg, r->svg_rc == 0 ? "" : " (could not be written)");
    if (interrupted)
        printf("interrupted: the remaining drills were not run\n");
    if (atomic_load(&D.capped))
        printf("the load stopped early: it reached the drill's record limit (recovery was slow; "
               "see --timeout)\n");
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static int open_client(struct tally_client **c, const char *label, bool defer, uint64_t timeout)
{
    struct tally_client_options co;
    memset(&co, 0, sizeof(co));
    co.addresses = D.o.cluster;
    co.timeout_ms = timeout;
    co.label = label;
    co.defer_register = defer;
    return tally_client_open(c, &co);
}

/* The run's bound, for the watchdog: setup, each drill's load and waits, the check. */
static unsigned run_bound_s(const struct opts *o)
{
    uint64_t per = o->duration_ms + 4 * o->timeout_ms + DRILL_SUPERVISOR_WAIT_MS +
                   DRILL_RECOVERY_TAIL_MS + DRILL_AFTER_MIN_MS;
    uint64_t ms = 3 * o->timeout_ms + o->repeat * per + o->timeout_ms + 60000;
    uint64_t s = ms / 1000 + 1;
    return s > 86400 * 7 ? 86400 * 7 : (unsigned)s;
}

static int run_drills(struct run *r, struct tally_client *admin)
{
    int rc = 0;
    for (unsigned i = 0; i < D.o.repeat && !interrupted && rc == 0; i++) {
        rc = drill_run(&r->drills[i], admin);
        r->nd = i + 1;
        if (atomic_load(&D.load_error) != 0) {
            fprintf(stderr, "tally-drill: a POST failed: %s\n",
                    tally_strerror(atomic_load(&D.load_error)));
            break;
        }
        if (!r->drills[i].recovered || (!r->drills[i].rejoined &&
                                        strcmp(r->drills[i].how, "none") != 0))
            break; /* a cluster that did not recover is not faulted again */
    }
    if (rc != 0 && r->nd > 0 && r->drills[r->nd - 1].fault_ns == 0)
        r->nd--; /* the fault never came */
    return rc;
}

static void analyse(struct run *r, uint64_t *scratch)
{
    for (unsigned i = 0; i < r->nd; i++) {
        struct drill *d = &r->drills[i];
        uint64_t first = first_answer_after(d->fault_ns, r->nreq);
        d->recovered = first != UINT64_MAX && !d->cut && (d->recovered || first < d->end_ns);
        if (d->recovered) {
            d->recovered_ns = first;
            r->gaps_sorted[r->ngaps++] = first - d->fault_ns;
        }
        uint64_t tail = d->recovered ? first + DRILL_RECOVERY_TAIL_MS * NS_PER_MS : d->end_ns;
        tail = tail < d->end_ns ? tail : d->end_ns;
        phase_collect(&r->phases[i][0], d->window_ns, d->fault_ns, r->nreq, scratch);
        phase_collect(&r->phases[i][1], d->fault_ns, tail, r->nreq, scratch);
        phase_collect(&r->phases[i][2], tail, d->end_ns, r->nreq, scratch);
    }
    qsort(r->gaps_sorted, r->ngaps, sizeof(r->gaps_sorted[0]), cmp_u64);
}

/* The cluster answers (fast: STATUS needs no leader and no session), has a leader, the drill's
 * program and members exist (their balances in `before`), and each client has its session. */
static int run_connect(struct tally_client **admin, int64_t *before, struct worker *w)
{
    const struct opts *o = &D.o;
    int rc = open_client(admin, "tally-drill", true, o->timeout_ms);
    if (rc == TALLY_ECONFIG)
        return usage_fail("--cluster '%s': expected host:port[,host:port...]", o->cluster);
    struct cluster_view v;
    if (rc != 0 || cluster_look(*admin, &v, 2000) != 0 || v.answered == 0) {
        fprintf(stderr, "tally-drill: no replica of %s answered (is tallyd running there? are "
                "the addresses right?)\n", o->cluster);
        return CLI_EXIT_DATA;
    }
    if (!wait_leader(*admin, &v, o->timeout_ms)) {
        fprintf(stderr, "tally-drill: the cluster at %s has no leader (tally --cluster %s status "
                "shows every replica)\n", o->cluster, o->cluster);
        return CLI_EXIT_DATA;
    }
    if ((rc = drill_setup(*admin, before)) != 0)
        return rc;
    for (unsigned t = 0; t < o->clients; t++) {
        w[t].index = t;
        if ((rc = open_client(&w[t].client, "tally-drill", false, o->timeout_ms)) != 0) {
            fprintf(stderr, "tally-drill: cannot open a session: %s\n", tally_strerror(rc));
            return CLI_EXIT_DATA;
        }
    }
    return 0;
}

/* The load, the drills under it, then the load stopped (*end: when, since start). */
static int run_load(struct run *r, struct tally_client *admin, struct worker *w, uint64_t *end)
{
    const struct opts *o = &D.o;
    atomic_store(&D.load_end_ns, UINT64_MAX);
    atomic_store(&D.hard_end_ns, UINT64_MAX);
    D.start_ns = now_ns();
    unsigned started = 0;
    for (; started < o->clients; started++)
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0)
            break;
    int rc = started == o->clients ? run_drills(r, admin) : CLI_EXIT_INTERNAL;
    *end = since_start();
    atomic_store(&D.hard_end_ns, *end + o->timeout_ms * NS_PER_MS);
    atomic_store(&D.load_end_ns, *end);
    for (unsigned t = 0; t < started; t++)
        pthread_join(w[t].thread, NULL);
    if (stopped_pid > 0) { /* interrupted while paused */
        kill((pid_t)stopped_pid, SIGCONT);
        stopped_pid = 0;
    }
    r->nreq = atomic_load(&D.next_req) < D.reqs_max ? atomic_load(&D.next_req) : D.reqs_max;
    return rc;
}

static int run_exit_code(const struct run *r, int drills_rc)
{
    if (drills_rc != 0)
        return drills_rc;
    if (atomic_load(&D.load_error) != 0)
        return CLI_EXIT_DATA;
    bool all = r->nd == D.o.repeat && r->ngaps == r->nd && !interrupted &&
               !atomic_load(&D.capped);
    for (unsigned i = 0; i < r->nd; i++)
        all = all && r->drills[i].error[0] == '\0';
    return all && r->check.ok_all && r->svg_rc == 0 ? CLI_EXIT_OK : CLI_EXIT_REJECTED;
}

/* Everything main allocates, released on every way out. */
struct run_memory {
    int64_t *before;
    uint64_t *scratch;
    struct tally_client *admin;
    struct worker *w;
};

static void run_release(struct run *r, struct run_memory *m)
{
    for (unsigned t = 0; t < D.o.clients; t++)
        tally_client_close(m->w[t].client);
    tally_client_close(m->admin);
    free(m->scratch);
    free(m->before);
    free(victim.env);
    free(D.reqs);
    free(D.sent);
    free(r->drills);
    free(r->phases);
}

/* Connect, run the drills under the load, check, report: the exit code. */
static int run_all(struct run *r, struct run_memory *m)
{
    const struct opts *o = &D.o;
    int rc = run_connect(&m->admin, m->before, m->w);
    if (rc != 0)
        return rc;
    uint64_t end = 0;
    int drills_rc = run_load(r, m->admin, m->w, &end);
    m->scratch = malloc(sizeof(*m->scratch) * (r->nreq + 1));
    if (m->scratch == NULL)
        return CLI_EXIT_INTERNAL;
    analyse(r, m->scratch);
    if (r->nd > 0) {
        if ((rc = run_check(&r->check, m->admin, m->w, m->before, r->nreq)) != 0)
            return rc;
        r->checked = true;
    }
    if (o->svg != NULL && r->nd > 0) {
        r->svg_rc = write_svg(o->svg, r->drills, r->nd, r->nreq, end,
                              ms_of(median_of(r->gaps_sorted, r->ngaps)));
        if (r->svg_rc != 0)
            fprintf(stderr, "tally-drill: cannot write %s: %s\n", o->svg, strerror(-r->svg_rc));
    }
    if (o->json)
        report_json(r);
    else
        report_text(r);
    return run_exit_code(r, drills_rc);
}

int main(int argc, char **argv)
{
    int rc = opts_parse(&D.o, argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    const struct opts *o = &D.o;
    /* The plan must fit the records: each drill's load, plus one --timeout of slack per drill
     * (a run that needs more stops its load, says so in the report, and exits 1). */
    double req_rate = (double)o->rate / o->batch;
    double longest_s = (double)o->repeat *
                       (double)(o->duration_ms + o->timeout_ms + DRILL_SUPERVISOR_WAIT_MS +
                                DRILL_RECOVERY_TAIL_MS + DRILL_AFTER_MIN_MS) / 1000.0;
    if (req_rate * longest_s * o->batch > DRILL_POSTINGS_MAX)
        return usage_fail("the run could send more than 4 Mi postings (rate x repeat x "
                          "(duration + timeout + 5 s)): lower --rate, --repeat or --timeout");
    D.reqs_max = (uint32_t)(req_rate * longest_s) + 1;
    D.interval_ns = (uint64_t)(1e9 / req_rate);
    static struct run r;
    static struct worker w[DRILL_CLIENTS_MAX];
    struct run_memory m = {.before = calloc(o->members, sizeof(*m.before)), .w = w};
    D.reqs = calloc(D.reqs_max, sizeof(*D.reqs));
    D.sent = calloc((size_t)D.reqs_max * o->batch, sizeof(*D.sent));
    r.drills = calloc(o->repeat, sizeof(*r.drills));
    r.phases = calloc(o->repeat, sizeof(*r.phases));
    if (D.reqs == NULL || D.sent == NULL || m.before == NULL || r.drills == NULL ||
        r.phases == NULL) {
        fprintf(stderr, "tally-drill: out of memory for %u requests\n", D.reqs_max);
        run_release(&r, &m);
        return CLI_EXIT_INTERNAL;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = drill_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct sigaction wd = {.sa_handler = drill_watchdog};
    sigaction(SIGALRM, &wd, NULL);
    alarm(run_bound_s(o));
    rc = run_all(&r, &m);
    run_release(&r, &m);
    return rc;
}
