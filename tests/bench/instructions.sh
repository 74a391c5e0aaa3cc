#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: unlike
# CPU time, the count does not depend on what else the machine is doing, so
# two builds can be compared on a busy machine. Each tollgate-dp binary runs
# under callgrind (--workers 1) with the case's config in front of an nginx
# upstream; after a warm-up the counters are zeroed, REQUESTS requests are
# sent over one keep-alive connection, and the dumped total is divided by
# REQUESTS.
#
# Usage: tests/bench/instructions.sh label=/path/to/tollgate-dp [label=...]
# Environment: CASES (default "plain ip-restriction"; "<case>/bare" sends the
# case's requests to its routes without its plugins), REQUESTS (default 2000),
# KEEP (a directory: the callgrind dumps are copied there as
# <case>.<label>.out, for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/../.."
CASES=${CASES:-"plain ip-restriction"}
REQUESTS=${REQUESTS:-2000}
[ $# -gt 0 ] || { echo "usage: $0 label=/path/to/tollgate-dp ..." >&2; exit 2; }
for tool in valgrind callgrind_control nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "instructions: $tool is missing" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
source tests/bench/proxy_common.sh instructions

upstream_port=$(free_port)
# The cases name the upstream as proxy.sh does (an exporter endpoint, say).
UPSTREAM_PORT=$upstream_port
cat > "$work/upstream.conf" <<CONF
worker_processes 1; master_process off; daemon off;
pid $work/upstream.pid; error_log $work/upstream.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/tmp-body; proxy_temp_path $work/tmp-proxy;
  fastcgi_temp_path $work/tmp-fcgi; uwsgi_temp_path $work/tmp-uwsgi; scgi_temp_path $work/tmp-scgi;
  server { listen 127.0.0.1:$upstream_port; location / { return 200 "ok\n"; } }
}
CONF
"$NGINX" -c "$work/upstream.conf" -p "$work" &
pids+=($!)

# Sends N GETs over one HTTP/1.1 keep-alive connection, with the case's
# headers (its WRK_ARGS "-H" pairs, one "Name: value" per line in
# $work/$case.headers); fails on a non-200.
send() { # port path count headers-file
  python3 - "$@" <<'PY'
import http.client, sys
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = dict(line.rstrip("\n").split(": ", 1) for line in open(sys.argv[4]) if ": " in line)
for attempt in range(600):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", path, headers=headers); r = conn.getresponse(); r.read()
        if r.status == 200: break
    except OSError:
        pass
    import time; time.sleep(0.1)
else:
    sys.exit(f"no 200 from port {port}")
for _ in range(count - 1):
    conn.request("GET", path, headers=headers); r = conn.getresponse(); r.read()
    if r.status != 200: sys.exit(f"status {r.status}")
PY
}

printf '%-18s%-12s%16s\n' case build "instr/request"
for spec in $CASES; do
  # "<case>/bare": the case's requests (its headers) to a config without
  # its plugins, the same-traffic baseline of the plugin's cost.
  name=${spec%/bare}
  case=${spec//\//-}
  file="tests/bench/cases/$name.sh"
  [ -f "$file" ] || { echo "no case file $file" >&2; exit 2; }
  : > "$work/$case.headers"
  {
    echo '_format_version: "3.0"'
    echo 'services:'
    echo '- name: bench'
    echo "  url: http://127.0.0.1:$upstream_port"
    echo '  routes:'
    echo '  - name: r5'
    echo '    paths: ["/r5/"]'
    # Sourced from the tree, run in the work directory, as proxy.sh runs
    # cases: what a case writes (keys, a collector's config) stays out of
    # the tree.
    ( tollgate_extra() { :; }; case_setup() { :; }; WRK_ARGS=()
      source "$file"; (cd "$work" && case_setup); source "$file"
      [ "$name" != "$spec" ] || (cd "$work" && tollgate_extra)
      for ((i = 0; i + 1 < ${#WRK_ARGS[@]}; i++)); do
        [ "${WRK_ARGS[$i]}" = -H ] && printf '%s\n' "${WRK_ARGS[$((i + 1))]}" >> "$work/$case.headers"
      done )
  } > "$work/$case.yaml"
  for spec in "$@"; do
    label=${spec%%=*}; binary=${spec#*=}
    port=$(free_port); status=$(free_port)
    out="$work/callgrind.$case.$label"
    RUST_LOG=warn valgrind -q --tool=callgrind --callgrind-out-file="$out.%p" \
      "$binary" serve --workers 1 --config-file "$work/$case.yaml" \
      --proxy-listen "127.0.0.1:$port" --status-listen "127.0.0.1:$status" \
      --cache-dir "$work/cache-$label" 2> "$work/$case.$label.log" &
    pid=$!
    pids+=("$pid")
    send "$port" /r5/x 300 "$work/$case.headers"
    callgrind_control -z "$pid" >/dev/null 2>&1
    send "$port" /r5/x "$REQUESTS" "$work/$case.headers"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    # The dump after zeroing is the numbered file with the largest number.
    dump=$(ls -v "$out.$pid".* 2>/dev/null | grep -v "\.$pid$" | tail -1 || true)
    [ -n "$dump" ] || dump="$out.$pid"
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$case.$label.out"; fi
    printf '%-18s%-12s%16.0f\n' "$case" "$label" "$(python3 -c "print($total / $REQUESTS)")"
  done
done
