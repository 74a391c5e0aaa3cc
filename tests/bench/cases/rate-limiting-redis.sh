# rate-limiting, redis policy (REDIS_HOST/REDIS_PORT, default the local
# server), a limit per client IP never reached; reports Redis round trips per
# proxied request from INFO commandstats (target: exactly 1): the calls of
# EVAL/EVALSHA, each one round trip (commandstats also counts the INCR and
# EXPIRE a script runs inside Redis, which are not round trips).
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
redis_calls() {
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" INFO commandstats |
    awk -F'[:=,]' '/^cmdstat_(eval|evalsha|eval_ro|evalsha_ro):/ { calls += $3 } END { print calls + 0 }'
}
case_setup() {
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null ||
    { echo "bench: rate-limiting-redis needs Redis at $REDIS_HOST:$REDIS_PORT" >&2; exit 1; }
  redis_calls > "$work/redis-calls-before"
}
tollgate_extra() {
  cat <<YAML
plugins:
- name: rate-limiting
  config:
    policy: redis
    limit_by: ip
    hour: 1000000000
    redis:
      host: $REDIS_HOST
      port: $REDIS_PORT
YAML
}
case_finish() {
  local before after
  before=$(cat "$work/redis-calls-before")
  after=$(redis_calls)
  python3 -c "import sys; calls, served = int(sys.argv[1]), int(sys.argv[2]); print(f'bench: rate-limiting-redis: {calls} Redis round trips (EVALSHA/EVAL) for {served} proxied requests = {calls / max(served, 1):.3f} per request')" \
    "$((after - before))" "$PROXIED_REQUESTS" >&2
}
