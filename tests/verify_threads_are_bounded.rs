//! `VerifyOptions::threads` asked for more threads than the OS grants (a pid or thread
//! limit: containers, RLIMIT_NPROC) made `verify` panic ("failed to spawn thread"), and
//! nothing bounded the count (the CLI's `--threads` takes up to 65,535). Now at most
//! `MAX_VERIFY_THREADS` run, the calling thread among them, and a thread the OS refuses is
//! done without.
//!
//! The limit is set on a child process run as uid 65534 (root ignores RLIMIT_NPROC); the
//! test is skipped, saying so, unless it runs as root with `setpriv`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::Path;
use std::process::Command;

use auditlog::verify::{VerifyOptions, verify};
use auditlog::{Log, Timestamp};
use support::{can_run_as_nobody, event, keys_for, never, ts};

const CHILD_ENV: &str = "AUDITLOG_VERIFY_THREADS_CHILD";

#[test]
fn verify_asking_for_more_threads_than_the_os_grants_still_verifies() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let opts = VerifyOptions {
            threads: Some(1000),
            ..VerifyOptions::default()
        };
        let r = verify(Path::new(&dir), None, &opts).unwrap();
        assert_eq!(r.files, 300);
        assert!(r.is_intact(), "{}", r.summary());
        println!("CHILD OK");
        return;
    }
    if !can_run_as_nobody() {
        eprintln!("SKIPPED: needs root and setpriv to run as uid 65534 under a thread limit");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let keys = keys_for(&["acme"]);
    let log = Log::open(&dir, never(&keys)).unwrap();
    let start = ts("2000-01-15").0;
    // 300 months: 300 segments, more than the limit below lets the child start threads.
    let events: Vec<_> = (0..300i64)
        .map(|m| {
            let at = Timestamp(start + m * 31 * 86_400_000_000);
            event("acme", at, Some("u"), "booking.created", "r")
        })
        .collect();
    log.append_batch(&events).unwrap();
    log.close().unwrap();
    for (cmd, args) in [("chmod", vec!["755"]), ("chown", vec!["-R", "65534:65534"])] {
        let ok = Command::new(cmd)
            .args(args)
            .arg(root.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "ulimit -u 40 && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" \
             --exact verify_asking_for_more_threads_than_the_os_grants_still_verifies \
             --nocapture --test-threads=1",
        )
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
