#!/usr/bin/env bash
# Builds the local images the tests, the examples and the engine's defaults
# use, without a container registry (none is reachable on the development
# machines; Debian's mirror is):
#   slipway-test/busybox:1   a tiny image from Debian's busybox-static (tests),
#                            also tagged busybox:1.36 (the default pod holder)
#   debian:bookworm-slim     Debian 12 from debootstrap --variant=minbase
#   python:3.11-slim, postgres:15, redis:7
#                            stand-ins for the official images, built from the
#                            Dockerfiles in scripts/images/<name>/ on that base
# With --all, also node:18-slim, ruby:3.1-slim, golang:1.19 and rust:1.63-slim.
# With --engine, also rust:1.95-slim, the build stage of the repository's own
# Dockerfile (the engine's image): this machine's rustup and Rust 1.95
# toolchain (with the wasm32-wasip2 target) copied onto the base, see
# scripts/images/rust-1.95/Dockerfile.
#
# Idempotent: every image carries io.slipway.content=<hash of its recipe> (the
# base's covers the debootstrap recipe, each stand-in's covers its folder and
# the base's image id); an image whose label matches is kept, and a rebuilt
# base rebuilds everything on it. An image of one of these names that this script
# did not build (no label: e.g. the real one, pulled from a registry) is kept.
# Needs root (debootstrap) and a running dockerd; builds use --network host
# (the daemon has no bridge network here).
set -Eeuo pipefail

usage() {
	sed -n '2,/^set -E/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	echo "usage: $0 [--all] [--engine]"
}

all=false
engine=false
for arg in "$@"; do
	case "$arg" in
		--all) all=true ;;
		--engine) engine=true ;;
		-h | --help) usage; exit 0 ;;
		*) echo "error: unknown argument: $arg (usage: $0 [--all] [--engine])" >&2; exit 2 ;;
	esac
done

here="$(cd "$(dirname "$0")" && pwd)"
recipes="$here/images"
started=$SECONDS
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # debootstrap lives in /usr/sbin

die() { echo "error: images.sh: $*" >&2; exit 1; }
trap 'echo "error: images.sh: \`$BASH_COMMAND\` failed (exit $?) at line $LINENO" >&2' ERR

docker version >/dev/null 2>&1 || die "the Docker daemon does not answer; start it with scripts/setup.sh"

# One run at a time (setup.sh and test.sh may both call this).
exec 9>/tmp/slipway-images.lock
flock 9

work="$(mktemp -d "${TMPDIR:-/tmp}/slipway-images.XXXXXX")"
cleanup() {
	# debootstrap mounts /proc and /sys in its target: never delete through a mount.
	local m
	for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Image ids replaced by this run: removed at the end when nothing else uses them.
replaced=()

label_of() { docker image inspect --format '{{ index .Config.Labels "io.slipway.content" }}' "$1" 2>/dev/null || true; }
id_of() { docker image inspect --format '{{ .Id }}' "$1" 2>/dev/null || true; }
ready() { echo "images: $1 ready ($2)"; }

# hash_of DIR [EXTRA...]: 16 hex digits over the folder's files (names, modes, contents) and EXTRA.
hash_of() {
	local dir=$1
	shift
	{
		(cd "$dir" && find . -type f -printf '%p %m\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		printf '%s\n' "$@"
	} | sha256sum | cut -c1-16
}

# fail_with_log LOG MESSAGE: the end of the log, then MESSAGE, then exit.
fail_with_log() {
	echo "---- last lines of $1:" >&2
	tail -n 40 "$1" >&2 || true
	echo "----" >&2
	die "$2"
}

# ---- slipway-test/busybox:1 and busybox:1.36 -----------------------------

content_of_busybox() { sha256sum /bin/busybox | cut -c1-16; }

[ -x /bin/busybox ] || die "/bin/busybox is missing: apt-get install busybox-static (scripts/setup.sh does)"
want="$(content_of_busybox)-v2"   # bump the suffix when this recipe changes
if [ "$(label_of slipway-test/busybox:1)" != "$want" ]; then
	t0=$SECONDS
	old="$(id_of slipway-test/busybox:1)"
	root="$work/busybox"
	mkdir -p "$root/bin" "$root/tmp" "$root/workspace" "$root/etc"
	chmod 1777 "$root/tmp"   # as in real images: Docker copies it onto the tmpfs
	cp /bin/busybox "$root/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/workspace:/bin/sh\n' > "$root/etc/passwd"
	printf 'root:x:0:\napp:x:1000:\n' > "$root/etc/group"
	tar -C "$root" -c . | docker import \
		--change 'ENV PATH=/bin' \
		--change "LABEL io.slipway.content=$want" \
		- slipway-test/busybox:1 >/dev/null
	[ -z "$old" ] || replaced+=("$old")
	ready slipway-test/busybox:1 "built in $((SECONDS - t0)) s"
else
	ready slipway-test/busybox:1 kept
fi
# The same image is the default pod holder (it needs sh, nc, wget, sleep).
busybox_id="$(id_of slipway-test/busybox:1)"
holder_id="$(id_of busybox:1.36)"
if [ "$holder_id" = "$busybox_id" ]; then
	ready busybox:1.36 kept
elif [ -n "$holder_id" ] && [ -z "$(label_of busybox:1.36)" ]; then
	ready busybox:1.36 "kept: not built here"
else
	docker tag slipway-test/busybox:1 busybox:1.36
	[ -z "$holder_id" ] || replaced+=("$holder_id")
	ready busybox:1.36 "tagged slipway-test/busybox:1"
fi

# ---- debian:bookworm-slim ------------------------------------------------

# build_base TAG LABEL: debootstrap's minbase of Debian 12, slimmed as the
# official image (files from scripts/images/debian/), imported as TAG.
build_base() {
	local tag=$1 label=$2 root="$work/rootfs" log="$work/debootstrap.log"
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "images: installing debootstrap" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$work/apt.log" 2>&1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >>"$work/apt.log" 2>&1 \
			|| fail_with_log "$work/apt.log" "could not install debootstrap with apt-get"
	fi
	# The files to leave out must be configured before the packages unpack:
	# debootstrap reads no dpkg config, so remove what it unpacked afterwards.
	debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$log" 2>&1 \
		|| fail_with_log "$log" "debootstrap of Debian 12 (bookworm) from http://deb.debian.org/debian failed"
	install -m 644 "$recipes/debian/dpkg-docker.cfg" "$root/etc/dpkg/dpkg.cfg.d/docker"
	install -m 644 "$recipes/debian/apt-docker.conf" "$root/etc/apt/apt.conf.d/docker"
	install -m 755 "$recipes/debian/policy-rc.d" "$root/usr/sbin/policy-rc.d"
	rm -f "$root/etc/apt/sources.list"
	install -m 644 "$recipes/debian/debian.sources" "$root/etc/apt/sources.list.d/debian.sources"
	find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/*
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
		"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
	mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/log/apt"
	# Docker provides these per container.
	: >"$root/etc/resolv.conf"
	: >"$root/etc/hostname"
	rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
	tar --numeric-owner -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
		| docker import \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'CMD ["bash"]' \
			--change "LABEL io.slipway.content=$label" \
			- "$tag" >/dev/null
	rm -rf --one-file-system "$root"
}

[ "$(id -u)" = 0 ] || needs_root=true
base=debian:bookworm-slim
base_want="$(hash_of "$recipes/debian" "$(declare -f build_base)" v1)"   # bump v1 to force a rebuild
base_label="$(label_of "$base")"
base_id="$(id_of "$base")"
if [ -n "$base_id" ] && [ -z "$base_label" ]; then
	ready "$base" "kept: not built here"
elif [ "$base_label" = "$base_want" ]; then
	ready "$base" kept
else
	[ -z "${needs_root:-}" ] || die "building $base needs root (debootstrap); run as root"
	t0=$SECONDS
	build_base "$base" "$base_want"
	[ -z "$base_id" ] || replaced+=("$base_id")
	ready "$base" "built in $((SECONDS - t0)) s"
fi
# The images on the base are rebuilt whenever it is (a new import is a new id).
base_key="$(id_of "$base")"
[ -n "$base_key" ] || die "$base is missing after its build"

# ---- stand-ins from scripts/images/<name>/Dockerfile ---------------------

# build_standin NAME TAG: scripts/images/NAME/ built as TAG on the base.
build_standin() {
	local name=$1 tag=$2 dir="$recipes/$1" want have id ctx log t0
	[ -f "$dir/Dockerfile" ] || die "$dir/Dockerfile is missing"
	want="$(hash_of "$dir" "base=$base_key" v1)"
	have="$(label_of "$tag")"
	id="$(id_of "$tag")"
	if [ -n "$id" ] && [ -z "$have" ]; then
		ready "$tag" "kept: not built here"
		return
	fi
	if [ "$have" = "$want" ]; then
		ready "$tag" kept
		return
	fi
	t0=$SECONDS
	ctx="$work/context-$name"
	log="$work/build-$name.log"
	cp -a "$dir/." "$ctx"
	if grep -q 'host-ca.crt' "$dir/Dockerfile"; then
		# Registries are reached through a TLS-inspecting proxy here: the
		# build needs the machine's CA bundle (see the Dockerfile).
		[ -r /etc/ssl/certs/ca-certificates.crt ] || die "$tag needs the CA bundle /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
	fi
	docker build --network host --force-rm --label "io.slipway.content=$want" -t "$tag" "$ctx" >"$log" 2>&1 \
		|| fail_with_log "$log" "docker build of $tag (scripts/images/$name/Dockerfile) failed"
	[ -z "$id" ] || replaced+=("$id")
	ready "$tag" "built in $((SECONDS - t0)) s"
}

build_standin python python:3.11-slim
build_standin postgres postgres:15
build_standin redis redis:7
if $all; then
	build_standin node node:18-slim
	build_standin ruby ruby:3.1-slim
	build_standin golang golang:1.19
	build_standin rust rust:1.63-slim
fi

# ---- rust:1.95-slim from this machine's toolchain ------------------------

# The Rust 1.95 toolchain under RUSTUP_HOME (any name: 1.95.0, stable, ...).
find_toolchain() {
	local home=${RUSTUP_HOME:-$HOME/.rustup} tc
	for tc in "$home"/toolchains/*; do
		[ -x "$tc/bin/rustc" ] || continue
		case "$("$tc/bin/rustc" --version 2>/dev/null)" in
			"rustc 1.95."*) readlink -f "$tc"; return ;;
		esac
	done
	die "no Rust 1.95 toolchain under $home/toolchains: rustup toolchain install 1.95 --profile minimal --target wasm32-wasip2"
}

# build_engine_standin TAG: scripts/images/rust-1.95/ with the toolchain
# trimmed to the official image's (profile minimal) plus wasm32-wasip2.
build_engine_standin() {
	local tag=$1 dir="$recipes/rust-1.95" tc rustup_bin version host name want have id ctx log t0
	tc="$(find_toolchain)"
	rustup_bin="$(command -v rustup || echo "$HOME/.cargo/bin/rustup")"
	rustup_bin="$(readlink -f "$rustup_bin")"
	[ -x "$rustup_bin" ] || die "rustup not found (https://rustup.rs); $tag is built from this machine's toolchain"
	grep -qx 'rust-std-wasm32-wasip2' "$tc/lib/rustlib/components" \
		|| die "the toolchain $tc lacks wasm32-wasip2: rustup target add --toolchain $(basename "$tc") wasm32-wasip2"
	[ -r /etc/ssl/certs/ca-certificates.crt ] || die "$tag needs the CA bundle /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
	version="$("$tc/bin/rustc" --version | awk '{ print $2 }')"
	host="$("$tc/bin/rustc" -vV | awk '/^host:/ { print $2 }')"
	name="$version-$host"
	want="$(hash_of "$dir" "base=$base_key" "$("$tc/bin/rustc" -vV)" "$(cat "$tc/lib/rustlib/components")" \
		"$(sha256sum <"$rustup_bin")" "$(sha256sum </etc/ssl/certs/ca-certificates.crt)" "$(declare -f build_engine_standin)" v1)"
	have="$(label_of "$tag")"
	id="$(id_of "$tag")"
	if [ -n "$id" ] && [ -z "$have" ]; then
		ready "$tag" "kept: not built here"
		return
	fi
	if [ "$have" = "$want" ]; then
		ready "$tag" kept
		return
	fi
	t0=$SECONDS
	ctx="$work/context-rust-1.95"
	log="$work/build-rust-1.95.log"
	cp -a "$dir/." "$ctx"
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
	mkdir -p "$ctx/cargo/bin"
	cp "$rustup_bin" "$ctx/cargo/bin/rustup"
	local proxy
	for proxy in cargo cargo-clippy cargo-fmt cargo-miri clippy-driver rls rust-analyzer rust-gdb rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
		ln -s rustup "$ctx/cargo/bin/$proxy"
	done
	mkdir -p "$ctx/rustup/toolchains"
	cp -a "$tc" "$ctx/rustup/toolchains/$name"
	printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$name" >"$ctx/rustup/settings.toml"
	# What profile minimal leaves out (rustup works offline on its own files).
	local extra
	for extra in rust-docs clippy rustfmt rust-src rust-analyzer llvm-tools miri; do
		if grep -q "^$extra\(-preview\)\{0,1\}\(-$host\)\{0,1\}\$" "$ctx/rustup/toolchains/$name/lib/rustlib/components"; then
			RUSTUP_HOME="$ctx/rustup" "$rustup_bin" component remove --toolchain "$name" "$extra" >>"$log" 2>&1 \
				|| fail_with_log "$log" "could not leave $extra out of the toolchain for $tag"
		fi
	done
	chmod -R a+w "$ctx/rustup" "$ctx/cargo"   # as in the official image: writable by all
	docker build --network host --force-rm --label "io.slipway.content=$want" -t "$tag" "$ctx" >>"$log" 2>&1 \
		|| fail_with_log "$log" "docker build of $tag (scripts/images/rust-1.95/Dockerfile) failed"
	rm -rf "$ctx"
	[ -z "$id" ] || replaced+=("$id")
	ready "$tag" "built in $((SECONDS - t0)) s"
}

if $engine; then
	build_engine_standin rust:1.95-slim
fi

# Old versions of rebuilt images: removed when untagged and unused (children first).
for ((i = ${#replaced[@]} - 1; i >= 0; i--)); do
	if [ "$(docker image inspect --format '{{ len .RepoTags }}' "${replaced[$i]}" 2>/dev/null || echo 1)" = 0 ]; then
		docker image rm "${replaced[$i]}" >/dev/null 2>&1 || true
	fi
done

echo "images: done in $((SECONDS - started)) s"
