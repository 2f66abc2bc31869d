/* support.c: the engine tests' shared helpers (see support.h). */
#include "support.h"
#include <dlfcn.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Temporary directories
 * ------------------------------------------------------------------------------------------- */

void tmpdir_make(char out[64])
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0' || strlen(base) > 40)
        base = "/tmp";
    snprintf(out, 64, "%s/tally-test-XXXXXX", base);
    if (mkdtemp(out) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

void tmpdir_remove(const char *dir)
{
    if (dir[0] == '\0')
        return;
    if (getenv("TALLY_TEST_KEEP") != NULL) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    /* Only ever our own directories: a bug here must not remove anything else. */
    assert_non_null(strstr(dir, "/tally-test-"));
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------------------------------------------
 * Time, ids, names
 * ------------------------------------------------------------------------------------------- */

uint64_t t(const char *iso)
{
    uint64_t v = 0;
    if (calendar_parse(iso, &v) != 0)
        fail_msg("bad time text in test: %s", iso);
    return v;
}

void id_make(uint8_t out[16], uint64_t n)
{
    memset(out, 0, 16);
    for (int i = 0; i < 8; i++)
        out[15 - i] = (uint8_t)(n >> (8 * i));
}

bool id_is_zero(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        if (id[i] != 0)
            return false;
    return true;
}

const char *code_name(uint32_t code)
{
    const char *n = tally_result_name(code);
    return n != NULL ? n : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Postings
 * ------------------------------------------------------------------------------------------- */

void config_default(struct tally_program_config *c)
{
    memset(c, 0, sizeof(*c));
    c->expiry = TALLY_EXPIRY_NONE;
    c->tier_mode = TALLY_TIER_UP_ONLY;
    c->window = TALLY_WINDOW_ROLLING;
    c->window_months = 12;
    c->validity_months = 12;
    c->tier_count = 3;
    c->hold_timeout_ms = 15 * MINUTE_MS;
    c->thresholds[0] = 1000;
    c->thresholds[1] = 5000;
}

static struct tally_posting post_base(uint64_t id, uint32_t program, uint16_t kind)
{
    struct tally_posting p;
    memset(&p, 0, sizeof(p));
    id_make(p.id, id);
    p.program = program;
    p.kind = kind;
    return p;
}

struct tally_posting post_program(uint64_t id, uint32_t program,
                                  const struct tally_program_config *config)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_PROGRAM);
    p.config = *config;
    return p;
}

struct tally_posting post_open(uint64_t id, uint32_t program, uint64_t member)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_OPEN);
    p.account = member;
    return p;
}

struct tally_posting post_accrue(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                                 uint64_t value)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_ACCRUE);
    p.account = member;
    p.amount = amount;
    p.value = value;
    return p;
}

struct tally_posting post_accrue_pending(uint64_t id, uint32_t program, uint64_t member,
                                         uint64_t amount, uint64_t value, uint64_t duration_ms)
{
    struct tally_posting p = post_accrue(id, program, member, amount, value);
    p.flags = TALLY_FLAG_PENDING;
    p.duration_ms = duration_ms;
    return p;
}

static struct tally_posting post_with_ref(uint64_t id, uint32_t program, uint16_t kind,
                                          uint64_t member, uint64_t ref)
{
    struct tally_posting p = post_base(id, program, kind);
    p.account = member;
    id_make(p.ref, ref);
    return p;
}

struct tally_posting post_activate(uint64_t id, uint32_t program, uint64_t member, uint64_t ref)
{
    return post_with_ref(id, program, TALLY_KIND_ACTIVATE, member, ref);
}

struct tally_posting post_cancel(uint64_t id, uint32_t program, uint64_t member, uint64_t ref)
{
    return post_with_ref(id, program, TALLY_KIND_CANCEL, member, ref);
}

struct tally_posting post_redeem(uint64_t id, uint32_t program, uint64_t member, uint64_t amount)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_REDEEM);
    p.account = member;
    p.amount = amount;
    return p;
}

struct tally_posting post_hold(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                               uint64_t duration_ms)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_HOLD);
    p.account = member;
    p.amount = amount;
    p.duration_ms = duration_ms;
    return p;
}

struct tally_posting post_capture(uint64_t id, uint32_t program, uint64_t member, uint64_t ref,
                                  uint64_t amount)
{
    struct tally_posting p = post_with_ref(id, program, TALLY_KIND_CAPTURE, member, ref);
    p.amount = amount;
    return p;
}

struct tally_posting post_release(uint64_t id, uint32_t program, uint64_t member, uint64_t ref)
{
    return post_with_ref(id, program, TALLY_KIND_RELEASE, member, ref);
}

struct tally_posting post_reverse(uint64_t id, uint32_t program, uint64_t member, uint64_t ref,
                                  uint64_t amount)
{
    struct tally_posting p = post_with_ref(id, program, TALLY_KIND_REVERSE, member, ref);
    p.amount = amount;
    return p;
}

struct tally_posting post_transfer(uint64_t id, uint32_t program, uint64_t from, uint64_t to,
                                   uint64_t amount)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_TRANSFER);
    p.account = from;
    p.account2 = to;
    p.amount = amount;
    return p;
}

struct tally_posting post_adjust(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                                 bool negative, uint32_t reason)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_ADJUST);
    p.account = member;
    p.amount = amount;
    p.code = reason;
    if (negative)
        p.flags = TALLY_FLAG_NEGATIVE;
    return p;
}

struct tally_posting post_close(uint64_t id, uint32_t program, uint64_t member)
{
    struct tally_posting p = post_base(id, program, TALLY_KIND_CLOSE);
    p.account = member;
    return p;
}

struct tally_posting linked(struct tally_posting p)
{
    p.flags = (uint16_t)(p.flags | TALLY_FLAG_LINKED);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * The ledger under test
 * ------------------------------------------------------------------------------------------- */

static void fx_open_engine(struct fx *f)
{
    int rc = engine_open(&f->e, f->dir, &f->opts);
    if (rc != 0)
        fail_msg("engine_open(%s): %d %s", f->dir, rc, tally_strerror(rc));
}

/* Ledgers open now (see fx_teardown_all). */
#define FX_LIVE_MAX 8
static struct fx *fx_live[FX_LIVE_MAX];

void fx_init(struct fx *f, const struct engine_options *opts)
{
    memset(f, 0, sizeof(*f));
    if (opts != NULL) {
        f->opts = *opts;
    } else {
        engine_options_default(&f->opts);
        f->opts.sync = false;
    }
    f->next_id = 1000000;
    tmpdir_make(f->dir);
    int slot = 0;
    while (slot < FX_LIVE_MAX && fx_live[slot] != NULL)
        slot++;
    if (slot == FX_LIVE_MAX)
        fail_msg("more than %d ledgers open at once", FX_LIVE_MAX);
    fx_live[slot] = f;
    fx_open_engine(f);
    struct engine_status st;
    engine_status(f->e, &st);
    f->index = st.applied_index;
}

void fx_deinit(struct fx *f)
{
    for (int i = 0; i < FX_LIVE_MAX; i++)
        if (fx_live[i] == f)
            fx_live[i] = NULL;
    if (f->e != NULL)
        engine_close(f->e);
    f->e = NULL;
    tmpdir_remove(f->dir);
    f->dir[0] = '\0';
}

int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    fx_init(f, NULL);
    *state = f;
    return 0;
}

int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f != NULL) {
        fx_deinit(f);
        free(f);
    }
    *state = NULL;
    return fx_teardown_all(state);
}

int fx_teardown_all(void **state)
{
    (void)state;
    for (int i = 0; i < FX_LIVE_MAX; i++)
        if (fx_live[i] != NULL)
            fx_deinit(fx_live[i]);
    return 0;
}

void fx_reopen(struct fx *f)
{
    engine_close(f->e);
    f->e = NULL;
    fx_open_engine(f);
}

/* Programs the trial balance of fx_verify looks at (tests use a handful). */
#define FX_PROGRAMS_MAX 64

void fx_verify(struct fx *f)
{
    /* LMDB forbids one process opening an environment twice (closing the second handle drops
     * the first one's file locks), so the engine steps aside while the auditor reads. */
    engine_close(f->e);
    f->e = NULL;
    struct audit_report rep;
    memset(&rep, 0, sizeof(rep));
    int rc = audit_verify(f->dir, &rep);
    if (rc != 0)
        fail_msg("audit_verify(%s): %d %s", f->dir, rc, tally_strerror(rc));
    if (!rep.ok)
        fail_msg("audit_verify(%s) found a difference at seq %llu: %s", f->dir,
                 (unsigned long long)rep.bad_seq, rep.what);
    struct tally_program_totals tot[FX_PROGRAMS_MAX];
    bool balanced[FX_PROGRAMS_MAX];
    uint32_t n = 0;
    rc = audit_trial_balance(f->dir, tot, balanced, FX_PROGRAMS_MAX, &n);
    if (rc != 0)
        fail_msg("audit_trial_balance(%s): %d %s", f->dir, rc, tally_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        if (!balanced[i])
            fail_msg("trial balance of program %u is not zero", tot[i].program);
    fx_open_engine(f);
}

uint64_t fx_id(struct fx *f)
{
    return f->next_id++;
}

void fx_apply(struct fx *f, uint64_t ts, const struct tally_posting *postings, uint32_t count,
              struct tally_result *results)
{
    f->index++;
    int rc = engine_apply(f->e, f->index, ts, postings, count, results);
    if (rc != 0)
        fail_msg("engine_apply(index %llu, %u postings): %d %s", (unsigned long long)f->index,
                 count, rc, tally_strerror(rc));
}

struct tally_result fx_apply1(struct fx *f, uint64_t ts, struct tally_posting p)
{
    struct tally_result r;
    memset(&r, 0xee, sizeof(r));
    fx_apply(f, ts, &p, 1, &r);
    return r;
}

uint64_t fx_ok(struct fx *f, uint64_t ts, struct tally_posting p)
{
    struct tally_result r = fx_apply1(f, ts, p);
    if (r.code != TALLY_OK)
        fail_msg("posting of kind %u got %s (%u), expected OK", p.kind, code_name(r.code), r.code);
    assert_int_not_equal(r.seq, 0);
    return r.seq;
}

uint32_t fx_code(struct fx *f, uint64_t ts, struct tally_posting p)
{
    return fx_apply1(f, ts, p).code;
}

void fx_tick(struct fx *f, uint64_t ts)
{
    fx_apply(f, ts, NULL, 0, NULL);
}

void fx_program(struct fx *f, uint64_t ts, uint32_t program,
                const struct tally_program_config *config, uint64_t members)
{
    struct tally_program_config c;
    if (config == NULL) {
        config_default(&c);
        config = &c;
    }
    fx_ok(f, ts, post_program(fx_id(f), program, config));
    for (uint64_t m = 1; m <= members; m++)
        fx_ok(f, ts, post_open(fx_id(f), program, m));
}

struct tally_account fx_account(struct fx *f, uint32_t program, uint64_t member)
{
    struct tally_account a;
    memset(&a, 0, sizeof(a));
    int rc = engine_account(f->e, program, member, &a);
    if (rc != 0)
        fail_msg("engine_account(%u, %llu): %d %s", program, (unsigned long long)member, rc,
                 tally_strerror(rc));
    return a;
}

struct tally_entry fx_entry(struct fx *f, uint64_t seq, struct tally_lot_ref *refs,
                            uint32_t refs_max, uint32_t *refs_count)
{
    struct tally_entry en;
    memset(&en, 0, sizeof(en));
    uint32_t n = 0;
    int rc = engine_entry(f->e, seq, &en, refs, refs_max, &n);
    if (rc != 0)
        fail_msg("engine_entry(%llu): %d %s", (unsigned long long)seq, rc, tally_strerror(rc));
    assert_int_equal(en.seq, seq);
    if (refs_count != NULL)
        *refs_count = n;
    return en;
}

uint32_t fx_lots(struct fx *f, uint32_t program, uint64_t member, struct tally_lot *out,
                 uint32_t max)
{
    uint32_t n = 0;
    int rc = engine_lots(f->e, program, member, out, max, &n);
    if (rc != 0)
        fail_msg("engine_lots(%u, %llu): %d %s", program, (unsigned long long)member, rc,
                 tally_strerror(rc));
    return n;
}

struct engine_hold_info fx_hold(struct fx *f, uint64_t hold_id)
{
    struct engine_hold_info h;
    memset(&h, 0, sizeof(h));
    uint8_t id[16];
    id_make(id, hold_id);
    int rc = engine_hold(f->e, id, &h);
    if (rc != 0)
        fail_msg("engine_hold(%llu): %d %s", (unsigned long long)hold_id, rc, tally_strerror(rc));
    return h;
}

struct engine_posting_info fx_posting(struct fx *f, uint64_t id_n)
{
    struct engine_posting_info pi;
    memset(&pi, 0, sizeof(pi));
    uint8_t id[16];
    id_make(id, id_n);
    int rc = engine_posting(f->e, id, &pi);
    if (rc != 0)
        fail_msg("engine_posting(%llu): %d %s", (unsigned long long)id_n, rc, tally_strerror(rc));
    return pi;
}

uint64_t fx_entries(struct fx *f)
{
    struct engine_status st;
    engine_status(f->e, &st);
    return st.entries;
}

struct tally_program_totals fx_totals(struct fx *f, uint32_t program)
{
    struct tally_program_config c;
    struct tally_program_totals tot;
    memset(&tot, 0, sizeof(tot));
    int rc = engine_program(f->e, program, &c, &tot);
    if (rc != 0)
        fail_msg("engine_program(%u): %d %s", program, rc, tally_strerror(rc));
    return tot;
}

int64_t account_points(const struct tally_account *a)
{
    return a->available + (int64_t)a->pending + (int64_t)a->held;
}

int64_t fx_program_sum(struct fx *f, uint32_t program, uint64_t members)
{
    int64_t sum = 0;
    for (uint64_t m = 1; m <= members; m++) {
        struct tally_account a;
        int rc = engine_account(f->e, program, m, &a);
        if (rc == TALLY_ENOT_FOUND)
            continue;
        assert_int_equal(rc, 0);
        sum += account_points(&a);
    }
    static const uint64_t sys[] = {SYS_ISSUANCE, SYS_REDEMPTION, SYS_BREAKAGE, SYS_ADJUSTMENT};
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
        struct tally_account a = fx_account(f, program, sys[i]);
        assert_int_equal(a.status, TALLY_ACCOUNT_STATUS_SYSTEM);
        assert_int_equal(a.pending, 0);
        assert_int_equal(a.held, 0);
        sum += a.available;
    }
    return sum;
}

void assert_entry_kind(const struct tally_entry *en, uint16_t kind, uint64_t debit, uint64_t credit,
                       uint64_t amount)
{
    if (en->kind != kind)
        fail_msg("entry %llu is of kind %u, expected %u", (unsigned long long)en->seq, en->kind,
                 kind);
    assert_int_equal(en->debit, debit);
    assert_int_equal(en->credit, credit);
    assert_int_equal(en->amount, amount);
}

void assert_ref(const struct tally_lot_ref *r, uint64_t lot_id, uint64_t amount)
{
    if (r->lot_id != lot_id || r->amount != amount)
        fail_msg("lot ref {lot %llu, amount %llu}, expected {lot %llu, amount %llu}",
                 (unsigned long long)r->lot_id, (unsigned long long)r->amount,
                 (unsigned long long)lot_id, (unsigned long long)amount);
}

void assert_same_status(const struct engine_status *a, const struct engine_status *b)
{
    assert_int_equal(a->applied_index, b->applied_index);
    assert_int_equal(a->last_timestamp, b->last_timestamp);
    assert_int_equal(a->entries, b->entries);
    assert_int_equal(a->chain_head, b->chain_head);
    assert_memory_equal(a->digest, b->digest, sizeof(a->digest));
}

void assert_same_engines(struct engine *a, struct engine *b)
{
    struct engine_status sa, sb;
    engine_status(a, &sa);
    engine_status(b, &sb);
    assert_same_status(&sa, &sb);
}

void assert_interposed(const char *name, void *ours)
{
    void *found = dlsym(RTLD_DEFAULT, name);
    assert_ptr_equal(found, ours);
    void *next = dlsym(RTLD_NEXT, name);
    assert_non_null(next);
    assert_ptr_not_equal(next, found);
}
