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

duration=${BENCH_DURATION:-10}
concurrency=${BENCH_CONCURRENCY:-16}
routes=${BENCH_ROUTES:-10000}
consumers=${BENCH_CONSUMERS:-10000}
rounds=${BENCH_ROUNDS:-4}
name=admin
needs="tollgate-cp tollgate-bench"
pinning_detail="tollgate-cp pinned to CPU 0, tollgate-bench to CPU 1"
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"

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

start_cp

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
