//! A file or directory of the log that exists but cannot be read (permissions, I/O) is an
//! I/O error, never an absence: `verify` must not pass an org directory it could not list
//! (it once reported it INTACT and empty) nor skip an index it could not open, and recovery
//! must not rebuild, over an index it could not read, what may be the only evidence of
//! records since lost.
//!
//! Root reads anything, so each case runs in a child process as uid 65534 (`setpriv`) on a
//! log chowned to it; the cases are skipped, saying so, unless the test runs as root with
//! `setpriv` available.

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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::verify::{VerifyOptions, verify};
use auditlog::{Durability, Error, Keyring, Log, Options, RecoveryAction};
use support::*;

const CHILD_ENV: &str = "AUDITLOG_UNREADABLE_CHILD";

/// A closed log of two orgs, January, under `root/log`, its key file at `root/keys.json`.
fn build(root: &Path) -> PathBuf {
    let ring = root.join("keys.json");
    let keys = Arc::new(Keyring::open_or_create(&ring).unwrap());
    for o in ["org-000", "org-001"] {
        keys.rotate(&org(o)).unwrap();
    }
    let dir = root.join("log");
    let log = Log::open(&dir, Options::new(keys).durability(Durability::Never)).unwrap();
    for o in ["org-000", "org-001"] {
        log.append_batch(&january_of(o, 20, 3)).unwrap();
    }
    log.close().unwrap();
    dir
}

fn keys_in(root: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::open(root.join("keys.json")).unwrap())
}

/// What the child checks, by case name; panics on failure.
fn child(case: &str, root: &Path) {
    let dir = root.join("log");
    let keys = keys_in(root);
    let io = |r: &Result<(), Error>| matches!(r, Err(Error::Io { .. }));
    match case {
        "org_dir" | "index" => {
            let r = verify(&dir, Some(&*keys), &VerifyOptions::default()).map(|_| ());
            assert!(io(&r), "verify: {r:?}");
        }
        "recovery" | "headerless" => {
            // The log opens (one month's failed recovery does not stop the others, and is
            // reported), but the append that needs January's writer fails: nothing is
            // rebuilt over the index that could not be read, nothing moved or cut.
            let log = Log::open(&dir, Options::new(keys.clone())).unwrap();
            assert!(
                log.recovery_report()
                    .iter()
                    .any(|a| matches!(a, RecoveryAction::RecoveryFailed { .. })),
                "{:?}",
                log.recovery_report()
            );
            let r = log.append(&january_of("org-000", 1, 9)[0]).map(|_| ());
            assert!(io(&r), "append: {r:?}");
            log.append(&january_of("org-001", 1, 9)[0]).unwrap();
            log.close().unwrap();
        }
        "parent" => {
            // An existing log under a parent it may pass through but not list.
            let log = Log::open(&dir, Options::new(keys.clone())).unwrap();
            log.append(&january_of("org-000", 1, 9)[0]).unwrap();
            log.close().unwrap();
        }
        "checkpoint" => {
            // org-000 cannot be listed: an I/O error (exit 2), named on stderr, and the
            // orgs after it are still checkpointed (they were not: the first I/O error
            // ended the command).
            let o = auditlog_cli(Some(&dir), Some(&root.join("keys.json")), ["checkpoint"]);
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            let orgs: Vec<String> = stdout(&o)
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["org_id"].as_str().unwrap().to_string()
                })
                .collect();
            assert_eq!(orgs, ["org-001"], "{}", stderr(&o));
            assert!(stderr(&o).contains("org-000"), "{}", stderr(&o));
        }
        other => panic!("unknown case {other}"),
    }
}

/// Builds a log, lets `lock_out` take permissions away, and runs `case` as uid 65534.
/// Returns the log directory (and its scratch directory) for the parent's own checks, or
/// `None` if skipped.
fn run_as_nobody(
    test: &str,
    case: &str,
    lock_out: impl FnOnce(&Path),
) -> Option<(tempfile::TempDir, PathBuf)> {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        child(case, Path::new(&root));
        println!("CHILD OK");
        return None;
    }
    if !can_run_as_nobody() {
        eprintln!("SKIPPED: needs root and setpriv to run as uid 65534");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("case");
    fs::create_dir(&root).unwrap();
    let dir = build(&root);
    lock_out(&dir);
    // The tree goes to uid 65534 with its modes as `lock_out` left them.
    run_child_as_nobody(test, CHILD_ENV, &root);
    Some((tmp, dir))
}

fn no_access(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o000)).unwrap();
}

#[test]
fn verify_fails_on_an_org_directory_it_cannot_list() {
    run_as_nobody(
        "verify_fails_on_an_org_directory_it_cannot_list",
        "org_dir",
        |dir| no_access(&dir.join("org-001")),
    );
}

#[test]
fn verify_fails_on_an_index_it_cannot_open() {
    run_as_nobody("verify_fails_on_an_index_it_cannot_open", "index", |dir| {
        no_access(&idx_path(dir, "org-001", "2026-01"))
    });
}

#[test]
fn recovery_does_not_rebuild_over_an_index_it_cannot_read() {
    let before = std::cell::RefCell::new(Vec::new());
    let dir = run_as_nobody(
        "recovery_does_not_rebuild_over_an_index_it_cannot_read",
        "recovery",
        |dir| {
            // The log must need recovery: a record's worth of garbage after January's
            // last record makes its index lag the segment.
            let seg = seg_path(dir, "org-000", "2026-01");
            let mut b = fs::read(&seg).unwrap();
            b.extend_from_slice(&[0xAB; 40]);
            fs::write(&seg, b).unwrap();
            let idx = idx_path(dir, "org-000", "2026-01");
            *before.borrow_mut() = fs::read(&idx).unwrap();
            no_access(&idx);
        },
    );
    if let Some((_tmp, dir)) = dir {
        let idx = idx_path(&dir, "org-000", "2026-01");
        assert_eq!(fs::read(&idx).unwrap(), *before.borrow(), "index rewritten");
        assert_eq!(
            fs::metadata(&idx).unwrap().permissions().mode() & 0o777,
            0,
            "index replaced"
        );
    }
}

#[test]
fn recovery_does_not_move_a_headerless_segment_whose_index_it_cannot_read() {
    let before = std::cell::RefCell::new((Vec::new(), Vec::new()));
    let dir = run_as_nobody(
        "recovery_does_not_move_a_headerless_segment_whose_index_it_cannot_read",
        "headerless",
        |dir| {
            // January cut to 100 bytes (no header): with its index unread, it would pass
            // for a crash during creation, be moved aside and restart at seq 0.
            let seg = seg_path(dir, "org-000", "2026-01");
            let b = fs::read(&seg).unwrap();
            fs::write(&seg, &b[..100]).unwrap();
            let idx = idx_path(dir, "org-000", "2026-01");
            *before.borrow_mut() = (b[..100].to_vec(), fs::read(&idx).unwrap());
            no_access(&idx);
        },
    );
    if let Some((_tmp, dir)) = dir {
        let (seg, idx) = &*before.borrow();
        assert_eq!(
            &fs::read(seg_path(&dir, "org-000", "2026-01")).unwrap(),
            seg
        );
        assert_eq!(
            &fs::read(idx_path(&dir, "org-000", "2026-01")).unwrap(),
            idx
        );
    }
}

#[test]
fn an_existing_log_opens_under_a_parent_it_cannot_list() {
    run_as_nobody(
        "an_existing_log_opens_under_a_parent_it_cannot_list",
        "parent",
        |dir| {
            let parent = dir.parent().unwrap();
            fs::set_permissions(parent, fs::Permissions::from_mode(0o311)).unwrap();
        },
    );
}

#[test]
fn checkpoint_goes_on_past_an_org_it_cannot_read() {
    run_as_nobody(
        "checkpoint_goes_on_past_an_org_it_cannot_read",
        "checkpoint",
        |dir| no_access(&dir.join("org-000")),
    );
}
