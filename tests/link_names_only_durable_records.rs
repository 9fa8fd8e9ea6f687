//! Guards against a false tampering finding after a crash under `Durability::Never`.
//!
//! A new segment's header links to the org's previously created segment "as it stood" (its
//! record count and chain head). If that count included records still buffered in the
//! process, a crash would lose them while the link survived on disk, and verification would
//! then report the older segment as having had records removed (a tampering-class finding)
//! for what was only the documented loss of unsynced `Never` appends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Keyring, Log, Options, OrgId, Timestamp};

#[test]
fn a_crash_after_a_month_rollover_under_never_leaves_no_link_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keys = Arc::new(Keyring::in_memory());
    let org = OrgId::new("org-000").unwrap();
    keys.rotate(&org).unwrap();
    let events: Vec<_> = Workload::new(WorkloadConfig {
        events: 40,
        orgs: 1,
        days: 60, // January and February
        ..WorkloadConfig::default()
    })
    .collect();
    let (jan, feb): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| e.occurred_at < Timestamp::parse("2026-02-01").unwrap());
    assert!(!jan.is_empty() && !feb.is_empty());

    let log = Log::open(
        &dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    for e in &jan {
        log.append(e).unwrap(); // buffered in the process
    }
    log.append(&feb[0]).unwrap(); // creates February's segment, linking to January
    // Crash: the process dies with whatever is still buffered (no close, no drop).
    std::mem::forget(log);

    let report = auditlog::verify::verify(&dir, Some(&*keys), &Default::default()).unwrap();
    assert!(
        report.is_intact(),
        "a lost Never buffer must not read as tampering: {:#?}",
        report.findings
    );
    // January's records named by the link are all on disk.
    let reopened = Log::open_read_only(&dir, Options::new(keys)).unwrap();
    let read = reopened.scan(&org).unwrap().filter(|r| r.is_ok()).count();
    assert!(
        read >= jan.len(),
        "expected every January record on disk, read {read}"
    );
}
