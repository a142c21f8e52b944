#!/usr/bin/env bash
# How many seeds acknowledge all their requests, and the median: the
# availability of the protocol under the simulator's faults.
# Usage: perf/sim-availability.sh FIRST COUNT [toasty-sim options...]
# e.g.   perf/sim-availability.sh 1000 60 --faults network
set -euo pipefail
cd "$(dirname "$0")/.."
first=$1; count=$2; shift 2
cargo build --profile sim --bin toasty-sim >/dev/null 2>&1
start=$(date +%s.%N)
./target/sim/toasty-sim --seeds "$first..$((first + count))" "$@" > target/sim-availability.log 2>/dev/null || true
end=$(date +%s.%N)
python3 - "$start" "$end" <<'PY'
import json, statistics, sys
start, end = float(sys.argv[1]), float(sys.argv[2])
rows = [json.loads(l) for l in open("target/sim-availability.log") if l.startswith("{")]
acked = [r["requests_acked"] for r in rows]
print(json.dumps({"seeds": len(rows), "ok": sum(r["result"] == "ok" for r in rows),
  "seeds_with_2000_acked": sum(a >= 2000 for a in acked), "median_acked": statistics.median(acked),
  "mean_view_changes": round(statistics.mean(r["view_changes"] for r in rows)),
  "mean_ticks": round(statistics.mean(r["ticks"] for r in rows)),
  "seeds_per_minute": round(60 * len(rows) / (end - start), 1)}))
PY
