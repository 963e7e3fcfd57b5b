#!/usr/bin/env bash
# http_quote.sh — creditgate's HTTP quote endpoint on the peers' mix: starts `creditgate serve`
# on a free loopback port (fresh keys and SQLite file in WORK), checks that its answers over
# HTTP match the mix's on a sample, then drives POST /v1/quote with wrk (64 connections, 2
# threads, cycling through the first 1,000 requests of the mix) and stops the server.
# Prints "result peer=creditgate-http decisions_per_s=... p99_ms=..."; skips without wrk.
#
#   bench/peers/http_quote.sh BUILD MIX WORK [SECONDS]
set -uo pipefail
BUILD=$1 MIX=$2 WORK=$3 SECONDS_PER_RUN=${4:-5}
BODIES=1000
SAMPLE=200 # requests whose HTTP answer is compared with the mix
CONNECTIONS=64
command -v wrk >/dev/null || { echo "note: HTTP quote skipped — apt-get install wrk"; exit 0; }
command -v curl >/dev/null || { echo "note: HTTP quote skipped — apt-get install curl"; exit 0; }
rm -rf "$WORK"; mkdir -p "$WORK"
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' 2>/dev/null || echo $((20000 + RANDOM % 20000)))

keygen=$("$BUILD/creditgate" serve keygen bench service) || exit 1
key=$(sed -n 's/^key: //p' <<<"$keygen")
sed -n 's/^keys-file line: //p' <<<"$keygen" >"$WORK/keys"
"$BUILD/creditgate" serve --listen "127.0.0.1:$port" --policy policy/carat.yaml --db "$WORK/ledger.db" \
  --keys "$WORK/keys" --access-log off >"$WORK/serve.out" 2>"$WORK/serve.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "http: server did not start; see $WORK/serve.log" >&2; exit 1; }

# One quote body per mix line (the mix is written by bench/peers with a fixed field order).
head -n "$BODIES" "$MIX" | sed -E 's/^\{"i":[0-9]+,"plan":("[^"]*"),"billing":("[^"]*"),"joined":("[^"]*"),"at":("[^"]*"),"model":("[^"]*"),"variant":(null|"[^"]*"),"count":([0-9]+),"unlimited":(true|false).*$/{"member":{"plan":\1,"billing":\2,"joined":\3},"at":\4,"model":\5,"variant":\6,"count":\7}\t\8/' >"$WORK/bodies.tsv"
[ "$(grep -c $'\t' "$WORK/bodies.tsv")" -eq "$BODIES" ] || { echo "http: could not read the mix" >&2; exit 1; }

# Agreement over HTTP on a sample: the server's "unlimited" must be the mix's.
bad=0
while IFS=$'\t' read -r body want; do
  got=$(curl -s "http://127.0.0.1:$port/v1/quote" -H "Authorization: Bearer $key" \
          -H 'Content-Type: application/json' -d "$body" | grep -o '"unlimited": *[a-z]*' | head -1 | sed 's/.*: *//')
  [ "$got" = "$want" ] || { bad=$((bad + 1)); echo "DISAGREEMENT http request $body: mix $want, server ${got:-no answer}"; }
done < <(head -n "$SAMPLE" "$WORK/bodies.tsv")

{
  echo "-- wrk script: POST /v1/quote cycling through $BODIES requests of the peers' mix"
  echo "local bodies = {"
  cut -f1 "$WORK/bodies.tsv" | sed 's/^/  [[/; s/$/]],/'
  echo "}"
  echo "local i = 0"
  echo "wrk.method = \"POST\""
  echo "wrk.headers[\"Content-Type\"] = \"application/json\""
  echo "wrk.headers[\"Authorization\"] = \"Bearer $key\""
  echo "request = function() i = i % #bodies + 1; return wrk.format(nil, \"/v1/quote\", nil, bodies[i]) end"
} >"$WORK/quote.lua"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/quote.lua" "http://127.0.0.1:$port" >"$WORK/wrk.txt" 2>&1
rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.txt")
p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f", v }' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
[ -n "$rps" ] || { echo "http: wrk failed:"; cat "$WORK/wrk.txt"; exit 1; } >&2
[ -z "$non2xx" ] || { echo "http: $non2xx non-2xx answers under wrk" >&2; exit 1; }
printf 'result peer=creditgate-http decisions_per_s=%.0f p99_ms=%s requests=%d disagreements=%d connections=%d label="creditgate serve, POST /v1/quote, wrk %d connections"\n' \
  "$rps" "$p99" "$SAMPLE" "$bad" "$CONNECTIONS" "$CONNECTIONS"
[ "$bad" -eq 0 ]
