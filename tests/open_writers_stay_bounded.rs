//! Open segment writers come back down to `max_open_writers` (an append retires idle ones
//! beyond twice the limit) after every path that opens many at once:
//! - an `append_batch` over many (org, month) groups, under `Always` as under `Never`:
//!   before, under `Always` the batch still held its writers when it retired idle ones, and
//!   left one open per group (454 with a limit of 8);
//! - recovery at `Log::open` of many months left dirty by a crash: before, it opened one
//!   writer per dirty month and retired none (under a descriptor limit, the rest failed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::{Durability, Log, Options, RecoveryAction};
use support::*;

#[test]
fn a_batch_over_many_groups_leaves_the_limit_open() {
    let orgs: Vec<String> = (0..40).map(|i| format!("org-{i:03}")).collect();
    let names: Vec<&str> = orgs.iter().map(String::as_str).collect();
    let keys = keys_for(&names);
    let events = workload_from(4_000, 40, 365, 3, "2026-01-01");
    for durability in [Durability::Never, Durability::Always] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new(keys.clone())
            .max_open_writers(8)
            .durability(durability);
        let log = Log::open(dir.path(), opts).unwrap();
        let receipts = log.append_batch(&events).unwrap();
        assert_eq!(receipts.len(), events.len());
        assert!(
            log.open_writers() <= 16,
            "{durability:?}: {} writers open",
            log.open_writers()
        );
        log.close().unwrap();
        assert!(error_findings(dir.path(), &*keys).is_empty());
    }
}

#[test]
fn recovery_of_many_dirty_months_leaves_the_limit_open() {
    let orgs: Vec<String> = (0..60).map(|i| format!("o{i:03}")).collect();
    let names: Vec<&str> = orgs.iter().map(String::as_str).collect();
    let keys = keys_for(&names);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let opts = || Options::new(keys.clone()).max_open_writers(4);
    let log = Log::open(&dir, opts()).unwrap();
    let mut receipts = Vec::new();
    for o in &orgs {
        let e = event(o, ts("2026-03-01T00:00:00Z"), Some("u"), "a.b", "r");
        receipts.push(log.append(&e).unwrap());
    }
    // What a crash leaves: the writers retired along the way parked without an index.
    let image = tmp.path().join("image");
    copy_dir(&dir, &image);
    log.close().unwrap();
    let log = Log::open(&image, opts()).unwrap();
    assert!(
        log.open_writers() <= 8,
        "{} writers open",
        log.open_writers()
    );
    let report = log.recovery_report();
    assert!(
        !report
            .iter()
            .any(|a| matches!(a, RecoveryAction::RecoveryFailed { .. })),
        "{report:#?}"
    );
    for o in &orgs {
        let e = event(o, ts("2026-03-02T00:00:00Z"), Some("u"), "a.b", "r");
        receipts.push(log.append(&e).unwrap());
    }
    for o in &orgs {
        let (read, errs) = scan(&log, &org(o));
        assert!(errs.is_empty(), "{errs:#?}");
        let mine: Vec<_> = receipts
            .iter()
            .filter(|r| r.org_id == *o)
            .cloned()
            .collect();
        assert_receipts_present(&mine, &read);
    }
    log.close().unwrap();
    assert!(error_findings(&image, &*keys).is_empty());
}
