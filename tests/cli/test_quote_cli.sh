#!/usr/bin/env bash
# test_quote_cli.sh — `creditgate quote | benefits | policy check` as a person types them:
# outputs, --json documents, exit codes and one-line errors. With CG_VALGRIND=1 every run is
# under memcheck and any report fails the test.
set -u
BUILD=${BUILD:-build}
CG=("$BUILD/creditgate")
if [ "${CG_VALGRIND:-0}" = 1 ]; then
  CG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$BUILD/creditgate")
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

# run NAME WANT_EXIT ARGS... — runs creditgate, keeps stdout/stderr in $tmp
run() {
  local name=$1 want=$2; shift 2
  "${CG[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL $name: exit $got, want $want"; sed 's/^/  err: /' "$tmp/err" | head -5; fail=$((fail+1)); return 1
  fi
  return 0
}
has() { # has NAME FILE TEXT
  if grep -qF -- "$3" "$tmp/$2"; then pass=$((pass+1)); else echo "FAIL $1: $2 lacks '$3'"; sed 's/^/  | /' "$tmp/$2" | head -20; fail=$((fail+1)); fi
}
lines() { # lines NAME FILE N
  local n; n=$(wc -l <"$tmp/$2")
  if [ "$n" -eq "$3" ]; then pass=$((pass+1)); else echo "FAIL $1: $2 has $n lines, want $3"; fail=$((fail+1)); fi
}

Q=(quote --at 2026-11-25T12:00:00+09:00)

run nov25-pro-2k 0 "${Q[@]}" --plan plus --billing monthly --joined 2025-11-25 --model "Nanobanana Pro" --variant 2k --json &&
  { has nov25-pro-2k out '"unlimited": true'; has nov25-pro-2k out '"benefit": "nanobanana-pro-nov-21-30-2025"';
    has nov25-pro-2k out '"total_credits": 0'; has nov25-pro-2k out '"policy": "carat-2026-11"';
    has nov25-pro-2k out '"at": "2026-11-25T12:00:00+09:00"'; }

run nov25-pro-4k 0 "${Q[@]}" --plan plus --billing monthly --joined 2025-11-25 --model "Nanobanana Pro" --variant 4k --json &&
  { has nov25-pro-4k out '"unlimited": false'; has nov25-pro-4k out '"benefit": null';
    has nov25-pro-4k out '4K resolution is paid for all members'; }

run text-charged 0 "${Q[@]}" --plan plus --billing monthly --joined 2026-01-03 --model nanobanana-pro --variant 1k &&
  has text-charged out 'is unlimited only for members who joined 2025-11-21 to 2025-11-30; this member joined 2026-01-03'

run agent-ltx 0 "${Q[@]}" --plan premium --billing monthly --joined 2026-03-01 --agent-model lite --kind video \
    --prompt "Use Carat Basic Video (LTX 2.3)" --json &&
  { has agent-ltx out '"model": "carat-video-ltx"'; has agent-ltx out '"kind": "conversation"';
    has agent-ltx out '"model": "carat-1.0-lite"'; has agent-ltx out 'until 2027-03-01'; }

run agent-default 0 "${Q[@]}" --plan pro --billing annual --joined 2026-01-01 --agent-model soul --kind video &&
  has agent-default out 'seedance-2.0'

run korean 0 "${Q[@]}" --plan premium --billing monthly --joined 2026-03-01 --model "Carat Video" --lang ko &&
  has korean out '무제한'

run benefits 0 benefits --plan premium --billing monthly --joined 2026-03-01 --at 2026-11-25 --json &&
  { has benefits out '"expires_at": "2027-03-01T00:00:00+09:00"'; has benefits out '"benefit": "gpt-image-2-low"'; }

run benefits-ko 0 benefits --plan plus --billing monthly --joined 2025-11-25 --at 2026-11-25 --lang ko &&
  has benefits-ko out '혜택 사용중'

run check 0 policy check policy/carat.yaml && { has check out 'ok: 1 version(s) valid';
  has check out 'Max receives the same unlimited benefits as Premium'; }

# ---- errors: non-zero exit, one line on stderr, a JSON error object with --json ----
run unknown-plan 2 "${Q[@]}" --plan premuim --billing monthly --joined 2026-01-01 --model grok &&
  { has unknown-plan err "unknown plan 'premuim'"; lines unknown-plan err 1; }
run unknown-model-json 2 "${Q[@]}" --plan plus --billing monthly --joined 2026-01-01 --model "Nanobanana 3" --json &&
  { has unknown-model-json out '"code": "not_found"'; has unknown-model-json out '"suggestions"';
    has unknown-model-json out '"Nanobanana 2"'; has unknown-model-json out '"field": "model"'; }
run bad-date 2 "${Q[@]}" --plan plus --billing monthly --joined 2026-02-30 --model grok &&
  { has bad-date err "2026-02-30"; lines bad-date err 1; }
run bad-variant 2 "${Q[@]}" --plan plus --billing monthly --joined 2026-01-01 --model "Nanobanana Pro" --variant 8k &&
  has bad-variant err "no variant '8k'"
run missing-joined 2 "${Q[@]}" --plan plus --billing monthly --model grok && has missing-joined err "missing --joined"
run bad-count 2 "${Q[@]}" --plan plus --billing monthly --joined 2026-01-01 --model grok --count 0 &&
  has bad-count err "--count"
run bad-flag 2 quote --plan plus --bogus && has bad-flag err "unknown or incomplete flag"
run bad-at 2 quote --plan plus --billing monthly --joined 2026-01-01 --model grok --at tomorrow && has bad-at err "--at"

printf 'version: x\neffective_at: 2025-11-01T00:00:00+09:00\ntimezone: Asia/Seoul\nutc_offset: "+09:00"\nplans: []\nbilling: [monthly]\n' >"$tmp/empty.yaml"
run empty-plans 2 policy check "$tmp/empty.yaml" && { has empty-plans err "$tmp/empty.yaml:5:1: plans must not be empty"; lines empty-plans err 1; }
printf 'version: x\neffective_at: 2025-11-01T00:00:00+09:00\ntimezone: Asia/Seoul\nutc_offset: "+09:00"\nbillng: [monthly]\n' >"$tmp/bad.yaml"
run bad-policy 2 policy check "$tmp/bad.yaml" && { has bad-policy err "$tmp/bad.yaml:5:1: unknown key 'billng'"; lines bad-policy err 1; }
run missing-policy 1 quote --policy "$tmp/none.yaml" --plan plus --billing monthly --joined 2026-01-01 --model grok &&
  has missing-policy err "none.yaml: cannot open"

echo "cli quote: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
