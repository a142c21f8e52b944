#!/usr/bin/env bash
# --wal-sync fdatasync vs dsync in alternating pairs of fresh --cores 1
# clusters, one binary (BINDIR), counters summed over the nodes.
#   perf/results/2026-12-04/wal-dsync/run.sh BINDIR PAIRS -- LOADGEN_FLAGS
set -euo pipefail
bindir=$1; pairs=$2; shift 2; [ "$1" = -- ] && shift
here=$(dirname "$0")
export SUM_NODES=1 DUR=${DUR:-10} METRICS_RE='requests|commits|wal_fdatasyncs|wal_writes'
for pair in $(seq 1 "$pairs"); do
    for mode in fdatasync dsync; do
        echo "pair $pair --wal-sync $mode: $*"
        PERF_SERVER_ARGS="--wal-sync $mode" bash "$here/../../2026-12-03/md5-lanes/measure.sh" \
            counters "$bindir" 1 -- "$@" 2>&1 | grep -v "^\[" 
    done
done
