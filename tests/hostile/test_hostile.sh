#!/usr/bin/env bash
# test_hostile.sh — what an attacker would send to `creditgate serve`, each with the refusal it
# must get: oversized and deeply nested JSON, huge and negative numbers, NUL bytes and invalid
# UTF-8, SQL-ish ids, path traversal in the static routes, slowloris connections, a member
# token replayed after expiry, another member's id, forged credentials. A real server process
# on a free port over a temp folder; curl and bash's /dev/tcp only; 127.0.0.1 only.
# Prints one line per input and "hostile: N inputs tried, N refused as expected".
set -u
BUILD=${BUILD:-build}
B=$BUILD/creditgate
tmp=$(mktemp -d /tmp/cg-hostile-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

tried=0; bad=0
ok()   { tried=$((tried+1)); printf '  ok   %-58s %s\n' "$1" "$2"; }
fail() { tried=$((tried+1)); bad=$((bad+1)); printf '  FAIL %-58s %s\n' "$1" "$2"; }

# ---- a server: keys, policy, 2 s request timeout so slowloris is measurable ---------------
cp policy/carat.yaml "$tmp/policy.yaml"
admin_out=$("$B" serve keygen ops admin) && service_out=$("$B" serve keygen gen service) || exit 1
{ sed -n 's/^keys-file line: //p' <<<"$admin_out"; sed -n 's/^keys-file line: //p' <<<"$service_out"; } >"$tmp/keys"
ADMIN=$(sed -n 's/^key: //p' <<<"$admin_out"); SVC=$(sed -n 's/^key: //p' <<<"$service_out")
"$B" serve --listen 127.0.0.1:0 --policy "$tmp/policy.yaml" --db "$tmp/ledger.db" --keys "$tmp/keys" \
  --timeout-s 2 --access-log "$tmp/access.log" --connections-per-ip-max 64 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 300); do grep -q '"port":' "$tmp/out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$PORT" ] || { echo "server did not start"; cat "$tmp/err"; exit 1; }
U=http://127.0.0.1:$PORT
CT='Content-Type: application/json'

# req METHOD PATH AUTH BODY-FILE-OR-STRING [extra curl args...] -> sets $status and $body
req() {
  local method=$1 path=$2 auth=$3 data=$4; shift 4
  local args=(-s -m 10 -o "$tmp/body" -w '%{http_code}' -X "$method" "$U$path")
  [ -n "$auth" ] && args+=(-H "Authorization: Bearer $auth")
  if [ -n "$data" ]; then
    if [ -f "$data" ]; then args+=(-H "$CT" --data-binary "@$data"); else args+=(-H "$CT" --data-binary "$data"); fi
  fi
  status=$(curl "${args[@]}" "$@" 2>/dev/null); status=${status:-000}
  body=$(tr -d '\0' <"$tmp/body" 2>/dev/null | head -c 400)
}
# expect WHAT STATUS [CODE] — the last req must have answered STATUS with error code CODE
expect() {
  local what=$1 want=$2 code=${3:-}
  if [ "$status" != "$want" ]; then fail "$what" "want $want, got $status $body"; return; fi
  if [ -n "$code" ] && ! grep -q "\"code\":\"$code\"" <<<"$body"; then fail "$what" "want code $code: $body"; return; fi
  ok "$what" "$status${code:+ $code}"
}

# ---- setup: two members with credits, a charge of each -------------------------------------
req PUT /v1/members/alice "$SVC" '{"plan":"premium","billing":"monthly","joined":"2026-03-01"}'
req PUT /v1/members/bob "$SVC" '{"plan":"plus","billing":"monthly","joined":"2026-01-03"}'
req POST /v1/members/alice/grants "$ADMIN" '{"credits":1000,"source":"purchase"}'
req POST /v1/members/bob/grants "$ADMIN" '{"credits":1000,"source":"purchase"}'
req POST /v1/charges "$SVC" '{"member_id":"bob","model":"midjourney"}'
BOB_CHARGE=$(sed -n 's/.*"charge_id":"\([^"]*\)".*/\1/p' <<<"$body")
[ -n "$BOB_CHARGE" ] || { echo "setup failed: $status $body"; exit 1; }

echo "== size and shape"
head -c 70000 /dev/zero | tr '\0' ' ' | sed 's/^/{"model":"/; s/$/"}/' >"$tmp/big.json"
req POST /v1/quote "$SVC" "$tmp/big.json";                             expect "70 KB body (limit 64 KiB)" 413
{ head -c 30000 /dev/zero | tr '\0' '['; head -c 30000 /dev/zero | tr '\0' ']'; } >"$tmp/deep.json"
req POST /v1/quote "$SVC" "$tmp/deep.json";                            expect "JSON nested 30,000 deep" 400 too_deep
req POST /v1/quote "$SVC" '{"member":{"plan":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}'; expect "JSON nested 9 deep (limit 8)" 400 too_deep
req POST /v1/quote "$SVC" '[1,2,3]';                                   expect "a JSON array instead of an object" 400 invalid
req POST /v1/quote "$SVC" '{"model":"sora","model":"midjourney"}';      expect "duplicate JSON key" 400
req POST /v1/quote "$SVC" '{"model":"sora","is_admin":true}';           expect "unknown field" 400 unknown_field
req POST /v1/quote "$SVC" '{"model":"sora"' ;                           expect "truncated JSON" 400 malformed_json
status=$(curl -s -m 10 -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer $SVC" --data 'model=sora' "$U/v1/quote"); body=$(cat "$tmp/body")
expect "form body instead of JSON" 415 unsupported_media_type
head -c 20000 /dev/zero | tr '\0' 'a' >"$tmp/hdr"
req GET /healthz "" "" -H "X-Junk: $(cat "$tmp/hdr")";                 expect "20 KB header (limit 16 KiB)" 431
req GET "/v1/members/$(head -c 20000 /dev/zero | tr '\0' 'a')" "$SVC" ""; 
if [ "$status" = 414 ] || [ "$status" = 431 ]; then ok "20 KB URL" "$status"; else fail "20 KB URL" "want 414/431, got $status"; fi

echo "== numbers"
m='"member":{"plan":"plus","billing":"monthly","joined":"2026-01-03"}'
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":1e999999}";  expect "count 1e999999" 400
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":99999999999999999999999}"; expect "count 10^23 (beyond int64)" 400 out_of_range
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":-1}";         expect "count -1" 400 out_of_range
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":0}";          expect "count 0" 400 out_of_range
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":1.5}";        expect "count 1.5" 400 invalid
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora\",\"count\":\"1\"}";      expect "count as a string" 400 invalid
req POST /v1/members/alice/grants "$ADMIN" '{"credits":-1000,"source":"purchase"}'; expect "grant of -1000 credits" 400 out_of_range
req POST /v1/members/alice/grants "$ADMIN" '{"credits":0,"source":"purchase"}';     expect "grant of 0 credits" 400 out_of_range
req POST /v1/members/alice/grants "$ADMIN" '{"credits":9223372036854775807,"source":"purchase"}'; expect "grant of INT64_MAX credits" 400 out_of_range
req POST /v1/members/alice/grants "$ADMIN" '{"credits":-9223372036854775808,"source":"purchase"}'; expect "grant of INT64_MIN credits" 400 out_of_range
req POST "/v1/charges/$BOB_CHARGE/capture" "$SVC" '{"member_id":"bob","credits":-5}';        expect "capture -5 credits" 400 out_of_range
req POST "/v1/charges/$BOB_CHARGE/capture" "$SVC" '{"member_id":"bob","credits":1000000}';   expect "capture more than held" 400
req GET "/v1/members/alice/history?limit=-1" "$SVC" "";                expect "history limit -1" 400 out_of_range
req GET "/v1/members/alice/history?limit=99999999999999999999" "$SVC" ""; expect "history limit 10^20" 400 out_of_range
req GET "/v1/members/alice/history?after=-5" "$SVC" "";                expect "history after -5" 400 invalid

echo "== bytes"
printf '{"model":"mid\\u0000journey",%s}' "$m" >"$tmp/nul-escape.json"
req POST /v1/quote "$SVC" "$tmp/nul-escape.json";                      expect "NUL as \\u0000 in a string" 400
printf '{"model":"mid\0journey",%s}' "$m" >"$tmp/nul-raw.json"
req POST /v1/quote "$SVC" "$tmp/nul-raw.json";                         expect "raw NUL byte in the body" 400 malformed_json
printf '{"model":"mid\xff\xfejourney",%s}' "$m" >"$tmp/utf8.json"
req POST /v1/quote "$SVC" "$tmp/utf8.json";                            expect "invalid UTF-8 (ff fe)" 400 malformed_json
printf '{"model":"\xc0\xafetc",%s}' "$m" >"$tmp/overlong.json"
req POST /v1/quote "$SVC" "$tmp/overlong.json";                        expect "overlong UTF-8 for '/'" 400 malformed_json
printf '{"model":"\\ud800",%s}' "$m" >"$tmp/surrogate.json"
req POST /v1/quote "$SVC" "$tmp/surrogate.json";                       expect "lone UTF-16 surrogate" 400 malformed_json

echo "== injection in ids"
req PUT "/v1/members/x'%20OR%20'1'='1" "$SVC" '{"plan":"plus","billing":"monthly","joined":"2026-01-03"}'
if [ "$status" = 400 ] || [ "$status" = 404 ]; then ok "SQL-ish member id in the path" "$status"; else fail "SQL-ish member id in the path" "got $status $body"; fi
req POST /v1/charges "$SVC" "{\"member_id\":\"bob'; DROP TABLE grants; --\",\"model\":\"sora\"}"; expect "SQL-ish member_id in a charge" 400 invalid
req POST /v1/quote "$SVC" "{$m,\"model\":\"sora' OR 1=1 --\"}";         expect "SQL-ish model name" 400
req POST "/v1/charges/ch_x'%20OR%201=1--/capture" "$SVC" '{"member_id":"bob"}'
if [ "$status" = 400 ] || [ "$status" = 404 ]; then ok "SQL-ish charge id in the path" "$status"; else fail "SQL-ish charge id in the path" "got $status $body"; fi
req POST /v1/charges "$SVC" '{"member_id":"bob","model":"midjourney"}' -H $'Idempotency-Key: a\x01b'; expect "control character in Idempotency-Key" 400 invalid
req POST /v1/charges "$SVC" '{"member_id":"bob","model":"midjourney"}' -H "Idempotency-Key: $(head -c 200 /dev/zero | tr '\0' k)"; expect "200-byte Idempotency-Key" 400 invalid
req GET /v1/members/bob/balance "$SVC" ""
grep -q '"available"' <<<"$body" && ok "the ledger still answers after the injections" "$status" || fail "ledger after injections" "$status $body"

echo "== static files"
for p in '/web/..%2f..%2fetc%2fpasswd' '/web/../../etc/passwd' '/web/%2e%2e/%2e%2e/etc/passwd' '/web/..%252f..%252fetc/passwd' \
         '/web/....//....//etc/passwd' '/web/%00index.html' '/web/.%2e/src/http/server.c' '/web//etc/passwd' \
         '/web/..\..\etc\passwd' '/web/README.md/..' '/web/.git/config'; do
  status=$(curl -s -m 10 --path-as-is -o "$tmp/body" -w '%{http_code}' "$U$p"); status=${status:-000}
  if grep -q 'root:\|#include\|\[core\]' "$tmp/body"; then fail "traversal $p" "served a file outside web/ ($status)"
  elif [ "$status" = 404 ] || [ "$status" = 400 ]; then ok "traversal $p" "$status"
  else fail "traversal $p" "want 404/400, got $status"; fi
done

# a NUL in the name cuts it in C: must not reach anything but the named file in web/
status=$(curl -s -m 10 -D "$tmp/hdrs" -o "$tmp/body" -w '%{http_code}' "$U/web/common.js%00.html"); status=${status:-000}
if [ "$status" = 404 ] || [ "$status" = 400 ]; then ok "NUL in a static name: /web/common.js%00.html" "$status"
else fail "NUL in a static name: /web/common.js%00.html" "want 404/400, got $status"; fi

echo "== credentials"
req GET /v1/members/alice/balance "" "";                               expect "no Authorization" 401 unauthorized
req GET /v1/members/alice/balance "cgk_$(head -c 32 /dev/zero | tr '\0' 0)" ""; expect "a made-up service key" 401 unauthorized
# (a key that already ends in x — one in 64 — must get another letter, or it is the key itself)
last=x; [ "${SVC: -1}" = x ] && last=y
req GET /v1/members/alice/balance "${SVC%?}$last" "";                  expect "the service key with its last character changed" 401 unauthorized
req POST /v1/members/alice/grants "$SVC" '{"credits":1000,"source":"purchase"}'; expect "service key on an admin route (grant)" 403 forbidden
req POST "/v1/charges/$BOB_CHARGE/refund" "$SVC" '{"member_id":"bob","reason":"x"}'; expect "service key on an admin route (refund)" 403 forbidden
req POST /v1/members/alice/tokens "$SVC" '{"ttl_s":10}'
TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$body")
[ -n "$TOKEN" ] || { fail "mint a member token" "$status $body"; TOKEN=none; }
minted=$(date +%s)
req GET /v1/members/alice/balance "$TOKEN" "";                         expect "alice's token on alice (control)" 200
req GET /v1/members/bob/balance "$TOKEN" "";                           expect "alice's token on bob's balance" 403 forbidden
req GET "/v1/charges/$BOB_CHARGE?member_id=bob" "$TOKEN" "";           expect "alice's token on bob's charge" 403 forbidden
req GET "/v1/charges/$BOB_CHARGE?member_id=alice" "$TOKEN" "";         expect "bob's charge id under alice's member_id" 404 not_found
req POST "/v1/charges/$BOB_CHARGE/capture" "$SVC" '{"member_id":"alice"}'; expect "capture bob's charge as alice" 404 not_found
req POST /v1/charges "$TOKEN" '{"member_id":"alice","model":"midjourney"}'; expect "member token charging itself" 403 forbidden
req POST /v1/members/alice/grants "$TOKEN" '{"credits":1000,"source":"purchase"}'; expect "member token granting itself credits" 403 forbidden
req PUT /v1/members/alice "$TOKEN" '{"plan":"max","billing":"annual","joined":"2026-05-22"}'; expect "member token upgrading its plan" 403 forbidden
req POST /v1/members/alice/tokens "$TOKEN" '{"ttl_s":86400}';           expect "member token minting a token" 403 forbidden
payload=${TOKEN#cgm1.}; payload=${payload%%.*}; mac=${TOKEN##*.}
forged="cgm1.$(printf '%s' "$payload" | tr 'A-Za-z' 'B-ZAb-za').$mac"
req GET /v1/members/alice/balance "$forged" "";                        expect "token with a changed payload" 401 unauthorized
req GET /v1/members/alice/balance "cgm1.$payload." "";                 expect "token with no MAC" 401 unauthorized

echo "== slowloris (request timeout 2 s)"
# idle_one N: half a request line, then silence; how many seconds until the server hangs up
idle_one() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 2
  local start=$SECONDS
  printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&3
  timeout 20 cat <&3 >/dev/null 2>&1
  echo $((SECONDS-start)) >"$tmp/idle.$1"
}
# dribble_one N: one header byte every 0.5 s for up to 12 s; seconds until the server hung up
# (13: it never did)
dribble_one() {
  trap '' PIPE # a write to the cut socket must fail (EPIPE), not kill this subshell unrecorded
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 2
  local start=$SECONDS
  printf 'GET /healthz HTTP/1.1\r\nX-Slow: ' >&3
  for _ in $(seq 24); do
    sleep 0.5
    printf 'a' >&3 2>/dev/null || { echo $((SECONDS-start)) >"$tmp/dribble.$1"; return 0; }
  done
  echo 13 >"$tmp/dribble.$1"
}
slow_pids=()
for i in $(seq 30); do idle_one "$i" & slow_pids+=($!); done
for i in $(seq 10); do dribble_one "$i" & slow_pids+=($!); done
sleep 1
req GET /healthz "" "";                                                expect "a normal request while 40 slowloris connections are open" 200
wait "${slow_pids[@]}"
idle_cut=0; for i in $(seq 30); do [ "$(cat "$tmp/idle.$i" 2>/dev/null || echo 99)" -le 5 ] && idle_cut=$((idle_cut+1)); done
if [ "$idle_cut" = 30 ]; then ok "30 stalled half-requests cut within 5 s" "$idle_cut/30"; else fail "stalled half-requests cut within 5 s" "$idle_cut/30"; fi
dribble_cut=0; for i in $(seq 10); do [ "$(cat "$tmp/dribble.$i" 2>/dev/null || echo 99)" -le 6 ] && dribble_cut=$((dribble_cut+1)); done
# libmicrohttpd's own timeout is an idle timeout (every byte resets it); the server adds a total
# deadline: a request must arrive whole within timeout_s of the connection's start or of its
# previous answer (src/http/conn.c; docs/RELIABILITY.md Finding 3, fixed).
dribble_s=$(for i in $(seq 10); do cat "$tmp/dribble.$i" 2>/dev/null || echo 99; done | sort -n | tr '\n' ' ')
if [ "$dribble_cut" = 10 ]; then ok "10 dribbling requests (1 byte / 0.5 s) cut within 6 s" "$dribble_cut/10 (s: $dribble_s)"
else fail "dribbling requests cut within 6 s" "$dribble_cut/10 (s: $dribble_s)"; fi
grep -q '^{' "$tmp/out" && kill -0 "$pid" 2>/dev/null && ok "the server is still up" "pid $pid" || fail "server up" "it died"

echo "== token replay after expiry"
while [ $(( $(date +%s) - minted )) -le 11 ]; do sleep 0.5; done
req GET /v1/members/alice/balance "$TOKEN" "";                         expect "alice's token 12 s after minting with ttl_s 10" 401 unauthorized

echo "== the access log holds no secret"
if grep -qF -e "$SVC" -e "$ADMIN" -e "$TOKEN" "$tmp/access.log"; then fail "access log" "a key or token was logged"; else ok "no key or token in the access log" "$(wc -l <"$tmp/access.log") lines"; fi

kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ "$rc" = 0 ] && ok "SIGTERM after the tour: clean exit" 0 || fail "SIGTERM exit" "$rc"
"$B" ledger verify --db "$tmp/ledger.db" >"$tmp/verify" 2>&1 && ok "ledger verify after the tour" clean || fail "ledger verify" "$(cat "$tmp/verify")"
echo "hostile: $tried inputs tried, $((tried-bad)) refused as expected, $bad not"
[ "$bad" -eq 0 ]
