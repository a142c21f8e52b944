//! A trivial S3 responder for measuring toasty-loadgen itself (see
//! src/mock.rs). It verifies nothing.

use clap::Parser;
use std::time::Duration;
use toasty_loadgen::mock::{self, MockConfig};

#[derive(Parser, Debug)]
#[command(name = "toasty-loadgen-mock", about = "Answers every S3 request; checks no signature")]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: std::net::SocketAddr,
    /// GET body size in bytes (fixed-body mode).
    #[arg(long, default_value_t = 4096)]
    body_bytes: usize,
    /// Hold every response this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Send GET bodies with Transfer-Encoding: chunked.
    #[arg(long)]
    chunked: bool,
    /// Keep PUT bodies in memory and serve them (for --verify runs).
    #[arg(long)]
    store: bool,
    /// Answer 403 SignatureDoesNotMatch to everything.
    #[arg(long)]
    fail_auth: bool,
    /// Flip one byte in every Nth GET body (0: never).
    #[arg(long, default_value_t = 0)]
    corrupt_every: u64,
}

fn main() {
    let a = Args::parse();
    if !a.listen.ip().is_loopback() {
        eprintln!("toasty-loadgen-mock: listen on a loopback address");
        std::process::exit(2);
    }
    let cfg = MockConfig {
        body_bytes: a.body_bytes,
        delay: Duration::from_millis(a.delay_ms),
        chunked: a.chunked,
        store: a.store,
        fail_auth: a.fail_auth,
        corrupt_every: a.corrupt_every,
    };
    let listener = match mio::net::TcpListener::bind(a.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("toasty-loadgen-mock: cannot listen on {}: {e}", a.listen);
            std::process::exit(1);
        }
    };
    eprintln!("toasty-loadgen-mock listening on {}", a.listen);
    let stop = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = mock::serve(listener, cfg, &stop) {
        eprintln!("toasty-loadgen-mock: {e}");
        std::process::exit(1);
    }
}
