//! One replica's simulated storage, and the fault atlas that keeps the
//! faults injected into a replication group survivable.
//!
//! A [`Disk`] holds the four zones of [`crate::vsr::storage`] in memory. A
//! write becomes durable after a random latency (writes complete out of
//! order, as on a real device with a deep queue); until then a crash may keep
//! it, drop it or, where a real device could tear it, garble it. Stored
//! sectors may rot after a write completes, a prepare write may land in the
//! wrong slot, and a read at open may return flipped bits.
//!
//! Every corruption is allowed only where the group's [`FaultAtlas`] says so,
//! so that each fault is one the protocol must repair: a failing seed is then
//! always a bug, never an impossible disk.

use std::rc::Rc;

use super::prng::{Prng, Ratio};
use crate::vsr::message::HEADER_SIZE;
use crate::vsr::storage::{
    Layout, ReadStorage, Write, WriteId, Zone, SECTOR_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE,
};

const SECTOR_SIZE_U64: u64 = SECTOR_SIZE as u64;

/// Headers that share one header-ring sector, and so share its fate.
const HEADERS_PER_SECTOR: usize = SECTOR_SIZE / HEADER_SIZE;
const _: () = assert!(SECTOR_SIZE % HEADER_SIZE == 0);
// The atlas decides superblock faults per copy by sector.
const _: () = assert!(SUPERBLOCK_COPY_SIZE == SECTOR_SIZE);

/// Bits flipped by one corruption: a few, as bit rot does; at least one, so
/// the sector really differs.
const BIT_FLIPS_MAX: u64 = 4;

/// Unit of a torn sector: the device wrote some 512-byte blocks of the new
/// data and not the rest (512 B is the smallest atomic unit of older drives).
const TORN_UNIT_SIZE: usize = 512;

/// Sanity bound on writes in flight at once: far above any WAL's needs, so
/// reaching it means a driver that never ticks or a replica that leaks writes.
const WRITES_PENDING_MAX: usize = 65_536;

// Fork labels: one stream per kind of draw, so a new knob does not reshuffle
// the others.
const FORK_LATENCY: u64 = 1;
const FORK_WRITE_FAULT: u64 = 2;
const FORK_MISDIRECT: u64 = 3;
const FORK_CRASH: u64 = 4;
const FORK_READ_FAULT: u64 = 5;
const FORK_CORRUPTION: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// Ticks every write takes at least.
    pub write_latency_min: u64,
    /// Mean write latency in ticks; the part above the minimum is exponential.
    pub write_latency_mean: u64,
    /// Per sector read at open: return flipped bits (the stored bytes stay).
    pub read_fault: Ratio,
    /// Per sector written: latent corruption once the write completes.
    pub write_fault: Ratio,
    /// Per WalPrepares write: it lands in another slot.
    pub misdirect: Ratio,
    /// Per sector of a write in flight at a crash: garbled rather than kept
    /// or dropped.
    pub crash_fault: Ratio,
}

impl DiskOptions {
    /// A swarm-testing draw in TigerBeetle's VOPR ranges (10 ms ticks),
    /// with read, write and misdirect faults kept at 0–1 %.
    pub fn random(prng: &mut Prng) -> DiskOptions {
        let write_latency_min = prng.range_inclusive(0, 1);
        let options = DiskOptions {
            write_latency_min,
            // Up to 1 s, as TigerBeetle's write latency.
            // Ticks are 10 ms: a disk slower than ~100 ms per write is broken
            // hardware, not a fault the protocol must make progress through.
            // A quarter of the disks are slow (up to 400 ms per write): that is
            // when a write is most likely in flight at a crash.
            write_latency_mean: if prng.range_inclusive(0, 3) == 0 {
                prng.range_inclusive(10, 40)
            } else {
                prng.range_inclusive(1, 10)
            }
            .max(write_latency_min),
            read_fault: Ratio::new(prng.range_inclusive(0, 100) as u32, 10_000),
            write_fault: Ratio::new(prng.range_inclusive(0, 100) as u32, 10_000),
            misdirect: Ratio::new(prng.range_inclusive(0, 100) as u32, 10_000),
            // Only at crashes and only on atlas-permitted sectors, so it can
            // be high: TigerBeetle uses 80–100 % per write in flight.
            crash_fault: Ratio::percent(prng.range_inclusive(0, 100) as u32),
        };
        options.assert_valid();
        options
    }

    /// No faults, a short latency; completions still reorder.
    pub fn quiet() -> DiskOptions {
        DiskOptions {
            write_latency_min: 1,
            write_latency_mean: 3,
            read_fault: Ratio::zero(),
            write_fault: Ratio::zero(),
            misdirect: Ratio::zero(),
            crash_fault: Ratio::zero(),
        }
    }

    pub fn assert_valid(&self) {
        assert!(self.write_latency_mean >= self.write_latency_min);
        self.read_fault.assert_valid();
        self.write_fault.assert_valid();
        self.misdirect.assert_valid();
        self.crash_fault.assert_valid();
    }
}

/// What may go bad in one WAL slot of one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotFault {
    None,
    /// The slot's redundant header (its header-ring sector).
    Header,
    /// The slot's prepare.
    Prepare,
}

/// Which targets of which replica of ONE replication group may be corrupted
/// (TigerBeetle's "cluster fault atlas"). With f = (R − 1) / 2:
/// - per WAL slot, at most f replicas may lose that slot's header or prepare,
///   and never both on one replica, so a majority holds an intact copy of
///   each and every replica keeps one of the two to know the slot exists;
/// - per replica, at most one of the superblock copies, which a 2-of-4
///   quorum survives;
/// - the checkpoint zone of at most f replicas.
///
/// With f = 0 (R = 1 or 2) nothing is corruptible: no other replica could
/// repair it.
#[derive(Clone, Debug)]
pub struct FaultAtlas {
    layout: Layout,
    replica_count: usize,
    faults_max: usize,
    /// `[replica][slot]`.
    wal_slots: Vec<Vec<SlotFault>>,
    /// Per replica: the one superblock copy that may be corrupted.
    superblock_copy: Vec<Option<usize>>,
    checkpoint: Vec<bool>,
}

impl FaultAtlas {
    pub fn new(prng: &mut Prng, replica_count: usize, layout: Layout) -> FaultAtlas {
        let mut atlas = FaultAtlas::none(replica_count, layout);
        if atlas.faults_max == 0 {
            return atlas;
        }
        atlas.generate_wal(prng);
        for copy in atlas.superblock_copy.iter_mut() {
            *copy = Some(prng.index(SUPERBLOCK_COPIES));
        }
        let mut replicas: Vec<usize> = (0..replica_count).collect();
        prng.shuffle(&mut replicas);
        for &replica in &replicas[..atlas.faults_max] {
            atlas.checkpoint[replica] = true;
        }
        atlas.assert_invariants();
        atlas
    }

    /// An atlas that permits no corruption at all.
    pub fn none(replica_count: usize, layout: Layout) -> FaultAtlas {
        assert!(replica_count >= 1);
        let slot_count = layout.wal_slot_count as usize;
        assert!(slot_count % HEADERS_PER_SECTOR == 0, "Layout keeps header sectors whole");
        FaultAtlas {
            layout,
            replica_count,
            faults_max: (replica_count - 1) / 2,
            wal_slots: vec![vec![SlotFault::None; slot_count]; replica_count],
            superblock_copy: vec![None; replica_count],
            checkpoint: vec![false; replica_count],
        }
    }

    pub fn replica_count(&self) -> usize {
        self.replica_count
    }

    /// f: the most replicas that may lose any one piece of data.
    pub fn faults_max(&self) -> usize {
        self.faults_max
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// May the sector holding `offset` of `zone` on `replica` be corrupted?
    pub fn may_corrupt(&self, replica: usize, zone: Zone, offset: u64) -> bool {
        assert!(replica < self.replica_count);
        assert!(offset < self.layout.zone_size(zone));
        let sector_offset = offset - offset % SECTOR_SIZE_U64;
        match zone {
            Zone::Superblock => {
                let copy = (sector_offset / SUPERBLOCK_COPY_SIZE as u64) as usize;
                self.superblock_copy[replica] == Some(copy)
            }
            Zone::WalHeaders => {
                // One sector holds 16 headers: it may rot only if all 16
                // slots allow their header to.
                let slot_first = (sector_offset / HEADER_SIZE as u64) as usize;
                let slots = &self.wal_slots[replica][slot_first..slot_first + HEADERS_PER_SECTOR];
                slots.iter().all(|&fault| fault == SlotFault::Header)
            }
            Zone::WalPrepares => {
                let slot = (offset / self.layout.message_size_max) as usize;
                self.wal_slots[replica][slot] == SlotFault::Prepare
            }
            Zone::Checkpoint => self.checkpoint[replica],
        }
    }

    /// May every sector of `offset..offset + size` be corrupted?
    pub fn may_corrupt_range(&self, replica: usize, zone: Zone, offset: u64, size: u64) -> bool {
        assert!(offset % SECTOR_SIZE_U64 == 0);
        assert!(size % SECTOR_SIZE_U64 == 0);
        (offset..offset + size)
            .step_by(SECTOR_SIZE)
            .all(|sector_offset| self.may_corrupt(replica, zone, sector_offset))
    }

    /// Per header sector (16 slots), pick f replicas that may lose something
    /// there: each either the header sector, or some of the 16 prepares.
    /// Choosing per sector keeps the per-slot bound of f by construction.
    fn generate_wal(&mut self, prng: &mut Prng) {
        assert!(self.faults_max > 0);
        let slot_count = self.layout.wal_slot_count as usize;
        let mut replicas: Vec<usize> = (0..self.replica_count).collect();
        for slot_first in (0..slot_count).step_by(HEADERS_PER_SECTOR) {
            prng.shuffle(&mut replicas);
            for &replica in &replicas[..self.faults_max] {
                let slots = &mut self.wal_slots[replica][slot_first..][..HEADERS_PER_SECTOR];
                if prng.boolean() {
                    slots.fill(SlotFault::Header);
                } else {
                    for slot in slots.iter_mut() {
                        *slot = if prng.boolean() { SlotFault::Prepare } else { SlotFault::None };
                    }
                }
            }
        }
    }

    /// Checks the promises of the type doc through `may_corrupt` itself.
    pub fn assert_invariants(&self) {
        let f = self.faults_max;
        for slot in 0..self.layout.wal_slot_count {
            let mut replicas_faulty = 0;
            for replica in 0..self.replica_count {
                let header = self.may_corrupt(replica, Zone::WalHeaders, slot * HEADER_SIZE as u64);
                let prepare = self.may_corrupt(
                    replica,
                    Zone::WalPrepares,
                    slot * self.layout.message_size_max,
                );
                assert!(!(header && prepare), "header and prepare of one slot both corruptible");
                replicas_faulty += usize::from(header || prepare);
            }
            assert!(replicas_faulty <= f, "slot {slot} corruptible on more than f replicas");
        }
        let mut checkpoints_faulty = 0;
        for replica in 0..self.replica_count {
            let copies_faulty = (0..SUPERBLOCK_COPIES)
                .filter(|&copy| {
                    let offset = (copy * SUPERBLOCK_COPY_SIZE) as u64;
                    self.may_corrupt(replica, Zone::Superblock, offset)
                })
                .count();
            assert!(copies_faulty <= 1.min(f), "too many corruptible superblock copies");
            checkpoints_faulty += usize::from(self.checkpoint[replica]);
        }
        assert!(checkpoints_faulty <= f, "checkpoint corruptible on more than f replicas");
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub writes_submitted: u64,
    pub writes_completed: u64,
    pub writes_misdirected: u64,
    pub sectors_corrupted_write: u64,
    pub sectors_corrupted_read: u64,
    pub sectors_corrupted_scripted: u64,
    pub crashes: u64,
    pub crash_sectors_kept: u64,
    pub crash_sectors_dropped: u64,
    pub crash_sectors_garbled: u64,
}

struct PendingWrite {
    done_tick: u64,
    /// Submission order: breaks ties between writes done at the same tick.
    sequence: u64,
    write: Write,
}

pub struct Disk {
    layout: Layout,
    options: DiskOptions,
    atlas: Rc<FaultAtlas>,
    replica: usize,
    faults_enabled: bool,
    /// Indexed by `zone_index`.
    zones: [Vec<u8>; 4],
    pending: Vec<PendingWrite>,
    sequence_next: u64,
    tick_last: u64,
    stats: DiskStats,
    prng_latency: Prng,
    prng_write_fault: Prng,
    prng_misdirect: Prng,
    prng_crash: Prng,
    prng_read_fault: Prng,
    /// Bit positions and garbage bytes of corruptions.
    prng_corruption: Prng,
}

fn zone_index(zone: Zone) -> usize {
    match zone {
        Zone::Superblock => 0,
        Zone::WalHeaders => 1,
        Zone::WalPrepares => 2,
        Zone::Checkpoint => 3,
    }
}

impl Disk {
    pub fn new(
        layout: Layout,
        options: DiskOptions,
        prng: Prng,
        atlas: Rc<FaultAtlas>,
        replica: usize,
    ) -> Disk {
        options.assert_valid();
        assert!(replica < atlas.replica_count());
        assert_eq!(atlas.layout(), layout, "the atlas maps this layout");
        let zones = Zone::ALL.map(|zone| vec![0u8; layout.zone_size(zone) as usize]);
        for zone in Zone::ALL {
            assert_eq!(zones[zone_index(zone)].len() as u64, layout.zone_size(zone));
        }
        Disk {
            layout,
            options,
            atlas,
            replica,
            faults_enabled: true,
            zones,
            pending: Vec::new(),
            sequence_next: 0,
            tick_last: 0,
            stats: DiskStats::default(),
            prng_latency: prng.fork(FORK_LATENCY),
            prng_write_fault: prng.fork(FORK_WRITE_FAULT),
            prng_misdirect: prng.fork(FORK_MISDIRECT),
            prng_crash: prng.fork(FORK_CRASH),
            prng_read_fault: prng.fork(FORK_READ_FAULT),
            prng_corruption: prng.fork(FORK_CORRUPTION),
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn replica(&self) -> usize {
        self.replica
    }

    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// Writes submitted and not yet durable.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The tick at which the earliest pending write completes.
    pub fn pending_due_min(&self) -> Option<u64> {
        self.pending.iter().map(|p| p.done_tick).min()
    }

    /// The stored bytes of a zone, without read faults: for checkers that
    /// compare replicas' durable state.
    pub fn stored(&self, zone: Zone) -> &[u8] {
        &self.zones[zone_index(zone)]
    }

    /// `false` (liveness phase) stops read, write, misdirect and crash
    /// faults. Latency stays, and a crash still keeps or drops each unsynced
    /// sector: losing unsynced writes is what a crash is, not a fault.
    pub fn set_faults(&mut self, enabled: bool) {
        self.faults_enabled = enabled;
    }

    /// Formatting: no latency, no faults, durable at once.
    pub fn write_direct(&mut self, zone: Zone, offset: u64, data: &[u8]) {
        assert!(offset % SECTOR_SIZE_U64 == 0);
        assert!(data.len() % SECTOR_SIZE == 0);
        assert!(!data.is_empty());
        assert!(offset + data.len() as u64 <= self.layout.zone_size(zone));
        self.store(zone, offset, data);
    }

    pub fn submit(&mut self, now: u64, write: Write) {
        write.assert_aligned(&self.layout);
        assert!(now >= self.tick_last, "time went back");
        assert!(self.pending.len() < WRITES_PENDING_MAX, "writes pending without bound");
        assert!(self.pending.iter().all(|p| p.write.id != write.id), "write id already pending");
        let options = &self.options;
        let latency_ticks = options.write_latency_min
            + self.prng_latency.exponential(options.write_latency_mean - options.write_latency_min);
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        self.pending.push(PendingWrite { done_tick: now + latency_ticks, sequence, write });
        self.stats.writes_submitted += 1;
    }

    /// Applies every write due at or before `now`, in completion order, and
    /// returns their ids: these writes are now durable.
    pub fn tick(&mut self, now: u64) -> Vec<WriteId> {
        assert!(now >= self.tick_last, "time went back");
        self.tick_last = now;
        let mut done = Vec::new();
        let mut index = 0;
        while index < self.pending.len() {
            if self.pending[index].done_tick <= now {
                done.push(self.pending.swap_remove(index));
            } else {
                index += 1;
            }
        }
        done.sort_by_key(|pending| (pending.done_tick, pending.sequence));
        let mut ids = Vec::with_capacity(done.len());
        for pending in done {
            self.complete(&pending.write);
            ids.push(pending.write.id);
        }
        self.stats.writes_completed += ids.len() as u64;
        ids
    }

    /// The process dies: every pending write is resolved sector by sector
    /// (kept, dropped or garbled) and nothing stays pending.
    pub fn crash(&mut self) {
        let mut writes = std::mem::take(&mut self.pending);
        writes.sort_by_key(|pending| (pending.done_tick, pending.sequence));
        for pending in &writes {
            let write = &pending.write;
            // Headers and superblock copies are written as whole 4 KiB
            // sectors, which we assume the device writes atomically (NVMe
            // atomic write unit ≥ 4 KiB): such a sector is kept or dropped,
            // never torn. A prepare or checkpoint spans many sectors, so a
            // crash can tear one.
            let tearable_zone = matches!(write.zone, Zone::WalPrepares | Zone::Checkpoint);
            for (sector_index, new) in write.data.chunks(SECTOR_SIZE).enumerate() {
                let offset = write.offset + (sector_index * SECTOR_SIZE) as u64;
                // Draw before checking the atlas, so the stream does not
                // depend on which sectors happen to be permitted.
                let garble = self.prng_crash.chance(self.options.crash_fault);
                let tearable = self.faults_enabled
                    && tearable_zone
                    && self.atlas.may_corrupt(self.replica, write.zone, offset);
                if garble && tearable {
                    self.garble_sector(write.zone, offset, new);
                    self.stats.crash_sectors_garbled += 1;
                } else if self.prng_crash.boolean() {
                    self.store(write.zone, offset, new);
                    self.stats.crash_sectors_kept += 1;
                } else {
                    self.stats.crash_sectors_dropped += 1;
                }
            }
        }
        self.stats.crashes += 1;
        assert!(self.pending.is_empty());
    }

    /// Flips bits of one stored sector, whatever the atlas says: for
    /// scripted scenarios.
    pub fn corrupt_sector(&mut self, zone: Zone, offset: u64) {
        assert!(offset % SECTOR_SIZE_U64 == 0);
        assert!(offset < self.layout.zone_size(zone));
        let start = offset as usize;
        let sector = &mut self.zones[zone_index(zone)][start..start + SECTOR_SIZE];
        flip_bits(&mut self.prng_corruption, sector);
        self.stats.sectors_corrupted_scripted += 1;
    }

    fn complete(&mut self, write: &Write) {
        let offset = self.misdirect_offset(write).unwrap_or(write.offset);
        self.store(write.zone, offset, &write.data);
        if !self.faults_enabled {
            return;
        }
        for sector_offset in (offset..offset + write.data.len() as u64).step_by(SECTOR_SIZE) {
            let rot = self.prng_write_fault.chance(self.options.write_fault);
            if rot && self.atlas.may_corrupt(self.replica, write.zone, sector_offset) {
                let start = sector_offset as usize;
                let sector = &mut self.zones[zone_index(write.zone)][start..start + SECTOR_SIZE];
                flip_bits(&mut self.prng_corruption, sector);
                self.stats.sectors_corrupted_write += 1;
            }
        }
    }

    /// Where a WalPrepares write lands instead of its own offset, if it is
    /// misdirected: the same offset within another slot. Allowed only if the
    /// atlas lets this replica lose both slots, since the intended slot keeps
    /// stale bytes and the other is overwritten.
    fn misdirect_offset(&mut self, write: &Write) -> Option<u64> {
        if write.zone != Zone::WalPrepares || !self.faults_enabled {
            return None;
        }
        if !self.prng_misdirect.chance(self.options.misdirect) {
            return None;
        }
        let slot_count = self.layout.wal_slot_count;
        if slot_count < 2 {
            return None;
        }
        let slot_size = self.layout.message_size_max;
        let slot_source = write.offset / slot_size;
        // Uniform over the other slots.
        let mut slot_target = self.prng_misdirect.range_inclusive(0, slot_count - 2);
        if slot_target >= slot_source {
            slot_target += 1;
        }
        let offset_target = slot_target * slot_size + write.offset % slot_size;
        let size = write.data.len() as u64;
        if offset_target + size > self.layout.zone_size(Zone::WalPrepares) {
            return None;
        }
        let atlas = &self.atlas;
        if !atlas.may_corrupt_range(self.replica, write.zone, write.offset, size)
            || !atlas.may_corrupt_range(self.replica, write.zone, offset_target, size)
        {
            return None;
        }
        assert!(offset_target != write.offset);
        self.stats.writes_misdirected += 1;
        Some(offset_target)
    }

    /// A torn sector: either unreadable garbage, or a prefix of the new data
    /// over the old (the device wrote some 512-byte units, not all).
    fn garble_sector(&mut self, zone: Zone, offset: u64, new: &[u8]) {
        assert_eq!(new.len(), SECTOR_SIZE);
        let start = offset as usize;
        let sector = &mut self.zones[zone_index(zone)][start..start + SECTOR_SIZE];
        if self.prng_corruption.boolean() {
            self.prng_corruption.bytes(sector);
        } else {
            let units = (SECTOR_SIZE / TORN_UNIT_SIZE) as u64;
            let prefix_size =
                TORN_UNIT_SIZE * self.prng_corruption.range_inclusive(1, units - 1) as usize;
            sector[..prefix_size].copy_from_slice(&new[..prefix_size]);
        }
    }

    fn store(&mut self, zone: Zone, offset: u64, data: &[u8]) {
        let start = offset as usize;
        let stored = &mut self.zones[zone_index(zone)];
        assert!(start + data.len() <= stored.len());
        stored[start..start + data.len()].copy_from_slice(data);
    }
}

impl ReadStorage for Disk {
    /// Returns the stored (durable) bytes; pending writes are not visible.
    fn read(&mut self, zone: Zone, offset: u64, buffer: &mut [u8]) {
        assert!(offset % SECTOR_SIZE_U64 == 0);
        assert!(buffer.len() % SECTOR_SIZE == 0);
        assert!(offset + buffer.len() as u64 <= self.layout.zone_size(zone));
        let start = offset as usize;
        buffer.copy_from_slice(&self.zones[zone_index(zone)][start..start + buffer.len()]);
        if !self.faults_enabled {
            return;
        }
        for (sector_index, sector) in buffer.chunks_mut(SECTOR_SIZE).enumerate() {
            let sector_offset = offset + (sector_index * SECTOR_SIZE) as u64;
            let fault = self.prng_read_fault.chance(self.options.read_fault);
            if fault && self.atlas.may_corrupt(self.replica, zone, sector_offset) {
                flip_bits(&mut self.prng_corruption, sector);
                self.stats.sectors_corrupted_read += 1;
            }
        }
    }
}

/// Flips 1 to `BIT_FLIPS_MAX` distinct bits, so the sector always changes.
fn flip_bits(prng: &mut Prng, sector: &mut [u8]) {
    assert_eq!(sector.len(), SECTOR_SIZE);
    let flips = prng.range_inclusive(1, BIT_FLIPS_MAX) as usize;
    let mut bits = [usize::MAX; BIT_FLIPS_MAX as usize];
    let mut chosen = 0;
    while chosen < flips {
        let bit = prng.index(SECTOR_SIZE * 8);
        if !bits[..chosen].contains(&bit) {
            bits[chosen] = bit;
            chosen += 1;
        }
    }
    for &bit in &bits[..flips] {
        sector[bit / 8] ^= 1 << (bit % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        // 32 slots: 2 header sectors, 8 KiB prepares, two 16 KiB checkpoints.
        Layout::new(32, 8192, 16384)
    }

    fn write(prng: &mut Prng, id: u64, zone: Zone, offset: u64, sectors: usize) -> Write {
        let mut data = vec![0u8; sectors * SECTOR_SIZE];
        prng.bytes(&mut data);
        Write { id: WriteId(id), zone, offset, data: data.into() }
    }

    /// One random, aligned write per zone per call, all non-overlapping
    /// within a batch (each zone gets one).
    fn writes_batch(prng: &mut Prng, id_first: u64) -> Vec<Write> {
        let slot_size = layout().message_size_max;
        let superblock_offset = prng.range_inclusive(0, 3) * SECTOR_SIZE_U64;
        let header_offset = prng.range_inclusive(0, 1) * SECTOR_SIZE_U64;
        let prepare_offset = prng.range_inclusive(0, 31) * slot_size;
        let checkpoint_offset = prng.range_inclusive(0, 7) * SECTOR_SIZE_U64;
        vec![
            write(prng, id_first, Zone::Superblock, superblock_offset, 1),
            write(prng, id_first + 1, Zone::WalHeaders, header_offset, 1),
            write(prng, id_first + 2, Zone::WalPrepares, prepare_offset, 2),
            write(prng, id_first + 3, Zone::Checkpoint, checkpoint_offset, 1),
        ]
    }

    fn disk(options: DiskOptions, seed: u64, replica_count: usize) -> Disk {
        let mut prng = Prng::new(seed);
        let atlas = Rc::new(FaultAtlas::new(&mut prng, replica_count, layout()));
        Disk::new(layout(), options, prng.fork(1), atlas, 0)
    }

    fn read_all(disk: &mut Disk, zone: Zone) -> Vec<u8> {
        let mut buffer = vec![0u8; disk.layout().zone_size(zone) as usize];
        disk.read(zone, 0, &mut buffer);
        buffer
    }

    #[test]
    fn quiet_disk_is_exact() {
        let mut prng = Prng::new(10);
        let mut disk = disk(DiskOptions::quiet(), 11, 3);
        let mut model = Zone::ALL.map(|zone| vec![0u8; layout().zone_size(zone) as usize]);
        let mut submitted: Vec<Write> = Vec::new();
        let mut completion_order = Vec::new();
        for now in 0..400u64 {
            for id in disk.tick(now) {
                let write = submitted.iter().find(|w| w.id == id).expect("completes a known write");
                let start = write.offset as usize;
                model[zone_index(write.zone)][start..start + write.data.len()]
                    .copy_from_slice(&write.data);
                completion_order.push(id.0);
            }
            if now < 300 && disk.pending() == 0 {
                for write in writes_batch(&mut prng, now * 4) {
                    submitted.push(write.clone());
                    disk.submit(now, write);
                }
            }
        }
        assert_eq!(disk.pending(), 0);
        assert_eq!(completion_order.len(), submitted.len());
        assert!(completion_order.windows(2).any(|w| w[0] > w[1]), "writes complete out of order");
        for zone in Zone::ALL {
            assert!(read_all(&mut disk, zone) == model[zone_index(zone)], "{zone:?} differs");
            assert!(disk.stored(zone) == model[zone_index(zone)].as_slice());
        }
        let stats = disk.stats();
        assert_eq!(stats.writes_completed, stats.writes_submitted);
        assert_eq!(stats.sectors_corrupted_write + stats.sectors_corrupted_read, 0);
    }

    #[test]
    fn pending_writes_are_not_durable_until_done() {
        let mut prng = Prng::new(12);
        let mut options = DiskOptions::quiet();
        options.write_latency_min = 10;
        options.write_latency_mean = 10;
        let mut disk = disk(options, 13, 1);
        let batch = writes_batch(&mut prng, 0);
        for write in batch {
            disk.submit(0, write);
        }
        assert!(disk.tick(9).is_empty());
        assert!(disk.stored(Zone::WalPrepares).iter().all(|&b| b == 0));
        assert_eq!(disk.tick(10).len(), 4);
        assert_eq!(disk.pending(), 0);
    }

    #[test]
    fn crash_never_garbles_headers_or_superblock() {
        for seed in 0..50 {
            let mut prng = Prng::new(seed);
            let mut options = DiskOptions::quiet();
            options.crash_fault = Ratio::one();
            // Everything is still in flight at the crash.
            options.write_latency_min = 100;
            options.write_latency_mean = 100;
            let mut disk = disk(options, seed, 3);
            let before: Vec<Vec<u8>> = Zone::ALL.iter().map(|&z| disk.stored(z).to_vec()).collect();
            let batch = writes_batch(&mut prng, 0);
            for write in batch.clone() {
                disk.submit(0, write);
            }
            disk.crash();
            assert_eq!(disk.pending(), 0);
            assert!(disk.tick(1000).is_empty(), "a crashed write never completes");
            for write in &batch {
                let old = &before[zone_index(write.zone)];
                for (index, new) in write.data.chunks(SECTOR_SIZE).enumerate() {
                    let offset = write.offset + (index * SECTOR_SIZE) as u64;
                    let start = offset as usize;
                    let stored = &disk.stored(write.zone)[start..start + SECTOR_SIZE];
                    let intact = stored == new || stored == &old[start..start + SECTOR_SIZE];
                    let tearable = matches!(write.zone, Zone::WalPrepares | Zone::Checkpoint)
                        && disk.atlas.may_corrupt(0, write.zone, offset);
                    assert!(
                        intact || tearable,
                        "{:?} sector garbled outside the atlas",
                        write.zone
                    );
                    // crash_fault = 1: every tearable sector is garbled.
                    assert_eq!(!intact, tearable, "{:?}", write.zone);
                }
            }
            let stats = disk.stats();
            let sectors = batch.iter().map(|w| w.data.len() / SECTOR_SIZE).sum::<usize>() as u64;
            let resolved = stats.crash_sectors_kept
                + stats.crash_sectors_dropped
                + stats.crash_sectors_garbled;
            assert_eq!(resolved, sectors);
        }
    }

    #[test]
    fn crash_without_faults_keeps_or_drops() {
        let mut kept = 0;
        let mut dropped = 0;
        for seed in 0..20 {
            let mut prng = Prng::new(seed);
            let mut options = DiskOptions::random(&mut prng);
            options.write_latency_min = 100;
            options.write_latency_mean = 100;
            let mut disk = disk(options, seed, 5);
            disk.set_faults(false);
            let batch = writes_batch(&mut prng, 0);
            for write in batch.clone() {
                disk.submit(0, write);
            }
            disk.crash();
            for write in &batch {
                let start = write.offset as usize;
                for (index, new) in write.data.chunks(SECTOR_SIZE).enumerate() {
                    let at = start + index * SECTOR_SIZE;
                    let stored = &disk.stored(write.zone)[at..at + SECTOR_SIZE];
                    assert!(stored == new || stored.iter().all(|&b| b == 0));
                }
            }
            assert_eq!(disk.stats().crash_sectors_garbled, 0);
            kept += disk.stats().crash_sectors_kept;
            dropped += disk.stats().crash_sectors_dropped;
        }
        assert!(kept > 0 && dropped > 0, "a crash both keeps and drops");
    }

    /// Counts, from `may_corrupt` alone, that the atlas promises hold.
    fn check_atlas(atlas: &FaultAtlas, replica_count: usize) -> (usize, usize) {
        let layout = atlas.layout();
        let f = (replica_count - 1) / 2;
        let (mut headers, mut prepares) = (0, 0);
        for slot in 0..layout.wal_slot_count {
            let mut faulty = 0;
            for replica in 0..replica_count {
                let header_offset = slot * HEADER_SIZE as u64;
                let header = atlas.may_corrupt(replica, Zone::WalHeaders, header_offset);
                let prepare_offset = slot * layout.message_size_max;
                let prepare = (0..layout.message_size_max).step_by(SECTOR_SIZE).any(|within| {
                    atlas.may_corrupt(replica, Zone::WalPrepares, prepare_offset + within)
                });
                assert!(!(header && prepare));
                faulty += usize::from(header || prepare);
                headers += usize::from(header);
                prepares += usize::from(prepare);
            }
            assert!(faulty <= f);
        }
        let mut checkpoints = 0;
        for replica in 0..replica_count {
            let copies = (0..SUPERBLOCK_COPIES as u64)
                .filter(|&copy| atlas.may_corrupt(replica, Zone::Superblock, copy * 4096))
                .count();
            assert!(copies <= 1);
            let checkpoint_size = layout.zone_size(Zone::Checkpoint);
            let faulty = (0..checkpoint_size)
                .step_by(SECTOR_SIZE)
                .any(|offset| atlas.may_corrupt(replica, Zone::Checkpoint, offset));
            checkpoints += usize::from(faulty);
            if f == 0 {
                assert_eq!(copies, 0);
            }
        }
        assert!(checkpoints <= f);
        (headers, prepares)
    }

    #[test]
    fn atlas_invariants_hold() {
        for replica_count in [1, 2, 3, 4, 5] {
            let (mut headers, mut prepares) = (0, 0);
            for seed in 0..200 {
                let mut prng = Prng::new(seed);
                let atlas = FaultAtlas::new(&mut prng, replica_count, layout());
                let (h, p) = check_atlas(&atlas, replica_count);
                headers += h;
                prepares += p;
            }
            if replica_count <= 2 {
                assert_eq!(headers + prepares, 0, "f = 0: nothing corruptible");
            } else {
                // An atlas that permits nothing would pass the bounds above.
                assert!(headers > 0 && prepares > 0, "R = {replica_count} gets faults");
            }
        }
    }

    #[test]
    fn write_and_read_faults_stay_inside_the_atlas() {
        for replica_count in [1, 3] {
            let mut prng = Prng::new(20);
            let mut options = DiskOptions::quiet();
            options.write_fault = Ratio::one();
            options.read_fault = Ratio::one();
            let mut disk = disk(options, 21, replica_count);
            let mut model = Zone::ALL.map(|zone| vec![0u8; layout().zone_size(zone) as usize]);
            for (index, zone) in Zone::ALL.into_iter().enumerate() {
                let size = layout().zone_size(zone) as usize;
                let mut bytes = vec![0u8; size];
                prng.bytes(&mut bytes);
                model[zone_index(zone)].copy_from_slice(&bytes);
                disk.submit(
                    0,
                    Write { id: WriteId(index as u64), zone, offset: 0, data: bytes.into() },
                );
            }
            while disk.pending() > 0 {
                let now = disk.tick_last + 1;
                disk.tick(now);
            }
            for zone in Zone::ALL {
                let stored = disk.stored(zone).to_vec();
                let read = read_all(&mut disk, zone);
                assert!(disk.stored(zone) == stored.as_slice(), "a read never changes storage");
                for (index, sector) in stored.chunks(SECTOR_SIZE).enumerate() {
                    let offset = (index * SECTOR_SIZE) as u64;
                    let permitted = disk.atlas.may_corrupt(0, zone, offset);
                    let expected = &model[zone_index(zone)][index * SECTOR_SIZE..][..SECTOR_SIZE];
                    // Probability 1: exactly the permitted sectors rot, and
                    // every read of them flips more bits.
                    assert_eq!(sector != expected, permitted, "{zone:?} write fault");
                    let read_sector = &read[index * SECTOR_SIZE..][..SECTOR_SIZE];
                    assert_eq!(read_sector != sector, permitted, "{zone:?} read fault");
                }
            }
            let stats = disk.stats();
            assert_eq!(stats.sectors_corrupted_write > 0, replica_count == 3);
            assert_eq!(stats.sectors_corrupted_read, stats.sectors_corrupted_write);
        }
    }

    #[test]
    fn misdirected_prepares_land_in_another_permitted_slot() {
        let mut options = DiskOptions::quiet();
        options.misdirect = Ratio::one();
        let mut prng = Prng::new(30);
        let mut disk = disk(options, 31, 3);
        let slot_size = layout().message_size_max;
        for slot in 0..layout().wal_slot_count {
            let data = write(&mut prng, slot, Zone::WalPrepares, slot * slot_size, 2);
            disk.submit(0, data);
        }
        while disk.pending() > 0 {
            let now = disk.tick_last + 1;
            disk.tick(now);
        }
        let misdirected = disk.stats().writes_misdirected;
        let permitted = (0..layout().wal_slot_count)
            .filter(|&slot| disk.atlas.may_corrupt(0, Zone::WalPrepares, slot * slot_size))
            .count() as u64;
        // A write is misdirected only from and to permitted slots, so with
        // one permitted slot there is nowhere else to go.
        assert!(misdirected <= permitted);
        if permitted >= 2 {
            assert!(misdirected > 0);
        }
        for slot in 0..layout().wal_slot_count {
            let start = (slot * slot_size) as usize;
            let prefix_zero = disk.stored(Zone::WalPrepares)[start..start + 2 * SECTOR_SIZE]
                .iter()
                .all(|&b| b == 0);
            let allowed = disk.atlas.may_corrupt(0, Zone::WalPrepares, slot * slot_size);
            assert!(!prefix_zero || allowed, "slot {slot} lost its write outside the atlas");
        }
    }

    #[test]
    fn corrupt_sector_ignores_the_atlas() {
        let mut disk = disk(DiskOptions::quiet(), 40, 1);
        disk.corrupt_sector(Zone::Superblock, 4096);
        assert!(disk.stored(Zone::Superblock)[4096..8192].iter().any(|&b| b != 0));
        assert!(disk.stored(Zone::Superblock)[..4096].iter().all(|&b| b == 0));
        assert_eq!(disk.stats().sectors_corrupted_scripted, 1);
    }

    #[test]
    fn write_direct_is_durable_at_once() {
        let mut disk = disk(DiskOptions::quiet(), 41, 1);
        let data = vec![7u8; 2 * SECTOR_SIZE];
        disk.write_direct(Zone::WalHeaders, 0, &data);
        assert_eq!(disk.pending(), 0);
        assert_eq!(&read_all(&mut disk, Zone::WalHeaders)[..], &data[..]);
    }

    /// One faulty run; returns everything observable.
    fn faulty_run(seed: u64) -> (Vec<Vec<u8>>, Vec<WriteId>, DiskStats) {
        let mut prng = Prng::new(seed);
        let mut options = DiskOptions::random(&mut prng);
        options.write_fault = Ratio::percent(20);
        options.misdirect = Ratio::percent(20);
        options.read_fault = Ratio::percent(20);
        options.crash_fault = Ratio::percent(50);
        let mut disk = disk(options, seed, 5);
        let mut completed = Vec::new();
        for now in 0..2000u64 {
            completed.extend(disk.tick(now));
            if now % 10 == 0 {
                let batch = writes_batch(&mut prng, now * 4);
                let prepare = batch[2].clone();
                if !disk.pending.iter().any(|p| p.write.offset == prepare.offset) {
                    disk.submit(now, Write { id: WriteId(now * 4 + 2), ..prepare });
                }
            }
            if now % 500 == 499 {
                disk.crash();
            }
        }
        let reads = Zone::ALL.iter().map(|&zone| read_all(&mut disk, zone)).collect();
        (reads, completed, disk.stats())
    }

    #[test]
    fn same_seed_same_run() {
        let a = faulty_run(50);
        let b = faulty_run(50);
        let c = faulty_run(51);
        assert!(a.2.writes_completed > 0);
        assert!(a.2.crashes == 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
