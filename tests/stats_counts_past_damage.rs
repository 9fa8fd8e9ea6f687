//! Guards against `stats` being silently wrong on a damaged segment: it stopped counting at
//! the first unreadable frame (3000 zeroed bytes in the middle of a month turned thousands of
//! events into a few hundred) and exited 0 without a word. It must count the records after
//! the damage, as verification does, name each damaged stretch (file and byte range) on
//! stderr and in `Log::stats`, and exit 1; an incomplete last frame (a write in progress,
//! or a torn tail) is neither counted nor damage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::sync::Arc;

use auditlog::{Keyring, Log, Options, StatsDamage};
use serde_json::Value;
use support::*;

fn april_events(o: &std::process::Output) -> u64 {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["org_id"] == "org-000" && v["month"] == "2026-04")
        .unwrap()["events"]
        .as_u64()
        .unwrap()
}

#[test]
fn stats_counts_past_damage_and_names_it() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-04");
    let mut b = fs::read(&seg).unwrap();
    let recs = records(&b);
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(april_events(&o), recs.len() as u64);
    assert!(!stdout(&o).contains("damage"));

    // Zero 3000 bytes from the middle of a record in the middle of the file.
    let at = recs[recs.len() / 2].off + 7;
    let zeroed = at..at + 3000;
    b[zeroed.clone()].fill(0);
    fs::write(&seg, &b).unwrap();
    let survive = recs
        .iter()
        .filter(|r| r.end() <= zeroed.start || r.off >= zeroed.end)
        .count() as u64;
    let first_hit = recs.iter().find(|r| r.end() > zeroed.start).unwrap().off as u64;
    let next = recs.iter().find(|r| r.off >= zeroed.end).unwrap().off as u64;
    assert!(survive > recs.len() as u64 / 2 + 1);

    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(april_events(&o), survive);
    let want = format!(
        "{}: bytes {first_hit}..{next} do not read as records",
        seg.display()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    // The table form too.
    let o = auditlog_cli(Some(&fx.dir), None, ["stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));

    // The library says the same.
    let log = Log::open_read_only(&fx.dir, Options::new(Arc::new(Keyring::in_memory()))).unwrap();
    let all = log.stats().unwrap();
    let april = all
        .iter()
        .find(|s| s.org_id == "org-000" && s.month.to_string() == "2026-04")
        .unwrap();
    assert_eq!(april.events, survive);
    assert_eq!(
        april.damage,
        [StatsDamage {
            file: seg.clone(),
            start: first_hit,
            end: next,
            kind: auditlog::DamageKind::Bytes,
        }]
    );
    assert!(all.iter().filter(|s| s.damage.is_empty()).count() == all.len() - 1);
}

#[test]
fn an_incomplete_last_frame_is_not_damage() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-04");
    let b = fs::read(&seg).unwrap();
    let recs = records(&b);
    let last = recs[recs.len() - 1];
    fs::write(&seg, &b[..last.off + last.len / 2]).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(april_events(&o), recs.len() as u64 - 1);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// A segment header that fails its checks is a damaged stretch (bytes 0..256), named and
/// exit 1, and the records after it are still counted; it used to pass without a word.
#[test]
fn a_damaged_header_is_damage_and_the_records_still_count() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-04");
    let before = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(before.status.code(), Some(0), "{}", stderr(&before));
    let mut b = fs::read(&seg).unwrap();
    b[100] ^= 1;
    fs::write(&seg, &b).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(april_events(&o), april_events(&before));
    let want = format!("{}: bytes 0..256 do not read as records", seg.display());
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

/// A segment name that is not a regular file (a directory, a dangling link) is named and
/// the exit code is 1, while every other segment is still counted; it used to end stats
/// with no rows at all and exit 2.
#[test]
fn a_segment_name_that_is_not_a_file_is_named_and_the_rest_counted() {
    let fx = KeyedLog::new(EVENTS);
    let before = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    let odd = [
        seg_path(&fx.dir, "org-000", "2030-01"),
        seg_path(&fx.dir, "org-000", "2030-02"),
    ];
    fs::create_dir(&odd[0]).unwrap();
    std::os::unix::fs::symlink(fx.dir.join("nowhere"), &odd[1]).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(april_events(&o), april_events(&before));
    for p in &odd {
        let want = format!("{}: not a regular file", p.display());
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    }
    // Not counted as segment files either (each month showed `segments: 1`).
    for m in ["2030-01", "2030-02"] {
        let r = row(&o, "org-000", m);
        assert_eq!(
            (r["segments"].as_u64(), r["events"].as_u64()),
            (Some(0), Some(0)),
            "{r}"
        );
    }
    // An empty segment file is said to be empty (it was "bytes 0..0 do not read").
    let empty = seg_path(&fx.dir, "org-000", "2030-03");
    fs::write(&empty, b"").unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let want = format!("{}: empty (not even a header)", empty.display());
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

/// Two months' segments swapped (and their indexes): stats says each month holds records
/// dated outside it, and exits 1; it used to show January holding February's times, exit 0.
#[test]
fn swapped_months_are_named_as_records_outside_their_month() {
    let fx = KeyedLog::new(EVENTS);
    let before = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(before.status.code(), Some(0), "{}", stderr(&before));
    assert!(!stdout(&before).contains("misfiled"));
    let (a, b) = (
        seg_path(&fx.dir, "org-000", "2026-03"),
        seg_path(&fx.dir, "org-000", "2026-04"),
    );
    let tmp = fx.root.join("swap");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for m in ["2026-03", "2026-04"] {
        let want = format!("org org-000 {m}: ");
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
        let row = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["org_id"] == "org-000" && v["month"] == m)
            .unwrap();
        assert_eq!(row["misfiled"], row["events"], "{row}");
    }
}

/// A segment cut below its header is damage (bytes 0..len) unless a live writer is creating
/// it: stats counted 0 events for such a month and exited 0. An org directory replaced by a
/// symbolic link is named and not counted (it was left out without a word, exit 0).
#[test]
fn a_cut_header_and_a_linked_org_are_named() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-03");
    for with_index in [true, false] {
        if !with_index {
            fs::remove_file(seg.with_extension("idx")).unwrap();
        }
        let b = fs::read(&seg).unwrap();
        fs::write(&seg, &b[..100.min(b.len())]).unwrap();
        let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let want = format!("{}: bytes 0..100 do not read as records", seg.display());
        assert!(stderr(&o).contains(&want), "{with_index}: {}", stderr(&o));
    }
    let target = fx.root.join("org-001");
    fs::rename(fx.dir.join("org-001"), &target).unwrap();
    std::os::unix::fs::symlink(&target, fx.dir.join("org-001")).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("org org-001 is not a directory"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("\"org-001\""), "{}", stdout(&o));
}

fn row(o: &std::process::Output, org: &str, month: &str) -> Value {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["org_id"] == org && v["month"] == month)
        .unwrap_or_else(|| panic!("no row {org} {month}: {}", stdout(o)))
}

/// A segment file deleted beside its index (which says it held records) is named, its month
/// listed with the damage, and the exit code is 1; the month used to vanish from the
/// table, exit 0, while a query and verify both reported it.
#[test]
fn a_deleted_segment_beside_its_index_is_named() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-04");
    fs::remove_file(&seg).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let want = format!(
        "{}: missing, but its index or the part continuing it says it held records",
        seg.display()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    let april = row(&o, "org-000", "2026-04");
    assert_eq!(april["segments"], 0, "{april}");
    assert_eq!(april["damage"][0]["kind"], "missing", "{april}");
    // Without its index as well, nothing shows the month held records.
    fs::remove_file(idx_path(&fx.dir, "org-000", "2026-04")).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The directory above a log, or an org directory, given as the log: not a log (as verify
/// says), exit 1; stats printed an empty table and exited 0. An empty directory is an
/// empty log.
#[test]
fn a_directory_that_is_not_a_log_is_named() {
    let fx = KeyedLog::new(600);
    for d in [fx.root.clone(), fx.dir.join("org-000")] {
        let o = auditlog_cli(Some(&d), None, ["stats"]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", d.display(), stderr(&o));
        assert!(stderr(&o).contains("not a log directory"), "{}", stderr(&o));
    }
    let empty = fx.root.join("empty");
    fs::create_dir(&empty).unwrap();
    let o = auditlog_cli(Some(&empty), None, ["stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Another org's segment copied over one of this org's (same month, index removed): every
/// record is misfiled and the exit code is 1. Only records dated outside the month were
/// caught, so a copy from the same month passed, exit 0.
#[test]
fn a_segment_whose_header_names_another_org_is_misfiled() {
    let fx = KeyedLog::new(EVENTS);
    let mine = seg_path(&fx.dir, "org-000", "2026-04");
    fs::copy(seg_path(&fx.dir, "org-001", "2026-04"), &mine).unwrap();
    fs::remove_file(idx_path(&fx.dir, "org-000", "2026-04")).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let april = row(&o, "org-000", "2026-04");
    assert!(april["events"].as_u64().unwrap() > 0);
    assert_eq!(april["misfiled"], april["events"], "{april}");
    assert!(
        stderr(&o).contains("org org-000 2026-04: "),
        "{}",
        stderr(&o)
    );
}

/// A segment of a newer format is named and not counted, and the others still are (exit
/// 2); it used to end stats with no row at all.
#[test]
fn a_newer_segment_does_not_hide_the_others() {
    let fx = KeyedLog::new(EVENTS);
    let before = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    let seg = seg_path(&fx.dir, "org-000", "2026-04");
    let mut b = fs::read(&seg).unwrap();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut b);
    fs::write(&seg, &b).unwrap();
    let o = auditlog_cli(Some(&fx.dir), None, ["stats", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs a newer reader"),
        "{}",
        stderr(&o)
    );
    let april = row(&o, "org-000", "2026-04");
    assert_eq!(april["events"], 0, "{april}");
    assert_eq!(april["damage"][0]["kind"], "newer_format", "{april}");
    assert_eq!(
        stdout(&o).lines().count(),
        stdout(&before).lines().count(),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        row(&o, "org-001", "2026-04"),
        row(&before, "org-001", "2026-04")
    );
}
