#!/usr/bin/env python3
"""suite_table.py: the side-by-side table of bench/suite.sh, from the JSON of its runs.

Usage: suite_table.py RUNS_DIR OUT.json OUT.md    print the table, write it as JSON and Markdown
       suite_table.py --best RUNS_DIR CLUSTER     print the name of CLUSTER's best peak run

RUNS_DIR holds what bench/suite.sh wrote: runs.tsv (one line per run: name, system, clients,
batch, exit status, 1-minute load average before and after), engine.json (tally-bench-engine),
tally{1,3}-{peak-CxB,till}.json (tally-bench), pg-{peak-CxB,till,till-driven}.json
(tally-bench-pg). PostgreSQL's till is the better of its two runs (a thread per client, and
driven from fewer threads as tally's till is).
The best peak configuration of a system is the one with the most postings per second among its
runs that succeeded; a run that failed is shown as FAILED and never counts. Exit 0 when every
run succeeded and the table is complete, 1 otherwise.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

SYSTEMS = [("engine", "engine"), ("tally1", "tally-1"), ("tally3", "tally-3"),
           ("pg", "PostgreSQL")]
# The issue's bars (issue 5) and BRIEF section 6's goals for tally-3 / PostgreSQL.
PEAK_BAR, PEAK_GOAL, TILL_BAR, TILL_GOAL = 5.0, 20.0, 10.0, 50.0


def load_runs(d):
    runs = {}
    with open(os.path.join(d, "runs.tsv")) as f:
        for line in f:
            name, system, clients, batch, status, l0, l1 = line.rstrip("\n").split("\t")
            runs[name] = {"name": name, "system": system, "clients": int(clients),
                          "batch": int(batch), "status": int(status), "load_before": float(l0),
                          "load_after": float(l1)}
    return runs


def read_json(d, name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def figures(d, run):
    """Postings/s, p50 and p99 (ms) and server cores of one run, or None if it failed."""
    j = read_json(d, run["name"])
    if run["status"] != 0 or j is None:
        return None
    f = {"config": "%dx%d" % (run["clients"], run["batch"]), "clients": run["clients"],
         "batch": run["batch"], "load_before": run["load_before"],
         "load_after": run["load_after"]}
    if run["system"] == "engine":
        rr = j["run_results"]
        wall = sum(r["wall_s"] for r in rr)
        f.update(postings_per_s=j["median_postings_per_s"], p50_ms=j["latency_ms"]["p50"],
                 p99_ms=j["latency_ms"]["p99"],
                 cores=sum(r["user_s"] + r["sys_s"] for r in rr) / wall if wall > 0 else None,
                 latency_of="apply of a batch", runs=len(rr), postings_per_run=j["postings_per_run"],
                 sync=j["sync"], members=j["members"])
    elif run["system"] == "pg":
        f["threads"] = j.get("threads", run["clients"])
        f.update(postings_per_s=j["median_rate"], p50_ms=j["batch_p50_ns"] / 1e6,
                 p99_ms=j["batch_p99_ns"] / 1e6, cores=j["server_cpu_pct"] / 100.0,
                 latency_of="call round trip", runs=len(j["runs"]),
                 run_rates=[r["rate"] for r in j["runs"]], members=j["members"],
                 cpu_us_per_posting=j["server_cpu_us_per_posting"])
    else:
        ld, lat = j["load"], j["latency"]
        f["threads"] = j["config"].get("threads", run["clients"])
        h = lat["batch"] if run["batch"] > 1 else lat["writes"]
        cpu = j.get("replica_cpu_s", [])
        f.update(postings_per_s=ld["postings_per_s"], p50_ms=h["p50_ms"], p99_ms=h["p99_ms"],
                 cores=sum(cpu) / ld["seconds"] if cpu and ld["seconds"] > 0 else None,
                 latency_of="request round trip", seconds=ld["seconds"],
                 postings=ld["postings"], ok=ld["ok"], check_ok=j["check"]["ok"],
                 replica_cpu_s=cpu, members=j["config"]["members"],
                 setup_seconds=ld.get("setup_seconds"))
    if f.get("threads", f["clients"]) < f["clients"]:
        f["config"] += " (%d threads)" % f["threads"]
    return f


def best_peak(d, runs, system):
    tried, best = [], None
    for r in runs.values():
        if r["system"] != system or not (r["name"] == "engine" or
                                         r["name"].startswith(system + "-peak-")):
            continue
        f = figures(d, r)
        tried.append({"config": "%dx%d" % (r["clients"], r["batch"]), "status": r["status"],
                      "postings_per_s": f["postings_per_s"] if f else None, "run": r["name"]})
        if f is not None and (best is None or f["postings_per_s"] > best["postings_per_s"]):
            best = dict(f, run=r["name"])
    if best is not None:
        best["tried"] = tried
    return best, tried


def till(d, runs, system):
    """The till's figures: tally's one run; PostgreSQL's better one of its two client drivers
    (a thread per client, and the suite's driver threads), as its best configuration counts."""
    names = {"tally1": ["tally1-till"], "tally3": ["tally3-till"],
             "pg": ["pg-till", "pg-till-driven"]}.get(system, [])
    best = None
    for name in names:
        f = figures(d, runs[name]) if name in runs else None
        if f is not None and (best is None or f["postings_per_s"] > best["postings_per_s"]):
            best = dict(f, run=name)
    return best


def fmt_rate(x):
    return "-" if x is None else "{:,.0f}".format(x)


def fmt_ms(x):
    return "-" if x is None else ("%.2f" % x if x < 100 else "{:,.0f}".format(x))


def fmt_cores(x):
    return "-" if x is None else "%.2f" % x


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1048576.0
    except OSError:
        mem = 0
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "none"
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem),
            "kernel": platform.release(), "commit": commit}


def build(d):
    runs = load_runs(d)
    rows, complete = [], True
    for system, label in SYSTEMS:
        peak, tried = best_peak(d, runs, system)
        t = till(d, runs, system) if system != "engine" else None
        if peak is None or (system != "engine" and t is None):
            complete = False
        rows.append({"system": system, "label": label, "peak": peak, "till": t,
                     "tried": tried})
    by = {r["system"]: r for r in rows}
    t3, pg = by["tally3"], by["pg"]
    ratios = {}
    if t3["peak"] and pg["peak"]:
        ratios["peak"] = t3["peak"]["postings_per_s"] / pg["peak"]["postings_per_s"]
    if t3["till"] and pg["till"]:
        ratios["till"] = t3["till"]["postings_per_s"] / pg["till"]["postings_per_s"]
        ratios["till_p99_tally3_ms"] = t3["till"]["p99_ms"]
        ratios["till_p99_pg_ms"] = pg["till"]["p99_ms"]
        ratios["till_p99_lower"] = t3["till"]["p99_ms"] < pg["till"]["p99_ms"]
    if "peak" in ratios and "till" in ratios:
        ratios["meets_bar"] = (ratios["peak"] >= PEAK_BAR and ratios["till"] >= TILL_BAR and
                               ratios["till_p99_lower"])
        ratios["meets_goal"] = ratios["peak"] >= PEAK_GOAL and ratios["till"] >= TILL_GOAL
    failed = [r["name"] for r in runs.values() if r["status"] != 0]

    def stamp(name):
        try:
            with open(os.path.join(d, name)) as f:
                return f.read().strip()
        except OSError:
            return None
    try:
        with open(os.path.join(d, "engine-options")) as f:
            engine_options = [x for x in f.read().split("\n") if x]
    except OSError:
        engine_options = []
    memory = {}
    for line in (stamp("meminfo") or "").split("\n"):
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[0] in ("MemFree", "Cached"):
            memory[parts[0]] = round(int(parts[1]) / 1048576.0, 1)  # kB -> GiB
    return {"suite": "tally side-by-side (bench/suite.sh)", "machine": machine(),
            "memory_at_start_gib": {"free": memory.get("MemFree"),
                                    "page_cache": memory.get("Cached")},
            "started": stamp("started"), "finished": stamp("finished"),
            "till_clients": 64, "engine_options": engine_options,
            "rows": rows, "ratios": ratios, "failed_runs": failed,
            "complete": complete and not failed,
            "bars": {"peak": PEAK_BAR, "peak_goal": PEAK_GOAL, "till": TILL_BAR,
                     "till_goal": TILL_GOAL}}


def cells(row):
    p, t = row["peak"], row["till"]
    if p is None:
        pc = ["FAILED", "-", "-", "-", "-"]
    else:
        cfg = ("%s runs x %s, batches of 8,190" % (p["runs"], "{:,}".format(p["postings_per_run"]))
               if row["system"] == "engine" else p["config"])
        pc = [cfg, fmt_rate(p["postings_per_s"]), fmt_ms(p["p50_ms"]), fmt_ms(p["p99_ms"]),
              fmt_cores(p["cores"])]
    if row["system"] == "engine":
        tc = ["n/a (no clients)", "-", "-", "-"]
    elif t is None:
        tc = ["FAILED", "-", "-", "-"]
    else:
        tc = [fmt_rate(t["postings_per_s"]), fmt_ms(t["p50_ms"]), fmt_ms(t["p99_ms"]),
              fmt_cores(t["cores"])]
    return pc + tc


HEAD = ["", "peak config", "postings/s", "p50 ms", "p99 ms", "cores",
        "till postings/s", "p50 ms", "p99 ms", "cores"]


def ratio_lines(doc):
    r, by = doc["ratios"], {x["system"]: x for x in doc["rows"]}
    out = []
    if "peak" in r:
        out.append("peak ratio tally-3 / PostgreSQL: %.1fx (%s / %s postings/s; bar %.0fx, goal "
                   "%.0fx)" % (r["peak"], fmt_rate(by["tally3"]["peak"]["postings_per_s"]),
                               fmt_rate(by["pg"]["peak"]["postings_per_s"]), PEAK_BAR, PEAK_GOAL))
    else:
        out.append("peak ratio: not computed (a row failed)")
    if "till" in r:
        out.append("till ratio tally-3 / PostgreSQL: %.1fx (%s, %s / %s, %s postings/s; bar "
                   "%.0fx, goal %.0fx); till p99 %s ms against %s ms: tally's is %s" % (
                       r["till"], by["tally3"]["till"]["config"],
                       fmt_rate(by["tally3"]["till"]["postings_per_s"]),
                       by["pg"]["till"]["config"],
                       fmt_rate(by["pg"]["till"]["postings_per_s"]), TILL_BAR, TILL_GOAL,
                       fmt_ms(r["till_p99_tally3_ms"]), fmt_ms(r["till_p99_pg_ms"]),
                       "lower" if r["till_p99_lower"] else "NOT lower"))
    else:
        out.append("till ratio: not computed (a row failed)")
    if "meets_bar" in r:
        out.append("issue 5's bar (peak >= 5x, till >= 10x with a lower p99): %s; goal (20x, "
                   "50x): %s" % ("met" if r["meets_bar"] else "NOT met",
                                 "met" if r["meets_goal"] else "not met"))
    return out


def notes(doc):
    m, out = doc["machine"], []
    out.append("machine: %s cores (%s), %s GiB, kernel %s; commit %s; %s to %s" % (
        m["cores"], m["cpu"], m["memory_gib"], m["kernel"], m["commit"], doc["started"],
        doc["finished"]))
    mem = doc.get("memory_at_start_gib") or {}
    if mem.get("free") is not None:
        out.append("memory at the start: %s GiB free, %s GiB page cache (a mostly free, never "
                   "filled memory runs every row slower on this VM: docs/BENCHMARKS.md, \"A "
                   "freshly booted VM\")" % (mem["free"], mem.get("page_cache")))
    for row in doc["rows"]:
        tried = ", ".join("%s %s" % (x["config"], fmt_rate(x["postings_per_s"])
                                     if x["status"] == 0 and x["postings_per_s"] is not None
                                     else "FAILED") for x in row["tried"])
        if row["system"] != "engine" and tried:
            out.append("%s peak configurations tried (clients x batch: postings/s): %s" % (
                row["label"], tried))
    loads = []
    for row in doc["rows"]:
        for col in ("peak", "till"):
            f = row[col]
            if f:
                loads.append("%s %s %.2f-%.2f" % (row["label"], col, f["load_before"],
                                                  f["load_after"]))
    out.append("1-minute load average before-after each counted run: " + "; ".join(loads))
    e = doc["rows"][0]["peak"]
    if e:
        out.append("engine: %d runs of %s postings (the engine benchmark's standard is 5), "
                   "median%s" % (e["runs"], "{:,}".format(e["postings_per_run"]),
                                 "" if e["sync"] else ", NOT durable (--no-sync)"))
    out.append("peak latency: per request of the configuration's batch (engine: one apply); "
               "till: per single posting, sent to answered; cores: server CPU over the load's "
               "wall time (tally: every replica; PostgreSQL: the backends serving the clients; "
               "engine: the process)")
    if doc["failed_runs"]:
        out.append("FAILED runs: " + ", ".join(doc["failed_runs"]))
    return out


def text_table(doc):
    rows = [HEAD] + [[r["label"]] + cells(r) for r in doc["rows"]]
    w = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join((c.ljust(w[i]) if i < 2 else c.rjust(w[i]))
                               for i, c in enumerate(r)).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return lines


def markdown(doc):
    lines = ["| " + " | ".join(HEAD) + " |",
             "| --- | --- | " + " | ".join(["---:"] * (len(HEAD) - 2)) + " |"]
    for r in doc["rows"]:
        lines.append("| " + " | ".join(["**%s**" % r["label"]] + cells(r)) + " |")
    lines.append("")
    lines += ["- " + x for x in ratio_lines(doc) + notes(doc)]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) == 4 and argv[1] == "--best":
        best, _ = best_peak(argv[2], load_runs(argv[2]), argv[3])
        if best is None:
            return 1
        print(best["run"].split("-", 1)[1])
        return 0
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    doc = build(argv[1])
    doc["generated"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(argv[2], "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(argv[3], "w") as f:
        f.write(markdown(doc))
    m = doc["machine"]
    members = doc["rows"][0]["peak"]["members"] if doc["rows"][0]["peak"] else "?"
    print("== side-by-side: %s members, durable commits, the same workload; %s cores, "
          "commit %s ==" % ("{:,}".format(members) if members != "?" else "?", m["cores"],
                            m["commit"]))
    for line in text_table(doc) + [""] + ratio_lines(doc) + notes(doc):
        print(line)
    print("JSON in %s, Markdown in %s" % (argv[2], argv[3]))
    return 0 if doc["complete"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
