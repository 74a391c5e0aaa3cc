#!/usr/bin/env bash
# CI smoke test of `make run` (tests/scripts/run-local.sh) with the debug
# binaries already built: it starts on free ports with a throw-away state
# directory, the seed guide's first commands work through it, a busy port is
# named, and SIGINT stops everything with exit status 0. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")/../.."
script=tests/scripts/run-local.sh
fail() { echo "run-smoke: FAIL: $*" >&2; [ -n "${out:-}" ] && sed 's/^/  | /' "$out" >&2; exit 1; }

# Ports come from below the kernel's ephemeral range (ip_local_port_range),
# so no outgoing connection of this or any other process can be holding one
# as its source port when the processes bind, and the five are distinct.
ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
chosen=" "
for name in ADMIN_PORT PROXY_PORT STATUS_PORT CLUSTER_PORT ECHO_PORT; do
  while :; do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    case "$chosen" in *" $port "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    chosen="$chosen$port "
    export "$name=$port"
    break
  done
done
export STATE_DIR=$(mktemp -d)
out=$STATE_DIR/run.out
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -rf "$STATE_DIR"; }
trap cleanup EXIT

# Job control: the script gets its own process group and, unlike a plain
# background job, does not start with SIGINT ignored, as under a terminal.
set -m
"$script" >"$out" 2>&1 &
pid=$!
set +m
for _ in $(seq 1 450); do
  grep -q "Tollgate is running" "$out" && break
  kill -0 "$pid" 2>/dev/null || fail "run-local.sh exited before its banner"
  sleep 0.2
done
grep -q "Tollgate is running" "$out" || fail "no banner within 90 s"
grep -q "curl -i localhost:$ADMIN_PORT/" "$out" || fail "the banner does not show the first command"
grep -qi "warn" "$STATE_DIR/logs/dp.log" && fail "the data plane warned on its first start: $(cat "$STATE_DIR/logs/dp.log")"

# While it runs, a second copy finds the ports taken and names them.
second=$("$script" 2>&1) && fail "a second copy started on busy ports"
grep -q "port $ADMIN_PORT (the control plane Admin API) is already in use" <<<"$second" \
  || fail "busy port not named: $second"

admin=http://127.0.0.1:$ADMIN_PORT
curl -fsS -i "$admin/" | head -1 | grep -q " 200" || fail "GET / on the Admin API"
curl -fsS -o /dev/null -X POST "$admin/services" -d name=my-api -d "url=http://127.0.0.1:$ECHO_PORT" \
  || fail "POST /services"
curl -fsS -o /dev/null -X POST "$admin/services/my-api/routes" -d 'paths[]=/api' -d strip_path=false \
  || fail "POST /services/my-api/routes"
for _ in $(seq 1 150); do
  body=$(curl -fsS "http://127.0.0.1:$PROXY_PORT/api/hello" 2>/dev/null) && break
  sleep 0.2
done
grep -q '/api/hello' <<<"${body:-}" || fail "the proxy did not reach the echo upstream: ${body:-nothing}"

# What Ctrl-C does: SIGINT to the whole foreground process group.
kill -INT -- "-$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && fail "still running 20 s after SIGINT"
set +e; wait "$pid"; code=$?; set -e
pid=
[ "$code" = 0 ] || fail "exit status $code after SIGINT"
for port in $ADMIN_PORT $PROXY_PORT $STATUS_PORT $CLUSTER_PORT $ECHO_PORT; do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fail "port $port still answers after SIGINT"
done
echo "run-smoke: ok (make run starts, serves the seed's first commands, stops on SIGINT)"
