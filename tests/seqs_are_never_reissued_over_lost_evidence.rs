//! A month's seqs are never issued twice, also when the evidence of which were issued is
//! partly gone. A continuation part whose header is unreadable began where the part it
//! continues ended; when that part is deleted and nothing else names the seqs (no readable
//! record, no index of the headerless part), the next open used to move the headerless part
//! aside, fail, and start the month afresh at seq 0 on the open after. And a damaged part's
//! records after its last readable one, unreadable now but acknowledged once, used to have
//! their seqs handed out again by the continuation. Now recovery refuses the month with
//! `Error::ContinuedPartMissing` (and keeps refusing: nothing is moved), or continues past
//! every seq the unreadable bytes could have held.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::format::header::SegmentHeader;
use auditlog::{Error, Keyring, Log, RecoveryAction};
use support::{february_of, january_of, keys_for, records};

const ORG: &str = "acme";

fn part(dir: &Path, name: &str) -> PathBuf {
    dir.join(ORG).join(name)
}

/// January with 10 records (seqs 0..=9), a byte flipped in record 3, found at open (its
/// index removed): part 1 is created, empty, at seq 10. February has 2 records.
fn continued_once(dir: &Path, keys: &Arc<Keyring>) {
    let log = Log::open(dir, support::always(keys)).unwrap();
    log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    log.append_batch(&february_of(ORG, 2, 2)).unwrap();
    log.close().unwrap();
    let seg = part(dir, "2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    bytes[recs[3].off + 100] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    fs::remove_file(part(dir, "2026-01.idx")).unwrap();
    Log::open(dir, support::always(keys))
        .unwrap()
        .close()
        .unwrap();
    let h = SegmentHeader::decode(&fs::read(part(dir, "2026-01.1.seg")).unwrap()[..256]).unwrap();
    assert_eq!(h.first_seq, 10);
}

/// Part 0 removed (sealed file, index and all), beside part 1 left as `p1` with no index:
/// a headerless part 1 with no readable record says nothing of the seqs issued.
fn lose_part_zero(dir: &Path, p1: &[u8]) {
    fs::remove_file(part(dir, "2026-01.1.idx")).unwrap();
    fs::write(part(dir, "2026-01.1.seg"), p1).unwrap();
    fs::remove_file(part(dir, "2026-01.seg")).unwrap();
}

/// Opening the log refuses the month, on every open, with the typed error; the headerless
/// part stays where it is; February goes on.
fn assert_refused_for_good(dir: &Path, keys: &Arc<Keyring>, p1: &[u8]) {
    for round in 0..2 {
        let log = Log::open(dir, support::always(keys)).unwrap();
        let report = log.recovery_report();
        assert!(
            report.iter().any(|a| matches!(
                a,
                RecoveryAction::RecoveryFailed { error, .. } if error.contains("2026-01.seg")
            )),
            "round {round}: {report:?}"
        );
        match log.append(&january_of(ORG, 1, 9)[0]) {
            Err(e @ Error::ContinuedPartMissing { .. }) => {
                assert!(e.is_refusal());
                let Error::ContinuedPartMissing {
                    org,
                    segment,
                    missing,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (org.as_str(), segment.as_str(), missing),
                    (ORG, "2026-01.1", &part(dir, "2026-01.seg"))
                );
            }
            other => panic!("round {round}: a seq was issued: {other:?}"),
        }
        assert_eq!(
            log.append(&february_of(ORG, 1, 9)[0]).unwrap().seq,
            2 + round
        );
        log.close().unwrap();
        assert_eq!(fs::read(part(dir, "2026-01.1.seg")).unwrap(), p1);
    }
}

/// The crash left part 1 without its header (a partial header of 0 bytes), then part 0 was
/// deleted.
#[test]
fn a_partial_continuation_over_a_deleted_part_is_refused_for_good() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    continued_once(d.path(), &keys);
    lose_part_zero(d.path(), b"");
    assert_refused_for_good(d.path(), &keys, b"");
}

/// Part 1's header rotted and its bytes after it are garbage (no readable record, no index),
/// and part 0 was deleted.
#[test]
fn a_headerless_continuation_without_records_over_a_deleted_part_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    continued_once(d.path(), &keys);
    let mut p1 = fs::read(part(d.path(), "2026-01.1.seg")).unwrap();
    p1[113] ^= 0x01;
    p1.extend_from_slice(&[0x5a; 500]);
    lose_part_zero(d.path(), &p1);
    assert_refused_for_good(d.path(), &keys, &p1);
}

/// The same headerless part 1 with part 0 still there: part 1 began at seq 10 (past part
/// 0), and its 500 unreadable bytes could hold 5 records (seqs 10..=14). The continuation
/// used to start at seq 0.
#[test]
fn a_headerless_continuation_without_records_continues_past_the_part_before() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    continued_once(d.path(), &keys);
    let p1_path = part(d.path(), "2026-01.1.seg");
    let mut p1 = fs::read(&p1_path).unwrap();
    p1[113] ^= 0x01;
    p1.extend_from_slice(&[0x5a; 500]);
    fs::write(&p1_path, &p1).unwrap();
    fs::remove_file(part(d.path(), "2026-01.1.idx")).unwrap();

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 15);
    log.close().unwrap();
    let h =
        SegmentHeader::decode(&fs::read(part(d.path(), "2026-01.2.seg")).unwrap()[..256]).unwrap();
    assert_eq!(h.first_seq, 15);
    assert_eq!(fs::read(&p1_path).unwrap(), p1);
}

/// A damaged part (a byte flipped in record 3) whose last two records are unreadable too,
/// with no index to vouch for them: seqs 8 and 9 were acknowledged, and the continuation
/// must not hand them out again (it used to start at 8, the seq after the last readable
/// record). Their 2 records' bytes could hold a few more records; the continuation starts
/// past all of them.
#[test]
fn unreadable_records_at_the_end_of_a_damaged_part_keep_their_seqs() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let rs = log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    assert_eq!(rs.last().unwrap().seq, 9);
    log.close().unwrap();
    let seg = part(d.path(), "2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    bytes[recs[3].off + 100] ^= 0x20;
    for r in &recs[8..] {
        bytes[r.off + 100] ^= 0x20;
    }
    fs::write(&seg, &bytes).unwrap();
    fs::remove_file(part(d.path(), "2026-01.idx")).unwrap();
    let room = (bytes.len() - recs[8].off) as u64 / 96;
    assert!(room >= 2);

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let seq = log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq;
    log.close().unwrap();
    assert_eq!(seq, 8 + room, "seqs 8 and 9 were acknowledged");
}

/// Review finding: January's index is stale (a killed writer: it covers 3 records), and
/// February's `prev` link says January held 10, fsynced before the link was written. Then
/// January loses its end from inside record 8, or exactly at its start. Recovery took that
/// for a torn tail (it lies past the index), cut it, and handed out seq 8 again. Now the
/// link counts as an index would: January is sealed and continued past seq 9 (and past
/// every seq the bytes left after its last readable record could hold), nothing is cut,
/// and `verify` reports it. (Seqs 10 and 11 left no trace on disk that the cut did not
/// take: nothing can keep them from being issued again.)
#[test]
fn records_a_later_segments_link_names_are_never_taken_for_a_torn_tail() {
    for inside in [50, 0] {
        let d = tempfile::tempdir().unwrap();
        let keys = keys_for(&[ORG]);
        let log = Log::open(d.path(), support::always(&keys)).unwrap();
        log.append_batch(&january_of(ORG, 3, 1)).unwrap();
        log.close().unwrap();
        let stale = fs::read(part(d.path(), "2026-01.idx")).unwrap();
        let log = Log::open(d.path(), support::always(&keys)).unwrap();
        for e in january_of(ORG, 7, 2) {
            log.append(&e).unwrap();
        }
        log.append(&february_of(ORG, 1, 3)[0]).unwrap();
        let last = log.append_batch(&january_of(ORG, 2, 4)).unwrap();
        assert_eq!(last[1].seq, 11);
        drop(log);
        let feb = SegmentHeader::decode(&fs::read(part(d.path(), "2026-02.seg")).unwrap()[..256])
            .unwrap();
        assert_eq!(feb.prev.as_ref().map(|l| l.count), Some(10));
        fs::write(part(d.path(), "2026-01.idx"), &stale).unwrap();
        let seg = part(d.path(), "2026-01.seg");
        let bytes = fs::read(&seg).unwrap();
        let cut_at = records(&bytes)[8].off + inside;
        fs::write(&seg, &bytes[..cut_at]).unwrap();

        let log = Log::open(d.path(), support::always(&keys)).unwrap();
        let report = log.recovery_report();
        assert!(
            !report
                .iter()
                .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { .. })),
            "{inside}: {report:?}"
        );
        assert!(
            report
                .iter()
                .any(|a| matches!(a, RecoveryAction::SegmentSealed { .. })),
            "{inside}: {report:?}"
        );
        let seq = log.append(&january_of(ORG, 1, 5)[0]).unwrap().seq;
        log.close().unwrap();
        assert!(seq >= 10, "{inside}: seq {seq} was issued before");
        assert_eq!(fs::read(&seg).unwrap(), &bytes[..cut_at], "{inside}");
        let r = auditlog::verify::verify(d.path(), Some(&*keys), &Default::default()).unwrap();
        assert!(!r.is_intact(), "{inside}");
    }
}
