/* replay_main.c: `tally-bench --replay SET`: the command line of the replay of real purchase
 * histories (bench/replay.h), against a cluster run with `tallyd --clock client` (libtally's
 * tally_client_post_at) or, with --engine DIR, against an engine in this process.
 *
 * Exit status: 0 replayed and checked, 1 the check failed (a result or a balance differs, or an
 * audited replica failed verify), 2 usage or unreadable data, 3 cluster unreachable or a
 * request failed.
 */
#include "replay.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/audit_fold.h"
#include "../tools/cli_common.h"
#include "engine.h"
#include "tally.h"

enum { EXIT_OK = 0, EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_CLUSTER = 3 };

#define DIRS_MAX 16u

struct replay_cli {
    const char *sets;      /* cdnow | online-retail | all */
    const char *data;      /* the data directory */
    const char *addresses; /* --cluster */
    const char *engine;    /* --engine DIR */
    const char *json_file;
    const char *dirs[DIRS_MAX];
    uint32_t ndirs;
    uint64_t rows; /* 0: all rows */
    uint64_t pending_ms, window_ms, timeout_ms;
    uint32_t program;
    bool json, quiet;
};

/* ---- sinks --------------------------------------------------------------------------------- */

struct cluster_sink {
    struct tally_client *c;
    uint64_t timeout_ms;
};

static int cluster_post(void *ctx, uint64_t at_ms, const struct tally_posting *p, uint32_t n,
                        struct tally_result *r)
{
    struct cluster_sink *s = ctx;
    return tally_client_post_at(s->c, at_ms, p, n, r, s->timeout_ms);
}

static int cluster_account(void *ctx, uint32_t program, uint64_t member, struct tally_account *out)
{
    struct cluster_sink *s = ctx;
    return tally_client_account(s->c, program, member, out, NULL);
}

static int cluster_lots(void *ctx, uint32_t program, uint64_t member, struct tally_lot *out,
                        uint32_t max, uint32_t *count)
{
    struct cluster_sink *s = ctx;
    return tally_client_lots(s->c, program, member, out, max, count, NULL);
}

struct engine_sink {
    struct engine *e;
    uint64_t index;
};

static int engine_post(void *ctx, uint64_t at_ms, const struct tally_posting *p, uint32_t n,
                       struct tally_result *r)
{
    struct engine_sink *s = ctx;
    int rc = engine_apply(s->e, ++s->index, at_ms, p, n, r);
    return rc == 1 ? TALLY_ECONFIG : rc; /* 1: the index was applied before (a used DIR) */
}

static int engine_account_of(void *ctx, uint32_t program, uint64_t member,
                             struct tally_account *out)
{
    struct engine_sink *s = ctx;
    return engine_account(s->e, program, member, out);
}

static int engine_lots_of(void *ctx, uint32_t program, uint64_t member, struct tally_lot *out,
                          uint32_t max, uint32_t *count)
{
    struct engine_sink *s = ctx;
    return engine_lots(s->e, program, member, out, max, count);
}

/* ---- options ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench --replay cdnow|online-retail|all [options]\n"
            "Replays the real purchase histories of data/retail/ as postings at their historical\n"
            "times (a cluster must run tallyd --clock client), then checks every member's\n"
            "balances, lots and tier against the replay's own model (docs/BENCHMARKS.md).\n"
            "  --cluster H:P,...   the replicas (or TALLY_CLUSTER)\n"
            "  --engine DIR        no cluster: an engine in this process, ledger in DIR (new)\n"
            "  --data DIR          cdnow.txt and online_retail.csv.gz (default: ../shared/data/\n"
            "                      retail beside the repository, or TALLY_RETAIL_DATA)\n"
            "  --rows N            only the first N data rows of each file (default: all)\n"
            "  --return-days D     pending window of each accrual, days (default 30)\n"
            "  --window-ms MS      batch events of one window, stamped at its start (default 0:\n"
            "                      one batch per distinct time)\n"
            "  --program ID        program of CDNOW (default 1997); online-retail gets ID+1\n"
            "  --data-dirs D,...   replica data directories: run tally-audit verify on each\n"
            "  --timeout S         deadline of each call to the cluster (default 60)\n"
            "  --json  --json-file FILE  --quiet (no progress line)\n"
            "  --pids, --svg       accepted for bench/cluster.sh; not used by the replay\n"
            "exit: 0 replayed and checked, 1 the check failed, 2 usage or unreadable data,\n"
            "      3 cluster unreachable or a request failed\n");
}

/* ../shared/data/retail beside the repository of this program (build/tally-bench), else
 * beside the current directory. */
static const char *default_data(char *buf, size_t len)
{
    const char *env = getenv("TALLY_RETAIL_DATA");
    if (env != NULL)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    struct stat st;
    if (n > 0) {
        exe[n] = '\0';
        char *repo = dirname(dirname(exe));
        snprintf(buf, len, "%s/../shared/data/retail", repo);
        if (stat(buf, &st) == 0)
            return buf;
    }
    return "../shared/data/retail";
}

static int parse(int argc, char **argv, struct replay_cli *o, char *data_buf, size_t data_len)
{
    *o = (struct replay_cli){
        .pending_ms = 30 * UINT64_C(86400000), .timeout_ms = 60000, .program = 1997};
    o->addresses = getenv("TALLY_CLUSTER");
    static const struct option longs[] = {
        {"replay", required_argument, 0, 'r'},
        {"cluster", required_argument, 0, 'c'},
        {"engine", required_argument, 0, 'e'},
        {"data", required_argument, 0, 'D'},
        {"rows", required_argument, 0, 'n'},
        {"return-days", required_argument, 0, 'R'},
        {"window-ms", required_argument, 0, 'w'},
        {"program", required_argument, 0, 'g'},
        {"data-dirs", required_argument, 0, 'd'},
        {"timeout", required_argument, 0, 't'},
        {"json", no_argument, 0, 'J'},
        {"json-file", required_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},
        {"pids", required_argument, 0, 'p'},
        {"svg", required_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch, li = 0;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        uint64_t v = 0;
        switch (ch) {
        case 'r':
            o->sets = optarg;
            break;
        case 'c':
            o->addresses = optarg;
            break;
        case 'e':
            o->engine = optarg;
            break;
        case 'D':
            o->data = optarg;
            break;
        case 'n':
            ok = cli_parse_u64(optarg, &o->rows) && o->rows > 0;
            break;
        case 'R':
            ok = cli_parse_u64(optarg, &v) && v >= 1 && v <= 3650;
            o->pending_ms = v * 86400000;
            break;
        case 'w':
            ok = cli_parse_u64(optarg, &o->window_ms) && o->window_ms <= 86400000;
            break;
        case 'g':
            ok = cli_parse_u64(optarg, &v) && v >= 1 && v < UINT32_MAX;
            o->program = (uint32_t)v;
            break;
        case 'd':
            for (char *tok = strtok(optarg, ","); tok != NULL && ok; tok = strtok(NULL, ","))
                ok = o->ndirs < DIRS_MAX && (o->dirs[o->ndirs++] = tok) != NULL;
            break;
        case 't':
            ok = cli_parse_u64(optarg, &v) && v >= 1 && v <= 3600;
            o->timeout_ms = v * 1000;
            break;
        case 'J':
            o->json = true;
            break;
        case 'j':
            o->json_file = optarg;
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'p':
        case 'v':
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "tally-bench --replay: bad option or value: %s\n", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    bool set_ok =
        o->sets != NULL && (strcmp(o->sets, "cdnow") == 0 ||
                            strcmp(o->sets, "online-retail") == 0 || strcmp(o->sets, "all") == 0);
    if (!set_ok || optind != argc || (o->engine == NULL && o->addresses == NULL) ||
        (o->engine != NULL && o->addresses != NULL)) {
        fprintf(stderr, "tally-bench --replay: give a set (cdnow, online-retail or all) and "
                        "either --cluster or --engine\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (o->data == NULL)
        o->data = default_data(data_buf, data_len);
    return EXIT_OK;
}

/* ---- reports ------------------------------------------------------------------------------- */

static cJSON *stats_json(const struct replay_stats *s)
{
    cJSON *j = cJSON_CreateObject();
#define F(name) cJSON_AddNumberToObject(j, #name, (double)s->name)
    F(rows);
    F(header_lines);
    F(bad_rows);
    F(rows_no_customer);
    F(rows_zero);
    F(duplicate_rows);
    F(adjust_rows);
    F(odd_rows);
    F(customers);
    F(joins);
    F(purchases);
    F(purchase_cents);
    F(purchases_zero);
    F(return_rows);
    F(return_rows_unmatched);
    F(return_cents_unmatched);
    F(returns);
    F(return_cents);
    F(return_cents_capped);
    F(invoices);
    F(first_ms);
    F(last_ms);
#undef F
    return j;
}

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* The 1-, 5- and 15-minute load averages (2 shared cores here: a figure needs them beside it). */
static void load_average(double out[3])
{
    out[0] = out[1] = out[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL)
        return;
    if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3)
        out[0] = out[1] = out[2] = -1;
    fclose(f);
}

static cJSON *report_json(const char *name, const struct replay_data *d,
                          const struct replay_report *r, const double load[2][3])
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "set", name);
    cJSON *la = cJSON_AddObjectToObject(j, "load_average");
    cJSON_AddItemToObject(la, "before", cJSON_CreateDoubleArray(load[0], 3));
    cJSON_AddItemToObject(la, "after", cJSON_CreateDoubleArray(load[1], 3));
    cJSON_AddItemToObject(j, "data", stats_json(&d->stats));
    cJSON *l = cJSON_AddObjectToObject(j, "load");
#define F(o, name) cJSON_AddNumberToObject(o, #name, (double)r->name)
    F(l, batches);
    F(l, postings);
    F(l, purchases_posted);
    F(l, purchases_below_point);
    F(l, returns_below_point);
    F(l, returns_of_unposted);
    F(l, chains);
    F(l, expected_failures);
    F(l, result_mismatches);
    F(l, post_errors);
    F(l, first_ms);
    F(l, last_ms);
    F(l, final_ms);
    cJSON *k = cJSON_AddObjectToObject(l, "by_kind");
    static const char *kinds[] = {
        [TALLY_KIND_PROGRAM] = "program", [TALLY_KIND_OPEN] = "open",
        [TALLY_KIND_ACCRUE] = "accrue",   [TALLY_KIND_ACTIVATE] = "activate",
        [TALLY_KIND_CANCEL] = "cancel",   [TALLY_KIND_REVERSE] = "reverse"};
    for (uint32_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (kinds[i] != NULL)
            cJSON_AddNumberToObject(k, kinds[i], (double)r->by_kind[i]);
    }
    cJSON *ef = cJSON_AddObjectToObject(l, "expected_failures_by_result");
    for (uint32_t i = 1; i < TALLY_RESULT_CODE_LIMIT; i++) {
        if (r->expected_by_code[i] != 0)
            cJSON_AddNumberToObject(ef, tally_result_name(i), (double)r->expected_by_code[i]);
    }
    cJSON_AddNumberToObject(l, "seconds", r->post_seconds);
    double s = r->post_seconds > 0 ? r->post_seconds : 1e-9;
    cJSON_AddNumberToObject(l, "postings_per_s", (double)r->postings / s);
    cJSON_AddNumberToObject(l, "purchases_per_s", (double)d->stats.purchases / s);
    cJSON *lat = cJSON_AddObjectToObject(l, "batch_latency");
    cJSON_AddNumberToObject(lat, "count", (double)r->batch_ns.count);
    cJSON_AddNumberToObject(lat, "mean_ms",
                            r->batch_ns.count ? ms_of(r->batch_ns.sum / r->batch_ns.count) : 0);
    cJSON_AddNumberToObject(lat, "p50_ms", ms_of(hist_percentile(&r->batch_ns, 0.50)));
    cJSON_AddNumberToObject(lat, "p90_ms", ms_of(hist_percentile(&r->batch_ns, 0.90)));
    cJSON_AddNumberToObject(lat, "p99_ms", ms_of(hist_percentile(&r->batch_ns, 0.99)));
    cJSON_AddNumberToObject(lat, "max_ms", ms_of(r->batch_ns.max));
    cJSON *t = cJSON_AddObjectToObject(j, "time_driven");
    F(t, activations);
    F(t, expiries);
    F(t, expired_points);
    F(t, upgrades);
    F(t, renewals);
    F(t, downgrades);
    cJSON *c = cJSON_AddObjectToObject(j, "check");
    F(c, members_checked);
    F(c, members_mismatched);
    F(c, read_errors);
#undef F
    cJSON_AddNumberToObject(c, "seconds", r->check_seconds);
    cJSON *tiers = cJSON_AddArrayToObject(c, "members_per_tier");
    for (uint32_t i = 0; i < TALLY_TIERS_MAX; i++)
        cJSON_AddItemToArray(tiers, cJSON_CreateNumber(r->tier_count[i]));
    cJSON *df = cJSON_AddArrayToObject(c, "differences");
    for (uint32_t i = 0; i < r->ndiffs; i++)
        cJSON_AddItemToArray(df, cJSON_CreateString(r->diffs[i]));
    cJSON_AddBoolToObject(c, "ok", r->ok);
    return j;
}

static void report_text(const char *name, const struct replay_data *d,
                        const struct replay_report *r, const double load[2][3])
{
    const struct replay_stats *s = &d->stats;
    double sec = r->post_seconds > 0 ? r->post_seconds : 1e-9;
    printf("== replay of %s (load average %.2f %.2f %.2f before, %.2f %.2f %.2f after) ==\n", name,
           load[0][0], load[0][1], load[0][2], load[1][0], load[1][1], load[1][2]);
    printf("data: %" PRIu64 " rows, %" PRIu64 " customers, %" PRIu64 " purchases (%.2f), %" PRIu64
           " returns (%.2f); not posted: %" PRIu64 " rows without a customer, %" PRIu64
           " zero-amount rows, %" PRIu64 " unmatched return rows (%.2f), %.2f of returns above "
           "their purchase; %" PRIu64 " duplicate rows kept\n",
           s->rows, s->customers, s->purchases, (double)s->purchase_cents / 100, s->returns,
           (double)s->return_cents / 100, s->rows_no_customer, s->rows_zero,
           s->return_rows_unmatched, (double)s->return_cents_unmatched / 100,
           (double)s->return_cents_capped / 100, s->duplicate_rows);
    printf("load: %" PRIu64 " postings in %" PRIu64 " batches, %.1f s: %.0f postings/s, %.0f "
           "purchases/s; batch p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           r->postings, r->batches, r->post_seconds, (double)r->postings / sec,
           (double)s->purchases / sec, ms_of(hist_percentile(&r->batch_ns, 0.5)),
           ms_of(hist_percentile(&r->batch_ns, 0.99)), ms_of(r->batch_ns.max));
    printf("postings: %" PRIu64 " OPEN, %" PRIu64 " ACCRUE, %" PRIu64 " CANCEL, %" PRIu64
           " ACTIVATE+REVERSE, %" PRIu64 " REVERSE in all; %" PRIu64 " purchases and %" PRIu64
           " returns below one point not posted; %" PRIu64 " postings expected to fail",
           r->by_kind[TALLY_KIND_OPEN], r->by_kind[TALLY_KIND_ACCRUE],
           r->by_kind[TALLY_KIND_CANCEL], r->chains, r->by_kind[TALLY_KIND_REVERSE],
           r->purchases_below_point, r->returns_below_point, r->expected_failures);
    for (uint32_t i = 1; i < TALLY_RESULT_CODE_LIMIT; i++) {
        if (r->expected_by_code[i] != 0)
            printf(" (%s: %" PRIu64 ")", tally_result_name(i), r->expected_by_code[i]);
    }
    printf("\n");
    printf("time-driven (model): %" PRIu64 " activations, %" PRIu64 " expiries (%" PRIu64
           " points), %" PRIu64 " upgrades, %" PRIu64 " renewals, %" PRIu64 " downgrades\n",
           r->activations, r->expiries, r->expired_points, r->upgrades, r->renewals, r->downgrades);
    printf("check: %" PRIu64 " members read back in %.1f s, %" PRIu64 " differ, %" PRIu64
           " results differ: %s\n",
           r->members_checked, r->check_seconds, r->members_mismatched, r->result_mismatches,
           r->ok ? "OK" : "DIFFERENCE");
    for (uint32_t i = 0; i < r->ndiffs; i++)
        printf("  %s\n", r->diffs[i]);
}

/* ---- main ---------------------------------------------------------------------------------- */

static int load(uint32_t set, const struct replay_cli *o, struct replay_data *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", o->data,
             set == REPLAY_SET_CDNOW ? "cdnow.txt" : "online_retail.csv.gz");
    int rc = set == REPLAY_SET_CDNOW ? replay_data_load_cdnow(path, o->rows, d)
                                     : replay_data_load_online_retail(path, o->rows, d);
    if (rc != 0)
        fprintf(stderr, "tally-bench --replay: cannot read %s: %s\n", path,
                rc == -EINVAL ? "rows that do not parse" : strerror(-rc));
    return rc;
}

static bool audit(const struct replay_cli *o, cJSON *doc)
{
    bool all_ok = true;
    cJSON *a = cJSON_AddArrayToObject(doc, "audit");
    for (uint32_t i = 0; i < o->ndirs; i++) {
        char path[PATH_MAX], probe[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s", o->dirs[i]);
        snprintf(probe, sizeof(probe), "%s/ledger/data.mdb", o->dirs[i]);
        if (access(probe, F_OK) == 0)
            snprintf(path, sizeof(path), "%s/ledger", o->dirs[i]);
        struct audit_report ar;
        memset(&ar, 0, sizeof(ar));
        int rc = audit_verify(path, &ar);
        bool ok = rc == 0 && ar.ok;
        all_ok = all_ok && ok;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dir", o->dirs[i]);
        cJSON_AddBoolToObject(e, "ok", ok);
        cJSON_AddNumberToObject(e, "entries", (double)ar.entries);
        cJSON_AddItemToArray(a, e);
        if (!o->json)
            printf("audit of %s: %s (%" PRIu64 " entries)\n", o->dirs[i],
                   ok        ? "OK"
                   : rc != 0 ? tally_strerror(rc)
                             : ar.what,
                   ar.entries);
    }
    return all_ok;
}

static int open_sink(const struct replay_cli *o, struct replay_sink *s, struct cluster_sink *cs,
                     struct engine_sink *es)
{
    if (o->engine != NULL) {
        struct engine_options eo;
        engine_options_default(&eo);
        eo.sync = false; /* a check of the rules, not of durability: no fsync */
        if (mkdir(o->engine, 0755) != 0 && errno != EEXIST)
            return -errno;
        int rc = engine_open(&es->e, o->engine, &eo);
        *s = (struct replay_sink){es, engine_post, engine_account_of, engine_lots_of};
        return rc;
    }
    struct tally_client_options co = {
        .addresses = o->addresses, .timeout_ms = o->timeout_ms, .label = "tally-bench-replay"};
    cs->timeout_ms = o->timeout_ms;
    *s = (struct replay_sink){cs, cluster_post, cluster_account, cluster_lots};
    return tally_client_open(&cs->c, &co);
}

int replay_main(int argc, char **argv)
{
    struct replay_cli o;
    char data_buf[PATH_MAX];
    int status = parse(argc, argv, &o, data_buf, sizeof(data_buf));
    if (status != EXIT_OK)
        return status;
    signal(SIGPIPE, SIG_IGN);
    struct replay_sink sink;
    struct cluster_sink cs = {0};
    struct engine_sink es = {0};
    int rc = open_sink(&o, &sink, &cs, &es);
    if (rc != 0) {
        fprintf(stderr, "tally-bench --replay: cannot open %s: %s\n",
                o.engine ? o.engine : o.addresses, tally_strerror(rc));
        return o.engine ? EXIT_USAGE : EXIT_CLUSTER;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *runs = cJSON_AddArrayToObject(doc, "replay");
    bool all = strcmp(o.sets, "all") == 0;
    bool ok = true;
    for (uint32_t set = REPLAY_SET_CDNOW; set <= REPLAY_SET_ONLINE_RETAIL && status == EXIT_OK;
         set++) {
        const char *name = set == REPLAY_SET_CDNOW ? "cdnow" : "online-retail";
        if (!all && strcmp(o.sets, name) != 0)
            continue;
        struct replay_data d;
        if (load(set, &o, &d) != 0) {
            status = EXIT_USAGE;
            break;
        }
        struct replay_options ro = {.program = o.program + (set - REPLAY_SET_CDNOW),
                                    .pending_ms = o.pending_ms,
                                    .window_ms = o.window_ms,
                                    .progress = !o.quiet};
        struct replay_report *r = malloc(sizeof(*r));
        double load[2][3];
        load_average(load[0]);
        if (r == NULL || replay_run(&d, &ro, &sink, r) != 0) {
            fprintf(stderr, "tally-bench --replay: out of memory\n");
            free(r);
            replay_data_free(&d);
            status = EXIT_CLUSTER;
            break;
        }
        load_average(load[1]);
        cJSON_AddItemToArray(runs, report_json(name, &d, r, (const double(*)[3])load));
        if (!o.json)
            report_text(name, &d, r, (const double(*)[3])load);
        ok = ok && r->ok;
        if (r->post_errors > 0)
            status = EXIT_CLUSTER;
        free(r);
        replay_data_free(&d);
    }
    if (o.engine != NULL)
        engine_close(es.e);
    else
        tally_client_close(cs.c);
    if (status == EXIT_OK && o.ndirs > 0)
        ok = audit(&o, doc) && ok;
    cJSON_AddBoolToObject(doc, "ok", ok);
    char *text = cJSON_Print(doc);
    if (o.json && text != NULL)
        printf("%s\n", text);
    if (o.json_file != NULL && text != NULL) {
        FILE *f = fopen(o.json_file, "w");
        if (f != NULL) {
            fprintf(f, "%s\n", text);
            fclose(f);
        }
    }
    free(text);
    cJSON_Delete(doc);
    if (status != EXIT_OK)
        return status;
    return ok ? EXIT_OK : EXIT_CHECK;
}
