//! A whole run: optional prefill, then warm-up and the measured phase, the
//! workers on their threads and the progress line on the calling thread.

use crate::config::{Config, Shape};
use crate::engine::{process_cpu_us, run_worker, Plan, Shared, Source};
use crate::stats::{Interval, RunStats};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set by the first Ctrl-C: workers stop issuing, drain, and the run
/// reports what it measured so far. A second Ctrl-C kills the process.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // SAFETY: restoring the default disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Installs the Ctrl-C handler (the binary calls this; tests do not).
pub fn handle_ctrl_c() {
    // SAFETY: the handler only stores to an atomic and calls signal().
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

/// Prefix for a stderr message: on a terminal it first clears the
/// progress line it would otherwise run into.
pub fn stderr_prefix() -> &'static str {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(2) } == 1 {
        "\r\x1b[K"
    } else {
        ""
    }
}

/// Workers start together this long after they are spawned, so thread
/// start-up is not in anyone's first interval.
const START_DELAY: Duration = Duration::from_millis(20);

pub struct PhaseReport {
    pub stats: RunStats,
    pub measured_s: f64,
    /// Worker threads' CPU inside the measured window.
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
}

pub struct RunReport {
    pub prefill: Option<PhaseReport>,
    pub main: PhaseReport,
    /// The whole process, start to end of the run (setup, prefill included).
    pub process_user_s: f64,
    pub process_sys_s: f64,
}

pub fn run(cfg: Config, prefill: bool) -> Result<RunReport, String> {
    cfg.validate()?;
    let shared = Shared::new(cfg);
    let prefill = if prefill {
        let phase = Phase {
            name: "prefill",
            source: Source::Prefill { first: 0, stride: 0 },
            shape: Shape::Closed,
            warmup: Duration::ZERO,
            duration: None,
            requests: None,
        };
        Some(run_phase(&shared, &phase)?)
    } else {
        None
    };
    let cfg = &shared.cfg;
    let phase = Phase {
        name: "run",
        source: Source::Mix,
        shape: cfg.shape,
        warmup: cfg.warmup,
        duration: cfg.duration,
        requests: cfg.requests,
    };
    let main = run_phase(&shared, &phase)?;
    let (user_us, sys_us) = process_cpu_us();
    Ok(RunReport {
        prefill,
        main,
        process_user_s: user_us as f64 / 1e6,
        process_sys_s: sys_us as f64 / 1e6,
    })
}

struct Phase {
    name: &'static str,
    source: Source,
    shape: Shape,
    warmup: Duration,
    duration: Option<Duration>,
    requests: Option<u64>,
}

fn run_phase(shared: &Shared, phase: &Phase) -> Result<PhaseReport, String> {
    let cfg = &shared.cfg;
    let workers = cfg.threads;
    let start = Instant::now() + START_DELAY;
    let measure_from = start + phase.warmup;
    let (tx, rx) = mpsc::channel::<Interval>();
    let plans: Vec<Plan> = (0..workers)
        .map(|w| Plan {
            worker: w,
            workers,
            connections: share(cfg.connections as u64, workers, w) as usize,
            shape: match phase.shape {
                Shape::Closed => Shape::Closed,
                Shape::Open { rate_per_s } => {
                    Shape::Open { rate_per_s: rate_per_s / workers as f64 }
                }
            },
            source: match phase.source {
                Source::Prefill { .. } => {
                    Source::Prefill { first: w as u64, stride: workers as u64 }
                }
                Source::Mix => Source::Mix,
            },
            start,
            measure_from,
            end: phase.duration.map(|d| measure_from + d),
            ops_limit: phase.requests.map(|n| share(n, workers, w)),
            progress: cfg.progress.then(|| tx.clone()),
            seed: cfg.seed.wrapping_mul(0x9e37_79b9).wrapping_add(w as u64 * 1_000_003),
        })
        .collect();
    drop(tx);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                std::thread::Builder::new()
                    .name(format!("loadgen-{}", plan.worker))
                    .spawn_scoped(scope, move || run_worker(shared, plan))
                    .map_err(|e| format!("cannot start a worker thread: {e}"))
            })
            .collect();
        print_progress(rx, workers, phase.name);
        handles
            .into_iter()
            .map(|h| {
                h.and_then(|h| h.join().map_err(|_| "a worker thread panicked".to_string())?)
            })
            .collect::<Vec<_>>()
    });
    let mut report =
        PhaseReport { stats: RunStats::new(), measured_s: 0.0, cpu_user_s: 0.0, cpu_sys_s: 0.0 };
    for result in results {
        let r = result?;
        report.stats.merge(&r.stats);
        report.measured_s = report.measured_s.max(r.measured.as_secs_f64());
        report.cpu_user_s += r.cpu_user_us as f64 / 1e6;
        report.cpu_sys_s += r.cpu_sys_us as f64 / 1e6;
    }
    Ok(report)
}

/// Worker `w`'s share of `total` split over `workers` (the first ones get
/// the remainder).
fn share(total: u64, workers: usize, w: usize) -> u64 {
    total / workers as u64 + ((w as u64) < total % workers as u64) as u64
}

/// Prints one line per second once every worker has reported that second.
fn print_progress(rx: mpsc::Receiver<Interval>, workers: usize, phase: &str) {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    let mut pending: BTreeMap<u64, (usize, Interval)> = BTreeMap::new();
    let mut printed_any = false;
    for report in rx {
        let second = report.second;
        let entry = pending.entry(second).or_insert_with(|| (0, report_shell(&report)));
        entry.0 += 1;
        let agg = &mut entry.1;
        agg.ops += report.ops;
        agg.errors += report.errors;
        agg.payload_bytes += report.payload_bytes;
        agg.backlog += report.backlog;
        agg.measuring |= report.measuring;
        let _ = agg.latency_us.add(&report.latency_us);
        if entry.0 < workers {
            continue;
        }
        let (_, agg) = pending.remove(&second).expect("entry exists");
        let h = &agg.latency_us;
        let label = if phase == "prefill" {
            "prefill"
        } else if agg.measuring {
            "measure"
        } else {
            "warmup"
        };
        let line = format!(
            "[{:>4}s] {label:<7} {:>8} ops/s {:>9.1} MiB/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}  backlog {}",
            second,
            agg.ops,
            agg.payload_bytes as f64 / (1u64 << 20) as f64,
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            agg.errors,
            agg.backlog,
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
        printed_any = true;
    }
    if tty && printed_any {
        eprintln!();
    }
}

fn report_shell(r: &Interval) -> Interval {
    Interval {
        worker: 0,
        second: r.second,
        measuring: false,
        ops: 0,
        errors: 0,
        payload_bytes: 0,
        backlog: 0,
        latency_us: crate::stats::new_histogram(),
    }
}
