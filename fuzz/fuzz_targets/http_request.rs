//! Arbitrary bytes into the HTTP head parser, the router and the chunked
//! decoder (`toasty::http::request`, `router`).
//!
//! Fails if any of them panics; if a parsed head claims more bytes than it
//! was given; if parsing a prefix of a complete head does not report
//! "incomplete" or an error; or if the chunked decoder consumes more than
//! its input, stops making progress, or decodes differently when the same
//! body arrives in two pieces instead of one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use toasty::http::request::{parse_head, BodyFraming, ChunkedDecoder, HttpError, Limits};
use toasty::http::router::{route, RouterConfig};

fuzz_target!(|data: &[u8]| {
    // Small limits too, so the limit paths are reached with short inputs.
    let small = Limits { head_bytes_max: 512, header_count_max: 8, target_bytes_max: 128 };
    for limits in [Limits::default(), small] {
        check_head(data, &limits);
    }
    // The same bytes as a chunked body, split where the first byte says.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let whole = decode_chunked(data, &[]);
    let pieces = decode_chunked(data, &[split]);
    assert_eq!(whole, pieces);
});

fn check_head(data: &[u8], limits: &Limits) {
    let Ok(Some(head)) = parse_head(data, limits) else {
        return;
    };
    assert!(head.head_len <= data.len());
    assert!(head.head_len <= limits.head_bytes_max);
    assert!(head.target.len() <= limits.target_bytes_max);
    assert!(head.headers.len() <= limits.header_count_max);
    // A strict prefix of the head is never a complete head.
    if head.head_len > 0 {
        let prefix = parse_head(&data[..head.head_len - 1], limits);
        assert!(!matches!(prefix, Ok(Some(_))));
    }
    let framing = head.body_framing();
    let _ = (head.keep_alive(), head.expects_continue());
    let config = RouterConfig { domains: vec!["s3.example.com".to_string()] };
    let _ = route(&head, &config);
    if let Ok(BodyFraming::Chunked) = framing {
        let _ = decode_chunked(&data[head.head_len..], &[]);
    }
}

/// Decodes `body` fed in pieces ending at `splits`; returns the data and
/// where the body ended, or the error.
fn decode_chunked(body: &[u8], splits: &[usize]) -> Result<(Vec<u8>, Option<usize>), HttpError> {
    let mut decoder = ChunkedDecoder::new(1 << 20);
    let mut data = Vec::new();
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&body.len())) {
        let mut piece = &body[start..end];
        start = end;
        while !piece.is_empty() {
            let step = decoder.decode(piece)?;
            assert!(step.consumed <= piece.len());
            assert!(step.consumed > 0 || step.done, "no progress");
            data.extend_from_slice(step.data);
            piece = &piece[step.consumed..];
            if step.done {
                assert!(decoder.is_done());
                return Ok((data, Some(end - piece.len())));
            }
        }
    }
    assert!(decoder.decoded_bytes() >= data.len() as u64);
    Ok((data, None))
}
