#!/usr/bin/env bash
# Brings up sluice's real test environment; idempotent and quick when already up.
#  1. a Docker engine that answers (installs Debian's docker.io and starts dockerd if not);
#  2. Debian's busybox-static and docker-registry (the CNCF distribution registry),
#     openssl and iproute2 for the tests' second Docker engine, Python's
#     openapi-spec-validator and jsonschema for the API contract test, docker-compose
#     for the adoption of a Compose project, Debian's prometheus for metric analysis,
#     Debian's nginx for the start-first router and load tests;
#  3. a registry on 127.0.0.1:${SLUICE_TEST_REGISTRY_PORT:-5000} (filesystem storage,
#     request log at $SLUICE_TESTENV_DIR/registry.log);
#  4. the fixture images pushed under 127.0.0.1:PORT/sluice-fixtures/<mode>:v1..v3.
# Prints `export` lines for the variables the tests read.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${SLUICE_TEST_REGISTRY_PORT:-5000}
state=${SLUICE_TESTENV_DIR:-/var/tmp/sluice-testenv}
mkdir -p "$state"
log() { printf 'testenv: %s\n' "$*" >&2; }

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# 1. Docker engine
if ! docker info >/dev/null 2>&1; then
  need_pkg dockerd docker.io
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    (dockerd >"$state/dockerd.log" 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { log "dockerd did not start; see $state/dockerd.log"; exit 1; }
  fi
fi

# 2. Tools for fixtures and the registry
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
  || { need_pkg file file; dpkg -s busybox-static >/dev/null 2>&1 || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }; }
need_pkg file file
need_pkg docker-registry docker-registry
need_pkg htpasswd apache2-utils
# A second engine over TLS (tests/it/second_engine.rs): certificates and its own bridge
need_pkg openssl openssl
need_pkg ip iproute2
# Prometheus: the metric-analysis tests query a real one on loopback.
need_pkg prometheus prometheus
# nginx: the start-first tests put a real reverse proxy in front of a workspace (their
# own instance on loopback, with its own configuration; the package's service is not used).
need_pkg nginx nginx
# Chromium: the dashboard's browser test drives a headless one over WebDriver.
need_pkg chromium chromium
need_pkg chromedriver chromium-driver
# xfsprogs: the copy-on-write snapshot test makes an XFS filesystem with reflinks on a
# loop device (the kernel has XFS; the tools to make one are a package).
need_pkg mkfs.xfs xfsprogs
# Compose: the adoption tests take over a Compose project and check `ps` still sees it.
need_pkg docker-compose docker-compose
# The API contract test validates the served OpenAPI document and live responses with
# Python's openapi-spec-validator and jsonschema (PyPI; Debian's packages as a fallback).
need_pkg python3 python3
if ! python3 -c 'import openapi_spec_validator, jsonschema' >/dev/null 2>&1; then
  log "installing openapi-spec-validator and jsonschema"
  python3 -m pip install -q openapi-spec-validator jsonschema >&2 2>/dev/null \
    || python3 -m pip install -q --break-system-packages openapi-spec-validator jsonschema >&2 2>/dev/null \
    || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-openapi-spec-validator python3-jsonschema >/dev/null; }
  python3 -c 'import openapi_spec_validator, jsonschema' \
    || { log "cannot install openapi-spec-validator and jsonschema for python3"; exit 1; }
fi
# The mail tests run a loopback SMTP server (tests/env/smtp_sink.py) on Python's aiosmtpd.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  log "installing aiosmtpd"
  python3 -m pip install -q aiosmtpd >&2 2>/dev/null \
    || python3 -m pip install -q --break-system-packages aiosmtpd >&2 2>/dev/null \
    || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >/dev/null; }
  python3 -c 'import aiosmtpd' || { log "cannot install aiosmtpd for python3"; exit 1; }
fi

# 3. The shared local registry
if ! curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
  log "starting docker-registry on 127.0.0.1:$port"
  mkdir -p "$state/registry"
  cat >"$state/registry.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  (setsid docker-registry serve "$state/registry.yml" >>"$state/registry.log" 2>&1 &)
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || { log "registry did not start; see $state/registry.log"; exit 1; }
fi

# 4. Standard fixtures (built once; a marker records the digests)
if [ ! -s "$state/fixtures.env" ] || ! curl -fsS "http://127.0.0.1:$port/v2/sluice-fixtures/good/tags/list" 2>/dev/null | grep -q v3; then
  log "building fixture images"
  : >"$state/fixtures.env.tmp"
  for mode in good bad-health crash migrates-then-fails; do
    for v in v1 v2 v3; do
      d=$("$here/build-fixture.sh" "$mode" "$v" "127.0.0.1:$port/sluice-fixtures/$mode:$v")
      var=$(printf 'SLUICE_FIXTURE_%s_%s' "$mode" "$v" | tr 'a-z-' 'A-Z_')
      echo "$var=$d" >>"$state/fixtures.env.tmp"
    done
  done
  mv "$state/fixtures.env.tmp" "$state/fixtures.env"
fi

echo "export SLUICE_TEST_REGISTRY=127.0.0.1:$port"
echo "export SLUICE_TESTENV_DIR=$state"
sed 's/^/export /' "$state/fixtures.env"
log "ready: registry 127.0.0.1:$port, fixtures in 127.0.0.1:$port/sluice-fixtures/"
