//! Checkpoints judge damage, deleted orgs, unkeyed orgs and segments being created the way
//! `verify` does:
//! - bit rot inside the records a checkpoint pinned is corruption (its own finding), not a
//!   truncation (tampering), while a real cut beside it is still one;
//! - an org whose whole directory is gone is each pinned segment missing, not an I/O error
//!   that loses every other org's result;
//! - `checkpoint` over every org refuses an org without a key and still prints the others;
//! - a live writer's segment still being created is left out of a checkpoint and passed
//!   over by a scan, as queries and `verify` already did;
//! - a checkpoint file without any checkpoint is refused (a usage error), not taken for
//!   "no checkpoints asked for", and a checkpoint naming no valid org is an error finding,
//!   not dropped;
//! - a refused checkpoint says what stands in the way: a missing key or a file of a newer
//!   format, not "integrity failure".
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
use std::process::Output;

use auditlog::checkpoint::Checkpoint;
use auditlog::verify::{
    CheckpointOptions, FindingKind, Severity, VerifyOptions, make_checkpoint, make_checkpoint_with,
    verify,
};
use auditlog::{Error, KeyError, KeyId, KeyProvider, Keyring, Log, Options};
use serde_json::Value;
use support::*;

fn run(fx: &KeyedLog, args: &[&str]) -> Output {
    auditlog_cli(Some(&fx.dir), Some(&fx.keyring), args)
}

fn checkpoint_file(fx: &KeyedLog) -> std::path::PathBuf {
    let o = run(fx, &["checkpoint"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cp = fx.root.join("cp.jsonl");
    fs::write(&cp, stdout(&o)).unwrap();
    cp
}

fn kinds(o: &Output) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["file"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn bit_rot_inside_pinned_records_is_corruption_not_truncation() {
    let fx = KeyedLog::new(EVENTS);
    let cp = checkpoint_file(&fx);
    let p = seg_path(&fx.dir, "org-000", "2026-02");
    let mut b = fs::read(&p).unwrap();
    let recs = records(&b);
    // One bit in the middle of a record the checkpoint pinned: its CRC fails, and the
    // segment reads one record fewer.
    let r = recs[recs.len() / 2];
    b[r.off + r.len / 2] ^= 1;
    fs::write(&p, &b).unwrap();
    let o = run(
        &fx,
        &["verify", "--checkpoint", cp.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let k = kinds(&o);
    assert!(
        k.iter().any(|(kind, _)| kind == "checksum_corruption"),
        "{k:?}"
    );
    assert!(
        !k.iter()
            .any(|(kind, _)| kind == "truncated_against_checkpoint"),
        "bit rot reported as truncation: {k:?}"
    );

    // Cut the segment's last 20 pinned records as well: one damaged record cannot explain
    // 21 missing ones, so the truncation is reported beside the corruption.
    let cut = recs[recs.len() - 20].off;
    fs::write(&p, &b[..cut]).unwrap();
    fs::remove_file(idx_path(&fx.dir, "org-000", "2026-02")).unwrap();
    let o = run(
        &fx,
        &["verify", "--checkpoint", cp.to_str().unwrap(), "--json"],
    );
    let k = kinds(&o);
    assert!(
        k.iter()
            .any(|(kind, file)| kind == "truncated_against_checkpoint"
                && *file == p.display().to_string()),
        "{k:?}"
    );
}

#[test]
fn a_deleted_org_is_missing_segments_not_an_io_error() {
    let fx = KeyedLog::new(EVENTS);
    let cp = checkpoint_file(&fx);
    fs::remove_dir_all(fx.dir.join("org-001")).unwrap();
    let o = run(
        &fx,
        &["verify", "--checkpoint", cp.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let k = kinds(&o);
    let missing: Vec<&String> = k
        .iter()
        .filter(|(kind, _)| kind == "missing_segment")
        .map(|(_, f)| f)
        .collect();
    let want: Vec<String> = ["2026-01", "2026-02", "2026-03", "2026-04"]
        .iter()
        .map(|m| seg_path(&fx.dir, "org-001", m).display().to_string())
        .collect();
    assert_eq!(missing.len(), 4, "{k:?}");
    for w in &want {
        assert!(missing.contains(&w), "{w} not reported missing: {k:?}");
    }
    // Nothing else: the other orgs verify against their checkpoints.
    assert_eq!(k.len(), 4, "{k:?}");
    // Without a checkpoint naming it, a missing org asked for is still a usage error.
    let o = run(&fx, &["verify", "--org", "org-001"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn checkpoint_of_every_org_refuses_an_unkeyed_org_and_prints_the_rest() {
    let fx = KeyedLog::new(600);
    fs::create_dir(fx.dir.join("org-0005")).unwrap();
    let o = run(&fx, &["checkpoint"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let printed: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let orgs: Vec<&str> = printed
        .iter()
        .map(|c| c["org_id"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["org-000", "org-001", "org-002"]);
    assert!(stderr(&o).contains("org org-0005"), "{}", stderr(&o));
}

#[test]
fn a_segment_being_created_is_left_out_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keys = build_log_small(&dir);
    // A live writer, and its next month's file as it is between `create_new` and the
    // header's write: empty, then a partial header.
    let live = Log::open(&dir, Options::new(keys.clone())).unwrap();
    let creating = seg_path(&dir, "org-000", "2026-05");
    for len in [0usize, 100] {
        fs::write(&creating, vec![0u8; len]).unwrap();
        let cp = make_checkpoint(&dir, &org("org-000"), &*keys).unwrap();
        let names: Vec<&str> = cp.segments.iter().map(|s| s.segment.as_str()).collect();
        assert_eq!(names, ["2026-01", "2026-02", "2026-03", "2026-04"], "{len}");
        let reader = Log::open_read_only(&dir, Options::new(keys.clone())).unwrap();
        let (events, errors) = scan(&reader, &org("org-000"));
        assert!(errors.is_empty(), "{len}: {errors:?}");
        assert!(!events.is_empty());
        let report = verify(
            &dir,
            Some(&*keys),
            &VerifyOptions {
                org: Some(org("org-000")),
                checkpoints: vec![cp],
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.kind != FindingKind::QuarantinedData),
            "{len}: {:?}",
            report.findings
        );
    }
    fs::remove_file(&creating).unwrap();
    live.close().unwrap();
}

/// The reference log, keys in memory.
fn build_log_small(dir: &Path) -> std::sync::Arc<Keyring> {
    let keys = keyring(Keyring::in_memory());
    build_log_n(dir, keys.clone(), EVENTS);
    keys
}

#[test]
fn a_checkpoint_file_without_checkpoints_is_refused() {
    for text in ["", "\n", "  \n\n\t\n"] {
        let e = Checkpoint::parse_lines(text).unwrap_err();
        assert!(e.contains("no checkpoint"), "{text:?}: {e}");
    }
    let fx = KeyedLog::new(600);
    let cp = fx.root.join("empty.jsonl");
    for text in ["", "\n  \n"] {
        fs::write(&cp, text).unwrap();
        let o = run(&fx, &["verify", "--checkpoint", cp.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{text:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&cp.display().to_string()) && err.contains("no checkpoint"),
            "{err}"
        );
    }
    // One line is enough (the orgs it does not cover are warned about, as before).
    let one = checkpoint_file(&fx);
    let first = fs::read_to_string(&one).unwrap();
    fs::write(&cp, format!("\n{}\n\n", first.lines().next().unwrap())).unwrap();
    let o = run(
        &fx,
        &["verify", "--checkpoint", cp.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let k = kinds(&o);
    assert_eq!(k.len(), 2, "{k:?}");
    assert!(k.iter().all(|(kind, _)| kind == "no_checkpoint"), "{k:?}");
}

#[test]
fn a_checkpoint_naming_no_valid_org_is_an_error() {
    let fx = KeyedLog::new(600);
    let cp = checkpoint_file(&fx);
    let first = fs::read_to_string(&cp).unwrap();
    let first = first.lines().next().unwrap();
    let bad_file = fx.root.join("bad.jsonl");
    for bad in ["../x", "LOCK", "", "a/b"] {
        let mut v: Value = serde_json::from_str(first).unwrap();
        v["org_id"] = bad.into();
        fs::write(&bad_file, format!("{v}\n")).unwrap();
        let o = run(
            &fx,
            &[
                "verify",
                "--checkpoint",
                bad_file.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", stderr(&o));
        let k = kinds(&o);
        let on_dir: Vec<_> = k
            .iter()
            .filter(|(_, file)| *file == fx.dir.display().to_string())
            .collect();
        assert_eq!(
            on_dir,
            [&(
                "checkpoint_mismatch".to_string(),
                fx.dir.display().to_string()
            )],
            "{bad:?}: {k:?}"
        );
        // Whatever org is verified: it is no org's, so it is no other org's either.
        let o = run(
            &fx,
            &[
                "verify",
                "--org",
                "org-001",
                "--checkpoint",
                bad_file.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", stdout(&o));
        assert!(
            stdout(&o).contains(&format!("names org {bad:?}, which is not an org id")),
            "{}",
            stdout(&o)
        );
    }
    // Through the API, beside a valid checkpoint of the same org: still an error.
    let keys = keyring(Keyring::open(&fx.keyring).unwrap());
    let good = make_checkpoint(&fx.dir, &org("org-000"), &*keys).unwrap();
    let mut bad = good.clone();
    bad.org_id = "LOCK".into();
    let r = verify(
        &fx.dir,
        Some(&*keys),
        &VerifyOptions {
            org: Some(org("org-000")),
            checkpoints: vec![good, bad],
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.errors(), 1, "{}", dump(&r));
    assert_eq!(r.findings[0].kind, FindingKind::CheckpointMismatch);
    assert_eq!(r.findings[0].severity, Severity::Error);
}

/// Recomputes an index file's CRC (the 4 bytes before its 32-byte tag).
fn fix_index_crc(b: &mut [u8]) {
    let at = b.len() - 36;
    let crc = auditlog::format::crc32(&b[..at]);
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_refused_checkpoint_says_what_stands_in_the_way() {
    let (d, keys) = fresh_log();
    let dir = d.path();
    let a = org("org-000");
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    let both = |keys: &dyn KeyProvider| {
        [
            make_checkpoint(dir, &a, keys).unwrap_err(),
            make_checkpoint_with(dir, &a, keys, &accept).unwrap_err(),
        ]
    };

    // No signing key for the org: said before anything is read.
    for e in both(&*keys_for(&["org-001"])) {
        assert!(
            matches!(&e, Error::Key { source: KeyError::NoSigningKey { org }, .. } if org == "org-000"),
            "{e}"
        );
    }
    // A key that signed records of the org is missing (key 1; the build rotated to key 2
    // halfway): the records cannot be authenticated, which is not an integrity failure.
    for e in both(&WithoutKeyOne(keys.clone())) {
        assert!(
            matches!(
                &e,
                Error::Key {
                    source: KeyError::UnknownKey {
                        key_id: KeyId(1),
                        ..
                    },
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("integrity failure"), "{e}");
    }

    // A segment of a newer format (version 2, CRC fixed).
    let mar = seg_path(dir, "org-000", "2026-03");
    let original = fs::read(&mar).unwrap();
    let mut b = original.clone();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut b);
    fs::write(&mar, &b).unwrap();
    for e in both(&*keys) {
        match &e {
            Error::UnsupportedFormat { file, source } => {
                assert_eq!(file, &mar);
                assert!(source.needs_newer_reader(), "{source}");
            }
            other => panic!("not UnsupportedFormat: {other}"),
        }
    }
    fs::write(&mar, &original).unwrap();

    // An index of a newer format.
    let idx = idx_path(dir, "org-000", "2026-02");
    let mut b = fs::read(&idx).unwrap();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_index_crc(&mut b);
    fs::write(&idx, &b).unwrap();
    for e in both(&*keys) {
        match &e {
            Error::UnsupportedFormat { file, .. } => assert_eq!(file, &idx),
            other => panic!("not UnsupportedFormat: {other}"),
        }
    }
    fs::remove_file(&idx).unwrap();

    // Control: everything restored (the index is derived data), it signs.
    make_checkpoint(dir, &a, &*keys).unwrap();
}
