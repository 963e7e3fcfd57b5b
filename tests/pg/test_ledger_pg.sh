#!/usr/bin/env bash
# test_ledger_pg.sh — the PostgreSQL backend (src/store/pg.c) on a real server: starts a
# throwaway cluster (scripts/pg.sh), runs every ledger test binary against it (a fresh
# database per binary, a fresh schema per test: tests/ledger/ledger_fixture.h), then two
# `creditgate serve` processes on ONE database hammer ONE member with concurrent charges —
# every idempotency key sent to both servers at once — and the member ends with exactly its
# credits spent, each key applied once, and `ledger verify` clean. Stops everything.
# Skips (exit 0) when PostgreSQL is not installed and CG_PG_REQUIRED is unset.
set -u
BUILD=${BUILD:-build}
BIN=$BUILD/creditgate
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  [ -n "${CG_PG_REQUIRED:-}" ] && { echo "FAIL: PostgreSQL not installed"; exit 1; }
  echo "skip: PostgreSQL not installed (apt-get install postgresql)"; exit 0
fi
# The tests prove behaviour, not durability (that is test_crash on SQLite): no fsync keeps
# CI quick. The bench (bench/ledger_pg.sh) runs with PostgreSQL's defaults.
read -r pgdir dsn < <(PG_OPTS="-c fsync=off" scripts/pg.sh start) || { echo "FAIL: cluster did not start"; exit 1; }
tmp=$(mktemp -d /tmp/cg-pg-test-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  scripts/pg.sh stop "$pgdir"
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
base=${dsn%/*}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
createdb() { "$pgbin/psql" -q -d "$dsn" -c "CREATE DATABASE $1" >/dev/null; }

# ---- 1. the shared ledger suite ----
n=0
for t in $(find "$BUILD/tests/ledger" -type f -perm -u+x -name 'test_*' | sort); do
  n=$((n + 1))
  db=ledger_$n
  createdb "$db" || { fail "createdb $db"; continue; }
  echo "-- $t on $base/$db"
  if ! CG_TEST_DB="$base/$db" "$t" >"$tmp/out" 2>&1; then
    cat "$tmp/out"; fail "$t against PostgreSQL"
  else
    grep -E "PASSED|FAILED" "$tmp/out" | tail -1
  fi
done
[ "$n" -gt 0 ] || fail "no ledger test binaries under $BUILD/tests/ledger"

# ---- 2. two servers, one database, one member ----
createdb two || fail "createdb two"
two="$base/two"
a=$("$BIN" serve keygen pg-admin admin) && s=$("$BIN" serve keygen pg-service service) ||
  { fail "keygen"; exit 1; }
ADMIN=$(sed -n 's/^key: //p' <<<"$a"); SVC=$(sed -n 's/^key: //p' <<<"$s")
{ sed -n 's/^keys-file line: //p' <<<"$a"; sed -n 's/^keys-file line: //p' <<<"$s"; } >"$tmp/keys"
head -c 32 /dev/urandom >"$tmp/token-secret"
urls=()
for i in 0 1; do
  "$BIN" serve --listen 127.0.0.1:0 --policy policy/carat.yaml --db "$two" --keys "$tmp/keys" \
    --token-secret "$tmp/token-secret" --access-log off >"$tmp/serve$i.out" 2>"$tmp/serve$i.log" &
  pids+=($!)
done
for i in 0 1; do
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$tmp/serve$i.out" 2>/dev/null | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$tmp/serve$i.log"; fail "server $i did not start"; exit 1; }
  urls+=("http://127.0.0.1:$port")
done
echo "-- two servers ${urls[*]} on $two"

call() { # URL METHOD PATH KEY BODY IDEMPOTENCY-KEY -> "HTTP_CODE BODY"
  curl -s -o - -w '\n%{http_code}' -X "$2" "$1$3" -H "Authorization: Bearer $4" \
    -H 'Content-Type: application/json' ${6:+-H "Idempotency-Key: $6"} -d "$5"
}
M=m-hammer
CREDITS=600   # midjourney costs 10: exactly 60 charges fit
out=$(call "${urls[0]}" PUT "/v1/members/$M" "$SVC" \
  '{"plan":"plus","billing":"monthly","joined":"2025-11-25","effective_at":"2025-11-25"}' put-1)
[[ ${out##*$'\n'} == 2* ]] || fail "member put: $out"
out=$(call "${urls[1]}" POST "/v1/members/$M/grants" "$ADMIN" "{\"credits\":$CREDITS,\"source\":\"purchase\"}" g-1)
[[ ${out##*$'\n'} == 2* ]] || fail "grant: $out"

# One charge key, sent to both servers at the same moment; 503 is retried with the same key.
charge_both() { # KEY -> lines "server code charge_id"
  local key=$1 i
  for i in 0 1; do
    (
      for _ in 1 2 3 4 5 6 7 8; do
        r=$(call "${urls[$i]}" POST /v1/charges "$SVC" "{\"member_id\":\"$M\",\"model\":\"midjourney\"}" "$key")
        code=${r##*$'\n'}
        [ "$code" = 503 ] || break
        sleep 0.05
      done
      id=$(sed -n 's/.*"charge_id":"\([^"]*\)".*/\1/p' <<<"$r" | head -1)
      echo "$i $code ${id:-none}"
    ) &
  done
  wait
}
WORKERS=6; PER_WORKER=15   # 90 keys for 60 charges' worth of credits
for w in $(seq $WORKERS); do
  ( for k in $(seq $PER_WORKER); do
      charge_both "w$w-k$k" | sed "s/^/w$w-k$k /"
    done ) >"$tmp/hammer$w" &
done
wait $(jobs -p | grep -v -e "${pids[0]}" -e "${pids[1]}") 2>/dev/null
cat "$tmp"/hammer* >"$tmp/results"
ok_keys=$(awk '$3 ~ /^2/ {print $1}' "$tmp/results" | sort -u | wc -l)
ids=$(awk '$3 ~ /^2/ {print $4}' "$tmp/results" | sort -u | wc -l)
split=$(awk '$3 ~ /^2/ {print $1, $4}' "$tmp/results" | sort -u | awk '{print $1}' | uniq -d | wc -l)
other=$(awk '$3 !~ /^2/ && $3 != 402 && $3 != 409 {print}' "$tmp/results" | head -3)
echo "-- hammer: $(wc -l <"$tmp/results") answers, $ok_keys keys charged, $ids distinct charges"
[ "$ok_keys" -eq $((CREDITS / 10)) ] || fail "expected $((CREDITS / 10)) charged keys, got $ok_keys"
[ "$ids" -eq "$ok_keys" ] || fail "a key made more than one charge ($ids charges for $ok_keys keys)"
[ "$split" -eq 0 ] || fail "$split keys got different charge ids from the two servers"
[ -z "$other" ] || fail "unexpected answers: $other"
# capture every charge, alternating servers
n=0
for id in $(awk '$3 ~ /^2/ {print $4}' "$tmp/results" | sort -u); do
  out=$(call "${urls[$((n % 2))]}" POST "/v1/charges/$id/capture" "$SVC" "{\"member_id\":\"$M\"}" "cap-$id")
  [[ ${out##*$'\n'} == 2* ]] || fail "capture $id: $out"
  n=$((n + 1))
done
bal=$(call "${urls[1]}" GET "/v1/members/$M/balance" "$SVC" "" "")
grep -q '"available":0[,}]' <<<"$bal" && grep -q '"held":0[,}]' <<<"$bal" ||
  fail "balance after spending everything: $bal"
if "$BIN" ledger verify --db "$two" >"$tmp/verify" 2>&1; then
  echo "-- ledger verify: $(head -1 "$tmp/verify")"
else
  cat "$tmp/verify"; fail "ledger verify on $two"
fi
[ "$failures" -eq 0 ] && echo "ok: ledger suite on PostgreSQL; two servers spent exactly $CREDITS credits"
[ "$failures" -eq 0 ]
