#!/usr/bin/env bash
# The whole test suite: unit and integration tests of the engine and the SDK
# (against real compiled plugins), and the plugins' own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

t=$SECONDS
echo "== cargo test --workspace (builds the plugins for wasm32-wasip2 on the way)"
cargo test --workspace --locked
echo "engine and SDK tests: $((SECONDS - t)) s"

t=$SECONDS
echo "== cargo test in plugins/ (first-party plugins' logic, natively)"
cargo test --manifest-path plugins/Cargo.toml --workspace --locked
echo "plugin tests: $((SECONDS - t)) s"
