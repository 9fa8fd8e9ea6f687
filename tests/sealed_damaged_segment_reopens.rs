//! Guards the crash (or failure) between sealing a damaged segment and creating its
//! continuation. Earlier versions sealed first: a crash in between left the damaged part
//! read-only (0444) as its month's latest part, which recovery then opened for writing,
//! failing with EACCES for any writer but root, so `Log::open` failed or every append to the
//! month did. Now the continuation is created first and the part sealed after, so a failed
//! creation leaves the part as it was, and recovery examines a part whose mode says it is
//! sealed without opening it for writing, so the state earlier versions could leave is
//! continued too.
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

use auditlog::{Durability, Error, Event, Keyring, Log, Options, RecoveryAction};
use support::{january_of, month, org, scan};

const ORG: &str = "acme";
const CHILD_ENV: &str = "AUDITLOG_SEALED_CHILD_DIR";

fn opts(keys: Arc<Keyring>) -> Options {
    Options::new(keys).durability(Durability::Always)
}

/// `n` realistic events of `ORG`, all in January 2026.
fn january(n: u64, seed: u64) -> Vec<Event> {
    january_of(ORG, n, seed)
}

/// A key file in `root` and a cleanly closed log in `root/log` with 10 January records, a
/// byte flipped in record 3 (the index still covers the file: the damage is found when the
/// month's writer is opened). Returns the log directory and part 0's path.
fn damaged_log(root: &Path) -> (PathBuf, PathBuf) {
    let keys = Arc::new(Keyring::open_or_create(root.join("keys.json")).unwrap());
    keys.rotate(&org(ORG)).unwrap();
    let dir = root.join("log");
    let log = Log::open(&dir, opts(keys.clone())).unwrap();
    log.append_batch(&january(10, 1)).unwrap();
    log.close().unwrap();
    let ro = Log::open_read_only(&dir, opts(keys)).unwrap();
    let (read, errs) = scan(&ro, &org(ORG));
    assert!(errs.is_empty());
    let victim = read[3].offset;
    let seg = dir.join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(victim + 100) as usize] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    (dir, seg)
}

fn keys_in(root: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::open_or_create(root.join("keys.json")).unwrap())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Opens the log, appends one January event, closes: the continuation takes it (seq 10).
fn reopen_and_append(root: &Path, dir: &Path) -> Vec<RecoveryAction> {
    let log = Log::open(dir, opts(keys_in(root))).unwrap();
    let r = log.append(&january(1, 9)[0]).unwrap();
    assert_eq!((r.month, r.seq), (month("2026-01"), 10));
    let report = log.recovery_report();
    log.close().unwrap();
    report
}

/// The state earlier versions left: part 0 sealed, no continuation, index lagging. The open
/// examines part 0 without writing it and continues it.
#[test]
fn a_sealed_latest_part_without_continuation_is_continued() {
    let root = tempfile::tempdir().unwrap();
    let (dir, seg) = damaged_log(root.path());
    fs::remove_file(dir.join(ORG).join("2026-01.idx")).unwrap();
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o444)).unwrap();
    let damaged = fs::read(&seg).unwrap();
    let report = reopen_and_append(root.path(), &dir);
    assert!(
        report.iter().any(|a| matches!(
            a,
            RecoveryAction::SegmentSealed { file, continuation, .. }
                if file == &seg && continuation == &dir.join(ORG).join("2026-01.1.seg")
        )),
        "{report:?}"
    );
    assert_eq!(fs::read(&seg).unwrap(), damaged);
    assert_eq!(mode(&seg), 0o444);
}

/// The same state, reopened by a writer that is not root (uid 65534, via `setpriv`), for
/// which opening a 0444 file for writing fails with EACCES. Skipped unless the test runs
/// as root with `setpriv` available.
#[test]
fn a_sealed_latest_part_without_continuation_is_continued_by_a_non_root_writer() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        let root = Path::new(&root);
        let report = reopen_and_append(root, &root.join("log"));
        println!("CHILD OK {}", report.len());
        return;
    }
    if !support::can_run_as_nobody() {
        eprintln!("SKIPPED: needs root and setpriv to run a writer as uid 65534");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("case");
    fs::create_dir(&root).unwrap();
    let (dir, seg) = damaged_log(&root);
    fs::remove_file(dir.join(ORG).join("2026-01.idx")).unwrap();
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o444)).unwrap();
    let damaged = fs::read(&seg).unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    support::run_child_as_nobody(
        "a_sealed_latest_part_without_continuation_is_continued_by_a_non_root_writer",
        CHILD_ENV,
        &root,
    );
    assert_eq!(fs::read(&seg).unwrap(), damaged);
    assert!(dir.join(ORG).join("2026-01.1.seg").exists());
}

/// A continuation whose creation fails leaves the damaged part as it was, neither sealed
/// nor changed: the next attempt (here in the same process, once the obstacle is gone)
/// finds the damage again and continues it. Earlier versions sealed before creating.
#[test]
fn a_failed_continuation_leaves_the_damaged_part_unsealed() {
    let root = tempfile::tempdir().unwrap();
    let (dir, seg) = damaged_log(root.path());
    let damaged = fs::read(&seg).unwrap();
    let log = Log::open(&dir, opts(keys_in(root.path()))).unwrap();
    // The continuation's name is taken (its `create_new` fails with EEXIST).
    let obstacle = dir.join(ORG).join("2026-01.1.seg");
    fs::create_dir(&obstacle).unwrap();
    let r = log.append(&january(1, 9)[0]);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_eq!(mode(&seg), 0o644, "sealed without a continuation");
    assert_eq!(fs::read(&seg).unwrap(), damaged);
    fs::remove_dir(&obstacle).unwrap();
    let r = log.append(&january(1, 9)[0]).unwrap();
    assert_eq!((r.month, r.seq), (month("2026-01"), 10));
    assert_eq!(mode(&seg), 0o444);
    assert_eq!(fs::read(&seg).unwrap(), damaged);
    log.close().unwrap();
}
