/* support.h: what the engine tests share: a ledger in a fresh temporary directory, posting
 * builders for every kind, apply helpers that check the engine's return code, and time helpers.
 *
 * Every engine test runs against a real engine on a real LMDB directory under /tmp (mkdtemp),
 * removed afterwards (set TALLY_TEST_KEEP=1 to keep it and print its path). Posting ids in tests
 * are small numbers n stored big-endian in the low 8 bytes of the id, the same convention as the
 * CLI's decimal ids, so a failing test names ids a person can type.
 *
 * Helpers fail the current cmocka test (they assert) when the engine returns an error: a test
 * then only states what it expects of the ledger, never how to drive it.
 */
#ifndef TALLY_TESTS_SUPPORT_H
#define TALLY_TESTS_SUPPORT_H

/* cmocka needs these before its own header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "calendar.h"
#include "engine.h"
#include "tally_records.h"
#include "tally_results.h"

#include "../tools/audit_fold.h"

/* Exit code of a test program that cannot run here (the Makefile prints "skipped"). */
#define TEST_EXIT_SKIP 77

/* Lineage buffer size for entry reads in tests: the engine's own bound. */
#define TEST_REFS_MAX TALLY_LINEAGE_MAX

/* Shorthands for the four system accounts. */
#define SYS_ISSUANCE   TALLY_SYS_ISSUANCE
#define SYS_REDEMPTION TALLY_SYS_REDEMPTION
#define SYS_BREAKAGE   TALLY_SYS_BREAKAGE
#define SYS_ADJUSTMENT TALLY_SYS_ADJUSTMENT

#define MINUTE_MS (UINT64_C(60000))
#define HOUR_MS   (UINT64_C(3600000))
#define DAY_MS    CALENDAR_DAY_MS

/* ---------------------------------------------------------------------------------------------
 * Temporary directories.
 * ------------------------------------------------------------------------------------------- */

/* Create a fresh directory $TMPDIR/tally-test-XXXXXX ($TMPDIR: /tmp when unset, empty or longer
 * than 40 bytes); out gets its path. Fails the test on error. */
void tmpdir_make(char out[64]);

/* Remove a directory and everything in it (unless TALLY_TEST_KEEP is set). */
void tmpdir_remove(const char *dir);

/* That the definition a shared library gets when it asks for `name` is `ours` (this executable
 * interposes it, as tallyd does for libraft: server/raft_alloc.h, server/raft_aio.h), and that
 * the next one (libc's) is another. */
void assert_interposed(const char *name, void *ours);

/* ---------------------------------------------------------------------------------------------
 * Time.
 * ------------------------------------------------------------------------------------------- */

/* The instant of an ISO text ("2026-03-15", "2026-03-15T10:30Z", ...) via calendar_parse. */
uint64_t t(const char *iso);

/* ---------------------------------------------------------------------------------------------
 * Ids and postings. Every builder returns a posting with all unused fields zero.
 * ------------------------------------------------------------------------------------------- */

/* Id n: big-endian in bytes 8..15, zero elsewhere (n = 0 gives the zero id). */
void id_make(uint8_t out[16], uint64_t n);

/* A program configuration most tests start from: no expiry, UP_ONLY tiers on a rolling
 * 12-month window with thresholds 1000 and 5000 (three tiers), validity 12 months, holds time
 * out after 15 minutes, UTC. */
void config_default(struct tally_program_config *c);

struct tally_posting post_program(uint64_t id, uint32_t program,
                                  const struct tally_program_config *config);
struct tally_posting post_open(uint64_t id, uint32_t program, uint64_t member);
struct tally_posting post_accrue(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                                 uint64_t value);
struct tally_posting post_accrue_pending(uint64_t id, uint32_t program, uint64_t member,
                                         uint64_t amount, uint64_t value, uint64_t duration_ms);
struct tally_posting post_activate(uint64_t id, uint32_t program, uint64_t member, uint64_t ref);
struct tally_posting post_cancel(uint64_t id, uint32_t program, uint64_t member, uint64_t ref);
struct tally_posting post_redeem(uint64_t id, uint32_t program, uint64_t member, uint64_t amount);
struct tally_posting post_hold(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                               uint64_t duration_ms);
struct tally_posting post_capture(uint64_t id, uint32_t program, uint64_t member, uint64_t ref,
                                  uint64_t amount);
struct tally_posting post_release(uint64_t id, uint32_t program, uint64_t member, uint64_t ref);
struct tally_posting post_reverse(uint64_t id, uint32_t program, uint64_t member, uint64_t ref,
                                  uint64_t amount);
struct tally_posting post_transfer(uint64_t id, uint32_t program, uint64_t from, uint64_t to,
                                   uint64_t amount);
struct tally_posting post_adjust(uint64_t id, uint32_t program, uint64_t member, uint64_t amount,
                                 bool negative, uint32_t reason);
struct tally_posting post_close(uint64_t id, uint32_t program, uint64_t member);

/* The same posting with the LINKED flag set. */
struct tally_posting linked(struct tally_posting p);

/* ---------------------------------------------------------------------------------------------
 * A ledger under test.
 * ------------------------------------------------------------------------------------------- */

struct fx {
    char dir[64];
    struct engine *e;
    struct engine_options opts;
    uint64_t index;   /* index of the last batch applied through the helpers */
    uint64_t next_id; /* next id fx_id hands out */
};

/* cmocka setup and teardown: a fresh directory with an engine open on it (sync off: these tests
 * are about semantics; test_crash is about durability). */
int fx_setup(void **state);
int fx_teardown(void **state);

/* The same, for tests that manage their own ledgers (opts NULL: the defaults with sync off).
 * Every fx_init'd ledger is remembered until fx_deinit, so that fx_teardown_all can close and
 * remove it when a failed assertion left the test early: an fx must therefore outlive the test
 * function (static or on the heap, never on its stack). */
void fx_init(struct fx *f, const struct engine_options *opts);
void fx_deinit(struct fx *f);
int fx_teardown_all(void **state);

/* A cmocka test that gets a fresh ledger in *state. */
#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
/* A cmocka test that makes its own ledgers with fx_init. */
#define FX_OWN_TEST(fn) cmocka_unit_test_teardown(fn, fx_teardown_all)

/* Close and reopen the engine on the same directory. */
void fx_reopen(struct fx *f);

/* Close the engine, run audit_verify on the directory and assert it found nothing, check with
 * audit_trial_balance that every program sums to zero, reopen. */
void fx_verify(struct fx *f);

/* A fresh posting id (ids from 1,000,000 up, clear of the small ids tests pick by hand). */
uint64_t fx_id(struct fx *f);

/* Apply a batch as the next index; asserts engine_apply returned 0. */
void fx_apply(struct fx *f, uint64_t ts, const struct tally_posting *postings, uint32_t count,
              struct tally_result *results);

/* Apply one posting as its own batch and return its result. */
struct tally_result fx_apply1(struct fx *f, uint64_t ts, struct tally_posting p);

/* Apply one posting, assert it got OK, return the seq of its first entry. */
uint64_t fx_ok(struct fx *f, uint64_t ts, struct tally_posting p);

/* Apply one posting and return its result code. */
uint32_t fx_code(struct fx *f, uint64_t ts, struct tally_posting p);

/* An empty batch: only time-driven work. */
void fx_tick(struct fx *f, uint64_t ts);

/* Create program `program` with `config` (NULL: config_default) and open members 1..members. */
void fx_program(struct fx *f, uint64_t ts, uint32_t program,
                const struct tally_program_config *config, uint64_t members);

/* Queries that must succeed. */
struct tally_account fx_account(struct fx *f, uint32_t program, uint64_t member);
struct tally_entry fx_entry(struct fx *f, uint64_t seq, struct tally_lot_ref *refs,
                            uint32_t refs_max, uint32_t *refs_count);
uint32_t fx_lots(struct fx *f, uint32_t program, uint64_t member, struct tally_lot *out,
                 uint32_t max);
struct engine_hold_info fx_hold(struct fx *f, uint64_t hold_id);
struct engine_posting_info fx_posting(struct fx *f, uint64_t id);
uint64_t fx_entries(struct fx *f); /* seq of the newest entry */
struct tally_program_totals fx_totals(struct fx *f, uint32_t program);

/* Two statuses describe the same ledger: applied index, last timestamp, newest entry, chain head
 * and state digest all equal. assert_same_engines: the same for two engines' current status. */
void assert_same_status(const struct engine_status *a, const struct engine_status *b);
void assert_same_engines(struct engine *a, struct engine *b);

/* The member's points: available + pending + held (signed: available may be a debt). */
int64_t account_points(const struct tally_account *a);

/* Sum of every account of the program: the members 1..members plus the four system accounts
 * (law 3 says this is zero). Members never opened are skipped. */
int64_t fx_program_sum(struct fx *f, uint32_t program, uint64_t members);

/* Assert the entry's fixed fields that identify it. */
void assert_entry_kind(const struct tally_entry *en, uint16_t kind, uint64_t debit, uint64_t credit,
                       uint64_t amount);

/* Assert one lot ref. */
void assert_ref(const struct tally_lot_ref *r, uint64_t lot_id, uint64_t amount);

/* Whether an id is all zero (time-driven entries carry the zero posting id). */
bool id_is_zero(const uint8_t id[16]);

/* The result code's name, for messages. */
const char *code_name(uint32_t code);

/* Assert a result code by name, printing both names when they differ. */
#define assert_code(got, want)                                                                     \
    do {                                                                                           \
        uint32_t got_ = (uint32_t)(got);                                                           \
        uint32_t want_ = (uint32_t)(want);                                                         \
        if (got_ != want_)                                                                         \
            fail_msg("result %s (%u), expected %s (%u)", code_name(got_), got_, code_name(want_),  \
                     want_);                                                                       \
    } while (0)

#endif
