#!/usr/bin/env bash
# Runs sluice's whole test suite against real parts: brings the test environment up
# (Docker engine, local registry on 127.0.0.1:5000, fixture images), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(tests/env/up.sh)"
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --no-fail-fast "$@"
else
  exec cargo test --no-fail-fast "$@"
fi
