//! Guards against `auditlog keys new` losing keys when several run at once on one keyring:
//! each process used to read the file, add its key and rename a fixed `keys.tmp` over it, so
//! one writer's key vanished under another's rename (or the rename failed with "No such file
//! or directory") although the process had printed success — and a lost key leaves every
//! record signed with it unverifiable. Every process that reports success must find its key
//! in the file afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::process::Command;

use auditlog::{KeyId, KeyProvider, Keyring};
use support::*;

#[test]
fn parallel_keys_new_keep_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keys.json");
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "seed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_auditlog"))
                .arg("--keyring")
                .arg(&ring)
                .args(["keys", "new", "--org", &format!("org-{i}")])
                .env_remove("AUDITLOG_DIR")
                .env_remove("AUDITLOG_KEYRING")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "org-{i}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("org org-{i}: signing key 1")));
    }
    let keys = Keyring::open(&ring).unwrap();
    for i in 0..n {
        let o = org(&format!("org-{i}"));
        assert_eq!(keys.signing_key(&o).unwrap().0, KeyId(1), "org-{i}");
    }
    assert!(keys.key(&org("seed"), KeyId(1)).unwrap().is_some());
    // Nothing left behind but the keyring and its lock file.
    assert_eq!(file_names(dir.path()), ["keys.json", "keys.json.lock"]);
}
