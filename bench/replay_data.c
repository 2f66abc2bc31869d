/* replay_data.c: the readers of CDNOW and UCI Online Retail (see replay_data.h for the rules).
 *
 * Design notes
 * ------------
 * - Money is read exactly from its decimal text (replay_parse_decimal), never through a double:
 *   CDNOW dollars in cents; UCI prices in units of 10^-5 pounds (one price has three decimals,
 *   0.001), so a line's Quantity x UnitPrice is exact and an invoice is rounded to the penny once.
 * - The UCI file is CSV with RFC 4180 quoting (4,796 descriptions hold commas, some hold quotes
 *   doubled): it is read by libcsv (Debian libcsv-dev) from zlib's gzread, which also reads an
 *   uncompressed file as it is. Only the fields the replay needs are kept; every field of a row
 *   goes into its XXH3 hash, which finds the rows byte-identical to an earlier one.
 * - Times: CDNOW has dates only (00:00 UTC is used); UCI's "YYYY-MM-DD HH:MM:SS" is the shop's
 *   local time, read as UTC (no zone is stated; a fixed reading keeps the order). timegm(3)
 *   turns civil time into an instant.
 * - Matching a cancellation line to its purchase: the purchase lines of each customer are sorted
 *   by (customer, StockCode, position of the invoice in time order); a binary search finds the
 *   last one before the cancellation's position.
 */
#include "replay_data.h"

#include <csv.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "hash.h"

int replay_parse_decimal(const char *s, unsigned scale, uint64_t *out)
{
    uint64_t v = 0;
    unsigned decimals = 0;
    bool dot = false, digits = false;
    if (scale > 6 || s == NULL)
        return -1;
    for (; *s != '\0'; s++) {
        if (*s == '.' && !dot) {
            dot = true;
            continue;
        }
        if (*s < '0' || *s > '9')
            return -1;
        if (dot && ++decimals > scale)
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        digits = true;
    }
    if (!digits)
        return -1;
    for (; decimals < scale; decimals++) {
        if (v > UINT64_MAX / 10)
            return -1;
        v *= 10;
    }
    *out = v;
    return 0;
}

/* Civil UTC time to ms; -1 if a field is out of range. */
static int64_t civil_ms(int y, int mo, int d, int h, int mi, int s)
{
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || s < 0 || s > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    time_t t = timegm(&tm);
    if (t < 0 || tm.tm_mday != d)
        return -1; /* 31 February and the like were normalised */
    return (int64_t)t * 1000;
}

static int events_push(struct replay_data *d, uint32_t *cap, const struct replay_event *ev)
{
    if (d->count == *cap) {
        uint32_t n = *cap ? *cap * 2 : 4096;
        struct replay_event *p = realloc(d->events, n * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        d->events = p;
        *cap = n;
    }
    d->events[d->count++] = *ev;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Distinct values of v[0..n) (sorted in place). */
static uint64_t distinct(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += i == 0 || v[i] != v[i - 1];
    return k;
}

/* When a customer first appears in the data (any row of theirs). */
struct first_seen {
    uint64_t customer;
    uint64_t at_ms;
    uint32_t row;
};

static int cmp_seen(const void *a, const void *b)
{
    const struct first_seen *x = a, *y = b;
    if (x->customer != y->customer)
        return x->customer < y->customer ? -1 : 1;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

static int cmp_seen_time(const void *a, const void *b)
{
    const struct first_seen *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->customer < y->customer ? -1 : x->customer > y->customer;
}

/* Count the customers of seen[0..n) (every row with a customer) and merge a JOIN event, at its
 * first row, for each one that has no event; RETURN refs are renumbered. Sorts seen. */
static int finish_events(struct replay_data *d, struct first_seen *seen, size_t n)
{
    qsort(seen, n, sizeof(*seen), cmp_seen);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || seen[i].customer != seen[i - 1].customer)
            seen[k++] = seen[i];
    }
    d->stats.customers = k;
    uint64_t *has = malloc((d->count + 1) * sizeof(*has));
    if (has == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->count; i++)
        has[i] = d->events[i].customer;
    qsort(has, d->count, sizeof(*has), cmp_u64);
    size_t nj = 0;
    for (size_t i = 0; i < k; i++) {
        if (bsearch(&seen[i].customer, has, d->count, sizeof(*has), cmp_u64) == NULL)
            seen[nj++] = seen[i];
    }
    free(has);
    d->stats.joins = nj;
    qsort(seen, nj, sizeof(*seen), cmp_seen_time);
    size_t total = d->count + nj;
    struct replay_event *ev = calloc(total + 1, sizeof(*ev));
    uint32_t *moved = calloc(d->count + 1, sizeof(*moved));
    if (ev == NULL || moved == NULL) {
        free(ev);
        free(moved);
        return -ENOMEM;
    }
    size_t a = 0, j = 0;
    for (size_t o = 0; o < total; o++) {
        if (j < nj && (a == d->count || seen[j].at_ms <= d->events[a].at_ms)) {
            ev[o] = (struct replay_event){
                seen[j].at_ms, seen[j].customer, 0, REPLAY_JOIN, 0, seen[j].row, 0};
            j++;
        } else {
            moved[a] = (uint32_t)o;
            ev[o] = d->events[a++];
            if (ev[o].kind == REPLAY_RETURN)
                ev[o].ref = moved[ev[o].ref];
        }
    }
    free(moved);
    free(d->events);
    d->events = ev;
    d->count = (uint32_t)total;
    if (d->count > 0) {
        d->stats.first_ms = d->events[0].at_ms;
        d->stats.last_ms = d->events[d->count - 1].at_ms;
    }
    return 0;
}

/* ---- CDNOW ---------------------------------------------------------------------------------- */

static int cmp_event_time(const void *a, const void *b)
{
    const struct replay_event *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->source < y->source ? -1 : x->source > y->source;
}

/* One data line: " 00001 19970101  1   11.77". 0, or -1 if it does not parse. */
static int cdnow_row(char *line, uint64_t *customer, uint64_t *at_ms, uint64_t *cents)
{
    char *save = NULL;
    char *f[5];
    int n = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t != NULL && n < 5;
         t = strtok_r(NULL, " \t\r\n", &save))
        f[n++] = t;
    if (n != 4)
        return -1;
    uint64_t id, date, cds;
    if (replay_parse_decimal(f[0], 0, &id) != 0 || id == 0 ||
        replay_parse_decimal(f[1], 0, &date) != 0 || replay_parse_decimal(f[2], 0, &cds) != 0 ||
        replay_parse_decimal(f[3], 2, cents) != 0)
        return -1;
    int64_t ms = civil_ms((int)(date / 10000), (int)(date / 100 % 100), (int)(date % 100), 0, 0, 0);
    if (ms < 0)
        return -1;
    *customer = id;
    *at_ms = (uint64_t)ms;
    return 0;
}

int replay_data_load_cdnow(const char *path, uint64_t max_rows, struct replay_data *out)
{
    memset(out, 0, sizeof(*out));
    out->set = REPLAY_SET_CDNOW;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    char line[512];
    uint32_t cap = 0;
    size_t nseen = 0, seen_cap = 0;
    struct first_seen *seen = NULL;
    int rc = 0;
    bool first = true;
    while ((max_rows == 0 || out->stats.rows < max_rows) && fgets(line, sizeof(line), f)) {
        if (first) {
            first = false;
            if (strstr(line, "customer_id") != NULL) {
                out->stats.header_lines++;
                continue;
            }
        }
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue; /* a blank line (none in the file; a trailing one is harmless) */
        out->stats.rows++;
        struct replay_event ev = {.kind = REPLAY_PURCHASE, .source = (uint32_t)out->stats.rows};
        if (cdnow_row(line, &ev.customer, &ev.at_ms, &ev.cents) != 0) {
            if (out->stats.bad_rows++ < 5)
                fprintf(stderr, "replay: %s: data row %llu does not parse\n", path,
                        (unsigned long long)out->stats.rows);
            continue;
        }
        if (nseen == seen_cap) {
            seen_cap = seen_cap ? seen_cap * 2 : 65536;
            struct first_seen *p = realloc(seen, seen_cap * sizeof(*p));
            if (p == NULL) {
                rc = -ENOMEM;
                break;
            }
            seen = p;
        }
        seen[nseen++] = (struct first_seen){ev.customer, ev.at_ms, ev.source};
        if (ev.cents == 0) {
            out->stats.rows_zero++;
            continue;
        }
        out->stats.purchases++;
        out->stats.purchase_cents += ev.cents;
        if ((rc = events_push(out, &cap, &ev)) != 0)
            break;
    }
    if (rc == 0 && ferror(f))
        rc = -EIO;
    fclose(f);
    if (rc == 0 && out->stats.bad_rows > 0)
        rc = -EINVAL;
    if (rc == 0) {
        qsort(out->events, out->count, sizeof(*out->events), cmp_event_time);
        rc = finish_events(out, seen, nseen);
    }
    free(seen);
    if (rc != 0)
        replay_data_free(out);
    return rc;
}

/* ---- UCI Online Retail ---------------------------------------------------------------------- */

/* A row of a customer, as kept for grouping and matching. */
struct uci_line {
    uint64_t invoice; /* prefix letter << 32 | number */
    uint64_t customer;
    uint64_t at_ms;
    int64_t quantity;
    uint64_t price; /* 10^-5 pounds */
    uint32_t row;
    char stock[20];
};

enum { UCI_FIELDS = 8, UCI_FIELD_MAX = 64 };

struct uci_reader {
    struct replay_data *d;
    uint64_t max_rows;
    uint32_t field; /* index of the next field in the row */
    char f[UCI_FIELDS][UCI_FIELD_MAX];
    bool too_long; /* a kept field did not fit */
    XXH3_state_t *hash;
    uint64_t *row_hashes, *invoices;
    size_t rows_cap;
    struct uci_line *lines;
    size_t nlines, lines_cap;
    struct first_seen *seen;
    size_t nseen, seen_cap;
    int rc;
    bool done;
};

/* Fields kept: 0 InvoiceNo, 1 StockCode, 3 Quantity, 4 InvoiceDate, 5 UnitPrice, 6 CustomerID. */
static void uci_field(void *s, size_t len, void *data)
{
    struct uci_reader *r = data;
    if (r->done)
        return;
    static const uint8_t sep = 0x1f;
    XXH3_64bits_update(r->hash, s, len);
    XXH3_64bits_update(r->hash, &sep, 1);
    if (r->field < UCI_FIELDS && r->field != 2 && r->field != 7) {
        if (len >= UCI_FIELD_MAX) {
            r->too_long = true;
            len = UCI_FIELD_MAX - 1;
        }
        memcpy(r->f[r->field], s, len);
        r->f[r->field][len] = '\0';
    }
    r->field++;
}

static int uci_invoice_key(const char *s, uint64_t *key)
{
    uint64_t prefix = 0, n;
    if (*s >= 'A' && *s <= 'Z')
        prefix = (uint64_t)*s++;
    if (replay_parse_decimal(s, 0, &n) != 0 || n > UINT32_MAX)
        return -1;
    *key = prefix << 32 | n;
    return 0;
}

/* A data row: 0 kept or counted, -1 bad. */
static int uci_row_parse(struct uci_reader *r, struct uci_line *l)
{
    struct replay_stats *st = &r->d->stats;
    if (r->field != UCI_FIELDS || r->too_long || uci_invoice_key(r->f[0], &l->invoice) != 0)
        return -1;
    r->invoices[st->rows - 1] = l->invoice;
    if (r->f[6][0] == '\0') {
        st->rows_no_customer++;
        st->adjust_rows += (l->invoice >> 32) == 'A';
        return 0;
    }
    const char *q = r->f[3];
    bool neg = *q == '-';
    uint64_t qty, cust;
    int y, mo, d, h, mi, s;
    char tail;
    if (replay_parse_decimal(q + neg, 0, &qty) != 0 || qty > INT32_MAX ||
        replay_parse_decimal(r->f[5], 5, &l->price) != 0 ||
        replay_parse_decimal(r->f[6], 0, &cust) != 0 || cust == 0 ||
        sscanf(r->f[4], "%4d-%2d-%2d %2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &tail) != 6)
        return -1;
    int64_t ms = civil_ms(y, mo, d, h, mi, s);
    if (ms < 0)
        return -1;
    l->quantity = neg ? -(int64_t)qty : (int64_t)qty;
    l->customer = cust;
    l->at_ms = (uint64_t)ms;
    l->row = (uint32_t)st->rows;
    size_t slen = strlen(r->f[1]);
    if (slen >= sizeof(l->stock))
        return -1;
    memcpy(l->stock, r->f[1], slen + 1);
    if (r->nseen == r->seen_cap) {
        size_t n = r->seen_cap ? r->seen_cap * 2 : 65536;
        struct first_seen *p = realloc(r->seen, n * sizeof(*p));
        if (p == NULL) {
            r->rc = -ENOMEM;
            return 0;
        }
        r->seen = p;
        r->seen_cap = n;
    }
    r->seen[r->nseen++] = (struct first_seen){l->customer, l->at_ms, l->row};
    if (l->quantity == 0 || l->price == 0) {
        st->rows_zero++;
        return 0;
    }
    if (r->nlines == r->lines_cap) {
        size_t n = r->lines_cap ? r->lines_cap * 2 : 65536;
        struct uci_line *p = realloc(r->lines, n * sizeof(*p));
        if (p == NULL) {
            r->rc = -ENOMEM;
            return 0;
        }
        r->lines = p;
        r->lines_cap = n;
    }
    r->lines[r->nlines++] = *l;
    return 0;
}

static void uci_row(int c, void *data)
{
    (void)c;
    struct uci_reader *r = data;
    struct replay_stats *st = &r->d->stats;
    uint64_t h = XXH3_64bits_digest(r->hash);
    XXH3_64bits_reset(r->hash);
    bool header = st->rows == 0 && st->header_lines == 0 && strcmp(r->f[0], "InvoiceNo") == 0;
    if (r->done || header) {
        st->header_lines += header;
        goto next;
    }
    if (st->rows == r->rows_cap) {
        size_t n = r->rows_cap ? r->rows_cap * 2 : 65536;
        uint64_t *a = realloc(r->row_hashes, n * sizeof(*a));
        uint64_t *b = a ? realloc(r->invoices, n * sizeof(*b)) : NULL;
        if (a != NULL)
            r->row_hashes = a;
        if (b == NULL) {
            r->rc = -ENOMEM;
            r->done = true;
            goto next;
        }
        r->invoices = b;
        r->rows_cap = n;
    }
    st->rows++;
    r->row_hashes[st->rows - 1] = h;
    struct uci_line l;
    memset(&l, 0, sizeof(l));
    if (uci_row_parse(r, &l) != 0 && st->bad_rows++ < 5)
        fprintf(stderr, "replay: online retail: data row %llu does not parse\n",
                (unsigned long long)st->rows);
    if (r->rc != 0 || (r->max_rows != 0 && st->rows >= r->max_rows))
        r->done = true;
next:
    r->field = 0;
    r->too_long = false;
    memset(r->f, 0, sizeof(r->f));
}

static int cmp_line_invoice(const void *a, const void *b)
{
    const struct uci_line *x = a, *y = b;
    if (x->invoice != y->invoice)
        return x->invoice < y->invoice ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

struct uci_invoice {
    uint64_t at_ms;
    uint64_t customer;
    uint32_t first_row;
    uint32_t line, nlines; /* its lines: lines[line .. line + nlines) */
    uint32_t event;        /* its PURCHASE event + 1 (0: none) */
    uint32_t number;
    bool cancel;
};

static int cmp_invoice_time(const void *a, const void *b)
{
    const struct uci_invoice *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->first_row < y->first_row ? -1 : x->first_row > y->first_row;
}

/* A purchase line in the matching index: position = the invoice's place in time order. */
struct uci_match {
    uint64_t customer;
    const char *stock;
    uint32_t pos;
};

static int cmp_match(const void *a, const void *b)
{
    const struct uci_match *x = a, *y = b;
    if (x->customer != y->customer)
        return x->customer < y->customer ? -1 : 1;
    int c = strcmp(x->stock, y->stock);
    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The position of the customer's last purchase before pos holding stock; -1 if none. */
static int64_t uci_find(const struct uci_match *m, size_t n, uint64_t customer, const char *stock,
                        uint32_t pos)
{
    struct uci_match key = {customer, stock, pos};
    size_t lo = 0, hi = n; /* first index not below key */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_match(&m[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || m[lo - 1].customer != customer || strcmp(m[lo - 1].stock, stock) != 0)
        return -1;
    return m[lo - 1].pos;
}

/* Pence of an amount in 10^-5 pounds, half up. */
static uint64_t pence_of(uint64_t units)
{
    return (units + 500) / 1000;
}

/* Group the lines into invoices, in time order. */
static int uci_invoices(struct uci_reader *r, struct uci_invoice **out, uint32_t *count)
{
    qsort(r->lines, r->nlines, sizeof(*r->lines), cmp_line_invoice);
    struct uci_invoice *inv = calloc(r->nlines + 1, sizeof(*inv));
    if (inv == NULL)
        return -ENOMEM;
    uint32_t n = 0;
    for (size_t i = 0; i < r->nlines;) {
        struct uci_invoice *v = &inv[n++];
        const struct uci_line *l = &r->lines[i];
        *v = (struct uci_invoice){l->at_ms,
                                  l->customer,
                                  l->row,
                                  (uint32_t)i,
                                  0,
                                  0,
                                  (uint32_t)l->invoice,
                                  (l->invoice >> 32) == 'C'};
        for (; i < r->nlines && r->lines[i].invoice == l->invoice; i++) {
            if (r->lines[i].at_ms < v->at_ms)
                v->at_ms = r->lines[i].at_ms;
            v->nlines++;
        }
    }
    qsort(inv, n, sizeof(*inv), cmp_invoice_time);
    *out = inv;
    *count = n;
    return 0;
}

/* One line of a purchase invoice that counts: same customer, positive quantity. */
static bool uci_purchase_line(struct replay_stats *st, const struct uci_invoice *v,
                              const struct uci_line *l)
{
    if (l->customer == v->customer && l->quantity > 0)
        return true;
    st->odd_rows++;
    return false;
}

static int uci_purchase(struct replay_data *d, uint32_t *cap, struct uci_invoice *v,
                        const struct uci_line *lines, struct uci_match *m, size_t *nm, uint32_t pos)
{
    uint64_t units = 0;
    for (uint32_t k = 0; k < v->nlines; k++) {
        const struct uci_line *l = &lines[v->line + k];
        if (!uci_purchase_line(&d->stats, v, l))
            continue;
        units += (uint64_t)l->quantity * l->price;
        m[(*nm)++] = (struct uci_match){v->customer, l->stock, pos};
    }
    uint64_t cents = pence_of(units);
    if (cents == 0) {
        d->stats.purchases_zero++;
        return 0;
    }
    struct replay_event ev = {v->at_ms, v->customer, cents, REPLAY_PURCHASE, 0, v->number, 0};
    d->stats.purchases++;
    d->stats.purchase_cents += cents;
    v->event = d->count + 1;
    return events_push(d, cap, &ev);
}

/* The RETURN events of cancellation invoice v at position pos. returned[e]: pence returned so
 * far of PURCHASE event e. */
static int uci_cancel(struct replay_data *d, uint32_t *cap, const struct uci_invoice *v,
                      const struct uci_invoice *inv, const struct uci_line *lines,
                      const struct uci_match *m, size_t nm, uint32_t pos, uint64_t *returned)
{
    struct replay_stats *st = &d->stats;
    enum { PER_CANCEL_MAX = 1024 };
    uint32_t orig[PER_CANCEL_MAX];
    uint64_t units[PER_CANCEL_MAX];
    uint32_t n = 0;
    for (uint32_t k = 0; k < v->nlines; k++) {
        const struct uci_line *l = &lines[v->line + k];
        st->return_rows++;
        if (l->customer != v->customer || l->quantity >= 0) {
            st->odd_rows++;
            continue;
        }
        uint64_t u = (uint64_t)(-l->quantity) * l->price;
        int64_t p = uci_find(m, nm, v->customer, l->stock, pos);
        uint32_t e = p >= 0 ? inv[p].event : 0;
        if (e == 0) {
            st->return_rows_unmatched++;
            st->return_cents_unmatched += pence_of(u);
            continue;
        }
        uint32_t j = 0;
        while (j < n && orig[j] != e - 1)
            j++;
        if (j == n) {
            if (n == PER_CANCEL_MAX)
                return -E2BIG;
            orig[n] = e - 1;
            units[n++] = 0;
        }
        units[j] += u;
    }
    for (uint32_t j = 0; j < n; j++) {
        uint64_t want = pence_of(units[j]);
        uint64_t room = d->events[orig[j]].cents - returned[orig[j]];
        uint64_t cents = want < room ? want : room;
        st->return_cents_capped += want - cents;
        if (cents == 0)
            continue;
        returned[orig[j]] += cents;
        struct replay_event ev = {v->at_ms, v->customer, cents, REPLAY_RETURN,
                                  orig[j],  v->number,   0};
        st->returns++;
        st->return_cents += cents;
        int rc = events_push(d, cap, &ev);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Invoices to events, in time order. */
static int uci_events(struct uci_reader *r)
{
    struct replay_data *d = r->d;
    struct uci_invoice *inv = NULL;
    uint32_t ninv = 0, cap = 0;
    int rc = uci_invoices(r, &inv, &ninv);
    if (rc != 0)
        return rc;
    struct uci_match *m = malloc((r->nlines + 1) * sizeof(*m));
    /* Indexed by event: at most one PURCHASE per invoice and one RETURN per cancellation line. */
    uint64_t *returned = calloc(ninv + r->nlines + 1, sizeof(*returned));
    if (m == NULL || returned == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* The matching index holds every purchase line: a cancellation only looks at positions
     * before its own, so it can be built once, ahead. */
    size_t nm = 0;
    for (uint32_t pos = 0; pos < ninv && rc == 0; pos++) {
        if (!inv[pos].cancel)
            rc = uci_purchase(d, &cap, &inv[pos], r->lines, m, &nm, pos);
    }
    qsort(m, nm, sizeof(*m), cmp_match);
    /* Second pass: the purchases are events already (in order); returns are merged in at their
     * invoice's position. Rebuild the list in position order. */
    struct replay_event *purchases = d->events;
    uint32_t npurchases = d->count;
    d->events = NULL;
    d->count = 0;
    cap = 0;
    uint32_t next = 0;
    for (uint32_t pos = 0; pos < ninv && rc == 0; pos++) {
        struct uci_invoice *v = &inv[pos];
        if (!v->cancel) {
            if (v->event != 0) {
                v->event = d->count + 1; /* the same purchase, at its place in the new list */
                rc = events_push(d, &cap, &purchases[next++]);
            }
            continue;
        }
        rc = uci_cancel(d, &cap, v, inv, r->lines, m, nm, pos, returned);
    }
    free(purchases);
    (void)npurchases;
out:
    free(returned);
    free(m);
    free(inv);
    return rc;
}

static int uci_read(struct uci_reader *r, const char *path)
{
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL)
        return errno ? -errno : -ENOMEM;
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        gzclose(gz);
        return -ENOMEM;
    }
    static char buf[1 << 16];
    int rc = 0, n;
    while (!r->done && (n = gzread(gz, buf, sizeof(buf))) > 0) {
        if (csv_parse(&p, buf, (size_t)n, uci_field, uci_row, r) != (size_t)n) {
            fprintf(stderr, "replay: %s: %s\n", path, csv_strerror(csv_error(&p)));
            rc = -EINVAL;
            break;
        }
    }
    if (rc == 0 && !r->done) {
        int err;
        gzerror(gz, &err);
        if (err != Z_OK && err != Z_STREAM_END)
            rc = -EIO;
        else if (csv_fini(&p, uci_field, uci_row, r) != 0)
            rc = -EINVAL;
    }
    csv_free(&p);
    gzclose(gz);
    return rc != 0 ? rc : r->rc;
}

int replay_data_load_online_retail(const char *path, uint64_t max_rows, struct replay_data *out)
{
    memset(out, 0, sizeof(*out));
    out->set = REPLAY_SET_ONLINE_RETAIL;
    struct uci_reader r;
    memset(&r, 0, sizeof(r));
    r.d = out;
    r.max_rows = max_rows;
    r.hash = XXH3_createState();
    if (r.hash == NULL)
        return -ENOMEM;
    XXH3_64bits_reset(r.hash);
    int rc = uci_read(&r, path);
    if (rc == 0 && out->stats.bad_rows > 0)
        rc = -EINVAL;
    if (rc == 0) {
        uint64_t rows = out->stats.rows;
        out->stats.duplicate_rows = rows - distinct(r.row_hashes, rows);
        out->stats.invoices = distinct(r.invoices, rows);
        rc = uci_events(&r);
    }
    if (rc == 0)
        rc = finish_events(out, r.seen, r.nseen);
    XXH3_freeState(r.hash);
    free(r.seen);
    free(r.row_hashes);
    free(r.invoices);
    free(r.lines);
    if (rc != 0)
        replay_data_free(out);
    return rc;
}

void replay_data_free(struct replay_data *d)
{
    free(d->events);
    d->events = NULL;
    d->count = 0;
}
