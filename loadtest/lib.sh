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
