#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! A fixed single-thread `Durability::Never` append run, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_append 100000 [POOL [ORGS [DAYS]]]`.
//!
//! Same workload as `benches/append.rs` (`never_1t_append`): 4 skewed orgs, 28 days in one
//! month, ~600 B of JSON per event, generated before the clock starts. With more orgs and
//! days (`profile_append 600000 600000 3000 90`) it is the many-writers case: the time
//! `Log::close` takes to make every segment durable and write its index is printed too.

use std::time::Instant;

use auditlog::{Durability, Log, Options};

mod common;
use common::{arg, cpu_ticks};

fn main() {
    let n: u64 = arg(1, "event count", 200_000);
    // Distinct events cycled through; 20,000 (the bench's pool) do not fit in any cache.
    let pool_size: u64 = arg(2, "pool size", 20_000);
    let orgs: u32 = arg(3, "org count", 4);
    let days: u32 = arg(4, "days", 28);
    let (pool, keys) = common::pool(pool_size, orgs, days);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::new(keys).durability(Durability::Never)).unwrap();
    log.append_batch(&pool[..pool.len().min(1_000)]).unwrap();
    let start = Instant::now();
    for i in 0..n {
        log.append(&pool[(i % pool_size) as usize]).unwrap();
    }
    let el = start.elapsed();
    let (closing, cpu_before) = (Instant::now(), cpu_ticks());
    log.close().unwrap();
    let close = closing.elapsed();
    let close_cpu = cpu_ticks()
        .zip(cpu_before)
        .map(|(a, b)| (a.0 - b.0, a.1 - b.1));
    eprintln!(
        "{n} events in {el:?}: {:.0} events/s, {:.2} µs/event; close {close:?} \
         (CPU user, system: {close_cpu:?} ticks)",
        n as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64
    );
}
