//! [`ChunkStore`]: appends, deletes, group commit, reads, completions.
//! Segment lifecycle is in `segment.rs`, read verification in `read.rs`,
//! compaction and the scrubber in `maintenance.rs`.
//!
//! A record's life: `append` gives it a place (the active segment's cursor)
//! and a sequence, and encodes it into the open batch (memory lent by the
//! driver, see `buffer.rs`). `flush` (size, count, delay or explicit) moves
//! the open batch in flight: each contiguous run is written in pieces of
//! `write_bytes_max`, all issued at once when every segment the batch
//! touches has a durable Open header (several writes in flight, as fio's
//! 1 MiB writes at a queue depth, not one long write per batch); after all
//! its writes, one sync per segment. Batches are
//! acknowledged in order, and only then does the index see their records.
//! The index thus always holds a prefix of the appends, all durable.
//!
//! One active segment takes every append, so a user append's sequence (its
//! own position) grows with append order. Compaction's room is protected by
//! a reservation instead of a segment of its own: while a job runs, user
//! appends leave its remaining live bytes free in the active segment, and
//! users never take the last free segment, so relocations always fit.

use std::collections::{BTreeMap, VecDeque};

/// crc32c of no bytes: a tombstone's.
const CRC32C_EMPTY: u32 = 0;

use super::buffer::{BufferSource, HeapBuffers, WriteBuffer};
use super::format::{
    encode_record, position, record_size, RecordExpect, RecordHeader, RecordSink,
    SEGMENT_DATA_OFFSET,
};
use super::index::{index_bytes_per_chunk, Index};
use super::maintenance::{Compaction, Scrub};
use super::read::verify_record;
use super::segment::{Class, Segment, SegmentInfo, SegmentStatus};
use super::{
    AppendError, ChunkId, Config, DeleteError, Event, IoError, IoId, Location, ReadError,
    ReadSubmitError, ReadTicket, Request, Ticket, EVENTS_MAX, SECTOR_SIZE_U64,
};

#[derive(Clone, Copy, Debug)]
enum RecordKind {
    Put {
        ticket: Ticket,
    },
    Tombstone {
        ticket: Ticket,
    },
    /// `tombstone`: a tombstone that must outlive older puts is relocated too.
    Relocation {
        from: Location,
        tombstone: bool,
        sequence: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct RecordMeta {
    chunk_id: ChunkId,
    location: Location,
    kind: RecordKind,
}

impl RecordMeta {
    fn tombstone(&self) -> bool {
        match self.kind {
            RecordKind::Tombstone { .. } => true,
            RecordKind::Relocation { tombstone, .. } => tombstone,
            RecordKind::Put { .. } => false,
        }
    }
}

/// Contiguous record bytes for one segment, in pieces of
/// `write_bytes_max` (every piece but the last full): one write each.
#[derive(Debug)]
struct Run {
    segment: u32,
    offset: u64,
    pieces: Vec<WriteBuffer>,
    length: u64,
}

/// Encodes into a run, taking a new piece from the source when the last
/// one is full.
struct RunSink<'a> {
    run: &'a mut Run,
    source: &'a mut dyn BufferSource,
    piece_bytes: usize,
}

impl RunSink<'_> {
    /// The piece to write into next, with room left.
    fn piece(&mut self) -> &mut WriteBuffer {
        if self.run.pieces.last().is_none_or(|piece| piece.room() == 0) {
            let memory = self.source.take(self.piece_bytes);
            assert_eq!(memory.bytes().len(), self.piece_bytes, "lent memory of another size");
            self.run.pieces.push(WriteBuffer::new(memory));
        }
        let Some(piece) = self.run.pieces.last_mut() else { unreachable!("a piece was ensured") };
        piece
    }
}

impl RecordSink for RunSink<'_> {
    fn put(&mut self, mut bytes: &[u8]) {
        self.run.length += bytes.len() as u64;
        while !bytes.is_empty() {
            let piece = self.piece();
            let (now, rest) = bytes.split_at(piece.room().min(bytes.len()));
            piece.extend_from_slice(now);
            bytes = rest;
        }
    }

    fn put_zeros(&mut self, mut count: usize) {
        self.run.length += count as u64;
        while count > 0 {
            let piece = self.piece();
            let now = piece.room().min(count);
            piece.extend_zeros(now);
            count -= now;
        }
    }
}

#[derive(Debug, Default)]
struct OpenBatch {
    records: Vec<RecordMeta>,
    runs: Vec<Run>,
    bytes: u64,
    opened_tick: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    /// A segment it writes to has no durable Open header yet.
    Waiting,
    Writing {
        outstanding: u32,
    },
    Syncing {
        outstanding: u32,
    },
    Durable,
}

#[derive(Debug)]
struct Batch {
    id: u64,
    records: Vec<RecordMeta>,
    runs: Vec<Run>,
    segments: Vec<u32>,
    state: BatchState,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Io {
    BatchWrite { batch: u64 },
    BatchSync { batch: u64 },
    Header { segment: u32 },
    UserRead { ticket: ReadTicket, chunk_id: ChunkId, location: Location },
    ScrubRead { chunk_id: ChunkId, location: Location },
    CompactionRead { offset: u64 },
}

/// The latest unacknowledged record of a chunk: what `append`, `delete`
/// and compaction must see as its state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingChunk {
    records: u32,
    last_put: Option<(u32, u32)>,
}

/// Counters for metrics and for tests that must see work happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub appends: u64,
    pub deletes: u64,
    pub records_acknowledged: u64,
    pub batches_flushed: u64,
    pub writes: u64,
    pub syncs: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub read_errors: u64,
    pub scrub_reads: u64,
    pub scrub_corrupt: u64,
    pub scrub_passes: u64,
    pub compactions_started: u64,
    pub compactions_completed: u64,
    pub compactions_aborted: u64,
    pub relocations: u64,
    pub tombstones_dropped: u64,
    pub segments_opened: u64,
    pub segments_freed: u64,
}

/// The chunk store of one shard. Built by [`super::Recovery`].
pub struct ChunkStore {
    pub(crate) config: Config,
    pub(crate) expect: RecordExpect,
    pub(crate) tick: u64,
    pub(crate) segments: Vec<Segment>,
    pub(crate) generation_next: u64,
    /// The segment appends go to, and its cursor.
    pub(crate) active: Option<(u32, u64)>,
    /// Bytes the running compaction job may still relocate: user appends
    /// leave that much room in the active segment.
    pub(crate) relocation_reserved: u64,
    pub(crate) index: Index,
    pub(crate) pending: BTreeMap<ChunkId, PendingChunk>,
    batch_open: OpenBatch,
    batches: VecDeque<Batch>,
    batch_id_next: u64,
    flush_requested: bool,
    records_pending: u32,
    bytes_pending: u64,
    /// A user append or delete was refused for space since the last
    /// compaction: compaction may then take segments it otherwise leaves.
    pub(crate) space_wanted: bool,
    pub(crate) appended_total: u64,
    pub(crate) acknowledged_total: u64,
    io_next: u64,
    io: BTreeMap<IoId, Io>,
    reads_user: u32,
    requests: VecDeque<Request>,
    events: VecDeque<Event>,
    ticket_next: u64,
    read_ticket_next: u64,
    pub(crate) scrub: Scrub,
    pub(crate) compaction: Option<Compaction>,
    pub(crate) stats: Stats,
    /// Where batches are encoded (the driver's memory, or the heap).
    buffers: Box<dyn BufferSource>,
}

impl ChunkStore {
    pub(crate) fn recovered(
        config: Config,
        segments: Vec<Segment>,
        index: Index,
        generation_next: u64,
    ) -> ChunkStore {
        assert!(config.validate().is_ok());
        assert_eq!(segments.len(), config.segment_count as usize);
        let mut store = ChunkStore {
            config,
            expect: RecordExpect {
                cluster: config.cluster,
                group: config.group,
                data_length_max: config.chunk_size_max_bytes,
            },
            tick: 0,
            segments,
            generation_next,
            active: None,
            relocation_reserved: 0,
            index,
            pending: BTreeMap::new(),
            batch_open: OpenBatch::default(),
            batches: VecDeque::new(),
            batch_id_next: 0,
            flush_requested: false,
            records_pending: 0,
            bytes_pending: 0,
            space_wanted: false,
            appended_total: 0,
            acknowledged_total: 0,
            io_next: 0,
            io: BTreeMap::new(),
            reads_user: 0,
            requests: VecDeque::new(),
            events: VecDeque::new(),
            ticket_next: 0,
            read_ticket_next: 0,
            scrub: Scrub::default(),
            compaction: None,
            stats: Stats::default(),
            buffers: Box::new(HeapBuffers),
        };
        let entries: Vec<(Location, bool)> =
            store.index.iter().map(|(_, entry)| (entry.location(), entry.deleted())).collect();
        for (location, _) in entries {
            let segment = &mut store.segments[location.segment as usize];
            assert!(matches!(segment.status, SegmentStatus::Sealed));
            segment.live_bytes += location.record_size();
            segment.live_records += 1;
        }
        store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Encode batches into memory from `source` from now on (a driver's
    /// pool; the default is the heap). Asked for `write_bytes_max` at a time.
    pub fn set_buffer_source(&mut self, source: Box<dyn BufferSource>) {
        self.buffers = source;
    }

    /// Queue `data` as chunk `chunk_id`; [`Event::Durable`] follows once it
    /// is on stable storage.
    pub fn append(&mut self, chunk_id: ChunkId, data: &[u8]) -> Result<Ticket, AppendError> {
        self.append_with_crc32c(chunk_id, data, crc32c::crc32c(data))
    }

    /// [`append`](Self::append) of `data` whose crc32c `crc` the caller
    /// already has (verified, or computed over the same bytes by the
    /// sender of a checksummed message): the store makes no pass of its
    /// own over the data to compute it. Builds with debug assertions (the
    /// tests and the simulator) check it and refuse a wrong one as
    /// [`AppendError::ContentMismatch`].
    pub fn append_with_crc32c(
        &mut self,
        chunk_id: ChunkId,
        data: &[u8],
        crc: u32,
    ) -> Result<Ticket, AppendError> {
        let max = self.config.chunk_size_max_bytes;
        if data.len() > max as usize {
            return Err(AppendError::TooLarge { length: data.len(), max });
        }
        if cfg!(debug_assertions) && crc32c::crc32c(data) != crc {
            return Err(AppendError::ContentMismatch);
        }
        if let Some((length, crc_current)) = self.current_put(chunk_id) {
            if (length, crc_current) != (data.len() as u32, crc) {
                return Err(AppendError::ContentMismatch);
            }
        }
        let ticket = self.ticket_take();
        let kind = RecordKind::Put { ticket };
        self.append_record(chunk_id, (data, crc), kind, Class::Put)?;
        self.stats.appends += 1;
        Ok(ticket)
    }

    /// Delete a live chunk by appending a tombstone.
    pub fn delete(&mut self, chunk_id: ChunkId) -> Result<Ticket, DeleteError> {
        if self.current_put(chunk_id).is_none() {
            return Err(DeleteError::NotFound);
        }
        let ticket = self.ticket_take();
        let kind = RecordKind::Tombstone { ticket };
        self.append_record(chunk_id, (&[], CRC32C_EMPTY), kind, Class::Tombstone).map_err(
            |error| match error {
                AppendError::NoSpace => DeleteError::NoSpace,
                _ => DeleteError::Busy,
            },
        )?;
        self.stats.deletes += 1;
        Ok(ticket)
    }

    /// Flush the open batch now (or as soon as a batch slot frees).
    pub fn flush(&mut self) {
        self.flush_requested = true;
        self.flush_open();
    }

    /// Advance time by one tick: flush a batch that waited long enough, and
    /// do a bounded amount of scrubbing and compaction.
    pub fn tick(&mut self) {
        self.tick += 1;
        let waited = self.tick.saturating_sub(self.batch_open.opened_tick);
        if !self.batch_open.records.is_empty() && waited >= self.config.batch_delay_ticks {
            self.flush_requested = true;
        }
        self.flush_open();
        self.scrub_tick();
        self.compaction_tick();
    }

    /// Read a chunk's record at `location` (from [`ChunkStore::locate`] or an
    /// earlier event) and verify it; [`Event::Read`] follows.
    pub fn read(
        &mut self,
        chunk_id: ChunkId,
        location: Location,
    ) -> Result<ReadTicket, ReadSubmitError> {
        if !self.location_valid(location) {
            return Err(ReadSubmitError::InvalidLocation);
        }
        if self.reads_user >= self.config.reads_in_flight_max {
            return Err(ReadSubmitError::Busy);
        }
        let ticket = ReadTicket(self.read_ticket_next);
        self.read_ticket_next += 1;
        self.reads_user += 1;
        self.stats.reads += 1;
        self.read_issue(location, Io::UserRead { ticket, chunk_id, location });
        Ok(ticket)
    }

    /// Where the durable, live chunk is.
    pub fn locate(&self, chunk_id: ChunkId) -> Option<Location> {
        let entry = self.index.get(chunk_id)?;
        (!entry.deleted()).then(|| entry.location())
    }

    /// Where the durable tombstone of a deleted chunk is, while it is kept.
    pub fn tombstone(&self, chunk_id: ChunkId) -> Option<Location> {
        let entry = self.index.get(chunk_id)?;
        entry.deleted().then(|| entry.location())
    }

    /// Every durable, live chunk, in id order.
    pub fn chunks(&self) -> impl Iterator<Item = (ChunkId, Location)> + '_ {
        self.index
            .iter()
            .filter(|(_, entry)| !entry.deleted())
            .map(|(chunk_id, entry)| (chunk_id, entry.location()))
    }

    /// Chunks the index holds (live and deleted-with-tombstone).
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    /// Live chunks (readable, not deleted).
    pub fn chunks_live(&self) -> usize {
        self.index.live()
    }

    /// Estimated index memory per chunk (see `index.rs`).
    pub fn index_bytes_per_chunk() -> usize {
        index_bytes_per_chunk()
    }

    pub fn segment_info(&self, segment: u32) -> SegmentInfo {
        let state = &self.segments[segment as usize];
        SegmentInfo {
            status: state.status,
            generation: state.generation,
            live_bytes: state.live_bytes,
            live_records: state.live_records,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records appended and not yet acknowledged.
    /// Batches flushed and not yet durable.
    pub fn batches_in_flight(&self) -> usize {
        self.batches.len()
    }

    /// Records appended but not yet in a flushed batch.
    pub fn batch_open_records(&self) -> usize {
        self.batch_open.records.len()
    }

    pub fn records_pending(&self) -> u32 {
        self.records_pending
    }

    /// Requests issued and not completed.
    pub fn io_in_flight(&self) -> usize {
        self.io.len()
    }

    pub fn take_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn on_write_done(&mut self, id: IoId) {
        match self.io.remove(&id) {
            Some(Io::BatchWrite { batch }) => {
                let batch = self.batch_mut(batch);
                let BatchState::Writing { outstanding } = batch.state else {
                    panic!("write done for a batch not writing");
                };
                assert!(outstanding > 0);
                if outstanding > 1 {
                    batch.state = BatchState::Writing { outstanding: outstanding - 1 };
                    return;
                }
                let segments = batch.segments.clone();
                batch.state = BatchState::Syncing { outstanding: segments.len() as u32 };
                let batch_id = batch.id;
                for segment in segments {
                    self.io_issue(Io::BatchSync { batch: batch_id }, |id| Request::Sync {
                        id,
                        segment,
                    });
                    self.stats.syncs += 1;
                }
            }
            Some(Io::Header { segment }) => self.header_step(segment, false),
            other => panic!("write done for {other:?}"),
        }
    }

    pub fn on_sync_done(&mut self, id: IoId) {
        match self.io.remove(&id) {
            Some(Io::BatchSync { batch }) => {
                let batch = self.batch_mut(batch);
                let BatchState::Syncing { outstanding } = batch.state else {
                    panic!("sync done for a batch not syncing");
                };
                assert!(outstanding > 0);
                batch.state = if outstanding > 1 {
                    BatchState::Syncing { outstanding: outstanding - 1 }
                } else {
                    BatchState::Durable
                };
                self.acknowledge();
            }
            Some(Io::Header { segment }) => self.header_step(segment, true),
            other => panic!("sync done for {other:?}"),
        }
    }

    pub fn on_read_done(&mut self, id: IoId, result: Result<Vec<u8>, IoError>) {
        let Some(io) = self.io.remove(&id) else {
            panic!("read done for an unknown request {id:?}");
        };
        if result.is_err() {
            self.stats.read_errors += 1;
        }
        match io {
            Io::UserRead { ticket, chunk_id, location } => {
                assert!(self.reads_user > 0);
                self.reads_user -= 1;
                let result = result
                    .map_err(ReadError::Io)
                    .and_then(|bytes| verify_record(bytes, chunk_id, location, &self.expect));
                self.event(Event::Read { ticket, chunk_id, result });
            }
            Io::ScrubRead { chunk_id, location } => self.on_scrub_read(chunk_id, location, result),
            Io::CompactionRead { offset } => self.on_compaction_read(offset, result),
            other => panic!("read done for {other:?}"),
        }
    }

    fn ticket_take(&mut self) -> Ticket {
        let ticket = Ticket(self.ticket_next);
        self.ticket_next += 1;
        ticket
    }

    /// (length, crc) of the chunk's newest record if that is a put.
    fn current_put(&self, chunk_id: ChunkId) -> Option<(u32, u32)> {
        if let Some(pending) = self.pending.get(&chunk_id) {
            return pending.last_put;
        }
        let entry = self.index.get(chunk_id)?;
        (!entry.deleted()).then(|| (entry.location().length, entry.location().crc32c))
    }

    fn location_valid(&self, location: Location) -> bool {
        location.segment < self.config.segment_count
            && location.offset.is_multiple_of(SECTOR_SIZE_U64)
            && location.offset >= SEGMENT_DATA_OFFSET
            && location.length <= self.config.chunk_size_max_bytes
            && location.offset.saturating_add(location.record_size())
                <= self.config.segment_size_bytes
    }

    /// Queue one record. All checks come before any state changes.
    /// Re-append a current record compaction read (`data` verified), with
    /// its sequence: a copy, not a new version.
    pub(crate) fn append_relocation(
        &mut self,
        chunk_id: ChunkId,
        data: &[u8],
        from: Location,
        tombstone: bool,
        sequence: u64,
    ) -> Result<(), AppendError> {
        assert!(!tombstone || data.is_empty());
        let kind = RecordKind::Relocation { from, tombstone, sequence };
        // Compaction verified `data` against `from.crc32c` (a tombstone's
        // is that of no bytes).
        self.append_record(chunk_id, (data, from.crc32c), kind, Class::Relocation)
    }

    /// `data` comes with its crc32c, computed once by the caller.
    fn append_record(
        &mut self,
        chunk_id: ChunkId,
        (data, data_crc32c): (&[u8], u32),
        kind: RecordKind,
        class: Class,
    ) -> Result<(), AppendError> {
        let size = record_size(data.len() as u32);
        if self.records_pending >= self.config.records_pending_max
            || self.bytes_pending + size > self.config.bytes_pending_max
        {
            return Err(AppendError::Busy);
        }
        if !self.batch_open_fits(size) {
            self.flush_requested = true;
            self.flush_open();
            if !self.batch_open_fits(size) {
                return Err(AppendError::Busy);
            }
        }
        let (segment, offset) = self.allocate(size, class).inspect_err(|_| {
            self.space_wanted |= class != Class::Relocation;
        })?;
        let generation = self.segments[segment as usize].generation;
        let tombstone = match kind {
            RecordKind::Put { .. } => false,
            RecordKind::Tombstone { .. } => true,
            RecordKind::Relocation { tombstone, .. } => tombstone,
        };
        let at = position(generation, offset);
        let sequence = match kind {
            RecordKind::Relocation { sequence, .. } => sequence,
            _ => at,
        };
        let expect = &self.expect;
        let header = RecordHeader::with_crc32c(
            expect,
            chunk_id,
            segment,
            sequence,
            at,
            data,
            data_crc32c,
            tombstone,
        );
        let location = Location {
            segment,
            offset,
            length: data.len() as u32,
            crc32c: header.data_crc32c.get(),
        };
        self.batch_add(segment, offset, &header, data);
        self.batch_open.records.push(RecordMeta { chunk_id, location, kind });
        let pending =
            self.pending.entry(chunk_id).or_insert(PendingChunk { records: 0, last_put: None });
        pending.records += 1;
        pending.last_put = (!tombstone).then_some((location.length, location.crc32c));
        self.segments[segment as usize].records_unacked += 1;
        self.records_pending += 1;
        self.bytes_pending += size;
        self.appended_total += 1;
        let batch = &self.batch_open;
        if batch.bytes >= self.config.batch_bytes_max
            || batch.records.len() as u32 >= self.config.batch_records_max
        {
            self.flush_requested = true;
            self.flush_open();
        }
        Ok(())
    }

    fn batch_open_fits(&self, size: u64) -> bool {
        let batch = &self.batch_open;
        batch.records.is_empty()
            || (batch.bytes + size <= self.config.batch_bytes_max
                && (batch.records.len() as u32) < self.config.batch_records_max)
    }

    fn batch_add(&mut self, segment: u32, offset: u64, header: &RecordHeader, data: &[u8]) {
        let batch = &mut self.batch_open;
        if batch.records.is_empty() {
            batch.opened_tick = self.tick;
        }
        let contiguous = batch
            .runs
            .last()
            .is_some_and(|run| run.segment == segment && run.offset + run.length == offset);
        if !contiguous {
            batch.runs.push(Run { segment, offset, pieces: Vec::new(), length: 0 });
        }
        let Some(run) = batch.runs.last_mut() else { unreachable!("a run was just ensured") };
        let before = run.length;
        let piece_bytes = self.config.write_bytes_max as usize;
        let mut sink = RunSink { run, source: self.buffers.as_mut(), piece_bytes };
        encode_record(&mut sink, header, data);
        batch.bytes += run.length - before;
        assert!(run.offset + run.length <= self.config.segment_size_bytes);
        assert_eq!(run.pieces.len() as u64, run.length.div_ceil(piece_bytes as u64));
    }

    /// Move the open batch in flight if it is due and a slot is free.
    fn flush_open(&mut self) {
        if self.batch_open.records.is_empty() {
            self.flush_requested = false;
            return;
        }
        if !self.flush_requested || self.batches.len() as u32 >= self.config.batches_in_flight_max {
            return;
        }
        self.flush_requested = false;
        let open = std::mem::take(&mut self.batch_open);
        let mut segments: Vec<u32> = open.runs.iter().map(|run| run.segment).collect();
        segments.dedup();
        let batch = Batch {
            id: self.batch_id_next,
            records: open.records,
            runs: open.runs,
            segments,
            state: BatchState::Waiting,
        };
        self.batch_id_next += 1;
        self.batches.push_back(batch);
        self.stats.batches_flushed += 1;
        self.batches_issue();
    }

    /// Issue the writes of waiting batches, in order, whose segments all
    /// have a durable Open header.
    pub(crate) fn batches_issue(&mut self) {
        for index in 0..self.batches.len() {
            let batch = &self.batches[index];
            if batch.state != BatchState::Waiting {
                continue;
            }
            let ready = batch.segments.iter().all(|&segment| {
                let segment = &self.segments[segment as usize];
                segment.header_durable && segment.header_update.is_none()
            });
            if !ready {
                return;
            }
            let batch = &mut self.batches[index];
            let runs = std::mem::take(&mut batch.runs);
            let pieces: usize = runs.iter().map(|run| run.pieces.len()).sum();
            batch.state = BatchState::Writing { outstanding: pieces as u32 };
            let batch_id = batch.id;
            for run in runs {
                assert!(run.offset >= SEGMENT_DATA_OFFSET);
                assert!(run.offset.is_multiple_of(SECTOR_SIZE_U64));
                assert!(run.length.is_multiple_of(SECTOR_SIZE_U64));
                self.run_issue(batch_id, run);
            }
        }
    }

    /// One write per piece; every piece but the last is full.
    fn run_issue(&mut self, batch: u64, run: Run) {
        let piece_bytes = self.config.write_bytes_max;
        let count = run.pieces.len();
        let mut offset = run.offset;
        for (index, data) in run.pieces.into_iter().enumerate() {
            let length = data.len() as u64;
            assert!(length > 0 && length.is_multiple_of(SECTOR_SIZE_U64));
            assert!(length == piece_bytes || index + 1 == count);
            let segment = run.segment;
            self.stats.writes += 1;
            self.stats.bytes_written += length;
            self.io_issue(Io::BatchWrite { batch }, |id| Request::Write {
                id,
                segment,
                offset,
                data,
            });
            offset += length;
        }
        assert_eq!(offset, run.offset + run.length);
    }

    fn batch_mut(&mut self, id: u64) -> &mut Batch {
        let Some(front) = self.batches.front() else { panic!("no batch in flight") };
        let index = id.checked_sub(front.id).expect("batch already acknowledged") as usize;
        &mut self.batches[index]
    }

    /// Acknowledge durable batches from the front, in append order.
    fn acknowledge(&mut self) {
        while self.batches.front().is_some_and(|batch| batch.state == BatchState::Durable) {
            let Some(batch) = self.batches.pop_front() else { unreachable!() };
            for record in batch.records {
                self.apply(record);
            }
        }
        self.flush_open();
        self.compaction_barrier_check();
    }

    fn apply(&mut self, record: RecordMeta) {
        let RecordMeta { chunk_id, location, kind } = record;
        let size = location.record_size();
        let segment = &mut self.segments[location.segment as usize];
        assert!(segment.records_unacked > 0);
        segment.records_unacked -= 1;
        segment.live_bytes += size;
        segment.live_records += 1;
        assert!(self.records_pending > 0 && self.bytes_pending >= size);
        self.records_pending -= 1;
        self.bytes_pending -= size;
        self.acknowledged_total += 1;
        self.stats.records_acknowledged += 1;
        let pending = self.pending.get_mut(&chunk_id).expect("pending record without its chunk");
        pending.records -= 1;
        if pending.records == 0 {
            self.pending.remove(&chunk_id);
        }
        if let RecordKind::Relocation { from, .. } = kind {
            let entry = self.index.get(chunk_id).expect("relocated chunk not indexed");
            assert_eq!(entry.location(), from, "relocated a record that was not current");
        }
        let tombstone = record.tombstone();
        if let Some(replaced) = self.index.apply(chunk_id, location, tombstone) {
            let old = &mut self.segments[replaced.location.segment as usize];
            let old_size = replaced.location.record_size();
            assert!(old.live_records > 0 && old.live_bytes >= old_size);
            old.live_records -= 1;
            old.live_bytes -= old_size;
        }
        let event = match kind {
            RecordKind::Put { ticket } | RecordKind::Tombstone { ticket } => {
                Event::Durable { ticket, chunk_id, location }
            }
            RecordKind::Relocation { from, .. } => {
                Event::Relocated { chunk_id, from, to: location }
            }
        };
        self.event(event);
    }

    pub(crate) fn read_issue(&mut self, location: Location, io: Io) {
        let length = location.record_size();
        self.io_issue(io, |id| Request::Read {
            id,
            segment: location.segment,
            offset: location.offset,
            length,
        });
    }

    pub(crate) fn io_issue(&mut self, io: Io, request: impl FnOnce(IoId) -> Request) {
        let id = IoId(self.io_next);
        self.io_next += 1;
        let previous = self.io.insert(id, io);
        assert!(previous.is_none());
        self.requests.push_back(request(id));
    }

    pub(crate) fn event(&mut self, event: Event) {
        assert!(self.events.len() < EVENTS_MAX, "events are not being drained");
        self.events.push_back(event);
    }
}
