//! The WAL as the replica sees it: a ring of slots in memory, mirrored to
//! the prepare ring and the redundant header ring on disk.
//!
//! Write order per slot: the prepare first, then the header sector that
//! holds its redundant header. A slot is `durable` only when both writes
//! are done, and only durable prepares are acknowledged (PrepareOk). So at
//! restart a valid redundant header whose op is older than a torn prepare
//! proves that prepare was never acknowledged, while a valid header with an
//! unreadable prepare proves corruption of something we acknowledged.
//!
//! One write at a time per prepare slot and per header sector: writes may
//! complete out of order, and two in-flight writes of the same place could
//! leave the older bytes on disk.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::vsr::message::{Command, Header, Message, HEADER_SIZE};
use crate::vsr::storage::{Write, WriteId, Zone, SECTOR_SIZE};
use zerocopy::IntoBytes;

pub const HEADERS_PER_SECTOR: u64 = (SECTOR_SIZE / HEADER_SIZE) as u64;

#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// The op this slot holds in our log (`header.op % slots == slot`).
    pub header: Option<Header>,
    /// The prepare itself, matching `header`.
    pub message: Option<Message>,
    /// `message` is in the WAL: prepare and redundant header both durable.
    pub durable: bool,
    /// Something we may have acknowledged is unreadable here: never nack it.
    pub faulty: bool,
    /// Linked by the hash chain to the canonical head of the current view.
    pub verified: bool,
}

#[derive(Clone, Debug)]
pub enum WriteKind {
    Prepare {
        slot: u64,
        checksum: u128,
    },
    HeaderSector {
        sector: u64,
        covers: Vec<(u64, u128)>,
    },
    /// `half` 0 writes copies 0 and 1, half 1 copies 2 and 3.
    Superblock {
        sequence: u64,
        half: u8,
    },
    Checkpoint {
        op: u64,
    },
}

pub struct Journal {
    pub slot_count: u64,
    pub message_size_max: u64,
    pub slots: Vec<Slot>,
    /// What the redundant header ring should say, slot by slot.
    header_ring: Vec<Header>,
    /// Checksum of the prepare last made durable in each slot.
    prepare_on_disk: Vec<Option<u128>>,
    prepare_writing: Vec<bool>,
    prepare_dirty: Vec<bool>,
    sector_writing: Vec<bool>,
    sector_dirty: Vec<bool>,
    pub writes: BTreeMap<WriteId, WriteKind>,
    write_id_next: u64,
}

/// A reserved header: what a never-written slot holds (op = slot index).
pub fn header_reserved(cluster: u128, group: u32, slot: u64) -> Header {
    let mut header = Header::new(Command::Reserved);
    header.cluster.set(cluster);
    header.group.set(group);
    header.op.set(slot);
    header.seal(&[]);
    header
}

impl Journal {
    pub fn new(slot_count: u64, message_size_max: u64, header_ring: Vec<Header>) -> Journal {
        assert!(header_ring.len() as u64 == slot_count);
        assert!(slot_count % HEADERS_PER_SECTOR == 0);
        let sectors = (slot_count / HEADERS_PER_SECTOR) as usize;
        let slots = slot_count as usize;
        Journal {
            slot_count,
            message_size_max,
            slots: vec![Slot::default(); slots],
            header_ring,
            prepare_on_disk: vec![None; slots],
            prepare_writing: vec![false; slots],
            prepare_dirty: vec![false; slots],
            sector_writing: vec![false; sectors],
            sector_dirty: vec![false; sectors],
            writes: BTreeMap::new(),
            write_id_next: 1,
        }
    }

    pub fn slot_of(&self, op: u64) -> u64 {
        op % self.slot_count
    }

    pub fn write_id(&mut self, kind: WriteKind) -> WriteId {
        let id = WriteId(self.write_id_next);
        self.write_id_next += 1;
        self.writes.insert(id, kind);
        id
    }

    /// The slot's entry if it holds exactly `op`.
    pub fn entry(&self, op: u64) -> Option<&Slot> {
        let slot = &self.slots[self.slot_of(op) as usize];
        match &slot.header {
            Some(header) if header.op.get() == op => Some(slot),
            _ => None,
        }
    }

    pub fn header(&self, op: u64) -> Option<&Header> {
        self.entry(op).and_then(|slot| slot.header.as_ref())
    }

    pub fn message(&self, op: u64) -> Option<&Message> {
        self.entry(op).and_then(|slot| slot.message.as_ref())
    }

    pub fn has_prepare(&self, op: u64, checksum: u128) -> bool {
        self.message(op).is_some_and(|m| m.checksum() == checksum)
    }

    /// Mark the slot of `op` as holding nothing (truncation or a stale op).
    pub fn remove(&mut self, op: u64, cluster: u128, group: u32, out: &mut Vec<Write>) {
        let slot = self.slot_of(op);
        let entry = &mut self.slots[slot as usize];
        if entry.header.is_some_and(|h| h.op.get() == op) {
            *entry = Slot { faulty: false, ..Slot::default() };
            self.header_ring[slot as usize] = header_reserved(cluster, group, slot);
            self.sector_write(slot / HEADERS_PER_SECTOR, out);
        }
    }

    /// Put `header` (and maybe its prepare) into the log, replacing whatever
    /// the slot held. Writes the prepare if we have it.
    pub fn set(&mut self, header: Header, message: Option<Message>, out: &mut Vec<Write>) {
        if let Some(message) = &message {
            assert!(message.checksum() == header.checksum.get());
        }
        let slot = self.slot_of(header.op.get());
        let entry = &mut self.slots[slot as usize];
        let same = entry.header.is_some_and(|h| h.checksum == header.checksum);
        if same && entry.message.is_some() {
            return;
        }
        if !same {
            *entry = Slot::default();
        }
        entry.header = Some(header);
        let has_message = message.is_some();
        entry.message = message;
        entry.faulty = false;
        if has_message {
            self.prepare_write(slot, out);
        }
    }

    fn prepare_write(&mut self, slot: u64, out: &mut Vec<Write>) {
        let index = slot as usize;
        if self.prepare_writing[index] {
            self.prepare_dirty[index] = true;
            return;
        }
        let Some(message) = self.slots[index].message.clone() else { return };
        if self.prepare_on_disk[index] == Some(message.checksum()) {
            // Already on disk (e.g. re-set after a view change): only the
            // redundant header may need rewriting.
            self.header_ring[index] = *message.header();
            self.sector_write(slot / HEADERS_PER_SECTOR, out);
            return;
        }
        self.prepare_writing[index] = true;
        let id = self.write_id(WriteKind::Prepare { slot, checksum: message.checksum() });
        let padded = SECTOR_SIZE * message.bytes().len().div_ceil(SECTOR_SIZE);
        let mut data = Vec::with_capacity(padded);
        data.extend_from_slice(message.bytes());
        data.resize(padded, 0);
        out.push(Write {
            id,
            zone: Zone::WalPrepares,
            offset: slot * self.message_size_max,
            data: data.into(),
        });
    }

    fn sector_write(&mut self, sector: u64, out: &mut Vec<Write>) {
        let index = sector as usize;
        if self.sector_writing[index] {
            self.sector_dirty[index] = true;
            return;
        }
        self.sector_writing[index] = true;
        let first = sector * HEADERS_PER_SECTOR;
        let mut data = Vec::with_capacity(SECTOR_SIZE);
        let mut covers = Vec::new();
        for slot in first..first + HEADERS_PER_SECTOR {
            let header = &self.header_ring[slot as usize];
            data.extend_from_slice(header.as_bytes());
            covers.push((slot, header.checksum.get()));
        }
        let id = self.write_id(WriteKind::HeaderSector { sector, covers });
        out.push(Write {
            id,
            zone: Zone::WalHeaders,
            offset: sector * SECTOR_SIZE as u64,
            data: Rc::from(data),
        });
    }

    /// A prepare write is durable: record it and write its redundant header.
    pub fn prepare_done(&mut self, slot: u64, checksum: u128, out: &mut Vec<Write>) {
        let index = slot as usize;
        assert!(self.prepare_writing[index]);
        self.prepare_writing[index] = false;
        self.prepare_on_disk[index] = Some(checksum);
        if let Some(message) = &self.slots[index].message {
            if message.checksum() == checksum {
                self.header_ring[index] = *message.header();
                self.sector_write(slot / HEADERS_PER_SECTOR, out);
            }
        }
        if self.prepare_dirty[index] {
            self.prepare_dirty[index] = false;
            self.prepare_write(slot, out);
        }
    }

    /// A header sector is durable: slots whose prepare and header are both
    /// on disk become durable. Returns the ops that just became durable.
    pub fn sector_done(
        &mut self,
        sector: u64,
        covers: &[(u64, u128)],
        out: &mut Vec<Write>,
    ) -> Vec<u64> {
        let index = sector as usize;
        assert!(self.sector_writing[index]);
        self.sector_writing[index] = false;
        let mut durable = Vec::new();
        for &(slot, checksum) in covers {
            let entry = &mut self.slots[slot as usize];
            let matches = entry.message.as_ref().is_some_and(|m| m.checksum() == checksum);
            if matches && self.prepare_on_disk[slot as usize] == Some(checksum) && !entry.durable {
                entry.durable = true;
                if let Some(header) = &entry.header {
                    durable.push(header.op.get());
                }
            }
        }
        if self.sector_dirty[index] {
            self.sector_dirty[index] = false;
            self.sector_write(sector, out);
        }
        durable
    }

    /// At open: the slot's content as recovered from disk.
    pub fn recovered(&mut self, slot: u64, entry: Slot, prepare_on_disk: Option<u128>) {
        self.prepare_on_disk[slot as usize] = prepare_on_disk;
        self.slots[slot as usize] = entry;
    }

    /// At open: the redundant header the disk holds for `slot`.
    pub fn header_ring_recovered(&mut self, slot: u64, header: Header) {
        assert!(header.op.get() % self.slot_count == slot);
        self.header_ring[slot as usize] = header;
    }

    /// Rewrite the redundant header of a recovered slot whose header was
    /// lost or torn but whose prepare is intact.
    pub fn header_fix(&mut self, slot: u64, header: Header, out: &mut Vec<Write>) {
        self.header_ring[slot as usize] = header;
        self.sector_write(slot / HEADERS_PER_SECTOR, out);
    }

    pub fn debug_slot(&self, op: u64) -> String {
        let slot = self.slot_of(op) as usize;
        let sector = slot / HEADERS_PER_SECTOR as usize;
        let checksum = self.slots[slot].message.as_ref().map(|m| m.checksum());
        format!(
            "pw{}pd{}ondisk{}sw{}sd{}",
            self.prepare_writing[slot] as u8,
            self.prepare_dirty[slot] as u8,
            (self.prepare_on_disk[slot] == checksum && checksum.is_some()) as u8,
            self.sector_writing[sector] as u8,
            self.sector_dirty[sector] as u8
        )
    }
}
