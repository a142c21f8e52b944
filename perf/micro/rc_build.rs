// Building a message buffer: a Vec then `Rc::from` (the old Message::new)
// against one zeroed Rc filled in place (`shared_zeroed`, the new one).
// Not built by the workspace: a scratch crate, see perf/micro/README.md.
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

fn old(header: &[u8], body: &[u8]) -> Rc<[u8]> {
    let mut bytes = Vec::with_capacity(header.len() + body.len());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(body);
    bytes.into()
}

fn new(header: &[u8], body: &[u8]) -> Rc<[u8]> {
    let mut bytes: Rc<[u8]> = std::iter::repeat_n(0u8, header.len() + body.len()).collect();
    let slice = Rc::get_mut(&mut bytes).expect("fresh");
    slice[..header.len()].copy_from_slice(header);
    slice[header.len()..].copy_from_slice(body);
    bytes
}

fn main() {
    let header = [1u8; 256];
    for size in [0usize, 64, 4096, 1 << 20] {
        let body = vec![7u8; size];
        let iterations = if size > 100_000 { 3_000 } else { 2_000_000 };
        for _ in 0..2 {
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(old(black_box(&header), black_box(&body)));
            }
            let a = start.elapsed() / iterations;
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(new(black_box(&header), black_box(&body)));
            }
            let b = start.elapsed() / iterations;
            println!("body {size}: old {a:?} new {b:?}");
        }
    }
}
