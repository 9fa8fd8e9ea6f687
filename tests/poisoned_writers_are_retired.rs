//! Writers poisoned by a failed write are retired like idle ones (concurrency review: they
//! were skipped, kept their descriptor and counted toward `max_open_writers` until the log
//! was reopened, so after failures in more (org, month) pairs than the limit every append
//! past twice it scanned all writers and closed nothing). Retired, they still refuse: every
//! later append to their segment fails with the same `Error::WriterFailed` (the segment is
//! never reopened and recovered in this process: after a failed write or fsync the page
//! cache may show bytes that are not on disk), and `sync` keeps reporting the failure.
//! After a reopen every acknowledged record is there and verifies.
//!
//! The failures are real: the test re-runs itself in a child process under `ulimit -f`
//! (RLIMIT_FSIZE) with SIGXFSZ ignored, so a `pwrite` past the limit fails with EFBIG, as a
//! full disk would make it fail. Nothing is timed: the background flusher may retire
//! writers at any moment, and every assertion holds whatever it did.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use auditlog::{Durability, Error, Keyring, Log, Options, OrgId};

const CHILD_ENV: &str = "AUDITLOG_POISON_RETIRED_CHILD_DIR";
/// Orgs whose January writer a failed write poisons: more than twice the limit.
const BAD: usize = 5;
/// Orgs appended to afterwards.
const FRESH: usize = 6;
const LIMIT: usize = 2;

fn bad(i: usize) -> String {
    format!("bad-{i}")
}

fn fresh(i: usize) -> String {
    format!("ok-{i}")
}

fn keys() -> Arc<Keyring> {
    // Deterministic keys, so that parent and child agree without sharing a file.
    let ring = Keyring::in_memory();
    let orgs = (0..BAD).map(bad).chain((0..FRESH).map(fresh));
    for (i, o) in orgs.enumerate() {
        let key = auditlog::Key::new(&[i as u8 + 1; 32]).unwrap();
        ring.add_key(&OrgId::new(&o).unwrap(), key, auditlog::Timestamp(0))
            .unwrap();
    }
    Arc::new(ring)
}

fn opts() -> Options {
    Options::new(keys())
        .durability(Durability::Always)
        .max_open_writers(LIMIT)
}

/// `n` events of `org` or fewer, all in January 2026 (the reference workload puts a few
/// out of order, into December), so that each org has one segment.
fn january(org: &str, n: u64, seed: u64) -> Vec<auditlog::Event> {
    let jan = support::month("2026-01");
    let mut events = support::january_of(org, n, seed);
    events.retain(|e| e.occurred_at.month() == Some(jan));
    events
}

/// Descriptors of this process open on a segment file of a `bad-*` org.
fn fds_on_bad_segments(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(dir) && t.to_string_lossy().contains("/bad-"))
        .count()
}

/// `WRITER_FAILED <cause>`, `OTHER <error>` or `OK` for a call's result (a batch's error
/// as the error of the event it names).
fn kind<T>(r: Result<T, Error>) -> String {
    match r.as_ref().map_err(Error::unbatched) {
        Ok(_) => "OK".into(),
        Err(Error::WriterFailed { cause, .. }) => format!("WRITER_FAILED {cause}"),
        Err(e) => format!("OTHER {e}"),
    }
}

/// The child: poisons every bad org's writer by appending until the size limit makes a
/// write fail, then appends to fresh orgs, and reports what it sees.
fn child(dir: &str) {
    let log = Log::open(dir, opts()).unwrap();
    let mut causes = Vec::new();
    for b in 0..BAD {
        let events = january(&bad(b), 4000, b as u64);
        let mut failed = None;
        for chunk in events.chunks(20) {
            match log.append_batch(chunk) {
                Ok(rs) => {
                    for r in rs {
                        println!("ACK {} {} {} {}", r.org_id, r.month, r.seq, r.hash);
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let first = failed.expect("the size limit must make an append fail");
        println!(
            "FIRST {} {}",
            bad(b),
            matches!(first.unbatched(), Error::Io { .. })
        );
        // What the poisoned writer, still open, answers.
        causes.push(kind(log.append(&events[0])));
        println!("OPEN_ANSWER {} {}", bad(b), causes[b]);
    }
    for f in 0..FRESH {
        for r in log.append_batch(&january(&fresh(f), 3, 99)).unwrap() {
            println!("ACK {} {} {} {}", r.org_id, r.month, r.seq, r.hash);
        }
    }
    println!("SYNC {}", kind(log.sync()));
    println!("OPEN_WRITERS {}", log.open_writers());
    println!("FDS {}", fds_on_bad_segments(Path::new(dir)));
    for (b, cause) in causes.iter().enumerate() {
        let answer = kind(log.append(&january(&bad(b), 2, 7)[0]));
        println!("LATER {} {}", bad(b), answer == *cause);
        let batch = log.append_batch(&january(&bad(b), 2, 8));
        println!("LATER_BATCH {} {}", bad(b), kind(batch) == *cause);
    }
    println!("FDS_AFTER {}", fds_on_bad_segments(Path::new(dir)));
    println!("RECOVERED {}", log.recovery_report().len());
    println!("SYNC_AGAIN {}", kind(log.sync()));
    println!("CLOSE {}", kind(log.close()));
    std::process::exit(0);
}

#[test]
fn poisoned_writers_are_retired_and_still_refuse() {
    // 128 KiB per file: a few hundred records per org, then EFBIG.
    let Some((_tmp, dir, stdout)) = support::in_child_with_file_size_limit(
        "poisoned_writers_are_retired_and_still_refuse",
        128,
        CHILD_ENV,
        child,
    ) else {
        return;
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let value = |key: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .collect()
    };
    assert_eq!(
        value("FIRST"),
        (0..BAD)
            .map(|b| format!("{} true", bad(b)))
            .collect::<Vec<_>>(),
        "{stdout}"
    );
    assert!(
        value("OPEN_ANSWER")
            .iter()
            .all(|a| a.contains(" WRITER_FAILED ")),
        "{stdout}"
    );
    assert!(value("SYNC")[0].starts_with("WRITER_FAILED"), "{stdout}");
    let open: usize = value("OPEN_WRITERS")[0].parse().unwrap();
    assert!(open <= LIMIT, "{open} writers open after sync: {stdout}");
    assert_eq!(
        value("FDS"),
        ["0"],
        "descriptors of poisoned segments: {stdout}"
    );
    let same: Vec<String> = (0..BAD).map(|b| format!("{} true", bad(b))).collect();
    assert_eq!(value("LATER"), same, "{stdout}");
    assert_eq!(value("LATER_BATCH"), same, "{stdout}");
    assert_eq!(value("FDS_AFTER"), ["0"], "{stdout}");
    assert_eq!(
        value("RECOVERED"),
        ["0"],
        "a poisoned segment was recovered: {stdout}"
    );
    assert!(
        value("SYNC_AGAIN")[0].starts_with("WRITER_FAILED"),
        "{stdout}"
    );
    assert!(value("CLOSE")[0].starts_with("WRITER_FAILED"), "{stdout}");

    // Reopened without the limit: every acknowledged record is there and verifies.
    let mut acks: BTreeMap<String, Vec<(String, u64, String)>> = BTreeMap::new();
    for a in value("ACK") {
        let f: Vec<&str> = a.split(' ').collect();
        acks.entry(f[0].to_string()).or_default().push((
            f[1].to_string(),
            f[2].parse().unwrap(),
            f[3].to_string(),
        ));
    }
    assert_eq!(acks.len(), BAD + FRESH, "{stdout}");
    let log = Log::open(&dir, Options::new(keys())).unwrap();
    for (org, acked) in &acks {
        let read: Vec<_> = log
            .scan(&OrgId::new(org).unwrap())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for (month, seq, hash) in acked {
            let got = read
                .iter()
                .find(|v| v.month.to_string() == *month && v.seq == *seq)
                .unwrap_or_else(|| panic!("{org} {month} seq {seq} acknowledged and lost"));
            assert_eq!(&got.hash.to_hex(), hash, "{org} {month} seq {seq}");
        }
    }
    // The poisoned segments take appends again once reopened.
    for b in 0..BAD {
        let mut e = january(&bad(b), 2, 5)[0].clone();
        // After the org's records (no timestamp anomaly).
        e.occurred_at = support::ts("2026-01-31T23:59:59Z");
        log.append(&e).unwrap();
    }
    log.close().unwrap();
    support::assert_only_quarantined_data(&dir, &*keys());
}
