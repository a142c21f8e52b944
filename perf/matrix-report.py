#!/usr/bin/env python3
"""Combine a perf/matrix.sh run into matrix.json, summary.md and SVG charts.

Usage: perf/matrix-report.py RESULTS_DIR

Reads RESULTS_DIR/facts.json, RESULTS_DIR/cells/*.json (toasty-perf-cell/1,
written by perf/lib.sh run_cell) and RESULTS_DIR/baselines/ (fio, iperf3).
Standard library only; the SVG is written by hand.
"""
import glob
import json
import math
import os
import sys

SIZES = ["4KiB", "64KiB", "1MiB", "16MiB"]
OPS = ["put", "get", "mix"]
SMALL = {"4KiB", "64KiB"}  # charted in ops/s; the rest in MiB/s
COLORS = {"put": "#d9534f", "get": "#337ab7", "mix": "#5cb85c",
          "p50": "#9ecae1", "p90": "#4292c6", "p99": "#08519c", "p999": "#08306b"}
SYSTEM_COLORS = ["#fdae6b", "#e6550d", "#9ecae1", "#3182bd", "#a1d99b", "#31a354"]

# The targets: (label, target, op, size, concurrency, metric, bound, limit)
TARGETS = [
    ("4 KiB PUT c64 throughput", "put", "4KiB", 64, "ops_per_s", ">=", 15000),
    ("4 KiB PUT c64 p99 latency (ms)", "put", "4KiB", 64, "p99_ms", "<=", 10),
    ("4 KiB GET c64 throughput", "get", "4KiB", 64, "ops_per_s", ">=", 30000),
    ("4 KiB GET c64 p99 latency (ms)", "get", "4KiB", 64, "p99_ms", "<=", 5),
    ("1 MiB PUT c16 MiB/s", "put", "1MiB", 16, "mib_per_s", ">=", 350),
    ("1 MiB GET MiB/s (best concurrency)", "get", "1MiB", None, "mib_per_s", ">=", 1200),
    ("4 KiB PUT c1 p50 latency (ms)", "put", "4KiB", 1, "p50_ms", "<=", 0.5),
    ("4 KiB GET c1 p50 latency (ms)", "get", "4KiB", 1, "p50_ms", "<=", 0.2),
    ("server CPU per 4 KiB PUT, 3 nodes summed (us), c64", "put", "4KiB", 64, "server_us_per_request", "<=", 100),
    ("server CPU per 4 KiB GET, 3 nodes summed (us), c64", "get", "4KiB", 64, "server_us_per_request", "<=", 40),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def parse_name(stem):
    # <target>-<op>-<size>-c<concurrency>; target itself contains dashes.
    rest, c = stem.rsplit("-c", 1)
    rest, size = rest.rsplit("-", 1)
    target, op = rest.rsplit("-", 1)
    return target, op, size, int(c)


def row_of(path):
    cell = load(path)
    target, op, size, c = parse_name(os.path.basename(path)[:-5])
    lg = cell["loadgen"]
    row = {"target": target, "op": op, "size": size, "concurrency": c,
           "file": os.path.relpath(path, os.path.dirname(os.path.dirname(path))),
           "ok": lg is not None, "exit_status": cell["exit_status"],
           "load_average_before": cell["load_average_before"], "command": cell["command"],
           "stderr_errors": cell["stderr_errors"]}
    if lg is not None:
        t = lg["total"]
        lat = t["latency_us"]
        row.update({
            "ops_per_s": t["ops_per_s"], "mib_per_s": t["mib_per_s"], "ops": t["ops"],
            "ops_error": t["ops_error"], "ops_not_found": t["ops_not_found"], "ops_stale": t["ops_stale"],
            "errors_by_status": {k: v for k, v in t["errors_by_status"].items() if v},
            "errors_by_kind": {k: v for k, v in t["errors_by_kind"].items() if v},
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
            "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000, "mean_ms": lat["mean"] / 1000,
            "client_us_per_request": lg["client_cpu"]["us_per_request"],
            "client_cores_used": lg["client_cpu"]["cores_used"],
            "server_us_per_request": cell["server_cpu"]["sum_us_per_request"],
            "server_cores_used": cell["server_cpu"]["sum_cores_used"],
            "server_cpu_nodes_us_per_request": [n["us_per_request"] for n in cell["server_cpu"]["nodes"]],
            "measured_s": lg["measured_s"],
        })
    return row, cell


def fio_summary(path):
    job = load(path)["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] else job["read"]
    clat = side.get("clat_ns", {}).get("percentile", {})
    sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    return {"iops": round(side["iops"]), "MiB_per_s": round(side["bw_bytes"] / 2**20, 1),
            "clat_p50_us": round(clat.get("50.000000", 0) / 1000, 1),
            "clat_p99_us": round(clat.get("99.000000", 0) / 1000, 1),
            "fdatasync_p50_us": round(sync.get("50.000000", 0) / 1000, 1) if sync else None,
            "fdatasync_p99_us": round(sync.get("99.000000", 0) / 1000, 1) if sync else None,
            "runtime_s": job["job_runtime"] / 1000}


def iperf_summary(path):
    end = load(path)["end"]
    return {"gbit_per_s": round(end["sum_received"]["bits_per_second"] / 1e9, 2),
            "MiB_per_s": round(end["sum_received"]["bits_per_second"] / 8 / 2**20),
            "sender_cpu_percent": round(end["cpu_utilization_percent"]["host_total"], 1),
            "receiver_cpu_percent": round(end["cpu_utilization_percent"]["remote_total"], 1)}


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and (v >= 1000 or digits == 0):
        return f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if v < 1 and digits < 3:
        return f"{v:.3f}"
    return f"{v:,.{digits}f}"


def find(rows, target, op, size, c):
    for r in rows:
        if (r["target"], r["op"], r["size"], r["concurrency"]) == (target, op, size, c) and r["ok"]:
            return r
    return None


def evaluate(rows, target):
    out = []
    for label, op, size, c, metric, bound, limit in TARGETS:
        if c is None:
            cands = [r for r in rows if r["target"] == target and r["op"] == op and r["size"] == size and r["ok"]]
            r = max(cands, key=lambda r: r[metric]) if cands else None
        else:
            r = find(rows, target, op, size, c)
        v = r.get(metric) if r else None
        if v is None:
            out.append({"label": label, "target": f"{bound} {limit:g}", "measured": None, "met": None,
                        "ratio": None, "cell": None})
            continue
        met = v >= limit if bound == ">=" else v <= limit
        ratio = v / limit
        out.append({"label": label, "target": f"{bound} {limit:g}", "measured": v, "met": met,
                    "ratio": ratio, "cell": f"{r['target']} {op} {size} c{r['concurrency']}"})
    return out


# --- SVG ------------------------------------------------------------------------

def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def bar_panel(x, y, w, h, title, groups, series, value, unit, log=False, colors=None):
    """Grouped bars: groups on the x axis, one bar per series in each group.
    value(group, series) -> number or None."""
    colors = colors or COLORS
    parts = [f'<g transform="translate({x},{y})">',
             f'<text x="{w / 2}" y="14" text-anchor="middle" font-weight="bold">{esc(title)}</text>']
    left, top, bottom = 58, 24, 34
    ph, pw = h - top - bottom, w - left - 8
    vals = [value(g, s) for g in groups for s in series]
    vals = [v for v in vals if v is not None and v > 0]
    if log:
        lo = 10 ** math.floor(math.log10(min(vals))) if vals else 0.01
        hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 1
        if hi <= lo:
            hi = lo * 10

        def ypos(v):
            return top + ph - ph * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        ticks = [lo * 10 ** i for i in range(int(round(math.log10(hi / lo))) + 1)]
    else:
        hi = nice_max(max(vals) if vals else 1)

        def ypos(v):
            return top + ph - ph * v / hi
        ticks = [hi * i / 4 for i in range(5)]
    for t in ticks:
        ty = ypos(t)
        label = f"{t:g}" if t < 10000 else f"{t / 1000:g}k"
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
    parts.append(f'<text x="12" y="{top + ph / 2}" font-size="10" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + ph / 2})">{esc(unit)}</text>')
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = value(g, s)
            bx = gx + si * bw
            if v is None:
                parts.append(f'<text x="{bx + bw / 2:.1f}" y="{top + ph - 2}" font-size="8" '
                             f'text-anchor="middle">n/a</text>')
                continue
            by = ypos(v) if v > 0 else top + ph
            parts.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw - 1:.1f}" height="{top + ph - by:.1f}" '
                         f'fill="{colors.get(s, "#888") if isinstance(colors, dict) else colors[si % len(colors)]}">'
                         f'<title>{esc(g)} {esc(s)}: {v:,.3f} {esc(unit)}</title></rect>')
        parts.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{top + ph + 14}" text-anchor="middle" '
                     f'font-size="10">{esc(g)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#000"/>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#000"/>')
    parts.append("</g>")
    return parts


def legend(x, y, items, colors):
    parts = []
    for i, s in enumerate(items):
        c = colors.get(s, "#888") if isinstance(colors, dict) else colors[i % len(colors)]
        parts.append(f'<rect x="{x + i * 150}" y="{y}" width="12" height="12" fill="{c}"/>')
        parts.append(f'<text x="{x + i * 150 + 16}" y="{y + 10}" font-size="11">{esc(s)}</text>')
    return parts


def svg(w, h, parts, title):
    return "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
                      f'font-family="sans-serif" font-size="12">',
                      f'<rect width="{w}" height="{h}" fill="white"/>',
                      f'<text x="10" y="18" font-size="14" font-weight="bold">{esc(title)}</text>',
                      *parts, "</svg>\n"])


def throughput_svg(rows, targets, sizes, concurrencies, ops, title):
    pw, ph = 300, 220
    parts = []
    for ti, t in enumerate(targets):
        for si, size in enumerate(sizes):
            metric, unit = ("ops_per_s", "ops/s") if size in SMALL else ("mib_per_s", "MiB/s")

            def value(g, s, t=t, size=size, metric=metric):
                r = find(rows, t, s, size, int(g[1:]))
                return r[metric] if r else None
            parts += bar_panel(10 + si * pw, 30 + ti * ph, pw - 10, ph - 10, f"{t}: {size}",
                               [f"c{c}" for c in concurrencies], ops, value, unit)
    parts += legend(10, 30 + len(targets) * ph, ops, COLORS)
    return svg(max(10 + len(sizes) * pw, 900), 60 + len(targets) * ph, parts, title)


def latency_svg(rows, targets, sizes, concurrencies, ops, title):
    pw, ph = 560, 230
    pcts = ["p50", "p90", "p99", "p999"]
    per_target = (len(sizes) + 1) // 2
    parts = []
    for ti, t in enumerate(targets):
        for si, size in enumerate(sizes):
            groups = [f"{op} c{c}" for op in ops for c in concurrencies]

            def value(g, s, t=t, size=size):
                op, c = g.split(" c")
                r = find(rows, t, op, size, int(c))
                return r[f"{s}_ms"] if r else None
            parts += bar_panel(10 + (si % 2) * pw, 30 + (ti * per_target + si // 2) * ph, pw - 10, ph - 10,
                               f"{t}: {size} latency (p50, p90, p99, p99.9)", groups, pcts, value, "ms (log)",
                               log=True)
    rows_of_panels = len(targets) * per_target
    parts += legend(10, 30 + rows_of_panels * ph, pcts, COLORS)
    return svg(10 + 2 * pw, 60 + rows_of_panels * ph, parts, title)


def peers_svg(rows, systems, headline, title):
    pw, ph = 300, 240
    parts = []
    for i, (op, size, c) in enumerate(headline):
        metric, unit = ("ops_per_s", "ops/s (log)") if size in SMALL else ("mib_per_s", "MiB/s (log)")

        def value(g, s, op=op, size=size, c=c, metric=metric):
            r = find(rows, s, op, size, c)
            return r[metric] if r else None
        parts += bar_panel(10 + (i % 3) * pw, 30 + (i // 3) * ph, pw - 10, ph - 10, f"{op} {size} c{c}",
                           [""], systems, value, unit, log=True, colors=SYSTEM_COLORS)
    n_rows = (len(headline) + 2) // 3
    parts += legend(10, 30 + n_rows * ph, systems, SYSTEM_COLORS)
    return svg(10 + 3 * pw, 60 + n_rows * ph + 20, parts, title)


# --- markdown ---------------------------------------------------------------------

def md_table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in line) + " |" for line in lines]
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    facts = load(os.path.join(d, "facts.json"))
    rows, cells = [], []
    for path in sorted(glob.glob(os.path.join(d, "cells", "*.json"))):
        if path.endswith(".loadgen.json"):
            continue
        r, c = row_of(path)
        rows.append(r)
        cells.append(dict(c, name=os.path.basename(path)[:-5]))
    base = {}
    for path in sorted(glob.glob(os.path.join(d, "baselines", "fio-*.json"))):
        base[os.path.basename(path)[:-5]] = fio_summary(path)
    ip = os.path.join(d, "baselines", "iperf3-1stream.json")
    if os.path.exists(ip):
        base["iperf3-1stream"] = iperf_summary(ip)
    gv = os.path.join(d, "baselines", "garage-version.txt")
    garage_version = open(gv).read().strip() if os.path.exists(gv) else None

    order = {s: i for i, s in enumerate(SIZES)}
    rows.sort(key=lambda r: (r["target"], order.get(r["size"], 9), OPS.index(r["op"]) if r["op"] in OPS else 9,
                             r["concurrency"]))
    targets_present = sorted({r["target"] for r in rows})
    toasty_targets = [t for t in targets_present if t.startswith("toasty")]
    peer_targets = [t for t in targets_present if not t.startswith("toasty")]
    sizes = [s for s in SIZES if any(r["size"] == s for r in rows if r["target"] in toasty_targets)]
    ops = [o for o in OPS if any(r["op"] == o for r in rows if r["target"] in toasty_targets)]
    concurrencies = sorted({r["concurrency"] for r in rows if r["target"] in toasty_targets})
    main_target = "toasty-cores2" if "toasty-cores2" in toasty_targets else (toasty_targets[-1] if toasty_targets else None)
    verdicts = {t: evaluate(rows, t) for t in toasty_targets}

    scaling = None
    g1, g2 = find(rows, "toasty-cores1", "get", "4KiB", 64), find(rows, "toasty-cores2", "get", "4KiB", 64)
    if g1 and g2:
        scaling = {"ops_per_s_cores1": g1["ops_per_s"], "ops_per_s_cores2": g2["ops_per_s"],
                   "ratio": round(g2["ops_per_s"] / g1["ops_per_s"], 3),
                   "client_cores_used": [g1["client_cores_used"], g2["client_cores_used"]],
                   "server_cores_used": [g1["server_cores_used"], g2["server_cores_used"]],
                   "server_us_per_request": [g1["server_us_per_request"], g2["server_us_per_request"]],
                   "client_us_per_request": [g1["client_us_per_request"], g2["client_us_per_request"]]}

    combined = {"schema": "toasty-perf-matrix/1", "facts": facts,
                "appended_runs": [load(p) for p in sorted(glob.glob(os.path.join(d, "facts-append-*.json")))], "baselines": base,
                "garage_version": garage_version, "targets": verdicts, "get_4k_c64_core_scaling": scaling,
                "rows": rows, "cells": cells}
    with open(os.path.join(d, "matrix.json"), "w") as f:
        json.dump(combined, f, indent=1)

    charts = []
    if toasty_targets:
        with open(os.path.join(d, "throughput.svg"), "w") as f:
            f.write(throughput_svg(rows, toasty_targets, sizes, concurrencies, ops,
                                   f"toasty {facts['binaries_commit']}: throughput, closed loop (4 and 64 KiB in ops/s, 1 and 16 MiB in MiB/s)"))
        with open(os.path.join(d, "latency.svg"), "w") as f:
            f.write(latency_svg(rows, toasty_targets, sizes, concurrencies, ops,
                                f"toasty {facts['binaries_commit']}: latency percentiles, closed loop"))
        charts += ["throughput.svg", "latency.svg"]
    headline = sorted({(r["op"], r["size"], r["concurrency"]) for r in rows if r["target"] in peer_targets},
                      key=lambda k: (order.get(k[1], 9), k[0], k[2]))
    if peer_targets and headline:
        with open(os.path.join(d, "peers.svg"), "w") as f:
            f.write(peers_svg(rows, toasty_targets + peer_targets, headline,
                              "toasty and Garage, same loadgen flags (log scale)"))
        charts.append("peers.svg")

    md = [f"# perf/matrix.sh run: toasty {facts['binaries_commit']}, {facts['date_utc']}", ""]
    md += [f"- command: `{facts.get('command', 'perf/matrix.sh')}` (binaries from `{facts['binaries_dir']}`, "
           f"scripts at {facts['scripts_commit']})",
           f"- machine: {facts['cpus_online']} vCPUs ({facts['cpu_model']}), {facts['memory_total']}, "
           f"{facts['kernel']}; data on {facts['data_filesystem']['type']} ({facts['data_filesystem']['device']})",
           f"- load average at start {facts['load_average_at_start']}, at end {facts.get('load_average_at_end', '?')}; "
           f"elapsed {facts.get('elapsed_s', '?')} s",
           f"- {facts['note']}",
           f"- cluster: 3 nodes on loopback, a fresh one per {facts.get('cluster', {}).get('fresh_per', '?')}, "
           f"chunk store {facts.get('cluster', {}).get('chunk_store_mib_per_node', '?')} MiB per node, server flags "
           f"`{facts.get('cluster', {}).get('server_args', '').strip()}` (scripts/cluster.sh adds the rest)",
           f"- each cell: a {facts.get('warmup_s', '?')} s warm-up run, then {facts.get('duration_s', '?')} s measured, "
           "closed loop, zipfian keys (4/64 KiB: 1000 keys, 1 MiB: 200, 16 MiB: 32), GETs verified byte for byte",
           ""]
    appended = [load(p) for p in sorted(glob.glob(os.path.join(d, "facts-append-*.json")))]
    for a in appended:
        md.insert(-1, f"- appended run: `{a.get('command')}` at {a['date_utc']}, load average at start "
                      f"{a['load_average_at_start']}, at end {a.get('load_average_at_end', '?')}, "
                      f"elapsed {a.get('elapsed_s', '?')} s")
    if base:
        md += ["## Baselines (same run)", ""]
        lines = []
        for name, b in base.items():
            if name.startswith("fio"):
                extra = (f"fdatasync p50/p99 {b['fdatasync_p50_us']}/{b['fdatasync_p99_us']} µs"
                         if b.get("fdatasync_p50_us") else f"clat p50/p99 {b['clat_p50_us']}/{b['clat_p99_us']} µs")
                lines.append([name, f"{b['iops']:,} IOPS, {b['MiB_per_s']:,} MiB/s", extra])
            else:
                lines.append([name, f"{b['gbit_per_s']} Gbit/s ({b['MiB_per_s']:,} MiB/s)",
                              f"sender CPU {b['sender_cpu_percent']} %, receiver {b['receiver_cpu_percent']} %"])
        md += md_table(["baseline", "result", "detail"], lines) + [""]
    for t, vs in verdicts.items():
        md += [f"## Targets ({t})", ""]
        lines = []
        for v in vs:
            verdict = "–" if v["met"] is None else ("met" if v["met"] else "**missed**")
            ratio = "" if v["ratio"] is None else f"{v['ratio']:.2f}× the target"
            lines.append([v["label"], v["target"], fmt(v["measured"], 3 if (v["measured"] or 0) < 10 else 1),
                          verdict, ratio])
        md += md_table(["target", "bound", "measured", "verdict", "ratio"], lines) + [""]
    if scaling:
        md += ["## 4 KiB GET c64, --cores 2 vs --cores 1", "",
               f"{scaling['ops_per_s_cores1']:,.0f} → {scaling['ops_per_s_cores2']:,.0f} ops/s "
               f"(×{scaling['ratio']}); client cores used {scaling['client_cores_used'][0]} → "
               f"{scaling['client_cores_used'][1]}, servers' cores used {scaling['server_cores_used'][0]} → "
               f"{scaling['server_cores_used'][1]} (of 2 vCPUs shared by all); server CPU per request "
               f"{scaling['server_us_per_request'][0]} → {scaling['server_us_per_request'][1]} µs, client "
               f"{scaling['client_us_per_request'][0]} → {scaling['client_us_per_request'][1]} µs", ""]
    for t in targets_present:
        md += [f"## {t}", ""]
        lines = []
        for r in rows:
            if r["target"] != t:
                continue
            if not r["ok"]:
                lines.append([r["size"], r["op"], r["concurrency"], "FAILED", "", "", "", "", "",
                              "; ".join(r["stderr_errors"][:1]), "", "", r["load_average_before"]])
                continue
            errs = ", ".join(f"{k} {v}" for k, v in r["errors_by_status"].items()) or \
                ", ".join(f"{k} {v}" for k, v in r["errors_by_kind"].items())
            lines.append([r["size"], r["op"], r["concurrency"], fmt(r["ops_per_s"]), fmt(r["mib_per_s"]),
                          fmt(r["p50_ms"], 3), fmt(r["p99_ms"], 3), fmt(r["p999_ms"], 3), fmt(r["max_ms"], 3),
                          f"{r['ops_error']}" + (f" ({errs})" if errs else ""),
                          fmt(r["server_us_per_request"]), fmt(r["client_us_per_request"]),
                          r["load_average_before"].split()[0]])
        md += md_table(["size", "op", "c", "ops/s", "MiB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors",
                        "server CPU µs/req (3 nodes)", "client CPU µs/req", "load"], lines) + [""]
    if peer_targets:
        md += ["## Peers (headline cells)", "", f"Garage: `{garage_version}`", ""]
        lines = []
        for op, size, c in headline:
            line = [f"{op} {size} c{c}"]
            for t in toasty_targets + peer_targets:
                r = find(rows, t, op, size, c)
                if r is None:
                    line.append("–")
                elif size in SMALL:
                    line.append(f"{r['ops_per_s']:,.0f} ops/s, p50 {r['p50_ms']:.2f} ms")
                else:
                    line.append(f"{r['mib_per_s']:,.0f} MiB/s, p50 {r['p50_ms']:.1f} ms")
            lines.append(line)
        md += md_table(["cell"] + toasty_targets + peer_targets, lines) + [""]
    # A PUT that takes longer than --gc-grace-seconds may see its first
    # chunks collected before its metadata commits: flag such cells.
    grace_s = None
    words = facts.get("cluster", {}).get("server_args", "").split()
    if "--gc-grace-seconds" in words:
        grace_s = float(words[words.index("--gc-grace-seconds") + 1])
    outlived = [r for r in rows if grace_s and r["ok"] and r["target"].startswith("toasty")
                and r["op"] in ("put", "mix") and r["max_ms"] > grace_s * 1000]
    if outlived:
        md += ["## Uploads that outlived the GC grace", "",
               f"The server ran with `--gc-grace-seconds {grace_s:g}`; in these cells the slowest PUT took "
               "longer, so chunks of an upload in flight could have been collected before it committed "
               "(none of the cells' GETs failed verification, but these objects were not all read back):", ""]
        md += [f"- {r['target']} {r['op']} {r['size']} c{r['concurrency']}: p50 {r['p50_ms'] / 1000:.1f} s, "
               f"max {r['max_ms'] / 1000:.1f} s" for r in outlived] + [""]
    failed = [r for r in rows if not r["ok"] or r.get("ops_error")]
    if failed:
        md += ["## Errors", ""]
        for r in failed:
            md.append(f"- {r['target']} {r['op']} {r['size']} c{r['concurrency']}: "
                      f"{r.get('ops_error', 'run failed')} failed ops; "
                      + "; ".join(f"`{e}`" for e in r["stderr_errors"][:3]))
        md.append("")
    if charts:
        md += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
