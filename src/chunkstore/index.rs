//! The in-memory index: chunk id → its current durable record.
//!
//! One entry per chunk that is live, or deleted while its tombstone is still
//! on disk. Besides the location, an entry counts `stale_puts`: put records
//! of the chunk still on disk in a segment that was not freed, other than the
//! current one (older copies left by relocation or repair, puts a tombstone
//! deleted, puts recovery skipped as torn). A tombstone may be dropped only
//! when that count is zero, or a crash could bring a deleted chunk back.
//!
//! A `BTreeMap`, not a `HashMap`: iteration order (the scrubber's walk) must
//! not depend on a random hasher.

use std::collections::BTreeMap;

use super::format::SEGMENT_DATA_OFFSET;
use super::{ChunkId, Location, SECTOR_SIZE_U64};

/// 24 bytes: the location packed (offset as a sector index) plus the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    segment: u32,
    sector: u32,
    length: u32,
    crc32c: u32,
    stale_puts: u32,
    deleted: bool,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 24);

impl Entry {
    fn new(location: Location, deleted: bool, stale_puts: u32) -> Entry {
        assert!(location.offset.is_multiple_of(SECTOR_SIZE_U64));
        assert!(location.offset >= SEGMENT_DATA_OFFSET);
        let sector = location.offset / SECTOR_SIZE_U64;
        assert!(sector <= u64::from(u32::MAX));
        assert!(!deleted || location.length == 0);
        Entry {
            segment: location.segment,
            sector: sector as u32,
            length: location.length,
            crc32c: location.crc32c,
            stale_puts,
            deleted,
        }
    }

    pub fn location(&self) -> Location {
        Location {
            segment: self.segment,
            offset: u64::from(self.sector) * SECTOR_SIZE_U64,
            length: self.length,
            crc32c: self.crc32c,
        }
    }

    pub fn deleted(&self) -> bool {
        self.deleted
    }

    pub fn stale_puts(&self) -> u32 {
        self.stale_puts
    }

    /// The live put at exactly `location`.
    pub fn live_at(&self, location: Location) -> bool {
        !self.deleted && self.location() == location
    }

    /// The current tombstone at exactly `location`.
    pub fn tombstone_at(&self, location: Location) -> bool {
        self.deleted && self.location() == location
    }
}

/// Estimated heap bytes per indexed chunk: key and entry, times 1.5 for a
/// B-tree's partly filled nodes (node headers and edges are small next to
/// 11 slots of 40 bytes). An estimate for capacity planning, not a bound.
pub const fn index_bytes_per_chunk() -> usize {
    (std::mem::size_of::<ChunkId>() + std::mem::size_of::<Entry>()) * 3 / 2
}

/// The record an applied record replaced as current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replaced {
    pub location: Location,
    pub tombstone: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<ChunkId, Entry>,
    /// Entries not deleted (kept in step by every change, for metrics).
    live: usize,
}

impl Index {
    pub fn get(&self, chunk_id: ChunkId) -> Option<&Entry> {
        self.entries.get(&chunk_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Chunks held live (not deleted).
    pub fn live(&self) -> usize {
        self.live
    }

    fn count(&mut self, before: Option<&Entry>, after: Option<&Entry>) {
        let live = |entry: Option<&Entry>| usize::from(entry.is_some_and(|e| !e.deleted));
        self.live = self.live + live(after) - live(before);
    }

    /// Make a durable record current. Records are applied in sequence order,
    /// so the newest one always wins.
    pub fn apply(
        &mut self,
        chunk_id: ChunkId,
        location: Location,
        tombstone: bool,
    ) -> Option<Replaced> {
        let previous = self.entries.get(&chunk_id).copied();
        let stale_puts = match previous {
            // The old put stays on disk until its segment is freed.
            Some(entry) if !entry.deleted => entry.stale_puts + 1,
            Some(entry) => entry.stale_puts,
            None => {
                // Deletes are accepted only for live chunks.
                assert!(!tombstone, "tombstone for a chunk the index does not hold");
                0
            }
        };
        let entry = Entry::new(location, tombstone, stale_puts);
        self.entries.insert(chunk_id, entry);
        self.count(previous.as_ref(), Some(&entry));
        previous.map(|entry| Replaced { location: entry.location(), tombstone: entry.deleted })
    }

    /// A put of `chunk_id` that was not current left the disk (its segment
    /// was freed). Saturating: a put a transient read error hid from
    /// recovery was never counted; that can only keep a tombstone too long.
    pub fn put_gone(&mut self, chunk_id: ChunkId) {
        if let Some(entry) = self.entries.get_mut(&chunk_id) {
            entry.stale_puts = entry.stale_puts.saturating_sub(1);
        }
    }

    /// Forget a chunk whose tombstone at `location` left the disk. Returns
    /// whether it was still current there.
    pub fn tombstone_gone(&mut self, chunk_id: ChunkId, location: Location) -> bool {
        match self.entries.get(&chunk_id) {
            Some(entry) if entry.tombstone_at(location) => {
                assert_eq!(entry.stale_puts, 0, "a needed tombstone was dropped");
                self.entries.remove(&chunk_id);
                // A tombstone was not live: the live count stays.
                true
            }
            _ => false,
        }
    }

    /// Install an entry rebuilt by recovery.
    pub fn insert_recovered(
        &mut self,
        chunk_id: ChunkId,
        location: Location,
        tombstone: bool,
        stale_puts: u32,
    ) {
        let entry = Entry::new(location, tombstone, stale_puts);
        let previous = self.entries.insert(chunk_id, entry);
        assert!(previous.is_none());
        self.count(None, Some(&entry));
    }

    /// The first live chunk with an id at or above `from`.
    pub fn live_from(&self, from: ChunkId) -> Option<(ChunkId, Location)> {
        self.entries
            .range(from..)
            .find(|(_, entry)| !entry.deleted)
            .map(|(&chunk_id, entry)| (chunk_id, entry.location()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ChunkId, &Entry)> + '_ {
        self.entries.iter().map(|(&chunk_id, entry)| (chunk_id, entry))
    }
}
