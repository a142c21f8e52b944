# shellcheck shell=bash
# Shared by perf/matrix.sh, perf/flamegraph.sh and perf/cpu-per-request.sh:
# binaries, a fresh local 3-node cluster (through scripts/cluster.sh), process
# CPU from /proc, machine facts. Source it; it defines functions and settings
# and starts nothing by itself.
#
# Environment (defaults in brackets):
#   TOASTY_BIN            directory with toasty-server, toasty-client, toasty-loadgen
#                         [$repo/target/release, built with `cargo build --release --workspace` if missing]
#   TOASTY_COMMIT         the commit the binaries were built from [git HEAD of this checkout]
#   PERF_CLUSTER_DIR      parent of the clusters these scripts create and delete [$repo/data/perf-cluster]
#   TOASTY_BASE_PORT      replica ports (node i shard k: BASE + 100 i + k)   [13000]
#   TOASTY_METRICS_PORT   node i serves /metrics on PORT + i                  [13700]
#   TOASTY_S3_PORT        S3 port shared by all nodes (SO_REUSEPORT)          [13900]
#   PERF_CHUNK_MIB_PER_NODE  chunk store per node, split over its shards      [6144]
#   PERF_GC_GRACE_SECONDS unreferenced chunks collected after this long       [15]
# The ports default away from scripts/run.sh's 3000/4000/7100 so a developer
# cluster and a benchmark cluster can coexist.

perf_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TOASTY_BIN:-$perf_root/target/release}
cluster_parent=${PERF_CLUSTER_DIR:-$perf_root/data/perf-cluster}
base_port=${TOASTY_BASE_PORT:-13000}
metrics_port=${TOASTY_METRICS_PORT:-13700}
s3_port=${TOASTY_S3_PORT:-13900}
chunk_mib_per_node=${PERF_CHUNK_MIB_PER_NODE:-6144}
gc_grace_seconds=${PERF_GC_GRACE_SECONDS:-15}
segment_mib=64
nodes=3
cluster_dir=""   # set by cluster_start, emptied by cluster_stop
cluster_cores=1
cluster_segments=0
# What run_cell measures against (cluster_start points it at the new cluster).
lg_endpoint="http://127.0.0.1:$s3_port"
lg_region=us-east-1
lg_access=""
lg_secret=""
lg_bucket=bench
server_pids=()
warmup_s=2
duration_s=8

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

ensure_binaries() {
    local missing=0 b
    for b in toasty-server toasty-client toasty-loadgen; do
        [ -x "$bin/$b" ] || missing=1
    done
    if [ "$missing" = 1 ]; then
        [ -z "${TOASTY_BIN:-}" ] || die "TOASTY_BIN=$TOASTY_BIN lacks toasty-server, toasty-client or toasty-loadgen"
        log "building the release binaries (cargo build --release --workspace)"
        (cd "$perf_root" && cargo build --release --workspace)
    fi
}

binaries_commit() {
    if [ -n "${TOASTY_COMMIT:-}" ]; then
        echo "$TOASTY_COMMIT"
    else
        git -C "$perf_root" rev-parse --short HEAD
    fi
}

# The apt package that provides a missing tool (fio, iperf3), installed once.
ensure_tool() { # tool [package]
    local tool=$1 package=${2:-$1}
    command -v "$tool" >/dev/null && return 0
    log "installing $package (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$package" >/dev/null
}

cluster_sh() { # args...: scripts/cluster.sh with this file's settings
    TOASTY_CLUSTER_DIR=$cluster_dir TOASTY_BIN=$bin TOASTY_CORES=$cluster_cores \
        TOASTY_BASE_PORT=$base_port TOASTY_METRICS_PORT=$metrics_port TOASTY_S3_PORT=$s3_port \
        TOASTY_CHUNK_SEGMENTS=$cluster_segments TOASTY_SEGMENT_MIB=$segment_mib \
        TOASTY_SERVER_ARGS="--gc-grace-seconds $gc_grace_seconds --gc-interval-seconds 1 ${PERF_SERVER_ARGS:-}" \
        "$perf_root/scripts/cluster.sh" "$@"
}

# Fails if anything already listens on our ports: a leftover cluster would
# otherwise take a share of the SO_REUSEPORT connections. Waits up to 10 s
# first: a matrix run once died here between two clusters, with the nodes
# of the first already reported stopped (perf/matrix.md, the run at
# b689799). A likely cause, not confirmed: the kernel tears a process's
# io_uring down after the process exits, and an accept still in flight
# keeps the listener open until then.
check_ports_free() {
    local port tries
    for port in "$s3_port" "$metrics_port" $((metrics_port + 1)) $((metrics_port + 2)) "$base_port"; do
        tries=0
        while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            tries=$((tries + 1))
            [ "$tries" -le 100 ] || die "something already listens on 127.0.0.1:$port (a leftover cluster?)"
            sleep 0.1
        done
    done
}

# A fresh cluster (its directory wiped first) with CORES shards per node.
# The chunk store per node is fixed (PERF_CHUNK_MIB_PER_NODE) whatever the
# cores, and overwritten chunks are collected after PERF_GC_GRACE_SECONDS
# instead of the default 900 s: a closed-loop PUT run overwrites its keys
# at hundreds of MiB/s, and with the default grace the store fills in
# seconds (HTTP 503 "the cluster's disks are full").
cluster_start() { # name cores
    cluster_dir="$cluster_parent/$1"
    cluster_cores=$2
    cluster_segments=$((chunk_mib_per_node / segment_mib / cluster_cores))
    check_ports_free
    rm -rf "$cluster_dir"
    mkdir -p "$cluster_dir"
    log "starting a fresh cluster in $cluster_dir: 3 nodes x $cluster_cores cores," \
        "$cluster_segments x $segment_mib MiB chunk segments per shard"
    if ! cluster_sh start >"$cluster_dir/start.log" 2>&1; then
        cat "$cluster_dir/start.log" >&2
        die "the cluster did not start (logs in $cluster_dir)"
    fi
    # shellcheck disable=SC1091
    . "$cluster_dir/credentials"
    lg_endpoint="http://127.0.0.1:$s3_port"
    lg_region=us-east-1
    lg_access=$TOASTY_ACCESS_KEY
    lg_secret=$TOASTY_SECRET_KEY
    lg_bucket=bench
    server_pids=()
    local i
    for i in $(seq 0 $((nodes - 1))); do server_pids+=("$(node_pid "$i")"); done
}

# Stops the nodes (SIGTERM, SIGKILL after 20 s, by the pids in the cluster
# directory only) and deletes the data; keeps the node logs in KEEP_LOGS_DIR
# if given. Safe to call twice.
cluster_stop() { # [keep_logs_dir]
    [ -n "$cluster_dir" ] || return 0
    cluster_sh stop >/dev/null 2>&1 || true
    if [ -n "${1:-}" ]; then
        mkdir -p "$1"
        local i
        for i in $(seq 0 $((nodes - 1))); do
            [ -f "$cluster_dir/node-$i.log" ] && cp "$cluster_dir/node-$i.log" "$1/"
        done
    fi
    rm -rf "$cluster_dir"
    cluster_dir=""
}

node_pid() { # node
    cat "$cluster_dir/node-$1.pid"
}

# utime + stime of a process (all its threads, live and exited), in clock ticks.
cpu_ticks() { # pid
    # Field 2 (comm) may contain spaces; cut at the last ')'.
    local rest
    rest=$(sed 's/.*) //' "/proc/$1/stat")
    # After comm: state is field 3, utime 14, stime 15 -> positions 12, 13 here.
    awk '{print $12 + $13}' <<<"$rest"
}

clock_ticks_per_second() { getconf CLK_TCK; }

now_ns() { date +%s%N; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Facts about this machine as JSON on stdout.
machine_facts_json() { # extra_json_object_or_empty
    local fs_dir=${1:-$cluster_parent}
    mkdir -p "$fs_dir"
    python3 - "$fs_dir" "$(binaries_commit)" "$(git -C "$perf_root" rev-parse --short HEAD)" \
        "$bin" "$(loadavg)" "$(uname -srm)" "$(nproc)" <<'PY'
import json, os, subprocess, sys, datetime
fs_dir, commit, scripts_commit, bin_dir, load, uname, nproc = sys.argv[1:8]
def first(path, key):
    try:
        for line in open(path):
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
df = subprocess.run(["df", "-T", "-B1M", fs_dir], capture_output=True, text=True).stdout.splitlines()
fields = df[-1].split() if df else []
print(json.dumps({
    "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "binaries_commit": commit,
    "scripts_commit": scripts_commit,
    "binaries_dir": bin_dir,
    "load_average_at_start": load,
    "kernel": uname,
    "cpus_online": int(nproc),
    "cpu_model": first("/proc/cpuinfo", "model name"),
    "memory_total": first("/proc/meminfo", "MemTotal"),
    "data_filesystem": {"dir": fs_dir, "device": fields[0] if fields else None,
                        "type": fields[1] if len(fields) > 1 else None,
                        "free_mib": int(fields[4]) if len(fields) > 4 else None},
    "note": "client (toasty-loadgen) and all three server nodes share these CPUs and this disk",
}, indent=1))
PY
}

# --- one measured loadgen run ------------------------------------------------
#
# Target settings, set by the caller before run_cell:
#   lg_endpoint lg_region lg_access lg_secret lg_bucket
#   server_pids (array: the server processes whose CPU is charged to the run)
#   warmup_s duration_s
#
# run_cell OUT_JSON LOADGEN_ARGS...
#
# Runs toasty-loadgen twice with the same workload flags: first for
# warmup_s seconds (nothing recorded), then the measured run (--warmup 0,
# --duration duration_s, --json). Warming up in a separate process lets the
# servers' CPU be read from /proc/<pid>/stat right before and right after
# the measured process, so the window holds the measured requests and only
# a connect and a ListObjectsV2 more. Writes OUT_JSON (schema
# toasty-perf-cell/1: the command, load average, server CPU, the loadgen
# JSON as `loadgen`) and the loadgen stderr beside it (.log). Returns 0
# even when the run failed (the failure is in the JSON: exit_status,
# loadgen null).
run_cell() {
    local out=$1; shift
    local log_file="${out%.json}.log" raw="${out%.json}.loadgen.json"
    local -a base=("$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region "$lg_region"
        --access-key "$lg_access" --secret-key "$lg_secret" --bucket "$lg_bucket"
        --timeout 60 --no-progress)
    : >"$log_file"
    if [ "$(awk "BEGIN{print ($warmup_s > 0)}")" = 1 ]; then
        echo "## warm-up: --duration $warmup_s" >>"$log_file"
        "${base[@]}" "$@" --duration "$warmup_s" >/dev/null 2>>"$log_file" || true
    fi
    local load_before t0 t1 rc=0 pid
    load_before=$(loadavg)
    local -a before=() after=()
    for pid in "${server_pids[@]}"; do before+=("$(cpu_ticks "$pid" 2>/dev/null || echo -1)"); done
    t0=$(now_ns)
    echo "## measured" >>"$log_file"
    rm -f "$raw"
    "${base[@]}" "$@" --duration "$duration_s" --json "$raw" >/dev/null 2>>"$log_file" || rc=$?
    t1=$(now_ns)
    for pid in "${server_pids[@]}"; do after+=("$(cpu_ticks "$pid" 2>/dev/null || echo -1)"); done
    # The command as run, secret replaced by a variable name.
    local command
    command=$(printf '%q ' "${base[@]}" "$@" --duration "$duration_s" --json "$(basename "$raw")")
    command=${command//"$lg_secret"/\$SECRET_KEY}
    command=${command//"$lg_access"/\$ACCESS_KEY}
    python3 - "$out" "$raw" "$rc" "$load_before" "$t0" "$t1" "$(clock_ticks_per_second)" \
        "${before[*]}" "${after[*]}" "${server_pids[*]}" "$command" "$warmup_s" "$log_file" <<'PY'
import json, os, sys
(out, raw, rc, load, t0, t1, hz, before, after, pids, command, warmup, log_file) = sys.argv[1:14]
hz = int(hz)
window_s = (int(t1) - int(t0)) / 1e9
lg = None
if os.path.exists(raw):
    with open(raw) as f:
        lg = json.load(f)
requests = lg["requests"] if lg else 0
nodes = []
for i, (p, b, a) in enumerate(zip(pids.split(), before.split(), after.split())):
    b, a = int(b), int(a)
    alive = b >= 0 and a >= 0
    cpu_s = (a - b) / hz if alive else None
    nodes.append({"index": i, "pid": int(p), "alive": alive, "cpu_s": cpu_s,
                  "cores_used": round(cpu_s / window_s, 3) if alive else None,
                  "us_per_request": round(cpu_s * 1e6 / requests, 1) if alive and requests else None})
servers_ok = all(n["alive"] for n in nodes)
sum_cpu = sum(n["cpu_s"] for n in nodes) if servers_ok else None
with open(log_file) as f:
    errors = [l.rstrip("\n") for l in f if l.startswith("error") or "failed" in l][:20]
cell = {
    "schema": "toasty-perf-cell/1",
    "command": command.strip(),
    "warmup_s": float(warmup),
    "exit_status": int(rc),
    "load_average_before": load,
    "window_s": round(window_s, 3),
    "server_cpu": {"clock_ticks_per_s": hz, "nodes": nodes,
                   "sum_cpu_s": sum_cpu,
                   "sum_cores_used": round(sum_cpu / window_s, 3) if sum_cpu is not None else None,
                   "sum_us_per_request": round(sum_cpu * 1e6 / requests, 1) if sum_cpu is not None and requests else None},
    "stderr_errors": errors,
    "loadgen": lg,
}
with open(out, "w") as f:
    json.dump(cell, f, indent=1)
PY
    rm -f "$raw"
    return 0
}

# One line about a finished cell, for the progress log.
cell_summary() { # cell_json
    python3 - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
lg = c["loadgen"]
if lg is None:
    print(f"FAILED (exit {c['exit_status']}): {'; '.join(c['stderr_errors'][:2])}")
else:
    t = lg["total"]; l = t["latency_us"]; s = c["server_cpu"]["sum_us_per_request"]
    print(f"{t['ops_per_s']:>10.1f} ops/s {t['mib_per_s']:>8.1f} MiB/s  p50 {l['p50']/1000:.3f} ms  "
          f"p99 {l['p99']/1000:.3f} ms  errors {t['ops_error']}  server CPU {s} us/req  "
          f"client {lg['client_cpu']['us_per_request']} us/req")
PY
}
