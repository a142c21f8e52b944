//! The state machine a replica replicates, and `ObjectStore`, the
//! object-metadata state machine every replication group runs.
//!
//! - `codec.rs`: canonical little-endian encoding primitives.
//! - `api.rs`: operations, typed requests and replies, their encoding and
//!   deployment-independent validation.
//! - `object_store.rs`: the state, its limits, `commit` and `query`.
//! - `snapshot.rs`: the checkpoint encoding and the size bounds.

mod api;
mod codec;
mod object_store;
mod snapshot;

pub use api::{
    upload_marker_key, upload_part_key, upload_parts_prefix, BucketEntry, ChunkRef,
    DeleteCondition, Limit, Object, ObjectEntry, ObjectMeta, Operation, PutCondition, Reply,
    Request, BATCH_COUNT_MAX, BUCKET_NAME_SIZE_MAX, CONTENT_TYPE_SIZE_MAX, ETAG_SIZE_MAX,
    KEY_SIZE_MAX, LIST_LIMIT_MAX, MULTIPART_PART_NUMBER_MAX, MULTIPART_PART_SIZE_MIN,
    UPLOADS_NAMESPACE_BIT, UPLOAD_ID_SIZE_MAX, USER_METADATA_SIZE_MAX,
};
pub use codec::DecodeError;
pub use object_store::{Bucket, ObjectStore, ObjectStoreLimits};
pub use snapshot::SNAPSHOT_VERSION;

/// A deterministic state machine replicated by a VSR replica.
///
/// Operation codes below `message::OPERATION_STATE_MACHINE_MIN` belong to
/// the protocol and never reach the state machine. Every method is pure
/// computation: no I/O, no clock, no randomness (the timestamp comes from
/// the primary, through the log).
pub trait StateMachine {
    /// Some(true) for read-only operations (served by `query`), Some(false) for
    /// operations that go through the log (`commit`), None for unknown codes.
    fn operation_read_only(operation: u8) -> Option<bool>;
    /// Cheap, pure validation of a client request body before it enters the log.
    fn request_valid(operation: u8, body: &[u8]) -> bool;
    /// Apply a committed operation. Deterministic: same state + same args =>
    /// same state and reply bytes. Must not panic on any body (bodies are
    /// checksummed but treat them as untrusted): an undecodable body gets an
    /// error reply. The replica calls it once per op, in increasing op order;
    /// the reply body is appended to `reply` (which may already hold a header).
    fn commit(&mut self, op: u64, timestamp: u64, operation: u8, body: &[u8], reply: &mut Vec<u8>);
    /// Serve a read-only operation against the current state (appends to `reply`).
    fn query(&self, operation: u8, body: &[u8], reply: &mut Vec<u8>);
    /// Deterministic, canonical serialization of the whole state
    /// (byte-identical across replicas that applied the same ops),
    /// appended to `out` (the checkpoint encodes around it in one buffer).
    fn snapshot(&self, out: &mut Vec<u8>);
    /// Replace the whole state from snapshot bytes. Err with a clear reason
    /// on malformed input (never panic); on Err the state is unchanged.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), &'static str>;
    /// Upper bound on snapshot() length; the replica sizes its checkpoint
    /// area from it.
    fn snapshot_size_max(&self) -> usize;
}
