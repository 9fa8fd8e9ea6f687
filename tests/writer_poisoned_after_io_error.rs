//! Guards invariant 7 (the PostgreSQL "fsyncgate" lesson): after a failed write the segment
//! writer must not carry on as if the data were durable. The failed append must return an
//! error, every later append to that segment must fail with `Error::WriterFailed` (never a
//! silent retry), and reopening the log must recover a consistent log holding every record
//! that was acknowledged.
//!
//! The write failure is real: the test re-runs itself in a child process under
//! `ulimit -f` (RLIMIT_FSIZE) with SIGXFSZ ignored, so `pwrite` past the limit fails with
//! EFBIG, exactly as a full or failing disk would make it fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::sync::Arc;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Error, Keyring, Log, Options, OrgId};

const CHILD_ENV: &str = "AUDITLOG_POISON_CHILD_DIR";

fn keys() -> Arc<Keyring> {
    // A deterministic key, so parent and child agree without sharing a file.
    let ring = Keyring::in_memory();
    let key = auditlog::Key::new(&[42u8; 32]).unwrap();
    ring.add_key(&OrgId::new("org-000").unwrap(), key, auditlog::Timestamp(0))
        .unwrap();
    Arc::new(ring)
}

fn events() -> Vec<auditlog::Event> {
    Workload::new(WorkloadConfig {
        events: 2000,
        orgs: 1,
        days: 1,
        ..WorkloadConfig::default()
    })
    .collect()
}

/// The child: append until the file-size limit makes a write fail, then try again.
fn child(dir: &str) {
    let log = Log::open(dir, Options::new(keys()).durability(Durability::Always)).unwrap();
    let mut acked = 0;
    let mut first_error = None;
    for e in events() {
        match log.append(&e) {
            Ok(r) => {
                println!("ACK {} {}", r.seq, r.hash);
                acked += 1;
            }
            Err(err) => {
                first_error = Some(err);
                break;
            }
        }
    }
    let first = first_error.expect("the size limit must make an append fail");
    println!("FIRST {}", matches!(first, Error::Io { .. }));
    // Every later append to the same segment must fail without touching the disk.
    for e in events().iter().skip(acked + 1).take(3) {
        match log.append(e) {
            Ok(_) => println!("LATER ok"),
            Err(Error::WriterFailed { .. }) => println!("LATER writer_failed"),
            Err(other) => println!("LATER other {other}"),
        }
    }
    // Exit without close(): the writer is poisoned, and the parent recovers.
    std::mem::forget(log);
    std::process::exit(0);
}

#[test]
fn writer_refuses_appends_after_a_failed_write() {
    // 200 KiB limit: room for a few hundred records, then EFBIG.
    let Some((_tmp, dir, stdout)) = support::in_child_with_file_size_limit(
        "writer_refuses_appends_after_a_failed_write",
        200,
        CHILD_ENV,
        child,
    ) else {
        return;
    };
    let acks: Vec<(u64, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(|l| {
            let (s, h) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), h.to_string())
        })
        .collect();
    assert!(
        acks.len() > 10,
        "expected some appends before the limit: {stdout}"
    );
    assert!(
        stdout.contains("FIRST true"),
        "first failure must be an I/O error: {stdout}"
    );
    let later: Vec<&str> = stdout.lines().filter(|l| l.starts_with("LATER")).collect();
    assert_eq!(later, vec!["LATER writer_failed"; 3], "{stdout}");

    // Reopen without the limit: recovery keeps every acknowledged record, the chain verifies.
    let log = Log::open(&dir, Options::new(keys())).unwrap();
    let org = OrgId::new("org-000").unwrap();
    let read: Vec<_> = log.scan(&org).unwrap().map(|r| r.unwrap()).collect();
    assert!(read.len() >= acks.len());
    for (seq, hash) in &acks {
        let got = read
            .iter()
            .find(|v| v.seq == *seq)
            .expect("acknowledged record lost");
        assert_eq!(&got.hash.to_hex(), hash);
    }
    // And the segment accepts appends again after the reopen.
    let more = events();
    log.append(&more[0]).unwrap();
    log.close().unwrap();
    support::assert_only_quarantined_data(&dir, &*keys());
}
