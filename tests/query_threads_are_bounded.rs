//! `Query::threads(n)` is bounded: at most `MAX_QUERY_THREADS` threads (the caller's
//! included), and never more helpers than a round has batches beyond the first. Before,
//! `threads(200)` started 199 helper threads for one query, and `threads(usize::MAX)` tried
//! to start threads for ever. (One test in this binary: it counts the process's threads.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::Log;
use auditlog::query::MAX_QUERY_THREADS;
use support::*;

fn threads_now() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn explicit_threads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let log = Log::open(dir.path(), never(&keys)).unwrap();
    let events = january_of("org-000", 3_000, 1);
    log.append_batch(&events).unwrap();
    log.close().unwrap();
    let log = Log::open_read_only(dir.path(), never(&keys)).unwrap();
    for n in [200, usize::MAX] {
        let before = threads_now();
        let mut m = log
            .query(&org("org-000"))
            .threads(n)
            .batch_bytes(4096)
            .run()
            .unwrap();
        let first = m.next().unwrap().unwrap();
        let helpers = threads_now() - before;
        assert!(
            (1..MAX_QUERY_THREADS).contains(&helpers),
            "threads({n}): {helpers} helper threads"
        );
        let rest = m.collect::<Result<Vec<_>, _>>().unwrap().len();
        assert_eq!(rest + 1, events.len());
        drop(first);
    }
    // A round of two batches gets one helper, whatever was asked for.
    let log2 = tempfile::tempdir().unwrap();
    let log = Log::open(log2.path(), never(&keys)).unwrap();
    log.append_batch(&events[..20]).unwrap();
    log.close().unwrap();
    let log = Log::open_read_only(log2.path(), never(&keys)).unwrap();
    let q = log.query(&org("org-000")).threads(200);
    let before = threads_now();
    let mut m = q.batch_bytes(8192).run().unwrap();
    m.next().unwrap().unwrap();
    let helpers = threads_now() - before;
    assert!(helpers <= 2, "{helpers} helper threads for a short read");
}
