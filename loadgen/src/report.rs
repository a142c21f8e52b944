//! The final table (stdout) and the JSON file. Field names are documented in
//! README.md ("JSON output") and are stable: add fields, never rename.

use crate::config::{Config, KeyDist, Shape};
use crate::run::{PhaseReport, RunReport};
use crate::stats::{OpStats, ALL_ERROR_KINDS};
use crate::workload::{OpKind, ALL_OPS};
use hdrhistogram::Histogram;
use std::fmt::Write;

pub const SCHEMA: &str = "toasty-loadgen/1";
const MIB: f64 = (1u64 << 20) as f64;

fn shown_ops<'a>(
    cfg: &'a Config,
    phase: &'a PhaseReport,
) -> impl Iterator<Item = (OpKind, &'a OpStats)> + 'a {
    ALL_OPS
        .iter()
        .map(move |&k| (k, &phase.stats.ops[k.index()]))
        .filter(move |(k, s)| cfg.mix.weight(*k) > 0 || s.ops_total() > 0)
}

pub fn table(cfg: &Config, report: &RunReport) -> String {
    let mut out = String::new();
    if let Some(p) = &report.prefill {
        let put = &p.stats.ops[OpKind::Put.index()];
        let _ = writeln!(
            out,
            "prefill: {} keys written in {:.2} s, {} errors",
            put.ops_ok, p.measured_s, put.ops_error
        );
    }
    let phase = &report.main;
    let secs = phase.measured_s.max(1e-9);
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "op", "ops", "ops/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let total = phase.stats.total();
    let rows = shown_ops(cfg, phase).map(|(k, s)| (k.name(), s)).chain([("total", &total)]);
    for (name, s) in rows {
        let h = &s.latency_us;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>10.1} {:>9.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            name,
            s.ops_total(),
            s.ops_total() as f64 / secs,
            s.payload_bytes as f64 / MIB / secs,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1e3,
            s.ops_error
        );
    }
    for (k, s) in shown_ops(cfg, phase) {
        if let Some(line) = error_line(s) {
            let _ = writeln!(out, "  {} errors: {line}", k.name());
        }
        if s.ops_not_found > 0 || s.ops_stale > 0 {
            let _ = writeln!(
                out,
                "  {}: {} not found (404), {} stale reads",
                k.name(),
                s.ops_not_found,
                s.ops_stale
            );
        }
    }
    let _ = writeln!(
        out,
        "latency is {}; histograms hold successful and 404 ops, not failed ones",
        latency_basis(cfg)
    );
    if let Shape::Open { rate_per_s } = cfg.shape {
        out.push_str(&open_loop_line(rate_per_s, phase, &total));
    }
    out.push_str(&cpu_line(phase));
    for v in &phase.stats.verify_failures {
        let _ = writeln!(out, "verify failure: key {} at byte {}: {}", v.key, v.offset, v.reason);
    }
    out
}

fn open_loop_line(rate_per_s: f64, phase: &PhaseReport, total: &OpStats) -> String {
    let st = &phase.stats;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1e3;
    format!(
        "open loop at {rate_per_s} req/s: service time (from actual send) p50 {:.3} ms p99 {:.3} ms; queue delay p50 {:.3} ms p99 {:.3} ms max {:.3} ms; backlog peak {}, dropped {}, left at end {}\n",
        q(&total.service_us, 0.5), q(&total.service_us, 0.99),
        q(&st.queue_delay_us, 0.5), q(&st.queue_delay_us, 0.99), st.queue_delay_us.max() as f64 / 1e3,
        st.backlog_peak, st.backlog_dropped, st.backlog_at_end
    )
}

fn cpu_line(phase: &PhaseReport) -> String {
    let secs = phase.measured_s.max(1e-9);
    let cpu = phase.cpu_user_s + phase.cpu_sys_s;
    let requests = phase.stats.requests.max(1);
    format!(
        "client CPU: user {:.3} s + sys {:.3} s = {:.3} s over {:.2} s ({:.1} % of one core), {:.1} µs per request ({} requests, {} connects, {} timed by kernel stamp)\n",
        phase.cpu_user_s, phase.cpu_sys_s, cpu, phase.measured_s, 100.0 * cpu / secs,
        cpu * 1e6 / requests as f64, phase.stats.requests, phase.stats.connects, phase.stats.responses_stamped
    )
}

fn latency_basis(cfg: &Config) -> &'static str {
    match cfg.shape {
        Shape::Closed => "measured from the actual send (closed loop)",
        Shape::Open { .. } => {
            "measured from the intended send time (open loop, coordinated omission corrected)"
        }
    }
}

fn error_line(s: &OpStats) -> Option<String> {
    if s.ops_error == 0 {
        return None;
    }
    let mut parts: Vec<String> = ALL_ERROR_KINDS
        .iter()
        .zip(&s.errors_by_kind)
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{} {n}", k.name()))
        .collect();
    parts.extend(s.errors_by_status.iter().map(|(status, n)| format!("HTTP {status}: {n}")));
    Some(parts.join(", "))
}

pub fn json(cfg: &Config, report: &RunReport) -> String {
    let phase = &report.main;
    let secs = phase.measured_s.max(1e-9);
    let mut out = String::new();
    let _ =
        write!(out, "{{\n  \"schema\": {},\n  \"config\": {},\n", quote(SCHEMA), config_json(cfg));
    let _ = writeln!(out, "  \"measured_s\": {},", num(phase.measured_s));
    let _ = writeln!(
        out,
        "  \"requests\": {},\n  \"connects\": {},\n  \"responses_stamped\": {},",
        phase.stats.requests, phase.stats.connects, phase.stats.responses_stamped
    );
    out.push_str("  \"ops\": {");
    for (i, (k, s)) in shown_ops(cfg, phase).enumerate() {
        let _ = write!(
            out,
            "{}\n    {}: {}",
            if i > 0 { "," } else { "" },
            quote(k.name()),
            op_json(s, secs)
        );
    }
    let _ = writeln!(out, "\n  }},\n  \"total\": {},", op_json(&phase.stats.total(), secs));
    let st = &phase.stats;
    match cfg.shape {
        Shape::Open { .. } => {
            let _ = writeln!(
                out,
                "  \"open_loop\": {{\"backlog_peak\": {}, \"backlog_dropped\": {}, \"backlog_at_end\": {}, \"queue_delay_us\": {}}},",
                st.backlog_peak, st.backlog_dropped, st.backlog_at_end, hist_json(&st.queue_delay_us)
            );
        }
        Shape::Closed => out.push_str("  \"open_loop\": null,\n"),
    }
    let cpu = phase.cpu_user_s + phase.cpu_sys_s;
    let _ = writeln!(
        out,
        "  \"client_cpu\": {{\"user_s\": {}, \"sys_s\": {}, \"us_per_request\": {}, \"cores_used\": {}}},",
        num(phase.cpu_user_s), num(phase.cpu_sys_s), num(cpu * 1e6 / st.requests.max(1) as f64), num(cpu / secs)
    );
    let _ = writeln!(
        out,
        "  \"process_cpu\": {{\"user_s\": {}, \"sys_s\": {}}},",
        num(report.process_user_s),
        num(report.process_sys_s)
    );
    out.push_str(&tail_json(report));
    out
}

/// `verify_failures`, `prefill` and the closing brace.
fn tail_json(report: &RunReport) -> String {
    let mut out = String::from("  \"verify_failures\": [");
    for (i, v) in report.main.stats.verify_failures.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"key\": {}, \"offset\": {}, \"reason\": {}}}",
            if i > 0 { ", " } else { "" },
            quote(&v.key),
            v.offset,
            quote(&v.reason)
        );
    }
    out.push_str("],\n");
    match &report.prefill {
        Some(p) => {
            let put = &p.stats.ops[OpKind::Put.index()];
            let _ = writeln!(
                out,
                "  \"prefill\": {{\"ops_ok\": {}, \"ops_error\": {}, \"elapsed_s\": {}}}",
                put.ops_ok,
                put.ops_error,
                num(p.measured_s)
            );
        }
        None => out.push_str("  \"prefill\": null\n"),
    }
    out.push_str("}\n");
    out
}

fn config_json(cfg: &Config) -> String {
    let (shape, rate) = match cfg.shape {
        Shape::Closed => ("closed", "null".to_string()),
        Shape::Open { rate_per_s } => ("open", num(rate_per_s)),
    };
    let key_dist = match cfg.key_dist {
        KeyDist::Uniform => "uniform".to_string(),
        KeyDist::Zipfian { theta } => format!("zipfian:{theta}"),
    };
    let mix: Vec<String> =
        ALL_OPS.iter().map(|k| format!("{}: {}", quote(k.name()), cfg.mix.weight(*k))).collect();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    format!(
        "{{\"endpoint\": {}, \"bucket\": {}, \"shape\": {}, \"rate_per_s\": {rate}, \"concurrency\": {}, \"threads\": {}, \"mix\": {{{}}}, \"size\": {}, \"part_size_bytes\": {}, \"keys\": {}, \"key_dist\": {}, \"verify\": {}, \"signed_payload\": {}, \"warmup_s\": {}, \"duration_s\": {}, \"requests\": {}, \"timeout_s\": {}, \"seed\": {}}}",
        quote(&cfg.endpoint), quote(&cfg.bucket), quote(shape), cfg.connections, cfg.threads, mix.join(", "),
        quote(&cfg.size.to_string()), cfg.part_size_bytes, cfg.keys, quote(&key_dist), cfg.verify, cfg.signed_payload,
        num(cfg.warmup.as_secs_f64()), opt(cfg.duration.map(|d| num(d.as_secs_f64()))),
        opt(cfg.requests.map(|n| n.to_string())), num(cfg.timeout.as_secs_f64()), cfg.seed
    )
}

fn op_json(s: &OpStats, secs: f64) -> String {
    let kinds: Vec<String> = ALL_ERROR_KINDS
        .iter()
        .zip(&s.errors_by_kind)
        .map(|(k, n)| format!("{}: {n}", quote(k.name())))
        .collect();
    let statuses: Vec<String> =
        s.errors_by_status.iter().map(|(st, n)| format!("\"{st}\": {n}")).collect();
    format!(
        "{{\"ops\": {}, \"ops_ok\": {}, \"ops_not_found\": {}, \"ops_error\": {}, \"ops_stale\": {}, \"ops_per_s\": {}, \"payload_bytes\": {}, \"mib_per_s\": {}, \"latency_us\": {}, \"service_us\": {}, \"errors_by_kind\": {{{}}}, \"errors_by_status\": {{{}}}}}",
        s.ops_total(), s.ops_ok, s.ops_not_found, s.ops_error, s.ops_stale, num(s.ops_total() as f64 / secs),
        s.payload_bytes, num(s.payload_bytes as f64 / MIB / secs), hist_json(&s.latency_us), hist_json(&s.service_us),
        kinds.join(", "), statuses.join(", ")
    )
}

fn hist_json(h: &Histogram<u64>) -> String {
    let q = |p: f64| h.value_at_quantile(p);
    format!(
        "{{\"count\": {}, \"mean\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}",
        h.len(), num(h.mean()), q(0.5), q(0.9), q(0.99), q(0.999), h.max()
    )
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{}", (x * 1000.0).round() / 1000.0)
    } else {
        "null".into()
    }
}

pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
