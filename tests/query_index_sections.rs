//! The index's query sections (FORMAT.md §3.1, §3.2) describe exactly the records of each
//! block, and a writer that resumes a segment after a restart writes the same sections as a
//! rebuild from the records would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::format::index::{KeyFields, TermProbe};
use auditlog::{Durability, Log, Options, SegmentReader, Timestamp};
use support::{index_of, keys_for, org, segment_files, workload_from};

#[test]
fn sections_describe_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let events = workload_from(4000, 1, 40, 7, "2026-01-10");
    let log = Log::open(
        dir.path(),
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    for c in events.chunks(500) {
        log.append_batch(c).unwrap();
    }
    log.close().unwrap();

    let segs = segment_files(dir.path(), "org-000");
    assert_eq!(segs.len(), 2, "January and February");
    for seg in segs {
        let ix = index_of(&seg);
        let times = ix.block_times().unwrap().expect("block times section");
        let filters = ix.block_filters().unwrap().expect("block filters section");
        assert_eq!(times.len(), ix.entries.len());
        let recs: Vec<_> = SegmentReader::open(&seg, keys.clone())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recs.len() as u64, ix.record_count);
        let bytes = std::fs::read(&seg).unwrap();
        for (b, e) in ix.entries.iter().enumerate() {
            let end = ix.entries.get(b + 1).map_or(ix.covered_len, |n| n.offset);
            let in_block: Vec<_> = recs
                .iter()
                .filter(|r| r.offset >= e.offset && r.offset < end)
                .collect();
            assert!(!in_block.is_empty());
            assert_eq!(in_block[0].seq, e.seq);
            let lo = in_block.iter().map(|r| r.event.occurred_at).min().unwrap();
            let hi = in_block.iter().map(|r| r.event.occurred_at).max().unwrap();
            assert_eq!(times[b], (lo, hi), "block {b}");
            for r in in_block {
                // The record's own terms, from its stored sealed body.
                let at = r.offset as usize;
                let sealed_len =
                    u32::from_le_bytes(bytes[at + 60..at + 64].try_into().unwrap()) as usize;
                let k = KeyFields::parse(&bytes[at + 64..at + 64 + sealed_len]).unwrap();
                let mut terms = Vec::new();
                k.terms(&mut terms);
                assert!(terms.len() >= 5);
                for t in terms {
                    assert!(
                        filters.may_contain_all(b, &[TermProbe::new(t)]),
                        "block {b} filter misses a term of seq {}",
                        r.seq
                    );
                }
            }
        }
        // Filters are selective: a term that is in no record is rejected by most blocks.
        let absent = TermProbe::new(auditlog::format::index::term_hash(
            auditlog::format::index::TermField::User,
            b"nobody",
        ));
        let hits = (0..ix.entries.len())
            .filter(|&b| filters.may_contain_all(b, &[absent]))
            .count();
        assert!(
            hits * 50 < ix.entries.len().max(50),
            "{hits} false positives"
        );
    }
}

#[test]
fn resumed_writer_writes_the_same_index_as_a_rebuild() {
    let keys = keys_for(&["org-000"]);
    let events = workload_from(3000, 1, 20, 9, "2026-03-01");
    let a = tempfile::tempdir().unwrap();
    let opts = || Options::new(keys.clone()).durability(Durability::Never);
    // Written in three sessions: each reopen resumes the segment from its index.
    for part in events.chunks(1100) {
        let log = Log::open(a.path(), opts()).unwrap();
        for c in part.chunks(300) {
            log.append_batch(c).unwrap();
        }
        log.close().unwrap();
    }
    let seg = segment_files(a.path(), "org-000").remove(0);
    let resumed = index_of(&seg);

    // Remove the index: the next open rebuilds it from the records.
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    let log = Log::open(a.path(), opts()).unwrap();
    log.close().unwrap();
    let rebuilt = index_of(&seg);
    assert_eq!(resumed, rebuilt);
    assert_eq!(resumed.record_count, 3000);
    assert!(resumed.entries.len() > 100);
    // Sanity: the whole month is in one segment and its bounds are the workload's.
    let lo = events.iter().map(|e| e.occurred_at).min().unwrap();
    assert_eq!(resumed.min_ts, lo);
    assert!(resumed.max_ts > Timestamp(lo.0));
    let _ = org("org-000");
}
