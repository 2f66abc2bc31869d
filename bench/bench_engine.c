/* bench_engine.c: tally-bench-engine, the in-process benchmark of engine_apply.
 *
 * What it measures
 * ----------------
 * One engine on one data directory, driven from one thread, with the retail workload of
 * workload.h: the setup (the program and every member's OPEN) is applied first and not
 * measured; then `runs` runs of `postings` postings each, in batches of `batch`. Only
 * engine_apply is timed (CLOCK_MONOTONIC around each call); generating the next batch and
 * feeding its results back to the generator happen outside the timed region. A run's rate is
 * its postings divided by the sum of its apply times; the headline is the median over runs.
 *
 * The runs continue on the same ledger: run 2 starts where run 1 stopped, with a larger ledger
 * and a later simulated date, as a production ledger would. Later runs therefore see bigger
 * B-trees and more time-driven work (activation of pending points, expiry, tier evaluation):
 * the per-run table shows the trend, the median hides no run.
 *
 * By default every batch commit is durable (the engine's default: fsync at each commit), so the
 * figure includes the write-out of every dirty page. --no-sync measures the apply alone.
 *
 * What it does not measure: Raft, the network, or queries beside apply (tally-bench does).
 *
 * Output: a small table for people, or one JSON object with --json (printed by hand: every
 * value is a number or a fixed ASCII word, so no JSON library is needed and the program links
 * with the engine alone).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "tally_errors.h"
#include "tally_results.h"
#include "workload.h"

/* ---------------------------------------------------------------------------------------------
 * Limits and defaults.
 * ------------------------------------------------------------------------------------------- */

/* 2,000,000 postings a run: ~245 full batches, several seconds at the 250k/s target, so the
 * fsync of each batch and the timer bursts average out within a run. */
#define BENCH_POSTINGS_DEFAULT UINT64_C(2000000)
#define BENCH_RUNS_DEFAULT     5u
#define BENCH_RUNS_MAX         100u
/* Batch latencies are kept for the percentiles: at most this many batches over all runs
 * (8 bytes each, 128 MiB at the limit). */
#define BENCH_BATCHES_MAX (UINT64_C(1) << 24)
/* A run stops early (and says so) once its wall time passes this many seconds. */
#define BENCH_RUN_SECONDS_DEFAULT 120u
/* The map is sized so that the ledger never has to grow during the runs (growth aborts and
 * re-runs a batch, which would show up as noise): a generous 2 KiB per member and per posting,
 * rounded up to a power of two, at least 4 GiB. The map is address space, not memory. */
#define BENCH_MAP_BYTES_PER_ITEM UINT64_C(2048)
#define BENCH_MAP_MIN            (UINT64_C(4) << 30)
#define BENCH_MAP_MAX            (UINT64_C(1) << 40)
/* Files a data directory may hold when the benchmark removes it (LMDB makes two). */
#define BENCH_DIR_FILES_MAX 64

#define RESULT_SLOTS (TALLY_RESULT_CODE_LIMIT + 1) /* the last slot: codes out of the list */

enum bench_exit {
    EXIT_OK = 0,
    EXIT_USAGE = 2,
    EXIT_DATA = 3,
    EXIT_INTERNAL = 4,
    EXIT_INTERRUPTED = 130, /* SIGINT or SIGTERM: what was measured is printed, the dir removed */
};

/* Set by SIGINT/SIGTERM; every loop checks it after each batch. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct bench_options {
    uint64_t members;
    uint32_t batch;
    uint64_t postings; /* per run */
    uint32_t runs;
    const char *dir; /* NULL: a fresh directory under /tmp, removed at the end */
    bool json;
    const char *json_file;    /* also write the JSON object to this file */
    const char *batches_file; /* one CSV line per measured batch */
    bool sync;
    bool keep;
    bool generate_only; /* measure the workload generator alone: no engine */
    uint64_t seed;
    uint64_t map_bytes; /* 0: sized from members and postings */
    uint64_t turn_entries; /* 0: ENGINE_TURN_ENTRIES */
    uint32_t run_seconds_max;
    uint32_t postings_per_hour;
};

struct run_result {
    uint64_t postings;
    uint64_t batches;
    uint64_t ok;
    uint64_t apply_ns;
    uint64_t wall_ns;
    uint64_t entries;
    double user_s;
    double sys_s;
    uint64_t p50_ns;
    uint64_t p99_ns;
    uint64_t max_ns;
    uint64_t first_ts;
    uint64_t last_ts;
    uint64_t major_faults; /* page faults that had to read the file */
    uint64_t wchar;        /* bytes handed to write(2)/pwrite(2) during the run */
    uint64_t write_bytes;  /* /proc/self/io write_bytes during the run (see device_bytes) */
    uint64_t device_bytes; /* bytes written to the data directory's device during the run */
    bool time_limited;
};

struct bench {
    struct bench_options opts;
    char dir[PATH_MAX];
    bool dir_is_temp;
    struct engine *engine;
    struct workload workload;
    struct tally_posting *postings; /* TALLY_BATCH_MAX */
    struct tally_result *results;   /* TALLY_BATCH_MAX */
    uint64_t index;                 /* last applied batch index */

    uint64_t setup_postings;
    uint64_t setup_batches;
    uint64_t setup_ns;
    uint64_t setup_failed;
    uint64_t setup_wchar; /* bytes handed to write(2) during the setup */

    uint64_t *latency_ns; /* every measured batch, run after run */
    uint64_t latency_count;
    FILE *batches_csv; /* --batches-csv, or NULL */
    struct run_result runs[BENCH_RUNS_MAX];
    uint32_t runs_done;

    uint64_t by_code[RESULT_SLOTS];
    uint64_t by_kind[TALLY_KIND_LIMIT];
    uint64_t by_kind_code[TALLY_KIND_LIMIT][RESULT_SLOTS];

    uint64_t map_size_start;
    uint64_t map_size_end;
    uint32_t members_cached; /* the engine's member cache at the end */
    uint32_t members_dirty;
    uint64_t entries_after_setup;
    uint64_t entries_end;
    uint64_t data_bytes;
    uint64_t data_blocks_bytes;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers: time, files, memory, numbers.
 * ------------------------------------------------------------------------------------------- */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void cpu_seconds(double *user, double *sys, uint64_t *major_faults)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    *major_faults = (uint64_t)ru.ru_majflt;
}

/* A counter of /proc/self/io (wchar: bytes passed to write calls; write_bytes: bytes this process
 * caused to be sent to the storage layer), 0 if unknown. */
static uint64_t proc_io(const char *field)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (f == NULL)
        return 0;
    char line[128];
    size_t len = strlen(field);
    uint64_t v = 0;
    for (int i = 0; i < 16 && fgets(line, sizeof(line), f) != NULL; i++) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtoull(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Bytes written to the block device holding `dir` so far (all processes: sectors written in
 * /sys/dev/block/MAJ:MIN/stat), or 0 if unknown. /proc/self/io write_bytes is not used for this:
 * it counts a whole large page-cache folio when any byte of it is dirtied, which overstates what
 * reaches the device many times over (docs/BENCHMARKS.md, "large folios"). */
static uint64_t device_written_bytes(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat", major(st.st_dev), minor(st.st_dev));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    unsigned long long v[7] = {0};
    int n = fscanf(f, "%llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6]);
    fclose(f);
    return n == 7 ? (uint64_t)v[6] * 512 : 0;
}

/* A field of /proc/self/status in KiB (VmRSS, VmHWM, RssAnon, RssFile), 0 if unknown. */
static uint64_t proc_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    char line[256];
    size_t len = strlen(field);
    uint64_t kib = 0;
    for (int i = 0; i < 128 && fgets(line, sizeof(line), f) != NULL; i++) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kib = strtoull(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static void file_size(const char *dir, const char *name, uint64_t *bytes, uint64_t *allocated)
{
    char path[PATH_MAX + 32];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *bytes = 0;
    *allocated = 0;
    if (stat(path, &st) == 0) {
        *bytes = (uint64_t)st.st_size;
        *allocated = (uint64_t)st.st_blocks * 512;
    }
}

/* Remove a directory the benchmark created, and the files in it (no subdirectories). */
static int remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    struct dirent *de;
    for (int i = 0; i < BENCH_DIR_FILES_MAX && (de = readdir(d)) != NULL; i++) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    return rmdir(dir) == 0 ? 0 : -errno;
}

/* 1234567 -> "1,234,567" into buf (at least 32 bytes); returns buf. */
static const char *grouped(uint64_t v, char *buf)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
    int out = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[out++] = ',';
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

/* Bytes in a human unit into buf (at least 32 bytes). */
static const char *human_bytes(uint64_t v, char *buf)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%.0f %s", x, units[u]);
    else
        snprintf(buf, 32, "%.1f %s", x, units[u]);
    return buf;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts a copy of v[0..n) into scratch and fills p50, p99 and max. */
static void latency_summary(const uint64_t *v, uint64_t n, uint64_t *scratch, uint64_t *p50,
                            uint64_t *p99, uint64_t *max)
{
    memcpy(scratch, v, n * sizeof(*v));
    qsort(scratch, n, sizeof(*scratch), compare_u64);
    *p50 = bench_percentile(scratch, n, 0.50);
    *p99 = bench_percentile(scratch, n, 0.99);
    *max = n ? scratch[n - 1] : 0;
}

static double rate(uint64_t count, uint64_t ns)
{
    return ns ? (double)count * 1e9 / (double)ns : 0.0;
}

static double per_posting_kib(uint64_t bytes, uint64_t postings)
{
    return postings ? (double)bytes / 1024.0 / (double)postings : 0.0;
}

static double run_rate(const struct run_result *r)
{
    return rate(r->postings, r->apply_ns);
}

static double median_rate(const struct bench *b)
{
    double v[BENCH_RUNS_MAX];
    uint32_t n = b->runs_done;
    if (n == 0)
        return 0.0;
    for (uint32_t i = 0; i < n; i++)
        v[i] = run_rate(&b->runs[i]);
    qsort(v, n, sizeof(v[0]), compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static const char *kind_name(uint32_t kind)
{
    static const char *const names[TALLY_KIND_LIMIT] = {
        "?",       "PROGRAM", "OPEN",    "ACCRUE",   "ACTIVATE", "CANCEL", "REDEEM", "HOLD",
        "CAPTURE", "RELEASE", "REVERSE", "TRANSFER", "ADJUST",   "CLOSE",  "EXPIRE", "TIER_CHANGE",
    };
    return kind < TALLY_KIND_LIMIT ? names[kind] : "?";
}

static const char *code_name(uint32_t slot)
{
    const char *n = slot < TALLY_RESULT_CODE_LIMIT ? tally_result_name(slot) : NULL;
    return n ? n : "UNKNOWN_CODE";
}

/* ---------------------------------------------------------------------------------------------
 * Options.
 * ------------------------------------------------------------------------------------------- */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench-engine [options]\n"
            "\n"
            "Applies the retail workload (docs/BENCHMARKS.md) to an engine in this process and\n"
            "reports postings per second (the median of the runs), batch latency, result codes,\n"
            "entries, file size and memory. Runs continue on the same ledger.\n"
            "\n"
            "  --members N      members opened by the setup (default 1000000)\n"
            "  --batch B        postings per batch, 1..%u (default %u)\n"
            "  --postings P     measured postings per run (default %" PRIu64 ")\n"
            "  --runs R         runs, 1..%u (default %u)\n"
            "  --dir DIR        an empty existing directory for the ledger (default: a new\n"
            "                   directory under /tmp, removed at the end)\n"
            "  --keep           keep the temporary directory\n"
            "  --no-sync        do not fsync each batch commit (default: durable commits)\n"
            "  --json           print one JSON object instead of the table\n"
            "  --json-file F    also write that JSON object to file F\n"
            "  --batches-csv F  write one CSV line per measured batch to file F (run, batch,\n"
            "                   simulated time, postings, OK, entries made, apply ms)\n"
            "  --seed S         workload seed (default 1)\n"
            "  --map-mib M      initial LMDB map size in MiB (default: sized to avoid growth)\n"
            "  --turn-entries N entries per write-back turn of the member cache (default: the\n"
            "                   engine's, ENGINE_TURN_ENTRIES)\n"
            "  --run-seconds S  stop a run after S seconds of wall time (default %u)\n"
            "  --per-hour N     postings per simulated hour (default %u)\n"
            "  --generate-only  run the workload generator alone (no engine): its speed, mix\n"
            "                   and how concentrated the members drawn are\n"
            "  --help           this text\n"
            "\n"
            "Exit codes: 0 done, 2 usage error, 3 data directory unusable, 4 internal error,\n"
            "130 interrupted (SIGINT/SIGTERM: the batches measured so far are reported).\n",
            TALLY_BATCH_MAX, TALLY_BATCH_MAX, BENCH_POSTINGS_DEFAULT, BENCH_RUNS_MAX,
            BENCH_RUNS_DEFAULT, BENCH_RUN_SECONDS_DEFAULT, WORKLOAD_POSTINGS_PER_HOUR_DEFAULT);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, struct bench_options *o)
{
    enum {
        O_MEMBERS = 256,
        O_BATCH,
        O_POSTINGS,
        O_RUNS,
        O_DIR,
        O_KEEP,
        O_NO_SYNC,
        O_JSON,
        O_JSON_FILE,
        O_BATCHES_FILE,
        O_SEED,
        O_MAP,
        O_TURN,
        O_RUN_SECONDS,
        O_PER_HOUR,
        O_GENERATE_ONLY,
        O_HELP
    };
    static const struct option longs[] = {
        {"members", required_argument, NULL, O_MEMBERS},
        {"batch", required_argument, NULL, O_BATCH},
        {"postings", required_argument, NULL, O_POSTINGS},
        {"runs", required_argument, NULL, O_RUNS},
        {"dir", required_argument, NULL, O_DIR},
        {"keep", no_argument, NULL, O_KEEP},
        {"no-sync", no_argument, NULL, O_NO_SYNC},
        {"json", no_argument, NULL, O_JSON},
        {"json-file", required_argument, NULL, O_JSON_FILE},
        {"batches-csv", required_argument, NULL, O_BATCHES_FILE},
        {"seed", required_argument, NULL, O_SEED},
        {"map-mib", required_argument, NULL, O_MAP},
        {"turn-entries", required_argument, NULL, O_TURN},
        {"run-seconds", required_argument, NULL, O_RUN_SECONDS},
        {"per-hour", required_argument, NULL, O_PER_HOUR},
        {"generate-only", no_argument, NULL, O_GENERATE_ONLY},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->members = WORKLOAD_MEMBERS_DEFAULT;
    o->batch = TALLY_BATCH_MAX;
    o->postings = BENCH_POSTINGS_DEFAULT;
    o->runs = BENCH_RUNS_DEFAULT;
    o->sync = true;
    o->seed = 1;
    o->run_seconds_max = BENCH_RUN_SECONDS_DEFAULT;
    o->postings_per_hour = WORKLOAD_POSTINGS_PER_HOUR_DEFAULT;
    int c;
    uint64_t v = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case O_MEMBERS:
            ok = parse_u64(optarg, 2, WORKLOAD_MEMBERS_MAX, &o->members);
            break;
        case O_BATCH:
            ok = parse_u64(optarg, 1, TALLY_BATCH_MAX, &v);
            o->batch = (uint32_t)v;
            break;
        case O_POSTINGS:
            ok = parse_u64(optarg, 1, UINT64_C(1) << 40, &o->postings);
            break;
        case O_RUNS:
            ok = parse_u64(optarg, 1, BENCH_RUNS_MAX, &v);
            o->runs = (uint32_t)v;
            break;
        case O_DIR:
            o->dir = optarg;
            break;
        case O_KEEP:
            o->keep = true;
            break;
        case O_NO_SYNC:
            o->sync = false;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_JSON_FILE:
            o->json_file = optarg;
            break;
        case O_BATCHES_FILE:
            o->batches_file = optarg;
            break;
        case O_SEED:
            ok = parse_u64(optarg, 0, UINT64_MAX, &o->seed);
            break;
        case O_MAP:
            ok = parse_u64(optarg, 1, BENCH_MAP_MAX >> 20, &v);
            o->map_bytes = v << 20;
            break;
        case O_TURN:
            ok = parse_u64(optarg, 1, UINT64_MAX, &o->turn_entries);
            break;
        case O_RUN_SECONDS:
            ok = parse_u64(optarg, 1, 86400, &v);
            o->run_seconds_max = (uint32_t)v;
            break;
        case O_GENERATE_ONLY:
            o->generate_only = true;
            break;
        case O_PER_HOUR:
            ok = parse_u64(optarg, 1, UINT32_MAX, &v);
            o->postings_per_hour = (uint32_t)v;
            break;
        case O_HELP:
            usage(stdout);
            exit(EXIT_OK);
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "tally-bench-engine: bad value '%s' for --%s (see --help)\n", optarg,
                    longs[c - O_MEMBERS].name);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "tally-bench-engine: unexpected argument '%s' (see --help)\n",
                argv[optind]);
        return EXIT_USAGE;
    }
    uint64_t batches_per_run = (o->postings + o->batch - 1) / o->batch;
    if (batches_per_run * o->runs > BENCH_BATCHES_MAX) {
        fprintf(stderr,
                "tally-bench-engine: %" PRIu64 " batches in all is more than %" PRIu64
                "; use a bigger --batch or fewer --postings\n",
                batches_per_run * o->runs, BENCH_BATCHES_MAX);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static uint64_t map_bytes_for(const struct bench_options *o)
{
    if (o->map_bytes != 0)
        return o->map_bytes;
    uint64_t items = o->members + o->postings * o->runs;
    uint64_t want = items * BENCH_MAP_BYTES_PER_ITEM;
    uint64_t map = BENCH_MAP_MIN;
    while (map < want && map < BENCH_MAP_MAX)
        map <<= 1;
    return map;
}

/* ---------------------------------------------------------------------------------------------
 * The benchmark.
 * ------------------------------------------------------------------------------------------- */
static int open_ledger(struct bench *b)
{
    if (b->opts.dir != NULL) {
        snprintf(b->dir, sizeof(b->dir), "%s", b->opts.dir);
    } else {
        snprintf(b->dir, sizeof(b->dir), "/tmp/tally-bench-engine-XXXXXX");
        if (mkdtemp(b->dir) == NULL) {
            fprintf(stderr, "tally-bench-engine: cannot create a directory under /tmp: %s\n",
                    strerror(errno));
            return EXIT_DATA;
        }
        b->dir_is_temp = true;
    }
    struct engine_options eo;
    engine_options_default(&eo);
    eo.map_size = (size_t)map_bytes_for(&b->opts);
    eo.sync = b->opts.sync;
    eo.turn_entries = b->opts.turn_entries; /* 0: the engine's default */
    int rc = engine_open(&b->engine, b->dir, &eo);
    if (rc != 0) {
        fprintf(stderr, "tally-bench-engine: cannot open a ledger in %s: %s\n", b->dir,
                tally_strerror(rc));
        return EXIT_DATA;
    }
    struct engine_status st;
    engine_status(b->engine, &st);
    if (st.entries != 0 || st.applied_index != 0) {
        fprintf(stderr,
                "tally-bench-engine: %s already holds a ledger (%" PRIu64
                " entries); give an empty directory\n",
                b->dir, st.entries);
        return EXIT_DATA;
    }
    b->map_size_start = st.map_size;
    return EXIT_OK;
}

static int apply_batch(struct bench *b, uint64_t timestamp, uint32_t count, uint64_t *ns)
{
    uint64_t t0 = now_ns();
    int rc = engine_apply(b->engine, b->index + 1, timestamp, b->postings, count, b->results);
    *ns = now_ns() - t0;
    if (rc == 1) {
        fprintf(stderr, "tally-bench-engine: batch %" PRIu64 " was already applied\n",
                b->index + 1);
        return EXIT_DATA;
    }
    if (rc != 0) {
        fprintf(stderr, "tally-bench-engine: engine_apply of batch %" PRIu64 " failed: %s\n",
                b->index + 1, tally_strerror(rc));
        return EXIT_INTERNAL;
    }
    b->index++;
    return EXIT_OK;
}

static int run_setup_batches(struct bench *b)
{
    /* One batch for the program, then the opens: bounded by the member count. */
    uint64_t batches_max = b->opts.members / b->opts.batch + 2;
    for (uint64_t i = 0; i < batches_max; i++) {
        uint32_t count;
        uint64_t ts, ns;
        if (workload_setup_batch(&b->workload, b->postings, b->opts.batch, &count, &ts) != 0)
            return EXIT_INTERNAL;
        if (count == 0)
            return EXIT_OK;
        if (interrupted)
            return EXIT_INTERRUPTED;
        int rc = apply_batch(b, ts, count, &ns);
        if (rc != EXIT_OK)
            return rc;
        b->setup_ns += ns;
        b->setup_batches++;
        b->setup_postings += count;
        for (uint32_t k = 0; k < count; k++) {
            if (b->results[k].code == TALLY_OK)
                continue;
            if (b->setup_failed++ == 0)
                fprintf(stderr, "tally-bench-engine: setup posting (%s) failed: %s\n",
                        kind_name(b->postings[k].kind), code_name(b->results[k].code));
        }
    }
    return b->setup_failed ? EXIT_INTERNAL : EXIT_OK;
}

static int run_setup(struct bench *b)
{
    uint64_t wchar0 = proc_io("wchar");
    int rc = run_setup_batches(b);
    b->setup_wchar = proc_io("wchar") - wchar0;
    return rc;
}

static void count_results(struct bench *b, uint32_t count, struct run_result *r)
{
    for (uint32_t k = 0; k < count; k++) {
        uint32_t code = b->results[k].code;
        uint32_t slot = code < TALLY_RESULT_CODE_LIMIT ? code : TALLY_RESULT_CODE_LIMIT;
        uint32_t kind = b->postings[k].kind < TALLY_KIND_LIMIT ? b->postings[k].kind : 0;
        b->by_code[slot]++;
        b->by_kind[kind]++;
        b->by_kind_code[kind][slot]++;
        if (code == TALLY_OK)
            r->ok++;
    }
}

static int run_measured(struct bench *b, uint32_t run, uint64_t *scratch)
{
    struct run_result *r = &b->runs[run];
    struct engine_status st;
    engine_status(b->engine, &st);
    uint64_t entries_before = st.entries;
    double user0, sys0, user1, sys1;
    uint64_t majflt0, majflt1;
    cpu_seconds(&user0, &sys0, &majflt0);
    uint64_t wchar0 = proc_io("wchar"), write_bytes0 = proc_io("write_bytes");
    uint64_t device0 = device_written_bytes(b->dir);
    uint64_t wall0 = now_ns();
    uint64_t wall_max_ns = (uint64_t)b->opts.run_seconds_max * UINT64_C(1000000000);
    uint64_t *lat = &b->latency_ns[b->latency_count];
    uint64_t batches = (b->opts.postings + b->opts.batch - 1) / b->opts.batch;
    uint64_t entries_seen = entries_before;
    for (uint64_t i = 0; i < batches; i++) {
        uint64_t left = b->opts.postings - r->postings;
        uint32_t want = left < b->opts.batch ? (uint32_t)left : b->opts.batch;
        uint32_t count;
        uint64_t ts, ns;
        if (workload_next_batch(&b->workload, b->postings, want, &count, &ts) != 0)
            return EXIT_INTERNAL;
        int rc = apply_batch(b, ts, count, &ns);
        if (rc != EXIT_OK)
            return rc;
        workload_observe(&b->workload, b->results, count);
        uint64_t ok_before = r->ok;
        count_results(b, count, r);
        if (b->batches_csv != NULL) {
            engine_status(b->engine, &st);
            fprintf(b->batches_csv, "%u,%" PRIu64 ",%" PRIu64 ",%u,%" PRIu64 ",%" PRIu64 ",%.3f\n",
                    run + 1, i + 1, ts, count, r->ok - ok_before, st.entries - entries_seen,
                    (double)ns * 1e-6);
            entries_seen = st.entries;
        }
        lat[r->batches++] = ns;
        r->apply_ns += ns;
        r->postings += count;
        if (r->first_ts == 0)
            r->first_ts = ts;
        r->last_ts = ts;
        if (interrupted)
            break;
        if (now_ns() - wall0 > wall_max_ns && i + 1 < batches) {
            r->time_limited = true;
            break;
        }
    }
    r->wall_ns = now_ns() - wall0;
    cpu_seconds(&user1, &sys1, &majflt1);
    r->major_faults = majflt1 - majflt0;
    r->user_s = user1 - user0;
    r->sys_s = sys1 - sys0;
    r->wchar = proc_io("wchar") - wchar0;
    r->write_bytes = proc_io("write_bytes") - write_bytes0;
    r->device_bytes = device_written_bytes(b->dir) - device0;
    engine_status(b->engine, &st);
    r->entries = st.entries - entries_before;
    latency_summary(lat, r->batches, scratch, &r->p50_ns, &r->p99_ns, &r->max_ns);
    b->latency_count += r->batches;
    b->runs_done = run + 1;
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Output for people.
 * ------------------------------------------------------------------------------------------- */
static double sim_day(const struct bench *b, uint64_t ts)
{
    return (double)(ts - b->workload.opts.start_ms) / 86400000.0;
}

static void print_header(const struct bench *b)
{
    char g1[32], g2[32], g3[32], h1[32];
    const struct bench_options *o = &b->opts;
    printf("tally-bench-engine: engine_apply in process, one thread\n");
    printf("  members %s, batch %s, %s postings a run, %u runs, %s\n", grouped(o->members, g1),
           grouped(o->batch, g2), grouped(o->postings, g3), o->runs,
           o->sync ? "durable (fsync at every batch commit)" : "NOT durable (--no-sync)");
    printf("  data %s%s, map %s, seed %" PRIu64 "\n", b->dir,
           b->dir_is_temp && !o->keep ? " (removed at the end)" : "",
           human_bytes(b->map_size_start, h1), o->seed);
    printf("  workload: %s postings = 1 simulated hour; members Zipf-Mandelbrot s=%.2f q=%s\n",
           grouped(o->postings_per_hour, g1), b->workload.zipf.exponent,
           grouped((uint64_t)b->workload.zipf.offset, g2));
    fflush(stdout);
}

static void print_setup(const struct bench *b)
{
    char g1[32], g2[32], g3[32];
    printf("setup (not measured): program + %s opens in %s batches, %.2f s (%s postings/s, "
           "%.1f KiB written per posting)\n",
           grouped(b->setup_postings - 1, g1), grouped(b->setup_batches, g2),
           (double)b->setup_ns * 1e-9, grouped((uint64_t)rate(b->setup_postings, b->setup_ns), g3),
           per_posting_kib(b->setup_wchar, b->setup_postings));
    printf("runs continue on the same ledger: each run starts where the previous one stopped\n\n");
    printf("                                        batch apply ms          cpu s   KiB per posting"
           "       major\n");
    printf("run    postings  apply s  postings/s     p50     p99     max    user    sys   write()"
           "   device      faults  sim days\n");
    fflush(stdout);
}

static void print_run(const struct bench *b, uint32_t i)
{
    const struct run_result *r = &b->runs[i];
    char g1[32], g2[32], g3[32];
    printf("%3u %11s %8.2f %11s %7.1f %7.1f %7.1f %7.2f %6.2f %9.1f %8.1f %11s  %4.1f-%.1f%s\n",
           i + 1, grouped(r->postings, g1), (double)r->apply_ns * 1e-9,
           grouped((uint64_t)run_rate(r), g2), (double)r->p50_ns * 1e-6, (double)r->p99_ns * 1e-6,
           (double)r->max_ns * 1e-6, r->user_s, r->sys_s, per_posting_kib(r->wchar, r->postings),
           per_posting_kib(r->device_bytes, r->postings), grouped(r->major_faults, g3),
           sim_day(b, r->first_ts), sim_day(b, r->last_ts),
           r->time_limited ? "  (stopped: --run-seconds)" : "");
    fflush(stdout);
}

static void print_results(const struct bench *b)
{
    char g1[32], g2[32];
    uint64_t total = 0;
    for (uint32_t k = 0; k < TALLY_KIND_LIMIT; k++)
        total += b->by_kind[k];
    printf("\nresults of the %s measured postings\n", grouped(total, g1));
    for (uint32_t c = 0; c < RESULT_SLOTS; c++) {
        if (b->by_code[c] == 0)
            continue;
        printf("  %-22s %13s %7.3f%%\n", code_name(c), grouped(b->by_code[c], g1),
               100.0 * (double)b->by_code[c] / (double)total);
    }
    printf("by kind                postings   share     ok%%   most frequent other result\n");
    for (uint32_t k = 0; k < TALLY_KIND_LIMIT; k++) {
        if (b->by_kind[k] == 0)
            continue;
        uint32_t worst = 0;
        uint64_t worst_n = 0;
        for (uint32_t c = 1; c < RESULT_SLOTS; c++) {
            if (b->by_kind_code[k][c] > worst_n) {
                worst_n = b->by_kind_code[k][c];
                worst = c;
            }
        }
        printf("  %-12s %15s %6.2f%% %7.2f%%", kind_name(k), grouped(b->by_kind[k], g1),
               100.0 * (double)b->by_kind[k] / (double)total,
               100.0 * (double)b->by_kind_code[k][TALLY_OK] / (double)b->by_kind[k]);
        if (worst_n)
            printf("   %s (%s)", code_name(worst), grouped(worst_n, g2));
        printf("\n");
    }
    const struct workload_stats *ws = &b->workload.stats;
    char g3[32], g4[32], g5[32];
    printf("workload: %s pending accruals, %s partial reversals, %s partial captures, %s holds "
           "left to time out, %s draws fell back to ACCRUE\n",
           grouped(ws->pending_accruals, g1), grouped(ws->partial_reversals, g2),
           grouped(ws->partial_captures, g3), grouped(ws->holds_abandoned, g4),
           grouped(ws->fallbacks, g5));
    printf("  rejections made on purpose: %s overspends, %s unknown cards; %s retries of earlier "
           "postings (EXISTS)\n",
           grouped(ws->overspends, g1), grouped(ws->unknown_cards, g2), grouped(ws->retries, g3));
}

static void print_footer(const struct bench *b, const uint64_t *all)
{
    char g1[32], g2[32], g3[32], h1[32], h2[32], h3[32], h4[32];
    uint64_t measured = b->entries_end - b->entries_after_setup;
    uint64_t postings = 0, ok = 0;
    for (uint32_t i = 0; i < b->runs_done; i++) {
        postings += b->runs[i].postings;
        ok += b->runs[i].ok;
    }
    printf("\nmedian of %u runs: %s postings/s (target 250,000; goal 1,000,000)\n", b->runs_done,
           grouped((uint64_t)median_rate(b), g1));
    printf("batch apply latency over all runs: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
           (double)all[0] * 1e-6, (double)all[1] * 1e-6, (double)all[2] * 1e-6);
    print_results(b);
    printf("\nledger: %s entries in all, %s made by the runs (%.3f per posting, %s beyond one per "
           "OK posting)\n",
           grouped(b->entries_end, g1), grouped(measured, g2),
           postings ? (double)measured / (double)postings : 0.0,
           grouped(measured > ok ? measured - ok : 0, g3));
    printf("  data.mdb %s (%s allocated), %.0f bytes per entry\n", human_bytes(b->data_bytes, h1),
           human_bytes(b->data_blocks_bytes, h2),
           b->entries_end ? (double)b->data_bytes / (double)b->entries_end : 0.0);
    if (b->map_size_end != b->map_size_start)
        printf("  map grew from %s to %s during the runs (a batch was re-run each time)\n",
               human_bytes(b->map_size_start, h3), human_bytes(b->map_size_end, h4));
    else
        printf("  map %s, no growth\n", human_bytes(b->map_size_end, h3));
    printf("  engine member cache: %s members cached, %s not yet written back\n",
           grouped(b->members_cached, g1), grouped(b->members_dirty, g2));
    printf("memory: RSS %s (anon %s, file %s), peak %s\n",
           human_bytes(proc_status_kib("VmRSS") << 10, h1),
           human_bytes(proc_status_kib("RssAnon") << 10, h2),
           human_bytes(proc_status_kib("RssFile") << 10, h3),
           human_bytes(proc_status_kib("VmHWM") << 10, h4));
}

/* ---------------------------------------------------------------------------------------------
 * Output as JSON: one object, written by hand (numbers and fixed names only; the directory,
 * the one free text, is escaped).
 * ------------------------------------------------------------------------------------------- */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (size_t i = 0; s[i] != '\0' && i < PATH_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_json(FILE *f, const struct bench *b, const uint64_t *all)
{
    const struct bench_options *o = &b->opts;
    const struct workload_stats *ws = &b->workload.stats;
    fprintf(f,
            "{\"benchmark\":\"engine_apply\",\"members\":%" PRIu64 ",\"batch\":%u,"
            "\"postings_per_run\":%" PRIu64 ",\"runs\":%u,\"sync\":%s,\"seed\":%" PRIu64
            ",\"postings_per_sim_hour\":%u,\"zipf_exponent\":%.3f,\"zipf_offset\":%.0f,\"dir\":",
            o->members, o->batch, o->postings, o->runs, o->sync ? "true" : "false", o->seed,
            o->postings_per_hour, b->workload.zipf.exponent, b->workload.zipf.offset);
    json_string(f, b->dir);
    fprintf(f,
            ",\"setup\":{\"postings\":%" PRIu64 ",\"batches\":%" PRIu64
            ",\"seconds\":%.6f,\"wchar_bytes\":%" PRIu64 "},",
            b->setup_postings, b->setup_batches, (double)b->setup_ns * 1e-9, b->setup_wchar);
    fprintf(f,
            "\"median_postings_per_s\":%.0f,\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,"
            "\"max\":%.3f},\"run_results\":[",
            median_rate(b), (double)all[0] * 1e-6, (double)all[1] * 1e-6, (double)all[2] * 1e-6);
    for (uint32_t i = 0; i < b->runs_done; i++) {
        const struct run_result *r = &b->runs[i];
        fprintf(
            f,
            "%s{\"postings\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"ok\":%" PRIu64
            ",\"apply_s\":%.6f,\"wall_s\":%.6f,\"postings_per_s\":%.0f,\"entries\":%" PRIu64
            ",\"entries_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
            "\"user_s\":%.3f,\"sys_s\":%.3f,\"wchar_bytes\":%" PRIu64 ",\"write_bytes\":%" PRIu64
            ",\"device_bytes\":%" PRIu64 ",\"major_faults\":%" PRIu64
            ",\"sim_day_first\":%.3f,\"sim_day_last\":%.3f,\"time_limited\":%s}",
            i ? "," : "", r->postings, r->batches, r->ok, (double)r->apply_ns * 1e-9,
            (double)r->wall_ns * 1e-9, run_rate(r), r->entries, rate(r->entries, r->apply_ns),
            (double)r->p50_ns * 1e-6, (double)r->p99_ns * 1e-6, (double)r->max_ns * 1e-6, r->user_s,
            r->sys_s, r->wchar, r->write_bytes, r->device_bytes, r->major_faults,
            sim_day(b, r->first_ts), sim_day(b, r->last_ts), r->time_limited ? "true" : "false");
    }
    fprintf(f, "],\"results\":{");
    bool first = true;
    for (uint32_t c = 0; c < RESULT_SLOTS; c++) {
        if (b->by_code[c] == 0)
            continue;
        fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", code_name(c), b->by_code[c]);
        first = false;
    }
    fprintf(f, "},\"by_kind\":{");
    first = true;
    for (uint32_t k = 0; k < TALLY_KIND_LIMIT; k++) {
        if (b->by_kind[k] == 0)
            continue;
        fprintf(f, "%s\"%s\":{\"postings\":%" PRIu64, first ? "" : ",", kind_name(k),
                b->by_kind[k]);
        for (uint32_t c = 0; c < RESULT_SLOTS; c++) {
            if (b->by_kind_code[k][c] != 0)
                fprintf(f, ",\"%s\":%" PRIu64, code_name(c), b->by_kind_code[k][c]);
        }
        fprintf(f, "}");
        first = false;
    }
    fprintf(f,
            "},\"workload\":{\"pending_accruals\":%" PRIu64 ",\"partial_reversals\":%" PRIu64
            ",\"partial_captures\":%" PRIu64 ",\"holds_abandoned\":%" PRIu64
            ",\"fallbacks\":%" PRIu64 ",\"overspends\":%" PRIu64 ",\"unknown_cards\":%" PRIu64
            ",\"retries\":%" PRIu64 "},",
            ws->pending_accruals, ws->partial_reversals, ws->partial_captures, ws->holds_abandoned,
            ws->fallbacks, ws->overspends, ws->unknown_cards, ws->retries);
    fprintf(
        f,
        "\"entries\":%" PRIu64 ",\"entries_measured\":%" PRIu64 ",\"data_mdb_bytes\":%" PRIu64
        ",\"data_mdb_allocated_bytes\":%" PRIu64 ",\"bytes_per_entry\":%.1f,"
        "\"map_size_start\":%" PRIu64 ",\"map_size_end\":%" PRIu64 ",\"map_grew\":%s,"
        "\"members_cached\":%u,\"members_dirty\":%u,",
        b->entries_end, b->entries_end - b->entries_after_setup, b->data_bytes,
        b->data_blocks_bytes, b->entries_end ? (double)b->data_bytes / (double)b->entries_end : 0.0,
        b->map_size_start, b->map_size_end, b->map_size_end != b->map_size_start ? "true" : "false",
        b->members_cached, b->members_dirty);
    fprintf(f,
            "\"rss_kib\":%" PRIu64 ",\"rss_anon_kib\":%" PRIu64 ",\"rss_file_kib\":%" PRIu64
            ",\"rss_peak_kib\":%" PRIu64 "}\n",
            proc_status_kib("VmRSS"), proc_status_kib("RssAnon"), proc_status_kib("RssFile"),
            proc_status_kib("VmHWM"));
}

static int write_json_file(const struct bench *b, const uint64_t *all)
{
    FILE *f = fopen(b->opts.json_file, "w");
    if (f == NULL) {
        fprintf(stderr, "tally-bench-engine: cannot write %s: %s\n", b->opts.json_file,
                strerror(errno));
        return -1;
    }
    print_json(f, b, all);
    if (fclose(f) != 0) {
        fprintf(stderr, "tally-bench-engine: cannot write %s: %s\n", b->opts.json_file,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */
static int compare_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x > y ? -1 : x < y;
}

/* --generate-only: the generator's speed (what a load generator can offer per core) and the
 * shape of what it generates, with no engine and no feedback of results. */
static int generate_only(struct bench *b)
{
    const struct bench_options *o = &b->opts;
    uint32_t *per_member = calloc(o->members + 1, sizeof(*per_member));
    if (per_member == NULL) {
        fprintf(stderr, "tally-bench-engine: out of memory for %" PRIu64 " counters\n", o->members);
        return EXIT_INTERNAL;
    }
    uint32_t count;
    uint64_t ts, total = 0;
    for (uint64_t i = 0; i < o->members / o->batch + 2; i++) {
        workload_setup_batch(&b->workload, b->postings, o->batch, &count, &ts);
        if (count == 0)
            break;
    }
    uint64_t t0 = now_ns();
    for (uint32_t run = 0; run < o->runs; run++) {
        /* The same batches as the measured runs: full ones, then the rest of the run. */
        for (uint64_t done = 0; done < o->postings; done += count) {
            uint64_t left = o->postings - done;
            uint32_t want = left < o->batch ? (uint32_t)left : o->batch;
            workload_next_batch(&b->workload, b->postings, want, &count, &ts);
            for (uint32_t k = 0; k < count; k++) {
                uint64_t m = b->postings[k].account;
                if (m >= 1 && m <= o->members && per_member[m] < UINT32_MAX)
                    per_member[m]++;
            }
            total += count;
        }
    }
    uint64_t ns = now_ns() - t0;
    char g1[32], g2[32], g3[32];
    printf("generated %s postings in %.2f s: %.0f ns a posting (%s postings/s on one core), "
           "last batch at simulated day %.1f\n",
           grouped(total, g1), (double)ns * 1e-9, (double)ns / (double)total,
           grouped((uint64_t)rate(total, ns), g2), sim_day(b, ts));
    for (uint32_t k = 0; k < TALLY_KIND_LIMIT; k++) {
        if (b->workload.stats.by_kind[k] != 0)
            printf("  %-10s %6.2f%%\n", kind_name(k),
                   100.0 * (double)b->workload.stats.by_kind[k] / (double)total);
    }
    qsort(per_member + 1, o->members, sizeof(*per_member), compare_u32_desc);
    uint64_t drawn = 0, never = 0;
    for (uint64_t m = 1; m <= o->members; m++) {
        drawn += per_member[m];
        never += per_member[m] == 0;
    }
    static const double shares[] = {0.01, 0.10, 0.20, 0.50};
    uint64_t acc = 0, m = 1;
    printf("postings by the busiest members (the account of each posting):");
    for (uint32_t s = 0; s < 4; s++) {
        uint64_t upto = (uint64_t)(shares[s] * (double)o->members);
        for (; m <= upto; m++)
            acc += per_member[m];
        printf(" top %.0f%%: %.1f%%%s", shares[s] * 100, 100.0 * (double)acc / (double)drawn,
               s < 3 ? "," : "\n");
    }
    printf("busiest member: %s postings; median member: %s; never drawn: %s members\n",
           grouped(per_member[1], g1), grouped(per_member[o->members / 2 + 1], g2),
           grouped(never, g3));
    free(per_member);
    return EXIT_OK;
}

static int bench_run(struct bench *b)
{
    struct workload_options wo;
    workload_options_default(&wo);
    wo.seed = b->opts.seed;
    wo.members = b->opts.members;
    wo.postings_per_hour = b->opts.postings_per_hour;
    if (workload_init(&b->workload, &wo) != 0) {
        fprintf(stderr, "tally-bench-engine: out of memory for the workload\n");
        return EXIT_INTERNAL;
    }
    if (b->opts.generate_only)
        return generate_only(b);
    int rc = open_ledger(b);
    if (rc != EXIT_OK)
        return rc;
    if (!b->opts.json)
        print_header(b);
    if ((rc = run_setup(b)) != EXIT_OK)
        return rc;
    struct engine_status st;
    engine_status(b->engine, &st);
    b->entries_after_setup = st.entries;
    if (!b->opts.json)
        print_setup(b);
    uint64_t batches_per_run = (b->opts.postings + b->opts.batch - 1) / b->opts.batch;
    uint64_t samples = batches_per_run * b->opts.runs;
    b->latency_ns = calloc(samples, sizeof(*b->latency_ns));
    uint64_t *scratch = calloc(samples, sizeof(*scratch));
    if (b->latency_ns == NULL || scratch == NULL) {
        free(scratch);
        fprintf(stderr, "tally-bench-engine: out of memory for %" PRIu64 " latencies\n", samples);
        return EXIT_INTERNAL;
    }
    for (uint32_t i = 0; i < b->opts.runs && rc == EXIT_OK; i++) {
        rc = run_measured(b, i, scratch);
        if (rc == EXIT_OK && !b->opts.json)
            print_run(b, i);
        if (rc == EXIT_OK && interrupted) {
            fprintf(stderr, "tally-bench-engine: interrupted; results so far follow\n");
            rc = EXIT_INTERRUPTED;
        }
    }
    if ((rc == EXIT_OK || rc == EXIT_INTERRUPTED) && !b->opts.sync)
        engine_sync(b->engine);
    engine_status(b->engine, &st);
    b->entries_end = st.entries;
    b->map_size_end = st.map_size;
    b->members_cached = st.members_cached;
    b->members_dirty = st.members_dirty;
    file_size(b->dir, "data.mdb", &b->data_bytes, &b->data_blocks_bytes);
    uint64_t all[3];
    latency_summary(b->latency_ns, b->latency_count, scratch, &all[0], &all[1], &all[2]);
    free(scratch);
    if (b->runs_done > 0) {
        if (b->opts.json)
            print_json(stdout, b, all);
        else
            print_footer(b, all);
        if (b->opts.json_file != NULL && write_json_file(b, all) != 0 && rc == EXIT_OK)
            rc = EXIT_INTERNAL;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static struct bench bench; /* large (counters, run table): not on the stack */
    struct bench *b = &bench;
    int rc = parse_options(argc, argv, &b->opts);
    if (rc != EXIT_OK)
        return rc;
    b->postings = calloc(TALLY_BATCH_MAX, sizeof(*b->postings));
    b->results = calloc(TALLY_BATCH_MAX, sizeof(*b->results));
    if (b->postings == NULL || b->results == NULL) {
        fprintf(stderr, "tally-bench-engine: out of memory\n");
        return EXIT_INTERNAL;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (b->opts.batches_file != NULL) {
        b->batches_csv = fopen(b->opts.batches_file, "w");
        if (b->batches_csv == NULL) {
            fprintf(stderr, "tally-bench-engine: cannot write %s: %s\n", b->opts.batches_file,
                    strerror(errno));
            return EXIT_USAGE;
        }
        fprintf(b->batches_csv, "run,batch,timestamp_ms,postings,ok,entries,apply_ms\n");
    }
    rc = bench_run(b);
    if (b->batches_csv != NULL && fclose(b->batches_csv) != 0 && rc == EXIT_OK)
        rc = EXIT_INTERNAL;
    engine_close(b->engine);
    if (b->dir_is_temp && !b->opts.keep) {
        int rm = remove_dir(b->dir);
        if (rm != 0)
            fprintf(stderr, "tally-bench-engine: could not remove %s: %s\n", b->dir, strerror(-rm));
    } else if (b->dir_is_temp) {
        fprintf(stderr, "tally-bench-engine: ledger kept in %s\n", b->dir);
    }
    workload_deinit(&b->workload);
    free(b->latency_ns);
    free(b->results);
    free(b->postings);
    return rc;
}
