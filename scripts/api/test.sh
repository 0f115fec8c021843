#!/usr/bin/env bash
# Server API tests with Centrifugo's official Python client `cent` on a fresh Debian 12 machine:
# installs what is missing (redis-server, a Python venv with pytest, cent and websockets), builds
# herald if needed, then runs tests/api against a real herald, once on the memory engine and once
# on a redis-server of its own. Extra arguments go to pytest (e.g. -k batch).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
scripts/apt-install.sh "${missing[@]}"

venv=target/api/venv
scripts/venv.sh "$venv" tests/api/requirements.txt

export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  say "building herald"
  cargo build -p herald
fi

say "server API tests (cent $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cent"))'))"
cd tests/api
exec "../../$venv/bin/python" -m pytest . -v "$@"
