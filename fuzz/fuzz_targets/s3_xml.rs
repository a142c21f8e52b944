//! Arbitrary bytes into each S3 XML body parser (`toasty::http::xml`), and
//! a round trip through the escaping writer.
//!
//! Fails if a parser panics, if a parsed body breaks the bounds the parsers
//! promise (1–10,000 parts in strictly ascending order; 1–1,000 objects), or
//! if a key written with `escape_into` does not parse back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use toasty::http::xml::{
    escape_into, parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete,
    COMPLETE_PARTS_MAX, DELETE_OBJECTS_MAX,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = parse_complete_multipart_upload(data) {
        assert!(!parts.is_empty() && parts.len() <= COMPLETE_PARTS_MAX);
        assert!(parts.windows(2).all(|pair| pair[0].part_number < pair[1].part_number));
        assert!(parts.iter().all(|part| part.part_number >= 1 && !part.etag.is_empty()));
    }
    if let Ok(request) = parse_delete(data) {
        assert!(!request.objects.is_empty() && request.objects.len() <= DELETE_OBJECTS_MAX);
    }
    let _ = parse_create_bucket_configuration(data);

    // Any key without NUL (which XML cannot carry even as a reference)
    // survives escaping and parsing unchanged.
    let key = String::from_utf8_lossy(data).replace('\0', "");
    let mut body = b"<Delete><Object><Key>".to_vec();
    escape_into(&key, &mut body);
    body.extend_from_slice(b"</Key></Object></Delete>");
    let parsed = parse_delete(&body).expect("an escaped key parses");
    assert_eq!(parsed.objects[0].key, key);
});
