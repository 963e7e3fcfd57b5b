#!/usr/bin/env bash
# deps.sh — installs the Debian packages creditgate builds and tests with, if any is missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -euo pipefail
pkgs=(build-essential pkg-config libfyaml-dev libjansson-dev libmicrohttpd-dev libsqlite3-dev
      libsodium-dev libcmocka-dev sqlite3 valgrind curl clang libclang-rt-14-dev
      libpq-dev postgresql
      wrk)  # wrk: tests/soak (issue 7)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
else
  echo "deps: missing packages; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
