#!/usr/bin/env bash
# Runs Herald's whole test suite on a fresh Debian machine: installs what is
# missing (redis-server, promtool, Chromium, Node packages, iproute2, iptables),
# builds, then runs the Rust tests (network fault drills included), the server
# API suite (Centrifugo's Python client `cent`, memory and Redis engines), the
# Python client SDK suite (centrifuge-python, JSON and Protobuf), the
# Autobahn WebSocket conformance cases (report in target/autobahn/report/), the Node
# suites (official centrifuge SDK on the JSON and Protobuf wires, raw protocol,
# demo page in headless Chromium, rolling restart), the deployment suites (Helm chart, kustomize, Dockerfile;
# each installs its own tools: Go + Sprig, kubectl, kubernetes-validate,
# promtool) and the observability suite (a real Prometheus scraping a live
# cluster). `scripts/test.sh js` runs only the Node suites; `scripts/test.sh
# fuzz` only the parsers' fuzz properties, FUZZ_CASES (200,000) cases each
# (`cargo test` runs them too, with a few thousand).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh

say() { printf '\n== %s\n' "$*"; }

if [ "${1:-all}" = fuzz ]; then
  export PROPTEST_CASES="${FUZZ_CASES:-200000}"
  say "fuzz: first requests, handshakes and WebSocket frames, $PROPTEST_CASES cases each"
  cargo test -p herald-gateway --lib properties
  say "fuzz: command frames (JSON and Protobuf), command fields and tokens, $PROPTEST_CASES cases each"
  cargo test -p herald-core --test fuzz_command --test fuzz_command_fields --test fuzz_protobuf --test fuzz_token
  exit 0
fi

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v promtool >/dev/null || missing+=(prometheus)
# The network fault drills: namespaces and veth pairs (ip), flows (ss), packet drops (iptables).
command -v ip >/dev/null && command -v ss >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
scripts/apt-install.sh "${missing[@]}"
redis-server --version | grep -Eq 'v=(7|8|9)\.' || { echo "redis-server 7 or newer is required (sharded pub/sub)"; exit 1; }

say "node packages"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

say "build"
cargo build --workspace --all-targets
export HERALD_BIN="$PWD/target/debug/herald"

if [ "${1:-all}" != js ]; then
  say "rust tests"
  cargo test --workspace
  say "server API with the official cent client"
  scripts/api/test.sh
  say "client SDK centrifuge-python, JSON and Protobuf"
  scripts/sdk-python/test.sh
  say "WebSocket conformance: Autobahn cases against the test-only echo endpoint"
  scripts/autobahn/test.sh
fi

say "node tests (centrifuge SDK, protocol, demo page in Chromium, rolling restart)"
(cd tests/js && node --test --test-concurrency=1 --test-reporter=spec)

if [ "${1:-all}" != js ]; then
  say "Helm chart: rendered, validated (Kubernetes 1.30, CRDs, promtool), probes and drain"
  scripts/chart/test.sh
  say "observability: alert rule unit tests, dashboards and alerts against a live Prometheus"
  scripts/observability/test.sh
  say "kustomize overlays and Dockerfile: rendered, validated"
  scripts/k8s/test.sh
fi
