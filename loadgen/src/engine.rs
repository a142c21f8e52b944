//! A worker: one thread, one epoll loop (mio) over its share of the
//! connections. It picks operations, schedules them (closed or open loop),
//! and records what came back. See README.md, "I/O model", for why.

use crate::body::{BodyCheck, BodySpec, Pattern};
use crate::config::{Config, KeyDist, Shape};
use crate::conn::{BodyOut, Conn, OpState, Recv, Step};
use crate::http::{self, BodyDecoder};
use crate::s3::{self, AmzClock, Request};
use crate::sigv4::{self, Signer};
use crate::stats::{
    record_us, ErrorKind, Interval, RunStats, VerifyReport, VERIFY_FAILURES_KEPT_MAX,
};
use crate::timer::TimerFd;
use crate::workload::{KeyChooser, OpKind, Rng};
use mio::{Events, Interest, Poll, Token};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Timeouts and connect back-offs are checked this often.
const TICK: Duration = Duration::from_millis(10);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
const EVENTS_CAPACITY: usize = 1024;
const TIMER_TOKEN: Token = Token(usize::MAX - 1);
/// After a failed connect a connection waits 10 ms, doubling up to 1 s, so a
/// dead endpoint costs little CPU.
const BACKOFF_MS_MIN: u64 = 10;
const BACKOFF_MS_MAX: u64 = 1000;
/// Distinct error messages printed per run; the counts stay exact.
const ERROR_MESSAGES_MAX: usize = 20;

/// Shared by all workers of a run.
pub struct Shared {
    pub cfg: Config,
    pub pattern: Pattern,
    pub chooser: KeyChooser,
    /// Per key: the highest version a PUT was started for / acknowledged.
    pub issued: Vec<AtomicU32>,
    pub acked: Vec<AtomicU32>,
    /// Tags this run's bodies (versions restart at 1 every run).
    pub run_id: u32,
    printed: Mutex<BTreeSet<String>>,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        let chooser = match cfg.key_dist {
            KeyDist::Uniform => KeyChooser::uniform(cfg.keys),
            KeyDist::Zipfian { theta } => KeyChooser::zipfian(cfg.keys, theta),
        };
        let versions = || (0..cfg.keys).map(|_| AtomicU32::new(0)).collect();
        let clock_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pid = std::process::id() as u64;
        let run_id = (crate::workload::mix64(clock_ns ^ (pid << 32)) as u32).max(1);
        Shared {
            run_id,
            pattern: Pattern::new(),
            chooser,
            issued: versions(),
            acked: versions(),
            printed: Mutex::new(BTreeSet::new()),
            cfg,
        }
    }

    /// Prints `message` to stderr the first time `what` is seen in the run.
    pub fn print_once(&self, what: &str, message: &str) {
        let Ok(mut printed) = self.printed.lock() else { return };
        if printed.len() < ERROR_MESSAGES_MAX && printed.insert(what.to_string()) {
            eprintln!("{}error: {message}", crate::run::stderr_prefix());
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// PUT keys `first, first + stride, ...` below `keys`, once each.
    Prefill {
        first: u64,
        stride: u64,
    },
    Mix,
}

pub struct Plan {
    pub worker: usize,
    pub connections: usize,
    /// Open loop: this worker's share of the rate.
    pub shape: Shape,
    pub source: Source,
    pub start: Instant,
    /// Ops completing before this are warm-up and not recorded.
    pub measure_from: Instant,
    pub end: Option<Instant>,
    /// Ops this worker starts after `measure_from` (its share of --requests).
    pub ops_limit: Option<u64>,
    pub progress: Option<Sender<Interval>>,
    pub seed: u64,
    /// How many workers share the run (their open-loop schedules interleave).
    pub workers: usize,
}

pub struct WorkerResult {
    pub stats: RunStats,
    /// This thread's CPU time inside the measured window.
    pub cpu_user_us: u64,
    pub cpu_sys_us: u64,
    /// First to last recorded completion (or the window, if longer).
    pub measured: Duration,
}

enum Outcome {
    Ok { stale: bool },
    NotFound,
    Error { kind: ErrorKind, status: Option<u16> },
}

struct OpenLoop {
    interval_ns: u64,
    /// Index of the next intended send; intended time = first + index * interval.
    next_index: u64,
    first: Instant,
    index_limit: u64,
    timer: TimerFd,
    timer_armed_for: Option<Instant>,
}

struct Worker<'s> {
    shared: &'s Shared,
    cfg: &'s Config,
    plan: Plan,
    poll: Poll,
    conns: Vec<Conn>,
    idle: Vec<usize>,
    in_flight: usize,
    rng: Rng,
    signer: Signer,
    clock: AmzClock,
    stats: RunStats,
    interval: Interval,
    prefill_next: u64,
    ops_started_measured: u64,
    stopping: bool,
    open: Option<OpenLoop>,
    measuring: bool,
    cpu_at_measure: (u64, u64),
    last_completion: Option<Instant>,
    /// When poll last returned (open-loop coalescing counts from here).
    last_wake: Instant,
    stopped_at: Option<Instant>,
    clock_map: crate::rxtime::ClockMap,
}

pub fn run_worker(shared: &Shared, plan: Plan) -> Result<WorkerResult, String> {
    let mut worker =
        Worker::new(shared, plan).map_err(|e| format!("cannot set up the event loop: {e}"))?;
    worker.run().map_err(|e| format!("event loop failed: {e}"))?;
    let cpu_end = thread_cpu_us();
    let (user0, sys0) = worker.cpu_at_measure;
    // The window ends when the worker stopped issuing (the planned end,
    // or earlier on Ctrl-C) or at the last completion, whichever is later.
    let stopped_at = worker.stopped_at.unwrap_or(worker.plan.measure_from);
    let measured_end = worker.last_completion.map_or(stopped_at, |last| last.max(stopped_at));
    Ok(WorkerResult {
        measured: measured_end.saturating_duration_since(worker.plan.measure_from),
        cpu_user_us: cpu_end.0.saturating_sub(user0),
        cpu_sys_us: cpu_end.1.saturating_sub(sys0),
        stats: worker.stats,
    })
}

/// (user, system) CPU of the calling thread, in µs.
pub fn thread_cpu_us() -> (u64, u64) {
    rusage_us(libc::RUSAGE_THREAD)
}

/// (user, system) CPU of the whole process, in µs.
pub fn process_cpu_us() -> (u64, u64) {
    rusage_us(libc::RUSAGE_SELF)
}

fn rusage_us(who: libc::c_int) -> (u64, u64) {
    // SAFETY: getrusage writes one plain struct that we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (0, 0);
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

impl<'s> Worker<'s> {
    fn new(shared: &'s Shared, plan: Plan) -> io::Result<Worker<'s>> {
        let cfg = &shared.cfg;
        let open = match plan.shape {
            Shape::Closed => None,
            Shape::Open { rate_per_s } => Some(OpenLoop::new(&plan, rate_per_s)?),
        };
        let poll = Poll::new()?;
        if let Some(open) = &open {
            open.timer.register(poll.registry(), TIMER_TOKEN)?;
            crate::timer::set_thread_timer_slack_ns(1_000);
        }
        // Connections are numbered across workers (w, w + workers, ...) and
        // spread round-robin over the endpoints.
        let endpoints = cfg.endpoints.len();
        let conns = (0..plan.connections)
            .map(|i| Conn { endpoint: (plan.worker + i * plan.workers) % endpoints, ..Conn::new() })
            .collect();
        Ok(Worker {
            shared,
            cfg,
            poll,
            conns,
            idle: (0..plan.connections).rev().collect(),
            in_flight: 0,
            rng: Rng::new(plan.seed),
            signer: Signer::new(&cfg.access_key, &cfg.secret_key, &cfg.region),
            clock: AmzClock::new(),
            stats: RunStats::new(),
            interval: Interval {
                worker: plan.worker,
                second: 0,
                measuring: false,
                ops: 0,
                errors: 0,
                payload_bytes: 0,
                backlog: 0,
                latency_us: crate::stats::new_histogram(),
            },
            prefill_next: match plan.source {
                Source::Prefill { first, .. } => first,
                Source::Mix => 0,
            },
            ops_started_measured: 0,
            stopping: false,
            open,
            measuring: false,
            cpu_at_measure: (0, 0),
            last_completion: None,
            last_wake: plan.start,
            stopped_at: None,
            clock_map: crate::rxtime::ClockMap::now(),
            plan,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        // All workers begin together; nothing before `start` is in any interval.
        std::thread::sleep(self.plan.start.saturating_duration_since(Instant::now()));
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut next_tick = Instant::now() + TICK;
        let mut next_second = self.plan.start + PROGRESS_INTERVAL;
        loop {
            let now = Instant::now();
            self.update_phase(now);
            if self.stopping && self.in_flight == 0 {
                break;
            }
            if now >= next_tick {
                self.on_tick(now);
                next_tick = now + TICK;
            }
            if now >= next_second {
                self.send_progress(next_second);
                next_second += PROGRESS_INTERVAL;
            }
            if !self.stopping {
                self.dispatch(now);
            }
            let mut wake = next_tick.min(next_second);
            if let (Some(end), false) = (self.plan.end, self.stopping) {
                wake = wake.min(end);
            }
            self.coalesce();
            match self.poll.poll(&mut events, Some(wake.saturating_duration_since(Instant::now())))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.last_wake = Instant::now();
            for event in events.iter() {
                let token = event.token();
                if token == TIMER_TOKEN {
                    if let Some(open) = self.open.as_mut() {
                        open.timer_armed_for = None;
                    }
                    continue;
                }
                self.on_event(
                    token.0,
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                    event.is_writable(),
                );
            }
        }
        // The last, partial second is not sent: its ops/s would be wrong.
        Ok(())
    }

    /// Open loop: wake at most once per `coalesce`. Responses that arrive
    /// meanwhile wait in the socket (their kernel receive stamp times them);
    /// sends due meanwhile leave late, and that lateness is in the latency.
    fn coalesce(&self) {
        if self.open.is_none() || self.cfg.coalesce.is_zero() || self.stopping {
            return;
        }
        let earliest = self.last_wake + self.cfg.coalesce;
        let now = Instant::now();
        if now < earliest {
            std::thread::sleep(earliest - now);
        }
    }

    fn update_phase(&mut self, now: Instant) {
        if !self.measuring && now >= self.plan.measure_from {
            self.measuring = true;
            self.cpu_at_measure = thread_cpu_us();
        }
        if self.stopping {
            return;
        }
        let interrupted = crate::run::INTERRUPTED.load(Ordering::Relaxed);
        let time_up = interrupted || self.plan.end.is_some_and(|end| now >= end);
        let ops_done = self.plan.ops_limit.is_some_and(|limit| self.ops_started_measured >= limit);
        let prefill_done = matches!(self.plan.source, Source::Prefill { .. })
            && self.prefill_next >= self.cfg.keys;
        let open_done = self.open.as_ref().is_some_and(|o| o.next_index >= o.index_limit);
        if time_up && self.open.is_some() {
            // Intended sends that fell due inside the window still go out
            // (those the send slack held back, typically); nothing after.
            self.dispatch(now);
        }
        if time_up || ops_done || prefill_done || open_done {
            self.stopping = true;
            self.stopped_at = Some(now);
            if let Some(open) = &self.open {
                self.stats.backlog_at_end = open.backlog(now);
            }
        }
    }

    fn send_progress(&mut self, at: Instant) {
        let Some(tx) = &self.plan.progress else { return };
        let second = at.saturating_duration_since(self.plan.start).as_secs();
        let backlog = self.open.as_ref().map_or(0, |o| o.backlog(at));
        let report = Interval {
            worker: self.plan.worker,
            second,
            measuring: self.measuring,
            ops: std::mem::take(&mut self.interval.ops),
            errors: std::mem::take(&mut self.interval.errors),
            payload_bytes: std::mem::take(&mut self.interval.payload_bytes),
            backlog,
            latency_us: self.interval.latency_us.clone(),
        };
        self.interval.latency_us.reset();
        let _ = tx.send(report);
    }

    fn on_tick(&mut self, now: Instant) {
        self.clock_map = crate::rxtime::ClockMap::now();
        for ci in 0..self.conns.len() {
            let conn = &mut self.conns[ci];
            if conn.op.as_ref().is_some_and(|op| now > op.deadline) {
                let what =
                    if conn.connected { "no complete response" } else { "connect did not finish" };
                let msg = format!(
                    "{} {}: {what} within {:?}",
                    self.cfg.endpoints[conn.endpoint].url,
                    op_label(conn),
                    self.cfg.timeout
                );
                self.shared.print_once("timeout", &msg);
                self.close(ci);
                self.finish_op(ci, Outcome::Error { kind: ErrorKind::Timeout, status: None }, now);
            } else if conn.op.is_none() && conn.retry_at.is_some_and(|t| now >= t) {
                conn.retry_at = None;
                self.idle.push(ci);
            }
        }
    }

    fn dispatch(&mut self, now: Instant) {
        if self.open.is_none() {
            while !self.stopping {
                let Some(ci) = self.idle.pop() else { break };
                self.start_op(ci, None, now);
                self.update_phase(now);
            }
            return;
        }
        let backlog_max = self.cfg.backlog_max;
        let mut open = self.open.as_mut().expect("checked above");
        let due = open.due(now);
        if due - open.next_index > backlog_max {
            self.stats.backlog_dropped += due - open.next_index - backlog_max;
            open.next_index = due - backlog_max;
        }
        while open.next_index < due {
            let Some(ci) = self.idle.pop() else { break };
            let intended = open.intended(open.next_index);
            open.next_index += 1;
            record_us(
                &mut self.stats.queue_delay_us,
                now.saturating_duration_since(intended).as_micros() as u64,
            );
            self.start_op(ci, Some(intended), now);
            open = self.open.as_mut().expect("checked above");
        }
        let open = self.open.as_mut().expect("checked above");
        self.stats.backlog_peak = self.stats.backlog_peak.max(due - open.next_index);
        if !self.idle.is_empty() && open.next_index < open.index_limit && open.next_index >= due {
            // Wake for the next intended send, but not sooner than one slack
            // after the last wake: sends then batch, each at most the slack
            // late (counted in latency and queue delay).
            let target = open.intended(open.next_index).max(self.last_wake + self.cfg.coalesce);
            if open.timer_armed_for.is_none_or(|armed| armed > target) {
                open.timer.arm_in(target.saturating_duration_since(now));
                open.timer_armed_for = Some(target);
            }
        }
    }

    fn start_op(&mut self, ci: usize, intended: Option<Instant>, now: Instant) {
        let kind = match self.plan.source {
            Source::Prefill { stride, .. } => {
                let key = self.prefill_next;
                self.prefill_next += stride;
                self.begin(ci, OpKind::Put, key, intended, now);
                return;
            }
            Source::Mix => self.cfg.mix.pick(&mut self.rng),
        };
        let key = self.shared.chooser.next_key(&mut self.rng);
        self.begin(ci, kind, key, intended, now);
    }

    fn begin(
        &mut self,
        ci: usize,
        kind: OpKind,
        key_id: u64,
        intended: Option<Instant>,
        now: Instant,
    ) {
        if now >= self.plan.measure_from {
            self.ops_started_measured += 1;
        }
        let writes = matches!(kind, OpKind::Put | OpKind::Multipart);
        let version = if writes {
            self.shared.issued[key_id as usize].fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        let size_bytes = if writes { self.cfg.size.sample(&mut self.rng) } else { 0 };
        let parts = if kind == OpKind::Multipart {
            size_bytes.div_ceil(self.cfg.part_size_bytes) as u32
        } else {
            0
        };
        let op = OpState {
            kind,
            step: if kind == OpKind::Multipart { Step::CreateUpload } else { Step::Single },
            key_id,
            version,
            acked_at_send: self.shared.acked[key_id as usize].load(Ordering::Relaxed),
            size_bytes,
            parts,
            intended,
            sent_at: now,
            deadline: now + self.cfg.timeout,
            payload_bytes: 0,
        };
        self.conns[ci].op = Some(op);
        self.in_flight += 1;
        self.issue(ci, now);
    }

    /// Builds the request for the op's current step and starts sending it.
    fn issue(&mut self, ci: usize, now: Instant) {
        self.build_request(ci);
        let conn = &mut self.conns[ci];
        if let Some(op) = conn.op.as_mut() {
            op.deadline = now + self.cfg.timeout;
        }
        conn.recv = Recv::Head;
        if conn.stream.is_none() {
            self.connect(ci, now);
        } else if conn.connected {
            self.send(ci, now);
        }
    }

    fn connect(&mut self, ci: usize, now: Instant) {
        self.stats.connects += 1;
        match mio::net::TcpStream::connect(self.cfg.endpoints[self.conns[ci].endpoint].addr) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self.poll.registry().register(&mut stream, Token(ci), interest) {
                    return self.connect_failed(ci, &e, now);
                }
                // Nagle would hold small requests for the peer's delayed ACK
                // (~40 ms); the peers measured in research/peers.md lost that.
                let _ = stream.set_nodelay(true);
                // Without stamps, responses are timed when read (no worse
                // than most tools, but wake-up lag then counts as latency).
                let _ = crate::rxtime::enable(std::os::fd::AsRawFd::as_raw_fd(&stream));
                self.conns[ci].stream = Some(stream);
                self.conns[ci].connected = false;
                if let Err(e) = self.start_tls(ci) {
                    let err = io::Error::other(e);
                    self.connect_failed(ci, &err, now);
                }
            }
            Err(e) => self.connect_failed(ci, &e, now),
        }
    }

    /// Puts a TLS session on the fresh socket (https:// endpoints); its
    /// ClientHello leaves with the first flush.
    fn start_tls(&mut self, ci: usize) -> Result<(), String> {
        let Some(config) = &self.cfg.tls else { return Ok(()) };
        let name = crate::tls::server_name(&self.cfg.endpoints[self.conns[ci].endpoint].host)?;
        let mut tls =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
        tls.set_buffer_limit(Some(crate::tls::TLS_BUFFER_BYTES_MAX));
        self.conns[ci].tls = Some(tls);
        Ok(())
    }

    fn connect_failed(&mut self, ci: usize, e: &io::Error, now: Instant) {
        let ep = &self.cfg.endpoints[self.conns[ci].endpoint];
        let msg = format!("cannot connect to {} ({}): {e}", ep.url, ep.addr);
        self.shared.print_once(&format!("connect:{:?}", e.kind()), &msg);
        self.close(ci);
        let conn = &mut self.conns[ci];
        conn.backoff_ms = (conn.backoff_ms * 2).clamp(BACKOFF_MS_MIN, BACKOFF_MS_MAX);
        conn.retry_at = Some(now + Duration::from_millis(conn.backoff_ms));
        self.finish_op(ci, Outcome::Error { kind: ErrorKind::Connect, status: None }, now);
    }

    fn send(&mut self, ci: usize, now: Instant) {
        match self.conns[ci].flush(&self.shared.pattern) {
            Ok(_) => {}
            Err(e) => self.broken(ci, &format!("write failed: {e}"), now),
        }
    }

    fn on_event(&mut self, ci: usize, readable: bool, writable: bool) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(ci) else { return };
        let Some(stream) = conn.stream.as_ref() else { return };
        if !conn.connected {
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                return self.connect_failed(ci, &e, now);
            }
            match stream.peer_addr() {
                Ok(_) => {
                    conn.connected = true;
                    conn.backoff_ms = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.connect_failed(ci, &e, now),
            }
            if conn.op.is_some() {
                self.send(ci, now);
            }
        } else if writable && conn.op.is_some() {
            self.send(ci, now);
        }
        if readable {
            self.on_readable(ci, now);
        }
    }
}

impl OpenLoop {
    fn new(plan: &Plan, rate_per_s: f64) -> io::Result<OpenLoop> {
        let interval_ns = ((1e9 / rate_per_s) as u64).max(1);
        // Workers interleave their schedules instead of sending in unison.
        let offset_ns = interval_ns * plan.worker as u64 / plan.workers.max(1) as u64;
        let first = plan.start + Duration::from_nanos(offset_ns);
        let warmup_ns = plan.measure_from.saturating_duration_since(plan.start).as_nanos() as u64;
        let index_limit = match (plan.end, plan.ops_limit) {
            (_, Some(limit)) => warmup_ns / interval_ns + limit,
            (Some(end), None) => {
                (end.saturating_duration_since(first).as_nanos() as u64).div_ceil(interval_ns)
            }
            (None, None) => u64::MAX,
        };
        Ok(OpenLoop {
            interval_ns,
            next_index: 0,
            first,
            index_limit,
            timer: TimerFd::new()?,
            timer_armed_for: None,
        })
    }

    fn intended(&self, index: u64) -> Instant {
        self.first + Duration::from_nanos(index.saturating_mul(self.interval_ns))
    }

    /// How many intended sends are due at `now` (capped at the limit).
    fn due(&self, now: Instant) -> u64 {
        if now < self.first {
            return 0;
        }
        let elapsed_ns = now.duration_since(self.first).as_nanos() as u64;
        (elapsed_ns / self.interval_ns + 1).min(self.index_limit)
    }

    fn backlog(&self, now: Instant) -> u64 {
        self.due(now).saturating_sub(self.next_index)
    }
}

fn op_label(conn: &Conn) -> String {
    match &conn.op {
        Some(op) => format!("{} of key id {} ({:?})", op.kind.name(), op.key_id, op.step),
        None => "idle connection".into(),
    }
}

mod respond;
