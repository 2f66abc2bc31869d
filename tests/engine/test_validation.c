/* test_validation.c: every validation result, decided by a posting's bytes alone
 * (include/tally_results.h, codes 2..14). Each case breaks exactly one rule of a posting that
 * would otherwise succeed, so a check the engine skips shows up as an OK. Validation failures
 * create no entry and are not recorded under the posting id.
 *
 * Where the other result codes are provoked and asserted:
 *   EXISTS, ID_EXISTS_DIFFERENT                       test_idempotency.c, test_linked.c
 *   PROGRAM_EXISTS, PROGRAM_NOT_FOUND, ACCOUNT_EXISTS,
 *   ACCOUNT_NOT_FOUND                                 test_program_open.c
 *   ACCOUNT_CLOSED, ACCOUNT_HAS_HOLDS                 test_transfer_adjust_close.c, test_refs.c
 *   INSUFFICIENT_POINTS                               test_accrue_redeem.c and most others
 *   REF_NOT_FOUND, REF_WRONG_KIND, REF_FAILED,
 *   REF_ACCOUNT_MISMATCH                              test_refs.c
 *   NOT_PENDING, REF_PENDING                          test_pending.c
 *   HOLD_NOT_ACTIVE, EXCEEDS_HOLD                     test_holds.c
 *   EXCEEDS_ORIGINAL                                  test_reverse.c
 *   OVERFLOW, LOTS_LIMIT                              test_accrue_redeem.c
 *   LINKED_EVENT_FAILED, LINKED_CHAIN_OPEN            test_linked.c
 */
#include "../support.h"

#include <string.h>

struct vcase {
    const char *what;
    struct tally_posting p;
    uint32_t want;
};

/* Program 1, members 1 and 2; member 1 has 1000 points (posting 50) and a hold of 10
 * (posting 51); posting 52 is a pending accrual of member 1. */
static void setup_valid(struct fx *f)
{
    fx_program(f, t("2026-01-01"), 1, NULL, 2);
    fx_ok(f, t("2026-01-02"), post_accrue(50, 1, 1, 1000, 0));
    fx_ok(f, t("2026-01-02"), post_hold(51, 1, 1, 10, DAY_MS));
    fx_ok(f, t("2026-01-02"), post_accrue_pending(52, 1, 1, 10, 0, DAY_MS));
}

static void run_cases(struct fx *f, const struct vcase *cases, uint32_t n)
{
    uint64_t before = fx_entries(f);
    for (uint32_t i = 0; i < n; i++) {
        struct tally_result r = fx_apply1(f, t("2026-01-02T01:00Z"), cases[i].p);
        if (r.code != cases[i].want)
            fail_msg("%s: got %s (%u), expected %s (%u)", cases[i].what, code_name(r.code), r.code,
                     code_name(cases[i].want), cases[i].want);
        assert_int_equal(r.detail, 0);
        assert_int_equal(r.seq, 0);
        if (!id_is_zero(cases[i].p.id)) {
            struct engine_posting_info pi;
            if (engine_posting(f->e, cases[i].p.id, &pi) != TALLY_ENOT_FOUND)
                fail_msg("%s: a validation failure was recorded", cases[i].what);
        }
    }
    assert_int_equal(fx_entries(f), before);
    struct tally_account a = fx_account(f, 1, 1);
    assert_int_equal(a.available, 990);
    assert_int_equal(a.held, 10);
    assert_int_equal(a.pending, 10);
}

#define N_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

static struct tally_posting with_kind(struct tally_posting p, uint16_t kind)
{
    p.kind = kind;
    return p;
}

static struct tally_posting with_flags(struct tally_posting p, uint16_t flags)
{
    p.flags = flags;
    return p;
}

static void test_posting_with_zero_id_gives_id_zero(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"accrue with id 0", post_accrue(0, 1, 1, 10, 0), TALLY_ID_ZERO},
        {"open with id 0", post_open(0, 1, 3), TALLY_ID_ZERO},
    };
    run_cases(f, c, N_OF(c));
}

static void test_unknown_or_ledger_only_kind_gives_kind_invalid(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct tally_posting base = post_accrue(100, 1, 1, 10, 0);
    struct vcase c[] = {
        {"kind 0", with_kind(base, 0), TALLY_KIND_INVALID},
        {"kind EXPIRE (ledger only)", with_kind(post_redeem(101, 1, 1, 10), TALLY_KIND_EXPIRE),
         TALLY_KIND_INVALID},
        {"kind TIER_CHANGE (ledger only)", with_kind(post_open(102, 1, 1), TALLY_KIND_TIER_CHANGE),
         TALLY_KIND_INVALID},
        {"kind 16", with_kind(base, TALLY_KIND_LIMIT), TALLY_KIND_INVALID},
        {"kind 0xffff", with_kind(base, 0xffff), TALLY_KIND_INVALID},
    };
    run_cases(f, c, N_OF(c));
}

static void test_flag_foreign_to_kind_gives_flags_invalid(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"accrue NEGATIVE", with_flags(post_accrue(100, 1, 1, 10, 0), TALLY_FLAG_NEGATIVE),
         TALLY_FLAGS_INVALID},
        {"redeem PENDING", with_flags(post_redeem(101, 1, 1, 10), TALLY_FLAG_PENDING),
         TALLY_FLAGS_INVALID},
        {"adjust PENDING", with_flags(post_adjust(102, 1, 1, 10, false, 1), TALLY_FLAG_PENDING),
         TALLY_FLAGS_INVALID},
        {"open NEGATIVE", with_flags(post_open(103, 1, 3), TALLY_FLAG_NEGATIVE),
         TALLY_FLAGS_INVALID},
        {"transfer PENDING", with_flags(post_transfer(104, 1, 1, 2, 10), TALLY_FLAG_PENDING),
         TALLY_FLAGS_INVALID},
        {"unknown flag 0x8", with_flags(post_accrue(105, 1, 1, 10, 0), 0x8), TALLY_FLAGS_INVALID},
        {"unknown flag 0x8000", with_flags(post_redeem(106, 1, 1, 10), 0x8000),
         TALLY_FLAGS_INVALID},
    };
    run_cases(f, c, N_OF(c));
}

static void test_nonzero_reserved_bytes_give_reserved_nonzero(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"reserved", post_accrue(100, 1, 1, 10, 0), TALLY_RESERVED_NONZERO},
        {"reserved2", post_redeem(101, 1, 1, 10), TALLY_RESERVED_NONZERO},
        {"reserved2 high byte", post_open(102, 1, 3), TALLY_RESERVED_NONZERO},
    };
    c[0].p.reserved = 1;
    c[1].p.reserved2 = 1;
    c[2].p.reserved2 = UINT64_C(1) << 63;
    run_cases(f, c, N_OF(c));
}

static void test_program_id_zero_gives_program_zero(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct tally_program_config cfg;
    config_default(&cfg);
    struct vcase c[] = {
        {"accrue in program 0", post_accrue(100, 0, 1, 10, 0), TALLY_PROGRAM_ZERO},
        {"open in program 0", post_open(101, 0, 3), TALLY_PROGRAM_ZERO},
        {"program 0", post_program(102, 0, &cfg), TALLY_PROGRAM_ZERO},
    };
    run_cases(f, c, N_OF(c));
}

static void test_member_zero_or_system_id_gives_account_invalid(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"accrue to member 0", post_accrue(100, 1, 0, 10, 0), TALLY_ACCOUNT_INVALID},
        {"open member 0", post_open(101, 1, 0), TALLY_ACCOUNT_INVALID},
        {"open first system id", post_open(102, 1, TALLY_SYS_FIRST), TALLY_ACCOUNT_INVALID},
        {"open issuance", post_open(103, 1, SYS_ISSUANCE), TALLY_ACCOUNT_INVALID},
        {"accrue to breakage", post_accrue(104, 1, SYS_BREAKAGE, 10, 0), TALLY_ACCOUNT_INVALID},
        {"redeem from redemption", post_redeem(105, 1, SYS_REDEMPTION, 10), TALLY_ACCOUNT_INVALID},
        {"transfer to adjustment", post_transfer(106, 1, 1, SYS_ADJUSTMENT, 10),
         TALLY_ACCOUNT_INVALID},
        {"transfer from issuance", post_transfer(107, 1, SYS_ISSUANCE, 1, 10),
         TALLY_ACCOUNT_INVALID},
        {"close member 0", post_close(108, 1, 0), TALLY_ACCOUNT_INVALID},
        {"reverse for member 0", post_reverse(109, 1, 0, 50, 1), TALLY_ACCOUNT_INVALID},
    };
    run_cases(f, c, N_OF(c));
}

static void test_zero_amount_where_needed_gives_amount_zero(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"redeem 0", post_redeem(100, 1, 1, 0), TALLY_AMOUNT_ZERO},
        {"hold 0", post_hold(101, 1, 1, 0, 0), TALLY_AMOUNT_ZERO},
        {"transfer 0", post_transfer(102, 1, 1, 2, 0), TALLY_AMOUNT_ZERO},
        {"adjust 0", post_adjust(103, 1, 1, 0, false, 1), TALLY_AMOUNT_ZERO},
        {"negative adjust 0", post_adjust(104, 1, 1, 0, true, 1), TALLY_AMOUNT_ZERO},
    };
    run_cases(f, c, N_OF(c));
}

static void test_amount_above_2_pow_53_gives_amount_too_large(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"accrue 2^53+1", post_accrue(100, 1, 1, TALLY_AMOUNT_MAX + 1, 0), TALLY_AMOUNT_TOO_LARGE},
        {"accrue value 2^53+1", post_accrue(101, 1, 1, 10, TALLY_AMOUNT_MAX + 1),
         TALLY_AMOUNT_TOO_LARGE},
        {"accrue UINT64_MAX", post_accrue(102, 1, 1, UINT64_MAX, 0), TALLY_AMOUNT_TOO_LARGE},
        {"redeem 2^53+1", post_redeem(103, 1, 1, TALLY_AMOUNT_MAX + 1), TALLY_AMOUNT_TOO_LARGE},
        {"adjust 2^53+1", post_adjust(104, 1, 1, TALLY_AMOUNT_MAX + 1, false, 1),
         TALLY_AMOUNT_TOO_LARGE},
        {"transfer 2^53+1", post_transfer(105, 1, 1, 2, TALLY_AMOUNT_MAX + 1),
         TALLY_AMOUNT_TOO_LARGE},
        {"reverse 2^53+1", post_reverse(106, 1, 1, 50, TALLY_AMOUNT_MAX + 1),
         TALLY_AMOUNT_TOO_LARGE},
    };
    run_cases(f, c, N_OF(c));
}

static void test_field_unused_by_kind_gives_field_not_allowed(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"open with amount", post_open(100, 1, 3), TALLY_FIELD_NOT_ALLOWED},
        {"open with value", post_open(101, 1, 3), TALLY_FIELD_NOT_ALLOWED},
        {"redeem with value", post_redeem(102, 1, 1, 10), TALLY_FIELD_NOT_ALLOWED},
        {"redeem with ref", post_redeem(103, 1, 1, 10), TALLY_FIELD_NOT_ALLOWED},
        {"redeem with account2", post_redeem(104, 1, 1, 10), TALLY_FIELD_NOT_ALLOWED},
        {"accrue with account2", post_accrue(105, 1, 1, 10, 0), TALLY_FIELD_NOT_ALLOWED},
        {"accrue with ref", post_accrue(106, 1, 1, 10, 0), TALLY_FIELD_NOT_ALLOWED},
        {"close with amount", post_close(107, 1, 2), TALLY_FIELD_NOT_ALLOWED},
        {"hold with value", post_hold(108, 1, 1, 10, 0), TALLY_FIELD_NOT_ALLOWED},
        {"release with amount", post_release(109, 1, 1, 51), TALLY_FIELD_NOT_ALLOWED},
        {"activate with amount", post_activate(110, 1, 1, 52), TALLY_FIELD_NOT_ALLOWED},
        {"cancel with value", post_cancel(111, 1, 1, 52), TALLY_FIELD_NOT_ALLOWED},
        {"transfer with value", post_transfer(112, 1, 1, 2, 10), TALLY_FIELD_NOT_ALLOWED},
        {"adjust with ref", post_adjust(113, 1, 1, 10, false, 1), TALLY_FIELD_NOT_ALLOWED},
        {"reverse with account2", post_reverse(114, 1, 1, 50, 10), TALLY_FIELD_NOT_ALLOWED},
    };
    c[0].p.amount = 5;
    c[1].p.value = 5;
    c[2].p.value = 5;
    id_make(c[3].p.ref, 50);
    c[4].p.account2 = 2;
    c[5].p.account2 = 2;
    id_make(c[6].p.ref, 50);
    c[7].p.amount = 1;
    c[8].p.value = 1;
    c[9].p.amount = 1;
    c[10].p.amount = 1;
    c[11].p.value = 1;
    c[12].p.value = 1;
    id_make(c[13].p.ref, 50);
    c[14].p.account2 = 2;
    run_cases(f, c, N_OF(c));
}

static void test_missing_ref_gives_ref_zero(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"activate without ref", post_activate(100, 1, 1, 0), TALLY_REF_ZERO},
        {"cancel without ref", post_cancel(101, 1, 1, 0), TALLY_REF_ZERO},
        {"capture without ref", post_capture(102, 1, 1, 0, 0), TALLY_REF_ZERO},
        {"release without ref", post_release(103, 1, 1, 0), TALLY_REF_ZERO},
        {"reverse without ref", post_reverse(104, 1, 1, 0, 0), TALLY_REF_ZERO},
    };
    run_cases(f, c, N_OF(c));
}

static void test_transfer_to_self_gives_same_account(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"transfer to self", post_transfer(100, 1, 1, 1, 10), TALLY_SAME_ACCOUNT},
    };
    run_cases(f, c, N_OF(c));
}

static void test_duration_beyond_ten_years_gives_duration_invalid(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[] = {
        {"hold beyond ten years", post_hold(100, 1, 1, 10, TALLY_DURATION_MAX_MS + 1),
         TALLY_DURATION_INVALID},
        {"pending beyond ten years",
         post_accrue_pending(101, 1, 1, 10, 0, TALLY_DURATION_MAX_MS + 1), TALLY_DURATION_INVALID},
        {"hold UINT64_MAX", post_hold(102, 1, 1, 10, UINT64_MAX), TALLY_DURATION_INVALID},
    };
    run_cases(f, c, N_OF(c));
    /* The limit itself is allowed. */
    fx_ok(f, t("2026-01-03"), post_hold(103, 1, 1, 10, TALLY_DURATION_MAX_MS));
    fx_ok(f, t("2026-01-03"), post_accrue_pending(104, 1, 1, 10, 0, TALLY_DURATION_MAX_MS));
}

/* ---------------------------------------------------------------------------------------------
 * Program configurations
 * ------------------------------------------------------------------------------------------- */

enum cfg_break {
    CFG_TIERS_0,
    CFG_TIERS_9,
    CFG_THRESHOLDS_DECREASE,
    CFG_THRESHOLDS_EQUAL,
    CFG_THRESHOLD_ABOVE_LADDER,
    CFG_EXPIRY_UNKNOWN,
    CFG_MODE_UNKNOWN,
    CFG_WINDOW_UNKNOWN,
    CFG_ROLLING_0_MONTHS,
    CFG_ROLLING_13_MONTHS,
    CFG_CALENDAR_WITH_MONTHS,
    CFG_VALIDITY_0,
    CFG_VALIDITY_121,
    CFG_DAYS_0,
    CFG_DAYS_3661,
    CFG_MONTH_121,
    CFG_TZ_841,
    CFG_TZ_MINUS_841,
    CFG_HOLD_TIMEOUT_0,
    CFG_HOLD_TIMEOUT_TOO_LONG,
    CFG_FIXED_AT_WITHOUT_FIXED,
    CFG_COUNT
};

static const char *const cfg_break_names[CFG_COUNT] = {
    "tier_count 0",
    "tier_count 9",
    "thresholds decrease",
    "thresholds equal",
    "threshold above the ladder",
    "expiry policy 6",
    "tier mode 3",
    "window 2",
    "rolling window of 0 months",
    "rolling window of 13 months",
    "calendar window with window_months",
    "validity 0 months",
    "validity 121 months",
    "DAYS 0",
    "DAYS 3661",
    "MONTH 121",
    "tz_offset_min 841",
    "tz_offset_min -841",
    "hold timeout 0",
    "hold timeout above ten years",
    "expiry_fixed_at without FIXED",
};

static void config_broken(struct tally_program_config *c, int how)
{
    config_default(c);
    c->tier_mode = TALLY_TIER_DOWN_STEP;
    switch (how) {
    case CFG_TIERS_0:
        c->tier_count = 0;
        c->thresholds[0] = 0;
        c->thresholds[1] = 0;
        break;
    case CFG_TIERS_9:
        c->tier_count = 9;
        break;
    case CFG_THRESHOLDS_DECREASE:
        c->thresholds[0] = 5000;
        c->thresholds[1] = 1000;
        break;
    case CFG_THRESHOLDS_EQUAL:
        c->thresholds[1] = 1000;
        break;
    case CFG_THRESHOLD_ABOVE_LADDER:
        c->thresholds[2] = 9000;
        break;
    case CFG_EXPIRY_UNKNOWN:
        c->expiry = 6;
        break;
    case CFG_MODE_UNKNOWN:
        c->tier_mode = 3;
        break;
    case CFG_WINDOW_UNKNOWN:
        c->window = 2;
        break;
    case CFG_ROLLING_0_MONTHS:
        c->window_months = 0;
        break;
    case CFG_ROLLING_13_MONTHS:
        c->window_months = 13;
        break;
    case CFG_CALENDAR_WITH_MONTHS:
        c->window = TALLY_WINDOW_CALENDAR;
        break;
    case CFG_VALIDITY_0:
        c->validity_months = 0;
        break;
    case CFG_VALIDITY_121:
        c->validity_months = 121;
        break;
    case CFG_DAYS_0:
        c->expiry = TALLY_EXPIRY_DAYS;
        c->expiry_n = 0;
        break;
    case CFG_DAYS_3661:
        c->expiry = TALLY_EXPIRY_DAYS;
        c->expiry_n = 3661;
        break;
    case CFG_MONTH_121:
        c->expiry = TALLY_EXPIRY_MONTH;
        c->expiry_n = 121;
        break;
    case CFG_TZ_841:
        c->tz_offset_min = 841;
        break;
    case CFG_TZ_MINUS_841:
        c->tz_offset_min = -841;
        break;
    case CFG_HOLD_TIMEOUT_0:
        c->hold_timeout_ms = 0;
        break;
    case CFG_HOLD_TIMEOUT_TOO_LONG:
        c->hold_timeout_ms = TALLY_DURATION_MAX_MS + 1;
        break;
    case CFG_FIXED_AT_WITHOUT_FIXED:
        c->expiry = TALLY_EXPIRY_DAYS;
        c->expiry_n = 30;
        c->expiry_fixed_at = t("2027-01-01");
        break;
    default:
        fail_msg("no such case %d", how);
    }
}

static void test_broken_program_config_gives_config_invalid(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct vcase c[CFG_COUNT];
    for (int i = 0; i < CFG_COUNT; i++) {
        struct tally_program_config cfg;
        config_broken(&cfg, i);
        c[i].what = cfg_break_names[i];
        c[i].p = post_program((uint64_t)(100 + i), (uint32_t)(100 + i), &cfg);
        c[i].want = TALLY_CONFIG_INVALID;
    }
    run_cases(f, c, CFG_COUNT);
    uint32_t ids[4];
    uint32_t n = 0;
    assert_int_equal(engine_programs(f->e, 1, ids, 4, &n), 0);
    assert_int_equal(n, 0);
}

static void test_config_at_its_limits_is_valid(void **state)
{
    struct fx *f = *state;
    struct tally_program_config c;
    uint64_t ts = t("2026-01-01");

    config_default(&c); /* one tier only, extreme offsets, longest expiry */
    c.tier_count = 1;
    c.thresholds[0] = 0;
    c.thresholds[1] = 0;
    c.tz_offset_min = 840;
    c.expiry = TALLY_EXPIRY_DAYS;
    c.expiry_n = 3660;
    fx_ok(f, ts, post_program(1, 1, &c));

    config_default(&c); /* eight tiers, longest validity and hold timeout */
    c.tier_count = TALLY_TIERS_MAX;
    for (uint32_t i = 0; i < TALLY_TIERS_MAX - 1; i++)
        c.thresholds[i] = 100 * (i + 1);
    c.tier_mode = TALLY_TIER_DOWN_EARNED;
    c.validity_months = 120;
    c.hold_timeout_ms = TALLY_DURATION_MAX_MS;
    c.tz_offset_min = -840;
    c.expiry = TALLY_EXPIRY_MONTH;
    c.expiry_n = 120;
    fx_ok(f, ts, post_program(2, 2, &c));

    config_default(&c); /* calendar window, fixed expiry, YEAR 0 in another */
    c.window = TALLY_WINDOW_CALENDAR;
    c.window_months = 0;
    c.expiry = TALLY_EXPIRY_FIXED;
    c.expiry_fixed_at = t("2030-01-01");
    fx_ok(f, ts, post_program(3, 3, &c));
    config_default(&c);
    c.window_months = 1;
    c.expiry = TALLY_EXPIRY_YEAR;
    c.expiry_n = 0;
    fx_ok(f, ts, post_program(4, 4, &c));
    fx_verify(f);
}

static void test_code_and_user_data_are_allowed_on_every_kind(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    struct tally_posting p[] = {
        post_open(100, 1, 3),
        post_accrue(101, 1, 3, 10, 0),
        post_redeem(102, 1, 3, 1),
        post_hold(103, 1, 3, 1, 0),
        post_capture(104, 1, 3, 103, 0),
        post_reverse(105, 1, 3, 102, 0),
        post_transfer(106, 1, 3, 1, 1),
        post_adjust(107, 1, 3, 1, false, 5),
        post_close(108, 1, 3),
    };
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        p[i].code = (uint32_t)(9000 + i);
        memset(p[i].user_data, (int)('a' + i), sizeof(p[i].user_data));
        uint64_t seq = fx_ok(f, t("2026-01-03"), p[i]);
        struct tally_entry en = fx_entry(f, seq, NULL, 0, NULL);
        assert_int_equal(en.code, p[i].code);
        assert_memory_equal(en.user_data, p[i].user_data, 32);
    }
    fx_verify(f);
}

static void test_batch_with_invalid_postings_applies_the_valid_ones(void **state)
{
    struct fx *f = *state;
    setup_valid(f);
    uint64_t before = fx_entries(f);
    struct tally_posting p[4] = {
        post_accrue(0, 1, 1, 5, 0),
        post_accrue(100, 1, 1, 5, 0),
        post_redeem(101, 1, 1, 0),
        post_accrue(102, 1, 2, 7, 0),
    };
    struct tally_result r[4];
    fx_apply(f, t("2026-01-02T02:00Z"), p, 4, r);
    assert_code(r[0].code, TALLY_ID_ZERO);
    assert_code(r[1].code, TALLY_OK);
    assert_code(r[2].code, TALLY_AMOUNT_ZERO);
    assert_code(r[3].code, TALLY_OK);
    assert_int_equal(r[1].seq, before + 1);
    assert_int_equal(r[3].seq, before + 2);
    assert_int_equal(fx_account(f, 1, 1).available, 995);
    assert_int_equal(fx_account(f, 1, 2).available, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_posting_with_zero_id_gives_id_zero),
        FX_TEST(test_unknown_or_ledger_only_kind_gives_kind_invalid),
        FX_TEST(test_flag_foreign_to_kind_gives_flags_invalid),
        FX_TEST(test_nonzero_reserved_bytes_give_reserved_nonzero),
        FX_TEST(test_program_id_zero_gives_program_zero),
        FX_TEST(test_member_zero_or_system_id_gives_account_invalid),
        FX_TEST(test_zero_amount_where_needed_gives_amount_zero),
        FX_TEST(test_amount_above_2_pow_53_gives_amount_too_large),
        FX_TEST(test_field_unused_by_kind_gives_field_not_allowed),
        FX_TEST(test_missing_ref_gives_ref_zero),
        FX_TEST(test_transfer_to_self_gives_same_account),
        FX_TEST(test_duration_beyond_ten_years_gives_duration_invalid),
        FX_TEST(test_broken_program_config_gives_config_invalid),
        FX_TEST(test_config_at_its_limits_is_valid),
        FX_TEST(test_code_and_user_data_are_allowed_on_every_kind),
        FX_TEST(test_batch_with_invalid_postings_applies_the_valid_ones),
    };
    return cmocka_run_group_tests_name("validation", tests, NULL, NULL);
}
