#!/usr/bin/env bash
# Generates the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs from
# its pinned API module with controller-gen (the registry serves the Go types, not
# the YAML), into ${HOOKLINE_CACHE:-~/.cache/hookline}/monitoring-crds/<key>, once.
# The chart test installs them so the chart's monitors and PrometheusRule are
# checked by a real API server. Prints the directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

command -v go >/dev/null || { echo "monitoring-crds/gen.sh: Go is not installed" >&2; exit 1; }

CONTROLLER_TOOLS_VERSION=v0.23.0
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$CONTROLLER_TOOLS_VERSION"; go env GOVERSION; cat go.mod go.sum crds.go gen.sh; } | sha256sum | cut -c1-16)"
out="$cache_root/monitoring-crds/$key"

if [[ -f "$out/monitoring.coreos.com_servicemonitors.yaml" && -f "$out/monitoring.coreos.com_podmonitors.yaml" && -f "$out/monitoring.coreos.com_prometheusrules.yaml" ]]; then
  echo "$out"
  exit 0
fi

echo "monitoring-crds/gen.sh: generating the Prometheus Operator CRDs (first run only)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/crds"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp/bin" go install "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_TOOLS_VERSION}"
GOFLAGS=-mod=readonly "$tmp/bin/controller-gen" crd \
  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
  output:crd:dir="$tmp/crds"

mkdir -p "$out.new"
cp "$tmp/crds/monitoring.coreos.com_servicemonitors.yaml" "$tmp/crds/monitoring.coreos.com_podmonitors.yaml" \
  "$tmp/crds/monitoring.coreos.com_prometheusrules.yaml" "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
echo "$out"
