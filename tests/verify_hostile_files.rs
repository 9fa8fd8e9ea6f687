//! `verify` and `checkpoint` over files a keyless attacker (or a broken copy) left in odd
//! shapes, from a black-box review of the CLI: a forged creation ordinal must cost one
//! finding, not one per missing number; a closed month cut inside a record is not crash
//! damage when a later segment's link names the records it lost; a header that cannot be
//! read hides the links that would show a deleted month, so damage there is not signed
//! over; and a FIFO under a segment's, index's or lock's name is never opened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::Path;
use std::sync::Arc;

use auditlog::verify::{CheckpointOptions, Class, FindingKind, make_checkpoint_with};
use auditlog::{Durability, Keyring, Log, Options};
use support::*;

/// Three months of org-000, 40 events each; closed (indexes written).
fn three_months(dir: &Path) -> Arc<Keyring> {
    let keys = keys_for(&["org-000"]);
    let log = Log::open(
        dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    // A batch per month: each new month's `prev` link names all of the month before.
    for m in ["2026-01", "2026-02", "2026-03"] {
        let evs: Vec<_> = (0..40)
            .map(|i| {
                let at = auditlog::Timestamp(ts(&format!("{m}-05")).0 + i * 60_000_000);
                event(
                    "org-000",
                    at,
                    Some("u"),
                    "booking.created",
                    &format!("r{i}"),
                )
            })
            .collect();
        log.append_batch(&evs).unwrap();
    }
    log.close().unwrap();
    keys
}

fn kinds(dir: &Path, keys: &Keyring) -> Vec<FindingKind> {
    verify_keys(dir, keys)
        .findings
        .iter()
        .map(|f| f.kind)
        .collect()
}

fn set_header_u32(path: &Path, at: usize, value: u32) {
    let mut b = std::fs::read(path).unwrap();
    b[at..at + 4].copy_from_slice(&value.to_le_bytes());
    fix_header_crc(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_forged_creation_ordinal_is_one_finding_not_one_per_missing_number() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    // March's ordinal (header offset 96) forged to u32::MAX, header CRC fixed.
    set_header_u32(&seg_path(dir.path(), "org-000", "2026-03"), 96, u32::MAX);
    let r = verify_keys(dir.path(), &*keys);
    let missing: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::MissingSegment)
        .collect();
    assert_eq!(missing.len(), 1, "{}", dump(&r));
    assert!(
        missing[0].message.contains("ordinals 2 to 4294967294"),
        "{}",
        missing[0].message
    );
    assert!(!r.is_intact());
}

#[test]
fn a_closed_month_cut_inside_a_record_is_refused_by_the_link_that_names_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    let jan = seg_path(dir.path(), "org-000", "2026-01");
    let recs = records(&std::fs::read(&jan).unwrap());
    // Cut in the middle of the 20th record, index gone: the end looks torn, but
    // February's link (written after January was fsynced) names all 40 records.
    let cut = recs[19].off + 10;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&jan)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    std::fs::remove_file(idx_path(dir.path(), "org-000", "2026-01")).unwrap();
    let found = kinds(dir.path(), &keys);
    assert!(found.contains(&FindingKind::TornTail), "{found:?}");
    assert!(found.contains(&FindingKind::LinkMismatch), "{found:?}");
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    let refused = make_checkpoint_with(dir.path(), &org("org-000"), &*keys, &accept);
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn a_header_that_cannot_be_read_is_not_signed_over_even_accepting_damage() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    // Control: intact, it signs.
    make_checkpoint_with(dir.path(), &org("org-000"), &*keys, &accept).unwrap();
    // February deleted; one byte of March's header flipped (its CRC no longer matches), so
    // March's ordinal and link, the only trace of February, cannot be read.
    std::fs::remove_file(seg_path(dir.path(), "org-000", "2026-02")).unwrap();
    std::fs::remove_file(idx_path(dir.path(), "org-000", "2026-02")).unwrap();
    let mar = seg_path(dir.path(), "org-000", "2026-03");
    let mut b = std::fs::read(&mar).unwrap();
    b[130] ^= 0xff;
    std::fs::write(&mar, b).unwrap();
    let found = kinds(dir.path(), &keys);
    assert!(
        found.contains(&FindingKind::ChecksumCorruption),
        "{found:?}"
    );
    let err = make_checkpoint_with(dir.path(), &org("org-000"), &*keys, &accept).unwrap_err();
    assert!(
        err.to_string().contains("header of segment 2026-03"),
        "{err}"
    );
}

/// A header whose CRC holds but whose fields are not valid v1 (a reserved byte set, an
/// unknown algorithm) was written so, by an edit that fixed the CRC: `malformed_header`,
/// class tampering. It used to be `checksum_corruption`, class corruption ("bit rot"),
/// which a CRC that holds rules out. A header whose CRC fails stays corruption.
#[test]
fn a_malformed_header_whose_crc_holds_is_tampering_not_bit_rot() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    let feb = seg_path(dir.path(), "org-000", "2026-02");
    let orig = std::fs::read(&feb).unwrap();
    // A reserved byte, a reserved link byte, and hash_alg.
    for at in [91, 216, 20] {
        let mut b = orig.clone();
        b[at] = 2;
        fix_header_crc(&mut b);
        std::fs::write(&feb, &b).unwrap();
        let r = verify_keys(dir.path(), &*keys);
        let at_header: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.file == feb && f.offset == Some(0))
            .map(|f| (f.kind, f.class))
            .collect();
        assert_eq!(
            at_header,
            [(FindingKind::MalformedHeader, Class::Tampering)],
            "byte {at}: {}",
            dump(&r)
        );
        // The same byte without the CRC fixed: bit rot.
        let mut b = orig.clone();
        b[at] = 2;
        std::fs::write(&feb, &b).unwrap();
        let r = verify_keys(dir.path(), &*keys);
        assert!(
            r.findings
                .iter()
                .any(|f| f.file == feb && f.kind == FindingKind::ChecksumCorruption),
            "byte {at}: {}",
            dump(&r)
        );
    }
}

#[test]
fn fifos_under_a_segments_indexs_or_locks_name_are_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    let mkfifo = |p: &Path| {
        let _ = std::fs::remove_file(p);
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    // February's segment, January's index and the lock file become FIFOs: opening any of
    // them to read would block until something wrote to it.
    mkfifo(&seg_path(dir.path(), "org-000", "2026-02"));
    mkfifo(&idx_path(dir.path(), "org-000", "2026-01"));
    mkfifo(&dir.path().join(auditlog::LOCK_FILE));
    let r = verify_keys(dir.path(), &*keys);
    // Not read, and not verified: an error (it was a warning, INTACT, while stats and a
    // query failed on the same directory).
    let names: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::NotARegularFile)
        .map(|f| f.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["2026-01.idx", "2026-02.seg"], "{}", dump(&r));
    assert!(!r.is_intact());
    // March's link names February, which is not there to read.
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::MissingSegment),
        "{}",
        dump(&r)
    );
    // A read-only query of the org returns (January and March read; February an error).
    let log = Log::open_read_only(dir.path(), Options::new(keys.clone())).unwrap();
    let (events, errors) = scan(&log, &org("org-000"));
    assert_eq!(events.len(), 80);
    assert!(!errors.is_empty());
}

#[test]
fn an_org_without_a_checkpoint_among_those_given_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&["org-000", "org-001"]);
    let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
    for o in ["org-000", "org-001"] {
        log.append(&event(o, ts("2026-01-05"), Some("u"), "auth.login", "r"))
            .unwrap();
    }
    log.close().unwrap();
    let only_000 = auditlog::verify::make_checkpoint(dir.path(), &org("org-000"), &*keys).unwrap();
    let opts = auditlog::verify::VerifyOptions {
        checkpoints: vec![only_000],
        ..Default::default()
    };
    let r = auditlog::verify::verify(dir.path(), Some(&*keys), &opts).unwrap();
    let warned: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::NoCheckpoint)
        .map(|f| f.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(warned, ["org-001"], "{}", dump(&r));
    assert!(r.is_intact(), "a warning, not an error");
    // Without checkpoints, nothing to warn about.
    let r = verify_keys(dir.path(), &*keys);
    assert!(r.findings.is_empty(), "{}", dump(&r));
}

#[test]
fn a_segment_copied_in_as_a_continuation_part_fails_its_links() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    // January copied as part 1 of January, its header's part number edited (CRC fixed):
    // no `continues` link, and seqs that overlap part 0's.
    let jan = seg_path(dir.path(), "org-000", "2026-01");
    let mut b = std::fs::read(&jan).unwrap();
    b[92..94].copy_from_slice(&1u16.to_le_bytes());
    fix_header_crc(&mut b);
    std::fs::write(jan.with_file_name("2026-01.1.seg"), b).unwrap();
    let r = verify_keys(dir.path(), &*keys);
    let links: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LinkMismatch && f.file.ends_with("2026-01.1.seg"))
        .map(|f| f.message.as_str())
        .collect();
    assert!(
        links
            .iter()
            .any(|m| m.contains("no link to the part it continues")),
        "{}",
        dump(&r)
    );
    assert!(
        links
            .iter()
            .any(|m| m.contains("seqs of one month overlap")),
        "{}",
        dump(&r)
    );
}

/// A part 0 whose header says its seqs start past 0, records renumbered, re-chained and
/// re-signed with the org's key to match (so chain, tags and seqs all hold): the header
/// claims records before it that no file holds. `link_mismatch` on `first_seq`; it used to
/// verify INTACT, while FORMAT.md says a month's seqs start at 0 in part 0.
#[test]
fn a_part_zero_starting_past_seq_zero_is_a_link_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let keys = three_months(dir.path());
    // March: created last, so no later header links to it.
    let mar = seg_path(dir.path(), "org-000", "2026-03");
    std::fs::remove_file(idx_path(dir.path(), "org-000", "2026-03")).unwrap();
    let mut b = std::fs::read(&mar).unwrap();
    b[104..112].copy_from_slice(&5u64.to_le_bytes());
    fix_header_crc(&mut b);
    for (i, r) in records(&b).iter().enumerate() {
        b[r.off + 8..r.off + 16].copy_from_slice(&(5 + i as u64).to_le_bytes());
    }
    rechain(&mut b, 0);
    let o = org("org-000");
    let key = auditlog::KeyProvider::key(&*keys, &o, auditlog::KeyId(1))
        .unwrap()
        .unwrap();
    resign(
        &mut b,
        &o,
        &auditlog::crypto::Signer::new(auditlog::KeyId(1), &key),
    );
    std::fs::write(&mar, &b).unwrap();
    let r = verify_keys(dir.path(), &*keys);
    let found: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == auditlog::verify::Severity::Error)
        .map(|f| (f.kind, f.file.clone(), f.offset))
        .collect();
    assert_eq!(
        found,
        [(FindingKind::LinkMismatch, mar.clone(), Some(104))],
        "{}",
        dump(&r)
    );
}
