#!/usr/bin/env bash
# The node tests' own images, besides Hookline's (`make images`): `pause` (containerd's
# sandbox_image) and `handler` (a team's handler), both one static Go binary
# (tests/node/helper) FROM scratch, user 65532, built with podman in a store of its own
# and saved as docker-archives under ${HOOKLINE_CACHE:-~/.cache/hookline}/node-images/<key>/,
# once per source. The binary itself is kept there too (`node-helper`): the node runs
# it as its forwarder and its CNI plugin (tests/node/helper/forward.go, cni.go).
# Prints that directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for tool in go podman runc; do
  command -v "$tool" >/dev/null || { echo "node/images.sh: $tool is missing (apt-get install -y podman buildah runc; Go)" >&2; exit 1; }
done
cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { go env GOVERSION; cat "$here/helper/go.mod" "$here/helper/go.sum" "$here"/helper/*.go "$here/images.sh"; } | sha256sum | cut -c1-16)"
out="$cache_root/node-images/$key"
if [[ -f "$out/pause.tar" && -f "$out/handler.tar" && -x "$out/node-helper" ]]; then
  echo "$out"
  exit 0
fi
tmp="$out.tmp.$$"
rm -rf "$tmp"
# podman refuses a runroot longer than 50 characters: its state lives in /tmp.
state="$(mktemp -d /tmp/hl-node-img.XXXXXX)"
mkdir -p "$tmp/context"
trap 'rm -rf "$tmp" "$state"' EXIT
(cd "$here/helper" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/context/node-helper" .)

# podman as images/build.sh configures it (runc, cgroupfs, no default ulimits, vfs).
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
runroot = "$state/run"
CONF
export CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf"
podman=(podman --root "$state/storage" --runroot "$state/run" --tmpdir "$state/tmp")
for mode in pause handler; do
  printf 'FROM scratch\nCOPY node-helper /node-helper\nUSER 65532:65532\nENTRYPOINT ["/node-helper", "%s"]\n' "$mode" \
    > "$tmp/context/Containerfile.$mode"
  ref="localhost/hookline-node-$mode:$key"
  "${podman[@]}" build --quiet --file "$tmp/context/Containerfile.$mode" --tag "$ref" "$tmp/context" >/dev/null
  "${podman[@]}" save --quiet --format docker-archive --output "$tmp/$mode.tar" "$ref"
done
"${podman[@]}" rmi --all --force >/dev/null 2>&1 || true
mv "$tmp/context/node-helper" "$tmp/node-helper"
rm -rf "$tmp/context" "$state"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
