//! The superblock: the small root of a replica's durable state, kept in
//! `SUPERBLOCK_COPIES` copies of one sector each.
//!
//! Each copy carries a `sequence` (monotonic) and the checksum of the previous
//! version (`parent`). The copy index is stored outside the checksum so all
//! copies of one version share a checksum. Open takes the newest version that
//! a quorum of copies (2 of 4) agrees on: not simply the highest sequence,
//! because a torn write can leave one copy of a version that was never made
//! durable, and a misdirected read could hide the newest copy.

use crate::vsr::message::{checksum, Header, HEADER_SIZE};
use crate::vsr::storage::{SECTOR_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use zerocopy::{FromBytes, IntoBytes};

const MAGIC: [u8; 8] = *b"TOASTYSB";
const FORMAT_VERSION: u16 = 1;
/// Recorded so a future change of checksum is detected, never guessed.
const CHECKSUM_ALGORITHM_XXH3_128: u8 = 1;
const QUORUM_OPEN: usize = 2;

const _: () = assert!(SUPERBLOCK_COPY_SIZE == SECTOR_SIZE);
const _: () = assert!(QUORUM_OPEN * 2 == SUPERBLOCK_COPIES);

/// The replica state that must survive a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperblockState {
    pub sequence: u64,
    pub parent: u128,
    pub cluster: u128,
    pub group: u32,
    pub replica: u8,
    pub replica_count: u8,
    /// Highest view this replica has taken part in: never goes back.
    pub view: u32,
    /// Last view in which this replica's log was installed as canonical.
    pub log_view: u32,
    /// Highest op this replica executed: replayed from the WAL at restart.
    /// (Never a commit number merely heard of: see `superblock_update`.)
    pub commit_max: u64,
    /// Head of the canonical log when `log_view` was installed. On restart
    /// the replica claims at least this head even if its WAL lost entries,
    /// so it can never present a shorter log under a newer log_view.
    pub log_view_head_op: u64,
    pub log_view_head_checksum: u128,
    pub checkpoint_op: u64,
    pub checkpoint_size: u64,
    pub checkpoint_checksum: u128,
    pub checkpoint_area: u8,
    /// The prepare header at `checkpoint_op`: the anchor of the hash chain
    /// for the ops after the checkpoint.
    pub checkpoint_header: Header,
}

impl SuperblockState {
    pub fn checksum(&self) -> u128 {
        let bytes = self.encode(0);
        u128::from_le_bytes(bytes[0..16].try_into().unwrap_or([0; 16]))
    }

    /// One sector for copy `copy`.
    pub fn encode(&self, copy: u8) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_COPY_SIZE];
        b[24..32].copy_from_slice(&MAGIC);
        b[32..34].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[34] = CHECKSUM_ALGORITHM_XXH3_128;
        b[40..48].copy_from_slice(&self.sequence.to_le_bytes());
        b[48..64].copy_from_slice(&self.parent.to_le_bytes());
        b[64..80].copy_from_slice(&self.cluster.to_le_bytes());
        b[80..84].copy_from_slice(&self.group.to_le_bytes());
        b[84] = self.replica;
        b[85] = self.replica_count;
        b[86] = self.checkpoint_area;
        b[88..92].copy_from_slice(&self.view.to_le_bytes());
        b[92..96].copy_from_slice(&self.log_view.to_le_bytes());
        b[96..104].copy_from_slice(&self.commit_max.to_le_bytes());
        b[104..112].copy_from_slice(&self.log_view_head_op.to_le_bytes());
        b[112..128].copy_from_slice(&self.log_view_head_checksum.to_le_bytes());
        b[128..136].copy_from_slice(&self.checkpoint_op.to_le_bytes());
        b[136..144].copy_from_slice(&self.checkpoint_size.to_le_bytes());
        b[144..160].copy_from_slice(&self.checkpoint_checksum.to_le_bytes());
        b[160..160 + HEADER_SIZE].copy_from_slice(self.checkpoint_header.as_bytes());
        let sum = checksum(&b[24..]);
        b[0..16].copy_from_slice(&sum.to_le_bytes());
        b[16] = copy;
        b
    }

    /// Decode one copy; `Err` says why it cannot be trusted.
    pub fn decode(b: &[u8], copy_expected: u8) -> Result<SuperblockState, &'static str> {
        if b.len() != SUPERBLOCK_COPY_SIZE {
            return Err("wrong length");
        }
        let sum = u128::from_le_bytes(field(b, 0));
        if sum != checksum(&b[24..]) {
            return Err("checksum mismatch");
        }
        if b[24..32] != MAGIC {
            return Err("not a toasty superblock (magic)");
        }
        if u16::from_le_bytes(field(b, 32)) != FORMAT_VERSION
            || b[34] != CHECKSUM_ALGORITHM_XXH3_128
        {
            return Err("unsupported superblock format version");
        }
        if b[17..24] != [0u8; 7] {
            return Err("padding after the copy index not zero");
        }
        if b[16] != copy_expected {
            return Err("copy index mismatch (misdirected write or read)");
        }
        let (checkpoint_header, _) =
            Header::read_from_prefix(&b[160..]).map_err(|_| "short checkpoint header")?;
        Ok(SuperblockState {
            sequence: u64::from_le_bytes(field(b, 40)),
            parent: u128::from_le_bytes(field(b, 48)),
            cluster: u128::from_le_bytes(field(b, 64)),
            group: u32::from_le_bytes(field(b, 80)),
            replica: b[84],
            replica_count: b[85],
            checkpoint_area: b[86],
            view: u32::from_le_bytes(field(b, 88)),
            log_view: u32::from_le_bytes(field(b, 92)),
            commit_max: u64::from_le_bytes(field(b, 96)),
            log_view_head_op: u64::from_le_bytes(field(b, 104)),
            log_view_head_checksum: u128::from_le_bytes(field(b, 112)),
            checkpoint_op: u64::from_le_bytes(field(b, 128)),
            checkpoint_size: u64::from_le_bytes(field(b, 136)),
            checkpoint_checksum: u128::from_le_bytes(field(b, 144)),
            checkpoint_header,
        })
    }

    /// The next version: sequence + 1, chained to this one.
    pub fn successor(&self) -> SuperblockState {
        SuperblockState { sequence: self.sequence + 1, parent: self.checksum(), ..self.clone() }
    }
}

fn field<const N: usize>(b: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[offset..offset + N]);
    out
}

/// Pick the newest version held by a quorum of copies. `zone` holds all
/// copies. Returns the state and whether every copy holds it: if not, the
/// caller must rewrite the copies (with this very state) before acting on
/// it. Otherwise a crash during the next write could leave a quorum of an
/// *older* version (new copy, the chosen version once, an older version
/// twice) and the replica
/// would go back in time.
pub fn open(zone: &[u8]) -> Result<(SuperblockState, bool), String> {
    assert!(zone.len() == SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE);
    let mut valid: Vec<SuperblockState> = Vec::new();
    let mut reasons = Vec::new();
    for copy in 0..SUPERBLOCK_COPIES {
        let bytes = &zone[copy * SUPERBLOCK_COPY_SIZE..(copy + 1) * SUPERBLOCK_COPY_SIZE];
        match SuperblockState::decode(bytes, copy as u8) {
            Ok(state) => valid.push(state),
            Err(reason) => reasons.push(format!("copy {copy}: {reason}")),
        }
    }
    let mut best: Option<SuperblockState> = None;
    for candidate in &valid {
        let votes = valid.iter().filter(|other| *other == candidate).count();
        if votes < QUORUM_OPEN {
            continue;
        }
        if best.as_ref().is_none_or(|b| candidate.sequence > b.sequence) {
            best = Some(candidate.clone());
        }
    }
    let unanimous = best
        .as_ref()
        .is_some_and(|b| valid.len() == SUPERBLOCK_COPIES && valid.iter().all(|v| v == b));
    best.map(|b| (b, unanimous)).ok_or_else(|| {
        format!(
            "superblock: no version is held by {QUORUM_OPEN} of {SUPERBLOCK_COPIES} copies ({})",
            if reasons.is_empty() { "copies disagree".to_string() } else { reasons.join("; ") }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::message::Command;

    fn state(sequence: u64) -> SuperblockState {
        SuperblockState {
            sequence,
            parent: 7,
            cluster: 99,
            group: 1,
            replica: 2,
            replica_count: 3,
            view: 5,
            log_view: 4,
            commit_max: 100,
            log_view_head_op: 103,
            log_view_head_checksum: 0xabc,
            checkpoint_op: 64,
            checkpoint_size: 4096,
            checkpoint_checksum: 0xdef,
            checkpoint_area: 1,
            checkpoint_header: Header::new(Command::Prepare),
        }
    }

    fn zone(copies: &[SuperblockState]) -> Vec<u8> {
        let mut z = Vec::new();
        for (i, s) in copies.iter().enumerate() {
            z.extend_from_slice(&s.encode(i as u8));
        }
        z
    }

    #[test]
    fn roundtrip_and_quorum() {
        let s = state(3);
        let z = zone(&[s.clone(), s.clone(), s.clone(), s.clone()]);
        assert_eq!(open(&z), Ok((s, true)));
    }

    #[test]
    fn newest_needs_quorum() {
        let old = state(3);
        let new = old.successor();
        // One torn new copy: the old version wins.
        let z = zone(&[new.clone(), old.clone(), old.clone(), old.clone()]);
        assert_eq!(open(&z).map(|(s, unanimous)| (s.sequence, unanimous)), Ok((3, false)));
        // Two new copies: the new version wins.
        let z = zone(&[new.clone(), new.clone(), old.clone(), old.clone()]);
        assert_eq!(open(&z).map(|(s, unanimous)| (s.sequence, unanimous)), Ok((4, false)));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let s = state(9);
        let copy = s.encode(0);
        for bit in 0..copy.len() * 8 {
            let mut bad = copy.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SuperblockState::decode(&bad, 0).is_err(), "bit {bit} undetected");
        }
    }

    #[test]
    fn misdirected_copy_is_rejected() {
        let s = state(1);
        assert_eq!(
            SuperblockState::decode(&s.encode(1), 0),
            Err("copy index mismatch (misdirected write or read)")
        );
    }

    #[test]
    fn no_quorum_is_an_error() {
        let a = state(1);
        let b = state(2);
        let mut z = zone(&[a.clone(), b.clone(), a.clone(), b.clone()]);
        assert!(open(&z).is_ok());
        z[0] ^= 1;
        z[SUPERBLOCK_COPY_SIZE] ^= 1;
        let error = open(&z).unwrap_err();
        assert!(error.contains("no version"), "{error}");
    }
}
