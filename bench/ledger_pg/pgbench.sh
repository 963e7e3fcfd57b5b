#!/usr/bin/env bash
# pgbench.sh DSN SECONDS MEMBERS [GROUP_PAIRS_PER_S] — naive baselines with pgbench (PostgreSQL's own load driver),
# one transaction per call on 64 parallel connections, no creditgate in the loop: a charge
# (hold 10 credits: lock or read the member's grant, check, update, insert charge, journal
# entry and idempotency key) and its capture, as two transactions per script run, so
# "pairs/s" compares with bench/ledger_pg. Two ways to stay correct under concurrency:
#   for_update:   READ COMMITTED, SELECT ... FOR UPDATE on the member's rows first
#   serializable: SERIALIZABLE, no explicit locks, pgbench retries serialization failures
# each on random members (MEMBERS of them) and on one hot member. Tables in schema pgb.
# pgbench retries a whole script run with the same variables: the inserts are idempotent
# (ON CONFLICT DO NOTHING), as an idempotency key makes them.
#
# Then two floors: PostgreSQL doing nothing but the row writes of a pair (a grant update, a
# charge, a journal entry and an idempotency key for the charge; the same for its capture),
# with no reads, no checks, no locks and no client work — so no correct ledger on these tables
# can go faster. Each batch of pairs is two transactions (charges, then captures):
#   pipelined: one member per statement (the sharding rule of issue 6 and docs/scaling.md),
#              64 pairs per transaction, every statement sent without waiting (pipeline mode)
#   set-based: one statement per table per batch of 64 pairs, so a statement touches many
#              members — what the sharding rule forbids
# The ratios to the naive for_update/random figure say how far any design can get from it.
# GROUP_PAIRS_PER_S (creditgate's group commit figure from bench/ledger_pg) adds its ratio too.
set -euo pipefail
dsn=$1; seconds=${2:-5}; members=${3:-10000}; group=${4:-}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
psql=("$bin/psql" -q -X -v ON_ERROR_STOP=1 -d "$dsn")
"${psql[@]}" >/dev/null 2>&1 <<SQL
DROP SCHEMA IF EXISTS pgb CASCADE;
CREATE SCHEMA pgb;
CREATE TABLE pgb.grants (member_id bigint, grant_id int, remaining bigint, held bigint,
  PRIMARY KEY (member_id, grant_id));
CREATE TABLE pgb.charges (member_id bigint, charge_id bigint, held bigint, captured bigint,
  PRIMARY KEY (member_id, charge_id));
CREATE TABLE pgb.journal (member_id bigint, seq bigint, delta_remaining bigint, delta_held bigint,
  PRIMARY KEY (member_id, seq));
CREATE TABLE pgb.idem (member_id bigint, key text, PRIMARY KEY (member_id, key));
INSERT INTO pgb.grants SELECT m, 1, 1000000000000, 0 FROM generate_series(1, $members) m;
SQL
tmp=$(mktemp -d /tmp/cg-pgbench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
body() { # LOCK_CLAUSE BEGIN_STATEMENT
  cat <<SQL
\set key random(1, 1000000000000)
$2
SELECT remaining, held FROM pgb.grants WHERE member_id = :m $1;
UPDATE pgb.grants SET held = held + 10 WHERE member_id = :m AND remaining - held >= 10;
INSERT INTO pgb.charges VALUES (:m, :key, 10, 0) ON CONFLICT DO NOTHING;
INSERT INTO pgb.journal SELECT :m, coalesce(max(seq), 0) + 1, 0, 10 FROM pgb.journal WHERE member_id = :m;
INSERT INTO pgb.idem VALUES (:m, 'c' || :key) ON CONFLICT DO NOTHING;
COMMIT;
$2
SELECT held FROM pgb.charges WHERE member_id = :m AND charge_id = :key $1;
SELECT remaining, held FROM pgb.grants WHERE member_id = :m $1;
UPDATE pgb.grants SET held = held - 10, remaining = remaining - 10 WHERE member_id = :m;
UPDATE pgb.charges SET held = 0, captured = 10 WHERE member_id = :m AND charge_id = :key;
INSERT INTO pgb.journal SELECT :m, coalesce(max(seq), 0) + 1, -10, -10 FROM pgb.journal WHERE member_id = :m;
INSERT INTO pgb.idem VALUES (:m, 'k' || :key) ON CONFLICT DO NOTHING;
COMMIT;
SQL
}
for mode in for_update serializable; do
  for who in random hot; do
    if [ "$who" = random ]; then pick="\\set m random(1, $members)"; else pick="\\set m 1"; fi
    if [ "$mode" = for_update ]; then body "FOR UPDATE" "BEGIN;"; else body "" "BEGIN ISOLATION LEVEL SERIALIZABLE;"; fi >"$tmp/body.sql"
    { echo "$pick"; cat "$tmp/body.sql"; } >"$tmp/$mode-$who.sql"
    out=$("$bin/pgbench" -n -M prepared -c 64 -j 8 -T "$seconds" --max-tries=20 \
      -f "$tmp/$mode-$who.sql" "$dsn" 2>&1) || { echo "$out" | tail -5; exit 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n "s/^latency average = \([0-9.]*\) ms.*/\1/p" <<<"$out")
    retried=$(sed -n 's/^number of transactions retried: \([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    printf 'pgbench naive %-12s %-6s 64 connections: %8.0f pairs/s  latency avg %6.2f ms  retried %s  failed %s\n' \
      "$mode" "$who" "$tps" "${lat:-0}" "${retried:-0}" "${failed:-0}"
    [ "$mode/$who" = for_update/random ] && naive=$tps
  done
done

batch=64 # pairs per batch in both floors
conns=4  # as bench/ledger_pg's group commit (more measured slower here)
per=$((members / conns)) # each connection its own members, as each writer of the ledger has:
                         # no row lock waits or deadlocks between connections
{ # pipelined: members and keys drawn per pair; every statement names one member
  for i in $(seq "$batch"); do
    echo "\\set m$i 1 + :client_id * $per + random(0, $((per - 1)))"
    echo "\\set k$i random(1, 1000000000000)"
  done
  echo '\startpipeline'
  echo 'BEGIN;'
  for i in $(seq "$batch"); do cat <<SQL
UPDATE pgb.grants SET held = held + 10 WHERE member_id = :m$i AND grant_id = 1;
INSERT INTO pgb.charges VALUES (:m$i, :k$i, 10, 0) ON CONFLICT DO NOTHING;
INSERT INTO pgb.journal VALUES (:m$i, :k$i, 0, 10) ON CONFLICT DO NOTHING;
INSERT INTO pgb.idem VALUES (:m$i, 'c' || :k$i) ON CONFLICT DO NOTHING;
SQL
  done
  echo 'COMMIT;'
  echo '\endpipeline'
  echo '\startpipeline'
  echo 'BEGIN;'
  for i in $(seq "$batch"); do cat <<SQL
UPDATE pgb.grants SET held = held - 10, remaining = remaining - 10 WHERE member_id = :m$i AND grant_id = 1;
UPDATE pgb.charges SET held = 0, captured = 10 WHERE member_id = :m$i AND charge_id = :k$i;
INSERT INTO pgb.journal VALUES (:m$i, :k$i::bigint + 1, -10, -10) ON CONFLICT DO NOTHING;
INSERT INTO pgb.idem VALUES (:m$i, 'k' || :k$i) ON CONFLICT DO NOTHING;
SQL
  done
  echo 'COMMIT;'
  echo '\endpipeline'
} >"$tmp/floor-pipelined.sql"
# set-based: the batch's members and keys derived from one random number
r="(SELECT 1 + :client_id * $per + (:b::bigint * $batch + i) * 2654435761 % $per AS m,
    :b::bigint * $batch + i AS k
    FROM generate_series(0, $((batch - 1))) i) r"
cat >"$tmp/floor-set.sql" <<SQL
\set b random(1, 10000000)
BEGIN;
UPDATE pgb.grants SET held = held + 10 WHERE grant_id = 1 AND member_id IN (SELECT m FROM $r);
INSERT INTO pgb.charges SELECT m, k, 10, 0 FROM $r ON CONFLICT DO NOTHING;
INSERT INTO pgb.journal SELECT m, k, 0, 10 FROM $r ON CONFLICT DO NOTHING;
INSERT INTO pgb.idem SELECT m, 'c' || k FROM $r ON CONFLICT DO NOTHING;
COMMIT;
BEGIN;
UPDATE pgb.grants SET held = held - 10, remaining = remaining - 10
  WHERE grant_id = 1 AND member_id IN (SELECT m FROM $r);
UPDATE pgb.charges c SET held = 0, captured = 10 FROM $r WHERE c.member_id = r.m AND c.charge_id = r.k;
INSERT INTO pgb.journal SELECT m, k + 1, -10, -10 FROM $r ON CONFLICT DO NOTHING;
INSERT INTO pgb.idem SELECT m, 'k' || k FROM $r ON CONFLICT DO NOTHING;
COMMIT;
SQL
for floor in pipelined set; do
  out=$("$bin/pgbench" -n -M prepared -c "$conns" -j 2 -T "$seconds" -f "$tmp/floor-$floor.sql" "$dsn" 2>&1) ||
    { echo "$out" | tail -5; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  awk -v f="$floor" -v c="$conns" -v t="$tps" -v b="$batch" -v n="$naive" 'BEGIN {
    printf "pgbench floor %-9s %d pairs a batch, %d connections: %8.0f pairs/s  %.1fx naive for_update random\n",
      f, b, c, t * b, t * b / n }'
done
[ -n "$group" ] && awk -v g="$group" -v n="$naive" 'BEGIN {
  printf "creditgate group commit / pgbench naive for_update random: %.2fx\n", g / n }'
"${psql[@]}" -c "SET client_min_messages = warning" -c "DROP SCHEMA pgb CASCADE" >/dev/null
