//! Guards the first invariant of the design: an append acknowledged under `Always` survives a
//! crash. The CLI is killed with SIGKILL, over and over on the same directory, while it
//! appends with `--durability always`, at points chosen by how many receipts it has printed
//! (never by timing). Each restart recovers the torn state the last one left. In the end
//! every receipt ever printed must be in the log with the same hash and content, no seq may
//! have been issued twice, and the whole log must verify without a single finding.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Event, Hash, Keyring, Log, Month, Options, RecoveryAction};
use support::{org, ts};

const ORGS: [&str; 4] = ["org-000", "org-001", "org-002", "org-003"];
const BIN: &str = env!("CARGO_BIN_EXE_auditlog");

/// A receipt as the CLI prints it.
#[derive(Debug, Clone, PartialEq)]
struct Printed {
    org_id: String,
    month: Month,
    seq: u64,
    hash: Hash,
}

fn parse_receipt(line: &str) -> Printed {
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("receipt line {line:?} is not JSON: {e}"));
    Printed {
        org_id: v["org_id"].as_str().unwrap().to_string(),
        month: v["month"].as_str().unwrap().parse().unwrap(),
        seq: v["seq"].as_u64().unwrap(),
        hash: Hash::from_hex(v["hash"].as_str().unwrap()).unwrap(),
    }
}

fn new_key(keyring: &Path, org: &str) {
    let out = Command::new(BIN)
        .args(["keys", "new", "--keyring"])
        .arg(keyring)
        .args(["--org", org])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys new: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `auditlog append --receipts` (plus `extra` arguments) on `events`, reads
/// `kill_after` receipts, SIGKILLs it, then collects every further receipt line it
/// completed. Returns the receipts and whether the process was killed (rather than
/// finishing first).
fn run_and_kill(
    dir: &Path,
    keyring: &Path,
    stderr: &Path,
    events: &[Event],
    kill_after: usize,
    extra: &[&str],
) -> (Vec<Printed>, bool) {
    let mut child = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .arg("--keyring")
        .arg(keyring)
        .args([
            "append",
            "--durability",
            "always",
            "--receipts",
            "--personal-data",
            "/after/email",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = events
        .iter()
        .flat_map(|e| {
            let mut line = serde_json::to_vec(e).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    // Feed stdin from a thread; once the child is killed the pipe breaks, which is expected.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut line = String::new();
    let mut killed = false;
    loop {
        if printed.len() == kill_after && !killed {
            child.kill().unwrap();
            killed = true;
        }
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill was never completely printed: not a receipt.
        if line.ends_with('\n') {
            printed.push(parse_receipt(line.trim_end()));
        }
    }
    let status = child.wait().unwrap();
    feeder.join().unwrap();
    let was_killed = status.signal() == Some(9);
    if !was_killed {
        assert!(
            status.success(),
            "append exited with {status}: {}",
            fs::read_to_string(stderr).unwrap_or_default()
        );
    }
    (printed, was_killed)
}

#[test]
fn sigkill_in_a_loop_keeps_every_printed_receipt() {
    kill_in_a_loop(2, &[]);
}

/// The same with one segment writer allowed open, while 4 orgs append across 3 months
/// (appends close writers beyond two): writers are parked and reopened all the time, so
/// kills land in parks, reopens and the settling at close, and the next start recovers
/// segments whose parked state (and index) died with the process.
#[test]
fn sigkill_in_a_loop_while_writers_are_parked_keeps_every_printed_receipt() {
    kill_in_a_loop(4, &["--max-open-writers", "1"]);
}

/// The kill loop over the first `orgs` of `ORGS`, with `extra` arguments to `append`.
fn kill_in_a_loop(orgs: usize, extra: &[&str]) {
    let orgs = &ORGS[..orgs];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let keyring = tmp.path().join("keys.json");
    let stderr = tmp.path().join("stderr.txt");
    for &o in orgs {
        new_key(&keyring, o);
    }
    let mode = fs::metadata(&keyring).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "keyring mode");

    // Receipts to kill after, per round: from "before anything was printed" (a kill during
    // startup or recovery) to well into the input; `usize::MAX` lets one round finish.
    let kill_points = [
        0,
        1,
        7,
        60,
        333,
        2,
        150,
        usize::MAX,
        900,
        0,
        41,
        520,
        12,
        250,
        1200,
        3,
    ];
    let mut all: Vec<(Printed, Event)> = Vec::new();
    let mut issued: HashMap<(String, Month, u64), Hash> = HashMap::new();
    let mut kills = 0;
    for (round, &kill_after) in kill_points.iter().enumerate() {
        // Far more input than the pipes can hold receipts for (64 KiB is about 600), so a
        // child cannot finish before it is killed.
        let n = if kill_after == usize::MAX {
            300
        } else {
            kill_after as u64 + 1500
        };
        let events: Vec<Event> = Workload::new(WorkloadConfig {
            events: n,
            orgs: orgs.len() as u32,
            days: 75,
            seed: 500 + round as u64,
            start: ts("2026-01-01"),
            out_of_order: 0.02,
        })
        .collect();
        let (printed, killed) = run_and_kill(&dir, &keyring, &stderr, &events, kill_after, extra);
        kills += usize::from(killed);
        assert!(printed.len() >= kill_after.min(events.len()));
        assert!(printed.len() <= events.len());
        // Receipts come in input order: the k-th receipt is the k-th event.
        for (p, e) in printed.into_iter().zip(events) {
            assert_eq!(p.org_id, e.org_id);
            assert_eq!(Some(p.month), e.occurred_at.month());
            if let Some(h) = issued.insert((p.org_id.clone(), p.month, p.seq), p.hash) {
                panic!("round {round}: {p:?} reissues a seq already acknowledged with hash {h}");
            }
            all.push((p, e));
        }
    }
    assert_eq!(kills, kill_points.len() - 1, "rounds killed");
    assert!(all.len() > 3000, "only {} receipts", all.len());

    // Recover the last crash with the library, then check everything.
    let keys = Arc::new(Keyring::open(&keyring).unwrap());
    let opts = || Options::new(keys.clone()).personal_data(["/after/email"]);
    let log = Log::open(&dir, opts()).unwrap();
    for a in log.recovery_report() {
        assert!(
            !matches!(a, RecoveryAction::SegmentSealed { .. }),
            "a crash is not damage: {a:?}"
        );
    }
    log.close().unwrap();
    let log = Log::open_read_only(&dir, opts()).unwrap();
    let mut on_disk: HashMap<(String, Month, u64), (Hash, Event)> = HashMap::new();
    for &o in orgs {
        let mut next: BTreeMap<Month, u64> = BTreeMap::new();
        for item in log.scan(&org(o)).unwrap() {
            let v = item.unwrap_or_else(|e| panic!("finding in {o}: {e}"));
            let n = next.entry(v.month).or_insert(0);
            assert_eq!(v.seq, *n, "{o} {} not contiguous", v.month);
            *n += 1;
            assert_eq!(v.part, 0);
            on_disk.insert((o.to_string(), v.month, v.seq), (v.hash, v.event));
        }
    }
    for (p, e) in &all {
        let (hash, event) = on_disk
            .get(&(p.org_id.clone(), p.month, p.seq))
            .unwrap_or_else(|| panic!("acknowledged {p:?} is missing"));
        assert_eq!(hash, &p.hash, "{p:?}");
        assert_eq!(event, e, "{p:?}");
    }
    support::assert_verifies(&dir, &*keys);
}
