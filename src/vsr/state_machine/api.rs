//! The typed API of the object-metadata state machine: operations, requests,
//! replies, and their wire encoding (see `codec.rs` for the primitives).
//!
//! Validation comes in two layers. [`Request::validate`] checks what holds
//! for every deployment (bucket name and key lengths, etag and content-type
//! sizes, user metadata sorted, object size consistent with its data); it is
//! cheap and pure, so the primary runs it before a request enters the log.
//! The per-deployment limits ([`super::ObjectStoreLimits`]) are checked at
//! commit, where a violation is a `LimitExceeded` reply, not a rejection.

use super::codec::{
    put_bool, put_bytes, put_count, put_option_u32, put_u32, put_u64, put_u8, DecodeError, Decoder,
    PREFIX_SIZE,
};

/// Bucket names are 1..=63 bytes, as S3's (character rules are the front
/// end's business: the state machine stores bytes).
pub const BUCKET_NAME_SIZE_MAX: usize = 63;
/// S3's key limit. `ObjectStoreLimits::key_size_max` may only lower it.
pub const KEY_SIZE_MAX: usize = 1024;
/// Room for a hex MD5 in quotes or a multipart etag ("<md5>-<parts>").
pub const ETAG_SIZE_MAX: usize = 64;
pub const CONTENT_TYPE_SIZE_MAX: usize = 256;
/// S3's 2 KiB of user metadata (names plus values). The per-deployment
/// limit may only lower it.
pub const USER_METADATA_SIZE_MAX: usize = 2048;
/// S3's max-keys ceiling; larger requested limits are capped, not rejected.
pub const LIST_LIMIT_MAX: u32 = 1000;
/// Requests in one [`Request::Batch`]. The message size bounds a batch's
/// bytes; this bounds its reply and the work of one commit.
pub const BATCH_COUNT_MAX: usize = 64;
/// Encoded size of a [`ChunkRef`]: id, length, crc32c.
pub const CHUNK_REF_SIZE: usize = 16 + 4 + 4;

/// Operation codes. Writes go through the log (`commit`), reads are served
/// by `query`. Reads start at 32 so that a code's class shows in a hex dump.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    CreateBucket = 16,
    DeleteBucket = 17,
    PutObject = 18,
    DeleteObject = 19,
    /// Up to [`BATCH_COUNT_MAX`] object writes in one request, one prepare
    /// and one WAL write (the object client's batching; see ARCHITECTURE.md).
    Batch = 20,
    /// Assemble an object from the parts of a multipart upload, atomically
    /// (the parts and the upload's marker are removed by the same commit).
    CompleteMultipart = 21,
    /// Remove a multipart upload's marker and parts.
    AbortMultipart = 22,
    HeadBucket = 32,
    ListBuckets = 33,
    HeadObject = 34,
    ListObjects = 35,
}

const _: () =
    assert!(Operation::CreateBucket as u8 >= crate::vsr::message::OPERATION_STATE_MACHINE_MIN);

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::CreateBucket,
        Operation::DeleteBucket,
        Operation::PutObject,
        Operation::DeleteObject,
        Operation::Batch,
        Operation::CompleteMultipart,
        Operation::AbortMultipart,
        Operation::HeadBucket,
        Operation::ListBuckets,
        Operation::HeadObject,
        Operation::ListObjects,
    ];

    pub fn from_u8(code: u8) -> Option<Operation> {
        Operation::ALL.into_iter().find(|operation| *operation as u8 == code)
    }

    pub fn read_only(self) -> bool {
        match self {
            Operation::CreateBucket
            | Operation::DeleteBucket
            | Operation::PutObject
            | Operation::DeleteObject
            | Operation::Batch
            | Operation::CompleteMultipart
            | Operation::AbortMultipart => false,
            Operation::HeadBucket
            | Operation::ListBuckets
            | Operation::HeadObject
            | Operation::ListObjects => true,
        }
    }
}

/// A reference to one chunk of object data held by the chunkstore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkRef {
    pub id: [u8; 16],
    pub length: u32,
    pub crc32c: u32,
}

/// What a client says about an object when it puts one. The version and
/// last-modified time are the commit's, never the client's (see [`Object`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: Vec<u8>,
    pub checksum_crc32c: Option<u32>,
    pub checksum_crc32: Option<u32>,
    pub content_type: Vec<u8>,
    /// (name, value) pairs sorted by name, names unique and non-empty.
    pub user_metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// The data in the chunkstore, in order. Empty for inline objects.
    pub chunks: Vec<ChunkRef>,
    /// The data itself for small objects (one replication round, not two).
    pub inline_data: Vec<u8>,
}

/// A stored object: its metadata plus what the commit assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    /// The op that put this object. A key's versions only grow; two keys
    /// put by one batch share the op (and two puts of one key in a batch
    /// are one version: the later wins).
    pub version: u64,
    /// The timestamp of that op's commit.
    pub last_modified: u64,
    pub meta: ObjectMeta,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutCondition {
    None,
    /// S3 `If-Match`: the key must exist with this etag.
    IfMatch(Vec<u8>),
    /// S3 `If-None-Match: *`: the key must not exist.
    IfNoneMatchStar,
    /// Another key of the same bucket id must exist (a multipart part is
    /// stored only while its upload's marker is).
    KeyExists(Vec<u8>),
}

/// Multipart uploads live in a bucket id space of their own, so they never
/// show in listings: bucket id `b | UPLOADS_NAMESPACE_BIT` holds, per
/// upload, a marker `U<upload id>` (inline data = the object key; its
/// content type and metadata are the object's) and parts
/// `P<upload id><part number, 5 digits>`. Bucket ids are ops, far below.
pub const UPLOADS_NAMESPACE_BIT: u64 = 1 << 63;
/// S3's minimum size of every part but the last.
pub const MULTIPART_PART_SIZE_MIN: u64 = 5 << 20;
/// S3's part numbers.
pub const MULTIPART_PART_NUMBER_MAX: u16 = 10_000;
pub const UPLOAD_ID_SIZE_MAX: usize = 64;

pub fn upload_marker_key(upload_id: &[u8]) -> Vec<u8> {
    [b"U", upload_id].concat()
}

pub fn upload_part_key(upload_id: &[u8], part_number: u16) -> Vec<u8> {
    [b"P", upload_id, format!("{part_number:05}").as_bytes()].concat()
}

/// The prefix every part key of an upload starts with.
pub fn upload_parts_prefix(upload_id: &[u8]) -> Vec<u8> {
    [b"P", upload_id].concat()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteCondition {
    None,
    /// S3 `If-Match` on delete: the key must exist with this etag.
    IfMatch(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    CreateBucket {
        name: Vec<u8>,
    },
    DeleteBucket {
        name: Vec<u8>,
    },
    PutObject {
        bucket_id: u64,
        key: Vec<u8>,
        condition: PutCondition,
        object: ObjectMeta,
    },
    DeleteObject {
        bucket_id: u64,
        key: Vec<u8>,
        condition: DeleteCondition,
    },
    /// Object writes executed in order by one commit, each with its own
    /// reply (conditions see the writes before them in the batch).
    Batch(Vec<Request>),
    /// The object `key` from the listed parts (ascending part numbers,
    /// each with the ETag the client was given). `object` carries the
    /// final metadata (ETag, content type, ...) without data: its data is
    /// the parts' chunks in order.
    CompleteMultipart {
        bucket_id: u64,
        key: Vec<u8>,
        upload_id: Vec<u8>,
        condition: PutCondition,
        parts: Vec<(u16, Vec<u8>)>,
        object: ObjectMeta,
    },
    AbortMultipart {
        bucket_id: u64,
        upload_id: Vec<u8>,
    },
    HeadBucket {
        name: Vec<u8>,
    },
    ListBuckets,
    HeadObject {
        bucket_id: u64,
        key: Vec<u8>,
    },
    ListObjects {
        bucket_id: u64,
        prefix: Vec<u8>,
        start_after: Vec<u8>,
        /// Capped at [`LIST_LIMIT_MAX`] when served.
        limit: u32,
    },
}

/// Which per-deployment limit a write would have exceeded.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    Buckets = 1,
    Objects = 2,
    KeySize = 3,
    UserMetadataSize = 4,
    ChunksPerObject = 5,
    InlineSize = 6,
    /// The encoded bytes of all objects (`ObjectStoreLimits::objects_bytes_max`).
    ObjectsBytes = 7,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::Buckets,
        Limit::Objects,
        Limit::KeySize,
        Limit::UserMetadataSize,
        Limit::ChunksPerObject,
        Limit::InlineSize,
        Limit::ObjectsBytes,
    ];

    pub fn from_u8(code: u8) -> Option<Limit> {
        Limit::ALL.into_iter().find(|limit| *limit as u8 == code)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketEntry {
    pub name: Vec<u8>,
    pub id: u64,
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: Vec<u8>,
    pub size: u64,
    pub etag: Vec<u8>,
    pub version: u64,
    pub last_modified: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    BucketCreated {
        id: u64,
    },
    BucketAlreadyExists,
    BucketDeleted,
    NoSuchBucket,
    /// This group still holds an object of the bucket (other groups are the
    /// front end's to check).
    BucketNotEmpty,
    Bucket {
        id: u64,
        created: u64,
    },
    Buckets(Vec<BucketEntry>),
    ObjectPut {
        version: u64,
    },
    PreconditionFailed,
    ObjectDeleted {
        existed: bool,
    },
    Object(Object),
    NoSuchKey,
    Objects {
        entries: Vec<ObjectEntry>,
        truncated: bool,
    },
    LimitExceeded(Limit),
    /// One reply per request of a [`Request::Batch`], in order.
    Batch(Vec<Reply>),
    /// The body did not decode, failed validation, or named an operation
    /// of the other class (a write sent to `query` or a read to `commit`).
    BadRequest,
    /// No such multipart upload (never created, completed or aborted).
    NoSuchUpload,
    /// The part at `index` of a complete is missing or has another ETag.
    InvalidPart {
        index: u32,
    },
    /// The part at `index` (not the last) is under 5 MiB.
    EntityTooSmall {
        index: u32,
    },
}

pub(crate) fn bucket_name_validate(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("bucket name empty");
    }
    if name.len() > BUCKET_NAME_SIZE_MAX {
        return Err("bucket name longer than 63 bytes");
    }
    Ok(())
}

pub(crate) fn key_validate(key: &[u8]) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("key empty");
    }
    if key.len() > KEY_SIZE_MAX {
        return Err("key longer than KEY_SIZE_MAX");
    }
    Ok(())
}

fn upload_id_validate(upload_id: &[u8]) -> Result<(), &'static str> {
    if upload_id.is_empty() || upload_id.len() > UPLOAD_ID_SIZE_MAX {
        return Err("upload id empty or longer than UPLOAD_ID_SIZE_MAX");
    }
    Ok(())
}

fn etag_validate(etag: &[u8]) -> Result<(), &'static str> {
    if etag.len() > ETAG_SIZE_MAX {
        return Err("etag longer than ETAG_SIZE_MAX");
    }
    Ok(())
}

impl ObjectMeta {
    /// Names plus values, as S3 counts the 2 KiB metadata limit.
    pub fn user_metadata_size(&self) -> usize {
        self.user_metadata.iter().map(|(name, value)| name.len() + value.len()).sum()
    }

    /// The deployment-independent rules (see the module comment).
    pub fn validate(&self) -> Result<(), &'static str> {
        etag_validate(&self.etag)?;
        if self.content_type.len() > CONTENT_TYPE_SIZE_MAX {
            return Err("content type longer than CONTENT_TYPE_SIZE_MAX");
        }
        self.user_metadata_validate()?;
        self.data_validate()
    }

    fn user_metadata_validate(&self) -> Result<(), &'static str> {
        // Non-empty names bound the entry count by the size limit, which
        // keeps the snapshot bound finite; sorted, unique names make the
        // encoding canonical.
        if self.user_metadata.iter().any(|(name, _)| name.is_empty()) {
            return Err("user metadata name empty");
        }
        if !self.user_metadata.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err("user metadata names not sorted and unique");
        }
        if self.user_metadata_size() > USER_METADATA_SIZE_MAX {
            return Err("user metadata larger than USER_METADATA_SIZE_MAX");
        }
        Ok(())
    }

    /// An object's data is either inline or in chunks, never both, and its
    /// size is exactly that data's length: a reader trusts `size`.
    fn data_validate(&self) -> Result<(), &'static str> {
        if self.chunks.is_empty() {
            if self.size != self.inline_data.len() as u64 {
                return Err("size differs from the inline data length");
            }
            return Ok(());
        }
        if !self.inline_data.is_empty() {
            return Err("both inline data and chunks");
        }
        if self.chunks.iter().any(|chunk| chunk.length == 0) {
            return Err("empty chunk");
        }
        // At most 2^32 chunks of less than 2^32 bytes: the sum fits a u64.
        let chunks_size: u64 = self.chunks.iter().map(|chunk| u64::from(chunk.length)).sum();
        if self.size != chunks_size {
            return Err("size differs from the sum of chunk lengths");
        }
        Ok(())
    }

    /// Bytes `encode` appends, without encoding.
    pub fn encoded_size(&self) -> usize {
        let option = |value: Option<u32>| if value.is_some() { 5 } else { 1 };
        let metadata: usize =
            self.user_metadata.iter().map(|(n, v)| 2 * PREFIX_SIZE + n.len() + v.len()).sum();
        8 + PREFIX_SIZE
            + self.etag.len()
            + option(self.checksum_crc32c)
            + option(self.checksum_crc32)
            + PREFIX_SIZE
            + self.content_type.len()
            + PREFIX_SIZE
            + metadata
            + PREFIX_SIZE
            + self.chunks.len() * CHUNK_REF_SIZE
            + PREFIX_SIZE
            + self.inline_data.len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.size);
        put_bytes(out, &self.etag);
        put_option_u32(out, self.checksum_crc32c);
        put_option_u32(out, self.checksum_crc32);
        put_bytes(out, &self.content_type);
        put_count(out, self.user_metadata.len());
        for (name, value) in &self.user_metadata {
            put_bytes(out, name);
            put_bytes(out, value);
        }
        put_count(out, self.chunks.len());
        for chunk in &self.chunks {
            out.extend_from_slice(&chunk.id);
            put_u32(out, chunk.length);
            put_u32(out, chunk.crc32c);
        }
        put_bytes(out, &self.inline_data);
    }

    pub fn decode(decoder: &mut Decoder<'_>) -> Result<ObjectMeta, DecodeError> {
        let size = decoder.u64()?;
        let etag = decoder.bytes()?;
        let checksum_crc32c = decoder.option_u32()?;
        let checksum_crc32 = decoder.option_u32()?;
        let content_type = decoder.bytes()?;
        let count = decoder.count(2 * PREFIX_SIZE)?;
        let mut user_metadata = Vec::with_capacity(count);
        for _ in 0..count {
            user_metadata.push((decoder.bytes()?, decoder.bytes()?));
        }
        let count = decoder.count(CHUNK_REF_SIZE)?;
        let mut chunks = Vec::with_capacity(count);
        for _ in 0..count {
            let id = decoder.id()?;
            chunks.push(ChunkRef { id, length: decoder.u32()?, crc32c: decoder.u32()? });
        }
        let inline_data = decoder.bytes()?;
        Ok(ObjectMeta {
            size,
            etag,
            checksum_crc32c,
            checksum_crc32,
            content_type,
            user_metadata,
            chunks,
            inline_data,
        })
    }
}

impl Object {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.version);
        put_u64(out, self.last_modified);
        self.meta.encode(out);
    }

    pub fn decode(decoder: &mut Decoder<'_>) -> Result<Object, DecodeError> {
        let version = decoder.u64()?;
        let last_modified = decoder.u64()?;
        Ok(Object { version, last_modified, meta: ObjectMeta::decode(decoder)? })
    }
}

impl PutCondition {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PutCondition::None => put_u8(out, 0),
            PutCondition::IfMatch(etag) => {
                put_u8(out, 1);
                put_bytes(out, etag);
            }
            PutCondition::IfNoneMatchStar => put_u8(out, 2),
            PutCondition::KeyExists(key) => {
                put_u8(out, 3);
                put_bytes(out, key);
            }
        }
    }

    fn validate(&self) -> Result<(), &'static str> {
        match self {
            PutCondition::None | PutCondition::IfNoneMatchStar => Ok(()),
            PutCondition::IfMatch(etag) => etag_validate(etag),
            PutCondition::KeyExists(key) => key_validate(key),
        }
    }

    fn decode(decoder: &mut Decoder<'_>) -> Result<PutCondition, DecodeError> {
        match decoder.u8()? {
            0 => Ok(PutCondition::None),
            1 => Ok(PutCondition::IfMatch(decoder.bytes()?)),
            2 => Ok(PutCondition::IfNoneMatchStar),
            3 => Ok(PutCondition::KeyExists(decoder.bytes()?)),
            _ => Err(DecodeError("unknown put condition")),
        }
    }
}

impl DeleteCondition {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DeleteCondition::None => put_u8(out, 0),
            DeleteCondition::IfMatch(etag) => {
                put_u8(out, 1);
                put_bytes(out, etag);
            }
        }
    }

    fn decode(decoder: &mut Decoder<'_>) -> Result<DeleteCondition, DecodeError> {
        match decoder.u8()? {
            0 => Ok(DeleteCondition::None),
            1 => Ok(DeleteCondition::IfMatch(decoder.bytes()?)),
            _ => Err(DecodeError("unknown delete condition")),
        }
    }
}

impl Request {
    pub fn operation(&self) -> Operation {
        match self {
            Request::CreateBucket { .. } => Operation::CreateBucket,
            Request::DeleteBucket { .. } => Operation::DeleteBucket,
            Request::PutObject { .. } => Operation::PutObject,
            Request::DeleteObject { .. } => Operation::DeleteObject,
            Request::Batch(_) => Operation::Batch,
            Request::CompleteMultipart { .. } => Operation::CompleteMultipart,
            Request::AbortMultipart { .. } => Operation::AbortMultipart,
            Request::HeadBucket { .. } => Operation::HeadBucket,
            Request::ListBuckets => Operation::ListBuckets,
            Request::HeadObject { .. } => Operation::HeadObject,
            Request::ListObjects { .. } => Operation::ListObjects,
        }
    }

    /// Append the body and return the operation code for the header.
    pub fn encode(&self, body: &mut Vec<u8>) -> u8 {
        match self {
            Request::CreateBucket { name }
            | Request::DeleteBucket { name }
            | Request::HeadBucket { name } => put_bytes(body, name),
            Request::PutObject { bucket_id, key, condition, object } => {
                put_u64(body, *bucket_id);
                put_bytes(body, key);
                condition.encode(body);
                object.encode(body);
            }
            Request::DeleteObject { bucket_id, key, condition } => {
                put_u64(body, *bucket_id);
                put_bytes(body, key);
                condition.encode(body);
            }
            Request::Batch(requests) => {
                put_count(body, requests.len());
                let mut sub = Vec::new();
                for request in requests {
                    sub.clear();
                    let operation = request.encode(&mut sub);
                    put_u8(body, operation);
                    put_bytes(body, &sub);
                }
            }
            Request::CompleteMultipart { bucket_id, key, upload_id, condition, parts, object } => {
                put_u64(body, *bucket_id);
                put_bytes(body, key);
                put_bytes(body, upload_id);
                condition.encode(body);
                put_count(body, parts.len());
                for (number, etag) in parts {
                    put_u32(body, u32::from(*number));
                    put_bytes(body, etag);
                }
                object.encode(body);
            }
            Request::AbortMultipart { bucket_id, upload_id } => {
                put_u64(body, *bucket_id);
                put_bytes(body, upload_id);
            }
            Request::ListBuckets => {}
            Request::HeadObject { bucket_id, key } => {
                put_u64(body, *bucket_id);
                put_bytes(body, key);
            }
            Request::ListObjects { bucket_id, prefix, start_after, limit } => {
                put_u64(body, *bucket_id);
                put_bytes(body, prefix);
                put_bytes(body, start_after);
                put_u32(body, *limit);
            }
        }
        self.operation() as u8
    }

    /// Decode untrusted bytes. Checks the format only; see [`Request::validate`].
    pub fn decode(operation: u8, body: &[u8]) -> Result<Request, DecodeError> {
        let operation = Operation::from_u8(operation).ok_or(DecodeError("unknown operation"))?;
        let mut decoder = Decoder::new(body);
        let d = &mut decoder;
        let request = match operation {
            Operation::CreateBucket => Request::CreateBucket { name: d.bytes()? },
            Operation::DeleteBucket => Request::DeleteBucket { name: d.bytes()? },
            Operation::HeadBucket => Request::HeadBucket { name: d.bytes()? },
            Operation::PutObject => Request::PutObject {
                bucket_id: d.u64()?,
                key: d.bytes()?,
                condition: PutCondition::decode(d)?,
                object: ObjectMeta::decode(d)?,
            },
            Operation::DeleteObject => Request::DeleteObject {
                bucket_id: d.u64()?,
                key: d.bytes()?,
                condition: DeleteCondition::decode(d)?,
            },
            Operation::Batch => {
                let count = d.count(1 + PREFIX_SIZE)?;
                let mut requests = Vec::with_capacity(count.min(BATCH_COUNT_MAX));
                for _ in 0..count {
                    let operation = d.u8()?;
                    if operation == Operation::Batch as u8 {
                        return Err(DecodeError("batch inside a batch"));
                    }
                    // Borrowed: a copy here was a second copy of every
                    // inline body in every decode of a batch (validation,
                    // commit and the chunk service each decode it).
                    let body = d.slice()?;
                    requests.push(Request::decode(operation, body)?);
                }
                Request::Batch(requests)
            }
            Operation::CompleteMultipart => {
                let bucket_id = d.u64()?;
                let key = d.bytes()?;
                let upload_id = d.bytes()?;
                let condition = PutCondition::decode(d)?;
                let count = d.count(4 + PREFIX_SIZE)?;
                let mut parts = Vec::with_capacity(count.min(MULTIPART_PART_NUMBER_MAX as usize));
                for _ in 0..count {
                    let number = u16::try_from(d.u32()?).map_err(|_| DecodeError("part number"))?;
                    parts.push((number, d.bytes()?));
                }
                let object = ObjectMeta::decode(d)?;
                Request::CompleteMultipart { bucket_id, key, upload_id, condition, parts, object }
            }
            Operation::AbortMultipart => {
                Request::AbortMultipart { bucket_id: d.u64()?, upload_id: d.bytes()? }
            }
            Operation::ListBuckets => Request::ListBuckets,
            Operation::HeadObject => Request::HeadObject { bucket_id: d.u64()?, key: d.bytes()? },
            Operation::ListObjects => Request::ListObjects {
                bucket_id: d.u64()?,
                prefix: d.bytes()?,
                start_after: d.bytes()?,
                limit: d.u32()?,
            },
        };
        decoder.finish()?;
        Ok(request)
    }

    /// The chunk references of every `PutObject` in a request (alone or in
    /// a batch), in order, without building the request: no allocation,
    /// no copy of keys or inline data. Accepts exactly what
    /// [`Request::decode`] accepts for `PutObject` and `Batch` (the
    /// property test `put_chunk_refs_match_the_decoded_request` holds it
    /// to that); other operations yield none. For the chunk service, which
    /// runs on every committed prepare: a full decode there was 1.8 % of
    /// the primary's CPU under 4 KiB PUTs (perf/results/2026-12-04/).
    pub fn put_chunk_refs(
        operation: u8,
        body: &[u8],
        refs: &mut Vec<ChunkRef>,
    ) -> Result<(), DecodeError> {
        let start = refs.len();
        let result = Request::put_chunk_refs_walk(operation, body, refs);
        if result.is_err() {
            refs.truncate(start);
        }
        result
    }

    fn put_chunk_refs_walk(
        operation: u8,
        body: &[u8],
        refs: &mut Vec<ChunkRef>,
    ) -> Result<(), DecodeError> {
        if operation == Operation::Batch as u8 {
            let mut d = Decoder::new(body);
            let count = d.count(1 + PREFIX_SIZE)?;
            for _ in 0..count {
                let operation = d.u8()?;
                if operation == Operation::Batch as u8 {
                    return Err(DecodeError("batch inside a batch"));
                }
                let body = d.slice()?;
                if operation == Operation::PutObject as u8 {
                    Request::put_chunk_refs_walk(operation, body, refs)?;
                } else {
                    // Rare in a batch (deletes): the full decode checks it.
                    Request::decode(operation, body)?;
                }
            }
            return d.finish();
        }
        if operation != Operation::PutObject as u8 {
            return Ok(());
        }
        // PutObject's grammar, as `decode`, with every string skipped.
        let mut d = Decoder::new(body);
        d.u64()?; // bucket id
        d.slice()?; // key
        match d.u8()? {
            0 | 2 => {}
            1 | 3 => {
                d.slice()?;
            }
            _ => return Err(DecodeError("unknown put condition")),
        }
        d.u64()?; // size
        d.slice()?; // etag
        d.option_u32()?;
        d.option_u32()?;
        d.slice()?; // content type
        for _ in 0..d.count(2 * PREFIX_SIZE)? {
            d.slice()?;
            d.slice()?;
        }
        for _ in 0..d.count(CHUNK_REF_SIZE)? {
            let id = d.id()?;
            refs.push(ChunkRef { id, length: d.u32()?, crc32c: d.u32()? });
        }
        d.slice()?; // inline data
        d.finish()
    }

    /// The deployment-independent rules (see the module comment).
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Request::CreateBucket { name }
            | Request::DeleteBucket { name }
            | Request::HeadBucket { name } => bucket_name_validate(name),
            Request::PutObject { key, condition, object, .. } => {
                key_validate(key)?;
                condition.validate()?;
                object.validate()
            }
            Request::CompleteMultipart { key, upload_id, condition, parts, object, .. } => {
                key_validate(key)?;
                upload_id_validate(upload_id)?;
                condition.validate()?;
                if parts.is_empty() {
                    return Err("complete without parts");
                }
                if !parts.windows(2).all(|pair| pair[0].0 < pair[1].0) {
                    return Err("part numbers not strictly ascending");
                }
                if parts.iter().any(|(n, _)| *n == 0 || *n > MULTIPART_PART_NUMBER_MAX) {
                    return Err("part number outside 1..=10000");
                }
                parts.iter().try_for_each(|(_, etag)| etag_validate(etag))?;
                if !object.chunks.is_empty() || !object.inline_data.is_empty() || object.size != 0 {
                    return Err("complete carries data of its own");
                }
                object.validate()
            }
            Request::AbortMultipart { upload_id, .. } => upload_id_validate(upload_id),
            Request::DeleteObject { key, condition, .. } => {
                key_validate(key)?;
                match condition {
                    DeleteCondition::None => Ok(()),
                    DeleteCondition::IfMatch(etag) => etag_validate(etag),
                }
            }
            Request::Batch(requests) => {
                if requests.is_empty() || requests.len() > BATCH_COUNT_MAX {
                    return Err("batch of 0 or more than BATCH_COUNT_MAX requests");
                }
                for request in requests {
                    if !matches!(request, Request::PutObject { .. } | Request::DeleteObject { .. })
                    {
                        return Err("batch holds a request other than an object write");
                    }
                    request.validate()?;
                }
                Ok(())
            }
            Request::ListBuckets => Ok(()),
            Request::HeadObject { key, .. } => key_validate(key),
            Request::ListObjects { prefix, start_after, .. } => {
                // Empty is fine for both (list everything, from the start).
                if prefix.len() > KEY_SIZE_MAX || start_after.len() > KEY_SIZE_MAX {
                    return Err("prefix or start_after longer than KEY_SIZE_MAX");
                }
                Ok(())
            }
        }
    }
}

// Reply tags. 0 is never a tag, so a zeroed body never decodes as a reply.
const REPLY_BUCKET_CREATED: u8 = 1;
const REPLY_BUCKET_ALREADY_EXISTS: u8 = 2;
const REPLY_BUCKET_DELETED: u8 = 3;
const REPLY_NO_SUCH_BUCKET: u8 = 4;
const REPLY_BUCKET_NOT_EMPTY: u8 = 5;
const REPLY_BUCKET: u8 = 6;
const REPLY_BUCKETS: u8 = 7;
const REPLY_OBJECT_PUT: u8 = 8;
const REPLY_PRECONDITION_FAILED: u8 = 9;
const REPLY_OBJECT_DELETED: u8 = 10;
const REPLY_OBJECT: u8 = 11;
const REPLY_NO_SUCH_KEY: u8 = 12;
const REPLY_OBJECTS: u8 = 13;
const REPLY_LIMIT_EXCEEDED: u8 = 14;
const REPLY_BAD_REQUEST: u8 = 15;
const REPLY_BATCH: u8 = 16;
const REPLY_NO_SUCH_UPLOAD: u8 = 17;
const REPLY_INVALID_PART: u8 = 18;
const REPLY_ENTITY_TOO_SMALL: u8 = 19;

/// Encoded size of a [`BucketEntry`] without its name bytes.
pub const BUCKET_ENTRY_SIZE_FIXED: usize = PREFIX_SIZE + 8 + 8;
/// Encoded size of an [`ObjectEntry`] without its key and etag bytes.
pub const OBJECT_ENTRY_SIZE_FIXED: usize = PREFIX_SIZE + 8 + PREFIX_SIZE + 8 + 8;

impl Reply {
    fn tag(&self) -> u8 {
        match self {
            Reply::BucketCreated { .. } => REPLY_BUCKET_CREATED,
            Reply::BucketAlreadyExists => REPLY_BUCKET_ALREADY_EXISTS,
            Reply::BucketDeleted => REPLY_BUCKET_DELETED,
            Reply::NoSuchBucket => REPLY_NO_SUCH_BUCKET,
            Reply::BucketNotEmpty => REPLY_BUCKET_NOT_EMPTY,
            Reply::Bucket { .. } => REPLY_BUCKET,
            Reply::Buckets(_) => REPLY_BUCKETS,
            Reply::ObjectPut { .. } => REPLY_OBJECT_PUT,
            Reply::PreconditionFailed => REPLY_PRECONDITION_FAILED,
            Reply::ObjectDeleted { .. } => REPLY_OBJECT_DELETED,
            Reply::Object(_) => REPLY_OBJECT,
            Reply::NoSuchKey => REPLY_NO_SUCH_KEY,
            Reply::Objects { .. } => REPLY_OBJECTS,
            Reply::LimitExceeded(_) => REPLY_LIMIT_EXCEEDED,
            Reply::BadRequest => REPLY_BAD_REQUEST,
            Reply::Batch(_) => REPLY_BATCH,
            Reply::NoSuchUpload => REPLY_NO_SUCH_UPLOAD,
            Reply::InvalidPart { .. } => REPLY_INVALID_PART,
            Reply::EntityTooSmall { .. } => REPLY_ENTITY_TOO_SMALL,
        }
    }

    /// Append the bytes `Reply::Object(object.clone()).encode(out)` would,
    /// without the clone (a GET's query encodes the stored object, inline
    /// data included, straight from the state machine).
    pub fn encode_object(object: &Object, out: &mut Vec<u8>) {
        put_u8(out, REPLY_OBJECT);
        object.encode(out);
    }

    /// Append the reply body: a tag byte, then the variant's fields.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.tag());
        match self {
            Reply::BucketCreated { id } => put_u64(out, *id),
            Reply::Bucket { id, created } => {
                put_u64(out, *id);
                put_u64(out, *created);
            }
            Reply::Buckets(entries) => {
                put_count(out, entries.len());
                for entry in entries {
                    put_bytes(out, &entry.name);
                    put_u64(out, entry.id);
                    put_u64(out, entry.created);
                }
            }
            Reply::ObjectPut { version } => put_u64(out, *version),
            Reply::ObjectDeleted { existed } => put_bool(out, *existed),
            Reply::Object(object) => object.encode(out),
            Reply::Objects { entries, truncated } => {
                put_count(out, entries.len());
                for entry in entries {
                    entry.encode(out);
                }
                put_bool(out, *truncated);
            }
            Reply::LimitExceeded(limit) => put_u8(out, *limit as u8),
            Reply::Batch(replies) => {
                put_count(out, replies.len());
                let mut sub = Vec::new();
                for reply in replies {
                    sub.clear();
                    reply.encode(&mut sub);
                    put_bytes(out, &sub);
                }
            }
            Reply::InvalidPart { index } | Reply::EntityTooSmall { index } => put_u32(out, *index),
            Reply::BucketAlreadyExists
            | Reply::BucketDeleted
            | Reply::NoSuchBucket
            | Reply::BucketNotEmpty
            | Reply::PreconditionFailed
            | Reply::NoSuchKey
            | Reply::BadRequest
            | Reply::NoSuchUpload => {}
        }
    }

    pub fn decode(body: &[u8]) -> Result<Reply, DecodeError> {
        let mut decoder = Decoder::new(body);
        let d = &mut decoder;
        let reply = match d.u8()? {
            REPLY_BUCKET_CREATED => Reply::BucketCreated { id: d.u64()? },
            REPLY_BUCKET_ALREADY_EXISTS => Reply::BucketAlreadyExists,
            REPLY_BUCKET_DELETED => Reply::BucketDeleted,
            REPLY_NO_SUCH_BUCKET => Reply::NoSuchBucket,
            REPLY_BUCKET_NOT_EMPTY => Reply::BucketNotEmpty,
            REPLY_BUCKET => Reply::Bucket { id: d.u64()?, created: d.u64()? },
            REPLY_BUCKETS => Reply::Buckets(bucket_entries_decode(d)?),
            REPLY_OBJECT_PUT => Reply::ObjectPut { version: d.u64()? },
            REPLY_PRECONDITION_FAILED => Reply::PreconditionFailed,
            REPLY_OBJECT_DELETED => Reply::ObjectDeleted { existed: d.bool()? },
            REPLY_OBJECT => Reply::Object(Object::decode(d)?),
            REPLY_NO_SUCH_KEY => Reply::NoSuchKey,
            REPLY_OBJECTS => {
                let entries = object_entries_decode(d)?;
                Reply::Objects { entries, truncated: d.bool()? }
            }
            REPLY_LIMIT_EXCEEDED => {
                Reply::LimitExceeded(Limit::from_u8(d.u8()?).ok_or(DecodeError("unknown limit"))?)
            }
            REPLY_BAD_REQUEST => Reply::BadRequest,
            REPLY_NO_SUCH_UPLOAD => Reply::NoSuchUpload,
            REPLY_INVALID_PART => Reply::InvalidPart { index: d.u32()? },
            REPLY_ENTITY_TOO_SMALL => Reply::EntityTooSmall { index: d.u32()? },
            REPLY_BATCH => {
                let count = d.count(PREFIX_SIZE + 1)?;
                let mut replies = Vec::with_capacity(count.min(BATCH_COUNT_MAX));
                for _ in 0..count {
                    let body = d.bytes()?;
                    if body.first() == Some(&REPLY_BATCH) {
                        return Err(DecodeError("batch reply inside a batch reply"));
                    }
                    replies.push(Reply::decode(&body)?);
                }
                Reply::Batch(replies)
            }
            _ => return Err(DecodeError("unknown reply tag")),
        };
        decoder.finish()?;
        Ok(reply)
    }
}

fn bucket_entries_decode(d: &mut Decoder<'_>) -> Result<Vec<BucketEntry>, DecodeError> {
    let count = d.count(BUCKET_ENTRY_SIZE_FIXED)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(BucketEntry { name: d.bytes()?, id: d.u64()?, created: d.u64()? });
    }
    Ok(entries)
}

fn object_entries_decode(d: &mut Decoder<'_>) -> Result<Vec<ObjectEntry>, DecodeError> {
    let count = d.count(OBJECT_ENTRY_SIZE_FIXED)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(ObjectEntry {
            key: d.bytes()?,
            size: d.u64()?,
            etag: d.bytes()?,
            version: d.u64()?,
            last_modified: d.u64()?,
        });
    }
    Ok(entries)
}

impl ObjectEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.key);
        put_u64(out, self.size);
        put_bytes(out, &self.etag);
        put_u64(out, self.version);
        put_u64(out, self.last_modified);
    }
}
