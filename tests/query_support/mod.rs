//! Helpers shared by the query tests (`tests/query_*.rs`). Each file uses a subset.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::format::index::Index;
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Event, Keyring, OrgId, Timestamp};

/// An org id that must be valid.
pub fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

/// A timestamp from RFC 3339 or `YYYY-MM-DD`.
pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// An in-memory keyring with one signing key for each org.
pub fn keys_for(orgs: &[&str]) -> Arc<Keyring> {
    let ring = Keyring::in_memory();
    for o in orgs {
        ring.rotate(&org(o)).unwrap();
    }
    Arc::new(ring)
}

/// `n` events of the reference workload starting at `start`.
pub fn workload(n: u64, orgs: u32, days: u32, seed: u64, start: &str) -> Vec<Event> {
    Workload::new(WorkloadConfig {
        events: n,
        orgs,
        days,
        seed,
        start: ts(start),
        out_of_order: 0.05,
    })
    .collect()
}

/// A small event.
pub fn event(org_id: &str, at: Timestamp, user: Option<&str>, action: &str, rid: &str) -> Event {
    Event {
        org_id: org_id.into(),
        occurred_at: at,
        user_id: user.map(str::to_string),
        action: action.into(),
        resource_type: action.split('.').next().unwrap().into(),
        resource_id: rid.into(),
        before: serde_json::Value::Null,
        after: serde_json::json!({"n": at.0}),
        ip: user.map(|_| "192.0.2.1".to_string()),
        user_agent: None,
        session_id: None,
        trace_id: Some(format!("tr-{}", at.0 % 7)),
        metadata: serde_json::Value::Null,
    }
}

/// The decoded index of a segment file (`…/2026-01.seg` → `…/2026-01.idx`).
pub fn index_of(seg: &Path) -> Index {
    Index::decode(&std::fs::read(seg.with_extension("idx")).unwrap())
        .unwrap()
        .0
}

/// Segment files under `dir/org`, sorted.
pub fn segment_files(dir: &Path, org: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(org))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}
