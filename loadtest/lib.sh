# Shell helpers shared by the load test scripts (sourced; each script defines `log`).

# Credentials the scripts start servers with, and the binaries they run.
API_KEY=loadtest-api-key
HMAC_SECRET=loadtest-hmac-secret-0123456789abcdef
BIN=${CARGO_TARGET_DIR:-target}/release
LOADTEST=${LOADTEST:-$BIN/herald-loadtest}

# A TCP port below the ephemeral range (so no outgoing connection holds it) that no socket uses.
free_port() {
  local lo port
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  (( lo > 12000 )) || lo=32768
  while :; do
    port=$((10000 + RANDOM % (lo - 10000)))
    ss -Htan "( sport = :$port or dport = :$port )" | grep -q . || { echo "$port"; return; }
  done
}

# Waits until `curl URL` answers 200; fails if the process dies or 30 s pass.
wait_ready() {
  local url=$1 pid=$2 logf=$3
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited; last lines of $logf:"; tail -5 "$logf" >&2; return 1
    fi
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  log "not ready after 30s: $url"; return 1
}

# Starts a redis-server on a free port (logs in $LOGS, pid added to STARTED) and sets REDIS_PORT,
# unless REDIS_PORT already names one to use.
start_redis() {
  if [[ -n ${REDIS_PORT:-} ]]; then
    log "using the redis-server on port $REDIS_PORT"
    return
  fi
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$LOGS/redis.log" &
  STARTED+=($!)
  for _ in $(seq 100); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]] && return 0
    sleep 0.1
  done
  log "redis-server did not start"; exit 1
}

# Starts a Redis Cluster of $1 masters (no replicas, slots split evenly) on free ports whose
# cluster bus ports (+10000) are free too; logs and data in $LOGS, pids added to STARTED. Sets
# REDIS_PORTS to the masters' ports and returns once every node says cluster_state:ok.
start_cluster() {
  local masters=$1 k port dir
  REDIS_PORTS=()
  for k in $(seq 0 $((masters - 1))); do
    while :; do
      port=$(free_port)
      (( port + 10000 < 65536 )) && ! ss -Htan "( sport = :$((port + 10000)) )" | grep -q . && break
    done
    dir="$LOGS/cluster-$k"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --logfile "$dir/redis.log" &
    STARTED+=($!)
    REDIS_PORTS+=("$port")
    for _ in $(seq 100); do
      [[ $(redis-cli -p "$port" ping 2>/dev/null || true) == PONG ]] && break
      sleep 0.1
    done
  done
  for k in $(seq 0 $((masters - 1))); do
    port=${REDIS_PORTS[k]}
    redis-cli -p "$port" cluster addslotsrange $((k * 16384 / masters)) \
      $(((k + 1) * 16384 / masters - 1)) >/dev/null
    redis-cli -p "$port" cluster set-config-epoch $((k + 1)) >/dev/null
    (( k == 0 )) || redis-cli -p "${REDIS_PORTS[0]}" cluster meet 127.0.0.1 "$port" >/dev/null
  done
  for _ in $(seq 200); do
    local ok=1
    for port in "${REDIS_PORTS[@]}"; do
      redis-cli -p "$port" cluster info | grep -q "cluster_known_nodes:$masters" || ok=0
      redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || ok=0
    done
    (( ok )) && return 0
    sleep 0.1
  done
  log "the Redis Cluster did not reach cluster_state:ok"; exit 1
}

# Saves `INFO all` of the Redis on port $1 into file $2, after a `sampled_at_s:` line with the
# time (what `herald-loadtest merge --redis-*` reads).
save_redis_info() {
  { printf 'sampled_at_s:%s\n' "$(date +%s.%N)"; redis-cli -p "$1" info all; } >"$2"
}

# Waits for the `ready` line of every load process, given its read ends in process order (the
# k-th logs to $LOGS/loadtest-k.log); exits naming the first that ended before connecting.
await_loaders_ready() {
  local k=0 fd line
  for fd in "$@"; do
    k=$((k + 1))
    if ! read -r line <&"$fd" || [[ $line != ready ]]; then
      log "load process $k ended before connecting; last lines of its log:"
      tail -5 "$LOGS/loadtest-$k.log" >&2
      exit 1
    fi
  done
}
