//! Benchmark of one hook (work in progress).

fn main() {}
