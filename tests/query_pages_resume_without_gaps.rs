//! Paging: a client reading a query `limit` events at a time resumes after the last event
//! it got (`Query::after`, `query --after`), forward and reversed, and the pages together
//! are the whole result, without a gap or a duplicate, even when many events share one
//! `occurred_at` (a batch import stamps them alike). Before `after`, the only way on was
//! `since` = the last time seen: inclusive, it returned that time's events again (and a
//! page full of one time never advanced); one microsecond later, it skipped the rest of
//! them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::sync::Arc;

use auditlog::{Event, Keyring, Log, Timestamp};
use support::{auditlog_cli, event, org, stderr, stdout, ts};

/// 60 events at one instant at the end of February, 30 across the month boundary, a few out
/// of order, in two sessions (so both an index and a live-less tail are read).
fn log_with_ties() -> (tempfile::TempDir, Arc<Keyring>, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("log")).unwrap();
    let keys = Arc::new(Keyring::open_or_create(dir.path().join("keys.json")).unwrap());
    keys.rotate(&org("o")).unwrap();
    let tie = ts("2026-02-28T23:59:59.999999Z");
    let mut events = Vec::new();
    for i in 0..60 {
        let user = ["u1", "u2"][i % 2];
        events.push(event("o", tie, Some(user), "booking.imported", "r"));
    }
    for i in 0..30i64 {
        let t = Timestamp(ts("2026-02-28T23:00:00Z").0 + i * 240_000_000);
        let user = ["u1", "u2"][(i % 2) as usize];
        events.push(event("o", t, Some(user), "booking.created", "r"));
    }
    events.push(event("o", tie, Some("u1"), "booking.imported", "late"));
    events.push(event(
        "o",
        ts("2026-02-01"),
        Some("u1"),
        "booking.created",
        "early",
    ));
    for (k, half) in events.chunks(events.len() / 2 + 1).enumerate() {
        let mut o = support::never(&keys);
        o.index_interval = 256;
        let log = Log::open(dir.path().join("log"), o).unwrap();
        log.append_batch(half).unwrap();
        if k == 0 {
            log.close().unwrap();
        } else {
            log.sync().unwrap();
            drop(log);
        }
    }
    (dir, keys, events)
}

fn page(
    log: &Log,
    after: Option<(Timestamp, u64)>,
    limit: u64,
    reverse: bool,
    verify: bool,
    user: Option<&str>,
) -> Vec<(Timestamp, u64)> {
    let mut q = log.query(&org("o")).limit(limit);
    if let Some((t, s)) = after {
        q = q.after(t, s);
    }
    if reverse {
        q = q.reverse();
    }
    if !verify {
        q = q.unverified();
    }
    if let Some(u) = user {
        q = q.user(u);
    }
    q.run()
        .unwrap()
        .map(|r| {
            let v = r.unwrap();
            (v.event.occurred_at, v.seq)
        })
        .collect()
}

#[test]
fn pages_resumed_after_the_last_event_are_the_whole_result() {
    let (dir, keys, _) = log_with_ties();
    let log = Log::open_read_only(dir.path().join("log"), support::never(&keys)).unwrap();
    for reverse in [false, true] {
        for verify in [true, false] {
            for user in [None, Some("u1")] {
                let whole = page(&log, None, u64::MAX, reverse, verify, user);
                assert!(whole.len() > 40);
                for limit in [1, 7, 25] {
                    let mut got = Vec::new();
                    let mut after = None;
                    loop {
                        let p = page(&log, after, limit, reverse, verify, user);
                        assert!(p.len() as u64 <= limit);
                        let Some(&last) = p.last() else { break };
                        got.extend(p);
                        after = Some(last);
                        assert!(got.len() <= whole.len(), "pages do not end");
                    }
                    assert_eq!(
                        got, whole,
                        "reverse {reverse} verify {verify} user {user:?} limit {limit}"
                    );
                }
            }
        }
    }
}

#[test]
fn after_narrows_a_range_and_may_empty_it() {
    let (dir, keys, _) = log_with_ties();
    let log = Log::open_read_only(dir.path().join("log"), support::never(&keys)).unwrap();
    let whole = page(&log, None, u64::MAX, false, true, None);
    let mid = whole[40];
    // Resuming past since, inside [since, until).
    let got: Vec<_> = log
        .query(&org("o"))
        .since(ts("2026-02-28"))
        .until(ts("2026-03-01T00:30:00Z"))
        .after(mid.0, mid.1)
        .run()
        .unwrap()
        .map(|r| {
            let v = r.unwrap();
            (v.event.occurred_at, v.seq)
        })
        .collect();
    let want: Vec<_> = whole
        .iter()
        .copied()
        .filter(|&(t, _)| t < ts("2026-03-01T00:30:00Z"))
        .filter(|&k| k > mid)
        .collect();
    assert_eq!(got, want);
    // A resume point at or past until: nothing, and no error.
    let n = log
        .query(&org("o"))
        .until(ts("2026-02-28"))
        .after(mid.0, mid.1)
        .run()
        .unwrap()
        .count();
    assert_eq!(n, 0);
    // Reversed, a resume point before since: nothing.
    let n = log
        .query(&org("o"))
        .since(ts("2026-03-01"))
        .reverse()
        .after(mid.0, mid.1)
        .run()
        .unwrap()
        .count();
    assert_eq!(n, 0);
}

#[test]
fn the_cli_resumes_after_a_printed_event() {
    let (dir, keys, _) = log_with_ties();
    let keyring = dir.path().join("keys.json");
    let logdir = dir.path().join("log");
    let _ = &keys;
    for reverse in [false, true] {
        let base = |extra: &[&str]| {
            let mut args = vec!["query", "--org", "o"];
            if reverse {
                args.push("--reverse");
            }
            args.extend_from_slice(extra);
            auditlog_cli(Some(&logdir), Some(&keyring), &args)
        };
        let whole = base(&[]);
        assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
        let whole = stdout(&whole);
        let mut got = String::new();
        let mut after: Option<String> = None;
        loop {
            let mut extra = vec!["--limit", "9"];
            if let Some(a) = &after {
                extra.push("--after");
                extra.push(a);
            }
            let o = base(&extra);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let text = stdout(&o);
            let Some(last) = text.lines().last() else {
                break;
            };
            let v: serde_json::Value = serde_json::from_str(last).unwrap();
            after = Some(format!(
                "{},{}",
                v["occurred_at"].as_str().unwrap(),
                v["seq"].as_u64().unwrap()
            ));
            got.push_str(&text);
        }
        assert_eq!(got, whole);
    }
    for bad in [
        "2026-02-28",
        "x,1",
        "2026-02-28T00:00:00Z,",
        "2026-02-28T00:00:00Z,-1",
    ] {
        let o = auditlog_cli(
            Some(&logdir),
            Some(&keyring),
            ["query", "--org", "o", "--after", bad],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("--after"), "{bad}: {}", stderr(&o));
    }
}
