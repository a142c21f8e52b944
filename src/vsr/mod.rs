//! Viewstamped Replication: the sans-IO replica, its durable formats and the
//! object-metadata state machine it replicates.
//!
//! Nothing in this module performs I/O, reads a clock, draws randomness from
//! the OS or spawns anything: events come in as method calls, effects go out
//! through an outbox that a driver (`sim/` or `shard/`) executes.

pub mod client_table;
pub mod config;
pub mod message;
pub mod replica;
pub mod state_machine;
pub mod storage;
pub mod superblock;
