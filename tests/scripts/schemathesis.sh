#!/usr/bin/env bash
# Property-based check of the Admin API against its own /openapi.json:
# starts `tollgate-cp serve` (SQLite in a temporary directory, Admin API on a
# free loopback port), runs a bounded schemathesis pass and stops the server.
# Passes only with zero server errors and zero response-schema violations.
#
# Environment: TOLLGATE_CP (binary, default target/debug/tollgate-cp),
# SCHEMATHESIS_MAX_EXAMPLES (cases per operation, default 5),
# SCHEMATHESIS_PHASES (default examples,fuzzing), SCHEMATHESIS_SEED (default 1).
set -euo pipefail

log() { echo "schemathesis: $*" >&2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
cp_bin=${TOLLGATE_CP:-${CARGO_TARGET_DIR:-$root/target}/debug/tollgate-cp}
[ -x "$cp_bin" ] || { log "no $cp_bin: build it first (cargo build -p tollgate-control-plane --bins)"; exit 2; }

if ! python3 -c 'import schemathesis' 2>/dev/null; then
  log "installing schemathesis (PyPI)"
  python3 -m pip --version >/dev/null 2>&1 || python3 -m ensurepip --upgrade >&2
  python3 -m pip install --quiet 'schemathesis>=4.3,<5' >&2
fi

work=$(mktemp -d)
cp_pid=
cleanup() {
  if [ -n "$cp_pid" ]; then kill "$cp_pid" 2>/dev/null || true; wait "$cp_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

env -u TOLLGATE_CONFIG -u TOLLGATE_ADMIN_TOKEN_FILE "$cp_bin" serve \
  --database-url "sqlite://$work/cp.db" \
  --admin-listen 127.0.0.1:0 --cluster-listen 127.0.0.1:0 \
  --log-level warn,tollgate_control_plane=info,tollgate_control_plane::admin=warn \
  >"$work/cp.log" 2>&1 &
cp_pid=$!

admin=
for _ in $(seq 1 300); do
  admin=$(sed -n 's/.*serving the Admin API admin=\([^ ]*\).*/\1/p' "$work/cp.log" | head -n1)
  [ -n "$admin" ] && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$work/cp.log" >&2; log "tollgate-cp exited"; exit 1; }
  sleep 0.1
done
[ -n "$admin" ] || { cat "$work/cp.log" >&2; log "tollgate-cp did not start"; exit 1; }
log "Admin API on $admin"

cd "$work"
status=0
python3 -m schemathesis.cli run "http://$admin/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --phases "${SCHEMATHESIS_PHASES:-examples,fuzzing}" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-5}" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 2 --generation-database none --no-color || status=$?
if [ "$status" != 0 ]; then
  log "failed; the control plane's log follows"
  tail -n 50 "$work/cp.log" >&2
fi
exit "$status"
