#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Group commit under load, for profilers: `THREADS` threads append single events under
//! `Durability::Always` to one org (the append bench's (b) one-org case), and the run prints
//! events/s and the CPU used: `target/release/examples/profile_commit [EVENTS [THREADS [BATCH]]]`.
//! With `BATCH` > 1 each thread appends batches of that many events with `append_batch` (the
//! bench's (c) case: `profile_commit 400000 4 1000`). A fourth argument `never` runs the same
//! under `Durability::Never` (the bench's `never_4t_batch1000`, (c)'s CPU ceiling).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use auditlog::{Durability, Log, Options};

mod common;
use common::{arg, cpu_ticks};

fn main() {
    let n: usize = arg(1, "event count", 200_000);
    let threads: usize = arg(2, "thread count", 64);
    let batch: usize = arg(3, "batch size", 1).max(1);
    let durability = match arg(4, "durability (always or never)", "always".to_string()).as_str() {
        "never" => Durability::Never,
        _ => Durability::Always,
    };
    let (pool, keys) = common::pool(20_000, 1, 28);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::new(keys).durability(durability)).unwrap();
    log.append(&pool[0]).unwrap();
    let cursor = AtomicUsize::new(0);
    let (start, cpu_before) = (Instant::now(), cpu_ticks());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = cursor.fetch_add(batch, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if batch == 1 {
                        log.append(&pool[i % pool.len()]).unwrap();
                    } else {
                        let at = i % (pool.len() - batch);
                        log.append_batch(&pool[at..at + batch]).unwrap();
                    }
                }
            });
        }
    });
    let el = start.elapsed();
    let cpu = cpu_ticks()
        .zip(cpu_before)
        .map(|(a, b)| (a.0 - b.0, a.1 - b.1));
    eprintln!(
        "{n} events, {threads} threads, batches of {batch}, {durability:?} in {el:?}: {:.0} events/s; CPU user, system: {cpu:?} ticks",
        n as f64 / el.as_secs_f64(),
    );
    log.close().unwrap();
}
