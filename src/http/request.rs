//! HTTP/1.1 request heads, body framing, the chunked transfer decoder and
//! the response-head writer. Sans-IO: the driver reads bytes into its own
//! buffer and calls [`parse_head`] until it returns a head; the body framing
//! then says how many bytes follow (or feeds them through [`ChunkedDecoder`]).
//!
//! Limits (all named here, all checked before anything is stored):
//! - [`HEAD_BYTES_MAX`] 16 KiB for the request line and all header lines.
//! - [`HEADER_COUNT_MAX`] 100 header fields.
//! - [`TARGET_BYTES_MAX`] 11,264 bytes for the request target: a 1,024-byte
//!   key percent-encoded in full is 3,072 bytes, and 8 KiB is left for the
//!   bucket, the query of a list request (prefix, start-after, continuation
//!   token, each bounded by the key size) or a presigned URL's credential,
//!   signature and a session token (AWS's are ~1–2 KiB). That leaves at
//!   least 4 KiB of the head for the header lines themselves.
//! - [`QUERY_PAIRS_MAX`] 100 query parameters.
//! - [`CHUNK_LINE_BYTES_MAX`] 256 bytes for a chunk-size line (an aws-chunked
//!   signed line is 100 bytes), [`TRAILER_BYTES_MAX`] 4 KiB of trailer fields.
//!
//! Allocation: a parsed head owns one `Vec` of borrowed header slices and
//! one `Vec` of query pairs; the path and each query name or value is
//! borrowed from the buffer unless it holds a `%` escape (or a `+` in the
//! query), in which case that one string is decoded into a `String`.

use std::borrow::Cow;
use std::fmt;

use super::error::{S3Error, S3ErrorCode};

/// Request line plus header lines plus the blank line.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Header fields per request (S3 requests carry 8–20; user metadata adds some).
pub const HEADER_COUNT_MAX: usize = 100;
/// Object key bytes after percent-decoding (S3's limit).
pub const KEY_BYTES_MAX: usize = 1024;
/// Request-target bytes as sent (see the module documentation).
pub const TARGET_BYTES_MAX: usize = 3 * KEY_BYTES_MAX + 8 * 1024;
/// Query parameters per request.
pub const QUERY_PAIRS_MAX: usize = 100;
/// One chunk-size line of a chunked body, CRLF included.
pub const CHUNK_LINE_BYTES_MAX: usize = 256;
/// All trailer lines of a chunked body together.
pub const TRAILER_BYTES_MAX: usize = 4 * 1024;

// The longest target must leave room for the header lines.
const _: () = assert!(TARGET_BYTES_MAX + 4 * 1024 <= HEAD_BYTES_MAX);

/// The limits a head is parsed under; [`Limits::default`] is the constants
/// above. Smaller values are allowed (tests and fuzzing use them); larger
/// values for `header_count_max` are capped at [`HEADER_COUNT_MAX`] because
/// the parser's header array is sized by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub head_bytes_max: usize,
    pub header_count_max: usize,
    pub target_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_bytes_max: HEAD_BYTES_MAX,
            header_count_max: HEADER_COUNT_MAX,
            target_bytes_max: TARGET_BYTES_MAX,
        }
    }
}

/// The methods S3 uses. Anything else is 501 before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    /// CORS preflight; routed to `Unsupported` until CORS exists.
    Options,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        // Methods are case-sensitive (RFC 9110 §9.1).
        Some(match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A malformed or over-limit request, before S3 semantics. Each maps to
/// one status: 400, 414, 431 or 501 ([`HttpError::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The head is not complete within `head_bytes_max` (431).
    HeadTooLarge,
    /// More than `header_count_max` header fields (431).
    TooManyHeaders,
    /// The request target is over `target_bytes_max` (414).
    TargetTooLong,
    /// A method outside [`Method`] (501).
    MethodNotImplemented,
    /// A transfer coding other than `chunked` (501).
    TransferCodingNotImplemented,
    /// The path or a query component is not percent-encoded UTF-8 (400).
    InvalidUri(&'static str),
    /// Any other syntax error; the text says which (400).
    Malformed(&'static str),
    /// Chunked framing violated; the text says how (400).
    BadChunk(&'static str),
    /// A chunked body decoded to more than its allowed size (400).
    BodyTooLarge,
}

impl HttpError {
    pub fn status(self) -> u16 {
        self.s3_code().status()
    }

    fn s3_code(self) -> S3ErrorCode {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => {
                S3ErrorCode::RequestHeaderSectionTooLarge
            }
            HttpError::TargetTooLong => S3ErrorCode::RequestUriTooLong,
            HttpError::MethodNotImplemented | HttpError::TransferCodingNotImplemented => {
                S3ErrorCode::NotImplemented
            }
            HttpError::InvalidUri(_) => S3ErrorCode::InvalidURI,
            HttpError::Malformed(_) => S3ErrorCode::BadRequest,
            HttpError::BadChunk(_) => S3ErrorCode::IncompleteBody,
            HttpError::BodyTooLarge => S3ErrorCode::EntityTooLarge,
        }
    }

    fn message(self) -> &'static str {
        match self {
            HttpError::HeadTooLarge => "request head exceeds 16 KiB",
            HttpError::TooManyHeaders => "more than 100 header fields",
            HttpError::TargetTooLong => "request target too long",
            HttpError::MethodNotImplemented => "method not implemented",
            HttpError::TransferCodingNotImplemented => {
                "only the chunked transfer coding is supported"
            }
            HttpError::InvalidUri(why) | HttpError::Malformed(why) | HttpError::BadChunk(why) => {
                why
            }
            HttpError::BodyTooLarge => "body larger than allowed",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for S3Error {
    fn from(error: HttpError) -> S3Error {
        S3Error::with_message(error.s3_code(), error.message())
    }
}

/// Decoded query parameters, in order.
pub type QueryPairs<'b> = Vec<(Cow<'b, str>, Cow<'b, str>)>;

/// One header field, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'b> {
    pub name: &'b str,
    pub value: &'b [u8],
}

/// A parsed request head. Everything borrows from the buffer it was parsed
/// from except the decoded strings noted in the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'b> {
    pub method: Method,
    pub version: Version,
    /// The request target as sent (`/bucket/key?query`).
    pub target: &'b str,
    /// The target up to `?`, still percent-encoded (SigV4 does not use it:
    /// it re-encodes `path`).
    pub raw_path: &'b str,
    /// The target after `?` (empty if none).
    pub raw_query: &'b str,
    /// `raw_path` percent-decoded; valid UTF-8; `+` is a plus.
    pub path: Cow<'b, str>,
    /// Query parameters in order, names and values percent-decoded with `+`
    /// as a space; a parameter without `=` has an empty value.
    pub query: QueryPairs<'b>,
    /// Header fields in order.
    pub headers: Vec<Header<'b>>,
    /// Bytes of the buffer the head took, blank line included: the body
    /// starts here.
    pub head_len: usize,
}

impl<'b> RequestHead<'b> {
    /// The first value of the named header (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// The first value of the named header as text; `None` if absent or not
    /// UTF-8 (httparse admits obs-text bytes).
    pub fn header_str(&self, name: &str) -> Option<&'b str> {
        self.header(name).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of the named header, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// The value of the first query parameter with this exact name.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_ref())
    }

    pub fn has_query(&self, name: &str) -> bool {
        self.query.iter().any(|(key, _)| key == name)
    }

    /// How the body is framed (RFC 9112 §6): Content-Length, chunked, or
    /// none. Rejects what request smuggling relies on: both headers
    /// together, more than one Content-Length (even equal ones), signs or
    /// spaces inside the number, overflow, and `Transfer-Encoding` on
    /// HTTP/1.0.
    pub fn body_framing(&self) -> Result<BodyFraming, HttpError> {
        let mut lengths = self.header_values("content-length");
        let length = lengths.next();
        if lengths.next().is_some() {
            return Err(HttpError::Malformed("more than one Content-Length"));
        }
        let mut codings = self.header_values("transfer-encoding");
        let coding = codings.next();
        if codings.next().is_some() {
            return Err(HttpError::Malformed("more than one Transfer-Encoding"));
        }
        match (length, coding) {
            (Some(_), Some(_)) => {
                Err(HttpError::Malformed("both Content-Length and Transfer-Encoding"))
            }
            (Some(value), None) => parse_content_length(value).map(BodyFraming::Length),
            (None, Some(value)) => {
                if self.version == Version::Http10 {
                    return Err(HttpError::Malformed("Transfer-Encoding on HTTP/1.0"));
                }
                parse_transfer_encoding(value)
            }
            (None, None) => Ok(BodyFraming::Empty),
        }
    }

    /// True if the client waits for `100 Continue` before sending the body
    /// (HTTP/1.1 only). Other expectations are ignored, which RFC 9110
    /// §10.1.1 allows.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("expect")
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }

    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`. (The driver must still close after an error
    /// that left body bytes unread.)
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for value in self.header_values("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        }
    }
}

/// How many body bytes follow the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No Content-Length and no Transfer-Encoding: a request body is empty.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: feed the bytes to a [`ChunkedDecoder`].
    Chunked,
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::Malformed("Content-Length is not a decimal number"));
    }
    digits
        .iter()
        .try_fold(0u64, |total, digit| total.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
        .ok_or(HttpError::Malformed("Content-Length overflows"))
}

fn parse_transfer_encoding(value: &[u8]) -> Result<BodyFraming, HttpError> {
    let mut codings = value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    let last = codings.next_back().unwrap_or_default();
    let chunked_last = last.eq_ignore_ascii_case(b"chunked");
    match (chunked_last, codings.next().is_some()) {
        (true, false) => Ok(BodyFraming::Chunked),
        // gzip, chunked: framing is known but the coding is not supported.
        (true, true) => Err(HttpError::TransferCodingNotImplemented),
        // The length cannot be determined (RFC 9112 §6.3 rule 4).
        (false, _) => Err(HttpError::Malformed("Transfer-Encoding must end in chunked")),
    }
}

/// Parses a request head from the start of `buffer`.
///
/// `Ok(None)`: the head is incomplete; read more and call again with the
/// longer buffer (no state is kept between calls: httparse re-scans, which
/// costs little next to a 16 KiB bound). `Ok(Some(head))`: the body starts
/// at `head.head_len`. Errors are final; answer with
/// `S3Error::from(error)` and close the connection.
pub fn parse_head<'b>(
    buffer: &'b [u8],
    limits: &Limits,
) -> Result<Option<RequestHead<'b>>, HttpError> {
    let window = buffer.get(..limits.head_bytes_max).unwrap_or(buffer);
    let mut storage = [httparse::EMPTY_HEADER; HEADER_COUNT_MAX];
    let count_max = limits.header_count_max.min(HEADER_COUNT_MAX);
    let mut request = httparse::Request::new(&mut storage[..count_max]);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return partial(window, buffer.len(), limits),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(HttpError::Malformed("unsupported HTTP version"))
        }
        Err(httparse::Error::Token) if request_line_too_long(window, limits) => {
            return Err(HttpError::TargetTooLong)
        }
        Err(_) => return Err(HttpError::Malformed("malformed request head")),
    };
    let method = request.method.ok_or(HttpError::Malformed("no method"))?;
    let method = Method::parse(method).ok_or(HttpError::MethodNotImplemented)?;
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::Malformed("unsupported HTTP version")),
    };
    let target = request.path.ok_or(HttpError::Malformed("no request target"))?;
    if target.len() > limits.target_bytes_max {
        return Err(HttpError::TargetTooLong);
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("request target must start with /"));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false)?;
    let query = parse_query(raw_query)?;
    let headers = request.headers.iter().map(|h| Header { name: h.name, value: h.value }).collect();
    Ok(Some(RequestHead {
        method,
        version,
        target,
        raw_path,
        raw_query,
        path,
        query,
        headers,
        head_len,
    }))
}

/// An incomplete head: wait for more bytes unless a limit is already hit.
fn partial(
    window: &[u8],
    buffered: usize,
    limits: &Limits,
) -> Result<Option<RequestHead<'static>>, HttpError> {
    if request_line_too_long(window, limits) {
        return Err(HttpError::TargetTooLong);
    }
    if buffered >= limits.head_bytes_max {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(None)
}

/// True if the request line is already longer than a method, the longest
/// target and a version could make it: answer 414 without waiting for the
/// rest of the head.
fn request_line_too_long(window: &[u8], limits: &Limits) -> bool {
    // "OPTIONS " + target + " HTTP/1.1\r\n", with slack for blank lines.
    let line_bytes_max = limits.target_bytes_max + 32;
    let line_end = window.iter().position(|&b| b == b'\n').unwrap_or(window.len());
    line_end > line_bytes_max
}

fn parse_query(raw_query: &str) -> Result<QueryPairs<'_>, HttpError> {
    let mut pairs = Vec::new();
    for part in raw_query.split('&').filter(|part| !part.is_empty()) {
        if pairs.len() == QUERY_PAIRS_MAX {
            return Err(HttpError::Malformed("more than 100 query parameters"));
        }
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(name, true)?, percent_decode(value, true)?));
    }
    Ok(pairs)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` (and `+` to a space if `plus_is_space`, the query
/// convention S3 follows). Borrows when there is nothing to decode. The
/// result must be UTF-8: S3 keys are.
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<Cow<'_, str>, HttpError> {
    let needs_decoding = raw.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs_decoding {
        return Ok(Cow::Borrowed(raw));
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut input = raw.as_bytes().iter();
    while let Some(&byte) = input.next() {
        let decoded = match byte {
            b'%' => {
                let high = input.next().copied().and_then(hex_value);
                let low = input.next().copied().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => high << 4 | low,
                    _ => return Err(HttpError::InvalidUri("% not followed by two hex digits")),
                }
            }
            b'+' if plus_is_space => b' ',
            _ => byte,
        };
        bytes.push(decoded);
    }
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| HttpError::InvalidUri("percent-decoded target is not UTF-8"))
}

/// Appends `text` URI-encoded the AWS way (SigV4's `UriEncode`, also what
/// `encoding-type=url` responses use): `A-Z a-z 0-9 - . _ ~` stay, `/`
/// stays unless `encode_slash`, every other byte becomes `%XX` with
/// upper-case hex. Unlike form encoding, a space is `%20`, never `+`.
pub fn uri_encode(text: &str, encode_slash: bool, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (byte == b'/' && !encode_slash);
        if keep {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

/// The result of one call to a body decoder ([`ChunkedDecoder::decode`],
/// and the aws-chunked decoder): `consumed` input bytes were used, `data`
/// (a slice of the input) is body payload, `done` means the body ended at
/// `consumed` (anything after it is the next request, or an error for the
/// caller to decide). A call with non-empty input always consumes at least
/// one byte or reports `done`, so a loop over it terminates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub consumed: usize,
    pub data: &'a [u8],
    pub done: bool,
}

/// Accumulates one CRLF-terminated line into a fixed array: the only state
/// a decoder keeps across calls besides counters, so no allocation.
#[derive(Clone, Debug)]
pub(crate) struct LineBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

/// Why a line could not be accumulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineError {
    TooLong,
    /// A LF without the CR before it; we accept only CRLF so that every hop
    /// agrees where a line ends.
    BareLf,
}

impl<const N: usize> LineBuffer<N> {
    pub(crate) fn new() -> Self {
        LineBuffer { bytes: [0; N], len: 0 }
    }

    /// Adds one byte; `Ok(true)` when it ended the line (see [`Self::line`]).
    pub(crate) fn push(&mut self, byte: u8) -> Result<bool, LineError> {
        if byte == b'\n' {
            return match self.line_with_cr().last() {
                Some(b'\r') => {
                    self.len -= 1;
                    Ok(true)
                }
                _ => Err(LineError::BareLf),
            };
        }
        let slot = self.bytes.get_mut(self.len).ok_or(LineError::TooLong)?;
        *slot = byte;
        self.len += 1;
        Ok(false)
    }

    fn line_with_cr(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The completed line without its CRLF.
    pub(crate) fn line(&self) -> &[u8] {
        self.line_with_cr()
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkedState {
    SizeLine,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// Incremental decoder of `Transfer-Encoding: chunked` (RFC 9112 §7.1).
///
/// Streams: data is returned as slices of the input as soon as it arrives,
/// never copied or buffered. Chunk extensions are skipped; trailer fields
/// are checked for syntax and size and dropped (S3's checksum trailers
/// travel inside aws-chunked, which `aws_chunked` decodes).
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkedState,
    line: LineBuffer<CHUNK_LINE_BYTES_MAX>,
    trailer_bytes: usize,
    decoded_bytes: u64,
    decoded_bytes_max: u64,
}

impl ChunkedDecoder {
    /// A decoder that fails with `BodyTooLarge` once the decoded body would
    /// exceed `decoded_bytes_max`.
    pub fn new(decoded_bytes_max: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkedState::SizeLine,
            line: LineBuffer::new(),
            trailer_bytes: 0,
            decoded_bytes: 0,
            decoded_bytes_max,
        }
    }

    /// Decoded payload bytes so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Feeds the next input bytes; see [`Decoded`] for the contract. Returns
    /// at most one data slice per call; call again with the rest.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, HttpError> {
        let mut position = 0;
        loop {
            if let ChunkedState::Data { remaining } = self.state {
                let rest = input.get(position..).unwrap_or_default();
                let take = rest.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let data = rest.get(..take).unwrap_or_default();
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    ChunkedState::DataCr
                } else {
                    ChunkedState::Data { remaining }
                };
                return Ok(Decoded { consumed: position + take, data, done: false });
            }
            if self.state == ChunkedState::Done {
                return Ok(Decoded { consumed: position, data: &[], done: true });
            }
            let Some(&byte) = input.get(position) else {
                return Ok(Decoded { consumed: position, data: &[], done: false });
            };
            position += 1;
            self.on_byte(byte)?;
        }
    }

    fn on_byte(&mut self, byte: u8) -> Result<(), HttpError> {
        match self.state {
            ChunkedState::DataCr if byte == b'\r' => self.state = ChunkedState::DataLf,
            ChunkedState::DataLf if byte == b'\n' => self.state = ChunkedState::SizeLine,
            ChunkedState::DataCr | ChunkedState::DataLf => {
                return Err(HttpError::BadChunk("chunk data not followed by CRLF"))
            }
            ChunkedState::SizeLine => {
                if self.push_line(byte)? {
                    self.on_size_line()?;
                }
            }
            ChunkedState::Trailer => {
                if self.push_line(byte)? {
                    self.on_trailer_line()?;
                }
            }
            ChunkedState::Data { .. } | ChunkedState::Done => unreachable!("handled by decode"),
        }
        Ok(())
    }

    fn push_line(&mut self, byte: u8) -> Result<bool, HttpError> {
        self.line.push(byte).map_err(|error| match error {
            LineError::TooLong => HttpError::BadChunk("chunk-size or trailer line too long"),
            LineError::BareLf => HttpError::BadChunk("line ends in LF without CR"),
        })
    }

    fn on_size_line(&mut self) -> Result<(), HttpError> {
        let line = self.line.line();
        // chunk-size [ BWS ; chunk-ext ]: the size ends at ';' or blanks.
        let end =
            line.iter().position(|&b| b == b';' || b == b' ' || b == b'\t').unwrap_or(line.len());
        let (size, rest) = line.split_at(end);
        let rest = rest.trim_ascii_start();
        if !(rest.is_empty() || rest.starts_with(b";")) {
            return Err(HttpError::BadChunk("junk after chunk size"));
        }
        let size =
            parse_hex_size(size).ok_or(HttpError::BadChunk("chunk size is not 1-16 hex digits"))?;
        self.line.clear();
        self.decoded_bytes = self
            .decoded_bytes
            .checked_add(size)
            .filter(|&total| total <= self.decoded_bytes_max)
            .ok_or(HttpError::BodyTooLarge)?;
        self.state =
            if size == 0 { ChunkedState::Trailer } else { ChunkedState::Data { remaining: size } };
        Ok(())
    }

    fn on_trailer_line(&mut self) -> Result<(), HttpError> {
        let line_len = self.line.line().len();
        if line_len == 0 {
            self.state = ChunkedState::Done;
            return Ok(());
        }
        self.trailer_bytes += line_len + 2;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(HttpError::BadChunk("trailer section over 4 KiB"));
        }
        let line = self.line.line();
        let colon = line.iter().position(|&b| b == b':');
        let name_ok =
            colon.is_some_and(|colon| colon > 0 && line[..colon].iter().all(|&b| is_token(b)));
        if !name_ok {
            return Err(HttpError::BadChunk("malformed trailer field"));
        }
        self.line.clear();
        Ok(())
    }
}

/// 1 to 16 hex digits (any more cannot fit a u64 without leading zeros,
/// which no client sends).
pub(crate) fn parse_hex_size(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |total, &digit| Some(total << 4 | u64::from(hex_value(digit)?)))
}

/// RFC 9110 token characters (header names).
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// How a response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No Content-Length or Transfer-Encoding: 204, 304 and 1xx.
    None,
    /// `Content-Length: n` (also for HEAD, which then sends no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`; write each piece with
    /// [`write_chunk_header`] + data + CRLF, then [`LAST_CHUNK`].
    Chunked,
}

/// The last chunk of a chunked response (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// The interim response sent when a request [`expects_continue`](RequestHead::expects_continue).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase for the statuses the front end sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Appends a response head to `out`: status line, `headers` in order, the
/// framing header, `Connection: close` unless `keep_alive`, blank line.
///
/// Panics if a header name is not a token or a value holds CR, LF or NUL:
/// every value comes from our own code or from request headers httparse
/// already checked, so such a byte is a bug that would split the response.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &[u8])],
    body: ResponseBody,
    keep_alive: bool,
) {
    assert!((100..=999).contains(&status));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for &(name, value) in headers {
        assert!(!name.is_empty() && name.bytes().all(is_token), "header name {name:?}");
        assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0), "header {name} value");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match body {
        ResponseBody::None => {}
        ResponseBody::Length(length) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(length.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ResponseBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a response chunk of `length` bytes (> 0); the
/// data and a CRLF follow it.
pub fn write_chunk_header(out: &mut Vec<u8>, length: usize) {
    assert!(length > 0, "a zero-length chunk would end the body");
    out.extend_from_slice(format!("{length:x}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Option<RequestHead<'_>>, HttpError> {
        parse_head(text, &Limits::default())
    }

    fn head(text: &[u8]) -> RequestHead<'_> {
        parse(text).unwrap().unwrap()
    }

    /// Fails if a field of a typical SDK request is lost or mis-decoded.
    #[test]
    fn parses_a_typical_head() {
        let text =
            b"PUT /my-bucket/dir/a%20b%2Bc+d.txt?uploadId=x%2By&partNumber=3&flag HTTP/1.1\r\n\
                     Host: localhost:3000\r\nX-Amz-Date: 20130524T000000Z\r\n\
                     content-length: 5\r\nx-amz-meta-a: 1\r\nX-AMZ-META-A: 2\r\n\r\nhello";
        let head = head(text);
        assert_eq!(head.method, Method::Put);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.raw_path, "/my-bucket/dir/a%20b%2Bc+d.txt");
        assert_eq!(head.path, "/my-bucket/dir/a b+c+d.txt");
        assert_eq!(head.query_value("uploadId"), Some("x+y"));
        assert_eq!(head.query_value("partNumber"), Some("3"));
        assert!(head.has_query("flag"));
        assert_eq!(head.query_value("flag"), Some(""));
        assert_eq!(head.header_str("HOST"), Some("localhost:3000"));
        assert_eq!(head.header_values("x-amz-meta-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(head.body_framing(), Ok(BodyFraming::Length(5)));
        assert_eq!(&text[head.head_len..], b"hello");
        assert!(head.keep_alive());
        assert!(!head.expects_continue());
        // Nothing to decode: the path is borrowed, not copied.
        let plain = self::head(b"GET /b/k HTTP/1.1\r\n\r\n");
        assert!(matches!(plain.path, Cow::Borrowed(_)));
    }

    /// Fails if an incomplete head is rejected, or a complete one is
    /// reported incomplete, at any split point.
    #[test]
    fn incomplete_until_the_blank_line() {
        let text = b"GET /b/k?list-type=2 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(parse(&text[..end]), Ok(None), "{end}");
        }
        assert!(parse(text).unwrap().is_some());
    }

    /// Fails if any limit is not enforced or maps to the wrong status.
    #[test]
    fn limits_map_to_statuses() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < HEAD_BYTES_MAX {
            big.extend_from_slice(b"x-filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(parse(&big).unwrap_err().status(), 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADER_COUNT_MAX {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HttpError::TooManyHeaders));
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(TARGET_BYTES_MAX));
        assert_eq!(parse(long_target.as_bytes()), Err(HttpError::TargetTooLong));
        // Detected before the head is complete, from the request line alone.
        let line_only = format!("GET /{}", "a".repeat(TARGET_BYTES_MAX + 64));
        assert_eq!(parse(line_only.as_bytes()), Err(HttpError::TargetTooLong));
        assert_eq!(HttpError::TargetTooLong.status(), 414);
        let ok_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(TARGET_BYTES_MAX - 1));
        assert!(parse(ok_target.as_bytes()).unwrap().is_some());
        assert_eq!(parse(b"PATCH / HTTP/1.1\r\n\r\n"), Err(HttpError::MethodNotImplemented));
        assert_eq!(HttpError::MethodNotImplemented.status(), 501);
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GET http://h/ HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GET /a%zz HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert!(matches!(parse(b"GET /%ff%fe HTTP/1.1\r\n\r\n"), Err(HttpError::InvalidUri(_))));
        let many_params = format!("GET /?{} HTTP/1.1\r\n\r\n", "a&".repeat(QUERY_PAIRS_MAX + 1));
        assert!(parse(many_params.as_bytes()).is_err());
    }

    fn framing(headers: &str) -> Result<BodyFraming, HttpError> {
        let text = format!("PUT /b/k HTTP/1.1\r\n{headers}\r\n");
        head(text.as_bytes()).body_framing()
    }

    /// Fails if a framing that smuggling attacks rely on is accepted.
    #[test]
    fn body_framing_rejects_ambiguity() {
        assert_eq!(framing(""), Ok(BodyFraming::Empty));
        assert_eq!(framing("Content-Length: 0\r\n"), Ok(BodyFraming::Length(0)));
        assert_eq!(framing("Content-Length:  42 \r\n"), Ok(BodyFraming::Length(42)));
        assert_eq!(
            framing("Content-Length: 18446744073709551615\r\n"),
            Ok(BodyFraming::Length(u64::MAX))
        );
        assert_eq!(framing("Transfer-Encoding: Chunked\r\n"), Ok(BodyFraming::Chunked));
        for bad in [
            "Content-Length: 18446744073709551616\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: -5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: \r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(framing(bad).unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(
            framing("Transfer-Encoding: gzip, chunked\r\n"),
            Err(HttpError::TransferCodingNotImplemented)
        );
        let http10 = head(b"PUT /b/k HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(http10.body_framing().is_err());
    }

    /// Fails if keep-alive or 100-continue is decided wrongly for a version.
    #[test]
    fn keep_alive_and_continue() {
        assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive());
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue());
        assert!(!head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
        assert!(!head(b"PUT / HTTP/1.1\r\nExpect: something\r\n\r\n").expects_continue());
    }

    /// Decodes `input` fed in pieces ending at each of `splits`.
    fn decode_split(input: &[u8], splits: &[usize]) -> Result<(Vec<u8>, usize), HttpError> {
        let mut decoder = ChunkedDecoder::new(1 << 20);
        let mut body = Vec::new();
        let mut start = 0;
        for &end in splits.iter().chain([input.len()].iter()) {
            let mut piece = &input[start..end];
            start = end;
            while !piece.is_empty() {
                let step = decoder.decode(piece)?;
                assert!(step.consumed > 0 || step.done);
                body.extend_from_slice(step.data);
                piece = &piece[step.consumed..];
                if step.done {
                    return Ok((body, end - piece.len()));
                }
            }
        }
        Err(HttpError::BadChunk("incomplete"))
    }

    const CHUNKED: &[u8] =
        b"5;ext=1\r\nhello\r\n1 ; x\r\n \r\n6\r\nworld!\r\n0\r\nx-t: v\r\n\r\nNEXT";

    /// Fails if any split point changes the decoded body or where it ends.
    #[test]
    fn chunked_every_split() {
        for a in 0..CHUNKED.len() {
            for b in a..CHUNKED.len() {
                let (body, end) = decode_split(CHUNKED, &[a, b]).unwrap();
                assert_eq!(body, b"hello world!");
                assert_eq!(&CHUNKED[end..], b"NEXT");
            }
        }
    }

    /// Fails if a malformed chunked body is accepted.
    #[test]
    fn chunked_rejects() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
        ] {
            assert!(decode_split(bad, &[]).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long_line = format!("5;{}\r\n", "e".repeat(CHUNK_LINE_BYTES_MAX));
        assert!(decode_split(long_line.as_bytes(), &[]).is_err());
        let mut big_trailer = b"0\r\n".to_vec();
        for _ in 0..100 {
            big_trailer.extend_from_slice(format!("x-t: {}\r\n", "v".repeat(60)).as_bytes());
        }
        assert!(decode_split(&big_trailer, &[]).is_err());
        let mut decoder = ChunkedDecoder::new(4);
        assert_eq!(decoder.decode(b"5\r\n"), Err(HttpError::BodyTooLarge));
    }

    /// Fails if the response head is not byte-exact HTTP/1.1.
    #[test]
    fn response_head_bytes() {
        let mut out = Vec::new();
        write_response_head(&mut out, 200, &[("ETag", b"\"abc\"")], ResponseBody::Length(5), true);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 5\r\n\r\n");
        out.clear();
        write_response_head(&mut out, 404, &[], ResponseBody::Chunked, false);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_chunk_header(&mut out, 255);
        assert_eq!(out, b"ff\r\n");
    }

    /// Fails if a value that would split the response is written.
    #[test]
    #[should_panic(expected = "value")]
    fn response_head_refuses_crlf() {
        write_response_head(&mut Vec::new(), 200, &[("x", b"a\r\nb")], ResponseBody::None, true);
    }
}
