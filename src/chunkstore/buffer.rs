//! Write buffers: the memory a write's bytes are encoded into.
//!
//! The core encodes records straight into memory its driver lends it
//! ([`BufferSource`]), so the bytes it decides are the bytes the device
//! reads: the glommio driver lends aligned DMA buffers from a bounded pool
//! and writes a full one as it is (no copy, no allocation per write), and
//! takes it back once written. The in-memory driver and tests use the
//! default, [`HeapBuffers`]. Which memory is lent never changes what the
//! core does: only the driver looks at the memory's type.
//!
//! A batch's contiguous run is cut into pieces of `write_bytes_max`
//! (`Config`): every piece but the run's last is full, each is one write.

use std::any::Any;
use std::fmt;
use std::ops::Deref;

/// Memory lent by a driver: at least the bytes the core asked for.
pub trait BufferMemory: Any {
    /// The whole memory (its length is the capacity).
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Lets a driver recognise its own memory to take it back.
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Where the core takes write memory from.
pub trait BufferSource {
    /// Memory of exactly `capacity_bytes` bytes, contents unspecified (the
    /// core writes every byte of a write, padding included).
    fn take(&mut self, capacity_bytes: usize) -> Box<dyn BufferMemory>;
}

/// Plain heap memory.
pub struct HeapMemory(Box<[u8]>);

impl BufferMemory for HeapMemory {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The default source: fresh zeroed heap memory each time.
#[derive(Debug, Default)]
pub struct HeapBuffers;

impl BufferSource for HeapBuffers {
    fn take(&mut self, capacity_bytes: usize) -> Box<dyn BufferMemory> {
        Box::new(HeapMemory(vec![0; capacity_bytes].into_boxed_slice()))
    }
}

/// One write's bytes: the first `length` bytes of lent memory.
pub struct WriteBuffer {
    memory: Box<dyn BufferMemory>,
    length: usize,
}

impl WriteBuffer {
    /// Empty, to be filled up to the memory's capacity.
    pub fn new(memory: Box<dyn BufferMemory>) -> WriteBuffer {
        WriteBuffer { memory, length: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.memory.bytes().len()
    }

    /// Bytes left before the memory is full.
    pub fn room(&self) -> usize {
        self.capacity() - self.length
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room(), "write buffer overflow");
        let end = self.length + bytes.len();
        // Memory the device reads next: streamed around the cache.
        super::stream_copy::copy(&mut self.memory.bytes_mut()[self.length..end], bytes);
        self.length = end;
    }

    /// Zeros, written explicitly: lent memory may hold an older write.
    pub fn extend_zeros(&mut self, count: usize) {
        assert!(count <= self.room(), "write buffer overflow");
        let end = self.length + count;
        self.memory.bytes_mut()[self.length..end].fill(0);
        self.length = end;
    }

    /// The memory and how many of its first bytes are the write.
    pub fn into_parts(self) -> (Box<dyn BufferMemory>, usize) {
        assert!(self.length <= self.memory.bytes().len());
        (self.memory, self.length)
    }
}

impl Deref for WriteBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.memory.bytes()[..self.length]
    }
}

/// Heap memory holding exactly these bytes (segment headers, tests).
impl From<Vec<u8>> for WriteBuffer {
    fn from(bytes: Vec<u8>) -> WriteBuffer {
        let length = bytes.len();
        WriteBuffer { memory: Box::new(HeapMemory(bytes.into_boxed_slice())), length }
    }
}

/// A copy on the heap: what the bytes are, not where they live.
impl Clone for WriteBuffer {
    fn clone(&self) -> WriteBuffer {
        WriteBuffer::from(self.to_vec())
    }
}

impl PartialEq for WriteBuffer {
    fn eq(&self, other: &WriteBuffer) -> bool {
        **self == **other
    }
}

impl Eq for WriteBuffer {}

impl fmt::Debug for WriteBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteBuffer({} of {} bytes)", self.length, self.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_capacity_and_zeros_stale_bytes() {
        let mut memory = HeapBuffers.take(8);
        memory.bytes_mut().fill(0xff);
        let mut buffer = WriteBuffer::new(memory);
        buffer.extend_from_slice(&[1, 2, 3]);
        buffer.extend_zeros(2);
        assert_eq!(&*buffer, &[1, 2, 3, 0, 0]);
        assert_eq!(buffer.room(), 3);
        let (memory, length) = buffer.into_parts();
        assert_eq!(length, 5);
        assert_eq!(memory.bytes()[5..], [0xff; 3]);
    }

    #[test]
    #[should_panic(expected = "write buffer overflow")]
    fn overflow_panics() {
        let mut buffer = WriteBuffer::new(HeapBuffers.take(4));
        buffer.extend_from_slice(&[0; 5]);
    }
}
