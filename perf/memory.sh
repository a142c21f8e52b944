#!/usr/bin/env bash
# Memory benchmark (runtime issue 4): per-node RSS (VmRSS, VmHWM from
# /proc/PID/status) at idle and under S3 load through toasty-loadgen:
#
#   phase idle      a fresh cluster after start, no requests
#   phase put4k     4 KiB PUT, 64 connections (closed loop)
#   phase idle2     after the 4 KiB load
#   phase put1m     1 MiB PUT, 16 connections (closed loop)
#   phase idle3     after the 1 MiB load
#
#   perf/memory.sh [SECONDS] [OUT.json]     (default 20 s per load phase)
#
# Before each phase the peak is reset (`echo 5 > /proc/PID/clear_refs`), so
# VmHWM is that phase's peak; VmRSS is also sampled every 0.25 s (max, first,
# last). The cluster is scripts/cluster.sh's: 3 nodes x 2 shards, chunk store
# TOASTY_CHUNK_SEGMENTS x TOASTY_SEGMENT_MIB per shard (default here 48 x 64
# MiB, room for the 1 MiB phase's overwrites, which stay on disk for the 900 s
# GC grace), TOASTY_METADATA_MIB (default 64). Keys: 10,000 uniform for
# 4 KiB (inline in the metadata: at most 40 MiB of it, split over 2 groups),
# 1,000 uniform for 1 MiB (prefixes 4k/ and 1m/).
#
# Environment: TOASTY_BIN (default target/release, built with `cargo build
# --release --workspace` if missing), TOASTY_CLUSTER_DIR (default
# data/perf-memory, wiped at start and end; KEEP=1 keeps it),
# TOASTY_BASE_PORT/TOASTY_METRICS_PORT/TOASTY_S3_PORT (default
# 14000/14700/14900), TOASTY_BIN_COMMIT (recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-20}
out=${2:-}

export TOASTY_CLUSTER_DIR=${TOASTY_CLUSTER_DIR:-$root/data/perf-memory}
export TOASTY_BASE_PORT=${TOASTY_BASE_PORT:-14000}
export TOASTY_METRICS_PORT=${TOASTY_METRICS_PORT:-14700}
export TOASTY_S3_PORT=${TOASTY_S3_PORT:-14900}
export TOASTY_CHUNK_SEGMENTS=${TOASTY_CHUNK_SEGMENTS:-48}
export TOASTY_SEGMENT_MIB=${TOASTY_SEGMENT_MIB:-64}
export TOASTY_METADATA_MIB=${TOASTY_METADATA_MIB:-64}
# shellcheck source=perf/runtime-lib.sh
. "$root/perf/runtime-lib.sh"
rt_binaries
dir=$TOASTY_CLUSTER_DIR
cluster=scripts/cluster.sh
endpoint=http://127.0.0.1:$TOASTY_S3_PORT

sampler=
cleanup() {
    if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    "$cluster" stop >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT
log() { echo "memory: $*" >&2; }

"$cluster" wipe >/dev/null 2>&1 || true
mkdir -p "$dir"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
psi_start=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)
log "starting a fresh cluster in $dir ($TOASTY_CHUNK_SEGMENTS x $TOASTY_SEGMENT_MIB MiB chunk segments per shard)"
"$cluster" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$dir/credentials"
rt_memory_init

# Lines "PHASE-START|PHASE-END unix_ms node VmRSS VmHWM" (kB), and a sampler
# writing "sample unix_ms node VmRSS VmHWM" every 0.25 s.
(
    while :; do
        i=0
        for pid in $pids; do
            echo "sample $(date +%s%3N) $i $(kb VmRSS "$pid") $(kb VmHWM "$pid")"
            i=$((i + 1))
        done
        sleep 0.25
    done >>"$samples"
) &
sampler=$!

idle() { # PHASE SECONDS
    reset_peak
    mark "start-$1"
    sleep "$2"
    mark "end-$1"
}

loadgen() { # PHASE ARGS...
    local phase=$1
    shift
    reset_peak
    mark "start-$phase"
    "$TOASTY_BIN/toasty-loadgen" --endpoint "$endpoint" --access-key "$TOASTY_ACCESS_KEY" \
        --secret-key "$TOASTY_SECRET_KEY" --bucket memory --create-bucket --no-progress \
        --mix put=100 --key-dist uniform --warmup 2 --duration "$seconds" \
        --json "$dir/$phase.json" "$@" >"$dir/$phase.out" 2>&1 || { cat "$dir/$phase.out" >&2; exit 1; }
    mark "end-$phase"
    echo "toasty-loadgen --endpoint $endpoint --access-key \$K --secret-key \$S --bucket memory --create-bucket --no-progress --mix put=100 --key-dist uniform --warmup 2 --duration $seconds --json $phase.json $*" >"$dir/$phase.cmd"
}

log "idle"
sleep 5
idle idle 10
log "4 KiB PUT c64"
loadgen put4k --size 4KiB -c 64 --keys 10000 --key-prefix 4k/
idle idle2 10
log "1 MiB PUT c16"
loadgen put1m --size 1MiB -c 16 --keys 1000 --key-prefix 1m/
idle idle3 10
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
status=$("$cluster" status 2>&1 | sed -n '/^node/,$p')
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
psi_end=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)

PSI_START=$psi_start PSI_END=$psi_end python3 - "$dir" "$samples" "$bin_commit" "$TOASTY_BIN" "$load_start" "$load_end" "$(git rev-parse HEAD)" \
    "$*" "$status" >"${out:-/dev/stdout}" <<'PY'
import json, os, sys, datetime
dir_, samples, bin_commit, bin_dir, load_start, load_end, script_commit, args, status = sys.argv[1:]
marks, series = {}, []
for line in open(samples):
    w = line.split()
    if len(w) != 5 or not w[3].isdigit() or not w[4].isdigit():
        continue
    kind, t, node, rss, hwm = w[0], int(w[1]), int(w[2]), int(w[3]), int(w[4])
    if kind == "sample":
        series.append((t, node, rss, hwm))
    else:
        marks[(kind, node)] = (t, rss, hwm)
mib = lambda kb: round(kb / 1024, 1)
phases = []
for name in ["idle", "put4k", "idle2", "put1m", "idle3"]:
    p = {"phase": name, "nodes": []}
    for node in range(3):
        (t0, rss0, _), (t1, rss1, hwm1) = marks[(f"start-{name}", node)], marks[(f"end-{name}", node)]
        inside = [s for s in series if s[1] == node and t0 <= s[0] <= t1]
        p["nodes"].append({
            "node": node,
            "vmrss_mib_start": mib(rss0), "vmrss_mib_end": mib(rss1),
            "vmrss_mib_max_sampled": mib(max([s[2] for s in inside] + [rss0, rss1])),
            "vmhwm_mib": mib(hwm1),
            "samples": len(inside),
            "vmrss_mib_every_2s": [mib(s[2]) for s in inside[::8]],
        })
    p["seconds"] = round((marks[(f"end-{name}", 0)][0] - marks[(f"start-{name}", 0)][0]) / 1000, 1)
    try:
        lg = json.load(open(f"{dir_}/{name}.json"))
        t = lg["total"]
        p["command"] = open(f"{dir_}/{name}.cmd").read().strip()
        p["loadgen"] = {
            "ops_ok": t["ops_ok"], "ops_error": t["ops_error"], "ops_per_s": t["ops_per_s"],
            "mib_per_s": t["mib_per_s"], "latency_us": t["latency_us"],
            "errors_by_kind": t.get("errors_by_kind"), "errors_by_status": t.get("errors_by_status"),
            "measured_s": lg["measured_s"], "client_cpu": lg.get("client_cpu"),
        }
    except FileNotFoundError:
        pass
    phases.append(p)
peak = max(n["vmhwm_mib"] for p in phases for n in p["nodes"])
result = {
    "benchmark": "memory",
    "target": "per-node RSS at idle and under load (4 KiB PUT c64, 1 MiB PUT c16 through S3), with the configuration that bounds it",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "binary_commit": bin_commit, "binaries": bin_dir, "script_commit": script_commit,
    "command": "perf/memory.sh " + args,
    "cluster": "3 nodes x 2 shards on loopback (scripts/cluster.sh), S3 on one shared port (SO_REUSEPORT)",
    "server_config": {
        "chunk_segments": int(__import__("os").environ["TOASTY_CHUNK_SEGMENTS"]),
        "segment_mib": int(__import__("os").environ["TOASTY_SEGMENT_MIB"]),
        "metadata_mib": int(__import__("os").environ["TOASTY_METADATA_MIB"]),
        "wal_slots": 1024, "io_memory_bytes": 1048576,
        "per_shard_bounds_compiled_in": {
            "s3_connections_max": 4096, "s3_put_bytes_in_flight_max_mib": 256, "s3_get_chunks_ahead": 3,
            "chunk_service_write_queue_bytes_max_mib": 64, "chunkstore_bytes_pending_max_mib": 32,
            "wal_ring_mirror_max_mib": "wal_slots x 64 KiB = 64",
        },
    },
    "loadavg_start": load_start, "loadavg_end": load_end,
    "pressure_start": os.environ.get("PSI_START"), "pressure_end": os.environ.get("PSI_END"),
    "peak_vmhwm_mib_any_node_any_phase": peak,
    "phases": phases,
    "status_at_end": status,
}
print(json.dumps(result, indent=1))
PY
