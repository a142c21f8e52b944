//! The on-disk format: record header, segment header, sizes, sequences.
//!
//! Record header (128 bytes at the start of every record; little endian,
//! alignment 1, no padding):
//!
//! | offset | field | bytes | meaning |
//! |---|---|---|---|
//! | 0 | checksum | 16 | xxh3-128 over bytes 16..128 |
//! | 16 | magic | 8 | [`RECORD_MAGIC`] |
//! | 24 | cluster | 16 | records of another cluster are rejected |
//! | 40 | chunk_id | 16 | |
//! | 56 | sequence | 8 | version of the chunk: the position of the user append that created it |
//! | 64 | position | 8 | `generation << 32 \| sector index`: where this copy was written |
//! | 72 | group | 4 | replication group (= shard) |
//! | 76 | segment | 4 | segment index the record was written to |
//! | 80 | data_length | 4 | data bytes after the header |
//! | 84 | data_crc32c | 4 | crc32c of the data (S3 clients speak CRC32C) |
//! | 88 | version | 2 | [`FORMAT_VERSION`] |
//! | 90 | flags | 2 | [`FLAG_TOMBSTONE`]; other bits must be zero |
//! | 92 | reserved | 36 | zero |
//!
//! `position` names the fill (segment generation) and the offset a copy was
//! written for: a stale copy of an older fill or a misdirected one is
//! rejected. `sequence` orders the versions of one chunk: a user append's
//! sequence is its own position; a relocated copy keeps the sequence of the
//! record it copies, so it never outranks a later delete written in another
//! segment. User appends go to one segment at a time, generations only grow
//! (also across restarts: a new fill takes a generation above every header
//! on disk), so sequences grow in the order of user appends.
//!
//! The data follows the header in the same sector, then zero padding to a
//! sector boundary: a record is `record_size(data_length)` bytes. A tombstone
//! has no data (length 0, crc 0) and occupies one sector.
//!
//! Segment header (128 bytes at the start of sectors 0 and 1, rest zero):
//!
//! | offset | field | bytes | meaning |
//! |---|---|---|---|
//! | 0 | checksum | 16 | xxh3-128 over bytes 16..128 |
//! | 16 | magic | 8 | [`SEGMENT_MAGIC`] |
//! | 24 | cluster | 16 | |
//! | 40 | generation | 8 | fill generation (1..=GENERATION_MAX) |
//! | 48 | segment_size | 8 | must equal the configured size |
//! | 56 | group | 4 | |
//! | 60 | segment | 4 | segment index |
//! | 64 | version | 2 | [`FORMAT_VERSION`] |
//! | 66 | state | 1 | [`SegmentState`] |
//! | 67 | copy | 1 | 0 or 1: the sector the copy belongs in |
//! | 68 | reserved | 60 | zero |
//!
//! Decoding checks, in this order: length, all-zero (never written), magic,
//! version (a future layout may checksum differently), checksum, then the
//! fields. So a flipped bit reports `ChecksumMismatch`, and a genuine record
//! of another cluster or group reports that.

use zerocopy::byteorder::little_endian::{U128, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::{ChunkId, SECTOR_SIZE_U64};
use crate::vsr::message::checksum;
use crate::vsr::storage::SECTOR_SIZE;

pub const RECORD_HEADER_SIZE: usize = 128;
pub const SEGMENT_HEADER_SIZE: usize = 128;

/// "TSTYCHNK": lets a scan reject a sector that is no header with one compare.
pub const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"TSTYCHNK");
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"TSTYSGMT");

/// Bumped on any change to a layout or a checksum rule; another version is
/// rejected, never guessed at.
pub const FORMAT_VERSION: u16 = 1;

pub const FLAG_TOMBSTONE: u16 = 1;
const FLAGS_KNOWN: u16 = FLAG_TOMBSTONE;

/// Two copies of the segment header, written one after the other, so a
/// crash or one rotten sector always leaves a valid copy.
pub const SEGMENT_HEADER_COPIES: usize = 2;

/// Where the first record of a segment starts.
pub const SEGMENT_DATA_OFFSET: u64 = (SEGMENT_HEADER_COPIES * SECTOR_SIZE) as u64;

/// Bits of a position holding the sector index.
pub const ORDINAL_BITS: u32 = 32;
/// Sectors a segment may have: the sector index must fit its bits.
pub const ORDINAL_MAX: u64 = 1 << ORDINAL_BITS;
/// Generations must fit the high half of a position. 4 billion segment fills
/// and frees: a century at one a second.
pub const GENERATION_MAX: u64 = (1 << (64 - ORDINAL_BITS)) - 1;

/// Upper bound on any record's data, whatever the configuration: keeps
/// `record_size` far from overflow and bounds what a header may claim.
pub const DATA_LENGTH_MAX: u32 = 1 << 30;

const _: () = assert!(RECORD_HEADER_SIZE <= SECTOR_SIZE);
const _: () = assert!(SEGMENT_HEADER_SIZE <= SECTOR_SIZE);
const _: () = assert!(SECTOR_SIZE.is_power_of_two());

/// Bytes a record with `data_length` data bytes occupies.
pub fn record_size(data_length: u32) -> u64 {
    let unpadded = RECORD_HEADER_SIZE as u64 + u64::from(data_length);
    unpadded.div_ceil(SECTOR_SIZE_U64) * SECTOR_SIZE_U64
}

/// `generation << 32 | sector index`: a record's position, and the sequence
/// of a user append.
pub fn position(generation: u64, offset: u64) -> u64 {
    assert!(generation > 0 && generation <= GENERATION_MAX);
    assert!(offset.is_multiple_of(SECTOR_SIZE_U64));
    let ordinal = offset / SECTOR_SIZE_U64;
    assert!(ordinal < ORDINAL_MAX);
    (generation << ORDINAL_BITS) | ordinal
}

pub fn position_generation(position: u64) -> u64 {
    position >> ORDINAL_BITS
}

pub fn position_offset(position: u64) -> u64 {
    (position & (ORDINAL_MAX - 1)) * SECTOR_SIZE_U64
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RecordHeader {
    pub checksum: U128,
    pub magic: U64,
    pub cluster: U128,
    pub chunk_id: U128,
    pub sequence: U64,
    pub position: U64,
    pub group: U32,
    pub segment: U32,
    pub data_length: U32,
    pub data_crc32c: U32,
    pub version: U16,
    pub flags: U16,
    pub reserved: [u8; 36],
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
const _: () = assert!(std::mem::align_of::<RecordHeader>() == 1);
const _: () = assert!(std::mem::offset_of!(RecordHeader, magic) == 16);
const _: () = assert!(std::mem::offset_of!(RecordHeader, cluster) == 24);
const _: () = assert!(std::mem::offset_of!(RecordHeader, chunk_id) == 40);
const _: () = assert!(std::mem::offset_of!(RecordHeader, sequence) == 56);
const _: () = assert!(std::mem::offset_of!(RecordHeader, position) == 64);
const _: () = assert!(std::mem::offset_of!(RecordHeader, group) == 72);
const _: () = assert!(std::mem::offset_of!(RecordHeader, segment) == 76);
const _: () = assert!(std::mem::offset_of!(RecordHeader, data_length) == 80);
const _: () = assert!(std::mem::offset_of!(RecordHeader, data_crc32c) == 84);
const _: () = assert!(std::mem::offset_of!(RecordHeader, version) == 88);
const _: () = assert!(std::mem::offset_of!(RecordHeader, flags) == 90);
const _: () = assert!(std::mem::offset_of!(RecordHeader, reserved) == 92);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SegmentHeader {
    pub checksum: U128,
    pub magic: U64,
    pub cluster: U128,
    pub generation: U64,
    pub segment_size: U64,
    pub group: U32,
    pub segment: U32,
    pub version: U16,
    pub state: u8,
    pub copy: u8,
    pub reserved: [u8; 60],
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() == SEGMENT_HEADER_SIZE);
const _: () = assert!(std::mem::align_of::<SegmentHeader>() == 1);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, generation) == 40);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, segment_size) == 48);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, group) == 56);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, segment) == 60);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, version) == 64);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, state) == 66);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, copy) == 67);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, reserved) == 68);

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Holds no records that count; its generation is retired.
    Free = 1,
    /// Records of this generation may follow.
    Open = 2,
}

/// Why bytes are not a header to trust. Disk bytes are outside input: this
/// is a value, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    TooShort {
        length: usize,
    },
    /// Every byte zero: never written.
    Zeroed,
    BadMagic {
        found: u64,
    },
    BadVersion {
        found: u16,
    },
    ChecksumMismatch {
        expected: u128,
        actual: u128,
    },
    WrongCluster {
        found: u128,
    },
    WrongGroup {
        found: u32,
    },
    ReservedNonZero,
    UnknownFlags {
        flags: u16,
    },
    LengthOutOfBounds {
        length: u32,
        max: u32,
    },
    TombstoneWithData {
        length: u32,
        crc32c: u32,
    },
    /// The generation half of a sequence or position is 0 or too large.
    SequenceInvalid {
        sequence: u64,
    },
    PositionInvalid {
        position: u64,
    },
    WrongSegment {
        found: u32,
    },
    WrongSegmentSize {
        found: u64,
    },
    BadState {
        found: u8,
    },
    WrongCopy {
        found: u8,
    },
    GenerationOutOfBounds {
        found: u64,
    },
}

/// What a record header must match besides its own checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordExpect {
    pub cluster: u128,
    pub group: u32,
    pub data_length_max: u32,
}

impl RecordHeader {
    /// A sealed header for `data` (or a tombstone when `tombstone`).
    pub fn new(
        expect: &RecordExpect,
        chunk_id: ChunkId,
        segment: u32,
        sequence: u64,
        position: u64,
        data: &[u8],
        tombstone: bool,
    ) -> RecordHeader {
        let data_crc32c = crc32c::crc32c(data);
        RecordHeader::with_crc32c(
            expect,
            chunk_id,
            segment,
            sequence,
            position,
            data,
            data_crc32c,
            tombstone,
        )
    }

    /// `new` with the data's crc32c already computed (the store computes it
    /// once per append; a second pass over 1 MiB costs ~40 µs, a tenth of
    /// an append's CPU). The caller's crc is checked against the data only
    /// in builds with debug assertions (the sim profile the tests use):
    /// checking it always would be the pass this saves.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_crc32c(
        expect: &RecordExpect,
        chunk_id: ChunkId,
        segment: u32,
        sequence: u64,
        position: u64,
        data: &[u8],
        data_crc32c: u32,
        tombstone: bool,
    ) -> RecordHeader {
        assert!(data.len() <= expect.data_length_max as usize);
        assert!(!tombstone || data.is_empty());
        debug_assert_eq!(data_crc32c, crc32c::crc32c(data));
        let mut header = RecordHeader::new_zeroed();
        header.magic.set(RECORD_MAGIC);
        header.cluster.set(expect.cluster);
        header.chunk_id.set(chunk_id);
        header.sequence.set(sequence);
        header.position.set(position);
        header.group.set(expect.group);
        header.segment.set(segment);
        header.data_length.set(data.len() as u32);
        header.data_crc32c.set(data_crc32c);
        header.version.set(FORMAT_VERSION);
        header.flags.set(if tombstone { FLAG_TOMBSTONE } else { 0 });
        header.checksum.set(header.checksum_compute());
        header
    }

    fn checksum_compute(&self) -> u128 {
        checksum(&self.as_bytes()[16..])
    }

    pub fn tombstone(&self) -> bool {
        self.flags.get() & FLAG_TOMBSTONE != 0
    }

    /// Decode and validate the first `RECORD_HEADER_SIZE` bytes.
    pub fn decode(bytes: &[u8], expect: &RecordExpect) -> Result<RecordHeader, HeaderError> {
        let prefix = header_prefix(bytes, RECORD_HEADER_SIZE)?;
        let Ok(header) = RecordHeader::read_from_bytes(prefix) else {
            unreachable!("prefix has the exact size of the header");
        };
        if header.magic.get() != RECORD_MAGIC {
            return Err(HeaderError::BadMagic { found: header.magic.get() });
        }
        if header.version.get() != FORMAT_VERSION {
            return Err(HeaderError::BadVersion { found: header.version.get() });
        }
        let actual = header.checksum_compute();
        if header.checksum.get() != actual {
            return Err(HeaderError::ChecksumMismatch { expected: header.checksum.get(), actual });
        }
        if header.cluster.get() != expect.cluster {
            return Err(HeaderError::WrongCluster { found: header.cluster.get() });
        }
        if header.group.get() != expect.group {
            return Err(HeaderError::WrongGroup { found: header.group.get() });
        }
        if header.reserved != [0; 36] {
            return Err(HeaderError::ReservedNonZero);
        }
        if header.flags.get() & !FLAGS_KNOWN != 0 {
            return Err(HeaderError::UnknownFlags { flags: header.flags.get() });
        }
        let length = header.data_length.get();
        if length > expect.data_length_max {
            return Err(HeaderError::LengthOutOfBounds { length, max: expect.data_length_max });
        }
        if header.tombstone() && (length != 0 || header.data_crc32c.get() != 0) {
            return Err(HeaderError::TombstoneWithData {
                length,
                crc32c: header.data_crc32c.get(),
            });
        }
        let sequence = header.sequence.get();
        if !(1..=GENERATION_MAX).contains(&position_generation(sequence)) {
            return Err(HeaderError::SequenceInvalid { sequence });
        }
        let position = header.position.get();
        if !(1..=GENERATION_MAX).contains(&position_generation(position)) {
            return Err(HeaderError::PositionInvalid { position });
        }
        Ok(header)
    }
}

/// Where records are encoded: a `Vec` (tests, tools) or a batch's run of
/// write pieces (`store.rs`).
pub trait RecordSink {
    fn put(&mut self, bytes: &[u8]);
    fn put_zeros(&mut self, count: usize);
}

impl RecordSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn put_zeros(&mut self, count: usize) {
        self.resize(self.len() + count, 0);
    }
}

/// Append a whole record (header, data, zero padding) to `out`.
pub fn encode_record(out: &mut impl RecordSink, header: &RecordHeader, data: &[u8]) {
    assert_eq!(header.data_length.get() as usize, data.len());
    let size = record_size(data.len() as u32) as usize;
    assert!(size.is_multiple_of(SECTOR_SIZE));
    assert!(size >= RECORD_HEADER_SIZE + data.len());
    out.put(header.as_bytes());
    out.put(data);
    out.put_zeros(size - RECORD_HEADER_SIZE - data.len());
}

/// What a segment header must match besides its own checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentExpect {
    pub cluster: u128,
    pub group: u32,
    pub segment: u32,
    pub segment_size: u64,
}

impl SegmentHeader {
    pub fn new(
        expect: &SegmentExpect,
        state: SegmentState,
        generation: u64,
        copy: u8,
    ) -> SegmentHeader {
        assert!(generation > 0 && generation <= GENERATION_MAX);
        assert!((copy as usize) < SEGMENT_HEADER_COPIES);
        let mut header = SegmentHeader::new_zeroed();
        header.magic.set(SEGMENT_MAGIC);
        header.cluster.set(expect.cluster);
        header.generation.set(generation);
        header.segment_size.set(expect.segment_size);
        header.group.set(expect.group);
        header.segment.set(expect.segment);
        header.version.set(FORMAT_VERSION);
        header.state = state as u8;
        header.copy = copy;
        header.checksum.set(header.checksum_compute());
        header
    }

    fn checksum_compute(&self) -> u128 {
        checksum(&self.as_bytes()[16..])
    }

    pub fn state(&self) -> Option<SegmentState> {
        match self.state {
            1 => Some(SegmentState::Free),
            2 => Some(SegmentState::Open),
            _ => None,
        }
    }

    /// One sector holding this copy, the rest zero.
    pub fn sector(&self) -> Vec<u8> {
        let mut sector = vec![0u8; SECTOR_SIZE];
        sector[..SEGMENT_HEADER_SIZE].copy_from_slice(self.as_bytes());
        sector
    }

    /// Decode and validate copy `copy` (the first `SEGMENT_HEADER_SIZE`
    /// bytes of its sector).
    pub fn decode(
        bytes: &[u8],
        expect: &SegmentExpect,
        copy: u8,
    ) -> Result<SegmentHeader, HeaderError> {
        let prefix = header_prefix(bytes, SEGMENT_HEADER_SIZE)?;
        let Ok(header) = SegmentHeader::read_from_bytes(prefix) else {
            unreachable!("prefix has the exact size of the header");
        };
        if header.magic.get() != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic { found: header.magic.get() });
        }
        if header.version.get() != FORMAT_VERSION {
            return Err(HeaderError::BadVersion { found: header.version.get() });
        }
        let actual = header.checksum_compute();
        if header.checksum.get() != actual {
            return Err(HeaderError::ChecksumMismatch { expected: header.checksum.get(), actual });
        }
        if header.cluster.get() != expect.cluster {
            return Err(HeaderError::WrongCluster { found: header.cluster.get() });
        }
        if header.group.get() != expect.group {
            return Err(HeaderError::WrongGroup { found: header.group.get() });
        }
        if header.reserved != [0; 60] {
            return Err(HeaderError::ReservedNonZero);
        }
        if header.segment.get() != expect.segment {
            return Err(HeaderError::WrongSegment { found: header.segment.get() });
        }
        if header.segment_size.get() != expect.segment_size {
            return Err(HeaderError::WrongSegmentSize { found: header.segment_size.get() });
        }
        if header.state().is_none() {
            return Err(HeaderError::BadState { found: header.state });
        }
        if header.copy != copy {
            return Err(HeaderError::WrongCopy { found: header.copy });
        }
        let generation = header.generation.get();
        if generation == 0 || generation > GENERATION_MAX {
            return Err(HeaderError::GenerationOutOfBounds { found: generation });
        }
        Ok(header)
    }
}

fn header_prefix(bytes: &[u8], size: usize) -> Result<&[u8], HeaderError> {
    if bytes.len() < size {
        return Err(HeaderError::TooShort { length: bytes.len() });
    }
    let prefix = &bytes[..size];
    if prefix.iter().all(|&byte| byte == 0) {
        return Err(HeaderError::Zeroed);
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECT: RecordExpect = RecordExpect { cluster: 7, group: 3, data_length_max: 10_000 };
    const SEGMENT_EXPECT: SegmentExpect =
        SegmentExpect { cluster: 7, group: 3, segment: 5, segment_size: 1 << 20 };

    fn record(data: &[u8]) -> RecordHeader {
        RecordHeader::new(&EXPECT, 0xabcd, 2, position(8, 4096 * 5), position(9, 8192), data, false)
    }

    /// Re-seal after editing fields, so only the field check can fail.
    fn resealed(mut header: RecordHeader) -> Vec<u8> {
        header.checksum.set(header.checksum_compute());
        header.as_bytes().to_vec()
    }

    #[test]
    fn record_roundtrip() {
        let data = b"hello chunk";
        let header = record(data);
        let mut out = Vec::new();
        encode_record(&mut out, &header, data);
        assert_eq!(out.len(), SECTOR_SIZE);
        let decoded = RecordHeader::decode(&out, &EXPECT).expect("valid");
        assert_eq!(decoded, header);
        assert_eq!(decoded.chunk_id.get(), 0xabcd);
        assert_eq!(decoded.data_crc32c.get(), crc32c::crc32c(data));
        assert_eq!(&out[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + data.len()], data);
        assert!(out[RECORD_HEADER_SIZE + data.len()..].iter().all(|&b| b == 0));
        assert!(!decoded.tombstone());
        assert_eq!(position_generation(decoded.position.get()), 9);
        assert_eq!(position_offset(decoded.position.get()), 8192);
        assert_eq!(decoded.sequence.get(), position(8, 4096 * 5));
    }

    #[test]
    fn record_sizes() {
        assert_eq!(record_size(0), 4096);
        assert_eq!(record_size(4096 - 128), 4096);
        assert_eq!(record_size(4096 - 127), 8192);
        assert_eq!(record_size(DATA_LENGTH_MAX), (DATA_LENGTH_MAX as u64 / 4096 + 1) * 4096);
    }

    #[test]
    fn tombstone_roundtrip() {
        let header =
            RecordHeader::new(&EXPECT, 1, 0, position(1, 8192), position(1, 8192), &[], true);
        let decoded = RecordHeader::decode(header.as_bytes(), &EXPECT).expect("valid");
        assert!(decoded.tombstone());
        assert_eq!(decoded.data_length.get(), 0);
    }

    #[test]
    fn record_decode_errors() {
        let header = record(b"x");
        let bytes = header.as_bytes();
        let check = |bytes: &[u8], error: HeaderError| {
            assert_eq!(RecordHeader::decode(bytes, &EXPECT), Err(error));
        };
        check(&bytes[..127], HeaderError::TooShort { length: 127 });
        check(&[0u8; 128], HeaderError::Zeroed);

        let mut bad = header;
        bad.magic.set(1);
        check(&resealed(bad), HeaderError::BadMagic { found: 1 });

        let mut bad = header;
        bad.version.set(2);
        check(&resealed(bad), HeaderError::BadVersion { found: 2 });

        let mut flipped = bytes.to_vec();
        flipped[40] ^= 1;
        assert!(matches!(
            RecordHeader::decode(&flipped, &EXPECT),
            Err(HeaderError::ChecksumMismatch { .. })
        ));

        let mut bad = header;
        bad.cluster.set(8);
        check(&resealed(bad), HeaderError::WrongCluster { found: 8 });

        let mut bad = header;
        bad.group.set(4);
        check(&resealed(bad), HeaderError::WrongGroup { found: 4 });

        let mut bad = header;
        bad.reserved[35] = 1;
        check(&resealed(bad), HeaderError::ReservedNonZero);

        let mut bad = header;
        bad.flags.set(2);
        check(&resealed(bad), HeaderError::UnknownFlags { flags: 2 });

        let mut bad = header;
        bad.data_length.set(10_001);
        check(&resealed(bad), HeaderError::LengthOutOfBounds { length: 10_001, max: 10_000 });

        let mut bad = header;
        bad.flags.set(FLAG_TOMBSTONE);
        let crc = header.data_crc32c.get();
        check(&resealed(bad), HeaderError::TombstoneWithData { length: 1, crc32c: crc });

        let mut bad = header;
        bad.sequence.set(5);
        check(&resealed(bad), HeaderError::SequenceInvalid { sequence: 5 });

        let mut bad = header;
        bad.position.set(8192 / 4096);
        check(&resealed(bad), HeaderError::PositionInvalid { position: 2 });
    }

    #[test]
    fn segment_roundtrip_and_errors() {
        let header = SegmentHeader::new(&SEGMENT_EXPECT, SegmentState::Open, 12, 1);
        let sector = header.sector();
        assert_eq!(sector.len(), SECTOR_SIZE);
        let decoded = SegmentHeader::decode(&sector, &SEGMENT_EXPECT, 1).expect("valid");
        assert_eq!(decoded.state(), Some(SegmentState::Open));
        assert_eq!(decoded.generation.get(), 12);

        let check = |header: SegmentHeader, error: HeaderError| {
            let mut header = header;
            header.checksum.set(header.checksum_compute());
            assert_eq!(SegmentHeader::decode(header.as_bytes(), &SEGMENT_EXPECT, 1), Err(error));
        };
        assert_eq!(
            SegmentHeader::decode(&sector, &SEGMENT_EXPECT, 0),
            Err(HeaderError::WrongCopy { found: 1 })
        );
        assert_eq!(
            SegmentHeader::decode(&[0u8; 4096], &SEGMENT_EXPECT, 0),
            Err(HeaderError::Zeroed)
        );
        let mut bad = header;
        bad.magic.set(RECORD_MAGIC);
        check(bad, HeaderError::BadMagic { found: RECORD_MAGIC });
        let mut bad = header;
        bad.version.set(0);
        check(bad, HeaderError::BadVersion { found: 0 });
        let mut bad = header;
        bad.cluster.set(1);
        check(bad, HeaderError::WrongCluster { found: 1 });
        let mut bad = header;
        bad.group.set(1);
        check(bad, HeaderError::WrongGroup { found: 1 });
        let mut bad = header;
        bad.reserved[0] = 9;
        check(bad, HeaderError::ReservedNonZero);
        let mut bad = header;
        bad.segment.set(6);
        check(bad, HeaderError::WrongSegment { found: 6 });
        let mut bad = header;
        bad.segment_size.set(4096);
        check(bad, HeaderError::WrongSegmentSize { found: 4096 });
        let mut bad = header;
        bad.state = 3;
        check(bad, HeaderError::BadState { found: 3 });
        let mut bad = header;
        bad.generation.set(0);
        check(bad, HeaderError::GenerationOutOfBounds { found: 0 });
        let mut flipped = sector.clone();
        flipped[50] ^= 0x10;
        assert!(matches!(
            SegmentHeader::decode(&flipped, &SEGMENT_EXPECT, 1),
            Err(HeaderError::ChecksumMismatch { .. })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Random bytes never decode (2^-128 odds aside) and never panic.
            #[test]
            fn random_bytes_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                prop_assert!(RecordHeader::decode(&bytes, &EXPECT).is_err());
                prop_assert!(SegmentHeader::decode(&bytes, &SEGMENT_EXPECT, 0).is_err());
            }

            /// Random bytes behind a valid magic and version reach the
            /// checksum check, and fail it.
            #[test]
            fn random_bytes_with_magic_rejected(mut bytes in proptest::collection::vec(any::<u8>(), 128)) {
                bytes[16..24].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
                bytes[88..90].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
                let result = RecordHeader::decode(&bytes, &EXPECT);
                let is_checksum_mismatch = matches!(result, Err(HeaderError::ChecksumMismatch { .. }));
                prop_assert!(is_checksum_mismatch);
            }

            /// Any single flipped bit of a valid header is detected.
            #[test]
            fn bit_flip_detected(
                chunk_id in any::<u128>(),
                data in proptest::collection::vec(any::<u8>(), 0..64),
                bit in 0usize..(128 * 8),
            ) {
                let at = position(3, 4096 * 7);
                let header = RecordHeader::new(&EXPECT, chunk_id, 1, at, at, &data, false);
                let mut bytes = header.as_bytes().to_vec();
                prop_assert!(RecordHeader::decode(&bytes, &EXPECT).is_ok());
                bytes[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(RecordHeader::decode(&bytes, &EXPECT).is_err());
            }

            #[test]
            fn segment_bit_flip_detected(generation in 1u64..GENERATION_MAX, bit in 0usize..(128 * 8)) {
                let header = SegmentHeader::new(&SEGMENT_EXPECT, SegmentState::Free, generation, 0);
                let mut bytes = header.sector();
                prop_assert!(SegmentHeader::decode(&bytes, &SEGMENT_EXPECT, 0).is_ok());
                bytes[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(SegmentHeader::decode(&bytes, &SEGMENT_EXPECT, 0).is_err());
            }
        }
    }
}
