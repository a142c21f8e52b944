//! A trivial S3 responder for measuring the generator itself and for the
//! end-to-end tests. It checks no signature. By default it answers every
//! request 200 with a fixed body; `store` keeps objects (and multipart
//! uploads) in memory so `--verify` runs end to end; `delay` holds every
//! response (a slow or stalled server); `corrupt_every` flips one byte in
//! every Nth GET body. One thread, one epoll loop.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX);
/// The loop checks the stop flag and delayed responses this often at least.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
const MOCK_CONNECTIONS_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub body_bytes: usize,
    pub delay: Duration,
    pub chunked: bool,
    pub store: bool,
    pub fail_auth: bool,
    pub corrupt_every: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            body_bytes: 4096,
            delay: Duration::ZERO,
            chunked: false,
            store: false,
            fail_auth: false,
            corrupt_every: 0,
        }
    }
}

pub struct MockHandle {
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a mock on `addr` (port 0 for any) in a thread.
pub fn spawn(addr: SocketAddr, cfg: MockConfig) -> io::Result<MockHandle> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let (flag, count, accepted) = (stop.clone(), requests.clone(), connections.clone());
    let thread = std::thread::Builder::new()
        .name("mock-s3".into())
        .spawn(move || serve_counted(listener, cfg, &flag, &count, &accepted))?;
    Ok(MockHandle { addr, requests, connections, stop, thread: Some(thread) })
}

struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

struct MockConn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    request: Option<Request>,
    body_remaining: u64,
    ready_at: Option<Instant>,
}

struct State {
    cfg: MockConfig,
    fixed_body: Vec<u8>,
    objects: HashMap<String, Vec<u8>>,
    uploads: HashMap<String, BTreeMap<u32, Vec<u8>>>,
    next_upload: u64,
    gets: u64,
    answered: u64,
}

pub fn serve(listener: TcpListener, cfg: MockConfig, stop: &AtomicBool) -> io::Result<()> {
    serve_counted(listener, cfg, stop, &AtomicU64::new(0), &AtomicU64::new(0))
}

fn serve_counted(
    mut listener: TcpListener,
    cfg: MockConfig,
    stop: &AtomicBool,
    requests: &AtomicU64,
    connections: &AtomicU64,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<usize, MockConn> = HashMap::new();
    let mut next_token = 0usize;
    let fixed_body = vec![b'x'; cfg.body_bytes];
    let mut state = State {
        cfg,
        fixed_body,
        objects: HashMap::new(),
        uploads: HashMap::new(),
        next_upload: 1,
        gets: 0,
        answered: 0,
    };
    let mut events = Events::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(POLL_INTERVAL))?;
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&mut listener, &mut poll, &mut conns, &mut next_token, connections)?;
                continue;
            }
            let id = event.token().0;
            let Some(conn) = conns.get_mut(&id) else { continue };
            if service(conn, &mut state).is_err() {
                if let Some(mut c) = conns.remove(&id) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
        requests.store(state.answered, Ordering::Relaxed);
        if !state.cfg.delay.is_zero() {
            let now = Instant::now();
            for conn in conns.values_mut() {
                if conn.ready_at.is_some_and(|t| now >= t) {
                    conn.ready_at = None;
                    let _ = flush(conn);
                }
            }
        }
    }
    Ok(())
}

fn accept_all(
    listener: &mut TcpListener,
    poll: &mut Poll,
    conns: &mut HashMap<usize, MockConn>,
    next: &mut usize,
    accepted: &AtomicU64,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if conns.len() >= MOCK_CONNECTIONS_MAX {
                    continue;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                poll.registry().register(
                    &mut stream,
                    Token(*next),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let conn = MockConn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    sent: 0,
                    request: None,
                    body_remaining: 0,
                    ready_at: None,
                };
                conns.insert(*next, conn);
                *next += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads what is there, answers complete requests, writes what it can.
/// An error means: drop the connection.
fn service(conn: &mut MockConn, state: &mut State) -> io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => conn.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        while take_requests(conn, state)? {}
    }
    while take_requests(conn, state)? {}
    if conn.ready_at.is_none() {
        flush(conn)?;
    }
    Ok(())
}

/// Consumes one request (head and body) from the input if complete.
fn take_requests(conn: &mut MockConn, state: &mut State) -> io::Result<bool> {
    if conn.request.is_none() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let used = match req.parse(&conn.input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if conn.input.len() > REQUEST_HEAD_BYTES_MAX => {
                return Err(io::ErrorKind::InvalidData.into())
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(io::ErrorKind::InvalidData.into()),
        };
        let target = req.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let length = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        conn.request = Some(Request {
            method: req.method.unwrap_or("GET").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            body: Vec::new(),
        });
        conn.body_remaining = length;
        conn.input.drain(..used);
    }
    let take = (conn.body_remaining as usize).min(conn.input.len());
    let request = conn.request.as_mut().expect("set above");
    if state.cfg.store {
        request.body.extend_from_slice(&conn.input[..take]);
    }
    conn.input.drain(..take);
    conn.body_remaining -= take as u64;
    if conn.body_remaining > 0 {
        return Ok(false);
    }
    let request = conn.request.take().expect("set above");
    respond(&request, state, &mut conn.output);
    state.answered += 1;
    if !state.cfg.delay.is_zero() && conn.ready_at.is_none() {
        conn.ready_at = Some(Instant::now() + state.cfg.delay);
    }
    Ok(true)
}

fn flush(conn: &mut MockConn) -> io::Result<()> {
    while conn.sent < conn.output.len() {
        match conn.stream.write(&conn.output[conn.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.output.clear();
    conn.sent = 0;
    Ok(())
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn respond(req: &Request, state: &mut State, out: &mut Vec<u8>) {
    if state.cfg.fail_auth {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The mock rejects every signature.</Message></Error>";
        return head(out, 403, xml.len(), "", false, xml);
    }
    let key =
        req.path.trim_start_matches('/').split_once('/').map(|(_, k)| k).filter(|k| !k.is_empty());
    let Some(key) = key else {
        let xml: &[u8] = b"<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        return match req.method.as_str() {
            "GET" => head(out, 200, xml.len(), "", false, xml),
            _ => head(out, 200, 0, "", false, b""),
        };
    };
    match req.method.as_str() {
        "PUT" => put(req, key, state, out),
        "POST" => post(req, key, state, out),
        "GET" | "HEAD" => get(req, key, state, out),
        "DELETE" => {
            state.objects.remove(key);
            head(out, 204, 0, "", false, b"")
        }
        _ => head(out, 405, 0, "", false, b""),
    }
}

fn put(req: &Request, key: &str, state: &mut State, out: &mut Vec<u8>) {
    match (query_value(&req.query, "partNumber"), query_value(&req.query, "uploadId")) {
        (Some(n), Some(id)) => {
            let n: u32 = n.parse().unwrap_or(0);
            if let Some(parts) = state.uploads.get_mut(id) {
                parts.insert(n, req.body.clone());
            }
            head(out, 200, 0, &format!("\"part{n}\""), false, b"")
        }
        _ => {
            if state.cfg.store {
                state.objects.insert(key.to_string(), req.body.clone());
            }
            head(out, 200, 0, "\"mock-etag\"", false, b"")
        }
    }
}

fn post(req: &Request, key: &str, state: &mut State, out: &mut Vec<u8>) {
    if query_value(&req.query, "uploads").is_some() {
        let id = format!("mock-upload-{}", state.next_upload);
        state.next_upload += 1;
        state.uploads.insert(id.clone(), BTreeMap::new());
        let xml = format!("<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>");
        return head(out, 200, xml.len(), "", false, xml.as_bytes());
    }
    if let Some(id) = query_value(&req.query, "uploadId") {
        let Some(parts) = state.uploads.remove(id) else {
            let xml = b"<Error><Code>NoSuchUpload</Code><Message>unknown upload</Message></Error>";
            return head(out, 404, xml.len(), "", false, xml);
        };
        if state.cfg.store {
            state.objects.insert(key.to_string(), parts.into_values().flatten().collect());
        }
        let xml = b"<?xml version=\"1.0\"?><CompleteMultipartUploadResult><ETag>\"mp\"</ETag></CompleteMultipartUploadResult>";
        return head(out, 200, xml.len(), "", false, xml);
    }
    head(out, 400, 0, "", false, b"")
}

fn get(req: &Request, key: &str, state: &mut State, out: &mut Vec<u8>) {
    let is_head = req.method == "HEAD";
    let mut corrupted;
    let body: &[u8] = if state.cfg.store {
        match state.objects.get(key) {
            Some(b) => b,
            None => {
                let xml: &[u8] = if is_head {
                    b""
                } else {
                    b"<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>"
                };
                return head(out, 404, xml.len(), "", false, xml);
            }
        }
    } else {
        &state.fixed_body
    };
    if !is_head {
        state.gets += 1;
    }
    if !is_head
        && state.cfg.corrupt_every > 0
        && state.gets.is_multiple_of(state.cfg.corrupt_every)
        && !body.is_empty()
    {
        corrupted = body.to_vec();
        let at = corrupted.len() - 1;
        corrupted[at] ^= 0x01;
        return head(
            out,
            200,
            corrupted.len(),
            "",
            state.cfg.chunked,
            std::mem::take(&mut corrupted).as_slice(),
        );
    }
    let len = body.len();
    let body = if is_head { &[][..] } else { body };
    let chunked = state.cfg.chunked && !is_head;
    head(out, 200, len, "", chunked, body)
}

/// Appends a response: head, then `body` (chunked in 1000-byte chunks if asked).
fn head(
    out: &mut Vec<u8>,
    status: u16,
    content_length: usize,
    etag: &str,
    chunked: bool,
    body: &[u8],
) {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Other",
    };
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\nServer: toasty-loadgen-mock\r\n");
    if !etag.is_empty() {
        let _ = write!(out, "ETag: {etag}\r\n");
    }
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.chunks(1000) {
            let _ = write!(out, "{:x}\r\n", chunk.len());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        let _ = write!(out, "Content-Length: {content_length}\r\n\r\n");
        if status != 204 {
            out.extend_from_slice(body);
        }
    }
}
