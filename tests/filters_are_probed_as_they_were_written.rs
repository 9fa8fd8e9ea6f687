//! Every block filter is probed with the block number it was written with (hash scheme 2
//! salts the probes per block, FORMAT.md §3.2): across fresh writers, writers resumed from
//! their index, parked writers, a session ended without `close`, mid-file damage
//! (continuation part 1), and queries that read the index in groups of 1, 2, 3 or 4,096
//! blocks. A block numbered differently when written and when probed would hide records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use auditlog::{Durability, Event, Keyring, Log, Options, Timestamp};
use support::{event, keys_for, org, ts};

fn opts(keys: &Arc<Keyring>) -> Options {
    let mut o = Options::new(keys.clone()).durability(Durability::Never);
    o.index_interval = 256;
    o.index_flush_bytes = 4096;
    o.max_open_writers = 1;
    o
}

fn ev(i: u64) -> Event {
    // Two months, alternating, so writers are parked and reopened.
    let base = if i.is_multiple_of(2) {
        ts("2026-01-10T00:00:00Z")
    } else {
        ts("2026-02-10T00:00:00Z")
    };
    let user = format!("user-{}", i % 97);
    event(
        "acme",
        Timestamp(base.0 + i as i64 * 1_000_000),
        Some(&user),
        "booking.created",
        &format!("r-{i}"),
    )
}

#[test]
fn every_record_is_found_by_its_unique_terms() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let mut all = Vec::new();
    let mut next = 0u64;
    for session in 0..5 {
        let log = Log::open(dir.path(), opts(&keys)).unwrap();
        for _ in 0..6 {
            let batch: Vec<Event> = (next..next + 50).map(ev).collect();
            next += 50;
            for e in &batch {
                log.append(e).unwrap();
            }
            all.extend(batch);
        }
        if session == 2 {
            drop(log); // no close: recovery resumes from the last flushed index
        } else {
            log.close().unwrap();
        }
        if session == 1 {
            // Damage one byte in the middle of January: continuation part 1 follows.
            let seg = dir.path().join("acme").join("2026-01.seg");
            let mut b = std::fs::read(&seg).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            std::fs::write(&seg, &b).unwrap();
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n.contains(".1.seg")), "{names:?}");

    let log = Log::open_read_only(dir.path(), opts(&keys)).unwrap();
    let o = org("acme");
    // Records readable at all (the damaged one is not, nor what recovery quarantined).
    let mut readable = BTreeSet::new();
    for v in log.query(&o).unverified().run().unwrap().flatten() {
        readable.insert(v.event.resource_id);
    }
    assert!(
        readable.len() + 3 >= all.len(),
        "{} of {}",
        readable.len(),
        all.len()
    );
    let mut skipped = 0;
    for plan in [1u64, 2, 3, 4096] {
        for e in all.iter().filter(|e| readable.contains(&e.resource_id)) {
            let mut m = log
                .query(&o)
                .unverified()
                .plan_blocks(plan)
                .resource_id(&e.resource_id)
                .run()
                .unwrap();
            let got: Vec<_> = m
                .by_ref()
                .filter_map(|r| r.ok())
                .map(|v| v.event.resource_id)
                .collect();
            assert_eq!(
                got,
                vec![e.resource_id.clone()],
                "plan {plan}: {}",
                e.resource_id
            );
            skipped += m.stats().blocks_skipped;
        }
        for u in 0..97 {
            let user = format!("user-{u}");
            let want = all
                .iter()
                .filter(|e| {
                    readable.contains(&e.resource_id) && e.user_id.as_deref() == Some(user.as_str())
                })
                .count();
            let got = log
                .query(&o)
                .unverified()
                .plan_blocks(plan)
                .user(&user)
                .run()
                .unwrap()
                .filter_map(|r| r.ok())
                .count();
            assert_eq!(got, want, "plan {plan}: {user}");
        }
    }
    assert!(skipped > 0);
}
