//! Guards against verification passing, or misplacing, an alteration of the files: each
//! attack of FORMAT.md §7 and SECURITY.md (bit rot, edited records with and without fixed
//! CRC / chain / tags, deleted, duplicated and swapped records, truncation and rollback
//! against a checkpoint, deleted and swapped months, a tampered index, a record replayed
//! into another org) is applied to a copy of a real log built by the engine, and the exact
//! findings (kind, file, byte range, seq) are asserted. Also guards against false alarms: an
//! untouched log verifies clean, a torn tail is crash damage and not tampering, and stray or
//! quarantined files are warnings only.
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

use auditlog::format::index::SECTION_USER_MARKS;
use auditlog::verify::{
    CheckpointOptions, Class, FindingKind as K, VerifyOptions, make_checkpoint,
    make_checkpoint_with, verify,
};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Keyring, Log, Options, Timestamp};
use support::*;

const A: &str = "org-000";
const B: &str = "org-001";
/// The org's most recently created segment: no other segment links to it.
const TAIL: &str = "2026-04";
/// A month whose successor's header links to it.
const MID: &str = "2026-02";
/// The record altered in single-record cases.
const K10: usize = 10;

fn rel(org: &str, seg: &str, ext: &str) -> String {
    format!("{org}/{seg}.{ext}")
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

/// The bytes of segment `p` with one ASCII byte of record K10's `resource_id` changed (CRC,
/// chain and tags untouched; nothing written), its records and the changed byte's offset.
fn edit_k10(p: &Path) -> (Vec<u8>, Vec<Rec>, usize) {
    let mut b = read(p);
    let recs = records(&b);
    let at = resource_id_byte(&b, recs[K10]);
    change_ascii(&mut b[at]);
    (b, recs, at)
}

/// How many of MID's records 2026-03's header links to (February's records appended after
/// March was created are covered by no link).
fn linked_by_march(dir: &Path) -> usize {
    header(&read(&seg_path(dir, A, "2026-03")))
        .prev
        .unwrap()
        .count as usize
}

/// Even accepting damage, no checkpoint of org A is signed: what is wrong is not damage.
#[track_caller]
fn assert_accepting_damage_refuses(dir: &Path, keys: &Keyring) {
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    assert!(make_checkpoint_with(dir, &org(A), keys, &accept).is_err());
}

/// More April events of org-000, appended to an existing log.
fn append_april(dir: &Path, keys: Arc<Keyring>, n: u64) {
    let events: Vec<_> = Workload::new(WorkloadConfig {
        events: n,
        orgs: 1,
        days: 1,
        seed: 99,
        start: Timestamp::parse("2026-04-20").unwrap(),
        out_of_order: 0.0,
    })
    .collect();
    let log = Log::open(dir, Options::new(keys).durability(Durability::Never)).unwrap();
    log.append_batch(&events).unwrap();
    log.close().unwrap();
}

/// Index entries that do not name a record start with their seq in `bytes`.
fn bad_entries(bytes: &[u8], idx: &Path) -> usize {
    let starts: std::collections::HashMap<usize, u64> =
        records(bytes).iter().map(|r| (r.off, r.seq)).collect();
    read_index(idx)
        .entries
        .iter()
        .filter(|e| starts.get(&(e.offset as usize)) != Some(&e.seq))
        .count()
}

#[test]
fn untouched_log_verifies_clean_with_and_without_keys() {
    let (d, keys) = fresh_log();
    let r = verify_keys(d.path(), &*keys);
    assert!(r.is_intact(), "{}", dump(&r));
    assert!(r.findings.is_empty(), "{}", dump(&r));
    assert!(r.authenticity_checked);
    assert!(!r.live_writer);
    assert_eq!((r.files, r.records), (12, EVENTS));
    assert!(
        r.summary().starts_with("INTACT: 12 files, 3000 records"),
        "{}",
        r.summary()
    );

    let r = verify_nokeys(d.path());
    assert!(r.is_intact() && r.findings.is_empty(), "{}", dump(&r));
    assert!(!r.authenticity_checked);
}

#[test]
fn changed_byte_without_crc_is_checksum_corruption() {
    let (d, _) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let (b, recs, at) = edit_k10(&p);
    let rec = recs[K10];
    fs::write(&p, &b).unwrap();
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![f(
            K::ChecksumCorruption,
            &rel(A, TAIL, "seg"),
            Some((rec.off, rec.len)),
            None,
        )],
    );
    assert!(r.findings[0].covers(at as u64));
    assert_eq!(r.findings[0].class, Class::Corruption);
    assert!(!r.is_intact());
}

#[test]
fn edited_record_with_fixed_crc_fails_its_tag_and_breaks_the_chain_at_the_next() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let (mut b, recs, at) = edit_k10(&p);
    let (rec, next) = (recs[K10], recs[K10 + 1]);
    fix_crc(&mut b, rec.off);
    fs::write(&p, &b).unwrap();
    let file = rel(A, TAIL, "seg");
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![
            at_rec(K::TagMismatch, &file, rec),
            at_rec(K::ChainBreak, &file, next),
        ],
    );
    assert!(
        r.findings
            .iter()
            .any(|x| x.kind == K::TagMismatch && x.covers(at as u64))
    );
    // Without keys the chain still catches it, one record later.
    let r = verify_nokeys(d.path());
    assert_findings(d.path(), &r, vec![at_rec(K::ChainBreak, &file, next)]);
}

#[test]
fn edited_record_in_a_linked_month_also_fails_the_successors_link() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, MID);
    let (mut b, recs, _) = edit_k10(&p);
    let (rec, next) = (recs[K10], recs[K10 + 1]);
    fix_crc(&mut b, rec.off);
    fs::write(&p, &b).unwrap();
    let file = rel(A, MID, "seg");
    let mar = read(&seg_path(d.path(), A, "2026-03"));
    assert!(
        header(&mar).prev.unwrap().count > next.seq,
        "the link must pin the edited record"
    );
    let r = verify_keys(d.path(), &*keys);
    // 2026-03's header proves 2026-02 held all its records; only the first 11 chain.
    assert_findings(
        d.path(),
        &r,
        vec![
            at_rec(K::TagMismatch, &file, rec),
            at_rec(K::ChainBreak, &file, next),
            f(
                K::LinkMismatch,
                &file,
                Some((next.off, b.len() - next.off)),
                None,
            ),
        ],
    );
}

/// A linked month cut at a record boundary, and its index's CRC broken so that the index
/// cannot pin the old length: the index is corrupt, but that says nothing about how many
/// records the segment held, so the successor's link still proves the cut, and a checkpoint
/// refuses it even with consent to damage.
#[test]
fn a_corrupt_index_does_not_excuse_a_cut_linked_month() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, MID);
    let b = read(&p);
    let recs = records(&b);
    // Below what 2026-03's header pins of it (later records of February came after March
    // was created, and no link covers them).
    let pinned = linked_by_march(d.path());
    let cut = recs[pinned - 2].off;
    fs::write(&p, &b[..cut]).unwrap();
    let ip = idx_path(d.path(), A, MID);
    let mut ix = read(&ip);
    let ilen = ix.len();
    ix[ilen / 2] ^= 0x20;
    fs::write(&ip, &ix).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let file = rel(A, MID, "seg");
    assert_findings(
        d.path(),
        &r,
        vec![
            f(
                K::ChecksumCorruption,
                &rel(A, MID, "idx"),
                Some((0, ilen)),
                None,
            ),
            f(K::LinkMismatch, &file, Some((cut, 0)), None),
        ],
    );
    assert_accepting_damage_refuses(d.path(), &keys);
}

#[test]
fn edited_and_rechained_record_fails_every_tag_from_there() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let (mut b, recs, at) = edit_k10(&p);
    rechain(&mut b, K10);
    fs::write(&p, &b).unwrap();
    let file = rel(A, TAIL, "seg");
    let r = verify_keys(d.path(), &*keys);
    // Tags of records 10.. fail (their chain hashes changed); 50 are listed, the rest counted.
    let mut want: Vec<F> = recs[K10..K10 + 50]
        .iter()
        .map(|x| at_rec(K::TagMismatch, &file, *x))
        .collect();
    want.push(f(K::TagMismatch, &file, None, None));
    // The signed index pins the old chain head.
    want.push(f(K::IndexMismatch, &file, Some((256, b.len() - 256)), None));
    assert_findings(d.path(), &r, want);
    assert!(
        r.findings
            .iter()
            .any(|x| x.covers(at as u64) && x.kind == K::TagMismatch)
    );
    let more = r.findings.iter().find(|x| x.offset.is_none()).unwrap();
    assert!(
        more.message
            .starts_with(&format!("{} more", recs.len() - K10 - 50)),
        "{}",
        more.message
    );
    // Without keys, only the index (derived, signed, but unchecked without keys) disagrees.
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![f(K::IndexMismatch, &file, Some((256, b.len() - 256)), None)],
    );
}

#[test]
fn history_rewritten_and_resigned_without_the_key_fails_every_tag() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let (mut b, recs, _) = edit_k10(&p);
    rechain(&mut b, K10);
    // The attacker signs with a key of their own under the same key id.
    let forged = auditlog::crypto::Signer::new(auditlog::KeyId(2), &forged_key());
    resign(&mut b, &org(A), &forged);
    fs::write(&p, &b).unwrap();
    let head = record_hash(&b, recs.last().unwrap().off);
    rewrite_index(&ip, |ix| ix.head = head, Some(&forged));
    let file = rel(A, TAIL, "seg");
    let r = verify_keys(d.path(), &*keys);
    let mut want: Vec<F> = recs[..50]
        .iter()
        .map(|x| at_rec(K::TagMismatch, &file, *x))
        .collect();
    want.push(f(K::TagMismatch, &file, None, None));
    let ilen = fs::metadata(&ip).unwrap().len() as usize;
    want.push(f(
        K::TagMismatch,
        &rel(A, TAIL, "idx"),
        Some((0, ilen)),
        None,
    ));
    assert_findings(d.path(), &r, want);
    assert!(!r.is_intact());
    // Structure and chain are consistent: without keys nothing can tell (and the report says
    // authenticity was not checked). This is why verification wants keys.
    let r = verify_nokeys(d.path());
    assert!(r.findings.is_empty(), "{}", dump(&r));
    assert!(
        r.summary().contains("authenticity NOT checked"),
        "{}",
        r.summary()
    );
}

#[test]
fn deleted_record_is_a_seq_gap() {
    let (d, _) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let b = read(&p);
    let recs = records(&b);
    let gone = recs[K10];
    let mut t = b[..gone.off].to_vec();
    t.extend_from_slice(&b[gone.end()..]);
    fs::write(&p, &t).unwrap();
    let next = recs[K10 + 1];
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![
            f(
                K::SeqGap,
                &rel(A, TAIL, "seg"),
                Some((gone.off, next.len)),
                Some(next.seq),
            ),
            // The index still describes the longer file.
            f(
                K::IndexMismatch,
                &rel(A, TAIL, "seg"),
                Some((t.len(), gone.len)),
                None,
            ),
        ],
    );
    assert!(
        r.findings
            .iter()
            .any(|x| x.kind == K::SeqGap && x.covers(gone.off as u64))
    );
}

#[test]
fn duplicated_record_is_a_seq_duplicate() {
    let (d, _) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let b = read(&p);
    let rec = records(&b)[K10];
    let mut t = b[..rec.end()].to_vec();
    t.extend_from_slice(&b[rec.off..]);
    fs::write(&p, &t).unwrap();
    let r = verify_nokeys(d.path());
    let ilen = fs::metadata(&ip).unwrap().len() as usize;
    let mut want = vec![f(
        K::SeqDuplicate,
        &rel(A, TAIL, "seg"),
        Some((rec.end(), rec.len)),
        Some(rec.seq),
    )];
    // The index's covered_len (the old length) is now mid-record, and its entries after the
    // copy point at the wrong bytes.
    assert!(!records(&t).iter().any(|x| x.end() == b.len()));
    want.push(f(
        K::IndexMismatch,
        &rel(A, TAIL, "idx"),
        Some((0, ilen)),
        None,
    ));
    if bad_entries(&t, &ip) > 0 {
        want.push(f(
            K::IndexMismatch,
            &rel(A, TAIL, "idx"),
            Some((0, ilen)),
            None,
        ));
    }
    assert_findings(d.path(), &r, want);
}

#[test]
fn swapped_records_are_a_reorder_and_a_chain_break() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let b = read(&p);
    let recs = records(&b);
    let (x, y, z) = (recs[K10], recs[K10 + 1], recs[K10 + 2]);
    let mut t = b[..x.off].to_vec();
    t.extend_from_slice(&b[y.off..y.end()]);
    t.extend_from_slice(&b[x.off..x.end()]);
    t.extend_from_slice(&b[z.off..]);
    fs::write(&p, &t).unwrap();
    let file = rel(A, TAIL, "seg");
    let r = verify_keys(d.path(), &*keys);
    let mut want = vec![
        // Record 11 where 10 belongs...
        f(K::SeqGap, &file, Some((x.off, y.len)), Some(y.seq)),
        // ...then 10, which was not seen before...
        f(
            K::SeqReorder,
            &file,
            Some((x.off + y.len, x.len)),
            Some(x.seq),
        ),
        // ...then 12, whose prev_hash is record 11's, not record 10's (not a gap: 11 was seen).
        at_rec(K::ChainBreak, &file, z),
    ];
    if bad_entries(&t, &ip) > 0 {
        let ilen = fs::metadata(&ip).unwrap().len() as usize;
        want.push(f(
            K::IndexMismatch,
            &rel(A, TAIL, "idx"),
            Some((0, ilen)),
            None,
        ));
    }
    assert_findings(d.path(), &r, want);
}

#[test]
fn truncation_at_a_record_boundary() {
    let (d, keys) = fresh_log();
    let cp = make_checkpoint(d.path(), &org(A), &*keys).unwrap();
    let p = seg_path(d.path(), A, TAIL);
    let b = read(&p);
    let cut = records(&b)[99].end();
    fs::write(&p, &b[..cut]).unwrap();
    let file = rel(A, TAIL, "seg");

    // Without a checkpoint: the index still covers the cut bytes.
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![f(K::IndexMismatch, &file, Some((cut, b.len() - cut)), None)],
    );
    assert!(r.findings[0].covers(cut as u64));

    // With the checkpoint: also truncated against it, at the cut.
    let opts = VerifyOptions {
        org: Some(org(&cp.org_id)),
        checkpoints: vec![cp.clone()],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::IndexMismatch, &file, Some((cut, b.len() - cut)), None),
            f(K::TruncatedAgainstCheckpoint, &file, Some((cut, 0)), None),
        ],
    );

    // An attacker who also deletes the index leaves only its absence, a warning (FORMAT.md
    // §7): only the checkpoint kept elsewhere proves the cut.
    fs::remove_file(idx_path(d.path(), A, TAIL)).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![f(K::MissingIndex, &rel(A, TAIL, "idx"), None, None)],
    );
    assert!(r.is_intact(), "{}", dump(&r));
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingIndex, &rel(A, TAIL, "idx"), None, None),
            f(K::TruncatedAgainstCheckpoint, &file, Some((cut, 0)), None),
        ],
    );
    let truncated = r
        .findings
        .iter()
        .find(|x| x.kind == K::TruncatedAgainstCheckpoint)
        .unwrap();
    assert!(truncated.covers(cut as u64));
    assert!(
        truncated.message.contains("100 verify"),
        "{}",
        truncated.message
    );
}

#[test]
fn rollback_to_an_older_copy_is_caught_by_a_newer_checkpoint() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let (old_seg, old_idx) = (read(&p), read(&ip));
    append_april(d.path(), Arc::clone(&keys), 40);
    let cp = make_checkpoint(d.path(), &org(A), &*keys).unwrap();
    let pinned = cp.segments.iter().find(|s| s.segment == TAIL).unwrap();
    assert_eq!(pinned.count, records(&old_seg).len() as u64 + 40);
    // The older copy is self-consistent: segment and index restored together.
    fs::write(&p, &old_seg).unwrap();
    fs::write(&ip, &old_idx).unwrap();
    assert!(verify_keys(d.path(), &*keys).findings.is_empty());
    let opts = VerifyOptions {
        org: Some(org(&cp.org_id)),
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(
        d.path(),
        &r,
        vec![f(
            K::TruncatedAgainstCheckpoint,
            &rel(A, TAIL, "seg"),
            Some((old_seg.len(), 0)),
            None,
        )],
    );
    assert_eq!(r.findings[0].class, Class::Tampering);
}

#[test]
fn rewritten_history_is_caught_by_a_checkpoint_even_when_resigned_with_the_key() {
    // An attacker holding the HMAC key can rewrite everything consistently; only a
    // checkpoint kept elsewhere shows it.
    let (d, keys) = fresh_log();
    let cp = make_checkpoint(d.path(), &org(A), &*keys).unwrap();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let (mut b, recs, at) = edit_k10(&p);
    rechain(&mut b, K10);
    let s = signer(&*keys, &org(A), 2);
    resign(&mut b, &org(A), &s);
    fs::write(&p, &b).unwrap();
    let head = record_hash(&b, recs.last().unwrap().off);
    rewrite_index(&ip, |ix| ix.head = head, Some(&s));
    // The edited record's resource id is no longer in its block's filter: a signed index
    // that contradicts an authentic record is reported.
    let r = verify_keys(d.path(), &*keys);
    assert_eq!(r.findings.len(), 1, "{}", r.summary());
    assert_eq!(r.findings[0].kind, K::IndexMismatch);
    assert!(
        r.findings[0].message.contains("filter"),
        "{}",
        r.findings[0].message
    );
    // So the forger has a writer rebuild and sign the index: then everything agrees.
    fs::remove_file(&ip).unwrap();
    Log::open(d.path(), Options::new(keys.clone()))
        .unwrap()
        .close()
        .unwrap();
    assert!(ip.exists());
    assert!(verify_keys(d.path(), &*keys).findings.is_empty());
    let opts = VerifyOptions {
        org: Some(org(&cp.org_id)),
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(
        d.path(),
        &r,
        vec![f(
            K::CheckpointMismatch,
            &rel(A, TAIL, "seg"),
            Some((256, b.len() - 256)),
            None,
        )],
    );
    assert!(r.findings[0].covers(at as u64));
}

#[test]
fn deleted_month_is_a_missing_segment() {
    let (d, keys) = fresh_log();
    // Segment deleted, index left behind.
    fs::remove_file(seg_path(d.path(), A, MID)).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let mid = rel(A, MID, "seg");
    let next = rel(A, "2026-03", "seg");
    // Each finding names the file that holds the evidence, at the field.
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingSegment, &rel(A, MID, "idx"), None, None),
            // The creation ordinals have a hole (reported on the next segment's ordinal)...
            f(K::MissingSegment, &next, Some((96, 4)), None),
            // ...and 2026-03's header links to 2026-02.
            f(K::MissingSegment, &next, Some((120, 48)), None),
        ],
    );
    // The missing file is named in the message.
    let link = r.findings.iter().find(|x| x.offset == Some(120)).unwrap();
    assert!(link.message.contains(&mid), "{link}");
    // Both files deleted.
    fs::remove_file(idx_path(d.path(), A, MID)).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingSegment, &next, Some((96, 4)), None),
            f(K::MissingSegment, &next, Some((120, 48)), None),
        ],
    );
}

#[test]
fn no_checkpoint_of_a_log_missing_a_month() {
    // A checkpoint must never bless damage: a deleted month is found through the links, and
    // `make_checkpoint` checks them as `verify` does.
    let (d, keys) = fresh_log();
    fs::remove_file(seg_path(d.path(), A, MID)).unwrap();
    fs::remove_file(idx_path(d.path(), A, MID)).unwrap();
    let e = make_checkpoint(d.path(), &org(A), &*keys)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refusing to checkpoint") && e.contains("missing_segment"),
        "{e}"
    );
    // The other orgs are fine.
    make_checkpoint(d.path(), &org(B), &*keys).unwrap();
}

#[test]
fn deleted_last_month_needs_a_checkpoint() {
    let (d, keys) = fresh_log();
    let cp = make_checkpoint(d.path(), &org(A), &*keys).unwrap();
    fs::remove_file(seg_path(d.path(), A, TAIL)).unwrap();
    fs::remove_file(idx_path(d.path(), A, TAIL)).unwrap();
    // No file links to the most recent segment: undetectable from the files alone.
    assert!(verify_keys(d.path(), &*keys).findings.is_empty());
    let opts = VerifyOptions {
        org: Some(org(&cp.org_id)),
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    assert_findings(
        d.path(),
        &r,
        vec![f(K::MissingSegment, &rel(A, TAIL, "seg"), None, None)],
    );
}

#[test]
fn swapped_months_are_misfiled_and_break_the_links() {
    let (d, keys) = fresh_log();
    let o = d.path().join(A);
    for ext in ["seg", "idx"] {
        fs::rename(o.join(format!("2026-01.{ext}")), o.join(format!("x.{ext}"))).unwrap();
        fs::rename(
            o.join(format!("2026-02.{ext}")),
            o.join(format!("2026-01.{ext}")),
        )
        .unwrap();
        fs::rename(o.join(format!("x.{ext}")), o.join(format!("2026-02.{ext}"))).unwrap();
    }
    let r = verify_keys(d.path(), &*keys);
    let ilen = |s: &str| fs::metadata(idx_path(d.path(), A, s)).unwrap().len() as usize;
    let jan = rel(A, "2026-01", "seg");
    let feb = rel(A, "2026-02", "seg");
    let mar = rel(A, "2026-03", "seg");
    // After the swap the file called 2026-01 holds February and 2026-02 holds January.
    assert_findings(
        d.path(),
        &r,
        vec![
            // Each header names the other month.
            f(K::Misfiled, &jan, Some((0, 256)), None),
            f(K::Misfiled, &feb, Some((0, 256)), None),
            // Each index too.
            f(
                K::IndexMismatch,
                &rel(A, "2026-01", "idx"),
                Some((0, ilen("2026-01"))),
                None,
            ),
            f(
                K::IndexMismatch,
                &rel(A, "2026-02", "idx"),
                Some((0, ilen("2026-02"))),
                None,
            ),
            // February's header (file 2026-01) links to "2026-01" as its predecessor, but
            // ordinal 0 is now the file called 2026-02. The evidence is the link itself:
            // neither file is blamed for missing records.
            f(K::LinkMismatch, &jan, Some((120, 48)), None),
            // March links to 2026-02, which is not ordinal 1.
            f(K::LinkMismatch, &mar, Some((120, 48)), None),
        ],
    );
    // The messages name the files as they are now.
    let msg = |file: &str| {
        r.findings
            .iter()
            .find(|x| x.kind == K::LinkMismatch && x.file.ends_with(file))
            .unwrap()
            .message
            .clone()
    };
    assert!(
        msg(&mar).contains(&feb) && msg(&mar).contains(&jan),
        "{}",
        msg(&mar)
    );
    assert!(msg(&jan).contains(&feb), "{}", msg(&jan));
}

#[test]
fn tampered_index_is_caught() {
    let (d, keys) = fresh_log();
    let ip = idx_path(d.path(), A, TAIL);
    let orig = read(&ip);
    let ilen = orig.len();
    let file = rel(A, TAIL, "idx");
    // An entry edited, CRC fixed, tag not (no key).
    rewrite_index(&ip, |ix| ix.entries[3].seq += 1, None);
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::TagMismatch, &file, Some((0, ilen)), None),
            f(K::IndexMismatch, &file, Some((0, ilen)), None),
        ],
    );
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![f(K::IndexMismatch, &file, Some((0, ilen)), None)],
    );
    // The claim of how far it covers, edited and re-signed with a forged key.
    let forged = auditlog::crypto::Signer::new(auditlog::KeyId(2), &forged_key());
    fs::write(&ip, &orig).unwrap();
    // (Without its user marks, which would no longer decode: FORMAT.md §3.3.)
    rewrite_index(
        &ip,
        |ix| {
            ix.record_count -= 1;
            ix.sections.retain(|s| s.kind != SECTION_USER_MARKS);
        },
        Some(&forged),
    );
    let r = verify_keys(d.path(), &*keys);
    let seg_len = fs::metadata(seg_path(d.path(), A, TAIL)).unwrap().len() as usize;
    let forged_len = read(&ip).len();
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::TagMismatch, &file, Some((0, forged_len)), None),
            f(
                K::IndexMismatch,
                &rel(A, TAIL, "seg"),
                Some((256, seg_len - 256)),
                None,
            ),
        ],
    );
    // A byte changed without fixing the CRC: checksum corruption (class corruption, as in a
    // segment), wherever it lands: in the header, the entries, a section or the CRC itself.
    for at in [20, 140, ilen / 2, ilen - 40, ilen - 34] {
        let mut b = orig.clone();
        b[at] ^= 0x20;
        fs::write(&ip, &b).unwrap();
        let r = verify_keys(d.path(), &*keys);
        assert_findings(
            d.path(),
            &r,
            vec![f(K::ChecksumCorruption, &file, Some((0, ilen)), None)],
        );
    }
    // Damage, not tampering: a checkpoint needs consent, and then pins the whole segment
    // (the index is derived data; the segment verifies).
    assert!(make_checkpoint(d.path(), &org(A), &*keys).is_err());
    let accept = CheckpointOptions {
        accept_damage: true,
    };
    let cp = make_checkpoint_with(d.path(), &org(A), &*keys, &accept).unwrap();
    let seg = seg_path(d.path(), A, TAIL);
    let tail = cp
        .segments
        .iter()
        .find(|s| s.segment == TAIL)
        .expect("the tail segment is pinned");
    assert_eq!(tail.count, records(&read(&seg)).len() as u64);
    // Cut short, it cannot hold its CRC: the same.
    fs::write(&ip, &orig[..20]).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![f(K::ChecksumCorruption, &file, Some((0, 20)), None)],
    );
    // A malformed index whose CRC is right was made so: index_mismatch. (Reserved bytes
    // after the format version must be zero.)
    let mut b = orig.clone();
    b[10] = 1;
    let crc_at = ilen - 36;
    let crc = auditlog::format::crc32(&b[..crc_at]);
    b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(&ip, &b).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![f(K::IndexMismatch, &file, Some((0, ilen)), None)],
    );
}

#[test]
fn record_replayed_into_another_org_fails_its_tag_even_with_a_shared_key() {
    // Two orgs that (wrongly) share one key: the tag still binds the org.
    let d = tempfile::tempdir().unwrap();
    let ring = Keyring::in_memory();
    let key = auditlog::Key::new(&[7u8; 32]).unwrap();
    let t0 = Timestamp::parse("2026-01-01").unwrap();
    for o in 0..ORGS {
        ring.add_key(&org(&format!("org-{o:03}")), key.clone(), t0)
            .unwrap();
    }
    let keys = Arc::new(ring);
    let mut opts = Options::new(keys.clone()).durability(Durability::Never);
    opts.index_interval = 1024;
    let log = Log::open(d.path(), opts).unwrap();
    log.append_batch(&events()).unwrap();
    log.close().unwrap();
    assert!(verify_keys(d.path(), &*keys).findings.is_empty());

    let src = read(&seg_path(d.path(), A, TAIL));
    let dst_path = seg_path(d.path(), B, TAIL);
    let mut dst = read(&dst_path);
    let n = records(&dst).len();
    // The record of org A with the seq B's segment expects next.
    let rec = records(&src)[n];
    assert_eq!(rec.seq, n as u64);
    let at = dst.len();
    dst.extend_from_slice(&src[rec.off..rec.end()]);
    fs::write(&dst_path, &dst).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let file = rel(B, TAIL, "seg");
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::ChainBreak, &file, Some((at, rec.len)), Some(rec.seq)),
            f(K::TagMismatch, &file, Some((at, rec.len)), Some(rec.seq)),
        ]
        .into_iter()
        .chain(
            // A warning when A's record is more than a day older than B's latest.
            (occurred_at(&src, rec.off) < max_occurred_at(&dst[..at]) - 86_400_000_000).then(
                || {
                    f(
                        K::TimestampAnomaly,
                        &file,
                        Some((at, rec.len)),
                        Some(rec.seq),
                    )
                },
            ),
        )
        .collect(),
    );
}

#[test]
fn stray_and_quarantined_files_are_warnings() {
    let (d, keys) = fresh_log();
    fs::write(d.path().join("notes.txt"), b"hello").unwrap();
    fs::write(d.path().join(A).join("2026-01.seg.bak"), b"x").unwrap();
    let q = d.path().join(A).join("quarantine");
    fs::create_dir(&q).unwrap();
    fs::write(q.join("2026-04.seg.torn-at-1000"), [0u8; 77]).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::UnexpectedFile, "notes.txt", None, None),
            f(
                K::UnexpectedFile,
                &format!("{A}/2026-01.seg.bak"),
                None,
                None,
            ),
            f(
                K::QuarantinedData,
                &format!("{A}/quarantine/2026-04.seg.torn-at-1000"),
                Some((0, 77)),
                None,
            ),
        ],
    );
    assert!(r.is_intact(), "{}", dump(&r));
    assert!(r.findings.iter().all(|x| x.class == Class::Anomaly));
    assert!(r.summary().starts_with("INTACT"), "{}", r.summary());
}

#[test]
fn torn_tail_is_crash_damage_not_tampering() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let ip = idx_path(d.path(), A, TAIL);
    let old_idx = read(&ip);
    append_april(d.path(), Arc::clone(&keys), 30);
    let b = read(&p);
    let last = *records(&b).last().unwrap();
    let file = rel(A, TAIL, "seg");
    // A crash while writing the last record: the index written before it covers less.
    for cut in [last.off + 3, last.off + last.len / 2, last.end() - 1] {
        fs::write(&p, &b[..cut]).unwrap();
        fs::write(&ip, &old_idx).unwrap();
        let r = verify_keys(d.path(), &*keys);
        assert_findings(
            d.path(),
            &r,
            vec![f(
                K::TornTail,
                &file,
                Some((last.off, cut - last.off)),
                None,
            )],
        );
        assert_eq!(r.findings[0].class, Class::CrashDamage);
        assert!(
            !r.findings.iter().any(|x| x.class == Class::Tampering),
            "{}",
            dump(&r)
        );
        assert!(!r.is_intact());
        // And with no index at all (which is a warning of its own).
        fs::remove_file(&ip).unwrap();
        let r = verify_keys(d.path(), &*keys);
        assert_findings(
            d.path(),
            &r,
            vec![
                f(K::MissingIndex, &rel(A, TAIL, "idx"), None, None),
                f(K::TornTail, &file, Some((last.off, cut - last.off)), None),
            ],
        );
    }
    // Garbage after the last complete record (pages persisted out of order) is a torn tail too.
    let mut g = b.clone();
    g.extend_from_slice(&[0u8; 700]);
    fs::write(&p, &g).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingIndex, &rel(A, TAIL, "idx"), None, None),
            f(K::TornTail, &file, Some((b.len(), 700)), None),
        ],
    );
}

#[test]
fn damage_inside_the_indexed_range_is_corruption_not_a_torn_tail() {
    // The index never covers bytes that were not durable, so a bad last record it covers was
    // altered or rotted after the fact: not crash damage.
    let (d, _) = fresh_log();
    let p = seg_path(d.path(), A, TAIL);
    let mut b = read(&p);
    let last = *records(&b).last().unwrap();
    b[last.off + 40] ^= 1;
    fs::write(&p, &b).unwrap();
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![f(
            K::ChecksumCorruption,
            &rel(A, TAIL, "seg"),
            Some((last.off, last.len)),
            None,
        )],
    );
    // Without the index the same bytes are indistinguishable from a torn tail (and the
    // missing index is a warning).
    fs::remove_file(idx_path(d.path(), A, TAIL)).unwrap();
    let r = verify_nokeys(d.path());
    assert_findings(
        d.path(),
        &r,
        vec![
            f(K::MissingIndex, &rel(A, TAIL, "idx"), None, None),
            f(
                K::TornTail,
                &rel(A, TAIL, "seg"),
                Some((last.off, last.len)),
                None,
            ),
        ],
    );
}

/// A signed index (of an older writer: no user marks) whose first block was cut away: the
/// records before its new first entry lie in no block, so no query would read them, and
/// verify says so.
#[test]
fn signed_index_leaving_records_in_no_block_is_reported() {
    use auditlog::format::index::{SECTION_BLOCK_FILTERS, SECTION_BLOCK_TIMES};
    let (d, keys) = fresh_log();
    let ip = idx_path(d.path(), A, TAIL);
    let s = signer(&*keys, &org(A), 2);
    let entries = read_index(&ip).entries;
    let first_block = entries[1].seq - entries[0].seq;
    rewrite_index(
        &ip,
        |ix| {
            ix.entries.remove(0);
            // As the first entry must say (nothing before it).
            ix.entries[0].max_ts_before = Timestamp(i64::MIN);
            ix.sections.retain(|x| x.kind != SECTION_USER_MARKS);
            for x in &mut ix.sections {
                match x.kind {
                    SECTION_BLOCK_TIMES => {
                        x.bytes.drain(..16);
                        let lo = x
                            .bytes
                            .chunks(16)
                            .map(|t| i64::from_le_bytes(t[..8].try_into().unwrap()))
                            .min()
                            .unwrap();
                        ix.min_ts = Timestamp(lo);
                    }
                    SECTION_BLOCK_FILTERS => {
                        let n = x.bytes[4];
                        assert!(n < 0x80, "a one-byte varint");
                        x.bytes.drain(4..5 + usize::from(n));
                    }
                    _ => {}
                }
            }
        },
        Some(&s),
    );
    let r = verify_keys(d.path(), &*keys);
    let unblocked: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == K::IndexMismatch && f.message.contains("in no block"))
        .collect();
    assert_eq!(unblocked.len(), 1, "{}", r.summary());
    assert!(
        unblocked[0]
            .message
            .starts_with(&format!("{first_block} records lie before")),
        "{}",
        unblocked[0].message
    );
}

/// Red-team attack: a stretch of zeros inserted between two records whose seqs follow one
/// another (5, 6), and the month cut short, its index deleted. The zeros cannot have held a
/// record (no seq is missing between them), so they excuse neither the checkpoint's count
/// nor the next month's link: both still report the cut. The zeros alone used to "explain"
/// it, one record per 96 bytes, leaving a lone `checksum_corruption` (class corruption, as
/// if by bit rot) that `checkpoint --accept-damage` then signed.
#[test]
fn inserted_zeros_do_not_excuse_a_cut() {
    let (d, keys) = fresh_log();
    let cp = make_checkpoint(d.path(), &org(A), &*keys).unwrap();
    let p = seg_path(d.path(), A, MID);
    let b = read(&p);
    let recs = records(&b);
    let pinned = linked_by_march(d.path());
    let keep = pinned / 2;
    let ins = recs[6].off;
    let zeros = 96 * recs.len() + 96;
    let mut cut = b[..ins].to_vec();
    cut.extend(std::iter::repeat_n(0u8, zeros));
    cut.extend_from_slice(&b[ins..recs[keep].off]);
    fs::write(&p, &cut).unwrap();
    fs::remove_file(idx_path(d.path(), A, MID)).unwrap();
    let opts = VerifyOptions {
        org: Some(org(A)),
        checkpoints: vec![cp],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &opts).unwrap();
    let kinds: Vec<K> = r.findings.iter().map(|f| f.kind).collect();
    for want in [
        K::ChecksumCorruption,
        K::LinkMismatch,
        K::TruncatedAgainstCheckpoint,
    ] {
        assert!(kinds.contains(&want), "{want:?}: {}", dump(&r));
    }
    assert_accepting_damage_refuses(d.path(), &keys);
}

/// Red-team attack: one bit flipped in record 1 (its CRC left wrong) and the month cut far
/// below what the next month's link vouches for, its index deleted. One damaged record can
/// hide at most one record (the seqs around it say so), not the hundreds the link counts:
/// `link_mismatch`. Any damage used to excuse any shortfall below a link.
#[test]
fn one_damaged_record_does_not_excuse_a_cut_below_a_link() {
    let (d, keys) = fresh_log();
    let p = seg_path(d.path(), A, MID);
    let mut b = read(&p);
    let recs = records(&b);
    b[recs[1].off + 70] ^= 1;
    b.truncate(recs[5].off);
    fs::write(&p, &b).unwrap();
    fs::remove_file(idx_path(d.path(), A, MID)).unwrap();
    let r = verify_keys(d.path(), &*keys);
    let kinds: Vec<K> = r.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&K::ChecksumCorruption), "{}", dump(&r));
    assert!(kinds.contains(&K::LinkMismatch), "{}", dump(&r));
    assert_accepting_damage_refuses(d.path(), &keys);
}
