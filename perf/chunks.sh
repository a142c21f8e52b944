#!/usr/bin/env bash
# Chunk store benchmarks for one shard on this machine's disk, next to fio in
# the same run:
#   - fio: 1 MiB O_DIRECT sequential write and read at queue depth 8
#     (io_uring), the write again with an fdatasync every 4 MiB, and at
#     queue depth 16; 4 KiB O_DIRECT write + fdatasync per write with 1, 16
#     and 64 jobs;
#   - toasty: `toasty-chunks bench` on a fresh chunk file (production config,
#     256 MiB segments, O_DIRECT, io_uring, group commit): write1m and read1m
#     with 8 writers (each one 1 MiB chunk in flight, like QD8), write1m
#     with 16 writers (next to fio QD16), append4k
#     (one-sector records, each writer waiting for its append to be durable)
#     with 1, 16 and 64 writers.
# Usage: perf/chunks.sh [SECONDS_PER_JOB]   (default 10)
# Writes perf/results/<date>/chunks.json (chunks-2.json, ... if that
# exists) and prints a table. A toasty run that fills its store (write1m at
# ~2 GiB/s fills its 32 x 256 MiB file in ~4 s) stops early and reports the
# seconds it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
if ! command -v fio >/dev/null; then
    echo "installing fio (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y fio >/dev/null
fi
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin toasty-chunks >/dev/null 2>&1
date=$(date +%F)
out="perf/results/$date"
mkdir -p "$out"
json="$out/chunks.json"
suffix=2
while [ -e "$json" ]; do json="$out/chunks-$suffix.json"; suffix=$((suffix + 1)); done
# Under the target directory: ext4 here (O_DIRECT), never tmpfs.
work="$target/perf-chunks"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
commit=$(git rev-parse --short HEAD)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

fio_json() { # name, then fio arguments
    local name=$1; shift
    echo "fio $name" >&2
    fio --name="$name" --directory="$work" --output-format=json "$@" > "$work/fio-$name.json"
    rm -f "$work"/"$name".*
}
fio_json seqwrite1m --bs=1M --rw=write --ioengine=io_uring --iodepth=8 --direct=1 \
    --size=2G --runtime="$seconds" --time_based
# The same with an fdatasync every 4 MiB (toasty's batch_bytes_max): the
# durable counterpart of toasty's write1m; fio drains its queue before each.
fio_json seqwrite1m-sync4m --bs=1M --rw=write --ioengine=io_uring --iodepth=8 --direct=1 \
    --fdatasync=4 --size=2G --runtime="$seconds" --time_based
fio_json seqwrite1m-qd16 --bs=1M --rw=write --ioengine=io_uring --iodepth=16 --direct=1 \
    --size=2G --runtime="$seconds" --time_based
fio_json seqread1m --bs=1M --rw=read --ioengine=io_uring --iodepth=8 --direct=1 \
    --size=2G --runtime="$seconds" --time_based
fio_json fsync4k-1 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=64M --numjobs=1 --runtime="$seconds" --time_based
fio_json fsync4k-16 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=16M --numjobs=16 --group_reporting --runtime="$seconds" --time_based
fio_json fsync4k-64 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=4M --numjobs=64 --group_reporting --runtime="$seconds" --time_based

toasty() { # name, mode, writers, then more bench arguments
    local name=$1 mode=$2 writers=$3; shift 3
    echo "toasty $name" >&2
    "$target/release/toasty-chunks" bench --data "$work/toasty" --mode "$mode" --writers "$writers" \
        --seconds "$seconds" "$@" 2>"$work/toasty-$name.log" | tail -n 1 > "$work/toasty-$name.json"
}
# 32 segments (8 GiB): at ~2 GiB/s the default 4 GiB fills in under 2 s.
toasty write1m-8 write1m 8 --segments 32
toasty write1m-16 write1m 16 --segments 32
toasty read1m-8 read1m 8
toasty append4k-1 append4k 1
toasty append4k-16 append4k 16
toasty append4k-64 append4k 64
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$work" "$json" "$commit" "$load_start" "$load_end" "$seconds" <<'PY'
import json, sys
work, path, commit, load_start, load_end, seconds = sys.argv[1:7]
def fio(name):
    job = json.load(open(f"{work}/fio-{name}.json"))["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] else job["read"]
    lat = side.get("clat_ns", {}).get("percentile", {})
    sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    return {"iops": round(side["iops"]), "MiB_per_s": round(side["bw_bytes"] / 2**20, 1),
            "clat_p50_us": round(lat.get("50.000000", 0) / 1000, 1),
            "clat_p99_us": round(lat.get("99.000000", 0) / 1000, 1),
            "fdatasync_p99_us": round(sync.get("99.000000", 0) / 1000, 1)}
fio_names = ["seqwrite1m", "seqwrite1m-sync4m", "seqwrite1m-qd16", "seqread1m", "fsync4k-1", "fsync4k-16", "fsync4k-64"]
toasty_names = ["write1m-8", "write1m-16", "read1m-8", "append4k-1", "append4k-16", "append4k-64"]
result = {"commit": commit, "load_start": load_start, "load_end": load_end,
          "seconds_per_job": float(seconds),
          "fio": {name: fio(name) for name in fio_names},
          "toasty": {name: json.load(open(f"{work}/toasty-{name}.json")) for name in toasty_names}}
json.dump(result, open(path, "w"), indent=1)
rows = [("1 MiB write, QD8 / 8 writers", "seqwrite1m", "write1m-8", "MiB/s"),
        ("  fio + fdatasync every 4 MiB", "seqwrite1m-sync4m", "write1m-8", "MiB/s"),
        ("1 MiB write, QD16 / 16 writers", "seqwrite1m-qd16", "write1m-16", "MiB/s"),
        ("1 MiB read, QD8 / 8 readers", "seqread1m", "read1m-8", "MiB/s"),
        ("4 KiB durable, 1 writer", "fsync4k-1", "append4k-1", "ops/s"),
        ("4 KiB durable, 16 writers", "fsync4k-16", "append4k-16", "ops/s"),
        ("4 KiB durable, 64 writers", "fsync4k-64", "append4k-64", "ops/s")]
print(f"{'line':<30} {'unit':>6} {'fio':>9} {'toasty':>9} {'ratio':>6} {'fio p99 us':>11} "
      f"{'toasty p99 us':>14} {'syncs':>7} {'KiB/sync':>9} {'secs':>5}")
for label, f, t, unit in rows:
    fr, tr = result["fio"][f], result["toasty"][t]
    if unit == "MiB/s":
        fv, tv = fr["MiB_per_s"], tr["mib_per_second"]
        fp99 = fr["clat_p99_us"]
    else:
        fv, tv = fr["iops"], tr["ops_per_second"]
        fp99 = round(fr["clat_p99_us"] + fr["fdatasync_p99_us"], 1)
    ratio = tv / fv if fv else float("nan")
    print(f"{label:<30} {unit:>6} {fv:>9} {tv:>9} {ratio:>6.2f} {fp99:>11} "
          f"{tr['latency_us']['p99']:>14} {tr['syncs']:>7} {tr['bytes_per_sync'] / 1024:>9.0f} "
          f"{tr['seconds']:>5.1f}")
for name in ["write1m-8", "write1m-16"]:
    t = result["toasty"][name]
    print(f"toasty {name}: mean queue depth at the device {t['write_depth_mean']}, "
          f"mean fdatasync {t['fdatasync_us_mean']} us, CPU {t['cpu_ms']} ms, "
          f"run-queue wait {t['runqueue_wait_ms']} ms over {t['seconds']} s")
print("fio p99 of the 4 KiB lines is write p99 + fdatasync p99; toasty p99 is append (or read) "
      "to its event.\nfio's first line never flushes the device cache; toasty's writes are durable "
      "(fdatasync per batch), like the second line.")
print(f"load average at start {load_start}, at end {load_end}; written to {path}")
PY
