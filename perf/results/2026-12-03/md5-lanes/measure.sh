#!/usr/bin/env bash
# One fresh local cluster (perf/lib.sh), one loadgen workload, and either
#   measure.sh counters BINDIR CORES -- FLAGS   : /metrics counter deltas over
#       the measured run (summed over the nodes, and per request)
#   measure.sh profile  BINDIR CORES OUT -- FLAGS : perf record -a -F 2000 for
#       5 s inside the run, self time by symbol into OUT
# FLAGS are toasty-loadgen workload flags, e.g. --mix put=100 --size 1MiB -c 16 --keys 200.
# SUM_NODES=1 sums each counter over the nodes (labels dropped); METRICS_RE
# picks the counters (default md5|wal|chunk|frames). The loadgen
# p50/p99 close the first line (added 2026-12-04).
# Measured run: DUR seconds [6 counters, 8 profile] after a 1 s warm-up.
set -euo pipefail
mode=$1; export TOASTY_BIN=$2; cores=$3; shift 3
out=""
if [ "$mode" = profile ]; then out=$1; shift; fi
[ "$1" = -- ] && shift
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
. perf/lib.sh
warmup_s=1
if [ "$mode" = profile ]; then duration_s=${DUR:-8}; else duration_s=${DUR:-6}; fi
trap 'cluster_stop' EXIT
cluster_start "measure-$mode" "$cores"
"$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region us-east-1 --access-key "$lg_access" \
    --secret-key "$lg_secret" --bucket bench --create-bucket --no-progress "$@" --duration 1 >/dev/null 2>&1 || true
snap() {
    for i in 0 1 2; do curl -s "http://127.0.0.1:$((metrics_port + i))/metrics"; done |
        grep -E "^toasty_(${METRICS_RE:-md5|wal|chunk|frames})" | { if [ "${SUM_NODES:-0}" = 1 ]; then sed -E 's/\{[^}]*\}//'; else cat; fi; } | awk '{a[$1]+=$2} END {for (k in a) printf "%s %.0f\n", k, a[k]}' | sort
}
cell=$(mktemp -d)/cell.json
if [ "$mode" = profile ]; then
    (sleep 2; perf record -a -F 2000 -o "$cell.perf" -- sleep 5 >/dev/null 2>&1) &
    run_cell "$cell" "$@"
    wait
    perf report -i "$cell.perf" --no-children --sort sym --stdio 2>/dev/null | grep -E "^\s+[0-9]" | head -14 >"$out"
else
    snap >"$cell.before"
    run_cell "$cell" "$@"
    snap >"$cell.after"
fi
python3 - "$cell" "$mode" <<'PY' | tee -a "${out:-/dev/null}"
import json, sys
cell, mode = sys.argv[1:3]
c = json.load(open(cell)); lg = c['loadgen']; n = lg['requests']
print('requests', n, 'window_s', c['window_s'], 'ops/s', round(n / c['window_s'], 1),
      'server us/req', c['server_cpu']['sum_us_per_request'], 'load', c['load_average_before'],
      'p50_ms', lg['total']['latency_us']['p50'] / 1000, 'p99_ms', lg['total']['latency_us']['p99'] / 1000)
if mode == 'counters':
    before = dict(l.split() for l in open(cell + '.before'))
    after = dict(l.split() for l in open(cell + '.after'))
    for k in sorted(after):
        d = float(after[k]) - float(before.get(k, 0))
        if d:
            print(f'{k} {d:.0f} per-request {d / n:.3f}')
PY
