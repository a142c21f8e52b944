//! Multipart uploads. An upload is records of the object's group in the
//! uploads namespace (`state_machine::UPLOADS_NAMESPACE_BIT`): a marker
//! holding the object key and its metadata, and one record per part with
//! the part's chunks. CompleteMultipartUpload is one state-machine
//! operation: it checks the listed parts and assembles the object from
//! their chunks (no data is copied), removing the upload in the same
//! commit. Limits: 1,024 chunks per object (an object up to 8 GiB), and
//! as many parts as fit one metadata op (about 1,500).

use super::conn::{Body, HttpConn};
use super::objects::{
    meta_fill, metadata_from_headers, stored_checksums, upload, verify_upload, META_COMPOSITE,
    META_UPLOAD_ALGORITHM,
};
use super::{client_error, limit_error, unexpected, Responder, S3Context};
use crate::http::checksum::{
    base64_decode, base64_encode, hex_decode, hex_lower, ChecksumAlgorithm, Checksummer,
    MultipartEtag,
};
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::RequestHead;
use crate::http::router::{Endpoint, ListUploads};
use crate::http::xml::{self, PartEntry, PartsPage, UploadEntry, UploadsPage};
use crate::vsr::state_machine::{
    upload_marker_key, upload_part_key, upload_parts_prefix, Object, ObjectMeta, PutCondition,
    Reply, Request, LIST_LIMIT_MAX, UPLOADS_NAMESPACE_BIT,
};

/// In-progress uploads a ListMultipartUploads looks at, per group.
const UPLOADS_LISTED_MAX: usize = 10_000;

pub(super) async fn dispatch(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    endpoint: &Endpoint<'_>,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    match endpoint {
        Endpoint::CreateMultipartUpload { bucket, key } => {
            create(context, conn, head, bucket, key, r).await
        }
        Endpoint::UploadPart { bucket, key, part_number, upload_id } => {
            part(context, conn, head, body, bucket, key, *part_number, upload_id, r).await
        }
        Endpoint::CompleteMultipartUpload { bucket, key, upload_id } => {
            complete(context, conn, head, body, bucket, key, upload_id, r).await
        }
        Endpoint::AbortMultipartUpload { bucket, key, upload_id } => {
            abort(context, conn, bucket, key, upload_id, r).await
        }
        Endpoint::ListParts { bucket, key, upload_id, max_parts, part_number_marker } => {
            list_parts(context, conn, bucket, key, upload_id, *max_parts, *part_number_marker, r)
                .await
        }
        Endpoint::ListMultipartUploads(request) => list_uploads(context, conn, request, r).await,
        Endpoint::UploadPartCopy { .. } => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "UploadPartCopy is not implemented",
        )),
        _ => unreachable!("not a multipart endpoint"),
    }
}

fn uploads_of(bucket_id: u64) -> u64 {
    bucket_id | UPLOADS_NAMESPACE_BIT
}

/// The upload's marker, if it is an upload of `key`.
async fn marker(
    context: &S3Context,
    bucket_id: u64,
    key: &str,
    upload_id: &str,
) -> Result<Object, S3Error> {
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::HeadObject {
        bucket_id: uploads_of(bucket_id),
        key: upload_marker_key(upload_id.as_bytes()),
    };
    match context.driver.read(group, request).await.map_err(client_error)? {
        Reply::Object(object) if object.meta.inline_data == key.as_bytes() => Ok(object),
        Reply::Object(_) | Reply::NoSuchKey => Err(S3Error::new(S3ErrorCode::NoSuchUpload)),
        other => Err(unexpected(&other)),
    }
}

async fn create(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    bucket: &str,
    key: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    let mut meta = metadata_from_headers(head)?;
    if let Some(algorithm) = head.header_str("x-amz-checksum-algorithm") {
        let Some(algorithm) = ChecksumAlgorithm::from_name(algorithm.trim()) else {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "unknown x-amz-checksum-algorithm",
            ));
        };
        meta.user_metadata
            .push((META_UPLOAD_ALGORITHM.to_vec(), algorithm_name(algorithm).as_bytes().to_vec()));
        meta.user_metadata.sort();
    }
    // The key rides in the marker, so a listing of uploads can name it.
    meta.inline_data = key.as_bytes().to_vec();
    meta.size = key.len() as u64;
    let upload_id = hex_lower(&super::objects::chunk_id().to_le_bytes());
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::PutObject {
        bucket_id: uploads_of(bucket_id),
        key: upload_marker_key(upload_id.as_bytes()),
        condition: PutCondition::IfNoneMatchStar,
        object: meta,
    };
    match context.driver.write(group, request).await.map_err(client_error)? {
        Reply::ObjectPut { .. } => {}
        Reply::LimitExceeded(limit) => return Err(limit_error(limit)),
        other => return Err(unexpected(&other)),
    }
    let mut body = Vec::new();
    xml::write_initiate_multipart_upload(&mut body, bucket, key, &upload_id);
    r.xml(conn, &body).await
}

#[allow(clippy::too_many_arguments)]
async fn part(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    bucket: &str,
    key: &str,
    part_number: u16,
    upload_id: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    // In flight until answered (md5_pool: other uploads' hashes may wait).
    let _busy = context.md5.put_busy();
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    // Checked before the bytes are taken; the put checks again atomically.
    marker(context, bucket_id, key, upload_id).await?;
    let uploaded = upload(context, conn, head, body, group, false).await?;
    verify_upload(head, body, &uploaded)?;
    let checksum_headers: Vec<(String, String)> = uploaded
        .checksums
        .iter()
        .map(|(a, v)| (a.header_name().to_string(), v.to_base64()))
        .collect();
    let etag = format!("\"{}\"", hex_lower(&uploaded.md5));
    let mut meta = ObjectMeta::default();
    meta_fill(&mut meta, uploaded, etag.clone());
    let request = Request::PutObject {
        bucket_id: uploads_of(bucket_id),
        key: upload_part_key(upload_id.as_bytes(), part_number),
        condition: PutCondition::KeyExists(upload_marker_key(upload_id.as_bytes())),
        object: meta,
    };
    match context.driver.write(group, request).await.map_err(client_error)? {
        Reply::ObjectPut { .. } => {}
        Reply::PreconditionFailed => return Err(S3Error::new(S3ErrorCode::NoSuchUpload)),
        Reply::LimitExceeded(limit) => return Err(limit_error(limit)),
        other => return Err(unexpected(&other)),
    }
    let mut headers: Vec<(&str, &[u8])> = vec![("ETag", etag.as_bytes())];
    for (name, value) in &checksum_headers {
        headers.push((name.as_str(), value.as_bytes()));
    }
    r.send(conn, 200, &headers, &[]).await
}

#[allow(clippy::too_many_arguments)]
async fn complete(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    bucket: &str,
    key: &str,
    upload_id: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    let mut data = Vec::new();
    while body.read(conn, &mut data, 64 << 10).await? > 0 {
        if data.len() > xml::COMPLETE_BODY_BYTES_MAX {
            return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "request body too large"));
        }
    }
    let listed = xml::parse_complete_multipart_upload(&data)?;
    if !listed.windows(2).all(|pair| pair[0].part_number < pair[1].part_number) {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
    }
    let marker = marker(context, bucket_id, key, upload_id).await?;
    let mut etag = MultipartEtag::new();
    let mut parts = Vec::with_capacity(listed.len());
    for part in &listed {
        let mut md5 = [0u8; 16];
        if hex_decode(part.etag.as_bytes(), &mut md5).is_none() {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        }
        etag.add_part(&md5);
        parts.push((part.part_number, format!("\"{}\"", part.etag).into_bytes()));
    }
    let final_etag = format!("\"{}\"", etag.finish());
    let mut user_metadata: Vec<(Vec<u8>, Vec<u8>)> = marker
        .meta
        .user_metadata
        .iter()
        .filter(|(n, _)| n != META_UPLOAD_ALGORITHM)
        .cloned()
        .collect();
    let composite =
        composite_checksum(context, bucket_id, key, upload_id, &marker, &listed).await?;
    if let Some(composite) = &composite {
        user_metadata.push((META_COMPOSITE.to_vec(), composite.clone().into_bytes()));
        user_metadata.sort();
    }
    let object = ObjectMeta {
        etag: final_etag.clone().into_bytes(),
        content_type: marker.meta.content_type.clone(),
        user_metadata,
        ..ObjectMeta::default()
    };
    let condition = match head.header("if-none-match") {
        Some(value) if value.trim_ascii() == b"*" => PutCondition::IfNoneMatchStar,
        _ => PutCondition::None,
    };
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::CompleteMultipart {
        bucket_id,
        key: key.as_bytes().to_vec(),
        upload_id: upload_id.as_bytes().to_vec(),
        condition,
        parts,
        object,
    };
    match context.driver.write(group, request).await.map_err(client_error)? {
        Reply::ObjectPut { .. } => {}
        Reply::NoSuchUpload => return Err(S3Error::new(S3ErrorCode::NoSuchUpload)),
        Reply::InvalidPart { index } => {
            let number = listed.get(index as usize).map_or(0, |p| p.part_number);
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidPart,
                format!("part {number} is missing or its ETag does not match"),
            ));
        }
        Reply::EntityTooSmall { .. } => return Err(S3Error::new(S3ErrorCode::EntityTooSmall)),
        Reply::PreconditionFailed => return Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
        Reply::LimitExceeded(limit) => return Err(limit_error(limit)),
        other => return Err(unexpected(&other)),
    }
    let location = format!("/{bucket}/{key}");
    let checksum =
        composite.as_deref().and_then(|c| c.split_once(' ')).and_then(|(name, value)| {
            ChecksumAlgorithm::from_name(name).map(|a| (a.xml_element(), value))
        });
    let mut out = Vec::new();
    xml::write_complete_multipart_upload(
        &mut out,
        &location,
        bucket,
        key,
        final_etag.trim_matches('"'),
        checksum,
    );
    r.xml(conn, &out).await
}

fn algorithm_name(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc32 => "CRC32",
        ChecksumAlgorithm::Crc32c => "CRC32C",
        ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
        ChecksumAlgorithm::Sha256 => "SHA256",
    }
}

/// The composite checksum of an upload created with a checksum algorithm:
/// the checksum of the parts' binary checksums, then `-N` (S3's COMPOSITE
/// type), as `<ALGORITHM> <value>`. Read from the part records.
async fn composite_checksum(
    context: &S3Context,
    bucket_id: u64,
    key: &str,
    upload_id: &str,
    marker: &Object,
    listed: &[xml::CompletedPart],
) -> Result<Option<String>, S3Error> {
    let Some((_, name)) =
        marker.meta.user_metadata.iter().find(|(n, _)| n == META_UPLOAD_ALGORITHM)
    else {
        return Ok(None);
    };
    let Some(algorithm) = ChecksumAlgorithm::from_name(&String::from_utf8_lossy(name)) else {
        return Ok(None);
    };
    if algorithm == ChecksumAlgorithm::Crc64Nvme {
        return Ok(None); // S3 makes CRC64NVME a full-object checksum instead.
    }
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let handles: Vec<_> = listed
        .iter()
        .map(|part| {
            let key = upload_part_key(upload_id.as_bytes(), part.part_number);
            context
                .driver
                .read_start(group, Request::HeadObject { bucket_id: uploads_of(bucket_id), key })
        })
        .collect();
    let mut combined = Checksummer::new(algorithm);
    for handle in handles {
        let Ok(Reply::Object(part)) = context.driver.replied(handle).await else {
            return Ok(None); // Complete itself will report the missing part.
        };
        let Some((_, value)) =
            stored_checksums(&part.meta).into_iter().find(|(a, _)| *a == algorithm)
        else {
            return Ok(None);
        };
        let mut bytes = [0u8; 32];
        let Some(length) = base64_decode(value.as_bytes(), &mut bytes) else { return Ok(None) };
        combined.update(&bytes[..length]);
    }
    let value = base64_encode(combined.finalize().as_bytes());
    Ok(Some(format!("{} {value}-{}", algorithm_name(algorithm), listed.len())))
}

async fn abort(
    context: &S3Context,
    conn: &mut HttpConn,
    bucket: &str,
    key: &str,
    upload_id: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    marker(context, bucket_id, key, upload_id).await?;
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let request = Request::AbortMultipart { bucket_id, upload_id: upload_id.as_bytes().to_vec() };
    match context.driver.write(group, request).await.map_err(client_error)? {
        Reply::ObjectDeleted { .. } => r.send(conn, 204, &[], &[]).await,
        Reply::NoSuchUpload => Err(S3Error::new(S3ErrorCode::NoSuchUpload)),
        other => Err(unexpected(&other)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn list_parts(
    context: &S3Context,
    conn: &mut HttpConn,
    bucket: &str,
    key: &str,
    upload_id: &str,
    max_parts: u32,
    part_number_marker: u16,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    marker(context, bucket_id, key, upload_id).await?;
    let group = context.driver.group_of(bucket_id, key.as_bytes());
    let prefix = upload_parts_prefix(upload_id.as_bytes());
    let start_after = if part_number_marker == 0 {
        Vec::new()
    } else {
        upload_part_key(upload_id.as_bytes(), part_number_marker)
    };
    let limit = max_parts.min(LIST_LIMIT_MAX);
    let request = Request::ListObjects {
        bucket_id: uploads_of(bucket_id),
        prefix: prefix.clone(),
        start_after,
        limit,
    };
    let Reply::Objects { entries, truncated } =
        context.driver.read(group, request).await.map_err(client_error)?
    else {
        return Err(S3Error::new(S3ErrorCode::InternalError));
    };
    let etags: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.etag).trim_matches('"').to_string())
        .collect();
    // The parts' checksums are in their records, not in the listing.
    let handles: Vec<_> = entries
        .iter()
        .map(|e| {
            context.driver.read_start(
                group,
                Request::HeadObject { bucket_id: uploads_of(bucket_id), key: e.key.clone() },
            )
        })
        .collect();
    let mut checksums: Vec<Vec<(&'static str, String)>> = Vec::with_capacity(entries.len());
    for handle in handles {
        let found = match context.driver.replied(handle).await {
            Ok(Reply::Object(part)) => stored_checksums(&part.meta)
                .into_iter()
                .map(|(a, v)| (a.xml_element(), v))
                .collect(),
            _ => Vec::new(),
        };
        checksums.push(found);
    }
    let parts: Vec<PartEntry<'_>> = entries
        .iter()
        .zip(&etags)
        .zip(&checksums)
        .filter_map(|((entry, etag), checksums)| {
            let number = std::str::from_utf8(entry.key.get(prefix.len()..)?).ok()?.parse().ok()?;
            Some(PartEntry {
                part_number: number,
                last_modified_ms: (entry.last_modified / 1_000_000) as i64,
                etag,
                size: entry.size,
                checksums,
            })
        })
        .collect();
    let page = PartsPage {
        bucket,
        key,
        upload_id,
        part_number_marker,
        max_parts: limit,
        parts: &parts,
        is_truncated: truncated,
        owner: super::buckets::OWNER,
    };
    let mut out = Vec::new();
    xml::write_list_parts(&mut out, &page);
    r.xml(conn, &out).await
}

/// Every group's upload markers of the bucket, with their keys.
async fn uploads(
    context: &S3Context,
    bucket_id: u64,
) -> Result<Vec<(String, String, i64)>, S3Error> {
    let mut found = Vec::new();
    for group in 0..context.driver.config().group_count {
        let mut start_after = Vec::new();
        let mut markers = Vec::new();
        loop {
            let request = Request::ListObjects {
                bucket_id: uploads_of(bucket_id),
                prefix: b"U".to_vec(),
                start_after: start_after.clone(),
                limit: LIST_LIMIT_MAX,
            };
            let Reply::Objects { entries, truncated } =
                context.driver.read(group, request).await.map_err(client_error)?
            else {
                return Err(S3Error::new(S3ErrorCode::InternalError));
            };
            if let Some(last) = entries.last() {
                start_after = last.key.clone();
            }
            markers.extend(entries);
            if !truncated || markers.len() >= UPLOADS_LISTED_MAX {
                break;
            }
        }
        let handles: Vec<_> = markers
            .iter()
            .map(|entry| {
                context.driver.read_start(
                    group,
                    Request::HeadObject {
                        bucket_id: uploads_of(bucket_id),
                        key: entry.key.clone(),
                    },
                )
            })
            .collect();
        for (entry, handle) in markers.iter().zip(handles) {
            if let Ok(Reply::Object(object)) = context.driver.replied(handle).await {
                let key = String::from_utf8_lossy(&object.meta.inline_data).into_owned();
                let upload_id = String::from_utf8_lossy(&entry.key[1..]).into_owned();
                found.push((key, upload_id, (entry.last_modified / 1_000_000) as i64));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Whether any upload of the bucket is in progress (DeleteBucket refuses).
pub(super) async fn uploads_exist(context: &S3Context, bucket_id: u64) -> Result<bool, S3Error> {
    for group in 0..context.driver.config().group_count {
        let request = Request::ListObjects {
            bucket_id: uploads_of(bucket_id),
            prefix: b"U".to_vec(),
            start_after: Vec::new(),
            limit: 1,
        };
        if let Reply::Objects { entries, .. } =
            context.driver.read(group, request).await.map_err(client_error)?
        {
            if !entries.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

async fn list_uploads(
    context: &S3Context,
    conn: &mut HttpConn,
    request: &ListUploads<'_>,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(request.bucket).await?;
    let all = uploads(context, bucket_id).await?;
    let key_marker = request.key_marker.unwrap_or("");
    let id_marker = request.upload_id_marker.unwrap_or("");
    let mut selected = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    for (key, upload_id, initiated) in &all {
        if !key.starts_with(request.prefix) {
            continue;
        }
        let after_marker = key.as_str() > key_marker
            || (key == key_marker && !id_marker.is_empty() && upload_id.as_str() > id_marker);
        if !key_marker.is_empty() && !after_marker {
            continue;
        }
        if selected.len() + prefixes.len() >= request.max_uploads as usize {
            truncated = true;
            break;
        }
        let rolled = request.delimiter.and_then(|d| {
            key[request.prefix.len()..]
                .find(d)
                .map(|at| key[..request.prefix.len() + at + d.len()].to_string())
        });
        match rolled {
            Some(common) if prefixes.last() != Some(&common) => prefixes.push(common),
            Some(_) => {}
            None => selected.push((key.as_str(), upload_id.as_str(), *initiated)),
        }
    }
    let entries: Vec<UploadEntry<'_>> = selected
        .iter()
        .map(|(key, upload_id, initiated)| UploadEntry { key, upload_id, initiated_ms: *initiated })
        .collect();
    let prefix_refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let page = UploadsPage {
        uploads: &entries,
        common_prefixes: &prefix_refs,
        is_truncated: truncated,
        owner: super::buckets::OWNER,
    };
    let mut out = Vec::new();
    xml::write_list_multipart_uploads(&mut out, request, &page);
    r.xml(conn, &out).await
}
