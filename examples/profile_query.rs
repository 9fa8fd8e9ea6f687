#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! A fixed verified 1-day range query on one thread, for profilers:
//! `perf record -e cpu-clock target/release/examples/profile_query DIR [REPEATS [DAY]]`,
//! where DIR is a log the query bench built (`target/query-bench/log-5m`: its `log/`
//! and `keys.json`) and DAY defaults to the bench's 5M-log day, 2026-02-10. Each repeat
//! opens a fresh read-only `Log`'s query over the same warm files and walks its cursor
//! as `day/verified/cursor/1 thread` does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use auditlog::{Keyring, Log, Options, OrgId, Timestamp};

mod common;
use common::arg;

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/query-bench/log-5m".into())
        .into();
    let repeats: u32 = arg(2, "repeats", 20);
    let day = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "2026-02-10".into());
    let keys = Arc::new(Keyring::open(dir.join("keys.json")).unwrap());
    let log = Log::open_read_only(dir.join("log"), Options::new(keys)).unwrap();
    let org = OrgId::new("org-000").unwrap();
    let from = Timestamp::parse(&day).unwrap();
    let to = Timestamp(from.0 + 86_400_000_000);
    let t = Instant::now();
    let mut n = 0u64;
    for _ in 0..repeats {
        let mut c = log
            .query(&org)
            .since(from)
            .until(to)
            .threads(1)
            .cursor()
            .unwrap();
        while let Some(r) = c.next_ref() {
            std::hint::black_box(r.unwrap().seq());
            n += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{n} events in {s:.3} s: {:.1} ms a query, {:.3} us an event",
        s * 1e3 / f64::from(repeats),
        s * 1e6 / n as f64
    );
}
