//! Object operations: PutObject (streamed into chunks), GetObject and
//! HeadObject (conditions, ranges, streamed from chunks), DeleteObject,
//! CopyObject.
//!
//! Object metadata lives in `ObjectMeta`: the ETag, the checksums the
//! client sent (CRC32 and CRC32C in their own fields, CRC64NVME and SHA-256
//! as reserved user-metadata entries), and user metadata plus the standard
//! headers (`cache-control`, `content-disposition`, `content-encoding`,
//! `content-language`, `expires`) as (lower-case name, value) pairs sorted
//! by name; S3's `x-amz-meta-*` names keep their prefix, so the two never
//! collide.

use std::collections::VecDeque;
use std::rc::Rc;

use super::conn::{Body, HttpConn};
use super::{client_error, limit_error, unexpected, Responder, S3Context};
use crate::client::{ClientError, Handle};
use crate::http::checksum::{
    base64_encode, hex_lower, parse_content_md5, verify_checksum, verify_content_md5,
    ChecksumAlgorithm, Checksummer,
};
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::{RequestHead, CONTINUE};
use crate::http::router::CopySource;
use crate::http::time::{format_http_date, format_iso8601_ms, parse_http_date};
use crate::http::xml::write_copy_result;
use crate::shard::frames;
use crate::vsr::message::HEADER_SIZE;
use crate::vsr::state_machine::{
    ChunkRef, DeleteCondition, Object, ObjectMeta, PutCondition, Reply, Request,
    USER_METADATA_SIZE_MAX,
};

/// Chunks of one upload or download in flight at once.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Body bytes read, then copied into the chunk's frame and handed to the
/// MD5 runner, at a time: hashing starts while the rest of a chunk still
/// arrives, so a shard's uploads share vector passes (md5_pool).
const PIECE: usize = 128 << 10;
/// Standard headers kept with an object and returned on GET.
const STORED_HEADERS: [&str; 5] =
    ["cache-control", "content-disposition", "content-encoding", "content-language", "expires"];
/// Reserved metadata names for checksums without a field of their own.
const META_CRC64NVME: &[u8] = b"x-toasty-checksum-crc64nvme";
const META_SHA256: &[u8] = b"x-toasty-checksum-sha256";
/// A multipart object's composite checksum: `<algorithm> <base64>-<parts>`.
pub(super) const META_COMPOSITE: &[u8] = b"x-toasty-checksum-composite";
/// The checksum algorithm a multipart upload was created with (marker).
pub(super) const META_UPLOAD_ALGORITHM: &[u8] = b"x-toasty-checksum-algorithm";

/// The checksums stored with an object (or a part): (algorithm, base64).
pub(super) fn stored_checksums(meta: &ObjectMeta) -> Vec<(ChecksumAlgorithm, String)> {
    let mut found = Vec::new();
    if let Some(crc) = meta.checksum_crc32 {
        found.push((ChecksumAlgorithm::Crc32, base64_encode(&crc.to_be_bytes())));
    }
    if let Some(crc) = meta.checksum_crc32c {
        found.push((ChecksumAlgorithm::Crc32c, base64_encode(&crc.to_be_bytes())));
    }
    for (stored, algorithm) in
        [(META_CRC64NVME, ChecksumAlgorithm::Crc64Nvme), (META_SHA256, ChecksumAlgorithm::Sha256)]
    {
        if let Some((_, value)) = meta.user_metadata.iter().find(|(n, _)| n == stored) {
            found.push((algorithm, String::from_utf8_lossy(value).into_owned()));
        }
    }
    found
}

/// An object's data as uploaded.
pub(super) struct Uploaded {
    pub size: u64,
    pub md5: [u8; 16],
    pub checksums: Vec<(ChecksumAlgorithm, crate::http::checksum::ChecksumValue)>,
    pub inline: Option<Vec<u8>>,
    pub chunks: Vec<ChunkRef>,
}

/// The checksum algorithms a request asks for (header values or trailers).
pub(super) fn checksums_requested(head: &RequestHead<'_>) -> Vec<ChecksumAlgorithm> {
    let mut algorithms: Vec<ChecksumAlgorithm> = ChecksumAlgorithm::ALL
        .into_iter()
        .filter(|algorithm| head.header(algorithm.header_name()).is_some())
        .collect();
    for name in head.header_str("x-amz-trailer").unwrap_or("").split(',') {
        if let Some(algorithm) = ChecksumAlgorithm::from_header_name(name.trim()) {
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
    }
    if let Some(name) = head.header_str("x-amz-sdk-checksum-algorithm") {
        if let Some(algorithm) = ChecksumAlgorithm::from_name(name.trim()) {
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
    }
    algorithms
}

/// Verify Content-MD5 and every checksum the client sent (headers first,
/// else trailers).
pub(super) fn verify_upload(
    head: &RequestHead<'_>,
    body: &Body,
    uploaded: &Uploaded,
) -> Result<(), S3Error> {
    if let Some(value) = head.header("content-md5") {
        verify_content_md5(value, &uploaded.md5)?;
    }
    for (algorithm, value) in &uploaded.checksums {
        let sent = head.header(algorithm.header_name()).map(<[u8]>::to_vec).or_else(|| {
            body.trailers()
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(algorithm.header_name()))
                .map(|(_, v)| v.as_bytes().to_vec())
        });
        if let Some(sent) = sent {
            verify_checksum(*algorithm, &sent, value)?;
        }
    }
    Ok(())
}

/// The body's declared payload length, if known in advance.
fn declared_length(head: &RequestHead<'_>) -> Result<Option<u64>, S3Error> {
    if let Some(value) = head.header_str("x-amz-decoded-content-length") {
        return value.trim().parse().map(Some).map_err(|_| {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "bad x-amz-decoded-content-length")
        });
    }
    match head.body_framing()? {
        crate::http::request::BodyFraming::Length(length) => Ok(Some(length)),
        crate::http::request::BodyFraming::Empty => Ok(Some(0)),
        crate::http::request::BodyFraming::Chunked => Ok(None),
    }
}

/// Stream a request body into chunks of `group` (inline if small and
/// `inline_allowed`), hashing it on the way.
pub(super) async fn upload(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    group: u32,
    inline_allowed: bool,
) -> Result<Uploaded, S3Error> {
    let config = &context.config;
    let declared = declared_length(head)?;
    if declared.is_some_and(|length| length > config.object_size_max()) {
        return Err(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!("objects are limited to {} bytes here", config.object_size_max()),
        ));
    }
    // Large objects take larger chunks so their chunk list fits.
    let chunk_size = match declared {
        Some(length) => {
            let needed = length.div_ceil(config.chunks_per_object_max as u64) as usize;
            needed.next_multiple_of(1 << 20).clamp(config.chunk_size, config.chunk_size_max)
        }
        None => config.chunk_size,
    };
    if head.expects_continue() {
        conn.write_all(CONTINUE).await.map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout))?;
    }
    let algorithms = checksums_requested(head);
    let mut checksummers: Vec<Checksummer> =
        algorithms.iter().map(|a| Checksummer::new(*a)).collect();
    let mut md5 = context.md5.stream();
    let mut chunks = Vec::new();
    let mut in_flight: VecDeque<(
        Result<Handle, ClientError>,
        u128,
        u32,
        glommio::sync::Permit<'_>,
    )> = VecDeque::new();
    let mut size = 0u64;
    let mut ended = false;
    // Decoded bytes of a body `read_into` cannot read in place.
    let mut scratch = Vec::new();
    while !ended {
        let permit = context
            .put_budget
            .acquire_permit(chunk_size as u64)
            .await
            .map_err(|_| S3Error::new(S3ErrorCode::ServiceUnavailable))?;
        // This chunk's length when the body's is declared, else at most a
        // chunk (a shorter last one is found by the body ending).
        let want = match declared {
            Some(declared) => (declared - size).min(chunk_size as u64) as usize,
            None => chunk_size,
        };
        // The chunk's message frame, filled piece by piece after the header
        // room straight from the socket where the body's framing allows
        // (`Body::read_into`): no copy of the chunk into a message after.
        let mut frame: Option<Rc<[u8]>> = None;
        let mut filled = 0usize;
        // Where this chunk's bytes not yet handed to the MD5 pool start:
        // once a piece is left to hash from the sent frame, so are the
        // rest of the chunk (the hash takes bytes in order).
        let mut unhashed_from: Option<usize> = None;
        loop {
            // An object's first piece may be all of it: its inline data.
            let first = size == 0;
            let cap = if first {
                want.min(PIECE.max(config.inline_size_max))
            } else {
                (want - filled).min(PIECE)
            };
            // `size` already counts this chunk's earlier pieces.
            let at_declared_end = declared.is_some_and(|d| size + cap as u64 == d);
            let frame = frame.get_or_insert_with(|| frames::take(HEADER_SIZE + want));
            let Some(bytes) = Rc::get_mut(frame) else {
                unreachable!("the upload holds the only reference to its frame")
            };
            let target = &mut bytes[HEADER_SIZE + filled..][..cap];
            let read;
            (read, ended) = read_piece(conn, body, target, &mut scratch, at_declared_end).await?;
            if read == 0 {
                break;
            }
            let piece = &target[..read];
            checksummers.iter_mut().for_each(|c| c.update(piece));
            if first && ended && inline_allowed && read <= config.inline_size_max {
                size = read as u64;
                if declared.is_some_and(|d| d != size) {
                    return Err(S3Error::new(S3ErrorCode::IncompleteBody));
                }
                let inline = piece.to_vec();
                if context.md5.hashes_as_they_come() {
                    md5.update_now(piece);
                } else {
                    // Other PUTs are in flight: the small bodies that
                    // arrive in one turn share the pool's vector pass
                    // (perf/results/2026-12-04/inline-md5-pool/).
                    md5.feed_frame(frame.clone(), HEADER_SIZE..HEADER_SIZE + read).await;
                }
                // Back to the pool (it is the only holder once this returns).
                frames::track(frame);
                let checksums = algorithms
                    .iter()
                    .copied()
                    .zip(checksummers.into_iter().map(Checksummer::finalize))
                    .collect();
                return Ok(Uploaded {
                    size,
                    md5: md5.finish().await,
                    checksums,
                    inline: Some(inline),
                    chunks,
                });
            }
            // The hash runs behind (md5_pool), so the shard's uploads share
            // its vector passes: over a copy of each piece as it comes when
            // it would be hashed at once, else from the sent frame.
            if unhashed_from.is_none() && context.md5.hashes_as_they_come() {
                let mut hashed = context.md5.buffer(read);
                hashed.extend_from_slice(piece);
                md5.feed(hashed).await;
            } else {
                unhashed_from.get_or_insert(filled);
            }
            filled += read;
            size += read as u64;
            if ended || filled == want {
                break;
            }
        }
        let Some(mut frame) = frame else { break };
        if filled == 0 {
            // Nothing read (an empty body, or one ending on a chunk
            // boundary): the frame goes back to the pool unused.
            frames::track(&frame);
            break;
        }
        if filled < want {
            if declared.is_some() {
                // The body ended before its declared length.
                return Err(S3Error::new(S3ErrorCode::IncompleteBody));
            }
            // An undeclared length's short last chunk: a frame of its size.
            let mut exact = frames::take(HEADER_SIZE + filled);
            let Some(bytes) = Rc::get_mut(&mut exact) else {
                unreachable!("frames::take returns a unique frame")
            };
            bytes[HEADER_SIZE..].copy_from_slice(&frame[HEADER_SIZE..HEADER_SIZE + filled]);
            frames::track(&frame);
            frame = exact;
        }
        if chunks.len() + in_flight.len() >= config.chunks_per_object_max {
            return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
        }
        let id = chunk_id();
        let handle = context.driver.chunk_write_frame_start(group, id, frame);
        if let Some(from) = unhashed_from {
            match context.driver.chunk_frame(&handle) {
                Some(sent) => md5.feed_frame(sent, HEADER_SIZE + from..HEADER_SIZE + filled).await,
                // A write that did not start fails the upload at `chunk_done`.
                None if handle.is_err() => {}
                // Never a wrong ETag: a started write always holds its frame.
                None => return Err(S3Error::new(S3ErrorCode::InternalError)),
            }
        }
        in_flight.push_back((handle, id, filled as u32, permit));
        while in_flight.len() >= CHUNKS_IN_FLIGHT {
            chunks.push(chunk_done(context, in_flight.pop_front()).await?);
        }
        if declared.is_some_and(|d| d == size) {
            // Everything declared is here (and `read_piece` saw the end).
            ended = true;
        }
    }
    while let Some(entry) = in_flight.pop_front() {
        chunks.push(chunk_done(context, Some(entry)).await?);
    }
    if let Some(declared) = declared {
        if declared != size {
            return Err(S3Error::new(S3ErrorCode::IncompleteBody));
        }
    }
    let checksums = algorithms
        .iter()
        .copied()
        .zip(checksummers.into_iter().map(Checksummer::finalize))
        .collect();
    let inline = (chunks.is_empty() && inline_allowed).then(Vec::new);
    Ok(Uploaded { size, md5: md5.finish().await, checksums, inline, chunks })
}

/// Fill `piece` with body bytes; returns (bytes read, whether the body
/// ended). A piece that completes the declared length also reads the end
/// (so a signed body's final checks run and a longer body is refused).
async fn read_piece(
    conn: &mut HttpConn,
    body: &mut Body,
    piece: &mut [u8],
    scratch: &mut Vec<u8>,
    at_declared_end: bool,
) -> Result<(usize, bool), S3Error> {
    let read = body.read_into(conn, piece, scratch).await?;
    if read < piece.len() {
        return Ok((read, true));
    }
    if at_declared_end || piece.is_empty() {
        if body.read_into(conn, &mut [0u8; 1], scratch).await? != 0 {
            return Err(S3Error::new(S3ErrorCode::IncompleteBody));
        }
        return Ok((read, true));
    }
    Ok((read, false))
}

async fn chunk_done(
    context: &S3Context,
    entry: Option<(Result<Handle, ClientError>, u128, u32, glommio::sync::Permit<'_>)>,
) -> Result<ChunkRef, S3Error> {
    let Some((handle, id, length, permit)) = entry else { unreachable!("called with an entry") };
    let crc32c = context.driver.chunk_written(handle).await.map_err(client_error)?;
    drop(permit);
    Ok(ChunkRef { id: id.to_le_bytes(), length, crc32c })
}

/// A fresh chunk id: 128 random bits (ids name immutable content).
pub(super) fn chunk_id() -> u128 {
    crate::shard::random::random_u128() | 1
}

/// Content type and the metadata pairs a request sets on an object.
pub(super) fn metadata_from_headers(head: &RequestHead<'_>) -> Result<ObjectMeta, S3Error> {
    let mut meta = ObjectMeta {
        content_type: head.header("content-type").unwrap_or(b"binary/octet-stream").to_vec(),
        ..ObjectMeta::default()
    };
    for header in &head.headers {
        let name = header.name.to_ascii_lowercase();
        let stored = STORED_HEADERS.contains(&name.as_str());
        if !stored && !name.starts_with("x-amz-meta-") {
            continue;
        }
        let mut value = header.value.to_vec();
        if name == "content-encoding" {
            // aws-chunked is transport framing, not the object's encoding.
            let text = String::from_utf8_lossy(&value).to_string();
            let kept: Vec<&str> = text
                .split(',')
                .map(str::trim)
                .filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty())
                .collect();
            if kept.is_empty() {
                continue;
            }
            value = kept.join(",").into_bytes();
        }
        meta.user_metadata.retain(|(n, _): &(Vec<u8>, Vec<u8>)| n != name.as_bytes());
        meta.user_metadata.push((name.into_bytes(), value));
    }
    meta.user_metadata.sort();
    if meta.user_metadata_size() > USER_METADATA_SIZE_MAX {
        return Err(S3Error::new(S3ErrorCode::MetadataTooLarge));
    }
    if meta.content_type.len() > crate::vsr::state_machine::CONTENT_TYPE_SIZE_MAX {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Content-Type too long"));
    }
    Ok(meta)
}

/// Put the uploaded data and checksums into `meta`.
pub(super) fn meta_fill(meta: &mut ObjectMeta, uploaded: Uploaded, etag: String) {
    meta.size = uploaded.size;
    meta.etag = etag.into_bytes();
    for (algorithm, value) in &uploaded.checksums {
        let bytes = value.as_bytes();
        match algorithm {
            ChecksumAlgorithm::Crc32 => {
                meta.checksum_crc32 = bytes.try_into().ok().map(u32::from_be_bytes)
            }
            ChecksumAlgorithm::Crc32c => {
                meta.checksum_crc32c = bytes.try_into().ok().map(u32::from_be_bytes)
            }
            ChecksumAlgorithm::Crc64Nvme => meta
                .user_metadata
                .push((META_CRC64NVME.to_vec(), base64_encode(bytes).into_bytes())),
            ChecksumAlgorithm::Sha256 => {
                meta.user_metadata.push((META_SHA256.to_vec(), base64_encode(bytes).into_bytes()))
            }
        }
    }
    meta.user_metadata.sort();
    meta.inline_data = uploaded.inline.unwrap_or_default();
    meta.chunks = uploaded.chunks;
}

fn put_condition(head: &RequestHead<'_>) -> Result<PutCondition, S3Error> {
    match (head.header("if-none-match"), head.header("if-match")) {
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-Match and If-None-Match together are not supported",
        )),
        (Some(value), None) if value.trim_ascii() == b"*" => Ok(PutCondition::IfNoneMatchStar),
        (Some(_), None) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "PutObject supports If-None-Match: * only",
        )),
        (None, Some(etag)) => Ok(PutCondition::IfMatch(etag_normalize(etag))),
        (None, None) => Ok(PutCondition::None),
    }
}

/// An ETag as we store it: quoted.
fn etag_normalize(etag: &[u8]) -> Vec<u8> {
    let etag = etag.trim_ascii();
    if etag.starts_with(b"\"") {
        etag.to_vec()
    } else {
        [b"\"", etag, b"\""].concat()
    }
}

/// Answer a committed put: 200 with the ETag and checksums, or the error.
pub(super) fn put_reply(reply: Reply) -> Result<(), S3Error> {
    match reply {
        Reply::ObjectPut { .. } => Ok(()),
        Reply::PreconditionFailed => Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
        Reply::NoSuchKey => Err(S3Error::new(S3ErrorCode::NoSuchKey)),
        Reply::LimitExceeded(limit) => Err(limit_error(limit)),
        other => Err(unexpected(&other)),
    }
}

pub(super) async fn put(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    bucket: &str,
    key: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    // In flight until answered: other uploads' hashes may wait for ours.
    let _busy = context.md5.put_busy();
    let mut meta = metadata_from_headers(head)?;
    let condition = put_condition(head)?;
    if let Some(value) = head.header("content-md5") {
        parse_content_md5(value)?;
    }
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let uploaded = upload(context, conn, head, body, group, true).await?;
    verify_upload(head, body, &uploaded)?;
    let checksum_headers: Vec<(String, String)> = uploaded
        .checksums
        .iter()
        .map(|(a, v)| (a.header_name().to_string(), v.to_base64()))
        .collect();
    let etag = format!("\"{}\"", hex_lower(&uploaded.md5));
    meta_fill(&mut meta, uploaded, etag.clone());
    let request =
        Request::PutObject { bucket_id, key: key.as_bytes().to_vec(), condition, object: meta };
    let reply = context.driver.write(group, request).await.map_err(client_error)?;
    put_reply(reply)?;
    let mut headers: Vec<(&str, &[u8])> = vec![("ETag", etag.as_bytes())];
    for (name, value) in &checksum_headers {
        headers.push((name.as_str(), value.as_bytes()));
    }
    r.send(conn, 200, &headers, &[]).await
}

pub(super) async fn head_object(
    context: &S3Context,
    bucket_id: u64,
    key: &str,
) -> Result<Object, S3Error> {
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::HeadObject { bucket_id, key: key.as_bytes().to_vec() };
    match context.driver.read(group, request).await.map_err(client_error)? {
        Reply::Object(object) => Ok(object),
        Reply::NoSuchKey => Err(S3Error::new(S3ErrorCode::NoSuchKey).with_detail("Key", key)),
        other => Err(unexpected(&other)),
    }
}

pub(super) fn last_modified_secs(object: &Object) -> i64 {
    (object.last_modified / 1_000_000_000) as i64
}

/// RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match,
/// If-Modified-Since. Returns the error (412 or 304) if one fails.
fn conditions(head: &RequestHead<'_>, object: &Object, prefix: &str) -> Result<(), S3Error> {
    let header = |name: &str| head.header(&format!("{prefix}{name}"));
    let etag = &object.meta.etag[..];
    let etag_matches = |value: &[u8]| {
        value.split(|b| *b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || etag_normalize(tag) == etag
        })
    };
    let modified = last_modified_secs(object);
    let mut if_match_passed = false;
    if let Some(value) = header("if-match") {
        if !etag_matches(value) {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
        }
        if_match_passed = true;
    }
    if let Some(date) = header("if-unmodified-since").and_then(parse_http_date) {
        if !if_match_passed && modified > date {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
        }
    }
    let not_modified =
        if prefix.is_empty() { S3ErrorCode::NotModified } else { S3ErrorCode::PreconditionFailed };
    let mut if_none_match_present = false;
    if let Some(value) = header("if-none-match") {
        if_none_match_present = true;
        if etag_matches(value) {
            return Err(S3Error::new(not_modified));
        }
    }
    if let Some(date) = header("if-modified-since").and_then(parse_http_date) {
        if !if_none_match_present && modified <= date {
            return Err(S3Error::new(not_modified));
        }
    }
    Ok(())
}

/// A `Range: bytes=...` header against `size`: Ok(None) for the whole
/// object (no header, or a form S3 ignores), Err for an unsatisfiable one.
fn range(head: &RequestHead<'_>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(value) = head.header_str("range") else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // S3 serves multiple ranges as the whole object.
    }
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let parse = |text: &str| text.trim().parse::<u64>().ok();
    let unsatisfiable = || Err(S3Error::new(S3ErrorCode::InvalidRange));
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => Ok(None),
        (true, false) => {
            let Some(suffix) = parse(last) else { return Ok(None) };
            if suffix == 0 || size == 0 {
                return unsatisfiable();
            }
            Ok(Some((size - suffix.min(size), size - 1)))
        }
        (false, _) => {
            let Some(start) = parse(first) else { return Ok(None) };
            let end = if last.trim().is_empty() { Some(u64::MAX) } else { parse(last) };
            let Some(end) = end else { return Ok(None) };
            if end < start {
                return Ok(None);
            }
            if start >= size {
                return unsatisfiable();
            }
            Ok(Some((start, end.min(size - 1))))
        }
    }
}

/// The headers an object's GET and HEAD carry (`r-*` overrides applied).
fn object_headers(
    head: &RequestHead<'_>,
    object: &Object,
    checksums: bool,
) -> Vec<(String, Vec<u8>)> {
    let meta = &object.meta;
    let mut headers: Vec<(String, Vec<u8>)> =
        vec![("ETag".into(), meta.etag.clone()), ("Accept-Ranges".into(), b"bytes".to_vec())];
    let mut date = Vec::new();
    format_http_date(last_modified_secs(object), &mut date);
    headers.push(("Last-Modified".into(), date));
    headers.push(("Content-Type".into(), meta.content_type.clone()));
    for (name, value) in &meta.user_metadata {
        if name.starts_with(b"x-toasty-") {
            continue;
        }
        headers.push((String::from_utf8_lossy(name).into_owned(), value.clone()));
    }
    for (query, name) in [
        ("response-content-type", "Content-Type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(value) = head.query_value(query) {
            let value = value.replace(['\r', '\n', '\0'], " ");
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.to_string(), value.into_bytes()));
        }
    }
    if checksums {
        for (algorithm, value) in stored_checksums(meta) {
            headers.push((algorithm.header_name().into(), value.into_bytes()));
        }
        if let Some((_, value)) = meta.user_metadata.iter().find(|(n, _)| n == META_COMPOSITE) {
            let text = String::from_utf8_lossy(value);
            if let Some((name, checksum)) = text.split_once(' ') {
                if let Some(algorithm) = ChecksumAlgorithm::from_name(name) {
                    headers.push((algorithm.header_name().into(), checksum.as_bytes().to_vec()));
                }
            }
        }
    }
    headers
}

pub(super) async fn get(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    bucket: &str,
    key: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    let object = head_object(context, bucket_id, key).await?;
    conditions(head, &object, "")?;
    let size = object.meta.size;
    // A 416 from `range` carries the size so a client can correct its range.
    let range = range(head, size)?;
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let length = if size == 0 { 0 } else { end - start + 1 };
    let checksum_mode =
        head.header("x-amz-checksum-mode").is_some_and(|v| v.eq_ignore_ascii_case(b"enabled"))
            && range.is_none();
    let mut headers = object_headers(head, &object, checksum_mode);
    let status = if range.is_some() {
        headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{size}").into_bytes()));
        206
    } else {
        200
    };
    let mut out = Vec::with_capacity(1024);
    let mut all: Vec<(&str, &[u8])> = vec![("x-amz-request-id", r.request_id.as_bytes())];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    crate::http::request::write_response_head(
        &mut out,
        status,
        &all,
        crate::http::request::ResponseBody::Length(length),
        r.keep_alive,
    );
    if r.head_request || length == 0 {
        return conn.write_all(&out).await.map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout));
    }
    if object.meta.chunks.is_empty() {
        let data = &object.meta.inline_data[start as usize..=end as usize];
        out.extend_from_slice(data);
        return conn.write_all(&out).await.map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout));
    }
    conn.write_all(&out).await.map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout))?;
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    if let Err(error) = stream_chunks(context, conn, group, &object.meta.chunks, start, end).await {
        // The head is out: the only way to tell the client is to cut the
        // body short (its length check fails, it retries).
        context.log.warn(format!("GET {bucket}/{key}: {error}; closing the connection"));
        return Err(S3Error::with_message(S3ErrorCode::InternalError, "stream cut"));
    }
    Ok(())
}

/// Write bytes `start..=end` of the object made of `chunks`, reading a few
/// chunks ahead.
pub(super) async fn stream_chunks(
    context: &S3Context,
    conn: &mut HttpConn,
    group: u32,
    chunks: &[ChunkRef],
    start: u64,
    end: u64,
) -> Result<(), S3Error> {
    let mut wanted = Vec::new();
    let mut offset = 0u64;
    for chunk in chunks {
        let chunk_end = offset + u64::from(chunk.length);
        if chunk_end > start && offset <= end {
            let from = start.saturating_sub(offset) as usize;
            let to = (end + 1).min(chunk_end) - offset;
            wanted.push((*chunk, from, to as usize));
        }
        offset = chunk_end;
    }
    let ahead = context.config.get_chunks_ahead.max(1);
    let mut reads = VecDeque::new();
    let mut next = 0;
    while next < wanted.len() || !reads.is_empty() {
        while next < wanted.len() && reads.len() < ahead {
            let (chunk, from, to) = wanted[next];
            reads.push_back((context.driver.chunk_read_start(group, chunk), from, to));
            next += 1;
        }
        let Some((handle, from, to)) = reads.pop_front() else { break };
        let message = context.driver.chunk_read_done(handle).await.map_err(client_error)?;
        conn.write_all(&message.body()[from..to])
            .await
            .map_err(|_| S3Error::new(S3ErrorCode::RequestTimeout))?;
        context.stats.borrow_mut().bytes_out += (to - from) as u64;
    }
    Ok(())
}

pub(super) async fn delete(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    bucket: &str,
    key: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    let condition = match head.header("if-match") {
        Some(etag) => DeleteCondition::IfMatch(etag_normalize(etag)),
        None => DeleteCondition::None,
    };
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::DeleteObject { bucket_id, key: key.as_bytes().to_vec(), condition };
    match context.driver.write(group, request).await.map_err(client_error)? {
        Reply::ObjectDeleted { .. } => r.send(conn, 204, &[], &[]).await,
        Reply::PreconditionFailed => Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
        other => Err(unexpected(&other)),
    }
}

/// Copy `source`'s data into `group`: the same chunks if the groups match
/// (chunk ids name immutable bytes, so two objects may share them), else
/// read and written again.
pub(super) async fn copy_data(
    context: &S3Context,
    object: &Object,
    source_group: u32,
    group: u32,
) -> Result<(Vec<u8>, Vec<ChunkRef>), S3Error> {
    if object.meta.chunks.is_empty() || source_group == group {
        return Ok((object.meta.inline_data.clone(), object.meta.chunks.clone()));
    }
    let mut chunks = Vec::with_capacity(object.meta.chunks.len());
    for chunk in &object.meta.chunks {
        let message =
            context.driver.chunk_read(source_group, *chunk).await.map_err(client_error)?;
        let id = chunk_id();
        let crc32c =
            context.driver.chunk_write(group, id, message.body()).await.map_err(client_error)?;
        chunks.push(ChunkRef { id: id.to_le_bytes(), length: chunk.length, crc32c });
    }
    Ok((Vec::new(), chunks))
}

pub(super) async fn copy(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    bucket: &str,
    key: &str,
    source: &CopySource<'_>,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    if source.version_id.is_some() {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "versioning is not implemented",
        ));
    }
    let (source_bucket, _) = context.bucket(&source.bucket).await?;
    let (bucket_id, _) = context.bucket(bucket).await?;
    let object = head_object(context, source_bucket, &source.key).await?;
    conditions(head, &object, "x-amz-copy-source-")?;
    let replace =
        head.header("x-amz-metadata-directive").is_some_and(|v| v.eq_ignore_ascii_case(b"REPLACE"));
    if !replace && source_bucket == bucket_id && *source.key == *key {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata",
        ));
    }
    let mut meta = if replace { metadata_from_headers(head)? } else { object.meta.clone() };
    let source_group = context.driver.group_of(source_bucket, source.key.as_bytes());
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let (inline, chunks) = copy_data(context, &object, source_group, group).await?;
    meta.size = object.meta.size;
    meta.etag = object.meta.etag.clone();
    meta.checksum_crc32 = object.meta.checksum_crc32;
    meta.checksum_crc32c = object.meta.checksum_crc32c;
    meta.inline_data = inline;
    meta.chunks = chunks;
    let request = Request::PutObject {
        bucket_id,
        key: key.as_bytes().to_vec(),
        condition: PutCondition::None,
        object: meta,
    };
    put_reply(context.driver.write(group, request).await.map_err(client_error)?)?;
    let copied = head_object(context, bucket_id, key).await?;
    let etag = String::from_utf8_lossy(&copied.meta.etag).into_owned();
    let mut body = Vec::new();
    write_copy_result(
        &mut body,
        false,
        etag.trim_matches('"'),
        (copied.last_modified / 1_000_000) as i64,
    );
    r.xml(conn, &body).await
}

#[allow(dead_code)]
fn iso8601(ms: i64) -> String {
    let mut out = Vec::new();
    format_iso8601_ms(ms, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
