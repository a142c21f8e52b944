//! Whole-cluster simulator runs: each can fail with a violation report.

use toasty::sim::cluster::{run, FaultProfile, SimOptions};

fn options(seed: u64, replicas: u8, groups: u32, profile: FaultProfile) -> SimOptions {
    SimOptions { replica_count: replicas, group_count: groups, profile, ..SimOptions::new(seed) }
}

/// A run must be free of violations; without faults it must also finish
/// the whole workload (with faults a seed may spend its time unavailable).
fn assert_ok(options: SimOptions) {
    let result = run(options.clone());
    assert!(result.ok(), "{options:?}: {}", result.violation.unwrap_or_default());
    if options.profile == FaultProfile::Quiet {
        assert!(result.requests_acked >= options.requests, "{}", result.json());
    }
    assert!(result.commits > 0, "{}", result.json());
}

#[test]
fn quiet_single_replica() {
    assert_ok(options(1, 1, 1, FaultProfile::Quiet));
}

#[test]
fn quiet_three_replicas_two_groups() {
    for seed in 1..=3 {
        assert_ok(options(seed, 3, 2, FaultProfile::Quiet));
    }
}

#[test]
fn quiet_five_replicas() {
    assert_ok(options(7, 5, 1, FaultProfile::Quiet));
}

/// Same seed, same run: the trace hash covers every commit and reply.
#[test]
fn same_seed_same_trace_hash() {
    for profile in [FaultProfile::Quiet, FaultProfile::Default] {
        let a = run(options(42, 3, 2, profile));
        let b = run(options(42, 3, 2, profile));
        assert_eq!(a.trace_hash, b.trace_hash, "{profile:?}");
        assert_eq!(a.ticks, b.ticks);
        assert_eq!(a.violation, b.violation);
        let c = run(options(43, 3, 2, profile));
        assert_ne!(a.trace_hash, c.trace_hash, "different seeds gave the same trace");
    }
}

/// Seeds that once found a bug: a failure here is a regression.
#[test]
fn regression_seeds() {
    let text = include_str!("regression_seeds.txt");
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut fields = line.split_whitespace();
        let profile = match fields.next() {
            Some("network") => FaultProfile::Network,
            Some("default") => FaultProfile::Default,
            Some("quiet") => FaultProfile::Quiet,
            other => panic!("bad profile {other:?} in regression_seeds.txt"),
        };
        let mut number = || fields.next().and_then(|s| s.parse::<u64>().ok());
        let (seed, replicas, groups) = (number(), number(), number());
        let (Some(seed), Some(replicas), Some(groups)) = (seed, replicas, groups) else {
            panic!("regression_seeds.txt: expected `profile seed replicas groups`: {line}");
        };
        assert_ok(options(seed, replicas as u8, groups as u32, profile));
    }
}
