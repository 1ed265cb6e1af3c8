#!/usr/bin/env bash
# The Docker runner against Podman's Docker-compatible API: a private
# `podman system service` on its own socket, the test image loaded into
# Podman's store, and `slipway run` of a small repository with
# DOCKER_HOST pointing at Podman. Checks, each by name: the job passes, its
# image is built through Podman, the step runs as uid 1000 with no
# capabilities, its output and end marker come through Podman's logs API
# (timestamps read, marker found), a job survives kill -9 of `slipway
# serve` (adopted, each line once, attempt 1), and nothing labelled
# io.slipway.managed is left in Podman.
#
# Ends with `podman: N passed, M failed` (counted by scripts/test.sh) and
# exits non-zero on any failure. Needs podman and catatonit (scripts/setup.sh
# installs them and raises Podman's default ulimits): without them this
# fails, it does not skip. Removes what it creates (the service, the job's
# image, temporary folders); the loaded test image is kept.
#
#   bash tests/podman.sh            # SLIPWAY_BIN=<path to slipway>
set -uo pipefail
cd "$(dirname "$0")/.."

suite=podman
# shellcheck source=tests/checks.sh
. tests/checks.sh

bin=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/slipway}
[ -x "$bin" ] || fatal "the slipway binary is built" "$bin is missing: run cargo build -p slipway (scripts/test.sh does) or set SLIPWAY_BIN"
for tool in podman catatonit; do
	command -v "$tool" >/dev/null 2>&1 || fatal "$tool is installed" "apt-get install podman catatonit (scripts/setup.sh does); this test does not skip"
done
docker version >/dev/null 2>&1 || fatal "docker answers" "the test image is copied from Docker into Podman; start dockerd with scripts/setup.sh"

tmp="$(mktemp -d /var/tmp/slipway-podman.XXXXXX)"
chmod 755 "$tmp"
socket="$tmp/podman.sock"
service_pid=
serve_pid=
cleanup() {
	[ -z "$serve_pid" ] || kill -9 "$serve_pid" 2>/dev/null
	[ -z "$service_pid" ] || kill "$service_pid" 2>/dev/null
	podman ps -aq --filter label=io.slipway.managed=true | xargs -r podman rm -f >/dev/null 2>&1
	podman images --format '{{.Repository}}:{{.Tag}}' | grep "slipway-runner/.*podman-app" | xargs -r podman rmi -f >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Podman keeps its own images: the job's base image must be there.
if ! podman image exists slipway-test/busybox:1; then
	docker save slipway-test/busybox:1 | podman load >/dev/null 2>&1 \
		|| fatal "the test image loads into Podman" "docker save slipway-test/busybox:1 | podman load failed"
fi
pass "the test image is in Podman's store"

podman system service --time=0 "unix://$socket" >"$tmp/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 1 100); do
	[ -S "$socket" ] && break
	sleep 0.1
done
[ -S "$socket" ] || fatal "podman system service listens" "no socket at $socket; its log:" "$(tail -5 "$tmp/service.log")"
pass "podman system service listens on its own socket"

repo="$tmp/podman-app"
mkdir -p "$repo"
printf 'FROM slipway-test/busybox:1\nWORKDIR /workspace\n' >"$repo/Dockerfile"
cat >"$tmp/profile.toml" <<'EOF'
name = "podman"
[validation]
fast = ["echo uid=$(id -u); grep CapEff /proc/self/status"]
EOF

# --raw: the log as stored (epoch ms and stream names), which the checks below read.
out="$(DOCKER_HOST="unix://$socket" SLIPWAY_STATE_DIR="$tmp/state" "$bin" run "$repo" --profile "$tmp/profile.toml" --raw 2>&1)"
code=$?
if [ "$code" = 0 ] && grep -q ": succeeded" <<<"$out"; then
	pass "slipway run through Podman succeeds"
else
	fail "slipway run through Podman succeeds" "exit $code; last lines:" "$(tail -15 <<<"$out")"
fi
if grep -qE '^[0-9]{13} stdout uid=1000$' <<<"$out" && grep -qE '^[0-9]{13} stdout CapEff:.*0000000000000000$' <<<"$out"; then
	pass "the step ran as uid 1000 with no capabilities"
else
	fail "the step ran as uid 1000 with no capabilities" "$(grep -E 'uid=|CapEff' <<<"$out")"
fi
# The output came through Podman's logs API with its timestamps read and
# the step's end marker found (not settled by the container's exit code).
if grep -q 'step `fast-1` passed in' <<<"$out" && ! grep -q "cut short" <<<"$out" && ! grep -q '##slipway' <<<"$out"; then
	pass "the step's output and its end came through Podman's logs API"
else
	fail "the step's output and its end came through Podman's logs API" "$(tail -15 <<<"$out")"
fi
# Read the list whole first: `podman images | grep -q` under pipefail fails
# when grep exits at the first match and podman gets SIGPIPE.
images=$(podman images --format '{{.Repository}}')
if grep -q "slipway-runner/.*podman-app" <<<"$images"; then
	pass "the job's image was built through Podman"
else
	fail "the job's image was built through Podman" "$(podman images --format '{{.Repository}}:{{.Tag}}')"
fi
# ---- the engine killed (kill -9) mid-step and started again ----------
# `slipway serve` through Podman: the new engine finds the job's container
# by its labels and follows it from where the log stops (Podman's logs API
# with timestamps), as it does with Docker (engine/tests/all/engine_restart.rs).
git -C "$repo" init -q && git -C "$repo" add -A &&
	git -C "$repo" -c user.name=slipway -c user.email=slipway@localhost commit -qm app
state="$tmp/serve-state"
port=$((20000 + RANDOM % 20000))
url="http://127.0.0.1:$port"
token=podman-test-token
serve() {
	DOCKER_HOST="unix://$socket" SLIPWAY_STATE_DIR="$state" SLIPWAY_LISTEN="127.0.0.1:$port" \
		SLIPWAY_TOKEN="$token" SLIPWAY_ALLOW_LOCAL_PATHS=true "$bin" serve >>"$tmp/serve.log" 2>&1 &
	serve_pid=$!
	for _ in $(seq 1 100); do
		curl -sf "$url/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
api() { curl -sS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
job= job_state= log=
if serve; then
	api -o /dev/null -d '{"name":"adopt","validation":{"fast":["echo before-$((6*7)); sleep 4; echo after-$((6*7))"]}}' "$url/api/v1/profiles"
	submitted=$(api -d "{\"repository\":\"$repo\",\"commit\":\"HEAD\",\"profile\":\"adopt\"}" "$url/api/v1/jobs")
	job=$(grep -o '"id": *[0-9]*' <<<"$submitted" | head -1 | grep -o '[0-9]*$')
	deadline=$((SECONDS + 120))
	until [[ "$(api "$url/api/v1/jobs/$job/logs")" == *"stdout before-42"* ]] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
	kill -9 "$serve_pid"
	wait "$serve_pid" 2>/dev/null
	serve_pid=
	if serve; then
		deadline=$((SECONDS + 60))
		while [ $SECONDS -lt $deadline ]; do
			job_json=$(api "$url/api/v1/jobs/$job")
			job_state=$(grep -o '"state": *"[a-z_]*"' <<<"$job_json" | head -1 | cut -d'"' -f4)
			case "$job_state" in queued | running | retrying | "") sleep 0.3 ;; *) break ;; esac
		done
		attempt=$(grep -o '"attempt": *[0-9]*' <<<"$job_json" | head -1 | grep -o '[0-9]*$')
		log=$(api "$url/api/v1/jobs/$job/logs")
	fi
fi
if [ "$job_state" = succeeded ] && [ "${attempt:-}" = 1 ] && [[ "$log" == *"following the job container again"* ]] &&
	[ "$(grep -c 'stdout before-42' <<<"$log")" = 1 ] && [ "$(grep -c 'stdout after-42' <<<"$log")" = 1 ]; then
	pass "a job survives kill -9 of the engine: adopted through Podman, each line once, attempt 1"
else
	fail "a job survives kill -9 of the engine: adopted through Podman, each line once, attempt 1" \
		"job ${job:-?}: state ${job_state:-?}, attempt ${attempt:-?}" "job log:" "$(tail -n 15 <<<"$log")" \
		"engine log:" "$(tail -n 15 "$tmp/serve.log")"
fi
if [ -n "$serve_pid" ]; then
	kill "$serve_pid"
	wait "$serve_pid" 2>/dev/null
	serve_pid=
fi

left="$(podman ps -aq --filter label=io.slipway.managed=true)"
if [ -z "$left" ]; then
	pass "nothing labelled io.slipway.managed is left in Podman"
else
	fail "nothing labelled io.slipway.managed is left in Podman" "$left"
fi

summary
[ "$failed" = 0 ]
