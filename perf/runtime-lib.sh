# shellcheck shell=bash
# Shared by perf/failover.sh, perf/memory.sh and perf/streaming.sh. Source it
# after `root` is set; it defines functions and starts nothing, and keeps
# these scripts' recorded configuration: 2 shards per node unless
# TOASTY_CORES says otherwise (scripts/cluster.sh's own default follows the
# CPU count).
export TOASTY_CORES=${TOASTY_CORES:-2}

# TOASTY_BIN (default $root/target/release, built if missing) and
# bin_commit (TOASTY_BIN_COMMIT, else this checkout's HEAD).
rt_binaries() {
    if [ -z "${TOASTY_BIN:-}" ]; then
        TOASTY_BIN=$root/target/release
        [ -x "$TOASTY_BIN/toasty-server" ] || (cd "$root" && cargo build --release --workspace)
    fi
    export TOASTY_BIN
    bin_commit=${TOASTY_BIN_COMMIT:-$(git -C "$root" rev-parse --short HEAD)}
}

# Per-node memory samples of the cluster in $dir: `rt_memory_init` reads the
# node pids and empties $samples; `mark LABEL` appends
# "LABEL unix_ms node VmRSS VmHWM" (kB) per node; `reset_peak` resets VmHWM.
rt_memory_init() {
    pids=$(for i in 0 1 2; do cat "$dir/node-$i.pid"; done | tr '\n' ' ')
    samples=$dir/samples.txt
    : >"$samples"
}
kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }
mark() {
    local i=0 pid
    for pid in $pids; do
        echo "$1 $(date +%s%3N) $i $(kb VmRSS "$pid") $(kb VmHWM "$pid")" >>"$samples"
        i=$((i + 1))
    done
}
reset_peak() { local pid; for pid in $pids; do echo 5 >"/proc/$pid/clear_refs"; done; }
