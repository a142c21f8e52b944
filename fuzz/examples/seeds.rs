//! Writes the seed corpus of `message_header`: one valid message per command.
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds/message_header
//!
//! Without seeds libFuzzer starts from an empty input and needs tens of
//! seconds to grow inputs past the 256-byte header; with them a short CI run
//! exercises the validation rules from its first iteration. Rerun after any
//! change to the header format (the old seeds still parse as far as the
//! version check, so stale seeds weaken the run without failing it).

use std::path::PathBuf;

use toasty::vsr::message::{Command, Header, Message, OPERATION_STATE_MACHINE_MIN};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: seeds DIR"));
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    for value in 0..=u8::MAX {
        let Some(command) = Command::from_u8(value) else {
            continue;
        };
        let (header, body) = example(command);
        let message = Message::new(header, &body);
        // A seed that does not parse would only teach the fuzzer a rejection.
        assert_eq!(Message::parse(message.bytes(), 1 << 20), Ok(message.clone()));
        let path = dir.join(format!("{value:02}-{command:?}.bin"));
        std::fs::write(&path, message.bytes()).expect("write a seed");
    }
}

fn example(command: Command) -> (Header, Vec<u8>) {
    let mut header = Header::new(command);
    header.cluster.set(1);
    header.view.set(2);
    header.log_view.set(1);
    header.op.set(3);
    header.commit.set(2);
    let mut body = Vec::new();
    match command {
        Command::Reserved => {
            header.view.set(0);
            header.commit.set(0);
        }
        Command::Request => {
            header.client.set(7);
            header.request.set(1);
            header.operation = OPERATION_STATE_MACHINE_MIN;
            header.op.set(0);
            header.commit.set(0);
            body = b"request".to_vec();
        }
        Command::Prepare | Command::Reply => {
            header.client.set(7);
            header.operation = OPERATION_STATE_MACHINE_MIN;
            body = b"prepare or reply".to_vec();
        }
        Command::DoViewChange | Command::StartView => body = vec![0; 64],
        Command::CheckpointChunk => {
            header.commit.set(3 + 16);
            body = vec![0xcc; 16];
        }
        _ => {}
    }
    (header, body)
}
