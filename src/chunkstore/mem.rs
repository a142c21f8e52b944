//! An in-memory driver with faults drawn from a seeded PRNG, for tests and
//! (later) the simulator. It executes exactly the requests a production
//! driver would, against segments held in memory.
//!
//! Model of the device: a write is visible once it completes, and survives a
//! crash only once a sync of its segment, issued after it completed, has
//! completed. At a crash every other write (completed or still in flight)
//! keeps, loses or garbles each of its sectors independently: torn and lost
//! writes. Faults after that: reads that fail or return a flipped bit (the
//! stored bytes stay), record writes that land at another offset
//! (misdirected), and bits that rot in stored sectors.
//!
//! The driver remembers which sectors a fault damaged (rot, misdirection;
//! not crashes, which only hit unsynced writes) and which ranges a read
//! fault touched, so a test can tell an error the store had to report from
//! one it must not. Uses `sim::prng` for its draws: a test driver, like
//! `sim/`, may depend on the simulator's PRNG; the core never does.

use super::format::SEGMENT_DATA_OFFSET;
use super::{
    ChunkStore, Config, IoError, Location, Recovery, RecoveryReport, Request, SECTOR_SIZE_U64,
};
use crate::sim::prng::{Prng, Ratio};

const SECTOR: usize = SECTOR_SIZE_U64 as usize;

/// Unit of a garbled sector: the device wrote some 512-byte blocks of the
/// new data and not the rest.
const TORN_UNIT_SIZE: usize = 512;

/// EIO, as a failed read reports it.
const ERRNO_EIO: i32 = 5;

// Fork labels: one stream per kind of draw.
const FORK_LATENCY: u64 = 1;
const FORK_FAULT: u64 = 2;
const FORK_CRASH: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOptions {
    /// Each request completes 1..=1+max ticks after it was taken.
    pub latency_ticks_max: u64,
    /// Per read: fails with EIO.
    pub read_error: Ratio,
    /// Per read: one bit of the returned bytes flipped.
    pub read_corrupt: Ratio,
    /// Per record write: lands at another offset of the same segment.
    pub misdirect: Ratio,
    /// Per tick: one bit of one written record sector rots.
    pub rot: Ratio,
    /// Per sector of an unsynced write at a crash: garbled (otherwise kept
    /// or lost at even odds).
    pub crash_garble: Ratio,
    /// Whether read faults also hit the reads of recovery.
    pub recovery_read_faults: bool,
    /// Assert every write misses every live chunk (O(chunks) per write).
    pub check_writes: bool,
}

impl MemOptions {
    pub fn none() -> MemOptions {
        MemOptions {
            latency_ticks_max: 0,
            read_error: Ratio::zero(),
            read_corrupt: Ratio::zero(),
            misdirect: Ratio::zero(),
            rot: Ratio::zero(),
            crash_garble: Ratio::zero(),
            recovery_read_faults: false,
            check_writes: true,
        }
    }

    /// Out-of-order completions and torn writes at crashes, no other fault.
    pub fn crashes() -> MemOptions {
        MemOptions { latency_ticks_max: 3, crash_garble: Ratio::percent(25), ..MemOptions::none() }
    }

    /// Every fault at a rate a short test meets a few times.
    pub fn faulty() -> MemOptions {
        MemOptions {
            read_error: Ratio::new(1, 100),
            read_corrupt: Ratio::new(1, 100),
            misdirect: Ratio::new(1, 50),
            rot: Ratio::new(1, 200),
            ..MemOptions::crashes()
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    pub writes: u64,
    pub syncs: u64,
    pub reads: u64,
    pub read_errors: u64,
    pub read_corruptions: u64,
    pub misdirects: u64,
    pub rots: u64,
    pub crashes: u64,
    pub sectors_lost: u64,
    pub sectors_garbled: u64,
}

#[derive(Debug)]
struct InFlight {
    due: u64,
    request: Request,
    /// For a sync: the writes completed before it was taken.
    covers_stamp: u64,
}

/// A completed write not yet covered by a sync: what a crash may undo.
#[derive(Debug)]
struct Unsynced {
    segment: u32,
    offset: u64,
    stamp: u64,
    old: Vec<u8>,
    old_damaged: Vec<bool>,
    new: Vec<u8>,
}

pub struct MemDriver {
    config: Config,
    options: MemOptions,
    segments: Vec<Vec<u8>>,
    /// Per sector: a fault changed it since it was last written cleanly.
    damaged: Vec<Vec<bool>>,
    prng_latency: Prng,
    prng_fault: Prng,
    prng_crash: Prng,
    now: u64,
    in_flight: Vec<InFlight>,
    unsynced: Vec<Unsynced>,
    stamp: u64,
    read_faults: Vec<(u32, u64, u64)>,
    stats: MemStats,
}

impl MemDriver {
    /// Zeroed segments, as preallocated files are.
    pub fn new(config: Config, options: MemOptions, seed: u64) -> MemDriver {
        assert!(config.validate().is_ok());
        let size = config.segment_size_bytes as usize;
        let count = config.segment_count as usize;
        let prng = Prng::new(seed);
        MemDriver {
            config,
            options,
            segments: vec![vec![0; size]; count],
            damaged: vec![vec![false; size / SECTOR]; count],
            prng_latency: prng.fork(FORK_LATENCY),
            prng_fault: prng.fork(FORK_FAULT),
            prng_crash: prng.fork(FORK_CRASH),
            now: 0,
            in_flight: Vec::new(),
            unsynced: Vec::new(),
            stamp: 0,
            read_faults: Vec::new(),
            stats: MemStats::default(),
        }
    }

    pub fn stats(&self) -> MemStats {
        self.stats
    }

    pub fn options_set(&mut self, options: MemOptions) {
        self.options = options;
    }

    /// Run recovery against the disk as it is now.
    pub fn recover(&mut self) -> (ChunkStore, RecoveryReport) {
        let Ok(mut recovery) = Recovery::new(self.config) else {
            unreachable!("config validated in new");
        };
        while let Some(read) = recovery.next_read() {
            let faults = self.options.recovery_read_faults;
            let result = self.read_bytes(read.segment, read.offset, read.length, faults);
            recovery.on_read(read, result.as_deref().map_err(|&error| error));
        }
        recovery.finish()
    }

    /// One tick: the store ticks, its requests are taken, due ones complete.
    pub fn step(&mut self, store: &mut ChunkStore) {
        store.tick();
        self.take_requests(store);
        self.now += 1;
        self.rot_maybe();
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.in_flight.len() {
            if self.in_flight[index].due <= self.now {
                due.push(self.in_flight.remove(index));
            } else {
                index += 1;
            }
        }
        for request in due {
            self.complete(store, request);
            self.take_requests(store);
        }
    }

    /// Step until no record is pending and no write or sync is in flight.
    pub fn settle(&mut self, store: &mut ChunkStore, ticks_max: u64) -> bool {
        store.flush();
        for _ in 0..ticks_max {
            let writing = self
                .in_flight
                .iter()
                .any(|in_flight| !matches!(in_flight.request, Request::Read { .. }));
            if store.records_pending() == 0 && !writing && self.unsynced.is_empty() {
                return true;
            }
            self.step(store);
        }
        false
    }

    /// Power loss: requests in flight vanish, unsynced writes tear.
    pub fn crash(&mut self) {
        self.stats.crashes += 1;
        // A write in flight may have reached the device in part: it tears
        // like a completed, unsynced one.
        for in_flight in std::mem::take(&mut self.in_flight) {
            if let Request::Write { segment, offset, data, .. } = in_flight.request {
                self.write_apply(segment, offset, &data);
            }
        }
        for write in std::mem::take(&mut self.unsynced).into_iter().rev() {
            self.tear(write);
        }
    }

    /// Flip one bit at byte `offset` of `segment` (a fault: marks damage).
    pub fn flip_bit(&mut self, segment: u32, offset: u64, bit: u8) {
        self.segments[segment as usize][offset as usize] ^= 1 << (bit % 8);
        self.damaged[segment as usize][offset as usize / SECTOR] = true;
    }

    /// Overwrite bytes directly, as a test crafting a disk does (no damage
    /// bookkeeping, durable at once).
    pub fn write_raw(&mut self, segment: u32, offset: u64, bytes: &[u8]) {
        let start = offset as usize;
        self.segments[segment as usize][start..start + bytes.len()].copy_from_slice(bytes);
    }

    pub fn segment_bytes(&self, segment: u32) -> &[u8] {
        &self.segments[segment as usize]
    }

    /// Whether a fault (rot, misdirection) changed a sector of the record.
    pub fn damaged(&self, location: Location) -> bool {
        self.sectors(location.offset, location.record_size())
            .any(|sector| self.damaged[location.segment as usize][sector])
    }

    /// Whether a read fault touched the record since `read_faults_clear`.
    pub fn read_faulted(&self, location: Location) -> bool {
        let end = location.offset + location.record_size();
        self.read_faults.iter().any(|&(segment, offset, length)| {
            segment == location.segment && offset < end && location.offset < offset + length
        })
    }

    pub fn read_faults_clear(&mut self) {
        self.read_faults.clear();
    }

    /// Whether the record's bytes would survive a crash now.
    pub fn durable(&self, location: Location) -> bool {
        let end = location.offset + location.record_size();
        !self.unsynced.iter().any(|write| {
            write.segment == location.segment
                && write.offset < end
                && location.offset < write.offset + write.new.len() as u64
        })
    }

    fn sectors(&self, offset: u64, length: u64) -> std::ops::Range<usize> {
        (offset as usize / SECTOR)..((offset + length) as usize).div_ceil(SECTOR)
    }

    fn take_requests(&mut self, store: &mut ChunkStore) {
        while let Some(request) = store.take_request() {
            if let Request::Write { segment, offset, data, .. } = &request {
                self.check_write(store, *segment, *offset, data.len() as u64);
            }
            let latency = self.prng_latency.range_inclusive(1, 1 + self.options.latency_ticks_max);
            let covers_stamp = self.stamp;
            self.in_flight.push(InFlight { due: self.now + latency, request, covers_stamp });
        }
    }

    /// The store's promise: a write never overlaps a write in flight, nor
    /// (when `check_writes`) a live chunk's record.
    fn check_write(&self, store: &ChunkStore, segment: u32, offset: u64, length: u64) {
        let end = offset + length;
        let overlaps = |other_segment: u32, other_offset: u64, other_length: u64| {
            other_segment == segment && other_offset < end && offset < other_offset + other_length
        };
        for in_flight in &self.in_flight {
            if let Request::Write { segment, offset, data, .. } = &in_flight.request {
                assert!(!overlaps(*segment, *offset, data.len() as u64), "write over a write");
            }
        }
        if self.options.check_writes {
            for (chunk_id, location) in store.chunks() {
                let live = overlaps(location.segment, location.offset, location.record_size());
                assert!(!live, "write over live chunk {chunk_id:#x} at {location:?}");
            }
        }
    }

    fn complete(&mut self, store: &mut ChunkStore, in_flight: InFlight) {
        match in_flight.request {
            Request::Write { id, segment, offset, data } => {
                self.stats.writes += 1;
                let landing = self.misdirect_maybe(segment, offset, data.len() as u64);
                self.write_apply(segment, landing, &data);
                if landing != offset {
                    for sector in self.sectors(landing, data.len() as u64) {
                        self.damaged[segment as usize][sector] = true;
                    }
                }
                store.on_write_done(id);
            }
            Request::Sync { id, segment } => {
                self.stats.syncs += 1;
                let covers = in_flight.covers_stamp;
                self.unsynced.retain(|write| write.segment != segment || write.stamp >= covers);
                store.on_sync_done(id);
            }
            Request::Read { id, segment, offset, length } => {
                let result = self.read_bytes(segment, offset, length, true);
                store.on_read_done(id, result);
            }
        }
    }

    fn read_bytes(
        &mut self,
        segment: u32,
        offset: u64,
        length: u64,
        faults: bool,
    ) -> Result<Vec<u8>, IoError> {
        self.stats.reads += 1;
        let start = offset as usize;
        let mut bytes = self.segments[segment as usize][start..start + length as usize].to_vec();
        let error = self.prng_fault.chance(self.options.read_error);
        let corrupt = self.prng_fault.chance(self.options.read_corrupt);
        assert!(!bytes.is_empty());
        let bit = self.prng_fault.index(bytes.len() * 8);
        if !faults {
            return Ok(bytes);
        }
        if error {
            self.stats.read_errors += 1;
            self.read_faults.push((segment, offset, length));
            return Err(IoError { errno: ERRNO_EIO });
        }
        if corrupt {
            self.stats.read_corruptions += 1;
            bytes[bit / 8] ^= 1 << (bit % 8);
            let sector_offset =
                (offset / SECTOR_SIZE_U64 + (bit / 8 / SECTOR) as u64) * SECTOR_SIZE_U64;
            self.read_faults.push((segment, sector_offset, SECTOR_SIZE_U64));
        }
        Ok(bytes)
    }

    /// Where a write lands: elsewhere in the same segment's record area now
    /// and then (never over the segment headers, which the store protects
    /// with two copies instead).
    fn misdirect_maybe(&mut self, segment: u32, offset: u64, length: u64) -> u64 {
        let misdirect = self.prng_fault.chance(self.options.misdirect);
        let size = self.config.segment_size_bytes;
        if !misdirect || offset < SEGMENT_DATA_OFFSET || size - length <= SEGMENT_DATA_OFFSET {
            return offset;
        }
        let slots = (size - length - SEGMENT_DATA_OFFSET) / SECTOR_SIZE_U64;
        let landing =
            SEGMENT_DATA_OFFSET + self.prng_fault.range_inclusive(0, slots) * SECTOR_SIZE_U64;
        if landing != offset {
            self.stats.misdirects += 1;
            // The intended place keeps its old bytes.
            for sector in self.sectors(offset, length) {
                self.damaged[segment as usize][sector] = true;
            }
        }
        landing
    }

    /// Apply a write (a clean one: its sectors are no longer damaged) and
    /// remember what a crash could bring back.
    fn write_apply(&mut self, segment: u32, offset: u64, data: &[u8]) {
        let start = offset as usize;
        let end = start + data.len();
        let sectors = self.sectors(offset, data.len() as u64);
        let stored = &mut self.segments[segment as usize];
        let old = stored[start..end].to_vec();
        stored[start..end].copy_from_slice(data);
        let damaged = &mut self.damaged[segment as usize];
        let old_damaged = damaged[sectors.clone()].to_vec();
        damaged[sectors].fill(false);
        self.unsynced.push(Unsynced {
            segment,
            offset,
            stamp: self.stamp,
            old,
            old_damaged,
            new: data.to_vec(),
        });
        self.stamp += 1;
    }

    /// A crash decides each sector of an unsynced write: kept, lost (old
    /// bytes back) or garbled (some 512-byte units new, some old, or noise).
    fn tear(&mut self, write: Unsynced) {
        let segment = write.segment as usize;
        for (index, new) in write.new.chunks(SECTOR).enumerate() {
            let start = write.offset as usize + index * SECTOR;
            let old = &write.old[index * SECTOR..index * SECTOR + new.len()];
            let sector = start / SECTOR;
            let garble = self.prng_crash.chance(self.options.crash_garble);
            let keep = self.prng_crash.boolean();
            let target = &mut self.segments[segment][start..start + new.len()];
            if garble {
                self.stats.sectors_garbled += 1;
                for (unit, chunk) in target.chunks_mut(TORN_UNIT_SIZE).enumerate() {
                    let from = unit * TORN_UNIT_SIZE;
                    let source = if self.prng_crash.boolean() { new } else { old };
                    chunk.copy_from_slice(&source[from..from + chunk.len()]);
                }
                let byte = self.prng_crash.index(new.len());
                target[byte] ^= 0x5a;
            } else if !keep {
                self.stats.sectors_lost += 1;
                target.copy_from_slice(old);
                self.damaged[segment][sector] = write.old_damaged[index];
            }
        }
    }

    fn rot_maybe(&mut self) {
        if !self.prng_fault.chance(self.options.rot) {
            return;
        }
        let segment = self.prng_fault.index(self.segments.len());
        let sectors = self.segments[segment].len() / SECTOR;
        let first = SEGMENT_DATA_OFFSET as usize / SECTOR;
        let sector = first + self.prng_fault.index(sectors - first);
        let bit = self.prng_fault.index(SECTOR * 8);
        let start = sector * SECTOR;
        // Never-written sectors stay zero: rot there would change nothing
        // anyone reads.
        if self.segments[segment][start..start + SECTOR].iter().all(|&byte| byte == 0) {
            return;
        }
        self.stats.rots += 1;
        self.flip_bit(segment as u32, (start + bit / 8) as u64, (bit % 8) as u8);
    }
}
