#!/usr/bin/env python3
"""The benchmark harness: every workload on every allocator in one run (bench/README.md).

Builds bench/workloads.c, bench/pair.c and Lua (Debian's source package) three ways (the
ngmalloc musl sysroot, static; stock musl 1.2.3 from Debian's musl-tools, static; glibc),
runs each workload on six allocators, repeated and interleaved (every repeat visits every
workload and every allocator before the next repeat starts, and the allocator order rotates),
keeps the median time and peak RSS, runs the Rust programs (bench/rust_programs.py) on three
Rust allocators the same way, counts instructions per malloc+free pair with callgrind,
and writes report.md, chart.png and results.json (bench/report.py renders them).

Usage: bench/harness.py [--quick] [--repeats N] [--out DIR] [--only W,W] [--allocators A,A]
Exit status: 0 when every run succeeded, ran on the allocator it names, and every allocator
computed the same check value for a workload; non-zero otherwise (the report says what).
"""
import argparse
import collections
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the sysroots' musl version (make's MUSL)
MUSL = os.environ.get("MUSL", "1.2.6")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import report  # noqa: E402
import rust_programs  # noqa: E402

LUA = {
    "version": "5.4.4",
    "debian": ("lua5.4", "5.4.4-3+deb12u1", "bookworm", "lua5.4_5.4.4.orig.tar.gz"),
    "url": "https://www.lua.org/ftp/lua-5.4.4.tar.gz",
    "sha256": "164c7849653b80ae67bec4b7473b884bf5cc8d2dca05653475ec2ed27b9ebf61",
}

# (id, title, program, arguments before SCALE, arguments after SCALE)
WORKLOADS = [
    ("1-tree", "1 small-object churn, mostly LIFO", "workloads", ["tree"], []),
    ("2-server-2t", "2 server churn, 2 threads", "workloads", ["server"], ["2"]),
    ("2-server-8t", "2 server churn, 8 threads", "workloads", ["server"], ["8"]),
    ("3-prodcons-2t", "3 producer/consumer, 2 threads", "workloads", ["prodcons"], ["2"]),
    ("3-prodcons-8t", "3 producer/consumer, 8 threads", "workloads", ["prodcons"], ["8"]),
    ("4-local-2t", "4 thread-local malloc/free, 2 threads", "workloads", ["local"], ["2"]),
    ("4-local-8t", "4 thread-local malloc/free, 8 threads", "workloads", ["local"], ["8"]),
    ("5-orders", "5 free in order, reverse, random", "workloads", ["orders"], []),
    ("6-large", "6 large blocks and realloc growth", "workloads", ["large"], []),
    ("7-return", "7 memory return after free-all", "workloads", ["return"], []),
    ("8-frag", "8 fragmentation, 10% kept live", "workloads", ["frag"], []),
    ("9-lua", "9 Lua 5.4 interpreter (real program)", "lua", [os.path.join(ROOT, "bench/lua/bench.lua")], []),
]
PAIR_SIZES = [16, 64, 256, 1024, 4096, 16384, 65536]
# The heap lock of each allocator built on musl: ngmalloc's glue lock (its call returns at
# once while the process has one thread), and musl's internal lock, which mallocng takes
# on every malloc and on every free that is not lock-free, once the process has threads
# (other internal locks use it too, rarely in these workloads).
LOCK_FUNCTION = {"ngmalloc": "__ngm_lock", "musl": "__lock"}
# The calls a program makes into either malloc (musl's internal interface).
ALLOC_FUNCTIONS = ("__libc_malloc_impl", "__libc_free", "__libc_realloc")
# Scale of the counting runs (under callgrind and strace), quick runs included: large
# enough that start-up (the first groups, each thread's cache) does not dominate the
# counts that bench/limits.json bounds.
COUNT_SCALE = 0.1
LIMITS = os.path.join(ROOT, "bench", "limits.json")
# Allocators that do not start under valgrind (snmalloc: "Failed to initialise snmalloc";
# Scudo: "internal map failure": their address-space reservations are refused), and this
# machine has no hardware counters for perf: no instruction counts for them.
NO_VALGRIND = {"snmalloc", "scudo"}
# Scudo, the standalone build LLVM ships (Debian's libclang-rt-19-dev)
SCUDO = "/usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.scudo_standalone-x86_64.so"


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def shared_lib(name):
    """Path of a system shared library (Debian's multiarch directory), or None."""
    p = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return os.path.normpath(p) if os.path.isabs(p) and os.path.exists(p) else None


def allocators(build):
    """name -> (binary flavour, extra environment, how to prove it served the program)."""
    preload = lambda lib: {"LD_PRELOAD": lib}  # noqa: E731
    mim, jem = shared_lib("libmimalloc.so.2"), shared_lib("libjemalloc.so.2")
    if not mim or not jem:
        die("libmimalloc.so.2 or libjemalloc.so.2 not found. Run: sudo apt-get install -y libmimalloc2.0 libjemalloc2")
    ngso = os.path.join(build, "libngmalloc.so")
    if not os.path.exists(ngso):
        die(f"{ngso} is missing: run make first")
    if not os.path.exists(SCUDO):
        die(f"{SCUDO} is missing. Run: sudo apt-get install -y libclang-rt-19-dev")
    # the hardened anchors built from their crates (bench/anchors.sh)
    run([os.path.join(ROOT, "bench", "anchors.sh"), build])
    anchors = os.path.join(build, "anchors")
    mis, snc = os.path.join(anchors, "libmimalloc-secure.so"), os.path.join(anchors, "libsnmalloc-checks.so")
    return {
        "ngmalloc": ("ngmalloc", {}, "symbols"),
        "ngmalloc-preload": ("glibc", preload(ngso), "ngmalloc-report"),
        "musl": ("musl", {}, "no-ngmalloc-symbols"),
        "glibc": ("glibc", {}, "glibc"),
        "mimalloc": ("glibc", preload(mim), "mimalloc-stats"),
        "jemalloc": ("glibc", preload(jem), "jemalloc-stats"),
        "mimalloc-secure": ("glibc", preload(mis), "mimalloc-secure"),
        "snmalloc": ("glibc", preload(snc), "binds-malloc"),
        "scudo": ("glibc", preload(SCUDO), "binds-malloc"),
    }


def flavours(build):
    sysroot = os.path.join(build, f"sysroot-musl-{MUSL}")
    ngcc = os.path.join(sysroot, "bin", "ngmalloc-cc")
    if not os.path.exists(ngcc):
        die(f"{ngcc} is missing: run make first")
    if not shutil.which("musl-gcc"):
        die("musl-gcc is missing. Run: sudo apt-get install -y musl-tools")
    # stock musl of the same version, built the same way (--malloc mallocng)
    stockcc = os.path.join(build, f"sysroot-musl-{MUSL}-mallocng", "bin", "ngmalloc-cc")
    if not os.path.exists(stockcc):
        die(f"{stockcc} is missing. Run: make sysroot-stock")
    return {
        "ngmalloc": [ngcc, "-static"],
        "musl": [stockcc, "-static"],
        "glibc": ["gcc"],
    }


def fetch_lua(build):
    dl = os.path.join(build, "dl", f"lua-{LUA['version']}.tar.gz")

    def ok():
        return os.path.exists(dl) and hashlib.sha256(open(dl, "rb").read()).hexdigest() == LUA["sha256"]

    if not ok():
        rc = subprocess.run([os.path.join(ROOT, "toolchain/fetch-source.sh"), *LUA["debian"], LUA["sha256"],
                             LUA["url"], dl]).returncode
        if rc == 3:
            die(f"the downloaded Lua {LUA['version']} does not match its sha256 {LUA['sha256']}: refusing to build")
        if rc != 0:
            die(f"could not obtain Lua {LUA['version']} (Debian source package or {LUA['url']}); put it at {dl}")
    src = os.path.join(build, "bench", f"lua-{LUA['version']}")
    if not os.path.exists(os.path.join(src, "src", "lua.c")):
        os.makedirs(src, exist_ok=True)
        run(["tar", "-xzf", dl, "-C", src, "--strip-components=1"])
    return src


def build_programs(build, bindir):
    """Compile each program for each flavour; skip when the command and inputs are unchanged."""
    os.makedirs(bindir, exist_ok=True)
    lua = fetch_lua(build)
    lua_srcs = sorted(
        os.path.join(lua, "src", f) for f in os.listdir(os.path.join(lua, "src")) if f.endswith(".c") and f != "luac.c"
    )
    progs = {
        "workloads": ([os.path.join(ROOT, "bench/workloads.c")], ["-O2", "-pthread", "-Wall", "-Wextra", "-Werror"], []),
        "pair": ([os.path.join(ROOT, "bench/pair.c")], ["-O2", "-pthread"], []),
        "lua": (lua_srcs, ["-O2", "-DLUA_USE_POSIX", "-w"], ["-lm"]),
    }
    measure = os.path.join(bindir, "measure")
    src = os.path.join(ROOT, "bench/measure.c")
    if not os.path.exists(measure) or os.stat(measure).st_mtime < os.stat(src).st_mtime:
        run(["musl-gcc", "-static", "-O2", "-o", measure, src])
    # the exact peak RSS (bench/peakrss.c): ptrace and seccomp need Linux's headers, which
    # musl-gcc does not see
    peakrss = os.path.join(bindir, "peakrss")
    src = os.path.join(ROOT, "bench/peakrss.c")
    if not os.path.exists(peakrss) or os.stat(peakrss).st_mtime < os.stat(src).st_mtime:
        run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", peakrss, src])
    for fl, cc in flavours(build).items():
        for prog, (srcs, cflags, libs) in progs.items():
            out = os.path.join(bindir, f"{prog}-{fl}")
            cmd = [*cc, *cflags, "-o", out, *srcs, *libs]
            h = hashlib.sha256(" ".join(cmd).encode())
            for s in srcs:
                h.update(open(s, "rb").read())
            for tool in cc[:1]:
                if os.path.exists(tool):
                    h.update(str(os.stat(tool).st_mtime_ns).encode())
            stamp = out + ".stamp"
            if os.path.exists(out) and os.path.exists(stamp) and open(stamp).read() == h.hexdigest():
                continue
            print(f"bench: building {prog} for {fl}", file=sys.stderr)
            run(cmd)
            open(stamp, "w").write(h.hexdigest())


def parse_kv(text):
    out = {}
    for tok in text.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = float(v) if "." in v else int(v)
            except ValueError:
                out[k] = v
    return out


def run_tool(tool, cmd, env, timeout, fields):
    """Run `tool OUTFILE cmd...` (bench/measure.c or bench/peakrss.c): its figures, the
    program's output and error output, or an error."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as fig:
        p = subprocess.Popen([tool, fig.name, *cmd], env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            return {"error": f"timed out after {timeout} s"}
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        m = fig.read().split()
    name = os.path.basename(tool)
    if p.returncode != 0 or len(m) != fields:
        return {"error": f"{name} failed ({p.returncode}): {e.strip()[-300:]}"}
    figs = list(map(int, m))
    if figs[-1] != 0:
        return {"error": f"exit status {figs[-1]} under {name}: {e.strip()[-300:]}"}
    if "ld.so" in e or "cannot be preloaded" in e:
        return {"error": f"preload failed: {e.strip()[-300:]}"}
    kv = parse_kv(o)
    if "check" not in kv or "hwm_kib" not in kv:
        return {"error": f"no check= or hwm_kib= in the output: {o.strip()[-200:]}"}
    return {"figs": figs, "out": kv}


def run_once(measure, cmd, env, timeout):
    """One timed run through bench/measure.c: wall seconds and the program's output."""
    r = run_tool(measure, cmd, env, timeout, 5)
    if "error" in r:
        return r
    wall_ns, maxrss, user_us, sys_us, _ = r["figs"]
    # rusage's maxrss and the program's VmHWM are kept for the record only (see peak_rss)
    return {"wall": wall_ns / 1e9, "rusage_maxrss_kib": maxrss, "vmhwm_kib": r["out"]["hwm_kib"],
            "user": user_us / 1e6, "sys": sys_us / 1e6, "out": r["out"]}


def peak_rss(peakrss, cmd, env, timeout):
    """The exact peak RSS (KiB) of one more run, under bench/peakrss.c.

    Not VmHWM or ru_maxrss: the kernel records the high-water mark from per-CPU counters
    it folds every 32 pages or so, which can miss the peak by that much per CPU (stock
    musl's tree workload printed a VmHWM of 128 KiB, below its own live data). The tracer
    reads the exact VmRSS at every call that can lower it; its run is not timed."""
    r = run_tool(peakrss, cmd, env, timeout, 3)
    if "error" in r:
        return r
    peak, samples, _ = r["figs"]
    return {"peak_kib": peak, "peak_samples": samples, "out": r["out"]}


def timed_and_traced(measure, peakrss, cmd, env, timeout):
    """One timed run and one under the peak-RSS tracer: the timed run's figures with the
    exact peak added, or an error (either run failed, or the two computed different
    check values)."""
    r = run_once(measure, cmd, env, timeout)
    if "error" in r:
        return r
    pk = peak_rss(peakrss, cmd, env, timeout)
    if "error" in pk:
        return pk
    if pk["out"]["check"] != r["out"]["check"]:
        return {"error": f"the traced run computed {pk['out']['check']}, the timed one {r['out']['check']}"}
    r.update(peak_kib=pk["peak_kib"], peak_samples=pk["peak_samples"])
    return r


def served_by(name, how, binary, env):
    """Prove the allocator served the program: an LD_PRELOAD that fails to load is only a
    warning for ld.so, and a static binary could have been linked against the wrong libc."""
    cmd = [binary, "tree", "0.001"]
    e = dict(os.environ, **env)
    if how in ("symbols", "no-ngmalloc-symbols"):
        syms = subprocess.run(["nm", binary], capture_output=True, text=True).stdout
        has = "ngmalloc" in syms
        return has if how == "symbols" else not has
    if how == "glibc":
        return "libc.so.6" in subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    if how == "ngmalloc-report":
        with tempfile.NamedTemporaryFile("r") as f:
            e["NGMALLOC_REPORT"] = f.name
            subprocess.run(cmd, env=e, capture_output=True)
            return "ngmalloc" in f.read()
    if how == "mimalloc-stats":
        e["MIMALLOC_SHOW_STATS"] = "1"
        r = subprocess.run(cmd, env=e, capture_output=True, text=True)
        return "heap stats" in r.stderr or "heap stats" in r.stdout
    if how == "mimalloc-secure":
        e["MIMALLOC_VERBOSE"] = "1"
        r = subprocess.run(cmd, env=e, capture_output=True, text=True)
        return "secure level: 4" in r.stderr + r.stdout
    if how == "binds-malloc":
        # the dynamic linker's own account: the program's malloc bound to the preload
        e["LD_DEBUG"] = "bindings"
        r = subprocess.run(cmd, env=e, capture_output=True, text=True)
        lib = env["LD_PRELOAD"]
        return any(f"to {lib} " in ln and "symbol `malloc'" in ln and binary in ln for ln in r.stderr.splitlines())
    if how == "jemalloc-stats":
        e["MALLOC_CONF"] = "stats_print:true"
        r = subprocess.run(cmd, env=e, capture_output=True, text=True)
        return "jemalloc statistics" in r.stderr or "jemalloc statistics" in r.stdout
    raise ValueError(how)


def callgrind_pair(bindir, name, fl, env, size, n, threaded=False):
    """Instructions per malloc+free pair: callgrind totals with N and 2N pairs; the
    difference over N is the cost of one pair, start-up and exit excluded."""
    counts = []
    for k in (n, 2 * n):
        r = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             os.path.join(bindir, f"pair-{fl}"), str(size), str(k)] + (["threaded"] if threaded else []),
            env=dict(os.environ, **env), capture_output=True, text=True)
        line = [ln for ln in r.stderr.splitlines() if "Collected" in ln]
        if r.returncode != 0 or not line:
            die(f"callgrind failed for {name}: {r.stderr[-300:]}")
        counts.append(int(line[0].split()[-1]))
    return round((counts[1] - counts[0]) / n)


def callgrind_pairs(bindir, allocs, n):
    """Per allocator: instructions per pair for each of PAIR_SIZES, and for 64 bytes again
    with a second thread alive (what the multithreaded machinery costs a pair)."""
    if not shutil.which("valgrind"):
        die("valgrind is missing. Run: sudo apt-get install -y valgrind")
    res, threaded = {}, {}
    for name, (fl, env, _) in allocs.items():
        if name in NO_VALGRIND:
            continue
        res[name] = {size: callgrind_pair(bindir, name, fl, env, size, n) for size in PAIR_SIZES}
        threaded[name] = callgrind_pair(bindir, name, fl, env, 64, n, threaded=True)
    return res, threaded


def callgrind_calls(cmd, env):
    """Calls made to each function in one run of `cmd` under callgrind (exact counts)."""
    with tempfile.NamedTemporaryFile("r") as f:
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={f.name}", *cmd],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            return None
        names, counts, callee = {}, collections.Counter(), None

        def name(tok):
            # callgrind compresses names: "(12) name" the first time, "(12)" after
            m = re.match(r"\((\d+)\)(?: (.*))?", tok)
            if not m:
                return tok
            if m.group(2):
                names[m.group(1)] = m.group(2)
            return names.get(m.group(1))

        for line in f:
            if line.startswith("fn="):
                name(line[3:].strip())
            elif line.startswith("cfn="):
                callee = name(line[4:].strip())
            elif line.startswith("calls=") and callee:
                counts[callee] += int(line[6:].split()[0])
        return counts


def futex_calls(cmd, env):
    """futex system calls made by one run of `cmd`, all threads (strace -c)."""
    with tempfile.NamedTemporaryFile("r") as f:
        r = subprocess.run(["strace", "-f", "-qq", "-c", "-e", "trace=futex", "-o", f.name, *cmd],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            return None
        for line in f:
            w = line.split()
            if w and w[-1] == "futex":
                return int(w[3])
        return 0


def contention(bindir, allocs, work, scale):
    """Per workload, for the allocators built on musl: heap-lock calls and futex calls
    per 1,000 calls into malloc (malloc, free, realloc), from one run at `scale`: the
    locks counted exactly under callgrind (which runs one thread at a time), the futex
    calls under strace (real threads)."""
    if not shutil.which("strace"):
        die("strace is missing. Run: sudo apt-get install -y strace")
    res = {}
    for wid, _, prog, pre, post in work:
        res[wid] = {}
        for name, lockfn in LOCK_FUNCTION.items():
            if name not in allocs:
                continue
            fl, env, _ = allocs[name]
            cmd = [os.path.join(bindir, f"{prog}-{fl}"), *pre, f"{scale:g}", *post]
            e = dict(os.environ, **env)
            calls, futex = callgrind_calls(cmd, e), futex_calls(cmd, e)
            if calls is None or futex is None:
                res[wid][name] = {"error": "the counting run failed"}
                continue
            ops = sum(calls.get(f, 0) for f in ALLOC_FUNCTIONS)
            per = lambda n: round(1000 * n / ops, 2) if ops else None  # noqa: E731
            res[wid][name] = {"ops": ops, "locks": calls.get(lockfn, 0), "futex": futex,
                              "locks_per_1000": per(calls.get(lockfn, 0)), "futex_per_1000": per(futex)}
    return res


def check_limits(pairs, counts, limits):
    """The ceilings of bench/limits.json that ngmalloc's figures exceed (none: [])."""
    bad = []
    for size, most in limits.get("pairs", {}).items():
        got = pairs.get("ngmalloc", {}).get(int(size))
        if got is not None and got > most:
            bad.append(f"ngmalloc's {size}-byte malloc+free pair takes {got} instructions, above its "
                       f"ceiling of {most} (bench/limits.json)")
    for wid, most in limits.get("locks_per_1000", {}).items():
        got = counts.get(wid, {}).get("ngmalloc", {}).get("locks_per_1000")
        if got is not None and got > most:
            bad.append(f"ngmalloc takes the heap lock {got} times per 1,000 calls in {wid}, above its "
                       f"ceiling of {most} (bench/limits.json)")
    return bad


def machine():
    cpu = "unknown"
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
        mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    def deb(pkg):
        return out(["dpkg-query", "-W", "-f=${Version}", pkg]) or "?"

    commit = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]):
        commit += "+changes"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem / 1048576, 1),
        "kernel": platform.release(),
        "commit": commit,
        "musl": MUSL,
        "versions": {
            "ngmalloc": f"commit {commit}, musl {MUSL} (static) / standalone library",
            "musl": f"musl {MUSL}, mallocng (toolchain/build-sysroot.sh --malloc mallocng), static",
            "glibc": out(["ldd", "--version"]).splitlines()[0] if out(["ldd", "--version"]) else "?",
            "mimalloc": f"Debian libmimalloc2.0 {deb('libmimalloc2.0')}",
            "jemalloc": f"Debian libjemalloc2 {deb('libjemalloc2')}",
            "mimalloc-secure": "mimalloc, secure mode (MI_SECURE=4), crates.io libmimalloc-sys 0.1.49 (bench/anchors.sh)",
            "snmalloc": "snmalloc with every client check (SNMALLOC_CHECK_CLIENT), crates.io snmalloc-sys 0.3.8 "
                        "sources (bench/anchors.sh)",
            "scudo": f"Scudo standalone, Debian libclang-rt-19-dev {deb('libclang-rt-19-dev')}",
            "gcc": out(["gcc", "-dumpfullversion"]),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs and reports")
    ap.add_argument("--repeats", type=int, help="measurements per cell (default 5, quick 1)")
    ap.add_argument("--scale", type=float, help="workload scale (default 1, quick 0.02)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only", help="comma-separated workload ids (prefixes)")
    ap.add_argument("--allocators", help="comma-separated allocator names")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    repeats = a.repeats or (1 if a.quick else 5)
    scale = a.scale or (0.02 if a.quick else 1.0)
    pairs_n = 2000 if a.quick else 20000
    build = os.path.abspath(a.build)
    out = os.path.abspath(a.out)
    bindir = os.path.join(build, "bench", "bin")
    os.makedirs(out, exist_ok=True)

    allocs = allocators(build)
    if a.allocators:
        want = a.allocators.split(",")
        unknown = [w for w in want if w not in allocs]
        if unknown:
            die(f"unknown allocator(s) {unknown}; known: {list(allocs)}")
        allocs = {k: v for k, v in allocs.items() if k in want}
    work = WORKLOADS
    if a.only:
        work = [w for w in WORKLOADS if any(w[0].startswith(p) for p in a.only.split(","))]
        if not work and not any(r[0].startswith(p) for p in a.only.split(",") for r in rust_programs.PROGRAMS):
            die(f"no workload matches {a.only}")
    build_programs(build, bindir)
    measure = os.path.join(bindir, "measure")
    peakrss = os.path.join(bindir, "peakrss")

    problems = []
    for name, (fl, env, how) in allocs.items():
        if not served_by(name, how, os.path.join(bindir, f"workloads-{fl}"), env):
            problems.append(f"{name}: could not prove that {name} served the program ({how})")
    if problems:
        die("; ".join(problems))

    # the tree as it was built and measured: edits made while the run goes on are not in it
    facts = machine()
    started = time.time()
    load0 = os.getloadavg()
    samples = {w[0]: {n: [] for n in allocs} for w in work}
    errors = []
    names = list(allocs)
    total = repeats * len(work) * len(names)
    done = 0
    for rep in range(repeats):
        for wi, (wid, _, prog, pre, post) in enumerate(work):
            # rotate the allocator order so that none always runs first or after another
            k = (rep + wi) % len(names)
            for name in names[k:] + names[:k]:
                fl, env, _ = allocs[name]
                cmd = [os.path.join(bindir, f"{prog}-{fl}"), *pre, f"{scale:g}", *post]
                r = timed_and_traced(measure, peakrss, cmd, dict(os.environ, **env), a.timeout)
                done += 1
                if "error" in r:
                    errors.append(f"{wid} on {name}: {r['error']}")
                else:
                    samples[wid][name].append(r)
                print(f"bench: [{done}/{total}] {wid} {name}: "
                      + (f"{r['wall']:.3f} s, {r['peak_kib'] / 1024:.1f} MiB" if "error" not in r else r["error"]),
                      file=sys.stderr, flush=True)
    rust = None
    if not a.only or any(p[0].startswith(o) for o in a.only.split(",") for p in rust_programs.PROGRAMS):
        bins = rust_programs.build(build, bindir)
        data_dir = rust_programs.data(build, scale)
        r_samples, r_errors = rust_programs.run(
            bins, data_dir, repeats, lambda cmd: timed_and_traced(measure, peakrss, cmd, dict(os.environ), a.timeout))
        errors += r_errors
        rust = {"programs": [{"id": p[0], "title": p[1]} for p in rust_programs.PROGRAMS],
                "allocators": rust_programs.ALLOCATORS, "target": rust_programs.TARGET,
                "versions": rust_programs.versions(), "samples": r_samples}
    run_seconds = time.time() - started
    print("bench: counting instructions per malloc+free pair (callgrind)", file=sys.stderr)
    pairs, pairs_threaded = callgrind_pairs(bindir, allocs, pairs_n)
    count_scale = COUNT_SCALE if a.scale is None else a.scale
    print(f"bench: counting lock and futex calls (callgrind, strace; scale {count_scale:g})", file=sys.stderr)
    counts = contention(bindir, allocs, work, count_scale)
    limits = json.load(open(LIMITS))
    errors += check_limits(pairs, counts, limits)

    # every allocator must have computed the same thing
    for wid in samples:
        checks = {n: {s["out"]["check"] for s in v} for n, v in samples[wid].items() if v}
        values = set().union(*checks.values()) if checks else set()
        if len(values) > 1:
            errors.append(f"{wid}: the allocators disagree on the result: {checks}")

    results = {
        "machine": facts,
        "quick": a.quick,
        "scale": scale,
        "repeats": repeats,
        "run_seconds": round(run_seconds),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "allocators": {n: {"flavour": v[0], "env": " ".join(f"{k}={shlex.quote(x.replace(ROOT + '/', ''))}" for k, x in v[1].items())}
                       for n, v in allocs.items()},
        "workloads": [{"id": w[0], "title": w[1]} for w in work],
        "samples": samples,
        "pairs": pairs,
        "pairs_threaded": pairs_threaded,
        "pairs_n": pairs_n,
        "counts": counts,
        "count_scale": count_scale,
        "rust": rust,
        "limits": limits,
        "errors": errors,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report.write(results, out)
    print(f"bench: report in {os.path.join(out, 'report.md')}, chart {os.path.join(out, 'chart.png')}", file=sys.stderr)
    if errors:
        print("bench: FAILED:\n  " + "\n  ".join(errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
