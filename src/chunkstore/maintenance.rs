//! Background work driven by `tick()`, bounded per tick: the scrubber and
//! compaction.
//!
//! **Scrubber.** Walks the live chunks in id order, wrapping around, and
//! reads each record within a byte budget (`scrub_bytes_per_tick`, banked up
//! to one largest record so big chunks are reached too). A record that does
//! not verify while the index still points at it becomes
//! [`Event::Corrupt`]: the shard fetches the chunk from a peer and appends
//! it again (same id, same bytes), which makes the bad copy stale.
//!
//! **Compaction.** When few segments are free, the sealed segment with the
//! fewest live bytes (below `compaction_live_percent_max`, or, once a user
//! was refused space, any that gains a sector) is read piece by
//! piece (one read in flight) and parsed with the recovery parser. Each
//! current put is verified and re-appended, keeping its sequence (a copy,
//! not a new version), within the room reserved for the job when it started
//! (its live bytes); each current tombstone is
//! re-appended if older puts of its chunk may remain on disk, else dropped.
//! Then, once every record appended so far is durable (the barrier), and if
//! no live record is left in the segment (one the scan could not see, e.g.
//! behind a read error, aborts the job), its headers are rewritten Free with
//! a new generation. Only when that is durable does the index forget the
//! segment's stale puts and dropped tombstones, and the segment become free.
//! A live record that fails its checksum aborts the job (reported Corrupt):
//! compaction never drops bytes it cannot prove are stored elsewhere.

use super::format::{record_size, SegmentState as HeaderState, GENERATION_MAX};
use super::read::verify_record;
use super::scan::{scan_piece, ScanContext, ScanItem};
use super::segment::SegmentStatus;
use super::store::{ChunkStore, Io};
use super::{ChunkId, Event, IoError, Location, ReadError, Request, SECTOR_SIZE_U64};

/// Scrub reads in flight at once: enough to overlap two reads, few enough
/// not to compete with user reads.
const SCRUB_READS_IN_FLIGHT_MAX: u32 = 2;

#[derive(Debug, Default)]
pub(crate) struct Scrub {
    /// The next chunk id to verify (the walk resumes at the first live id at
    /// or above it).
    cursor: ChunkId,
    credit_bytes: u64,
    in_flight: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Scanning,
    /// Waiting until every record appended before the scan ended is durable.
    Barrier {
        appended_total: u64,
    },
    /// The Free header is being written.
    Freeing,
}

#[derive(Debug)]
pub(crate) struct Compaction {
    segment: u32,
    generation: u64,
    /// Where the next piece starts.
    offset: u64,
    reading: bool,
    stage: Stage,
    /// Puts found in the segment that are (or will be, once relocated) not
    /// current: each is counted in its chunk's `stale_puts`.
    dead_puts: Vec<ChunkId>,
    /// Current tombstones not needed any more: not relocated.
    dropped_tombstones: Vec<(ChunkId, Location)>,
}

impl ChunkStore {
    pub(crate) fn scrub_tick(&mut self) {
        let per_tick = self.config.scrub_bytes_per_tick;
        if per_tick == 0 {
            return;
        }
        let bank = per_tick.max(self.config.record_size_max());
        self.scrub.credit_bytes = (self.scrub.credit_bytes + per_tick).min(bank);
        while self.scrub.in_flight < SCRUB_READS_IN_FLIGHT_MAX {
            let next = match self.index.live_from(self.scrub.cursor) {
                Some(next) => next,
                None if self.scrub.cursor == 0 => return,
                None => {
                    self.scrub.cursor = 0;
                    self.stats.scrub_passes += 1;
                    let Some(next) = self.index.live_from(0) else { return };
                    next
                }
            };
            let (chunk_id, location) = next;
            let size = location.record_size();
            if self.scrub.credit_bytes < size {
                return;
            }
            self.scrub.credit_bytes -= size;
            self.scrub.cursor = chunk_id.wrapping_add(1);
            self.scrub.in_flight += 1;
            self.stats.scrub_reads += 1;
            self.read_issue(location, Io::ScrubRead { chunk_id, location });
        }
    }

    pub(crate) fn on_scrub_read(
        &mut self,
        chunk_id: ChunkId,
        location: Location,
        result: Result<Vec<u8>, IoError>,
    ) {
        assert!(self.scrub.in_flight > 0);
        self.scrub.in_flight -= 1;
        let verdict = result
            .map_err(ReadError::Io)
            .and_then(|bytes| verify_record(bytes, chunk_id, location, &self.expect));
        let Err(error) = verdict else { return };
        // A chunk relocated or deleted while the read was in flight is not
        // this copy's problem any more.
        if self.index.get(chunk_id).is_some_and(|entry| entry.live_at(location)) {
            self.stats.scrub_corrupt += 1;
            self.event(Event::Corrupt { chunk_id, location, error });
        }
    }

    pub(crate) fn compaction_tick(&mut self) {
        if self.compaction.is_none() {
            self.compaction_start();
        }
        let Some(job) = &self.compaction else { return };
        match job.stage {
            Stage::Scanning if !job.reading => self.compaction_read(),
            Stage::Barrier { .. } => self.compaction_barrier_check(),
            _ => {}
        }
    }

    fn compaction_start(&mut self) {
        let free = self.segments_free();
        // Under pressure (a user was refused space), any segment whose
        // relocation gains a sector is worth it: otherwise a store full of
        // 60 %-live segments could not take even the tombstones that would
        // empty it. Only on demand, or relocating the fragmentation of
        // relocated segments would churn forever.
        let pressure = self.space_wanted;
        if free > self.config.compaction_free_segments_trigger && !pressure {
            return;
        }
        let capacity = self.config.segment_capacity();
        let threshold = capacity * u64::from(self.config.compaction_live_percent_max);
        let gain_min = SECTOR_SIZE_U64;
        // The relocations must fit the active segment's room, or one free
        // segment (users never take the last one).
        let room = if free > 0 { capacity } else { self.active_room() };
        let tick = self.tick;
        let candidate = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| {
                segment.status == SegmentStatus::Sealed
                    && segment.header_durable
                    && segment.records_unacked == 0
                    && segment.compaction_after_tick <= tick
                    && segment.live_bytes <= room
                    && (segment.live_bytes * 100 < threshold
                        || (pressure && segment.live_bytes + gain_min <= capacity))
            })
            .min_by_key(|(index, segment)| (segment.live_bytes, *index));
        let Some((segment, state)) = candidate else { return };
        let generation = state.generation;
        let state_live_bytes = state.live_bytes;
        let segment = segment as u32;
        self.segments[segment as usize].status = SegmentStatus::Compacting;
        self.relocation_reserved = state_live_bytes;
        self.compaction = Some(Compaction {
            segment,
            generation,
            offset: super::format::SEGMENT_DATA_OFFSET,
            reading: false,
            stage: Stage::Scanning,
            dead_puts: Vec::new(),
            dropped_tombstones: Vec::new(),
        });
        self.stats.compactions_started += 1;
    }

    fn compaction_read(&mut self) {
        let segment_size = self.config.segment_size_bytes;
        let piece = self.config.compaction_read_bytes;
        let Some(job) = &mut self.compaction else { unreachable!("no compaction job") };
        assert!(job.stage == Stage::Scanning && !job.reading);
        assert!(job.offset < segment_size);
        job.reading = true;
        let (segment, offset) = (job.segment, job.offset);
        let length = piece.min(segment_size - offset);
        self.io_issue(Io::CompactionRead { offset }, |id| Request::Read {
            id,
            segment,
            offset,
            length,
        });
    }

    pub(crate) fn on_compaction_read(&mut self, offset: u64, result: Result<Vec<u8>, IoError>) {
        let Some(mut job) = self.compaction.take() else { panic!("compaction read without a job") };
        assert!(job.reading && job.offset == offset && job.stage == Stage::Scanning);
        job.reading = false;
        let segment_size = self.config.segment_size_bytes;
        let length = self.config.compaction_read_bytes.min(segment_size - offset);
        let bytes = match result {
            Ok(bytes) if bytes.len() as u64 == length => bytes,
            _ => return self.compaction_abort(job),
        };
        let context = ScanContext {
            expect: self.expect,
            segment: job.segment,
            generation: job.generation,
            segment_size,
        };
        let mut corrupt = false;
        let next = scan_piece(&bytes, offset, &context, |item| {
            self.compaction_visit(&mut job, item, &mut corrupt)
        });
        if corrupt {
            return self.compaction_abort(job);
        }
        job.offset = next;
        if job.offset >= segment_size {
            self.relocation_reserved = 0;
            job.stage = Stage::Barrier { appended_total: self.appended_total };
            self.compaction = Some(job);
            self.flush();
            self.compaction_barrier_check();
        } else {
            self.compaction = Some(job);
        }
    }

    /// One item of the segment. Returns false to stop before it (no room to
    /// relocate now: the piece is read again from here on a later tick).
    fn compaction_visit(
        &mut self,
        job: &mut Compaction,
        item: ScanItem,
        corrupt: &mut bool,
    ) -> bool {
        let ScanItem::Record { offset, header, data } = item else { return true };
        let chunk_id = header.chunk_id.get();
        let location = Location {
            segment: job.segment,
            offset,
            length: header.data_length.get(),
            crc32c: header.data_crc32c.get(),
        };
        // A chunk with a record in flight gets a newer record before the
        // barrier: this one is not current by the time the segment is freed.
        let pending = self.pending.contains_key(&chunk_id);
        let entry = self.index.get(chunk_id).copied();
        if header.tombstone() {
            let Some(entry) = entry.filter(|entry| !pending && entry.tombstone_at(location)) else {
                return true;
            };
            if entry.stale_puts() == 0 {
                job.dropped_tombstones.push((chunk_id, location));
                return true;
            }
            let sequence = header.sequence.get();
            let relocated = self.append_relocation(chunk_id, &[], location, true, sequence).is_ok();
            self.stats.relocations += u64::from(relocated);
            return relocated;
        }
        if !pending && entry.is_some_and(|entry| entry.live_at(location)) {
            let actual = crc32c::crc32c(data);
            if actual != location.crc32c {
                let error = ReadError::Corrupt { expected: location.crc32c, actual };
                self.stats.scrub_corrupt += 1;
                self.event(Event::Corrupt { chunk_id, location, error });
                *corrupt = true;
                return false;
            }
            let sequence = header.sequence.get();
            if self.append_relocation(chunk_id, data, location, false, sequence).is_err() {
                return false;
            }
            self.stats.relocations += 1;
        }
        job.dead_puts.push(chunk_id);
        true
    }

    /// Free the segment once the barrier is durable and nothing live is left.
    pub(crate) fn compaction_barrier_check(&mut self) {
        let Some(job) = &self.compaction else { return };
        let Stage::Barrier { appended_total } = job.stage else { return };
        if self.acknowledged_total < appended_total {
            return;
        }
        let segment = job.segment;
        let dropped_current = job
            .dropped_tombstones
            .iter()
            .filter(|(chunk_id, location)| {
                self.index.get(*chunk_id).is_some_and(|entry| entry.tombstone_at(*location))
            })
            .count();
        let live_records = self.segments[segment as usize].live_records as usize;
        if live_records != dropped_current || self.generation_next_exhausted() {
            let Some(job) = self.compaction.take() else { unreachable!() };
            return self.compaction_abort(job);
        }
        let generation = self.generation_take();
        self.segments[segment as usize].status = SegmentStatus::Freeing;
        if let Some(job) = &mut self.compaction {
            job.stage = Stage::Freeing;
        }
        self.header_update(segment, HeaderState::Free, generation);
    }

    /// The Free header of `segment` is durable.
    pub(crate) fn compaction_freed(&mut self, segment: u32, generation: u64) {
        let Some(job) = self.compaction.take() else { panic!("segment freed without a job") };
        assert_eq!(job.segment, segment);
        assert_eq!(job.stage, Stage::Freeing);
        for chunk_id in job.dead_puts {
            self.index.put_gone(chunk_id);
        }
        for (chunk_id, location) in job.dropped_tombstones {
            if self.index.tombstone_gone(chunk_id, location) {
                let state = &mut self.segments[segment as usize];
                assert!(state.live_records > 0);
                state.live_records -= 1;
                state.live_bytes -= record_size(0);
                self.stats.tombstones_dropped += 1;
            }
        }
        let state = &mut self.segments[segment as usize];
        assert_eq!(state.status, SegmentStatus::Freeing);
        assert_eq!(state.live_records, 0, "freed a segment with live records");
        assert_eq!(state.live_bytes, 0);
        assert_eq!(state.records_unacked, 0);
        state.status = SegmentStatus::Free;
        state.generation = generation;
        self.stats.segments_freed += 1;
        self.stats.compactions_completed += 1;
        self.space_wanted = false;
    }

    fn compaction_abort(&mut self, job: Compaction) {
        assert!(job.stage != Stage::Freeing);
        self.relocation_reserved = 0;
        let retry_ticks = self.config.compaction_retry_ticks;
        let state = &mut self.segments[job.segment as usize];
        assert_eq!(state.status, SegmentStatus::Compacting);
        state.status = SegmentStatus::Sealed;
        state.compaction_after_tick = self.tick + retry_ticks;
        self.stats.compactions_aborted += 1;
        assert!(job.offset.is_multiple_of(SECTOR_SIZE_U64));
    }

    fn generation_next_exhausted(&self) -> bool {
        self.generation_peek() > GENERATION_MAX
    }
}
