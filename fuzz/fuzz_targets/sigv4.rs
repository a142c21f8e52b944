//! Arbitrary request heads into SigV4 verification (`toasty::http::sigv4`).
//!
//! Fails if verification or canonicalisation panics on any head, or if it
//! is not deterministic (the same head verified twice, with a cold and a
//! warm signing-key cache, must give the same answer). The seeds are AWS's
//! published example requests, which verify, so mutations start from the
//! paths behind a valid signature.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use toasty::http::request::{parse_head, Limits};
use toasty::http::sigv4::{canonical_request, verify, SigningKeyCache};

/// 2013-05-24T00:00:00Z, the date of AWS's examples.
const EXAMPLE_TIME: i64 = 1_369_353_600;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(head)) = parse_head(data, &Limits::default()) else {
        return;
    };
    let credentials = BTreeMap::from([(
        "AKIAIOSFODNN7EXAMPLE".to_string(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string(),
    )]);
    let mut cache = SigningKeyCache::new();
    let first = verify(&head, &credentials, &mut cache, "us-east-1", EXAMPLE_TIME);
    let second = verify(&head, &credentials, &mut cache, "us-east-1", EXAMPLE_TIME);
    assert_eq!(first, second);
    // Canonicalisation with a signed-header list taken from the request.
    let signed_headers = head.header_str("x-fuzz-signed-headers").unwrap_or("host;x-amz-date");
    let mut out = Vec::new();
    let _ = canonical_request(
        &head,
        signed_headers,
        "UNSIGNED-PAYLOAD",
        data.len().is_multiple_of(2),
        &mut out,
    );
});
