//! What a run measured: per-operation histograms and counts, merged across
//! worker threads at the end.

use crate::workload::{OpKind, OP_KINDS};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Histograms hold 1 µs .. 1 h at 3 significant digits (~0.1 % error).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;
/// Verify failures kept (with their key) for the report; the count is exact.
pub const VERIFY_FAILURES_KEPT_MAX: usize = 20;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect failed (refused, unreachable).
    Connect,
    /// No complete response within --timeout.
    Timeout,
    /// The connection broke (reset, EOF) with a request in flight.
    Connection,
    /// The response was not valid HTTP/S3 (bad head, no UploadId, ...).
    Protocol,
    /// An HTTP status that is an error for this operation.
    Http,
    /// A GET body failed verification.
    Verify,
}

pub const ERROR_KINDS: usize = 6;
pub const ALL_ERROR_KINDS: [ErrorKind; ERROR_KINDS] = [
    ErrorKind::Connect,
    ErrorKind::Timeout,
    ErrorKind::Connection,
    ErrorKind::Protocol,
    ErrorKind::Http,
    ErrorKind::Verify,
];

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Http => "http",
            ErrorKind::Verify => "verify",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OpStats {
    /// Operations that succeeded (2xx, body verified if --verify).
    pub ops_ok: u64,
    /// GET/HEAD/DELETE answered 404: a real answer, counted apart.
    pub ops_not_found: u64,
    pub ops_error: u64,
    /// GETs that returned an older valid version than one acknowledged
    /// before the GET was sent (included in ops_ok; see README).
    pub ops_stale: u64,
    /// Object payload bytes moved by successful ops (sent for PUT, received for GET).
    pub payload_bytes: u64,
    /// From the intended send time (open loop) or the actual one (closed loop).
    pub latency_us: Histogram<u64>,
    /// From the moment the first request byte was written.
    pub service_us: Histogram<u64>,
    pub errors_by_kind: [u64; ERROR_KINDS],
    pub errors_by_status: BTreeMap<u16, u64>,
}

impl OpStats {
    pub fn new() -> OpStats {
        OpStats {
            ops_ok: 0,
            ops_not_found: 0,
            ops_error: 0,
            ops_stale: 0,
            payload_bytes: 0,
            latency_us: new_histogram(),
            service_us: new_histogram(),
            errors_by_kind: [0; ERROR_KINDS],
            errors_by_status: BTreeMap::new(),
        }
    }

    pub fn ops_total(&self) -> u64 {
        self.ops_ok + self.ops_not_found + self.ops_error
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.ops_ok += other.ops_ok;
        self.ops_not_found += other.ops_not_found;
        self.ops_error += other.ops_error;
        self.ops_stale += other.ops_stale;
        self.payload_bytes += other.payload_bytes;
        self.latency_us.add(&other.latency_us).expect("same bounds");
        self.service_us.add(&other.service_us).expect("same bounds");
        for i in 0..ERROR_KINDS {
            self.errors_by_kind[i] += other.errors_by_kind[i];
        }
        for (status, n) in &other.errors_by_status {
            *self.errors_by_status.entry(*status).or_default() += n;
        }
    }
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub key: String,
    pub offset: u64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct RunStats {
    pub ops: Vec<OpStats>,
    /// HTTP requests completed (a multipart upload is several).
    pub requests: u64,
    /// Connections opened (the first of each counts too).
    pub connects: u64,
    /// Responses timed by the kernel's receive stamp (the rest: by read time).
    pub responses_stamped: u64,
    /// Open loop: intended sends dropped because the backlog was full.
    pub backlog_dropped: u64,
    pub backlog_peak: u64,
    /// Open loop: intended sends still queued when the run ended.
    pub backlog_at_end: u64,
    /// Open loop: intended send time to actual send (the generator's own lag
    /// plus waiting for a free connection).
    pub queue_delay_us: Histogram<u64>,
    pub verify_failures: Vec<VerifyReport>,
}

impl RunStats {
    pub fn new() -> RunStats {
        RunStats {
            ops: (0..OP_KINDS).map(|_| OpStats::new()).collect(),
            requests: 0,
            connects: 0,
            responses_stamped: 0,
            backlog_dropped: 0,
            backlog_peak: 0,
            backlog_at_end: 0,
            queue_delay_us: new_histogram(),
            verify_failures: Vec::new(),
        }
    }

    pub fn op(&mut self, kind: OpKind) -> &mut OpStats {
        &mut self.ops[kind.index()]
    }

    pub fn merge(&mut self, other: &RunStats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
        self.requests += other.requests;
        self.connects += other.connects;
        self.responses_stamped += other.responses_stamped;
        self.backlog_dropped += other.backlog_dropped;
        self.backlog_peak = self.backlog_peak.max(other.backlog_peak);
        self.backlog_at_end += other.backlog_at_end;
        self.queue_delay_us.add(&other.queue_delay_us).expect("same bounds");
        for v in &other.verify_failures {
            if self.verify_failures.len() < VERIFY_FAILURES_KEPT_MAX {
                self.verify_failures.push(v.clone());
            }
        }
    }

    pub fn total(&self) -> OpStats {
        let mut all = OpStats::new();
        for op in &self.ops {
            all.merge(op);
        }
        all
    }
}

impl Default for RunStats {
    fn default() -> Self {
        Self::new()
    }
}

/// One second of one worker, for the progress line.
#[derive(Debug)]
pub struct Interval {
    pub worker: usize,
    pub second: u64,
    pub measuring: bool,
    pub ops: u64,
    pub errors: u64,
    pub payload_bytes: u64,
    pub backlog: u64,
    pub latency_us: Histogram<u64>,
}

pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}
