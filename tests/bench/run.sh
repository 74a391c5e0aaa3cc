#!/usr/bin/env bash
# `make bench`: every benchmark, each reporting ratios against a baseline
# measured in the same run.
set -euo pipefail
here="$(dirname "$0")"
"$here/proxy.sh" "$@"
