//! Helpers shared by the integration tests: keys, realistic events, scanning and copying
//! log directories. Each test file uses a subset, hence `dead_code` is allowed.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use auditlog::verify::{Report, VerifyOptions, verify};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{
    Error, Event, KeyProvider, Keyring, Log, Month, OrgId, Receipt, Timestamp, VerifiedEvent,
};

/// An org id that must be valid.
pub fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

/// A timestamp from RFC 3339 or `YYYY-MM-DD`.
pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// `YYYY-MM`.
pub fn month(s: &str) -> Month {
    s.parse().unwrap()
}

/// An in-memory keyring with one signing key for each org.
pub fn keys_for(orgs: &[&str]) -> Arc<Keyring> {
    let ring = Keyring::in_memory();
    for o in orgs {
        ring.rotate(&org(o)).unwrap();
    }
    Arc::new(ring)
}

/// `n` events of the reference workload (orgs `org-000`..), deterministic from `seed`.
pub fn workload(n: u64, orgs: u32, days: u32, seed: u64) -> Vec<Event> {
    Workload::new(WorkloadConfig {
        events: n,
        orgs,
        days,
        seed,
        ..WorkloadConfig::default()
    })
    .collect()
}

/// Every item of a scan of `org`, split into verified events and errors (in order).
pub fn scan(log: &Log, org: &OrgId) -> (Vec<VerifiedEvent>, Vec<Error>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for item in log.scan(org).unwrap() {
        match item {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Scans `org` and fails the test on any error.
pub fn scan_clean(log: &Log, org: &OrgId) -> Vec<VerifiedEvent> {
    let (ok, errs) = scan(log, org);
    assert!(errs.is_empty(), "scan of {org} reported errors: {errs:#?}");
    ok
}

/// Asserts that the seqs of every month in `events` are exactly `0..n`, in order.
pub fn assert_contiguous(events: &[VerifiedEvent]) -> BTreeMap<Month, u64> {
    let mut next: BTreeMap<Month, u64> = BTreeMap::new();
    for v in events {
        let n = next.entry(v.month).or_insert(0);
        assert_eq!(
            v.seq, *n,
            "month {} seq {} where {} was expected",
            v.month, v.seq, n
        );
        *n += 1;
    }
    next
}

/// Asserts that every receipt appears in `events` at its (month, seq) with its hash.
pub fn assert_receipts_present(receipts: &[Receipt], events: &[VerifiedEvent]) {
    let by_pos: BTreeMap<(Month, u64), &VerifiedEvent> =
        events.iter().map(|v| ((v.month, v.seq), v)).collect();
    for r in receipts {
        let v = by_pos
            .get(&(r.month, r.seq))
            .unwrap_or_else(|| panic!("receipt {r:?} has no record in the scan"));
        assert_eq!(v.hash, r.hash, "hash of {} seq {}", r.month, r.seq);
        assert_eq!(v.event.org_id, r.org_id);
    }
}

/// Runs full verification (records, tags, indexes, links) and fails the test on any
/// error-severity finding. Returns the report for further checks.
pub fn assert_verifies(dir: &Path, keys: &dyn KeyProvider) -> Report {
    let report = verify(dir, Some(keys), &VerifyOptions::default()).unwrap();
    assert!(
        report.is_intact(),
        "verification of {} failed: {:#?}",
        dir.display(),
        report.findings
    );
    report
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Names of the files in `dir` (empty if it does not exist), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
