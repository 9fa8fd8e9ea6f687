//! A segment header that claims the largest creation ordinal (forged, CRC fixed) must not make
//! every later segment share that ordinal: creating a segment whose ordinal would overflow
//! is refused with a typed error, nothing is written, and appends that need no new segment
//! (and other orgs) go on. It used to saturate: new segments all got ordinal 4294967295.
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

use auditlog::crypto::sha256;
use auditlog::{Error, Event, Keyring, Log};
use support::{file_names, fix_header_crc, header, org, rechain, resign, signer, workload};

const ORG: &str = "acme";
const OTHER: &str = "other";

/// `n` events of `org_id` in January 2026, `days_later` days on (31: February).
fn events(org_id: &str, n: u64, seed: u64, days_later: i64) -> Vec<Event> {
    workload(n, 1, 28, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = org_id.into();
            e.occurred_at.0 += days_later * 86_400_000_000;
            e
        })
        .collect()
}

/// Sets the ordinal of the segment header in `bytes` and fixes its CRC.
fn forge_ordinal(bytes: &mut [u8], ordinal: u32) {
    bytes[96..100].copy_from_slice(&ordinal.to_le_bytes());
    fix_header_crc(bytes);
}

fn is_exhausted(e: &Error) -> bool {
    matches!(
        e,
        Error::SegmentNumberExhausted {
            field: "ordinal",
            ..
        }
    )
}

/// A closed log: 10 records of `ORG` in January, 3 of `OTHER`.
fn setup(dir: &Path, keys: &Arc<Keyring>) {
    let log = Log::open(dir, support::never(keys)).unwrap();
    log.append_batch(&events(ORG, 10, 1, 0)).unwrap();
    log.append_batch(&events(OTHER, 3, 2, 0)).unwrap();
    log.close().unwrap();
}

/// `ORG`'s January forged to claim the last ordinal, then re-chained and re-signed by a key
/// holder, its index removed: it reads clean and resumes. Returns the segment's path and
/// its bytes.
fn forge_last_ordinal(dir: &Path, keys: &Arc<Keyring>) -> (std::path::PathBuf, Vec<u8>) {
    setup(dir, keys);
    let seg = dir.join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    forge_ordinal(&mut bytes, u32::MAX);
    rechain(&mut bytes, 0);
    resign(&mut bytes, &org(ORG), &signer(&**keys, &org(ORG), 1));
    fs::write(&seg, &bytes).unwrap();
    fs::remove_file(seg.with_extension("idx")).unwrap();
    assert_eq!(header(&bytes).ordinal, u32::MAX);
    (seg, bytes)
}

/// January after [`forge_last_ordinal`] resumes. A new month needs a new segment and is
/// refused.
#[test]
fn a_new_month_after_the_last_ordinal_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = support::keys_for(&[ORG, OTHER]);
    let (seg, bytes) = forge_last_ordinal(dir.path(), &keys);
    let genesis = sha256(&bytes[..256]);

    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let before = file_names(&dir.path().join(ORG));
    for _ in 0..2 {
        let e = log.append(&events(ORG, 1, 3, 31)[0]).unwrap_err();
        assert!(is_exhausted(&e), "{e:?}");
        assert!(e.to_string().contains("nothing was written"), "{e}");
        let e = log.append_batch(&events(ORG, 2, 4, 31)).unwrap_err();
        assert!(is_exhausted(e.unbatched()), "{e:?}");
    }
    assert_eq!(file_names(&dir.path().join(ORG)), before, "no new file");
    // January needs no new segment: it goes on. So does the other org, February included.
    let r = log.append(&events(ORG, 1, 5, 0)[0]).unwrap();
    assert_eq!(r.seq, 10);
    log.append(&events(OTHER, 1, 6, 31)[0]).unwrap();
    log.close().unwrap();
    let after = fs::read(&seg).unwrap();
    assert_eq!(sha256(&after[..256]), genesis, "the forged header is kept");
    assert!(!dir.path().join(ORG).join("2026-02.seg").exists());
    assert!(dir.path().join(OTHER).join("2026-02.seg").exists());
}

/// Review finding 6: a batch whose later group needs a segment past the last ordinal is
/// refused before an earlier group's new segment is created (it used to leave that
/// segment behind, empty, as its org's newest).
#[test]
fn a_batch_refused_for_the_last_ordinal_creates_no_segment_for_an_earlier_group() {
    let dir = tempfile::tempdir().unwrap();
    let keys = support::keys_for(&["aaa", ORG, OTHER]);
    forge_last_ordinal(dir.path(), &keys);
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let before = file_names(&dir.path().join(ORG));
    // Groups are taken in (org, month) order: "aaa" before ORG.
    let mut batch = events("aaa", 2, 7, 31);
    batch.extend(events(ORG, 2, 4, 31));
    let e = log.append_batch(&batch).unwrap_err();
    assert!(is_exhausted(e.unbatched()) && e.is_refusal(), "{e:?}");
    assert!(
        !dir.path().join("aaa").exists(),
        "a segment for the refused batch"
    );
    assert_eq!(file_names(&dir.path().join(ORG)), before);
    // Without the refused group, the batch goes through.
    log.append_batch(&events("aaa", 2, 7, 31)).unwrap();
    log.close().unwrap();
}

/// The forgery alone breaks January's chain, so recovery must continue it in a new part,
/// which cannot be numbered: opening the log still works (other orgs go on), January's
/// appends are refused, and nothing is written (no continuation, no damage report).
#[test]
fn a_damaged_month_that_cannot_be_continued_does_not_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = support::keys_for(&[ORG, OTHER]);
    setup(dir.path(), &keys);
    let seg = dir.path().join(ORG).join("2026-01.seg");
    let mut bytes = fs::read(&seg).unwrap();
    forge_ordinal(&mut bytes, u32::MAX);
    fs::write(&seg, &bytes).unwrap();
    let before = file_names(&dir.path().join(ORG));

    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let e = log.append(&events(ORG, 1, 3, 0)[0]).unwrap_err();
    assert!(is_exhausted(&e), "{e:?}");
    log.append(&events(OTHER, 1, 6, 0)[0]).unwrap();
    log.close().unwrap();
    assert_eq!(file_names(&dir.path().join(ORG)), before, "no new file");
    assert_eq!(fs::read(&seg).unwrap(), bytes, "January untouched");
}
