//! A segment file whose header names another segment (a copy, a renamed or planted file) says
//! nothing of this org's segments. The writer's catalog used to believe its links all the
//! same: a planted copy of February's header, under another month's name and with its `prev`
//! link counting 1,000 records in January, made the next append to January seal the sound
//! January segment as damaged (it held fewer records than "a link vouched for") and continue
//! it past seq 1,000. Recovery itself already read such a header as not the segment's; the
//! catalog now reads it the same way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::Log;
use auditlog::format::header::SegmentHeader;
use support::{february_of, january_of, keys_for, month, seg_path};

const ORG: &str = "acme";

#[test]
fn a_header_naming_another_segment_cannot_make_a_sound_segment_damaged() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 3, 1)).unwrap();
    log.append_batch(&february_of(ORG, 3, 2)).unwrap();
    log.close().unwrap();

    // February's file under May's name, its header's `prev` link (to January) forged to
    // count 1,000 records. The header's CRC is recomputed: it decodes cleanly.
    let mut bytes = fs::read(seg_path(d.path(), ORG, "2026-02")).unwrap();
    let mut h = SegmentHeader::decode(&bytes[..256]).unwrap();
    let prev = h.prev.as_mut().unwrap();
    assert_eq!((prev.segment.month, prev.count), (month("2026-01"), 3));
    prev.count = 1_000;
    bytes[..256].copy_from_slice(&h.encode());
    fs::write(seg_path(d.path(), ORG, "2026-05"), &bytes).unwrap();

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    let r = log.append(&january_of(ORG, 4, 1)[3]).unwrap();
    assert_eq!((r.month, r.seq), (month("2026-01"), 3));
    log.close().unwrap();
    assert!(
        !seg_path(d.path(), ORG, "2026-01.1").exists(),
        "January was continued"
    );
    let jan = fs::metadata(seg_path(d.path(), ORG, "2026-01")).unwrap();
    assert!(!jan.permissions().readonly(), "January was sealed");
}
