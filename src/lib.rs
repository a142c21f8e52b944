//! toasty: a replicated, thread-per-core, S3-compatible object store.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.
#![forbid(unsafe_code)]

pub mod chunkstore;
pub mod shard;
pub mod sim;
pub mod vsr;
