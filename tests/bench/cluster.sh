#!/usr/bin/env bash
# Cluster benchmark: one release-built tollgate-cp (fresh PostgreSQL database)
# and tollgate-dp data planes with their own certificates, cache dirs and node
# ids. Measures
#   1. Admin write → every data plane acked, with 1 and then 10 data planes;
#   2. a 10k-services + 10k-consumers POST /config: 201 → all data planes
#      acked (compile and swap included), and the config's size raw/gzip;
#   3. proxy p99 at a fixed rate while that config is re-imported twice,
#      against the same load idle.
# Prints markdown tables on stdout (progress on stderr). Cleans up on exit.
#
# Environment (all optional):
#   BENCH_DP_COUNT=10        data planes in the second phase
#   BENCH_WRITES=200         writes per propagation run
#   BENCH_ROUTES=10000       services/routes in the large config
#   BENCH_CONSUMERS=10000    consumers (one jwt credential each)
#   BENCH_RATE=2000          proxy requests per second
#   BENCH_LOAD_SECONDS=5     seconds of proxy load (idle run; minimum of the push run)
#   BENCH_SKIP_BUILD=1       use the existing target/release binaries
#   BENCH_BIN_DIR=DIR        take the binaries from DIR (with BENCH_SKIP_BUILD=1)
#   BENCH_KEEP=1             keep the work directory (logs, certificates, caches)
#   DATABASE_URL             PostgreSQL server (a fresh database is created on it)
set -euo pipefail

dp_count=${BENCH_DP_COUNT:-10}
writes=${BENCH_WRITES:-200}
routes=${BENCH_ROUTES:-10000}
consumers=${BENCH_CONSUMERS:-10000}
rate=${BENCH_RATE:-2000}
load_seconds=${BENCH_LOAD_SECONDS:-5}
name=cluster
needs="tollgate-cp tollgate-dp tollgate-bench tollgate-echo"
pinning_detail="tollgate-cp and every tollgate-dp pinned to CPU 0; tollgate-bench and the echo upstream to CPU 1"
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
pki=$work/pki
new_uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

echo_port=$(free_port)
"${cpu1[@]}" "$bin/tollgate-echo" "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
upstream="http://127.0.0.1:$echo_port"
start_cp
wait_http 30 "$upstream/"

# A small config first, so a data plane has something to load and report ready.
bench config-gen --routes 100 --consumers 100 --upstream "$upstream" --out "$work/seed.yaml"
curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/yaml' \
  --data-binary "@$work/seed.yaml" "$admin/config" | grep -qx 201 ||
  { log "POST /config of the seed config did not answer 201"; exit 1; }

dp_proxy_ports=()
dp_status_ports=()
dp_pids=()
start_dp() {
  local i=$1 proxy_port status_port
  "$bin/tollgate-cp" cert issue --ca-dir "$pki" --name "dp$i" --out "$pki" >/dev/null
  proxy_port=$(free_port)
  status_port=$(free_port)
  mkdir -p "$work/dp$i-cache"
  RUST_LOG=${RUST_LOG:-warn} TOLLGATE_LOG_LEVEL=${TOLLGATE_LOG_LEVEL:-warn} "${cpu0[@]}" "$bin/tollgate-dp" serve \
    --control-plane "$cluster_endpoint" \
    --cluster-ca "$pki/ca.crt" --cluster-cert "$pki/dp$i.crt" --cluster-key "$pki/dp$i.key" \
    --cluster-server-name tollgate-cp \
    --proxy-listen "127.0.0.1:$proxy_port" \
    --status-listen "127.0.0.1:$status_port" \
    --cache-dir "$work/dp$i-cache" \
    --node-id "$(new_uuid)" \
    >"$work/dp$i.log" 2>&1 &
  pids+=($!)
  dp_pids+=($!)
  dp_proxy_ports+=("$proxy_port")
  dp_status_ports+=("$status_port")
}
wait_ready() {
  local urls=()
  for port in "${dp_status_ports[@]}"; do urls+=("http://127.0.0.1:$port/status/ready"); done
  wait_http 120 "${urls[@]}"
}

echo "## Cluster benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs; $pinning; PostgreSQL database $db."
echo

log "phase 1: one data plane"
start_dp 1
wait_ready
bench propagation --admin "$admin" --dp-count 1 --writes "$writes"

log "phase 2: $dp_count data planes"
for i in $(seq 2 "$dp_count"); do start_dp "$i"; done
wait_ready
bench propagation --admin "$admin" --dp-count "$dp_count" --writes "$writes"

log "phase 3: $routes services/routes + $consumers consumers"
bench config-gen --routes "$routes" --consumers "$consumers" --upstream "$upstream" --out "$work/large.yaml"
bench config-gen --routes "$routes" --consumers "$consumers" --upstream "$upstream" --variant 1 --out "$work/large-v1.yaml"
# seed → large → large-v1: both pushes change every service
bench push --admin "$admin" --dp-count "$dp_count" --file "$work/large.yaml" --file "$work/large-v1.yaml" --rounds 2
bench snapshot-size --file "$work/large.yaml" --admin "$admin"

log "phase 4: proxy p99 idle vs while re-importing the large config twice"
# In a deployment each data plane has its own machine: what a push costs the
# proxy is its own compile and swap. Stop the other data planes and move the
# control plane off the proxied data plane's CPU so that only that cost shows.
for i in $(seq 1 $((dp_count - 1))); do
  kill -TERM "${dp_pids[$i]}" 2>/dev/null || true
  wait "${dp_pids[$i]}" 2>/dev/null || true
done
if [ "${#cpu1[@]}" -gt 0 ]; then taskset -pc 1 "$cp_pid" >/dev/null; fi
# On CPU 1 the control plane's import would starve the load generator and the
# echo upstream, which the latency includes: it yields to them.
renice -n 19 -p "$cp_pid" >/dev/null
# Phase 3 rewrote 40k rows twice: vacuum now, so that autovacuum does not
# land in the idle run, and let the stopped nodes' disconnects settle.
psql "$db_url" -qAtc "VACUUM ANALYZE" >/dev/null
proxy="http://127.0.0.1:${dp_proxy_ports[0]}"
wait_http 30 "$proxy/r0"
bench push-load --proxy "$proxy" --path /r0 --admin "$admin" --dp-count 1 \
  --file "$work/large.yaml" --file "$work/large-v1.yaml" \
  --rate "$rate" --duration "$load_seconds" --warmup 5
echo "Phase 4 runs with only the proxied data plane (dp1) left, alone on CPU 0 with the load"
echo "generator and echo upstream on CPU 1 and the control plane moved to CPU 1 at nice 19: the push"
echo "costs the proxy only its own compile and swap, as on a dedicated data plane host."
echo
status=0
