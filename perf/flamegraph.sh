#!/usr/bin/env bash
# A CPU flamegraph of one toasty node while toasty-loadgen drives the cluster.
#
# Usage: perf/flamegraph.sh [--node N] [--cores C] [--seconds S] [--warmup S]
#                           [--name NAME] [--out DIR] [-- LOADGEN_WORKLOAD_FLAGS...]
#   --node N      the node to record (0..2; its pid from the cluster directory) [0]
#   --cores C     shards per node of the fresh cluster [2]
#   --seconds S   recording time [10]; --warmup S: load before recording [2]
#   --name NAME   output name [derived from the workload, e.g. put-4KiB-c64-cores2-node0]
#   --out DIR     [perf/results/<date>/flamegraph-<commit>]
#   workload      toasty-loadgen flags [--mix put=100 --size 4KiB -c 64]; a workload
#                 with GETs gets its keys written first (--prefill)
#
# Starts a fresh 3-node cluster (perf/lib.sh), runs the workload for
# warmup + seconds + 2 s, and records the node with
#   perf record -F 999 -e <cycles, or cpu-clock where the VM has no hardware
#               counters> --call-graph dwarf -p PID -- sleep SECONDS
# (DWARF unwinding because release builds have no frame pointers, so `-g`'s
# frame-pointer stacks stop after one frame; FLAMEGRAPH_CALL_GRAPH=fp gives
# plain -g). Renders NAME.svg with inferno (`cargo install inferno --locked`
# if missing) and writes NAME.top.txt: the 25 frames with the most self
# time, and the samples per thread. Also NAME.folded.gz (the collapsed
# stacks) and NAME.loadgen.json. perf.data is deleted.
set -euo pipefail
# shellcheck source=perf/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$perf_root"

node=0
cores=2
seconds=10
warmup_s=2
name=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --node) node=${2:?}; shift ;;
    --cores) cores=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --warmup) warmup_s=${2:?}; shift ;;
    --name) name=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
workload=("$@")
[ ${#workload[@]} -gt 0 ] || workload=(--mix put=100 --size 4KiB -c 64)
case "$node" in 0 | 1 | 2) ;; *) die "--node must be 0, 1 or 2" ;; esac

flag_value() { # flag default: the value following FLAG in the workload
    local i
    for ((i = 0; i < ${#workload[@]} - 1; i++)); do
        if [ "${workload[$i]}" = "$1" ]; then echo "${workload[$((i + 1))]}"; return; fi
    done
    echo "$2"
}
mix=$(flag_value --mix "put=30,get=65,list=5")
size=$(flag_value --size 4KiB)
concurrency=$(flag_value -c "$(flag_value --concurrency 16)")
if [ -z "$name" ]; then
    name="$(sed 's/=100$//; s/[=,]/-/g' <<<"$mix")-$size-c$concurrency-cores$cores-node$node"
fi

ensure_binaries
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
export PATH="$PATH:$HOME/.cargo/bin"
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    log "installing inferno (cargo install inferno --locked, nice'd)"
    nice -n 19 cargo install inferno --locked
fi
commit=$(binaries_commit)
out=${out:-$perf_root/perf/results/$(date +%Y-%m-%d)/flamegraph-$commit}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/toasty-flamegraph.XXXXXX")
loadgen_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$loadgen_pid" ]; then kill "$loadgen_pid" 2>/dev/null || true; wait "$loadgen_pid" 2>/dev/null || true; fi
    cluster_stop "" || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if perf stat -e cycles true 2>&1 | grep -q 'not supported'; then
    event=cpu-clock
else
    event=cycles
fi
case "${FLAMEGRAPH_CALL_GRAPH:-dwarf}" in
fp) call_graph=(-g) ;;
dwarf) call_graph=(--call-graph "dwarf,16384") ;;
*) die "FLAMEGRAPH_CALL_GRAPH must be dwarf or fp" ;;
esac

load_start=$(loadavg)
cluster_start "flamegraph-cores$cores" "$cores"
pid=$(node_pid "$node")
lg=("$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region "$lg_region" --access-key "$lg_access"
    --secret-key "$lg_secret" --bucket "$lg_bucket" --timeout 60 --no-progress)
"${lg[@]}" --create-bucket --mix put=100 --size 4KiB -c 1 --requests 1 >/dev/null 2>&1 ||
    die "could not create the bucket"
if [[ $mix == *get* ]]; then
    log "prefill"
    "${lg[@]}" "${workload[@]}" --prefill --requests 64 >/dev/null 2>"$work/prefill.log" ||
        { cat "$work/prefill.log" >&2; die "prefill failed"; }
fi
total_s=$(awk "BEGIN{print $warmup_s + $seconds + 2}")
log "load: ${workload[*]} for $total_s s; recording node $node (pid $pid) for $seconds s after $warmup_s s ($event)"
"${lg[@]}" "${workload[@]}" --warmup "$warmup_s" --duration "$((${seconds%.*} + 2))" \
    --json "$out/$name.loadgen.json" >"$work/loadgen.txt" 2>"$work/loadgen.err" &
loadgen_pid=$!
sleep "$warmup_s"
load_record=$(loadavg)
# The node's role per shard: a group's primary does more (prepares,
# linearizable reads), so the profile depends on it.
roles=$(curl -s --max-time 2 "http://127.0.0.1:$((metrics_port + node))/status" | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
    print(", ".join("shard {shard} (group {group}): {role}".format(**x) for x in s["shards"]))
except (ValueError, KeyError):
    print("unknown (no /status)")
' || echo unknown)
perf record -F 999 -e "$event" "${call_graph[@]}" -p "$pid" -o "$work/perf.data" -- sleep "$seconds" \
    2>"$work/perf-record.log" >/dev/null
wait "$loadgen_pid" || log "loadgen exited with status $? (see below)"
loadgen_pid=""
cluster_stop ""
log "perf script | inferno-collapse-perf"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
inferno-flamegraph --title "toasty $commit node $node: ${workload[*]} (--cores $cores, $event, $seconds s)" \
    <"$work/folded" >"$out/$name.svg"
gzip -9 -c "$work/folded" >"$out/$name.folded.gz"

python3 - "$work/folded" "$out/$name.top.txt" "$commit" "$node" "$cores" "$event" "$seconds" \
    "${workload[*]}" "$load_start" "$load_record" "$work/loadgen.txt" "$roles" <<'PY'
import collections, sys
folded, out, commit, node, cores, event, seconds, workload, load_start, load_record, lg_txt, roles = sys.argv[1:13]
self_time = collections.Counter()
inclusive = collections.Counter()
threads = collections.Counter()
total = 0
for line in open(folded):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack:
        continue
    n = int(count)
    frames = stack.split(";")
    total += n
    self_time[frames[-1]] += n
    for f in set(frames[1:]):
        inclusive[f] += n
    # The first frame is the thread name; group "shard-0", "iou-wrk-123", ...
    t = frames[0]
    threads[t.rsplit("-", 1)[0] + "-*" if t.startswith("iou-wrk") else t] += n
# Where the time goes, by area (inclusive; a sample counts once per area
# whose pattern matches any of its frames, so the areas overlap).
AREAS = [
    ("S3 front end (toasty::shard::s3)", ["toasty::shard::s3"]),
    ("HTTP parsing, SigV4, checksums (toasty::http)", ["toasty::http"]),
    ("node transport (toasty::shard::transport)", ["toasty::shard::transport"]),
    ("object client (toasty::client, client_driver)", ["toasty::client", "toasty::shard::client_driver"]),
    ("VSR replica (toasty::vsr)", ["toasty::vsr"]),
    ("chunk store (toasty::chunkstore, shard::chunks)", ["toasty::chunkstore", "toasty::shard::chunks"]),
    ("WAL driver (shard::wal, shard::storage)", ["toasty::shard::wal", "toasty::shard::storage"]),
    ("MD5 / SHA-256 / HMAC / CRC / xxh3", ["md5", "Md5", "sha2", "Sha256", "hmac", "Hmac", "crc32", "crc_fast", "xxh3"]),
    ("allocator (malloc, free)", ["malloc", "_int_free", "__GI___libc_free", "cfree", "tcache_", "realloc", "unlink_chunk"]),
    ("memcpy / memmove", ["memcpy", "memmove"]),
    ("kernel: TCP send (tcp_sendmsg)", ["tcp_sendmsg"]),
    ("kernel: TCP receive (tcp_recvmsg)", ["tcp_recvmsg"]),
    ("kernel: softirq (loopback receive)", ["handle_softirqs", "net_rx_action"]),
    ("kernel: io_uring_enter", ["io_uring_enter"]),
    ("kernel: context switch (__schedule, finish_task_switch)", ["__schedule", "finish_task_switch"]),
    ("kernel: disk (ext4, block, virtio notify)", ["ext4_", "blkdev_", "iowrite16", "virtqueue_"]),
]
area_time = collections.Counter()
for line in open(folded):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack:
        continue
    for name, patterns in AREAS:
        if any(p in stack for p in patterns):
            area_time[name] += int(count)
# inferno weighs each sample by its period: nanoseconds for cpu-clock.
unit = "ms" if event == "cpu-clock" else "Mcycles"
def row(n, name):
    return f"  {100 * n / total:6.2f} %  {n / 1e6:>9.1f} {unit}  {name}"
lines = [f"toasty {commit}, node {node} ({roles}), --cores {cores}, workload: {workload}",
         f"perf record -F 999 -e {event}, {seconds} s: {total / 1e6:.1f} {unit} of CPU sampled "
         + (f"({total / 1e9 / float(seconds):.2f} cores); " if event == "cpu-clock" else "; ")
         + f"load average {load_start} at start, "
         f"{load_record} when recording began",
         "", "loadgen, measured window (after its warm-up):"]
lines += ["  " + l.rstrip() for l in open(lg_txt) if l.strip()]
lines += ["", "CPU per thread:"]
lines += [row(n, t) for t, n in threads.most_common()]
lines += ["", "by area (inclusive, overlapping):"]
lines += [row(area_time[name], name) for name, _ in AREAS]
lines += ["", "top 25 frames by self time:"]
lines += [row(n, f) for f, n in self_time.most_common(25)]
lines += ["", "top 25 frames by inclusive time (frames under 95 % of all samples; the roots are left out):"]
lines += [row(n, f) for f, n in [x for x in inclusive.most_common() if x[1] < 0.95 * total][:25]]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "wrote $out/$name.svg and $out/$name.top.txt"
