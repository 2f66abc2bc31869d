/* tally_audit.c: tally-audit, finance's verification tool for a tally data directory.
 *
 *   tally-audit [--json] verify DIR          re-derive the ledger from its entries and compare
 *   tally-audit [--json] trial-balance DIR   per-program totals and the double-entry check
 *
 * Both commands only read: they open LMDB read-only (a consistent snapshot), so they are safe on
 * the data directory of a running replica. The work is in audit_fold.c; this file parses the
 * command line, prints a short report for people or one JSON document for scripts (--json), and
 * turns the outcome into the exit codes of cli_common.h.
 */
#include "cli_common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_fold.h"
#include "tally_errors.h"

/* Programs asked of audit_trial_balance at first; doubled while the answer fills the buffer.
 * Program ids are 32-bit, so the doubling is bounded by TRIAL_PROGRAMS_MAX. */
#define TRIAL_PROGRAMS_FIRST 64u
#define TRIAL_PROGRAMS_MAX   (UINT32_C(1) << 31)

static const char usage_text[] =
    "tally-audit: verify a tally ledger and print its trial balance (read-only).\n"
    "\n"
    "usage: tally-audit [--json] verify DIR\n"
    "       tally-audit [--json] trial-balance DIR\n"
    "       tally-audit --help\n"
    "\n"
    "commands:\n"
    "  verify DIR         re-derive every account, lot and hold from the entries (without the\n"
    "                     engine's code) and compare them with what DIR stores; a member image\n"
    "                     (written back lazily, so possibly older than the entries) with the\n"
    "                     replay as of the entry it says it includes last. Check the hash chain,\n"
    "                     each entry's links to its members' previous entries, the state sum,\n"
    "                     double entry and that no balance is negative where the program\n"
    "                     forbids it. Stops at the first difference and names its entry,\n"
    "                     account, lot and field.\n"
    "  trial-balance DIR  per program, from the replay of the entries: points issued, redeemed,\n"
    "                     expired, adjusted, outstanding (the liability), members, and whether\n"
    "                     the program sums to zero.\n"
    "\n"
    "options:\n"
    "  --json             print one JSON document on stdout instead of the report\n"
    "  --help             print this help\n"
    "\n"
    "DIR is a tally data directory (it holds data.mdb); both commands are safe beside a\n"
    "running tallyd.\n"
    "\n"
    "exit codes:\n"
    "  0  everything matched (verify) / every program balanced (trial-balance)\n"
    "  1  a difference was found / a program does not balance (the report says where)\n"
    "  2  usage error\n"
    "  3  DIR is not a usable ledger (missing, unreadable, corrupt, newer format)\n"
    "  4  internal or system error (out of memory, I/O)\n";

struct args {
    bool json;
    const char *command;
    const char *dir;
};

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tally-audit: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: tally-audit [--json] verify|trial-balance DIR (see tally-audit "
                    "--help)\n");
    return CLI_EXIT_USAGE;
}

/* Returns -1 when the arguments are good, else the exit code to leave with. */
static int args_parse(int argc, char **argv, struct args *a)
{
    const char *pos[2];
    int npos = 0;
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(s, "--json") == 0) {
            a->json = true;
        } else if (s[0] == '-' && s[1] != '\0') {
            return usage_error("unknown option '%s'", s);
        } else if (npos == 2) {
            return usage_error("unexpected argument '%s'", s);
        } else {
            pos[npos++] = s;
        }
    }
    if (npos == 0)
        return usage_error("%s", "a command is needed: verify or trial-balance");
    a->command = pos[0];
    if (strcmp(a->command, "verify") != 0 && strcmp(a->command, "trial-balance") != 0)
        return usage_error("unknown command '%s' (commands: verify, trial-balance)", a->command);
    if (npos < 2)
        return usage_error("%s needs the data directory, e.g. var/node1", a->command);
    a->dir = pos[1];
    return -1;
}

/* Whether an error means "this directory is not a usable ledger" (exit 3) rather than a
 * failure of the machine (exit 4). */
static bool error_is_data(int rc)
{
    return rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES || rc == -EPERM || rc == -EROFS ||
           rc == TALLY_ECORRUPT || rc == TALLY_EVERSION || rc == TALLY_ENOT_FOUND ||
           rc == TALLY_EBUSY || rc == -EAGAIN;
}

static const char *error_hint(int rc)
{
    if (rc == -ENOENT || rc == -ENOTDIR)
        return "check the path: DIR must be a tally data directory holding data.mdb";
    if (rc == -EACCES || rc == -EPERM)
        return "run as a user who may read DIR and its files";
    if (rc == TALLY_ECORRUPT)
        return "the LMDB file or its meta record is damaged: verify another replica and restore "
               "this one from it";
    if (rc == TALLY_EVERSION)
        return "DIR was written by another version of tally: use that version's tally-audit";
    if (rc == TALLY_EBUSY || rc == -EAGAIN)
        return "the ledger is busy: try again";
    return "this is a fault of the machine or of tally-audit: retry, and report it if it stays";
}

static int report_error(const struct args *a, int rc)
{
    int code = error_is_data(rc) ? CLI_EXIT_DATA : CLI_EXIT_INTERNAL;
    if (a->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "command", a->command);
        cJSON_AddStringToObject(doc, "dir", a->dir);
        cJSON_AddBoolToObject(doc, "ok", false);
        cJSON *err = cJSON_AddObjectToObject(doc, "error");
        cJSON_AddNumberToObject(err, "code", rc);
        cJSON_AddStringToObject(err, "message", tally_strerror(rc));
        cJSON_AddStringToObject(err, "hint", error_hint(rc));
        cli_print_json(doc);
    }
    fprintf(stderr, "tally-audit %s: %s: %s\nnext: %s\n", a->command, a->dir, tally_strerror(rc),
            error_hint(rc));
    return code;
}

/* =============================================================================================
 * verify
 * =========================================================================================== */

static void verify_json(const struct args *a, const struct audit_report *r)
{
    cJSON *doc = cJSON_CreateObject();
    char head[17];
    snprintf(head, sizeof(head), "%016" PRIx64, r->chain_head);
    cJSON_AddStringToObject(doc, "command", "verify");
    cJSON_AddStringToObject(doc, "dir", a->dir);
    cJSON_AddBoolToObject(doc, "ok", r->ok);
    cli_json_add_u64(doc, "entries", r->entries);
    cli_json_add_u64(doc, "programs", r->programs);
    cli_json_add_u64(doc, "accounts", r->accounts);
    cli_json_add_u64(doc, "lots", r->lots);
    cli_json_add_u64(doc, "holds", r->holds);
    cli_json_add_u64(doc, "fold_from", r->fold_from);
    cli_json_add_u64(doc, "images_behind", r->images_behind);
    cli_json_add_u64(doc, "postings", r->postings);
    if (r->ok) {
        cJSON_AddStringToObject(doc, "chain_head", head);
        cJSON_AddNullToObject(doc, "difference");
    } else {
        cJSON *d = cJSON_AddObjectToObject(doc, "difference");
        if (r->bad_seq != 0)
            cli_json_add_u64(d, "seq", r->bad_seq);
        else
            cJSON_AddNullToObject(d, "seq");
        cJSON_AddStringToObject(d, "what", r->what);
    }
    cli_print_json(doc);
}

static void verify_text(const struct args *a, const struct audit_report *r)
{
    if (!r->ok) {
        printf("tally-audit verify %s: DIFFERENCE FOUND\n", a->dir);
        if (r->bad_seq != 0)
            printf("  at entry   %" PRIu64 "\n", r->bad_seq);
        printf("  what       %s\n", r->what);
        printf("  entries    %" PRIu64 " checked\n", r->entries);
        printf("next: this copy of the ledger does not match its own entries. Run tally-audit "
               "verify on another replica's directory; if that one is clean, restore this "
               "replica from it and keep this directory for investigation.\n");
        return;
    }
    printf("tally-audit verify %s: OK\n", a->dir);
    printf("  entries       %" PRIu64 ", numbered without gaps; hash chain intact\n", r->entries);
    printf("  chain head    %016" PRIx64 " (anchor this value outside the cluster)\n",
           r->chain_head);
    printf("  programs      %" PRIu64 "\n", r->programs);
    printf("  accounts      %" PRIu64 " stored images compared, each as of its last entry\n",
           r->accounts);
    printf("  lots          %" PRIu64 "\n", r->lots);
    printf("  holds         %" PRIu64 "\n", r->holds);
    if (r->images_behind == 0)
        printf("  write-back    every stored image is current\n");
    else
        printf("  write-back    %" PRIu64 " stored image%s behind the entries; the next open "
               "folds entries %" PRIu64 ".. into them\n",
               r->images_behind, r->images_behind == 1 ? "" : "s", r->fold_from);
    printf("  postings      %" PRIu64 "\n", r->postings);
    printf("  every stored record equals the replay of the entries; the state sum matches;\n"
           "  every program sums to zero; no forbidden negative balance.\n");
}

static int cmd_verify(const struct args *a)
{
    struct audit_report r;
    int rc = audit_verify(a->dir, &r);
    if (rc != 0)
        return report_error(a, rc);
    if (a->json)
        verify_json(a, &r);
    else
        verify_text(a, &r);
    return r.ok ? CLI_EXIT_OK : CLI_EXIT_REJECTED;
}

/* =============================================================================================
 * trial-balance
 * =========================================================================================== */

/* All programs, the buffers grown until they hold them. */
static int trial_load(const char *dir, struct tally_program_totals **out, bool **balanced,
                      uint32_t *count)
{
    uint32_t cap = TRIAL_PROGRAMS_FIRST;
    for (;;) {
        struct tally_program_totals *t = calloc(cap, sizeof(*t));
        bool *b = calloc(cap, sizeof(*b));
        if (t == NULL || b == NULL) {
            free(t);
            free(b);
            return -ENOMEM;
        }
        int rc = audit_trial_balance(dir, t, b, cap, count);
        if (rc != 0 || *count < cap || cap >= TRIAL_PROGRAMS_MAX) {
            *out = t;
            *balanced = b;
            return rc;
        }
        free(t);
        free(b);
        cap *= 2;
    }
}

static void trial_json(const struct args *a, const struct tally_program_totals *t,
                       const bool *balanced, uint32_t n, bool all)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "command", "trial-balance");
    cJSON_AddStringToObject(doc, "dir", a->dir);
    cJSON_AddBoolToObject(doc, "balanced", all);
    cJSON *list = cJSON_AddArrayToObject(doc, "programs");
    for (uint32_t i = 0; i < n; i++) {
        cJSON *p = cJSON_CreateObject();
        cli_json_add_u64(p, "program", t[i].program);
        cli_json_add_u64(p, "tier_count", t[i].tier_count);
        cli_json_add_u64(p, "issued", t[i].issued);
        cli_json_add_u64(p, "redeemed", t[i].redeemed);
        cli_json_add_u64(p, "expired", t[i].expired);
        cli_json_add_i64(p, "adjusted", t[i].adjusted);
        cli_json_add_i64(p, "outstanding", t[i].outstanding);
        cli_json_add_u64(p, "members", t[i].members);
        cJSON_AddBoolToObject(p, "balanced", balanced[i]);
        cJSON_AddItemToArray(list, p);
    }
    cli_print_json(doc);
}

static void trial_text(const struct args *a, const struct tally_program_totals *t,
                       const bool *balanced, uint32_t n, bool all)
{
    printf("tally-audit trial-balance %s\n", a->dir);
    if (n == 0) {
        printf("  no programs in this ledger\n");
        return;
    }
    printf("%10s %16s %16s %16s %16s %16s %10s  %s\n", "program", "issued", "redeemed", "expired",
           "adjusted", "outstanding", "members", "status");
    for (uint32_t i = 0; i < n; i++)
        printf("%10" PRIu32 " %16" PRIu64 " %16" PRIu64 " %16" PRIu64 " %16" PRId64 " %16" PRId64
               " %10" PRIu64 "  %s\n",
               t[i].program, t[i].issued, t[i].redeemed, t[i].expired, t[i].adjusted,
               t[i].outstanding, t[i].members, balanced[i] ? "balanced" : "NOT BALANCED");
    printf("issued - redeemed - expired + adjusted = outstanding, per program.\n");
    if (all)
        printf("all %" PRIu32 " program%s balanced.\n", n, n == 1 ? "" : "s");
    else
        printf("NOT BALANCED: the accounts of a program do not sum to zero. Run tally-audit "
               "verify %s to find the first entry or record that differs.\n",
               a->dir);
}

static int cmd_trial_balance(const struct args *a)
{
    struct tally_program_totals *t = NULL;
    bool *balanced = NULL;
    uint32_t n = 0;
    int rc = trial_load(a->dir, &t, &balanced, &n);
    if (rc != 0) {
        free(t);
        free(balanced);
        return report_error(a, rc);
    }
    bool all = true;
    for (uint32_t i = 0; i < n; i++)
        all = all && balanced[i];
    if (a->json)
        trial_json(a, t, balanced, n, all);
    else
        trial_text(a, t, balanced, n, all);
    free(t);
    free(balanced);
    return all ? CLI_EXIT_OK : CLI_EXIT_REJECTED;
}

int main(int argc, char **argv)
{
    struct args a;
    int rc = args_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (strcmp(a.command, "verify") == 0)
        return cmd_verify(&a);
    return cmd_trial_balance(&a);
}
