//! Object bodies that verify themselves.
//!
//! Every body is a 32-byte header followed by bytes taken from one shared
//! pseudo-random pattern, at an offset derived from (key, version):
//!
//! ```text
//! 0..4   magic "TLG2"
//! 4..8   version  u32 LE   (1 for a key's first PUT in a run, +1 per PUT)
//! 8..12  key id   u32 LE
//! 12..16 run id   u32 LE   (random per run: versions restart each run)
//! 16..24 length   u64 LE   (the whole body, header included)
//! 24..32 check    u64 LE   (a hash of the four fields above)
//! 32..   pattern[(offset(key, version, run) + i) mod 1 MiB]
//! ```
//!
//! So a GET of an older-but-valid version parses (header check passes, the
//! data matches that version's pattern) and says which run and version it
//! is (the worker then calls it current, stale or impossible), while a
//! flipped byte anywhere fails: in the header the check or key no longer
//! matches, in the data the byte differs from the regenerated pattern. The
//! verifier streams: it never holds more than the 32-byte header.

use crate::workload::{mix64, Rng};

pub const BODY_HEADER_BYTES: usize = 32;
const MAGIC: &[u8; 4] = b"TLG2";
/// The pattern repeats every 1 MiB; the buffer holds two periods so any
/// period-long window is one contiguous slice (one iovec per write).
pub const PATTERN_PERIOD_BYTES: usize = 1 << 20;
/// Fixed, not the run's seed: a later run can verify what an earlier one wrote.
const PATTERN_SEED: u64 = 0x7057_a57f_10ad_6e11;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySpec {
    pub key_id: u64,
    pub version: u32,
    pub run_id: u32,
    pub len: u64,
}

impl BodySpec {
    pub fn header(&self) -> [u8; BODY_HEADER_BYTES] {
        let mut h = [0u8; BODY_HEADER_BYTES];
        h[0..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&self.version.to_le_bytes());
        assert!(self.key_id <= u32::MAX as u64, "key ids fit the header (KEYS_MAX)");
        h[8..12].copy_from_slice(&(self.key_id as u32).to_le_bytes());
        h[12..16].copy_from_slice(&self.run_id.to_le_bytes());
        h[16..24].copy_from_slice(&self.len.to_le_bytes());
        h[24..32].copy_from_slice(&header_check(self).to_le_bytes());
        h
    }

    fn pattern_offset(&self) -> usize {
        let salt = ((self.version as u64) << 32 | self.run_id as u64) ^ PATTERN_SEED;
        (mix64(mix64(salt) ^ self.key_id) % PATTERN_PERIOD_BYTES as u64) as usize
    }
}

fn header_check(spec: &BodySpec) -> u64 {
    let salt = ((spec.version as u64) << 32 | spec.run_id as u64) ^ PATTERN_SEED;
    mix64(mix64(mix64(salt) ^ spec.key_id) ^ spec.len)
}

pub struct Pattern {
    bytes: Box<[u8]>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    pub fn new() -> Pattern {
        let mut bytes = vec![0u8; 2 * PATTERN_PERIOD_BYTES].into_boxed_slice();
        let mut rng = Rng::new(PATTERN_SEED);
        for chunk in bytes[..PATTERN_PERIOD_BYTES].chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let (first, second) = bytes.split_at_mut(PATTERN_PERIOD_BYTES);
        second.copy_from_slice(first);
        Pattern { bytes }
    }

    /// The body's bytes from `pos` (≥ the header) on: at most one period and
    /// never past the body's end.
    pub fn data(&self, spec: &BodySpec, pos: u64) -> &[u8] {
        assert!(pos >= BODY_HEADER_BYTES as u64 && pos <= spec.len);
        let data_pos = ((pos - BODY_HEADER_BYTES as u64) % PATTERN_PERIOD_BYTES as u64) as usize;
        let start = (spec.pattern_offset() + data_pos) % PATTERN_PERIOD_BYTES;
        let len = ((spec.len - pos) as usize).min(PATTERN_PERIOD_BYTES);
        &self.bytes[start..start + len]
    }

    /// The whole body (tests and the mock only: it allocates).
    pub fn body(&self, spec: &BodySpec) -> Vec<u8> {
        let mut out = spec.header().to_vec();
        while (out.len() as u64) < spec.len {
            out.extend_from_slice(self.data(spec, out.len() as u64));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub offset: u64,
    pub reason: String,
}

/// Streams a GET body for one key; see the module comment for the rule.
pub struct BodyCheck {
    key_id: u64,
    content_length: Option<u64>,
    pos: u64,
    header: [u8; BODY_HEADER_BYTES],
    spec: Option<BodySpec>,
    failure: Option<VerifyFailure>,
}

impl BodyCheck {
    pub fn new(key_id: u64, content_length: Option<u64>) -> BodyCheck {
        BodyCheck {
            key_id,
            content_length,
            pos: 0,
            header: [0; BODY_HEADER_BYTES],
            spec: None,
            failure: None,
        }
    }

    fn fail(&mut self, offset: u64, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(VerifyFailure { offset, reason });
        }
    }

    pub fn feed(&mut self, pattern: &Pattern, mut data: &[u8]) {
        if self.failure.is_some() {
            self.pos += data.len() as u64;
            return;
        }
        if self.pos < BODY_HEADER_BYTES as u64 {
            let at = self.pos as usize;
            let take = (BODY_HEADER_BYTES - at).min(data.len());
            self.header[at..at + take].copy_from_slice(&data[..take]);
            self.pos += take as u64;
            data = &data[take..];
            if self.pos == BODY_HEADER_BYTES as u64 {
                self.parse_header();
            }
        }
        while !data.is_empty() && self.failure.is_none() {
            let Some(spec) = self.spec else { return };
            if self.pos >= spec.len {
                self.fail(
                    self.pos,
                    format!("body longer than the {} bytes its header says", spec.len),
                );
                break;
            }
            let expected = pattern.data(&spec, self.pos);
            let n = expected.len().min(data.len());
            if expected[..n] != data[..n] {
                let i = expected[..n].iter().zip(&data[..n]).position(|(a, b)| a != b).unwrap_or(0);
                self.fail(
                    self.pos + i as u64,
                    format!("data byte differs from version {}'s content", spec.version),
                );
            }
            self.pos += n as u64;
            data = &data[n..];
        }
        self.pos += data.len() as u64;
    }

    fn parse_header(&mut self) {
        let h = &self.header;
        let version = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let key_id = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) as u64;
        let run_id = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        let check = u64::from_le_bytes(h[24..32].try_into().expect("8 bytes"));
        let spec = BodySpec { key_id, version, run_id, len };
        if &h[0..4] != MAGIC {
            self.fail(0, "no toasty-loadgen header (magic differs)".into());
        } else if check != header_check(&spec) {
            self.fail(24, "header check differs (header corrupted)".into());
        } else if key_id != self.key_id {
            self.fail(8, format!("body belongs to key id {key_id}, not {}", self.key_id));
        } else if self.content_length.is_some_and(|n| n != len) {
            self.fail(
                16,
                format!("Content-Length {:?} but the header says {len}", self.content_length),
            );
        } else {
            self.spec = Some(spec);
        }
    }

    /// The version the body carries, or why it is not a valid body.
    pub fn finish(&self) -> Result<BodySpec, VerifyFailure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        match self.spec {
            None => Err(VerifyFailure {
                offset: self.pos,
                reason: format!("body of {} bytes is shorter than a header", self.pos),
            }),
            Some(spec) if spec.len != self.pos => Err(VerifyFailure {
                offset: self.pos,
                reason: format!("body has {} bytes, its header says {}", self.pos, spec.len),
            }),
            Some(spec) => Ok(spec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        pattern: &Pattern,
        key_id: u64,
        body: &[u8],
        step: usize,
    ) -> Result<BodySpec, VerifyFailure> {
        let mut c = BodyCheck::new(key_id, Some(body.len() as u64));
        for chunk in body.chunks(step) {
            c.feed(pattern, chunk);
        }
        c.finish()
    }

    #[test]
    fn valid_bodies_verify_and_name_their_version() {
        let pattern = Pattern::new();
        for len in [32u64, 33, 4096, 3 * PATTERN_PERIOD_BYTES as u64 + 17] {
            let spec = BodySpec { key_id: 42, version: 3, run_id: 77, len };
            let body = pattern.body(&spec);
            assert_eq!(body.len() as u64, len);
            for step in [1, 7, 4096, 1 << 20] {
                assert_eq!(check(&pattern, 42, &body, step), Ok(spec));
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        // Fails if any byte of the body is not covered by the check.
        let pattern = Pattern::new();
        let spec = BodySpec { key_id: 9, version: 2, run_id: 77, len: 300 };
        let body = pattern.body(&spec);
        for i in 0..body.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = body.clone();
                bad[i] ^= bit;
                let result = check(&pattern, 9, &bad, 64);
                assert!(result.is_err(), "flip of byte {i} bit {bit:#x} passed");
            }
        }
    }

    #[test]
    fn older_version_is_valid_not_corrupt() {
        let pattern = Pattern::new();
        let v1 = pattern.body(&BodySpec { key_id: 5, version: 1, run_id: 77, len: 1000 });
        assert_eq!(check(&pattern, 5, &v1, 100).map(|s| s.version), Ok(1));
        // The same key and version from another run is another, valid body.
        let other = pattern.body(&BodySpec { key_id: 5, version: 1, run_id: 78, len: 1000 });
        assert_ne!(v1[32..], other[32..]);
        assert_eq!(check(&pattern, 5, &other, 100).map(|s| s.run_id), Ok(78));
        // Another key's body, truncated or extended bodies are failures.
        assert!(check(&pattern, 6, &v1, 100).is_err());
        assert!(check(&pattern, 5, &v1[..999], 100).is_err());
        let mut longer = v1.clone();
        longer.push(0);
        let mut c = BodyCheck::new(5, None);
        c.feed(&pattern, &longer);
        assert!(c.finish().is_err());
    }
}
