#!/usr/bin/env bash
# Build the engine's image from the repository's Dockerfile (slipway:test, or
# SLIPWAY_TEST_IMAGE), with the stand-in base images it needs. Used by
# tests/container-service.sh, and started early in the background by
# scripts/test.sh: it is the longest single build of the suite and needs
# nothing the cargo tests build.
#
# `--cpu-shares` puts the build below everything else on the machine while
# it runs beside the cargo tests: it takes the CPU they leave idle, and the
# tests keep their timing.
#
# The last line is `engine image: built in N s, dependency layer cached:
# yes|no` or `engine image: FAILED ...` (exit 1), after the build's log.
#
#   bash tests/engine-image.sh [--background]
set -uo pipefail
cd "$(dirname "$0")/.."

image=${SLIPWAY_TEST_IMAGE:-slipway:test}
shares=()
[ "${1:-}" = --background ] && shares=(--cpu-shares 64)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! bash scripts/images.sh --engine >"$log" 2>&1; then
	cat "$log"
	echo "engine image: FAILED: the stand-in base images (scripts/images.sh --engine)"
	exit 1
fi
grep -E 'rust:1.95-slim|debian:bookworm-slim' "$log"

old_ids=()
for tag in "$image" "$image-build" "$image-skeleton"; do
	old_ids+=("$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null)")
done
t0=$SECONDS
if ! docker build "${shares[@]}" --network host -t "$image" . >"$log" 2>&1; then
	tail -n 30 "$log"
	echo "engine image: FAILED: docker build -t $image . (its last lines above)"
	exit 1
fi
build_s=$((SECONDS - t0))
cached_deps=no
grep -A1 'cargo build --release --locked -p slipway  *&& cargo build' "$log" | grep -c 'Using cache' >/dev/null && cached_deps=yes
# The build and skeleton stages, tagged so that the next build's cache is
# known (both come from the cache just filled), and the previous versions (a
# target/ directory each) removed.
docker build --network host --target build -t "$image-build" . >>"$log" 2>&1
docker build --network host --target skeleton -t "$image-skeleton" . >>"$log" 2>&1
for old in "${old_ids[@]}"; do
	[ -n "$old" ] || continue
	if [ "$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
		docker rmi "$old" >/dev/null 2>&1 || true
	fi
done
echo "engine image: built in $build_s s, dependency layer cached: $cached_deps"
