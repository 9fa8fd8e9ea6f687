//! Guards the crash between the `create_new` of a continuation part (`YYYY-MM.n.seg`, n ≥ 1)
//! and the write of its header (or a header write that fails, e.g. with ENOSPC): the part
//! is left with fewer than 256 bytes. Recovery moves it aside, and must then create part n
//! again as what it was meant to be: the continuation of the damaged part n-1, with
//! `first_seq` after part n-1's largest seq and a `continues` link to its last readable
//! record. It used to create part n from scratch (first_seq 0, no `continues`: seqs of
//! part n-1 issued a second time, unnoticed by verify), and when part n-1 was the org's
//! latest segment `Log::open` recursed until its stack overflowed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use auditlog::format::header::{SegmentHeader, SegmentId};
use auditlog::verify::{FindingKind, Severity, VerifyOptions, verify};
use auditlog::{Event, Keyring, Log, RecoveryAction};
use support::{february_of, january_of, keys_for, month, org, scan};

const ORG: &str = "acme";

/// `n` realistic events of `ORG`, all in January 2026.
fn january(n: u64, seed: u64) -> Vec<Event> {
    january_of(ORG, n, seed)
}

/// [`january`]'s events, 31 days later: all in February 2026.
fn february(n: u64, seed: u64) -> Vec<Event> {
    february_of(ORG, n, seed)
}

/// What a crash leaves when recovery found January's part 0 damaged (10 records, seqs 0..=9,
/// a byte flipped in record 3) and died after creating `2026-01.1.seg`, before its header:
/// part 1 empty, part 0 sealed or not (`sealed`: the order of earlier versions, which sealed
/// before creating the continuation). With `february_tail`, February's segment was created
/// after January's, so the damaged part is not the org's latest segment. Returns the
/// damaged part's bytes.
fn crashed_before_continuation_header(
    dir: &Path,
    keys: &Arc<Keyring>,
    february_tail: bool,
    sealed: bool,
) -> Vec<u8> {
    let log = Log::open(dir, support::always(keys)).unwrap();
    let rs = log.append_batch(&january(10, 1)).unwrap();
    assert_eq!(rs.last().unwrap().seq, 9);
    if february_tail {
        log.append_batch(&february(2, 2)).unwrap();
    }
    log.close().unwrap();
    let ro = Log::open_read_only(dir, support::always(keys)).unwrap();
    let (read, errs) = scan(&ro, &org(ORG));
    assert!(errs.is_empty());
    let victim = read[3].offset;
    drop(ro);
    let seg = dir.join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(victim + 100) as usize] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    if sealed {
        fs::set_permissions(&seg, fs::Permissions::from_mode(0o444)).unwrap();
    }
    fs::File::create(dir.join(ORG).join("2026-01.1.seg")).unwrap();
    bytes
}

fn part_header(dir: &Path, part: &str) -> SegmentHeader {
    let bytes = fs::read(dir.join(ORG).join(part)).unwrap();
    SegmentHeader::decode(&bytes[..256]).unwrap()
}

/// Checks recovery's report, the recreated continuation's header, that the damaged part
/// is unchanged and sealed, and that verify finds only the flipped byte (and the partial
/// header moved aside).
fn check_continued_again(
    dir: &Path,
    keys: &Arc<Keyring>,
    report: &[RecoveryAction],
    damaged: &[u8],
) {
    assert!(
        report
            .iter()
            .any(|a| matches!(a, RecoveryAction::PartialSegmentQuarantined { .. })),
        "{report:?}"
    );
    assert!(
        report.iter().any(|a| matches!(
            a,
            RecoveryAction::SegmentSealed { continuation, .. }
                if continuation == &dir.join(ORG).join("2026-01.1.seg")
        )),
        "{report:?}"
    );
    let part0 = dir.join(ORG).join("2026-01.seg");
    let h = part_header(dir, "2026-01.1.seg");
    assert_eq!(
        h.id,
        SegmentId {
            month: month("2026-01"),
            part: 1
        }
    );
    assert_eq!(
        h.first_seq, 10,
        "seqs of part 0 (0..=9) would be issued again"
    );
    let continues = h
        .continues
        .expect("a continuation links to the part it continues");
    assert_eq!(
        continues.segment,
        SegmentId {
            month: month("2026-01"),
            part: 0
        }
    );
    assert_eq!(continues.count, 9, "the readable records of part 0");
    assert_eq!(fs::read(&part0).unwrap(), damaged, "part 0 was written");
    assert_eq!(
        fs::metadata(&part0).unwrap().permissions().mode() & 0o777,
        0o444,
        "part 0 is sealed"
    );
    let report = verify(dir, Some(&**keys), &VerifyOptions::default()).unwrap();
    let errors: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{:#?}", report.findings);
    assert_eq!(errors[0].kind, FindingKind::ChecksumCorruption);
    assert_eq!(errors[0].file, part0);
}

/// The damaged part is the org's latest segment: opening used to recurse (new header ->
/// tail link -> open the month's writer -> new header for part 0 -> ...) until the stack
/// overflowed. Part 0 was not sealed yet (the order of this version: continuation first).
#[test]
fn a_partial_continuation_of_the_latest_segment_reopens_as_its_continuation() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let damaged = crashed_before_continuation_header(d.path(), &keys, false, false);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let r = log.append(&january(1, 9)[0]).unwrap();
    assert_eq!((r.month, r.seq), (month("2026-01"), 10));
    let report = log.recovery_report();
    log.close().unwrap();
    let h = part_header(d.path(), "2026-01.1.seg");
    // The damaged part was the org's latest: the continuation's `prev` is its `continues`.
    assert_eq!(h.prev, h.continues);
    check_continued_again(d.path(), &keys, &report, &damaged);
}

/// February was created after January: the recreated part used to get first_seq 0 and no
/// `continues` link, so the next January append reissued seq 0. Part 0 already sealed
/// read-only (the order of earlier versions).
#[test]
fn a_partial_continuation_reissues_no_seq() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let damaged = crashed_before_continuation_header(d.path(), &keys, true, true);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let r = log.append(&january(1, 9)[0]).unwrap();
    assert_eq!((r.month, r.seq), (month("2026-01"), 10));
    assert_eq!(log.append(&february(1, 9)[0]).unwrap().seq, 2);
    let h = part_header(d.path(), "2026-01.1.seg");
    let prev = h.prev.expect("links to the org's latest segment");
    assert_eq!(
        prev.segment,
        SegmentId {
            month: month("2026-02"),
            part: 0
        }
    );
    assert_eq!(prev.count, 2);
    let report = log.recovery_report();
    log.close().unwrap();
    check_continued_again(d.path(), &keys, &report, &damaged);
}

/// A continuation part (the org's newest segment) whose header rots: the catalog no longer
/// sees it, so part 0 of the same month passes for the org's tail. Continuing the rotten
/// part needs a `prev` link to that tail, and getting one by opening the month's writer
/// re-entered the opening in progress: `Log::open` failed for every org, on every open.
/// Now the tail's link is read from its file (it takes no more appends).
#[test]
fn a_continuation_whose_header_rots_is_continued_and_the_log_opens() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG, "other"]);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january(10, 1)).unwrap();
    log.append_batch(&january_of("other", 3, 2)).unwrap();
    log.close().unwrap();
    // A byte of January's fourth record flips: recovery continues January in part 1.
    let seg = d.path().join(ORG).join("2026-01.seg");
    let recs = support::records(&fs::read(&seg).unwrap());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[recs[3].off + 100] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(log.append_batch(&january(3, 7)).unwrap()[0].seq, 10);
    log.close().unwrap();
    let p1 = d.path().join(ORG).join("2026-01.1.seg");
    // One bit of part 1's header (created_at) flips: its CRC fails.
    let mut b = fs::read(&p1).unwrap();
    b[113] ^= 0x01;
    fs::write(&p1, &b).unwrap();
    for round in 0..2 {
        let log = Log::open(d.path(), support::always(&keys)).unwrap();
        let r = log.append(&january(1, 8 + round)[0]).unwrap();
        assert!(r.seq >= 13, "round {round}: seq {}", r.seq);
        log.append(&january_of("other", 1, 9)[0]).unwrap();
        log.close().unwrap();
    }
    // Part 1 is kept as it is (sealed), and continued.
    assert_eq!(fs::read(&p1).unwrap(), b);
    assert!(d.path().join(ORG).join("2026-01.2.seg").exists());
}

/// Continuing a part a second time (its continuation lost its header in a crash) writes a
/// second damage report beside the first: it used to rewrite `damage.json`, and nothing
/// recovery wrote as evidence may be overwritten.
#[test]
fn a_part_continued_again_keeps_its_first_damage_report() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january(10, 1)).unwrap();
    log.close().unwrap();
    let seg = d.path().join(ORG).join("2026-01.seg");
    let recs = support::records(&fs::read(&seg).unwrap());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[recs[3].off + 100] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    // Without an index the damage is found at open: part 1 is created, nothing appended.
    fs::remove_file(d.path().join(ORG).join("2026-01.idx")).unwrap();
    Log::open(d.path(), support::always(&keys))
        .unwrap()
        .close()
        .unwrap();
    let q = d.path().join(ORG).join("quarantine");
    let first = fs::read(q.join("2026-01.seg.damage.json")).unwrap();
    // The crash: part 1 created, its header never written (so no index of it either);
    // part 0 not yet sealed.
    let p1 = d.path().join(ORG).join("2026-01.1.seg");
    fs::write(&p1, b"").unwrap();
    fs::remove_file(d.path().join(ORG).join("2026-01.1.idx")).unwrap();
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let report = log.recovery_report();
    assert_eq!(log.append(&january(1, 9)[0]).unwrap().seq, 10);
    log.close().unwrap();
    check_continued_again(d.path(), &keys, &report, &bytes);
    assert_eq!(
        fs::read(q.join("2026-01.seg.damage.json")).unwrap(),
        first,
        "the first report was overwritten"
    );
    let second = fs::read(q.join("2026-01.seg.damage.1.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(v["action"], "segment_sealed");
    assert!(!q.join("2026-01.seg.damage.2.json").exists());
}

/// A crash between a continuation's creation and the sealing of the part it continues leaves
/// that part writable; resuming the continuation seals it. If the continuation is itself
/// found damaged before it is resumed, the part before it must be sealed all the same (it
/// stayed writable for good).
#[test]
fn the_part_before_a_damaged_continuation_is_sealed() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january(10, 1)).unwrap();
    log.close().unwrap();
    let seg = d.path().join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = support::records(&bytes);
    bytes[recs[3].off + 100] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(log.append_batch(&january(3, 7)).unwrap()[0].seq, 10);
    log.close().unwrap();
    // The crash before the sealing: part 0 writable again.
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();
    // Part 1 is damaged in its middle before anything resumes it.
    let p1 = d.path().join(ORG).join("2026-01.1.seg");
    let mut b1 = fs::read(&p1).unwrap();
    let recs1 = support::records(&b1);
    b1[recs1[0].off + 100] ^= 0x20;
    fs::write(&p1, &b1).unwrap();

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(log.append(&january(1, 9)[0]).unwrap().seq, 13);
    log.close().unwrap();
    assert!(d.path().join(ORG).join("2026-01.2.seg").exists());
    for part in [&seg, &p1] {
        assert_eq!(
            fs::metadata(part).unwrap().permissions().mode() & 0o777,
            0o444,
            "{} is not sealed",
            part.display()
        );
    }
}
