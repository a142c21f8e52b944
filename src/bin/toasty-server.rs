//! `toasty-server`: one node of a toasty cluster. One glommio executor per
//! core, each running one shard (its group's replica, chunk store and
//! sockets); see ARCHITECTURE.md ("Node runtime").
//!
//! ```text
//! toasty-server --node 0 --peers 127.0.0.1:4000,127.0.0.1:4100,127.0.0.1:4200 \
//!     --cores 2 --data data/node-0 --metrics 127.0.0.1:9100
//! ```
//!
//! `--peers` lists every node's base address, in node order: shard k of
//! node i listens on node i's base port + k. Every node must be given the
//! same list, the same `--cores` and the same `--cluster`. A `--config FILE`
//! holds the same settings as `key = value` lines (flags override it).

// glibc malloc/free were 13-18 % of a node's CPU under small PUTs; see
// ARCHITECTURE.md "Dependencies" and perf/results/2026-12-04/mimalloc/.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};

use toasty::chunkstore::service::ChunkServiceConfig;
use toasty::client::cluster_id;
use toasty::http::request::Limits;
use toasty::http::router::RouterConfig;
use toasty::shard::checks::{self, DirIdentity, IdentityState, StartupParams};
use toasty::shard::chunks::file_size;
use toasty::shard::log::Log;
use toasty::shard::metrics::{self, NodeStatus};
use toasty::shard::s3::S3Config;
use toasty::shard::server::{self, frame_size_max, ShardParams};
use toasty::shard::storage::{ReplicaFile, WalSync, ZoneOffsets};
use toasty::shard::transport::TransportLimits;
use toasty::vsr::config::Config;
use toasty::vsr::state_machine::{ObjectStore, ObjectStoreLimits, StateMachine};

/// The on-disk format of a shard directory (`toasty.id`).
const FORMAT_VERSION: u32 = 1;
const TICK: Duration = Duration::from_millis(10);
/// Object data: 1 MiB chunks by default, up to 8 MiB for large objects.
const CHUNK_SIZE: usize = 1 << 20;
const CHUNK_SIZE_MAX: usize = 8 << 20;
const CHUNKS_PER_OBJECT_MAX: usize = 1024;
const INLINE_SIZE_MAX: usize = 4096;

#[derive(Parser, Debug)]
#[command(about = "One node of a toasty cluster (see ARCHITECTURE.md)", args_override_self = true)]
struct Cli {
    /// A file of `key = value` lines with the same settings as the flags
    /// (e.g. `peers = 10.0.0.1:4000,10.0.0.2:4000,10.0.0.3:4000`); flags
    /// given on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's index in --peers (its replica index in every group).
    #[arg(long)]
    node: u8,
    /// Every node's base address, in node order; shard k of node i listens
    /// on node i's port + k. 1, 3 or 5 nodes.
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<SocketAddr>,
    /// Shards (one glommio executor each); the same on every node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    cores: u32,
    /// Data directory; shard k lives in DIR/shard-k.
    #[arg(long)]
    data: PathBuf,
    /// Cluster name: every node must use the same; a directory of another
    /// cluster is refused.
    #[arg(long, default_value = "toasty")]
    cluster: String,
    /// CPU placement: `pinned` (shard k on CPU k, the default), `unpinned`
    /// (several nodes on one box), or a CPU list like `2,3`.
    #[arg(long, default_value = "pinned")]
    cpus: String,
    /// Serve /metrics (Prometheus) and /status (JSON) on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// io_uring registered memory per executor (bytes); memlock must allow
    /// cores x (io_memory + 512 KiB).
    #[arg(long, default_value_t = 1 << 20)]
    io_memory: usize,
    /// Microseconds an idle executor keeps polling before it sleeps in the
    /// kernel (glommio's spin_before_park); 0 sleeps at once.
    #[arg(long, default_value_t = 0)]
    spin_before_park_us: u64,
    /// How writes to the replica file (WAL, header ring, superblock,
    /// checkpoints) become durable: `dsync` opens it O_DSYNC, so a write
    /// is durable when it completes; `fdatasync` writes plainly and shares
    /// one fdatasync among the writes completed before it (tuning.md has
    /// the measured difference).
    #[arg(long, value_enum, default_value_t = WalSync::Dsync)]
    wal_sync: WalSync,
    /// Chunk store segments per shard, and their size in MiB.
    #[arg(long, default_value_t = 64)]
    chunk_segments: u32,
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Objects per group, and the encoded bytes (MiB) of their metadata:
    /// the latter sizes the checkpoint areas of the replica file.
    #[arg(long, default_value_t = 1_000_000)]
    objects_max: usize,
    #[arg(long, default_value_t = 256)]
    metadata_mib: usize,
    /// WAL ring slots per shard (each holds one prepare of up to 64 KiB, so
    /// 1,024 slots are 64 MiB); a checkpoint is taken every slots - 128 ops.
    /// Fewer slots: smaller files, more frequent checkpoints (tests).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(256..=65536))]
    wal_slots: u64,
    /// Unreferenced chunks are deleted after this grace period (it must
    /// cover the longest upload), checked every --gc-interval-seconds.
    #[arg(long, default_value_t = 900)]
    gc_grace_seconds: u64,
    #[arg(long, default_value_t = 60)]
    gc_interval_seconds: u64,
    /// Serve S3 (HTTP/1.1) on this address from every shard (SO_REUSEPORT:
    /// several nodes on one box may share it).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// An S3 access key and its secret (the front end accepts requests
    /// signed with it). Also from TOASTY_ACCESS_KEY / TOASTY_SECRET_KEY.
    #[arg(long, env = "TOASTY_ACCESS_KEY")]
    access_key: Option<String>,
    #[arg(long, env = "TOASTY_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Accept unsigned requests (development only: anyone who can reach the
    /// port can read and write everything).
    #[arg(long)]
    anonymous: bool,
    /// The region clients sign for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Virtual-hosted-style domain (`bucket.DOMAIN`); path style always works.
    #[arg(long)]
    domain: Option<String>,
    /// An S3 connection that makes no progress this long (between requests
    /// or inside one) is closed.
    #[arg(long, default_value_t = 60)]
    http_idle_seconds: u64,
    /// Objects up to this many bytes travel inline in the metadata op
    /// (replicated in the log and kept in the checkpointed state) instead
    /// of as a chunk; at most 4096. See tuning.md for the measured effect.
    #[arg(long, default_value_t = INLINE_SIZE_MAX as u64, value_parser = clap::value_parser!(u64).range(0..=4096))]
    inline_max: u64,
    /// VSR client sessions per group of each shard's S3 front end: metadata
    /// writes in flight per group, each a batch. Every group's client table
    /// holds 64 sessions: 3 nodes x cores x this must stay well below.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    client_sessions: u32,
    /// MiB of chunk data the node's S3 front ends keep in memory for
    /// repeated GETs (split evenly over the shards); 0 turns it off. Chunk
    /// files are O_DIRECT, so the kernel's page cache never holds them.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    chunk_cache_mib: u64,
    /// Serve HTTPS: a PEM certificate chain and its private key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = match args_with_config() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("toasty-server: {error}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let log = Log { node: cli.node, shard: None };
    match run(cli, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log.error(&error);
            eprintln!("toasty-server: {error}");
            ExitCode::from(2)
        }
    }
}

/// The command line with the config file's settings in front (so flags win).
fn args_with_config() -> Result<Vec<String>, String> {
    let args: Vec<String> = std::env::args().collect();
    let config = args.iter().enumerate().find_map(|(index, arg)| {
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.to_string());
        }
        (arg == "--config").then(|| args.get(index + 1).cloned()).flatten()
    });
    let Some(path) = config else { return Ok(args) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut merged = vec![args[0].clone()];
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{path}:{}: expected `key = value`, got {line:?}", number + 1));
        };
        let value = value.trim().trim_matches('"');
        merged.push(format!("--{}={value}", key.trim().replace('_', "-")));
    }
    merged.extend(args.into_iter().skip(1));
    Ok(merged)
}

/// The placement of each shard's executor.
fn placements(cpus: &str, cores: u32) -> Result<Vec<Placement>, String> {
    let online = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match cpus {
        "unpinned" => Ok((0..cores).map(|_| Placement::Unbound).collect()),
        "pinned" => {
            if cores as usize > online {
                return Err(format!(
                    "--cores {cores} with --cpus pinned needs {cores} CPUs, this machine has \
                     {online}: use --cpus unpinned (several nodes on one box) or fewer cores"
                ));
            }
            Ok((0..cores as usize).map(Placement::Fixed).collect())
        }
        list => {
            let cpus: Result<Vec<usize>, _> = list.split(',').map(|c| c.trim().parse()).collect();
            let cpus = cpus.map_err(|_| {
                format!("--cpus must be pinned, unpinned or a CPU list like 0,1; got {list:?}")
            })?;
            if cpus.len() != cores as usize {
                return Err(format!("--cpus lists {} CPUs for --cores {cores}", cpus.len()));
            }
            if let Some(cpu) = cpus.iter().find(|cpu| **cpu >= online) {
                return Err(format!("--cpus names CPU {cpu}; this machine has 0..{online}"));
            }
            Ok(cpus.into_iter().map(Placement::Fixed).collect())
        }
    }
}

struct Plan {
    vsr: Config,
    limits: ObjectStoreLimits,
    chunks: toasty::chunkstore::Config,
}

fn plan(cli: &Cli, cluster: u128, group: u32) -> Result<Plan, String> {
    let replica_count = cli.peers.len() as u8;
    let limits = ObjectStoreLimits {
        buckets_max: 1_000,
        objects_max: cli.objects_max,
        key_size_max: 1024,
        user_metadata_size_max: 2048,
        // 1,024 chunk references (24 KiB) fit a 64 KiB metadata op.
        chunks_per_object_max: CHUNKS_PER_OBJECT_MAX,
        inline_size_max: INLINE_SIZE_MAX,
        objects_bytes_max: cli.metadata_mib << 20,
    };
    let mut vsr = Config::production(cluster, group, cli.node, replica_count);
    if !cli.wal_slots.is_multiple_of(16) {
        return Err("--wal-slots must be a multiple of 16 (whole header sectors)".to_string());
    }
    vsr.wal_slot_count = cli.wal_slots;
    vsr.checkpoint_interval = cli.wal_slots - 4 * vsr.pipeline_max;
    let snapshot = ObjectStore::new(limits).snapshot_size_max() as u64;
    // The checkpoint holds the snapshot and the client table (a cached
    // reply per session, each at most a message).
    let clients = vsr.clients_max as u64 * vsr.message_size_max;
    vsr.checkpoint_size_max = (snapshot + clients + (1 << 20)).div_ceil(1 << 20) << 20;
    vsr.validate().map_err(|e| format!("replica configuration: {e}"))?;
    let mut chunks = toasty::chunkstore::Config::production(cluster, group, cli.chunk_segments);
    chunks.segment_size_bytes = cli.segment_mib << 20;
    // Chunks up to 8 MiB: 1 MiB by default, larger only for objects whose
    // chunk list would not fit a metadata op otherwise (up to 8 GiB).
    chunks.chunk_size_max_bytes = CHUNK_SIZE_MAX as u32;
    let record_max = chunks.record_size_max();
    chunks.batch_bytes_max = chunks.batch_bytes_max.max(record_max);
    let scan = record_max.next_multiple_of(1 << 20);
    chunks.compaction_read_bytes = chunks.compaction_read_bytes.max(scan);
    chunks.recovery_read_bytes = chunks.recovery_read_bytes.max(scan);
    chunks.validate().map_err(|e| format!("chunk store configuration: {e}"))?;
    Ok(Plan { vsr, limits, chunks })
}

fn run(cli: Cli, log: Log) -> Result<(), String> {
    let replica_count = cli.peers.len();
    if ![1, 3, 5].contains(&replica_count) {
        return Err(format!("--peers lists {replica_count} nodes; a cluster has 1, 3 or 5"));
    }
    if cli.node as usize >= replica_count {
        return Err(format!("--node {} but --peers lists only {replica_count}", cli.node));
    }
    let cluster = cluster_id(&cli.cluster);
    let placements = placements(&cli.cpus, cli.cores)?;
    std::fs::create_dir_all(&cli.data)
        .map_err(|e| format!("{}: cannot create the data directory: {e}", cli.data.display()))?;
    let record_group_count = checks::group_count_check(&cli.data, cli.cores)?;
    let http = front_end_config(&cli)?;
    let mut shard_params = Vec::new();
    let status = NodeStatus::new(cli.node, cli.cores);
    let shutdown = Arc::new(AtomicBool::new(false));
    for group in 0..cli.cores {
        let dir = cli.data.join(format!("shard-{group}"));
        let plan = plan(&cli, cluster, group)?;
        startup_checks(&cli, &dir, cluster, group, &plan)?;
        let peers = cli
            .peers
            .iter()
            .map(|base| shard_addr(*base, group))
            .collect::<Result<Vec<_>, String>>()?;
        let ticks = |seconds: u64| seconds * 1000 / TICK.as_millis() as u64;
        shard_params.push(ShardParams {
            cluster,
            node: cli.node,
            group,
            peers,
            data_dir: dir,
            wal_sync: cli.wal_sync,
            transport: TransportLimits::new(frame_size_max(&plan.vsr, &plan.chunks)),
            service: ChunkServiceConfig {
                cluster,
                group,
                replica: cli.node,
                replica_count: replica_count as u8,
                write_queue_bytes_max: 64 << 20,
                read_queue_max: 1024,
                repair_delay_ticks: 100,
                repair_in_flight_max: 16,
                repair_timeout_ticks: 300,
                missing_max: 1 << 20,
                audit_interval_ticks: ticks(60),
                gc_interval_ticks: ticks(cli.gc_interval_seconds),
                gc_grace_ticks: ticks(cli.gc_grace_seconds),
                gc_deletes_per_pass_max: 4096,
            },
            vsr: plan.vsr,
            limits: plan.limits,
            chunks: plan.chunks,
            tick: TICK,
            status: status.shards[group as usize].clone(),
            shutdown: shutdown.clone(),
            shutdown_wait: Duration::from_secs(10),
            peer_bases: cli.peers.clone(),
            group_count: cli.cores,
            http: http.clone().map(|config| (cli.http.unwrap_or_else(|| unreachable!()), config)),
        });
    }
    // Every startup check passed: only now is the group count fixed.
    if record_group_count {
        checks::group_count_record(&cli.data, cli.cores)?;
    }
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    if let Some(addr) = cli.metrics {
        metrics::serve(addr, status.clone())
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        log.info(format!("metrics on http://{addr}/metrics, status on http://{addr}/status"));
    }
    log.info(format!(
        "node {} of {replica_count}, {} shard(s), cluster {:?}, data {}",
        cli.node,
        cli.cores,
        cli.cluster,
        cli.data.display()
    ));
    start_shards(shard_params, placements, cli.io_memory, cli.spin_before_park_us, log)
}

/// The S3 front end's configuration, if `--http` is given.
fn front_end_config(cli: &Cli) -> Result<Option<S3Config>, String> {
    if cli.http.is_none() {
        return Ok(None);
    }
    let mut credentials = std::collections::BTreeMap::new();
    match (&cli.access_key, &cli.secret_key) {
        (Some(access), Some(secret)) => {
            credentials.insert(access.clone(), secret.clone());
        }
        (None, None) if cli.anonymous => {}
        (None, None) => {
            return Err("--http needs --access-key and --secret-key (or --anonymous for a \
                        development cluster)"
                .to_string())
        }
        _ => return Err("give both --access-key and --secret-key".to_string()),
    }
    // Every group's client table holds `clients_max` (64) sessions; the
    // front ends of all nodes must leave room for tools and proxies, or
    // they would evict each other's sessions in a loop.
    let front_end_sessions = cli.peers.len() as u32 * cli.cores * cli.client_sessions;
    if front_end_sessions > 48 {
        return Err(format!(
            "--client-sessions {}: {} nodes x {} cores x {} = {front_end_sessions} sessions per \
             group, above the 48 the client table (64) can give front ends; lower it",
            cli.client_sessions,
            cli.peers.len(),
            cli.cores,
            cli.client_sessions
        ));
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(toasty::shard::s3::tls::server_config(cert, key)?),
        _ => None,
    };
    Ok(Some(S3Config {
        credentials,
        region: cli.region.clone(),
        anonymous: cli.anonymous,
        router: RouterConfig { domains: cli.domain.iter().cloned().collect() },
        limits: Limits::default(),
        idle: Duration::from_secs(cli.http_idle_seconds.max(1)),
        inline_size_max: cli.inline_max as usize,
        sessions_per_group: cli.client_sessions,
        chunk_size: CHUNK_SIZE,
        chunk_size_max: CHUNK_SIZE_MAX,
        chunks_per_object_max: CHUNKS_PER_OBJECT_MAX,
        connections_max: 4096,
        put_bytes_in_flight_max: 256 << 20,
        get_chunks_ahead: 3,
        chunk_cache_bytes: ((cli.chunk_cache_mib << 20) / u64::from(cli.cores.max(1))) as usize,
        tls,
    }))
}

/// Shard k's replica address on a node with base address `base`.
fn shard_addr(base: SocketAddr, group: u32) -> Result<SocketAddr, String> {
    let port = u32::from(base.port()) + group;
    let port =
        u16::try_from(port).map_err(|_| format!("{base}: base port + {group} is above 65535"))?;
    Ok(SocketAddr::new(base.ip(), port))
}

fn startup_checks(
    cli: &Cli,
    dir: &Path,
    cluster: u128,
    group: u32,
    plan: &Plan,
) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the shard directory: {e}", dir.display()))?;
    let identity = DirIdentity {
        cluster,
        node: u32::from(cli.node),
        shard: group,
        format_version: FORMAT_VERSION,
    };
    let mut needed = 0;
    if !ReplicaFile::exists(dir) {
        needed += ZoneOffsets::new(&plan.vsr.layout()).total;
    }
    if !toasty::shard::chunks::ChunkFiles::exists(dir) {
        needed += file_size(&plan.chunks);
    }
    let report = checks::run_all(&StartupParams {
        data_dir: dir.to_path_buf(),
        identity,
        executors: cli.cores as usize,
        io_memory_bytes: cli.io_memory,
        free_space_required_bytes: needed,
    });
    if !report.is_ok() {
        return Err(format!("{}: {report}", dir.display()));
    }
    if report.identity == Some(IdentityState::Fresh) {
        checks::identity_create(dir, &identity).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn start_shards(
    shards: Vec<ShardParams>,
    placements: Vec<Placement>,
    io_memory: usize,
    spin_before_park_us: u64,
    log: Log,
) -> Result<(), String> {
    // A panic is a bug, and a node with one shard dead and the others
    // serving would look whole to its peers: print it (the default hook)
    // and die at once, as kill -9 would. Recovery is the restart's job.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("toasty-server: a thread panicked (a bug): aborting the node");
        std::process::abort();
    }));
    let mut threads = Vec::new();
    for (params, placement) in shards.into_iter().zip(placements) {
        let group = params.group;
        let thread = std::thread::Builder::new()
            .name(format!("shard-{group}"))
            .spawn(move || {
                let log = Log { node: params.node, shard: Some(group) };
                let executor = LocalExecutorBuilder::new(placement)
                    .name(&format!("shard-{group}"))
                    .io_memory(io_memory)
                    .spin_before_park(Duration::from_micros(spin_before_park_us))
                    .make();
                let result = match executor {
                    Ok(executor) => executor.run(server::run(params)),
                    Err(error) => Err(format!("cannot start the glommio executor: {error}")),
                };
                if let Err(error) = result {
                    // Fatal for the node: recovery (from disk and peers) is
                    // the restart's job; the other shards must not go on
                    // pretending this node is whole.
                    log.error(format!("fatal: {error}"));
                    eprintln!("toasty-server: shard {group}: {error}");
                    std::process::exit(1);
                }
            })
            .map_err(|e| format!("cannot start shard thread {group}: {e}"))?;
        threads.push(thread);
    }
    for thread in threads {
        if thread.join().is_err() {
            return Err("a shard thread panicked".to_string());
        }
    }
    log.info("all shards stopped");
    Ok(())
}
