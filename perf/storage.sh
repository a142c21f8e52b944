#!/usr/bin/env bash
# Storage benchmarks for one shard on this machine's disk, next to fio in the
# same run (issue "Storage engine", point 5):
#   - fio: 4 KiB O_DIRECT write + fdatasync per write with 1, 16 and 64
#     writers; 1 MiB O_DIRECT sequential write and read at queue depth 8;
#   - toasty: durable WAL writes through the replica file (one-replica VSR
#     group, O_DIRECT, io_uring) with 1, 16 and 64 clients, one put (one
#     WAL write) per request, under both --wal-sync modes: dsync (each
#     write O_DSYNC, the default) and fdatasync (group commit).
# Usage: perf/storage.sh [SECONDS_PER_FIO_JOB]   (default 10)
# Writes perf/results/<date>/storage.json and prints a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
if ! command -v fio >/dev/null; then
    echo "installing fio (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y fio >/dev/null
fi
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin toasty-crashtest >/dev/null 2>&1
date=$(date +%Y-%m-%d)
out="perf/results/$date"
mkdir -p "$out"
work="$target/perf-storage"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
commit=$(git rev-parse --short HEAD)
load=$(cut -d' ' -f1 /proc/loadavg)

fio_json() { # name, then fio arguments
    local name=$1; shift
    echo "fio $name" >&2
    fio --name="$name" --directory="$work" --output-format=json "$@" > "$work/fio-$name.json"
    rm -f "$work"/"$name".*
}
fio_json fsync4k-1 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=64M --numjobs=1 --runtime="$seconds" --time_based
fio_json fsync4k-16 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=16M --numjobs=16 --group_reporting --runtime="$seconds" --time_based
fio_json fsync4k-64 --bs=4k --rw=write --ioengine=psync --direct=1 --fdatasync=1 \
    --size=4M --numjobs=64 --group_reporting --runtime="$seconds" --time_based
fio_json seqwrite1m --bs=1M --rw=write --ioengine=io_uring --iodepth=8 --direct=1 \
    --size=2G --runtime="$seconds" --time_based
fio_json seqread1m --bs=1M --rw=read --ioengine=io_uring --iodepth=8 --direct=1 \
    --size=2G --runtime="$seconds" --time_based

for clients in 1 16 64; do
    for mode in dsync fdatasync; do
        echo "toasty WAL, $clients clients, --wal-sync $mode" >&2
        writes=$(( clients == 1 ? 5000 : 30000 ))
        rm -rf "$work/wal"
        "$target/release/toasty-crashtest" wal --data "$work/wal" --run 1 --clients "$clients" \
            --requests single --writes "$writes" --wal-sync "$mode" --report |
            tail -n 1 > "$work/wal-$mode-$clients.json"
    done
done

python3 - "$work" "$out/storage.json" "$commit" "$load" "$seconds" <<'PY'
import json, sys
work, path, commit, load, seconds = sys.argv[1:6]
def fio(name):
    job = json.load(open(f"{work}/fio-{name}.json"))["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] else job["read"]
    lat = side.get("clat_ns", {}).get("percentile", {})
    sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    return {"iops": round(side["iops"]), "MiB_per_s": round(side["bw_bytes"] / 2**20, 1),
            "write_p99_us": round(lat.get("99.000000", 0) / 1000, 1),
            "fdatasync_p99_us": round(sync.get("99.000000", 0) / 1000, 1)}
result = {"commit": commit, "load_at_start": load, "fio_seconds_per_job": int(seconds), "fio": {}, "toasty_wal": {}}
for name in ["fsync4k-1", "fsync4k-16", "fsync4k-64", "seqwrite1m", "seqread1m"]:
    result["fio"][name] = fio(name)
modes = ["dsync", "fdatasync"]
for mode in modes:
    result["toasty_wal"][mode] = {str(c): json.load(open(f"{work}/wal-{mode}-{c}.json")) for c in [1, 16, 64]}
json.dump(result, open(path, "w"), indent=1)
print(f"{'writers':>8} {'fio 4k+fdatasync/s':>20} " + " ".join(f"{'WAL writes/s ' + m:>22} {'p99 us':>8}" for m in modes))
for clients in [1, 16, 64]:
    f = result["fio"][f"fsync4k-{clients}"]
    cells = " ".join(f"{result['toasty_wal'][m][str(clients)]['writes_per_second']:>22} {result['toasty_wal'][m][str(clients)]['latency_us']['p99']:>8}" for m in modes)
    print(f"{clients:>8} {f['iops']:>20} {cells}")
print(f"fio 1 MiB O_DIRECT qd8: write {result['fio']['seqwrite1m']['MiB_per_s']} MiB/s, read {result['fio']['seqread1m']['MiB_per_s']} MiB/s")
print(f"written to {path}")
PY
