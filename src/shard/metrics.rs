//! Per-shard metrics and status, published by each shard's event loop into
//! atomics and served by one plain thread of the process (off the shard
//! cores): `GET /metrics` in the Prometheus text format, `GET /status` as
//! JSON (what `scripts/cluster.sh status` prints).
//!
//! The shard writes with `Relaxed` stores once per tick and on events; a
//! scrape may see counters of slightly different instants, as Prometheus
//! expects of any exporter.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Latency histogram buckets (upper bounds in µs), Prometheus style.
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// A fixed-bucket histogram shared between a shard and the exporter.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn record_us(&self, value_us: u64) {
        if let Some(index) = LATENCY_BUCKETS_US.iter().position(|bound| value_us <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(value_us, Ordering::Relaxed);
    }
}

macro_rules! shard_fields {
    ($($name:ident : $kind:literal, $help:literal;)*) => {
        /// What one shard publishes. Gauges and counters alike are `u64`s.
        #[derive(Default)]
        pub struct ShardStatus {
            $(#[doc = $help] pub $name: AtomicU64,)*
            /// Prepare-to-commit latency at this replica.
            pub commit_latency: Histogram,
            /// Chunk write to durable at this shard.
            pub chunk_write_latency: Histogram,
            /// `messages_dropped_total` by reason (the replica's reasons,
            /// plus `send_failed` and `chunk_service`); a few dozen entries.
            pub drops_by_reason: std::sync::Mutex<Vec<(&'static str, u64)>>,
        }

        const FIELDS: &[(&str, &str, &str)] = &[$((stringify!($name), $kind, $help),)*];

        impl ShardStatus {
            fn values(&self) -> Vec<u64> {
                vec![$(self.$name.load(Ordering::Relaxed),)*]
            }
        }
    };
}

shard_fields! {
    up: "gauge", "1 when the shard has opened its storage and runs.";
    primary: "gauge", "1 if this replica is its group's primary.";
    status: "gauge", "0 normal, 1 view change, 2 recovering head.";
    view: "gauge", "The replica's view.";
    op: "gauge", "The replica's head op.";
    commit: "gauge", "Highest op this replica executed.";
    checkpoint: "gauge", "Op of the durable checkpoint.";
    objects: "gauge", "Objects stored in this group.";
    chunks: "gauge", "Live chunks in this shard's chunk store.";
    chunks_missing: "gauge", "Chunks referenced by committed metadata but missing here.";
    view_changes_total: "counter", "View changes this replica took part in (views installed).";
    requests_total: "counter", "Client requests received (metadata reads and writes).";
    commits_total: "counter", "Ops committed by this replica.";
    chunk_writes_total: "counter", "Chunk writes received / made durable.";
    chunk_write_bytes_total: "counter", "Bytes of chunk data made durable.";
    chunk_reads_total: "counter", "Chunk reads served.";
    chunk_read_bytes_total: "counter", "Bytes of chunk data served.";
    repairs_total: "counter", "Chunks fetched from peers and stored again (repair).";
    chunks_collected_total: "counter", "Unreferenced chunks deleted after the grace period.";
    checksum_failures_total: "counter", "Chunk reads that failed their checksum (scrubber included).";
    frames_invalid_total: "counter", "Frames that failed a checksum or header rule (connection closed).";
    messages_dropped_total: "counter", "Messages dropped by the shard (wrong cluster/group, too large, queues full).";
    messages_received_total: "counter", "Messages received over the network.";
    messages_sent_total: "counter", "Messages sent.";
    bytes_received_total: "counter", "Bytes received / sent.";
    bytes_sent_total: "counter", "bytes sent total";
    bytes_copied_receive_total: "counter", "Bytes copied in user space on receive (frames up to 256 KiB; larger ones are read in place).";
    wal_writes_total: "counter", "WAL writes and their fdatasyncs.";
    wal_fdatasyncs_total: "counter", "wal fdatasyncs total";
    chunk_fdatasyncs_total: "counter", "Chunk store fdatasyncs.";
    chunk_write_queue: "gauge", "Chunk writes waiting for room in the chunk store.";
    wal_queue: "gauge", "Writes in flight to the WAL.";
    connections: "gauge", "Open connections.";
    chunk_cache_hits_total: "counter", "Chunk reads of this shard's S3 front end served from its chunk cache / sent to a replica.";
    chunk_cache_misses_total: "counter", "chunk cache misses total";
    chunk_cache_bytes: "gauge", "Chunk bytes in the S3 front end's chunk cache.";
    md5_bytes_total: "counter", "Upload bytes the S3 front end's MD5 pool hashed (ETags; an inline object, up to --inline-max, is hashed by its request and not counted when it is the shard's only PUT).";
    md5_vector_bytes_total: "counter", "Of toasty_md5_bytes_total, the bytes hashed in vector passes (the rest went through the scalar code, one stream at a time).";
    frames_reused_total: "counter", "Large message frames (64 KiB to 1 MiB + 4 KiB) this shard filled again instead of allocating and zeroing new ones.";
    frames_allocated_total: "counter", "Large message frames this shard allocated (zeroed) because none of its pooled ones was free.";
    md5_lane_passes_total: "counter", "Vector passes of the MD5 pool (2 to 16 streams each); md5_lanes_used_total / this is the mean lane use.";
    md5_lanes_used_total: "counter", "Streams advanced by the MD5 pool's vector passes, summed over the passes.";
    peers_connected: "gauge", "Peers (other replicas of the group) connected.";
}

/// Everything the process publishes: one status per shard.
pub struct NodeStatus {
    pub node: u8,
    pub shards: Vec<Arc<ShardStatus>>,
}

impl NodeStatus {
    pub fn new(node: u8, shard_count: u32) -> Arc<NodeStatus> {
        let shards = (0..shard_count).map(|_| Arc::new(ShardStatus::default())).collect();
        Arc::new(NodeStatus { node, shards })
    }

    /// The Prometheus text exposition of every shard.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let values: Vec<Vec<u64>> = self.shards.iter().map(|s| s.values()).collect();
        for (index, (name, kind, help)) in FIELDS.iter().enumerate() {
            out.push_str(&format!("# HELP toasty_{name} {help}\n# TYPE toasty_{name} {kind}\n"));
            for (shard, shard_values) in values.iter().enumerate() {
                out.push_str(&format!(
                    "toasty_{name}{{node=\"{}\",shard=\"{shard}\"}} {}\n",
                    self.node, shard_values[index]
                ));
            }
        }
        out.push_str(
            "# HELP toasty_messages_dropped_by_reason_total messages_dropped_total by reason.\n\
             # TYPE toasty_messages_dropped_by_reason_total counter\n",
        );
        for (shard, status) in self.shards.iter().enumerate() {
            let drops = match status.drops_by_reason.lock() {
                Ok(drops) => drops.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            for (reason, count) in drops {
                out.push_str(&format!(
                    "toasty_messages_dropped_by_reason_total{{node=\"{}\",shard=\"{shard}\",\
                     reason=\"{reason}\"}} {count}\n",
                    self.node
                ));
            }
        }
        for (name, pick) in [
            (
                "commit_latency_us",
                (|s: &ShardStatus| &s.commit_latency) as fn(&ShardStatus) -> &Histogram,
            ),
            ("chunk_write_latency_us", |s: &ShardStatus| &s.chunk_write_latency),
        ] {
            out.push_str(&format!("# TYPE toasty_{name} histogram\n"));
            for (shard, status) in self.shards.iter().enumerate() {
                let histogram = pick(status);
                let labels = format!("node=\"{}\",shard=\"{shard}\"", self.node);
                let mut cumulative = 0;
                for (bound, bucket) in LATENCY_BUCKETS_US.iter().zip(&histogram.buckets) {
                    cumulative += bucket.load(Ordering::Relaxed);
                    out.push_str(&format!(
                        "toasty_{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}\n"
                    ));
                }
                let count = histogram.count.load(Ordering::Relaxed);
                out.push_str(&format!("toasty_{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n"));
                out.push_str(&format!(
                    "toasty_{name}_sum{{{labels}}} {}\ntoasty_{name}_count{{{labels}}} {count}\n",
                    histogram.sum_us.load(Ordering::Relaxed)
                ));
            }
        }
        out
    }

    /// One JSON object: the node and, per shard, role, view, ops, health.
    pub fn json(&self) -> String {
        let shards: Vec<String> = self
            .shards
            .iter()
            .enumerate()
            .map(|(shard, s)| {
                let get = |field: &AtomicU64| field.load(Ordering::Relaxed);
                let status = match get(&s.status) {
                    0 => "normal",
                    1 => "view_change",
                    _ => "recovering",
                };
                let role = if get(&s.primary) == 1 { "primary" } else { "backup" };
                let healthy = get(&s.up) == 1 && status == "normal" && get(&s.chunks_missing) == 0;
                format!(
                    "{{\"shard\":{shard},\"group\":{shard},\"up\":{},\"role\":\"{role}\",\
                     \"status\":\"{status}\",\"view\":{},\"op\":{},\"commit\":{},\
                     \"checkpoint\":{},\"objects\":{},\"chunks\":{},\"chunks_missing\":{},\
                     \"peers_connected\":{},\"healthy\":{healthy}}}",
                    get(&s.up) == 1,
                    get(&s.view),
                    get(&s.op),
                    get(&s.commit),
                    get(&s.checkpoint),
                    get(&s.objects),
                    get(&s.chunks),
                    get(&s.chunks_missing),
                    get(&s.peers_connected),
                )
            })
            .collect();
        format!("{{\"node\":{},\"shards\":[{}]}}\n", self.node, shards.join(","))
    }
}

/// Requests a scrape may send: a request line and headers, no body.
const REQUEST_BYTES_MAX: usize = 8 * 1024;

/// Serve `/metrics` and `/status` on `addr` from a thread of its own.
pub fn serve(addr: SocketAddr, status: Arc<NodeStatus>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new().name("toasty-metrics".to_string()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &status);
        }
    })?;
    Ok(())
}

fn answer(mut stream: TcpStream, status: &NodeStatus) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < REQUEST_BYTES_MAX {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (code, kind, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", status.prometheus()),
        "/status" => ("200 OK", "application/json", status.json()),
        _ => ("404 Not Found", "text/plain", "try /metrics or /status\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}
