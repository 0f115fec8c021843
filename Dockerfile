# syntax=docker/dockerfile:1
# Herald's container image: one binary, every role (`herald run --role gateway|publisher|all`).
# Build: docker build -t herald:0.1.0 .
# The runtime image writes nothing to its filesystem, so it runs with readOnlyRootFilesystem.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Dependencies first: only the manifests and the lock file, with empty targets, so that this
# layer (every crate from crates.io, compiled) is rebuilt only when a manifest or Cargo.lock
# changes. Every workspace member's manifest is needed for `--locked` to check the lock file.
COPY Cargo.toml Cargo.lock ./
COPY services/core/Cargo.toml services/core/
COPY services/gateway/Cargo.toml services/gateway/
COPY services/publisher/Cargo.toml services/publisher/
COPY services/node/Cargo.toml services/node/
COPY services/herald/Cargo.toml services/herald/
COPY services/testkit/Cargo.toml services/testkit/
COPY loadtest/Cargo.toml loadtest/
RUN set -eu; \
    for manifest in services/*/Cargo.toml loadtest/Cargo.toml; do \
      crate="${manifest%/Cargo.toml}"; \
      mkdir -p "$crate/src" "$crate/benches"; \
      : > "$crate/src/lib.rs"; \
      echo 'fn main() {}' > "$crate/src/main.rs"; \
      for bench in $(awk '/^\[/ { b = ($0 == "[[bench]]") } b && $1 == "name" { gsub(/"/, "", $3); print $3 }' "$manifest"); do \
        echo 'fn main() {}' > "$crate/benches/$bench.rs"; \
      done; \
    done; \
    cargo build --release -p herald --locked; \
    rm -rf services/core/src services/gateway/src services/publisher/src services/node/src \
      services/herald/src \
      services/*/benches

# The crates in the binary's dependency graph. The test kit and the load generator keep their
# empty targets: `cargo build -p herald` only needs their manifests.
COPY services/core services/core
COPY services/gateway services/gateway
COPY services/publisher services/publisher
COPY services/node services/node
COPY services/herald services/herald
# COPY keeps the context's modification times, which may be older than the placeholder build:
# touch the sources so that cargo rebuilds the five crates.
RUN find services/core services/gateway services/publisher services/node services/herald -type f -exec touch {} + \
 && cargo build --release -p herald --locked \
 && install -D -m 0755 target/release/herald /out/herald

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Real-time notification service speaking the Centrifugo client protocol and server API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin herald
COPY --from=builder /out/herald /usr/local/bin/herald
USER 10001:10001
# 8000: client connections (WebSocket, SSE, demo page); 8001: server API, metrics, probes.
EXPOSE 8000 8001
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["run"]
