#!/usr/bin/env bash
# Rate sweep: one fleet run (run-fleet.sh) per rate in RATES, each on fresh servers, its merged
# summary written as $RESULTS/herald-sweep-$NAME-<rate>.json (scenario `sweep-$NAME`), which
# `herald-loadtest report` shows as one table row per rate with the highest rate whose
# client-observed p99 stayed under 20 ms and under 100 ms with nothing lost. KIND says which
# publications the rates are: `topic` (TOPIC_RATE, fan-out to the topic's subscribers on every
# gateway, PERSONAL_RATE as set) or `personal` (PERSONAL_RATE through the publisher nodes'
# server API, one delivery each, TOPIC_RATE 0).
#
#   KIND=topic RATES="1000 2000 3000" loadtest/run-sweep.sh          # deliveries: rate x 100
#   KIND=personal NAME=publish RATES="10000 30000 50000" FLEET_CONNECTIONS=20000 \
#     PUBLISHERS=2 EXTRA_ARGS="--publish-batch 50" loadtest/run-sweep.sh
#
# Knobs: KIND [topic], RATES [required, publications/s in all], NAME [KIND], and every knob of
# run-fleet.sh (FLEET_CONNECTIONS, GATEWAYS, LOADERS, PUBLISHERS, CLUSTER, DURATION, ...).
set -euo pipefail

KIND=${KIND:-topic}
NAME=${NAME:-$KIND}
RATES=${RATES:?"RATES: publications/s per run, e.g. RATES=\"1000 2000\""}
export SCENARIO="sweep-$NAME"

for rate in $RATES; do
  case $KIND in
    topic) export TOPIC_RATE=$rate ;;
    personal) export PERSONAL_RATE=$rate TOPIC_RATE=0 ;;
    *) echo "[run-sweep] KIND is topic or personal, not $KIND" >&2; exit 1 ;;
  esac
  echo "[run-sweep] $KIND publications at $rate/s" >&2
  RUN=$rate "$(dirname "${BASH_SOURCE[0]}")/run-fleet.sh"
  export BUILD=0
done
