#!/usr/bin/env bash
# Creates a Python venv at $1 (once) and installs the packages of the
# requirements file $2 into it whenever that file changed since the last install.
# Usage: scripts/venv.sh target/api/venv tests/api/requirements.txt
set -euo pipefail
venv=$1
requirements=$2
if [ ! -x "$venv/bin/python" ]; then
  printf '\n== python venv %s\n' "$venv"
  python3 -m venv "$venv"
fi
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
  printf '\n== python packages (%s)\n' "$requirements"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
