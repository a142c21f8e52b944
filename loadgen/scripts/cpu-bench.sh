#!/usr/bin/env bash
# Measures toasty-loadgen's own CPU per request against the trivial mock
# responder (4 KiB GETs). Prints the load average before each run: on a
# shared 2-core box anything above ~1 means a neighbour wanted a core.
# Usage: loadgen/scripts/cpu-bench.sh [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
port=9177
cargo build --release -q -p toasty-loadgen
bin=target/release
"$bin/toasty-loadgen-mock" --listen 127.0.0.1:$port --body-bytes 4096 2>/dev/null &
mock=$!
trap 'kill $mock' EXIT
sleep 0.3
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
# Whole-box idle share between two /proc/stat samples: the loadgen and the
# mock use some; the rest of "not idle" is other work on the machine.
idle_ticks() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
run() {
  echo "== $* (load $(cut -d' ' -f1-3 /proc/loadavg))"
  read -r i0 t0 < <(idle_ticks)
  "$bin/toasty-loadgen" --endpoint http://127.0.0.1:$port --mix get=100 --duration "$secs" --no-progress "$@" \
    | grep -E '^total|^open loop|^client CPU'
  read -r i1 t1 < <(idle_ticks)
  echo "   box idle during the run: $(( 100 * (i1 - i0) / (t1 - t0 + 1) )) % of 2 cores"
}
run -c 16
run -c 16 --rate 20000
run -c 16 --rate 20000 --coalesce-us 0
run -c 64 --rate 20000
run -c 16 --rate 5000
