//! The sans-IO object client against scripted replicas: batching through
//! sessions, primary following and timeouts, quorum chunk writes, verified
//! chunk reads with fallback, deadlines and evictions. Each test fails if
//! the client sends to the wrong place, completes too early or too late,
//! or hands out bytes that do not match their checksum.

use toasty::client::{ClientConfig, ClientError, ObjectClient, Outcome, Send};
use toasty::vsr::message::{Command, Header, Message, OPERATION_REGISTER};
use toasty::vsr::state_machine::{
    ChunkRef, DeleteCondition, ObjectMeta, PutCondition, Reply, Request,
};

const CLUSTER: u128 = 0xc1;

fn config() -> ClientConfig {
    let mut config = ClientConfig::production(CLUSTER, 3, 2);
    config.sessions_per_group = 1;
    config
}

fn put(key: &str) -> Request {
    Request::PutObject {
        bucket_id: 1,
        key: key.as_bytes().to_vec(),
        condition: PutCondition::None,
        object: ObjectMeta {
            size: 1,
            etag: b"e".to_vec(),
            inline_data: vec![1],
            ..ObjectMeta::default()
        },
    }
}

/// The reply a primary of `view` sends to `request`.
fn reply_to(request: &Message, view: u32, body: &Reply) -> Message {
    let r = request.header();
    let mut header = Header::new(Command::Reply);
    header.cluster.set(CLUSTER);
    header.group = r.group;
    header.client = r.client;
    header.request = r.request;
    header.operation = r.operation;
    header.view.set(view);
    header.op.set(7);
    header.context.set(0xfeed);
    header.replica = 0;
    let mut encoded = Vec::new();
    body.encode(&mut encoded);
    Message::new(header, &encoded)
}

fn answer(request: &Message, command: Command, replica: u8, op: u64, body: &[u8]) -> Message {
    let r = request.header();
    let mut header = Header::new(command);
    header.cluster.set(CLUSTER);
    header.group = r.group;
    header.client = r.client;
    header.request = r.request;
    header.context = r.context;
    header.replica = replica;
    header.op.set(op);
    Message::new(header, body)
}

/// Register the group's session: returns the client with it registered.
fn registered(group: u32) -> ObjectClient {
    let mut client = ObjectClient::new(config(), 42);
    let handle = client.write(group, put("warm-up")).expect("queued");
    let sends = client.take_sends();
    let register = sends
        .iter()
        .find(|s| s.message.header().operation == OPERATION_REGISTER)
        .expect("registers first");
    client.on_message(reply_to(&register.message, 0, &Reply::ObjectPut { version: 0 }));
    // The queued write goes out as the session's first request.
    let sends = client.take_sends();
    assert_eq!(sends.len(), 1);
    client.on_message(reply_to(&sends[0].message, 0, &Reply::ObjectPut { version: 3 }));
    let completions = client.take_completions();
    assert_eq!(completions, vec![(handle, Ok(Outcome::Reply(Reply::ObjectPut { version: 3 })))]);
    client
}

#[test]
fn writes_queued_behind_a_busy_session_are_batched() {
    let mut client = registered(1);
    let first = client.write(1, put("a")).expect("queued");
    let sends = client.take_sends();
    assert_eq!(sends.len(), 1, "one request in flight per session");
    let handles: Vec<_> =
        (0..5).map(|i| client.write(1, put(&format!("k{i}"))).expect("queued")).collect();
    assert!(client.take_sends().is_empty(), "the session is busy: the writes wait");
    client.on_message(reply_to(&sends[0].message, 0, &Reply::ObjectPut { version: 8 }));
    let batch = client.take_sends();
    assert_eq!(batch.len(), 1, "the waiting writes leave as one request");
    let Ok(Request::Batch(requests)) =
        Request::decode(batch[0].message.header().operation, batch[0].message.body())
    else {
        panic!("a batch");
    };
    assert_eq!(requests.len(), 5);
    let replies = Reply::Batch((0..5).map(|v| Reply::ObjectPut { version: 9 + v }).collect());
    client.on_message(reply_to(&batch[0].message, 0, &replies));
    let completions = client.take_completions();
    assert_eq!(completions[0], (first, Ok(Outcome::Reply(Reply::ObjectPut { version: 8 }))));
    for (index, handle) in handles.iter().enumerate() {
        let expected = Reply::ObjectPut { version: 9 + index as u64 };
        assert_eq!(completions[index + 1], (*handle, Ok(Outcome::Reply(expected))));
    }
}

#[test]
fn a_timed_out_request_is_resent_to_the_next_replica_and_the_view_is_followed() {
    let mut client = registered(0);
    client
        .write(
            0,
            Request::DeleteObject {
                bucket_id: 1,
                key: b"x".to_vec(),
                condition: DeleteCondition::None,
            },
        )
        .expect("queued");
    let sent = client.take_sends();
    assert_eq!(sent[0].replica, 0, "group 0's primary in view 0 is replica 0");
    for _ in 0..config().request_timeout_ticks {
        client.on_tick();
    }
    // (Group 1's idle session registers on a tick too: not this group's.)
    let resent: Vec<Send> = client.take_sends().into_iter().filter(|s| s.group == 0).collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].replica, 1, "rotates to the next replica");
    assert_eq!(
        resent[0].message.bytes(),
        sent[0].message.bytes(),
        "the very same bytes (exactly once is the replicas' job)"
    );
    // A reply from view 2 names replica 2 as group 0's primary.
    client.on_message(reply_to(&resent[0].message, 2, &Reply::ObjectDeleted { existed: false }));
    client.write(0, put("next")).expect("queued");
    assert_eq!(client.take_sends()[0].replica, 2);
}

#[test]
fn a_timeout_while_the_primary_answers_others_resends_to_the_primary() {
    let mut config = config();
    config.sessions_per_group = 2;
    let timeout = config.request_timeout_ticks;
    let mut client = ObjectClient::new(config, 7);
    // Register both sessions of group 0 at replica 0 (view 0).
    client.write(0, put("a")).expect("queued");
    for send in client.take_sends().into_iter().filter(|s| s.group == 0) {
        assert_eq!(send.message.header().operation, OPERATION_REGISTER);
        client.on_message(reply_to(&send.message, 0, &Reply::ObjectPut { version: 0 }));
    }
    let first: Vec<Send> = client.take_sends().into_iter().filter(|s| s.group == 0).collect();
    assert_eq!(first.len(), 1, "one session takes the queued write");
    client.write(0, put("b")).expect("queued");
    let second: Vec<Send> = client.take_sends().into_iter().filter(|s| s.group == 0).collect();
    assert_eq!(second.len(), 1, "the other session takes the next");
    assert_ne!(first[0].message.header().client, second[0].message.header().client);
    // The primary answers the second session shortly before the first
    // times out: the first was lost, the primary is alive.
    for _ in 0..timeout - 2 {
        client.on_tick();
    }
    client.on_message(reply_to(&second[0].message, 0, &Reply::ObjectPut { version: 5 }));
    client.take_sends();
    client.on_tick();
    client.on_tick();
    let resent: Vec<Send> = client.take_sends().into_iter().filter(|s| s.group == 0).collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].replica, 0, "the primary answered within the timeout: resend to it");
    assert_eq!(resent[0].message.bytes(), first[0].message.bytes());
    // Silence for a whole timeout: now the primary is presumed gone.
    for _ in 0..timeout {
        client.on_tick();
    }
    let rotated: Vec<Send> = client.take_sends().into_iter().filter(|s| s.group == 0).collect();
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].replica, 1, "no reply from the primary for a timeout: rotate");
}

#[test]
fn a_chunk_write_completes_at_a_quorum_of_matching_acks() {
    let mut client = ObjectClient::new(config(), 7);
    let data = vec![0xab; 5000];
    let handle = client.chunk_write(1, 99, &data).expect("started");
    let sends: Vec<Send> = client.take_sends();
    assert_eq!(
        sends.iter().map(|s| s.replica).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "to every replica"
    );
    let crc = u64::from(crc32c::crc32c(&data));
    client.on_message(answer(&sends[0].message, Command::ChunkWriteOk, 0, crc ^ 1, &[]));
    client.on_message(answer(&sends[1].message, Command::ChunkWriteOk, 1, crc, &[]));
    assert!(client.take_completions().is_empty(), "a wrong crc is no ack; one ack is no quorum");
    client.on_message(answer(&sends[2].message, Command::ChunkWriteOk, 2, crc, &[]));
    assert_eq!(
        client.take_completions(),
        vec![(handle, Ok(Outcome::ChunkWritten { crc32c: crc as u32 }))]
    );
}

#[test]
fn a_chunk_read_falls_back_past_bad_and_missing_copies() {
    let mut client = ObjectClient::new(config(), 7);
    let data = vec![0x11; 300];
    let chunk = ChunkRef { id: 5u128.to_le_bytes(), length: 300, crc32c: crc32c::crc32c(&data) };
    let handle = client.chunk_read(0, chunk, 1).expect("started");
    let first = client.take_sends();
    assert_eq!(first[0].replica, 1, "the preferred replica first");
    let mut rotten = data.clone();
    rotten[7] ^= 1;
    let rotten_crc = u64::from(crc32c::crc32c(&rotten));
    client.on_message(answer(&first[0].message, Command::ChunkData, 1, rotten_crc, &rotten));
    let second = client.take_sends();
    assert_eq!(second[0].replica, 2, "a copy that fails its checksum is never returned");
    client.on_message(answer(&second[0].message, Command::ChunkMissing, 2, 0, &[]));
    let third = client.take_sends();
    assert_eq!(third[0].replica, 0);
    client.on_message(answer(
        &third[0].message,
        Command::ChunkData,
        0,
        u64::from(chunk.crc32c),
        &data,
    ));
    let completions = client.take_completions();
    let [(done, Ok(Outcome::ChunkRead(message)))] = &completions[..] else {
        panic!("{completions:?}")
    };
    assert_eq!(*done, handle);
    assert_eq!(message.body(), &data[..]);
    // All copies bad: ChunkUnavailable, not bytes.
    let handle = client.chunk_read(0, chunk, 0).expect("started");
    for _ in 0..3 {
        let send = client.take_sends().remove(0);
        client.on_message(answer(&send.message, Command::ChunkMissing, send.replica, 0, &[]));
    }
    assert_eq!(client.take_completions(), vec![(handle, Err(ClientError::ChunkUnavailable))]);
}

#[test]
fn deadlines_and_evictions_fail_operations_instead_of_hanging() {
    let mut client = registered(1);
    let handle = client.write(1, put("slow")).expect("queued");
    let sent = client.take_sends();
    // Evicted: the outcome is unknown, the session registers again.
    let mut header = Header::new(Command::Eviction);
    header.cluster.set(CLUSTER);
    header.group.set(1);
    header.client = sent[0].message.header().client;
    client.on_message(Message::new(header, &[]));
    assert_eq!(client.take_completions(), vec![(handle, Err(ClientError::SessionEvicted))]);
    let again = client.take_sends();
    assert_eq!(again[0].message.header().operation, OPERATION_REGISTER, "registers again");
    // Nobody answers: the deadline fails the operation.
    let handle =
        client.read(0, Request::HeadObject { bucket_id: 1, key: b"k".to_vec() }).expect("sent");
    for _ in 0..config().deadline_ticks {
        client.on_tick();
    }
    let completions = client.take_completions();
    assert!(completions.contains(&(handle, Err(ClientError::Timeout))), "{completions:?}");
    assert_eq!(client.operations_in_flight(), 0, "nothing is left waiting");
}

/// A chunk write end to end through the sans-IO pieces: the client's
/// ChunkWrite claims the body's crc32c, a replica's chunk service stores it
/// under that claim (no crc32c pass of its own) and acknowledges with it, and
/// the client completes. A write claiming a crc32c its body does not have is
/// refused (builds with debug assertions check every claim), never stored.
#[test]
fn a_chunk_write_is_stored_under_the_crc32c_it_claims() {
    use toasty::chunkstore::mem::{MemDriver, MemOptions};
    use toasty::chunkstore::service::{ChunkOut, ChunkService, ChunkServiceConfig};
    use toasty::chunkstore::Config as StoreConfig;
    use toasty::vsr::message::{chunk_crc32c_claimed, ChunkRefusal};

    let group = 1;
    let mut driver = MemDriver::new(StoreConfig::test_min(CLUSTER, group), MemOptions::none(), 5);
    let (mut store, _) = driver.recover();
    let mut service = ChunkService::new(ChunkServiceConfig {
        cluster: CLUSTER,
        group,
        replica: 2,
        replica_count: 3,
        write_queue_bytes_max: 1 << 20,
        read_queue_max: 16,
        repair_delay_ticks: 100,
        repair_in_flight_max: 4,
        repair_timeout_ticks: 300,
        missing_max: 1024,
        audit_interval_ticks: 1000,
        gc_interval_ticks: 1000,
        gc_grace_ticks: 1000,
        gc_deletes_per_pass_max: 16,
    });
    let mut client = ObjectClient::new(config(), 7);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 1) as u8).collect();
    let crc = crc32c::crc32c(&data);
    let handle = client.chunk_write(group, 99, &data).expect("started");
    let sends = client.take_sends();
    let to_us = sends[2].message.clone();
    assert_eq!(chunk_crc32c_claimed(to_us.header().op.get()), Some(crc), "the write claims it");
    let parsed = Message::parse(to_us.bytes(), 1 << 24).expect("checksums hold");
    assert_eq!(parsed.header().op, to_us.header().op, "the claim is under the header checksum");

    let mut out = Vec::new();
    service.on_write(&mut store, 1, to_us, &mut out);
    let mut acks = Vec::new();
    for _ in 0..200 {
        driver.step(&mut store);
        while let Some(event) = store.take_event() {
            service.on_store_event(event, &mut out);
        }
        acks.append(&mut out);
        if !acks.is_empty() {
            break;
        }
    }
    let [ChunkOut::Conn(1, ack)] = acks.as_slice() else { panic!("one answer: {acks:?}") };
    assert_eq!(ack.command(), Command::ChunkWriteOk);
    assert_eq!(ack.header().op.get(), u64::from(crc));
    let location = store.locate(99).expect("stored");
    assert_eq!(location.crc32c, crc);
    // The two other replicas acknowledge too: a quorum, and done.
    client.on_message(ack.clone());
    client.on_message(answer(&sends[0].message, Command::ChunkWriteOk, 0, u64::from(crc), &[]));
    assert_eq!(
        client.take_completions(),
        vec![(handle, Ok(Outcome::ChunkWritten { crc32c: crc }))]
    );

    // Another chunk whose claim is off by one bit.
    let mut header = *sends[2].message.header();
    header.context.set(100);
    header.op.set(toasty::vsr::message::chunk_crc32c_claim(crc ^ 1));
    let lying = Message::new(header, &data);
    service.on_write(&mut store, 1, lying, &mut out);
    if cfg!(debug_assertions) {
        let [ChunkOut::Conn(1, refusal)] = out.as_slice() else { panic!("refused: {out:?}") };
        assert_eq!(refusal.command(), Command::ChunkRefused);
        assert_eq!(refusal.header().op.get(), ChunkRefusal::ContentMismatch as u64);
        assert!(store.locate(100).is_none());
    }
}
