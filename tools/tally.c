/* tally.c: the `tally` command-line client, embedded or against a cluster.
 *
 *   tally --data DIR [--at TIME] [--json] <command> [options]
 *   tally --cluster ADDR[,ADDR...] [--json] <command> [options]
 *
 * Embedded mode opens the ledger in DIR inside this process (engine.h; DIR is created if
 * missing), turns one command into one posting, applies it as a batch of one numbered
 * applied_index + 1 and stamped with the wall clock (or --at TIME), and prints what became of it.
 * Queries read the same directory. `batch FILE` applies many posting commands, one per line, as
 * one batch. Cluster mode sends the same batches and queries to a tally cluster through libtally
 * (tally.h): the leader stamps each batch with its clock (with --at, on a cluster running with
 * tallyd --clock client, with TIME: POST_AT), a lost answer is retried under the same request
 * number, and `status` reports every replica.
 *
 * Design notes
 * - Commands are rows of one table (name, usage, accepted options, help). Posting commands have
 *   no code of their own: each option name maps to one field of struct tally_posting through the
 *   field_options table, so `accrue --points 5` and a batch line `accrue --points 5` are built by
 *   the same code, and a posting command is added by adding a row.
 * - The CLI validates only what it must to fill the posting (numbers, names, lengths). Every rule
 *   of the ledger (amount zero, config ranges, ...) is the engine's, and comes back as a result
 *   code: the CLI never second-guesses the engine, so it cannot disagree with it.
 * - Every command builds one cJSON object. --json prints it; otherwise a generic renderer prints
 *   it as "name value" lines and tables. Numbers above 2^53 are strings (cli_json_add_u64), so the
 *   text and the JSON carry exactly the same values.
 * - The batch timestamp is --at or the wall clock. The engine applies a batch at
 *   max(timestamp, last batch time), so a TIME in the past is noted on stderr, not refused.
 * - Two backends, one table of calls (struct backend): the engine in this process, or a cluster
 *   through libtally. Both take the same records and answer with the same tally_errors.h codes,
 *   so no command asks which one it runs on. What only one of them can do is refused where it
 *   happens: `tick` is embedded only; --at on postings in cluster mode is a POST_AT, which only a
 *   cluster running with tallyd --clock client takes (a wall-clock cluster's leader stamps its
 *   batches: the CLI says so); `status` reports the directory or every replica.
 * - In cluster mode a posting whose answer never came (deadline, lost session) has an unknown
 *   outcome: the CLI says so, names the ids to ask about with `posting --id`, and exits 3;
 *   docs/PROTOCOL.md ("Client semantics") says what each outcome means.
 *
 * Exit codes (cli_common.h): 0 applied (or EXISTS of an applied posting) / query answered;
 * 1 posting rejected, or the query found nothing; 2 usage; 3 data directory unusable, cluster
 * unreachable, or a posting's outcome unknown; 4 system.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calendar.h"
#include "cli_common.h"
#include "engine.h"
#include "ids.h"
#include "tally.h"
#include "tally_errors.h"
#include "tally_records.h"
#include "tally_results.h"
#include "tally_wire.h"

/* ---------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------- */

/* Options on one command: the longest command (program create) has 11; room for all of them
 * plus the common ones, with a margin, and every argument vector is bounded by it. */
#define ARGS_MAX       32u
#define POSITIONAL_MAX 2u

/* One line of a batch file: a posting command is under 300 bytes; 4 KiB leaves room for long
 * comments and never needs a heap buffer per line. */
#define LINE_BYTES      4096u
#define LINE_TOKENS_MAX (2u * ARGS_MAX + 4u)

/* History pages: 20 lines fit a terminal; 1000 bounds the buffer of one query. */
#define HISTORY_LIMIT_DEFAULT 20u
#define HISTORY_LIMIT_MAX     1000u

/* Entries listed by `tick` and `posting` (a tick after a long pause can create thousands). */
#define LIST_ENTRIES_MAX 100u

/* Programs read per engine_programs call by `program list`. */
#define PROGRAMS_PAGE 64u

/* Default timeout of holds of a new program: a checkout that has not finished in 15 minutes has
 * been abandoned. */
#define HOLD_TIMEOUT_DEFAULT_MS (UINT64_C(15) * 60 * 1000)

/* Returned by args_parse when --help was given: not an exit code. */
#define ARGS_HELP (-1)

/* ---------------------------------------------------------------------------------------------
 * Names of things
 * ------------------------------------------------------------------------------------------- */

static const char *const kind_names[TALLY_KIND_LIMIT] = {
    [TALLY_KIND_PROGRAM] = "program",
    [TALLY_KIND_OPEN] = "open",
    [TALLY_KIND_ACCRUE] = "accrue",
    [TALLY_KIND_ACTIVATE] = "activate",
    [TALLY_KIND_CANCEL] = "cancel",
    [TALLY_KIND_REDEEM] = "redeem",
    [TALLY_KIND_HOLD] = "hold",
    [TALLY_KIND_CAPTURE] = "capture",
    [TALLY_KIND_RELEASE] = "release",
    [TALLY_KIND_REVERSE] = "reverse",
    [TALLY_KIND_TRANSFER] = "transfer",
    [TALLY_KIND_ADJUST] = "adjust",
    [TALLY_KIND_CLOSE] = "close",
    [TALLY_KIND_EXPIRE] = "expire",
    [TALLY_KIND_TIER_CHANGE] = "tier_change",
};
static const char *const expiry_names[] = {"none", "fixed", "days", "month", "quarter", "year"};
static const char *const tier_mode_names[] = {"up-only", "down-step", "down-earned"};
static const char *const hold_status_names[] = {NULL, "active", "captured", "released",
                                                "timed-out"};
static const char *const tier_reason_names[] = {NULL, "upgrade", "renew", "downgrade"};
static const char *const account_status_names[] = {NULL, "open", "closed", "system"};

#define COUNT_OF(a)       (sizeof(a) / sizeof((a)[0]))
#define NAME_OF(names, v) name_of(names, COUNT_OF(names), v)

static const char *name_of(const char *const *names, size_t count, uint32_t v)
{
    return v < count && names[v] != NULL ? names[v] : "unknown";
}

/* Index of the name equal to the first len bytes of s, or -1. */
static int name_index(const char *const *names, size_t count, const char *s, size_t len)
{
    for (size_t i = 0; i < count; i++) {
        if (names[i] != NULL && strlen(names[i]) == len && strncmp(names[i], s, len) == 0)
            return (int)i;
    }
    return -1;
}

static const char *kind_name(uint32_t kind)
{
    return NAME_OF(kind_names, kind);
}

static const char *result_name(uint32_t code)
{
    const char *name = tally_result_name(code);
    return name != NULL ? name : "UNKNOWN";
}

/* System accounts by name, members by number, always as a string (one JSON type per field). */
static void account_name(uint64_t id, char buf[24])
{
    static const char *const sys[TALLY_SYS_COUNT] = {"issuance", "redemption", "breakage",
                                                     "adjustment"};
    if (id > UINT64_MAX - TALLY_SYS_COUNT)
        snprintf(buf, 24, "%s", sys[UINT64_MAX - id]);
    else
        snprintf(buf, 24, "%" PRIu64, id);
}

static void time_text(uint64_t t, char buf[32])
{
    if (t == UINT64_MAX)
        snprintf(buf, 32, "never");
    else if (t == 0)
        snprintf(buf, 32, "-");
    else
        calendar_format(t, buf);
}

/* ---------------------------------------------------------------------------------------------
 * The command table
 * ------------------------------------------------------------------------------------------- */

struct cli;

struct arg {
    const char *name;
    const char *value; /* "" for a flag */
};

struct args {
    struct arg v[ARGS_MAX];
    uint32_t count;
    const char *positional[POSITIONAL_MAX];
    uint32_t positional_count;
};

enum command_group { GROUP_POSTING, GROUP_QUERY, GROUP_OTHER };

struct command {
    const char *name; /* one or two words */
    enum command_group group;
    uint16_t kind; /* posting kind; 0 for queries and the others */
    int (*run)(struct cli *c, const struct args *a); /* NULL: a posting, see run_posting */
    uint32_t positional_max;
    const char *usage; /* what follows the name */
    /* Accepted options, space separated: "*name" is required, "name!" is a flag (no value).
     * Posting commands also accept POSTING_COMMON_OPTIONS. */
    const char *options;
    const char *summary;
    const char *details;
};

#define POSTING_COMMON_OPTIONS "id linked!"

struct backend;

struct cli {
    const char *dir;
    const char *cluster;  /* --cluster ADDR,...: cluster mode */
    bool dir_given;       /* --data on the command line (not only TALLY_DATA) */
    uint64_t deadline_ms; /* --deadline: how long a cluster call may take (0: libtally's) */
    bool json;
    bool have_at;
    uint64_t at_ms;
    uint64_t now_ms;
    struct engine *engine;       /* embedded mode, once opened */
    struct tally_client *client; /* cluster mode, once opened */
    const struct backend *be;
    struct ids ids;
    const struct command *cmd;
    uint32_t line; /* batch file line being read; 0 on the command line */
};

static const struct command *command_find(char **tok, uint32_t n, uint32_t *used);
static bool command_family(const char *word, char *list, size_t size);

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

static void print_usage_line(FILE *f, const struct command *cmd)
{
    if (cmd != NULL)
        fprintf(f, "usage: tally (--data DIR | --cluster ADDR,...) [--at TIME] [--json] %s%s%s\n",
                cmd->name, cmd->usage[0] != '\0' ? " " : "", cmd->usage);
    else
        fprintf(f, "usage: tally (--data DIR | --cluster ADDR,...) [--at TIME] [--json] <command> "
                   "[options]\n");
}

/* A usage error: what was wrong, then the right usage. Always on stderr, exit 2. */
__attribute__((format(printf, 2, 3))) static int usage_error(const struct cli *c, const char *fmt,
                                                             ...)
{
    va_list ap;
    fputs("tally: ", stderr);
    if (c->line != 0)
        fprintf(stderr, "batch line %" PRIu32 ": ", c->line);
    if (c->cmd != NULL)
        fprintf(stderr, "%s: ", c->cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    print_usage_line(stderr, c->cmd);
    fprintf(stderr, "(details: tally %s%s--help)\n", c->cmd != NULL ? c->cmd->name : "",
            c->cmd != NULL ? " " : "");
    return CLI_EXIT_USAGE;
}

/* A failure that is not a usage error: on stderr, and in --json mode also as one JSON object on
 * stdout ({"error": kind, "message": text}) so a script reading stdout always gets an object. */
__attribute__((format(printf, 4, 5))) static int fail(const struct cli *c, int exit_code,
                                                      const char *kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tally: %s\n", msg);
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", kind);
        cJSON_AddStringToObject(o, "message", msg);
        cli_print_json(o);
    }
    return exit_code;
}

/* A failed query: TALLY_ENOT_FOUND means "nothing there" (exit 1), anything else is a system
 * error (exit 4). */
static int query_failed(const struct cli *c, int rc, const char *what)
{
    if (rc == TALLY_ENOT_FOUND)
        return fail(c, CLI_EXIT_REJECTED, "NOT_FOUND", "%s", what);
    return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "%s: %s", c->cmd->name, tally_strerror(rc));
}

/* ---------------------------------------------------------------------------------------------
 * Parsing values
 * ------------------------------------------------------------------------------------------- */

static int bad_value(const struct cli *c, const char *name, const char *value, const char *want)
{
    return usage_error(c, "--%s '%s': expected %s", name, value, want);
}

static int parse_u64_max(const struct cli *c, const char *name, const char *value, uint64_t max,
                         uint64_t *out)
{
    uint64_t v;
    if (!cli_parse_u64(value, &v) || v > max) {
        char want[64];
        snprintf(want, sizeof(want), "a whole number from 0 to %" PRIu64, max);
        return bad_value(c, name, value, want);
    }
    *out = v;
    return 0;
}

static int parse_u32(const struct cli *c, const char *name, const char *value, uint32_t *out)
{
    uint64_t v = 0;
    int rc = parse_u64_max(c, name, value, UINT32_MAX, &v);
    *out = (uint32_t)v;
    return rc;
}

/* A signed number: optional sign, then digits. */
static int parse_i32(const struct cli *c, const char *name, const char *value, int32_t *out)
{
    const char *digits = value + (value[0] == '-' || value[0] == '+');
    uint64_t v;
    if (!cli_parse_u64(digits, &v) || v > INT32_MAX)
        return bad_value(c, name, value, "a whole number, e.g. -300 or 480");
    *out = value[0] == '-' ? -(int32_t)v : (int32_t)v;
    return 0;
}

static int parse_id(const struct cli *c, const char *name, const char *value, uint8_t out[16])
{
    if (!cli_parse_id(value, out))
        return bad_value(c, name, value, "32 hex digits or a decimal number");
    return 0;
}

static int parse_duration(const struct cli *c, const char *name, const char *value, uint64_t *out)
{
    if (!cli_parse_duration(value, out))
        return bad_value(c, name, value, "a duration such as 500ms, 30s, 15m, 2h or 7d");
    return 0;
}

static int parse_time(const struct cli *c, const char *name, const char *value, uint64_t *out)
{
    if (!cli_parse_time(value, c->now_ms, out))
        return bad_value(c, name, value,
                         "now, YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.mmm]]Z (UTC) or milliseconds");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Arguments: "--name VALUE", "--name=VALUE" and flags, checked against a command's option list
 * ------------------------------------------------------------------------------------------- */

struct opt_word {
    const char *name;
    size_t len;
    bool required;
    bool flag;
};

/* The next word of an option list; false at the end. */
static bool spec_next(const char **cursor, struct opt_word *w)
{
    const char *s = *cursor;
    while (*s == ' ')
        s++;
    if (*s == '\0')
        return false;
    w->required = *s == '*';
    s += w->required;
    w->name = s;
    while (*s != '\0' && *s != ' ' && *s != '!')
        s++;
    w->len = (size_t)(s - w->name);
    w->flag = *s == '!';
    s += w->flag;
    *cursor = s;
    return true;
}

static bool spec_find(const char *spec, const char *name, struct opt_word *out)
{
    struct opt_word w;
    while (spec_next(&spec, &w)) {
        if (w.len == strlen(name) && strncmp(w.name, name, w.len) == 0) {
            *out = w;
            return true;
        }
    }
    return false;
}

static bool command_option(const struct command *cmd, const char *name, struct opt_word *out)
{
    if (spec_find(cmd->options, name, out))
        return true;
    return cmd->group == GROUP_POSTING && spec_find(POSTING_COMMON_OPTIONS, name, out);
}

static const char *arg_get(const struct args *a, const char *name)
{
    for (uint32_t i = 0; i < a->count; i++) {
        if (strcmp(a->v[i].name, name) == 0)
            return a->v[i].value;
    }
    return NULL;
}

static int args_require(const struct cli *c, const struct args *a)
{
    const char *spec = c->cmd->options;
    struct opt_word w;
    while (spec_next(&spec, &w)) {
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)w.len, w.name);
        if (w.required && arg_get(a, name) == NULL)
            return usage_error(c, "--%s is required", name);
    }
    return 0;
}

/* Global options may also follow the command on the command line (not in a batch file). */
static bool global_takes_value(const char *name, bool *known)
{
    *known = strcmp(name, "data") == 0 || strcmp(name, "cluster") == 0 ||
             strcmp(name, "deadline") == 0 || strcmp(name, "at") == 0 || strcmp(name, "json") == 0;
    return strcmp(name, "json") != 0;
}

static int global_set(struct cli *c, const char *name, const char *value)
{
    if (strcmp(name, "data") == 0) {
        c->dir = value;
        c->dir_given = true;
    } else if (strcmp(name, "cluster") == 0) {
        c->cluster = value;
    } else if (strcmp(name, "deadline") == 0) {
        if (parse_duration(c, name, value, &c->deadline_ms) != 0)
            return CLI_EXIT_USAGE;
    } else if (strcmp(name, "at") == 0) {
        if (parse_time(c, name, value, &c->at_ms) != 0)
            return CLI_EXIT_USAGE;
        c->have_at = true;
    } else {
        c->json = true;
    }
    return 0;
}

static int args_add(const struct cli *c, struct args *a, const char *name, const char *value)
{
    if (arg_get(a, name) != NULL)
        return usage_error(c, "--%s given twice", name);
    if (a->count == ARGS_MAX)
        return usage_error(c, "too many options");
    a->v[a->count].name = name;
    a->v[a->count].value = value;
    a->count++;
    return 0;
}

static int args_add_positional(const struct cli *c, struct args *a, const char *tok)
{
    if (a->positional_count >= c->cmd->positional_max)
        return usage_error(c, "unexpected argument '%s'", tok);
    a->positional[a->positional_count++] = tok;
    return 0;
}

/* Parse tok[0..n) (which it may modify: "--a=b" is split in place) into a. Returns 0, a usage
 * exit code, or ARGS_HELP. */
static int args_parse(struct cli *c, char **tok, uint32_t n, struct args *a, bool globals)
{
    memset(a, 0, sizeof(*a));
    for (uint32_t i = 0; i < n; i++) {
        int rc;
        if (strncmp(tok[i], "--", 2) != 0 || tok[i][2] == '\0') {
            if ((rc = args_add_positional(c, a, tok[i])) != 0)
                return rc;
            continue;
        }
        char *name = tok[i] + 2, *value = strchr(name, '=');
        if (value != NULL)
            *value++ = '\0';
        if (strcmp(name, "help") == 0)
            return ARGS_HELP;
        bool known, takes_value = global_takes_value(name, &known);
        struct opt_word w = {0};
        if (known && globals) {
            w.flag = !takes_value;
        } else if (!command_option(c->cmd, name, &w)) {
            return usage_error(c, "unknown option --%s", name);
        }
        if (w.flag && value != NULL)
            return usage_error(c, "--%s takes no value", name);
        if (!w.flag && value == NULL) {
            if (i + 1 >= n)
                return usage_error(c, "--%s needs a value", name);
            value = tok[++i];
        }
        if (known && globals)
            rc = global_set(c, name, value);
        else
            rc = args_add(c, a, name, w.flag ? "" : value);
        if (rc != 0)
            return rc;
    }
    return args_require(c, a);
}

/* ---------------------------------------------------------------------------------------------
 * Building a posting: each option name sets one field
 * ------------------------------------------------------------------------------------------- */

struct field_option {
    const char *name;
    int (*set)(const struct cli *c, const char *name, const char *value, struct tally_posting *p);
};

static int set_id(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    return parse_id(c, name, v, p->id);
}

static int set_program(const struct cli *c, const char *name, const char *v,
                       struct tally_posting *p)
{
    return parse_u32(c, name, v, &p->program);
}

static int set_account(const struct cli *c, const char *name, const char *v,
                       struct tally_posting *p)
{
    return parse_u64_max(c, name, v, UINT64_MAX, &p->account);
}

static int set_account2(const struct cli *c, const char *name, const char *v,
                        struct tally_posting *p)
{
    return parse_u64_max(c, name, v, UINT64_MAX, &p->account2);
}

static int set_amount(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    return parse_u64_max(c, name, v, UINT64_MAX, &p->amount);
}

static int set_value(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    return parse_u64_max(c, name, v, UINT64_MAX, &p->value);
}

static int set_ref(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    return parse_id(c, name, v, p->ref);
}

static int set_pending(const struct cli *c, const char *name, const char *v,
                       struct tally_posting *p)
{
    p->flags |= TALLY_FLAG_PENDING;
    return parse_duration(c, name, v, &p->duration_ms);
}

static int set_timeout(const struct cli *c, const char *name, const char *v,
                       struct tally_posting *p)
{
    return parse_duration(c, name, v, &p->duration_ms);
}

static int set_code(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    return parse_u32(c, name, v, &p->code);
}

static int set_negative(const struct cli *c, const char *name, const char *v,
                        struct tally_posting *p)
{
    (void)c, (void)name, (void)v;
    p->flags |= TALLY_FLAG_NEGATIVE;
    return 0;
}

static int set_linked(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    (void)c, (void)name, (void)v;
    p->flags |= TALLY_FLAG_LINKED;
    return 0;
}

static int set_user_data(const struct cli *c, const char *name, const char *v,
                         struct tally_posting *p)
{
    size_t len = strlen(v);
    if (len > sizeof(p->user_data))
        return bad_value(c, name, v, "at most 32 bytes of text");
    memcpy(p->user_data, v, len);
    return 0;
}

/* ---- program configuration ---- */

static void config_defaults(struct tally_program_config *cfg)
{
    cfg->expiry = TALLY_EXPIRY_NONE;
    cfg->tier_mode = TALLY_TIER_UP_ONLY;
    cfg->window = TALLY_WINDOW_ROLLING;
    cfg->window_months = 12;
    cfg->validity_months = 12;
    cfg->tier_count = 1;
    cfg->hold_timeout_ms = HOLD_TIMEOUT_DEFAULT_MS;
}

/* none | fixed:TIME | days:N | month:N | quarter:N | year:N */
static int set_expiry(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    const char *want = "none, fixed:TIME, days:N, month:N, quarter:N or year:N";
    const char *colon = strchr(v, ':');
    size_t len = colon != NULL ? (size_t)(colon - v) : strlen(v);
    int policy = name_index(expiry_names, COUNT_OF(expiry_names), v, len);
    if (policy < 0 || (policy == TALLY_EXPIRY_NONE) != (colon == NULL))
        return bad_value(c, name, v, want);
    p->config.expiry = (uint8_t)policy;
    if (policy == TALLY_EXPIRY_NONE)
        return 0;
    if (policy == TALLY_EXPIRY_FIXED) {
        if (!cli_parse_time(colon + 1, c->now_ms, &p->config.expiry_fixed_at))
            return bad_value(c, name, v, "fixed:TIME, e.g. fixed:2027-12-31T23:59:59Z");
        return 0;
    }
    uint64_t n;
    if (!cli_parse_u64(colon + 1, &n) || n > UINT32_MAX)
        return bad_value(c, name, v, want);
    p->config.expiry_n = (uint32_t)n;
    return 0;
}

/* T1,T2,...: thresholds of tiers 1.. ; tier_count = thresholds + 1. */
static int set_tiers(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    struct tally_program_config *cfg = &p->config;
    const char *s = v;
    uint32_t n = 0;
    while (*s != '\0') {
        char num[32];
        size_t len = strcspn(s, ",");
        if (n == TALLY_TIERS_MAX - 1 || len == 0 || len >= sizeof(num))
            return bad_value(c, name, v, "1 to 7 thresholds separated by commas, e.g. 1000,5000");
        memcpy(num, s, len);
        num[len] = '\0';
        if (!cli_parse_u64(num, &cfg->thresholds[n]))
            return bad_value(c, name, v, "whole numbers separated by commas, e.g. 1000,5000");
        n++;
        s += len + (s[len] == ',');
    }
    cfg->tier_count = (uint8_t)(n + 1);
    return 0;
}

static int set_tier_mode(const struct cli *c, const char *name, const char *v,
                         struct tally_posting *p)
{
    int mode = name_index(tier_mode_names, COUNT_OF(tier_mode_names), v, strlen(v));
    if (mode < 0)
        return bad_value(c, name, v, "up-only, down-step or down-earned");
    p->config.tier_mode = (uint8_t)mode;
    return 0;
}

static int set_window(const struct cli *c, const char *name, const char *v, struct tally_posting *p)
{
    uint64_t n;
    if (strcmp(v, "calendar") == 0) {
        p->config.window = TALLY_WINDOW_CALENDAR;
        p->config.window_months = 0;
    } else if (strncmp(v, "rolling:", 8) == 0 && cli_parse_u64(v + 8, &n) && n <= UINT8_MAX) {
        p->config.window = TALLY_WINDOW_ROLLING;
        p->config.window_months = (uint8_t)n;
    } else {
        return bad_value(c, name, v, "rolling:N (months, 1..12) or calendar");
    }
    return 0;
}

static int set_validity(const struct cli *c, const char *name, const char *v,
                        struct tally_posting *p)
{
    uint64_t n = 0;
    int rc = parse_u64_max(c, name, v, UINT8_MAX, &n);
    p->config.validity_months = (uint8_t)n;
    return rc;
}

static int set_hold_timeout(const struct cli *c, const char *name, const char *v,
                            struct tally_posting *p)
{
    return parse_duration(c, name, v, &p->config.hold_timeout_ms);
}

static int set_tz_offset(const struct cli *c, const char *name, const char *v,
                         struct tally_posting *p)
{
    return parse_i32(c, name, v, &p->config.tz_offset_min);
}

static int set_allow_negative(const struct cli *c, const char *name, const char *v,
                              struct tally_posting *p)
{
    (void)c, (void)name, (void)v;
    p->config.flags |= TALLY_PROGRAM_ALLOW_NEGATIVE;
    return 0;
}

static const struct field_option field_options[] = {
    {"id", set_id},
    {"program", set_program},
    {"member", set_account},
    {"from", set_account},
    {"to", set_account2},
    {"points", set_amount},
    {"value", set_value},
    {"ref", set_ref},
    {"pending", set_pending},
    {"timeout", set_timeout},
    {"code", set_code},
    {"reason", set_code},
    {"negative", set_negative},
    {"linked", set_linked},
    {"ref-data", set_user_data},
    {"expiry", set_expiry},
    {"tiers", set_tiers},
    {"tier-mode", set_tier_mode},
    {"window", set_window},
    {"validity", set_validity},
    {"hold-timeout", set_hold_timeout},
    {"tz-offset", set_tz_offset},
    {"allow-negative", set_allow_negative},
};

/* Fill p from the parsed options of a posting command; without --id, a time-ordered id. */
static int posting_build(struct cli *c, const struct args *a, struct tally_posting *p)
{
    memset(p, 0, sizeof(*p));
    p->kind = c->cmd->kind;
    if (p->kind == TALLY_KIND_PROGRAM)
        config_defaults(&p->config);
    for (uint32_t i = 0; i < a->count; i++) {
        const struct field_option *f = NULL;
        for (size_t k = 0; k < COUNT_OF(field_options) && f == NULL; k++) {
            if (strcmp(field_options[k].name, a->v[i].name) == 0)
                f = &field_options[k];
        }
        if (f == NULL) /* the command table lists an option no field takes: a defect here */
            return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "option --%s has no field", a->v[i].name);
        int rc = f->set(c, a->v[i].name, a->v[i].value, p);
        if (rc != 0)
            return rc;
    }
    if (arg_get(a, "id") == NULL) {
        int rc = ids_next(&c->ids, c->now_ms, p->id);
        if (rc != 0)
            return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "cannot generate an id: %s",
                        tally_strerror(rc));
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Backends: where postings go and where queries are answered
 * ------------------------------------------------------------------------------------------- */

/* Every command reaches the ledger through one of these tables. Queries return 0 or a
 * tally_errors.h code (TALLY_ENOT_FOUND: nothing there), exactly as engine.h and tally.h do;
 * open and apply print their own failure and return an exit code, because what went wrong
 * (a locked directory, an unreachable cluster, an outcome unknown) and what to do next differ
 * between the two. */
struct backend {
    /* Open on first use (write: postings follow). 0, or an exit code. */
    int (*open)(struct cli *c, bool write);
    void (*close)(struct cli *c);
    /* Apply postings[0..n) as one batch; *index_out and *time_out say where and when it was
     * applied (time 0: not known). 0, or an exit code. */
    int (*apply)(struct cli *c, const struct tally_posting *postings, uint32_t n,
                 struct tally_result *results, uint64_t *index_out, uint64_t *time_out);
    int (*program)(struct cli *c, uint32_t program, struct tally_program_config *config,
                   struct tally_program_totals *totals);
    int (*programs)(struct cli *c, uint32_t after, uint32_t *ids, uint32_t max, uint32_t *count);
    int (*account)(struct cli *c, uint32_t program, uint64_t member, struct tally_account *out);
    int (*balance_at)(struct cli *c, uint32_t program, uint64_t member, uint64_t at,
                      struct tally_balance *out);
    int (*history)(struct cli *c, uint32_t program, uint64_t member, uint64_t before_seq,
                   struct tally_entry *out, uint32_t max, uint32_t *count);
    int (*lots)(struct cli *c, uint32_t program, uint64_t member, struct tally_lot *out,
                uint32_t max, uint32_t *count);
    int (*entry)(struct cli *c, uint64_t seq, struct tally_entry *out, struct tally_lot_ref *tail,
                 uint32_t tail_max, uint32_t *tail_count);
    int (*posting)(struct cli *c, const uint8_t id[16], struct tally_posting_outcome *out);
    int (*hold)(struct cli *c, const uint8_t id[16], struct tally_hold_info *out);
    /* The effective time of the newest applied batch. */
    int (*last_time)(struct cli *c, uint64_t *out);
    /* The `status` command: prints, returns the exit code. */
    int (*status)(struct cli *c);
};

/* Open the ledger on first use, so a usage error never creates a directory or a connection. */
static int cli_open(struct cli *c, bool write)
{
    return c->be->open(c, write);
}

static int apply_batch(struct cli *c, const struct tally_posting *postings, uint32_t n,
                       struct tally_result *results, uint64_t *index_out, uint64_t *time_out)
{
    return c->be->apply(c, postings, n, results, index_out, time_out);
}

/* ---------------------------------------------------------------------------------------------
 * The embedded backend: the engine in this process
 * ------------------------------------------------------------------------------------------- */

/* mkdir -p: every missing component of dir. */
static int make_dirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return -1;
        path[i] = saved;
    }
    return 0;
}

/* Writers serialise on an exclusive flock of the directory itself (no file is added to it):
 * the engine keeps its meta record in memory between batches, so two processes applying to one
 * directory at once would each number entries from a stale copy. The lock is released when the
 * process exits. tallyd does not take it: embedded mode is for a directory no server is using. */
static int lock_dir(const struct cli *c)
{
    int fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail(c, CLI_EXIT_DATA, "DATA", "cannot open %s: %s", c->dir, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "tally: waiting for another tally writing %s\n", c->dir);
        if (flock(fd, LOCK_EX) != 0)
            return fail(c, CLI_EXIT_DATA, "DATA", "cannot lock %s: %s", c->dir, strerror(errno));
    }
    return 0; /* fd stays open: it holds the lock until exit */
}

/* Postings (write) create DIR if missing and lock it; queries open read-only and never create
 * anything. */
static int embedded_open(struct cli *c, bool write)
{
    struct stat st;
    if (c->engine != NULL)
        return 0;
    if (c->dir == NULL || c->dir[0] == '\0')
        return usage_error(c, "--data DIR or --cluster ADDR,... is required (or set TALLY_DATA "
                              "or TALLY_CLUSTER)");
    if (!write && stat(c->dir, &st) != 0)
        return fail(c, CLI_EXIT_DATA, "DATA", "no ledger in %s: %s (postings create one)", c->dir,
                    strerror(errno));
    if (write && make_dirs(c->dir) != 0)
        return fail(c, CLI_EXIT_DATA, "DATA", "cannot create %s: %s", c->dir, strerror(errno));
    int rc = write ? lock_dir(c) : 0;
    if (rc != 0)
        return rc;
    struct engine_options opts;
    engine_options_default(&opts);
    opts.read_only = !write;
    if ((rc = engine_open(&c->engine, c->dir, &opts)) != 0) {
        c->engine = NULL;
        return fail(c, CLI_EXIT_DATA, "DATA", "cannot open the ledger in %s: %s%s", c->dir,
                    tally_strerror(rc), write ? "" : " (postings create a ledger)");
    }
    return 0;
}

/* Apply postings[0..n) as the next batch. *time_out = the batch's effective time. */
static int embedded_apply(struct cli *c, const struct tally_posting *postings, uint32_t n,
                          struct tally_result *results, uint64_t *index_out, uint64_t *time_out)
{
    struct engine_status st;
    engine_status(c->engine, &st);
    uint64_t t = c->have_at ? c->at_ms : c->now_ms;
    if (t < st.last_timestamp) {
        char was[32], last[32];
        time_text(t, was);
        time_text(st.last_timestamp, last);
        fprintf(stderr, "tally: note: %s is before the ledger's last batch; applied at %s\n", was,
                last);
        t = st.last_timestamp;
    }
    int rc = engine_apply(c->engine, st.applied_index + 1, t, postings, n, results);
    if (rc < 0)
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "cannot apply the batch: %s",
                    tally_strerror(rc));
    if (rc > 0)
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM",
                    "batch %" PRIu64 " was already applied (another process wrote the ledger?)",
                    st.applied_index + 1);
    *index_out = st.applied_index + 1;
    *time_out = t;
    return 0;
}

static void embedded_close(struct cli *c)
{
    if (c->engine != NULL)
        engine_close(c->engine);
    c->engine = NULL;
}

static int embedded_program(struct cli *c, uint32_t program, struct tally_program_config *config,
                            struct tally_program_totals *totals)
{
    return engine_program(c->engine, program, config, totals);
}

static int embedded_programs(struct cli *c, uint32_t after, uint32_t *ids, uint32_t max,
                             uint32_t *count)
{
    return engine_programs(c->engine, after, ids, max, count);
}

static int embedded_account(struct cli *c, uint32_t program, uint64_t member,
                            struct tally_account *out)
{
    return engine_account(c->engine, program, member, out);
}

static int embedded_balance_at(struct cli *c, uint32_t program, uint64_t member, uint64_t at,
                               struct tally_balance *out)
{
    return engine_balance_at(c->engine, program, member, at, out);
}

static int embedded_history(struct cli *c, uint32_t program, uint64_t member, uint64_t before_seq,
                            struct tally_entry *out, uint32_t max, uint32_t *count)
{
    return engine_history(c->engine, program, member, before_seq, out, max, count);
}

static int embedded_lots(struct cli *c, uint32_t program, uint64_t member, struct tally_lot *out,
                         uint32_t max, uint32_t *count)
{
    return engine_lots(c->engine, program, member, out, max, count);
}

static int embedded_entry(struct cli *c, uint64_t seq, struct tally_entry *out,
                          struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count)
{
    return engine_entry(c->engine, seq, out, tail, tail_max, tail_count);
}

static int embedded_posting(struct cli *c, const uint8_t id[16], struct tally_posting_outcome *out)
{
    struct engine_posting_info info;
    int rc = engine_posting(c->engine, id, &info);
    if (rc == 0)
        *out = (struct tally_posting_outcome){.code = info.code,
                                              .kind = info.kind,
                                              .seq = info.seq,
                                              .entry_count = info.entry_count,
                                              .timestamp = info.timestamp};
    return rc;
}

static int embedded_hold(struct cli *c, const uint8_t id[16], struct tally_hold_info *out)
{
    struct engine_hold_info h;
    int rc = engine_hold(c->engine, id, &h);
    if (rc == 0)
        *out = (struct tally_hold_info){.seq = h.seq,
                                        .program = h.program,
                                        .status = h.status,
                                        .member = h.member,
                                        .amount = h.amount,
                                        .captured = h.captured,
                                        .timeout_at = h.timeout_at,
                                        .resolved_seq = h.resolved_seq};
    return rc;
}

static int embedded_last_time(struct cli *c, uint64_t *out)
{
    struct engine_status st;
    engine_status(c->engine, &st);
    *out = st.last_timestamp;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The cluster backend: libtally
 * ------------------------------------------------------------------------------------------- */

/* Replicas `status` can report: libtally takes at most 16 addresses (client/addr.h). */
#define CLUSTER_REPLICAS_MAX 16u

/* Label of the CLI's sessions in the servers' session lists. */
#define CLUSTER_LABEL "tally-cli"

/* Postings need a session with the leader, so open registers at once and an unreachable or
 * leaderless cluster is reported before anything is sent; queries and `status` defer the
 * session (a read needs none, and `status` must work while there is no leader). */
static int cluster_open(struct cli *c, bool write)
{
    if (c->client != NULL)
        return 0;
    struct tally_client_options o;
    memset(&o, 0, sizeof(o));
    o.addresses = c->cluster;
    o.timeout_ms = c->deadline_ms;
    o.label = CLUSTER_LABEL;
    o.defer_register = !write;
    int rc = tally_client_open(&c->client, &o);
    if (rc == 0)
        return 0;
    c->client = NULL;
    if (rc == TALLY_ECONFIG)
        return usage_error(
            c, "--cluster '%s': expected host:port[,host:port...] (IPv6: [::1]:7401)", c->cluster);
    if (rc == TALLY_ECLOSED)
        return fail(c, CLI_EXIT_DATA, "CLUSTER",
                    "cannot reach the cluster at %s: no replica accepted a connection (is tallyd "
                    "running there? are the addresses right?)",
                    c->cluster);
    if (rc == TALLY_ETIMEOUT)
        return fail(c, CLI_EXIT_DATA, "CLUSTER",
                    "the cluster at %s has no leader right now: try again in a moment (tally "
                    "--cluster %s status shows every replica)",
                    c->cluster, c->cluster);
    return fail(c, CLI_EXIT_DATA, "CLUSTER", "cannot open a session with the cluster at %s: %s",
                c->cluster, tally_strerror(rc));
}

static void cluster_close(struct cli *c)
{
    tally_client_close(c->client);
    c->client = NULL;
}

/* A POST that ended without an answer: nothing can be said about its postings until they are
 * asked about by id. Every id is named (on stderr, and in the JSON object), since lines of a
 * batch without --id got ids generated for this run only, and resending the file would apply
 * those lines again under new ids. */
static int cluster_post_unknown(struct cli *c, int rc, const struct tally_posting *postings,
                                uint32_t n)
{
    char id[33];
    cli_format_id(postings[0].id, id);
    if (rc == TALLY_ETOO_LARGE)
        return fail(c, CLI_EXIT_USAGE, "TOO_LARGE",
                    "the cluster takes fewer postings per batch than these %" PRIu32
                    ": split the batch (nothing was applied)",
                    n);
    char msg[512];
    if (n == 1)
        snprintf(msg, sizeof(msg),
                 "no answer from the cluster (%s): posting %s may or may not have been applied. "
                 "Ask with: tally --cluster %s posting --id %s, or run the same command again "
                 "with --id %s (a posting id takes effect once)",
                 tally_strerror(rc), id, c->cluster, id, id);
    else
        snprintf(msg, sizeof(msg),
                 "no answer from the cluster (%s): the %" PRIu32 " postings may or may not have "
                 "been applied. Ask about each id below with: tally --cluster %s posting --id ID "
                 "(posting the file again applies its lines without --id a second time)",
                 tally_strerror(rc), n, c->cluster);
    fprintf(stderr, "tally: %s\n", msg);
    cJSON *ids = c->json ? cJSON_CreateArray() : NULL;
    for (uint32_t i = 0; i < n && n > 1; i++) {
        cli_format_id(postings[i].id, id);
        if (ids != NULL)
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        else
            fprintf(stderr, "  %s\n", id);
    }
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "UNKNOWN_OUTCOME");
        cJSON_AddStringToObject(o, "message", msg);
        if (n == 1)
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        cJSON_AddItemToObject(o, "ids", ids);
        cli_print_json(o);
    }
    return CLI_EXIT_DATA;
}

static int cluster_apply(struct cli *c, const struct tally_posting *postings, uint32_t n,
                         struct tally_result *results, uint64_t *index_out, uint64_t *time_out)
{
    if (n == 0)
        return usage_error(c, "nothing to post: a cluster takes batches of 1 to %u postings",
                           TALLY_BATCH_MAX);
    if (c->have_at && c->at_ms > TALLY_WIRE_AT_MAX)
        return usage_error(c, "--at is past 9999-12-31T23:59:59.999Z, the latest time a cluster "
                              "takes");
    int rc = c->have_at ? tally_client_post_at(c->client, c->at_ms, postings, n, results, 0)
                        : tally_client_post(c->client, postings, n, results, 0);
    if (rc == TALLY_ECONFIG && c->have_at)
        return fail(c, CLI_EXIT_USAGE, "CLOCK_MODE",
                    "--at cannot set a batch's time in this cluster: its leader stamps every "
                    "batch with its own clock (tallyd --clock wall). Leave --at out, or run the "
                    "cluster with --clock client (nothing was applied)");
    if (rc != 0)
        return cluster_post_unknown(c, rc, postings, n);
    *index_out = tally_client_last_index(c->client);
    *time_out = 0;
    /* The reply has no time; the first recorded posting of the batch tells it. */
    for (uint32_t i = 0; i < n && *time_out == 0; i++) {
        uint32_t outcome = results[i].code == TALLY_EXISTS ? results[i].detail : results[i].code;
        struct tally_posting_outcome o;
        if (results[i].code != TALLY_ID_EXISTS_DIFFERENT && tally_result_recorded(outcome) &&
            tally_client_post_outcome(c->client, postings[i].id, &o, 0) == 0)
            *time_out = o.timestamp;
    }
    return 0;
}

static int cluster_program(struct cli *c, uint32_t program, struct tally_program_config *config,
                           struct tally_program_totals *totals)
{
    return tally_client_program(c->client, program, config, totals, NULL);
}

static int cluster_programs(struct cli *c, uint32_t after, uint32_t *ids, uint32_t max,
                            uint32_t *count)
{
    return tally_client_programs(c->client, after, ids, max, count, NULL);
}

static int cluster_account(struct cli *c, uint32_t program, uint64_t member,
                           struct tally_account *out)
{
    return tally_client_account(c->client, program, member, out, NULL);
}

static int cluster_balance_at(struct cli *c, uint32_t program, uint64_t member, uint64_t at,
                              struct tally_balance *out)
{
    return tally_client_balance_at(c->client, program, member, at, out, NULL);
}

static int cluster_history(struct cli *c, uint32_t program, uint64_t member, uint64_t before_seq,
                           struct tally_entry *out, uint32_t max, uint32_t *count)
{
    return tally_client_history(c->client, program, member, before_seq, out, max, count, NULL);
}

static int cluster_lots(struct cli *c, uint32_t program, uint64_t member, struct tally_lot *out,
                        uint32_t max, uint32_t *count)
{
    return tally_client_lots(c->client, program, member, out, max, count, NULL);
}

static int cluster_entry(struct cli *c, uint64_t seq, struct tally_entry *out,
                         struct tally_lot_ref *tail, uint32_t tail_max, uint32_t *tail_count)
{
    return tally_client_entry(c->client, seq, out, tail, tail_max, tail_count, NULL);
}

static int cluster_posting(struct cli *c, const uint8_t id[16], struct tally_posting_outcome *out)
{
    return tally_client_post_outcome(c->client, id, out, 0);
}

static int cluster_hold(struct cli *c, const uint8_t id[16], struct tally_hold_info *out)
{
    return tally_client_hold(c->client, id, out, NULL);
}

/* The leader's view, or the newest any replica has when there is no leader. */
static int cluster_last_time(struct cli *c, uint64_t *out)
{
    struct tally_replica_status st[CLUSTER_REPLICAS_MAX];
    uint32_t n = 0;
    int rc = tally_client_status(c->client, st, CLUSTER_REPLICAS_MAX, &n, 0);
    *out = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (st[i].error != 0)
            continue;
        if (st[i].role == TALLY_WIRE_ROLE_LEADER) {
            *out = st[i].last_timestamp;
            break;
        }
        *out = st[i].last_timestamp > *out ? st[i].last_timestamp : *out;
    }
    return rc;
}

/* The time queries evaluate windows at: --at, else now. */
static uint64_t cli_time(const struct cli *c)
{
    return c->have_at ? c->at_ms : c->now_ms;
}

/* ---------------------------------------------------------------------------------------------
 * JSON pieces
 * ------------------------------------------------------------------------------------------- */

static void json_add_id(cJSON *o, const char *name, const uint8_t id[16])
{
    char hex[33];
    cli_format_id(id, hex);
    cJSON_AddStringToObject(o, name, hex);
}

static void json_add_account(cJSON *o, const char *name, uint64_t id)
{
    char buf[24];
    account_name(id, buf);
    cJSON_AddStringToObject(o, name, buf);
}

/* Window QV at t: the qualifying value that decides the tier (docs/LEDGER.md, Tiers). */
static uint64_t window_qv(const struct tally_account *acc, const struct tally_program_config *cfg,
                          uint64_t t)
{
    uint32_t m = calendar_month_of(t, cfg->tz_offset_min), first;
    if (cfg->window == TALLY_WINDOW_CALENDAR)
        first = m - m % 12;
    else
        first = cfg->window_months > m ? 0 : m + 1 - cfg->window_months;
    uint64_t sum = 0;
    for (uint32_t k = first; k <= m; k++) {
        if (k <= acc->qv_month && k + TALLY_QV_MONTHS > acc->qv_month)
            sum += acc->qv[k % TALLY_QV_MONTHS];
    }
    return sum;
}

/* available + pending + held: the member's points. */
static int64_t points_of(int64_t available, uint64_t pending, uint64_t held)
{
    return available + (int64_t)pending + (int64_t)held;
}

/* Buckets and tier of a member, or NULL if it cannot be read. */
static cJSON *account_brief_json(struct cli *c, uint32_t program, uint64_t member)
{
    struct tally_account acc;
    if (c->be->account(c, program, member, &acc) != 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "member", member);
    cli_json_add_i64(o, "available", acc.available);
    cli_json_add_u64(o, "pending", acc.pending);
    cli_json_add_u64(o, "held", acc.held);
    cli_json_add_u64(o, "tier", acc.tier);
    cli_json_add_time(o, "tier_valid_until", acc.tier_valid_until);
    return o;
}

static void entry_note(const struct tally_entry *e, char *buf, size_t n)
{
    char a[32], b[32];
    time_text(e->time_a, a);
    time_text(e->time_b, b);
    buf[0] = '\0';
    switch (e->kind) {
    case TALLY_KIND_ACCRUE:
        snprintf(buf, n, "lot %" PRIu64 ", expires %s%s%s", e->lot_id, a,
                 e->flags & TALLY_ENTRY_PENDING ? ", pending until " : "",
                 e->flags & TALLY_ENTRY_PENDING ? b : "");
        break;
    case TALLY_KIND_ADJUST:
        snprintf(buf, n, "reason %" PRIu32, e->code);
        break;
    case TALLY_KIND_HOLD:
        snprintf(buf, n, "times out %s", a);
        break;
    case TALLY_KIND_TIER_CHANGE:
        snprintf(buf, n, "tier %u -> %u, %s, valid until %s", e->tier_from, e->tier_to,
                 NAME_OF(tier_reason_names, e->code), a);
        break;
    default:
        break;
    }
}

/* One entry as a row of a history table: the same keys for every kind. */
static cJSON *entry_row_json(const struct tally_entry *e)
{
    char note[160];
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "seq", e->seq);
    cli_json_add_time(o, "time", e->timestamp);
    cJSON_AddStringToObject(o, "kind", kind_name(e->kind));
    cli_json_add_u64(o, "amount", e->amount);
    json_add_account(o, "debit", e->debit);
    json_add_account(o, "credit", e->credit);
    cli_json_add_u64(o, "value", e->value);
    cli_json_add_u64(o, "ref_seq", e->ref_seq);
    cJSON_AddBoolToObject(o, "auto", (e->flags & TALLY_ENTRY_AUTO) != 0);
    entry_note(e, note, sizeof(note));
    cJSON_AddStringToObject(o, "note", note);
    return o;
}

/* Entries first..last (at most LIST_ENTRIES_MAX of them) as an array of rows. */
static int entries_json(struct cli *c, uint64_t first, uint64_t last, cJSON *array)
{
    for (uint64_t seq = first; seq <= last && seq - first < LIST_ENTRIES_MAX; seq++) {
        struct tally_entry e;
        uint32_t tail_count;
        int rc = c->be->entry(c, seq, &e, NULL, 0, &tail_count);
        if (rc != 0)
            return rc;
        cJSON_AddItemToArray(array, entry_row_json(&e));
    }
    return 0;
}

static void config_expiry_text(const struct tally_program_config *cfg, char buf[64])
{
    char t[32];
    if (cfg->expiry == TALLY_EXPIRY_NONE) {
        snprintf(buf, 64, "none");
    } else if (cfg->expiry == TALLY_EXPIRY_FIXED) {
        time_text(cfg->expiry_fixed_at, t);
        snprintf(buf, 64, "fixed:%s", t);
    } else {
        snprintf(buf, 64, "%s:%" PRIu32, NAME_OF(expiry_names, cfg->expiry), cfg->expiry_n);
    }
}

static cJSON *config_json(const struct tally_program_config *cfg)
{
    char buf[64];
    cJSON *o = cJSON_CreateObject();
    config_expiry_text(cfg, buf);
    cJSON_AddStringToObject(o, "expiry", buf);
    cli_json_add_u64(o, "tier_count", cfg->tier_count);
    cJSON *th = cJSON_AddArrayToObject(o, "thresholds");
    for (uint32_t k = 0; k + 1 < cfg->tier_count && k + 1 < TALLY_TIERS_MAX; k++)
        cJSON_AddItemToArray(th, cJSON_CreateNumber((double)cfg->thresholds[k]));
    cJSON_AddStringToObject(o, "tier_mode", NAME_OF(tier_mode_names, cfg->tier_mode));
    if (cfg->window == TALLY_WINDOW_CALENDAR)
        snprintf(buf, sizeof(buf), "calendar");
    else
        snprintf(buf, sizeof(buf), "rolling:%u", cfg->window_months);
    cJSON_AddStringToObject(o, "window", buf);
    cli_json_add_u64(o, "validity_months", cfg->validity_months);
    cli_json_add_u64(o, "hold_timeout_ms", cfg->hold_timeout_ms);
    cli_json_add_i64(o, "tz_offset_min", cfg->tz_offset_min);
    cJSON_AddBoolToObject(o, "allow_negative", (cfg->flags & TALLY_PROGRAM_ALLOW_NEGATIVE) != 0);
    return o;
}

static cJSON *totals_json(const struct tally_program_totals *t)
{
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "members", t->members);
    cli_json_add_u64(o, "issued", t->issued);
    cli_json_add_u64(o, "redeemed", t->redeemed);
    cli_json_add_u64(o, "expired", t->expired);
    cli_json_add_i64(o, "adjusted", t->adjusted);
    cli_json_add_i64(o, "outstanding", t->outstanding);
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * Text output: a generic rendering of the JSON object
 * ------------------------------------------------------------------------------------------- */

static void text_scalar(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.0f", v->valuedouble);
    } else if (cJSON_IsString(v)) {
        snprintf(buf, n, "%s", v->valuestring);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    } else if (cJSON_IsArray(v)) { /* an array of scalars: comma separated */
        size_t at = 0;
        buf[0] = '\0';
        for (const cJSON *it = v->child; it != NULL && at < n; it = it->next) {
            char item[64];
            text_scalar(it, item, sizeof(item));
            at += (size_t)snprintf(buf + at, n - at, "%s%s", at ? "," : "", item);
        }
        if (v->child == NULL)
            snprintf(buf, n, "(none)");
    } else {
        snprintf(buf, n, "-");
    }
}

static const char *json_text(const cJSON *o, const char *name, char *buf, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (v == NULL)
        return NULL;
    text_scalar(v, buf, n);
    return buf;
}

#define TABLE_COLUMNS_MAX 16u
#define CELL_BYTES        160u

/* An array of objects as a table whose columns are the keys of the first row. */
static void text_table(const cJSON *array, int indent)
{
    const char *names[TABLE_COLUMNS_MAX];
    int width[TABLE_COLUMNS_MAX];
    bool numeric[TABLE_COLUMNS_MAX];
    uint32_t cols = 0;
    char cell[CELL_BYTES];
    for (const cJSON *k = array->child->child; k != NULL && cols < TABLE_COLUMNS_MAX; k = k->next) {
        names[cols] = k->string;
        numeric[cols] = cJSON_IsNumber(k);
        width[cols++] = (int)strlen(k->string);
    }
    for (const cJSON *row = array->child; row != NULL; row = row->next) {
        for (uint32_t i = 0; i < cols; i++) {
            const char *s = json_text(row, names[i], cell, sizeof(cell));
            int len = s != NULL ? (int)strlen(s) : 0;
            width[i] = len > width[i] ? len : width[i];
        }
    }
    if (cols > 0 && !numeric[cols - 1])
        width[cols - 1] = 0; /* no padding after the last column */
    printf("%*s", indent, "");
    for (uint32_t i = 0; i < cols; i++)
        printf("%*s%s", numeric[i] ? width[i] : -width[i], names[i], i + 1 < cols ? "  " : "\n");
    for (const cJSON *row = array->child; row != NULL; row = row->next) {
        printf("%*s", indent, "");
        for (uint32_t i = 0; i < cols; i++) {
            const char *s = json_text(row, names[i], cell, sizeof(cell));
            printf("%*s%s", numeric[i] ? width[i] : -width[i], s ? s : "",
                   i + 1 < cols ? "  " : "\n");
        }
    }
}

static void text_print(const cJSON *o, int indent)
{
    char buf[512];
    for (const cJSON *it = o->child; it != NULL; it = it->next) {
        if (cJSON_IsObject(it)) {
            printf("%*s%s:\n", indent, "", it->string);
            text_print(it, indent + 2);
        } else if (cJSON_IsArray(it) && it->child != NULL && cJSON_IsObject(it->child)) {
            printf("%*s%s:\n", indent, "", it->string);
            text_table(it, indent + 2);
        } else {
            text_scalar(it, buf, sizeof(buf));
            printf("%*s%-18s %s\n", indent, "", it->string, buf);
        }
    }
}

/* Print a command's object (JSON or text) and free it. */
static int output(const struct cli *c, cJSON *doc)
{
    if (doc == NULL)
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "out of memory");
    if (c->json) {
        cli_print_json(doc);
    } else {
        text_print(doc, 0);
        cJSON_Delete(doc);
    }
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Posting results: what happened, and what to do next
 * ------------------------------------------------------------------------------------------- */

/* Hints that need no lookup. */
static const char *hint_static(uint32_t code)
{
    switch (code) {
    case TALLY_ID_EXISTS_DIFFERENT:
        return "this --id was used by a different posting: use a new --id";
    case TALLY_ACCOUNT_CLOSED:
        return "the account is closed: it takes no more postings";
    case TALLY_REF_NOT_FOUND:
        return "no posting has the --ref id: check it with tally posting --id ID";
    case TALLY_REF_FAILED:
        return "the --ref posting was rejected, so there is nothing to act on";
    case TALLY_REF_WRONG_KIND:
        return "--ref names a posting of the wrong kind (see tally posting --id ID)";
    case TALLY_REF_ACCOUNT_MISMATCH:
        return "--ref belongs to another member: check --member";
    case TALLY_NOT_PENDING:
        return "the accrual is not pending any more: use reverse to take points back";
    case TALLY_REF_PENDING:
        return "the accrual is still pending: use cancel instead";
    case TALLY_EXCEEDS_ORIGINAL:
        return "reverse fewer points, or leave out --points to reverse all that remains";
    case TALLY_LOTS_LIMIT:
        return "split it into smaller postings";
    case TALLY_CONFIG_INVALID:
        return "check the ranges: --tiers increasing, --window rolling:1..12, --validity "
               "1..120, --expiry days:1..3660 or periods 0..120, --tz-offset -840..840";
    case TALLY_DURATION_INVALID:
        return "durations run from 1ms to ten years";
    case TALLY_LINKED_CHAIN_OPEN:
        return "the last posting of a --linked chain must not carry --linked";
    default:
        return NULL;
    }
}

/* Hints that look something up: the available points, the hold, the missing account. */
static void hint_lookup(struct cli *c, const struct tally_posting *p, uint32_t code, cJSON *o,
                        char *buf, size_t n)
{
    struct tally_account acc;
    struct tally_hold_info h;
    if (code == TALLY_INSUFFICIENT_POINTS && c->be->account(c, p->program, p->account, &acc) == 0) {
        snprintf(buf, n, "available is %" PRId64, acc.available);
        cli_json_add_i64(o, "available", acc.available);
    } else if ((code == TALLY_EXCEEDS_HOLD || code == TALLY_HOLD_NOT_ACTIVE) &&
               c->be->hold(c, p->ref, &h) == 0) {
        snprintf(buf, n, "the hold is %s with %" PRIu64 " points",
                 NAME_OF(hold_status_names, h.status), h.amount);
    } else if (code == TALLY_ACCOUNT_HAS_HOLDS &&
               c->be->account(c, p->program, p->account, &acc) == 0) {
        snprintf(buf, n, "%" PRIu32 " active holds: capture or release them first",
                 acc.holds_active);
    } else if (code == TALLY_ACCOUNT_EXISTS) {
        snprintf(buf, n, "already open: see tally account --program %" PRIu32 " --member %" PRIu64,
                 p->program, p->account);
    } else if (code == TALLY_PROGRAM_NOT_FOUND) {
        snprintf(buf, n, "create it first: tally program create --program %" PRIu32, p->program);
    } else if (code == TALLY_ACCOUNT_NOT_FOUND) {
        uint64_t m = p->account;
        if (p->kind == TALLY_KIND_TRANSFER && c->be->account(c, p->program, p->account, &acc) == 0)
            m = p->account2;
        snprintf(buf, n, "open it first: tally open --program %" PRIu32 " --member %" PRIu64,
                 p->program, m);
    }
}

static void add_hint(struct cli *c, const struct tally_posting *p, uint32_t code, cJSON *o)
{
    char buf[256] = "";
    const char *s = hint_static(code);
    if (s == NULL && p->kind == TALLY_KIND_PROGRAM && code == TALLY_PROGRAM_EXISTS)
        snprintf(buf, sizeof(buf), "see it with: tally program show --program %" PRIu32,
                 p->program);
    else if (s == NULL && p->kind != TALLY_KIND_PROGRAM)
        hint_lookup(c, p, code, o, buf, sizeof(buf));
    if (s == NULL && buf[0] != '\0')
        s = buf;
    if (s != NULL)
        cJSON_AddStringToObject(o, "hint", s);
}

/* The outcome that counts: for EXISTS, the original result. */
static uint32_t result_outcome(const struct tally_result *r)
{
    return r->code == TALLY_EXISTS ? r->detail : r->code;
}

static int result_exit(const struct tally_result *r)
{
    return result_outcome(r) == TALLY_OK ? CLI_EXIT_OK : CLI_EXIT_REJECTED;
}

static cJSON *result_json(struct cli *c, const struct tally_posting *p,
                          const struct tally_result *r, bool with_accounts)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", kind_name(p->kind));
    json_add_id(o, "id", p->id);
    cJSON_AddStringToObject(o, "result", result_name(r->code));
    cJSON_AddStringToObject(o, "message", tally_result_str(r->code));
    cli_json_add_u64(o, "seq", r->seq);
    if (r->code == TALLY_EXISTS) {
        cJSON_AddStringToObject(o, "detail", result_name(r->detail));
        cJSON_AddStringToObject(o, "detail_message", tally_result_str(r->detail));
    }
    uint32_t outcome = result_outcome(r);
    if (outcome != TALLY_OK) {
        add_hint(c, p, outcome, o);
    } else if (with_accounts && p->kind != TALLY_KIND_PROGRAM) {
        cJSON *acc = account_brief_json(c, p->program, p->account);
        if (acc != NULL)
            cJSON_AddItemToObject(o, "account", acc);
        if (p->kind == TALLY_KIND_TRANSFER &&
            (acc = account_brief_json(c, p->program, p->account2)) != NULL)
            cJSON_AddItemToObject(o, "account2", acc);
    }
    return o;
}

static void text_account_brief(const cJSON *o, const char *name)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name);
    char m[32], av[32], pe[32], he[32], ti[32], until[32];
    if (a == NULL)
        return;
    printf("  member %s: available %s, pending %s, held %s; tier %s", json_text(a, "member", m, 32),
           json_text(a, "available", av, 32), json_text(a, "pending", pe, 32),
           json_text(a, "held", he, 32), json_text(a, "tier", ti, 32));
    json_text(a, "tier_valid_until", until, 32);
    if (strcmp(until, "never") != 0)
        printf(" until %s", until);
    putchar('\n');
}

static void text_posting(const cJSON *o)
{
    char result[64], kind[32], id[40], msg[128], seq[32], detail[64], hint[256];
    json_text(o, "result", result, sizeof(result));
    printf("%-8s %-9s id %s", result, json_text(o, "kind", kind, sizeof(kind)),
           json_text(o, "id", id, sizeof(id)));
    if (strcmp(json_text(o, "seq", seq, sizeof(seq)), "0") != 0)
        printf("  seq %s", seq);
    printf(": %s\n", json_text(o, "message", msg, sizeof(msg)));
    if (json_text(o, "detail", detail, sizeof(detail)) != NULL)
        printf("  original result: %s (%s)\n", detail,
               json_text(o, "detail_message", msg, sizeof(msg)));
    if (json_text(o, "hint", hint, sizeof(hint)) != NULL)
        printf("  %s\n", hint);
    text_account_brief(o, "account");
    text_account_brief(o, "account2");
}

/* ---------------------------------------------------------------------------------------------
 * Postings, tick and batch
 * ------------------------------------------------------------------------------------------- */

static int run_posting(struct cli *c, const struct args *a)
{
    struct tally_posting p;
    struct tally_result r;
    uint64_t index, t;
    int rc = posting_build(c, a, &p);
    if (rc == 0)
        rc = cli_open(c, true);
    if (rc == 0)
        rc = apply_batch(c, &p, 1, &r, &index, &t);
    if (rc != 0)
        return rc;
    cJSON *o = result_json(c, &p, &r, true);
    cli_json_add_u64(o, "index", index);
    cli_json_add_time(o, "time", t);
    if (c->json) {
        cli_print_json(o);
    } else {
        text_posting(o);
        cJSON_Delete(o);
    }
    return result_exit(&r);
}

static int run_tick(struct cli *c, const struct args *a)
{
    (void)a;
    struct engine_status before, after;
    uint64_t index, t;
    if (c->cluster != NULL)
        return usage_error(c, "tick needs --data DIR: in a cluster the leader stamps and applies "
                              "batches itself, and time-driven work happens with them");
    int rc = cli_open(c, true);
    if (rc != 0)
        return rc;
    engine_status(c->engine, &before);
    struct tally_posting none[1];
    struct tally_result none_result[1];
    if ((rc = apply_batch(c, none, 0, none_result, &index, &t)) != 0)
        return rc;
    engine_status(c->engine, &after);
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "index", index);
    cli_json_add_time(o, "time", t);
    cli_json_add_u64(o, "new_entries", after.entries - before.entries);
    cJSON *list = cJSON_AddArrayToObject(o, "entries");
    if ((rc = entries_json(c, before.entries + 1, after.entries, list)) != 0) {
        cJSON_Delete(o);
        return query_failed(c, rc, "entries");
    }
    return output(c, o);
}

/* Split a batch line into words: blanks separate, "double quotes" group (\" inside), # starts a
 * comment. Returns the number of words, or -1 if a quote is not closed. */
static int line_split(char *s, char **tok, uint32_t max)
{
    uint32_t n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (*s == '\0' || *s == '#')
            return (int)n;
        if (n == max)
            return (int)n + 1; /* too many words: the caller reports it */
        char *out = s;
        tok[n++] = out;
        bool quoted = false;
        while (*s != '\0' && (quoted || (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n'))) {
            if (*s == '"') {
                quoted = !quoted;
                s++;
            } else {
                if (quoted && *s == '\\' && s[1] == '"')
                    s++;
                *out++ = *s++;
            }
        }
        if (quoted)
            return -1;
        char separator = *s;
        *out = '\0'; /* may overwrite the separator itself: it was saved */
        if (separator != '\0')
            s++;
    }
}

/* One line of a batch file into *p. Returns 0, 1 for a blank line, or a usage exit code. */
static int batch_line(struct cli *c, char *line, struct tally_posting *p)
{
    char *tok[LINE_TOKENS_MAX];
    const struct command *batch_cmd = c->cmd;
    int n = line_split(line, tok, LINE_TOKENS_MAX);
    if (n < 0)
        return usage_error(c, "unclosed quote");
    if (n == 0)
        return 1;
    if ((uint32_t)n > LINE_TOKENS_MAX)
        return usage_error(c, "too many words");
    uint32_t used;
    const struct command *cmd = command_find(tok, (uint32_t)n, &used);
    if (cmd == NULL || cmd->group != GROUP_POSTING)
        return usage_error(c, "'%s' is not a posting command (see tally --help)", tok[0]);
    struct args a;
    c->cmd = cmd;
    int rc = args_parse(c, tok + used, (uint32_t)n - used, &a, false);
    if (rc == ARGS_HELP)
        rc = usage_error(c, "--help is not allowed in a batch file");
    if (rc == 0)
        rc = posting_build(c, &a, p);
    c->cmd = batch_cmd;
    return rc;
}

/* Read every posting of the file into postings; *count = how many. */
static int batch_read(struct cli *c, FILE *f, struct tally_posting *postings, uint32_t *count)
{
    char line[LINE_BYTES];
    *count = 0;
    c->line = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        c->line++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n')
            return usage_error(c, "line longer than %u bytes", LINE_BYTES - 2);
        if (*count == TALLY_BATCH_MAX)
            return usage_error(c, "more than %u postings: split the file", TALLY_BATCH_MAX);
        int rc = batch_line(c, line, &postings[*count]);
        if (rc == 0)
            (*count)++;
        else if (rc != 1)
            return rc;
    }
    c->line = 0;
    if (ferror(f))
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "cannot read the batch file: %s",
                    strerror(errno));
    return 0;
}

static int batch_print(struct cli *c, const struct tally_posting *postings,
                       const struct tally_result *results, uint32_t n, uint64_t index, uint64_t t)
{
    uint32_t rejected = 0;
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "index", index);
    cli_json_add_time(o, "time", t);
    cli_json_add_u64(o, "count", n);
    cJSON *list = cJSON_AddArrayToObject(o, "results");
    for (uint32_t i = 0; i < n; i++) {
        rejected += result_exit(&results[i]) != CLI_EXIT_OK;
        cJSON *r = result_json(c, &postings[i], &results[i], false);
        if (!c->json)
            text_posting(r);
        cJSON_AddItemToArray(list, r);
    }
    cli_json_add_u64(o, "ok", n - rejected);
    cli_json_add_u64(o, "rejected", rejected);
    if (c->json) {
        cli_print_json(o);
    } else {
        char when[32];
        time_text(t, when);
        printf("batch %" PRIu64 " at %s: %" PRIu32 " postings, %" PRIu32 " applied, %" PRIu32
               " rejected\n",
               index, when, n, n - rejected, rejected);
        cJSON_Delete(o);
    }
    return rejected ? CLI_EXIT_REJECTED : CLI_EXIT_OK;
}

static int run_batch(struct cli *c, const struct args *a)
{
    if (a->positional_count != 1)
        return usage_error(c, "name one FILE (or - for standard input)");
    const char *path = a->positional[0];
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL)
        return usage_error(c, "cannot read %s: %s", path, strerror(errno));
    struct tally_posting *postings = calloc(TALLY_BATCH_MAX, sizeof(*postings));
    struct tally_result *results = calloc(TALLY_BATCH_MAX, sizeof(*results));
    uint32_t n = 0;
    uint64_t index, t;
    int rc = postings && results ? 0 : fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "out of memory");
    if (rc == 0)
        rc = batch_read(c, f, postings, &n);
    if (f != stdin)
        fclose(f);
    if (rc == 0)
        rc = cli_open(c, true);
    if (rc == 0)
        rc = apply_batch(c, postings, n, results, &index, &t);
    if (rc == 0)
        rc = batch_print(c, postings, results, n, index, t);
    free(postings);
    free(results);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------------------------- */

/* --program P and --member M, then open the ledger. */
static int member_args(struct cli *c, const struct args *a, uint32_t *program, uint64_t *member)
{
    int rc = parse_u32(c, "program", arg_get(a, "program"), program);
    if (rc == 0)
        rc = parse_u64_max(c, "member", arg_get(a, "member"), UINT64_MAX, member);
    if (rc == 0)
        rc = cli_open(c, false);
    return rc;
}

static int account_not_found(const struct cli *c, int rc, uint32_t program, uint64_t member)
{
    char what[160];
    snprintf(what, sizeof(what),
             "no member %" PRIu64 " in program %" PRIu32 " (open it: tally open --program %" PRIu32
             " --member %" PRIu64 ")",
             member, program, program, member);
    return query_failed(c, rc, what);
}

static void account_fields(cJSON *o, const struct tally_account *acc)
{
    cJSON_AddStringToObject(o, "status", NAME_OF(account_status_names, acc->status));
    cli_json_add_i64(o, "available", acc->available);
    cli_json_add_u64(o, "pending", acc->pending);
    cli_json_add_u64(o, "held", acc->held);
    cli_json_add_i64(o, "points", points_of(acc->available, acc->pending, acc->held));
    cli_json_add_u64(o, "earned", acc->earned);
    cli_json_add_u64(o, "redeemed", acc->redeemed);
    cli_json_add_u64(o, "expired", acc->expired);
    cli_json_add_i64(o, "adjusted", acc->adjusted);
    cli_json_add_u64(o, "transferred_in", acc->transferred_in);
    cli_json_add_u64(o, "transferred_out", acc->transferred_out);
    cli_json_add_u64(o, "qv_lifetime", acc->qv_lifetime);
    cli_json_add_u64(o, "holds_active", acc->holds_active);
    cli_json_add_u64(o, "lots_open", acc->lots_open);
    cli_json_add_time(o, "opened_at", acc->opened_at);
    cli_json_add_time(o, "closed_at", acc->closed_at);
    cli_json_add_u64(o, "last_seq", acc->last_seq);
}

static void tier_fields(cJSON *o, const struct tally_account *acc,
                        const struct tally_program_config *cfg, uint64_t t)
{
    cli_json_add_u64(o, "tier", acc->tier);
    cli_json_add_time(o, "tier_valid_until", acc->tier_valid_until);
    cli_json_add_time(o, "qv_window_at", t);
    cli_json_add_u64(o, "qv_window", window_qv(acc, cfg, t));
    if (acc->tier + 1 < cfg->tier_count && acc->tier < TALLY_TIERS_MAX - 1) {
        cli_json_add_u64(o, "next_tier", acc->tier + 1);
        cli_json_add_u64(o, "next_tier_qv", cfg->thresholds[acc->tier]);
    }
}

static int run_account(struct cli *c, const struct args *a)
{
    uint32_t program;
    uint64_t member;
    struct tally_account acc;
    struct tally_program_config cfg;
    struct tally_program_totals totals;
    int rc = member_args(c, a, &program, &member);
    if (rc != 0)
        return rc;
    if ((rc = c->be->account(c, program, member, &acc)) != 0)
        return account_not_found(c, rc, program, member);
    if ((rc = c->be->program(c, program, &cfg, &totals)) != 0)
        return query_failed(c, rc, "program");
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "program", program);
    cli_json_add_u64(o, "member", member);
    account_fields(o, &acc);
    tier_fields(o, &acc, &cfg, cli_time(c));
    return output(c, o);
}

static int run_balance(struct cli *c, const struct args *a)
{
    uint32_t program;
    uint64_t member, as_of = 0;
    const char *as_of_text = arg_get(a, "as-of");
    int rc = as_of_text ? parse_time(c, "as-of", as_of_text, &as_of) : 0;
    if (rc == 0)
        rc = member_args(c, a, &program, &member);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "program", program);
    cli_json_add_u64(o, "member", member);
    if (as_of_text != NULL) {
        struct tally_balance b;
        if ((rc = c->be->balance_at(c, program, member, as_of, &b)) != 0) {
            cJSON_Delete(o);
            return account_not_found(c, rc, program, member);
        }
        cli_json_add_time(o, "as_of", b.as_of);
        cli_json_add_u64(o, "seq", b.seq);
        cli_json_add_i64(o, "available", b.available);
        cli_json_add_u64(o, "pending", b.pending);
        cli_json_add_u64(o, "held", b.held);
        cli_json_add_i64(o, "points", points_of(b.available, b.pending, b.held));
        return output(c, o);
    }
    struct tally_account acc;
    uint64_t last_time = 0; /* 0 (printed as null) if it cannot be asked */
    if ((rc = c->be->account(c, program, member, &acc)) != 0) {
        cJSON_Delete(o);
        return account_not_found(c, rc, program, member);
    }
    (void)c->be->last_time(c, &last_time);
    cli_json_add_time(o, "as_of", last_time);
    cli_json_add_i64(o, "available", acc.available);
    cli_json_add_u64(o, "pending", acc.pending);
    cli_json_add_u64(o, "held", acc.held);
    cli_json_add_i64(o, "points", points_of(acc.available, acc.pending, acc.held));
    cli_json_add_u64(o, "tier", acc.tier);
    cli_json_add_time(o, "tier_valid_until", acc.tier_valid_until);
    return output(c, o);
}

static int run_history(struct cli *c, const struct args *a)
{
    uint32_t program;
    uint64_t member, before = 0, limit = HISTORY_LIMIT_DEFAULT;
    int rc = 0;
    if (arg_get(a, "before") != NULL)
        rc = parse_u64_max(c, "before", arg_get(a, "before"), UINT64_MAX, &before);
    if (rc == 0 && arg_get(a, "limit") != NULL)
        rc = parse_u64_max(c, "limit", arg_get(a, "limit"), HISTORY_LIMIT_MAX, &limit);
    if (rc == 0)
        rc = member_args(c, a, &program, &member);
    if (rc != 0)
        return rc;
    struct tally_entry *entries = calloc(limit ? limit : 1, sizeof(*entries));
    uint32_t count = 0;
    if (entries == NULL)
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "out of memory");
    rc = c->be->history(c, program, member, before, entries, (uint32_t)limit, &count);
    if (rc != 0) {
        free(entries);
        return account_not_found(c, rc, program, member);
    }
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "program", program);
    cli_json_add_u64(o, "member", member);
    cli_json_add_u64(o, "count", count);
    cJSON *list = cJSON_AddArrayToObject(o, "entries");
    for (uint32_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, entry_row_json(&entries[i]));
    if (count == limit && count > 0) /* there may be more: the next page starts before this */
        cli_json_add_u64(o, "next_before", entries[count - 1].seq);
    free(entries);
    return output(c, o);
}

static cJSON *lot_json(const struct tally_lot *l)
{
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "lot_id", l->lot_id);
    cli_json_add_time(o, "earned_at", l->earned_at);
    cli_json_add_time(o, "expires_at", l->expires_at);
    cli_json_add_u64(o, "amount", l->amount);
    cli_json_add_u64(o, "remaining", l->remaining);
    cli_json_add_u64(o, "held", l->held);
    cli_json_add_time(o, "pending_until", l->activate_at);
    cli_json_add_u64(o, "origin_seq", l->origin_seq);
    return o;
}

static int run_lots(struct cli *c, const struct args *a)
{
    uint32_t program, count = 0;
    uint64_t member;
    struct tally_account acc;
    int rc = member_args(c, a, &program, &member);
    if (rc != 0)
        return rc;
    if ((rc = c->be->account(c, program, member, &acc)) != 0)
        return account_not_found(c, rc, program, member);
    /* The account counts its lots; the margin only guards against a miscount. */
    uint32_t max = acc.lots_open < UINT32_MAX - 64 ? acc.lots_open + 64 : UINT32_MAX;
    struct tally_lot *lots = calloc(max, sizeof(*lots));
    if (lots == NULL)
        return fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "out of memory");
    if ((rc = c->be->lots(c, program, member, lots, max, &count)) != 0) {
        free(lots);
        return account_not_found(c, rc, program, member);
    }
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "program", program);
    cli_json_add_u64(o, "member", member);
    cli_json_add_u64(o, "count", count);
    cJSON *list = cJSON_AddArrayToObject(o, "lots");
    for (uint32_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, lot_json(&lots[i]));
    free(lots);
    return output(c, o);
}

/* The lineage of an entry; for a TRANSFER the first half are sources, the rest destinations. */
static cJSON *lineage_json(const struct tally_entry *e, const struct tally_lot_ref *refs,
                           uint32_t n)
{
    cJSON *list = cJSON_CreateArray();
    for (uint32_t i = 0; i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        const char *role = "lot";
        if (e->kind == TALLY_KIND_TRANSFER)
            role = i < n / 2 ? "source" : "destination";
        cJSON_AddStringToObject(r, "role", role);
        cli_json_add_u64(r, "lot_id", refs[i].lot_id);
        cli_json_add_u64(r, "amount", refs[i].amount);
        cli_json_add_time(r, "earned_at", refs[i].earned_at);
        cli_json_add_time(r, "expires_at", refs[i].expires_at);
        cJSON_AddItemToArray(list, r);
    }
    return list;
}

/* user_data as text when it is printable, else as hex. */
static void json_add_user_data(cJSON *o, const uint8_t data[32])
{
    char text[65];
    size_t len = 0;
    bool printable = true;
    for (; len < 32 && data[len] != 0; len++) {
        if (data[len] < 0x20 || data[len] >= 0x7f)
            printable = false;
    }
    for (size_t i = len; i < 32; i++) {
        if (data[i] != 0)
            printable = false;
    }
    if (printable) {
        memcpy(text, data, len);
        text[len] = '\0';
    } else {
        for (size_t i = 0; i < 32; i++)
            snprintf(text + 2 * i, 3, "%02x", data[i]);
    }
    cJSON_AddStringToObject(o, "ref_data", text);
}

static cJSON *entry_full_json(const struct tally_entry *e)
{
    char hash[20];
    cJSON *o = entry_row_json(e);
    snprintf(hash, sizeof(hash), "%016" PRIx64, e->hash);
    cJSON_AddStringToObject(o, "hash", hash);
    json_add_id(o, "posting_id", e->posting_id);
    cli_json_add_u64(o, "program", e->program);
    cli_json_add_u64(o, "flags", e->flags);
    cli_json_add_u64(o, "lot_id", e->lot_id);
    cli_json_add_time(o, "time_a", e->time_a);
    cli_json_add_u64(o, "code", e->code);
    if (e->kind == TALLY_KIND_TIER_CHANGE) { /* time_b holds the tier rule version */
        cli_json_add_u64(o, "tier_from", e->tier_from);
        cli_json_add_u64(o, "tier_to", e->tier_to);
        cli_json_add_u64(o, "rule_version", e->time_b);
    } else {
        cli_json_add_time(o, "time_b", e->time_b);
    }
    json_add_user_data(o, e->user_data);
    return o;
}

static int run_entry(struct cli *c, const struct args *a)
{
    uint64_t seq;
    struct tally_entry e;
    uint32_t tail_count = 0;
    int rc = parse_u64_max(c, "seq", arg_get(a, "seq"), UINT64_MAX, &seq);
    if (rc == 0)
        rc = cli_open(c, false);
    if (rc != 0)
        return rc;
    if ((rc = c->be->entry(c, seq, &e, NULL, 0, &tail_count)) != 0)
        return query_failed(c, rc, "no entry with that sequence number (see tally status)");
    cJSON *o = entry_full_json(&e);
    if (e.kind == TALLY_KIND_PROGRAM) {
        struct tally_program_config cfg;
        struct tally_program_totals totals;
        if (c->be->program(c, e.program, &cfg, &totals) == 0)
            cJSON_AddItemToObject(o, "config", config_json(&cfg));
        return output(c, o);
    }
    struct tally_lot_ref *refs = calloc(tail_count ? tail_count : 1, sizeof(*refs));
    if (refs == NULL || (rc = c->be->entry(c, seq, &e, refs, tail_count, &tail_count))) {
        free(refs);
        cJSON_Delete(o);
        return rc ? query_failed(c, rc, "entry") : fail(c, CLI_EXIT_INTERNAL, "SYSTEM", "oom");
    }
    cJSON_AddItemToObject(o, "lineage", lineage_json(&e, refs, tail_count));
    free(refs);
    return output(c, o);
}

static int run_posting_info(struct cli *c, const struct args *a)
{
    uint8_t id[16];
    struct tally_posting_outcome info;
    int rc = parse_id(c, "id", arg_get(a, "id"), id);
    if (rc == 0)
        rc = cli_open(c, false);
    if (rc != 0)
        return rc;
    if ((rc = c->be->posting(c, id, &info)) != 0)
        return query_failed(c, rc,
                            "no posting with that id was recorded (rejected for a reason "
                            "of its bytes alone, or never sent)");
    cJSON *o = cJSON_CreateObject();
    json_add_id(o, "id", id);
    cJSON_AddStringToObject(o, "kind", kind_name(info.kind));
    cJSON_AddStringToObject(o, "result", result_name(info.code));
    cJSON_AddStringToObject(o, "message", tally_result_str(info.code));
    cli_json_add_u64(o, "seq", info.seq);
    cli_json_add_u64(o, "entry_count", info.entry_count);
    cli_json_add_time(o, "time", info.timestamp);
    cJSON *list = cJSON_AddArrayToObject(o, "entries");
    if (info.entry_count > 0 &&
        (rc = entries_json(c, info.seq, info.seq + info.entry_count - 1, list)) != 0) {
        cJSON_Delete(o);
        return query_failed(c, rc, "entries");
    }
    return output(c, o);
}

static int run_hold_info(struct cli *c, const struct args *a)
{
    uint8_t id[16];
    struct tally_hold_info h;
    int rc = parse_id(c, "id", arg_get(a, "id"), id);
    if (rc == 0)
        rc = cli_open(c, false);
    if (rc != 0)
        return rc;
    if ((rc = c->be->hold(c, id, &h)) != 0)
        return query_failed(c, rc, "no hold was made by a posting with that id");
    cJSON *o = cJSON_CreateObject();
    json_add_id(o, "id", id);
    cli_json_add_u64(o, "seq", h.seq);
    cli_json_add_u64(o, "program", h.program);
    cli_json_add_u64(o, "member", h.member);
    cJSON_AddStringToObject(o, "status", NAME_OF(hold_status_names, h.status));
    cli_json_add_u64(o, "amount", h.amount);
    cli_json_add_u64(o, "captured", h.captured);
    cli_json_add_time(o, "timeout_at", h.timeout_at);
    cli_json_add_u64(o, "resolved_seq", h.resolved_seq);
    return output(c, o);
}

static int run_status(struct cli *c, const struct args *a)
{
    (void)a;
    int rc = cli_open(c, false);
    return rc != 0 ? rc : c->be->status(c);
}

static int embedded_status(struct cli *c)
{
    struct engine_status st;
    char head[20], digest[33];
    engine_status(c->engine, &st);
    snprintf(head, sizeof(head), "%016" PRIx64, st.chain_head);
    cli_format_id(st.digest, digest); /* 16 bytes as 32 hex digits, like an id */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", c->dir);
    cli_json_add_u64(o, "applied_index", st.applied_index);
    cli_json_add_time(o, "last_timestamp", st.last_timestamp);
    cli_json_add_u64(o, "entries", st.entries);
    cJSON_AddStringToObject(o, "chain_head", head);
    cJSON_AddStringToObject(o, "digest", digest);
    cli_json_add_u64(o, "map_size", st.map_size);
    cli_json_add_u64(o, "fold_from", st.fold_from);
    cli_json_add_u64(o, "members_cached", st.members_cached);
    cli_json_add_u64(o, "members_dirty", st.members_dirty);
    return output(c, o);
}

static const char *const role_names[] = {"unavailable", "follower", "candidate", "leader"};

static cJSON *replica_json(const struct tally_replica_status *r)
{
    char head[20], digest[33];
    snprintf(head, sizeof(head), "%016" PRIx64, r->chain_head);
    cli_format_id(r->digest, digest);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "address", r->address);
    cJSON_AddStringToObject(o, "role", NAME_OF(role_names, r->role));
    cli_json_add_u64(o, "term", r->term);
    cli_json_add_u64(o, "commit_index", r->commit_index);
    cli_json_add_u64(o, "applied_index", r->applied_index);
    cli_json_add_u64(o, "entries", r->entries);
    cli_json_add_time(o, "last_timestamp", r->last_timestamp);
    cJSON_AddStringToObject(o, "chain_head", r->error == 0 ? head : "-");
    cJSON_AddStringToObject(o, "digest", r->error == 0 ? digest : "-");
    cJSON_AddStringToObject(o, "error", r->error == 0 ? "" : tally_strerror(r->error));
    return o;
}

/* Every replica, asked directly. Replicas at the same applied index must hold the same digest
 * (law 6): a difference is reported and exits 1, like a difference found by tally-audit. */
static int cluster_status(struct cli *c)
{
    struct tally_replica_status st[CLUSTER_REPLICAS_MAX];
    uint32_t n = 0, answered = 0;
    int rc = tally_client_status(c->client, st, CLUSTER_REPLICAS_MAX, &n, 0);
    bool agree = true;
    const char *leader = NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "cluster", c->cluster);
    cJSON *list = cJSON_AddArrayToObject(o, "replicas");
    for (uint32_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(list, replica_json(&st[i]));
        if (st[i].error != 0)
            continue;
        answered++;
        if (st[i].role == TALLY_WIRE_ROLE_LEADER)
            leader = st[i].address;
        for (uint32_t k = 0; k < i; k++) {
            if (st[k].error == 0 && st[k].applied_index == st[i].applied_index &&
                memcmp(st[k].digest, st[i].digest, sizeof(st[i].digest)) != 0)
                agree = false;
        }
    }
    if (leader != NULL)
        cJSON_AddStringToObject(o, "leader", leader);
    else
        cJSON_AddNullToObject(o, "leader");
    cli_json_add_u64(o, "answered", answered);
    cJSON_AddBoolToObject(o, "digests_agree", agree);
    int exit_code = output(c, o);
    if (rc != 0) {
        fprintf(stderr, "tally: no replica of %s answered (is tallyd running there?)\n",
                c->cluster);
        return CLI_EXIT_DATA;
    }
    if (!agree) {
        fprintf(stderr, "tally: replicas at the same applied index hold different state digests: "
                        "they have diverged (run tally-audit verify on each data directory)\n");
        return CLI_EXIT_REJECTED;
    }
    return exit_code;
}

/* A copy of a replica's whole ledger, over the network, into DIR/data.mdb (a backup, or the
 * manual way to seed a replica): the LEDGER operation, checked end to end (XXH3-128). */
static int run_ledger_copy(struct cli *c, const struct args *a)
{
    if (c->cluster == NULL)
        return usage_error(c, "needs --cluster (a local ledger is copied with mdb_copy DIR DEST)");
    if (a->positional_count != 1)
        return usage_error(c, "name one DIR to copy into");
    uint64_t min_index = 0;
    const char *mi = arg_get(a, "min-index");
    int rc = mi != NULL ? parse_u64_max(c, "min-index", mi, UINT64_MAX, &min_index) : 0;
    if (rc != 0)
        return rc;
    const char *dir = a->positional[0];
    char path[PATH_MAX];
    if (make_dirs(dir) != 0 || (size_t)snprintf(path, sizeof(path), "%s/data.mdb", dir) >=
                                   sizeof(path))
        return fail(c, CLI_EXIT_DATA, "DATA", "cannot make %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(path, &st) == 0)
        return fail(c, CLI_EXIT_DATA, "DATA", "%s exists: copy into an empty directory", path);
    if ((rc = cli_open(c, false)) != 0)
        return rc;
    uint64_t applied = 0;
    /* A large ledger takes a while: ten minutes unless --deadline says otherwise. */
    rc = tally_client_ledger_copy(c->client, path, min_index, &applied,
                                  c->deadline_ms != 0 ? c->deadline_ms : 600000);
    if (rc != 0) {
        (void)unlink(path);
        return fail(c, CLI_EXIT_DATA, "CLUSTER", "no copy from %s: %s", c->cluster,
                    tally_strerror(rc));
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", path);
    cli_json_add_u64(o, "bytes", stat(path, &st) == 0 ? (uint64_t)st.st_size : 0);
    cli_json_add_u64(o, "applied_index_at_least", applied);
    return output(c, o);
}

static int run_program_show(struct cli *c, const struct args *a)
{
    uint32_t program;
    struct tally_program_config cfg;
    struct tally_program_totals totals;
    int rc = parse_u32(c, "program", arg_get(a, "program"), &program);
    if (rc == 0)
        rc = cli_open(c, false);
    if (rc != 0)
        return rc;
    if ((rc = c->be->program(c, program, &cfg, &totals)) != 0)
        return query_failed(c, rc, "no such program (see tally program list)");
    cJSON *o = cJSON_CreateObject();
    cli_json_add_u64(o, "program", program);
    cJSON_AddItemToObject(o, "config", config_json(&cfg));
    cJSON_AddItemToObject(o, "totals", totals_json(&totals));
    return output(c, o);
}

static cJSON *program_row_json(uint32_t id, const struct tally_program_config *cfg,
                               const struct tally_program_totals *t)
{
    char expiry[64];
    cJSON *o = cJSON_CreateObject();
    config_expiry_text(cfg, expiry);
    cli_json_add_u64(o, "program", id);
    cJSON_AddStringToObject(o, "expiry", expiry);
    cli_json_add_u64(o, "tiers", cfg->tier_count);
    cJSON_AddStringToObject(o, "tier_mode", NAME_OF(tier_mode_names, cfg->tier_mode));
    cli_json_add_u64(o, "members", t->members);
    cli_json_add_u64(o, "issued", t->issued);
    cli_json_add_u64(o, "redeemed", t->redeemed);
    cli_json_add_u64(o, "expired", t->expired);
    cli_json_add_i64(o, "outstanding", t->outstanding);
    return o;
}

static int run_program_list(struct cli *c, const struct args *a)
{
    (void)a;
    uint32_t ids[PROGRAMS_PAGE], count, after = 0;
    int rc = cli_open(c, false);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "programs");
    do {
        if ((rc = c->be->programs(c, after, ids, PROGRAMS_PAGE, &count)) != 0)
            break;
        for (uint32_t i = 0; i < count && rc == 0; i++) {
            struct tally_program_config cfg;
            struct tally_program_totals totals;
            rc = c->be->program(c, ids[i], &cfg, &totals);
            if (rc == 0)
                cJSON_AddItemToArray(list, program_row_json(ids[i], &cfg, &totals));
            after = ids[i];
        }
    } while (rc == 0 && count == PROGRAMS_PAGE);
    if (rc != 0) {
        cJSON_Delete(o);
        return query_failed(c, rc, "programs");
    }
    return output(c, o);
}

/* ---------------------------------------------------------------------------------------------
 * The backend tables
 * ------------------------------------------------------------------------------------------- */

static const struct backend embedded_backend = {
    .open = embedded_open,
    .close = embedded_close,
    .apply = embedded_apply,
    .program = embedded_program,
    .programs = embedded_programs,
    .account = embedded_account,
    .balance_at = embedded_balance_at,
    .history = embedded_history,
    .lots = embedded_lots,
    .entry = embedded_entry,
    .posting = embedded_posting,
    .hold = embedded_hold,
    .last_time = embedded_last_time,
    .status = embedded_status,
};

static const struct backend cluster_backend = {
    .open = cluster_open,
    .close = cluster_close,
    .apply = cluster_apply,
    .program = cluster_program,
    .programs = cluster_programs,
    .account = cluster_account,
    .balance_at = cluster_balance_at,
    .history = cluster_history,
    .lots = cluster_lots,
    .entry = cluster_entry,
    .posting = cluster_posting,
    .hold = cluster_hold,
    .last_time = cluster_last_time,
    .status = cluster_status,
};

/* ---------------------------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------------------------- */

#define MEMBER_OPTS  "*program *member"
#define POSTING_CODE "code ref-data"

static const struct command commands[] = {
    {"program create", GROUP_POSTING, TALLY_KIND_PROGRAM, NULL, 0,
     "--program P [--expiry POLICY] [--tiers T1,T2,...] [--tier-mode MODE] [--window WINDOW] "
     "[--validity MONTHS] [--hold-timeout DURATION] [--tz-offset MIN] [--allow-negative]",
     "*program expiry tiers tier-mode window validity hold-timeout tz-offset allow-negative! code",
     "create a program: its expiry policy and tier ladder",
     "  --program P         program id, 1..4294967295\n"
     "  --expiry POLICY     none (default), fixed:TIME, days:N, month:N, quarter:N, year:N\n"
     "                      (year:1: points expire at the end of the year after they are earned)\n"
     "  --tiers T1,T2,...   qualifying value needed for tier 1, 2, ... (strictly increasing);\n"
     "                      without it the program has tier 0 only\n"
     "  --tier-mode MODE    up-only (default), down-step or down-earned\n"
     "  --window WINDOW     qualification window: rolling:N months (default rolling:12) or "
     "calendar\n"
     "  --validity MONTHS   a reached tier lasts the rest of its month plus MONTHS (default 12)\n"
     "  --hold-timeout D    default timeout of holds, e.g. 15m (the default) or 2h\n"
     "  --tz-offset MIN     the program's civil time, minutes east of UTC (default 0)\n"
     "  --allow-negative    refunds and adjustments may take available points below zero\n"},
    {"open", GROUP_POSTING, TALLY_KIND_OPEN, NULL, 0, "--program P --member M",
     MEMBER_OPTS " " POSTING_CODE, "open a member account", NULL},
    {"accrue", GROUP_POSTING, TALLY_KIND_ACCRUE, NULL, 0,
     "--program P --member M --points N [--value V] [--pending DURATION] [--code C] "
     "[--ref-data TEXT]",
     MEMBER_OPTS " *points value pending " POSTING_CODE,
     "earn points (a new lot) and qualifying value",
     "  --value V           qualifying value earned (e.g. cents spent); decides the tier\n"
     "  --pending DURATION  the points are pending for DURATION (e.g. 7d, a return window),\n"
     "                      then become available by themselves (or use activate / cancel)\n"},
    {"activate", GROUP_POSTING, TALLY_KIND_ACTIVATE, NULL, 0, "--program P --member M --ref ID",
     MEMBER_OPTS " *ref " POSTING_CODE, "make a pending accrual available now",
     "  --ref ID            the id of the pending accrual\n"},
    {"cancel", GROUP_POSTING, TALLY_KIND_CANCEL, NULL, 0, "--program P --member M --ref ID",
     MEMBER_OPTS " *ref " POSTING_CODE, "cancel a pending accrual (a return inside the window)",
     "  --ref ID            the id of the pending accrual\n"},
    {"redeem", GROUP_POSTING, TALLY_KIND_REDEEM, NULL, 0, "--program P --member M --points N",
     MEMBER_OPTS " *points " POSTING_CODE, "spend available points, soonest-expiring first", NULL},
    {"hold", GROUP_POSTING, TALLY_KIND_HOLD, NULL, 0,
     "--program P --member M --points N [--timeout DURATION]",
     MEMBER_OPTS " *points timeout " POSTING_CODE,
     "reserve points at checkout until captured, released or timed out",
     "  --timeout DURATION  released by itself after this (default: the program's hold timeout)\n"},
    {"capture", GROUP_POSTING, TALLY_KIND_CAPTURE, NULL, 0,
     "--program P --member M --ref ID [--points N]", MEMBER_OPTS " *ref points " POSTING_CODE,
     "spend all or part of a hold; the rest is released",
     "  --ref ID            the id of the hold\n"
     "  --points N          points to capture (default: all of the hold)\n"},
    {"release", GROUP_POSTING, TALLY_KIND_RELEASE, NULL, 0, "--program P --member M --ref ID",
     MEMBER_OPTS " *ref " POSTING_CODE, "give a hold back",
     "  --ref ID            the id of the hold\n"},
    {"reverse", GROUP_POSTING, TALLY_KIND_REVERSE, NULL, 0,
     "--program P --member M --ref ID [--points N]", MEMBER_OPTS " *ref points " POSTING_CODE,
     "undo all or part of an accrual, redemption or capture (a refund)",
     "  --ref ID            the id of the accrual, redemption or capture\n"
     "  --points N          points to reverse (default: all that remains); qualifying value\n"
     "                      and lots are restored in proportion\n"},
    {"transfer", GROUP_POSTING, TALLY_KIND_TRANSFER, NULL, 0,
     "--program P --from M --to M2 --points N", "*program *from *to *points " POSTING_CODE,
     "move available points to another member (lots keep their expiry)", NULL},
    {"adjust", GROUP_POSTING, TALLY_KIND_ADJUST, NULL, 0,
     "--program P --member M --points N [--negative] --reason CODE",
     MEMBER_OPTS " *points negative! *reason ref-data",
     "authorised manual correction with a reason code",
     "  --negative          take points away (default: add them, as a new lot)\n"
     "  --reason CODE       the reason code, a number kept in the entry\n"},
    {"close", GROUP_POSTING, TALLY_KIND_CLOSE, NULL, 0, "--program P --member M",
     MEMBER_OPTS " " POSTING_CODE, "close an account; its points are forfeited", NULL},
    {"tick", GROUP_OTHER, 0, run_tick, 0, "", "",
     "apply an empty batch: only time-driven work (expiry, activation, timeouts, tiers)",
     "  With --at TIME, everything due up to TIME happens, stamped with its due time.\n"},
    {"batch", GROUP_OTHER, 0, run_batch, 1, "FILE", "",
     "apply the posting commands of FILE (- for stdin), one per line, as one batch",
     "  Each line is a posting command with its options, as on the command line, e.g.\n"
     "      accrue --program 1 --member 7 --points 120 --value 12000 --ref-data \"till 4\"\n"
     "  Blank lines and # comments are skipped; \"quotes\" group words. At most 8190\n"
     "  postings. They are applied in one batch with one timestamp (--at or now); --linked on\n"
     "  a line chains it to the next (all or nothing). Exit 1 if any posting was rejected.\n"},
    {"program show", GROUP_QUERY, 0, run_program_show, 0, "--program P", "*program",
     "a program's configuration and totals (issued, redeemed, expired, outstanding)", NULL},
    {"program list", GROUP_QUERY, 0, run_program_list, 0, "", "", "every program, with totals",
     NULL},
    {"account", GROUP_QUERY, 0, run_account, 0, "--program P --member M", MEMBER_OPTS,
     "a member's buckets, lifetime totals, tier and its validity",
     "  qv_window is the qualifying value in the tier window at --at (default now).\n"},
    {"balance", GROUP_QUERY, 0, run_balance, 0, "--program P --member M [--as-of TIME]",
     MEMBER_OPTS " as-of", "a member's points now, or as they stood at --as-of TIME", NULL},
    {"history", GROUP_QUERY, 0, run_history, 0, "--program P --member M [--before SEQ] [--limit N]",
     MEMBER_OPTS " before limit", "a member's entries, newest first",
     "  --before SEQ        only entries older than SEQ (the next_before of the previous page)\n"
     "  --limit N           entries per page, default 20, at most 1000\n"},
    {"lots", GROUP_QUERY, 0, run_lots, 0, "--program P --member M", MEMBER_OPTS,
     "a member's open lots, in the order redemption consumes them", NULL},
    {"entry", GROUP_QUERY, 0, run_entry, 0, "--seq N", "*seq", "one entry, with its lot lineage",
     NULL},
    {"posting", GROUP_QUERY, 0, run_posting_info, 0, "--id ID", "*id",
     "what became of a posting id: result and entries", NULL},
    {"hold-info", GROUP_QUERY, 0, run_hold_info, 0, "--id ID", "*id",
     "a hold, by the id of its hold posting: status, captured, timeout", NULL},
    {"status", GROUP_QUERY, 0, run_status, 0, "", "",
     "applied index, entries, hash chain head and state digest", NULL},
    {"ledger-copy", GROUP_OTHER, 0, run_ledger_copy, 1, "DIR [--min-index N]", "min-index",
     "(--cluster only) a consistent copy of a replica's whole ledger into DIR/data.mdb",
     "  The first replica that answers makes the copy (while it goes on serving) and sends it\n"
     "  in chunks; the file is checked against the copy's XXH3-128 before the command ends.\n"
     "  DIR/data.mdb must not exist. The copy is a ledger: tally --data DIR, tally-audit.\n"
     "  --min-index N       only from a replica that has applied index N\n"},
};
static const size_t commands_count = COUNT_OF(commands);

/* The command named by tok[0] (and tok[1] for two-word commands); *used = words consumed. */
static const struct command *command_find(char **tok, uint32_t n, uint32_t *used)
{
    for (size_t i = 0; i < commands_count; i++) {
        const char *name = commands[i].name, *space = strchr(name, ' ');
        if (space == NULL && strcmp(tok[0], name) == 0) {
            *used = 1;
            return &commands[i];
        }
        if (space != NULL && n >= 2 && strlen(tok[0]) == (size_t)(space - name) &&
            strncmp(tok[0], name, (size_t)(space - name)) == 0 && strcmp(tok[1], space + 1) == 0) {
            *used = 2;
            return &commands[i];
        }
    }
    return NULL;
}

/* For "program" alone or with a bad second word: the list of its subcommands. */
static bool command_family(const char *word, char *list, size_t size)
{
    size_t len = strlen(word), at = 0;
    list[0] = '\0';
    for (size_t i = 0; i < commands_count; i++) {
        const char *name = commands[i].name;
        if (strncmp(name, word, len) == 0 && name[len] == ' ' && at < size)
            at += (size_t)snprintf(list + at, size - at, "%s%s", at ? ", " : "", name + len + 1);
    }
    return list[0] != '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Help
 * ------------------------------------------------------------------------------------------- */

static void help_group(enum command_group g, const char *title)
{
    printf("\n%s:\n", title);
    for (size_t i = 0; i < commands_count; i++) {
        if (commands[i].group == g)
            printf("  %-15s %s\n", commands[i].name, commands[i].summary);
    }
}

static void help_global(void)
{
    print_usage_line(stdout, NULL);
    printf("       tally <command> --help\n\n"
           "The command-line client of the tally loyalty ledger. With --data it opens the ledger\n"
           "in DIR in this process (creating DIR if missing); with --cluster it talks to a tally\n"
           "cluster. Each posting command is applied as one batch, and what became of it is\n"
           "printed.\n\n"
           "global options (before or after the command):\n"
           "  --data DIR   the ledger's data directory (or set TALLY_DATA)\n"
           "  --cluster ADDR[,ADDR...]\n"
           "               replicas of a cluster, host:port (IPv6: [::1]:7401), any of them: the\n"
           "               leader is found by itself (or set TALLY_CLUSTER). `status` reports\n"
           "               every replica; `tick` is for --data only, and --at on postings\n"
           "               only for a cluster running with tallyd --clock client (others stamp\n"
           "               batches with their leader's clock)\n"
           "  --deadline D how long a command may wait for the cluster, e.g. 2s (default 10s);\n"
           "               a posting not answered by then has an unknown outcome (exit 3)\n"
           "  --at TIME    the batch time: now, YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.mmm]]Z (UTC) or\n"
           "               milliseconds since 1970. Time-driven work due by TIME happens first.\n"
           "               A TIME before the ledger's last batch is applied at that batch's time.\n"
           "               Queries evaluate the tier window at TIME.\n"
           "  --json       print one JSON object (times as ISO strings, ids as 32 hex digits)\n");
    help_group(GROUP_POSTING, "postings (each takes --id ID and --linked, see below)");
    help_group(GROUP_OTHER, "time and batches");
    help_group(GROUP_QUERY, "queries");
    printf("\nids: --id ID is 32 hex digits or a decimal number n (the id 00..0n). Without it a\n"
           "time-ordered id is generated and printed. A retry with the same --id and the same\n"
           "options is safe: it answers EXISTS with the original result and applies nothing.\n\n"
           "exit codes:\n"
           "  0  applied (or EXISTS of an applied posting), or the query answered\n"
           "  1  the posting was rejected (the output says why and what to do), or the query\n"
           "     found nothing\n"
           "  2  usage error\n"
           "  3  the data directory cannot be used (missing permissions, locked, not a ledger),\n"
           "     the cluster cannot be reached or has no leader, or a posting got no answer in\n"
           "     time: its outcome is unknown (the message names the ids to ask about)\n"
           "  4  system error (I/O, disk full, out of memory)\n");
}

static void help_command(const struct command *cmd)
{
    print_usage_line(stdout, cmd);
    printf("\n%s.\n", cmd->summary);
    if (cmd->details != NULL)
        printf("\n%s", cmd->details);
    if (cmd->group == GROUP_POSTING) {
        printf("\n  --id ID             posting id: 32 hex digits or a decimal number "
               "(default: generated)\n"
               "  --linked            chain to the next posting of a batch (all or nothing)\n");
        if (spec_find(cmd->options, "code", &(struct opt_word){0}))
            printf("  --code C            channel or store code, kept in the entry\n");
        if (spec_find(cmd->options, "ref-data", &(struct opt_word){0}))
            printf(
                "  --ref-data TEXT     up to 32 bytes (order number, till), kept in the entry\n");
    }
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

/* Global options before the command. Returns 0, ARGS_HELP or a usage exit code; *i advances. */
static int parse_globals(struct cli *c, int argc, char **argv, int *i)
{
    while (*i < argc && strncmp(argv[*i], "--", 2) == 0) {
        char *name = argv[*i] + 2, *value = strchr(name, '=');
        if (value != NULL)
            *value++ = '\0';
        bool known, takes_value = global_takes_value(name, &known);
        if (strcmp(name, "help") == 0)
            return ARGS_HELP;
        if (!known)
            return usage_error(c, "unknown option --%s (command options go after the command)",
                               name);
        if (takes_value && value == NULL) {
            if (*i + 1 >= argc)
                return usage_error(c, "--%s needs a value", name);
            value = argv[++*i];
        }
        int rc = global_set(c, name, value);
        if (rc != 0)
            return rc;
        ++*i;
    }
    return 0;
}

static int find_command(struct cli *c, int argc, char **argv, int *i)
{
    uint32_t used;
    char family[128];
    if (*i >= argc)
        return usage_error(c, "name a command (tally --help lists them)");
    if (strcmp(argv[*i], "help") == 0) {
        c->cmd = NULL;
        if (*i + 1 < argc)
            c->cmd = command_find(argv + *i + 1, (uint32_t)(argc - *i - 1), &used);
        return ARGS_HELP;
    }
    c->cmd = command_find(argv + *i, (uint32_t)(argc - *i), &used);
    if (c->cmd == NULL && command_family(argv[*i], family, sizeof(family))) {
        fprintf(stderr, "tally: %s needs one of: %s\n", argv[*i], family);
        for (size_t k = 0; k < commands_count; k++) {
            if (strncmp(commands[k].name, argv[*i], strlen(argv[*i])) == 0 &&
                commands[k].name[strlen(argv[*i])] == ' ')
                print_usage_line(stderr, &commands[k]);
        }
        return CLI_EXIT_USAGE;
    }
    if (c->cmd == NULL)
        return usage_error(c, "unknown command '%s' (tally --help lists them)", argv[*i]);
    *i += (int)used;
    return 0;
}

/* Embedded or cluster: --data and --cluster on the command line, else TALLY_DATA, else
 * TALLY_CLUSTER. Giving both on the command line is a usage error. */
static int choose_backend(struct cli *c)
{
    if (c->cluster != NULL && c->dir_given)
        return usage_error(c, "give --data DIR or --cluster ADDR,..., not both");
    if (c->cluster == NULL && !c->dir_given && (c->dir == NULL || c->dir[0] == '\0')) {
        const char *env = getenv("TALLY_CLUSTER");
        if (env != NULL && env[0] != '\0')
            c->cluster = env;
    }
    c->be = c->cluster != NULL ? &cluster_backend : &embedded_backend;
    return 0;
}

int main(int argc, char **argv)
{
    struct cli c;
    struct args a;
    int i = 1;
    memset(&c, 0, sizeof(c));
    c.now_ms = cli_now_ms();
    c.dir = getenv("TALLY_DATA");
    ids_init(&c.ids);
    int rc = parse_globals(&c, argc, argv, &i);
    if (rc == 0)
        rc = find_command(&c, argc, argv, &i);
    if (rc == 0)
        rc = args_parse(&c, argv + i, (uint32_t)(argc - i), &a, true);
    if (rc == ARGS_HELP) {
        if (c.cmd != NULL)
            help_command(c.cmd);
        else
            help_global();
        return CLI_EXIT_OK;
    }
    if (rc == 0)
        rc = choose_backend(&c);
    if (rc == 0)
        rc = c.cmd->run != NULL ? c.cmd->run(&c, &a) : run_posting(&c, &a);
    if (c.be != NULL)
        c.be->close(&c);
    if (fflush(stdout) != 0 && rc == 0)
        rc = CLI_EXIT_INTERNAL;
    return rc;
}
