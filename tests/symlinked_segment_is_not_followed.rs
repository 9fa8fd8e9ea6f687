//! A segment file that is a symbolic link is never followed, as an org directory that is
//! one is not. Found by review: the writer appended receipted events through such a link to
//! a file outside the log, `verify` passed the log (INTACT) having verified the file behind
//! the link, and `stats` counted it. Now the month's appends fail (nothing written through
//! the link, other months go on), `verify` reports the link (`symbolic_link`, an error) and
//! reads nothing behind it, and `stats` names it as not a file. `inspect`, given the link's
//! path on its command line, still follows it, as any tool follows the path it is given.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::os::unix::fs::symlink;

use auditlog::inspect::{InspectOptions, inspect};
use auditlog::verify::{FindingKind, Severity};
use auditlog::{Log, RecoveryAction};
use support::{always, february_of, january_of, keys_for, org, run_query, seg_path, verify_keys};

const ORG: &str = "acme";

#[test]
fn a_segment_that_is_a_link_is_neither_appended_through_nor_verified() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), always(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 5, 1)).unwrap();
    log.append_batch(&february_of(ORG, 5, 2)).unwrap();
    log.close().unwrap();

    // January moved out of the log, a link to it in its place.
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("2026-01.seg");
    let jan = seg_path(d.path(), ORG, "2026-01");
    fs::rename(&jan, &outside).unwrap();
    symlink(&outside, &jan).unwrap();
    let before = fs::read(&outside).unwrap();

    let log = Log::open(d.path(), always(&keys)).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|a| matches!(a, RecoveryAction::RecoveryFailed { file, .. } if *file == jan)),
        "{:?}",
        log.recovery_report()
    );
    let err = log.append(&january_of(ORG, 6, 1)[5]).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let r = log.append(&february_of(ORG, 6, 2)[5]).unwrap();
    assert_eq!(r.seq, 5);
    // A query and a scan read nothing through the link, and say so.
    let (got, errs, _) = run_query(log.query(&org(ORG)));
    assert_eq!(got.len(), 6, "February only");
    assert!(
        errs.iter().any(|e| e.to_string().contains("symbolic link")),
        "{errs:?}"
    );
    let scanned: Vec<_> = log.scan(&org(ORG)).unwrap().collect();
    assert_eq!(scanned.iter().filter(|r| r.is_ok()).count(), 6);
    assert!(scanned.iter().any(|r| r.is_err()));
    let stats = log.stats().unwrap();
    let jan_stats = stats
        .iter()
        .find(|s| s.month.to_string() == "2026-01")
        .unwrap();
    assert_eq!(jan_stats.events, 0);
    assert!(
        jan_stats
            .damage
            .iter()
            .any(|x| x.kind == auditlog::DamageKind::NotAFile && x.file == jan)
    );
    log.close().unwrap();
    assert_eq!(
        fs::read(&outside).unwrap(),
        before,
        "written through the link"
    );

    let report = verify_keys(d.path(), &*keys);
    assert!(!report.is_intact());
    let link = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::SymbolicLink)
        .unwrap_or_else(|| panic!("{:?}", report.findings));
    assert_eq!(
        (link.file.as_path(), link.severity),
        (jan.as_path(), Severity::Error)
    );
    assert!(link.message.contains("not followed"), "{link}");
    assert_eq!(report.records, 6, "only February's records are read");

    let shown = inspect(&jan, Some(&*keys), InspectOptions::default(), |_| Ok(())).unwrap();
    assert_eq!(shown, 5);
}

/// The org's newest segment is a link: its header is not read, so its ordinal is unknown,
/// and a new month's segment is numbered past it, as past a rotten header (found by review:
/// March took February's ordinal 1, and once the real file was put back `verify` reported
/// two segments with one ordinal for good).
#[test]
fn a_new_segment_is_numbered_past_a_linked_newest_one() {
    use auditlog::format::header::SegmentHeader;
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), always(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 2, 1)).unwrap();
    log.append_batch(&february_of(ORG, 2, 2)).unwrap();
    log.close().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("2026-02.seg");
    let feb = seg_path(d.path(), ORG, "2026-02");
    fs::rename(&feb, &outside).unwrap();
    symlink(&outside, &feb).unwrap();

    let log = Log::open(d.path(), always(&keys)).unwrap();
    let mut march = february_of(ORG, 1, 3).remove(0);
    march.occurred_at.0 += 28 * 86_400_000_000;
    let r = log.append(&march).unwrap();
    assert_eq!(r.month.to_string(), "2026-03");
    log.close().unwrap();
    let bytes = fs::read(seg_path(d.path(), ORG, "2026-03")).unwrap();
    let h = SegmentHeader::decode(&bytes[..256]).unwrap();
    assert_eq!(h.ordinal, 2, "March took the linked February's ordinal");

    // The real file put back: no two segments share an ordinal.
    fs::remove_file(&feb).unwrap();
    fs::rename(&outside, &feb).unwrap();
    let report = verify_keys(d.path(), &*keys);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.message.contains("has creation ordinal")),
        "{:?}",
        report.findings
    );
}
