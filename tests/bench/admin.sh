#!/usr/bin/env bash
# Admin API benchmark: one release-built tollgate-cp on a fresh PostgreSQL
# database; measures Admin API writes/s and reads/s, then POST /config import
# and GET /config export of a 10k-services + 10k-consumers declarative file.
# Prints markdown tables on stdout (progress on stderr). Cleans up on exit.
#
# Environment (all optional):
#   BENCH_DURATION=10        seconds per Admin API phase
#   BENCH_CONCURRENCY=16     concurrent Admin API clients
#   BENCH_ROUTES=10000       services/routes in the declarative file
#   BENCH_CONSUMERS=10000    consumers (one jwt credential each)
#   BENCH_ROUNDS=4           POST /config + GET /config rounds (alternating two variants)
#   BENCH_SKIP_BUILD=1       use the existing target/release binaries
#   BENCH_BIN_DIR=DIR        take the binaries from DIR (with BENCH_SKIP_BUILD=1)
#   BENCH_KEEP=1             keep the work directory (logs, generated files)
#   DATABASE_URL             PostgreSQL server (a fresh database is created on it)
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${BENCH_DURATION:-10}
concurrency=${BENCH_CONCURRENCY:-16}
routes=${BENCH_ROUTES:-10000}
consumers=${BENCH_CONSUMERS:-10000}
rounds=${BENCH_ROUNDS:-4}
bin=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}

log() { echo "admin.sh: $*" >&2; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  cpu0=(taskset -c 0)
  cpu1=(taskset -c 1)
  pinning="tollgate-cp pinned to CPU 0, tollgate-bench to CPU 1 (taskset); PostgreSQL unpinned"
else
  cpu0=()
  cpu1=()
  pinning="no CPU pinning (taskset missing or fewer than 2 CPUs)"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries"
  cargo build --release --bins >&2
fi
for b in tollgate-cp tollgate-bench; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b"; exit 1; }
done

services=$(tests/scripts/ensure-services.sh)
server_url=${DATABASE_URL:-$(sed -n 1p <<<"$services")}
server_url=${server_url%%\?*}
db=tollgate_bench_$(date +%Y%m%d%H%M%S)_$$
db_url="${server_url%/*}/$db"

work=$(mktemp -d -t tollgate-bench-admin.XXXXXX)
pids=()
db_created=0
status=1
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$db_created" = 1 ]; then
    psql "$server_url" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
      log "could not drop database $db"
  fi
  if [ "$status" != 0 ] && [ -f "$work/cp.log" ]; then
    log "tollgate-cp log (last 30 lines):"
    tail -n 30 "$work/cp.log" >&2 || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$server_url" -qAtc "CREATE DATABASE $db" >/dev/null
db_created=1
log "database $db"

bench() { "${cpu1[@]}" "$bin/tollgate-bench" "$@"; }

# Same-run baseline: what PostgreSQL itself does at the same concurrency, from a
# pgbench client on the bench client's CPU, before the control plane starts.
baseline_args=()
if command -v pgbench >/dev/null 2>&1; then
  log "PostgreSQL baseline (pgbench, $concurrency clients, ${duration}s per phase)"
  psql "$db_url" -qAtc "CREATE TABLE bench_baseline (seq bigserial PRIMARY KEY,
    id uuid NOT NULL DEFAULT gen_random_uuid(), username text NOT NULL UNIQUE, created_at bigint NOT NULL)"
  cat >"$work/insert.sql" <<'SQL'
INSERT INTO bench_baseline (username, created_at) VALUES ('u-' || :client_id || '-' || random()::text, extract(epoch FROM now())::bigint);
SQL
  pg_tps() {
    "${cpu1[@]}" pgbench -n -M prepared -c "$concurrency" -j 1 -T "${duration%.*}" -f "$1" "$db_url" 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
  }
  pg_writes=$(pg_tps "$work/insert.sql")
  rows=$(psql "$db_url" -qAtc "SELECT coalesce(max(seq), 1) FROM bench_baseline")
  printf '\\set k random(1, %s)\nSELECT * FROM bench_baseline WHERE seq = :k;\n' "$rows" >"$work/select.sql"
  pg_reads=$(pg_tps "$work/select.sql")
  psql "$db_url" -qAtc "DROP TABLE bench_baseline"
  if [ -n "$pg_writes" ] && [ -n "$pg_reads" ]; then
    baseline_args=(--baseline-writes "$pg_writes" --baseline-reads "$pg_reads")
  else
    log "pgbench gave no tps; no baseline"
  fi
else
  log "pgbench not installed; no PostgreSQL baseline"
fi

"$bin/tollgate-cp" cert init --out "$work/pki" >/dev/null
admin_port=$(free_port)
cluster_port=$(free_port)
admin="http://127.0.0.1:$admin_port"
TOLLGATE_LOG_LEVEL=${TOLLGATE_LOG_LEVEL:-warn} "${cpu0[@]}" "$bin/tollgate-cp" serve \
  --database-url "$db_url" \
  --admin-listen "127.0.0.1:$admin_port" \
  --cluster-listen "127.0.0.1:$cluster_port" \
  --cluster-ca "$work/pki/ca.crt" --cluster-cert "$work/pki/cp.crt" --cluster-key "$work/pki/cp.key" \
  >"$work/cp.log" 2>&1 &
pids+=($!)
# wait_http SECONDS URL...: until every URL answers 200; fails early if a
# process this script started has exited.
wait_http() {
  local deadline=$((SECONDS + $1)) args=() pid
  shift
  for url in "$@"; do args+=(--url "$url"); done
  until bench wait-http "${args[@]}" --timeout 1 2>/dev/null; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { log "process $pid exited early"; return 1; }
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      bench wait-http "${args[@]}" --timeout 0 || true
      return 1
    fi
  done
}
wait_http 60 "$admin/status"
log "tollgate-cp ready on $admin"

echo "## Admin API benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs; $pinning; PostgreSQL database $db."
echo
bench admin --admin "$admin" --duration "$duration" --concurrency "$concurrency" "${baseline_args[@]}"

log "generating $routes services/routes + $consumers consumers"
bench config-gen --routes "$routes" --consumers "$consumers" --out "$work/config.yaml"
bench config-gen --routes "$routes" --consumers "$consumers" --variant 1 --out "$work/config-v1.yaml"
bench snapshot-size --file "$work/config.yaml"
log "importing and exporting ($rounds rounds)"
bench config-io --admin "$admin" --file "$work/config.yaml" --file "$work/config-v1.yaml" --rounds "$rounds"
echo "Round 1 replaces the Admin API phase's entities with config.yaml; later rounds alternate"
echo "config.yaml and config-v1.yaml (every service re-tagged), so every import is a real change."
echo
status=0
