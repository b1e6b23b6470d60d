#!/usr/bin/env bash
# Runs sluice's whole test suite against real parts: brings the test environment up
# (Docker engine, local registry on 127.0.0.1:5000, fixture images, a throwaway
# PostgreSQL cluster on 127.0.0.1:55432), then runs every test twice over the two store
# engines:
#  1. every test on SQLite, the embedded default (the PostgreSQL-only tests, such as
#     leadership and `sluice migrate --to`, run here too, on the throwaway cluster);
#  2. the store, API, controller, snapshot-store, notifier and watcher tests again with
#     SLUICE_TEST_ENGINE=postgres, each on a database of its own. Docker-heavy tests
#     (reconciler, crash matrix, snapshot fidelity, second engine, daemon processes) run
#     once: what they exercise beyond the store is the same on either engine.
# Each test removes the containers, volumes and images it made itself; the shared fixture
# images that daemons under test pulled by digest are left untagged and are swept at the
# end (only images labelled sluice.test=1 that no container uses). The PostgreSQL cluster
# is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(tests/env/up.sh)"
eval "$(tests/env/postgres.sh start)"
trap 'tests/env/postgres.sh stop' EXIT
# The tests that run on both engines (nextest filter expression).
BOTH_ENGINES='test(/^(store|snapshot_store|rollout_controller|rollout_api|api|hosts_api|snapshot_api|openapi_contract|notify|email|retirement|registry|changelog_file|adopt|drift|analysis_controller)::/) | (kind(lib) & test(/^(store|rollout|api|notify|watcher)::/))'
rc=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || rc=$?
  echo "== the store, API and controller tests again, on PostgreSQL"
  SLUICE_TEST_ENGINE=postgres cargo nextest run --no-fail-fast -E "$BOTH_ENGINES" "$@" || rc=$?
else
  cargo test --no-fail-fast "$@" || rc=$?
fi
docker image prune -f --filter dangling=true --filter label=sluice.test=1 >/dev/null || true
exit "$rc"
