// Multi-buffer MD5 kernel throughput (ARCHITECTURE.md "Multi-buffer MD5"):
// `compress_lanes` with 1..16 lanes of 64 KiB each, against md-5's asm
// scalar compression. Scratch crate, see perf/micro/README.md.
use md5::Digest;
use std::time::Instant;
use toasty::http::md5_lanes::{compress_lanes, LANES};

fn main() {
    let data: Vec<Vec<u8>> = (0..LANES).map(|l| vec![l as u8 + 1; 64 << 10]).collect();
    for _ in 0..3 {
        let start = Instant::now();
        let mut h = md5::Md5::new();
        for _ in 0..256 { h.update(&data[0]); }
        let _ = h.finalize();
        let s = start.elapsed().as_secs_f64();
        print!("scalar {:.0}  ", 16.0 / s);
        for lanes in [1usize, 2, 3, 4, 6, 8, 12, 16] {
            let mut states = vec![[0x67452301u32, 0xefcdab89, 0x98badcfe, 0x10325476]; lanes];
            let inputs: Vec<&[u8]> = data[..lanes].iter().map(|d| d.as_slice()).collect();
            let start = Instant::now();
            for _ in 0..64 {
                let mut refs: Vec<&mut [u32; 4]> = states.iter_mut().collect();
                compress_lanes(&mut refs, &inputs);
            }
            let s = start.elapsed().as_secs_f64();
            print!("{lanes}:{:.0} ", 64.0 * 64.0 / 1024.0 * lanes as f64 / s);
        }
        println!();
    }
}
