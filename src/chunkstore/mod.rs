//! The chunk store of one shard: object bytes as checksummed records in
//! preallocated segment files, written with O_DIRECT by a driver.
//!
//! Sans-IO like `vsr/`: the core ([`ChunkStore`], [`Recovery`]) decides every
//! byte that goes to disk and emits [`Request`]s; a driver executes them and
//! reports completions (`on_write_done`, `on_sync_done`, `on_read_done`).
//! Time is `tick()`. The production driver (glommio DmaFile) is
//! `shard/chunks.rs`; [`mem`] is the in-memory, fault-injecting one.
//!
//! # Disk layout
//!
//! `segment_count` files of `segment_size_bytes` each. Every offset and
//! length is a multiple of [`SECTOR_SIZE`].
//!
//! ```text
//! segment: | header copy 0 | header copy 1 | record | record | ... | unused |
//!            sector 0        sector 1        ^ SEGMENT_DATA_OFFSET
//! record:  | RecordHeader (128 B) | data (data_length B) | zero padding to 4 KiB |
//! ```
//!
//! See [`format`] for the field tables. The rules that make it crash safe:
//!
//! - **Fills and generations.** A segment is *opened* (header copies
//!   rewritten with state Open and a fresh store-wide `generation`, copy 0
//!   then copy 1, each synced) before any record of that fill is written, and
//!   *freed* the same way with state Free. A record's `position` is
//!   `generation << 32 | sector index`: it names its fill and its offset, so
//!   a stale record of an older fill, or one that landed at the wrong offset,
//!   is rejected by recovery and by reads. A new fill always takes a
//!   generation above every header on disk, also after a restart, with no
//!   counter to persist.
//! - **Sequences.** A record's `sequence` orders the versions of a chunk: a
//!   user append's sequence is its own position (one active segment takes
//!   every append, so it grows in append order), and a relocated copy keeps
//!   the sequence of the record it copies. At recovery the highest sequence
//!   wins, and among copies the newest position.
//! - **Records are written once.** Appends fill a segment front to back; a
//!   byte is written again only after its segment was freed and reopened, and
//!   a segment is freed only after the relocations of its live chunks are
//!   durable. A fill is never continued after a restart: recovery seals every
//!   open segment, so bytes a crash left behind a fill's valid records can
//!   never be taken for part of it later.
//! - **Durable before acknowledged, in order.** A batch is durable when its
//!   writes and then one sync per segment it touched have completed; batches
//!   are acknowledged in the order they were appended ([`Event::Durable`]).
//! - **Recovery scans everything.** Every sector of an open segment is
//!   parsed: a valid header (checksums, cluster, group, generation, position)
//!   gives the record's length; the data's crc32c must match or the record is
//!   skipped (torn or rotten: it never enters the index); an invalid sector is
//!   skipped one sector at a time, so one rotten header loses one record, not
//!   the rest of the segment. The highest sequence of a chunk wins.
//! - **Chunk ids name immutable content.** The front end draws a fresh id
//!   per uploaded chunk; the store checks it while it knows the chunk
//!   ([`AppendError::ContentMismatch`]). Hence any valid copy of a chunk is
//!   the right bytes, and relocation, repair and duplicate copies are safe.
//! - **Tombstones.** `delete` appends a tombstone so a delete survives
//!   restart. A tombstone stays (relocated by compaction if needed) while an
//!   older put of its chunk may still be on disk; the index counts them.
//! - **Space.** User puts never take the last [`SEGMENTS_RESERVED_PUT`] free
//!   segments and deletes never the last one; while compaction runs, user
//!   appends leave its remaining live bytes free in the active segment. So
//!   relocations always fit, and a full store answers
//!   [`AppendError::NoSpace`], never overwrites. Once a user was refused
//!   space, compaction also takes segments above its live threshold (any
//!   that gains a sector), so a full store can still take the tombstones
//!   that will empty it.
//!
//! Write and sync errors are not reported to the core: after a failed
//! fdatasync the state of the written pages is unknown and retrying is unsafe
//! (PostgreSQL's "fsyncgate"), so the driver stops the shard and the replica
//! is repaired from its peers. Read errors are values ([`ReadError::Io`]).
//!
//! # Known limitations (decided, to revisit with measurements)
//!
//! - Recovery reads every open segment whole, one read in flight: startup
//!   time is disk size over sequential bandwidth. A persisted index
//!   checkpoint would bound it.
//! - Compaction reads whole segments, dead bytes included (no per-segment
//!   membership list in memory, which would cost 16 bytes per record).
//! - Resync after a rotten header probes data sectors for headers: user data
//!   holding a forged header with this fill's generation, segment and offset
//!   would be taken for a record. The front end's crc32c from metadata
//!   catches its bytes; a keyed header checksum would close it.
//! - A put hidden from one recovery by a transient read error is not
//!   counted in its chunk's `stale_puts`, so a tombstone may be dropped too
//!   early and the deleted chunk (its own bytes: ids are immutable) come back
//!   at a later restart, as garbage for the shard's GC.
//! - A store where every sector holds a live chunk or a needed tombstone
//!   refuses deletes too (NoSpace) until it gets more disk.
//! - The chunk's bytes are copied once, from `append`'s slice into the
//!   batch's write buffers ([`buffer`]: memory the driver lends, a pool of
//!   aligned DMA buffers in the glommio driver); taking ownership of the
//!   caller's buffer would save it only if that were already aligned DMA
//!   memory.

pub mod buffer;
pub mod format;
pub mod mem;
pub mod recovery;
pub mod service;
pub mod stream_copy;

mod index;
mod maintenance;
mod read;
mod scan;
mod segment;
mod store;

pub use buffer::{BufferMemory, BufferSource, HeapBuffers, WriteBuffer};
pub use read::ChunkBytes;
pub use recovery::{Hole, Recovery, RecoveryRead, RecoveryReport, SegmentSummary, SkippedRecord};
pub use scan::ScanError;
pub use segment::{SegmentInfo, SegmentStatus};
pub use store::{ChunkStore, Stats};

pub use crate::vsr::storage::SECTOR_SIZE;

use format::HeaderError;

/// Chunk ids are random u128s drawn by the front end, one per uploaded chunk.
pub type ChunkId = u128;

/// `SECTOR_SIZE` as the type offsets use.
pub const SECTOR_SIZE_U64: u64 = SECTOR_SIZE as u64;

/// Free segments a user put may not take: one for tombstones (so space can
/// always be released by deleting) and one for compaction's relocations.
pub const SEGMENTS_RESERVED_PUT: u32 = 2;

/// Free segments a tombstone may not take: compaction's relocation space.
pub const SEGMENTS_RESERVED_TOMBSTONE: u32 = 1;

/// Sanity bound on undrained events: far above what the in-flight limits
/// allow between two drains, so reaching it means a driver that never drains.
pub const EVENTS_MAX: usize = 1 << 16;

/// Where a chunk's record is. `length` and `crc32c` describe the data, so a
/// reader can tell a misdirected or stale record from the one it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub segment: u32,
    /// Byte offset of the record header inside the segment; sector aligned.
    pub offset: u64,
    /// Data bytes (0 for a tombstone).
    pub length: u32,
    pub crc32c: u32,
}

impl Location {
    /// Bytes the record occupies on disk (header, data, padding).
    pub fn record_size(&self) -> u64 {
        format::record_size(self.length)
    }
}

/// Names an `append` or `delete` until its [`Event::Durable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Names a `read` until its [`Event::Read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadTicket(pub u64);

/// Names one request until its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// A read the device could not serve (EIO and the like).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError {
    pub errno: i32,
}

/// What the driver must execute. Offsets and lengths are sector aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Complete with `on_write_done` once the write returned (not yet
    /// durable). At most `write_bytes_max` bytes; `data`'s memory came from
    /// the store's `BufferSource`, or the heap.
    Write { id: IoId, segment: u32, offset: u64, data: WriteBuffer },
    /// fdatasync of the segment file; complete with `on_sync_done`.
    Sync { id: IoId, segment: u32 },
    /// Complete with `on_read_done` and exactly `length` bytes.
    Read { id: IoId, segment: u32, offset: u64, length: u64 },
}

/// What the core tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An append (location of the record) or a delete (location of the
    /// tombstone, length 0) is durable.
    Durable {
        ticket: Ticket,
        chunk_id: ChunkId,
        location: Location,
    },
    Read {
        ticket: ReadTicket,
        chunk_id: ChunkId,
        result: Result<ChunkBytes, ReadError>,
    },
    /// The scrubber or compaction found a live chunk it could not verify:
    /// fetch it from a peer and `append` it again.
    Corrupt {
        chunk_id: ChunkId,
        location: Location,
        error: ReadError,
    },
    /// Compaction moved a live chunk, or a tombstone (length 0) still
    /// needed (durable at `to`; `from` stays readable until its segment is
    /// reused).
    Relocated {
        chunk_id: ChunkId,
        from: Location,
        to: Location,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// Too many records or bytes waiting to be durable: retry after events.
    Busy,
    /// No free segment for this record (compaction may free one later).
    NoSpace,
    TooLarge {
        length: usize,
        max: u32,
    },
    /// The id is live with other bytes: ids name immutable content.
    ContentMismatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteError {
    Busy,
    NoSpace,
    /// Not live (never appended, or already deleted).
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadSubmitError {
    Busy,
    /// Outside the data area, unaligned, or longer than a record can be.
    InvalidLocation,
}

/// Why a record's bytes were not returned. Never wrong bytes as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    Io(IoError),
    /// The driver returned another number of bytes than asked.
    ShortRead {
        expected: u64,
        actual: u64,
    },
    HeaderInvalid(HeaderError),
    /// A valid header of another place (misdirected or stale write).
    Misplaced {
        segment: u32,
        offset: u64,
    },
    WrongChunk {
        found: ChunkId,
    },
    Tombstone,
    LengthMismatch {
        expected: u32,
        found: u32,
    },
    /// The header's crc32c field is not the one the location names.
    CrcFieldMismatch {
        expected: u32,
        found: u32,
    },
    /// The data does not match its crc32c.
    Corrupt {
        expected: u32,
        actual: u32,
    },
}

/// Every knob of the store; see `Config::validate` for their relations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub cluster: u128,
    pub group: u32,
    pub segment_count: u32,
    pub segment_size_bytes: u64,
    pub chunk_size_max_bytes: u32,
    /// A batch is flushed when it holds this many bytes...
    pub batch_bytes_max: u64,
    /// ...or this many records...
    pub batch_records_max: u32,
    /// ...or its first record waited this many ticks.
    pub batch_delay_ticks: u64,
    /// Batches flushed and not yet acknowledged.
    pub batches_in_flight_max: u32,
    /// A batch's contiguous bytes go to the disk in writes of this size
    /// (the last one of a run shorter), each its own buffer and request.
    pub write_bytes_max: u64,
    /// Records appended and not yet durable (queued and in flight).
    pub records_pending_max: u32,
    /// Record bytes appended and not yet durable.
    pub bytes_pending_max: u64,
    /// User reads in flight (scrub and compaction have one each).
    pub reads_in_flight_max: u32,
    /// Scrubber read budget; 0 disables scrubbing.
    pub scrub_bytes_per_tick: u64,
    /// A sealed segment whose live bytes are below this percent of its
    /// capacity is compacted.
    pub compaction_live_percent_max: u32,
    /// Compaction runs only when at most this many segments are free.
    pub compaction_free_segments_trigger: u32,
    /// Compaction reads a segment in pieces of this size.
    pub compaction_read_bytes: u64,
    /// A segment whose compaction was aborted waits this long to be retried.
    pub compaction_retry_ticks: u64,
    /// Recovery reads a segment in pieces of this size.
    pub recovery_read_bytes: u64,
}

impl Config {
    /// Small sizes so tests fill, compact and crash segments quickly.
    pub fn test_min(cluster: u128, group: u32) -> Config {
        Config {
            cluster,
            group,
            segment_count: 8,
            segment_size_bytes: 64 * 1024,
            chunk_size_max_bytes: 8 * 1024,
            batch_bytes_max: 32 * 1024,
            batch_records_max: 8,
            batch_delay_ticks: 2,
            batches_in_flight_max: 2,
            // Below a largest record (12 KiB): records span writes.
            write_bytes_max: 8 * 1024,
            records_pending_max: 32,
            bytes_pending_max: 256 * 1024,
            reads_in_flight_max: 8,
            scrub_bytes_per_tick: 8 * 1024,
            compaction_live_percent_max: 50,
            compaction_free_segments_trigger: 8,
            compaction_read_bytes: 16 * 1024,
            compaction_retry_ticks: 20,
            recovery_read_bytes: 16 * 1024,
        }
    }

    /// Defaults before measurement (see `tuning.md`): 1 MiB chunks, 256 MiB
    /// segments, 10 ms ticks.
    pub fn production(cluster: u128, group: u32, segment_count: u32) -> Config {
        Config {
            cluster,
            group,
            segment_count,
            segment_size_bytes: 256 << 20,
            chunk_size_max_bytes: 1 << 20,
            batch_bytes_max: 4 << 20,
            batch_records_max: 64,
            batch_delay_ticks: 1,
            batches_in_flight_max: 4,
            // One largest record: a 1 MiB chunk is one write, in place.
            write_bytes_max: format::record_size(1 << 20),
            records_pending_max: 256,
            bytes_pending_max: 32 << 20,
            reads_in_flight_max: 64,
            // 10 MiB/s: a 1 TiB disk is verified about once a day.
            scrub_bytes_per_tick: 100 << 10,
            compaction_live_percent_max: 50,
            compaction_free_segments_trigger: segment_count / 8 + SEGMENTS_RESERVED_PUT + 1,
            compaction_read_bytes: 4 << 20,
            compaction_retry_ticks: 1000,
            recovery_read_bytes: 4 << 20,
        }
    }

    /// Bytes of the largest record.
    pub fn record_size_max(&self) -> u64 {
        format::record_size(self.chunk_size_max_bytes)
    }

    /// Record bytes one segment holds.
    pub fn segment_capacity(&self) -> u64 {
        self.segment_size_bytes - format::SEGMENT_DATA_OFFSET
    }

    pub fn validate(&self) -> Result<(), &'static str> {
        let sector = SECTOR_SIZE_U64;
        if !self.segment_size_bytes.is_multiple_of(sector) {
            return Err("segment_size_bytes must be a multiple of the sector size");
        }
        if self.chunk_size_max_bytes == 0 || self.chunk_size_max_bytes > format::DATA_LENGTH_MAX {
            return Err("chunk_size_max_bytes must be in 1..=DATA_LENGTH_MAX");
        }
        if self.segment_size_bytes < format::SEGMENT_DATA_OFFSET + self.record_size_max() {
            return Err("a segment must hold its headers and one largest record");
        }
        if self.segment_size_bytes / sector > format::ORDINAL_MAX {
            return Err("segment_size_bytes above what a sequence's sector index can name");
        }
        if self.segment_count < SEGMENTS_RESERVED_PUT + 2 {
            return Err("segment_count must leave room beyond the reserved segments");
        }
        if self.batch_bytes_max < self.record_size_max() || self.batch_records_max == 0 {
            return Err("a batch must hold one largest record");
        }
        if self.batches_in_flight_max == 0 {
            return Err("batches_in_flight_max must be positive");
        }
        if self.write_bytes_max == 0 || !self.write_bytes_max.is_multiple_of(sector) {
            return Err("write_bytes_max must be a positive multiple of the sector size");
        }
        if self.write_bytes_max > self.batch_bytes_max {
            // A larger piece would only ever be partly used.
            return Err("write_bytes_max must not exceed batch_bytes_max");
        }
        if self.records_pending_max < self.batch_records_max
            || self.bytes_pending_max < self.batch_bytes_max
        {
            return Err("the pending limits must hold a full batch");
        }
        if self.reads_in_flight_max == 0 {
            return Err("reads_in_flight_max must be positive");
        }
        if self.compaction_live_percent_max >= 100 {
            // Relocating a full segment frees one and fills one: no progress.
            return Err("compaction_live_percent_max must be below 100");
        }
        for read_bytes in [self.compaction_read_bytes, self.recovery_read_bytes] {
            if !read_bytes.is_multiple_of(sector) || read_bytes < self.record_size_max() {
                return Err("scan pieces must be sector aligned and hold a largest record");
            }
        }
        Ok(())
    }
}
