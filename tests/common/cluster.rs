//! A real local cluster for end-to-end tests: `toasty-server` processes on
//! loopback (3 nodes x 2 shards), killed and restarted at will, and
//! `toasty-client` runs against them.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NODES: usize = 3;
pub const CORES: u32 = 2;

pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_toasty-server")
}

pub fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_toasty-client")
}

pub fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// Per shard, what `/status` says.
#[derive(Clone, Debug, Default)]
pub struct ShardView {
    pub primary: bool,
    pub normal: bool,
    pub view: u64,
    pub commit: u64,
    pub objects: u64,
    pub chunks: u64,
    pub chunks_missing: u64,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub base_port: u16,
    pub metrics_port: u16,
    pub nodes: Vec<Option<Child>>,
    pub extra_args: Vec<String>,
}

impl Cluster {
    /// Ports `base + 100 i + k` for replicas, `metrics + i` for status.
    pub fn new(dir: &Path, base_port: u16, metrics_port: u16) -> Cluster {
        Cluster {
            dir: dir.to_path_buf(),
            base_port,
            metrics_port,
            nodes: (0..NODES).map(|_| None).collect(),
            extra_args: Vec::new(),
        }
    }

    pub fn peers(&self) -> String {
        (0..NODES)
            .map(|i| format!("127.0.0.1:{}", self.base_port + 100 * i as u16))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start(&mut self, node: usize) {
        assert!(self.nodes[node].is_none(), "node {node} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{node}.log")))
            .expect("open the node's log");
        let child = Command::new(server_bin())
            .args(["--node", &node.to_string(), "--peers", &self.peers()])
            .args(["--cores", &CORES.to_string(), "--cpus", "unpinned"])
            .arg("--data")
            .arg(self.dir.join(format!("node-{node}")))
            .args(["--metrics", &format!("127.0.0.1:{}", self.metrics_port + node as u16)])
            .args(["--chunk-segments", "8", "--segment-mib", "16", "--metadata-mib", "16"])
            .args(["--wal-slots", "256"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start toasty-server");
        self.nodes[node] = Some(child);
    }

    pub fn start_all(&mut self) {
        for node in 0..NODES {
            self.start(node);
        }
    }

    /// kill -9 and reap.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (clean shutdown) and wait; returns the exit status code.
    pub fn stop(&mut self, node: usize) -> Option<i32> {
        let mut child = self.nodes[node].take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn client(&self) -> Command {
        let mut command = Command::new(client_bin());
        command.args(["--peers", &self.peers(), "--cores", &CORES.to_string()]);
        command
    }

    /// `toasty-client wait`: every group answers a linearizable read, and
    /// every node started is still running (a quorum answers without the
    /// third node: one that failed at startup, e.g. a port in use, would
    /// otherwise go unnoticed until much later).
    pub fn wait_ready(&mut self) {
        let status = self.client().args(["wait", "--seconds", "120"]).status().expect("run wait");
        assert!(
            status.success(),
            "the cluster did not become ready; logs in {}",
            self.dir.display()
        );
        for (node, child) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = child {
                if let Ok(Some(exit)) = child.try_wait() {
                    panic!("node {node} exited ({exit}) while the cluster started");
                }
            }
        }
    }

    /// The status of every shard of `node`, or None if it does not answer.
    pub fn status(&self, node: usize) -> Option<Vec<ShardView>> {
        let body = http_get(self.metrics_port + node as u16, "/status")?;
        let mut shards = Vec::new();
        for part in body.split("{\"shard\":").skip(1) {
            let field = |name: &str| -> u64 {
                part.split(&format!("\"{name}\":"))
                    .nth(1)
                    .and_then(|rest| rest.split([',', '}']).next())
                    .and_then(|value| value.trim_matches('"').parse().ok())
                    .unwrap_or(0)
            };
            shards.push(ShardView {
                primary: part.contains("\"role\":\"primary\""),
                normal: part.contains("\"status\":\"normal\""),
                view: field("view"),
                commit: field("commit"),
                objects: field("objects"),
                chunks: field("chunks"),
                chunks_missing: field("chunks_missing"),
            });
        }
        Some(shards)
    }

    /// A counter of `/metrics` for one shard of `node`.
    pub fn metric(&self, node: usize, shard: u32, name: &str) -> Option<u64> {
        let body = http_get(self.metrics_port + node as u16, "/metrics")?;
        let prefix = format!("toasty_{name}{{node=\"{node}\",shard=\"{shard}\"}} ");
        body.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// The node that is the normal primary of `group`, if one is.
    pub fn primary_of(&self, group: u32) -> Option<usize> {
        (0..NODES).find(|node| {
            self.nodes[*node].is_some()
                && self
                    .status(*node)
                    .and_then(|s| s.get(group as usize).cloned())
                    .is_some_and(|s| s.primary && s.normal)
        })
    }

    /// Wait until `check` holds, polling; panics with `what` after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The highest commit of each group over the running nodes.
    pub fn commits_max(&self) -> Vec<u64> {
        let mut max = vec![0; CORES as usize];
        for node in 0..NODES {
            for (group, shard) in self.status(node).unwrap_or_default().iter().enumerate() {
                max[group] = max[group].max(shard.commit);
            }
        }
        max
    }

    /// `node` runs every group normally, at or past `commits` (under load,
    /// replicas' commit points differ by a few ops at any instant).
    pub fn caught_up(&self, node: usize, commits: &[u64]) -> bool {
        self.status(node).is_some_and(|shards| {
            shards
                .iter()
                .zip(commits)
                .all(|(shard, commit)| shard.normal && shard.commit >= *commit)
        })
    }

    /// Every running replica of every group is normal with the same commit
    /// and the same chunk count, and misses no chunk.
    pub fn converged(&self) -> bool {
        let statuses: Vec<Vec<ShardView>> = match (0..NODES).map(|n| self.status(n)).collect() {
            Some(all) => all,
            None => return false,
        };
        (0..CORES as usize).all(|group| {
            let shards: Vec<&ShardView> = statuses.iter().map(|s| &s[group]).collect();
            shards.iter().all(|s| s.normal && s.chunks_missing == 0)
                && shards
                    .iter()
                    .all(|s| s.commit == shards[0].commit && s.chunks == shards[0].chunks)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 0..NODES {
            self.kill(node);
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    std::io::Write::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// Acknowledged puts of an ack log: (key, unix ms, group).
pub fn acks(path: &Path) -> Vec<(String, u128, u32)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("ack ")?.split_whitespace();
            let key = words.next()?.to_string();
            let _size = words.next()?;
            Some((key, words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

/// Flip one byte at each of `offsets` of `path` (a disk fault).
pub fn flip_bytes(path: &Path, offsets: &[u64]) {
    use std::os::unix::fs::FileExt;
    let file =
        std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open to corrupt");
    for offset in offsets {
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, *offset).expect("read a byte");
        byte[0] ^= 0x5a;
        file.write_all_at(&byte, *offset).expect("write a byte");
    }
    file.sync_all().expect("sync the corrupted file");
}
