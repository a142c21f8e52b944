//! Snapshots of an [`ObjectStore`]: the canonical encoding a checkpoint
//! holds, its decoder, and the size bounds derived from the limits.
//!
//! Layout (codec.rs primitives):
//! `version u8 | op_last u64 | count u32 | bucket* | count u32 | object*`
//! where `bucket = name bytes | id u64 | created u64` in name order and
//! `object = bucket_id u64 | key bytes | Object` in (bucket_id, key) order.
//!
//! The bytes are a pure function of the state (maps iterate in order, every
//! field has one encoding), so replicas that applied the same ops write
//! byte-identical checkpoints. Restore trusts nothing: a checkpoint comes from
//! a disk or a peer, so every invariant `commit` keeps is checked again.

use std::collections::{BTreeMap, BTreeSet};

use super::api::{
    bucket_name_validate, key_validate, Object, BUCKET_ENTRY_SIZE_FIXED, BUCKET_NAME_SIZE_MAX,
    CHUNK_REF_SIZE, CONTENT_TYPE_SIZE_MAX, ETAG_SIZE_MAX, LIST_LIMIT_MAX, OBJECT_ENTRY_SIZE_FIXED,
};
use super::codec::{put_bytes, put_count, put_u64, put_u8, Decoder, PREFIX_SIZE};
use super::object_store::{record_size, Bucket, ObjectStore, ObjectStoreLimits};

/// Bumped on any change to the layout; an unknown version is rejected.
pub const SNAPSHOT_VERSION: u8 = 1;

const SNAPSHOT_HEADER_SIZE: usize = 1 + 8 + PREFIX_SIZE + PREFIX_SIZE;
const BUCKET_SIZE_MAX: usize = BUCKET_ENTRY_SIZE_FIXED + BUCKET_NAME_SIZE_MAX;
/// An object record without its key bytes and metadata: bucket id, key
/// prefix, version, last_modified.
const OBJECT_RECORD_SIZE_FIXED: usize = 8 + PREFIX_SIZE + 8 + 8;
/// Encoded `ObjectMeta` without the variable parts: size, etag prefix, two
/// optional checksums, content-type prefix, metadata count, chunk count,
/// inline prefix.
const META_SIZE_FIXED: usize = 8 + PREFIX_SIZE + 5 + 5 + PREFIX_SIZE + PREFIX_SIZE * 3;
/// The smallest encoded `ObjectMeta`: both checksums absent, every string
/// and list empty. Only a lower bound, to cap a decoded count.
const META_SIZE_MIN: usize = 8 + PREFIX_SIZE + 1 + 1 + PREFIX_SIZE * 4;
const OBJECT_RECORD_SIZE_MIN: usize = OBJECT_RECORD_SIZE_FIXED + META_SIZE_MIN;

fn checked(terms: &[(usize, usize)]) -> usize {
    let mut total: usize = 0;
    for (count, size) in terms {
        let term = count.checked_mul(*size).expect("limits overflow the size bound");
        total = total.checked_add(term).expect("limits overflow the size bound");
    }
    total
}

impl ObjectStoreLimits {
    /// The largest encoded `ObjectMeta` these limits admit. User metadata
    /// names are non-empty, so there are at most `user_metadata_size_max`
    /// entries, each with two length prefixes. Data is inline or chunked,
    /// never both, so only the larger of the two counts.
    pub fn meta_size_max(&self) -> usize {
        let data_size_max =
            checked(&[(self.chunks_per_object_max, CHUNK_REF_SIZE)]).max(self.inline_size_max);
        checked(&[
            (1, META_SIZE_FIXED + ETAG_SIZE_MAX + CONTENT_TYPE_SIZE_MAX),
            (self.user_metadata_size_max, 2 * PREFIX_SIZE + 1),
            (1, data_size_max),
        ])
    }
}

impl ObjectStore {
    pub(super) fn snapshot_size_bound(&self) -> usize {
        let limits = &self.limits;
        let object_size_max = checked(&[
            (1, OBJECT_RECORD_SIZE_FIXED + limits.key_size_max),
            (1, limits.meta_size_max()),
        ]);
        let objects_worst = checked(&[(limits.objects_max, object_size_max)]);
        checked(&[
            (1, SNAPSHOT_HEADER_SIZE),
            (limits.buckets_max, BUCKET_SIZE_MAX),
            (1, objects_worst.min(limits.objects_bytes_max)),
        ])
    }

    /// Upper bound on the length of any reply body `commit` or `query`
    /// produces: the replica's message size must fit it.
    pub fn reply_size_max(&self) -> usize {
        let limits = &self.limits;
        let buckets = checked(&[(1, 1 + PREFIX_SIZE), (limits.buckets_max, BUCKET_SIZE_MAX)]);
        let object = checked(&[(1, 1 + 8 + 8), (1, limits.meta_size_max())]);
        let entry_size_max = OBJECT_ENTRY_SIZE_FIXED + limits.key_size_max + ETAG_SIZE_MAX;
        let objects =
            checked(&[(1, 1 + PREFIX_SIZE + 1), (LIST_LIMIT_MAX as usize, entry_size_max)]);
        // Every other reply is a tag plus at most two u64s.
        buckets.max(object).max(objects).max(1 + 8 + 8)
    }

    pub(super) fn snapshot_encode(&self, out: &mut Vec<u8>) {
        let size_before = out.len();
        put_u8(out, SNAPSHOT_VERSION);
        put_u64(out, self.op_last);
        put_count(out, self.buckets.len());
        for (name, bucket) in &self.buckets {
            put_bytes(out, name);
            put_u64(out, bucket.id);
            put_u64(out, bucket.created_timestamp);
        }
        put_count(out, self.objects.len());
        let objects_start = out.len();
        for ((bucket_id, key), object) in &self.objects {
            put_u64(out, *bucket_id);
            put_bytes(out, key);
            object.encode(out);
        }
        assert_eq!(out.len() - objects_start, self.objects_bytes);
        assert!(out.len() - size_before <= self.snapshot_size_bound());
    }

    pub(super) fn snapshot_decode(
        limits: ObjectStoreLimits,
        bytes: &[u8],
    ) -> Result<ObjectStore, &'static str> {
        let mut decoder = Decoder::new(bytes);
        if decoder.u8().map_err(|e| e.0)? != SNAPSHOT_VERSION {
            return Err("snapshot: unknown version");
        }
        let op_last = decoder.u64().map_err(|e| e.0)?;
        // Bucket ids and object versions are ops. A bucket's op created only
        // that bucket; one op may version several objects (a batch).
        let mut ops_used = BTreeSet::new();
        let buckets = buckets_decode(&mut decoder, &limits, op_last, &mut ops_used)?;
        let objects = objects_decode(&mut decoder, &limits, op_last, &ops_used)?;
        decoder.finish().map_err(|_| "snapshot: trailing bytes")?;
        let objects_bytes = objects.iter().map(|((_, key), object)| record_size(key, object)).sum();
        if objects_bytes > limits.objects_bytes_max {
            return Err("snapshot: objects larger than objects_bytes_max");
        }
        Ok(ObjectStore { limits, op_last, buckets, objects, objects_bytes })
    }
}

/// Record an op as used by a bucket id or an object version.
fn op_claim(ops_used: &mut BTreeSet<u64>, op: u64, op_last: u64) -> Result<(), &'static str> {
    if op == 0 || op > op_last {
        return Err("snapshot: id or version outside 1..=op_last");
    }
    if !ops_used.insert(op) {
        return Err("snapshot: id or version used twice");
    }
    Ok(())
}

fn buckets_decode(
    decoder: &mut Decoder<'_>,
    limits: &ObjectStoreLimits,
    op_last: u64,
    ops_used: &mut BTreeSet<u64>,
) -> Result<BTreeMap<Vec<u8>, Bucket>, &'static str> {
    let count = decoder.count(BUCKET_ENTRY_SIZE_FIXED).map_err(|e| e.0)?;
    if count > limits.buckets_max {
        return Err("snapshot: more buckets than buckets_max");
    }
    let mut buckets = BTreeMap::new();
    for _ in 0..count {
        let name = decoder.bytes().map_err(|e| e.0)?;
        let id = decoder.u64().map_err(|e| e.0)?;
        let created_timestamp = decoder.u64().map_err(|e| e.0)?;
        bucket_name_validate(&name)?;
        if buckets.last_key_value().is_some_and(|(last, _)| *last >= name) {
            return Err("snapshot: bucket names not strictly increasing");
        }
        op_claim(ops_used, id, op_last)?;
        buckets.insert(name, Bucket { id, created_timestamp });
    }
    Ok(buckets)
}

fn objects_decode(
    decoder: &mut Decoder<'_>,
    limits: &ObjectStoreLimits,
    op_last: u64,
    ops_used: &BTreeSet<u64>,
) -> Result<BTreeMap<(u64, Vec<u8>), Object>, &'static str> {
    let count = decoder.count(OBJECT_RECORD_SIZE_MIN).map_err(|e| e.0)?;
    if count > limits.objects_max {
        return Err("snapshot: more objects than objects_max");
    }
    let mut objects = BTreeMap::new();
    for _ in 0..count {
        let bucket_id = decoder.u64().map_err(|e| e.0)?;
        let key = decoder.bytes().map_err(|e| e.0)?;
        let object = Object::decode(decoder).map_err(|e| e.0)?;
        key_validate(&key)?;
        object.meta.validate()?;
        if limits.object_exceeded(&key, &object.meta).is_some() {
            return Err("snapshot: object exceeds a limit");
        }
        let map_key = (bucket_id, key);
        if objects.last_key_value().is_some_and(|(last, _)| *last >= map_key) {
            return Err("snapshot: objects not strictly increasing");
        }
        if object.version == 0 || object.version > op_last {
            return Err("snapshot: id or version outside 1..=op_last");
        }
        if ops_used.contains(&object.version) {
            return Err("snapshot: object version is a bucket id");
        }
        objects.insert(map_key, object);
    }
    Ok(objects)
}
