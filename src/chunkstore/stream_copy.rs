//! Copying a chunk into write memory with non-temporal stores.
//!
//! A record's bytes are copied once, into memory only the device reads
//! next (an O_DIRECT write). A plain `memcpy` of a 1 MiB chunk first reads
//! every destination line into the cache (the destination is a pooled
//! buffer last touched a batch or more ago), then evicts the source and
//! the rest of the working set with lines nobody will read. glibc switches
//! its memcpy to non-temporal stores only above a threshold it derives
//! from the cache size the CPU reports, which on these VMs (480 MiB of
//! "L3") is never. Streaming stores write whole lines around the cache.
//! Alone, in perf/micro/stream_copy.rs (1 MiB into one of 37 rotating
//! destinations, 6 runs), they took 47-53 µs from a hot source where
//! `copy_from_slice` took 51-73, and 76-77 from a cold one against 76-95.
//! In the server, where the cache the plain copy fills is the one the
//! rest of the work needs, server CPU per 1 MiB PUT fell 5.4 % (three
//! alternating pairs, perf/results/2026-12-04/stream-copy/). SSE2's
//! 16-byte `movntdq` is part of x86-64 itself (no feature check) and
//! matched AVX-512's 64-byte stores.

/// Below this, a plain copy (the lines are few and may be read again).
pub const STREAM_COPY_MIN: usize = 64 << 10;

/// `dst.copy_from_slice(src)`, with non-temporal stores on x86-64 when the
/// copy is at least [`STREAM_COPY_MIN`] bytes.
pub fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_COPY_MIN {
        // The head up to a 16-byte aligned destination, plainly.
        let head = dst.as_ptr().align_offset(16).min(src.len());
        dst[..head].copy_from_slice(&src[..head]);
        let body = (src.len() - head) / 64 * 64;
        sse2::copy_lines(&mut dst[head..head + body], &src[head..head + body]);
        dst[head + body..].copy_from_slice(&src[head + body..]);
        return;
    }
    dst.copy_from_slice(src);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod sse2 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    /// Copy whole 64-byte lines into a 16-byte aligned `dst`.
    pub(super) fn copy_lines(dst: &mut [u8], src: &[u8]) {
        assert_eq!(dst.len(), src.len());
        assert_eq!(dst.len() % 64, 0);
        assert_eq!(dst.as_ptr().align_offset(16), 0, "movntdq needs 16-byte alignment");
        for (d, s) in dst.chunks_exact_mut(64).zip(src.chunks_exact(64)) {
            let (d, s) = (d.as_mut_ptr() as *mut __m128i, s.as_ptr() as *const __m128i);
            // SAFETY: SSE2 is part of x86-64. `s` and `d` point at 64
            // valid bytes each (chunks_exact), loads are unaligned-safe,
            // and `d` is 16-byte aligned (dst is, and 64 keeps it).
            unsafe {
                let (a, b, c, e) = (
                    _mm_loadu_si128(s),
                    _mm_loadu_si128(s.add(1)),
                    _mm_loadu_si128(s.add(2)),
                    _mm_loadu_si128(s.add(3)),
                );
                _mm_stream_si128(d, a);
                _mm_stream_si128(d.add(1), b);
                _mm_stream_si128(d.add(2), c);
                _mm_stream_si128(d.add(3), e);
            }
        }
        // Streaming stores are weakly ordered: fence them before whatever
        // hands the memory to the device.
        // SAFETY: SSE2 (x86-64 baseline); a fence has no memory operands.
        unsafe { _mm_sfence() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any length and any misalignment of either side copies exactly.
        #[test]
        fn copies_exactly(length in 0usize..300_000, src_skew in 0usize..64, dst_skew in 0usize..64, seed: u8) {
            let src: Vec<u8> = (0..length + src_skew).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let mut dst = vec![0xeeu8; length + dst_skew + 7];
            copy(&mut dst[dst_skew..dst_skew + length], &src[src_skew..]);
            prop_assert_eq!(&dst[dst_skew..dst_skew + length], &src[src_skew..]);
            prop_assert!(dst[..dst_skew].iter().all(|b| *b == 0xee));
            prop_assert!(dst[dst_skew + length..].iter().all(|b| *b == 0xee));
        }
    }
}
