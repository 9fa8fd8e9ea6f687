//! Where no signed index covers a segment's bytes (the unindexed tail behind a live writer,
//! a segment whose index is missing or fails its check), a query finds blocks by a *hint
//! pass* that reads their times from the records themselves. Nothing signed vouches for
//! those times, so a verified query must not let a keyless attacker use them: a record
//! whose `occurred_at` was moved out of the range asked for, or records copied to where the
//! chain does not lead, must come back as an error item, never vanish or return twice in
//! silence. The same holds for an index that recovery rebuilt from such a segment and
//! signed. Found by review; each test failed before the hint pass followed the chain and
//! rebuilt indexes widened an unauthentic record's time to its month.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::verify::FindingKind;
use auditlog::{Error, Keyring, Log, Query, QueryStats, Timestamp, VerifiedEvent};
use support::*;

/// `n` events of org-000, one a minute (about 60 records per 4 KiB block). With `close`
/// the log is closed (index written); otherwise the writer stays open, nothing indexed.
fn write(dir: &Path, keys: &Arc<Keyring>, n: i64, close: bool) -> (Option<Log>, PathBuf) {
    let log = Log::open(dir, support::never(keys)).unwrap();
    log.append_batch(&minutely(n)).unwrap();
    let seg = segment_files(dir, "org-000").remove(0);
    if close {
        log.close().unwrap();
        return (None, seg);
    }
    log.sync().unwrap();
    (Some(log), seg)
}

fn all(q: Query<'_>) -> (Vec<VerifiedEvent>, Vec<Error>, QueryStats) {
    run_query(q)
}

/// The integrity errors among `errs`, as (seq, kind name).
fn integrity(errs: &[Error]) -> Vec<(Option<u64>, String)> {
    errs.iter()
        .map(|e| match e {
            Error::Integrity { seq, kind, .. } => (*seq, format!("{kind:?}")),
            other => panic!("not an integrity error: {other}"),
        })
        .collect()
}

/// Moves record `i`'s occurred_at to a minute before the first record's and fixes its
/// CRC; with `rechain`, also recomputes every later record's `prev_hash` (a keyless
/// attacker can; their tags then fail).
fn move_back(seg: &Path, i: usize, rechain_after: bool) {
    let mut bytes = std::fs::read(seg).unwrap();
    let r = records(&bytes)[i];
    bytes[r.off + 16..r.off + 24].copy_from_slice(&minute(-1).0.to_le_bytes());
    fix_crc(&mut bytes, r.off);
    if rechain_after {
        support::rechain(&mut bytes, i + 1);
    }
    std::fs::write(seg, bytes).unwrap();
}

/// Asks for exactly record `i`'s true time, every way a hint pass can be walked: forward
/// and in reverse, with groups of one block (each group walked again when its turn comes)
/// and of the default size. Each must report an integrity error and return no event.
fn assert_reported(log: &Log, i: i64) {
    for (reverse, blocks) in [(false, 4096), (true, 4096), (false, 1), (true, 1)] {
        let mut q = log
            .query(&org("org-000"))
            .since(minute(i))
            .until(Timestamp(minute(i).0 + 1))
            .plan_blocks(blocks);
        if reverse {
            q = q.reverse();
        }
        let (v, e, s) = all(q);
        assert!(v.is_empty(), "reverse {reverse}, blocks {blocks}: {v:?}");
        assert!(
            !e.is_empty(),
            "reverse {reverse}, blocks {blocks}: record {i} left the range in silence \
             (bypassed {:?})",
            s.indexes_bypassed
        );
        integrity(&e);
    }
}

#[test]
fn with_the_writers_index_a_record_moved_out_of_range_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    move_back(&seg, 299, false);
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    assert_reported(&log, 299);
}

#[test]
fn without_an_index_a_record_moved_out_of_range_is_reported() {
    // The last record (nothing chains after it: only its tag tells), a record inside a
    // block (the next record's link tells), and one whose successors were re-chained
    // (every later tag fails).
    for (i, rechain) in [(299, false), (150, false), (150, true), (0, true)] {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_for(&["org-000"]);
        let (_, seg) = write(dir.path(), &keys, 300, true);
        move_back(&seg, i, rechain);
        std::fs::remove_file(seg.with_extension("idx")).unwrap();
        let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
        assert_reported(&log, i as i64);
        let r = verify_keys(dir.path(), &*keys);
        assert!(!r.is_intact());
    }
}

#[test]
fn beside_a_live_writer_a_record_moved_out_of_the_unindexed_tail_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (writer, seg) = write(dir.path(), &keys, 300, false);
    assert!(!seg.with_extension("idx").exists());
    move_back(&seg, 299, false);
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    assert_reported(&log, 299);
    drop(writer);
}

#[test]
fn an_index_rebuilt_over_a_moved_record_gives_it_the_whole_month() {
    // The last record moved; and a record moved with every later one re-chained, so that
    // recovery finds no broken link, only tags that fail, and the rebuilt index has
    // entries after the widened blocks (their `max_ts_before` is the month's end).
    for (i, rechain) in [(299usize, false), (150, true)] {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_for(&["org-000"]);
        let (_, seg) = write(dir.path(), &keys, 300, true);
        let before = read_index(&seg.with_extension("idx"));
        move_back(&seg, i, rechain);
        std::fs::remove_file(seg.with_extension("idx")).unwrap();
        // Recovery rebuilds and signs the index, checking each record's tag as it goes.
        Log::open(dir.path(), support::never(&keys))
            .unwrap()
            .close()
            .unwrap();
        let ix = read_index(&seg.with_extension("idx"));
        assert_eq!(ix.entries.len(), before.entries.len());
        let times = ix.block_times().unwrap().unwrap();
        let last = Timestamp(month("2026-04").start().0 - 1);
        let moved = ix.entries.iter().rposition(|e| e.seq <= i as u64).unwrap();
        for (b, &(lo, hi)) in times.iter().enumerate() {
            if b >= moved {
                assert_eq!((lo, hi), (month("2026-03").start(), last), "block {b}");
            } else {
                assert!(hi < minute(i as i64), "block {b} keeps its times");
            }
        }
        let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
        let (_, _, s) = all(log.query(&org("org-000")));
        assert!(s.indexes_bypassed.is_empty(), "{:?}", s.indexes_bypassed);
        assert_reported(&log, i as i64);
        // verify: the tags, and nothing against the index that recovery signed.
        let r = verify_keys(dir.path(), &*keys);
        let kinds: Vec<_> = r.findings.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&FindingKind::TagMismatch), "{}", dump(&r));
        assert!(!kinds.contains(&FindingKind::IndexMismatch), "{}", dump(&r));
    }
}

#[test]
fn a_segment_copied_as_a_continuation_part_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    // The copy's header says part 1 (CRC fixed); its first record still chains from part 0.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[92..94].copy_from_slice(&1u16.to_le_bytes());
    fix_header_crc(&mut bytes);
    std::fs::write(seg.with_file_name("2026-03.1.seg"), &bytes).unwrap();
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    for (reverse, blocks) in [(false, 4096), (true, 4096), (false, 1), (true, 1)] {
        let mut q = log
            .query(&org("org-000"))
            .since(minute(150))
            .until(minute(155))
            .plan_blocks(blocks);
        if reverse {
            q = q.reverse();
        }
        let (v, e, s) = all(q);
        let found = integrity(&e);
        assert!(
            found.iter().any(|(_, k)| k.starts_with("ChainBreak")),
            "{} events, errors {found:?}",
            v.len()
        );
        // The copies are authentic but not where the chain leads: withheld, so each event
        // comes back once, from part 0.
        assert_placed_once(&v, 150..155, reverse);
        assert!(v.iter().all(|x| x.part == 0), "{v:?}");
        assert_eq!(s.withheld, 5, "reverse {reverse}, blocks {blocks}");
    }
}

/// `v` holds exactly the events of seqs `want`, each once, in time order (reversed if
/// `reverse`).
#[track_caller]
fn assert_placed_once(v: &[VerifiedEvent], want: std::ops::Range<u64>, reverse: bool) {
    let mut seqs: Vec<u64> = v.iter().map(|x| x.seq).collect();
    if reverse {
        seqs.reverse();
    }
    assert_eq!(seqs, want.collect::<Vec<_>>(), "reverse {reverse}");
}

#[test]
fn records_copied_past_the_end_of_a_segment_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    let mut bytes = std::fs::read(&seg).unwrap();
    let recs = records(&bytes);
    let frame = |i: usize| bytes[recs[i].off..recs[i].end()].to_vec();
    // Copies of early records up to a 4 KiB boundary some blocks on, so that the first
    // copied blocks lie outside the range; then copies of records 150..155.
    let boundary = (bytes.len() / 4096 + 3) * 4096;
    let mut tail = Vec::new();
    let mut i = 0;
    while bytes.len() + tail.len() < boundary {
        tail.extend_from_slice(&frame(i));
        i += 1;
    }
    for k in 150..155 {
        tail.extend_from_slice(&frame(k));
    }
    bytes.extend_from_slice(&tail);
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    for (reverse, blocks) in [(false, 4096), (true, 4096), (false, 1), (true, 1)] {
        let mut q = log
            .query(&org("org-000"))
            .since(minute(150))
            .until(minute(155))
            .plan_blocks(blocks);
        if reverse {
            q = q.reverse();
        }
        let (v, e, s) = all(q);
        let found = integrity(&e);
        assert!(!found.is_empty(), "the copies' first link is reported");
        // Each event once: the copies are withheld (and counted).
        assert_placed_once(&v, 150..155, reverse);
        assert_eq!(s.withheld, 5, "reverse {reverse}, blocks {blocks}");
    }
}

#[test]
fn records_copied_after_garbage_past_the_end_are_withheld() {
    // Unreadable bytes, then copies: after the damage a record is placed only if its seq
    // is past every seq before it, which no copy's is.
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    let mut bytes = std::fs::read(&seg).unwrap();
    let recs = records(&bytes);
    let copies: Vec<u8> = (150..155)
        .flat_map(|k| bytes[recs[k].off..recs[k].end()].to_vec())
        .collect();
    bytes.extend_from_slice(&[0x5a; 200]);
    bytes.extend_from_slice(&copies);
    std::fs::write(&seg, &bytes).unwrap();
    for drop_index in [false, true] {
        if drop_index {
            std::fs::remove_file(seg.with_extension("idx")).unwrap();
        }
        let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
        for (reverse, blocks) in [(false, 4096), (true, 4096), (false, 1), (true, 1)] {
            let mut q = log
                .query(&org("org-000"))
                .since(minute(150))
                .until(minute(155))
                .plan_blocks(blocks);
            if reverse {
                q = q.reverse();
            }
            let (v, e, s) = all(q);
            assert!(
                e.iter().any(|x| matches!(x, Error::Corrupt { .. })),
                "the garbage is reported: {e:?}"
            );
            assert_placed_once(&v, 150..155, reverse);
            // With the index the walk of its tail starts at the garbage, and reads the
            // copies after it; without, the walk resumes after damage only at a seq past
            // the ones before, so the copies are part of the damaged stretch.
            let copies_read = if drop_index { 0 } else { 5 };
            assert_eq!(
                s.withheld, copies_read,
                "index {}, reverse {reverse}",
                !drop_index
            );
        }
    }
}

#[test]
fn without_an_index_an_altered_record_costs_that_record_only() {
    // The break after an altered record (its tag fails, the seqs go on) is that record's
    // doing: the records after it are placed and returned, forward and in reverse.
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let r = records(&bytes)[120];
    let b = resource_id_byte(&bytes, r);
    change_ascii(&mut bytes[b]);
    fix_crc(&mut bytes, r.off);
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    for (reverse, blocks) in [(false, 4096), (true, 4096), (false, 1), (true, 1)] {
        let mut q = log.query(&org("org-000")).plan_blocks(blocks);
        if reverse {
            q = q.reverse();
        }
        let (v, e, s) = all(q);
        let found = integrity(&e);
        assert!(
            found
                .iter()
                .any(|(s, k)| *s == Some(120) && k.starts_with("TagMismatch"))
        );
        assert_eq!(v.len(), 299, "reverse {reverse}, blocks {blocks}");
        assert!(v.iter().all(|x| x.seq != 120));
        assert_eq!(s.withheld, 0);
    }
}

#[test]
fn an_intact_segment_without_an_index_reads_the_same_verified_and_not() {
    // The positive control: the verified hint pass finds nothing wrong with true records,
    // however it is walked, and returns what the index would.
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000"]);
    let (_, seg) = write(dir.path(), &keys, 300, true);
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    let want: Vec<u64> = all(log
        .query(&org("org-000"))
        .since(minute(100))
        .until(minute(200)))
    .0
    .iter()
    .map(|v| v.seq)
    .collect();
    assert_eq!(want.len(), 100);
    drop(log);
    std::fs::remove_file(seg.with_extension("idx")).unwrap();
    let log = Log::open_read_only(dir.path(), support::never(&keys)).unwrap();
    for (reverse, blocks, unverified) in [
        (false, 4096, false),
        (true, 4096, false),
        (false, 1, false),
        (true, 1, false),
        (false, 1, true),
    ] {
        let mut q = log
            .query(&org("org-000"))
            .since(minute(100))
            .until(minute(200))
            .plan_blocks(blocks);
        if reverse {
            q = q.reverse();
        }
        if unverified {
            q = q.unverified();
        }
        let (v, e, s) = all(q);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(s.indexes_bypassed.len(), 1);
        let mut got: Vec<u64> = v.iter().map(|v| v.seq).collect();
        if reverse {
            got.reverse();
        }
        assert_eq!(got, want, "reverse {reverse}, blocks {blocks}");
        // Only the blocks the range needs were read: about a third of them.
        assert!(
            s.blocks_read * 2 < s.blocks_considered,
            "{} of {} blocks read",
            s.blocks_read,
            s.blocks_considered
        );
    }
}
