#!/usr/bin/env bash
# test_run_sh.sh — `make run`'s script end to end: starts scripts/run.sh on a free port with a
# temp data folder, waits for its banner, runs two of the printed curl examples (Nanobanana Pro
# 2K free for the member who joined 2025-11-25, 4K charged), then Ctrl-C (SIGTERM) and checks
# the server is gone. Needs curl (scripts/deps.sh installs it).
set -u
BUILD=${BUILD:-build}
export BUILD
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 0; }
tmp=$(mktemp -d /tmp/cg-run-test-XXXXXX)
out=$tmp/run.out
CREDITGATE_LISTEN=127.0.0.1:0 CREDITGATE_DATA=$tmp/data setsid scripts/run.sh >"$out" 2>&1 &
runner=$!
cleanup() {
  kill -TERM -- -"$runner" 2>/dev/null
  wait "$runner" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- run.sh output:"; cat "$out"; exit 1; }

for _ in $(seq 300); do
  grep -q "creditgate is serving" "$out" && break
  kill -0 "$runner" 2>/dev/null || fail "run.sh exited early"
  sleep 0.1
done
grep -q "creditgate is serving" "$out" || fail "no banner within 30 s"
url=$(sed -n 's/^creditgate is serving on \(http:[^ ]*\).*/\1/p' "$out")
svc=$(sed -n 's/^  service key: //p' "$out")
admin=$(sed -n 's/^  admin key: *//p' "$out")
[ -n "$url" ] && [ -n "$svc" ] && [ -n "$admin" ] || fail "banner lacks url or keys"

quote() {
  curl -s "$url/v1/quote" -H "Authorization: Bearer $svc" -H 'Content-Type: application/json' -d "$1"
}
free=$(quote '{"member_id":"m-nov25-plus","model":"Nanobanana Pro","variant":"2k"}')
grep -q '"unlimited":true' <<<"$free" || fail "2K should be unlimited: $free"
paid=$(quote '{"member_id":"m-nov25-plus","model":"Nanobanana Pro","variant":"4k"}')
grep -q '"unlimited":false' <<<"$paid" || fail "4K should be charged: $paid"
bal=$(curl -s "$url/v1/members/m-business/balance" -H "Authorization: Bearer $svc")
grep -q '"available":1300' <<<"$bal" || fail "seeded credits missing: $bal"

pid=$(sed -n 's/.*(pid \([0-9]*\);.*/\1/p' "$out")
kill -TERM "$runner"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "server $pid still running after SIGTERM"
echo "ok: make run serves, seeds and stops ($url)"
