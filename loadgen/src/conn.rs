//! One keep-alive HTTP/1.1 connection: its socket, its reusable buffers and
//! the request/response in flight. The worker (engine.rs) decides what to
//! send; this file moves bytes.

use crate::body::{BodyCheck, BodySpec, Pattern, BODY_HEADER_BYTES};
use crate::http::{BodyDecoder, ResponseHead};
use crate::workload::OpKind;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Write};
use std::time::Instant;

/// Socket reads land here; a response head must fit (RESPONSE_HEAD_BYTES_MAX
/// is smaller), bodies stream through it.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Error bodies and the XML we parse (UploadId, errors) are kept up to this.
pub const CAPTURE_BYTES_MAX: usize = 64 * 1024;

/// What follows the request head on the wire.
#[derive(Debug, Clone, Copy)]
pub enum BodyOut {
    None,
    /// Bytes `pos..end` of a generated object body (a part is a sub-range).
    Object {
        spec: BodySpec,
        header: [u8; BODY_HEADER_BYTES],
        pos: u64,
        end: u64,
    },
    /// `Conn::body_buf[pos..]` (the CompleteMultipartUpload XML).
    Buffer {
        pos: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Single,
    CreateUpload,
    UploadPart(u32),
    CompleteUpload,
}

#[derive(Debug, Clone, Copy)]
pub struct OpState {
    pub kind: OpKind,
    pub step: Step,
    pub key_id: u64,
    /// The version this PUT/multipart writes.
    pub version: u32,
    /// GET: the highest version acknowledged when the GET was sent.
    pub acked_at_send: u32,
    pub size_bytes: u64,
    pub parts: u32,
    /// Open loop: when the schedule wanted this op sent.
    pub intended: Option<Instant>,
    /// When the op's first request was handed to the socket.
    pub sent_at: Instant,
    /// Deadline of the request in flight (each request gets --timeout).
    pub deadline: Instant,
    pub payload_bytes: u64,
}

pub enum Recv {
    Idle,
    Head,
    Body { head: ResponseHead, decoder: BodyDecoder },
}

pub struct Conn {
    /// Index into Config::endpoints.
    pub endpoint: usize,
    pub stream: Option<TcpStream>,
    /// The TLS session on `stream` (https:// endpoints).
    pub tls: Option<rustls::ClientConnection>,
    pub connected: bool,
    /// After a failed connect, the connection rests until this time.
    pub retry_at: Option<Instant>,
    pub backoff_ms: u64,
    pub head_out: Vec<u8>,
    pub head_sent: usize,
    pub body_out: BodyOut,
    pub body_buf: Vec<u8>,
    pub in_buf: Box<[u8]>,
    pub in_start: usize,
    pub in_end: usize,
    pub recv: Recv,
    pub head_request: bool,
    pub capture: Vec<u8>,
    pub capture_on: bool,
    pub check: Option<BodyCheck>,
    pub body_in_bytes: u64,
    /// Kernel receive stamp (CLOCK_REALTIME ns) of the latest read.
    pub rx_realtime_ns: Option<i64>,
    pub path: Vec<u8>,
    pub scratch: Vec<u8>,
    pub upload_id: String,
    pub parts_xml: Vec<u8>,
    pub op: Option<OpState>,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            endpoint: 0,
            stream: None,
            tls: None,
            connected: false,
            retry_at: None,
            backoff_ms: 0,
            head_out: Vec::with_capacity(1024),
            head_sent: 0,
            body_out: BodyOut::None,
            body_buf: Vec::new(),
            in_buf: vec![0u8; READ_BUF_BYTES].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            recv: Recv::Idle,
            head_request: false,
            capture: Vec::new(),
            capture_on: false,
            check: None,
            body_in_bytes: 0,
            rx_realtime_ns: None,
            path: Vec::with_capacity(128),
            scratch: Vec::with_capacity(32),
            upload_id: String::new(),
            parts_xml: Vec::new(),
            op: None,
        }
    }

    /// The request head and body have all been written.
    pub fn request_sent(&self) -> bool {
        fully_sent(self.head_sent, &self.head_out, &self.body_out, &self.body_buf)
    }

    /// Forget the socket and anything half sent or received.
    pub fn reset_io(&mut self) {
        self.stream = None;
        self.tls = None;
        self.connected = false;
        self.head_sent = self.head_out.len();
        self.body_out = BodyOut::None;
        self.in_start = 0;
        self.in_end = 0;
        self.recv = Recv::Idle;
    }

    /// Writes as much of the pending request as the socket takes.
    /// `Ok(true)`: all of it is sent.
    pub fn flush(&mut self, pattern: &Pattern) -> io::Result<bool> {
        if self.tls.is_some() {
            return self.flush_tls(pattern);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no socket"));
        };
        loop {
            let head = &self.head_out[self.head_sent..];
            let (first, second) = body_chunks(&self.body_out, &self.body_buf, pattern);
            if head.is_empty() && first.is_empty() {
                return Ok(true);
            }
            let iov = [IoSlice::new(head), IoSlice::new(first), IoSlice::new(second)];
            match stream.write_vectored(&iov) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "socket took no bytes"))
                }
                Ok(n) => {
                    let from_head = n.min(head.len());
                    self.head_sent += from_head;
                    advance_body(&mut self.body_out, (n - from_head) as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Conn {
    /// TLS: hands plaintext to rustls while it has room (it buffers at most
    /// TLS_BUFFER_BYTES_MAX) and writes its records out. `Ok(true)`: the
    /// request and every record are out.
    fn flush_tls(&mut self, pattern: &Pattern) -> io::Result<bool> {
        let (Some(stream), Some(tls)) = (self.stream.as_mut(), self.tls.as_mut()) else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no socket"));
        };
        loop {
            loop {
                let head = &self.head_out[self.head_sent..];
                let (first, _) = body_chunks(&self.body_out, &self.body_buf, pattern);
                let chunk = if head.is_empty() { first } else { head };
                if chunk.is_empty() {
                    break;
                }
                let n = tls.writer().write(chunk)?;
                if n == 0 {
                    break;
                }
                if head.is_empty() {
                    advance_body(&mut self.body_out, n as u64);
                } else {
                    self.head_sent += n;
                }
            }
            if !tls.wants_write() {
                return Ok(fully_sent(
                    self.head_sent,
                    &self.head_out,
                    &self.body_out,
                    &self.body_buf,
                ));
            }
            match tls.write_tls(stream) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "socket took no bytes"))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn fully_sent(head_sent: usize, head: &[u8], body: &BodyOut, body_buf: &[u8]) -> bool {
    let body_done = match *body {
        BodyOut::None => true,
        BodyOut::Object { pos, end, .. } => pos >= end,
        BodyOut::Buffer { pos } => pos >= body_buf.len(),
    };
    head_sent >= head.len() && body_done
}

/// The next bytes of the body: up to two contiguous slices (the rest of the
/// 32-byte header, then pattern data), so one writev covers both.
pub fn body_chunks<'a>(
    body: &'a BodyOut,
    buf: &'a [u8],
    pattern: &'a Pattern,
) -> (&'a [u8], &'a [u8]) {
    const HEADER: u64 = BODY_HEADER_BYTES as u64;
    match body {
        BodyOut::None => (&[], &[]),
        BodyOut::Buffer { pos } => (&buf[*pos..], &[]),
        BodyOut::Object { spec, header, pos, end } if *pos < HEADER => {
            let first = &header[*pos as usize..(*end).min(HEADER) as usize];
            let second = if *end > HEADER { data_slice(pattern, spec, HEADER, *end) } else { &[] };
            (first, second)
        }
        BodyOut::Object { spec, pos, end, .. } => (data_slice(pattern, spec, *pos, *end), &[]),
    }
}

fn data_slice<'a>(pattern: &'a Pattern, spec: &BodySpec, pos: u64, end: u64) -> &'a [u8] {
    if pos >= end {
        return &[];
    }
    let data = pattern.data(spec, pos);
    &data[..data.len().min((end - pos) as usize)]
}

pub fn advance_body(body: &mut BodyOut, n: u64) {
    match body {
        BodyOut::None => assert_eq!(n, 0, "wrote body bytes with no body"),
        BodyOut::Buffer { pos } => *pos += n as usize,
        BodyOut::Object { pos, end, .. } => {
            assert!(*pos + n <= *end, "wrote past the body's end");
            *pos += n;
        }
    }
}
