//! One HTTP/1.1 connection of the S3 front end: a bounded read buffer,
//! request heads (parsed by `http::request` from an owned copy, so the body
//! can be read into the same buffer), request bodies through the framing
//! and aws-chunked decoders, and response writes.
//!
//! Limits: the head is at most `http::request::HEAD_BYTES_MAX`; a read or a
//! write that makes no progress for `idle` closes the connection (slow
//! clients cannot hold a shard's memory forever).

use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use sha2::{Digest, Sha256};

use crate::http::aws_chunked::AwsChunkedDecoder;
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::{parse_head, BodyFraming, ChunkedDecoder, HttpError, Limits};

/// The read buffer: a head fits, and body reads are this large at most.
pub const READ_BUFFER_BYTES: usize = 256 << 10;

/// A connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<super::tls::TlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    async fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(out).await,
            Stream::Tls(tls) => tls.read(out).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(data).await,
            Stream::Tls(tls) => tls.write_all(data).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush().await,
            Stream::Tls(tls) => tls.flush().await,
        }
    }
}

pub struct HttpConn {
    stream: Stream,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    pub requests: u64,
}

/// Why no request head came.
pub enum HeadEnd {
    /// The client closed (or went idle) between requests: not an error.
    Closed,
    /// Bytes that are not a request: answer this and close.
    Bad(HttpError),
    /// A request begun and not finished within the idle time: answer
    /// RequestTimeout and close.
    Timeout,
}

impl HttpConn {
    pub fn new(stream: Stream, idle: Duration) -> HttpConn {
        let tcp = stream.tcp();
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(idle));
        let _ = tcp.set_write_timeout(Some(idle));
        HttpConn { stream, buffer: vec![0; READ_BUFFER_BYTES], start: 0, end: 0, requests: 0 }
    }

    fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Read more bytes (compacting first); Ok(0) at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buffer.len() {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        let end = self.end;
        let read = self.stream.read(&mut self.buffer[end..]).await?;
        self.end += read;
        Ok(read)
    }

    /// The next request head as owned bytes (parse it again from them).
    pub async fn read_head(&mut self, limits: &Limits) -> Result<Vec<u8>, HeadEnd> {
        loop {
            match parse_head(self.buffered(), limits) {
                Ok(Some(head)) => {
                    let length = head.head_len;
                    let bytes = self.buffered()[..length].to_vec();
                    self.start += length;
                    return Ok(bytes);
                }
                Ok(None) => {}
                Err(error) => return Err(HeadEnd::Bad(error)),
            }
            if self.end - self.start >= limits.head_bytes_max {
                return Err(HeadEnd::Bad(HttpError::HeadTooLarge));
            }
            match self.fill().await {
                Ok(0) | Err(_) if self.start == self.end => return Err(HeadEnd::Closed),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(HeadEnd::Timeout)
                }
                Ok(0) | Err(_) => return Err(HeadEnd::Bad(HttpError::Malformed("truncated head"))),
                Ok(_) => {}
            }
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush().await
    }
}

/// A socket read in the middle of a body: bytes, or why none came (the
/// client stalled past the idle time, or closed or failed mid-body).
fn body_bytes_came(read: std::io::Result<usize>) -> Result<usize, S3Error> {
    match read {
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
            Err(S3Error::new(S3ErrorCode::RequestTimeout))
        }
        Ok(0) | Err(_) => Err(S3Error::new(S3ErrorCode::IncompleteBody)),
        Ok(read) => Ok(read),
    }
}

/// A request body: transport framing, then aws-chunked if the payload is,
/// with the payload SHA-256 checked when the client signed one.
pub struct Body {
    framing: Framing,
    aws: Option<AwsChunkedDecoder>,
    sha256: Option<(Sha256, [u8; 32])>,
    done: bool,
    /// `finish` ran (it runs once, when the body ends).
    checked: bool,
    /// Transfer-decoded bytes the aws-chunked decoder has not taken yet
    /// (chunked transfer coding around aws-chunked only).
    staging: Vec<u8>,
    staging_start: usize,
    outer_done: bool,
    pub bytes: u64,
}

enum Framing {
    Empty,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl Body {
    pub fn new(
        framing: BodyFraming,
        aws: Option<AwsChunkedDecoder>,
        sha256: Option<[u8; 32]>,
        bytes_max: u64,
    ) -> Result<Body, S3Error> {
        let framing = match framing {
            BodyFraming::Empty => Framing::Empty,
            BodyFraming::Length(length) => Framing::Length(length),
            // aws-chunked inside chunked transfer coding (what botocore
            // sends over TLS): two decoders, through `staging`.
            BodyFraming::Chunked => {
                Framing::Chunked(ChunkedDecoder::new(bytes_max.saturating_mul(2)))
            }
        };
        let done = matches!(framing, Framing::Empty | Framing::Length(0));
        let sha256 = sha256.map(|s| (Sha256::new(), s));
        Ok(Body {
            framing,
            aws,
            sha256,
            done,
            checked: false,
            staging: Vec::new(),
            staging_start: 0,
            outer_done: false,
            bytes: 0,
        })
    }

    /// Whether every body byte was read and checked (the connection may be
    /// reused).
    pub fn finished(&self) -> bool {
        self.done && self.checked
    }

    pub fn trailers(&self) -> &[(String, String)] {
        self.aws.as_ref().map(|a| a.trailers()).unwrap_or(&[])
    }

    /// Append up to `max` payload bytes to `out`; Ok(0) once the body ended
    /// (checked: aws-chunked lengths and signatures, payload SHA-256).
    pub async fn read(
        &mut self,
        conn: &mut HttpConn,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, S3Error> {
        assert!(max > 0);
        loop {
            if self.done {
                if !self.checked {
                    self.checked = true;
                    self.finish()?;
                }
                return Ok(0);
            }
            let (produced, consumed) = self.step(conn, out, max)?;
            if produced == 0 && consumed == 0 && !self.done {
                // Nothing left to decode: the decoders need more bytes.
                body_bytes_came(conn.fill().await)?;
                continue;
            }
            if produced > 0 {
                self.bytes += produced as u64;
                if let Some((hasher, _)) = &mut self.sha256 {
                    hasher.update(&out[out.len() - produced..]);
                }
                return Ok(produced);
            }
        }
    }

    /// Fill `out` with payload bytes: `out.len()` of them unless the body
    /// ends first (checked, as by `read`). A plain Content-Length body (no
    /// aws-chunked decoding) is read from the socket straight into `out`
    /// once the connection's buffer is drained: a PUT's bytes skip the
    /// connection buffer, one memmove fewer per byte (ARCHITECTURE.md).
    /// Other bodies go through `read`, via `scratch`.
    pub async fn read_into(
        &mut self,
        conn: &mut HttpConn,
        out: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<usize, S3Error> {
        let mut filled = 0;
        while filled < out.len() {
            let direct = match (&self.framing, &self.aws) {
                (Framing::Length(remaining), None) if !self.done => Some(*remaining),
                _ => None,
            };
            let Some(remaining) = direct else {
                scratch.clear();
                let read = self.read(conn, scratch, out.len() - filled).await?;
                if read == 0 {
                    break;
                }
                out[filled..filled + read].copy_from_slice(scratch);
                filled += read;
                continue;
            };
            // Never past this body: the next request may follow it.
            let room = ((out.len() - filled) as u64).min(remaining) as usize;
            let target = &mut out[filled..filled + room];
            let buffered = conn.buffered();
            let read = if !buffered.is_empty() {
                let take = buffered.len().min(room);
                target[..take].copy_from_slice(&buffered[..take]);
                conn.start += take;
                take
            } else {
                body_bytes_came(conn.stream.read(target).await)?
            };
            if let Some((hasher, _)) = &mut self.sha256 {
                hasher.update(&target[..read]);
            }
            self.bytes += read as u64;
            filled += read;
            if let Framing::Length(remaining) = &mut self.framing {
                *remaining -= read as u64;
                if *remaining == 0 {
                    self.done = true;
                }
            }
        }
        if self.done && !self.checked {
            self.checked = true;
            self.finish()?;
        }
        Ok(filled)
    }

    /// Decode what the buffers hold; returns (payload bytes appended,
    /// bytes consumed from the connection or staging).
    fn step(
        &mut self,
        conn: &mut HttpConn,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(usize, usize), S3Error> {
        if let (Framing::Chunked(_), Some(_)) = (&self.framing, &self.aws) {
            return self.step_nested(conn, out, max);
        }
        let available = conn.buffered();
        let before = out.len();
        let consumed = match &mut self.framing {
            Framing::Empty => {
                // Only an aws-chunked body can get here (it needs a length).
                return Err(S3Error::new(S3ErrorCode::MissingContentLength));
            }
            Framing::Length(remaining) => {
                let take = available.len().min(*remaining as usize).min(max);
                let input = &available[..take];
                let consumed = match &mut self.aws {
                    Some(aws) => {
                        let decoded = aws.decode(input)?;
                        out.extend_from_slice(decoded.data);
                        decoded.consumed
                    }
                    None => {
                        out.extend_from_slice(input);
                        take
                    }
                };
                *remaining -= consumed as u64;
                if *remaining == 0 {
                    self.done = true;
                }
                consumed
            }
            Framing::Chunked(decoder) => {
                let input = &available[..available.len().min(max)];
                let decoded = decoder.decode(input)?;
                out.extend_from_slice(decoded.data);
                if decoded.done {
                    self.done = true;
                }
                decoded.consumed
            }
        };
        conn.start += consumed;
        Ok((out.len() - before, consumed))
    }

    /// Chunked transfer coding around aws-chunked: transfer-decode into
    /// `staging`, then aws-chunked-decode out of it.
    fn step_nested(
        &mut self,
        conn: &mut HttpConn,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(usize, usize), S3Error> {
        let (Framing::Chunked(decoder), Some(aws)) = (&mut self.framing, &mut self.aws) else {
            unreachable!("nested framing only");
        };
        if self.staging_start < self.staging.len() {
            let input = &self.staging[self.staging_start..];
            let decoded = aws.decode(&input[..input.len().min(max)])?;
            out.extend_from_slice(decoded.data);
            let (produced, consumed) = (decoded.data.len(), decoded.consumed);
            self.staging_start += consumed;
            if self.staging_start == self.staging.len() {
                self.staging.clear();
                self.staging_start = 0;
            }
            return Ok((produced, consumed));
        }
        if self.outer_done {
            self.done = true;
            return Ok((0, 0));
        }
        let decoded = decoder.decode(conn.buffered())?;
        self.staging.extend_from_slice(decoded.data);
        let (consumed, done) = (decoded.consumed, decoded.done);
        conn.start += consumed;
        self.outer_done = done;
        Ok((0, consumed.max(usize::from(done))))
    }

    /// Check the ended body: aws-chunked length, signatures and trailers,
    /// and the signed payload SHA-256 (the last read reports its error).
    fn finish(&mut self) -> Result<(), S3Error> {
        if let Some(aws) = &self.aws {
            aws.finish()?;
        }
        if let Some((hasher, expected)) = self.sha256.take() {
            let digest: [u8; 32] = hasher.finalize().into();
            if digest != expected {
                return Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch));
            }
        }
        Ok(())
    }

    /// Read and drop the rest of the body (small bodies of failed requests,
    /// so the connection can be reused); false if it is too large to skip.
    pub async fn skip(&mut self, conn: &mut HttpConn, bytes_max: u64) -> bool {
        let mut sink = Vec::with_capacity(64 << 10);
        let mut skipped = 0u64;
        while !self.finished() {
            sink.clear();
            match self.read(conn, &mut sink, 64 << 10).await {
                Ok(0) => break,
                Ok(read) => skipped += read as u64,
                Err(_) => return false,
            }
            if skipped > bytes_max {
                return false;
            }
        }
        self.finished()
    }
}
