#!/usr/bin/env bash
# soak.sh — holds a real `creditgate serve` at a steady load for SOAK_SECONDS (default 600):
# wrk (Debian) on POST /v1/quote plus a charging client (charge → capture, with idempotency
# keys), and samples every SOAK_INTERVAL_S (10) seconds the server's RSS and open file
# descriptors (/proc) and the p99 latency of the interval (from the server's own Prometheus
# histogram, /metrics). Fails when RSS or fds are not flat: end RSS more than 20% + 8 MiB over
# the first sample (taken after a warm-up interval; SOAK_RSS_SLACK_KB), or more than 8 fds over it; or when the
# server dies, or the ledger does not verify afterwards. `make soak`; `make soak SOAK_SECONDS=60`.
# The ledger's caches grow with the database until their bounds (SQLite's page cache 64 MiB per
# shard, the member cache): the server reports them on /metrics, and the flatness check is on
# RSS less those caches ("rest"), each cache checked against its own bound.
set -u
BUILD=${BUILD:-build}
B=$BUILD/creditgate
SECONDS_TOTAL=${SOAK_SECONDS:-600}
INTERVAL=${SOAK_INTERVAL_S:-10}
command -v wrk >/dev/null || { echo "soak: wrk is missing (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d /tmp/cg-soak-XXXXXX)
pid=; wrk_pid=; charger_pid=
cleanup() {
  for p in $wrk_pid $charger_pid; do kill "$p" 2>/dev/null; done
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

cp policy/carat.yaml "$tmp/policy.yaml"
admin_out=$("$B" serve keygen ops admin) && service_out=$("$B" serve keygen gen service) || exit 1
{ sed -n 's/^keys-file line: //p' <<<"$admin_out"; sed -n 's/^keys-file line: //p' <<<"$service_out"; } >"$tmp/keys"
ADMIN=$(sed -n 's/^key: //p' <<<"$admin_out"); SVC=$(sed -n 's/^key: //p' <<<"$service_out")
"$B" serve --listen 127.0.0.1:0 --policy "$tmp/policy.yaml" --db "$tmp/ledger.db" --keys "$tmp/keys" \
  --threads 8 --access-log off >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 300); do grep -q '"port":' "$tmp/out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$PORT" ] || { echo "soak: server did not start"; cat "$tmp/err"; exit 1; }
U=http://127.0.0.1:$PORT
CT='Content-Type: application/json'
curl -s -o /dev/null -X PUT "$U/v1/members/soak" -H "Authorization: Bearer $SVC" -H "$CT" \
  -d '{"plan":"plus","billing":"monthly","joined":"2026-01-03"}'
curl -s -o /dev/null -X POST "$U/v1/members/soak/grants" -H "Authorization: Bearer $ADMIN" -H "$CT" \
  -d '{"credits":1000000000,"source":"purchase"}'

cat >"$tmp/quote.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $SVC"
wrk.body = '{"member":{"plan":"plus","billing":"monthly","joined":"2025-11-25"},"model":"Nanobanana Pro","variant":"2k"}'
EOF
wrk -t1 -c8 --latency -d"$((SECONDS_TOTAL + 1))s" -s "$tmp/quote.lua" "$U/v1/quote" >"$tmp/wrk.out" 2>&1 &
wrk_pid=$!
charger() { # one charge and its capture at a time, each with its own key
  local i=0
  while :; do
    i=$((i+1))
    id=$(curl -s -m 10 -X POST "$U/v1/charges" -H "Authorization: Bearer $SVC" -H "$CT" -H "Idempotency-Key: soak-$i" \
         -d '{"member_id":"soak","model":"midjourney"}' | sed -n 's/.*"charge_id":"\([^"]*\)".*/\1/p')
    [ -n "$id" ] && curl -s -m 10 -o /dev/null -X POST "$U/v1/charges/$id/capture" -H "Authorization: Bearer $SVC" \
         -H "$CT" -H "Idempotency-Key: soak-cap-$i" -d '{"member_id":"soak"}' && echo ok >>"$tmp/charged"
  done
}
charger & charger_pid=$!

# p99 of the requests between two /metrics scrapes, from the cumulative histogram buckets
scrape() { curl -s -m 10 "$U/metrics" | tee "$tmp/metrics" | grep '^creditgate_http_request_duration_seconds_bucket' |
  sed 's/.*le="\([^"]*\)"} \([0-9]*\).*/\1 \2/' | awk '{n[$1]+=$2} END {for (le in n) print le, n[le]}' | sort -g; }
p99_between() { # file-before file-after → seconds (upper bound of the bucket)
  join "$1" "$2" | awk '{d[NR]=$3-$2; le[NR]=$1} END {tot=d[NR]; if (tot<=0) {print "-"; exit}
    for (i=1;i<=NR;i++) if (d[i] >= 0.99*tot) {print le[i]; exit}}'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null; }
# the ledger's bounded caches, in kB, from the last /metrics scrape
caches_kb() { awk '/^creditgate_ledger_(page|member)_cache_bytes / {b += $2} END {printf "%d", b/1024}' "$tmp/metrics"; }
fds() { ls "/proc/$pid/fd" 2>/dev/null | wc -l; }

printf '%6s %9s %9s %9s %5s %9s %9s\n' t_s rss_kb caches_kb rest_kb fds p99_ms charges
scrape >"$tmp/m0"
samples=0; first_rss=; first_fds=; first_p99=; first_rest=
for t in $(seq "$INTERVAL" "$INTERVAL" "$SECONDS_TOTAL"); do
  sleep "$INTERVAL"
  kill -0 "$pid" 2>/dev/null || { echo "soak: the server died"; cat "$tmp/err" | tail; exit 1; }
  scrape >"$tmp/m1"
  p99=$(p99_between "$tmp/m0" "$tmp/m1"); mv "$tmp/m1" "$tmp/m0"
  p99_ms=$(awk -v s="$p99" 'BEGIN {if (s=="-" || s=="+Inf") print s; else printf "%.2f", s*1000}')
  rss=$(rss_kb); n=$(fds); charged=$(wc -l <"$tmp/charged" 2>/dev/null || echo 0)
  caches=$(caches_kb); rest=$((rss - caches))
  printf '%6s %9s %9s %9s %5s %9s %9s\n' "$t" "$rss" "$caches" "$rest" "$n" "$p99_ms" "$charged"
  samples=$((samples+1))
  [ "$samples" = 1 ] && { first_rss=$rss; first_fds=$n; first_p99=$p99_ms; first_rest=$rest; first_caches=$caches; }
  last_rss=$rss; last_fds=$n; last_p99=$p99_ms; last_rest=$rest; last_caches=$caches
done
kill "$charger_pid" 2>/dev/null; wait "$wrk_pid" "$charger_pid" 2>/dev/null; wrk_pid=; charger_pid=
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
verify=$("$B" ledger verify --db "$tmp/ledger.db" 2>&1); vrc=$?
echo "soak: ${SECONDS_TOTAL}s, RSS ${first_rss} → ${last_rss} kB (ledger caches ${first_caches} → ${last_caches} kB, the rest ${first_rest} → ${last_rest} kB), fds ${first_fds} → ${last_fds}, p99 ${first_p99} → ${last_p99} ms, $(wc -l <"$tmp/charged" 2>/dev/null || echo 0) charges captured; SIGTERM exit $rc; verify: $verify"
grep -E 'Requests/sec|Latency  | 99%' "$tmp/wrk.out" | sed 's/^/wrk: /'
status=0
[ "$rc" = 0 ] || { echo "soak: server did not exit cleanly"; status=1; }
[ "$vrc" = 0 ] || { echo "soak: ledger verify failed"; status=1; }
[ "$samples" -ge 2 ] || { echo "soak: fewer than 2 samples"; status=1; }
if [ "$samples" -ge 2 ]; then
  [ "$last_rest" -le $((first_rest * 12 / 10 + ${SOAK_RSS_SLACK_KB:-8192})) ] || { echo "soak: RSS less the ledger's caches grew ${first_rest} → ${last_rest} kB"; status=1; }
  shards=$(awk '/^creditgate_ledger_shards / {print $2}' "$tmp/metrics")
  [ "$last_caches" -le $(( ${shards:-1} * 65536 + 131072 * 576 / 1024 )) ] || { echo "soak: ledger caches ${last_caches} kB above their bounds"; status=1; }
  [ "$last_fds" -le $((first_fds + 8)) ] || { echo "soak: fds grew ${first_fds} → ${last_fds}"; status=1; }
fi
exit $status
