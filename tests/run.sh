#!/usr/bin/env bash
# run.sh — runs every test binary under $BUILD/tests and every tests/*/test_*.sh script (or
# only those whose path contains one of the arguments), then prints one closing line
# "N passed, N failed". VALGRIND=1 runs each under memcheck; any report fails that test.
set -u
BUILD=${BUILD:-build}
export BUILD
passed=0; failed=0; failures=()
wrap=()
if [ "${VALGRIND:-0}" = 1 ]; then
  wrap=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
  export CG_VALGRIND=1
fi
selected() {
  [ $# -le 1 ] && return 0
  local t=$1; shift
  for f in "$@"; do [[ $t == *"$f"* ]] && return 0; done
  return 1
}
for t in $(find "$BUILD/tests" -type f -perm -u+x -name 'test_*' | sort) $(ls tests/*/test_*.sh 2>/dev/null | sort); do
  selected "$t" "$@" || continue
  echo "== $t"
  if [[ $t == *.sh ]]; then cmd=(bash "$t"); else cmd=("${wrap[@]}" "$t"); fi
  if "${cmd[@]}"; then passed=$((passed+1)); else failed=$((failed+1)); failures+=("$t"); fi
done
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
