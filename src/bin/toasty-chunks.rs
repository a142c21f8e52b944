//! The chunk store of one shard on the real disk (`shard::chunks`: one
//! pre-written file, O_DIRECT through io_uring, group commit), in two modes.
//!
//! `toasty-chunks crash --data DIR --run R [--verify FILE]` is the target of
//! tests/crash_chunks.rs. It opens (or creates) a 256 MiB store (16
//! segments of 16 MiB), recovers it, and checks every chunk listed in FILE: each
//! line `ack <id-hex> <len> <crc32c-hex>` must read back byte-exact (the
//! contents are derived from the id, see `contents`) unless a line
//! `del <id-hex>` names it too, in which case it may be missing or intact,
//! never other bytes. It prints `verified <ack lines>`, or `LOST <count>
//! <first ids>` and exits 1. Then it appends chunks of 1 B..256 KiB, 16 at
//! a time so batches form, prints `ack` for each once durable, and deletes
//! the oldest live chunks to keep 3 segments' worth live (so compaction
//! runs), printing `del` before the delete reaches the disk. A chunk the
//! scrubber or compaction finds corrupt prints `CORRUPT <id>` and exits 1.
//!
//! `toasty-chunks bench --data DIR --mode M --writers N --seconds S` formats
//! a fresh store (production config) and prints one JSON line: ops/s, MiB/s,
//! latency percentiles, fdatasyncs and bytes per fdatasync. `write1m`: N
//! writers each append a 1 MiB chunk and wait for it to be durable, then
//! the next; `append4k`: the same with one-sector records (3,968 data bytes
//! and the 128-byte header make 4 KiB, what fio's 4 KiB writes put on
//! disk); `read1m`: 1 GiB of 1 MiB chunks is written first, then N readers each
//! read a random one and wait for it. A run that fills the store stops
//! early and says so (`"stopped":"full"`): no deletes, so no compaction in
//! the measurement.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use glommio::{LocalExecutorBuilder, Placement};

use toasty::chunkstore::format::{record_size, RECORD_HEADER_SIZE};
use toasty::chunkstore::{
    AppendError, ChunkId, ChunkStore, Config, DeleteError, Event, Location, ReadSubmitError,
    ReadTicket, Ticket, SECTOR_SIZE_U64,
};
use toasty::shard::chunks::{ChunkDriver, ChunkFiles, Recovered, TICK};
use toasty::sim::prng::Prng;

/// Fixed so that every run of a data directory belongs to one cluster.
const CLUSTER: u128 = 0x7061_7374_7943_6875_6e6b_7343_7261_7368;
const GROUP: u32 = 0;

/// Crash mode: 16 segments of 16 MiB (a 256 MiB file). Small segments so
/// that within a sub-second run segments open, fill, seal and get compacted
/// and freed (header updates a kill can tear), and so that a restart scans
/// little: recovery reads every open segment whole, and the test needs most
/// runs to get past recovery and verification before their kill.
const CRASH_SEGMENT_COUNT: u32 = 16;
const CRASH_SEGMENT_SIZE_BYTES: u64 = 16 << 20;
const CRASH_CHUNK_SIZE_MAX_BYTES: u32 = 256 << 10;
/// Compaction starts when this few segments are free (production: 1/8 of
/// them + 3): early, so dead segments are freed while they are few and
/// recovery has less to scan.
const CRASH_COMPACTION_FREE_SEGMENTS_TRIGGER: u32 = 10;
/// Appends the crash load keeps pending: enough for several per batch.
const CRASH_APPENDS_IN_FLIGHT: usize = 16;
/// Live data the crash load keeps, in segments: deleting the oldest beyond
/// it makes segments go dead so compaction runs, and bounds what a restart
/// must read back to verify.
const CRASH_LIVE_SEGMENTS: u64 = 3;
/// Ids printed after `LOST`.
const LOST_PRINTED_MAX: usize = 20;

/// Bench: one-sector records, as fio's 4 KiB writes.
const APPEND4K_CHUNK_BYTES: usize = SECTOR_SIZE_U64 as usize - RECORD_HEADER_SIZE;
const CHUNK_1M_BYTES: usize = 1 << 20;
/// read1m reads from this many 1 MiB chunks (1 GiB: beyond any cache a
/// benchmark might otherwise measure, like fio's 2 GiB file).
const READ_SET_CHUNKS: usize = 1024;
/// Appends in flight while read1m writes its read set.
const READ_SET_APPENDS_IN_FLIGHT: usize = 8;

#[derive(Parser)]
#[command(about = "The chunk store of one shard on the real disk: crash target and benchmark")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// glommio io_memory in bytes (memlock is 8 MiB on these machines;
    /// larger buffers fall back to the heap).
    #[arg(long, default_value_t = 2 << 20, global = true)]
    io_memory: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// Verify chunks acknowledged by earlier runs, then append until killed.
    Crash {
        #[arg(long)]
        data: PathBuf,
        /// Run number: the high half of every chunk id, so runs never collide.
        #[arg(long)]
        run: u32,
        /// `ack` and `del` lines printed by earlier runs.
        #[arg(long)]
        verify: Option<PathBuf>,
        /// Exit after this many acknowledged appends (0: run until killed).
        #[arg(long, default_value_t = 0)]
        acks: u64,
    },
    /// Measure durable appends or reads on a fresh store; one JSON line.
    Bench {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum)]
        mode: BenchMode,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        writers: u32,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Segments of 256 MiB (default: 8 for read1m, else 16: 4 GiB).
        #[arg(long)]
        segments: Option<u32>,
        /// Override `Config::batch_bytes_max` (tuning experiments; the
        /// JSON line names the value used).
        #[arg(long)]
        batch_bytes_max: Option<u64>,
        /// Override `Config::batches_in_flight_max`.
        #[arg(long)]
        batches_in_flight_max: Option<u32>,
        /// Override `Config::write_bytes_max`.
        #[arg(long)]
        write_bytes_max: Option<u64>,
    },
    /// Open an existing bench store and report its recovery scan (the
    /// startup time of a shard; run after `bench` with the same --segments).
    Recover {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 16)]
        segments: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BenchMode {
    #[value(name = "write1m")]
    Write1m,
    #[value(name = "read1m")]
    Read1m,
    #[value(name = "append4k")]
    Append4k,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("toasty-chunks")
        .io_memory(cli.io_memory)
        .make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("toasty-chunks: cannot start a glommio executor: {error}");
            return ExitCode::from(2);
        }
    };
    let result = executor.run(async move {
        match cli.mode {
            Mode::Crash { data, run, verify, acks } => {
                crash(&data, run, verify.as_deref(), acks).await
            }
            Mode::Bench {
                data,
                mode,
                writers,
                seconds,
                segments,
                batch_bytes_max,
                batches_in_flight_max,
                write_bytes_max,
            } => {
                let default_segments = if mode == BenchMode::Read1m { 8 } else { 16 };
                let mut config = bench_config(segments.unwrap_or(default_segments));
                config.batch_bytes_max = batch_bytes_max.unwrap_or(config.batch_bytes_max);
                config.batches_in_flight_max =
                    batches_in_flight_max.unwrap_or(config.batches_in_flight_max);
                config.write_bytes_max = write_bytes_max.unwrap_or(config.write_bytes_max);
                bench(&data, mode, writers as usize, seconds, &config).await
            }
            Mode::Recover { data, segments } => {
                if !ChunkFiles::exists(&data) {
                    return Err(format!("{}: no chunk store to recover", data.display()));
                }
                let (_, recovered) = open(&data, &bench_config(segments)).await?;
                println!(
                    "{{\"chunks\":{},\"bytes_scanned\":{},\"seconds\":{:.3}}}",
                    recovered.report.chunks_live,
                    recovered.report.bytes_scanned,
                    recovered.elapsed.as_secs_f64()
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("toasty-chunks: {error}");
            ExitCode::from(1)
        }
    }
}

fn crash_config() -> Config {
    let mut config = Config::production(CLUSTER, GROUP, CRASH_SEGMENT_COUNT);
    config.segment_size_bytes = CRASH_SEGMENT_SIZE_BYTES;
    config.chunk_size_max_bytes = CRASH_CHUNK_SIZE_MAX_BYTES;
    config.compaction_free_segments_trigger = CRASH_COMPACTION_FREE_SEGMENTS_TRIGGER;
    config
}

/// Open the store in `data`, formatting it first if there is none.
async fn open(data: &Path, config: &Config) -> Result<(ChunkFiles, Recovered), String> {
    std::fs::create_dir_all(data).map_err(|e| format!("{}: create: {e}", data.display()))?;
    if !ChunkFiles::exists(data) {
        let started = Instant::now();
        ChunkFiles::create(data, config).await.map_err(|e| e.to_string())?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("toasty-chunks: formatted {} in {seconds:.2} s", data.display());
    }
    let files = ChunkFiles::open(data, config).await.map_err(|e| e.to_string())?;
    let recovered = files.recover().await.map_err(|e| e.to_string())?;
    eprintln!("toasty-chunks: {}", recovered.summary());
    Ok((files, recovered))
}

/// Chunk ids of crash runs: the run in the high half, so ids sort by age.
fn chunk_id(run: u32, number: u64) -> ChunkId {
    (u128::from(run) << 64) | u128::from(number)
}

/// The one content of a crash chunk id: 1 B..=256 KiB derived from the id,
/// so a later run (and the checker) can recompute it.
fn contents(chunk_id: ChunkId) -> Vec<u8> {
    let mut prng = Prng::new(xxhash_rust::xxh3::xxh3_64(&chunk_id.to_le_bytes()));
    let length = prng.range_inclusive(1, u64::from(CRASH_CHUNK_SIZE_MAX_BYTES)) as usize;
    let mut bytes = vec![0; length];
    prng.bytes(&mut bytes);
    bytes
}

async fn crash(data: &Path, run: u32, verify: Option<&Path>, acks: u64) -> Result<(), String> {
    let config = crash_config();
    let (files, recovered) = open(data, &config).await?;
    let mut store = recovered.store;
    let mut driver = files.driver(TICK);
    if let Some(path) = verify {
        verify_acks(&mut store, &mut driver, path).await?;
    }
    crash_load(&mut store, &mut driver, run, acks).await
}

/// An `ack` line: the chunk and what its contents must be.
#[derive(Clone, Copy, Debug)]
struct Ack {
    chunk_id: ChunkId,
    length: usize,
    crc32c: u32,
}

fn parse_lines(text: &str) -> Result<(Vec<Ack>, BTreeSet<ChunkId>), String> {
    let mut acks = Vec::new();
    let mut deleted = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = |field: &str| ChunkId::from_str_radix(field, 16).ok();
        match fields.as_slice() {
            ["ack", chunk_id, length, crc32c] => {
                let parsed = (id(chunk_id), length.parse(), u32::from_str_radix(crc32c, 16));
                let (Some(chunk_id), Ok(length), Ok(crc32c)) = parsed else {
                    return Err(format!("bad ack line {line:?}"));
                };
                acks.push(Ack { chunk_id, length, crc32c });
            }
            ["del", chunk_id] => {
                deleted.insert(id(chunk_id).ok_or_else(|| format!("bad del line {line:?}"))?);
            }
            _ => return Err(format!("unknown line {line:?}")),
        }
    }
    Ok((acks, deleted))
}

/// Read back every acknowledged chunk still located; print `verified` or
/// `LOST`.
async fn verify_acks(
    store: &mut ChunkStore,
    driver: &mut ChunkDriver,
    path: &Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (acks, deleted) = parse_lines(&text)?;
    let by_id: BTreeMap<ChunkId, Ack> = acks.iter().map(|ack| (ack.chunk_id, *ack)).collect();
    let mut lost: Vec<(ChunkId, String)> = Vec::new();
    let mut reads: BTreeMap<ReadTicket, ChunkId> = BTreeMap::new();
    let mut next = 0;
    while next < acks.len() || !reads.is_empty() {
        while next < acks.len() {
            let chunk_id = acks[next].chunk_id;
            let Some(location) = store.locate(chunk_id) else {
                if !deleted.contains(&chunk_id) {
                    lost.push((chunk_id, "not in the store".to_string()));
                }
                next += 1;
                continue;
            };
            match store.read(chunk_id, location) {
                Ok(ticket) => {
                    reads.insert(ticket, chunk_id);
                    next += 1;
                }
                Err(ReadSubmitError::Busy) => break,
                Err(error) => {
                    lost.push((chunk_id, format!("read refused: {error:?} at {location:?}")));
                    next += 1;
                }
            }
        }
        driver.step(store).await.map_err(|e| e.to_string())?;
        while let Some(event) = store.take_event() {
            match event {
                Event::Read { ticket, chunk_id, result } => {
                    assert_eq!(reads.remove(&ticket), Some(chunk_id), "read of an unknown ticket");
                    let ack = by_id[&chunk_id];
                    let expected = contents(chunk_id);
                    let agree =
                        expected.len() == ack.length && crc32c::crc32c(&expected) == ack.crc32c;
                    let verdict = match result {
                        _ if !agree => Some("its ack line does not match `contents`".to_string()),
                        Ok(bytes) if bytes.as_slice() == expected.as_slice() => None,
                        Ok(bytes) => Some(format!("WRONG BYTES ({} bytes read)", bytes.len())),
                        Err(error) => Some(format!("read failed: {error:?}")),
                    };
                    lost.extend(verdict.map(|why| (chunk_id, why)));
                }
                Event::Corrupt { chunk_id, location, error } => {
                    println!("CORRUPT {chunk_id:032x}");
                    return Err(format!("chunk {chunk_id:032x} at {location:?}: {error:?}"));
                }
                Event::Relocated { .. } | Event::Durable { .. } => {}
            }
        }
    }
    if !lost.is_empty() {
        for (chunk_id, why) in lost.iter().take(LOST_PRINTED_MAX) {
            eprintln!("toasty-chunks: lost {chunk_id:032x}: {why}");
        }
        let first: Vec<String> =
            lost.iter().take(LOST_PRINTED_MAX).map(|(id, _)| format!("{id:032x}")).collect();
        println!("LOST {} {}", lost.len(), first.join(" "));
        return Err(format!("{} of {} acknowledged chunks lost or wrong", lost.len(), acks.len()));
    }
    println!("verified {}", acks.len());
    std::io::stdout().flush().map_err(|_| "stdout closed".to_string())
}

/// What an append or delete in flight was.
enum Pending {
    Put(Ack),
    Delete,
}

/// The crash load's state: live chunks (oldest first, by id) and what is
/// in flight.
struct CrashLoad {
    run: u32,
    number_next: u64,
    /// The next chunk to append (kept when the store said Busy).
    next: Option<(ChunkId, Vec<u8>)>,
    live: BTreeMap<ChunkId, u64>,
    live_bytes: u64,
    live_bytes_max: u64,
    pending: BTreeMap<Ticket, Pending>,
    puts_pending: usize,
    acked: u64,
    /// Lines not yet written to stdout.
    out: String,
}

impl CrashLoad {
    /// Delete the oldest live chunks beyond the budget, as far as the store
    /// takes them now.
    fn delete_oldest(&mut self, store: &mut ChunkStore) {
        while self.live_bytes > self.live_bytes_max {
            let Some((&chunk_id, &size)) = self.live.iter().next() else { return };
            match store.delete(chunk_id) {
                Ok(ticket) => {
                    // Out before the step that submits the tombstone.
                    let _ = writeln!(self.out, "del {chunk_id:032x}");
                    self.pending.insert(ticket, Pending::Delete);
                }
                Err(DeleteError::NotFound) => {}
                Err(DeleteError::Busy | DeleteError::NoSpace) => return,
            }
            self.live.remove(&chunk_id);
            self.live_bytes -= size;
        }
    }

    fn append(&mut self, store: &mut ChunkStore) -> Result<(), String> {
        while self.puts_pending < CRASH_APPENDS_IN_FLIGHT {
            let (chunk_id, data) = match self.next.take() {
                Some(next) => next,
                None => {
                    self.number_next += 1;
                    let chunk_id = chunk_id(self.run, self.number_next);
                    (chunk_id, contents(chunk_id))
                }
            };
            match store.append(chunk_id, &data) {
                Ok(ticket) => {
                    let ack = Ack { chunk_id, length: data.len(), crc32c: crc32c::crc32c(&data) };
                    self.pending.insert(ticket, Pending::Put(ack));
                    self.puts_pending += 1;
                }
                Err(AppendError::Busy | AppendError::NoSpace) => {
                    self.next = Some((chunk_id, data));
                    return Ok(());
                }
                Err(error) => return Err(format!("append {chunk_id:032x}: {error:?}")),
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Durable { ticket, chunk_id, location } => match self.pending.remove(&ticket) {
                Some(Pending::Put(ack)) => {
                    assert_eq!(ack.chunk_id, chunk_id);
                    let _ =
                        writeln!(self.out, "ack {chunk_id:032x} {} {:08x}", ack.length, ack.crc32c);
                    self.puts_pending -= 1;
                    self.acked += 1;
                    // An id appended again (a run number reused by hand)
                    // replaces its entry: same bytes, counted once.
                    let replaced = self.live.insert(chunk_id, location.record_size());
                    self.live_bytes += location.record_size();
                    self.live_bytes -= replaced.unwrap_or(0);
                }
                Some(Pending::Delete) => {}
                None => panic!("durable event for an unknown ticket {ticket:?}"),
            },
            Event::Corrupt { chunk_id, location, error } => {
                let _ = writeln!(self.out, "CORRUPT {chunk_id:032x}");
                self.print()?;
                return Err(format!("chunk {chunk_id:032x} at {location:?}: {error:?}"));
            }
            Event::Relocated { .. } => {}
            Event::Read { .. } => panic!("the crash load reads nothing"),
        }
        Ok(())
    }

    fn print(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(self.out.as_bytes()).map_err(|_| "stdout closed".to_string())?;
        stdout.flush().map_err(|_| "stdout closed".to_string())?;
        self.out.clear();
        Ok(())
    }
}

async fn crash_load(
    store: &mut ChunkStore,
    driver: &mut ChunkDriver,
    run: u32,
    acks_max: u64,
) -> Result<(), String> {
    let live: BTreeMap<ChunkId, u64> =
        store.chunks().map(|(chunk_id, location)| (chunk_id, location.record_size())).collect();
    let mut load = CrashLoad {
        run,
        number_next: 0,
        next: None,
        live_bytes: live.values().sum(),
        live,
        live_bytes_max: CRASH_LIVE_SEGMENTS * store.config().segment_capacity(),
        pending: BTreeMap::new(),
        puts_pending: 0,
        acked: 0,
        out: String::new(),
    };
    while acks_max == 0 || load.acked < acks_max {
        load.delete_oldest(store);
        load.append(store)?;
        store.flush();
        load.print()?;
        driver.step(store).await.map_err(|e| e.to_string())?;
        while let Some(event) = store.take_event() {
            load.on_event(event)?;
        }
        load.print()?;
    }
    Ok(())
}

fn bench_config(segments: u32) -> Config {
    Config::production(CLUSTER, GROUP, segments)
}

/// What one measured window saw.
struct Measurement {
    ops: u64,
    seconds: f64,
    latency: hdrhistogram::Histogram<u64>,
    full: bool,
}

impl Measurement {
    fn new() -> Result<Measurement, String> {
        let latency = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        Ok(Measurement { ops: 0, seconds: 0.0, latency, full: false })
    }

    fn record(&mut self, started: Instant) {
        let micros = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.latency.record(micros);
        self.ops += 1;
    }
}

async fn bench(
    data: &Path,
    mode: BenchMode,
    writers: usize,
    seconds: f64,
    config: &Config,
) -> Result<(), String> {
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(format!("--seconds must be in (0, 3600], not {seconds}"));
    }
    // Outside input (the knob flags): an error, not an assert.
    config.validate().map_err(|e| format!("config: {e}"))?;
    let config = *config;
    // A fresh store: earlier runs' chunks would change what is measured.
    let path = ChunkFiles::path_in(data);
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| format!("{}: remove: {e}", path.display()))?;
    }
    let (files, recovered) = open(data, &config).await?;
    let mut store = recovered.store;
    let mut driver = files.driver(TICK);
    let chunk_bytes =
        if mode == BenchMode::Append4k { APPEND4K_CHUNK_BYTES } else { CHUNK_1M_BYTES };
    let mut content = vec![0; chunk_bytes];
    Prng::new(0xbe4c).bytes(&mut content);
    let duration = Duration::from_secs_f64(seconds);
    if mode == BenchMode::Read1m {
        let locations = fill(&mut store, &mut driver, &content).await?;
        let before = snapshot(&driver, &store);
        let measurement = reads(&mut store, &mut driver, writers, duration, &locations).await?;
        let after = snapshot(&driver, &store);
        report(mode, writers, chunk_bytes, &config, &measurement, before, after);
    } else {
        let before = snapshot(&driver, &store);
        let measurement = appends(&mut store, &mut driver, writers, duration, &content).await?;
        let after = snapshot(&driver, &store);
        report(mode, writers, chunk_bytes, &config, &measurement, before, after);
    }
    Ok(())
}

/// N writers, each with one append in flight, until `duration` passes or
/// the store is full. Counts appends durable within the window.
async fn appends(
    store: &mut ChunkStore,
    driver: &mut ChunkDriver,
    writers: usize,
    duration: Duration,
    content: &[u8],
) -> Result<Measurement, String> {
    let mut measurement = Measurement::new()?;
    let mut in_flight: BTreeMap<Ticket, Instant> = BTreeMap::new();
    let mut chunk_id: ChunkId = 1;
    let started = Instant::now();
    let deadline = started + duration;
    let mut last_done = started;
    loop {
        let now = Instant::now();
        let open = now < deadline && !measurement.full;
        while open && in_flight.len() < writers {
            match store.append(chunk_id, content) {
                Ok(ticket) => {
                    in_flight.insert(ticket, Instant::now());
                    chunk_id += 1;
                }
                Err(AppendError::Busy) => break,
                Err(AppendError::NoSpace) => {
                    measurement.full = true;
                    break;
                }
                Err(error) => return Err(format!("append: {error:?}")),
            }
        }
        if !open && in_flight.is_empty() {
            break;
        }
        store.flush();
        driver.step(store).await.map_err(|e| e.to_string())?;
        while let Some(event) = store.take_event() {
            let Event::Durable { ticket, .. } = event else { continue };
            let Some(appended) = in_flight.remove(&ticket) else { continue };
            if Instant::now() <= deadline {
                measurement.record(appended);
                last_done = Instant::now();
            }
        }
    }
    let end = if measurement.full { last_done } else { deadline };
    measurement.seconds = (end - started).as_secs_f64();
    Ok(measurement)
}

/// Write the read set for read1m; returns each chunk's location.
async fn fill(
    store: &mut ChunkStore,
    driver: &mut ChunkDriver,
    content: &[u8],
) -> Result<Vec<(ChunkId, Location)>, String> {
    let config = *store.config();
    let per_segment = config.segment_capacity() / record_size(content.len() as u32);
    // Users may not take the reserved segments; one more for the partly
    // filled active segment.
    let usable = u64::from(config.segment_count).saturating_sub(3) * per_segment;
    let count = READ_SET_CHUNKS.min(usable as usize);
    if count == 0 {
        return Err("the store is too small for read1m: use more --segments".to_string());
    }
    let mut locations = Vec::with_capacity(count);
    let mut appended = 0;
    let mut in_flight = 0;
    let started = Instant::now();
    while locations.len() < count {
        while appended < count && in_flight < READ_SET_APPENDS_IN_FLIGHT {
            match store.append(appended as ChunkId + 1, content) {
                Ok(_) => {
                    appended += 1;
                    in_flight += 1;
                }
                Err(AppendError::Busy) => break,
                Err(error) => return Err(format!("read set append: {error:?}")),
            }
        }
        store.flush();
        driver.step(store).await.map_err(|e| e.to_string())?;
        while let Some(event) = store.take_event() {
            if let Event::Durable { chunk_id, location, .. } = event {
                locations.push((chunk_id, location));
                in_flight -= 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("toasty-chunks: wrote the read set ({count} chunks) in {seconds:.2} s");
    Ok(locations)
}

/// N readers, each with one read of a random chunk in flight.
async fn reads(
    store: &mut ChunkStore,
    driver: &mut ChunkDriver,
    readers: usize,
    duration: Duration,
    locations: &[(ChunkId, Location)],
) -> Result<Measurement, String> {
    let mut measurement = Measurement::new()?;
    let mut prng = Prng::new(u64::from(std::process::id()));
    let mut in_flight: BTreeMap<ReadTicket, Instant> = BTreeMap::new();
    let started = Instant::now();
    let deadline = started + duration;
    loop {
        let open = Instant::now() < deadline;
        while open && in_flight.len() < readers {
            let (chunk_id, location) = locations[prng.index(locations.len())];
            match store.read(chunk_id, location) {
                Ok(ticket) => {
                    in_flight.insert(ticket, Instant::now());
                }
                Err(ReadSubmitError::Busy) => break,
                Err(error) => return Err(format!("read {chunk_id}: {error:?}")),
            }
        }
        if !open && in_flight.is_empty() {
            break;
        }
        driver.step(store).await.map_err(|e| e.to_string())?;
        while let Some(event) = store.take_event() {
            let Event::Read { ticket, chunk_id, result } = event else { continue };
            let Some(submitted) = in_flight.remove(&ticket) else { continue };
            let bytes = result.map_err(|e| format!("read {chunk_id}: {e:?}"))?;
            assert_eq!(bytes.len(), CHUNK_1M_BYTES);
            if Instant::now() <= deadline {
                measurement.record(submitted);
            }
        }
    }
    measurement.seconds = duration.as_secs_f64();
    Ok(measurement)
}

type Snapshot = (toasty::shard::chunks::DriverStats, toasty::chunkstore::Stats, Scheduled);

/// This thread's time on a CPU and waiting for one, from
/// /proc/thread-self/schedstat (nanoseconds). The machine is shared: the
/// wait says how much a neighbour delayed the shard's loop in a run.
#[derive(Clone, Copy, Debug, Default)]
struct Scheduled {
    cpu_ns: u64,
    runqueue_ns: u64,
}

impl Scheduled {
    /// Zeros where the file is missing (not Linux, or no schedstats).
    fn now() -> Scheduled {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut fields = text.split_whitespace().map(|field| field.parse::<u64>().unwrap_or(0));
        let cpu_ns = fields.next().unwrap_or(0);
        let runqueue_ns = fields.next().unwrap_or(0);
        Scheduled { cpu_ns, runqueue_ns }
    }
}

fn snapshot(driver: &ChunkDriver, store: &ChunkStore) -> Snapshot {
    (driver.stats(), store.stats(), Scheduled::now())
}

fn report(
    mode: BenchMode,
    writers: usize,
    chunk_bytes: usize,
    config: &Config,
    measurement: &Measurement,
    before: Snapshot,
    after: Snapshot,
) {
    let seconds = measurement.seconds.max(1e-9);
    let ops_per_second = measurement.ops as f64 / seconds;
    let mib_per_second = ops_per_second * chunk_bytes as f64 / f64::from(1 << 20);
    let fdatasyncs = after.0.fdatasyncs - before.0.fdatasyncs;
    let sync_requests = after.0.sync_requests - before.0.sync_requests;
    let bytes_written = after.0.bytes_written - before.0.bytes_written;
    let batches = after.1.batches_flushed - before.1.batches_flushed;
    let records = after.1.records_acknowledged - before.1.records_acknowledged;
    let fdatasync_us_mean =
        (after.0.fdatasync_ns - before.0.fdatasync_ns) as f64 / 1e3 / fdatasyncs.max(1) as f64;
    let write_depth_mean =
        (after.0.write_depth_ns - before.0.write_depth_ns) as f64 / 1e9 / seconds;
    let cpu_ms = (after.2.cpu_ns - before.2.cpu_ns) as f64 / 1e6;
    let runqueue_ms = (after.2.runqueue_ns - before.2.runqueue_ns) as f64 / 1e6;
    let latency = &measurement.latency;
    let mode = mode.to_possible_value().map(|value| value.get_name().to_string());
    println!(
        "{{\"mode\":\"{}\",\"writers\":{writers},\"chunk_bytes\":{chunk_bytes},\"record_bytes\":{},\"seconds\":{seconds:.3},\"stopped\":\"{}\",\"ops\":{},\"ops_per_second\":{ops_per_second:.0},\"mib_per_second\":{mib_per_second:.1},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"batches\":{batches},\"sync_requests\":{sync_requests},\"syncs\":{fdatasyncs},\"bytes_written\":{bytes_written},\"bytes_per_sync\":{:.0},\"records_per_batch\":{:.2},\"batch_bytes_max\":{},\"batches_in_flight_max\":{},\"write_bytes_max\":{},\"writes_in_place\":{},\"bytes_copied\":{},\"pool_allocations\":{},\"fdatasync_us_mean\":{fdatasync_us_mean:.0},\"write_depth_mean\":{write_depth_mean:.2},\"cpu_ms\":{cpu_ms:.0},\"runqueue_wait_ms\":{runqueue_ms:.0}}}",
        mode.unwrap_or_default(),
        record_size(chunk_bytes as u32),
        if measurement.full { "full" } else { "time" },
        measurement.ops,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max(),
        bytes_written as f64 / fdatasyncs.max(1) as f64,
        records as f64 / batches.max(1) as f64,
        config.batch_bytes_max,
        config.batches_in_flight_max,
        config.write_bytes_max,
        after.0.writes_in_place - before.0.writes_in_place,
        after.0.bytes_copied - before.0.bytes_copied,
        after.0.pool_allocations - before.0.pool_allocations,
    );
}
