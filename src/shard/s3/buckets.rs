//! Bucket operations (the catalog is group 0), listings (a merge of every
//! group's sorted keys), and DeleteObjects.
//!
//! Listing: each group returns its keys of the bucket after a cursor, in
//! byte order (UTF-8 binary order, as S3 lists); the front end merges them
//! and rolls keys up into common prefixes at the delimiter. Keys under a
//! common prefix are skipped by moving every cursor past `prefix + 0xFF`: no
//! UTF-8 key contains the byte 0xFF, so it sorts after every key that starts
//! with the prefix. Continuation tokens are that cursor, base64-encoded.

use super::conn::{Body, HttpConn};
use super::{client_error, limit_error, unexpected, Responder, S3Context};
use crate::http::checksum::{
    base64_decode, base64_encode, hex_lower, verify_content_md5, Md5Hasher,
};
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::RequestHead;
use crate::http::router::{ListObjectsV1, ListObjectsV2};
use crate::http::xml::{
    self, write_delete_result, write_list_buckets, write_list_objects_v1, write_list_objects_v2,
    BucketEntry, DeleteOutcome, ObjectEntry, ObjectsPage, Owner,
};
use crate::vsr::state_machine::{DeleteCondition, Reply, Request, KEY_SIZE_MAX, LIST_LIMIT_MAX};

pub(super) const OWNER: Owner<'static> = Owner { id: "toasty", display_name: "toasty" };

/// Read a small body whole (XML requests), refusing one over `bytes_max`.
async fn body_small(
    conn: &mut HttpConn,
    body: &mut Body,
    bytes_max: usize,
) -> Result<Vec<u8>, S3Error> {
    let mut data = Vec::new();
    loop {
        let room = (bytes_max + 1).saturating_sub(data.len()).max(1);
        if body.read(conn, &mut data, room.min(64 << 10)).await? == 0 {
            return Ok(data);
        }
        if data.len() > bytes_max {
            return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "request body too large"));
        }
    }
}

pub(super) async fn list_buckets(
    context: &S3Context,
    conn: &mut HttpConn,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let reply = context.driver.read(0, Request::ListBuckets).await.map_err(client_error)?;
    let Reply::Buckets(entries) = reply else { return Err(unexpected(&reply)) };
    let names: Vec<String> =
        entries.iter().map(|b| String::from_utf8_lossy(&b.name).into_owned()).collect();
    let buckets: Vec<BucketEntry<'_>> = entries
        .iter()
        .zip(&names)
        .map(|(entry, name)| BucketEntry { name, created_ms: (entry.created / 1_000_000) as i64 })
        .collect();
    let mut body = Vec::new();
    write_list_buckets(&mut body, &OWNER, &buckets);
    r.xml(conn, &body).await
}

pub(super) async fn create(
    context: &S3Context,
    conn: &mut HttpConn,
    _head: &RequestHead<'_>,
    body: &mut Body,
    bucket: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let configuration = body_small(conn, body, xml::CREATE_BUCKET_BODY_BYTES_MAX).await?;
    if !configuration.is_empty() {
        xml::parse_create_bucket_configuration(&configuration)?;
    }
    let request = Request::CreateBucket { name: bucket.as_bytes().to_vec() };
    match context.driver.write(0, request).await.map_err(client_error)? {
        Reply::BucketCreated { .. } => {
            context.bucket_forget(bucket);
            let location = format!("/{bucket}");
            r.send(conn, 200, &[("Location", location.as_bytes())], &[]).await
        }
        Reply::BucketAlreadyExists => Err(S3Error::new(S3ErrorCode::BucketAlreadyOwnedByYou)),
        Reply::LimitExceeded(limit) => Err(limit_error(limit)),
        other => Err(unexpected(&other)),
    }
}

pub(super) async fn head(
    context: &S3Context,
    conn: &mut HttpConn,
    bucket: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    context.bucket(bucket).await?;
    let region = context.config.region.clone();
    r.send(conn, 200, &[("x-amz-bucket-region", region.as_bytes())], &[]).await
}

pub(super) async fn location(
    context: &S3Context,
    conn: &mut HttpConn,
    bucket: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    context.bucket(bucket).await?;
    let mut body = Vec::new();
    xml::write_location_constraint(&mut body, &context.config.region);
    r.xml(conn, &body).await
}

/// Whether any group holds an object of the bucket.
async fn bucket_has_objects(context: &S3Context, bucket_id: u64) -> Result<bool, S3Error> {
    let groups = context.driver.config().group_count;
    let handles: Vec<_> = (0..groups)
        .map(|group| {
            let request = Request::ListObjects {
                bucket_id,
                prefix: Vec::new(),
                start_after: Vec::new(),
                limit: 1,
            };
            context.driver.read_start(group, request)
        })
        .collect();
    let mut any = false;
    for handle in handles {
        match context.driver.replied(handle).await.map_err(client_error)? {
            Reply::Objects { entries, .. } => any |= !entries.is_empty(),
            other => return Err(unexpected(&other)),
        }
    }
    Ok(any)
}

pub(super) async fn delete(
    context: &S3Context,
    conn: &mut HttpConn,
    bucket: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    // Objects live in every group; the catalog checks only its own. A put
    // racing this delete can still land in the old bucket id (documented).
    if bucket_has_objects(context, bucket_id).await? {
        return Err(S3Error::new(S3ErrorCode::BucketNotEmpty));
    }
    // Deleting the bucket would strand their parts' chunks forever.
    if super::multipart::uploads_exist(context, bucket_id).await? {
        return Err(S3Error::with_message(
            S3ErrorCode::BucketNotEmpty,
            "the bucket has multipart uploads in progress: complete or abort them first",
        ));
    }
    let request = Request::DeleteBucket { name: bucket.as_bytes().to_vec() };
    let reply = context.driver.write(0, request).await.map_err(client_error)?;
    context.bucket_forget(bucket);
    match reply {
        Reply::BucketDeleted => r.send(conn, 204, &[], &[]).await,
        Reply::NoSuchBucket => Err(S3Error::new(S3ErrorCode::NoSuchBucket)),
        Reply::BucketNotEmpty => Err(S3Error::new(S3ErrorCode::BucketNotEmpty)),
        other => Err(unexpected(&other)),
    }
}

/// One listing page, merged over the groups.
pub(super) struct Page {
    pub entries: Vec<(String, u64, String, i64)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts (exclusive), if truncated.
    pub next: Vec<u8>,
}

/// Up to `max_keys` keys and common prefixes of `bucket_id` under `prefix`,
/// strictly after `after`.
pub(super) async fn list(
    context: &S3Context,
    bucket_id: u64,
    prefix: &str,
    delimiter: Option<&str>,
    after: Vec<u8>,
    max_keys: u32,
) -> Result<Page, S3Error> {
    let groups = context.driver.config().group_count as usize;
    let mut cursors = vec![after.clone(); groups];
    let mut buffers: Vec<std::collections::VecDeque<crate::vsr::state_machine::ObjectEntry>> =
        (0..groups).map(|_| Default::default()).collect();
    let mut exhausted = vec![false; groups];
    let mut page =
        Page { entries: Vec::new(), prefixes: Vec::new(), truncated: false, next: after };
    let limit = max_keys.min(LIST_LIMIT_MAX);
    while (page.entries.len() + page.prefixes.len()) < limit as usize {
        refill(context, bucket_id, prefix, &cursors, &mut buffers, &mut exhausted).await?;
        let Some(group) = (0..groups)
            .filter(|g| !buffers[*g].is_empty())
            .min_by(|a, b| buffers[*a][0].key.cmp(&buffers[*b][0].key))
        else {
            return Ok(page);
        };
        let Some(entry) = buffers[group].pop_front() else { break };
        cursors[group] = entry.key.clone();
        let key = String::from_utf8_lossy(&entry.key).into_owned();
        let rolled = delimiter.and_then(|d| {
            key[prefix.len()..].find(d).map(|at| key[..prefix.len() + at + d.len()].to_string())
        });
        match rolled {
            Some(common) => {
                let mut skip = common.as_bytes().to_vec();
                skip.push(0xFF);
                skip.truncate(KEY_SIZE_MAX);
                for g in 0..groups {
                    buffers[g].retain(|e| !e.key.starts_with(common.as_bytes()));
                    if cursors[g] < skip {
                        cursors[g] = skip.clone();
                    }
                }
                page.next = skip;
                page.prefixes.push(common);
            }
            None => {
                page.next = entry.key.clone();
                let etag = String::from_utf8_lossy(&entry.etag).trim_matches('"').to_string();
                page.entries.push((
                    key,
                    entry.size,
                    etag,
                    (entry.last_modified / 1_000_000) as i64,
                ));
            }
        }
    }
    refill(context, bucket_id, prefix, &cursors, &mut buffers, &mut exhausted).await?;
    page.truncated = buffers.iter().any(|b| !b.is_empty());
    Ok(page)
}

/// Fetch the next keys of every group whose buffer ran dry.
async fn refill(
    context: &S3Context,
    bucket_id: u64,
    prefix: &str,
    cursors: &[Vec<u8>],
    buffers: &mut [std::collections::VecDeque<crate::vsr::state_machine::ObjectEntry>],
    exhausted: &mut [bool],
) -> Result<(), S3Error> {
    let mut handles = Vec::new();
    for group in 0..buffers.len() {
        if buffers[group].is_empty() && !exhausted[group] {
            let request = Request::ListObjects {
                bucket_id,
                prefix: prefix.as_bytes().to_vec(),
                start_after: cursors[group].clone(),
                limit: LIST_LIMIT_MAX,
            };
            handles.push((group, context.driver.read_start(group as u32, request)));
        }
    }
    for (group, handle) in handles {
        match context.driver.replied(handle).await.map_err(client_error)? {
            Reply::Objects { entries, truncated } => {
                exhausted[group] = !truncated;
                buffers[group].extend(entries);
            }
            other => return Err(unexpected(&other)),
        }
    }
    Ok(())
}

fn page_xml<'p>(page: &'p Page) -> (Vec<ObjectEntry<'p>>, Vec<&'p str>) {
    let contents = page
        .entries
        .iter()
        .map(|(key, size, etag, ms)| ObjectEntry { key, last_modified_ms: *ms, etag, size: *size })
        .collect();
    (contents, page.prefixes.iter().map(String::as_str).collect())
}

/// A V1 marker or V2 start-after: exclusive; one ending in the delimiter
/// (a common prefix returned as NextMarker) skips everything under it.
fn cursor_from_marker(marker: &str, delimiter: Option<&str>) -> Vec<u8> {
    let mut cursor = marker.as_bytes().to_vec();
    if delimiter.is_some_and(|d| marker.ends_with(d)) {
        cursor.push(0xFF);
        cursor.truncate(KEY_SIZE_MAX);
    }
    cursor
}

pub(super) async fn list_v2(
    context: &S3Context,
    conn: &mut HttpConn,
    request: &ListObjectsV2<'_>,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(request.bucket).await?;
    let mut after = request.start_after.map(|s| cursor_from_marker(s, None)).unwrap_or_default();
    if let Some(token) = request.continuation_token {
        let mut decoded = vec![0u8; token.len()];
        let length = base64_decode(token.as_bytes(), &mut decoded).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })?;
        decoded.truncate(length);
        after = after.max(decoded);
    }
    let page = list(context, bucket_id, request.prefix, request.delimiter, after, request.max_keys)
        .await?;
    let (contents, prefixes) = page_xml(&page);
    let token = base64_encode(&page.next);
    let xml_page = ObjectsPage {
        contents: &contents,
        common_prefixes: &prefixes,
        is_truncated: page.truncated,
    };
    let mut body = Vec::new();
    write_list_objects_v2(&mut body, request, &xml_page, Some(&token), &OWNER);
    r.xml(conn, &body).await
}

pub(super) async fn list_v1(
    context: &S3Context,
    conn: &mut HttpConn,
    request: &ListObjectsV1<'_>,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(request.bucket).await?;
    let after =
        request.marker.map(|m| cursor_from_marker(m, request.delimiter)).unwrap_or_default();
    let page = list(context, bucket_id, request.prefix, request.delimiter, after, request.max_keys)
        .await?;
    let (contents, prefixes) = page_xml(&page);
    let next_marker = match (page.prefixes.last(), page.entries.last()) {
        (Some(prefix), Some((key, ..))) => Some(prefix.max(key).clone()),
        (Some(prefix), None) => Some(prefix.clone()),
        (None, Some((key, ..))) => Some(key.clone()),
        (None, None) => None,
    };
    let xml_page = ObjectsPage {
        contents: &contents,
        common_prefixes: &prefixes,
        is_truncated: page.truncated,
    };
    let mut body = Vec::new();
    write_list_objects_v1(&mut body, request, &xml_page, next_marker.as_deref(), &OWNER);
    r.xml(conn, &body).await
}

pub(super) async fn delete_objects(
    context: &S3Context,
    conn: &mut HttpConn,
    head: &RequestHead<'_>,
    body: &mut Body,
    bucket: &str,
    r: &Responder<'_>,
) -> Result<(), S3Error> {
    let (bucket_id, _) = context.bucket(bucket).await?;
    let data = body_small(conn, body, xml::DELETE_BODY_BYTES_MAX).await?;
    if let Some(value) = head.header("content-md5") {
        let mut md5 = Md5Hasher::new();
        md5.update(&data);
        verify_content_md5(value, &md5.finalize())?;
    }
    let request = xml::parse_delete(&data)?;
    let mut handles = Vec::with_capacity(request.objects.len());
    for object in &request.objects {
        let key = object.key.as_bytes();
        if key.is_empty() || key.len() > KEY_SIZE_MAX {
            handles.push(None);
            continue;
        }
        let group = context.driver.group_of(bucket_id, key);
        let delete = Request::DeleteObject {
            bucket_id,
            key: key.to_vec(),
            condition: DeleteCondition::None,
        };
        handles.push(Some(context.driver.write_start(group, delete)));
    }
    let mut errors = Vec::with_capacity(handles.len());
    for handle in handles {
        let error = match handle {
            None => Some(S3Error::new(S3ErrorCode::KeyTooLongError)),
            Some(handle) => match context.driver.replied(handle).await {
                Ok(Reply::ObjectDeleted { .. }) => None,
                Ok(other) => Some(unexpected(&other)),
                Err(error) => Some(client_error(error)),
            },
        };
        errors.push(error);
    }
    let outcomes: Vec<DeleteOutcome<'_>> = request
        .objects
        .iter()
        .zip(&errors)
        .map(|(object, error)| match error {
            None => DeleteOutcome::Deleted { key: &object.key },
            Some(error) => DeleteOutcome::Error { key: &object.key, error },
        })
        .collect();
    let mut out = Vec::new();
    write_delete_result(&mut out, request.quiet, &outcomes);
    let _ = hex_lower;
    r.xml(conn, &out).await
}
