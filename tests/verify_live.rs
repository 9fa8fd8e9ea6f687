//! Guards against false alarms on files being written (journald issue 27532): verifying
//! while a writer appends (new months' segments being created, indexes being rewritten,
//! records half-written) must report no error, say that a writer was live, and say how far
//! it verified each live segment; once the writer closes, everything verifies clean.
//! Deterministic: the writer appends a fixed workload, the verifier runs until the writer
//! is done (and at least a fixed number of times); no timing is asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auditlog::verify::{Severity, VerifyOptions, make_checkpoint, verify};
use auditlog::{Durability, KeyProvider, Log, Options};
use support::*;

/// Verifications at least, whatever the writer's speed.
const MIN_ROUNDS: usize = 20;

fn run_live(durability: Durability, batch: usize) {
    let d = tempfile::tempdir().unwrap();
    let keys = keyring(auditlog::Keyring::in_memory());
    let mut opts = Options::new(keys.clone()).durability(durability);
    opts.index_interval = 1024;
    // Indexes rewritten every 16 KiB of growth (by the background flusher), so that
    // verification meets indexes being replaced under it.
    opts.index_flush_bytes = 16 * 1024;
    let log = Arc::new(Log::open(d.path(), opts).unwrap());
    let all = events();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            for chunk in all.chunks(batch) {
                log.append_batch(chunk).unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut rounds = 0;
    let mut max_records = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        let r = verify(
            d.path(),
            Some(&*keys as &dyn KeyProvider),
            &VerifyOptions::default(),
        )
        .unwrap();
        let errors: Vec<_> = r
            .findings
            .iter()
            .filter(|x| x.severity == Severity::Error)
            .collect();
        assert!(
            errors.is_empty(),
            "round {rounds}: false findings beside a live writer:\n{}",
            dump(&r)
        );
        assert!(r.findings.is_empty(), "round {rounds}: {}", dump(&r));
        assert!(r.live_writer, "round {rounds}");
        assert!(r.summary().contains("a writer was live"), "{}", r.summary());
        if r.files > 0 {
            assert!(
                !r.live.is_empty(),
                "round {rounds}: no live progress reported"
            );
            for l in &r.live {
                assert!(l.verified_to >= 256 || l.records == 0, "{l:?}");
            }
        }
        // The verified prefix only grows.
        assert!(
            r.records >= max_records,
            "round {rounds}: {} < {max_records}",
            r.records
        );
        max_records = r.records;
        // A checkpoint can be taken beside the writer too (of a consistent prefix).
        if rounds % 5 == 2 && r.files > 0 {
            make_checkpoint(d.path(), &org("org-000"), &*keys).unwrap();
        }
        rounds += 1;
        if finished && rounds >= MIN_ROUNDS {
            break;
        }
    }
    writer.join().unwrap();
    // One checkpoint per org (an org without one would get a `no_checkpoint` warning).
    let cps = ["org-000", "org-001", "org-002"]
        .iter()
        .map(|o| make_checkpoint(d.path(), &org(o), &*keys).unwrap())
        .collect();
    Arc::try_unwrap(log).unwrap().close().unwrap();
    // Closed: nothing live, all records, clean, and the checkpoints taken at the end hold.
    let opts = VerifyOptions {
        checkpoints: cps,
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys as &dyn KeyProvider), &opts).unwrap();
    assert!(r.findings.is_empty(), "{}", dump(&r));
    assert!(!r.live_writer && r.live.is_empty());
    assert_eq!(r.records, EVENTS);
}

#[test]
fn live_writer_durability_always() {
    run_live(Durability::Always, 20);
}

#[test]
fn live_writer_durability_interval() {
    run_live(Durability::Interval(Duration::from_millis(2)), 10);
}

/// Buffered appends: a new month's header must link only to records already in the file
/// (the writer makes the linked prefix durable first), or a verifier beside it would see a
/// link claiming records the file does not hold yet.
#[test]
fn live_writer_durability_never() {
    run_live(Durability::Never, 10);
}
