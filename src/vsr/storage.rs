//! The storage seam between the replica and its drivers.
//!
//! The replica never touches a file. It emits [`Write`]s (in its outbox) and is
//! told when each one is *durable* (`on_write_done`): a driver reports a write
//! done only after the data is on stable storage (an O_DIRECT | O_DSYNC
//! write that completed, or, under `--wal-sync fdatasync`, an O_DIRECT
//! write plus the fdatasync that covers it, batched across many writes).
//! Reads happen once, synchronously, when a replica opens its durable state
//! at process start, through [`ReadStorage`].
//!
//! The durable state of one replica lives in four zones. Every offset and
//! length is a multiple of [`SECTOR_SIZE`] so that the production driver can
//! use O_DIRECT without bounce buffers.

/// Device block size all writes are aligned to. 4 KiB is the logical block
/// size of every NVMe and virtio disk we target.
pub const SECTOR_SIZE: usize = 4096;

/// Copies of the superblock. Opened by quorum (see `superblock.rs`).
pub const SUPERBLOCK_COPIES: usize = 4;

/// Bytes per superblock copy: one sector, so a copy is written atomically
/// or not at all on a device with 4 KiB atomic writes, and a torn copy is
/// detected by its checksum on any other device.
pub const SUPERBLOCK_COPY_SIZE: usize = SECTOR_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    /// `SUPERBLOCK_COPIES` copies of the superblock, one sector each.
    Superblock,
    /// The redundant header ring: one 256-byte header per WAL slot.
    WalHeaders,
    /// The prepare ring: one `message_size_max` slot per WAL slot.
    WalPrepares,
    /// Two checkpoint areas of `checkpoint_size_max` bytes each; the
    /// superblock says which one holds the current checkpoint.
    Checkpoint,
}

impl Zone {
    pub const ALL: [Zone; 4] =
        [Zone::Superblock, Zone::WalHeaders, Zone::WalPrepares, Zone::Checkpoint];
}

/// Sizes of the zones, derived from the replica's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub wal_slot_count: u64,
    pub message_size_max: u64,
    pub checkpoint_size_max: u64,
}

impl Layout {
    pub fn new(wal_slot_count: u64, message_size_max: u64, checkpoint_size_max: u64) -> Layout {
        let sector = SECTOR_SIZE as u64;
        assert!(wal_slot_count > 0);
        assert!(message_size_max % sector == 0, "message_size_max must be sector aligned");
        assert!(checkpoint_size_max % sector == 0, "checkpoint_size_max must be sector aligned");
        assert!((wal_slot_count * 256) % sector == 0, "header ring must fill whole sectors");
        Layout { wal_slot_count, message_size_max, checkpoint_size_max }
    }

    pub fn zone_size(&self, zone: Zone) -> u64 {
        match zone {
            Zone::Superblock => (SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE) as u64,
            Zone::WalHeaders => self.wal_slot_count * 256,
            Zone::WalPrepares => self.wal_slot_count * self.message_size_max,
            Zone::Checkpoint => 2 * self.checkpoint_size_max,
        }
    }
}

/// Identifies a write so its completion can be routed back to the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// One write the replica asks its driver to make durable.
#[derive(Clone, Debug)]
pub struct Write {
    pub id: WriteId,
    pub zone: Zone,
    /// Byte offset inside the zone; sector aligned.
    pub offset: u64,
    /// Sector-aligned length. Shared so a prepare's bytes need not be copied
    /// to be both sent and written.
    pub data: std::rc::Rc<[u8]>,
}

impl Write {
    pub fn assert_aligned(&self, layout: &Layout) {
        let sector = SECTOR_SIZE as u64;
        assert!(self.offset % sector == 0);
        assert!(self.data.len() as u64 % sector == 0);
        assert!(!self.data.is_empty());
        assert!(self.offset + self.data.len() as u64 <= layout.zone_size(self.zone));
    }
}

/// Synchronous reads used once when a replica opens its durable state.
/// Drivers may return corrupted bytes (the simulator does): the replica
/// verifies every checksum itself.
pub trait ReadStorage {
    /// Fill `buffer` from `zone` at `offset` (sector aligned).
    fn read(&mut self, zone: Zone, offset: u64, buffer: &mut [u8]);
}
