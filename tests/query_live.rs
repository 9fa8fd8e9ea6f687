//! Queries running while a writer appends (in another thread, and with its index rewritten
//! every few KiB) see a consistent prefix: no error items, no torn records, results in
//! order, each one exactly the event appended at its seq, and never fewer events than a
//! query that finished earlier.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditlog::{Durability, Event, Log, Month, Options, Timestamp};
use support::{keys_for, org, workload_from};

#[test]
fn queries_beside_a_live_writer_see_consistent_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let events = workload_from(6000, 1, 20, 21, "2026-03-05");
    let mut wopts =
        Options::new(keys.clone()).durability(Durability::Interval(Duration::from_millis(5)));
    wopts.index_flush_bytes = 64 * 1024;
    let writer = Arc::new(Log::open(dir.path(), wopts).unwrap());
    let appended: Arc<Mutex<HashMap<(Month, u64), Event>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let w = {
        let (writer, appended, done) = (writer.clone(), appended.clone(), done.clone());
        std::thread::spawn(move || {
            for chunk in events.chunks(25) {
                let receipts = writer.append_batch(chunk).unwrap();
                let mut a = appended.lock().unwrap();
                for (e, r) in chunk.iter().zip(receipts) {
                    a.insert((r.month, r.seq), e.clone());
                }
                drop(a);
                std::thread::sleep(Duration::from_micros(300));
            }
            done.store(true, Ordering::Release);
        })
    };
    let reader = Log::open_read_only(dir.path(), Options::new(keys.clone())).unwrap();
    let o = org("org-000");
    let mut last = 0usize;
    let mut rounds = 0;
    let mut finished = false;
    while !finished {
        // Check once more after the writer is done, to see everything.
        finished = done.load(Ordering::Acquire);
        for (i, verified) in [(0, true), (1, false)] {
            let mut q = reader.query(&o).threads(1 + i);
            if !verified {
                q = q.unverified();
            }
            let got: Vec<_> = q.run().unwrap().map(|r| r.unwrap()).collect();
            let a = appended.lock().unwrap();
            let mut prev = (Timestamp(i64::MIN), 0);
            for v in &got {
                assert!((v.event.occurred_at, v.seq) > prev, "out of order");
                prev = (v.event.occurred_at, v.seq);
                // Appended events are recorded after append_batch returns, so a reader may
                // see a record before the map does; those are checked in a later round.
                if let Some(e) = a.get(&(v.month, v.seq)) {
                    assert_eq!(&v.event, e);
                }
            }
            assert!(got.len() >= last, "{} after {last}", got.len());
            last = got.len();
        }
        rounds += 1;
    }
    w.join().unwrap();
    assert_eq!(
        last, 6000,
        "after the writer finished, a query sees every event"
    );
    assert!(
        rounds > 2,
        "queries ran while appends continued ({rounds} rounds)"
    );
}
