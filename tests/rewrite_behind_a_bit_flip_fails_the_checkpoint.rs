//! Red-team, an attacker holding the org's key (A2 in SECURITY.md): a checkpoint kept
//! elsewhere is what shows history rewritten after it (`checkpoint_mismatch`). Unreadable
//! bytes that cut the chain before the pinned position excuse the count as damage, so a
//! rewrite (records altered, re-chained and re-signed) behind one flipped bit earlier in the
//! segment used to leave only `checksum_corruption` (class `corruption`, as for bit rot)
//! and the rewrite itself unseen. The record the checkpoint pinned last still reads past
//! the damage: its chain hash must be the pinned head, and the record after it must chain
//! to that head.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::verify::{Class, FindingKind, VerifyOptions, make_checkpoint, verify};
use auditlog::{Log, OrgId};
use support::{change_ascii, january_of, keys_for, rechain, records, resign, resource_id_byte};

const ORG: &str = "acme";

/// January with `n` records and a checkpoint of it; then `more` records appended after the
/// checkpoint. Returns the checkpoint.
fn pinned_january(
    dir: &std::path::Path,
    keys: &std::sync::Arc<auditlog::Keyring>,
    more: u64,
) -> auditlog::checkpoint::Checkpoint {
    let log = Log::open(dir, support::always(keys)).unwrap();
    log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    log.close().unwrap();
    let cp = make_checkpoint(dir, &OrgId::new(ORG).unwrap(), &**keys).unwrap();
    if more > 0 {
        let log = Log::open(dir, support::always(keys)).unwrap();
        log.append_batch(&january_of(ORG, more, 2)).unwrap();
        log.close().unwrap();
    }
    cp
}

/// Record 5 altered, everything after it re-chained and every record re-signed with the
/// org's key; then one bit of record 0 flipped (its CRC left failing); the index, which
/// would show the new heads, deleted (the key holder could as well re-sign one).
fn rewrite_behind_a_flip(dir: &std::path::Path, keys: &std::sync::Arc<auditlog::Keyring>) {
    let seg = dir.join(ORG).join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    let recs = records(&b);
    let at = resource_id_byte(&b, recs[5]);
    change_ascii(&mut b[at]);
    rechain(&mut b, 5);
    let org = OrgId::new(ORG).unwrap();
    resign(&mut b, &org, &support::signer(&**keys, &org, 1));
    b[recs[0].off + 70] ^= 1;
    fs::write(&seg, &b).unwrap();
    fs::remove_file(dir.join(ORG).join("2026-01.idx")).unwrap();
}

fn verify_against(
    dir: &std::path::Path,
    keys: &auditlog::Keyring,
    cp: auditlog::checkpoint::Checkpoint,
) -> auditlog::verify::Report {
    verify(
        dir,
        Some(keys),
        &VerifyOptions {
            checkpoints: vec![cp],
            ..VerifyOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn a_rewrite_behind_a_flipped_bit_is_a_checkpoint_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let cp = pinned_january(d.path(), &keys, 0);
    rewrite_behind_a_flip(d.path(), &keys);
    let r = verify_against(d.path(), &keys, cp);
    support::assert_found(&r, |f| {
        f.kind == FindingKind::CheckpointMismatch && f.class == Class::Tampering
    });
}

/// With records appended after the checkpoint, the record after the pinned one names the
/// pinned head as its `prev`: a rewrite that also spoils the pinned record itself is seen
/// there.
#[test]
fn a_rewrite_that_also_spoils_the_pinned_record_is_seen_at_the_next() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let cp = pinned_january(d.path(), &keys, 3);
    rewrite_behind_a_flip(d.path(), &keys);
    let seg = d.path().join(ORG).join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    let recs = records(&b);
    b[recs[9].off + 70] ^= 1;
    fs::write(&seg, &b).unwrap();
    let r = verify_against(d.path(), &keys, cp);
    support::assert_found(&r, |f| f.kind == FindingKind::CheckpointMismatch);
}

/// Real bit rot, the same flipped bit without a rewrite, stays excused: damage, not a
/// mismatch.
#[test]
fn a_flipped_bit_alone_is_still_only_damage() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let cp = pinned_january(d.path(), &keys, 3);
    let seg = d.path().join(ORG).join("2026-01.seg");
    let mut b = fs::read(&seg).unwrap();
    let recs = records(&b);
    b[recs[0].off + 70] ^= 1;
    b[recs[9].off + 70] ^= 1;
    fs::write(&seg, &b).unwrap();
    let r = verify_against(d.path(), &keys, cp);
    support::assert_found(&r, |f| f.kind == FindingKind::ChecksumCorruption);
    assert!(
        r.findings.iter().all(|f| f.class != Class::Tampering),
        "{}",
        support::dump(&r)
    );
}
