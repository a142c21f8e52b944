//! Parsing a piece of a segment into records: the one parser recovery and
//! compaction share, so both see exactly the same records on the same bytes
//! (compaction's tombstone bookkeeping relies on that).
//!
//! A sector starts a record when its header is valid *and* names this
//! segment, this fill's generation and this very offset. Otherwise the sector
//! is reported invalid and the parse moves on by one sector (resync): a
//! rotten header costs its own record only. Data checksums are left to the
//! caller, who gets the data slice.

use super::format::{
    position_generation, position_offset, record_size, HeaderError, RecordExpect, RecordHeader,
};
use super::SECTOR_SIZE_U64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanContext {
    pub expect: RecordExpect,
    pub segment: u32,
    pub generation: u64,
    pub segment_size: u64,
}

/// Why a sector does not start a record of the fill being scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    Header(HeaderError),
    /// A valid header written for another segment (misdirected).
    WrongSegment {
        found: u32,
    },
    /// A valid header of another fill: stale bytes from before the segment
    /// was reused.
    WrongGeneration {
        found: u64,
    },
    /// A valid header of this fill written for another offset (misdirected).
    Misplaced {
        found_offset: u64,
    },
    /// A valid header whose record would run past the segment's end.
    BeyondSegment,
    /// The driver could not read these bytes.
    Unreadable,
}

pub(crate) enum ScanItem<'a> {
    Record { offset: u64, header: RecordHeader, data: &'a [u8] },
    Invalid { offset: u64, error: ScanError },
}

/// Parse `piece` (read at `piece_offset`) item by item. `visit` returns
/// false to stop before consuming the item it was given. Returns the offset
/// of the first byte not consumed: where the next read must start (a record
/// cut by the piece's end is read again whole).
pub(crate) fn scan_piece<'a>(
    piece: &'a [u8],
    piece_offset: u64,
    context: &ScanContext,
    mut visit: impl FnMut(ScanItem<'a>) -> bool,
) -> u64 {
    assert!(piece_offset.is_multiple_of(SECTOR_SIZE_U64));
    assert!(piece_offset + piece.len() as u64 <= context.segment_size);
    let sector = SECTOR_SIZE_U64 as usize;
    let mut position = 0usize;
    while position + sector <= piece.len() {
        let offset = piece_offset + position as u64;
        let item = match record_at(&piece[position..position + sector], offset, context) {
            Ok(header) => {
                let size = record_size(header.data_length.get()) as usize;
                if position + size > piece.len() {
                    break;
                }
                let data_start = position + super::format::RECORD_HEADER_SIZE;
                let data = &piece[data_start..data_start + header.data_length.get() as usize];
                ScanItem::Record { offset, header, data }
            }
            Err(error) => ScanItem::Invalid { offset, error },
        };
        let advance = match &item {
            ScanItem::Record { header, .. } => record_size(header.data_length.get()) as usize,
            ScanItem::Invalid { .. } => sector,
        };
        if !visit(item) {
            break;
        }
        position += advance;
    }
    piece_offset + position as u64
}

/// The header in `sector` if it starts a record of this fill at `offset`.
fn record_at(sector: &[u8], offset: u64, context: &ScanContext) -> Result<RecordHeader, ScanError> {
    let header = RecordHeader::decode(sector, &context.expect).map_err(ScanError::Header)?;
    if header.segment.get() != context.segment {
        return Err(ScanError::WrongSegment { found: header.segment.get() });
    }
    let position = header.position.get();
    if position_generation(position) != context.generation {
        return Err(ScanError::WrongGeneration { found: position_generation(position) });
    }
    if position_offset(position) != offset {
        return Err(ScanError::Misplaced { found_offset: position_offset(position) });
    }
    if offset + record_size(header.data_length.get()) > context.segment_size {
        return Err(ScanError::BeyondSegment);
    }
    Ok(header)
}
