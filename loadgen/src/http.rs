//! HTTP/1.1 response parsing, sans-IO: bytes in, a parsed head and body
//! events out. The connection code owns the socket; this module never reads
//! a clock or touches I/O, so the tests feed it byte by byte.

/// Headers we look at in a response; more than this is a protocol error
/// (S3 servers send ~10).
pub const RESPONSE_HEADERS_MAX: usize = 48;
/// A response head larger than this is a protocol error.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;
/// ETags are 32 hex digits plus quotes, or `"<hex>-<parts>"` for multipart.
pub const ETAG_BYTES_MAX: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Length(u64),
    Chunked,
    /// No length and not chunked: the body ends when the server closes.
    UntilEof,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub body: BodyKind,
    /// The server asked to close the connection after this response.
    pub close: bool,
    pub etag: [u8; ETAG_BYTES_MAX],
    pub etag_len: usize,
}

impl ResponseHead {
    pub fn etag(&self) -> &[u8] {
        &self.etag[..self.etag_len]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Parses a response head from the start of `buf`. `Ok(None)` means more
/// bytes are needed; `Ok(Some((head, n)))` means the head took `n` bytes.
/// `request_had_no_body_response` is true for HEAD requests, whose responses
/// carry a Content-Length but no body.
pub fn parse_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(ResponseHead, usize)>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > RESPONSE_HEAD_BYTES_MAX => {
            return Err(perr(format!("response head longer than {RESPONSE_HEAD_BYTES_MAX} bytes")))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(perr(format!("malformed response head: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut head = ResponseHead {
        status,
        body: BodyKind::UntilEof,
        close: http10,
        etag: [0; ETAG_BYTES_MAX],
        etag_len: 0,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text =
                std::str::from_utf8(h.value).map_err(|_| perr("Content-Length is not text"))?;
            let n = text
                .trim()
                .parse::<u64>()
                .map_err(|_| perr(format!("bad Content-Length {text:?}")))?;
            if length.is_some_and(|old| old != n) {
                return Err(perr("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = contains_token(h.value, b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if contains_token(h.value, b"close") {
                head.close = true;
            } else if contains_token(h.value, b"keep-alive") {
                head.close = false;
            }
        } else if h.name.eq_ignore_ascii_case("etag") && h.value.len() <= ETAG_BYTES_MAX {
            head.etag[..h.value.len()].copy_from_slice(h.value);
            head.etag_len = h.value.len();
        }
    }
    let no_body = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    head.body = if no_body {
        BodyKind::Length(0)
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        head.close = true;
        BodyKind::UntilEof
    };
    Ok(Some((head, consumed)))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { value: u64, digits: u8 },
    Extension { value: u64 },
    SizeLf { value: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

/// Chunk sizes above this are rejected (no S3 server sends 2^40-byte chunks).
const CHUNK_SIZE_DIGITS_MAX: u8 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkState),
    UntilEof,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkState(Chunk);

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        match kind {
            BodyKind::Length(0) => BodyDecoder::Done,
            BodyKind::Length(n) => BodyDecoder::Length { remaining: n },
            BodyKind::Chunked => {
                BodyDecoder::Chunked(ChunkState(Chunk::Size { value: 0, digits: 0 }))
            }
            BodyKind::UntilEof => BodyDecoder::UntilEof,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// Feeds `input`; body bytes go to `sink`. Returns how many input bytes
    /// were consumed (less than `input.len()` only once the body is done).
    pub fn feed(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<usize, ProtocolError> {
        match self {
            BodyDecoder::Done => Ok(0),
            BodyDecoder::UntilEof => {
                sink(input);
                Ok(input.len())
            }
            BodyDecoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                sink(&input[..take]);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(take)
            }
            BodyDecoder::Chunked(state) => {
                let (consumed, done) = feed_chunked(&mut state.0, input, sink)?;
                if done {
                    *self = BodyDecoder::Done;
                }
                Ok(consumed)
            }
        }
    }

    /// The server closed the connection: fine only for an until-EOF body.
    pub fn on_eof(&mut self) -> Result<(), ProtocolError> {
        match self {
            BodyDecoder::UntilEof | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            _ => Err(perr("connection closed in the middle of a response body")),
        }
    }
}

fn feed_chunked(
    state: &mut Chunk,
    input: &[u8],
    sink: &mut impl FnMut(&[u8]),
) -> Result<(usize, bool), ProtocolError> {
    let mut at = 0;
    while at < input.len() {
        if let Chunk::Data { remaining } = state {
            let take = (*remaining).min((input.len() - at) as u64) as usize;
            sink(&input[at..at + take]);
            at += take;
            *remaining -= take as u64;
            if *remaining == 0 {
                *state = Chunk::DataCr;
            }
            continue;
        }
        let b = input[at];
        at += 1;
        *state = match (*state, b) {
            (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= CHUNK_SIZE_DIGITS_MAX {
                    return Err(perr("chunk size too large"));
                }
                let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                Chunk::Size { value: value * 16 + digit, digits: digits + 1 }
            }
            (Chunk::Size { value, digits }, b';' | b' ' | b'\t') if digits > 0 => {
                Chunk::Extension { value }
            }
            (Chunk::Size { value, digits }, b'\r') if digits > 0 => Chunk::SizeLf { value },
            (Chunk::Extension { value }, b'\r') => Chunk::SizeLf { value },
            (Chunk::Extension { value }, _) => Chunk::Extension { value },
            (Chunk::SizeLf { value: 0 }, b'\n') => Chunk::TrailerStart,
            (Chunk::SizeLf { value }, b'\n') => Chunk::Data { remaining: value },
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { value: 0, digits: 0 },
            (Chunk::TrailerStart, b'\r') => Chunk::FinalLf,
            (Chunk::TrailerStart | Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
            (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
            (Chunk::FinalLf, b'\n') => return Ok((at, true)),
            (s, b) => {
                return Err(perr(format!("bad chunked encoding: byte {b:#04x} in state {s:?}")))
            }
        };
    }
    Ok((at, false))
}

/// Extracts the text of the first `<tag>…</tag>` in an XML body.
pub fn xml_text<'a>(body: &'a [u8], tag: &str) -> Option<&'a [u8]> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = find(body, open.as_bytes())? + open.len();
    let len = find(&body[start..], close.as_bytes())?;
    Some(&body[start..start + len])
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        kind: BodyKind,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), ProtocolError> {
        let mut dec = BodyDecoder::new(kind);
        let mut body = Vec::new();
        let mut at = 0;
        while at < wire.len() && !dec.is_done() {
            let end = (at + step).min(wire.len());
            at += dec.feed(&wire[at..end], &mut |b| body.extend_from_slice(b))?;
        }
        assert!(dec.is_done(), "decoder not done after {at} bytes");
        Ok((body, at))
    }

    #[test]
    fn head_with_length_and_etag() {
        let wire = b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 5\r\n\r\nhello";
        let (head, n) = parse_head(wire, false).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body, BodyKind::Length(5));
        assert_eq!(head.etag(), b"\"abc\"");
        assert!(!head.close);
        assert_eq!(&wire[n..], b"hello");
        assert!(parse_head(&wire[..20], false).unwrap().is_none());
    }

    #[test]
    fn head_response_has_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n";
        let (head, _) = parse_head(wire, true).unwrap().unwrap();
        assert_eq!(head.body, BodyKind::Length(0));
    }

    #[test]
    fn chunked_body_decodes_in_any_split() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (body, used) = decode_all(BodyKind::Chunked, wire, step).unwrap();
            assert_eq!(body, b"Wikipedia");
            assert_eq!(&wire[used..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn chunked_garbage_is_an_error() {
        assert!(decode_all(BodyKind::Chunked, b"zz\r\n", 4).is_err());
        assert!(decode_all(BodyKind::Chunked, b"3\r\nabcX\r\n", 9).is_err());
    }

    #[test]
    fn length_body_stops_at_length() {
        let (body, used) = decode_all(BodyKind::Length(3), b"abcdef", 2).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(used, 3);
    }

    #[test]
    fn xml_text_finds_upload_id() {
        let body = b"<InitiateMultipartUploadResult><UploadId>xyz-1</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(xml_text(body, "UploadId"), Some(&b"xyz-1"[..]));
        assert_eq!(xml_text(body, "Code"), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut at = 0;
        for &size in sizes.iter().cycle() {
            if at >= body.len() {
                break;
            }
            let n = size.clamp(1, body.len() - at);
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&body[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    proptest! {
        // Bytes from the network never panic the parser: garbage is an
        // error or "need more", nothing else.
        #[test]
        fn parse_head_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), head in any::<bool>()) {
            let _ = parse_head(&bytes, head);
            let mut with_prefix = b"HTTP/1.1 200 OK\r\n".to_vec();
            with_prefix.extend_from_slice(&bytes);
            let _ = parse_head(&with_prefix, head);
        }

        #[test]
        fn chunked_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), step in 1usize..64) {
            let mut dec = BodyDecoder::new(BodyKind::Chunked);
            let mut at = 0;
            while at < bytes.len() && !dec.is_done() {
                let end = (at + step).min(bytes.len());
                match dec.feed(&bytes[at..end], &mut |_| {}) {
                    Ok(n) => at += n.max(1),
                    Err(_) => break,
                }
            }
        }

        // Any chunking of any body, fed in any split, decodes to the body
        // and stops exactly at the end of the message.
        #[test]
        fn chunked_roundtrip(body in proptest::collection::vec(any::<u8>(), 0..4096),
                             sizes in proptest::collection::vec(1usize..700, 1..8),
                             step in 1usize..300) {
            let mut wire = chunked(&body, &sizes);
            let end_of_message = wire.len();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let mut dec = BodyDecoder::new(BodyKind::Chunked);
            let mut out = Vec::new();
            let mut at = 0;
            while !dec.is_done() {
                let end = (at + step).min(wire.len());
                prop_assert!(at < end, "ran out of input");
                at += dec.feed(&wire[at..end], &mut |b| out.extend_from_slice(b)).unwrap();
            }
            prop_assert_eq!(out, body);
            prop_assert_eq!(at, end_of_message);
        }
    }
}
