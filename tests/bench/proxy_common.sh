# Shared by the benchmarks that put tollgate-dp next to nginx (proxy.sh,
# h2.sh, idle_memory.sh, instructions.sh); sourced, not run, after the caller
# has changed to the repository root. Argument: a name for the work
# directory. Provides $work (a temporary directory, removed on exit), pids
# (processes killed on exit; a daemon a case starts, such as its own Redis,
# writes its pid to $work/<name>.bgpid and is killed too), free_port,
# wait_http URL [curl arguments], and nginx_common (the head of an nginx
# config whose files live in $work, for cases that start one).

work=$(mktemp -d "/tmp/tollgate-$1.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for file in "$work"/*.bgpid; do
    [ -f "$file" ] && kill "$(cat "$file")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url [curl arguments, e.g. a case's -H headers]
  local url=$1
  shift
  for _ in $(seq 1 200); do
    if curl -fs -o /dev/null "$@" "$url"; then return 0; fi
    sleep 0.05
  done
  echo "not answering: $url" >&2
  return 1
}

nginx_common() { # prefix [worker processes]
  cat <<CONF
worker_processes ${2:-1};
master_process off;
daemon off;
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  client_body_temp_path $work/tmp-body;
  proxy_temp_path $work/tmp-proxy;
  fastcgi_temp_path $work/tmp-fcgi;
  uwsgi_temp_path $work/tmp-uwsgi;
  scgi_temp_path $work/tmp-scgi;
CONF
}
