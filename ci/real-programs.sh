#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libngmalloc.so: python3, git and gcc, each checked for
# correct output (against the same run on the system allocator) and for proof that
# ngmalloc served it: with NGMALLOC_REPORT set, every process ngmalloc served appends a
# line "ngmalloc pid=.. groups=.. nested=.. large=.. areas=..".
# Usage: real-programs.sh path/to/libngmalloc.so   Prints ok/not ok lines and a summary.
set -u
lib=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"
# At least $2 processes in report $1 allocated groups.
served() {
  awk -v min="$2" '$1 == "ngmalloc" { split($3, g, "="); split($4, n, "="); if (g[2] + n[2] > 0) c++ }
    END { exit !(c >= min) }' "$1"
}
pre() { LD_PRELOAD="$lib" NGMALLOC_REPORT="$report" "$@"; }

# --- python3: a script that allocates heavily ---------------------------------------
py=$(python3 -c 'import sys; print(sys.executable)')
cat >"$work/alloc.py" <<'PY'
import hashlib, json, random
random.seed(7)
h = hashlib.sha256()
d = {}
for i in range(200000):
    d[str(i) * (i % 7 + 1)] = [i, str(i), (i, i * 2)] * (i % 3)
keys = sorted(d, key=lambda k: (len(k), k))
for k in keys[::997]:
    h.update(k.encode())
buf = bytearray()
for i in range(2000):                 # realloc growth, up to several MiB
    buf += bytes([i % 251]) * random.randint(1, 4000)
h.update(buf)
blobs = [bytes(random.randint(1, 300000)) for _ in range(300)]   # large blocks
h.update(str(sum(map(len, blobs))).encode())
doc = json.dumps({"k%d" % i: list(range(i % 50)) for i in range(20000)})
h.update(json.dumps(json.loads(doc), sort_keys=True).encode())
print(h.hexdigest())
PY
report="$work/py.report"
want=$("$py" "$work/alloc.py")
got=$(pre "$py" "$work/alloc.py")
result $([ -n "$want" ] && [ "$got" = "$want" ]; echo $?) "python3 heavy allocation script gives the same digest"
result $(served "$report" 1; echo $?) "python3 was served by ngmalloc"

# --- git: build, repack, clone and verify a real repository -------------------------
report="$work/git.report"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t \
  GIT_COMMITTER_EMAIL=t@example.invalid GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' \
  GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME="$work"
repo="$work/repo"
(
  set -e
  pre git init -q "$repo"
  cd "$repo"
  for c in $(seq 1 25); do
    for f in $(seq 1 40); do
      seq 1 $((f * 20)) | sed "s/^/file $f rev $c line /" >"f$f.txt"
    done
    pre git add -A
    pre git commit -qm "commit $c"
  done
  pre git repack -adfq
  pre git gc -q
  pre git clone -q "$repo" "$work/clone"
) >/dev/null 2>&1
result $? "git init/commit/repack/gc/clone under ngmalloc"
a=$(cd "$repo" && pre git log --stat --format='%H %s' | sha256sum)
b=$(cd "$repo" && git log --stat --format='%H %s' | sha256sum)
c=$(cd "$repo" && pre git log -p | sha256sum)
d=$(cd "$repo" && git log -p | sha256sum)
result $([ "$a" = "$b" ] && [ "$c" = "$d" ] && (cd "$work/clone" && git fsck --full --no-progress) >/dev/null 2>&1; echo $?) \
  "git log --stat and log -p match the system allocator's and the clone passes fsck"
result $(served "$report" 10; echo $?) "git processes were served by ngmalloc"

# --- gcc: compile a C file, compare the object with the system allocator's ----------
report="$work/gcc.report"
cat >"$work/sieve.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    int n = 1000000, c = 0;
    char *s = calloc(n + 1, 1);
    for (int i = 2; i <= n; i++) if (!s[i]) { c++; for (long j = (long)i * i; j <= n; j += i) s[j] = 1; }
    printf("%d primes\n", c);
    free(s);
    return 0;
}
C
pre gcc -O2 -c -o "$work/a.o" "$work/sieve.c" && gcc -O2 -c -o "$work/b.o" "$work/sieve.c"
result $(cmp -s "$work/a.o" "$work/b.o"; echo $?) "gcc -O2 -c gives the same object as with the system allocator"
pre gcc -O2 -o "$work/sieve" "$work/sieve.c"
result $([ "$("$work/sieve")" = "78498 primes" ]; echo $?) "gcc-built program runs correctly"
result $(served "$report" 3; echo $?) "gcc, cc1, as and ld were served by ngmalloc"

summary "real programs"
