//! The worker's request building and response handling.

use super::*;
use crate::conn::{advance_body, body_chunks, CAPTURE_BYTES_MAX};
use crate::s3::error_summary;
use crate::stats::ALL_ERROR_KINDS;
use std::io::Read;

impl<'s> Worker<'s> {
    /// Writes the request for the op's current step into the connection's
    /// buffers (head signed, body described, not yet sent).
    pub(super) fn build_request(&mut self, ci: usize) {
        let cfg = self.cfg;
        let conn = &mut self.conns[ci];
        // A copy (plain data), so the connection's buffers can be borrowed.
        let op = conn.op.expect("an op is assigned before its request");
        let (key_id, version, len) = (op.key_id, op.version, op.size_bytes);
        let spec = BodySpec { key_id, version, run_id: self.shared.run_id, len };
        conn.head_out.clear();
        conn.head_sent = 0;
        conn.head_request = op.kind == OpKind::Head;
        conn.capture.clear();
        conn.capture_on = matches!(op.step, Step::CreateUpload | Step::CompleteUpload);
        conn.check = None;
        conn.body_in_bytes = 0;
        conn.rx_realtime_ns = None;
        conn.scratch.clear();
        if op.kind == OpKind::List {
            s3::bucket_path(&mut conn.path, &cfg.bucket);
        } else {
            s3::object_path(&mut conn.path, &cfg.bucket, &cfg.key_prefix, op.key_id);
        }
        let (method, body) = method_and_body(cfg, &op, spec, conn);
        let mut query = [("", ""); 3];
        let query_len = match (op.kind, op.step) {
            (OpKind::List, _) => {
                s3::push_decimal(&mut conn.scratch, cfg.list_max_keys as u64, 0);
                let max_keys = std::str::from_utf8(&conn.scratch).unwrap_or("100");
                query = [("list-type", "2"), ("max-keys", max_keys), ("prefix", &cfg.key_prefix)];
                3
            }
            (OpKind::Multipart, Step::CreateUpload) => {
                query[0] = ("uploads", "");
                1
            }
            (OpKind::Multipart, Step::UploadPart(n)) => {
                s3::push_decimal(&mut conn.scratch, n as u64, 0);
                query[0] = ("partNumber", std::str::from_utf8(&conn.scratch).unwrap_or("1"));
                query[1] = ("uploadId", &conn.upload_id);
                2
            }
            (OpKind::Multipart, Step::CompleteUpload) => {
                query[0] = ("uploadId", &conn.upload_id);
                1
            }
            _ => 0,
        };
        let content_length = match body {
            BodyOut::Object { pos, end, .. } => Some(end - pos),
            BodyOut::Buffer { .. } => Some(conn.body_buf.len() as u64),
            BodyOut::None => (method == "POST" || method == "PUT").then_some(0),
        };
        let sha =
            cfg.signed_payload.then(|| payload_sha256(&body, &conn.body_buf, &self.shared.pattern));
        let sha_str = sha.as_ref().map(|h| std::str::from_utf8(h).unwrap_or(""));
        let req = Request {
            method,
            path: &conn.path,
            query: &query[..query_len],
            content_length,
            payload_sha256: sha_str,
        };
        let host = &cfg.endpoints[conn.endpoint].host;
        s3::write_head(&mut conn.head_out, &mut self.signer, host, self.clock.now(), &req);
        conn.body_out = body;
    }

    /// Makes room at the end of the read buffer; false if the connection
    /// was closed because a response head does not fit.
    fn make_room(&mut self, ci: usize, now: Instant) -> bool {
        let conn = &mut self.conns[ci];
        if conn.in_start == conn.in_end {
            conn.in_start = 0;
            conn.in_end = 0;
        } else if conn.in_end == conn.in_buf.len() {
            if conn.in_start == 0 {
                self.protocol_error(ci, "response head does not fit the read buffer", now);
                return false;
            }
            conn.in_buf.copy_within(conn.in_start..conn.in_end, 0);
            conn.in_end -= conn.in_start;
            conn.in_start = 0;
        }
        true
    }

    pub(super) fn on_readable(&mut self, ci: usize, now: Instant) {
        if self.conns[ci].tls.is_some() {
            return self.on_readable_tls(ci, now);
        }
        loop {
            if !self.make_room(ci, now) {
                return;
            }
            let conn = &mut self.conns[ci];
            let Some(stream) = conn.stream.as_mut() else { return };
            let space = conn.in_buf.len() - conn.in_end;
            let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
            match crate::rxtime::recv(fd, &mut conn.in_buf[conn.in_end..]) {
                Ok((0, _)) => return self.on_eof(ci, now),
                Ok((n, stamp)) => {
                    conn.in_end += n;
                    if stamp.is_some() {
                        conn.rx_realtime_ns = stamp;
                    }
                    // A short read drained the socket: with edge-triggered
                    // epoll the next arrival wakes us again, so there is no
                    // need for the extra read that would return EAGAIN.
                    if !self.process_input(ci, now) || n < space {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.broken(ci, &format!("read failed: {e}"), now),
            }
        }
    }

    /// TLS: socket → rustls until the socket is drained (edge-triggered, and
    /// rustls reads in pieces), then plaintext → the read buffer → parser.
    fn on_readable_tls(&mut self, ci: usize, now: Instant) {
        loop {
            let conn = &mut self.conns[ci];
            let (Some(stream), Some(tls)) = (conn.stream.as_ref(), conn.tls.as_mut()) else {
                return;
            };
            let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
            let mut reader = crate::tls::StampedReader { fd, stamp: &mut conn.rx_realtime_ns };
            let eof = match tls.read_tls(&mut reader) {
                Ok(n) => n == 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.broken(ci, &format!("read failed: {e}"), now),
            };
            if let Err(e) = tls.process_new_packets() {
                return self.protocol_error(ci, &format!("TLS: {e}"), now);
            }
            if !self.drain_plaintext(ci, now) {
                return;
            }
            if eof {
                return self.on_eof(ci, now);
            }
        }
        // Handshake messages (or a key update) may be waiting to go out.
        if self.conns[ci].tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.send(ci, now);
        }
    }

    /// Moves decrypted bytes into the read buffer and parses them. Returns
    /// false once the connection is closed.
    fn drain_plaintext(&mut self, ci: usize, now: Instant) -> bool {
        loop {
            if !self.make_room(ci, now) {
                return false;
            }
            let conn = &mut self.conns[ci];
            let Some(tls) = conn.tls.as_mut() else { return false };
            match tls.reader().read(&mut conn.in_buf[conn.in_end..]) {
                Ok(0) => {
                    // close_notify: the server ended the session cleanly.
                    self.on_eof(ci, now);
                    return false;
                }
                Ok(n) => {
                    conn.in_end += n;
                    if !self.process_input(ci, now) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    self.broken(ci, &format!("TLS: {e}"), now);
                    return false;
                }
            }
        }
    }

    /// Parses what is buffered. Returns false once the connection is closed.
    fn process_input(&mut self, ci: usize, now: Instant) -> bool {
        loop {
            let conn = &mut self.conns[ci];
            let input = &conn.in_buf[conn.in_start..conn.in_end];
            match &mut conn.recv {
                Recv::Idle if input.is_empty() => return true,
                Recv::Idle => {
                    self.protocol_error(ci, "bytes arrived with no request in flight", now);
                    return false;
                }
                Recv::Head => match http::parse_head(input, conn.head_request) {
                    Ok(None) => return true,
                    Ok(Some((head, n))) => {
                        conn.in_start += n;
                        on_head(conn, head, self.cfg.verify);
                    }
                    Err(e) => {
                        self.protocol_error(ci, &e.0, now);
                        return false;
                    }
                },
                Recv::Body { decoder, .. } => {
                    let pattern = &self.shared.pattern;
                    let (check, capture, capture_on, body_in) = (
                        &mut conn.check,
                        &mut conn.capture,
                        conn.capture_on,
                        &mut conn.body_in_bytes,
                    );
                    let fed = decoder.feed(input, &mut |bytes: &[u8]| {
                        *body_in += bytes.len() as u64;
                        if let Some(c) = check.as_mut() {
                            c.feed(pattern, bytes);
                        }
                        if capture_on && capture.len() < CAPTURE_BYTES_MAX {
                            capture.extend_from_slice(
                                &bytes[..bytes.len().min(CAPTURE_BYTES_MAX - capture.len())],
                            );
                        }
                    });
                    let consumed = match fed {
                        Ok(n) => n,
                        Err(e) => {
                            self.protocol_error(ci, &e.0, now);
                            return false;
                        }
                    };
                    conn.in_start += consumed;
                    if !decoder.is_done() {
                        return true;
                    }
                    let Recv::Body { head, .. } = std::mem::replace(&mut conn.recv, Recv::Idle)
                    else {
                        unreachable!()
                    };
                    if !self.on_response(ci, head, now) {
                        return false;
                    }
                }
            }
        }
    }

    fn on_eof(&mut self, ci: usize, now: Instant) {
        let conn = &mut self.conns[ci];
        if let Recv::Body { decoder: decoder @ BodyDecoder::UntilEof, .. } = &mut conn.recv {
            let _ = decoder.on_eof();
            let Recv::Body { head, .. } = std::mem::replace(&mut conn.recv, Recv::Idle) else {
                unreachable!()
            };
            self.close(ci);
            self.on_response(ci, head, now);
        } else if conn.op.is_some() {
            self.broken(ci, "the server closed the connection mid-request", now);
        } else {
            // The server closed an idle keep-alive connection: reconnect
            // when it is next used; not an error.
            self.close(ci);
        }
    }

    /// A complete response for the op on `ci`. Returns false if the
    /// connection was closed.
    fn on_response(&mut self, ci: usize, head: http::ResponseHead, now: Instant) -> bool {
        if self.measuring {
            self.stats.requests += 1;
            self.stats.responses_stamped += self.conns[ci].rx_realtime_ns.is_some() as u64;
        }
        let conn = &mut self.conns[ci];
        let Some(op) = conn.op.as_mut() else { return true };
        let (kind, step) = (op.kind, op.step);
        // When the response's last byte reached the socket (kernel stamp),
        // else now.
        let done_at = match conn.rx_realtime_ns {
            Some(ns) => self.clock_map.instant(ns, op.sent_at, now),
            None => now,
        };
        // A response before the whole request left (e.g. an early 403 to a
        // big PUT) leaves the rest of the body in the stream: close it.
        let open = !head.close && conn.stream.is_some() && conn.request_sent();
        if !open {
            self.close(ci);
        }
        let status = head.status;
        if !(200..300).contains(&status) {
            let outcome =
                if status == 404 && matches!(kind, OpKind::Get | OpKind::Head | OpKind::Delete) {
                    Outcome::NotFound
                } else {
                    self.report_http_error(ci, status);
                    Outcome::Error { kind: ErrorKind::Http, status: Some(status) }
                };
            self.finish_op(ci, outcome, done_at);
            return open;
        }
        match step {
            Step::Single => {
                let outcome = self.single_done(ci);
                self.finish_op(ci, outcome, done_at);
            }
            Step::CreateUpload | Step::UploadPart(_) | Step::CompleteUpload => {
                self.multipart_step_done(ci, &head, now, done_at)
            }
        }
        open && self.conns[ci].stream.is_some()
    }

    fn single_done(&mut self, ci: usize) -> Outcome {
        let conn = &mut self.conns[ci];
        let op = conn.op.as_mut().expect("on_response checked");
        match op.kind {
            OpKind::Put => op.payload_bytes = op.size_bytes,
            OpKind::Get => op.payload_bytes = conn.body_in_bytes,
            _ => {}
        }
        if op.kind != OpKind::Get || !self.cfg.verify {
            return Outcome::Ok { stale: false };
        }
        let (key_id, acked_at_send) = (op.key_id, op.acked_at_send);
        let result = match conn.check.as_ref() {
            Some(check) => check.finish(),
            None => return Outcome::Ok { stale: false },
        };
        let issued = self.shared.issued[key_id as usize].load(Ordering::Relaxed);
        match result {
            // Written by another run: valid; stale if this run had already
            // acknowledged a write of the key when the GET was sent.
            Ok(spec) if spec.run_id != self.shared.run_id => {
                Outcome::Ok { stale: acked_at_send > 0 }
            }
            Ok(spec) if spec.version > issued => self.verify_failed(
                key_id,
                4,
                format!("version {} was never written (highest started: {issued})", spec.version),
            ),
            Ok(spec) => Outcome::Ok { stale: spec.version < acked_at_send },
            Err(f) => self.verify_failed(key_id, f.offset, f.reason),
        }
    }

    fn verify_failed(&mut self, key_id: u64, offset: u64, reason: String) -> Outcome {
        let key = s3::key_name(&self.cfg.key_prefix, key_id);
        if self.stats.verify_failures.len() < VERIFY_FAILURES_KEPT_MAX {
            let prefix = crate::run::stderr_prefix();
            eprintln!("{prefix}verify failure: key {key} at byte {offset}: {reason}");
            self.stats.verify_failures.push(VerifyReport { key, offset, reason });
        }
        Outcome::Error { kind: ErrorKind::Verify, status: None }
    }

    fn multipart_step_done(
        &mut self,
        ci: usize,
        head: &http::ResponseHead,
        now: Instant,
        done_at: Instant,
    ) {
        let conn = &mut self.conns[ci];
        let op = conn.op.as_mut().expect("on_response checked");
        match op.step {
            Step::CreateUpload => {
                let Some(id) = http::xml_text(&conn.capture, "UploadId")
                    .and_then(|b| std::str::from_utf8(b).ok())
                else {
                    return self.protocol_error(
                        ci,
                        "CreateMultipartUpload answered without an UploadId",
                        now,
                    );
                };
                conn.upload_id.clear();
                conn.upload_id.push_str(id);
                conn.parts_xml.clear();
                op.step = Step::UploadPart(1);
            }
            Step::UploadPart(n) => {
                if head.etag().is_empty() {
                    return self.protocol_error(ci, "UploadPart answered without an ETag", now);
                }
                let xml = &mut conn.parts_xml;
                xml.extend_from_slice(b"<Part><PartNumber>");
                s3::push_decimal(xml, n as u64, 0);
                xml.extend_from_slice(b"</PartNumber><ETag>");
                xml.extend_from_slice(head.etag());
                xml.extend_from_slice(b"</ETag></Part>");
                let part_start = (n as u64 - 1) * self.cfg.part_size_bytes;
                op.payload_bytes += (op.size_bytes - part_start).min(self.cfg.part_size_bytes);
                op.step =
                    if n >= op.parts { Step::CompleteUpload } else { Step::UploadPart(n + 1) };
            }
            Step::CompleteUpload | Step::Single => {
                // S3 may answer 200 and put the error in the body.
                if http::find(&conn.capture, b"<Error>").is_some() {
                    self.report_http_error(ci, 200);
                    return self.finish_op(
                        ci,
                        Outcome::Error { kind: ErrorKind::Http, status: Some(200) },
                        done_at,
                    );
                }
                return self.finish_op(ci, Outcome::Ok { stale: false }, done_at);
            }
        }
        self.issue(ci, now);
    }

    fn report_http_error(&self, ci: usize, status: u16) {
        let conn = &self.conns[ci];
        let summary = error_summary(status, &conn.capture);
        let code = http::xml_text(&conn.capture, "Code")
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let label = op_label(conn);
        let what = format!("http:{status}:{code}");
        self.shared.print_once(
            &what,
            &format!("{} {label}: {summary}", self.cfg.endpoints[conn.endpoint].url),
        );
    }

    fn protocol_error(&mut self, ci: usize, detail: &str, now: Instant) {
        let msg = format!(
            "{} {}: bad response: {detail}",
            self.cfg.endpoints[self.conns[ci].endpoint].url,
            op_label(&self.conns[ci])
        );
        self.shared.print_once(&format!("protocol:{detail}"), &msg);
        self.close(ci);
        self.finish_op(ci, Outcome::Error { kind: ErrorKind::Protocol, status: None }, now);
    }

    /// The connection broke (reset, EOF, write error).
    pub(super) fn broken(&mut self, ci: usize, detail: &str, now: Instant) {
        let msg = format!(
            "{} {}: {detail}",
            self.cfg.endpoints[self.conns[ci].endpoint].url,
            op_label(&self.conns[ci])
        );
        self.shared.print_once(&format!("connection:{detail}"), &msg);
        self.close(ci);
        self.finish_op(ci, Outcome::Error { kind: ErrorKind::Connection, status: None }, now);
    }

    pub(super) fn close(&mut self, ci: usize) {
        let conn = &mut self.conns[ci];
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.reset_io();
    }

    /// Ends the op on `ci` (if any) and records it.
    pub(super) fn finish_op(&mut self, ci: usize, outcome: Outcome, now: Instant) {
        let conn = &mut self.conns[ci];
        let Some(op) = conn.op.take() else { return };
        self.in_flight -= 1;
        if conn.retry_at.is_none() {
            self.idle.push(ci);
        }
        let latency_us =
            now.saturating_duration_since(op.intended.unwrap_or(op.sent_at)).as_micros() as u64;
        let service_us = now.saturating_duration_since(op.sent_at).as_micros() as u64;
        let writes = matches!(op.kind, OpKind::Put | OpKind::Multipart);
        if writes && matches!(outcome, Outcome::Ok { .. }) {
            self.shared.acked[op.key_id as usize].fetch_max(op.version, Ordering::Relaxed);
        }
        self.interval.ops += 1;
        match outcome {
            Outcome::Error { .. } => self.interval.errors += 1,
            _ => {
                self.interval.payload_bytes += op.payload_bytes;
                record_us(&mut self.interval.latency_us, latency_us);
            }
        }
        if now < self.plan.measure_from {
            return;
        }
        self.last_completion = Some(now);
        let s = self.stats.op(op.kind);
        match outcome {
            Outcome::Ok { stale } => {
                s.ops_ok += 1;
                s.ops_stale += stale as u64;
                s.payload_bytes += op.payload_bytes;
            }
            Outcome::NotFound => s.ops_not_found += 1,
            Outcome::Error { kind, status } => {
                s.ops_error += 1;
                let i =
                    ALL_ERROR_KINDS.iter().position(|k| *k == kind).expect("every kind is listed");
                s.errors_by_kind[i] += 1;
                if let Some(status) = status {
                    *s.errors_by_status.entry(status).or_default() += 1;
                }
                return;
            }
        }
        record_us(&mut s.latency_us, latency_us);
        record_us(&mut s.service_us, service_us);
    }
}

/// A response head arrived: set up what its body goes through.
fn on_head(conn: &mut Conn, head: http::ResponseHead, verify: bool) {
    let ok = (200..300).contains(&head.status);
    let verify_get = verify && conn.op.as_ref().is_some_and(|op| op.kind == OpKind::Get);
    if ok && verify_get {
        let length = match head.body {
            http::BodyKind::Length(n) => Some(n),
            _ => None,
        };
        conn.check = conn.op.as_ref().map(|op| BodyCheck::new(op.key_id, length));
    }
    conn.capture_on |= !ok;
    conn.recv = Recv::Body { decoder: BodyDecoder::new(head.body), head };
}

/// The method and body of the op's current step.
fn method_and_body(
    cfg: &Config,
    op: &OpState,
    spec: BodySpec,
    conn: &mut Conn,
) -> (&'static str, BodyOut) {
    let object = |pos: u64, end: u64| BodyOut::Object { spec, header: spec.header(), pos, end };
    match (op.kind, op.step) {
        (OpKind::Put, _) => ("PUT", object(0, op.size_bytes)),
        (OpKind::Get | OpKind::List, _) => ("GET", BodyOut::None),
        (OpKind::Head, _) => ("HEAD", BodyOut::None),
        (OpKind::Delete, _) => ("DELETE", BodyOut::None),
        (OpKind::Multipart, Step::CreateUpload | Step::Single) => ("POST", BodyOut::None),
        (OpKind::Multipart, Step::UploadPart(n)) => {
            let start = (n as u64 - 1) * cfg.part_size_bytes;
            ("PUT", object(start, (start + cfg.part_size_bytes).min(op.size_bytes)))
        }
        (OpKind::Multipart, Step::CompleteUpload) => {
            conn.body_buf.clear();
            conn.body_buf.extend_from_slice(b"<CompleteMultipartUpload>");
            conn.body_buf.extend_from_slice(&conn.parts_xml);
            conn.body_buf.extend_from_slice(b"</CompleteMultipartUpload>");
            ("POST", BodyOut::Buffer { pos: 0 })
        }
    }
}

/// Hex SHA-256 of a request body (for --signed-payload), streamed from the
/// pattern without materialising the body.
fn payload_sha256(
    body: &BodyOut,
    buf: &[u8],
    pattern: &Pattern,
) -> [u8; sigv4::SIGNATURE_HEX_BYTES] {
    let mut cursor = *body;
    let mut hasher = Sha256::new();
    loop {
        let (first, second) = body_chunks(&cursor, buf, pattern);
        if first.is_empty() {
            break;
        }
        hasher.update(first);
        hasher.update(second);
        let n = (first.len() + second.len()) as u64;
        advance_body(&mut cursor, n);
    }
    sigv4::hex(&hasher.finalize())
}
