# Shared by the ci/ test scripts: count and print "ok - …"/"not ok - …" lines.
# Source it; call `result STATUS NAME` (STATUS 0 = pass) and `summary LABEL` at the end
# (prints "LABEL: N passed, N failed" and returns non-zero on any failure).
pass=0
fail=0
result() {
  if [ "$1" = 0 ]; then echo "ok - $2"; pass=$((pass + 1)); else echo "not ok - $2"; fail=$((fail + 1)); fi
}
summary() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}
