//! The replica's durable state on a real disk: one file per replica
//! (`replica.vsr` in the shard's data directory) holding the four zones of
//! `vsr::storage` at fixed offsets, written with O_DIRECT through glommio's
//! `DmaFile` (io_uring).
//!
//! Rules:
//! - **Pre-allocated and pre-written.** `create` allocates the whole file and
//!   writes every byte once (zeros, then the formatted zones) before the file
//!   gets its final name, so later writes overwrite allocated, written blocks
//!   in place: no extent conversion, no metadata journal commit per
//!   fdatasync, and a full disk is found at format time, never mid-write
//!   (research/limits.md: appending to a growing file is ~2x slower here).
//! - **Atomic format.** The file is formatted under a temporary name, synced,
//!   renamed, and the directory synced: a crash during format leaves either
//!   no replica file or a complete one, never a half-formatted one that opens.
//! - **Durable at completion (`WalSync::Dsync`, the default).** The file is
//!   opened O_DIRECT | O_DSYNC, as TigerBeetle opens its data file: a write
//!   that completes is durable (the kernel flushes the device cache before
//!   it reports the write), so one io_uring entry and one completion replace
//!   write + fdatasync, and writes never queue behind a sync in flight.
//!   Measured, 3 alternating pairs: 4 KiB PUT at 64 connections
//!   10,050-10,260 -> 11,530-12,190 ops/s and 138-142 -> 111-116 us of
//!   server CPU per PUT, at one connection p50 0.95-1.00 -> 0.75-0.79 ms
//!   (perf/results/2026-12-04/wal-dsync/). `WalSync::Fdatasync` keeps the
//!   old group commit: `write_batch` submits every queued write at once,
//!   then one fdatasync covers them all; only then are their ids reported
//!   done (the replica sends PrepareOk only for durable writes).
//! - **Reads at open are synchronous** (`FileReader`, plain pread): they
//!   happen once per process start, before the event loop runs. A read error
//!   yields zeros, which no checksum accepts, so the replica treats the range
//!   as corrupt and repairs it from peers (the same path as a bit flip).
//! - One copy per write: the replica's bytes are copied into an aligned DMA
//!   buffer. Messages in aligned buffers (no copy) are a runtime-issue task.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::file::{io_error_of, sync_directory, written_whole, zero_fill};

use crate::vsr::storage::{Layout, ReadStorage, Write, WriteId, Zone, SECTOR_SIZE};

/// The replica file's name inside a shard's data directory.
pub const FILE_NAME: &str = "replica.vsr";
const FILE_NAME_TEMPORARY: &str = "replica.vsr.formatting";
/// Format writes go out in pieces of this size.
const FORMAT_WRITE_SIZE: usize = 1 << 20;
/// Writes per group commit: a bound on DMA memory in one batch.
pub const BATCH_WRITES_MAX: usize = 256;

/// How writes to the replica file become durable (`--wal-sync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WalSync {
    /// O_DSYNC: each write is durable when it completes.
    #[default]
    Dsync,
    /// Plain O_DIRECT writes; an fdatasync after them makes them durable
    /// (one covers every write completed before it started).
    Fdatasync,
}

/// Where each zone starts in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneOffsets {
    starts: [u64; 4],
    pub total: u64,
}

impl ZoneOffsets {
    pub fn new(layout: &Layout) -> ZoneOffsets {
        let mut starts = [0u64; 4];
        let mut offset = 0u64;
        for (index, zone) in Zone::ALL.iter().enumerate() {
            starts[index] = offset;
            offset += layout.zone_size(*zone);
            assert!(offset % SECTOR_SIZE as u64 == 0);
        }
        ZoneOffsets { starts, total: offset }
    }

    pub fn start(&self, zone: Zone) -> u64 {
        let index = Zone::ALL.iter().position(|z| *z == zone).expect("every zone is in ALL");
        self.starts[index]
    }
}

/// Why the replica file cannot be used. Every message names the file and
/// says what to do.
#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        what: &'static str,
        error: io::Error,
    },
    /// The file exists but has the wrong size for this configuration.
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Io { path, what, error } => {
                write!(f, "{}: {what}: {error}", path.display())?;
                match error.raw_os_error() {
                    Some(libc::ENOSPC) => write!(
                        f,
                        " (the disk is full: free space or point --data at a larger disk; \
                         nothing was acknowledged from this file)"
                    ),
                    Some(libc::EINVAL) => {
                        write!(f, " (O_DIRECT refused? use ext4 or xfs, not tmpfs or overlayfs)")
                    }
                    _ => Ok(()),
                }
            }
            StorageError::SizeMismatch { path, expected, actual } => write!(
                f,
                "{}: {actual} bytes, but this configuration needs exactly {expected}: the file \
                 was formatted with other WAL or checkpoint sizes (restore the old settings) \
                 or was truncated (restore it from a backup, or remove it to rejoin the \
                 cluster empty and let peers repair it)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {}

fn io_error<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |error| StorageError::Io { path: path.to_path_buf(), what, error }
}

fn glommio_error<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(glommio::GlommioError<()>) -> StorageError + 'a {
    move |error| StorageError::Io { path: path.to_path_buf(), what, error: io_error_of(error) }
}

/// The replica file, open for O_DIRECT writes.
pub struct ReplicaFile {
    file: Rc<DmaFile>,
    sync: WalSync,
    path: PathBuf,
    offsets: ZoneOffsets,
    layout: Layout,
}

impl ReplicaFile {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// True if `dir` holds a formatted replica file.
    pub fn exists(dir: &Path) -> bool {
        ReplicaFile::path_in(dir).is_file()
    }

    /// Format a new replica file: allocate, zero-fill, write `formatted`
    /// (the output of `vsr::replica::format`), sync, and rename into place.
    pub async fn create(
        dir: &Path,
        layout: Layout,
        formatted: &[(Zone, u64, Vec<u8>)],
    ) -> Result<(), StorageError> {
        let offsets = ZoneOffsets::new(&layout);
        let temporary = dir.join(FILE_NAME_TEMPORARY);
        let path = ReplicaFile::path_in(dir);
        // glommio 0.9.0 decides once per device whether files there take its
        // polled ring by reading the first sector of the first file it opens:
        // an empty file "passes", and every later DMA read on the device then
        // fails with EOPNOTSUPP (see shard/chunks.rs). Give it a sector first.
        std::fs::write(&temporary, [0u8; SECTOR_SIZE]).map_err(io_error(&temporary, "create"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&temporary)
            .await
            .map_err(glommio_error(&temporary, "create"))?;
        file.pre_allocate(offsets.total, false)
            .await
            .map_err(glommio_error(&temporary, "allocate"))?;
        let file = Rc::new(file);
        zero_fill(&file, offsets.total).await.map_err(|error| StorageError::Io {
            path: temporary.clone(),
            what: "zero-fill",
            error,
        })?;
        for (zone, zone_offset, data) in formatted {
            assert!(data.len() % SECTOR_SIZE == 0 && zone_offset % SECTOR_SIZE as u64 == 0);
            assert!(zone_offset + data.len() as u64 <= layout.zone_size(*zone));
            for (index, piece) in data.chunks(FORMAT_WRITE_SIZE).enumerate() {
                let mut buffer = file.alloc_dma_buffer(piece.len());
                buffer.as_bytes_mut().copy_from_slice(piece);
                let at = offsets.start(*zone) + zone_offset + (index * FORMAT_WRITE_SIZE) as u64;
                write_all(&file, buffer, at, piece.len()).await.map_err(|error| {
                    StorageError::Io { path: temporary.clone(), what: "format", error }
                })?;
            }
        }
        file.fdatasync().await.map_err(glommio_error(&temporary, "fdatasync"))?;
        if let Ok(file) = Rc::try_unwrap(file) {
            file.close().await.map_err(glommio_error(&temporary, "close"))?;
        }
        std::fs::rename(&temporary, &path).map_err(io_error(&path, "rename"))?;
        sync_directory(dir).map_err(io_error(dir, "fsync directory"))?;
        Ok(())
    }

    /// Open an existing replica file for writing; its size must match.
    pub async fn open(
        dir: &Path,
        layout: Layout,
        sync: WalSync,
    ) -> Result<ReplicaFile, StorageError> {
        let path = ReplicaFile::path_in(dir);
        let offsets = ZoneOffsets::new(&layout);
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if sync == WalSync::Dsync {
            options.custom_flags(libc::O_DSYNC);
        }
        let file = options.dma_open(&path).await.map_err(glommio_error(&path, "open"))?;
        let actual = file.file_size().await.map_err(glommio_error(&path, "stat"))?;
        if actual != offsets.total {
            return Err(StorageError::SizeMismatch { path, expected: offsets.total, actual });
        }
        Ok(ReplicaFile { file: Rc::new(file), sync, path, offsets, layout })
    }

    /// A synchronous reader for `Replica::open`.
    pub fn reader(&self) -> Result<FileReader, StorageError> {
        let file = std::fs::File::open(&self.path).map_err(io_error(&self.path, "open"))?;
        Ok(FileReader { file, offsets: self.offsets, errors: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a completed write is already durable (`WalSync::Dsync`).
    pub fn durable_on_completion(&self) -> bool {
        self.sync == WalSync::Dsync
    }

    /// One group commit: every write goes out at once, then one fdatasync
    /// covers them (none is needed under `WalSync::Dsync`: each write was
    /// durable when it completed). Returns their ids, now durable. An
    /// error means the durability of these writes is unknown: the caller
    /// must stop the replica (never report them done).
    pub async fn write_batch(&self, writes: Vec<Write>) -> Result<Vec<WriteId>, StorageError> {
        assert!(writes.len() <= BATCH_WRITES_MAX);
        let mut tasks = Vec::with_capacity(writes.len());
        let mut ids = Vec::with_capacity(writes.len());
        for write in writes {
            write.assert_aligned(&self.layout);
            let mut buffer = self.file.alloc_dma_buffer(write.data.len());
            buffer.as_bytes_mut().copy_from_slice(&write.data);
            let file = self.file.clone();
            let at = self.offsets.start(write.zone) + write.offset;
            let size = write.data.len();
            ids.push(write.id);
            tasks.push(glommio::spawn_local(
                async move { write_all(&file, buffer, at, size).await },
            ));
        }
        let mut failure = None;
        for task in tasks {
            if let Err(error) = task.await {
                failure.get_or_insert(error);
            }
        }
        if let Some(error) = failure {
            return Err(StorageError::Io { path: self.path.clone(), what: "write", error });
        }
        if !self.durable_on_completion() {
            self.file.fdatasync().await.map_err(glommio_error(&self.path, "fdatasync"))?;
        }
        Ok(ids)
    }
}

impl ReplicaFile {
    /// One write: durable when it returns under `WalSync::Dsync`; otherwise
    /// the caller follows it with `sync` before reporting it done (the
    /// shard's WAL driver shares one fdatasync among every write that
    /// completed before it started).
    pub async fn write_one(&self, write: &Write) -> Result<(), StorageError> {
        write.assert_aligned(&self.layout);
        let mut buffer = self.file.alloc_dma_buffer(write.data.len());
        buffer.as_bytes_mut().copy_from_slice(&write.data);
        let at = self.offsets.start(write.zone) + write.offset;
        write_all(&self.file, buffer, at, write.data.len())
            .await
            .map_err(|error| StorageError::Io { path: self.path.clone(), what: "write", error })
    }

    /// fdatasync: every write completed before this call is durable after it.
    pub async fn sync(&self) -> Result<(), StorageError> {
        self.file.fdatasync().await.map_err(glommio_error(&self.path, "fdatasync"))
    }
}

async fn write_all(
    file: &DmaFile,
    buffer: glommio::io::DmaBuffer,
    at: u64,
    size: usize,
) -> io::Result<()> {
    let written = file.write_at(buffer, at).await.map_err(io_error_of)?;
    written_whole(written, size as u64, at)
}

/// Synchronous zone reads for `Replica::open`.
pub struct FileReader {
    file: std::fs::File,
    offsets: ZoneOffsets,
    /// Reads that failed and returned zeros instead.
    pub errors: u64,
}

impl ReadStorage for FileReader {
    fn read(&mut self, zone: Zone, offset: u64, buffer: &mut [u8]) {
        let at = self.offsets.start(zone) + offset;
        if self.file.read_exact_at(buffer, at).is_err() {
            // Zeros fail every checksum: the replica sees a corrupt range
            // and repairs it, exactly as for a bit flip.
            buffer.fill(0);
            self.errors += 1;
        }
    }
}
