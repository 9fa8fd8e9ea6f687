//! Guards against a changed byte anywhere in a segment or index going unnoticed or being
//! reported somewhere else: flipping any single byte (property test, plus exhaustive sweeps
//! of the headers, one frame and the index trailer) must make verification fail (library:
//! `is_intact() == false`; CLI: exit code 1) with a finding on that file whose byte range
//! covers the flipped byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use auditlog::verify::{Report, VerifyOptions, verify};
use auditlog::{KeyProvider, Keyring};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::*;

/// A log with a key file, built once per test.
struct Fixture {
    log: KeyedLog,
    keys: Keyring,
    files: Vec<(PathBuf, Vec<u8>)>,
}

/// A log of the first `events` events of the workload (all of January to April at 3,000).
fn fixture(events: u64) -> Fixture {
    let log = KeyedLog::new(events);
    let dir = &log.dir;
    let mut files = Vec::new();
    for o in 0..ORGS {
        let od = dir.join(format!("org-{o:03}"));
        let mut names: Vec<PathBuf> = fs::read_dir(&od)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let b = fs::read(&p).unwrap();
            files.push((p, b));
        }
    }
    let keys = Keyring::open(&log.keyring).unwrap();
    Fixture { log, keys, files }
}

/// Flips `mask` into byte `pos` of file `i`, runs `check`, restores the file.
fn with_flip<T>(fx: &Fixture, i: usize, pos: usize, mask: u8, check: impl FnOnce(&Path) -> T) -> T {
    // In place: truncating and rewriting whole files makes ext4 flush them (auto_da_alloc).
    let (path, orig) = &fx.files[i];
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[orig[pos] ^ mask], pos as u64).unwrap();
    let out = check(path);
    f.write_all_at(&[orig[pos]], pos as u64).unwrap();
    out
}

fn verify_org(fx: &Fixture, path: &Path) -> Report {
    // Only the flipped file's org: the others cannot be affected.
    let org = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let opts = VerifyOptions {
        org: Some(support::org(org)),
        ..VerifyOptions::default()
    };
    verify(&fx.log.dir, Some(&fx.keys as &dyn KeyProvider), &opts).unwrap()
}

/// The property: not intact, and a finding on `path` covering `pos`.
fn caught(r: &Report, path: &Path, pos: usize) -> Result<(), String> {
    if r.is_intact() {
        return Err(format!("verification passed:\n{}", dump(r)));
    }
    if !r
        .findings
        .iter()
        .any(|x| x.file == path && x.covers(pos as u64))
    {
        return Err(format!(
            "no finding on {} covers byte {pos}:\n{}",
            path.display(),
            dump(r)
        ));
    }
    Ok(())
}

fn check_flip(fx: &Fixture, i: usize, pos: usize, mask: u8) -> Result<(), String> {
    with_flip(fx, i, pos, mask, |p| caught(&verify_org(fx, p), p, pos)).map_err(|e| {
        format!(
            "flip {mask:#04x} at byte {pos} of {}: {e}",
            fx.files[i].0.display()
        )
    })
}

/// Runs `check(file index, byte position, mask)` on `cases` random single-byte flips (any
/// file of the fixture, any byte of it, any non-zero mask); panics on the first failure.
fn random_flips(
    fx: &Fixture,
    cases: u32,
    check: impl Fn(usize, usize, u8) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let n = fx.files.len();
    let strategy = (0..n, any::<prop::sample::Index>(), 1u8..=255);
    runner
        .run(&strategy, |(i, at, mask)| {
            check(i, at.index(fx.files[i].1.len()), mask)
        })
        .unwrap();
}

#[test]
fn any_flipped_byte_is_caught_where_it_is() {
    let fx = fixture(EVENTS);
    assert_eq!(fx.files.len(), 24);
    random_flips(&fx, 400, |i, pos, mask| {
        check_flip(&fx, i, pos, mask).map_err(TestCaseError::fail)
    });
}

#[test]
fn every_header_frame_and_index_byte_is_caught() {
    // A smaller log (about 40 days) keeps the ~2,000 verifications quick.
    let fx = fixture(1_200);
    // One segment (not its org's newest, so links point at it) and its index.
    let seg = fx
        .files
        .iter()
        .position(|(p, _)| p.ends_with("org-002/2026-01.seg"))
        .unwrap();
    let idx = fx
        .files
        .iter()
        .position(|(p, _)| p.ends_with("org-002/2026-01.idx"))
        .unwrap();
    let recs = records(&fx.files[seg].1);
    let mut failures = Vec::new();
    let mut sweep = |i: usize, range: std::ops::Range<usize>| {
        for pos in range {
            if let Err(e) = check_flip(&fx, i, pos, 0x01) {
                failures.push(e);
            }
        }
    };
    // Segment header, and the whole first and last frames (the last one is covered by
    // the index, so damage there is corruption, not a torn tail).
    sweep(seg, 0..256);
    sweep(seg, recs[0].off..recs[0].end());
    let last = *recs.last().unwrap();
    sweep(seg, last.off..last.end());
    // Index header, first entries, and trailer (CRC and tag).
    let ilen = fx.files[idx].1.len();
    sweep(idx, 0..216 + 24 * 4);
    sweep(idx, ilen - 36..ilen);
    assert!(
        failures.is_empty(),
        "{} flips not caught:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cli_exits_1_on_flipped_bytes() {
    let fx = fixture(EVENTS);
    random_flips(&fx, 24, |i, pos, mask| {
        let out = with_flip(&fx, i, pos, mask, |_| {
            auditlog_cli(
                Some(&fx.log.dir),
                Some(&fx.log.keyring),
                ["verify", "--json"],
            )
        });
        prop_assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = fx.files[i].0.to_str().unwrap();
        let covered = v["findings"].as_array().unwrap().iter().any(|x| {
            let (o, l) = (x["offset"].as_u64(), x["len"].as_u64());
            x["file"] == path
                && matches!((o, l), (Some(o), Some(l)) if (o..o + l.max(1)).contains(&(pos as u64)))
        });
        prop_assert!(covered, "byte {} of {}: {}", pos, path, v);
        Ok(())
    });
    // Restored: the untouched log passes.
    let out = auditlog_cli(Some(&fx.log.dir), Some(&fx.log.keyring), ["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
