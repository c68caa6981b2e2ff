#!/usr/bin/env bash
# Builds `toxiproxy-server` from its pinned Go module (github.com/Shopify/toxiproxy/v2)
# into ${HOOKLINE_CACHE:-~/.cache/hookline}/toxiproxy/<version>-<key>/toxiproxy-server,
# once; the key covers the version, this script and the Go toolchain. Prints the
# binary's path. The network-fault tests (tests/src/toxiproxy.rs) start it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

command -v go >/dev/null || { echo "toxiproxy/build.sh: Go is not installed; the network-fault tests build toxiproxy from source and need it" >&2; exit 1; }

VERSION="$(cat "$here/TOXIPROXY_VERSION")"
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$VERSION"; go env GOVERSION; cat "$here/build.sh"; } | sha256sum | cut -c1-16)"
out="$cache_root/toxiproxy/$VERSION-$key"

if [[ -x "$out/toxiproxy-server" ]]; then
  echo "$out/toxiproxy-server"
  exit 0
fi

echo "toxiproxy/build.sh: building toxiproxy-server ${VERSION} (first run only, about a minute)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# `go install module@version` builds with toxiproxy's own go.mod and go.sum.
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@${VERSION}"
# The module's main package is cmd/server; the binary is named after its directory.
mv "$tmp/server" "$tmp/toxiproxy-server"
"$tmp/toxiproxy-server" -version >&2

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/toxiproxy-server"
