#!/usr/bin/env bash
# Fleet run: GATEWAYS Herald gateways (role gateway) and one publisher node (role publisher) on
# one redis-server, or with CLUSTER=1 on a Redis Cluster of 3 masters, and LOADERS
# herald-loadtest processes running the `fleet` scenario: every client holds its personal
# channel and one of TOPICS topics `stock:<k>`; publications go to the topics at TOPIC_RATE and
# to the personal channels at PERSONAL_RATE (both in all), through the publisher node. Each load
# process has its own users (`--user-offset`) and its own topics (`--topic-offset`), and
# spreads its clients over all the gateways (user u on gateway u mod GATEWAYS), so a topic has
# subscribers on every gateway. The processes start publishing together (`--wait-for-go`).
# Around the measured phase the script saves Redis `INFO` and every gateway's `/metrics`; the
# summaries are merged (`herald-loadtest merge`) with Redis CPU and commands and Herald's own
# publish-to-write latency into $RESULTS/herald-$SCENARIO-$RUN.json, which
# `herald-loadtest report` shows in RESULTS.md. Per-process summaries stay in $RESULTS/parts.
#
# With KILL_AT=S (what run-storm.sh sets), gateway 1 is killed with SIGKILL S seconds after the
# load processes start publishing; the clients run with `--reconnect` and come back on the other
# gateways (a random one each), recovering their topic from where they were. Redis INFO is also
# saved at the kill, so the merged summary has the commands per reconnected client beyond the
# steady rate; metrics are scraped from the surviving gateways only.
#
#   loadtest/run-fleet.sh     # 100,000 clients, 6 gateways, 1,000 topics, 100,000 deliveries/s
#   GATEWAYS=2 FLEET_CONNECTIONS=4000 TOPIC_RATE=1000 PERSONAL_RATE=200 DURATION=10s loadtest/run-fleet.sh
#
# Knobs (environment, defaults in brackets): FLEET_CONNECTIONS [100000], GATEWAYS [6],
# LOADERS [GATEWAYS; at most 19,000 clients each], TOPICS [1000], TOPIC_RATE [1000
# publications/s over all topics], PERSONAL_RATE [5000/s over all users], DURATION [60s],
# WARMUP [2s], SETTLE [2, seconds], NODE_THREADS [1 runtime worker per Herald node],
# LOADER_THREADS [1 per load process] (a dozen processes share the cores: one thread each
# spares them the switching), LOADER_NICE [0; the load processes' nice value: 10 lets the
# servers have the cores first, which tells Herald's share of the tail from the load
# generator's], CLUSTER [0; 1 = 3-master Redis Cluster], PUBLISHERS [1
# publisher node; load process k publishes through publisher k mod PUBLISHERS], KILL_AT [unset],
# RECONNECT [0; 1 with KILL_AT], HISTORY_SIZE [100, of the stock namespace], HISTORY_TTL [5m],
# SCENARIO [fleet, fleet-cluster with CLUSTER=1], RUN [1], RESULTS [loadtest/results],
# ADDRS_PER_LOADER [6 source addresses 127.0.0.x per load process], BUILD [1; 0 skips cargo
# build], EXTRA_ARGS [] (appended to every herald-loadtest run). Binaries come from
# ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh

FLEET_CONNECTIONS=${FLEET_CONNECTIONS:-100000}
GATEWAYS=${GATEWAYS:-6}
LOADERS=${LOADERS:-$GATEWAYS}
TOPICS=${TOPICS:-1000}
TOPIC_RATE=${TOPIC_RATE:-1000}
PERSONAL_RATE=${PERSONAL_RATE:-5000}
DURATION=${DURATION:-60s}
WARMUP=${WARMUP:-2s}
SETTLE=${SETTLE:-2}
CLUSTER=${CLUSTER:-0}
PUBLISHERS=${PUBLISHERS:-1}
NODE_THREADS=${NODE_THREADS:-1}
LOADER_THREADS=${LOADER_THREADS:-1}
LOADER_NICE=${LOADER_NICE:-0}
KILL_AT=${KILL_AT:-}
RECONNECT=${RECONNECT:-$([[ -n $KILL_AT ]] && echo 1 || echo 0)}
HISTORY_SIZE=${HISTORY_SIZE:-100}
HISTORY_TTL=${HISTORY_TTL:-5m}
SCENARIO=${SCENARIO:-$([[ $CLUSTER == 1 ]] && echo fleet-cluster || echo fleet)}
RUN=${RUN:-1}
RESULTS=${RESULTS:-loadtest/results}
ADDRS_PER_LOADER=${ADDRS_PER_LOADER:-6}
BUILD=${BUILD:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}

HERALD=$BIN/herald
# Publish requests in flight per load process, as passed to --max-inflight.
MAX_INFLIGHT=256
# Most clients one load process may hold (the open-file limit is 20,000 per process).
MAX_PER_LOADER=19000
LOGS=$(mktemp -d /tmp/herald-fleet.XXXXXX)
STARTED=()  # pids of the servers this script started, stopped on exit
LOADPIDS=() # pids of the load processes
REDIS_PORTS=()

log() { printf '[run-fleet] %s\n' "$*" >&2; }

cleanup() {
  local pid
  for pid in "${LOADPIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

check_knobs() {
  local hard per
  (( GATEWAYS >= 1 && LOADERS >= 1 )) || { log "GATEWAYS and LOADERS must be at least 1"; exit 1; }
  (( TOPICS >= LOADERS )) || { log "TOPICS=$TOPICS: every load process needs a topic of its own"; exit 1; }
  per=$(( (FLEET_CONNECTIONS + LOADERS - 1) / LOADERS ))
  (( per <= MAX_PER_LOADER )) \
    || { log "$per clients per load process: raise LOADERS (at most $MAX_PER_LOADER each)"; exit 1; }
  if [[ -n $KILL_AT ]] && (( GATEWAYS < 2 )); then
    log "KILL_AT needs at least 2 gateways"; exit 1
  fi
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ulimit -n "$hard"
  if [[ $hard != unlimited ]] && (( per + MAX_INFLIGHT + 256 > hard )); then
    log "each process may open at most $hard files but $per clients need about $((per + MAX_INFLIGHT + 256))"
    exit 1
  fi
  if (( 2 + LOADERS * ADDRS_PER_LOADER > 255 )); then
    log "LOADERS × ADDRS_PER_LOADER source addresses do not fit in 127.0.0.2-127.0.0.255"; exit 1
  fi
}

# Starts a Herald node of role $1 named $2; sets NODE_PID, NODE_PORT (client) and NODE_IPORT.
# A port taken between its choice and the bind fails the attempt; three are made.
start_node() {
  local attempt
  for attempt in 1 2 3; do
    try_start_node "$@" && return 0
    log "start of $2 failed (attempt $attempt)"
  done
  exit 1
}

try_start_node() {
  local role=$1 name=$2 logf="$LOGS/$2.log" engine
  NODE_PORT=$(free_port)
  NODE_IPORT=$(free_port)
  if [[ $CLUSTER == 1 ]]; then
    engine=(HERALD_ENGINE__REDIS_CLUSTER="$(printf '127.0.0.1:%s,' "${REDIS_PORTS[@]}" | sed 's/,$//')")
  else
    engine=(HERALD_ENGINE__REDIS_URL="redis://127.0.0.1:${REDIS_PORTS[0]}")
  fi
  env HERALD_AUTH__HMAC_SECRET="$HMAC_SECRET" HERALD_API__KEY="$API_KEY" \
    HERALD_SERVER__ROLE="$role" HERALD_SERVER__NAME="$name" \
    HERALD_SERVER__WORKER_THREADS="$NODE_THREADS" \
    HERALD_SERVER__CLIENT_ADDR="127.0.0.1:$NODE_PORT" \
    HERALD_SERVER__INTERNAL_ADDR="127.0.0.1:$NODE_IPORT" \
    HERALD_NAMESPACES__STOCK__HISTORY_SIZE="$HISTORY_SIZE" \
    HERALD_NAMESPACES__STOCK__HISTORY_TTL="$HISTORY_TTL" \
    "${engine[@]}" "$HERALD" >>"$logf" 2>&1 &
  NODE_PID=$!
  STARTED+=("$NODE_PID")
  wait_ready "http://127.0.0.1:$NODE_IPORT/readyz" "$NODE_PID" "$logf"
}

# CPU clock ticks (user + system) the publisher nodes have used so far.
publisher_ticks() {
  local pid sum=0
  for pid in "${PUBLISHER_PIDS[@]}"; do
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}

# Saves Redis INFO of every instance as $LOGS/redis-$1-<k>; prints the files, comma separated.
sample_redis() {
  local k files=()
  for k in "${!REDIS_PORTS[@]}"; do
    save_redis_info "${REDIS_PORTS[k]}" "$LOGS/redis-$1-$k"
    files+=("$LOGS/redis-$1-$k")
  done
  (IFS=,; echo "${files[*]}")
}

# Saves /metrics of the gateways whose indexes follow $1 as $LOGS/metrics-$1-<k>; prints the
# files, comma separated.
sample_metrics() {
  local tag=$1 k files=()
  shift
  for k in "$@"; do
    curl -sf "http://127.0.0.1:${IPORTS[k]}/metrics" >"$LOGS/metrics-$tag-$k"
    files+=("$LOGS/metrics-$tag-$k")
  done
  (IFS=,; echo "${files[*]}")
}

main() {
  check_knobs
  if [[ $BUILD == 1 ]]; then cargo build --release -p herald -p herald-loadtest; fi
  mkdir -p "$RESULTS/parts"
  if [[ $CLUSTER == 1 ]]; then
    start_cluster 3
  else
    REDIS_PORT=
    start_redis
    REDIS_PORTS=("$REDIS_PORT")
  fi

  local k urls=() pids=()
  IPORTS=()
  for k in $(seq 0 $((GATEWAYS - 1))); do
    start_node gateway "gateway-$((k + 1))"
    urls+=("ws://127.0.0.1:$NODE_PORT/connection/websocket")
    pids+=("$NODE_PID")
    IPORTS+=("$NODE_IPORT")
  done
  local apis=()
  PUBLISHER_PIDS=()
  for k in $(seq 1 "$PUBLISHERS"); do
    start_node publisher "publisher-$k"
    apis+=("http://127.0.0.1:$NODE_IPORT")
    PUBLISHER_PIDS+=("$NODE_PID")
  done
  local url_list
  url_list=$(IFS=,; echo "${urls[*]}")
  log "$GATEWAYS gateways (pids ${pids[*]}) and $PUBLISHERS publisher(s) on redis ports ${REDIS_PORTS[*]}"

  # Load process k: users [u0, u1), topics [t0, t1), rates in proportion.
  local parts=() go=() ready=() first last fd u0 u1 t0 t1 trate prate extra
  for k in $(seq 0 $((LOADERS - 1))); do
    u0=$((k * FLEET_CONNECTIONS / LOADERS)); u1=$(((k + 1) * FLEET_CONNECTIONS / LOADERS))
    t0=$((k * TOPICS / LOADERS)); t1=$(((k + 1) * TOPICS / LOADERS))
    trate=$(awk -v r="$TOPIC_RATE" -v a="$t0" -v b="$t1" -v n="$TOPICS" 'BEGIN { printf "%g", r * (b - a) / n }')
    prate=$(awk -v r="$PERSONAL_RATE" -v a="$u0" -v b="$u1" -v n="$FLEET_CONNECTIONS" 'BEGIN { printf "%g", r * (b - a) / n }')
    first=$((2 + k * ADDRS_PER_LOADER))
    last=$((first + ADDRS_PER_LOADER - 1))
    extra=()
    # Each process samples one gateway, so that the merged server figures count each once;
    # a killed gateway cannot be sampled to the end.
    if [[ -z $KILL_AT ]] && (( LOADERS == GATEWAYS )); then extra+=(--server-pid "${pids[k]}"); fi
    if [[ $RECONNECT == 1 ]]; then extra+=(--reconnect); fi
    parts+=("$RESULTS/parts/herald-$SCENARIO-$RUN-$((k + 1)).json")
    mkfifo "$LOGS/go-$k" "$LOGS/ready-$k"
    # shellcheck disable=SC2086
    nice -n "$LOADER_NICE" "$LOADTEST" --target herald --scenario fleet --connections $((u1 - u0)) \
      --user-offset "$u0" --topics $((t1 - t0)) --topic-offset "$t0" \
      --topic-rate "$trate" --personal-rate "$prate" \
      --duration "$DURATION" --warmup "$WARMUP" --settle "${SETTLE}s" \
      --ws-url "$url_list" --api-url "${apis[k % PUBLISHERS]}" \
      --api-key "$API_KEY" --hmac-secret "$HMAC_SECRET" "${extra[@]}" \
      --source-addrs "127.0.0.$first-127.0.0.$last" --max-inflight "$MAX_INFLIGHT" \
      --threads "$LOADER_THREADS" \
      --wait-for-go --save-histogram --no-plots --out "${parts[k]}" $EXTRA_ARGS \
      <"$LOGS/go-$k" >"$LOGS/ready-$k" 2>"$LOGS/loadtest-$((k + 1)).log" &
    LOADPIDS+=($!)
    exec {fd}>"$LOGS/go-$k"
    go+=("$fd")
    exec {fd}<"$LOGS/ready-$k"
    ready+=("$fd")
  done
  log "connecting $FLEET_CONNECTIONS clients ($LOADERS load processes, logs in $LOGS)"
  await_loaders_ready "${ready[@]}"
  local scraped=() redis_before metrics_before redis_kill=""
  if [[ -n $KILL_AT ]]; then scraped=($(seq 1 $((GATEWAYS - 1)))); else scraped=($(seq 0 $((GATEWAYS - 1)))); fi
  redis_before=$(sample_redis before)
  metrics_before=$(sample_metrics before "${scraped[@]}")
  local ticks_before
  ticks_before=$(publisher_ticks)
  log "all connected; publishing $TOPIC_RATE/s to $TOPICS topics and $PERSONAL_RATE/s to users for $DURATION"
  for k in $(seq 0 $((LOADERS - 1))); do echo go >&"${go[k]}"; done

  if [[ -n $KILL_AT ]]; then
    sleep "$(awk -v a="$SETTLE" -v b="$KILL_AT" 'BEGIN { print a + b }')"
    redis_kill=$(sample_redis kill)
    kill -KILL "${pids[0]}"
    wait "${pids[0]}" 2>/dev/null || true
    log "killed gateway 1 (pid ${pids[0]}) with SIGKILL"
  fi

  local failed=0
  for k in $(seq 0 $((LOADERS - 1))); do
    if ! wait "${LOADPIDS[k]}"; then
      log "load process $((k + 1)) failed; last lines of its log:"
      tail -5 "$LOGS/loadtest-$((k + 1)).log" >&2
      failed=1
    fi
  done
  LOADPIDS=()
  local redis_after metrics_after
  redis_after=$(sample_redis after)
  metrics_after=$(sample_metrics after "${scraped[@]}")
  local publisher_cpu
  publisher_cpu=$(awk -v a="$ticks_before" -v b="$(publisher_ticks)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f", (b - a) / hz }')
  for k in $(seq 0 $((LOADERS - 1))); do
    grep -E '^herald fleet:' "$LOGS/loadtest-$((k + 1)).log" | sed "s/^/  process $((k + 1)): /" >&2 || true
  done
  (( failed == 0 )) || exit 1
  local kill_args=()
  [[ -z $redis_kill ]] || kill_args=(--redis-at-kill "$redis_kill")
  "$LOADTEST" merge --scenario "$SCENARIO" --out "$RESULTS/herald-$SCENARIO-$RUN.json" \
    --redis-before "$redis_before" "${kill_args[@]}" --redis-after "$redis_after" \
    --metrics-before "$metrics_before" --metrics-after "$metrics_after" \
    --publisher-cpu-s "$publisher_cpu" "${parts[@]}"
}

main "$@"
