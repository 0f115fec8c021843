#!/usr/bin/env bash
# Reconnect storm: a fleet run (run-fleet.sh) whose clients reconnect (`--reconnect`: backoff
# with jitter, recovery of their topic from the last position they saw), with gateway 1 killed
# by SIGKILL KILL_AT seconds into the publishing. Its clients come back on the other gateways;
# the merged summary ($RESULTS/herald-storm-$RUN.json, scenario `storm`) holds the time until
# 99% and all of them were back and recovered (`storm`), what was lost, the other gateways'
# publish-to-write latency over the run, Redis's commands per reconnected client beyond the
# steady rate, and the timeline plot (connections, deliveries/s, p99 per second).
#
#   loadtest/run-storm.sh       # 90,000 clients on 6 gateways (15,000 on the one killed), 30 s
#   GATEWAYS=3 FLEET_CONNECTIONS=6000 DURATION=10s KILL_AT=4 loadtest/run-storm.sh
#
# Knobs: those of run-fleet.sh, with these defaults: FLEET_CONNECTIONS [90000], GATEWAYS [6],
# TOPIC_RATE [1000], PERSONAL_RATE [0: a new connection recovers its topic only], DURATION
# [30s], KILL_AT [10], SCENARIO [storm].
set -euo pipefail

export FLEET_CONNECTIONS=${FLEET_CONNECTIONS:-90000}
export GATEWAYS=${GATEWAYS:-6}
export TOPIC_RATE=${TOPIC_RATE:-1000}
export PERSONAL_RATE=${PERSONAL_RATE:-0}
export DURATION=${DURATION:-30s}
export KILL_AT=${KILL_AT:-10}
export SCENARIO=${SCENARIO:-storm}
exec "$(dirname "${BASH_SOURCE[0]}")/run-fleet.sh" "$@"
