#!/usr/bin/env bash
# ledger_peers.sh — the ledgers a team would reach for instead of creditgate's, each durable
# and on loopback, charged by 1 and by 64 concurrent callers on random members:
#   Redis (Debian's redis-server; appendonly yes, appendfsync always) running redis/charge.lua
#     (check, decrement, journal append) via redis-benchmark;
#   PostgreSQL (Debian's server; default fsync and synchronous_commit) running the naive
#     one-transaction-per-charge postgres/charge.sql via pgbench.
# Each server starts on a free port in a temporary folder under WORK (on the same disk as
# creditgate's ledger, so fsync costs the same) and is stopped afterwards. Whatever is not
# installed is skipped with a note. Prints "result peer=... callers=N charges_per_s=... p99_ms=..."
#
#   bench/peers/ledger_peers.sh WORK [SECONDS] [MEMBERS]
set -uo pipefail
WORK=$(mkdir -p "$1" && cd "$1" && pwd) || exit 1
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
SECONDS_PER_RUN=${2:-5}
MEMBERS=${3:-100000}
CALLERS=(1 64)
CREDITS=10

free_port() { # asks the kernel for a free loopback port
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' 2>/dev/null ||
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# ---- Redis ----
redis_pid=
redis_stop() {
  [ -n "$redis_pid" ] || return 0
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null
  wait "$redis_pid" 2>/dev/null
  redis_pid=
}

# redis-benchmark counts requests, not seconds: a short probe sizes the real run.
redis_run() { # callers → CSV line of redis-benchmark
  local c=$1 sha=$2 n=$((c * 200)) rps line
  line=$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$c" -n "$n" -r "$MEMBERS" --csv \
           EVALSHA "$sha" 2 "bal:__rand_int__" journal "$CREDITS" | tail -1)
  rps=$(echo "$line" | awk -F'","' '{print int($2)}')
  n=$(( rps * SECONDS_PER_RUN )); [ "$n" -lt $((c * 50)) ] && n=$((c * 50))
  redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$c" -n "$n" -r "$MEMBERS" --csv \
    EVALSHA "$sha" 2 "bal:__rand_int__" journal "$CREDITS" | tail -1
}

bench_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "note: Redis skipped — apt-get install redis-server"; return 0
  fi
  local dir="$WORK/redis" sha version line
  rm -rf "$dir"; mkdir -p "$dir"
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir" --appendonly yes \
    --appendfsync always --save '' --daemonize no --logfile "$dir/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
  # Members bal:000000000000 … as redis-benchmark's __rand_int__ spells them.
  redis-cli -p "$redis_port" eval "for i = 0, tonumber(ARGV[1]) - 1 do
      redis.call('SET', string.format('bal:%012d', i), ARGV[2]) end return 1" 0 "$MEMBERS" 1000000000 >/dev/null
  sha=$(redis-cli -p "$redis_port" script load "$(cat "$HERE/redis/charge.lua")")
  [ "$(redis-cli -p "$redis_port" config get appendfsync | tail -1)" = always ] || { echo "redis: appendfsync is not always" >&2; redis_stop; return 1; }
  for c in "${CALLERS[@]}"; do
    line=$(redis_run "$c" "$sha")
    echo "$line" | awk -F'","' -v c="$c" -v v="$version" '{ gsub(/"/, "", $8);
      printf "result peer=redis callers=%d charges_per_s=%.0f p99_ms=%.3f label=\"Redis %s (appendfsync always, Lua)\"\n", c, $2, $7, v }'
  done
  echo "note: redis journal entries $(redis-cli -p "$redis_port" xlen journal), aof $(du -sh "$dir" | cut -f1)"
  redis_stop
  rm -rf "$dir/appendonlydir" # the data; redis.log stays
}

# ---- PostgreSQL ----
pg_bin=
pg_dir=
as_pg() { # PostgreSQL refuses to run as root: use its own user then
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_stop() {
  [ -n "$pg_dir" ] || return 0
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1
  pg_dir=
}

pg_p99_ms() { # pgbench per-transaction logs: column 3 is the latency in microseconds
  cat "$1".* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", v[i]/1000}'
}

bench_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ] || ! command -v pgbench >/dev/null; then
    echo "note: PostgreSQL skipped — apt-get install postgresql"; return 0
  fi
  local dir="$WORK/postgres" port version out tps
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  port=$(free_port)
  as_pg "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust >"$dir/initdb.log" 2>&1 || { echo "postgres: initdb failed, see $dir/initdb.log" >&2; return 1; }
  pg_dir=$dir
  as_pg "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null ||
    { echo "postgres: start failed, see $dir/server.log" >&2; pg_dir=; return 1; }
  version=$("$pg_bin/postgres" --version | awk '{print $3}')
  local psql=(psql -q -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -v members="$MEMBERS")
  "${psql[@]}" -f "$HERE/postgres/schema.sql" postgres >/dev/null || { pg_stop; return 1; }
  for c in "${CALLERS[@]}"; do
    local jobs=$(( c < 2 ? 1 : 2 ))
    rm -f "$dir"/pgbench_log.*
    out=$(cd "$dir" && pgbench -n -h 127.0.0.1 -p "$port" -U postgres -c "$c" -j "$jobs" -T "$SECONDS_PER_RUN" \
            -D members="$MEMBERS" -f "$HERE/postgres/charge.sql" -l --log-prefix=pgbench_log postgres 2>&1)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    [ -n "$tps" ] || { echo "postgres: pgbench failed: $out" >&2; pg_stop; return 1; }
    printf 'result peer=postgres callers=%d charges_per_s=%.0f p99_ms=%s label="PostgreSQL %s (naive, 1 tx per charge)"\n' \
      "$c" "$tps" "$(pg_p99_ms "$dir/pgbench_log")" "$version"
  done
  pg_stop
  rm -rf "$dir/data" "$dir"/pgbench_log.* # server.log stays
}

trap 'redis_stop; pg_stop' EXIT
bench_redis
bench_postgres
