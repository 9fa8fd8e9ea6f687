//! Guards against key rotation breaking verification: records signed before a rotation must
//! keep verifying with the old key (kept by id), records after it must carry and verify
//! with the new key, even within one segment and one open log; and a keyring that lacks an
//! old key must make those records fail closed with `IntegrityKind::UnknownKey`, never pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use auditlog::verify::{FindingKind, VerifyOptions, verify};
use auditlog::{Error, Event, IntegrityKind, KeyId, Keyring, Log, Options, Receipt};
use support::{assert_verifies, org, scan, scan_clean, ts, workload};

fn acme(n: u64, seed: u64, day: &str) -> Vec<Event> {
    workload(n, 1, 5, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = "acme".into();
            e.occurred_at.0 = ts(day).0 + (e.occurred_at.0 - ts("2026-01-01").0);
            e
        })
        .collect()
}

#[test]
fn records_signed_before_and_after_a_rotation_all_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let ring = Arc::new(Keyring::open_or_create(&keyring).unwrap());
    let o = org("acme");
    assert_eq!(ring.rotate(&o).unwrap(), KeyId(1));

    let opts = |k: Arc<Keyring>| Options::new(k).personal_data(["/after/email"]);
    let mut sent: Vec<(Receipt, KeyId)> = Vec::new();
    {
        let log = Log::open(&dir, opts(ring.clone())).unwrap();
        for r in log.append_batch(&acme(15, 1, "2026-03-01")).unwrap() {
            sent.push((r, KeyId(1)));
        }
        // Rotate while the log is open and the March segment is being written.
        assert_eq!(ring.rotate(&o).unwrap(), KeyId(2));
        for e in acme(15, 2, "2026-03-10") {
            sent.push((log.append(&e).unwrap(), KeyId(2)));
        }
        // And a month started after the rotation.
        for r in log.append_batch(&acme(5, 3, "2026-04-02")).unwrap() {
            sent.push((r, KeyId(2)));
        }
        log.close().unwrap();
    }
    // After a restart, appends keep using key 2.
    {
        let ring = Arc::new(Keyring::open(&keyring).unwrap());
        let log = Log::open(&dir, opts(ring)).unwrap();
        for e in acme(5, 4, "2026-03-20") {
            sent.push((log.append(&e).unwrap(), KeyId(2)));
        }
        log.close().unwrap();
    }
    sent.sort_by_key(|(r, _)| (r.month, r.seq));

    let full = Arc::new(Keyring::open(&keyring).unwrap());
    let log = Log::open_read_only(&dir, opts(full.clone())).unwrap();
    let read = scan_clean(&log, &o);
    assert_eq!(read.len(), sent.len());
    for (v, (r, key)) in read.iter().zip(&sent) {
        assert_eq!((v.month, v.seq, v.hash), (r.month, r.seq, r.hash));
        assert_eq!(v.key_id, *key, "{} seq {}", v.month, v.seq);
    }
    assert_verifies(&dir, &*full);

    // A keyring without key 1 (the file with key 1 removed, still mode 0600).
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&keyring).unwrap()).unwrap();
    let keys = json["orgs"]["acme"]["keys"].as_array_mut().unwrap();
    keys.retain(|k| k["id"] != 1);
    assert_eq!(keys.len(), 1);
    let partial_path = tmp.path().join("partial.json");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial_path)
        .unwrap()
        .write_all(&serde_json::to_vec(&json).unwrap())
        .unwrap();
    let partial = Arc::new(Keyring::open(&partial_path).unwrap());
    let log = Log::open_read_only(&dir, opts(partial.clone())).unwrap();
    let (ok, errs) = scan(&log, &o);
    let signed_by_1 = sent.iter().filter(|(_, k)| *k == KeyId(1)).count();
    assert_eq!(errs.len(), signed_by_1, "{errs:#?}");
    for e in &errs {
        match e {
            Error::Integrity {
                kind: IntegrityKind::UnknownKey { key_id },
                seq: Some(_),
                ..
            } => assert_eq!(*key_id, KeyId(1)),
            other => panic!("expected UnknownKey, got {other}"),
        }
    }
    assert_eq!(ok.len(), sent.len() - signed_by_1);
    assert!(ok.iter().all(|v| v.key_id == KeyId(2)));

    // Full verification fails closed too.
    let report = verify(&dir, Some(&*partial), &VerifyOptions::default()).unwrap();
    assert!(!report.is_intact());
    let unknown = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::UnknownKey)
        .count();
    assert!(unknown >= signed_by_1, "{:#?}", report.findings);

    // A keyring whose key 1 has other bytes: the tags fail.
    let wrong = Keyring::in_memory();
    wrong
        .add_key(&o, auditlog::Key::generate().unwrap(), ts("2026-01-01"))
        .unwrap();
    let log = Log::open_read_only(&dir, Options::new(Arc::new(wrong))).unwrap();
    let (_, errs) = scan(&log, &o);
    let mismatched = errs
        .iter()
        .filter(|e| {
            matches!(
                e,
                Error::Integrity {
                    kind: IntegrityKind::TagMismatch { key_id: KeyId(1) },
                    ..
                }
            )
        })
        .count();
    assert_eq!(mismatched, signed_by_1);
}
