//! Every finding about the links between segments names the file (and field) that holds
//! the evidence, and its message names the other files it concerns as they are on disk:
//! months swapped on disk, a deleted month, a segment copied in under another name, and a
//! continuation part whose link was pointed at the wrong part. Found by review: with two
//! months swapped, `verify` blamed the file under the linked name for "records removed"
//! although it held another month whole, and a deleted month was reported on the missing
//! file (no offset) rather than on the link that proves it existed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use auditlog::verify::FindingKind as K;
use auditlog::{Keyring, Log};
use support::*;

const ORG: &str = "acme";

/// January, February and March of one org, closed.
fn three_months() -> (tempfile::TempDir, Arc<Keyring>) {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::never(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 30, 1)).unwrap();
    log.append_batch(&february_of(ORG, 30, 2)).unwrap();
    let march: Vec<_> = february_of(ORG, 30, 3)
        .into_iter()
        .map(|mut e| {
            e.occurred_at.0 += 28 * 86_400_000_000;
            e
        })
        .collect();
    log.append_batch(&march).unwrap();
    log.close().unwrap();
    (d, keys)
}

fn rel(seg: &str) -> String {
    format!("{ORG}/{seg}")
}

fn message_of(r: &auditlog::verify::Report, kind: K, file: &str, at: u64) -> String {
    r.findings
        .iter()
        .find(|x| x.kind == kind && x.file.ends_with(file) && x.offset == Some(at))
        .unwrap_or_else(|| panic!("no {kind:?} on {file} at {at}:\n{}", dump(r)))
        .message
        .clone()
}

#[test]
fn swapped_months_are_named_where_the_evidence_is() {
    let (d, keys) = three_months();
    let o = d.path().join(ORG);
    for ext in ["seg", "idx"] {
        let name = |m: &str| o.join(format!("{m}.{ext}"));
        fs::rename(name("2026-01"), name("x")).unwrap();
        fs::rename(name("2026-02"), name("2026-01")).unwrap();
        fs::rename(name("x"), name("2026-02")).unwrap();
    }
    let r = verify_keys(d.path(), &*keys);
    let (jan, feb, mar) = (rel("2026-01.seg"), rel("2026-02.seg"), rel("2026-03.seg"));
    let ilen = |s: &str| fs::metadata(idx_path(d.path(), ORG, s)).unwrap().len() as usize;
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::Misfiled, &jan, Some((0, 256)), None),
            f(K::Misfiled, &feb, Some((0, 256)), None),
            // Each index names the other month too.
            f(
                K::IndexMismatch,
                &rel("2026-01.idx"),
                Some((0, ilen("2026-01"))),
                None,
            ),
            f(
                K::IndexMismatch,
                &rel("2026-02.idx"),
                Some((0, ilen("2026-02"))),
                None,
            ),
            // The links: in February's header (now file 2026-01) and in March's.
            f(K::LinkMismatch, &jan, Some((120, 48)), None),
            f(K::LinkMismatch, &mar, Some((120, 48)), None),
        ],
    );
    let m = message_of(&r, K::LinkMismatch, &mar, 120);
    assert!(m.contains(&feb) && m.contains(&jan), "{m}");
}

#[test]
fn a_deleted_month_is_named_on_the_link_that_proves_it() {
    let (d, keys) = three_months();
    fs::remove_file(seg_path(d.path(), ORG, "2026-02")).unwrap();
    fs::remove_file(idx_path(d.path(), ORG, "2026-02")).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let mar = rel("2026-03.seg");
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingSegment, &mar, Some((96, 4)), None),
            f(K::MissingSegment, &mar, Some((120, 48)), None),
        ],
    );
    let m = message_of(&r, K::MissingSegment, &mar, 120);
    assert!(m.contains(&rel("2026-02.seg")), "{m}");
}

#[test]
fn a_copied_segment_is_named_where_the_copy_is() {
    // January copied in as April, and February copied in as a continuation part of
    // itself: each finding is on the copy.
    let (d, keys) = three_months();
    fs::copy(
        seg_path(d.path(), ORG, "2026-01"),
        seg_path(d.path(), ORG, "2026-04"),
    )
    .unwrap();
    fs::copy(
        seg_path(d.path(), ORG, "2026-02"),
        seg_path(d.path(), ORG, "2026-02.1"),
    )
    .unwrap();
    let r = verify_keys(d.path(), &*keys);
    let (apr, feb1) = (rel("2026-04.seg"), rel("2026-02.1.seg"));
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::Misfiled, &apr, Some((0, 256)), None),
            f(K::LinkMismatch, &apr, Some((96, 4)), None),
            f(K::Misfiled, &feb1, Some((0, 256)), None),
            f(K::LinkMismatch, &feb1, Some((96, 4)), None),
            // A part 1 without a link to part 0, whose seqs overlap part 0's.
            f(K::LinkMismatch, &feb1, Some((168, 48)), None),
            f(K::LinkMismatch, &feb1, Some((104, 8)), None),
            // The copies came without indexes.
            f(K::MissingIndex, &rel("2026-04.idx"), None, None),
            f(K::MissingIndex, &rel("2026-02.1.idx"), None, None),
        ],
    );
}

/// Flips a byte in the middle of the month's latest part, lets recovery seal it and
/// continue the month in a new part, and appends `n` more January events there.
fn damage_and_continue(dir: &Path, keys: &Arc<Keyring>, part: &str, n: u64, seed: u64) {
    let p = seg_path(dir, ORG, part);
    let mut b = fs::read(&p).unwrap();
    let recs = records(&b);
    let r = recs[recs.len() / 2];
    b[r.off + 20] ^= 0x40;
    fs::write(&p, b).unwrap();
    let log = Log::open(dir, support::never(keys)).unwrap();
    log.append_batch(&january_of(ORG, n, seed)).unwrap();
    log.close().unwrap();
}

#[test]
fn a_continuation_pointed_at_the_wrong_part_is_named_on_its_link() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::never(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 30, 1)).unwrap();
    log.close().unwrap();
    damage_and_continue(d.path(), &keys, "2026-01", 30, 2);
    damage_and_continue(d.path(), &keys, "2026-01.1", 30, 3);
    let before = verify_keys(d.path(), &*keys);
    // Part 2's continuation link, pointed at part 0 (CRC fixed).
    let p2 = seg_path(d.path(), ORG, "2026-01.2");
    let mut b = fs::read(&p2).unwrap();
    b[172..174].copy_from_slice(&0u16.to_le_bytes());
    fix_header_crc(&mut b);
    fs::write(&p2, b).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let part2 = rel("2026-01.2.seg");
    let mut new: Vec<F> = findings(d.path(), &r)
        .into_iter()
        .filter(|x| !findings(d.path(), &before).contains(x))
        .collect();
    new.sort();
    // The link (on part 2), and what its changed header breaks in part 2 and its index:
    // nothing on part 0 or part 1.
    assert!(
        new.iter()
            .all(|x| x.file == part2 || x.file == rel("2026-01.2.idx")),
        "{new:?}\n{}",
        dump(&r)
    );
    assert!(
        new.contains(&f(K::LinkMismatch, &part2, Some((168, 48)), None)),
        "{new:?}"
    );
    let m = message_of(&r, K::LinkMismatch, &part2, 168);
    assert!(m.contains("2026-01.1"), "{m}");
}
