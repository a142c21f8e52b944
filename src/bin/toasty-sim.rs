//! `toasty-sim`: run the deterministic simulator for one seed or a range.
//!
//! The last line printed for each seed is one JSON object; the exit status is
//! 0 iff every seed is ok. A violation prints what broke and how to replay it.

use clap::Parser;
use toasty::sim::cluster::{run, FaultProfile, SimOptions};
use toasty::vsr::config::Bug;

#[derive(Parser, Debug)]
#[command(name = "toasty-sim", about = "Deterministic simulation of a toasty cluster")]
struct Args {
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B exclusive).
    #[arg(long)]
    seeds: Option<String>,
    /// Replicas per group (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    replicas: u8,
    /// Replication groups (shards).
    #[arg(long, default_value_t = 2)]
    groups: u32,
    /// Clients per group.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Requests the clients must complete per seed.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Fault profile: default (everything), network (no crashes or disk faults) or quiet.
    #[arg(long, default_value = "default")]
    faults: String,
    /// A deliberately broken variant (needs the `sim-bugs` feature).
    #[arg(long, default_value = "none")]
    bug: String,
    /// Stop at the first violation.
    #[arg(long)]
    fail_fast: bool,
    /// Start no new seed after this many seconds (a time box for CI).
    #[arg(long)]
    time_limit: Option<u64>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.trim().parse().map_err(|e| format!("bad start: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("bad end: {e}"))?;
    if b <= a {
        return Err("empty range".into());
    }
    Ok((a, b))
}

fn main() {
    let args = Args::parse();
    let (first, end) = match (&args.seed, &args.seeds) {
        (Some(seed), _) => (*seed, seed + 1),
        (None, Some(range)) => match parse_range(range) {
            Ok(range) => range,
            Err(error) => {
                eprintln!("toasty-sim: --seeds {range}: {error}");
                std::process::exit(2);
            }
        },
        (None, None) => {
            eprintln!("toasty-sim: give --seed S or --seeds A..B");
            std::process::exit(2);
        }
    };
    if ![1, 3, 5].contains(&args.replicas) || args.groups == 0 || args.clients == 0 {
        eprintln!("toasty-sim: --replicas must be 1, 3 or 5; --groups and --clients at least 1");
        std::process::exit(2);
    }
    let profile = match args.faults.as_str() {
        "default" => FaultProfile::Default,
        "quiet" => FaultProfile::Quiet,
        "network" => FaultProfile::Network,
        other => {
            eprintln!("toasty-sim: unknown fault profile {other:?} (default, network, quiet)");
            std::process::exit(2);
        }
    };
    let Some(bug) = Bug::from_name(&args.bug) else {
        eprintln!("toasty-sim: unknown bug {:?}", args.bug);
        std::process::exit(2);
    };
    if bug != Bug::None && !cfg!(feature = "sim-bugs") {
        eprintln!("toasty-sim: --bug needs a build with --features sim-bugs");
        std::process::exit(2);
    }
    let mut failures = 0u64;
    let mut seeds_run = 0u64;
    let started = std::time::Instant::now();
    for seed in first..end {
        if args.time_limit.is_some_and(|limit| started.elapsed().as_secs() >= limit) {
            break;
        }
        seeds_run += 1;
        let options = SimOptions {
            replica_count: args.replicas,
            group_count: args.groups,
            clients_per_group: args.clients,
            requests: args.requests,
            profile,
            bug,
            ..SimOptions::new(seed)
        };
        let result = run(options);
        if let Some(violation) = &result.violation {
            failures += 1;
            println!("seed {seed}: VIOLATION: {violation}");
            println!(
                "replay: toasty-sim --seed {seed} --replicas {} --groups {} --clients {} --requests {} --faults {}{}",
                args.replicas, args.groups, args.clients, args.requests, args.faults,
                if bug == Bug::None { String::new() } else { format!(" --bug {}", bug.name()) }
            );
        }
        println!("{}", result.json());
        if failures > 0 && args.fail_fast {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "toasty-sim: {seeds_run} seeds from {first} in {seconds:.1} s ({:.0} seeds/min), {failures} with violations",
        seeds_run as f64 * 60.0 / seconds.max(0.001)
    );
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
