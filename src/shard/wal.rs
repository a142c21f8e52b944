//! The replica's write driver on the real replica file: every write the
//! replica asks for runs at once as its own task. Under `WalSync::Dsync`
//! (the default) a completed write is durable and is reported at once;
//! under `WalSync::Fdatasync` one fdatasync covers every write that
//! completed before it started (group commit without batch boundaries, as
//! the chunk driver's syncs), one sync at a time.
//!
//! Why O_DSYNC won (perf/results/2026-12-04/wal-dsync/): with one sync at
//! a time, each fdatasync a trip through io_uring's worker thread and a
//! wake-up of the shard, a replica managed ~1,800 syncs/s under 4 KiB PUT
//! load, far below the disk's ~4,400 per log with three logs flushing
//! (research/limits.md), and every op waited for two of them in a row
//! (prepare, then header sector). Writes that each carry their own flush
//! overlap freely; the flushes the device sees went up (one per write, 1.6
//! per op per replica, against 1.08 syncs), and still the PUTs got faster
//! and cheaper.
//!
//! Why not `ReplicaFile::write_batch` (one batch at a time): the replica
//! orders a slot's header-sector write after its prepare is durable, so with
//! one batch in flight every op waited for two whole batches in a row; here
//! the header write of op n overlaps the prepare writes of ops n+1.. and
//! the fdatasyncs are shared by whatever is ready.
//!
//! A failed write or fdatasync is fatal: the shard stops (fsyncgate; a
//! PrepareOk must never promise a write whose fate is unknown).

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Waker;

use super::storage::{ReplicaFile, StorageError};
use crate::vsr::storage::{Write, WriteId};

/// Writes in flight at most: far above what the replica issues (its
/// pipeline bounds prepares), so reaching it is a replica bug.
pub const WRITES_IN_FLIGHT_MAX: usize = 4_096;

#[derive(Default)]
struct Shared {
    /// Completed, waiting for the next fdatasync.
    written: Vec<WriteId>,
    /// Durable, to be reported to the replica.
    durable: Vec<WriteId>,
    sync_running: bool,
    failed: Option<StorageError>,
    in_flight: usize,
    waker: Option<Waker>,
    fdatasyncs: u64,
    writes: u64,
    bytes: u64,
}

impl Shared {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    pub writes: u64,
    pub bytes: u64,
    pub fdatasyncs: u64,
    pub in_flight: usize,
}

pub struct WalDriver {
    file: Rc<ReplicaFile>,
    shared: Rc<RefCell<Shared>>,
}

impl WalDriver {
    pub fn new(file: Rc<ReplicaFile>) -> WalDriver {
        WalDriver { file, shared: Rc::new(RefCell::new(Shared::default())) }
    }

    pub fn stats(&self) -> WalStats {
        let shared = self.shared.borrow();
        WalStats {
            writes: shared.writes,
            bytes: shared.bytes,
            fdatasyncs: shared.fdatasyncs,
            in_flight: shared.in_flight,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.shared.borrow().in_flight
    }

    /// Start `write`; it is reported by `take_durable` once durable.
    pub fn submit(&self, write: Write) {
        let mut shared = self.shared.borrow_mut();
        assert!(shared.in_flight < WRITES_IN_FLIGHT_MAX, "replica issued too many writes");
        shared.in_flight += 1;
        shared.writes += 1;
        shared.bytes += write.data.len() as u64;
        drop(shared);
        let (file, shared) = (self.file.clone(), self.shared.clone());
        glommio::spawn_local(async move {
            let result = file.write_one(&write).await;
            if file.durable_on_completion() {
                durable(&shared, write.id, result);
            } else if written(&shared, write.id, result) {
                sync_loop(file, shared).await;
            }
        })
        .detach();
    }

    /// Writes now durable, or the failure that must stop the shard.
    pub fn take_durable(&self) -> Result<Vec<WriteId>, StorageError> {
        let mut shared = self.shared.borrow_mut();
        if let Some(error) = shared.failed.take() {
            return Err(error);
        }
        Ok(std::mem::take(&mut shared.durable))
    }

    pub fn has_durable(&self) -> bool {
        let shared = self.shared.borrow();
        !shared.durable.is_empty() || shared.failed.is_some()
    }

    /// Wake `waker` at the next durable write or failure.
    pub fn register_waker(&self, waker: &Waker) {
        self.shared.borrow_mut().waker = Some(waker.clone());
    }
}

/// Record a completed write that is already durable (`WalSync::Dsync`).
fn durable(shared: &RefCell<Shared>, id: WriteId, result: Result<(), StorageError>) {
    let mut state = shared.borrow_mut();
    match result {
        Ok(()) => {
            state.in_flight -= 1;
            state.durable.push(id);
        }
        // Its fate is unknown: never reported durable; the shard stops.
        Err(error) => {
            state.failed.get_or_insert(error);
        }
    }
    state.wake();
}

/// Record a completed write; true if the caller must start the sync loop.
fn written(shared: &RefCell<Shared>, id: WriteId, result: Result<(), StorageError>) -> bool {
    let mut state = shared.borrow_mut();
    match result {
        Ok(()) => state.written.push(id),
        Err(error) => {
            state.failed.get_or_insert(error);
            state.wake();
            return false;
        }
    }
    if state.sync_running || state.failed.is_some() {
        return false;
    }
    state.sync_running = true;
    true
}

/// fdatasync while writes wait for one. Each covers the writes that
/// completed before it started.
async fn sync_loop(file: Rc<ReplicaFile>, shared: Rc<RefCell<Shared>>) {
    loop {
        let ids = {
            let mut state = shared.borrow_mut();
            if state.written.is_empty() || state.failed.is_some() {
                state.sync_running = false;
                return;
            }
            std::mem::take(&mut state.written)
        };
        let result = file.sync().await;
        let mut state = shared.borrow_mut();
        state.fdatasyncs += 1;
        match result {
            Ok(()) => {
                state.in_flight -= ids.len();
                state.durable.extend(ids);
            }
            Err(error) => {
                // sync_running stays set: no fdatasync after a failed one.
                state.failed.get_or_insert(error);
                state.wake();
                return;
            }
        }
        state.wake();
    }
}
