# syntax=docker/dockerfile:1.7
#
# alpes-tracking: the `tracking` binary in a small, non-root runtime image.
#
#   docker build -t alpes-tracking:dev .
#   docker run --rm -p 8010:8010 alpes-tracking:dev          # embedded mode, data in /data
#
# Two stages: the Rust toolchain only exists in the builder; the runtime is
# distroless (gcr.io/distroless/cc-debian12): glibc, libgcc, CA
# certificates, tzdata and nothing else: no shell, no package manager, no
# curl. The builder is Debian 12 too, so the binary's glibc matches (it
# links only libc, libm and libgcc_s: `ldd target/release/tracking`).
# .ci/check-deploy.sh checks these properties offline (hadolint, and
# .ci/deploy/check_dockerfile.py).

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

# The runtime has no mkdir: the data directory is made here, owned by the
# runtime's user, and copied over with its ownership.
RUN install -d -o 10001 -g 10001 -m 0750 /rootfs/data

############################ runtime ############################
# :nonroot is the variant whose default user is not root; USER below picks
# uid 10001, the one the Kubernetes manifests (runAsUser) and existing
# volumes use. For a reproducible build pin the digest
# (`...:nonroot@sha256:...`, from `docker buildx imagetools inspect`).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

COPY --from=builder /usr/local/bin/tracking /usr/local/bin/tracking
COPY --from=builder --chown=10001:10001 /rootfs/data /data

# Containers listen on all interfaces (the binary's default is loopback);
# the embedded log and store go to /data (a volume / an emptyDir in k8s).
ENV TRACKING_LISTEN=0.0.0.0:8010 \
    TRACKING_DATA_DIR=/data \
    TRACKING_LOG_FORMAT=json
# TRACKING_LOG is left unset: the binary's default filter keeps the storage
# and driver libraries at warn (a filter set here would replace it whole).

# Numeric user so Kubernetes' runAsNonRoot can verify it without /etc/passwd
# (distroless's has no entry for it; the binary needs none).
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
# /tracking/ready, used by compose and k8s separately). `tracking probe`
# is the binary's own HTTP GET (no shell or curl in the image): exit 0 on
# 2xx; the port follows TRACKING_LISTEN / TRACKING_INTERNAL_LISTEN.
# Kubernetes does not use it: its probes are httpGet.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/tracking", "probe", "--timeout", "2s"]

ENTRYPOINT ["/usr/local/bin/tracking"]
CMD ["run"]
