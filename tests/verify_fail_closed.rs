//! Guards against verification passing when it cannot actually authenticate: a wrong key, a
//! key the keyring lacks (whole org or one key id), a failing key provider, records with an
//! all-zero ("unsigned") tag, and a checkpoint under a wrong or missing key must each be a
//! finding, never INTACT (journald's holes: systemd issues 15425 and 11524). Without keys the
//! report must say plainly that authenticity was not checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use auditlog::verify::{Class, FindingKind as K, Report, VerifyOptions, make_checkpoint, verify};
use auditlog::{Key, KeyError, KeyId, KeyProvider, Keyring, OrgId, Timestamp};
use support::*;

/// Per segment file: how many records a finding kind was reported for, counting the
/// "N more findings of this kind" summaries.
fn per_file(dir: &Path, r: &Report, kind: K) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for x in r.findings.iter().filter(|x| x.kind == kind) {
        let n = if x.seq.is_some() {
            1
        } else if let Some(more) = x.message.split(' ').next().and_then(|w| w.parse().ok()) {
            more
        } else {
            continue;
        };
        *m.entry(reduce(dir, x).file).or_insert(0) += n;
    }
    m
}

/// Records per segment file of the log.
fn record_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for o in 0..ORGS {
        let org = format!("org-{o:03}");
        for e in fs::read_dir(dir.join(&org)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if let Some(seg) = name.strip_suffix(".seg") {
                let n = records(&fs::read(seg_path(dir, &org, seg)).unwrap()).len() as u64;
                m.insert(format!("{org}/{name}"), n);
            }
        }
    }
    m
}

/// Records signed with `key_id` per segment file (files with none left out).
fn with_key(dir: &Path, key_id: u32) -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    for (f, _) in record_counts(dir) {
        let b = fs::read(dir.join(&f)).unwrap();
        let n = records(&b)
            .iter()
            .filter(|x| u32::from_le_bytes(b[x.off + 24..x.off + 28].try_into().unwrap()) == key_id)
            .count() as u64;
        if n > 0 {
            want.insert(f, n);
        }
    }
    want
}

fn index_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = record_counts(dir)
        .keys()
        .map(|s| s.replace(".seg", ".idx"))
        .collect();
    v.sort();
    v
}

#[test]
fn wrong_keys_fail_every_record_and_index() {
    let d = tempfile::tempdir().unwrap();
    build_log(d.path());
    // Same orgs and key ids (1 and 2), different secrets.
    let wrong = keyring(Keyring::in_memory());
    for o in 0..ORGS {
        wrong.rotate(&org(&format!("org-{o:03}"))).unwrap();
    }
    let r = verify_keys(d.path(), &*wrong);
    assert!(!r.is_intact());
    assert!(r.authenticity_checked);
    // Every record of every segment is reported; nothing else but the indexes.
    assert_eq!(
        per_file(d.path(), &r, K::TagMismatch)
            .into_iter()
            .filter(|(f, _)| f.ends_with(".seg"))
            .collect::<BTreeMap<_, _>>(),
        record_counts(d.path())
    );
    let idx: Vec<String> = findings(d.path(), &r)
        .into_iter()
        .filter(|x| x.file.ends_with(".idx"))
        .map(|x| {
            assert_eq!(x.kind, K::TagMismatch.name());
            x.file
        })
        .collect();
    assert_eq!(idx, index_files(d.path()));
    assert!(r.findings.iter().all(|x| matches!(x.kind, K::TagMismatch)));
    assert!(r.findings.iter().all(|x| x.class == Class::Tampering));
    assert!(r.summary().starts_with("FAILED"), "{}", r.summary());
}

#[test]
fn one_orgs_wrong_key_fails_only_that_org() {
    let (d, keys) = fresh_log();
    // org-001's key 1 replaced; its key 2 and the other orgs' keys are right.
    let ring = Keyring::in_memory();
    let t0 = Timestamp::parse("2026-01-01").unwrap();
    for o in 0..ORGS {
        let id = org(&format!("org-{o:03}"));
        for k in 1..=2 {
            let key = if o == 1 && k == 1 {
                forged_key()
            } else {
                keys.key(&id, KeyId(k)).unwrap().unwrap()
            };
            assert_eq!(ring.add_key(&id, key, t0).unwrap(), KeyId(k));
        }
    }
    let r = verify_keys(d.path(), &ring);
    assert!(!r.is_intact());
    // Exactly org-001's records signed with key 1 fail; its key-2 records and indexes pass.
    let want: BTreeMap<String, u64> = with_key(d.path(), 1)
        .into_iter()
        .filter(|(f, _)| f.starts_with("org-001/"))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(per_file(d.path(), &r, K::TagMismatch), want);
    assert!(
        r.findings.iter().all(|x| x.kind == K::TagMismatch),
        "{}",
        dump(&r)
    );
}

#[test]
fn missing_org_in_the_keyring_is_unknown_key_never_a_pass() {
    let (d, keys) = fresh_log();
    // A keyring with org-000 and org-002 only.
    let ring = Keyring::in_memory();
    let t0 = Timestamp::parse("2026-01-01").unwrap();
    for o in [0, 2] {
        let id = org(&format!("org-{o:03}"));
        for k in 1..=2 {
            ring.add_key(&id, keys.key(&id, KeyId(k)).unwrap().unwrap(), t0)
                .unwrap();
        }
    }
    let r = verify_keys(d.path(), &ring);
    assert!(!r.is_intact());
    let unknown = per_file(d.path(), &r, K::UnknownKey);
    let want: BTreeMap<String, u64> = record_counts(d.path())
        .into_iter()
        .filter(|(f, _)| f.starts_with("org-001/"))
        .collect();
    assert_eq!(
        unknown
            .clone()
            .into_iter()
            .filter(|(f, _)| f.ends_with(".seg"))
            .collect::<BTreeMap<_, _>>(),
        want
    );
    // Each of org-001's indexes too, at its tag.
    for f in index_files(d.path())
        .iter()
        .filter(|f| f.starts_with("org-001/"))
    {
        let ilen = fs::metadata(d.path().join(f)).unwrap().len() as usize;
        assert!(findings(d.path(), &r).contains(&F {
            kind: K::UnknownKey.name(),
            file: f.clone(),
            at: Some(((ilen - 32) as u64, 32)),
            seq: None,
        }));
    }
    assert!(
        r.findings.iter().all(|x| x.kind == K::UnknownKey),
        "{}",
        dump(&r)
    );
}

#[test]
fn missing_key_id_is_unknown_key_for_exactly_its_records() {
    let (d, keys) = fresh_log();
    // Only key 1 of each org: records (and indexes) signed after the rotation are unknown.
    let ring = Keyring::in_memory();
    let t0 = Timestamp::parse("2026-01-01").unwrap();
    for o in 0..ORGS {
        let id = org(&format!("org-{o:03}"));
        ring.add_key(&id, keys.key(&id, KeyId(1)).unwrap().unwrap(), t0)
            .unwrap();
    }
    let r = verify_keys(d.path(), &ring);
    assert!(!r.is_intact());
    let want = with_key(d.path(), 2);
    assert!(!want.is_empty());
    let unknown = per_file(d.path(), &r, K::UnknownKey);
    assert_eq!(
        unknown
            .into_iter()
            .filter(|(f, _)| f.ends_with(".seg"))
            .collect::<BTreeMap<_, _>>(),
        want
    );
    // Every index is signed at close, with key 2.
    let idx: Vec<String> = findings(d.path(), &r)
        .into_iter()
        .filter(|x| x.file.ends_with(".idx"))
        .map(|x| x.file)
        .collect();
    assert_eq!(idx, index_files(d.path()));
    assert!(
        r.findings.iter().all(|x| x.kind == K::UnknownKey),
        "{}",
        dump(&r)
    );
}

/// A key provider whose backend is down.
struct Unavailable;

impl KeyProvider for Unavailable {
    fn signing_key(&self, _: &OrgId) -> Result<(KeyId, Key), KeyError> {
        Err(KeyError::Provider("KMS unreachable".into()))
    }
    fn key(&self, _: &OrgId, _: KeyId) -> Result<Option<Key>, KeyError> {
        Err(KeyError::Provider("KMS unreachable".into()))
    }
}

#[test]
fn failing_key_provider_is_never_a_pass() {
    let d = tempfile::tempdir().unwrap();
    build_log(d.path());
    let r = verify_keys(d.path(), &Unavailable);
    assert!(!r.is_intact());
    assert_eq!(
        per_file(d.path(), &r, K::UnknownKey)
            .into_iter()
            .filter(|(f, _)| f.ends_with(".seg"))
            .collect::<BTreeMap<_, _>>(),
        record_counts(d.path())
    );
}

#[test]
fn unsigned_records_fail_their_tags() {
    let (d, keys) = fresh_log();
    let (a, seg) = ("org-000", "2026-03");
    let p = seg_path(d.path(), a, seg);
    let mut b = fs::read(&p).unwrap();
    let recs = records(&b);
    // One record with an all-zero tag (CRC fixed, so only the tag can tell).
    let x = recs[7];
    b[x.end() - 32..x.end()].fill(0);
    fix_crc(&mut b, x.off);
    fs::write(&p, &b).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert_findings(
        d.path(),
        &r,
        vec![at_rec(K::TagMismatch, &format!("{a}/{seg}.seg"), x)],
    );
    // A wholly unsigned file: every tag zero.
    for x in &recs {
        b[x.end() - 32..x.end()].fill(0);
        fix_crc(&mut b, x.off);
    }
    fs::write(&p, &b).unwrap();
    let r = verify_keys(d.path(), &*keys);
    assert!(!r.is_intact());
    assert_eq!(
        per_file(d.path(), &r, K::TagMismatch),
        BTreeMap::from([(format!("{a}/{seg}.seg"), recs.len() as u64)])
    );
    // Tags are outside the chain: without keys this file looks fine, and the report says
    // that nothing was authenticated.
    let r = verify_nokeys(d.path());
    assert!(r.findings.is_empty(), "{}", dump(&r));
    assert!(!r.authenticity_checked);
    assert!(
        r.summary()
            .ends_with("authenticity NOT checked (no keyring): structure and hash chain only"),
        "{}",
        r.summary()
    );
}

#[test]
fn checkpoint_under_a_wrong_or_missing_key_is_a_finding() {
    let (d, keys) = fresh_log();
    let a = org("org-000");
    let cp = make_checkpoint(d.path(), &a, &*keys).unwrap();
    // Only the checkpointed org (the others would each get a `no_checkpoint` warning).
    let opts = VerifyOptions {
        org: Some(a.clone()),
        checkpoints: vec![cp.clone()],
        ..VerifyOptions::default()
    };
    assert!(
        verify(d.path(), Some(&*keys), &opts)
            .unwrap()
            .findings
            .is_empty()
    );
    // The statement altered (one record fewer pinned): its tag fails.
    let mut forged = cp.clone();
    forged.segments[0].count -= 1;
    let o = VerifyOptions {
        org: Some(a.clone()),
        checkpoints: vec![forged],
        ..VerifyOptions::default()
    };
    let r = verify(d.path(), Some(&*keys), &o).unwrap();
    assert!(!r.is_intact());
    let k: Vec<K> = r.findings.iter().map(|x| x.kind).collect();
    // The tag fails, and that is all: nothing in a forged statement is held against the
    // log (the count it now pins has a different chain head, once a second finding).
    assert_eq!(k, vec![K::CheckpointMismatch], "{}", dump(&r));
    // Verified with a keyring lacking the checkpoint's key: unknown key (besides the records).
    let ring = Keyring::in_memory();
    ring.add_key(
        &a,
        keys.key(&a, KeyId(1)).unwrap().unwrap(),
        Timestamp::parse("2026-01-01").unwrap(),
    )
    .unwrap();
    let r = verify(
        d.path(),
        Some(&ring),
        &VerifyOptions {
            org: Some(a.clone()),
            checkpoints: vec![cp],
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(
        r.findings.iter().any(|x| x.kind == K::UnknownKey
            && x.file == d.path().join("org-000")
            && x.message.contains("checkpoint")),
        "{}",
        dump(&r)
    );
}
