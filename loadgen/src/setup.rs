//! A small blocking client for the few requests before a run (probe the
//! endpoint, create the bucket). It shares the request writer and response
//! parser with the workers, and turns failures into messages a person can act on.

use crate::config::Config;
use crate::http::{self, BodyDecoder};
use crate::s3::{self, AmzClock, Request};
use crate::sigv4::Signer;
use std::io::{Read, Write};
use std::net::TcpStream;

/// Setup responses are small XML; bigger bodies are read and dropped.
const SETUP_BODY_BYTES_MAX: usize = 1 << 20;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn request(
    cfg: &Config,
    method: &'static str,
    path: &[u8],
    query: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let ep = &cfg.endpoints[0];
    let mut stream = TcpStream::connect_timeout(&ep.addr, cfg.timeout)
        .map_err(|e| format!("cannot connect to {} ({}): {e}", ep.url, ep.addr))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(cfg.timeout));
    let _ = stream.set_write_timeout(Some(cfg.timeout));
    let mut signer = Signer::new(&cfg.access_key, &cfg.secret_key, &cfg.region);
    let mut out = Vec::new();
    let content_length = (method == "PUT" || method == "POST").then_some(body.len() as u64);
    let req = Request { method, path, query, content_length, payload_sha256: None };
    s3::write_head(&mut out, &mut signer, &ep.host, AmzClock::new().now(), &req);
    out.extend_from_slice(body);
    let io_err = |e: std::io::Error| format!("{} {method}: {e}", ep.url);
    let head_request = method == "HEAD";
    let response = match &cfg.tls {
        None => {
            stream.write_all(&out).map_err(io_err)?;
            read_response(&mut stream, head_request, cfg.timeout)
        }
        Some(config) => {
            let name = crate::tls::server_name(&ep.host)?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("TLS: {e}"))?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            tls.write_all(&out).map_err(|e| format!("{} {method}: TLS: {e}", ep.url))?;
            read_response(&mut tls, head_request, cfg.timeout)
        }
    };
    response.map_err(|e| format!("{} {method}: {e}", ep.url))
}

fn read_response(
    stream: &mut impl Read,
    head_request: bool,
    timeout: std::time::Duration,
) -> Result<Response, String> {
    let read_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no response within --timeout {timeout:?}")
        }
        _ => format!("read failed: {e}"),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    let (head, used) = loop {
        if len == buf.len() {
            return Err("response head too large".into());
        }
        let n = stream.read(&mut buf[len..]).map_err(read_err)?;
        if n == 0 {
            return Err("the server closed the connection without answering".into());
        }
        len += n;
        if let Some(parsed) = http::parse_head(&buf[..len], head_request).map_err(|e| e.0)? {
            break parsed;
        }
    };
    let mut decoder = BodyDecoder::new(head.body);
    let mut body = Vec::new();
    let mut sink = |b: &[u8]| {
        let room = SETUP_BODY_BYTES_MAX.saturating_sub(body.len());
        body.extend_from_slice(&b[..b.len().min(room)]);
    };
    let mut pending = used..len;
    loop {
        // Until the body is done the decoder takes all it is given.
        decoder.feed(&buf[pending.clone()], &mut sink).map_err(|e| e.0)?;
        if decoder.is_done() {
            break;
        }
        let n = stream.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            decoder.on_eof().map_err(|e| e.0)?;
            break;
        }
        pending = 0..n;
    }
    Ok(Response { status: head.status, body })
}

/// Checks that the endpoint answers S3 and the bucket exists; creates it
/// when asked. Errors name the endpoint and quote the S3 error code.
pub fn ensure_bucket(cfg: &Config, create: bool) -> Result<(), String> {
    let mut path = Vec::new();
    s3::bucket_path(&mut path, &cfg.bucket);
    let probe = request(cfg, "GET", &path, &[("list-type", "2"), ("max-keys", "1")], b"")?;
    if (200..300).contains(&probe.status) {
        return Ok(());
    }
    let summary = s3::error_summary(probe.status, &probe.body);
    if probe.status != 404 {
        return Err(format!(
            "{}: listing bucket {:?} failed: {summary}",
            cfg.endpoints[0].url, cfg.bucket
        ));
    }
    if !create {
        return Err(format!(
            "{}: bucket {:?} does not exist ({summary}); pass --create-bucket",
            cfg.endpoints[0].url, cfg.bucket
        ));
    }
    let made = request(cfg, "PUT", &path, &[], b"")?;
    let code = http::xml_text(&made.body, "Code").unwrap_or(b"");
    if (200..300).contains(&made.status) || code == b"BucketAlreadyOwnedByYou" {
        return Ok(());
    }
    Err(format!(
        "{}: creating bucket {:?} failed: {}",
        cfg.endpoints[0].url,
        cfg.bucket,
        s3::error_summary(made.status, &made.body)
    ))
}
