//! The production driver: glommio executors, DMA files, sockets, timers.
//! Nothing outside this folder names glommio (see ARCHITECTURE.md).

pub mod checks;
pub mod chunks;
mod file;
pub mod storage;
