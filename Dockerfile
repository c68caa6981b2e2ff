# syntax=docker/dockerfile:1.7
# The operator and worker images: static (musl) binaries on distroless/static,
# running as the distroless non-root user (65532), as the chart's restricted pod
# security context expects.
#
#   docker build --target operator -t ghcr.io/hookline/hookline-operator:0.1.0 .
#   docker build --target worker   -t ghcr.io/hookline/hookline-worker:0.1.0 .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 --target ...

ARG RUST_VERSION=1.95.0

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# musl for static binaries; cmake and clang for aws-lc-rs (the crypto of rustls and
# the AWS SDK), which compiles C; the cross linkers for the other architecture.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake clang \
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
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /target)" \
 && cargo build --release --locked --target "$target" \
      -p hookline-operator -p hookline-worker --bin hookline-operator --bin hookline-worker \
 && mkdir -p /out \
 && cp "target/$target/release/hookline-operator" "target/$target/release/hookline-worker" /out/

FROM gcr.io/distroless/static-debian12:nonroot AS operator
COPY --from=build /out/hookline-operator /usr/local/bin/hookline-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hookline-operator"]

FROM gcr.io/distroless/static-debian12:nonroot AS worker
COPY --from=build /out/hookline-worker /usr/local/bin/hookline-worker
USER 65532:65532
EXPOSE 9095
ENTRYPOINT ["/usr/local/bin/hookline-worker"]
