//! The index's user marks (FORMAT.md §3.3): a user query checks only the records the
//! signed marks give to the user, returns exactly what a full check would, and still
//! reports a record altered away from its user, or missing. An index written without marks
//! (an older writer) is read through its filters and rebuilt by the next writer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use auditlog::crypto::Signer;
use auditlog::format::index::SECTION_USER_MARKS;
use auditlog::{
    Error, Event, IntegrityKind, KeyProvider, Keyring, Log, QueryStats, Timestamp, VerifiedEvent,
};
use support::{event, fix_crc, idx_path, index_of, keys_for, org, records, seg_path, ts};

const USERS: u64 = 53;

fn ev(i: u64) -> Event {
    let user = format!("user-{:02}", i % USERS);
    let at = Timestamp(ts("2026-01-02T00:00:00Z").0 + i as i64 * 60_000_000);
    let action = if i.is_multiple_of(3) {
        "booking.created"
    } else {
        "payment.captured"
    };
    event("acme", at, Some(&user), action, &format!("r-{i:05}"))
}

/// A closed log of `n` events in January 2026.
fn build(dir: &Path, keys: &Arc<Keyring>, n: u64) -> Vec<Event> {
    let log = Log::open(dir, support::never(keys)).unwrap();
    let events: Vec<Event> = (0..n).map(ev).collect();
    log.append_batch(&events).unwrap();
    log.close().unwrap();
    events
}

fn run(q: auditlog::Query<'_>) -> (Vec<VerifiedEvent>, Vec<Error>, QueryStats) {
    let mut m = q.run().unwrap();
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for r in m.by_ref() {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs, m.stats().clone())
}

fn ids(v: &[VerifiedEvent]) -> Vec<String> {
    v.iter().map(|e| e.event.resource_id.clone()).collect()
}

fn want(events: &[Event], user: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.user_id.as_deref() == Some(user))
        .map(|e| e.resource_id.clone())
        .collect()
}

#[test]
fn a_user_query_checks_only_the_users_records() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let events = build(dir.path(), &keys, 6_000);
    let index = index_of(&seg_path(dir.path(), "acme", "2026-01"));
    assert_eq!(index.user_marks().unwrap().unwrap().len(), 6_000);

    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let o = org("acme");
    for u in [0, 7, 52] {
        let user = format!("user-{u:02}");
        let want = want(&events, &user);
        for verified in [true, false] {
            let q = log.query(&o).user(&user);
            let q = if verified { q } else { q.unverified() };
            let (got, errs, st) = run(q);
            assert!(errs.is_empty(), "{user}: {errs:?}");
            assert_eq!(ids(&got), want, "{user}");
            // Only the user's records (and, at most, a few whose 16-bit mark collides) were
            // checked; every other record read was passed over.
            let checked = st.records_read - st.records_passed;
            assert!(
                checked >= want.len() as u64 && checked <= want.len() as u64 + 3,
                "{user}: {st:?}"
            );
            assert!(st.blocks_read <= want.len() as u64 + 3, "{user}: {st:?}");
        }
        // With a second field, the marks pick and the record decides.
        let (got, errs, _) = run(log.query(&o).user(&user).action("booking.*"));
        assert!(errs.is_empty());
        let both: Vec<String> = events
            .iter()
            .filter(|e| {
                e.user_id.as_deref() == Some(user.as_str()) && e.action.starts_with("booking.")
            })
            .map(|e| e.resource_id.clone())
            .collect();
        assert_eq!(ids(&got), both);
    }
    // Other queries pass nothing over.
    let (got, errs, st) = run(log.query(&o).action("booking.created"));
    assert!(errs.is_empty());
    assert_eq!(got.len(), 2_000);
    assert_eq!(st.records_passed, 0);
}

/// The user's record whose `user_id` bytes are found (once) in frame `r`.
fn find_in(bytes: &[u8], r: &support::Rec, needle: &[u8]) -> usize {
    let frame = &bytes[r.off..r.end()];
    let at = frame
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    r.off + at
}

#[test]
fn a_record_altered_away_from_its_user_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let events = build(dir.path(), &keys, 2_000);
    let seg = seg_path(dir.path(), "acme", "2026-01");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Record 17 is user-17's (i % 53): make it user-18's, CRC fixed, tag as it was.
    let recs = records(&bytes);
    let r = recs[17];
    let at = find_in(&bytes, &r, b"user-17");
    bytes[at..at + 7].copy_from_slice(b"user-18");
    fix_crc(&mut bytes, r.off);
    std::fs::write(&seg, &bytes).unwrap();

    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let o = org("acme");
    let (got, errs, _) = run(log.query(&o).user("user-17"));
    let mut want17 = want(&events, "user-17");
    want17.retain(|id| id != "r-00017");
    assert_eq!(ids(&got), want17);
    assert!(
        errs.iter().any(|e| matches!(
            e,
            Error::Integrity {
                seq: Some(17),
                kind: IntegrityKind::TagMismatch { .. },
                ..
            }
        )),
        "{errs:?}"
    );
    // The forgery is not returned as user-18's.
    let (got, _, _) = run(log.query(&o).user("user-18"));
    assert_eq!(ids(&got), want(&events, "user-18"));
}

#[test]
fn a_record_of_the_user_cut_out_of_its_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let events = build(dir.path(), &keys, 2_000);
    let seg = seg_path(dir.path(), "acme", "2026-01");
    let mut bytes = std::fs::read(&seg).unwrap();
    let r = records(&bytes)[17 + 53 * 3];
    bytes.drain(r.off..r.end());
    std::fs::write(&seg, &bytes).unwrap();

    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let (got, errs, _) = run(log.query(&org("acme")).user("user-17"));
    let all = want(&events, "user-17");
    assert!(got.len() < all.len());
    assert!(
        !errs.is_empty(),
        "a missing record of the user went unreported"
    );
}

/// Rewrites the index of `seg` without its user marks, signed as a writer would.
fn strip_marks(dir: &Path, keys: &Arc<Keyring>) {
    let path = idx_path(dir, "acme", "2026-01");
    let mut index = index_of(&seg_path(dir, "acme", "2026-01"));
    index.sections.retain(|s| s.kind != SECTION_USER_MARKS);
    let key = keys.key(&org("acme"), index.key_id).unwrap().unwrap();
    let signer = Signer::new(index.key_id, &key);
    let mut bytes = index.encode_unsigned();
    bytes.extend_from_slice(&signer.index_tag(&bytes).0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_index_without_user_marks_is_read_and_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let mut events = build(dir.path(), &keys, 3_000);
    strip_marks(dir.path(), &keys);
    let seg = seg_path(dir.path(), "acme", "2026-01");
    assert!(index_of(&seg).user_marks().unwrap().is_none());

    let o = org("acme");
    {
        let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
        let (got, errs, st) = run(log.query(&o).user("user-05"));
        assert!(errs.is_empty(), "{errs:?}");
        assert!(st.indexes_bypassed.is_empty(), "{st:?}");
        assert_eq!(ids(&got), want(&events, "user-05"));
        assert_eq!(st.records_passed, 0);
    }
    // A writer does not continue an index without marks: it rebuilds it whole.
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let more: Vec<Event> = (3_000..3_100).map(ev).collect();
    log.append_batch(&more).unwrap();
    log.close().unwrap();
    events.extend(more);
    assert_eq!(index_of(&seg).user_marks().unwrap().unwrap().len(), 3_100);
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let (got, errs, st) = run(log.query(&o).user("user-05"));
    assert!(errs.is_empty());
    assert_eq!(ids(&got), want(&events, "user-05"));
    assert!(st.records_passed > 0);
    let distinct: BTreeSet<_> = ids(&got).into_iter().collect();
    assert_eq!(distinct.len(), got.len());
}

/// An index rebuilt from the segment takes a record's mark (and filter terms) only from a
/// record whose tag verifies: a keyless forger who moves a record to another user and
/// deletes the index must not have the next writer sign the forgery's mark.
#[test]
fn a_rebuilt_index_marks_a_forged_record_as_anyones() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let events = build(dir.path(), &keys, 2_000);
    let seg = seg_path(dir.path(), "acme", "2026-01");
    let mut bytes = std::fs::read(&seg).unwrap();
    // The last record (seq 1999) is user-38's: make it user-39's. It is the last, so no
    // link after it needs fixing; the CRC is fixed, the tag cannot be.
    let r = *records(&bytes).last().unwrap();
    assert_eq!(r.seq, 1_999);
    let at = find_in(&bytes, &r, b"user-38");
    bytes[at..at + 7].copy_from_slice(b"user-39");
    fix_crc(&mut bytes, r.off);
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::remove_file(idx_path(dir.path(), "acme", "2026-01")).unwrap();
    // A writer opens the log and writes a new index from the segment.
    Log::open(dir.path(), support::never(&keys))
        .unwrap()
        .close()
        .unwrap();
    assert!(index_of(&seg).user_marks().unwrap().is_some());
    // verify reports the forged record, and nothing of the index: its mark 1 and unfiltered
    // block hide nothing.
    let r = support::verify_keys(dir.path(), &*keys);
    assert_eq!(r.findings.len(), 1, "{}", r.summary());
    assert_eq!(
        r.findings[0].kind,
        auditlog::verify::FindingKind::TagMismatch
    );

    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let o = org("acme");
    let tag_failed = |errs: &[Error]| {
        errs.iter().any(|e| {
            matches!(
                e,
                Error::Integrity {
                    seq: Some(1_999),
                    kind: IntegrityKind::TagMismatch { .. },
                    ..
                }
            )
        })
    };
    let (got, errs, _) = run(log.query(&o).user("user-38"));
    let mut want38 = want(&events, "user-38");
    assert_eq!(want38.pop().as_deref(), Some("r-01999"));
    assert_eq!(ids(&got), want38);
    assert!(tag_failed(&errs), "{errs:?}");
    let (got, errs, _) = run(log.query(&o).user("user-39"));
    assert_eq!(ids(&got), want(&events, "user-39"));
    assert!(tag_failed(&errs), "{errs:?}");
}

/// `verify` compares a signed index's query sections with the records they describe (as a
/// writer bug could get them wrong, and a query trusts them): a record outside its block's
/// times, with a term its block's filter does not admit, or with another user's mark is
/// reported. Mark 1 ("any user") and an empty filter hide nothing and are accepted.
#[test]
fn verify_reports_a_signed_index_that_would_hide_records() {
    use auditlog::format::index::{SECTION_BLOCK_FILTERS, SECTION_BLOCK_TIMES, Section, user_mark};
    use auditlog::verify::FindingKind;
    use support::{rewrite_index, signer, verify_keys};

    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let events = build(dir.path(), &keys, 2_000);
    let (seg, ip) = (
        seg_path(dir.path(), "acme", "2026-01"),
        idx_path(dir.path(), "acme", "2026-01"),
    );
    let orig = std::fs::read(&ip).unwrap();
    let index = index_of(&seg);
    let s = signer(&*keys, &org("acme"), index.key_id.0);
    // Record 17 (user-17's) lies in block `b`, which starts at seq `first`; the block
    // after it starts at `end`.
    let b = index.entries.iter().rposition(|e| e.seq <= 17).unwrap();
    let (first, end) = (index.entries[b].seq, index.entries[b + 1].seq);
    assert!(end - first > 1, "several records per block");
    let section = |ix: &mut auditlog::format::index::Index, kind: u32| -> usize {
        ix.sections
            .iter()
            .position(|x: &Section| x.kind == kind)
            .unwrap()
    };
    let mark_at =
        |ix: &auditlog::format::index::Index, seq: u64| 4 + 2 * (seq - ix.first_seq) as usize;
    let check = |what: Option<&str>| {
        let r = verify_keys(dir.path(), &*keys);
        match what {
            None => assert!(r.findings.is_empty(), "{}", r.summary()),
            Some(what) => {
                assert_eq!(r.findings.len(), 1, "{}", r.summary());
                let f = &r.findings[0];
                assert_eq!(f.kind, FindingKind::IndexMismatch);
                assert!(f.message.contains(what), "{}", f.message);
            }
        }
        std::fs::write(&ip, &orig).unwrap();
    };
    let o = org("acme");
    let set_mark = |mark: u16| {
        rewrite_index(
            &ip,
            |ix| {
                let at = mark_at(ix, 17);
                let m = section(ix, SECTION_USER_MARKS);
                ix.sections[m].bytes[at..at + 2].copy_from_slice(&mark.to_le_bytes());
            },
            Some(&s),
        );
    };

    check(None);
    // Another user's mark: a user query for user-17 misses the record without an error.
    set_mark(user_mark(Some(b"user-18")));
    {
        let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
        let (got, errs, _) = run(log.query(&o).user("user-17"));
        assert!(errs.is_empty(), "{errs:?}");
        let mut w = want(&events, "user-17");
        w.retain(|id| id != "r-00017");
        assert_eq!(ids(&got), w);
    }
    check(Some("user mark"));
    // Mark 1 sends every user query to the record: nothing hidden.
    set_mark(1);
    check(None);

    // The block's filter emptied of every bit (its length kept): it admits no term.
    rewrite_index(
        &ip,
        |ix| {
            let f = section(ix, SECTION_BLOCK_FILTERS);
            let bytes = &mut ix.sections[f].bytes;
            let mut at = 4;
            for i in 0..=b {
                let (mut n, mut shift) = (0usize, 0);
                loop {
                    let byte = bytes[at];
                    at += 1;
                    n |= usize::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                assert!(n > 0);
                if i == b {
                    bytes[at..at + n].fill(0);
                }
                at += n;
            }
        },
        Some(&s),
    );
    check(Some("filter"));

    // The block's earliest time raised to its latest: its other records lie before it.
    // (Block `b` is not the first, so the header's `min_ts` still agrees.)
    assert!(b > 0);
    rewrite_index(
        &ip,
        |ix| {
            let t = section(ix, SECTION_BLOCK_TIMES);
            let bytes = &mut ix.sections[t].bytes;
            let max: [u8; 8] = bytes[16 * b + 8..16 * b + 16].try_into().unwrap();
            bytes[16 * b..16 * b + 8].copy_from_slice(&max);
        },
        Some(&s),
    );
    check(Some("times"));

    // The same edits under a tag that does not verify are the tag's finding, not compared.
    set_mark(user_mark(Some(b"user-18")));
    rewrite_index(
        &ip,
        |_| {},
        Some(&Signer::new(index.key_id, &support::forged_key())),
    );
    let r = verify_keys(dir.path(), &*keys);
    assert_eq!(r.findings.len(), 1, "{}", r.summary());
    assert_eq!(r.findings[0].kind, FindingKind::TagMismatch);
}
