#!/usr/bin/env bash
# `make run`: an echo upstream, a control plane (SQLite) and a data plane
# connected to it over mTLS, started in that order, each only once the one
# before answers; the "running" banner is printed when all three answer.
# State (cluster certificates, database, data plane cache, logs) lives in
# $STATE_DIR (default .tollgate/); `make reset` deletes it. Ctrl-C (SIGINT)
# or SIGTERM stops everything this script started and exits 0.
#
# Ports (defaults follow Kong's): ADMIN_PORT=8001 PROXY_PORT=8000
# STATUS_PORT=8100 CLUSTER_PORT=8005 ECHO_PORT=3000. BIN_DIR=target/debug.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN_DIR:-target/debug}
state=${STATE_DIR:-.tollgate}
admin_port=${ADMIN_PORT:-8001}
proxy_port=${PROXY_PORT:-8000}
status_port=${STATUS_PORT:-8100}
cluster_port=${CLUSTER_PORT:-8005}
echo_port=${ECHO_PORT:-3000}
logs=$state/logs

say() { echo "run: $*" >&2; }

for tool in tollgate-cp tollgate-dp tollgate-echo; do
  if [ ! -x "$bin/$tool" ]; then
    say "$bin/$tool is missing: run 'make run' (it builds first) or 'cargo build --workspace --bins'"
    exit 1
  fi
done

# Something already answering on a port we need: name it and stop.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
busy=0
for entry in "$admin_port:control plane Admin API:ADMIN_PORT" \
             "$cluster_port:control plane cluster listener:CLUSTER_PORT" \
             "$proxy_port:data plane proxy:PROXY_PORT" \
             "$status_port:data plane status listener:STATUS_PORT" \
             "$echo_port:echo upstream:ECHO_PORT"; do
  IFS=: read -r port component variable <<<"$entry"
  if listening "$port"; then
    say "port $port (the $component) is already in use by another process: stop it, or run with $variable=<free port>"
    busy=1
  fi
done
[ "$busy" = 0 ] || exit 1

mkdir -p "$state/dp-cache" "$logs"
if [ ! -f "$state/pki/ca.crt" ]; then
  "$bin/tollgate-cp" cert init --out "$state/pki" >/dev/null
fi

pids=()
names=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# start NAME LOG COMMAND...: runs it in the background, its output in LOG.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# wait_until NAME LOG CHECK...: polls CHECK (bounded) while NAME still runs.
wait_until() {
  local name=$1 log=$2 pid=${pids[-1]}
  shift 2
  for _ in $(seq 1 300); do
    if "$@"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      say "the $name exited during start-up; the end of $log:"
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
  say "the $name did not answer within 60 s; the end of $log:"
  tail -n 20 "$log" >&2
  exit 1
}

answers() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
dp_connected() { curl -fsS --max-time 2 "http://127.0.0.1:$status_port/status" 2>/dev/null | grep -q '"state":"connected"'; }

start "echo upstream" "$logs/echo.log" "$bin/tollgate-echo" "127.0.0.1:$echo_port"
wait_until "echo upstream" "$logs/echo.log" answers "http://127.0.0.1:$echo_port/"

start "control plane" "$logs/cp.log" "$bin/tollgate-cp" serve \
  --database-url "sqlite://$state/tollgate.db" \
  --admin-listen "127.0.0.1:$admin_port" \
  --cluster-listen "127.0.0.1:$cluster_port" \
  --cluster-ca "$state/pki/ca.crt" --cluster-cert "$state/pki/cp.crt" --cluster-key "$state/pki/cp.key"
wait_until "control plane" "$logs/cp.log" answers "http://127.0.0.1:$admin_port/status"

# Only now: the cluster listener is up, so the first attempt connects.
start "data plane" "$logs/dp.log" "$bin/tollgate-dp" serve \
  --control-plane "https://127.0.0.1:$cluster_port" \
  --cluster-ca "$state/pki/ca.crt" --cluster-cert "$state/pki/dp.crt" --cluster-key "$state/pki/dp.key" \
  --proxy-listen "127.0.0.1:$proxy_port" \
  --status-listen "127.0.0.1:$status_port" \
  --cache-dir "$state/dp-cache"
wait_until "data plane" "$logs/dp.log" dp_connected

cat <<MSG
Tollgate is running (state in $state/, logs in $logs/; 'make reset' starts clean):
  Admin API  http://127.0.0.1:$admin_port    control plane (Kong's Admin API)
  proxy      http://127.0.0.1:$proxy_port    data plane
  status     http://127.0.0.1:$status_port    data plane /status, /status/ready, /metrics
  cluster    127.0.0.1:$cluster_port          control plane <-> data planes (mTLS)
  echo       http://127.0.0.1:$echo_port    upstream that echoes each request

Try, from another terminal (the seed guide's first steps):
  curl -i localhost:$admin_port/
  curl -s -X POST localhost:$admin_port/services -d name=my-api -d url=http://127.0.0.1:$echo_port
  curl -s -X POST localhost:$admin_port/services/my-api/routes -d 'paths[]=/api' -d strip_path=false
  curl -i localhost:$proxy_port/api
  tollgate-cp status --admin-url http://127.0.0.1:$admin_port     # ($bin/tollgate-cp)
Press Ctrl-C to stop.
MSG

set +e
wait -n "${pids[@]}"
code=$?
set -e
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    say "the ${names[$i]} exited (status $code); the end of its log:"
    case ${names[$i]} in
      "echo upstream") tail -n 20 "$logs/echo.log" >&2 ;;
      "control plane") tail -n 20 "$logs/cp.log" >&2 ;;
      "data plane") tail -n 20 "$logs/dp.log" >&2 ;;
    esac
  fi
done
exit 1
