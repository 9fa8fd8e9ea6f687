//! Guards against the `verify` and `checkpoint` commands misreporting: exit 0 only for an
//! intact log, 1 for findings (a checkpoint refused for them), 2 for usage and I/O errors (missing directory, a key file
//! readable by others); `--json` is a parseable report naming each finding; the human output
//! ends with the summary line and says when authenticity was not checked; a checkpoint
//! printed by `checkpoint` round-trips through `verify --checkpoint` and catches a rollback;
//! `--threads` changes nothing in the report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::*;

fn fixture() -> KeyedLog {
    KeyedLog::new(EVENTS)
}

fn run(dir: &Path, keyring: Option<&Path>, args: &[&str]) -> Output {
    auditlog_cli(Some(dir), keyring, args)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn intact_log_exits_0_with_a_summary_line() {
    let fx = fixture();
    let o = run(&fx.dir, Some(&fx.keyring), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("INTACT: 12 files, {EVENTS} records, ")),
        "{last}"
    );
    assert!(last.contains("0 findings (0 errors, 0 warnings)"), "{last}");
    assert!(last.contains("authenticity checked (HMAC tags)"), "{last}");
    // No progress bar when not on a terminal.
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    // Without a keyring it still passes, and says what it did not check.
    let o = run(&fx.dir, None, &["verify"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o)
            .trim_end()
            .ends_with("authenticity NOT checked (no keyring): structure and hash chain only"),
        "{}",
        stdout(&o)
    );

    // --org limits the scope.
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--org", "org-001", "--json"],
    );
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["files"], 4);
    let want: u64 = (0..4)
        .map(|i| {
            let seg = ["2026-01", "2026-02", "2026-03", "2026-04"][i];
            records(&fs::read(seg_path(&fx.dir, "org-001", seg)).unwrap()).len() as u64
        })
        .sum();
    assert_eq!(v["records"].as_u64(), Some(want));
    // An org that is not there is a usage error.
    let o = run(&fx.dir, Some(&fx.keyring), &["verify", "--org", "nobody"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn findings_exit_1_and_json_names_them() {
    let fx = fixture();
    let p = seg_path(&fx.dir, "org-002", "2026-04"); // no segment links to it
    let mut b = fs::read(&p).unwrap();
    let rec = records(&b)[5];
    let at = resource_id_byte(&b, rec);
    change_ascii(&mut b[at]);
    fix_crc(&mut b, rec.off);
    fs::write(&p, &b).unwrap();
    let next = records(&b)[6];

    let o = run(&fx.dir, Some(&fx.keyring), &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let file = p.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "ERROR tag_mismatch {file} @{}+{} seq 5: ",
            rec.off, rec.len
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "ERROR chain_break {file} @{}+{} seq 6: ",
            next.off, next.len
        )),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("FAILED: 12 files")
            && lines[2].contains("2 findings (2 errors, 0 warnings)"),
        "{}",
        lines[2]
    );

    let o = run(&fx.dir, Some(&fx.keyring), &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["kind"], "tag_mismatch");
    assert_eq!(f[0]["class"], "tampering");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["file"], file.as_str());
    assert_eq!(f[0]["offset"].as_u64(), Some(rec.off as u64));
    assert_eq!(f[0]["len"].as_u64(), Some(rec.len as u64));
    assert_eq!(f[0]["seq"], 5);
    assert!(f[0]["message"].as_str().unwrap().contains("HMAC"));
    assert_eq!(f[1]["kind"], "chain_break");
    assert_eq!(f[1]["seq"], 6);
    assert_eq!(v["authenticity_checked"], true);
    assert_eq!(v["live_writer"], false);
    assert_eq!(v["records"].as_u64(), Some(EVENTS));

    // The same report, in the same order, whatever the number of threads.
    for threads in ["1", "2", "7"] {
        let o = run(
            &fx.dir,
            Some(&fx.keyring),
            &["verify", "--json", "--threads", threads],
        );
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(json(&o), v, "--threads {threads}");
    }
    let o = run(&fx.dir, Some(&fx.keyring), &["verify", "--threads", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let fx = fixture();
    // No such directory.
    let o = run(&fx.root.join("nope"), Some(&fx.keyring), &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    // Said as it is (it used to say "not a directory"), by every command that reads a log.
    for args in [
        &["verify"][..],
        &["stats"],
        &["checkpoint"],
        &["query", "--org", "org-000"],
    ] {
        let keyring = Some(fx.keyring.as_path()).filter(|_| args[0] != "stats");
        let o = run(&fx.root.join("nope"), keyring, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("nope: no such log directory"),
            "{args:?}: {}",
            stderr(&o)
        );
        // A file is not a directory.
        let o = run(&fx.keyring, keyring, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains(": not a directory"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // A key file others can read is refused.
    fs::set_permissions(&fx.keyring, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&fx.dir, Some(&fx.keyring), &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    fs::set_permissions(&fx.keyring, fs::Permissions::from_mode(0o600)).unwrap();
    // A key file that does not exist.
    let o = run(&fx.dir, Some(&fx.root.join("missing.json")), &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    // A checkpoint file that is not one.
    let bad = fx.root.join("bad.jsonl");
    fs::write(&bad, "{not json\n").unwrap();
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--checkpoint", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 1"), "{}", stderr(&o));
    // A checkpoint of a version this build does not read: said so, not "not authentic".
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["checkpoint", "--org", "org-000"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v2 = stdout(&o).replace("\"version\":1", "\"version\":2");
    assert!(v2.contains("\"version\":2"), "{v2}");
    fs::write(&bad, format!("\n{v2}")).unwrap();
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--checkpoint", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 2: unsupported checkpoint version 2"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("authentic"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs a newer reader"),
        "{}",
        stderr(&o)
    );
    // A newer version may lay out its other fields differently: the version is what is
    // reported, not the field this build misses.
    let v2 = v2.replace("\"segments\"", "\"parts\"");
    fs::write(&bad, &v2).unwrap();
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--checkpoint", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 1: unsupported checkpoint version 2: it needs a newer reader"),
        "{}",
        stderr(&o)
    );
    // Missing --dir.
    let o = auditlog_cli(None, None, ["verify"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn checkpoint_round_trips_and_catches_rollback() {
    let fx = fixture();
    let o = run(&fx.dir, Some(&fx.keyring), &["checkpoint"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), ORGS as usize);
    for (i, cp) in lines.iter().enumerate() {
        assert_eq!(cp["format"], "auditlog-checkpoint");
        assert_eq!(cp["org_id"], format!("org-{i:03}"));
        let segs = cp["segments"].as_array().unwrap();
        let names: Vec<&str> = segs
            .iter()
            .map(|s| s["segment"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["2026-01", "2026-02", "2026-03", "2026-04"]);
        for s in segs {
            let b = fs::read(seg_path(
                &fx.dir,
                &format!("org-{i:03}"),
                s["segment"].as_str().unwrap(),
            ))
            .unwrap();
            let recs = records(&b);
            assert_eq!(s["count"].as_u64(), Some(recs.len() as u64));
            assert_eq!(s["last_seq"].as_u64(), Some(recs.last().unwrap().seq));
            assert_eq!(
                s["head"].as_str().unwrap(),
                record_hash(&b, recs.last().unwrap().off).to_hex()
            );
        }
    }
    let cp = fx.root.join("checkpoint.jsonl");
    fs::write(&cp, &text).unwrap();
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--checkpoint", cp.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // One org only.
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["checkpoint", "--org", "org-002"],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 1);

    // Roll org-001's April back by 3 records, index and all.
    let p = seg_path(&fx.dir, "org-001", "2026-04");
    let b = fs::read(&p).unwrap();
    let recs = records(&b);
    let cut = recs[recs.len() - 3].off;
    fs::write(&p, &b[..cut]).unwrap();
    fs::remove_file(idx_path(&fx.dir, "org-001", "2026-04")).unwrap();
    // Undetectable without the checkpoint (the missing index is a warning)...
    let o = run(&fx.dir, Some(&fx.keyring), &["verify"]);
    assert_eq!(o.status.code(), Some(0));
    // ...caught with it.
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["verify", "--checkpoint", cp.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    let f: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] != "missing_index")
        .collect();
    assert_eq!(f.len(), 1, "{v}");
    assert_eq!(f[0]["kind"], "truncated_against_checkpoint");
    assert_eq!(f[0]["file"], p.display().to_string());
    assert_eq!(f[0]["offset"].as_u64(), Some(cut as u64));

    // A checkpoint of a damaged log is refused (exit 1, a finding): it must never bless
    // damage.
    let mut b = fs::read(&p).unwrap();
    b[300] ^= 1;
    fs::write(&p, &b).unwrap();
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["checkpoint", "--org", "org-001"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("refusing to checkpoint") && stderr(&o).contains("--accept-damage"),
        "{}",
        stderr(&o)
    );
    // Every org: the orgs that verify are still printed (org-002 after the refused one
    // too), the refused one is named on stderr, and the exit code is 1.
    let o = run(&fx.dir, Some(&fx.keyring), &["checkpoint"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let orgs: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["org_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(orgs, ["org-000", "org-002"]);
    assert!(
        stderr(&o).contains("auditlog: org org-001: integrity failure")
            && stderr(&o).contains("refusing to checkpoint"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("1 org(s) refused"), "{}", stderr(&o));
    // Accepted explicitly, it is signed, pinning April up to its damage: the first record.
    let o = run(
        &fx.dir,
        Some(&fx.keyring),
        &["checkpoint", "--org", "org-001", "--accept-damage"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cp: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let april: Vec<&serde_json::Value> = cp["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["segment"] == "2026-04")
        .collect();
    assert_eq!(april.len(), 1, "{cp}");
    assert_eq!(april[0]["count"], 0, "{cp}");
    assert!(april[0].get("last_seq").is_none(), "{cp}");
}

/// A file name that is not UTF-8 (a stray file in an org directory, or the log directory's
/// own name) used to cut `verify --json` and `stats --json` off in the middle of the report,
/// exit 2: serde cannot serialise such a path. The name is now written as the text report
/// shows it (U+FFFD for the bad bytes), the JSON parses, and the verdict stands.
#[test]
fn json_reports_survive_file_names_that_are_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let fx = fixture();
    fs::write(
        fx.dir.join("org-000").join(OsStr::from_bytes(b"stray\xff")),
        b"",
    )
    .unwrap();
    let o = run(&fx.dir, Some(&fx.keyring), &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let report = json(&o);
    let files: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["file"].as_str())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("stray\u{fffd}")),
        "{report}"
    );

    let odd = fx.root.join(OsStr::from_bytes(b"log\xff"));
    fs::rename(&fx.dir, &odd).unwrap();
    let seg = odd.join("org-000").join("2026-03.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let recs = records(&bytes);
    bytes[recs[2].off + 40] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let o = run(&odd, None, &["stats", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let damaged: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m.get("damage").is_some())
        .collect();
    assert_eq!(damaged.len(), 1, "{}", stdout(&o));
    let file = damaged[0]["damage"][0]["file"].as_str().unwrap();
    assert!(file.contains("log\u{fffd}"), "{file}");
}

/// Past 50 findings of a kind in a file, one entry stands for the rest. The summary line
/// and the JSON report counted that entry as one finding (found by review: "250 more
/// findings of this kind" above "FAILED: … 52 findings"), and the JSON had no total. Now the
/// entry carries `omitted`, and both count every finding.
#[test]
fn findings_not_listed_are_counted() {
    let fx = fixture();
    // A keyring with other secrets under the same org ids and key ids: every tag fails.
    let other = fx.root.join("other.json");
    for _ in 0..2 {
        for o in ["org-000", "org-001", "org-002"] {
            let out = auditlog_cli(None, Some(&other), ["keys", "new", "--org", o]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let o = run(&fx.dir, Some(&other), &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = json(&o);
    let findings = report["findings"].as_array().unwrap();
    let omitted: u64 = findings
        .iter()
        .map(|f| f["omitted"].as_u64().unwrap())
        .sum();
    assert!(omitted > 0, "no file had more than 50 tag mismatches");
    let counted: u64 = findings
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["omitted"].as_u64().unwrap().max(1))
        .sum();
    let listed = findings.iter().filter(|f| f["severity"] == "error").count() as u64;
    assert!(counted > listed);
    assert_eq!(report["errors"].as_u64(), Some(counted));
    assert_eq!(report["intact"], false);

    let o = run(&fx.dir, Some(&other), &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let last = out.lines().last().unwrap();
    let warnings = report["warnings"].as_u64().unwrap();
    assert!(
        last.contains(&format!(
            "{} findings ({counted} errors, {warnings} warnings)",
            counted + warnings
        )),
        "{last}"
    );
}
