//! toasty-loadgen: the S3 load generator (issue "loadgen, perf and tuning.md").
//! Not built yet: this binary only says so and exits non-zero, so nobody
//! mistakes it for a working tool.
fn main() {
    eprintln!("toasty-loadgen is not implemented yet (see the loadgen issue)");
    std::process::exit(2);
}
