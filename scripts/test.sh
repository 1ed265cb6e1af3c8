#!/usr/bin/env bash
# The whole test suite: unit and integration tests of the engine and the SDK
# (against real compiled plugins and real redb files), the plugins' own tests,
# the engine's image as a container service (tests/container-service.sh), a
# job through Podman (tests/podman.sh), and the services example's Pod
# manifest under `podman kube play` (tests/kube-play.sh), after rustfmt and
# clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Every bundled example runs its full tier (engine/tests/all/examples.rs): their
# base images too (node, ruby, golang, rust stand-ins).
t=$SECONDS
bash scripts/images.sh --all
echo "example images: $((SECONDS - t)) s"

results=$(mktemp)
image_log=$(mktemp)
trap 'rm -f "$results" "$image_log"; [ -z "${image_pid:-}" ] || kill "$image_pid" 2>/dev/null' EXIT

# The engine's image (tests/container-service.sh) is the longest single build
# and needs nothing the cargo tests build: it starts now, in the background
# and below everything else in CPU weight, and fills what the lints and
# tests leave idle.
image_t=$SECONDS
bash tests/engine-image.sh --background >"$image_log" 2>&1 &
image_pid=$!

# Lints first: cheap, and a red lint should not wait for the whole suite.
t=$SECONDS
echo "== cargo fmt --check, cargo clippy --all-targets -D warnings (engine, SDK, plugins), rustdoc links"
lint=0
cargo fmt --all --check || lint=1
cargo fmt --manifest-path plugins/Cargo.toml --all --check || lint=1
cargo clippy --workspace --all-targets --locked -- -D warnings || lint=1
cargo clippy --manifest-path plugins/Cargo.toml --workspace --all-targets --locked -- -D warnings || lint=1
# The library documents every public item (#![warn(missing_docs)]); its links must resolve.
RUSTDOCFLAGS="-D warnings" cargo doc -p slipway --no-deps --locked --quiet || lint=1
if [ "$lint" = 0 ]; then
	echo "lints: 1 passed, 0 failed" | tee -a "$results"
else
	echo "lints: 0 passed, 1 failed" | tee -a "$results"
fi
echo "lints: $((SECONDS - t)) s"

t=$SECONDS
echo "== cargo test --workspace (builds the plugins for wasm32-wasip2 on the way)"
# All but the Docker daemon restart test, which would stop the engine image's
# build: it runs once that build is done (below).
restart_test=a_daemon_restart_mid_step_is_an_infrastructure_failure_with_nothing_left_behind
cargo test --workspace --locked -- --skip "$restart_test" 2>&1 | tee -a "$results"
echo "engine and SDK tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== scripts/api-fuzz.sh (Schemathesis against a live serve: the API contract)"
# The debug binary the workspace tests just built.
bash scripts/api-fuzz.sh "${CARGO_TARGET_DIR:-target}/debug/slipway" 2>&1 | tee -a "$results"
echo "api fuzz: $((SECONDS - t)) s"

t=$SECONDS
echo "== cargo test in plugins/ (first-party plugins' logic, natively)"
cargo test --manifest-path plugins/Cargo.toml --workspace --locked 2>&1 | tee -a "$results"
echo "plugin tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== tests/engine-image.sh (in the background since the start)"
wait "$image_pid" || true
image_pid=
tail -n 1 "$image_log"
echo "engine image: ready $((SECONDS - image_t)) s after it started, waited $((SECONDS - t)) s for it"

t=$SECONDS
echo "== the Docker daemon restart test (alone: it stops every container)"
cargo test -p slipway --locked --test zz_docker_daemon_restart -- --exact "$restart_test" 2>&1 | tee -a "$results"
echo "daemon restart test: $((SECONDS - t)) s"
t=$SECONDS
echo "== tests/container-service.sh (the repository's Dockerfile, run as a container service)"
SLIPWAY_ENGINE_IMAGE_LOG="$image_log" bash tests/container-service.sh 2>&1 | tee -a "$results"
echo "container service tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== tests/podman.sh (a job through Podman's Docker-compatible API)"
bash tests/podman.sh 2>&1 | tee -a "$results"
echo "podman tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== tests/kube-play.sh (the services example's Pod manifest under podman kube play)"
# After container-service.sh: its slipway:test image is the checkout image.
bash tests/kube-play.sh 2>&1 | tee -a "$results"
echo "kube play tests: $((SECONDS - t)) s"

# Nothing Slipway labelled outlives the suite (a removal retried in the
# background after the daemon restart test may still be on its way: 30 s).
echo "== leftovers (docker ps -a --filter label=io.slipway.managed)"
left=""
for _ in $(seq 30); do
	left=$(docker ps -aq --filter label=io.slipway.managed)
	[ -z "$left" ] && break
	sleep 1
done
if [ -z "$left" ]; then
	echo "leftovers: 1 passed, 0 failed" | tee -a "$results"
else
	docker ps -a --filter label=io.slipway.managed --format '{{.Names}} {{.Status}} {{.Labels}}'
	echo "leftovers: 0 passed, 1 failed" | tee -a "$results"
fi

# One closing line for the whole suite.
awk '/^test result:/ || /^[a-z][a-z ]*: [0-9]+ passed, [0-9]+ failed$/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$results"
[ -z "$left" ] || { echo "the suite left containers labelled io.slipway.managed (above)"; exit 1; }
[ "$lint" = 0 ] || { echo "fmt, clippy or rustdoc found problems (above, under == cargo fmt)"; exit 1; }
