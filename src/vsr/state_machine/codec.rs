//! The little-endian, length-prefixed codec shared by requests, replies and
//! snapshots.
//!
//! Every encoding is canonical: one value has exactly one byte string, and
//! the decoder accepts only that string (booleans and option tags are 0 or 1,
//! no trailing bytes). Canonical bytes are what make snapshots of replicas
//! that applied the same ops byte-identical, and what let a fuzzer check
//! `encode(decode(bytes)) == bytes`.
//!
//! The decoder reads untrusted bytes: it never panics, never indexes past the
//! end, and never allocates more than the input could describe.

use std::fmt;

/// Why bytes could not be decoded. The reason is static so that decoding
/// allocates nothing on the error path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decode error: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Bytes of a length or count prefix.
pub const PREFIX_SIZE: usize = 4;

pub fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// A count prefix. Counts above `u32::MAX` cannot come from any input we
/// accept (bodies and snapshots are far smaller), so one is a bug.
pub fn put_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("count does not fit the u32 prefix");
    put_u32(out, count);
}

/// A byte string: u32 length, then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_count(out, bytes.len());
    out.extend_from_slice(bytes);
}

pub fn put_option_u32(out: &mut Vec<u8>, value: Option<u32>) {
    match value {
        None => put_u8(out, 0),
        Some(value) => {
            put_u8(out, 1);
            put_u32(out, value);
        }
    }
}

/// A cursor over untrusted bytes.
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, size: usize) -> Result<&'a [u8], DecodeError> {
        if size > self.bytes.len() {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.bytes.split_at(size);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn id(&mut self) -> Result<[u8; 16], DecodeError> {
        self.array()
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("boolean not 0 or 1")),
        }
    }

    /// A count of elements that take at least `element_size_min` bytes each.
    /// Rejecting counts the remaining bytes cannot hold bounds every
    /// allocation by the input size, whatever the prefix claims.
    pub fn count(&mut self, element_size_min: usize) -> Result<usize, DecodeError> {
        assert!(element_size_min > 0);
        let count = self.u32()? as usize;
        if count > self.remaining() / element_size_min {
            return Err(DecodeError("count larger than the remaining bytes"));
        }
        Ok(count)
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.slice()?.to_vec())
    }

    /// A byte string, borrowed from the input (no copy).
    pub fn slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let size = self.u32()? as usize;
        self.take(size)
    }

    pub fn option_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            _ => Err(DecodeError("option tag not 0 or 1")),
        }
    }

    /// Canonical encodings end exactly where the value ends.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_beyond_remaining_bytes_is_rejected_before_allocating() {
        // Fails if a hostile count could make the decoder reserve 4 GiB.
        let mut body = Vec::new();
        put_u32(&mut body, u32::MAX);
        assert_eq!(
            Decoder::new(&body).count(1),
            Err(DecodeError("count larger than the remaining bytes"))
        );
    }

    #[test]
    fn bytes_past_the_end_are_truncated_not_a_panic() {
        let mut body = Vec::new();
        put_u32(&mut body, 10);
        body.extend_from_slice(b"abc");
        assert_eq!(Decoder::new(&body).bytes(), Err(DecodeError("truncated")));
    }

    #[test]
    fn non_canonical_tags_are_rejected() {
        assert!(Decoder::new(&[2]).bool().is_err());
        assert!(Decoder::new(&[2, 0, 0, 0, 0]).option_u32().is_err());
        let mut decoder = Decoder::new(&[0, 9]);
        assert_eq!(decoder.option_u32(), Ok(None));
        assert_eq!(decoder.finish(), Err(DecodeError("trailing bytes")));
    }
}
