#!/usr/bin/env python3
"""Render the harness's results.json as report.md and chart.png (gnuplot).

Usage: bench/report.py DIR              re-render DIR/results.json (bench/harness.py calls write())
       bench/report.py --publish DIR    copy DIR's full run to bench/results/, summary to README.md
       bench/report.py --readme DIR     only the README's summary, from DIR's run
"""
import json
import math
import os
import statistics
import subprocess
import sys

ORDER = ["ngmalloc", "ngmalloc-preload", "musl", "glibc", "mimalloc", "jemalloc", "mimalloc-secure", "snmalloc",
         "scudo"]
LABEL = {
    "ngmalloc": "ngmalloc (musl, static)",
    "ngmalloc-preload": "ngmalloc (LD_PRELOAD)",
    "musl": "stock musl 1.2.5",
    "glibc": "glibc",
    "mimalloc": "mimalloc",
    "jemalloc": "jemalloc",
    "mimalloc-secure": "mimalloc (secure)",
    "snmalloc": "snmalloc (checks)",
    "scudo": "Scudo",
}
SHORT = {"ngmalloc": "ngmalloc", "ngmalloc-preload": "ngm-preload", "musl": "musl",
         "glibc": "glibc", "mimalloc": "mimalloc", "jemalloc": "jemalloc", "mimalloc-secure": "mi-secure",
         "snmalloc": "snmalloc", "scudo": "scudo"}
MULTITHREADED = ("2-", "3-", "4-")
# one colour per allocator in the chart (gnuplot's default set repeats after eight)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10", "#000000", "#a0a0a0"]


def set_labels(res):
    """Labels that depend on the run: stock musl's version (runs before it was recorded
    were of 1.2.5)."""
    LABEL["musl"] = f"stock musl {res.get('machine', {}).get('musl', '1.2.5')}"


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(x, digits=2):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


class Table:
    def __init__(self, res):
        self.res = res
        self.allocs = [a for a in ORDER if a in res["allocators"]]
        self.wids = [w["id"] for w in res["workloads"]]
        self.titles = {w["id"]: w["title"] for w in res["workloads"]}

    def median(self, wid, alloc, key):
        s = self.res["samples"][wid][alloc]
        vals = [x[key] if key in x else x["out"].get(key) for x in s]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    def time(self, wid, a):
        return self.median(wid, a, "wall")

    def rss(self, wid, a):
        v = self.median(wid, a, "peak_kib")
        return v / 1024 if v is not None else None

    def ratio(self, f, wid, a, base):
        if base not in self.allocs:
            return None
        x, y = f(wid, a), f(wid, base)
        return x / y if x is not None and y else None

    def gm(self, f, a, base, wids=None):
        return geomean([self.ratio(f, w, a, base) for w in (wids or self.wids)])

    def spread(self, wid, a):
        s = [x["wall"] for x in self.res["samples"][wid][a]]
        return (max(s) - min(s)) / statistics.median(s) if len(s) > 1 else None


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def summary(t):
    mt = [w for w in t.wids if w.startswith(MULTITHREADED)]
    rows = []
    for a in t.allocs:
        after = t.median("7-return", a, "rss_after_free_kib") if "7-return" in t.wids else None
        settled = t.median("7-return", a, "rss_settled_kib") if "7-return" in t.wids else None
        frag = t.median("8-frag", a, "rss_over_live") if "8-frag" in t.wids else None
        rows.append([
            LABEL[a],
            fmt(t.gm(t.time, a, "musl")),
            fmt(t.gm(t.time, a, "musl", mt)) if mt else "–",
            fmt(t.gm(t.time, a, "mimalloc")),
            fmt(max(((t.ratio(t.time, w, a, "mimalloc") or 0) for w in t.wids), default=0) or None),
            fmt(t.gm(t.rss, a, "musl")),
            fmt(t.gm(t.rss, a, "mimalloc")),
            (f"{fmt(settled / 1024, 1)} ({fmt(after / 1024, 1)})"
             if settled is not None and after is not None else "–"),
            fmt(frag),
        ])
    return md_table(["allocator", "time vs stock musl", "multithreaded time vs stock musl", "time vs mimalloc",
                     "worst workload vs mimalloc", "peak RSS vs stock musl", "peak RSS vs mimalloc",
                     "RSS after free-all, 1.1 s later (at once), MiB (7)", "peak RSS / peak live (8)"], rows)


def per_workload(t, f, digits=2, base=None):
    rows = []
    for w in t.wids:
        cells = [fmt(t.ratio(f, w, a, base) if base else f(w, a), digits) for a in t.allocs]
        rows.append([t.titles[w]] + cells)
    if base:
        rows.append(["**geometric mean**"] + [f"**{fmt(t.gm(f, a, base))}**" for a in t.allocs])
    return md_table(["workload"] + [LABEL[a] for a in t.allocs], rows)


def chart(t, out):
    """Four panels: time and peak RSS, each against stock musl and against mimalloc."""
    data = os.path.join(out, "chart.dat")
    panels = [("time", t.time, "musl"), ("time", t.time, "mimalloc"),
              ("peak RSS", t.rss, "musl"), ("peak RSS", t.rss, "mimalloc")]
    panels = [p for p in panels if p[2] in t.allocs]
    with open(data, "w") as fh:
        for i, (_, f, base) in enumerate(panels):
            fh.write("workload " + " ".join(SHORT[a] for a in t.allocs) + "\n")
            for w in t.wids + ["geomean"]:
                vals = [t.gm(f, a, base) if w == "geomean" else t.ratio(f, w, a, base) for a in t.allocs]
                fh.write(w.split("-")[0] if w != "geomean" else "gm")
                fh.write(("" if w == "geomean" or w.count("-") < 2 else "/" + w.split("-")[-1]) + " ")
                fh.write(" ".join(f"{v:.4f}" if v else "NaN" for v in vals) + "\n")
            fh.write("\n\n")
    m = t.res["machine"]
    script = [
        "set terminal pngcairo size 1500,1000 font 'sans,10'",
        f"set output '{os.path.join(out, 'chart.png')}'",
        f"set multiplot layout 2,2 title \"ngmalloc benchmark {m['date']}, {m['cores']} cores "
        f"(median of {t.res['repeats']}; lower is better; log scale)\"",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set logscale y 2",
        "set grid ytics",
        "set key top left horizontal font ',8'",
        "set xtics font ',8'",
        "set yrange [*:*]",
    ] + [f"set linetype {i + 1} lc rgb '{c}'" for i, c in enumerate(COLOURS)]
    for i, (what, _, base) in enumerate(panels):
        script.append(f"set title '{what} / {LABEL[base]} (workload 1-9, gm = geometric mean)'")
        script.append("plot " + ", ".join(
            f"'{data}' index {i} using {c + 2}:xtic(1) title columnheader({c + 2})" for c in range(len(t.allocs)))
            + ", 1 with lines lc 'black' dt 2 notitle")
    script.append("unset multiplot")
    r = subprocess.run(["gnuplot"], input="\n".join(script), text=True, capture_output=True)
    os.unlink(data)
    if r.returncode != 0:
        raise SystemExit(f"bench: gnuplot failed: {r.stderr}")


def write(res, out):
    set_labels(res)
    t = Table(res)
    m = res["machine"]
    lines = [
        "# ngmalloc benchmark report",
        "",
        f"{m['date']} on {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB), Linux {m['kernel']}; "
        f"ngmalloc commit {m['commit']}. {'Quick run (tiny sizes: not a measurement). ' if res['quick'] else ''}"
        f"Scale {res['scale']:g}; each cell is the median of {res['repeats']} runs, interleaved (every "
        f"repeat runs every workload on every allocator, in rotating order); measurement took "
        f"{res['run_seconds'] // 60} min {res['run_seconds'] % 60} s; load average "
        f"{res['loadavg_before'][0]:.2f} before, {res['loadavg_after'][0]:.2f} after. Time is the "
        "wall-clock time of the whole process; peak RSS is exact, from one more run of each cell "
        "under bench/peakrss.c (VmRSS read at every call that can lower it), not the kernel's VmHWM.",
        "",
        md_table(["allocator", "built as", "version"],
                 [[LABEL[a], f"{res['allocators'][a]['flavour']} build" + (
                     f", `{res['allocators'][a]['env']}`"
                     if res["allocators"][a]["env"] else ""),
                   m["versions"].get(a, m["versions"].get("ngmalloc" if a.startswith("ngmalloc") else a, "?"))]
                  for a in t.allocs]),
        "",
        "## Summary",
        "",
        "Ratios are geometric means over the workloads (below 1: faster or smaller than the "
        "reference). Multithreaded: workloads 2, 3, 4 at 2 and 8 threads.",
        "",
        summary(t),
        "",
        "![time and peak RSS ratios](chart.png)",
        "",
    ]
    for title, f, digits, base in [
        ("Time (seconds, median)", t.time, 3, None),
        ("Time against stock musl (below 1: faster)", t.time, 2, "musl"),
        ("Time against mimalloc", t.time, 2, "mimalloc"),
        ("Peak RSS (MiB, median)", t.rss, 1, None),
        ("Peak RSS against stock musl", t.rss, 2, "musl"),
        ("Peak RSS against mimalloc", t.rss, 2, "mimalloc"),
    ]:
        lines += [f"## {title}", "", per_workload(t, f, digits, base), ""]
    lines += [
        "## Workload figures",
        "",
    ]
    rows = []
    if "7-return" in t.wids:
        rows.append(["7: RSS after freeing everything (MiB)"] + [
            fmt((t.median("7-return", a, "rss_after_free_kib") or 0) / 1024, 1) for a in t.allocs])
        rows.append(["7: RSS 1.1 s later, after one more malloc and free (MiB)"] + [
            fmt((t.median("7-return", a, "rss_settled_kib") or 0) / 1024, 1) for a in t.allocs])
        rows.append(["7: RSS with everything allocated (MiB)"] + [
            fmt((t.median("7-return", a, "rss_full_kib") or 0) / 1024, 1) for a in t.allocs])
    if "8-frag" in t.wids:
        rows.append(["8: peak RSS / peak live bytes"] + [fmt(t.median("8-frag", a, "rss_over_live"), 3)
                                                        for a in t.allocs])
        rows.append(["8: peak live (MiB)"] + [fmt((t.median("8-frag", a, "peak_live_kib") or 0) / 1024, 1)
                                             for a in t.allocs])
    lines += [md_table(["figure"] + [LABEL[a] for a in t.allocs], rows) if rows else "(not run)", ""]
    lines += [
        "## Instructions per malloc+free pair (callgrind, single thread)",
        "",
        f"`bench/pair.c` run with {res['pairs_n']} and {2 * res['pairs_n']} pairs under `valgrind "
        "--tool=callgrind`; the difference divided by the pair count (start-up excluded). "
        "Repeatable to the instruction: timing noise does not enter.",
        "",
        md_table(["allocator"] + [f"{s} B" for s in sorted(int(k) for k in next(iter(res["pairs"].values())))]
                 + (["64 B, second thread alive"] if "pairs_threaded" in res else []),
                 [[LABEL[a]] + [str(v) for _, v in sorted((int(k), v) for k, v in res["pairs"][a].items())]
                  + ([str(res["pairs_threaded"][a])] if "pairs_threaded" in res else [])
                  for a in t.allocs if a in res["pairs"]]),
        "",
        ("snmalloc and Scudo are not counted: neither starts under valgrind (their "
         "address-space reservations are refused). " if "snmalloc" in t.allocs or "scudo" in t.allocs else "")
        + "The last column runs the same loop while a second thread sleeps: what an allocator's "
        "multithreaded machinery (locks, atomic operations) costs a pair once a program has "
        "threads; a single-threaded program pays the other columns.",
        "",
        "## Rust programs (" + (res["rust"] or {}).get("target", "not run") + ")",
        "",
        rust_tables(res.get("rust")),
        "",
        "## Heap-lock and futex calls per 1,000 calls into malloc",
        "",
        contention_table(t),
        "",
        "## Noise",
        "",
        "Largest spread of the time samples in a cell, (max - min) / median: "
        + fmt(max((t.spread(w, a) or 0) for w in t.wids for a in t.allocs)) + ".",
        "",
    ]
    if res["errors"]:
        lines += ["## Errors", ""] + [f"- {e}" for e in res["errors"]] + [""]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines))
    chart(t, out)


def rust_median(rust, pid, a, key):
    """A Rust program's median figure on one allocator (None without samples)."""
    xs = sorted(s[key] for s in rust["samples"][pid].get(a, []))
    return xs[len(xs) // 2] if xs else None


def ratio(x, y):
    return x / y if x and y else None


def rust_ratios(rust, key):
    """ngmalloc's crate over the system allocator and over the mimalloc crate: geometric
    means over the Rust programs ((None, None) if they were not run)."""
    if not rust:
        return None, None
    return tuple(geomean([ratio(rust_median(rust, p["id"], "ngmalloc", key), rust_median(rust, p["id"], b, key))
                          for p in rust["programs"]]) for b in ("system", "mimalloc"))


def rust_tables(rust):
    """The Rust programs: time and peak RSS per allocator, medians, and ngmalloc's ratios."""
    if not rust:
        return "(not run)"
    allocs = rust["allocators"]
    label = {"system": "system (musl's mallocng)", "mimalloc": "mimalloc crate", "ngmalloc": "ngmalloc crate"}

    out = []
    for what, key, scale, digits in [("time (s)", "wall", 1, 3), ("peak RSS (MiB)", "peak_kib", 1 / 1024, 1)]:
        rows = []
        for p in rust["programs"]:
            v = {a: rust_median(rust, p["id"], a, key) for a in allocs}
            rows.append([p["title"]] + [fmt(v[a] * scale if v[a] is not None else None, digits) for a in allocs]
                        + [fmt(ratio(v["ngmalloc"], v["system"])), fmt(ratio(v["ngmalloc"], v["mimalloc"]))])
        gm = rust_ratios(rust, key)
        rows.append(["**geometric mean**"] + [""] * len(allocs) + [f"**{fmt(g)}**" for g in gm])
        out.append(md_table([f"program: {what}"] + [label.get(a, a) for a in allocs]
                            + ["ngmalloc / system", "ngmalloc / mimalloc"], rows))
    v = rust.get("versions", {})
    return ("Each program built three times from `bench/rust/Cargo.lock` with the target's "
            "system allocator (Rust's bundled musl, mallocng), the `mimalloc` crate "
            f"({v.get('mimalloc', '?')}, libmimalloc-sys {v.get('libmimalloc-sys', '?')}) and ngmalloc's "
            f"crate (`global-allocator/`), {v.get('rustc', 'rustc ?')}, release profile; grep "
            f"{v.get('grep', '?')}, ignore {v.get('ignore', '?')}, serde_json {v.get('serde_json', '?')}. "
            "Inputs generated by `bench/rust_programs.py` (fixed seeds); each build printed the same "
            "check value and named its allocator. Median of the same interleaved repeats as above; "
            "peak RSS exact (bench/peakrss.c).\n\n" + "\n\n".join(out))


def contention_table(t):
    """Per workload: heap-lock calls and futex calls per 1,000 malloc/free/realloc calls,
    for the allocators built on musl."""
    counts = t.res.get("counts")
    if not counts:
        return "(not counted)"
    names = [a for a in t.allocs if any(a in counts[w] for w in counts)]
    header = ["workload"] + [f"{LABEL[a]}: {k}" for a in names for k in ("locks", "futex")]
    rows = []
    for w in t.wids:
        cells = []
        for a in names:
            c = counts.get(w, {}).get(a, {})
            cells += [fmt(c.get("locks_per_1000")), fmt(c.get("futex_per_1000"))]
        rows.append([t.titles[w]] + cells)
    return ("Counted in one run of each workload at scale " + f"{t.res['count_scale']:g}: calls to the "
            "heap lock (ngmalloc's `__ngm_lock`, which returns at once while a process has one "
            "thread; musl's `__lock`, which mallocng calls only once there are threads) counted "
            "exactly under callgrind (one thread at a time), futex system calls under strace (real "
            "threads), each per 1,000 calls to `__libc_malloc_impl`, `__libc_free` and "
            "`__libc_realloc`.\n\n" + md_table(header, rows))


def headline(res):
    m = res["machine"]
    return (f"{m['date']}, {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB), Linux {m['kernel']}, "
            f"ngmalloc commit {m['commit']}; each figure the median of {res['repeats']} interleaved runs")


def readme_summary(res):
    """The README's three lines: ngmalloc in the sysroot against the one baseline (stock
    musl of the same version, built by the toolchain) and mimalloc, then the Rust crate."""
    t = Table(res)
    a = "ngmalloc"
    lines = [f"Time: {fmt(t.gm(t.time, a, 'musl'))} of {LABEL['musl']}'s "
             f"({fmt(t.gm(t.time, a, 'musl', [w for w in t.wids if w.startswith(MULTITHREADED)]))} "
             f"multithreaded), {fmt(t.gm(t.time, a, 'mimalloc'))}x mimalloc's"
             + (f" (mimalloc in secure mode {fmt(t.gm(t.time, 'mimalloc-secure', 'mimalloc'))}x)"
                if "mimalloc-secure" in t.allocs else "") + ".",
             f"Peak RSS: {fmt(t.gm(t.rss, a, 'musl'))}x {LABEL['musl']}'s, {fmt(t.gm(t.rss, a, 'mimalloc'))}x "
             "mimalloc's."]
    rt, rm = rust_ratios(res.get("rust"), "wall")
    pt, pm = rust_ratios(res.get("rust"), "peak_kib")
    if rt and rm:
        lines.append(f"Rust programs with the `ngmalloc` crate: {fmt(rt)}x the time of the musl target's "
                     f"own allocator and {fmt(rm)}x the `mimalloc` crate's; peak RSS {fmt(pt)}x and {fmt(pm)}x.")
    return lines


def write_readme(res):
    """The README's performance summary, between its bench-summary markers."""
    set_labels(res)
    begin, end = "<!-- bench-summary: `make bench-publish` writes this part -->", "<!-- /bench-summary -->"
    block = "\n".join([begin, "", *(f"- {line}" for line in readme_summary(res)), "",
                       f"From the latest full run (`make bench`, then `make bench-publish`): {headline(res)}; "
                       "geometric means over the workloads. The whole report, with every allocator and "
                       "workload: [bench/results/report.md](bench/results/report.md).", "", end])
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    if begin not in text or end not in text:
        raise SystemExit(f"bench: README.md has no {begin} ... {end} section")
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    open(readme, "w").write(text)


def publish(src):
    """Copy a full run into bench/results/ and its summary into the README."""
    res = json.load(open(os.path.join(src, "results.json")))
    if res["quick"] or res["errors"]:
        raise SystemExit("bench: refusing to publish a quick run or a run with errors")
    dest = os.path.join(ROOT, "bench", "results")
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    write(res, dest)
    write_readme(res)
    print(f"bench: published to {dest} and README.md")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--publish":
        publish(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--readme":
        write_readme(json.load(open(os.path.join(sys.argv[2], "results.json"))))
    elif len(sys.argv) == 2:
        d = sys.argv[1]
        write(json.load(open(os.path.join(d, "results.json"))), d)
    else:
        raise SystemExit(__doc__)
