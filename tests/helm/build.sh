#!/usr/bin/env bash
# Builds `helm` from its pinned Go module (helm.sh/helm/v3) into
# ${HOOKLINE_CACHE:-~/.cache/hookline}/helm/<version>-<key>/helm, once; the key
# covers the version, this script and the Go toolchain. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

command -v go >/dev/null || { echo "helm/build.sh: Go is not installed; the chart checks build helm from source and need it" >&2; exit 1; }

HELM_VERSION="$(cat "$here/HELM_VERSION")"
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$HELM_VERSION"; go env GOVERSION; cat "$here/build.sh"; } | sha256sum | cut -c1-16)"
out="$cache_root/helm/$HELM_VERSION-$key"

if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi

echo "helm/build.sh: building helm ${HELM_VERSION} (first run only, about a minute)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# `go install module@version` builds with helm's own go.mod and go.sum, outside
# any module of ours, so nothing needs vendoring here.
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
"$tmp/helm" version --short >&2

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/helm"
