//! Guards against `sudo auditlog keys new` taking an application's keyring away from it: the
//! rotation renamed a new file of root's (mode 0600) over the key file, and created the lock
//! file as root's (0600) when there was none, so the application, running as its own user,
//! could neither lock nor read its keys any more (no signing, no verification) until
//! someone gave the files back. The key file and its lock file keep the key file's owner.
//!
//! Needs root and `setpriv` (to act as uid 65534); skipped, saying so, without them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use auditlog::{KeyId, KeyProvider, Keyring};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_auditlog");

#[test]
fn a_rotation_by_root_leaves_the_keyring_to_its_owner() {
    if !can_run_as_nobody() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("app");
    std::fs::create_dir(&home).unwrap();
    let ring = home.join("keys.json");
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The keyring handed to the application's user, without its lock file (copied in).
    std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&ring, Some(65534), Some(65534)).unwrap();
    std::fs::remove_file(home.join("keys.json.lock")).unwrap();

    // Root rotates it.
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["keys.json", "keys.json.lock"] {
        let m = std::fs::metadata(home.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
        assert_eq!(m.mode() & 0o777, 0o600, "{f}");
    }

    // The application's user still rotates (and so reads and locks) it.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg("--keyring")
        .arg(&ring)
        .args(["keys", "new", "--org", "acme"])
        .env_remove("AUDITLOG_DIR")
        .env_remove("AUDITLOG_KEYRING")
        .output()
        .unwrap();
    assert!(out.status.success(), "as uid 65534: {}", stderr(&out));
    let keys = Keyring::open(&ring).unwrap();
    assert_eq!(keys.signing_key(&org("acme")).unwrap().0, KeyId(3));
    for id in 1..=3 {
        assert!(keys.key(&org("acme"), KeyId(id)).unwrap().is_some());
    }
}
