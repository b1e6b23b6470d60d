#!/usr/bin/env bash
# Runs sluice's whole test suite against real parts: brings the test environment up
# (Docker engine, local registry on 127.0.0.1:5000, fixture images), then runs every test.
# Each test removes the containers, volumes and images it made itself; the shared fixture
# images that daemons under test pulled by digest are left untagged and are swept at the
# end (only images labelled sluice.test=1 that no container uses).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(tests/env/up.sh)"
rc=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || rc=$?
else
  cargo test --no-fail-fast "$@" || rc=$?
fi
docker image prune -f --filter dangling=true --filter label=sluice.test=1 >/dev/null || true
exit "$rc"
