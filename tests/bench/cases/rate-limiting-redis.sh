# rate-limiting, redis policy, a limit per client IP never reached; reports
# Redis round trips per proxied request from INFO commandstats (target:
# exactly 1): the calls of EVAL/EVALSHA, each one round trip (commandstats
# also counts the INCR and EXPIRE a script runs inside Redis, which are not
# round trips).
#
# Redis: the server at REDIS_HOST:REDIS_PORT when REDIS_PORT is set;
# otherwise a private redis-server started for the run (nothing saved),
# pinned with the proxies and their upstream (PROXY_CPUS). Like the upstream,
# it is a backend of the request path, and the load generator keeps its CPU
# to itself: an unpinned Redis takes CPU from wrk and is woken across CPUs
# on every batch of calls. PAIRED=1 says little here: with two proxies on
# CPU 0, this Redis waits its turn behind both, and any build of the plugin
# drops to a few thousand requests per second (p99 near 0.5 s).
redis_address() { cat "$work/redis-address"; }
redis_cli() { # redis-cli arguments
  local host port
  read -r host port < "$work/redis-address"
  redis-cli -h "$host" -p "$port" "$@"
}
redis_calls() {
  redis_cli INFO commandstats |
    awk -F'[:=,]' '/^cmdstat_(eval|evalsha|eval_ro|evalsha_ro):/ { calls += $3 } END { print calls + 0 }'
}
case_setup() {
  if [ -n "${REDIS_PORT:-}" ]; then
    echo "${REDIS_HOST:-127.0.0.1} $REDIS_PORT" > "$work/redis-address"
  else
    command -v redis-server >/dev/null ||
      { echo "bench: rate-limiting-redis needs redis-server (or REDIS_PORT)" >&2; exit 1; }
    local port
    port=$(free_port)
    # proxy_common.sh's cleanup stops every *.bgpid of the work directory.
    taskset -c "${PROXY_CPUS:-0}" redis-server --bind 127.0.0.1 --port "$port" \
      --save '' --appendonly no --daemonize yes \
      --pidfile "$work/redis.bgpid" --logfile "$work/redis.log"
    echo "127.0.0.1 $port" > "$work/redis-address"
    for _ in $(seq 1 100); do
      redis_cli ping >/dev/null 2>&1 && break
      sleep 0.05
    done
  fi
  redis_cli ping >/dev/null ||
    { echo "bench: rate-limiting-redis: no Redis at $(redis_address)" >&2; exit 1; }
  redis_calls > "$work/redis-calls-before"
}
tollgate_extra() {
  local host port
  read -r host port < "$work/redis-address"
  cat <<YAML
plugins:
- name: rate-limiting
  config:
    policy: redis
    limit_by: ip
    hour: 1000000000
    redis:
      host: $host
      port: $port
YAML
}
case_finish() {
  local before after
  before=$(cat "$work/redis-calls-before")
  after=$(redis_calls)
  python3 -c "import sys; calls, served = int(sys.argv[1]), int(sys.argv[2]); print(f'bench: rate-limiting-redis: {calls} Redis round trips (EVALSHA/EVAL) for {served} proxied requests = {calls / max(served, 1):.3f} per request')" \
    "$((after - before))" "$PROXIED_REQUESTS" >&2
}
