#!/usr/bin/env bash
# Builds a test fixture image FROM scratch (busybox-static only), pushes it, and prints
# the manifest digest the registry reported.
#   build-fixture.sh MODE VERSION REF [LABEL=VALUE ...]
# MODE: good | bad-health | crash | migrates-then-fails. VERSION makes the digest
# differ between builds (v1, v2, v3 under one tag). REF: e.g. 127.0.0.1:5000/fx/good:v1.
# The local image is removed after the push unless KEEP_LOCAL=1 (tests pull by digest).
set -euo pipefail
mode=$1 version=$2 ref=$3
shift 3
case "$mode" in good|bad-health|crash|migrates-then-fails) ;; *) echo "unknown fixture mode: $mode" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && [ -x /bin/busybox ] && busybox=/bin/busybox
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  busybox=/bin/busybox
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$busybox" "$ctx/busybox"
mkdir -p "$ctx/fixture"
cp "$here/fixture/entrypoint.sh" "$here/fixture/handler.sh" "$ctx/fixture/"
printf '%s\n' "$mode" > "$ctx/fixture/mode"
printf '%s\n' "$version" > "$ctx/fixture/version"
labels=(--label sluice.test=1 --label "org.opencontainers.image.version=$version"
        --label "org.opencontainers.image.description=sluice fixture $mode $version")
for l in "$@"; do labels+=(--label "$l"); done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY fixture /fixture
ENV DATA_DIR=/data PORT=8080
EXPOSE 8080
CMD ["/fixture/entrypoint.sh"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q "${labels[@]}" -t "$ref" "$ctx" >/dev/null 2>"$ctx/build.err" || { cat "$ctx/build.err" >&2; exit 1; }
out=$(docker push "$ref" 2>&1) || { echo "$out" >&2; exit 1; }
digest=$(printf '%s\n' "$out" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' | tail -n1)
[ -n "$digest" ] || { echo "push reported no digest: $out" >&2; exit 1; }
[ "${KEEP_LOCAL:-0}" = 1 ] || docker rmi -f "$ref" >/dev/null 2>&1 || true
printf '%s\n' "$digest"
