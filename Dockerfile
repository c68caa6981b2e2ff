# The operator and worker images: static binaries FROM scratch with CA certificates,
# running as non-root 65532 (the chart's restricted pod security context), no shell.
# Two ways to the same layout (/usr/local/bin/<binary>, /etc/ssl/certs/ca-certificates.crt,
# /etc/passwd, /etc/group, /etc/nsswitch.conf):
#
# 1. With Docker and registry access, the full multi-stage build (the repository is
#    the context; musl targets, so it cross-builds for arm64 too):
#      docker build --target operator -t ghcr.io/hookline/hookline-operator:0.1.0 \
#        --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#      docker build --target worker   -t ghcr.io/hookline/hookline-worker:0.1.0 ...
#      docker buildx build --platform linux/amd64,linux/arm64 --target ... (multi-arch)
# 2. Binaries built on the host (`make images`, images/build.sh): the same targets
#    with `--build-arg BINARIES=host` and the directory images/build.sh prepares as
#    the context. No base image is pulled, so it works offline with podman.

ARG RUST_VERSION=1.95.0
# `build` compiles here; `host` takes binaries built on the host (make images).
ARG BINARIES=build

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# musl for static binaries; cmake and clang for aws-lc-rs (the crypto of rustls and
# the AWS SDK), which compiles C; the cross linkers for the other architecture.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake clang ca-certificates \
      gcc-aarch64-linux-gnu gcc-x86-64-linux-gnu \
 && rm -rf /var/lib/apt/lists/*
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl > /target ;; \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /target)"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=x86_64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_musl=x86_64-linux-gnu-gcc
WORKDIR /src
COPY . .
# The `image` profile of Cargo.toml (small, stripped), as `make images` builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /target)" \
 && cargo build --profile image --locked --target "$target" \
      -p hookline-operator -p hookline-worker --bin hookline-operator --bin hookline-worker \
 && mkdir -p /out/bin /out/rootfs/etc/ssl/certs \
 && cp "target/$target/image/hookline-operator" "target/$target/image/hookline-worker" /out/bin/ \
 && cp -r images/rootfs/. /out/rootfs/ \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/

# Where the binaries and /etc come from: the `build` stage above, or (`make images`)
# the context images/build.sh prepares, holding rootfs/ and bin/ as `build`'s /out.
FROM scratch AS host
COPY rootfs/ /out/rootfs/
COPY bin/ /out/bin/

FROM ${BINARIES} AS binaries

# What both images share.
FROM scratch AS base
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/hookline/hookline
LABEL org.opencontainers.image.source=$SOURCE \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.licenses=Apache-2.0
COPY --from=binaries /out/rootfs/ /
USER 65532:65532

FROM base AS operator
LABEL org.opencontainers.image.title=hookline-operator
COPY --from=binaries /out/bin/hookline-operator /usr/local/bin/hookline-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hookline-operator"]

FROM base AS worker
LABEL org.opencontainers.image.title=hookline-worker
COPY --from=binaries /out/bin/hookline-worker /usr/local/bin/hookline-worker
EXPOSE 9095
ENTRYPOINT ["/usr/local/bin/hookline-worker"]
