//! View change: StartViewChange → DoViewChange → StartView.
//!
//! Rules (each one closes a known hole, see ARCHITECTURE.md):
//! - the canonical log is the DoViewChange with the highest (log_view, op);
//!   log_view is only raised together with the log it names;
//! - view is persisted before a DoViewChange reveals it, log_view and the
//!   head before a StartView or PrepareOk does;
//! - an uncommitted op the new primary cannot obtain is dropped only when a
//!   nack quorum of replicas says they never acknowledged it; a replica whose
//!   copy is corrupt never nacks (it may have acknowledged it).

use std::collections::{BTreeMap, BTreeSet};

use super::{Replica, Status, Target};
use crate::vsr::config::Bug;
use crate::vsr::message::{Command, Header, Message, HEADER_SIZE};
use crate::vsr::state_machine::StateMachine;
use zerocopy::{FromBytes, IntoBytes};

const ENTRY_SIZE: usize = 16 + HEADER_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DvcEntry {
    /// Held and on the sender's verified chain.
    Have(Header),
    /// Held, but not linked to the sender's head: data, not authority.
    Unverified(Header),
    /// Unreadable: the sender may have acknowledged it. Never a nack.
    Faulty,
    /// The sender never acknowledged this op: a nack.
    Hole,
}

#[derive(Clone, Debug)]
pub struct Dvc {
    pub log_view: u32,
    pub op: u64,
    pub head_checksum: u128,
    pub commit_max: u64,
    pub entries: BTreeMap<u64, DvcEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockWait {
    /// Send our DoViewChange once `view` is durable.
    DoViewChange,
    /// Become primary once log_view = view is durable.
    StartPrimary,
}

#[derive(Default)]
pub struct ViewChangeState {
    pub svc_from: BTreeSet<u8>,
    pub dvc_sent: bool,
    pub dvc_from: BTreeMap<u8, Dvc>,
    pub tick_sent: u64,
    pub tick_start_view_requested: u64,
    pub head_changed: bool,
    pub head_checksum: u128,
    /// Ops a faulty, unreadable slot could hold (set at open).
    pub unknown_slots: Vec<u64>,
    pub wait: Option<SuperblockWait>,
    /// The canonical head this primary installed for the current view.
    pub canonical: Option<(u32, u64, u128)>,
    /// View changes started since the last one that completed.
    pub attempts: u32,
    /// Uncommitted ops whose canonical checksum no verified chain names,
    /// decided by the nack rule (`nack_decide`) for the current view change.
    pub adopted: BTreeMap<u64, u128>,
}

/// What the new primary may do about an uncommitted op whose canonical
/// checksum it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NackDecision {
    /// Exactly one candidate could have been committed: keep it.
    Adopt(u128),
    /// No candidate and no unseen header could have been committed.
    Truncate,
    /// A faulty or silent replica could hold the committed one: wait.
    Wait,
}

impl<S: StateMachine> Replica<S> {
    pub(crate) fn view_change_start(&mut self, view: u32) {
        assert!(
            view > self.view
                || (view == self.view && self.status != Status::Normal)
                || self.tick == 0
        );
        if self.status == Status::Normal && self.is_primary() {
            self.primary_abdicate();
        }
        self.primary_abdicate();
        self.view = view;
        self.status = Status::ViewChange;
        self.tick_view_change_started = self.tick;
        let vc = &mut self.view_change;
        vc.svc_from.clear();
        vc.svc_from.insert(self.config.replica);
        vc.dvc_sent = false;
        vc.dvc_from.clear();
        vc.canonical = None;
        vc.wait = None;
        vc.adopted.clear();
        self.svc_send();
        self.dvc_maybe();
    }

    fn svc_send(&mut self) {
        self.view_change.tick_sent = self.tick;
        let header = self.header_base(Command::StartViewChange);
        let message = Message::new(header, &[]);
        self.send_to_others(&message);
    }

    pub(crate) fn tick_view_change(&mut self) {
        // Back off exponentially while view changes keep failing, so a slow
        // disk or network cannot keep every attempt from completing.
        let attempts = self.view_change.attempts.min(4);
        let timeout = self.config.tick_view_change_timeout << attempts;
        if self.tick >= self.tick_view_change_started + timeout {
            self.view_change.attempts += 1;
            // Jitter keeps replicas from timing out in lockstep forever.
            let jitter = self.random() % self.config.tick_heartbeat.max(1);
            self.tick_view_change_started = self.tick + jitter;
            return self.view_change_start(self.view + 1);
        }
        if self.tick >= self.view_change.tick_sent + self.config.tick_heartbeat {
            self.svc_send();
            if self.view_change.dvc_sent {
                self.dvc_send();
            }
        }
    }

    pub(crate) fn tick_recovering_head(&mut self) {
        if self.tick >= self.view_change.tick_start_view_requested + self.config.tick_repair {
            self.view_change.tick_start_view_requested = self.tick;
            let mut header = self.header_base(Command::RequestStartView);
            header.context.set(self.boot_nonce);
            let message = Message::new(header, &[]);
            self.send_to_others(&message);
        }
    }

    pub(crate) fn on_start_view_change(&mut self, header: &Header) {
        if self.status == Status::RecoveringHead {
            return;
        }
        let view = header.view.get();
        if view > self.view && self.view_change_disruptive() {
            return self.drop_message_public("start_view_change: our view still works");
        }
        if view > self.view {
            self.view_change_start(view);
        }
        if view == self.view && self.status == Status::ViewChange {
            self.view_change.svc_from.insert(header.replica);
            self.dvc_maybe();
        }
    }

    fn dvc_maybe(&mut self) {
        if self.view_change.dvc_sent
            || self.view_change.svc_from.len() < self.config.quorum_view_change()
        {
            return;
        }
        if self.superblock.view < self.view {
            self.view_change.wait = Some(SuperblockWait::DoViewChange);
            return self.superblock_update();
        }
        self.view_change.dvc_sent = true;
        self.dvc_send();
    }

    fn dvc_send(&mut self) {
        assert!(self.superblock.view >= self.view, "DoViewChange before its view is durable");
        let mut header = self.header_base(Command::DoViewChange);
        header.log_view.set(self.log_view);
        header.op.set(self.op);
        header.context.set(self.view_change.head_checksum_current(self));
        let body = self.dvc_body();
        let message = Message::new(header, &body);
        let primary = self.primary_index();
        self.send(Target::Replica(primary), message);
    }

    fn dvc_body(&self) -> Vec<u8> {
        let window = self.config.view_change_window;
        let low = self.checkpoint_op.max(self.op.saturating_sub(window)) + 1;
        let high = (self.op + window).min(self.op_prepare_max());
        let mut body = Vec::with_capacity((high + 1).saturating_sub(low) as usize * ENTRY_SIZE);
        for op in low..=high {
            let (kind, header) = match self.dvc_entry(op) {
                DvcEntry::Have(h) => (1u8, h),
                DvcEntry::Unverified(h) => (2, h),
                DvcEntry::Faulty => (3, Header::new(Command::Reserved)),
                DvcEntry::Hole => (4, Header::new(Command::Reserved)),
            };
            body.extend_from_slice(&op.to_le_bytes());
            body.push(kind);
            body.extend_from_slice(&[0u8; 7]);
            body.extend_from_slice(header.as_bytes());
        }
        body
    }

    fn dvc_entry(&self, op: u64) -> DvcEntry {
        match self.journal.entry(op) {
            Some(slot) => match (&slot.message, slot.faulty) {
                (Some(m), _) if slot.verified && op <= self.op => DvcEntry::Have(*m.header()),
                (Some(m), _) => DvcEntry::Unverified(*m.header()),
                (None, true) => DvcEntry::Faulty,
                (None, false) => DvcEntry::Hole,
            },
            None => {
                let slot = &self.journal.slots[self.journal.slot_of(op) as usize];
                if slot.faulty {
                    DvcEntry::Faulty
                } else {
                    DvcEntry::Hole
                }
            }
        }
    }

    fn dvc_parse(&self, message: &Message) -> Option<Dvc> {
        let header = message.header();
        let body = message.body();
        if body.len() % ENTRY_SIZE != 0 {
            return None;
        }
        let mut entries = BTreeMap::new();
        for chunk in body.chunks_exact(ENTRY_SIZE) {
            let op = u64::from_le_bytes(chunk[0..8].try_into().ok()?);
            let entry_header = Header::read_from_bytes(&chunk[16..]).ok()?;
            let valid = entry_header.valid_checksum()
                && entry_header.op.get() == op
                && entry_header.command() == Some(Command::Prepare);
            let entry = match chunk[8] {
                1 if valid => DvcEntry::Have(entry_header),
                2 if valid => DvcEntry::Unverified(entry_header),
                3 => DvcEntry::Faulty,
                4 => DvcEntry::Hole,
                _ => return None,
            };
            entries.insert(op, entry);
        }
        Some(Dvc {
            log_view: header.log_view.get(),
            op: header.op.get(),
            head_checksum: header.context.get(),
            commit_max: header.commit.get(),
            entries,
        })
    }

    pub(crate) fn on_do_view_change(&mut self, message: Message) {
        if self.status == Status::RecoveringHead {
            return;
        }
        let header = *message.header();
        let view = header.view.get();
        if view > self.view && self.view_change_disruptive() {
            return self.drop_message_public("do_view_change: our view still works");
        }
        if view > self.view {
            self.view_change_start(view);
        }
        if view != self.view || self.status != Status::ViewChange || !self.is_primary() {
            return;
        }
        let Some(dvc) = self.dvc_parse(&message) else {
            return self.drop_message_public("do_view_change: malformed body");
        };
        self.checkpoint_seen(header.checkpoint_op.get(), header.checkpoint_id.get());
        self.view_change.dvc_from.insert(header.replica, dvc);
        self.view_change_try_complete();
    }

    /// At the new primary: with a quorum of DoViewChanges (ours included),
    /// adopt the canonical log, obtain or nack-truncate what is missing, then
    /// persist log_view and start the view.
    pub(crate) fn view_change_try_complete(&mut self) {
        let vc = &self.view_change;
        if self.status != Status::ViewChange
            || !self.is_primary()
            || vc.wait == Some(SuperblockWait::StartPrimary)
        {
            return;
        }
        if vc.dvc_from.len() < self.config.quorum_view_change()
            || !vc.dvc_from.contains_key(&self.config.replica)
        {
            return;
        }
        if self.sync.needed_checkpoint.is_some() {
            return; // We cannot commit without a state machine: let the view time out.
        }
        let by_op_only = self.bug(Bug::ViewChangeByOpOnly);
        let best = vc
            .dvc_from
            .iter()
            .max_by_key(|(replica, d)| {
                if by_op_only {
                    (0, d.op, **replica)
                } else {
                    (d.log_view, d.op, **replica)
                }
            })
            .map(|(_, d)| d.clone());
        let Some(best) = best else { return };
        let commit_max = vc.dvc_from.values().map(|d| d.commit_max).max().unwrap_or(0);
        self.commit_max_advance(commit_max);
        if self.view_change.canonical.is_none() {
            self.canonical_install(&best);
        }
        if !self.view_change_truncate() {
            return;
        }
        self.log_view = self.view;
        self.view_change.head_changed = true;
        self.view_change.head_checksum =
            self.journal.header(self.op).map(|h| h.checksum.get()).unwrap_or(0);
        self.view_change.wait = Some(SuperblockWait::StartPrimary);
        self.superblock_update();
    }

    fn canonical_install(&mut self, best: &Dvc) {
        // Verification is relative to the head of the view being installed:
        // what was on our old chain proves nothing now.
        for op in self.commit_min + 1..=self.op.max(best.op) {
            if let Some(slot) = self.slot_mut(op) {
                slot.verified = false;
            }
        }
        let mut writes = Vec::new();
        // Never drop an op we executed: it is committed, whatever the best
        // DoViewChange says (a lower head there would itself be a bug).
        for op in best.op.max(self.commit_min) + 1..=self.op {
            self.journal.remove(op, self.config.cluster, self.config.group, &mut writes);
        }
        let low = self.commit_min + 1;
        let entries = best.entries.iter().filter(|(op, _)| (low..=best.op).contains(*op));
        for (op, entry) in entries {
            if let DvcEntry::Have(header) = entry {
                if self.journal.header(*op).map(|h| h.checksum) != Some(header.checksum) {
                    self.journal.set(*header, None, &mut writes);
                }
                if let Some(slot) = self.slot_mut(*op) {
                    slot.verified = true;
                }
            }
        }
        self.write(writes);
        self.op = best.op.max(self.commit_min);
        self.view_change.head_checksum = best.head_checksum;
        if best.op <= self.commit_min {
            self.view_change.head_checksum =
                self.journal.header(self.op).map(|h| h.checksum.get()).unwrap_or(0);
        }
        let commit_min = self.commit_min;
        if let Some(slot) = self.slot_mut(self.op) {
            slot.verified = slot.header.is_some_and(|h| h.checksum.get() == best.head_checksum)
                || best.op <= commit_min;
        }
        self.chain_verify_down(self.op);
        self.view_change.canonical = Some((self.view, self.op, self.view_change.head_checksum));
    }

    /// Returns true once every op up to the head is held. Drops the lowest
    /// missing uncommitted op (and all above it) if a nack quorum allows.
    fn view_change_truncate(&mut self) -> bool {
        let mut op = self.commit_min + 1;
        while op <= self.op {
            let mut expected = self.expected_checksum(op);
            let mut denied = false;
            if expected.is_none() && op > self.commit_max {
                // No verified chain names this op (seed 83010: the op above
                // it is missing everywhere). Decide it from what the
                // DoViewChanges hold, then carry on upwards.
                let parent = self.journal.header(op - 1).map(|h| h.checksum.get());
                match self.nack_decide(op, parent) {
                    NackDecision::Adopt(checksum) => {
                        self.view_change.adopted.insert(op, checksum);
                        expected = Some(checksum);
                    }
                    NackDecision::Truncate => denied = true,
                    NackDecision::Wait => return false,
                }
            }
            if expected.is_some_and(|c| self.journal.has_prepare(op, c)) {
                if let Some(slot) = self.slot_mut(op) {
                    slot.verified = true;
                }
                op += 1;
                continue;
            }
            if op <= self.commit_max {
                return false; // Committed: must be repaired, never dropped.
            }
            if self.view_change.adopted.contains_key(&op) {
                return false; // Possibly committed: repair fetches it.
            }
            if !denied && self.nacks(op, expected) < self.config.quorum_nack() {
                return false;
            }
            let mut writes = Vec::new();
            for stale in op..=self.op {
                self.journal.remove(stale, self.config.cluster, self.config.group, &mut writes);
            }
            self.write(writes);
            self.op = op - 1;
            return true;
        }
        true
    }

    fn nacks(&self, op: u64, expected: Option<u128>) -> usize {
        let mut nacks = 0;
        for dvc in self.view_change.dvc_from.values() {
            let nack = match dvc.entries.get(&op) {
                Some(DvcEntry::Hole) => true,
                Some(DvcEntry::Have(h)) | Some(DvcEntry::Unverified(h)) => {
                    expected.is_some_and(|c| h.checksum.get() != c)
                }
                Some(DvcEntry::Faulty) | None => false,
            };
            nacks += nack as usize;
        }
        nacks
    }

    /// For an uncommitted op with no known canonical checksum: a header
    /// could have been committed only if fewer than a nack quorum of the
    /// DoViewChanges deny it (a hole, or a different header: a replica only
    /// replaces an acknowledged prepare when a view change proved it
    /// uncommitted). A header whose parent is not the op below cannot be
    /// committed. Faulty slots and entries outside a sender's window deny
    /// nothing.
    fn nack_decide(&self, op: u64, parent: Option<u128>) -> NackDecision {
        let Some(parent) = parent else { return NackDecision::Wait };
        let mut holds: Vec<Option<u128>> = Vec::new(); // None: denies every header.
        let mut candidates: Vec<u128> = Vec::new();
        for dvc in self.view_change.dvc_from.values() {
            match dvc.entries.get(&op) {
                Some(DvcEntry::Hole) => holds.push(None),
                Some(DvcEntry::Have(h)) | Some(DvcEntry::Unverified(h)) => {
                    if h.parent.get() == parent {
                        holds.push(Some(h.checksum.get()));
                        if !candidates.contains(&h.checksum.get()) {
                            candidates.push(h.checksum.get());
                        }
                    } else {
                        holds.push(None);
                    }
                }
                Some(DvcEntry::Faulty) | None => {}
            }
        }
        let quorum = self.config.quorum_nack();
        if holds.len() < quorum {
            return NackDecision::Wait; // A header nobody reported could be committed.
        }
        let possible: Vec<u128> = candidates
            .into_iter()
            .filter(|c| holds.iter().filter(|h| **h != Some(*c)).count() < quorum)
            .collect();
        match possible[..] {
            [] => NackDecision::Truncate,
            [checksum] => NackDecision::Adopt(checksum),
            _ => NackDecision::Wait,
        }
    }

    /// The checksum the canonical log has at `op`, if known.
    pub(crate) fn expected_checksum(&self, op: u64) -> Option<u128> {
        if self.status == Status::ViewChange {
            if let Some(checksum) = self.view_change.adopted.get(&op) {
                return Some(*checksum);
            }
        }
        if let Some(header) = self.journal.header(op) {
            if self.journal.entry(op).is_some_and(|s| s.verified) {
                return Some(header.checksum.get());
            }
        }
        if op == self.op && self.view_change.head_checksum != 0 {
            return Some(self.view_change.head_checksum);
        }
        let above = self.journal.entry(op + 1)?;
        if above.verified {
            return above.header.map(|h| h.parent.get());
        }
        None
    }

    pub(crate) fn view_change_superblock_durable(&mut self) {
        match self.view_change.wait {
            Some(SuperblockWait::DoViewChange) if self.superblock.view >= self.view => {
                self.view_change.wait = None;
                self.dvc_maybe();
            }
            Some(SuperblockWait::StartPrimary) if self.superblock.log_view == self.view => {
                self.view_change.wait = None;
                self.primary_start();
            }
            _ => {}
        }
        if self.status == Status::Normal && self.superblock.log_view == self.log_view {
            self.on_durable();
        }
    }

    fn primary_start(&mut self) {
        assert!(self.status == Status::ViewChange && self.is_primary());
        self.status = Status::Normal;
        self.view_change.attempts = 0;
        self.tick_backup_heard.fill(0);
        self.events.push(super::Event::ViewInstalled { view: self.view, primary: true });
        let message = self.start_view_message(0);
        self.send_to_others(&message);
        self.commit_journal();
        self.pipeline_restart();
    }

    pub(crate) fn start_view_message(&self, nonce: u128) -> Message {
        let mut header = self.header_base(Command::StartView);
        header.log_view.set(self.log_view);
        header.op.set(self.op);
        header.context.set(nonce);
        header.parent.set(self.view_change.head_checksum_current(self));
        let window = self.config.view_change_window;
        let low = self.checkpoint_op.max(self.op.saturating_sub(window)) + 1;
        let mut body = Vec::new();
        for op in low..=self.op {
            if let Some(h) = self.journal.header(op) {
                body.extend_from_slice(h.as_bytes());
            }
        }
        Message::new(header, &body)
    }

    pub(crate) fn on_request_start_view(&mut self, header: &Header) {
        if self.status != Status::Normal || !self.is_primary() || header.view.get() > self.view {
            return;
        }
        let message = self.start_view_message(header.context.get());
        self.send(Target::Replica(header.replica), message);
    }

    pub(crate) fn request_start_view(&mut self, view: u32, primary: u8) {
        if self.tick < self.view_change.tick_start_view_requested + self.config.tick_repair
            && self.tick > 0
        {
            return;
        }
        if primary >= self.config.replica_count || self.config.primary_index(view) != primary {
            return;
        }
        self.view_change.tick_start_view_requested = self.tick;
        let mut header = self.header_base(Command::RequestStartView);
        header.view.set(view.max(self.view));
        header.context.set(self.boot_nonce);
        let message = Message::new(header, &[]);
        self.send(Target::Replica(primary), message);
    }

    pub(crate) fn on_start_view(&mut self, message: Message) {
        let header = *message.header();
        let view = header.view.get();
        if header.replica != self.config.primary_index(view)
            || header.replica == self.config.replica
        {
            return;
        }
        let accept = match self.status {
            Status::RecoveringHead => {
                view > self.view || (view == self.view && header.context.get() == self.boot_nonce)
            }
            Status::ViewChange => view >= self.view,
            Status::Normal => view > self.view,
        };
        if !accept || header.log_view.get() != view {
            return;
        }
        let mut headers = Vec::new();
        for chunk in message.body().chunks(HEADER_SIZE) {
            let Ok(h) = Header::read_from_bytes(chunk) else { return };
            if !h.valid_checksum()
                || h.command() != Some(Command::Prepare)
                || h.op.get() > header.op.get()
            {
                return self.drop_message_public("start_view: bad header");
            }
            headers.push(h);
        }
        self.start_view_install(&header, &headers);
    }

    fn start_view_install(&mut self, sv: &Header, headers: &[Header]) {
        self.primary_abdicate();
        // Whatever we were waiting for in an older view is moot now.
        self.view_change.wait = None;
        self.view = sv.view.get();
        self.log_view = sv.view.get();
        self.status = Status::Normal;
        self.view_change.attempts = 0;
        self.tick_primary_heard = self.tick;
        let head = sv.op.get().max(self.commit_min);
        let mut writes = Vec::new();
        for op in head + 1..=self.op.max(head) {
            self.journal.remove(op, self.config.cluster, self.config.group, &mut writes);
        }
        for op in self.commit_min + 1..=head {
            if let Some(slot) = self.slot_mut(op) {
                slot.verified = false;
            }
        }
        let commit_min = self.commit_min;
        // A header beyond our checkpoint's ring would overwrite the slot of an
        // op we may still need to checkpoint (seed 150147: op 192 took op
        // 128's slot before 128 was checkpointed); those ops come later, by
        // repair or state sync, as for prepares (`on_prepare`).
        let op_max = self.op_prepare_max();
        for h in headers.iter().filter(|h| h.op.get() > commit_min && h.op.get() <= op_max) {
            if self.journal.header(h.op.get()).map(|x| x.checksum) != Some(h.checksum) {
                self.journal.set(*h, None, &mut writes);
            }
            if let Some(slot) = self.slot_mut(h.op.get()) {
                slot.verified = true;
            }
        }
        self.write(writes);
        self.op = head;
        self.view_change.head_checksum =
            if sv.op.get() >= self.commit_min { sv.parent.get() } else { 0 };
        if let Some(slot) = self.slot_mut(head) {
            if sv.op.get() <= commit_min
                || slot.header.is_some_and(|h| h.checksum.get() == sv.parent.get())
            {
                slot.verified = true;
            }
        }
        self.chain_verify_down(head);
        self.commit_max_advance(sv.commit.get());
        self.view_change.head_changed = true;
        self.ok_sent_op = self.commit_min;
        self.events.push(super::Event::ViewInstalled { view: self.view, primary: false });
        self.superblock_update();
        self.commit_journal();
    }
}

impl ViewChangeState {
    /// Checksum of the replica's head op (from the log, or remembered when
    /// the log does not hold it yet).
    pub fn head_checksum_current<S: StateMachine>(&self, replica: &Replica<S>) -> u128 {
        replica.journal.header(replica.op).map(|h| h.checksum.get()).unwrap_or(self.head_checksum)
    }
}
