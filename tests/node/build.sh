#!/usr/bin/env bash
# Builds kubelet, kube-controller-manager and kube-scheduler from the same pinned
# k8s.io/kubernetes module as tests/kube-bench (its go.mod/go.sum, copied: the node
# binaries pull a few modules the API server does not, so `-mod=mod` adds them to the
# copy, never to tests/kube-bench) into ${HOOKLINE_CACHE:-~/.cache/hookline}/node/<key>/bin,
# once. Installs Debian's containerd and runc when missing (the node runs containerd as a
# plain process; it is no service here). Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bench="$here/../kube-bench"

command -v go >/dev/null || { echo "node/build.sh: Go is not installed; the node's binaries are built from source" >&2; exit 1; }

# The CNI plugins for the pod network: `bridge`, `host-local` and `loopback` (the
# node's config chains the bench's own `hookline-forward` after them; tests/src/node.rs).
packages=(containerd runc containernetworking-plugins)
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || ! command -v ctr >/dev/null \
  || [[ ! -x /usr/lib/cni/loopback ]]; then
  echo "node/build.sh: installing ${packages[*]} from Debian" >&2
  if [[ $(id -u) -ne 0 ]]; then echo "node/build.sh: not root; install Debian's ${packages[*]}" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >&2; }
fi

KUBE_VERSION="$(cat "$bench/KUBE_VERSION")"
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
# Bump when the build below changes (the package lines above need no rebuild).
recipe=1
key="$( { echo "$KUBE_VERSION $recipe"; go env GOVERSION; cat "$bench/go.mod" "$bench/go.sum"; } | sha256sum | cut -c1-16)"
out="$cache_root/node/$KUBE_VERSION-$key"
bins=(kubelet kube-controller-manager kube-scheduler)

have=1
for b in "${bins[@]}"; do [[ -x "$out/bin/$b" ]] || have=0; done
if [[ $have == 1 ]]; then
  echo "$out/bin"
  exit 0
fi

echo "node/build.sh: building ${bins[*]} ${KUBE_VERSION} (first run only, several minutes)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/src"
trap 'rm -rf "$tmp"' EXIT
cp "$bench/go.mod" "$bench/go.sum" "$tmp/src/"

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w \
  -X $pkg.gitVersion=${KUBE_VERSION} \
  -X $pkg.gitMajor=1 \
  -X $pkg.gitMinor=${minor} \
  -X $pkg.gitTreeState=clean \
  -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

cd "$tmp/src"
for b in "${bins[@]}"; do
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" \
    -o "$tmp/bin/$b" "k8s.io/kubernetes/cmd/$b"
done

rm -rf "$tmp/src"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/bin"
