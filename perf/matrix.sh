#!/usr/bin/env bash
# The end-to-end benchmark matrix (issue 6, item 2): a fresh local 3-node
# cluster per --cores value, toasty-loadgen in closed loop against its S3
# port, every cell of
#     object size 4 KiB, 64 KiB, 1 MiB, 16 MiB
#   x PUT, GET, 70/30 GET/PUT mix
#   x concurrency 1, 16, 64
#   x --cores 1, --cores 2   (a fresh cluster per cores value and size)
# plus, in the same run, the machine's baselines (fio O_DIRECT 1 MiB
# sequential write and read at QD16 and 4 KiB write + fdatasync per write on
# the filesystem holding the cluster data; iperf3 over loopback) and, with
# --peers, Garage (3 nodes, replication 3, consistency_mode consistent; fsync
# off, Garage's default, and on) for the headline cells.
#
# Usage: perf/matrix.sh [--quick] [--duration S] [--warmup S] [--cores "1 2"] [--sizes L]
#                       [--ops L] [--concurrency L] [--peers | --no-peers] [--no-baselines] [--fio-seconds S] [--out DIR]
#   --quick        smoke subset: 4 KiB and 1 MiB, PUT and GET, c1, c16 and c64, --cores 2,
#                  3 s cells, Garage (if on) only for 4 KiB c64; a few minutes
#   --duration S   measured seconds per cell [6]; --warmup S: warm-up run per cell [1.5]
#   --sizes L, --ops L, --concurrency L   a subset, e.g. --sizes "4KiB" --ops "put get"
#   --peers        also measure Garage (default: on if `garage` is on PATH)
#   --no-toasty    skip the toasty cells (e.g. only the peers, later)
#   --append       add to an existing results directory instead of starting it afresh
#                  (its facts.json is kept; this run's facts go to facts-append-<time>.json)
# Environment: see perf/lib.sh (TOASTY_BIN, TOASTY_COMMIT, PERF_CLUSTER_DIR, ports).
#
# Writes perf/results/<date>/matrix-<commit>[-quick]/: one JSON per cell
# (cells/), the baselines (baselines/), facts.json (commit, machine, load),
# and through perf/matrix-report.py matrix.json (everything combined),
# summary.md and SVG charts. Each measured cell is its own toasty-loadgen
# process after a warm-up process with the same flags (perf/lib.sh
# run_cell), so the servers' CPU per request is read from /proc as well.
set -euo pipefail
# shellcheck source=perf/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$perf_root"
# 6 + 1.5 s per cell keeps a full run with the peers near 20 min on this
# 2-core box (the recorded run, 7 + 2 s at load 8-14, took 22 min).
duration_s=6
warmup_s=1.5

args_text="$*"
sizes_arg=""
ops_arg=""
concurrency_arg=""
quick=0
toasty=1
append=0
peers=auto
baselines=1
cores_list="1 2"
fio_seconds=8
iperf_seconds=5
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --duration) duration_s=${2:?--duration needs seconds}; shift ;;
    --warmup) warmup_s=${2:?--warmup needs seconds}; shift ;;
    --cores) cores_list=${2:?--cores needs a list like "1 2"}; shift ;;
    --sizes) sizes_arg=${2:?--sizes needs a list like "4KiB 1MiB"}; shift ;;
    --ops) ops_arg=${2:?--ops needs a list like "put get"}; shift ;;
    --concurrency) concurrency_arg=${2:?--concurrency needs a list like "1 64"}; shift ;;
    --peers) peers=1 ;;
    --no-peers) peers=0 ;;
    --no-baselines) baselines=0 ;;
    --no-toasty) toasty=0 ;;
    --append) append=1 ;;
    --fio-seconds) fio_seconds=${2:?--fio-seconds needs seconds}; shift ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

sizes="4KiB 64KiB 1MiB 16MiB"
ops="put get mix"
concurrencies="1 16 64"
# Headline cells for the peers: op size concurrency.
peer_cells="put:4KiB:1 put:4KiB:64 get:4KiB:64 get:4KiB:1 put:1MiB:16 get:1MiB:16"
suffix=""
if [ "$quick" = 1 ]; then
    sizes="4KiB 1MiB"
    ops="put get"
    concurrencies="1 16 64"
    [ "$cores_list" = "1 2" ] && cores_list="2"
    [ "$duration_s" = 6 ] && duration_s=3
    [ "$warmup_s" = 1.5 ] && warmup_s=1
    fio_seconds=3
    iperf_seconds=2
    peer_cells="put:4KiB:64 get:4KiB:64"
    suffix="-quick"
fi
sizes=${sizes_arg:-$sizes}
ops=${ops_arg:-$ops}
concurrencies=${concurrency_arg:-$concurrencies}
if [ "$peers" = auto ]; then
    if command -v garage >/dev/null; then peers=1; else peers=0; fi
fi
[ "$peers" = 0 ] || command -v garage >/dev/null || die "--peers: garage is not on PATH"

ensure_binaries
commit=$(binaries_commit)
date_dir=$(date +%Y-%m-%d)
out=${out:-$perf_root/perf/results/$date_dir/matrix-$commit$suffix}
facts_file="$out/facts.json"
if [ "$append" = 1 ]; then
    [ -f "$out/facts.json" ] || die "--append: no $out/facts.json"
    facts_file="$out/facts-append-$(date +%H%M%S).json"
else
    rm -rf "$out"
fi
mkdir -p "$out/cells" "$out/baselines" "$out/logs"

garage_dir=""
garage_fsync=false
garage_script=${GARAGE_LOCAL_SH:-$perf_root/../shared/tools/garage-local.sh}
[ -x "$garage_script" ] || garage_script=/work/shared/tools/garage-local.sh
garage_local() {
    GARAGE_LOCAL_DIR=$garage_dir GARAGE_LOCAL_BASE_PORT=$((s3_port + 50)) \
        GARAGE_LOCAL_FSYNC=$garage_fsync "$garage_script" "$@"
}
iperf_pid=""
fio_dir="$cluster_parent/fio-scratch"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cluster_stop "$out/logs/interrupted" || true
    if [ -n "$garage_dir" ]; then garage_local wipe >/dev/null 2>&1 || true; fi
    if [ -n "$iperf_pid" ]; then kill "$iperf_pid" 2>/dev/null || true; fi
    rm -rf "$fio_dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started_ns=$(now_ns)
machine_facts_json "$cluster_parent" >"$facts_file"
log "results in $out; load average $(loadavg)"

# --- baselines ---------------------------------------------------------------
fio_job() { # name, then fio arguments
    local name=$1; shift
    log "fio $name (${fio_seconds} s)"
    fio --name="$name" --directory="$fio_dir" --output-format=json "$@" >"$out/baselines/fio-$name.json"
}
if [ "$baselines" = 1 ]; then
    ensure_tool fio
    ensure_tool iperf3
    rm -rf "$fio_dir" && mkdir -p "$fio_dir"
    fio_job seqwrite-1m-qd16 --filename=seq --size=2G --rw=write --bs=1M --ioengine=io_uring \
        --iodepth=16 --direct=1 --time_based --runtime="$fio_seconds"
    fio_job seqread-1m-qd16 --filename=seq --size=2G --rw=read --bs=1M --ioengine=io_uring \
        --iodepth=16 --direct=1 --time_based --runtime="$fio_seconds"
    # The 4 KiB log is written once first: toasty's WAL is pre-written too,
    # and an overwrite does not wait for an extent conversion.
    fio --name=prewrite --directory="$fio_dir" --filename=log --size=64M --rw=write --bs=1M \
        --direct=1 >/dev/null
    fio_job write-4k-fdatasync --filename=log --size=64M --rw=write --bs=4k --ioengine=psync \
        --direct=1 --fdatasync=1 --time_based --runtime="$fio_seconds"
    rm -rf "$fio_dir"
    log "iperf3 loopback, 1 stream (${iperf_seconds} s)"
    iperf3 -s -B 127.0.0.1 -p $((s3_port + 90)) -1 >/dev/null 2>&1 &
    iperf_pid=$!
    sleep 0.5
    iperf3 -c 127.0.0.1 -p $((s3_port + 90)) -t "$iperf_seconds" -J >"$out/baselines/iperf3-1stream.json"
    wait "$iperf_pid" 2>/dev/null || true
    iperf_pid=""
fi

# --- cells ---------------------------------------------------------------------
keys_for() { # size -> key space: the live data stays far below the chunk store
    case "$1" in
    4KiB | 64KiB) echo 1000 ;;
    1MiB) echo 200 ;;
    16MiB) echo 32 ;;
    *) die "no key count for size $1" ;;
    esac
}
mix_for() { # op -> loadgen flags
    case "$1" in
    put) echo "--mix put=100" ;;
    get) echo "--mix get=100 --verify" ;;
    mix) echo "--mix get=70,put=30 --verify" ;;
    *) die "unknown op $1" ;;
    esac
}

# PUT every key once so that GETs find them (16 MiB objects with fewer
# connections: 64 x 16 MiB in flight is a gigabyte of buffers). The bucket
# is created here too: a run whose first cell is a GET (`--ops get`) had
# no bucket yet, its prefill failed and every GET was a 404.
prefill() { # target size
    local target=$1 size=$2 c=64
    if [ "$size" = 16MiB ]; then
        c=16
        # The PUT cells just before overwrote gigabytes: let their garbage be
        # collected first, or the prefill meets "disks are full" (it did at
        # --cores 2 in the run of 2026-12-02, 15 of 32 keys).
        if [[ $target == toasty* ]]; then sleep $((gc_grace_seconds + 3)); fi
    fi
    log "$target: prefill $(keys_for "$size") keys of $size"
    "$bin/toasty-loadgen" --endpoint "$lg_endpoint" --region "$lg_region" --access-key "$lg_access" \
        --secret-key "$lg_secret" --bucket "$lg_bucket" --timeout 60 --no-progress \
        --size "$size" --keys "$(keys_for "$size")" -c "$c" --prefill --mix get=100 --requests "$c" --create-bucket \
        >>"$out/logs/$target-prefill.log" 2>&1 || log "$target: prefill of $size failed (see logs/$target-prefill.log)"
}

cell() { # target op size concurrency [extra loadgen flags]
    local target=$1 op=$2 size=$3 c=$4; shift 4
    local name="$target-$op-$size-c$c"
    local -a flags
    read -r -a flags <<<"$(mix_for "$op")"
    log "$name"
    run_cell "$out/cells/$name.json" "${flags[@]}" --size "$size" --keys "$(keys_for "$size")" -c "$c" "$@"
    log "  $(cell_summary "$out/cells/$name.json")"
}

# A fresh cluster per cores value and object size: the cells of one size
# do not inherit the garbage (and the compaction work) of the size before,
# and the chunk store never fills (a 16 MiB c64 run writes ~100 MiB/s, and
# overwritten chunks wait PERF_GC_GRACE_SECONDS before they are collected).
[ "$toasty" = 1 ] || cores_list=""
for cores in $cores_list; do
    target="toasty-cores$cores"
    for size in $sizes; do
        cluster_start "matrix-cores$cores" "$cores"
        first=1
        prefilled=0
        for op in $ops; do
            if [ "$op" != put ] && [ "$prefilled" = 0 ]; then
                prefill "$target" "$size"
                prefilled=1
            fi
            for c in $concurrencies; do
                extra=()
                if [ "$first" = 1 ]; then extra=(--create-bucket); first=0; fi
                cell "$target" "$op" "$size" "$c" "${extra[@]}"
            done
        done
        cluster_stop "$out/logs/$target-$size"
    done
done

# --- peers: Garage -------------------------------------------------------------
if [ "$peers" = 1 ]; then
    [ -x "$garage_script" ] || die "garage-local.sh not found (set GARAGE_LOCAL_SH)"
    garage version >"$out/baselines/garage-version.txt" 2>&1 || garage --version >"$out/baselines/garage-version.txt" 2>&1 || true
    for garage_fsync in false true; do
        target="garage-fsync-$garage_fsync"
        garage_dir="$cluster_parent/$target"
        rm -rf "$garage_dir"
        log "$target: starting (garage-local.sh, 3 nodes, consistent, fsync $garage_fsync)"
        # (the start output prints the S3 secret: kept out of the results)
        garage_local start 2>&1 | grep -v SECRET >"$out/logs/$target-start.log" || {
            cat "$out/logs/$target-start.log" >&2
            die "$target did not start"
        }
        # shellcheck disable=SC1091
        . "$garage_dir/s3.env"
        lg_endpoint=$S3_ENDPOINTS
        lg_region=$AWS_REGION
        lg_access=$AWS_ACCESS_KEY_ID
        lg_secret=$AWS_SECRET_ACCESS_KEY
        lg_bucket=$S3_BUCKET
        server_pids=()
        for n in 1 2 3; do server_pids+=("$(cat "$garage_dir/node$n/garage.pid")"); done
        prefilled=""
        for spec in $peer_cells; do
            IFS=: read -r op size c <<<"$spec"
            if [ "$op" != put ] && [[ " $prefilled " != *" $size "* ]]; then
                prefill "$target" "$size"
                prefilled="$prefilled $size"
            fi
            cell "$target" "$op" "$size" "$c"
        done
        mkdir -p "$out/logs/$target"
        # Garage logs every S3 request at INFO: keep the rest, without colours.
        for n in 1 2 3; do
            sed 's/\x1b\[[0-9;]*m//g' "$garage_dir/node$n/garage.log" | grep -v 'generic_server:' \
                >"$out/logs/$target/node$n.log" || true
        done
        garage_local wipe >/dev/null 2>&1 || true
        garage_dir=""
    done
fi

elapsed_s=$((($(now_ns) - started_ns) / 1000000000))
python3 - "$facts_file" "$elapsed_s" "$(loadavg)" "$quick" "$duration_s" "$warmup_s" "$args_text" \
    "$chunk_mib_per_node" "--gc-grace-seconds $gc_grace_seconds --gc-interval-seconds 1 ${PERF_SERVER_ARGS:-}" <<'PY'
import json, sys
path, elapsed, load, quick, duration, warmup, args, chunk_mib, server_args = sys.argv[1:10]
facts = json.load(open(path))
facts.update({"cluster": {"fresh_per": "cores value and object size", "chunk_store_mib_per_node": int(chunk_mib),
                          "server_args": server_args},
              "command": ("perf/matrix.sh " + args).strip(), "elapsed_s": int(elapsed), "load_average_at_end": load, "quick": quick == "1",
              "duration_s": float(duration), "warmup_s": float(warmup)})
json.dump(facts, open(path, "w"), indent=1)
PY
python3 "$perf_root/perf/matrix-report.py" "$out"
log "done in ${elapsed_s} s: $out/summary.md"
