// Scratch benchmark behind chunkstore/stream_copy.rs (see README.md):
// 1 MiB copies into 37 rotating 4 KiB-aligned destinations (the DMA pool's
// size at the production defaults), from 1 source (hot) or 16 (cold), with
// memcpy, AVX-512 streaming stores and SSE2 streaming stores.
// Usage: scratch [destinations=37] [sources=1]
use std::time::Instant;
#[target_feature(enable = "avx512f")]
unsafe fn copy_nt(dst: &mut [u8], src: &[u8]) { unsafe {
    use std::arch::x86_64::*;
    assert_eq!(dst.len(), src.len());
    let n = src.len() / 64 * 64;
    let mut i = 0;
    // dst must be 64-aligned for stream stores
    assert_eq!(dst.as_ptr() as usize % 64, 0);
    while i < n {
        let v = _mm512_loadu_si512(src.as_ptr().add(i) as *const _);
        _mm512_stream_si512(dst.as_mut_ptr().add(i) as *mut _, v);
        i += 64;
    }
    _mm_sfence();
    dst[n..].copy_from_slice(&src[n..]);
}}
unsafe fn copy_nt16(dst: &mut [u8], src: &[u8]) { unsafe {
    use std::arch::x86_64::*;
    let n = src.len() / 64 * 64;
    let mut i = 0;
    while i < n {
        let p = src.as_ptr().add(i) as *const __m128i;
        let q = dst.as_mut_ptr().add(i) as *mut __m128i;
        let (a, b, c, d) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)), _mm_loadu_si128(p.add(2)), _mm_loadu_si128(p.add(3)));
        _mm_stream_si128(q, a); _mm_stream_si128(q.add(1), b); _mm_stream_si128(q.add(2), c); _mm_stream_si128(q.add(3), d);
        i += 64;
    }
    _mm_sfence();
    dst[n..].copy_from_slice(&src[n..]);
}}
fn main() {
    const MB: usize = 1 << 20;
    let ndst: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(37);
    let nsrc: usize = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(1);
    let srcs: Vec<Vec<u8>> = (0..nsrc).map(|i| (0..MB).map(|j| (j * 31 + i) as u8).collect()).collect();
    // 4096-aligned destinations
    let mut pool: Vec<u8> = vec![0u8; ndst * (MB + 8192) + 4096];
    let base = (4096 - pool.as_ptr() as usize % 4096) % 4096;
    let rounds = 3000;
    for pass in 0..3 {
        for (name, mode) in [("memcpy", 0), ("nt-stream", 1), ("nt-sse2", 2)] {
            let t = Instant::now();
            for r in 0..rounds {
                let s = &srcs[r % nsrc];
                // touch source to make it hot (as after recv + xxh3)
                let off = base + (r % ndst) * (MB + 8192) + 128;

                let d = &mut pool[off..off + MB];
                match mode { 0 => d.copy_from_slice(s), 1 => unsafe { copy_nt(d, s) }, _ => unsafe { copy_nt16(d, s) } }
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            println!("pass {pass} {name:10} {us:7.1} us/MiB");
        }
    }
}
