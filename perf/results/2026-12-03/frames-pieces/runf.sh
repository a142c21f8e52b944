#!/bin/bash
out=$1; pairs=$2; shift 3
cd /work/main
for i in $(seq 1 $pairs); do
  for v in old final; do
    echo "== $v $i" >> $out
    DUR=12 bash perf/results/2026-12-03/md5-lanes/measure.sh counters /tmp/bin-$v 1 -- "$@" 2>&1 | grep -E "ops/s|frames|chunk_write_latency_us_sum" >> $out
  done
done
echo DONE >> $out
