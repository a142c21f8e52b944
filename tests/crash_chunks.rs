//! Real-process crash test of the chunk store: `kill -9` at random moments,
//! restart, and check that every acknowledged chunk survived byte-exact.
//!
//! `toasty-chunks crash` runs one shard's chunk store on its real file
//! (O_DIRECT, io_uring, group commit; see src/bin/toasty-chunks.rs), prints
//! `ack <id> <len> <crc32c>` for each durable append and `del <id>` before
//! each delete reaches the disk, and at start reads back every chunk the
//! earlier runs acknowledged. The kill moments come from a seed printed at
//! the start (`TOASTY_CRASH_SEED` replays it).
//!
//! What makes it fail: an acknowledged, undeleted chunk missing or with
//! other bytes after a restart, a deleted one coming back with other bytes
//! (`LOST`); a chunk the scrubber or compaction finds corrupt (`CORRUPT`); a
//! verification that checked another number of chunks than were
//! acknowledged; a final run that does not verify everything; most runs
//! killed before they verified (the test would check little); too few
//! acknowledgements or no deletes (the load did not exercise the store).

mod common;

use common::{crash_seed, Rng, TempDir};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KILLS: usize = 24;
/// One kill in this many lands in the first `KILL_STARTUP_MAX_MS` after
/// start (recovery and verification take ~0.2-0.5 s here, so some of these
/// land in the load anyway); the others within `KILL_LOAD_MAX_MS` after the
/// run printed `verified`. Counting from `verified` keeps most runs
/// verified however slow a loaded machine makes recovery.
const KILL_STARTUP_ONE_IN: u64 = 4;
const KILL_STARTUP_MAX_MS: u64 = 500;
const KILL_LOAD_MAX_MS: u64 = 600;
/// Acknowledged appends the runs must reach together: about 300 MiB of
/// chunks, so segments fill, deletes start and compaction runs.
const ACKS_MIN: u64 = 2_000;

enum Line {
    /// The whole line: `ack <id> <len> <crc32c>`.
    Ack(String),
    /// `del <id>`: the delete may or may not have happened.
    Del(String),
    Verified(u64),
    Lost(String),
    Corrupt(String),
}

fn parse(line: &str) -> Option<Line> {
    if line.starts_with("ack ") {
        Some(Line::Ack(line.to_string()))
    } else if line.starts_with("del ") {
        Some(Line::Del(line.to_string()))
    } else if let Some(count) = line.strip_prefix("verified ") {
        Some(Line::Verified(count.parse().unwrap_or(u64::MAX)))
    } else if let Some(ids) = line.strip_prefix("LOST ") {
        Some(Line::Lost(ids.to_string()))
    } else {
        line.strip_prefix("CORRUPT ").map(|id| Line::Corrupt(id.to_string()))
    }
}

/// What one run printed.
#[derive(Default)]
struct RunOutput {
    lines: Vec<String>,
    verified: Option<u64>,
}

impl RunOutput {
    fn take(&mut self, line: Line, run: u32, seed: u64) {
        match line {
            Line::Ack(line) | Line::Del(line) => self.lines.push(line),
            Line::Verified(count) => self.verified = Some(count),
            Line::Lost(ids) => panic!("run {run} (seed {seed}): acknowledged chunks lost: {ids}"),
            Line::Corrupt(id) => panic!("run {run} (seed {seed}): chunk {id} found corrupt"),
        }
    }
}

#[test]
fn chunks_keep_every_acknowledged_append_across_kill_9() {
    let dir = TempDir::new("crash-chunks");
    let seed = crash_seed();
    let started = Instant::now();
    let mut rng = Rng(seed);
    let acked_path = dir.0.join("acked.txt");
    let data = dir.0.join("data");
    // `ack` and `del` lines in the order the runs printed them.
    let mut lines: Vec<String> = Vec::new();
    let mut verified_runs = 0;
    for run in 1..=KILLS as u32 + 1 {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(&acked_path, text).expect("write the acked list");
        let last = run == KILLS as u32 + 1;
        let mut command = Command::new(env!("CARGO_BIN_EXE_toasty-chunks"));
        command
            .args(["crash", "--run", &run.to_string()])
            .arg("--data")
            .arg(&data)
            .arg("--verify")
            .arg(&acked_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if last {
            command.args(["--acks", "1"]);
        }
        let mut child = command.spawn().expect("spawn toasty-chunks");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = parse(&line) {
                    if sender.send(parsed).is_err() {
                        break;
                    }
                }
            }
        });
        let startup = rng.next().is_multiple_of(KILL_STARTUP_ONE_IN);
        let kill_after = if startup {
            Duration::from_millis(rng.next() % KILL_STARTUP_MAX_MS)
        } else {
            Duration::from_millis(rng.next() % KILL_LOAD_MAX_MS)
        };
        let start = Instant::now();
        let mut output = RunOutput::default();
        let mut verified_at = None;
        loop {
            let since = if startup { Some(start) } else { verified_at };
            if !last && since.is_some_and(|since| since.elapsed() >= kill_after) {
                break;
            }
            match receiver.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => {
                    if matches!(line, Line::Verified(_)) {
                        verified_at = Some(Instant::now());
                    }
                    output.take(line, run, seed);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("run {run} (seed {seed}): no exit within 60 s");
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
            output.take(line, run, seed);
        }
        if let Some(count) = output.verified {
            assert_eq!(count, acks(&lines), "run {run} (seed {seed}) verified a different count");
            verified_runs += 1;
        }
        if last {
            assert!(status.success(), "final run (seed {seed}) failed: {status}");
            assert_eq!(output.verified, Some(acks(&lines)), "final verification (seed {seed})");
        }
        lines.extend(output.lines);
    }
    assert!(verified_runs > KILLS / 2, "only {verified_runs} runs verified (seed {seed})");
    let total = acks(&lines);
    let deletes = lines.iter().filter(|line| line.starts_with("del ")).count();
    assert!(total >= ACKS_MIN, "only {total} chunks acknowledged in all runs (seed {seed})");
    assert!(deletes > 0, "no delete was issued in any run (seed {seed})");
    eprintln!(
        "crash test: {KILLS} kills, {total} acknowledged chunks, {deletes} deletes, \
         {verified_runs} verifications, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn acks(lines: &[String]) -> u64 {
    lines.iter().filter(|line| line.starts_with("ack ")).count() as u64
}
