#!/usr/bin/env bash
# Installs what Slipway needs to build and test on a fresh Debian 12 machine.
# Idempotent: skips what is already there. Used by scripts/demo.sh,
# scripts/test.sh and .ci/run alike, so CI proves the README.
set -euo pipefail

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

if ! command -v cargo >/dev/null 2>&1; then
  # The Rust toolchain comes from rustup (Debian's rustc is too old: Slipway needs 1.95).
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "error: cargo not found; install Rust 1.95 or newer with rustup (https://rustup.rs) and run this again" >&2
    exit 1
  fi
fi

need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
# tests/container-service.sh talks to the engine's API with curl.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The CA bundle the tests hand to image builds that fetch from package registries.
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
# tests/container-service.sh runs examples/deploy/compose.yaml with it
# (Debian's Compose v1; this Docker CLI has no `docker compose` plugin).
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
# tests/podman.sh runs a job through Podman's Docker-compatible API;
# catatonit is Podman's `--init`, which job containers use.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v catatonit >/dev/null 2>&1 || need_apt+=(catatonit)
# The SSH checkout test runs its own sshd on loopback (never the system
# service: see below) and its client.
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# The dashboard's browser tests drive headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# The store suite and the replica tests start their own PostgreSQL servers
# (initdb in a temporary directory, on loopback); the package's own cluster
# is not started here and nothing else needs it.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# scripts/api-fuzz.sh runs Schemathesis from a virtual environment.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their services (the system sshd, PostgreSQL) here.
  no_start=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    no_start=1
  fi
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
  [ -z "$no_start" ] || rm -f /usr/sbin/policy-rc.d
fi

# Podman's default open-files and process limits are too low for package
# managers on these machines: raise them (once) in its configuration.
conf=/etc/containers/containers.conf
if ! grep -qs '^default_ulimits' "$conf"; then
  step "raising Podman's default ulimits in $conf"
  mkdir -p "$(dirname "$conf")"
  if grep -qs '^\[containers\]' "$conf"; then
    sed -i '/^\[containers\]/a default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' "$conf"
  else
    printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n' >>"$conf"
  fi
fi

if ! grep -qx wasm32-wasip2 <<<"$(rustup target list --installed 2>/dev/null)"; then
  step "rustup target add wasm32-wasip2 (plugins are WebAssembly components)"
  rustup target add wasm32-wasip2
fi

# The Docker daemon: start it where it is not running (no bridge network on
# these machines: containers use `none`, or `host` for builds).
docker_up() { docker version >/dev/null 2>&1; }
if ! docker_up; then
  # A dockerd that is still starting or shutting down: give it a moment.
  for _ in $(seq 1 50); do
    pgrep -x dockerd >/dev/null || break
    docker_up && break
    sleep 0.2
  done
fi
if ! docker_up; then
  if pgrep -x dockerd >/dev/null; then
    echo "error: dockerd is running but does not answer on /var/run/docker.sock; see its log" >&2
    exit 1
  fi
  step "starting dockerd"
  rm -f /var/run/docker.pid /var/run/docker.sock
  nohup dockerd --bridge=none --iptables=false --ip6tables=false >/var/log/slipway-dockerd.log 2>&1 &
  for _ in $(seq 1 150); do
    docker_up && break
    sleep 0.2
  done
  docker_up || { echo "error: dockerd did not start; see /var/log/slipway-dockerd.log" >&2; tail -20 /var/log/slipway-dockerd.log >&2; exit 1; }
fi
bash "$(dirname "$0")/images.sh"

# Schemathesis, pinned, for scripts/api-fuzz.sh (the API contract against a live engine).
fuzz_venv=${SLIPWAY_FUZZ_VENV:-/opt/slipway-schemathesis}
fuzz_pin=$(grep -m1 '^schemathesis==' "$(dirname "$0")/../tests/api-fuzz/requirements.txt")
if [ "$("$fuzz_venv/bin/python" -m pip freeze 2>/dev/null | grep -m1 '^schemathesis==')" != "$fuzz_pin" ]; then
  step "installing $fuzz_pin into $fuzz_venv"
  python3 -m venv "$fuzz_venv"
  "$fuzz_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$(dirname "$0")/../tests/api-fuzz/requirements.txt"
fi

echo "setup: done in $((SECONDS - started)) s ($(cargo --version))"
