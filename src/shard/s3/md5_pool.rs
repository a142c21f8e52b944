//! One shard's MD5 work for the ETags of its uploads, done for many
//! uploads at once (`http::md5_lanes`).
//!
//! An upload hands its body to its [`Md5Stream`] and goes on reading: the
//! hash runs behind the upload, not in front of it. As the shard's only PUT
//! it hands over a copy of each piece (128 KiB, `objects::PIECE`) as it
//! reads it, so the hash keeps up; with other PUTs in flight, when its
//! hash would wait for a companion anyway, it hands over each chunk's
//! frame once sent ([`Md5Stream::feed_frame`], no copy; see
//! [`Md5Pool::hashes_as_they_come`]). One runner task per shard
//! advances every stream with queued bytes, up to 16 in one vector pass,
//! [`SLICE`] bytes per stream per turn, and yields in between so the
//! executor's other work (and more uploads joining the lanes) runs.
//! `finish` waits until the stream's queue is empty.
//!
//! When: a vector pass costs about the same for 2 lanes as for 16, so the
//! runner waits until every open stream (an upload still reading its body)
//! has bytes queued, and hashes at once when a stream is waiting in
//! `finish`, a stream was dropped, or half the queue budget is used, rather
//! than starting each chunk alone as it arrives. A lone stream (the only
//! one open) waits too, for a companion or its `finish`, while other PUTs
//! are in flight on the shard ([`Md5Pool::put_busy`]): their next uploads
//! are likely to join it. It is hashed as it comes only when it is the
//! shard's only PUT (nothing to wait for, and its latency is then what the
//! client sees), or once it has [`LONE_QUEUED_MAX`] bytes queued.
//! Measured at 1 MiB PUTs, 16 connections, `--cores 1` (~5 PUTs per shard,
//! but mostly one of them reading its body at a time): waiting only for
//! the open streams, 35 % of the bytes were hashed alone; with the lone
//! wait as landed, 10-12 %, and server CPU per PUT fell 3.9 % over three
//! pairs (perf/results/2026-12-04/md5-defer/). Nothing waits forever: a
//! stream that neither feeds nor finishes is an upload that will time out
//! and drop it; the other PUTs end, and the last one left goes at once.
//!
//! Bounds: queued buffers (by capacity) are limited per shard
//! ([`QUEUED_BYTES_MAX`]; `feed` waits beyond it), and hashed buffers go back to a small free list
//! ([`FREE_BUFFERS_MAX`]) for the next chunk instead of to the allocator.
//! A stream dropped with bytes queued (an upload that failed) is discarded
//! by the runner without hashing them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::http::md5_lanes::{self, Md5State, BLOCK, LANES};

/// Bytes one stream advances per runner turn before the runner yields.
pub const SLICE: usize = 64 << 10;
/// Bytes a lone stream may have queued while it waits for a companion (a
/// 1 MiB object never reaches it; a large one is hashed this far behind,
/// within the free list's buffers, so `finish` has at most this to do).
pub const LONE_QUEUED_MAX: usize = 2 << 20;
/// Bytes queued for hashing per shard, at most.
pub const QUEUED_BYTES_MAX: u64 = 64 << 20;
/// Hashed buffers kept for reuse.
pub const FREE_BUFFERS_MAX: usize = 16;
/// Buffers larger than this are not kept (they are rare: objects with
/// more than 1,024 chunks).
const FREE_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Bytes queued for hashing: a copy of a body piece (the upload goes on
/// filling the chunk's frame), or a range of a chunk's sent frame (no copy;
/// the frame is reused once this and the chunk write drop it).
enum Queued {
    Copy(Vec<u8>),
    Frame { frame: Rc<[u8]>, start: usize, end: usize },
}

impl Default for Queued {
    fn default() -> Queued {
        Queued::Copy(Vec::new())
    }
}

impl Queued {
    fn bytes(&self) -> &[u8] {
        match self {
            Queued::Copy(data) => data,
            Queued::Frame { frame, start, end } => &frame[*start..*end],
        }
    }

    fn len(&self) -> usize {
        self.bytes().len()
    }

    /// What it holds against the budget: a copy's allocation (a short last
    /// chunk in a chunk-sized buffer too), a frame's range.
    fn budget(&self) -> usize {
        match self {
            Queued::Copy(data) => data.capacity(),
            Queued::Frame { start, end, .. } => end - start,
        }
    }
}

struct Job {
    state: Md5State,
    queue: VecDeque<Queued>,
    /// Bytes of `queue[0]` already hashed.
    offset: usize,
    /// The upload waiting in `finish`.
    waker: Option<Waker>,
}

impl Job {
    fn queued(&self) -> usize {
        self.queue.iter().map(Queued::len).sum::<usize>() - self.offset
    }
}

#[derive(Default)]
struct Shared {
    /// Streams with bytes queued, in arrival order.
    jobs: Vec<Rc<RefCell<Job>>>,
    running: bool,
    /// Streams made and not yet dropped.
    open: usize,
    /// PUT requests in flight on the shard (`put_busy` guards).
    puts: usize,
    /// The runner, parked until a pass is worth it.
    runner: Option<Waker>,
    free: Vec<Vec<u8>>,
    /// Counters (`/metrics`).
    bytes_hashed: u64,
    bytes_vector: u64,
    lane_passes: u64,
    lanes_used: u64,
}

/// Counters: bytes hashed, vector passes and the lanes they used.
#[derive(Clone, Copy, Debug, Default)]
pub struct Md5PoolStats {
    pub bytes_hashed: u64,
    /// Of those, hashed in vector passes (the rest by the scalar code).
    pub bytes_vector: u64,
    pub lane_passes: u64,
    pub lanes_used: u64,
}

pub struct Md5Pool {
    shared: Rc<RefCell<Shared>>,
    budget: Rc<glommio::sync::Semaphore>,
}

impl Default for Md5Pool {
    fn default() -> Md5Pool {
        Md5Pool::new()
    }
}

impl Md5Pool {
    pub fn new() -> Md5Pool {
        Md5Pool {
            shared: Rc::new(RefCell::new(Shared::default())),
            budget: Rc::new(glommio::sync::Semaphore::new(QUEUED_BYTES_MAX)),
        }
    }

    pub fn stream(&self) -> Md5Stream {
        self.shared.borrow_mut().open += 1;
        Md5Stream {
            job: Rc::new(RefCell::new(Job {
                state: Md5State::new(),
                queue: VecDeque::new(),
                offset: 0,
                waker: None,
            })),
            shared: self.shared.clone(),
            budget: self.budget.clone(),
        }
    }

    /// Count a PUT request (of any size, for its whole life) as in flight
    /// on this shard until the guard drops: while another PUT is here, a
    /// lone upload's bytes wait for a companion (module comment, "When").
    pub fn put_busy(&self) -> PutBusy {
        self.shared.borrow_mut().puts += 1;
        PutBusy { shared: self.shared.clone() }
    }

    /// Whether an upload's pieces are hashed as they come (its PUT is the
    /// shard's only one): then it hands over a copy of each piece as it is
    /// read. Otherwise its stream waits anyway, and the upload hands over
    /// each chunk's frame once sent (`feed_frame`), with no copy.
    pub fn hashes_as_they_come(&self) -> bool {
        only_put(&self.shared.borrow())
    }

    /// An empty buffer of at least `capacity` bytes, reused if a free one
    /// is at most twice that (a small object does not take, and keep as
    /// its inline data, a chunk-sized buffer).
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        let mut shared = self.shared.borrow_mut();
        let fits = |b: &Vec<u8>| (capacity..=capacity.saturating_mul(2)).contains(&b.capacity());
        match shared.free.iter().position(fits) {
            Some(i) => shared.free.swap_remove(i),
            None => Vec::with_capacity(capacity),
        }
    }

    pub fn stats(&self) -> Md5PoolStats {
        let shared = self.shared.borrow();
        Md5PoolStats {
            bytes_hashed: shared.bytes_hashed,
            bytes_vector: shared.bytes_vector,
            lane_passes: shared.lane_passes,
            lanes_used: shared.lanes_used,
        }
    }
}

/// A PUT in flight ([`Md5Pool::put_busy`]).
pub struct PutBusy {
    shared: Rc<RefCell<Shared>>,
}

impl Drop for PutBusy {
    fn drop(&mut self) {
        // The lone stream left may be due now.
        count_down(&self.shared, |shared| &mut shared.puts);
    }
}

/// One upload's running MD5.
pub struct Md5Stream {
    job: Rc<RefCell<Job>>,
    shared: Rc<RefCell<Shared>>,
    budget: Rc<glommio::sync::Semaphore>,
}

impl Md5Stream {
    /// Hash `data` now, on this task. Only before anything was fed.
    pub fn update_now(&mut self, data: &[u8]) {
        let mut job = self.job.borrow_mut();
        assert!(job.queue.is_empty(), "update_now after feed would reorder the bytes");
        job.state.update(data);
    }

    /// Queue `data` to be hashed after everything fed before it. Waits
    /// while the shard's queue is full.
    pub async fn feed(&mut self, data: Vec<u8>) {
        self.queue(Queued::Copy(data)).await;
    }

    /// Queue `frame[range]` (a chunk's frame, sent and no longer written)
    /// to be hashed after everything fed before it, without a copy.
    pub async fn feed_frame(&mut self, frame: Rc<[u8]>, range: std::ops::Range<usize>) {
        assert!(range.start <= range.end && range.end <= frame.len());
        self.queue(Queued::Frame { frame, start: range.start, end: range.end }).await;
    }

    async fn queue(&mut self, data: Queued) {
        if data.len() == 0 {
            return;
        }
        // The budget counts what `Queued::budget` says, taken here and
        // given back whole when the bytes are hashed or their stream
        // dropped. The semaphore is never closed, so acquire cannot fail;
        // if it ever did, hashing without the bound is still correct.
        assert!(
            data.budget() as u64 <= QUEUED_BYTES_MAX / 2,
            "a chunk buffer over half the queue (chunk_size_max is 8 MiB)"
        );
        let _ = self.budget.acquire(data.budget() as u64).await;
        let first = {
            let mut job = self.job.borrow_mut();
            job.queue.push_back(data);
            job.queue.len() == 1
        };
        let start = {
            let mut shared = self.shared.borrow_mut();
            if first {
                shared.jobs.push(self.job.clone());
            }
            !std::mem::replace(&mut shared.running, true)
        };
        wake_runner(&self.shared);
        if start {
            let (shared, budget) = (self.shared.clone(), self.budget.clone());
            glommio::spawn_local(run(shared, budget)).detach();
        }
    }

    /// The digest, once every fed byte is hashed.
    pub async fn finish(self) -> [u8; 16] {
        poll_fn(|context| {
            let mut job = self.job.borrow_mut();
            if job.queue.is_empty() {
                Poll::Ready(())
            } else {
                job.waker = Some(context.waker().clone());
                drop(job);
                wake_runner(&self.shared);
                Poll::Pending
            }
        })
        .await;
        let state = self.job.borrow().state.clone();
        state.finalize()
    }
}

impl Drop for Md5Stream {
    fn drop(&mut self) {
        count_down(&self.shared, |shared| &mut shared.open);
    }
}

/// Decrement one of the pool's counts (a stream or a PUT gone) and wake
/// the runner: a pass may be due now.
fn count_down(shared: &RefCell<Shared>, count: impl FnOnce(&mut Shared) -> &mut usize) {
    {
        let mut shared = shared.borrow_mut();
        let count = count(&mut shared);
        assert!(*count > 0, "counted down below zero");
        *count -= 1;
    }
    wake_runner(shared);
}

/// This shard has no PUT but the one asking: nothing could bring a lone
/// stream a companion, so it is hashed as it comes.
fn only_put(shared: &Shared) -> bool {
    shared.puts <= 1
}

fn wake_runner(shared: &RefCell<Shared>) {
    // Take the waker first: waking with the borrow held could re-enter.
    let waker = shared.borrow_mut().runner.take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Whether a pass should run now (module comment, "When").
fn pass_due(shared: &Shared, budget: &glommio::sync::Semaphore) -> bool {
    let ready = shared.jobs.len();
    let urgent = shared.jobs.iter().any(|job| {
        // Only the pool holds it (a dropped upload), or the upload waits.
        Rc::strong_count(job) == 1 || job.borrow().waker.is_some()
    });
    if urgent || budget.available() < QUEUED_BYTES_MAX / 2 {
        return true;
    }
    if ready < shared.open.min(LANES) {
        return false;
    }
    // Every open stream has bytes. Two or more: a shared pass. One alone:
    // only if no other PUT could bring a companion, or it queued enough.
    ready >= 2
        || only_put(shared)
        || shared.jobs.iter().any(|job| job.borrow().queued() >= LONE_QUEUED_MAX)
}

/// The runner: once a pass is due, advance every queued stream by up to a
/// slice, yield, repeat until no stream has bytes queued.
async fn run(shared: Rc<RefCell<Shared>>, budget: Rc<glommio::sync::Semaphore>) {
    loop {
        poll_fn(|context| {
            let mut shared_now = shared.borrow_mut();
            if shared_now.jobs.is_empty() || pass_due(&shared_now, &budget) {
                Poll::Ready(())
            } else {
                shared_now.runner = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let jobs = std::mem::take(&mut shared.borrow_mut().jobs);
        if jobs.is_empty() {
            shared.borrow_mut().running = false;
            return;
        }
        let mut kept = Vec::with_capacity(jobs.len());
        let mut lanes: Vec<Rc<RefCell<Job>>> = Vec::new();
        for job in jobs {
            // Only the pool holds it: the upload is gone, drop its bytes.
            // Every queued buffer was taken from the budget whole (a front
            // buffer partly hashed too), so all of it goes back.
            if Rc::strong_count(&job) == 1 {
                let queued = job.borrow().queue.iter().map(Queued::budget).sum::<usize>();
                budget.signal(queued as u64);
                continue;
            }
            let vector = {
                let job = job.borrow();
                job.state.aligned() && job.queue[0].len() - job.offset >= BLOCK
            };
            if vector && lanes.len() < LANES {
                lanes.push(job.clone());
            } else {
                let hashed = scalar_slice(&mut job.borrow_mut());
                shared.borrow_mut().bytes_hashed += hashed as u64;
            }
            kept.push(job);
        }
        if lanes.len() == 1 {
            let hashed = scalar_slice(&mut lanes[0].borrow_mut());
            shared.borrow_mut().bytes_hashed += hashed as u64;
        } else if lanes.len() > 1 {
            let hashed = vector_slice(&lanes);
            let mut shared = shared.borrow_mut();
            shared.bytes_hashed += hashed as u64;
            shared.bytes_vector += hashed as u64;
            shared.lane_passes += 1;
            shared.lanes_used += lanes.len() as u64;
        }
        let mut wake = Vec::new();
        let mut released = 0;
        let mut still = Vec::new();
        {
            let mut shared_now = shared.borrow_mut();
            for job in kept {
                let mut job_now = job.borrow_mut();
                released += retire_front(&mut job_now, &mut shared_now.free);
                if job_now.queue.is_empty() {
                    wake.extend(job_now.waker.take());
                } else {
                    drop(job_now);
                    still.push(job);
                }
            }
            // Streams fed while this turn ran went to `jobs` too; keep each
            // once, in arrival order.
            still.append(&mut shared_now.jobs);
            dedup_by_pointer(&mut still);
            shared_now.jobs = still;
        }
        budget.signal(released as u64);
        wake.into_iter().for_each(Waker::wake);
        futures_lite::future::yield_now().await;
    }
}

/// Hash up to a slice of the front buffer with the scalar function.
fn scalar_slice(job: &mut Job) -> usize {
    let Some(front) = job.queue.front() else { return 0 };
    let end = (job.offset + SLICE).min(front.len());
    let (start, data) = (job.offset, std::mem::take(&mut job.queue[0]));
    job.state.update(&data.bytes()[start..end]);
    job.queue[0] = data;
    job.offset = end;
    end - start
}

/// Advance every lane by the same number of whole blocks (at most a slice)
/// in one vector pass.
fn vector_slice(lanes: &[Rc<RefCell<Job>>]) -> usize {
    let mut guards: Vec<_> = lanes.iter().map(|job| job.borrow_mut()).collect();
    let blocks = guards
        .iter()
        .map(|job| (job.queue[0].len() - job.offset) / BLOCK)
        .min()
        .unwrap_or(0)
        .min(SLICE / BLOCK);
    if blocks == 0 {
        return 0;
    }
    let length = blocks * BLOCK;
    let buffers: Vec<Queued> =
        guards.iter_mut().map(|job| std::mem::take(&mut job.queue[0])).collect();
    {
        let inputs: Vec<&[u8]> = buffers
            .iter()
            .zip(guards.iter())
            .map(|(buffer, job)| &buffer.bytes()[job.offset..job.offset + length])
            .collect();
        let mut states: Vec<&mut [u32; 4]> =
            guards.iter_mut().map(|job| &mut job.state.state).collect();
        md5_lanes::compress_lanes(&mut states, &inputs);
    }
    for (job, buffer) in guards.iter_mut().zip(buffers) {
        job.state.add_blocks(blocks);
        job.queue[0] = buffer;
        job.offset += length;
    }
    length * lanes.len()
}

/// Drop the front buffer if it is all hashed: back to the free list, its
/// bytes back to the budget.
/// Returns the bytes released.
fn retire_front(job: &mut Job, free: &mut Vec<Vec<u8>>) -> usize {
    let hashed = job.queue.front().is_some_and(|front| job.offset == front.len());
    if !hashed {
        return 0;
    }
    let Some(queued) = job.queue.pop_front() else { return 0 };
    job.offset = 0;
    let released = queued.budget();
    if let Queued::Copy(mut buffer) = queued {
        if free.len() < FREE_BUFFERS_MAX && buffer.capacity() <= FREE_BUFFER_BYTES_MAX {
            buffer.clear();
            free.push(buffer);
        }
    }
    released
}

fn dedup_by_pointer(jobs: &mut Vec<Rc<RefCell<Job>>>) {
    let mut seen: Vec<*const RefCell<Job>> = Vec::with_capacity(jobs.len());
    jobs.retain(|job| {
        let pointer = Rc::as_ptr(job);
        if seen.contains(&pointer) {
            false
        } else {
            seen.push(pointer);
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    /// Let the runner take its turns.
    async fn yields() {
        for _ in 0..16 {
            futures_lite::future::yield_now().await;
        }
    }

    fn run_local<F: std::future::Future<Output = ()> + 'static>(future: F) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(future);
    }

    /// Many streams fed in chunks of odd sizes, interleaved, some dropped
    /// midway: every finished digest is the reference MD5, the budget and
    /// the lanes are used, and nothing stays queued.
    #[test]
    fn interleaved_streams_give_reference_digests() {
        run_local(async {
            let pool = Md5Pool::new();
            let mut data = Vec::new();
            for s in 0..20usize {
                let length = 1 + s * 37_123 % 300_000 + if s % 3 == 0 { 200_000 } else { 0 };
                data.push((0..length).map(|i| (i * 131 + s * 7) as u8).collect::<Vec<u8>>());
            }
            let mut handles = Vec::new();
            for (s, bytes) in data.iter().cloned().enumerate() {
                let mut stream = pool.stream();
                let piece = [1usize, 63, 64, 4_096, 65_536, 100_000][s % 6];
                let drop_midway = s % 7 == 6;
                handles.push(glommio::spawn_local(async move {
                    for (i, part) in bytes.chunks(piece).enumerate() {
                        if drop_midway && i == 3 {
                            return None;
                        }
                        stream.feed(part.to_vec()).await;
                        if i % 5 == 0 {
                            futures_lite::future::yield_now().await;
                        }
                    }
                    Some(stream.finish().await)
                }));
            }
            for (s, handle) in handles.into_iter().enumerate() {
                let digest = handle.await;
                if s % 7 == 6 {
                    assert!(digest.is_none());
                    continue;
                }
                let expected: [u8; 16] = Md5::digest(&data[s]).into();
                assert_eq!(digest, Some(expected), "stream {s}");
            }
            // Let the runner discard the dropped streams' bytes.
            for _ in 0..64 {
                futures_lite::future::yield_now().await;
            }
            let stats = pool.stats();
            if md5_lanes::lanes_available() {
                assert!(stats.lane_passes > 0, "no vector pass: {stats:?}");
                assert!(stats.lanes_used >= 2 * stats.lane_passes);
            }
            assert!(pool.shared.borrow().jobs.is_empty());
            assert!(!pool.shared.borrow().running);
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
        });
    }

    /// The runner waits for every open stream to have bytes, then hashes
    /// them in shared passes; a stream waiting in `finish` or dropped
    /// makes it go at once.
    #[test]
    fn passes_wait_for_the_open_streams() {
        run_local(async {
            let pool = Md5Pool::new();
            let data = vec![5u8; 256 << 10];
            let mut a = pool.stream();
            let mut b = pool.stream();
            a.feed(data.clone()).await;
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, 0, "a pass ran with b open and empty");
            b.feed(data.clone()).await;
            yields().await;
            let stats = pool.stats();
            assert_eq!(stats.bytes_hashed, 2 * data.len() as u64);
            assert_eq!(stats.lanes_used, 2 * stats.lane_passes);
            let expected: [u8; 16] = Md5::digest(&data).into();
            assert_eq!((a.finish().await, b.finish().await), (expected, expected));
            // One stream fed, the other dropped without feeding: the drop
            // lets the pass run.
            let mut c = pool.stream();
            let d = pool.stream();
            c.feed(data.clone()).await;
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, stats.bytes_hashed);
            drop(d);
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, stats.bytes_hashed + data.len() as u64);
            assert_eq!(c.finish().await, expected);
            // `finish` does not wait for the other open streams.
            let mut e = pool.stream();
            let _f = pool.stream();
            e.feed(data.clone()).await;
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, stats.bytes_hashed + data.len() as u64);
            assert_eq!(e.finish().await, expected);
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
        });
    }

    /// A lone stream is hashed as it comes when its PUT is the shard's
    /// only one; with another PUT in flight it waits for a companion (a
    /// shared pass), for its `finish`, or until it queued LONE_QUEUED_MAX.
    #[test]
    fn a_lone_stream_waits_while_other_puts_are_in_flight() {
        run_local(async {
            let pool = Md5Pool::new();
            let data = vec![9u8; 256 << 10];
            let expected: [u8; 16] = Md5::digest(&data).into();
            let only = pool.put_busy();
            let mut a = pool.stream();
            a.feed(data.clone()).await;
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, data.len() as u64, "the only PUT: at once");
            assert_eq!(a.finish().await, expected);

            let other = pool.put_busy();
            let mut b = pool.stream();
            b.feed(data.clone()).await;
            yields().await;
            let hashed = pool.stats().bytes_hashed;
            assert_eq!(hashed, data.len() as u64, "another PUT in flight: b waits");
            // A companion joins: one shared pass for both.
            let mut c = pool.stream();
            c.feed(data.clone()).await;
            yields().await;
            let stats = pool.stats();
            assert_eq!(stats.bytes_hashed, 3 * data.len() as u64);
            if md5_lanes::lanes_available() {
                assert_eq!(stats.bytes_vector, 2 * data.len() as u64, "b and c shared passes");
            }
            assert_eq!((b.finish().await, c.finish().await), (expected, expected));

            // Alone again: finish does not wait for the other PUT.
            let mut d = pool.stream();
            d.feed(data.clone()).await;
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, 3 * data.len() as u64);
            assert_eq!(d.finish().await, expected);
            // Nor does a lone stream that queued LONE_QUEUED_MAX.
            let mut e = pool.stream();
            let mut fed = 0;
            while fed < LONE_QUEUED_MAX {
                e.feed(data.clone()).await;
                fed += data.len();
            }
            yields().await;
            assert!(pool.stats().bytes_hashed > 4 * data.len() as u64, "hashed along");
            // The other PUT ends: the lone stream is the only one, and goes.
            drop(e);
            yields().await;
            let mut f = pool.stream();
            f.feed(data.clone()).await;
            yields().await;
            let before = pool.stats().bytes_hashed;
            drop(other);
            yields().await;
            assert_eq!(pool.stats().bytes_hashed, before + data.len() as u64);
            assert_eq!(f.finish().await, expected);
            drop(only);
            assert_eq!(pool.shared.borrow().puts, 0);
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
        });
    }

    /// Copies and frame ranges fed in any mix hash in order, to the
    /// reference digest; a hashed frame is let go (its other holders are
    /// the only ones left), and a dropped stream lets its frames go too.
    #[test]
    fn frames_and_copies_hash_in_order_and_are_let_go() {
        run_local(async {
            let pool = Md5Pool::new();
            let body: Vec<u8> = (0..700_000u32).map(|i| (i * 13 + 5) as u8).collect();
            let frame = |range: std::ops::Range<usize>| -> Rc<[u8]> {
                let mut bytes = vec![0xaa; 256];
                bytes.extend_from_slice(&body[range]);
                Rc::from(bytes)
            };
            let (one, two) = (frame(100_000..400_000), frame(400_000..700_000));
            let mut stream = pool.stream();
            stream.feed(body[..100_000].to_vec()).await;
            stream.feed_frame(one.clone(), 256..one.len()).await;
            stream.feed_frame(two.clone(), 256..two.len()).await;
            let expected: [u8; 16] = Md5::digest(&body).into();
            assert_eq!(stream.finish().await, expected);
            assert_eq!((Rc::strong_count(&one), Rc::strong_count(&two)), (1, 1));
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
            // Frames never enter the copies' free list.
            assert!(pool.shared.borrow().free.iter().all(|b| b.capacity() <= 100_000 * 2));

            let other = pool.put_busy();
            let _companion_wait = pool.put_busy();
            let mut dropped = pool.stream();
            dropped.feed_frame(one.clone(), 256..one.len()).await;
            yields().await;
            assert_eq!(Rc::strong_count(&one), 2, "queued: waits for a companion");
            drop(dropped);
            yields().await;
            assert_eq!(Rc::strong_count(&one), 1, "a dropped stream lets its frame go");
            drop(other);
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
        });
    }

    /// An upload dropped while its front buffer is partly hashed gives
    /// the whole buffer back to the budget.
    #[test]
    fn a_stream_dropped_midway_returns_its_budget() {
        run_local(async {
            let pool = Md5Pool::new();
            let mut stream = pool.stream();
            stream.feed(vec![1u8; 1 << 20]).await;
            stream.feed(vec![2u8; 1 << 20]).await;
            // One runner turn hashes a slice of the front buffer.
            while pool.stats().bytes_hashed == 0 {
                futures_lite::future::yield_now().await;
            }
            assert!(pool.stats().bytes_hashed < 1 << 20, "the front buffer is partly hashed");
            drop(stream);
            while pool.shared.borrow().running {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(pool.budget.available(), QUEUED_BYTES_MAX);
        });
    }

    /// Hashed buffers are reused for chunks of about their size, never
    /// handed to a small object.
    #[test]
    fn free_buffers_go_to_chunks_of_their_size() {
        run_local(async {
            let pool = Md5Pool::new();
            let mut stream = pool.stream();
            let mut chunk = pool.buffer(1 << 20);
            chunk.resize(1 << 20, 3);
            stream.feed(chunk).await;
            let _ = stream.finish().await;
            assert_eq!(pool.shared.borrow().free.len(), 1);
            assert!(pool.buffer(4096).capacity() < 1 << 20);
            assert_eq!(pool.shared.borrow().free.len(), 1);
            let reused = pool.buffer(1 << 20);
            assert!(reused.capacity() >= 1 << 20 && reused.is_empty());
            assert!(pool.shared.borrow().free.is_empty());
        });
    }

    #[test]
    fn update_now_then_finish_without_feed() {
        run_local(async {
            let pool = Md5Pool::new();
            let mut stream = pool.stream();
            stream.update_now(b"abc");
            let digest = stream.finish().await;
            assert_eq!(
                crate::http::checksum::hex_lower(&digest),
                "900150983cd24fb0d6963f7d28e17f72"
            );
        });
    }
}
