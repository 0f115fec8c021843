#!/usr/bin/env bash
# Client SDK tests with Centrifugo's official Python SDK, centrifuge-python, on a fresh Debian 12
# machine: installs what is missing (a Python venv with pytest and centrifuge-python), builds
# herald if needed, then runs tests/sdk-python against a real herald, once per wire (JSON, and
# Protobuf with `use_protobuf=True`). Extra arguments go to pytest (e.g. -k recovery).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
scripts/apt-install.sh "${missing[@]}"

venv=target/sdk-python/venv
scripts/venv.sh "$venv" tests/sdk-python/requirements.txt

export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  say "building herald"
  cargo build -p herald
fi

say "client SDK tests (centrifuge-python $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("centrifuge-python"))'), JSON and Protobuf)"
cd tests/sdk-python
exec "../../$venv/bin/python" -m pytest . -v "$@"
