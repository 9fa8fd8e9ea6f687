//! Guards against writing into an archived month: once `<org>/<YYYY-MM>.cold` exists the
//! month is frozen, and an append to it must fail with `Error::MonthFrozen` (naming org and
//! month), create no segment, leave the month's existing segment byte for byte as it was,
//! and not take the rest of a batch or other months down with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::{Error, Event, Log, Options, Receipt};
use support::{assert_verifies, keys_for, month, org, scan_clean, ts, workload};

fn in_month(e: &Event, day: &str) -> Event {
    Event {
        org_id: "acme".into(),
        occurred_at: ts(day),
        ..e.clone()
    }
}

fn assert_frozen(r: Result<Receipt, Error>, m: &str) {
    match r {
        Err(Error::MonthFrozen { org, month: got }) => {
            assert_eq!(org, "acme");
            assert_eq!(got, month(m));
        }
        other => panic!("expected MonthFrozen for {m}, got {other:?}"),
    }
}

#[test]
fn appends_to_a_frozen_month_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = || Options::new(keys.clone());
    let proto = workload(20, 1, 10, 4);
    let mut sent: Vec<Receipt> = Vec::new();
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        for (i, e) in proto.iter().enumerate() {
            let day = if i % 2 == 0 {
                "2026-01-10"
            } else {
                "2026-02-10"
            };
            sent.push(log.append(&in_month(e, day)).unwrap());
        }
        log.close().unwrap();
    }
    let acme = dir.path().join("acme");
    let jan_seg = acme.join("2026-01.seg");
    let jan_bytes = fs::read(&jan_seg).unwrap();
    // Freeze January (which has a segment) and March (which has none yet).
    fs::write(acme.join("2026-01.cold"), b"").unwrap();
    fs::write(acme.join("2026-03.cold"), b"").unwrap();

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_frozen(log.append(&in_month(&proto[0], "2026-01-20")), "2026-01");
    assert_frozen(log.append(&in_month(&proto[1], "2026-03-05")), "2026-03");
    // Refused again on retry (the refusal is not a one-off).
    assert_frozen(log.append(&in_month(&proto[2], "2026-01-21")), "2026-01");
    // A batch touching a frozen month fails whole: its February event is not written.
    match log
        .append_batch(&[
            in_month(&proto[3], "2026-02-11"),
            in_month(&proto[4], "2026-03-11"),
        ])
        .as_ref()
        .map_err(Error::unbatched)
    {
        Err(Error::MonthFrozen { month: m, .. }) => assert_eq!(*m, month("2026-03")),
        other => panic!("expected MonthFrozen, got {other:?}"),
    }
    assert!(
        !acme.join("2026-03.seg").exists(),
        "no segment for a frozen month"
    );
    // Other months still take appends, continuing their seqs.
    let feb = log.append(&in_month(&proto[5], "2026-02-12")).unwrap();
    assert_eq!(feb.seq, 10);
    sent.push(feb);
    let apr = log.append(&in_month(&proto[6], "2026-04-01")).unwrap();
    assert_eq!(apr.seq, 0);
    sent.push(apr);
    log.close().unwrap();

    assert_eq!(
        fs::read(&jan_seg).unwrap(),
        jan_bytes,
        "frozen segment untouched"
    );
    let log = Log::open_read_only(dir.path(), opts()).unwrap();
    let read = scan_clean(&log, &org("acme"));
    assert_eq!(read.len(), sent.len());
    for (v, r) in read.iter().zip({
        let mut s = sent.clone();
        s.sort_by_key(|r| (r.month, r.seq));
        s
    }) {
        assert_eq!((v.month, v.seq, v.hash), (r.month, r.seq, r.hash));
    }
    assert_eq!(
        read.iter().filter(|v| v.month == month("2026-01")).count(),
        10
    );
    assert_verifies(dir.path(), &*keys);
}

/// A frozen month whose segment needs recovery (its index is gone) must not stop the whole
/// log from opening: the month takes no appends, so there is nothing to recover it for.
#[test]
fn a_frozen_month_with_a_stale_index_does_not_block_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = || Options::new(keys.clone());
    let proto = workload(6, 1, 10, 8);
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        for e in &proto[..3] {
            log.append(&in_month(e, "2026-01-10")).unwrap();
        }
        log.close().unwrap();
    }
    let acme = dir.path().join("acme");
    let jan_bytes = fs::read(acme.join("2026-01.seg")).unwrap();
    fs::remove_file(acme.join("2026-01.idx")).unwrap();
    fs::write(acme.join("2026-01.cold"), b"").unwrap();

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_frozen(log.append(&in_month(&proto[3], "2026-01-11")), "2026-01");
    let r = log.append(&in_month(&proto[4], "2026-02-01")).unwrap();
    assert_eq!(r.seq, 0);
    log.close().unwrap();
    assert_eq!(fs::read(acme.join("2026-01.seg")).unwrap(), jan_bytes);
    let log = Log::open_read_only(dir.path(), opts()).unwrap();
    assert_eq!(scan_clean(&log, &org("acme")).len(), 4);
    assert_verifies(dir.path(), &*keys);
}

/// An org whose most recently created segment is in a frozen month (an org idle for so long
/// that its last month was archived) can still start a new month, linked to the frozen one.
#[test]
fn a_new_month_after_a_frozen_latest_month() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = || Options::new(keys.clone());
    let proto = workload(6, 1, 10, 9);
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        for e in &proto[..3] {
            log.append(&in_month(e, "2026-01-10")).unwrap();
        }
        log.close().unwrap();
    }
    let acme = dir.path().join("acme");
    fs::write(acme.join("2026-01.cold"), b"").unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let r = log.append(&in_month(&proto[4], "2026-05-01")).unwrap();
    assert_eq!(r.seq, 0);
    assert_frozen(log.append(&in_month(&proto[5], "2026-01-12")), "2026-01");
    log.close().unwrap();
    let log = Log::open_read_only(dir.path(), opts()).unwrap();
    assert_eq!(scan_clean(&log, &org("acme")).len(), 4);
    assert_verifies(dir.path(), &*keys);
}
