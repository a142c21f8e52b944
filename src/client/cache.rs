//! A front end's cache of chunk bytes it has read and verified: bounded by
//! bytes, least recently used out first. Sans-IO, like the rest of the
//! object client.
//!
//! Why a cache at all: chunk files are O_DIRECT, so the kernel's page cache
//! never holds them, and every GET of a hot object went to the disk again
//! (this VM's disk reads 1 MiB at ~1,000 MiB/s at queue depth 16, below
//! the 1 MiB GET target) and crossed from the shard to the front end as a
//! message. ScyllaDB keeps its own cache over O_DIRECT files for the same
//! reason.
//!
//! Why it is safe: a chunk is immutable. Its id is never reused for other
//! bytes, and a reference carries the chunk's length and crc32c, which an
//! entry must match to be used (a mismatch is dropped and counted as a
//! miss). Metadata is never cached: a GET still reads the object's current
//! chunk references linearizably from the primary, so an overwritten or
//! deleted object is never served from here; only bytes that the current
//! metadata names are.

use std::collections::{BTreeMap, HashMap};

use crate::vsr::message::Message;
use crate::vsr::state_machine::ChunkRef;

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Chunk bytes held now.
    pub bytes: u64,
}

struct Entry {
    message: Message,
    length: u32,
    crc32c: u32,
    /// Key in `order`: larger is more recent.
    used: u64,
}

pub struct ChunkCache {
    bytes_max: usize,
    entries: HashMap<[u8; 16], Entry>,
    /// Use stamp → chunk id, oldest first.
    order: BTreeMap<u64, [u8; 16]>,
    stamp: u64,
    stats: CacheStats,
}

impl ChunkCache {
    /// A cache of at most `bytes_max` chunk bytes; 0 caches nothing.
    pub fn new(bytes_max: usize) -> ChunkCache {
        ChunkCache {
            bytes_max,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
            stats: CacheStats::default(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Largest chunk kept: an eighth of the cache, so one large object
    /// cannot flush everything else.
    fn entry_bytes_max(&self) -> usize {
        self.bytes_max / 8
    }

    /// The verified bytes of `chunk` (a message whose body is the chunk),
    /// if held under the same length and crc32c.
    pub fn get(&mut self, chunk: &ChunkRef) -> Option<Message> {
        if self.bytes_max == 0 {
            return None;
        }
        let Some(entry) = self.entries.get_mut(&chunk.id) else {
            self.stats.misses += 1;
            return None;
        };
        if entry.length != chunk.length || entry.crc32c != chunk.crc32c {
            // Cannot happen with unique ids; never serve it if it does.
            self.remove(&chunk.id);
            self.stats.misses += 1;
            return None;
        }
        self.stamp += 1;
        self.order.remove(&entry.used);
        entry.used = self.stamp;
        self.order.insert(self.stamp, chunk.id);
        self.stats.hits += 1;
        Some(entry.message.clone())
    }

    /// Keep `message` (its body verified against `chunk`) for later reads.
    pub fn insert(&mut self, chunk: &ChunkRef, message: Message) {
        let size = message.body().len();
        if size != chunk.length as usize || size == 0 || size > self.entry_bytes_max() {
            return;
        }
        if self.entries.contains_key(&chunk.id) {
            return;
        }
        while self.stats.bytes as usize + size > self.bytes_max {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.stats.bytes -= u64::from(entry.length);
                self.stats.evictions += 1;
            }
        }
        self.stamp += 1;
        self.order.insert(self.stamp, chunk.id);
        let entry = Entry { message, length: chunk.length, crc32c: chunk.crc32c, used: self.stamp };
        self.entries.insert(chunk.id, entry);
        self.stats.bytes += size as u64;
        debug_assert!(self.stats.bytes as usize <= self.bytes_max);
        debug_assert_eq!(self.entries.len(), self.order.len());
    }

    fn remove(&mut self, id: &[u8; 16]) {
        if let Some(entry) = self.entries.remove(id) {
            self.order.remove(&entry.used);
            self.stats.bytes -= u64::from(entry.length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::message::{Command, Header};
    use proptest::prelude::*;

    fn chunk(id: u8, length: u32) -> (ChunkRef, Message) {
        let body = vec![id; length as usize];
        let crc32c = crc32c::crc32c(&body);
        let message = Message::new(Header::new(Command::ChunkData), &body);
        (ChunkRef { id: [id; 16], length, crc32c }, message)
    }

    #[test]
    fn hit_returns_the_same_bytes_and_a_mismatched_reference_misses() {
        let mut cache = ChunkCache::new(1 << 20);
        let (reference, message) = chunk(1, 1000);
        assert!(cache.get(&reference).is_none());
        cache.insert(&reference, message.clone());
        assert_eq!(cache.get(&reference).map(|m| m.body().to_vec()), Some(vec![1; 1000]));
        let other_crc = ChunkRef { crc32c: reference.crc32c ^ 1, ..reference };
        assert!(cache.get(&other_crc).is_none(), "a crc32c mismatch is never served");
        assert!(cache.get(&reference).is_none(), "and the entry is gone");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.bytes), (1, 3, 0));
    }

    #[test]
    fn zero_bytes_caches_nothing_and_large_chunks_are_not_kept() {
        let mut off = ChunkCache::new(0);
        let (reference, message) = chunk(2, 100);
        off.insert(&reference, message.clone());
        assert!(off.get(&reference).is_none());
        let mut small = ChunkCache::new(8 * 100 - 8);
        small.insert(&reference, message);
        assert!(small.get(&reference).is_none(), "over an eighth of the cache");
    }

    #[test]
    fn least_recently_used_goes_first() {
        // 64 KiB: eight 8 KiB chunks, each exactly the largest kept.
        let mut cache = ChunkCache::new(64 * 1024);
        let chunks: Vec<_> = (0..9u8).map(|i| chunk(i, 8 * 1024)).collect();
        for (reference, message) in &chunks[..8] {
            cache.insert(reference, message.clone());
        }
        assert_eq!(cache.stats().bytes, 64 * 1024);
        assert!(cache.get(&chunks[0].0).is_some()); // 0 is now the most recent
        cache.insert(&chunks[8].0, chunks[8].1.clone());
        assert_eq!(cache.stats().evictions, 1);
        assert!(cache.get(&chunks[1].0).is_none(), "the least recently used went");
        for i in [0, 2, 7, 8] {
            assert!(cache.get(&chunks[i].0).is_some(), "chunk {i} kept");
        }
        assert_eq!(cache.stats().bytes, 64 * 1024);
    }

    proptest! {
        /// Whatever the sequence of inserts and gets: the bytes held never
        /// exceed the bound, the bytes count is the sum of the entries, and
        /// a hit always returns exactly the bytes inserted under that id.
        #[test]
        fn bounded_and_exact(ops in proptest::collection::vec((any::<bool>(), 0u8..24, 1u32..4096), 1..400)) {
            let bytes_max = 16 * 4096;
            let mut cache = ChunkCache::new(bytes_max);
            for (insert, id, length) in ops {
                let length = if insert { length } else { 0 };
                let (reference, message) = chunk(id, length.max(1));
                if insert {
                    cache.insert(&reference, message);
                } else if let Some(hit) = cache.get(&ChunkRef { id: [id; 16], ..reference }) {
                    prop_assert!(hit.body().iter().all(|b| *b == id));
                }
                let sum: u64 = cache.entries.values().map(|e| u64::from(e.length)).sum();
                prop_assert_eq!(sum, cache.stats().bytes);
                prop_assert!(cache.stats().bytes as usize <= bytes_max);
                prop_assert_eq!(cache.entries.len(), cache.order.len());
            }
        }
    }
}
