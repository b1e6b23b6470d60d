#!/usr/bin/env bash
# Builds a test fixture image FROM scratch (busybox-static only), pushes it, and prints
# the manifest digest the registry reported.
#   build-fixture.sh MODE VERSION REF [LABEL=VALUE ...]
# MODE: good | bad-health | crash | migrates-then-fails. VERSION is baked into the image
# (v1, v2, v3 under one tag). REF: e.g. 127.0.0.1:5000/fx/good:v1.
# The local image is removed after the push unless KEEP_LOCAL=1 (tests pull by digest).
# CHANGELOG_FILE=path copies that file into the image as /app/changelogs/<name> (name:
# CHANGELOG_NAME, default the file's own name) with the symlink latest.json -> <name>.
#
# The image is made with `docker import` from a root filesystem assembled here, not with
# `docker build`: the legacy builder shares cached intermediate images between parallel
# builds of the same fixture, and one test's `docker rmi` could then delete the image
# another test had built but not yet tagged ("failed to get digest ... no such file").
# An import has no cache and no parent chain, so every call owns its image, and it takes
# a fraction of a second instead of several.
set -euo pipefail
mode=$1 version=$2 ref=$3
shift 3
case "$mode" in good|bad-health|crash|migrates-then-fails) ;; *) echo "unknown fixture mode: $mode" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
command -v file >/dev/null || { echo "build-fixture: needs the file command (apt-get install file)" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  echo "build-fixture: $busybox is not a static busybox (install busybox-static)" >&2
  exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/fixture"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cp "$here/fixture/entrypoint.sh" "$here/fixture/handler.sh" "$root/fixture/"
printf '%s\n' "$mode" > "$root/fixture/mode"
printf '%s\n' "$version" > "$root/fixture/version"
if [ -n "${CHANGELOG_FILE:-}" ]; then
  name=${CHANGELOG_NAME:-$(basename "$CHANGELOG_FILE")}
  mkdir -p "$root/app/changelogs"
  cp "$CHANGELOG_FILE" "$root/app/changelogs/$name"
  [ "$name" = latest.json ] || ln -s "$name" "$root/app/changelogs/latest.json"
fi

label() { # label KEY VALUE -> a LABEL instruction with the value quoted
  local v=${2//\\/\\\\}
  v=${v//\"/\\\"}
  printf 'LABEL %s="%s"' "$1" "$v"
}
changes=(--change 'ENV DATA_DIR=/data PORT=8080'
         --change 'EXPOSE 8080'
         --change 'CMD ["/fixture/entrypoint.sh"]'
         --change "$(label sluice.test 1)"
         --change "$(label org.opencontainers.image.version "$version")"
         --change "$(label org.opencontainers.image.description "sluice fixture $mode $version")")
for l in "$@"; do changes+=(--change "$(label "${l%%=*}" "${l#*=}")"); done

out=$(tar -C "$root" -c . | docker import "${changes[@]}" - "$ref" 2>&1) || { echo "$out" >&2; exit 1; }
out=$(docker push "$ref" 2>&1) || { echo "$out" >&2; exit 1; }
digest=$(printf '%s\n' "$out" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' | tail -n1)
[ -n "$digest" ] || { echo "push reported no digest: $out" >&2; exit 1; }
[ "${KEEP_LOCAL:-0}" = 1 ] || docker rmi -f "$ref" >/dev/null 2>&1 || true
printf '%s\n' "$digest"
