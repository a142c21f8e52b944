//! Format a fresh replica, and open one from whatever its disk holds.
//!
//! Open decides, slot by slot, what the WAL proves (the decision table in
//! `slot_decide`), then finds the head of the log from two anchors: the
//! superblock's `log_view_head` and the ops prepared in `log_view` after it,
//! linked by the hash chain. A prepare that is valid but not on that chain
//! (an op of an older view that a view change replaced, or one written out
//! of order and never acknowledged) is kept only as unverified data.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::journal::{header_reserved, Journal, Slot};
use super::{view_change, Replica, Status};
use crate::vsr::client_table::ClientTable;
use crate::vsr::config::Config;
use crate::vsr::message::{header_parse, Command, Header, Message, HEADER_SIZE, OPERATION_ROOT};
use crate::vsr::state_machine::StateMachine;
use crate::vsr::storage::{ReadStorage, Zone, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use crate::vsr::superblock::{self, SuperblockState};
use zerocopy::IntoBytes;

/// Why a replica's durable state cannot be opened. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Superblock(String),
    ForeignData { what: &'static str },
    Config(&'static str),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Superblock(reason) => write!(f, "cannot open the superblock: {reason}; the data is unreadable on this replica: recover it from its peers instead of formatting it"),
            OpenError::ForeignData { what } => write!(f, "the data belongs to another {what}: check --data and the node index"),
            OpenError::Config(reason) => write!(f, "invalid configuration: {reason}"),
        }
    }
}

/// Copies that do not hold `chosen` first, then those that do.
fn copy_order(zone: &[u8], chosen: &SuperblockState) -> [u8; 4] {
    let holds = |copy: u8| {
        let at = copy as usize * SUPERBLOCK_COPY_SIZE;
        SuperblockState::decode(&zone[at..at + SUPERBLOCK_COPY_SIZE], copy)
            .is_ok_and(|s| s == *chosen)
    };
    let mut order = [0u8, 1, 2, 3];
    order.sort_by_key(|&copy| holds(copy));
    order
}

/// The root prepare (op 0): identical on every replica of a group.
pub fn root_prepare(config: &Config) -> Message {
    let mut header = Header::new(Command::Prepare);
    header.cluster.set(config.cluster);
    header.group.set(config.group);
    header.operation = OPERATION_ROOT;
    Message::new(header, &[])
}

/// The bytes of a freshly formatted replica: (zone, offset, data) to write
/// before the first open.
pub fn format<S: StateMachine>(config: &Config, state_machine: &S) -> Vec<(Zone, u64, Vec<u8>)> {
    if let Err(reason) = config.validate() {
        panic!("format with an invalid configuration: {reason}");
    }
    let root = root_prepare(config);
    let mut writes = Vec::new();
    // The WAL: reserved headers everywhere, the root in slot 0.
    let mut headers = Vec::new();
    for slot in 0..config.wal_slot_count {
        let header = if slot == 0 {
            *root.header()
        } else {
            header_reserved(config.cluster, config.group, slot)
        };
        headers.extend_from_slice(header.as_bytes());
        let mut prepare =
            if slot == 0 { root.bytes().to_vec() } else { header.as_bytes().to_vec() };
        prepare.resize(crate::vsr::storage::SECTOR_SIZE, 0);
        writes.push((Zone::WalPrepares, slot * config.message_size_max, prepare));
    }
    writes.push((Zone::WalHeaders, 0, headers));
    // The initial checkpoint: the empty state at op 0.
    let mut blob =
        super::checkpoint_blob(root.header(), state_machine, &ClientTable::new(config.clients_max));
    let checksum = crate::vsr::message::checksum(&blob);
    let size = blob.len() as u64;
    blob.resize(
        blob.len().div_ceil(crate::vsr::storage::SECTOR_SIZE) * crate::vsr::storage::SECTOR_SIZE,
        0,
    );
    writes.push((Zone::Checkpoint, 0, blob));
    let state = SuperblockState {
        sequence: 1,
        parent: 0,
        cluster: config.cluster,
        group: config.group,
        replica: config.replica,
        replica_count: config.replica_count,
        view: 0,
        log_view: 0,
        commit_max: 0,
        log_view_head_op: 0,
        log_view_head_checksum: root.checksum(),
        checkpoint_op: 0,
        checkpoint_size: size,
        checkpoint_checksum: checksum,
        checkpoint_area: 0,
        checkpoint_header: *root.header(),
    };
    let mut copies = Vec::new();
    for copy in 0..SUPERBLOCK_COPIES {
        copies.extend_from_slice(&state.encode(copy as u8));
    }
    writes.push((Zone::Superblock, 0, copies));
    writes
}

/// What one WAL slot proves after a restart.
#[derive(Debug)]
enum SlotFound {
    /// A valid prepare; `header_intact` says whether its redundant header
    /// on disk already matches (if not, it is rewritten after open).
    Prepare { message: Message, header_intact: bool },
    /// A valid header of a prepare we made durable, but the prepare is gone.
    Faulty(Header),
    /// Nothing we ever acknowledged (reserved or an older op, both intact).
    Clean,
    /// Both copies unreadable: we cannot tell what was here.
    Unknown,
}

fn slot_decide(config: &Config, slot: u64, header_bytes: &[u8], prepare_bytes: &[u8]) -> SlotFound {
    let max = config.message_size_max as usize;
    let ours = |h: &Header| {
        h.cluster.get() == config.cluster
            && h.group.get() == config.group
            && h.op.get() % config.wal_slot_count == slot
    };
    let header = header_parse(header_bytes, max).ok().filter(&ours);
    let prepare = header_parse(prepare_bytes, max).ok().filter(&ours).and_then(|h| {
        let size = h.size.get() as usize;
        Message::parse(prepare_bytes.get(..size)?, max).ok()
    });
    let is_prepare = |h: &Header| h.command() == Some(Command::Prepare);
    match (header, prepare) {
        (Some(h), Some(p)) if is_prepare(p.header()) => {
            let newer_header = h.op.get() > p.header().op.get()
                || (h.op.get() == p.header().op.get()
                    && h.checksum != p.header().checksum
                    && h.view.get() > p.header().view.get());
            if is_prepare(&h) && newer_header {
                SlotFound::Faulty(h)
            } else {
                let header_intact = h.checksum == p.header().checksum;
                SlotFound::Prepare { message: p, header_intact }
            }
        }
        (Some(h), Some(_)) if is_prepare(&h) => SlotFound::Faulty(h),
        (Some(_), Some(_)) => SlotFound::Clean,
        (None, Some(p)) if is_prepare(p.header()) => {
            SlotFound::Prepare { message: p, header_intact: false }
        }
        (None, Some(_)) => SlotFound::Clean,
        (Some(h), None) if is_prepare(&h) => SlotFound::Faulty(h),
        // Header reserved or older, prepare torn: a prepare write that was
        // never durable, so never acknowledged.
        (Some(_), None) => SlotFound::Clean,
        (None, None) => SlotFound::Unknown,
    }
}

impl<S: StateMachine> Replica<S> {
    /// Open a replica from its durable state. Never trusts a byte it read.
    pub fn open(
        config: Config,
        state_machine: S,
        storage: &mut dyn ReadStorage,
        seed: u64,
    ) -> Result<Replica<S>, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let mut zone = vec![0u8; SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE];
        storage.read(Zone::Superblock, 0, &mut zone);
        let (superblock, unanimous) = superblock::open(&zone).map_err(OpenError::Superblock)?;
        if superblock.cluster != config.cluster {
            return Err(OpenError::ForeignData { what: "cluster" });
        }
        if superblock.group != config.group || superblock.replica != config.replica {
            return Err(OpenError::ForeignData { what: "shard or replica" });
        }
        if superblock.replica_count != config.replica_count {
            return Err(OpenError::ForeignData { what: "cluster size" });
        }
        let mut replica = Replica::blank(config, state_machine, superblock, seed);
        replica.open_checkpoint(storage);
        replica.open_journal(storage);
        if !unanimous {
            // Make the chosen version durable on every copy before acting on
            // it (see `superblock::open`): until that write completes the
            // replica ignores messages and ticks, and any superblock update
            // open_status asks for is queued behind it.
            replica.superblock_repairing = true;
            replica.superblock_copy_order = copy_order(&zone, &replica.superblock);
            // The very same bytes: the chosen version's copies only grow, so
            // a torn repair can never hand the quorum to another version.
            let same = replica.superblock.clone();
            replica.superblock_write(same);
        }
        replica.open_status();
        Ok(replica)
    }

    fn blank(
        config: Config,
        state_machine: S,
        superblock: SuperblockState,
        seed: u64,
    ) -> Replica<S> {
        let slots = config.wal_slot_count;
        let ring =
            (0..slots).map(|slot| header_reserved(config.cluster, config.group, slot)).collect();
        let journal = Journal::new(slots, config.message_size_max, ring);
        let clients_max = config.clients_max;
        let mut replica = Replica {
            state_machine,
            client_table: ClientTable::new(clients_max),
            journal,
            superblock_writing: None,
            superblock_queued: false,
            superblock_repairing: false,
            superblock_copy_order: [0, 1, 2, 3],
            superblock_copies_pending: 0,
            status: Status::Normal,
            view: superblock.view,
            log_view: superblock.log_view,
            op: 0,
            commit_min: superblock.checkpoint_op,
            commit_max: superblock.commit_max.max(superblock.checkpoint_op),
            checkpoint_op: superblock.checkpoint_op,
            checkpoint_id: superblock.checkpoint_checksum,
            checkpoint_pending: None,
            tick: 0,
            tick_primary_heard: 0,
            tick_backup_heard: vec![0; config.replica_count as usize],
            tick_heartbeat_sent: 0,
            tick_view_change_started: 0,
            tick_repair_last: 0,
            prng_state: seed,
            boot_nonce: 0,
            pipeline: VecDeque::new(),
            request_queue: VecDeque::new(),
            timestamp_last: 0,
            realtime_ns: 0,
            ok_sent_op: 0,
            reads: VecDeque::new(),
            read_round: 0,
            read_round_confirmed: 0,
            read_round_pongs: BTreeSet::new(),
            read_round_sent_tick: 0,
            view_change: view_change::ViewChangeState::default(),
            sync: super::repair::SyncState::default(),
            actions: Vec::new(),
            events: Vec::new(),
            dropped: BTreeMap::new(),
            superblock,
            config,
        };
        replica.boot_nonce = (replica.random() as u128) << 64 | replica.random() as u128;
        replica
    }

    /// Load the checkpoint the superblock names; if it is unreadable, the
    /// replica must fetch one from a peer before it can commit (state sync).
    fn open_checkpoint(&mut self, storage: &mut dyn ReadStorage) {
        let size = self.superblock.checkpoint_size as usize;
        let sector = crate::vsr::storage::SECTOR_SIZE;
        let valid_size = size > 0 && size as u64 <= self.config.checkpoint_size_max;
        let mut blob = vec![0u8; if valid_size { size.div_ceil(sector) * sector } else { 0 }];
        if valid_size {
            let offset = self.superblock.checkpoint_area as u64 * self.config.checkpoint_size_max;
            storage.read(Zone::Checkpoint, offset, &mut blob);
            blob.truncate(size);
        }
        let intact = valid_size
            && crate::vsr::message::checksum(&blob) == self.superblock.checkpoint_checksum;
        if intact && self.checkpoint_install_state(&blob).is_ok() {
            self.sync.blob_current = Some(blob.into());
            return;
        }
        // Our checkpoint is gone: we know its op and checksum, so ask peers.
        self.sync.needed_checkpoint =
            Some((self.superblock.checkpoint_op, self.superblock.checkpoint_checksum));
        self.sync.target =
            Some((self.superblock.checkpoint_op, self.superblock.checkpoint_checksum));
        self.sync.peer_checkpoint =
            (self.superblock.checkpoint_op, self.superblock.checkpoint_checksum);
    }

    pub(crate) fn checkpoint_install_state(&mut self, blob: &[u8]) -> Result<Header, &'static str> {
        let (header, state_range, table) = self.checkpoint_decode(blob)?;
        self.state_machine.restore(&blob[state_range])?;
        self.client_table = table;
        Ok(header)
    }

    fn open_journal(&mut self, storage: &mut dyn ReadStorage) {
        let slots = self.config.wal_slot_count;
        let mut headers = vec![0u8; (slots * HEADER_SIZE as u64) as usize];
        storage.read(Zone::WalHeaders, 0, &mut headers);
        let mut found = Vec::with_capacity(slots as usize);
        let mut prepare = vec![0u8; self.config.message_size_max as usize];
        for slot in 0..slots {
            storage.read(Zone::WalPrepares, slot * self.config.message_size_max, &mut prepare);
            let header_bytes =
                &headers[slot as usize * HEADER_SIZE..(slot as usize + 1) * HEADER_SIZE];
            found.push(slot_decide(&self.config, slot, header_bytes, &prepare));
            // The in-memory header ring starts as what the disk holds: the
            // next header-sector write rewrites 16 slots at once and must not
            // erase a durable header (the proof that a prepare we acknowledged
            // went missing) with a blank one.
            let max = self.config.message_size_max as usize;
            if let Ok(header) = header_parse(header_bytes, max) {
                let ours = header.cluster.get() == self.config.cluster
                    && header.group.get() == self.config.group
                    && header.op.get() % slots == slot;
                if ours {
                    self.journal.header_ring_recovered(slot, header);
                }
            }
        }
        self.journal_rebuild(found);
    }

    fn journal_rebuild(&mut self, found: Vec<SlotFound>) {
        let checkpoint_op = self.superblock.checkpoint_op;
        let slots = self.config.wal_slot_count;
        let mut writes = Vec::new();
        for (slot, what) in found.into_iter().enumerate() {
            let slot = slot as u64;
            // The op this slot may hold that matters: in (checkpoint, checkpoint + slots].
            let candidate =
                checkpoint_op + 1 + (slot + slots - (checkpoint_op + 1) % slots) % slots;
            match what {
                SlotFound::Prepare { message, header_intact } => {
                    let header = *message.header();
                    let op = header.op.get();
                    // The checkpoint op itself is kept as the chain's anchor.
                    let anchor = op == checkpoint_op
                        && message.checksum() == self.superblock.checkpoint_header.checksum.get();
                    if op > checkpoint_op || anchor {
                        let checksum = message.checksum();
                        let entry = Slot {
                            header: Some(header),
                            message: Some(message),
                            durable: true,
                            faulty: false,
                            verified: false,
                        };
                        self.journal.recovered(slot, entry, Some(checksum));
                        if !header_intact {
                            self.journal.header_fix(slot, header, &mut writes);
                        }
                    }
                }
                SlotFound::Faulty(header) => {
                    if header.op.get() > checkpoint_op {
                        self.journal.recovered(
                            slot,
                            Slot {
                                header: Some(header),
                                message: None,
                                durable: false,
                                faulty: true,
                                verified: false,
                            },
                            None,
                        );
                    }
                }
                SlotFound::Clean => {}
                SlotFound::Unknown => {
                    self.journal.recovered(slot, Slot { faulty: true, ..Slot::default() }, None);
                    self.view_change.unknown_slots.push(candidate);
                }
            }
        }
        // Redundant headers of intact prepares are rewritten lazily (the
        // writes go out with the first actions). They are safe to lose.
        self.write(writes);
        self.journal_anchor();
    }

    /// Find the head from the anchors and verify the chain below it.
    fn journal_anchor(&mut self) {
        let sb = self.superblock.clone();
        let anchor_op = sb.log_view_head_op.max(sb.checkpoint_op);
        let anchor_checksum = if sb.log_view_head_op >= sb.checkpoint_op {
            sb.log_view_head_checksum
        } else {
            sb.checkpoint_header.checksum.get()
        };
        // Ops above the anchor count only if prepared in log_view and chained.
        let mut head = anchor_op;
        let mut head_checksum = anchor_checksum;
        loop {
            let next = head + 1;
            let Some(h) = self.journal.header(next).copied() else { break };
            if h.parent.get() != head_checksum
                || h.view.get() != sb.log_view
                || next > self.checkpoint_op + self.config.wal_slot_count
            {
                break;
            }
            head = next;
            head_checksum = h.checksum.get();
        }
        // Everything above the head is stale: never acknowledged.
        let mut writes = Vec::new();
        for op in head + 1..=self.checkpoint_op + self.config.wal_slot_count {
            let stale = self.journal.header(op).is_some();
            if stale {
                let faulty = self.journal.entry(op).is_some_and(|s| s.faulty);
                self.journal.remove(op, self.config.cluster, self.config.group, &mut writes);
                if faulty {
                    // A faulty slot above the head might be a newer op.
                    self.view_change.unknown_slots.push(op);
                }
            }
        }
        self.write(writes);
        self.op = head;
        self.view_change.head_checksum = head_checksum;
        // The WAL may hold another op at the head's number (the canonical
        // one's write was lost at the crash): that one is stale, a hole.
        let head_is_canonical = self.journal.header(head).map(|h| h.checksum.get());
        match head_is_canonical {
            Some(checksum) if checksum == head_checksum => {
                if let Some(slot) = self.slot_mut(head) {
                    slot.verified = true;
                }
                self.chain_verify_down(head);
            }
            Some(_) => {
                let mut writes = Vec::new();
                self.journal.remove(head, self.config.cluster, self.config.group, &mut writes);
                self.write(writes);
            }
            None => {}
        }
        // The checkpoint op itself is committed and its header is in the
        // superblock: the chain's anchor even if its WAL slot is unreadable.
        if self.journal.header(sb.checkpoint_op).is_none()
            && self.op < sb.checkpoint_op + self.config.wal_slot_count
        {
            let mut writes = Vec::new();
            self.journal.set(sb.checkpoint_header, None, &mut writes);
            assert!(writes.is_empty());
        }
        if let Some(slot) = self.slot_mut(sb.checkpoint_op) {
            slot.verified =
                slot.header.is_some_and(|h| h.checksum == sb.checkpoint_header.checksum);
        }
    }

    fn open_status(&mut self) {
        let head_uncertain = self.view_change.unknown_slots.iter().any(|&op| op > self.op);
        self.view_change.unknown_slots.clear();
        self.commit_journal();
        if head_uncertain && self.config.replica_count > 1 {
            self.status = Status::RecoveringHead;
        } else if self.config.replica_count == 1 {
            // A lone replica is its own quorum: start a fresh view so a torn
            // op cannot share a view with a new op of the same number.
            self.view_change_start(self.view + 1);
        } else if self.view == self.log_view && !self.is_primary() {
            self.status = Status::Normal;
            self.ok_sent_op = self.commit_min;
        } else {
            // A restarted primary never resumes its view: it may have lost
            // prepares it had already sent (see ARCHITECTURE.md).
            let view = if self.is_primary() && self.view == self.log_view {
                self.view + 1
            } else {
                self.view
            };
            self.view_change_start(view);
        }
    }
}
