// MD5 throughput of md-5 0.10, with and without its `asm` feature
// (ARCHITECTURE.md "md5-asm feature"). Not built by the workspace: a
// scratch crate, see perf/micro/README.md.
use md5::Digest;
use std::time::Instant;

fn main() {
    let buf = vec![7u8; 1 << 20];
    for _ in 0..3 {
        let start = Instant::now();
        let mut hasher = md5::Md5::new();
        for _ in 0..512 {
            hasher.update(&buf);
        }
        let digest = hasher.finalize();
        let seconds = start.elapsed().as_secs_f64();
        println!("{:.0} MiB/s {:x}", 512.0 / seconds, digest[0]);
    }
}
