#!/usr/bin/env bash
# test_agreement.sh — issue 8's differential check, small: 2,000 requests answered by creditgate
# ($BUILD/bench/peers writes them with its answers) and by the same benefit rules written
# independently in Cedar, GoRules ZEN and json-rules-engine (bench/peers/); any disagreement
# fails. A planted wrong answer must be caught, so the check cannot pass vacuously. Without
# the node packages (npm ci --prefix bench/peers) it skips, except in CI, where it fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
REQUESTS=2000
SEED=0x5EED0008 # not the benchmark's seed, so the two runs cover different requests

if ! command -v node >/dev/null ||
   ! (cd bench/peers && node -e "for (const m of ['@cedar-policy/cedar-wasm/nodejs',
        '@gorules/zen-engine', 'json-rules-engine']) require.resolve(m)") 2>/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: node or the peer packages are missing; run: npm ci --prefix bench/peers" >&2
    exit 1
  fi
  echo "SKIP: node or the peer packages are missing; run: npm ci --prefix bench/peers"
  exit 0
fi

# The mix program is a bench binary, which `make test` does not build; build it here with the
# flags of the calling make (MAKEFLAGS carries SAN/OPT under test-asan).
make -s BUILD="$BUILD" "$BUILD/bench/peers" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$BUILD/bench/peers" --requests "$REQUESTS" --seed "$SEED" --seconds 0.01 --out "$tmp/mix.jsonl" \
  >"$tmp/creditgate.txt"
lines=$(wc -l <"$tmp/mix.jsonl")
free=$(grep -c '"unlimited":true' "$tmp/mix.jsonl" || true)
echo "mix: $lines requests, $free unlimited by creditgate"
[ "$lines" -eq "$REQUESTS" ] || { echo "FAIL: expected $REQUESTS requests, got $lines"; exit 1; }
[ "$free" -gt 0 ] && [ "$free" -lt "$lines" ] || { echo "FAIL: the mix must hold both answers"; exit 1; }

echo "-- test_all_peers_agree_with_creditgate"
node bench/peers/peers.js --mix "$tmp/mix.jsonl" --check-only

echo "-- test_a_planted_wrong_answer_is_reported"
# Flip creditgate's answer on the first unlimited request: every peer must now disagree once.
awk '!done && /"unlimited":true/ { sub(/"unlimited":true,"benefit":"[^"]*"/, "\"unlimited\":false,\"benefit\":null"); done = 1 } { print }' \
  "$tmp/mix.jsonl" >"$tmp/planted.jsonl"
if node bench/peers/peers.js --mix "$tmp/planted.jsonl" --check-only >"$tmp/planted.txt"; then
  echo "FAIL: a planted wrong answer passed the agreement check"; cat "$tmp/planted.txt"; exit 1
fi
found=$(grep -c '^DISAGREEMENT' "$tmp/planted.txt" || true)
[ "$found" -eq 3 ] || { echo "FAIL: expected 3 disagreements (one per peer), got $found"; cat "$tmp/planted.txt"; exit 1; }
grep -m1 '^DISAGREEMENT' "$tmp/planted.txt"
echo "test_agreement: ok"
