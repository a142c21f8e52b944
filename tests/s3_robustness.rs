//! Bad input to the S3 front end of a real cluster (3 nodes x 2 shards,
//! anonymous access so raw bytes can be sent): malformed request lines,
//! oversized heads, truncated bodies, abandoned uploads, slow clients, bad
//! XML. Each gets the right status or a closed connection; no node panics
//! or stops answering, no partial object is ever visible, and the chunks an
//! abandoned upload wrote are collected after the grace period.
//!
//! Fails if a response code is wrong, a connection is kept open after a
//! framing error, a truncated PUT leaves an object, a node dies, or leaked
//! chunks are never reclaimed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, CORES, NODES};
use common::TempDir;

const S3_PORT: u16 = 25900;

fn connect() -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", S3_PORT)).expect("connect to the S3 port");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream
}

/// Send `request` and read until the server closes or `limit` passes.
fn exchange(request: &[u8]) -> String {
    let mut stream = connect();
    stream.write_all(request).expect("send");
    read_response(&mut stream)
}

/// The status code of the first response in `text`.
fn status(text: &str) -> u16 {
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// One response: head, then Content-Length bytes of body.
fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return String::from_utf8_lossy(&bytes[..end + 4 + length]).to_string();
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&bytes).to_string(),
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
}

/// One response and not a byte more (head read byte by byte, then exactly
/// Content-Length body bytes), so a pipelined response behind it stays in
/// the socket.
fn read_one_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("a response"), 1, "response head cut off");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the whole response body");
    (head, body)
}

/// True if the server closed the connection (a read returns 0 or fails).
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn total_chunks(cluster: &Cluster) -> u64 {
    (0..NODES).filter_map(|n| cluster.status(n)).flatten().map(|s| s.chunks).sum()
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let dir = TempDir::new("s3-robustness");
    let mut cluster = Cluster::new(&dir.0, 25000, 25500);
    cluster.extra_args = ["--http", &format!("127.0.0.1:{S3_PORT}"), "--anonymous"]
        .iter()
        .chain(&[
            "--http-idle-seconds",
            "2",
            "--gc-grace-seconds",
            "3",
            "--gc-interval-seconds",
            "1",
        ])
        .map(|s| s.to_string())
        .collect();
    cluster.start_all();
    cluster.wait_ready();
    assert_eq!(status(&exchange(&request("PUT", "/robust", b""))), 200, "create the bucket");

    // A request line that is not HTTP: 400, then the connection closes.
    let mut stream = connect();
    stream.write_all(b"HELLO THERE\r\n\r\n").expect("send");
    let response = read_response(&mut stream);
    assert_eq!(status(&response), 400, "{response}");
    assert!(closed(&mut stream), "a connection with bad framing must close");

    // A head over 16 KiB: 431 (header section too large).
    let huge =
        format!("GET /robust/x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(status(&exchange(huge.as_bytes())), 431);

    // Two Content-Length headers (request smuggling shape): 400.
    let double =
        b"PUT /robust/d HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(status(&exchange(double)), 400);

    // Bad XML to DeleteObjects: 400 MalformedXML.
    let response = exchange(&request("POST", "/robust?delete", b"<Delete><Object>"));
    assert_eq!(status(&response), 400, "{response}");
    assert!(response.contains("MalformedXML"), "{response}");

    // A PUT that promises 3 MiB, sends 1.5 MiB and hangs up: nothing is
    // visible, and its chunks are collected after the grace period.
    let chunks_before = total_chunks(&cluster);
    let mut stream = connect();
    let head = "PUT /robust/truncated HTTP/1.1\r\nHost: h\r\nContent-Length: 3145728\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(&vec![0x5a; 1_572_864]).expect("send part of the body");
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        status(&exchange(&request("GET", "/robust/truncated", b""))),
        404,
        "no partial object"
    );
    let written = total_chunks(&cluster);
    eprintln!("chunks before the truncated PUT {chunks_before}, after {written}");
    cluster.wait_for(
        "the abandoned upload's chunks to be collected",
        Duration::from_secs(60),
        |c| total_chunks(c) == chunks_before,
    );

    // A slow client (half a request line, then silence) is cut off after
    // the idle time; the server keeps serving others meanwhile.
    let mut slow = connect();
    slow.write_all(b"GET /robust/x HT").expect("send");
    let started = Instant::now();
    assert_eq!(status(&exchange(&request("GET", "/robust/absent", b""))), 404);
    let response = read_response(&mut slow);
    assert_eq!(status(&response), 400, "{response}");
    assert!(response.contains("RequestTimeout"), "{response}");
    assert!(closed(&mut slow), "an idle connection must be closed");
    eprintln!("idle connection closed after {:?}", started.elapsed());

    // Pipelined on one connection in one write: a PUT whose body spans
    // several chunks and read buffers (a plain Content-Length body is read
    // from the socket straight into chunk frames) and then a GET of it. The
    // body read must stop at exactly its length: the GET's bytes behind it
    // belong to the next request.
    let body: Vec<u8> = (0..(2usize << 20) + 12_345).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut pipelined = request("PUT", "/robust/pipelined", &body);
    pipelined.extend_from_slice(&request("GET", "/robust/pipelined", b""));
    let mut stream = connect();
    stream.write_all(&pipelined).expect("send");
    // Read exactly one response at a time: both may already sit in one
    // socket read, and `read_response` would drop what follows the first.
    let (put, _) = read_one_response(&mut stream);
    assert_eq!(status(&put), 200, "{put}");
    let (head, got) = read_one_response(&mut stream);
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(got.len(), body.len(), "{head}");
    assert!(got == body, "the pipelined PUT stored other bytes");

    // A real object survives all of the above, and every node still runs.
    assert_eq!(status(&exchange(&request("PUT", "/robust/ok", b"intact"))), 200);
    let response = exchange(&request("GET", "/robust/ok", b""));
    assert!(response.ends_with("intact"), "{response}");
    for node in 0..NODES {
        let shards = cluster.status(node).expect("every node answers");
        assert_eq!(shards.len(), CORES as usize);
        assert!(shards.iter().all(|s| s.normal), "node {node} is normal");
    }
}
