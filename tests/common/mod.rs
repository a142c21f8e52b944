//! Helpers the real-process tests share (tests/crash.rs,
//! tests/crash_chunks.rs, tests/cluster.rs).

#[allow(dead_code)] // Each test binary uses its own part.
pub mod cluster;

use std::path::PathBuf;

/// A directory under the target directory: on this machine's ext4, never
/// tmpfs (O_DIRECT), and removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = base.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A failed test keeps its directory (logs, data) for the post-mortem.
        if std::thread::panicking() {
            // CI keeps only the output: show the end of every log here.
            print_log_tails(&self.0);
            eprintln!("kept {} for inspection", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// xorshift64*: enough to spread kill moments.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The kill schedule's seed: `TOASTY_CRASH_SEED`, else the clock; printed
/// so a failure can be replayed.
pub fn crash_seed() -> u64 {
    let seed =
        std::env::var("TOASTY_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("crash test seed {seed} (TOASTY_CRASH_SEED={seed} replays the kill schedule)");
    seed
}

/// The last lines of each `*.log` directly in `dir` (node logs; not the
/// ack logs, which are data), to stderr.
fn print_log_tails(dir: &std::path::Path) {
    const LINES: usize = 40;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .filter(|path| !path.file_name().is_some_and(|name| name == "acks.log"))
        .collect();
    logs.sort();
    for log in logs {
        let Ok(bytes) = std::fs::read(&log) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LINES);
        eprintln!("--- {} (last {} of {} lines)", log.display(), lines.len() - from, lines.len());
        for line in &lines[from..] {
            eprintln!("{line}");
        }
    }
}
