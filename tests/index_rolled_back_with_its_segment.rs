//! Red-team: an index put back from an older copy of the log (its tag is authentic: the
//! writer signed it, for a prefix of the same segment), together with a segment cut back to
//! what that index covers. Nothing in the files tells this from the segment as it was when
//! that index was written, so, like a rollback of the whole log, only a checkpoint made
//! after the cut records were written shows it (SECURITY.md, "truncate the tail"). A later
//! segment's `prev` link still shows it when the cut reaches records the link names.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;

use auditlog::verify::{FindingKind, VerifyOptions, make_checkpoint, verify};
use auditlog::{Log, OrgId};
use support::{january_of, keys_for, records};

const ORG: &str = "acme";

#[test]
fn an_older_index_put_back_over_a_cut_is_seen_only_against_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let seg = d.path().join(ORG).join("2026-01.seg");
    let idx = d.path().join(ORG).join("2026-01.idx");

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 10, 1)).unwrap();
    log.close().unwrap();
    // The attacker's older copy: the segment's first 10 records and their signed index.
    let old_index = fs::read(&idx).unwrap();
    let old_len = fs::metadata(&seg).unwrap().len();

    let log = Log::open(d.path(), support::always(&keys)).unwrap();
    log.append_batch(&january_of(ORG, 5, 2)).unwrap();
    log.close().unwrap();
    assert_eq!(records(&fs::read(&seg).unwrap()).len(), 15);
    let cp = make_checkpoint(d.path(), &OrgId::new(ORG).unwrap(), &*keys).unwrap();

    // Without the old index the cut shows (`index_mismatch`); with it, nothing does.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(old_len)
        .unwrap();
    let r = support::verify_keys(d.path(), &*keys);
    support::assert_found(&r, |f| f.kind == FindingKind::IndexMismatch);
    fs::write(&idx, &old_index).unwrap();
    let r = support::assert_verifies(d.path(), &*keys);
    assert!(r.findings.is_empty(), "{}", support::dump(&r));

    // The checkpoint kept elsewhere does.
    let r = verify(
        d.path(),
        Some(&*keys),
        &VerifyOptions {
            checkpoints: vec![cp],
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    support::assert_found(&r, |f| {
        f.kind == FindingKind::TruncatedAgainstCheckpoint && f.file == seg
    });
}
