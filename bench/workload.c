/* workload.c: the retail workload generator (see workload.h for what it promises).
 *
 * Design notes
 * ------------
 * Every stream posting is one slot. A slot first serves the oldest hold whose till is due to
 * resolve it (CAPTURE or RELEASE, HOLD_RESOLVE_MS after the HOLD); otherwise it draws
 * a kind from the mix below. Resolutions are not drawn: each kept hold makes exactly one, so the
 * share of CAPTURE + RELEASE follows the share of holds (6% x 92% kept = ~5.5%).
 *
 * Kinds that need points (REDEEM, HOLD, TRANSFER, negative ADJUST) draw up to DRAW_TRIES members
 * and take the first whose estimate is high enough; if none is, the slot becomes an ACCRUE and
 * stats.fallbacks counts it (it happens at the start of a run, when nobody has points yet).
 * A return (REVERSE, or CANCEL of a pending accrual still in its window) picks a random entry of
 * the refs ring, a 1-in-WORKLOAD_REFS_SAMPLE sample of recent accruals and redemptions.
 *
 * Invariants: holds in the ring are in due-time order (the delay is constant and the clock never
 * goes back); member[m].points >= 0; a ring entry with amount_left = 0 is never referred to again;
 * every new posting's id is unique because its low 48 bits are a counter (a retry re-sends an
 * earlier posting, id included, on purpose).
 */
#include "workload.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tally_results.h"

/* ---------------------------------------------------------------------------------------------
 * The mix, in parts per 945 of the drawn slots (the other ~55 per 1000 postings are the
 * resolutions of holds). A chain's postings are overwhelmingly purchases that earn points;
 * redemption runs at roughly one in seven purchases; returns are ~3% of retail transactions.
 * ------------------------------------------------------------------------------------------- */
#define MIX_ACCRUE   700u
#define MIX_REDEEM   100u
#define MIX_HOLD     60u
#define MIX_REVERSE  30u
#define MIX_TRANSFER 30u
#define MIX_ADJUST   25u
#define MIX_TOTAL    (MIX_ACCRUE + MIX_REDEEM + MIX_HOLD + MIX_REVERSE + MIX_TRANSFER + MIX_ADJUST)

/* Per mille of accruals that are pending (online orders inside their return window). */
#define PENDING_PERMILLE  200u
#define PENDING_WINDOW_MS (UINT64_C(7) * 24 * 3600 * 1000)
/* A CANCEL is sent only this far from the activation time, in either direction (at least a day,
 * and at least two batch spans: the batch that carries a posting is stamped up to one batch span
 * after the posting, an hour by default). */
#define CANCEL_MARGIN_MIN_MS (UINT64_C(24) * 3600 * 1000)

/* Holds: the share the till never resolves (they time out), when the till resolves the others,
 * and how they are resolved. The program's hold timeout is three batch spans (three simulated
 * hours by default), at least 30 minutes, so that a hold resolved in the next full batch is
 * still active whatever the time compression. */
#define HOLD_ABANDON_PERMILLE    80u
#define HOLD_RESOLVE_MS          (UINT64_C(10) * 60 * 1000)
#define HOLD_TIMEOUT_SPANS       3u
#define HOLD_TIMEOUT_MIN_MS      (UINT64_C(30) * 60 * 1000)
#define CAPTURE_PERMILLE         800u /* else RELEASE (the basket was abandoned) */
#define CAPTURE_PARTIAL_PERMILLE 250u /* of captures: the basket shrank at the till */

/* Returns: the share that refunds a redemption (else it returns a purchase), and the share of
 * partial reversals (one item of a basket). */
#define REVERSE_REDEMPTION_PERMILLE 333u
#define REVERSE_PARTIAL_PERMILLE    400u
#define ADJUST_NEGATIVE_PERMILLE    200u

/* The program's rolling expiry, in days. The generator believes a member whose last credit is
 * this old has nothing left (it does not model the partial expiry of older lots). */
#define EXPIRY_DAYS 30u

/* Points of a purchase: log-normal, median 60, sigma 0.9 (mean ~90, a long tail of big
 * baskets), capped. Qualifying value is 8..12 per point (cents spent, roughly). */
#define POINTS_LOG_MEDIAN    4.0943445622221 /* ln 60 */
#define POINTS_LOG_SIGMA     0.9
#define POINTS_MAX           20000u
#define VALUE_PER_POINT_MIN  8u
#define VALUE_PER_POINT_SPAN 5u

/* Deliberate rejections, because real tills send them: a member asks to spend more than they
 * have (INSUFFICIENT_POINTS), a card that was never registered earns points (ACCOUNT_NOT_FOUND),
 * and a till that timed out re-sends a posting it already sent (EXISTS). Per mille of REDEEM and
 * HOLD, of ACCRUE, and of all drawn slots. Retries re-send one of a sample of recent postings. */
#define OVERSPEND_PERMILLE    10u
#define UNKNOWN_CARD_PERMILLE 1u
#define UNKNOWN_CARDS         1000u
#define RETRY_PERMILLE        2u
#define RECENT_SAMPLE         64u

/* Smallest estimate worth spending from; members drawn per attempt to find one. */
#define SPEND_MIN_POINTS           100
#define ADJUST_NEGATIVE_MIN_POINTS 40
#define DRAW_TRIES                 8u
#define RETURN_TRIES               8u

/* Stores (the posting's code), tills per store, and how far a till's clock may lag. */
#define STORES          2000u
#define TILLS_PER_STORE 16u
#define TILL_SKEW_MS    2000u
#define ADJUST_REASONS  8u

/* Tier ladder on qualifying value over a rolling 12 months. */
#define TIER_THRESHOLD_1 UINT64_C(5000)
#define TIER_THRESHOLD_2 UINT64_C(20000)
#define TIER_THRESHOLD_3 UINT64_C(80000)

/* The setup is stamped at start_ms; the stream starts this much later. */
#define STREAM_DELAY_MS UINT64_C(60000)
#define HOUR_US         UINT64_C(3600000000)
#define DAY_MS          UINT64_C(86400000)

/* Bound on rejection-inversion rounds: the acceptance probability of one round is above 0.9
 * for every exponent and offset we accept, so 64 rounds fail with probability < 1e-64. */
#define ZIPF_ROUNDS_MAX 64

enum { RING_NONE = 0, RING_REFS = 1, RING_HOLDS = 2 };

/* ---------------------------------------------------------------------------------------------
 * Pseudo-random numbers: splitmix64 to seed, xoshiro256** to draw (Blackman and Vigna).
 * ------------------------------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct workload_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; the bias is below 2^-32). */
static inline uint32_t rng_below(struct workload_rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * n) >> 32);
}

/* Uniform in [0, 1). */
static inline double rng_unit(struct workload_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static inline bool rng_permille(struct workload_rng *r, uint32_t permille)
{
    return rng_below(r, 1000) < permille;
}

/* ---------------------------------------------------------------------------------------------
 * Zipf-Mandelbrot by rejection-inversion. With m = rank + q, h(x) = x^-s is convex, so the
 * integral of h over [m-0.5, m+0.5] is at least h(m): drawing x with density h over
 * [q+0.5, q+n+0.5] and keeping it when u falls in the last h(m) of m's strip accepts each m
 * with probability proportional to h(m). The first rank's strip is cut to exactly h(q+1).
 * H(x) = (x^(1-s) - 1)/(1-s) (ln x when s = 1) is evaluated through expm1/log1p, which stay
 * accurate near s = 1.
 * ------------------------------------------------------------------------------------------- */
static double log1p_over_x(double x)
{
    if (fabs(x) > 1e-8)
        return log1p(x) / x;
    return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double expm1_over_x(double x)
{
    if (fabs(x) > 1e-8)
        return expm1(x) / x;
    return 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

/* s = 1, the default, takes the short forms h = 1/x, H = ln x, H^-1 = exp: one log and one exp
 * a round instead of three logs and two exps. */
static double zipf_h(const struct workload_zipf *z, double x)
{
    if (z->exponent == 1.0)
        return 1.0 / x;
    return exp(-z->exponent * log(x));
}

static double zipf_big_h(const struct workload_zipf *z, double x)
{
    double lx = log(x);
    if (z->exponent == 1.0)
        return lx;
    return expm1_over_x((1.0 - z->exponent) * lx) * lx;
}

static double zipf_big_h_inverse(const struct workload_zipf *z, double u)
{
    if (z->exponent == 1.0)
        return exp(u);
    double t = u * (1.0 - z->exponent);
    if (t < -1.0)
        t = -1.0;
    return exp(log1p_over_x(t) * u);
}

static void zipf_init(struct workload_zipf *z, uint64_t n, double exponent, double offset)
{
    z->n = n;
    z->exponent = exponent;
    z->offset = floor(offset);
    z->u_low = zipf_big_h(z, z->offset + 1.5) - zipf_h(z, z->offset + 1.0);
    z->u_high = zipf_big_h(z, z->offset + (double)n + 0.5);
}

static uint64_t zipf_draw(const struct workload_zipf *z, struct workload_rng *r)
{
    double first = z->offset + 1.0;
    double last = z->offset + (double)z->n;
    double m = first;
    for (int round = 0; round < ZIPF_ROUNDS_MAX; round++) {
        double u = z->u_low + rng_unit(r) * (z->u_high - z->u_low);
        double x = zipf_big_h_inverse(z, u);
        m = floor(x + 0.5);
        if (m < first)
            m = first;
        if (m > last)
            m = last;
        if (u >= zipf_big_h(z, m + 0.5) - zipf_h(z, m))
            break;
    }
    return (uint64_t)(m - z->offset);
}

/* ---------------------------------------------------------------------------------------------
 * Options, init, members.
 * ------------------------------------------------------------------------------------------- */
void workload_options_default(struct workload_options *o)
{
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->members = WORKLOAD_MEMBERS_DEFAULT;
    o->program = 1;
    o->postings_per_hour = WORKLOAD_POSTINGS_PER_HOUR_DEFAULT;
    o->start_ms = WORKLOAD_START_MS_DEFAULT;
    o->zipf_exponent = 1.0;
    o->zipf_offset = 0.02;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    /* Euclid: the remainder at least halves every two steps, so 128 steps always suffice. */
    for (int i = 0; i < 128 && b != 0; i++) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A multiplier coprime to n near n/phi scatters consecutive ranks across the id space. */
static uint64_t permutation_multiplier(uint64_t n)
{
    uint64_t c = ((uint64_t)((double)n * 0.6180339887498949) | 1u) % n;
    for (int i = 0; i < 1000; i++, c = (c + 2) % n) {
        if (c != 0 && gcd_u64(c, n) == 1)
            return c;
    }
    return 1;
}

static bool options_valid(const struct workload_options *o)
{
    if (o->members < 2 || o->members > WORKLOAD_MEMBERS_MAX)
        return false;
    if (o->program == 0 || o->postings_per_hour == 0)
        return false;
    if (o->start_ms < DAY_MS || o->start_ms >= (UINT64_C(1) << 47))
        return false;
    if (!(o->zipf_exponent > 0.0 && o->zipf_exponent <= 10.0))
        return false;
    if (!(o->zipf_offset >= 0.0 && o->zipf_offset <= 1000.0))
        return false;
    return true;
}

int workload_init(struct workload *w, const struct workload_options *opts)
{
    memset(w, 0, sizeof(*w));
    if (!options_valid(opts))
        return -EINVAL;
    w->opts = *opts;
    uint64_t seed = opts->seed;
    for (int i = 0; i < 4; i++)
        w->rng.s[i] = splitmix64(&seed);
    zipf_init(&w->zipf, opts->members, opts->zipf_exponent,
              opts->zipf_offset * (double)opts->members);
    w->permute_mul = permutation_multiplier(opts->members);

    size_t slots = (size_t)opts->members + 1;
    w->member = calloc(slots, sizeof(*w->member));
    if (w->member == NULL)
        goto err_nomem;
    w->refs = calloc(WORKLOAD_REFS_MAX, sizeof(*w->refs));
    if (w->refs == NULL)
        goto err_after_member;
    w->holds = calloc(WORKLOAD_HOLDS_MAX, sizeof(*w->holds));
    if (w->holds == NULL)
        goto err_after_refs;
    w->undo = calloc(TALLY_BATCH_MAX, sizeof(*w->undo));
    if (w->undo == NULL)
        goto err_after_holds;
    w->recent = calloc(WORKLOAD_RECENT_MAX, sizeof(*w->recent));
    if (w->recent == NULL)
        goto err_after_undo;
    return 0;

err_after_undo:
    free(w->undo);
err_after_holds:
    free(w->holds);
err_after_refs:
    free(w->refs);
err_after_member:
    free(w->member);
err_nomem:
    memset(w, 0, sizeof(*w));
    return -ENOMEM;
}

void workload_deinit(struct workload *w)
{
    free(w->recent);
    free(w->undo);
    free(w->holds);
    free(w->refs);
    free(w->member);
    memset(w, 0, sizeof(*w));
}

uint64_t workload_member_of_rank(const struct workload *w, uint64_t rank)
{
    /* rank - 1 and permute_mul are below members <= 10^8, so the product fits in 64 bits. */
    return 1 + ((rank - 1) * w->permute_mul) % w->opts.members;
}

uint64_t workload_draw_rank(struct workload *w)
{
    return zipf_draw(&w->zipf, &w->rng);
}

static uint64_t draw_member(struct workload *w)
{
    return workload_member_of_rank(w, workload_draw_rank(w));
}

/* Simulated milliseconds spanned by a full batch of TALLY_BATCH_MAX postings. */
static uint64_t batch_span_ms(const struct workload *w)
{
    return (uint64_t)TALLY_BATCH_MAX * 3600000 / w->opts.postings_per_hour;
}

static uint64_t cancel_margin_ms(const struct workload *w)
{
    uint64_t two_spans = 2 * batch_span_ms(w);
    return two_spans > CANCEL_MARGIN_MIN_MS ? two_spans : CANCEL_MARGIN_MIN_MS;
}

void workload_program_config(const struct workload *w, struct tally_program_config *c)
{
    memset(c, 0, sizeof(*c));
    c->expiry = TALLY_EXPIRY_DAYS;
    c->expiry_n = EXPIRY_DAYS;
    c->tier_mode = TALLY_TIER_DOWN_STEP;
    c->window = TALLY_WINDOW_ROLLING;
    c->window_months = 12;
    c->validity_months = 1;
    c->tier_count = 4;
    c->tz_offset_min = 480;
    uint64_t timeout = HOLD_TIMEOUT_SPANS * batch_span_ms(w);
    c->hold_timeout_ms = timeout < HOLD_TIMEOUT_MIN_MS ? HOLD_TIMEOUT_MIN_MS : timeout;
    c->thresholds[0] = TIER_THRESHOLD_1;
    c->thresholds[1] = TIER_THRESHOLD_2;
    c->thresholds[2] = TIER_THRESHOLD_3;
}

/* ---------------------------------------------------------------------------------------------
 * Simulated clock and estimates.
 * ------------------------------------------------------------------------------------------- */

/* Simulated time (microseconds) of stream posting number n (0-based). */
static uint64_t clock_us(const struct workload *w, uint64_t n)
{
    uint64_t pph = w->opts.postings_per_hour;
    uint64_t base = (w->opts.start_ms + STREAM_DELAY_MS) * 1000;
    /* (n % pph) < pph <= 2^32, times 3.6e9 stays below 2^64. */
    return base + (n / pph) * HOUR_US + ((n % pph) * HOUR_US) / pph;
}

static uint32_t day_of(const struct workload *w, uint64_t now_ms)
{
    uint64_t d = (now_ms - w->opts.start_ms) / DAY_MS;
    return d > 65000 ? 65000 : (uint32_t)d;
}

/* The member's estimated available points today, forgetting points believed expired. */
static int64_t estimate_of(struct workload *w, uint64_t m, uint32_t today)
{
    struct workload_member *b = &w->member[m];
    if (b->last_day != 0 && today + 1 >= b->last_day + EXPIRY_DAYS) {
        b->points = 0;
        b->last_day = 0;
    }
    return b->points;
}

static void estimate_add(struct workload *w, uint64_t m, int64_t delta)
{
    int64_t v = (int64_t)w->member[m].points + delta;
    if (v < 0)
        v = 0;
    if (v > INT32_MAX)
        v = INT32_MAX;
    w->member[m].points = (int32_t)v;
}

static void note_earned(struct workload *w, uint64_t m, uint32_t today)
{
    w->member[m].last_day = today + 1;
}

/* A member whose estimate is at least min_points, or 0 if DRAW_TRIES draws found none. */
static uint64_t draw_member_with(struct workload *w, int64_t min_points, uint32_t today)
{
    for (uint32_t t = 0; t < DRAW_TRIES; t++) {
        uint64_t m = draw_member(w);
        if (estimate_of(w, m, today) >= min_points)
            return m;
    }
    return 0;
}

/* A share of est between lo and hi (fractions), in tens of points, at least 10. */
static uint64_t spend_amount(struct workload *w, int64_t est, double lo, double hi)
{
    double f = lo + rng_unit(&w->rng) * (hi - lo);
    uint64_t a = (uint64_t)((double)est * f) / 10 * 10;
    return a < 10 ? 10 : a;
}

static uint64_t purchase_points(struct workload *w)
{
    /* Irwin-Hall: the sum of 4 uniforms, centred and scaled to unit variance, is close enough
     * to a normal for a basket size, and costs no log or trig. The draws are summed in a fixed
     * order (C leaves the order of operands unspecified, and the sum of doubles depends on it). */
    double sum = 0.0;
    for (int i = 0; i < 4; i++)
        sum += rng_unit(&w->rng);
    double z = (sum - 2.0) * 1.7320508075688772;
    double p = exp(POINTS_LOG_MEDIAN + POINTS_LOG_SIGMA * z);
    if (p < 1.0)
        return 1;
    if (p > (double)POINTS_MAX)
        return POINTS_MAX;
    return (uint64_t)(p + 0.5);
}

/* ---------------------------------------------------------------------------------------------
 * Postings.
 * ------------------------------------------------------------------------------------------- */
/* ms (48 bits) | instance (16) | pseudo-random (16) | counter (48), big-endian: unique within an
 * instance by the counter, across instances by the instance number. */
static void make_id(struct workload *w, uint64_t ms, uint8_t id[16])
{
    uint16_t r = (uint16_t)(rng_next(&w->rng) >> 48);
    w->id_counter++;
    for (int i = 0; i < 6; i++)
        id[i] = (uint8_t)(ms >> (40 - 8 * i));
    id[6] = (uint8_t)(w->opts.instance >> 8);
    id[7] = (uint8_t)w->opts.instance;
    id[8] = (uint8_t)(r >> 8);
    id[9] = (uint8_t)r;
    for (int i = 0; i < 6; i++)
        id[10 + i] = (uint8_t)(w->id_counter >> (40 - 8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A zeroed posting of `kind` made at simulated time now_us at a random till. */
static void posting_start(struct workload *w, struct tally_posting *p, uint16_t kind,
                          uint64_t now_us)
{
    memset(p, 0, sizeof(*p));
    uint64_t ms = now_us / 1000 - rng_below(&w->rng, TILL_SKEW_MS);
    make_id(w, ms, p->id);
    p->program = w->opts.program;
    p->kind = kind;
    uint32_t store = 1 + rng_below(&w->rng, STORES);
    p->code = store;
    put_le64(p->user_data, ++w->order_number);
    uint64_t till = (uint64_t)store * TILLS_PER_STORE + rng_below(&w->rng, TILLS_PER_STORE);
    put_le64(p->user_data + 8, till);
    w->stats.by_kind[kind]++;
}

static void ref_push(struct workload *w, const struct tally_posting *p, uint64_t now_ms,
                     struct workload_undo *u)
{
    uint64_t push = w->refs_pushed++;
    uint32_t slot = (uint32_t)(push % WORKLOAD_REFS_MAX);
    struct workload_ref *r = &w->refs[slot];
    memcpy(r->id, p->id, 16);
    r->member = p->account;
    r->amount_left = p->amount;
    r->created_ms = now_ms;
    r->push = push;
    r->kind = p->kind;
    r->pending = (p->flags & TALLY_FLAG_PENDING) != 0;
    u->ring = RING_REFS;
    u->slot = slot;
    u->push = push;
}

static void generate_accrue(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                            uint64_t now_us)
{
    uint64_t now_ms = now_us / 1000;
    uint32_t today = day_of(w, now_ms);
    uint64_t m = draw_member(w);
    uint64_t points = purchase_points(w);
    posting_start(w, p, TALLY_KIND_ACCRUE, now_us);
    p->amount = points;
    p->value = points * (VALUE_PER_POINT_MIN + rng_below(&w->rng, VALUE_PER_POINT_SPAN));
    if (rng_permille(&w->rng, UNKNOWN_CARD_PERMILLE)) {
        p->account = w->opts.members + 1 + rng_below(&w->rng, UNKNOWN_CARDS);
        u->expect_reject = 1;
        w->stats.unknown_cards++;
        return;
    }
    p->account = m;
    u->member = m;
    if (rng_permille(&w->rng, PENDING_PERMILLE)) {
        p->flags = TALLY_FLAG_PENDING;
        p->duration_ms = PENDING_WINDOW_MS;
        w->stats.pending_accruals++;
    } else {
        estimate_of(w, m, today);
        estimate_add(w, m, (int64_t)points);
        note_earned(w, m, today);
        u->delta = (int64_t)points;
    }
    if (rng_below(&w->rng, WORKLOAD_REFS_SAMPLE) == 0)
        ref_push(w, p, now_ms, u);
}

/* Sometimes make p (REDEEM or HOLD of p->account) ask for more than the member is believed to
 * have. Returns whether it did; the estimate is left alone, since the posting should fail. */
static bool overspend(struct workload *w, struct tally_posting *p, struct workload_undo *u)
{
    if (!rng_permille(&w->rng, OVERSPEND_PERMILLE))
        return false;
    p->amount = (uint64_t)w->member[p->account].points + 10 * (1 + rng_below(&w->rng, 100));
    u->expect_reject = 1;
    w->stats.overspends++;
    return true;
}

static bool generate_redeem(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                            uint64_t now_us)
{
    uint64_t now_ms = now_us / 1000;
    uint64_t m = draw_member_with(w, SPEND_MIN_POINTS, day_of(w, now_ms));
    if (m == 0)
        return false;
    posting_start(w, p, TALLY_KIND_REDEEM, now_us);
    p->account = m;
    if (overspend(w, p, u))
        return true;
    uint64_t amount = spend_amount(w, w->member[m].points, 0.1, 0.8);
    p->amount = amount;
    estimate_add(w, m, -(int64_t)amount);
    u->member = m;
    u->delta = -(int64_t)amount;
    if (rng_below(&w->rng, WORKLOAD_REFS_SAMPLE) == 0)
        ref_push(w, p, now_ms, u);
    return true;
}

static bool generate_hold(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                          uint64_t now_us)
{
    uint64_t m = draw_member_with(w, SPEND_MIN_POINTS, day_of(w, now_us / 1000));
    if (m == 0)
        return false;
    posting_start(w, p, TALLY_KIND_HOLD, now_us);
    p->account = m;
    if (overspend(w, p, u))
        return true;
    uint64_t amount = spend_amount(w, w->member[m].points, 0.1, 0.8);
    p->amount = amount;
    estimate_add(w, m, -(int64_t)amount);
    u->member = m;
    u->delta = -(int64_t)amount;
    if (rng_permille(&w->rng, HOLD_ABANDON_PERMILLE) ||
        w->holds_tail - w->holds_head >= WORKLOAD_HOLDS_MAX) {
        w->stats.holds_abandoned++;
        return true;
    }
    uint64_t push = w->holds_tail++;
    uint32_t slot = (uint32_t)(push % WORKLOAD_HOLDS_MAX);
    struct workload_hold *h = &w->holds[slot];
    memcpy(h->id, p->id, 16);
    h->member = m;
    h->amount = amount;
    h->due_us = now_us + HOLD_RESOLVE_MS * 1000;
    h->push = push;
    h->dead = false;
    u->ring = RING_HOLDS;
    u->slot = slot;
    u->push = push;
    return true;
}

/* The oldest live hold due by now_us, taken off the ring; NULL if none is due. */
static struct workload_hold *hold_due(struct workload *w, uint64_t now_us)
{
    for (uint32_t i = 0; i < WORKLOAD_HOLDS_MAX && w->holds_head < w->holds_tail; i++) {
        struct workload_hold *h = &w->holds[w->holds_head % WORKLOAD_HOLDS_MAX];
        if (h->dead) {
            w->holds_head++;
            continue;
        }
        if (h->due_us > now_us)
            return NULL;
        w->holds_head++;
        return h;
    }
    return NULL;
}

static void generate_resolution(struct workload *w, struct tally_posting *p,
                                struct workload_undo *u, const struct workload_hold *h,
                                uint64_t now_us)
{
    int64_t back = 0; /* points that return to available */
    if (rng_permille(&w->rng, CAPTURE_PERMILLE)) {
        posting_start(w, p, TALLY_KIND_CAPTURE, now_us);
        if (h->amount >= 2 && rng_permille(&w->rng, CAPTURE_PARTIAL_PERMILLE)) {
            uint64_t part = (uint64_t)((double)h->amount * (0.5 + 0.45 * rng_unit(&w->rng)));
            if (part == 0)
                part = 1;
            if (part >= h->amount)
                part = h->amount - 1;
            p->amount = part;
            back = (int64_t)(h->amount - part);
            w->stats.partial_captures++;
        }
    } else {
        posting_start(w, p, TALLY_KIND_RELEASE, now_us);
        back = (int64_t)h->amount;
    }
    memcpy(p->ref, h->id, 16);
    p->account = h->member;
    estimate_add(w, h->member, back);
    u->member = h->member;
    u->delta = back;
}

/* Points to take back by a reversal of what remains (left) of an original: all of it (amount 0
 * on the wire) or a part of it. Returns the points; *wire is what the posting carries. */
static uint64_t reversal_amount(struct workload *w, uint64_t left, uint64_t *wire)
{
    if (left >= 2 && rng_permille(&w->rng, REVERSE_PARTIAL_PERMILLE)) {
        uint64_t part = (uint64_t)((double)left * (0.2 + 0.6 * rng_unit(&w->rng)));
        if (part == 0)
            part = 1;
        w->stats.partial_reversals++;
        *wire = part;
        return part;
    }
    *wire = 0;
    return left;
}

/* A return of a sampled accrual: CANCEL inside the pending window, REVERSE once active.
 * Returns false if this ref cannot be used now. */
static bool generate_return_of_accrual(struct workload *w, struct tally_posting *p,
                                       struct workload_undo *u, struct workload_ref *r,
                                       uint64_t now_us)
{
    uint64_t now_ms = now_us / 1000;
    uint64_t activates = r->created_ms + PENDING_WINDOW_MS;
    uint64_t margin = cancel_margin_ms(w);
    if (r->pending && now_ms + margin < activates) {
        posting_start(w, p, TALLY_KIND_CANCEL, now_us);
        memcpy(p->ref, r->id, 16);
        p->account = r->member;
        r->amount_left = 0;
        return true;
    }
    if (r->pending && now_ms <= activates + margin)
        return false; /* too close to its activation to know which one applies */
    int64_t est = estimate_of(w, r->member, day_of(w, now_ms));
    if (est <= 0)
        return false;
    uint64_t wire;
    uint64_t take = reversal_amount(w, r->amount_left, &wire);
    if (take > (uint64_t)est) {
        take = (uint64_t)est; /* the member spent some: reverse what is left */
        wire = take;
    }
    posting_start(w, p, TALLY_KIND_REVERSE, now_us);
    memcpy(p->ref, r->id, 16);
    p->account = r->member;
    p->amount = wire;
    r->amount_left -= take;
    estimate_add(w, r->member, -(int64_t)take);
    u->member = r->member;
    u->delta = -(int64_t)take;
    return true;
}

static void generate_return_of_redemption(struct workload *w, struct tally_posting *p,
                                          struct workload_undo *u, struct workload_ref *r,
                                          uint64_t now_us)
{
    uint64_t wire;
    uint64_t take = reversal_amount(w, r->amount_left, &wire);
    posting_start(w, p, TALLY_KIND_REVERSE, now_us);
    memcpy(p->ref, r->id, 16);
    p->account = r->member;
    p->amount = wire;
    r->amount_left -= take;
    estimate_add(w, r->member, (int64_t)take);
    u->member = r->member;
    u->delta = (int64_t)take;
}

static bool generate_return(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                            uint64_t now_us)
{
    uint64_t stored = w->refs_pushed < WORKLOAD_REFS_MAX ? w->refs_pushed : WORKLOAD_REFS_MAX;
    if (stored == 0)
        return false;
    uint16_t want =
        rng_permille(&w->rng, REVERSE_REDEMPTION_PERMILLE) ? TALLY_KIND_REDEEM : TALLY_KIND_ACCRUE;
    for (uint32_t t = 0; t < RETURN_TRIES; t++) {
        uint32_t slot = rng_below(&w->rng, (uint32_t)stored);
        struct workload_ref *r = &w->refs[slot];
        if (r->amount_left == 0 || r->kind != want)
            continue;
        u->ring = RING_REFS;
        u->slot = slot;
        u->push = r->push;
        if (want == TALLY_KIND_REDEEM) {
            generate_return_of_redemption(w, p, u, r, now_us);
            return true;
        }
        if (generate_return_of_accrual(w, p, u, r, now_us))
            return true;
        u->ring = RING_NONE;
    }
    return false;
}

static bool generate_transfer(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                              uint64_t now_us)
{
    uint64_t from = draw_member_with(w, SPEND_MIN_POINTS, day_of(w, now_us / 1000));
    if (from == 0)
        return false;
    uint64_t to = draw_member(w);
    if (to == from)
        to = from % w->opts.members + 1;
    uint64_t amount = spend_amount(w, w->member[from].points, 0.1, 0.5);
    posting_start(w, p, TALLY_KIND_TRANSFER, now_us);
    p->account = from;
    p->account2 = to;
    p->amount = amount;
    estimate_add(w, from, -(int64_t)amount);
    estimate_of(w, to, day_of(w, now_us / 1000));
    estimate_add(w, to, (int64_t)amount);
    u->member = from;
    u->delta = -(int64_t)amount;
    u->member2 = to;
    u->delta2 = (int64_t)amount;
    return true;
}

static void generate_adjust(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                            uint64_t now_us)
{
    uint32_t today = day_of(w, now_us / 1000);
    uint64_t m = 0;
    if (rng_permille(&w->rng, ADJUST_NEGATIVE_PERMILLE))
        m = draw_member_with(w, ADJUST_NEGATIVE_MIN_POINTS, today);
    if (m != 0) {
        uint64_t amount = 1 + (uint64_t)((double)w->member[m].points * 0.25 * rng_unit(&w->rng));
        posting_start(w, p, TALLY_KIND_ADJUST, now_us);
        p->flags = TALLY_FLAG_NEGATIVE;
        p->account = m;
        p->amount = amount;
        estimate_add(w, m, -(int64_t)amount);
        u->delta = -(int64_t)amount;
    } else {
        m = draw_member(w);
        uint64_t amount = 10 * (1 + (uint64_t)rng_below(&w->rng, 50));
        posting_start(w, p, TALLY_KIND_ADJUST, now_us);
        p->account = m;
        p->amount = amount;
        estimate_of(w, m, today);
        estimate_add(w, m, (int64_t)amount);
        note_earned(w, m, today);
        u->delta = (int64_t)amount;
    }
    p->code = 1 + rng_below(&w->rng, ADJUST_REASONS); /* ADJUST: code is the reason */
    u->member = m;
}

static void generate_one(struct workload *w, struct tally_posting *p, struct workload_undo *u,
                         uint64_t now_us)
{
    memset(u, 0, sizeof(*u));
    const struct workload_hold *h = hold_due(w, now_us);
    if (h != NULL) {
        generate_resolution(w, p, u, h, now_us);
        u->kind = p->kind;
        return;
    }
    uint64_t stored =
        w->recent_pushed < WORKLOAD_RECENT_MAX ? w->recent_pushed : WORKLOAD_RECENT_MAX;
    if (stored > 0 && rng_permille(&w->rng, RETRY_PERMILLE)) {
        *p = w->recent[rng_below(&w->rng, (uint32_t)stored)];
        u->kind = p->kind;
        w->stats.by_kind[p->kind]++;
        w->stats.retries++;
        return;
    }
    uint32_t r = rng_below(&w->rng, MIX_TOTAL);
    bool made = false;
    if (r < MIX_ACCRUE) {
        generate_accrue(w, p, u, now_us);
        made = true;
    } else if ((r -= MIX_ACCRUE) < MIX_REDEEM) {
        made = generate_redeem(w, p, u, now_us);
    } else if ((r -= MIX_REDEEM) < MIX_HOLD) {
        made = generate_hold(w, p, u, now_us);
    } else if ((r -= MIX_HOLD) < MIX_REVERSE) {
        made = generate_return(w, p, u, now_us);
    } else if ((r -= MIX_REVERSE) < MIX_TRANSFER) {
        made = generate_transfer(w, p, u, now_us);
    } else {
        generate_adjust(w, p, u, now_us);
        made = true;
    }
    if (!made) {
        w->stats.fallbacks++;
        memset(u, 0, sizeof(*u));
        generate_accrue(w, p, u, now_us);
    }
    u->kind = p->kind;
    if (rng_below(&w->rng, RECENT_SAMPLE) == 0)
        w->recent[w->recent_pushed++ % WORKLOAD_RECENT_MAX] = *p;
}

/* ---------------------------------------------------------------------------------------------
 * Batches.
 * ------------------------------------------------------------------------------------------- */
int workload_setup_batch(struct workload *w, struct tally_posting *out, uint32_t max,
                         uint32_t *count, uint64_t *timestamp)
{
    if (max == 0 || max > TALLY_BATCH_MAX)
        return -EINVAL;
    uint64_t now_us = w->opts.start_ms * 1000;
    uint32_t n = 0;
    *timestamp = w->opts.start_ms;
    if (!w->setup_program_done) {
        /* Alone in its batch: OPEN postings of the same batch would find it anyway, but a
         * separate batch is what a real deployment does. */
        struct tally_posting *p = &out[0];
        memset(p, 0, sizeof(*p));
        make_id(w, w->opts.start_ms, p->id);
        p->program = w->opts.program;
        p->kind = TALLY_KIND_PROGRAM;
        workload_program_config(w, &p->config);
        w->setup_program_done = true;
        *count = 1;
        return 0;
    }
    while (n < max && w->setup_opened < w->opts.members) {
        struct tally_posting *p = &out[n++];
        posting_start(w, p, TALLY_KIND_OPEN, now_us);
        memset(p->user_data, 0, sizeof(p->user_data));
        p->account = ++w->setup_opened;
    }
    /* posting_start counted the opens as stream postings of their kind: take them back. */
    w->stats.by_kind[TALLY_KIND_OPEN] -= n;
    *count = n;
    return 0;
}

void workload_setup_skip(struct workload *w)
{
    w->setup_program_done = true;
    w->setup_opened = w->opts.members;
}

int workload_next_batch(struct workload *w, struct tally_posting *out, uint32_t max,
                        uint32_t *count, uint64_t *timestamp)
{
    if (max == 0 || max > TALLY_BATCH_MAX)
        return -EINVAL;
    if (!w->setup_program_done || w->setup_opened < w->opts.members)
        return -EINVAL;
    for (uint32_t i = 0; i < max; i++) {
        uint64_t now_us = clock_us(w, w->clock_postings);
        w->clock_postings++;
        generate_one(w, &out[i], &w->undo[i], now_us);
    }
    w->undo_count = max;
    uint64_t ts = clock_us(w, w->clock_postings - 1) / 1000;
    if (ts < w->last_batch_ms)
        ts = w->last_batch_ms;
    w->last_batch_ms = ts;
    w->stats.postings += max;
    w->stats.batches++;
    *count = max;
    *timestamp = ts;
    return 0;
}

int workload_observe(struct workload *w, const struct tally_result *results, uint32_t count)
{
    if (count != w->undo_count)
        return -EINVAL;
    for (uint32_t i = 0; i < count; i++) {
        const struct tally_result *res = &results[i];
        if (res->code == TALLY_OK || (res->code == TALLY_EXISTS && res->detail == TALLY_OK))
            continue;
        const struct workload_undo *u = &w->undo[i];
        w->stats.observed_rejections++;
        if (u->member != 0)
            estimate_add(w, u->member, -u->delta);
        if (u->member2 != 0)
            estimate_add(w, u->member2, -u->delta2);
        if (u->ring == RING_REFS && w->refs[u->slot].push == u->push)
            w->refs[u->slot].amount_left = 0;
        if (u->ring == RING_HOLDS && w->holds[u->slot].push == u->push)
            w->holds[u->slot].dead = true;
        /* The member had less than believed: halve the belief rather than retry the same. */
        if (res->code == TALLY_INSUFFICIENT_POINTS && u->member != 0 && !u->expect_reject)
            w->member[u->member].points /= 2;
    }
    return 0;
}

uint64_t bench_percentile(const uint64_t *sorted, uint64_t n, double p)
{
    if (n == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}
