# Shared by the ci/ test scripts: count and print "ok - …"/"not ok - …" lines.
# Source it; call `result STATUS NAME` (STATUS 0 = pass) and `summary LABEL` at the end
# (prints "LABEL: N passed, N failed" and returns non-zero on any failure).
# ARCH (default: the host's) is the architecture of the programs under test: another
# one's run under qemu-user ("${RUN[@]}" prog), and its binutils are $CROSS-prefixed.
ARCH=${ARCH:-$(uname -m)}
if [ "$ARCH" = "$(uname -m)" ]; then
  RUN=() CROSS=
else
  RUN=("qemu-$ARCH") CROSS=$ARCH-linux-gnu-
fi
pass=0
fail=0
result() {
  if [ "$1" = 0 ]; then echo "ok - $2"; pass=$((pass + 1)); else echo "not ok - $2"; fail=$((fail + 1)); fi
}
summary() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}
