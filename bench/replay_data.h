/* replay_data.h: the two real purchase histories of data/retail/ read into purchases and returns
 * in time order, for tally-replay.
 *
 * What it produces
 * ----------------
 * A list of events sorted by (time, position in the source): a PURCHASE (a customer spent
 * `cents`) or a RETURN (a customer gave back `cents` of an earlier PURCHASE, named by its index
 * in the list). The data files are described in data/retail/SOURCE.md; the mapping decisions are
 * in docs/BENCHMARKS.md ("Replay of real purchase histories"). In short:
 *
 *   CDNOW (cdnow.txt): one PURCHASE per data row, at 00:00 UTC of its date, of dollar_value in
 *   cents. No returns exist. The header line is skipped; CRLF or LF line ends are accepted.
 *
 *   UCI Online Retail (online_retail.csv.gz): read with zlib and libcsv (RFC 4180 quoting). One
 *   PURCHASE per invoice of a customer (not starting with C), at its earliest line's time (the
 *   local time of the file, read as UTC), of sum(Quantity x UnitPrice) over its lines, rounded
 *   to the penny (half up). A line of a cancellation invoice (C...) returns |Quantity| x
 *   UnitPrice of the customer's most recent earlier purchase invoice holding the same StockCode;
 *   the lines of one cancellation that return from the same purchase make one RETURN, rounded to
 *   the penny and capped so that the returns of a purchase never exceed it.
 *
 * Every customer appears: one whose rows make no PURCHASE or RETURN (CDNOW: only $0.00 rows;
 * UCI: only zero-priced lines or unmatched returns) gets a JOIN event at its first row.
 *
 * Nothing is dropped silently: every row that makes no event is counted in struct replay_stats
 * under the reason (no customer, zero amount, unmatched return line, ...).
 *
 * What it does not do
 * -------------------
 * It knows nothing of points or of the ledger (tally-replay's model and driver decide those). It
 * reads at most `max_rows` data rows (0: all): a prefix of the file, for the tests.
 * Memory: the events (32 bytes each) and, for UCI, the lines while they are matched (~64 bytes a
 * row): about 40 MB for the whole UCI file.
 */
#ifndef TALLY_REPLAY_DATA_H
#define TALLY_REPLAY_DATA_H

#include <stdint.h>

enum replay_set {
    REPLAY_SET_CDNOW = 1,
    REPLAY_SET_ONLINE_RETAIL = 2,
};

enum replay_event_kind {
    REPLAY_PURCHASE = 1,
    REPLAY_RETURN = 2,
    REPLAY_JOIN = 3, /* a customer none of whose rows makes a purchase: at its first row */
};

struct replay_event {
    uint64_t at_ms;    /* when it happened, ms since the Unix epoch */
    uint64_t customer; /* CDNOW customer_id or UCI CustomerID */
    uint64_t cents;    /* spent (PURCHASE) or given back (RETURN): cents or pence */
    uint32_t kind;     /* enum replay_event_kind */
    uint32_t ref;      /* RETURN: index of the PURCHASE event it returns from */
    uint32_t source;   /* CDNOW: data row (1 = first after the header); UCI: invoice number */
    uint32_t reserved;
};

struct replay_stats {
    uint64_t rows;             /* data rows read (header lines not counted) */
    uint64_t header_lines;     /* header lines skipped */
    uint64_t bad_rows;         /* rows that do not parse (reported; the load fails) */
    uint64_t rows_no_customer; /* UCI: rows without CustomerID */
    uint64_t rows_zero;        /* rows whose amount is 0 (price or dollar value 0) */
    uint64_t duplicate_rows;   /* UCI: rows byte-identical to an earlier row (kept) */
    uint64_t adjust_rows;      /* UCI: A invoices (bad-debt adjustments, no customer) */
    uint64_t odd_rows;         /* UCI: negative quantity outside a C invoice, with a customer */
    uint64_t customers;        /* distinct customers (rows with a customer) */
    uint64_t joins;            /* ... of which none of whose rows makes an event: JOIN events */
    uint64_t purchases;        /* PURCHASE events */
    uint64_t purchase_cents;   /* their sum */
    uint64_t purchases_zero;   /* UCI: invoices of a customer whose lines sum to <= 0 */
    uint64_t return_rows;      /* UCI: C-invoice rows with a customer */
    uint64_t return_rows_unmatched;  /* ... with no earlier purchase of that StockCode */
    uint64_t return_cents_unmatched; /* their amount, pence */
    uint64_t returns;                /* RETURN events */
    uint64_t return_cents;           /* their sum (after the cap) */
    uint64_t return_cents_capped;    /* pence cut because returns would exceed their purchase */
    uint64_t invoices;               /* UCI: distinct invoice numbers (all rows) */
    uint64_t first_ms, last_ms;      /* time of the first and last event */
};

struct replay_data {
    uint32_t set; /* enum replay_set */
    struct replay_event *events;
    uint32_t count;
    struct replay_stats stats;
};

/* Read cdnow.txt (CDNOW master file). Returns 0, -errno of the file, -ENOMEM, or -EINVAL when a
 * row does not parse (its number in stats.bad_rows and on stderr). */
int replay_data_load_cdnow(const char *path, uint64_t max_rows, struct replay_data *out);

/* Read online_retail.csv.gz (gzip-compressed or plain CSV, with its header line). Returns as
 * replay_data_load_cdnow. */
int replay_data_load_online_retail(const char *path, uint64_t max_rows, struct replay_data *out);

void replay_data_free(struct replay_data *d);

/* Parse a decimal "123.45" into units of 10^-scale (scale <= 6), exactly: 0 and *out, or -1 for
 * anything else (signs, more than `scale` decimals, overflow, empty). */
int replay_parse_decimal(const char *s, unsigned scale, uint64_t *out);

#endif
