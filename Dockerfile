# The Slipway engine as a container service.
#
#   docker build -t slipway .
#   docker compose -f examples/deploy/compose.yaml up -d
#
# Builds with the classic builder (no BuildKit features). Without a registry,
# `scripts/images.sh --engine` provides local stand-ins for the base images.

FROM rust:1.95-slim AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The build script compiles the first-party plugins and embeds them.
RUN cargo build --release --locked -p slipway \
 && install -m 0755 target/release/slipway /usr/local/bin/slipway

FROM debian:bookworm-slim
# git: checkouts; ca-certificates: fetching repositories over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 slipway \
 && useradd --system --uid 10001 --gid slipway --home-dir /var/lib/slipway --shell /usr/sbin/nologin slipway \
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
# (`--group-add $(stat -c %g /var/run/docker.sock)`).
USER slipway
# SIGTERM: stop leasing, let running jobs finish for runner.drain_s (20 s),
# requeue the rest, close workspaces, exit. Stop with `docker stop -t 60`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["slipway", "healthcheck"]
ENTRYPOINT ["slipway"]
CMD ["serve"]
