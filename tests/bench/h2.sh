#!/usr/bin/env bash
# HTTP/2 (h2c by prior knowledge) through tollgate-dp (--workers 1) and nginx
# (1 worker, `listen ... http2`, HTTP/1.1 keep-alive upstream), both in front
# of an nginx upstream; h2load (nghttp2-client) drives each in interleaved
# rounds. Proxies and upstream on CPU 0, h2load on CPU 1. Reports req/s and
# CPU per request (utime+stime / requests), medians over the rounds. No
# target yet (issue 15): measured and reported.
# Environment: REQUESTS (per round, default 50000), CLIENTS (default 16),
# STREAMS (concurrent streams per client, default 10), ROUNDS (default 3),
# TOLLGATE_DP (binary; default target/release/tollgate-dp, built if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-50000}; CLIENTS=${CLIENTS:-16}; STREAMS=${STREAMS:-10}; ROUNDS=${ROUNDS:-3}
TOLLGATE=${TOLLGATE_DP:-target/release/tollgate-dp}
[ -x "$TOLLGATE" ] || cargo build --release -q --workspace --bins
command -v h2load >/dev/null || { echo "h2.sh: h2load is missing (apt-get install nghttp2-client)" >&2; exit 2; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
source tests/bench/proxy_common.sh h2
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
upstream=$(free_port); nginx_port=$(free_port); tollgate_port=$(free_port); status_port=$(free_port)
common() { cat <<CONF
worker_processes 1; master_process off; daemon off;
pid $work/$1.pid; error_log $work/$1.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; http2_max_requests 10000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
CONF
}
{ common upstream; echo "server { listen 127.0.0.1:$upstream; location / { return 200 \"ok\\n\"; } } }"; } > "$work/upstream.conf"
{ common proxy; cat <<CONF
  upstream backend { server 127.0.0.1:$upstream; keepalive 64; keepalive_requests 10000000; }
  proxy_http_version 1.1; proxy_set_header Connection "";
  server { listen 127.0.0.1:$nginx_port http2; location / { proxy_pass http://backend; } }
}
CONF
} > "$work/proxy.conf"
cat > "$work/tollgate.yaml" <<CONF
_format_version: "3.0"
services:
- name: h2
  url: http://127.0.0.1:$upstream
  routes:
  - name: all
    paths: ["/"]
CONF
taskset -c 0 "$NGINX" -c "$work/upstream.conf" -p "$work" & pids+=($!)
taskset -c 0 "$NGINX" -c "$work/proxy.conf" -p "$work" & nginx_pid=$!; pids+=($nginx_pid)
RUST_LOG=warn taskset -c 0 "$TOLLGATE" serve --workers 1 --config-file "$work/tollgate.yaml" \
  --proxy-listen "127.0.0.1:$tollgate_port" --status-listen "127.0.0.1:$status_port" \
  --cache-dir "$work/cache" 2> "$work/tollgate.log" & tollgate_pid=$!; pids+=($tollgate_pid)
wait_http "http://127.0.0.1:$upstream/"
wait_http "http://127.0.0.1:$status_port/status/ready"
wait_http "http://127.0.0.1:$tollgate_port/x"
for _ in $(seq 1 200); do h2load -n 1 "http://127.0.0.1:$nginx_port/x" 2>/dev/null | grep -q "1 succeeded" && break; sleep 0.05; done
: > "$work/results"
for round in $(seq 1 "$ROUNDS"); do
  for target in nginx tollgate; do
    port_var=${target}_port pid_var=${target}_pid
    before=$(cpu_ticks "${!pid_var}")
    out=$(taskset -c 1 h2load -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" "http://127.0.0.1:${!port_var}/x")
    after=$(cpu_ticks "${!pid_var}")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    echo "$target $round $rps $ok $((after - before))" >> "$work/results"
    echo "h2: $target round $round: $rps req/s, $ok succeeded" >&2
  done
done
python3 - "$work/results" "$CLK_TCK" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tck = int(sys.argv[2])
med = {}
for target in ("nginx", "tollgate"):
    mine = [r for r in rows if r[0] == target]
    rps = statistics.median(float(r[2]) for r in mine)
    cpu = statistics.median(int(r[4]) / tck * 1e6 / max(1, int(r[3])) for r in mine)
    med[target] = (rps, cpu)
    print(f"{target:9s} {rps:10.0f} req/s  {cpu:6.1f} CPU us/req")
print(f"tollgate/nginx: throughput {med['tollgate'][0] / med['nginx'][0]:.2f}, CPU per request {med['tollgate'][1] / med['nginx'][1]:.2f}")
PY
