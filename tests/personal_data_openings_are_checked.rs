//! Personal-data openings lie outside the chain and the tag (FORMAT.md §2.4): the sealed
//! commitment root is their only check, so `verify` checks them in every record, and
//! reports an erased slot.
//! - Erasing needs no key: anyone who can write the file computes the commitment from the
//!   stored seed and value. With a 16-byte value the frame keeps its length, so the signed
//!   index still matches, and a checkpoint pins only chain hashes. This build writes no
//!   erasure, so `verify` reports it (`erased_personal_data`, an error), and verified reads
//!   (a query, `Log::scan`) refuse the record with the same finding. Before, nothing did,
//!   and a query showed the session id as `"[REDACTED]"` as if legitimately erased.
//! - An altered IP address is found at its record even when the segment's header is
//!   unreadable. Before, the bodies of such a segment were not checked at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::crypto::{commitment, derive_salt};
use auditlog::verify::{FindingKind, Severity, VerifyOptions, make_checkpoint, verify};
use auditlog::{Log, REDACTED};
use support::*;

const ORG: &str = "acme";
/// 16 bytes: kind-0 openings `0, seed[16], varint 16, value[16]` (34 bytes) and kind-1
/// openings `1, 1, commitment[32]` (34 bytes) have the same length.
const SESSION: &str = "0123456789abcdef";

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// Rewrites the openings of the record at `off` (one slot, kind 0) to kind 1 with the slot
/// erased, fixing the CRC. Needs no key: the commitment is recomputed from public bytes.
fn erase_single_slot(bytes: &mut [u8], off: usize) {
    let len = u32_at(bytes, off);
    let sealed_len = u32_at(bytes, off + 60);
    let o = off + 64 + sealed_len;
    let end = off + len - 32;
    assert_eq!(bytes[o], 0, "kind 0 (seeded) openings as written");
    let seed: [u8; 16] = bytes[o + 1..o + 17].try_into().unwrap();
    assert_eq!(bytes[o + 17] as usize, SESSION.len());
    let value = bytes[o + 18..end].to_vec();
    assert_eq!(value, SESSION.as_bytes());
    let c = commitment(&derive_salt(&seed, 0), &value);
    let mut erased = vec![1u8, 1u8];
    erased.extend_from_slice(&c.0);
    assert_eq!(erased.len(), end - o, "same length: no offset moves");
    bytes[o..end].copy_from_slice(&erased);
    fix_crc(bytes, off);
}

#[test]
fn keyless_erasure_of_personal_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), always(&keys)).unwrap();
    for i in 0..5 {
        let mut e = event(
            ORG,
            ts(&format!("2025-03-0{}T10:00:00Z", i + 1)),
            Some("mallory"),
            "auth.login",
            &format!("r{i}"),
        );
        e.ip = None;
        e.session_id = Some(SESSION.to_string());
        log.append(&e).unwrap();
    }
    log.close().unwrap();

    // A checkpoint kept off the host, made before the edit.
    let cp = make_checkpoint(dir.path(), &org(ORG), &*keys).unwrap();

    // The attacker (no key) "erases" the session id of record 2.
    let seg = seg_path(dir.path(), ORG, "2025-03");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    erase_single_slot(&mut bytes, recs[2].off);
    fs::write(&seg, &bytes).unwrap();

    // Verified reads (scan, a verified query) refuse the record as verify does: it used to
    // come back with its session id "[REDACTED]", as if legitimately erased, exit 0. An
    // unverified query shows it so.
    let log = Log::open(dir.path(), always(&keys)).unwrap();
    let is_erasure = |e: &auditlog::Error| {
        matches!(
            e,
            auditlog::Error::Integrity {
                seq: Some(2),
                kind: auditlog::IntegrityKind::ErasedPersonalData { slots },
                ..
            } if slots == &["session_id".to_string()]
        )
    };
    let (events, errs) = scan(&log, &org(ORG));
    assert_eq!(events.len(), 4);
    assert!(matches!(errs.as_slice(), [e] if is_erasure(e)), "{errs:#?}");
    let (events, errs, _) = run_query(log.query(&org(ORG)));
    assert_eq!(events.len(), 4);
    assert!(matches!(errs.as_slice(), [e] if is_erasure(e)), "{errs:#?}");
    let (events, errs, _) = run_query(log.query(&org(ORG)).unverified());
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(events[2].event.session_id.as_deref(), Some(REDACTED));
    log.close().unwrap();

    let opts = VerifyOptions {
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(dir.path(), Some(&*keys), &opts).unwrap();
    let erased: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::ErasedPersonalData)
        .collect();
    assert_eq!(erased.len(), 1, "{:#?}", r.findings);
    assert_eq!(erased[0].seq, Some(2));
    assert_eq!(erased[0].severity, Severity::Error);
    assert!(
        erased[0].message.contains("session_id"),
        "{}",
        erased[0].message
    );
    // Nothing else is wrong: the chain, tags, index and checkpoint all hold.
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
}

/// With the segment header spoiled (one byte flipped, CRC not fixed: it reads as bit rot,
/// `checksum_corruption`), an IP address changed in a record's openings (CRC fixed, no key)
/// is still reported at its record, as FORMAT.md §7 says for altered openings.
#[test]
fn altered_openings_are_located_even_when_the_header_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), always(&keys)).unwrap();
    for i in 0..5 {
        // `event` sets ip = "192.0.2.1" when there is a user.
        let e = event(
            ORG,
            ts(&format!("2025-03-0{}T10:00:00Z", i + 1)),
            Some("mallory"),
            "auth.login",
            &format!("r{i}"),
        );
        log.append(&e).unwrap();
    }
    log.close().unwrap();

    let seg = seg_path(dir.path(), ORG, "2025-03");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    let rec = recs[2];
    // Openings of record 2: kind 0, seed[16], varint 9, "192.0.2.1".
    let sealed_len = u32_at(&bytes, rec.off + 60);
    let o = rec.off + 64 + sealed_len;
    assert_eq!(bytes[o], 0);
    assert_eq!(&bytes[o + 18..o + 27], b"192.0.2.1");
    bytes[o + 26] = b'9'; // 192.0.2.9
    fix_crc(&mut bytes, rec.off);

    let found_at_record_2 = |bytes: &[u8]| {
        fs::write(&seg, bytes).unwrap();
        let r = verify(dir.path(), Some(&*keys), &VerifyOptions::default()).unwrap();
        let found = r
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::MalformedRecord && f.seq == Some(2));
        assert!(found, "{:#?}", r.findings);
    };
    // With the header intact, then with one reserved byte of it flipped (no CRC fix: it
    // reads as bit rot).
    found_at_record_2(&bytes);
    bytes[230] ^= 1;
    found_at_record_2(&bytes);
}
