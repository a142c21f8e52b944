#!/usr/bin/env bash
# Failover benchmark (runtime issue 4): "writes resume within 2 s of a
# primary's death with default timeouts (p50/max over 10 kills)".
#
#   perf/failover.sh [KILLS] [OUT.json]        (default 10 kills, JSON on stdout)
#
# A fresh 3-node x 2-shard cluster on loopback (scripts/cluster.sh, default
# server timeouts), a steady closed-loop put load through the object client
# (`toasty-client load --retry --ack-log`, which logs `ack <key> <size>
# <unix_ms> <group>` for every acknowledged put). Each round: wait until
# every replica is normal and group (round mod 2) is acknowledging writes,
# kill -9 that group's primary, wait for an ack of the group more than
# 100 ms after the kill, restart the node with `scripts/cluster.sh start`,
# wait until it is normal again at the commit points the group had reached,
# and go on. After the last round every acknowledged object is read back
# (`toasty-client verify`).
#
# Measured per kill, from the ack log of the affected group:
#   resume_ms   the longest gap between two consecutive acks of the group
#               whose later ack is after the kill and earlier ack is before
#               kill + 1 s: the write outage (= last ack before the kill to
#               first ack after it when no reply was already in flight)
#   kill_to_first_ack_ms / kill_to_resume_ms   from the kill to the first
#               ack after it / to the ack that ended the outage
# Also the survivors' "view N: primary" log line (time of the new view).
#
# Environment: TOASTY_BIN (binaries; default target/release, built with
# `cargo build --release --workspace` if missing), TOASTY_CLUSTER_DIR
# (default data/perf-failover, wiped at start and end; KEEP=1 keeps it),
# TOASTY_BASE_PORT/TOASTY_METRICS_PORT/TOASTY_S3_PORT (default
# 14000/14700/14900), SIZE (object bytes, default 256: inline in the metadata, which a 4 KiB load fills within
# minutes at the default --metadata-mib 64 of cluster.sh, LimitExceeded(ObjectsBytes)), CONCURRENCY
# (default 8), TOASTY_BIN_COMMIT (recorded: the commit the binaries were
# built from; default this checkout's HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
kills=${1:-10}
out=${2:-}
size=${SIZE:-256}
concurrency=${CONCURRENCY:-8}

export TOASTY_CLUSTER_DIR=${TOASTY_CLUSTER_DIR:-$root/data/perf-failover}
export TOASTY_BASE_PORT=${TOASTY_BASE_PORT:-14000}
export TOASTY_METRICS_PORT=${TOASTY_METRICS_PORT:-14700}
export TOASTY_S3_PORT=${TOASTY_S3_PORT:-14900}
# shellcheck source=perf/runtime-lib.sh
. "$root/perf/runtime-lib.sh"
rt_binaries
dir=$TOASTY_CLUSTER_DIR
base=$TOASTY_BASE_PORT
metrics=$TOASTY_METRICS_PORT
peers="127.0.0.1:$base,127.0.0.1:$((base + 100)),127.0.0.1:$((base + 200))"
cluster=scripts/cluster.sh

loader=
poller=
cleanup() {
    if [ -n "$poller" ]; then kill "$poller" 2>/dev/null || true; fi
    if [ -n "$loader" ] && kill -0 "$loader" 2>/dev/null; then kill "$loader" 2>/dev/null || true; wait "$loader" 2>/dev/null || true; fi
    "$cluster" stop >/dev/null 2>&1 || true
    # the logs and the ack log outlive the data (DIR-logs/)
    if [ -d "$dir" ]; then mkdir -p "$dir-logs" && cp "$dir"/*.log "$dir"/*.txt "$dir-logs/" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ] && [ "$incidents" = 0 ]; then rm -rf "$dir"; else log "kept $dir"; fi
}
trap 'rc=$?; [ $rc = 0 ] || incidents=1; cleanup' EXIT
incidents=0
log() { echo "failover: $*" >&2; }
now_ms() { date +%s%3N; }

# status NODE -> /status JSON or nothing
status() { curl -s --max-time 2 "http://127.0.0.1:$((metrics + $1))/status" || true; }

# The node that is the normal primary of group $1, or nothing.
primary_of() {
    local node
    for node in 0 1 2; do
        status "$node" | python3 -c '
import json, sys
g = int(sys.argv[1])
try:
    s = json.load(sys.stdin)["shards"][g]
except Exception:
    sys.exit(1)
sys.exit(0 if s["role"] == "primary" and s["status"] == "normal" else 1)' "$1" && { echo "$node"; return; }
    done
    return 0
}

# Every shard of every node normal and at or past the commits in $1 (g0,g1).
all_normal() {
    local node
    for node in 0 1 2; do
        status "$node" | python3 -c '
import json, sys
need = [int(c) for c in sys.argv[1].split(",")]
try:
    shards = json.load(sys.stdin)["shards"]
except Exception:
    sys.exit(1)
sys.exit(0 if all(s["status"] == "normal" and s["commit"] >= need[s["group"]] for s in shards) else 1)' "$1" || return 1
    done
}

commits_max() {
    local node
    for node in 0 1 2; do status "$node"; echo; done | python3 -c '
import json, sys
best = [0, 0]
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    for s in json.loads(line)["shards"]:
        best[s["group"]] = max(best[s["group"]], s["commit"])
print(",".join(map(str, best)))'
}

# wait_until SECONDS CMD...: poll every 100 ms; status 1 on timeout.
wait_until() {
    local limit=$1
    shift
    local deadline=$(($(now_ms) + limit * 1000))
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# An ack of group $1 after unix ms $2 in the ack log.
ack_after() {
    awk -v g="$1" -v t="$2" '$1 == "ack" && $5 == g && $4 > t { found = 1; exit } END { exit !found }' "$dir/acks.log"
}

"$cluster" wipe >/dev/null 2>&1 || true
rm -rf "$dir-logs"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
psi_start=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)
log "starting a fresh cluster in $dir (binaries $TOASTY_BIN)"
mkdir -p "$dir"
"$cluster" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; exit 1; }

start_loader() { # RUN
    load_cmd=("$TOASTY_BIN/toasty-client" --peers "$peers" --cores 2 load --bucket failover --op put
        --retry --concurrency "$concurrency" --size "$size" --seconds 36000 --run "$1"
        --ack-log "$dir/acks.log")
    "${load_cmd[@]}" >>"$dir/load.out" 2>>"$dir/load.err" &
    loader=$!
}
start_loader f
sleep 3

# The load stopped acknowledging group $1 although the cluster looks normal:
# record what every node says, then check with a fresh client whether the
# cluster takes writes (server stall) or only the old client is stuck.
diagnose() { # ROUND GROUP
    local file=$dir/incident-$1.txt
    incidents=$((incidents + 1))
    {
        echo "round $1: no ack of group $2 for 30 s before the kill ($(date -u +%FT%T.%3NZ))"
        for n in 0 1 2; do echo "node $n: $(status "$n")"; done
        echo "last acks per group (unix ms):"
        awk '$1 == "ack" { last[$5] = $4 } END { for (g in last) print "  group " g ": " last[g] }' "$dir/acks.log"
        echo "now: $(now_ms)"
        echo "load.err tail:"; tail -5 "$dir/load.err"
        echo "a fresh client, 3 s of puts:"
        "$TOASTY_BIN/toasty-client" --peers "$peers" --cores 2 load --bucket failover --op put --retry \
            --concurrency 4 --size "$size" --seconds 3 --run "probe$1" 2>&1 || echo "probe failed: $?"
    } >"$file" 2>&1
    log "round $1: INCIDENT, see $file:"
    cat "$file" >&2
}

rounds_file=$dir/rounds.txt
: >"$rounds_file"
for kill in $(seq 0 $((kills - 1))); do
    group=$((kill % 2))
    other=$((1 - group))
    wait_until 120 all_normal 0,0 || { log "round $kill: the cluster did not become normal"; exit 1; }
    primary=
    wait_until 60 eval 'primary=$(primary_of '"$group"'); [ -n "$primary" ]' ||
        { log "round $kill: no normal primary of group $group"; exit 1; }
    other_primary=$(primary_of "$other")
    # writes of the group flowing right now
    if ! wait_until 30 ack_after "$group" $(($(now_ms) - 300)); then
        diagnose "$kill" "$group"
        kill "$loader" 2>/dev/null || true
        wait "$loader" 2>/dev/null || true
        start_loader "f$kill"
        wait_until 30 ack_after "$group" $(($(now_ms) - 300)) || { log "round $kill: a new load client does not get group $group acked either"; exit 1; }
    fi
    pid=$(cat "$dir/node-$primary.pid")
    # the survivors' /status every 100 ms from just before the kill until
    # writes resumed: view, status and role per group over the outage
    (
        while :; do
            for n in 0 1 2; do
                [ "$n" = "$primary" ] && continue
                echo "poll $kill $(now_ms) $n $(curl -s --max-time 1 "http://127.0.0.1:$((metrics + n))/status" || true)"
            done
            sleep 0.1
        done >>"$dir/poll.txt"
    ) &
    poller=$!
    sleep 0.3
    killed_at=$(now_ms)
    kill -KILL "$pid"
    log "round $kill: killed node $primary (pid $pid), primary of group $group (group $other's primary: ${other_primary:-none})"
    resumed=1
    wait_until 60 ack_after "$group" $((killed_at + 100)) || { resumed=0; log "round $kill: NO ack of group $group within 60 s of the kill"; }
    sleep 1 # acks just after the outage, for the gap computation
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
    new_primary=$(primary_of "$group")
    commits=$(commits_max)
    restart_at=$(now_ms)
    "$cluster" start >>"$dir/start.log" 2>&1
    rejoined=1
    wait_until 120 all_normal "$commits" || { rejoined=0; log "round $kill: node $primary did not rejoin within 120 s"; }
    rejoin_ms=$(($(now_ms) - restart_at))
    echo "$kill $group $primary ${other_primary:--1} ${new_primary:--1} $killed_at $resumed $rejoined $rejoin_ms" >>"$rounds_file"
    log "round $kill: resumed=$resumed, node $primary rejoined=$rejoined after ${rejoin_ms} ms"
    sleep 2
done
kill "$loader" 2>/dev/null || true
wait "$loader" 2>/dev/null || true
loader=
# --concurrency 1: at 17ba387 concurrent verify reads take ~0.3 s per window
# (1,000 objects: 0.8 s at 1, 172 s at 2; see perf/runtime.md), serial is fastest.
verify_out=$("$TOASTY_BIN/toasty-client" --peers "$peers" --cores 2 verify --bucket failover --concurrency 1 --acks "$dir/acks.log" 2>&1) && verified=1 || verified=0
log "verify: $verify_out"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
psi_end=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)

PSI_START=$psi_start PSI_END=$psi_end python3 - "$dir" "$rounds_file" "$bin_commit" "$TOASTY_BIN" "$load_start" "$load_end" "$verified" "$verify_out" \
    "$(git rev-parse HEAD)" "$size" "$concurrency" "${load_cmd[*]}" "$*" >"${out:-/dev/stdout}" <<'PY'
import datetime, glob, json, os, re, statistics, sys
(dir_, rounds_file, bin_commit, bin_dir, load_start, load_end, verified, verify_out,
 script_commit, size, concurrency, load_cmd, args) = sys.argv[1:]
acks = {0: [], 1: []}
for line in open(f"{dir_}/acks.log"):
    w = line.split()
    if len(w) == 5 and w[0] == "ack":
        acks[int(w[4])].append(int(w[3]))
for g in acks:
    acks[g].sort()

node_logs = {}
for n in range(3):
    entries = []
    for line in open(f"{dir_}/node-{n}.log", errors="replace"):
        m = re.match(r'ts=(\S+) ', line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        entries.append((int(t.timestamp() * 1000), line.rstrip()))
    node_logs[n] = entries

def views(node, since, until):
    """'view N: primary' lines of the survivors between since and until (unix ms)."""
    found = []
    for n in range(3):
        if n == node:
            continue
        for ms, line in node_logs[n]:
            m = re.search(r'group=(\d+) msg="view (\d+): primary"', line)
            if m and since <= ms <= until:
                found.append({"node": n, "group": int(m.group(1)), "view": int(m.group(2)), "after_kill_ms": ms - since})
    return found

def survivor_lines(node, since, until, limit=40):
    lines = [f"node {n} +{ms - since} ms: {line}" for n in range(3) if n != node
             for ms, line in node_logs[n] if since <= ms <= until]
    return lines[:limit]

def outage(times, killed):
    before = [t for t in times if t <= killed]
    after = [t for t in times if t > killed]
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:]) if b > killed and a < killed + 1000]
    gap, a, b = max(gaps) if gaps else (None, None, None)
    return {
        "last_ack_before_kill_ms": (killed - before[-1]) if before else None,
        "kill_to_first_ack_ms": (after[0] - killed) if after else None,
        "resume_ms": gap,
        "kill_to_resume_ms": (b - killed) if b is not None else None,
    }

polls = {}
try:
    for line in open(f"{dir_}/poll.txt"):
        w = line.split(" ", 4)
        if len(w) == 5 and w[4].strip():
            try:
                polls.setdefault(int(w[1]), []).append((int(w[2]), int(w[3]), json.loads(w[4])))
            except ValueError:
                pass
except OSError:
    pass

def timeline(k, g, killed):
    """Changes of (status, view, role) of group g on each survivor, relative to the kill."""
    last, out = {}, []
    for t, n, st in polls.get(k, []):
        s = st["shards"][g]
        state = (s["status"], s["view"], s["role"])
        if last.get(n) != state:
            last[n] = state
            out.append(f"+{t - killed} ms node {n}: {s['role']} {s['status']} view {s['view']} commit {s['commit']}")
    return out

rounds = []
for line in open(rounds_file):
    k, g, p, op, np, killed, resumed, rejoined, rejoin_ms = map(int, line.split())
    r = {"kill": k, "group": g, "killed_node": p, "other_group_primary_was_killed_node": op == p,
         "new_primary": np if np >= 0 else None, "killed_at_unix_ms": killed,
         "resumed": bool(resumed), "rejoined": bool(rejoined), "rejoin_ms": rejoin_ms}
    r.update(outage(acks[g], killed))
    r["other_group"] = outage(acks[1 - g], killed)
    r["survivor_status_changes"] = timeline(k, g, killed)
    r["new_views"] = views(p, killed, killed + 30000)
    end = killed + (r["kill_to_resume_ms"] or 30000)
    r["survivor_log_lines"] = survivor_lines(p, killed, end + 200)
    rounds.append(r)

res = sorted(r["resume_ms"] for r in rounds if r["resume_ms"] is not None)
def p50(xs):
    return statistics.median(xs) if xs else None
result = {
    "benchmark": "failover",
    "target": "writes resume within 2 s of a primary's death with default timeouts (p50/max over 10 kills)",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "binary_commit": bin_commit,
    "binaries": bin_dir,
    "script_commit": script_commit,
    "command": "perf/failover.sh " + args,
    "load_command": load_cmd,
    "cluster": "3 nodes x 2 shards on loopback (scripts/cluster.sh, default server timeouts: "
               "primary timeout 100 ticks = 1 s, view change timeout 150 ticks = 1.5 s, heartbeat 100 ms)",
    "load": {"op": "put", "size": int(size), "concurrency": int(concurrency), "client": "toasty-client load --retry"},
    "loadavg_start": load_start, "loadavg_end": load_end,
    "pressure_start": os.environ.get("PSI_START"), "pressure_end": os.environ.get("PSI_END"),
    "kills": len(rounds),
    "resume_ms_p50": p50(res), "resume_ms_max": max(res) if res else None,
    "resume_ms_sorted": res,
    "met_2s": bool(res) and len(res) == len(rounds) and max(res) <= 2000,
    "acks_total": sum(len(v) for v in acks.values()),
    "verified": verified == "1", "verify_output": verify_out.strip(),
    "rounds": rounds,
    "incidents": [open(f).read() for f in sorted(glob.glob(f"{dir_}/incident-*.txt"))],
}
print(json.dumps(result, indent=1))
PY
