//! The alternative I/O model, for comparison only: one blocking thread per
//! connection, each sending the same pre-built GET (no per-request signing,
//! no histograms, no verification: the cheapest possible client) in a
//! closed loop. Prints requests/s and CPU per request, like toasty-loadgen's
//! "client CPU" line, so the two can be compared against the same mock.
//!
//! cargo run --release -p toasty-loadgen --example blocking_baseline -- 127.0.0.1:9000 16 5

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).map_or("127.0.0.1:9000", |s| s).parse().expect("ADDR");
    let threads: usize = args.get(2).map_or(Ok(16), |s| s.parse()).expect("THREADS");
    let secs: u64 = args.get(3).map_or(Ok(5), |s| s.parse()).expect("SECONDS");
    assert!(addr.ip().is_loopback(), "loopback only");
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let request = format!("GET /loadgen/lg/0000000001 HTTP/1.1\r\nHost: {addr}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n");
    let (cpu0, t0) = (cpu_us(), Instant::now());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| client(addr, request.as_bytes(), &stop, &done));
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let (cpu, elapsed) = (cpu_us() - cpu0, t0.elapsed().as_secs_f64());
    let n = done.load(Ordering::Relaxed).max(1);
    println!(
        "blocking baseline: {threads} threads, {:.0} req/s, CPU {:.3} s ({:.1} % of one core), {:.1} µs per request",
        n as f64 / elapsed,
        cpu as f64 / 1e6,
        100.0 * cpu as f64 / 1e6 / elapsed,
        cpu as f64 / n as f64
    );
}

fn client(addr: SocketAddr, request: &[u8], stop: &AtomicBool, done: &AtomicU64) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(request).expect("write");
        // Read one response: head, then Content-Length bytes.
        let mut have = 0;
        let (head_end, body_len) = loop {
            let n = stream.read(&mut buf[have..]).expect("read");
            assert!(n > 0, "server closed");
            have += n;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).expect("text head");
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, len);
            }
        };
        while have < head_end + body_len {
            let n = stream.read(&mut buf[have..]).expect("read");
            assert!(n > 0, "server closed");
            have += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn cpu_us() -> u64 {
    // SAFETY: getrusage fills a struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(u.ru_utime) + us(u.ru_stime)
}
