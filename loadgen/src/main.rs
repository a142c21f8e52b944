//! toasty-loadgen: see README.md beside this crate for usage.

use clap::Parser;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;
use toasty_loadgen::config::{Config, Endpoint, KeyDist, Shape};
use toasty_loadgen::workload::{parse_bytes, Mix, SizeDist};
use toasty_loadgen::{report, run, setup};

#[derive(Parser, Debug)]
#[command(
    name = "toasty-loadgen",
    version,
    about = "S3 load generator: closed or open loop, latency from the intended send time"
)]
struct Args {
    /// S3 endpoint, http://HOST:PORT (loopback only); several, comma-separated,
    /// spread the connections round-robin (e.g. Garage's three nodes).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// SHA-256 every body and sign it (default: UNSIGNED-PAYLOAD).
    #[arg(long)]
    signed_payload: bool,
    #[arg(long, default_value = "loadgen")]
    bucket: String,
    /// Create the bucket if it does not exist.
    #[arg(long)]
    create_bucket: bool,
    /// Object keys are PREFIX + a 10-digit key id.
    #[arg(long, default_value = "lg/")]
    key_prefix: String,
    /// Connections (closed loop: requests in flight).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Worker threads, each an epoll loop over its share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Open loop: intended requests per second over all connections.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: intended sends queued while all connections are busy;
    /// beyond this the oldest are dropped and counted.
    #[arg(long, default_value_t = toasty_loadgen::config::BACKLOG_DEFAULT)]
    backlog: u64,
    /// Open loop: a worker wakes at most once per this many µs, so sends and
    /// responses batch. Sends may leave this late (counted in latency);
    /// responses are timed by the kernel's receive stamp.
    #[arg(long, default_value_t = toasty_loadgen::config::COALESCE_DEFAULT.as_micros() as u64)]
    coalesce_us: u64,
    /// Operation weights: put, get, list, delete, head, multipart.
    #[arg(long, default_value = "put=30,get=65,list=5")]
    mix: String,
    /// Fixed object size (4096, 4KiB, 1MiB, 1MB).
    #[arg(long, default_value = "4KiB")]
    size: String,
    /// uniform:MIN-MAX or lognormal:MEDIAN:SIGMA:MAX (overrides --size).
    #[arg(long)]
    size_dist: Option<String>,
    /// Multipart part size (the last part may be smaller).
    #[arg(long, default_value = "8MiB")]
    part_size: String,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// uniform or zipfian.
    #[arg(long, default_value = "zipfian")]
    key_dist: String,
    /// Zipfian skew (YCSB's default 0.99).
    #[arg(long, default_value_t = toasty_loadgen::workload::ZIPF_THETA_DEFAULT)]
    zipf_theta: f64,
    /// Write every key once before the measured phase.
    #[arg(long)]
    prefill: bool,
    /// Seconds of load before measuring (not recorded).
    #[arg(long, default_value = "0")]
    warmup: String,
    /// Seconds to measure (default 10 unless --requests is given).
    #[arg(long)]
    duration: Option<String>,
    /// Measure this many operations instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Check every GET body (see README, "Verification").
    #[arg(long)]
    verify: bool,
    /// Per-request timeout (seconds, or 500ms / 2s / 1m).
    #[arg(long, default_value = "10")]
    timeout: String,
    /// max-keys of each LIST.
    #[arg(long, default_value_t = toasty_loadgen::config::LIST_MAX_KEYS_DEFAULT)]
    list_max_keys: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the results as JSON to FILE.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// https:// endpoints: trust the CA (or self-signed certificate) in this PEM file.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// https:// endpoints: accept any server certificate (test setups only).
    #[arg(long)]
    insecure: bool,
    /// No per-second progress line on stderr.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (cfg, create_bucket, prefill, json) = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("toasty-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = setup::ensure_bucket(&cfg, create_bucket) {
        eprintln!("toasty-loadgen: {e}");
        return ExitCode::from(1);
    }
    run::handle_ctrl_c();
    let result = match run::run(cfg.clone(), prefill) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("toasty-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    if run::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "toasty-loadgen: interrupted; reporting the {:.2} s measured",
            result.main.measured_s
        );
    }
    print!("{}", report::table(&cfg, &result));
    if let Some(path) = json {
        if let Err(e) = std::fs::write(&path, report::json(&cfg, &result)) {
            eprintln!("toasty-loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let errors = result.main.stats.total().ops_error;
    if errors > 0 {
        eprintln!("toasty-loadgen: {errors} operations failed");
    }
    ExitCode::SUCCESS
}

fn build_config(a: Args) -> Result<(Config, bool, bool, Option<std::path::PathBuf>), String> {
    let mut endpoints = Vec::new();
    let mut schemes = Vec::new();
    for text in a.endpoint.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (addr, host, https) = parse_endpoint(text)?;
        endpoints.push(Endpoint { url: text.trim_end_matches('/').to_string(), host, addr });
        schemes.push(https);
    }
    let first = endpoints.first().ok_or("--endpoint is empty")?.addr;
    let https = schemes[0];
    if schemes.iter().any(|&s| s != https) {
        return Err("--endpoint: mix of http:// and https:// endpoints".into());
    }
    let mut cfg = Config::new(first);
    cfg.endpoints = endpoints;
    if https {
        cfg.tls = Some(toasty_loadgen::tls::client_config(a.ca_file.as_deref(), a.insecure)?);
    } else if a.ca_file.is_some() || a.insecure {
        return Err("--ca-file and --insecure are for https:// endpoints".into());
    }
    cfg.endpoint = a.endpoint.clone();
    cfg.access_key = a.access_key;
    cfg.secret_key = a.secret_key;
    cfg.region = a.region;
    cfg.signed_payload = a.signed_payload;
    cfg.bucket = a.bucket;
    cfg.key_prefix = a.key_prefix;
    cfg.connections = a.concurrency;
    cfg.threads = a.threads;
    cfg.shape = a.rate.map_or(Shape::Closed, |rate_per_s| Shape::Open { rate_per_s });
    cfg.backlog_max = a.backlog.max(1);
    cfg.coalesce = Duration::from_micros(a.coalesce_us.min(1_000_000));
    cfg.mix = Mix::parse(&a.mix)?;
    cfg.size = match &a.size_dist {
        Some(d) => SizeDist::parse(d)?,
        None => SizeDist::Fixed(parse_bytes(&a.size)?).checked()?,
    };
    cfg.part_size_bytes = parse_bytes(&a.part_size)?;
    cfg.keys = a.keys;
    cfg.key_dist = match a.key_dist.as_str() {
        "uniform" => KeyDist::Uniform,
        "zipfian" if a.zipf_theta > 0.0 && a.zipf_theta < 1.0 => {
            KeyDist::Zipfian { theta: a.zipf_theta }
        }
        "zipfian" => return Err("--zipf-theta must be within (0, 1)".into()),
        other => return Err(format!("--key-dist {other:?}: use uniform or zipfian")),
    };
    cfg.list_max_keys = a.list_max_keys;
    cfg.verify = a.verify;
    cfg.timeout = parse_duration(&a.timeout)?;
    cfg.warmup = parse_duration(&a.warmup)?;
    cfg.requests = a.requests;
    cfg.duration = match (&a.duration, a.requests) {
        (Some(d), _) => Some(parse_duration(d)?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    cfg.seed = a.seed;
    cfg.progress = !a.no_progress;
    cfg.validate()?;
    Ok((cfg, a.create_bucket, a.prefill, a.json))
}

/// `http(s)://HOST:PORT` → the loopback address to connect to, the Host
/// header, and whether it is https.
fn parse_endpoint(endpoint: &str) -> Result<(SocketAddr, String, bool), String> {
    let (rest, https, default_port) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (rest, true, 443)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (rest, false, 80)
    } else {
        return Err(format!("--endpoint {endpoint:?} must start with http:// or https://"));
    };
    let host = rest.trim_end_matches('/');
    if host.contains('/') {
        return Err(format!(
            "--endpoint {endpoint:?} must not have a path (requests are path-style)"
        ));
    }
    let with_port =
        if host.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            && !host.ends_with(']')
        {
            host.to_string()
        } else {
            format!("{host}:{default_port}")
        };
    let addrs = with_port.to_socket_addrs().map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    let addr = addrs.into_iter().find(|a| a.ip().is_loopback()).ok_or_else(|| {
        format!("{host} is not a loopback address; this tool only targets 127.0.0.0/8 or ::1")
    })?;
    Ok((addr, host.to_string(), https))
}

/// `10`, `2.5`, `500ms`, `10s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("bad duration {text:?} (e.g. 10, 500ms, 2m)"))?;
    if !(0.0..=86_400.0 * 7.0).contains(&(value * scale)) {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}
