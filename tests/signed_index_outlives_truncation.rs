//! A segment cut short inside the bytes its signed index covers is not crash damage: the index
//! covers only bytes that were fsynced, so a crash cannot take them. Recovery must keep the
//! evidence (what is left of the segment, unchanged, and the index, unchanged), seal the part,
//! report it, and continue the month without reissuing any seq the index vouches for; and
//! `verify` must go on reporting it. Before this, `Log::open` ignored the index (it "covers
//! more bytes than the segment has"), rebuilt it from what was left, cut a partial frame as a
//! torn tail or quarantined a short file as a crash during creation, and issued seq 0 again:
//! `verify` then said INTACT.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::path::Path;

use auditlog::verify::{VerifyOptions, verify};
use auditlog::{Event, Log, RecoveryAction};
use support::{index_of, keys_for, records, workload};

const ORG: &str = "acme";

/// `n` events of `ORG` in January 2026, `days_later` days on (31: February).
fn events(n: u64, seed: u64, days_later: i64) -> Vec<Event> {
    workload(n, 1, 28, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = ORG.into();
            e.occurred_at.0 += days_later * 86_400_000_000;
            e
        })
        .collect()
}

enum Cut {
    /// To exactly the header: no records left.
    ToHeader,
    /// Inside the 10th record, well inside the covered range.
    MidRecord,
    /// To 100 bytes: the header is gone too.
    IntoHeader,
}

/// A closed log with 30 records in January (and 5 in February, created after January, when
/// `later_month`); January cut as `cut`; then opened and appended to in January, twice
/// (each time by a new `Log`).
fn check(cut: &Cut, later_month: bool) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    log.append_batch(&events(30, 5, 0)).unwrap();
    if later_month {
        log.append_batch(&events(5, 6, 31)).unwrap();
    }
    log.close().unwrap();

    let seg = dir.path().join(ORG).join("2026-01.seg");
    let idx = dir.path().join(ORG).join("2026-01.idx");
    let full = fs::read(&seg).unwrap();
    let index = index_of(&seg);
    assert_eq!(index.record_count, 30);
    assert_eq!(index.covered_len, full.len() as u64);
    let vouched = index.first_seq + index.record_count;
    let index_bytes = fs::read(&idx).unwrap();

    let keep = match cut {
        Cut::ToHeader => 256,
        Cut::MidRecord => {
            let r = records(&full)[9];
            r.off + r.len / 2
        }
        Cut::IntoHeader => 100,
    };
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    let left = full[..keep].to_vec();
    let before = verify(dir.path(), Some(&*keys), &VerifyOptions::default()).unwrap();
    assert!(!before.is_intact(), "the cut is a finding before recovery");

    let mut last = None;
    for round in 0..2 {
        let log = Log::open(dir.path(), support::never(&keys)).unwrap();
        let r = log.append(&events(1, 100 + round, 0)[0]).unwrap();
        if round == 0 {
            let report = log.recovery_report();
            let sealed: Vec<_> = report
                .iter()
                .filter_map(|a| match a {
                    RecoveryAction::SegmentSealed { file, damage, .. } => Some((file, damage)),
                    _ => None,
                })
                .collect();
            assert_eq!(sealed.len(), 1, "{report:?}");
            assert_eq!(sealed[0].0, &seg);
            assert!(
                sealed[0]
                    .1
                    .iter()
                    .any(|(_, end, _)| *end == full.len() as u64),
                "the report names the bytes the index covers: {report:?}"
            );
            assert!(
                !report.iter().any(|a| matches!(
                    a,
                    RecoveryAction::TornTailQuarantined { .. }
                        | RecoveryAction::PartialSegmentQuarantined { .. }
                        | RecoveryAction::IndexRebuilt { .. }
                )),
                "nothing cut, moved or rebuilt: {report:?}"
            );
        }
        log.close().unwrap();
        assert!(
            r.seq >= vouched,
            "round {round}: seq {} reissues a seq the index vouches for (< {vouched})",
            r.seq
        );
        assert!(last.is_none_or(|l| r.seq > l), "seqs go on increasing");
        last = Some(r.seq);
        assert_eq!(
            fs::read(&seg).unwrap(),
            left,
            "the cut segment is kept as it is"
        );
        assert_eq!(
            fs::read(&idx).unwrap(),
            index_bytes,
            "the signed index is the evidence: never rewritten"
        );
        assert!(dir.path().join(ORG).join("2026-01.1.seg").exists());
        assert!(!dir.path().join(ORG).join("2026-01.2.seg").exists());
        let after = verify(dir.path(), Some(&*keys), &VerifyOptions::default()).unwrap();
        assert!(
            !after.is_intact(),
            "round {round}: still reported after recovery: {:#?}",
            after.findings
        );
    }
    assert_no_partial_header(dir.path());
}

fn assert_no_partial_header(dir: &Path) {
    let q = dir.join(ORG).join("quarantine");
    for name in support::file_names(&q) {
        assert!(!name.contains("partial-header"), "{name} was moved aside");
    }
}

#[test]
fn cut_to_the_header_is_sealed_not_rebuilt() {
    check(&Cut::ToHeader, false);
    check(&Cut::ToHeader, true);
}

#[test]
fn cut_inside_a_covered_record_is_sealed_not_cut() {
    check(&Cut::MidRecord, false);
    check(&Cut::MidRecord, true);
}

#[test]
fn cut_into_the_header_is_sealed_not_recreated() {
    check(&Cut::IntoHeader, false);
    check(&Cut::IntoHeader, true);
}

/// An index whose tag does not verify is no evidence: recovery treats the cut as before (a
/// header-only file resumes from its records, and the index is rebuilt).
#[test]
fn an_unauthentic_index_is_no_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    log.append_batch(&events(30, 5, 0)).unwrap();
    log.close().unwrap();
    let seg = dir.path().join(ORG).join("2026-01.seg");
    let idx = dir.path().join(ORG).join("2026-01.idx");
    let mut ib = fs::read(&idx).unwrap();
    let n = ib.len();
    ib[n - 1] ^= 1; // the tag ends the file
    fs::write(&idx, &ib).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(256)
        .unwrap();
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let r = log.append(&events(1, 9, 0)[0]).unwrap();
    assert_eq!(r.seq, 0);
    assert!(
        !log.recovery_report()
            .iter()
            .any(|a| matches!(a, RecoveryAction::SegmentSealed { .. })),
        "{:?}",
        log.recovery_report()
    );
    log.close().unwrap();
}
