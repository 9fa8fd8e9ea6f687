//! Guards against commands failing when their reader leaves (`auditlog … | head`): `println!`
//! and `eprintln!` panicked on the broken pipe (exit 101, a panic message sent into the
//! closed pipe with `2>&1`), and `inspect` exited 2 with "Broken pipe" where `query` exited 0.
//! Every read-only command must end quietly with exit 0. `append --receipts` is the exception:
//! lines after the closed pipe are not appended, so it exits 2 and says up to which line the
//! input was appended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_auditlog");

/// Runs `auditlog ARGS 2>&1 | head -c 100` in bash; returns auditlog's exit status and
/// what `head` printed.
fn into_head(args: &str, stdin_from: Option<&str>) -> (i32, String) {
    let feed = stdin_from.map_or(String::new(), |f| format!("{f} | "));
    let script = format!(
        "{feed}\"$0\" {args} 2>&1 | head -c 100; s=(\"${{PIPESTATUS[@]}}\"); echo; echo \"status=${{s[-2]}}\""
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(BIN)
        .env_remove("AUDITLOG_DIR")
        .env_remove("AUDITLOG_KEYRING")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .rsplit_once("status=")
        .map(|(_, s)| s.trim().parse().unwrap())
        .unwrap();
    (status, text)
}

fn path(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn read_only_commands_end_quietly_when_the_reader_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let ring = tmp.path().join("keys.json");
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "org-000"]);
    assert!(out.status.success());
    let (d, k) = (path(&dir), path(&ring));
    let producer = "\"$0\" gen --events 3000 --orgs 1 --days 20".to_string();
    let (status, text) = into_head(
        &format!("--dir {d} --keyring {k} append --durability never"),
        Some(&producer),
    );
    assert_eq!(status, 0, "{text}");

    let seg = segment_files(&dir, "org-000").remove(0);
    for args in [
        "gen --events 100000".to_string(),
        format!("inspect {}", path(&seg)),
        format!("inspect --json {}", path(&seg)),
        format!("--dir {d} --keyring {k} query --org org-000"),
        format!("--dir {d} --keyring {k} query --org org-000 --format table"),
    ] {
        let (status, text) = into_head(&args, None);
        assert_eq!(status, 0, "{args}: {text}");
        assert!(!text.contains("panicked"), "{args}: {text}");
        assert!(!text.contains("Broken pipe"), "{args}: {text}");
    }
}

#[test]
fn append_with_receipts_says_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let ring = tmp.path().join("keys.json");
    let out = auditlog_cli(None, Some(&ring), ["keys", "new", "--org", "org-000"]);
    assert!(out.status.success());
    let (d, k) = (path(&dir), path(&ring));
    let producer = "\"$0\" gen --events 5000 --orgs 1 --days 20".to_string();
    let (status, text) = into_head(
        &format!("--dir {d} --keyring {k} append --durability never --receipts"),
        Some(&producer),
    );
    assert_eq!(status, 2, "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // What was appended is whole batches, each before any receipt of it was printed.
    let out = auditlog_cli(Some(&dir), None, ["stats", "--json"]);
    assert!(out.status.success());
    let events: u64 = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["events"]
                .as_u64()
                .unwrap()
        })
        .sum();
    // A batch is what was buffered when it was cut (at most 1,000 lines), so the count is
    // not a multiple of 1,000 (stderr, which goes into `head` here, names the lines).
    assert!(events > 0 && events < 5000, "{events}");
}
