#!/usr/bin/env bash
# `make run`: a control plane (SQLite), a data plane (proxy :8000, status :8100)
# and an echo upstream on 127.0.0.1:3000, with cluster certificates generated on
# first run under .tollgate/. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/debug
state=.tollgate
mkdir -p "$state/dp-cache"

if [ ! -f "$state/pki/ca.crt" ]; then
  "$bin/tollgate-cp" cert init --out "$state/pki"
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$bin/tollgate-echo" 127.0.0.1:3000 &
pids+=($!)

"$bin/tollgate-cp" serve \
  --database-url "sqlite://$state/tollgate.db" \
  --admin-listen 127.0.0.1:8001 \
  --cluster-listen 127.0.0.1:8005 \
  --cluster-ca "$state/pki/ca.crt" --cluster-cert "$state/pki/cp.crt" --cluster-key "$state/pki/cp.key" &
pids+=($!)

"$bin/tollgate-dp" serve \
  --control-plane https://127.0.0.1:8005 \
  --cluster-ca "$state/pki/ca.crt" --cluster-cert "$state/pki/dp.crt" --cluster-key "$state/pki/dp.key" \
  --proxy-listen 127.0.0.1:8000 \
  --status-listen 127.0.0.1:8100 \
  --cache-dir "$state/dp-cache" &
pids+=($!)

cat <<MSG
Tollgate is running:
  Admin API  http://127.0.0.1:8001   (try: curl -s http://127.0.0.1:8001/ )
  proxy      http://127.0.0.1:8000
  status     http://127.0.0.1:8100/status
  echo       http://127.0.0.1:3000
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
