# syntax=docker/dockerfile:1.7
#
# alpes-tracking: the `tracking` binary in a small, non-root runtime image.
#
#   docker build -t alpes-tracking:dev .
#   docker run --rm -p 8010:8010 alpes-tracking:dev          # embedded mode, data in /data
#
# Two stages: the Rust toolchain only exists in the builder; the runtime is
# debian:bookworm-slim (same glibc as the builder, so no static linking or
# musl needed).

############################ builder ############################
FROM rust:1.95-slim-bookworm AS builder

# cmake and g++: the Pulsar client builds protoc from source (its
# protobuf-src feature) to generate its protocol code; no system protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The build context has no .git: the revision comes in as a build argument
# (`docker build --build-arg TRACKING_REVISION=$(git rev-parse --short=12 HEAD) .`),
# shown by `tracking --version` and the tracking_build_info series.
ARG TRACKING_REVISION=unknown
ENV TRACKING_REVISION=${TRACKING_REVISION}

# BuildKit cache mounts keep the crate registry and the target dir between
# builds (no dummy-main trick needed); the binary is copied out of the cached
# target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tracking \
 && install -m 0755 target/release/tracking /usr/local/bin/tracking

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# curl: only for the HEALTHCHECK below (slim images have no HTTP client).
# Chosen over a bash /dev/tcp one-liner because it speaks real HTTP (status
# codes, timeouts) and is what an operator reaches for inside the container
# (`docker exec ... curl localhost:8010/metrics`); it costs a few MB.
# Kubernetes does not use it: its probes are httpGet.
# ca-certificates: TLS to Pulsar/ScyllaDB clusters (pulsar+ssl://, CQL TLS).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tracking \
 && useradd --system --uid 10001 --gid tracking --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tracking \
 && install -d -o tracking -g tracking -m 0750 /data

COPY --from=builder /usr/local/bin/tracking /usr/local/bin/tracking

# Containers listen on all interfaces (the binary's default is loopback);
# the embedded log and store go to /data (a volume / an emptyDir in k8s).
ENV TRACKING_LISTEN=0.0.0.0:8010 \
    TRACKING_DATA_DIR=/data \
    TRACKING_LOG_FORMAT=json
# TRACKING_LOG is left unset: the binary's default filter keeps the storage
# and driver libraries at warn (a filter set here would replace it whole).

# Numeric user so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8010

# SIGTERM starts the graceful drain (--shutdown-grace, 25 s by default);
# give the container at least 30 s to stop (compose stop_grace_period,
# k8s terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

# Liveness only: /tracking/health has no dependency checks, so a broker or
# database outage does not mark the container unhealthy (readiness is
# /tracking/ready, used by compose and k8s separately).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8010/tracking/health"]

ENTRYPOINT ["/usr/local/bin/tracking"]
CMD ["run"]
