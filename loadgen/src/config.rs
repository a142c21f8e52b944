//! The validated run configuration (the CLI builds it; tests build it directly).

use crate::workload::{Mix, SizeDist, ZIPF_THETA_DEFAULT};
use std::net::SocketAddr;
use std::time::Duration;

/// S3 allows at most 10,000 parts per upload.
pub const PARTS_MAX: u64 = 10_000;
/// S3's smallest part (except the last) is 5 MiB; we allow smaller parts
/// for servers that accept them, down to one body header.
pub const PART_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;
pub const CONNECTIONS_MAX: usize = 10_000;
pub const THREADS_MAX: usize = 64;
pub const BACKLOG_DEFAULT: u64 = 100_000;
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Measured in README.md ("Open loop").
pub const COALESCE_DEFAULT: Duration = Duration::from_micros(100);
pub const LIST_MAX_KEYS_DEFAULT: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    Uniform,
    Zipfian { theta: f64 },
}

impl Default for KeyDist {
    fn default() -> Self {
        KeyDist::Zipfian { theta: ZIPF_THETA_DEFAULT }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Each connection keeps one request in flight.
    Closed,
    /// Requests are intended at a fixed rate (per second, all threads).
    Open { rate_per_s: f64 },
}

/// Endpoints of one run (e.g. the three nodes of a Garage cluster); at most this many.
pub const ENDPOINTS_MAX: usize = 16;

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// As the user wrote it (`http://127.0.0.1:3000`), for messages.
    pub url: String,
    /// `host:port` as sent in the Host header (and signed).
    pub host: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint { url: format!("http://{addr}"), host: addr.to_string(), addr }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Connection i goes to endpoint i mod len (setup uses the first).
    pub endpoints: Vec<Endpoint>,
    /// The --endpoint text, for the report.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub signed_payload: bool,
    pub bucket: String,
    pub key_prefix: String,
    pub keys: u64,
    pub key_dist: KeyDist,
    pub size: SizeDist,
    pub part_size_bytes: u64,
    pub mix: Mix,
    pub list_max_keys: u32,
    pub verify: bool,
    pub timeout: Duration,
    pub threads: usize,
    pub connections: usize,
    pub shape: Shape,
    pub backlog_max: u64,
    /// Open loop: a worker wakes at most once per this interval, so sends
    /// and responses batch (see README, "Open loop").
    pub coalesce: Duration,
    pub warmup: Duration,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub seed: u64,
    pub progress: bool,
    /// Set for https:// endpoints (all endpoints share the scheme).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Config {
    /// A configuration for `addr` with every knob at its default.
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            endpoints: vec![Endpoint::new(addr)],
            endpoint: format!("http://{addr}"),
            access_key: "loadgen".into(),
            secret_key: "loadgen-secret".into(),
            region: "us-east-1".into(),
            signed_payload: false,
            bucket: "loadgen".into(),
            key_prefix: "lg/".into(),
            keys: 1000,
            key_dist: KeyDist::default(),
            size: SizeDist::Fixed(4096),
            part_size_bytes: PART_BYTES_DEFAULT,
            mix: Mix::parse("put=30,get=65,list=5").expect("constant mix parses"),
            list_max_keys: LIST_MAX_KEYS_DEFAULT,
            verify: false,
            timeout: TIMEOUT_DEFAULT,
            threads: 1,
            connections: 16,
            shape: Shape::Closed,
            backlog_max: BACKLOG_DEFAULT,
            coalesce: COALESCE_DEFAULT,
            warmup: Duration::ZERO,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            seed: 1,
            progress: false,
            tls: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() || self.endpoints.len() > ENDPOINTS_MAX {
            return Err(format!("give 1..={ENDPOINTS_MAX} endpoints"));
        }
        if let Some(e) = self.endpoints.iter().find(|e| !e.addr.ip().is_loopback()) {
            return Err(format!(
                "{} is not a loopback address; this tool only targets 127.0.0.0/8 or ::1",
                e.addr
            ));
        }
        if self.keys == 0 || self.keys > crate::workload::KEYS_MAX {
            return Err(format!("--keys must be within 1..={}", crate::workload::KEYS_MAX));
        }
        if self.threads == 0 || self.threads > THREADS_MAX {
            return Err(format!("--threads must be within 1..={THREADS_MAX}"));
        }
        if self.connections < self.threads || self.connections > CONNECTIONS_MAX {
            return Err(format!("--concurrency must be within --threads..={CONNECTIONS_MAX}"));
        }
        if self.part_size_bytes < crate::workload::OBJECT_BYTES_MIN {
            return Err("--part-size is smaller than a body header (32 B)".into());
        }
        if self.size.max_bytes().div_ceil(self.part_size_bytes) > PARTS_MAX
            && self.mix.weight(crate::workload::OpKind::Multipart) > 0
        {
            return Err(format!(
                "the largest object would need more than {PARTS_MAX} parts; raise --part-size"
            ));
        }
        if let Shape::Open { rate_per_s } = self.shape {
            if !(rate_per_s > 0.0 && rate_per_s <= 10_000_000.0) {
                return Err("--rate must be within (0, 10,000,000] requests/s".into());
            }
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err("give --duration or --requests".into());
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err("--bucket must be a plain bucket name".into());
        }
        Ok(())
    }
}
