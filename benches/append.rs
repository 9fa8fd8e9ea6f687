//! Placeholder; replaced by the append bench.
fn main() {}
