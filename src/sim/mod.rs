//! The deterministic simulator driver: whole clusters in one thread, time as
//! ticks, every fault drawn from one seed.

pub mod client;
pub mod cluster;
pub mod disk;
pub mod history;
pub mod network;
pub mod prng;
