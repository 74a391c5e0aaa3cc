#!/usr/bin/env bash
# `make bench`: every benchmark, each reporting ratios against a baseline
# measured in the same run. `make bench BENCH=admin` (or proxy, cluster, router) runs one.
set -euo pipefail
here="$(dirname "$0")"
which="${BENCH:-all}"
case "$which" in
  all)
    "$here/proxy.sh"
    "$here/admin.sh"
    cargo bench -p tollgate-data-plane --bench router
    "$here/cluster.sh"
    ;;
  proxy) "$here/proxy.sh" ;;
  admin) "$here/admin.sh" ;;
  router) cargo bench -p tollgate-data-plane --bench router ;;
  cluster) "$here/cluster.sh" ;;
  *) echo "unknown BENCH=$which (all, proxy, admin, router, cluster)" >&2; exit 2 ;;
esac
