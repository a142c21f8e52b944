//! The object client: the sans-IO logic every user of a cluster runs (the
//! S3 front end on each shard, `toasty-client`, the simulator's clients).
//!
//! It owns the protocol between a client and the replication groups:
//! - **metadata writes** go through VSR client sessions (registered,
//!   exactly-once, one request in flight per session); the writes queued for
//!   a group are gathered into one [`Request::Batch`] of up to
//!   [`BATCH_COUNT_MAX`] object writes per session turn (TigerBeetle-style
//!   batching: one prepare, one WAL write, one reply for many writes);
//! - **metadata reads** are read-only requests the primary serves after a
//!   read-index round (linearizable); many may be in flight;
//! - **chunk writes** go to every replica of the group at once and complete
//!   when a replication quorum (f+1) reports them durable; the others get
//!   the same bytes and are repaired by their shard if they miss them;
//! - **chunk reads** go to one replica (the preferred one first), are
//!   verified against the metadata's crc32c and length, and fall back to the
//!   next replica on a checksum failure, a `ChunkMissing` or a timeout.
//!
//! It follows the primary from the view in replies and rotates on
//! timeouts. Events in: [`ObjectClient::on_message`], [`ObjectClient::on_tick`];
//! effects out: [`ObjectClient::take_sends`] and
//! [`ObjectClient::take_completions`]. No clock, no I/O, no randomness
//! beyond the seed given to [`ObjectClient::new`].

pub mod cache;

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use crate::vsr::message::{
    chunk_crc32c_claim, shared_zeroed, ChunkRefusal, Command, Header, Message, HEADER_SIZE,
    OPERATION_REGISTER,
};
use crate::vsr::state_machine::{ChunkRef, Reply, Request, BATCH_COUNT_MAX};

/// The 128-bit cluster id every message carries, from the cluster's name
/// (servers and clients derive it the same way).
pub fn cluster_id(name: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(format!("toasty-cluster:{name}").as_bytes()) | 1
}

/// Which group owns an object: xxh3-64 of (bucket id, key) mod groups.
/// Fixed for a cluster's life (DESIGN.md §1): changing it would orphan data.
pub fn group_of(bucket_id: u64, key: &[u8], group_count: u32) -> u32 {
    assert!(group_count > 0);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&bucket_id.to_le_bytes());
    hasher.update(key);
    (hasher.digest() % u64::from(group_count)) as u32
}

/// Every knob of the client; see `tuning.md`.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    pub cluster: u128,
    pub replica_count: u8,
    pub group_count: u32,
    /// The replicas' `message_size_max`: a metadata request must fit.
    pub message_size_max: usize,
    /// VSR sessions per group (each has one write request in flight).
    pub sessions_per_group: u32,
    /// Ticks without an answer before a request is resent to the next replica.
    pub request_timeout_ticks: u64,
    /// The same for chunk reads and writes (bigger: a 1 MiB write is slower).
    pub chunk_timeout_ticks: u64,
    /// Ticks after which an operation fails with [`ClientError::Timeout`].
    pub deadline_ticks: u64,
    /// Metadata writes queued per group, waiting for a session.
    pub writes_queued_max: usize,
    /// Operations in flight (all kinds together).
    pub operations_max: usize,
}

impl ClientConfig {
    pub fn production(cluster: u128, replica_count: u8, group_count: u32) -> ClientConfig {
        ClientConfig {
            cluster,
            replica_count,
            group_count,
            message_size_max: 64 * 1024,
            sessions_per_group: 2,
            // 10 ms ticks: 200 ms, then 500 ms for chunks, give up after 30 s.
            request_timeout_ticks: 20,
            chunk_timeout_ticks: 50,
            deadline_ticks: 3_000,
            writes_queued_max: 4_096,
            operations_max: 16_384,
        }
    }

    fn quorum(&self) -> usize {
        self.replica_count as usize / 2 + 1
    }
}

/// Names an operation until its completion.
pub type Handle = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Too many operations queued or in flight: try again later (503).
    Busy,
    /// No answer before the deadline: the outcome of a write is unknown.
    Timeout,
    /// The request does not fit in a message.
    TooLarge,
    /// No replica returned bytes matching the chunk's checksum.
    ChunkUnavailable,
    /// The session was evicted by the cluster: the outcome of the write in
    /// flight is unknown.
    SessionEvicted,
    /// A reply that did not decode (a bug or a version mismatch).
    BadReply,
    /// Too many replicas refused a chunk write for a quorum to take it.
    ChunkRefused(ChunkRefusal),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ClientError::Busy => "too many operations in flight",
            ClientError::Timeout => "no answer from the cluster before the deadline",
            ClientError::TooLarge => "request larger than a message",
            ClientError::ChunkUnavailable => "no replica holds a valid copy of a chunk",
            ClientError::SessionEvicted => "client session evicted; outcome unknown",
            ClientError::BadReply => "reply did not decode",
            ClientError::ChunkRefused(ChunkRefusal::NoSpace) => "the cluster's disks are full",
            ClientError::ChunkRefused(ChunkRefusal::TooLarge) => "chunk larger than the maximum",
            ClientError::ChunkRefused(ChunkRefusal::ContentMismatch) => {
                "chunk id reused with other bytes"
            }
            ClientError::ChunkRefused(ChunkRefusal::Stopping) => "the cluster is shutting down",
        };
        f.write_str(text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reply to a metadata write or read.
    Reply(Reply),
    /// A chunk is durable on a quorum.
    ChunkWritten { crc32c: u32 },
    /// A chunk's verified bytes (the whole message, body = data).
    ChunkRead(Message),
}

/// One message to send to replica `replica` of group `group`.
#[derive(Clone, Debug)]
pub struct Send {
    pub group: u32,
    pub replica: u8,
    pub message: Message,
}

struct Session {
    id: u128,
    registered: bool,
    /// Last request number used.
    request: u32,
    in_flight: Option<SessionRequest>,
}

struct SessionRequest {
    message: Message,
    /// Handles of the writes it carries, in batch order; `None` for the
    /// register request.
    handles: Option<Vec<Handle>>,
    batch: bool,
    tick_sent: u64,
    target: u8,
}

struct GroupState {
    /// Best guess of the primary (from replies' views, rotated on timeouts).
    primary: u8,
    /// Last tick a reply came from `primary`. A request that times out
    /// while the primary answers others was lost or slow, not orphaned by a
    /// view change: it is resent to the same primary. Rotating then (as
    /// before) sent every session to a backup, which drops requests, and
    /// cost two timeouts (400 ms) instead of one.
    primary_heard_tick: Option<u64>,
    sessions: Vec<Session>,
    writes: VecDeque<(Handle, Request)>,
}

enum Operation {
    Write { group: u32 },
    Read { group: u32, message: Message, target: u8, tick_sent: u64 },
    ChunkWrite(ChunkWriteState),
    ChunkRead(ChunkReadState),
}

struct ChunkWriteState {
    group: u32,
    message: Message,
    crc32c: u32,
    acked: Vec<bool>,
    refused: Vec<bool>,
    tick_sent: u64,
}

struct ChunkReadState {
    group: u32,
    chunk: ChunkRef,
    message: Message,
    /// Replicas in the order to try them; `tried` of them were.
    order: Vec<u8>,
    tried: usize,
    tick_sent: u64,
}

struct OperationEntry {
    operation: Operation,
    tick_deadline: u64,
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub batches_sent: u64,
    pub writes_batched: u64,
    pub resends: u64,
    pub chunk_read_fallbacks: u64,
    pub chunk_checksum_failures: u64,
    pub replies_unmatched: u64,
}

pub struct ObjectClient {
    config: ClientConfig,
    groups: Vec<GroupState>,
    operations: BTreeMap<Handle, OperationEntry>,
    /// Chunk operations by (chunk id, sequence number) for reply matching.
    chunk_index: BTreeMap<(u128, u32), Handle>,
    /// Reads by their request checksum (the reply's context).
    read_index: BTreeMap<u128, Handle>,
    handle_next: Handle,
    sequence_next: u32,
    read_counter: u64,
    tick: u64,
    sends: Vec<Send>,
    completions: Vec<(Handle, Result<Outcome, ClientError>)>,
    pub stats: ClientStats,
}

impl ObjectClient {
    /// `seed` makes the session ids: distinct clients must use distinct
    /// seeds (drivers draw them from the OS; the simulator from its seed).
    pub fn new(config: ClientConfig, seed: u128) -> ObjectClient {
        assert!(config.replica_count >= 1);
        assert!(config.group_count >= 1);
        assert!(config.sessions_per_group >= 1);
        assert!(config.message_size_max > HEADER_SIZE);
        let mut id_state = seed as u64 ^ (seed >> 64) as u64;
        let groups = (0..config.group_count)
            .map(|group| GroupState {
                primary: (group % u32::from(config.replica_count)) as u8,
                primary_heard_tick: None,
                sessions: (0..config.sessions_per_group)
                    .map(|_| Session {
                        id: splitmix_u128(&mut id_state),
                        registered: false,
                        request: 0,
                        in_flight: None,
                    })
                    .collect(),
                writes: VecDeque::new(),
            })
            .collect();
        ObjectClient {
            config,
            groups,
            operations: BTreeMap::new(),
            chunk_index: BTreeMap::new(),
            read_index: BTreeMap::new(),
            handle_next: 1,
            sequence_next: 1,
            read_counter: 0,
            tick: 0,
            sends: Vec::new(),
            completions: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Whether `id` is one of this client's session ids (for drivers that
    /// route replies).
    pub fn owns_client_id(&self, id: u128) -> bool {
        self.groups.iter().any(|g| g.sessions.iter().any(|s| s.id == id))
    }

    /// The ids a driver announces on its connections (replies to them).
    pub fn client_ids(&self) -> Vec<u128> {
        self.groups.iter().flat_map(|g| g.sessions.iter().map(|s| s.id)).collect()
    }

    pub fn operations_in_flight(&self) -> usize {
        self.operations.len()
    }

    pub fn take_sends(&mut self) -> Vec<Send> {
        std::mem::take(&mut self.sends)
    }

    pub fn take_completions(&mut self) -> Vec<(Handle, Result<Outcome, ClientError>)> {
        std::mem::take(&mut self.completions)
    }

    fn handle_new(&mut self, operation: Operation) -> Result<Handle, ClientError> {
        if self.operations.len() >= self.config.operations_max {
            return Err(ClientError::Busy);
        }
        let handle = self.handle_next;
        self.handle_next += 1;
        let tick_deadline = self.tick + self.config.deadline_ticks;
        self.operations.insert(handle, OperationEntry { operation, tick_deadline });
        Ok(handle)
    }

    fn sequence(&mut self) -> u32 {
        let sequence = self.sequence_next;
        self.sequence_next = self.sequence_next.wrapping_add(1).max(1);
        sequence
    }

    fn header(&self, command: Command, group: u32, client: u128) -> Header {
        let mut header = Header::new(command);
        header.cluster.set(self.config.cluster);
        header.group.set(group);
        header.client.set(client);
        header.replica = u8::MAX; // Not a replica.
        header
    }

    // ------------------------------------------------------------------
    // Metadata.
    // ------------------------------------------------------------------

    /// Queue a metadata write (bucket or object) for `group`.
    pub fn write(&mut self, group: u32, request: Request) -> Result<Handle, ClientError> {
        assert!(group < self.config.group_count);
        assert!(!request.operation().read_only());
        let mut body = Vec::new();
        request.encode(&mut body);
        // Its share of a batch: operation, length prefix, bytes.
        if HEADER_SIZE + 4 + 1 + 4 + body.len() > self.config.message_size_max {
            return Err(ClientError::TooLarge);
        }
        if self.groups[group as usize].writes.len() >= self.config.writes_queued_max {
            return Err(ClientError::Busy);
        }
        let handle = self.handle_new(Operation::Write { group })?;
        self.groups[group as usize].writes.push_back((handle, request));
        self.sessions_drive(group);
        Ok(handle)
    }

    /// Send a read-only request to `group`'s primary.
    pub fn read(&mut self, group: u32, request: Request) -> Result<Handle, ClientError> {
        assert!(group < self.config.group_count);
        assert!(request.operation().read_only());
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        if HEADER_SIZE + body.len() > self.config.message_size_max {
            return Err(ClientError::TooLarge);
        }
        let client = self.groups[group as usize].sessions[0].id;
        let mut header = self.header(Command::Request, group, client);
        header.operation = operation;
        header.request.set(1);
        // A unique checksum per read: a late reply to an earlier read can
        // never be taken for this one.
        self.read_counter += 1;
        header.timestamp.set(self.read_counter);
        let message = Message::new(header, &body);
        let target = self.groups[group as usize].primary;
        let checksum = message.checksum();
        let handle = self.handle_new(Operation::Read {
            group,
            message: message.clone(),
            target,
            tick_sent: self.tick,
        })?;
        self.read_index.insert(checksum, handle);
        self.sends.push(Send { group, replica: target, message });
        Ok(handle)
    }

    /// Give every idle session of `group` its next request.
    fn sessions_drive(&mut self, group: u32) {
        for index in 0..self.groups[group as usize].sessions.len() {
            let state = &self.groups[group as usize];
            let session = &state.sessions[index];
            if session.in_flight.is_some() {
                continue;
            }
            if !session.registered {
                self.session_register(group, index);
                continue;
            }
            if state.writes.is_empty() {
                continue;
            }
            self.session_send_batch(group, index);
        }
    }

    fn session_register(&mut self, group: u32, index: usize) {
        let id = self.groups[group as usize].sessions[index].id;
        let mut header = self.header(Command::Request, group, id);
        header.operation = OPERATION_REGISTER;
        let message = Message::new(header, &[]);
        let target = self.groups[group as usize].primary;
        self.groups[group as usize].sessions[index].in_flight = Some(SessionRequest {
            message: message.clone(),
            handles: None,
            batch: false,
            tick_sent: self.tick,
            target,
        });
        self.sends.push(Send { group, replica: target, message });
    }

    /// Take the next writes of the group's queue into one request: a bucket
    /// operation alone, or up to `BATCH_COUNT_MAX` object writes that fit.
    fn session_send_batch(&mut self, group: u32, index: usize) {
        let size_max = self.config.message_size_max - HEADER_SIZE - 4;
        let state = &mut self.groups[group as usize];
        let mut handles = Vec::new();
        let mut requests = Vec::new();
        let mut size = 0usize;
        while let Some((_, request)) = state.writes.front() {
            let object_write =
                matches!(request, Request::PutObject { .. } | Request::DeleteObject { .. });
            if !object_write && !requests.is_empty() {
                break;
            }
            let request_size = 1 + 4 + request_encoded_size(request);
            if !requests.is_empty()
                && (size + request_size > size_max || requests.len() == BATCH_COUNT_MAX)
            {
                break;
            }
            let Some((handle, request)) = state.writes.pop_front() else { break };
            size += request_size;
            handles.push(handle);
            requests.push(request);
            if !object_write {
                break;
            }
        }
        assert!(!requests.is_empty());
        let batch = requests.len() > 1;
        let request = if batch { Request::Batch(requests) } else { requests.remove(0) };
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        let session = &mut self.groups[group as usize].sessions[index];
        session.request += 1;
        let (id, number) = (session.id, session.request);
        let mut header = self.header(Command::Request, group, id);
        header.operation = operation;
        header.request.set(number);
        let message = Message::new(header, &body);
        assert!(message.bytes().len() <= self.config.message_size_max);
        let target = self.groups[group as usize].primary;
        self.stats.batches_sent += 1;
        self.stats.writes_batched += handles.len() as u64;
        self.groups[group as usize].sessions[index].in_flight = Some(SessionRequest {
            message: message.clone(),
            handles: Some(handles),
            batch,
            tick_sent: self.tick,
            target,
        });
        self.sends.push(Send { group, replica: target, message });
    }

    fn on_reply(&mut self, message: Message) {
        let header = *message.header();
        let group = header.group.get();
        if group >= self.config.group_count {
            self.stats.replies_unmatched += 1;
            return;
        }
        // The replica that replied is the primary of the view it names.
        let primary = ((u64::from(header.view.get()) + u64::from(group))
            % u64::from(self.config.replica_count)) as u8;
        if let Some(handle) = self.read_index.remove(&header.context.get()) {
            self.groups[group as usize].primary = primary;
            self.groups[group as usize].primary_heard_tick = Some(self.tick);
            let result = Reply::decode(message.body()).map_err(|_| ClientError::BadReply);
            self.complete(handle, result.map(Outcome::Reply));
            return;
        }
        let client = header.client.get();
        let state = &mut self.groups[group as usize];
        let Some(index) = state.sessions.iter().position(|s| s.id == client) else {
            self.stats.replies_unmatched += 1;
            return;
        };
        let session = &mut state.sessions[index];
        let matches = session.in_flight.as_ref().is_some_and(|f| {
            f.message.header().request.get() == header.request.get()
                && f.message.header().operation == header.operation
        });
        if !matches {
            self.stats.replies_unmatched += 1;
            return;
        }
        state.primary = primary;
        state.primary_heard_tick = Some(self.tick);
        let Some(done) = session.in_flight.take() else { return };
        match done.handles {
            None => {
                session.registered = true;
                session.request = 0;
            }
            Some(handles) => self.session_replied(handles, done.batch, message.body()),
        }
        self.sessions_drive(group);
    }

    fn session_replied(&mut self, handles: Vec<Handle>, batch: bool, body: &[u8]) {
        let replies = match Reply::decode(body) {
            Ok(Reply::Batch(replies)) if batch && replies.len() == handles.len() => replies,
            Ok(reply) if !batch => vec![reply],
            _ => {
                for handle in handles {
                    self.complete(handle, Err(ClientError::BadReply));
                }
                return;
            }
        };
        for (handle, reply) in handles.into_iter().zip(replies) {
            self.complete(handle, Ok(Outcome::Reply(reply)));
        }
    }

    fn on_eviction(&mut self, message: &Message) {
        let header = message.header();
        let group = header.group.get();
        let Some(state) = self.groups.get_mut(group as usize) else { return };
        let client = header.client.get();
        let Some(session) = state.sessions.iter_mut().find(|s| s.id == client) else { return };
        // The session is gone: register again. Whether the write in flight
        // committed is unknown, so it fails rather than being retried.
        session.registered = false;
        session.request = 0;
        let handles = session.in_flight.take().and_then(|f| f.handles).unwrap_or_default();
        for handle in handles {
            self.complete(handle, Err(ClientError::SessionEvicted));
        }
        self.sessions_drive(group);
    }

    // ------------------------------------------------------------------
    // Chunks.
    // ------------------------------------------------------------------

    /// Write a chunk to every replica of `group`; completes once a quorum
    /// reports it durable. `data` must be non-empty.
    pub fn chunk_write(
        &mut self,
        group: u32,
        chunk_id: u128,
        data: &[u8],
    ) -> Result<Handle, ClientError> {
        let mut frame = shared_zeroed(HEADER_SIZE + data.len());
        let Some(bytes) = Rc::get_mut(&mut frame) else { unreachable!("a fresh Rc is unique") };
        bytes[HEADER_SIZE..].copy_from_slice(data);
        self.chunk_write_frame(group, chunk_id, frame)
    }

    /// `chunk_write` of a body the caller wrote into `frame` after
    /// [`HEADER_SIZE`] bytes of header room (see `Message::seal_frame`);
    /// `frame` must be its only reference.
    pub fn chunk_write_frame(
        &mut self,
        group: u32,
        chunk_id: u128,
        frame: Rc<[u8]>,
    ) -> Result<Handle, ClientError> {
        assert!(group < self.config.group_count);
        assert!(frame.len() > HEADER_SIZE, "a chunk needs data");
        assert!(chunk_id != 0);
        let sequence = self.sequence();
        let client = self.groups[group as usize].sessions[0].id;
        let mut header = self.header(Command::ChunkWrite, group, client);
        header.context.set(chunk_id);
        header.request.set(sequence);
        // The one crc32c pass of this chunk's write: the replicas store it
        // under this value (`chunk_crc32c_claim`) and echo it when durable.
        let crc32c = crc32c::crc32c(&frame[HEADER_SIZE..]);
        header.op.set(chunk_crc32c_claim(crc32c));
        let message = Message::seal_frame(header, frame);
        let handle = self.handle_new(Operation::ChunkWrite(ChunkWriteState {
            group,
            message: message.clone(),
            crc32c,
            acked: vec![false; self.config.replica_count as usize],
            refused: vec![false; self.config.replica_count as usize],
            tick_sent: self.tick,
        }))?;
        self.chunk_index.insert((chunk_id, sequence), handle);
        for replica in 0..self.config.replica_count {
            self.sends.push(Send { group, replica, message: message.clone() });
        }
        Ok(handle)
    }

    /// The frame a pending chunk write sends (to recycle its buffer once
    /// the write is done with it).
    pub fn chunk_write_frame_of(&self, handle: Handle) -> Option<Rc<[u8]>> {
        match &self.operations.get(&handle)?.operation {
            Operation::ChunkWrite(state) => Some(state.message.shared()),
            _ => None,
        }
    }

    /// Read a chunk, trying `preferred` first, then the other replicas.
    pub fn chunk_read(
        &mut self,
        group: u32,
        chunk: ChunkRef,
        preferred: u8,
    ) -> Result<Handle, ClientError> {
        assert!(group < self.config.group_count);
        let chunk_id = u128::from_le_bytes(chunk.id);
        let sequence = self.sequence();
        let client = self.groups[group as usize].sessions[0].id;
        let mut header = self.header(Command::ChunkRead, group, client);
        header.context.set(chunk_id);
        header.request.set(sequence);
        let message = Message::new(header, &[]);
        let count = self.config.replica_count;
        let first = preferred % count;
        let order: Vec<u8> = (0..count).map(|i| (first + i) % count).collect();
        let handle = self.handle_new(Operation::ChunkRead(ChunkReadState {
            group,
            chunk,
            message: message.clone(),
            order,
            tried: 1,
            tick_sent: self.tick,
        }))?;
        self.chunk_index.insert((chunk_id, sequence), handle);
        self.sends.push(Send { group, replica: first, message });
        Ok(handle)
    }

    fn on_chunk_message(&mut self, message: Message) {
        let header = *message.header();
        let key = (header.context.get(), header.request.get());
        let Some(&handle) = self.chunk_index.get(&key) else {
            self.stats.replies_unmatched += 1;
            return;
        };
        let Some(entry) = self.operations.get_mut(&handle) else {
            self.chunk_index.remove(&key);
            return;
        };
        let from = header.replica;
        match (&mut entry.operation, message.command()) {
            (Operation::ChunkWrite(state), Command::ChunkWriteOk) => {
                if header.op.get() != u64::from(state.crc32c) {
                    // The replica stored other bytes than we sent: not an ack.
                    self.stats.chunk_checksum_failures += 1;
                    return;
                }
                if let Some(acked) = state.acked.get_mut(from as usize) {
                    *acked = true;
                }
                let count = state.acked.iter().filter(|a| **a).count();
                if count >= self.config.quorum() {
                    let crc32c = state.crc32c;
                    self.chunk_index.remove(&key);
                    self.complete(handle, Ok(Outcome::ChunkWritten { crc32c }));
                }
            }
            (Operation::ChunkWrite(state), Command::ChunkRefused) => {
                if let Some(refused) = state.refused.get_mut(from as usize) {
                    *refused = true;
                }
                let refusals = state.refused.iter().filter(|r| **r).count();
                if refusals > self.config.replica_count as usize - self.config.quorum() {
                    let reason =
                        ChunkRefusal::from_u64(header.op.get()).unwrap_or(ChunkRefusal::NoSpace);
                    self.chunk_index.remove(&key);
                    self.complete(handle, Err(ClientError::ChunkRefused(reason)));
                }
            }
            (Operation::ChunkRead(state), Command::ChunkData) => {
                let body = message.body();
                let valid = body.len() == state.chunk.length as usize
                    && crc32c::crc32c(body) == state.chunk.crc32c;
                if valid {
                    self.chunk_index.remove(&key);
                    self.complete(handle, Ok(Outcome::ChunkRead(message)));
                } else {
                    self.stats.chunk_checksum_failures += 1;
                    self.chunk_read_next(handle);
                }
            }
            (Operation::ChunkRead(_), Command::ChunkMissing) => self.chunk_read_next(handle),
            _ => self.stats.replies_unmatched += 1,
        }
    }

    /// Try the next replica for a chunk read, or fail once all were tried.
    fn chunk_read_next(&mut self, handle: Handle) {
        let tick = self.tick;
        let Some(entry) = self.operations.get_mut(&handle) else { return };
        let Operation::ChunkRead(state) = &mut entry.operation else { return };
        if state.tried >= state.order.len() {
            let key = (u128::from_le_bytes(state.chunk.id), state.message.header().request.get());
            self.chunk_index.remove(&key);
            self.complete(handle, Err(ClientError::ChunkUnavailable));
            return;
        }
        let replica = state.order[state.tried];
        state.tried += 1;
        state.tick_sent = tick;
        let send = Send { group: state.group, replica, message: state.message.clone() };
        self.stats.chunk_read_fallbacks += 1;
        self.sends.push(send);
    }

    // ------------------------------------------------------------------
    // Events in.
    // ------------------------------------------------------------------

    /// A verified message from a replica.
    pub fn on_message(&mut self, message: Message) {
        if message.header().cluster.get() != self.config.cluster {
            self.stats.replies_unmatched += 1;
            return;
        }
        match message.command() {
            Command::Reply => self.on_reply(message),
            Command::Eviction => self.on_eviction(&message),
            Command::ChunkWriteOk
            | Command::ChunkData
            | Command::ChunkMissing
            | Command::ChunkRefused => self.on_chunk_message(message),
            _ => self.stats.replies_unmatched += 1,
        }
    }

    pub fn on_tick(&mut self) {
        self.tick += 1;
        self.deadlines_check();
        for group in 0..self.config.group_count {
            self.sessions_timeouts(group);
            self.sessions_drive(group);
        }
        let handles: Vec<Handle> = self.operations.keys().copied().collect();
        for handle in handles {
            self.operation_timeout(handle);
        }
    }

    fn deadlines_check(&mut self) {
        let tick = self.tick;
        let expired: Vec<Handle> = self
            .operations
            .iter()
            .filter(|(_, entry)| entry.tick_deadline <= tick)
            .map(|(handle, _)| *handle)
            .collect();
        for handle in expired {
            // A write queued or in a session's batch: the batch's other
            // writes still complete through the session; this one fails.
            self.complete(handle, Err(ClientError::Timeout));
        }
    }

    /// Resend a session's request to the next replica after a timeout
    /// (exactly-once is the client table's job).
    fn sessions_timeouts(&mut self, group: u32) {
        let tick = self.tick;
        let timeout = self.config.request_timeout_ticks;
        let count = self.config.replica_count;
        let state = &mut self.groups[group as usize];
        let mut resend = Vec::new();
        let mut primary = state.primary;
        let primary_alive = state.primary_heard_tick.is_some_and(|heard| tick < heard + timeout);
        for session in &mut state.sessions {
            let Some(in_flight) = &mut session.in_flight else { continue };
            if tick < in_flight.tick_sent + timeout {
                continue;
            }
            if in_flight.target == primary && !(primary_alive && primary == state.primary) {
                primary = (primary + 1) % count;
            }
            in_flight.target = primary;
            in_flight.tick_sent = tick;
            resend.push(Send { group, replica: primary, message: in_flight.message.clone() });
        }
        state.primary = primary;
        self.stats.resends += resend.len() as u64;
        self.sends.extend(resend);
    }

    fn operation_timeout(&mut self, handle: Handle) {
        let tick = self.tick;
        let Some(entry) = self.operations.get_mut(&handle) else { return };
        match &mut entry.operation {
            Operation::Write { .. } => {}
            Operation::Read { group, message, target, tick_sent } => {
                if tick < *tick_sent + self.config.request_timeout_ticks {
                    return;
                }
                let state = &mut self.groups[*group as usize];
                let timeout = self.config.request_timeout_ticks;
                let primary_alive =
                    state.primary_heard_tick.is_some_and(|heard| tick < heard + timeout);
                if state.primary == *target && !primary_alive {
                    state.primary = (state.primary + 1) % self.config.replica_count;
                }
                *target = state.primary;
                *tick_sent = tick;
                let send = Send { group: *group, replica: *target, message: message.clone() };
                self.stats.resends += 1;
                self.sends.push(send);
            }
            Operation::ChunkWrite(state) => {
                if tick < state.tick_sent + self.config.chunk_timeout_ticks {
                    return;
                }
                state.tick_sent = tick;
                for (replica, acked) in state.acked.iter().enumerate() {
                    if !acked && !state.refused[replica] {
                        let message = state.message.clone();
                        self.sends.push(Send {
                            group: state.group,
                            replica: replica as u8,
                            message,
                        });
                        self.stats.resends += 1;
                    }
                }
            }
            Operation::ChunkRead(state) => {
                if tick >= state.tick_sent + self.config.chunk_timeout_ticks {
                    self.chunk_read_next(handle);
                }
            }
        }
    }

    fn complete(&mut self, handle: Handle, result: Result<Outcome, ClientError>) {
        let Some(entry) = self.operations.remove(&handle) else { return };
        match entry.operation {
            Operation::Write { group } => {
                // A timed-out write still queued leaves the queue.
                self.groups[group as usize].writes.retain(|(h, _)| *h != handle);
            }
            Operation::Read { message, .. } => {
                self.read_index.remove(&message.checksum());
            }
            Operation::ChunkWrite(state) => {
                let header = state.message.header();
                self.chunk_index.remove(&(header.context.get(), header.request.get()));
            }
            Operation::ChunkRead(state) => {
                let header = state.message.header();
                self.chunk_index.remove(&(header.context.get(), header.request.get()));
            }
        }
        self.completions.push((handle, result));
    }
}

/// Bytes `request.encode` appends (batch planning without encoding twice
/// would need the codec's internals; encoding is cheap next to the network).
fn request_encoded_size(request: &Request) -> usize {
    let mut body = Vec::new();
    request.encode(&mut body);
    body.len()
}

fn splitmix_u128(state: &mut u64) -> u128 {
    let mut next = || {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = u128::from(next());
    let low = u128::from(next());
    // Never zero: a request with client 0 is invalid.
    (high << 64 | low) | 1
}
