//! MD5 of up to 16 independent streams at once (multi-buffer MD5).
//!
//! Why: one MD5 stream is serial (each 64-byte block depends on the last),
//! and MD5 for the ETag was the largest single cost of a 1 MiB PUT
//! (`md5_compress` 30.2 % of all CPU samples, perf/results/2026-12-03/
//! md5-lanes/). Concurrent PUTs on one shard are independent streams, so
//! one AVX-512 register holds the same 32-bit state word of 16 streams and
//! every instruction advances all of them (MinIO's md5-simd idea). A lane
//! costs about the same whether 2 or 16 lanes are busy, so
//! [`compress_lanes`] pays off from two streams on; one stream goes
//! through the scalar compression function.
//!
//! This module is pure computation: [`Md5State`] is a running MD5 whose
//! compression can be done by [`compress_lanes`] for many states at once;
//! `shard::s3::md5_pool` decides which streams share a call.

/// Bytes per MD5 block.
pub const BLOCK: usize = 64;
/// Streams one [`compress_lanes`] call advances at most.
pub const LANES: usize = 16;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-step additive constants: floor(|sin(i + 1)| × 2^32).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Left-rotation of each step.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// Message word of each step.
const fn word(step: usize) -> usize {
    match step / 16 {
        0 => step,
        1 => (5 * step + 1) % 16,
        2 => (3 * step + 5) % 16,
        _ => (7 * step) % 16,
    }
}

/// A running MD5: the chaining state, the bytes hashed so far, and the
/// tail that does not fill a block yet.
#[derive(Clone, Debug)]
pub struct Md5State {
    pub state: [u32; 4],
    length: u64,
    tail: [u8; BLOCK],
    tail_len: usize,
}

impl Default for Md5State {
    fn default() -> Md5State {
        Md5State::new()
    }
}

impl Md5State {
    pub fn new() -> Md5State {
        Md5State { state: INIT, length: 0, tail: [0; BLOCK], tail_len: 0 }
    }

    /// True when whole blocks may be compressed straight from the next
    /// input (no partial block waits in the tail).
    pub fn aligned(&self) -> bool {
        self.tail_len == 0
    }

    /// Account for `blocks` whole blocks compressed into `state` by the
    /// caller (through [`compress_lanes`]). Only while [`aligned`](Self::aligned).
    pub fn add_blocks(&mut self, blocks: usize) {
        assert!(self.aligned(), "whole blocks only after a whole block");
        self.length += (blocks * BLOCK) as u64;
    }

    /// Hash `data` on this core with the scalar compression function.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if self.tail_len > 0 {
            let take = (BLOCK - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < BLOCK {
                return;
            }
            let block = self.tail;
            compress_one(&mut self.state, &block);
            self.tail_len = 0;
        }
        let whole = data.len() / BLOCK * BLOCK;
        for block in data[..whole].chunks_exact(BLOCK) {
            compress_one(&mut self.state, block.try_into().expect("64 bytes"));
        }
        let rest = &data[whole..];
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.length.wrapping_mul(8);
        let mut pad = [0u8; 2 * BLOCK];
        pad[0] = 0x80;
        let pad_len = if self.tail_len < 56 { 56 - self.tail_len } else { 120 - self.tail_len };
        let length = self.length;
        self.update(&pad[..pad_len]);
        self.update(&bits.to_le_bytes());
        self.length = length;
        debug_assert_eq!(self.tail_len, 0);
        let mut out = [0u8; 16];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

fn compress_one(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    #[cfg(feature = "md5-asm")]
    {
        md5_asm::compress(state, std::slice::from_ref(block));
    }
    #[cfg(not(feature = "md5-asm"))]
    compress_portable(state, block);
}

/// The reference compression function (RFC 1321), one block.
#[cfg_attr(feature = "md5-asm", allow(dead_code))]
fn compress_portable(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for step in 0..64 {
        let f = match step / 16 {
            0 => (b & c) | (!b & d),
            1 => (b & d) | (c & !d),
            2 => b ^ c ^ d,
            _ => c ^ (b | !d),
        };
        let rotated = a.wrapping_add(f).wrapping_add(K[step]).wrapping_add(m[word(step)]);
        let next = b.wrapping_add(rotated.rotate_left(S[step]));
        (a, b, c, d) = (d, next, b, c);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// True if this CPU runs [`compress_lanes`] in one vector pass (AVX-512F);
/// without it, the pool hashes each stream with the scalar function.
pub fn lanes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compress `inputs[i]` (whole blocks, the same number for every lane)
/// into `states[i]`, all lanes in one pass. At most [`LANES`] lanes.
/// Falls back to one lane at a time where AVX-512F is missing.
pub fn compress_lanes(states: &mut [&mut [u32; 4]], inputs: &[&[u8]]) {
    assert_eq!(states.len(), inputs.len());
    assert!(states.len() <= LANES);
    let Some(first) = inputs.first() else { return };
    let length = first.len();
    assert!(length % BLOCK == 0, "whole blocks only");
    assert!(inputs.iter().all(|input| input.len() == length), "every lane the same length");
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    if lanes_available() {
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { avx512::compress(states, inputs) };
        return;
    }
    for (state, input) in states.iter_mut().zip(inputs) {
        for block in input.chunks_exact(BLOCK) {
            compress_one(state, block.try_into().expect("64 bytes"));
        }
    }
}

// The one place outside shard/checks.rs with `unsafe`: SIMD intrinsics
// (loads and stores of local arrays).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{word, BLOCK, K, LANES, S};
    use std::arch::x86_64::*;

    /// Word j of every lane in row j: a block transposed by scalar
    /// stores, then one plain load per word. Cheaper than 16 gathers from
    /// a lane-major copy, whose cost does not shrink with the lanes in use
    /// (perf/micro/README.md, md5_lanes.rs: 1 lane 398-408 against
    /// 257-304 MiB/s, 4 lanes 1,488-1,604 against 1,045-1,201, 16 lanes a
    /// tie within the noise).
    #[repr(C, align(64))]
    struct Rows([[u32; LANES]; 16]);

    macro_rules! step {
        ($imm:literal, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident, $i:expr) => {{
            const I: usize = $i;
            let f = _mm512_ternarylogic_epi32::<$imm>($b, $c, $d);
            let sum = _mm512_add_epi32(
                _mm512_add_epi32($a, _mm512_set1_epi32(K[I] as i32)),
                _mm512_add_epi32($m[word(I)], f),
            );
            $a = _mm512_add_epi32($b, _mm512_rol_epi32::<{ S[I] as i32 }>(sum));
        }};
    }

    macro_rules! four {
        ($imm:literal, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident, $i:expr) => {
            step!($imm, $a, $b, $c, $d, $m, $i);
            step!($imm, $d, $a, $b, $c, $m, $i + 1);
            step!($imm, $c, $d, $a, $b, $m, $i + 2);
            step!($imm, $b, $c, $d, $a, $m, $i + 3);
        };
    }

    /// # Safety
    /// The CPU must have AVX-512F. Lengths as [`super::compress_lanes`] checks.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn compress(states: &mut [&mut [u32; 4]], inputs: &[&[u8]]) {
        let lanes = states.len();
        let mut words = [[0u32; LANES]; 4];
        for (lane, state) in states.iter().enumerate() {
            for (i, word) in state.iter().enumerate() {
                words[i][lane] = *word;
            }
        }
        let load = |w: &[u32; LANES]| unsafe { _mm512_loadu_si512(w.as_ptr().cast()) };
        let (mut a, mut b, mut c, mut d) =
            (load(&words[0]), load(&words[1]), load(&words[2]), load(&words[3]));
        // Lanes beyond `lanes` keep zeros: hashed, never read back.
        let mut rows = Rows([[0; LANES]; 16]);
        let blocks = inputs[0].len() / BLOCK;
        for block in 0..blocks {
            let range = block * BLOCK..(block + 1) * BLOCK;
            for (lane, input) in inputs.iter().enumerate() {
                for (j, bytes) in input[range.clone()].chunks_exact(4).enumerate() {
                    rows.0[j][lane] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                }
            }
            let mut m = [_mm512_setzero_si512(); 16];
            for (j, vector) in m.iter_mut().enumerate() {
                *vector = load(&rows.0[j]);
            }
            let (a0, b0, c0, d0) = (a, b, c, d);
            // F = b ? c : d, G = d ? b : c, H = b ^ c ^ d, I = c ^ (b | !d),
            // as ternary-logic truth tables over (b, c, d).
            four!(0xCA, a, b, c, d, m, 0);
            four!(0xCA, a, b, c, d, m, 4);
            four!(0xCA, a, b, c, d, m, 8);
            four!(0xCA, a, b, c, d, m, 12);
            four!(0xE4, a, b, c, d, m, 16);
            four!(0xE4, a, b, c, d, m, 20);
            four!(0xE4, a, b, c, d, m, 24);
            four!(0xE4, a, b, c, d, m, 28);
            four!(0x96, a, b, c, d, m, 32);
            four!(0x96, a, b, c, d, m, 36);
            four!(0x96, a, b, c, d, m, 40);
            four!(0x96, a, b, c, d, m, 44);
            four!(0x39, a, b, c, d, m, 48);
            four!(0x39, a, b, c, d, m, 52);
            four!(0x39, a, b, c, d, m, 56);
            four!(0x39, a, b, c, d, m, 60);
            a = _mm512_add_epi32(a, a0);
            b = _mm512_add_epi32(b, b0);
            c = _mm512_add_epi32(c, c0);
            d = _mm512_add_epi32(d, d0);
        }
        let store = |v: __m512i, w: &mut [u32; LANES]| unsafe {
            _mm512_storeu_si512(w.as_mut_ptr().cast(), v)
        };
        store(a, &mut words[0]);
        store(b, &mut words[1]);
        store(c, &mut words[2]);
        store(d, &mut words[3]);
        for (lane, state) in states.iter_mut().enumerate().take(lanes) {
            for (i, word) in state.iter_mut().enumerate() {
                *word = words[i][lane];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn reference(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    #[test]
    fn known_answers() {
        // RFC 1321, appendix A.5.
        let cases: [(&[u8], &str); 3] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, hex) in cases {
            let mut state = Md5State::new();
            state.update(input);
            assert_eq!(crate::http::checksum::hex_lower(&state.finalize()), hex);
        }
    }

    #[test]
    fn portable_matches_the_crate() {
        let data: Vec<u8> = (0..BLOCK * 3).map(|i| (i * 7 + 3) as u8).collect();
        let mut state = INIT;
        for block in data.chunks_exact(BLOCK) {
            compress_portable(&mut state, block.try_into().unwrap());
        }
        let mut expected = INIT;
        for block in data.chunks_exact(BLOCK) {
            compress_one(&mut expected, block.try_into().unwrap());
        }
        assert_eq!(state, expected);
    }

    proptest! {
        /// Streams hashed partly in shared vector passes and partly alone,
        /// in pieces of any size, give the same digests as the md-5 crate.
        #[test]
        fn lanes_match_the_reference(
            streams in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..2_000), 0usize..300), 1..=LANES),
            blocks in 1usize..5,
        ) {
            let mut states: Vec<Md5State> = Vec::new();
            for (data, split) in &streams {
                let mut state = Md5State::new();
                state.update(&data[..(*split).min(data.len())]);
                states.push(state);
            }
            // Lanes: every stream that is aligned and has `blocks` blocks left.
            let mut offsets: Vec<usize> =
                streams.iter().map(|(data, split)| (*split).min(data.len())).collect();
            let chosen: Vec<usize> = (0..streams.len())
                .filter(|&i| states[i].aligned() && streams[i].0.len() - offsets[i] >= blocks * BLOCK)
                .collect();
            {
                let inputs: Vec<&[u8]> = chosen
                    .iter()
                    .map(|&i| &streams[i].0[offsets[i]..offsets[i] + blocks * BLOCK])
                    .collect();
                let mut lane_states: Vec<&mut [u32; 4]> = Vec::new();
                for (i, state) in states.iter_mut().enumerate() {
                    if chosen.contains(&i) {
                        lane_states.push(&mut state.state);
                    }
                }
                compress_lanes(&mut lane_states, &inputs);
            }
            for &i in &chosen {
                states[i].add_blocks(blocks);
                offsets[i] += blocks * BLOCK;
            }
            for (i, state) in states.into_iter().enumerate() {
                let mut state = state;
                state.update(&streams[i].0[offsets[i]..]);
                prop_assert_eq!(state.finalize(), reference(&streams[i].0));
            }
        }
    }
}
