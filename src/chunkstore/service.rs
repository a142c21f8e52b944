//! A shard's chunk service: chunk writes and reads from clients, repair of
//! chunks its group's committed metadata references but it lacks (fetched
//! from the other replicas), and collection of chunks nothing references
//! after a grace period.
//!
//! Sans-IO: it drives the [`ChunkStore`] core and emits [`ChunkOut`]s (a
//! message for a connection, or for a peer replica); the shard's event loop
//! executes them. Every queue is bounded.
//!
//! Rules:
//! - **A write is acknowledged once durable** (the store's `Durable`
//!   event), with the crc32c it was stored under: the one the write
//!   claims (`message::chunk_crc32c_claim`), else the store's own. The
//!   client checks it against its own.
//! - **Missing means referenced and absent.** A chunk joins `missing` when a
//!   committed put names it (or an audit of the whole state finds it) and the
//!   store neither holds it nor has a write of it pending. It is fetched
//!   only after `repair_delay_ticks`: the client's own write to this replica
//!   is usually just behind the commit (a quorum of the others sufficed).
//! - **Repaired bytes are verified** against the reference's length and
//!   crc32c before they are stored; a peer's bad copy is never kept.
//! - **Collection only when caught up.** Unreferenced chunks are deleted
//!   only while the replica is normal, not syncing and has executed every op
//!   it knows committed, and only after the chunk was seen unreferenced for
//!   `gc_grace_ticks` (an upload in flight writes its chunks before its
//!   metadata commits).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::chunkstore::{AppendError, ChunkStore, DeleteError, Event, ReadSubmitError, Ticket};
use crate::vsr::message::{chunk_crc32c_claimed, ChunkRefusal, Command, Header, Message};
use crate::vsr::state_machine::{ChunkRef, ObjectStore, Request};

/// Knobs (see tuning.md).
#[derive(Clone, Copy, Debug)]
pub struct ChunkServiceConfig {
    pub cluster: u128,
    pub group: u32,
    pub replica: u8,
    pub replica_count: u8,
    /// Bytes of chunk writes waiting for room in the store.
    pub write_queue_bytes_max: usize,
    /// Chunk reads waiting for a read slot.
    pub read_queue_max: usize,
    /// Ticks a missing chunk waits before it is fetched.
    pub repair_delay_ticks: u64,
    /// Fetches in flight, and how long one may take.
    pub repair_in_flight_max: usize,
    pub repair_timeout_ticks: u64,
    /// Chunks tracked as missing at most (an audit finds the rest later).
    pub missing_max: usize,
    /// Ticks between full audits of the state against the store.
    pub audit_interval_ticks: u64,
    /// Ticks between collection passes, and the grace period.
    pub gc_interval_ticks: u64,
    pub gc_grace_ticks: u64,
    /// Deletes started per collection pass.
    pub gc_deletes_per_pass_max: usize,
}

/// A driver's name for a connection (the shard's transport, or the
/// simulator's network): answers go back where their request came from.
pub type ConnId = u64;

/// Missing chunks one repair round looks at.
const REPAIR_SCAN_MAX: usize = 512;

/// What the event loop must send.
#[derive(Debug)]
pub enum ChunkOut {
    Conn(ConnId, Message),
    Replica(u8, Message),
}

#[derive(Clone, Copy, Debug)]
enum Waiter {
    /// A client's write or read on a connection, with its sequence number.
    Client { conn: ConnId, request: u32, client: u128 },
    /// A replica's repair read.
    Replica { replica: u8, request: u32 },
    /// Our own repair append or collection delete.
    Local,
}

struct Missing {
    chunk: ChunkRef,
    tick_found: u64,
    attempts: u32,
    /// (peer asked, request number, tick asked) of the fetch in flight.
    fetch: Option<(u8, u32, u64)>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkServiceStats {
    pub writes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub repairs: u64,
    pub collected: u64,
    pub checksum_failures: u64,
    pub dropped: u64,
    pub refused: u64,
}

pub struct ChunkService {
    config: ChunkServiceConfig,
    writes: BTreeMap<Ticket, (Waiter, u128, u64)>,
    reads: BTreeMap<crate::chunkstore::ReadTicket, Waiter>,
    write_queue: VecDeque<(ConnId, Message)>,
    write_queue_bytes: usize,
    read_queue: VecDeque<(Waiter, u128)>,
    /// Chunk ids with a write pending (appended, not yet durable).
    pending: BTreeMap<u128, u32>,
    missing: BTreeMap<u128, Missing>,
    /// Fetches in flight (entries of `missing` with `fetch` set).
    repair_in_flight: usize,
    /// Where the next repair round starts in `missing`.
    repair_cursor: u128,
    /// Unreferenced chunks and the tick they were first seen so.
    unreferenced: BTreeMap<u128, u64>,
    tick: u64,
    tick_audit: u64,
    audited: bool,
    tick_gc: u64,
    request_next: u32,
    stopping: bool,
    pub stats: ChunkServiceStats,
    /// Durations (ticks) from write arrival to durable, for metrics.
    pub write_latency_ticks: Vec<u64>,
}

impl ChunkService {
    pub fn new(config: ChunkServiceConfig) -> ChunkService {
        assert!(config.replica < config.replica_count);
        ChunkService {
            config,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            write_queue: VecDeque::new(),
            write_queue_bytes: 0,
            read_queue: VecDeque::new(),
            pending: BTreeMap::new(),
            missing: BTreeMap::new(),
            repair_in_flight: 0,
            repair_cursor: 0,
            unreferenced: BTreeMap::new(),
            tick: 0,
            // The first audit soon after start: the checkpointed state
            // fires no commit events.
            tick_audit: 0,
            audited: false,
            tick_gc: 0,
            request_next: 1,
            stopping: false,
            stats: ChunkServiceStats::default(),
            write_latency_ticks: Vec::new(),
        }
    }

    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }

    pub fn write_queue_len(&self) -> usize {
        self.write_queue.len()
    }

    /// Nothing acknowledged is waiting on the disk.
    pub fn idle(&self) -> bool {
        self.writes.is_empty() && self.write_queue.is_empty()
    }

    /// Refuse new writes from now on (clean shutdown).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    fn header(&self, command: Command, chunk_id: u128, request: u32, client: u128) -> Header {
        let mut header = Header::new(command);
        header.cluster.set(self.config.cluster);
        header.group.set(self.config.group);
        header.replica = self.config.replica;
        header.context.set(chunk_id);
        header.request.set(request);
        header.client.set(client);
        header
    }

    fn answer(&self, waiter: Waiter, header: Header, body: &[u8], out: &mut Vec<ChunkOut>) {
        let message = Message::new(header, body);
        match waiter {
            Waiter::Client { conn, .. } => out.push(ChunkOut::Conn(conn, message)),
            Waiter::Replica { replica, .. } => out.push(ChunkOut::Replica(replica, message)),
            Waiter::Local => {}
        }
    }

    // ------------------------------------------------------------------
    // Client traffic.
    // ------------------------------------------------------------------

    /// A `ChunkWrite` arrived on `conn`.
    pub fn on_write(
        &mut self,
        store: &mut ChunkStore,
        conn: ConnId,
        message: Message,
        out: &mut Vec<ChunkOut>,
    ) {
        if self.stopping {
            let header = *message.header();
            return self.refuse(conn, &header, ChunkRefusal::Stopping, out);
        }
        if !self.write_queue.is_empty() {
            return self.write_enqueue(conn, message);
        }
        if let Some(message) = self.write_try(store, conn, message, out) {
            self.write_enqueue(conn, message);
        }
    }

    fn write_enqueue(&mut self, conn: ConnId, message: Message) {
        let size = message.bytes().len();
        if self.write_queue_bytes + size > self.config.write_queue_bytes_max {
            // The client's timeout resends it: backpressure by loss.
            self.stats.dropped += 1;
            return;
        }
        self.write_queue_bytes += size;
        self.write_queue.push_back((conn, message));
    }

    /// Append one write; gives it back if the store is busy.
    fn write_try(
        &mut self,
        store: &mut ChunkStore,
        conn: ConnId,
        message: Message,
        out: &mut Vec<ChunkOut>,
    ) -> Option<Message> {
        let header = *message.header();
        let chunk_id = header.context.get();
        let appended = match chunk_crc32c_claimed(header.op.get()) {
            Some(crc) => store.append_with_crc32c(chunk_id, message.body(), crc),
            None => store.append(chunk_id, message.body()),
        };
        match appended {
            Ok(ticket) => {
                let waiter = Waiter::Client {
                    conn,
                    request: header.request.get(),
                    client: header.client.get(),
                };
                self.writes.insert(ticket, (waiter, chunk_id, self.tick));
                *self.pending.entry(chunk_id).or_insert(0) += 1;
                None
            }
            Err(AppendError::Busy) => Some(message),
            Err(AppendError::NoSpace) => {
                self.refuse(conn, &header, ChunkRefusal::NoSpace, out);
                None
            }
            Err(AppendError::TooLarge { .. }) => {
                self.refuse(conn, &header, ChunkRefusal::TooLarge, out);
                None
            }
            Err(AppendError::ContentMismatch) => {
                self.refuse(conn, &header, ChunkRefusal::ContentMismatch, out);
                None
            }
        }
    }

    fn refuse(
        &mut self,
        conn: ConnId,
        request: &Header,
        why: ChunkRefusal,
        out: &mut Vec<ChunkOut>,
    ) {
        self.stats.refused += 1;
        let mut header = self.header(
            Command::ChunkRefused,
            request.context.get(),
            request.request.get(),
            request.client.get(),
        );
        header.op.set(why as u64);
        out.push(ChunkOut::Conn(conn, Message::new(header, &[])));
    }

    /// A `ChunkRead` from a client (`conn`) or a repairing replica.
    pub fn on_read(
        &mut self,
        store: &mut ChunkStore,
        conn: ConnId,
        message: &Message,
        out: &mut Vec<ChunkOut>,
    ) {
        let header = message.header();
        let waiter = if header.client.get() == 0 {
            Waiter::Replica { replica: header.replica, request: header.request.get() }
        } else {
            Waiter::Client { conn, request: header.request.get(), client: header.client.get() }
        };
        let chunk_id = header.context.get();
        if !self.read_queue.is_empty() {
            return self.read_enqueue(waiter, chunk_id, out);
        }
        if !self.read_try(store, waiter, chunk_id, out) {
            self.read_enqueue(waiter, chunk_id, out);
        }
    }

    fn read_enqueue(&mut self, waiter: Waiter, chunk_id: u128, out: &mut Vec<ChunkOut>) {
        if self.read_queue.len() >= self.config.read_queue_max {
            // Full: the reader tries another replica.
            self.stats.dropped += 1;
            return self.answer_missing(waiter, chunk_id, out);
        }
        self.read_queue.push_back((waiter, chunk_id));
    }

    /// Start one read; false if the store is busy.
    fn read_try(
        &mut self,
        store: &mut ChunkStore,
        waiter: Waiter,
        chunk_id: u128,
        out: &mut Vec<ChunkOut>,
    ) -> bool {
        let Some(location) = store.locate(chunk_id) else {
            self.answer_missing(waiter, chunk_id, out);
            return true;
        };
        match store.read(chunk_id, location) {
            Ok(ticket) => {
                self.reads.insert(ticket, waiter);
                true
            }
            Err(ReadSubmitError::Busy) => false,
            Err(ReadSubmitError::InvalidLocation) => {
                self.answer_missing(waiter, chunk_id, out);
                true
            }
        }
    }

    fn answer_missing(&self, waiter: Waiter, chunk_id: u128, out: &mut Vec<ChunkOut>) {
        let (request, client) = match waiter {
            Waiter::Client { request, client, .. } => (request, client),
            Waiter::Replica { request, .. } => (request, 0),
            Waiter::Local => return,
        };
        let header = self.header(Command::ChunkMissing, chunk_id, request, client);
        self.answer(waiter, header, &[], out);
    }

    /// Retry queued writes and reads after the store made room.
    pub fn queues_drive(&mut self, store: &mut ChunkStore, out: &mut Vec<ChunkOut>) {
        while let Some((conn, message)) = self.write_queue.pop_front() {
            let size = message.bytes().len();
            if let Some(message) = self.write_try(store, conn, message, out) {
                self.write_queue.push_front((conn, message));
                break;
            }
            self.write_queue_bytes -= size;
        }
        while let Some((waiter, chunk_id)) = self.read_queue.pop_front() {
            if !self.read_try(store, waiter, chunk_id, out) {
                self.read_queue.push_front((waiter, chunk_id));
                break;
            }
        }
    }

    // ------------------------------------------------------------------
    // Store events.
    // ------------------------------------------------------------------

    pub fn on_store_event(&mut self, event: Event, out: &mut Vec<ChunkOut>) {
        match event {
            Event::Durable { ticket, chunk_id, location } => {
                let Some((waiter, _, tick_arrived)) = self.writes.remove(&ticket) else {
                    return; // A delete of ours.
                };
                if let Some(count) = self.pending.get_mut(&chunk_id) {
                    *count -= 1;
                    if *count == 0 {
                        self.pending.remove(&chunk_id);
                    }
                }
                self.missing_remove(chunk_id);
                self.stats.writes += 1;
                self.stats.write_bytes += u64::from(location.length);
                if let Waiter::Client { request, client, .. } = waiter {
                    self.write_latency_ticks.push(self.tick - tick_arrived);
                    let mut header = self.header(Command::ChunkWriteOk, chunk_id, request, client);
                    header.op.set(u64::from(location.crc32c));
                    self.answer(waiter, header, &[], out);
                } else {
                    self.stats.repairs += 1;
                }
            }
            Event::Read { ticket, chunk_id, result } => {
                let Some(waiter) = self.reads.remove(&ticket) else { return };
                match result {
                    Ok(bytes) => {
                        let (request, client) = match waiter {
                            Waiter::Client { request, client, .. } => (request, client),
                            Waiter::Replica { request, .. } => (request, 0),
                            Waiter::Local => return,
                        };
                        let data = bytes.as_slice();
                        self.stats.reads += 1;
                        self.stats.read_bytes += data.len() as u64;
                        let mut header = self.header(Command::ChunkData, chunk_id, request, client);
                        header.op.set(u64::from(bytes.crc32c()));
                        self.answer(waiter, header, data, out);
                    }
                    Err(_) => {
                        // Our copy is bad: the reader goes elsewhere, and an
                        // audit will find the chunk missing once the store
                        // has dropped it (scrubber events do it at once).
                        self.stats.checksum_failures += 1;
                        self.answer_missing(waiter, chunk_id, out);
                    }
                }
            }
            Event::Corrupt { chunk_id, location, .. } => {
                self.stats.checksum_failures += 1;
                let chunk = ChunkRef {
                    id: chunk_id.to_le_bytes(),
                    length: location.length,
                    crc32c: location.crc32c,
                };
                self.missing_add(chunk, true);
            }
            Event::Relocated { .. } => {}
        }
    }

    // ------------------------------------------------------------------
    // Repair.
    // ------------------------------------------------------------------

    fn missing_add(&mut self, chunk: ChunkRef, now: bool) {
        let chunk_id = u128::from_le_bytes(chunk.id);
        if self.missing.len() >= self.config.missing_max || self.missing.contains_key(&chunk_id) {
            return;
        }
        let tick_found = if now { 0 } else { self.tick };
        self.missing.insert(chunk_id, Missing { chunk, tick_found, attempts: 0, fetch: None });
    }

    fn needed(&self, store: &ChunkStore, chunk_id: u128) -> bool {
        store.locate(chunk_id).is_none() && !self.pending.contains_key(&chunk_id)
    }

    /// A prepare this replica committed: note the chunks it references.
    pub fn on_committed(&mut self, store: &ChunkStore, prepare: &Message) {
        let header = prepare.header();
        // Allocates only for chunks (inline objects have none).
        let mut refs = Vec::new();
        if Request::put_chunk_refs(header.operation, prepare.body(), &mut refs).is_ok() {
            for chunk in refs {
                if self.needed(store, u128::from_le_bytes(chunk.id)) {
                    self.missing_add(chunk, false);
                }
            }
        }
    }

    /// Compare the whole state with the store (after start and state sync,
    /// and periodically): every referenced chunk absent here is missing.
    pub fn audit(&mut self, store: &ChunkStore, state: &ObjectStore) {
        self.tick_audit = self.tick;
        self.audited = true;
        let missing: Vec<ChunkRef> = state
            .chunk_refs()
            .filter(|chunk| self.needed(store, u128::from_le_bytes(chunk.id)))
            .copied()
            .collect();
        for chunk in missing {
            self.missing_add(chunk, false);
        }
    }

    /// A peer's answer to one of our repair fetches.
    pub fn on_repair_answer(&mut self, store: &mut ChunkStore, message: &Message) {
        let header = message.header();
        let chunk_id = header.context.get();
        let Some(missing) = self.missing.get_mut(&chunk_id) else { return };
        let Some((peer, request, _)) = missing.fetch else { return };
        if peer != header.replica || request != header.request.get() {
            return;
        }
        missing.fetch = None;
        self.repair_in_flight -= 1;
        if message.command() != Command::ChunkData {
            return; // ChunkMissing: the next round asks another peer.
        }
        let body = message.body();
        if body.len() != missing.chunk.length as usize
            || crc32c::crc32c(body) != missing.chunk.crc32c
        {
            self.stats.checksum_failures += 1;
            return;
        }
        // Busy or full: the next round fetches it again.
        if let Ok(ticket) = store.append_with_crc32c(chunk_id, body, missing.chunk.crc32c) {
            self.writes.insert(ticket, (Waiter::Local, chunk_id, self.tick));
            *self.pending.entry(chunk_id).or_insert(0) += 1;
        }
    }

    /// Visit up to `REPAIR_SCAN_MAX` missing chunks from the cursor: drop
    /// those that arrived, expire stalled fetches, start new ones while
    /// fewer than `repair_in_flight_max` are in flight. Bounded work per
    /// tick however many chunks are missing.
    fn repair_round(&mut self, store: &ChunkStore, out: &mut Vec<ChunkOut>) {
        let tick = self.tick;
        let config = self.config;
        let mut visit: Vec<u128> = self
            .missing
            .range(self.repair_cursor..)
            .map(|(id, _)| *id)
            .take(REPAIR_SCAN_MAX)
            .collect();
        if visit.len() < REPAIR_SCAN_MAX {
            let more = REPAIR_SCAN_MAX - visit.len();
            visit.extend(self.missing.range(..self.repair_cursor).map(|(id, _)| *id).take(more));
        }
        self.repair_cursor = visit.last().map_or(0, |id| id.wrapping_add(1));
        for chunk_id in visit {
            if !self.needed(store, chunk_id) && !self.pending.contains_key(&chunk_id) {
                self.missing_remove(chunk_id);
                continue;
            }
            let Some(missing) = self.missing.get_mut(&chunk_id) else { continue };
            if let Some((_, _, asked)) = missing.fetch {
                if tick < asked + config.repair_timeout_ticks {
                    continue;
                }
                missing.fetch = None;
                self.repair_in_flight -= 1;
            }
            if self.repair_in_flight >= config.repair_in_flight_max
                || tick < missing.tick_found + config.repair_delay_ticks
                || config.replica_count < 2
            {
                continue;
            }
            // Peers in turn, starting after ourselves.
            let step = 1 + missing.attempts % u32::from(config.replica_count - 1);
            let peer = ((u32::from(config.replica) + step) % u32::from(config.replica_count)) as u8;
            missing.attempts += 1;
            let request = self.request_next;
            self.request_next = self.request_next.wrapping_add(1).max(1);
            missing.fetch = Some((peer, request, tick));
            self.repair_in_flight += 1;
            let header = self.header(Command::ChunkRead, chunk_id, request, 0);
            out.push(ChunkOut::Replica(peer, Message::new(header, &[])));
        }
    }

    fn missing_remove(&mut self, chunk_id: u128) {
        if let Some(missing) = self.missing.remove(&chunk_id) {
            if missing.fetch.is_some() {
                self.repair_in_flight -= 1;
            }
        }
    }

    // ------------------------------------------------------------------
    // Collection.
    // ------------------------------------------------------------------

    fn collect(&mut self, store: &mut ChunkStore, state: &ObjectStore) {
        self.tick_gc = self.tick;
        let mut referenced: Vec<u128> =
            state.chunk_refs().map(|chunk| u128::from_le_bytes(chunk.id)).collect();
        referenced.sort_unstable();
        let tick = self.tick;
        let mut seen = BTreeSet::new();
        for (chunk_id, _) in store.chunks() {
            if referenced.binary_search(&chunk_id).is_err() && !self.pending.contains_key(&chunk_id)
            {
                seen.insert(chunk_id);
                self.unreferenced.entry(chunk_id).or_insert(tick);
            }
        }
        // Forget chunks that are referenced again (or gone).
        self.unreferenced.retain(|chunk_id, _| seen.contains(chunk_id));
        let due: Vec<u128> = self
            .unreferenced
            .iter()
            .filter(|(_, first)| tick >= **first + self.config.gc_grace_ticks)
            .map(|(chunk_id, _)| *chunk_id)
            .take(self.config.gc_deletes_per_pass_max)
            .collect();
        for chunk_id in due {
            match store.delete(chunk_id) {
                Ok(ticket) => {
                    self.writes.insert(ticket, (Waiter::Local, chunk_id, tick));
                    self.unreferenced.remove(&chunk_id);
                    self.stats.collected += 1;
                }
                Err(DeleteError::NotFound) => {
                    self.unreferenced.remove(&chunk_id);
                }
                Err(DeleteError::Busy) | Err(DeleteError::NoSpace) => break,
            }
        }
    }

    /// One tick. `caught_up`: the replica is normal, not syncing, and has
    /// executed every op it knows committed (collection is safe).
    pub fn on_tick(
        &mut self,
        store: &mut ChunkStore,
        state: &ObjectStore,
        caught_up: bool,
        out: &mut Vec<ChunkOut>,
    ) {
        self.tick += 1;
        let audit_due =
            !self.audited || self.tick >= self.tick_audit + self.config.audit_interval_ticks;
        if audit_due && caught_up {
            self.audit(store, state);
        }
        if !self.missing.is_empty() {
            self.repair_round(store, out);
        }
        if caught_up
            && self.config.gc_interval_ticks > 0
            && self.tick >= self.tick_gc + self.config.gc_interval_ticks
        {
            self.collect(store, state);
        }
        self.queues_drive(store, out);
    }
}
