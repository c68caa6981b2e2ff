#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned upstream Go modules into
# ${HOOKLINE_CACHE:-~/.cache/hookline}/kube/<key>/bin, once. The key covers the
# Kubernetes version, go.mod/go.sum and the Go toolchain, so a bump rebuilds
# and everything else is a cache hit. Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

command -v go >/dev/null || { echo "build.sh: Go is not installed; the bench builds kube-apiserver and etcd from source and needs it" >&2; exit 1; }

KUBE_VERSION="$(cat KUBE_VERSION)"
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$KUBE_VERSION"; go env GOVERSION; cat go.mod go.sum cmd/*/main.go build.sh; } | sha256sum | cut -c1-16)"
out="$cache_root/kube/$KUBE_VERSION-$key"

if [[ -x "$out/bin/kube-apiserver" && -x "$out/bin/etcd" ]]; then
  echo "$out/bin"
  exit 0
fi

echo "build.sh: building kube-apiserver and etcd ${KUBE_VERSION} (first run only, several minutes)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w \
  -X $pkg.gitVersion=${KUBE_VERSION} \
  -X $pkg.gitMajor=1 \
  -X $pkg.gitMinor=${minor} \
  -X $pkg.gitTreeState=clean \
  -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# -trimpath keeps the build independent of where the clone lives.
CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" \
  -o "$tmp/bin/kube-apiserver" ./cmd/kube-apiserver
CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
  -o "$tmp/bin/etcd" ./cmd/etcd

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/bin"
