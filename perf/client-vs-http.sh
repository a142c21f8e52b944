#!/usr/bin/env bash
# The object client next to the S3 front end, in one run on one cluster:
# what HTTP costs (issue 5: 4 KiB GET through HTTP >= 70 % of the object
# client's), and the object client's own numbers (issue 4: 4 KiB PUT,
# 1 MiB PUT and GET at 64 requests in flight, --cores 1 and 2).
#
#   perf/client-vs-http.sh            # cores "1 2", 2 rounds
#   CORES="2" ROUNDS=1 DURATION=5 perf/client-vs-http.sh
#
# Per cores value, round and workload: a fresh local cluster
# (scripts/cluster.sh on ports 16000/16700/16900), then the workload
# through `toasty-client load` (the sans-IO object client on glommio, in its own process, like a load
# generator) and through `toasty-loadgen` (S3, SigV4 UNSIGNED-PAYLOAD,
# keep-alive), alternating which goes first per round. Both clients run on
# this box and share its 2 cores with the three nodes. Each run records the
# servers' CPU (utime + stime of the three processes over the client's life,
# prefill included: an upper bound) per measured request.
#
# Writes perf/results/<date>/client-vs-http-<commit>.json and prints a table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TOASTY_BIN:-$root/target/release}
if [ ! -x "$bin/toasty-server" ] || [ ! -x "$bin/toasty-client" ] || [ ! -x "$bin/toasty-loadgen" ]; then
  (cd "$root" && cargo build --release --workspace)
fi
cores_list=${CORES:-1 2}
rounds=${ROUNDS:-2}
duration=${DURATION:-6}
commit=$(git -C "$root" rev-parse --short HEAD)
[ -z "$(git -C "$root" status --porcelain -- src loadgen)" ] || commit="$commit-dirty"
out_dir="$root/perf/results/$(date +%F)"
mkdir -p "$out_dir"
out="$out_dir/client-vs-http-$commit.json"
export TOASTY_CLUSTER_DIR="$root/target/cvh-cluster" TOASTY_BIN="$bin"
export TOASTY_BASE_PORT=16000 TOASTY_METRICS_PORT=16700 TOASTY_S3_PORT=16900
# PUTs overwrite a bounded key space (4 KiB: 1000 keys, 1 MiB: 200; both
# clients), so the inline 4 KiB objects stay far below --metadata-mib
# (unique keys filled it: LimitExceeded(ObjectsBytes), 2026-12-04) and the
# old 1 MiB chunks must be collected during the run: grace 5 s (far above
# one 1 MiB upload; at ~400 MiB/s that is ~2 GiB of garbage per node,
# more while compaction catches up) in 6 GiB of chunk file per node
# (96 / cores segments of 64 MiB per shard, as perf/matrix.sh).
export TOASTY_SEGMENT_MIB=64
export TOASTY_SERVER_ARGS="--gc-grace-seconds 5 --gc-interval-seconds 1"
peers="127.0.0.1:16000,127.0.0.1:16100,127.0.0.1:16200"
trap '"$root/scripts/cluster.sh" stop >/dev/null 2>&1 || true' EXIT

# name op size concurrency keys
workloads=(
  "get4k get 4096 64 1000"
  "put4k put 4096 64 1000"
  "put1m put 1048576 64 200"
  "get1m get 1048576 64 200"
)

cpu_ticks() {
  local sum=0 p f
  for p in $(cat "$TOASTY_CLUSTER_DIR"/node-*.pid); do
    read -r -a f <"/proc/$p/stat"
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}

# client workload -> one JSON line on stdout
run_one() {
  local client=$1 name=$2 op=$3 size=$4 conc=$5 keys=$6 json before ticks
  json=$(mktemp)
  before=$(cpu_ticks)
  if [ "$client" = object ]; then
    local prefill=0
    [ "$op" = get ] && prefill=$keys
    "$bin/toasty-client" --peers "$peers" --cores "$cores" load --bucket cvh --op "$op" \
      --size "$size" --concurrency "$conc" --seconds "$duration" --prefill "$prefill" \
      --keys "$keys" --run "$name-$round" >"$json" 2>"$json.err" || true
  else
    local mix="put=100" prefill=()
    [ "$op" = get ] && mix="get=100" && prefill=(--prefill)
    "$bin/toasty-loadgen" --endpoint "http://127.0.0.1:16900" --access-key "$TOASTY_ACCESS_KEY" \
      --secret-key "$TOASTY_SECRET_KEY" --bucket cvh --key-prefix "$name-$round/" --mix "$mix" \
      --size "$size" -c "$conc" --keys "$keys" --key-dist uniform "${prefill[@]}" --warmup 1 \
      --duration "$duration" --json "$json" >/dev/null 2>"$json.err" || true
  fi
  ticks=$(($(cpu_ticks) - before))
  python3 - "$json" "$client" "$name" "$cores" "$round" "$ticks" <<'PY'
import json, os, sys
path, client, name, cores, rnd, ticks = sys.argv[1:7]
text = open(path).read().strip().splitlines()
try:
    r = json.loads(text[-1]) if client == "object" else json.loads("".join(text))
except (IndexError, ValueError):
    # The client failed before its report: keep why, count the cell as failed.
    err = open(path + ".err", errors="replace").read().strip().splitlines()[-3:]
    print(json.dumps({"client": client, "workload": name, "cores": int(cores), "round": int(rnd),
        "ops_per_s": 0, "mib_per_s": 0, "p50_us": 0, "p99_us": 0, "max_us": 0, "errors": 1,
        "requests": 0, "server_cpu_us_per_request": 0, "failed": " | ".join(err) or "no output"}))
    sys.exit(0)
if client == "object":
    ops, mib, lat, errors = r["ops_per_second"], r["mib_per_second"], r["latency_us"], r["errors"]
    requests = r["ops"]
    error_count = sum(errors.values()) if isinstance(errors, dict) else 0
else:
    t = r["total"]
    ops, mib, lat, requests, error_count = t["ops_per_s"], t["mib_per_s"], t["latency_us"], r["requests"], t["ops_error"]
cpu_s = int(ticks) / os.sysconf("SC_CLK_TCK")
print(json.dumps({"client": client, "workload": name, "cores": int(cores), "round": int(rnd),
    "ops_per_s": ops, "mib_per_s": mib, "p50_us": lat["p50"], "p99_us": lat["p99"],
    "max_us": lat["max"], "errors": error_count, "requests": requests,
    "server_cpu_us_per_request": round(cpu_s * 1e6 / max(1, requests), 1), "raw": r}))
PY
  rm -f "$json" "$json.err"
}

lines=$(mktemp)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for cores in $cores_list; do
  for round in $(seq 1 "$rounds"); do
    order="object http"
    [ $((round % 2)) -eq 0 ] && order="http object"
    for w in "${workloads[@]}"; do
      read -r name op size conc keys <<<"$w"
      # A fresh cluster per workload: one workload's garbage (overwritten
      # 1 MiB chunks wait the grace, then compaction) must not fill the
      # store under the next (2026-12-04: "disks full" in get1m's prefill
      # after put1m).
      "$root/scripts/cluster.sh" wipe >/dev/null 2>&1 || true
      TOASTY_CORES=$cores TOASTY_CHUNK_SEGMENTS=$((96 / cores)) \
        "$root/scripts/cluster.sh" start >/dev/null
      # shellcheck disable=SC1091
      . "$TOASTY_CLUSTER_DIR/credentials"
      "$bin/toasty-client" --peers "$peers" --cores "$cores" bucket-create cvh >/dev/null
      for client in $order; do
        line=$(run_one "$client" "$name" "$op" "$size" "$conc" "$keys")
        echo "$line" >>"$lines"
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("cores %d round %d %-6s %-5s %8.0f ops/s %7.1f MiB/s p50 %7.2f ms p99 %7.2f ms errors %d server %5.0f us/req%s" % (r["cores"], r["round"], r["workload"], r["client"], r["ops_per_s"], r["mib_per_s"], r["p50_us"]/1e3, r["p99_us"]/1e3, r["errors"], r["server_cpu_us_per_request"], ("  FAILED: " + r["failed"]) if "failed" in r else ""))' "$line"
      done
      "$root/scripts/cluster.sh" stop >/dev/null
    done
  done
done
python3 - "$lines" "$out" "$commit" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys, statistics
lines, out, commit, load_start, load_end = sys.argv[1:6]
runs = [json.loads(l) for l in open(lines)]
summary = {}
for r in runs:
    if "failed" in r:
        continue
    summary.setdefault(f'{r["workload"]} cores {r["cores"]}', {}).setdefault(r["client"], []).append(r["ops_per_s"])
ratios = {k: round(statistics.median(v["http"]) / statistics.median(v["object"]), 3)
          for k, v in summary.items() if "http" in v and "object" in v and statistics.median(v["object"]) > 0}
json.dump({"schema": "toasty-perf/client-vs-http/1", "commit": commit, "load_start": load_start,
           "load_end": load_end, "http_over_object_median_ratio": ratios, "runs": runs},
          open(out, "w"), indent=1)
print("HTTP / object client (median ops/s):")
for k, v in ratios.items():
    print(f"  {k}: {v}")
print(f"wrote {out}")
PY
rm -f "$lines"
