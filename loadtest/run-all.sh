#!/usr/bin/env bash
# Runs every load scenario against Herald, the Socket.IO peer and the plain ws peer (plus the raw
# TCP floor and, for Herald, the multi-node run of run-multinode.sh), RUNS times each, each run
# against a freshly started server, then regenerates loadtest/RESULTS.md (medians) from the JSON
# summaries. About 20 minutes on 2 cores by default.
#
#   loadtest/run-all.sh                      # everything
#   RUNS=1 TARGETS=herald SCENARIOS="broadcast idle" loadtest/run-all.sh
#   RUNS=1 TARGETS=herald FORMATS="json protobuf" SCENARIOS="broadcast idle" loadtest/run-all.sh
#
# Knobs (environment, defaults in brackets): RUNS [3], TARGETS [herald socketio ws; also
# herald-sse: Herald with its clients on Server-Sent Events], FORMATS [json; "json protobuf"
# runs every Herald WebSocket scenario in both client protocol formats, the Protobuf one
# reported as herald-protobuf],
# SCENARIOS [broadcast personal idle churn floor multinode], DURATION [10s], BROADCAST_DURATION
# [30s, broadcast and floor: user CPU comes in 10 ms ticks, and a 10 s run gives Herald only a few
# dozen of them], WARMUP [1s, left
# out of the latency histograms], BROADCAST_CONNECTIONS [2000],
# BROADCAST_RATE [20], PERSONAL_CONNECTIONS [2000], PERSONAL_RATE [5000], IDLE_CONNECTIONS [15000],
# IDLE_DURATION [5s], CHURN_WORKERS [50], FLOOR_BATCH [1], MULTINODE_CONNECTIONS [45000 over 3
# gateways, herald only], MULTINODE_RATE [1500], PEER_WORKERS [nproc],
# HERALD_ENGINE [redis | memory], SOURCE_ADDRS [127.0.0.2-127.0.0.20], RESULTS [loadtest/results],
# REPORT [loadtest/RESULTS.md], BUILD [1; 0 skips cargo build], EXTRA_ARGS [] (appended to every
# herald-loadtest call). Binaries come from ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

RUNS=${RUNS:-3}
TARGETS=${TARGETS:-"herald socketio ws"}
FORMATS=${FORMATS:-json}
SCENARIOS=${SCENARIOS:-"broadcast personal idle churn floor multinode"}
DURATION=${DURATION:-10s}
BROADCAST_DURATION=${BROADCAST_DURATION:-30s}
WARMUP=${WARMUP:-1s}
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-2000}
BROADCAST_RATE=${BROADCAST_RATE:-20}
PERSONAL_CONNECTIONS=${PERSONAL_CONNECTIONS:-2000}
PERSONAL_RATE=${PERSONAL_RATE:-5000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-15000}
IDLE_DURATION=${IDLE_DURATION:-5s}
CHURN_WORKERS=${CHURN_WORKERS:-50}
FLOOR_BATCH=${FLOOR_BATCH:-1}
MULTINODE_CONNECTIONS=${MULTINODE_CONNECTIONS:-45000}
MULTINODE_RATE=${MULTINODE_RATE:-1500}
PEER_WORKERS=${PEER_WORKERS:-$(nproc)}
HERALD_ENGINE=${HERALD_ENGINE:-redis}
SOURCE_ADDRS=${SOURCE_ADDRS:-127.0.0.2-127.0.0.20}
RESULTS=${RESULTS:-loadtest/results}
REPORT=${REPORT:-loadtest/RESULTS.md}
BUILD=${BUILD:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}

LOGS=$(mktemp -d /tmp/herald-loadtest.XXXXXX)
STARTED=()      # pids of processes this script started
SERVER_PID=""   # primary pid of the server under test
SERVER_PIDS=""  # comma-separated pids to sample

log() { printf '[run-all] %s\n' "$*" >&2; }

cleanup() {
  stop_server
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT



build() {
  [[ $BUILD == 1 ]] || return 0
  if [[ " $TARGETS " == *" herald "* ]]; then
    cargo build --release -p herald -p herald-loadtest
  else
    cargo build --release -p herald-loadtest
  fi
  if [[ " $TARGETS " == *" socketio "* || " $TARGETS " == *" ws "* ]]; then
    [[ -d loadtest/peers/node_modules ]] || (cd loadtest/peers && npm ci --no-audit --no-fund)
  fi
}


# Starts the server for target $1 (three attempts) and sets WS_URL, API_URL, SERVER_PID,
# SERVER_PIDS.
start_server() {
  local attempt
  for attempt in 1 2 3; do
    try_start_server "$1" && return 0
    stop_server
    log "start of $1 failed (attempt $attempt)"
  done
  exit 1
}

try_start_server() {
  local target=$1 port iport logf="$LOGS/$1.log"
  port=$(free_port)
  case $target in
    herald)
      iport=$(free_port)
      local engine=()
      [[ $HERALD_ENGINE == redis ]] && engine=(HERALD_ENGINE__REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
      env HERALD_AUTH__HMAC_SECRET="$HMAC_SECRET" HERALD_API__KEY="$API_KEY" \
        HERALD_SERVER__CLIENT_ADDR="127.0.0.1:$port" HERALD_SERVER__INTERNAL_ADDR="127.0.0.1:$iport" \
        "${engine[@]}" "$BIN/herald" >>"$logf" 2>&1 &
      SERVER_PID=$!
      wait_ready "http://127.0.0.1:$iport/readyz" "$SERVER_PID" "$logf" || return 1
      WS_URL="ws://127.0.0.1:$port/connection/websocket"
      API_URL="http://127.0.0.1:$iport"
      SERVER_PIDS=$SERVER_PID
      ;;
    socketio | ws)
      local script=ws-server.js
      [[ $target == socketio ]] && script=socketio-server.js
      PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT" API_KEY="$API_KEY" WORKERS=$PEER_WORKERS \
        node "loadtest/peers/$script" >>"$logf" 2>&1 &
      SERVER_PID=$!
      wait_ready "http://127.0.0.1:$port/readyz" "$SERVER_PID" "$logf" || return 1
      WS_URL="ws://127.0.0.1:$port/"
      [[ $target == socketio ]] && WS_URL="ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket"
      API_URL="http://127.0.0.1:$port"
      SERVER_PIDS=$SERVER_PID
      local child
      for child in $(pgrep -P "$SERVER_PID" || true); do SERVER_PIDS+=",$child"; done
      ;;
  esac
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# Scenario-specific arguments.
scenario_args() {
  case $1 in
    broadcast) echo "--connections $BROADCAST_CONNECTIONS --rate $BROADCAST_RATE --duration $BROADCAST_DURATION --warmup $WARMUP" ;;
    personal) echo "--connections $PERSONAL_CONNECTIONS --rate $PERSONAL_RATE --duration $DURATION --warmup $WARMUP" ;;
    idle) echo "--connections $IDLE_CONNECTIONS --duration $IDLE_DURATION" ;;
    churn) echo "--connections $CHURN_WORKERS --duration $DURATION" ;;
    floor) echo "--connections $BROADCAST_CONNECTIONS --rate $BROADCAST_RATE --duration $BROADCAST_DURATION --warmup $WARMUP --floor-batch $FLOOR_BATCH" ;;
  esac
}

# The multi-node run: gateways, publisher and load processes of its own, on this script's Redis.
run_multinode() {
  local run=$1
  log "herald multinode run $run"
  MULTINODE_CONNECTIONS=$MULTINODE_CONNECTIONS MULTINODE_RATE=$MULTINODE_RATE DURATION=$DURATION \
    WARMUP=$WARMUP RUN=$run RESULTS=$RESULTS REDIS_PORT=$REDIS_PORT BUILD=0 EXTRA_ARGS=$EXTRA_ARGS \
    loadtest/run-multinode.sh || log "herald multinode run $run failed"
}

run_one() {
  local target=$1 scenario=$2 run=$3 format=${4:-json} out name=$1
  [[ $format == json ]] || name="$target-$format"
  out="$RESULTS/$name-$scenario-$run.json"
  # shellcheck disable=SC2046,SC2086
  if [[ $scenario == floor ]]; then
    out="$RESULTS/floor-floor-$run.json"
    log "floor run $run"
    "$LOADTEST" --scenario floor $(scenario_args floor) --source-addrs "$SOURCE_ADDRS" --out "$out" $EXTRA_ARGS
    return
  fi
  # herald-sse: Herald's server, its clients on Server-Sent Events.
  local server=${target%-sse} transport=()
  [[ $target == *-sse ]] && transport=(--transport sse)
  start_server "$server"
  log "$name $scenario run $run (server pids $SERVER_PIDS)"
  # shellcheck disable=SC2046,SC2086
  "$LOADTEST" --target "$server" "${transport[@]}" --format "$format" --scenario "$scenario" $(scenario_args "$scenario") \
    --ws-url "$WS_URL" --api-url "$API_URL" --api-key "$API_KEY" --hmac-secret "$HMAC_SECRET" \
    --server-pid "$SERVER_PIDS" --source-addrs "$SOURCE_ADDRS" --out "$out" $EXTRA_ARGS \
    || log "$name $scenario run $run failed (see $LOGS/$server.log)"
  stop_server
}

main() {
  local started_at
  started_at=$(date +%s)
  build
  mkdir -p "$RESULTS"
  start_redis
  for run in $(seq "$RUNS"); do
    for scenario in $SCENARIOS; do
      if [[ $scenario == floor ]]; then run_one floor floor "$run"; continue; fi
      [[ $scenario == multinode ]] && continue
      for target in $TARGETS; do
        if [[ $target == herald ]]; then
          for format in $FORMATS; do run_one herald "$scenario" "$run" "$format"; done
        else
          run_one "$target" "$scenario" "$run"
        fi
      done
    done
  done
  # The multi-node runs come last: their 45,000 connections leave as many sockets in TIME_WAIT
  # and a busy machine behind, which would weigh on whichever single-node run came next.
  if [[ " $SCENARIOS " == *" multinode "* && " $TARGETS " == *" herald "* ]]; then
    for run in $(seq "$RUNS"); do run_multinode "$run"; done
  fi
  local invocation="loadtest/run-all.sh"
  local knobs="RUNS=$RUNS FORMATS='$FORMATS' DURATION=$DURATION BROADCAST_DURATION=$BROADCAST_DURATION WARMUP=$WARMUP BROADCAST_CONNECTIONS=$BROADCAST_CONNECTIONS BROADCAST_RATE=$BROADCAST_RATE PERSONAL_CONNECTIONS=$PERSONAL_CONNECTIONS PERSONAL_RATE=$PERSONAL_RATE IDLE_CONNECTIONS=$IDLE_CONNECTIONS CHURN_WORKERS=$CHURN_WORKERS FLOOR_BATCH=$FLOOR_BATCH MULTINODE_CONNECTIONS=$MULTINODE_CONNECTIONS MULTINODE_RATE=$MULTINODE_RATE PEER_WORKERS=$PEER_WORKERS HERALD_ENGINE=$HERALD_ENGINE"
  "$LOADTEST" report --results "$RESULTS" --out "$REPORT" --invocation "$knobs $invocation"
  # Kept by hand: what the scale-out runs show together, and what each server change bought
  # (measured when the change was made).
  { echo; cat loadtest/scale.md; echo; cat loadtest/changes.md; } >>"$REPORT"
  log "done in $(( $(date +%s) - started_at ))s; server logs in $LOGS"
}

main "$@"
