#!/usr/bin/env bash
# sluice quickstart: a real rollout on this machine, end to end.
#
#   deploy/quickstart.sh            (needs Docker, curl, and cargo or SLUICE_BIN)
#
# 1. a local registry on 127.0.0.1:${QS_REGISTRY_PORT:-5000} (reused if one answers);
# 2. two versions of a tiny demo app (busybox, FROM scratch) pushed as .../sluice-demo/app:stable;
# 3. sluice on its defaults (API 127.0.0.1:${QS_PORT:-7878}) with a ${QS_SOAK:-20s} soak;
# 4. three workspaces (one canary, two production) running v1, each with a data volume;
# 5. push v2, apply it to the canary, wait out the soak, promote, `sluice rollout watch`;
# 6. push a broken v3 (it rewrites the tenant's data, then its health check fails): the
#    canary rolls back, image and data, and the rollout aborts before production is touched.
# Everything it creates is removed at the end (QS_KEEP=1 keeps it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
reg_port=${QS_REGISTRY_PORT:-5000}
api_port=${QS_PORT:-7878}
reg=127.0.0.1:$reg_port
image=$reg/sluice-demo/app:stable
work=$(mktemp -d /tmp/sluice-quickstart.XXXXXX)
names=(demo-canary demo-prod-1 demo-prod-2)
tiers=(canary production production)
ports=(18081 18082 18083)
sluice_pid=""
registry_pid=""

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\nquickstart: FAILED: %s\n' "$*" >&2; [ -f "$work/sluice.log" ] && tail -n 40 "$work/sluice.log" >&2; exit 1; }

cleanup() {
    set +e
    if [ "${QS_KEEP:-0}" = 1 ]; then
        echo "kept: sluice (pid $sluice_pid), workspaces, $work"
        return
    fi
    if [ -n "$sluice_pid" ]; then
        for n in "${names[@]}"; do sl workspace remove "$n" --purge >/dev/null 2>&1; done
        kill "$sluice_pid" 2>/dev/null; wait "$sluice_pid" 2>/dev/null
    fi
    for n in "${names[@]}"; do docker rm -f "sluice-$n" >/dev/null 2>&1; docker volume rm -f "$n-data" >/dev/null 2>&1; done
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
    docker rm -f sluice-qs-registry >/dev/null 2>&1
    docker images -q "${image%:*}" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "Docker is not running"
command -v curl >/dev/null || die "curl is needed"

# The binary.
sluice_bin=${SLUICE_BIN:-}
if [ -z "$sluice_bin" ]; then
    say "building sluice"
    (cd "$repo" && cargo build --quiet --locked)
    sluice_bin=$repo/target/debug/sluice
fi
export SLUICE_TOKEN
SLUICE_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
sl() { "$sluice_bin" --config "$work/sluice.toml" "$@"; }

# 1. Registry.
if curl -fsS "http://$reg/v2/" >/dev/null 2>&1; then
    say "using the registry already on $reg"
elif command -v docker-registry >/dev/null; then
    say "starting docker-registry on $reg"
    cat > "$work/registry.yml" <<YML
version: 0.1
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: $reg }
YML
    docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
else
    say "starting registry:2 on $reg"
    docker run -d --name sluice-qs-registry -p "$reg:5000" registry:2 >/dev/null
fi
for _ in $(seq 1 50); do curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://$reg/v2/" >/dev/null || die "no registry on $reg"

push() { # push MODE VERSION: builds the demo app and moves the :stable tag to it
    "$repo/tests/env/build-fixture.sh" "$1" "$2" "$image"
}

# 2. v1.
say "building and pushing demo app v1 as $image"
v1=$(push good v1); echo "v1 = $v1"

# 3. sluice.
cat > "$work/sluice.toml" <<TOML
[data]
dir = "$work/data"
[api]
listen = "127.0.0.1:$api_port"
[poll]
interval = "2s"
jitter = 0.0
[rollout]
soak = "${QS_SOAK:-20s}"
pause_between_waves = "2s"
[update]
min_healthy_time = "2s"
healthy_deadline = "20s"
reconcile_interval = "2s"
[[auth.tokens]]
name = "quickstart"
role = "admin"
token = "$SLUICE_TOKEN"
TOML
say "starting sluice (API on 127.0.0.1:$api_port, log $work/sluice.log)"
"$sluice_bin" --config "$work/sluice.toml" run >"$work/sluice.log" 2>&1 &
sluice_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null || die "sluice is not ready"

# 4. Workspaces.
say "adding three workspaces: one canary, two production"
for i in 0 1 2; do
    sl workspace add "${names[$i]}" --image "$image" --tier "${tiers[$i]}" \
        --volume "${names[$i]}-data:/data" --port "8080:${ports[$i]}" --health-port 8080
done

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    die "timed out after ${limit}s waiting for $what"
}
all_on() { # all_on DIGEST: every workspace runs it, healthy
    [ "$(sl --json workspace list | grep -c "\"actual_digest\": \"$1\"")" = 3 ] &&
        [ "$(sl workspace list | awk 'NR > 1 && $4 == "running" && $5 == "healthy"' | wc -l)" = 3 ]
}
wait_for 120 "three workspaces running v1" all_on "$v1"
sl workspace list

say "the canary's tenant writes data"
docker exec sluice-demo-canary sh -c 'echo "order #1001, written before the updates" > /data/orders.txt'
echo "boots of demo-canary: $(curl -fsS "http://127.0.0.1:${ports[0]}/boots")"

release_of() { # release_of DIGEST: prints the release id once the watcher found it
    sl release list | awk -v d="${1:0:19}" 'NR > 1 && $3 == d { print $1 }'
}
rollout_state() { sl --json rollout show "$1" | sed -n 's/^  "state": "\([a-z_]*\)".*/\1/p'; }
has_release() { [ -n "$(release_of "$1")" ]; }
rollout_is() { [ "$(rollout_state "$1")" = "$2" ]; }
runs() { # runs NAME DIGEST: the workspace runs DIGEST (read whole, then matched)
    local shown
    shown=$(sl --json workspace show "$1") || return 1
    [[ $shown == *"\"actual_digest\": \"$2\""* ]]
}

# 5. v2 through canary, soak, production.
say "pushing demo app v2"
v2=$(push good v2); echo "v2 = $v2"
wait_for 60 "the watcher to detect v2" has_release "$v2"
r2=$(release_of "$v2")
sl release list
say "applying release $r2 to the canary tier"
out=$(sl release apply "$r2" --tier canary); echo "$out"
rollout2=$(printf '%s\n' "$out" | sed -n 's/^rollout \([0-9]*\) .*/\1/p')
[ -n "$rollout2" ] || die "no rollout id in: $out"
wait_for 120 "the canary to be updated and soaking" rollout_is "$rollout2" soaking
sl rollout show "$rollout2"
say "soaking ${QS_SOAK:-20s}, then promoting to production"
wait_for 60 "the soak to pass (promote accepted)" sl rollout promote "$rollout2"
timeout 300 "$sluice_bin" --config "$work/sluice.toml" rollout watch "$rollout2" || die "rollout $rollout2 did not complete"
wait_for 60 "all three on v2" all_on "$v2"
sl workspace list

# 6. A broken v3.
say "pushing a broken v3 (it migrates the tenant's data, then its /health answers 500)"
v3=$(push migrates-then-fails v3); echo "v3 = $v3"
wait_for 60 "the watcher to detect v3" has_release "$v3"
r3=$(release_of "$v3")
say "applying release $r3 to the canary tier"
out=$(sl release apply "$r3" --tier canary); echo "$out"
rollout3=$(printf '%s\n' "$out" | sed -n 's/^rollout \([0-9]*\) .*/\1/p')
if timeout 300 "$sluice_bin" --config "$work/sluice.toml" rollout watch "$rollout3"; then
    die "rollout $rollout3 of a broken image completed"
fi
echo "(rollout watch exited non-zero: the rollout ended $(rollout_state "$rollout3"))"
wait_for 60 "the canary back on v2" runs demo-canary "$v2"
sl workspace show demo-canary
say "the canary's data after the rollback"
data=$(docker exec sluice-demo-canary cat /data/orders.txt) || die "orders.txt is gone"
echo "/data/orders.txt: $data"
[ "$data" = "order #1001, written before the updates" ] || die "the canary's data changed"
for i in 1 2; do
    runs "${names[$i]}" "$v2" || die "${names[$i]} was touched by the broken release"
done
echo "production workspaces stayed on v2"
sl events --limit 200 | tail -n 15

say "quickstart finished: v2 rolled out canary → soak → production; broken v3 rolled back on the canary with its data intact"
