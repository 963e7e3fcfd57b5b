#!/usr/bin/env bash
# pg.sh — a throwaway PostgreSQL cluster for tests and benches, from Debian's packages.
#   scripts/pg.sh start        initdb in a new temp dir, start on 127.0.0.1 on a free port,
#                              createdb creditgate; prints "DIR DSN" on one line
#   scripts/pg.sh stop DIR     stops that cluster and removes DIR
#   scripts/pg.sh halt DIR     stops it at once (pg_ctl -m immediate: a crash), keeping DIR
#   scripts/pg.sh resume DIR   starts a halted cluster again, same port and settings
#   scripts/pg.sh pids DIR     the postmaster's pid and its children's (to SIGSTOP a "hung" server)
# As root the server runs as the `postgres` user (initdb refuses root). Extra server settings:
# PG_OPTS="-c fsync=off ..." (the bench keeps the defaults: fsync on, synchronous_commit on).
set -euo pipefail

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || { echo "pg.sh: PostgreSQL not installed (apt-get install postgresql)" >&2; exit 1; }
  echo "$d"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "pg.sh: no free port" >&2; exit 1
}

start() {
  local bin dir port
  bin=$(bindir)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/cg-pg.XXXXXX")
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  # A port taken between the probe and the start makes pg_ctl fail: try a few.
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    echo "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 ${PG_OPTS:-}" >"$dir/opts"
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/opts")" \
        start >/dev/null 2>&1; then
      as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres creditgate
      echo "$port" >"$dir/port"
      echo "$dir postgres://postgres@127.0.0.1:$port/creditgate"
      return
    fi
  done
  cat "$dir/server.log" >&2
  exit 1
}

stop() {
  local dir=$1
  [ -d "$dir/data" ] || { echo "pg.sh: no cluster in $dir" >&2; exit 1; }
  as_pg "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

halt() {
  local dir=$1
  [ -d "$dir/data" ] || { echo "pg.sh: no cluster in $dir" >&2; exit 1; }
  as_pg "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
}

resume() {
  local dir=$1
  [ -f "$dir/opts" ] || { echo "pg.sh: no cluster in $dir" >&2; exit 1; }
  as_pg "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/opts")" \
    start >/dev/null
}

pids() {
  local dir=$1 pm
  pm=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || { echo "pg.sh: $dir is not running" >&2; exit 1; }
  echo "$pm" $(cat "/proc/$pm/task/$pm/children" 2>/dev/null)
}

case "${1:-}" in
  start) start ;;
  stop|halt|resume|pids)
    [ $# -eq 2 ] || { echo "usage: pg.sh $1 DIR" >&2; exit 2; }; "$1" "$2" ;;
  *) echo "usage: pg.sh start | pg.sh stop|halt|resume|pids DIR" >&2; exit 2 ;;
esac
