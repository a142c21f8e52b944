#!/usr/bin/env bash
# CPU per request of every process in a loadgen run: each of the three
# server nodes, their sum, and the client, on a fresh local cluster.
#
# Usage: perf/cpu-per-request.sh [--cores C] [--seconds S] [--warmup S] [--out DIR]
#                                [-- LOADGEN_WORKLOAD_FLAGS...]
#   default workloads: 4 KiB PUT at c64, then 4 KiB GET at c64 (keys prefilled)
#   with `-- FLAGS`:   that one workload instead (e.g. -- --mix get=100 --size 1MiB -c 16)
#   --cores C [2]  --seconds S measured [10]  --warmup S separate warm-up run [2]
#   --out DIR      [perf/results/<date>/cpu-per-request-<commit>]
#
# Servers: utime + stime from /proc/<pid>/stat (all threads) right before
# and right after the measured toasty-loadgen process (perf/lib.sh run_cell),
# divided by the HTTP requests it completed. Before the workloads the idle
# cluster is sampled for 3 s, so the idle rate (ticks, heartbeats) can be
# told apart: `idle_corrected_us_per_request` subtracts it. Client: the
# loadgen's own report, worker threads over the measured window
# (client_cpu) and the whole process (process_cpu). Writes
# cpu-per-request.json and cpu-per-request.txt.
set -euo pipefail
# shellcheck source=perf/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$perf_root"

cores=2
duration_s=10
warmup_s=2
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --cores) cores=${2:?}; shift ;;
    --seconds) duration_s=${2:?}; shift ;;
    --warmup) warmup_s=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

ensure_binaries
commit=$(binaries_commit)
out=${out:-$perf_root/perf/results/$(date +%Y-%m-%d)/cpu-per-request-$commit}
mkdir -p "$out"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cluster_stop "" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

machine_facts_json "$cluster_parent" >"$out/facts.json"
cluster_start "cpu-per-request-cores$cores" "$cores"
lg=("$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region "$lg_region" --access-key "$lg_access"
    --secret-key "$lg_secret" --bucket "$lg_bucket" --timeout 60 --no-progress)
"${lg[@]}" --create-bucket --mix put=100 --size 4KiB -c 1 --requests 1 >/dev/null 2>&1 ||
    die "could not create the bucket"

# The idle cluster: what the nodes burn with no requests (10 ms ticks,
# heartbeats, metrics), in cores.
sleep 2
idle_before=()
for pid in "${server_pids[@]}"; do idle_before+=("$(cpu_ticks "$pid")"); done
idle_t0=$(now_ns)
sleep 3
idle_after=()
for pid in "${server_pids[@]}"; do idle_after+=("$(cpu_ticks "$pid")"); done
idle_t1=$(now_ns)

names=()
if [ $# -gt 0 ]; then
    names+=(custom)
    log "custom workload: $*"
    if [[ " $* " == *get* ]]; then "${lg[@]}" "$@" --prefill --requests 64 >/dev/null 2>&1 || die "prefill failed"; fi
    run_cell "$out/custom.json" "$@"
    log "  $(cell_summary "$out/custom.json")"
else
    names+=(put-4KiB-c64 get-4KiB-c64)
    log "4 KiB PUT c64"
    run_cell "$out/put-4KiB-c64.json" --mix put=100 --size 4KiB --keys 1000 -c 64
    log "  $(cell_summary "$out/put-4KiB-c64.json")"
    "${lg[@]}" --mix get=100 --size 4KiB --keys 1000 -c 64 --prefill --requests 64 >/dev/null 2>&1 ||
        die "prefill failed"
    log "4 KiB GET c64"
    run_cell "$out/get-4KiB-c64.json" --mix get=100 --verify --size 4KiB --keys 1000 -c 64
    log "  $(cell_summary "$out/get-4KiB-c64.json")"
fi
cluster_stop ""

python3 - "$out" "$(clock_ticks_per_second)" "$idle_t0" "$idle_t1" "${idle_before[*]}" "${idle_after[*]}" \
    "$cores" "${names[@]}" <<'PY'
import json, os, sys
out, hz, t0, t1, before, after, cores = sys.argv[1:8]
names = sys.argv[8:]
hz = int(hz)
idle_window = (int(t1) - int(t0)) / 1e9
idle = [(int(a) - int(b)) / hz / idle_window for b, a in zip(before.split(), after.split())]
facts = json.load(open(os.path.join(out, "facts.json")))
result = {"schema": "toasty-perf-cpu-per-request/1", "facts": facts, "cores": int(cores),
          "idle_cores_used_per_node": [round(x, 4) for x in idle], "idle_window_s": round(idle_window, 2),
          "runs": {}}
lines = [f"toasty {facts['binaries_commit']}, --cores {cores}, load average at start {facts['load_average_at_start']}",
         f"idle cluster: {', '.join(f'node {i} {x:.3f}' for i, x in enumerate(idle))} cores "
         f"(over {idle_window:.1f} s)", ""]
header = f"{'run':<14} {'process':<12} {'CPU s':>8} {'cores':>6} {'µs/req':>8} {'µs/req idle-corr.':>18}"
for name in names:
    cell = json.load(open(os.path.join(out, f"{name}.json")))
    lg = cell["loadgen"]
    if lg is None:
        lines.append(f"{name}: FAILED: {cell['stderr_errors'][:2]}")
        result["runs"][name] = {"cell": cell}
        continue
    req, window = lg["requests"], cell["window_s"]
    procs = []
    for n in cell["server_cpu"]["nodes"]:
        corrected = (n["cpu_s"] - idle[n["index"]] * window) * 1e6 / req
        procs.append({"process": f"node {n['index']}", "pid": n["pid"], "cpu_s": n["cpu_s"],
                      "cores_used": n["cores_used"], "us_per_request": n["us_per_request"],
                      "idle_corrected_us_per_request": round(corrected, 1)})
    s = cell["server_cpu"]
    procs.append({"process": "servers", "cpu_s": s["sum_cpu_s"], "cores_used": s["sum_cores_used"],
                  "us_per_request": s["sum_us_per_request"],
                  "idle_corrected_us_per_request": round(sum(p["idle_corrected_us_per_request"] for p in procs), 1)})
    cc, pc = lg["client_cpu"], lg["process_cpu"]
    procs.append({"process": "client", "cpu_s": round(cc["user_s"] + cc["sys_s"], 3), "cores_used": cc["cores_used"],
                  "us_per_request": cc["us_per_request"], "idle_corrected_us_per_request": None,
                  "note": "toasty-loadgen worker threads over the measured window (client_cpu)"})
    procs.append({"process": "client-proc", "cpu_s": round(pc["user_s"] + pc["sys_s"], 3),
                  "cores_used": round((pc["user_s"] + pc["sys_s"]) / window, 3),
                  "us_per_request": round((pc["user_s"] + pc["sys_s"]) * 1e6 / req, 1),
                  "idle_corrected_us_per_request": None,
                  "note": "the whole toasty-loadgen process, start to exit (process_cpu)"})
    t = lg["total"]
    result["runs"][name] = {"command": cell["command"], "requests": req, "window_s": window,
                            "ops_per_s": t["ops_per_s"], "p50_ms": t["latency_us"]["p50"] / 1000,
                            "p99_ms": t["latency_us"]["p99"] / 1000, "ops_error": t["ops_error"],
                            "load_average_before": cell["load_average_before"], "processes": procs}
    lines += [f"{name}: {req} requests in {window:.2f} s, {t['ops_per_s']:,.0f} ops/s, "
              f"p50 {t['latency_us']['p50'] / 1000:.3f} ms, p99 {t['latency_us']['p99'] / 1000:.3f} ms, "
              f"errors {t['ops_error']}, load before {cell['load_average_before']}", header]
    for p in procs:
        ic = p["idle_corrected_us_per_request"]
        lines.append(f"{'':<14} {p['process']:<12} {p['cpu_s']:>8.2f} {p['cores_used']:>6.3f} "
                     f"{p['us_per_request']:>8.1f} {'' if ic is None else f'{ic:.1f}':>18}")
    lines += [f"  command: {cell['command']}", ""]
json.dump(result, open(os.path.join(out, "cpu-per-request.json"), "w"), indent=1)
open(os.path.join(out, "cpu-per-request.txt"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
