/* replay.c: purchases to postings, posted in time order, then the check (see replay.h).
 *
 * The model is told of every posting as it is added to a batch, in the batch's order, so its
 * state when it predicts a posting's result is the ledger's state when the ledger applies it
 * (the ledger applies a batch's postings one after the other, after the work due by the
 * batch's time). That is also why one batch is in flight at a time: the next batch's postings
 * depend on the previous results only through the model, but a second batch in flight could
 * be applied at a later ledger time than the model assumed if the first one were retried.
 */
#include "replay.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay_model.h"
#include "tally_errors.h"
#include "tally_results.h"

void replay_program_config(uint32_t set, struct tally_program_config *c)
{
    memset(c, 0, sizeof(*c));
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = 365;
    c->window = TALLY_WINDOW_ROLLING;
    c->window_months = 12;
    c->hold_timeout_ms = 3600000;
    if (set == REPLAY_SET_CDNOW) {
        /* CDNOW: $106 a customer over 18 months on average; tiers at $50, $150, $500 of spend
         * in 12 rolling months; a reached tier holds 6 months, then falls one step at most. */
        c->tier_mode = TALLY_TIER_DOWN_STEP;
        c->validity_months = 6;
        c->tier_count = 4;
        c->thresholds[0] = 5000;
        c->thresholds[1] = 15000;
        c->thresholds[2] = 50000;
    } else {
        /* UCI: wholesalers, ~GBP 2,000 a customer a year; tiers at GBP 250, 1,000, 5,000 and
         * 25,000; a reached tier holds 3 months (so that evaluations happen within the year),
         * then falls to the tier earned. */
        c->tier_mode = TALLY_TIER_DOWN_EARNED;
        c->validity_months = 3;
        c->tier_count = 5;
        c->thresholds[0] = 25000;
        c->thresholds[1] = 100000;
        c->thresholds[2] = 500000;
        c->thresholds[3] = 2500000;
    }
}

/* ---- the run ------------------------------------------------------------------------------- */

/* Postings one event can add: OPEN, then ACTIVATE + REVERSE. */
#define EVENT_POSTINGS_MAX 3u

struct run {
    const struct replay_data *d;
    const struct replay_options *o;
    const struct replay_sink *s;
    struct replay_report *r;
    struct replay_model *m;
    uint32_t *accrual;         /* per event: its accrual handle, UINT32_MAX if none */
    uint8_t (*accrual_id)[16]; /* per accrual handle: the ACCRUE's posting id */
    uint64_t *returned;        /* per event (a PURCHASE): cents returned of it so far */
    uint64_t members_max;      /* highest customer id; the tick member is one above */
    struct tally_posting *batch;
    struct tally_result *results;
    uint32_t *expect;
    uint32_t n;
    uint64_t at;       /* the batch's time */
    uint64_t counter;  /* postings made, for the ids */
    uint64_t user_ref; /* the current event's source number, kept in user_data */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void diff(struct replay_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void diff(struct replay_report *r, const char *fmt, ...)
{
    if (r->ndiffs >= REPLAY_DIFFS_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->diffs[r->ndiffs++], sizeof(r->diffs[0]), fmt, ap);
    va_end(ap);
}

static void day_text(uint64_t ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%d %H:%M", &tm);
}

static struct tally_posting *add(struct run *x, uint16_t kind, uint64_t member, uint32_t expect)
{
    struct tally_posting *p = &x->batch[x->n];
    memset(p, 0, sizeof(*p));
    uint64_t c = ++x->counter;
    for (int i = 0; i < 6; i++)
        p->id[i] = (uint8_t)(x->at >> (40 - 8 * i));
    p->id[6] = (uint8_t)(x->o->program >> 8);
    p->id[7] = (uint8_t)x->o->program;
    for (int i = 0; i < 8; i++)
        p->id[8 + i] = (uint8_t)(c >> (56 - 8 * i));
    p->program = x->o->program;
    p->kind = kind;
    if (kind != TALLY_KIND_PROGRAM) {
        p->account = member;
        memcpy(p->user_data, &x->user_ref, sizeof(x->user_ref));
    }
    x->expect[x->n++] = expect;
    x->r->by_kind[kind]++;
    x->r->expected_failures += expect != TALLY_OK;
    x->r->expected_by_code[expect < TALLY_RESULT_CODE_LIMIT ? expect : 0] += expect != TALLY_OK;
    return p;
}

static const char *kind_name(uint16_t k)
{
    static const char *names[] = {"?",      "PROGRAM", "OPEN",    "ACCRUE",  "ACTIVATE", "CANCEL",
                                  "REDEEM", "HOLD",    "CAPTURE", "RELEASE", "REVERSE"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* Post the batch and compare each result with the model's. */
static int flush(struct run *x)
{
    if (x->n == 0)
        return 0;
    double t0 = now_s();
    int rc = x->s->post(x->s->ctx, x->at, x->batch, x->n, x->results);
    double t1 = now_s();
    x->r->batches++;
    x->r->postings += x->n;
    x->r->post_seconds += t1 - t0;
    hist_record(&x->r->batch_ns, (uint64_t)((t1 - t0) * 1e9));
    if (rc != 0) {
        x->r->post_errors++;
        char when[32];
        day_text(x->at, when, sizeof(when));
        diff(x->r, "a batch of %u postings at %s failed: %s%s", x->n, when, tally_strerror(rc),
             rc == TALLY_ECONFIG ? " (a cluster must run tallyd --clock client)" : "");
        return rc;
    }
    for (uint32_t i = 0; i < x->n; i++) {
        if (x->results[i].code == x->expect[i])
            continue;
        x->r->result_mismatches++;
        char when[32];
        day_text(x->at, when, sizeof(when));
        diff(x->r, "%s of member %" PRIu64 " at %s: the ledger answered %s, the model expected %s",
             kind_name(x->batch[i].kind), x->batch[i].account, when,
             tally_result_name(x->results[i].code), tally_result_name(x->expect[i]));
    }
    x->n = 0;
    return 0;
}

static int ensure_room(struct run *x)
{
    return x->n + EVENT_POSTINGS_MAX > TALLY_BATCH_MAX ? flush(x) : 0;
}

static void ensure_open(struct run *x, uint64_t member)
{
    struct model_member_view v;
    replay_model_member(x->m, member, &v);
    if (!v.open)
        add(x, TALLY_KIND_OPEN, member, replay_model_open(x->m, member));
}

static void purchase(struct run *x, uint32_t i, const struct replay_event *e)
{
    uint64_t points = e->cents / 100;
    if (points == 0) {
        x->r->purchases_below_point++;
        return;
    }
    uint32_t a;
    uint32_t want = replay_model_accrue(x->m, e->customer, points, e->cents, x->o->pending_ms, &a);
    struct tally_posting *p = add(x, TALLY_KIND_ACCRUE, e->customer, want);
    p->amount = points;
    p->value = e->cents;
    if (x->o->pending_ms != 0) {
        p->flags = TALLY_FLAG_PENDING;
        p->duration_ms = x->o->pending_ms;
    }
    x->accrual[i] = a;
    if (a != UINT32_MAX)
        memcpy(x->accrual_id[a], p->id, 16);
    x->r->purchases_posted += want == TALLY_OK;
}

/* A RETURN: CANCEL, ACTIVATE + REVERSE, or REVERSE of the purchase's accrual (replay.h). */
static void returned(struct run *x, const struct replay_event *e)
{
    uint32_t a = x->accrual[e->ref];
    if (a == UINT32_MAX) {
        x->r->returns_of_unposted++;
        return;
    }
    const struct replay_event *buy = &x->d->events[e->ref];
    const struct model_accrual *acc = replay_model_accrual(x->m, a);
    x->returned[e->ref] += e->cents;
    uint64_t target = (uint64_t)((unsigned __int128)acc->amount * x->returned[e->ref] / buy->cents);
    if (target <= acc->reversed) {
        x->r->returns_below_point++;
        return;
    }
    uint64_t amount = target - acc->reversed;
    const uint8_t *ref = x->accrual_id[a];
    bool pending = replay_model_is_pending(x->m, a);
    if (pending && acc->reversed == 0 && amount == acc->amount) {
        struct tally_posting *p =
            add(x, TALLY_KIND_CANCEL, e->customer, replay_model_cancel(x->m, a));
        memcpy(p->ref, ref, 16);
        return;
    }
    if (pending) {
        /* Both or neither: the model applies the ACTIVATE only if the REVERSE will succeed
         * after it, which it always does (the activated lot holds what is reversed). */
        struct tally_posting *p =
            add(x, TALLY_KIND_ACTIVATE, e->customer, replay_model_activate(x->m, a));
        p->flags = TALLY_FLAG_LINKED;
        memcpy(p->ref, ref, 16);
        x->r->chains++;
    }
    struct tally_posting *p =
        add(x, TALLY_KIND_REVERSE, e->customer, replay_model_reverse(x->m, a, amount));
    memcpy(p->ref, ref, 16);
    p->amount = amount;
}

static void progress(struct run *x, uint32_t done, double t0, double *last)
{
    double t = now_s();
    if (!x->o->progress || t - *last < 1.0)
        return;
    *last = t;
    char when[32];
    day_text(x->at, when, sizeof(when));
    fprintf(stderr, "replay: %u/%u events, ledger time %s, %" PRIu64 " postings, %.0f postings/s\n",
            done, x->d->count, when, x->r->postings, (double)x->r->postings / (t - t0));
}

static uint64_t effective(const struct run *x, uint64_t t)
{
    return x->o->window_ms ? t - t % x->o->window_ms : t;
}

/* The program, every event, then the tick. */
static int post_all(struct run *x)
{
    const struct replay_data *d = x->d;
    struct tally_program_config cfg;
    replay_program_config(d->set, &cfg);
    x->at = replay_model_batch(x->m, effective(x, d->count ? d->events[0].at_ms : 0));
    x->r->first_ms = x->at;
    struct tally_posting *p = add(x, TALLY_KIND_PROGRAM, 0, TALLY_OK);
    p->config = cfg;
    double t0 = now_s(), last = t0;
    int rc = 0;
    for (uint32_t i = 0; i < d->count && rc == 0; i++) {
        const struct replay_event *e = &d->events[i];
        uint64_t t = effective(x, e->at_ms);
        if (t != x->at) {
            if ((rc = flush(x)) != 0)
                break;
            x->at = replay_model_batch(x->m, t);
            progress(x, i, t0, &last);
        }
        if ((rc = ensure_room(x)) != 0)
            break;
        x->user_ref = e->source;
        ensure_open(x, e->customer);
        if (e->kind == REPLAY_PURCHASE)
            purchase(x, i, e);
        else if (e->kind == REPLAY_RETURN)
            returned(x, e);
    }
    if (rc == 0)
        rc = flush(x);
    x->r->last_ms = x->at;
    if (rc == 0) {
        x->at = replay_model_batch(x->m, x->at + x->o->pending_ms);
        x->user_ref = 0;
        ensure_open(x, x->members_max + 1);
        rc = flush(x);
    }
    x->r->final_ms = x->at;
    return rc;
}

/* ---- the check ----------------------------------------------------------------------------- */

#define CHECK_FIELD(name, got, want)                                                               \
    do {                                                                                           \
        if ((uint64_t)(got) != (uint64_t)(want)) {                                                 \
            diff(r,                                                                                \
                 "member %" PRIu64 ": %s is %" PRId64 " in the ledger, %" PRId64 " in the model",  \
                 member, name, (int64_t)(got), (int64_t)(want));                                   \
            bad = true;                                                                            \
        }                                                                                          \
    } while (0)

static bool check_account(struct replay_report *r, uint64_t member, const struct tally_account *a,
                          const struct model_member_view *v)
{
    bool bad = false;
    CHECK_FIELD("status", a->status, TALLY_ACCOUNT_STATUS_OPEN);
    CHECK_FIELD("opened_at", a->opened_at, v->opened_at);
    CHECK_FIELD("available", a->available, v->available);
    CHECK_FIELD("pending", a->pending, v->pending);
    CHECK_FIELD("held", a->held, 0);
    CHECK_FIELD("earned", a->earned, v->earned);
    CHECK_FIELD("redeemed", a->redeemed, 0);
    CHECK_FIELD("expired", a->expired, v->expired);
    CHECK_FIELD("adjusted", a->adjusted, 0);
    CHECK_FIELD("qv_lifetime", a->qv_lifetime, v->qv_lifetime);
    CHECK_FIELD("tier", a->tier, v->tier);
    CHECK_FIELD("tier_valid_until", a->tier_valid_until, v->tier_valid_until);
    CHECK_FIELD("qv_month", a->qv_month, v->qv_month);
    for (uint32_t k = 0; k < TALLY_QV_MONTHS; k++)
        CHECK_FIELD("a month of qv", a->qv[k], v->qv[k]);
    CHECK_FIELD("lots_open", a->lots_open, v->lots_open);
    return !bad;
}

static bool check_lots(struct replay_report *r, uint64_t member, const struct tally_lot *got,
                       uint32_t n, const struct model_member_view *v)
{
    bool bad = false;
    CHECK_FIELD("the number of lots", n, v->lots_open);
    for (uint32_t i = 0; i < n && i < v->lots_open && !bad; i++) {
        const struct tally_lot *g = &got[i], *w = &v->lots[i];
        CHECK_FIELD("a lot's expires_at", g->expires_at, w->expires_at);
        CHECK_FIELD("a lot's earned_at", g->earned_at, w->earned_at);
        CHECK_FIELD("a lot's amount", g->amount, w->amount);
        CHECK_FIELD("a lot's remaining", g->remaining, w->remaining);
        CHECK_FIELD("a lot's held", g->held, 0);
        CHECK_FIELD("a lot's activate_at", g->activate_at, w->activate_at);
    }
    return !bad;
}

static int check_all(struct run *x)
{
    struct replay_report *r = x->r;
    struct tally_lot *lots = malloc(TALLY_LINEAGE_MAX * sizeof(*lots));
    if (lots == NULL)
        return -ENOMEM;
    double t0 = now_s();
    /* TALLY_REPLAY_TEST_SKEW (tests only): the first member's expected available points are
     * off by one, to prove the check can fail. */
    bool skew = getenv("TALLY_REPLAY_TEST_SKEW") != NULL;
    for (uint64_t member = 1; member <= x->members_max + 1; member++) {
        struct model_member_view v;
        replay_model_member(x->m, member, &v);
        if (!v.open)
            continue;
        if (skew) {
            v.available++;
            skew = false;
        }
        r->members_checked++;
        r->tier_count[v.tier < TALLY_TIERS_MAX ? v.tier : 0]++;
        struct tally_account a;
        uint32_t n = 0;
        int rc = x->s->account(x->s->ctx, x->o->program, member, &a);
        if (rc == 0)
            rc = x->s->lots(x->s->ctx, x->o->program, member, lots, TALLY_LINEAGE_MAX, &n);
        if (rc != 0) {
            r->read_errors++;
            r->members_mismatched++;
            diff(r, "member %" PRIu64 ": cannot read it: error %d", member, rc);
            continue;
        }
        bool ok = check_account(r, member, &a, &v);
        ok = check_lots(r, member, lots, n, &v) && ok;
        r->members_mismatched += !ok;
    }
    r->check_seconds = now_s() - t0;
    free(lots);
    return 0;
}

int replay_run(const struct replay_data *d, const struct replay_options *o,
               const struct replay_sink *s, struct replay_report *report)
{
    memset(report, 0, sizeof(*report));
    hist_reset(&report->batch_ns);
    struct run x = {.d = d, .o = o, .s = s, .r = report};
    for (uint32_t i = 0; i < d->count; i++) {
        if (d->events[i].customer > x.members_max)
            x.members_max = d->events[i].customer;
    }
    struct tally_program_config cfg;
    replay_program_config(d->set, &cfg);
    int rc = replay_model_create(&x.m, &cfg, x.members_max + 1);
    if (rc != 0)
        return rc;
    x.accrual = malloc((d->count + 1) * sizeof(*x.accrual));
    x.accrual_id = malloc((d->count + 1) * sizeof(*x.accrual_id));
    x.returned = calloc(d->count + 1, sizeof(*x.returned));
    x.batch = malloc(TALLY_BATCH_MAX * sizeof(*x.batch));
    x.results = malloc(TALLY_BATCH_MAX * sizeof(*x.results));
    x.expect = malloc(TALLY_BATCH_MAX * sizeof(*x.expect));
    if (x.accrual == NULL || x.accrual_id == NULL || x.returned == NULL || x.batch == NULL ||
        x.results == NULL || x.expect == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memset(x.accrual, 0xff, (d->count + 1) * sizeof(*x.accrual));
    if (post_all(&x) == 0) {
        replay_model_finish(x.m);
        rc = check_all(&x);
    }
    struct model_counts mc;
    replay_model_counts(x.m, &mc);
    report->activations = mc.activations;
    report->expiries = mc.expiries;
    report->expired_points = mc.expired_points;
    report->upgrades = mc.upgrades;
    report->renewals = mc.renewals;
    report->downgrades = mc.downgrades;
    report->ok = rc == 0 && report->post_errors == 0 && report->result_mismatches == 0 &&
                 report->members_mismatched == 0 && report->members_checked > 0;
out:
    free(x.expect);
    free(x.results);
    free(x.batch);
    free(x.returned);
    free(x.accrual_id);
    free(x.accrual);
    replay_model_destroy(x.m);
    return rc;
}
