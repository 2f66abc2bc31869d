/* test_audit_tamper.c: tally-audit's verify finds what was changed behind the engine's back, and
 * its trial balance gives the right totals.
 *
 * Each test builds a ledger with the real engine in a fresh directory under /tmp, closes it
 * (engine_close checkpoints: every member image in `members` is then current, and meta.fold_from
 * is next_seq), and runs audit_verify or audit_trial_balance on it. The tamper tests then change one byte of
 * the data file, in the live copy of one record: the record is found through LMDB itself (the
 * address of its value in a read-only map, minus the map's base, is its offset in data.mdb),
 * because a copy-on-write B-tree leaves stale copies of old pages in the file and a plain byte
 * search could hit one of those. A member record is one value (account, then lots), so a field
 * of it is found at its offset inside that value.
 *
 * The crash tests leave images behind the entries: a child process applies batches and leaves
 * with _exit, never closing the engine, so member changes since its last checkpoint are in the
 * entries only (the engine writes images back lazily, storage.h) and meta.fold_from is below
 * next_seq; the auditor must compare each stored image with the replay as of the entry the image
 * says it includes last. Each checks its own premise (fold_from < next_seq, Alice's image older
 * than her newest entry) so that it cannot pass without exercising the stale images.
 * Self-contained on purpose: it shares no helpers with tests/support.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>

#include "../../tools/audit_fold.h"
#include "calendar.h"
#include "engine.h"
#include "hash.h"
#include "storage.h"
#include "tally_records.h"
#include "tally_results.h"

/* The recognisable user_data of the accrual whose entry the first tamper test damages. */
static const char marker[32] = "audit-tamper-marker:entry-bytes";

#define PROG    1u
#define ALICE   42u
#define BOB     43u
#define CAROL   44u
#define DAVE    45u
#define MIN_MS  (UINT64_C(60000))
#define HOUR_MS (UINT64_C(3600000))
#define DAY_MS  CALENDAR_DAY_MS

/* =============================================================================================
 * A ledger in a temporary directory, driven through the engine API.
 * =========================================================================================== */

struct ledger {
    char dir[64];
    struct engine *e;
    uint64_t index; /* Raft index of the last batch */
    uint64_t marker_seq;
    uint64_t marker_ts;
    uint64_t close_seq; /* a CLOSE entry, for the builds that make one */
};

/* Set in a forked child: a failure must end the child, not run cmocka's next test in it. */
static bool in_child;

#define ledger_fail(...)                                                                           \
    do {                                                                                           \
        if (in_child) {                                                                            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            _exit(3);                                                                              \
        }                                                                                          \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

static uint64_t at(const char *iso)
{
    uint64_t v = 0;
    assert_int_equal(calendar_parse(iso, &v), 0);
    return v;
}

static void ledger_open(struct ledger *l)
{
    struct engine_options o;
    engine_options_default(&o);
    o.sync = false;
    int rc = engine_open(&l->e, l->dir, &o);
    if (rc != 0)
        ledger_fail("engine_open(%s): %d %s", l->dir, rc, tally_strerror(rc));
}

static void ledger_init(struct ledger *l)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->dir, sizeof(l->dir), "/tmp/tally-audit-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    ledger_open(l);
}

static void ledger_close(struct ledger *l)
{
    if (l->e != NULL)
        engine_close(l->e);
    l->e = NULL;
}

static void ledger_remove(struct ledger *l)
{
    ledger_close(l);
    if (getenv("TALLY_TEST_KEEP") != NULL) {
        fprintf(stderr, "kept %s\n", l->dir);
        return;
    }
    DIR *d = opendir(l->dir);
    if (d != NULL) {
        struct dirent *de;
        char path[64 + 1 + sizeof(de->d_name)];
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", l->dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(l->dir);
}

/* Apply one batch; every posting must succeed. Returns the first entry of posting `which`. */
static uint64_t ledger_apply(struct ledger *l, uint64_t ts, const struct tally_posting *p,
                             uint32_t n, uint32_t which)
{
    struct tally_result res[32];
    assert_true(n <= 32);
    int rc = engine_apply(l->e, ++l->index, ts, p, n, res);
    if (rc != 0)
        ledger_fail("engine_apply: %d %s", rc, tally_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        if (res[i].code != TALLY_OK)
            ledger_fail("posting %u (kind %u) failed: %s", i, p[i].kind,
                        tally_result_name(res[i].code));
    return n > which ? res[which].seq : 0;
}

static void ledger_tick(struct ledger *l, uint64_t ts)
{
    int rc = engine_apply(l->e, ++l->index, ts, NULL, 0, NULL);
    if (rc != 0)
        ledger_fail("engine_apply (tick): %d %s", rc, tally_strerror(rc));
}

/* Posting n of kind `kind`: id n big-endian in the low bytes, like the CLI's decimal ids. */
static struct tally_posting posting(uint64_t id, uint32_t program, uint16_t kind, uint64_t account,
                                    uint64_t amount)
{
    struct tally_posting p;
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < 8; i++)
        p.id[15 - i] = (uint8_t)(id >> (8 * i));
    p.program = program;
    p.kind = kind;
    p.account = account;
    p.amount = amount;
    return p;
}

static struct tally_posting with_ref(struct tally_posting p, uint64_t ref)
{
    for (int i = 0; i < 8; i++)
        p.ref[15 - i] = (uint8_t)(ref >> (8 * i));
    return p;
}

static struct tally_posting program_posting(uint64_t id, uint32_t program, uint8_t expiry,
                                            uint32_t expiry_n, int32_t tz)
{
    struct tally_posting p = posting(id, program, TALLY_KIND_PROGRAM, 0, 0);
    p.config.expiry = expiry;
    p.config.expiry_n = expiry_n;
    p.config.tz_offset_min = tz;
    p.config.tier_mode = TALLY_TIER_DOWN_STEP;
    p.config.window = TALLY_WINDOW_ROLLING;
    p.config.window_months = 12;
    p.config.validity_months = 12;
    p.config.tier_count = 3;
    p.config.hold_timeout_ms = 15 * MIN_MS;
    p.config.thresholds[0] = 1000;
    p.config.thresholds[1] = 5000;
    return p;
}

/* =============================================================================================
 * The ledgers.
 * =========================================================================================== */

/* Program 1 in UTC+8 (lots expire at the end of the month after earning, tiers step down):
 * every kind of entry, time-driven ones included (hold timeout, activation, expiry, tier
 * evaluation), and an accrual a year later so the QV ring turns. */
static void build_rich(struct ledger *l)
{
    uint64_t t0 = at("2026-03-15T10:00Z");
    struct tally_posting b1[] = {
        program_posting(1, PROG, TALLY_EXPIRY_MONTH, 1, 480),
        posting(2, PROG, TALLY_KIND_OPEN, ALICE, 0),
        posting(3, PROG, TALLY_KIND_OPEN, BOB, 0),
        posting(4, PROG, TALLY_KIND_OPEN, CAROL, 0),
        posting(5, PROG, TALLY_KIND_ACCRUE, ALICE, 1000),
        posting(6, PROG, TALLY_KIND_ACCRUE, BOB, 500),
        posting(7, PROG, TALLY_KIND_REDEEM, ALICE, 300),
        posting(8, PROG, TALLY_KIND_ADJUST, BOB, 50),
        posting(9, PROG, TALLY_KIND_ADJUST, BOB, 20),
    };
    b1[4].value = 6000; /* crosses tier 2: an UPGRADE entry follows */
    memcpy(b1[4].user_data, marker, sizeof(marker));
    b1[5].value = 100;
    b1[7].code = 9;
    b1[8].code = 9;
    b1[8].flags = TALLY_FLAG_NEGATIVE;
    l->marker_seq = ledger_apply(l, t0, b1, 9, 4);
    l->marker_ts = t0;

    uint64_t t1 = t0 + HOUR_MS;
    struct tally_posting b2[] = {
        posting(10, PROG, TALLY_KIND_HOLD, ALICE, 200),
        with_ref(posting(11, PROG, TALLY_KIND_CAPTURE, ALICE, 150), 10),
        with_ref(posting(12, PROG, TALLY_KIND_REVERSE, ALICE, 100), 7),
        posting(13, PROG, TALLY_KIND_TRANSFER, ALICE, 100),
        posting(14, PROG, TALLY_KIND_ACCRUE, CAROL, 70),
        posting(15, PROG, TALLY_KIND_ACCRUE, BOB, 30),
        with_ref(posting(16, PROG, TALLY_KIND_CANCEL, BOB, 0), 15),
        with_ref(posting(17, PROG, TALLY_KIND_REVERSE, BOB, 250), 6),
        posting(18, PROG, TALLY_KIND_HOLD, BOB, 10),
    };
    b2[3].account2 = CAROL;
    b2[4].flags = TALLY_FLAG_PENDING;
    b2[4].duration_ms = 7 * DAY_MS;
    b2[4].value = 70;
    b2[5].flags = TALLY_FLAG_PENDING;
    b2[5].duration_ms = 7 * DAY_MS;
    b2[5].value = 30;
    ledger_apply(l, t1, b2, 9, 0);

    ledger_tick(l, t1 + 20 * MIN_MS); /* hold 18 times out */
    ledger_tick(l, t0 + 8 * DAY_MS);  /* Carol's pending accrual activates */
    struct tally_posting b3[] = {posting(19, PROG, TALLY_KIND_CLOSE, CAROL, 0)};
    l->close_seq = ledger_apply(l, t0 + 8 * DAY_MS, b3, 1, 0);
    ledger_tick(l, at("2026-05-02")); /* March lots expired at 2026-05-01 local */
    struct tally_posting b4[] = {posting(20, PROG, TALLY_KIND_ACCRUE, ALICE, 40)};
    b4[0].value = 10;
    ledger_apply(l, at("2026-06-10"), b4, 1, 0);
    ledger_tick(l, at("2027-04-02")); /* tier evaluation: 2 falls to 1 or 0 */
    struct tally_posting b5[] = {posting(21, PROG, TALLY_KIND_ACCRUE, ALICE, 5)};
    b5[0].value = 1;
    ledger_apply(l, at("2027-05-20"), b5, 1, 0);
}

/* Program 2 (no expiry) and program 7, with totals worked out by hand:
 *   program 2: issued 1000+500+200 = 1700, redeemed 300, expired 630 (Bob's close),
 *              adjusted +50-20 = 30, outstanding 600 (Alice, 100 of it held) + 200 (Carol) = 800,
 *              members 3;   1700 - 300 - 630 + 30 = 800.
 *   program 7: issued 10, outstanding 10, members 1. */
static void build_small(struct ledger *l)
{
    uint64_t t0 = at("2026-03-15T10:00Z");
    struct tally_posting b1[] = {
        program_posting(1, 2, TALLY_EXPIRY_NONE, 0, 0),
        posting(2, 2, TALLY_KIND_OPEN, ALICE, 0),
        posting(3, 2, TALLY_KIND_OPEN, BOB, 0),
        posting(4, 2, TALLY_KIND_ACCRUE, ALICE, 1000),
        posting(5, 2, TALLY_KIND_ACCRUE, BOB, 500),
        posting(6, 2, TALLY_KIND_REDEEM, ALICE, 300),
        posting(7, 2, TALLY_KIND_ADJUST, BOB, 50),
        posting(8, 2, TALLY_KIND_ADJUST, BOB, 20),
        posting(9, 2, TALLY_KIND_TRANSFER, ALICE, 100),
        posting(10, 2, TALLY_KIND_CLOSE, BOB, 0),
        posting(11, 2, TALLY_KIND_OPEN, CAROL, 0),
        posting(12, 2, TALLY_KIND_ACCRUE, CAROL, 200),
        posting(13, 2, TALLY_KIND_HOLD, ALICE, 100),
        program_posting(14, 7, TALLY_EXPIRY_NONE, 0, 0),
        posting(15, 7, TALLY_KIND_OPEN, 1, 0),
        posting(16, 7, TALLY_KIND_ACCRUE, 1, 10),
    };
    b1[6].code = 3;
    b1[7].code = 3;
    b1[7].flags = TALLY_FLAG_NEGATIVE;
    b1[8].account2 = BOB;
    ledger_apply(l, t0, b1, 16, 0);
}

/* Program 3 allows debts: a reversal of an accrual already spent takes available below zero, and
 * later credits (accrual, positive adjustment, activation) pay the debt before any lot gets
 * points. */
static void build_debt(struct ledger *l)
{
    uint64_t t0 = at("2026-03-15T10:00Z");
    struct tally_posting b1[] = {
        program_posting(1, 3, TALLY_EXPIRY_NONE, 0, 0),
        posting(2, 3, TALLY_KIND_OPEN, ALICE, 0),
        posting(3, 3, TALLY_KIND_ACCRUE, ALICE, 100),
        posting(4, 3, TALLY_KIND_REDEEM, ALICE, 80),
        with_ref(posting(5, 3, TALLY_KIND_REVERSE, ALICE, 0), 3), /* available 20 - 100 */
        posting(6, 3, TALLY_KIND_ACCRUE, ALICE, 50),              /* pays 50 of the debt */
        posting(7, 3, TALLY_KIND_ADJUST, ALICE, 50),              /* pays 30, lot of 20 */
        posting(8, 3, TALLY_KIND_ADJUST, ALICE, 40),              /* 20 - 40: a debt again */
        posting(9, 3, TALLY_KIND_ACCRUE, ALICE, 30),              /* pending */
    };
    b1[0].config.flags = TALLY_PROGRAM_ALLOW_NEGATIVE;
    b1[2].value = 100;
    b1[6].code = 1;
    b1[7].code = 1;
    b1[7].flags = TALLY_FLAG_NEGATIVE;
    b1[8].flags = TALLY_FLAG_PENDING;
    b1[8].duration_ms = DAY_MS;
    ledger_apply(l, t0, b1, 9, 0);
    ledger_tick(l, t0 + 2 * DAY_MS); /* activation pays the last 20, the lot keeps 10 */
}

/* Program 5: a member closed while part of its points are still pending. The CLOSE forfeits 140
 * points, 40 of them pending: its value. */
static void build_close_pending(struct ledger *l)
{
    uint64_t t0 = at("2026-03-15T10:00Z");
    struct tally_posting b1[] = {
        program_posting(1, 5, TALLY_EXPIRY_NONE, 0, 0),
        posting(2, 5, TALLY_KIND_OPEN, DAVE, 0),
        posting(3, 5, TALLY_KIND_ACCRUE, DAVE, 100),
        posting(4, 5, TALLY_KIND_ACCRUE, DAVE, 40),
    };
    b1[3].flags = TALLY_FLAG_PENDING;
    b1[3].duration_ms = 7 * DAY_MS;
    ledger_apply(l, t0, b1, 4, 0);
    struct tally_posting b2[] = {posting(5, 5, TALLY_KIND_CLOSE, DAVE, 0)};
    l->close_seq = ledger_apply(l, t0 + DAY_MS, b2, 1, 0);
}

/* After build_rich and a checkpoint (close, reopen): Dave opens and earns, Alice redeems 2 and
 * then 3 in another batch. Until the next checkpoint, Alice and the system accounts of program 1
 * are newer in the entries than in `members` (the write-back sweep passes a few buckets per
 * batch), and Dave is probably not in `members` at all. */
static void build_after_checkpoint(struct ledger *l)
{
    struct tally_posting b1[] = {
        posting(30, PROG, TALLY_KIND_OPEN, DAVE, 0),
        posting(31, PROG, TALLY_KIND_ACCRUE, DAVE, 25),
        posting(32, PROG, TALLY_KIND_REDEEM, ALICE, 2),
    };
    ledger_apply(l, at("2027-06-01"), b1, 3, 0);
    struct tally_posting b2[] = {posting(33, PROG, TALLY_KIND_REDEEM, ALICE, 3)};
    ledger_apply(l, at("2027-06-02"), b2, 1, 0);
}

/* The crash: in a child process, build_rich, checkpoint (close and reopen), then
 * build_after_checkpoint, and leave without closing the engine. */
static void build_crashed(struct ledger *l)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->dir, sizeof(l->dir), "/tmp/tally-audit-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        in_child = true;
        ledger_open(l);
        build_rich(l);
        ledger_close(l);
        ledger_open(l);
        build_after_checkpoint(l);
        _exit(0); /* no engine_close: no checkpoint */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the child building the ledger failed (status %d)", status);
}

/* =============================================================================================
 * Finding and flipping one byte of a live record.
 * =========================================================================================== */

static void file_read(const char *dir, long off, void *buf, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, n, off), (ssize_t)n);
    close(fd);
}

/* Offset in DIR/data.mdb of the value stored under `key` in sub-database `db` (key NULL: the
 * first record of db, or the last if key_size is 1); *size gets the value's size. LMDB maps the file page by page, and every
 * page begins with its own page number (lmdb.h's MDB_page: mp_pgno first), so the offset is the
 * number of the page the value lies in times the page size, plus where it lies in that page. The
 * caller checks the bytes found there against the record it expects. */
static long value_offset(const char *dir, const char *db, unsigned flags, const void *key,
                         size_t key_size, size_t *size)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_env_stat(env, &st), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, flags, &dbi), 0);
    MDB_val k = {.mv_size = key_size, .mv_data = (void *)key};
    MDB_val v;
    if (key != NULL) {
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    } else {
        MDB_cursor *c;
        assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
        assert_int_equal(mdb_cursor_get(c, &k, &v, key_size == 1 ? MDB_LAST : MDB_FIRST), 0);
        mdb_cursor_close(c);
    }
    uintptr_t p = (uintptr_t)v.mv_data;
    uintptr_t page = p & ~((uintptr_t)st.ms_psize - 1);
    uint64_t pgno;
    memcpy(&pgno, (const void *)page, sizeof(pgno));
    long off = (long)(pgno * st.ms_psize + (p - page));
    *size = v.mv_size;
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    uint8_t *in_file = malloc(*size);
    assert_non_null(in_file);
    file_read(dir, off, in_file, *size);
    assert_memory_equal(in_file, copy, *size); /* found the live copy */
    free(in_file);
    free(copy);
    return off;
}

/* XOR one byte of DIR/data.mdb at `off` with `mask`. */
static void file_flip(const char *dir, long off, uint8_t mask)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* Rewrite entry `seq` with `edit`, then re-hash it and every later entry and fix the chain head
 * and checksum of meta: what someone who knows the format (XXH3 is no secret) could do. Only the
 * fold can catch this. */
static void rechain_edit(const char *dir, uint64_t seq, void (*edit)(struct tally_entry *))
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi entries, meta;
    MDB_cursor *c;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "entries", MDB_INTEGERKEY, &entries), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint64_t prev = 0;
    uint64_t key = seq - 1;
    MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
    MDB_val v;
    if (seq > 1) {
        assert_int_equal(mdb_get(txn, entries, &k, &v), 0);
        memcpy(&prev, v.mv_data, sizeof(prev));
    }
    key = seq;
    assert_int_equal(mdb_cursor_open(txn, entries, &c), 0);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        assert_true(v.mv_size <= (1u << 20));
        memcpy(buf, v.mv_data, v.mv_size);
        struct tally_entry e;
        memcpy(&e, buf, sizeof(e));
        if (e.seq == seq)
            edit(&e);
        memcpy(buf, &e, sizeof(e));
        e.hash = XXH3_64bits_withSeed(buf + 8, v.mv_size - 8, prev);
        memcpy(buf, &e.hash, sizeof(e.hash));
        prev = e.hash;
        MDB_val nv = {.mv_size = v.mv_size, .mv_data = buf};
        assert_int_equal(mdb_cursor_put(c, &k, &nv, MDB_CURRENT), 0);
    }
    mdb_cursor_close(c);
    struct store_meta m;
    k = (MDB_val){.mv_size = 5, .mv_data = "state"};
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    memcpy(&m, v.mv_data, sizeof(m));
    m.chain_head = prev;
    m.checksum = XXH3_64bits(&m, offsetof(struct store_meta, checksum));
    v = (MDB_val){.mv_size = sizeof(m), .mv_data = &m};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(buf);
}

/* Delete (value NULL) or put one record of the members table, behind the engine's back. */
static void members_write(const char *dir, const uint8_t *key, size_t key_size, const void *value,
                          size_t size)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "members", 0, &dbi), 0);
    MDB_val k = {.mv_size = key_size, .mv_data = (void *)key};
    MDB_val v = {.mv_size = size, .mv_data = (void *)value};
    assert_int_equal(value == NULL ? mdb_del(txn, dbi, &k, NULL) : mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Offset in DIR/data.mdb of the image of (program, member) in `members`; *size its size. */
static long member_offset(const char *dir, uint32_t program, uint64_t member, size_t *size)
{
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, program, member);
    long off = value_offset(dir, "members", 0, key, sizeof(key), size);
    assert_true(*size >= sizeof(struct tally_account));
    return off;
}

/* A copy of the image of (program, member) in `members` (free it); *size its size. */
static uint8_t *member_image(const char *dir, uint32_t program, uint64_t member, size_t *size)
{
    long off = member_offset(dir, program, member, size);
    uint8_t *img = malloc(*size + sizeof(struct tally_lot));
    assert_non_null(img);
    file_read(dir, off, img, *size);
    return img;
}

/* Whether `members` has a record for (program, member). */
static bool member_stored(const char *dir, uint32_t program, uint64_t member)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, program, member);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "members", 0, &dbi), 0);
    MDB_val k = {.mv_size = sizeof(key), .mv_data = key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc == 0;
}

/* The meta record of DIR. */
static struct store_meta meta_get(const char *dir)
{
    size_t size;
    long off = value_offset(dir, "meta", 0, "state", 5, &size);
    assert_int_equal(size, sizeof(struct store_meta));
    struct store_meta m;
    file_read(dir, off, &m, sizeof(m));
    return m;
}

/* Rewrite the meta record of DIR, its checksum made to match: a change only the auditor's
 * reading of the fields can catch. */
static void meta_put(const char *dir, struct store_meta m)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    m.checksum = XXH3_64bits(&m, offsetof(struct store_meta, checksum));
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {.mv_size = 5, .mv_data = "state"};
    MDB_val v = {.mv_size = sizeof(m), .mv_data = &m};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Images in DIR's `members`. */
static size_t members_count(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "members", 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return st.ms_entries;
}

/* Open the engine read-only: it folds the entries from fold_from into its cache (recovery) and
 * writes nothing back, so the files stay as the crash left them. */
static void ledger_open_read_only(struct ledger *l)
{
    struct engine_options o;
    engine_options_default(&o);
    o.read_only = true;
    int rc = engine_open(&l->e, l->dir, &o);
    if (rc != 0)
        fail_msg("engine_open(%s, read-only): %d %s", l->dir, rc, tally_strerror(rc));
}

static void verify_ok(const char *dir, struct audit_report *r)
{
    int rc = audit_verify(dir, r);
    if (rc != 0)
        fail_msg("audit_verify: %d %s", rc, tally_strerror(rc));
    if (!r->ok)
        fail_msg("audit_verify found a difference at seq %llu: %s", (unsigned long long)r->bad_seq,
                 r->what);
}

/* audit_verify must run and report a difference whose text contains every one of `words`. */
static void verify_finds(const char *dir, struct audit_report *r, const char *const *words)
{
    assert_int_equal(audit_verify(dir, r), 0);
    if (r->ok)
        fail_msg("audit_verify did not notice the change");
    for (const char *const *w = words; *w != NULL; w++)
        if (strstr(r->what, *w) == NULL)
            fail_msg("the difference \"%s\" does not mention \"%s\"", r->what, *w);
}

/* =============================================================================================
 * Tests.
 * =========================================================================================== */

static void test_verify_accepts_every_kind_of_entry_the_engine_writes(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct engine_status st;
    engine_status(l.e, &st);
    ledger_close(&l);
    struct audit_report r;
    verify_ok(l.dir, &r);
    assert_int_equal(r.entries, st.entries);
    assert_int_equal(r.chain_head, st.chain_head);
    assert_int_equal(r.programs, 1);
    assert_int_equal(r.accounts, 3 + TALLY_SYS_COUNT);
    assert_true(r.holds >= 2);
    assert_true(r.lots >= 1);
    assert_int_equal(r.history_rows, 0);  /* layout version 2 has none */
    assert_int_equal(r.images_behind, 0); /* engine_close checkpointed */
    assert_int_equal(r.fold_from, st.entries + 1);
    ledger_remove(&l);
}

static void test_verify_accepts_debts_in_a_program_that_allows_them(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_debt(&l);
    struct tally_account acc;
    assert_int_equal(engine_account(l.e, 3, ALICE, &acc), 0);
    assert_int_equal(acc.available, 10);
    ledger_close(&l);
    struct audit_report r;
    verify_ok(l.dir, &r);
    ledger_remove(&l);
}

static void test_flipped_amount_byte_of_an_entry_is_reported_at_that_entry(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    ledger_close(&l);
    uint64_t seq = l.marker_seq;
    size_t size;
    long off = value_offset(l.dir, "entries", MDB_INTEGERKEY, &seq, sizeof(seq), &size);
    uint8_t user_data[32];
    file_read(l.dir, off + (long)offsetof(struct tally_entry, user_data), user_data, 32);
    assert_memory_equal(user_data, marker, 32); /* the live copy of the marked entry */

    file_flip(l.dir, off + (long)offsetof(struct tally_entry, amount), 0x01);
    struct audit_report r;
    char name[32];
    snprintf(name, sizeof(name), "entry %llu", (unsigned long long)seq);
    const char *const words[] = {name, "hash", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, seq);
    assert_int_equal(r.entries, seq - 1); /* everything before it checked out */
    ledger_remove(&l);
}

static void add_one_point(struct tally_entry *e)
{
    e->amount += 1;
}

static void step_tier_down(struct tally_entry *e)
{
    e->tier_to = (uint8_t)(e->tier_to - 1);
}

static void test_rechained_edit_of_an_accrual_is_caught_by_the_fold(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    ledger_close(&l);
    rechain_edit(l.dir, l.marker_seq, add_one_point);
    struct audit_report r;
    char name[32];
    snprintf(name, sizeof(name), "entry %llu (ACCRUE", (unsigned long long)l.marker_seq);
    const char *const words[] = {name, "member 42", "1001", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, l.marker_seq);
    ledger_remove(&l);
}

/* The accrual of value 6000 earns tier 2 (threshold 5000): a rewritten UPGRADE to tier 1 is
 * recomputed from the QV ring and the ladder, and refused. */
static void test_rechained_edit_of_a_tier_change_is_caught_by_the_ladder(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct tally_entry en;
    uint32_t n = 0;
    assert_int_equal(engine_entry(l.e, l.marker_seq + 1, &en, NULL, 0, &n), 0);
    assert_int_equal(en.kind, TALLY_KIND_TIER_CHANGE);
    assert_int_equal(en.tier_to, 2);
    ledger_close(&l);
    rechain_edit(l.dir, l.marker_seq + 1, step_tier_down);
    struct audit_report r;
    const char *const words[] = {"TIER_CHANGE", "tier 0 -> 1", "give tier 2", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, l.marker_seq + 1);
    ledger_remove(&l);
}

static void one_entry_later(struct tally_entry *e)
{
    e->credit_prev += 1;
}

/* The marker accrual moves points from ISSUANCE to Alice: its credit_prev must name Alice's OPEN
 * (entry 2), the previous entry of her account. */
static void test_rechained_edit_of_a_back_link_is_caught(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct tally_entry en;
    uint32_t n = 0;
    assert_int_equal(engine_entry(l.e, l.marker_seq, &en, NULL, 0, &n), 0);
    assert_int_equal(en.credit, ALICE);
    assert_int_equal(en.debit_prev, 0); /* ISSUANCE is no member */
    ledger_close(&l);
    rechain_edit(l.dir, l.marker_seq, one_entry_later);
    struct audit_report r;
    char name[32], found[48], want[48];
    snprintf(name, sizeof(name), "entry %llu (ACCRUE", (unsigned long long)l.marker_seq);
    snprintf(found, sizeof(found), "credit_prev is %llu", (unsigned long long)en.credit_prev + 1);
    snprintf(want, sizeof(want), "member 42 (its credit side) is %llu",
             (unsigned long long)en.credit_prev);
    const char *const words[] = {name, found, want, NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, l.marker_seq);
    ledger_remove(&l);
}

static void one_more_pending(struct tally_entry *e)
{
    e->value += 1;
}

/* A CLOSE's value is the pending part of what it forfeits: the engine writes 40 (the pending
 * accrual), and a value the pending lots do not give is refused. */
static void test_close_value_is_the_pending_part_and_is_checked_against_the_lots(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_close_pending(&l);
    struct tally_entry en;
    uint32_t n = 0;
    assert_int_equal(engine_entry(l.e, l.close_seq, &en, NULL, 0, &n), 0);
    assert_int_equal(en.kind, TALLY_KIND_CLOSE);
    assert_int_equal(en.amount, 140);
    assert_int_equal(en.value, 40);
    ledger_close(&l);
    struct audit_report r;
    verify_ok(l.dir, &r);
    rechain_edit(l.dir, l.close_seq, one_more_pending);
    char name[32];
    snprintf(name, sizeof(name), "entry %llu (CLOSE", (unsigned long long)l.close_seq);
    const char *const words[] = {name, "says 41 of the 140", "take 40 from pending lots", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, l.close_seq);
    ledger_remove(&l);
}

static void test_flipped_byte_of_an_account_is_reported_with_its_field(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct tally_account acc;
    assert_int_equal(engine_account(l.e, PROG, ALICE, &acc), 0);
    ledger_close(&l);
    size_t size;
    long off = member_offset(l.dir, PROG, ALICE, &size);
    assert_int_equal(size, sizeof(acc) + acc.lots_open * sizeof(struct tally_lot));
    struct tally_account stored;
    file_read(l.dir, off, &stored, sizeof(stored));
    assert_memory_equal(&stored, &acc, sizeof(acc)); /* the image starts with the account */

    file_flip(l.dir, off + (long)offsetof(struct tally_account, earned), 0x04);
    struct audit_report r;
    char as_of[48];
    snprintf(as_of, sizeof(as_of), "(in members) as of entry %llu",
             (unsigned long long)acc.last_seq);
    const char *const words[] = {"account of member 42", as_of, "earned", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, acc.last_seq);
    ledger_remove(&l);
}

static void test_flipped_byte_of_a_lot_is_reported_with_its_field(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct tally_lot lot;
    uint32_t n = 0;
    assert_int_equal(engine_lots(l.e, PROG, ALICE, &lot, 1, &n), 0);
    assert_int_equal(n, 1);
    ledger_close(&l);
    size_t size;
    long off = member_offset(l.dir, PROG, ALICE, &size) + (long)sizeof(struct tally_account);
    struct tally_lot stored; /* the soonest-expiring lot comes first, right after the account */
    file_read(l.dir, off, &stored, sizeof(stored));
    assert_memory_equal(&stored, &lot, sizeof(lot));

    file_flip(l.dir, off + (long)offsetof(struct tally_lot, remaining), 0x02);
    struct audit_report r;
    char name[32];
    snprintf(name, sizeof(name), "lot %llu of member 42", (unsigned long long)lot.lot_id);
    const char *const words[] = {name, "remaining", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_deleted_account_is_reported_missing(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, 2, CAROL);
    members_write(l.dir, key, sizeof(key), NULL, 0);
    struct audit_report r;
    const char *const words[] = {"account of member 44 in program 2", "not stored", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_added_lot_is_reported_as_one_no_entry_made(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    /* Carol's one lot never expires and has a lower id: lot 999 goes after it, in order. */
    size_t size;
    uint8_t *img = member_image(l.dir, 2, CAROL, &size);
    struct tally_account acc;
    memcpy(&acc, img, sizeof(acc));
    assert_int_equal(acc.lots_open, 1);
    struct tally_lot lot = {.lot_id = 999, .expires_at = UINT64_MAX, .amount = 5, .remaining = 5};
    memcpy(img + size, &lot, sizeof(lot));
    acc.lots_open++;
    memcpy(img, &acc, sizeof(acc));
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, 2, CAROL);
    members_write(l.dir, key, sizeof(key), img, size + sizeof(lot));
    free(img);
    struct audit_report r;
    const char *const words[] = {"lot 999 of member 44", "is stored", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_member_image_of_a_wrong_size_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    uint8_t *img = member_image(l.dir, 2, ALICE, &size);
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, 2, ALICE);
    members_write(l.dir, key, sizeof(key), img, size - 1);
    free(img);
    struct audit_report r;
    const char *const words[] = {"members", "image of member 42 in program 2",
                                 "not a 240-byte account followed by whole 64-byte lots", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_member_image_with_lots_out_of_order_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    uint8_t *img = member_image(l.dir, 2, CAROL, &size);
    struct tally_account acc;
    memcpy(&acc, img, sizeof(acc));
    struct tally_lot lot;
    memcpy(&lot, img + sizeof(acc), sizeof(lot));
    lot.lot_id = 1; /* lower than Carol's lot, same expiry: it must come first, not after */
    memcpy(img + size, &lot, sizeof(lot));
    acc.lots_open++;
    memcpy(img, &acc, sizeof(acc));
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, 2, CAROL);
    members_write(l.dir, key, sizeof(key), img, size + sizeof(lot));
    free(img);
    struct audit_report r;
    const char *const words[] = {"image of member 44 in program 2", "lot 1", "not in (expires_at, "
                                 "lot_id) order", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void clear_remainder(struct tally_entry *e)
{
    e->flags = (uint16_t)(e->flags & ~TALLY_ENTRY_REMAINDER);
}

/* CAPTURE 150 of a hold of 200 is followed by the RELEASE of the other 50, flagged REMAINDER:
 * without the flag, that RELEASE names a hold the capture already resolved. */
static void test_rechained_release_without_its_remainder_flag_is_caught(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_rich(&l);
    struct engine_status st;
    engine_status(l.e, &st);
    struct tally_entry en, capture;
    uint32_t n = 0;
    uint64_t seq = 0;
    for (uint64_t s = 2; s <= st.entries && seq == 0; s++) {
        assert_int_equal(engine_entry(l.e, s, &en, NULL, 0, &n), 0);
        if (en.kind == TALLY_KIND_RELEASE && (en.flags & TALLY_ENTRY_REMAINDER) != 0)
            seq = s;
    }
    assert_int_not_equal(seq, 0);
    assert_true((en.flags & TALLY_ENTRY_AUTO) != 0);
    assert_int_equal(en.amount, 50);
    assert_int_equal(engine_entry(l.e, seq - 1, &capture, NULL, 0, &n), 0);
    assert_int_equal(capture.kind, TALLY_KIND_CAPTURE);
    assert_int_equal(capture.ref_seq, en.ref_seq);
    ledger_close(&l);
    struct audit_report r;
    verify_ok(l.dir, &r);
    rechain_edit(l.dir, seq, clear_remainder);
    char left[64], which[48];
    snprintf(left, sizeof(left), "entry %llu (CAPTURE) left 50 points of hold %llu",
             (unsigned long long)(seq - 1), (unsigned long long)en.ref_seq);
    snprintf(which, sizeof(which), "entry %llu (RELEASE", (unsigned long long)seq);
    const char *const words[] = {left, which, "no RELEASE flagged REMAINDER", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, seq);
    ledger_remove(&l);
}

/* A process that dies between checkpoints leaves images in `members` older than the entries:
 * the ledger is whole, the auditor compares each image as of its own last entry, and the trial
 * balance is the state the engine rebuilds when it opens the directory again. */
static void test_crashed_ledger_verifies_and_balances_as_the_engine_recovers_it(void **state)
{
    (void)state;
    struct ledger l;
    build_crashed(&l);
    /* The premise: fold_from below next_seq, and Alice's image behind her newest entry. */
    struct store_meta m = meta_get(l.dir);
    assert_true(m.fold_from >= 1);
    assert_true(m.fold_from < m.next_seq);
    size_t size;
    uint8_t *img = member_image(l.dir, PROG, ALICE, &size);
    struct tally_account stale;
    memcpy(&stale, img, sizeof(stale));
    free(img);
    ledger_open_read_only(&l);
    struct tally_account alice;
    assert_int_equal(engine_account(l.e, PROG, ALICE, &alice), 0);
    struct tally_program_config cfg;
    struct tally_program_totals recovered;
    assert_int_equal(engine_program(l.e, PROG, &cfg, &recovered), 0);
    ledger_close(&l);
    assert_true(stale.last_seq < alice.last_seq);
    assert_int_equal(alice.redeemed, stale.redeemed + 5);

    struct audit_report r;
    verify_ok(l.dir, &r);
    assert_int_equal(r.fold_from, m.fold_from);
    assert_int_equal(r.entries, m.next_seq - 1);
    assert_true(r.images_behind >= 3); /* Alice, ISSUANCE and REDEMPTION at least */
    assert_int_equal(r.accounts, members_count(l.dir));

    struct tally_program_totals t[2];
    bool balanced[2];
    uint32_t n = 0;
    assert_int_equal(audit_trial_balance(l.dir, t, balanced, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_true(balanced[0]);
    assert_memory_equal(&t[0], &recovered, sizeof(recovered));

    /* Reopened for writing, the engine recovers, checkpoints and reports the same totals; the
     * images are then current and fold_from is next_seq. */
    ledger_open(&l);
    struct tally_program_totals reopened;
    assert_int_equal(engine_program(l.e, PROG, &cfg, &reopened), 0);
    ledger_close(&l);
    assert_memory_equal(&reopened, &t[0], sizeof(reopened));
    assert_true(member_stored(l.dir, PROG, DAVE));
    struct audit_report r2;
    verify_ok(l.dir, &r2);
    assert_int_equal(r2.images_behind, 0);
    assert_int_equal(r2.fold_from, r.entries + 1);
    assert_int_equal(r2.entries, r.entries);
    assert_int_equal(r2.chain_head, r.chain_head);
    assert_int_equal(r2.accounts, 4 + TALLY_SYS_COUNT);
    assert_int_equal(audit_trial_balance(l.dir, t, balanced, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(&t[0], &reopened, sizeof(reopened));
    ledger_remove(&l);
}

/* An image older than the entries is still checked: against the replay as of its last entry. */
static void test_flipped_byte_of_a_stale_image_is_reported_at_its_last_entry(void **state)
{
    (void)state;
    struct ledger l;
    build_crashed(&l);
    size_t size;
    long off = member_offset(l.dir, PROG, ALICE, &size);
    struct tally_account stale;
    file_read(l.dir, off, &stale, sizeof(stale));
    assert_int_equal(stale.member, ALICE);
    ledger_open_read_only(&l);
    struct tally_account alice;
    assert_int_equal(engine_account(l.e, PROG, ALICE, &alice), 0);
    ledger_close(&l);
    assert_true(stale.last_seq < alice.last_seq); /* the premise: the image is behind */

    file_flip(l.dir, off + (long)offsetof(struct tally_account, available), 0x01);
    struct audit_report r;
    char as_of[48];
    snprintf(as_of, sizeof(as_of), "(in members) as of entry %llu",
             (unsigned long long)stale.last_seq);
    const char *const words[] = {"account of member 42 in program 1", as_of, "available", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, stale.last_seq);
    ledger_remove(&l);
}

/* fold_from promises that `members` holds every change before it: moved past changes that were
 * not written back, the promise is broken (a restart would not fold them). */
static void test_image_behind_a_change_before_fold_from_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    build_crashed(&l);
    struct audit_report r;
    verify_ok(l.dir, &r);
    assert_true(r.images_behind > 0);
    struct store_meta m = meta_get(l.dir);
    m.fold_from = m.next_seq;
    meta_put(l.dir, m);
    char from[48];
    snprintf(from, sizeof(from), "before fold_from (%llu)", (unsigned long long)m.next_seq);
    const char *const words[] = {from, "every change before fold_from must be in members", NULL};
    verify_finds(l.dir, &r, words);
    assert_true(r.bad_seq > 0 && r.bad_seq < m.next_seq);
    ledger_remove(&l);
}

static void test_fold_from_outside_the_entries_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    struct store_meta m = meta_get(l.dir);
    assert_int_equal(m.fold_from, m.next_seq);
    m.fold_from = m.next_seq + 1;
    meta_put(l.dir, m);
    struct audit_report r;
    const char *const past[] = {"meta: fold_from", "is not written yet", NULL};
    verify_finds(l.dir, &r, past);
    m.fold_from = 0;
    meta_put(l.dir, m);
    const char *const zero[] = {"meta: fold_from is 0", NULL};
    verify_finds(l.dir, &r, zero);
    ledger_remove(&l);
}

/* An image is the state right after an entry of its account: one that claims to include up to
 * an entry naming someone else (here the PROGRAM entry, 1) is never compared, and is reported. */
static void test_image_whose_last_seq_names_no_entry_of_its_account_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    uint8_t *img = member_image(l.dir, 2, CAROL, &size);
    struct tally_account acc;
    memcpy(&acc, img, sizeof(acc));
    assert_true(acc.last_seq > 1);
    acc.last_seq = 1;
    memcpy(img, &acc, sizeof(acc));
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, 2, CAROL);
    members_write(l.dir, key, sizeof(key), img, size);
    free(img);
    struct audit_report r;
    const char *const words[] = {"account of member 44 in program 2 (in members)",
                                 "entries up to 1 (its last_seq)", "does not name it", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, 1);
    ledger_remove(&l);
}

/* Timers are not re-derived; only the state sum covers them. */
static void test_flipped_byte_of_a_timer_breaks_the_state_sum(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l); /* Alice's hold leaves its timeout timer */
    ledger_close(&l);
    size_t size;
    long off = value_offset(l.dir, "timers", 0, NULL, 0, &size);
    assert_int_equal(size, sizeof(struct store_timer));

    file_flip(l.dir, off + (long)offsetof(struct store_timer, aux), 0x80);
    struct audit_report r;
    const char *const words[] = {"state sum", NULL};
    verify_finds(l.dir, &r, words);
    assert_int_equal(r.bad_seq, 0);
    ledger_remove(&l);
}

/* The shape of a timer is checked: its kind is one storage.h knows. */
static void test_timer_of_an_unknown_kind_is_reported(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    long off = value_offset(l.dir, "timers", 0, NULL, 0, &size);
    struct store_timer timer;
    file_read(l.dir, off, &timer, sizeof(timer));
    assert_int_equal(timer.kind, STORE_TIMER_HOLD_TIMEOUT);
    file_flip(l.dir, off + (long)offsetof(struct store_timer, kind), 0x40);
    struct audit_report r;
    const char *const words[] = {"timer", "unknown kind 66", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_flipped_byte_of_meta_fails_its_checksum(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    long off = value_offset(l.dir, "meta", 0, "state", 5, &size);
    assert_int_equal(size, sizeof(struct store_meta));

    file_flip(l.dir, off + (long)offsetof(struct store_meta, next_seq), 0x01);
    struct audit_report r;
    const char *const words[] = {"meta", "checksum", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_trial_balance_gives_worked_totals_per_program(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    struct tally_program_config cfg;
    struct tally_program_totals engine_totals;
    assert_int_equal(engine_program(l.e, 2, &cfg, &engine_totals), 0);
    ledger_close(&l);

    struct tally_program_totals t[4];
    bool balanced[4];
    uint32_t n = 0;
    assert_int_equal(audit_trial_balance(l.dir, t, balanced, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(t[0].program, 2);
    assert_int_equal(t[0].tier_count, 3);
    assert_int_equal(t[0].issued, 1700);
    assert_int_equal(t[0].redeemed, 300);
    assert_int_equal(t[0].expired, 630);
    assert_int_equal(t[0].adjusted, 30);
    assert_int_equal(t[0].outstanding, 800);
    assert_int_equal(t[0].members, 3);
    assert_true(balanced[0]);
    assert_memory_equal(&t[0], &engine_totals, sizeof(engine_totals));
    assert_int_equal(t[1].program, 7);
    assert_int_equal(t[1].issued, 10);
    assert_int_equal(t[1].redeemed, 0);
    assert_int_equal(t[1].expired, 0);
    assert_int_equal(t[1].adjusted, 0);
    assert_int_equal(t[1].outstanding, 10);
    assert_int_equal(t[1].members, 1);
    assert_true(balanced[1]);

    /* A buffer for one program gets the first one. */
    assert_int_equal(audit_trial_balance(l.dir, t, balanced, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0].program, 2);

    struct audit_report r;
    verify_ok(l.dir, &r);
    ledger_remove(&l);
}

/* The trial balance is the replay of the entries: a stored image changed behind the engine's
 * back does not move the totals (the images may be stale anyway), and verify names the change. */
static void test_trial_balance_is_the_replay_not_the_stored_images(void **state)
{
    (void)state;
    struct ledger l;
    ledger_init(&l);
    build_small(&l);
    ledger_close(&l);
    size_t size;
    long off = member_offset(l.dir, 7, 1, &size);
    file_flip(l.dir, off + (long)offsetof(struct tally_account, available), 0x01); /* 10 -> 11 */

    struct tally_program_totals t[4];
    bool balanced[4];
    uint32_t n = 0;
    assert_int_equal(audit_trial_balance(l.dir, t, balanced, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_true(balanced[0]);
    assert_true(balanced[1]);
    assert_int_equal(t[1].program, 7);
    assert_int_equal(t[1].outstanding, 10);
    assert_int_equal(t[1].issued, 10);
    struct audit_report r;
    const char *const words[] = {"account of member 1 in program 7", "available", "expected 10",
                                 "found 11", NULL};
    verify_finds(l.dir, &r, words);
    ledger_remove(&l);
}

static void test_missing_directory_is_an_error_not_a_difference(void **state)
{
    (void)state;
    struct audit_report r;
    assert_int_equal(audit_verify("/tmp/tally-audit-no-such-dir", &r), -ENOENT);
    assert_false(r.ok);
    char dir[64] = "/tmp/tally-audit-empty-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(audit_verify(dir, &r), -ENOENT); /* no data.mdb */
    struct tally_program_totals t[1];
    bool balanced[1];
    uint32_t n = 5;
    assert_int_equal(audit_trial_balance(dir, t, balanced, 1, &n), -ENOENT);
    assert_int_equal(n, 0);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_accepts_every_kind_of_entry_the_engine_writes),
        cmocka_unit_test(test_verify_accepts_debts_in_a_program_that_allows_them),
        cmocka_unit_test(test_flipped_amount_byte_of_an_entry_is_reported_at_that_entry),
        cmocka_unit_test(test_rechained_edit_of_an_accrual_is_caught_by_the_fold),
        cmocka_unit_test(test_rechained_edit_of_a_tier_change_is_caught_by_the_ladder),
        cmocka_unit_test(test_rechained_edit_of_a_back_link_is_caught),
        cmocka_unit_test(test_close_value_is_the_pending_part_and_is_checked_against_the_lots),
        cmocka_unit_test(test_flipped_byte_of_an_account_is_reported_with_its_field),
        cmocka_unit_test(test_flipped_byte_of_a_lot_is_reported_with_its_field),
        cmocka_unit_test(test_deleted_account_is_reported_missing),
        cmocka_unit_test(test_added_lot_is_reported_as_one_no_entry_made),
        cmocka_unit_test(test_member_image_of_a_wrong_size_is_reported),
        cmocka_unit_test(test_member_image_with_lots_out_of_order_is_reported),
        cmocka_unit_test(test_rechained_release_without_its_remainder_flag_is_caught),
        cmocka_unit_test(test_crashed_ledger_verifies_and_balances_as_the_engine_recovers_it),
        cmocka_unit_test(test_flipped_byte_of_a_stale_image_is_reported_at_its_last_entry),
        cmocka_unit_test(test_image_behind_a_change_before_fold_from_is_reported),
        cmocka_unit_test(test_fold_from_outside_the_entries_is_reported),
        cmocka_unit_test(test_image_whose_last_seq_names_no_entry_of_its_account_is_reported),
        cmocka_unit_test(test_flipped_byte_of_a_timer_breaks_the_state_sum),
        cmocka_unit_test(test_timer_of_an_unknown_kind_is_reported),
        cmocka_unit_test(test_flipped_byte_of_meta_fails_its_checksum),
        cmocka_unit_test(test_trial_balance_gives_worked_totals_per_program),
        cmocka_unit_test(test_trial_balance_is_the_replay_not_the_stored_images),
        cmocka_unit_test(test_missing_directory_is_an_error_not_a_difference),
    };
    return cmocka_run_group_tests_name("audit_tamper", tests, NULL, NULL);
}
