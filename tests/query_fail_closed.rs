//! A verified query never passes over in silence what it cannot read or check: a segment cut
//! below its header or gone while an index of it says it held records, a segment without a
//! readable header (unless a live writer is creating it), an index that may be authentic
//! but cannot be checked and says the segment was longer; and records whose key is missing
//! make one error per segment and key id, not one per record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use auditlog::verify::{FindingKind, VerifyOptions, verify};
use auditlog::{
    Durability, Error, Event, IntegrityKind, Key, KeyError, KeyId, KeyProvider, Keyring, Log,
    Options, OrgId, Timestamp,
};
use support::{copy_dir, index_of, keys_for, org, records, run_query, seg_path, ts, workload_from};

const ORG: &str = "org-000";

fn opts(keys: Arc<dyn KeyProvider>) -> Options {
    Options::new(keys).durability(Durability::Never)
}

/// A closed log of org-000 from 2026-01-05 over 80 days (January to March), and its keys.
fn three_months() -> (tempfile::TempDir, Arc<Keyring>, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let events = workload_from(3000, 1, 80, 7, "2026-01-05");
    let log = Log::open(dir.path(), opts(keys.clone())).unwrap();
    for c in events.chunks(500) {
        log.append_batch(c).unwrap();
    }
    log.close().unwrap();
    (dir, keys, events)
}

fn copy_of(base: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_dir(base, to.path());
    to
}

fn cut(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn in_month(events: &[Event], m: &str) -> usize {
    let (from, to) = (ts(&format!("{m}-01")), month_end(m));
    events
        .iter()
        .filter(|e| e.occurred_at >= from && e.occurred_at < to)
        .count()
}

fn month_end(m: &str) -> Timestamp {
    m.parse::<auditlog::Month>().unwrap().end()
}

fn feb(log: &Log) -> auditlog::Query<'_> {
    log.query(&org(ORG))
        .since(ts("2026-02-01"))
        .until(ts("2026-03-01"))
}

/// Issue: a segment cut below its header's 256 bytes made a verified query return nothing
/// for its month, with no error, although its signed index said it held 559,505 bytes; at
/// 256 bytes or more the same cut was reported. Every length below the header is reported
/// the same way now, in either direction, and the other months are returned whole.
/// `Log::scan` decides about a segment shorter than its header as the query does: it
/// passed over every one of them without a word, also one its signed index says held
/// records, and a headerless one no live writer is creating.
#[test]
fn scan_reports_a_segment_cut_below_its_header_as_the_query_does() {
    let (base, keys, events) = three_months();
    let d = copy_of(base.path());
    let seg = seg_path(d.path(), ORG, "2026-02");
    let ix = index_of(&seg);
    cut(&seg, 100);
    let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (ok, errs): (Vec<_>, Vec<_>) = log.scan(&org(ORG)).unwrap().partition(|r| r.is_ok());
    assert_eq!(
        ok.len(),
        in_month(&events, "2026-01") + in_month(&events, "2026-03")
    );
    match errs.as_slice() {
        [
            Err(Error::Integrity {
                file,
                kind: IntegrityKind::Truncated { covered_len, .. },
                ..
            }),
        ] => {
            assert_eq!(file, &seg);
            assert_eq!(*covered_len, ix.covered_len);
        }
        other => panic!("{other:#?}"),
    }
    // Without its index, and no writer live: damage, not an empty month.
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    let errs: Vec<_> = log
        .scan(&org(ORG))
        .unwrap()
        .filter_map(Result::err)
        .collect();
    assert!(
        matches!(errs.as_slice(), [Error::Corrupt { file, .. }] if file == &seg),
        "{errs:#?}"
    );
}

#[test]
fn a_segment_cut_below_its_header_is_reported_when_its_signed_index_covers_more() {
    let (base, keys, events) = three_months();
    let seg = seg_path(base.path(), ORG, "2026-02");
    let ix = index_of(&seg);
    assert!(ix.covered_len > 256 && ix.record_count > 0);
    for len in [0u64, 100, 255, 256] {
        let d = copy_of(base.path());
        let seg = seg_path(d.path(), ORG, "2026-02");
        cut(&seg, len);
        let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
        for reverse in [false, true] {
            let q = if reverse {
                feb(&log).reverse()
            } else {
                feb(&log)
            };
            let (v, e, _) = run_query(q);
            assert!(v.is_empty(), "{len}: {} events", v.len());
            match e.as_slice() {
                [
                    Error::Integrity {
                        file,
                        offset,
                        kind:
                            IntegrityKind::Truncated {
                                length,
                                covered_len,
                                records,
                            },
                        ..
                    },
                ] => {
                    assert_eq!(file, &seg);
                    assert_eq!((*offset, *length), (len, len));
                    assert_eq!((*covered_len, *records), (ix.covered_len, ix.record_count));
                }
                other => panic!("{len} bytes, reverse {reverse}: {other:#?}"),
            }
        }
        // The whole range: January and March in full, and the one error for February.
        let (v, e, _) = run_query(log.query(&org(ORG)));
        assert_eq!(e.len(), 1, "{len}: {e:#?}");
        assert_eq!(
            v.len(),
            in_month(&events, "2026-01") + in_month(&events, "2026-03"),
            "{len}"
        );
    }
}

/// Without an index, a segment shorter than its header is damage (`verify`: `torn_tail`),
/// reported as `Error::Corrupt`, unless it is the latest part of its month while a writer
/// holds the log's lock: a segment being created has no header yet (`verify` passes it the
/// same way).
#[test]
fn a_headerless_segment_without_an_index_is_damage_unless_a_live_writer_creates_it() {
    let (base, keys, events) = three_months();
    let d = copy_of(base.path());
    let seg = seg_path(d.path(), ORG, "2026-02");
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    cut(&seg, 100);
    let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (v, e, _) = run_query(feb(&log));
    assert!(v.is_empty());
    assert!(
        matches!(e.as_slice(), [Error::Corrupt { file, .. }] if *file == seg),
        "{e:#?}"
    );

    // A live writer, and a segment of a month it has not written, as it is when the writer
    // has just created the file: no header yet.
    let d = copy_of(base.path());
    let writer = Log::open(d.path(), opts(keys.clone())).unwrap();
    let april = seg_path(d.path(), ORG, "2026-04");
    std::fs::File::create(&april).unwrap();
    let reader = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    for log in [&reader, &writer] {
        let (v, e, _) = run_query(log.query(&org(ORG)));
        assert!(e.is_empty(), "{e:#?}");
        assert_eq!(v.len(), events.len());
    }
    // The writer gone, nothing is creating it: its missing header is damage.
    writer.close().unwrap();
    let (v, e, _) = run_query(reader.query(&org(ORG)));
    assert_eq!(v.len(), events.len());
    assert!(
        matches!(e.as_slice(), [Error::Corrupt { file, .. }] if *file == april),
        "{e:#?}"
    );
}

/// Beside a live writer only the latest part of a month can be a segment being created: a
/// writer starts a month's next part only after the one before it has a header. An earlier
/// part without one is damage to `verify` as to the query. `verify` passed it over (the
/// query reported it) whenever a writer was live.
#[test]
fn beside_a_live_writer_only_the_latest_part_may_lack_its_header() {
    let (base, keys, events) = three_months();
    let d = copy_of(base.path());
    let writer = Log::open(d.path(), opts(keys.clone())).unwrap();
    // April: part 0 cut short, part 1 as it is just after its creation.
    let (part0, part1) = (
        seg_path(d.path(), ORG, "2026-04"),
        seg_path(d.path(), ORG, "2026-04.1"),
    );
    std::fs::write(&part0, [0u8; 100]).unwrap();
    std::fs::File::create(&part1).unwrap();
    let reader = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (v, e, _) = run_query(reader.query(&org(ORG)));
    assert_eq!(v.len(), events.len());
    assert!(
        matches!(e.as_slice(), [Error::Corrupt { file, .. }] if *file == part0),
        "{e:#?}"
    );
    let report = verify(d.path(), Some(&*keys), &VerifyOptions::default()).unwrap();
    assert!(report.live_writer);
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.file.clone()))
        .collect();
    assert_eq!(
        found,
        [(FindingKind::ChecksumCorruption, part0)],
        "{report:#?}"
    );
    drop(writer);
}

/// A signed index covering more than a segment has is evidence of removed records, even
/// beside a live writer: a writer writes an index only over a header and records already
/// durable, so no segment being created has one.
#[test]
fn a_cut_segment_with_a_signed_index_is_reported_beside_a_live_writer() {
    let (base, keys, _) = three_months();
    let d = copy_of(base.path());
    let writer = Log::open(d.path(), opts(keys.clone())).unwrap();
    let seg = seg_path(d.path(), ORG, "2026-02");
    cut(&seg, 0);
    let reader = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (v, e, _) = run_query(feb(&reader));
    assert!(v.is_empty());
    assert!(
        matches!(
            e.as_slice(),
            [Error::Integrity { file, kind: IntegrityKind::Truncated { length: 0, .. }, .. }]
                if *file == seg
        ),
        "{e:#?}"
    );
    drop(writer);
}

/// A segment file gone while its signed index remains: the month is not empty, it lost a
/// segment (`verify`: `missing_segment`).
#[test]
fn a_missing_segment_whose_signed_index_remains_is_reported() {
    let (base, keys, events) = three_months();
    let d = copy_of(base.path());
    let seg = seg_path(d.path(), ORG, "2026-02");
    std::fs::remove_file(&seg).unwrap();
    let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    for reverse in [false, true] {
        let q = log.query(&org(ORG));
        let (v, e, _) = run_query(if reverse { q.reverse() } else { q });
        assert_eq!(
            v.len(),
            in_month(&events, "2026-01") + in_month(&events, "2026-03")
        );
        assert!(
            matches!(
                e.as_slice(),
                [Error::Integrity { file, kind: IntegrityKind::IndexMismatch { what }, .. }]
                    if *file == seg && what.contains("missing")
            ),
            "{e:#?}"
        );
    }
}

/// A provider that has every key of `inner` but `hidden`, and counts the lookups of keys.
/// Both can be changed while a log uses it (a key loaded late, a key service back up).
struct Hiding {
    inner: Arc<Keyring>,
    hidden: Mutex<Option<KeyId>>,
    /// Fail every lookup instead.
    failing: AtomicBool,
    lookups: AtomicU64,
}

impl Hiding {
    fn new(inner: &Arc<Keyring>, hidden: Option<KeyId>, failing: bool) -> Arc<Hiding> {
        Arc::new(Hiding {
            inner: inner.clone(),
            hidden: Mutex::new(hidden),
            failing: AtomicBool::new(failing),
            lookups: AtomicU64::new(0),
        })
    }

    /// From now on, has every key and answers every lookup.
    fn heal(&self) {
        *self.hidden.lock().unwrap() = None;
        self.failing.store(false, Ordering::Relaxed);
    }
}

impl KeyProvider for Hiding {
    fn signing_key(&self, org: &OrgId) -> Result<(KeyId, Key), KeyError> {
        self.inner.signing_key(org)
    }

    fn key(&self, org: &OrgId, id: KeyId) -> Result<Option<Key>, KeyError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(KeyError::Provider("key service unavailable".into()));
        }
        if Some(id) == *self.hidden.lock().unwrap() {
            return Ok(None);
        }
        self.inner.key(org, id)
    }
}

fn files_of(e: &[Error]) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = e
        .iter()
        .map(|e| match e {
            Error::Integrity { file, .. } => file.clone(),
            other => panic!("{other:#?}"),
        })
        .collect();
    f.sort();
    f
}

/// Issue: a query of an org whose key the provider lacks gave one error per record (1,323
/// lines in the CLI, reading on past `--limit 2`). Now each segment gives one error per key
/// id it cannot check, at its first such record, and the rest are counted; the same whatever
/// the threads, the direction or the limit.
#[test]
fn a_missing_key_is_one_error_per_segment_and_key_id() {
    let (base, keys, events) = three_months();
    let segs: Vec<PathBuf> = ["2026-01", "2026-02", "2026-03"]
        .iter()
        .map(|m| seg_path(base.path(), ORG, m))
        .collect();
    let lacking = Hiding::new(&keys, Some(KeyId(1)), false);
    let log = Log::open_read_only(base.path(), opts(lacking.clone())).unwrap();
    for threads in [1, 4] {
        for reverse in [false, true] {
            for limit in [None, Some(2)] {
                let mut q = log.query(&org(ORG)).threads(threads);
                if reverse {
                    q = q.reverse();
                }
                if let Some(n) = limit {
                    q = q.limit(n);
                }
                let (v, e, s) = run_query(q);
                let what = format!("threads {threads}, reverse {reverse}, limit {limit:?}");
                assert!(v.is_empty(), "{what}");
                assert_eq!(files_of(&e), segs, "{what}: {e:#?}");
                assert!(
                    e.iter().all(|e| matches!(
                        e,
                        Error::Integrity {
                            kind: IntegrityKind::UnknownKey { key_id: KeyId(1) },
                            seq: Some(_),
                            ..
                        }
                    )),
                    "{what}: {e:#?}"
                );
                assert_eq!(s.unchecked, events.len() as u64, "{what}");
                assert_eq!(s.errors, 3, "{what}");
            }
        }
    }

    // A provider that fails: one `Error::RecordKey` per segment, naming the segment's first
    // record (it named only the org), and the provider is asked about each key id a bounded
    // number of times (per index and reading thread), not once per record.
    let failing = Hiding::new(&keys, None, true);
    let log = Log::open_read_only(base.path(), opts(failing.clone())).unwrap();
    let (v, e, s) = run_query(log.query(&org(ORG)).threads(1));
    assert!(v.is_empty());
    let files: Vec<_> = e
        .iter()
        .map(|e| match e {
            Error::RecordKey {
                file,
                offset: 256,
                seq: Some(_),
                org,
                key_id: KeyId(1),
                source: KeyError::Provider(_),
            } if org == ORG => file.clone(),
            other => panic!("{other:#?}"),
        })
        .collect();
    let months = ["2026-01", "2026-02", "2026-03"];
    let want: Vec<_> = months
        .iter()
        .map(|m| seg_path(base.path(), ORG, m))
        .collect();
    assert_eq!(files, want);
    assert_eq!(s.unchecked, events.len() as u64);
    let asked = failing.lookups.load(Ordering::Relaxed);
    assert!(
        asked <= 30,
        "asked {asked} times for {} records",
        events.len()
    );
}

/// Records signed with a key the provider still has are returned beside those whose key is
/// missing (one error per segment for the latter): the query goes on.
#[test]
fn records_of_a_known_key_are_returned_beside_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let events = workload_from(2000, 1, 50, 9, "2026-01-05");
    let rotate_at = ts("2026-01-25");
    let log = Log::open(dir.path(), opts(keys.clone())).unwrap();
    let (before, after): (Vec<Event>, Vec<Event>) = events
        .iter()
        .cloned()
        .partition(|e| e.occurred_at < rotate_at);
    log.append_batch(&before).unwrap();
    assert_eq!(keys.rotate(&org(ORG)).unwrap(), KeyId(2));
    log.append_batch(&after).unwrap();
    log.close().unwrap();

    let lacking = Hiding::new(&keys, Some(KeyId(1)), false);
    let reader = Log::open_read_only(dir.path(), opts(lacking)).unwrap();
    let (v, e, s) = run_query(reader.query(&org(ORG)));
    // January holds records of both keys; February only of key 2.
    assert_eq!(
        files_of(&e),
        vec![seg_path(dir.path(), ORG, "2026-01")],
        "{e:#?}"
    );
    assert_eq!(s.unchecked, before.len() as u64);
    assert_eq!(v.len(), after.len());
    assert!(v.iter().all(|x| x.key_id == KeyId(2)));
}

/// A closed log of 1,000 February records, the first 999 signed with key 1 and the last
/// with key 2, its index (written at close) signed with key 2.
fn indexed_with_key_two() -> (tempfile::TempDir, Arc<Keyring>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let events = workload_from(1000, 1, 10, 11, "2026-02-03");
    let log = Log::open(dir.path(), opts(keys.clone())).unwrap();
    log.append_batch(&events[..999]).unwrap();
    assert_eq!(keys.rotate(&org(ORG)).unwrap(), KeyId(2));
    log.append_batch(&events[999..]).unwrap();
    log.close().unwrap();
    (dir, keys)
}

/// An index whose key is missing cannot be checked, but may be authentic: one that covers
/// more than its segment has is reported, not bypassed in silence (the records' own tags,
/// which the provider can check, cannot show a clean cut).
#[test]
fn an_index_whose_key_is_missing_still_shows_a_cut_segment() {
    let (dir, keys) = indexed_with_key_two();
    let seg = seg_path(dir.path(), ORG, "2026-02");
    let ix = index_of(&seg);
    assert_eq!(ix.key_id, KeyId(2));
    let lacking = Hiding::new(&keys, Some(KeyId(2)), false);
    let reader = Log::open_read_only(dir.path(), opts(lacking)).unwrap();

    // Intact: the index is bypassed, the records of key 1 verify and are returned.
    let (v, e, s) = run_query(reader.query(&org(ORG)));
    assert_eq!(v.len(), 999);
    assert_eq!(e.len(), 1, "the record of key 2: {e:#?}");
    assert_eq!(s.indexes_bypassed.len(), 1);

    // Cut cleanly at a record boundary: only the index can tell.
    let last = v.iter().map(|x| x.offset).max().unwrap();
    cut(&seg, last);
    let (v, e, _) = run_query(reader.query(&org(ORG)));
    assert_eq!(v.len(), 998);
    assert!(
        matches!(
            e.as_slice(),
            [Error::Integrity { file, offset, kind: IntegrityKind::IndexMismatch { what }, .. }]
                if *file == seg && *offset == last && what.contains("may have been removed")
        ),
        "{e:#?}"
    );
}

/// A record deleted from a segment without its index: the reverse query reports the break
/// once, as the forward one does. It reported it twice: the later block's own expectation
/// (a hint pass plans one) and the seam with the block before it both named it.
#[test]
fn a_chain_break_is_one_finding_in_either_direction() {
    // The review's log (`auditlog gen --events 5000 --orgs 3 --seed 7`): org-001's 101st
    // January record starts, once the 100th is cut out, where a 64 KiB block of the hint
    // pass starts.
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000", "org-001", "org-002"]);
    let log = Log::open(d.path(), opts(keys.clone())).unwrap();
    log.append_batch(&support::workload(5000, 3, 90, 7))
        .unwrap();
    log.close().unwrap();
    let seg = seg_path(d.path(), "org-001", "2026-01");
    let mut b = std::fs::read(&seg).unwrap();
    let r = records(&b)[100];
    b.drain(r.off..r.end());
    std::fs::write(&seg, b).unwrap();
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (fwd, fwd_err, _) = run_query(log.query(&org("org-001")));
    let (rev, rev_err, _) = run_query(log.query(&org("org-001")).reverse());
    assert_eq!(fwd_err.len(), 1, "{fwd_err:#?}");
    assert_eq!(rev_err.len(), 1, "{rev_err:#?}");
    assert_eq!(fwd.len(), rev.len());
}

/// An index that could not be checked because its key was missing, or the key service
/// failed, is checked again by the next query once the key can be had: the failure is not
/// kept for the life of the log (it was, and every later query of the month read the whole
/// segment without its index).
#[test]
fn an_index_unchecked_for_want_of_its_key_is_used_once_the_key_is_back() {
    let (dir, keys) = indexed_with_key_two();

    for (hidden, failing) in [(Some(KeyId(2)), false), (None, true)] {
        let provider = Hiding::new(&keys, hidden, failing);
        let reader = Log::open_read_only(dir.path(), opts(provider.clone())).unwrap();
        let (_, e, s) = run_query(reader.query(&org(ORG)));
        assert!(!e.is_empty());
        assert_eq!(s.indexes_bypassed.len(), 1, "{:?}", s.indexes_bypassed);

        provider.heal();
        let (v, e, s) = run_query(reader.query(&org(ORG)));
        assert!(e.is_empty(), "{e:#?}");
        assert_eq!(v.len(), 1000);
        assert!(s.indexes_bypassed.is_empty(), "{:?}", s.indexes_bypassed);
    }
}

/// A segment header that fails its CRC is damage, reported, and the records after it are
/// still read, as verify and stats read them: a verified query checks them and withholds
/// them all, counted (nothing anchors the chain without the header), and an unverified
/// query returns them. Both returned none of them, the verified one without counting them.
#[test]
fn a_damaged_header_does_not_hide_its_records_in_silence() {
    let (base, keys, events) = three_months();
    let d = copy_of(base.path());
    let feb = seg_path(d.path(), ORG, "2026-02");
    let mut b = std::fs::read(&feb).unwrap();
    let in_feb = records(&b).len() as u64;
    b[40] ^= 0xff;
    std::fs::write(&feb, &b).unwrap();
    let is_header_damage = |e: &Error| matches!(e, Error::Corrupt { file, offset, .. } if *file == feb && *offset < 256);

    let log = Log::open_read_only(d.path(), opts(keys.clone())).unwrap();
    let (v, e, s) = run_query(log.query(&org(ORG)));
    assert!(e.iter().any(is_header_damage), "{e:#?}");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(v.len() as u64, events.len() as u64 - in_feb);
    assert!(v.iter().all(|x| x.month != support::month("2026-02")));
    assert_eq!(s.withheld, in_feb);

    let (v, e, _) = run_query(log.query(&org(ORG)).unverified());
    assert!(e.iter().any(is_header_damage), "{e:#?}");
    assert_eq!(v.len(), events.len());
    let mut feb_seqs: Vec<u64> = v
        .iter()
        .filter(|x| x.month == support::month("2026-02"))
        .map(|x| x.seq)
        .collect();
    feb_seqs.sort_unstable();
    assert_eq!(feb_seqs, (0..in_feb).collect::<Vec<_>>());
}
