//! `verify` spreads the segments of many orgs over one pool of threads, taking the orgs in
//! chunks of about 256 segments. Whatever the number of threads, the report must be the same:
//! every record counted once, and every finding in org order, then file order, as one thread
//! finds them, and as each org verified on its own. The log here has more segments than one
//! chunk holds, damage in orgs that fall into different chunks, and checkpoints of orgs in
//! both, which fail if an org is judged by another org's segments.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::verify::{FindingKind, VerifyOptions, make_checkpoint, verify};
use auditlog::{Durability, Log, Options};
use support::*;

#[test]
fn many_orgs_verify_the_same_on_any_number_of_threads() {
    const ORGS: usize = 300;
    let names: Vec<String> = (0..ORGS).map(|i| format!("org-{i:03}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys = keys_for(&name_refs);
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(
            dir.path(),
            Options::new(keys.clone()).durability(Durability::Never),
        )
        .unwrap();
        let mut events = Vec::new();
        for (i, o) in names.iter().enumerate() {
            events.push(event(o, ts("2026-01-10"), Some("u"), "auth.login", "r1"));
            events.push(event(o, ts("2026-01-11"), Some("v"), "auth.logout", "r2"));
            // Every third org has a second month: 400 segments in all.
            if i % 3 == 0 {
                events.push(event(o, ts("2026-02-03"), None, "booking.create", "r3"));
            }
        }
        log.append_batch(&events).unwrap();
        log.close().unwrap();
    }
    // Checkpoints of undamaged orgs in both chunks: each is checked against the heads
    // its own org's segments give, so outcomes reported under the wrong org would fail them.
    let checkpoints: Vec<_> = ["org-006", "org-100", "org-200", "org-289", "org-291"]
        .iter()
        .map(|o| make_checkpoint(dir.path(), &org(o), &*keys).unwrap())
        .collect();
    // Damage in an org of the first chunk and one of the second: a byte of the second
    // record's resource id (CRC no longer matches), and stray files, one of them in the
    // org just before a damaged one.
    for o in ["org-007", "org-290"] {
        let path = seg_path(dir.path(), o, "2026-01");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = records(&bytes)[1];
        let at = resource_id_byte(&bytes, second);
        change_ascii(&mut bytes[at]);
        std::fs::write(&path, &bytes).unwrap();
    }
    std::fs::write(dir.path().join("org-150").join("notes.txt"), b"hello").unwrap();
    // Org directories without a segment: each counts as one segment's worth of a chunk.
    for i in 0..300 {
        std::fs::create_dir(dir.path().join(format!("org-9{i:03}"))).unwrap();
    }
    std::fs::write(dir.path().join("org-006").join("notes.txt"), b"hello").unwrap();

    let run_for = |threads: usize, only: Option<&str>| {
        let opts = VerifyOptions {
            threads: Some(threads),
            org: only.map(org),
            checkpoints: checkpoints.clone(),
            ..VerifyOptions::default()
        };
        verify(dir.path(), Some(&*keys), &opts).unwrap()
    };
    let run = |threads: usize| run_for(threads, None);
    let one = run(1);
    assert_eq!(one.files, 400);
    // Every record but the two whose CRC no longer matches.
    assert_eq!(one.records, 2 * ORGS as u64 + 100 - 2);
    // In org order: the corrupt record of org-007, the stray file of org-150, the corrupt
    // record of org-290.
    let where_found: Vec<(FindingKind, String)> = one
        .findings
        .iter()
        .map(|f| {
            let rel = f.file.strip_prefix(dir.path()).unwrap();
            (f.kind, rel.to_string_lossy().into_owned())
        })
        .collect();
    let orgs_in_order: Vec<&str> = where_found
        .iter()
        .map(|(_, file)| file.split('/').next().unwrap())
        .collect();
    assert!(
        orgs_in_order.windows(2).all(|w| w[0] <= w[1]),
        "{where_found:?}"
    );
    for o in ["org-006", "org-007", "org-150", "org-290"] {
        assert!(orgs_in_order.contains(&o), "{where_found:?}");
    }
    assert!(where_found.contains(&(FindingKind::UnexpectedFile, "org-150/notes.txt".into())));
    assert!(
        !one.findings.iter().any(|f| matches!(
            f.kind,
            FindingKind::CheckpointMismatch | FindingKind::TruncatedAgainstCheckpoint
        )),
        "{where_found:?}"
    );
    // The same findings, in the same order, as verifying each org on its own.
    // (Every org without a checkpoint, the empty ones included, has a `no_checkpoint`
    // warning either way.)
    let empty: Vec<String> = (0..300).map(|i| format!("org-9{i:03}")).collect();
    let per_org: Vec<_> = names
        .iter()
        .chain(&empty)
        .flat_map(|o| run_for(2, Some(o)).findings)
        .collect();
    assert_eq!(per_org, one.findings);
    for threads in [2, 3, 8] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}
