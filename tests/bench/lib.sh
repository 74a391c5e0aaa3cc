# Shared set-up of the benchmarks that run tollgate-cp against PostgreSQL
# (admin.sh, cluster.sh); sourced, not run. The caller sets `name` (for log
# lines and the work directory), `needs` (binaries in $bin it uses) and
# `pinning_detail` (who runs on which CPU) before sourcing. It provides:
#   log, free_port, bench (tollgate-bench on the client CPU), wait_http,
#   cpu0/cpu1 (taskset prefixes, empty without taskset), pinning,
#   $bin, $server_url, $db, $db_url (created), $work (removed on exit unless
#   BENCH_KEEP=1), pids (terminated on exit), status (set to 0 on success),
#   start_cp (tollgate-cp serve with cluster TLS; sets $admin and $cp_pid).
# Environment: BENCH_SKIP_BUILD=1, BENCH_BIN_DIR=DIR, BENCH_KEEP=1, DATABASE_URL.

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}

log() { echo "$name.sh: $*" >&2; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  cpu0=(taskset -c 0)
  cpu1=(taskset -c 1)
  pinning="$pinning_detail (taskset); PostgreSQL unpinned"
else
  cpu0=()
  cpu1=()
  pinning="no CPU pinning (taskset missing or fewer than 2 CPUs)"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries"
  cargo build --release --bins >&2
fi
for b in $needs; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b"; exit 1; }
done

services=$(tests/scripts/ensure-services.sh)
server_url=${DATABASE_URL:-$(sed -n 1p <<<"$services")}
server_url=${server_url%%\?*}
db=tollgate_bench_$(date +%Y%m%d%H%M%S)_$$
db_url="${server_url%/*}/$db"

work=$(mktemp -d -t "tollgate-bench-$name.XXXXXX")
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
  if [ "$status" != 0 ]; then
    for f in "$work"/*.log; do
      [ -f "$f" ] || continue
      log "$(basename "$f") (last 20 lines):"
      tail -n 20 "$f" >&2 || true
    done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$server_url" -qAtc "CREATE DATABASE $db" >/dev/null
db_created=1
log "database $db"

bench() { "${cpu1[@]}" "$bin/tollgate-bench" "$@"; }

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

# start_cp: tollgate-cp on CPU 0 with cluster certificates under $work/pki
# (created here); waits until its Admin API answers.
start_cp() {
  local admin_port cluster_port
  [ -f "$work/pki/ca.crt" ] || "$bin/tollgate-cp" cert init --out "$work/pki" >/dev/null
  admin_port=$(free_port)
  cluster_port=$(free_port)
  admin="http://127.0.0.1:$admin_port"
  cluster_endpoint="https://127.0.0.1:$cluster_port"
  TOLLGATE_LOG_LEVEL=${TOLLGATE_LOG_LEVEL:-warn} "${cpu0[@]}" "$bin/tollgate-cp" serve \
    --database-url "$db_url" \
    --admin-listen "127.0.0.1:$admin_port" \
    --cluster-listen "127.0.0.1:$cluster_port" \
    --cluster-ca "$work/pki/ca.crt" --cluster-cert "$work/pki/cp.crt" --cluster-key "$work/pki/cp.key" \
    >"$work/cp.log" 2>&1 &
  cp_pid=$!
  pids+=("$cp_pid")
  wait_http 60 "$admin/status"
  log "tollgate-cp ready on $admin"
}
