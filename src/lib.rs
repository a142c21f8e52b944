//! toasty: a replicated, thread-per-core, S3-compatible object store.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.
// `deny`, not `forbid`: three modules allow it. `shard/checks.rs`, for the
// three syscalls a startup check needs and std does not wrap;
// `http/md5_lanes.rs`, for the AVX-512 intrinsics of the multi-buffer MD5
// kernel (ARCHITECTURE.md, "Multi-buffer MD5"); and `chunkstore/
// stream_copy.rs`, for SSE2's streaming stores (ARCHITECTURE.md, "Copies
// per message").
#![deny(unsafe_code)]

pub mod chunkstore;
pub mod client;
pub mod http;
pub mod shard;
pub mod sim;
pub mod vsr;
