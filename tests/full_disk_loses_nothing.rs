//! A full disk (a small tmpfs mounted for each test; needs root and skips, saying so, where
//! mounting is not allowed):
//! - poisons the writer, loses no acknowledged append, and the next open recovers once space
//!   is back;
//! - recovery on a full disk cuts nothing it could not copy first, and leaves no partial
//!   copy;
//! - a sidecar index that recovery cannot rebuild (derived data) does not refuse the month:
//!   before, the month's whole recovery failed and every append to it was refused until
//!   space came back, each attempt rescanning the segment, and the half-written temporary
//!   index was left taking space.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use auditlog::verify::FindingKind;
use auditlog::{Error, Keyring, Log, Receipt, RecoveryAction};
use support::{always, error_findings, keys_for, org, scan};

const ORG: &str = "acme";

/// The mount point, and the temporary directory that holds it (removed after the unmount).
struct Mount(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount(kib: u64) -> Option<Mount> {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("m");
    fs::create_dir(&p).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(&p)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("cannot mount a tmpfs: skipped");
        return None;
    }
    Some(Mount(p, t))
}

/// Fills the file system with a filler file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    let chunk = vec![0xAAu8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    // Byte by byte for what is left.
    while f.write_all(&[1]).is_ok() {}
    p
}

/// Every receipt is read back from `log` without an error, and once closed the log
/// verifies with no error finding.
fn receipted_and_intact(log: Log, dir: &Path, keys: &Keyring, receipts: &[Receipt]) {
    let (read, errs) = scan(&log, &org(ORG));
    assert!(errs.is_empty(), "{errs:#?}");
    support::assert_receipts_present(receipts, &read);
    log.close().unwrap();
    let errs = error_findings(dir, keys);
    assert!(errs.is_empty(), "{errs:#?}");
}

/// Appends one at a time (Always) until the disk is full; every receipt returned must be
/// readable after space is freed and the log reopened, and the writer must refuse appends
/// after the failure.
#[test]
fn full_disk_poisons_and_loses_no_acknowledged_append() {
    let Some(m) = mount(1024) else { return };
    let dir = m.0.join("log");
    let keys = keys_for(&[ORG]);
    let events = support::january_of(ORG, 5000, 7);
    let log = Log::open(&dir, always(&keys)).unwrap();
    // Leave ~40 KiB.
    let filler = m.0.join("filler");
    {
        let mut f = fs::File::create(&filler).unwrap();
        f.write_all(&vec![0u8; 900 * 1024]).unwrap();
        f.sync_all().unwrap();
    }
    let mut receipts = Vec::new();
    let mut failed = None;
    for e in &events {
        match log.append(e) {
            Ok(r) => receipts.push(r),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    failed.expect("the disk filled");
    let again = log.append(&events[receipts.len()]).unwrap_err();
    assert!(
        matches!(again, Error::WriterFailed { .. }),
        "after a failed write the writer must refuse: {again}"
    );
    // Whatever close says of the writer it cannot flush, it loses nothing written.
    let _ = log.close();
    fs::remove_file(&filler).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    let r = log.append(&events[receipts.len() + 1]).unwrap();
    assert!(r.seq as usize >= receipts.len());
    receipts.push(r);
    receipted_and_intact(log, &dir, &keys, &receipts);
}

/// A torn tail found while the disk is full: recovery cannot copy it, so it must not cut
/// it, and must leave no partial copy; once space is back it is quarantined whole.
#[test]
fn torn_tail_on_a_full_disk_is_left_alone_then_recovered() {
    let Some(m) = mount(2048) else { return };
    let dir = m.0.join("log");
    let keys = keys_for(&[ORG]);
    let events = support::january_of(ORG, 200, 9);
    let log = Log::open(&dir, always(&keys)).unwrap();
    let receipts = log.append_batch(&events[..100]).unwrap();
    drop(log); // a crash: no index over the records
    let seg = dir.join(ORG).join("2026-01.seg");
    // An index of part of the records, as a writer killed before close leaves none;
    // remove the one drop wrote to make recovery scan.
    let _ = fs::remove_file(dir.join(ORG).join("2026-01.idx"));
    let mut bytes = fs::read(&seg).unwrap();
    let before = bytes.len();
    // A torn tail of 64 KiB of garbage (a record cut and junk after it).
    bytes.extend((0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    fs::write(&seg, &bytes).unwrap();
    let filler = fill(&m.0);
    let log = Log::open(&dir, always(&keys)).unwrap();
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "a full disk must not let recovery cut what it could not copy"
    );
    drop(log);
    let q = dir.join(ORG).join("quarantine");
    let leftovers: Vec<_> = fs::read_dir(&q)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a partial copy was left: {leftovers:?}"
    );
    fs::remove_file(&filler).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    let report = log.recovery_report();
    assert!(
        report.iter().any(|a| matches!(a,
            RecoveryAction::TornTailQuarantined { offset, .. } if *offset == before as u64)),
        "{report:#?}"
    );
    receipted_and_intact(log, &dir, &keys, &receipts);
}

/// Mid-file damage found while the disk is full: the continuation cannot be created; the
/// damaged part must stay as it is (unsealed, still latest) and a later open continue it.
#[test]
fn mid_file_damage_on_a_full_disk_then_recovered() {
    let Some(m) = mount(2048) else { return };
    let dir = m.0.join("log");
    let keys = keys_for(&[ORG]);
    let events = support::january_of(ORG, 60, 11);
    let log = Log::open(&dir, always(&keys)).unwrap();
    let receipts = log.append_batch(&events[..50]).unwrap();
    log.close().unwrap();
    let seg = dir.join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let filler = fill(&m.0);
    let log = Log::open(&dir, always(&keys)).unwrap();
    assert!(log.append(&events[50]).is_err());
    drop(log);
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "the damaged part is left as it was"
    );
    assert!(!dir.join(ORG).join("2026-01.1.seg").exists());
    fs::remove_file(&filler).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    let r = log.append(&events[51]).unwrap();
    assert!(r.seq >= 50, "seq {} reissued", r.seq);
    let (read, _errs) = scan(&log, &org(ORG));
    let mut kept = receipts.clone();
    kept.retain(|r| read.iter().any(|v| v.seq == r.seq));
    assert!(kept.len() >= 49, "lost more than the damaged record");
    log.close().unwrap();
    let errs = error_findings(&dir, &*keys);
    assert!(
        errs.iter()
            .all(|(k, _)| *k == FindingKind::ChecksumCorruption),
        "{errs:#?}"
    );
}

/// A segment left without an index by a killed writer (nothing torn), reopened on a full
/// disk: the index cannot be rebuilt, which recovery reports, and the month still takes
/// appends (one fits in the segment's last, already allocated page). The temporary index
/// file is not left behind.
#[test]
fn an_index_that_cannot_be_rebuilt_does_not_refuse_the_month() {
    let Some(m) = mount(2048) else { return };
    let dir = m.0.join("log");
    let keys = keys_for(&[ORG]);
    let events = support::january_of(ORG, 40, 13);
    let log = Log::open(&dir, always(&keys)).unwrap();
    let mut receipts = log.append_batch(&events[..10]).unwrap();
    drop(log);
    let _ = fs::remove_file(dir.join(ORG).join("2026-01.idx"));
    let seg = dir.join(ORG).join("2026-01.seg");
    let len = fs::metadata(&seg).unwrap().len();
    let filler = fill(&m.0);
    let log = Log::open(&dir, always(&keys)).unwrap();
    let report = log.recovery_report();
    assert!(
        !report
            .iter()
            .any(|a| matches!(a, RecoveryAction::RecoveryFailed { .. })),
        "{report:#?}"
    );
    assert!(
        report.iter().any(|a| matches!(a,
            RecoveryAction::IndexNotRebuilt { file, error, .. }
                if *file == seg && error.contains("No space left"))),
        "{report:#?}"
    );
    assert!(!dir.join(ORG).join("2026-01.tmp").exists());
    // A small event fits in the page the segment already has (segment {len} bytes).
    assert!(len % 4096 != 0 && 4096 - len % 4096 > 1_000, "{len}");
    let mut small = events[10].clone();
    small.before = serde_json::Value::Null;
    small.after = serde_json::Value::Null;
    small.metadata = serde_json::Value::Null;
    receipts.push(log.append(&small).unwrap());
    drop(log);
    fs::remove_file(&filler).unwrap();
    let log = Log::open(&dir, always(&keys)).unwrap();
    receipted_and_intact(log, &dir, &keys, &receipts);
}
