//! toasty: a replicated, thread-per-core, S3-compatible object store.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.
// `deny`, not `forbid`: `shard/checks.rs` alone allows it, for the three
// syscalls a startup check needs and std does not wrap.
#![deny(unsafe_code)]

pub mod chunkstore;
pub mod client;
pub mod http;
pub mod shard;
pub mod sim;
pub mod vsr;
