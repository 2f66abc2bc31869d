#!/usr/bin/env python3
"""scale_report.py: the summary and the plot of a scale run (bench/scale.sh), from its outputs.

Usage: python3 bench/scale_report.py OUT TARGET RESTART_ANSWERING_S RESTART_CAUGHT_UP_S ENTRIES
       DATA_MDB_BYTES STOPPED_BY
OUT holds samples.csv and bench.json; writes OUT/scale.json and OUT/scale.svg, prints a table.
Separate from the script so that a finished run can be summarised and plotted again.
"""
import csv, json, sys
out, target, served, caught, entries, size, stopped = sys.argv[1:8]
rows = [r for r in csv.DictReader(open(out + "/samples.csv")) if r["entries"]]
bench = json.load(open(out + "/bench.json")) if rows else {}
tl = bench.get("timeline", [])
def at(t):  # entries at Unix time t, linear between samples
    prev = None
    for r in rows:
        tt, e = float(r["unix_s"]), int(r["entries"])
        if tt >= t:
            if prev is None: return e
            t1, e1 = prev
            return int(e1 + (e - e1) * (t - t1) / (tt - t1)) if tt > t1 else e
        prev = (tt, e)
    return int(rows[-1]["entries"]) if rows else 0
start = bench.get("load", {}).get("start_unix_ms", 0) / 1e3  # the timeline's second 0
pts = []  # (entries at the middle of the second, postings answered in it, its p99 ms)
for s in tl:
    pts.append((at(start + s["t"] - 0.5), s["postings"], s["p99_ms"]))
def window(lo, hi):
    w = [p for p in pts if lo <= p[0] < hi and p[1] > 0]
    if not w: return None
    rates = sorted(p[1] for p in w); p99s = sorted(p[2] for p in w)
    return rates[len(rates)//2], p99s[len(p99s)//2], len(w)
last = int(rows[-1]["entries"]) if rows else 0
summary = {"target": int(target), "stopped_by": stopped, "entries": int(entries or 0),
           "data_mdb_bytes": int(size or 0),
           "bytes_per_entry": (int(size) / int(entries)) if entries and int(entries) else None,
           "restart_answering_s": float(served) if served else None,
           "restart_caught_up_s": float(caught) if caught else None,
           "peak_rss_kib": max((max(int(r[k] or 0) for k in ("rss_kib_1","rss_kib_2","rss_kib_3")) for r in rows), default=0),
           "peak_anon_kib": max((max(int(r[k] or 0) for k in ("anon_kib_1","anon_kib_2","anon_kib_3")) for r in rows), default=0)}
tenth = max(last // 10, 1)
summary["by_size"] = []
for k in range(10):
    w = window(k * tenth, (k + 1) * tenth)
    if w: summary["by_size"].append({"entries_from": k * tenth, "entries_to": (k + 1) * tenth,
                                     "median_postings_per_s": w[0], "median_second_p99_ms": w[1], "seconds": w[2]})
json.dump(summary, open(out + "/scale.json", "w"), indent=1)
print("entries %s, data.mdb %.1f GiB, %.0f bytes per entry; peak RSS %.2f GiB (anon %.2f GiB)" % (
    summary["entries"], summary["data_mdb_bytes"] / 2**30, summary["bytes_per_entry"] or 0,
    summary["peak_rss_kib"] / 2**20, summary["peak_anon_kib"] / 2**20))
print("%-26s %12s %16s %8s" % ("ledger size (entries)", "postings/s", "p99 of a second", "seconds"))
for b in summary["by_size"]:
    print("%11d - %-12d %12d %13.1f ms %8d" % (b["entries_from"], b["entries_to"], b["median_postings_per_s"], b["median_second_p99_ms"], b["seconds"]))

# The plot: throughput and p99 (log axis), then RSS (all and anonymous) and bytes per entry,
# against the ledger's size.
import math
W, H, L, R, T, B = 1000, 700, 80, 80, 40, 50
ph = (H - T - B - 40) / 2
xmax = max(last, 1)
def x(e): return L + (W - L - R) * e / xmax
svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>',
       '<text x="%d" y="22" font-size="15">tally scale run: 3 replicas, closed loop 4 x 8,190; against the ledger size</text>' % L]
def fmt(v): return "%.0f" % v if v >= 20 else "%.1f" % v
def panel(y0, left, right):
    """left: [(points, color, label, dashed)] on a linear axis from 0; right: (points, color,
    label, log) drawn as dots, on a log axis of 1 ms .. 100 s when log, else linear from 0."""
    svg.append('<rect x="%d" y="%.0f" width="%d" height="%.0f" fill="none" stroke="#888"/>' % (L, y0, W - L - R, ph))
    for i in range(6):
        e = xmax * i / 5
        svg.append('<text x="%.0f" y="%.0f" text-anchor="middle">%sM</text>' % (x(e), y0 + ph + 14, ('%.0f' if xmax >= 1e7 else '%.1f') % (e / 1e6)))
    vmax = max([v for pts_, _, _, _ in left for _, v in pts_] + [1e-9]) * 1.1
    for i in range(5):
        svg.append('<text x="%d" y="%.0f" text-anchor="end" fill="%s">%s</text>' % (L - 8, y0 + ph - ph * i / 4 + 4, left[0][1], fmt(vmax * i / 4)))
    for k, (vals, color, label, dashed) in enumerate(left):
        pts_s = " ".join("%.1f,%.1f" % (x(e), y0 + ph - ph * v / vmax) for e, v in vals)
        svg.append('<polyline fill="none" stroke="%s" stroke-width="1"%s points="%s"/>' % (color, ' stroke-dasharray="4,3"' if dashed else '', pts_s))
        svg.append('<text x="%d" y="%.0f" fill="%s">%s</text>' % (L + 10, y0 + 16 + 15 * k, color, label))
    vals, color, label, log = right
    if log:
        lo, hi = 0.0, 5.0  # log10 of 1 ms .. 100 s
        def y(v): return y0 + ph - ph * (min(max(math.log10(max(v, 1)), lo), hi) - lo) / (hi - lo)
        for i, t in enumerate(("1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s")):
            svg.append('<text x="%d" y="%.0f" fill="%s">%s</text>' % (W - R + 8, y0 + ph - ph * i / 5 + 4, color, t))
    else:
        rmax = max([v for _, v in vals] + [1e-9]) * 1.1
        def y(v): return y0 + ph - ph * v / rmax
        for i in range(5):
            svg.append('<text x="%d" y="%.0f" fill="%s">%s</text>' % (W - R + 8, y0 + ph - ph * i / 4 + 4, color, fmt(rmax * i / 4)))
    for e, v in vals:
        svg.append('<circle cx="%.1f" cy="%.1f" r="1.5" fill="%s"/>' % (x(e), y(v), color))
    svg.append('<text x="%d" y="%.0f" fill="%s">%s</text>' % (L + 480, y0 + 16, color, label))
panel(T + 20, [([(e, r) for e, r, _ in pts if r > 0], "#1f5fa8", "postings answered per second", False)],
      ([(e, p) for e, r, p in pts if r > 0], "#b35900", "p99 of the write requests answered in the second", True))
def worst(r, ks): return max(int(r[k] or 0) for k in ks) / 2**20
rss = [(int(r["entries"]), worst(r, ("rss_kib_1", "rss_kib_2", "rss_kib_3"))) for r in rows]
anon = [(int(r["entries"]), worst(r, ("anon_kib_1", "anon_kib_2", "anon_kib_3"))) for r in rows]
bpe = [(int(r["entries"]), int(r["data_bytes_1"] or 0) / int(r["entries"])) for r in rows if int(r["entries"]) > 1000000 and r["data_bytes_1"]]
panel(T + 60 + ph, [(rss, "#2a7f2a", "largest replica RSS, GiB", False),
                    (anon, "#2a7f2a", "largest replica anonymous RSS, GiB (dashed)", True)],
      (bpe, "#7a3fa0", "data.mdb bytes per entry (replica 1)", False))
svg.append('<text x="%d" y="%d" text-anchor="middle">entries in the ledger</text>' % ((W + L - R) / 2, H - 8))
svg.append('</svg>')
open(out + "/scale.svg", "w").write("\n".join(svg) + "\n")
print("plot: %s/scale.svg; samples: %s/samples.csv; summary: %s/scale.json" % (out, out, out))
