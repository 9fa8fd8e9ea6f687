//! Guards against `append` storing something other than what its input line says, and
//! against its input handling: serde_json keeps the last of two equal keys, turns integers
//! outside 64 bits into approximate floats and tiny floats into 0; each such line must be
//! refused (exit 2, its line number, the lines before it appended). Also: a line longer
//! than 8 times the largest event is refused without reading on, error wording (invalid
//! event vs malformed JSON, no serde line number, "no line was appended" on line 1), a
//! leading byte order mark, `--receipts` into /dev/null, and a `--dir` whose parent is
//! missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    keyring: PathBuf,
}

fn fixture() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let o = auditlog_cli(None, Some(&keyring), ["keys", "new", "--org", "acme"]);
    assert!(o.status.success(), "{}", stderr(&o));
    Fx {
        _tmp: tmp,
        dir,
        keyring,
    }
}

/// Runs `auditlog --dir D --keyring K append --durability never ARGS` with `input` on
/// standard input (written from a thread; a write the process did not read is not an
/// error) and standard output as `stdout`.
fn append_with(fx: &Fx, dir: &Path, input: Vec<u8>, args: &[&str], stdout: Stdio) -> Output {
    let mut cmd = auditlog_command(Some(dir), Some(&fx.keyring));
    cmd.args(["append", "--durability", "never"]).args(args);
    run_with_input(cmd, input, stdout)
}

fn append(fx: &Fx, input: &str) -> Output {
    append_with(fx, &fx.dir, input.as_bytes().to_vec(), &[], Stdio::piped())
}

/// An event line of org acme with `extra` fields (a leading comma included).
fn line(resource_id: &str, extra: &str) -> String {
    format!(
        r#"{{"org_id":"acme","occurred_at":"2026-03-01T10:00:00Z","action":"booking.created","resource_type":"booking","resource_id":"{resource_id}"{extra}}}"#
    )
}

/// Every stored event of acme, as query prints it.
fn stored(fx: &Fx) -> Vec<serde_json::Value> {
    if !fx.dir.join("acme").exists() {
        return Vec::new();
    }
    let o = auditlog_cli(Some(&fx.dir), Some(&fx.keyring), ["query", "--org", "acme"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_that_would_not_be_stored_as_written_is_refused_with_its_line() {
    let cases = [
        (r#","before":{"x":1,"x":2}"#, r#"duplicate key "x""#),
        (
            r#","metadata":{"a":[{"k":{"deep":1,"deep":1}}]}"#,
            r#"duplicate key "deep""#,
        ),
        (r#","after":{"x":1,"\u0078":2}"#, r#"duplicate key "x""#),
        (
            r#","after":{"n":123456789012345678901234567890}"#,
            "integer 123456789012345678901234567890",
        ),
        (
            r#","after":{"n":-9223372036854775809}"#,
            "outside the 64-bit range",
        ),
        (r#","after":{"n":1e-400}"#, "would be stored as 0"),
        (r#","after":{"n":1e400}"#, "too large for a 64-bit float"),
        // The top level too (serde_json already refused these; still refused).
        (r#","action":"booking.updated""#, "duplicate field"),
    ];
    for (extra, reason) in cases {
        let fx = fixture();
        let input = format!(
            "{}\n\n{}\n{}\n",
            line("r1", ""),
            line("r2", extra),
            line("r3", "")
        );
        let o = append(&fx, &input);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains("line 3: invalid event: "), "{extra}: {err}");
        assert!(err.contains(reason), "{extra}: {err}");
        assert!(
            err.contains("the lines before it were appended"),
            "{extra}: {err}"
        );
        let ids: Vec<_> = stored(&fx)
            .iter()
            .map(|e| e["resource_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["r1"], "{extra}");
    }
}

#[test]
fn numbers_and_keys_that_are_kept_as_written_are_accepted() {
    let fx = fixture();
    let extra = r#","before":{"x":1,"m":{"x":2}},"after":{"max":18446744073709551615,"min":-9223372036854775808,"f":0.1,"z":0e-400,"tiny":1e-310,"s":"{\"x\":1,\"x\":2}"}"#;
    let o = append(&fx, &format!("{}\n", line("r1", extra)));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events = stored(&fx);
    assert_eq!(events.len(), 1);
    let after = &events[0]["after"];
    assert_eq!(after["max"].as_u64(), Some(u64::MAX));
    assert_eq!(after["min"].as_i64(), Some(i64::MIN));
    assert_eq!(after["f"].as_f64(), Some(0.1));
    assert_eq!(after["s"], r#"{"x":1,"x":2}"#);
    assert_eq!(events[0]["before"]["m"]["x"], 2);
}

/// Floats are read correctly rounded (serde_json's `float_roundtrip`), as the check reads
/// them: a literal just above half the smallest subnormal is that subnormal, not 0 (which
/// serde_json's default parsing stored, past a check that rounded correctly), and the
/// largest finite f64 is accepted (it was refused as "number out of range").
#[test]
fn floats_at_the_edges_are_read_as_the_check_reads_them() {
    let fx = fixture();
    let extra = r#","after":{"sub":2.4703282292062328e-324,"max":1.7976931348623158e308}"#;
    let o = append(&fx, &format!("{}\n", line("r1", extra)));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = &stored(&fx)[0]["after"];
    assert_eq!(after["sub"].as_f64(), Some(f64::from_bits(1)));
    assert_eq!(after["max"].as_f64(), Some(f64::MAX));
}

#[test]
fn a_line_longer_than_eight_times_the_event_limit_is_refused_by_its_number() {
    let fx = fixture();
    let limit = 8 * 1024 * 1024;
    // Line 2 is one byte too long and has no end; more input follows it.
    let mut input = format!("{}\n", line("r1", "")).into_bytes();
    input.extend(std::iter::repeat_n(b' ', limit + 1));
    input.extend(format!("\n{}\n", line("r3", "")).as_bytes());
    let o = append_with(&fx, &fx.dir, input, &[], Stdio::piped());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("line 2: longer than {limit} bytes")),
        "{err}"
    );
    assert!(err.contains("the rest of it was not read"), "{err}");
    assert_eq!(stored(&fx).len(), 1);

    // A line of exactly the limit (before its newline end) is read whole: here it is
    // blank, so it is skipped and the line after it appended.
    let fx = fixture();
    let mut input = vec![b' '; limit];
    input.extend(format!("\n{}\n", line("r2", "")).as_bytes());
    let o = append_with(&fx, &fx.dir, input, &[], Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stored(&fx).len(), 1);
}

#[test]
fn error_wording_names_the_problem_and_what_was_appended() {
    // A bad time in valid JSON is an invalid event, not malformed JSON; no serde line.
    let fx = fixture();
    let bad_time = line("r1", "").replace("2026-03-01T10:00:00Z", "2026-13-01");
    let o = append(&fx, &format!("{bad_time}\n"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("line 1: invalid event: invalid time"), "{err}");
    assert!(err.contains("(column "), "{err}");
    assert!(!err.contains("at line"), "{err}");
    assert!(!err.contains("malformed JSON"), "{err}");
    assert!(err.contains("no line was appended"), "{err}");
    assert!(!err.contains("the lines before it"), "{err}");

    // Broken JSON is malformed JSON, at a column of the line (even with a CRLF end).
    let o = append(&fx, &format!("{}\r\n", &line("r1", "")[..40]));
    let err = stderr(&o);
    assert!(
        err.contains("line 1: malformed JSON: EOF while parsing"),
        "{err}"
    );
    assert!(err.contains("(column 40)"), "{err}");
    assert!(stored(&fx).is_empty());
}

#[test]
fn a_byte_order_mark_is_skipped_on_the_first_line_only() {
    let fx = fixture();
    let input = format!("\u{feff}{}\n{}\n", line("r1", ""), line("r2", ""));
    let o = append(&fx, &input);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stored(&fx).len(), 2);

    let input = format!("{}\n\u{feff}{}\n", line("r3", ""), line("r4", ""));
    let o = append(&fx, &input);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2: starts with a byte order mark"),
        "{err}"
    );
    assert_eq!(stored(&fx).len(), 3);
}

#[test]
fn receipts_into_dev_null_append_nothing() {
    let fx = fixture();
    let o = append_with(
        &fx,
        &fx.dir,
        format!("{}\n", line("r1", "")).into_bytes(),
        &["--receipts"],
        Stdio::null(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was appended"), "{err}");
    assert!(!fx.dir.exists(), "the log was created");

    // A closed standard output (`>&-`) reads as /dev/null to the process: the same.
    let script = format!(
        "printf '%s\\n' '{}' | \"$0\" --dir '{}' --keyring '{}' append --receipts >&-",
        line("r1", ""),
        fx.dir.display(),
        fx.keyring.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_auditlog"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!fx.dir.exists(), "the log was created");
}

#[test]
fn a_log_directory_with_a_missing_parent_is_not_created() {
    let fx = fixture();
    let deep = fx.dir.join("typo").join("log");
    let o = append_with(
        &fx,
        &deep,
        format!("{}\n", line("r1", "")).into_bytes(),
        &[],
        Stdio::piped(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("parent directory does not exist"), "{err}");
    assert!(!fx.dir.exists());
    // One missing level is created, as before.
    let o = append(&fx, &format!("{}\n", line("r1", "")));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stored(&fx).len(), 1);
}

/// A producer that waits for each receipt before it writes the next line gets it: the
/// batch is appended once no more input is buffered, without waiting for more. It used to
/// wait for the next line first, so such a producer and the CLI waited on each other.
/// (The channel's long timeout only ends a deadlocked run; nothing is timed.)
#[test]
fn each_receipt_comes_before_the_next_line_is_written() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;
    use std::time::Duration;
    let fx = fixture();
    let mut cmd = auditlog_command(Some(&fx.dir), Some(&fx.keyring));
    let mut child = cmd
        .args(["append", "--receipts"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    for (i, rid) in ["r1", "r2", "r3"].iter().enumerate() {
        stdin
            .write_all(format!("{}\n", line(rid, "")).as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let receipt = rx.recv_timeout(Duration::from_secs(120));
        let receipt: serde_json::Value = match receipt {
            Ok(r) => serde_json::from_str(&r).unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("no receipt for line {} while the producer waits", i + 1);
            }
        };
        assert_eq!(receipt["seq"], i as u64);
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Found by review: a line of Unicode spaces that are not JSON whitespace (U+00A0, form
/// feed, vertical tab) was skipped as blank, without a word; and a time finer than a
/// microsecond was cut to the microsecond, so the event was stored at another instant than
/// its line said, and `query --since` took in events before it. Each is refused now.
#[test]
fn lines_of_other_spaces_and_times_finer_than_a_microsecond_are_refused() {
    let sub_micro = line("r2", "").replace("10:00:00Z", "10:00:00.0000001Z");
    for (bad, reason) in [
        ("\u{a0}".to_string(), "malformed JSON"),
        ("\u{b}\u{c}".to_string(), "malformed JSON"),
        (sub_micro, "to the microsecond at most"),
    ] {
        let fx = fixture();
        let o = append(
            &fx,
            &format!("{}\n{bad}\n{}\n", line("r1", ""), line("r3", "")),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("line 2: "), "{bad:?}: {err}");
        assert!(err.contains(reason), "{bad:?}: {err}");
        let ids: Vec<_> = stored(&fx)
            .iter()
            .map(|e| e["resource_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["r1"], "{bad:?}");
    }
    // JSON's own whitespace still makes a blank line.
    let fx = fixture();
    let o = append(
        &fx,
        &format!("{}\n \t\r\n{}\n", line("r1", ""), line("r3", "")),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stored(&fx).len(), 2);
    let o = auditlog_cli(
        Some(&fx.dir),
        Some(&fx.keyring),
        [
            "query",
            "--org",
            "acme",
            "--since",
            "2026-03-01T10:00:00.0000001Z",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("to the microsecond at most"),
        "{}",
        stderr(&o)
    );
}
