#!/bin/sh
# Installs sluice as a systemd service: binary, config, token file, unit.
#
#   sudo deploy/install.sh [--binary PATH] [--root DIR] [--no-start]
#
# --binary  the sluice binary to install (default: target/release/sluice, built if absent)
# --root    install under DIR instead of / (packaging, tests); implies --no-start
# --no-start  install only; do not create the user or run systemctl
# An existing /etc/sluice/sluice.toml or tokens.toml is never overwritten.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
binary=""
root=""
start=1

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --root) root=$2; start=0; shift 2 ;;
        --no-start) start=0; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ -z "$binary" ]; then
    binary="$repo/target/release/sluice"
    if [ ! -x "$binary" ]; then
        echo "building $binary" >&2
        (cd "$repo" && cargo build --release --locked)
    fi
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (or use --root DIR)" >&2
    exit 1
fi

if [ "$start" = 1 ]; then
    getent group docker >/dev/null || { echo "install.sh: no docker group; install Docker first" >&2; exit 1; }
    if ! getent passwd sluice >/dev/null; then
        useradd --system --home-dir /var/lib/sluice --no-create-home \
            --shell /usr/sbin/nologin --user-group sluice
    fi
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/local/share/doc/sluice"
install -m 0755 "$binary" "$root/usr/local/bin/sluice"
install -m 0644 "$here/sluice.service" "$root/etc/systemd/system/sluice.service"
[ -f "$repo/docs/operations.md" ] && install -m 0644 "$repo/docs/operations.md" "$root/usr/local/share/doc/sluice/operations.md"
install -d -m 0750 "$root/etc/sluice"
if [ ! -f "$root/etc/sluice/sluice.toml" ]; then
    install -m 0640 "$here/sluice.toml" "$root/etc/sluice/sluice.toml"
fi
if [ ! -f "$root/etc/sluice/tokens.toml" ]; then
    token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    umask 077
    cat > "$root/etc/sluice/tokens.toml" <<TOKENS
# API tokens: name (the audit actor), role (admin | read), token (16+ characters).
[[tokens]]
name = "admin"
role = "admin"
token = "$token"
TOKENS
    chmod 0640 "$root/etc/sluice/tokens.toml"
    echo "created $root/etc/sluice/tokens.toml with an admin token; use it as SLUICE_TOKEN"
fi
if [ "$start" = 1 ]; then
    chgrp sluice /etc/sluice /etc/sluice/sluice.toml /etc/sluice/tokens.toml
    systemctl daemon-reload
    systemctl enable --now sluice.service
    systemctl --no-pager status sluice.service || true
    echo "sluice installed; logs: journalctl -u sluice -f"
else
    echo "sluice installed under ${root:-/} (not started)"
fi
