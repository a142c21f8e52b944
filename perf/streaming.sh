#!/usr/bin/env bash
# Streaming proof (runtime issue 5): one PUT and one GET of a 4 GiB object
# through the S3 endpoint with every node's peak RSS below 512 MiB, and the
# bytes read back equal to the bytes sent.
#
#   perf/streaming.sh [BYTES] [OUT.json]      (default 4 GiB = 4294967296)
#
# The body is generated, never a file: `head -c BYTES /dev/zero | openssl enc
# -aes-128-ctr` with a fixed key (a deterministic pseudo-random stream), read
# by a small Python client that sends it as ONE PutObject with Content-Length
# (SigV4, UNSIGNED-PAYLOAD) and hashes it on the way (SHA-256, MD5). The GET
# is curl --aws-sigv4 piped into sha256sum. The connection is accepted by
# one shard of one node (the three nodes share the port with SO_REUSEPORT);
# which node served it is read from `ss -tnp` during the transfer.
#
# RSS: VmHWM of every node is reset (`echo 5 > /proc/PID/clear_refs`) before
# the PUT and before the GET and read after each; VmRSS is sampled every
# 0.2 s too.
#
# The cluster: scripts/cluster.sh, 3 nodes x 2 shards, chunk store per shard
# TOASTY_CHUNK_SEGMENTS x TOASTY_SEGMENT_MIB (default here 20 x 256 MiB =
# 5 GiB: a 4 GiB object is 1,024 chunks of 4 MiB, 63 to a 256 MiB segment,
# so 17 segments plus the 2 kept free for relocation and one spare; every
# replica of the object's group holds all of it), i.e. 30 GiB pre-allocated
# in all (both groups are sized alike). With less disk: TOASTY_CORES=1 (one
# group) and TOASTY_CHUNK_SEGMENTS=71 TOASTY_SEGMENT_MIB=64 (15 chunks of
# 4 MiB to a segment: 69 + 2), 13.3 GiB in all. The run stops the cluster if
# the disk's free space falls below 1 GiB (other users of the disk). The chunk
# GC grace is the server default (--gc-grace-seconds 900): the upload must
# finish within it, or its chunks, not yet referenced, may be collected.
#
# Environment: TOASTY_BIN (default target/release, built with `cargo build
# --release --workspace` if missing), TOASTY_CLUSTER_DIR (default
# data/perf-streaming, wiped at start and end; KEEP=1 keeps it),
# TOASTY_BASE_PORT/TOASTY_METRICS_PORT/TOASTY_S3_PORT (default
# 14000/14700/14900), TOASTY_BIN_COMMIT (recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size=${1:-4294967296}
out=${2:-}

export TOASTY_CLUSTER_DIR=${TOASTY_CLUSTER_DIR:-$root/data/perf-streaming}
export TOASTY_BASE_PORT=${TOASTY_BASE_PORT:-14000}
export TOASTY_METRICS_PORT=${TOASTY_METRICS_PORT:-14700}
export TOASTY_S3_PORT=${TOASTY_S3_PORT:-14900}
export TOASTY_CHUNK_SEGMENTS=${TOASTY_CHUNK_SEGMENTS:-20}
export TOASTY_SEGMENT_MIB=${TOASTY_SEGMENT_MIB:-256}
export TOASTY_CORES=${TOASTY_CORES:-2}
cores=$TOASTY_CORES
# shellcheck source=perf/runtime-lib.sh
. "$root/perf/runtime-lib.sh"
rt_binaries
dir=$TOASTY_CLUSTER_DIR
cluster=scripts/cluster.sh
s3_port=$TOASTY_S3_PORT
peers="127.0.0.1:$TOASTY_BASE_PORT,127.0.0.1:$((TOASTY_BASE_PORT + 100)),127.0.0.1:$((TOASTY_BASE_PORT + 200))"
key_hex=000102030405060708090a0b0c0d0e0f

sampler=
cleanup() {
    if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    "$cluster" stop >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT
log() { echo "streaming: $*" >&2; }
now_ms() { date +%s%3N; }

"$cluster" wipe >/dev/null 2>&1 || true
mkdir -p "$dir"
need_gib=$((TOASTY_CHUNK_SEGMENTS * TOASTY_SEGMENT_MIB * 3 * cores / 1024 + 2))
free_gib=$(df -BG --output=avail "$dir" | tail -1 | tr -dc 0-9)
if [ "$free_gib" -lt "$need_gib" ]; then
    log "needs ~$need_gib GiB free under $dir, has $free_gib GiB"
    exit 1
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
psi_start=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)
log "starting a fresh cluster in $dir ($TOASTY_CHUNK_SEGMENTS x $TOASTY_SEGMENT_MIB MiB per shard, ${need_gib} GiB incl. margin; $free_gib GiB free)"
started_at=$(now_ms)
# Formatting 6 x 5 GiB may outlast cluster.sh's 120 s wait: wait longer.
"$cluster" start >"$dir/start.log" 2>&1 || true
"$TOASTY_BIN/toasty-client" --peers "$peers" --cores "$cores" wait --seconds 900 >>"$dir/start.log" 2>&1 ||
    { cat "$dir/start.log" >&2; exit 1; }
start_s=$(( ($(now_ms) - started_at) / 1000 ))
# shellcheck disable=SC1091
. "$dir/credentials"
rt_memory_init

(
    n=0
    while :; do
        i=0
        for pid in $pids; do
            echo "sample $(now_ms) $i $(kb VmRSS "$pid") $(kb VmHWM "$pid")"
            i=$((i + 1))
        done
        # every second: which server process holds an S3 connection
        if [ $((n % 5)) = 0 ]; then
            ss -Htnp state established "( sport = :$s3_port )" 2>/dev/null |
                grep -o 'pid=[0-9]*' | sed "s/^/conn $(now_ms) /" || true
        fi
        # the disk is shared: stop this cluster before it starves anyone
        if [ $((n % 5)) = 0 ] && [ "$(df -BM --output=avail "$dir" | tail -1 | tr -dc 0-9)" -lt 1024 ]; then
            echo "lowdisk $(now_ms)"
            for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
        fi
        n=$((n + 1))
        sleep 0.2
    done >>"$samples"
) &
sampler=$!

cat >"$dir/put.py" <<'PY'
# One PutObject of exactly SIZE bytes read from stdin, SigV4 with
# UNSIGNED-PAYLOAD, Content-Length framing; prints a JSON line.
import datetime, hashlib, hmac, http.client, json, sys, time
host, port, bucket, key, size, access, secret = sys.argv[1:8]
port, size = int(port), int(size)
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
region, service = "us-east-1", "s3"
path = f"/{bucket}/{key}"
headers = {"host": f"{host}:{port}", "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": amz_date,
           "content-length": str(size)}
signed = sorted(headers)
canonical = "\n".join(["PUT", path, "", *[f"{h}:{headers[h]}" for h in signed], "", ";".join(signed), "UNSIGNED-PAYLOAD"])
scope = f"{day}/{region}/{service}/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, service, "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                            f"SignedHeaders={';'.join(signed)}, Signature={signature}")
conn = http.client.HTTPConnection(host, port, timeout=600)
conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
for h, v in headers.items():
    conn.putheader(h, v)
conn.endheaders()
sha, md5, sent, started = hashlib.sha256(), hashlib.md5(), 0, time.time()
stdin = sys.stdin.buffer
while sent < size:
    block = stdin.read(min(1 << 20, size - sent))
    if not block:
        sys.exit(f"the generator ended after {sent} of {size} bytes")
    sha.update(block)
    md5.update(block)
    try:
        conn.sock.sendall(block)
    except OSError as error:  # the server answered early (an error): read it below
        print(f"send failed after {sent} bytes: {error}", file=sys.stderr)
        break
    sent += len(block)
sent_at = time.time()
response = conn.getresponse()
body = response.read().decode(errors="replace")
done = time.time()
print(json.dumps({"status": response.status, "etag": response.getheader("ETag"), "body": body[:500],
                  "bytes_sent": sent, "sha256": sha.hexdigest(), "md5": md5.hexdigest(),
                  "seconds": round(done - started, 3), "seconds_to_last_byte_sent": round(sent_at - started, 3),
                  "response_after_last_byte_s": round(done - sent_at, 3),
                  "mib_per_s": round(sent / (done - started) / (1 << 20), 1)}))
PY

bucket=streaming
object=big-$size
auth=(--aws-sigv4 aws:amz:us-east-1:s3 --user "$TOASTY_ACCESS_KEY:$TOASTY_SECRET_KEY")
create=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" -X PUT "http://127.0.0.1:$s3_port/$bucket")
log "create bucket: $create"
sleep 3
reset_peak
mark start-idle
sleep 5
mark end-idle

log "PUT $size bytes"
reset_peak
mark start-put
put_json=$(head -c "$size" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$key_hex" -iv 00000000000000000000000000000000 |
    python3 "$dir/put.py" 127.0.0.1 "$s3_port" "$bucket" "$object" "$size" "$TOASTY_ACCESS_KEY" "$TOASTY_SECRET_KEY")
mark end-put
log "PUT: $put_json"
sleep 2
head_out=$(curl -sS -I "${auth[@]}" "http://127.0.0.1:$s3_port/$bucket/$object" | tr -d '\r')
log "HEAD: $(echo "$head_out" | tr '\n' ' ')"

log "GET"
reset_peak
mark start-get
get_started=$(now_ms)
get_sha=$(curl -sS "${auth[@]}" -w '%{stderr}%{http_code} %{size_download} %{time_total}\n' \
    "http://127.0.0.1:$s3_port/$bucket/$object" 2>"$dir/get.w" | sha256sum | cut -d' ' -f1)
get_ms=$(($(now_ms) - get_started))
mark end-get
get_w=$(tail -1 "$dir/get.w")
log "GET: $get_w sha256 $get_sha"
sleep 2
reset_peak
mark start-idle2
sleep 5
mark end-idle2
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
status=$("$cluster" status 2>&1 | sed -n '/^node/,$p')
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
psi_end=$(grep -H some /proc/pressure/cpu /proc/pressure/io 2>/dev/null | cut -d' ' -f1-3 | tr '\n' ';' || true)
logs=$(grep -hiE 'level=(warn|error)' "$dir"/node-*.log | tail -20 || true)

PSI_START=$psi_start PSI_END=$psi_end python3 - "$samples" "$bin_commit" "$TOASTY_BIN" "$load_start" "$load_end" "$(git rev-parse HEAD)" "$*" \
    "$status" "$put_json" "$head_out" "$get_w" "$get_sha" "$get_ms" "$size" "$pids" "$start_s" "$logs" \
    >"${out:-/dev/stdout}" <<'PY'
import json, os, sys, datetime
(samples, bin_commit, bin_dir, load_start, load_end, script_commit, args, status, put_json, head_out,
 get_w, get_sha, get_ms, size, pids, start_s, logs) = sys.argv[1:]
pids = [int(p) for p in pids.split()]
marks, series, conns, lowdisk = {}, [], [], False
for line in open(samples):
    w = line.split()
    if w[0] == "lowdisk":
        lowdisk = True
        continue
    if w[0] == "conn" and len(w) == 3:
        conns.append((int(w[1]), int(w[2].split("=")[1])))
        continue
    if len(w) != 5 or not w[3].isdigit() or not w[4].isdigit():
        continue
    kind, t, node, rss, hwm = w[0], int(w[1]), int(w[2]), int(w[3]), int(w[4])
    if kind == "sample":
        series.append((t, node, rss, hwm))
    else:
        marks[(kind, node)] = (t, rss, hwm)
mib = lambda kb: round(kb / 1024, 1)
phases = {}
for name in ["idle", "put", "get", "idle2"]:
    nodes = []
    t0, t1 = marks[(f"start-{name}", 0)][0], marks[(f"end-{name}", 0)][0]
    served = sorted({pids.index(p) for t, p in conns if t0 <= t <= t1 and p in pids})
    for node in range(3):
        (_, rss0, _), (_, rss1, hwm1) = marks[(f"start-{name}", node)], marks[(f"end-{name}", node)]
        inside = [s for s in series if s[1] == node and t0 <= s[0] <= t1]
        nodes.append({"node": node, "vmrss_mib_start": mib(rss0), "vmrss_mib_end": mib(rss1),
                      "vmrss_mib_max_sampled": mib(max([s[2] for s in inside] + [rss0, rss1])),
                      "vmhwm_mib": mib(hwm1), "samples": len(inside)})
    phases[name] = {"seconds": round((t1 - t0) / 1000, 1), "s3_connection_on_nodes": served, "nodes": nodes}
put = json.loads(put_json)
code, got, total = get_w.split()
headers = {k.lower(): v for k, v in (l.split(": ", 1) for l in head_out.splitlines()[1:] if ": " in l)}
etag = (put.get("etag") or "").strip('"')
peak = max(n["vmhwm_mib"] for p in ("put", "get") for n in phases[p]["nodes"])
result = {
    "benchmark": "streaming",
    "target": "PUT and GET of a 4 GiB object through one node with peak RSS per node below 512 MiB; the bytes read back match",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "binary_commit": bin_commit, "binaries": bin_dir, "script_commit": script_commit,
    "command": "perf/streaming.sh " + args,
    "client_commands": {
        "put": "head -c SIZE /dev/zero | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 | python3 put.py (one PutObject, Content-Length, SigV4 UNSIGNED-PAYLOAD)",
        "get": "curl -sS --aws-sigv4 aws:amz:us-east-1:s3 --user AK:SK http://127.0.0.1:PORT/streaming/big-SIZE | sha256sum",
    },
    "cluster": f"3 nodes x {os.environ['TOASTY_CORES']} shard(s) on loopback (scripts/cluster.sh); S3 port shared by all shards (SO_REUSEPORT)",
    "stopped_for_low_disk": lowdisk,
    "server_config": {"cores": int(os.environ["TOASTY_CORES"]), "chunk_segments": int(os.environ["TOASTY_CHUNK_SEGMENTS"]),
                      "segment_mib": int(os.environ["TOASTY_SEGMENT_MIB"]),
                      "gc_grace_seconds": "900 (server default)", "cluster_start_s": int(start_s)},
    "loadavg_start": load_start, "loadavg_end": load_end,
    "pressure_start": os.environ.get("PSI_START"), "pressure_end": os.environ.get("PSI_END"),
    "size": int(size),
    "put": put,
    "head": {"content_length": headers.get("content-length"), "etag": headers.get("etag")},
    "get": {"status": int(code), "bytes": int(got), "seconds": float(total), "wall_ms": int(get_ms),
            "mib_per_s": round(int(got) / float(total) / (1 << 20), 1) if float(total) > 0 else None,
            "sha256": get_sha},
    "sha256_match": get_sha == put["sha256"] and int(got) == int(size),
    "etag_is_md5_of_stream": etag == put["md5"],
    "put_within_gc_grace": put["seconds"] < 900,
    "peak_vmhwm_mib_put_get": peak,
    "met_512mib": peak < 512 and put["status"] == 200 and int(code) == 200 and get_sha == put["sha256"],
    "phases": phases,
    "server_warnings_and_errors": logs.splitlines(),
    "status_at_end": status,
}
print(json.dumps(result, indent=1))
PY
