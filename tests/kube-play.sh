#!/usr/bin/env bash
# The Pod manifest of the services example, run for real: `slipway
# pod-manifest` of examples/services-app (as a repository of its own, at a
# commit) with its profile, tier full and plain sidecars, played with
# `podman kube play`. Checks, each by name: `slipway run` through Docker
# builds the job's image and passes; the manifest names that very image
# (same content hash) and the exact commit; the Pod starts; the checkout
# init container fetches the commit; the workload waits for PostgreSQL and
# Redis through the readiness plugins' probes, runs the steps and exits 0
# with the unittest run `OK`; the securityContext took effect on the
# workload (uid 1000, read-only root, no capabilities, no-new-privileges)
# and a service kept only its five capabilities; `podman kube down` leaves
# nothing of the Pod.
#
# Images: postgres:15, redis:7 and the checkout image (default
# slipway:test, the engine's image, which has git; SLIPWAY_TEST_IMAGE
# overrides it; tests/container-service.sh builds it) are copied from
# Docker into Podman's store when missing, and kept there. Nothing is
# pulled from a registry (`--build=false`, `imagePullPolicy: IfNotPresent`).
#
# Ends with `kube play: N passed, M failed` (counted by scripts/test.sh) and
# exits non-zero on any failure. Needs podman, docker and git: without them
# it fails, it does not skip. Removes what it creates (the Pod, the job
# image's tags in Docker and Podman, temporary folders).
#
#   bash tests/kube-play.sh            # SLIPWAY_BIN=<path to slipway>
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

suite="kube play"
# shellcheck source=tests/checks.sh
. tests/checks.sh

bin=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/slipway}
[ -x "$bin" ] || fatal "the slipway binary is built" "$bin is missing: run cargo build -p slipway (scripts/test.sh does) or set SLIPWAY_BIN"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
for tool in podman docker git; do
	command -v "$tool" >/dev/null 2>&1 || fatal "$tool is installed" "apt-get install podman docker.io git (scripts/setup.sh does); this test does not skip"
done
docker version >/dev/null 2>&1 || fatal "docker answers" "the images are copied from Docker into Podman; start dockerd with scripts/setup.sh"
checkout_image=${SLIPWAY_TEST_IMAGE:-slipway:test}

started=$SECONDS
tmp="$(mktemp -d /var/tmp/slipway-kube-play.XXXXXX)"
chmod 755 "$tmp"
manifest="$tmp/pod.yaml"
tag=
cleanup() {
	[ -f "$manifest" ] && podman kube down "$manifest" >/dev/null 2>&1
	if [ -n "$tag" ]; then
		podman rmi -f "$tag" >/dev/null 2>&1
		docker rmi "$tag" >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Podman keeps its own images: the services' and the checkout's must be there.
for image in postgres:15 redis:7 "$checkout_image"; do
	if ! podman image exists "$image"; then
		docker image inspect "$image" >/dev/null 2>&1 ||
			fatal "$image is in Docker" "build it: scripts/images.sh (postgres, redis) or tests/container-service.sh (slipway:test)"
		docker save "$image" | podman load >/dev/null 2>&1 ||
			fatal "$image loads into Podman" "docker save $image | podman load failed"
	fi
done
pass "the services' and the checkout's images are in Podman's store"

# The example as a repository of its own, at a commit (a Pod checks out a
# whole repository at an exact SHA).
repo="$tmp/services-app"
cp -r examples/services-app "$repo"
git -C "$repo" init -q && git -C "$repo" add -A &&
	git -C "$repo" -c user.name=slipway -c user.email=slipway@localhost commit -qm app ||
	fatal "the example is committed to a repository of its own" "git failed"
chmod -R a+rX "$repo"
sha=$(git -C "$repo" rev-parse HEAD)
profile="$root/examples/services-app/slipway.toml"

# The job's image, built the way every job's is (through Docker here).
out="$(SLIPWAY_STATE_DIR="$tmp/state" "$bin" run "$repo" --profile "$profile" --tier fast --raw 2>&1)"
code=$?
tag=$(grep -o 'slipway-runner/[a-z0-9.-]*:[0-9a-f]*' <<<"$out" | head -1)
if [ "$code" = 0 ] && [ -n "$tag" ]; then
	pass "slipway run builds the job's image through Docker and passes"
else
	fatal "slipway run builds the job's image through Docker and passes" "exit $code; last lines:" "$(tail -15 <<<"$out")"
fi

"$bin" pod-manifest "$repo" --profile "$profile" --tier full --sidecars plain \
	--checkout-image "$checkout_image" >"$manifest" 2>"$tmp/manifest.err"
code=$?
[ "$code" = 0 ] || fatal "slipway pod-manifest writes the Pod" "exit $code:" "$(cat "$tmp/manifest.err")"
pass "slipway pod-manifest writes the Pod"
if grep -qx "    image: $tag" "$manifest"; then
	pass "the manifest names the image slipway run built (same content hash)"
else
	fail "the manifest names the image slipway run built (same content hash)" "built: $tag" "$(grep 'image:' "$manifest")"
fi
if grep -A1 -- '- name: SLIPWAY_CHECKOUT_SHA' "$manifest" | grep -qx "      value: $sha"; then
	pass "the checkout init container fetches the exact commit"
else
	fail "the checkout init container fetches the exact commit" "HEAD is $sha" "$(grep -A1 SLIPWAY_CHECKOUT_SHA "$manifest")"
fi

docker save "$tag" | podman load >/dev/null 2>&1 || fatal "the job's image loads into Podman" "docker save $tag | podman load failed"
pod=$(sed -n 's/^  name: //p' "$manifest" | head -1)
job="$pod-job"

# From an empty folder: kube play builds an image whose name matches a
# folder of the current directory; --build=false says never.
mkdir "$tmp/play"
play_started=$SECONDS
if (cd "$tmp/play" && podman kube play --build=false "$manifest") >"$tmp/play.log" 2>&1; then
	pass "podman kube play starts the Pod (the checkout init container succeeded)"
else
	fatal "podman kube play starts the Pod (the checkout init container succeeded)" "$(tail -5 "$tmp/play.log")" \
		"checkout log:" "$(podman logs "$pod-checkout" 2>&1 | tail -5)"
fi

# The services are plain containers: the Pod keeps running after the
# workload exits, so wait for the workload itself.
state=
deadline=$((SECONDS + 180))
while [ $SECONDS -lt $deadline ]; do
	state=$(podman inspect --format '{{.State.Status}}' "$job" 2>/dev/null)
	[ "$state" = exited ] && break
	sleep 0.5
done
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$job" 2>/dev/null)
log=$(podman logs "$job" 2>&1)
if [ "$state" = exited ] && [ "$exit_code" = 0 ]; then
	pass "the workload exits 0 ($((SECONDS - play_started)) s after kube play)"
else
	fail "the workload exits 0" "state ${state:-?}, exit ${exit_code:-?}; its log:" "$(tail -20 <<<"$log")"
fi
if grep -q 'slipway: service `db` is ready' <<<"$log" && grep -q 'slipway: service `cache` is ready' <<<"$log"; then
	pass "the workload waited for db and cache through their probes"
else
	fail "the workload waited for db and cache through their probes" "$(head -5 <<<"$log")"
fi
if grep -q '^Ran 3 tests' <<<"$log" && grep -qx 'OK' <<<"$log" && grep -q ':end 2 0$' <<<"$log"; then
	pass "the example's unittest run passes inside the Pod (Ran 3 tests, OK)"
else
	fail "the example's unittest run passes inside the Pod (Ran 3 tests, OK)" "$(tail -20 <<<"$log")"
fi

hardening=$(podman inspect --format 'user={{.Config.User}} ro={{.HostConfig.ReadonlyRootfs}} caps={{.EffectiveCaps}} opts={{.HostConfig.SecurityOpt}}' "$job" 2>&1)
if [[ "$hardening" == "user=1000:1000 ro=true caps=[] opts="*no-new-privileges* ]]; then
	pass "the workload ran as uid 1000 with a read-only root, no capabilities, no-new-privileges"
else
	fail "the workload ran as uid 1000 with a read-only root, no capabilities, no-new-privileges" "$hardening"
fi
service_caps=$(podman inspect --format '{{.EffectiveCaps}}' "$pod-db" 2>&1)
if [ "$service_caps" = "[CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_SETGID CAP_SETUID]" ]; then
	pass "the db service kept only the five capabilities its entrypoint needs"
else
	fail "the db service kept only the five capabilities its entrypoint needs" "$service_caps"
fi

if podman kube down "$manifest" >"$tmp/down.log" 2>&1 && ! podman pod exists "$pod" &&
	[ -z "$(podman ps -aq --filter "pod=$pod" 2>/dev/null)" ]; then
	pass "podman kube down removes the Pod and its containers"
else
	fail "podman kube down removes the Pod and its containers" "$(cat "$tmp/down.log")" "$(podman ps -a --filter "pod=$pod")"
fi

echo "kube play: $((SECONDS - started)) s"
summary
[ "$failed" = 0 ]
