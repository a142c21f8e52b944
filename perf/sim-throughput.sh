#!/usr/bin/env bash
# Simulator throughput on one core: R=3, N=2, 4 clients per group, 2,000
# requests per seed, default faults (the CI configuration of the issue).
# Usage: perf/sim-throughput.sh [FIRST_SEED] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-1000}
count=${2:-60}
cargo build --profile sim --bin toasty-sim >/dev/null 2>&1
load=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
taskset -c 0 ./target/sim/toasty-sim --seeds "$first..$((first + count))" > target/sim-throughput.log || true
end=$(date +%s.%N)
python3 - "$start" "$end" "$load" "$first" "$count" <<'PY'
import json, sys
start, end, load, first, count = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(l) for l in open("target/sim-throughput.log") if l.startswith("{")]
seconds = end - start
ticks = sum(r["ticks"] for r in rows)
acked = sum(r["requests_acked"] for r in rows)
ok = sum(r["result"] == "ok" for r in rows)
print(json.dumps({"seeds": len(rows), "seeds_ok": ok, "seconds": round(seconds, 2),
  "seeds_per_minute": round(60 * len(rows) / seconds, 1), "ticks_per_second": round(ticks / seconds),
  "requests_per_second": round(acked / seconds), "requests_acked_min": min(r["requests_acked"] for r in rows),
  "seeds_with_2000_acked": sum(r["requests_acked"] >= 2000 for r in rows),
  "seeds_per_minute_with_2000_acked": round(60 * sum(r["requests_acked"] >= 2000 for r in rows) / seconds, 1),
  "load_at_start": load, "first_seed": first}))
PY
