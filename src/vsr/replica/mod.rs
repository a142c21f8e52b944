//! The sans-IO VSR replica of one replication group.
//!
//! Events in: [`Replica::on_message`], [`Replica::on_tick`],
//! [`Replica::on_write_done`]. Effects out: [`Replica::take_actions`] (sends and
//! writes) and [`Replica::take_events`] (commits, for checkers and metrics).
//! The replica never reads a clock or the OS's randomness: time is the tick
//! count and randomness comes from the seed the driver gives it.
//!
//! The protocol is Viewstamped Replication Revisited with TigerBeetle's
//! durable-log lessons: see `ARCHITECTURE.md` ("Replication") for the rules
//! and the reasons behind them. Sub-modules:
//! - `journal`: the WAL ring in memory and its writes;
//! - `recovery`: format and open (the decision per WAL slot);
//! - `view_change`: StartViewChange / DoViewChange / StartView, nacks;
//! - `repair`: missing prepares, state sync from a checkpoint.

mod journal;
mod recovery;
mod repair;
mod view_change;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use journal::WriteKind;
use journal::{Journal, Slot};
pub use recovery::{format, OpenError};

use crate::vsr::client_table::ClientTable;
use crate::vsr::config::{Bug, Config};
use crate::vsr::message::{
    Command, Header, Message, OPERATION_NOOP, OPERATION_REGISTER, OPERATION_STATE_MACHINE_MIN,
};
use crate::vsr::state_machine::StateMachine;
use crate::vsr::storage::{Write, WriteId};
use crate::vsr::superblock::SuperblockState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Replica(u8),
    Client(u128),
}

#[derive(Clone, Debug)]
pub enum Action {
    Send { target: Target, message: Message },
    Write(Write),
}

/// Things that happened, for checkers, metrics and logs. Not part of the
/// protocol: a driver may drop them.
#[derive(Clone, Debug)]
pub enum Event {
    /// The prepare at `op` was committed (applied) by this replica.
    Committed {
        prepare: Message,
    },
    /// A checkpoint at `op` became durable; `blob` is its exact bytes.
    Checkpointed {
        op: u64,
        checksum: u128,
        blob: std::rc::Rc<[u8]>,
    },
    /// This replica installed a checkpoint from a peer (state sync).
    Synced {
        op: u64,
    },
    ViewInstalled {
        view: u32,
        primary: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    ViewChange,
    /// The head of the log is uncertain (a faulty slot could hold a newer
    /// op we acknowledged): no voting until a StartView echoes our nonce.
    RecoveringHead,
}

struct PipelineEntry {
    op: u64,
    checksum: u128,
    ok_from: BTreeSet<u8>,
}

struct PendingRead {
    request: Message,
    /// The primary's head when the read arrived: serve once committed.
    op_needed: u64,
    /// Read-index round that must confirm the view first.
    round: u64,
}

pub struct Replica<S: StateMachine> {
    pub(crate) config: Config,
    pub(crate) state_machine: S,
    pub(crate) client_table: ClientTable,
    pub(crate) journal: Journal,
    /// Durable superblock and the one being written (at most one at a time).
    pub(crate) superblock: SuperblockState,
    superblock_writing: Option<SuperblockState>,
    superblock_queued: bool,
    /// Open found copies that disagree; nothing happens until all are rewritten.
    pub(crate) superblock_repairing: bool,
    /// Order in which copies are written (pairs); see `superblock_write_half`.
    pub(crate) superblock_copy_order: [u8; 4],
    superblock_copies_pending: u8,

    pub(crate) status: Status,
    pub(crate) view: u32,
    /// View the durable superblock holds; messages revealing `view` wait for it.
    pub(crate) log_view: u32,
    /// Head of the log.
    pub(crate) op: u64,
    pub(crate) commit_min: u64,
    pub(crate) commit_max: u64,
    pub(crate) checkpoint_op: u64,
    pub(crate) checkpoint_id: u128,
    pub(crate) checkpoint_pending: Option<CheckpointPending>,

    pub(crate) tick: u64,
    tick_primary_heard: u64,
    /// At a primary: per replica, the last tick a PrepareOk or Pong of the
    /// current view arrived from it (see `view_change_disruptive`).
    pub(crate) tick_backup_heard: Vec<u64>,
    tick_heartbeat_sent: u64,
    pub(crate) tick_view_change_started: u64,
    tick_repair_last: u64,
    prng_state: u64,
    pub(crate) boot_nonce: u128,

    pipeline: VecDeque<PipelineEntry>,
    request_queue: VecDeque<Message>,
    timestamp_last: u64,
    /// Wall-clock nanoseconds from the driver (0 in the simulator, which
    /// then times prepares by ticks alone): prepares carry real time so S3
    /// Last-Modified is meaningful, never going backwards.
    realtime_ns: u64,
    /// Highest op this replica has sent a PrepareOk for in the current view.
    ok_sent_op: u64,

    reads: VecDeque<PendingRead>,
    read_round: u64,
    read_round_confirmed: u64,
    read_round_pongs: BTreeSet<u8>,
    read_round_sent_tick: u64,

    pub(crate) view_change: view_change::ViewChangeState,
    pub(crate) sync: repair::SyncState,

    actions: Vec<Action>,
    events: Vec<Event>,
    /// Messages dropped because they failed a check (per reason), for metrics.
    pub dropped: BTreeMap<&'static str, u64>,
}

impl<S: StateMachine> Replica<S> {
    pub fn replica(&self) -> u8 {
        self.config.replica
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn view(&self) -> u32 {
        self.view
    }
    pub fn log_view(&self) -> u32 {
        self.log_view
    }
    pub fn op(&self) -> u64 {
        self.op
    }
    pub fn commit_min(&self) -> u64 {
        self.commit_min
    }
    pub fn commit_max(&self) -> u64 {
        self.commit_max
    }
    pub fn checkpoint_op(&self) -> u64 {
        self.checkpoint_op
    }
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }
    pub fn is_primary(&self) -> bool {
        self.config.primary_index(self.view) == self.config.replica
    }
    pub fn primary_index(&self) -> u8 {
        self.config.primary_index(self.view)
    }
    pub fn syncing(&self) -> bool {
        self.sync.target.is_some()
    }
    pub fn writes_pending(&self) -> usize {
        self.journal.writes.len()
    }
    /// The prepare at `op` if this replica holds it (for checkers).
    pub fn prepare_at(&self, op: u64) -> Option<&Message> {
        self.journal.message(op)
    }

    /// One line about the log above the commit point, for violation reports.
    pub fn debug_state(&self) -> String {
        let mut out = format!("durable_contiguous {} pipeline [", self.op_durable_contiguous());
        for entry in &self.pipeline {
            let stale =
                self.journal.header(entry.op).map(|h| h.checksum.get()) != Some(entry.checksum);
            out.push_str(&format!(
                "{}:{:?}{} ",
                entry.op,
                entry.ok_from,
                if stale { "!" } else { "" }
            ));
        }
        out.push_str("] slots [");
        for op in self.commit_min + 1..=self.op {
            match self.journal.entry(op) {
                Some(s) => out.push_str(&format!(
                    "{op}:{:x}:m{}d{}v{}f{}{} ",
                    s.header.map(|h| h.checksum.get() >> 112).unwrap_or(0),
                    s.message.is_some() as u8,
                    s.durable as u8,
                    s.verified as u8,
                    s.faulty as u8,
                    self.journal.debug_slot(op)
                )),
                None => out.push_str(&format!("{op}:none ")),
            }
        }
        out.push_str(&format!(
            " needed {:?} target {:?} installing {} pending {} peer {} ",
            self.sync.needed_checkpoint.map(|n| n.0),
            self.sync.target.map(|t| t.0),
            self.sync.installing.is_some(),
            self.checkpoint_pending.is_some(),
            self.sync.peer_checkpoint.0
        ));
        out.push_str(&format!(
            "] dropped {:?} sb.log_view {} reads {} queue {} writes {}",
            self.dropped,
            self.superblock.log_view,
            self.reads.len(),
            self.request_queue.len(),
            self.journal.writes.len()
        ));
        out
    }

    /// The driver's wall clock (nanoseconds since the Unix epoch), fed with
    /// every tick. Only a primary's prepare timestamps use it; they stay
    /// strictly increasing whatever the clock does.
    pub fn set_realtime(&mut self, realtime_ns: u64) {
        self.realtime_ns = realtime_ns;
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    #[cfg(feature = "sim-bugs")]
    pub(crate) fn bug(&self, bug: Bug) -> bool {
        self.config.bug == bug
    }

    #[cfg(not(feature = "sim-bugs"))]
    pub(crate) fn bug(&self, _bug: Bug) -> bool {
        false
    }

    pub(crate) fn random(&mut self) -> u64 {
        // splitmix64: the replica's own stream, seeded by the driver.
        self.prng_state = self.prng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.prng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn drop_message(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }

    pub(crate) fn header_base(&self, command: Command) -> Header {
        let mut header = Header::new(command);
        header.cluster.set(self.config.cluster);
        header.group.set(self.config.group);
        header.replica = self.config.replica;
        header.view.set(self.view);
        header.commit.set(self.commit_max);
        header.checkpoint_op.set(self.checkpoint_op);
        header.checkpoint_id.set(self.checkpoint_id);
        header
    }

    pub(crate) fn send(&mut self, target: Target, message: Message) {
        if target == Target::Replica(self.config.replica) {
            // Loopback: handled directly, never through the network.
            self.on_message(message);
            return;
        }
        self.actions.push(Action::Send { target, message });
    }

    pub(crate) fn send_to_others(&mut self, message: &Message) {
        for replica in 0..self.config.replica_count {
            if replica != self.config.replica {
                self.actions.push(Action::Send {
                    target: Target::Replica(replica),
                    message: message.clone(),
                });
            }
        }
    }

    pub(crate) fn write(&mut self, writes: Vec<Write>) {
        let layout = self.config.layout();
        for write in writes {
            write.assert_aligned(&layout);
            self.actions.push(Action::Write(write));
        }
    }

    // ------------------------------------------------------------------
    // Events in.
    // ------------------------------------------------------------------

    /// A verified message from the network (or loopback).
    pub fn on_message(&mut self, message: Message) {
        if self.superblock_repairing {
            return self.drop_message("superblock repair in progress");
        }
        let header = *message.header();
        if header.cluster.get() != self.config.cluster {
            return self.drop_message("wrong cluster");
        }
        if header.group.get() != self.config.group {
            return self.drop_message("wrong group");
        }
        let from_replica = header.replica < self.config.replica_count;
        let command = message.command();
        let needs_replica = !matches!(command, Command::Request);
        if needs_replica && !from_replica {
            return self.drop_message("replica index out of range");
        }
        match command {
            Command::Request => self.on_request(message),
            Command::Prepare => self.on_prepare(message),
            Command::PrepareOk => self.on_prepare_ok(&header),
            Command::Commit => self.on_commit(&header),
            Command::Ping => self.on_ping(&header),
            Command::Pong => self.on_pong(&header),
            Command::StartViewChange => self.on_start_view_change(&header),
            Command::DoViewChange => self.on_do_view_change(message),
            Command::StartView => self.on_start_view(message),
            Command::RequestStartView => self.on_request_start_view(&header),
            Command::RequestPrepare => self.on_request_prepare(&header),
            Command::RequestCheckpoint => self.on_request_checkpoint(&header),
            Command::CheckpointChunk => self.on_checkpoint_chunk(message),
            Command::Reply
            | Command::Eviction
            | Command::Reserved
            | Command::ChunkWrite
            | Command::ChunkWriteOk
            | Command::ChunkRead
            | Command::ChunkData
            | Command::ChunkMissing
            | Command::ChunkRefused => {
                // Chunk traffic is the shard's chunk store's, never the log's.
                self.drop_message("command not for a replica")
            }
        }
    }

    pub fn on_tick(&mut self) {
        self.tick += 1;
        if self.superblock_repairing {
            return;
        }
        match self.status {
            Status::Normal if self.is_primary() => self.tick_primary(),
            Status::Normal => self.tick_backup(),
            Status::ViewChange => self.tick_view_change(),
            Status::RecoveringHead => self.tick_recovering_head(),
        }
        if self.tick >= self.tick_repair_last + self.config.tick_repair {
            self.tick_repair_last = self.tick;
            self.repair();
        }
    }

    pub fn on_write_done(&mut self, id: WriteId) {
        let Some(kind) = self.journal.writes.remove(&id) else {
            panic!("write {id:?} completed twice or was never submitted");
        };
        let mut writes = Vec::new();
        match kind {
            WriteKind::Prepare { slot, checksum } => {
                self.journal.prepare_done(slot, checksum, &mut writes)
            }
            WriteKind::HeaderSector { sector, covers } => {
                let durable = self.journal.sector_done(sector, &covers, &mut writes);
                self.write(std::mem::take(&mut writes));
                if !durable.is_empty() {
                    self.on_durable();
                }
            }
            WriteKind::Superblock { sequence, half } => self.superblock_done(sequence, half),
            WriteKind::Checkpoint { op } => self.checkpoint_blob_done(op),
        }
        self.write(writes);
    }

    // ------------------------------------------------------------------
    // Normal operation: primary.
    // ------------------------------------------------------------------

    fn tick_primary(&mut self) {
        if self.tick >= self.tick_heartbeat_sent + self.config.tick_heartbeat {
            self.tick_heartbeat_sent = self.tick;
            let mut header = self.header_base(Command::Commit);
            // The head lets a backup that missed prepares fetch them.
            header.op.set(self.op);
            header.context.set(self.journal.header(self.op).map(|h| h.checksum.get()).unwrap_or(0));
            let message = Message::new(header, &[]);
            self.send_to_others(&message);
        }
        if self.read_round > self.read_round_confirmed
            && self.tick >= self.read_round_sent_tick + self.config.tick_repair
        {
            // Resend the same round: a new number would discard the pongs
            // still on their way, and a round trip may exceed tick_repair.
            self.read_round_sent_tick = self.tick;
            self.read_round_ping();
        }
        self.prepare_from_queue();
    }

    fn on_request(&mut self, request: Message) {
        let header = *request.header();
        if self.status != Status::Normal || !self.is_primary() || self.syncing() {
            // Clients find the primary themselves; a backup stays silent so a
            // deposed primary can never answer.
            return self.drop_message("request not at a normal primary");
        }
        let Some(read_only) = S::operation_read_only(header.operation)
            .or((header.operation == OPERATION_REGISTER).then_some(false))
        else {
            return self.drop_message("request: unknown operation");
        };
        if header.operation >= OPERATION_STATE_MACHINE_MIN
            && !S::request_valid(header.operation, request.body())
        {
            return self.drop_message("request: invalid body");
        }
        if read_only {
            return self.on_read(request);
        }
        let client = header.client.get();
        if header.operation == OPERATION_REGISTER {
            if self.client_table.get(client).is_some() {
                let reply = self.client_table.get(client).map(|s| s.reply.clone());
                if let Some(reply) = reply {
                    if reply.header().request.get() == 0 {
                        self.send(Target::Client(client), reply);
                    }
                }
                return;
            }
        } else {
            let Some(session) = self.client_table.get(client) else {
                if self.commit_min < self.op {
                    // The register may be in our log, not yet committed by
                    // this (new) primary: let the client retry.
                    return self.drop_message("request: session not known yet");
                }
                return self.send_eviction(client);
            };
            let request_number = header.request.get();
            if request_number <= session.request {
                if request_number == session.request {
                    let reply = session.reply.clone();
                    self.send(Target::Client(client), reply);
                }
                return;
            }
            if request_number > session.request + 1 && !self.bug(Bug::ClientTableBeforeCommit) {
                return self.drop_message("request: number skips ahead");
            }
        }
        if self.request_in_flight(client) {
            return;
        }
        if self.request_queue.len() >= self.config.request_queue_max {
            return self.drop_message("request queue full");
        }
        self.request_queue.push_back(request);
        self.prepare_from_queue();
    }

    /// Whether `client` has a request queued or anywhere in the log above
    /// the commit point (not only in the pipeline: after a view change ops
    /// below commit_max may not be executed yet, so the client table does
    /// not know them).
    fn request_in_flight(&self, client: u128) -> bool {
        if self.request_queue.iter().any(|r| r.header().client.get() == client) {
            return true;
        }
        (self.commit_min + 1..=self.op)
            .any(|op| self.journal.header(op).is_none_or(|h| h.client.get() == client))
    }

    fn send_eviction(&mut self, client: u128) {
        let mut header = self.header_base(Command::Eviction);
        header.client.set(client);
        let message = Message::new(header, &[]);
        self.send(Target::Client(client), message);
    }

    pub(crate) fn op_prepare_max(&self) -> u64 {
        // A slot may be overwritten only once its op is in a durable checkpoint.
        self.checkpoint_op + self.config.wal_slot_count
    }

    fn prepare_from_queue(&mut self) {
        while self.status == Status::Normal && self.is_primary() && !self.request_queue.is_empty() {
            if self.pipeline.len() as u64 >= self.config.pipeline_max
                || self.op + 1 > self.op_prepare_max()
            {
                return;
            }
            if let Some(request) = self.request_queue.pop_front() {
                self.prepare(Some(request));
            }
        }
    }

    /// Create the next prepare (a client request, or a no-op) and replicate it.
    pub(crate) fn prepare(&mut self, request: Option<Message>) {
        assert!(self.status == Status::Normal && self.is_primary());
        assert!(self.op + 1 <= self.op_prepare_max());
        let parent = match self.journal.header(self.op) {
            Some(header) => header.checksum.get(),
            None => panic!("primary lacks its head op {}", self.op),
        };
        let mut header = self.header_base(Command::Prepare);
        header.op.set(self.op + 1);
        header.commit.set(self.commit_max);
        header.parent.set(parent);
        self.timestamp_last =
            (self.timestamp_last + 1).max(self.tick * 10_000_000).max(self.realtime_ns);
        header.timestamp.set(self.timestamp_last);
        let body: Vec<u8> = match &request {
            Some(request) => {
                let r = request.header();
                header.client = r.client;
                header.request = r.request;
                header.operation = r.operation;
                header.context.set(request.checksum());
                request.body().to_vec()
            }
            None => {
                header.operation = OPERATION_NOOP;
                Vec::new()
            }
        };
        let message = Message::new(header, &body);
        self.op += 1;
        let mut writes = Vec::new();
        self.journal.set(*message.header(), Some(message.clone()), &mut writes);
        if let Some(slot) = self.slot_mut(self.op) {
            slot.verified = true;
        }
        self.write(writes);
        self.pipeline.push_back(PipelineEntry {
            op: self.op,
            checksum: message.checksum(),
            ok_from: BTreeSet::new(),
        });
        self.send_to_others(&message);
        if self.bug(Bug::CommitWithoutQuorum) {
            self.pipeline_ok(self.op, message.checksum(), self.config.replica);
        }
        if self.bug(Bug::ClientTableBeforeCommit) {
            // The bug: remember the request number before it commits.
            if let Some(request) = &request {
                let r = *request.header();
                if r.operation != OPERATION_REGISTER {
                    self.client_table.bug_set_request(r.client.get(), r.request.get());
                }
            }
        }
    }

    pub(crate) fn slot_mut(&mut self, op: u64) -> Option<&mut Slot> {
        let index = self.journal.slot_of(op) as usize;
        let slot = &mut self.journal.slots[index];
        match &slot.header {
            Some(header) if header.op.get() == op => Some(slot),
            _ => None,
        }
    }

    fn on_prepare_ok(&mut self, header: &Header) {
        if self.status != Status::Normal || !self.is_primary() || header.view.get() != self.view {
            return self.drop_message("prepare_ok: not primary of that view");
        }
        self.backup_heard(header.replica);
        self.pipeline_ok(header.op.get(), header.context.get(), header.replica);
    }

    fn pipeline_ok(&mut self, op: u64, checksum: u128, replica: u8) {
        let Some(entry) = self.pipeline.iter_mut().find(|e| e.op == op) else { return };
        if entry.checksum != checksum {
            return self.drop_message("prepare_ok: checksum differs");
        }
        entry.ok_from.insert(replica);
        self.commit_pipeline();
    }

    fn commit_pipeline(&mut self) {
        let quorum =
            if self.bug(Bug::CommitWithoutQuorum) { 1 } else { self.config.quorum_replication() };
        while let Some(entry) = self.pipeline.front() {
            if entry.op <= self.commit_min {
                self.pipeline.pop_front();
                continue;
            }
            if entry.ok_from.len() < quorum {
                break;
            }
            // Quorum: the op is committed (knowledge); executing it may have
            // to wait for a checkpoint or for an older op being repaired.
            let op = entry.op;
            self.commit_max = self.commit_max.max(op);
            self.commit_journal();
            if self.commit_min < op {
                break;
            }
            self.pipeline.pop_front();
        }
        self.prepare_from_queue();
        self.serve_reads();
    }

    // ------------------------------------------------------------------
    // Normal operation: backup.
    // ------------------------------------------------------------------

    fn tick_backup(&mut self) {
        if self.tick >= self.tick_primary_heard + self.config.tick_primary_timeout {
            self.view_change_start(self.view + 1);
        }
    }

    fn on_prepare(&mut self, message: Message) {
        let header = *message.header();
        let op = header.op.get();
        if self.repair_accept(&message) {
            return;
        }
        if header.view.get() < self.view {
            return self.drop_message("prepare: old view");
        }
        if header.view.get() > self.view || self.status != Status::Normal {
            return self.request_start_view(header.view.get(), header.replica);
        }
        if self.is_primary() || header.replica != self.primary_index() {
            return self.drop_message("prepare: not from the primary");
        }
        self.tick_primary_heard = self.tick;
        self.commit_max_advance(header.commit.get());
        self.checkpoint_seen(header.checkpoint_op.get(), header.checkpoint_id.get());
        if op <= self.commit_min || self.journal.has_prepare(op, message.checksum()) {
            self.send_prepare_oks();
            self.commit_journal();
            return;
        }
        if op > self.op_prepare_max() {
            return self.drop_message("prepare: beyond our checkpoint (needs sync)");
        }
        if op <= self.op && !self.bug(Bug::NoParentCheck) {
            // A different prepare for an op we hold in this view can only be
            // the primary's after we missed a StartView: ask for it.
            if self.journal.header(op).is_some_and(|h| h.checksum.get() != message.checksum()) {
                return self.request_start_view(self.view, header.replica);
            }
        }
        self.journal_insert_verified(message);
        self.send_prepare_oks();
        self.commit_journal();
    }

    /// Add a prepare of the current view to the log as its new verified
    /// head (or below it), and re-check the chain under it.
    pub(crate) fn journal_insert_verified(&mut self, message: Message) {
        let header = *message.header();
        let op = header.op.get();
        let mut writes = Vec::new();
        if op > self.op {
            for stale in self.op + 1..op {
                self.journal.remove(stale, self.config.cluster, self.config.group, &mut writes);
            }
            self.op = op;
        }
        self.journal.set(header, Some(message), &mut writes);
        if let Some(slot) = self.slot_mut(op) {
            slot.verified = true;
        }
        self.write(writes);
        self.chain_verify_down(op);
    }

    /// Walk down from a verified `op`: each op whose checksum is its
    /// successor's `parent` is verified; a mismatch is a stale op from a dead
    /// branch and is removed (repair fetches the right one).
    pub(crate) fn chain_verify_down(&mut self, op_from: u64) {
        if self.bug(Bug::NoParentCheck) {
            return;
        }
        // Only a verified op vouches for its parent. Walking down from an
        // unverified head would "verify" a stale branch that merely chains
        // onto itself (seed 63061: a new primary installed its own stale
        // ops 1..3 this way and a later view committed one of them).
        if !self.journal.entry(op_from).is_some_and(|slot| slot.verified) {
            return;
        }
        let mut op = op_from;
        let mut writes = Vec::new();
        while op > self.commit_min + 1 {
            let Some(parent) = self.journal.header(op).map(|h| h.parent.get()) else { break };
            let below = op - 1;
            match self.journal.header(below).map(|h| h.checksum.get()) {
                Some(checksum) if checksum == parent => {
                    // No early stop at an already-verified slot: a view install
                    // marks a window of headers verified without their links
                    // below. The walk is bounded by op - commit_min.
                    if let Some(slot) = self.slot_mut(below) {
                        slot.verified = true;
                    }
                }
                Some(_) => {
                    self.journal.remove(below, self.config.cluster, self.config.group, &mut writes)
                }
                None => break,
            }
            op = below;
        }
        self.write(writes);
    }

    fn on_commit(&mut self, header: &Header) {
        if header.view.get() < self.view {
            return;
        }
        if header.view.get() > self.view || self.status != Status::Normal {
            return self.request_start_view(header.view.get(), header.replica);
        }
        if self.is_primary() || header.replica != self.primary_index() {
            return self.drop_message("commit: not from the primary");
        }
        self.tick_primary_heard = self.tick;
        self.commit_max_advance(header.commit.get());
        self.checkpoint_seen(header.checkpoint_op.get(), header.checkpoint_id.get());
        self.commit_heard_head(header.op.get(), header.context.get());
        self.commit_journal();
        self.prepare_oks_resend(header.commit.get());
    }

    pub(crate) fn commit_max_advance(&mut self, commit: u64) {
        self.commit_max = self.commit_max.max(commit);
    }

    /// The highest op such that every op from the checkpoint up to it is
    /// durable and on the verified chain: what we may acknowledge.
    pub(crate) fn op_durable_contiguous(&self) -> u64 {
        // From the checkpoint, not from commit_min: a backup executes an op
        // as soon as the primary says it committed, durable here or not, and
        // acknowledging later ops over such a hole broke the rule restart
        // relies on ("an op above a hole was never acknowledged"; seed
        // 60360 lost a committed op that way). Bounded by the ring size.
        let mut op = self.checkpoint_op;
        while op < self.op {
            let Some(slot) = self.journal.entry(op + 1) else { break };
            let durable =
                slot.durable || self.bug(Bug::PrepareOkBeforeDurable) && slot.message.is_some();
            if !durable || !slot.verified {
                break;
            }
            op += 1;
        }
        op
    }

    pub(crate) fn on_durable(&mut self) {
        if self.status != Status::Normal {
            return;
        }
        if self.is_primary() {
            let op_durable = self.op_durable_contiguous();
            let ops: Vec<(u64, u128)> = self
                .pipeline
                .iter()
                .filter(|e| e.op <= op_durable)
                .map(|e| (e.op, e.checksum))
                .collect();
            for (op, checksum) in ops {
                self.pipeline_ok(op, checksum, self.config.replica);
            }
        } else {
            self.send_prepare_oks();
            self.commit_journal();
        }
    }

    /// Acknowledge newly durable ops. A heartbeat calls `prepare_oks_resend`
    /// instead: PrepareOks can be lost, and the primary never asks again.
    pub(crate) fn send_prepare_oks(&mut self) {
        self.prepare_oks_send(self.ok_sent_op);
    }

    fn prepare_oks_resend(&mut self, primary_commit: u64) {
        // Only the op the primary's commit waits for: a burst of resends
        // can overflow a small path queue and always lose its first packet,
        // starving exactly the op that blocks every commit behind it. The
        // primary's own commit number names it: ours may be ahead (ops we
        // executed in an older view that a new primary re-replicates), and
        // resending above it left the primary waiting forever (seed
        // 110043395266051, once view changes stopped resetting it).
        let blocking = primary_commit + 1;
        if blocking <= self.op_durable_contiguous() {
            self.prepare_ok_send(blocking);
        }
    }

    fn prepare_oks_send(&mut self, sent_op: u64) {
        self.prepare_oks_send_range(sent_op, u64::MAX);
    }

    fn prepare_oks_send_range(&mut self, sent_op: u64, op_max: u64) {
        if self.status != Status::Normal || self.is_primary() || self.syncing() {
            return;
        }
        if self.superblock.log_view != self.log_view {
            return; // log_view must be durable before a PrepareOk reveals it.
        }
        let op_durable = self.op_durable_contiguous();
        let from =
            sent_op.max(self.commit_min.min(op_durable.saturating_sub(self.config.pipeline_max)));
        for op in from + 1..=op_durable.min(op_max) {
            if !self.prepare_ok_send(op) {
                break;
            }
        }
        self.ok_sent_op = self.ok_sent_op.max(op_durable.min(op_max));
    }

    /// One PrepareOk for `op` (durable and verified up to it: the caller's
    /// check). False if it must not be sent.
    fn prepare_ok_send(&mut self, op: u64) -> bool {
        if self.status != Status::Normal || self.is_primary() || self.syncing() {
            return false;
        }
        if self.superblock.log_view != self.log_view {
            return false; // log_view must be durable before a PrepareOk reveals it.
        }
        let Some(prepare) = self.journal.header(op).copied() else { return false };
        if prepare.view.get() > self.view {
            return false;
        }
        let mut header = self.header_base(Command::PrepareOk);
        header.op.set(op);
        header.context.set(prepare.checksum.get());
        header.parent.set(prepare.parent.get());
        let message = Message::new(header, &[]);
        let primary = self.primary_index();
        self.send(Target::Replica(primary), message);
        true
    }

    /// Apply committed ops in order while we hold them (verified).
    /// Returns false if it had to stop before commit_max.
    pub(crate) fn commit_journal(&mut self) -> bool {
        if self.sync.needed_checkpoint.is_some() {
            return false; // No valid state machine until a checkpoint is installed.
        }
        if self.status != Status::Normal {
            // Only a log installed for the current view is known canonical.
            return false;
        }
        while self.commit_min < self.commit_max {
            let op = self.commit_min + 1;
            if !self.checkpoint_before_commit(op) {
                return false;
            }
            let Some(slot) = self.journal.entry(op) else { return false };
            if !slot.verified || (slot.message.is_none()) {
                return false;
            }
            let Some(prepare) = slot.message.clone() else { return false };
            self.commit_op(&prepare);
            self.commit_min = op;
        }
        true
    }

    fn commit_op(&mut self, prepare: &Message) {
        let header = *prepare.header();
        assert!(header.op.get() == self.commit_min + 1);
        let mut reply_body = Vec::new();
        let client = header.client.get();
        match header.operation {
            OPERATION_REGISTER => {}
            operation if operation >= OPERATION_STATE_MACHINE_MIN => {
                self.state_machine.commit(
                    header.op.get(),
                    header.timestamp.get(),
                    operation,
                    prepare.body(),
                    &mut reply_body,
                );
            }
            _ => {}
        }
        self.events.push(Event::Committed { prepare: prepare.clone() });
        if client == 0 {
            return;
        }
        let reply = self.reply_build(&header, &reply_body);
        if header.operation == OPERATION_REGISTER {
            if let Some(evicted) =
                self.client_table.register(client, header.op.get(), reply.clone())
            {
                if self.is_primary() {
                    self.send_eviction(evicted);
                }
            }
        } else {
            self.client_table.commit(client, header.request.get(), header.op.get(), reply.clone());
        }
        if self.is_primary() && self.status == Status::Normal {
            self.send(Target::Client(client), reply);
        }
    }

    /// A reply built only from the prepare, so every replica caches the same
    /// bytes (checkpoints must be identical across replicas).
    fn reply_build(&self, prepare: &Header, body: &[u8]) -> Message {
        let mut header = Header::new(Command::Reply);
        header.cluster = prepare.cluster;
        header.group = prepare.group;
        header.replica = prepare.replica;
        header.view = prepare.view;
        header.client = prepare.client;
        header.request = prepare.request;
        header.operation = prepare.operation;
        header.op = prepare.op;
        header.commit = prepare.op;
        header.timestamp = prepare.timestamp;
        header.context = prepare.checksum;
        Message::new(header, body)
    }

    // ------------------------------------------------------------------
    // Linearizable reads (read index).
    // ------------------------------------------------------------------

    fn on_read(&mut self, request: Message) {
        if self.reads.len() >= self.config.read_queue_max {
            return self.drop_message("read queue full");
        }
        if self.bug(Bug::ReadWithoutViewCheck) {
            let mut body = Vec::new();
            let header = *request.header();
            self.state_machine.query(header.operation, request.body(), &mut body);
            return self.read_reply(&request, &body);
        }
        // A round started before this read arrived proves nothing about it:
        // the read waits for the next round. Reads arriving while a round is
        // in flight share the following one (batching).
        let round = self.read_round + 1;
        self.reads.push_back(PendingRead { request, op_needed: self.op, round });
        if self.read_round == self.read_round_confirmed {
            self.read_round_start();
        }
        self.serve_reads();
    }

    fn read_round_start(&mut self) {
        self.read_round += 1;
        self.read_round_pongs.clear();
        self.read_round_sent_tick = self.tick;
        if self.config.replica_count == 1 {
            self.read_round_confirmed = self.read_round;
            return;
        }
        self.read_round_ping();
    }

    fn read_round_ping(&mut self) {
        let mut header = self.header_base(Command::Ping);
        header.context.set(self.read_round as u128);
        let message = Message::new(header, &[]);
        self.send_to_others(&message);
    }

    fn on_ping(&mut self, header: &Header) {
        if self.status != Status::Normal
            || header.view.get() != self.view
            || header.replica != self.primary_index()
        {
            return;
        }
        if self.superblock.log_view != self.log_view {
            return;
        }
        self.tick_primary_heard = self.tick;
        let mut pong = self.header_base(Command::Pong);
        pong.context = header.context;
        let message = Message::new(pong, &[]);
        self.send(Target::Replica(header.replica), message);
    }

    fn on_pong(&mut self, header: &Header) {
        if self.status != Status::Normal || !self.is_primary() || header.view.get() != self.view {
            return;
        }
        self.backup_heard(header.replica);
        if header.context.get() != self.read_round as u128 {
            return;
        }
        self.read_round_pongs.insert(header.replica);
        if self.read_round_pongs.len() + 1 >= self.config.quorum_replication() {
            self.read_round_confirmed = self.read_round;
            self.serve_reads();
        }
    }

    fn serve_reads(&mut self) {
        while let Some(read) = self.reads.front() {
            if self.status != Status::Normal || !self.is_primary() {
                return;
            }
            let ready =
                read.round <= self.read_round_confirmed && read.op_needed <= self.commit_min;
            if !ready {
                // Not `return`: a read waiting for a round not yet started
                // must start it below. Returning here left such a read
                // (two reads arriving while a round was in flight) until
                // the next read or resend came in: 600 ms per read at two
                // concurrent reads from one client.
                break;
            }
            let Some(read) = self.reads.pop_front() else { return };
            let header = *read.request.header();
            let mut body = Vec::new();
            self.state_machine.query(header.operation, read.request.body(), &mut body);
            self.read_reply(&read.request, &body);
        }
        let waiting = self.reads.front().is_some_and(|read| read.round > self.read_round);
        if waiting && self.read_round == self.read_round_confirmed {
            self.read_round_start();
        }
    }

    fn read_reply(&mut self, request: &Message, body: &[u8]) {
        let r = request.header();
        let mut header = self.header_base(Command::Reply);
        header.client = r.client;
        header.request = r.request;
        header.operation = r.operation;
        header.context.set(request.checksum());
        header.op.set(0);
        header.commit.set(self.commit_min);
        let message = Message::new(header, body);
        self.send(Target::Client(r.client.get()), message);
    }

    fn backup_heard(&mut self, replica: u8) {
        if let Some(tick) = self.tick_backup_heard.get_mut(replica as usize) {
            *tick = self.tick;
        }
    }

    /// True if this replica is in a working view and should not let one
    /// other replica's StartViewChange or DoViewChange for a newer view pull
    /// it out: a backup that heard its primary within the primary timeout,
    /// or a primary that heard a quorum (itself included) of backups of its
    /// view within it. Without this, a replica that crashes and restarts
    /// every few ticks drags a healthy quorum into a view change each time
    /// and nothing commits (R=5 seed 110043395466191, liveness). A replica
    /// that truly lost its primary times out itself and then listens.
    pub(crate) fn view_change_disruptive(&self) -> bool {
        if self.status != Status::Normal {
            return false;
        }
        let fresh = |tick: u64| self.tick < tick + self.config.tick_primary_timeout;
        if !self.is_primary() {
            return fresh(self.tick_primary_heard);
        }
        let heard = self
            .tick_backup_heard
            .iter()
            .enumerate()
            .filter(|(replica, tick)| *replica != self.config.replica as usize && fresh(**tick))
            .count();
        heard + 1 >= self.config.quorum_replication()
    }

    /// Forget everything that belongs to being primary (on a view change).
    pub(crate) fn primary_abdicate(&mut self) {
        self.pipeline.clear();
        self.request_queue.clear();
        self.reads.clear();
        self.read_round_pongs.clear();
        self.read_round_confirmed = self.read_round;
    }

    pub(crate) fn pipeline_restart(&mut self) {
        // A new primary re-replicates every uncommitted op of its log.
        assert!(self.pipeline.is_empty());
        for op in self.commit_max + 1..=self.op {
            let checksum = self.journal.header(op).map(|h| h.checksum.get()).unwrap_or(0);
            self.pipeline.push_back(PipelineEntry { op, checksum, ok_from: BTreeSet::new() });
        }
        self.ok_sent_op = self.commit_min;
        self.timestamp_last = self
            .timestamp_last
            .max(self.journal.header(self.op).map(|h| h.timestamp.get()).unwrap_or(0));
        self.on_durable();
    }

    // ------------------------------------------------------------------
    // Superblock and checkpoints.
    // ------------------------------------------------------------------

    /// Persist the replica's current view state; waits for any write in flight.
    pub(crate) fn superblock_update(&mut self) {
        if self.superblock_writing.is_some() {
            self.superblock_queued = true;
            return;
        }
        let mut next = self.superblock.successor();
        next.view = self.view;
        next.log_view = self.log_view;
        // Only what this replica executed: a commit number learned during a
        // view change describes the canonical log, not necessarily ours, and
        // replaying it onto our own log at restart could execute a stale op.
        next.commit_max = next.commit_max.max(self.commit_min);
        if let Some(pending) = self.checkpoint_pending.as_ref().filter(|p| p.blob_durable) {
            next.checkpoint_op = pending.op;
            next.checkpoint_checksum = pending.checksum;
            next.checkpoint_size = pending.blob.len() as u64;
            next.checkpoint_area = pending.area;
            next.checkpoint_header = pending.header;
        }
        // A checkpoint enters the superblock only once its blob is durable:
        // the superblock must never point at bytes that are not on disk.
        if let Some(sync) = self.sync.installing.as_ref().filter(|s| s.blob_durable) {
            next.checkpoint_op = sync.op;
            next.checkpoint_checksum = sync.checksum;
            next.checkpoint_size = sync.blob.len() as u64;
            next.checkpoint_area = sync.area;
            next.checkpoint_header = sync.header;
        }
        if self.log_view > self.superblock.log_view || self.view_change.head_changed {
            next.log_view_head_op = self.op;
            next.log_view_head_checksum = self
                .journal
                .header(self.op)
                .map(|h| h.checksum.get())
                .unwrap_or(self.view_change.head_checksum);
            self.view_change.head_changed = false;
        }
        self.superblock_write(next);
    }

    pub(crate) fn superblock_write(&mut self, next: SuperblockState) {
        assert!(self.superblock_writing.is_none());
        // A repair rewrites the current version itself; anything else moves on.
        assert!(next.sequence > self.superblock.sequence || next == self.superblock);
        assert!(next.view >= self.superblock.view);
        assert!(next.log_view >= self.superblock.log_view);
        self.superblock_write_half(&next, 0);
        self.superblock_writing = Some(next);
    }

    /// Copies are written two at a time, the second pair only after the
    /// first is durable: a crash then tears at most one pair, so with at
    /// most one copy corrupt some version always keeps two intact copies.
    /// `superblock_copy_order` puts copies that do not hold the current
    /// version first (after a non-unanimous open), so a torn repair never
    /// destroys the version it repairs.
    fn superblock_write_half(&mut self, next: &SuperblockState, half: u8) {
        use crate::vsr::storage::{Zone, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
        const _: () = assert!(SUPERBLOCK_COPIES == 4);
        let order = self.superblock_copy_order;
        for copy in [order[2 * half as usize], order[2 * half as usize + 1]] {
            let id = self.journal.write_id(WriteKind::Superblock { sequence: next.sequence, half });
            let offset = (copy as usize * SUPERBLOCK_COPY_SIZE) as u64;
            let data = next.encode(copy);
            self.write(vec![Write { id, zone: Zone::Superblock, offset, data: data.into() }]);
        }
        self.superblock_copies_pending = 2;
    }

    fn superblock_done(&mut self, sequence: u64, half: u8) {
        let Some(written) = self.superblock_writing.take() else {
            panic!("superblock write done without a write in flight");
        };
        assert!(written.sequence == sequence);
        assert!(self.superblock_copies_pending > 0);
        self.superblock_copies_pending -= 1;
        if self.superblock_copies_pending > 0 {
            self.superblock_writing = Some(written);
            return;
        }
        if half == 0 {
            self.superblock_write_half(&written, 1);
            self.superblock_writing = Some(written);
            return;
        }
        self.superblock_repairing = false;
        // Every new checkpoint goes to the other area, so the area tells a
        // change even when a sync reinstalls the checkpoint we already named.
        let checkpoint_changed = written.checkpoint_area != self.superblock.checkpoint_area
            || written.checkpoint_checksum != self.superblock.checkpoint_checksum;
        self.superblock = written;
        if checkpoint_changed {
            self.checkpoint_durable();
        }
        self.view_change_superblock_durable();
        if self.superblock_queued {
            self.superblock_queued = false;
            self.superblock_update();
        }
    }

    /// Before committing `op`: take the checkpoint at `op - 1` if one is
    /// due. Returns false if commits must wait (the previous checkpoint is
    /// not durable yet), so every replica snapshots exactly the same ops.
    fn checkpoint_before_commit(&mut self, op: u64) -> bool {
        let at = op - 1;
        if self.sync.installing.is_some() {
            return false; // One checkpoint change at a time.
        }
        if at == 0 || at % self.config.checkpoint_interval != 0 || at <= self.checkpoint_op {
            return true;
        }
        match &self.checkpoint_pending {
            Some(pending) if pending.op == at => true,
            Some(_) => false,
            None => {
                self.checkpoint_start(at);
                true
            }
        }
    }

    fn checkpoint_start(&mut self, op: u64) {
        assert!(op == self.commit_min);
        let Some(header) = self.journal.header(op).copied() else {
            panic!("checkpoint at {op} without its prepare header");
        };
        // Encoded once, into a buffer sized from the last checkpoint, then
        // padded in place: the shard runs nothing else meanwhile, and each
        // copy of a multi-MiB state was a stall every request in flight
        // paid (perf/results/2026-12-04/checkpoint-copies/).
        let sector = crate::vsr::storage::SECTOR_SIZE;
        let hint = (self.superblock.checkpoint_size as usize)
            .saturating_add(1 << 16)
            .min(self.config.checkpoint_size_max as usize);
        let mut data = Vec::with_capacity(hint.div_ceil(sector) * sector);
        checkpoint_blob_into(&mut data, &header, &self.state_machine, &self.client_table);
        let length = data.len();
        assert!(
            length as u64 <= self.config.checkpoint_size_max,
            "checkpoint exceeds checkpoint_size_max"
        );
        data.resize(length.div_ceil(sector).max(1) * sector, 0);
        let data: std::rc::Rc<[u8]> = data.into();
        let blob: std::rc::Rc<[u8]> = data[..length].into();
        let area = 1 - self.superblock.checkpoint_area;
        let checksum = crate::vsr::message::checksum(&blob);
        let id = self.journal.write_id(WriteKind::Checkpoint { op });
        let offset = area as u64 * self.config.checkpoint_size_max;
        self.checkpoint_pending =
            Some(CheckpointPending { op, checksum, blob, area, header, blob_durable: false });
        self.write(vec![Write { id, zone: crate::vsr::storage::Zone::Checkpoint, offset, data }]);
    }

    /// Decode a checkpoint into (header, state machine bytes, client table).
    pub(crate) fn checkpoint_decode(
        &self,
        blob: &[u8],
    ) -> Result<(Header, std::ops::Range<usize>, ClientTable), &'static str> {
        let magic_end = CHECKPOINT_MAGIC.len();
        if blob.get(..magic_end) != Some(&CHECKPOINT_MAGIC[..]) {
            return Err("checkpoint: bad magic");
        }
        let header_end = magic_end + crate::vsr::message::HEADER_SIZE;
        let header_bytes = blob.get(magic_end..header_end).ok_or("checkpoint: truncated header")?;
        let header = <Header as zerocopy::FromBytes>::read_from_bytes(header_bytes)
            .map_err(|_| "checkpoint: header")?;
        let length_bytes: [u8; 8] = blob
            .get(header_end..header_end + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or("checkpoint: truncated")?;
        let state_len = u64::from_le_bytes(length_bytes) as usize;
        let state_start = header_end + 8;
        let state_end = state_start.checked_add(state_len).ok_or("checkpoint: overflow")?;
        if state_end > blob.len() {
            return Err("checkpoint: truncated state");
        }
        let (table, used) = ClientTable::decode(
            &blob[state_end..],
            self.config.clients_max,
            self.config.message_size_max as usize,
        )?;
        if state_end + used != blob.len() {
            return Err("checkpoint: trailing bytes");
        }
        Ok((header, state_start..state_end, table))
    }

    fn checkpoint_blob_done(&mut self, op: u64) {
        if self.sync.installing.as_ref().is_some_and(|s| s.op == op) {
            return self.sync_blob_durable(op);
        }
        match self.checkpoint_pending.as_mut() {
            Some(pending) if pending.op == op => {
                pending.blob_durable = true;
                self.superblock_update();
            }
            _ => panic!("checkpoint write for op {op} that nobody waits for"),
        }
    }

    /// The superblock now names a new checkpoint: ours, or one from a sync
    /// (told apart by checksum: a sync may reinstall the op we had).
    fn checkpoint_durable(&mut self) {
        let checksum = self.superblock.checkpoint_checksum;
        if self.sync.installing.as_ref().is_some_and(|s| s.checksum == checksum) {
            return self.sync_durable();
        }
        let Some(pending) = self.checkpoint_pending.take() else {
            panic!("superblock checkpoint advanced with no checkpoint pending");
        };
        assert!(pending.op == self.superblock.checkpoint_op);
        self.checkpoint_op = pending.op;
        self.checkpoint_id = pending.checksum;
        self.sync.blob_current = Some(pending.blob.clone());
        self.events.push(Event::Checkpointed {
            op: pending.op,
            checksum: pending.checksum,
            blob: pending.blob,
        });
        self.commit_journal();
        self.prepare_from_queue();
    }
}

pub(crate) const CHECKPOINT_MAGIC: &[u8; 8] = b"TOASTYCP";

/// The one checkpoint encoding (also used by `format` for the empty state):
/// the prepare header at the checkpoint op (the anchor of the hash chain),
/// the state machine, and the client table.
pub(crate) fn checkpoint_blob<S: StateMachine>(
    header: &Header,
    state_machine: &S,
    client_table: &ClientTable,
) -> Vec<u8> {
    let mut blob = Vec::new();
    checkpoint_blob_into(&mut blob, header, state_machine, client_table);
    blob
}

/// `checkpoint_blob`, appended to `blob` (empty on entry).
fn checkpoint_blob_into<S: StateMachine>(
    blob: &mut Vec<u8>,
    header: &Header,
    state_machine: &S,
    client_table: &ClientTable,
) {
    assert!(blob.is_empty());
    blob.extend_from_slice(CHECKPOINT_MAGIC);
    blob.extend_from_slice(zerocopy::IntoBytes::as_bytes(header));
    let length_at = blob.len();
    blob.extend_from_slice(&0u64.to_le_bytes());
    state_machine.snapshot(blob);
    let state_length = (blob.len() - length_at - 8) as u64;
    blob[length_at..length_at + 8].copy_from_slice(&state_length.to_le_bytes());
    client_table.encode(blob);
}

pub(crate) struct CheckpointPending {
    pub op: u64,
    pub checksum: u128,
    pub blob: std::rc::Rc<[u8]>,
    pub area: u8,
    pub header: Header,
    pub blob_durable: bool,
}
