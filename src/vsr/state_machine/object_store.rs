//! `ObjectStore`: the object-metadata state machine of one replication group.
//!
//! It holds bucket records (meaningful in group 0, which keeps the catalog)
//! and the objects that hash to this group, keyed by (bucket id, key): the
//! front end resolves names to ids, so object operations are not checked
//! against the catalog here. Only `BTreeMap`s: iteration order, and so every
//! reply and snapshot, is the same on every replica.
//!
//! Every collection is bounded by [`ObjectStoreLimits`]; a write that would
//! grow past a limit gets `LimitExceeded` and changes nothing, which is what
//! makes `snapshot_size_max` a true bound.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::api::{
    upload_marker_key, upload_part_key, upload_parts_prefix, BucketEntry, ChunkRef,
    DeleteCondition, Limit, Object, ObjectEntry, ObjectMeta, Operation, PutCondition, Reply,
    Request, KEY_SIZE_MAX, LIST_LIMIT_MAX, MULTIPART_PART_SIZE_MIN, UPLOADS_NAMESPACE_BIT,
    USER_METADATA_SIZE_MAX,
};
use super::StateMachine;

/// Per-deployment bounds. `key_size_max` and `user_metadata_size_max` may
/// only lower the S3 maxima ([`KEY_SIZE_MAX`], [`USER_METADATA_SIZE_MAX`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectStoreLimits {
    pub buckets_max: usize,
    pub objects_max: usize,
    pub key_size_max: usize,
    pub user_metadata_size_max: usize,
    pub chunks_per_object_max: usize,
    /// Bytes of object data carried in the metadata op itself.
    pub inline_size_max: usize,
    /// Encoded bytes of all object records together (keys, metadata,
    /// chunk lists, inline data): what bounds a checkpoint in practice, as
    /// the per-object worst case times `objects_max` is far too large a
    /// bound (2 KiB of user metadata on every object).
    pub objects_bytes_max: usize,
}

impl ObjectStoreLimits {
    /// Which limit an object put (or a restored object) exceeds, checked
    /// in a fixed order so that every replica names the same one.
    pub fn object_exceeded(&self, key: &[u8], meta: &ObjectMeta) -> Option<Limit> {
        if key.len() > self.key_size_max {
            return Some(Limit::KeySize);
        }
        if meta.user_metadata_size() > self.user_metadata_size_max {
            return Some(Limit::UserMetadataSize);
        }
        if meta.chunks.len() > self.chunks_per_object_max {
            return Some(Limit::ChunksPerObject);
        }
        if meta.inline_data.len() > self.inline_size_max {
            return Some(Limit::InlineSize);
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The op that created the bucket: unique, so a re-created bucket never
    /// sees the objects of its namesake.
    pub id: u64,
    pub created_timestamp: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStore {
    pub(super) limits: ObjectStoreLimits,
    /// The last op applied by `commit`: ops arrive strictly increasing.
    pub(super) op_last: u64,
    pub(super) buckets: BTreeMap<Vec<u8>, Bucket>,
    pub(super) objects: BTreeMap<(u64, Vec<u8>), Object>,
    /// Sum of `record_size` over `objects` (never above objects_bytes_max).
    pub(super) objects_bytes: usize,
}

/// Bytes one object takes in a snapshot: bucket id, key with its prefix,
/// version, last-modified, metadata.
pub(super) fn record_size(key: &[u8], object: &Object) -> usize {
    8 + 4 + key.len() + 8 + 8 + object.meta.encoded_size()
}

impl ObjectStore {
    pub fn new(limits: ObjectStoreLimits) -> ObjectStore {
        assert!(limits.key_size_max >= 1);
        assert!(limits.key_size_max <= KEY_SIZE_MAX);
        assert!(limits.user_metadata_size_max <= USER_METADATA_SIZE_MAX);
        let store = ObjectStore {
            limits,
            op_last: 0,
            buckets: BTreeMap::new(),
            objects: BTreeMap::new(),
            objects_bytes: 0,
        };
        // Computing the bounds once here turns an overflowing configuration
        // into a panic at start-up rather than at the first checkpoint.
        let _ = store.snapshot_size_max();
        let _ = store.reply_size_max();
        store
    }

    pub fn limits(&self) -> ObjectStoreLimits {
        self.limits
    }

    pub fn op_last(&self) -> u64 {
        self.op_last
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Encoded bytes of all objects (bounded by `objects_bytes_max`).
    pub fn objects_bytes(&self) -> usize {
        self.objects_bytes
    }

    /// Every chunk the stored objects reference: the shard compares it with
    /// its chunk store (repair of missing chunks, collection of the rest).
    pub fn chunk_refs(&self) -> impl Iterator<Item = &ChunkRef> + '_ {
        self.objects.values().flat_map(|object| object.meta.chunks.iter())
    }

    fn execute(&mut self, op: u64, timestamp: u64, request: Request) -> Reply {
        match request {
            Request::CreateBucket { name } => self.bucket_create(op, timestamp, name),
            Request::DeleteBucket { name } => self.bucket_delete(&name),
            Request::PutObject { bucket_id, key, condition, object } => {
                self.object_put(op, timestamp, (bucket_id, key), condition, object)
            }
            Request::DeleteObject { bucket_id, key, condition } => {
                self.object_delete((bucket_id, key), condition)
            }
            Request::Batch(requests) => Reply::Batch(
                requests.into_iter().map(|request| self.execute(op, timestamp, request)).collect(),
            ),
            Request::CompleteMultipart { bucket_id, key, upload_id, condition, parts, object } => {
                self.multipart_complete(
                    op,
                    timestamp,
                    (bucket_id, key),
                    &upload_id,
                    condition,
                    &parts,
                    object,
                )
            }
            Request::AbortMultipart { bucket_id, upload_id } => {
                self.multipart_abort(bucket_id, &upload_id)
            }
            Request::HeadBucket { .. }
            | Request::ListBuckets
            | Request::HeadObject { .. }
            | Request::ListObjects { .. } => unreachable!("read-only request in commit"),
        }
    }

    fn bucket_create(&mut self, op: u64, timestamp: u64, name: Vec<u8>) -> Reply {
        if self.buckets.contains_key(&name) {
            return Reply::BucketAlreadyExists;
        }
        if self.buckets.len() >= self.limits.buckets_max {
            return Reply::LimitExceeded(Limit::Buckets);
        }
        self.buckets.insert(name, Bucket { id: op, created_timestamp: timestamp });
        assert!(self.buckets.len() <= self.limits.buckets_max);
        Reply::BucketCreated { id: op }
    }

    fn bucket_delete(&mut self, name: &[u8]) -> Reply {
        let Some(bucket) = self.buckets.get(name) else {
            return Reply::NoSuchBucket;
        };
        if self.bucket_has_objects(bucket.id) {
            return Reply::BucketNotEmpty;
        }
        self.buckets.remove(name);
        Reply::BucketDeleted
    }

    /// Objects of one bucket are contiguous in the map, starting at the
    /// empty key (which no object has).
    fn bucket_has_objects(&self, bucket_id: u64) -> bool {
        let from = (bucket_id, Vec::new());
        self.objects.range(from..).next().is_some_and(|((id, _), _)| *id == bucket_id)
    }

    fn object_put(
        &mut self,
        op: u64,
        timestamp: u64,
        key: (u64, Vec<u8>),
        condition: PutCondition,
        meta: ObjectMeta,
    ) -> Reply {
        if let Some(limit) = self.limits.object_exceeded(&key.1, &meta) {
            return Reply::LimitExceeded(limit);
        }
        let existing = self.objects.get(&key);
        // S3: If-Match on a key that does not exist is NoSuchKey, not 412.
        if matches!(condition, PutCondition::IfMatch(_)) && existing.is_none() {
            return Reply::NoSuchKey;
        }
        let condition_holds = match &condition {
            PutCondition::None => true,
            PutCondition::IfMatch(etag) => existing.is_some_and(|object| object.meta.etag == *etag),
            PutCondition::IfNoneMatchStar => existing.is_none(),
            PutCondition::KeyExists(other) => self.objects.contains_key(&(key.0, other.clone())),
        };
        if !condition_holds {
            return Reply::PreconditionFailed;
        }
        if existing.is_none() && self.objects.len() >= self.limits.objects_max {
            return Reply::LimitExceeded(Limit::Objects);
        }
        let size_old = existing.map_or(0, |object| record_size(&key.1, object));
        let object = Object { version: op, last_modified: timestamp, meta };
        let size_new = record_size(&key.1, &object);
        let bytes = self.objects_bytes - size_old + size_new;
        if bytes > self.limits.objects_bytes_max {
            return Reply::LimitExceeded(Limit::ObjectsBytes);
        }
        self.objects_bytes = bytes;
        self.objects.insert(key, object);
        assert!(self.objects.len() <= self.limits.objects_max);
        assert!(self.objects_bytes <= self.limits.objects_bytes_max);
        Reply::ObjectPut { version: op }
    }

    fn object_delete(&mut self, key: (u64, Vec<u8>), condition: DeleteCondition) -> Reply {
        let existing = self.objects.get(&key);
        if let DeleteCondition::IfMatch(etag) = &condition {
            if existing.is_none_or(|object| object.meta.etag != *etag) {
                return Reply::PreconditionFailed;
            }
        }
        let removed = self.objects.remove(&key);
        if let Some(object) = &removed {
            self.objects_bytes -= record_size(&key.1, object);
        }
        Reply::ObjectDeleted { existed: removed.is_some() }
    }

    /// The object from the listed parts of an upload: every part must exist
    /// with the ETag listed, and all but the last hold 5 MiB or more. On
    /// success the marker and every part of the upload (listed or not: the
    /// unlisted ones' chunks become garbage) are removed in the same commit;
    /// on failure nothing changes and the upload can be completed again.
    #[allow(clippy::too_many_arguments)]
    fn multipart_complete(
        &mut self,
        op: u64,
        timestamp: u64,
        key: (u64, Vec<u8>),
        upload_id: &[u8],
        condition: PutCondition,
        parts: &[(u16, Vec<u8>)],
        mut meta: ObjectMeta,
    ) -> Reply {
        let uploads = key.0 | UPLOADS_NAMESPACE_BIT;
        if !self.objects.contains_key(&(uploads, upload_marker_key(upload_id))) {
            return Reply::NoSuchUpload;
        }
        // Every part must exist before any size is judged (S3's order).
        for (index, (number, etag)) in parts.iter().enumerate() {
            let part = self.objects.get(&(uploads, upload_part_key(upload_id, *number)));
            if part.is_none_or(|part| part.meta.etag != *etag) {
                return Reply::InvalidPart { index: index as u32 };
            }
        }
        for (index, (number, _)) in parts.iter().enumerate() {
            let Some(part) = self.objects.get(&(uploads, upload_part_key(upload_id, *number)))
            else {
                unreachable!("checked above");
            };
            if index + 1 < parts.len() && part.meta.size < MULTIPART_PART_SIZE_MIN {
                return Reply::EntityTooSmall { index: index as u32 };
            }
            if meta.chunks.len() + part.meta.chunks.len() > self.limits.chunks_per_object_max {
                return Reply::LimitExceeded(Limit::ChunksPerObject);
            }
            meta.size += part.meta.size;
            meta.chunks.extend_from_slice(&part.meta.chunks);
        }
        let reply = self.object_put(op, timestamp, key, condition, meta);
        if matches!(reply, Reply::ObjectPut { .. }) {
            self.upload_remove(uploads, upload_id);
        }
        reply
    }

    fn multipart_abort(&mut self, bucket_id: u64, upload_id: &[u8]) -> Reply {
        let uploads = bucket_id | UPLOADS_NAMESPACE_BIT;
        if !self.objects.contains_key(&(uploads, upload_marker_key(upload_id))) {
            return Reply::NoSuchUpload;
        }
        self.upload_remove(uploads, upload_id);
        Reply::ObjectDeleted { existed: true }
    }

    /// Remove an upload's marker and parts.
    fn upload_remove(&mut self, uploads: u64, upload_id: &[u8]) {
        let prefix = upload_parts_prefix(upload_id);
        let mut keys: Vec<Vec<u8>> = self
            .objects
            .range((uploads, prefix.clone())..)
            .take_while(|((id, key), _)| *id == uploads && key.starts_with(&prefix))
            .map(|((_, key), _)| key.clone())
            .collect();
        keys.push(upload_marker_key(upload_id));
        for key in keys {
            if let Some(object) = self.objects.remove(&(uploads, key.clone())) {
                self.objects_bytes -= record_size(&key, &object);
            }
        }
    }

    fn read(&self, request: &Request) -> Reply {
        match request {
            Request::HeadBucket { name } => match self.buckets.get(name) {
                Some(bucket) => Reply::Bucket { id: bucket.id, created: bucket.created_timestamp },
                None => Reply::NoSuchBucket,
            },
            Request::ListBuckets => Reply::Buckets(
                self.buckets
                    .iter()
                    .map(|(name, bucket)| BucketEntry {
                        name: name.clone(),
                        id: bucket.id,
                        created: bucket.created_timestamp,
                    })
                    .collect(),
            ),
            Request::HeadObject { bucket_id, key } => {
                match self.objects.get(&(*bucket_id, key.clone())) {
                    Some(object) => Reply::Object(object.clone()),
                    None => Reply::NoSuchKey,
                }
            }
            Request::ListObjects { bucket_id, prefix, start_after, limit } => {
                self.list_objects(*bucket_id, prefix, start_after, *limit)
            }
            Request::CreateBucket { .. }
            | Request::DeleteBucket { .. }
            | Request::PutObject { .. }
            | Request::DeleteObject { .. }
            | Request::Batch(_)
            | Request::CompleteMultipart { .. }
            | Request::AbortMultipart { .. } => unreachable!("write request in query"),
        }
    }

    /// Keys of `bucket_id` with `prefix`, strictly after `start_after`, in
    /// byte order. Keys with a prefix are contiguous in byte order and start
    /// at the prefix itself, so the scan starts at the later of the two
    /// bounds and stops at the first key without the prefix.
    fn list_objects(&self, bucket_id: u64, prefix: &[u8], start_after: &[u8], limit: u32) -> Reply {
        let limit = limit.min(LIST_LIMIT_MAX) as usize;
        let from = if start_after >= prefix {
            Bound::Excluded((bucket_id, start_after.to_vec()))
        } else {
            Bound::Included((bucket_id, prefix.to_vec()))
        };
        let mut entries = Vec::new();
        let mut truncated = false;
        for ((id, key), object) in self.objects.range((from, Bound::Unbounded)) {
            if *id != bucket_id || !key.starts_with(prefix) {
                break;
            }
            if entries.len() == limit {
                truncated = true;
                break;
            }
            entries.push(ObjectEntry {
                key: key.clone(),
                size: object.meta.size,
                etag: object.meta.etag.clone(),
                version: object.version,
                last_modified: object.last_modified,
            });
        }
        assert!(entries.len() <= limit);
        Reply::Objects { entries, truncated }
    }
}

/// A request fit for `commit` (`read_only == false`) or `query` (`true`):
/// decodes, passes validation, and belongs to that class.
fn request_accept(operation: u8, body: &[u8], read_only: bool) -> Option<Request> {
    let request = Request::decode(operation, body).ok()?;
    request.validate().ok()?;
    (request.operation().read_only() == read_only).then_some(request)
}

impl StateMachine for ObjectStore {
    fn operation_read_only(operation: u8) -> Option<bool> {
        Operation::from_u8(operation).map(Operation::read_only)
    }

    fn request_valid(operation: u8, body: &[u8]) -> bool {
        Request::decode(operation, body).is_ok_and(|request| request.validate().is_ok())
    }

    fn commit(&mut self, op: u64, timestamp: u64, operation: u8, body: &[u8], reply: &mut Vec<u8>) {
        assert!(op > self.op_last, "commit out of order: op {op} after {}", self.op_last);
        self.op_last = op;
        let result = match request_accept(operation, body, false) {
            Some(request) => self.execute(op, timestamp, request),
            None => Reply::BadRequest,
        };
        result.encode(reply);
    }

    fn query(&self, operation: u8, body: &[u8], reply: &mut Vec<u8>) {
        let result = match request_accept(operation, body, true) {
            // The hot read (every GET and HEAD): encoded from the stored
            // object, not from a clone of it and its inline data, and
            // looked up by the decoded key itself (no key clone). Measured:
            // the one copy left now pays the cold read of the inline bytes
            // the clone paid before (perf/results/2026-12-03/query-no-clone/).
            Some(Request::HeadObject { bucket_id, key }) => {
                match self.objects.get(&(bucket_id, key)) {
                    Some(object) => return Reply::encode_object(object, reply),
                    None => Reply::NoSuchKey,
                }
            }
            Some(request) => self.read(&request),
            None => Reply::BadRequest,
        };
        result.encode(reply);
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        self.snapshot_encode(out);
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        *self = ObjectStore::snapshot_decode(self.limits, bytes)?;
        Ok(())
    }

    fn snapshot_size_max(&self) -> usize {
        self.snapshot_size_bound()
    }
}
