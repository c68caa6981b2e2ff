#!/usr/bin/env bash
# Builds `promtool` from its pinned Go module (github.com/prometheus/prometheus,
# whose v0.3xx module versions are Prometheus 3.x) into
# ${HOOKLINE_CACHE:-~/.cache/hookline}/promtool/<version>-<key>/promtool, once; the
# key covers the version, this script and the Go toolchain. Prints the binary's
# path. The chart test evaluates the chart's alerting rules with `promtool test rules`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

command -v go >/dev/null || { echo "promtool/build.sh: Go is not installed; the alert tests build promtool from source and need it" >&2; exit 1; }

VERSION="$(cat "$here/PROMETHEUS_VERSION")"
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$VERSION"; go env GOVERSION; cat "$here/build.sh"; } | sha256sum | cut -c1-16)"
out="$cache_root/promtool/$VERSION-$key"

if [[ -x "$out/promtool" ]]; then
  echo "$out/promtool"
  exit 0
fi

echo "promtool/build.sh: building promtool ${VERSION} (first run only, a few minutes)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# `go install module@version` builds with Prometheus's own go.mod and go.sum.
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
  "github.com/prometheus/prometheus/cmd/promtool@${VERSION}"
"$tmp/promtool" --version >&2

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/promtool"
