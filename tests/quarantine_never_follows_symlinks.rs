//! Recovery writes evidence (torn tails, partial headers, damage reports) into the org's
//! `quarantine/`, and must never follow a symbolic link it did not create there. It used to
//! test the directory with `exists()` (which follows links) and then write through the path:
//! a `quarantine` symlinked elsewhere received the log's evidence outside the log, a dangling
//! one made the month's recovery fail with an I/O error, as did a dangling link planted at a
//! torn-tail copy's name (`exists()` said free, `create_new` said taken). Now a `quarantine`
//! that is not a directory is refused with `Error::QuarantineUnusable` before recovery changes
//! anything of the month; a name taken inside it, by anything, is skipped for the next free
//! one, never written through.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::{Error, Keyring, Log, RecoveryAction};
use support::{february_of, january_of, keys_for, records};

const ORG: &str = "acme";

/// A closed log with 5 January and 2 February records of `ORG`, and 2 of `other`.
fn log_with_records(dir: &Path, keys: &Arc<Keyring>) {
    let log = Log::open(dir, support::always(keys)).unwrap();
    log.append_batch(&january_of(ORG, 5, 1)).unwrap();
    log.append_batch(&february_of(ORG, 2, 2)).unwrap();
    log.append_batch(&january_of("other", 2, 3)).unwrap();
    log.close().unwrap();
}

fn january(dir: &Path) -> PathBuf {
    dir.join(ORG).join("2026-01.seg")
}

/// Appends `n` bytes of garbage to January's segment: a torn tail past its index.
fn tear(dir: &Path, n: usize) -> Vec<u8> {
    let mut f = OpenOptions::new().append(true).open(january(dir)).unwrap();
    f.write_all(&vec![0xab; n]).unwrap();
    drop(f);
    fs::read(january(dir)).unwrap()
}

/// Flips a byte inside January's second record: damage that is sealed and continued.
fn damage(dir: &Path) -> Vec<u8> {
    let mut bytes = fs::read(january(dir)).unwrap();
    let recs = records(&bytes);
    bytes[recs[1].off + 100] ^= 0x20;
    fs::write(january(dir), &bytes).unwrap();
    bytes
}

/// The month's recovery failed, with the typed error naming the `quarantine` entry: at open
/// (`at_open`: the segment lacked a current index) and for the month's appends.
fn assert_refused(log: &Log, dir: &Path, found: &str, at_open: bool) {
    let report = log.recovery_report();
    assert!(
        !at_open ||
        report.iter().any(|a| matches!(
            a,
            RecoveryAction::RecoveryFailed { file, error }
                if *file == january(dir) && error.contains(found) && error.contains("quarantine")
        )),
        "{report:?}"
    );
    match log.append(&january_of(ORG, 1, 9)[0]) {
        Err(e @ Error::QuarantineUnusable { .. }) => {
            assert!(e.is_refusal());
            let Error::QuarantineUnusable { org, path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(org, ORG);
            assert_eq!(*path, dir.join(ORG).join("quarantine"));
        }
        other => panic!("expected QuarantineUnusable, got {other:?}"),
    }
    // Other months and orgs go on.
    assert_eq!(log.append(&february_of(ORG, 1, 9)[0]).unwrap().seq, 2);
    assert_eq!(log.append(&january_of("other", 1, 9)[0]).unwrap().seq, 2);
}

/// A torn tail with `quarantine` a symlink to a directory outside the log: nothing is written
/// there, the segment is not cut, and once the link is gone the tail is quarantined in a
/// real directory as usual.
#[test]
fn a_symlinked_quarantine_receives_no_torn_tail() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let outside = root.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let keys = keys_for(&[ORG, "other"]);
    log_with_records(&dir, &keys);
    let torn = tear(&dir, 40);
    let q = dir.join(ORG).join("quarantine");
    symlink(&outside, &q).unwrap();

    let log = Log::open(&dir, support::always(&keys)).unwrap();
    assert_refused(&log, &dir, "a symbolic link", true);
    log.close().unwrap();
    assert_eq!(
        fs::read(january(&dir)).unwrap(),
        torn,
        "the segment was cut"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "written through"
    );

    fs::remove_file(&q).unwrap();
    let log = Log::open(&dir, support::always(&keys)).unwrap();
    let report = log.recovery_report();
    let moved_to = report
        .iter()
        .find_map(|a| match a {
            RecoveryAction::TornTailQuarantined {
                moved_to, len: 40, ..
            } => Some(moved_to.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(moved_to.parent().unwrap(), q);
    assert_eq!(fs::read(&moved_to).unwrap(), vec![0xab; 40]);
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 5);
    log.close().unwrap();
}

/// Mid-file damage with `quarantine` a link to a directory elsewhere (which used to receive
/// the damage report) or a dangling link (recovery failed with an I/O error from
/// `create_dir`): the month is neither continued nor sealed, nothing is written through the
/// link, and a dangling link's target is not created.
#[test]
fn a_quarantine_link_stops_the_months_recovery_before_it_changes_anything() {
    for dangling in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("log");
        let keys = keys_for(&[ORG, "other"]);
        log_with_records(&dir, &keys);
        let damaged = damage(&dir);
        let target = root.path().join("elsewhere");
        if !dangling {
            fs::create_dir(&target).unwrap();
        }
        symlink(&target, dir.join(ORG).join("quarantine")).unwrap();

        let log = Log::open(&dir, support::always(&keys)).unwrap();
        // The index covers the whole file: recovery runs at the month's first append.
        assert_refused(&log, &dir, "a symbolic link", false);
        log.close().unwrap();
        if dangling {
            assert!(!target.exists(), "the link was followed");
        } else {
            assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "written through");
        }
        assert_eq!(fs::read(january(&dir)).unwrap(), damaged);
        let mode = fs::metadata(january(&dir)).unwrap().permissions().mode();
        assert_ne!(mode & 0o222, 0, "sealed without its report");
        assert!(!dir.join(ORG).join("2026-01.1.seg").exists());
    }
}

/// A regular file named `quarantine` (it made recovery fail with an opaque I/O error, "Not
/// a directory"): refused with the typed error; the file is left as it is.
#[test]
fn a_regular_file_named_quarantine_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG, "other"]);
    log_with_records(dir.path(), &keys);
    let torn = tear(dir.path(), 40);
    let q = dir.path().join(ORG).join("quarantine");
    fs::write(&q, b"not mine").unwrap();

    let log = Log::open(dir.path(), support::always(&keys)).unwrap();
    assert_refused(&log, dir.path(), "a regular file", true);
    log.close().unwrap();
    assert_eq!(fs::read(&q).unwrap(), b"not mine");
    assert_eq!(fs::read(january(dir.path())).unwrap(), torn);
}

/// A link planted at the torn-tail copy's name, dangling or to a file elsewhere: recovery
/// does not fail, writes nothing through it, and copies the tail to the next free name.
#[test]
fn a_link_at_the_torn_tail_copys_name_is_skipped() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let keys = keys_for(&[ORG, "other"]);
    log_with_records(&dir, &keys);
    let len = fs::metadata(january(&dir)).unwrap().len();
    tear(&dir, 40);
    let q = dir.join(ORG).join("quarantine");
    fs::create_dir(&q).unwrap();
    let name = format!("2026-01.seg.torn-at-{len}");
    let dangling = root.path().join("nowhere");
    let victim = root.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    symlink(&dangling, q.join(&name)).unwrap();
    symlink(&victim, q.join(format!("{name}.1"))).unwrap();

    let log = Log::open(&dir, support::always(&keys)).unwrap();
    let report = log.recovery_report();
    let moved_to = report
        .iter()
        .find_map(|a| match a {
            RecoveryAction::TornTailQuarantined { moved_to, .. } => Some(moved_to.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(moved_to, q.join(format!("{name}.2")));
    assert_eq!(fs::read(&moved_to).unwrap(), vec![0xab; 40]);
    assert!(!dangling.exists());
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert_eq!(fs::metadata(january(&dir)).unwrap().len(), len);
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 5);
    log.close().unwrap();
}

/// The month whose recovery is refused is the org's newest segment: only that month waits
/// for the repair. New months used to be refused with its error too (each one's `prev` link
/// reopened it). They link to its valid records, and once `quarantine` is a directory
/// again the month recovers and the whole log verifies.
#[test]
fn a_refused_newest_month_does_not_block_new_months() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG, "other"]);
    log_with_records(dir.path(), &keys);
    let february = dir.path().join(ORG).join("2026-02.seg");
    let mut f = OpenOptions::new().append(true).open(&february).unwrap();
    f.write_all(&[0xab; 40]).unwrap();
    drop(f);
    let torn = fs::read(&february).unwrap();
    let q = dir.path().join(ORG).join("quarantine");
    fs::write(&q, b"not mine").unwrap();

    let log = Log::open(dir.path(), support::always(&keys)).unwrap();
    let e = log.append(&february_of(ORG, 1, 7)[0]).unwrap_err();
    assert!(matches!(e, Error::QuarantineUnusable { .. }), "{e}");
    let at = |day: &str| support::event(ORG, support::ts(day), None, "booking.created", "bk_1");
    assert_eq!(log.append(&at("2026-03-05")).unwrap().seq, 0);
    assert_eq!(log.append(&at("2026-01-30")).unwrap().seq, 5);
    log.close().unwrap();
    assert_eq!(fs::read(&february).unwrap(), torn);

    fs::remove_file(&q).unwrap();
    let log = Log::open(dir.path(), support::always(&keys)).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { .. })),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(log.append(&at("2026-02-20")).unwrap().seq, 2);
    log.close().unwrap();
    support::assert_only_quarantined_data(dir.path(), &*keys);
}
