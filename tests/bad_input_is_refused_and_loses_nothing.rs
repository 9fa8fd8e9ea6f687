//! Guards against bad input doing damage or failing vaguely: an org id that escapes the log
//! directory, a malformed action, an oversized event, a malformed line fed to the CLI, an
//! org without a key, a keyring others can read, a directory another writer holds. Each
//! must be refused with its own typed error (or CLI exit code 2 naming the problem), must
//! write nothing of the refused input, and must leave every event appended before it in a
//! log that still verifies.
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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use auditlog::{
    Durability, Error, Event, InvalidField, KeyError, KeyProvider, Keyring, Log, Options, OrgId,
    Receipt,
};
use serde_json::json;
use support::{assert_verifies, file_names, keys_for, org, scan_clean, segment_files, workload};

const BIN: &str = env!("CARGO_BIN_EXE_auditlog");

fn good(n: u64, seed: u64) -> Vec<Event> {
    workload(n, 1, 40, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = "acme".into();
            e
        })
        .collect()
}

/// A log holding `n` good events of `acme`; returns the log and what it acknowledged.
fn seeded(dir: &Path, opts: Options, n: u64) -> (Log, Vec<(Event, Receipt)>) {
    let log = Log::open(dir, opts).unwrap();
    let events = good(n, 1);
    let receipts = log.append_batch(&events).unwrap();
    (log, events.into_iter().zip(receipts).collect())
}

/// The log at `dir` verifies and holds exactly `expected` for `acme` (and no other org
/// directory than `acme`).
fn assert_intact(dir: &Path, keys: Arc<dyn KeyProvider>, expected: &[(Event, Receipt)]) {
    let log = Log::open_read_only(dir, Options::new(keys.clone())).unwrap();
    assert_eq!(log.orgs().unwrap(), vec![org("acme")]);
    let read = scan_clean(&log, &org("acme"));
    let mut want: Vec<&(Event, Receipt)> = expected.iter().collect();
    want.sort_by_key(|(_, r)| (r.month, r.seq));
    assert_eq!(read.len(), want.len(), "records in the log");
    for (v, (e, r)) in read.iter().zip(want) {
        assert_eq!((v.month, v.seq, v.hash), (r.month, r.seq, r.hash));
        assert_eq!(&v.event, e);
    }
    assert_verifies(dir, &*keys);
}

fn invalid_field(r: Result<Receipt, Error>) -> InvalidField {
    match r {
        Err(Error::InvalidEvent(f)) => f,
        other => panic!("expected InvalidEvent, got {other:?}"),
    }
}

#[test]
fn invalid_fields_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keys = keys_for(&["acme"]);
    let (log, sent) = seeded(&dir, Options::new(keys.clone()), 20);
    let base = sent[0].0.clone();
    let before_tmp = file_names(tmp.path());

    let cases: Vec<(&str, Event)> = vec![
        (
            "org_id",
            Event {
                org_id: "../x".into(),
                ..base.clone()
            },
        ),
        (
            "org_id",
            Event {
                org_id: "../../etc".into(),
                ..base.clone()
            },
        ),
        (
            "org_id",
            Event {
                org_id: "a/b".into(),
                ..base.clone()
            },
        ),
        (
            "org_id",
            Event {
                org_id: "..".into(),
                ..base.clone()
            },
        ),
        (
            "org_id",
            Event {
                org_id: String::new(),
                ..base.clone()
            },
        ),
        (
            "org_id",
            Event {
                org_id: "x".repeat(65),
                ..base.clone()
            },
        ),
        (
            "action",
            Event {
                action: "Booking.Created".into(),
                ..base.clone()
            },
        ),
        (
            "action",
            Event {
                action: "booking".into(),
                ..base.clone()
            },
        ),
        (
            "action",
            Event {
                action: "booking..created".into(),
                ..base.clone()
            },
        ),
        (
            "action",
            Event {
                action: "booking.créé".into(),
                ..base.clone()
            },
        ),
        (
            "action",
            Event {
                action: String::new(),
                ..base.clone()
            },
        ),
        (
            "resource_id",
            Event {
                resource_id: String::new(),
                ..base.clone()
            },
        ),
        (
            "resource_type",
            Event {
                resource_type: "a\u{0}b".into(),
                ..base.clone()
            },
        ),
        (
            "user_id",
            Event {
                user_id: Some("line\nbreak".into()),
                ..base.clone()
            },
        ),
        (
            "ip",
            Event {
                ip: Some("999.1.1.1".into()),
                ..base.clone()
            },
        ),
        (
            "occurred_at",
            Event {
                occurred_at: auditlog::Timestamp(-1),
                ..base.clone()
            },
        ),
        (
            "occurred_at",
            Event {
                occurred_at: auditlog::Timestamp(i64::MIN),
                ..base.clone()
            },
        ),
        (
            "occurred_at",
            Event {
                occurred_at: auditlog::Timestamp(i64::MAX),
                ..base.clone()
            },
        ),
    ];
    for (field, e) in &cases {
        let f = invalid_field(log.append(e));
        assert_eq!(&f.field, field, "{e:?}");
        // The refusal names the event's org, unless the org id is what it refuses.
        let org = (*field != "org_id").then(|| OrgId::new(&e.org_id).unwrap());
        assert_eq!(f.org, org, "{e:?}");
        if let Some(o) = &org {
            assert!(f.to_string().contains(&format!("for org {o}")), "{f}");
        }
        // The same event inside a batch fails the whole batch, naming the event.
        let batch = vec![base.clone(), e.clone(), base.clone()];
        match log.append_batch(&batch) {
            Err(Error::InBatch { index: 1, source }) => match *source {
                Error::InvalidEvent(f) => assert_eq!((&f.field, &f.org), (field, &org)),
                other => panic!("expected InvalidEvent, got {other:?}"),
            },
            other => panic!("expected InBatch for a batch, got {other:?}"),
        }
    }
    // Path traversal created nothing outside (or inside) the log directory.
    assert_eq!(file_names(tmp.path()), before_tmp);
    assert_eq!(
        file_names(&dir),
        vec!["LOCK".to_string(), "acme".to_string()]
    );

    // The next good append takes the next seq: nothing of the refused batches was framed.
    let last = log.append(&base).unwrap();
    let prior = sent.iter().filter(|(_, r)| r.month == last.month).count() as u64;
    assert_eq!(last.seq, prior);
    log.close().unwrap();
    let mut expected = sent;
    expected.push((base, last));
    assert_intact(&dir, keys, &expected);
}

#[test]
fn oversized_event_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = Options::new(keys.clone()).max_event_size(4096);
    let (log, mut sent) = seeded(tmp.path(), opts, 10);
    let mut big = sent[0].0.clone();
    big.after = json!({"notes": "x".repeat(5000)});
    match log.append(&big) {
        Err(Error::EventTooLarge { org, size, max }) => {
            assert_eq!(org, "acme");
            assert_eq!(max, 4096);
            assert!(size > 5000, "{size}");
        }
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    // Personal data counts too: the limit is on the whole encoded event.
    let mut big_pii = sent[0].0.clone();
    big_pii.user_agent = Some("y".repeat(4000));
    big_pii.after = json!({"notes": "z".repeat(500)});
    assert!(matches!(
        log.append(&big_pii),
        Err(Error::EventTooLarge { max: 4096, .. })
    ));
    assert!(matches!(
        log.append_batch(&[sent[1].0.clone(), big.clone()]),
        Err(Error::InBatch { index: 1, source }) if matches!(*source, Error::EventTooLarge { .. })
    ));
    // Just under the limit is fine.
    let mut fits = sent[0].0.clone();
    fits.after = json!({"notes": "x".repeat(3000)});
    let r = log.append(&fits).unwrap();
    sent.push((fits, r));
    log.close().unwrap();
    assert_intact(tmp.path(), keys, &sent);
    // A limit out of range is an option error, not a crash.
    assert!(matches!(
        Log::open(tmp.path(), Options::new(keys_for(&[])).max_event_size(0)),
        Err(Error::InvalidOption {
            option: "max_event_size",
            ..
        })
    ));
}

/// JSON nested deeper than every reader parses (serde_json's 128 levels) is refused, with
/// the personal-data pointers that clone it configured: it was appended and acknowledged,
/// then read back as a malformed record (verify: tampering), and 100,000 levels overflowed
/// the stack and aborted the process.
#[test]
fn json_nested_deeper_than_readers_parse_is_refused() {
    fn nested(depth: usize) -> serde_json::Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = serde_json::Value::Array(vec![v]);
        }
        v
    }
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = Options::new(keys.clone()).personal_data(["/after/0", "/metadata/x"]);
    let (log, mut sent) = seeded(tmp.path(), opts, 10);
    let max = auditlog::event::MAX_JSON_DEPTH;
    for (field, depth) in [
        ("after", max + 1),
        ("metadata", 100_000),
        ("before", max + 1),
    ] {
        let mut e = sent[0].0.clone();
        let v = nested(depth);
        match field {
            "after" => e.after = v,
            "metadata" => e.metadata = v,
            _ => e.before = v,
        }
        let f = invalid_field(log.append(&e));
        assert_eq!((f.field, f.org.as_ref()), (field, Some(&org("acme"))));
        assert!(f.reason.contains("nested deeper"), "{}", f.reason);
        // Dropping 100,000 levels recurses (serde_json's own drop, not the engine's).
        std::mem::forget(e);
    }
    // As deep as readers parse is kept, and reads back.
    let mut deep = sent[0].0.clone();
    deep.after = nested(max);
    let r = log.append(&deep).unwrap();
    sent.push((deep, r));
    log.close().unwrap();
    assert_intact(tmp.path(), keys, &sent);
}

#[test]
fn org_without_a_key_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let opts = Options::new(keys.clone()).durability(Durability::Always);
    let (log, sent) = seeded(tmp.path(), opts, 10);
    let nokey = Event {
        org_id: "nokey".into(),
        ..sent[0].0.clone()
    };
    match log.append(&nokey) {
        Err(Error::Key {
            org,
            source: KeyError::NoSigningKey { .. },
        }) => assert_eq!(org, "nokey"),
        other => panic!("expected Error::Key, got {other:?}"),
    }
    // A batch mixing a keyed and a keyless org fails as a whole: the keyed org's events
    // must not be written behind the caller's back (it got no receipts for them).
    let mixed = vec![sent[1].0.clone(), nokey.clone(), sent[2].0.clone()];
    assert!(matches!(
        log.append_batch(&mixed),
        Err(Error::InBatch { index: 1, source }) if matches!(*source, Error::Key { .. })
    ));
    assert!(
        log.segments(&org("nokey")).unwrap().is_empty(),
        "no segment for an org that cannot sign"
    );
    // Closing flushes and indexes what was appended; the refused org is no reason to fail.
    log.close().unwrap();
    assert_intact(tmp.path(), keys, &sent);
}

/// Review finding 6: a batch refused for a later (org, month) group writes nothing for the
/// groups before it either, not even an empty segment: `acme`'s new August used to get a
/// segment (no records, but the org's newest, every later segment's `prev` link) before
/// the keyless org, or a frozen month sorted after it, refused the batch.
#[test]
fn a_refused_batch_creates_no_segment_for_an_earlier_group() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let (log, sent) = seeded(tmp.path(), Options::new(keys.clone()), 10);
    let acme = tmp.path().join("acme");
    let before = file_names(&acme);
    let in_month = |org: &str, month: &str, n: usize| Event {
        org_id: org.into(),
        occurred_at: auditlog::Timestamp::parse(&format!("2026-{month}-02T00:00:00Z")).unwrap(),
        ..sent[n].0.clone()
    };
    // Groups are taken in (org, month) order: `acme` August before `nokey` August.
    let r = log.append_batch(&[in_month("acme", "08", 1), in_month("nokey", "08", 2)]);
    match r.as_ref().map_err(Error::unbatched) {
        Err(e @ Error::Key { .. }) => assert!(e.is_refusal()),
        other => panic!("expected Error::Key, got {other:?}"),
    }
    // August before a frozen December.
    fs::write(acme.join("2026-12.cold"), b"").unwrap();
    let r = log.append_batch(&[in_month("acme", "12", 3), in_month("acme", "08", 4)]);
    match r.as_ref().map_err(Error::unbatched) {
        Err(e @ Error::MonthFrozen { .. }) => assert!(e.is_refusal()),
        other => panic!("expected Error::MonthFrozen, got {other:?}"),
    }
    let mut with_cold = before.clone();
    with_cold.push("2026-12.cold".into());
    with_cold.sort();
    assert_eq!(
        file_names(&acme),
        with_cold,
        "a refused batch created a file"
    );
    assert!(!tmp.path().join("nokey").exists());
    fs::remove_file(acme.join("2026-12.cold")).unwrap();
    log.close().unwrap();
    assert_intact(tmp.path(), keys, &sent);
}

/// Review finding 4: `LOCK` is the name of the log directory's lock file, so an org of that
/// name could never get its directory (appends failed with an `Io` error that was not a
/// refusal). It is refused as an invalid org id, before anything is written, and the lock
/// file is left as it was.
#[test]
fn org_named_like_the_lock_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let (log, sent) = seeded(tmp.path(), Options::new(keys.clone()), 10);
    let lock = Event {
        org_id: auditlog::LOCK_FILE.into(),
        ..sent[0].0.clone()
    };
    let e = invalid_field(log.append(&lock));
    assert_eq!(e.field, "org_id");
    assert!(e.reason.contains("reserved"), "{e}");
    let batch = log.append_batch(&[sent[1].0.clone(), lock]);
    match batch {
        Err(e @ Error::InBatch { index: 1, .. }) => {
            assert!(e.is_refusal());
            assert!(
                matches!(e, Error::InBatch { source, .. } if matches!(*source, Error::InvalidEvent(_)))
            );
        }
        other => panic!("expected Error::InvalidEvent, got {other:?}"),
    }
    assert!(auditlog::OrgId::new("LOCK").is_err());
    let meta = fs::metadata(tmp.path().join(auditlog::LOCK_FILE)).unwrap();
    assert!(meta.is_file() && meta.len() == 0);
    log.close().unwrap();
    assert_intact(tmp.path(), keys, &sent);
}

/// An empty path is said to be empty (it was "its parent directory does not exist").
#[test]
fn an_empty_path_is_refused_as_empty() {
    let keys = keys_for(&["acme"]);
    match Log::open("", Options::new(keys)) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
            assert!(source.to_string().contains("empty"), "{source}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn second_writer_is_locked_out_while_readers_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let (log, mut sent) = seeded(tmp.path(), Options::new(keys.clone()), 10);
    match Log::open(tmp.path(), Options::new(keys.clone())) {
        Err(Error::Locked { dir }) => assert_eq!(dir, tmp.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // A reader beside the live writer sees every durable append, and cannot write.
    let reader = Log::open_read_only(tmp.path(), Options::new(keys.clone())).unwrap();
    assert_eq!(scan_clean(&reader, &org("acme")).len(), sent.len());
    assert!(matches!(reader.append(&sent[0].0), Err(Error::ReadOnly)));
    // The writer is unaffected by the refused open.
    let r = log.append(&sent[0].0).unwrap();
    sent.push((sent[0].0.clone(), r));
    assert_eq!(scan_clean(&reader, &org("acme")).len(), sent.len());
    log.close().unwrap();
    // Once the writer is gone, the lock is free.
    Log::open(tmp.path(), Options::new(keys.clone()))
        .unwrap()
        .close()
        .unwrap();
    assert_intact(tmp.path(), keys, &sent);
}

fn cli(args: &[&str], dir: &Path, keyring: &Path, stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The CLI may exit before reading its input (a refused keyring): a broken pipe is fine.
    if let Err(e) = input.write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

fn receipts(out: &Output) -> Vec<Receipt> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Receipt {
                org_id: v["org_id"].as_str().unwrap().into(),
                month: v["month"].as_str().unwrap().parse().unwrap(),
                seq: v["seq"].as_u64().unwrap(),
                hash: auditlog::Hash::from_hex(v["hash"].as_str().unwrap()).unwrap(),
            }
        })
        .collect()
}

/// A scratch directory holding the key file `keys.json` with a key for `acme`, and where
/// its log goes (`log`, not created): (directory, log, key file, keyring).
fn acme_key_file() -> (tempfile::TempDir, PathBuf, PathBuf, Arc<dyn KeyProvider>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let ring = Keyring::open_or_create(&keyring).unwrap();
    ring.rotate(&org("acme")).unwrap();
    (tmp, dir, keyring, Arc::new(ring))
}

#[test]
fn cli_stops_at_a_bad_line_after_appending_the_lines_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let status = Command::new(BIN)
        .arg("--keyring")
        .arg(&keyring)
        .args(["keys", "new", "--org", "acme"])
        .status()
        .unwrap();
    assert!(status.success());
    let keys: Arc<dyn KeyProvider> = Arc::new(Keyring::open(&keyring).unwrap());
    let events = good(12, 9);
    let text = lines(&events);
    let mut expected: Vec<(Event, Receipt)> = Vec::new();

    // Lines 1-3 good, 4 blank, 5 malformed JSON, 6 good: exit 2 naming line 5; lines 1-3
    // appended and receipted; line 6 not.
    let input = format!(
        "{}\n{}\n{}\n\n{{\"org_id\": \"acme\",\n{}\n",
        text[0], text[1], text[2], text[3]
    );
    let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(stderr.contains("malformed JSON"), "{stderr}");
    let rs = receipts(&out);
    assert_eq!(rs.len(), 3);
    expected.extend(events[..3].iter().cloned().zip(rs));
    assert_intact(&dir, keys.clone(), &expected);

    // Well-formed JSON that is not a valid event (bad action, unknown field, bad org id).
    let mut bad_action = events[5].clone();
    bad_action.action = "Not.An.Action".into();
    let unknown_field = text[5].replacen('{', "{\"color\":\"red\",", 1);
    let mut traversal = events[5].clone();
    traversal.org_id = "../x".into();
    for (bad, what) in [
        (serde_json::to_string(&bad_action).unwrap(), "action"),
        (unknown_field, "color"),
        (serde_json::to_string(&traversal).unwrap(), "org_id"),
    ] {
        let input = format!("{}\n{}\n{}\n", text[4], bad, text[6]);
        let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("line 2"), "{stderr}");
        assert!(stderr.contains(what), "{stderr}");
        let rs = receipts(&out);
        assert_eq!(rs.len(), 1);
        expected.push((events[4].clone(), rs[0].clone()));
        assert_intact(&dir, keys.clone(), &expected);
    }
    assert!(!tmp.path().join("x").exists());

    // An org without a key: exit 2, the good line before it kept.
    let mut keyless = events[7].clone();
    keyless.org_id = "nokey".into();
    let input = format!(
        "{}\n{}\n",
        text[8],
        serde_json::to_string(&keyless).unwrap()
    );
    let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: "), "{stderr}");
    assert!(stderr.contains("no signing key"), "{stderr}");
    let rs = receipts(&out);
    assert_eq!(rs.len(), 1);
    expected.extend(events[8..9].iter().cloned().zip(rs));
    assert_intact(&dir, keys.clone(), &expected);

    // A clean run afterwards appends normally.
    let input = format!("{}\n{}\n", text[10], text[11]);
    let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expected.extend(events[10..12].iter().cloned().zip(receipts(&out)));
    assert_intact(&dir, keys, &expected);
}

/// The log refusing one event of a batch the CLI read at once (no key for its org, too
/// large once encoded), or a line that is not UTF-8: the lines before it are appended and
/// receipted, the error names the line, the lines after it are not appended.
#[test]
fn cli_appends_the_lines_before_one_the_log_refuses() {
    let (_tmp, dir, keyring, keys) = acme_key_file();
    let events = good(12, 21);
    let text = lines(&events);
    let mut expected: Vec<(Event, Receipt)> = Vec::new();
    let mut run = |input: Vec<u8>, line: &str, reason: &str, before: std::ops::Range<usize>| {
        let out = cli(&["append", "--receipts"], &dir, &keyring, &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{line}: ")), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        let rs = receipts(&out);
        assert_eq!(rs.len(), before.len(), "{stderr}");
        expected.extend(events[before].iter().cloned().zip(rs));
        assert_intact(&dir, keys.clone(), &expected);
    };

    // Lines 1-3 good, line 4 for an org without a key, lines 5-6 good: one batch, refused
    // whole by the log; the CLI appends lines 1-3 and names line 4.
    let mut keyless = events[3].clone();
    keyless.org_id = "nokey".into();
    let input = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n",
        text[0],
        text[1],
        text[2],
        serde_json::to_string(&keyless).unwrap(),
        text[4],
        text[5]
    );
    run(input.into_bytes(), "line 4", "no signing key", 0..3);

    // Line 2 is not UTF-8.
    let mut input = format!("{}\n", text[6]).into_bytes();
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(format!("{}\n", text[7]).as_bytes());
    run(input, "line 2", "not valid UTF-8", 6..7);

    // Line 3 is over the 1 MiB default once encoded (valid otherwise).
    let mut big = events[10].clone();
    big.metadata = json!({ "blob": "x".repeat(1024 * 1024 + 1) });
    let input = format!(
        "{}\n{}\n{}\n{}\n",
        text[8],
        text[9],
        serde_json::to_string(&big).unwrap(),
        text[11]
    );
    run(
        input.into_bytes(),
        "line 3",
        "the maximum is 1048576",
        8..10,
    );
}

/// A month whose latest segment is of a newer format refuses its events before anything is
/// written: a refusal like any other. The CLI took it for a failure after writing: it
/// appended none of the batch, not even the lines before, and said some "may be on disk".
#[test]
fn cli_appends_the_lines_before_a_month_of_a_newer_format() {
    let (_tmp, dir, keyring, keys) = acme_key_file();
    let events = good(3, 23);
    let mut old = events[1].clone();
    old.occurred_at = support::ts("2025-06-15T00:00:00Z");
    let log = Log::open(&dir, Options::new(keys.clone())).unwrap();
    log.append(&old).unwrap();
    log.close().unwrap();
    let seg = support::seg_path(&dir, "acme", "2025-06");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    support::fix_header_crc(&mut bytes);
    fs::write(&seg, &bytes).unwrap();

    let log = Log::open(&dir, Options::new(keys.clone())).unwrap();
    let e = log.append(&old).unwrap_err();
    assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e}");
    assert!(e.is_refusal(), "{e}");
    log.close().unwrap();

    let text = lines(&[events[0].clone(), old, events[2].clone()]);
    let input = format!("{}\n{}\n{}\n", text[0], text[1], text[2]);
    let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: "), "{stderr}");
    assert!(stderr.contains("needs a newer reader"), "{stderr}");
    assert!(!stderr.contains("may be on disk"), "{stderr}");
    assert_eq!(receipts(&out).len(), 1, "{stderr}");
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn world_readable_keyring_is_refused() {
    let (_tmp, dir, keyring, keys) = acme_key_file();
    let (log, sent) = seeded(&dir, Options::new(keys.clone()), 5);
    log.close().unwrap();

    for mode in [0o644, 0o640, 0o604, 0o666] {
        fs::set_permissions(&keyring, fs::Permissions::from_mode(mode)).unwrap();
        match Keyring::open(&keyring) {
            Err(KeyError::InsecurePermissions { mode: m, path }) => {
                assert_eq!(m, mode);
                assert_eq!(Path::new(&path), keyring);
            }
            other => panic!("expected InsecurePermissions for {mode:o}, got {other:?}"),
        }
        let input = format!("{}\n", lines(&good(1, 3))[0]);
        let out = cli(&["append", "--receipts"], &dir, &keyring, input.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("chmod 600"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    fs::set_permissions(&keyring, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Keyring::open(&keyring).is_ok());
    assert_intact(&dir, keys, &sent);
}

/// `append` says on stderr what recovery did when it opened the log: quarantined bytes,
/// sealed segments and months it could not open are the operator's to know.
#[test]
fn cli_append_reports_what_recovery_did() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let ring = Keyring::open_or_create(&keyring).unwrap();
    ring.rotate(&org("acme")).unwrap();
    let events = good(4, 22);
    let text = lines(&events);
    let out = cli(
        &["append"],
        &dir,
        &keyring,
        format!("{}\n", text[0]).as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("recovery"));
    // A crash left half a record at the end of the month's segment.
    let seg = segment_files(&dir, "acme").remove(0);
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0x5a; 40]).unwrap();
    drop(f);
    let out = cli(
        &["append"],
        &dir,
        &keyring,
        format!("{}\n", text[1]).as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("auditlog: recovery: ") && stderr.contains("torn_tail_quarantined"),
        "{stderr}"
    );
}

/// Review finding 5: every option outside its documented bounds is refused by `open` and
/// `open_read_only` with `InvalidOption` naming the option and the bound, and the values
/// at the bounds are accepted. `Interval(1ns)` used to be accepted and kept the background
/// thread busy while idle; `index_flush_bytes = 0` rewrote every writer's index each second.
#[test]
fn options_outside_their_bounds_are_refused_with_the_bound() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys_for(&["acme"]);
    let base = || Options::new(keys.clone());
    let interval = |d| base().durability(Durability::Interval(d));
    let with = |f: &dyn Fn(&mut Options)| {
        let mut o = base();
        f(&mut o);
        o
    };
    let refused: Vec<(Options, &str, &str)> = vec![
        (interval(Duration::ZERO), "durability", "1ms..=1h"),
        (interval(Duration::from_nanos(1)), "durability", "1ms..=1h"),
        (
            interval(Duration::from_micros(999)),
            "durability",
            "1ms..=1h",
        ),
        (
            interval(Duration::from_secs(3600) + Duration::from_nanos(1)),
            "durability",
            "1ms..=1h",
        ),
        (
            with(&|o| o.index_flush_bytes = 0),
            "index_flush_bytes",
            "4096",
        ),
        (
            with(&|o| o.index_flush_bytes = 4095),
            "index_flush_bytes",
            "4096",
        ),
        (base().max_event_size(0), "max_event_size", "64 MiB"),
        (
            base().max_event_size((64 << 20) + 1),
            "max_event_size",
            "64 MiB",
        ),
        (with(&|o| o.index_interval = 255), "index_interval", "256"),
        (
            with(&|o| o.index_interval = (16 << 20) + 1),
            "index_interval",
            "16 MiB",
        ),
        (base().max_open_writers(0), "max_open_writers", "at least 1"),
        (
            base().personal_data(["/user_id"]),
            "personal_data",
            "/after",
        ),
        (
            base().personal_data(["/after/~2"]),
            "personal_data",
            "`~0` or `~1`",
        ),
        (
            base().personal_data(["/after/a~"]),
            "personal_data",
            "`~0` or `~1`",
        ),
    ];
    for (i, (opts, option, bound)) in refused.into_iter().enumerate() {
        let dir = tmp.path().join(format!("refused-{i}"));
        for r in [
            Log::open(&dir, opts.clone()).map(|_| ()),
            Log::open_read_only(tmp.path(), opts).map(|_| ()),
        ] {
            match r {
                Err(Error::InvalidOption { option: o, reason }) => {
                    assert_eq!(o, option);
                    assert!(reason.contains(bound), "{option}: {reason}");
                }
                other => panic!("{option}: expected InvalidOption, got {other:?}"),
            }
        }
        assert!(
            !dir.exists(),
            "{option}: a refused open created the directory"
        );
    }
    let accepted = [
        interval(Duration::from_millis(1)),
        interval(Duration::from_secs(3600)),
        with(&|o| o.index_flush_bytes = 4096),
        with(&|o| o.index_flush_bytes = u64::MAX),
        with(&|o| o.index_interval = 256),
        with(&|o| o.index_interval = 16 << 20),
        base().max_event_size(1).max_event_size(64 << 20),
        base()
            .max_open_writers(1)
            .parked_bytes(0)
            .query_index_cache(0),
        base().personal_data(["/after/a~0b~1c", "/metadata/~1"]),
    ];
    for (i, opts) in accepted.into_iter().enumerate() {
        let log = Log::open(tmp.path().join(format!("accepted-{i}")), opts.clone());
        log.unwrap_or_else(|e| panic!("{opts:?}: {e}"))
            .close()
            .unwrap();
    }
}

/// A log directory path that names a file is refused as such, before anything is created
/// beside or in it (it used to fail on `<file>/LOCK` with "Not a directory").
#[test]
fn a_log_directory_that_is_a_file_is_refused_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let opts = Options::new(keys_for(&["acme"]));
    for r in [
        Log::open(&file, opts.clone()).map(|_| ()),
        Log::open_read_only(&file, opts).map(|_| ()),
    ] {
        match r {
            Err(Error::Io { op, path, source }) => {
                assert_eq!((op, path.as_path()), ("open log directory", file.as_path()));
                assert!(source.to_string().contains("not a directory"), "{source}");
                assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // A missing one is reported as missing to a reader (it said "not a directory").
    let missing = tmp.path().join("missing");
    match Log::open_read_only(&missing, Options::new(keys_for(&["acme"]))) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(!source.to_string().contains("not a directory"), "{source}");
        }
        other => panic!("{other:?}"),
    }
}

/// `Log::open` creates the log directory but not missing directories above it: a mistyped
/// parent fails, naming the path, and creates nothing (it used to create the whole chain,
/// starting a new, empty log wherever the typo pointed).
#[test]
fn a_log_directory_whose_parent_is_missing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("typo").join("log");
    match Log::open(&deep, Options::new(keys_for(&["acme"]))) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(
                (op, path.as_path()),
                ("create log directory", deep.as_path())
            );
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(
                source
                    .to_string()
                    .contains("parent directory does not exist")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("typo").exists());
    // One missing level is the log directory itself, and is created.
    let log = Log::open(tmp.path().join("log"), Options::new(keys_for(&["acme"]))).unwrap();
    log.close().unwrap();
    assert!(tmp.path().join("log").join(auditlog::LOCK_FILE).is_file());
}

/// Review finding: a log reopened with another keyring holding the same key ids (other
/// secrets) rebuilt each index over under the wrong key, the authentic one gone, and went on
/// appending, so the segment then verified under neither keyring. Now recovery finds that
/// not one record verifies and refuses the month, changing nothing; a new month, whose
/// `prev` link would need that month, is refused the same way. The right keyring then
/// recovers and appends as before.
#[test]
fn a_wrong_keyring_with_the_same_key_ids_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let right = keys_for(&["acme"]);
    let (log, mut sent) = seeded(tmp.path(), Options::new(right.clone()), 20);
    log.close().unwrap();
    let files: Vec<_> = file_names(&tmp.path().join("acme"))
        .into_iter()
        .map(|n| {
            let p = tmp.path().join("acme").join(&n);
            (n, fs::read(p).unwrap())
        })
        .collect();

    let wrong = keys_for(&["acme"]);
    let log = Log::open(tmp.path(), Options::new(wrong.clone())).unwrap();
    let report = log.recovery_report();
    assert!(
        report.iter().all(|a| matches!(
            a,
            auditlog::RecoveryAction::RecoveryFailed { error, .. } if error.contains("wrong keyring")
        )) && !report.is_empty(),
        "{report:?}"
    );
    let mut later = sent[0].0.clone();
    later.occurred_at = support::ts("2027-06-01");
    for e in [&sent[0].0, &later] {
        match log.append(e) {
            Err(
                e @ Error::Key {
                    source: KeyError::WrongKey { records, .. },
                    ..
                },
            ) => {
                assert!(records > 0);
                assert!(e.is_refusal());
            }
            other => panic!("{other:?}"),
        }
    }
    log.close().unwrap();
    for (name, bytes) in &files {
        assert_eq!(
            &fs::read(tmp.path().join("acme").join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    assert_eq!(file_names(&tmp.path().join("acme")).len(), files.len());

    let log = Log::open(tmp.path(), Options::new(right.clone())).unwrap();
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    let r = log.append(&later).unwrap();
    sent.push((later, r));
    log.close().unwrap();
    assert_intact(tmp.path(), right, &sent);
}
