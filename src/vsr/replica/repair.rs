//! Repair of missing or corrupt prepares (by op and checksum, following the
//! hash chain down from a trusted head), and state sync: a replica that fell
//! behind the peers' WAL rings installs a peer's checkpoint instead.

use std::rc::Rc;

use super::{Event, Replica, Status, Target, WriteKind};
use crate::vsr::message::{Command, Header, Message, HEADER_SIZE};
use crate::vsr::state_machine::StateMachine;
use crate::vsr::storage::{Write, Zone, SECTOR_SIZE};

/// Requests for missing prepares sent per repair round: bounds the traffic
/// a lagging replica can cause.
const REPAIR_REQUESTS_MAX: usize = 8;

#[derive(Default)]
pub struct SyncState {
    /// Our own checkpoint was unreadable at open: the state machine is not
    /// valid until we install a checkpoint at least this new.
    pub needed_checkpoint: Option<(u64, u128)>,
    /// Checkpoint (op, checksum) being fetched.
    pub target: Option<(u64, u128)>,
    pub buffer: Vec<u8>,
    pub total: u64,
    /// Installed in memory, being written (blob then superblock).
    pub installing: Option<SyncInstall>,
    /// Newest checkpoint a peer told us about.
    pub peer_checkpoint: (u64, u128),
    pub tick_progress: u64,
    /// Last tick a checkpoint piece arrived: a fetch that stalls is dropped
    /// (and retried against the newest checkpoint a peer announced).
    pub tick_piece: u64,
    pub commit_min_seen: u64,
    /// Primary's head (op, checksum) from its heartbeat: what to fetch next.
    /// Only valid in the view it was heard in: a replayed prepare of an
    /// older view must never be taken as the current head.
    pub head_target: Option<(u32, u64, u128)>,
    /// The latest durable checkpoint's bytes, served to peers that sync.
    pub blob_current: Option<Rc<[u8]>>,
}

pub struct SyncInstall {
    pub op: u64,
    pub checksum: u128,
    pub blob: Rc<[u8]>,
    pub area: u8,
    pub header: Header,
    pub blob_durable: bool,
}

impl<S: StateMachine> Replica<S> {
    pub(crate) fn drop_message_public(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }

    /// Called every `tick_repair` ticks.
    pub(crate) fn repair(&mut self) {
        if self.config.replica_count == 1 {
            return;
        }
        self.sync_maybe_start();
        if self.sync.target.is_some() {
            return self.sync_request();
        }
        if self.status == Status::RecoveringHead {
            return;
        }
        let mut requested = 0;
        let high = self.op.min(self.commit_min + self.config.wal_slot_count);
        for op in (self.commit_min + 1..=high).rev() {
            if requested == REPAIR_REQUESTS_MAX {
                break;
            }
            let Some(checksum) = self.expected_checksum(op) else { continue };
            if self.journal.has_prepare(op, checksum) {
                continue;
            }
            self.repair_request(op, checksum);
            requested += 1;
        }
        if let Some((_, op, checksum)) = self.sync.head_target.filter(|t| t.0 == self.view) {
            if op > self.op && requested < REPAIR_REQUESTS_MAX {
                self.repair_request(op, checksum);
            }
        }
    }

    fn repair_request(&mut self, op: u64, checksum: u128) {
        let mut header = self.header_base(Command::RequestPrepare);
        header.op.set(op);
        header.context.set(checksum);
        let message = Message::new(header, &[]);
        if self.status == Status::Normal && !self.is_primary() && self.random() % 2 == 0 {
            let primary = self.primary_index();
            self.send(Target::Replica(primary), message);
        } else {
            self.send_to_others(&message);
        }
    }

    pub(crate) fn on_request_prepare(&mut self, header: &Header) {
        let op = header.op.get();
        let checksum = header.context.get();
        if let Some(message) =
            self.journal.message(op).filter(|m| m.checksum() == checksum).cloned()
        {
            self.send(Target::Replica(header.replica), message);
        }
    }

    /// A prepare we asked for (or one the chain says we need). Returns true
    /// if it was taken as a repair.
    pub(crate) fn repair_accept(&mut self, message: &Message) -> bool {
        let op = message.header().op.get();
        let checksum = message.checksum();
        if op <= self.commit_min || self.status == Status::RecoveringHead {
            return false;
        }
        let expected = self.expected_checksum(op) == Some(checksum);
        let head_target = self.sync.head_target == Some((self.view, op, checksum))
            && self.status == Status::Normal
            && op > self.op;
        if head_target {
            self.sync.head_target = None;
            self.journal_insert_verified(message.clone());
            self.after_repair();
            return true;
        }
        if !expected || self.journal.has_prepare(op, checksum) || op > self.op {
            return false;
        }
        let mut writes = Vec::new();
        self.journal.set(*message.header(), Some(message.clone()), &mut writes);
        if let Some(slot) = self.slot_mut(op) {
            slot.verified = true;
        }
        self.write(writes);
        self.chain_verify_down(op);
        self.repair_chain_step(op);
        self.after_repair();
        true
    }

    /// Ask at once for the next missing prepare below `op` whose checksum
    /// the chain now names, instead of at the next repair tick: the walk
    /// down the hash chain learns one checksum per prepare received, so
    /// waiting a tick per op made a replica 800 ops behind take 80 s to
    /// catch up on real 10 ms ticks (tests/cluster.rs found it).
    fn repair_chain_step(&mut self, op: u64) {
        let mut below = op - 1;
        while below > self.commit_min {
            match self.expected_checksum(below) {
                Some(checksum) if self.journal.has_prepare(below, checksum) => below -= 1,
                Some(checksum) => return self.repair_request(below, checksum),
                None => return,
            }
        }
    }

    fn after_repair(&mut self) {
        match self.status {
            Status::ViewChange => self.view_change_try_complete(),
            Status::Normal => {
                self.send_prepare_oks();
                self.commit_journal();
            }
            Status::RecoveringHead => {}
        }
    }

    /// Remember what peers say about their checkpoints; two replicas with
    /// the same checkpoint op and different ids have diverged: a bug.
    pub(crate) fn checkpoint_seen(&mut self, op: u64, id: u128) {
        if op == self.checkpoint_op
            && id != self.checkpoint_id
            && self.sync.needed_checkpoint.is_none()
            && op > 0
        {
            panic!(
                "checkpoint divergence at op {op}: ours {:x}, a peer's {id:x}",
                self.checkpoint_id
            );
        }
        if op > self.sync.peer_checkpoint.0 {
            self.sync.peer_checkpoint = (op, id);
        }
    }

    pub(crate) fn commit_heard_head(&mut self, op: u64, checksum: u128) {
        if op > self.op && checksum != 0 {
            self.sync.head_target = Some((self.view, op, checksum));
        }
    }

    fn sync_maybe_start(&mut self) {
        if self.sync.target.is_some() || self.sync.installing.is_some() {
            return;
        }
        if self.checkpoint_pending.is_some() {
            return;
        }
        if self.status == Status::Normal && self.is_primary() {
            return; // The primary holds the canonical log: it never syncs.
        }
        if let Some(needed) = self.sync.needed_checkpoint {
            // Our own checkpoint is unreadable: fetch it (or a newer one)
            // again whenever no fetch is under way.
            self.sync.tick_piece = self.tick;
            self.sync.target = Some(needed.max(self.sync.peer_checkpoint));
            return;
        }
        if self.commit_min != self.sync.commit_min_seen || self.commit_min >= self.commit_max {
            self.sync.commit_min_seen = self.commit_min;
            self.sync.tick_progress = self.tick;
            return;
        }
        let stuck = self.tick >= self.sync.tick_progress + self.config.tick_sync_stuck;
        let (peer_op, peer_id) = self.sync.peer_checkpoint;
        if stuck && peer_op > self.commit_min {
            self.sync.tick_piece = self.tick;
            self.sync.target = Some((peer_op, peer_id));
            self.sync.buffer.clear();
            self.sync.total = 0;
        }
    }

    fn sync_request(&mut self) {
        let Some((op, checksum)) = self.sync.target else { return };
        if self.tick > self.sync.tick_piece + 4 * self.config.tick_sync_stuck {
            self.sync.tick_piece = self.tick;
            self.sync.target = None;
            self.sync.buffer.clear();
            return;
        }
        let mut header = self.header_base(Command::RequestCheckpoint);
        header.checkpoint_op.set(op);
        header.context.set(checksum);
        header.op.set(self.sync.buffer.len() as u64);
        let message = Message::new(header, &[]);
        self.send_to_others(&message);
    }

    pub(crate) fn on_request_checkpoint(&mut self, header: &Header) {
        let Some(blob) = self.sync.blob_current.clone() else { return };
        let wanted_op = header.checkpoint_op.get();
        let any_newer = self.sync.needed_checkpoint.is_none() && wanted_op <= self.checkpoint_op;
        if wanted_op != self.checkpoint_op && !any_newer {
            return;
        }
        let offset = header.op.get();
        if offset > blob.len() as u64 {
            return;
        }
        let piece =
            (self.config.message_size_max as usize - HEADER_SIZE).min(blob.len() - offset as usize);
        let mut reply = self.header_base(Command::CheckpointChunk);
        reply.op.set(offset);
        reply.commit.set(blob.len() as u64);
        reply.context.set(self.checkpoint_id);
        let message = Message::new(reply, &blob[offset as usize..offset as usize + piece]);
        self.send(Target::Replica(header.replica), message);
    }

    pub(crate) fn on_checkpoint_chunk(&mut self, message: Message) {
        let header = *message.header();
        let Some((target_op, target_checksum)) = self.sync.target else { return };
        let op = header.checkpoint_op.get();
        let id = header.context.get();
        if op < target_op || self.sync.installing.is_some() {
            return;
        }
        if (op, id) != (target_op, target_checksum) {
            if header.op.get() != 0 {
                return;
            }
            // A newer checkpoint than we asked for: start over with it.
            self.sync.target = Some((op, id));
            self.sync.buffer.clear();
        }
        if header.op.get() != self.sync.buffer.len() as u64
            || header.commit.get() > self.config.checkpoint_size_max
        {
            return;
        }
        self.sync.total = header.commit.get();
        self.sync.tick_piece = self.tick;
        self.sync.buffer.extend_from_slice(message.body());
        if (self.sync.buffer.len() as u64) < self.sync.total {
            return self.sync_request();
        }
        let blob: Rc<[u8]> = std::mem::take(&mut self.sync.buffer).into();
        if crate::vsr::message::checksum(&blob) != id {
            self.sync.target = None;
            return self.drop_message_public("checkpoint_chunk: checksum mismatch");
        }
        self.sync_install(op, id, blob);
    }

    fn sync_install(&mut self, op: u64, checksum: u128, blob: Rc<[u8]>) {
        if self.checkpoint_pending.is_some() || self.sync.installing.is_some() {
            self.sync.target = None; // Retried once our own checkpoint is durable.
            return;
        }
        if op <= self.commit_min && self.sync.needed_checkpoint.is_none() {
            self.sync.target = None;
            return;
        }
        let header = match self.checkpoint_install_state(&blob) {
            Ok(header) => header,
            Err(reason) => {
                self.sync.target = None;
                return self.drop_message_public(reason);
            }
        };
        assert!(header.op.get() == op);
        self.commit_min = op;
        self.commit_max_advance(op);
        self.sync.needed_checkpoint = None;
        // Our log below the checkpoint is moot; above it, keep only what
        // chains onto the checkpoint's header.
        let mut writes = Vec::new();
        let mut journal_writes = Vec::new();
        for stale in self.checkpoint_op..op {
            self.journal.remove(stale, self.config.cluster, self.config.group, &mut journal_writes);
        }
        self.journal.set(header, None, &mut journal_writes);
        if let Some(slot) = self.slot_mut(op) {
            slot.verified = true;
        }
        if self.op < op {
            self.op = op;
            self.view_change.head_checksum = header.checksum.get();
        }
        self.chain_check_up(op);
        let area = 1 - self.superblock.checkpoint_area;
        let id = self.journal.write_id(WriteKind::Checkpoint { op });
        let mut data = blob.to_vec();
        data.resize(data.len().div_ceil(SECTOR_SIZE).max(1) * SECTOR_SIZE, 0);
        writes.push(Write {
            id,
            zone: Zone::Checkpoint,
            offset: area as u64 * self.config.checkpoint_size_max,
            data: data.into(),
        });
        self.sync.installing =
            Some(SyncInstall { op, checksum, blob, area, header, blob_durable: false });
        self.sync.target = None;
        self.write(journal_writes);
        self.write(writes);
    }

    /// After a sync, drop ops above the checkpoint that do not chain onto it.
    fn chain_check_up(&mut self, op_from: u64) {
        let mut writes = Vec::new();
        let mut op = op_from;
        while op < self.op {
            let Some(checksum) = self.journal.header(op).map(|h| h.checksum.get()) else { break };
            match self.journal.header(op + 1).map(|h| h.parent.get()) {
                Some(parent) if parent == checksum => {}
                Some(_) => {
                    self.journal.remove(op + 1, self.config.cluster, self.config.group, &mut writes)
                }
                None => break,
            }
            op += 1;
        }
        self.write(writes);
    }

    /// Called from the checkpoint write completion when it belongs to a sync.
    pub(crate) fn sync_blob_durable(&mut self, op: u64) {
        let Some(install) = self.sync.installing.as_mut().filter(|s| s.op == op) else {
            panic!("sync checkpoint write for op {op} with no sync installing it");
        };
        install.blob_durable = true;
        self.superblock_update();
    }

    pub(crate) fn sync_durable(&mut self) {
        let Some(install) = self.sync.installing.take() else {
            panic!("superblock checkpoint advanced with nothing pending");
        };
        assert!(self.superblock.checkpoint_op == install.op);
        self.checkpoint_op = install.op;
        self.checkpoint_id = install.checksum;
        self.sync.blob_current = Some(install.blob);
        self.events.push(Event::Synced { op: install.op });
        self.sync.tick_progress = self.tick;
        self.send_prepare_oks();
        self.commit_journal();
    }
}
