#!/usr/bin/env bash
# run.sh — what `make run` does after building: serves the API on 127.0.0.1:8080 with the
# bundled policy and the SQLite ledger under ./data, seeds demo members that cover the help
# page's cases, prints an admin key, a service key and curl examples, then stays in the
# foreground until Ctrl-C (which drains the server: SIGTERM).
# CREDITGATE_LISTEN and CREDITGATE_DATA override the address and the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/creditgate
LISTEN=${CREDITGATE_LISTEN:-127.0.0.1:8080}   # port 0: any free port (tests)
DATA=${CREDITGATE_DATA:-data}
mkdir -p "$DATA"
chmod 700 "$DATA"
command -v curl >/dev/null || { echo "run.sh: needs curl (apt-get install curl)" >&2; exit 1; }

# Demo keys: made once and kept in data/ (mode 600) so re-runs print the same ones.
# The server itself only ever reads data/keys, which holds hashes.
if [ ! -s "$DATA/demo-keys.txt" ]; then
  umask 077
  a=$("$BIN" serve keygen demo-admin admin)
  s=$("$BIN" serve keygen demo-service service)
  {
    echo "ADMIN_KEY=$(sed -n 's/^key: //p' <<<"$a")"
    echo "SERVICE_KEY=$(sed -n 's/^key: //p' <<<"$s")"
  } >"$DATA/demo-keys.txt"
  { sed -n 's/^keys-file line: //p' <<<"$a"; sed -n 's/^keys-file line: //p' <<<"$s"; } >"$DATA/keys"
  head -c 32 /dev/urandom >"$DATA/token-secret"
fi
# shellcheck disable=SC1091
source "$DATA/demo-keys.txt"

"$BIN" serve --listen "$LISTEN" --policy policy/carat.yaml --db "$DATA/creditgate.db" \
  --keys "$DATA/keys" --token-secret "$DATA/token-secret" --access-log "$DATA/access.log" \
  >"$DATA/serve.out" 2>>"$DATA/serve.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 0' INT TERM
# The server's first stdout line names the port it bound.
port=
for _ in $(seq 200); do
  port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$DATA/serve.out" 2>/dev/null | head -1)
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { echo "run.sh: server exited; see $DATA/serve.log" >&2; tail -5 "$DATA/serve.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "run.sh: server did not start; see $DATA/serve.log" >&2; kill -TERM $pid; exit 1; }
URL=http://${LISTEN%:*}:$port

call() { # METHOD PATH KEY BODY [IDEMPOTENCY-KEY]
  curl -fsS -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' \
    ${5:+-H "Idempotency-Key: $5"} -d "$4" >/dev/null
}

# member id, plan, billing, joined — one per case of the help page
members=(
  "m-nov25-plus plus monthly 2025-11-25"          # joined Nov 21–30: Nanobanana Pro 1K/2K free
  "m-premium-mar26 premium monthly 2026-03-01"    # Premium since Mar 2026: Carat Video for 1 year
  "m-max-annual-jun26 max annual 2026-06-01"      # Max annual after May 22: Nanobanana 2 1K free
  "m-max-annual-apr26 max annual 2026-04-10"      # Max annual before May 22: no unlimited at all
  "m-pro-dec25 pro monthly 2025-12-10"            # Pro: Carat Video regardless of date
  "m-business business annual 2026-01-15"         # Business: Carat Video
)
for m in "${members[@]}"; do
  read -r id plan billing joined <<<"$m"
  call PUT "/v1/members/$id" "$SERVICE_KEY" \
    "{\"plan\":\"$plan\",\"billing\":\"$billing\",\"joined\":\"$joined\",\"effective_at\":\"$joined\"}" "seed-$id"
  call POST "/v1/members/$id/grants" "$ADMIN_KEY" \
    '{"credits":1000,"source":"purchase","note":"demo seed"}' "seed-purchase-$id"
  call POST "/v1/members/$id/grants" "$ADMIN_KEY" \
    '{"credits":300,"source":"promo","expires_at":"2027-12-31","note":"demo promo"}' "seed-promo-$id"
done

cat <<EOF

creditgate is serving on $URL (pid $pid; policy/carat.yaml; ledger $DATA/creditgate.db)
  admin key:   $ADMIN_KEY
  service key: $SERVICE_KEY
  (kept in $DATA/demo-keys.txt; the server holds only their hashes in $DATA/keys)

demo members: ${members[*]%% *}

Pages (open in a browser):
  My Credits:      $URL/          (paste a member token: see "a member token" below)
  Support console: $URL/support   (paste the admin key)

Try:
  export ADMIN=$ADMIN_KEY SVC=$SERVICE_KEY
  # Nanobanana Pro 2K for a member who joined 2025-11-25 — unlimited
  curl -s $URL/v1/quote -H "Authorization: Bearer \$SVC" -H 'Content-Type: application/json' \\
    -d '{"member_id":"m-nov25-plus","model":"Nanobanana Pro","variant":"2k"}'
  # the same member, 4K — charged for everyone
  curl -s $URL/v1/quote -H "Authorization: Bearer \$SVC" -H 'Content-Type: application/json' \\
    -d '{"member_id":"m-nov25-plus","model":"Nanobanana Pro","variant":"4k"}'
  # Agent 2.0 video asking for Carat Basic Video (LTX 2.3), in Korean
  curl -s $URL/v1/quote -H "Authorization: Bearer \$SVC" -H 'Content-Type: application/json' \\
    -d '{"member_id":"m-premium-mar26","agent":{"model":"lite","kind":"video","prompt":"Use Carat Basic Video (LTX 2.3)"},"lang":"ko"}'
  # Active benefits (My Credits)
  curl -s "$URL/v1/members/m-max-annual-jun26/benefits?lang=en" -H "Authorization: Bearer \$SVC"
  # charge (hold), then capture; retrying with the same Idempotency-Key is safe
  curl -s $URL/v1/charges -H "Authorization: Bearer \$SVC" -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: demo-1' -d '{"member_id":"m-pro-dec25","model":"sora-2"}'
  curl -s $URL/v1/charges/CHARGE_ID/capture -H "Authorization: Bearer \$SVC" \\
    -H 'Content-Type: application/json' -d '{"member_id":"m-pro-dec25"}'
  curl -s $URL/v1/members/m-pro-dec25/balance -H "Authorization: Bearer \$SVC"
  # a member token (what the My Credits page uses): reaches only its own member
  curl -s -X POST $URL/v1/members/m-nov25-plus/tokens -H "Authorization: Bearer \$SVC"
  curl -s $URL/metrics | head -20;  curl -s $URL/openapi.yaml | head

Logs: $DATA/access.log (JSON lines), $DATA/serve.log. Ctrl-C stops (drains in-flight requests).
EOF
wait $pid
