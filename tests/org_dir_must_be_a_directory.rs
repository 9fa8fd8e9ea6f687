//! An org's entry in the log directory must be a directory itself. The writer used to write
//! through a symbolic link planted there (its segments landed wherever the link pointed),
//! while `verify`, `stats` and `query` do not follow links: the org's evidence was written
//! where no reader looked, and `verify` passed the log. A regular file there made the first
//! append fail with a bare "create org directory: File exists". Both are now
//! `Error::OrgDirUnusable`, a refusal: nothing written, anywhere; other orgs go on. A query,
//! a scan or a segment listing of such an org fails the same way: `Log::query` used to
//! read a linked org's events with no error, where `verify` reports the link.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use auditlog::{Durability, Error, Log, Options};
use support::{file_names, january_of, keys_for};

#[test]
fn an_org_entry_that_is_not_a_directory_is_refused_and_nothing_is_written() {
    let keys = keys_for(&["aaa", "acme", "other"]);
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    type Plant<'a> = dyn Fn(&Path) + 'a;
    let cases: [(&str, &Plant<'_>, &str); 3] = [
        (
            "link",
            &|p| symlink(&elsewhere, p).unwrap(),
            "a symbolic link",
        ),
        (
            "dangling",
            &|p| symlink(root.path().join("nowhere"), p).unwrap(),
            "a symbolic link",
        ),
        ("file", &|p| fs::write(p, b"x").unwrap(), "a regular file"),
    ];
    for (name, plant, found) in cases {
        let dir = root.path().join(name);
        // A log whose `acme` already has a month, so that recovery's path is taken too.
        let opts = || Options::new(keys.clone()).durability(Durability::Always);
        let log = Log::open(&dir, opts()).unwrap();
        log.append_batch(&january_of("acme", 3, 1)).unwrap();
        log.close().unwrap();
        let moved = root.path().join(format!("{name}-acme"));
        fs::rename(dir.join("acme"), &moved).unwrap();
        plant(&dir.join("acme"));

        let log = Log::open(&dir, opts()).unwrap();
        let e = log.append(&january_of("acme", 1, 2)[0]).unwrap_err();
        assert!(
            matches!(&e, Error::OrgDirUnusable { org, found: f, .. } if org == "acme" && *f == found),
            "{name}: {e}"
        );
        assert!(e.is_refusal(), "{name}");
        assert!(e.to_string().contains("not a directory"), "{name}: {e}");
        let e = log.append_batch(&january_of("acme", 2, 3)).unwrap_err();
        assert!(
            matches!(e.unbatched(), Error::OrgDirUnusable { .. }),
            "{name}: {e}"
        );
        // A batch with an org whose checks come first is refused before anything is
        // created for either (it used to create that org's segment, empty).
        let mut mixed = january_of("aaa", 1, 5);
        mixed.extend(january_of("acme", 1, 6));
        let e = log.append_batch(&mixed).unwrap_err();
        assert!(
            matches!(&e, Error::InBatch { index: 1, source } if matches!(**source, Error::OrgDirUnusable { .. })),
            "{name}: {e}"
        );
        assert!(!dir.join("aaa").exists(), "{name}");
        // Other orgs go on.
        log.append_batch(&january_of("other", 2, 4)).unwrap();
        // Nor is it read through.
        let acme = auditlog::OrgId::new("acme").unwrap();
        let read = [
            log.query(&acme).run().map(|_| ()),
            log.scan(&acme).map(|_| ()),
            log.segments(&acme).map(|_| ()),
        ];
        for r in read {
            assert!(
                matches!(&r, Err(Error::OrgDirUnusable { found: f, .. }) if *f == found),
                "{name}: {r:?}"
            );
        }
        log.close().unwrap();
        assert!(
            file_names(&elsewhere).is_empty(),
            "{name}: written through the link"
        );
        assert_eq!(
            file_names(&moved),
            vec!["2026-01.idx".to_string(), "2026-01.seg".to_string()],
            "{name}"
        );
        if name == "file" {
            assert_eq!(fs::read(dir.join("acme")).unwrap(), b"x");
        }
    }
}
