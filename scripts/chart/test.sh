#!/usr/bin/env bash
# Tests of the Helm chart charts/herald on a fresh Debian 12 machine: installs what is missing
# (Go + Sprig for the renderer, promtool, redis-server, a Python venv with pytest and
# kubernetes-validate, the npm CRD schema packages), builds scripts/chart/render.go and the herald
# binary if needed, then runs tests/chart. Extra arguments go to pytest (e.g. -k drain).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }
GO=/usr/lib/go-1.19/bin/go
SPRIG=/usr/share/gocode/src/github.com/Masterminds/sprig
YAML3=/usr/share/gocode/src/gopkg.in/yaml.v3

missing=()
[ -x "$GO" ] || missing+=(golang-1.19-go)
[ -d "$SPRIG" ] || missing+=(golang-github-masterminds-sprig-dev)
[ -d "$YAML3" ] || missing+=(golang-gopkg-yaml.v3-dev)
command -v promtool >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
scripts/apt-install.sh "${missing[@]}"

out=target/chart
mkdir -p "$out"
if [ ! -x "$out/render" ] || [ scripts/chart/render.go -nt "$out/render" ]; then
  say "building the chart renderer"
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PWD/$out/gocache" \
    "$GO" build -o "$out/render" scripts/chart/render.go
fi

venv=$out/venv
scripts/venv.sh "$venv" tests/chart/requirements.txt

if ! cmp -s tests/chart/package-lock.json tests/chart/node_modules/.package-lock.json 2>/dev/null; then
  say "npm packages (CRD schemas)"
  (cd tests/chart && npm ci --no-audit --no-fund --loglevel=error)
fi

export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  say "building herald"
  cargo build -p herald
fi

say "chart tests"
export PATH="$PWD/$venv/bin:$PATH"
exec python -m pytest tests/chart -v -s "$@"
