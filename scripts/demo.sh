#!/usr/bin/env bash
# Sets up this machine, builds Slipway and runs its main job on a bundled example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo build --release (first build: several minutes)"
cargo build --release --locked -p slipway
slipway="${CARGO_TARGET_DIR:-target}/release/slipway"

echo
echo "== slipway plugins list"
"$slipway" plugins list
echo
echo "== slipway plugins new make-ci: scaffold a third-party plugin, build it, verify it in the sandbox"
work=$(mktemp -d)
"$slipway" plugins new make-ci --dir "$work"
(cd "$work/make-ci" && cargo build --quiet --release --target wasm32-wasip2)
"$slipway" plugins verify "$work/make-ci"
