//! The chunk store of one shard on a real disk: the glommio driver of the
//! sans-IO [`ChunkStore`] (see `chunkstore/mod.rs` for the record format
//! and the crash rules this driver only executes).
//!
//! # One file for all segments
//!
//! The shard's segments live in one file, `chunks.seg`, segment `i` at byte
//! `i × segment_size_bytes`, not in one file per segment, because:
//! - **One fdatasync covers every segment.** On ext4 an fdatasync of an
//!   O_DIRECT overwrite in place has no data pages or metadata to write; its
//!   cost is the device cache FLUSH, which is device-wide anyway. With one
//!   file the driver coalesces the `Sync` requests that arrive together (a
//!   batch spanning two segments, a header update next to a batch) into one
//!   fdatasync; with a file per segment each would be its own flush.
//! - **One descriptor per shard.** Production has thousands of segments
//!   per disk (1 TiB / 256 MiB = 4,096 per shard): a descriptor each would
//!   run into `RLIMIT_NOFILE` (often 1,024) and cost an io_uring file-table
//!   slot each.
//! - **Atomic format is one rename,** and a size check at open catches a
//!   configuration that no longer matches (`segment_count`,
//!   `segment_size_bytes`). With many files, a crash during format or a file
//!   lost later would leave a store that silently lacks segments.
//!
//! The cost: growing the store means a second file (or a reformat), and
//! format writes the whole disk once (also true of a file per segment).
//!
//! # Rules (those of `storage.rs`, the replica file)
//!
//! - **Pre-allocated and pre-written.** `create` allocates the whole file and
//!   writes zeros over every byte (zeroed segment headers read as Free)
//!   before the file gets its final name, so every later write overwrites
//!   allocated, written blocks in place: no unwritten-extent conversion and
//!   no journal commit per fdatasync (appending to a growing file is ~2x
//!   slower on this ext4, research/limits.md), and a full disk is found at
//!   format time, never mid-write: statvfs is checked before `fallocate`
//!   (which on ENOSPC keeps what it allocated until the file is closed and
//!   removed, leaving the disk full for everyone meanwhile), and the error
//!   names the file and the bytes it needs.
//! - **glommio's poll-ring probe.** glommio 0.9.0 decides per device, once
//!   per process, whether to use its IOPOLL ring by reading the first file
//!   it opens there; an empty file fools it, and every later read on the
//!   device fails with EOPNOTSUPP. `format` gives the file its first sector
//!   before glommio opens it, and `open` refuses a file whose first read
//!   fails so (recovery would otherwise quarantine every segment).
//! - **Atomic format.** Temporary name, fdatasync, rename, directory fsync: a
//!   crash during format leaves no store or a complete one.
//! - **Every request runs as its own task** (`spawn_local`), so writes,
//!   syncs and reads overlap as far as the core allows: the core bounds what
//!   is in flight (`batches_in_flight_max`, `records_pending_max`,
//!   `bytes_pending_max`, `reads_in_flight_max`, one compaction read, two
//!   scrub reads), so the driver adds no limit of its own beyond
//!   `FDATASYNCS_IN_FLIGHT_MAX` and its pool's bound.
//! - **Coalesced syncs, two at a time.** The `Sync`s of one `submit` share
//!   one fdatasync, started at once unless `FDATASYNCS_IN_FLIGHT_MAX` (2)
//!   run; then they wait, and the next one to finish starts one for all
//!   that waited. An fdatasync covers only the syncs taken when it started
//!   (their writes had completed; one already running may have started
//!   before them). Two may overlap safely: every write here is O_DIRECT
//!   and reports its own error, so an fdatasync's result is that of its
//!   device FLUSH, which each gets (no page-cache writeback error that one
//!   fdatasync could consume and hide from the other), and after any
//!   failure none starts again.
//! - **A failed or short write, or a failed fdatasync, stops the shard**
//!   ([`ChunkDriver::step`] returns the error; the request is never reported
//!   done). After a failed fdatasync the state of the written blocks is
//!   unknown and retrying is unsafe ("fsyncgate"); no fdatasync is started
//!   after one failed. Read errors go back to the core as `IoError { errno }`.
//! - **Reads go through `DmaFile::read_at_aligned`** (O_DIRECT, io_uring),
//!   recovery's too, not the synchronous buffered pread the replica file
//!   uses at open: recovery reads every open segment whole (the disk, in
//!   production), which through the page cache would evict everything else
//!   for bytes read once, and the bytes checked are then the device's, as
//!   at run time. Every offset and length the core asks for is a multiple of
//!   the 4 KiB sector, so no read needs re-alignment.
//!
//! # Known limitations
//!
//! - **Writes come from a pool of DMA buffers** (`DmaPool`): the core
//!   encodes each batch straight into pool buffers of `write_bytes_max`
//!   (one largest record), a full one is written as it is and returns to
//!   the pool once written. Copied still: the chunk's bytes into the pool
//!   buffer (`append` takes a slice: ~100 µs per MiB here, the memory
//!   bandwidth of a cold destination), a run's last, partial piece (4-12 KiB
//!   for 1 MiB chunks: a `DmaBuffer` cannot be shortened and regrown), and a
//!   read's DMA buffer into the `Vec` the core verifies.
//! - Pool buffers beyond glommio's registered `io_memory` (2 MiB in
//!   toasty-chunks, bounded by this machine's 8 MiB memlock) are plain heap
//!   memory: the kernel pins their pages on every write (`gup`, ~10 % of
//!   write1m's CPU). A larger memlock and `io_memory` would remove that.
//! - Recovery keeps one read in flight, as `Recovery` asks (startup time is
//!   the bytes of open segments over QD1 bandwidth: 550-900 MiB/s here).
//! - A lone writer's durable 4 KiB append costs ~250 µs, 0.65-0.8x fio's
//!   pwrite + fdatasync: the O_DIRECT write through glommio's io_uring took
//!   ~115 µs against fio's ~80 µs, the fdatasync the same ~130 µs
//!   (perf/chunks.sh; with 16 and 64 writers group commit puts toasty
//!   ahead of fio).

use super::file::{io_error_of, sync_directory, written_whole, zero_fill};
use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::GlommioError;

use super::checks;
use crate::chunkstore::{
    BufferMemory, BufferSource, ChunkStore, Config, IoError, IoId, Recovery, RecoveryReport,
    Request, WriteBuffer, SECTOR_SIZE_U64,
};

/// The chunk file's name inside a shard's data directory.
pub const FILE_NAME: &str = "chunks.seg";
const FILE_NAME_TEMPORARY: &str = "chunks.seg.formatting";

/// Zero-fill writes: 4 MiB each, 8 in flight (QD8 is where this disk's
/// sequential writes reach most of their bandwidth, research/limits.md).

/// fdatasyncs running at once. With one, a sync whose writes completed
/// just after an fdatasync started waits for that one (~1-2 ms on this
/// disk under load) before its own starts; with two it starts at once.
/// write1m with 8 writers, medians of 8 interleaved rounds each ratio to
/// fio in its round (perf/chunks.md): 1: 0.71 and 0.81, 2: 0.85 and 0.84,
/// 4: 0.78 and 0.77. More add FLUSHes the device serializes anyway.
pub const FDATASYNCS_IN_FLIGHT_MAX: u32 = 2;

/// The tick the production configuration is sized for (`Config::production`:
/// batch delay, compaction retry and scrub rate are counted in 10 ms ticks).
pub const TICK: Duration = Duration::from_millis(10);

/// Why the chunk file cannot be used. Every message names the file.
#[derive(Debug)]
pub enum ChunkFilesError {
    Io {
        path: PathBuf,
        what: &'static str,
        error: io::Error,
    },
    /// The disk cannot hold the file: statvfs says so before anything is
    /// allocated (`bytes_available`), or `fallocate` said ENOSPC.
    NoSpace {
        path: PathBuf,
        bytes_needed: u64,
        bytes_available: Option<u64>,
    },
    /// The file exists with another size than this configuration needs.
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// The device wants a coarser O_DIRECT alignment than the 4 KiB sector.
    Alignment {
        path: PathBuf,
        alignment: u64,
    },
    Config(&'static str),
}

impl fmt::Display for ChunkFilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkFilesError::Io { path, what, error } => {
                write!(f, "{}: {what}: {error}", path.display())?;
                match error.raw_os_error() {
                    Some(libc::EINVAL) => {
                        write!(f, " (O_DIRECT refused? use ext4 or xfs, not tmpfs or overlayfs)")
                    }
                    Some(libc::EIO) => write!(f, " (device error: the shard stops; check dmesg)"),
                    Some(libc::EOPNOTSUPP) => write!(
                        f,
                        " (glommio took this device for one with poll queues: a file on it was \
                         first opened by glommio while empty, see `ChunkFiles::format`)"
                    ),
                    _ => Ok(()),
                }
            }
            ChunkFilesError::NoSpace { path, bytes_needed, bytes_available } => {
                write!(
                    f,
                    "{}: not enough disk space: the chunk file needs {bytes_needed} bytes \
                     ({} MiB) allocated up front",
                    path.display(),
                    bytes_needed >> 20
                )?;
                if let Some(available) = bytes_available {
                    write!(f, ", {available} bytes ({} MiB) are available", available >> 20)?;
                }
                write!(
                    f,
                    "; free space, point the data directory at a larger disk, or configure \
                     fewer or smaller segments"
                )
            }
            ChunkFilesError::SizeMismatch { path, expected, actual } => write!(
                f,
                "{}: {actual} bytes, but this configuration needs exactly {expected} \
                 (segment_count × segment_size_bytes): the file was formatted with other \
                 segment settings (restore them) or was truncated (remove it to rejoin empty \
                 and let peers repair the chunks)",
                path.display()
            ),
            ChunkFilesError::Alignment { path, alignment } => write!(
                f,
                "{}: the device needs {alignment}-byte O_DIRECT alignment, above the \
                 {SECTOR_SIZE_U64}-byte sector of the chunk format",
                path.display()
            ),
            ChunkFilesError::Config(reason) => write!(f, "invalid chunk store config: {reason}"),
        }
    }
}

impl std::error::Error for ChunkFilesError {}

fn failed(path: &Path, what: &'static str) -> impl FnOnce(GlommioError<()>) -> ChunkFilesError {
    let path = path.to_path_buf();
    move |error| ChunkFilesError::Io { path, what, error: io_error_of(error) }
}

/// Bytes of the chunk file for `config`.
pub fn file_size(config: &Config) -> u64 {
    u64::from(config.segment_count) * config.segment_size_bytes
}

/// The shard's chunk file, open for O_DIRECT reads and writes.
pub struct ChunkFiles {
    file: Rc<DmaFile>,
    path: Rc<Path>,
    config: Config,
    /// Shared by the store `recover` builds and the driver.
    pool: Rc<RefCell<DmaPool>>,
}

/// What `recover` found, and how long it took.
pub struct Recovered {
    pub store: ChunkStore,
    pub report: RecoveryReport,
    pub elapsed: Duration,
}

impl Recovered {
    /// One line for the log: chunks found, torn records, bytes, time.
    pub fn summary(&self) -> String {
        let report = &self.report;
        let seconds = self.elapsed.as_secs_f64();
        let scanned_mib = report.bytes_scanned as f64 / f64::from(1 << 20);
        format!(
            "recovered {} live chunks ({} deleted) from {} valid records; {} torn or rotten \
             records skipped, {} holes, {} quarantined segments, {} read errors; {:.1} MiB \
             scanned in {:.0} ms ({:.0} MiB/s)",
            report.chunks_live,
            report.chunks_deleted,
            report.records_valid,
            report.records_skipped_count,
            report.holes_count,
            report.segments_quarantined.len(),
            report.read_errors,
            scanned_mib,
            seconds * 1000.0,
            scanned_mib / seconds.max(1e-9),
        )
    }
}

impl ChunkFiles {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// True if `dir` holds a formatted chunk file.
    pub fn exists(dir: &Path) -> bool {
        ChunkFiles::path_in(dir).is_file()
    }

    /// Format a new, empty chunk file: allocate, zero-fill, sync, rename into
    /// place, sync the directory. On failure the temporary file is removed.
    pub async fn create(dir: &Path, config: &Config) -> Result<(), ChunkFilesError> {
        config.validate().map_err(ChunkFilesError::Config)?;
        let temporary = dir.join(FILE_NAME_TEMPORARY);
        let total = file_size(config);
        // Checked first: on ENOSPC ext4's fallocate keeps what it allocated
        // until the file is closed and removed, so the disk would be full
        // for a moment, failing every other writer. If statvfs fails,
        // fallocate still reports ENOSPC.
        if let Ok(available) = checks::available_bytes(dir) {
            if available < total {
                return Err(ChunkFilesError::NoSpace {
                    path: ChunkFiles::path_in(dir),
                    bytes_needed: total,
                    bytes_available: Some(available),
                });
            }
        }
        let result = ChunkFiles::format(&temporary, total).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result?;
        let path = ChunkFiles::path_in(dir);
        std::fs::rename(&temporary, &path).map_err(|error| ChunkFilesError::Io {
            path: path.clone(),
            what: "rename",
            error,
        })?;
        sync_directory(dir).map_err(|error| ChunkFilesError::Io {
            path: dir.to_path_buf(),
            what: "fsync directory",
            error,
        })
    }

    async fn format(path: &Path, total: u64) -> Result<(), ChunkFilesError> {
        // glommio 0.9.0 decides once per device and process whether files
        // there take its polled (IOPOLL) ring, by reading the first 512
        // bytes of the first file it opens: an empty file reads as a
        // success (EOF), the device is taken for pollable, and every later
        // read and overwrite fails with EOPNOTSUPP on a disk without poll
        // queues. So the file has its first sector before glommio opens it.
        let first_sector = [0u8; SECTOR_SIZE_U64 as usize];
        std::fs::File::create(path)
            .and_then(|mut file| file.write_all(&first_sector))
            .map_err(|error| ChunkFilesError::Io { path: path.into(), what: "create", error })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(failed(path, "create"))?;
        let file = Rc::new(file);
        let result = ChunkFiles::fill(&file, path, total).await;
        // Closed now, not at glommio's next I/O cycle: a failed file's
        // blocks are released only once it is closed and removed.
        let closed = match Rc::try_unwrap(file) {
            Ok(file) => file.close().await.map_err(failed(path, "close")),
            Err(_) => Ok(()),
        };
        result.and(closed)
    }

    /// Allocate `total` bytes, write zeros over them, fdatasync.
    async fn fill(file: &Rc<DmaFile>, path: &Path, total: u64) -> Result<(), ChunkFilesError> {
        let no_space = || ChunkFilesError::NoSpace {
            path: path.into(),
            bytes_needed: total,
            bytes_available: None,
        };
        if let Err(error) = file.pre_allocate(total, false).await {
            let error = io_error_of(error);
            if error.raw_os_error() == Some(libc::ENOSPC) {
                return Err(no_space());
            }
            return Err(ChunkFilesError::Io { path: path.into(), what: "allocate", error });
        }
        zero_fill(file, total).await.map_err(|error| {
            if error.raw_os_error() == Some(libc::ENOSPC) {
                return no_space();
            }
            ChunkFilesError::Io { path: path.into(), what: "zero-fill", error }
        })?;
        file.fdatasync().await.map_err(failed(path, "fdatasync"))
    }

    /// Open an existing chunk file; its size must match the configuration.
    pub async fn open(dir: &Path, config: &Config) -> Result<ChunkFiles, ChunkFilesError> {
        config.validate().map_err(ChunkFilesError::Config)?;
        let path = ChunkFiles::path_in(dir);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .map_err(failed(&path, "open"))?;
        let actual = file.file_size().await.map_err(failed(&path, "stat"))?;
        let expected = file_size(config);
        if actual != expected {
            return Err(ChunkFilesError::SizeMismatch { path, expected, actual });
        }
        let alignment = file.alignment();
        if !SECTOR_SIZE_U64.is_multiple_of(alignment) {
            return Err(ChunkFilesError::Alignment { path, alignment });
        }
        // EOPNOTSUPP is never a media error: every read would fail and
        // recovery would quarantine every segment. Refuse to start instead.
        if let Err(error) = file.read_at_aligned(0, SECTOR_SIZE_U64 as usize).await {
            let error = io_error_of(error);
            if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Err(ChunkFilesError::Io { path, what: "read", error });
            }
        }
        let file = Rc::new(file);
        let pool = Rc::new(RefCell::new(DmaPool::new(file.clone(), config)));
        Ok(ChunkFiles { file, path: path.into(), config: *config, pool })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rebuild the store from the file: `Recovery`'s reads, one at a time.
    /// A read error is handed to `Recovery` (it retries, then treats the
    /// range as unreadable); it is not an error of this call.
    pub async fn recover(&self) -> Result<Recovered, ChunkFilesError> {
        let started = Instant::now();
        let mut recovery = Recovery::new(self.config).map_err(ChunkFilesError::Config)?;
        while let Some(read) = recovery.next_read() {
            let at = file_offset(&self.config, read.segment, read.offset, read.length);
            match self.file.read_at_aligned(at, read.length as usize).await {
                Ok(bytes) => recovery.on_read(read, Ok(&bytes)),
                Err(error) => recovery.on_read(read, Err(io_failure(error))),
            }
        }
        let (mut store, report) = recovery.finish();
        store.set_buffer_source(Box::new(PoolSource(self.pool.clone())));
        Ok(Recovered { store, report, elapsed: started.elapsed() })
    }

    /// The driver that executes a store's requests against this file.
    pub fn driver(&self, tick: Duration) -> ChunkDriver {
        ChunkDriver {
            file: self.file.clone(),
            path: self.path.clone(),
            config: self.config,
            shared: Rc::new(RefCell::new(Shared::default())),
            pool: self.pool.clone(),
            tick,
            tick_next: Instant::now() + tick,
            stats: DriverStats::default(),
        }
    }
}

/// Aligned DMA buffers of `write_bytes_max` bytes, reused. The store
/// encodes batches straight into them (`PoolSource`), the driver writes a
/// full one as it is and takes it back once written: no copy from a batch
/// `Vec` into a fresh DMA buffer and no page faults of fresh memory per
/// write (perf of write1m before the pool: 34 % of the CPU in memmove, half
/// of it that copy, and 8 % in page faults).
struct DmaPool {
    file: Rc<DmaFile>,
    buffer_bytes: usize,
    free: Vec<DmaBuffer>,
    /// Buffers kept: every byte the pending limits allow in pieces, plus a
    /// partial piece per batch (in flight and open). More are dropped when
    /// written, so the pool never holds more than the store can use at once.
    free_max: usize,
    allocations: u64,
}

impl DmaPool {
    fn new(file: Rc<DmaFile>, config: &Config) -> DmaPool {
        let buffer_bytes = config.write_bytes_max as usize;
        let pieces_pending = config.bytes_pending_max.div_ceil(config.write_bytes_max) as usize;
        let free_max = pieces_pending + config.batches_in_flight_max as usize + 1;
        DmaPool { file, buffer_bytes, free: Vec::new(), free_max, allocations: 0 }
    }

    fn take(&mut self, capacity_bytes: usize) -> DmaBuffer {
        if capacity_bytes == self.buffer_bytes {
            if let Some(buffer) = self.free.pop() {
                assert_eq!(buffer.len(), self.buffer_bytes);
                return buffer;
            }
        }
        self.allocations += 1;
        self.file.alloc_dma_buffer(capacity_bytes)
    }

    fn give_back(&mut self, buffer: DmaBuffer) {
        if buffer.len() == self.buffer_bytes && self.free.len() < self.free_max {
            self.free.push(buffer);
        }
        assert!(self.free.len() <= self.free_max);
    }
}

/// Pool memory as the core sees it.
struct DmaMemory(DmaBuffer);

impl BufferMemory for DmaMemory {
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The store's buffer source: the driver's pool.
struct PoolSource(Rc<RefCell<DmaPool>>);

impl BufferSource for PoolSource {
    fn take(&mut self, capacity_bytes: usize) -> Box<dyn BufferMemory> {
        Box::new(DmaMemory(self.0.borrow_mut().take(capacity_bytes)))
    }
}

/// A read error for the core; one without an errno counts as EIO.
fn io_failure(error: GlommioError<()>) -> IoError {
    IoError { errno: io_error_of(error).raw_os_error().unwrap_or(libc::EIO) }
}

/// Where `(segment, offset)` is in the file. The core only asks for
/// sector-aligned ranges inside one segment; anything else is its bug.
fn file_offset(config: &Config, segment: u32, offset: u64, length: u64) -> u64 {
    assert!(segment < config.segment_count);
    assert!(offset.is_multiple_of(SECTOR_SIZE_U64));
    assert!(length.is_multiple_of(SECTOR_SIZE_U64));
    assert!(length > 0);
    assert!(offset + length <= config.segment_size_bytes);
    u64::from(segment) * config.segment_size_bytes + offset
}

/// Counters of what the driver executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub writes: u64,
    pub bytes_written: u64,
    /// `Sync` requests of the core.
    pub sync_requests: u64,
    /// fdatasync calls made for them (fewer: coalesced).
    pub fdatasyncs: u64,
    pub reads: u64,
    pub bytes_read: u64,
    pub read_errors: u64,
    /// Writes of a full pool buffer the store encoded into: no copy.
    pub writes_in_place: u64,
    /// Bytes copied into a DMA buffer before their write (a run's last,
    /// partial piece; segment headers).
    pub bytes_copied: u64,
    /// Pool buffers allocated because none was free.
    pub pool_allocations: u64,
    /// Time the fdatasyncs took, summed (concurrent ones each count).
    pub fdatasync_ns: u64,
    /// Writes in flight integrated over time: its growth over a window,
    /// divided by the window, is the mean queue depth the device saw from
    /// this shard (what fio's iodepth fixes).
    pub write_depth_ns: u64,
}

enum Completion {
    Written(IoId),
    /// One fdatasync covered all of these.
    Synced(Vec<IoId>),
    Read(IoId, Result<Vec<u8>, IoError>),
    /// A write or sync failed: the shard must stop.
    Failed(ChunkFilesError),
}

/// State the I/O tasks share with the driver (one executor: `Rc<RefCell>`).
#[derive(Default)]
struct Shared {
    completions: VecDeque<Completion>,
    /// The driver waiting in `step`.
    waker: Option<Waker>,
    /// `Sync` requests no running fdatasync covers yet.
    syncs_waiting: Vec<IoId>,
    fdatasyncs_running: u32,
    /// An fdatasync failed: no other starts (fsyncgate).
    sync_failed: bool,
    fdatasyncs: u64,
    fdatasync_ns: u64,
    writes_in_flight: u32,
    /// When `writes_in_flight` last changed.
    writes_changed: Option<Instant>,
    /// Time integral of `writes_in_flight` (see `DriverStats`).
    write_depth_ns: u64,
}

impl Shared {
    fn writes_in_flight_add(&mut self, started: bool) {
        let now = Instant::now();
        if let Some(since) = self.writes_changed {
            let nanos = u64::try_from((now - since).as_nanos()).unwrap_or(u64::MAX);
            self.write_depth_ns += u64::from(self.writes_in_flight) * nanos;
        }
        self.writes_changed = Some(now);
        if started {
            self.writes_in_flight += 1;
        } else {
            assert!(self.writes_in_flight > 0);
            self.writes_in_flight -= 1;
        }
    }

    fn complete(&mut self, completion: Completion) {
        self.completions.push_back(completion);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Executes one store's requests on its chunk file, and ticks it.
pub struct ChunkDriver {
    file: Rc<DmaFile>,
    path: Rc<Path>,
    config: Config,
    shared: Rc<RefCell<Shared>>,
    pool: Rc<RefCell<DmaPool>>,
    tick: Duration,
    tick_next: Instant,
    stats: DriverStats,
}

impl ChunkDriver {
    /// One turn of the shard's loop: start the store's requests, wait for a
    /// completion or the next tick, hand completions back (ticking the
    /// store when due), and start the requests they caused. Call it after
    /// feeding the store (append, delete, read, flush); then drain events.
    ///
    /// An error is a failed or short write or fdatasync: the shard must stop
    /// (its outcome is unknown, so it was not reported done).
    pub async fn step(&mut self, store: &mut ChunkStore) -> Result<(), ChunkFilesError> {
        self.submit(store);
        self.wait().await;
        self.complete(store)?;
        if Instant::now() >= self.tick_next {
            store.tick();
            // A late loop ticks once, not in a burst: ticks pace background
            // work, and a burst would bunch it up.
            self.tick_next = Instant::now() + self.tick;
        }
        self.submit(store);
        Ok(())
    }

    pub fn stats(&self) -> DriverStats {
        let shared = self.shared.borrow();
        let (fdatasyncs, fdatasync_ns) = (shared.fdatasyncs, shared.fdatasync_ns);
        let write_depth_ns = shared.write_depth_ns;
        let pool_allocations = self.pool.borrow().allocations;
        DriverStats { fdatasyncs, fdatasync_ns, write_depth_ns, pool_allocations, ..self.stats }
    }

    /// For an owner that runs its own event loop (the server's shard)
    /// instead of `step`: whether completions wait for `complete`.
    pub fn has_completions(&self) -> bool {
        !self.shared.borrow().completions.is_empty()
    }

    /// Wake `waker` at the next completion.
    pub fn register_waker(&self, waker: &Waker) {
        self.shared.borrow_mut().waker = Some(waker.clone());
    }

    /// Start every request the store has queued, each as its own task.
    pub fn submit(&mut self, store: &mut ChunkStore) {
        while let Some(request) = store.take_request() {
            match request {
                Request::Write { id, segment, offset, data } => {
                    self.write(id, segment, offset, data)
                }
                Request::Sync { id, .. } => {
                    self.stats.sync_requests += 1;
                    self.shared.borrow_mut().syncs_waiting.push(id);
                }
                Request::Read { id, segment, offset, length } => {
                    self.read(id, segment, offset, length)
                }
            }
        }
        // After the loop: the syncs of one turn share one fdatasync.
        syncs_start(&self.file, &self.shared, &self.path);
    }

    /// Hand every completion so far to the store. A failure is returned
    /// before anything else is delivered.
    pub fn complete(&mut self, store: &mut ChunkStore) -> Result<(), ChunkFilesError> {
        let completions = std::mem::take(&mut self.shared.borrow_mut().completions);
        let failure = completions.iter().position(|c| matches!(c, Completion::Failed(_)));
        if let Some(index) = failure {
            let Some(Completion::Failed(error)) = completions.into_iter().nth(index) else {
                unreachable!("position found a failure");
            };
            return Err(error);
        }
        for completion in completions {
            match completion {
                Completion::Written(id) => store.on_write_done(id),
                Completion::Synced(ids) => ids.into_iter().for_each(|id| store.on_sync_done(id)),
                Completion::Read(id, result) => {
                    self.stats.read_errors += u64::from(result.is_err());
                    store.on_read_done(id, result);
                }
                Completion::Failed(_) => unreachable!("failures returned above"),
            }
        }
        Ok(())
    }

    /// Until a completion arrives or the next tick is due.
    async fn wait(&self) {
        let now = Instant::now();
        if !self.shared.borrow().completions.is_empty() || self.tick_next <= now {
            return;
        }
        let shared = self.shared.clone();
        let ready = poll_fn(move |context| {
            let mut shared = shared.borrow_mut();
            if shared.completions.is_empty() {
                shared.waker = Some(context.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        });
        // Timing out is the tick: not an error.
        let _ = glommio::timer::timeout(self.tick_next - now, ready).await;
        self.shared.borrow_mut().waker = None;
    }

    fn write(&mut self, id: IoId, segment: u32, offset: u64, data: WriteBuffer) {
        let (memory, length) = data.into_parts();
        let size = length as u64;
        let at = file_offset(&self.config, segment, offset, size);
        let (buffer, pooled) = self.dma_buffer(memory, length);
        assert_eq!(buffer.len(), length);
        self.stats.writes += 1;
        self.stats.bytes_written += size;
        self.shared.borrow_mut().writes_in_flight_add(true);
        let (file, shared, path) = (self.file.clone(), self.shared.clone(), self.path.clone());
        let pool = self.pool.clone();
        glommio::spawn_local(async move {
            // Shared, not owned: `write_at` would consume a pool buffer.
            let buffer = Rc::new(buffer);
            let result = match file.write_rc_at(buffer.clone(), at).await {
                Ok(written) => written_whole(written, size, at),
                Err(error) => Err(io_error_of(error)),
            };
            shared.borrow_mut().writes_in_flight_add(false);
            if let (true, Ok(buffer)) = (pooled, Rc::try_unwrap(buffer)) {
                pool.borrow_mut().give_back(buffer);
            }
            let completion = match result {
                Ok(()) => Completion::Written(id),
                Err(error) => Completion::Failed(ChunkFilesError::Io {
                    path: path.to_path_buf(),
                    what: "write",
                    error,
                }),
            };
            shared.borrow_mut().complete(completion);
        })
        .detach();
    }

    /// The DMA buffer holding the first `length` bytes of `memory`, and
    /// whether it goes back to the pool once written. A full pool buffer is
    /// written as it is. Anything else is copied into a buffer of exactly
    /// `length` bytes: a run's last, partial piece (a `DmaBuffer` writes
    /// its whole length and shrinking one is for good, so the pool buffer
    /// goes back now) and segment headers (heap memory).
    fn dma_buffer(&mut self, memory: Box<dyn BufferMemory>, length: usize) -> (DmaBuffer, bool) {
        assert!(length <= memory.bytes().len());
        if length == memory.bytes().len() && memory.as_any().is::<DmaMemory>() {
            let Ok(memory) = memory.into_any().downcast::<DmaMemory>() else {
                unreachable!("the type was just checked");
            };
            self.stats.writes_in_place += 1;
            return (memory.0, true);
        }
        let mut buffer: DmaBuffer = self.file.alloc_dma_buffer(length);
        buffer.as_bytes_mut().copy_from_slice(&memory.bytes()[..length]);
        self.stats.bytes_copied += length as u64;
        if let Ok(memory) = memory.into_any().downcast::<DmaMemory>() {
            self.pool.borrow_mut().give_back(memory.0);
        }
        (buffer, false)
    }

    fn read(&mut self, id: IoId, segment: u32, offset: u64, length: u64) {
        let at = file_offset(&self.config, segment, offset, length);
        self.stats.reads += 1;
        self.stats.bytes_read += length;
        let (file, shared) = (self.file.clone(), self.shared.clone());
        glommio::spawn_local(async move {
            let result = match file.read_at_aligned(at, length as usize).await {
                // A short read goes to the core as is: it reports ShortRead.
                Ok(bytes) => Ok(bytes.to_vec()),
                Err(error) => Err(io_failure(error)),
            };
            shared.borrow_mut().complete(Completion::Read(id, result));
        })
        .detach();
    }
}

/// Start an fdatasync for every waiting sync unless
/// `FDATASYNCS_IN_FLIGHT_MAX` run or one failed. An fdatasync covers
/// exactly the syncs taken when it starts: the core asks for a sync only
/// after the writes it covers completed.
fn syncs_start(file: &Rc<DmaFile>, shared: &Rc<RefCell<Shared>>, path: &Rc<Path>) {
    let mut state = shared.borrow_mut();
    let max = FDATASYNCS_IN_FLIGHT_MAX;
    if !state.syncs_waiting.is_empty() && state.fdatasyncs_running < max && !state.sync_failed {
        state.fdatasyncs_running += 1;
        let ids = std::mem::take(&mut state.syncs_waiting);
        let (file, shared, path) = (file.clone(), shared.clone(), path.clone());
        glommio::spawn_local(fdatasync(file, shared, path, ids)).detach();
    }
    assert!(state.fdatasyncs_running <= max);
}

/// One fdatasync covering `ids`; then one for the syncs that waited for a
/// free slot meanwhile.
async fn fdatasync(file: Rc<DmaFile>, shared: Rc<RefCell<Shared>>, path: Rc<Path>, ids: Vec<IoId>) {
    assert!(!ids.is_empty());
    let started = Instant::now();
    let result = file.fdatasync().await;
    {
        let mut state = shared.borrow_mut();
        state.fdatasync_ns += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        assert!(state.fdatasyncs_running > 0);
        state.fdatasyncs_running -= 1;
        state.fdatasyncs += 1;
        match result {
            Ok(()) => state.complete(Completion::Synced(ids)),
            Err(error) => {
                state.sync_failed = true;
                state.complete(Completion::Failed(ChunkFilesError::Io {
                    path: path.to_path_buf(),
                    what: "fdatasync",
                    error: io_error_of(error),
                }));
                return;
            }
        }
    }
    syncs_start(&file, &shared, &path);
}
