#!/usr/bin/env bash
# A local toasty cluster: 3 nodes on loopback, data and logs under
# data/cluster/ in the project (override with TOASTY_CLUSTER_DIR).
#
#   scripts/cluster.sh start    build (release), start 3 nodes, wait until every group answers
#   scripts/cluster.sh status   per node and shard: role, view, op, commit, objects, health
#   scripts/cluster.sh stop     SIGTERM (clean shutdown), SIGKILL after 20 s
#   scripts/cluster.sh kill N   kill -9 node N (fault drills; `start` brings it back)
#   scripts/cluster.sh logs N   follow node N's log
#   scripts/cluster.sh wipe     stop and delete all data
#
# Every node serves S3 on 127.0.0.1:${TOASTY_S3_PORT:-3000} (the three share the port:
# SO_REUSEPORT spreads connections over them, and a dead node's share moves
# to the others). A development key is created on the first start, kept in
# data/cluster/credentials and printed by `start` and `status`.
#
# Settings (environment): TOASTY_CORES (shards per node; default one shard
# per CPU over the three nodes, at least 1: 1 on a 2-CPU box, where
# --cores 2 gave 0.6x the 4 KiB GETs and a third of the PUTs, perf/matrix.md;
# fixed at the first start, when each node records it in its data
# directory: the groups objects hash to depend on it),
# TOASTY_CHUNK_SEGMENTS x TOASTY_SEGMENT_MIB (chunk store per shard, default
# 16 x 64 MiB), TOASTY_METADATA_MIB (object metadata per group, default 64),
# TOASTY_BASE_PORT (replica ports: node i shard k on BASE + 100 i + k,
# default 4000), TOASTY_METRICS_PORT (node i serves /metrics and /status on
# PORT + i, default 7100).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${TOASTY_CLUSTER_DIR:-$root/data/cluster}
nodes=3
# The shard count is fixed when the data is made: each node records it in
# its data directory (`groups`, written and enforced by toasty-server);
# older data without it is read from its shard directories.
if [ -f "$dir/node-0/groups" ]; then
    made=$(cat "$dir/node-0/groups")
elif [ -d "$dir/node-0/shard-0" ]; then
    made=$(find "$dir/node-0" -maxdepth 1 -name 'shard-*' -type d | wc -l)
else
    made=
fi
if [ -n "$made" ]; then
    if [ -n "${TOASTY_CORES:-}" ] && [ "$TOASTY_CORES" != "$made" ]; then
        echo "TOASTY_CORES=$TOASTY_CORES, but the cluster in $dir was made with $made shards" \
            "per node (objects hash to groups by that count); unset it, or wipe the" \
            "cluster (scripts/cluster.sh wipe) to start over" >&2
        exit 2
    fi
    cores=$made
else
    cpus=$(nproc 2>/dev/null || echo 1)
    cores=${TOASTY_CORES:-$(( cpus / nodes > 1 ? cpus / nodes : 1 ))}
fi
segments=${TOASTY_CHUNK_SEGMENTS:-16}
segment_mib=${TOASTY_SEGMENT_MIB:-64}
metadata_mib=${TOASTY_METADATA_MIB:-64}
base=${TOASTY_BASE_PORT:-4000}
metrics=${TOASTY_METRICS_PORT:-7100}
s3_port=${TOASTY_S3_PORT:-3000}
bin=${TOASTY_BIN:-$root/target/release}
peers=$(for i in $(seq 0 $((nodes - 1))); do printf '127.0.0.1:%d,' $((base + 100 * i)); done)
peers=${peers%,}

pid_of() { # node -> pid if running
    local file="$dir/node-$1.pid"
    [ -f "$file" ] || return 1
    local pid
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 1
    # A node killed with -9 may stay a zombie until its parent reaps it
    # (or a reused pid may be another program): neither is a running node.
    local state
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] || return 1
    grep -q toasty-server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# The development key: created once, then reused (data survives restarts).
credentials() {
    local file="$dir/credentials"
    if [ ! -f "$file" ]; then
        mkdir -p "$dir"
        local access secret
        access="toasty-dev-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        secret=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
        (umask 077 && printf 'TOASTY_ACCESS_KEY=%s\nTOASTY_SECRET_KEY=%s\n' "$access" "$secret" >"$file")
    fi
    # shellcheck disable=SC1090
    . "$file"
    export TOASTY_ACCESS_KEY TOASTY_SECRET_KEY
}

print_endpoint() {
    credentials
    echo "S3 endpoint: http://127.0.0.1:$s3_port   (region us-east-1, path-style)"
    echo "  export AWS_ACCESS_KEY_ID=$TOASTY_ACCESS_KEY"
    echo "  export AWS_SECRET_ACCESS_KEY=$TOASTY_SECRET_KEY"
    echo "  export AWS_DEFAULT_REGION=us-east-1"
}

start_node() {
    local i=$1
    if pid=$(pid_of "$i"); then
        echo "node $i already running (pid $pid)"
        return
    fi
    mkdir -p "$dir"
    "$bin/toasty-server" --node "$i" --peers "$peers" --cores "$cores" --cpus unpinned \
        --data "$dir/node-$i" --metrics "127.0.0.1:$((metrics + i))" \
        --chunk-segments "$segments" --segment-mib "$segment_mib" --metadata-mib "$metadata_mib" \
        --http "127.0.0.1:$s3_port" \
        ${TOASTY_SERVER_ARGS:-} >>"$dir/node-$i.log" 2>&1 &
    echo $! >"$dir/node-$i.pid"
    echo "node $i started (pid $!), log $dir/node-$i.log"
}

case "${1:-}" in
start)
    if [ -z "${TOASTY_BIN:-}" ]; then
        echo "building (cargo build --release)..."
        cargo build --release --bin toasty-server --bin toasty-client
    fi
    credentials
    for i in $(seq 0 $((nodes - 1))); do start_node "$i"; done
    echo "waiting until every group answers (first start formats the data files)..."
    if ! "$bin/toasty-client" --peers "$peers" --cores "$cores" wait --seconds 120; then
        echo "the cluster did not become ready; see the logs in $dir" >&2
        exit 1
    fi
    echo "replica ports: $peers (node i, shard k: port + k)"
    echo "status: scripts/cluster.sh status; metrics: http://127.0.0.1:$metrics/metrics"
    print_endpoint
    ;;
status)
    print_endpoint
    for i in $(seq 0 $((nodes - 1))); do
        if pid=$(pid_of "$i"); then
            json=$(curl -s --max-time 2 "http://127.0.0.1:$((metrics + i))/status" || true)
            if [ -z "$json" ]; then
                echo "node $i: pid $pid, not answering on :$((metrics + i))"
                continue
            fi
            python3 - "$i" "$pid" "$json" <<'PY'
import json, sys
node, pid, text = sys.argv[1], sys.argv[2], sys.argv[3]
status = json.loads(text)
print(f"node {node} (pid {pid}):")
for s in status["shards"]:
    health = "healthy" if s["healthy"] else "UNHEALTHY"
    print(f"  shard {s['shard']} group {s['group']}: {s['role']:<7} {s['status']:<11} "
          f"view {s['view']:<4} op {s['op']:<8} commit {s['commit']:<8} "
          f"objects {s['objects']:<8} chunks {s['chunks']:<8} missing {s['chunks_missing']:<5} "
          f"peers {s['peers_connected']} {health}")
PY
        else
            echo "node $i: stopped"
        fi
    done
    ;;
stop)
    for i in $(seq 0 $((nodes - 1))); do
        if pid=$(pid_of "$i"); then kill -TERM "$pid"; fi
    done
    for i in $(seq 0 $((nodes - 1))); do
        for _ in $(seq 1 200); do pid_of "$i" >/dev/null || break; sleep 0.1; done
        if pid=$(pid_of "$i"); then
            echo "node $i did not stop within 20 s: kill -9"
            kill -KILL "$pid"
        fi
        rm -f "$dir/node-$i.pid"
        echo "node $i stopped"
    done
    ;;
kill)
    i=${2:?usage: cluster.sh kill NODE}
    if pid=$(pid_of "$i"); then kill -KILL "$pid"; echo "node $i killed (pid $pid)"; else echo "node $i not running"; fi
    ;;
logs)
    tail -f "$dir/node-${2:?usage: cluster.sh logs NODE}.log"
    ;;
wipe)
    "$0" stop
    rm -rf "$dir"
    echo "removed $dir"
    ;;
*)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
