#!/usr/bin/env bash
# test_ledger_cli.sh — drives the ledger commands of the real `creditgate` binary on a fresh
# database file: member put/get, grant, charge (and its replay / conflict / refusal, and with
# --capture), capture, release, refund, balance, history, charges, ledger verify, with --json,
# and checks exit codes.
# Exits non-zero on the first failure. Run from the repository root (tests/run.sh does).
set -u
BUILD=${BUILD:-build}
CG="$BUILD/creditgate"
DIR=$(mktemp -d)
DB="$DIR/sub/ledger.db" # a missing folder: the CLI creates it
trap 'rm -rf "$DIR"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# run EXPECTED_RC CMD... : runs the CLI, keeps stdout in $out, checks the exit code
run() {
  local want=$1; shift
  out=$("$CG" "$@" --db "$DB" 2>"$DIR/err"); local rc=$?
  [ "$rc" = "$want" ] || fail "exit $rc (wanted $want): creditgate $* :: $(cat "$DIR/err")"
}
# field JSONPATH : reads a value from $out with python3 (present wherever the tests run)
field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$1" <<<"$out"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', wanted '$3'"; }

run 0 member put --member alice --plan premium --billing monthly --joined 2026-03-01 --json
expect "member plan" "$(field plan)" premium
run 2 member put --member bob --plan premuim --billing monthly --joined 2026-03-01
run 0 member get --member alice --json
expect "member history" "$(field history.0.billing)" monthly

run 0 grant --member alice --credits 100 --source promo --expires 2099-01-01 --json
promo=$(field grant_id)
expect "promo category" "$(field category)" promotional
run 0 grant --member alice --credits 500 --source purchase --idempotency-key g2 --json
paid=$(field grant_id)
run 0 grant --member alice --credits 500 --source purchase --idempotency-key g2 --json
expect "grant replay" "$(field replayed)" True
expect "grant replay id" "$(field grant_id)" "$paid"
run 2 grant --member nobody --credits 5

# Sora costs 200: the promo grant (expires sooner) first, then 100 from the paid one
run 0 charge --member alice --model sora --idempotency-key c1 --json
ch=$(field charge_id)
expect "charge status" "$(field status)" held
expect "charge credits" "$(field credits)" 200
expect "first part" "$(field parts.0.grant_id)" "$promo"
expect "reason recorded" "$([ -n "$(field items.0.reason)" ] && echo yes)" yes
run 0 charge --member alice --model sora --idempotency-key c1 --json
expect "charge replay" "$(field charge_id)" "$ch"
run 1 charge --member alice --model veo-3 --idempotency-key c1 --json
expect "conflict code" "$(field error.code)" conflict
run 1 charge --member alice --model sora --count 3 --json
expect "insufficient code" "$(field error.code)" insufficient_credits
expect "insufficient needed" "$(field error.needed)" 600
expect "insufficient available" "$(field error.available)" 400

# an unlimited generation is recorded with 0 credits, its benefit and reason
run 0 charge --member alice --model "ChatGPT Image 2.0" --variant low --json
expect "unlimited credits" "$(field credits)" 0
expect "unlimited benefit" "$(field items.0.benefit)" gpt-image-2-low

run 0 capture --member alice --charge "$ch" --credits 150 --json
expect "captured" "$(field captured)" 150
run 1 capture --member alice --charge "$ch"
run 1 release --member alice --charge "$ch"
run 2 capture --member alice --charge ch_unknown
run 2 refund --member alice --charge "$ch" --credits 151
run 0 refund --member alice --charge "$ch" --credits 50 --reason "video failed halfway" --json
expect "refunded" "$(field refunded)" 50

run 0 charge --member alice --model midjourney --json
ch2=$(field charge_id)
run 0 release --member alice --charge "$ch2" --json
expect "released" "$(field status)" released

run 0 balance --member alice --json
expect "available" "$(field available)" 500
expect "held" "$(field held)" 0
run 0 balance --member alice
run 0 history --member alice --limit 3 --json
expect "history page" "$(field next_after)" 3
run 0 history --member alice --after 3 --limit 100

# charges, newest first, the unlimited (0-credit) one included, page by page
run 0 charges --member alice --limit 2 --json
expect "newest charge" "$(field charges.0.charge_id)" "$ch2"
expect "unlimited charge listed" "$(field charges.1.credits)" 0
cursor=$(field next)
run 0 charges --member alice --before "$cursor" --limit 2 --json
expect "oldest charge" "$(field charges.0.charge_id)" "$ch"
expect "last page" "$(field next)" None
run 0 charges --member alice
run 2 charges --member alice --before garbage
run 2 charges --member nobody
run 0 ledger verify --json
expect "verify ok" "$(field ok)" True

# charge --capture: quote + spend in one call, nothing left to capture or release
run 0 member put --member carol --plan free --billing monthly --joined 2026-03-01
run 0 grant --member carol --credits 50
run 0 charge --member carol --model midjourney --capture --idempotency-key cc1 --json
ch3=$(field charge_id)
expect "captured at once" "$(field status)" captured
expect "captured credits" "$(field captured)" 10
run 0 charge --member carol --model midjourney --capture --idempotency-key cc1 --json
expect "capture replay" "$(field charge_id)" "$ch3"
run 1 charge --member carol --model midjourney --idempotency-key cc1 --json
expect "capture is part of the request" "$(field error.code)" conflict
run 1 capture --member carol --charge "$ch3"
run 0 balance --member carol --json
expect "spent at once" "$(field available)" 40
expect "nothing held" "$(field held)" 0
run 0 ledger verify

# tamper with a balance (in every shard file): verify must notice and exit non-zero
python3 - "$DB" <<'EOF'
import glob, sqlite3, sys
for f in [sys.argv[1]] + glob.glob(sys.argv[1] + ".shard*[0-9]"):
    con = sqlite3.connect(f); con.execute("UPDATE grants SET remaining = remaining + 1"); con.commit()
EOF
run 1 ledger verify

if [ "$fails" -ne 0 ]; then echo "test_ledger_cli: $fails failure(s)"; exit 1; fi
echo "test_ledger_cli: ok"
