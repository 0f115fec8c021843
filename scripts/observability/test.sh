#!/usr/bin/env bash
# Observability tests on a fresh Debian 12 machine: installs what is missing (prometheus with
# promtool, redis-server, Node packages of tests/js, a Python venv with pytest), builds herald and
# the load generator if needed, then runs tests/observability: promtool unit tests of every alert
# and the live test (Redis, a publisher, two gateways, a real Prometheus, traffic from the load
# generator and the centrifuge SDK; every dashboard query must return data, alerts stay quiet,
# the Redis alert fires once Redis is killed). Extra arguments go to pytest (e.g. -k rules).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
scripts/apt-install.sh "${missing[@]}"

venv=target/observability/venv
scripts/venv.sh "$venv" tests/observability/requirements.txt

if [ ! tests/js/node_modules/.package-lock.json -nt tests/js/package-lock.json ]; then
  say "node packages (centrifuge SDK)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
export HERALD_LOADTEST_BIN="${HERALD_LOADTEST_BIN:-$PWD/target/debug/herald-loadtest}"
if [ ! -x "$HERALD_BIN" ] || [ ! -x "$HERALD_LOADTEST_BIN" ]; then
  say "building herald and the load generator"
  cargo build -p herald -p herald-loadtest
fi

say "observability tests"
export PATH="$PWD/$venv/bin:$PATH"
cd tests/observability
exec python -m pytest . -v -s "$@"
