//! Guards against the forensic `inspect` command giving up on damaged or partial copies:
//! a lone segment file (no log around it) with a garbled middle, a garbled header or a cut
//! tail must still show every readable record — those after the damage included — with the
//! damaged byte ranges; `--from-offset` and `--limit` must select exactly the records asked
//! for; an index file must be summarised with its tag checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use auditlog::Keyring;
use serde_json::Value;
use support::*;

struct Fixture {
    log: KeyedLog,
    /// A copy of org-000's April segment, alone in a directory.
    seg: PathBuf,
    bytes: Vec<u8>,
    idx: PathBuf,
}

fn fixture() -> Fixture {
    let log = KeyedLog::new(EVENTS);
    let dir = &log.dir;
    let lone = log.root.join("evidence");
    fs::create_dir(&lone).unwrap();
    let seg = lone.join("copy.seg");
    fs::copy(seg_path(dir, "org-000", "2026-04"), &seg).unwrap();
    let idx = lone.join("copy.idx");
    fs::copy(idx_path(dir, "org-000", "2026-04"), &idx).unwrap();
    fs::remove_dir_all(dir).unwrap();
    let bytes = fs::read(&seg).unwrap();
    Fixture {
        log,
        seg,
        bytes,
        idx,
    }
}

fn inspect(keyring: Option<&Path>, file: &Path, args: &[&str]) -> Output {
    let mut all = vec![OsStr::new("inspect"), file.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    auditlog_cli(None, keyring, all)
}

fn items(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn seqs(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .filter(|i| i["item"] == "record")
        .map(|i| i["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn intact_segment_shows_header_and_every_record() {
    let fx = fixture();
    let o = inspect(Some(&fx.log.keyring), &fx.seg, &["--json"]);
    assert_eq!(o.status.code(), Some(0));
    let it = items(&o);
    let recs = records(&fx.bytes);
    assert_eq!(it[0]["item"], "segment_header");
    assert_eq!(it[0]["org_id"], "org-000");
    assert_eq!(it[0]["segment"], "2026-04");
    assert_eq!(it[0]["ordinal"], 3);
    assert!(it[0]["prev"].as_str().unwrap().starts_with("2026-03@"));
    assert_eq!(seqs(&it), (0..recs.len() as u64).collect::<Vec<_>>());
    for (i, r) in it[1..].iter().zip(&recs) {
        assert_eq!(i["offset"].as_u64(), Some(r.off as u64));
        assert_eq!(i["len"].as_u64(), Some(r.len as u64));
        assert_eq!(i["tag"], "valid");
        assert_eq!(
            i["hash"].as_str().unwrap(),
            record_hash(&fx.bytes, r.off).to_hex()
        );
        assert_eq!(i["event"]["org_id"], "org-000");
        assert!(i["body_error"].is_null());
    }
    assert_eq!(it[1]["linked"], true);
    assert!(it[1..].iter().all(|i| i["linked"] == true));
    // Without keys the tags are not checked, and the tool says so per record.
    let it = items(&inspect(None, &fx.seg, &["--json"]));
    assert!(it[1..].iter().all(|i| i["tag"] == "not_checked"));
}

#[test]
fn damaged_middle_is_skipped_and_later_records_still_shown() {
    let fx = fixture();
    let recs = records(&fx.bytes);
    // Garble from the middle of record 20 to the middle of record 22.
    let (start, end) = (recs[20].off + recs[20].len / 2, recs[22].off + 10);
    let mut b = fx.bytes.clone();
    for x in &mut b[start..end] {
        *x = 0xAB;
    }
    fs::write(&fx.seg, &b).unwrap();
    let o = inspect(Some(&fx.log.keyring), &fx.seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "damage makes the exit code 1");
    let it = items(&o);
    let mut want: Vec<u64> = (0..20).collect();
    want.extend(23..recs.len() as u64);
    assert_eq!(seqs(&it), want);
    let dmg: Vec<&Value> = it.iter().filter(|i| i["item"] == "damage").collect();
    assert_eq!(dmg.len(), 1);
    assert_eq!(dmg[0]["start"].as_u64(), Some(recs[20].off as u64));
    assert_eq!(dmg[0]["end"].as_u64(), Some(recs[23].off as u64));
    assert!(
        dmg[0]["reason"].as_str().unwrap().contains("crc32"),
        "{}",
        dmg[0]
    );
    // The first record after the damage cannot be linked to a record it did not see; the
    // next ones link again, and all still authenticate and decode.
    let after: Vec<&Value> = it
        .iter()
        .filter(|i| i["item"] == "record" && i["seq"].as_u64() >= Some(23))
        .collect();
    assert!(after[0]["linked"].is_null());
    assert!(after[1..].iter().all(|i| i["linked"] == true));
    assert!(
        after
            .iter()
            .all(|i| i["tag"] == "valid" && i["event"].is_object())
    );

    // The text form says the same.
    let o = inspect(Some(&fx.log.keyring), &fx.seg, &[]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "DAMAGED bytes {}..{} ({} bytes): ",
            recs[20].off,
            recs[23].off,
            recs[23].off - recs[20].off
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("@{}+{} seq=23 ", recs[23].off, recs[23].len)),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with(&format!(
            "{} records shown; damaged ranges were skipped",
            want.len()
        )),
        "{text}"
    );
}

#[test]
fn garbled_header_and_cut_tail_still_show_the_records() {
    let fx = fixture();
    let recs = records(&fx.bytes);
    let mut b = fx.bytes.clone();
    b[..256].fill(0);
    let cut = recs.last().unwrap().off + 100;
    b.truncate(cut);
    fs::write(&fx.seg, &b).unwrap();
    let o = inspect(Some(&fx.log.keyring), &fx.seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let it = items(&o);
    assert_eq!(it[0]["item"], "damage");
    assert_eq!(
        (it[0]["start"].as_u64(), it[0]["end"].as_u64()),
        (Some(0), Some(256))
    );
    // Every complete record, though the org (and so the key and body) is unknown.
    assert_eq!(seqs(&it), (0..recs.len() as u64 - 1).collect::<Vec<_>>());
    let r = it.iter().find(|i| i["item"] == "record").unwrap();
    assert_eq!(r["tag"], "not_checked");
    assert!(r["body_error"].as_str().unwrap().contains("org unknown"));
    let last = it.last().unwrap();
    assert_eq!(last["item"], "damage");
    assert_eq!(
        last["start"].as_u64(),
        Some(recs.last().unwrap().off as u64)
    );
    assert_eq!(last["end"].as_u64(), Some(cut as u64));
    assert!(
        last["reason"].as_str().unwrap().contains("incomplete"),
        "{last}"
    );
}

#[test]
fn from_offset_and_limit_select_records() {
    let fx = fixture();
    let recs = records(&fx.bytes);
    let args = |from: usize, limit: Option<u64>| {
        let mut a = vec![
            "--json".to_string(),
            "--from-offset".into(),
            from.to_string(),
        ];
        if let Some(l) = limit {
            a.extend(["--limit".into(), l.to_string()]);
        }
        a
    };
    let run = |from: usize, limit: Option<u64>| {
        let a = args(from, limit);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = inspect(Some(&fx.log.keyring), &fx.seg, &a);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        items(&o)
    };
    // At a record start: from that record.
    let it = run(recs[40].off, None);
    assert_eq!(it[0]["item"], "segment_header");
    assert_eq!(seqs(&it), (40..recs.len() as u64).collect::<Vec<_>>());
    // The first shown cannot be linked (its predecessor was skipped); the rest are.
    assert!(it[1]["linked"].is_null());
    assert_eq!(it[2]["linked"], true);
    // Inside a record: resynchronises to the next one, silently (no damage item).
    let it = run(recs[40].off + 1, None);
    assert_eq!(seqs(&it)[0], 41);
    assert!(!it.iter().any(|i| i["item"] == "damage"));
    // With a limit.
    let it = run(recs[40].off + 1, Some(5));
    assert_eq!(seqs(&it), vec![41, 42, 43, 44, 45]);
    let it = run(0, Some(3));
    assert_eq!(seqs(&it), vec![0, 1, 2]);
    // Past the last record: nothing.
    let it = run(fx.bytes.len() - 5, None);
    assert!(seqs(&it).is_empty());
    // Far past the end (u64::MAX once wrapped round to 0 and showed everything): nothing.
    for from in [fx.bytes.len(), fx.bytes.len() + 1, usize::MAX] {
        let it = run(from, None);
        assert!(seqs(&it).is_empty(), "{from}");
        assert!(!it.iter().any(|i| i["item"] == "damage"), "{from}");
    }
    // The text form counts what it showed.
    let o = inspect(None, &fx.seg, &["--limit", "7"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.trim_end().ends_with("7 records shown"), "{text}");
}

#[test]
fn index_file_is_summarised_with_its_tag_checked() {
    let fx = fixture();
    let o = inspect(Some(&fx.log.keyring), &fx.idx, &["--json"]);
    assert_eq!(o.status.code(), Some(0));
    let it = items(&o);
    assert_eq!(it.len(), 1);
    let ix = read_index(&fx.idx);
    assert_eq!(it[0]["item"], "index");
    assert_eq!(it[0]["org_id"], "org-000");
    assert_eq!(it[0]["segment"], "2026-04");
    assert_eq!(it[0]["covered_len"].as_u64(), Some(fx.bytes.len() as u64));
    assert_eq!(
        it[0]["record_count"].as_u64(),
        Some(records(&fx.bytes).len() as u64)
    );
    assert_eq!(it[0]["entries"].as_u64(), Some(ix.entries.len() as u64));
    assert_eq!(it[0]["head"].as_str().unwrap(), ix.head.to_hex());
    assert_eq!(it[0]["tag"], "valid");
    assert_eq!(
        items(&inspect(None, &fx.idx, &["--json"]))[0]["tag"],
        "not_checked"
    );
    // Another keyring: same key ids, other secrets.
    let other = fx.log.root.join("other.json");
    keyring(Keyring::open_or_create(&other).unwrap());
    let ring = Keyring::open(&other).unwrap();
    ring.rotate(&org("org-000")).unwrap();
    assert_eq!(
        items(&inspect(Some(&other), &fx.idx, &["--json"]))[0]["tag"],
        "invalid"
    );
    // Text form.
    let o = inspect(Some(&fx.log.keyring), &fx.idx, &[]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "index org=org-000 2026-04 covers {} bytes, {} records, head={}, {} entries, tag Valid",
            fx.bytes.len(),
            records(&fx.bytes).len(),
            ix.head,
            ix.entries.len()
        )),
        "{text}"
    );
    // A damaged index: reported, not fatal.
    let mut b = fs::read(&fx.idx).unwrap();
    b[150] ^= 0x10;
    fs::write(&fx.idx, &b).unwrap();
    let o = inspect(Some(&fx.log.keyring), &fx.idx, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let it = items(&o);
    assert_eq!(it.len(), 1);
    assert_eq!(it[0]["item"], "damage");
    assert!(
        it[0]["reason"].as_str().unwrap().contains("crc32"),
        "{}",
        it[0]
    );
}

/// A frame whose CRC holds but whose body does not decode is a finding (exit 1), like a
/// damaged range, a chain break or a failing tag; the help says so.
#[test]
fn undecodable_body_under_a_valid_crc_exits_1() {
    let fx = fixture();
    let recs = records(&fx.bytes);
    let last = recs[recs.len() - 1];
    let mut b = fx.bytes.clone();
    let sealed_len = u32::from_le_bytes(b[last.off + 60..last.off + 64].try_into().unwrap());
    for x in &mut b[last.off + 64..last.off + 64 + sealed_len as usize] {
        *x = 0xFF;
    }
    fix_crc(&mut b, last.off);
    fs::write(&fx.seg, &b).unwrap();
    // Without keys: only the body tells (it is the last record: no chain break after it).
    let o = inspect(None, &fx.seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let it = items(&o);
    assert!(!it.iter().any(|i| i["item"] == "damage"));
    let shown = it.last().unwrap();
    assert_eq!(shown["seq"].as_u64(), Some(last.seq));
    assert!(shown["event"].is_null());
    assert!(shown["body_error"].is_string(), "{shown}");
    let o = inspect(None, &fx.seg, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("some failed a check"), "{}", stdout(&o));
    // Limited to the intact records before it: exit 0.
    let n = (recs.len() - 1).to_string();
    assert_eq!(
        inspect(None, &fx.seg, &["--limit", &n]).status.code(),
        Some(0)
    );
}

/// An index file is decoded whole, in memory: one beyond the documented 256 MiB limit (here
/// a sparse file that starts with the index magic) is refused before it is read, not
/// loaded (a 1 GiB one used to take 2 GB of memory).
#[test]
fn index_file_over_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("huge.idx");
    let f = fs::File::create(&idx).unwrap();
    std::io::Write::write_all(&mut &f, b"AUDLOGIX").unwrap();
    f.set_len(auditlog::inspect::INSPECT_INDEX_LIMIT + 1)
        .unwrap();
    let o = inspect(None, &idx, &["--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
}

/// `inspect` of a FIFO (what a segment's name may hold in a hostile copy) is refused as not
/// a regular file, exit 2, instead of blocking in `open` until something writes to it.
/// Inspection reads at offsets within the file's length, so no FIFO or device could be
/// inspected anyway. The CLI runs as a child that is killed if it outlives the bound, and
/// the test asserts that it ended by itself.
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("2026-01.seg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("inspect")
        .arg(&fifo)
        .env_remove("AUDITLOG_DIR")
        .env_remove("AUDITLOG_KEYRING")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let status = status.expect("inspect of a FIFO did not end by itself within 20 s: killed");
    let o = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not a regular file") && err.contains("2026-01.seg"),
        "{err}"
    );
}

/// Review finding: `inspect` on the segment a live writer appends to showed the record
/// being written (the file's size moves page by page during a write) as damage, exit 1.
/// The incomplete end of the month's latest part is now shown as being written while the
/// writer holds the log's lock, exit 0; once the writer is gone it is damage again.
#[test]
fn the_incomplete_end_of_a_live_segment_is_being_written_not_damage() {
    let log = KeyedLog::new(EVENTS);
    let seg = seg_path(&log.dir, "org-000", "2026-04");
    let keys = std::sync::Arc::new(Keyring::open(&log.keyring).unwrap());
    let writer = auditlog::Log::open(&log.dir, auditlog::Options::new(keys)).unwrap();
    let bytes = fs::read(&seg).unwrap();
    let last = *records(&bytes).last().unwrap();
    fs::write(&seg, &bytes[..last.off + 30]).unwrap();
    let o = inspect(Some(&log.keyring), &seg, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = items(&o);
    let end = all.last().unwrap();
    assert_eq!(end["item"], "being_written", "{end}");
    assert_eq!(end["start"].as_u64(), Some(last.off as u64));
    assert!(!all.iter().any(|i| i["item"] == "damage"));
    drop(writer);
    fs::write(&seg, &bytes[..last.off + 30]).unwrap();
    let o = inspect(Some(&log.keyring), &seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(items(&o).last().unwrap()["item"], "damage");
}

/// A segment file shorter than its header, the latest part of its month, while the writer
/// holds the log's lock, is one being created: shown as being written (exit 0), not as a
/// damaged header; once the writer is gone it is damage.
#[test]
fn a_live_segment_shorter_than_its_header_is_being_written_not_damage() {
    let log = KeyedLog::new(EVENTS);
    let seg = seg_path(&log.dir, "org-000", "2026-04");
    let keys = std::sync::Arc::new(Keyring::open(&log.keyring).unwrap());
    let writer = auditlog::Log::open(&log.dir, auditlog::Options::new(keys)).unwrap();
    let bytes = fs::read(&seg).unwrap();
    fs::write(&seg, &bytes[..100]).unwrap();
    let o = inspect(Some(&log.keyring), &seg, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = items(&o);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["item"], "being_written");
    assert_eq!(
        (all[0]["start"].as_u64(), all[0]["end"].as_u64()),
        (Some(0), Some(100))
    );
    drop(writer);
    let o = inspect(Some(&log.keyring), &seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(items(&o)[0]["item"], "damage");
}

/// `--from-offset` and `--limit` select a segment's records; given with an index file,
/// which is shown whole, they are refused (exit 2), not ignored without a word.
#[test]
fn record_selection_on_an_index_is_refused() {
    let fx = fixture();
    for args in [&["--limit", "0"][..], &["--from-offset", "99999"]] {
        let o = inspect(None, &fx.idx, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("is an index file"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    let o = inspect(None, &fx.idx, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A segment whose header is garbled, in its place in a log: the path names its org and
/// segment, so each record whose tag proves that org is shown decoded. The same file under
/// another org's directory is not believed: its tags fail, and no body is decoded.
#[test]
fn garbled_header_in_place_is_read_as_its_path_names_it() {
    let log = KeyedLog::new(EVENTS);
    let seg = seg_path(&log.dir, "org-000", "2026-04");
    let mut b = fs::read(&seg).unwrap();
    let n = records(&b).len();
    b[..256].fill(0);
    fs::write(&seg, &b).unwrap();
    let o = inspect(Some(&log.keyring), &seg, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let it = items(&o);
    assert_eq!(it[0]["item"], "damage");
    let reason = it[0]["reason"].as_str().unwrap();
    assert!(reason.contains("path names org org-000"), "{reason}");
    let recs: Vec<&Value> = it.iter().filter(|i| i["item"] == "record").collect();
    assert_eq!(recs.len(), n);
    for r in &recs {
        assert_eq!(r["tag"], "valid", "{r}");
        assert_eq!(r["event"]["org_id"], "org-000", "{r}");
        assert!(r["body_error"].is_null(), "{r}");
    }

    let elsewhere = seg_path(&log.dir, "org-001", "2026-04");
    fs::copy(&seg, &elsewhere).unwrap();
    let it = items(&inspect(Some(&log.keyring), &elsewhere, &["--json"]));
    let recs: Vec<&Value> = it.iter().filter(|i| i["item"] == "record").collect();
    assert_eq!(recs.len(), n);
    for r in &recs {
        assert_eq!(r["tag"], "invalid", "{r}");
        assert!(r["event"].is_null(), "{r}");
        let why = r["body_error"].as_str().unwrap();
        assert!(
            why.contains("does not prove the path's org org-001"),
            "{why}"
        );
    }

    // Without a keyring nothing proves the path's org.
    let it = items(&inspect(None, &seg, &["--json"]));
    let r = it.iter().find(|i| i["item"] == "record").unwrap();
    assert_eq!(r["tag"], "not_checked");
    assert!(r["event"].is_null(), "{r}");
}
