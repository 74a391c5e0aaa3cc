#!/usr/bin/env bash
# Proxy benchmark: tollgate-dp (--workers 1, --config-file) against a reference
# nginx reverse proxy (1 worker, upstream keep-alive), both in front of an
# nginx upstream answering a small 200, plus the upstream hit directly.
# Proxies and upstream are pinned to CPU 0, wrk to CPU 1; targets are
# interleaved round by round. Reports req/s, p50/p99 latency and CPU time per
# request of the process under test (utime+stime delta / requests), medians
# over the rounds, and the tollgate/nginx ratios.
#
# Cases live in tests/bench/cases/<case>.sh, one file each, sourced in a
# subshell: ROUTES (default 10), tollgate_extra (YAML appended to the
# declarative config: plugins, consumers, credentials), nginx_extra (server
# directives), WRK_ARGS (extra wrk arguments, e.g. -H for a token) and
# case_setup (runs first, in $work, e.g. to make keys; WRK_ARGS and
# tollgate_extra may read what it wrote under $work) and case_finish (runs
# after the rounds with PROXIED_REQUESTS, the requests the tollgate
# processes served in the case, warm-up included, e.g. to report backend
# calls per request). A case's CPU per
# request is also reported relative to the plain case's when both ran.
# Environment: DURATION (s, default 10), ROUNDS (default 3), CONNECTIONS
# (default 32), WORKERS (default 1: pinned as above; more: tollgate-dp
# --workers N and nginx with N worker processes, wrk with N threads, all
# sharing every CPU), CASES (default: every case file, plain first),
# TOLLGATE_DP (optional: the tollgate-dp binary to measure instead of
# building target/release/tollgate-dp), BASELINE_DP (optional: another tollgate-dp binary, e.g. built from the
# previous release, measured as target "before" in the same interleaved
# rounds, so a change is judged against its own baseline in one run),
# NO_PLUGIN (default 1: every case but plain also runs target "no-plugin",
# the same tollgate-dp with the case's routes and no plugins, fed the same
# requests in the same interleaved rounds; a plugin's cost is its CPU per
# request over that target's, the median of the per-round ratios), PAIRED
# (default 0; 1: after the interleaved rounds, ROUNDS more in which the case's
# tollgate-dp and its no-plugin twin are loaded at the same time, by two wrk
# processes, so both run under the same machine state: on a noisy virtual
# machine, where consecutive runs of one binary differ by 10-20%, the ratio
# of two processes measured over the same seconds is far steadier).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
# One worker: proxies and upstream on CPU 0, wrk on CPU 1. More workers:
# every process shares every CPU (nginx gets as many worker processes).
WORKERS=${WORKERS:-1}
if [ "$WORKERS" = 1 ]; then
  PROXY_CPUS=0 WRK_CPUS=1
else
  PROXY_CPUS=0-$(($(nproc) - 1)) WRK_CPUS=$PROXY_CPUS
fi
# Default: every case file, plain first (the others are compared with it).
all_cases() {
  echo plain
  for file in tests/bench/cases/*.sh; do
    name=$(basename "$file" .sh)
    [ "$name" = plain ] || echo "$name"
  done
}
CASES=${CASES:-$(all_cases | paste -sd' ')}

log() { echo "bench: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
ensure() {
  local cmd=$1 pkg=$2
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
    log "installing $pkg"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$pkg" >&2
  fi
}
ensure wrk wrk
ensure nginx nginx
ensure taskset util-linux
ensure curl curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${TOLLGATE_DP:-}" ]; then
  TOLLGATE=$TOLLGATE_DP
else
  log "building tollgate-dp (release)"
  # The whole workspace, as `make build` does: building one package alone
  # unifies other features and would rebuild half the dependencies.
  cargo build --release -q --workspace --bins
  TOLLGATE=target/release/tollgate-dp
fi

source tests/bench/proxy_common.sh bench
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

UPSTREAM_PORT=$(free_port)
{
  nginx_common upstream
  cat <<CONF
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location / { return 200 "ok\n"; }
  }
}
CONF
} > "$work/upstream.conf"
taskset -c "$PROXY_CPUS" "$NGINX" -c "$work/upstream.conf" -p "$work" &
UPSTREAM_PID=$!
pids+=("$UPSTREAM_PID")
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"

# Prints one setting of a case file, evaluated in a subshell so cases cannot
# leak definitions into each other. usage: case_eval case 'shell code'
case_eval() {
  local file="tests/bench/cases/$1.sh"
  [ -f "$file" ] || { log "no case file $file"; exit 2; }
  ( ROUTES=10; WRK_ARGS=(); tollgate_extra() { :; }; nginx_extra() { :; }; case_setup() { :; }
    case_finish() { :; }
    # shellcheck disable=SC1090
    source "$file"; cd "$work"; eval "$2" )
}
routes_of() { case_eval "$1" 'echo "$ROUTES"'; }

write_nginx_proxy() { # case port
  local case=$1 port=$2 routes
  routes=$(routes_of "$case")
  {
    nginx_common "proxy-$case" "$WORKERS"
    cat <<CONF
  upstream backend {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 64;
    keepalive_requests 10000000;
  }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$proxy_host;
  proxy_set_header X-Real-IP \$remote_addr;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Forwarded-Host \$host;
  proxy_set_header X-Forwarded-Port \$server_port;
  server {
    listen 127.0.0.1:$port;
CONF
    case_eval "$case" nginx_extra
    awk -v n="$routes" 'BEGIN { for (i = 0; i < n; i++) printf "    location /r%d/ { proxy_pass http://backend; }\n", i }'
    echo "  }"
    echo "}"
  } > "$work/proxy-$case.conf"
}

write_tollgate_config() { # case [file suffix: "-bare" leaves the plugins out]
  local case=$1 suffix=${2:-} routes
  routes=$(routes_of "$case")
  {
    echo '_format_version: "3.0"'
    echo 'services:'
    echo '- name: bench'
    echo "  url: http://127.0.0.1:$UPSTREAM_PORT"
    echo '  routes:'
    awk -v n="$routes" 'BEGIN { for (i = 0; i < n; i++) printf "  - name: r%d\n    paths: [\"/r%d/\"]\n", i, i }'
    [ -n "$suffix" ] || case_eval "$case" tollgate_extra
  } > "$work/tollgate-$case$suffix.yaml"
}

started_pid=
start_tollgate() { # binary config proxy-port status-port cache-dir log; sets started_pid
  RUST_LOG=warn taskset -c "$PROXY_CPUS" "$1" serve --workers "$WORKERS" \
    --config-file "$2" --proxy-listen "127.0.0.1:$3" --status-listen "127.0.0.1:$4" \
    --cache-dir "$5" 2> "$6" &
  started_pid=$!
  pids+=("$started_pid")
}

results="$work/results"
: > "$results"

measure() { # case target url pid round [wrk args...]
  local case=$1 target=$2 url=$3 pid=$4 round=$5 before after out
  shift 5
  before=$(cpu_ticks "$pid")
  out=$(taskset -c "$WRK_CPUS" wrk -t"$WORKERS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url")
  after=$(cpu_ticks "$pid")
  local rps requests p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "socket"}' <<<"$out" | paste -sd, -)
  echo "$case $target $round $rps $requests $p50 $p99 $((after - before)) ${errors:--}" >> "$results"
  log "$case $target round $round: $rps req/s, p50 $p50, p99 $p99${errors:+, errors $errors}"
}

# Loads two targets at once (one wrk each, CONNECTIONS each, so that each
# proxy still finds many requests waiting whenever it runs, as when loaded
# alone) and records both as "paired-<target>" rows of the same round.
measure_paired() { # case round url-a pid-a url-b pid-b [wrk args...]
  local case=$1 round=$2 url_a=$3 pid_a=$4 url_b=$5 pid_b=$6 before_a before_b
  shift 6
  before_a=$(cpu_ticks "$pid_a")
  before_b=$(cpu_ticks "$pid_b")
  taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url_a" > "$work/paired-a" &
  local wrk_a=$!
  taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url_b" > "$work/paired-b"
  wait "$wrk_a"
  local after_a after_b
  after_a=$(cpu_ticks "$pid_a")
  after_b=$(cpu_ticks "$pid_b")
  local target file before after
  for target in tollgate no-plugin; do
    if [ "$target" = tollgate ]; then file=$work/paired-a before=$before_a after=$after_a
    else file=$work/paired-b before=$before_b after=$after_b; fi
    local rps requests p50 p99
    rps=$(awk '/^Requests\/sec/ {print $2}' "$file")
    requests=$(awk '/requests in/ {print $1}' "$file")
    p50=$(awk '$1 == "50%" {print $2}' "$file")
    p99=$(awk '$1 == "99%" {print $2}' "$file")
    echo "$case paired-$target $round $rps $requests $p50 $p99 $((after - before)) -" >> "$results"
    log "$case paired $target round $round: $rps req/s"
  done
}

for case in $CASES; do
  routes=$(routes_of "$case")
  path="/r$((routes / 2))/bench"
  case_eval "$case" case_setup
  mapfile -t wrk_args < <(case_eval "$case" 'for arg in "${WRK_ARGS[@]}"; do printf "%s\n" "$arg"; done')
  nginx_port=$(free_port)
  write_nginx_proxy "$case" "$nginx_port"
  taskset -c "$PROXY_CPUS" "$NGINX" -c "$work/proxy-$case.conf" -p "$work" &
  nginx_pid=$!
  pids+=("$nginx_pid")

  tollgate_port=$(free_port)
  status_port=$(free_port)
  write_tollgate_config "$case"
  start_tollgate "$TOLLGATE" "$work/tollgate-$case.yaml" "$tollgate_port" \
    "$status_port" "$work/cache" "$work/tollgate-$case.log"
  tollgate_pid=$started_pid
  before_pid=
  if [ -n "${BASELINE_DP:-}" ]; then
    before_port=$(free_port)
    before_status=$(free_port)
    start_tollgate "$BASELINE_DP" "$work/tollgate-$case.yaml" "$before_port" \
      "$before_status" "$work/cache-before" "$work/before-$case.log"
    before_pid=$started_pid
  fi
  bare_pid=
  if [ "${NO_PLUGIN:-1}" = 1 ] && [ "$case" != plain ]; then
    bare_port=$(free_port)
    bare_status=$(free_port)
    write_tollgate_config "$case" -bare
    start_tollgate "$TOLLGATE" "$work/tollgate-$case-bare.yaml" "$bare_port" \
      "$bare_status" "$work/cache-bare" "$work/bare-$case.log"
    bare_pid=$started_pid
  fi

  wait_http "http://127.0.0.1:$nginx_port$path" "${wrk_args[@]}"
  wait_http "http://127.0.0.1:$status_port/status/ready"
  wait_http "http://127.0.0.1:$tollgate_port$path" "${wrk_args[@]}"
  if [ -n "$before_pid" ]; then wait_http "http://127.0.0.1:$before_port$path" "${wrk_args[@]}"; fi
  if [ -n "$bare_pid" ]; then wait_http "http://127.0.0.1:$bare_port$path" "${wrk_args[@]}"; fi

  # Warm-up: connections, pools, caches.
  for url in "http://127.0.0.1:$nginx_port$path" "http://127.0.0.1:$tollgate_port$path" ${before_pid:+"http://127.0.0.1:$before_port$path"} ${bare_pid:+"http://127.0.0.1:$bare_port$path"}; do
    taskset -c "$WRK_CPUS" wrk -t"$WORKERS" -c"$CONNECTIONS" -d2s "${wrk_args[@]}" "$url" >/dev/null
  done
  for round in $(seq 1 "$ROUNDS"); do
    measure "$case" direct "http://127.0.0.1:$UPSTREAM_PORT$path" "$UPSTREAM_PID" "$round"
    measure "$case" nginx "http://127.0.0.1:$nginx_port$path" "$nginx_pid" "$round" "${wrk_args[@]}"
    measure "$case" tollgate "http://127.0.0.1:$tollgate_port$path" "$tollgate_pid" "$round" "${wrk_args[@]}"
    if [ -n "$before_pid" ]; then
      measure "$case" before "http://127.0.0.1:$before_port$path" "$before_pid" "$round" "${wrk_args[@]}"
    fi
    if [ -n "$bare_pid" ]; then
      measure "$case" no-plugin "http://127.0.0.1:$bare_port$path" "$bare_pid" "$round" "${wrk_args[@]}"
    fi
  done
  if [ "${PAIRED:-0}" = 1 ] && [ -n "$bare_pid" ]; then
    for round in $(seq 1 "$ROUNDS"); do
      measure_paired "$case" "$round" "http://127.0.0.1:$tollgate_port$path" "$tollgate_pid" \
        "http://127.0.0.1:$bare_port$path" "$bare_pid" "${wrk_args[@]}"
    done
  fi
  served=0
  for status_url in "http://127.0.0.1:$status_port/status" ${before_pid:+"http://127.0.0.1:$before_status/status"}; do
    count=$(curl -fs "$status_url" | python3 -c 'import json,sys; print(json.load(sys.stdin)["server"]["total_requests"])')
    served=$((served + count))
  done
  PROXIED_REQUESTS=$served case_eval "$case" case_finish
  kill "$nginx_pid" "$tollgate_pid" $before_pid $bare_pid
  wait "$nginx_pid" "$tollgate_pid" $before_pid $bare_pid 2>/dev/null || true
done

python3 - "$results" "$CLK_TCK" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$WORKERS" "$PROXY_CPUS" "$WRK_CPUS" <<'PY'
import statistics, sys
path, clk, conns, duration, rounds, workers, proxy_cpus, wrk_cpus = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def to_us(text):
    for unit, factor in (("us", 1), ("ms", 1000), ("s", 1_000_000)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float("nan")
rows = {}
per_round = {}
for line in open(path):
    case, target, round_, rps, requests, p50, p99, ticks, errors = line.split()
    cpu_us = int(ticks) * 1_000_000 / clk / max(int(requests), 1)
    rows.setdefault((case, target), []).append((float(rps), to_us(p50), to_us(p99), cpu_us, errors))
    per_round.setdefault((case, round_), {})[target] = cpu_us
print(f"\nwrk -t{workers} -c{conns} -d{duration}s, {rounds} interleaved rounds, medians; {workers} worker(s) per proxy; proxies and upstream on CPU {proxy_cpus}, wrk on CPU {wrk_cpus}")
print(f"{'case':<16}{'target':<10}{'req/s':>10}{'p50 µs':>9}{'p99 µs':>9}{'CPU µs/req':>12}  errors")
cases = []
for case, _ in rows:
    if case not in cases:
        cases.append(case)
summary = {}
for case in cases:
    for target in ("direct", "nginx", "tollgate", "before", "no-plugin", "paired-tollgate", "paired-no-plugin"):
        samples = rows.get((case, target))
        if not samples:
            continue
        med = [statistics.median(s[i] for s in samples) for i in range(4)]
        errors = ",".join(sorted({s[4] for s in samples}))
        summary[(case, target)] = med
        print(f"{case:<16}{target:<10}{med[0]:>10.0f}{med[1]:>9.0f}{med[2]:>9.0f}{med[3]:>12.2f}  {errors}")
print(f"\n{'case':<16}{'target':<10}{'throughput /nginx':>19}{'CPU/req /nginx':>16}{'p99 /nginx':>12}")
for case in cases:
    n = summary.get((case, "nginx"))
    for target in ("tollgate", "before"):
        t = summary.get((case, target))
        if n and t:
            print(f"{case:<16}{target:<10}{t[0] / n[0]:>19.2f}{t[3] / n[3]:>16.2f}{t[2] / n[2]:>12.2f}")
plain = summary.get(("plain", "tollgate"))
if plain and any(case != "plain" for case in cases):
    print(f"\n{'case':<16}{'target':<10}{'CPU/req /plain tollgate':>24}")
    for case in cases:
        for target in ("tollgate", "before"):
            t = summary.get((case, target))
            if t and case != "plain":
                print(f"{case:<16}{target:<10}{t[3] / plain[3]:>24.2f}")
paired_cases = [case for case in cases if (case, "paired-no-plugin") in rows]
if paired_cases:
    print(f"\n{'case':<16}{'CPU/req /no-plugin, loaded together (PAIRED)':>46}{'min':>7}{'max':>7}")
    for case in paired_cases:
        ratios = [r["paired-tollgate"] / r["paired-no-plugin"] for (c, _), r in per_round.items()
                  if c == case and r.get("paired-tollgate") and r.get("paired-no-plugin")]
        if ratios:
            print(f"{case:<16}{statistics.median(ratios):>46.3f}{min(ratios):>7.3f}{max(ratios):>7.3f}")
bare_cases = [case for case in cases if (case, "no-plugin") in summary]
if bare_cases:
    print(f"\n{'case':<16}{'target':<10}{'CPU/req /no-plugin (same rounds)':>34}{'min':>7}{'max':>7}")
    for case in bare_cases:
        for target in ("tollgate", "before"):
            ratios = [r[target] / r["no-plugin"] for (c, _), r in per_round.items()
                      if c == case and target in r and r.get("no-plugin")]
            if ratios:
                print(f"{case:<16}{target:<10}{statistics.median(ratios):>34.3f}{min(ratios):>7.3f}{max(ratios):>7.3f}")
PY
