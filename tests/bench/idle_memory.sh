#!/usr/bin/env bash
# Resident memory with many idle keep-alive client connections: tollgate-dp
# (--workers 1) and nginx (1 worker, upstream keep-alive) side by side in
# front of an nginx upstream. Each of CONNECTIONS clients (default 10000)
# sends one GET through the proxy, reads the answer and keeps its connection
# open; the proxies' VmRSS is read before and while the connections are open.
# Usage: tests/bench/idle_memory.sh (TOLLGATE_DP: the binary to measure,
# default target/release/tollgate-dp, built if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNECTIONS=${CONNECTIONS:-10000}
TOLLGATE=${TOLLGATE_DP:-target/release/tollgate-dp}
[ -x "$TOLLGATE" ] || cargo build --release -q --workspace --bins
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# Each process holds at most CONNECTIONS sockets plus a few: the clients of
# each proxy are held by a process of their own.
want=$((CONNECTIONS + 1024))
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$want" ] || {
  echo "idle_memory: the open-files hard limit $(ulimit -Hn) is below $want" >&2; exit 2; }
ulimit -n "$want"
source tests/bench/proxy_common.sh idle
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

upstream=$(free_port); nginx_port=$(free_port); tollgate_port=$(free_port); status_port=$(free_port)
common() { cat <<CONF
worker_processes 1; master_process off; daemon off; worker_rlimit_nofile $want;
pid $work/$1.pid; error_log $work/$1.err warn;
events { worker_connections $((CONNECTIONS + 512)); }
http { access_log off; keepalive_timeout 300s; keepalive_requests 1000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
CONF
}
{ common upstream; echo "server { listen 127.0.0.1:$upstream; location / { return 200 \"ok\\n\"; } } }"; } > "$work/upstream.conf"
{ common proxy; cat <<CONF
  upstream backend { server 127.0.0.1:$upstream; keepalive 64; }
  proxy_http_version 1.1; proxy_set_header Connection "";
  server { listen 127.0.0.1:$nginx_port; location / { proxy_pass http://backend; } }
}
CONF
} > "$work/proxy.conf"
cat > "$work/tollgate.yaml" <<CONF
_format_version: "3.0"
services:
- name: idle
  url: http://127.0.0.1:$upstream
  routes:
  - name: all
    paths: ["/"]
CONF
"$NGINX" -c "$work/upstream.conf" -p "$work" & pids+=($!)
"$NGINX" -c "$work/proxy.conf" -p "$work" & nginx_pid=$!; pids+=($nginx_pid)
RUST_LOG=warn "$TOLLGATE" serve --workers 1 --config-file "$work/tollgate.yaml" \
  --proxy-listen "127.0.0.1:$tollgate_port" --status-listen "127.0.0.1:$status_port" \
  --client-header-timeout 300 --cache-dir "$work/cache" 2> "$work/tollgate.log" & tollgate_pid=$!; pids+=($tollgate_pid)
wait_http "http://127.0.0.1:$upstream/"
wait_http "http://127.0.0.1:$nginx_port/x"
wait_http "http://127.0.0.1:$status_port/status/ready"
wait_http "http://127.0.0.1:$tollgate_port/x"

# Holds CONNECTIONS keep-alive connections on each port after one request each,
# prints "ready" once all are open, and keeps them while $work/hold exists.
hold() { python3 - "$CONNECTIONS" "$work/hold" "$@" <<'PY'
import asyncio, os, sys
count, flag, ports = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
async def one(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: idle\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return writer
async def main():
    held = []
    for port in ports:
        for start in range(0, count, 500):
            held += await asyncio.gather(*(one(port) for _ in range(start, min(count, start + 500))))
    print("ready", flush=True)
    while os.path.exists(flag):
        await asyncio.sleep(0.2)
asyncio.run(main())
PY
}
before_nginx=$(rss_kb "$nginx_pid"); before_tollgate=$(rss_kb "$tollgate_pid")
touch "$work/hold"
exec 3< <(hold "$nginx_port")
exec 4< <(hold "$tollgate_port")
read -r line <&3
[ "$line" = ready ] || { echo "connections to nginx not established" >&2; exit 1; }
read -r line <&4
[ "$line" = ready ] || { echo "connections to tollgate not established" >&2; exit 1; }
after_nginx=$(rss_kb "$nginx_pid"); after_tollgate=$(rss_kb "$tollgate_pid")
rm -f "$work/hold"
printf '%-10s %12s %14s %16s\n' proxy "idle RSS KiB" "with $CONNECTIONS" "per connection B"
for p in nginx tollgate; do
  b=before_$p a=after_$p
  printf '%-10s %12d %14d %16d\n' "$p" "${!b}" "${!a}" $(( (${!a} - ${!b}) * 1024 / CONNECTIONS ))
done
python3 -c "print(f'tollgate/nginx resident memory with the connections open: {$after_tollgate / $after_nginx:.2f}')"
