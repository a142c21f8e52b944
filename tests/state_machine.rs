//! `ObjectStore`: model-based tests against a trivially simple reference, the
//! request/reply/snapshot codecs, one test per limit, and the history checker
//! run over the real state machine.
//!
//! Each test says what it guards against. The model tests fail if any reply
//! of the store differs from the reference's for any generated sequence; the
//! codec tests fail on a lost field, a non-canonical encoding or a panic on
//! hostile bytes; the limit tests fail if a write grows state past a limit.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use toasty::sim::history::{check_history, CommittedOp, ObservedReply};
use toasty::vsr::state_machine::{
    BucketEntry, ChunkRef, DeleteCondition, Limit, Object, ObjectEntry, ObjectMeta, ObjectStore,
    ObjectStoreLimits, Operation, PutCondition, Reply, Request, StateMachine, LIST_LIMIT_MAX,
};

/// Small enough that random sequences hit every limit often.
const LIMITS_SMALL: ObjectStoreLimits = ObjectStoreLimits {
    buckets_max: 3,
    objects_max: 6,
    key_size_max: 4,
    user_metadata_size_max: 6,
    chunks_per_object_max: 2,
    inline_size_max: 4,
    objects_bytes_max: usize::MAX,
};

fn timestamp_of(op: u64) -> u64 {
    1_000_000 + op * 7
}

fn commit(store: &mut ObjectStore, op: u64, request: &Request) -> Reply {
    let mut body = Vec::new();
    let operation = request.encode(&mut body);
    let mut reply = Vec::new();
    store.commit(op, timestamp_of(op), operation, &body, &mut reply);
    Reply::decode(&reply).expect("every reply of the store decodes")
}

fn query(store: &ObjectStore, request: &Request) -> Reply {
    let mut body = Vec::new();
    let operation = request.encode(&mut body);
    let mut reply = Vec::new();
    store.query(operation, &body, &mut reply);
    Reply::decode(&reply).expect("every reply of the store decodes")
}

fn snapshot_of(store: &ObjectStore) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.snapshot(&mut bytes);
    bytes
}

// ---------------------------------------------------------------------------
// The reference model: the obvious implementation, sharing no code with the
// store but the types. Lists are linear scans; validity is re-stated.

struct Model {
    limits: ObjectStoreLimits,
    buckets: BTreeMap<Vec<u8>, (u64, u64)>,
    objects: BTreeMap<(u64, Vec<u8>), Object>,
}

fn model_meta_valid(meta: &ObjectMeta) -> bool {
    let names: Vec<&Vec<u8>> = meta.user_metadata.iter().map(|(name, _)| name).collect();
    let metadata_size: usize = meta.user_metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
    let data_valid = if meta.chunks.is_empty() {
        meta.size == meta.inline_data.len() as u64
    } else {
        meta.inline_data.is_empty()
            && meta.chunks.iter().all(|chunk| chunk.length > 0)
            && meta.size == meta.chunks.iter().map(|chunk| chunk.length as u64).sum::<u64>()
    };
    meta.etag.len() <= 64
        && meta.content_type.len() <= 256
        && names.iter().all(|name| !name.is_empty())
        && names.windows(2).all(|pair| pair[0] < pair[1])
        && metadata_size <= 2048
        && data_valid
}

fn model_valid(request: &Request) -> bool {
    let name_valid = |name: &Vec<u8>| (1..=63).contains(&name.len());
    let key_valid = |key: &Vec<u8>| (1..=1024).contains(&key.len());
    match request {
        Request::CreateBucket { name }
        | Request::DeleteBucket { name }
        | Request::HeadBucket { name } => name_valid(name),
        Request::PutObject { key, condition, object, .. } => {
            let etag_valid = match condition {
                PutCondition::IfMatch(etag) => etag.len() <= 64,
                _ => true,
            };
            key_valid(key) && etag_valid && model_meta_valid(object)
        }
        Request::DeleteObject { key, condition, .. } => {
            let etag_valid = match condition {
                DeleteCondition::IfMatch(etag) => etag.len() <= 64,
                DeleteCondition::None => true,
            };
            key_valid(key) && etag_valid
        }
        Request::Batch(requests) => {
            (1..=64).contains(&requests.len())
                && requests.iter().all(|request| {
                    matches!(request, Request::PutObject { .. } | Request::DeleteObject { .. })
                        && model_valid(request)
                })
        }
        // Not generated for the model (multipart_* tests below cover them).
        Request::CompleteMultipart { .. } | Request::AbortMultipart { .. } => false,
        Request::ListBuckets => true,
        Request::HeadObject { key, .. } => key_valid(key),
        Request::ListObjects { prefix, start_after, .. } => {
            prefix.len() <= 1024 && start_after.len() <= 1024
        }
    }
}

impl Model {
    fn new(limits: ObjectStoreLimits) -> Model {
        Model { limits, buckets: BTreeMap::new(), objects: BTreeMap::new() }
    }

    fn write(&mut self, op: u64, request: &Request) -> Reply {
        if !model_valid(request) {
            return Reply::BadRequest;
        }
        match request.clone() {
            Request::CreateBucket { name } => {
                if self.buckets.contains_key(&name) {
                    Reply::BucketAlreadyExists
                } else if self.buckets.len() == self.limits.buckets_max {
                    Reply::LimitExceeded(Limit::Buckets)
                } else {
                    self.buckets.insert(name, (op, timestamp_of(op)));
                    Reply::BucketCreated { id: op }
                }
            }
            Request::DeleteBucket { name } => match self.buckets.get(&name) {
                None => Reply::NoSuchBucket,
                Some(&(id, _)) if self.objects.keys().any(|(bucket, _)| *bucket == id) => {
                    Reply::BucketNotEmpty
                }
                Some(_) => {
                    self.buckets.remove(&name);
                    Reply::BucketDeleted
                }
            },
            Request::PutObject { bucket_id, key, condition, object } => {
                self.put(op, (bucket_id, key), condition, object)
            }
            Request::DeleteObject { bucket_id, key, condition } => {
                let existing = self.objects.get(&(bucket_id, key.clone()));
                if let DeleteCondition::IfMatch(etag) = condition {
                    if existing.map(|object| &object.meta.etag) != Some(&etag) {
                        return Reply::PreconditionFailed;
                    }
                }
                Reply::ObjectDeleted { existed: self.objects.remove(&(bucket_id, key)).is_some() }
            }
            Request::Batch(requests) => {
                Reply::Batch(requests.iter().map(|request| self.write(op, request)).collect())
            }
            _ => Reply::BadRequest, // a read sent to commit
        }
    }

    fn put(
        &mut self,
        op: u64,
        key: (u64, Vec<u8>),
        condition: PutCondition,
        meta: ObjectMeta,
    ) -> Reply {
        let metadata_size: usize = meta.user_metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        if key.1.len() > self.limits.key_size_max {
            return Reply::LimitExceeded(Limit::KeySize);
        }
        if metadata_size > self.limits.user_metadata_size_max {
            return Reply::LimitExceeded(Limit::UserMetadataSize);
        }
        if meta.chunks.len() > self.limits.chunks_per_object_max {
            return Reply::LimitExceeded(Limit::ChunksPerObject);
        }
        if meta.inline_data.len() > self.limits.inline_size_max {
            return Reply::LimitExceeded(Limit::InlineSize);
        }
        let existing_etag = self.objects.get(&key).map(|object| object.meta.etag.clone());
        if matches!(condition, PutCondition::IfMatch(_)) && existing_etag.is_none() {
            return Reply::NoSuchKey;
        }
        let holds = match condition {
            PutCondition::None => true,
            PutCondition::IfMatch(etag) => existing_etag == Some(etag),
            PutCondition::IfNoneMatchStar => existing_etag.is_none(),
            PutCondition::KeyExists(other) => self.objects.contains_key(&(key.0, other)),
        };
        if !holds {
            return Reply::PreconditionFailed;
        }
        if existing_etag.is_none() && self.objects.len() == self.limits.objects_max {
            return Reply::LimitExceeded(Limit::Objects);
        }
        let object = Object { version: op, last_modified: timestamp_of(op), meta };
        self.objects.insert(key, object);
        Reply::ObjectPut { version: op }
    }

    fn read(&self, request: &Request) -> Reply {
        if !model_valid(request) {
            return Reply::BadRequest;
        }
        match request {
            Request::HeadBucket { name } => match self.buckets.get(name) {
                Some(&(id, created)) => Reply::Bucket { id, created },
                None => Reply::NoSuchBucket,
            },
            Request::ListBuckets => Reply::Buckets(
                self.buckets
                    .iter()
                    .map(|(name, &(id, created))| BucketEntry { name: name.clone(), id, created })
                    .collect(),
            ),
            Request::HeadObject { bucket_id, key } => {
                match self.objects.get(&(*bucket_id, key.clone())) {
                    Some(object) => Reply::Object(object.clone()),
                    None => Reply::NoSuchKey,
                }
            }
            Request::ListObjects { bucket_id, prefix, start_after, limit } => {
                self.list(*bucket_id, prefix, start_after, *limit)
            }
            _ => Reply::BadRequest, // a write sent to query
        }
    }

    fn list(&self, bucket_id: u64, prefix: &[u8], start_after: &[u8], limit: u32) -> Reply {
        let limit = limit.min(1000) as usize;
        let matching: Vec<ObjectEntry> = self
            .objects
            .iter()
            .filter(|((bucket, key), _)| {
                *bucket == bucket_id && key.starts_with(prefix) && key.as_slice() > start_after
            })
            .map(|((_, key), object)| ObjectEntry {
                key: key.clone(),
                size: object.meta.size,
                etag: object.meta.etag.clone(),
                version: object.version,
                last_modified: object.last_modified,
            })
            .collect();
        let truncated = matching.len() > limit;
        Reply::Objects { entries: matching.into_iter().take(limit).collect(), truncated }
    }
}

// ---------------------------------------------------------------------------
// Generators. Small alphabets make names, keys and etags collide often.

fn bytes_from(alphabet: &'static [u8], sizes: std::ops::Range<usize>) -> BoxedStrategy<Vec<u8>> {
    vec(select(alphabet), sizes).boxed()
}

fn bucket_name() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![30 => bytes_from(b"ab", 1..3), 1 => vec(any::<u8>(), 0..70)].boxed()
}

/// A few common keys (so puts overwrite and conditions see existing keys)
/// and a tail of others. Empty keys are invalid; keys of 5 bytes exceed
/// `LIMITS_SMALL`.
fn key() -> BoxedStrategy<Vec<u8>> {
    let common: Vec<Vec<u8>> =
        [&b"a"[..], b"a/", b"a/b", b"ab", b"b"].iter().map(|key| key.to_vec()).collect();
    prop_oneof![6 => select(common), 1 => bytes_from(b"ab/", 0..6)].boxed()
}

fn etag() -> BoxedStrategy<Vec<u8>> {
    let common = select(vec![b"e1".to_vec(), b"e2".to_vec(), Vec::new()]);
    prop_oneof![30 => common, 1 => Just(vec![b'x'; 65])].boxed()
}

/// Sorted and unique most of the time; sometimes not (invalid).
fn user_metadata() -> BoxedStrategy<Vec<(Vec<u8>, Vec<u8>)>> {
    (vec((bytes_from(b"xy", 1..3), bytes_from(b"v", 0..4)), 0..3), 0..20u8)
        .prop_map(|(mut entries, unsorted)| {
            if unsorted != 0 {
                entries.sort();
                entries.dedup_by(|a, b| a.0 == b.0);
            }
            entries
        })
        .boxed()
}

fn chunk() -> BoxedStrategy<ChunkRef> {
    (any::<[u8; 16]>(), prop_oneof![30 => 1u32..100, 1 => Just(0u32)], any::<u32>())
        .prop_map(|(id, length, crc32c)| ChunkRef { id, length, crc32c })
        .boxed()
}

/// Consistent size most of the time; inline or chunked.
fn object_meta() -> BoxedStrategy<ObjectMeta> {
    let data = prop_oneof![
        8 => bytes_from(b"d", 0..6).prop_map(|inline| (Vec::new(), inline)),
        6 => vec(chunk(), 1..3).prop_map(|chunks| (chunks, Vec::new())),
        1 => vec(chunk(), 3..4).prop_map(|chunks| (chunks, Vec::new())),
    ];
    let content_type = prop_oneof![30 => bytes_from(b"t/", 0..5), 1 => Just(vec![b't'; 257])];
    let size_error = prop_oneof![30 => Just(0u64), 1 => 1u64..3];
    let checksum = proptest::option::of(any::<u32>());
    (etag(), checksum.clone(), checksum, content_type, user_metadata(), data, size_error)
        .prop_map(|(etag, crc32c, crc32, content_type, user_metadata, data, size_error)| {
            let (chunks, inline_data) = data;
            let size = chunks.iter().map(|c: &ChunkRef| c.length as u64).sum::<u64>()
                + inline_data.len() as u64
                + size_error;
            ObjectMeta {
                size,
                etag,
                checksum_crc32c: crc32c,
                checksum_crc32: crc32,
                content_type,
                user_metadata,
                chunks,
                inline_data,
            }
        })
        .boxed()
}

/// Mostly two ids, so objects pile up in a bucket; sometimes one that a
/// CreateBucket of a short run got (bucket ids are ops).
fn bucket_id() -> BoxedStrategy<u64> {
    prop_oneof![4 => 1u64..3, 1 => 0u64..12].boxed()
}

/// A prefix or start_after: mostly ones that split the common keys.
fn list_bound() -> BoxedStrategy<Vec<u8>> {
    let common: Vec<Vec<u8>> =
        [&b""[..], b"", b"a", b"a/", b"ab", b"b"].iter().map(|bound| bound.to_vec()).collect();
    prop_oneof![4 => select(common), 1 => bytes_from(b"ab/", 0..4)].boxed()
}

/// Mostly batches of object writes, sometimes an invalid one (empty, too
/// long, or holding another request).
fn batch() -> BoxedStrategy<Request> {
    prop_oneof![
        20 => vec(object_write(), 1..6).prop_map(Request::Batch),
        1 => Just(Request::Batch(Vec::new())),
        1 => vec(object_write(), 65..67).prop_map(Request::Batch),
        1 => (object_write(), bucket_name())
            .prop_map(|(write, name)| Request::Batch(vec![write, Request::CreateBucket { name }])),
    ]
    .boxed()
}

fn object_write() -> BoxedStrategy<Request> {
    request()
        .prop_filter("object writes only", |request| {
            matches!(request, Request::PutObject { .. } | Request::DeleteObject { .. })
        })
        .boxed()
}

fn request_or_batch() -> BoxedStrategy<Request> {
    prop_oneof![8 => request(), 1 => batch()].boxed()
}

fn request() -> BoxedStrategy<Request> {
    let put_condition = prop_oneof![
        4 => Just(PutCondition::None),
        2 => etag().prop_map(PutCondition::IfMatch),
        2 => Just(PutCondition::IfNoneMatchStar),
    ];
    let delete_condition = prop_oneof![
        3 => Just(DeleteCondition::None),
        1 => etag().prop_map(DeleteCondition::IfMatch),
    ];
    let limit = prop_oneof![8 => 0u32..5, 1 => Just(5000u32)];
    prop_oneof![
        3 => bucket_name().prop_map(|name| Request::CreateBucket { name }),
        2 => bucket_name().prop_map(|name| Request::DeleteBucket { name }),
        8 => (bucket_id(), key(), put_condition, object_meta()).prop_map(
            |(bucket_id, key, condition, object)| Request::PutObject {
                bucket_id,
                key,
                condition,
                object
            }
        ),
        3 => (bucket_id(), key(), delete_condition)
            .prop_map(|(bucket_id, key, condition)| Request::DeleteObject {
                bucket_id,
                key,
                condition
            }),
        2 => bucket_name().prop_map(|name| Request::HeadBucket { name }),
        1 => Just(Request::ListBuckets),
        3 => (bucket_id(), key())
            .prop_map(|(bucket_id, key)| Request::HeadObject { bucket_id, key }),
        3 => (bucket_id(), list_bound(), list_bound(), limit).prop_map(
            |(bucket_id, prefix, start_after, limit)| Request::ListObjects {
                bucket_id,
                prefix,
                start_after,
                limit
            }
        ),
    ]
    .boxed()
}

#[derive(Clone, Debug)]
enum Step {
    /// Writes to `commit`, reads to `query`.
    Request(Request),
    /// A request to the wrong entry point: must be BadRequest, no effect.
    WrongClass(Request),
    /// Raw bytes under some operation code.
    Garbage(u8, Vec<u8>),
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        40 => request_or_batch().prop_map(Step::Request),
        1 => request_or_batch().prop_map(Step::WrongClass),
        1 => (any::<u8>(), vec(any::<u8>(), 0..40))
            .prop_map(|(code, body)| Step::Garbage(code, body)),
    ]
    .boxed()
}

/// Run one step on store and model; return both replies. `op` advances for
/// every step that goes to `commit`.
fn run_step(
    store: &mut ObjectStore,
    model: &mut Model,
    op: &mut u64,
    step: &Step,
) -> (Reply, Reply) {
    let (request, to_commit) = match step {
        Step::Request(request) => (request.clone(), !request.operation().read_only()),
        Step::WrongClass(request) => (request.clone(), request.operation().read_only()),
        Step::Garbage(code, body) => return run_garbage(store, model, op, *code, body),
    };
    if to_commit {
        *op += 1;
        (commit(store, *op, &request), model.write(*op, &request))
    } else {
        (query(store, &request), model.read(&request))
    }
}

fn run_garbage(
    store: &mut ObjectStore,
    model: &mut Model,
    op: &mut u64,
    code: u8,
    body: &[u8],
) -> (Reply, Reply) {
    let decoded = Request::decode(code, body).ok();
    let mut reply = Vec::new();
    match <ObjectStore as StateMachine>::operation_read_only(code) {
        Some(true) => {
            store.query(code, body, &mut reply);
            let expected = decoded.map_or(Reply::BadRequest, |request| model.read(&request));
            (Reply::decode(&reply).unwrap(), expected)
        }
        // Unknown codes go to commit too: the store must not panic on them.
        Some(false) | None => {
            *op += 1;
            store.commit(*op, timestamp_of(*op), code, body, &mut reply);
            let expected = decoded.map_or(Reply::BadRequest, |request| model.write(*op, &request));
            (Reply::decode(&reply).unwrap(), expected)
        }
    }
}

fn run_and_compare(
    store: &mut ObjectStore,
    model: &mut Model,
    op: &mut u64,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    for (i, step) in steps.iter().enumerate() {
        let (got, expected) = run_step(store, model, op, step);
        prop_assert_eq!(&got, &expected, "step {} ({:?})", i, step);
        let mut encoded = Vec::new();
        expected.encode(&mut encoded);
        let mut raw = Vec::new();
        got.encode(&mut raw);
        prop_assert_eq!(raw, encoded);
        prop_assert!(store.bucket_count() <= store.limits().buckets_max);
        prop_assert!(store.object_count() <= store.limits().objects_max);
        prop_assert_eq!(store.object_count(), model.objects.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Fails if any reply of the store differs from the model's.
    #[test]
    fn store_matches_model(steps in vec(step(), 1..80)) {
        let mut store = ObjectStore::new(LIMITS_SMALL);
        let mut model = Model::new(LIMITS_SMALL);
        run_and_compare(&mut store, &mut model, &mut 0, &steps)?;
    }

    /// Fails if a snapshot loses or reorders state, is not canonical, or the
    /// restored store behaves differently from the original afterwards.
    #[test]
    fn snapshot_restore_is_identical(before in vec(step(), 0..60), after in vec(step(), 0..40)) {
        let mut store = ObjectStore::new(LIMITS_SMALL);
        let mut model = Model::new(LIMITS_SMALL);
        let mut op = 0;
        run_and_compare(&mut store, &mut model, &mut op, &before)?;
        let bytes = snapshot_of(&store);
        prop_assert!(bytes.len() <= store.snapshot_size_max());
        let mut restored = ObjectStore::new(LIMITS_SMALL);
        restored.restore(&bytes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&snapshot_of(&restored), &bytes);
        prop_assert_eq!(&restored, &store);
        let mut op_restored = op;
        let mut model_restored = Model::new(LIMITS_SMALL);
        model_restored.buckets = model.buckets.clone();
        model_restored.objects = model.objects.clone();
        run_and_compare(&mut store, &mut model, &mut op, &after)?;
        run_and_compare(&mut restored, &mut model_restored, &mut op_restored, &after)?;
        prop_assert_eq!(snapshot_of(&store), snapshot_of(&restored));
    }

    /// Fails if request_valid admits a request commit rejects, or the reverse.
    #[test]
    fn request_valid_agrees_with_commit(request in request()) {
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        let valid = <ObjectStore as StateMachine>::request_valid(operation, &body);
        prop_assert_eq!(valid, model_valid(&request));
        if !request.operation().read_only() {
            let mut store = ObjectStore::new(LIMITS_SMALL);
            prop_assert_eq!(commit(&mut store, 1, &request) == Reply::BadRequest, !valid);
        }
    }
}

// ---------------------------------------------------------------------------
// Codecs: arbitrary field values (valid or not) roundtrip; hostile bytes
// never panic; whatever decodes re-encodes to the same bytes (canonical).

fn any_bytes() -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..12).boxed()
}

fn any_meta() -> BoxedStrategy<ObjectMeta> {
    let checksum = proptest::option::of(any::<u32>());
    (
        any::<u64>(),
        any_bytes(),
        checksum.clone(),
        checksum,
        any_bytes(),
        vec((any_bytes(), any_bytes()), 0..3),
        vec(any::<([u8; 16], u32, u32)>(), 0..3),
        any_bytes(),
    )
        .prop_map(
            |(size, etag, crc32c, crc32, content_type, user_metadata, chunks, inline_data)| {
                let chunks = chunks
                    .into_iter()
                    .map(|(id, length, crc32c)| ChunkRef { id, length, crc32c })
                    .collect();
                ObjectMeta {
                    size,
                    etag,
                    checksum_crc32c: crc32c,
                    checksum_crc32: crc32,
                    content_type,
                    user_metadata,
                    chunks,
                    inline_data,
                }
            },
        )
        .boxed()
}

/// Any request, batches included (a batch never nests: the codec refuses).
fn any_request() -> BoxedStrategy<Request> {
    let leaf = any_request_leaf();
    prop_oneof![4 => leaf.clone(), 1 => vec(leaf, 0..4).prop_map(Request::Batch)].boxed()
}

fn any_request_leaf() -> BoxedStrategy<Request> {
    let put_condition = prop_oneof![
        Just(PutCondition::None),
        any_bytes().prop_map(PutCondition::IfMatch),
        Just(PutCondition::IfNoneMatchStar),
        any_bytes().prop_map(PutCondition::KeyExists),
    ];
    let delete_condition =
        prop_oneof![Just(DeleteCondition::None), any_bytes().prop_map(DeleteCondition::IfMatch)];
    prop_oneof![
        any_bytes().prop_map(|name| Request::CreateBucket { name }),
        any_bytes().prop_map(|name| Request::DeleteBucket { name }),
        (any::<u64>(), any_bytes(), put_condition, any_meta()).prop_map(
            |(bucket_id, key, condition, object)| {
                Request::PutObject { bucket_id, key, condition, object }
            }
        ),
        (any::<u64>(), any_bytes(), delete_condition).prop_map(|(bucket_id, key, condition)| {
            Request::DeleteObject { bucket_id, key, condition }
        }),
        any_bytes().prop_map(|name| Request::HeadBucket { name }),
        Just(Request::ListBuckets),
        (any::<u64>(), any_bytes())
            .prop_map(|(bucket_id, key)| Request::HeadObject { bucket_id, key }),
        (any::<u64>(), any_bytes(), any_bytes(), any::<u32>()).prop_map(
            |(bucket_id, prefix, start_after, limit)| {
                Request::ListObjects { bucket_id, prefix, start_after, limit }
            }
        ),
    ]
    .boxed()
}

fn any_reply() -> BoxedStrategy<Reply> {
    let leaf = any_reply_leaf();
    prop_oneof![4 => leaf.clone(), 1 => vec(leaf, 0..4).prop_map(Reply::Batch)].boxed()
}

fn any_reply_leaf() -> BoxedStrategy<Reply> {
    let bucket_entry = (any_bytes(), any::<u64>(), any::<u64>())
        .prop_map(|(name, id, created)| BucketEntry { name, id, created });
    let object_entry = (any_bytes(), any::<u64>(), any_bytes(), any::<u64>(), any::<u64>())
        .prop_map(|(key, size, etag, version, last_modified)| ObjectEntry {
            key,
            size,
            etag,
            version,
            last_modified,
        });
    let object = (any::<u64>(), any::<u64>(), any_meta())
        .prop_map(|(version, last_modified, meta)| Object { version, last_modified, meta });
    prop_oneof![
        any::<u64>().prop_map(|id| Reply::BucketCreated { id }),
        Just(Reply::BucketAlreadyExists),
        Just(Reply::BucketDeleted),
        Just(Reply::NoSuchBucket),
        Just(Reply::BucketNotEmpty),
        (any::<u64>(), any::<u64>()).prop_map(|(id, created)| Reply::Bucket { id, created }),
        vec(bucket_entry, 0..3).prop_map(Reply::Buckets),
        any::<u64>().prop_map(|version| Reply::ObjectPut { version }),
        Just(Reply::PreconditionFailed),
        any::<bool>().prop_map(|existed| Reply::ObjectDeleted { existed }),
        object.prop_map(Reply::Object),
        Just(Reply::NoSuchKey),
        (vec(object_entry, 0..3), any::<bool>())
            .prop_map(|(entries, truncated)| Reply::Objects { entries, truncated }),
        select(Limit::ALL.to_vec()).prop_map(Reply::LimitExceeded),
        Just(Reply::BadRequest),
    ]
    .boxed()
}

/// The chunk references of the puts in `request`, in order.
fn put_refs(request: &Request) -> Vec<ChunkRef> {
    match request {
        Request::PutObject { object, .. } => object.chunks.clone(),
        Request::Batch(requests) => requests.iter().flat_map(put_refs).collect(),
        _ => Vec::new(),
    }
}

/// Overwrite one byte of `bytes` (if any) at `index` with `value`.
fn mutate(mut bytes: Vec<u8>, index: Index, value: u8) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = index.index(bytes.len());
        bytes[i] = value;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Fails if a field is lost, reordered or mis-tagged by the codec.
    #[test]
    fn request_roundtrips(request in any_request()) {
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        prop_assert_eq!(operation, request.operation() as u8);
        prop_assert_eq!(Request::decode(operation, &body), Ok(request));
        // Canonical: trailing bytes and any truncation are rejected.
        let mut longer = body.clone();
        longer.push(0);
        prop_assert!(Request::decode(operation, &longer).is_err());
        if !body.is_empty() {
            prop_assert!(Request::decode(operation, &body[..body.len() - 1]).is_err());
        }
    }

    #[test]
    fn reply_roundtrips(reply in any_reply()) {
        let mut body = Vec::new();
        reply.encode(&mut body);
        prop_assert_eq!(Reply::decode(&body), Ok(reply));
        body.push(0);
        prop_assert!(Reply::decode(&body).is_err());
    }

    /// Fails on a panic, or on two byte strings decoding to one value.
    #[test]
    fn request_decode_of_any_bytes(code in any::<u8>(), body in vec(any::<u8>(), 0..64)) {
        if let Ok(request) = Request::decode(code, &body) {
            let mut again = Vec::new();
            prop_assert_eq!(request.encode(&mut again), code);
            prop_assert_eq!(again, body);
        }
    }

    /// Fails if the chunk service's walk (`Request::put_chunk_refs`) and the
    /// full decode disagree on any bytes: on accepting them, or on which
    /// chunk references a put carries.
    #[test]
    fn put_chunk_refs_match_the_decoded_request(
        request in any_request(),
        index in any::<Index>(),
        value in any::<u8>(),
        mutated in any::<bool>(),
    ) {
        let mut body = Vec::new();
        let code = request.encode(&mut body);
        let body = if mutated { mutate(body, index, value) } else { body };
        let mut refs = Vec::new();
        let walked = Request::put_chunk_refs(code, &body, &mut refs);
        let walks = code == Operation::PutObject as u8 || code == Operation::Batch as u8;
        match Request::decode(code, &body) {
            Ok(decoded) => {
                prop_assert!(walked.is_ok());
                prop_assert_eq!(refs, put_refs(&decoded));
            }
            Err(_) => {
                prop_assert_eq!(walked.is_err(), walks);
                prop_assert!(refs.is_empty());
            }
        }
    }

    #[test]
    fn request_decode_of_mutated_bytes(
        request in any_request(),
        index in any::<Index>(),
        value in any::<u8>(),
    ) {
        let mut body = Vec::new();
        let code = request.encode(&mut body);
        let body = mutate(body, index, value);
        if let Ok(request) = Request::decode(code, &body) {
            let mut again = Vec::new();
            request.encode(&mut again);
            prop_assert_eq!(&again, &body);
        }
        // The store must survive it too.
        let mut store = ObjectStore::new(LIMITS_SMALL);
        let mut reply = Vec::new();
        store.commit(1, 1, code, &body, &mut reply);
        store.query(code, &body, &mut reply);
    }

    #[test]
    fn reply_decode_of_any_and_mutated_bytes(
        reply in any_reply(),
        noise in vec(any::<u8>(), 0..64),
        index in any::<Index>(),
        value in any::<u8>(),
    ) {
        let mut body = Vec::new();
        reply.encode(&mut body);
        for bytes in [mutate(body, index, value), noise] {
            if let Ok(reply) = Reply::decode(&bytes) {
                let mut again = Vec::new();
                reply.encode(&mut again);
                prop_assert_eq!(again, bytes);
            }
        }
    }

    /// Fails if restore panics on a damaged checkpoint, or accepts bytes
    /// that are not the canonical snapshot of the state it built.
    #[test]
    fn restore_of_damaged_snapshots(
        steps in vec(step(), 0..30),
        index in any::<Index>(),
        value in any::<u8>(),
        noise in vec(any::<u8>(), 0..64),
    ) {
        let mut store = ObjectStore::new(LIMITS_SMALL);
        let mut model = Model::new(LIMITS_SMALL);
        run_and_compare(&mut store, &mut model, &mut 0, &steps)?;
        let bytes = snapshot_of(&store);
        for prefix in 0..bytes.len() {
            prop_assert!(ObjectStore::new(LIMITS_SMALL).restore(&bytes[..prefix]).is_err());
        }
        for damaged in [mutate(bytes.clone(), index, value), noise] {
            let mut restored = ObjectStore::new(LIMITS_SMALL);
            match restored.restore(&damaged) {
                Ok(()) => prop_assert_eq!(snapshot_of(&restored), damaged),
                Err(_) => prop_assert_eq!(&restored, &ObjectStore::new(LIMITS_SMALL)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One test per limit: the write at the limit succeeds, the one past it gets
// LimitExceeded and changes nothing.

fn put_request(bucket_id: u64, key: &[u8], meta: ObjectMeta) -> Request {
    Request::PutObject { bucket_id, key: key.to_vec(), condition: PutCondition::None, object: meta }
}

fn inline(data: &[u8], etag: &[u8]) -> ObjectMeta {
    ObjectMeta {
        size: data.len() as u64,
        etag: etag.to_vec(),
        inline_data: data.to_vec(),
        ..ObjectMeta::default()
    }
}

/// Commit `request` as op `op` and check that it was refused for `limit`
/// without changing the state.
fn assert_refused(store: &mut ObjectStore, op: u64, request: &Request, limit: Limit) {
    // Only op_last may move: the expected state is the old one after a
    // no-effect write with the same op.
    let mut expected = store.clone();
    commit(&mut expected, op, &Request::DeleteBucket { name: b"none".to_vec() });
    assert_eq!(commit(store, op, request), Reply::LimitExceeded(limit));
    assert_eq!(store, &expected);
}

#[test]
fn limit_buckets_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    for (op, name) in [(1, b"a"), (2, b"b"), (3, b"c")] {
        assert_eq!(
            commit(&mut store, op, &Request::CreateBucket { name: name.to_vec() }),
            Reply::BucketCreated { id: op }
        );
    }
    assert_refused(&mut store, 4, &Request::CreateBucket { name: b"d".to_vec() }, Limit::Buckets);
    // An existing name is reported as such even when full.
    assert_eq!(
        commit(&mut store, 5, &Request::CreateBucket { name: b"a".to_vec() }),
        Reply::BucketAlreadyExists
    );
    assert_eq!(
        commit(&mut store, 6, &Request::DeleteBucket { name: b"a".to_vec() }),
        Reply::BucketDeleted
    );
    assert_eq!(
        commit(&mut store, 7, &Request::CreateBucket { name: b"d".to_vec() }),
        Reply::BucketCreated { id: 7 }
    );
}

#[test]
fn limit_objects_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    for op in 1..=6u64 {
        let key = [b'a' + op as u8];
        assert_eq!(
            commit(&mut store, op, &put_request(1, &key, inline(b"x", b"e"))),
            Reply::ObjectPut { version: op }
        );
    }
    assert_refused(&mut store, 7, &put_request(1, b"z", inline(b"x", b"e")), Limit::Objects);
    // Overwriting an existing key does not grow the store: allowed.
    assert_eq!(
        commit(&mut store, 8, &put_request(1, b"b", inline(b"y", b"e"))),
        Reply::ObjectPut { version: 8 }
    );
    assert_eq!(store.object_count(), 6);
}

#[test]
fn limit_key_size_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    assert_eq!(
        commit(&mut store, 1, &put_request(1, b"abcd", inline(b"", b""))),
        Reply::ObjectPut { version: 1 }
    );
    assert_refused(&mut store, 2, &put_request(1, b"abcde", inline(b"", b"")), Limit::KeySize);
}

#[test]
fn limit_user_metadata_size_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let mut meta = inline(b"", b"");
    meta.user_metadata = vec![(b"ab".to_vec(), b"cd".to_vec()), (b"e".to_vec(), b"f".to_vec())];
    assert_eq!(
        commit(&mut store, 1, &put_request(1, b"k", meta.clone())),
        Reply::ObjectPut { version: 1 }
    );
    meta.user_metadata[1].1.push(b'g'); // 7 bytes of names and values
    assert_refused(&mut store, 2, &put_request(1, b"j", meta), Limit::UserMetadataSize);
}

#[test]
fn limit_chunks_per_object_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let chunk = ChunkRef { id: [7; 16], length: 10, crc32c: 1 };
    let mut meta = ObjectMeta { size: 20, chunks: vec![chunk; 2], ..ObjectMeta::default() };
    assert_eq!(
        commit(&mut store, 1, &put_request(1, b"k", meta.clone())),
        Reply::ObjectPut { version: 1 }
    );
    meta.chunks.push(chunk);
    meta.size = 30;
    assert_refused(&mut store, 2, &put_request(1, b"j", meta), Limit::ChunksPerObject);
}

#[test]
fn limit_inline_size_max() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    assert_eq!(
        commit(&mut store, 1, &put_request(1, b"k", inline(b"1234", b""))),
        Reply::ObjectPut { version: 1 }
    );
    assert_refused(&mut store, 2, &put_request(1, b"j", inline(b"12345", b"")), Limit::InlineSize);
}

/// Fails if `snapshot_size_max` is below what a full store writes (the
/// checkpoint would not fit) or loose by even a byte for these limits.
#[test]
fn snapshot_size_max_is_reached_by_a_full_store() {
    for inline_size_max in [300, 10] {
        let limits = ObjectStoreLimits {
            buckets_max: 4,
            objects_max: 5,
            key_size_max: 1024,
            // At most 256 distinct one-byte names: the worst case is reachable.
            user_metadata_size_max: 200,
            chunks_per_object_max: 10,
            inline_size_max,
            objects_bytes_max: usize::MAX,
        };
        let mut store = ObjectStore::new(limits);
        let mut op = 0;
        for i in 0..limits.buckets_max {
            op += 1;
            let name = vec![b'a' + i as u8; 63];
            assert_eq!(
                commit(&mut store, op, &Request::CreateBucket { name }),
                Reply::BucketCreated { id: op }
            );
        }
        for i in 0..limits.objects_max {
            op += 1;
            let mut key = vec![b'k'; 1024];
            key[1023] = i as u8;
            let reply = commit(&mut store, op, &put_request(u64::MAX, &key, meta_largest(&limits)));
            assert_eq!(reply, Reply::ObjectPut { version: op });
        }
        assert_eq!(snapshot_of(&store).len(), store.snapshot_size_max());
    }
}

/// The largest object meta `limits` admit.
fn meta_largest(limits: &ObjectStoreLimits) -> ObjectMeta {
    let user_metadata =
        (0..limits.user_metadata_size_max).map(|i| (vec![i as u8], Vec::new())).collect();
    let mut meta = ObjectMeta {
        size: 0,
        etag: vec![b'e'; 64],
        checksum_crc32c: Some(1),
        checksum_crc32: Some(2),
        content_type: vec![b't'; 256],
        user_metadata,
        chunks: Vec::new(),
        inline_data: Vec::new(),
    };
    if limits.chunks_per_object_max * 24 >= limits.inline_size_max {
        meta.chunks =
            vec![ChunkRef { id: [1; 16], length: 5, crc32c: 3 }; limits.chunks_per_object_max];
        meta.size = 5 * limits.chunks_per_object_max as u64;
    } else {
        meta.inline_data = vec![b'd'; limits.inline_size_max];
        meta.size = limits.inline_size_max as u64;
    }
    meta
}

/// Fails if a reply can be larger than `reply_size_max` says.
#[test]
fn reply_size_max_bounds_a_full_listing() {
    let limits = ObjectStoreLimits {
        buckets_max: 2,
        objects_max: 1001,
        key_size_max: 8,
        user_metadata_size_max: 0,
        chunks_per_object_max: 0,
        inline_size_max: 0,
        objects_bytes_max: usize::MAX,
    };
    let mut store = ObjectStore::new(limits);
    for i in 0..1001u64 {
        let key = format!("{i:08}").into_bytes();
        commit(&mut store, i + 1, &put_request(1, &key, inline(b"", &[b'e'; 64])));
    }
    let list = Request::ListObjects {
        bucket_id: 1,
        prefix: Vec::new(),
        start_after: Vec::new(),
        limit: 5000,
    };
    let mut body = Vec::new();
    let operation = list.encode(&mut body);
    let mut reply = Vec::new();
    store.query(operation, &body, &mut reply);
    assert_eq!(reply.len(), store.reply_size_max());
    // The requested 5000 is capped at LIST_LIMIT_MAX.
    match Reply::decode(&reply).unwrap() {
        Reply::Objects { entries, truncated } => {
            assert_eq!(entries.len(), LIST_LIMIT_MAX as usize);
            assert!(truncated);
        }
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Behaviour examples.

#[test]
fn conditional_puts() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let put = |condition: PutCondition, etag: &[u8]| Request::PutObject {
        bucket_id: 1,
        key: b"k".to_vec(),
        condition,
        object: inline(b"", etag),
    };
    // Missing key: If-Match is NoSuchKey (S3's answer, not 412),
    // If-None-Match: * succeeds.
    assert_eq!(
        commit(&mut store, 1, &put(PutCondition::IfMatch(b"e1".to_vec()), b"e1")),
        Reply::NoSuchKey
    );
    assert_eq!(
        commit(&mut store, 2, &put(PutCondition::IfNoneMatchStar, b"e1")),
        Reply::ObjectPut { version: 2 }
    );
    // Existing key: If-None-Match: * fails, If-Match needs the current etag.
    assert_eq!(
        commit(&mut store, 3, &put(PutCondition::IfNoneMatchStar, b"e2")),
        Reply::PreconditionFailed
    );
    assert_eq!(
        commit(&mut store, 4, &put(PutCondition::IfMatch(b"e2".to_vec()), b"e2")),
        Reply::PreconditionFailed
    );
    assert_eq!(
        commit(&mut store, 5, &put(PutCondition::IfMatch(b"e1".to_vec()), b"e2")),
        Reply::ObjectPut { version: 5 }
    );
    let head = Request::HeadObject { bucket_id: 1, key: b"k".to_vec() };
    match query(&store, &head) {
        Reply::Object(object) => {
            assert_eq!(object.version, 5);
            assert_eq!(object.last_modified, timestamp_of(5));
            assert_eq!(object.meta.etag, b"e2");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn conditional_deletes() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let delete = |condition| Request::DeleteObject { bucket_id: 1, key: b"k".to_vec(), condition };
    assert_eq!(
        commit(&mut store, 1, &delete(DeleteCondition::None)),
        Reply::ObjectDeleted { existed: false }
    );
    assert_eq!(
        commit(&mut store, 2, &delete(DeleteCondition::IfMatch(b"e1".to_vec()))),
        Reply::PreconditionFailed
    );
    commit(&mut store, 3, &put_request(1, b"k", inline(b"", b"e1")));
    assert_eq!(
        commit(&mut store, 4, &delete(DeleteCondition::IfMatch(b"e2".to_vec()))),
        Reply::PreconditionFailed
    );
    assert_eq!(
        commit(&mut store, 5, &delete(DeleteCondition::IfMatch(b"e1".to_vec()))),
        Reply::ObjectDeleted { existed: true }
    );
    assert_eq!(
        query(&store, &Request::HeadObject { bucket_id: 1, key: b"k".to_vec() }),
        Reply::NoSuchKey
    );
}

fn list_keys(
    store: &ObjectStore,
    prefix: &[u8],
    start_after: &[u8],
    limit: u32,
) -> (Vec<Vec<u8>>, bool) {
    let request = Request::ListObjects {
        bucket_id: 1,
        prefix: prefix.to_vec(),
        start_after: start_after.to_vec(),
        limit,
    };
    match query(store, &request) {
        Reply::Objects { entries, truncated } => {
            (entries.into_iter().map(|entry| entry.key).collect(), truncated)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn list_pagination() {
    let limits = ObjectStoreLimits { objects_max: 100, key_size_max: 16, ..LIMITS_SMALL };
    let mut store = ObjectStore::new(limits);
    let keys: [&[u8]; 7] = [b"a", b"a/1", b"a/2", b"a/3", b"a0", b"b", b"b/1"];
    for (i, key) in keys.iter().enumerate() {
        commit(&mut store, i as u64 + 1, &put_request(1, key, inline(b"", b"")));
    }
    // Another bucket's keys never show up.
    commit(&mut store, 8, &put_request(2, b"a/4", inline(b"", b"")));
    commit(&mut store, 9, &put_request(0, b"a/0", inline(b"", b"")));

    // Page through "a/" two at a time, continuing after the last key.
    let (page, truncated) = list_keys(&store, b"a/", b"", 2);
    assert_eq!((page.clone(), truncated), (vec![b"a/1".to_vec(), b"a/2".to_vec()], true));
    let (page, truncated) = list_keys(&store, b"a/", page.last().unwrap(), 2);
    assert_eq!((page, truncated), (vec![b"a/3".to_vec()], false));
    // Exactly `limit` left: not truncated.
    assert_eq!(
        list_keys(&store, b"a/", b"a/1", 2),
        (vec![b"a/2".to_vec(), b"a/3".to_vec()], false)
    );
    // start_after before the prefix range, inside it, after it.
    assert_eq!(list_keys(&store, b"a/", b"", 10).0.len(), 3);
    assert_eq!(list_keys(&store, b"b", b"a/9", 10).0, vec![b"b".to_vec(), b"b/1".to_vec()]);
    assert_eq!(list_keys(&store, b"a", b"a/3", 10).0, vec![b"a0".to_vec()]);
    assert_eq!(list_keys(&store, b"a", b"z", 10), (Vec::new(), false));
    // Limit 0: no entries, truncated iff any key matches.
    assert_eq!(list_keys(&store, b"", b"", 0), (Vec::new(), true));
    assert_eq!(list_keys(&store, b"c", b"", 0), (Vec::new(), false));
    // Whole bucket in byte order.
    let all: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
    assert_eq!(list_keys(&store, b"", b"", 1000), (all, false));
}

#[test]
fn bucket_not_empty() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let name = b"photos".to_vec();
    assert_eq!(
        commit(&mut store, 1, &Request::CreateBucket { name: name.clone() }),
        Reply::BucketCreated { id: 1 }
    );
    // Objects of neighbouring bucket ids do not count.
    commit(&mut store, 2, &put_request(0, b"k", inline(b"", b"")));
    commit(&mut store, 3, &put_request(2, b"k", inline(b"", b"")));
    commit(&mut store, 4, &put_request(1, b"k", inline(b"", b"")));
    assert_eq!(
        commit(&mut store, 5, &Request::DeleteBucket { name: name.clone() }),
        Reply::BucketNotEmpty
    );
    commit(
        &mut store,
        6,
        &Request::DeleteObject {
            bucket_id: 1,
            key: b"k".to_vec(),
            condition: DeleteCondition::None,
        },
    );
    assert_eq!(
        commit(&mut store, 7, &Request::DeleteBucket { name: name.clone() }),
        Reply::BucketDeleted
    );
    assert_eq!(
        commit(&mut store, 8, &Request::DeleteBucket { name: name.clone() }),
        Reply::NoSuchBucket
    );
    // A re-created bucket gets a fresh id: the old objects stay unreachable.
    assert_eq!(
        commit(&mut store, 9, &Request::CreateBucket { name: name.clone() }),
        Reply::BucketCreated { id: 9 }
    );
    assert_eq!(
        query(&store, &Request::HeadBucket { name }),
        Reply::Bucket { id: 9, created: timestamp_of(9) }
    );
}

#[test]
fn operation_classes() {
    for operation in Operation::ALL {
        let code = operation as u8;
        assert!(code >= toasty::vsr::message::OPERATION_STATE_MACHINE_MIN);
        assert_eq!(
            <ObjectStore as StateMachine>::operation_read_only(code),
            Some(operation.read_only())
        );
    }
    let writes = [
        Operation::CreateBucket,
        Operation::DeleteBucket,
        Operation::PutObject,
        Operation::DeleteObject,
        Operation::Batch,
        Operation::CompleteMultipart,
        Operation::AbortMultipart,
    ];
    for operation in Operation::ALL {
        assert_eq!(operation.read_only(), !writes.contains(&operation), "{operation:?}");
    }
    for code in 0..=u8::MAX {
        let known = Operation::ALL.iter().any(|operation| *operation as u8 == code);
        assert_eq!(<ObjectStore as StateMachine>::operation_read_only(code).is_some(), known);
    }
}

#[test]
fn restore_rejects_unordered_records() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    commit(&mut store, 1, &Request::CreateBucket { name: b"a".to_vec() });
    commit(&mut store, 2, &Request::CreateBucket { name: b"b".to_vec() });
    commit(&mut store, 3, &put_request(1, b"x", inline(b"", b"")));
    commit(&mut store, 4, &put_request(1, b"y", inline(b"", b"")));
    let bytes = snapshot_of(&store);
    let swap = |from: &[u8], to: &[u8]| {
        let mut swapped = bytes.clone();
        let at = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        let (i, j) = (at(from), at(to));
        swapped[i..i + from.len()].copy_from_slice(to);
        swapped[j..j + to.len()].copy_from_slice(from);
        swapped
    };
    // Names and keys are length-prefixed single bytes: find them with their prefix.
    let mut fresh = ObjectStore::new(LIMITS_SMALL);
    let unsorted_buckets = swap(b"\x01\0\0\0a", b"\x01\0\0\0b");
    assert_eq!(
        fresh.restore(&unsorted_buckets),
        Err("snapshot: bucket names not strictly increasing")
    );
    let unsorted_objects = swap(b"\x01\0\0\0x", b"\x01\0\0\0y");
    assert_eq!(fresh.restore(&unsorted_objects), Err("snapshot: objects not strictly increasing"));
    assert_eq!(fresh, ObjectStore::new(LIMITS_SMALL));
}

#[test]
fn restore_rejects_malformed_snapshots_with_a_reason() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    commit(&mut store, 1, &Request::CreateBucket { name: b"a".to_vec() });
    commit(&mut store, 2, &put_request(1, b"k", inline(b"x", b"")));
    let bytes = snapshot_of(&store);
    let mut fresh = ObjectStore::new(LIMITS_SMALL);
    let mut versioned = bytes.clone();
    versioned[0] = 99;
    assert_eq!(fresh.restore(&versioned), Err("snapshot: unknown version"));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(fresh.restore(&trailing), Err("snapshot: trailing bytes"));
    // op_last 1 leaves the object's version 2 out of range.
    let mut op_low = bytes.clone();
    op_low[1..9].copy_from_slice(&1u64.to_le_bytes());
    assert_eq!(fresh.restore(&op_low), Err("snapshot: id or version outside 1..=op_last"));
    // Bucket id (bytes 18..26) 0, or the object's version 2: both invalid.
    for id in [0u64, 2] {
        let mut bad_id = bytes.clone();
        bad_id[18..26].copy_from_slice(&id.to_le_bytes());
        assert!(fresh.restore(&bad_id).is_err(), "bucket id {id}");
    }
    // A store with smaller limits refuses state that exceeds them.
    let mut tight = ObjectStore::new(ObjectStoreLimits { objects_max: 0, ..LIMITS_SMALL });
    assert_eq!(tight.restore(&bytes), Err("snapshot: more objects than objects_max"));
    assert_eq!(fresh.restore(&bytes), Ok(()));
    assert_eq!(fresh, store);
}

// ---------------------------------------------------------------------------
// The history checker over the real state machine.

/// Run `steps` sequentially (each invoked after the previous completed) and
/// record them as a simulator would.
fn sequential_history(steps: &[Request]) -> (Vec<CommittedOp>, Vec<u64>, Vec<ObservedReply>) {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let (mut committed, mut committed_tick, mut observed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, request) in steps.iter().enumerate() {
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        let tick = 10 * i as u64;
        let mut reply = Vec::new();
        let op = if request.operation().read_only() {
            store.query(operation, &body, &mut reply);
            None
        } else {
            let op = committed.len() as u64 + 1;
            store.commit(op, timestamp_of(op), operation, &body, &mut reply);
            committed.push(CommittedOp {
                op,
                timestamp: timestamp_of(op),
                client: 7,
                request: i as u32 + 1,
                operation,
                body: body.clone(),
            });
            committed_tick.push(tick + 1);
            Some(op)
        };
        observed.push(ObservedReply {
            client: 7,
            request: i as u32 + 1,
            operation,
            body,
            reply,
            tick_invoked: tick,
            tick_completed: tick + 2,
            op,
        });
    }
    (committed, committed_tick, observed)
}

proptest! {
    /// Fails if the checker rejects a correct sequential run of the real
    /// state machine, or accepts one with a single corrupted reply.
    #[test]
    fn history_checker_on_object_store(steps in vec(request(), 1..40), victim in any::<Index>()) {
        let (committed, ticks, mut observed) = sequential_history(&steps);
        let fresh = ObjectStore::new(LIMITS_SMALL);
        let summary = check_history(fresh.clone(), &committed, &ticks, &observed)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(summary.ops_committed, committed.len() as u64);
        prop_assert_eq!(summary.writes_checked + summary.reads_checked, observed.len() as u64);
        let i = victim.index(observed.len());
        observed[i].reply.push(0);
        prop_assert!(check_history(fresh, &committed, &ticks, &observed).is_err());
    }
}

/// A batch is one commit: its writes run in order, each with its own reply,
/// a condition sees the writes before it, and every object it puts carries
/// the batch's op as its version (which a snapshot then restores).
#[test]
fn batch_runs_writes_in_order_under_one_op() {
    let mut store = ObjectStore::new(LIMITS_SMALL);
    let created = commit(&mut store, 1, &Request::CreateBucket { name: b"b".to_vec() });
    assert_eq!(created, Reply::BucketCreated { id: 1 });
    let meta = |etag: &[u8]| ObjectMeta {
        size: 1,
        etag: etag.to_vec(),
        inline_data: vec![7],
        ..ObjectMeta::default()
    };
    let put = |key: &[u8], condition: PutCondition, etag: &[u8]| Request::PutObject {
        bucket_id: 1,
        key: key.to_vec(),
        condition,
        object: meta(etag),
    };
    let batch = Request::Batch(vec![
        put(b"x", PutCondition::IfNoneMatchStar, b"e1"),
        put(b"x", PutCondition::IfNoneMatchStar, b"e2"),
        put(b"x", PutCondition::IfMatch(b"e1".to_vec()), b"e3"),
        put(b"y", PutCondition::None, b"e4"),
        Request::DeleteObject {
            bucket_id: 1,
            key: b"y".to_vec(),
            condition: DeleteCondition::IfMatch(b"nope".to_vec()),
        },
    ]);
    let reply = commit(&mut store, 2, &batch);
    assert_eq!(
        reply,
        Reply::Batch(vec![
            Reply::ObjectPut { version: 2 },
            Reply::PreconditionFailed,
            Reply::ObjectPut { version: 2 },
            Reply::ObjectPut { version: 2 },
            Reply::PreconditionFailed,
        ])
    );
    let head = |store: &ObjectStore, key: &[u8]| {
        query(store, &Request::HeadObject { bucket_id: 1, key: key.to_vec() })
    };
    let Reply::Object(x) = head(&store, b"x") else { panic!("x missing") };
    assert_eq!((x.version, x.meta.etag.as_slice()), (2, &b"e3"[..]));
    let mut restored = ObjectStore::new(LIMITS_SMALL);
    restored.restore(&snapshot_of(&store)).expect("a batch's snapshot restores");
    assert_eq!(snapshot_of(&restored), snapshot_of(&store));
    assert_eq!(head(&restored, b"y"), head(&store, b"y"));
    // Invalid batches are refused whole, with no effect.
    let list = Request::ListObjects {
        bucket_id: 1,
        prefix: Vec::new(),
        start_after: Vec::new(),
        limit: 100,
    };
    let buckets_before = query(&store, &Request::ListBuckets);
    let objects_before = query(&store, &list);
    for (op, bad) in [
        Request::Batch(Vec::new()),
        Request::Batch(vec![Request::CreateBucket { name: b"c".to_vec() }]),
        Request::Batch(vec![put(b"z", PutCondition::None, b"e"); 65]),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(commit(&mut store, 3 + op as u64, &bad), Reply::BadRequest);
    }
    assert_eq!(query(&store, &Request::ListBuckets), buckets_before);
    assert_eq!(query(&store, &list), objects_before);
}

/// The byte budget of all objects: what actually bounds a checkpoint. Fails
/// if a put over the budget is taken, if an overwrite or a delete does not
/// give its old bytes back, or if a restored snapshot forgets the total.
#[test]
fn limit_objects_bytes_max() {
    let one = {
        let mut store = ObjectStore::new(LIMITS_SMALL);
        commit(&mut store, 1, &put_request(1, b"a", inline(b"xy", b"e")));
        store.objects_bytes()
    };
    assert!(one > 0);
    let limits = ObjectStoreLimits { objects_bytes_max: 2 * one, ..LIMITS_SMALL };
    let mut store = ObjectStore::new(limits);
    for (op, key) in [(1, b"a"), (2, b"b")] {
        assert_eq!(
            commit(&mut store, op, &put_request(1, key, inline(b"xy", b"e"))),
            Reply::ObjectPut { version: op }
        );
    }
    assert_eq!(store.objects_bytes(), 2 * one);
    assert_refused(&mut store, 3, &put_request(1, b"c", inline(b"xy", b"e")), Limit::ObjectsBytes);
    // Growing an existing object past the budget is refused too...
    assert_refused(&mut store, 4, &put_request(1, b"a", inline(b"xyz", b"e")), Limit::ObjectsBytes);
    // ...shrinking it is not, and frees a byte.
    assert_eq!(
        commit(&mut store, 5, &put_request(1, b"a", inline(b"x", b"e"))),
        Reply::ObjectPut { version: 5 }
    );
    assert_eq!(store.objects_bytes(), 2 * one - 1);
    let delete = Request::DeleteObject {
        bucket_id: 1,
        key: b"b".to_vec(),
        condition: toasty::vsr::state_machine::DeleteCondition::None,
    };
    assert_eq!(commit(&mut store, 6, &delete), Reply::ObjectDeleted { existed: true });
    assert_eq!(store.objects_bytes(), one - 1);
    let mut snapshot = Vec::new();
    store.snapshot(&mut snapshot);
    let mut restored = ObjectStore::new(limits);
    restored.restore(&snapshot).expect("own snapshot restores");
    assert_eq!(restored.objects_bytes(), store.objects_bytes());
    assert_eq!(restored, store);
    // A snapshot over the budget of the restoring store is refused.
    let tight = ObjectStoreLimits { objects_bytes_max: one - 2, ..LIMITS_SMALL };
    assert!(ObjectStore::new(tight).restore(&snapshot).is_err());
}

// ---------------------------------------------------------------------------
// Multipart uploads.

mod multipart {
    use super::*;
    use toasty::vsr::state_machine::{
        upload_marker_key, upload_part_key, ChunkRef, UPLOADS_NAMESPACE_BIT,
    };

    const LIMITS: ObjectStoreLimits = ObjectStoreLimits {
        buckets_max: 4,
        objects_max: 64,
        key_size_max: 1024,
        user_metadata_size_max: 64,
        chunks_per_object_max: 8,
        inline_size_max: 1024,
        objects_bytes_max: usize::MAX,
    };
    const BUCKET: u64 = 7;
    const UPLOADS: u64 = BUCKET | UPLOADS_NAMESPACE_BIT;

    fn chunk(id: u8, length: u32) -> ChunkRef {
        ChunkRef { id: [id; 16], length, crc32c: u32::from(id) }
    }

    fn put(
        store: &mut ObjectStore,
        op: u64,
        bucket_id: u64,
        key: Vec<u8>,
        condition: PutCondition,
        meta: ObjectMeta,
    ) -> Reply {
        commit(store, op, &Request::PutObject { bucket_id, key, condition, object: meta })
    }

    fn part_meta(chunks: Vec<ChunkRef>, etag: &[u8]) -> ObjectMeta {
        let size = chunks.iter().map(|c| u64::from(c.length)).sum();
        ObjectMeta { size, etag: etag.to_vec(), chunks, ..ObjectMeta::default() }
    }

    /// An upload with parts 1 (5 MiB, two chunks) and 2 (1 byte).
    fn upload(store: &mut ObjectStore) {
        let marker = ObjectMeta { size: 3, inline_data: b"key".to_vec(), ..ObjectMeta::default() };
        assert!(matches!(
            put(store, 1, UPLOADS, upload_marker_key(b"u1"), PutCondition::IfNoneMatchStar, marker),
            Reply::ObjectPut { .. }
        ));
        let exists = PutCondition::KeyExists(upload_marker_key(b"u1"));
        let big = part_meta(vec![chunk(1, 4 << 20), chunk(2, 1 << 20)], b"e1");
        assert!(matches!(
            put(store, 2, UPLOADS, upload_part_key(b"u1", 1), exists.clone(), big),
            Reply::ObjectPut { .. }
        ));
        let small = part_meta(vec![chunk(3, 1)], b"e2");
        assert!(matches!(
            put(store, 3, UPLOADS, upload_part_key(b"u1", 2), exists, small),
            Reply::ObjectPut { .. }
        ));
    }

    fn complete(parts: Vec<(u16, &[u8])>) -> Request {
        Request::CompleteMultipart {
            bucket_id: BUCKET,
            key: b"key".to_vec(),
            upload_id: b"u1".to_vec(),
            condition: PutCondition::None,
            parts: parts.into_iter().map(|(n, e)| (n, e.to_vec())).collect(),
            object: ObjectMeta { etag: b"final-2".to_vec(), ..ObjectMeta::default() },
        }
    }

    /// Fails if a complete does not concatenate the parts' chunks in order,
    /// leaves the upload's records behind, or can be completed twice.
    #[test]
    fn complete_assembles_and_removes_the_upload() {
        let mut store = ObjectStore::new(LIMITS);
        upload(&mut store);
        assert_eq!(
            commit(&mut store, 4, &complete(vec![(1, b"e1"), (2, b"e2")])),
            Reply::ObjectPut { version: 4 }
        );
        let Reply::Object(object) =
            query(&store, &Request::HeadObject { bucket_id: BUCKET, key: b"key".to_vec() })
        else {
            panic!("the object exists")
        };
        assert_eq!(object.meta.chunks, vec![chunk(1, 4 << 20), chunk(2, 1 << 20), chunk(3, 1)]);
        assert_eq!(object.meta.size, (5 << 20) + 1);
        assert_eq!(object.meta.etag, b"final-2".to_vec());
        assert_eq!(store.object_count(), 1, "marker and parts are gone");
        assert_eq!(
            commit(&mut store, 5, &complete(vec![(1, b"e1"), (2, b"e2")])),
            Reply::NoSuchUpload
        );
    }

    /// Fails if a wrong ETag, a missing part or a small middle part is
    /// accepted, or if a failed complete consumes the upload.
    #[test]
    fn complete_rejects_bad_parts_and_keeps_the_upload() {
        let mut store = ObjectStore::new(LIMITS);
        upload(&mut store);
        assert_eq!(
            commit(&mut store, 4, &complete(vec![(1, b"e1"), (2, b"xx")])),
            Reply::InvalidPart { index: 1 }
        );
        assert_eq!(
            commit(&mut store, 5, &complete(vec![(1, b"e1"), (3, b"e2")])),
            Reply::InvalidPart { index: 1 }
        );
        // Existence is judged before sizes: a missing part 3 is InvalidPart
        // even though part 2, before it, is small.
        assert_eq!(
            commit(&mut store, 6, &complete(vec![(2, b"e2"), (3, b"e3")])),
            Reply::InvalidPart { index: 1 }
        );
        let exists = PutCondition::KeyExists(upload_marker_key(b"u1"));
        let third = part_meta(vec![chunk(4, 1)], b"e3");
        assert!(matches!(
            put(&mut store, 7, UPLOADS, upload_part_key(b"u1", 3), exists, third),
            Reply::ObjectPut { .. }
        ));
        assert_eq!(
            commit(&mut store, 8, &complete(vec![(2, b"e2"), (3, b"e3")])),
            Reply::EntityTooSmall { index: 0 }
        );
        assert_eq!(store.object_count(), 4, "the upload is intact");
        assert_eq!(
            commit(&mut store, 9, &complete(vec![(1, b"e1")])),
            Reply::ObjectPut { version: 9 }
        );
        assert_eq!(store.object_count(), 1, "unlisted parts are removed too");
    }

    /// Fails if a part can be stored without its upload, or abort leaves
    /// records behind or succeeds twice.
    #[test]
    fn parts_need_their_upload_and_abort_removes_it() {
        let mut store = ObjectStore::new(LIMITS);
        let exists = PutCondition::KeyExists(upload_marker_key(b"u9"));
        let part = part_meta(vec![chunk(1, 10)], b"e");
        let mut scratch = ObjectStore::new(LIMITS);
        assert_eq!(
            put(&mut scratch, 1, UPLOADS, upload_part_key(b"u9", 1), exists, part),
            Reply::PreconditionFailed
        );
        upload(&mut store);
        let abort = Request::AbortMultipart { bucket_id: BUCKET, upload_id: b"u1".to_vec() };
        assert_eq!(commit(&mut store, 4, &abort), Reply::ObjectDeleted { existed: true });
        assert_eq!(store.object_count(), 0);
        assert_eq!(store.objects_bytes(), 0);
        assert_eq!(commit(&mut store, 5, &abort), Reply::NoSuchUpload);
    }

    /// Fails if the new operations do not survive encode → decode.
    #[test]
    fn codec_roundtrip() {
        for request in [
            complete(vec![(1, b"e1"), (10_000, b"e")]),
            Request::AbortMultipart { bucket_id: 1, upload_id: b"x".to_vec() },
        ] {
            let mut body = Vec::new();
            let operation = request.encode(&mut body);
            assert_eq!(Request::decode(operation, &body), Ok(request.clone()));
            assert_eq!(request.validate(), Ok(()));
        }
        for reply in [
            Reply::NoSuchUpload,
            Reply::InvalidPart { index: 9 },
            Reply::EntityTooSmall { index: 3 },
        ] {
            let mut body = Vec::new();
            reply.encode(&mut body);
            assert_eq!(Reply::decode(&body), Ok(reply));
        }
        assert!(complete(vec![(2, b"a"), (1, b"b")]).validate().is_err(), "descending parts");
        assert!(complete(vec![]).validate().is_err(), "no parts");
    }
}
