//! The S3 front end on glommio: every shard accepts HTTP/1.1 on the same
//! address (SO_REUSEPORT), parses with `http/` (sans-IO), authenticates with
//! SigV4, and serves each request through the shard's object client
//! ([`ClientDriver`]), which routes it to the owning group's primary. The
//! same code runs in `toasty-proxy`, a front end without storage.
//!
//! Layout (Garage's split, STYLE.md §4): `conn.rs` (the connection and
//! request bodies), this file (accept loop, one request from head to
//! response, errors), `objects.rs` (put, get, head, delete, copy),
//! `buckets.rs` (buckets, listings, multi-object delete), `multipart.rs`.
//!
//! Memory is bounded per shard: connections (`connections_max`), object
//! bytes being uploaded (`put_bytes_in_flight_max`, a semaphore taken per
//! chunk before its bytes are read: a slow cluster slows the clients down
//! through TCP instead of filling memory) and a few chunks read ahead per
//! GET.

mod buckets;
mod conn;
pub mod md5_pool;
mod multipart;
mod objects;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::net::TcpListener;

use super::client_driver::ClientDriver;
use super::log::Log;
use crate::client::ClientError;
use crate::http::aws_chunked::AwsChunkedDecoder;
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::{parse_head, Limits, Method, RequestHead, ResponseBody};
use crate::http::router::{route, Endpoint, RouterConfig};
use crate::http::sigv4::{verify, Auth, PayloadHash, SigningKeyCache};
use crate::vsr::state_machine::{Limit, Reply, Request};
use conn::{Body, HeadEnd, HttpConn};

/// Everything the front end is configured with (see tuning.md).
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Access key → secret key.
    pub credentials: BTreeMap<String, String>,
    pub region: String,
    /// Serve requests without credentials (development only).
    pub anonymous: bool,
    pub router: RouterConfig,
    pub limits: Limits,
    /// A connection idle this long (mid-request too) is closed.
    pub idle: Duration,
    /// Objects up to this size travel inline in the metadata op.
    pub inline_size_max: usize,
    /// VSR client sessions per group of this front end's object client:
    /// metadata writes in flight per group (each carries a batch).
    pub sessions_per_group: u32,
    /// Chunk size for object data, and the largest chunk (objects larger
    /// than `chunk_size x chunks_per_object_max` use larger chunks).
    pub chunk_size: usize,
    pub chunk_size_max: usize,
    pub chunks_per_object_max: usize,
    /// Open connections per shard.
    pub connections_max: usize,
    /// Upload bytes held in memory per shard (chunks being read or written).
    pub put_bytes_in_flight_max: usize,
    /// Chunks read ahead per GET.
    pub get_chunks_ahead: usize,
    /// Bytes of verified chunks this front end keeps for later GETs
    /// (`client::cache`; 0: none).
    pub chunk_cache_bytes: usize,
    /// Serve HTTPS with this configuration (plain HTTP if `None`).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl S3Config {
    pub fn object_size_max(&self) -> u64 {
        (self.chunk_size_max * self.chunks_per_object_max) as u64
    }
}

/// Counters for the log and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct S3Stats {
    pub requests: u64,
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections: u64,
}

/// One shard's front end.
pub struct S3Context {
    pub driver: Rc<ClientDriver>,
    pub config: Rc<S3Config>,
    pub log: Log,
    buckets: RefCell<BTreeMap<String, (u64, u64, Instant)>>,
    signing_keys: RefCell<SigningKeyCache>,
    request_next: Cell<u64>,
    connections: Cell<usize>,
    put_budget: glommio::sync::Semaphore,
    /// ETag MD5s of this shard's uploads, many streams per vector pass.
    pub md5: md5_pool::Md5Pool,
    pub stats: RefCell<S3Stats>,
}

/// How long a bucket name → id lookup is trusted. A bucket deleted and
/// re-created (a new id) elsewhere is seen within this time; a write in
/// that window goes to the old id and is invisible (a known limitation,
/// ARCHITECTURE.md).
const BUCKET_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bodies of failed requests up to this size are read and dropped so the
/// connection stays open; larger ones close it.
const SKIP_BODY_BYTES_MAX: u64 = 1 << 20;

impl S3Context {
    pub fn new(driver: Rc<ClientDriver>, config: S3Config, log: Log) -> Rc<S3Context> {
        let budget = config.put_bytes_in_flight_max as u64;
        Rc::new(S3Context {
            driver,
            config: Rc::new(config),
            log,
            buckets: RefCell::new(BTreeMap::new()),
            signing_keys: RefCell::new(SigningKeyCache::new()),
            request_next: Cell::new(1),
            connections: Cell::new(0),
            put_budget: glommio::sync::Semaphore::new(budget),
            md5: md5_pool::Md5Pool::new(),
            stats: RefCell::new(S3Stats::default()),
        })
    }

    fn request_id(&self) -> String {
        let id = self.request_next.get();
        self.request_next.set(id + 1);
        format!("{:02x}{:02x}{id:012x}", self.log.node, self.log.shard.unwrap_or(0xff))
    }

    /// The id and creation time of bucket `name`, or NoSuchBucket.
    pub async fn bucket(&self, name: &str) -> Result<(u64, u64), S3Error> {
        if let Some((id, created, at)) = self.buckets.borrow().get(name) {
            if at.elapsed() < BUCKET_CACHE_TTL {
                return Ok((*id, *created));
            }
        }
        let request = Request::HeadBucket { name: name.as_bytes().to_vec() };
        match self.driver.read(0, request).await.map_err(client_error)? {
            Reply::Bucket { id, created } => {
                let mut cache = self.buckets.borrow_mut();
                if cache.len() >= 4096 {
                    cache.clear();
                }
                cache.insert(name.to_string(), (id, created, Instant::now()));
                Ok((id, created))
            }
            Reply::NoSuchBucket => {
                Err(S3Error::new(S3ErrorCode::NoSuchBucket).with_detail("BucketName", name))
            }
            other => Err(unexpected(&other)),
        }
    }

    pub fn bucket_forget(&self, name: &str) {
        self.buckets.borrow_mut().remove(name);
    }
}

/// A client error as S3 sees it.
pub fn client_error(error: ClientError) -> S3Error {
    let code = match error {
        ClientError::Busy => S3ErrorCode::SlowDown,
        ClientError::Timeout => S3ErrorCode::ServiceUnavailable,
        ClientError::TooLarge => S3ErrorCode::EntityTooLarge,
        ClientError::ChunkRefused(crate::vsr::message::ChunkRefusal::TooLarge) => {
            S3ErrorCode::EntityTooLarge
        }
        ClientError::ChunkUnavailable
        | ClientError::SessionEvicted
        | ClientError::BadReply
        | ClientError::ChunkRefused(_) => S3ErrorCode::ServiceUnavailable,
    };
    S3Error::with_message(code, error.to_string())
}

/// A reply the request cannot produce: a bug or a version mismatch.
pub fn unexpected(reply: &Reply) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, format!("unexpected reply {reply:?}"))
}

/// A state-machine limit as the S3 error a client can act on.
pub fn limit_error(limit: Limit) -> S3Error {
    match limit {
        Limit::KeySize => S3Error::new(S3ErrorCode::KeyTooLongError),
        Limit::UserMetadataSize => S3Error::new(S3ErrorCode::MetadataTooLarge),
        Limit::ChunksPerObject | Limit::InlineSize => S3Error::new(S3ErrorCode::EntityTooLarge),
        Limit::Buckets => S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "the cluster holds its maximum number of buckets",
        ),
        Limit::Objects | Limit::ObjectsBytes => S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "this group's metadata is full (--objects-max / --metadata-mib)",
        ),
    }
}

pub fn now_unix_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// Accept connections on `addr` (shared with the node's other shards by
/// SO_REUSEPORT) and serve them.
pub fn serve(addr: SocketAddr, context: Rc<S3Context>) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let scheme = if context.config.tls.is_some() { "https" } else { "http" };
    context.log.info(format!("S3 endpoint on {scheme}://{addr}"));
    glommio::spawn_local(async move {
        loop {
            let stream = match listener.accept().await {
                Ok(stream) => stream,
                Err(error) => {
                    context.log.warn(format!("accept on {addr}: {error}"));
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if context.connections.get() >= context.config.connections_max {
                // Refused by closing: the client retries (another shard or
                // node may take it).
                drop(stream);
                continue;
            }
            context.connections.set(context.connections.get() + 1);
            context.stats.borrow_mut().connections += 1;
            let task_context = context.clone();
            let stream = match &context.config.tls {
                None => conn::Stream::Plain(stream),
                Some(config) => match tls::TlsStream::new(stream, config.clone()) {
                    Ok(tls) => conn::Stream::Tls(Box::new(tls)),
                    Err(error) => {
                        context.log.warn(format!("TLS session: {error}"));
                        context.connections.set(context.connections.get() - 1);
                        continue;
                    }
                },
            };
            glommio::spawn_local(async move {
                let mut conn = HttpConn::new(stream, task_context.config.idle);
                connection(&task_context, &mut conn).await;
                task_context.connections.set(task_context.connections.get() - 1);
            })
            .detach();
        }
    })
    .detach();
    Ok(())
}

async fn connection(context: &S3Context, conn: &mut HttpConn) {
    let limits = context.config.limits;
    loop {
        let head_bytes = match conn.read_head(&limits).await {
            Ok(bytes) => bytes,
            Err(HeadEnd::Closed) => return,
            Err(HeadEnd::Timeout) => {
                let request_id = context.request_id();
                let error = S3Error::new(S3ErrorCode::RequestTimeout);
                let _ = send_error(conn, &error, "", &request_id, false, false).await;
                return;
            }
            Err(HeadEnd::Bad(error)) => {
                let request_id = context.request_id();
                let _ =
                    send_error(conn, &S3Error::from(error), "", &request_id, false, false).await;
                return;
            }
        };
        let head = match parse_head(&head_bytes, &limits) {
            Ok(Some(head)) => head,
            _ => return, // Parsed once already: unreachable in practice.
        };
        conn.requests += 1;
        if !request(context, conn, &head).await {
            return;
        }
    }
}

/// Serve one request; false if the connection must close.
async fn request(context: &S3Context, conn: &mut HttpConn, head: &RequestHead<'_>) -> bool {
    let request_id = context.request_id();
    context.stats.borrow_mut().requests += 1;
    let head_request = head.method == Method::Head;
    let mut keep_alive = head.keep_alive();
    let resource = head.path.to_string();
    let mut body = None;
    let result = match prepare(context, head) {
        Ok((endpoint, payload, aws)) => match body_for(context, head, payload, aws) {
            Ok(new_body) => {
                let body = body.insert(new_body);
                dispatch(context, conn, head, &endpoint, body, &request_id).await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    let error = match result {
        Ok(()) => None,
        Err(error) => Some(error),
    };
    // A body left unread (an error before it, or a client that sent more
    // than it said) must be drained or the connection closed.
    let drained = match &mut body {
        Some(body) if !body.finished() => body.skip(conn, SKIP_BODY_BYTES_MAX).await,
        Some(_) => true,
        None => head.body_framing().is_ok_and(|f| f == crate::http::request::BodyFraming::Empty),
    };
    keep_alive &= drained;
    if let Some(error) = error {
        context.stats.borrow_mut().errors += 1;
        if error.code == S3ErrorCode::InternalError
            || std::env::var_os("TOASTY_LOG_ERRORS").is_some()
        {
            context.log.warn(format!("{} {}: {}", head.method.as_str(), resource, error.message));
        }
        let sent = send_error(conn, &error, &resource, &request_id, head_request, keep_alive).await;
        return sent.is_ok() && keep_alive;
    }
    keep_alive
}

/// Route and authenticate.
fn prepare<'h>(
    context: &S3Context,
    head: &'h RequestHead<'_>,
) -> Result<(Endpoint<'h>, PayloadHash, Option<AwsChunkedDecoder>), S3Error> {
    let endpoint = route(head, &context.config.router)?;
    let auth = verify(
        head,
        &context.config.credentials,
        &mut context.signing_keys.borrow_mut(),
        &context.config.region,
        now_unix_secs(),
    )?;
    match auth {
        Auth::Anonymous if context.config.anonymous => Ok((endpoint, PayloadHash::Unsigned, None)),
        Auth::Anonymous => Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "anonymous access is disabled: sign the request (AWS Signature V4)",
        )),
        Auth::Verified(verified) => {
            let aws = AwsChunkedDecoder::for_request(head, &verified)?;
            Ok((endpoint, verified.payload, aws))
        }
    }
}

fn body_for(
    context: &S3Context,
    head: &RequestHead<'_>,
    payload: PayloadHash,
    aws: Option<AwsChunkedDecoder>,
) -> Result<Body, S3Error> {
    let framing = head.body_framing()?;
    let sha256 = match payload {
        PayloadHash::Sha256(digest) => Some(digest),
        _ => None,
    };
    Body::new(framing, aws, sha256, context.config.object_size_max())
}

async fn dispatch(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    endpoint: &Endpoint<'_>,
    body: &mut Body,
    request_id: &str,
) -> Result<(), S3Error> {
    let r = Responder {
        request_id,
        head_request: head.method == Method::Head,
        keep_alive: head.keep_alive(),
    };
    match endpoint {
        Endpoint::ListBuckets => buckets::list_buckets(context, conn, &r).await,
        Endpoint::CreateBucket { bucket } => {
            buckets::create(context, conn, head, body, bucket, &r).await
        }
        Endpoint::HeadBucket { bucket } => buckets::head(context, conn, bucket, &r).await,
        Endpoint::DeleteBucket { bucket } => buckets::delete(context, conn, bucket, &r).await,
        Endpoint::GetBucketLocation { bucket } => {
            buckets::location(context, conn, bucket, &r).await
        }
        Endpoint::ListObjectsV2(list) => buckets::list_v2(context, conn, list, &r).await,
        Endpoint::ListObjects(list) => buckets::list_v1(context, conn, list, &r).await,
        Endpoint::DeleteObjects { bucket } => {
            buckets::delete_objects(context, conn, head, body, bucket, &r).await
        }
        Endpoint::PutObject { bucket, key } => {
            objects::put(context, conn, head, body, bucket, key, &r).await
        }
        Endpoint::GetObject { bucket, key } | Endpoint::HeadObject { bucket, key } => {
            objects::get(context, conn, head, bucket, key, &r).await
        }
        Endpoint::DeleteObject { bucket, key } => {
            objects::delete(context, conn, head, bucket, key, &r).await
        }
        Endpoint::CopyObject { bucket, key, source } => {
            objects::copy(context, conn, head, bucket, key, source, &r).await
        }
        Endpoint::CreateMultipartUpload { .. }
        | Endpoint::UploadPart { .. }
        | Endpoint::UploadPartCopy { .. }
        | Endpoint::CompleteMultipartUpload { .. }
        | Endpoint::AbortMultipartUpload { .. }
        | Endpoint::ListParts { .. }
        | Endpoint::ListMultipartUploads(_) => {
            multipart::dispatch(context, conn, head, body, endpoint, &r).await
        }
        Endpoint::Unsupported { what } => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("{what} is not implemented"),
        )),
    }
}

/// How responses to one request are written.
pub struct Responder<'a> {
    pub request_id: &'a str,
    pub head_request: bool,
    pub keep_alive: bool,
}

impl Responder<'_> {
    /// A whole response: head, then `body` (not for HEAD requests).
    pub async fn send(
        &self,
        conn: &mut HttpConn,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<(), S3Error> {
        let mut out = Vec::with_capacity(512 + body.len());
        let mut all: Vec<(&str, &[u8])> = vec![("x-amz-request-id", self.request_id.as_bytes())];
        all.extend_from_slice(headers);
        if !body.is_empty() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            all.push(("Content-Type", b"application/xml"));
        }
        let framing = if status == 204 || status == 304 {
            ResponseBody::None
        } else {
            ResponseBody::Length(body.len() as u64)
        };
        crate::http::request::write_response_head(&mut out, status, &all, framing, self.keep_alive);
        if !self.head_request {
            out.extend_from_slice(body);
        }
        conn.write_all(&out).await.map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout))
    }

    /// An XML body with status 200.
    pub async fn xml(&self, conn: &mut HttpConn, body: &[u8]) -> Result<(), S3Error> {
        self.send(conn, 200, &[("Content-Type", b"application/xml")], body).await
    }
}

async fn send_error(
    conn: &mut HttpConn,
    error: &S3Error,
    resource: &str,
    request_id: &str,
    head_request: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut body = Vec::new();
    if error.code.has_body() {
        error.write_xml(resource, request_id, &mut body);
    }
    let mut out = Vec::with_capacity(256 + body.len());
    let mut headers: Vec<(&str, &[u8])> = vec![("x-amz-request-id", request_id.as_bytes())];
    if !body.is_empty() {
        headers.push(("Content-Type", b"application/xml"));
    }
    let framing = if error.status() == 304 {
        ResponseBody::None
    } else {
        ResponseBody::Length(body.len() as u64)
    };
    crate::http::request::write_response_head(
        &mut out,
        error.status(),
        &headers,
        framing,
        keep_alive,
    );
    if !head_request {
        out.extend_from_slice(&body);
    }
    conn.write_all(&out).await
}
