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
echo "== slipway plan examples/node-app: detect the repo and plan its image, setup and validation"
"$slipway" plan examples/node-app
echo
echo "== slipway run examples/services-app --tier full: a job whose tests use PostgreSQL and Redis"
echo "   (exact-commit checkout, image built once by content hash, services in the job's private"
echo "   network namespace, waited for by the postgres and redis readiness plugins)"
"$slipway" run examples/services-app --profile examples/services-app/slipway.toml --tier full
