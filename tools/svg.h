/* svg.h: a timeline plot written as SVG by hand: postings/s as a line on a linear axis, and a
 * latency per time bucket as points on a log axis (1 ms .. 10 s), over seconds of a run.
 *
 * Shared by tally-drill (throughput, worst latency, the faults drawn on top) and tally-bench
 * (throughput, p99). SVG is text: the tools then need nothing installed to draw, and the plot
 * opens in any browser. The caller owns the buckets; the plot only reads them.
 *
 * Usage: svg_plot_open (header and scale), then the caller's own title and decorations through
 * g->f, svg_plot_x and the SVG_* geometry, then svg_plot_axes, svg_plot_series, svg_plot_close.
 */
#ifndef TALLY_SVG_H
#define TALLY_SVG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SVG_W     1000
#define SVG_H     460
#define SVG_LEFT  70
#define SVG_RIGHT 70
#define SVG_TOP   50
#define SVG_BOT   60

struct svg_plot {
    FILE *f;
    uint64_t bucket_ns;     /* width of a bucket */
    const uint64_t *count;  /* [nb] postings answered in each bucket */
    const uint64_t *lat_ns; /* [nb] the latency drawn for each bucket (drawn where count > 0) */
    size_t nb;
    double pw, ph;          /* plot area */
    double secs;            /* the x axis: 0 .. secs */
    double ymax, per_s;     /* throughput axis top (postings/s), buckets per second */
};

/* Create the file, write the SVG header, and choose the throughput axis (four steps of 1, 2,
 * 2.5 or 5 times a power of ten above the busiest bucket). Returns 0 or -errno. */
int svg_plot_open(struct svg_plot *g, const char *path, uint64_t end_ns, uint64_t bucket_ns,
                  const uint64_t *count, const uint64_t *lat_ns, size_t nb);

/* x of a time since the start of the run. */
double svg_plot_x(const struct svg_plot *g, uint64_t ns);

/* The frame, the grid, both y axes with their labels, and the seconds along x. */
void svg_plot_axes(const struct svg_plot *g, const char *count_label, const char *lat_label);

/* The throughput line, the latency points, and the legend (SVG <tspan> markup, written as is). */
void svg_plot_series(const struct svg_plot *g, const char *legend);

/* Close the document and the file: 0, or -EIO if anything could not be written. */
int svg_plot_close(struct svg_plot *g);

#endif
