#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis
# (127.0.0.1:6379) answer: starts them when installed but stopped, installs them
# with apt-get when missing; installs Prometheus (package prometheus: the server the
# metrics tests scrape with, and promtool) when either binary is missing.
# Prints the URLs to export on its last two lines.
set -euo pipefail

log() { echo "ensure-services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do if "$@"; then return 0; fi; sleep 0.5; done; return 1; }

if ! command -v pg_isready >/dev/null 2>&1 || ! pg_ready; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  if [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    log "creating a PostgreSQL cluster"
    as_root pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n1)" main >&2
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    log "allowing trust auth on loopback for tests"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || true
  wait_for pg_ready || { log "PostgreSQL did not come up"; exit 1; }
fi

redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! command -v redis-cli >/dev/null 2>&1 || ! redis_ready; then
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing Redis"
    apt_install redis-server
  fi
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
  wait_for redis_ready || { log "Redis did not come up"; exit 1; }
fi

# The Debian package prometheus brings both binaries the tests use: promtool checks both
# planes' /metrics expositions and deploy/'s rules, and the prometheus server scrapes a test
# cluster (tests/tests/e2e/prometheus_server.rs). Only the binaries are wanted: the packaged
# service is not started here.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
    log "prometheus is installed in /usr/bin but not on PATH; the tests look there"
  else
    log "installing prometheus (server and promtool)"
    apt_install --no-install-recommends prometheus
  fi
fi

echo "postgres://postgres@127.0.0.1:5432/postgres"
echo "redis://127.0.0.1:6379"
