#!/bin/bash
# usage: run.sh OUT PAIRS -- FLAGS
out=$1; pairs=$2; shift 3
cd /work/main
for i in $(seq 1 $pairs); do
  for v in old new; do
    echo "== $v $i" >> $out
    bash perf/results/2026-12-03/md5-lanes/measure.sh counters /tmp/bin-$v 1 -- "$@" >> $out 2>&1
  done
done
echo DONE >> $out
