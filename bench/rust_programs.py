"""The harness's Rust programs (bench/rust/): real crates.io software built three times from
one lockfile for the musl target, with the target's system allocator (Rust's bundled musl:
mallocng), the `mimalloc` crate and ngmalloc's crate (global-allocator/), run interleaved
on the same generated inputs. Time and exact peak RSS as for the C workloads; every build
must print the same check value, and name the allocator it was built with."""
import os
import random
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATE = os.path.join(ROOT, "bench", "rust")
TARGET = "x86_64-unknown-linux-musl"
ALLOCATORS = ["system", "mimalloc", "ngmalloc"]
# (id, title, program, arguments: DATA is replaced by the data directory)
PROGRAMS = [
    ("r1-search", "ripgrep's search (ignore + grep crates), 2 threads", "search",
     ["DATA/tree", r"malloc_[a-z]+\(", "2"]),
    ("r2-json", "JSON tool (serde_json): parse, project, serialise, parse back", "json", ["DATA/data.json"]),
]
WORDS = ("alloc free malloc_usable buffer node struct return if else while for size_t void int char "
         "const static len ptr next prev lock unlock group slot meta area page map read write close "
         "open error errno result value key hash table list push pop swap mask bits shift count").split()
NAMES = "ada bob cy dee eve fay gus hal ivy jo".split()
CITIES = "Oslo Lima Pune Kyiv Baku Cork Nice Bern".split()


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def build(build_dir, bindir):
    """Each program for each allocator, `--locked` to bench/rust/Cargo.lock; returns
    {allocator: {program: path}}. Cargo rebuilds only what changed."""
    target_dir = os.path.join(build_dir, "bench", "rust-target")
    out = {}
    for alloc in ALLOCATORS:
        log(f"building the Rust programs with the {alloc} allocator")
        cmd = ["cargo", "build", "-q", "--release", "--locked", "--target", TARGET,
               "--manifest-path", os.path.join(CRATE, "Cargo.toml"), "--target-dir", target_dir]
        if alloc != "system":
            cmd += ["--features", alloc]
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise SystemExit(f"bench: building bench/rust with {alloc} failed: {' '.join(cmd)}")
        out[alloc] = {}
        for _, _, prog, _ in PROGRAMS:
            dst = os.path.join(bindir, f"rust-{prog}-{alloc}")
            shutil.copy2(os.path.join(target_dir, TARGET, "release", prog), dst)
            out[alloc][prog] = dst
    return out


def data(build_dir, scale):
    """The inputs, generated once per scale (deterministic: fixed seeds): a tree of
    C-like text files, 30,000 at scale 1 (about 100 MB), and a JSON array of 100,000
    records (about 34 MB)."""
    d = os.path.join(build_dir, "bench", f"rust-data-{scale:g}")
    stamp = os.path.join(d, "complete")
    if os.path.exists(stamp):
        return d
    log(f"generating the Rust programs' inputs in {d}")
    shutil.rmtree(d, ignore_errors=True)
    rnd = random.Random(1)
    for i in range(max(20, int(30000 * scale))):
        sub = os.path.join(d, "tree", f"d{i % 97:02d}", f"s{i % 13}")
        os.makedirs(sub, exist_ok=True)
        lines = []
        for _ in range(60):
            n = rnd.randrange(4, 14)
            w = [rnd.choice(WORDS) for _ in range(n)]
            if rnd.random() < 0.05:
                w.insert(rnd.randrange(n), f"malloc_{rnd.choice(WORDS)}({rnd.randrange(1000)})")
            lines.append("    " * rnd.randrange(4) + " ".join(w))
        with open(os.path.join(sub, f"f{i}.c"), "w") as f:
            f.write("\n".join(lines) + "\n")
    rnd = random.Random(2)
    with open(os.path.join(d, "data.json"), "w") as f:
        f.write("[")
        for i in range(max(100, int(100000 * scale))):
            tags = ",".join(f'"{rnd.choice(NAMES)}"' for _ in range(rnd.randrange(1, 7)))
            items = ",".join(
                f'{{"sku":"S{rnd.randrange(100000)}","price":{rnd.randrange(1, 100000) / 100},'
                f'"qty":{rnd.randrange(1, 9)}}}' for _ in range(rnd.randrange(1, 9)))
            f.write(("," if i else "")
                    + f'{{"id":{i},"name":"{rnd.choice(NAMES)}{rnd.randrange(10000)}",'
                    f'"email":"u{i}@example.org","active":{"true" if rnd.random() < 0.7 else "false"},'
                    f'"tags":[{tags}],"items":[{items}],"address":{{"street":"{rnd.randrange(1, 999)} '
                    f'{rnd.choice(NAMES)} st","city":"{rnd.choice(CITIES)}","zip":"{rnd.randrange(10000, 99999)}"}}}}')
        f.write("]")
    open(stamp, "w").write("ok\n")
    return d


def run(bins, data_dir, repeats, measured):
    """Every program on every allocator, `repeats` times interleaved (the order rotating);
    `measured(cmd)` is the harness's timed and traced run. Returns the samples and the
    errors (a failed run, another allocator than built for, or outputs that differ)."""
    samples = {p[0]: {a: [] for a in ALLOCATORS} for p in PROGRAMS}
    errors = []
    total, done = repeats * len(PROGRAMS) * len(ALLOCATORS), 0
    for rep in range(repeats):
        for pi, (pid, _, prog, args) in enumerate(PROGRAMS):
            k = (rep + pi) % len(ALLOCATORS)
            for alloc in ALLOCATORS[k:] + ALLOCATORS[:k]:
                r = measured([bins[alloc][prog]] + [a.replace("DATA", data_dir) for a in args])
                if "error" not in r and r["out"].get("allocator") != alloc:
                    r = {"error": f"built for {alloc}, it says it runs on {r['out'].get('allocator')}"}
                done += 1
                if "error" in r:
                    errors.append(f"{pid} on {alloc}: {r['error']}")
                else:
                    samples[pid][alloc].append(r)
                log(f"[{done}/{total}] {pid} {alloc}: "
                    + (f"{r['wall']:.3f} s, {r['peak_kib'] / 1024:.1f} MiB" if "error" not in r else r["error"]))
    for pid, by in samples.items():
        checks = {a: {s["out"]["check"] for s in v} for a, v in by.items() if v}
        if len(set().union(*checks.values())) > 1:
            errors.append(f"{pid}: the allocators disagree on the output: {checks}")
    return samples, errors


def versions():
    """rustc's version and the mimalloc crate's, from the lockfile."""
    v = {"rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}
    name = None
    for ln in open(os.path.join(CRATE, "Cargo.lock")):
        if ln.startswith("name = "):
            name = ln.split('"')[1]
        elif ln.startswith("version = ") and name in ("mimalloc", "libmimalloc-sys", "grep", "ignore", "serde_json"):
            v[name] = ln.split('"')[1]
    return v
