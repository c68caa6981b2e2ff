#!/usr/bin/env bash
# Creates (once) the Python venv that holds the AWS emulators, under
# ${HOOKLINE_CACHE:-~/.cache/hookline}/venv-<hash of requirements.txt>, and
# prints its bin directory. A changed requirements.txt gets a fresh venv.
# LocalStack, which needs a newer Python and pins of its own, gets its own venv
# from setup-localstack.sh, run from here too so one command installs every emulator.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

"$here/setup-localstack.sh" >/dev/null

py="${PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "setup.sh: $py not found; the AWS emulators need Python 3.10+" >&2; exit 1; }

cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { "$py" --version; cat "$here/requirements.txt"; } | sha256sum | cut -c1-16)"
venv="$cache_root/venv-$key"

# A venv embeds its own path in its scripts, so it is built in place; the
# marker says the install finished, and a half-built venv is started over.
if [[ -f "$venv/.complete" ]]; then
  echo "$venv/bin"
  exit 0
fi

echo "setup.sh: creating the emulator venv at $venv (first run only)" >&2
rm -rf "$venv"
mkdir -p "$cache_root"
"$py" -m venv "$venv" || { echo "setup.sh: '$py -m venv' failed; on Debian install python3-venv" >&2; exit 1; }
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
touch "$venv/.complete"
echo "$venv/bin"
