//! Real-process fault tests of a local cluster: 3 `toasty-server` nodes x 2
//! shards on loopback, driven by `toasty-client` (the object client).
//!
//! (a) kill -9 the primary of each group in turn under a steady write load:
//!     writes resume (the time to resume is printed, not asserted: speed is
//!     a benchmark, perf/failover.md), and every acknowledged object reads
//!     back byte for byte.
//! (b) kill -9 all three nodes mid-load and restart them: every
//!     acknowledged object reads back byte for byte.
//! (c) stop one node, write 10,000 objects, restart it: it catches up (state
//!     sync or repair) and its chunk store converges to its peers'.
//! (d) flip bytes in one node's chunk file and WAL while it is down: reads
//!     stay correct and the damage is repaired from its peers.
//!
//! Each test fails if an acknowledged object is lost or wrong, if writes do
//! not resume, or if the replicas do not converge within a generous bound
//! (a liveness check, not a timing one). The tests run one at a time: four
//! clusters at once would starve a 2-core machine.

mod common;

use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::cluster::{acks, flip_bytes, unix_ms, Cluster, CORES, NODES};
use common::TempDir;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A background load writing unique keys and logging every ack.
fn load(cluster: &Cluster, dir: &TempDir, run: &str, size: usize, seconds: u32) -> Child {
    cluster
        .client()
        .args(["load", "--bucket", "test", "--op", "put", "--retry", "--concurrency", "8"])
        .args(["--size", &size.to_string(), "--seconds", &seconds.to_string(), "--run", run])
        .arg("--ack-log")
        .arg(dir.0.join("acks.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start toasty-client load")
}

fn load_count(cluster: &Cluster, dir: &TempDir, run: &str, size: usize, count: u64) {
    let output = cluster
        .client()
        .args(["load", "--bucket", "test", "--op", "put", "--retry", "--concurrency", "32"])
        .args(["--size", &size.to_string(), "--count", &count.to_string(), "--run", run])
        .arg("--ack-log")
        .arg(dir.0.join("acks.log"))
        .output()
        .expect("run toasty-client load");
    eprintln!("load {run}: {}", String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        output.status.success(),
        "load {run} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every ack of the log reads back with exactly its bytes.
fn verify(cluster: &Cluster, dir: &TempDir, prefer: usize) {
    let output = cluster
        .client()
        .args(["--prefer", &prefer.to_string(), "verify", "--bucket", "test"])
        .arg("--acks")
        .arg(dir.0.join("acks.log"))
        .output()
        .expect("run toasty-client verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("verify: {}", stdout.trim());
    assert!(
        output.status.success(),
        "acknowledged objects lost: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stop_load(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// (a) Writes resume after the primary of each group is killed.
#[test]
fn failover_kill_primary_of_each_group() {
    let _serial = serial();
    let dir = TempDir::new("cluster-failover");
    let mut cluster = Cluster::new(&dir.0, 21000, 21500);
    cluster.start_all();
    cluster.wait_ready();
    let kills: usize =
        std::env::var("TOASTY_FAILOVER_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(2);
    let loader = load(&cluster, &dir, "a", 256, 30 + 15 * kills as u32);
    std::thread::sleep(Duration::from_secs(3));
    let mut resumed = Vec::new();
    for kill in 0..kills {
        let group = (kill % CORES as usize) as u32;
        cluster.wait_for("a normal primary", Duration::from_secs(60), |c| {
            c.primary_of(group).is_some()
        });
        let Some(primary) = cluster.primary_of(group) else { unreachable!() };
        let acked_before = acks(&dir.0.join("acks.log")).len();
        assert!(acked_before > 0, "no write was acknowledged before the kill");
        let killed_at = unix_ms();
        cluster.kill(primary);
        let log = dir.0.join("acks.log");
        // Resumed: an ack of this group well after the kill.
        cluster.wait_for("writes to resume", Duration::from_secs(60), |_| {
            acks(&log).iter().any(|(_, at, g)| *g == group && *at > killed_at + 100)
        });
        let mut times: Vec<u128> =
            acks(&log).iter().filter(|(_, _, g)| *g == group).map(|(_, at, _)| *at).collect();
        times.sort_unstable();
        // The stall: the longest gap between this group's acks around the kill.
        let stall = times
            .windows(2)
            .filter(|w| w[1] > killed_at && w[0] < killed_at + 1_000)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0);
        eprintln!("kill {kill}: node {primary} (primary of group {group}); writes resumed, stall {stall} ms");
        resumed.push(stall);
        let commits = cluster.commits_max();
        cluster.start(primary);
        cluster.wait_for("the node to rejoin", Duration::from_secs(120), |c| {
            c.caught_up(primary, &commits)
        });
    }
    stop_load(loader);
    resumed.sort_unstable();
    eprintln!(
        "failover: {} kills, stall p50 {} ms, max {} ms (TOASTY_FAILOVER_KILLS={kills})",
        resumed.len(),
        resumed[resumed.len() / 2],
        resumed[resumed.len() - 1]
    );
    verify(&cluster, &dir, 0);
}

/// (b) A whole-cluster kill -9 loses no acknowledged write.
#[test]
fn whole_cluster_kill_loses_nothing() {
    let _serial = serial();
    let dir = TempDir::new("cluster-killall");
    let mut cluster = Cluster::new(&dir.0, 22000, 22500);
    cluster.start_all();
    cluster.wait_ready();
    let small = load(&cluster, &dir, "b", 1024, 60);
    std::thread::sleep(Duration::from_secs(4));
    for node in 0..NODES {
        cluster.kill(node);
    }
    stop_load(small);
    let acked = acks(&dir.0.join("acks.log")).len();
    assert!(acked > 100, "only {acked} writes acknowledged before the kill");
    cluster.start_all();
    cluster.wait_ready();
    verify(&cluster, &dir, 1);
}

/// (c) A node that missed 10,000 writes catches up and converges.
#[test]
fn stopped_node_catches_up() {
    let _serial = serial();
    let dir = TempDir::new("cluster-catchup");
    let mut cluster = Cluster::new(&dir.0, 23000, 23500);
    cluster.start_all();
    cluster.wait_ready();
    assert_eq!(cluster.stop(2), Some(0), "a clean shutdown exits 0");
    load_count(&cluster, &dir, "inline", 1024, 9_000);
    load_count(&cluster, &dir, "chunked", 65_536, 1_000);
    cluster.start(2);
    cluster.wait_for("node 2 to converge", Duration::from_secs(180), |c| c.converged());
    let status = cluster.status(2).expect("node 2 answers");
    let objects: u64 = status.iter().map(|s| s.objects).sum();
    assert_eq!(objects, 10_000, "node 2 holds every object");
    let chunks: u64 = status.iter().map(|s| s.chunks).sum();
    assert!(chunks >= 1_000, "node 2 holds the chunks ({chunks})");
    verify(&cluster, &dir, 2);
}

/// (d) Flipped bytes in a chunk file and a WAL are detected and repaired.
#[test]
fn corrupt_chunks_and_wal_are_repaired() {
    let _serial = serial();
    let dir = TempDir::new("cluster-corrupt");
    let mut cluster = Cluster::new(&dir.0, 24000, 24500);
    cluster.start_all();
    cluster.wait_ready();
    load_count(&cluster, &dir, "chunked", 65_536, 600);
    load_count(&cluster, &dir, "inline", 1024, 600);
    cluster.wait_for("replicas to converge", Duration::from_secs(120), |c| c.converged());
    let victim = 1;
    assert_eq!(cluster.stop(victim), Some(0));
    let segment = 16u64 << 20;
    for shard in 0..CORES {
        let shard_dir = dir.0.join(format!("node-{victim}/shard-{shard}"));
        // Inside records all over every segment's front: headers and data.
        let chunk_offsets: Vec<u64> = (0..8u64)
            .flat_map(|s| (0..40u64).map(move |j| s * segment + 8192 + j * (68 << 10) + 1000))
            .collect();
        flip_bytes(&shard_dir.join("chunks.seg"), &chunk_offsets);
        // Prepare slots 1..30: superblock (16 KiB) and header ring (256 KiB) first.
        let wal_offsets: Vec<u64> =
            (1..30u64).map(|slot| (16 << 10) + (256 << 10) + slot * (64 << 10) + 100).collect();
        flip_bytes(&shard_dir.join("replica.vsr"), &wal_offsets);
    }
    cluster.start(victim);
    cluster.wait_ready();
    // Reads first from the damaged node: bad copies are never returned.
    verify(&cluster, &dir, victim);
    cluster
        .wait_for("the damaged node to be repaired", Duration::from_secs(180), |c| c.converged());
    let repairs: u64 =
        (0..CORES).filter_map(|shard| cluster.metric(victim, shard, "repairs_total")).sum();
    eprintln!("node {victim} repaired {repairs} chunks from its peers");
    assert!(repairs > 0, "the damaged chunks were not repaired from peers");
    verify(&cluster, &dir, victim);
}
