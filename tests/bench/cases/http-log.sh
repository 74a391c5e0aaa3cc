# http-log on every request (global, the seed guide's settings: Kong's
# defaults, one POST per entry) to a local collector: an nginx answering 200,
# pinned to CPU 1 with wrk so it takes no CPU from the proxy under test. The
# nginx reference logs nothing (stock nginx has no HTTP log shipping), so the
# ratio is the cost of the plugin. The collector stops with the benchmark.
case_setup() {
  local port
  port=$(free_port)
  echo "$port" > collector.port
  {
    nginx_common collector
    cat <<CONF
  server {
    listen 127.0.0.1:$port;
    location / { return 200; }
  }
}
CONF
  } > collector.conf
  taskset -c 1 "$NGINX" -c "$work/collector.conf" -p "$work" &
  local collector=$! bench=$$
  # The benchmark's cleanup only knows its own processes: stop with it.
  ( while kill -0 "$bench" 2>/dev/null; do sleep 1; done; kill "$collector" 2>/dev/null ) &
  wait_http "http://127.0.0.1:$port/"
}
tollgate_extra() {
  cat <<YAML
plugins:
- name: http-log
  config:
    http_endpoint: http://127.0.0.1:$(cat collector.port)/kong-logs
    method: POST
    timeout: 10000
    keepalive: 60000
YAML
}
