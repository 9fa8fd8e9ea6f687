//! Guards the promise of `auditlog append --receipts`: a receipt is printed once its event
//! is durable, under every `--durability`, so that a caller resuming after the last receipt
//! loses nothing. Under `--durability never` receipts used to be printed while the events
//! were still in the process's buffer: when the final write and fsync at exit then failed,
//! the caller held receipts for events that were never stored. And a failure to close the
//! log replaced the message naming the bad line appending stopped at (where to resume).
//!
//! The failure is made with `ulimit -f` (RLIMIT_FSIZE, SIGXFSZ ignored): a write past 2 KiB
//! fails with EFBIG, after the segment's header but before its records are written.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_auditlog");

/// A scratch directory with a key file for `org-000` (made by `keys new`), the log's path
/// (not created) and an input file of 20 events of `org-000` followed by `tail`.
fn fixture(tail: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ring = tmp.path().join("keys.json");
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "org-000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut input = String::new();
    for e in workload(20, 1, 5, 3) {
        input.push_str(&serde_json::to_string(&e).unwrap());
        input.push('\n');
    }
    input.push_str(tail);
    let input_file = tmp.path().join("in.jsonl");
    std::fs::write(&input_file, input).unwrap();
    let dir = tmp.path().join("log");
    (tmp, dir, ring, input_file)
}

/// `auditlog --dir DIR --keyring RING append ARGS < INPUT`, its files limited to 2 KiB.
fn append_limited(dir: &Path, ring: &Path, input: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 2 && trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("--dir")
        .arg(dir)
        .arg("--keyring")
        .arg(ring)
        .arg("append")
        .args(args)
        .env_remove("AUDITLOG_DIR")
        .env_remove("AUDITLOG_KEYRING")
        .stdin(Stdio::from(std::fs::File::open(input).unwrap()))
        .output()
        .unwrap()
}

/// Events of the log at `dir`, as `stats` counts them.
fn stored_events(dir: &Path) -> u64 {
    let out = auditlog_cli(Some(dir), None, ["stats", "--json"]);
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["events"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

#[test]
fn no_receipt_is_printed_for_an_event_that_was_not_stored() {
    for durability in ["never", "interval", "always"] {
        let (_tmp, dir, ring, input) = fixture("");
        let out = append_limited(
            &dir,
            &ring,
            &input,
            &["--receipts", "--durability", durability],
        );
        let receipts = stdout(&out).lines().count() as u64;
        assert_eq!(out.status.code(), Some(2), "{durability}: {}", stderr(&out));
        let stored = stored_events(&dir);
        assert!(
            receipts <= stored,
            "--durability {durability}: {receipts} receipts printed, {stored} events stored\n{}",
            stderr(&out)
        );
    }
}

/// Without receipts, a bad line stops appending; the close that fails afterwards (the
/// buffered events cannot be written) still leaves the bad line named, and says the lines
/// before it may not be on disk.
#[test]
fn a_failed_close_keeps_the_line_appending_stopped_at() {
    let (_tmp, dir, ring, input) = fixture("not json\n");
    let out = append_limited(&dir, &ring, &input, &["--durability", "never"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 21: malformed JSON"), "{err}");
    assert!(err.contains("closing the log"), "{err}");
    assert!(err.contains("may not all be on disk"), "{err}");
}

/// Unlimited, `--durability never --receipts` still prints every receipt, and the events are
/// there.
#[test]
fn receipts_under_never_are_printed_for_every_event() {
    let (_tmp, dir, ring, input) = fixture("");
    let out = auditlog_command(Some(&dir), Some(&ring))
        .args(["append", "--receipts", "--durability", "never"])
        .stdin(Stdio::from(std::fs::File::open(&input).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 20);
    assert_eq!(stored_events(&dir), 20);
}
