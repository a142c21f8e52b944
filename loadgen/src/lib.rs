//! toasty-loadgen: an S3 load generator that measures latency from the
//! intended send time. See README.md for the flags, the JSON schema and the
//! design decisions.

pub mod body;
pub mod config;
pub mod conn;
pub mod engine;
pub mod http;
pub mod mock;
pub mod report;
pub mod run;
pub mod rxtime;
pub mod s3;
pub mod setup;
pub mod sigv4;
pub mod stats;
pub mod timer;
pub mod tls;
pub mod workload;
