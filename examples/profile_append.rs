#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! A fixed single-thread `Durability::Never` append run, for profilers:
//! `valgrind --tool=callgrind target/release/examples/profile_append 100000 [POOL]`.
//!
//! Same workload as `benches/append.rs` (`never_1t_append`): 4 skewed orgs, one month,
//! ~600 B of JSON per event, generated before the clock starts.

use std::sync::Arc;
use std::time::Instant;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Timestamp};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("event count"))
        .unwrap_or(200_000);
    // Distinct events cycled through; 20,000 (the bench's pool) do not fit in any cache.
    let pool_size: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("pool size"))
        .unwrap_or(20_000);
    let cfg = WorkloadConfig {
        events: pool_size,
        orgs: 4,
        days: 28,
        seed: 1,
        start: Timestamp(1_767_225_600_000_000 + 86_400_000_000),
        out_of_order: 0.01,
    };
    let pool: Vec<Event> = Workload::new(cfg).collect();
    let keys = Arc::new(Keyring::in_memory());
    let mut orgs: Vec<&str> = pool.iter().map(|e| e.org_id.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        keys.rotate(&OrgId::new(org).unwrap()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::new(keys).durability(Durability::Never)).unwrap();
    log.append_batch(&pool[..pool.len().min(1_000)]).unwrap();
    let start = Instant::now();
    for i in 0..n {
        log.append(&pool[(i % pool_size) as usize]).unwrap();
    }
    let el = start.elapsed();
    log.close().unwrap();
    eprintln!(
        "{n} events in {el:?}: {:.0} events/s, {:.2} µs/event",
        n as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64
    );
}
