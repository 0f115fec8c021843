#!/usr/bin/env bash
# Multi-node run: NODES Herald gateways (role gateway) and one publisher node (role publisher)
# on one redis-server, one herald-loadtest process per gateway. Every process runs the personal
# scenario against its own gateway with its own users (`--user-offset`) and publishes only to
# them through the shared publish API, so each publication crosses Redis. The processes start
# publishing together (`--wait-for-go`); their summaries are then merged (`herald-loadtest
# merge`) into $RESULTS/herald-multinode-$RUN.json, scenario `multinode`, which
# `herald-loadtest report` shows in RESULTS.md. The per-process summaries stay in $RESULTS/parts.
#
#   loadtest/run-multinode.sh                          # 45,000 connections, 1,500/s, 10 s
#   MULTINODE_CONNECTIONS=3000 DURATION=3s loadtest/run-multinode.sh
#
# Knobs (environment, defaults in brackets): MULTINODE_CONNECTIONS [45000, split evenly over
# the nodes], MULTINODE_RATE [1500 publications/s, split evenly], NODES [3], DURATION [10s],
# WARMUP [1s], RUN [1, number in the file names], RESULTS [loadtest/results],
# ADDRS_PER_NODE [6 source addresses 127.0.0.x per load process], REDIS_PORT [unset: start a
# redis-server on a free port], BUILD [1; 0 skips cargo build], EXTRA_ARGS [] (appended to every
# herald-loadtest run). Binaries come from ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

MULTINODE_CONNECTIONS=${MULTINODE_CONNECTIONS:-45000}
MULTINODE_RATE=${MULTINODE_RATE:-1500}
NODES=${NODES:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
RUN=${RUN:-1}
RESULTS=${RESULTS:-loadtest/results}
ADDRS_PER_NODE=${ADDRS_PER_NODE:-6}
REDIS_PORT=${REDIS_PORT:-}
BUILD=${BUILD:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}

HERALD=$BIN/herald
# Publish requests in flight per load process, as passed to --max-inflight.
MAX_INFLIGHT=256
LOGS=$(mktemp -d /tmp/herald-multinode.XXXXXX)
STARTED=()  # pids of the servers this script started, stopped on exit
LOADERS=()  # pids of the load processes

log() { printf '[run-multinode] %s\n' "$*" >&2; }

cleanup() {
  local pid
  for pid in "${LOADERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT



# Every process of the run (gateway or load generator) holds up to $PER sockets plus a few
# hundred more; the open-file limit is per process.
check_limits() {
  local hard need
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ulimit -n "$hard"
  need=$((PER + MAX_INFLIGHT + 256))
  if [[ $hard != unlimited ]] && (( need > hard )); then
    log "each process may open at most $hard files (hard RLIMIT_NOFILE) but $PER connections per"
    log "process need about $need: raise NODES, lower MULTINODE_CONNECTIONS or raise the hard limit"
    exit 1
  fi
  if (( 2 + NODES * ADDRS_PER_NODE > 255 )); then
    log "NODES × ADDRS_PER_NODE source addresses do not fit in 127.0.0.2-127.0.0.255"; exit 1
  fi
}


# Starts a Herald node of role $1 named $2; sets NODE_PID, NODE_PORT (client) and NODE_IPORT.
start_node() {
  local role=$1 name=$2 logf="$LOGS/$2.log"
  NODE_PORT=$(free_port)
  NODE_IPORT=$(free_port)
  env HERALD_AUTH__HMAC_SECRET="$HMAC_SECRET" HERALD_API__KEY="$API_KEY" \
    HERALD_SERVER__ROLE="$role" HERALD_SERVER__NAME="$name" \
    HERALD_SERVER__CLIENT_ADDR="127.0.0.1:$NODE_PORT" \
    HERALD_SERVER__INTERNAL_ADDR="127.0.0.1:$NODE_IPORT" \
    HERALD_ENGINE__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    "$HERALD" >>"$logf" 2>&1 &
  NODE_PID=$!
  STARTED+=("$NODE_PID")
  wait_ready "http://127.0.0.1:$NODE_IPORT/readyz" "$NODE_PID" "$logf"
}

main() {
  (( NODES >= 1 )) || { log "NODES must be at least 1"; exit 1; }
  PER=$((MULTINODE_CONNECTIONS / NODES))
  (( PER * NODES == MULTINODE_CONNECTIONS )) \
    || { log "MULTINODE_CONNECTIONS=$MULTINODE_CONNECTIONS is not a multiple of NODES=$NODES"; exit 1; }
  local rate
  rate=$(awk -v r="$MULTINODE_RATE" -v n="$NODES" 'BEGIN { printf "%g", r / n }')
  check_limits
  if [[ $BUILD == 1 ]]; then cargo build --release -p herald -p herald-loadtest; fi
  mkdir -p "$RESULTS/parts"
  start_redis

  local k ports=() pids=()
  for k in $(seq 0 $((NODES - 1))); do
    start_node gateway "gateway-$((k + 1))"
    ports+=("$NODE_PORT")
    pids+=("$NODE_PID")
  done
  start_node publisher publisher
  local api="http://127.0.0.1:$NODE_IPORT"
  log "$NODES gateways (pids ${pids[*]}) and a publisher on redis port $REDIS_PORT"

  # One load process per gateway. Each says `ready` on its stdout once connected and starts
  # measuring when it reads a line on its stdin; both are FIFOs held open by this shell.
  local parts=() go=() ready=() first last fd
  for k in $(seq 0 $((NODES - 1))); do
    first=$((2 + k * ADDRS_PER_NODE))
    last=$((first + ADDRS_PER_NODE - 1))
    parts+=("$RESULTS/parts/herald-multinode-$RUN-$((k + 1)).json")
    mkfifo "$LOGS/go-$k" "$LOGS/ready-$k"
    # shellcheck disable=SC2086
    "$LOADTEST" --target herald --scenario personal --connections "$PER" --rate "$rate" \
      --duration "$DURATION" --warmup "$WARMUP" --user-offset $((k * PER)) \
      --ws-url "ws://127.0.0.1:${ports[k]}/connection/websocket" --api-url "$api" \
      --api-key "$API_KEY" --hmac-secret "$HMAC_SECRET" --server-pid "${pids[k]}" \
      --source-addrs "127.0.0.$first-127.0.0.$last" --max-inflight "$MAX_INFLIGHT" \
      --wait-for-go --save-histogram --no-plots --out "${parts[k]}" $EXTRA_ARGS \
      <"$LOGS/go-$k" >"$LOGS/ready-$k" 2>"$LOGS/loadtest-$((k + 1)).log" &
    LOADERS+=($!)
    exec {fd}>"$LOGS/go-$k"
    go+=("$fd")
    exec {fd}<"$LOGS/ready-$k"
    ready+=("$fd")
  done
  log "connecting $PER clients per gateway ($NODES load processes, logs in $LOGS)"
  await_loaders_ready "${ready[@]}"
  log "all connected; publishing $MULTINODE_RATE/s in all for $DURATION"
  for k in $(seq 0 $((NODES - 1))); do echo go >&"${go[k]}"; done

  local failed=0
  for k in $(seq 0 $((NODES - 1))); do
    if ! wait "${LOADERS[k]}"; then
      log "load process $((k + 1)) failed; last lines of its log:"
      tail -5 "$LOGS/loadtest-$((k + 1)).log" >&2
      failed=1
    fi
  done
  LOADERS=()
  for k in $(seq 0 $((NODES - 1))); do
    grep -E '^herald personal:' "$LOGS/loadtest-$((k + 1)).log" | sed "s/^/  node $((k + 1)): /" >&2 || true
  done
  (( failed == 0 )) || exit 1
  "$LOADTEST" merge --scenario multinode --out "$RESULTS/herald-multinode-$RUN.json" "${parts[@]}"
}

main "$@"
