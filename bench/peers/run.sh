#!/usr/bin/env bash
# run.sh — issue 8 in one run (`make bench` calls it after the per-figure programs): creditgate
# against the engines and ledgers a team would pick instead, on this machine, with agreement.
#   1. $BUILD/bench/peers writes the 100,000-request mix with creditgate's answers and times
#      creditgate's in-process decisions on it;
#   2. peers.js runs Cedar, GoRules ZEN and json-rules-engine on the same mix: every answer
#      compared with creditgate's (any disagreement fails the run), then decisions/s and p99;
#   3. http_quote.sh: `creditgate serve`, POST /v1/quote under wrk on the same mix;
#   4. bench/ledger (creditgate's durable ledger, 1 and 64 callers), run here right before
#      ledger_peers.sh (Redis, PostgreSQL) so that all three meet the disk in the same state
#      (LEDGER_OUT=file reuses an earlier output of bench/ledger instead);
#   5. one table and the goals (report.awk), written to bench/RESULTS.md under
#      "## Peers (issue 8)", and PNG charts under bench/results/ (charts.gp, gnuplot).
# What is not installed is skipped and named. Exit status 1 on any disagreement or failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
REQUESTS=${PEERS_REQUESTS:-100000}
SECONDS_PER_RUN=${PEERS_SECONDS:-5}
WORK=$BUILD/bench/peers-work
RESULTS=$WORK/results.txt
CHARTS=bench/results
failed=0
machine() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  echo "machine: $(uname -s) $(uname -m), ${cpu:-unknown cpu}, $(nproc) cpus, $(date -u +%Y-%m-%d)" \
       "(shared and noisy: compare ratios within one run)"
}
step() { echo "== bench/peers: $*"; }

# PEERS_REPORT_ONLY=1 redraws the table, charts and section from the last run's results.
if [ -n "${PEERS_REPORT_ONLY:-}" ]; then
  [ -s "$RESULTS" ] || { echo "bench/peers: no earlier results in $RESULTS" >&2; exit 1; }
  REQUESTS=$(sed -n 's/^result peer=creditgate requests=\([0-9]*\).*/\1/p' "$RESULTS")
else
rm -rf "$WORK"; mkdir -p "$WORK"
machine | tee "$RESULTS"

step "mix of $REQUESTS requests and creditgate in-process"
[ -x "$BUILD/bench/peers" ] || make -s BUILD="$BUILD" "$BUILD/bench/peers" || exit 1
"$BUILD/bench/peers" --requests "$REQUESTS" --out "$WORK/mix.jsonl" --seconds "$SECONDS_PER_RUN" >"$WORK/creditgate.txt" || exit 1
sed 's/$/ label="creditgate engine, in-process (cg_engine_decide)"/' "$WORK/creditgate.txt" | tee -a "$RESULTS"

step "peer engines (Cedar, GoRules ZEN, json-rules-engine), agreement on all $REQUESTS"
if command -v node >/dev/null && [ -d bench/peers/node_modules ]; then
  node bench/peers/peers.js --mix "$WORK/mix.jsonl" --seconds "$SECONDS_PER_RUN" | tee "$WORK/peers.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
  grep '^result' "$WORK/peers.txt" >>"$RESULTS"
else
  echo "note: peer engines skipped — need node and: npm ci --prefix bench/peers"
fi

step "HTTP quote endpoint"
bench/peers/http_quote.sh "$BUILD" "$WORK/mix.jsonl" "$WORK/http" "$SECONDS_PER_RUN" | tee "$WORK/http.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
grep '^result' "$WORK/http.txt" >>"$RESULTS"

step "creditgate's durable ledger (bench/ledger: SQLite WAL, group commit)"
if [ -z "${LEDGER_OUT:-}" ] || [ ! -s "$LEDGER_OUT" ]; then
  LEDGER_OUT=$WORK/ledger.txt
  make -s BUILD="$BUILD" "$BUILD/bench/ledger" || exit 1
  "$BUILD/bench/ledger" --seconds "$SECONDS_PER_RUN" --dir "$WORK" | tee "$LEDGER_OUT"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
else
  echo "(figures from $LEDGER_OUT)"
fi
# Its group-commit lines: "   64 callers:   2312 pairs/s  p50 12.50 ms  p99 341.66 ms ..."; a
# pair is a charge (quote + hold) and its capture, two durable commits.
awk '/^group commit/ { on = 1 } /^naive/ { on = 0 } on && $2 == "callers:" {
       printf "result peer=creditgate-ledger callers=%d charges_per_s=%s p99_ms=%s label=\"creditgate ledger (charge+capture pairs)\"\n", $1, $3, $9 }' \
  "$LEDGER_OUT" | tee -a "$RESULTS"

# The same ledger counted in holds alone (charge calls never captured): nothing is settled.
"$BUILD/bench/ledger" --only group --charges-only --seconds "$SECONDS_PER_RUN" --dir "$WORK" |
  tee "$WORK/ledger-charges.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
awk '/^group commit/ { on = 1 } on && $2 == "callers:" {
       printf "result peer=creditgate-charges callers=%d charges_per_s=%s p99_ms=%s label=\"creditgate ledger (holds alone)\"\n", $1, $3, $9 }' \
  "$WORK/ledger-charges.txt" | tee -a "$RESULTS"

# And in charges with capture (quote + spend, one durable call, final): what the peers' one
# call does — check, decrement, journal — so the goal lines are judged on these.
"$BUILD/bench/ledger" --only group --capture-at-once --seconds "$SECONDS_PER_RUN" --dir "$WORK" |
  tee "$WORK/ledger-spend.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
awk '/^group commit/ { on = 1 } on && $2 == "callers:" {
       printf "result peer=creditgate-spend callers=%d charges_per_s=%s p99_ms=%s label=\"creditgate ledger (charges with capture)\"\n", $1, $3, $9 }' \
  "$WORK/ledger-spend.txt" | tee -a "$RESULTS"
# The same 64 callers as redis-benchmark and pgbench drive their servers: 64 calls in flight
# from one event loop (cg_ledger_charge_async), not 64 parked threads.
"$BUILD/bench/ledger" --only group --capture-at-once --async --callers 64 --seconds "$SECONDS_PER_RUN" \
  --dir "$WORK" | tee "$WORK/ledger-spend-async.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
awk '/^group commit/ { on = 1 } on && $2 == "callers:" {
       printf "result peer=creditgate-spend-async callers=%d charges_per_s=%s p99_ms=%s label=\"creditgate ledger (charges with capture, async)\"\n", $1, $3, $9 }' \
  "$WORK/ledger-spend-async.txt" | tee -a "$RESULTS"

step "ledger peers (Redis, PostgreSQL)"
bench/peers/ledger_peers.sh "$WORK/ledger-peers" "$SECONDS_PER_RUN" | tee "$WORK/ledger-peers.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
grep '^result' "$WORK/ledger-peers.txt" >>"$RESULTS"

fi # PEERS_REPORT_ONLY

step "table"
{
  awk -v DATA="$WORK" -f bench/peers/report.awk "$RESULTS"
  # What the agreement covered: creditgate's answers on the mix, by benefit.
  grep -o '"benefit":[^,]*' "$WORK/mix.jsonl" | sort | uniq -c | sort -rn |
    awk -v n="$REQUESTS" '{ b = $2; sub(/^"benefit":/, "", b); gsub(/"/, "", b); if (b == "null") b = "charged"
                            s = s (s ? ", " : "") b " " $1 } END { print "mix (" n " requests, creditgate'"'"'s answers): " s }' | fold -s -w 100 | sed 's/ *$//'
} | tee "$WORK/table.txt"
grep -q '^DISAGREEMENT' "$WORK"/*.txt "$WORK"/http/*.txt 2>/dev/null && failed=1

if command -v gnuplot >/dev/null && [ -s "$WORK/decisions.dat" ]; then
  mkdir -p "$CHARTS"
  gnuplot -e "DATA='$WORK'; OUT='$CHARTS'; REQUESTS='$(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$REQUESTS")';
              MACHINE='$(sed -n "1s/^machine: //; 1s/ (shared.*//; 1s/'//g; 1p" "$RESULTS")'" bench/peers/charts.gp &&
    echo "charts: $CHARTS/decisions.png $CHARTS/charges.png"
else
  echo "note: charts skipped — apt-get install gnuplot-nox"
fi

# bench/RESULTS.md: replace (or add) only the "## Peers (issue 8)" section.
{
  echo "## Peers (issue 8)"
  echo
  echo "Command: \`make bench\` (this section: \`BUILD=build bench/peers/run.sh\`, run from the repository"
  echo "root). Charts: [decisions](results/decisions.png), [charges](results/charges.png)."
  echo
  echo '```'
  cat "$WORK/table.txt"
  echo '```'
  echo
  cat bench/peers/RESULTS-notes.md
} >"$WORK/section.md"
awk -v sec="$WORK/section.md" '
  function put(   l) { while ((getline l < sec) > 0) print l; done = 1 }
  /^## Peers \(issue 8\)/ { put(); skip = 1; next }
  skip && /^## / { skip = 0; print "" }
  !skip { print }
  END { if (!done) { print ""; put() } }' bench/RESULTS.md >"$WORK/RESULTS.md" && cp "$WORK/RESULTS.md" bench/RESULTS.md
echo "written: bench/RESULTS.md (## Peers (issue 8))"
[ "$failed" -eq 0 ] || echo "bench/peers: FAILED (see above)"
exit "$failed"
