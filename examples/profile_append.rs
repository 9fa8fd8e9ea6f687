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

use std::sync::Arc;
use std::time::Instant;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Timestamp};

fn main() {
    let n: u64 = arg(1, "event count", 200_000);
    // Distinct events cycled through; 20,000 (the bench's pool) do not fit in any cache.
    let pool_size: u64 = arg(2, "pool size", 20_000);
    let orgs: u32 = arg(3, "org count", 4);
    let days: u32 = arg(4, "days", 28);
    let cfg = WorkloadConfig {
        events: pool_size,
        orgs,
        days,
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

/// Command-line argument `i`, or `default` without it.
fn arg<T: std::str::FromStr>(i: usize, what: &str, default: T) -> T {
    std::env::args()
        .nth(i)
        .map(|s| s.parse().ok().expect(what))
        .unwrap_or(default)
}

/// This process's user and system CPU time so far, in clock ticks (`/proc/self/stat`).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}
