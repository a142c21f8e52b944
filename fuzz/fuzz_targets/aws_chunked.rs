//! Arbitrary bytes and splits into the aws-chunked decoder
//! (`toasty::http::aws_chunked`), in all three modes.
//!
//! Input: byte 0 picks the mode, bytes 1–2 the declared decoded length,
//! byte 3 a split point, the rest is the body. Fails if the decoder panics,
//! consumes more than it was given, stops making progress, hands out more
//! data than declared, or decodes differently in two pieces than in one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use toasty::http::aws_chunked::{AwsChunkedDecoder, AwsChunkedError, Mode};
use toasty::http::sigv4::{derive_signing_key, SigningContext};

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, high, low, split], body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mode = match mode % 3 {
        0 => Mode::Signed,
        1 => Mode::SignedTrailer,
        _ => Mode::UnsignedTrailer,
    };
    let declared = u64::from(u16::from_be_bytes([high, low]));
    let split = usize::from(split).min(body.len());
    let whole = decode(mode, declared, body, &[]);
    let pieces = decode(mode, declared, body, &[split]);
    assert_eq!(whole, pieces);
});

fn decoder(mode: Mode, declared: u64) -> AwsChunkedDecoder {
    let trailer = if mode == Mode::Signed { "" } else { "x-amz-checksum-crc32" };
    let context = SigningContext {
        signing_key: derive_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            b"20130524",
            "us-east-1",
        ),
        amz_date: "20130524T000000Z".to_string(),
        scope: "20130524/us-east-1/s3/aws4_request".to_string(),
    };
    AwsChunkedDecoder::new(mode, declared, trailer, Some((context, [7; 32])))
        .expect("valid configuration")
}

fn decode(
    mode: Mode,
    declared: u64,
    body: &[u8],
    splits: &[usize],
) -> Result<Vec<u8>, AwsChunkedError> {
    let mut decoder = decoder(mode, declared);
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
            assert!(data.len() as u64 <= declared);
            piece = &piece[step.consumed..];
            if step.done {
                decoder.finish()?;
                return Ok(data);
            }
        }
    }
    decoder.finish()?;
    Ok(data)
}
