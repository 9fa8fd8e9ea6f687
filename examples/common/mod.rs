//! What the profiling examples share: arguments, the workload pool and its keys, CPU time.
//! (Not every example uses every item.)
#![allow(dead_code)]

use std::sync::Arc;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Event, Keyring, OrgId, Timestamp};

/// Command-line argument `i`, or `default` without it.
pub fn arg<T: std::str::FromStr>(i: usize, what: &str, default: T) -> T {
    std::env::args()
        .nth(i)
        .map(|s| s.parse().ok().expect(what))
        .unwrap_or(default)
}

/// `events` events of the reference workload (seed 1, from 2026-01-02) over `orgs` orgs and
/// `days` days, as the append bench generates them, and a keyring with a key for each org.
pub fn pool(events: u64, orgs: u32, days: u32) -> (Vec<Event>, Arc<Keyring>) {
    let cfg = WorkloadConfig {
        events,
        orgs,
        days,
        seed: 1,
        start: Timestamp(1_767_225_600_000_000 + 86_400_000_000),
        out_of_order: 0.01,
    };
    let pool: Vec<Event> = Workload::new(cfg).collect();
    let keys = Arc::new(Keyring::in_memory());
    let mut names: Vec<&str> = pool.iter().map(|e| e.org_id.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for org in names {
        keys.rotate(&OrgId::new(org).unwrap()).unwrap();
    }
    (pool, keys)
}

/// This process's user and system CPU time so far, in clock ticks (`/proc/self/stat`).
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}
