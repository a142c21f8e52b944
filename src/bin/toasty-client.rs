//! `toasty-client`: the object client as a command-line tool, for
//! operators, tests and benchmarks (no HTTP: it speaks the cluster's own
//! protocol through `client/`, the logic the S3 front end uses).
//!
//! ```text
//! toasty-client --peers 127.0.0.1:4000,127.0.0.1:4100,127.0.0.1:4200 --cores 2 wait
//! toasty-client ... bucket-create photos
//! toasty-client ... put photos cat.jpg --file cat.jpg
//! toasty-client ... get photos cat.jpg --out copy.jpg
//! toasty-client ... load --bucket bench --concurrency 64 --size 4096 --seconds 10
//! toasty-client ... verify --bucket bench --acks acks.log
//! ```
//!
//! Object contents in `load` are a function of the key and the size, so
//! `verify` checks every acknowledged object byte for byte from the ack
//! log alone (`ack <key> <size> <unix_ms> <group>` lines, flushed as they
//! happen).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use glommio::{LocalExecutorBuilder, Placement};

use toasty::client::{cluster_id, ClientConfig};
use toasty::shard::client_driver::{replica_addrs, ClientDriver, DriverOptions};
use toasty::shard::transport::TransportLimits;
use toasty::vsr::message::HEADER_SIZE;
use toasty::vsr::state_machine::{ObjectMeta, Reply};

#[derive(Parser)]
#[command(about = "The toasty object client (cluster protocol, no HTTP)")]
struct Cli {
    /// Every node's base address, in node order (as given to the servers).
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<SocketAddr>,
    /// Shards per node (the servers' --cores).
    #[arg(long, default_value_t = 1)]
    cores: u32,
    #[arg(long, default_value = "toasty")]
    cluster: String,
    /// Read chunks from this node's replicas first.
    #[arg(long, default_value_t = 0)]
    prefer: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Wait until every group answers (a linearizable read on each).
    Wait {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    BucketCreate {
        name: String,
    },
    Put {
        bucket: String,
        key: String,
        #[arg(long)]
        file: PathBuf,
    },
    Get {
        bucket: String,
        key: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    Delete {
        bucket: String,
        key: String,
    },
    /// Closed-loop load: `concurrency` tasks, each one request at a time.
    Load(LoadArgs),
    /// Read back every object of an ack log and compare it byte for byte.
    Verify {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        acks: PathBuf,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Put,
    Get,
    /// 70 % gets, 30 % puts.
    Mix,
}

#[derive(clap::Args, Clone)]
struct LoadArgs {
    #[arg(long)]
    bucket: String,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Object size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Objects written first for get and mix (not measured).
    #[arg(long, default_value_t = 1000)]
    prefill: usize,
    /// Append `ack <key> <size> <unix_ms> <group>` for every acknowledged put.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// Part of every key, so runs never collide.
    #[arg(long, default_value = "0")]
    run: String,
    /// Puts overwrite keys drawn uniformly from this many (0: every put
    /// writes a new key). Bounds the metadata a long put run leaves: 4 KiB
    /// objects are stored inline, so unique keys fill a group's
    /// `--metadata-mib` (LimitExceeded(ObjectsBytes)).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Check every GET body.
    #[arg(long)]
    verify: bool,
    /// Keep retrying failed requests instead of counting them (crash tests).
    #[arg(long)]
    retry: bool,
    /// Stop after this many requests in all (instead of --seconds).
    #[arg(long)]
    count: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("toasty-client")
        .io_memory(1 << 20)
        .make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("toasty-client: cannot start a glommio executor: {error}");
            return ExitCode::from(2);
        }
    };
    match executor.run(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("toasty-client: {error}");
            ExitCode::from(1)
        }
    }
}

fn driver(cli: &Cli) -> Rc<ClientDriver> {
    let mut config =
        ClientConfig::production(cluster_id(&cli.cluster), cli.peers.len() as u8, cli.cores);
    config.sessions_per_group = 4;
    let limits = TransportLimits::new((1 << 20) + HEADER_SIZE);
    let seed = u128::from(seed()) << 64 | u128::from(seed());
    let options = DriverOptions { preferred_replica: cli.prefer, ..DriverOptions::default() };
    ClientDriver::start(config, replica_addrs(&cli.peers, cli.cores), limits, seed, options, None)
}

fn seed() -> u64 {
    toasty::shard::random::random_u128() as u64
}

async fn run(cli: Cli) -> Result<(), String> {
    let driver = driver(&cli);
    match cli.command {
        Command::Wait { seconds } => wait(&driver, cli.cores, seconds).await,
        Command::BucketCreate { name } => match driver.bucket_create(name.as_bytes()).await {
            Ok(Ok(id)) => {
                println!("created bucket {name} (id {id})");
                Ok(())
            }
            Ok(Err(Reply::BucketAlreadyExists)) => {
                println!("bucket {name} exists");
                Ok(())
            }
            Ok(Err(other)) => Err(format!("create bucket {name}: {other:?}")),
            Err(error) => Err(format!("create bucket {name}: {error}")),
        },
        Command::Put { bucket, key, file } => {
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let id = bucket_id(&driver, &bucket).await?;
            let reply = put(&driver, id, &key, &data).await.map_err(|e| format!("put: {e}"))?;
            println!("{reply:?}");
            Ok(())
        }
        Command::Get { bucket, key, out } => {
            let id = bucket_id(&driver, &bucket).await?;
            match driver.object_get(id, key.as_bytes()).await.map_err(|e| e.to_string())? {
                None => Err(format!("{bucket}/{key}: no such key")),
                Some((object, data)) => {
                    println!(
                        "{} bytes, version {}, etag {}",
                        data.len(),
                        object.version,
                        String::from_utf8_lossy(&object.meta.etag)
                    );
                    if let Some(out) = out {
                        std::fs::write(&out, &data)
                            .map_err(|e| format!("{}: {e}", out.display()))?;
                    }
                    Ok(())
                }
            }
        }
        Command::Delete { bucket, key } => {
            let id = bucket_id(&driver, &bucket).await?;
            let reply =
                driver.object_delete(id, key.as_bytes()).await.map_err(|e| e.to_string())?;
            println!("{reply:?}");
            Ok(())
        }
        Command::Load(args) => load(driver, args).await,
        Command::Verify { bucket, acks, concurrency } => {
            verify(driver, &bucket, &acks, concurrency).await
        }
    }
}

/// Until a linearizable read succeeds on every group.
async fn wait(driver: &ClientDriver, groups: u32, seconds: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    for group in 0..groups {
        loop {
            let request = toasty::vsr::state_machine::Request::HeadBucket { name: b"-".to_vec() };
            match driver.read(group, request).await {
                Ok(_) => break,
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("group {group} did not answer within {seconds} s: {error}"))
                }
                Err(_) => glommio::timer::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    println!("ready: {groups} group(s) answer");
    Ok(())
}

async fn bucket_id(driver: &ClientDriver, bucket: &str) -> Result<u64, String> {
    match driver.bucket_id(bucket.as_bytes()).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(format!("no such bucket {bucket:?} (create it with bucket-create)")),
        Err(error) => Err(format!("bucket {bucket}: {error}")),
    }
}

async fn bucket_ensure(driver: &ClientDriver, bucket: &str) -> Result<u64, String> {
    match driver.bucket_create(bucket.as_bytes()).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(Reply::BucketAlreadyExists)) => bucket_id(driver, bucket).await,
        Ok(Err(other)) => Err(format!("create bucket {bucket}: {other:?}")),
        Err(error) => Err(format!("create bucket {bucket}: {error}")),
    }
}

/// The bytes of object `key` of `size` bytes: a splitmix64 stream seeded
/// by the key's hash, so any reader can recompute them.
fn contents(key: &str, size: usize) -> Vec<u8> {
    let mut state = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        data.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    data.truncate(size);
    data
}

async fn put(
    driver: &ClientDriver,
    bucket_id: u64,
    key: &str,
    data: &[u8],
) -> Result<Reply, String> {
    let meta = ObjectMeta {
        etag: format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(data)).into_bytes(),
        content_type: b"application/octet-stream".to_vec(),
        ..ObjectMeta::default()
    };
    let mut ids = || (u128::from(seed()) << 64 | u128::from(seed())) | 1;
    driver
        .object_put(bucket_id, key.as_bytes(), data, meta, &mut ids)
        .await
        .map_err(|e| e.to_string())
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

#[derive(Default)]
struct LoadState {
    keys: Vec<String>,
    /// The keys in `keys`, under `--keys` (puts overwrite, so repeat).
    keys_seen: std::collections::HashSet<String>,
    errors: BTreeMap<String, u64>,
    ops: u64,
    bytes: u64,
    /// Longest time between two completions (a stall: failover).
    stall_max_ms: u128,
    last_done: Option<Instant>,
    ack_log: Option<std::fs::File>,
    verify_failures: u64,
    /// Requests started (for --count).
    started: u64,
}

async fn load(driver: Rc<ClientDriver>, args: LoadArgs) -> Result<(), String> {
    let bucket = bucket_ensure(&driver, &args.bucket).await?;
    let ack_log = match &args.ack_log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let state = Rc::new(RefCell::new(LoadState { ack_log, ..LoadState::default() }));
    if args.op != Op::Put {
        prefill(&driver, bucket, &args, &state).await?;
    }
    let histogram = Rc::new(RefCell::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| e.to_string())?,
    ));
    let started = Instant::now();
    let seconds = if args.count.is_some() { 3600.0 } else { args.seconds };
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for task in 0..args.concurrency {
        let (driver, args, state, histogram) =
            (driver.clone(), args.clone(), state.clone(), histogram.clone());
        tasks.push(glommio::spawn_local(async move {
            load_task(&driver, bucket, &args, task, deadline, &state, &histogram).await
        }));
    }
    for task in tasks {
        task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    report(&args, &state.borrow(), &histogram.borrow(), seconds, &driver);
    if state.borrow().verify_failures > 0 {
        return Err(format!(
            "{} GET bodies differed from what was put",
            state.borrow().verify_failures
        ));
    }
    Ok(())
}

async fn prefill(
    driver: &ClientDriver,
    bucket: u64,
    args: &LoadArgs,
    state: &Rc<RefCell<LoadState>>,
) -> Result<(), String> {
    let mut handles = Vec::new();
    for index in 0..args.prefill {
        let key = format!("prefill-{}-{index}", args.run);
        let data = contents(&key, args.size);
        handles.push(async move { (key.clone(), put(driver, bucket, &key, &data).await) });
        if handles.len() == 64 || index + 1 == args.prefill {
            for handle in handles.drain(..) {
                let (key, result) = handle.await;
                match result {
                    Ok(Reply::ObjectPut { .. }) => state.borrow_mut().keys.push(key),
                    other => return Err(format!("prefill {key}: {other:?}")),
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn load_task(
    driver: &ClientDriver,
    bucket: u64,
    args: &LoadArgs,
    task: usize,
    deadline: Instant,
    state: &Rc<RefCell<LoadState>>,
    histogram: &Rc<RefCell<hdrhistogram::Histogram<u64>>>,
) {
    let mut prng = seed() | 1;
    let mut count = 0u64;
    while Instant::now() < deadline {
        {
            let mut state = state.borrow_mut();
            if args.count.is_some_and(|total| state.started >= total) {
                break;
            }
            state.started += 1;
        }
        prng ^= prng << 13;
        prng ^= prng >> 7;
        prng ^= prng << 17;
        let is_put = match args.op {
            Op::Put => true,
            Op::Get => false,
            Op::Mix => prng % 10 < 3,
        };
        let started = Instant::now();
        let outcome = if is_put {
            let key = if args.keys > 0 {
                format!("{}-k{}", args.run, (prng >> 3) % args.keys)
            } else {
                count += 1;
                format!("{}-{task}-{count}", args.run)
            };
            let data = contents(&key, args.size);
            loop {
                let result = put(driver, bucket, &key, &data).await;
                match result {
                    Ok(Reply::ObjectPut { .. }) => {
                        let group = driver.group_of(bucket, key.as_bytes());
                        ack(state, &key, args.size, group, args.keys > 0);
                        break Ok(());
                    }
                    Err(error) if args.retry && Instant::now() < deadline => {
                        let _ = error;
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(other) => break Err(format!("{other:?}")),
                    Err(error) => break Err(error),
                }
            }
        } else {
            let key = {
                let state = state.borrow();
                if state.keys.is_empty() {
                    continue;
                }
                state.keys[(prng as usize / 3) % state.keys.len()].clone()
            };
            match driver.object_get(bucket, key.as_bytes()).await {
                Ok(Some((_, data))) => {
                    if args.verify && data != contents(&key, args.size) {
                        state.borrow_mut().verify_failures += 1;
                    }
                    Ok(())
                }
                Ok(None) => Err("NoSuchKey".to_string()),
                Err(error) => Err(error.to_string()),
            }
        };
        let micros = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        let mut state = state.borrow_mut();
        match outcome {
            Ok(()) => {
                let _ = histogram.borrow_mut().record(micros);
                state.ops += 1;
                state.bytes += args.size as u64;
                let now = Instant::now();
                if let Some(last) = state.last_done {
                    state.stall_max_ms = state.stall_max_ms.max((now - last).as_millis());
                }
                state.last_done = Some(now);
            }
            Err(error) => *state.errors.entry(error).or_insert(0) += 1,
        }
    }
}

fn ack(state: &Rc<RefCell<LoadState>>, key: &str, size: usize, group: u32, repeats: bool) {
    let mut state = state.borrow_mut();
    if !repeats || state.keys_seen.insert(key.to_string()) {
        state.keys.push(key.to_string());
    }
    if let Some(log) = &mut state.ack_log {
        // Written before the next request: a kill loses no acknowledged key.
        let _ = writeln!(log, "ack {key} {size} {} {group}", unix_ms());
        let _ = log.flush();
    }
}

fn report(
    args: &LoadArgs,
    state: &LoadState,
    histogram: &hdrhistogram::Histogram<u64>,
    seconds: f64,
    driver: &ClientDriver,
) {
    let op = match args.op {
        Op::Put => "put",
        Op::Get => "get",
        Op::Mix => "mix",
    };
    let errors: Vec<String> = state.errors.iter().map(|(e, n)| format!("{e:?}:{n}")).collect();
    let stats = driver.stats();
    println!(
        "{{\"op\":\"{op}\",\"size\":{},\"concurrency\":{},\"seconds\":{seconds:.3},\"ops\":{},\
         \"ops_per_second\":{:.0},\"mib_per_second\":{:.1},\"latency_us\":{{\"p50\":{},\"p90\":{},\
         \"p99\":{},\"p999\":{},\"max\":{}}},\"stall_max_ms\":{},\"errors\":{{{}}},\
         \"batches\":{},\"writes_per_batch\":{:.2},\"resends\":{},\"verify_failures\":{}}}",
        args.size,
        args.concurrency,
        state.ops,
        state.ops as f64 / seconds,
        state.bytes as f64 / seconds / f64::from(1 << 20),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
        state.stall_max_ms,
        errors.join(","),
        stats.batches_sent,
        stats.writes_batched as f64 / stats.batches_sent.max(1) as f64,
        stats.resends,
        state.verify_failures,
    );
}

async fn verify(
    driver: Rc<ClientDriver>,
    bucket: &str,
    acks: &std::path::Path,
    concurrency: usize,
) -> Result<(), String> {
    let text = std::fs::read_to_string(acks).map_err(|e| format!("{}: {e}", acks.display()))?;
    let entries: Vec<(String, usize)> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("ack ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect();
    let id = bucket_id(&driver, bucket).await?;
    let lost = Rc::new(RefCell::new(Vec::new()));
    for window in entries.chunks(concurrency.max(1)) {
        let checks: Vec<_> = window
            .iter()
            .map(|(key, size)| {
                let (driver, lost) = (driver.clone(), lost.clone());
                let (key, size) = (key.clone(), *size);
                glommio::spawn_local(async move {
                    let mut attempts = 0;
                    let result = loop {
                        attempts += 1;
                        match driver.object_get(id, key.as_bytes()).await {
                            Err(_) if attempts < 20 => {
                                glommio::timer::sleep(Duration::from_millis(200)).await
                            }
                            other => break other,
                        }
                    };
                    let good =
                        matches!(&result, Ok(Some((_, data))) if *data == contents(&key, size));
                    if !good {
                        lost.borrow_mut().push(format!(
                            "{key} ({})",
                            match result {
                                Ok(None) => "missing".to_string(),
                                Ok(Some(_)) => "wrong bytes".to_string(),
                                Err(e) => e.to_string(),
                            }
                        ));
                    }
                })
            })
            .collect();
        for check in checks {
            check.await;
        }
    }
    let lost = lost.borrow();
    if !lost.is_empty() {
        println!(
            "LOST {} of {}: {}",
            lost.len(),
            entries.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
        );
        return Err(format!(
            "{} of {} acknowledged objects lost or wrong",
            lost.len(),
            entries.len()
        ));
    }
    let stats = driver.stats();
    println!(
        "verified {} (resends {}, replies unmatched {}, chunk read fallbacks {})",
        entries.len(),
        stats.resends,
        stats.replies_unmatched,
        stats.chunk_read_fallbacks
    );
    Ok(())
}
