#!/usr/bin/env bash
# One knob's effect on one workload, in one run: for each value of the
# knob (interleaved over ROUNDS rounds, so a noisy minute hits every value),
# a fresh local cluster with TOASTY_SERVER_ARGS="$FLAG VALUE", a warm-up,
# then toasty-loadgen's JSON. Prints one line per run and writes
# perf/results/<date>/knob-<flag>-<commit>.json.
#
#   perf/knob.sh --client-sessions "1 2 4 8" -- --mix put=100 --size 4KiB -c 64
#   perf/knob.sh --cores "1 2" -- --mix get=100 --size 4KiB -c 64 --prefill
#
# `--cores` sets scripts/cluster.sh's TOASTY_CORES instead of a server flag.
# Each run also reports the servers' CPU per request: utime + stime of the
# three node processes (all their threads, io_uring workers included) over
# the loadgen process's life (warm-up and prefill included, so it is an
# upper bound), divided by the measured requests.
#
# Env: TOASTY_BIN (binaries, default target/release), ROUNDS (2),
# DURATION (8 s), TOASTY_CORES (2). Ports: base 3000 (S3), 4000, 7100 as
# scripts/cluster.sh, in a cluster dir of its own under target/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flag=$1 values=$2
shift 2
[ "${1:-}" = "--" ] && shift
bin=${TOASTY_BIN:-$root/target/release}
[ -x "$bin/toasty-server" ] && [ -x "$bin/toasty-loadgen" ] || \
  (cd "$root" && cargo build --release --workspace)
rounds=${ROUNDS:-2} duration=${DURATION:-8}
commit=$(git -C "$root" rev-parse --short HEAD)
out_dir="$root/perf/results/$(date +%F)"
mkdir -p "$out_dir"
out="$out_dir/knob${flag//-/_}-$commit-$(date +%H%M%S).json"
export TOASTY_CLUSTER_DIR="$root/target/knob-cluster" TOASTY_BIN="$bin"
export TOASTY_CORES=${TOASTY_CORES:-2}
trap '"$root/scripts/cluster.sh" stop >/dev/null 2>&1 || true' EXIT
echo "{\"commit\":\"$commit\",\"flag\":\"$flag\",\"loadgen\":\"$*\",\"load_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"runs\":[" > "$out"
first=1
for round in $(seq 1 "$rounds"); do
  for value in $values; do
    "$root/scripts/cluster.sh" wipe >/dev/null 2>&1 || true
    if [ "$flag" = "--cores" ]; then
      TOASTY_CORES=$value "$root/scripts/cluster.sh" start >/dev/null
    else
      TOASTY_SERVER_ARGS="$flag $value" "$root/scripts/cluster.sh" start >/dev/null
    fi
    . "$TOASTY_CLUSTER_DIR/credentials"
    json=$(mktemp)
    pids=$(cat "$TOASTY_CLUSTER_DIR"/node-*.pid)
    cpu_ticks() { local sum=0 p f; for p in $pids; do read -r -a f < "/proc/$p/stat"; sum=$((sum + f[13] + f[14])); done; echo "$sum"; }
    cpu_before=$(cpu_ticks)
    "$bin/toasty-loadgen" --endpoint http://127.0.0.1:${TOASTY_S3_PORT:-3000} \
      --access-key "$TOASTY_ACCESS_KEY" --secret-key "$TOASTY_SECRET_KEY" \
      --bucket knob --create-bucket --warmup 2 --duration "$duration" --json "$json" "$@" >/dev/null 2>&1
    cpu_s=$(( $(cpu_ticks) - cpu_before ))
    cpu_s=$(python3 -c "import os,sys; print(int(sys.argv[1]) / os.sysconf('SC_CLK_TCK'))" "$cpu_s")
    line=$(python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); t=r["total"]; l=t["latency_us"]
print("%s %s: %.0f ops/s %.1f MiB/s p50 %.3f ms p99 %.3f ms p99.9 %.3f ms errors %d server CPU %.0f us/request" % (sys.argv[2], sys.argv[3],
  t["ops_per_s"], t["mib_per_s"], l["p50"] / 1e3, l["p99"] / 1e3, l["p999"] / 1e3, t["ops_error"],
  float(sys.argv[4]) * 1e6 / max(1, r["requests"])))' "$json" "$flag" "$value" "$cpu_s" 2>/dev/null || echo "$flag $value: (see $json)")
    echo "round $round $line"
    [ $first -eq 1 ] || echo "," >> "$out"
    first=0
    echo "{\"round\":$round,\"value\":\"$value\",\"server_cpu_s\":$cpu_s,\"result\":$(cat "$json")}" >> "$out"
    rm -f "$json"
    "$root/scripts/cluster.sh" stop >/dev/null
  done
done
echo "],\"load_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$out"
echo "wrote $out"
