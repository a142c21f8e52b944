//! Real-process crash tests: `kill -9` at random moments, restart, and check
//! that every acknowledged write survived byte-exact.
//!
//! `toasty-crashtest wal` runs a one-replica VSR group on the real replica
//! file (O_DIRECT, io_uring; O_DSYNC writes, and group commit in the
//! `fdatasync` variant) and prints `ack <key>` for each
//! acknowledged write; at start it verifies every key acknowledged by the
//! earlier runs (see src/bin/toasty-crashtest.rs). The kill moments come
//! from a seed printed at the start, so a failure names its schedule.

mod common;

use common::{crash_seed, Rng, TempDir};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KILLS: usize = 24;

enum Line {
    Ack(String),
    /// A delete was sent (its outcome unknown until acknowledged).
    Del(String),
    Verified(u64),
    Lost(String),
}

#[test]
fn wal_keeps_every_acknowledged_write_across_kill_9() {
    kill_9_rounds("dsync");
}

/// The same under `--wal-sync fdatasync` (plain writes, a shared sync).
#[test]
fn wal_keeps_every_acknowledged_write_across_kill_9_with_fdatasync() {
    kill_9_rounds("fdatasync");
}

fn kill_9_rounds(wal_sync: &str) {
    let dir = TempDir::new(&format!("crash-wal-{wal_sync}"));
    let seed = crash_seed();
    let mut rng = Rng(seed);
    let acked_path = dir.0.join("acked.txt");
    // Lines `ack <key>` and `del <key>` in the order the runs printed them.
    let mut acked: Vec<String> = Vec::new();
    let mut verified_runs = 0;
    for run in 1..=KILLS as u32 + 1 {
        std::fs::write(
            &acked_path,
            acked.iter().map(|line| format!("{line}\n")).collect::<String>(),
        )
        .expect("write the acked list");
        let last = run == KILLS as u32 + 1;
        let mut command = Command::new(env!("CARGO_BIN_EXE_toasty-crashtest"));
        command
            .args(["wal", "--run", &run.to_string(), "--wal-sync", wal_sync])
            .arg("--data")
            .arg(dir.0.join("data"))
            .arg("--verify")
            .arg(&acked_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if last {
            command.args(["--writes", "1"]);
        }
        let mut child = command.spawn().expect("spawn toasty-crashtest");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let Ok(line) = String::from_utf8(line) else { continue };
                let parsed = if let Some(key) = line.strip_prefix("ack ") {
                    Line::Ack(key.to_string())
                } else if let Some(key) = line.strip_prefix("del ") {
                    Line::Del(key.to_string())
                } else if let Some(count) = line.strip_prefix("verified ") {
                    Line::Verified(count.parse().unwrap_or(u64::MAX))
                } else if let Some(keys) = line.strip_prefix("LOST ") {
                    Line::Lost(keys.to_string())
                } else {
                    continue;
                };
                if sender.send(parsed).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment: during recovery (a few ms in) or under
        // load, up to 0.8 s after start.
        let kill_after = Duration::from_millis(rng.next() % 800);
        let start = Instant::now();
        let mut run_acked = Vec::new();
        let mut verified = None;
        loop {
            if !last && start.elapsed() >= kill_after {
                break;
            }
            match receiver.recv_timeout(Duration::from_millis(5)) {
                Ok(Line::Ack(key)) => run_acked.push(format!("ack {key}")),
                Ok(Line::Del(key)) => run_acked.push(format!("del {key}")),
                Ok(Line::Verified(count)) => verified = Some(count),
                Ok(Line::Lost(keys)) => {
                    panic!("run {run} (seed {seed}): acknowledged writes lost: {keys}")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("run {run} (seed {seed}): no exit within 120 s");
            }
        }
        if !last {
            // SIGKILL: no destructor, no flush, no fdatasync of anything.
            child.kill().expect("kill -9 the child");
        }
        let status = child.wait().expect("wait for the child");
        let _ = reader.join();
        // Lines the child wrote before it died are still in the pipe.
        for line in receiver.try_iter() {
            match line {
                Line::Ack(key) => run_acked.push(format!("ack {key}")),
                Line::Del(key) => run_acked.push(format!("del {key}")),
                Line::Verified(count) => verified = Some(count),
                Line::Lost(keys) => {
                    panic!("run {run} (seed {seed}): acknowledged writes lost: {keys}")
                }
            }
        }
        if let Some(count) = verified {
            assert_eq!(count, acks(&acked), "run {run} (seed {seed}) verified a different count");
            verified_runs += 1;
        }
        if last {
            assert!(status.success(), "final run (seed {seed}) failed: {status}");
            assert_eq!(verified, Some(acks(&acked)), "final verification (seed {seed})");
        }
        acked.extend(run_acked);
    }
    // Most runs must get past recovery, or the test checked little.
    assert!(verified_runs > KILLS / 2, "only {verified_runs} runs verified (seed {seed})");
    let total = acks(&acked);
    assert!(total > 1000, "only {total} writes acknowledged in all runs (seed {seed})");
    eprintln!(
        "crash test ({wal_sync}): {KILLS} kills, {total} acknowledged writes, \
         {verified_runs} verifications"
    );
}

fn acks(lines: &[String]) -> u64 {
    lines.iter().filter(|line| line.starts_with("ack ")).count() as u64
}

/// Startup checks run before anything touches the disk: too little locked
/// memory for the executor is refused with the fix, exit status 2.
#[test]
fn startup_refuses_low_memlock_with_the_fix() {
    let dir = TempDir::new("memlock");
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -l 64 && exec {} wal --data {} --run 1 --writes 1",
            env!("CARGO_BIN_EXE_toasty-crashtest"),
            dir.0.display()
        ))
        .output()
        .expect("run toasty-crashtest under a low memlock limit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("locked-memory limit too low"), "stderr: {stderr}");
    assert!(stderr.contains("ulimit -l"), "stderr: {stderr}");
    assert!(!dir.0.join("replica.vsr").exists(), "nothing may be written after a failed check");
}

/// A directory holding someone else's files is never formatted over.
#[test]
fn startup_refuses_a_foreign_directory() {
    let dir = TempDir::new("foreign");
    std::fs::write(dir.0.join("precious.db"), b"not toasty's").expect("write a foreign file");
    let output = Command::new(env!("CARGO_BIN_EXE_toasty-crashtest"))
        .args(["wal", "--run", "1", "--writes", "1", "--data"])
        .arg(&dir.0)
        .output()
        .expect("run toasty-crashtest on a foreign directory");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("not a toasty data directory"), "stderr: {stderr}");
    let entries: Vec<_> = std::fs::read_dir(&dir.0).expect("list").collect();
    assert_eq!(entries.len(), 1, "only the foreign file remains");
}
