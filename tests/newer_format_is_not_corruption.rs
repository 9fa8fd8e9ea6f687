//! A segment, index or checkpoint written by a newer auditlog (a higher format version, or
//! incompatible flags this build does not know, FORMAT.md §9) is not corruption: `verify`
//! reports it as its own error finding, `unsupported_format` (nothing in it was verified),
//! and `inspect`, `stats`, `query` and a segment scan return `Error::UnsupportedFormat`
//! naming the file. The same bytes changed without their checksum fixed stay
//! `checksum_corruption` (bit rot of the version or flags field). Found by review: `verify`
//! classed every such header `checksum_corruption`, and the links into it as missing
//! records.

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

use auditlog::verify::{
    CheckpointOptions, Class, FindingKind as K, Severity, VerifyOptions, make_checkpoint,
    make_checkpoint_with, verify,
};
use auditlog::{Durability, Error, Keyring, Log, Options};
use support::*;

const ORG: &str = "acme";

/// January and February of one org (February's `prev` links to January), closed.
fn two_months() -> (tempfile::TempDir, Arc<Keyring>) {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(
        d.path(),
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    log.append_batch(&january_of(ORG, 40, 1)).unwrap();
    log.append_batch(&february_of(ORG, 40, 2)).unwrap();
    log.close().unwrap();
    (d, keys)
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = fs::read(path).unwrap();
    f(&mut b);
    fs::write(path, b).unwrap();
}

/// Recomputes an index file's CRC (the 4 bytes before its 32-byte tag).
fn fix_index_crc(b: &mut [u8]) {
    let at = b.len() - 36;
    let crc = auditlog::format::crc32(&b[..at]);
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

fn seg(d: &Path, m: &str) -> PathBuf {
    seg_path(d, ORG, m)
}

fn unsupported_file(e: &Error) -> &Path {
    match e {
        Error::UnsupportedFormat { file, source } => {
            assert!(source.needs_newer_reader(), "{source}");
            file
        }
        other => panic!("not UnsupportedFormat: {other}"),
    }
}

/// Asserts the report has exactly one finding, `unsupported_format` on `file` at `at`.
#[track_caller]
fn only_unsupported(d: &Path, keys: &Keyring, file: &str, at: Option<(usize, usize)>) {
    let r = verify_keys(d, keys);
    assert_findings(d, &r, vec![f(K::UnsupportedFormat, file, at, None)]);
    let fi = &r.findings[0];
    assert_eq!(fi.class, Class::Unsupported);
    assert_eq!(fi.severity, Severity::Error);
    assert!(fi.message.contains("needs a newer reader"), "{fi}");
    assert!(!r.is_intact());
    // Not damage: a checkpoint is refused even when damage is accepted.
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    assert!(make_checkpoint_with(d, &org(ORG), keys, &accept).is_err());
}

#[test]
fn a_segment_of_a_newer_version_or_with_unknown_flags_needs_a_newer_reader() {
    for (what, at, value) in [("version", 8usize, 2u32), ("incompat flags", 16, 0x4)] {
        let (d, keys) = two_months();
        let jan = seg(d.path(), "2026-01");
        edit(&jan, |b| {
            if at == 8 {
                b[8..10].copy_from_slice(&(value as u16).to_le_bytes());
            } else {
                b[16..20].copy_from_slice(&value.to_le_bytes());
            }
            fix_header_crc(b);
        });
        // January is not read, so February's link into it is not followed: no
        // link_mismatch, no missing_segment, no checksum_corruption.
        only_unsupported(
            d.path(),
            &keys,
            &format!("{ORG}/2026-01.seg"),
            Some((0, 256)),
        );

        // inspect, stats, scan and query name the file as needing a newer reader.
        let e = auditlog::inspect::inspect(&jan, Some(&*keys), Default::default(), |_| Ok(()))
            .unwrap_err();
        assert_eq!(unsupported_file(&e), jan, "{what}");
        assert!(e.to_string().contains("needs a newer reader"), "{e}");
        let log = Log::open_read_only(d.path(), Options::new(keys.clone())).unwrap();
        // stats names it and still counts February.
        let stats = log.stats().unwrap();
        let damage: Vec<_> = stats.iter().flat_map(|m| &m.damage).collect();
        assert!(
            matches!(damage.as_slice(), [d] if d.kind == auditlog::DamageKind::NewerFormat && d.file == jan),
            "{what}: {damage:?}"
        );
        assert_eq!(stats.iter().map(|m| m.events).sum::<u64>(), 40, "{what}");
        let (events, errs) = scan(&log, &org(ORG));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(unsupported_file(&errs[0]), jan);
        assert_eq!(events.len(), 40, "February is still read");
        let (events, errs, _) = run_query(log.query(&org(ORG)));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(unsupported_file(&errs[0]), jan);
        assert_eq!(events.len(), 40, "February is still read");
        assert!(events.iter().all(|v| v.month == month("2026-02")));
    }
}

#[test]
fn the_same_fields_rotted_are_still_checksum_corruption() {
    // Version 1 → 3 and a flag bit set, the CRC not fixed: bit rot, not a newer format.
    for (at, bit) in [(9usize, 0u8), (8, 1), (16, 2)] {
        let (d, keys) = two_months();
        let jan = seg(d.path(), "2026-01");
        edit(&jan, |b| b[at] ^= 1 << bit);
        let r = verify_keys(d.path(), &*keys);
        let kinds: Vec<K> = r.findings.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&K::ChecksumCorruption), "{}", dump(&r));
        assert!(!kinds.contains(&K::UnsupportedFormat), "{}", dump(&r));
        let e = auditlog::inspect::inspect(&jan, None, Default::default(), |_| Ok(()));
        assert!(e.is_ok(), "inspect shows the damage: {e:?}");
    }
}

#[test]
fn an_index_of_a_newer_format_is_reported_as_such_and_bypassed() {
    for (at, value, fix) in [(8usize, 2u32, true), (16, 0x8, true), (8, 3, false)] {
        let (d, keys) = two_months();
        let idx = idx_path(d.path(), ORG, "2026-01");
        edit(&idx, |b| {
            if at == 8 {
                b[8..10].copy_from_slice(&(value as u16).to_le_bytes());
            } else {
                b[16..20].copy_from_slice(&value.to_le_bytes());
            }
            if fix {
                fix_index_crc(b);
            }
        });
        let ilen = fs::metadata(&idx).unwrap().len() as usize;
        let file = format!("{ORG}/2026-01.idx");
        if !fix {
            // Version 1 → 3, CRC not fixed: the version rotted.
            let r = verify_keys(d.path(), &*keys);
            assert_findings(
                d.path(),
                &r,
                vec![f(K::ChecksumCorruption, &file, Some((0, ilen)), None)],
            );
            continue;
        }
        only_unsupported(d.path(), &keys, &file, Some((0, ilen)));
        let e = auditlog::inspect::inspect(&idx, None, Default::default(), |_| Ok(())).unwrap_err();
        assert_eq!(unsupported_file(&e), idx);
        // The index is derived data: a query reads the segment without it, and verifies it.
        let log = Log::open_read_only(d.path(), Options::new(keys.clone())).unwrap();
        let (events, errs, stats) = run_query(log.query(&org(ORG)));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(events.len(), 80);
        assert_eq!(
            stats.indexes_bypassed.len(),
            1,
            "{:?}",
            stats.indexes_bypassed
        );
    }
}

#[test]
fn a_checkpoint_of_a_newer_version_is_not_called_forged() {
    let (d, keys) = two_months();
    let mut cp = make_checkpoint(d.path(), &org(ORG), &*keys).unwrap();
    cp.version = 2;
    let opts = VerifyOptions {
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(d.path(), &r, vec![f(K::UnsupportedFormat, ORG, None, None)]);
    assert!(r.findings[0].message.contains("needs a newer reader"));
}

#[test]
fn the_cli_says_which_file_needs_a_newer_reader() {
    let (d, keys) = two_months();
    drop(keys);
    let jan = seg(d.path(), "2026-01");
    edit(&jan, |b| {
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        fix_header_crc(b);
    });
    let o = auditlog_cli(Some(d.path()), None, ["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("ERROR unsupported_format {}", jan.display())),
        "{}",
        stdout(&o)
    );
    for args in [
        vec!["inspect".to_string(), jan.display().to_string()],
        vec!["stats".to_string()],
        vec![
            "query".to_string(),
            "--org".to_string(),
            ORG.to_string(),
            "--unverified".to_string(),
        ],
    ] {
        let dir = Some(d.path()).filter(|_| args[0] != "inspect");
        let o = auditlog_cli(dir, None, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&jan.display().to_string()) && err.contains("needs a newer reader"),
            "{args:?}: {err}"
        );
    }
}

/// A writer opening a log whose month's latest segment is of a newer format leaves it as it
/// is: recovery of that month fails with `Error::UnsupportedFormat` (reported, not fatal),
/// appends to it fail the same way, and nothing is sealed, cut or continued. Before, the
/// file was taken for damage: sealed read-only, and the month continued in this build's
/// format in a new part.
#[test]
fn a_writer_leaves_a_newer_format_segment_alone() {
    for (at, value) in [(8usize, 2u32), (16, 0x4)] {
        let (d, keys) = two_months();
        let feb = seg(d.path(), "2026-02");
        edit(&feb, |b| {
            if at == 8 {
                b[8..10].copy_from_slice(&(value as u16).to_le_bytes());
            } else {
                b[16..20].copy_from_slice(&value.to_le_bytes());
            }
            fix_header_crc(b);
        });
        let before = fs::read(&feb).unwrap();
        let mode = fs::metadata(&feb).unwrap().permissions();
        let names = file_names(&d.path().join(ORG));

        let log = Log::open(
            d.path(),
            Options::new(keys.clone()).durability(Durability::Never),
        )
        .unwrap();
        let failed: Vec<_> = log
            .recovery_report()
            .into_iter()
            .filter_map(|a| match a {
                auditlog::RecoveryAction::RecoveryFailed { file, error } => Some((file, error)),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, feb);
        assert!(
            failed[0].1.contains("needs a newer reader"),
            "{}",
            failed[0].1
        );
        let e = log.append(&february_of(ORG, 1, 9)[0]).unwrap_err();
        assert_eq!(unsupported_file(&e), feb);
        // Other months still take appends.
        log.append(&january_of(ORG, 1, 9)[0]).unwrap();
        log.close().unwrap();

        assert_eq!(fs::read(&feb).unwrap(), before, "newer-format file changed");
        assert_eq!(fs::metadata(&feb).unwrap().permissions(), mode, "sealed");
        assert_eq!(
            file_names(&d.path().join(ORG)),
            names,
            "files added or moved"
        );
    }
}
