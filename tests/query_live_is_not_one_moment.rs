//! Known limitation (review of the query layer): a query beside a live writer reads each
//! month's segment as long as it is when the query *reaches* that month, not as it was
//! when the query began. So what one query returns is a prefix of each segment, but not a
//! prefix of the org's appends: an event appended to an earlier month after the query read
//! that month is missing, while an event appended after it to a later month is returned.
//! Ignored until queries take every segment's length when they start (see
//! ARCHITECTURE.md, "Queries", on live writers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::Log;
use support::{event, keys_for, org, ts};

#[test]
#[ignore = "known limitation: a query is not one moment of the log across months"]
fn a_query_beside_a_live_writer_returns_a_prefix_of_the_appends() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["o"]);
    let writer = Log::open(dir.path(), support::never(&keys)).unwrap();
    let feb = |rid| event("o", ts("2026-02-10"), Some("u"), "booking.created", rid);
    let mar = |rid| event("o", ts("2026-03-10"), Some("u"), "booking.created", rid);
    writer.append_batch(&[feb("f1"), mar("m1")]).unwrap();
    writer.sync().unwrap();
    let reader = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let mut q = reader.query(&org("o")).run().unwrap();
    let first = q.next().unwrap().unwrap();
    assert_eq!(first.event.resource_id, "f1");
    // Appended after the query began: f2 first, then m2.
    writer.append(&feb("f2")).unwrap();
    writer.append(&mar("m2")).unwrap();
    writer.sync().unwrap();
    let rest: Vec<String> = q.map(|r| r.unwrap().event.resource_id).collect();
    // A prefix of the appends f1, m1, f2, m2 that holds f1 and m1: either nothing more, or
    // f2, or f2 and m2; never m2 without f2.
    assert!(
        !rest.contains(&"m2".to_string()) || rest.contains(&"f2".to_string()),
        "m2 returned without f2, appended before it: {rest:?}"
    );
}
