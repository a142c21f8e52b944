//! Proof the simulator has teeth: every deliberately broken variant is
//! caught on a seed where the correct protocol passes.
#![cfg(feature = "sim-bugs")]

use toasty::sim::cluster::{run, FaultProfile, SimOptions};
use toasty::vsr::config::Bug;

const SEEDS_MAX: u64 = 128;

fn caught(bug: Bug) {
    for seed in 1..=SEEDS_MAX {
        for profile in [FaultProfile::Default, FaultProfile::Network] {
            let base = SimOptions { profile, requests: 600, ..SimOptions::new(seed) };
            let broken = run(SimOptions { bug, ..base.clone() });
            if broken.ok() {
                continue;
            }
            let correct = run(base);
            if correct.ok() {
                eprintln!(
                    "{}: caught at seed {seed} ({profile:?}): {}",
                    bug.name(),
                    broken.violation.unwrap_or_default()
                );
                return;
            }
        }
    }
    panic!("{} was not caught within {SEEDS_MAX} seeds", bug.name());
}

#[test]
fn commit_without_quorum() {
    caught(Bug::CommitWithoutQuorum);
}

#[test]
fn view_change_by_op_only() {
    caught(Bug::ViewChangeByOpOnly);
}

#[test]
fn prepare_ok_before_durable() {
    caught(Bug::PrepareOkBeforeDurable);
}

#[test]
fn no_parent_check() {
    caught(Bug::NoParentCheck);
}

#[test]
fn read_without_view_check() {
    caught(Bug::ReadWithoutViewCheck);
}

#[test]
fn client_table_before_commit() {
    caught(Bug::ClientTableBeforeCommit);
}
