#!/usr/bin/env bash
# The API's contract checked against a live engine: starts `slipway serve` on
# a free loopback port with a throwaway state directory and token, runs
# Schemathesis (pinned in tests/api-fuzz/requirements.txt, installed by
# scripts/setup.sh) with every check and the stateful phase, then stops the
# engine. Builds nothing: the binary is $1, else $SLIPWAY_BIN, else
# ${CARGO_TARGET_DIR:-target}/debug/slipway. Prints `api fuzz: N passed, M failed`
# (N and M count operations) and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=${1:-${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/slipway}}
venv=${SLIPWAY_FUZZ_VENV:-/opt/slipway-schemathesis}
[ -x "$bin" ] || { echo "api fuzz: no slipway binary at $bin (cargo build -p slipway first)" >&2; echo "api fuzz: 0 passed, 1 failed"; exit 1; }
[ -x "$venv/bin/st" ] || { echo "api fuzz: no Schemathesis in $venv (run scripts/setup.sh)" >&2; echo "api fuzz: 0 passed, 1 failed"; exit 1; }

work=$(mktemp -d)
serve_pid=
# What the fuzzed requests make (managed services' containers and volumes) is
# removed afterwards: what exists now is kept.
managed() { docker "$@" --filter label=io.slipway.managed -q 2>/dev/null | sort; }
containers_before=$(managed ps -a)
volumes_before=$(managed volume ls)
cleanup() {
	if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
		kill -TERM "$serve_pid" 2>/dev/null || true
		for _ in $(seq 150); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$serve_pid" 2>/dev/null || true
	fi
	comm -13 <(echo "$containers_before") <(managed ps -a) | xargs -r docker rm -f -v >/dev/null 2>&1 || true
	comm -13 <(echo "$volumes_before") <(managed volume ls) | xargs -r docker volume rm -f >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="fuzz-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
env -u SLIPWAY_CONFIG -u SLIPWAY_TOKEN_FILE -u SLIPWAY_PLUGINS_DIR \
	SLIPWAY_STATE_DIR="$work/state" SLIPWAY_LISTEN="127.0.0.1:$port" SLIPWAY_TOKEN="$token" \
	SLIPWAY_LOG="${SLIPWAY_LOG:-warn}" SLIPWAY_AUTH_FAILURE_LIMIT=1000000 \
	"$bin" serve >"$work/serve.log" 2>&1 &
serve_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 150); do
	curl -fsS "$base/readyz" >/dev/null 2>&1 && break
	kill -0 "$serve_pid" 2>/dev/null || break
	sleep 0.2
done
if ! curl -fsS "$base/readyz" >/dev/null 2>&1; then
	echo "api fuzz: serve did not get ready; its log:" >&2
	tail -30 "$work/serve.log" >&2
	echo "api fuzz: 0 passed, 1 failed"
	exit 1
fi

# Bounded: a fixed seed, a fixed number of examples per operation, and a time
# budget well inside the suite's (about a minute on 2 cores).
started=$SECONDS
status=0
"$venv/bin/st" --config-file tests/api-fuzz/schemathesis.toml run "$base/api/v1/openapi.json" \
	--header "Authorization: Bearer $token" \
	--phases examples,coverage,fuzzing,stateful \
	--seed 20260401 --max-examples "${SLIPWAY_FUZZ_EXAMPLES:-25}" --workers 2 \
	--generation-database none --no-color \
	--report junit --report-junit-path "$work/junit.xml" \
	>"$work/st.log" 2>&1 || status=$?
took=$((SECONDS - started))
# The run's own summary and every failure it explains.
sed -En '/^=+ (FAILURES|ERRORS|SUMMARY) =+$/,$p' "$work/st.log" | head -400
if grep -qiE 'panicked|internal error' "$work/serve.log"; then
	echo "api fuzz: the engine logged a panic or an internal error:" >&2
	grep -iE 'panicked|internal error' "$work/serve.log" | head -20 >&2
	status=1
fi
# Operations that failed, and the rest: from the JUnit report (a test case per operation).
read -r passed failed < <(python3 - "$work/junit.xml" "$status" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
    results = [any(c.tag in ("failure", "error") for c in case) for case in cases]
    failed = sum(results)
    passed = len(results) - failed
except (OSError, ET.ParseError):
    passed, failed = 0, 1
if sys.argv[2] != "0" and failed == 0:
    failed = 1
print(passed, failed)
PY
)
echo "api fuzz: schemathesis took ${took} s (exit $status)"
echo "api fuzz: $passed passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
