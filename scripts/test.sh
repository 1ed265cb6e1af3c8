#!/usr/bin/env bash
# The whole test suite: unit and integration tests of the engine and the SDK
# (against real compiled plugins and real redb files), the plugins' own tests,
# the engine's image as a container service (tests/container-service.sh), and a
# job through Podman (tests/podman.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

results=$(mktemp)
trap 'rm -f "$results"' EXIT

t=$SECONDS
echo "== cargo test --workspace (builds the plugins for wasm32-wasip2 on the way)"
cargo test --workspace --locked 2>&1 | tee -a "$results"
echo "engine and SDK tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== cargo test in plugins/ (first-party plugins' logic, natively)"
cargo test --manifest-path plugins/Cargo.toml --workspace --locked 2>&1 | tee -a "$results"
echo "plugin tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== tests/container-service.sh (the repository's Dockerfile, run as a container service)"
bash tests/container-service.sh 2>&1 | tee -a "$results"
echo "container service tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== tests/podman.sh (a job through Podman's Docker-compatible API)"
bash tests/podman.sh 2>&1 | tee -a "$results"
echo "podman tests: $((SECONDS - t)) s"

# One closing line for the whole suite.
awk '/^test result:/ || /^[a-z][a-z ]*: [0-9]+ passed, [0-9]+ failed$/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$results"
