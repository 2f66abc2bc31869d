/* svg.c: the timeline plot of svg.h (moved out of tally-drill so that tally-bench draws the
 * same picture with the same code). */
#include "svg.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>

static double svg_log_y(double ms, double top, double height)
{
    /* 1 ms .. 10 s on a log scale. */
    double v = ms < 1 ? 0 : ms > 10000 ? 4 : log10(ms);
    return top + height - v / 4 * height;
}

double svg_plot_x(const struct svg_plot *g, uint64_t ns)
{
    return SVG_LEFT + g->pw * ((double)ns / 1e9) / g->secs;
}

int svg_plot_open(struct svg_plot *g, const char *path, uint64_t end_ns, uint64_t bucket_ns,
                  const uint64_t *count, const uint64_t *lat_ns, size_t nb)
{
    *g = (struct svg_plot){.bucket_ns = bucket_ns, .count = count, .lat_ns = lat_ns, .nb = nb};
    g->f = fopen(path, "w");
    if (g->f == NULL)
        return -errno;
    g->pw = SVG_W - SVG_LEFT - SVG_RIGHT;
    g->ph = SVG_H - SVG_TOP - SVG_BOT;
    g->secs = end_ns > 0 ? (double)end_ns / 1e9 : 1.0;
    uint64_t peak = 1;
    for (size_t b = 0; b < nb; b++)
        peak = count[b] > peak ? count[b] : peak;
    g->per_s = 1e9 / (double)bucket_ns;
    double raw = (double)peak * g->per_s * 1.05 / 4, mag = 1;
    while (mag * 10 <= raw)
        mag *= 10;
    double step = raw <= mag ? mag : raw <= 2 * mag ? 2 * mag : raw <= 2.5 * mag ? 2.5 * mag
                : raw <= 5 * mag ? 5 * mag : 10 * mag;
    g->ymax = 4 * step;
    fprintf(g->f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    return 0;
}

void svg_plot_axes(const struct svg_plot *g, const char *count_label, const char *lat_label)
{
    FILE *f = g->f;
    static const char *const lat[] = {"1 ms", "10 ms", "100 ms", "1 s", "10 s"};
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
               "stroke=\"#444\"/>\n", SVG_LEFT, SVG_TOP, g->pw, g->ph);
    for (int t = 0; t <= 4; t++) {
        double y = SVG_TOP + g->ph - g->ph * t / 4;
        fprintf(f, "<line x1=\"%d\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1f4e9c\">%.0f</text>\n"
                   "<text x=\"%.0f\" y=\"%.1f\" fill=\"#b35900\">%s</text>\n",
                SVG_LEFT, SVG_LEFT + g->pw, y, y, SVG_LEFT - 5, y + 4, g->ymax * t / 4,
                SVG_LEFT + g->pw + 5, y + 4, lat[t]);
    }
    unsigned step_s = g->secs <= 20 ? 1 : g->secs <= 100 ? 10 : g->secs <= 300 ? 20 : 60;
    for (unsigned s = 0; s <= (unsigned)g->secs && s < 100000; s += step_s)
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%u</text>\n",
                svg_plot_x(g, (uint64_t)s * 1000000000u), SVG_TOP + g->ph + 16, s);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">seconds since the load "
               "started (buckets of %" PRIu64 " ms)</text>\n",
            SVG_LEFT + g->pw / 2, SVG_TOP + g->ph + 34, g->bucket_ns / 1000000u);
    fprintf(f, "<text x=\"16\" y=\"%.0f\" fill=\"#1f4e9c\" transform=\"rotate(-90 16 %.0f)\" "
               "text-anchor=\"middle\">%s</text>\n",
            SVG_TOP + g->ph / 2, SVG_TOP + g->ph / 2, count_label);
    fprintf(f, "<text x=\"%d\" y=\"%.0f\" fill=\"#b35900\" transform=\"rotate(90 %d %.0f)\" "
               "text-anchor=\"middle\">%s</text>\n",
            SVG_W - 14, SVG_TOP + g->ph / 2, SVG_W - 14, SVG_TOP + g->ph / 2, lat_label);
}

void svg_plot_series(const struct svg_plot *g, const char *legend)
{
    FILE *f = g->f;
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f4e9c\" stroke-width=\"1.5\" points=\"");
    for (size_t b = 0; b < g->nb; b++)
        fprintf(f, "%.1f,%.1f ", svg_plot_x(g, b * g->bucket_ns + g->bucket_ns / 2),
                SVG_TOP + g->ph - g->ph * (double)g->count[b] * g->per_s / g->ymax);
    fprintf(f, "\"/>\n");
    for (size_t b = 0; b < g->nb; b++)
        if (g->count[b] > 0)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.8\" fill=\"#b35900\"/>\n",
                    svg_plot_x(g, b * g->bucket_ns + g->bucket_ns / 2),
                    svg_log_y((double)g->lat_ns[b] / 1e6, SVG_TOP, g->ph));
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>\n", SVG_LEFT, SVG_H - 8,
            legend);
}

int svg_plot_close(struct svg_plot *g)
{
    fprintf(g->f, "</svg>\n");
    bool bad = ferror(g->f) != 0;
    int rc = fclose(g->f) != 0 || bad ? -EIO : 0;
    g->f = NULL;
    return rc;
}
