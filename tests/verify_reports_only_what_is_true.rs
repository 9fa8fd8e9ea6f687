//! `verify` does not add findings that the evidence does not support:
//! - a segment whose header fails its CRC hides its creation ordinal, but when the next
//!   segment's readable `prev` link names that (present) file, and the file holds the record
//!   the link names, the ordinal is the damaged file's, not a deleted segment's: no
//!   `missing_segment` (and so `checkpoint --accept-damage` refuses for the unreadable
//!   header, not for a "deletion"); a file put under a deleted segment's name that does not
//!   hold that record still leaves the deletion reported;
//! - an index copied from another month (or org) is reported as another segment's index,
//!   and is not compared with the segment as if it were its own (which claimed that the
//!   segment was truncated after its index was written).
//!
//! Found by review. Controls check that a real deletion and a real truncation are still
//! reported.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::verify::{
    CheckpointOptions, FindingKind as K, make_checkpoint, make_checkpoint_with,
};
use support::*;

const A: &str = "org-000";

fn flip(path: &std::path::Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0xff;
    fs::write(path, b).unwrap();
}

#[test]
fn an_unreadable_header_that_a_link_names_is_not_a_deleted_segment() {
    let (d, keys) = fresh_log();
    let dir = d.path();
    let feb = seg_path(dir, A, "2026-02");
    let mar = seg_path(dir, A, "2026-03");
    // The link that ties February's ordinal to its file.
    let feb_ordinal = header(&fs::read(&feb).unwrap()).ordinal;
    let mar_header = header(&fs::read(&mar).unwrap());
    assert_eq!(mar_header.ordinal, feb_ordinal + 1);
    assert_eq!(
        mar_header.prev.unwrap().segment,
        header(&fs::read(&feb).unwrap()).id
    );

    // One byte inside February's header (not its CRC): the header cannot be read.
    flip(&feb, 100);
    let r = verify_keys(dir, &*keys);
    assert_findings(
        dir,
        &r,
        vec![f(
            K::ChecksumCorruption,
            &format!("{A}/2026-02.seg"),
            Some((0, 256)),
            None,
        )],
    );
    // The structure is named once.
    assert!(
        !r.findings[0]
            .message
            .contains("segment header: segment header"),
        "{}",
        dump(&r)
    );

    // Refused, damage accepted or not, and for what it is.
    let e = make_checkpoint(dir, &org(A), &*keys)
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum_corruption"), "{e}");
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    let e = make_checkpoint_with(dir, &org(A), &*keys, &accept)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("header of segment 2026-02 cannot be read"),
        "{e}"
    );
    assert!(
        !e.contains("missing_segment") && !e.contains("was deleted"),
        "{e}"
    );

    // Control: January deleted as well. Its ordinal is named by no readable link (the
    // only one, February's, is in the unreadable header): that hole is still a deletion,
    // reported once, on March's ordinal.
    let jan_ordinal = header(&fs::read(seg_path(dir, A, "2026-01")).unwrap()).ordinal;
    assert_eq!(jan_ordinal + 1, feb_ordinal);
    fs::remove_file(seg_path(dir, A, "2026-01")).unwrap();
    fs::remove_file(idx_path(dir, A, "2026-01")).unwrap();
    let r = verify_keys(dir, &*keys);
    assert_findings(
        dir,
        &r,
        vec![
            f(
                K::ChecksumCorruption,
                &format!("{A}/2026-02.seg"),
                Some((0, 256)),
                None,
            ),
            f(
                K::MissingSegment,
                &format!("{A}/2026-03.seg"),
                Some((96, 4)),
                None,
            ),
        ],
    );
    let missing = r
        .findings
        .iter()
        .find(|x| x.kind == K::MissingSegment)
        .unwrap();
    assert!(
        missing.message.contains(&format!(
            "creation ordinal {jan_ordinal}: a segment was deleted"
        )),
        "{}",
        dump(&r)
    );
}

#[test]
fn a_file_put_under_a_deleted_segments_name_does_not_hide_the_deletion() {
    // The link that would give February's ordinal away names records the file must hold:
    // junk, or another month's records under a spoiled header, do not.
    for junk in [false, true] {
        let (d, keys) = fresh_log();
        let dir = d.path();
        let feb = seg_path(dir, A, "2026-02");
        let feb_ordinal = header(&fs::read(&feb).unwrap()).ordinal;
        fs::remove_file(&feb).unwrap();
        fs::remove_file(idx_path(dir, A, "2026-02")).unwrap();
        let bytes = if junk {
            vec![0xa5; 5000]
        } else {
            let mut b = fs::read(seg_path(dir, A, "2026-01")).unwrap();
            b[100] ^= 0xff;
            b
        };
        fs::write(&feb, bytes).unwrap();
        let r = verify_keys(dir, &*keys);
        assert!(
            r.findings.iter().any(|x| x.kind == K::MissingSegment
                && x.file == seg_path(dir, A, "2026-03")
                && x.offset == Some(96)
                && x.message.contains(&format!(
                    "creation ordinal {feb_ordinal}: a segment was deleted"
                ))),
            "junk {junk}: {}",
            dump(&r)
        );
    }
}

#[test]
fn an_index_of_another_month_is_reported_as_that_only() {
    let (d, keys) = fresh_log();
    let dir = d.path();
    let idx = idx_path(dir, A, "2026-02");
    fs::copy(idx_path(dir, A, "2026-01"), &idx).unwrap();
    let ilen = fs::metadata(&idx).unwrap().len() as usize;
    let r = verify_keys(dir, &*keys);
    assert_findings(
        dir,
        &r,
        vec![f(
            K::IndexMismatch,
            &format!("{A}/2026-02.idx"),
            Some((0, ilen)),
            None,
        )],
    );
    let m = &r.findings[0].message;
    assert!(
        m.contains(&format!("describes org {A} segment 2026-01"))
            && m.contains("written for another segment"),
        "{m}"
    );
    assert!(
        r.findings.iter().all(|x| !x.message.contains("truncated")),
        "{}",
        dump(&r)
    );

    // Another org's index of the same month: every finding is on the index (its identity,
    // its tag under this org's key), none on the segment.
    fs::copy(idx_path(dir, "org-001", "2026-02"), &idx).unwrap();
    let r = verify_keys(dir, &*keys);
    assert!(!r.is_intact());
    assert!(
        r.findings.iter().any(|x| x.kind == K::IndexMismatch
            && x.message.contains("describes org org-001 segment 2026-02")),
        "{}",
        dump(&r)
    );
    assert!(r.findings.iter().all(|x| x.file == idx), "{}", dump(&r));
}

#[test]
fn a_segment_cut_under_its_own_index_is_still_a_truncation() {
    // Control for the test above: the index is compared with its own segment.
    let (d, keys) = fresh_log();
    let dir = d.path();
    let feb = seg_path(dir, A, "2026-02");
    let b = fs::read(&feb).unwrap();
    let last = *records(&b).last().unwrap();
    fs::write(&feb, &b[..last.off]).unwrap();
    let r = verify_keys(dir, &*keys);
    assert!(
        r.findings.iter().any(|x| x.kind == K::IndexMismatch
            && x.file == feb
            && x.message.contains("truncated after the index was written")),
        "{}",
        dump(&r)
    );
}
