# The Slipway engine as a container service.
#
#   docker build -t slipway .
#   docker compose -f examples/deploy/compose.yaml up -d
#
# Builds with the classic builder (no BuildKit features). Without a registry,
# `scripts/images.sh --engine` provides local stand-ins for the base images;
# on a daemon without a bridge network, build with `--network host`.
# tests/container-service.sh builds this image and checks it as a service.
#
# Rebuilds are fast: the dependencies (wasmtime above all) are compiled in a
# layer of their own that only changes with a Cargo.toml, Cargo.lock or the
# set of crate roots (the "skeleton"); a change to the sources recompiles
# Slipway's own crates and the plugins, not the dependencies.

# The skeleton: every Cargo manifest and lock file of the two workspaces (the
# engine's and plugins/), and a stub for each crate root cargo needs to load
# them (src/lib.rs, src/main.rs, src/bin/*.rs, build.rs; a test, bench or
# example only when its manifest names it). Built from the whole context, but
# the build stage copies only its result, so that copy (and the dependency
# build after it) stays cached while the manifests do not change.
FROM rust:1.95-slim AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; \
    find . \( -path ./target -o -path ./plugins/target -o -path ./examples -o -path '*/tests/fixtures' \) -prune \
        -o \( -name Cargo.toml -o -name Cargo.lock \) -print \
    | while read -r manifest; do \
        dir=$(dirname "$manifest"); \
        mkdir -p "/skeleton/$dir"; \
        cp "$manifest" "/skeleton/$manifest"; \
        for root in "$dir"/src/lib.rs "$dir"/src/main.rs "$dir"/build.rs "$dir"/src/bin/*.rs \
                    "$dir"/tests/*.rs "$dir"/benches/*.rs "$dir"/examples/*.rs; do \
            [ -f "$root" ] || continue; \
            case "$root" in \
                */tests/*|*/benches/*|*/examples/*) \
                    stem=$(basename "$root" .rs); \
                    grep -Eq "^name *= *\"$stem\"" "$manifest" || continue ;; \
            esac; \
            mkdir -p "/skeleton/$(dirname "$root")"; \
            case "$root" in */src/lib.rs) : ;; *) echo 'fn main() {}' ;; esac >"/skeleton/$root"; \
        done; \
    done; \
    find /skeleton -type f | sort

FROM rust:1.95-slim AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
# The dependencies: of the engine (for the host), and of the plugins (for
# wasm32-wasip2, into the target directory engine/build.rs builds them in).
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked -p slipway \
 && cargo build --release --locked --workspace --target wasm32-wasip2 \
        --manifest-path plugins/Cargo.toml --target-dir target/wasm-plugins
COPY . .
# The stubs' build outputs are newer than the real sources' timestamps:
# touch the sources so cargo rebuilds every local crate. The build script
# compiles the first-party plugins and embeds them.
RUN find engine plugin-sdk plugins wit -path plugins/target -prune -o -type f -exec touch {} + \
 && cargo build --release --locked -p slipway \
 && install -s -m 0755 target/release/slipway /usr/local/bin/slipway
# `install -s` strips the binary (195 MB with line tables, ~46 MB without):
# a panic still prints its message and location, not a symbolized backtrace.

FROM debian:bookworm-slim
# git: checkouts; ca-certificates: fetching repositories over TLS;
# openssh-client: repositories reached over SSH with a deploy key
# (`git_ssh_keys`).
# The engine's user is uid:gid 1000:1000, the user job steps run as: the
# engine hands each checkout to that user and removes what the steps wrote,
# which any other non-root user could not do (lchown needs CAP_CHOWN; with
# uid 10001 every job failed with "cannot hand the checkout to 1000:1000").
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 slipway \
 && useradd --uid 1000 --gid slipway --home-dir /var/lib/slipway --no-create-home --shell /usr/sbin/nologin slipway \
 && mkdir -p /var/lib/slipway \
 && chown slipway:slipway /var/lib/slipway
COPY --from=build /usr/local/bin/slipway /usr/local/bin/slipway
# The state (store, logs, checkouts, plugin cache) lives in a volume; the
# daemon must see checkouts at the same path (see examples/deploy/README.md).
ENV SLIPWAY_STATE_DIR=/var/lib/slipway \
    SLIPWAY_LISTEN=0.0.0.0:7878 \
    SLIPWAY_URL=http://127.0.0.1:7878
VOLUME /var/lib/slipway
EXPOSE 7878
# Runs as a non-root user; give it the Docker socket's group at run time
# (`--group-add $(stat -c %g /var/run/docker.sock)`), and a state directory
# it owns (`install -d -o 1000 -g 1000 /var/lib/slipway`).
USER slipway
# SIGTERM: stop leasing, let running jobs finish for runner.drain_s (20 s),
# requeue the rest, close workspaces, exit. Stop with `docker stop -t 60`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["slipway", "healthcheck"]
ENTRYPOINT ["slipway"]
CMD ["serve"]
