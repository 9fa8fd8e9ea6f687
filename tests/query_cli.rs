//! `auditlog query`: JSON lines (event + month + seq + hash) equal to the library's answer,
//! a table, and clear errors with exit 2 for bad arguments and unknown orgs; exit 1 with a
//! finding on stderr when a record in range fails verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use auditlog::{Durability, Keyring, Log, Options, OrgId, SegmentReader};
use support::{
    auditlog_cli, org, resource_id_start, segment_files, stderr, stdout, ts, workload_from,
};

fn cli(dir: &Path, keys: &Path, args: &[&str]) -> Output {
    auditlog_cli(Some(dir), Some(keys), std::iter::once(&"query").chain(args))
}

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<Keyring>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let keys_path = tmp.path().join("keys.json");
    let keys = Arc::new(Keyring::open_or_create(&keys_path).unwrap());
    for o in ["org-000", "org-001"] {
        keys.rotate(&org(o)).unwrap();
    }
    let dir = tmp.path().join("log");
    let log = Log::open(
        &dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    for c in workload_from(2000, 2, 30, 4, "2026-03-03").chunks(500) {
        log.append_batch(c).unwrap();
    }
    log.close().unwrap();
    (tmp, dir, keys_path, keys)
}

#[test]
fn json_lines_match_the_library() {
    let (_tmp, dir, keys_path, keys) = setup();
    let o = org("org-000");
    let log = Log::open_read_only(&dir, Options::new(keys)).unwrap();
    let want: Vec<auditlog::VerifiedEvent> = log
        .query(&o)
        .since(ts("2026-03-10"))
        .until(ts("2026-03-20T12:00:00Z"))
        .action("booking.*")
        .run()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(want.len() > 10);
    let out = cli(
        &dir,
        &keys_path,
        &[
            "--org",
            "org-000",
            "--since",
            "2026-03-10",
            "--until",
            "2026-03-20T12:00:00Z",
            "--action",
            "booking.*",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), want.len());
    for (l, w) in lines.iter().zip(&want) {
        assert_eq!(l["seq"], w.seq);
        assert_eq!(l["month"], w.month.to_string());
        assert_eq!(l["hash"], w.hash.to_hex());
        let mut ev = l.clone();
        for k in ["seq", "month", "hash"] {
            ev.as_object_mut().unwrap().remove(k);
        }
        let ev: auditlog::Event = serde_json::from_value(ev).unwrap();
        assert_eq!(ev, w.event);
    }

    // Table, reverse, limit.
    let out = cli(
        &dir,
        &keys_path,
        &[
            "--org",
            "org-000",
            "--reverse",
            "--limit",
            "3",
            "--format",
            "table",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.starts_with("occurred_at"));
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let (_tmp, dir, keys_path, _) = setup();
    for (args, says) in [
        (vec!["--org", "nobody"], "unknown org nobody"),
        (
            vec![
                "--org",
                "org-000",
                "--since",
                "2026-04-01",
                "--until",
                "2026-03-01",
            ],
            "is before since",
        ),
        (
            vec!["--org", "org-000", "--since", "yesterday"],
            "invalid time",
        ),
        (vec!["--org", "org-000", "--action", "Refund"], "action"),
        (vec!["--org", "bad/org"], "org_id"),
    ] {
        let out = cli(&dir, &keys_path, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_tampered_record_exits_1_unless_unverified() {
    let (_tmp, dir, keys_path, keys) = setup();
    let seg = segment_files(&dir, "org-001").remove(0);
    let recs: Vec<_> = SegmentReader::open(&seg, keys)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let victim = &recs[recs.len() / 2];
    // Change a character of its resource_id and fix the CRC: only the tag catches it.
    let mut bytes = std::fs::read(&seg).unwrap();
    let o = victim.offset as usize;
    let len = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let e = &victim.event;
    let rid = resource_id_start(e);
    bytes[o + rid + 4] ^= 0x01;
    let crc = crc32fast::hash(&bytes[o + 8..o + len]);
    bytes[o + 4..o + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, bytes).unwrap();
    let day = victim.event.occurred_at.to_string();
    let args = [
        "--org",
        "org-001",
        "--since",
        "2026-03-01",
        "--until",
        "2026-05-01",
    ];
    let out = cli(&dir, &keys_path, &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("byte {}", victim.offset)), "{err}");
    assert!(err.contains(&format!("seq {}", victim.seq)), "{err} {day}");
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(n > recs.len() / 2);
    // Unverified: no finding, and the altered record is printed too.
    let mut un = args.to_vec();
    un.push("--unverified");
    let out = cli(&dir, &keys_path, &un);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n + 1);
    let _ = OrgId::new("x");
}

/// The wrong directory, or an org directory replaced by a symbolic link, is said so, exit
/// 1, as verify and stats say it. The directory above the log, queried for the org `log`
/// (the log's own directory), returned nothing, exit 0; a linked org was "unknown", exit 2.
#[test]
fn a_directory_that_is_not_a_log_and_a_linked_org_are_findings() {
    let (tmp, dir, keys_path, _) = setup();
    let above = tmp.path();
    let o = cli(above, &keys_path, &["--org", "log", "--unverified"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a log directory"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());

    let real = tmp.path().join("org-001-real");
    std::fs::rename(dir.join("org-001"), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join("org-001")).unwrap();
    let o = cli(&dir, &keys_path, &["--org", "org-001"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a symbolic link"), "{}", stderr(&o));
    // The other org is still read.
    let o = cli(&dir, &keys_path, &["--org", "org-000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).is_empty());
}
