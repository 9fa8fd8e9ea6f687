//! Red-team: continuation parts planted, renamed or deleted by someone who can write the log
//! directory but holds no key. A continuation part's header is nothing but a CRC-covered
//! claim until an index signed for it, or records whose tags verify, vouch for it: anyone
//! can write one, with links copied from the real segments (their counts and heads are
//! chain hashes, computable from the files).
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

use auditlog::crypto::sha256;
use auditlog::format::header::{SegmentHeader, SegmentId, SegmentLink};
use auditlog::verify::FindingKind;
use auditlog::{Keyring, Log, Timestamp};
use support::{february_of, header, january_of, keys_for, record_hash, records, verify_keys};

const ORG: &str = "acme";

fn part(dir: &Path, name: &str) -> PathBuf {
    dir.join(ORG).join(name)
}

/// January with 10 records (seqs 0..=9), then February with 2: January's part 0 is
/// healthy and indexed, February is the org's tail (ordinal 1).
fn two_months(dir: &Path, keys: &Arc<Keyring>) {
    let log = Log::open(dir, support::always(keys)).unwrap();
    log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    log.append_batch(&february_of(ORG, 2, 2)).unwrap();
    log.close().unwrap();
}

/// The link a header would carry to the segment file `name` as it is now (its record
/// count and chain head), computed from the bytes alone: no key.
fn link_to(dir: &Path, name: &str) -> SegmentLink {
    let bytes = fs::read(part(dir, name)).unwrap();
    let h = header(&bytes);
    let recs = records(&bytes);
    let head = match recs.last() {
        Some(r) => record_hash(&bytes, r.off),
        None => sha256(&bytes[..256]),
    };
    SegmentLink {
        segment: h.id,
        count: recs.len() as u64,
        head,
    }
}

/// Plants `2026-01.1.seg`: a header only, continuing January's part 0 at its real count
/// and head, numbered and linked as the next segment created after February (so that the
/// ordinals and `prev` links stay whole), whose `first_seq` is `first_seq`.
fn plant_part_one(dir: &Path, first_seq: u64) {
    let jan = header(&fs::read(part(dir, "2026-01.seg")).unwrap());
    let planted = SegmentHeader {
        compat_flags: 0,
        org: jan.org.clone(),
        id: SegmentId {
            month: jan.id.month,
            part: 1,
        },
        ordinal: 2,
        first_seq,
        created_at: Timestamp::now(),
        prev: Some(link_to(dir, "2026-02.seg")),
        continues: Some(link_to(dir, "2026-01.seg")),
    };
    fs::write(part(dir, "2026-01.1.seg"), planted.encode()).unwrap();
}

/// A planted continuation whose `first_seq` lies inside the seqs part 0 holds: `verify`
/// reports its header (`link_mismatch`), and the writer must not take it at its word and
/// hand out seqs part 0 already holds (receipts of one month naming the same seq twice).
/// It used to resume the planted part and issue seq 0 again.
#[test]
fn a_planted_continuation_overlapping_part_zero_is_not_appended_to() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    two_months(d.path(), &keys);
    plant_part_one(d.path(), 0);

    let r = verify_keys(d.path(), &*keys);
    support::assert_found(&r, |f| {
        f.kind == FindingKind::LinkMismatch
            && f.file == part(d.path(), "2026-01.1.seg")
            && f.offset == Some(104)
    });

    append_past_part_zero(d.path(), &keys);
    // The planted header stays, and stays reported; nothing else is.
    let r = verify_keys(d.path(), &*keys);
    let errors: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == auditlog::verify::Severity::Error)
        .collect();
    assert!(
        errors
            .iter()
            .all(|f| f.file == part(d.path(), "2026-01.1.seg")),
        "{}",
        support::dump(&r)
    );
    assert!(!errors.is_empty(), "{}", support::dump(&r));
}

/// The same planted part with a plausible `first_seq` (past part 0's): nothing in the files
/// tells it from a continuation recovery made, and nothing is lost by it: the writer
/// appends there, past part 0's seqs, and the log verifies.
#[test]
fn a_planted_continuation_past_part_zero_costs_nothing() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    two_months(d.path(), &keys);
    plant_part_one(d.path(), 10);
    support::assert_verifies(d.path(), &*keys);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 10);
    log.close().unwrap();
    support::assert_verifies(d.path(), &*keys);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    assert_eq!(support::scan_clean(&log, &support::org(ORG)).len(), 13);
}

/// Appends one more January event: its seq must be past part 0's seqs 0..=9.
fn append_past_part_zero(dir: &Path, keys: &Arc<Keyring>) {
    let log = Log::open(dir, support::always(keys)).unwrap();
    let receipt = log.append(&january_of(ORG, 1, 9)[0]).unwrap();
    log.close().unwrap();
    assert!(
        receipt.seq >= 10,
        "seq {} reissued: part 0 holds seqs 0..=9",
        receipt.seq
    );
}

/// Plants `2026-01.2.seg` (header only) continuing `2026-01.1.seg` at its real count and
/// head, numbered and linked as the segment created after it, starting at `first_seq`.
fn plant_part_two(dir: &Path, first_seq: u64) {
    let p1 = header(&fs::read(part(dir, "2026-01.1.seg")).unwrap());
    let planted = SegmentHeader {
        id: SegmentId {
            month: p1.id.month,
            part: 2,
        },
        ordinal: p1.ordinal + 1,
        first_seq,
        created_at: Timestamp::now(),
        prev: Some(link_to(dir, "2026-01.1.seg")),
        continues: Some(link_to(dir, "2026-01.1.seg")),
        ..p1
    };
    fs::write(part(dir, "2026-01.2.seg"), planted.encode()).unwrap();
}

/// Part 1 holds no record (a continuation nothing was appended to yet), so the part that
/// continues it was checked against nothing: a planted part 2 starting at seq 0 passed
/// `verify`, and the writer appended seqs part 0 already holds, which `verify` passed
/// too. A part's seqs must lie past every earlier part's, and at or past the `first_seq`
/// of the part it continues.
#[test]
fn a_planted_part_after_an_empty_part_cannot_reuse_the_months_seqs() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    two_months(d.path(), &keys);
    plant_part_one(d.path(), 10);
    plant_part_two(d.path(), 0);

    let p2 = part(d.path(), "2026-01.2.seg");
    let r = verify_keys(d.path(), &*keys);
    support::assert_found(&r, |f| {
        f.kind == FindingKind::LinkMismatch && f.file == p2 && f.offset == Some(104)
    });

    append_past_part_zero(d.path(), &keys);
    let r = verify_keys(d.path(), &*keys);
    assert!(
        r.findings
            .iter()
            .filter(|f| f.severity == auditlog::verify::Severity::Error)
            .all(|f| f.file == p2),
        "{}",
        support::dump(&r)
    );
}

/// Thousands of planted parts (a header each, continuing the part before at its real
/// head) after January's part 0, all starting at seq 10, then one more starting at seq 9:
/// only that last one overlaps the month's seqs, and it is named against part 0's. Each
/// part's floor used to be computed by walking every earlier part of the month again (with
/// two messages formatted per earlier part): `verify` was quadratic in the parts, 1.3 s for
/// 4,000 and 4.9 s for 8,000 here (minutes for the 65,535 a month can have); one pass now.
#[test]
fn many_planted_parts_are_checked_in_one_pass() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    two_months(d.path(), &keys);
    let n: u16 = 3_000;
    let mut before = link_to(d.path(), "2026-01.seg");
    let jan = header(&fs::read(part(d.path(), "2026-01.seg")).unwrap());
    for p in 1..=n + 1 {
        let h = SegmentHeader {
            id: SegmentId {
                month: jan.id.month,
                part: p,
            },
            ordinal: u32::from(p) + 1,
            first_seq: if p == n + 1 { 9 } else { 10 },
            created_at: Timestamp::now(),
            prev: None,
            continues: Some(before),
            ..jan.clone()
        };
        let bytes = h.encode();
        before = SegmentLink {
            segment: h.id,
            count: 0,
            head: sha256(&bytes),
        };
        fs::write(part(d.path(), &format!("2026-01.{p}.seg")), bytes).unwrap();
    }
    let r = verify_keys(d.path(), &*keys);
    let overlaps: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LinkMismatch && f.offset == Some(104))
        .collect();
    assert_eq!(overlaps.len(), 1, "{}", support::dump(&r));
    assert_eq!(
        overlaps[0].file,
        part(d.path(), &format!("2026-01.{}.seg", n + 1))
    );
    assert!(
        overlaps[0].message.contains("starts at seq 9")
            && overlaps[0].message.contains("holds seqs up to 9"),
        "{}",
        overlaps[0].message
    );
}
