#!/usr/bin/env bash
# `make images`: the hookline-operator and hookline-worker images from binaries built
# on this machine, with podman and no base image (the Dockerfile's targets with
# BINARIES=host).
#
# 1. cargo builds both binaries statically (glibc, `+crt-static` on an explicit
#    --target so build scripts and proc-macros stay dynamic) with the `image` profile
#    of Cargo.toml, in a target dir of their own: $IMAGES_TARGET_DIR (default
#    target/images/cargo; CI keeps it under ~/.cache/hookline, so dependencies
#    rebuild only when Cargo.lock or the toolchain changes).
# 2. podman builds the images into a store of its own (target/images/podman, with a
#    containers.conf and storage.conf written there: never the machine's global
#    configuration) and saves each as a docker-archive, target/images/<name>.tar,
#    which the image tests load (tests/tests/images.rs) and `podman load`,
#    `docker load` or `ctr images import` take.
#
# Environment: IMAGE_REGISTRY (ghcr.io/hookline), IMAGE_TAG (the workspace version,
# which is the chart's appVersion), IMAGES_TARGET_DIR, IMAGES_OUT (target/images).
set -euo pipefail
cd "$(dirname "$0")/.."

registry="${IMAGE_REGISTRY:-ghcr.io/hookline}"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
tag="${IMAGE_TAG:-$version}"
out="$(realpath -m "${IMAGES_OUT:-target/images}")"
cargo_target="$(realpath -m "${IMAGES_TARGET_DIR:-$out/cargo}")"
target=x86_64-unknown-linux-gnu
revision="$(git rev-parse HEAD)"

for tool in podman runc; do
  command -v "$tool" >/dev/null || {
    echo "images/build.sh: $tool is missing; install it with: apt-get install -y podman buildah runc" >&2
    exit 1
  }
done

build() {
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --profile image \
    --target "$target" --target-dir "$cargo_target" \
    -p hookline-operator -p hookline-worker --bin hookline-operator --bin hookline-worker
}
started=$SECONDS
# The profile is incremental, and rustc's incremental state can crash the compiler
# after some source changes ("internal compiler error: encountered incremental
# compilation error"; the fix it prints is deleting that state). One retry without
# it; a real compile error fails twice.
if ! build; then
  echo "images/build.sh: the build failed; retrying once without the incremental state" >&2
  rm -rf "$cargo_target/$target/image/incremental"
  build
fi
build_seconds=$((SECONDS - started))

context="$out/context"
rm -rf "$context"
mkdir -p "$context/bin" "$context/rootfs/etc/ssl/certs"
cp -r images/rootfs/. "$context/rootfs/"
cp /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/"
for bin in hookline-operator hookline-worker; do
  cp "$cargo_target/$target/image/$bin" "$context/bin/"
  # A dynamic binary would not start in an image without a loader: refuse it here.
  if readelf -lW "$context/bin/$bin" | grep -q 'program interpreter'; then
    echo "images/build.sh: $bin is dynamically linked; the images need static binaries" >&2
    exit 1
  fi
done

# podman's own configuration: runc (crun fails on this machine's hybrid cgroup
# layout), cgroupfs, no default ulimits (setting them needs CAP_SYS_RESOURCE, which
# CI machines lack), events in a file, storage on vfs.
state="$out/podman"
mkdir -p "$state"
# podman refuses a runroot longer than 50 characters (its sockets live there), and
# target/ may sit deep (CI links it into ~/.cache). The store records its runroot and
# refuses another one later, so it is a short path fixed per store; it holds only
# transient state (like /run across a reboot, it may vanish between runs).
runroot="/tmp/hookline-podman-$(printf %s "$state" | sha256sum | cut -c1-12)"
cat > "$state/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$state/events.log"
CONF
cat > "$state/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$state/storage"
runroot = "$runroot"
CONF
export CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf"
podman=(podman --root "$state/storage" --runroot "$runroot" --tmpdir "$state/tmp")

# The commit's time, so the same binaries give the same image ids.
timestamp="$(git log -1 --format=%ct)"
printf '\n%-20s %10s %10s %10s\n' image binary image archive
for name in hookline-operator hookline-worker; do
  ref="$registry/$name:$tag"
  "${podman[@]}" build --quiet --file Dockerfile --target "${name#hookline-}" \
    --timestamp "$timestamp" --build-arg BINARIES=host --build-arg TARGETARCH=amd64 --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    --tag "$ref" "$context" >/dev/null
  rm -f "$out/$name.tar"
  "${podman[@]}" save --quiet --format docker-archive --output "$out/$name.tar" "$ref"
  size="$("${podman[@]}" image inspect --format '{{.Size}}' "$ref")"
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  printf '%-20s %10s %10s %10s  %s\n' "$name" "$(mib "$(stat -c %s "$context/bin/$name")")" \
    "$(mib "$size")" "$(mib "$(stat -c %s "$out/$name.tar")")" "$ref"
done
"${podman[@]}" image prune --force >/dev/null
echo "cargo build (profile image): ${build_seconds}s; archives in $out; revision $revision"
