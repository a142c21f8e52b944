//! Configuration of one replica, with the relations between the knobs
//! checked before anything runs (`Config::validate`).

/// A deliberately broken protocol variant, used only to prove the simulator
/// catches each bug ("proof of teeth"). Without the `sim-bugs` feature the
/// replica ignores this field entirely (see `Replica::bug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    None,
    /// The primary commits with only its own PrepareOk.
    CommitWithoutQuorum,
    /// The new primary picks the canonical log by op alone, ignoring log_view.
    ViewChangeByOpOnly,
    /// Backups send PrepareOk before the prepare is durable.
    PrepareOkBeforeDurable,
    /// Backups accept a prepare without checking its parent against their log.
    NoParentCheck,
    /// The primary serves reads without confirming it is still primary.
    ReadWithoutViewCheck,
    /// The primary records a client's request number at prepare time.
    ClientTableBeforeCommit,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::CommitWithoutQuorum,
        Bug::ViewChangeByOpOnly,
        Bug::PrepareOkBeforeDurable,
        Bug::NoParentCheck,
        Bug::ReadWithoutViewCheck,
        Bug::ClientTableBeforeCommit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::None => "none",
            Bug::CommitWithoutQuorum => "commit-without-quorum",
            Bug::ViewChangeByOpOnly => "view-change-by-op-only",
            Bug::PrepareOkBeforeDurable => "prepare-ok-before-durable",
            Bug::NoParentCheck => "no-parent-check",
            Bug::ReadWithoutViewCheck => "read-without-view-check",
            Bug::ClientTableBeforeCommit => "client-table-before-commit",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().chain([Bug::None]).find(|bug| bug.name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub cluster: u128,
    pub group: u32,
    pub replica: u8,
    pub replica_count: u8,
    /// WAL ring size in prepares. slot = op mod wal_slot_count.
    pub wal_slot_count: u64,
    /// Uncommitted prepares the primary may have in flight.
    pub pipeline_max: u64,
    /// Ops between checkpoints. Checkpoints are taken at multiples of this,
    /// so every replica checkpoints the same ops and the bytes can be compared.
    pub checkpoint_interval: u64,
    /// Bytes reserved per checkpoint area (two areas alternate).
    pub checkpoint_size_max: u64,
    pub message_size_max: u64,
    /// Client sessions kept; registering beyond evicts the least recent.
    pub clients_max: usize,
    /// Requests queued at the primary while the pipeline is full.
    pub request_queue_max: usize,
    /// Reads waiting for their read-index round.
    pub read_queue_max: usize,
    /// Headers around its head each replica reports in a DoViewChange.
    pub view_change_window: u64,
    /// Ticks between heartbeats (Commit) of an idle primary.
    pub tick_heartbeat: u64,
    /// Ticks without hearing the primary before a backup starts a view change.
    pub tick_primary_timeout: u64,
    /// Ticks a view change may take before trying the next view.
    pub tick_view_change_timeout: u64,
    /// Ticks between repair attempts (missing prepares, checkpoint pieces).
    pub tick_repair: u64,
    /// Ticks stuck behind a peer's checkpoint before starting state sync.
    pub tick_sync_stuck: u64,
    pub bug: Bug,
}

impl Config {
    /// Small rings so the simulator wraps the WAL and checkpoints often.
    pub fn test_min(cluster: u128, group: u32, replica: u8, replica_count: u8) -> Config {
        Config {
            cluster,
            group,
            replica,
            replica_count,
            wal_slot_count: 64,
            pipeline_max: 4,
            checkpoint_interval: 32,
            checkpoint_size_max: 1 << 20,
            message_size_max: 16 * 1024,
            clients_max: 8,
            request_queue_max: 32,
            read_queue_max: 32,
            view_change_window: 16,
            tick_heartbeat: 5,
            tick_primary_timeout: 40,
            tick_view_change_timeout: 60,
            tick_repair: 10,
            tick_sync_stuck: 50,
            bug: Bug::None,
        }
    }

    /// Production defaults (see tuning.md).
    pub fn production(cluster: u128, group: u32, replica: u8, replica_count: u8) -> Config {
        Config {
            wal_slot_count: 1024,
            pipeline_max: 32,
            checkpoint_interval: 896,
            checkpoint_size_max: 256 << 20,
            message_size_max: 64 * 1024,
            clients_max: 64,
            request_queue_max: 256,
            read_queue_max: 1024,
            view_change_window: 64,
            tick_heartbeat: 10,
            tick_primary_timeout: 100,
            tick_view_change_timeout: 150,
            tick_repair: 10,
            tick_sync_stuck: 200,
            ..Config::test_min(cluster, group, replica, replica_count)
        }
    }

    /// Why this configuration cannot work, or Ok.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.replica_count == 0 || self.replica_count > 6 {
            return Err("replica_count must be 1..=6");
        }
        if self.replica >= self.replica_count {
            return Err("replica index out of range");
        }
        if self.pipeline_max == 0 {
            return Err("pipeline_max must be positive");
        }
        // The primary must be able to reach the next checkpoint with a full
        // pipeline without overwriting a slot whose op is not checkpointed.
        if self.checkpoint_interval + 2 * self.pipeline_max > self.wal_slot_count {
            return Err("checkpoint_interval + 2 * pipeline_max must fit in the WAL ring");
        }
        if self.checkpoint_interval < self.pipeline_max {
            return Err("checkpoint_interval must be at least pipeline_max");
        }
        if (self.wal_slot_count * 256) % crate::vsr::storage::SECTOR_SIZE as u64 != 0 {
            return Err("wal_slot_count must fill whole header sectors (multiple of 16)");
        }
        if self.message_size_max % crate::vsr::storage::SECTOR_SIZE as u64 != 0 {
            return Err("message_size_max must be a multiple of 4096");
        }
        if self.checkpoint_size_max % crate::vsr::storage::SECTOR_SIZE as u64 != 0 {
            return Err("checkpoint_size_max must be a multiple of 4096");
        }
        if self.view_change_window == 0 || self.view_change_window >= self.wal_slot_count {
            return Err("view_change_window must be in 1..wal_slot_count");
        }
        if self.tick_primary_timeout <= 2 * self.tick_heartbeat {
            return Err("tick_primary_timeout must exceed two heartbeats");
        }
        Ok(())
    }

    pub fn quorum_replication(&self) -> usize {
        self.replica_count as usize / 2 + 1
    }

    pub fn quorum_view_change(&self) -> usize {
        self.replica_count as usize / 2 + 1
    }

    /// Replicas that must positively never have acked an op before a new
    /// primary may drop it: any replication quorum intersects this set.
    pub fn quorum_nack(&self) -> usize {
        self.replica_count as usize - self.quorum_replication() + 1
    }

    pub fn primary_index(&self, view: u32) -> u8 {
        ((view as u64 + self.group as u64) % self.replica_count as u64) as u8
    }

    pub fn layout(&self) -> crate::vsr::storage::Layout {
        crate::vsr::storage::Layout::new(
            self.wal_slot_count,
            self.message_size_max,
            self.checkpoint_size_max,
        )
    }
}
