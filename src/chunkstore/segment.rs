//! Segment lifecycle: status, the two-copy header updates that open and
//! free a segment, and where appends go.
//!
//! Free → (Open header durable) → Active → Sealed → Compacting → Freeing →
//! (Free header durable) → Free. Recovery starts every segment that was open
//! as Sealed. A header update writes copy 0, syncs it, then copy 1, and
//! syncs that: a crash tears at most one copy, so recovery always finds the
//! old or the new version intact. Records of a fill are written only once
//! its Open header is durable; a segment's records stop counting only once
//! its Free header is durable.

use super::format::{
    SegmentExpect, SegmentHeader, SegmentState as HeaderState, GENERATION_MAX, SEGMENT_DATA_OFFSET,
    SEGMENT_HEADER_COPIES,
};
use super::store::{ChunkStore, Io};
use super::{
    AppendError, Request, SECTOR_SIZE_U64, SEGMENTS_RESERVED_PUT, SEGMENTS_RESERVED_TOMBSTONE,
};

/// What a segment is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentStatus {
    Free,
    /// Receiving appends (at most one segment).
    Active,
    /// Full, or open at the last restart: never appended to again.
    Sealed,
    Compacting,
    /// Its Free header is being written.
    Freeing,
    /// Neither header copy is valid: never used, its records ignored.
    Quarantined,
}

/// A segment as metrics and tests see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub status: SegmentStatus,
    pub generation: u64,
    pub live_bytes: u64,
    pub live_records: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub status: SegmentStatus,
    pub generation: u64,
    /// The header of the current status is durable (false while opening or
    /// freeing).
    pub header_durable: bool,
    pub header_update: Option<HeaderUpdate>,
    /// Bytes and count of current records (live puts, current tombstones).
    pub live_bytes: u64,
    pub live_records: u32,
    /// Records appended here and not yet acknowledged.
    pub records_unacked: u32,
    /// Compaction leaves the segment alone until this tick.
    pub compaction_after_tick: u64,
}

impl Segment {
    pub(crate) fn new(status: SegmentStatus, generation: u64) -> Segment {
        Segment {
            status,
            generation,
            header_durable: true,
            header_update: None,
            live_bytes: 0,
            live_records: 0,
            records_unacked: 0,
            compaction_after_tick: 0,
        }
    }
}

/// Copy 0 is written and synced before copy 1, so a crash tears one copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderUpdate {
    state: HeaderState,
    generation: u64,
    copy: u8,
    synced: bool,
}

/// Which rule of space reservation an append follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Put,
    Tombstone,
    Relocation,
}

impl Class {
    /// Free segments this class may not take.
    pub(crate) fn segments_reserved(self) -> u32 {
        match self {
            Class::Put => SEGMENTS_RESERVED_PUT,
            Class::Tombstone => SEGMENTS_RESERVED_TOMBSTONE,
            Class::Relocation => 0,
        }
    }
}

impl ChunkStore {
    /// A place for `size` bytes: the active segment's cursor, or the start
    /// of a newly opened segment if the class may take a free one.
    pub(crate) fn allocate(&mut self, size: u64, class: Class) -> Result<(u32, u64), AppendError> {
        assert!(size <= self.config.segment_capacity());
        let reserved = if class == Class::Relocation {
            self.relocation_reserved = self.relocation_reserved.saturating_sub(size);
            0
        } else {
            self.relocation_reserved
        };
        if let Some((segment, cursor)) = self.active {
            if cursor + size + reserved <= self.config.segment_size_bytes {
                self.active = Some((segment, cursor + size));
                return Ok((segment, cursor));
            }
        }
        let free = self.segments_free();
        if free <= class.segments_reserved() || self.generation_next > GENERATION_MAX {
            return Err(AppendError::NoSpace);
        }
        let Some(segment) = self
            .segments
            .iter()
            .position(|segment| segment.status == SegmentStatus::Free && segment.header_durable)
        else {
            unreachable!("segments_free counted a free segment");
        };
        if let Some((previous, _)) = self.active.take() {
            self.segments[previous as usize].status = SegmentStatus::Sealed;
        }
        let segment = segment as u32;
        let generation = self.generation_take();
        let state = &mut self.segments[segment as usize];
        assert_eq!(state.live_records, 0);
        assert_eq!(state.records_unacked, 0);
        state.status = SegmentStatus::Active;
        state.generation = generation;
        self.header_update(segment, HeaderState::Open, generation);
        self.stats.segments_opened += 1;
        self.active = Some((segment, SEGMENT_DATA_OFFSET + size));
        Ok((segment, SEGMENT_DATA_OFFSET))
    }

    /// Bytes the active segment can still take.
    pub(crate) fn active_room(&self) -> u64 {
        self.active.map_or(0, |(_, cursor)| self.config.segment_size_bytes - cursor)
    }

    pub(crate) fn segments_free(&self) -> u32 {
        self.segments
            .iter()
            .filter(|segment| segment.status == SegmentStatus::Free && segment.header_durable)
            .count() as u32
    }

    pub(crate) fn generation_peek(&self) -> u64 {
        self.generation_next
    }

    pub(crate) fn generation_take(&mut self) -> u64 {
        let generation = self.generation_next;
        assert!(generation <= GENERATION_MAX);
        self.generation_next += 1;
        generation
    }

    /// Start rewriting a segment's two header copies.
    pub(crate) fn header_update(&mut self, segment: u32, state: HeaderState, generation: u64) {
        let entry = &mut self.segments[segment as usize];
        assert!(entry.header_update.is_none(), "one header update per segment at a time");
        entry.header_durable = false;
        entry.header_update = Some(HeaderUpdate { state, generation, copy: 0, synced: false });
        self.header_write(segment);
    }

    fn header_write(&mut self, segment: u32) {
        let Some(update) = self.segments[segment as usize].header_update else {
            unreachable!("header write without an update");
        };
        let expect = SegmentExpect {
            cluster: self.config.cluster,
            group: self.config.group,
            segment,
            segment_size: self.config.segment_size_bytes,
        };
        let data =
            SegmentHeader::new(&expect, update.state, update.generation, update.copy).sector();
        let offset = u64::from(update.copy) * SECTOR_SIZE_U64;
        self.stats.writes += 1;
        let data = data.into();
        self.io_issue(Io::Header { segment }, |id| Request::Write { id, segment, offset, data });
    }

    pub(crate) fn header_step(&mut self, segment: u32, synced: bool) {
        let entry = &mut self.segments[segment as usize];
        let Some(mut update) = entry.header_update else {
            panic!("header completion without an update");
        };
        assert_eq!(update.synced, synced, "header write and sync alternate");
        if !synced {
            update.synced = true;
            entry.header_update = Some(update);
            self.stats.syncs += 1;
            self.io_issue(Io::Header { segment }, |id| Request::Sync { id, segment });
            return;
        }
        if (update.copy as usize) + 1 < SEGMENT_HEADER_COPIES {
            entry.header_update =
                Some(HeaderUpdate { copy: update.copy + 1, synced: false, ..update });
            self.header_write(segment);
            return;
        }
        entry.header_update = None;
        entry.header_durable = true;
        match update.state {
            HeaderState::Open => self.batches_issue(),
            HeaderState::Free => self.compaction_freed(segment, update.generation),
        }
    }
}
