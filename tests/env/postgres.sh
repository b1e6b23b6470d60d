#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `postgres.sh start` installs Debian's
# postgresql when missing, runs initdb into a fresh temp directory as the unprivileged
# `postgres` user, starts it on 127.0.0.1:${SLUICE_TEST_PG_PORT:-55432} (trust auth,
# loopback only) and prints `export SLUICE_TEST_PG=…` (the admin URL tests create their
# own database from, one per test). `postgres.sh stop` stops it and deletes the directory.
set -euo pipefail
port=${SLUICE_TEST_PG_PORT:-55432}
state=${SLUICE_TESTENV_DIR:-/var/tmp/sluice-testenv}
mkdir -p "$state"
marker="$state/postgres.dir"
log() { printf 'testenv: %s\n' "$*" >&2; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

as_pg() { # commands run as the unprivileged owner of the cluster
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
start)
  if [ -z "$(bindir || true)" ]; then
    log "installing postgresql"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  bin=$(bindir)
  if [ -s "$marker" ] && [ -d "$(cat "$marker")" ] \
     && as_pg "$bin/pg_ctl" -D "$(cat "$marker")/data" status >/dev/null 2>&1; then
    log "postgresql already running on 127.0.0.1:$port"
  else
    dir=$(mktemp -d /var/tmp/sluice-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U sluice --auth=trust -E UTF8 >"$state/postgres-initdb.log" 2>&1 \
      || { log "initdb failed; see $state/postgres-initdb.log"; exit 1; }
    # Many short-lived test databases at once: room for connections, no durability cost.
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { log "postgresql did not start; see $dir/server.log"; exit 1; }
    echo "$dir" >"$marker"
    log "postgresql on 127.0.0.1:$port (cluster in $dir)"
  fi
  echo "export SLUICE_TEST_PG=postgres://sluice@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -s "$marker" ]; then
    dir=$(cat "$marker")
    bin=$(bindir || true)
    [ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir" "$marker"
    log "postgresql stopped"
  fi
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
