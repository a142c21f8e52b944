//! Crash-test target for real-process `kill -9` tests (tests/crash.rs).
//!
//! `toasty-crashtest wal --data DIR --run R [--verify FILE]` runs a
//! one-replica VSR group (R=1) on the real replica file (`shard::storage`,
//! O_DIRECT through io_uring, O_DSYNC or group commit per `--wal-sync`)
//! with in-process clients that put objects `r<R>-<client>-<n>` with
//! contents derived from the key, alone or in batches. It prints
//! `ack <key>` for every put the replica acknowledged (after the WAL write
//! is durable), one line each, flushed. To keep the store bounded, each
//! client deletes its oldest keys in later batches; `del <key>` is printed
//! *before* such a request is sent (its outcome is unknown until
//! acknowledged). At start it opens the durable state, waits
//! until the replica has recovered (a view of its own, every logged op
//! committed), and checks the keys of `--verify FILE`: every acknowledged
//! key never scheduled for deletion must read back with exactly its
//! contents, and a key scheduled for deletion must be absent or intact. It
//! prints `verified <count>`, or `LOST <count> <first keys>` and exits 1.
//! The test kills it at random moments and restarts it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use toasty::shard::checks::{self, DirIdentity, IdentityState, StartupParams};
use toasty::shard::storage::{ReplicaFile, StorageError, WalSync, BATCH_WRITES_MAX};
use toasty::vsr::config::Config;
use toasty::vsr::message::{Command, Header, Message, OPERATION_REGISTER};
use toasty::vsr::replica::{format, Action, Replica, Status, Target};
use toasty::vsr::state_machine::{
    DeleteCondition, ObjectMeta, ObjectStore, ObjectStoreLimits, PutCondition, Reply, Request,
    StateMachine,
};
use toasty::vsr::storage::{Write, WriteId};

/// Fixed so that every run of a data directory belongs to one cluster.
const CLUSTER: u128 = 0x7061_7374_7954_6f61_7374_7943_7261_7368;
const BUCKET_ID: u64 = 1;
/// Keys a client keeps before it deletes its oldest. Every run leaves up to
/// clients x (KEEP + 8) keys behind (a new run does not delete an older
/// run's keys), so 25 runs of 8 clients stay under `limits().objects_max`
/// (a first version with 600 overflowed it at run 19: LimitExceeded).
const KEEP: usize = 200;
const TICK: Duration = Duration::from_millis(10);
/// Recovery must finish within this many ticks (60 s) or the run fails.
const RECOVERY_TICKS_MAX: u64 = 6_000;

#[derive(Parser)]
#[command(about = "Crash-test target: a one-replica group on the real WAL (see tests/crash.rs)")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Write objects through a one-replica VSR group on the real replica file.
    Wal {
        #[arg(long)]
        data: PathBuf,
        /// Run number: part of every key, so runs never collide.
        #[arg(long)]
        run: u32,
        /// Keys acknowledged by earlier runs, to check before writing.
        #[arg(long)]
        verify: Option<PathBuf>,
        /// Stop after this many acknowledged writes (0: run until killed).
        #[arg(long, default_value_t = 0)]
        writes: u64,
        /// glommio io_memory in bytes (memlock is 8 MiB on these machines).
        #[arg(long, default_value_t = 1 << 20)]
        io_memory: usize,
        /// Concurrent client sessions, each with one request in flight.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
        clients: u32,
        /// Requests: `mixed` (single puts and batches of 2-8, the crash test)
        /// or `single` (one put per request: one WAL write per request).
        #[arg(long, default_value = "mixed")]
        requests: String,
        /// At the end, print one JSON line with throughput, group commits
        /// and request latency percentiles (the perf/storage.sh benchmark).
        #[arg(long)]
        report: bool,
        /// How writes become durable, as toasty-server's --wal-sync.
        #[arg(long, value_enum, default_value_t = WalSync::Dsync)]
        wal_sync: WalSync,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Mode::Wal { data, run, verify, writes, io_memory, clients, requests, report, wal_sync } =
        cli.command;
    let batches = match requests.as_str() {
        "mixed" => true,
        "single" => false,
        other => {
            eprintln!("toasty-crashtest: --requests must be mixed or single, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let load = Load { run, writes, clients: clients as usize, batches, report, wal_sync };
    if let Err(code) = startup_checks(&data, io_memory) {
        return code;
    }
    let executor =
        LocalExecutorBuilder::new(Placement::Unbound).name("crashtest").io_memory(io_memory).make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("toasty-crashtest: cannot start a glommio executor: {error}");
            return ExitCode::from(2);
        }
    };
    let result = executor.run(async move { wal(&data, verify.as_deref(), load).await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("toasty-crashtest: {error}");
            ExitCode::from(1)
        }
    }
}

/// The startup checks a server runs (shard::checks), with their exit code:
/// every failure printed at once, then exit 2; a fresh directory gets its
/// identity before anything else is written to it.
fn startup_checks(data: &Path, io_memory: usize) -> Result<(), ExitCode> {
    if let Err(error) = std::fs::create_dir_all(data) {
        eprintln!(
            "toasty-crashtest: {}: cannot create the data directory: {error}",
            data.display()
        );
        return Err(ExitCode::from(2));
    }
    let identity = DirIdentity { cluster: CLUSTER, node: 0, shard: 0, format_version: 1 };
    let needed = if ReplicaFile::exists(data) {
        0
    } else {
        toasty::shard::storage::ZoneOffsets::new(&config().layout()).total
    };
    let report = checks::run_all(&StartupParams {
        data_dir: data.to_path_buf(),
        identity,
        executors: 1,
        io_memory_bytes: io_memory,
        free_space_required_bytes: needed,
    });
    if !report.is_ok() {
        for failure in &report.failures {
            eprintln!("toasty-crashtest: startup check failed: {failure}");
        }
        return Err(ExitCode::from(2));
    }
    if report.identity == Some(IdentityState::Fresh) {
        if let Err(error) = checks::identity_create(data, &identity) {
            eprintln!("toasty-crashtest: {error}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(())
}

fn config() -> Config {
    let mut config = Config::production(CLUSTER, 0, 0, 1);
    // Checkpoints sized for this test's small store keep the file small.
    let snapshot = ObjectStore::new(limits()).snapshot_size_max() as u64;
    config.checkpoint_size_max = (snapshot + (1 << 20)).div_ceil(1 << 20) << 20;
    config
}

fn limits() -> ObjectStoreLimits {
    ObjectStoreLimits {
        buckets_max: 1,
        objects_max: 50_000,
        key_size_max: 64,
        user_metadata_size_max: 0,
        chunks_per_object_max: 1,
        inline_size_max: 64,
        objects_bytes_max: usize::MAX,
    }
}

/// Contents of `key`: 1..=64 bytes derived from it.
fn contents(key: &str) -> Vec<u8> {
    let hash = xxhash_rust::xxh3::xxh3_128(key.as_bytes()).to_le_bytes();
    let size = 1 + (hash[0] as usize % 64);
    (0..size).map(|i| hash[i % 16] ^ (i as u8)).collect()
}

fn put(key: &str) -> Request {
    let data = contents(key);
    Request::PutObject {
        bucket_id: BUCKET_ID,
        key: key.as_bytes().to_vec(),
        condition: PutCondition::None,
        object: ObjectMeta {
            size: data.len() as u64,
            etag: b"crashtest".to_vec(),
            inline_data: data,
            ..ObjectMeta::default()
        },
    }
}

struct Load {
    run: u32,
    writes: u64,
    clients: usize,
    batches: bool,
    report: bool,
    wal_sync: WalSync,
}

struct LoadClient {
    id: u128,
    index: usize,
    registered: bool,
    request: u32,
    next_key: u64,
    /// (request number, keys it puts, keys it deletes).
    in_flight: Option<(u32, Vec<String>, Vec<String>)>,
    /// Acknowledged keys not yet scheduled for deletion, oldest first.
    kept: std::collections::VecDeque<String>,
    sent: Instant,
}

async fn wal(data: &Path, verify: Option<&Path>, load_options: Load) -> Result<(), String> {
    let run = load_options.run;
    let error = |e: StorageError| e.to_string();
    std::fs::create_dir_all(data).map_err(|e| format!("{}: create: {e}", data.display()))?;
    let config = config();
    let layout = config.layout();
    if !ReplicaFile::exists(data) {
        let formatted = format(&config, &ObjectStore::new(limits()));
        ReplicaFile::create(data, layout, &formatted).await.map_err(error)?;
    }
    let file =
        Rc::new(ReplicaFile::open(data, layout, load_options.wal_sync).await.map_err(error)?);
    let mut reader = file.reader().map_err(error)?;
    let seed = u64::from(std::process::id()) ^ (u64::from(run) << 32);
    let mut replica = Replica::open(config, ObjectStore::new(limits()), &mut reader, seed)
        .map_err(|e| format!("open: {e:?}"))?;
    if reader.errors > 0 {
        eprintln!("toasty-crashtest: {} read errors at open (treated as corrupt)", reader.errors);
    }
    let mut driver = Driver {
        file,
        replica: &mut replica,
        pending: Vec::new(),
        done: Vec::new(),
        group_commits: 0,
    };
    // Recover: run until the replica leads its own view with everything
    // it logged committed.
    let mut ticks = 0u64;
    loop {
        driver.step(&mut |_, _| {}).await?;
        let r = &driver.replica;
        if r.status() == Status::Normal && r.commit_min() == r.op() && r.writes_pending() == 0 {
            break;
        }
        ticks += 1;
        if ticks > RECOVERY_TICKS_MAX {
            return Err(format!("not recovered after {ticks} ticks: {}", r.debug_state()));
        }
    }
    if let Some(path) = verify {
        verify_keys(driver.replica, path)?;
    }
    load(&mut driver, load_options).await
}

fn verify_keys(replica: &Replica<ObjectStore>, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let deleted: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|line| line.strip_prefix("del ")).collect();
    let mut lost = Vec::new();
    let mut count = 0u64;
    for key in text.lines().filter_map(|line| line.strip_prefix("ack ")) {
        count += 1;
        let mut reply = Vec::new();
        let head = Request::HeadObject { bucket_id: BUCKET_ID, key: key.as_bytes().to_vec() };
        let mut body = Vec::new();
        let operation = head.encode(&mut body);
        replica.state_machine().query(operation, &body, &mut reply);
        let good = match Reply::decode(&reply) {
            Ok(Reply::Object(object)) => object.meta.inline_data == contents(key),
            Ok(Reply::NoSuchKey) => deleted.contains(key),
            _ => false,
        };
        if !good {
            lost.push(key.to_string());
        }
    }
    if !lost.is_empty() {
        let first: Vec<&str> = lost.iter().take(20).map(String::as_str).collect();
        println!("LOST {} {}", lost.len(), first.join(" "));
        return Err(format!("{} of {count} acknowledged writes lost or wrong", lost.len()));
    }
    println!("verified {count}");
    Ok(())
}

async fn load(driver: &mut Driver<'_>, options: Load) -> Result<(), String> {
    let Load { run, writes, clients: client_count, batches, report, .. } = options;
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let started = Instant::now();
    let group_commits_before = driver.group_commits;
    let mut requests_done = 0u64;
    let mut prng = toasty::sim::prng::Prng::new(
        u64::from(std::process::id()) ^ (u64::from(run) << 40) ^ 0x5eed,
    );
    let mut clients: Vec<LoadClient> = (0..client_count)
        .map(|index| LoadClient {
            id: prng.u128() | 1,
            index,
            registered: false,
            request: 0,
            next_key: 0,
            in_flight: None,
            kept: std::collections::VecDeque::new(),
            sent: Instant::now(),
        })
        .collect();
    let mut acked = 0u64;
    let stdout = std::io::stdout();
    let mut failure = None;
    while writes == 0 || acked < writes {
        for client in clients.iter_mut().filter(|c| c.in_flight.is_none()) {
            let (operation, body, keys, deletes) = if !client.registered {
                (OPERATION_REGISTER, Vec::new(), Vec::new(), Vec::new())
            } else {
                let count = if batches && prng.range_inclusive(0, 3) == 0 {
                    prng.range_inclusive(2, 8)
                } else {
                    1
                };
                let keys: Vec<String> = (0..count)
                    .map(|_| {
                        client.next_key += 1;
                        format!("r{run}-{}-{}", client.index, client.next_key)
                    })
                    .collect();
                let mut deletes = Vec::new();
                let deletes_max = if batches { 8 } else { 0 };
                while client.kept.len() > KEEP && deletes.len() < deletes_max {
                    deletes.extend(client.kept.pop_front());
                }
                let mut requests: Vec<Request> = keys.iter().map(|k| put(k)).collect();
                requests.extend(deletes.iter().map(|key| Request::DeleteObject {
                    bucket_id: BUCKET_ID,
                    key: key.as_bytes().to_vec(),
                    condition: DeleteCondition::None,
                }));
                let request =
                    if requests.len() == 1 { requests.remove(0) } else { Request::Batch(requests) };
                if !deletes.is_empty() {
                    // Before sending: a kill may leave this delete done.
                    let mut out = stdout.lock();
                    for key in &deletes {
                        writeln!(out, "del {key}").map_err(|_| "stdout closed".to_string())?;
                    }
                    out.flush().map_err(|_| "stdout closed".to_string())?;
                }
                let mut body = Vec::new();
                let operation = request.encode(&mut body);
                (operation, body, keys, deletes)
            };
            let number = if operation == OPERATION_REGISTER { 0 } else { client.request + 1 };
            let mut header = Header::new(Command::Request);
            header.cluster.set(CLUSTER);
            header.group.set(0);
            header.client.set(client.id);
            header.operation = operation;
            header.request.set(number);
            header.replica = u8::MAX;
            client.in_flight = Some((number, keys, deletes));
            client.sent = Instant::now();
            driver.replica.on_message(Message::new(header, &body));
        }
        driver
            .step(&mut |id, reply| {
                let Some(client) = clients.iter_mut().find(|c| c.id == id) else { return };
                let Some((number, _, _)) = &client.in_flight else { return };
                if reply.header().request.get() != *number {
                    return;
                }
                let Some((number, keys, deletes)) = client.in_flight.take() else { return };
                if number == 0 {
                    client.registered = true;
                    return;
                }
                client.request = number;
                let expected = keys.len() + deletes.len();
                let ok = match Reply::decode(reply.body()) {
                    Ok(Reply::ObjectPut { .. }) => expected == 1 && deletes.is_empty(),
                    Ok(Reply::Batch(replies)) => {
                        replies.len() == expected
                            && replies[..keys.len()]
                                .iter()
                                .all(|r| matches!(r, Reply::ObjectPut { .. }))
                            && replies[keys.len()..]
                                .iter()
                                .all(|r| matches!(r, Reply::ObjectDeleted { .. }))
                    }
                    _ => false,
                };
                if !ok {
                    failure = Some(format!(
                        "unexpected reply {:?} to a request putting {keys:?}",
                        Reply::decode(reply.body())
                    ));
                    return;
                }
                client.kept.extend(keys.iter().cloned());
                let micros = client.sent.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = latency.record(micros);
                requests_done += 1;
                let mut out = stdout.lock();
                for key in &keys {
                    if writeln!(out, "ack {key}").is_err() {
                        failure = Some("stdout closed".to_string());
                    }
                }
                if out.flush().is_err() {
                    failure = Some("stdout closed".to_string());
                }
                acked += keys.len() as u64;
            })
            .await?;
        if let Some(failure) = failure.take() {
            return Err(failure);
        }
    }
    if report {
        let seconds = started.elapsed().as_secs_f64();
        let group_commits = driver.group_commits - group_commits_before;
        println!(
            "{{\"clients\":{client_count},\"batches\":{batches},\"writes\":{acked},\"requests\":{requests_done},\"seconds\":{seconds:.3},\"writes_per_second\":{:.0},\"requests_per_second\":{:.0},\"group_commits\":{group_commits},\"requests_per_group_commit\":{:.2},\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}}}}",
            acked as f64 / seconds,
            requests_done as f64 / seconds,
            requests_done as f64 / group_commits.max(1) as f64,
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.9),
            latency.value_at_quantile(0.99),
            latency.value_at_quantile(0.999),
            latency.max(),
        );
    }
    Ok(())
}

/// Runs one replica: its writes through group commit, its ticks from the
/// clock, its replies to the in-process clients.
struct Driver<'a> {
    file: Rc<ReplicaFile>,
    replica: &'a mut Replica<ObjectStore>,
    pending: Vec<Write>,
    done: Vec<WriteId>,
    /// fdatasyncs issued (one per group commit).
    group_commits: u64,
}

impl Driver<'_> {
    /// Drain the replica's actions, run one group commit if writes are
    /// queued (else wait one tick), and feed back completions and a tick.
    async fn step(&mut self, on_reply: &mut dyn FnMut(u128, &Message)) -> Result<(), String> {
        let deadline = Instant::now() + TICK;
        self.drain(on_reply);
        if !self.pending.is_empty() {
            let count = self.pending.len().min(BATCH_WRITES_MAX);
            let batch: Vec<Write> = self.pending.drain(..count).collect();
            let ids = self.file.write_batch(batch).await.map_err(|e| {
                // The fate of these writes is unknown: stop, never ack.
                format!("{e}; stopping: this replica can no longer keep its promises")
            })?;
            self.done.extend(ids);
            self.group_commits += 1;
        } else {
            let now = Instant::now();
            if deadline > now {
                glommio::timer::sleep(deadline - now).await;
            }
        }
        for id in self.done.drain(..) {
            self.replica.on_write_done(id);
        }
        self.replica.on_tick();
        self.drain(on_reply);
        Ok(())
    }

    fn drain(&mut self, on_reply: &mut dyn FnMut(u128, &Message)) {
        loop {
            let actions = self.replica.take_actions();
            let _ = self.replica.take_events();
            if actions.is_empty() {
                return;
            }
            let mut replies: BTreeMap<u128, Vec<Message>> = BTreeMap::new();
            for action in actions {
                match action {
                    Action::Write(write) => self.pending.push(write),
                    Action::Send { target: Target::Client(id), message } => {
                        replies.entry(id).or_default().push(message);
                    }
                    Action::Send { target: Target::Replica(_), .. } => {} // R=1: no peers.
                }
            }
            for (id, messages) in replies {
                for message in messages {
                    on_reply(id, &message);
                }
            }
        }
    }
}
