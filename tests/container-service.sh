#!/usr/bin/env bash
# The engine as a container service, as examples/deploy/compose.yaml runs it:
# the repository's Dockerfile is built (slipway:test), then the image is
# started next to this machine's Docker daemon and checked, each check by name:
# the image's user, healthcheck and stop signal; health, /readyz; a job
# submitted over HTTP that runs in a sibling container; `slipway doctor`
# inside; a clean `docker stop`; and the faults an operator can make (no
# socket, state directory at another path inside, a wrong token file, a
# read-only state directory), each refused with one clear message. Then
# examples/deploy/compose.yaml itself, run in place with docker-compose
# (its deployment-specific values overridden by environment variables):
# healthy, a job over HTTP from the host to succeeded in a sibling
# container, `docker-compose down` with a clean exit and nothing left.
#
# Ends with `container service: N passed, M failed` (counted by
# scripts/test.sh) and exits non-zero on any failure. Needs Docker: without
# it (or without docker-compose, which scripts/setup.sh installs) this fails,
# it does not skip. Talks to 127.0.0.1 only. Everything it creates
# (containers, the Compose project, volumes, runner images, temporary
# folders) is removed on exit; slipway:test and its build cache are kept so
# rebuilds are fast.
#
#   bash tests/container-service.sh            # SLIPWAY_TEST_IMAGE=slipway:test
set -uo pipefail
cd "$(dirname "$0")/.."

image=${SLIPWAY_TEST_IMAGE:-slipway:test}
run_id="cs-$$"
suite="container service"
# shellcheck source=tests/checks.sh
. tests/checks.sh
figures=()
figure() { figures+=("$1"); echo "       $1"; }
now_ms() { date +%s%3N; }

if ! command -v docker >/dev/null 2>&1 || ! docker version >/dev/null 2>&1; then
	fatal "docker answers" "the Docker CLI or daemon is missing (scripts/setup.sh installs and starts it); this test does not skip"
fi
command -v curl >/dev/null 2>&1 || fatal "curl is installed" "apt-get install curl (scripts/setup.sh does)"

tmp="$(mktemp -d /var/tmp/slipway-cs.XXXXXX)"
chmod 755 "$tmp"
engine_name="slipway-$run_id"
app=container-service-app   # the job repository's folder, $tmp/$app
# Its runner image and caches are named after the last two components of its
# path (slipway-runner/<slug>:<hash>): this run's only.
slug="$(basename "$tmp" | tr 'A-Z.' 'a-z-')-$app"

cleanup() {
	local ids
	# The Compose project, if it is still up (its container is also labelled
	# io.slipway.test, see compose.test.yaml below).
	[ -z "$compose_up" ] || compose down -v -t 10 >/dev/null 2>&1
	ids=$(docker ps -aq --filter "label=io.slipway.test=$run_id")
	[ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1
	# What the engine under test may have left (it should not: checked below).
	for engine in "${engine_ids[@]:-}"; do
		[ -n "$engine" ] || continue
		ids=$(docker ps -aq --filter "label=io.slipway.engine=$engine")
		[ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1
	done
	docker images --format '{{.Repository}}:{{.Tag}}' | grep "^slipway-runner/$slug:" | xargs -r docker rmi -f >/dev/null 2>&1
	docker volume ls -q --filter label=io.slipway.role=cache | grep -- "-$slug\$" | xargs -r docker volume rm -f >/dev/null 2>&1
	# A read-only bind mount of the fault check, if it is still there.
	mountpoint -q "$tmp/ro-state" 2>/dev/null && umount "$tmp/ro-state"
	rm -rf --one-file-system "$tmp"
}
engine_ids=()
compose_up=
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the image ---------------------------------------------------------

# Built here, or already built by scripts/test.sh in the background
# (SLIPWAY_ENGINE_IMAGE_LOG: that build's output, ending in its status line).
if [ -n "${SLIPWAY_ENGINE_IMAGE_LOG:-}" ]; then
	echo "== the engine image, built in the background (tests/engine-image.sh)"
	built=$(cat "$SLIPWAY_ENGINE_IMAGE_LOG")
else
	echo "== the engine image (tests/engine-image.sh)"
	built=$(bash tests/engine-image.sh 2>&1)
fi
status=$(printf '%s\n' "$built" | tail -n 1)
if [[ "$status" != "engine image: built in "* ]]; then
	fatal "the Dockerfile builds" "$(printf '%s\n' "$built" | tail -n 30)"
fi
build_s=${status#engine image: built in }
build_s=${build_s%% s,*}
cached_deps=${status##*cached: }
pass "the Dockerfile builds ($build_s s, dependency layer cached: $cached_deps)"
figure "image build: $build_s s (dependency layer cached: $cached_deps)"
size_mb=$(($(docker image inspect -f '{{.Size}}' "$image") / 1000000))
figure "image size: $size_mb MB"

user=$(docker image inspect -f '{{.Config.User}}' "$image")
# probe CMD...: CMD in the image; a bind mount in place of its VOLUME, so no
# anonymous volume is left behind.
mkdir -p "$tmp/probe"
probe() { docker run --rm --network none -v "$tmp/probe:/var/lib/slipway" --entrypoint "$1" "$image" "${@:2}"; }
uid=$(probe id -u 2>&1)
health=$(docker image inspect -f '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$image")
stopsignal=$(docker image inspect -f '{{.Config.StopSignal}}' "$image")
if [ -n "$user" ] && [ "$uid" != 0 ] && [[ "$uid" =~ ^[0-9]+$ ]] && [[ "$health" == *healthcheck* ]] && [ "$stopsignal" = SIGTERM ]; then
	pass "the image runs as a non-root user ($user, uid $uid), has a HEALTHCHECK and STOPSIGNAL SIGTERM"
else
	fail "the image runs as a non-root user, has a HEALTHCHECK and STOPSIGNAL SIGTERM" \
		"user=$user uid=$uid healthcheck=$health stopsignal=$stopsignal"
fi

# ---- the service, as compose.yaml runs it ------------------------------

sock=/var/run/docker.sock
sock_gid=$(stat -c %g "$sock")
# The engine's user (see the Dockerfile) owns its state directory.
engine_uid=$uid
engine_gid=$(probe id -g)

# new_state NAME: a state directory the engine may write, under $tmp.
new_state() {
	install -d -o "$engine_uid" -g "$engine_gid" -m 750 "$tmp/$1"
	echo "$tmp/$1"
}
# The token, as a Docker secret is: a file mounted read-only.
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$tmp/secrets"
printf '%s\n' "$token" >"$tmp/secrets/slipway_token"
chown "$engine_uid:$engine_gid" "$tmp/secrets/slipway_token"
chmod 400 "$tmp/secrets/slipway_token"
# The job's repository: a plain folder (local paths allowed), mounted
# read-only at its own path; its image is the stand-in busybox.
repo="$tmp/$app"
mkdir -p "$repo"
printf 'FROM slipway-test/busybox:1\nWORKDIR /workspace\n' >"$repo/Dockerfile"
printf 'the app\n' >"$repo/app.txt"
chmod -R a+rX "$repo"

free_port() {
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
	done
	echo 0
}

# engine_id STATE_DIR: the io.slipway.engine label of the engine of STATE_DIR.
engine_id() { echo "serve-$(printf '%s' "$1" | sha256sum | cut -c1-16)"; }

state=$(new_state state)
port=$(free_port)
url="http://127.0.0.1:$port"
engine_ids+=("$(engine_id "$state")")
started_ms=$(now_ms)
if ! docker run -d --name "$engine_name" --label "io.slipway.test=$run_id" \
	--network host \
	--group-add "$sock_gid" \
	-v "$sock:$sock" \
	-v "$state:$state" \
	-e "SLIPWAY_STATE_DIR=$state" \
	-e "SLIPWAY_LISTEN=127.0.0.1:$port" \
	-e "SLIPWAY_URL=$url" \
	-v "$tmp/secrets/slipway_token:/run/secrets/slipway_token:ro" \
	-e SLIPWAY_TOKEN_FILE=/run/secrets/slipway_token \
	-e SLIPWAY_LOG_JSON=true \
	-e SLIPWAY_ALLOW_LOCAL_PATHS=true \
	-v "$repo:$repo:ro" \
	"$image" >"$tmp/run.log" 2>&1; then
	fatal "the engine container starts" "$(cat "$tmp/run.log")"
fi

ready_ms=
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
	if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; then
		ready_ms=$(($(now_ms) - started_ms))
		break
	fi
	[ "$(docker inspect -f '{{.State.Running}}' "$engine_name")" = true ] || break
	sleep 0.1
done
if [ -n "$ready_ms" ]; then
	pass "/readyz answers 200 ($ready_ms ms after docker run)"
	figure "time to /readyz: $ready_ms ms"
else
	fatal "/readyz answers 200" "not within 60 s; the engine's log:" "$(docker logs --tail 30 "$engine_name" 2>&1)"
fi

status=
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
	status=$(docker inspect -f '{{.State.Health.Status}}' "$engine_name")
	[ "$status" = healthy ] && break
	sleep 0.5
done
if [ "$status" = healthy ]; then
	pass "docker reports the container healthy"
else
	fail "docker reports the container healthy" "status: $status" \
		"$(docker inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}' "$engine_name")"
fi

# rss_of CONTAINER: VmRSS of its main process, and the cgroup's memory use.
rss_of() {
	local pid
	pid=$(docker inspect -f '{{.State.Pid}}' "$1")
	echo "$(awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status") RSS, $(docker stats --no-stream --format '{{.MemUsage}}' "$1" | cut -d/ -f1 | tr -d ' ') in the container's cgroup"
}
figure "idle memory after start: $(rss_of "$engine_name")"

if out=$(docker exec "$engine_name" slipway doctor 2>&1); then
	pass "slipway doctor passes inside the engine container"
else
	fail "slipway doctor passes inside the engine container" "$out"
fi

# ---- a job over HTTP, in a sibling container ---------------------------

api() { curl -sS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
# job_check NAME CONTAINER URL STATE_DIR: a job submitted over HTTP from the
# host to the engine at URL (in CONTAINER, with STATE_DIR) runs to succeeded
# in a sibling container, and its checkout is removed after.
job_check() {
	local name=$1 engine_name=$2 url=$3 state=$4
	local job_state= job_json= log= left_checkouts= created submitted job deadline
	created=$(api -o /dev/null -w '%{http_code}' -d '{"name":"container-service","validation":{"fast":["cat app.txt","id -u"]}}' "$url/api/v1/profiles")
	submitted=$(api -d "{\"repository\":\"$repo\",\"commit\":\"HEAD\",\"tier\":\"fast\",\"profile\":\"container-service\"}" "$url/api/v1/jobs")
	job=$(printf '%s' "$submitted" | grep -o '"id": *[0-9]*' | head -1 | grep -o '[0-9]*$')
	if [ "$created" = 201 ] && [ -n "$job" ]; then
		deadline=$((SECONDS + 180))
		while [ $SECONDS -lt $deadline ]; do
			job_json=$(api "$url/api/v1/jobs/$job")
			job_state=$(printf '%s' "$job_json" | grep -o '"state": *"[a-z_]*"' | head -1 | cut -d'"' -f4)
			case "$job_state" in queued | running | retrying | "") sleep 0.5 ;; *) break ;; esac
		done
		log=$(api "$url/api/v1/jobs/$job/logs")
		# The engine removes the job's checkout (files the steps wrote included).
		for _ in $(seq 1 50); do
			left_checkouts=$(find "$state/checkouts" -mindepth 1 -maxdepth 1 2>/dev/null)
			[ -z "$left_checkouts" ] && break
			sleep 0.1
		done
	fi
	if [ "$job_state" = succeeded ] && [[ "$log" == *"the app"* ]] && [[ "$log" == *"1000"* ]] && [ -z "$left_checkouts" ]; then
		pass "$name (checkout mounted from the shared state directory, removed after)"
	else
		fail "$name" \
			"profile: HTTP $created; submit: $(printf '%s' "$submitted" | head -c 300)" \
			"state: ${job_state:-?}; $(printf '%s' "$job_json" | grep -o '"reason": *"[^"]*"' | tail -1)" \
			"checkouts left: ${left_checkouts:-none}" "job log:" "$(printf '%s' "$log" | tail -n 20)" \
			"engine log:" "$(docker logs --tail 20 "$engine_name" 2>&1)"
	fi
}
job_check "a job submitted over HTTP runs to succeeded in a sibling container" "$engine_name" "$url" "$state"
sleep 2
figure "idle memory after one job: $(rss_of "$engine_name")"

# ---- self-update ---------------------------------------------------------

# wait_job URL ID: the job's final state (or the last seen after 180 s).
wait_job() {
	local url=$1 job=$2 state='' deadline=$((SECONDS + 180))
	while [ $SECONDS -lt $deadline ]; do
		state=$(api "$url/api/v1/jobs/$job" | grep -o '"state": *"[a-z_]*"' | head -1 | cut -d'"' -f4)
		case "$state" in queued | running | retrying | "") sleep 0.5 ;; *) break ;; esac
	done
	echo "$state"
}
# submit_job URL PROFILE: the new job's id.
submit_job() {
	api -d "{\"repository\":\"$repo\",\"commit\":\"HEAD\",\"tier\":\"fast\",\"profile\":\"$2\"}" "$1/api/v1/jobs" \
		| grep -o '"id": *[0-9]*' | head -1 | grep -o '[0-9]*$'
}
# self_update ARGS...: `slipway self-update` as an operator runs it: the
# CLI of the image, in a container of its own, against the engine.
self_update() {
	docker run --rm --network host --label "io.slipway.test=$run_id" \
		-v "$tmp/secrets/slipway_token:/run/secrets/slipway_token:ro" \
		-e SLIPWAY_TOKEN_FILE=/run/secrets/slipway_token -e "SLIPWAY_URL=$url" \
		"$image" self-update "$@"
}
engine_image() { docker inspect -f '{{.Image}}' "$engine_name" 2>/dev/null; }
json_field() { grep -o "\"$1\": *\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

self_update_phase() {
	local out code job job_state before_id next_id left status backup backups_before t0 update_ms rollback_ms
	echo "== self-update"
	backups_before=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E ':backup-[0-9]+$' | sort)
	# The next version: a label apart. The broken one: its `serve` never
	# listens (every other command works, the update worker included).
	mkdir -p "$tmp/update-ctx"
	printf 'FROM %s\nLABEL io.slipway.test.version=next\n' "$image" >"$tmp/update-ctx/next.Dockerfile"
	printf '#!/bin/sh\n[ "$1" = serve ] && exec sleep 3600\nexec /usr/local/bin/slipway.real "$@"\n' >"$tmp/update-ctx/slipway"
	chmod 755 "$tmp/update-ctx/slipway"
	printf 'FROM %s-next\nCOPY --from=%s-next /usr/local/bin/slipway /usr/local/bin/slipway.real\nCOPY slipway /usr/local/bin/slipway\n' \
		"$image" "$image" >"$tmp/update-ctx/broken.Dockerfile"
	if ! { docker build -q -t "$image-next" -f "$tmp/update-ctx/next.Dockerfile" "$tmp/update-ctx" \
		&& docker build -q -t "$image-broken" -f "$tmp/update-ctx/broken.Dockerfile" "$tmp/update-ctx"; } >"$tmp/next.log" 2>&1; then
		fail "self-update: the test images build" "$(cat "$tmp/next.log")"
		return
	fi
	before_id=$(engine_image)
	next_id=$(docker image inspect -f '{{.Id}}' "$image-next")

	code=$(api -o "$tmp/same.json" -w '%{http_code}' -d "{\"image\":\"$image\"}" "$url/api/v1/system/update")
	if [ "$code" = 409 ] && grep -q 'already runs image' "$tmp/same.json"; then
		pass "self-update to the image the engine runs: refused (409, already current)"
	else
		fail "self-update to the image the engine runs: refused with 409" "HTTP $code: $(cat "$tmp/same.json")"
	fi

	# A job mid-step when the update starts: taken over by the new engine.
	api -o /dev/null -d '{"name":"slow","validation":{"fast":["sleep 4","cat app.txt"]}}' "$url/api/v1/profiles"
	job=$(submit_job "$url" slow)
	for _ in $(seq 1 60); do
		[ "$(api "$url/api/v1/jobs/$job" | json_field state)" = running ] && break
		sleep 0.5
	done
	t0=$(now_ms)
	out=$(self_update --image "$image-next" --timeout 60 2>&1)
	code=$?
	update_ms=$(($(now_ms) - t0))
	job_state=$(wait_job "$url" "$job")
	left=$(docker ps -a --format '{{.Names}}' | grep -E "^$engine_name-(replaced|update)-" || true)
	status=$(api "$url/api/v1/system/update")
	backup=$(printf '%s' "$status" | json_field backup)
	if [ "$code" = 0 ] && [ "$(engine_image)" = "$next_id" ] && [ "$job_state" = succeeded ] \
		&& [ -z "$left" ] && [ "$(printf '%s' "$status" | json_field state)" = updated ] \
		&& [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ] \
		&& [ "$(docker image inspect -f '{{.Id}}' "$backup" 2>/dev/null)" = "$before_id" ]; then
		pass "slipway self-update: the engine container runs the new image and is ready ($update_ms ms), a job mid-step is taken over to succeeded, the old image is kept as $backup, no worker or old container left"
		figure "self-update to ready: $update_ms ms"
	else
		fail "slipway self-update: the engine runs the new image, ready, the running job succeeded" \
			"exit $code: $out" "engine image: $(engine_image) (want $next_id, was $before_id)" \
			"job $job: ${job_state:-?}" "left: ${left:-none}" "status: $status" \
			"engine log:" "$(docker logs --tail 20 "$engine_name" 2>&1)"
	fi

	t0=$(now_ms)
	out=$(self_update --image "$image-broken" --timeout 10 2>&1)
	code=$?
	rollback_ms=$(($(now_ms) - t0))
	status=$(api "$url/api/v1/system/update")
	left=$(docker ps -a --format '{{.Names}}' | grep -E "^$engine_name-(replaced|update)-" || true)
	job=$(submit_job "$url" slow)
	job_state=$(wait_job "$url" "$job")
	if [ "$code" = 1 ] && [[ "$out" == *"rolled back"* ]] && [ "$(engine_image)" = "$next_id" ] \
		&& [ "$(printf '%s' "$status" | json_field state)" = rolled_back ] && [[ "$status" == *"not ready within 10 s"* ]] \
		&& [ -z "$left" ] && [ "$job_state" = succeeded ]; then
		pass "self-update to an image whose engine never becomes ready: rolled back in $rollback_ms ms, the previous engine serves again and runs jobs"
		printf '       %s\n' "$(printf '%s' "$out" | tail -1)"
		figure "self-update rollback (10 s readiness timeout): $rollback_ms ms"
	else
		fail "self-update to a broken image rolls back" "exit $code: $out" \
			"engine image: $(engine_image) (want $next_id)" "status: $status" "left: ${left:-none}" \
			"job after: ${job_state:-?}" "engine log:" "$(docker logs --tail 20 "$engine_name" 2>&1)"
	fi
	# The backup tags this run made.
	comm -13 <(printf '%s\n' "$backups_before") \
		<(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E ':backup-[0-9]+$' | sort) \
		| xargs -r docker rmi >/dev/null 2>&1
}
self_update_phase

# ---- docker stop -------------------------------------------------------

stop_timeout=60
t0=$(now_ms)
docker stop -t "$stop_timeout" "$engine_name" >/dev/null
stop_ms=$(($(now_ms) - t0))
code=$(docker inspect -f '{{.State.ExitCode}}' "$engine_name")
left=$(docker ps -aq --filter label=io.slipway.managed --filter "label=io.slipway.engine=$(engine_id "$state")")
if [ "$code" = 0 ] && [ "$stop_ms" -lt $((stop_timeout * 1000)) ] && [ -z "$left" ]; then
	pass "docker stop: exit code 0 in $stop_ms ms, nothing labelled io.slipway.managed left"
else
	fail "docker stop: exit code 0 within ${stop_timeout} s, nothing labelled io.slipway.managed left" \
		"exit code $code after $stop_ms ms; left: ${left:-none}" "$(docker logs --tail 20 "$engine_name" 2>&1)"
fi
figure "docker stop: $stop_ms ms"

# ---- faults: refused at start with one clear message -------------------

# fault NAME EXPECTED DOCKER-RUN-ARGS...: the engine, started with the
# arguments, exits non-zero within 60 s and its log holds EXPECTED. Most use
# `--network none` (they fail before listening); the state-directory check
# uses `--network host`, as compose.yaml does: the engine finds its own
# container from /proc/self/mountinfo, not from the hostname (the host's).
fault() {
	local name=$1 expected=$2 cname="slipway-$run_id-fault-$((passed + failed))" code out
	shift 2
	if ! docker run -d --name "$cname" --label "io.slipway.test=$run_id" \
		-v "$tmp/secrets/slipway_token:/run/secrets/slipway_token:ro" \
		-e SLIPWAY_TOKEN_FILE=/run/secrets/slipway_token \
		"$@" "$image" >"$tmp/run.log" 2>&1; then
		fail "$name" "docker run failed: $(cat "$tmp/run.log")"
		return
	fi
	code=$(timeout 60 docker wait "$cname" 2>/dev/null || echo "still running after 60 s")
	out=$(docker logs "$cname" 2>&1)
	docker rm -f -v "$cname" >/dev/null 2>&1
	if [ "$code" != 0 ] && [[ "$code" =~ ^[0-9]+$ ]] && [[ "$out" == *"$expected"* ]]; then
		pass "$name (exit $code)"
		printf '       %s\n' "$(printf '%s' "$out" | grep -F -- "$expected" | head -1)"
	else
		fail "$name" "exit code: $code; expected in the log: $expected" "log:" "$out"
	fi
}

shared=$(new_state fault-shared)
engine_ids+=("$(engine_id "$shared")")
fault "without the Docker socket: refused" \
	"no Docker or Podman engine answered; tried: unix:///var/run/docker.sock" \
	--network none -v "$shared:$shared" -e "SLIPWAY_STATE_DIR=$shared"

elsewhere=$(new_state fault-elsewhere)
inside=/var/lib/slipway-state
engine_ids+=("$(engine_id "$inside")")
fault "state directory mounted at another path inside, under host networking: refused with the -v fix" \
	"but the daemon resolves checkout paths on the host side (fix: mount it at the same path, \`-v $inside:$inside\`" \
	--network host -e "SLIPWAY_LISTEN=127.0.0.1:$(free_port)" --group-add "$sock_gid" -v "$sock:$sock" -v "$elsewhere:$inside" -e "SLIPWAY_STATE_DIR=$inside"

fault "a wrong token file path: refused" \
	"reading the token file /run/secrets/slipway_tokn" \
	--network none --group-add "$sock_gid" -v "$sock:$sock" -v "$shared:$shared" -e "SLIPWAY_STATE_DIR=$shared" \
	-e SLIPWAY_TOKEN_FILE=/run/secrets/slipway_tokn

readonly_state=$(new_state fault-readonly)
engine_ids+=("$(engine_id "$readonly_state")")
fault "a read-only state directory: refused" \
	"Read-only file system" \
	--network none --group-add "$sock_gid" -v "$sock:$sock" -v "$readonly_state:$readonly_state:ro" -e "SLIPWAY_STATE_DIR=$readonly_state"

# ---- examples/deploy/compose.yaml, run in place with docker-compose -----

# The real file, unchanged and in place; its deployment-specific values come
# from the environment (see its header): this image, a state directory
# under $tmp, a free loopback port, the socket's group, the token file and
# an empty plugins folder under $tmp (so nothing is created next to it).
compose_file=examples/deploy/compose.yaml
compose_project="slipway-$run_id"
compose_state=$(new_state compose-state)
compose_port=$(free_port)
compose_url="http://127.0.0.1:$compose_port"
engine_ids+=("$(engine_id "$compose_state")")
mkdir -p "$tmp/compose-plugins"
# What the test adds on top (a second -f, as an operator's override file
# would): the job's repository, a local folder mounted read-only at its own
# path, and the label the cleanup finds.
cat >"$tmp/compose.test.yaml" <<EOF
services:
  slipway:
    environment:
      SLIPWAY_ALLOW_LOCAL_PATHS: "true"
    volumes:
      - $repo:$repo:ro
    labels:
      io.slipway.test: $run_id
EOF
# compose ARGS...: docker-compose on the project of this run.
compose() {
	SLIPWAY_IMAGE=$image SLIPWAY_STATE_DIR=$compose_state SLIPWAY_PORT=$compose_port DOCKER_GID=$sock_gid \
		SLIPWAY_TOKEN_HOST_FILE=$tmp/secrets/slipway_token SLIPWAY_PLUGINS_HOST_DIR=$tmp/compose-plugins \
		docker-compose -p "$compose_project" -f "$compose_file" -f "$tmp/compose.test.yaml" "$@"
}

compose_phase() {
	local out deploy_before cid status healthy_ms code stop_ms left volumes gone
	echo "== docker-compose -f $compose_file ($(docker-compose version --short 2>/dev/null))"
	# The defaults, as a production host gets them without any variable set.
	if out=$(env -u SLIPWAY_IMAGE -u SLIPWAY_STATE_DIR -u SLIPWAY_PORT -u DOCKER_GID -u SLIPWAY_TOKEN_HOST_FILE \
		-u SLIPWAY_PLUGINS_HOST_DIR docker-compose -f "$compose_file" config 2>&1) \
		&& [[ "$out" == *"network_mode: host"* ]] && [[ "$out" != *"ports:"* ]] \
		&& [[ "$out" == *"/var/lib/slipway:/var/lib/slipway:rw"* ]] \
		&& [[ "$out" == *"SLIPWAY_LISTEN: 127.0.0.1:7878"* ]] && [[ "$out" == *"SLIPWAY_URL: http://127.0.0.1:7878"* ]] \
		&& [[ "$out" == *"image: slipway:latest"* ]]; then
		pass "compose.yaml is valid; its defaults: slipway:latest, host networking on 127.0.0.1:7878, /var/lib/slipway at the same path inside and out"
	else
		fail "compose.yaml is valid with the expected defaults (docker-compose config)" "$out"
	fi

	deploy_before=$(ls -A examples/deploy)
	started_ms=$(now_ms)
	if ! out=$(compose up -d --no-build 2>&1); then
		fail "docker-compose up -d starts the engine" "$out"
		return
	fi
	compose_up=yes
	cid=$(compose ps -q slipway)
	status=
	deadline=$((SECONDS + 90))
	while [ $SECONDS -lt $deadline ]; do
		status=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>&1)
		[ "$status" = healthy ] && break
		[ "$(docker inspect -f '{{.State.Running}}' "$cid")" = true ] || break
		sleep 0.5
	done
	if [ "$status" = healthy ]; then
		healthy_ms=$(($(now_ms) - started_ms))
		pass "docker-compose up -d: the engine becomes healthy ($healthy_ms ms; the first healthcheck runs after its 10 s interval)"
		figure "compose: up to healthy: $healthy_ms ms"
	else
		fail "docker-compose up -d: the engine becomes healthy" "status: $status" \
			"$(docker inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}' "$cid" 2>&1)" \
			"$(compose logs --tail 30 2>&1)"
		return
	fi

	job_check "compose: a job submitted over HTTP from the host runs to succeeded in a sibling container" \
		"$cid" "$compose_url" "$compose_state"

	# docker-compose down: stops with the service's stop_grace_period (60 s)
	# and removes the container; its exit code is caught by `docker wait`.
	volumes=$(docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$cid")
	docker wait "$cid" >"$tmp/compose-exit" 2>&1 &
	local waiter=$!
	sleep 0.2
	t0=$(now_ms)
	out=$(compose down -v 2>&1)
	stop_ms=$(($(now_ms) - t0))
	compose_up=
	wait "$waiter"
	code=$(cat "$tmp/compose-exit")
	left=$(docker ps -aq --filter label=io.slipway.managed --filter "label=io.slipway.engine=$(engine_id "$compose_state")")
	left+=$(docker ps -aq --filter "label=com.docker.compose.project=$compose_project")
	for v in $volumes; do
		docker volume inspect "$v" >/dev/null 2>&1 && left+=" volume $v"
	done
	if [ "$code" = 0 ] && [ "$stop_ms" -lt 60000 ] && [ -z "$left" ]; then
		pass "docker-compose down: the engine exits 0 in $stop_ms ms, nothing labelled io.slipway.managed left, the project's container and volumes removed"
	else
		fail "docker-compose down: the engine exits 0 within 60 s, nothing labelled io.slipway.managed left" \
			"exit code: $code after $stop_ms ms; left: ${left:-none}" "$out"
	fi
	figure "compose: docker-compose down: $stop_ms ms"

	if [ "$(ls -A examples/deploy)" = "$deploy_before" ]; then
		pass "compose: nothing written next to compose.yaml (token and plugins from \$tmp)"
	else
		fail "compose: nothing written next to compose.yaml" "before: $deploy_before" "after: $(ls -A examples/deploy)"
	fi
}

if command -v docker-compose >/dev/null 2>&1; then
	compose_phase
else
	fail "docker-compose is installed" "scripts/setup.sh installs Debian's docker-compose (apt-get install docker-compose); this test does not skip"
fi

echo "== figures"
for f in "${figures[@]}"; do echo "   $f"; done
summary
[ "$failed" = 0 ]
