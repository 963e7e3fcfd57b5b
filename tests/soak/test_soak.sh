#!/usr/bin/env bash
# test_soak.sh — the short soak for `make test`: tests/soak/soak.sh for 20 s, sampled every 5 s.
# An ASan server keeps freed memory in quarantine, so its RSS may rise by up to 64 MiB.
set -u
slack=8192
case "${BUILD:-build}" in *asan*) slack=65536 ;; esac
SOAK_SECONDS=20 SOAK_INTERVAL_S=5 SOAK_RSS_SLACK_KB=$slack exec bash tests/soak/soak.sh
