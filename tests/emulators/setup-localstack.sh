#!/usr/bin/env bash
# Creates (once) the venv that holds LocalStack, under
# ${HOOKLINE_CACHE:-~/.cache/hookline}/localstack-<hash>, and prints its bin
# directory. LocalStack 2026.3 needs Python >= 3.12: $LOCALSTACK_PYTHON, else
# python3.13 / python3.12 on PATH, else ~/.pyenv/versions/3.1[23]*/bin/python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# True when "$1" runs and is Python >= 3.12 (a pyenv shim for a version not
# selected exists on PATH but fails, so the interpreter is asked, not looked up).
new_enough() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

py=""
candidates=()
[[ -n "${LOCALSTACK_PYTHON:-}" ]] && candidates+=("$LOCALSTACK_PYTHON")
for name in python3.13 python3.12; do
  command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
done
for dir in "$HOME"/.pyenv/versions/3.13* "$HOME"/.pyenv/versions/3.12*; do
  [[ -x "$dir/bin/python3" ]] && candidates+=("$dir/bin/python3")
done
for candidate in "${candidates[@]}"; do
  if new_enough "$candidate"; then py="$candidate"; break; fi
done
if [[ -z "$py" ]]; then
  echo "setup-localstack.sh: LocalStack needs Python >= 3.12 and none was found" >&2
  echo "  looked at: \$LOCALSTACK_PYTHON, python3.13 and python3.12 on PATH, ~/.pyenv/versions/3.1[23]*" >&2
  echo "  install one (e.g. 'pyenv install 3.13', or apt-get install python3.13-venv) or set LOCALSTACK_PYTHON" >&2
  exit 1
fi

cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { "$py" --version; cat "$here/requirements-localstack.txt"; } | sha256sum | cut -c1-16)"
venv="$cache_root/localstack-$key"

# As in setup.sh: built in place, a marker says the install finished.
if [[ -f "$venv/.complete" ]]; then
  echo "$venv/bin"
  exit 0
fi

echo "setup-localstack.sh: creating the LocalStack venv at $venv with $py (first run only)" >&2
rm -rf "$venv"
mkdir -p "$cache_root"
"$py" -m venv "$venv" || { echo "setup-localstack.sh: '$py -m venv' failed" >&2; exit 1; }
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-localstack.txt" >&2
touch "$venv/.complete"
echo "$venv/bin"
