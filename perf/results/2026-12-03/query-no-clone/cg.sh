#!/bin/bash
# cg.sh BINDIR OUT -- loadgen flags : call-graph profile of the server nodes
set -euo pipefail
export TOASTY_BIN=$1; out=$2; shift 3
cd /work/main
. perf/lib.sh
trap 'cluster_stop' EXIT
cluster_start cg 1
"$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region us-east-1 --access-key "$lg_access" \
    --secret-key "$lg_secret" --bucket bench --create-bucket --no-progress "$@" --duration 1 >/dev/null 2>&1 || true
pids=$(for n in 0 1 2; do node_pid $n; done | paste -sd,)
(sleep 2; perf record --call-graph dwarf,16384 -F 499 -p "$pids" -o "$out.perf" -- sleep 5 >/dev/null 2>&1) &
"$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region us-east-1 --access-key "$lg_access" \
    --secret-key "$lg_secret" --bucket bench --no-progress "$@" --duration 8 2>&1 | grep -E "total|get|put" | head -3
wait
