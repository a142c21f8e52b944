//! The message codec: roundtrip, single-bit corruption, framing errors and one
//! test per validation rule of `Header::invalid`.
//!
//! Each test says what it guards against; each fails if the codec accepts a
//! message it must reject, rejects one it must accept, or reports the wrong
//! reason.

use proptest::prelude::*;
use proptest::sample::Index;
use toasty::vsr::message::{
    checksum, header_parse, Command, Header, Message, MessageError, HEADER_SIZE, OPERATION_NOOP,
    OPERATION_REGISTER, OPERATION_ROOT, OPERATION_STATE_MACHINE_MIN, PROTOCOL_VERSION,
};
use zerocopy::IntoBytes;

/// 1 MiB, as a transport would pass: far above every generated message, so
/// only `size_above_message_size_max` (which passes its own bound) meets it.
const MESSAGE_SIZE_MAX: usize = 1 << 20;

/// Generated bodies are 0..BODY_SIZE_MAX bytes.
const BODY_SIZE_MAX: usize = 4096;

/// The state-machine operation the fixed examples use.
const OPERATION_PUT: u8 = OPERATION_STATE_MACHINE_MIN;

const COMMANDS_ALL: [Command; 22] = [
    Command::Reserved,
    Command::Ping,
    Command::Pong,
    Command::Request,
    Command::Prepare,
    Command::PrepareOk,
    Command::Reply,
    Command::Commit,
    Command::StartViewChange,
    Command::DoViewChange,
    Command::StartView,
    Command::RequestStartView,
    Command::RequestPrepare,
    Command::RequestCheckpoint,
    Command::CheckpointChunk,
    Command::Eviction,
    Command::ChunkWrite,
    Command::ChunkWriteOk,
    Command::ChunkRead,
    Command::ChunkData,
    Command::ChunkMissing,
    Command::ChunkRefused,
];

/// The chunk commands that carry bytes (a body is required).
fn command_needs_body(command: Command) -> bool {
    matches!(command, Command::ChunkWrite | Command::ChunkData)
}

/// The control commands: header only, no per-command field rules.
const COMMANDS_CONTROL: [Command; 8] = [
    Command::Ping,
    Command::Pong,
    Command::Commit,
    Command::StartViewChange,
    Command::RequestStartView,
    Command::RequestPrepare,
    Command::RequestCheckpoint,
    Command::Eviction,
];

fn command_has_body(command: Command) -> bool {
    matches!(
        command,
        Command::Request
            | Command::Prepare
            | Command::Reply
            | Command::DoViewChange
            | Command::StartView
            | Command::CheckpointChunk
            | Command::ChunkWrite
            | Command::ChunkData
    )
}

/// Recompute only the header checksum, keeping `size` and `checksum_body` as
/// they are: how a test forges a header whose checksum holds but whose other
/// fields `seal` would have overwritten.
fn checksum_header_only(header: &mut Header) {
    let value = checksum(&header.as_bytes()[16..]);
    header.checksum.set(value);
}

fn flip_bit(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut flipped = bytes.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    flipped
}

// ---------------------------------------------------------------------------
// Generators.

/// Raw field values before the per-command rules are applied to them.
#[derive(Clone, Debug)]
struct Fields {
    ids: [u128; 5], // parent, cluster, client, context, checkpoint_id
    op: u64,
    commit: u64,
    timestamp: u64,
    checkpoint_op: u64,
    view: u32,
    log_view: u32,
    request: u32,
    group: u32,
    replica: u8,
    operation: u8,
}

/// Mostly boundary values (0, small, max), otherwise anything: the rules
/// compare fields with zero and with each other, so edges matter most.
fn u128_edgy() -> impl Strategy<Value = u128> {
    prop_oneof![0..4u128, Just(u128::MAX), any::<u128>()]
}

fn u64_edgy() -> impl Strategy<Value = u64> {
    prop_oneof![0..4u64, Just(u64::MAX), any::<u64>()]
}

fn u32_edgy() -> impl Strategy<Value = u32> {
    prop_oneof![0..4u32, Just(u32::MAX), any::<u32>()]
}

fn operation_any() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(OPERATION_REGISTER),
        Just(OPERATION_NOOP),
        Just(OPERATION_ROOT),
        4..OPERATION_STATE_MACHINE_MIN,
        OPERATION_STATE_MACHINE_MIN..=u8::MAX,
    ]
}

fn fields_any() -> impl Strategy<Value = Fields> {
    (
        [u128_edgy(), u128_edgy(), u128_edgy(), u128_edgy(), u128_edgy()],
        (u64_edgy(), u64_edgy(), u64_edgy(), u64_edgy()),
        (u32_edgy(), u32_edgy(), u32_edgy(), u32_edgy()),
        (any::<u8>(), operation_any()),
    )
        .prop_map(|(ids, u64s, u32s, u8s)| Fields {
            ids,
            op: u64s.0,
            commit: u64s.1,
            timestamp: u64s.2,
            checkpoint_op: u64s.3,
            view: u32s.0,
            log_view: u32s.1,
            request: u32s.2,
            group: u32s.3,
            replica: u8s.0,
            operation: u8s.1,
        })
}

fn command_any() -> impl Strategy<Value = Command> {
    proptest::sample::select(COMMANDS_ALL.to_vec())
}

/// Bend arbitrary field values until they satisfy `command`'s rules in
/// `Header::invalid_command`, keeping as much of the randomness as possible.
fn fields_fix(command: Command, fields: &mut Fields, body_size: usize) {
    let client = &mut fields.ids[2];
    match command {
        Command::Reserved => {
            fields.view = 0;
            fields.commit = 0;
            *client = 0;
        }
        Command::Request => {
            *client = (*client).max(1);
            if fields.operation < OPERATION_STATE_MACHINE_MIN
                && fields.operation != OPERATION_REGISTER
            {
                fields.operation |= OPERATION_STATE_MACHINE_MIN;
            }
            if fields.operation == OPERATION_REGISTER {
                fields.request = 0;
            } else {
                fields.request = fields.request.max(1);
            }
            fields.op = 0;
            fields.commit = 0;
        }
        Command::Prepare => {
            if fields.op == 0 {
                fields.operation = OPERATION_ROOT;
            } else {
                if fields.commit >= fields.op {
                    fields.commit %= fields.op;
                }
                if fields.operation == 0 || fields.operation == OPERATION_ROOT {
                    fields.operation = OPERATION_NOOP;
                }
            }
            let from_client = fields.operation >= OPERATION_STATE_MACHINE_MIN
                || fields.operation == OPERATION_REGISTER;
            *client = if from_client { (*client).max(1) } else { 0 };
        }
        Command::PrepareOk => fields.op = fields.op.max(1),
        Command::Reply => {
            *client = (*client).max(1);
            if fields.op == 0 && fields.operation < OPERATION_STATE_MACHINE_MIN {
                fields.op = 1;
            }
        }
        Command::DoViewChange | Command::StartView => {
            if fields.log_view > fields.view {
                std::mem::swap(&mut fields.log_view, &mut fields.view);
            }
            if command == Command::StartView && fields.commit > fields.op {
                std::mem::swap(&mut fields.commit, &mut fields.op);
            }
        }
        Command::CheckpointChunk => {
            let piece = body_size as u64;
            fields.op = fields.op.min(u64::MAX - piece);
            fields.commit = fields.commit.max(fields.op + piece);
        }
        Command::Ping
        | Command::Pong
        | Command::Commit
        | Command::StartViewChange
        | Command::RequestStartView
        | Command::RequestPrepare
        | Command::RequestCheckpoint
        | Command::Eviction => {}
        Command::ChunkWrite
        | Command::ChunkWriteOk
        | Command::ChunkRead
        | Command::ChunkData
        | Command::ChunkMissing
        | Command::ChunkRefused => {
            fields.ids[3] = fields.ids[3].max(1);
            fields.commit = 0;
            fields.view = 0;
            fields.op = match command {
                Command::ChunkWriteOk | Command::ChunkData => fields.op & u64::from(u32::MAX),
                Command::ChunkRefused => 1 + fields.op % 4,
                _ => 0,
            };
        }
    }
}

fn header_build(command: Command, fields: &Fields) -> Header {
    let mut header = Header::new(command);
    header.parent.set(fields.ids[0]);
    header.cluster.set(fields.ids[1]);
    header.client.set(fields.ids[2]);
    header.context.set(fields.ids[3]);
    header.checkpoint_id.set(fields.ids[4]);
    header.op.set(fields.op);
    header.commit.set(fields.commit);
    header.timestamp.set(fields.timestamp);
    header.checkpoint_op.set(fields.checkpoint_op);
    header.view.set(fields.view);
    header.log_view.set(fields.log_view);
    header.request.set(fields.request);
    header.group.set(fields.group);
    header.replica = fields.replica;
    header.operation = fields.operation;
    header
}

/// A valid, unsealed header of any command and a body it may carry.
fn header_and_body_any() -> impl Strategy<Value = (Header, Vec<u8>)> {
    (command_any(), fields_any(), proptest::collection::vec(any::<u8>(), 0..BODY_SIZE_MAX))
        .prop_map(|(command, mut fields, mut body)| {
            if !command_has_body(command) {
                body.clear();
            }
            if command_needs_body(command) && body.is_empty() {
                body.push(0x42);
            }
            fields_fix(command, &mut fields, body.len());
            (header_build(command, &fields), body)
        })
}

// ---------------------------------------------------------------------------
// Fixed examples: one valid header per command.

fn valid_example(command: Command) -> (Header, Vec<u8>) {
    let mut header = Header::new(command);
    header.cluster.set(0xc1);
    header.replica = 1;
    header.view.set(3);
    let mut body = Vec::new();
    match command {
        Command::Reserved => {
            header.view.set(0);
            header.op.set(7);
        }
        Command::Request => {
            header.client.set(42);
            header.operation = OPERATION_PUT;
            header.request.set(1);
            body = b"put /bucket/key".to_vec();
        }
        Command::Prepare => {
            header.client.set(42);
            header.operation = OPERATION_PUT;
            header.op.set(5);
            header.commit.set(4);
            header.parent.set(0xbeef);
            body = (0..64).collect();
        }
        Command::PrepareOk => header.op.set(5),
        Command::Reply => {
            header.client.set(42);
            header.operation = OPERATION_PUT;
            header.op.set(5);
            body = b"ok".to_vec();
        }
        Command::DoViewChange | Command::StartView => {
            header.log_view.set(2);
            header.op.set(5);
            header.commit.set(4);
            body = vec![0xa5; 64];
        }
        Command::CheckpointChunk => {
            header.checkpoint_op.set(64);
            header.op.set(100);
            header.commit.set(1000);
            body = vec![0x5a; 64];
        }
        Command::Ping
        | Command::Pong
        | Command::Commit
        | Command::StartViewChange
        | Command::RequestStartView
        | Command::RequestPrepare
        | Command::RequestCheckpoint
        | Command::Eviction => {
            header.commit.set(4);
            header.context.set(0x1234);
        }
        Command::ChunkWrite | Command::ChunkData => {
            header.view.set(0);
            header.client.set(42);
            header.context.set(0xc4c4);
            header.request.set(9);
            if command == Command::ChunkData {
                header.op.set(0xdead_beef);
            }
            body = vec![0x77; 100];
        }
        Command::ChunkWriteOk
        | Command::ChunkRead
        | Command::ChunkMissing
        | Command::ChunkRefused => {
            header.view.set(0);
            header.client.set(42);
            header.context.set(0xc4c4);
            header.request.set(9);
            if command == Command::ChunkWriteOk {
                header.op.set(0xdead_beef);
            }
            if command == Command::ChunkRefused {
                header.op.set(1);
            }
        }
    }
    (header, body)
}

/// Take `command`'s valid example, check it parses, apply `mutate`, reseal
/// both checksums with `seal` (inside `Message::new`), and check that parsing
/// fails with exactly `reason`. Because the unmutated example is accepted and
/// the checksums hold, the rule under test is the only thing that can fire.
fn assert_rule(
    command: Command,
    reason: &'static str,
    mutate: impl FnOnce(&mut Header, &mut Vec<u8>),
) {
    let (mut header, mut body) = valid_example(command);
    let valid = Message::new(header, &body);
    assert!(
        Message::parse(valid.bytes(), MESSAGE_SIZE_MAX).is_ok(),
        "{command:?}: the example must be valid before the mutation"
    );

    mutate(&mut header, &mut body);
    let message = Message::new(header, &body);
    assert!(message.header().valid_checksum());
    assert!(message.header().valid_checksum_body(&body));
    assert_eq!(
        Message::parse(message.bytes(), MESSAGE_SIZE_MAX),
        Err(MessageError::Invalid(reason)),
        "{command:?}"
    );
    assert_eq!(
        header_parse(&message.bytes()[..HEADER_SIZE], MESSAGE_SIZE_MAX),
        Err(MessageError::Invalid(reason)),
        "{command:?}: header_parse must apply the same rule"
    );
}

/// Like `assert_rule`, but the mutation is expected to keep the message valid
/// (the boundary just inside a rule).
fn assert_accepted(command: Command, mutate: impl FnOnce(&mut Header, &mut Vec<u8>)) {
    let (mut header, mut body) = valid_example(command);
    mutate(&mut header, &mut body);
    let message = Message::new(header, &body);
    assert_eq!(
        Message::parse(message.bytes(), MESSAGE_SIZE_MAX),
        Ok(message.clone()),
        "{command:?}: {:?}",
        message.header().invalid(MESSAGE_SIZE_MAX)
    );
}

// ---------------------------------------------------------------------------
// Roundtrip.

/// Parsing what `new` built gives back the same header, body and bytes, and
/// the header is laid out as documented (size, both checksums).
fn assert_roundtrip(header: Header, body: &[u8]) {
    let message = Message::new(header, body);
    let parsed = match Message::parse(message.bytes(), MESSAGE_SIZE_MAX) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{:?}: {error}", header.command()),
    };
    assert_eq!(parsed, message);
    assert_eq!(parsed.bytes(), message.bytes());
    assert_eq!(parsed.body(), body);
    assert_eq!(parsed.header(), message.header());
    assert_eq!(Some(parsed.command()), header.command());
    assert_eq!(parsed.checksum(), parsed.header().checksum.get());
    assert_eq!(header_parse(parsed.bytes(), MESSAGE_SIZE_MAX), Ok(*parsed.header()));

    let sealed = parsed.header();
    assert_eq!(sealed.size.get() as usize, HEADER_SIZE + body.len());
    assert_eq!(sealed.checksum_body.get(), checksum(body));
    assert_eq!(sealed.checksum.get(), checksum(&parsed.bytes()[16..HEADER_SIZE]));
    assert_eq!(&parsed.bytes()[..HEADER_SIZE], sealed.as_bytes());

    // Every field other than the three `seal` writes survives unchanged.
    let mut expected = header;
    let mut actual = *sealed;
    for h in [&mut expected, &mut actual] {
        h.checksum.set(0);
        h.checksum_body.set(0);
        h.size.set(0);
    }
    assert_eq!(actual, expected);
}

#[test]
fn roundtrip_example_of_every_command() {
    for command in COMMANDS_ALL {
        let (header, body) = valid_example(command);
        assert_eq!(body.is_empty(), !command_has_body(command), "{command:?}");
        assert_roundtrip(header, &body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Fails if any valid header/body pair does not survive new → parse.
    #[test]
    fn roundtrip((header, body) in header_and_body_any()) {
        assert_roundtrip(header, &body);
    }

    /// Fails if a single flipped bit of a random valid message is accepted,
    /// or reported as anything but a checksum mismatch of the part it hit.
    #[test]
    fn any_flipped_bit_is_detected(
        (header, body) in header_and_body_any(),
        bit in any::<Index>(),
    ) {
        let message = Message::new(header, &body);
        let bit = bit.index(message.bytes().len() * 8);
        assert_flip_detected(message.bytes(), bit);
    }

    /// Fails if the in-place parse of a shared buffer (the transport's
    /// large-frame path) judges any message or flipped bit differently
    /// from `parse`, or hands back other bytes.
    #[test]
    fn parse_shared_agrees_with_parse(
        (header, body) in header_and_body_any(),
        bit in any::<Index>(),
    ) {
        let message = Message::new(header, &body);
        let shared = Message::parse_shared(message.shared(), MESSAGE_SIZE_MAX);
        prop_assert_eq!(shared.as_ref().map(|m| m.bytes()), Ok(message.bytes()));
        let mut flipped = message.bytes().to_vec();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(
            Message::parse_shared(flipped.clone().into(), MESSAGE_SIZE_MAX).map(|m| m.bytes().to_vec()),
            Message::parse(&flipped, MESSAGE_SIZE_MAX).map(|m| m.bytes().to_vec())
        );
        prop_assert!(Message::parse(&flipped, MESSAGE_SIZE_MAX).is_err());
    }

    /// Fails if a cut-off message is accepted or the reason is wrong.
    #[test]
    fn truncated_is_rejected(
        (header, body) in header_and_body_any(),
        cut in any::<Index>(),
    ) {
        let message = Message::new(header, &body);
        let bytes = message.bytes();
        let length = cut.index(bytes.len());
        let expected = if length < HEADER_SIZE {
            MessageError::TooShort
        } else {
            MessageError::SizeMismatch
        };
        prop_assert_eq!(Message::parse(&bytes[..length], MESSAGE_SIZE_MAX), Err(expected));
    }

    /// Fails if bytes after the message are silently accepted.
    #[test]
    fn extended_is_rejected(
        (header, body) in header_and_body_any(),
        extra in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let message = Message::new(header, &body);
        let mut bytes = message.bytes().to_vec();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(
            Message::parse(&bytes, MESSAGE_SIZE_MAX),
            Err(MessageError::SizeMismatch)
        );
    }

    /// Arbitrary bytes never panic the parser, and whatever it accepts
    /// re-encodes to the same bytes (the fuzz target's property, cheaply).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(message) = Message::parse(&bytes, MESSAGE_SIZE_MAX) {
            let rebuilt = Message::new(*message.header(), message.body());
            prop_assert_eq!(rebuilt.bytes(), &bytes[..]);
        }
    }
}

// ---------------------------------------------------------------------------
// Single-bit corruption, exhaustively on fixed messages.

/// A flipped bit in the header breaks the header checksum (it covers bytes
/// 16..256, and bytes 0..16 are the checksum itself); in the body it breaks
/// the body checksum. Anything else — in particular acceptance — fails.
fn assert_flip_detected(bytes: &[u8], bit: usize) {
    let expected = if bit < HEADER_SIZE * 8 {
        MessageError::HeaderChecksum
    } else {
        MessageError::BodyChecksum
    };
    let flipped = flip_bit(bytes, bit);
    assert_eq!(
        Message::parse(&flipped, MESSAGE_SIZE_MAX),
        Err(expected),
        "bit {bit} (byte {})",
        bit / 8
    );
}

#[test]
fn every_flipped_bit_is_detected_prepare_with_64_byte_body() {
    let (header, body) = valid_example(Command::Prepare);
    assert_eq!(body.len(), 64);
    let message = Message::new(header, &body);
    assert_eq!(message.bytes().len(), HEADER_SIZE + 64);
    for bit in 0..message.bytes().len() * 8 {
        assert_flip_detected(message.bytes(), bit);
    }
}

#[test]
fn every_flipped_bit_is_detected_start_view_with_64_byte_body() {
    let (header, body) = valid_example(Command::StartView);
    assert_eq!(body.len(), 64);
    let message = Message::new(header, &body);
    for bit in 0..message.bytes().len() * 8 {
        assert_flip_detected(message.bytes(), bit);
    }
}

#[test]
fn every_flipped_bit_is_detected_commit_header_only() {
    let (header, body) = valid_example(Command::Commit);
    let message = Message::new(header, &body);
    assert_eq!(message.bytes().len(), HEADER_SIZE);
    for bit in 0..HEADER_SIZE * 8 {
        assert_flip_detected(message.bytes(), bit);
    }
}

// ---------------------------------------------------------------------------
// Framing: truncated and extended buffers.

#[test]
fn every_prefix_shorter_than_a_header_is_too_short() {
    let (header, body) = valid_example(Command::Prepare);
    let message = Message::new(header, &body);
    for length in 0..HEADER_SIZE {
        let prefix = &message.bytes()[..length];
        assert_eq!(header_parse(prefix, MESSAGE_SIZE_MAX), Err(MessageError::TooShort));
        assert_eq!(Message::parse(prefix, MESSAGE_SIZE_MAX), Err(MessageError::TooShort));
    }
}

#[test]
fn truncated_body_is_size_mismatch_but_header_alone_parses() {
    let (header, body) = valid_example(Command::Prepare);
    let message = Message::new(header, &body);
    let bytes = message.bytes();
    for length in HEADER_SIZE..bytes.len() {
        assert_eq!(
            Message::parse(&bytes[..length], MESSAGE_SIZE_MAX),
            Err(MessageError::SizeMismatch),
            "length {length}"
        );
        // A transport reads the header first and trusts its size.
        assert_eq!(header_parse(&bytes[..length], MESSAGE_SIZE_MAX), Ok(*message.header()));
    }
}

#[test]
fn extended_buffer_is_size_mismatch() {
    for command in [Command::Prepare, Command::Commit] {
        let (header, body) = valid_example(command);
        let message = Message::new(header, &body);
        for extra in [1, 2, 255, 256, 4096] {
            let mut bytes = message.bytes().to_vec();
            bytes.resize(bytes.len() + extra, 0);
            assert_eq!(
                Message::parse(&bytes, MESSAGE_SIZE_MAX),
                Err(MessageError::SizeMismatch),
                "{command:?} + {extra}"
            );
        }
    }
}

/// A header whose size was rewritten to match a cut (or grown) buffer, with
/// a valid header checksum but the original body checksum: the length now
/// agrees, so only the body checksum can catch it.
#[test]
fn resized_with_forged_size_is_body_checksum() {
    let (header, body) = valid_example(Command::Prepare);
    let message = Message::new(header, &body);
    let body_lengths = [0, 1, body.len() - 1, body.len() + 1, body.len() * 2];
    for body_length in body_lengths {
        let mut forged = *message.header();
        forged.size.set((HEADER_SIZE + body_length) as u32);
        checksum_header_only(&mut forged);
        let mut bytes = forged.as_bytes().to_vec();
        let mut forged_body = body.clone();
        forged_body.resize(body_length, 0);
        bytes.extend_from_slice(&forged_body);
        assert_eq!(header_parse(&bytes, MESSAGE_SIZE_MAX), Ok(forged));
        assert_eq!(
            Message::parse(&bytes, MESSAGE_SIZE_MAX),
            Err(MessageError::BodyChecksum),
            "body length {body_length}"
        );
    }
}

#[test]
fn body_swapped_for_another_of_the_same_length_is_body_checksum() {
    let (header, body) = valid_example(Command::Request);
    let message = Message::new(header, &body);
    let mut bytes = message.bytes().to_vec();
    bytes[HEADER_SIZE..].reverse();
    assert_ne!(&bytes[HEADER_SIZE..], &body[..]);
    assert_eq!(Message::parse(&bytes, MESSAGE_SIZE_MAX), Err(MessageError::BodyChecksum));
}

// ---------------------------------------------------------------------------
// Layout and constants the wire format depends on.

#[test]
fn command_values_are_0_to_21_and_nothing_else() {
    for (value, command) in COMMANDS_ALL.iter().enumerate() {
        assert_eq!(*command as u8 as usize, value);
        assert_eq!(Command::from_u8(value as u8), Some(*command));
    }
    for value in COMMANDS_ALL.len() as u8..=u8::MAX {
        assert_eq!(Command::from_u8(value), None, "{value}");
    }
}

/// Pins the checksum to xxh3-128 (seed 0): the xxHash reference value for
/// the empty input. A switch to another hash or seed breaks every stored WAL.
#[test]
fn checksum_is_xxh3_128() {
    assert_eq!(checksum(b""), 0x99aa06d3014798d86001c324468d497f);
    let message = Message::new(Header::new(Command::Ping), b"");
    assert_eq!(message.header().checksum_body.get(), 0x99aa06d3014798d86001c324468d497f);
}

#[test]
fn header_new_is_a_valid_empty_header() {
    let header = Header::new(Command::Ping);
    assert_eq!(header.protocol.get(), PROTOCOL_VERSION);
    assert_eq!(header.size.get() as usize, HEADER_SIZE);
    assert_eq!(header.command(), Some(Command::Ping));
    assert_eq!(header.invalid(MESSAGE_SIZE_MAX), None);
    assert!(!header.valid_checksum(), "an unsealed header must not pass");
}

#[test]
fn integers_are_little_endian_at_their_offsets() {
    let (mut header, body) = valid_example(Command::Prepare);
    header.op.set(0x0102_0304_0506_0708);
    header.commit.set(1);
    header.view.set(0x0a0b_0c0d);
    let message = Message::new(header, &body);
    let bytes = message.bytes();
    assert_eq!(&bytes[144..152], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&bytes[176..180], &0x0a0b_0c0du32.to_le_bytes());
    assert_eq!(&bytes[184..188], &((HEADER_SIZE + body.len()) as u32).to_le_bytes());
    assert_eq!(&bytes[196..198], &PROTOCOL_VERSION.to_le_bytes());
    assert_eq!(bytes[198], Command::Prepare as u8);
    assert_eq!(&bytes[32..48], &checksum(&body).to_le_bytes());
    assert_eq!(&bytes[0..16], &checksum(&bytes[16..HEADER_SIZE]).to_le_bytes());
}

// ---------------------------------------------------------------------------
// Validation rules of `Header::invalid`, one test (or more) per rule.

#[test]
fn every_example_is_valid() {
    for command in COMMANDS_ALL {
        let (header, body) = valid_example(command);
        let message = Message::new(header, &body);
        assert_eq!(message.header().invalid(MESSAGE_SIZE_MAX), None, "{command:?}");
    }
}

#[test]
fn checksum_padding_not_zero() {
    for byte in 0..16 {
        assert_rule(Command::Ping, "checksum_padding not zero", |h, _| {
            h.checksum_padding[byte] = 1;
        });
    }
}

#[test]
fn checksum_body_padding_not_zero() {
    for byte in 0..16 {
        assert_rule(Command::Prepare, "checksum_body_padding not zero", |h, _| {
            h.checksum_body_padding[byte] = 0x80;
        });
    }
}

#[test]
fn reserved_bytes_not_zero() {
    for byte in 0..55 {
        assert_rule(Command::Request, "reserved bytes not zero", |h, _| {
            h.reserved[byte] = 0xff;
        });
    }
}

#[test]
fn protocol_version_other_than_current() {
    for protocol in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        assert_rule(Command::Commit, "unknown protocol version", |h, _| {
            h.protocol.set(protocol);
        });
    }
}

/// `seal` always writes the true size, so a size below the header is forged
/// with the header checksum alone.
#[test]
fn size_below_header_size() {
    for size in [0, 1, HEADER_SIZE as u32 - 1] {
        let mut header = Header::new(Command::Ping);
        header.seal(&[]);
        header.size.set(size);
        checksum_header_only(&mut header);
        assert!(header.valid_checksum());
        assert_eq!(
            header_parse(header.as_bytes(), MESSAGE_SIZE_MAX),
            Err(MessageError::Invalid("size smaller than the header"))
        );
        assert_eq!(
            Message::parse(header.as_bytes(), MESSAGE_SIZE_MAX),
            Err(MessageError::Invalid("size smaller than the header"))
        );
    }
}

#[test]
fn size_above_message_size_max() {
    let (header, body) = valid_example(Command::Request);
    let message = Message::new(header, &body);
    let size = message.bytes().len();
    // At the bound it is accepted; one byte less of allowance rejects it.
    assert_eq!(Message::parse(message.bytes(), size), Ok(message.clone()));
    assert_eq!(
        Message::parse(message.bytes(), size - 1),
        Err(MessageError::Invalid("size larger than message_size_max"))
    );
    assert_eq!(
        header_parse(message.bytes(), HEADER_SIZE),
        Err(MessageError::Invalid("size larger than message_size_max"))
    );
    // A size field of u32::MAX is rejected before any buffer is that large.
    let mut forged = *message.header();
    forged.size.set(u32::MAX);
    checksum_header_only(&mut forged);
    assert_eq!(
        header_parse(forged.as_bytes(), MESSAGE_SIZE_MAX),
        Err(MessageError::Invalid("size larger than message_size_max"))
    );
}

#[test]
fn unknown_command_22_to_255() {
    for value in COMMANDS_ALL.len() as u8..=u8::MAX {
        assert_rule(Command::Ping, "unknown command", |h, _| h.command = value);
    }
}

#[test]
fn reserved_rules() {
    assert_rule(Command::Reserved, "reserved: has a body", |_, body| {
        body.push(0);
    });
    assert_rule(Command::Reserved, "reserved: non-zero fields", |h, _| {
        h.view.set(1);
    });
    assert_rule(Command::Reserved, "reserved: non-zero fields", |h, _| {
        h.commit.set(1);
    });
    assert_rule(Command::Reserved, "reserved: non-zero fields", |h, _| {
        h.client.set(1);
    });
}

#[test]
fn request_client_zero() {
    assert_rule(Command::Request, "request: client is zero", |h, _| {
        h.client.set(0);
    });
}

#[test]
fn request_protocol_operation() {
    let reason = "request: protocol operation from a client";
    for operation in (0..OPERATION_STATE_MACHINE_MIN).filter(|&o| o != OPERATION_REGISTER) {
        assert_rule(Command::Request, reason, |h, _| h.operation = operation);
    }
    assert_accepted(Command::Request, |h, _| {
        h.operation = OPERATION_REGISTER;
        h.request.set(0);
    });
    assert_accepted(Command::Request, |h, _| h.operation = u8::MAX);
}

#[test]
fn request_register_iff_request_zero() {
    let reason = "request: register must be request 0 and only it";
    assert_rule(Command::Request, reason, |h, _| {
        h.operation = OPERATION_REGISTER;
        h.request.set(1);
    });
    assert_rule(Command::Request, reason, |h, _| h.request.set(0));
}

#[test]
fn request_op_or_commit_set() {
    let reason = "request: op or commit set";
    assert_rule(Command::Request, reason, |h, _| h.op.set(1));
    assert_rule(Command::Request, reason, |h, _| h.commit.set(1));
}

#[test]
fn prepare_op_zero_not_root() {
    let reason = "prepare: op 0 that is not the root";
    assert_rule(Command::Prepare, reason, |h, _| {
        h.op.set(0);
        h.commit.set(0);
    });
    assert_rule(Command::Prepare, reason, |h, _| {
        h.op.set(0);
        h.commit.set(0);
        h.operation = OPERATION_NOOP;
        h.client.set(0);
    });
    assert_accepted(Command::Prepare, |h, _| {
        h.op.set(0);
        h.commit.set(0);
        h.operation = OPERATION_ROOT;
        h.client.set(0);
    });
}

#[test]
fn prepare_commit_not_below_op() {
    let reason = "prepare: commit not below op";
    assert_rule(Command::Prepare, reason, |h, _| h.commit.set(h.op.get()));
    assert_rule(Command::Prepare, reason, |h, _| h.commit.set(u64::MAX));
    assert_accepted(Command::Prepare, |h, _| h.commit.set(h.op.get() - 1));
}

#[test]
fn prepare_bad_operation() {
    let reason = "prepare: bad operation";
    assert_rule(Command::Prepare, reason, |h, _| {
        h.operation = 0;
        h.client.set(0);
    });
    assert_rule(Command::Prepare, reason, |h, _| {
        h.operation = OPERATION_ROOT;
        h.client.set(0);
    });
}

#[test]
fn prepare_client_iff_from_client() {
    let reason = "prepare: client set iff the operation comes from a client";
    assert_rule(Command::Prepare, reason, |h, _| h.client.set(0));
    assert_rule(Command::Prepare, reason, |h, _| {
        h.operation = OPERATION_REGISTER;
        h.client.set(0);
    });
    assert_rule(Command::Prepare, reason, |h, _| h.operation = OPERATION_NOOP);
    assert_accepted(Command::Prepare, |h, _| {
        h.operation = OPERATION_NOOP;
        h.client.set(0);
    });
}

#[test]
fn prepare_ok_rules() {
    assert_rule(Command::PrepareOk, "prepare_ok: op 0", |h, _| h.op.set(0));
    assert_rule(Command::PrepareOk, "prepare_ok: has a body", |_, body| {
        body.push(0);
    });
}

#[test]
fn reply_rules() {
    assert_rule(Command::Reply, "reply: client is zero", |h, _| {
        h.client.set(0);
    });
    let reason = "reply: op 0 for a logged operation";
    assert_rule(Command::Reply, reason, |h, _| {
        h.op.set(0);
        h.operation = OPERATION_REGISTER;
    });
    assert_rule(Command::Reply, reason, |h, _| {
        h.op.set(0);
        h.operation = OPERATION_STATE_MACHINE_MIN - 1;
    });
    assert_accepted(Command::Reply, |h, _| h.op.set(0));
}

#[test]
fn view_change_log_view_above_view() {
    for command in [Command::DoViewChange, Command::StartView] {
        assert_rule(command, "view change: log_view above view", |h, _| {
            h.log_view.set(h.view.get() + 1);
        });
        assert_accepted(command, |h, _| h.log_view.set(h.view.get()));
    }
}

#[test]
fn start_view_commit_above_op() {
    assert_rule(Command::StartView, "start_view: commit above op", |h, _| {
        h.commit.set(h.op.get() + 1);
    });
    assert_accepted(Command::StartView, |h, _| h.commit.set(h.op.get()));
}

#[test]
fn control_message_with_a_body() {
    for command in COMMANDS_CONTROL {
        assert_rule(command, "control message with a body", |_, body| {
            body.push(0);
        });
    }
}

#[test]
fn checkpoint_chunk_beyond_total_size() {
    let reason = "checkpoint_chunk: piece beyond the total size";
    // op (offset) + body length ends one byte past commit (total size).
    assert_rule(Command::CheckpointChunk, reason, |h, body| {
        h.commit.set(h.op.get() + body.len() as u64 - 1);
    });
    // The end overflows u64: must be rejected, not wrap around.
    assert_rule(Command::CheckpointChunk, reason, |h, _| {
        h.op.set(u64::MAX);
        h.commit.set(u64::MAX);
    });
    assert_accepted(Command::CheckpointChunk, |h, body| {
        h.commit.set(h.op.get() + body.len() as u64);
    });
    assert_accepted(Command::CheckpointChunk, |h, body| {
        h.op.set(u64::MAX - body.len() as u64);
        h.commit.set(u64::MAX);
    });
}

#[test]
fn chunk_rules() {
    for command in [
        Command::ChunkWrite,
        Command::ChunkWriteOk,
        Command::ChunkRead,
        Command::ChunkData,
        Command::ChunkMissing,
        Command::ChunkRefused,
    ] {
        assert_rule(command, "chunk: chunk id is zero", |h, _| h.context.set(0));
        assert_rule(command, "chunk: commit or view set", |h, _| h.commit.set(1));
        assert_rule(command, "chunk: commit or view set", |h, _| h.view.set(1));
    }
    for command in [Command::ChunkWrite, Command::ChunkData] {
        assert_rule(command, "chunk: no bytes", |_, body| body.clear());
    }
    for command in
        [Command::ChunkWriteOk, Command::ChunkRead, Command::ChunkMissing, Command::ChunkRefused]
    {
        assert_rule(command, "chunk: body on a command without one", |_, body| body.push(1));
    }
    for reason in [0, 5, u64::MAX] {
        assert_rule(Command::ChunkRefused, "chunk_refused: unknown reason", |h, _| {
            h.op.set(reason)
        });
    }
    for command in [Command::ChunkWriteOk, Command::ChunkData] {
        assert_rule(command, "chunk: crc32c above u32", |h, _| h.op.set(1 << 32));
    }
    for command in [Command::ChunkRead, Command::ChunkMissing] {
        assert_rule(command, "chunk: op set", |h, _| h.op.set(1));
    }
    // A ChunkWrite's op is 0 or a crc32c claim: bit 32 and nothing above.
    for op in [1, u64::from(u32::MAX), 3 << 32, u64::MAX] {
        assert_rule(Command::ChunkWrite, "chunk_write: op neither 0 nor a crc32c claim", |h, _| {
            h.op.set(op)
        });
    }
    for crc in [0, 1, u32::MAX] {
        let op = toasty::vsr::message::chunk_crc32c_claim(crc);
        assert_eq!(toasty::vsr::message::chunk_crc32c_claimed(op), Some(crc));
    }
    assert_eq!(toasty::vsr::message::chunk_crc32c_claimed(0), None);
}
