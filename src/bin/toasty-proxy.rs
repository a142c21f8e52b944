//! `toasty-proxy`: the S3 front end without storage, for deployments that
//! put the S3 endpoint on other machines than the nodes (as ToastyFS's
//! proxy does). It runs the same front end as every `toasty-server` shard:
//! one glommio executor per `--executors`, each with its own object client
//! connected to every replica of every group.
//!
//! ```text
//! toasty-proxy --peers 10.0.0.1:4000,10.0.0.2:4000,10.0.0.3:4000 --cores 2 \
//!     --http 0.0.0.0:3000 --access-key K --secret-key S
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};

use toasty::client::{cluster_id, ClientConfig};
use toasty::http::request::Limits;
use toasty::http::router::RouterConfig;
use toasty::shard::client_driver::{replica_addrs, ClientDriver, DriverOptions};
use toasty::shard::log::Log;
use toasty::shard::s3::{serve, S3Config, S3Context};
use toasty::shard::transport::TransportLimits;
use toasty::vsr::message::HEADER_SIZE;

#[derive(Parser)]
#[command(about = "The toasty S3 front end without storage (points at a cluster)")]
struct Cli {
    /// Every node's base address, in node order (as given to the servers).
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<SocketAddr>,
    /// The cluster's shards per node (the servers' --cores).
    #[arg(long, default_value_t = 1)]
    cores: u32,
    #[arg(long, default_value = "toasty")]
    cluster: String,
    /// Front-end executors (threads) of this proxy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    executors: u32,
    #[arg(long)]
    http: SocketAddr,
    #[arg(long, env = "TOASTY_ACCESS_KEY")]
    access_key: Option<String>,
    #[arg(long, env = "TOASTY_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long)]
    anonymous: bool,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Read chunks from this node's replicas first (the nearest).
    #[arg(long, default_value_t = 0)]
    prefer: u8,
    #[arg(long, default_value_t = 1 << 20)]
    io_memory: usize,
    /// MiB of chunk data kept in memory for repeated GETs, split over the
    /// executors; 0 turns it off.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    chunk_cache_mib: u64,
    /// Serve HTTPS: a PEM certificate chain and its private key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Log { node: u8::MAX, shard: None };
    let mut credentials = BTreeMap::new();
    match (&cli.access_key, &cli.secret_key) {
        (Some(access), Some(secret)) => {
            credentials.insert(access.clone(), secret.clone());
        }
        (None, None) if cli.anonymous => {}
        _ => {
            eprintln!("toasty-proxy: give --access-key and --secret-key (or --anonymous)");
            return ExitCode::from(2);
        }
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => match toasty::shard::s3::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("toasty-proxy: {error}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let config = S3Config {
        credentials,
        region: cli.region.clone(),
        anonymous: cli.anonymous,
        router: RouterConfig::default(),
        limits: Limits::default(),
        idle: Duration::from_secs(60),
        inline_size_max: 4096,
        sessions_per_group: 2,
        chunk_size: 1 << 20,
        chunk_size_max: 8 << 20,
        chunks_per_object_max: 1024,
        connections_max: 4096,
        put_bytes_in_flight_max: 256 << 20,
        get_chunks_ahead: 3,
        chunk_cache_bytes: ((cli.chunk_cache_mib << 20) / u64::from(cli.executors.max(1))) as usize,
        tls,
    };
    let mut threads = Vec::new();
    for executor in 0..cli.executors {
        let (config, peers, cluster) = (config.clone(), cli.peers.clone(), cli.cluster.clone());
        let (cores, http, prefer, io_memory) = (cli.cores, cli.http, cli.prefer, cli.io_memory);
        threads.push(std::thread::spawn(move || {
            let log = Log { node: u8::MAX, shard: Some(executor) };
            let built = LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("proxy-{executor}"))
                .io_memory(io_memory)
                .make();
            let result: Result<(), String> = match built {
                Err(error) => Err(format!("cannot start a glommio executor: {error}")),
                Ok(ex) => ex.run(async move {
                    let mut client =
                        ClientConfig::production(cluster_id(&cluster), peers.len() as u8, cores);
                    client.sessions_per_group = config.sessions_per_group;
                    let limits = TransportLimits::new((8 << 20) + HEADER_SIZE);
                    let seed = toasty::shard::random::random_u128() ^ u128::from(executor);
                    let options = DriverOptions {
                        preferred_replica: prefer,
                        chunk_cache_bytes: config.chunk_cache_bytes,
                        ..DriverOptions::default()
                    };
                    let driver = ClientDriver::start(
                        client,
                        replica_addrs(&peers, cores),
                        limits,
                        seed,
                        options,
                        None,
                    );
                    serve(http, S3Context::new(driver, config, log))?;
                    // Serve until killed.
                    loop {
                        glommio::timer::sleep(Duration::from_secs(3600)).await;
                    }
                }),
            };
            if let Err(error) = result {
                log.error(&error);
                eprintln!("toasty-proxy: {error}");
                std::process::exit(2);
            }
        }));
    }
    log.info(format!(
        "proxy for {} nodes x {} groups on http://{}",
        cli.peers.len(),
        cli.cores,
        cli.http
    ));
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::SUCCESS
}
