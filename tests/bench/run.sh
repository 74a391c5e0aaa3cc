#!/usr/bin/env bash
# `make bench`: every benchmark, each reporting ratios against a baseline
# measured in the same run. `make bench BENCH=admin` (or proxy, proxy2 (two
# workers), h2, idle, cluster, router) runs one.
set -euo pipefail
here="$(dirname "$0")"
which="${BENCH:-all}"
case "$which" in
  all)
    "$here/proxy.sh"
    WORKERS=2 CASES=plain "$here/proxy.sh"
    "$here/h2.sh"
    "$here/idle_memory.sh"
    "$here/admin.sh"
    cargo bench -p tollgate-data-plane --bench router
    "$here/cluster.sh"
    ;;
  proxy) "$here/proxy.sh" ;;
  proxy2) WORKERS=2 CASES=${CASES:-plain} "$here/proxy.sh" ;;
  h2) "$here/h2.sh" ;;
  idle) "$here/idle_memory.sh" ;;
  admin) "$here/admin.sh" ;;
  router) cargo bench -p tollgate-data-plane --bench router ;;
  cluster) "$here/cluster.sh" ;;
  *) echo "unknown BENCH=$which (all, proxy, proxy2, h2, idle, admin, router, cluster)" >&2; exit 2 ;;
esac
