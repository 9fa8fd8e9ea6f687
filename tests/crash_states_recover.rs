//! Crash states built by hand, each the disk as a crash at one step of a multi-file
//! operation leaves it, and what the next open makes of it:
//! - after a torn tail's copy was made durable, before the cut: copied again under another
//!   name and cut; nothing else reported;
//! - a new month's or a continuation's header that reached the disk as zeros: moved aside
//!   and created again with the right ordinal, link and first seq;
//! - a complete, in-bounds last frame whose CRC fails: a torn tail, cut and quarantined.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::format::header::SegmentHeader;
use auditlog::verify::FindingKind;
use auditlog::{Keyring, Log, Receipt, RecoveryAction};
use support::{always, error_findings, february_of, january_of, keys_for, org, scan};
use tempfile::TempDir;

const ORG: &str = "acme";

/// A log of `n` January events of `ORG`, closed or dropped (a crash: no index written):
/// its temporary directory, the log's directory, the keys and the receipts.
fn january(n: u64, close: bool) -> (TempDir, PathBuf, Arc<Keyring>, Vec<Receipt>) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let keys = keys_for(&[ORG]);
    let log = Log::open(&dir, always(&keys)).unwrap();
    let receipts = log.append_batch(&january_of(ORG, n, 1)).unwrap();
    match close {
        true => log.close().unwrap(),
        false => drop(log),
    }
    (d, dir, keys, receipts)
}

/// The byte offsets of `ORG`'s records, read through a read-only log.
fn offsets(dir: &Path, keys: &Arc<Keyring>) -> Vec<usize> {
    let ro = Log::open_read_only(dir, always(keys)).unwrap();
    let (read, _) = scan(&ro, &org(ORG));
    read.iter().map(|e| e.offset as usize).collect()
}

/// Whether recovery moved a file shorter than a header (or a zeroed one) aside.
fn moved_a_partial_segment_aside(log: &Log) -> bool {
    log.recovery_report()
        .iter()
        .any(|a| matches!(a, RecoveryAction::PartialSegmentQuarantined { .. }))
}

fn header_of(path: &Path) -> SegmentHeader {
    SegmentHeader::decode(&fs::read(path).unwrap()[..256]).unwrap()
}

/// A crash after the torn tail's copy was made durable and before the cut: the next
/// recovery copies it again (under another name) and cuts; nothing else is reported.
#[test]
fn crash_between_tail_copy_and_cut() {
    let (_tmp, dir, keys, rs) = january(20, false);
    let odir = dir.join(ORG);
    let _ = fs::remove_file(odir.join("2026-01.idx"));
    let seg = odir.join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    let at = b.len();
    b.extend_from_slice(&[0x5a; 333]);
    fs::write(&seg, &b).unwrap();
    fs::create_dir(odir.join("quarantine")).unwrap();
    fs::write(
        odir.join("quarantine")
            .join(format!("2026-01.seg.torn-at-{at}")),
        &b[at..],
    )
    .unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    let rep = log.recovery_report();
    assert!(
        rep.iter().any(
            |a| matches!(a, RecoveryAction::TornTailQuarantined { moved_to, .. }
            if moved_to.ends_with(format!("2026-01.seg.torn-at-{at}.1")))
        ),
        "{rep:#?}"
    );
    let (read, errs) = scan(&log, &org(ORG));
    assert!(errs.is_empty());
    support::assert_receipts_present(&rs, &read);
    log.close().unwrap();
    assert!(error_findings(&dir, &*keys).is_empty());
}

/// A crash while creating February (after January): the file holds 256 zero bytes (its
/// size reached the disk, its data did not). Reopening moves it aside and creates
/// February again with the right ordinal and link; March after it; verify is clean.
#[test]
fn zeroed_header_of_a_new_month() {
    let (_tmp, dir, keys, _) = january(10, true);
    let odir = dir.join(ORG);
    fs::write(odir.join("2026-02.seg"), [0u8; 256]).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    assert!(
        moved_a_partial_segment_aside(&log),
        "{:#?}",
        log.recovery_report()
    );
    log.append_batch(&february_of(ORG, 3, 2)).unwrap();
    let mut mar = february_of(ORG, 2, 3);
    for e in &mut mar {
        e.occurred_at.0 += 31 * 86_400_000_000;
    }
    log.append_batch(&mar).unwrap();
    log.close().unwrap();
    let h = header_of(&odir.join("2026-02.seg"));
    assert_eq!(h.ordinal, 1, "{h:?}");
    let h3 = header_of(&odir.join("2026-03.seg"));
    assert_eq!(h3.ordinal, 2, "{h3:?}");
    let e = error_findings(&dir, &*keys);
    assert!(e.is_empty(), "{e:#?}");
}

/// A crash while creating the continuation of a damaged January: 256 zero bytes.
#[test]
fn zeroed_header_of_a_continuation() {
    let (_tmp, dir, keys, _) = january(10, true);
    let odir = dir.join(ORG);
    let read = offsets(&dir, &keys);
    let seg = odir.join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    b[read[4] + 90] ^= 1;
    fs::write(&seg, &b).unwrap();
    fs::write(odir.join("2026-01.1.seg"), [0u8; 256]).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    assert!(
        moved_a_partial_segment_aside(&log),
        "{:#?}",
        log.recovery_report()
    );
    let r = log.append(&january_of(ORG, 1, 9)[0]).unwrap();
    assert!(r.seq >= 10, "{r:?}");
    log.close().unwrap();
    let h = header_of(&odir.join("2026-01.1.seg"));
    assert_eq!((h.ordinal, h.first_seq), (1, 10), "{h:?}");
    let e = error_findings(&dir, &*keys);
    assert!(
        e.len() == 1 && e[0].0 == FindingKind::ChecksumCorruption,
        "{e:#?}"
    );
}

/// The tail is a complete, in-bounds frame (length and seq plausible) whose CRC fails:
/// a torn tail, cut and quarantined.
#[test]
fn complete_frame_with_bad_crc_at_the_end() {
    let (_tmp, dir, keys, rs) = january(10, true);
    let odir = dir.join(ORG);
    let read = offsets(&dir, &keys);
    // Index over 9 records only: the writer died after the 10th was written.
    let seg = odir.join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    let last = read[9];
    b[last + 200] ^= 0x10;
    fs::write(&seg, &b).unwrap();
    fs::remove_file(odir.join("2026-01.idx")).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    let rep = log.recovery_report();
    assert!(
        rep.iter()
            .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { offset, .. } if *offset as usize == last)),
        "{rep:#?}"
    );
    let (read2, errs) = scan(&log, &org(ORG));
    assert!(errs.is_empty());
    support::assert_receipts_present(&rs[..9], &read2);
    log.close().unwrap();
    assert!(error_findings(&dir, &*keys).is_empty());
}
