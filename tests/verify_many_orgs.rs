//! `verify` spreads the segments of many orgs over one pool of threads, taking the orgs in
//! chunks of about 256 segments. Whatever the number of threads, the report must be the same:
//! every record counted once, and every finding in org order, then file order, as one thread
//! finds them. The log here has more segments than one chunk holds, and damage in orgs that
//! fall into different chunks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use auditlog::verify::{FindingKind, VerifyOptions, verify};
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
    // Damage in an org of the first chunk and one of the second: a byte of the second
    // record's resource id (CRC no longer matches), and a stray file.
    for o in ["org-007", "org-290"] {
        let path = seg_path(dir.path(), o, "2026-01");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = records(&bytes)[1];
        let at = resource_id_byte(&bytes, second);
        change_ascii(&mut bytes[at]);
        std::fs::write(&path, &bytes).unwrap();
    }
    std::fs::write(dir.path().join("org-150").join("notes.txt"), b"hello").unwrap();

    let run = |threads: usize| {
        let opts = VerifyOptions {
            threads: Some(threads),
            ..VerifyOptions::default()
        };
        verify(dir.path(), Some(&*keys), &opts).unwrap()
    };
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
    for o in ["org-007", "org-150", "org-290"] {
        assert!(orgs_in_order.contains(&o), "{where_found:?}");
    }
    assert!(where_found.contains(&(FindingKind::UnexpectedFile, "org-150/notes.txt".into())));
    for threads in [2, 3, 8] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}
