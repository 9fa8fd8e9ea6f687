//! Guards against CLI exit codes and output that hide what was found: `inspect` passing
//! with tags it could not check, `verify` exiting 0 for a damaged log when its reader
//! leaves early, `query` flooding one finding per record when the keyring lacks the org's
//! key and calling findings "records that failed", write errors without saying what was
//! written to, and bidirectional controls printed raw in tables.
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
use std::process::{Output, Stdio};

use support::*;

fn cli(dir: Option<&Path>, keyring: Option<&Path>, args: &[&str], stdout: Stdio) -> Output {
    auditlog_command(dir, keyring)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A standard output whose reader is already gone: every write fails with a broken pipe.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

fn dev_full() -> Stdio {
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

/// Makes the segment at `seg` one of format version 2, its header CRC right.
fn newer_format(seg: &Path) {
    let mut b = fs::read(seg).unwrap();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut b);
    fs::write(seg, b).unwrap();
}

/// A keyring with a key for another org only.
fn foreign_keyring(root: &Path) -> std::path::PathBuf {
    let other = root.join("other.json");
    let o = auditlog_cli(None, Some(&other), ["keys", "new", "--org", "someone-else"]);
    assert!(o.status.success(), "{}", stderr(&o));
    other
}

/// Removes the 6th record of org-000's first segment (and nothing else).
fn delete_a_record(dir: &Path) {
    let seg = segment_files(dir, "org-000").remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    let r = records(&bytes)[5];
    bytes.drain(r.off..r.end());
    fs::write(&seg, bytes).unwrap();
}

#[test]
fn inspect_with_a_keyring_lacking_the_key_exits_1_and_says_so_once() {
    let fx = KeyedLog::new(EVENTS);
    let other = foreign_keyring(&fx.root);
    let seg = segment_files(&fx.dir, "org-000").remove(0);
    let seg = seg.to_str().unwrap();
    let o = cli(None, Some(&other), &["inspect", seg], Stdio::piped());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("could not be checked"), "{err}");
    assert!(err.contains("org-000"), "{err}");
    assert!(stdout(&o).contains("tag=UnknownKey"));
    // With the right keyring, the same file passes; without one, tags are not checked
    // and that is not a finding (as documented: tags are checked with --keyring only).
    let o = cli(None, Some(&fx.keyring), &["inspect", seg], Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = cli(None, None, &["inspect", seg], Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn verify_into_a_closed_pipe_still_exits_with_its_verdict() {
    let fx = KeyedLog::new(EVENTS);
    let k = Some(fx.keyring.as_path());
    for args in [&["verify"][..], &["verify", "--json"]] {
        let o = cli(Some(&fx.dir), k, args, closed_pipe());
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    }
    delete_a_record(&fx.dir);
    for args in [&["verify"][..], &["verify", "--json"]] {
        let o = cli(Some(&fx.dir), k, args, closed_pipe());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    }
}

/// `checkpoint` into a reader that left: the exit code still says an org was refused
/// (it used to be 0, as the failed write ended the command like a success).
#[test]
fn checkpoint_into_a_closed_pipe_still_exits_1_for_a_refused_org() {
    let fx = KeyedLog::new(EVENTS);
    let k = Some(fx.keyring.as_path());
    let o = cli(Some(&fx.dir), k, &["checkpoint"], closed_pipe());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    delete_a_record(&fx.dir);
    let o = cli(Some(&fx.dir), k, &["checkpoint"], closed_pipe());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
}

/// A keyring that lacks one of the org's key ids (not all of them): the query returns the
/// records it can check, reports the others once, and its closing line says how many
/// records were not returned for want of their key.
#[test]
fn query_counts_the_records_a_missing_key_id_held_back() {
    use auditlog::{Durability, Keyring, Log, Options};
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, keyring) = (tmp.path().join("log"), tmp.path().join("keys.json"));
    let keys = std::sync::Arc::new(Keyring::open_or_create(&keyring).unwrap());
    keys.rotate(&org("acme")).unwrap();
    let log = Log::open(
        &dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    log.append_batch(&january_of("acme", 30, 1)).unwrap();
    keys.rotate(&org("acme")).unwrap();
    log.append_batch(&february_of("acme", 20, 2)).unwrap();
    log.close().unwrap();
    // Drop key 1 from the file.
    let mut ring: serde_json::Value = serde_json::from_slice(&fs::read(&keyring).unwrap()).unwrap();
    ring["orgs"]["acme"]["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["id"] != 1);
    fs::write(&keyring, serde_json::to_vec(&ring).unwrap()).unwrap();
    fs::set_permissions(&keyring, fs::Permissions::from_mode(0o600)).unwrap();

    let o = cli(
        Some(&dir),
        Some(&keyring),
        &["query", "--org", "acme"],
        Stdio::piped(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(stdout(&o).lines().count(), 20, "{err}");
    assert!(
        err.contains("30 record(s) read that name a key the keyring lacks were not returned"),
        "{err}"
    );
}

/// A segment of a newer format refuses its org's checkpoint (exit 1) and the other orgs
/// are still printed; it used to end the command (exit 2) before the orgs after it.
#[test]
fn checkpoint_refuses_an_org_with_a_newer_format_file_and_prints_the_others() {
    let fx = KeyedLog::new(EVENTS);
    let k = Some(fx.keyring.as_path());
    let all = cli(Some(&fx.dir), k, &["checkpoint"], Stdio::piped());
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let orgs = stdout(&all).lines().count();
    assert!(orgs >= 2);
    let seg = segment_files(&fx.dir, "org-000").remove(0);
    newer_format(&seg);
    let o = cli(Some(&fx.dir), k, &["checkpoint"], Stdio::piped());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(stdout(&o).lines().count(), orgs - 1, "{err}");
    assert!(
        err.contains("org org-000") && err.contains("newer"),
        "{err}"
    );
}

/// A query into a reader that left still exits 2 after naming a segment of a newer
/// format (it exited 0).
#[test]
fn query_into_a_closed_pipe_still_exits_2_for_a_newer_format() {
    let fx = KeyedLog::new(EVENTS);
    let seg = segment_files(&fx.dir, "org-000").remove(0);
    newer_format(&seg);
    let k = Some(fx.keyring.as_path());
    let o = cli(
        Some(&fx.dir),
        k,
        &["query", "--org", "org-000"],
        closed_pipe(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("newer"), "{}", stderr(&o));
}

#[test]
fn query_without_the_orgs_key_fails_once_up_front() {
    let fx = KeyedLog::new(EVENTS);
    let other = foreign_keyring(&fx.root);
    let o = cli(
        Some(&fx.dir),
        Some(&other),
        &["query", "--org", "org-000", "--limit", "2"],
        Stdio::piped(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no key for org org-000"), "{err}");
    assert!(o.stdout.is_empty());
    // --unverified still reads it.
    let o = cli(
        Some(&fx.dir),
        Some(&other),
        &["query", "--org", "org-000", "--limit", "2", "--unverified"],
        Stdio::piped(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
}

#[test]
fn query_counts_findings_and_withheld_records_apart() {
    let fx = KeyedLog::new(EVENTS);
    let k = Some(fx.keyring.as_path());
    let all = cli(
        Some(&fx.dir),
        k,
        &["query", "--org", "org-000"],
        Stdio::piped(),
    );
    let total = stdout(&all).lines().count();
    delete_a_record(&fx.dir);
    let o = cli(
        Some(&fx.dir),
        k,
        &["query", "--org", "org-000"],
        Stdio::piped(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let returned = stdout(&o).lines().count();
    assert!(returned < total - 1, "{returned} of {total}");
    let last = err.lines().last().unwrap();
    let findings = err.lines().filter(|l| l.contains("finding: ")).count();
    assert!(
        last.starts_with(&format!("auditlog: {findings} verification finding(s); ")),
        "{err}"
    );
    assert!(!err.contains("record(s) failed verification"), "{err}");
    let withheld: u64 = last
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(withheld > 0, "{last}");
    assert!(last.contains("were withheld"), "{last}");

    // A reader that is gone from the start: the finding at the 6th record is read before
    // the first write (five records fill less than the output buffer), and a query that
    // read a finding exits 1, quietly, however early its reader left.
    let o = cli(
        Some(&fx.dir),
        k,
        &["query", "--org", "org-000"],
        closed_pipe(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Broken pipe"), "{}", stderr(&o));
    // The intact org's query into the same closed pipe ends quietly with 0.
    let o = cli(
        Some(&fx.dir),
        k,
        &["query", "--org", "org-001"],
        closed_pipe(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn write_errors_say_standard_output() {
    let fx = KeyedLog::new(300);
    let (d, k) = (Some(fx.dir.as_path()), Some(fx.keyring.as_path()));
    for (dir, keyring, args) in [
        (d, k, &["verify"][..]),
        (d, None, &["stats"]),
        (d, k, &["checkpoint"]),
        (None, None, &["gen", "--events", "10"]),
        (d, k, &["query", "--org", "org-000"]),
    ] {
        let o = cli(dir, keyring, args, dev_full());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("write to standard output: No space left on device"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bidi_controls_are_escaped_in_tables_and_inspect_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ring) = (tmp.path().join("log"), tmp.path().join("keys.json"));
    let o = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "acme"]);
    assert!(o.status.success());
    let line = "{\"org_id\":\"acme\",\"occurred_at\":\"2026-03-01T10:00:00Z\",\"user_id\":\"eve\u{202e}nimda\",\"action\":\"file.read\",\"resource_type\":\"file\",\"resource_id\":\"report\u{2066}.pdf\u{200f}\"}\n";
    let mut append = auditlog_command(Some(&dir), Some(&ring));
    append.arg("append");
    let o = run_with_input(append, line.as_bytes().to_vec(), Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let raw = ['\u{202e}', '\u{2066}', '\u{200f}'];
    let o = cli(
        Some(&dir),
        Some(&ring),
        &["query", "--org", "acme", "--format", "table"],
        Stdio::piped(),
    );
    let table = stdout(&o);
    assert!(!table.contains(raw), "{table}");
    assert!(table.contains("eve\\u{202e}nimda"), "{table}");
    assert!(table.contains("report\\u{2066}.pdf\\u{200f}"), "{table}");

    let seg = segment_files(&dir, "acme").remove(0);
    let o = cli(
        None,
        Some(&ring),
        &["inspect", seg.to_str().unwrap()],
        Stdio::piped(),
    );
    let text = stdout(&o);
    assert!(!text.contains(raw), "{text}");
    assert!(text.contains("eve\\u{202e}nimda"), "{text}");

    // JSON output keeps the characters as they are stored.
    let o = cli(
        Some(&dir),
        Some(&ring),
        &["query", "--org", "acme"],
        Stdio::piped(),
    );
    assert!(stdout(&o).contains("eve\u{202e}nimda"));
}

/// `keys new` into a full standard output: the key is created all the same, and the error
/// says so (found by review: it said only that the write failed, and running the command
/// again rotated a second time). Into a closed pipe it ends quietly, exit 0.
#[test]
fn keys_new_says_the_rotation_was_done_when_its_output_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = tmp.path().join("keys.json");
    let o = cli(
        None,
        Some(&ring),
        &["keys", "new", "--org", "acme"],
        dev_full(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("write to standard output"), "{err}");
    assert!(err.contains("the rotation itself was done"), "{err}");
    assert!(err.contains("signing key 1"), "{err}");
    let o = cli(
        None,
        Some(&ring),
        &["keys", "new", "--org", "acme"],
        closed_pipe(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let keys = auditlog::Keyring::open(&ring).unwrap();
    let (id, _) = auditlog::KeyProvider::signing_key(&keys, &org("acme")).unwrap();
    assert_eq!(id.0, 2);
}

/// `--dir` or `--keyring` typed for a command that does not use it is refused (exit 2,
/// naming why), not ignored: `--keyring` on `stats` looked as if the counts were checked
/// against the keys. Set in the environment, they stay ignored where unused.
#[test]
fn flags_a_command_does_not_use_are_refused_when_typed() {
    let fx = KeyedLog::new(EVENTS);
    let seg = seg_path(&fx.dir, "org-000", "2026-01");
    let seg = seg.to_str().unwrap();
    let (d, k) = (Some(fx.dir.as_path()), Some(fx.keyring.as_path()));
    for (dir, keyring, args, why) in [
        (d, k, vec!["stats"], "without checking their tags"),
        (d, None, vec!["inspect", seg], "reads the file it is given"),
        (d, None, vec!["gen", "--events", "1"], "only prints events"),
        (None, k, vec!["gen", "--events", "1"], "only prints events"),
        (d, k, vec!["keys", "new", "--org", "x"], "only the keyring"),
    ] {
        let o = cli(dir, keyring, &args, Stdio::piped());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("has no effect on"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    let o = auditlog_command(Some(&fx.dir), None)
        .env("AUDITLOG_KEYRING", &fx.keyring)
        .arg("stats")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `AUDITLOG_DIR=` and `AUDITLOG_KEYRING=` (set, empty, as shell profiles often leave them)
/// are taken as unset: before, every command failed with "a value is required for '--dir
/// <DIR>'", `gen` included, naming a flag nobody typed. Where a command needs the value it
/// says which flag or variable to give.
#[test]
fn empty_environment_variables_are_unset() {
    let fx = KeyedLog::new(EVENTS);
    let run = |args: &[&str]| {
        auditlog_command(None, None)
            .env("AUDITLOG_DIR", "")
            .env("AUDITLOG_KEYRING", "")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["gen", "--events", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 1);
    let o = run(&["stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("dir is required (--dir or AUDITLOG_DIR)"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--dir", fx.dir.to_str().unwrap(), "stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&[
        "--dir",
        fx.dir.to_str().unwrap(),
        "query",
        "--org",
        "org-000",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("keyring is required"), "{}", stderr(&o));
    // Set and not empty, the variables still stand in for the flags.
    let o = auditlog_command(None, None)
        .env("AUDITLOG_DIR", &fx.dir)
        .env("AUDITLOG_KEYRING", &fx.keyring)
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A file planted in an org directory (no key needed) is named in `verify`'s text output
/// with its control characters escaped: raw, its name's terminal escapes concealed the
/// ERROR lines and the FAILED summary after it and drew a fake INTACT line.
#[test]
fn verify_escapes_control_characters_in_file_names() {
    use std::os::unix::ffi::OsStrExt;
    let fx = KeyedLog::new(EVENTS);
    let name = std::ffi::OsStr::from_bytes(b"zz\x1b[2K\rINTACT: 1 files\x1b[8m");
    fs::write(fx.dir.join("org-000").join(name), b"x").unwrap();
    let o = cli(
        Some(&fx.dir),
        Some(&fx.keyring),
        &["verify"],
        Stdio::piped(),
    );
    assert!(
        !o.stdout.contains(&0x1b),
        "{:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("zz\\u{1b}[2K\\u{d}INTACT"));
}

/// A checkpoint line that fails its tag (a count raised) is reported as not authentic, and
/// nothing in it is compared with the log: it no longer accused an untouched segment of
/// truncation on the word of the forged count.
#[test]
fn a_checkpoint_that_fails_its_tag_accuses_nothing() {
    let fx = KeyedLog::new(EVENTS);
    let (d, k) = (Some(fx.dir.as_path()), Some(fx.keyring.as_path()));
    let o = cli(d, k, &["checkpoint", "--org", "org-000"], Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut cp: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let count = cp["segments"][0]["count"].as_u64().unwrap();
    cp["segments"][0]["count"] = (count + 1).into();
    let file = fx.dir.parent().unwrap().join("forged.jsonl");
    fs::write(&file, format!("{cp}\n")).unwrap();
    let args = ["verify", "--org", "org-000", "--json", "--checkpoint"];
    let mut args = args.to_vec();
    args.push(file.to_str().unwrap());
    let o = cli(d, k, &args, Stdio::piped());
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["checkpoint_mismatch"]);
}

/// An org with an unreadable segment header (a copy caught while a new month was being
/// created) is refused by `checkpoint`, which no longer advises `--accept-damage` for it:
/// that refuses an unreadable header too.
#[test]
fn checkpoint_advises_accept_damage_only_where_it_signs() {
    let fx = KeyedLog::new(EVENTS);
    fs::write(seg_path(&fx.dir, "org-000", "2026-05"), b"").unwrap();
    let (d, k) = (Some(fx.dir.as_path()), Some(fx.keyring.as_path()));
    let o = cli(d, k, &["checkpoint", "--org", "org-000"], Stdio::piped());
    assert_eq!(o.status.code(), Some(1));
    let advice = stderr(&o);
    assert!(!advice.contains("signs it"), "{advice}");
    assert!(advice.contains("restore the header"), "{advice}");
    let o = cli(
        d,
        k,
        &["checkpoint", "--org", "org-000", "--accept-damage"],
        Stdio::piped(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// `verify` given the directory above a log, or an org directory, finds no segment but
/// entries a log does not have: `not_a_log`, exit 1. It said INTACT, 0 files, exit 0. An
/// empty directory is still an empty log.
#[test]
fn verify_of_a_directory_that_is_not_a_log_fails() {
    let fx = KeyedLog::new(EVENTS);
    for wrong in [fx.root.clone(), fx.dir.join("org-000")] {
        let o = cli(Some(&wrong), Some(&fx.keyring), &["verify"], Stdio::piped());
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("ERROR not_a_log"), "{out}");
        assert!(out.contains("FAILED"), "{out}");
    }
    let empty = fx.root.join("empty");
    fs::create_dir(&empty).unwrap();
    let o = cli(Some(&empty), Some(&fx.keyring), &["verify"], Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
