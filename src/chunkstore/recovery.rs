//! Rebuilding the index at startup from the segments' bytes.
//!
//! A pull state machine: the driver asks [`Recovery::next_read`] what to
//! read, reads it, and hands the bytes to [`Recovery::on_read`], until there
//! is nothing left; [`Recovery::finish`] then yields the store and a report.
//! One read in flight keeps it simple; the whole disk is read once.
//!
//! Per segment: the two header copies, the valid one with the highest
//! generation wins (a crash tears at most one, since they are written one
//! after the other). Both zeroed: never used, free. Copy 1 zeroed and copy 0
//! invalid: a first open torn by a crash, free (records follow only after
//! copy 1 is durable). Otherwise no valid copy: quarantined, never used, its
//! records ignored (its chunks are repaired from peers).
//!
//! An Open segment is parsed from its first record to its end with the
//! shared parser (`scan.rs`): every valid record of this fill counts; a
//! record whose data fails its crc32c is skipped (torn by a crash, or
//! rotten) and never indexed; invalid sectors between valid records are
//! holes. Per chunk, the record with the highest sequence wins, and of
//! copies with one sequence (relocation) the newest position. Every
//! segment that was open is sealed: a fill is never continued.
//!
//! The next generation is one above every header seen. If a segment was
//! quarantined its generation is unknown, so a margin of one generation per
//! segment (the most header updates a crash can interrupt) is added: a
//! quarantined header that reads fine again later can then never share a
//! generation with a newer fill.

use std::collections::BTreeMap;

use super::format::{
    record_size, HeaderError, RecordExpect, SegmentExpect, SegmentHeader, SegmentState,
    SEGMENT_DATA_OFFSET,
};
use super::index::Index;
use super::scan::{scan_piece, ScanContext, ScanError, ScanItem};
use super::segment::{Segment, SegmentStatus};
use super::store::ChunkStore;
use super::{ChunkId, Config, IoError, Location, SECTOR_SIZE_U64};

/// Attempts per read before its bytes are given up as unreadable.
pub const RECOVERY_READ_ATTEMPTS_MAX: u32 = 3;

/// Entries kept in each list of the report (counts are always exact).
pub const REPORT_LIST_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryRead {
    pub segment: u32,
    pub offset: u64,
    pub length: u64,
}

/// A record with a valid header whose data failed its checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    pub segment: u32,
    pub offset: u64,
    pub chunk_id: ChunkId,
    pub expected: u32,
    pub actual: u32,
}

/// Invalid sectors followed by a valid record of the same fill: a lost,
/// torn, misdirected-over or rotten record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    pub segment: u32,
    pub offset: u64,
    pub length: u64,
    /// Why the first sector of the hole was rejected.
    pub error: ScanError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub status: SegmentStatus,
    pub generation: u64,
    /// Valid records of this fill.
    pub records: u32,
    /// End of the last valid record: where the fill stopped.
    pub fill_end: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// One per segment, by index.
    pub segments: Vec<SegmentSummary>,
    pub segments_quarantined: Vec<u32>,
    pub chunks_live: u64,
    /// Chunks whose current record is a tombstone.
    pub chunks_deleted: u64,
    pub records_valid: u64,
    pub records_skipped: Vec<SkippedRecord>,
    pub records_skipped_count: u64,
    pub holes: Vec<Hole>,
    pub holes_count: u64,
    pub bytes_scanned: u64,
    pub read_errors: u64,
    pub generation_next: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Headers,
    Records { generation: u64, offset: u64 },
    Done,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// (sequence, position): the newest version, then its newest copy.
    order: (u64, u64),
    location: Location,
    tombstone: bool,
}

/// What the scan found of one chunk.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    best: Option<Candidate>,
    /// Put records with a valid header, skipped ones included: all of them
    /// but the current one are stale puts a tombstone must outlive.
    puts: u32,
}

pub struct Recovery {
    config: Config,
    expect: RecordExpect,
    segment: u32,
    phase: Phase,
    attempts: u32,
    segments: Vec<Segment>,
    found: BTreeMap<ChunkId, Found>,
    report: RecoveryReport,
    generation_max: u64,
    /// Invalid sectors since the last valid record of the current segment.
    invalid_run: Option<(u64, ScanError)>,
    records: u32,
    fill_end: u64,
}

impl Recovery {
    pub fn new(config: Config) -> Result<Recovery, &'static str> {
        config.validate()?;
        Ok(Recovery {
            config,
            expect: RecordExpect {
                cluster: config.cluster,
                group: config.group,
                data_length_max: config.chunk_size_max_bytes,
            },
            segment: 0,
            phase: Phase::Headers,
            attempts: 0,
            segments: Vec::with_capacity(config.segment_count as usize),
            found: BTreeMap::new(),
            report: RecoveryReport::default(),
            generation_max: 0,
            invalid_run: None,
            records: 0,
            fill_end: SEGMENT_DATA_OFFSET,
        })
    }

    /// The next read to make, or `None` when `finish` may be called.
    pub fn next_read(&self) -> Option<RecoveryRead> {
        let segment = self.segment;
        match self.phase {
            Phase::Headers => {
                Some(RecoveryRead { segment, offset: 0, length: SEGMENT_DATA_OFFSET })
            }
            Phase::Records { offset, .. } => {
                let length = self.config.recovery_read_bytes.min(self.segment_size() - offset);
                Some(RecoveryRead { segment, offset, length })
            }
            Phase::Done => None,
        }
    }

    /// The bytes of `read` (which must be the current `next_read`).
    pub fn on_read(&mut self, read: RecoveryRead, result: Result<&[u8], IoError>) {
        assert_eq!(Some(read), self.next_read(), "recovery read out of order");
        let bytes = match result {
            Ok(bytes) if bytes.len() as u64 == read.length => Some(bytes),
            _ => {
                self.report.read_errors += 1;
                self.attempts += 1;
                if self.attempts < RECOVERY_READ_ATTEMPTS_MAX {
                    return;
                }
                None
            }
        };
        self.attempts = 0;
        self.report.bytes_scanned += read.length;
        match self.phase {
            Phase::Headers => self.on_headers(bytes),
            Phase::Records { generation, offset } => self.on_records(generation, offset, bytes),
            Phase::Done => unreachable!("next_read returned a read"),
        }
    }

    pub fn finish(mut self) -> (ChunkStore, RecoveryReport) {
        assert_eq!(self.phase, Phase::Done, "recovery not done");
        let mut index = Index::default();
        for (&chunk_id, found) in &self.found {
            let Some(best) = found.best else { continue };
            let stale_puts = if best.tombstone { found.puts } else { found.puts - 1 };
            index.insert_recovered(chunk_id, best.location, best.tombstone, stale_puts);
            if best.tombstone {
                self.report.chunks_deleted += 1;
            } else {
                self.report.chunks_live += 1;
            }
        }
        let margin = if self.report.segments_quarantined.is_empty() {
            0
        } else {
            u64::from(self.config.segment_count)
        };
        let generation_next = self.generation_max + 1 + margin;
        self.report.generation_next = generation_next;
        let store = ChunkStore::recovered(self.config, self.segments, index, generation_next);
        (store, self.report)
    }

    fn segment_size(&self) -> u64 {
        self.config.segment_size_bytes
    }

    fn on_headers(&mut self, bytes: Option<&[u8]>) {
        let expect = SegmentExpect {
            cluster: self.config.cluster,
            group: self.config.group,
            segment: self.segment,
            segment_size: self.segment_size(),
        };
        let sector = SECTOR_SIZE_U64 as usize;
        let copies: [Result<SegmentHeader, HeaderError>; 2] = match bytes {
            Some(bytes) => [
                SegmentHeader::decode(&bytes[..sector], &expect, 0),
                SegmentHeader::decode(&bytes[sector..2 * sector], &expect, 1),
            ],
            None => [Err(HeaderError::TooShort { length: 0 }); 2],
        };
        let best = copies
            .iter()
            .filter_map(|copy| copy.as_ref().ok())
            .max_by_key(|header| header.generation.get());
        let Some(header) = best else {
            if copies[1] == Err(HeaderError::Zeroed) {
                return self.segment_done(SegmentStatus::Free, 0);
            }
            self.report.segments_quarantined.push(self.segment);
            return self.segment_done(SegmentStatus::Quarantined, 0);
        };
        let generation = header.generation.get();
        self.generation_max = self.generation_max.max(generation);
        match header.state() {
            Some(SegmentState::Free) => self.segment_done(SegmentStatus::Free, generation),
            Some(SegmentState::Open) => {
                self.phase = Phase::Records { generation, offset: SEGMENT_DATA_OFFSET };
                self.invalid_run = None;
                self.records = 0;
                self.fill_end = SEGMENT_DATA_OFFSET;
            }
            None => unreachable!("decode validated the state"),
        }
    }

    fn on_records(&mut self, generation: u64, offset: u64, bytes: Option<&[u8]>) {
        let length = self.config.recovery_read_bytes.min(self.segment_size() - offset);
        let next = match bytes {
            Some(bytes) => {
                let context = ScanContext {
                    expect: self.expect,
                    segment: self.segment,
                    generation,
                    segment_size: self.segment_size(),
                };
                let next = scan_piece(bytes, offset, &context, |item| {
                    self.on_item(item);
                    true
                });
                assert!(next > offset, "a piece holds at least one record or sector");
                next
            }
            None => {
                // Given up after retries: the whole piece counts as invalid.
                self.invalid_run.get_or_insert((offset, ScanError::Unreadable));
                offset + length
            }
        };
        if next >= self.segment_size() {
            // Invalid sectors after the last valid record are the unused
            // (or torn) tail of the fill, not a hole.
            self.segment_done(SegmentStatus::Sealed, generation);
        } else {
            self.phase = Phase::Records { generation, offset: next };
        }
    }

    fn on_item(&mut self, item: ScanItem) {
        let (offset, header, data) = match item {
            ScanItem::Invalid { offset, error } => {
                self.invalid_run.get_or_insert((offset, error));
                return;
            }
            ScanItem::Record { offset, header, data } => (offset, header, data),
        };
        if let Some((start, error)) = self.invalid_run.take() {
            let hole = Hole { segment: self.segment, offset: start, length: offset - start, error };
            self.report.holes_count += 1;
            if self.report.holes.len() < REPORT_LIST_MAX {
                self.report.holes.push(hole);
            }
        }
        let chunk_id = header.chunk_id.get();
        let length = header.data_length.get();
        let expected = header.data_crc32c.get();
        self.records += 1;
        self.fill_end = offset + record_size(length);
        let tombstone = header.tombstone();
        let found = self.found.entry(chunk_id).or_default();
        if !tombstone {
            found.puts += 1;
            let actual = crc32c::crc32c(data);
            if actual != expected {
                let skipped =
                    SkippedRecord { segment: self.segment, offset, chunk_id, expected, actual };
                self.report.records_skipped_count += 1;
                if self.report.records_skipped.len() < REPORT_LIST_MAX {
                    self.report.records_skipped.push(skipped);
                }
                return;
            }
        }
        self.report.records_valid += 1;
        let location = Location { segment: self.segment, offset, length, crc32c: expected };
        let order = (header.sequence.get(), header.position.get());
        let candidate = Candidate { order, location, tombstone };
        if found.best.is_none_or(|best| best.order < candidate.order) {
            found.best = Some(candidate);
        }
    }

    fn segment_done(&mut self, status: SegmentStatus, generation: u64) {
        assert_eq!(self.segments.len(), self.segment as usize);
        let (records, fill_end) = match status {
            SegmentStatus::Sealed => (self.records, self.fill_end),
            _ => (0, SEGMENT_DATA_OFFSET),
        };
        self.report.segments.push(SegmentSummary { status, generation, records, fill_end });
        self.segments.push(Segment::new(status, generation));
        self.invalid_run = None;
        self.segment += 1;
        self.phase =
            if self.segment == self.config.segment_count { Phase::Done } else { Phase::Headers };
    }
}
