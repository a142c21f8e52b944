//! The chunk store against the in-memory driver: a model-checked property
//! test under crashes and faults, and scenarios for each rule.
//!
//! What makes them fail: an acknowledged chunk that is missing or differs
//! after a crash without a fault in its own bytes; any read returning bytes
//! other than the chunk's; an error or a Corrupt report where no fault was
//! injected; a torn or garbage record in the index; an acknowledgement
//! before the record's bytes are synced; a write over a live chunk or over a
//! write in flight (the driver asserts it); a deleted chunk coming back.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use toasty::chunkstore::format::{
    position, RecordExpect, RecordHeader, RECORD_HEADER_SIZE, SEGMENT_DATA_OFFSET,
};
use toasty::chunkstore::mem::{MemDriver, MemOptions};
use toasty::chunkstore::{
    AppendError, BufferMemory, BufferSource, ChunkId, ChunkStore, Config, DeleteError, Event,
    HeapBuffers, IoError, Location, ReadError, ReadTicket, Recovery, RecoveryReport, Request,
    ScanError, SegmentStatus, Ticket, SECTOR_SIZE_U64,
};
use toasty::sim::prng::{Prng, Ratio};

const CLUSTER: u128 = 0x7045_7e00_0000_0000_0000_0000_0000_0001;
const GROUP: u32 = 3;

/// Distinct chunk ids the property test uses: few enough to repeat puts
/// and deletes of one id, many enough to fill the 8 small segments.
const IDS: u8 = 40;

/// Ticks a scenario may take to settle; far above what it needs.
const SETTLE_TICKS_MAX: u64 = 2_000;

fn config() -> Config {
    Config::test_min(CLUSTER, GROUP)
}

fn expect() -> RecordExpect {
    let config = config();
    RecordExpect { cluster: CLUSTER, group: GROUP, data_length_max: config.chunk_size_max_bytes }
}

fn chunk(n: u8) -> ChunkId {
    0x00c0_ffee_0000_0000_0000_0000_0000_0000 | u128::from(n)
}

/// The one content of a chunk id (ids name immutable content): 0..=8 KiB.
fn content(chunk_id: ChunkId) -> Vec<u8> {
    let mut prng = Prng::new(chunk_id as u64 ^ 0x5eed);
    let length = prng.range_inclusive(0, u64::from(config().chunk_size_max_bytes)) as usize;
    let mut bytes = vec![0; length];
    prng.bytes(&mut bytes);
    bytes
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Delete,
}

#[derive(Debug, Default)]
struct ModelChunk {
    /// State after the last acknowledged operation.
    live: bool,
    /// Appended, not acknowledged, in order.
    pending: VecDeque<Op>,
    /// Latest durable record (put or tombstone) the store told us about.
    location: Option<Location>,
}

impl ModelChunk {
    fn live_latest(&self) -> bool {
        self.pending.back().map_or(self.live, |&op| op == Op::Put)
    }
}

struct Harness {
    driver: MemDriver,
    store: ChunkStore,
    chunks: BTreeMap<ChunkId, ModelChunk>,
    tickets: BTreeMap<Ticket, (ChunkId, Op)>,
    reads: BTreeMap<ReadTicket, (ChunkId, Location)>,
    reads_ok: u64,
    errors_excused: u64,
    /// Stats of the stores that crashed (each restart starts from zero).
    compactions_completed: u64,
    tombstones_dropped: u64,
    scrub_passes: u64,
}

impl Harness {
    fn new(options: MemOptions, seed: u64) -> Harness {
        let mut driver = MemDriver::new(config(), options, seed);
        let (store, report) = driver.recover();
        assert!(report.segments.iter().all(|segment| segment.status == SegmentStatus::Free));
        assert_eq!(report.chunks_live, 0);
        Harness {
            driver,
            store,
            chunks: BTreeMap::new(),
            tickets: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_ok: 0,
            errors_excused: 0,
            compactions_completed: 0,
            tombstones_dropped: 0,
            scrub_passes: 0,
        }
    }

    fn put(&mut self, chunk_id: ChunkId) -> Result<Ticket, AppendError> {
        let result = self.store.append(chunk_id, &content(chunk_id));
        match result {
            Ok(ticket) => {
                self.tickets.insert(ticket, (chunk_id, Op::Put));
                self.chunks.entry(chunk_id).or_default().pending.push_back(Op::Put);
            }
            Err(AppendError::Busy | AppendError::NoSpace) => {}
            Err(error) => panic!("append {chunk_id:#x}: {error:?}"),
        }
        result
    }

    fn delete(&mut self, chunk_id: ChunkId) -> Result<Ticket, DeleteError> {
        let live = self.chunks.get(&chunk_id).is_some_and(ModelChunk::live_latest);
        let result = self.store.delete(chunk_id);
        match result {
            Ok(ticket) => {
                assert!(live, "deleted {chunk_id:#x}, which the model holds dead");
                self.tickets.insert(ticket, (chunk_id, Op::Delete));
                self.chunks.entry(chunk_id).or_default().pending.push_back(Op::Delete);
            }
            Err(DeleteError::NotFound) => assert!(!live, "live {chunk_id:#x} not found"),
            Err(DeleteError::Busy | DeleteError::NoSpace) => {}
        }
        result
    }

    fn read(&mut self, chunk_id: ChunkId) {
        let Some(location) = self.store.locate(chunk_id) else { return };
        if let Ok(ticket) = self.store.read(chunk_id, location) {
            self.reads.insert(ticket, (chunk_id, location));
        }
    }

    fn step(&mut self) {
        self.driver.step(&mut self.store);
        while let Some(event) = self.store.take_event() {
            self.check_event(event);
        }
        // Read faults are logged when the bytes are returned, and the events
        // they cause were drained just above.
        self.driver.read_faults_clear();
    }

    fn steps(&mut self, count: u64) {
        for _ in 0..count {
            self.step();
        }
    }

    fn excused(&self, location: Location) -> bool {
        self.driver.damaged(location) || self.driver.read_faulted(location)
    }

    fn check_event(&mut self, event: Event) {
        match event {
            Event::Durable { ticket, chunk_id, location } => {
                let (expected_id, op) = self.tickets.remove(&ticket).expect("unknown ticket");
                assert_eq!(chunk_id, expected_id);
                let damaged = self.driver.damaged(location);
                assert!(damaged || self.driver.durable(location), "acknowledged before synced");
                if op == Op::Put {
                    let data = content(chunk_id);
                    assert_eq!(location.length as usize, data.len());
                    assert_eq!(location.crc32c, crc32c::crc32c(&data));
                }
                let model = self.chunks.get_mut(&chunk_id).expect("ticket of a known chunk");
                assert_eq!(model.pending.pop_front(), Some(op), "acknowledged out of order");
                model.live = op == Op::Put;
                model.location = Some(location);
            }
            Event::Relocated { chunk_id, from, to } => {
                let damaged = self.driver.damaged(to);
                assert!(damaged || self.driver.durable(to), "relocation reported before synced");
                let model = self.chunks.get_mut(&chunk_id).expect("relocated a known chunk");
                assert_eq!(model.location, Some(from), "relocated from a stale location");
                model.location = Some(to);
            }
            Event::Read { ticket, chunk_id, result } => {
                let (expected_id, location) = self.reads.remove(&ticket).expect("unknown read");
                assert_eq!(chunk_id, expected_id);
                match result {
                    Ok(bytes) => {
                        assert!(bytes.as_slice() == content(chunk_id), "wrong bytes returned");
                        self.reads_ok += 1;
                    }
                    Err(error) => {
                        let moved = self.store.locate(chunk_id) != Some(location);
                        assert!(
                            moved || self.excused(location),
                            "read of {chunk_id:#x} at {location:?} failed without a fault: {error:?}"
                        );
                        self.errors_excused += 1;
                    }
                }
            }
            Event::Corrupt { chunk_id, location, error } => {
                assert!(
                    self.excused(location),
                    "{chunk_id:#x} at {location:?} reported corrupt without a fault: {error:?}"
                );
                self.errors_excused += 1;
            }
        }
    }

    fn crash_and_recover(&mut self) -> RecoveryReport {
        let stats = self.store.stats();
        self.compactions_completed += stats.compactions_completed;
        self.tombstones_dropped += stats.tombstones_dropped;
        self.scrub_passes += stats.scrub_passes;
        self.driver.crash();
        let (store, report) = self.driver.recover();
        self.store = store;
        self.tickets.clear();
        self.reads.clear();
        self.check_index_against_disk();
        for (&chunk_id, model) in &mut self.chunks {
            let observed = self.store.locate(chunk_id).is_some();
            let allowed = observed == model.live
                || model.pending.iter().any(|&op| (op == Op::Put) == observed);
            // A fault in the chunk's own latest record may lose it (or, in a
            // tombstone, bring it back), as may losing both header copies of
            // its segment; nothing else may.
            let excused = model.location.is_some_and(|location| {
                self.driver.damaged(location)
                    || report.segments_quarantined.contains(&location.segment)
            });
            assert!(
                allowed || excused,
                "{chunk_id:#x}: acknowledged live={} but recovered live={observed}",
                model.live
            );
            model.live = observed;
            model.pending.clear();
            let tombstone = self.store.tombstone(chunk_id);
            model.location = self.store.locate(chunk_id).or(tombstone).or(model.location);
        }
        report
    }

    /// Every indexed chunk is, on disk, a whole valid record of its bytes:
    /// a torn or garbage record never enters the index.
    fn check_index_against_disk(&self) {
        for (chunk_id, location) in self.store.chunks() {
            let bytes = self.driver.segment_bytes(location.segment);
            let start = location.offset as usize;
            let header = RecordHeader::decode(&bytes[start..], &expect())
                .unwrap_or_else(|error| panic!("indexed {chunk_id:#x}: {error:?}"));
            assert_eq!(header.chunk_id.get(), chunk_id);
            assert!(!header.tombstone());
            let data_start = start + RECORD_HEADER_SIZE;
            let data = &bytes[data_start..data_start + location.length as usize];
            assert!(data == content(chunk_id), "indexed {chunk_id:#x} with other bytes");
        }
    }

    /// Read every chunk the model holds live; each must come back whole or
    /// fail with a fault to blame.
    fn verify_all(&mut self) {
        let live: Vec<ChunkId> =
            self.chunks.iter().filter(|(_, model)| model.live).map(|(&id, _)| id).collect();
        for chunk_id in live {
            let location = self.store.locate(chunk_id);
            let excused = self.chunks[&chunk_id].location.is_some_and(|l| self.driver.damaged(l));
            assert!(location.is_some() || excused, "live {chunk_id:#x} not indexed");
            self.read(chunk_id);
            for _ in 0..SETTLE_TICKS_MAX {
                if self.reads.is_empty() {
                    break;
                }
                self.step();
            }
            assert!(self.reads.is_empty(), "read never answered");
        }
    }

    fn settle(&mut self) {
        self.store.flush();
        for _ in 0..SETTLE_TICKS_MAX {
            if self.tickets.is_empty() && self.store.records_pending() == 0 {
                return;
            }
            self.step();
        }
        panic!("not settled: {} tickets unacknowledged", self.tickets.len());
    }

    fn live_location(&self, index: usize) -> Option<(ChunkId, Location)> {
        let live: Vec<(ChunkId, Location)> = self.store.chunks().collect();
        // The live counter the metrics publish must match the index.
        assert_eq!(live.len(), self.store.chunks_live());
        (!live.is_empty()).then(|| live[index % live.len()])
    }
}

#[derive(Clone, Debug)]
enum Action {
    Put(u8),
    Delete(u8),
    Read(u8),
    Flush,
    Steps(u8),
    Crash,
    /// Flip a bit of a live chunk's header or data.
    Flip(u16, u16),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0..IDS).prop_map(Action::Put),
        4 => (0..IDS).prop_map(Action::Delete),
        2 => (0..IDS).prop_map(Action::Read),
        1 => Just(Action::Flush),
        6 => (1..8u8).prop_map(Action::Steps),
        1 => Just(Action::Crash),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(chunk, bit)| Action::Flip(chunk, bit)),
    ]
}

/// What a run exercised, so a test can check the actions reach every path.
#[derive(Debug, Default)]
struct Coverage {
    writes: u64,
    sectors_torn: u64,
    misdirects: u64,
    compactions: u64,
    tombstones_dropped: u64,
    errors_excused: u64,
    reads_ok: u64,
}

fn run(seed: u64, faults: bool, actions: &[Action]) -> Coverage {
    let options = if faults { MemOptions::faulty() } else { MemOptions::crashes() };
    let mut harness = Harness::new(options, seed);
    for action in actions {
        match *action {
            Action::Put(n) => drop(harness.put(chunk(n))),
            Action::Delete(n) => drop(harness.delete(chunk(n))),
            Action::Read(n) => harness.read(chunk(n)),
            Action::Flush => harness.store.flush(),
            Action::Steps(count) => harness.steps(u64::from(count)),
            Action::Crash => drop(harness.crash_and_recover()),
            Action::Flip(index, bit) => {
                if let (true, Some((_, location))) = (faults, harness.live_location(index.into())) {
                    let span = RECORD_HEADER_SIZE as u64 + u64::from(location.length);
                    let byte = u64::from(bit) % span;
                    harness.driver.flip_bit(location.segment, location.offset + byte, bit as u8);
                }
            }
        }
    }
    // Liveness: everything appended is acknowledged once the disk is calm.
    harness.settle();
    harness.verify_all();
    harness.crash_and_recover();
    harness.verify_all();
    if !faults {
        assert_eq!(harness.errors_excused, 0);
    }
    let mem = harness.driver.stats();
    Coverage {
        writes: mem.writes,
        sectors_torn: mem.sectors_lost + mem.sectors_garbled,
        misdirects: mem.misdirects,
        compactions: harness.compactions_completed,
        tombstones_dropped: harness.tombstones_dropped,
        errors_excused: harness.errors_excused,
        reads_ok: harness.reads_ok,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn crashes_and_faults_never_lose_or_invent(
        seed in any::<u64>(),
        faults in any::<bool>(),
        actions in proptest::collection::vec(action(), 1..300),
    ) {
        run(seed, faults, &actions);
    }
}

/// The property test's action mix, drawn from a fixed seed: proves the
/// mix reaches torn writes, misdirection, compaction, tombstone dropping and
/// excused errors (a mix that never tore a write would prove nothing).
#[test]
fn action_mix_reaches_every_path() {
    let mut prng = Prng::new(2024);
    let mut total = Coverage::default();
    for case in 0..24u64 {
        let actions: Vec<Action> = (0..300)
            .map(|_| {
                let n = prng.index(IDS as usize) as u8;
                match prng.index(23) {
                    0..=7 => Action::Put(n),
                    8..=11 => Action::Delete(n),
                    12..=13 => Action::Read(n),
                    14 => Action::Flush,
                    15..=20 => Action::Steps(prng.range_inclusive(1, 7) as u8),
                    21 => Action::Crash,
                    _ => Action::Flip(prng.next_u64() as u16, prng.next_u64() as u16),
                }
            })
            .collect();
        let coverage = run(case, case % 2 == 0, &actions);
        total.writes += coverage.writes;
        total.sectors_torn += coverage.sectors_torn;
        total.misdirects += coverage.misdirects;
        total.compactions += coverage.compactions;
        total.tombstones_dropped += coverage.tombstones_dropped;
        total.errors_excused += coverage.errors_excused;
        total.reads_ok += coverage.reads_ok;
    }
    eprintln!("{total:?}");
    assert!(total.sectors_torn > 0 && total.misdirects > 0, "{total:?}");
    assert!(total.compactions > 0 && total.tombstones_dropped > 0, "{total:?}");
    assert!(total.errors_excused > 0 && total.reads_ok > 0, "{total:?}");
}

/// A long fixed run, so compaction, tombstone dropping and NoSpace are
/// certainly exercised (the property test's cases are shorter).
#[test]
fn long_run_exercises_every_path() {
    let mut prng = Prng::new(77);
    let options = MemOptions { misdirect: Ratio::new(1, 50), ..MemOptions::faulty() };
    let mut harness = Harness::new(options, 77);
    let mut no_space = 0;
    for round in 0..4_000u32 {
        let n = prng.index(IDS as usize) as u8;
        match prng.index(10) {
            0..=3 => no_space += u32::from(harness.put(chunk(n)) == Err(AppendError::NoSpace)),
            4..=5 => drop(harness.delete(chunk(n))),
            6 => harness.read(chunk(n)),
            _ => harness.steps(2),
        }
        if round % 500 == 499 {
            harness.crash_and_recover();
        }
    }
    harness.settle();
    harness.verify_all();
    harness.crash_and_recover();
    harness.verify_all();
    let mem = harness.driver.stats();
    eprintln!(
        "{mem:?}\nno_space {no_space} reads_ok {} compactions {} tombstones dropped {}",
        harness.reads_ok, harness.compactions_completed, harness.tombstones_dropped
    );
    assert!(harness.reads_ok > 100 && no_space > 0);
    assert!(mem.crashes >= 8 && mem.misdirects > 0 && mem.rots > 0 && mem.read_errors > 0);
    assert!(harness.compactions_completed > 0 && harness.scrub_passes > 0);
}

/// Fill the store until NoSpace, delete two chunks of three, let compaction
/// run; four rounds. Compaction must relocate, free segments and drop
/// tombstones, space must come back, and at a restart exactly the kept
/// chunks are live.
#[test]
fn full_store_reports_no_space_then_compaction_reclaims() {
    let mut harness = Harness::new(MemOptions::none(), 1);
    let mut next: u128 = 1 << 100;
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    for round in 0..4 {
        let mut stored = Vec::new();
        loop {
            match harness.put(next) {
                Ok(_) => stored.push(next),
                Err(AppendError::NoSpace) => break,
                Err(AppendError::Busy) => {
                    harness.settle();
                    continue;
                }
                Err(error) => panic!("{error:?}"),
            }
            next += 1;
            harness.steps(1);
        }
        harness.settle();
        assert!(!stored.is_empty(), "round {round}: compaction freed no space");
        for (index, &chunk_id) in stored.iter().enumerate() {
            if index % 3 == 0 {
                kept.push(chunk_id);
                continue;
            }
            // A full store may refuse a tombstone until compaction made room.
            let mut attempts = 0;
            while harness.delete(chunk_id).is_err() {
                attempts += 1;
                assert!(attempts < SETTLE_TICKS_MAX, "round {round}: delete never found room");
                harness.steps(1);
            }
            deleted.push(chunk_id);
        }
        harness.settle();
        harness.steps(300);
    }
    let stats = harness.store.stats();
    assert!(stats.compactions_completed >= 4, "{stats:?}");
    assert!(stats.relocations > 0, "{stats:?}");
    assert!(stats.tombstones_dropped > 0, "{stats:?}");
    harness.verify_all();
    assert!(harness.reads_ok as usize >= kept.len());
    harness.crash_and_recover();
    assert!(kept.iter().all(|&chunk_id| harness.store.locate(chunk_id).is_some()));
    assert!(deleted.iter().all(|&chunk_id| harness.store.locate(chunk_id).is_none()));
    harness.verify_all();
}

#[test]
fn scrubber_reports_a_flipped_bit() {
    let mut harness = Harness::new(MemOptions::none(), 2);
    for n in 0..6 {
        harness.put(chunk(n)).expect("room");
    }
    harness.settle();
    let victim = chunk(3);
    let location = harness.store.locate(victim).expect("durable");
    let last_data_byte = location.offset + RECORD_HEADER_SIZE as u64 + u64::from(location.length);
    harness.driver.flip_bit(location.segment, last_data_byte.saturating_sub(1), 4);
    let mut reported = Vec::new();
    for _ in 0..200 {
        harness.driver.step(&mut harness.store);
        while let Some(event) = harness.store.take_event() {
            if let Event::Corrupt { chunk_id, location: at, error } = event {
                assert_eq!(at, location);
                reported.push((chunk_id, error));
            }
        }
    }
    assert!(!reported.is_empty(), "the scrubber never found the flipped bit");
    assert!(reported.iter().all(|(chunk_id, _)| *chunk_id == victim));
    assert!(matches!(reported[0].1, ReadError::Corrupt { .. } | ReadError::HeaderInvalid(_)));
    assert!(harness.store.stats().scrub_passes >= 2);
    // A read of it reports the error too, never the flipped bytes.
    harness.read(victim);
    harness.steps(5);
    assert!(harness.reads.is_empty() && harness.reads_ok == 0 && harness.errors_excused > 0);
}

#[test]
fn misdirected_write_is_detected_at_read() {
    let options = MemOptions { misdirect: Ratio::one(), ..MemOptions::none() };
    let mut harness = Harness::new(options, 3);
    harness.put(chunk(1)).expect("room");
    harness.settle();
    let location = harness.chunks[&chunk(1)].location.expect("acknowledged");
    assert!(harness.driver.stats().misdirects > 0);
    let ticket = harness.store.read(chunk(1), location).expect("valid location");
    for _ in 0..5 {
        harness.driver.step(&mut harness.store);
    }
    let Some(Event::Read { ticket: read, result, .. }) = harness.store.take_event() else {
        panic!("no read event");
    };
    assert_eq!(read, ticket);
    assert!(matches!(
        result,
        Err(ReadError::HeaderInvalid(_)
            | ReadError::Misplaced { .. }
            | ReadError::WrongChunk { .. })
    ));
}

/// Four records in one segment; B's header rots and C's data rots. Recovery
/// keeps A and D, skips C (reported with its id), and resyncs past B's
/// rotten header instead of losing the rest of the segment.
#[test]
fn recovery_skips_rotten_records_and_resyncs() {
    let mut harness = Harness::new(MemOptions::none(), 4);
    let ids = [chunk(10), chunk(11), chunk(12), chunk(13)];
    for id in ids {
        harness.put(id).expect("room");
    }
    harness.settle();
    let locations: Vec<Location> =
        ids.iter().map(|&id| harness.store.locate(id).expect("durable")).collect();
    assert!(locations.iter().all(|location| location.segment == locations[0].segment));
    harness.driver.flip_bit(locations[1].segment, locations[1].offset + 50, 1);
    let data_byte = locations[2].offset + RECORD_HEADER_SIZE as u64;
    harness.driver.flip_bit(locations[2].segment, data_byte, 1);
    let report = harness.crash_and_recover();
    assert!(harness.store.locate(ids[0]).is_some());
    assert!(harness.store.locate(ids[1]).is_none());
    assert!(harness.store.locate(ids[2]).is_none());
    assert_eq!(harness.store.locate(ids[3]), Some(locations[3]), "lost after a rotten header");
    assert_eq!(report.records_skipped.len(), 1);
    assert_eq!(report.records_skipped[0].chunk_id, ids[2]);
    assert_eq!(report.records_skipped[0].offset, locations[2].offset);
    assert_eq!(report.holes.len(), 1);
    assert_eq!(report.holes[0].offset, locations[1].offset);
    assert!(matches!(report.holes[0].error, ScanError::Header(_)));
    let summary = report.segments[locations[0].segment as usize];
    assert_eq!(summary.status, SegmentStatus::Sealed);
    assert_eq!(summary.fill_end, locations[3].offset + locations[3].record_size());
}

/// A torn record (valid header, data not all written) and a record of
/// another fill (stale bytes of a reused segment) never enter the index.
#[test]
fn torn_and_stale_records_never_indexed() {
    let mut harness = Harness::new(MemOptions::none(), 5);
    harness.put(chunk(20)).expect("room");
    harness.settle();
    let location = harness.store.locate(chunk(20)).expect("durable");
    let segment = location.segment;
    let generation = harness.store.segment_info(segment).generation;
    let torn_offset = location.offset + location.record_size();
    let data = vec![7u8; 6000];
    let at = position(generation, torn_offset);
    let header = RecordHeader::new(&expect(), chunk(21), segment, at, at, &data, false);
    let mut record = Vec::new();
    toasty::chunkstore::format::encode_record(&mut record, &header, &data);
    // Only the first sector reached the disk.
    harness.driver.write_raw(segment, torn_offset, &record[..SECTOR_SIZE_U64 as usize]);
    let stale_offset = torn_offset + record.len() as u64;
    let at = position(generation + 1, stale_offset);
    let stale = RecordHeader::new(&expect(), chunk(22), segment, at, at, &[], false);
    let mut stale_record = Vec::new();
    toasty::chunkstore::format::encode_record(&mut stale_record, &stale, &[]);
    harness.driver.write_raw(segment, stale_offset, &stale_record);
    let (store, report) = harness.driver.recover();
    assert!(store.locate(chunk(20)).is_some());
    assert!(store.locate(chunk(21)).is_none(), "torn record indexed");
    assert!(store.locate(chunk(22)).is_none(), "stale record indexed");
    assert_eq!(report.records_skipped_count, 1);
    assert_eq!(report.records_skipped[0].chunk_id, chunk(21));
    assert_eq!(report.holes_count, 0, "the stale record is part of the tail");
}

/// One rotten header copy is survived; two quarantine the segment, which is
/// then never reused.
#[test]
fn segment_header_copies() {
    let mut harness = Harness::new(MemOptions::none(), 6);
    harness.put(chunk(30)).expect("room");
    harness.settle();
    let location = harness.store.locate(chunk(30)).expect("durable");
    harness.driver.flip_bit(location.segment, 20, 0);
    harness.crash_and_recover();
    assert_eq!(harness.store.locate(chunk(30)), Some(location));
    harness.driver.flip_bit(location.segment, SECTOR_SIZE_U64 + 20, 0);
    let report = harness.crash_and_recover();
    assert_eq!(report.segments_quarantined, vec![location.segment]);
    assert!(harness.store.locate(chunk(30)).is_none());
    assert!(report.generation_next > u64::from(config().segment_count));
    for n in 40..80 {
        if let Ok(_) | Err(AppendError::Busy) = harness.put(chunk(n)) {
            harness.steps(1);
        }
    }
    harness.settle();
    assert!(harness.store.chunks().all(|(_, at)| at.segment != location.segment));
    let info = harness.store.segment_info(location.segment);
    assert_eq!(info.status, SegmentStatus::Quarantined);
}

#[test]
fn delete_survives_restart_and_unacknowledged_work_is_all_or_nothing() {
    let mut harness = Harness::new(MemOptions::none(), 7);
    harness.put(chunk(1)).expect("room");
    harness.put(chunk(2)).expect("room");
    harness.settle();
    harness.delete(chunk(1)).expect("live");
    harness.settle();
    assert!(harness.store.tombstone(chunk(1)).is_some());
    harness.crash_and_recover();
    assert!(harness.store.locate(chunk(1)).is_none(), "delete lost at restart");
    assert!(harness.store.tombstone(chunk(1)).is_some(), "tombstone forgotten");
    assert_eq!(harness.store.delete(chunk(1)), Err(DeleteError::NotFound));
    // Appended but never flushed: gone at the crash, and nothing else is.
    harness.put(chunk(3)).expect("room");
    harness.crash_and_recover();
    assert!(harness.store.locate(chunk(3)).is_none());
    assert!(harness.store.locate(chunk(2)).is_some());
}

#[test]
fn backpressure_and_limits() {
    let mut harness = Harness::new(MemOptions::none(), 8);
    let too_large = vec![0u8; config().chunk_size_max_bytes as usize + 1];
    assert_eq!(
        harness.store.append(chunk(0), &too_large),
        Err(AppendError::TooLarge { length: too_large.len(), max: config().chunk_size_max_bytes })
    );
    // Nothing completes: appends must stop at the pending limits.
    let mut accepted = 0u32;
    for n in 0..200u8 {
        match harness.store.append(chunk(n), &[n; 100]) {
            Ok(_) => accepted += 1,
            Err(AppendError::Busy) => break,
            Err(error) => panic!("{error:?}"),
        }
    }
    assert!(accepted > 0 && accepted <= config().records_pending_max);
    assert!(harness.store.records_pending() == accepted);
    assert_eq!(harness.store.append(chunk(1), &[9; 100]), Err(AppendError::ContentMismatch));
    let bad = Location { segment: 0, offset: 100, length: 1, crc32c: 0 };
    assert_eq!(
        harness.store.read(chunk(0), bad),
        Err(toasty::chunkstore::ReadSubmitError::InvalidLocation)
    );
    assert!(ChunkStore::index_bytes_per_chunk() <= 64);
}

/// Recovery through its pull interface, with the first attempt of every
/// read failing: it retries and still finds everything.
#[test]
fn recovery_retries_failed_reads() {
    let mut harness = Harness::new(MemOptions::none(), 9);
    for n in 0..10 {
        harness.put(chunk(n)).expect("room");
    }
    harness.settle();
    let mut recovery = Recovery::new(config()).expect("valid config");
    let mut failed = false;
    while let Some(read) = recovery.next_read() {
        if !failed {
            recovery.on_read(read, Err(IoError { errno: 5 }));
            failed = true;
            continue;
        }
        failed = false;
        let bytes = harness.driver.segment_bytes(read.segment);
        let range = read.offset as usize..(read.offset + read.length) as usize;
        recovery.on_read(read, Ok(&bytes[range]));
    }
    let (store, report) = recovery.finish();
    assert!(report.read_errors > 0);
    for n in 0..10 {
        assert!(store.locate(chunk(n)).is_some());
    }
    assert_eq!(report.chunks_live, 10);
    let scanned = u64::from(config().segment_count) * SEGMENT_DATA_OFFSET;
    assert!(report.bytes_scanned > scanned);
}

/// Lent memory holding an older write's bytes: the store must overwrite
/// every byte it writes (header, data, padding).
struct StaleMemory {
    takes: u32,
}

impl BufferSource for StaleMemory {
    fn take(&mut self, capacity_bytes: usize) -> Box<dyn BufferMemory> {
        self.takes += 1;
        let mut memory = HeapBuffers.take(capacity_bytes);
        memory.bytes_mut().fill(0xa5);
        memory
    }
}

/// Recover a store from `image` (one `Vec` per segment) with no faults.
fn recover_image(image: &[Vec<u8>]) -> ChunkStore {
    let mut recovery = Recovery::new(config()).expect("valid config");
    while let Some(read) = recovery.next_read() {
        let range = read.offset as usize..(read.offset + read.length) as usize;
        recovery.on_read(read, Ok(&image[read.segment as usize][range]));
    }
    recovery.finish().0
}

/// Batches are written in pieces of `write_bytes_max` from the store's
/// buffer source: no write is longer, records span pieces, and what lands
/// on disk reads back exactly, padding zeroed, even from memory that held
/// other bytes. Fails if a piece is longer than the knob, a record is cut
/// wrongly at a piece boundary, or stale bytes of lent memory reach disk.
#[test]
fn batches_are_written_in_pieces_from_lent_memory() {
    let config = config();
    let piece = config.write_bytes_max as usize;
    let segment_bytes = config.segment_size_bytes as usize;
    let mut image = vec![vec![0u8; segment_bytes]; config.segment_count as usize];
    let mut store = recover_image(&image);
    store.set_buffer_source(Box::new(StaleMemory { takes: 0 }));
    // Largest records (12 KiB) span the 8 KiB pieces.
    let ids: Vec<ChunkId> = (0..6).map(|n| chunk(100 + n)).collect();
    let data = |chunk_id: ChunkId| vec![chunk_id as u8; config.chunk_size_max_bytes as usize];
    for &chunk_id in &ids {
        store.append(chunk_id, &data(chunk_id)).expect("room");
    }
    store.flush();
    let (mut full, mut durable) = (0, 0);
    for _ in 0..1_000 {
        let Some(request) = store.take_request() else {
            store.flush();
            if store.io_in_flight() == 0 && store.records_pending() == 0 {
                break;
            }
            continue;
        };
        match request {
            Request::Write { id, segment, offset, data } => {
                assert!(data.len() <= piece, "a write of {} bytes", data.len());
                full += usize::from(data.len() == piece);
                let start = offset as usize;
                image[segment as usize][start..start + data.len()].copy_from_slice(&data);
                store.on_write_done(id);
            }
            Request::Sync { id, .. } => store.on_sync_done(id),
            Request::Read { .. } => panic!("nothing reads"),
        }
        while let Some(event) = store.take_event() {
            durable += usize::from(matches!(event, Event::Durable { .. }));
        }
    }
    assert_eq!(durable, ids.len());
    assert!(full > 0, "no full piece: records never spanned pieces");
    let recovered = recover_image(&image);
    for &chunk_id in &ids {
        let location = recovered.locate(chunk_id).expect("durable chunk recovered");
        let record = &image[location.segment as usize]
            [location.offset as usize..(location.offset + location.record_size()) as usize];
        let (body, padding) = record[RECORD_HEADER_SIZE..].split_at(location.length as usize);
        assert_eq!(body, data(chunk_id).as_slice());
        assert!(padding.iter().all(|&byte| byte == 0), "stale bytes in the padding");
    }
}
