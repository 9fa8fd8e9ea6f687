//! An index whose tag names a key the key provider lacks (a KMS that has not loaded an old
//! key yet, a keyring restored without it) cannot be checked, but may be authentic: signed
//! evidence of what was durable. Recovery used to treat it as no evidence at all and rebuild
//! over it, destroying it; over a segment cut short since, that also laundered the cut (the
//! rebuilt index, signed with the current key, covers only what is left) and reissued the
//! cut records' seqs. Now such an index is copied to quarantine byte for byte before any
//! rebuild, and one the segment contradicts is not rebuilt at all: the segment is sealed and
//! continued past every seq the index vouches for, as for an authentic index.
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

use auditlog::format::index::Index;
use auditlog::verify::{FindingKind, VerifyOptions, verify};
use auditlog::{Durability, KeyId, KeyProvider, Keyring, Log, Options, RecoveryAction};
use support::{WithoutKeyOne, january_of, org, records};

const ORG: &str = "acme";

/// A closed log of 10 January records whose index is signed with key 1; then key 2 is made
/// active. Returns the keyring and the index's bytes.
fn log_signed_with_key_one(dir: &Path) -> (Arc<Keyring>, Vec<u8>) {
    let ring = Arc::new(Keyring::in_memory());
    ring.rotate(&org(ORG)).unwrap();
    let log = Log::open(dir, Options::new(ring.clone())).unwrap();
    log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    log.close().unwrap();
    ring.rotate(&org(ORG)).unwrap();
    let idx = fs::read(dir.join(ORG).join("2026-01.idx")).unwrap();
    (ring, idx)
}

fn opts(ring: &Arc<Keyring>) -> Options {
    Options::new(Arc::new(WithoutKeyOne(ring.clone()))).durability(Durability::Always)
}

/// The segment as it was: the index is rebuilt (it must be signed with a key the writer
/// has), but only after a byte-for-byte copy of it is in quarantine, and the copy still
/// verifies once key 1 is back.
#[test]
fn an_index_whose_key_is_missing_is_copied_before_it_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let (ring, original) = log_signed_with_key_one(d.path());
    let idx = d.path().join(ORG).join("2026-01.idx");

    let log = Log::open(d.path(), opts(&ring)).unwrap();
    let report = log.recovery_report();
    let copied_to = report
        .iter()
        .find_map(|a| match a {
            RecoveryAction::IndexKeptAside {
                file,
                reason,
                copied_to,
            } if *file == idx && reason.contains("unknown key 1") => Some(copied_to.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(
        report
            .iter()
            .any(|a| matches!(a, RecoveryAction::IndexRebuilt { .. })),
        "{report:?}"
    );
    assert_eq!(
        copied_to,
        d.path()
            .join(ORG)
            .join("quarantine")
            .join("2026-01.idx.key-missing")
    );
    assert_eq!(fs::read(&copied_to).unwrap(), original, "not byte for byte");
    assert_ne!(fs::read(&idx).unwrap(), original, "not rebuilt");
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 10);
    log.close().unwrap();

    // With key 1 back, the copy is the authentic index it was.
    let copy = fs::read(&copied_to).unwrap();
    let (index, tag, signed) = Index::decode(&copy).unwrap();
    assert_eq!((index.key_id, index.record_count), (KeyId(1), 10));
    assert!(support::signer(&*ring, &org(ORG), 1).verify_index(signed, &tag));
}

/// The segment was cut after its index was written (its last three records gone): the
/// index, whose key is missing, says 10 records were durable. It is kept unchanged, the
/// segment is sealed and continued, and the next seq is 10, not 7 (which used to be
/// reissued over a rebuilt index that hid the cut). With key 1 back, verify still reports
/// the cut.
#[test]
fn an_index_with_a_missing_key_over_a_cut_segment_is_not_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let (ring, original) = log_signed_with_key_one(d.path());
    let seg = d.path().join(ORG).join("2026-01.seg");
    let bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    fs::write(&seg, &bytes[..recs[7].off]).unwrap();

    let log = Log::open(d.path(), opts(&ring)).unwrap();
    let report = log.recovery_report();
    assert!(
        report.iter().any(|a| matches!(
            a,
            RecoveryAction::SegmentSealed { file, .. } if *file == seg
        )),
        "{report:?}"
    );
    assert!(
        !report.iter().any(|a| matches!(
            a,
            RecoveryAction::IndexRebuilt { .. } | RecoveryAction::IndexKeptAside { .. }
        )),
        "{report:?}"
    );
    assert_eq!(log.append(&january_of(ORG, 1, 9)[0]).unwrap().seq, 10);
    log.close().unwrap();
    assert_eq!(
        fs::read(d.path().join(ORG).join("2026-01.idx")).unwrap(),
        original
    );
    let keys: &dyn KeyProvider = &*ring;
    let report = verify(d.path(), Some(keys), &VerifyOptions::default()).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::IndexMismatch && f.file == seg),
        "{}",
        support::dump(&report)
    );
}
