# Shared by the benchmarks that put tollgate-dp next to nginx (proxy.sh,
# h2.sh, idle_memory.sh, instructions.sh); sourced, not run, after the caller
# has changed to the repository root. Argument: a name for the work
# directory. Provides $work (a temporary directory, removed on exit), pids
# (processes killed on exit; a daemon a case starts, such as its own Redis,
# writes its pid to $work/<name>.bgpid and is killed too), free_port, and
# wait_http URL [curl arguments].

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
