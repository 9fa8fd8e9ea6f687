//! Guards against `gen` printing events `append` refuses (times outside 1970-01-01 to
//! 9999-12-31), and `demo` failing obscurely on small `--events`, on a `--dir` that does
//! not exist yet, or writing its keyring and logs into a directory already in use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::Path;
use std::process::{Output, Stdio};

use support::*;

fn cli(dir: Option<&Path>, args: &[&str]) -> Output {
    auditlog_command(dir, None)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn gen_refuses_a_range_append_would_refuse() {
    for (start, days) in [
        ("9999-12-31", "90"),
        ("1969-01-01", "1"),
        ("1970-01-01", "1"),
    ] {
        let o = cli(
            None,
            &["gen", "--events", "10", "--start", start, "--days", days],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{start} {days}: {err}");
        assert!(err.contains("outside 1970-01-01..=9999-12-31"), "{err}");
        assert!(o.stdout.is_empty());
    }
    // More orgs than the generator holds weights for: a usage error, not an out-of-memory
    // abort (exit 134, found by review).
    let o = cli(None, &["gen", "--events", "1", "--orgs", "4294967295"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("1..=1000000"), "{}", stderr(&o));
    // The edges it names are accepted, and every event they give is appendable.
    let tmp = tempfile::tempdir().unwrap();
    let ring = tmp.path().join("keys.json");
    let o = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "org-000"]);
    assert!(o.status.success());
    for (start, days) in [("1970-01-01T01:00:00Z", "1"), ("9999-10-03", "90")] {
        let generated = cli(
            None,
            &[
                "gen", "--events", "3000", "--orgs", "1", "--start", start, "--days", days,
            ],
        );
        assert_eq!(generated.status.code(), Some(0), "{}", stderr(&generated));
        let mut append = auditlog_command(Some(&tmp.path().join("log")), Some(&ring));
        append.args(["append", "--durability", "never"]);
        let o = run_with_input(append, generated.stdout.clone(), Stdio::piped());
        assert_eq!(o.status.code(), Some(0), "{start}: {}", stderr(&o));
    }
}

#[test]
fn demo_states_its_bounds_and_keeps_to_its_directory() {
    let o = cli(None, &["demo", "--events", "10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 1000"), "{}", stderr(&o));

    // A directory in use is refused and left as it was.
    let fx = KeyedLog::new(300);
    let before = file_names(&fx.dir);
    let o = cli(Some(&fx.dir), &["demo", "--events", "1000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(file_names(&fx.dir), before);

    // A new directory is created and keeps what the demo wrote.
    let new = fx.root.join("demo");
    let o = cli(Some(&new), &["demo", "--events", "1000"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).ends_with("demo ok\n"), "{}", stdout(&o));
    for name in ["keyring.json", "log", "tampered"] {
        assert!(new.join(name).exists(), "{name}");
    }
}
