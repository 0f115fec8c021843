#!/usr/bin/env bash
# Redis's own publish limit on this machine, the floor Herald's publish path is compared with:
# redis-benchmark runs PUBLISH and EVALSHA of Herald's publish script (read from the engine's
# source, so the figure follows the script) at the load generator's payload, one request at a
# time per client and pipelined, on a redis-server of its own; and the script with BATCH
# publications per call (its figure is publications/s). Prints one line per case and writes
# $RESULTS/redis-floor.json.
#
#   loadtest/run-redis-floor.sh
#
# Knobs: REQUESTS [300000 per case], CLIENTS [50], PIPELINE [16], BATCH [50],
# RESULTS [loadtest/results].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

REQUESTS=${REQUESTS:-300000}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-16}
BATCH=${BATCH:-50}
RESULTS=${RESULTS:-loadtest/results}

log() { printf '[redis-floor] %s\n' "$*" >&2; }
LOGS=$(mktemp -d /tmp/herald-redis-floor.XXXXXX)
STARTED=()
trap 'for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
start_redis

SCRIPT=$(sed -n '/^const PUBLISH_BATCH: &str = r#"$/,/^"#;$/p' services/core/src/engine/redis/scripts.rs | sed '1d;$d')
[[ -n $SCRIPT ]] || { log "publish script not found in services/core/src/engine/redis/scripts.rs"; exit 1; }
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$SCRIPT")
# The load generator's publication data, and the envelope Herald publishes for it.
DATA='{"seq":1234567,"ts":1764580000000000}'
ENVELOPE="{\"o\":1234,\"e\":\"a1b2c3d4\",\"p\":$DATA}"

# Requests per second of one redis-benchmark case.
bench() {
  local pipeline=$1; shift
  redis-benchmark -p "$REDIS_PORT" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" "$@" 2>&1 |
    tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}

declare -A rps
for p in 1 "$PIPELINE"; do
  rps[publish_p$p]=$(bench "$p" PUBLISH 'herald.pub.{user:1}' "$ENVELOPE")
  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
  # One channel, keys named as the engine names them: redis-benchmark draws every
  # placeholder on its own, so random channels would pair one channel's stream with
  # another's offsets. A history of 100 kept full: every append also trims one entry.
  rps[evalsha_p$p]=$(bench "$p" EVALSHA "$SHA" 2 'herald.stream.{user:1}' 'herald.meta.{user:1}' \
    publish 300 "$DATA" 100 300000 a1b2c3d4 2592000 'herald.pub.{user:1}' '' 0)
done
# BATCH publications into the one channel per call, one call at a time per client.
keys=() args=()
for ((i = 0; i < BATCH; i++)); do
  keys+=('herald.stream.{user:1}' 'herald.meta.{user:1}')
  args+=("$DATA" 100 300000 a1b2c3d4 2592000 'herald.pub.{user:1}' '' 0)
done
redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
calls=$(REQUESTS=$((REQUESTS / BATCH)) bench 1 EVALSHA "$SHA" "${#keys[@]}" "${keys[@]}" publish 300 "${args[@]}")
rps[evalsha_batch$BATCH]=$(awk -v c="$calls" -v b="$BATCH" 'BEGIN { if (c != "") printf "%.0f", c * b }')

mkdir -p "$RESULTS"
{
  printf '{"requests":%s,"clients":%s,"pipeline":%s' "$REQUESTS" "$CLIENTS" "$PIPELINE"
  for k in "${!rps[@]}"; do printf ',"%s_per_sec":%s' "$k" "${rps[$k]:-null}"; done
  printf '}\n'
} >"$RESULTS/redis-floor.json"
for k in publish_p1 "publish_p$PIPELINE" evalsha_p1 "evalsha_p$PIPELINE" "evalsha_batch$BATCH"; do
  printf '%-14s %10s/s\n' "$k" "${rps[$k]:-?}"
done
log "wrote $RESULTS/redis-floor.json"
