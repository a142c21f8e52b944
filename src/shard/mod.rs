//! The production driver: glommio executors, DMA files, sockets, timers.
//! Nothing outside this folder names glommio (see ARCHITECTURE.md).

pub mod checks;
pub mod chunks;
pub mod client_driver;
mod file;
pub mod frames;
pub mod log;
pub mod metrics;
pub mod random;
pub mod s3;
pub mod server;
pub mod storage;
pub mod transport;
pub mod wal;
