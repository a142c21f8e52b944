//! The one message header: the same 256 bytes on the wire and in the WAL.
//!
//! Layout (all integers little endian, alignment 1, no padding):
//!
//! | offset | field | bytes | meaning |
//! |---|---|---|---|
//! | 0 | checksum | 16 | xxh3-128 over bytes 16..256 (covers `checksum_body`) |
//! | 16 | checksum_padding | 16 | zero; room for a 256-bit checksum later |
//! | 32 | checksum_body | 16 | xxh3-128 over the body |
//! | 48 | checksum_body_padding | 16 | zero |
//! | 64 | parent | 16 | prepare: checksum of the previous prepare (the hash chain) |
//! | 80 | cluster | 16 | cluster id: messages of another cluster are dropped |
//! | 96 | client | 16 | client id (request, prepare, reply, eviction) |
//! | 112 | context | 16 | per command: request checksum, prepare checksum, nonce |
//! | 128 | checkpoint_id | 16 | checksum of the sender's current checkpoint |
//! | 144 | op | 8 | log position |
//! | 152 | commit | 8 | commit number known to the sender |
//! | 160 | timestamp | 8 | primary's logical timestamp (prepare) |
//! | 168 | checkpoint_op | 8 | op of the sender's durable checkpoint |
//! | 176 | view | 4 | |
//! | 180 | log_view | 4 | last view in which the sender's log was normal |
//! | 184 | size | 4 | header + body bytes |
//! | 188 | request | 4 | client request number |
//! | 192 | group | 4 | replication group (= shard index) |
//! | 196 | protocol | 2 | wire/disk format version |
//! | 198 | command | 1 | [`Command`] |
//! | 199 | replica | 1 | author (for prepares: the primary that created it) |
//! | 200 | operation | 1 | state-machine operation (request, prepare, reply) |
//! | 201 | reserved | 55 | zero |
//!
//! A flat layout (every command uses the fields it needs, the rest must be
//! zero) instead of TigerBeetle's per-command unions: it keeps the struct a
//! plain zerocopy type with no `unsafe`, and the validation rules below say
//! which fields each command may use.
//!
//! The header checksum covers `checksum_body`, and the body checksum is
//! computed first, so a header can be trusted (and its `size` used) before the
//! body has been read.

use std::rc::Rc;

use zerocopy::byteorder::little_endian::{U128, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

pub const HEADER_SIZE: usize = 256;

/// Version of the header format. Bumped on any change to the layout or to a
/// checksum rule; a different version is rejected, never guessed at.
pub const PROTOCOL_VERSION: u16 = 1;

/// Operations below this value belong to the replication protocol itself;
/// state machines use `OPERATION_STATE_MACHINE_MIN..=255`.
pub const OPERATION_STATE_MACHINE_MIN: u8 = 16;

/// Client session registration (explicit, as TigerBeetle's `register`).
pub const OPERATION_REGISTER: u8 = 1;

/// A prepare the primary makes at the start of a view to commit ops of older
/// views under its own view (and for the root). Never from a client.
pub const OPERATION_NOOP: u8 = 2;

/// The root operation of the log, op 0.
pub const OPERATION_ROOT: u8 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Header {
    pub checksum: U128,
    pub checksum_padding: [u8; 16],
    pub checksum_body: U128,
    pub checksum_body_padding: [u8; 16],
    pub parent: U128,
    pub cluster: U128,
    pub client: U128,
    pub context: U128,
    pub checkpoint_id: U128,
    pub op: U64,
    pub commit: U64,
    pub timestamp: U64,
    pub checkpoint_op: U64,
    pub view: U32,
    pub log_view: U32,
    pub size: U32,
    pub request: U32,
    pub group: U32,
    pub protocol: U16,
    pub command: u8,
    pub replica: u8,
    pub operation: u8,
    pub reserved: [u8; 55],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(std::mem::align_of::<Header>() == 1);
const _: () = assert!(std::mem::offset_of!(Header, checksum) == 0);
const _: () = assert!(std::mem::offset_of!(Header, checksum_body) == 32);
const _: () = assert!(std::mem::offset_of!(Header, parent) == 64);
const _: () = assert!(std::mem::offset_of!(Header, cluster) == 80);
const _: () = assert!(std::mem::offset_of!(Header, client) == 96);
const _: () = assert!(std::mem::offset_of!(Header, context) == 112);
const _: () = assert!(std::mem::offset_of!(Header, checkpoint_id) == 128);
const _: () = assert!(std::mem::offset_of!(Header, op) == 144);
const _: () = assert!(std::mem::offset_of!(Header, commit) == 152);
const _: () = assert!(std::mem::offset_of!(Header, timestamp) == 160);
const _: () = assert!(std::mem::offset_of!(Header, checkpoint_op) == 168);
const _: () = assert!(std::mem::offset_of!(Header, view) == 176);
const _: () = assert!(std::mem::offset_of!(Header, log_view) == 180);
const _: () = assert!(std::mem::offset_of!(Header, size) == 184);
const _: () = assert!(std::mem::offset_of!(Header, request) == 188);
const _: () = assert!(std::mem::offset_of!(Header, group) == 192);
const _: () = assert!(std::mem::offset_of!(Header, protocol) == 196);
const _: () = assert!(std::mem::offset_of!(Header, command) == 198);
const _: () = assert!(std::mem::offset_of!(Header, replica) == 199);
const _: () = assert!(std::mem::offset_of!(Header, operation) == 200);
const _: () = assert!(std::mem::offset_of!(Header, reserved) == 201);

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// A formatted, never-written WAL slot (op = slot index). Never sent.
    Reserved = 0,
    /// Primary → backups: read-index round (context = round nonce).
    Ping = 1,
    /// Backup → primary: answer to a ping in the same view.
    Pong = 2,
    Request = 3,
    Prepare = 4,
    PrepareOk = 5,
    Reply = 6,
    /// Primary heartbeat carrying its commit number.
    Commit = 7,
    StartViewChange = 8,
    DoViewChange = 9,
    StartView = 10,
    /// Ask the primary of `view` for a StartView (context = boot nonce).
    RequestStartView = 11,
    /// Ask for the prepare `op` whose checksum is `context`.
    RequestPrepare = 12,
    /// Ask for `checkpoint_op`'s checkpoint bytes starting at `op` (offset).
    RequestCheckpoint = 13,
    /// A piece of a checkpoint (offset in `op`, total size in `commit`).
    CheckpointChunk = 14,
    /// The client's session was evicted from the client table.
    Eviction = 15,
    /// Object data for a shard's chunk store, outside the log: context =
    /// chunk id, request = the sender's sequence number, body = the bytes,
    /// `op` = the body's crc32c as [`chunk_crc32c_claim`] encodes it (or 0:
    /// the receiver computes it).
    ChunkWrite = 16,
    /// The chunk of `context` is durable; `op` = crc32c of its bytes.
    ChunkWriteOk = 17,
    /// Ask for the chunk `context` (clients, and replicas repairing).
    ChunkRead = 18,
    /// The chunk `context`: body = its bytes, `op` = their crc32c.
    ChunkData = 19,
    /// The receiver holds no readable copy of chunk `context`.
    ChunkMissing = 20,
    /// A chunk write the receiver will not store: `op` = a
    /// [`ChunkRefusal`] code (full disk, too large, id reused).
    ChunkRefused = 21,
}

/// A `ChunkWrite`'s `op`: the sender's crc32c of the body, flagged so that
/// 0 stays "not sent". The receiver stores the chunk under it without a
/// crc32c pass of its own: the header checksum covers the claim and the
/// body checksum proves the body is the one the sender computed it over
/// (ARCHITECTURE.md, "One crc32c per chunk write").
pub fn chunk_crc32c_claim(crc32c: u32) -> u64 {
    CHUNK_CRC32C_CLAIMED | u64::from(crc32c)
}

/// The crc32c a `ChunkWrite`'s `op` claims, if it claims one.
pub fn chunk_crc32c_claimed(op: u64) -> Option<u32> {
    (op >> 32 == CHUNK_CRC32C_CLAIMED >> 32).then_some(op as u32)
}

const CHUNK_CRC32C_CLAIMED: u64 = 1 << 32;

/// Why a shard refused a chunk write (the `op` of [`Command::ChunkRefused`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkRefusal {
    NoSpace = 1,
    TooLarge = 2,
    /// The id is live with other bytes (ids name immutable content).
    ContentMismatch = 3,
    /// The shard is shutting down.
    Stopping = 4,
}

impl ChunkRefusal {
    pub fn from_u64(value: u64) -> Option<ChunkRefusal> {
        [
            ChunkRefusal::NoSpace,
            ChunkRefusal::TooLarge,
            ChunkRefusal::ContentMismatch,
            ChunkRefusal::Stopping,
        ]
        .into_iter()
        .find(|refusal| *refusal as u64 == value)
    }
}

impl Command {
    pub fn from_u8(value: u8) -> Option<Command> {
        use Command::*;
        let all = [
            Reserved,
            Ping,
            Pong,
            Request,
            Prepare,
            PrepareOk,
            Reply,
            Commit,
            StartViewChange,
            DoViewChange,
            StartView,
            RequestStartView,
            RequestPrepare,
            RequestCheckpoint,
            CheckpointChunk,
            Eviction,
            ChunkWrite,
            ChunkWriteOk,
            ChunkRead,
            ChunkData,
            ChunkMissing,
            ChunkRefused,
        ];
        all.get(value as usize).copied()
    }
}

/// xxh3-128 of `data`: the one checksum of headers, bodies and the chain.
pub fn checksum(data: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(data)
}

impl Header {
    /// A zeroed header of `command` with the protocol version set.
    pub fn new(command: Command) -> Header {
        let mut header = Header::new_zeroed();
        header.command = command as u8;
        header.protocol.set(PROTOCOL_VERSION);
        header.size.set(HEADER_SIZE as u32);
        header
    }

    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.command)
    }

    fn checksum_compute(&self) -> u128 {
        checksum(&self.as_bytes()[16..])
    }

    /// Seal the header over a body: body checksum first, then the header's.
    pub fn seal(&mut self, body: &[u8]) {
        self.size.set((HEADER_SIZE + body.len()) as u32);
        self.checksum_body.set(checksum(body));
        self.checksum.set(self.checksum_compute());
    }

    pub fn valid_checksum(&self) -> bool {
        self.checksum.get() == self.checksum_compute()
    }

    pub fn valid_checksum_body(&self, body: &[u8]) -> bool {
        self.checksum_body.get() == checksum(body)
    }

    /// Why this (checksum-valid) header must not be trusted, or `None`.
    /// Checks reserved bytes, the version, size bounds and per-command rules.
    pub fn invalid(&self, message_size_max: usize) -> Option<&'static str> {
        if self.checksum_padding != [0; 16] {
            return Some("checksum_padding not zero");
        }
        if self.checksum_body_padding != [0; 16] {
            return Some("checksum_body_padding not zero");
        }
        if self.reserved != [0; 55] {
            return Some("reserved bytes not zero");
        }
        if self.protocol.get() != PROTOCOL_VERSION {
            return Some("unknown protocol version");
        }
        let size = self.size.get() as usize;
        if size < HEADER_SIZE {
            return Some("size smaller than the header");
        }
        if size > message_size_max {
            return Some("size larger than message_size_max");
        }
        let Some(command) = self.command() else {
            return Some("unknown command");
        };
        self.invalid_command(command)
    }

    fn invalid_command(&self, command: Command) -> Option<&'static str> {
        let op = self.op.get();
        let commit = self.commit.get();
        let size = self.size.get() as usize;
        match command {
            Command::Reserved => {
                if size != HEADER_SIZE {
                    return Some("reserved: has a body");
                }
                if self.view.get() != 0 || commit != 0 || self.client.get() != 0 {
                    return Some("reserved: non-zero fields");
                }
            }
            Command::Request => {
                if self.client.get() == 0 {
                    return Some("request: client is zero");
                }
                if self.operation < OPERATION_STATE_MACHINE_MIN
                    && self.operation != OPERATION_REGISTER
                {
                    return Some("request: protocol operation from a client");
                }
                if (self.operation == OPERATION_REGISTER) != (self.request.get() == 0) {
                    return Some("request: register must be request 0 and only it");
                }
                if op != 0 || commit != 0 {
                    return Some("request: op or commit set");
                }
            }
            Command::Prepare => {
                if op == 0 && self.operation != OPERATION_ROOT {
                    return Some("prepare: op 0 that is not the root");
                }
                if commit >= op && op != 0 {
                    return Some("prepare: commit not below op");
                }
                if self.operation == 0 || self.operation == OPERATION_ROOT && op != 0 {
                    return Some("prepare: bad operation");
                }
                let from_client = self.operation >= OPERATION_STATE_MACHINE_MIN
                    || self.operation == OPERATION_REGISTER;
                if from_client != (self.client.get() != 0) {
                    return Some("prepare: client set iff the operation comes from a client");
                }
            }
            Command::PrepareOk => {
                if op == 0 {
                    return Some("prepare_ok: op 0");
                }
                if size != HEADER_SIZE {
                    return Some("prepare_ok: has a body");
                }
            }
            Command::Reply => {
                if self.client.get() == 0 {
                    return Some("reply: client is zero");
                }
                if op == 0 && self.operation < OPERATION_STATE_MACHINE_MIN {
                    return Some("reply: op 0 for a logged operation");
                }
            }
            Command::DoViewChange | Command::StartView => {
                if self.log_view.get() > self.view.get() {
                    return Some("view change: log_view above view");
                }
                if commit > op && command == Command::StartView {
                    return Some("start_view: commit above op");
                }
            }
            Command::Ping
            | Command::Pong
            | Command::Commit
            | Command::StartViewChange
            | Command::RequestStartView
            | Command::RequestPrepare
            | Command::RequestCheckpoint
            | Command::Eviction => {
                if size != HEADER_SIZE {
                    return Some("control message with a body");
                }
            }
            Command::CheckpointChunk => {
                if op.checked_add((size - HEADER_SIZE) as u64).is_none_or(|end| end > commit) {
                    return Some("checkpoint_chunk: piece beyond the total size");
                }
            }
            Command::ChunkWrite
            | Command::ChunkWriteOk
            | Command::ChunkRead
            | Command::ChunkData
            | Command::ChunkMissing
            | Command::ChunkRefused => return self.invalid_chunk(command),
        }
        None
    }

    /// The chunk commands: `context` names the chunk, bodies only where
    /// bytes travel, `op` (a crc32c) only in the answers that carry one
    /// and, as a claim, in a `ChunkWrite`.
    fn invalid_chunk(&self, command: Command) -> Option<&'static str> {
        let body = self.size.get() as usize > HEADER_SIZE;
        if self.context.get() == 0 {
            return Some("chunk: chunk id is zero");
        }
        if self.commit.get() != 0 || self.view.get() != 0 {
            return Some("chunk: commit or view set");
        }
        let (body_expected, op_is_crc) = match command {
            Command::ChunkWrite => (true, false),
            Command::ChunkWriteOk => (false, true),
            Command::ChunkRead | Command::ChunkMissing => (false, false),
            Command::ChunkData => (true, true),
            Command::ChunkRefused => {
                if ChunkRefusal::from_u64(self.op.get()).is_none() {
                    return Some("chunk_refused: unknown reason");
                }
                (false, false)
            }
            _ => unreachable!("not a chunk command"),
        };
        if body != body_expected {
            return Some(if body {
                "chunk: body on a command without one"
            } else {
                "chunk: no bytes"
            });
        }
        if op_is_crc && self.op.get() > u64::from(u32::MAX) {
            return Some("chunk: crc32c above u32");
        }
        if command == Command::ChunkWrite {
            if self.op.get() != 0 && chunk_crc32c_claimed(self.op.get()).is_none() {
                return Some("chunk_write: op neither 0 nor a crc32c claim");
            }
        } else if !op_is_crc && command != Command::ChunkRefused && self.op.get() != 0 {
            return Some("chunk: op set");
        }
        None
    }
}

/// Why bytes were rejected as a message. Counted by drivers, never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    TooShort,
    HeaderChecksum,
    Invalid(&'static str),
    SizeMismatch,
    BodyChecksum,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::TooShort => write!(f, "shorter than a header"),
            MessageError::HeaderChecksum => write!(f, "header checksum mismatch"),
            MessageError::Invalid(reason) => write!(f, "invalid header: {reason}"),
            MessageError::SizeMismatch => write!(f, "length differs from header size"),
            MessageError::BodyChecksum => write!(f, "body checksum mismatch"),
        }
    }
}

/// Parse and verify a header alone (the first `HEADER_SIZE` bytes): what a
/// transport does before it reads the body.
pub fn header_parse(bytes: &[u8], message_size_max: usize) -> Result<Header, MessageError> {
    let Ok((header, _)) = Header::read_from_prefix(bytes) else {
        return Err(MessageError::TooShort);
    };
    if !header.valid_checksum() {
        return Err(MessageError::HeaderChecksum);
    }
    if let Some(reason) = header.invalid(message_size_max) {
        return Err(MessageError::Invalid(reason));
    }
    Ok(header)
}

/// Length, header checksum, validation and body checksum of untrusted bytes.
fn verify(bytes: &[u8], message_size_max: usize) -> Result<(), MessageError> {
    let header = header_parse(bytes, message_size_max)?;
    if header.size.get() as usize != bytes.len() {
        return Err(MessageError::SizeMismatch);
    }
    if !header.valid_checksum_body(&bytes[HEADER_SIZE..]) {
        return Err(MessageError::BodyChecksum);
    }
    Ok(())
}

/// A zeroed shared buffer of `len` bytes, allocated once: filled in place
/// through `Rc::get_mut`, it saves the copy `Rc::from(Vec)` makes. For a
/// 1 MiB body, building through a Vec cost 1.3 ms and this 38 µs (fresh
/// pages of two large allocations vs one; perf/micro/rc_build.rs);
/// for a bare header 46 ns vs 31 ns.
pub fn shared_zeroed(len: usize) -> Rc<[u8]> {
    std::iter::repeat_n(0u8, len).collect()
}

/// A whole, verified message: header and body in one shared buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Rc<[u8]>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.header();
        write!(
            f,
            "{:?}(view={} op={} commit={} replica={} size={})",
            h.command(),
            h.view.get(),
            h.op.get(),
            h.commit.get(),
            h.replica,
            h.size.get()
        )
    }
}

impl Message {
    /// Build a message from a header and a body; seals the checksums.
    pub fn new(mut header: Header, body: &[u8]) -> Message {
        header.seal(body);
        let mut bytes = shared_zeroed(HEADER_SIZE + body.len());
        let Some(slice) = Rc::get_mut(&mut bytes) else { unreachable!("a fresh Rc is unique") };
        slice[..HEADER_SIZE].copy_from_slice(header.as_bytes());
        slice[HEADER_SIZE..].copy_from_slice(body);
        Message { bytes }
    }

    /// Seal a frame the caller filled in place: `frame` holds header room
    /// ([`HEADER_SIZE`] bytes, overwritten here) and then the body. Saves
    /// the body copy of [`Message::new`] when the body is assembled
    /// piece by piece (an upload reading a chunk from its client).
    pub fn seal_frame(mut header: Header, mut frame: Rc<[u8]>) -> Message {
        assert!(frame.len() >= HEADER_SIZE, "a frame shorter than a header");
        header.seal(&frame[HEADER_SIZE..]);
        let Some(bytes) = Rc::get_mut(&mut frame) else {
            panic!("seal_frame needs the only reference to its frame")
        };
        bytes[..HEADER_SIZE].copy_from_slice(header.as_bytes());
        Message { bytes: frame }
    }

    /// `parse` for bytes already in their own shared buffer (a transport
    /// reads a large frame straight into one): verified in place, no copy.
    pub fn parse_shared(bytes: Rc<[u8]>, message_size_max: usize) -> Result<Message, MessageError> {
        verify(&bytes, message_size_max)?;
        Ok(Message { bytes })
    }

    /// Verify untrusted bytes: length, header checksum, validation, body.
    pub fn parse(bytes: &[u8], message_size_max: usize) -> Result<Message, MessageError> {
        verify(bytes, message_size_max)?;
        Ok(Message { bytes: bytes.into() })
    }

    pub fn header(&self) -> &Header {
        // The constructor checked the length, and Header has alignment 1.
        match Header::ref_from_prefix(&self.bytes) {
            Ok((header, _)) => header,
            Err(_) => unreachable!("message shorter than a header"),
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_SIZE..]
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn shared(&self) -> Rc<[u8]> {
        self.bytes.clone()
    }

    pub fn checksum(&self) -> u128 {
        self.header().checksum.get()
    }

    pub fn command(&self) -> Command {
        match self.header().command() {
            Some(command) => command,
            None => unreachable!("verified message with unknown command"),
        }
    }
}
