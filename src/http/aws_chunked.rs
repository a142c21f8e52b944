//! Incremental decoder of `Content-Encoding: aws-chunked` bodies, the
//! framing SigV4 streaming uploads use inside the HTTP body:
//!
//! - signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`):
//!   `<hex size>;chunk-signature=<sig>\r\n<data>\r\n` … `0;chunk-signature=<sig>\r\n\r\n`,
//!   each signature chained from the previous one, the first from the
//!   request's seed signature;
//! - signed with trailer (`…-PAYLOAD-TRAILER`): the same, but the zero chunk
//!   is followed by trailer fields and `x-amz-trailer-signature:<sig>`;
//! - unsigned with trailer (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, what
//!   current SDKs send by default): `<hex size>\r\n<data>\r\n` … `0\r\n`, then
//!   trailer fields such as `x-amz-checksum-crc32:<base64>\r\n`, then `\r\n`.
//!
//! Streaming: data is returned as slices of the input as it arrives and is
//! never buffered, so memory is one 256-byte line plus counters whatever
//! the chunk size. The price: a signed chunk's data is handed out before
//! its signature (which covers the whole chunk) can be checked; a bad
//! signature fails the `decode` call that completes the chunk. The caller
//! must therefore not make body bytes visible (commit the object) before
//! [`AwsChunkedDecoder::finish`] succeeds, which the PUT path does anyway:
//! chunks are written first and the metadata commit comes last.
//!
//! Limits: a chunk-size line is at most [`CHUNK_LINE_BYTES_MAX`]; a signed
//! chunk carries at most [`SIGNED_CHUNK_BYTES_MAX`] (a bound on unverified
//! data) and, except the last, at least [`SIGNED_CHUNK_BYTES_MIN`]; the body
//! decodes to exactly `x-amz-decoded-content-length` bytes; trailers are at
//! most [`TRAILER_COUNT_MAX`] fields in [`TRAILER_BYTES_MAX`] bytes, each
//! declared in `x-amz-trailer`.

use std::fmt;

use sha2::{Digest, Sha256};

use super::checksum::hex_decode;
use super::error::{S3Error, S3ErrorCode};
use super::request::{
    parse_hex_size, LineBuffer, LineError, RequestHead, CHUNK_LINE_BYTES_MAX, TRAILER_BYTES_MAX,
};
use super::sigv4::{constant_time_eq, PayloadHash, SigningContext, Verified};

pub use super::request::Decoded;

/// Largest signed chunk: how much unverified data may flow before its
/// signature is checked. SDKs use 64 KiB–1 MiB.
pub const SIGNED_CHUNK_BYTES_MAX: u64 = 16 << 20;
/// Smallest signed chunk other than the last (S3's rule).
pub const SIGNED_CHUNK_BYTES_MIN: u64 = 8 << 10;
/// Trailer fields (SDKs send one checksum).
pub const TRAILER_COUNT_MAX: usize = 4;

const SIGNATURE_PREFIX: &[u8] = b";chunk-signature=";
const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// The three framings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Signed,
    SignedTrailer,
    UnsignedTrailer,
}

impl Mode {
    /// The mode a verified payload hash selects; `None` if not aws-chunked.
    pub fn from_payload(payload: PayloadHash) -> Option<Mode> {
        match payload {
            PayloadHash::StreamingSigned => Some(Mode::Signed),
            PayloadHash::StreamingSignedTrailer => Some(Mode::SignedTrailer),
            PayloadHash::StreamingUnsignedTrailer => Some(Mode::UnsignedTrailer),
            PayloadHash::Unsigned | PayloadHash::Sha256(_) => None,
        }
    }

    fn signed(self) -> bool {
        self != Mode::UnsignedTrailer
    }
}

/// Why an aws-chunked body was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsChunkedError {
    /// A chunk-size line is malformed; the text says how.
    BadChunkLine(&'static str),
    /// A signed chunk over [`SIGNED_CHUNK_BYTES_MAX`].
    ChunkTooLarge,
    /// A signed chunk under [`SIGNED_CHUNK_BYTES_MIN`] that was not the last.
    ChunkTooSmall,
    /// A chunk signature does not match.
    BadSignature,
    /// The chunks decode to more or fewer bytes than declared.
    LengthMismatch { declared: u64, decoded: u64 },
    /// Chunk data not followed by CRLF.
    MissingCrlf,
    /// A trailer field is malformed, undeclared, repeated or missing.
    BadTrailer(&'static str),
    /// The trailer signature is missing or does not match.
    BadTrailerSignature,
    /// The outer body ended before the final chunk and trailers.
    Truncated,
}

impl fmt::Display for AwsChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for AwsChunkedError {}

impl From<AwsChunkedError> for S3Error {
    fn from(error: AwsChunkedError) -> S3Error {
        use AwsChunkedError::*;
        let message = error.to_string();
        let code = match error {
            ChunkTooSmall => S3ErrorCode::InvalidChunkSizeError,
            BadSignature | BadTrailerSignature => S3ErrorCode::SignatureDoesNotMatch,
            LengthMismatch { .. } | Truncated => S3ErrorCode::IncompleteBody,
            BadChunkLine(_) | ChunkTooLarge | MissingCrlf | BadTrailer(_) => {
                S3ErrorCode::InvalidRequest
            }
        };
        S3Error::with_message(code, message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SizeLine,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// The signature chain of a signed body.
#[derive(Clone, Debug)]
struct Chain {
    context: SigningContext,
    previous: [u8; 32],
    expected: [u8; 32],
    chunk: Sha256,
}

/// The incremental decoder; see the module documentation.
#[derive(Clone, Debug)]
pub struct AwsChunkedDecoder {
    mode: Mode,
    state: State,
    line: LineBuffer<CHUNK_LINE_BYTES_MAX>,
    chain: Option<Chain>,
    /// The zero-size chunk has been read.
    last_chunk: bool,
    /// The previous data chunk was under the signed minimum.
    previous_small: bool,
    decoded: u64,
    declared: u64,
    /// Lower-case names from `x-amz-trailer`, with whether each was seen.
    expected_trailers: Vec<(String, bool)>,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
    trailer_hash: Sha256,
    trailer_signature: Option<[u8; 32]>,
}

impl AwsChunkedDecoder {
    /// A decoder for `mode`. `declared` is `x-amz-decoded-content-length`,
    /// `x_amz_trailer` the `x-amz-trailer` header (empty if absent),
    /// `signing` the request's context and seed signature: required for
    /// the signed modes (a panic otherwise, since only a caller bug can
    /// leave it out; [`AwsChunkedDecoder::for_request`] always passes it).
    pub fn new(
        mode: Mode,
        declared: u64,
        x_amz_trailer: &str,
        signing: Option<(SigningContext, [u8; 32])>,
    ) -> Result<AwsChunkedDecoder, S3Error> {
        let invalid = |message| S3Error::with_message(S3ErrorCode::InvalidArgument, message);
        let expected_trailers: Vec<(String, bool)> = x_amz_trailer
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| (name.to_ascii_lowercase(), false))
            .collect();
        if expected_trailers.len() > TRAILER_COUNT_MAX
            || (mode == Mode::Signed && !expected_trailers.is_empty())
        {
            return Err(invalid("x-amz-trailer does not fit the payload mode"));
        }
        let chain = match (mode.signed(), signing) {
            (true, Some((context, seed))) => {
                Some(Chain { context, previous: seed, expected: [0; 32], chunk: Sha256::new() })
            }
            (true, None) => panic!("a signed aws-chunked body needs the request's signing context"),
            (false, _) => None,
        };
        Ok(AwsChunkedDecoder {
            mode,
            state: State::SizeLine,
            line: LineBuffer::new(),
            chain,
            last_chunk: false,
            previous_small: false,
            decoded: 0,
            declared,
            expected_trailers,
            trailers: Vec::new(),
            trailer_bytes: 0,
            trailer_hash: Sha256::new(),
            trailer_signature: None,
        })
    }

    /// The decoder for a verified request with a streaming payload, from
    /// its headers: `None` if the payload is not aws-chunked.
    /// MissingContentLength without `x-amz-decoded-content-length`.
    pub fn for_request(
        head: &RequestHead<'_>,
        verified: &Verified,
    ) -> Result<Option<AwsChunkedDecoder>, S3Error> {
        let Some(mode) = Mode::from_payload(verified.payload) else {
            return Ok(None);
        };
        let declared = head
            .header_str("x-amz-decoded-content-length")
            .ok_or_else(|| S3Error::new(S3ErrorCode::MissingContentLength))?
            .trim()
            .parse::<u64>()
            .map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "bad x-amz-decoded-content-length",
                )
            })?;
        let trailer = head.header_str("x-amz-trailer").unwrap_or("");
        let signing = Some((verified.context.clone(), verified.seed_signature));
        AwsChunkedDecoder::new(mode, declared, trailer, signing).map(Some)
    }

    /// Trailer fields (lower-case name, trimmed value), once done.
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Payload bytes decoded so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded
    }

    /// Feeds the next bytes of the (already de-framed) HTTP body; see
    /// [`Decoded`]. At most one data slice per call.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, AwsChunkedError> {
        let mut position = 0;
        loop {
            match self.state {
                State::Data { remaining } => return self.data(input, position, remaining),
                State::Done => return Ok(Decoded { consumed: position, data: &[], done: true }),
                _ => {}
            }
            let Some(&byte) = input.get(position) else {
                return Ok(Decoded { consumed: position, data: &[], done: false });
            };
            position += 1;
            self.on_byte(byte)?;
        }
    }

    /// Call when the HTTP body ended: Truncated unless the final chunk (and
    /// trailers) arrived.
    pub fn finish(&self) -> Result<(), AwsChunkedError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(AwsChunkedError::Truncated),
        }
    }

    fn data<'a>(
        &mut self,
        input: &'a [u8],
        position: usize,
        remaining: u64,
    ) -> Result<Decoded<'a>, AwsChunkedError> {
        let rest = input.get(position..).unwrap_or_default();
        let take = rest.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let data = rest.get(..take).unwrap_or_default();
        let remaining = remaining - take as u64;
        if let Some(chain) = &mut self.chain {
            chain.chunk.update(data);
        }
        if remaining == 0 {
            self.end_chunk()?;
            self.state = State::DataCr;
        } else {
            self.state = State::Data { remaining };
        }
        Ok(Decoded { consumed: position + take, data, done: false })
    }

    /// Checks the signature of the chunk just read and advances the chain.
    fn end_chunk(&mut self) -> Result<(), AwsChunkedError> {
        if let Some(chain) = &mut self.chain {
            let hash: [u8; 32] = std::mem::take(&mut chain.chunk).finalize().into();
            let computed = chain.context.chunk_signature(&chain.previous, &hash);
            if !constant_time_eq(&computed, &chain.expected) {
                return Err(AwsChunkedError::BadSignature);
            }
            chain.previous = computed;
        }
        Ok(())
    }

    fn on_byte(&mut self, byte: u8) -> Result<(), AwsChunkedError> {
        match self.state {
            State::DataCr if byte == b'\r' => self.state = State::DataLf,
            State::DataLf if byte == b'\n' => {
                self.state = if self.last_chunk { self.finish_body()? } else { State::SizeLine };
            }
            State::DataCr | State::DataLf => return Err(AwsChunkedError::MissingCrlf),
            State::SizeLine => {
                if self.push_line(byte)? {
                    self.on_size_line()?;
                    self.line.clear();
                }
            }
            State::Trailer => {
                if self.push_line(byte)? {
                    self.on_trailer_line()?;
                    self.line.clear();
                }
            }
            State::Data { .. } | State::Done => unreachable!("handled by decode"),
        }
        Ok(())
    }

    fn push_line(&mut self, byte: u8) -> Result<bool, AwsChunkedError> {
        self.line.push(byte).map_err(|error| match error {
            LineError::TooLong => AwsChunkedError::BadChunkLine("line over 256 bytes"),
            LineError::BareLf => AwsChunkedError::BadChunkLine("line ends in LF without CR"),
        })
    }

    fn on_size_line(&mut self) -> Result<(), AwsChunkedError> {
        let line = self.line.line();
        let (size, signature) = match self.mode.signed() {
            true => {
                let split = line
                    .iter()
                    .position(|&b| b == b';')
                    .ok_or(AwsChunkedError::BadChunkLine("no chunk-signature"))?;
                let (size, extension) = line.split_at(split);
                let hex = extension
                    .strip_prefix(SIGNATURE_PREFIX)
                    .ok_or(AwsChunkedError::BadChunkLine("extension is not chunk-signature"))?;
                let mut signature = [0; 32];
                hex_decode(hex, &mut signature)
                    .ok_or(AwsChunkedError::BadChunkLine("chunk-signature is not 64 hex digits"))?;
                (size, Some(signature))
            }
            false => (line, None),
        };
        let size = parse_hex_size(size)
            .ok_or(AwsChunkedError::BadChunkLine("chunk size is not 1-16 hex digits"))?;
        self.check_size(size)?;
        if let (Some(chain), Some(signature)) = (&mut self.chain, signature) {
            chain.expected = signature;
        }
        if size > 0 {
            self.state = State::Data { remaining: size };
            return Ok(());
        }
        self.last_chunk = true;
        match self.mode {
            // The empty chunk's data and CRLF follow.
            Mode::Signed => {
                self.end_chunk()?;
                self.state = State::DataCr;
            }
            Mode::SignedTrailer => {
                self.end_chunk()?;
                self.state = State::Trailer;
            }
            Mode::UnsignedTrailer => self.state = State::Trailer,
        }
        Ok(())
    }

    fn check_size(&mut self, size: u64) -> Result<(), AwsChunkedError> {
        let signed = self.mode.signed();
        if signed && size > SIGNED_CHUNK_BYTES_MAX {
            return Err(AwsChunkedError::ChunkTooLarge);
        }
        if signed && size > 0 && self.previous_small {
            return Err(AwsChunkedError::ChunkTooSmall);
        }
        self.previous_small = size < SIGNED_CHUNK_BYTES_MIN;
        let decoded = self.decoded.saturating_add(size);
        if decoded > self.declared {
            return Err(AwsChunkedError::LengthMismatch { declared: self.declared, decoded });
        }
        self.decoded = decoded;
        Ok(())
    }

    fn on_trailer_line(&mut self) -> Result<(), AwsChunkedError> {
        let line = self.line.line();
        if line.is_empty() {
            self.state = self.finish_body()?;
            return Ok(());
        }
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(AwsChunkedError::BadTrailer("trailers over 4 KiB"));
        }
        let text =
            std::str::from_utf8(line).map_err(|_| AwsChunkedError::BadTrailer("not UTF-8"))?;
        let (name, value) = text.split_once(':').ok_or(AwsChunkedError::BadTrailer("no colon"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == TRAILER_SIGNATURE {
            if !self.mode.signed() || self.trailer_signature.is_some() {
                return Err(AwsChunkedError::BadTrailer("unexpected x-amz-trailer-signature"));
            }
            let mut signature = [0; 32];
            hex_decode(value.as_bytes(), &mut signature)
                .ok_or(AwsChunkedError::BadTrailerSignature)?;
            self.trailer_signature = Some(signature);
            return Ok(());
        }
        let Some((_, seen)) =
            self.expected_trailers.iter_mut().find(|(expected, _)| *expected == name)
        else {
            return Err(AwsChunkedError::BadTrailer("trailer not declared in x-amz-trailer"));
        };
        if std::mem::replace(seen, true) {
            return Err(AwsChunkedError::BadTrailer("trailer repeated"));
        }
        // Canonical trailer form for the trailer signature: `name:value\n`.
        self.trailer_hash.update(name.as_bytes());
        self.trailer_hash.update(b":");
        self.trailer_hash.update(value.as_bytes());
        self.trailer_hash.update(b"\n");
        self.trailers.push((name, value.to_string()));
        Ok(())
    }

    /// The body is complete: check length, trailers and trailer signature.
    fn finish_body(&mut self) -> Result<State, AwsChunkedError> {
        if self.decoded != self.declared {
            return Err(AwsChunkedError::LengthMismatch {
                declared: self.declared,
                decoded: self.decoded,
            });
        }
        if self.expected_trailers.iter().any(|(_, seen)| !seen) {
            return Err(AwsChunkedError::BadTrailer(
                "a trailer declared in x-amz-trailer is missing",
            ));
        }
        if self.mode == Mode::SignedTrailer {
            let chain = self.chain.as_ref().expect("signed modes have a chain");
            let hash: [u8; 32] = std::mem::take(&mut self.trailer_hash).finalize().into();
            let computed = chain.context.trailer_signature(&chain.previous, &hash);
            let sent = self.trailer_signature.ok_or(AwsChunkedError::BadTrailerSignature)?;
            if !constant_time_eq(&computed, &sent) {
                return Err(AwsChunkedError::BadTrailerSignature);
            }
        }
        Ok(State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::checksum::{hex_lower, verify_checksum, ChecksumAlgorithm, Checksummer};
    use crate::http::sigv4::derive_signing_key;

    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn context() -> SigningContext {
        SigningContext {
            signing_key: derive_signing_key(SECRET_KEY, b"20130524", "us-east-1"),
            amz_date: "20130524T000000Z".to_string(),
            scope: "20130524/us-east-1/s3/aws4_request".to_string(),
        }
    }

    fn hex32(text: &str) -> [u8; 32] {
        let mut bytes = [0; 32];
        hex_decode(text.as_bytes(), &mut bytes).unwrap();
        bytes
    }

    /// Feeds `body` in pieces ending at `splits`, then the rest; returns the
    /// data and the unconsumed tail.
    fn run(
        mut decoder: AwsChunkedDecoder,
        body: &[u8],
        splits: &[usize],
    ) -> Result<(Vec<u8>, AwsChunkedDecoder), AwsChunkedError> {
        let mut data = Vec::new();
        let mut start = 0;
        for &end in splits.iter().chain(std::iter::once(&body.len())) {
            let mut piece = &body[start..end];
            start = end;
            while !piece.is_empty() {
                let step = decoder.decode(piece)?;
                assert!(step.consumed > 0 || step.done, "no progress");
                data.extend_from_slice(step.data);
                piece = &piece[step.consumed..];
                if step.done {
                    assert!(piece.is_empty() && end == body.len(), "bytes after the end");
                }
            }
        }
        decoder.finish()?;
        Ok((data, decoder))
    }

    // AWS's "Example: PUT Object" of "Signature Calculations for the
    // Authorization Header: Transferring Payload in Multiple Chunks": 65,536
    // + 1,024 bytes of 'a' in 64 KiB chunks, seed and chunk signatures as
    // published.
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const CHUNK_SIGNATURES: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];

    fn aws_signed_body(signatures: [&str; 3]) -> Vec<u8> {
        let mut body = Vec::new();
        for (size, signature) in
            [(65_536usize, signatures[0]), (1024, signatures[1]), (0, signatures[2])]
        {
            body.extend_from_slice(format!("{size:x};chunk-signature={signature}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'a', size));
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    fn signed_decoder(mode: Mode, seed: &str, declared: u64, trailer: &str) -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(mode, declared, trailer, Some((context(), hex32(seed)))).unwrap()
    }

    /// Fails if the chained chunk signatures (AWS's published values), the
    /// data, or the 66,824-byte framing drift, at split points throughout
    /// the metadata and a stride through the data.
    #[test]
    fn aws_signed_example() {
        let body = aws_signed_body(CHUNK_SIGNATURES);
        assert_eq!(body.len(), 66_824);
        let metadata_ends = [0, 65_536 + 87, 66_824 - 88];
        let splits: Vec<usize> = (0..=body.len())
            .filter(|&at| at % 97 == 0 || metadata_ends.iter().any(|&end| at.abs_diff(end) < 100))
            .collect();
        for split in splits {
            let decoder = signed_decoder(Mode::Signed, SEED, 66_560, "");
            let (data, _) =
                run(decoder, &body, &[split]).unwrap_or_else(|error| panic!("{split}: {error}"));
            assert_eq!(data.len(), 66_560);
            assert!(data.iter().all(|&b| b == b'a'));
        }
    }

    /// Fails if a wrong signature, a reordered chain, a wrong declared
    /// length, or a truncated body is accepted.
    #[test]
    fn signed_rejections() {
        let mut wrong = CHUNK_SIGNATURES;
        wrong[1] = CHUNK_SIGNATURES[2];
        let result =
            run(signed_decoder(Mode::Signed, SEED, 66_560, ""), &aws_signed_body(wrong), &[]);
        assert_eq!(result.unwrap_err(), AwsChunkedError::BadSignature);
        let other_seed = CHUNK_SIGNATURES[0];
        let result = run(
            signed_decoder(Mode::Signed, other_seed, 66_560, ""),
            &aws_signed_body(CHUNK_SIGNATURES),
            &[],
        );
        assert_eq!(result.unwrap_err(), AwsChunkedError::BadSignature);
        let mut flipped = aws_signed_body(CHUNK_SIGNATURES);
        flipped[1000] = b'b';
        assert_eq!(
            run(signed_decoder(Mode::Signed, SEED, 66_560, ""), &flipped, &[]).unwrap_err(),
            AwsChunkedError::BadSignature
        );
        let body = aws_signed_body(CHUNK_SIGNATURES);
        let short = run(signed_decoder(Mode::Signed, SEED, 66_559, ""), &body, &[]).unwrap_err();
        assert!(matches!(short, AwsChunkedError::LengthMismatch { .. }));
        let long = run(signed_decoder(Mode::Signed, SEED, 66_561, ""), &body, &[]).unwrap_err();
        assert!(matches!(long, AwsChunkedError::LengthMismatch { .. }));
        let truncated =
            run(signed_decoder(Mode::Signed, SEED, 66_560, ""), &body[..body.len() - 1], &[]);
        assert_eq!(truncated.unwrap_err(), AwsChunkedError::Truncated);
        let unsigned_line = b"400\r\n";
        let result = run(signed_decoder(Mode::Signed, SEED, 1024, ""), unsigned_line, &[]);
        assert!(matches!(result.unwrap_err(), AwsChunkedError::BadChunkLine(_)));
        let huge = format!("1000001;chunk-signature={SEED}\r\n");
        assert_eq!(
            run(signed_decoder(Mode::Signed, SEED, 1 << 30, ""), huge.as_bytes(), &[]).unwrap_err(),
            AwsChunkedError::ChunkTooLarge
        );
    }

    /// Builds a signed body with our own chain (checked against AWS's
    /// values above) so small chunks can be tested.
    fn sign_chunks(seed: &[u8; 32], chunks: &[&[u8]]) -> (Vec<u8>, [u8; 32]) {
        let context = context();
        let mut previous = *seed;
        let mut body = Vec::new();
        for chunk in chunks {
            let hash: [u8; 32] = Sha256::digest(chunk).into();
            previous = context.chunk_signature(&previous, &hash);
            body.extend_from_slice(
                format!("{:x};chunk-signature={}\r\n", chunk.len(), hex_lower(&previous))
                    .as_bytes(),
            );
            body.extend_from_slice(chunk);
            if !chunk.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
        }
        (body, previous)
    }

    /// Fails if a small non-final signed chunk is accepted (S3 requires
    /// 8 KiB for all but the last).
    #[test]
    fn small_signed_chunk_not_last() {
        let seed = hex32(SEED);
        let (mut body, _) = sign_chunks(&seed, &[b"abc", b"def", b""]);
        body.extend_from_slice(b"\r\n");
        let result = run(signed_decoder(Mode::Signed, SEED, 6, ""), &body, &[]);
        assert_eq!(result.unwrap_err(), AwsChunkedError::ChunkTooSmall);
        let (mut body, _) = sign_chunks(&seed, &[b"abc", b""]);
        body.extend_from_slice(b"\r\n");
        let (data, _) = run(signed_decoder(Mode::Signed, SEED, 3, ""), &body, &[]).unwrap();
        assert_eq!(data, b"abc");
    }

    /// AWS's trailer example ("Signature Calculations … Including Trailing
    /// Headers"): seed 106e2a8a…, chunk signatures b474d886…, 1c1344b1…,
    /// 2ca2aba2…, trailer `x-amz-checksum-crc32c:sOO8/Q==` signed d81f82fc….
    /// Fails if the trailer canonical form or its signature drifts.
    #[test]
    fn aws_signed_trailer_example() {
        let seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
        let data = vec![b'a'; 66_560];
        let (mut body, last) = sign_chunks(&hex32(seed), &[&data[..65_536], &data[65_536..], b""]);
        assert_eq!(
            hex_lower(&last),
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
        );
        body.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
        let trailer_signature = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
        body.extend_from_slice(
            format!("x-amz-trailer-signature:{trailer_signature}\r\n\r\n").as_bytes(),
        );
        let decoder = signed_decoder(Mode::SignedTrailer, seed, 66_560, "x-amz-checksum-crc32c");
        let (decoded, decoder) = run(decoder, &body, &[65_600, 66_700]).unwrap();
        assert_eq!(decoded, data);
        assert_eq!(
            decoder.trailers(),
            [("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]
        );
        let tampered = String::from_utf8(body.clone()).unwrap().replace("sOO8/Q==", "sOO8/Q=A");
        let decoder = signed_decoder(Mode::SignedTrailer, seed, 66_560, "x-amz-checksum-crc32c");
        assert_eq!(
            run(decoder, tampered.as_bytes(), &[]).unwrap_err(),
            AwsChunkedError::BadTrailerSignature
        );
    }

    const UNSIGNED: &[u8] =
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";

    fn unsigned_decoder(declared: u64) -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(Mode::UnsignedTrailer, declared, "x-amz-checksum-crc32", None)
            .unwrap()
    }

    /// Fails if any pair of split points in the unsigned-trailer form (what
    /// SDKs send by default) changes the data or the trailer, and checks the
    /// trailer against the data's CRC32 as the handler will.
    #[test]
    fn unsigned_trailer_every_split() {
        for a in 0..=UNSIGNED.len() {
            for b in a..=UNSIGNED.len() {
                let (data, decoder) = run(unsigned_decoder(11), UNSIGNED, &[a, b]).unwrap();
                assert_eq!(data, b"hello world");
                let [(name, value)] = decoder.trailers() else { panic!() };
                let algorithm = ChecksumAlgorithm::from_header_name(name).unwrap();
                let mut checksummer = Checksummer::new(algorithm);
                checksummer.update(&data);
                assert_eq!(
                    verify_checksum(algorithm, value.as_bytes(), &checksummer.finalize()),
                    Ok(())
                );
            }
        }
    }

    /// Fails if a malformed unsigned body or trailer is accepted.
    #[test]
    fn unsigned_rejections() {
        let cases: [(&[u8], u64); 9] = [
            (b"5\r\nhello\r\n0\r\n\r\n", 5),
            (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n", 5),
            (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:A\r\n\r\n", 5),
            (b"5\r\nhello\r\n0\r\nno-colon\r\n\r\n", 5),
            (b"5\r\nhelloXY0\r\n\r\n", 5),
            (b"5;chunk-signature=00\r\nhello\r\n0\r\n\r\n", 5),
            (b"g\r\n", 5),
            (b"5\nhello", 5),
            (b"5\r\nhello\r\n0\r\nx-amz-trailer-signature:00\r\n\r\n", 5),
        ];
        for (body, declared) in cases {
            assert!(
                run(unsigned_decoder(declared), body, &[]).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let result = run(unsigned_decoder(4), b"5\r\nhello", &[]);
        assert!(matches!(result.unwrap_err(), AwsChunkedError::LengthMismatch { .. }));
        let mut long_trailer = b"0\r\n".to_vec();
        long_trailer.extend_from_slice(
            format!("x-amz-checksum-crc32:{}\r\n\r\n", "A".repeat(300)).as_bytes(),
        );
        assert!(run(unsigned_decoder(0), &long_trailer, &[]).is_err());
        // Every error maps to a 4xx S3 error.
        let error: S3Error = AwsChunkedError::ChunkTooSmall.into();
        assert_eq!(error.code, S3ErrorCode::InvalidChunkSizeError);
    }
}
