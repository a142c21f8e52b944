//! Arbitrary bytes into the message parsers (`header_parse`, `Message::parse`).
//!
//! Fails if either parser panics, if the two disagree about the header, or if
//! a message they accept does not re-encode to exactly the bytes it came from.
//!
//! Random bytes almost never carry a valid xxh3-128 header checksum, so the
//! input is also parsed a second time with both checksums fixed up: that is
//! what lets the fuzzer reach the validation rules behind the checksum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use toasty::vsr::message::{checksum, header_parse, Header, Message, MessageError, HEADER_SIZE};
use zerocopy::{FromBytes, IntoBytes};

/// 1 MiB: the bound a transport would pass for a message.
const MESSAGE_SIZE_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(sealed) = checksums_fixed(data) {
        check(&sealed);
    }
});

fn check(data: &[u8]) {
    let header = header_parse(data, MESSAGE_SIZE_MAX);
    if let Ok(header) = &header {
        // A header that parsed is exactly the first 256 bytes, of a known
        // command, within the size bounds.
        assert_eq!(header.as_bytes(), &data[..HEADER_SIZE]);
        assert!(header.command().is_some());
        assert!(header.valid_checksum());
        let size = header.size.get() as usize;
        assert!(size >= HEADER_SIZE);
        assert!(size <= MESSAGE_SIZE_MAX);
    }

    match Message::parse(data, MESSAGE_SIZE_MAX) {
        Ok(message) => {
            assert_eq!(header, Ok(*message.header()));
            assert_eq!(message.bytes(), data);
            assert_eq!(message.body(), &data[HEADER_SIZE..]);
            assert_eq!(Some(message.command()), message.header().command());
            let rebuilt = Message::new(*message.header(), message.body());
            assert_eq!(rebuilt.bytes(), data);
            assert_eq!(rebuilt, message);
        }
        // The header alone was fine, so only the framing or the body can be
        // wrong.
        Err(error) if header.is_ok() => {
            assert!(
                matches!(error, MessageError::SizeMismatch | MessageError::BodyChecksum),
                "{error:?}"
            );
        }
        // Otherwise both parsers reject for the same reason.
        Err(error) => assert_eq!(header, Err(error)),
    }
}

/// `data` with the body checksum and then the header checksum recomputed,
/// leaving every other field (including `size`) as the fuzzer wrote it.
fn checksums_fixed(data: &[u8]) -> Option<Vec<u8>> {
    let (mut header, body) = Header::read_from_prefix(data).ok()?;
    header.checksum_body.set(checksum(body));
    header.checksum.set(checksum(&header.as_bytes()[16..]));
    let mut sealed = header.as_bytes().to_vec();
    sealed.extend_from_slice(body);
    assert!(header.valid_checksum());
    Some(sealed)
}
