//! Reused buffers for large message frames (one pool per shard thread).
//!
//! A 1 MiB chunk frame is allocated for every chunk a shard receives or
//! sends. A fresh one costs a memset of the whole frame (`shared_zeroed`)
//! and, when the allocator hands back new pages, page faults: in a 1 MiB
//! PUT profile the memset alone was 3.1 % of all samples
//! (perf/results/2026-12-03/md5-lanes/profile-new.txt). Every byte of a
//! frame is written before it is read (a transport reads it whole, an
//! upload fills header and body), so a frame nobody uses any more can be
//! filled again without zeroing.
//!
//! The pool keeps a clone of up to [`TRACKED_MAX`] frames it handed out
//! (the newest). A frame is free again when the pool's clone is its only
//! reference; [`take`] returns a free frame of the exact length asked,
//! unique, so the caller fills it through `Rc::get_mut`. Bounds: at most
//! [`TRACKED_MAX`] frames are kept, and only frames from
//! [`POOLED_BYTES_MIN`] to [`POOLED_BYTES_MAX`] (a 1 MiB chunk and its
//! header): at most 24 × 1 MiB stays allocated per shard while idle.
//! Smaller frames are cheaper to zero than to search for.
//!
//! One pool per thread: each shard runs on its own executor thread
//! (thread-per-core), so nothing here is shared between cores.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::vsr::message::shared_zeroed;

/// Frames kept for reuse, in use or free.
pub const TRACKED_MAX: usize = 24;
/// Smaller frames are allocated fresh.
pub const POOLED_BYTES_MIN: usize = 64 << 10;
/// Larger frames too (the chunks of very large objects, up to 8 MiB), so
/// idle pooled memory stays below `TRACKED_MAX` × this.
pub const POOLED_BYTES_MAX: usize = (1 << 20) + (4 << 10);

#[derive(Default)]
struct Pool {
    /// Oldest first; each entry is a clone of a frame handed out.
    frames: VecDeque<Rc<[u8]>>,
    reused: u64,
    allocated: u64,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A unique frame of `len` bytes: a free pooled one (old contents, to be
/// overwritten whole) or a fresh zeroed one. Pass it to [`track`] once
/// filled so it can be reused after its last user drops it.
pub fn take(len: usize) -> Rc<[u8]> {
    if !pooled(len) {
        return shared_zeroed(len);
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let free = pool.frames.iter().position(|frame| {
            frame.len() == len && Rc::strong_count(frame) == 1 && Rc::weak_count(frame) == 0
        });
        match free.and_then(|i| pool.frames.remove(i)) {
            Some(frame) => {
                pool.reused += 1;
                frame
            }
            None => {
                pool.allocated += 1;
                shared_zeroed(len)
            }
        }
    })
}

/// Keep a clone of `frame` (filled and shared, or no longer needed) for
/// reuse once its other holders drop it; the oldest clone goes once
/// [`TRACKED_MAX`] are kept.
pub fn track(frame: &Rc<[u8]>) {
    if !pooled(frame.len()) {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.frames.len() >= TRACKED_MAX {
            pool.frames.pop_front();
        }
        pool.frames.push_back(frame.clone());
    });
}

fn pooled(len: usize) -> bool {
    (POOLED_BYTES_MIN..=POOLED_BYTES_MAX).contains(&len)
}

/// Large frames reused and freshly allocated by this thread (`/metrics`).
pub fn stats() -> (u64, u64) {
    POOL.with(|pool| {
        let pool = pool.borrow();
        (pool.reused, pool.allocated)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_frame_is_reused_and_a_held_one_is_not() {
        let len = POOLED_BYTES_MIN + 256;
        let mut first = take(len);
        Rc::get_mut(&mut first).expect("unique")[0] = 7;
        track(&first);
        let held = first.clone();
        // Still held by a user: a new one is allocated.
        let mut second = take(len);
        assert!(!Rc::ptr_eq(&second, &held));
        assert!(Rc::get_mut(&mut second).is_some());
        drop(first);
        drop(held);
        // Only the pool holds it now: handed out again, unique, unzeroed.
        let mut third = take(len);
        assert_eq!(third[0], 7);
        assert!(Rc::get_mut(&mut third).is_some());
        // Another length never matches.
        track(&third);
        drop(third);
        let other = take(len + 1);
        assert_eq!(other[0], 0);
        assert_eq!(other.len(), len + 1);
        // Small and very large frames are never pooled.
        for len in [16, POOLED_BYTES_MAX + 1] {
            let frame = take(len);
            track(&frame);
            assert_eq!(Rc::strong_count(&frame), 1);
        }
    }

    #[test]
    fn the_pool_keeps_at_most_tracked_max() {
        let len = POOLED_BYTES_MIN;
        let held: Vec<Rc<[u8]>> = (0..TRACKED_MAX + 5)
            .map(|_| {
                let frame = take(len);
                track(&frame);
                frame
            })
            .collect();
        POOL.with(|pool| assert_eq!(pool.borrow().frames.len(), TRACKED_MAX));
        // The oldest five are no longer kept by the pool.
        assert!(held[..5].iter().all(|f| Rc::strong_count(f) == 1));
        assert!(held[5..].iter().all(|f| Rc::strong_count(f) == 2));
    }
}
