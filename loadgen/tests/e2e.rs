//! End to end against the in-process mock S3 (src/mock.rs): real sockets,
//! real worker threads, the real binary for the JSON test.

use std::net::SocketAddr;
use std::time::Duration;
use toasty_loadgen::config::{Config, Shape};
use toasty_loadgen::mock::{self, MockConfig, MockHandle};
use toasty_loadgen::run::{run, RunReport};
use toasty_loadgen::setup;
use toasty_loadgen::workload::{Mix, OpKind, SizeDist};

fn start_mock(cfg: MockConfig) -> MockHandle {
    mock::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("mock starts")
}

fn config(addr: SocketAddr) -> Config {
    let mut cfg = Config::new(addr);
    cfg.duration = Some(Duration::from_millis(500));
    cfg.connections = 4;
    cfg.keys = 200;
    cfg
}

fn op(report: &RunReport, kind: OpKind) -> &toasty_loadgen::stats::OpStats {
    &report.main.stats.ops[kind.index()]
}

#[test]
fn closed_loop_every_op_verified_against_a_storing_mock() {
    // Fails if any op's request is malformed for S3 (the mock routes by
    // method, path and query), if multipart loses a part, or if verify
    // flags valid bodies.
    let m = start_mock(MockConfig { store: true, ..MockConfig::default() });
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("put=20,get=50,list=5,delete=5,head=10,multipart=10").unwrap();
    cfg.size = SizeDist::parse("uniform:32-40KiB").unwrap();
    cfg.part_size_bytes = 16 * 1024;
    cfg.verify = true;
    cfg.threads = 2;
    let report = run(cfg, true).expect("run");
    let prefill = report.prefill.as_ref().unwrap();
    assert_eq!(prefill.stats.ops[OpKind::Put.index()].ops_ok, 200);
    let total = report.main.stats.total();
    assert_eq!(total.ops_error, 0, "errors: {:?}", total.errors_by_kind);
    for kind in toasty_loadgen::workload::ALL_OPS {
        assert!(op(&report, kind).ops_total() > 0, "{kind:?} never ran");
    }
    assert!(op(&report, OpKind::Get).ops_ok > 0, "every GET missed");
    assert!(op(&report, OpKind::Multipart).ops_ok > 0);
    assert!(report.main.stats.requests > total.ops_total(), "multipart is several requests");
    assert!(report.main.stats.verify_failures.is_empty());
}

#[test]
fn verify_reports_a_flipped_byte_with_its_key() {
    // Fails if a corrupted GET body passes verification.
    let m = start_mock(MockConfig { store: true, corrupt_every: 7, ..MockConfig::default() });
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.verify = true;
    let report = run(cfg, true).expect("run");
    let get = op(&report, OpKind::Get);
    let verify_errors = get.errors_by_kind[5];
    assert!(verify_errors > 0, "no verify failure");
    assert_eq!(get.ops_error, verify_errors);
    // Every 7th GET is corrupted: about 1/7 fail.
    let share = verify_errors as f64 / get.ops_total() as f64;
    assert!((0.10..0.18).contains(&share), "share {share}");
    let first = &report.main.stats.verify_failures[0];
    assert!(first.key.starts_with("lg/"), "{first:?}");
}

#[test]
fn chunked_responses_are_decoded_and_verified() {
    let m = start_mock(MockConfig { store: true, chunked: true, ..MockConfig::default() });
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.size = SizeDist::Fixed(10_000);
    cfg.verify = true;
    let report = run(cfg, true).expect("run");
    let get = op(&report, OpKind::Get);
    assert!(get.ops_ok > 10);
    assert_eq!(get.ops_error, 0);
    assert_eq!(get.payload_bytes, get.ops_ok * 10_000);
}

#[test]
fn open_loop_holds_the_rate() {
    let m = start_mock(MockConfig::default());
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.shape = Shape::Open { rate_per_s: 2000.0 };
    cfg.duration = Some(Duration::from_secs(1));
    let report = run(cfg, false).expect("run");
    let get = op(&report, OpKind::Get);
    // 2000 intended sends in the window; the mock keeps up easily.
    assert!((1900..=2001).contains(&get.ops_total()), "ops {}", get.ops_total());
    assert_eq!(get.ops_error, 0);
    assert_eq!(report.main.stats.backlog_dropped, 0);
    assert!(get.latency_us.value_at_quantile(0.5) < 20_000);
}

fn stalled_run(duration: Duration) -> RunReport {
    // One connection to a server that takes 20 ms per request (50/s) while
    // the schedule asks for 200/s: the backlog grows all run long.
    let m = start_mock(MockConfig { delay: Duration::from_millis(20), ..MockConfig::default() });
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.connections = 1;
    cfg.shape = Shape::Open { rate_per_s: 200.0 };
    cfg.duration = Some(duration);
    run(cfg, false).expect("run")
}

#[test]
fn open_loop_latency_counts_from_the_intended_time() {
    // Fails if latency were measured from the actual send (it would stay
    // near the 20 ms service time, the coordinated-omission lie).
    let short = stalled_run(Duration::from_millis(500));
    let long = stalled_run(Duration::from_millis(1000));
    let (s, l) = (op(&short, OpKind::Get), op(&long, OpKind::Get));
    let service_p99_ms = l.service_us.value_at_quantile(0.99) as f64 / 1e3;
    let latency_max_ms = l.latency_us.max() as f64 / 1e3;
    assert!(service_p99_ms < 80.0, "service p99 {service_p99_ms} ms");
    // The k-th request waits ~15k ms: the last of ~50 in 1 s waits ~0.75 s.
    assert!(latency_max_ms > 400.0, "latency max {latency_max_ms} ms");
    // Latency grows with intended time: twice the run, about twice the max.
    let short_max_ms = s.latency_us.max() as f64 / 1e3;
    assert!(latency_max_ms > 1.5 * short_max_ms, "{latency_max_ms} vs {short_max_ms}");
    // What was never sent is counted, not hidden.
    assert!(long.main.stats.backlog_at_end > 100, "backlog {}", long.main.stats.backlog_at_end);
}

#[test]
fn signature_errors_are_reported_with_the_s3_code() {
    let m = start_mock(MockConfig { fail_auth: true, ..MockConfig::default() });
    let err = setup::ensure_bucket(&config(m.addr), true).unwrap_err();
    assert!(err.contains("403 SignatureDoesNotMatch"), "{err}");
    let mut cfg = config(m.addr);
    cfg.duration = Some(Duration::from_millis(200));
    let report = run(cfg, false).expect("run");
    let total = report.main.stats.total();
    assert!(total.ops_error > 0);
    assert_eq!(total.errors_by_status.get(&403).copied(), Some(total.ops_error));
}

#[test]
fn connection_refused_names_the_endpoint_and_counts_connect_errors() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = setup::ensure_bucket(&config(addr), false).unwrap_err();
    assert!(err.contains(&addr.to_string()) && err.contains("refused"), "{err}");
    let mut cfg = config(addr);
    cfg.duration = Some(Duration::from_millis(300));
    let report = run(cfg, false).expect("run");
    let total = report.main.stats.total();
    assert!(total.errors_by_kind[0] > 0, "no connect errors: {:?}", total.errors_by_kind);
    // Back-off keeps a dead endpoint cheap: 4 connections, 10 ms doubling.
    assert!(report.main.stats.connects < 200, "connects {}", report.main.stats.connects);
}

#[test]
fn binary_writes_json_with_the_documented_fields() {
    let m = start_mock(MockConfig { store: true, ..MockConfig::default() });
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("out.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_toasty-loadgen"))
        .args([
            "--endpoint",
            &format!("http://{}", m.addr),
            "--create-bucket",
            "--prefill",
            "--verify",
        ])
        .args(["--keys", "100", "-c", "4", "--duration", "0.5", "--rate", "1000", "--no-progress"])
        .args(["--mix", "put=30,get=65,list=5", "--json", json_path.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "ak")
        .env("AWS_SECRET_ACCESS_KEY", "sk")
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&json_path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["schema"], "toasty-loadgen/1");
    assert_eq!(v["config"]["shape"], "open");
    let get = &v["ops"]["get"];
    let ops = get["ops"].as_u64().unwrap();
    assert!(ops > 200, "{ops}");
    assert_eq!(get["ops_error"], 0);
    let lat = &get["latency_us"];
    let (p50, p99, max) =
        (lat["p50"].as_u64().unwrap(), lat["p99"].as_u64().unwrap(), lat["max"].as_u64().unwrap());
    assert!(p50 >= 1 && p50 <= p99 && p99 <= max && max < 5_000_000, "{lat}");
    assert!(v["total"]["ops_per_s"].as_f64().unwrap() > 300.0);
    assert!(v["client_cpu"]["us_per_request"].as_f64().unwrap() > 0.0);
    assert!(v["open_loop"]["backlog_dropped"].is_u64());
    assert_eq!(v["prefill"]["ops_ok"], 100);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bodies_written_by_an_earlier_run_verify_as_valid() {
    // Fails if versions from another run were taken for this run's (a
    // second run would call every old body "never written", as it did
    // against moto before bodies carried a run id).
    let m = start_mock(MockConfig { store: true, ..MockConfig::default() });
    let mut write = config(m.addr);
    write.mix = Mix::parse("put=100").unwrap();
    write.duration = Some(Duration::from_millis(200));
    run(write, true).expect("write run");
    let mut read = config(m.addr);
    read.mix = Mix::parse("get=100").unwrap();
    read.verify = true;
    let report = run(read, false).expect("read run");
    let get = op(&report, OpKind::Get);
    assert!(get.ops_ok > 10);
    assert_eq!(get.ops_error, 0, "{:?}", report.main.stats.verify_failures.first());
    assert_eq!(get.ops_stale, 0);
}

#[test]
fn several_endpoints_share_the_connections() {
    // Fails if every connection went to the first endpoint.
    let (a, b) = (start_mock(MockConfig::default()), start_mock(MockConfig::default()));
    let mut cfg = config(a.addr);
    cfg.endpoints.push(toasty_loadgen::config::Endpoint::new(b.addr));
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.duration = Some(Duration::from_millis(300));
    let report = run(cfg, false).expect("run");
    assert_eq!(report.main.stats.total().ops_error, 0);
    let (na, nb) = (
        a.requests.load(std::sync::atomic::Ordering::Relaxed),
        b.requests.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(na > 50 && nb > 50, "{na} / {nb}");
    // Connections are spread round-robin: 2 and 2 of the 4 (more only
    // if one was replaced). (Not the
    // request ratio: each mock is one thread, and under a loaded CI box one
    // got 2,456 requests to the other's 7,569 with the connections even.)
    let (ca, cb) = (
        a.connections.load(std::sync::atomic::Ordering::Relaxed),
        b.connections.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(ca >= 2 && cb >= 2, "connections per endpoint: {ca} / {cb}");
}

#[test]
fn slow_responses_time_out_and_the_connection_is_replaced() {
    // Fails if a request could hang past --timeout, or if a timed-out
    // connection were reused (its late response would be read as the
    // answer to the next request).
    let m = start_mock(MockConfig { delay: Duration::from_millis(300), ..MockConfig::default() });
    let mut cfg = config(m.addr);
    cfg.mix = Mix::parse("get=100").unwrap();
    cfg.connections = 2;
    cfg.timeout = Duration::from_millis(100);
    cfg.duration = Some(Duration::from_millis(500));
    let err = setup::ensure_bucket(&cfg, false).unwrap_err();
    assert!(err.contains("no response within"), "{err}");
    let report = run(cfg, false).expect("run");
    let get = op(&report, OpKind::Get);
    assert_eq!(get.ops_ok, 0);
    assert!(get.errors_by_kind[1] >= 6, "timeouts {:?}", get.errors_by_kind);
    assert_eq!(get.ops_error, get.errors_by_kind[1]);
    assert!(
        report.main.stats.connects >= get.errors_by_kind[1],
        "connects {}",
        report.main.stats.connects
    );
}

mod tls_server {
    //! A blocking TLS responder (thread per connection, rustls + a
    //! self-signed rcgen certificate) for the https:// tests.
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::sync::Arc;

    pub struct Server {
        pub addr: SocketAddr,
        pub cert_pem: PathBuf,
    }

    pub fn start(name: &str) -> Server {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = Arc::new(config);
        let cert_pem =
            std::env::temp_dir().join(format!("loadgen-{name}-{}.pem", std::process::id()));
        std::fs::write(&cert_pem, ck.cert.pem()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || serve(config, tcp));
            }
        });
        Server { addr, cert_pem }
    }

    fn serve(config: Arc<rustls::ServerConfig>, tcp: TcpStream) {
        let Ok(conn) = rustls::ServerConnection::new(config) else { return };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut input = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => input.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&input[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while input.len() < end + 4 + length {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => input.extend_from_slice(&chunk[..n]),
                }
            }
            input.drain(..end + 4 + length);
            let body = if head.starts_with("GET ") { vec![b'x'; 3000] } else { Vec::new() };
            let mut response =
                format!("HTTP/1.1 200 OK\r\nETag: \"t\"\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
            response.extend_from_slice(&body);
            if tls.write_all(&response).is_err() {
                return;
            }
        }
    }
}

fn tls_config(ca: Option<&std::path::Path>, insecure: bool, addr: SocketAddr) -> Config {
    let mut cfg = config(addr);
    cfg.tls = Some(toasty_loadgen::tls::client_config(ca, insecure).unwrap());
    cfg.mix = Mix::parse("put=50,get=50").unwrap();
    cfg.size = SizeDist::parse("uniform:1KiB-600KiB").unwrap();
    cfg.duration = Some(Duration::from_millis(400));
    cfg
}

#[test]
fn https_endpoints_work_with_a_ca_file_or_insecure() {
    // Fails if TLS bodies stall (large PUTs go through rustls in pieces),
    // if responses are lost in rustls's buffers, or if the setup client
    // cannot speak TLS.
    let server = tls_server::start("ok");
    for (ca, insecure) in [(Some(server.cert_pem.as_path()), false), (None, true)] {
        let cfg = tls_config(ca, insecure, server.addr);
        setup::ensure_bucket(&cfg, false).expect("setup over TLS");
        let report = run(cfg, false).expect("run");
        let total = report.main.stats.total();
        assert_eq!(total.ops_error, 0, "{:?}", total.errors_by_kind);
        assert!(op(&report, OpKind::Put).ops_ok > 5 && op(&report, OpKind::Get).ops_ok > 5);
        assert_eq!(op(&report, OpKind::Get).payload_bytes, op(&report, OpKind::Get).ops_ok * 3000);
        assert!(report.main.stats.connects <= 4, "sessions are kept alive");
    }
}

#[test]
fn https_with_the_wrong_ca_is_refused_and_says_why() {
    let server = tls_server::start("server");
    let other = tls_server::start("other");
    let cfg = tls_config(Some(other.cert_pem.as_path()), false, server.addr);
    let err = setup::ensure_bucket(&cfg, false).unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    let report = run(cfg, false).expect("run");
    let total = report.main.stats.total();
    assert_eq!(total.ops_ok, 0);
    assert!(
        total.errors_by_kind[3] > 0,
        "TLS failures are protocol errors: {:?}",
        total.errors_by_kind
    );
}
